//! Reads: fetches and timestamp lookups. Only data below the high watermark
//! is ever returned, except to a follower (`read_replica`: up to the log end).

use bytes::Bytes;

use super::batch::{self, parse_header, BatchError, HeaderError};
use super::checkpoint::CHECKPOINT;
use super::segment::file_name;
use super::{FetchData, LogError, LogEvent, LogState, PartitionLog, Pending};
use crate::diskio::DiskIo;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply};

/// Bytes read per step of a timestamp search.
const TS_CHUNK: u64 = 64 * 1024;

/// A fetch in flight: reading `[pos, end)` of segment `seg_base`.
#[derive(Debug)]
pub(super) struct ReadReq {
    pub token: u64,
    fetch_offset: i64,
    max_bytes: usize,
    seg_base: i64,
    pos: u64,
    /// The base offset the batch at `pos` must have: a batch's base offset
    /// is outside its CRC, so a flipped bit there is caught only by this.
    expect: i64,
    asked: u64,
    /// A follower's fetch: bounded by the log end, not the high watermark.
    replica: bool,
    /// A `read_committed` fetch: batches at or above this last stable offset
    /// (as it was when the read began) are left out.
    stable_below: Option<i64>,
}

/// A timestamp search in flight.
#[derive(Debug)]
pub(super) struct TsReq {
    pub token: u64,
    target: i64,
    seg_base: i64,
    pos: u64,
    asked: u64,
}

enum Walk {
    /// Whole batches found: the byte range of the buffer to return.
    Found(usize, usize),
    /// Nothing wanted yet; continue at this file position (where a batch
    /// with this base offset must start), wanting at least this many bytes.
    More(u64, u64, i64),
    Corrupt(String),
}

impl PartitionLog {
    fn out_of_range(&self, requested: i64) -> LogError {
        LogError::OffsetOutOfRange {
            requested,
            log_start: self.log_start,
            high_watermark: self.hw,
        }
    }

    pub(super) fn segment_index(&self, base: i64) -> Option<usize> {
        self.segments.binary_search_by_key(&base, |s| s.base).ok()
    }

    /// The segment holding `offset`, by base offset.
    pub(super) fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1)
    }

    fn fetch_data(&self, records: Bytes) -> FetchData {
        FetchData {
            records,
            high_watermark: self.hw,
            log_start_offset: self.log_start,
            last_stable_offset: self.last_stable_offset(),
            aborted: None,
        }
    }

    /// A `read_committed` answer: whole batches below `stable_below` only,
    /// with the aborted transactions that overlap what is returned.
    fn committed_data(&self, records: Bytes, fetch_offset: i64, stable_below: i64) -> FetchData {
        let mut keep = 0;
        let mut upper = fetch_offset;
        while keep < records.len() {
            match parse_header(&records[keep..]) {
                Ok(h) if h.base_offset < stable_below => {
                    keep += h.length;
                    upper = h.next_offset();
                }
                _ => break,
            }
        }
        let aborted = self.aborted.overlapping(fetch_offset, upper);
        FetchData {
            aborted: Some(aborted),
            ..self.fetch_data(records.slice(..keep))
        }
    }

    /// The last stable offset: below it every transaction has ended, so a
    /// `read_committed` consumer may read it. The high watermark, or the
    /// first offset of the oldest open transaction if that is lower.
    pub fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.hw, |f| f.min(self.hw))
    }

    /// As [`Self::read`], for a `read_committed` consumer: nothing at or
    /// above the last stable offset, and the aborted transactions overlapping
    /// the batches returned (`FetchData::aborted`).
    pub fn read_committed(
        &mut self,
        fetch_offset: i64,
        max_bytes: usize,
        _now: crate::seam::Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        let lso = self.last_stable_offset();
        if fetch_offset >= lso && fetch_offset <= self.hw && self.usable().is_ok() {
            let token = self.next_token;
            self.next_token += 1;
            let data = self.committed_data(Bytes::new(), fetch_offset, lso);
            self.events.push_back(LogEvent::ReadDone {
                token,
                result: Ok(data),
            });
            return Ok(token);
        }
        self.start_read(fetch_offset, max_bytes, false, Some(lso), io)
    }

    /// Start reading whole batches from the one holding `fetch_offset`, at most
    /// `max_bytes` but at least one batch. `ReadDone { token }` follows.
    pub fn read(
        &mut self,
        fetch_offset: i64,
        max_bytes: usize,
        _now: crate::seam::Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        self.start_read(fetch_offset, max_bytes, false, None, io)
    }

    /// Data `read` may return from `seg`: committed bytes, or for a replica
    /// read every byte written or being written (requests complete in order,
    /// so a read issued after a write sees it).
    fn read_end(&self, seg: &super::segment::Segment, replica: bool) -> u64 {
        if replica {
            seg.size
        } else {
            self.committed_end(seg)
        }
    }

    pub(super) fn start_read(
        &mut self,
        fetch_offset: i64,
        max_bytes: usize,
        replica: bool,
        stable_below: Option<i64>,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        self.usable()?;
        let limit = if replica { self.leo } else { self.hw };
        if fetch_offset < self.log_start || fetch_offset > limit {
            return Err(self.out_of_range(fetch_offset));
        }
        let token = self.next_token;
        self.next_token += 1;
        if fetch_offset == limit {
            let data = self.fetch_data(Bytes::new());
            self.events.push_back(LogEvent::ReadDone {
                token,
                result: Ok(data),
            });
            return Ok(token);
        }
        let seg = &self.segments[self.segment_for(fetch_offset)];
        let (expect, pos) = seg.entry_for(fetch_offset);
        let req = ReadReq {
            expect,
            token,
            fetch_offset,
            max_bytes,
            seg_base: seg.base,
            pos,
            asked: 0,
            replica,
            stable_below,
        };
        let want = (max_bytes as u64).saturating_add(self.config.index_interval_bytes);
        self.issue_read(req, want, io);
        Ok(token)
    }

    /// Read at `req.pos` (at least `want` bytes if there are that many
    /// committed ones), moving on to the next segment at a segment's end and
    /// over empty segments.
    fn issue_read(&mut self, mut req: ReadReq, want: u64, io: &mut DiskIo) {
        loop {
            let Some(i) = self.segment_index(req.seg_base) else {
                let err = self.out_of_range(req.fetch_offset);
                self.events.push_back(LogEvent::ReadDone {
                    token: req.token,
                    result: Err(err),
                });
                return;
            };
            let end = self.read_end(&self.segments[i], req.replica);
            if req.pos < end {
                let len = want.max(1).min(end - req.pos);
                req.asked = len;
                let path = self.path(&file_name(req.seg_base, "log"));
                let op = DiskOp::Read {
                    path,
                    offset: req.pos,
                    len,
                };
                self.submit(io, op, Pending::Read(req));
                return;
            }
            // On to the next segment, even an empty one (data lost in a crash
            // below the recovery point leaves a gap, see `cut_at_first_gap`):
            // like Kafka's `Log.read`, walk on until a segment has committed
            // data at or after the fetch offset, or the segments run out.
            match self.segments.get(i + 1) {
                Some(next) => {
                    req.seg_base = next.base;
                    (req.expect, req.pos) = next.entry_for(req.fetch_offset);
                }
                None => {
                    let data = self.fetch_data(Bytes::new());
                    self.events.push_back(LogEvent::ReadDone {
                        token: req.token,
                        result: Ok(data),
                    });
                    return;
                }
            }
        }
    }

    /// A read failed: NotFound means the segment was deleted under us; other errors take the log offline.
    fn read_error(&mut self, e: DiskError, requested: i64) -> LogError {
        if e.kind == DiskErrorKind::NotFound {
            self.out_of_range(requested)
        } else {
            let reason = format!("read failed: {e}");
            self.fail(reason.clone());
            LogError::Offline(reason)
        }
    }

    /// The bytes of a segment read, or the error its caller answers with: a
    /// disk error (see [`Self::read_error`]), or a short read, which means
    /// damaged data and takes the log offline.
    fn read_reply(
        &mut self,
        result: Result<DiskReply, DiskError>,
        asked: u64,
        seg_base: i64,
        pos: u64,
        requested: i64,
        io: &mut DiskIo,
    ) -> Result<Bytes, LogError> {
        let buf = match result {
            Ok(DiskReply::Data(buf)) => buf,
            Ok(other) => {
                let reason = format!("unexpected reply to a read: {other:?}");
                self.fail(reason.clone());
                return Err(LogError::Offline(reason));
            }
            Err(e) => return Err(self.read_error(e, requested)),
        };
        if (buf.len() as u64) < asked {
            let why = format!("short read of segment {seg_base} at {pos}");
            self.fail_on_corruption(io);
            return Err(LogError::Batch(BatchError::Corrupt(why)));
        }
        Ok(buf)
    }

    pub(super) fn on_read(
        &mut self,
        req: ReadReq,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
    ) {
        let buf = match self.read_reply(
            result,
            req.asked,
            req.seg_base,
            req.pos,
            req.fetch_offset,
            io,
        ) {
            Ok(buf) => buf,
            Err(err) => {
                self.events.push_back(LogEvent::ReadDone {
                    token: req.token,
                    result: Err(err),
                });
                return;
            }
        };
        let end = self
            .segment_index(req.seg_base)
            .map_or(0, |i| self.read_end(&self.segments[i], req.replica));
        match walk_fetch(
            &buf,
            req.pos,
            end,
            req.fetch_offset,
            req.max_bytes,
            req.expect,
        ) {
            Walk::Found(from, to) => {
                let records = buf.slice(from..to);
                let data = match req.stable_below {
                    Some(lso) => self.committed_data(records, req.fetch_offset, lso),
                    None => self.fetch_data(records),
                };
                self.events.push_back(LogEvent::ReadDone {
                    token: req.token,
                    result: Ok(data),
                });
            }
            Walk::More(pos, needed, expect) => {
                let want = needed.max(req.max_bytes as u64);
                let next = ReadReq { pos, expect, ..req };
                self.issue_read(next, want, io);
            }
            Walk::Corrupt(why) => {
                self.events.push_back(LogEvent::ReadDone {
                    token: req.token,
                    result: Err(LogError::Batch(BatchError::Corrupt(why))),
                });
                self.fail_on_corruption(io);
            }
        }
    }

    /// An estimate of the committed bytes at or after `fetch_offset`.
    pub fn bytes_available(&self, fetch_offset: i64) -> u64 {
        if self.state != LogState::Online || fetch_offset >= self.hw || self.segments.is_empty() {
            return 0;
        }
        let first = self.segment_for(fetch_offset);
        let mut total = 0;
        for (i, seg) in self.segments.iter().enumerate().skip(first) {
            let end = self.committed_end(seg);
            let from = if i == first {
                seg.position_for(fetch_offset)
            } else {
                0
            };
            total += end.saturating_sub(from);
        }
        total
    }

    /// Start looking for the first record with timestamp >= `timestamp`.
    /// `TimestampFound { token }` follows.
    pub fn find_offset_for_timestamp(
        &mut self,
        timestamp: i64,
        _now: crate::seam::Now,
        io: &mut DiskIo,
    ) -> Result<u64, LogError> {
        self.usable()?;
        let token = self.next_token;
        self.next_token += 1;
        let req = TsReq {
            token,
            target: timestamp,
            seg_base: i64::MIN,
            pos: 0,
            asked: 0,
        };
        self.ts_next_segment(req, io);
        Ok(token)
    }

    /// Continue a timestamp search in the first segment after `req.seg_base`
    /// that may hold a match.
    fn ts_next_segment(&mut self, mut req: TsReq, io: &mut DiskIo) {
        let next = self.segments.iter().find(|s| {
            s.base > req.seg_base
                && s.max_ts.is_some_and(|(ts, _)| ts >= req.target)
                && self.committed_end(s) > 0
        });
        match next {
            Some(seg) => {
                req.pos = seg.position_for(seg.time_lookup(req.target));
                req.seg_base = seg.base;
                self.issue_ts_read(req, TS_CHUNK, io);
            }
            None => self.events.push_back(LogEvent::TimestampFound {
                token: req.token,
                result: Ok(None),
            }),
        }
    }

    fn issue_ts_read(&mut self, mut req: TsReq, want: u64, io: &mut DiskIo) {
        let end = self
            .segment_index(req.seg_base)
            .map_or(0, |i| self.committed_end(&self.segments[i]));
        if req.pos >= end {
            self.ts_next_segment(req, io);
            return;
        }
        req.asked = want.min(end - req.pos);
        let op = DiskOp::Read {
            path: self.path(&file_name(req.seg_base, "log")),
            offset: req.pos,
            len: req.asked,
        };
        self.submit(io, op, Pending::TsRead(req));
    }

    pub(super) fn on_ts_read(
        &mut self,
        req: TsReq,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
    ) {
        let buf =
            match self.read_reply(result, req.asked, req.seg_base, req.pos, self.log_start, io) {
                Ok(buf) => buf,
                Err(err) => {
                    self.events.push_back(LogEvent::TimestampFound {
                        token: req.token,
                        result: Err(err),
                    });
                    return;
                }
            };
        let end = self
            .segment_index(req.seg_base)
            .map_or(0, |i| self.committed_end(&self.segments[i]));
        let mut i = 0usize;
        loop {
            let at = req.pos + i as u64;
            if i >= buf.len() {
                let next = TsReq { pos: at, ..req };
                self.issue_ts_read(next, TS_CHUNK, io);
                return;
            }
            match parse_header(&buf[i..]) {
                Ok(h) => {
                    if !batch::crc_ok(&buf[i..], &h) {
                        self.events.push_back(LogEvent::TimestampFound {
                            token: req.token,
                            result: Err(LogError::Batch(BatchError::Corrupt(format!(
                                "CRC mismatch in the batch at position {at}"
                            )))),
                        });
                        self.fail_on_corruption(io);
                        return;
                    }
                    if h.max_timestamp >= req.target {
                        let found = match batch::find_timestamp(&buf[i..i + h.length], req.target) {
                            Ok(found) => found.filter(|&(offset, _)| offset < self.hw),
                            Err(e) => {
                                self.events.push_back(LogEvent::TimestampFound {
                                    token: req.token,
                                    result: Err(LogError::Batch(e)),
                                });
                                return;
                            }
                        };
                        if let Some(found) = found {
                            self.events.push_back(LogEvent::TimestampFound {
                                token: req.token,
                                result: Ok(Some(found)),
                            });
                            return;
                        }
                    }
                    i += h.length;
                }
                Err(HeaderError::Incomplete { needed }) if at + (needed as u64) <= end && i > 0 => {
                    let next = TsReq { pos: at, ..req };
                    self.issue_ts_read(next, (needed as u64).max(TS_CHUNK), io);
                    return;
                }
                Err(HeaderError::Incomplete { needed })
                    if at + (needed as u64) <= end && buf.len() < needed =>
                {
                    let next = TsReq { pos: at, ..req };
                    self.issue_ts_read(next, needed as u64, io);
                    return;
                }
                Err(e) => {
                    self.events.push_back(LogEvent::TimestampFound {
                        token: req.token,
                        result: Err(LogError::Batch(BatchError::Corrupt(format!(
                            "bad batch at position {at}: {e:?}"
                        )))),
                    });
                    self.fail_on_corruption(io);
                    return;
                }
            }
        }
    }
}

/// Pick whole batches out of `buf` (read at file position `pos`; committed
/// data ends at `end`): skip those wholly below `fetch_offset`, then take
/// batches while they fit in `max_bytes`, always at least one.
fn walk_fetch(
    buf: &Bytes,
    pos: u64,
    end: u64,
    fetch_offset: i64,
    max_bytes: usize,
    mut expect: i64,
) -> Walk {
    let mut i = 0usize;
    let mut start: Option<usize> = None;
    loop {
        let at = pos + i as u64;
        if i >= buf.len() || at >= end {
            return match start {
                Some(s) => Walk::Found(s, i),
                None => Walk::More(at, 0, expect),
            };
        }
        match parse_header(&buf[i..]) {
            Ok(h) => {
                // Offsets run on without a gap inside a segment: a batch
                // elsewhere is damaged (its base offset is not under its CRC).
                if h.base_offset != expect {
                    return match start {
                        Some(s) => Walk::Found(s, i),
                        None => Walk::Corrupt(format!(
                            "the batch at position {at} has base offset {}, {expect} was due",
                            h.base_offset
                        )),
                    };
                }
                expect = h.next_offset();
                if h.last_offset() < fetch_offset {
                    i += h.length;
                    continue;
                }
                // Never serve a batch that fails its CRC (silent corruption on disk).
                if !batch::crc_ok(&buf[i..], &h) {
                    return match start {
                        Some(s) => Walk::Found(s, i),
                        None => {
                            Walk::Corrupt(format!("CRC mismatch in the batch at position {at}"))
                        }
                    };
                }
                if let Some(s) = start {
                    if i - s + h.length > max_bytes {
                        return Walk::Found(s, i);
                    }
                } else {
                    start = Some(i);
                }
                i += h.length;
            }
            Err(HeaderError::Incomplete { needed }) => {
                return match start {
                    Some(s) => Walk::Found(s, i),
                    None if at + needed as u64 <= end && (buf.len() - i) < needed => {
                        Walk::More(at, needed as u64, expect)
                    }
                    None => Walk::Corrupt(format!(
                        "batch at position {at} runs past the committed end {end}"
                    )),
                };
            }
            Err(e) => {
                return match start {
                    Some(s) => Walk::Found(s, i),
                    None => Walk::Corrupt(format!("bad batch at position {at}: {e:?}")),
                }
            }
        }
    }
}

impl PartitionLog {
    /// Durable data failed its CRC or was cut short on a read. With no other
    /// replica to repair from, the log stops serving (KAFKA_STORAGE_ERROR)
    /// until a restart's recovery cuts it back to its last good batch.
    ///
    /// The checkpoint goes first: without it the next recovery scans every
    /// segment, the damaged one included, instead of trusting those below the
    /// old recovery point (else the damage would be found again and again).
    fn fail_on_corruption(&mut self, io: &mut DiskIo) {
        let checkpoint = self.path(CHECKPOINT);
        self.submit(io, DiskOp::Remove { path: checkpoint }, Pending::Remove);
        self.submit(
            io,
            DiskOp::SyncDir {
                path: self.dir.clone(),
            },
            Pending::Remove,
        );
        self.fail("corrupt data found on read; offline until restart".to_string());
    }
}
