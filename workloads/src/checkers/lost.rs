//! Acknowledged values that no read observed.
//!
//! - `lost-write`: a value acknowledged at offset `o` of a partition that no
//!   ok poll returned (at any offset), while some ok poll of that partition
//!   returned an offset `>= o`: readers went past it, so it should have been
//!   seen. One anomaly per value.
//! - `unseen`: a value acknowledged at offset `o`, never read, and no read of
//!   the partition reached `o`. Not proof of loss, but the consumers never
//!   caught up: how a liveness problem shows. One anomaly per partition,
//!   listing every such value.

use super::version_order::VersionOrder;
use super::{list, plural, Anomaly, LISTED, LOST_WRITE, UNSEEN};

pub fn check(order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (partition, po) in order.partitions() {
        let max_read = po.max_read();
        // (offset, value), ascending by offset.
        let mut unseen: Vec<(i64, &str)> = Vec::new();
        for entries in po.by_value() {
            if entries.iter().any(|e| e.read) {
                continue;
            }
            for e in entries.iter().filter(|e| e.acknowledged) {
                match max_read {
                    Some(max) if max >= e.offset => {
                        let instead = po
                            .at(e.offset)
                            .iter()
                            .filter(|other| other.read)
                            .map(|other| other.value)
                            .collect::<Vec<_>>();
                        let instead = if instead.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (reads found {} at that offset instead)",
                                list(&instead, LISTED)
                            )
                        };
                        out.push(Anomaly::new(
                            LOST_WRITE,
                            partition,
                            vec![e.offset, max],
                            vec![e.value, po.value_at(max)],
                            format!(
                                "partition {partition}: value {} was acknowledged at offset {} \
                                 but no read observed it, while reads reached offset {max} \
                                 (value {}){instead}",
                                e.value,
                                e.offset,
                                po.value_at(max)
                            ),
                        ));
                    }
                    _ => unseen.push((e.offset, e.value)),
                }
            }
        }
        if unseen.is_empty() {
            continue;
        }
        unseen.sort_unstable();
        let reached = match max_read {
            Some(max) => format!("reads reached only offset {max}"),
            None => "no poll read this partition".to_string(),
        };
        out.push(Anomaly::new(
            UNSEEN,
            partition,
            unseen.iter().map(|&(o, _)| o).collect(),
            unseen.iter().map(|&(_, v)| v).collect(),
            format!(
                "partition {partition}: {} acknowledged at offsets {}..={} never read, \
                 and {reached}: {}",
                plural(unseen.len(), "value"),
                unseen[0].0,
                unseen[unseen.len() - 1].0,
                list(unseen.iter().map(|(o, v)| format!("{v} at {o}")), LISTED)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{check as check_all, LOST_WRITE, UNSEEN};
    use super::*;

    #[test]
    fn catches_a_lost_write_below_what_was_read() {
        // Two readers that each read a single record: neither skipped
        // anything in its own sequence, but nobody ever read 1-734.
        let h = history(vec![
            send(1, 0, 1, 2, &[("1-733", 3046)]),
            send(1, 2, 3, 2, &[("1-734", 3047)]),
            send(1, 4, 5, 2, &[("1-735", 3102)]),
            poll(9, 6, 7, &[(2, &[(3046, "1-733")])]),
            poll(8, 6, 7, &[(2, &[(3102, "1-735")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            LOST_WRITE,
            &[
                "partition 2: value 1-734 was acknowledged at offset 3047 but no read observed it",
                "reads reached offset 3102",
            ],
        );
        assert_eq!(a.partition, Some(2));
        assert_eq!(a.offsets, vec![3047, 3102]);
        assert_eq!(a.values, vec!["1-734".to_string(), "1-735".to_string()]);
    }

    #[test]
    fn a_lost_write_names_what_was_read_in_its_place() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            poll(9, 2, 3, &[(0, &[(0, "2-0")])]),
        ]);
        let found = check_all(&h);
        assert_eq!(kinds(&found), vec!["inconsistent-offsets", LOST_WRITE]);
        assert!(found[1]
            .explanation
            .contains("reads found 2-0 at that offset instead"));
    }

    #[test]
    fn catches_unseen_values_past_the_last_read() {
        let h = history(vec![
            send(1, 0, 1, 1, &[("1-0", 0)]),
            send(1, 2, 3, 1, &[("1-1", 1)]),
            send(1, 4, 5, 1, &[("1-2", 2)]),
            poll(9, 6, 7, &[(1, &[(0, "1-0")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            UNSEEN,
            &[
                "partition 1",
                "2 values",
                "1-1 at 1",
                "1-2 at 2",
                "reads reached only offset 0",
            ],
        );
        assert_eq!(a.offsets, vec![1, 2]);
        assert_eq!(a.values, vec!["1-1".to_string(), "1-2".to_string()]);
    }

    #[test]
    fn a_partition_nobody_polled_is_unseen() {
        let h = history(vec![send(1, 0, 1, 5, &[("1-0", 0)])]);
        let found = check_all(&h);
        only(
            &found,
            UNSEEN,
            &["partition 5", "1 value", "no poll read this partition"],
        );
    }

    #[test]
    fn unacknowledged_values_are_never_lost() {
        // The unknown and failed sends never show up; the unknown one that
        // did land is read; an acknowledged value read at another offset is
        // a duplicate, not a lost write.
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            send_unknown(1, 2, 3, 0, &["1-1"]),
            send_failed(1, 4, 5, 0, &["1-2"]),
            send_unknown(1, 6, 7, 0, &["1-3"]),
            send_in_flight(1, 8, 0, &["1-4"]),
            send(1, 10, 11, 0, &[("1-5", 2)]),
            poll(9, 12, 13, &[(0, &[(0, "1-0"), (1, "1-3"), (2, "1-5")])]),
        ]);
        assert_eq!(check(&VersionOrder::build(&h)), vec![]);
        assert_eq!(check_all(&h), vec![]);
    }
}
