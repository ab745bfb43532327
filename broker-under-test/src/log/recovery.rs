//! Opening an existing log: list the directory, load what can be trusted,
//! scan the rest batch by batch (CRC-checked), cut off a torn or corrupt tail,
//! make what is left durable, and checkpoint.
//!
//! Segments wholly below the checkpoint's recovery point are loaded from
//! their index files if those pass sanity checks; all others are scanned.
//! Nothing read from disk can panic the log: garbage index or checkpoint
//! files are ignored (with a warning) and rebuilt.

use bytes::Bytes;

use super::batch::{self, ScanStop};
use super::checkpoint::{self, Checkpoint, CHECKPOINT, METADATA};
use super::epoch::{EpochCache, EPOCH_FILE};
use super::producers::{AbortedTxn, ProducerStates, SNAPSHOT_EXT};
use super::segment::{file_name, parse_file_name, Segment};
use super::txn_index::{self, TXN_INDEX_EXT};
use super::{Barrier, PartitionLog, Pending, SEGMENT_EXTS};
use crate::diskio::DiskIo;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, DiskReqId};

/// Bytes read per step of a segment scan.
const SCAN_CHUNK: u64 = 1024 * 1024;
/// Largest index or small text file read during recovery.
const MAX_SMALL_FILE: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub(super) enum RecStep {
    List,
    Metadata,
    Checkpoint,
    Epochs,
    Index(usize),
    TimeIndex(usize),
    /// The producer state snapshot at this offset.
    ProducerSnapshot(i64),
    /// The `.txnindex` of segment `i`, which ends where segment `i + 1` begins.
    TxnIndex(usize),
    Chunk {
        pos: u64,
        asked: u64,
    },
}

#[derive(Debug, Default)]
struct RecSeg {
    base: i64,
    size: u64,
    index_size: Option<u64>,
    timeindex_size: Option<u64>,
    index: Option<Bytes>,
    timeindex: Option<Bytes>,
    txnindex_size: Option<u64>,
}

#[derive(Debug)]
enum Plan {
    Trusted(Segment),
    Scan { base: i64, size: u64 },
}

#[derive(Debug)]
struct Scan {
    seg: Segment,
    file_size: u64,
    /// (epoch, base offset) of batches whose epoch is above every one before in this scan.
    epochs: Vec<(i32, i64)>,
}

fn rec_epochs_latest(epochs: &[(i32, i64)]) -> i32 {
    epochs.last().map_or(-1, |&(e, _)| e)
}

#[derive(Debug, Default)]
pub(super) struct Recovery {
    segs: Vec<RecSeg>,
    /// File names (in the log directory) to remove.
    removals: Vec<String>,
    checkpoint: Option<Checkpoint>,
    plan: std::collections::VecDeque<Plan>,
    scanning: Option<Scan>,
    built: Vec<Segment>,
    /// Bases of scanned segments (synced, and given fresh index files unless last).
    scanned: Vec<i64>,
    /// (segment base, length) to cut the last segment to.
    truncate: Option<(i64, u64)>,
    /// The leader-epoch-checkpoint file as read (`None`: absent or garbage).
    epochs: Option<EpochCache>,
    /// (epoch, base offset) of scanned batches whose epoch is above every one before.
    scanned_epochs: Vec<(i32, i64)>,
    /// (offset, size) of the producer state snapshots found.
    snapshots: Vec<(i64, u64)>,
    /// The producer state: the snapshot read, then every scanned batch at or
    /// above `producers_from`.
    producers: ProducerStates,
    /// The offset of the snapshot in use; `None`: no good snapshot, every
    /// segment is scanned to rebuild the producer state.
    producers_from: Option<i64>,
    /// Aborted transactions: from the `.txnindex` files of the segments
    /// below the snapshot, then from the markers scanned above it.
    aborted: Vec<AbortedTxn>,
    /// A `.txnindex` below the snapshot was unreadable: rebuild everything.
    txn_index_bad: bool,
}

impl PartitionLog {
    pub(super) fn start_recovery(&mut self, io: &mut DiskIo) {
        self.recovery = Some(Box::default());
        let dir = self.dir.clone();
        self.submit(
            io,
            DiskOp::List { path: dir },
            Pending::Recovery(RecStep::List),
        );
    }

    fn small_read(&mut self, io: &mut DiskIo, name: &str, len: u64, step: RecStep) -> DiskReqId {
        let op = DiskOp::Read {
            path: self.path(name),
            offset: 0,
            len: len.min(MAX_SMALL_FILE),
        };
        self.submit(io, op, Pending::Recovery(step))
    }

    pub(super) fn on_recovery(
        &mut self,
        step: RecStep,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
    ) {
        let data = match result {
            Ok(DiskReply::Data(d)) => Some(d),
            Ok(DiskReply::Listing(entries)) => {
                self.on_listing(entries, io);
                return;
            }
            Ok(DiskReply::Done) => None,
            Err(e)
                if e.kind == DiskErrorKind::NotFound
                    && !matches!(step, RecStep::List | RecStep::Chunk { .. }) =>
            {
                tracing::warn!(dir = %self.dir, ?step, "file vanished during recovery");
                None
            }
            Err(e) => {
                self.fail(format!("recovery failed: {e}"));
                return;
            }
        };
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        match step {
            RecStep::List => self.fail("unexpected reply to a directory listing".into()),
            RecStep::Metadata => match data.as_deref().and_then(checkpoint::parse_metadata) {
                Some(id) => self.topic_id = id,
                None => tracing::warn!(dir = %self.dir, "missing or unreadable partition.metadata"),
            },
            RecStep::Checkpoint => {
                rec.checkpoint = data.as_deref().and_then(Checkpoint::parse);
                if rec.checkpoint.is_none() {
                    tracing::warn!(dir = %self.dir, "unreadable checkpoint ignored; recovering everything");
                }
            }
            RecStep::Epochs => {
                rec.epochs = data.as_deref().and_then(EpochCache::parse);
                if rec.epochs.is_none() {
                    tracing::warn!(dir = %self.dir, "unreadable leader-epoch-checkpoint ignored; rebuilding it from the batches");
                }
            }
            RecStep::Index(i) => {
                if let Some(s) = rec.segs.get_mut(i) {
                    s.index = data;
                }
            }
            RecStep::TimeIndex(i) => {
                if let Some(s) = rec.segs.get_mut(i) {
                    s.timeindex = data;
                }
            }
            RecStep::ProducerSnapshot(offset) => {
                match data.as_deref().and_then(ProducerStates::decode) {
                    Some(states) => {
                        rec.producers = states;
                        rec.producers_from = Some(offset);
                    }
                    None => {
                        tracing::warn!(dir = %self.dir, offset, "unreadable producer state snapshot ignored; rebuilding it from every batch")
                    }
                }
            }
            RecStep::TxnIndex(i) => {
                let base = rec.segs.get(i).map_or(0, |s| s.base);
                let next = rec.segs.get(i + 1).map_or(i64::MAX, |s| s.base);
                match data
                    .as_deref()
                    .and_then(|d| txn_index::decode(d, base, next))
                {
                    Some(entries) => rec.aborted.extend(entries),
                    None => rec.txn_index_bad = true,
                }
            }
            RecStep::Chunk { pos, asked } => match data {
                Some(buf) => self.on_chunk(pos, asked, buf, io),
                None => self.fail("unexpected reply to a segment read".into()),
            },
        }
    }

    fn on_listing(&mut self, entries: Vec<crate::seam::DirEntry>, io: &mut DiskIo) {
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        let mut has_meta = false;
        let mut has_checkpoint = false;
        let mut has_epochs = false;
        let mut indexes: Vec<(i64, bool, u64, String)> = Vec::new();
        let mut txn_indexes: Vec<(i64, u64, String)> = Vec::new();
        for e in entries {
            if e.is_dir {
                tracing::warn!(dir = %self.dir, name = %e.name, "ignoring a directory in a log directory");
                continue;
            }
            if e.name == METADATA {
                has_meta = true;
            } else if e.name == CHECKPOINT {
                has_checkpoint = true;
            } else if e.name == EPOCH_FILE {
                has_epochs = true;
            } else if e.name.ends_with(".tmp") {
                rec.removals.push(e.name);
            } else {
                match parse_file_name(&e.name) {
                    Some((base, "log")) => rec.segs.push(RecSeg {
                        base,
                        size: e.size,
                        ..RecSeg::default()
                    }),
                    Some((base, "index")) => indexes.push((base, false, e.size, e.name)),
                    Some((base, "timeindex")) => indexes.push((base, true, e.size, e.name)),
                    Some((base, SNAPSHOT_EXT)) => rec.snapshots.push((base, e.size)),
                    Some((base, TXN_INDEX_EXT)) => txn_indexes.push((base, e.size, e.name)),
                    _ => {
                        tracing::warn!(dir = %self.dir, name = %e.name, "ignoring an unknown file in a log directory")
                    }
                }
            }
        }
        rec.segs.sort_by_key(|s| s.base);
        for (base, time, size, name) in indexes {
            match rec.segs.iter_mut().find(|s| s.base == base) {
                Some(s) if time => s.timeindex_size = Some(size),
                Some(s) => s.index_size = Some(size),
                None => rec.removals.push(name),
            }
        }
        for (base, size, name) in txn_indexes {
            match rec.segs.iter_mut().find(|s| s.base == base) {
                Some(s) => s.txnindex_size = Some(size),
                None => rec.removals.push(name),
            }
        }
        let mut reads: Vec<(String, u64, RecStep)> = Vec::new();
        if has_meta {
            reads.push((METADATA.to_string(), 4096, RecStep::Metadata));
        }
        if has_checkpoint {
            reads.push((CHECKPOINT.to_string(), 4096, RecStep::Checkpoint));
        }
        if has_epochs {
            reads.push((EPOCH_FILE.to_string(), 1 << 20, RecStep::Epochs));
        }
        // The newest snapshot taken at the roll to a segment that still
        // exists (one at another offset is stale or half-made).
        rec.snapshots.sort_unstable();
        let snapshot = rec
            .snapshots
            .iter()
            .rev()
            .find(|&&(o, _)| rec.segs.iter().any(|s| s.base == o));
        // The aborted transactions of the segments below the snapshot come
        // from their `.txnindex` files; without all of them (a log from before
        // transactions, or a lost file) every segment is scanned instead.
        let below = |o: i64| rec.segs.iter().enumerate().filter(move |(_, s)| s.base < o);
        let snapshot = snapshot.filter(|&&(o, _)| {
            let complete = below(o).all(|(_, s)| s.txnindex_size.is_some());
            if !complete {
                tracing::info!(dir = %self.dir, "transaction index files missing; rebuilding them from every batch");
            }
            complete
        });
        if let Some(&(offset, size)) = snapshot {
            reads.push((
                file_name(offset, SNAPSHOT_EXT),
                size,
                RecStep::ProducerSnapshot(offset),
            ));
            for (i, s) in below(offset) {
                let size = s.txnindex_size.unwrap_or(0);
                reads.push((file_name(s.base, TXN_INDEX_EXT), size, RecStep::TxnIndex(i)));
            }
        }
        let last = rec.segs.len().saturating_sub(1);
        for (i, s) in rec.segs.iter().enumerate().take(last) {
            if let (Some(isz), Some(tsz)) = (s.index_size, s.timeindex_size) {
                reads.push((file_name(s.base, "index"), isz, RecStep::Index(i)));
                reads.push((file_name(s.base, "timeindex"), tsz, RecStep::TimeIndex(i)));
            }
        }
        let mut last_req = None;
        for (name, len, step) in reads {
            last_req = Some(self.small_read(io, &name, len, step));
        }
        match last_req {
            Some(req) => self.barrier = Some((req, Barrier::RecoveryLoaded)),
            None => self.recovery_plan(io),
        }
    }

    /// Everything small is loaded: decide what to trust, what to scan, what to drop.
    pub(super) fn recovery_plan(&mut self, io: &mut DiskIo) {
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        let first_base = rec.segs.first().map_or(0, |s| s.base);
        let (rp, ls) = match rec.checkpoint {
            Some(cp) => (cp.recovery_point, cp.log_start_offset),
            None => (0, first_base),
        };
        // Without an epoch file every batch is scanned, so that the epochs
        // can be rebuilt from their headers.
        let rp = if rec.epochs.is_some() { rp } else { 0 };
        if rec.txn_index_bad {
            tracing::warn!(dir = %self.dir, "unreadable transaction index ignored; rebuilding it from every batch");
            rec.producers_from = None;
            rec.producers = ProducerStates::default();
        }
        if rec.producers_from.is_none() {
            rec.aborted.clear();
        }

        self.log_start = ls.max(0);
        let segs = std::mem::take(&mut rec.segs);
        for (i, s) in segs.iter().enumerate() {
            let next_base = segs.get(i + 1).map(|n| n.base);
            if let Some(next) = next_base {
                if next <= ls {
                    for ext in SEGMENT_EXTS {
                        rec.removals.push(file_name(s.base, ext));
                    }
                    continue;
                }
                // Batches at or above the producer snapshot are scanned to
                // bring the producer state up to date.
                let producers_have_it = rec.producers_from.is_some_and(|from| next <= from);
                if next <= rp && producers_have_it {
                    if let (Some(idx), Some(tidx)) = (&s.index, &s.timeindex) {
                        if let Some(seg) = Segment::from_indexes(s.base, s.size, next, idx, tidx) {
                            rec.plan.push_back(Plan::Trusted(seg));
                            continue;
                        }
                        tracing::warn!(dir = %self.dir, base = s.base, "invalid index files; rebuilding");
                    }
                }
            } else if s.index_size.is_some()
                || s.timeindex_size.is_some()
                || s.txnindex_size.is_some()
            {
                rec.removals.push(file_name(s.base, "index"));
                rec.removals.push(file_name(s.base, "timeindex"));
                rec.removals.push(file_name(s.base, TXN_INDEX_EXT));
            }
            rec.plan.push_back(Plan::Scan {
                base: s.base,
                size: s.size,
            });
        }
        self.recovery_continue(io);
    }

    /// Take the next planned segment: load a trusted one, start scanning the next.
    fn recovery_continue(&mut self, io: &mut DiskIo) {
        loop {
            let Some(rec) = self.recovery.as_mut() else {
                return;
            };
            match rec.plan.pop_front() {
                Some(Plan::Trusted(seg)) => rec.built.push(seg),
                Some(Plan::Scan { base, size }) => {
                    rec.scanning = Some(Scan {
                        seg: Segment::new(base),
                        file_size: size,
                        epochs: Vec::new(),
                    });
                    if size == 0 {
                        self.scan_done(io);
                        return;
                    }
                    self.scan_read(0, SCAN_CHUNK, io);
                    return;
                }
                None => {
                    self.recovery_repair(io);
                    return;
                }
            }
        }
    }

    fn scan_read(&mut self, pos: u64, want: u64, io: &mut DiskIo) {
        let Some(scan) = self.recovery.as_ref().and_then(|r| r.scanning.as_ref()) else {
            return;
        };
        let asked = want.min(scan.file_size.saturating_sub(pos));
        let op = DiskOp::Read {
            path: self.path(&file_name(scan.seg.base, "log")),
            offset: pos,
            len: asked,
        };
        self.submit(io, op, Pending::Recovery(RecStep::Chunk { pos, asked }));
    }

    fn on_chunk(&mut self, pos: u64, asked: u64, buf: Bytes, io: &mut DiskIo) {
        let interval = self.config.index_interval_bytes;
        let dir = self.dir.clone();
        let Some(Recovery {
            scanning: Some(scan),
            producers,
            producers_from,
            aborted,
            ..
        }) = self.recovery.as_deref_mut()
        else {
            return;
        };
        let producers_from = producers_from.unwrap_or(i64::MIN);
        if (buf.len() as u64) < asked {
            scan.file_size = pos + buf.len() as u64;
        }
        let (headers, valid, stop) = batch::scan(&buf);
        let mut good = 0usize;
        let mut problem = None;
        for h in headers {
            if h.base_offset != scan.seg.next_offset {
                problem = Some(format!(
                    "batch at {} has base offset {}, expected {}",
                    pos + good as u64,
                    h.base_offset,
                    scan.seg.next_offset
                ));
                break;
            }
            scan.seg.add_batch(&h, pos + good as u64, interval);
            if h.base_offset >= producers_from {
                if batch::is_control(&h) {
                    let done = batch::read_marker(&buf[good..good + h.length], &h)
                        .and_then(|m| producers.record_marker(&h, m));
                    if let Some(t) = done.filter(|t| t.aborted) {
                        aborted.push(AbortedTxn {
                            last_offset: t.marker_offset,
                            producer_id: t.producer_id,
                            first_offset: t.first_offset,
                        });
                    }
                } else {
                    producers.record(&h);
                }
            }
            good += h.length;
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 && rec_epochs_latest(&scan.epochs) < epoch {
                scan.epochs.push((epoch, h.base_offset));
            }
        }
        let new_pos = pos + good as u64;
        scan.seg.size = new_pos;
        let file_size = scan.file_size;
        let base = scan.seg.base;
        if problem.is_none() {
            debug_assert_eq!(good, valid);
            match stop {
                ScanStop::End if new_pos >= file_size => {
                    self.scan_done(io);
                    return;
                }
                ScanStop::End => {
                    self.scan_read(new_pos, SCAN_CHUNK, io);
                    return;
                }
                ScanStop::Incomplete { needed } => {
                    let fits = new_pos + needed as u64 <= file_size;
                    if fits && (good > 0 || asked < needed as u64) {
                        self.scan_read(new_pos, SCAN_CHUNK.max(needed as u64), io);
                        return;
                    }
                    problem = Some(format!("torn batch at {new_pos} (needs {needed} bytes)"));
                }
                ScanStop::Corrupt(why) => {
                    problem = Some(format!("invalid batch at {new_pos}: {why}"))
                }
            }
        }
        let why = problem.unwrap_or_default();
        tracing::warn!(dir = %dir, segment = base, position = new_pos, reason = %why, "truncating log");
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        rec.truncate = Some((base, new_pos));
        for plan in std::mem::take(&mut rec.plan) {
            let b = match plan {
                Plan::Trusted(seg) => seg.base,
                Plan::Scan { base, .. } => base,
            };
            for ext in SEGMENT_EXTS {
                rec.removals.push(file_name(b, ext));
            }
        }
        rec.removals.push(file_name(base, "index"));
        rec.removals.push(file_name(base, "timeindex"));
        rec.removals.push(file_name(base, TXN_INDEX_EXT));
        self.scan_done(io);
    }

    fn scan_done(&mut self, io: &mut DiskIo) {
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        if let Some(scan) = rec.scanning.take() {
            rec.scanned.push(scan.seg.base);
            rec.built.push(scan.seg);
            for (epoch, start) in scan.epochs {
                if rec_epochs_latest(&rec.scanned_epochs) < epoch {
                    rec.scanned_epochs.push((epoch, start));
                }
            }
        }
        self.recovery_continue(io);
    }

    /// Cut, sync and clean up; then the checkpoint.
    fn recovery_repair(&mut self, io: &mut DiskIo) {
        let Some(mut rec) = self.recovery.take() else {
            return;
        };
        let mut segments = std::mem::take(&mut rec.built);
        self.cut_at_first_gap(&mut rec, &mut segments);
        rec.removals.sort();
        rec.removals.dedup();
        if segments.is_empty() {
            let seg = Segment::new(self.log_start);
            let path = self.path(&file_name(seg.base, "log"));
            self.submit(io, DiskOp::Create { path }, Pending::Step);
            rec.removals.retain(|n| *n != file_name(seg.base, "log"));
            segments.push(seg);
        }
        if let Some((base, len)) = rec.truncate {
            let path = self.path(&file_name(base, "log"));
            self.submit(io, DiskOp::Truncate { path, len }, Pending::Step);
        }
        let last_base = segments.last().map_or(0, |s| s.base);
        for seg in &segments {
            if !rec.scanned.contains(&seg.base) {
                continue;
            }
            let path = self.path(&file_name(seg.base, "log"));
            self.submit(io, DiskOp::SyncFile { path }, Pending::Step);
            if seg.base != last_base {
                for (ext, content) in [
                    ("index", seg.encode_index()),
                    ("timeindex", seg.encode_time_index()),
                ] {
                    self.write_segment_file(io, seg.base, ext, content);
                }
            }
        }
        self.recover_producers(&mut rec, &segments);
        self.write_rebuilt_txn_indexes(&rec, &segments, io);
        for name in &rec.removals {
            let path = self.path(name);
            self.submit(io, DiskOp::Remove { path }, Pending::Remove);
        }
        self.recover_epochs(&mut rec, &segments, io);
        let dir = self.dir.clone();
        let last = self.submit(io, DiskOp::SyncDir { path: dir }, Pending::Step);
        self.barrier = Some((last, Barrier::RecoveryRepaired));

        let (active_base, active_size, leo) = {
            let a = segments.last().expect("at least one segment");
            (a.base, a.size, a.next_offset)
        };
        self.segments = segments;
        self.leo = leo;
        self.hw = leo;
        self.local_end = leo;
        self.hw_restorable = true;
        self.durable = leo;
        self.hw_pos = (active_base, active_size);
        let first_base = self.segments[0].base;
        self.log_start = self.log_start.max(first_base).min(leo);
        tracing::info!(dir = %self.dir, log_start = self.log_start, log_end = leo, segments = self.segments.len(), "log recovered");
    }

    /// The producer state as rebuilt, cut to the recovered log; snapshots
    /// that no longer match a segment in it are removed.
    fn recover_producers(&mut self, rec: &mut Recovery, segments: &[Segment]) {
        let leo = segments.last().map_or(0, |s| s.next_offset);
        let log_start = self
            .log_start
            .max(segments.first().map_or(0, |s| s.base))
            .min(leo);
        let mut producers = std::mem::take(&mut rec.producers);
        producers.truncate_to(leo);
        producers.truncate_head(log_start);
        self.producers = producers;
        self.aborted.clear();
        self.aborted.extend(rec.aborted.iter().copied());
        self.aborted.truncate_to(leo);
        self.aborted.truncate_head(log_start);
        self.snapshots.clear();
        for &(offset, _) in &rec.snapshots {
            let kept = offset >= log_start && segments.iter().any(|s| s.base == offset);
            if kept {
                self.snapshots.insert(offset);
            } else {
                rec.removals.push(file_name(offset, SNAPSHOT_EXT));
            }
        }
        if !self.producers.is_empty() {
            tracing::info!(dir = %self.dir, producers = self.producers.len(), from_snapshot = ?rec.producers_from, "producer state rebuilt");
        }
    }

    /// The `.txnindex` of every closed segment whose aborts came from the
    /// scan (at or above the snapshot, or all without one), written afresh
    /// (the removals, issued after, never name these).
    fn write_rebuilt_txn_indexes(&mut self, rec: &Recovery, segments: &[Segment], io: &mut DiskIo) {
        let from = rec.producers_from.unwrap_or(i64::MIN);
        for pair in segments.windows(2) {
            let (seg, next) = (&pair[0], pair[1].base);
            if seg.base < from {
                continue;
            }
            let content = txn_index::encode(&self.aborted.in_segment(seg.base, next));
            self.write_segment_file(io, seg.base, TXN_INDEX_EXT, content);
        }
    }

    /// The epoch cache from the file (if it was good) without entries at or
    /// above the recovered log end, plus the epochs of scanned batches above
    /// its latest; written back if that changed anything.
    fn recover_epochs(&mut self, rec: &mut Recovery, segments: &[Segment], io: &mut DiskIo) {
        let leo = segments.last().map_or(0, |s| s.next_offset);
        let log_start = self
            .log_start
            .max(segments.first().map_or(0, |s| s.base))
            .min(leo);
        let mut cache = rec.epochs.clone().unwrap_or_default();
        cache.truncate_from_end(leo);
        for &(epoch, start) in &rec.scanned_epochs {
            if start < leo && cache.latest_epoch().is_none_or(|l| epoch > l) {
                cache.assign(epoch, start);
            }
        }
        // An epoch starting at or above the end has no batch (yet): dropped.
        cache.truncate_from_start(log_start);
        cache.truncate_from_end(leo);
        let changed = match &rec.epochs {
            Some(loaded) => *loaded != cache,
            // Written even empty for a log with data, else every open would
            // scan every segment to rebuild it.
            None => !cache.entries().is_empty() || leo > log_start,
        };
        self.epochs = cache;
        if changed {
            tracing::info!(dir = %self.dir, epochs = ?self.epochs.entries(), "leader epoch cache rebuilt");
            self.write_epochs(io);
        }
    }

    /// A crash that loses unsynced data from several segments in a row
    /// leaves their files short or empty: a segment then ends below the next
    /// one's base, and the offsets between are gone. Such a gap is cut like a
    /// torn tail: the segments after it are removed and the log ends where the
    /// surviving data ends, as if the loss had happened inside one segment.
    ///
    /// Data above the recovery point was never synced, so (in sync mode) never
    /// acknowledged and never served: reusing its offsets is safe. A gap whose
    /// start is below the recovery point (or the log start) means data the log
    /// had made durable is gone (a lying disk): it is not cut, as that would
    /// take back offsets that were acknowledged and served and drop surviving
    /// data after the gap. Such a gap stays; reads walk over it.
    fn cut_at_first_gap(&mut self, rec: &mut Recovery, segments: &mut Vec<Segment>) {
        let recovery_point = rec.checkpoint.map_or(0, |cp| cp.recovery_point);
        let floor = recovery_point.max(self.log_start);
        let Some(keep) = first_gap_to_cut(segments, floor) else {
            return;
        };
        let dropped = segments.split_off(keep);
        let last = segments.last().expect("a gap follows a segment");
        tracing::warn!(
            dir = %self.dir,
            log_end = last.next_offset,
            next_segment = dropped[0].base,
            segments = dropped.len(),
            "unsynced data of several segments lost; truncating log"
        );
        for seg in &dropped {
            for ext in SEGMENT_EXTS {
                rec.removals.push(file_name(seg.base, ext));
            }
            if rec.truncate.is_some_and(|(base, _)| base == seg.base) {
                rec.truncate = None;
            }
        }
        // The segment before the gap is the active one now: no index files.
        rec.removals.push(file_name(last.base, "index"));
        rec.removals.push(file_name(last.base, "timeindex"));
        rec.removals.push(file_name(last.base, TXN_INDEX_EXT));
    }

    /// Repairs are durable: record it, then the log is open.
    pub(super) fn recovery_checkpoint(&mut self, io: &mut DiskIo) {
        let last = self.write_checkpoint(io);
        self.barrier = Some((last, Barrier::Opened));
    }
}

/// The index of the first segment to drop: the one after the first gap (a
/// segment ending below the next one's base) that starts at or above `floor`.
fn first_gap_to_cut(segments: &[Segment], floor: i64) -> Option<usize> {
    segments
        .windows(2)
        .position(|w| w[0].next_offset < w[1].base && w[0].next_offset >= floor)
        .map(|i| i + 1)
}
