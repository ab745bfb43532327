//! Whether each consumer read each partition in log order, without skipping.
//!
//! For each process and partition, consecutive ok polls that returned
//! records of that partition (in history order; polls that returned nothing
//! for the partition change nothing) are compared: `L` the last offset the
//! earlier poll returned, `F` the first offset the later one returned.
//!
//! - `nonmonotonic-poll`: `F <= L`: the consumer went back or repeated.
//! - `poll-skip`: some offset known to the version order lies strictly
//!   between `L` and `F`: the consumer skipped records that exist.
//!
//! A `Seek` of the process (unless it failed) naming the partition forgets
//! `L`: the next poll may start anywhere. The consumer must record a seek
//! whenever its position moves other than by polling (assignment,
//! rebalance, offset reset).
//!
//! The `int-` variants compare consecutive records inside one poll's list
//! for one partition in the same way.

use std::collections::BTreeMap;

use super::version_order::{PartitionOrder, Step, VersionOrder};
use super::{Anomaly, INT_NONMONOTONIC_POLL, INT_POLL_SKIP, NONMONOTONIC_POLL, POLL_SKIP};
use crate::history::{History, Op, Outcome, Read};

pub fn check(history: &History, order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    // (process, partition) -> last record its previous poll returned.
    let mut last: BTreeMap<(u32, i32), &Read> = BTreeMap::new();
    for event in &history.events {
        match &event.op {
            Op::Seek { positions } if !matches!(event.outcome, Some(Outcome::Fail { .. })) => {
                for partition in positions.keys() {
                    last.remove(&(event.process, *partition));
                }
            }
            Op::Poll { reads } if event.is_ok() => {
                for (&partition, records) in reads {
                    let (Some(first), Some(final_read)) = (records.first(), records.last()) else {
                        continue;
                    };
                    let po = order.partition(partition);
                    let process = event.process;
                    if let Some(previous) = last.get(&(process, partition)) {
                        between_polls(&mut out, po, partition, process, previous, first);
                    }
                    for pair in records.windows(2) {
                        within_poll(&mut out, po, partition, process, &pair[0], &pair[1]);
                    }
                    last.insert((process, partition), final_read);
                }
            }
            _ => {}
        }
    }
    out
}

fn between_polls(
    out: &mut Vec<Anomaly>,
    po: &PartitionOrder,
    partition: i32,
    process: u32,
    previous: &Read,
    next: &Read,
) {
    let (l, f) = (previous.offset, next.offset);
    let offsets = vec![l, f];
    let values = vec![previous.value.as_str(), next.value.as_str()];
    let head = format!(
        "partition {partition}: process {process}'s poll ended at offset {l} (value {}) \
         and its next poll started at offset {f} (value {})",
        previous.value, next.value
    );
    match po.step(l, f) {
        Step::Next => {}
        Step::Backwards => out.push(Anomaly::new(
            NONMONOTONIC_POLL,
            partition,
            offsets,
            values,
            format!("{head}, at or below where the previous poll ended"),
        )),
        Step::Skip(skipped) => out.push(Anomaly::new(
            POLL_SKIP,
            partition,
            offsets,
            values,
            format!("{head}, skipping {}", po.describe_skipped(skipped)),
        )),
    }
}

fn within_poll(
    out: &mut Vec<Anomaly>,
    po: &PartitionOrder,
    partition: i32,
    process: u32,
    a: &Read,
    b: &Read,
) {
    let offsets = vec![a.offset, b.offset];
    let values = vec![a.value.as_str(), b.value.as_str()];
    let head = format!(
        "partition {partition}: one poll by process {process} returned offset {} (value {}) \
         then offset {} (value {})",
        a.offset, a.value, b.offset, b.value
    );
    match po.step(a.offset, b.offset) {
        Step::Next => {}
        Step::Backwards => out.push(Anomaly::new(
            INT_NONMONOTONIC_POLL,
            partition,
            offsets,
            values,
            format!("{head}, going backwards"),
        )),
        Step::Skip(skipped) => out.push(Anomaly::new(
            INT_POLL_SKIP,
            partition,
            offsets,
            values,
            format!("{head}, skipping {}", po.describe_skipped(skipped)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{
        check as check_all, INT_NONMONOTONIC_POLL, INT_POLL_SKIP, NONMONOTONIC_POLL, POLL_SKIP,
    };
    use super::*;

    /// a..d acknowledged at offsets 0..=3 of partition 0.
    fn sends() -> Vec<crate::history::Event> {
        vec![
            send(1, 0, 1, 0, &[("a", 0)]),
            send(1, 2, 3, 0, &[("b", 1)]),
            send(1, 4, 5, 0, &[("c", 2)]),
            send(1, 6, 7, 0, &[("d", 3)]),
        ]
    }

    /// Process 11 reads the whole partition, so nothing is lost.
    fn everything() -> crate::history::Event {
        poll(
            11,
            50,
            51,
            &[(0, &[(0, "a"), (1, "b"), (2, "c"), (3, "d")])],
        )
    }

    #[test]
    fn catches_a_poll_going_back() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(0, "a"), (1, "b")])]));
        events.push(poll(10, 12, 13, &[(0, &[(1, "b"), (2, "c"), (3, "d")])]));
        let found = check_all(&history(events));
        let a = only(
            &found,
            NONMONOTONIC_POLL,
            &[
                "partition 0",
                "process 10",
                "ended at offset 1 (value b)",
                "started at offset 1 (value b)",
            ],
        );
        assert_eq!(a.offsets, vec![1, 1]);
        assert_eq!(a.values, vec!["b".to_string(), "b".to_string()]);
    }

    #[test]
    fn catches_a_poll_skipping_records() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(0, "a")])]));
        // An empty poll in between changes nothing.
        events.push(poll(10, 12, 13, &[(0, &[])]));
        events.push(poll(10, 14, 15, &[(0, &[(3, "d")])]));
        events.push(everything());
        let found = check_all(&history(events));
        let a = only(
            &found,
            POLL_SKIP,
            &[
                "ended at offset 0 (value a)",
                "started at offset 3 (value d)",
                "skipping 2 records known at offsets 1, 2 (values b, c)",
            ],
        );
        assert_eq!(a.offsets, vec![0, 3]);
    }

    #[test]
    fn catches_a_poll_going_back_inside_one_poll() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(1, "b"), (0, "a")])]));
        events.push(everything());
        let found = check_all(&history(events));
        let a = only(
            &found,
            INT_NONMONOTONIC_POLL,
            &[
                "returned offset 1 (value b) then offset 0 (value a)",
                "backwards",
            ],
        );
        assert_eq!(a.offsets, vec![1, 0]);
        assert_eq!(a.values, vec!["b".to_string(), "a".to_string()]);
    }

    #[test]
    fn catches_a_skip_inside_one_poll() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(0, "a"), (2, "c"), (3, "d")])]));
        events.push(everything());
        let found = check_all(&history(events));
        let a = only(
            &found,
            INT_POLL_SKIP,
            &[
                "returned offset 0 (value a) then offset 2 (value c)",
                "skipping 1 record known at offset 1 (value b)",
            ],
        );
        assert_eq!(a.offsets, vec![0, 2]);
    }

    #[test]
    fn seeks_gaps_other_processes_and_empty_polls_are_clean() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(0, "a"), (1, "b")])]));
        events.push(poll_empty(10, 12, 13));
        // Seek back: re-reading is expected.
        events.push(seek(10, 14, &[(0, 0)]));
        events.push(poll(10, 15, 16, &[(0, &[(0, "a"), (1, "b"), (2, "c")])]));
        // Seek forward: skipping is expected.
        events.push(seek(10, 17, &[(0, 3)]));
        events.push(poll(10, 18, 19, &[(0, &[(3, "d")])]));
        // Another process's polls do not continue process 10's.
        events.push(poll(12, 20, 21, &[(0, &[(1, "b")])]));
        // A failed poll is not evidence.
        events.push(poll_failed(10, 22, 23, &[(0, &[(0, "a")])]));
        // Offset 4 is never seen by anyone (a transaction marker).
        events.push(send(1, 24, 25, 0, &[("e", 5)]));
        events.push(poll(10, 26, 27, &[(0, &[(5, "e")])]));
        events.push(poll(12, 28, 29, &[(0, &[(2, "c"), (3, "d"), (5, "e")])]));
        events.push(everything());
        let h = history(events);
        let order = VersionOrder::build(&h);
        assert_eq!(check(&h, &order), vec![]);
        assert_eq!(check_all(&h), vec![]);
    }

    #[test]
    fn a_failed_seek_does_not_reset() {
        let mut events = sends();
        events.push(poll(10, 10, 11, &[(0, &[(0, "a"), (1, "b")])]));
        let mut failed = seek(10, 12, &[(0, 0)]);
        failed.outcome = Some(Outcome::Fail {
            error: "unknown topic".into(),
        });
        events.push(failed);
        events.push(poll(10, 13, 14, &[(0, &[(0, "a")])]));
        events.push(everything());
        let found = check_all(&history(events));
        only(
            &found,
            NONMONOTONIC_POLL,
            &["ended at offset 1", "started at offset 0"],
        );
    }
}
