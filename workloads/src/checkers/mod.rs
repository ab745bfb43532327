//! Safety and liveness checkers over a client history, named as Jepsen's
//! Kafka workload names them.
//!
//! Everything starts from the *version order* of each partition
//! (`version_order`): which value sits at which offset, as told by every
//! acknowledged send and every ok poll. The checkers then compare what
//! clients were told and what they read against it:
//!
//! - `version_order`: `inconsistent-offsets` (two values at one offset);
//! - `duplicate`: `duplicate` (one value at several offsets);
//! - `lost`: `lost-write` and `unseen` (acknowledged values never read);
//! - `poll`: `nonmonotonic-poll`, `poll-skip` and their `int-` variants;
//! - `send`: `nonmonotonic-send`, `int-nonmonotonic-send`, `int-send-skip`.
//!
//! Every checker is linear or `n log n` in the size of the history, and the
//! result is sorted, so the same history always gives the same report.

use std::fmt::Display;

use serde::{Deserialize, Serialize};

use crate::history::History;

mod duplicate;
pub mod groups;
mod lost;
mod poll;
mod send;
mod version_order;

#[cfg(test)]
mod testkit;

/// One thing wrong with a history, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Jepsen's name for it: one of [`KINDS`].
    pub kind: String,
    /// A sentence naming the partition, offsets and values involved.
    pub explanation: String,
    pub partition: Option<i32>,
    /// The offsets involved, in the order the explanation names them.
    pub offsets: Vec<i64>,
    /// The values involved, in the order the explanation names them.
    pub values: Vec<String>,
}

pub const INCONSISTENT_OFFSETS: &str = "inconsistent-offsets";
pub const DUPLICATE: &str = "duplicate";
pub const LOST_WRITE: &str = "lost-write";
pub const UNSEEN: &str = "unseen";
pub const NONMONOTONIC_POLL: &str = "nonmonotonic-poll";
pub const POLL_SKIP: &str = "poll-skip";
pub const INT_NONMONOTONIC_POLL: &str = "int-nonmonotonic-poll";
pub const INT_POLL_SKIP: &str = "int-poll-skip";
pub const NONMONOTONIC_SEND: &str = "nonmonotonic-send";
pub const INT_NONMONOTONIC_SEND: &str = "int-nonmonotonic-send";
pub const INT_SEND_SKIP: &str = "int-send-skip";
pub use groups::{
    COMMITTED_OFFSET_REGRESSION, FENCED_COMMIT_ACCEPTED, GROUP_DOUBLE_ASSIGNMENT, GROUP_SKIP,
    GROUP_UNCONSUMED, GROUP_UNSTABLE,
};

/// Every kind of anomaly a checker here can report, sorted.
pub const KINDS: &[&str] = &[
    COMMITTED_OFFSET_REGRESSION,
    DUPLICATE,
    FENCED_COMMIT_ACCEPTED,
    GROUP_DOUBLE_ASSIGNMENT,
    GROUP_SKIP,
    GROUP_UNCONSUMED,
    GROUP_UNSTABLE,
    INCONSISTENT_OFFSETS,
    INT_NONMONOTONIC_POLL,
    INT_NONMONOTONIC_SEND,
    INT_POLL_SKIP,
    INT_SEND_SKIP,
    LOST_WRITE,
    NONMONOTONIC_POLL,
    NONMONOTONIC_SEND,
    POLL_SKIP,
    UNSEEN,
];

/// Run every checker over `history`. The anomalies are sorted by kind, then
/// partition, then offsets (then values and explanation, so that the order
/// is total).
pub fn check(history: &History) -> Vec<Anomaly> {
    // Admin operations (CreateTopics) are not data: judge the rest.
    if history.events.iter().any(|e| e.op.is_admin()) {
        return check(&history.without_admin());
    }
    let order = version_order::VersionOrder::build(history);
    let mut anomalies = version_order::check(&order);
    anomalies.extend(duplicate::check(&order));
    anomalies.extend(lost::check(&order));
    anomalies.extend(poll::check(history, &order));
    anomalies.extend(send::check(history, &order));
    anomalies.extend(groups::check(history, &order));
    sort(&mut anomalies);
    anomalies
}

/// Sort anomalies deterministically: kind, partition, first offset, then the
/// rest of the fields.
pub fn sort(anomalies: &mut [Anomaly]) {
    anomalies.sort_by(|a, b| {
        (
            &a.kind,
            a.partition,
            a.offsets.first(),
            &a.offsets,
            &a.values,
            &a.explanation,
        )
            .cmp(&(
                &b.kind,
                b.partition,
                b.offsets.first(),
                &b.offsets,
                &b.values,
                &b.explanation,
            ))
    });
}

impl Anomaly {
    pub(crate) fn new(
        kind: &str,
        partition: i32,
        offsets: Vec<i64>,
        values: Vec<&str>,
        explanation: String,
    ) -> Anomaly {
        Anomaly {
            kind: kind.to_string(),
            explanation,
            partition: Some(partition),
            offsets,
            values: values.into_iter().map(str::to_string).collect(),
        }
    }
}

/// At most this many items are spelled out in an explanation.
pub(crate) const LISTED: usize = 8;

/// "a, b, c" or, past `max` items, "a, b, c and 12 more".
pub(crate) fn list<T: Display>(items: impl IntoIterator<Item = T>, max: usize) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        if i >= max {
            more += 1;
            continue;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&item.to_string());
    }
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// "record" or "records".
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn kinds_are_sorted_and_distinct() {
        let mut sorted = KINDS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, KINDS);
    }

    #[test]
    fn list_caps_items() {
        assert_eq!(list([1, 2, 3], 5), "1, 2, 3");
        assert_eq!(list([1, 2, 3, 4], 2), "1, 2 and 2 more");
        assert_eq!(list(Vec::<i64>::new(), 2), "");
    }

    #[test]
    fn empty_history_is_clean() {
        assert_eq!(check(&History::default()), vec![]);
    }

    /// Tricky but legitimate: unknown sends that did or did not land, a
    /// failed send, an in-flight send, a gap in offsets no one observed
    /// (a transaction marker), polls that return nothing, a seek back to the
    /// start and re-reading, pipelined sends that complete out of order, and
    /// a send with several writes to one partition.
    #[test]
    fn tricky_clean_history() {
        let h = history(vec![
            send(1, 0, 10, 0, &[("1-0", 0)]),
            // Unknown, landed at offset 1 (a poll sees it).
            send_unknown(1, 20, 30, 0, &["1-1"]),
            // Unknown, never landed.
            send_unknown(1, 40, 50, 0, &["1-2"]),
            // Failed, never landed.
            send_failed(1, 60, 70, 0, &["1-3"]),
            // Offset 2 is a control record: nobody ever sees it.
            send(1, 80, 90, 0, &[("1-4", 3)]),
            // Pipelined: 1-6 is invoked before 1-5 completes and gets a
            // lower offset.
            send(1, 100, 130, 0, &[("1-5", 5)]),
            send(1, 110, 120, 0, &[("1-6", 4)]),
            // Several records to one partition in one send.
            send(1, 140, 150, 0, &[("1-7", 6), ("1-8", 7), ("1-9", 8)]),
            send(2, 0, 10, 1, &[("2-0", 0)]),
            send(2, 20, 30, 1, &[("2-1", 1)]),
            // Still in flight when the run ended.
            send_in_flight(2, 40, 1, &["2-2"]),
            poll(10, 5, 15, &[(0, &[(0, "1-0")])]),
            poll_empty(10, 16, 17),
            poll(10, 18, 19, &[(0, &[]), (1, &[])]),
            poll(10, 35, 36, &[(0, &[(1, "1-1"), (3, "1-4")])]),
            poll(
                10,
                140,
                141,
                &[(0, &[(4, "1-6"), (5, "1-5")]), (1, &[(0, "2-0")])],
            ),
            poll(10, 160, 161, &[(0, &[(6, "1-7"), (7, "1-8"), (8, "1-9")])]),
            seek(10, 170, &[(0, 0)]),
            poll(10, 171, 172, &[(0, &[(0, "1-0"), (1, "1-1")])]),
            poll(10, 173, 174, &[(1, &[(1, "2-1")])]),
            // A failed poll is ignored whatever it claims.
            poll_failed(10, 175, 176, &[(0, &[(0, "1-0")])]),
            // A second consumer, reading from the middle.
            poll(
                11,
                200,
                201,
                &[(0, &[(5, "1-5"), (6, "1-7"), (7, "1-8"), (8, "1-9")])],
            ),
        ]);
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn check_sorts_and_names_known_kinds() {
        let h = history(vec![
            send(1, 0, 1, 1, &[("a", 0)]),
            send(1, 2, 3, 1, &[("b", 1)]),
            send(1, 4, 5, 0, &[("c", 0)]),
            send(1, 6, 7, 0, &[("d", 1)]),
            poll(10, 10, 11, &[(0, &[(0, "x"), (1, "d")]), (1, &[(1, "b")])]),
        ]);
        let found = check(&h);
        assert!(!found.is_empty());
        for a in &found {
            assert!(KINDS.contains(&a.kind.as_str()), "{a:?}");
        }
        let mut sorted = found.clone();
        sort(&mut sorted);
        assert_eq!(found, sorted);
        let kinds: Vec<&str> = found.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, vec![INCONSISTENT_OFFSETS, LOST_WRITE, LOST_WRITE]);
        let partitions: Vec<Option<i32>> = found.iter().map(|a| a.partition).collect();
        assert_eq!(partitions, vec![Some(0), Some(0), Some(1)]);
        let json = serde_json::to_string(&found).unwrap();
        let back: Vec<Anomaly> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, found);
    }

    /// 200k acknowledged sends over 4 partitions by 8 producers, two
    /// consumers reading everything (one of them seeking back once), with
    /// offset gaps: no anomaly. (Speed is measured by the criterion
    /// benchmark `workloads/benches/checkers.rs`, not asserted here.)
    #[test]
    fn a_large_clean_history_is_clean() {
        let h = large_clean_history(200_000);
        assert_eq!(check(&h), vec![], "anomalies in a clean history");
    }

    /// The same history with one record missing from every poll that
    /// returned it: a lost write, and a skip in every poll it was cut from.
    #[test]
    fn a_large_history_missing_one_record_reports_it() {
        let mut h = large_clean_history(20_000);
        let mut cut = 0;
        for event in &mut h.events {
            if let crate::history::Op::Poll { reads } = &mut event.op {
                for records in reads.values_mut() {
                    let before = records.len();
                    records.retain(|r| r.value != "3-10003");
                    cut += before - records.len();
                }
            }
        }
        assert_eq!(cut, 3, "consumer 100 once, consumer 101 twice");
        let found = check(&h);
        let kinds: Vec<&str> = found.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec![INT_POLL_SKIP, INT_POLL_SKIP, INT_POLL_SKIP, LOST_WRITE]
        );
        assert!(found[3]
            .explanation
            .contains("value 3-10003 was acknowledged"));
        for skip in &found[..3] {
            assert!(skip.explanation.contains("(value 3-10003)"), "{skip:?}");
        }
    }
}
