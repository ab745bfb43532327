//! What a simulated client knows of the cluster, and its connections to it:
//! a metadata cache (brokers by node id; per partition of the client's topic
//! the leader and its leader epoch) refreshed with Metadata requests, and one
//! [`Session`] per broker address, created on demand.
//!
//! Metadata is asked of any broker the client is connected to (the least
//! busy), else of the bootstrap addresses and known brokers in turn. A
//! refresh that leaves a partition without a known leader is repeated after
//! a backoff (Kafka's `retry.backoff.ms`), as is one asked for while another
//! was in flight (its answer may predate what made the client ask).
//!
//! Sessions are numbered (slots) in the order they are created; slot `k` owns
//! timer ids `k * SESSION_TIMER_SPAN ..` and connection ids
//! `conn_base + k * CONN_SPAN ..` (see `session`). Sessions are never
//! dropped, so their ids are never reused. With one bootstrap address that is
//! also the only broker's advertised address there is one session, slot 0,
//! exactly as a single-session client had.

use std::collections::BTreeMap;

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::session::{
    decode_body, split_addrs, Session, SessionEvent, MAX_SESSION_SLOTS, SESSION_TIMER_LIMIT,
    SESSION_TIMER_SPAN,
};

/// The cluster's own timer (metadata refresh backoff). Clients use ids above it.
pub const METADATA_TIMER: TimerId = SESSION_TIMER_LIMIT;
/// The tag of metadata requests; clients must not use it.
pub const METADATA_TAG: u64 = u64::MAX;
/// Connection ids per session slot. Clients' `conn_base`s are 1_000_000
/// apart in the simulator, so a client has at most [`MAX_SESSIONS`] slots.
pub const CONN_SPAN: ConnId = 10_000;
pub const MAX_SESSIONS: usize = 100;

/// REPLICA_NOT_AVAILABLE: the leader is still usable.
const REPLICA_NOT_AVAILABLE: i16 = 9;

/// Index of a session in the client's cluster.
pub type SessionId = usize;

/// What the cluster cache knows of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The leader's node id, if known and usable.
    pub leader: Option<i32>,
    /// The newest leader epoch seen (-1 if none); kept when the leader is
    /// forgotten, so that older metadata cannot bring back an older leader.
    pub leader_epoch: i32,
}

/// What happened, for the client to act on.
#[derive(Debug)]
pub enum ClusterEvent {
    /// A session's connection is up.
    Connected { session: SessionId },
    /// A response to a client request (never a metadata one).
    Response {
        session: SessionId,
        tag: u64,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
    },
    /// A session's connection was lost; its requests in flight (client tags
    /// only) have an unknown outcome. Leaders on that broker are forgotten
    /// and a metadata refresh is under way.
    Lost {
        session: SessionId,
        in_flight: Vec<u64>,
        reason: String,
    },
    /// A metadata response was applied. `complete`: the topic's partitions
    /// are known and every one has a known leader.
    Metadata { complete: bool },
}

#[derive(Debug, Clone, Copy, Default)]
struct MetadataState {
    /// A refresh is wanted and not yet sent.
    wanted: bool,
    /// The session a metadata request is in flight on.
    in_flight: Option<SessionId>,
    /// Waiting for the backoff timer before the next refresh.
    backing_off: bool,
}

pub struct Cluster {
    client_id: String,
    conn_base: ConnId,
    request_timeout_ms: u64,
    /// Backoff between metadata refreshes that did not give every leader.
    backoff_ms: u64,
    topic: String,
    bootstrap: Vec<String>,
    sessions: Vec<(String, Session)>,
    by_addr: BTreeMap<String, SessionId>,
    /// Turns through the candidates when no broker is reachable.
    rotation: usize,
    brokers: BTreeMap<i32, String>,
    partitions: BTreeMap<i32, PartitionInfo>,
    partition_count: Option<i32>,
    metadata: MetadataState,
}

impl Cluster {
    /// `bootstrap`: one `host:port` or a comma-separated list.
    pub fn new(
        bootstrap: &str,
        client_id: &str,
        conn_base: ConnId,
        request_timeout_ms: u64,
        topic: &str,
        backoff_ms: u64,
    ) -> Cluster {
        Cluster {
            client_id: client_id.to_string(),
            conn_base,
            request_timeout_ms,
            backoff_ms,
            topic: topic.to_string(),
            bootstrap: split_addrs(bootstrap),
            sessions: Vec::new(),
            by_addr: BTreeMap::new(),
            rotation: 0,
            brokers: BTreeMap::new(),
            partitions: BTreeMap::new(),
            partition_count: None,
            metadata: MetadataState::default(),
        }
    }

    /// Connect to the cluster and learn it.
    pub fn start(&mut self, now: Now, out: &mut Vec<Output>) {
        self.refresh(now, out);
    }

    // ----- getters -----

    /// How many partitions the topic has, once known.
    pub fn partition_count(&self) -> Option<i32> {
        self.partition_count
    }

    pub fn partition(&self, partition: i32) -> Option<PartitionInfo> {
        self.partitions.get(&partition).copied()
    }

    /// The leader epoch to send with a request for `partition` (-1: unknown).
    pub fn leader_epoch(&self, partition: i32) -> i32 {
        self.partitions
            .get(&partition)
            .map(|p| p.leader_epoch)
            .unwrap_or(-1)
    }

    /// Brokers by node id, as the last metadata listed them.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    pub fn session(&self, id: SessionId) -> &Session {
        &self.sessions[id].1
    }

    /// The address a session talks to.
    pub fn session_addr(&self, id: SessionId) -> &str {
        &self.sessions[id].0
    }

    /// The session of `addr`, if one was made.
    pub fn session_of(&self, addr: &str) -> Option<SessionId> {
        self.by_addr.get(addr).copied()
    }

    /// The session of `partition`'s leader, if the leader is known: made and
    /// connected on demand. It may not be ready yet (a `Connected` follows).
    pub fn leader_session(&mut self, partition: i32, out: &mut Vec<Output>) -> Option<SessionId> {
        let leader = self.partitions.get(&partition)?.leader?;
        let addr = self.brokers.get(&leader)?.clone();
        let id = self.session_for(&addr)?;
        self.sessions[id].1.connect(out);
        Some(id)
    }

    /// The session can take a request now, with fewer than `max_in_flight` awaiting answers.
    pub fn can_send(&self, id: SessionId, max_in_flight: usize) -> bool {
        let s = &self.sessions[id].1;
        s.is_ready() && s.in_flight() < max_in_flight
    }

    // ----- commands -----

    /// Send a request on a session (see [`Session::send`]).
    #[allow(clippy::too_many_arguments)]
    pub fn send<T: Encodable + HeaderVersion>(
        &mut self,
        now: Now,
        id: SessionId,
        api_key: ApiKey,
        version: i16,
        body: &T,
        tag: Option<u64>,
        out: &mut Vec<Output>,
    ) -> bool {
        debug_assert!(tag != Some(METADATA_TAG));
        self.sessions[id]
            .1
            .send(now, api_key, version, body, tag, out)
    }

    /// Ask for fresh metadata (at once unless one is in flight or backing off).
    pub fn refresh(&mut self, now: Now, out: &mut Vec<Output>) {
        self.metadata.wanted = true;
        self.pump_metadata(now, out);
    }

    /// Forget `partition`'s leader (it answered that it is not, or is gone)
    /// and refresh.
    pub fn forget_leader(&mut self, now: Now, partition: i32, out: &mut Vec<Output>) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.leader = None;
        }
        self.refresh(now, out);
    }

    /// Feed an input; returns what the client must react to. Inputs that
    /// are not the cluster's (client timers, `Start`) yield nothing.
    pub fn handle(&mut self, now: Now, input: &Input, out: &mut Vec<Output>) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        if let Input::TimerFired { id: METADATA_TIMER } = input {
            self.metadata.backing_off = false;
            self.pump_metadata(now, out);
            return events;
        }
        let Some(id) = self.route(input) else {
            return events;
        };
        for event in self.sessions[id].1.handle(now, input, out) {
            match event {
                SessionEvent::Connected => {
                    self.pump_metadata(now, out);
                    events.push(ClusterEvent::Connected { session: id });
                }
                SessionEvent::Response {
                    tag: METADATA_TAG,
                    version,
                    body,
                    ..
                } => {
                    self.metadata.in_flight = None;
                    let complete = self.on_metadata(decode_body(&body, version));
                    if !complete || self.metadata.wanted {
                        self.metadata.wanted = true;
                        self.back_off(now, out);
                    }
                    events.push(ClusterEvent::Metadata { complete });
                }
                SessionEvent::Response {
                    tag,
                    api_key,
                    version,
                    body,
                } => events.push(ClusterEvent::Response {
                    session: id,
                    tag,
                    api_key,
                    version,
                    body,
                }),
                SessionEvent::Lost { in_flight, reason } => {
                    if self.metadata.in_flight == Some(id) {
                        self.metadata.in_flight = None;
                    }
                    let addr = self.sessions[id].0.clone();
                    for p in self.partitions.values_mut() {
                        if p.leader
                            .and_then(|l| self.brokers.get(&l))
                            .is_some_and(|a| *a == addr)
                        {
                            p.leader = None;
                        }
                    }
                    self.refresh(now, out);
                    events.push(ClusterEvent::Lost {
                        session: id,
                        in_flight: in_flight
                            .into_iter()
                            .filter(|t| *t != METADATA_TAG)
                            .collect(),
                        reason,
                    });
                }
            }
        }
        events
    }

    // ----- internals -----

    /// The session an input belongs to.
    fn route(&self, input: &Input) -> Option<SessionId> {
        let id = match input {
            Input::Connected { conn }
            | Input::ConnectFailed { conn }
            | Input::Closed { conn }
            | Input::Received { conn, .. } => {
                (conn.checked_sub(self.conn_base)? / CONN_SPAN) as usize
            }
            Input::TimerFired { id } if *id < SESSION_TIMER_LIMIT => {
                (*id / SESSION_TIMER_SPAN) as usize
            }
            _ => return None,
        };
        (id < self.sessions.len() && self.sessions[id].1.owns(input)).then_some(id)
    }

    /// The session of `addr`, made if new (None when out of slots).
    fn session_for(&mut self, addr: &str) -> Option<SessionId> {
        if let Some(id) = self.by_addr.get(addr) {
            return Some(*id);
        }
        let id = self.sessions.len();
        if id >= MAX_SESSIONS || id as u64 >= MAX_SESSION_SLOTS {
            return None;
        }
        let session = Session::in_slot(
            addr,
            &self.client_id,
            self.conn_base,
            id as u64,
            CONN_SPAN,
            self.request_timeout_ms,
        );
        self.sessions.push((addr.to_string(), session));
        self.by_addr.insert(addr.to_string(), id);
        Some(id)
    }

    fn back_off(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.metadata.backing_off {
            self.metadata.backing_off = true;
            out.push(Output::SetTimer {
                id: METADATA_TIMER,
                at_nanos: now.after_millis(self.backoff_ms),
            });
        }
    }

    /// Send a wanted metadata request if nothing stands in the way: on the
    /// least busy ready session, or else start connecting to the next
    /// candidate address (unless a connection attempt is already under way).
    fn pump_metadata(&mut self, now: Now, out: &mut Vec<Output>) {
        let m = self.metadata;
        if !m.wanted || m.in_flight.is_some() || m.backing_off {
            return;
        }
        let ready = (0..self.sessions.len())
            .filter(|id| self.sessions[*id].1.is_ready())
            .min_by_key(|id| (self.sessions[*id].1.in_flight(), *id));
        if let Some(id) = ready {
            let request = MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(self.topic.clone())),
                ))]));
            if self.sessions[id]
                .1
                .send(now, ApiKey::Metadata, 9, &request, Some(METADATA_TAG), out)
            {
                self.metadata.wanted = false;
                self.metadata.in_flight = Some(id);
            }
            return;
        }
        if self.sessions.iter().any(|(_, s)| s.is_connecting()) {
            return;
        }
        // Bootstrap addresses first, then brokers met since, each once.
        let mut candidates: Vec<String> = self.bootstrap.clone();
        for addr in self.brokers.values() {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        for _ in 0..candidates.len() {
            let addr = candidates[self.rotation % candidates.len()].clone();
            self.rotation += 1;
            let Some(id) = self.session_for(&addr) else {
                continue;
            };
            if self.sessions[id].1.is_idle() {
                self.sessions[id].1.connect(out);
                return;
            }
        }
        // Every candidate is connecting or waiting to reconnect: their
        // `Connected` sends the request.
    }

    /// Apply a metadata response; whether every partition has a leader.
    fn on_metadata(&mut self, response: Option<MetadataResponse>) -> bool {
        let Some(response) = response else {
            return false;
        };
        if !response.brokers.is_empty() {
            self.brokers = response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, host_port(&b.host, b.port)))
                .collect();
        }
        let Some(topic) = response
            .topics
            .into_iter()
            .find(|t| t.name.as_ref().is_some_and(|n| *n.0 == *self.topic))
        else {
            return false;
        };
        if topic.partitions.is_empty() {
            return false;
        }
        let count = topic
            .partitions
            .iter()
            .map(|p| p.partition_index + 1)
            .max()
            .unwrap_or(0);
        self.partition_count = Some(self.partition_count.unwrap_or(0).max(count));
        for p in &topic.partitions {
            let usable = (p.error_code == 0 || p.error_code == REPLICA_NOT_AVAILABLE)
                && p.leader_id.0 >= 0
                && self.brokers.contains_key(&p.leader_id.0);
            let leader = usable.then_some(p.leader_id.0);
            let entry = self
                .partitions
                .entry(p.partition_index)
                .or_insert(PartitionInfo {
                    leader: None,
                    leader_epoch: -1,
                });
            // KIP-320: metadata older than what we know (a broker whose
            // image lags) never replaces it, nor brings back an older
            // leader once ours is forgotten: the partition waits for the
            // next refresh.
            if p.leader_epoch < entry.leader_epoch {
                continue;
            }
            entry.leader = leader;
            entry.leader_epoch = entry.leader_epoch.max(p.leader_epoch);
            if leader.is_some() {
                entry.leader_epoch = p.leader_epoch;
            }
        }
        let count = self.partition_count.unwrap_or(0);
        (0..count).all(|p| self.partitions.get(&p).is_some_and(|i| i.leader.is_some()))
    }
}

/// `host:port`, bracketing an IPv6 host.
fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
