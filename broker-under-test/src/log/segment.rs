//! One segment of a partition log: its file names, its in-memory sparse
//! offset index and time index, and their on-disk encodings.

use super::batch::BatchHeader;

/// `<20-digit base offset>` + extension, inside the log directory.
pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Parse a segment file name into (base offset, extension).
pub fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base: i64 = stem.parse().ok()?;
    Some((base, ext))
}

/// One segment as the log keeps it in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's first batch (and its file name).
    pub base: i64,
    /// Bytes written (or being written) to the segment file.
    pub size: u64,
    /// The offset after the segment's last batch.
    pub next_offset: i64,
    /// Sparse offset index: (offset - base, file position of the batch starting there).
    pub index: Vec<(u32, u32)>,
    /// Time index: (largest timestamp so far, offset - base of the batch ending there).
    pub time_index: Vec<(i64, u32)>,
    /// Largest batch maxTimestamp in the segment and the last offset of its batch.
    pub max_ts: Option<(i64, i64)>,
    bytes_since_index: u64,
    /// Wall-clock time of the first append to this segment since it was created (for roll).
    pub first_append_wall: Option<i64>,
}

impl Segment {
    pub fn new(base: i64) -> Segment {
        Segment {
            base,
            size: 0,
            next_offset: base,
            index: Vec::new(),
            time_index: Vec::new(),
            max_ts: None,
            bytes_since_index: 0,
            first_append_wall: None,
        }
    }

    fn rel(&self, offset: i64) -> u32 {
        (offset - self.base).clamp(0, u32::MAX as i64) as u32
    }

    /// Account for a batch written at `pos` (headers carry the assigned offsets).
    pub fn add_batch(&mut self, h: &BatchHeader, pos: u64, index_interval: u64) {
        let mut indexed = false;
        if self.bytes_since_index >= index_interval && pos > 0 && pos <= u32::MAX as u64 {
            self.index.push((self.rel(h.base_offset), pos as u32));
            self.bytes_since_index = 0;
            indexed = true;
        }
        self.bytes_since_index += h.length as u64;
        if self.max_ts.is_none_or(|(ts, _)| h.max_timestamp > ts) {
            self.max_ts = Some((h.max_timestamp, h.last_offset()));
        }
        if indexed {
            if let Some((ts, _)) = self.max_ts {
                if self.time_index.last().is_none_or(|&(last, _)| ts > last) {
                    self.time_index.push((ts, self.rel(h.last_offset())));
                }
            }
        }
        self.next_offset = h.next_offset();
        self.size = self.size.max(pos + h.length as u64);
    }

    /// The base offset and file position of the batch containing `offset`
    /// or an earlier one, as the index knows it: where a read starts, and
    /// the base offset the batch found there must have.
    pub fn entry_for(&self, offset: i64) -> (i64, u64) {
        if offset <= self.base {
            return (self.base, 0);
        }
        let rel = self.rel(offset);
        let i = self.index.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            (self.base, 0)
        } else {
            let (r, pos) = self.index[i - 1];
            (self.base + i64::from(r), u64::from(pos))
        }
    }

    /// File position of the batch containing `offset` or an earlier one.
    pub fn position_for(&self, offset: i64) -> u64 {
        if offset <= self.base {
            return 0;
        }
        let rel = self.rel(offset);
        let i = self.index.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            0
        } else {
            u64::from(self.index[i - 1].1)
        }
    }

    /// An offset from which to search for the first record with timestamp >= `ts`.
    pub fn time_lookup(&self, ts: i64) -> i64 {
        let i = self.time_index.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            self.base
        } else {
            self.base + i64::from(self.time_index[i - 1].1) + 1
        }
    }

    /// The offset index as stored: big-endian (relative offset u32, position u32) pairs.
    pub fn encode_index(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.index.len() * 8);
        for &(rel, pos) in &self.index {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// The time index as stored: big-endian (timestamp i64, relative offset u32)
    /// pairs, ending with the segment's largest timestamp.
    pub fn encode_time_index(&self) -> Vec<u8> {
        let mut entries = self.time_index.clone();
        if let Some((ts, off)) = self.max_ts {
            if entries.last().is_none_or(|&(last, _)| ts > last) {
                entries.push((ts, self.rel(off)));
            }
        }
        let mut out = Vec::with_capacity(entries.len() * 12);
        for (ts, rel) in entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// A segment wholly below the recovery point, loaded from its index files
    /// instead of scanning. `None` if either index fails its sanity checks.
    pub fn from_indexes(
        base: i64,
        size: u64,
        next_offset: i64,
        index: &[u8],
        time_index: &[u8],
    ) -> Option<Segment> {
        if !index.len().is_multiple_of(8)
            || !time_index.len().is_multiple_of(12)
            || next_offset < base
        {
            return None;
        }
        let span = next_offset - base;
        let mut seg = Segment::new(base);
        seg.size = size;
        seg.next_offset = next_offset;
        for chunk in index.chunks_exact(8) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let ok = i64::from(rel) < span
                && u64::from(pos) < size
                && seg.index.last().is_none_or(|&(r, p)| rel > r && pos > p);
            if !ok {
                return None;
            }
            seg.index.push((rel, pos));
        }
        for chunk in time_index.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(t);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            let ok = i64::from(rel) < span
                && seg
                    .time_index
                    .last()
                    .is_none_or(|&(lt, lr)| ts > lt && rel >= lr);
            if !ok {
                return None;
            }
            seg.time_index.push((ts, rel));
        }
        match seg.time_index.last() {
            Some(&(ts, rel)) => seg.max_ts = Some((ts, base + i64::from(rel))),
            None if size > 0 => return None,
            None => {}
        }
        Some(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(
            parse_file_name("00000000000000000042.timeindex"),
            Some((42, "timeindex"))
        );
        assert_eq!(parse_file_name("42.log"), None);
        assert_eq!(parse_file_name("checkpoint"), None);
        assert_eq!(parse_file_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn index_roundtrip_and_garbage() {
        let mut seg = Segment::new(100);
        seg.size = 1000;
        seg.next_offset = 150;
        seg.index = vec![(10, 200), (20, 400)];
        seg.time_index = vec![(5, 9), (7, 19)];
        seg.max_ts = Some((9, 149));
        let loaded = Segment::from_indexes(
            100,
            1000,
            150,
            &seg.encode_index(),
            &seg.encode_time_index(),
        )
        .unwrap();
        assert_eq!(loaded.index, seg.index);
        assert_eq!(loaded.max_ts, Some((9, 149)));
        assert_eq!(loaded.position_for(125), 400);
        assert_eq!(loaded.position_for(115), 200);
        assert_eq!(loaded.position_for(101), 0);
        assert_eq!(loaded.time_lookup(6), 110);
        assert_eq!(loaded.time_lookup(5), 100);
        assert!(Segment::from_indexes(100, 1000, 150, &[1, 2, 3], &[]).is_none());
        assert!(
            Segment::from_indexes(100, 1000, 150, &[0xff; 16], &seg.encode_time_index()).is_none()
        );
        assert!(Segment::from_indexes(100, 1000, 150, &seg.encode_index(), &[]).is_none());
    }
}
