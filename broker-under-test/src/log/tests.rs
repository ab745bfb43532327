//! Tests of the partition log on a MemDisk, driven by a tiny harness that
//! executes each disk request in order and feeds its completion back.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::batch::tests::{make_batch, make_batch_ts};
use super::batch::BatchError;
use super::*;
use crate::memdisk::MemDisk;
use crate::seam::{DiskExecutor, Output};

const DIR: &str = "t-0";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        roll_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        index_interval_bytes: 4096,
        max_batch_bytes: 1 << 20,
        durability: Durability::Sync,
        flush_interval_ms: 1000,
        producer_id_expiration_ms: 86_400_000,
        producer_id_expiration_check_interval_ms: 600_000,
    }
}

struct Harness {
    disk: MemDisk,
    next: DiskReqId,
    queue: VecDeque<(DiskReqId, DiskOp)>,
    now: Now,
    events: Vec<LogEvent>,
    executed: Vec<DiskOp>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            disk: MemDisk::new(),
            next: 1,
            queue: VecDeque::new(),
            now: Now::from_millis(0, 1_000),
            events: Vec::new(),
            executed: Vec::new(),
        }
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut DiskIo, Now) -> R) -> R {
        let mut out = Vec::new();
        let r = {
            let mut io = DiskIo::new(&mut self.next, &mut out);
            f(&mut io, self.now)
        };
        for o in out {
            if let Output::Disk { req, op } = o {
                self.queue.push_back((req, op));
            }
        }
        r
    }

    fn drain(&mut self, log: &mut PartitionLog) {
        while let Some(e) = log.poll_event() {
            self.events.push(e);
        }
    }

    /// Execute one queued disk request; false if none.
    fn step(&mut self, log: &mut PartitionLog) -> bool {
        let Some((req, op)) = self.queue.pop_front() else {
            return false;
        };
        let result = self.disk.execute(&op);
        self.executed.push(op);
        self.call(|io, now| log.on_disk_done(req, result, now, io));
        self.drain(log);
        true
    }

    fn run(&mut self, log: &mut PartitionLog) {
        while self.step(log) {}
    }

    fn create(&mut self, config: LogConfig) -> PartitionLog {
        let mut log =
            self.call(|io, now| PartitionLog::create(DIR.into(), [7; 16], config, now, io));
        self.run(&mut log);
        assert_eq!(self.events.pop(), Some(LogEvent::Opened));
        assert_eq!(log.state(), &LogState::Online);
        log
    }

    fn open(&mut self, config: LogConfig) -> PartitionLog {
        self.events.clear();
        let mut log = self.call(|io, now| PartitionLog::open(DIR.into(), config, now, io));
        self.run(&mut log);
        assert_eq!(self.events, vec![LogEvent::Opened], "{:?}", log.state());
        self.events.clear();
        assert_eq!(log.state(), &LogState::Online);
        assert!(log.is_idle());
        log
    }

    fn append(&mut self, log: &mut PartitionLog, records: Bytes) -> Result<AppendInfo, LogError> {
        self.call(|io, now| log.append(records, 3, now, io))
    }

    fn read(
        &mut self,
        log: &mut PartitionLog,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, LogError> {
        self.events.clear();
        let token = self.call(|io, now| log.read(offset, max_bytes, now, io))?;
        self.drain(log);
        self.run(log);
        let pos = self
            .events
            .iter()
            .position(|e| matches!(e, LogEvent::ReadDone { token: t, .. } if *t == token))
            .expect("ReadDone");
        match self.events.remove(pos) {
            LogEvent::ReadDone { result, .. } => result,
            _ => unreachable!(),
        }
    }

    fn find_ts(&mut self, log: &mut PartitionLog, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.events.clear();
        let token = self.call(|io, now| log.find_offset_for_timestamp(ts, now, io))?;
        self.drain(log);
        self.run(log);
        let pos = self
            .events
            .iter()
            .position(|e| matches!(e, LogEvent::TimestampFound { token: t, .. } if *t == token))
            .expect("TimestampFound");
        match self.events.remove(pos) {
            LogEvent::TimestampFound { result, .. } => result,
            _ => unreachable!(),
        }
    }

    /// Run the queue on a disk that answers the syncs of the files `lies`
    /// picks without making anything durable (a lying disk, or a volatile
    /// write cache lost in the crash that follows).
    fn run_lying(&mut self, log: &mut PartitionLog, lies: impl Fn(&str) -> bool) {
        while let Some((req, op)) = self.queue.pop_front() {
            let result = match &op {
                DiskOp::SyncFile { path } if lies(path) => Ok(DiskReply::Done),
                _ => self.disk.execute(&op),
            };
            self.executed.push(op);
            self.call(|io, now| log.on_disk_done(req, result, now, io));
            self.drain(log);
        }
    }

    /// Fetch from `from` up to the high watermark, each fetch at the offset
    /// after the last one returned. A fetch below the high watermark must
    /// never come back empty (a consumer would be stuck). The offsets
    /// returned at or after `from`, in order.
    fn read_up_to_hw(&mut self, log: &mut PartitionLog, from: i64) -> Vec<i64> {
        let hw = log.high_watermark();
        let mut next = from;
        let mut seen = Vec::new();
        while next < hw {
            let data = self.read(log, next, 1 << 20).unwrap();
            assert!(
                !data.records.is_empty(),
                "empty fetch at {next} below the high watermark {hw}"
            );
            batch::validate_record_set(&data.records, 1 << 20).expect("intact batches");
            let got = offsets(&data.records);
            for w in got.windows(2) {
                assert_eq!(w[1], w[0] + 1, "offsets contiguous within a fetch");
            }
            let last = *got.last().unwrap();
            assert!(last >= next, "fetch at {next} ended at {last}");
            seen.extend(got.into_iter().filter(|&o| o >= next));
            next = last + 1;
        }
        assert_eq!(next, hw, "the last batch ends at the high watermark");
        seen
    }

    fn maintain(&mut self, log: &mut PartitionLog) {
        self.call(|io, now| log.maintain(now, io));
        self.run(log);
    }

    fn files(&self) -> Vec<String> {
        self.disk.files()
    }

    fn count_queued(&self, pred: impl Fn(&DiskOp) -> bool) -> usize {
        self.queue.iter().filter(|(_, op)| pred(op)).count()
    }
}

/// (offset, value length) of every record in `records`, checking batches decode.
fn offsets(records: &Bytes) -> Vec<i64> {
    let mut buf = records.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("batches decode")
        .iter()
        .flat_map(|set| set.records.iter().map(|r| r.offset))
        .collect()
}

fn batch(count: usize) -> Bytes {
    make_batch(count, 50, Compression::None)
}

fn is_sync(op: &DiskOp) -> bool {
    matches!(op, DiskOp::SyncFile { path } if path.ends_with(".log"))
}

fn seg_path(base: i64, ext: &str) -> String {
    format!("{DIR}/{}", segment::file_name(base, ext))
}

#[test]
fn create_writes_metadata_and_first_segment() {
    let mut h = Harness::new();
    let log = h.create(config());
    assert_eq!(
        h.files(),
        vec![
            format!("{DIR}/00000000000000000000.log"),
            format!("{DIR}/partition.metadata")
        ]
    );
    h.disk.crash();
    assert_eq!(h.files().len(), 2, "creation is durable");
    assert_eq!(log.topic_id(), [7; 16]);
    let reopened = h.open(config());
    assert_eq!(reopened.topic_id(), [7; 16]);
    assert_eq!(reopened.log_end_offset(), 0);
}

#[test]
fn append_and_read_back() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    let a = h.append(&mut log, batch(5)).unwrap();
    assert_eq!(
        (
            a.base_offset,
            a.last_offset,
            a.log_append_time,
            a.log_start_offset
        ),
        (0, 4, -1, 0)
    );
    let b = h
        .append(&mut log, make_batch(3, 10, Compression::Gzip))
        .unwrap();
    assert_eq!((b.base_offset, b.last_offset), (5, 7));
    assert_eq!(log.log_end_offset(), 8);
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 8);
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..8).collect::<Vec<_>>());
    assert_eq!((data.high_watermark, data.log_start_offset), (8, 0));
    assert!(
        batch::validate_record_set(&data.records, 1 << 20).is_ok(),
        "batches intact, CRCs good"
    );
    let headers = batch::validate_record_set(&data.records, 1 << 20).unwrap();
    assert_eq!(headers[1].partition_leader_epoch, 3);
    // From the middle of the second batch: the whole second batch.
    let data = h.read(&mut log, 6, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), vec![5, 6, 7]);
    assert_eq!(h.read(&mut log, 8, 1 << 20).unwrap().records.len(), 0);
    assert!(matches!(
        h.read(&mut log, 9, 100),
        Err(LogError::OffsetOutOfRange { requested: 9, .. })
    ));
    assert!(matches!(
        h.append(&mut log, Bytes::from_static(b"junk")),
        Err(LogError::Batch(BatchError::Corrupt(_)))
    ));
    assert_eq!(log.log_end_offset(), 8);
}

#[test]
fn group_commit_one_sync_per_group() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    for _ in 0..3 {
        h.append(&mut log, batch(5)).unwrap();
    }
    assert_eq!(h.count_queued(is_sync), 1, "one sync for the first group");
    assert_eq!(log.high_watermark(), 0);
    // write 1, sync 1
    h.step(&mut log);
    assert_eq!(log.high_watermark(), 0, "written is not durable");
    h.step(&mut log);
    assert_eq!(log.high_watermark(), 5);
    // writes 2 and 3 are covered by one more sync
    assert_eq!(h.count_queued(is_sync), 1);
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 15);
    let syncs = h.executed.iter().filter(|op| is_sync(op)).count();
    assert_eq!(syncs, 2);
    assert!(log.is_idle());
    // Data below the high watermark only.
    h.append(&mut log, batch(2)).unwrap();
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..15).collect::<Vec<_>>());
}

#[test]
fn page_cache_mode_acknowledges_after_write() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        durability: Durability::PageCache,
        ..config()
    });
    h.append(&mut log, batch(4)).unwrap();
    assert_eq!(h.count_queued(is_sync), 0);
    h.step(&mut log);
    assert_eq!(log.high_watermark(), 4);
    // The periodic flush syncs and checkpoints.
    h.now = Now::from_millis(2_000, 3_000);
    h.maintain(&mut log);
    assert!(h.executed.iter().any(is_sync));
    let cp = Checkpoint::parse(&h.disk.read_all(&format!("{DIR}/checkpoint")).unwrap()).unwrap();
    assert_eq!(cp.recovery_point, 4);
}

#[test]
fn reads_only_below_high_watermark() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    h.append(&mut log, batch(5)).unwrap();
    // Execute the write but not its sync.
    h.step(&mut log);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(log.bytes_available(0), batch(5).len() as u64);
    let token = h.call(|io, now| log.read(0, 1 << 20, now, io)).unwrap();
    // The read is queued behind the sync; drive just the read.
    let read_pos = h
        .queue
        .iter()
        .position(|(_, op)| matches!(op, DiskOp::Read { .. }))
        .unwrap();
    let (req, op) = h.queue.remove(read_pos).unwrap();
    let result = h.disk.execute(&op);
    h.call(|io, now| log.on_disk_done(req, result, now, io));
    h.drain(&mut log);
    match h.events.pop() {
        Some(LogEvent::ReadDone {
            token: t,
            result: Ok(data),
        }) => {
            assert_eq!(t, token);
            assert_eq!(offsets(&data.records), (0..5).collect::<Vec<_>>());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_rules_kip74_and_no_partial_tail() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        index_interval_bytes: 1,
        ..config()
    });
    let b = batch(4);
    for _ in 0..10 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 40);
    // Smaller than one batch: still the first batch, whole.
    let data = h.read(&mut log, 0, 10).unwrap();
    assert_eq!(data.records.len(), b.len());
    // Room for one and a half: one.
    let data = h.read(&mut log, 0, b.len() * 3 / 2).unwrap();
    assert_eq!(offsets(&data.records), vec![0, 1, 2, 3]);
    // Two exactly.
    let data = h.read(&mut log, 13, b.len() * 2).unwrap();
    assert_eq!(offsets(&data.records), (12..20).collect::<Vec<_>>());
    // The index finds later positions.
    let data = h.read(&mut log, 39, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), vec![36, 37, 38, 39]);
    assert_eq!(log.bytes_available(36), b.len() as u64);
    assert_eq!(log.bytes_available(40), 0);
    assert!(matches!(
        h.read(&mut log, -1, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        h.read(&mut log, 41, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn roll_by_size_writes_indexes_and_reads_across() {
    let mut h = Harness::new();
    let b = batch(5);
    let mut log = h.create(LogConfig {
        segment_bytes: (b.len() * 3) as u64,
        index_interval_bytes: 1,
        ..config()
    });
    for _ in 0..7 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 35);
    let files = h.files();
    for base in [0, 15, 30] {
        assert!(files.contains(&seg_path(base, "log")), "{files:?}");
    }
    for base in [0, 15] {
        assert!(files.contains(&seg_path(base, "index")));
        assert!(files.contains(&seg_path(base, "timeindex")));
        assert_eq!(
            h.disk.read_all(&seg_path(base, "index")).unwrap().len(),
            2 * 8
        );
    }
    assert!(!files.contains(&seg_path(30, "index")));
    // A read stops at the segment end; the next picks up from there.
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..15).collect::<Vec<_>>());
    let data = h.read(&mut log, 15, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (15..30).collect::<Vec<_>>());
    assert_eq!(log.bytes_available(0), (b.len() * 7) as u64);
    // Everything survives a crash, indexes are trusted below the recovery point.
    h.maintain(&mut log);
    h.disk.crash();
    let mut log = h.open(config());
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (0, 35, 35)
    );
    let data = h.read(&mut log, 20, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (20..30).collect::<Vec<_>>());
}

#[test]
fn roll_by_time() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        roll_ms: 1_000,
        ..config()
    });
    h.append(&mut log, batch(2)).unwrap();
    h.now = Now::from_millis(500, 1_500);
    h.append(&mut log, batch(2)).unwrap();
    h.run(&mut log);
    assert!(!h.files().contains(&seg_path(4, "log")));
    h.now = Now::from_millis(1_000, 2_000);
    h.append(&mut log, batch(2)).unwrap();
    h.run(&mut log);
    assert!(h.files().contains(&seg_path(4, "log")));
    assert!(h.files().contains(&seg_path(0, "index")));
    assert_eq!(log.high_watermark(), 6);
}

fn old_batch(count: usize, ts: i64) -> Bytes {
    make_batch_ts(count, 50, Compression::None, &vec![ts; count])
}

#[test]
fn retention_by_time_persists_log_start() {
    let mut h = Harness::new();
    let b = old_batch(5, 1_000);
    let mut log = h.create(LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        retention_ms: 10_000,
        ..config()
    });
    for _ in 0..4 {
        h.append(&mut log, old_batch(5, 1_000)).unwrap();
    }
    h.append(&mut log, old_batch(5, 50_000)).unwrap();
    h.run(&mut log);
    // segments: [0,10) [10,20) [20,25)
    h.now = Now::from_millis(1_000, 20_000);
    h.maintain(&mut log);
    assert_eq!(log.log_start_offset(), 20);
    assert!(!h.files().contains(&seg_path(0, "log")));
    assert!(!h.files().contains(&seg_path(10, "log")));
    assert!(!h.files().contains(&seg_path(0, "index")));
    assert!(matches!(
        h.read(&mut log, 5, 100),
        Err(LogError::OffsetOutOfRange { log_start: 20, .. })
    ));
    assert_eq!(
        offsets(&h.read(&mut log, 20, 1 << 20).unwrap().records),
        (20..25).collect::<Vec<_>>()
    );
    let cp = Checkpoint::parse(&h.disk.read_all(&format!("{DIR}/checkpoint")).unwrap()).unwrap();
    assert_eq!(cp.log_start_offset, 20);
    h.disk.crash();
    let log = h.open(config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 25));
}

#[test]
fn retention_by_size() {
    let mut h = Harness::new();
    let b = batch(5);
    let mut log = h.create(LogConfig {
        segment_bytes: b.len() as u64,
        retention_bytes: (b.len() * 2) as i64,
        ..config()
    });
    for _ in 0..5 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log);
    assert_eq!(log.log_start_offset(), 15);
    let logs: Vec<_> = h
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".log"))
        .collect();
    assert_eq!(logs, vec![seg_path(15, "log"), seg_path(20, "log")]);
    // An active segment is never deleted.
    let mut log2 = {
        let mut h2 = Harness::new();
        let mut l = h2.create(LogConfig {
            retention_bytes: 0,
            ..config()
        });
        h2.append(&mut l, b.clone()).unwrap();
        h2.run(&mut l);
        h2.maintain(&mut l);
        l
    };
    assert_eq!(log2.log_start_offset(), 0);
    let _ = &mut log2;
}

#[test]
fn crash_keeps_acknowledged_loses_unsynced() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    let acked = log.high_watermark();
    assert_eq!(acked, 10);
    h.append(&mut log, batch(5)).unwrap();
    h.step(&mut log); // the write, not its sync
    assert_eq!(log.high_watermark(), 10);
    h.disk.crash();
    let mut log = h.open(config());
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.high_watermark(), 10);
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..10).collect::<Vec<_>>());
    // Appends continue at the recovered end.
    assert_eq!(h.append(&mut log, batch(1)).unwrap().base_offset, 10);
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 11);
}

#[test]
fn crash_mid_roll_keeps_acknowledged() {
    let mut h = Harness::new();
    let b = batch(5);
    let mut log = h.create(LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        ..config()
    });
    let mut acked = 0;
    for i in 0..20 {
        h.append(&mut log, b.clone()).unwrap();
        for _ in 0..(i % 4) {
            h.step(&mut log);
        }
        acked = acked.max(log.high_watermark());
    }
    h.disk.crash();
    let mut log = h.open(config());
    assert!(
        log.log_end_offset() >= acked,
        "{} < {acked}",
        log.log_end_offset()
    );
    let data = h.read(&mut log, 0, 1 << 30).unwrap();
    assert_eq!(offsets(&data.records)[0], 0);
}

#[test]
fn torn_tail_is_truncated() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    let b = batch(5);
    for _ in 0..3 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    let path = seg_path(0, "log");
    let cut = (b.len() * 2 + 30) as u64;
    h.disk
        .execute(&DiskOp::Truncate {
            path: path.clone(),
            len: cut,
        })
        .unwrap();
    drop(log);
    let mut log = h.open(config());
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(h.disk.read_all(&path).unwrap().len(), b.len() * 2);
    h.disk.crash();
    assert_eq!(
        h.disk.read_all(&path).unwrap().len(),
        b.len() * 2,
        "the truncation was synced"
    );
    assert_eq!(h.append(&mut log, batch(1)).unwrap().base_offset, 10);
}

#[test]
fn corrupt_last_batch_is_truncated() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    let b = batch(5);
    for _ in 0..3 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    let path = seg_path(0, "log");
    let mut content = BytesMut::from(&h.disk.read_all(&path).unwrap()[..]);
    let at = content.len() - 7;
    content[at] ^= 0x55;
    h.disk
        .execute(&DiskOp::Write {
            path: path.clone(),
            offset: 0,
            data: content.freeze(),
        })
        .unwrap();
    let mut log = h.open(config());
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(h.disk.read_all(&path).unwrap().len(), b.len() * 2);
    assert_eq!(
        offsets(&h.read(&mut log, 0, 1 << 20).unwrap().records).len(),
        10
    );
}

#[test]
fn corrupt_middle_segment_drops_later_segments() {
    let mut h = Harness::new();
    let b = batch(5);
    let mut log = h.create(LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        ..config()
    });
    for _ in 0..6 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    // No checkpoint yet: everything is scanned. Garbage in segment 10.
    let path = seg_path(10, "log");
    h.disk
        .execute(&DiskOp::Write {
            path,
            offset: b.len() as u64 + 3,
            data: Bytes::from_static(b"garbage!"),
        })
        .unwrap();
    let log = h.open(config());
    assert_eq!(log.log_end_offset(), 15);
    assert!(!h.files().contains(&seg_path(20, "log")));
    assert!(!h.files().contains(&seg_path(10, "index")));
}

#[test]
fn garbage_index_and_checkpoint_are_rebuilt() {
    let mut h = Harness::new();
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 4) as u64,
        index_interval_bytes: 1,
        ..config()
    };
    let mut log = h.create(cfg.clone());
    for _ in 0..10 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log);
    let index = seg_path(0, "index");
    let good = h.disk.read_all(&index).unwrap();
    for garbage in [
        &b"\xff\xff\xff\xff\x00\x00\x00\x01abc"[..],
        &b"\x00\x00\x00\x09\xff\xff\xff\xf0"[..],
    ] {
        h.disk
            .execute(&DiskOp::Create {
                path: index.clone(),
            })
            .unwrap();
        h.disk
            .execute(&DiskOp::Write {
                path: index.clone(),
                offset: 0,
                data: Bytes::copy_from_slice(garbage),
            })
            .unwrap();
        let mut log = h.open(cfg.clone());
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(h.disk.read_all(&index).unwrap(), good, "rebuilt");
        assert_eq!(
            offsets(&h.read(&mut log, 12, 1 << 20).unwrap().records)[0],
            10
        );
    }
    // A garbage checkpoint and stray tmp files.
    for (name, junk) in [
        ("checkpoint", &b"\x00\xffnot a checkpoint"[..]),
        ("checkpoint.tmp", b"x"),
    ] {
        let path = format!("{DIR}/{name}");
        h.disk
            .execute(&DiskOp::Create { path: path.clone() })
            .unwrap();
        h.disk
            .execute(&DiskOp::Write {
                path,
                offset: 0,
                data: Bytes::copy_from_slice(junk),
            })
            .unwrap();
    }
    h.disk
        .execute(&DiskOp::Create {
            path: format!("{DIR}/whatever.txt"),
        })
        .unwrap();
    let log = h.open(cfg);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 50));
    assert!(!h.files().contains(&format!("{DIR}/checkpoint.tmp")));
    let cp = Checkpoint::parse(&h.disk.read_all(&format!("{DIR}/checkpoint")).unwrap()).unwrap();
    assert_eq!(cp.recovery_point, 50);
}

#[test]
fn failed_sync_takes_log_offline() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    h.disk.fail_syncs(true);
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    assert!(matches!(log.state(), LogState::Failed(_)));
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, LogEvent::Failed { .. })));
    assert_eq!(log.high_watermark(), 5, "never trust a failed sync");
    assert!(matches!(
        h.append(&mut log, batch(1)),
        Err(LogError::Offline(_))
    ));
    assert!(matches!(
        h.read(&mut log, 0, 100),
        Err(LogError::Offline(_))
    ));
    // Syncs work again; still offline until reopened.
    h.disk.fail_syncs(false);
    h.maintain(&mut log);
    assert!(matches!(
        h.append(&mut log, batch(1)),
        Err(LogError::Offline(_))
    ));
    let log = h.open(config());
    assert!(log.log_end_offset() >= 5);
}

#[test]
fn no_space_takes_log_offline_and_answers_reads() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    h.disk.set_capacity(Some(
        h.disk.read_all(&seg_path(0, "log")).unwrap().len() as u64 + 200,
    ));
    h.append(&mut log, batch(5)).unwrap();
    // A read in flight when the log fails is answered.
    let token = h.call(|io, now| log.read(0, 100, now, io)).unwrap();
    h.run(&mut log);
    assert!(matches!(log.state(), LogState::Failed(why) if why.contains("NoSpace")));
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, LogEvent::ReadDone { token: t, result: Err(LogError::Offline(_)) } if *t == token)));
    assert_eq!(log.high_watermark(), 5);
}

#[test]
fn timestamps() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        index_interval_bytes: 1,
        ..config()
    });
    h.append(
        &mut log,
        make_batch_ts(3, 10, Compression::None, &[100, 200, 300]),
    )
    .unwrap();
    h.append(
        &mut log,
        make_batch_ts(2, 10, Compression::Snappy, &[400, 500]),
    )
    .unwrap();
    h.append(
        &mut log,
        make_batch_ts(2, 10, Compression::None, &[450, 460]),
    )
    .unwrap();
    h.run(&mut log);
    assert_eq!(h.find_ts(&mut log, 250).unwrap(), Some((2, 300)));
    assert_eq!(h.find_ts(&mut log, 50).unwrap(), Some((0, 100)));
    assert_eq!(h.find_ts(&mut log, 450).unwrap(), Some((4, 500)));
    assert_eq!(h.find_ts(&mut log, 501).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((4, 500)));
}

#[test]
fn delete_removes_directory() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    h.call(|io, _| log.delete(io));
    assert_eq!(log.state(), &LogState::Deleting);
    h.run(&mut log);
    assert_eq!(log.state(), &LogState::Deleted);
    assert_eq!(h.events.pop(), Some(LogEvent::Deleted));
    assert!(h.files().is_empty());
    h.disk.crash();
    assert!(h.files().is_empty(), "deletion is durable");
    assert!(matches!(
        h.append(&mut log, batch(1)),
        Err(LogError::Offline(_))
    ));
}

#[test]
fn flush_checkpoints_after_sync() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        durability: Durability::PageCache,
        ..config()
    });
    h.append(&mut log, batch(5)).unwrap();
    h.call(|io, _| log.flush(io));
    h.run(&mut log);
    assert!(log.is_idle());
    let cp = Checkpoint::parse(&h.disk.read_all(&format!("{DIR}/checkpoint")).unwrap()).unwrap();
    assert_eq!(cp.recovery_point, 5);
    h.disk.crash();
    let log = h.open(config());
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn not_ready_while_opening() {
    let mut h = Harness::new();
    let mut log = h.call(|io, now| PartitionLog::create(DIR.into(), [1; 16], config(), now, io));
    assert!(matches!(
        h.append(&mut log, batch(1)),
        Err(LogError::NotReady)
    ));
    h.run(&mut log);
    assert!(h.append(&mut log, batch(1)).is_ok());
}

/// Crash after every single disk operation of a run with appends, rolls,
/// checkpoints and retention: recovery must keep everything acknowledged,
/// and what it keeps must be whole, contiguous and intact.
#[test]
fn crash_at_every_step_keeps_acknowledged() {
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 3) as u64,
        index_interval_bytes: 1,
        retention_bytes: (b.len() * 4) as i64,
        ..config()
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    // (disk after k operations, acknowledged high watermark at that point)
    let mut snapshots = vec![(h.disk.clone(), 0)];
    let mut acked = 0;
    for i in 0..16 {
        h.append(&mut log, make_batch(1 + i % 4, 40, Compression::None))
            .unwrap();
        if i % 5 == 4 {
            h.call(|io, now| log.maintain(now, io));
        }
        for _ in 0..(i % 3) {
            if h.step(&mut log) {
                acked = acked.max(log.high_watermark());
                snapshots.push((h.disk.clone(), acked));
            }
        }
    }
    while h.step(&mut log) {
        acked = acked.max(log.high_watermark());
        snapshots.push((h.disk.clone(), acked));
    }
    assert!(acked > 20);
    h.call(|io, now| log.maintain(now, io));
    while h.step(&mut log) {
        snapshots.push((h.disk.clone(), acked));
    }
    assert!(log.log_start_offset() > 0, "retention ran");
    for (k, (disk, acked)) in snapshots.into_iter().enumerate() {
        let mut r = Harness::new();
        r.disk = disk;
        r.disk.crash();
        let mut log = r.open(cfg.clone());
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        assert!(
            end >= acked,
            "step {k}: recovered end {end} < acknowledged {acked}"
        );
        assert_eq!(log.high_watermark(), end);
        let mut next = start;
        while next < end {
            let data = r.read(&mut log, next, 1 << 20).unwrap();
            batch::validate_record_set(&data.records, 1 << 20).expect("intact batches");
            let got = offsets(&data.records);
            assert!(!got.is_empty(), "step {k}: empty read at {next} < {end}");
            assert!(
                got[0] <= next,
                "step {k}: read at {next} starts at {}",
                got[0]
            );
            for w in got.windows(2) {
                assert_eq!(w[1], w[0] + 1, "step {k}: offsets contiguous");
            }
            next = *got.last().unwrap() + 1;
        }
        assert_eq!(next, end);
        // And the recovered log takes appends again.
        assert_eq!(r.append(&mut log, batch(1)).unwrap().base_offset, end);
        r.run(&mut log);
        assert_eq!(log.high_watermark(), end + 1);
    }
}

/// Recovery itself may be interrupted by a crash at any step; the next
/// recovery still ends with the same intact log.
#[test]
fn crash_during_recovery() {
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        index_interval_bytes: 1,
        ..config()
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    for _ in 0..7 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log);
    // A torn tail to repair, a stray tmp file, and an unsynced append.
    let path = seg_path(30, "log");
    h.disk
        .execute(&DiskOp::Truncate {
            path: path.clone(),
            len: 20,
        })
        .unwrap();
    h.disk.execute(&DiskOp::SyncFile { path }).unwrap();
    h.disk
        .execute(&DiskOp::Create {
            path: format!("{DIR}/checkpoint.tmp"),
        })
        .unwrap();
    h.disk
        .execute(&DiskOp::SyncDir { path: DIR.into() })
        .unwrap();
    let start = h.disk.clone();
    let mut steps = 0;
    loop {
        let mut r = Harness::new();
        r.disk = start.clone();
        let mut log = r.call(|io, now| PartitionLog::open(DIR.into(), cfg.clone(), now, io));
        let mut done = true;
        for _ in 0..steps {
            if !r.step(&mut log) {
                break;
            }
        }
        if r.step(&mut log) {
            done = false;
        }
        r.disk.crash();
        let mut log = r.open(cfg.clone());
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (0, 30),
            "crash after {steps} steps"
        );
        let data = r.read(&mut log, 25, 1 << 20).unwrap();
        assert_eq!(offsets(&data.records), (25..30).collect::<Vec<_>>());
        if done {
            break;
        }
        steps += 1;
    }
    assert!(steps > 5);
}

/// In page-cache mode a power loss may lose acknowledged data (that is the
/// mode's contract) but what survives is whole and contiguous.
#[test]
fn page_cache_crash_keeps_a_clean_prefix() {
    let cfg = LogConfig {
        durability: Durability::PageCache,
        ..config()
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    for _ in 0..3 {
        h.append(&mut log, batch(5)).unwrap();
    }
    h.call(|io, _| log.flush(io));
    h.run(&mut log);
    for _ in 0..3 {
        h.append(&mut log, batch(5)).unwrap();
    }
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 30);
    h.disk.crash();
    let mut log = h.open(cfg);
    assert_eq!(log.log_end_offset(), 15);
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..15).collect::<Vec<_>>());
}

/// Garbage in every file of a log directory never panics recovery.
#[test]
fn garbage_files_never_panic_recovery() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        index_interval_bytes: 1,
        ..config()
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    for _ in 0..6 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log);
    let clean = h.disk.clone();
    for _ in 0..200 {
        let mut disk = clean.clone();
        let files = disk.files();
        let victim = files[(rand() % files.len() as u64) as usize].clone();
        let len = disk.read_all(&victim).unwrap().len() as u64;
        let offset = rand() % (len + 1);
        let garbage: Vec<u8> = (0..1 + rand() % 40).map(|_| rand() as u8).collect();
        disk.execute(&DiskOp::Write {
            path: victim.clone(),
            offset,
            data: Bytes::from(garbage),
        })
        .unwrap();
        let mut r = Harness::new();
        r.disk = disk;
        let mut log = r.call(|io, now| PartitionLog::open(DIR.into(), cfg.clone(), now, io));
        r.run(&mut log);
        assert!(matches!(log.state(), LogState::Online), "{:?}", log.state());
        // Reads serve whole intact batches or report corruption; never garbage.
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        while next < end {
            match r.read(&mut log, next, 1 << 20) {
                Ok(data) => {
                    batch::validate_record_set(&data.records, 1 << 20).expect("intact batches");
                    next = *offsets(&data.records).last().unwrap() + 1;
                }
                Err(LogError::Batch(BatchError::Corrupt(_))) => {
                    // Damage found on a read takes the log offline until a
                    // restart's recovery cuts it back to its last good batch.
                    assert!(matches!(log.state(), LogState::Failed(_)));
                    assert!(matches!(
                        r.read(&mut log, next, 1 << 20),
                        Err(LogError::Offline(_))
                    ));
                    break;
                }
                Err(e) => panic!("{victim} at {offset} of {len}: {e}"),
            }
        }
    }
}

/// Found by the simulator (silent-corruption seed 0xc): damage below the
/// recovery point was trusted by every recovery, so the log went offline
/// again at each restart. Damage found on a read now drops the checkpoint,
/// and the next recovery scans, finds and cuts it.
#[test]
fn corruption_below_the_recovery_point_is_repaired_after_restart() {
    let mut h = Harness::new();
    let b = batch(5);
    let small = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        ..config()
    };
    let mut log = h.create(small.clone());
    for _ in 0..6 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log); // a checkpoint: segments below it will be trusted
    h.run(&mut log);
    assert!(h.files().contains(&format!("{DIR}/checkpoint")));
    // Silent damage inside segment 10, below the recovery point.
    h.disk
        .execute(&DiskOp::Write {
            path: seg_path(10, "log"),
            offset: b.len() as u64 + 3,
            data: Bytes::from_static(b"garbage!"),
        })
        .unwrap();
    let mut log = h.open(small.clone());
    assert_eq!(
        log.log_end_offset(),
        30,
        "the damage is below the recovery point: trusted"
    );
    assert!(matches!(
        h.read(&mut log, 15, 1 << 20),
        Err(LogError::Batch(BatchError::Corrupt(_)))
    ));
    assert!(matches!(log.state(), LogState::Failed(_)));
    h.run(&mut log);
    assert!(
        !h.files().contains(&format!("{DIR}/checkpoint")),
        "the checkpoint is dropped"
    );
    // The restart's recovery scans everything and cuts the log at the damage.
    let mut log = h.open(small);
    assert_eq!(log.log_end_offset(), 15);
    let data = h.read(&mut log, 10, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records).first(), Some(&10));
}

/// A crash that loses the unsynced data of several segments in a row (syncs
/// failed, the log went offline, then the power went) used to leave those
/// segments empty and the log end at the last one's base: fetches into the gap
/// answered nothing while the high watermark was ahead, for ever. Recovery
/// now ends the log where the surviving data ends, like a lost tail.
#[test]
fn crash_losing_several_segments_keeps_every_offset_below_hw_readable() {
    let mut h = Harness::new();
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        index_interval_bytes: 1,
        ..config()
    };
    let mut log = h.create(cfg.clone());
    for _ in 0..4 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    h.maintain(&mut log);
    assert_eq!(log.high_watermark(), 20);
    // Segments 20, 30, 40 and 50 are written, but every sync fails.
    for _ in 0..8 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.disk.fail_syncs(true);
    h.run(&mut log);
    assert!(matches!(log.state(), LogState::Failed(_)));
    assert_eq!(log.high_watermark(), 20, "nothing more acknowledged");
    h.disk.crash();
    h.disk.fail_syncs(false);
    for base in [20, 30, 40, 50] {
        assert_eq!(
            h.disk.read_all(&seg_path(base, "log")).map(|d| d.len()),
            Some(0),
            "segment {base} exists and lost its data"
        );
    }

    let mut log = h.open(cfg.clone());
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (0, 20, 20)
    );
    let files = h.files();
    assert!(files.contains(&seg_path(20, "log")), "the active segment");
    for base in [30, 40, 50] {
        for ext in ["log", "index", "timeindex"] {
            assert!(!files.contains(&seg_path(base, ext)), "{base}.{ext}");
        }
    }
    for ext in ["index", "timeindex"] {
        assert!(!files.contains(&seg_path(20, ext)), "active 20.{ext}");
    }
    // Writes go on at the end of the surviving data.
    for _ in 0..4 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 40);
    // From inside the range that was lost, and from the log start.
    assert_eq!(h.read_up_to_hw(&mut log, 33), (33..40).collect::<Vec<_>>());
    assert_eq!(h.read_up_to_hw(&mut log, 0), (0..40).collect::<Vec<_>>());
    // Another crash changes nothing: it was all synced.
    h.disk.crash();
    let mut log = h.open(cfg);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(h.read_up_to_hw(&mut log, 0), (0..40).collect::<Vec<_>>());
}

/// Data the log had synced (below the recovery point) that a lying disk lost
/// anyway is not cut: that would take back acknowledged offsets and drop the
/// data that survived after it. The gap stays, and fetches walk over it.
#[test]
fn data_lost_below_the_recovery_point_leaves_a_gap_that_fetches_skip() {
    let mut h = Harness::new();
    let b = batch(5);
    let cfg = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        index_interval_bytes: 1,
        ..config()
    };
    let mut log = h.create(cfg.clone());
    for _ in 0..4 {
        h.append(&mut log, b.clone()).unwrap();
    }
    h.run(&mut log);
    // Segments 20, 30 and 40; the disk lies about the syncs of 20 and 30.
    for _ in 0..6 {
        h.append(&mut log, b.clone()).unwrap();
    }
    let (lost20, lost30) = (seg_path(20, "log"), seg_path(30, "log"));
    h.run_lying(&mut log, |p| p == lost20 || p == lost30);
    assert_eq!(log.high_watermark(), 50);
    h.maintain(&mut log); // recovery point 50
    h.disk.crash();

    let mut log = h.open(cfg.clone());
    assert_eq!((log.log_end_offset(), log.high_watermark()), (50, 50));
    let expected: Vec<i64> = (0..20).chain(40..50).collect();
    assert_eq!(h.read_up_to_hw(&mut log, 0), expected);
    assert_eq!(h.read_up_to_hw(&mut log, 20), (40..50).collect::<Vec<_>>());
    assert_eq!(h.read_up_to_hw(&mut log, 33), (40..50).collect::<Vec<_>>());
    assert_eq!(h.append(&mut log, batch(5)).unwrap().base_offset, 50);
    h.run(&mut log);
    assert_eq!(h.read_up_to_hw(&mut log, 25), (40..55).collect::<Vec<_>>());
    // The next recovery keeps the same log.
    h.disk.crash();
    let mut log = h.open(cfg);
    assert_eq!(log.log_end_offset(), 55);
    let expected: Vec<i64> = (0..20).chain(40..55).collect();
    assert_eq!(h.read_up_to_hw(&mut log, 0), expected);
}

/// The read loop walks over empty segments to the next one with data.
#[test]
fn read_walks_over_empty_segments() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(5)).unwrap();
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    // Empty segments 10 and 15 between segment 0 and segment 20, as data
    // lost below the recovery point leaves them.
    for base in [10, 15, 20] {
        log.leo = base;
        h.call(|io, _| log.roll(io));
        h.run(&mut log);
    }
    h.append(&mut log, batch(5)).unwrap();
    h.append(&mut log, batch(5)).unwrap();
    h.run(&mut log);
    let bases: Vec<i64> = log.segments.iter().map(|s| s.base).collect();
    assert_eq!(bases, vec![0, 10, 15, 20]);
    assert_eq!(log.high_watermark(), 30);
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..10).collect::<Vec<_>>());
    for at in [10, 12, 15, 19, 20] {
        let data = h.read(&mut log, at, 1 << 20).unwrap();
        assert_eq!(
            offsets(&data.records),
            (20..30).collect::<Vec<_>>(),
            "at {at}"
        );
        assert_eq!(data.high_watermark, 30);
    }
    assert!(log.bytes_available(12) > 0);
    assert_eq!(h.read(&mut log, 30, 1 << 20).unwrap().records.len(), 0);
}

#[path = "replica_tests.rs"]
mod replica_tests;

// ---- Producer state (idempotent producers) ----

/// An idempotent batch of `count` 40-byte records: producer `pid`, `epoch`, base sequence `seq`.
fn idem_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let value = [b'v'; 40];
    let values: Vec<&[u8]> = (0..count).map(|_| &value[..]).collect();
    super::batch::tests::make_producer_batch(pid, epoch, seq, &values)
}

/// The producer state rebuilt by replaying every batch the log serves.
fn replayed_producers(h: &mut Harness, log: &mut PartitionLog) -> producers::ProducerStates {
    let mut states = producers::ProducerStates::default();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let data = h.read(log, next, 1 << 20).unwrap();
        let (headers, _, _) = batch::scan(&data.records);
        assert!(!headers.is_empty());
        for hd in &headers {
            if hd.base_offset >= next {
                states.record(hd);
            }
        }
        next = headers.last().unwrap().next_offset();
    }
    states
}

#[test]
fn an_idempotent_retry_gets_its_original_offsets_and_appends_nothing() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, batch(2)).unwrap();
    let first = h.append(&mut log, idem_batch(7, 0, 0, 3)).unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset, first.duplicate),
        (2, 4, false)
    );
    h.append(&mut log, idem_batch(7, 0, 3, 2)).unwrap();
    h.run(&mut log);
    let retry = h.append(&mut log, idem_batch(7, 0, 0, 3)).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (2, 4, true)
    );
    assert_eq!(log.log_end_offset(), 7);
    assert!(h.queue.is_empty(), "a duplicate writes nothing");
    assert!(matches!(
        h.append(&mut log, idem_batch(7, 0, 9, 1)),
        Err(LogError::Producer(
            producers::ProducerError::OutOfOrderSequence(_)
        ))
    ));
    assert_eq!(log.log_end_offset(), 7, "nothing appended on an error");
}

/// Many idempotent batches across segment rolls, a crash, and the state
/// recovered must equal the one built while appending (and the one replayed
/// from the recovered log), with or without the newest snapshot.
#[test]
fn producer_state_survives_crashes_rolls_and_lost_snapshots() {
    for damage in ["none", "remove-newest-snapshot", "garbage-newest-snapshot"] {
        let mut h = Harness::new();
        let b = idem_batch(1, 0, 0, 2);
        let small = LogConfig {
            segment_bytes: (b.len() * 3) as u64,
            ..config()
        };
        let mut log = h.create(small.clone());
        let mut seq = [0i32; 3];
        for i in 0..30usize {
            let pid = (i % 3) as i64;
            let n = 1 + i % 3;
            h.append(&mut log, idem_batch(pid, 0, seq[pid as usize], n))
                .unwrap();
            seq[pid as usize] += n as i32;
            h.run(&mut log);
        }
        let before = log.producer_states().clone();
        assert_eq!(before.len(), 3);
        let snapshots: Vec<String> = h
            .files()
            .into_iter()
            .filter(|f| f.ends_with(".snapshot"))
            .collect();
        assert!(snapshots.len() >= 3, "a snapshot per roll: {snapshots:?}");
        // A checkpoint, so that recovery trusts the closed segments' indexes.
        h.maintain(&mut log);
        h.disk.crash();
        let newest = snapshots.last().unwrap().clone();
        match damage {
            "remove-newest-snapshot" => {
                h.disk.execute(&DiskOp::Remove { path: newest }).unwrap();
            }
            "garbage-newest-snapshot" => {
                h.disk
                    .execute(&DiskOp::Write {
                        path: newest,
                        offset: 4,
                        data: Bytes::from_static(b"garbage"),
                    })
                    .unwrap();
            }
            _ => {}
        }
        let mut log = h.open(small);
        assert_eq!(log.producer_states(), &before, "damage: {damage}");
        assert_eq!(
            &replayed_producers(&mut h, &mut log),
            &before,
            "damage: {damage}"
        );
        // The last batch of producer 2, retried, is still a duplicate.
        let last = before.get(2).unwrap().batches.back().copied().unwrap();
        let n = (last.last_seq - last.first_seq + 1) as usize;
        let retry = h
            .append(&mut log, idem_batch(2, 0, last.first_seq, n))
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, last.first_offset);
    }
}

/// A crash at every step of idempotent appends across rolls: whatever
/// survives, the recovered producer state is exactly the one its batches give.
#[test]
fn recovered_producer_state_matches_the_recovered_log_at_every_crash_point() {
    let b = idem_batch(1, 0, 0, 2);
    let small = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        ..config()
    };
    for crash_after in (0..120).step_by(3) {
        let mut h = Harness::new();
        let mut log = h.create(small.clone());
        let mut steps = 0;
        let mut seq = [0i32; 2];
        for i in 0..16usize {
            let pid = (i % 2) as i64;
            h.append(&mut log, idem_batch(pid, 0, seq[pid as usize], 2))
                .unwrap();
            seq[pid as usize] += 2;
            for _ in 0..2 {
                if steps < crash_after && h.step(&mut log) {
                    steps += 1;
                }
            }
        }
        h.queue.clear();
        h.disk.crash();
        let mut log = h.open(small.clone());
        let replayed = replayed_producers(&mut h, &mut log);
        assert_eq!(
            log.producer_states(),
            &replayed,
            "crash after {crash_after} steps"
        );
    }
}

#[test]
fn truncation_forgets_the_producer_state_of_cut_batches() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, idem_batch(5, 0, 0, 2)).unwrap();
    h.append(&mut log, idem_batch(5, 0, 2, 2)).unwrap();
    h.append(&mut log, idem_batch(5, 0, 4, 2)).unwrap();
    h.run(&mut log);
    log.set_replicated(true);
    h.call(|io, _| log.truncate_to(2, io)).unwrap();
    h.run(&mut log);
    assert_eq!(log.producer_states().get(5).unwrap().batches.len(), 1);
    // The cut batch is not a duplicate any more: it is appended again.
    let again = h.append(&mut log, idem_batch(5, 0, 2, 2)).unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.base_offset, 2);
}

#[test]
fn producers_expire_after_producer_id_expiration_ms() {
    let mut h = Harness::new();
    let mut log = h.create(LogConfig {
        producer_id_expiration_ms: 60_000,
        producer_id_expiration_check_interval_ms: 1_000,
        ..config()
    });
    h.append(&mut log, idem_batch(5, 0, 0, 2)).unwrap(); // timestamps ~1000
    h.run(&mut log);
    h.now = Now::from_millis(2_000, 30_000);
    h.maintain(&mut log);
    assert!(log.producer_states().get(5).is_some());
    h.now = Now::from_millis(4_000, 70_000);
    h.maintain(&mut log);
    assert!(log.producer_states().get(5).is_none());
    assert!(matches!(
        h.append(&mut log, idem_batch(5, 0, 2, 1)),
        Err(LogError::Producer(
            producers::ProducerError::UnknownProducerId(_)
        ))
    ));
}

/// A follower records the producer state of the batches it copies, so that
/// as the new leader it answers a retry the old leader took as a duplicate.
#[test]
fn a_follower_that_becomes_leader_dedups_a_retry_the_old_leader_appended() {
    let mut lh = Harness::new();
    let mut leader = lh.create(config());
    lh.append(&mut leader, idem_batch(3, 0, 0, 2)).unwrap();
    lh.append(&mut leader, idem_batch(3, 0, 2, 3)).unwrap();
    lh.run(&mut leader);
    let copied = lh.read(&mut leader, 0, 1 << 20).unwrap().records;

    let mut fh = Harness::new();
    let mut follower = fh.create(config());
    follower.set_replicated(true);
    fh.call(|io, now| follower.append_replica(copied, now, io))
        .unwrap();
    fh.run(&mut follower);
    assert_eq!(follower.producer_states(), leader.producer_states());
    let retry = fh.append(&mut follower, idem_batch(3, 0, 2, 3)).unwrap();
    assert_eq!(
        (retry.duplicate, retry.base_offset, retry.last_offset),
        (true, 2, 4)
    );
    assert_eq!(follower.log_end_offset(), 5);
}

// ---- Transactions ----

/// A transactional batch: an idempotent one with the transactional bit set.
fn txn_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let mut b = BytesMut::from(&idem_batch(pid, epoch, seq, count)[..]);
    let attributes = i16::from_be_bytes([b[21], b[22]]) | producers::TRANSACTIONAL_FLAG;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn end_txn(
    h: &mut Harness,
    log: &mut PartitionLog,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> Result<Option<AppendInfo>, LogError> {
    let marker = Marker {
        commit,
        coordinator_epoch: 0,
    };
    let r = h.call(|io, now| log.append_marker(pid, epoch, marker, 3, now, io));
    h.run(log);
    r
}

impl Harness {
    fn read_committed(&mut self, log: &mut PartitionLog, offset: i64) -> FetchData {
        self.events.clear();
        let token = self
            .call(|io, now| log.read_committed(offset, 1 << 20, now, io))
            .unwrap();
        self.drain(log);
        self.run(log);
        let pos = self
            .events
            .iter()
            .position(|e| matches!(e, LogEvent::ReadDone { token: t, .. } if *t == token))
            .expect("ReadDone");
        match self.events.remove(pos) {
            LogEvent::ReadDone { result, .. } => result.unwrap(),
            _ => unreachable!(),
        }
    }
}

fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
    AbortedTxn {
        last_offset: last,
        producer_id: pid,
        first_offset: first,
    }
}

#[test]
fn read_committed_stops_at_the_last_stable_offset_and_learns_the_aborts() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    h.append(&mut log, txn_batch(1, 0, 0, 2)).unwrap(); // 0-1
    h.append(&mut log, batch(1)).unwrap(); // 2
    h.append(&mut log, txn_batch(2, 0, 0, 1)).unwrap(); // 3
    h.run(&mut log);
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (4, 0));
    let data = h.read_committed(&mut log, 0);
    assert!(data.records.is_empty());
    assert_eq!(data.last_stable_offset, 0);
    // read_uncommitted sees everything below the high watermark.
    assert_eq!(
        offsets(&h.read(&mut log, 0, 1 << 20).unwrap().records).len(),
        4
    );

    let abort = end_txn(&mut h, &mut log, 1, 0, false).unwrap().unwrap();
    assert_eq!(abort.base_offset, 4);
    assert_eq!(log.last_stable_offset(), 3, "producer 2 is still open");
    let data = h.read_committed(&mut log, 0);
    assert_eq!(offsets(&data.records), vec![0, 1, 2]);
    assert_eq!(data.aborted, Some(vec![aborted(1, 0, 4)]));

    end_txn(&mut h, &mut log, 2, 0, true).unwrap().unwrap(); // 5
    assert_eq!(log.last_stable_offset(), 6);
    let data = h.read_committed(&mut log, 3);
    assert_eq!(offsets(&data.records), vec![3, 4, 5]);
    assert_eq!(data.aborted, Some(vec![aborted(1, 0, 4)]));
    let data = h.read_committed(&mut log, 5);
    assert_eq!(data.aborted, Some(vec![]), "the abort ended before 5");

    // A retried marker writes nothing; a fenced epoch is refused.
    assert_eq!(end_txn(&mut h, &mut log, 2, 0, true).unwrap(), None);
    h.append(&mut log, txn_batch(2, 0, 1, 1)).unwrap();
    h.run(&mut log);
    assert!(matches!(
        h.append(&mut log, idem_batch(2, 0, 2, 1)),
        Err(LogError::Producer(
            producers::ProducerError::InvalidTxnState(_)
        ))
    ));
    let end = log.log_end_offset();
    assert!(matches!(end_txn(&mut h, &mut log, 1, 0, true), Ok(None)));
    log.producers
        .record(&batch::parse_header(&txn_batch(1, 4, 0, 1)).unwrap());
    assert!(matches!(
        end_txn(&mut h, &mut log, 1, 3, true),
        Err(LogError::Producer(
            producers::ProducerError::InvalidProducerEpoch(_)
        ))
    ));
    assert_eq!(
        log.log_end_offset(),
        end,
        "nothing written for refused markers"
    );
}

#[test]
fn retention_never_deletes_past_an_open_transaction() {
    let mut h = Harness::new();
    let b = txn_batch(1, 0, 0, 2);
    let small = LogConfig {
        segment_bytes: b.len() as u64,
        retention_bytes: 0,
        ..config()
    };
    let mut log = h.create(small);
    h.append(&mut log, b).unwrap();
    for _ in 0..4 {
        h.append(&mut log, batch(2)).unwrap();
        h.run(&mut log);
    }
    h.maintain(&mut log);
    assert_eq!(
        log.log_start_offset(),
        0,
        "the open transaction starts at 0"
    );
    end_txn(&mut h, &mut log, 1, 0, false).unwrap().unwrap();
    h.append(&mut log, batch(1)).unwrap();
    h.run(&mut log);
    h.maintain(&mut log);
    assert!(log.log_start_offset() > 0);
}

/// Transactions across rolls and a crash: the open transactions and the
/// aborted ones recovered equal those before, whether recovery uses the
/// snapshots and `.txnindex` files or, when one is lost or damaged, scans
/// every segment (and writes the index files again).
#[test]
fn transaction_state_survives_crashes_and_lost_or_damaged_index_files() {
    for damage in [
        "none",
        "remove-txnindex",
        "garbage-txnindex",
        "remove-newest-snapshot",
    ] {
        let mut h = Harness::new();
        let b = txn_batch(1, 0, 0, 2);
        let small = LogConfig {
            segment_bytes: (b.len() * 3) as u64,
            ..config()
        };
        let mut log = h.create(small.clone());
        let mut seq = [0i32; 3];
        for i in 0..40usize {
            let pid = (i % 3) as i64;
            if i % 4 == 3 {
                if log.open_transactions().iter().any(|&(_, p)| p == pid) {
                    end_txn(&mut h, &mut log, pid, 0, i % 8 == 3)
                        .unwrap()
                        .unwrap();
                }
                continue;
            }
            h.append(&mut log, txn_batch(pid, 0, seq[pid as usize], 2))
                .unwrap();
            seq[pid as usize] += 2;
            h.run(&mut log);
        }
        let (open, aborts) = (log.open_transactions(), log.aborted.clone());
        assert!(!open.is_empty() && aborts.len() >= 3, "{open:?} {aborts:?}");
        let txn_files: Vec<String> = h
            .files()
            .into_iter()
            .filter(|f| f.ends_with(".txnindex"))
            .collect();
        assert!(
            txn_files.len() >= 5,
            "one per closed segment: {txn_files:?}"
        );
        h.maintain(&mut log);
        h.disk.crash();
        match damage {
            "remove-txnindex" => {
                h.disk
                    .execute(&DiskOp::Remove {
                        path: txn_files[1].clone(),
                    })
                    .unwrap();
            }
            "garbage-txnindex" => {
                h.disk
                    .execute(&DiskOp::Write {
                        path: txn_files[2].clone(),
                        offset: 0,
                        data: Bytes::from_static(b"garbage"),
                    })
                    .unwrap();
            }
            "remove-newest-snapshot" => {
                let newest = h
                    .files()
                    .into_iter()
                    .rfind(|f| f.ends_with(".snapshot"))
                    .unwrap();
                h.disk.execute(&DiskOp::Remove { path: newest }).unwrap();
            }
            _ => {}
        }
        let mut log = h.open(small.clone());
        assert_eq!(log.open_transactions(), open, "damage: {damage}");
        assert_eq!(log.aborted, aborts, "damage: {damage}");
        let lso = log.last_stable_offset();
        let data = h.read_committed(&mut log, 0);
        assert!(offsets(&data.records).iter().all(|&o| o < lso));
        assert_eq!(
            data.aborted.unwrap(),
            aborts.overlapping(0, *offsets(&data.records).last().unwrap() + 1)
        );
        // Every closed segment has its index file again; a second open
        // trusts them (and gives the same state).
        let now_files = h
            .files()
            .into_iter()
            .filter(|f| f.ends_with(".txnindex"))
            .count();
        assert!(now_files >= txn_files.len(), "damage: {damage}");
        h.disk.crash();
        let log = h.open(small);
        assert_eq!(log.aborted, aborts, "damage: {damage}, second open");
    }
}

/// A follower copying the leader's batches, markers included, ends up with
/// the same open and aborted transactions; a truncation that cuts a marker
/// reopens its transaction.
#[test]
fn followers_track_transactions_and_truncation_reopens_them() {
    let mut h = Harness::new();
    let mut leader = h.create(config());
    h.append(&mut leader, txn_batch(1, 0, 0, 2)).unwrap();
    h.append(&mut leader, txn_batch(2, 0, 0, 1)).unwrap();
    h.run(&mut leader);
    end_txn(&mut h, &mut leader, 1, 0, false).unwrap().unwrap(); // 3
    let all = h.read(&mut leader, 0, 1 << 20).unwrap().records;

    let mut fh = Harness::new();
    let mut follower = fh.create(config());
    follower.set_replicated(true);
    fh.call(|io, now| follower.append_replica(all, now, io))
        .unwrap();
    fh.run(&mut follower);
    assert_eq!(follower.open_transactions(), leader.open_transactions());
    assert_eq!(follower.aborted, leader.aborted);
    fh.call(|io, _| follower.truncate_to(3, io)).unwrap();
    fh.run(&mut follower);
    assert_eq!(follower.open_transactions(), vec![(0, 1), (2, 2)]);
    assert!(follower.aborted.is_empty());
}

/// Open and aborted transactions rebuilt by replaying every batch the log
/// serves, markers included.
fn replayed_txns(h: &mut Harness, log: &mut PartitionLog) -> (Vec<(i64, i64)>, AbortedIndex) {
    let mut states = producers::ProducerStates::default();
    let mut aborted = AbortedIndex::default();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let data = h.read(log, next, 1 << 20).unwrap();
        let (headers, _, _) = batch::scan(&data.records);
        let mut pos = 0;
        for hd in &headers {
            let bytes = &data.records[pos..pos + hd.length];
            pos += hd.length;
            if hd.base_offset < next {
                continue;
            }
            match batch::read_marker(bytes, hd) {
                Some(m) => {
                    if let Some(t) = states.record_marker(hd, m).filter(|t| t.aborted) {
                        aborted.insert(aborted_txn(t));
                    }
                }
                None => states.record(hd),
            }
        }
        next = headers.last().unwrap().next_offset();
    }
    (states.open_transactions().collect(), aborted)
}

fn aborted_txn(t: producers::CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        last_offset: t.marker_offset,
        producer_id: t.producer_id,
        first_offset: t.first_offset,
    }
}

/// A crash at every step of transactional appends and markers across
/// rolls: whatever survives, the recovered open transactions and aborts
/// are exactly those its batches give.
#[test]
fn recovered_transactions_match_the_recovered_log_at_every_crash_point() {
    let b = txn_batch(1, 0, 0, 2);
    let small = LogConfig {
        segment_bytes: (b.len() * 2) as u64,
        ..config()
    };
    let mut checked_aborts = 0;
    for crash_after in (0..200).step_by(3) {
        let mut h = Harness::new();
        let mut log = h.create(small.clone());
        let mut steps = 0;
        let mut seq = [0i32; 2];
        for i in 0..24usize {
            let pid = (i % 2) as i64;
            if i % 3 == 2 {
                let marker = Marker {
                    commit: i % 4 == 0,
                    coordinator_epoch: 0,
                };
                h.call(|io, now| log.append_marker(pid, 0, marker, 3, now, io))
                    .unwrap();
            } else {
                h.append(&mut log, txn_batch(pid, 0, seq[pid as usize], 2))
                    .unwrap();
                seq[pid as usize] += 2;
            }
            for _ in 0..3 {
                if steps < crash_after && h.step(&mut log) {
                    steps += 1;
                }
            }
        }
        h.queue.clear();
        h.disk.crash();
        let mut log = h.open(small.clone());
        let (open, aborted) = replayed_txns(&mut h, &mut log);
        assert_eq!(
            log.open_transactions(),
            open,
            "crash after {crash_after} steps"
        );
        assert_eq!(log.aborted, aborted, "crash after {crash_after} steps");
        checked_aborts += aborted.len();
    }
    assert!(
        checked_aborts > 20,
        "the crashes kept aborts to check: {checked_aborts}"
    );
}

/// A batch's base offset is outside its CRC: a flipped bit there must be
/// caught by the read (offsets run on from the index entry), never served
/// as a record at a wildly wrong offset.
#[test]
fn a_damaged_base_offset_is_corruption_not_a_wrong_offset() {
    let mut h = Harness::new();
    let mut log = h.create(config());
    let first = batch(2);
    let first_len = first.len() as u64;
    h.append(&mut log, first).unwrap();
    h.append(&mut log, batch(2)).unwrap(); // offsets 2-3
    h.append(&mut log, batch(2)).unwrap(); // offsets 4-5
    h.run(&mut log);
    // Flip bit 14 of the second batch's base offset (2 -> 2 + 2^14).
    let flipped = (2i64 | (1 << 14)).to_be_bytes();
    h.disk
        .execute(&DiskOp::Write {
            path: seg_path(0, "log"),
            offset: first_len,
            data: Bytes::copy_from_slice(&flipped),
        })
        .unwrap();
    // From 0: the good first batch only.
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), vec![0, 1]);
    // At the damaged batch: corruption, not the batch at a wrong offset.
    assert!(matches!(
        h.read(&mut log, 2, 1 << 20),
        Err(LogError::Batch(BatchError::Corrupt(_)))
    ));
}
