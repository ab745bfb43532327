//! The aborted transactions of a partition (Kafka's transaction index):
//! what a `read_committed` consumer needs to drop aborted records from the
//! batches it reads. Kept in memory for the whole log; each closed segment's
//! share (the aborts whose marker lies in it) is written at its roll as
//! `<base>.txnindex`, and removed with it. The active segment's share is
//! rebuilt by recovery, which always scans the segments above the newest
//! producer state snapshot.

use std::collections::BTreeSet;

use super::producers::AbortedTxn;

/// File extension of a segment's aborted transactions, as Kafka names it.
pub const TXN_INDEX_EXT: &str = "txnindex";
const MAGIC: &[u8; 4] = b"SLTX";
const VERSION: u16 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbortedIndex {
    /// Ordered by marker offset.
    entries: BTreeSet<AbortedTxn>,
}

impl AbortedIndex {
    pub fn insert(&mut self, txn: AbortedTxn) {
        self.entries.insert(txn);
    }

    pub fn extend(&mut self, txns: impl IntoIterator<Item = AbortedTxn>) {
        self.entries.extend(txns);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The aborted transactions a read of `[from, to)` must know about:
    /// those that end at or after `from` and begin before `to`.
    pub fn overlapping(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = AbortedTxn {
            last_offset: from,
            producer_id: i64::MIN,
            first_offset: i64::MIN,
        };
        self.entries
            .range(start..)
            .filter(|t| t.first_offset < to)
            .copied()
            .collect()
    }

    /// The entries whose marker lies in `[base, next)` (one segment's share).
    pub fn in_segment(&self, base: i64, next: i64) -> Vec<AbortedTxn> {
        self.entries
            .iter()
            .filter(|t| t.last_offset >= base && t.last_offset < next)
            .copied()
            .collect()
    }

    /// The log now ends at `end`: aborts whose marker is cut are gone.
    pub fn truncate_to(&mut self, end: i64) {
        self.entries.retain(|t| t.last_offset < end);
    }

    /// The log now starts at `start`: aborts that ended before it are gone.
    pub fn truncate_head(&mut self, start: i64) {
        self.entries.retain(|t| t.last_offset >= start);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A segment's `.txnindex` file: magic, version, CRC-32C of the rest, then
/// (last offset, producer id, first offset) per abort.
pub fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * 24);
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for t in entries {
        body.extend_from_slice(&t.last_offset.to_be_bytes());
        body.extend_from_slice(&t.producer_id.to_be_bytes());
        body.extend_from_slice(&t.first_offset.to_be_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 10);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// `None` for anything that is not a whole, intact file whose entries lie
/// in the segment `[base, next)`.
pub fn decode(bytes: &[u8], base: i64, next: i64) -> Option<Vec<AbortedTxn>> {
    if bytes.len() < 14 || &bytes[..4] != MAGIC {
        return None;
    }
    if u16::from_be_bytes([bytes[4], bytes[5]]) != VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[6..10].try_into().ok()?);
    let body = &bytes[10..];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let count = u32::from_be_bytes(body[..4].try_into().ok()?) as usize;
    let rest = &body[4..];
    if rest.len() != count.checked_mul(24)? {
        return None;
    }
    let field = |chunk: &[u8], i: usize| {
        i64::from_be_bytes(chunk[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    };
    let entries: Vec<AbortedTxn> = rest
        .chunks_exact(24)
        .map(|c| AbortedTxn {
            last_offset: field(c, 0),
            producer_id: field(c, 1),
            first_offset: field(c, 2),
        })
        .collect();
    let sane = entries.iter().all(|t| {
        t.last_offset >= base
            && t.last_offset < next
            && t.producer_id >= 0
            && (0..=t.last_offset).contains(&t.first_offset)
    });
    sane.then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            last_offset: last,
            producer_id: pid,
            first_offset: first,
        }
    }

    #[test]
    fn a_read_learns_the_aborts_that_overlap_it() {
        let mut idx = AbortedIndex::default();
        idx.extend([aborted(1, 0, 5), aborted(2, 3, 9), aborted(3, 20, 25)]);
        assert_eq!(idx.overlapping(6, 20), vec![aborted(2, 3, 9)]);
        assert_eq!(idx.overlapping(0, 4).len(), 2);
        assert_eq!(idx.overlapping(26, 100), vec![]);
        assert_eq!(idx.overlapping(10, 21), vec![aborted(3, 20, 25)]);
        idx.truncate_to(9);
        idx.truncate_head(1);
        assert!(idx.is_empty() || idx.overlapping(0, 100) == vec![aborted(1, 0, 5)]);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn files_round_trip_and_garbage_or_misplaced_entries_are_refused() {
        let entries = vec![aborted(1, 0, 5), aborted(2, 3, 9)];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes, 0, 10), Some(entries.clone()));
        assert_eq!(decode(&encode(&[]), 0, 10), Some(vec![]));
        // An entry outside the segment it claims to belong to.
        assert_eq!(decode(&bytes, 6, 10), None);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 0, 10), None, "cut at {cut}");
        }
        let mut flipped = bytes;
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped, 0, 10), None);
    }
}
