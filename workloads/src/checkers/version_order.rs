//! The version order of each partition: which value sits at which offset, as
//! told by every ok send's acknowledged offsets and every ok poll's reads.
//! Unknown, failed and in-flight operations say nothing about offsets, so
//! they are left out.
//!
//! Offsets may have gaps (transaction markers, records nobody observed): the
//! order only knows the offsets someone was told about. "The next offset
//! after o" is the next *known* one.
//!
//! Reports `inconsistent-offsets`: one offset of a partition holding two
//! different values.

use std::collections::BTreeMap;

use super::{list, plural, Anomaly, INCONSISTENT_OFFSETS, LISTED};
use crate::history::{History, Op};

/// One distinct (offset, value) of a partition and who saw it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub offset: i64,
    pub value: &'a str,
    /// An ok send was told this value is at this offset.
    pub acknowledged: bool,
    /// An ok poll returned this value at this offset.
    pub read: bool,
}

impl Entry<'_> {
    fn source(&self) -> &'static str {
        match (self.acknowledged, self.read) {
            (true, true) => "acknowledged and read",
            (true, false) => "acknowledged to a send",
            _ => "read by a poll",
        }
    }
}

/// The version order of one partition.
#[derive(Debug, Default)]
pub struct PartitionOrder<'a> {
    /// Every offset observed, ascending, once each.
    offsets: Vec<i64>,
    /// `entries[starts[i]..starts[i + 1]]` are the entries at `offsets[i]`.
    starts: Vec<usize>,
    /// Every distinct (offset, value), sorted by offset then value.
    entries: Vec<Entry<'a>>,
    /// The same entries, sorted by value then offset.
    by_value: Vec<Entry<'a>>,
    /// The highest offset an ok poll returned.
    max_read: Option<i64>,
}

/// How two records a client saw one after the other relate in the order.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'o> {
    /// The second is the next known offset after the first.
    Next,
    /// The second is at or below the first.
    Backwards,
    /// Known offsets lie strictly between them.
    Skip(&'o [i64]),
}

impl<'a> PartitionOrder<'a> {
    /// `entries` sorted by offset then value, distinct.
    fn new(entries: Vec<Entry<'a>>, max_read: Option<i64>) -> Self {
        let mut offsets = Vec::new();
        let mut starts = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if offsets.last() != Some(&e.offset) {
                offsets.push(e.offset);
                starts.push(i);
            }
        }
        starts.push(entries.len());
        let mut by_value = entries.clone();
        by_value.sort_unstable_by(|a, b| (a.value, a.offset).cmp(&(b.value, b.offset)));
        PartitionOrder {
            offsets,
            starts,
            entries,
            by_value,
            max_read,
        }
    }

    /// The highest offset any ok poll returned for this partition.
    pub fn max_read(&self) -> Option<i64> {
        self.max_read
    }

    /// Every known offset with its entries, ascending.
    pub fn by_offset(&self) -> impl Iterator<Item = (i64, &[Entry<'a>])> + '_ {
        self.offsets
            .iter()
            .enumerate()
            .map(move |(i, &o)| (o, &self.entries[self.starts[i]..self.starts[i + 1]]))
    }

    /// Every distinct value with its entries (one per offset it was seen
    /// at, ascending), in value order.
    pub fn by_value(&self) -> impl Iterator<Item = &[Entry<'a>]> + '_ {
        self.by_value.chunk_by(|a, b| a.value == b.value)
    }

    /// The entries at `offset` (empty if the offset is unknown).
    pub fn at(&self, offset: i64) -> &[Entry<'a>] {
        match self.offsets.binary_search(&offset) {
            Ok(i) => &self.entries[self.starts[i]..self.starts[i + 1]],
            Err(_) => &[],
        }
    }

    /// A value at `offset` (the least, if several), or `"?"`.
    pub fn value_at(&self, offset: i64) -> &'a str {
        self.at(offset).first().map_or("?", |e| e.value)
    }

    /// The known offsets strictly between `low` and `high`.
    pub fn between(&self, low: i64, high: i64) -> &[i64] {
        let from = self.offsets.partition_point(|&o| o <= low);
        let to = self.offsets.partition_point(|&o| o < high).max(from);
        &self.offsets[from..to]
    }

    /// How a record at `second` relates to one at `first` seen just before.
    pub fn step(&self, first: i64, second: i64) -> Step<'_> {
        if second <= first {
            return Step::Backwards;
        }
        let skipped = self.between(first, second);
        if skipped.is_empty() {
            Step::Next
        } else {
            Step::Skip(skipped)
        }
    }

    /// "offsets 5, 6 (values 1-3, 2-9)" for skipped offsets, capped.
    pub fn describe_skipped(&self, skipped: &[i64]) -> String {
        format!(
            "{} known at offset{} {} (value{} {})",
            plural(skipped.len(), "record"),
            if skipped.len() == 1 { "" } else { "s" },
            list(skipped, LISTED),
            if skipped.len() == 1 { "" } else { "s" },
            list(skipped.iter().map(|&o| self.value_at(o)), LISTED),
        )
    }
}

/// The version order of every partition.
#[derive(Debug, Default)]
pub struct VersionOrder<'a> {
    partitions: BTreeMap<i32, PartitionOrder<'a>>,
    empty: PartitionOrder<'a>,
}

impl<'a> VersionOrder<'a> {
    pub fn build(history: &'a History) -> Self {
        // (partition, offset, value, read): sorted, then merged.
        let mut seen: Vec<(i32, i64, &'a str, bool)> = Vec::new();
        let mut max_read: BTreeMap<i32, i64> = BTreeMap::new();
        for event in history.events.iter().filter(|e| e.is_ok()) {
            match &event.op {
                Op::Send { writes } => {
                    for w in writes {
                        if let Some(offset) = w.offset {
                            seen.push((w.partition, offset, &w.value, false));
                        }
                    }
                }
                Op::Poll { reads } => {
                    for (&partition, records) in reads {
                        for r in records {
                            seen.push((partition, r.offset, &r.value, true));
                            let max = max_read.entry(partition).or_insert(r.offset);
                            *max = (*max).max(r.offset);
                        }
                    }
                }
                Op::Seek { .. }
                | Op::CreateTopic { .. }
                | Op::Assignment { .. }
                | Op::Commit { .. }
                | Op::OffsetReset { .. } => {}
            }
        }
        seen.sort_unstable();
        let mut partitions = BTreeMap::new();
        for group in seen.chunk_by(|a, b| a.0 == b.0) {
            let partition = group[0].0;
            let mut entries: Vec<Entry<'a>> = Vec::new();
            for &(_, offset, value, read) in group {
                match entries.last_mut() {
                    Some(e) if e.offset == offset && e.value == value => {
                        e.acknowledged |= !read;
                        e.read |= read;
                    }
                    _ => entries.push(Entry {
                        offset,
                        value,
                        acknowledged: !read,
                        read,
                    }),
                }
            }
            let max = max_read.get(&partition).copied();
            partitions.insert(partition, PartitionOrder::new(entries, max));
        }
        VersionOrder {
            partitions,
            empty: PartitionOrder::default(),
        }
    }

    /// The order of `partition` (empty if nothing is known about it).
    pub fn partition(&self, partition: i32) -> &PartitionOrder<'a> {
        self.partitions.get(&partition).unwrap_or(&self.empty)
    }

    /// Every partition with its order, ascending.
    pub fn partitions(&self) -> impl Iterator<Item = (i32, &PartitionOrder<'a>)> + '_ {
        self.partitions.iter().map(|(&p, o)| (p, o))
    }
}

/// `inconsistent-offsets`: an offset holding more than one value.
pub fn check(order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (partition, po) in order.partitions() {
        for (offset, entries) in po.by_offset() {
            if entries.len() < 2 {
                continue;
            }
            let described = list(
                entries
                    .iter()
                    .map(|e| format!("{} ({})", e.value, e.source())),
                LISTED,
            );
            out.push(Anomaly::new(
                INCONSISTENT_OFFSETS,
                partition,
                vec![offset],
                entries.iter().map(|e| e.value).collect(),
                format!(
                    "partition {partition}: offset {offset} holds {} different values: {described}",
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
    use super::super::{check as check_all, INCONSISTENT_OFFSETS};
    use super::*;

    #[test]
    fn builds_the_order_from_acks_and_reads() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("a", 0)]),
            send(1, 2, 3, 0, &[("c", 4)]),
            send_unknown(1, 4, 5, 0, &["b"]),
            send_failed(1, 6, 7, 0, &["z"]),
            poll(9, 8, 9, &[(0, &[(0, "a"), (2, "b")])]),
            poll_failed(9, 10, 11, &[(0, &[(3, "y")])]),
        ]);
        let order = VersionOrder::build(&h);
        let p = order.partition(0);
        let offsets: Vec<i64> = p.by_offset().map(|(o, _)| o).collect();
        assert_eq!(offsets, vec![0, 2, 4]);
        assert_eq!(p.max_read(), Some(2));
        assert_eq!(p.value_at(2), "b");
        assert_eq!(p.value_at(3), "?");
        assert_eq!(
            p.at(0),
            &[Entry {
                offset: 0,
                value: "a",
                acknowledged: true,
                read: true
            }]
        );
        assert_eq!(p.step(0, 2), Step::Next);
        assert_eq!(p.step(0, 4), Step::Skip(&[2]));
        assert_eq!(p.step(2, 2), Step::Backwards);
        assert_eq!(p.step(4, 0), Step::Backwards);
        assert_eq!(p.between(-5, 100), &[0, 2, 4]);
        assert_eq!(order.partition(7).max_read(), None);
        assert!(order.partition(7).between(0, 10).is_empty());
    }

    #[test]
    fn catches_a_read_disagreeing_with_an_acknowledgement() {
        let h = history(vec![
            send(1, 0, 1, 3, &[("1-0", 0)]),
            send(1, 2, 3, 3, &[("1-1", 1)]),
            poll(9, 4, 5, &[(3, &[(0, "1-0"), (1, "2-7")])]),
            poll(8, 4, 5, &[(3, &[(0, "1-0"), (1, "1-1")])]),
        ]);
        let found = check_all(&h);
        let a = only(
            &found,
            INCONSISTENT_OFFSETS,
            &[
                "partition 3",
                "offset 1",
                "1-1 (acknowledged and read)",
                "2-7 (read by a poll)",
            ],
        );
        assert_eq!(a.partition, Some(3));
        assert_eq!(a.offsets, vec![1]);
        assert_eq!(a.values, vec!["1-1".to_string(), "2-7".to_string()]);
    }

    #[test]
    fn catches_two_sends_acknowledged_at_one_offset() {
        // Each value is also read once, at another partition's reader, so
        // nothing is lost: only the acknowledgements disagree.
        let h = history(vec![
            send(1, 0, 1, 0, &[("1-0", 5)]),
            send(2, 0, 1, 0, &[("2-0", 5)]),
            poll(9, 4, 5, &[(0, &[(5, "1-0")])]),
        ]);
        let found = check_all(&h);
        // 2-0 at 5 was acknowledged and never read although reads reached 5:
        // that is also a lost write; the inconsistency comes first.
        assert_eq!(kinds(&found), vec![INCONSISTENT_OFFSETS, "lost-write"]);
        let a = &found[0];
        assert!(a.explanation.contains("offset 5 holds 2 different values"));
        assert!(a.explanation.contains("1-0 (acknowledged and read)"));
        assert!(a.explanation.contains("2-0 (acknowledged to a send)"));
    }

    #[test]
    fn agreeing_acks_and_reads_are_clean() {
        let h = history(vec![
            send(1, 0, 1, 0, &[("a", 0), ("b", 1)]),
            send_unknown(1, 2, 3, 0, &["c"]),
            poll(9, 4, 5, &[(0, &[(0, "a"), (1, "b"), (2, "c")])]),
            poll(8, 4, 5, &[(0, &[(1, "b"), (2, "c")])]),
        ]);
        assert_eq!(check(&VersionOrder::build(&h)), vec![]);
        assert_eq!(check_all(&h), vec![]);
    }
}
