//! Outbound connections to other nodes of the cluster: one connection per
//! peer node id, requests framed with correlation ids, responses matched back
//! to what asked for them.
//!
//! Plain state machine: it emits `Output::Connect/Send/Close` into the
//! caller's buffer and hands back [`PeerEvent`]s; it never retries a request
//! itself (the quorum and the broker lifecycle have their own timers) but it
//! does reconnect on demand, with a backoff after a failure.

use std::collections::{BTreeMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::protocol::FrameDecoder;
use crate::seam::{ConnId, NodeId, Output, OUTBOUND_CONN_BASE};

/// What a request was sent for; returned with its response or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTag {
    /// A quorum request; `pre_vote` remembers a Vote's flag (the response lacks it).
    Raft {
        pre_vote: bool,
    },
    BrokerRegistration,
    BrokerHeartbeat,
    /// A client's admin request forwarded to the active controller.
    Forward {
        op: u64,
    },
    /// A follower's Fetch from a partition leader.
    ReplicaFetch,
    /// A leader's ISR change sent to the active controller.
    AlterPartition {
        id: u64,
    },
    /// A broker's request for a block of producer ids.
    AllocateProducerIds,
    /// A transaction coordinator's markers to a partition leader.
    WriteTxnMarkers {
        id: u64,
    },
    /// A partition leader's question to a transaction coordinator: is the
    /// partition in the producer's transaction (KIP-890)?
    VerifyTxn {
        id: u64,
    },
}

impl PeerTag {
    /// Quorum traffic and broker-to-controller traffic use separate
    /// connections, as in Kafka: a peer answers one connection's requests
    /// in order, so a long-polling quorum Fetch must not hold a heartbeat
    /// or a forwarded request behind it.
    fn channel(&self) -> Channel {
        match self {
            PeerTag::Raft { .. } => Channel::Quorum,
            PeerTag::ReplicaFetch => Channel::Replica,
            _ => Channel::Control,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    Quorum,
    Control,
    /// Replica fetches long-poll too: their own connection per leader.
    Replica,
}

type LinkKey = (NodeId, Channel);

#[derive(Debug)]
pub enum PeerEvent {
    Response {
        node: NodeId,
        tag: PeerTag,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
    },
    /// The request will get no response (connection lost or refused).
    Failed { node: NodeId, tag: PeerTag },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Connecting,
    Ready,
}

struct InFlight {
    tag: PeerTag,
    api_key: ApiKey,
    version: i16,
    /// When it was sent (mono nanos), for the request timeout.
    sent_at: u64,
}

struct Link {
    conn: ConnId,
    addr: String,
    state: LinkState,
    decoder: FrameDecoder,
    /// Frames waiting for the connection to come up, with their tags.
    queued: VecDeque<(i32, Bytes)>,
    in_flight: BTreeMap<i32, InFlight>,
}

/// Largest response frame accepted from a peer (a snapshot chunk or a
/// fetch is far below this).
const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

pub struct Peers {
    client_id: String,
    links: BTreeMap<LinkKey, Link>,
    by_conn: BTreeMap<ConnId, LinkKey>,
    next_conn: ConnId,
    next_correlation: i32,
    /// No reconnect to a peer before this time (mono nanos) after a failure.
    backoff_until: BTreeMap<LinkKey, u64>,
    events: VecDeque<PeerEvent>,
}

/// How long to wait before reconnecting to a peer that failed.
const RECONNECT_BACKOFF_NANOS: u64 = 50_000_000;

impl Peers {
    pub fn new(node_id: NodeId) -> Peers {
        Peers {
            client_id: format!("stormlog-node-{node_id}"),
            links: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            next_conn: OUTBOUND_CONN_BASE,
            next_correlation: 1,
            backoff_until: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether `conn` is one of ours.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    fn in_backoff(&self, key: LinkKey, now_nanos: u64) -> bool {
        self.backoff_until.get(&key).is_some_and(|t| *t > now_nanos)
    }

    /// Send `body` to `node` at `addr`. When the connection is in backoff the
    /// request fails at once (a `Failed` event).
    #[allow(clippy::too_many_arguments)]
    pub fn send<T: Encodable>(
        &mut self,
        now_nanos: u64,
        node: NodeId,
        addr: &str,
        api_key: ApiKey,
        version: i16,
        body: &T,
        tag: PeerTag,
        out: &mut Vec<Output>,
    ) {
        let key = (node, tag.channel());
        // A peer whose address changed (re-registration) gets a new connection.
        if self.links.get(&key).is_some_and(|l| l.addr != addr) {
            self.drop_key(key, out);
        }
        if !self.links.contains_key(&key) {
            if self.in_backoff(key, now_nanos) {
                self.events.push_back(PeerEvent::Failed { node, tag });
                return;
            }
            let conn = self.next_conn;
            self.next_conn += 1;
            out.push(Output::Connect {
                conn,
                addr: addr.to_string(),
            });
            self.by_conn.insert(conn, key);
            self.links.insert(
                key,
                Link {
                    conn,
                    addr: addr.to_string(),
                    state: LinkState::Connecting,
                    decoder: FrameDecoder::new(),
                    queued: VecDeque::new(),
                    in_flight: BTreeMap::new(),
                },
            );
        }
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        let Some(frame) = encode_request(&self.client_id, correlation, api_key, version, body)
        else {
            self.events.push_back(PeerEvent::Failed { node, tag });
            return;
        };
        let link = self.links.get_mut(&key).expect("just ensured");
        link.in_flight.insert(
            correlation,
            InFlight {
                tag,
                api_key,
                version,
                sent_at: now_nanos,
            },
        );
        match link.state {
            LinkState::Ready => out.push(Output::Send {
                conn: link.conn,
                bytes: frame,
            }),
            LinkState::Connecting => link.queued.push_back((correlation, frame)),
        }
    }

    pub fn on_connected(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let Some(key) = self.by_conn.get(&conn) else {
            return;
        };
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        link.state = LinkState::Ready;
        for (_, frame) in link.queued.drain(..) {
            out.push(Output::Send { conn, bytes: frame });
        }
    }

    /// The connection failed, was refused or closed: fail what it carried.
    pub fn on_lost(&mut self, now_nanos: u64, conn: ConnId) {
        let Some(key) = self.by_conn.remove(&conn) else {
            return;
        };
        if self.links.get(&key).is_some_and(|l| l.conn == conn) {
            let link = self.links.remove(&key).expect("present");
            for (_, f) in link.in_flight {
                self.events.push_back(PeerEvent::Failed {
                    node: key.0,
                    tag: f.tag,
                });
            }
            self.backoff_until
                .insert(key, now_nanos + RECONNECT_BACKOFF_NANOS);
        }
    }

    /// Close a link and fail what is in flight on it.
    fn drop_key(&mut self, key: LinkKey, out: &mut Vec<Output>) {
        if let Some(link) = self.links.remove(&key) {
            self.by_conn.remove(&link.conn);
            out.push(Output::Close { conn: link.conn });
            for (_, f) in link.in_flight {
                self.events.push_back(PeerEvent::Failed {
                    node: key.0,
                    tag: f.tag,
                });
            }
        }
    }

    pub fn on_received(
        &mut self,
        now_nanos: u64,
        conn: ConnId,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(&key) = self.by_conn.get(&conn) else {
            return;
        };
        let node = key.0;
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        link.decoder.extend(bytes);
        loop {
            let Some(link) = self.links.get_mut(&key) else {
                return;
            };
            match link.decoder.next_frame(MAX_RESPONSE_BYTES) {
                Ok(Some(mut frame)) => {
                    let Some(correlation) = peek_correlation(&frame) else {
                        return self.fail_link(now_nanos, key, out);
                    };
                    let Some(f) = link.in_flight.remove(&correlation) else {
                        // An answer nobody asked for: the peer is confused.
                        return self.fail_link(now_nanos, key, out);
                    };
                    let header_version = f.api_key.response_header_version(f.version);
                    if ResponseHeader::decode(&mut frame, header_version).is_err() {
                        self.events
                            .push_back(PeerEvent::Failed { node, tag: f.tag });
                        return self.fail_link(now_nanos, key, out);
                    }
                    self.events.push_back(PeerEvent::Response {
                        node,
                        tag: f.tag,
                        api_key: f.api_key,
                        version: f.version,
                        body: frame,
                    });
                }
                Ok(None) => return,
                Err(_) => return self.fail_link(now_nanos, key, out),
            }
        }
    }

    fn fail_link(&mut self, now_nanos: u64, key: LinkKey, out: &mut Vec<Output>) {
        self.drop_key(key, out);
        self.backoff_until
            .insert(key, now_nanos + RECONNECT_BACKOFF_NANOS);
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// Give up on connections with a request older than its channel's
    /// timeout: they are closed and what they carried fails (a response
    /// arriving later would find nobody waiting, as with Kafka's
    /// NetworkClient). Quorum requests time out after `quorum_ms`, others
    /// after `control_ms`.
    pub fn expire(
        &mut self,
        now_nanos: u64,
        quorum_ms: u64,
        control_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let stale: Vec<LinkKey> = self
            .links
            .iter()
            .filter(|((_, channel), link)| {
                let limit = match channel {
                    Channel::Quorum => quorum_ms,
                    Channel::Control | Channel::Replica => control_ms,
                } * 1_000_000;
                link.in_flight
                    .values()
                    .any(|f| now_nanos.saturating_sub(f.sent_at) > limit)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.fail_link(now_nanos, key, out);
        }
    }

    /// Close every link (orderly shutdown).
    pub fn close_all(&mut self, out: &mut Vec<Output>) {
        let keys: Vec<LinkKey> = self.links.keys().copied().collect();
        for key in keys {
            self.drop_key(key, out);
        }
        self.events.clear();
    }
}

fn peek_correlation(frame: &Bytes) -> Option<i32> {
    let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// A size-prefixed request frame, or `None` if the body cannot be encoded at
/// this version (a programming error we refuse to turn into a panic).
fn encode_request<T: Encodable>(
    client_id: &str,
    correlation: i32,
    api_key: ApiKey,
    version: i16,
    body: &T,
) -> Option<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf.freeze())
}

/// A request body already encoded (a client's request forwarded as it came).
pub struct RawBody(pub Bytes);

impl Encodable for RawBody {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, _version: i16) -> anyhow::Result<()> {
        buf.put_slice(&self.0);
        Ok(())
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(self.0.len())
    }
}

/// Decode a response body received through [`PeerEvent::Response`].
pub fn decode_response<T: Decodable>(mut body: Bytes, version: i16) -> Option<T> {
    T::decode(&mut body, version).ok()
}
