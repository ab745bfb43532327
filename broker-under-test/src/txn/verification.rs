//! Which partitions each producer's open transaction has added, as the
//! transaction coordinator knows them (KIP-890 part 1). A partition leader
//! takes the first transactional batch of a producer only if its
//! transaction includes the partition: a late batch from a transaction
//! that already ended (a "zombie" write after an abort) would otherwise
//! open a transaction no coordinator will ever end, and the last stable
//! offset would hang there for good.
//!
//! The coordinator adds partitions here (AddPartitionsToTxn) and the
//! markers that end a transaction remove them.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct TxnVerification {
    /// Producer id -> (epoch, the partitions its transaction added).
    producers: BTreeMap<i64, (i16, BTreeSet<(String, i32)>)>,
}

impl TxnVerification {
    /// The transaction of `producer_id` at `epoch` includes the partition.
    /// A newer epoch replaces what an older one added.
    pub fn add(&mut self, producer_id: i64, epoch: i16, topic: &str, partition: i32) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| (epoch, BTreeSet::new()));
        if epoch < entry.0 {
            return;
        }
        if epoch > entry.0 {
            *entry = (epoch, BTreeSet::new());
        }
        entry.1.insert((topic.to_string(), partition));
    }

    /// Whether a transactional batch of `producer_id` at `epoch` may open a
    /// transaction in the partition.
    pub fn includes(&self, producer_id: i64, epoch: i16, topic: &str, partition: i32) -> bool {
        self.producers.get(&producer_id).is_some_and(|(e, parts)| {
            *e == epoch && parts.contains(&(topic.to_string(), partition))
        })
    }

    /// The transaction ended in this partition (its marker is written).
    pub fn ended(&mut self, producer_id: i64, topic: &str, partition: i32) {
        if let Some((_, parts)) = self.producers.get_mut(&producer_id) {
            parts.remove(&(topic.to_string(), partition));
            if parts.is_empty() {
                self.producers.remove(&producer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_added_partitions_at_the_current_epoch_are_included_until_the_marker() {
        let mut v = TxnVerification::default();
        assert!(!v.includes(1, 0, "t", 0));
        v.add(1, 0, "t", 0);
        assert!(v.includes(1, 0, "t", 0));
        assert!(!v.includes(1, 0, "t", 1));
        assert!(!v.includes(1, 1, "t", 0), "another epoch");
        v.add(1, 2, "t", 1);
        assert!(!v.includes(1, 0, "t", 0), "a newer epoch replaced it");
        v.add(1, 1, "t", 0);
        assert!(!v.includes(1, 1, "t", 0), "an older epoch adds nothing");
        v.ended(1, "t", 1);
        assert!(!v.includes(1, 2, "t", 1));
    }
}
