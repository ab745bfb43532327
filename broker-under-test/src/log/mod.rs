//! The partition log: a sans-IO state machine over the disk requests of the
//! seam.
//!
//! A log lives in `<topic>-<partition>/` under the node's data directory:
//! `<20-digit base offset>.log` segment files, their `.index` (sparse offset
//! index), `.timeindex` and `.txnindex` (aborted transactions, see
//! [`txn_index`]) files written when the segment is rolled, `.snapshot`
//! files (producer state, see [`producers`]), `partition.metadata`,
//! `checkpoint` and `leader-epoch-checkpoint` (see [`epoch`]).
//!
//! Transactions: a producer's transactional batches are appended like any
//! other; [`PartitionLog::append_marker`] writes the control batch that ends
//! its transaction. Reads for `read_committed` consumers stop at the last
//! stable offset and carry the aborted transactions they overlap.
//!
//! Replication (see `replica.rs`): a replicated log's high watermark moves
//! only when the node says so; followers read up to the log end, append the
//! leader's batches as they are, and cut their log back (`truncate_to`).
//!
//! Disk requests complete in the order they were issued (see
//! [`crate::seam::DiskOp`]). The log leans on that: a `SyncFile` covers every
//! write issued before it, so group commit is "issue writes, then one sync if
//! none is in flight", and multi-step sequences (create, roll, checkpoint) are
//! issued at once. A failed write or sync takes the log offline for good:
//! nothing issued after it is trusted.

pub mod batch;
pub mod checkpoint;
pub mod epoch;
pub mod producers;
mod read;
mod recovery;
mod replica;
pub mod segment;
#[cfg(test)]
mod tests;
pub mod txn_index;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::config::{BrokerConfig, Durability};
use crate::diskio::DiskIo;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, DiskReqId, Now};

use batch::BatchError;
use checkpoint::{Checkpoint, CHECKPOINT, CHECKPOINT_TMP, METADATA};
use epoch::EpochCache;
use producers::{AbortedTxn, Marker, ProducerError, ProducerStates, Verdict, SNAPSHOT_EXT};
use segment::{file_name, Segment};
use txn_index::{AbortedIndex, TXN_INDEX_EXT};

/// The files of a segment, all removed with it.
const SEGMENT_EXTS: [&str; 4] = ["log", "index", "timeindex", TXN_INDEX_EXT];

/// The log's share of the broker configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub roll_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    pub max_batch_bytes: usize,
    pub durability: Durability,
    /// `log.flush.interval.ms`: in page-cache mode, how often `maintain` syncs.
    pub flush_interval_ms: u64,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: u64,
    /// `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval_ms: u64,
}

impl LogConfig {
    pub fn from_broker(c: &BrokerConfig) -> LogConfig {
        LogConfig {
            segment_bytes: c.log_segment_bytes,
            roll_ms: c.log_roll_ms,
            retention_ms: c.log_retention_ms,
            retention_bytes: c.log_retention_bytes,
            index_interval_bytes: c.log_index_interval_bytes,
            max_batch_bytes: c.message_max_bytes,
            durability: c.durability,
            flush_interval_ms: c.log_flush_interval_ms,
            producer_id_expiration_ms: c.producer_id_expiration_ms,
            producer_id_expiration_check_interval_ms: c.producer_id_expiration_check_interval_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    Opening,
    Online,
    Failed(String),
    Deleting,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Create or recovery finished; the log is online.
    Opened,
    /// The log went offline (KAFKA_STORAGE_ERROR from now on).
    Failed {
        reason: String,
    },
    ReadDone {
        token: u64,
        result: Result<FetchData, LogError>,
    },
    TimestampFound {
        token: u64,
        /// (offset, timestamp) of the first record with timestamp >= the one asked for.
        result: Result<Option<(i64, i64)>, LogError>,
    },
    Deleted,
    /// A truncation (`truncate_to`, `truncate_fully_and_start_at`) is
    /// durable; the log now ends at `end`.
    Truncated {
        end: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// For a `read_committed` read: the aborted transactions overlapping
    /// the records returned.
    pub aborted: Option<Vec<AbortedTxn>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// The log is offline (a disk error, or being deleted).
    Offline(String),
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        high_watermark: i64,
    },
    Batch(BatchError),
    /// An idempotent batch the producer state refuses (nothing appended).
    Producer(ProducerError),
    /// Still opening.
    NotReady,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Offline(why) => write!(f, "log offline: {why}"),
            LogError::OffsetOutOfRange {
                requested,
                log_start,
                high_watermark,
            } => write!(
                f,
                "offset {requested} out of range [{log_start}, {high_watermark}]"
            ),
            LogError::Batch(e) => write!(f, "{e}"),
            LogError::Producer(e) => write!(f, "{e}"),
            LogError::NotReady => write!(f, "log not ready"),
        }
    }
}

impl std::error::Error for LogError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Always -1: timestamps are the producer's (CreateTime).
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// A producer's retry of a batch already in the log: nothing was
    /// appended, the offsets are the original's.
    pub duplicate: bool,
}

/// What a disk request in flight was for.
#[derive(Debug)]
enum Pending {
    /// One step of a sequence; any error takes the log offline.
    Step,
    /// A write of a batch set; in page-cache mode its completion commits up to `upto`.
    Write {
        upto: i64,
    },
    /// A `SyncFile` of segment data covering every offset below `upto`.
    Sync {
        upto: i64,
    },
    /// The last step of a checkpoint write.
    Checkpoint(Checkpoint),
    /// Removing an old segment's file; a missing file is fine.
    Remove,
    Read(read::ReadReq),
    TsRead(read::TsReq),
    Recovery(recovery::RecStep),
    Delete {
        last: bool,
    },
    /// A read of the segment being cut by [`PartitionLog::truncate_to`].
    Truncation(replica::TruncStep),
    /// A read of the walk that finds the byte position of a restored high watermark.
    Locate(replica::LocateStep),
}

/// What happens when the barrier request completes (and nothing failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    Opened,
    RecoveryLoaded,
    RecoveryRepaired,
    /// A truncation to this end is durable.
    Truncated(i64),
}

/// The log of one partition on this node.
pub struct PartitionLog {
    dir: String,
    topic_id: [u8; 16],
    config: LogConfig,
    state: LogState,
    /// Sorted by base offset; the last one is active. Never empty once open.
    segments: Vec<Segment>,
    log_start: i64,
    leo: i64,
    /// The high watermark: reads stop here. Follows `local_end` unless `replicated`.
    hw: i64,
    /// Sync mode: the end of data made durable by a completed sync. Page-cache
    /// mode: the end of data whose write completed.
    local_end: i64,
    /// The high watermark moves only by [`PartitionLog::advance_high_watermark`].
    replicated: bool,
    /// Just opened: [`PartitionLog::restore_high_watermark`] may still lower it.
    hw_restorable: bool,
    /// Everything below this offset has been synced.
    durable: i64,
    /// (segment base, file position) where the high watermark is.
    hw_pos: (i64, u64),
    /// (end offset, segment base, end position) of each batch above the high watermark.
    marks: VecDeque<(i64, i64, u64)>,
    epochs: EpochCache,
    /// A [`PartitionLog::truncate_to`] in progress.
    truncation: Option<Box<replica::Truncation>>,
    /// Ends of truncations made durable, for [`PartitionLog::poll_truncated`].
    truncated: VecDeque<i64>,
    /// The walk locating a restored high watermark's batches.
    locate: Option<Box<replica::Locate>>,
    locate_gen: u64,
    pending: BTreeMap<DiskReqId, Pending>,
    barrier: Option<(DiskReqId, Barrier)>,
    syncs_in_flight: usize,
    checkpoint_in_flight: bool,
    checkpointed: Option<Checkpoint>,
    checkpoint_after_sync: bool,
    last_flush_mono: u64,
    events: VecDeque<LogEvent>,
    next_token: u64,
    recovery: Option<Box<recovery::Recovery>>,
    /// Idempotent producers' last batches, for dedup and sequence checks.
    producers: ProducerStates,
    /// Offsets of the producer state snapshots on disk.
    snapshots: BTreeSet<i64>,
    /// Aborted transactions still in the log.
    aborted: AbortedIndex,
    last_producer_expiry_mono: u64,
}

fn parent_of(dir: &str) -> String {
    dir.rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

impl PartitionLog {
    fn blank(dir: String, topic_id: [u8; 16], config: LogConfig, now: Now) -> PartitionLog {
        PartitionLog {
            dir,
            topic_id,
            config,
            state: LogState::Opening,
            segments: Vec::new(),
            log_start: 0,
            leo: 0,
            hw: 0,
            local_end: 0,
            replicated: false,
            hw_restorable: false,
            durable: 0,
            hw_pos: (0, 0),
            marks: VecDeque::new(),
            epochs: EpochCache::default(),
            truncation: None,
            truncated: VecDeque::new(),
            locate: None,
            locate_gen: 0,
            pending: BTreeMap::new(),
            barrier: None,
            syncs_in_flight: 0,
            checkpoint_in_flight: false,
            checkpointed: None,
            checkpoint_after_sync: false,
            last_flush_mono: now.mono_nanos,
            events: VecDeque::new(),
            next_token: 1,
            recovery: None,
            producers: ProducerStates::default(),
            snapshots: BTreeSet::new(),
            aborted: AbortedIndex::default(),
            last_producer_expiry_mono: now.mono_nanos,
        }
    }

    /// Create a new, empty log in `dir`. `Opened` follows once it is durable.
    pub fn create(
        dir: String,
        topic_id: [u8; 16],
        config: LogConfig,
        now: Now,
        io: &mut DiskIo,
    ) -> PartitionLog {
        let mut log = PartitionLog::blank(dir, topic_id, config, now);
        let dir = log.dir.clone();
        log.submit(io, DiskOp::CreateDir { path: dir.clone() }, Pending::Step);
        let meta = log.path(METADATA);
        log.submit(io, DiskOp::Create { path: meta.clone() }, Pending::Step);
        log.submit(
            io,
            DiskOp::Write {
                path: meta.clone(),
                offset: 0,
                data: Bytes::from(checkpoint::encode_metadata(&topic_id)),
            },
            Pending::Step,
        );
        log.submit(io, DiskOp::SyncFile { path: meta }, Pending::Step);
        log.submit(
            io,
            DiskOp::Create {
                path: log.path(&file_name(0, "log")),
            },
            Pending::Step,
        );
        log.submit(io, DiskOp::SyncDir { path: dir.clone() }, Pending::Step);
        let last = log.submit(
            io,
            DiskOp::SyncDir {
                path: parent_of(&dir),
            },
            Pending::Step,
        );
        log.segments.push(Segment::new(0));
        log.barrier = Some((last, Barrier::Opened));
        log
    }

    /// Open an existing log in `dir`, recovering it. `Opened` follows when done.
    pub fn open(dir: String, config: LogConfig, now: Now, io: &mut DiskIo) -> PartitionLog {
        let mut log = PartitionLog::blank(dir, [0; 16], config, now);
        log.start_recovery(io);
        log
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }
    pub fn dir(&self) -> &str {
        &self.dir
    }
    pub fn topic_id(&self) -> [u8; 16] {
        self.topic_id
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start
    }
    pub fn log_end_offset(&self) -> i64 {
        self.leo
    }
    /// Reads (fetches, timestamp lookups, bytes available) stop here. Not
    /// replicated: the same as [`Self::local_end_offset`]. Replicated: moved by
    /// [`Self::advance_high_watermark`].
    pub fn high_watermark(&self) -> i64 {
        self.hw
    }
    /// Sync mode: the end of data made durable by a completed sync. Page-cache
    /// mode: the end of data whose write completed.
    pub fn local_end_offset(&self) -> i64 {
        self.local_end
    }
    /// Whether `req` is a disk request this log issued and still waits for.
    pub fn has_request(&self, req: DiskReqId) -> bool {
        self.pending.contains_key(&req)
    }
    /// No disk request in flight.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
    /// The producer state (what the next idempotent batch is checked against).
    pub fn producer_states(&self) -> &ProducerStates {
        &self.producers
    }
    pub fn poll_event(&mut self) -> Option<LogEvent> {
        self.events.pop_front()
    }

    /// The largest batch timestamp in the log and the last offset of its batch.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for seg in &self.segments {
            if let Some((ts, off)) = seg.max_ts {
                if best.is_none_or(|(_, bts)| ts > bts) {
                    best = Some((off, ts));
                }
            }
        }
        best
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{}", self.dir, name)
    }

    fn submit(&mut self, io: &mut DiskIo, op: DiskOp, what: Pending) -> DiskReqId {
        let req = io.submit(op);
        self.pending.insert(req, what);
        req
    }

    fn usable(&self) -> Result<(), LogError> {
        match &self.state {
            LogState::Online => Ok(()),
            LogState::Opening => Err(LogError::NotReady),
            LogState::Failed(why) => Err(LogError::Offline(why.clone())),
            LogState::Deleting | LogState::Deleted => Err(LogError::Offline("log deleted".into())),
        }
    }

    /// Take the log offline for good; answer every read in flight.
    fn fail(&mut self, reason: String) {
        if !matches!(self.state, LogState::Opening | LogState::Online) {
            return;
        }
        tracing::error!(dir = %self.dir, %reason, "partition log failed");
        self.state = LogState::Failed(reason.clone());
        self.barrier = None;
        self.recovery = None;
        self.truncation = None;
        self.locate = None;
        let mut answers = Vec::new();
        for p in self.pending.values_mut() {
            match std::mem::replace(p, Pending::Step) {
                Pending::Read(r) => answers.push(LogEvent::ReadDone {
                    token: r.token,
                    result: Err(LogError::Offline(reason.clone())),
                }),
                Pending::TsRead(r) => answers.push(LogEvent::TimestampFound {
                    token: r.token,
                    result: Err(LogError::Offline(reason.clone())),
                }),
                other => *p = other,
            }
        }
        self.events.push_back(LogEvent::Failed { reason });
        self.events.extend(answers);
    }

    fn go_online(&mut self) {
        self.state = LogState::Online;
        self.events.push_back(LogEvent::Opened);
    }

    /// Data below `upto` is written (page-cache mode) or durable (sync mode).
    fn advance_local(&mut self, upto: i64) {
        self.local_end = self.local_end.max(upto.min(self.leo));
        if !self.replicated {
            self.set_hw(self.local_end);
        }
    }

    /// Move the high watermark up to `upto` (never above the log end, never
    /// back) and its byte position with it: exactly at a batch end recorded in
    /// `marks`, at the log end, else at the sparse index entry at or below it
    /// (only after [`Self::restore_high_watermark`] lowered it below batches
    /// the log has no marks for).
    fn set_hw(&mut self, upto: i64) {
        let upto = upto.min(self.leo);
        if upto <= self.hw {
            return;
        }
        self.hw = upto;
        while let Some(&(end, seg, pos)) = self.marks.front() {
            if end > self.hw {
                break;
            }
            self.hw_pos = (seg, pos);
            self.marks.pop_front();
        }
        // While a truncation walks, the segments still hold the cut data.
        let candidate = if self.hw == self.leo && self.truncation.is_none() {
            let a = self.active();
            (a.base, a.size)
        } else {
            let s = &self.segments[self.segment_for(self.hw)];
            (s.base, s.position_for(self.hw))
        };
        if candidate > self.hw_pos {
            self.hw_pos = candidate;
        }
    }

    /// Bytes of committed (below the high watermark) data in `seg`.
    fn committed_end(&self, seg: &Segment) -> u64 {
        let (hb, hp) = self.hw_pos;
        match seg.base.cmp(&hb) {
            std::cmp::Ordering::Less => seg.size,
            std::cmp::Ordering::Equal => hp.min(seg.size),
            std::cmp::Ordering::Greater => 0,
        }
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("an open log has a segment")
    }

    fn issue_sync(&mut self, io: &mut DiskIo) {
        let path = self.path(&file_name(self.active().base, "log"));
        let upto = self.leo;
        self.syncs_in_flight += 1;
        self.submit(io, DiskOp::SyncFile { path }, Pending::Sync { upto });
    }

    fn write_checkpoint(&mut self, io: &mut DiskIo) -> DiskReqId {
        let cp = Checkpoint {
            recovery_point: self.durable,
            log_start_offset: self.log_start,
        };
        self.checkpoint_in_flight = true;
        self.replace_file(
            io,
            CHECKPOINT_TMP,
            CHECKPOINT,
            Bytes::from(cp.encode()),
            Pending::Checkpoint(cp),
        )
    }

    /// Replace the small file `name` with `data` so that a crash leaves the
    /// old or the new one whole: write `tmp`, sync it, rename it over, sync
    /// the directory (that last request carries `last`, and is returned).
    fn replace_file(
        &mut self,
        io: &mut DiskIo,
        tmp: &str,
        name: &str,
        data: Bytes,
        last: Pending,
    ) -> DiskReqId {
        let tmp = self.path(tmp);
        self.submit(io, DiskOp::Create { path: tmp.clone() }, Pending::Step);
        self.submit(
            io,
            DiskOp::Write {
                path: tmp.clone(),
                offset: 0,
                data,
            },
            Pending::Step,
        );
        self.submit(io, DiskOp::SyncFile { path: tmp.clone() }, Pending::Step);
        self.submit(
            io,
            DiskOp::Rename {
                from: tmp,
                to: self.path(name),
            },
            Pending::Step,
        );
        let dir = self.dir.clone();
        self.submit(io, DiskOp::SyncDir { path: dir }, last)
    }

    /// Validate, assign offsets and write `records`; rolls first if needed.
    /// In sync mode the data is acknowledged (high watermark) once a sync covers it.
    pub fn append(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<AppendInfo, LogError> {
        self.usable_for_append()?;
        let headers = batch::validate_record_set(&records, self.config.max_batch_bytes)
            .map_err(LogError::Batch)?;
        let verdict = self.producers.check(&headers).map_err(LogError::Producer)?;
        if let Some(Verdict::Duplicate(original)) = verdict {
            return Ok(AppendInfo {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                log_append_time: -1,
                log_start_offset: self.log_start,
                duplicate: true,
            });
        }
        let mut data = BytesMut::from(&records[..]);
        let first = self.leo;
        batch::assign_offsets(&mut data, first, leader_epoch);
        let mut next = first;
        let headers: Vec<_> = headers
            .into_iter()
            .map(|mut h| {
                h.base_offset = next;
                h.partition_leader_epoch = leader_epoch;
                next = h.next_offset();
                h
            })
            .collect();
        let info = self.write_batches(&headers, data.freeze(), now, io);
        // Client batches are never control batches (the check refuses them).
        for h in &headers {
            self.producers.record(h);
        }
        self.note_epochs([(leader_epoch, first)], io);
        Ok(info)
    }

    /// Write the control batch that ends `producer_id`'s transaction here
    /// (the leader, on the coordinator's WriteTxnMarkers). `Ok(None)`: no
    /// transaction of it is open here, nothing written (a retried marker).
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        leader_epoch: i32,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<Option<AppendInfo>, LogError> {
        self.usable_for_append()?;
        let write = self
            .producers
            .check_marker(producer_id, producer_epoch, marker.coordinator_epoch)
            .map_err(LogError::Producer)?;
        if !write {
            return Ok(None);
        }
        let encoded = batch::encode_marker(producer_id, producer_epoch, marker, now.wall_millis);
        let mut data = BytesMut::from(&encoded[..]);
        let first = self.leo;
        batch::assign_offsets(&mut data, first, leader_epoch);
        let mut h = batch::parse_header(&data)
            .map_err(|e| LogError::Batch(batch::BatchError::Corrupt(format!("marker: {e:?}"))))?;
        h.base_offset = first;
        h.partition_leader_epoch = leader_epoch;
        let info = self.write_batches(&[h], data.freeze(), now, io);
        self.note_marker(&h, marker);
        self.note_epochs([(leader_epoch, first)], io);
        Ok(Some(info))
    }

    /// A control batch is in the log: its transaction has ended.
    fn note_marker(&mut self, h: &batch::BatchHeader, marker: Marker) {
        if let Some(done) = self.producers.record_marker(h, marker) {
            if done.aborted {
                self.aborted.insert(AbortedTxn {
                    last_offset: done.marker_offset,
                    producer_id: done.producer_id,
                    first_offset: done.first_offset,
                });
            }
        }
    }

    /// Record appended batches in the producer state (markers end transactions).
    fn note_batches(&mut self, headers: &[batch::BatchHeader], data: &[u8]) {
        let mut pos = 0;
        for h in headers {
            let bytes = data.get(pos..pos + h.length).unwrap_or(&[]);
            pos += h.length;
            if batch::is_control(h) {
                match batch::read_marker(bytes, h) {
                    Some(marker) => self.note_marker(h, marker),
                    None => {
                        tracing::warn!(dir = %self.dir, offset = h.base_offset, "control batch without a commit or abort marker ignored")
                    }
                }
            } else {
                self.producers.record(h);
            }
        }
    }

    /// Open transactions here: (first offset, producer id), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.open_transactions().collect()
    }

    /// Appends wait while a truncation is in progress.
    fn usable_for_append(&self) -> Result<(), LogError> {
        self.usable()?;
        if self.truncation.is_some() {
            return Err(LogError::NotReady);
        }
        Ok(())
    }

    /// Write validated batches carrying their final offsets (the first at the
    /// log end, contiguous); rolls first if needed.
    fn write_batches(
        &mut self,
        headers: &[batch::BatchHeader],
        data: Bytes,
        now: Now,
        io: &mut DiskIo,
    ) -> AppendInfo {
        self.hw_restorable = false;
        let count: i64 = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        let len = data.len() as u64;
        let active = self.active();
        let too_big = active.size + len > self.config.segment_bytes;
        let too_old = active
            .first_append_wall
            .is_some_and(|t| now.wall_millis.saturating_sub(t) >= self.config.roll_ms);
        let too_many = self.leo + count - active.base > i64::from(i32::MAX);
        if active.size > 0 && (too_big || too_old || too_many) {
            self.roll(io);
        }
        let first = self.leo;
        let interval = self.config.index_interval_bytes;
        let seg = self.segments.last_mut().expect("an open log has a segment");
        let seg_base = seg.base;
        let start = seg.size;
        let mut pos = start;
        for h in headers {
            seg.add_batch(h, pos, interval);
            pos += h.length as u64;
            self.marks.push_back((h.next_offset(), seg_base, pos));
        }
        seg.first_append_wall.get_or_insert(now.wall_millis);
        let path = self.path(&file_name(seg_base, "log"));
        self.leo = first + count;
        let upto = self.leo;
        self.submit(
            io,
            DiskOp::Write {
                path,
                offset: start,
                data,
            },
            Pending::Write { upto },
        );
        if self.config.durability == Durability::Sync && self.syncs_in_flight == 0 {
            self.issue_sync(io);
        }
        AppendInfo {
            base_offset: first,
            last_offset: self.leo - 1,
            log_append_time: -1,
            log_start_offset: self.log_start,
            duplicate: false,
        }
    }

    /// Write one of a segment's small files whole (create, write, sync): its
    /// indexes, which only closed segments have.
    fn write_segment_file(&mut self, io: &mut DiskIo, base: i64, ext: &str, content: Vec<u8>) {
        let path = self.path(&file_name(base, ext));
        self.submit(io, DiskOp::Create { path: path.clone() }, Pending::Step);
        let data = Bytes::from(content);
        self.submit(
            io,
            DiskOp::Write {
                path: path.clone(),
                offset: 0,
                data,
            },
            Pending::Step,
        );
        self.submit(io, DiskOp::SyncFile { path }, Pending::Step);
    }

    /// Close the active segment (index files written, data synced) and start a new one at the log end.
    fn roll(&mut self, io: &mut DiskIo) {
        let old = self.active().clone();
        let aborted = txn_index::encode(&self.aborted.in_segment(old.base, self.leo));
        for (ext, content) in [
            ("index", old.encode_index()),
            ("timeindex", old.encode_time_index()),
            (TXN_INDEX_EXT, aborted),
        ] {
            self.write_segment_file(io, old.base, ext, content);
        }
        self.issue_sync(io);
        let base = self.leo;
        // Before the new segment exists: recovery trusts a snapshot only when
        // a segment starts at its offset, so a stale one is never picked up.
        self.write_producer_snapshot(base, io);
        self.submit(
            io,
            DiskOp::Create {
                path: self.path(&file_name(base, "log")),
            },
            Pending::Step,
        );
        let dir = self.dir.clone();
        self.submit(io, DiskOp::SyncDir { path: dir }, Pending::Step);
        self.segments.push(Segment::new(base));
        tracing::debug!(dir = %self.dir, base, "rolled segment");
    }

    /// Periodic work: retention, the page-cache mode flush, the checkpoint.
    pub fn maintain(&mut self, now: Now, io: &mut DiskIo) {
        if self.state != LogState::Online {
            return;
        }
        self.apply_retention(now, io);
        self.expire_producers(now);
        let flush_due = now.mono_nanos.saturating_sub(self.last_flush_mono)
            >= self.config.flush_interval_ms.saturating_mul(1_000_000);
        if self.config.durability == Durability::PageCache
            && flush_due
            && self.syncs_in_flight == 0
            && self.durable < self.leo
        {
            self.last_flush_mono = now.mono_nanos;
            self.issue_sync(io);
            // Checkpoint what this sync makes durable once it completes.
            self.checkpoint_after_sync = true;
            return;
        }
        let current = Checkpoint {
            recovery_point: self.durable,
            log_start_offset: self.log_start,
        };
        if !self.checkpoint_in_flight && self.checkpointed != Some(current) {
            self.write_checkpoint(io);
        }
    }

    fn apply_retention(&mut self, now: Now, io: &mut DiskIo) {
        let closed = self.segments.len().saturating_sub(1);
        // Never past an open transaction: its records and marker must stay
        // together for read_committed consumers.
        let stable = self.last_stable_offset();
        let mut delete = 0;
        if self.config.retention_ms >= 0 {
            for seg in &self.segments[..closed] {
                let expired = seg.next_offset <= stable
                    && seg.max_ts.is_some_and(|(ts, _)| {
                        now.wall_millis.saturating_sub(ts) > self.config.retention_ms
                    });
                if !expired {
                    break;
                }
                delete += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let total: u64 = self.segments.iter().map(|s| s.size).sum();
            let mut excess = total as i64 - self.config.retention_bytes;
            for (i, seg) in self.segments[..closed].iter().enumerate() {
                if seg.next_offset > stable || excess < seg.size as i64 {
                    break;
                }
                excess -= seg.size as i64;
                delete = delete.max(i + 1);
            }
        }
        if delete == 0 || self.truncation.is_some() {
            return;
        }
        let removed: Vec<Segment> = self.segments.drain(..delete).collect();
        self.log_start = self.log_start.max(self.segments[0].base);
        tracing::info!(dir = %self.dir, segments = removed.len(), log_start = self.log_start, "retention deleted segments");
        self.write_checkpoint(io);
        if self.epochs.truncate_from_start(self.log_start) {
            self.write_epochs(io);
        }
        self.producers.truncate_head(self.log_start);
        self.aborted.truncate_head(self.log_start);
        let start = self.log_start;
        self.remove_snapshots(|s| s < start, io);
        for seg in removed {
            for ext in SEGMENT_EXTS {
                let path = self.path(&file_name(seg.base, ext));
                self.submit(io, DiskOp::Remove { path }, Pending::Remove);
            }
        }
        let dir = self.dir.clone();
        self.submit(io, DiskOp::SyncDir { path: dir }, Pending::Step);
    }

    /// Write `<offset>.snapshot`: the producer state of the log below `offset`
    /// (the log end now).
    fn write_producer_snapshot(&mut self, offset: i64, io: &mut DiskIo) {
        let data = Bytes::from(self.producers.encode());
        let name = file_name(offset, SNAPSHOT_EXT);
        self.replace_file(io, &format!("{name}.tmp"), &name, data, Pending::Step);
        self.snapshots.insert(offset);
    }

    /// Remove the snapshot files whose offset matches `which`.
    fn remove_snapshots(&mut self, which: impl Fn(i64) -> bool, io: &mut DiskIo) {
        let gone: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|&s| which(s))
            .collect();
        for offset in gone {
            self.snapshots.remove(&offset);
            let path = self.path(&file_name(offset, SNAPSHOT_EXT));
            self.submit(io, DiskOp::Remove { path }, Pending::Remove);
        }
    }

    /// Every `producer.id.expiration.check.interval.ms`, forget producers
    /// whose last batch is older than `producer.id.expiration.ms`.
    fn expire_producers(&mut self, now: Now) {
        let interval = self
            .config
            .producer_id_expiration_check_interval_ms
            .saturating_mul(1_000_000);
        if now
            .mono_nanos
            .saturating_sub(self.last_producer_expiry_mono)
            < interval
        {
            return;
        }
        self.last_producer_expiry_mono = now.mono_nanos;
        let expiration = i64::try_from(self.config.producer_id_expiration_ms).unwrap_or(i64::MAX);
        let expired = self.producers.expire(now.wall_millis, expiration);
        if expired > 0 {
            tracing::info!(dir = %self.dir, expired, "producer ids expired");
        }
    }

    /// Sync everything now (graceful shutdown) and checkpoint afterwards.
    pub fn flush(&mut self, io: &mut DiskIo) {
        if self.state != LogState::Online {
            return;
        }
        self.checkpoint_after_sync = true;
        self.issue_sync(io);
    }

    /// Remove the log's directory. `Deleted` follows.
    pub fn delete(&mut self, io: &mut DiskIo) {
        if matches!(self.state, LogState::Deleting | LogState::Deleted) {
            return;
        }
        let reason = "log deleted".to_string();
        for p in self.pending.values_mut() {
            match std::mem::replace(p, Pending::Step) {
                Pending::Read(r) => self.events.push_back(LogEvent::ReadDone {
                    token: r.token,
                    result: Err(LogError::Offline(reason.clone())),
                }),
                Pending::TsRead(r) => self.events.push_back(LogEvent::TimestampFound {
                    token: r.token,
                    result: Err(LogError::Offline(reason.clone())),
                }),
                other => *p = other,
            }
        }
        self.state = LogState::Deleting;
        self.barrier = None;
        self.recovery = None;
        self.truncation = None;
        self.locate = None;
        let dir = self.dir.clone();
        self.submit(
            io,
            DiskOp::RemoveDirAll { path: dir.clone() },
            Pending::Delete { last: false },
        );
        self.submit(
            io,
            DiskOp::SyncDir {
                path: parent_of(&dir),
            },
            Pending::Delete { last: true },
        );
    }

    /// Every completion of a request this log issued.
    pub fn on_disk_done(
        &mut self,
        req: DiskReqId,
        result: Result<DiskReply, DiskError>,
        now: Now,
        io: &mut DiskIo,
    ) {
        let Some(what) = self.pending.remove(&req) else {
            return;
        };
        if matches!(self.state, LogState::Deleting | LogState::Deleted) {
            if let Pending::Delete { last } = what {
                if let Err(e) = &result {
                    if e.kind != DiskErrorKind::NotFound {
                        tracing::warn!(dir = %self.dir, error = %e, "deleting log");
                    }
                }
                if last && self.state == LogState::Deleting {
                    self.state = LogState::Deleted;
                    self.events.push_back(LogEvent::Deleted);
                }
            }
            return;
        }
        if matches!(self.state, LogState::Failed(_)) {
            return;
        }
        match what {
            Pending::Step | Pending::Delete { .. } => {
                if let Err(e) = result {
                    self.fail(format!("disk error: {e}"));
                }
            }
            Pending::Write { upto } => match result {
                Err(e) => self.fail(format!("write failed: {e}")),
                Ok(_) => {
                    if self.config.durability == Durability::PageCache {
                        self.advance_local(upto);
                    }
                }
            },
            Pending::Sync { upto } => {
                self.syncs_in_flight = self.syncs_in_flight.saturating_sub(1);
                match result {
                    Err(e) => self.fail(format!("sync failed: {e}")),
                    Ok(_) => self.on_synced(upto, io),
                }
            }
            Pending::Checkpoint(cp) => {
                self.checkpoint_in_flight = false;
                match result {
                    Err(e) => self.fail(format!("checkpoint failed: {e}")),
                    Ok(_) => self.checkpointed = Some(cp),
                }
            }
            Pending::Remove => {
                if let Err(e) = result {
                    if e.kind != DiskErrorKind::NotFound {
                        self.fail(format!("removing a segment failed: {e}"));
                    }
                }
            }
            Pending::Read(r) => self.on_read(r, result, io),
            Pending::TsRead(r) => self.on_ts_read(r, result, io),
            Pending::Recovery(step) => self.on_recovery(step, result, io),
            Pending::Truncation(step) => self.on_truncation_read(step, result, io),
            Pending::Locate(step) => self.on_locate_read(step, result, io),
        }
        let _ = now;
        if let Some((id, barrier)) = self.barrier {
            if id == req && matches!(self.state, LogState::Opening | LogState::Online) {
                self.barrier = None;
                match barrier {
                    Barrier::Opened => self.go_online(),
                    Barrier::RecoveryLoaded => self.recovery_plan(io),
                    Barrier::RecoveryRepaired => self.recovery_checkpoint(io),
                    Barrier::Truncated(end) => {
                        self.truncation = None;
                        self.truncated.push_back(end);
                        self.events.push_back(LogEvent::Truncated { end });
                    }
                }
            }
        }
    }

    fn on_synced(&mut self, upto: i64, io: &mut DiskIo) {
        // A sync issued before a truncation may cover offsets cut since.
        self.durable = self.durable.max(upto.min(self.leo));
        if self.config.durability == Durability::Sync {
            self.advance_local(upto);
            if self.syncs_in_flight == 0 && self.durable < self.leo {
                self.issue_sync(io);
            }
        }
        if self.syncs_in_flight == 0 && self.checkpoint_after_sync {
            self.checkpoint_after_sync = false;
            self.write_checkpoint(io);
        }
    }
}
