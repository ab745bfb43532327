//! What clients did and saw, in simulated time: sends with their outcome, and
//! every record a consumer read. Checkers judge a run from this alone.

use serde::{Deserialize, Serialize};

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Outcome {
    /// Acknowledged at this offset.
    Ok { offset: i64 },
    /// Definitely not written (the broker said so).
    Fail { error: String },
    /// May or may not have been written (timeout, connection lost, storage error).
    Unknown { reason: String },
}

/// One attempt to write one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub process: u32,
    pub partition: i32,
    pub value: String,
    pub invoke_nanos: u64,
    pub complete_nanos: Option<u64>,
    /// `None` while the send is in flight (the run ended first).
    pub outcome: Option<Outcome>,
}

/// One record a consumer read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    pub process: u32,
    pub partition: i32,
    pub offset: i64,
    pub value: String,
    pub at_nanos: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub sends: Vec<Send>,
    pub reads: Vec<Read>,
}

impl History {
    /// Merge several clients' histories, ordered by time (ties by process).
    pub fn merge(parts: impl IntoIterator<Item = History>) -> History {
        let mut all = History::default();
        for part in parts {
            all.sends.extend(part.sends);
            all.reads.extend(part.reads);
        }
        all.sends.sort_by_key(|s| (s.invoke_nanos, s.process));
        all.reads.sort_by_key(|r| (r.at_nanos, r.process));
        all
    }

    pub fn acknowledged(&self) -> impl Iterator<Item = (&Send, i64)> {
        self.sends.iter().filter_map(|s| match s.outcome {
            Some(Outcome::Ok { offset }) => Some((s, offset)),
            _ => None,
        })
    }
}
