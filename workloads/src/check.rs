//! The delivery check of a run: every acknowledged value must have been read,
//! at the offset it was acknowledged at, exactly once. (The full catalogue of
//! Jepsen-named checkers grows from here.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::History;

/// One thing wrong with a history, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Jepsen's name for it: `lost-write`, `inconsistent-offsets`, `duplicate`.
    pub kind: String,
    pub explanation: String,
}

/// Check acknowledged sends against what was read.
pub fn check_delivery(history: &History) -> Vec<Anomaly> {
    // value -> offsets it was read at (per partition).
    let mut read_at: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    for read in &history.reads {
        let offsets = read_at
            .entry((read.value.as_str(), read.partition))
            .or_default();
        if !offsets.contains(&read.offset) {
            offsets.push(read.offset);
        }
    }
    let mut anomalies = Vec::new();
    for (send, offset) in history.acknowledged() {
        match read_at.get(&(send.value.as_str(), send.partition)) {
            None => anomalies.push(Anomaly {
                kind: "lost-write".into(),
                explanation: format!(
                    "value {} was acknowledged at partition {} offset {} but never read",
                    send.value, send.partition, offset
                ),
            }),
            Some(offsets) if !offsets.contains(&offset) => anomalies.push(Anomaly {
                kind: "inconsistent-offsets".into(),
                explanation: format!(
                    "value {} was acknowledged at partition {} offset {} but read at {:?}",
                    send.value, send.partition, offset, offsets
                ),
            }),
            Some(_) => {}
        }
    }
    for ((value, partition), offsets) in &read_at {
        if offsets.len() > 1 {
            anomalies.push(Anomaly {
                kind: "duplicate".into(),
                explanation: format!(
                    "value {value} appears at partition {partition} offsets {offsets:?}"
                ),
            });
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Outcome, Read, Send};

    fn send(value: &str, offset: Option<i64>) -> Send {
        Send {
            process: 0,
            partition: 0,
            value: value.into(),
            invoke_nanos: 0,
            complete_nanos: Some(1),
            outcome: Some(match offset {
                Some(offset) => Outcome::Ok { offset },
                None => Outcome::Unknown {
                    reason: "timeout".into(),
                },
            }),
        }
    }

    fn read(value: &str, offset: i64) -> Read {
        Read {
            process: 1,
            partition: 0,
            offset,
            value: value.into(),
            at_nanos: 2,
        }
    }

    #[test]
    fn clean_history_passes() {
        let history = History {
            sends: vec![send("a", Some(0)), send("b", Some(1)), send("c", None)],
            reads: vec![read("a", 0), read("b", 1), read("a", 0)],
        };
        assert!(check_delivery(&history).is_empty());
    }

    #[test]
    fn lost_write_is_caught() {
        let history = History {
            sends: vec![send("a", Some(0)), send("b", Some(1))],
            reads: vec![read("a", 0)],
        };
        let anomalies = check_delivery(&history);
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].kind, "lost-write");
        assert!(anomalies[0].explanation.contains("value b"));
        assert!(anomalies[0].explanation.contains("offset 1"));
    }

    #[test]
    fn inconsistent_offset_and_duplicate_are_caught() {
        let history = History {
            sends: vec![send("a", Some(0))],
            reads: vec![read("a", 3), read("a", 4)],
        };
        let kinds: Vec<String> = check_delivery(&history)
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds, vec!["inconsistent-offsets", "duplicate"]);
    }
}
