//! One simulated client's connection to a broker: connecting, framing,
//! correlation ids, request timeouts and reconnecting with backoff.
//! Clients (producer, consumer) own a `Session` and react to what it yields.

use std::collections::BTreeMap;

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Timer ids below this belong to the session; clients use ids above it.
pub const SESSION_TIMER_LIMIT: TimerId = 1 << 32;
const RECONNECT_TIMER: TimerId = 1;
/// Request timeout timers are `TIMEOUT_TIMER_BASE + correlation id`.
const TIMEOUT_TIMER_BASE: TimerId = 1 << 16;

/// What happened on the session, for the client to act on.
#[derive(Debug)]
pub enum SessionEvent {
    /// The connection is up; requests may be sent.
    Connected,
    /// A response arrived for the request tagged `tag`.
    Response {
        tag: u64,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
    },
    /// The connection was lost (closed, reset, failed to connect, or a request
    /// timed out). Every request in flight is returned by tag: its outcome is unknown.
    Lost { in_flight: Vec<u64>, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Ready,
    /// Waiting for the reconnect timer.
    Backoff,
}

struct InFlight {
    tag: u64,
    api_key: ApiKey,
    version: i16,
}

pub struct Session {
    bootstrap: String,
    client_id: String,
    request_timeout_ms: u64,
    reconnect_backoff_ms: u64,
    state: State,
    conn: ConnId,
    next_conn: ConnId,
    buffer: BytesMut,
    next_correlation: i32,
    in_flight: BTreeMap<i32, InFlight>,
}

impl Session {
    /// `conn_base` keeps the connection ids of different clients apart.
    pub fn new(
        bootstrap: &str,
        client_id: &str,
        conn_base: ConnId,
        request_timeout_ms: u64,
    ) -> Session {
        Session {
            bootstrap: bootstrap.to_string(),
            client_id: client_id.to_string(),
            request_timeout_ms,
            reconnect_backoff_ms: 100,
            state: State::Idle,
            conn: 0,
            next_conn: conn_base,
            buffer: BytesMut::new(),
            next_correlation: 1,
            in_flight: BTreeMap::new(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Close the connection for good (no reconnect).
    pub fn close(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Ready | State::Connecting) {
            out.push(Output::Close { conn: self.conn });
        }
        for (correlation, _) in std::mem::take(&mut self.in_flight) {
            out.push(Output::CancelTimer {
                id: TIMEOUT_TIMER_BASE + correlation as TimerId,
            });
        }
        out.push(Output::CancelTimer {
            id: RECONNECT_TIMER,
        });
        self.state = State::Idle;
    }

    /// Open the connection (if not already open or opening).
    pub fn connect(&mut self, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        self.state = State::Connecting;
        self.conn = self.next_conn;
        self.next_conn += 1;
        self.buffer.clear();
        out.push(Output::Connect {
            conn: self.conn,
            addr: self.bootstrap.clone(),
        });
    }

    /// Send a request; `tag` comes back with its response or loss. `None`:
    /// no response will come (a produce with acks=0).
    pub fn send<T: Encodable + HeaderVersion>(
        &mut self,
        now: Now,
        api_key: ApiKey,
        version: i16,
        body: &T,
        tag: Option<u64>,
        out: &mut Vec<Output>,
    ) -> bool {
        if self.state != State::Ready {
            return false;
        }
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1) & 0xffff;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        if header.encode(&mut buf, T::header_version(version)).is_err()
            || body.encode(&mut buf, version).is_err()
        {
            return false;
        }
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        out.push(Output::Send {
            conn: self.conn,
            bytes: buf.freeze(),
        });
        let Some(tag) = tag else {
            return true;
        };
        out.push(Output::SetTimer {
            id: TIMEOUT_TIMER_BASE + correlation_id as TimerId,
            at_nanos: now.after_millis(self.request_timeout_ms),
        });
        self.in_flight.insert(
            correlation_id,
            InFlight {
                tag,
                api_key,
                version,
            },
        );
        true
    }

    /// Feed an input; returns what the client must react to. Inputs that are
    /// not the session's (client timers) yield nothing.
    pub fn handle(&mut self, now: Now, input: &Input, out: &mut Vec<Output>) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        match input {
            Input::Connected { conn } if *conn == self.conn && self.state == State::Connecting => {
                self.state = State::Ready;
                events.push(SessionEvent::Connected);
            }
            Input::ConnectFailed { conn } if *conn == self.conn => {
                self.lose(now, "connect failed", out, &mut events);
            }
            Input::Closed { conn } if *conn == self.conn => {
                self.lose(now, "connection closed", out, &mut events);
            }
            Input::Received { conn, bytes } if *conn == self.conn => {
                self.buffer.extend_from_slice(bytes);
                while let Some(frame) = self.next_frame() {
                    match self.decode(frame, out) {
                        Ok(Some(event)) => events.push(event),
                        Ok(None) => {}
                        Err(why) => {
                            out.push(Output::Close { conn: self.conn });
                            self.lose(now, &why, out, &mut events);
                            break;
                        }
                    }
                }
            }
            Input::TimerFired { id } if *id == RECONNECT_TIMER && self.state == State::Backoff => {
                self.state = State::Idle;
                self.connect(out);
            }
            Input::TimerFired { id } if *id >= TIMEOUT_TIMER_BASE && *id < SESSION_TIMER_LIMIT => {
                let correlation = (*id - TIMEOUT_TIMER_BASE) as i32;
                if self.in_flight.contains_key(&correlation) {
                    // Like Kafka clients: a timed-out request drops the connection.
                    out.push(Output::Close { conn: self.conn });
                    self.lose(now, "request timed out", out, &mut events);
                }
            }
            _ => {}
        }
        events
    }

    fn next_frame(&mut self) -> Option<Bytes> {
        if self.buffer.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ])
        .max(0) as usize;
        if self.buffer.len() < 4 + len {
            return None;
        }
        self.buffer.advance(4);
        Some(self.buffer.split_to(len).freeze())
    }

    fn decode(
        &mut self,
        mut frame: Bytes,
        out: &mut Vec<Output>,
    ) -> Result<Option<SessionEvent>, String> {
        if frame.len() < 4 {
            return Err("short response frame".into());
        }
        let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let Some(request) = self.in_flight.remove(&correlation) else {
            return Err(format!("response to unknown correlation id {correlation}"));
        };
        out.push(Output::CancelTimer {
            id: TIMEOUT_TIMER_BASE + correlation as TimerId,
        });
        let header_version = response_header_version(request.api_key, request.version);
        ResponseHeader::decode(&mut frame, header_version).map_err(|e| e.to_string())?;
        Ok(Some(SessionEvent::Response {
            tag: request.tag,
            api_key: request.api_key,
            version: request.version,
            body: frame,
        }))
    }

    fn lose(
        &mut self,
        now: Now,
        reason: &str,
        out: &mut Vec<Output>,
        events: &mut Vec<SessionEvent>,
    ) {
        let in_flight: Vec<u64> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|(correlation, r)| {
                out.push(Output::CancelTimer {
                    id: TIMEOUT_TIMER_BASE + correlation as TimerId,
                });
                r.tag
            })
            .collect();
        if self.state == State::Backoff {
            return;
        }
        self.state = State::Backoff;
        out.push(Output::SetTimer {
            id: RECONNECT_TIMER,
            at_nanos: now.after_millis(self.reconnect_backoff_ms),
        });
        events.push(SessionEvent::Lost {
            in_flight,
            reason: reason.to_string(),
        });
    }
}

/// The response header version for a request, as kafka-protocol defines it.
fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    api_key.response_header_version(version)
}

/// Decode a response body.
pub fn decode_body<T: Decodable>(body: &Bytes, version: i16) -> Option<T> {
    let mut body = body.clone();
    T::decode(&mut body, version).ok()
}
