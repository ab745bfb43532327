//! A simulated admin client. It creates the workload's topic with
//! CreateTopics, retrying until the cluster says it exists (created now or
//! before); with `create_every_ms` it is also the admin workload: it creates
//! topic `{topic}-a{n}` every so often and records each attempt as an
//! `Op::CreateTopic` in its history.
//!
//! `bootstrap` is a comma-separated list of `host:port`. With one address the
//! client behaves as it always did (the session reconnects to it); with
//! several, it moves to the next address when the connection is lost, a
//! request times out, or the node answers NOT_CONTROLLER.

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::history::{Event, History, Op, Outcome};
use crate::session::{decode_body, Session, SessionEvent, SESSION_TIMER_LIMIT};

const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
/// The admin workload's next create comes due.
const TICK_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
/// Connect to the next bootstrap address (after a short backoff).
const SWITCH_TIMER: TimerId = SESSION_TIMER_LIMIT + 3;
const CREATE_TAG: u64 = 1;
/// Tags of the admin workload's creates are `WORKLOAD_TAG_BASE + n`.
const WORKLOAD_TAG_BASE: u64 = 1 << 20;
/// Connection ids of successive sessions (one per address switch) are this far apart.
const CONNS_PER_SESSION: ConnId = 1 << 16;
const SWITCH_BACKOFF_MS: u64 = 100;
/// REQUEST_TIMED_OUT: the controller may still create the topic.
const REQUEST_TIMED_OUT: i16 = 7;
/// TOPIC_ALREADY_EXISTS: as good as created.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// NOT_CONTROLLER: ask another node.
const NOT_CONTROLLER: i16 = 41;

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs of the workload's topic (`min.insync.replicas`, ...),
    /// sent with its CreateTopics.
    pub topic_configs: Vec<(String, String)>,
    pub request_timeout_ms: u64,
    /// The admin workload: create `{topic}-a{n}` every this many ms (`None`:
    /// only the workload's topic is created).
    pub create_every_ms: Option<u64>,
    /// No admin-workload create is started at or after this time.
    pub stop_at_nanos: u64,
    /// The process number of the admin's history.
    pub process: u32,
}

/// A create of the admin workload waiting for its answer.
struct Pending {
    tag: u64,
    /// Index into the history.
    index: usize,
}

pub struct Admin {
    config: AdminConfig,
    addrs: Vec<String>,
    /// Index into `addrs` of the address the session talks to.
    current: usize,
    conn_base: ConnId,
    sessions: u64,
    session: Session,
    /// The error code of the last answer to the topic's create, if any (0: created).
    last_error: Option<i16>,
    done: bool,
    /// The admin workload: next topic number, whether a create is due, the one in flight.
    next_n: u64,
    due: bool,
    pending: Option<Pending>,
    history: History,
}

impl Admin {
    pub fn new(config: AdminConfig, conn_base: ConnId) -> Admin {
        let mut addrs: Vec<String> = config
            .bootstrap
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            addrs.push(config.bootstrap.clone());
        }
        let session = Session::new(&addrs[0], "admin", conn_base, config.request_timeout_ms);
        Admin {
            config,
            addrs,
            current: 0,
            conn_base,
            sessions: 1,
            session,
            last_error: None,
            done: false,
            next_n: 0,
            due: false,
            pending: None,
            history: History::default(),
        }
    }

    /// The topic exists.
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn last_error(&self) -> Option<i16> {
        self.last_error
    }

    /// The admin workload's operations.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The address the admin currently talks to.
    pub fn current_address(&self) -> &str {
        &self.addrs[self.current]
    }

    fn workload_done(&self) -> bool {
        self.config.create_every_ms.is_none()
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => {
                if let Some(every) = self.config.create_every_ms {
                    out.push(Output::SetTimer {
                        id: TICK_TIMER,
                        at_nanos: now.after_millis(every),
                    });
                }
                return self.session.connect(out);
            }
            Input::TimerFired { id: RETRY_TIMER } => return self.create(now, out),
            Input::TimerFired { id: SWITCH_TIMER } => return self.session.connect(out),
            Input::TimerFired { id: TICK_TIMER } => {
                if let Some(every) = self.config.create_every_ms {
                    if now.mono_nanos < self.config.stop_at_nanos {
                        self.due = true;
                        out.push(Output::SetTimer {
                            id: TICK_TIMER,
                            at_nanos: now.after_millis(every),
                        });
                    }
                }
                return self.create_next(now, out);
            }
            _ => {}
        }
        let mut switch = false;
        for event in self.session.handle(now, &input, out) {
            match event {
                SessionEvent::Connected => {
                    self.create(now, out);
                    self.create_next(now, out);
                }
                SessionEvent::Response {
                    tag, version, body, ..
                } => {
                    let code = decode_body::<CreateTopicsResponse>(&body, version)
                        .and_then(|r| r.topics.first().map(|t| t.error_code))
                        .unwrap_or(-1);
                    if tag == CREATE_TAG {
                        self.last_error = Some(code);
                        if code == 0 || code == TOPIC_ALREADY_EXISTS {
                            self.done = true;
                            if self.workload_done() {
                                self.session.close(out);
                            }
                        } else {
                            if code == NOT_CONTROLLER {
                                switch = true;
                            }
                            out.push(Output::SetTimer {
                                id: RETRY_TIMER,
                                at_nanos: now.after_millis(200),
                            });
                        }
                    } else if self.pending.as_ref().is_some_and(|p| p.tag == tag) {
                        let outcome = match code {
                            0 => Outcome::Ok,
                            REQUEST_TIMED_OUT => Outcome::Unknown {
                                reason: "REQUEST_TIMED_OUT".into(),
                            },
                            NOT_CONTROLLER => {
                                switch = true;
                                Outcome::Fail {
                                    error: "NOT_CONTROLLER".into(),
                                }
                            }
                            TOPIC_ALREADY_EXISTS => Outcome::Fail {
                                error: "TOPIC_ALREADY_EXISTS".into(),
                            },
                            other => Outcome::Fail {
                                error: format!("error code {other}"),
                            },
                        };
                        self.complete(now, outcome);
                    }
                }
                SessionEvent::Lost { in_flight, reason } => {
                    for tag in in_flight {
                        if self.pending.as_ref().is_some_and(|p| p.tag == tag) {
                            self.complete(
                                now,
                                Outcome::Unknown {
                                    reason: reason.clone(),
                                },
                            );
                        }
                    }
                    switch = true;
                }
            }
        }
        if switch && self.addrs.len() > 1 {
            self.switch(now, out);
        }
    }

    /// Leave the current address for the next one in the list.
    fn switch(&mut self, now: Now, out: &mut Vec<Output>) {
        self.session.close(out);
        // A create still in flight can no longer be answered.
        self.complete(
            now,
            Outcome::Unknown {
                reason: "moved to another node".into(),
            },
        );
        self.current = (self.current + 1) % self.addrs.len();
        self.session = Session::new(
            &self.addrs[self.current],
            "admin",
            self.conn_base + self.sessions * CONNS_PER_SESSION,
            self.config.request_timeout_ms,
        );
        self.sessions += 1;
        out.push(Output::SetTimer {
            id: SWITCH_TIMER,
            at_nanos: now.after_millis(SWITCH_BACKOFF_MS),
        });
    }

    fn complete(&mut self, now: Now, outcome: Outcome) {
        if let Some(p) = self.pending.take() {
            let event = &mut self.history.events[p.index];
            event.complete_nanos = Some(now.mono_nanos);
            event.outcome = Some(outcome);
        }
    }

    fn request(&self, topic: String, partitions: i32) -> CreateTopicsRequest {
        CreateTopicsRequest::default()
            .with_timeout_ms(self.config.request_timeout_ms as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(self.config.replication_factor)])
    }

    fn create(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.done {
            return;
        }
        let mut request = self.request(self.config.topic.clone(), self.config.partitions);
        request.topics[0].configs = self
            .config
            .topic_configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(name.clone()))
                    .with_value(Some(StrBytes::from_string(value.clone())))
            })
            .collect();
        self.session.send(
            now,
            ApiKey::CreateTopics,
            5,
            &request,
            Some(CREATE_TAG),
            out,
        );
    }

    /// Start the admin workload's next create if one is due and none is in flight.
    fn create_next(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.due || self.pending.is_some() || !self.session.is_ready() {
            return;
        }
        let n = self.next_n;
        let name = format!("{}-a{n}", self.config.topic);
        let tag = WORKLOAD_TAG_BASE + n;
        // The brokers' default.replication.factor: the admin workload
        // exercises placement over every broker.
        let mut request = self.request(name.clone(), 1);
        request.topics[0].replication_factor = -1;
        if !self
            .session
            .send(now, ApiKey::CreateTopics, 5, &request, Some(tag), out)
        {
            return;
        }
        self.due = false;
        self.next_n += 1;
        let index = self.history.events.len();
        self.history.events.push(Event {
            process: self.config.process,
            invoke_nanos: now.mono_nanos,
            complete_nanos: None,
            outcome: None,
            op: Op::CreateTopic { name },
        });
        self.pending = Some(Pending { tag, index });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(ms: u64) -> Now {
        Now {
            mono_nanos: ms * 1_000_000,
            wall_millis: ms as i64,
        }
    }

    fn admin(bootstrap: &str) -> Admin {
        Admin::new(
            AdminConfig {
                bootstrap: bootstrap.into(),
                topic: "events".into(),
                partitions: 3,
                replication_factor: 3,
                topic_configs: vec![("min.insync.replicas".into(), "2".into())],
                request_timeout_ms: 1_000,
                create_every_ms: Some(500),
                stop_at_nanos: u64::MAX,
                process: 7,
            },
            1 << 40,
        )
    }

    fn connects(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Connect { addr, .. } => Some(addr.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn moves_to_the_next_address_when_a_connection_fails() {
        let mut a = admin("node-0:9092,node-1:9092,node-2:9092");
        let mut out = Vec::new();
        a.step(now(0), Input::Start, &mut out);
        assert_eq!(connects(&out), vec!["node-0:9092"]);
        let conn = out
            .iter()
            .find_map(|o| match o {
                Output::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .unwrap();
        out.clear();
        a.step(now(1), Input::ConnectFailed { conn }, &mut out);
        assert_eq!(a.current_address(), "node-1:9092");
        out.clear();
        a.step(now(101), Input::TimerFired { id: SWITCH_TIMER }, &mut out);
        assert_eq!(connects(&out), vec!["node-1:9092"]);
    }

    #[test]
    fn one_address_reconnects_to_it() {
        let mut a = admin("node-0:9092");
        let mut out = Vec::new();
        a.step(now(0), Input::Start, &mut out);
        out.clear();
        a.step(now(1), Input::ConnectFailed { conn: 1 << 40 }, &mut out);
        assert_eq!(a.current_address(), "node-0:9092");
    }

    #[test]
    fn workload_records_a_create_per_tick_and_unknown_on_loss() {
        let mut a = admin("node-0:9092,node-1:9092");
        let mut out = Vec::new();
        a.step(now(0), Input::Start, &mut out);
        a.step(now(1), Input::Connected { conn: 1 << 40 }, &mut out);
        a.step(now(500), Input::TimerFired { id: TICK_TIMER }, &mut out);
        assert_eq!(a.history().events.len(), 1);
        assert_eq!(
            a.history().events[0].op,
            Op::CreateTopic {
                name: "events-a0".into()
            }
        );
        a.step(now(600), Input::Closed { conn: 1 << 40 }, &mut out);
        assert!(matches!(
            a.history().events[0].outcome,
            Some(Outcome::Unknown { .. })
        ));
        assert_eq!(a.current_address(), "node-1:9092");
    }

    #[test]
    fn the_workload_topic_is_created_with_its_topic_configs() {
        use crate::testwire::requests_of;
        let mut a = admin("node-0:9092");
        let mut out = Vec::new();
        a.step(now(0), Input::Start, &mut out);
        out.clear();
        a.step(now(1), Input::Connected { conn: 1 << 40 }, &mut out);
        a.step(now(500), Input::TimerFired { id: TICK_TIMER }, &mut out);
        let sent = requests_of(&out, ApiKey::CreateTopics);
        assert_eq!(sent.len(), 2);
        let topic: CreateTopicsRequest = sent[0].decode();
        let configs: Vec<(String, Option<String>)> = topic.topics[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        assert_eq!(
            configs,
            vec![("min.insync.replicas".to_string(), Some("2".to_string()))]
        );
        assert_eq!(topic.topics[0].replication_factor, 3);
        // The admin workload's topics take the brokers' defaults.
        let other: CreateTopicsRequest = sent[1].decode();
        assert!(other.topics[0].configs.is_empty());
        assert_eq!(other.topics[0].replication_factor, -1);
    }
}
