//! What partition replication needs from the log: a high watermark apart
//! from the local end, reads up to the log end for followers, appends of
//! batches that already carry offsets and epochs, truncation of a suffix, and
//! the leader epoch cache with its `leader-epoch-checkpoint` file.
//!
//! Truncation (`truncate_to`) is asynchronous: the segment holding the new end
//! is read from its start and its batches walked, which finds the exact byte
//! position of the new end and rebuilds the segment's in-memory index and
//! maximum timestamp. Then, in this order, the checkpoint (its recovery point
//! at most the new end), the epoch file, the `Truncate` of the segment file,
//! its sync, the removal of later segments and a directory sync are issued;
//! the completion of the last makes the truncation durable
//! ([`PartitionLog::poll_truncated`]). A crash anywhere in between recovers
//! either the old log or the cut one (the lower recovery point makes recovery
//! scan everything from the cut segment on).

use bytes::Bytes;

use super::batch::{self, BatchError, HeaderError, ScanStop};
use super::epoch::{EPOCH_FILE, EPOCH_FILE_TMP};
use super::segment::{file_name, Segment};
use super::{AppendInfo, Barrier, LogError, LogState, PartitionLog, Pending};
use crate::diskio::DiskIo;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, Now};

/// Bytes read per step of a truncation walk.
const WALK_CHUNK: u64 = 1024 * 1024;

/// A truncation in progress: walking the segment that will hold the new end.
#[derive(Debug)]
pub(super) struct Truncation {
    target: i64,
    /// The segment rebuilt from the batches walked so far.
    seg: Segment,
    /// Bytes of the segment (written or being written) when the walk started.
    file_size: u64,
}

/// Walking from a restored high watermark to the log end.
#[derive(Debug)]
pub(super) struct Locate {
    gen: u64,
    /// The log end when the walk started (appends since have their marks).
    stop: i64,
    seg_base: i64,
    /// (end offset, segment base, end position) of each batch walked.
    found: Vec<(i64, i64, u64)>,
}

/// A read of the locate walk in flight.
#[derive(Debug)]
pub(super) struct LocateStep {
    gen: u64,
    pos: u64,
    asked: u64,
}

/// A read of the truncation walk in flight.
#[derive(Debug)]
pub(super) struct TruncStep {
    pos: u64,
    asked: u64,
}

impl PartitionLog {
    /// Replicated: the high watermark moves only by
    /// [`Self::advance_high_watermark`]. Not replicated (the default): it
    /// follows the local end. Turning it off catches the high watermark up.
    pub fn set_replicated(&mut self, on: bool) {
        self.replicated = on;
        if !on {
            self.set_hw(self.local_end);
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated
    }

    /// Replicated logs: raise the high watermark to `hw` (never above the log
    /// end, never back). Ignored for a log that is not replicated.
    pub fn advance_high_watermark(&mut self, hw: i64) {
        if !self.replicated {
            tracing::debug!(dir = %self.dir, hw, "advance_high_watermark on a log that is not replicated");
            return;
        }
        self.hw_restorable = false;
        self.set_hw(hw);
    }

    /// After open, on a replicated log (ignored otherwise: its high watermark
    /// is its local end): the high watermark from the node's
    /// replication-offset checkpoint, at most the log end (and at least the
    /// log start). Lowers
    /// it only right after open (before any append, truncation or advance);
    /// afterwards it only raises it like [`Self::advance_high_watermark`].
    ///
    /// Lowered, the log reads the batches from the sparse-index entry at or
    /// below it to the log end to learn their byte positions. Until that walk
    /// is done, reads stop at that index entry (never above the high
    /// watermark, but possibly short of it).
    pub fn restore_high_watermark(&mut self, hw: i64, io: &mut DiskIo) {
        if !self.replicated {
            tracing::debug!(dir = %self.dir, hw, "restore_high_watermark on a log that is not replicated");
            return;
        }
        let hw = hw.min(self.leo).max(self.log_start);
        if self.hw_restorable
            && hw < self.hw
            && self.state == LogState::Online
            && self.truncation.is_none()
        {
            self.hw = hw;
            let i = self.segment_for(hw);
            let s = &self.segments[i];
            let (base, pos) = (s.base, s.position_for(hw));
            self.hw_pos = (base, pos);
            self.marks.retain(|&(end, _, _)| end > hw);
            self.locate_gen += 1;
            self.locate = Some(Box::new(Locate {
                gen: self.locate_gen,
                stop: self.leo,
                seg_base: base,
                found: Vec::new(),
            }));
            self.locate_read(pos, WALK_CHUNK, io);
        } else {
            self.set_hw(hw);
        }
    }

    fn locate_read(&mut self, mut pos: u64, want: u64, io: &mut DiskIo) {
        loop {
            let Some((gen, base)) = self.locate.as_ref().map(|l| (l.gen, l.seg_base)) else {
                return;
            };
            let Some(i) = self.segment_index(base) else {
                self.locate = None;
                return;
            };
            let size = self.segments[i].size;
            if pos < size {
                let asked = want.min(size - pos);
                let op = DiskOp::Read {
                    path: self.path(&file_name(base, "log")),
                    offset: pos,
                    len: asked,
                };
                self.submit(io, op, Pending::Locate(LocateStep { gen, pos, asked }));
                return;
            }
            match self.segments.get(i + 1).map(|s| s.base) {
                Some(next) => {
                    if let Some(l) = self.locate.as_mut() {
                        l.seg_base = next;
                    }
                    pos = 0;
                }
                None => {
                    self.finish_locate();
                    return;
                }
            }
        }
    }

    pub(super) fn on_locate_read(
        &mut self,
        step: LocateStep,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
    ) {
        if self.locate.as_ref().is_none_or(|l| l.gen != step.gen) {
            return;
        }
        let buf = match result {
            Ok(DiskReply::Data(buf)) => buf,
            Ok(other) => {
                self.fail(format!("unexpected reply to a segment read: {other:?}"));
                return;
            }
            Err(e) if e.kind == DiskErrorKind::NotFound => {
                self.locate = None;
                return;
            }
            Err(e) => {
                self.fail(format!("read failed: {e}"));
                return;
            }
        };
        let Some(l) = self.locate.as_mut() else {
            return;
        };
        let (headers, _, stop) = batch::scan(&buf);
        let mut at = step.pos;
        for h in headers {
            at += h.length as u64;
            l.found.push((h.next_offset(), l.seg_base, at));
            if h.next_offset() >= l.stop {
                self.finish_locate();
                return;
            }
        }
        let more = match stop {
            ScanStop::End => Some(WALK_CHUNK),
            ScanStop::Incomplete { needed } if at > step.pos || step.asked < needed as u64 => {
                Some(WALK_CHUNK.max(needed as u64))
            }
            _ => None,
        };
        match more {
            Some(want) if (buf.len() as u64) == step.asked => self.locate_read(at, want, io),
            _ => {
                tracing::warn!(dir = %self.dir, position = at, "could not walk to the log end from the restored high watermark");
                self.locate = None;
            }
        }
    }

    /// The batches above the restored high watermark are known: their ends
    /// become marks (ahead of those of appends since), and the high watermark
    /// (moved on meanwhile, perhaps) takes its exact position from them.
    fn finish_locate(&mut self) {
        let Some(l) = self.locate.take() else {
            return;
        };
        let last = l.found.last().map_or(i64::MIN, |m| m.0);
        let mut marks: std::collections::VecDeque<(i64, i64, u64)> = l.found.into();
        marks.extend(self.marks.iter().copied().filter(|m| m.0 > last));
        while let Some(&(end, seg, pos)) = marks.front() {
            if end > self.hw {
                break;
            }
            if (seg, pos) > self.hw_pos {
                self.hw_pos = (seg, pos);
            }
            marks.pop_front();
        }
        self.marks = marks;
    }

    /// A follower's fetch: like [`Self::read`], but up to the log end instead
    /// of the high watermark (`FetchData::high_watermark` is still the high
    /// watermark). `NotReady` while a truncation is in progress.
    pub fn read_replica(
        &mut self,
        fetch_offset: i64,
        max_bytes: usize,
        _now: Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        self.usable()?;
        if self.truncation.is_some() {
            return Err(LogError::NotReady);
        }
        self.start_read(fetch_offset, max_bytes, true, None, io)
    }

    /// An estimate of the bytes at or after `offset` and below `limit` (at
    /// most the log end): what a follower's (or a read_committed consumer's)
    /// fetch would get, for long polls. Never 0 when `offset < limit`.
    pub fn bytes_available_to(&self, offset: i64, limit: i64) -> u64 {
        if self.state != LogState::Online || self.truncation.is_some() || self.segments.is_empty() {
            return 0;
        }
        let limit = limit.min(self.leo);
        if offset >= limit || offset < self.log_start {
            return 0;
        }
        let (eb, ep) = self.position_of(limit);
        let first = self.segment_for(offset);
        let mut total = 0;
        for (i, seg) in self.segments.iter().enumerate().skip(first) {
            let end = match seg.base.cmp(&eb) {
                std::cmp::Ordering::Less => seg.size,
                std::cmp::Ordering::Equal => ep.min(seg.size),
                std::cmp::Ordering::Greater => 0,
            };
            let from = if i == first {
                seg.position_for(offset)
            } else {
                0
            };
            total += end.saturating_sub(from);
        }
        // A limit below the high watermark (a last stable offset) is placed
        // by the sparse index, which may put it at `offset`'s own position:
        // there is still data, and a long poll must not wait for it.
        total.max(1)
    }

    /// (segment base, file position) of `offset`, or of the batch start
    /// below it that the log knows.
    fn position_of(&self, offset: i64) -> (i64, u64) {
        if offset >= self.leo && self.truncation.is_none() {
            let a = self.active();
            return (a.base, a.size);
        }
        if offset >= self.hw {
            let mark = self
                .marks
                .iter()
                .take_while(|&&(end, _, _)| end <= offset)
                .last();
            return match mark {
                Some(&(_, seg, pos)) => (seg, pos),
                None => self.hw_pos,
            };
        }
        let s = &self.segments[self.segment_for(offset)];
        (s.base, s.position_for(offset))
    }

    /// A follower's append of batches from the leader's Fetch answer: each
    /// validated (CRC, record count, size) but kept as it is (offsets and
    /// partition leader epochs are the leader's). The first must start at the
    /// log end and the rest follow on (else `BatchError::OffsetMismatch`); a
    /// trailing partial batch is ignored. Nothing to append: a no-op answered
    /// with `last_offset = base_offset - 1`.
    pub fn append_replica(
        &mut self,
        records: Bytes,
        now: Now,
        io: &mut DiskIo,
    ) -> Result<AppendInfo, LogError> {
        self.usable_for_append()?;
        let mut headers = Vec::new();
        let mut pos = 0;
        let mut expected = self.leo;
        while pos < records.len() {
            let rest = &records[pos..];
            let h = match batch::parse_header(rest) {
                Ok(h) => h,
                // A fetch answer cut at its size limit.
                Err(HeaderError::Incomplete { .. }) => break,
                Err(HeaderError::UnsupportedMagic(m)) => {
                    return Err(LogError::Batch(BatchError::UnsupportedMagic(m)))
                }
                Err(HeaderError::Corrupt(why)) => {
                    return Err(LogError::Batch(BatchError::Corrupt(format!(
                        "batch at byte {pos}: {why}"
                    ))))
                }
            };
            batch::validate_record_set(&rest[..h.length], self.config.max_batch_bytes)
                .map_err(LogError::Batch)?;
            if h.base_offset != expected {
                return Err(LogError::Batch(BatchError::OffsetMismatch {
                    expected,
                    got: h.base_offset,
                }));
            }
            expected = h.next_offset();
            pos += h.length;
            headers.push(h);
        }
        if headers.is_empty() {
            return Ok(AppendInfo {
                base_offset: self.leo,
                last_offset: self.leo - 1,
                log_append_time: -1,
                log_start_offset: self.log_start,
                duplicate: false,
            });
        }
        let data = records.slice(..pos);
        let info = self.write_batches(&headers, data.clone(), now, io);
        // Followers keep producer and transaction state too, so that a new
        // leader dedups and knows which transactions are open.
        self.note_batches(&headers, &data);
        let epochs: Vec<(i32, i64)> = headers
            .iter()
            .map(|h| (h.partition_leader_epoch, h.base_offset))
            .collect();
        self.note_epochs(epochs, io);
        Ok(info)
    }

    /// Epochs of batches just appended: those above the latest go into the
    /// cache, and the epoch file is written once. It is issued after the data
    /// and its sync, but before any checkpoint that could cover the data: a
    /// crash before it is durable leaves the data above the recovery point,
    /// where recovery scans the batches and finds the epochs again.
    pub(super) fn note_epochs(
        &mut self,
        epochs: impl IntoIterator<Item = (i32, i64)>,
        io: &mut DiskIo,
    ) {
        let mut changed = false;
        for (epoch, start) in epochs {
            if self.epochs.latest_epoch().is_none_or(|l| epoch > l) {
                changed |= self.epochs.assign(epoch, start);
            }
        }
        if changed {
            self.write_epochs(io);
        }
    }

    /// Record that leader `epoch` starts at `start_offset` (a new leader: at its
    /// log end) if it is above the latest, and write the epoch file. Ignored
    /// unless the log is online.
    pub fn assign_epoch(&mut self, epoch: i32, start_offset: i64, io: &mut DiskIo) {
        if self.state != LogState::Online {
            tracing::warn!(dir = %self.dir, epoch, start_offset, "leader epoch not recorded: log not online");
            return;
        }
        if self.epochs.assign(epoch, start_offset) {
            self.write_epochs(io);
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// (epoch, start offset), both strictly increasing.
    pub fn epoch_entries(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }

    /// Kafka's `endOffsetFor` (OffsetsForLeaderEpoch): (epoch, end offset),
    /// (-1, -1) when undefined.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.leo)
    }

    /// The epoch of the batch holding `offset`, per the epoch cache.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.epochs.epoch_at(offset)
    }

    /// Write the epoch file (tmp, sync, rename, sync dir). Disk requests
    /// complete in order, so it is durable before any data synced after it.
    pub(super) fn write_epochs(&mut self, io: &mut DiskIo) {
        let data = Bytes::from(self.epochs.encode());
        self.replace_file(io, EPOCH_FILE_TMP, EPOCH_FILE, data, Pending::Step);
    }

    /// A truncation is in progress (appends and replica reads answer `NotReady`).
    pub fn is_truncating(&self) -> bool {
        self.truncation.is_some()
    }

    /// The end of a truncation once it is durable (one per `truncate_to` that
    /// cut something).
    pub fn poll_truncated(&mut self) -> Option<i64> {
        self.truncated.pop_front()
    }

    /// Cut the log so that it ends at `offset` (a batch boundary): a no-op at
    /// or above the log end, an error below the log start or while another
    /// truncation is in progress (`NotReady`). The log end, high watermark
    /// (if above), local end and epoch cache drop to `offset` at once; the
    /// files follow and [`Self::poll_truncated`] reports the end once durable.
    /// A corrupt batch found below `offset` cuts the log there instead.
    pub fn truncate_to(&mut self, offset: i64, io: &mut DiskIo) -> Result<(), LogError> {
        self.usable()?;
        if self.truncation.is_some() {
            return Err(LogError::NotReady);
        }
        if offset >= self.leo {
            return Ok(());
        }
        if offset < self.log_start {
            return Err(self.out_of_range_at(offset));
        }
        tracing::info!(dir = %self.dir, from = self.leo, to = offset, "truncating log");
        self.hw_restorable = false;
        self.locate = None;
        let seg = &self.segments[self.segment_for(offset)];
        let (base, size, sparse) = (seg.base, seg.size, seg.position_for(offset));
        if self.hw > offset {
            self.hw = offset;
            self.hw_pos = (base, sparse);
        }
        self.marks.retain(|&(end, _, _)| end <= offset);
        self.leo = offset;
        self.local_end = self.local_end.min(offset);
        self.durable = self.durable.min(offset);
        if self.epochs.truncate_from_end(offset) {
            self.write_epochs(io);
        }
        self.producers.truncate_to(offset);
        self.aborted.truncate_to(offset);
        self.truncation = Some(Box::new(Truncation {
            target: offset,
            seg: Segment::new(base),
            file_size: size,
        }));
        if offset == base {
            self.finish_truncation(io);
        } else {
            self.walk_read(0, WALK_CHUNK, io);
        }
        Ok(())
    }

    /// A follower whose log cannot continue the leader's (the leader's log
    /// starts above this log's end, or shares nothing with it): drop every
    /// segment and start empty at `offset`, which becomes the log start, log
    /// end and high watermark; the epoch cache is cleared. Like
    /// [`Self::truncate_to`], appends wait (`NotReady`) until
    /// [`Self::poll_truncated`] reports `offset`.
    ///
    /// Order on disk: the new segment file (durable), then the checkpoint
    /// (log start `offset`), the epoch file, the removal of the old
    /// segments, a directory sync. A crash before the checkpoint recovers the
    /// old log (the new empty segment after a gap is cut); after it, the new.
    pub fn truncate_fully_and_start_at(
        &mut self,
        offset: i64,
        io: &mut DiskIo,
    ) -> Result<(), LogError> {
        self.usable()?;
        if self.truncation.is_some() {
            return Err(LogError::NotReady);
        }
        if offset < 0 {
            return Err(self.out_of_range_at(offset));
        }
        tracing::info!(dir = %self.dir, from = self.log_start, to = self.leo, start = offset, "truncating log fully");
        self.hw_restorable = false;
        self.locate = None;
        let removed = std::mem::replace(&mut self.segments, vec![Segment::new(offset)]);
        self.log_start = offset;
        self.leo = offset;
        self.hw = offset;
        self.hw_pos = (offset, 0);
        self.local_end = offset;
        self.durable = offset;
        self.marks.clear();
        self.epochs = Default::default();
        self.producers.clear();
        self.aborted.clear();
        self.truncation = Some(Box::new(Truncation {
            target: offset,
            seg: Segment::new(offset),
            file_size: 0,
        }));
        let path = self.path(&file_name(offset, "log"));
        self.submit(io, DiskOp::Create { path: path.clone() }, Pending::Step);
        self.submit(io, DiskOp::SyncFile { path }, Pending::Step);
        let dir = self.dir.clone();
        self.submit(io, DiskOp::SyncDir { path: dir.clone() }, Pending::Step);
        self.write_checkpoint(io);
        self.write_epochs(io);
        self.remove_snapshots(|_| true, io);
        for s in &removed {
            for ext in super::SEGMENT_EXTS {
                if s.base == offset && ext == "log" {
                    continue;
                }
                let path = self.path(&file_name(s.base, ext));
                self.submit(io, DiskOp::Remove { path }, Pending::Remove);
            }
        }
        let last = self.submit(io, DiskOp::SyncDir { path: dir }, Pending::Step);
        self.barrier = Some((last, Barrier::Truncated(offset)));
        Ok(())
    }

    fn out_of_range_at(&self, requested: i64) -> LogError {
        LogError::OffsetOutOfRange {
            requested,
            log_start: self.log_start,
            high_watermark: self.hw,
        }
    }

    fn walk_read(&mut self, pos: u64, want: u64, io: &mut DiskIo) {
        let Some(t) = self.truncation.as_ref() else {
            return;
        };
        let asked = want.min(t.file_size.saturating_sub(pos));
        let op = DiskOp::Read {
            path: self.path(&file_name(t.seg.base, "log")),
            offset: pos,
            len: asked,
        };
        self.submit(io, op, Pending::Truncation(TruncStep { pos, asked }));
    }

    pub(super) fn on_truncation_read(
        &mut self,
        step: TruncStep,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
    ) {
        let buf = match result {
            Ok(DiskReply::Data(buf)) => buf,
            Ok(other) => {
                self.fail(format!("unexpected reply to a segment read: {other:?}"));
                return;
            }
            Err(e) => {
                self.fail(format!("read failed during truncation: {e}"));
                return;
            }
        };
        let interval = self.config.index_interval_bytes;
        let dir = self.dir.clone();
        let Some(t) = self.truncation.as_mut() else {
            return;
        };
        if (buf.len() as u64) < step.asked {
            t.file_size = step.pos + buf.len() as u64;
        }
        let (headers, _, stop) = batch::scan(&buf);
        let mut good = 0usize;
        let mut done = false;
        for h in headers {
            if h.base_offset != t.seg.next_offset || h.next_offset() > t.target {
                if h.base_offset != t.seg.next_offset {
                    tracing::warn!(dir = %dir, segment = t.seg.base, position = step.pos + good as u64, "unexpected batch offset; truncating there");
                }
                done = true;
                break;
            }
            t.seg.add_batch(&h, step.pos + good as u64, interval);
            good += h.length;
            if t.seg.next_offset == t.target {
                done = true;
                break;
            }
        }
        let new_pos = step.pos + good as u64;
        let file_size = t.file_size;
        if !done {
            match stop {
                ScanStop::End if new_pos < file_size => {
                    self.walk_read(new_pos, WALK_CHUNK, io);
                    return;
                }
                ScanStop::Incomplete { needed }
                    if new_pos + needed as u64 <= file_size
                        && (good > 0 || step.asked < needed as u64) =>
                {
                    self.walk_read(new_pos, WALK_CHUNK.max(needed as u64), io);
                    return;
                }
                ScanStop::End => {}
                other => {
                    tracing::warn!(dir = %dir, position = new_pos, stop = ?other, "damaged batch found while truncating; cutting there");
                }
            }
        }
        self.finish_truncation(io);
    }

    /// The segment holding the new end is rebuilt: cut everything after it.
    fn finish_truncation(&mut self, io: &mut DiskIo) {
        let Some(t) = self.truncation.as_mut() else {
            return;
        };
        let mut seg = std::mem::replace(&mut t.seg, Segment::new(0));
        let Some(i) = self.segment_index(seg.base) else {
            self.fail("segment vanished during truncation".into());
            return;
        };
        let new_end = seg.next_offset;
        let cut = seg.size;
        let was_active = i + 1 == self.segments.len();
        seg.first_append_wall = self.segments[i].first_append_wall;
        let removed: Vec<Segment> = self.segments.drain(i + 1..).collect();
        self.segments[i] = seg;
        let base = self.segments[i].base;
        self.leo = new_end;
        self.local_end = self.local_end.min(new_end);
        self.durable = self.durable.min(new_end);
        if self.hw >= new_end {
            self.hw = new_end;
            self.hw_pos = (base, cut);
        }
        self.marks.retain(|&(end, _, _)| end <= new_end);
        self.epochs.truncate_from_end(new_end);
        self.producers.truncate_to(new_end);
        self.aborted.truncate_to(new_end);
        self.remove_snapshots(|s| s > new_end, io);

        self.write_checkpoint(io);
        self.write_epochs(io);
        let path = self.path(&file_name(base, "log"));
        self.submit(
            io,
            DiskOp::Truncate {
                path: path.clone(),
                len: cut,
            },
            Pending::Step,
        );
        self.submit(io, DiskOp::SyncFile { path }, Pending::Step);
        if !was_active {
            for ext in ["index", "timeindex", super::TXN_INDEX_EXT] {
                let path = self.path(&file_name(base, ext));
                self.submit(io, DiskOp::Remove { path }, Pending::Remove);
            }
        }
        for s in &removed {
            for ext in super::SEGMENT_EXTS {
                let path = self.path(&file_name(s.base, ext));
                self.submit(io, DiskOp::Remove { path }, Pending::Remove);
            }
        }
        let dir = self.dir.clone();
        let last = self.submit(io, DiskOp::SyncDir { path: dir }, Pending::Step);
        self.barrier = Some((last, Barrier::Truncated(new_end)));
        tracing::info!(dir = %self.dir, log_end = new_end, segments_removed = removed.len(), "log truncated");
    }
}
