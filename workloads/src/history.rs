//! What clients did and saw, in simulated time. Checkers judge a run from
//! this alone.
//!
//! Every operation is one record: when it was invoked, when it completed (if
//! it did) and how: `ok`, `fail` (definitely did not happen) or `unknown`
//! (may or may not have happened: a timeout, a lost connection). A send
//! carries the values it wrote (one per record, unique in the run) and, when
//! ok, the offset each got; a poll carries, per partition, the records it read
//! in the order they were returned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    /// Definitely did not take effect; the error says why.
    Fail {
        error: String,
    },
    /// May or may not have taken effect.
    Unknown {
        reason: String,
    },
}

/// One record written: its partition and its (run-unique) value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub partition: i32,
    pub value: String,
    /// The offset the broker acknowledged, once the send is ok.
    pub offset: Option<i64>,
}

/// One record read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Read {
    pub offset: i64,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A produce request carrying `writes` (to one or more partitions).
    Send { writes: Vec<Write> },
    /// A fetch: partition -> records returned, in order.
    Poll { reads: BTreeMap<i32, Vec<Read>> },
    /// The consumer (re)positioned: partition -> next offset it will read.
    /// Breaks the monotonicity expected between the polls around it.
    Seek { positions: BTreeMap<i32, i64> },
    /// An admin's CreateTopics of one topic `name` (the admin workload). The
    /// data checkers ignore it; the run's liveness judgement reads it.
    CreateTopic { name: String },
    /// A group member's assignment for one generation, as its SyncGroup
    /// answer gave it (`partitions` of the workload's topic, sorted). The
    /// member is `instance` (its `group.instance.id`) when static, else
    /// `member` (its member id).
    Assignment {
        group: String,
        generation: i32,
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        partitions: Vec<i32>,
    },
    /// A group member's OffsetCommit: partition -> the next offset to read.
    Commit {
        group: String,
        generation: i32,
        member: String,
        offsets: BTreeMap<i32, i64>,
    },
    /// An operator's explicit reset of a group's committed offsets (e.g.
    /// `kafka-consumer-groups --reset-offsets`): committed offsets may go
    /// back across it.
    OffsetReset {
        group: String,
        offsets: BTreeMap<i32, i64>,
    },
}

impl Op {
    /// An admin operation (not a data operation the checkers judge).
    pub fn is_admin(&self) -> bool {
        matches!(self, Op::CreateTopic { .. })
    }

    /// A consumer-group operation (assignment, commit, offset reset): the
    /// data checkers pass over it; the group checkers judge it.
    pub fn is_group(&self) -> bool {
        matches!(
            self,
            Op::Assignment { .. } | Op::Commit { .. } | Op::OffsetReset { .. }
        )
    }
}

/// One operation with its timing and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: u32,
    pub invoke_nanos: u64,
    /// `None` while the operation is in flight (the run ended first).
    pub complete_nanos: Option<u64>,
    pub outcome: Option<Outcome>,
    #[serde(flatten)]
    pub op: Op,
}

impl Event {
    pub fn is_ok(&self) -> bool {
        self.outcome == Some(Outcome::Ok)
    }
}

/// A run's history: every client's operations, ordered by invocation time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    /// Merge several clients' histories, ordered by invocation (ties by process,
    /// then by each client's own order).
    pub fn merge(parts: impl IntoIterator<Item = History>) -> History {
        let mut all: Vec<Event> = parts.into_iter().flat_map(|h| h.events).collect();
        all.sort_by_key(|e| (e.invoke_nanos, e.process));
        History { events: all }
    }

    /// Every acknowledged write: (process, partition, value, offset).
    pub fn acknowledged(&self) -> impl Iterator<Item = (u32, &Write, i64)> {
        self.events
            .iter()
            .filter(|e| e.is_ok())
            .flat_map(|e| match &e.op {
                Op::Send { writes } => writes
                    .iter()
                    .filter_map(|w| w.offset.map(|o| (e.process, w, o)))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
    }

    /// Every record read by an ok poll: (process, partition, read).
    pub fn reads(&self) -> impl Iterator<Item = (u32, i32, &Read)> {
        self.events
            .iter()
            .filter(|e| e.is_ok())
            .flat_map(|e| match &e.op {
                Op::Poll { reads } => reads
                    .iter()
                    .flat_map(|(p, rs)| rs.iter().map(move |r| (e.process, *p, r)))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
    }

    /// Counts of sends by outcome: (ok, fail, unknown, in flight).
    pub fn send_counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for e in &self.events {
            if let Op::Send { writes } = &e.op {
                let n = writes.len();
                match e.outcome {
                    Some(Outcome::Ok) => counts.0 += n,
                    Some(Outcome::Fail { .. }) => counts.1 += n,
                    Some(Outcome::Unknown { .. }) => counts.2 += n,
                    None => counts.3 += n,
                }
            }
        }
        counts
    }

    /// Every CreateTopics the admin workload issued: (invoke time, name, outcome).
    pub fn create_topics(&self) -> impl Iterator<Item = (&Event, &str)> {
        self.events.iter().filter_map(|e| match &e.op {
            Op::CreateTopic { name } => Some((e, name.as_str())),
            _ => None,
        })
    }

    /// The same history without admin operations (what the data checkers judge).
    pub fn without_admin(&self) -> History {
        History {
            events: self
                .events
                .iter()
                .filter(|e| !e.op.is_admin())
                .cloned()
                .collect(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(process: u32, at: u64, name: &str, outcome: Option<Outcome>) -> Event {
        Event {
            process,
            invoke_nanos: at,
            complete_nanos: outcome.as_ref().map(|_| at + 1),
            outcome,
            op: Op::CreateTopic { name: name.into() },
        }
    }

    #[test]
    fn admin_operations_are_kept_apart_and_the_checkers_ignore_them() {
        let send = Event {
            process: 0,
            invoke_nanos: 5,
            complete_nanos: Some(6),
            outcome: Some(Outcome::Ok),
            op: Op::Send {
                writes: vec![Write {
                    partition: 0,
                    value: "v0".into(),
                    offset: Some(0),
                }],
            },
        };
        let poll = Event {
            process: 1,
            invoke_nanos: 7,
            complete_nanos: Some(8),
            outcome: Some(Outcome::Ok),
            op: Op::Poll {
                reads: BTreeMap::from([(
                    0,
                    vec![Read {
                        offset: 0,
                        value: "v0".into(),
                    }],
                )]),
            },
        };
        let admin = History {
            events: vec![
                create(2, 1, "t-a0", Some(Outcome::Ok)),
                create(
                    2,
                    9,
                    "t-a1",
                    Some(Outcome::Unknown {
                        reason: "timeout".into(),
                    }),
                ),
                create(2, 10, "t-a2", None),
            ],
        };
        let data = History {
            events: vec![send, poll],
        };
        let merged = History::merge([data.clone(), admin]);
        assert_eq!(merged.events.len(), 5);
        assert_eq!(merged.create_topics().count(), 3);
        assert_eq!(merged.without_admin(), data);
        assert_eq!(merged.send_counts(), (1, 0, 0, 0));
        assert!(crate::checkers::check(&merged).is_empty());
        // The op is written as `"f": "create-topic"`.
        assert!(merged.to_json().contains("\"f\":\"create-topic\""));
    }
}
