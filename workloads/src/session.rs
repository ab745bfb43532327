//! One simulated client's connection to a broker: connecting, framing,
//! correlation ids, request timeouts and reconnecting with backoff.
//! Clients own one `Session` per broker they talk to (see `cluster`) and
//! react to what it yields.
//!
//! Ids: a session made with [`Session::new`] is slot 0; [`Session::in_slot`]
//! gives slot `k` the timer ids `k * SESSION_TIMER_SPAN ..
//! (k + 1) * SESSION_TIMER_SPAN` (all below [`SESSION_TIMER_LIMIT`]) and the
//! connection ids `conn_base + k * span .. conn_base + (k + 1) * span`, so
//! that the sessions of one client never share a timer or a connection.

use std::collections::BTreeMap;

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Timer ids below this belong to the sessions; clients use ids from it up.
pub const SESSION_TIMER_LIMIT: TimerId = 1 << 32;
/// Timer ids of one session slot: slot `k` owns `k * SPAN .. (k + 1) * SPAN`.
pub const SESSION_TIMER_SPAN: TimerId = 1 << 17;
/// How many session slots fit below [`SESSION_TIMER_LIMIT`].
pub const MAX_SESSION_SLOTS: u64 = SESSION_TIMER_LIMIT / SESSION_TIMER_SPAN;
/// Relative to the slot's timer base.
const RECONNECT_TIMER: TimerId = 1;
/// Request timeout timers are `TIMEOUT_TIMER_BASE + correlation id` (relative
/// to the slot's timer base); correlation ids stay below 1 << 16.
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
    /// Addresses to connect to, tried in turn: each new connection attempt
    /// (the first, and every one after a loss) takes the next.
    addrs: Vec<String>,
    next_addr: usize,
    client_id: String,
    /// This slot's first timer id.
    timer_base: TimerId,
    /// This slot's connection ids: `conn_first ..` (wrapping within
    /// `conn_span` when bounded).
    conn_first: ConnId,
    conn_span: Option<ConnId>,
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
    /// `bootstrap` is one `host:port` or a comma-separated list of them,
    /// tried in turn when a connection fails or is lost.
    pub fn new(
        bootstrap: &str,
        client_id: &str,
        conn_base: ConnId,
        request_timeout_ms: u64,
    ) -> Session {
        Session::build(
            split_addrs(bootstrap),
            client_id,
            0,
            conn_base,
            None,
            request_timeout_ms,
        )
    }

    /// A session in slot `slot` of a client with several: its timers are
    /// `slot * SESSION_TIMER_SPAN ..` and its connection ids
    /// `conn_base + slot * conn_span ..`, wrapping within `conn_span`.
    /// Panics if `slot >= MAX_SESSION_SLOTS` or `conn_span` is 0.
    pub fn in_slot(
        bootstrap: &str,
        client_id: &str,
        conn_base: ConnId,
        slot: u64,
        conn_span: ConnId,
        request_timeout_ms: u64,
    ) -> Session {
        assert!(slot < MAX_SESSION_SLOTS, "session slot {slot} out of range");
        assert!(conn_span > 0, "empty connection id range");
        Session::build(
            split_addrs(bootstrap),
            client_id,
            slot * SESSION_TIMER_SPAN,
            conn_base + slot * conn_span,
            Some(conn_span),
            request_timeout_ms,
        )
    }

    fn build(
        addrs: Vec<String>,
        client_id: &str,
        timer_base: TimerId,
        conn_first: ConnId,
        conn_span: Option<ConnId>,
        request_timeout_ms: u64,
    ) -> Session {
        Session {
            addrs,
            next_addr: 0,
            client_id: client_id.to_string(),
            timer_base,
            conn_first,
            conn_span,
            request_timeout_ms,
            reconnect_backoff_ms: 100,
            state: State::Idle,
            conn: 0,
            next_conn: conn_first,
            buffer: BytesMut::new(),
            next_correlation: 1,
            in_flight: BTreeMap::new(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Neither connected, connecting nor waiting to reconnect.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// Requests awaiting a response (acks=0 produces are not counted).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The connection id in use (meaningful once `connect` was called).
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The input is this session's: one of its connections or timers.
    pub fn owns(&self, input: &Input) -> bool {
        match input {
            Input::Connected { conn }
            | Input::ConnectFailed { conn }
            | Input::Closed { conn }
            | Input::Received { conn, .. } => self.owns_conn(*conn),
            Input::TimerFired { id } => {
                *id >= self.timer_base && *id < self.timer_base + SESSION_TIMER_SPAN
            }
            _ => false,
        }
    }

    fn owns_conn(&self, conn: ConnId) -> bool {
        match self.conn_span {
            Some(span) => conn >= self.conn_first && conn < self.conn_first + span,
            None => conn >= self.conn_first,
        }
    }

    fn reconnect_timer(&self) -> TimerId {
        self.timer_base + RECONNECT_TIMER
    }

    fn timeout_timer(&self, correlation: i32) -> TimerId {
        self.timer_base + TIMEOUT_TIMER_BASE + correlation as TimerId
    }

    /// Close the connection for good (no reconnect).
    pub fn close(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Ready | State::Connecting) {
            out.push(Output::Close { conn: self.conn });
        }
        for (correlation, _) in std::mem::take(&mut self.in_flight) {
            out.push(Output::CancelTimer {
                id: self.timeout_timer(correlation),
            });
        }
        out.push(Output::CancelTimer {
            id: self.reconnect_timer(),
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
        self.next_conn = match self.conn_span {
            Some(span) => self.conn_first + (self.next_conn + 1 - self.conn_first) % span,
            None => self.next_conn + 1,
        };
        self.buffer.clear();
        let addr = if self.addrs.is_empty() {
            String::new()
        } else {
            self.addrs[self.next_addr % self.addrs.len()].clone()
        };
        self.next_addr = (self.next_addr + 1) % self.addrs.len().max(1);
        out.push(Output::Connect {
            conn: self.conn,
            addr,
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
            id: self.timeout_timer(correlation_id),
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
            Input::TimerFired { id }
                if *id == self.reconnect_timer() && self.state == State::Backoff =>
            {
                self.state = State::Idle;
                self.connect(out);
            }
            Input::TimerFired { id }
                if *id >= self.timer_base + TIMEOUT_TIMER_BASE
                    && *id < self.timer_base + SESSION_TIMER_SPAN =>
            {
                let correlation = (*id - self.timer_base - TIMEOUT_TIMER_BASE) as i32;
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
            id: self.timeout_timer(correlation),
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
                    id: self.timer_base + TIMEOUT_TIMER_BASE + correlation as TimerId,
                });
                r.tag
            })
            .collect();
        if self.state == State::Backoff {
            return;
        }
        self.state = State::Backoff;
        out.push(Output::SetTimer {
            id: self.reconnect_timer(),
            at_nanos: now.after_millis(self.reconnect_backoff_ms),
        });
        events.push(SessionEvent::Lost {
            in_flight,
            reason: reason.to_string(),
        });
    }
}

/// The addresses of a comma-separated `host:port` list, in order.
pub fn split_addrs(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testwire::at;
    use kafka_protocol::messages::MetadataRequest;

    fn timers(out: &[Output]) -> Vec<TimerId> {
        out.iter()
            .filter_map(|o| match o {
                Output::SetTimer { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sessions_in_different_slots_share_no_timer_or_connection() {
        let mut slots: Vec<Session> = (0..3)
            .map(|k| Session::in_slot("b:1", "c", 1_000, k, 10, 1_000))
            .collect();
        for (k, s) in slots.iter_mut().enumerate() {
            let k = k as u64;
            let mut out = Vec::new();
            s.connect(&mut out);
            assert_eq!(s.conn(), 1_000 + k * 10);
            s.handle(at(0), &Input::Connected { conn: s.conn() }, &mut out);
            assert!(s.send(
                at(0),
                ApiKey::Metadata,
                9,
                &MetadataRequest::default(),
                Some(7),
                &mut out
            ));
            let conn = s.conn();
            s.handle(at(1), &Input::Closed { conn }, &mut out);
            for id in timers(&out) {
                assert!(id >= k * SESSION_TIMER_SPAN && id < (k + 1) * SESSION_TIMER_SPAN);
                assert!(s.owns(&Input::TimerFired { id }));
            }
            assert!(!s.owns(&Input::TimerFired {
                id: (k + 1) * SESSION_TIMER_SPAN + 1
            }));
        }
        // Connection ids wrap within the slot's range.
        let s = &mut slots[1];
        for _ in 0..12 {
            let mut out = Vec::new();
            let conn = s.conn();
            s.handle(at(2), &Input::ConnectFailed { conn }, &mut out);
            s.handle(
                at(200),
                &Input::TimerFired {
                    id: SESSION_TIMER_SPAN + 1,
                },
                &mut out,
            );
            assert!((1_010..1_020).contains(&s.conn()));
        }
    }

    #[test]
    fn a_bootstrap_list_is_tried_in_turn() {
        let mut s = Session::new("a:1, b:2", "admin", 50, 1_000);
        let mut out = Vec::new();
        s.connect(&mut out);
        s.handle(at(5), &Input::ConnectFailed { conn: 50 }, &mut out);
        s.handle(at(105), &Input::TimerFired { id: 1 }, &mut out);
        s.handle(at(110), &Input::ConnectFailed { conn: 51 }, &mut out);
        s.handle(at(210), &Input::TimerFired { id: 1 }, &mut out);
        let addrs: Vec<(ConnId, String)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Connect { conn, addr } => Some((*conn, addr.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            addrs,
            [(50, "a:1".into()), (51, "b:2".into()), (52, "a:1".into())]
        );
    }
}
