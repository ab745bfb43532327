//! Whether each producer's acknowledged offsets follow the order it sent in.
//!
//! - `nonmonotonic-send`: for each process and partition, an ok send whose
//!   first acknowledged offset in the partition is at or below the last
//!   acknowledged offset of the process's previous ok send to it. "Previous"
//!   is the send that completed last before this one was invoked (ties: the
//!   higher offset): a producer with several requests in flight may see
//!   overlapping sends land in any order, but one that completed before
//!   another began must be below it. A retry (a send of values the process
//!   sent before) counts from its first attempt, as a Kafka client's send
//!   does: an idempotent producer's retry of a batch the broker already
//!   has is acknowledged at the original offset, below sends that
//!   completed after that first attempt began.
//! - `int-nonmonotonic-send`: inside one ok send, a write to a partition
//!   acknowledged at or below the previous write of that send to the same
//!   partition.
//! - `int-send-skip`: inside one ok send, two consecutive writes to a
//!   partition with another known record (from the version order) strictly
//!   between their offsets. A gap nobody observed is not a skip: it may be
//!   a transaction marker.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::version_order::{Step, VersionOrder};
use super::{Anomaly, INT_NONMONOTONIC_SEND, INT_SEND_SKIP, NONMONOTONIC_SEND};
use crate::history::{History, Op, Write};

/// What one ok send acknowledged in one partition.
struct Sent<'a> {
    process: u32,
    partition: i32,
    invoke: u64,
    /// `None` if the send is ok but has no completion time (treated as
    /// never completing, so it is nobody's predecessor).
    complete: Option<u64>,
    index: usize,
    first: (i64, &'a str),
    last: (i64, &'a str),
}

pub fn check(history: &History, order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    // (process, value) -> when a send of it was first invoked.
    let mut first_invoke: BTreeMap<(u32, &str), u64> = BTreeMap::new();
    for event in &history.events {
        if let Op::Send { writes } = &event.op {
            for w in writes {
                let t = first_invoke
                    .entry((event.process, w.value.as_str()))
                    .or_insert(event.invoke_nanos);
                *t = (*t).min(event.invoke_nanos);
            }
        }
    }
    let mut sent: Vec<Sent> = Vec::new();
    for (index, event) in history.events.iter().enumerate() {
        let Op::Send { writes } = &event.op else {
            continue;
        };
        if !event.is_ok() {
            continue;
        }
        // partition -> its acknowledged writes, in send order.
        let mut by_partition: BTreeMap<i32, Vec<(i64, &Write)>> = BTreeMap::new();
        for w in writes {
            if let Some(offset) = w.offset {
                by_partition
                    .entry(w.partition)
                    .or_default()
                    .push((offset, w));
            }
        }
        for (partition, acked) in by_partition {
            within_send(&mut out, order, partition, event.process, &acked);
            let (first, last) = (acked[0], acked[acked.len() - 1]);
            let invoke = acked
                .iter()
                .filter_map(|(_, w)| first_invoke.get(&(event.process, w.value.as_str())))
                .copied()
                .min()
                .unwrap_or(event.invoke_nanos);
            sent.push(Sent {
                process: event.process,
                partition,
                invoke,
                complete: event.complete_nanos,
                index,
                first: (first.0, &first.1.value),
                last: (last.0, &last.1.value),
            });
        }
    }
    sent.sort_unstable_by_key(|s| (s.process, s.partition, s.invoke, s.index));
    for group in sent.chunk_by(|a, b| (a.process, a.partition) == (b.process, b.partition)) {
        between_sends(&mut out, group);
    }
    out
}

fn within_send(
    out: &mut Vec<Anomaly>,
    order: &VersionOrder,
    partition: i32,
    process: u32,
    acked: &[(i64, &Write)],
) {
    let po = order.partition(partition);
    for pair in acked.windows(2) {
        let ((o1, w1), (o2, w2)) = (pair[0], pair[1]);
        let head = format!(
            "partition {partition}: one send by process {process} wrote {} then {}, \
             acknowledged at offsets {o1} then {o2}",
            w1.value, w2.value
        );
        let (kind, explanation) = match po.step(o1, o2) {
            Step::Next => continue,
            Step::Backwards => (INT_NONMONOTONIC_SEND, format!("{head}, going backwards")),
            Step::Skip(skipped) => (
                INT_SEND_SKIP,
                format!("{head}, with {} in between", po.describe_skipped(skipped)),
            ),
        };
        out.push(Anomaly::new(
            kind,
            partition,
            vec![o1, o2],
            vec![&w1.value, &w2.value],
            explanation,
        ));
    }
}

/// One process's ok sends to one partition, sorted by invocation.
fn between_sends(out: &mut Vec<Anomaly>, group: &[Sent]) {
    // Sends not yet known to have completed before the current invocation,
    // by (completion, last offset): earliest first.
    let mut pending: BinaryHeap<Reverse<(u64, i64, usize)>> = BinaryHeap::new();
    // The send that completed last before the current invocation.
    let mut previous: Option<usize> = None;
    for (i, s) in group.iter().enumerate() {
        while let Some(&Reverse((complete, _, j))) = pending.peek() {
            if complete > s.invoke {
                break;
            }
            pending.pop();
            previous = Some(j);
        }
        if let Some(j) = previous {
            let p = &group[j];
            if s.first.0 <= p.last.0 {
                out.push(Anomaly::new(
                    NONMONOTONIC_SEND,
                    s.partition,
                    vec![p.last.0, s.first.0],
                    vec![p.last.1, s.first.1],
                    format!(
                        "partition {}: process {} had value {} acknowledged at offset {}, \
                         then a later send's value {} was acknowledged at offset {}, \
                         at or below it",
                        s.partition, s.process, p.last.1, p.last.0, s.first.1, s.first.0
                    ),
                ));
            }
        }
        if let Some(complete) = s.complete {
            pending.push(Reverse((complete, s.last.0, i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{
        check as check_all, INT_NONMONOTONIC_SEND, INT_SEND_SKIP, NONMONOTONIC_SEND,
    };
    use super::*;

    #[test]
    fn catches_a_later_send_at_a_lower_offset() {
        let h = history(vec![
            send(1, 0, 2, 4, &[("1-0", 5)]),
            send(1, 3, 4, 4, &[("1-1", 3)]),
            poll(9, 10, 11, &[(4, &[(3, "1-1"), (5, "1-0")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            NONMONOTONIC_SEND,
            &[
                "partition 4",
                "process 1",
                "value 1-0 acknowledged at offset 5",
                "value 1-1 was acknowledged at offset 3",
            ],
        );
        assert_eq!(a.offsets, vec![5, 3]);
        assert_eq!(a.values, vec!["1-0".to_string(), "1-1".to_string()]);
    }

    #[test]
    fn compares_with_the_last_send_completed_before_invocation() {
        // 1-1 completes after 1-2 is invoked: 1-2 is compared with 1-0.
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            send(1, 2, 9, 0, &[("1-1", 3)]),
            send(1, 3, 4, 0, &[("1-2", 1)]),
            send(1, 10, 11, 0, &[("1-3", 2)]),
            poll(
                9,
                20,
                21,
                &[(0, &[(0, "1-0"), (1, "1-2"), (2, "1-3"), (3, "1-1")])],
            ),
        ]);
        let found = check_all(&h);
        // 1-3 was invoked after 1-1 (offset 3) completed, yet got offset 2.
        let a = only(
            &found,
            NONMONOTONIC_SEND,
            &["value 1-1 acknowledged at offset 3"],
        );
        assert_eq!(a.offsets, vec![3, 2]);
    }

    /// An idempotent retry acknowledged at the original offset, after a
    /// later send completed: the retry counts from its first attempt.
    #[test]
    fn a_retry_acknowledged_at_its_original_offset_counts_from_its_first_attempt() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            send_unknown(1, 2, 6, 0, &["1-1"]),
            send(1, 3, 4, 0, &[("1-2", 2)]),
            send(1, 7, 8, 0, &[("1-1", 1)]),
            poll(9, 20, 21, &[(0, &[(0, "1-0"), (1, "1-1"), (2, "1-2")])]),
        ]);
        let found = check_all(&h);
        assert!(
            found.iter().all(|a| a.kind != NONMONOTONIC_SEND),
            "{found:?}"
        );
        // A new value sent after 1-2 completed still may not land below it.
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            send(1, 3, 4, 0, &[("1-2", 2)]),
            send(1, 7, 8, 0, &[("1-3", 1)]),
            poll(9, 20, 21, &[(0, &[(0, "1-0"), (1, "1-3"), (2, "1-2")])]),
        ]);
        only(&check_all(&h), NONMONOTONIC_SEND, &["value 1-3"]);
    }

    #[test]
    fn catches_a_send_going_back_inside_one_send() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 1), ("1-1", 0)]),
            poll(9, 10, 11, &[(0, &[(0, "1-1"), (1, "1-0")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            INT_NONMONOTONIC_SEND,
            &["wrote 1-0 then 1-1", "offsets 1 then 0", "backwards"],
        );
        assert_eq!(a.offsets, vec![1, 0]);
    }

    #[test]
    fn catches_a_skip_inside_one_send() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0), ("1-1", 2)]),
            send(2, 0, 1, 0, &[("2-0", 1)]),
            poll(9, 10, 11, &[(0, &[(0, "1-0"), (1, "2-0"), (2, "1-1")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            INT_SEND_SKIP,
            &[
                "wrote 1-0 then 1-1",
                "offsets 0 then 2",
                "1 record known at offset 1 (value 2-0)",
            ],
        );
        assert_eq!(a.offsets, vec![0, 2]);
    }

    #[test]
    fn pipelined_interleaved_and_unobserved_gaps_are_clean() {
        let h = history(vec![
            // Overlapping sends landing out of order.
            send(1, 0, 10, 0, &[("1-0", 2)]),
            send(1, 1, 5, 0, &[("1-1", 1)]),
            // An unknown send between them proves nothing.
            send_unknown(1, 11, 12, 0, &["1-2"]),
            send(1, 13, 14, 0, &[("1-3", 4)]),
            // A gap nobody observed inside one send (offset 6).
            send(1, 15, 16, 0, &[("1-4", 5), ("1-5", 7)]),
            // Two partitions in one send, and another process's sends.
            send_multi(2, 0, 1, &[(0, "2-0", 0), (1, "2-1", 0), (1, "2-2", 1)]),
            send(2, 2, 3, 1, &[("2-3", 2)]),
            // An ok send with no completion time is nobody's predecessor.
            {
                let mut e = send(3, 0, 0, 1, &[("3-0", 5)]);
                e.complete_nanos = None;
                e
            },
            send(3, 20, 21, 1, &[("3-1", 3)]),
            poll(
                9,
                30,
                31,
                &[(
                    0,
                    &[
                        (0, "2-0"),
                        (1, "1-1"),
                        (2, "1-0"),
                        (4, "1-3"),
                        (5, "1-4"),
                        (7, "1-5"),
                    ],
                )],
            ),
            poll(
                9,
                32,
                33,
                &[(
                    1,
                    &[(0, "2-1"), (1, "2-2"), (2, "2-3"), (3, "3-1"), (5, "3-0")],
                )],
            ),
        ]);
        let order = VersionOrder::build(&h);
        assert_eq!(check(&h, &order), vec![]);
        assert_eq!(check_all(&h), vec![]);
    }
}
