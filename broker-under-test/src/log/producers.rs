//! The producer state of one partition (Kafka's ProducerStateManager): for
//! each producer id, its epoch and the sequence ranges and offsets of its last
//! five batches. The leader checks each idempotent batch against it (a retry
//! already in the log is a duplicate, a gap is out of order, an old epoch is
//! fenced); every replica feeds it the batches it appends, so a new leader
//! knows what the old one acknowledged.
//!
//! Transactions live here too: a producer's transactional batches open a
//! transaction at the first one's offset, and the commit or abort marker (a
//! control batch the broker writes) ends it. The first offset of the oldest
//! open transaction bounds the last stable offset, and an abort becomes an
//! [`AbortedTxn`] for `read_committed` consumers.
//!
//! It is rebuilt on open from the newest `<offset>.snapshot` file (written
//! when a segment is rolled: the state of the log below `offset`) plus the
//! batches at or above that offset, which recovery scans.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::batch::BatchHeader;

/// Batches remembered per producer: Kafka clients keep at most five requests
/// in flight per partition, so a retry is always one of the last five.
pub const RETAINED_BATCHES: usize = 5;
/// File extension of producer state snapshots, as Kafka names them.
pub const SNAPSHOT_EXT: &str = "snapshot";

/// Attribute bits: a transaction's batch, and a broker's control batch
/// (only the broker writes those).
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
pub const CONTROL_FLAG: i16 = 0x20;
/// Transactions remembered per producer after their marker, so that a
/// truncation cutting a marker can reopen its transaction.
const RETAINED_TXNS: usize = 5;

/// What a control batch's marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// A transaction that ended in this partition: its first batch's offset and
/// its marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
    pub aborted: bool,
}

/// An aborted transaction, as `read_committed` consumers need it (and as
/// `.txnindex` files hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbortedTxn {
    /// First, so that lists sort by where the transaction ended.
    pub last_offset: i64,
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One batch of a producer, as appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`RETAINED_BATCHES`]; empty only after a marker
    /// that bumped the epoch.
    pub batches: VecDeque<BatchMeta>,
    /// The largest batch timestamp seen (what `producer.id.expiration.ms` counts from).
    pub last_timestamp: i64,
    /// The coordinator epoch of the last marker (-1: none); an older one is fenced.
    pub coordinator_epoch: i32,
    /// The offset of the open transaction's first batch.
    pub txn_first_offset: Option<i64>,
    /// The last transactions ended here, oldest first (at most [`RETAINED_TXNS`]).
    pub completed: VecDeque<(i64, i64)>,
}

impl ProducerEntry {
    fn new(epoch: i16, timestamp: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp: timestamp,
            coordinator_epoch: -1,
            txn_first_offset: None,
            completed: VecDeque::new(),
        }
    }

    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// What the leader does with a client's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it (and then [`ProducerStates::record`] it).
    Append,
    /// A retry of this batch, already in the log: answer with its offsets.
    Duplicate(BatchMeta),
}

/// Why a client's batch is refused; each is one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerError {
    /// INVALID_RECORD: producer fields that contradict each other.
    InvalidRecord(String),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a gap, or a new epoch not starting at 0.
    OutOfOrderSequence(String),
    /// INVALID_PRODUCER_EPOCH: an epoch below the producer's current one.
    InvalidProducerEpoch(String),
    /// UNKNOWN_PRODUCER_ID: no state for this producer (expired, or its
    /// batches left the log) and a sequence that does not start it afresh.
    UnknownProducerId(String),
    /// INVALID_TXN_STATE: a plain batch from a producer with an open transaction.
    InvalidTxnState(String),
    /// TRANSACTION_COORDINATOR_FENCED: a marker from an older coordinator.
    CoordinatorFenced(String),
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerError::InvalidRecord(m)
            | ProducerError::OutOfOrderSequence(m)
            | ProducerError::InvalidProducerEpoch(m)
            | ProducerError::UnknownProducerId(m)
            | ProducerError::InvalidTxnState(m)
            | ProducerError::CoordinatorFenced(m) => f.write_str(m),
        }
    }
}

/// The sequence of a batch's last record: sequences wrap from i32::MAX to 0.
pub fn last_sequence(base: i32, last_offset_delta: i32) -> i32 {
    let next = i64::from(base) + i64::from(last_offset_delta);
    (next % (i64::from(i32::MAX) + 1)) as i32
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction.
    open_txns: BTreeSet<(i64, i64)>,
}

impl ProducerStates {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// The highest producer id with state here.
    pub fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().next_back().copied()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Judge a client's record set (validated, offsets not yet assigned).
    /// `None`: no producer id, nothing to check.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<Option<Verdict>, ProducerError> {
        for h in headers {
            if h.attributes & CONTROL_FLAG != 0 {
                return Err(ProducerError::InvalidRecord(
                    "control batches are written by the broker only, not accepted from clients"
                        .into(),
                ));
            }
            if h.attributes & TRANSACTIONAL_FLAG != 0 && h.producer_id < 0 {
                return Err(ProducerError::InvalidRecord(
                    "a transactional batch needs a producer id".into(),
                ));
            }
            if h.producer_id < -1 {
                return Err(ProducerError::InvalidRecord(format!(
                    "invalid producer id {}",
                    h.producer_id
                )));
            }
            if h.producer_id >= 0 && (h.producer_epoch < 0 || h.base_sequence < 0) {
                return Err(ProducerError::InvalidRecord(format!(
                    "batch of producer {} has epoch {} and base sequence {}: an idempotent batch needs both",
                    h.producer_id, h.producer_epoch, h.base_sequence
                )));
            }
        }
        let Some(h) = headers.iter().find(|h| h.producer_id >= 0) else {
            return Ok(None);
        };
        if headers.len() != 1 {
            // As Kafka: one batch per partition, else a retry could be half a duplicate.
            return Err(ProducerError::InvalidRecord(format!(
                "a produce request for one partition must hold exactly one batch with a producer id, not {}",
                headers.len()
            )));
        }
        let (pid, epoch, first) = (h.producer_id, h.producer_epoch, h.base_sequence);
        let last = last_sequence(first, h.last_offset_delta);
        let transactional = h.attributes & TRANSACTIONAL_FLAG != 0;
        if let Some(e) = self.producers.get(&pid) {
            if !transactional && e.txn_first_offset.is_some() && epoch >= e.epoch {
                return Err(ProducerError::InvalidTxnState(format!(
                    "producer {pid} sent a non-transactional batch while its transaction (from offset {}) is open",
                    e.txn_first_offset.unwrap_or(-1)
                )));
            }
        }
        let Some(entry) = self.producers.get(&pid) else {
            if first == 0 {
                return Ok(Some(Verdict::Append));
            }
            return Err(ProducerError::UnknownProducerId(format!(
                "no state for producer {pid} (expired or removed with its batches); sequence {first} does not start a producer"
            )));
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch(format!(
                "producer {pid} epoch {epoch} is older than the current epoch {}",
                entry.epoch
            )));
        }
        if epoch > entry.epoch {
            if first != 0 {
                return Err(ProducerError::OutOfOrderSequence(format!(
                    "producer {pid}: a new epoch {epoch} (current {}) must start at sequence 0, not {first}",
                    entry.epoch
                )));
            }
            return Ok(Some(Verdict::Append));
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Some(Verdict::Duplicate(*dup)));
        }
        if !in_sequence(entry.last_seq(), first) {
            return Err(ProducerError::OutOfOrderSequence(format!(
                "producer {pid} epoch {epoch}: sequence {first} does not follow {}",
                entry.last_seq()
            )));
        }
        Ok(Some(Verdict::Append))
    }

    /// Remember an appended batch (final offsets): the leader's after
    /// [`Self::check`], a follower's, or one found by recovery. A higher
    /// epoch starts the producer afresh; a lower one (possible only in a
    /// leader's log from before a fencing) leaves the newer state alone.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch, h.max_timestamp));
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        } else if h.producer_epoch < entry.epoch {
            return;
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        if h.attributes & TRANSACTIONAL_FLAG != 0 && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
            self.open_txns.insert((h.base_offset, h.producer_id));
        }
    }

    /// Judge a marker the coordinator asks to write for `producer_id`:
    /// `Ok(true)` to write it, `Ok(false)` when there is no open transaction
    /// here (a retried marker, or a partition the transaction never wrote
    /// to: nothing to end, nothing written).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<bool, ProducerError> {
        if producer_id < 0 || epoch < 0 {
            return Err(ProducerError::InvalidRecord(format!(
                "a marker needs a producer id and epoch, not {producer_id}/{epoch}"
            )));
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(false);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch(format!(
                "marker for producer {producer_id} at epoch {epoch}, older than its epoch {}",
                entry.epoch
            )));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced(format!(
                "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {}",
                entry.coordinator_epoch
            )));
        }
        Ok(entry.txn_first_offset.is_some())
    }

    /// Apply a control batch (written here, copied from the leader, or found
    /// by recovery): the producer's open transaction ends at its offset. A
    /// marker without an open transaction ends nothing.
    pub fn record_marker(&mut self, h: &BatchHeader, marker: Marker) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch, h.max_timestamp));
        if h.producer_epoch < entry.epoch {
            return None;
        }
        if h.producer_epoch > entry.epoch {
            // The coordinator bumped the epoch (an abort it decided): the
            // producer starts its sequences afresh.
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        let first = entry.txn_first_offset.take()?;
        self.open_txns.remove(&(first, h.producer_id));
        entry.completed.push_back((first, h.base_offset));
        while entry.completed.len() > RETAINED_TXNS {
            entry.completed.pop_front();
        }
        Some(CompletedTxn {
            producer_id: h.producer_id,
            first_offset: first,
            marker_offset: h.base_offset,
            aborted: !marker.commit,
        })
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset is never above it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open_txns.first().map(|&(offset, _)| offset)
    }

    /// Open transactions: (first offset, producer id), oldest first.
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open_txns.iter().copied()
    }

    fn rebuild_open_txns(&mut self) {
        self.open_txns = self
            .producers
            .iter()
            .filter_map(|(&pid, e)| e.txn_first_offset.map(|f| (f, pid)))
            .collect();
    }

    /// The log now ends at `end`: forget batches at or above it. A producer
    /// left with none is forgotten (its next batch must start afresh or get
    /// UNKNOWN_PRODUCER_ID): what it had before them is not known any more.
    /// A transaction whose marker is cut is open again (its first batch
    /// survived) or gone with its batches.
    pub fn truncate_to(&mut self, end: i64) {
        self.producers.retain(|_, e| {
            let had_batches = !e.batches.is_empty();
            e.batches.retain(|b| b.last_offset < end);
            if e.txn_first_offset.is_some_and(|f| f >= end) {
                e.txn_first_offset = None;
            }
            while let Some(&(first, marker)) = e.completed.back() {
                if marker < end {
                    break;
                }
                e.completed.pop_back();
                if first < end {
                    e.txn_first_offset = Some(first);
                }
            }
            !(had_batches && e.batches.is_empty() && e.txn_first_offset.is_none())
        });
        self.rebuild_open_txns();
    }

    /// The log now starts at `start`: producers whose last batch is below it
    /// have left the log, and their state with them (as in Kafka); a
    /// producer with an open transaction stays.
    pub fn truncate_head(&mut self, start: i64) {
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some()
                || e.batches.back().is_some_and(|b| b.last_offset >= start)
                || e.completed.back().is_some_and(|&(_, m)| m >= start)
        });
    }

    /// Forget producers silent for longer than `expiration_ms`
    /// (`producer.id.expiration.ms`), except those with an open transaction:
    /// the coordinator's timeout ends those.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) <= expiration_ms
        });
        before - self.producers.len()
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.open_txns.clear();
    }

    /// The snapshot file: magic, version, CRC-32C of the rest, then the entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(e.completed.len() as u8);
            for &(first, marker) in &e.completed {
                body.extend_from_slice(&first.to_be_bytes());
                body.extend_from_slice(&marker.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 10);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// `None` for anything that is not a whole, intact snapshot.
    pub fn decode(bytes: &[u8]) -> Option<ProducerStates> {
        let mut r = Reader(bytes);
        if r.take(4)? != SNAPSHOT_MAGIC {
            return None;
        }
        // Version 1 (before transactions) has no transaction fields.
        let version = r.u16()?;
        if version != 1 && version != SNAPSHOT_VERSION {
            return None;
        }
        let crc = r.u32()?;
        if crc32c::crc32c(r.0) != crc {
            return None;
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_timestamp = r.i64()?;
            let n = usize::from(r.take(1)?[0]);
            if pid < 0 || epoch < 0 || n > RETAINED_BATCHES || (version == 1 && n == 0) {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                let first_seq = r.u32()? as i32;
                let last_seq = r.u32()? as i32;
                let first_offset = r.i64()?;
                let last_offset = r.i64()?;
                if first_offset > last_offset || first_offset < 0 {
                    return None;
                }
                batches.push_back(BatchMeta {
                    first_seq,
                    last_seq,
                    first_offset,
                    last_offset,
                });
            }
            let mut entry = ProducerEntry {
                batches,
                ..ProducerEntry::new(epoch, last_timestamp)
            };
            if version >= 2 {
                entry.coordinator_epoch = r.u32()? as i32;
                let first = r.i64()?;
                entry.txn_first_offset = (first >= 0).then_some(first);
                let k = usize::from(r.take(1)?[0]);
                if first < -1 || k > RETAINED_TXNS {
                    return None;
                }
                for _ in 0..k {
                    let (first, marker) = (r.i64()?, r.i64()?);
                    if first < 0 || first > marker {
                        return None;
                    }
                    entry.completed.push_back((first, marker));
                }
            }
            if producers.insert(pid, entry).is_some() {
                return None;
            }
        }
        let mut states = ProducerStates {
            producers,
            open_txns: BTreeSet::new(),
        };
        states.rebuild_open_txns();
        r.0.is_empty().then_some(states)
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION: u16 = 2;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1000,
            max_timestamp: 1000 + offset,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
            compression: Compression::None,
        }
    }

    /// Check then record, as the leader does; the verdict is returned.
    fn produce(s: &mut ProducerStates, h: BatchHeader) -> Result<Option<Verdict>, ProducerError> {
        let v = s.check(&[h])?;
        if v == Some(Verdict::Append) {
            s.record(&h);
        }
        Ok(v)
    }

    #[test]
    fn in_order_batches_append_and_a_retry_gets_its_original_offsets() {
        let mut s = ProducerStates::default();
        assert_eq!(
            produce(&mut s, header(7, 0, 0, 3, 10)),
            Ok(Some(Verdict::Append))
        );
        assert_eq!(
            produce(&mut s, header(7, 0, 3, 2, 13)),
            Ok(Some(Verdict::Append))
        );
        // The retry of the first batch, offsets unassigned (as a client sends it).
        let dup = s.check(&[header(7, 0, 0, 3, 0)]).unwrap();
        assert_eq!(
            dup,
            Some(Verdict::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                first_offset: 10,
                last_offset: 12
            }))
        );
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_refused() {
        let mut s = ProducerStates::default();
        produce(&mut s, header(7, 2, 0, 1, 0)).unwrap();
        assert!(matches!(
            s.check(&[header(7, 2, 5, 1, 0)]),
            Err(ProducerError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            s.check(&[header(7, 1, 1, 1, 0)]),
            Err(ProducerError::InvalidProducerEpoch(_))
        ));
        // A retry overlapping but not matching a remembered batch is out of order.
        assert!(matches!(
            s.check(&[header(7, 2, 0, 2, 0)]),
            Err(ProducerError::OutOfOrderSequence(_))
        ));
    }

    #[test]
    fn a_new_epoch_must_start_at_zero_and_then_resets_the_producer() {
        let mut s = ProducerStates::default();
        produce(&mut s, header(7, 0, 0, 4, 0)).unwrap();
        assert!(matches!(
            s.check(&[header(7, 1, 4, 1, 0)]),
            Err(ProducerError::OutOfOrderSequence(_))
        ));
        assert_eq!(
            produce(&mut s, header(7, 1, 0, 1, 4)),
            Ok(Some(Verdict::Append))
        );
        assert_eq!(s.get(7).unwrap().epoch, 1);
        assert_eq!(s.get(7).unwrap().batches.len(), 1);
        // The old epoch's batch is no duplicate any more: it is fenced.
        assert!(matches!(
            s.check(&[header(7, 0, 0, 4, 0)]),
            Err(ProducerError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerStates::default();
        s.record(&header(7, 0, i32::MAX - 2, 3, 0));
        assert_eq!(s.get(7).unwrap().last_seq(), i32::MAX);
        assert_eq!(
            produce(&mut s, header(7, 0, 0, 1, 3)),
            Ok(Some(Verdict::Append))
        );
        assert!(matches!(
            s.check(&[header(7, 0, 5, 1, 0)]),
            Err(ProducerError::OutOfOrderSequence(_))
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates_older_ones_are_out_of_order() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            produce(&mut s, header(7, 0, i, 1, i64::from(i))).unwrap();
        }
        assert!(matches!(
            s.check(&[header(7, 0, 2, 1, 0)]),
            Ok(Some(Verdict::Duplicate(_)))
        ));
        assert!(matches!(
            s.check(&[header(7, 0, 1, 1, 0)]),
            Err(ProducerError::OutOfOrderSequence(_))
        ));
    }

    #[test]
    fn an_unknown_producer_must_start_at_zero() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&[header(9, 0, 0, 1, 0)]), Ok(Some(Verdict::Append)));
        assert!(matches!(
            s.check(&[header(9, 3, 17, 1, 0)]),
            Err(ProducerError::UnknownProducerId(_))
        ));
    }

    #[test]
    fn inconsistent_producer_fields_and_several_batches_are_invalid_records() {
        let s = ProducerStates::default();
        for bad in [
            header(7, -1, 0, 1, 0),
            header(7, 0, -1, 1, 0),
            header(-5, 0, 0, 1, 0),
            BatchHeader {
                attributes: TRANSACTIONAL_FLAG,
                ..header(-1, -1, -1, 1, 0)
            },
            BatchHeader {
                attributes: CONTROL_FLAG | TRANSACTIONAL_FLAG,
                ..header(7, 0, 0, 1, 0)
            },
            BatchHeader {
                attributes: CONTROL_FLAG,
                ..header(-1, -1, -1, 1, 0)
            },
        ] {
            assert!(
                matches!(s.check(&[bad]), Err(ProducerError::InvalidRecord(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.check(&[header(7, 0, 0, 1, 0), header(7, 0, 1, 1, 0)]),
            Err(ProducerError::InvalidRecord(_))
        ));
        // Without a producer id nothing is checked, several batches are fine.
        assert_eq!(
            s.check(&[header(-1, -1, -1, 1, 0), header(-1, -1, -1, 1, 0)]),
            Ok(None)
        );
    }

    #[test]
    fn replicated_batches_are_recorded_without_checks_and_a_stale_epoch_is_ignored() {
        let mut s = ProducerStates::default();
        s.record(&header(7, 3, 40, 2, 0));
        s.record(&header(7, 2, 0, 1, 2));
        assert_eq!(s.get(7).unwrap().epoch, 3);
        assert_eq!(s.get(7).unwrap().last_seq(), 41);
    }

    #[test]
    fn truncation_forgets_cut_batches_and_producers_left_with_none() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 2, 0));
        s.record(&header(1, 0, 2, 2, 2));
        s.record(&header(2, 0, 0, 1, 4));
        s.truncate_to(2);
        assert_eq!(s.get(1).unwrap().last_seq(), 1);
        assert!(s.get(2).is_none());
        s.truncate_head(2);
        assert!(s.is_empty());
    }

    #[test]
    fn expiry_counts_from_the_last_batch_timestamp() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1, 0)); // max timestamp 1000
        s.record(&header(2, 0, 0, 1, 500)); // 1500
        assert_eq!(s.expire(1400, 300), 1);
        assert!(s.get(1).is_none() && s.get(2).is_some());
    }

    #[test]
    fn snapshots_round_trip_and_garbage_is_refused() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&header(1, 4, i * 2, 2, i64::from(i) * 2));
        }
        s.record(&header(99, 0, 0, 1, 100));
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes), Some(s.clone()));
        assert_eq!(
            ProducerStates::decode(&ProducerStates::default().encode()),
            Some(ProducerStates::default())
        );
        for cut in 0..bytes.len() {
            assert_eq!(ProducerStates::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(ProducerStates::decode(&flipped), None);
    }

    fn txn(pid: i64, epoch: i16, seq: i32, records: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: TRANSACTIONAL_FLAG,
            ..header(pid, epoch, seq, records, offset)
        }
    }

    fn marker_at(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: TRANSACTIONAL_FLAG | CONTROL_FLAG,
            ..header(pid, epoch, -1, 1, offset)
        }
    }

    const COMMIT: Marker = Marker {
        commit: true,
        coordinator_epoch: 0,
    };
    const ABORT: Marker = Marker {
        commit: false,
        coordinator_epoch: 0,
    };

    #[test]
    fn a_transaction_is_open_from_its_first_batch_to_its_marker() {
        let mut s = ProducerStates::default();
        assert_eq!(s.first_unstable_offset(), None);
        produce(&mut s, txn(1, 0, 0, 2, 10)).unwrap();
        produce(&mut s, txn(2, 0, 0, 1, 12)).unwrap();
        produce(&mut s, txn(1, 0, 2, 1, 13)).unwrap();
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.check_marker(1, 0, 0), Ok(true));
        let done = s.record_marker(&marker_at(1, 0, 14), ABORT).unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                marker_offset: 14,
                aborted: true
            }
        );
        assert_eq!(s.first_unstable_offset(), Some(12));
        assert!(s.record_marker(&marker_at(2, 0, 15), COMMIT).is_some());
        assert_eq!(s.first_unstable_offset(), None);
        // A retried marker finds nothing open: nothing to write.
        assert_eq!(s.check_marker(1, 0, 0), Ok(false));
        assert_eq!(s.check_marker(99, 0, 0), Ok(false));
    }

    #[test]
    fn plain_batches_during_a_transaction_and_stale_markers_are_refused() {
        let mut s = ProducerStates::default();
        produce(&mut s, txn(1, 3, 0, 1, 0)).unwrap();
        assert!(matches!(
            s.check(&[header(1, 3, 1, 1, 0)]),
            Err(ProducerError::InvalidTxnState(_))
        ));
        assert!(matches!(
            s.check_marker(1, 2, 0),
            Err(ProducerError::InvalidProducerEpoch(_))
        ));
        s.record_marker(
            &marker_at(1, 3, 1),
            Marker {
                commit: true,
                coordinator_epoch: 5,
            },
        );
        produce(&mut s, txn(1, 3, 1, 1, 2)).unwrap();
        assert!(matches!(
            s.check_marker(1, 3, 4),
            Err(ProducerError::CoordinatorFenced(_))
        ));
        assert_eq!(s.check_marker(1, 3, 5), Ok(true));
    }

    #[test]
    fn a_marker_at_a_bumped_epoch_restarts_sequences() {
        let mut s = ProducerStates::default();
        produce(&mut s, txn(1, 0, 0, 3, 0)).unwrap();
        s.record_marker(&marker_at(1, 1, 3), ABORT).unwrap();
        assert_eq!(s.get(1).unwrap().epoch, 1);
        assert_eq!(
            produce(&mut s, txn(1, 1, 0, 1, 4)),
            Ok(Some(Verdict::Append))
        );
        assert!(matches!(
            s.check(&[txn(1, 0, 3, 1, 0)]),
            Err(ProducerError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn truncation_reopens_a_transaction_whose_marker_is_cut() {
        let mut s = ProducerStates::default();
        produce(&mut s, txn(1, 0, 0, 2, 10)).unwrap();
        s.record_marker(&marker_at(1, 0, 12), COMMIT).unwrap();
        produce(&mut s, txn(1, 0, 2, 1, 13)).unwrap();
        s.record_marker(&marker_at(1, 0, 14), COMMIT).unwrap();
        s.truncate_to(14);
        assert_eq!(s.first_unstable_offset(), Some(13));
        s.truncate_to(12);
        assert_eq!(s.first_unstable_offset(), Some(10));
        s.truncate_to(10);
        assert_eq!(s.first_unstable_offset(), None);
        assert!(s.get(1).is_none());
    }

    #[test]
    fn open_transactions_survive_expiry_retention_and_snapshots() {
        let mut s = ProducerStates::default();
        produce(&mut s, txn(1, 0, 0, 1, 0)).unwrap();
        produce(&mut s, txn(2, 0, 0, 1, 1)).unwrap();
        s.record_marker(
            &marker_at(2, 0, 2),
            Marker {
                commit: false,
                coordinator_epoch: 7,
            },
        );
        assert_eq!(s.expire(i64::MAX / 2, 10), 1);
        s.truncate_head(5);
        assert_eq!(s.first_unstable_offset(), Some(0));
        produce(&mut s, txn(3, 0, 0, 1, 6)).unwrap();
        s.record_marker(&marker_at(3, 0, 7), COMMIT);
        let back = ProducerStates::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.first_unstable_offset(), Some(0));
        assert_eq!(back.get(3).unwrap().completed, VecDeque::from([(6, 7)]));
    }

    #[test]
    fn version_1_snapshots_still_load() {
        let mut s = ProducerStates::default();
        s.record(&header(4, 1, 0, 2, 0));
        let v2 = s.encode();
        // Rebuild the same state in the version-1 layout: no transaction fields.
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&4i64.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1000i64.to_be_bytes());
        body.push(1);
        for v in [0i32, 1] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        for v in [0i64, 1] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        let mut v1 = b"SLPS".to_vec();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        v1.extend_from_slice(&body);
        assert_eq!(ProducerStates::decode(&v1), ProducerStates::decode(&v2));
        assert!(ProducerStates::decode(&v1).is_some());
    }
}
