//! The leader epoch cache (KIP-101/279): which leader epoch started at which
//! offset, kept in memory as sorted (epoch, start offset) entries with both
//! strictly increasing, and stored in `leader-epoch-checkpoint` in the log
//! directory as Kafka does: a version line (`0`), an entry-count line, then
//! one `epoch start_offset` line per entry. Pure; the log does the I/O.

pub const EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub const EPOCH_FILE_TMP: &str = "leader-epoch-checkpoint.tmp";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// Record that `epoch` starts at `start`. Entries with an epoch at or above
    /// `epoch`, or a start at or above `start`, are removed first (Kafka's
    /// assign). Ignored (false) for a negative epoch or start, an epoch below the
    /// latest, or the latest epoch again at the same or a later start.
    pub fn assign(&mut self, epoch: i32, start: i64) -> bool {
        if epoch < 0 || start < 0 {
            return false;
        }
        if let Some(&(le, ls)) = self.entries.last() {
            if epoch < le || (epoch == le && start >= ls) {
                return false;
            }
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start);
        self.entries.push((epoch, start));
        true
    }

    /// Drop entries starting at or above `end` (the log was cut to end there).
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end);
        self.entries.len() != before
    }

    /// The log now starts at `start`: drop entries wholly below it and raise the
    /// start of the one covering it.
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let covering = self.entries.partition_point(|&(_, s)| s <= start);
        if covering == 0 {
            return false;
        }
        let mut changed = false;
        if covering > 1 {
            self.entries.drain(..covering - 1);
            changed = true;
        }
        if self.entries[0].1 < start {
            self.entries[0].1 = start;
            changed = true;
        }
        changed
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: (epoch, end offset) for a
    /// follower's `requested` epoch, with `leo` the log end offset.
    pub fn end_offset_for(&self, requested: i32, leo: i64) -> (i32, i64) {
        if requested < 0 {
            return (-1, -1);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, leo);
        }
        let higher = self.entries.partition_point(|&(e, _)| e <= requested);
        let Some(&(_, higher_start)) = self.entries.get(higher) else {
            return (-1, -1);
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some((floor_epoch, _)) => (floor_epoch, higher_start),
            None => (requested, higher_start),
        }
    }

    /// The epoch of the batch holding `offset`, per the cache.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|&(_, s)| s <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (e, s) in &self.entries {
            out.push_str(&format!("{e} {s}\n"));
        }
        out
    }

    /// `None` for anything malformed (wrong version or count, unsorted entries).
    pub fn parse(bytes: &[u8]) -> Option<EpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = EpochCache::default();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next()?.parse().ok()?;
            let start: i64 = parts.next()?.parse().ok()?;
            if parts.next().is_some() || epoch < 0 || start < 0 {
                return None;
            }
            if let Some(&(le, ls)) = cache.entries.last() {
                if epoch <= le || start <= ls {
                    return None;
                }
            }
            cache.entries.push((epoch, start));
        }
        (cache.entries.len() == count).then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache {
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn end_offset_for_kafka_cases() {
        let c = cache(&[(2, 6), (4, 11), (6, 16)]);
        // Equal to the latest epoch: the log end.
        assert_eq!(c.end_offset_for(6, 20), (6, 20));
        // A known epoch: the next epoch's start.
        assert_eq!(c.end_offset_for(2, 20), (2, 11));
        // An epoch in a gap (3 unknown): the floor epoch, the next start.
        assert_eq!(c.end_offset_for(3, 20), (2, 11));
        assert_eq!(c.end_offset_for(5, 20), (4, 16));
        // Below the first epoch: the requested epoch, the first start.
        assert_eq!(c.end_offset_for(1, 20), (1, 6));
        assert_eq!(c.end_offset_for(0, 20), (0, 6));
        // Above the latest: undefined.
        assert_eq!(c.end_offset_for(7, 20), (-1, -1));
        // Undefined epoch, or nothing cached: undefined.
        assert_eq!(c.end_offset_for(-1, 20), (-1, -1));
        assert_eq!(cache(&[]).end_offset_for(0, 20), (-1, -1));
    }

    #[test]
    fn assign_and_truncate() {
        let mut c = EpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5), "same epoch later: no change");
        assert!(!c.assign(0, 5), "older epoch ignored");
        assert!(!c.assign(-1, 5));
        assert!(c.assign(3, 10));
        assert!(c.assign(5, 20));
        // A new epoch starting below existing entries replaces them.
        assert!(c.assign(7, 15));
        assert_eq!(c.entries(), &[(1, 0), (3, 10), (7, 15)]);
        assert_eq!(c.epoch_at(14), Some(3));
        assert_eq!(c.epoch_at(15), Some(7));
        assert_eq!(c.epoch_at(0), Some(1));
        assert_eq!(cache(&[(1, 5)]).epoch_at(4), None);
        assert!(c.truncate_from_end(15));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert!(!c.truncate_from_end(11));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(3, 12)]);
        assert!(!c.truncate_from_start(12));
        assert!(!c.truncate_from_start(5));
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(c.truncate_from_start(10));
        assert_eq!(c.entries(), &[(3, 10)]);
    }

    #[test]
    fn file_roundtrip_and_garbage() {
        let c = cache(&[(0, 0), (4, 100)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n4 100\n");
        assert_eq!(EpochCache::parse(c.encode().as_bytes()), Some(c));
        assert_eq!(EpochCache::parse(b"0\n0\n"), Some(EpochCache::default()));
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n0 0\n",
            b"0\n2\n4 100\n0 0\n",
            b"0\n1\n0 x\n",
            b"0\n1\n-1 0\n",
            b"0\n1\n0 0 0\n",
            b"\xff\xfe",
        ] {
            assert_eq!(EpochCache::parse(bad), None, "{bad:?}");
        }
    }
}
