//! `duplicate`: one value at more than one offset of a partition, by any
//! mix of acknowledgements and reads. Values are unique per run, so a value
//! at two offsets was written twice (a retried produce without idempotence,
//! a replica that appended a batch twice) or a read misreported an offset.

use super::version_order::VersionOrder;
use super::{list, Anomaly, DUPLICATE, LISTED};

pub fn check(order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (partition, po) in order.partitions() {
        for entries in po.by_value() {
            if entries.len() < 2 {
                continue;
            }
            let value = entries[0].value;
            let offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
            let sources = list(
                entries.iter().map(|e| {
                    let how = match (e.acknowledged, e.read) {
                        (true, true) => "acknowledged and read",
                        (true, false) => "acknowledged",
                        _ => "read",
                    };
                    format!("{} ({how})", e.offset)
                }),
                LISTED,
            );
            out.push(Anomaly::new(
                DUPLICATE,
                partition,
                offsets,
                vec![value],
                format!(
                    "partition {partition}: value {value} appears at {} offsets: {sources}",
                    entries.len()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{check as check_all, DUPLICATE};
    use super::*;

    #[test]
    fn catches_a_value_read_at_two_offsets() {
        let h = history(vec![
            send(1, 0, 1, 2, &[("1-0", 0)]),
            send(1, 2, 3, 2, &[("1-1", 1)]),
            send(1, 4, 5, 2, &[("1-2", 2)]),
            poll(
                9,
                6,
                7,
                &[(2, &[(0, "1-0"), (1, "1-1"), (2, "1-2"), (3, "1-1")])],
            ),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            DUPLICATE,
            &[
                "partition 2",
                "value 1-1",
                "1 (acknowledged and read)",
                "3 (read)",
            ],
        );
        assert_eq!(a.offsets, vec![1, 3]);
        assert_eq!(a.values, vec!["1-1".to_string()]);
    }

    #[test]
    fn catches_a_value_acknowledged_at_one_offset_and_read_at_another() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 4)]),
            poll(9, 2, 3, &[(0, &[(7, "1-0")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            DUPLICATE,
            &["value 1-0", "4 (acknowledged)", "7 (read)"],
        );
        assert_eq!(a.offsets, vec![4, 7]);
    }

    #[test]
    fn rereading_at_the_same_offset_is_clean() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 0)]),
            poll(9, 2, 3, &[(0, &[(0, "1-0")])]),
            poll(8, 2, 3, &[(0, &[(0, "1-0")])]),
            seek(9, 4, &[(0, 0)]),
            poll(9, 5, 6, &[(0, &[(0, "1-0")])]),
        ]);
        assert_eq!(check(&VersionOrder::build(&h)), vec![]);
        assert_eq!(check_all(&h), vec![]);
    }
}
