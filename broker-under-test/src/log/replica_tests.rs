//! Tests of replication support (`replica.rs`, `epoch.rs`): a child of
//! `tests` to share its harness.

use super::*;

fn read_replica(
    h: &mut Harness,
    log: &mut PartitionLog,
    offset: i64,
    max_bytes: usize,
) -> Result<FetchData, LogError> {
    h.events.clear();
    let token = h.call(|io, now| log.read_replica(offset, max_bytes, now, io))?;
    h.drain(log);
    h.run(log);
    let pos = h
        .events
        .iter()
        .position(|e| matches!(e, LogEvent::ReadDone { token: t, .. } if *t == token))
        .expect("ReadDone");
    match h.events.remove(pos) {
        LogEvent::ReadDone { result, .. } => result,
        _ => unreachable!(),
    }
}

fn append_epoch(h: &mut Harness, log: &mut PartitionLog, records: Bytes, epoch: i32) -> AppendInfo {
    let info = h
        .call(|io, now| log.append(records, epoch, now, io))
        .unwrap();
    h.run(log);
    info
}

fn append_replica(
    h: &mut Harness,
    log: &mut PartitionLog,
    records: Bytes,
) -> Result<AppendInfo, LogError> {
    let r = h.call(|io, now| log.append_replica(records, now, io));
    h.run(log);
    r
}

/// Follower fetches from the leader until it has everything (small fetches).
fn replicate(lh: &mut Harness, leader: &mut PartitionLog, fh: &mut Harness, f: &mut PartitionLog) {
    loop {
        let data = read_replica(lh, leader, f.log_end_offset(), 300).unwrap();
        if data.records.is_empty() {
            break;
        }
        append_replica(fh, f, data.records).unwrap();
    }
    assert_eq!(f.log_end_offset(), leader.log_end_offset());
}

/// Truncate and drive it to durability; the end reached.
fn truncate(h: &mut Harness, log: &mut PartitionLog, offset: i64) -> i64 {
    h.call(|io, _| log.truncate_to(offset, io)).unwrap();
    assert!(log.is_truncating() || log.log_end_offset() <= offset);
    h.run(log);
    assert!(!log.is_truncating());
    let end = log.poll_truncated().expect("truncation reported");
    assert_eq!(log.poll_truncated(), None);
    end
}

/// Every offset from log start to the high watermark, read back.
fn all_offsets(h: &mut Harness, log: &mut PartitionLog) -> Vec<i64> {
    let start = log.log_start_offset();
    h.read_up_to_hw(log, start)
}

fn seg_files(h: &Harness) -> Vec<String> {
    h.files()
        .into_iter()
        .filter(|f| f.ends_with(".log") || f.ends_with(".index") || f.ends_with(".timeindex"))
        .collect()
}

fn epoch_file(h: &Harness) -> Option<epoch::EpochCache> {
    h.disk
        .read_all(&format!("{DIR}/{}", epoch::EPOCH_FILE))
        .and_then(|b| epoch::EpochCache::parse(&b))
}

fn small_segments(b: &Bytes, batches_per_segment: usize) -> LogConfig {
    LogConfig {
        segment_bytes: (b.len() * batches_per_segment) as u64,
        index_interval_bytes: 1,
        ..config()
    }
}

#[test]
fn replica_append_copies_the_leaders_bytes_and_epochs() {
    let b = batch(5);
    let cfg = small_segments(&b, 3);
    let mut lh = Harness::new();
    let mut leader = lh.create(cfg.clone());
    for epoch in [1, 1, 2, 2, 2, 4, 4] {
        append_epoch(&mut lh, &mut leader, b.clone(), epoch);
    }
    assert_eq!(leader.epoch_entries(), &[(1, 0), (2, 10), (4, 25)]);
    let mut fh = Harness::new();
    let mut follower = fh.create(cfg.clone());
    replicate(&mut lh, &mut leader, &mut fh, &mut follower);
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(follower.epoch_at(follower.log_end_offset() - 1), Some(4));
    assert_eq!(seg_files(&fh), seg_files(&lh));
    for f in seg_files(&lh).iter().filter(|f| f.ends_with(".log")) {
        assert_eq!(fh.disk.read_all(f), lh.disk.read_all(f), "{f}");
    }
    assert_eq!(epoch_file(&fh).unwrap().entries(), leader.epoch_entries());
    // Both logs read back the same, through fetches.
    assert_eq!(
        all_offsets(&mut fh, &mut follower),
        (0..35).collect::<Vec<_>>()
    );
    // A reopened follower has the same log and epochs.
    fh.disk.crash();
    let f2 = fh.open(cfg);
    assert_eq!(f2.log_end_offset(), 35);
    assert_eq!(f2.epoch_entries(), leader.epoch_entries());
}

#[test]
fn append_replica_rejects_gaps_and_ignores_a_partial_tail() {
    let b = batch(5);
    let mut lh = Harness::new();
    let mut leader = lh.create(config());
    for _ in 0..4 {
        append_epoch(&mut lh, &mut leader, b.clone(), 1);
    }
    let all = read_replica(&mut lh, &mut leader, 0, 1 << 20)
        .unwrap()
        .records;
    let n = b.len();
    assert_eq!(all.len(), 4 * n);
    let mut fh = Harness::new();
    let mut f = fh.create(config());
    // Starting above the log end.
    assert_eq!(
        append_replica(&mut fh, &mut f, all.slice(n..)),
        Err(LogError::Batch(BatchError::OffsetMismatch {
            expected: 0,
            got: 5
        }))
    );
    // A gap between batches.
    let mut gap = BytesMut::from(&all[..n]);
    gap.extend_from_slice(&all[2 * n..3 * n]);
    assert_eq!(
        append_replica(&mut fh, &mut f, gap.freeze()),
        Err(LogError::Batch(BatchError::OffsetMismatch {
            expected: 5,
            got: 10
        }))
    );
    assert_eq!(f.log_end_offset(), 0);
    // A corrupt batch.
    let mut bad = BytesMut::from(&all[..n]);
    bad[n - 1] ^= 1;
    assert!(matches!(
        append_replica(&mut fh, &mut f, bad.freeze()),
        Err(LogError::Batch(BatchError::Corrupt(_)))
    ));
    // Two whole batches and part of the third: two appended.
    let info = append_replica(&mut fh, &mut f, all.slice(..2 * n + n / 2)).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 9));
    assert_eq!(f.log_end_offset(), 10);
    assert_eq!(
        f.high_watermark(),
        10,
        "not replicated: follows the local end"
    );
    // Only a partial batch (even under 12 bytes), or nothing: a no-op.
    for cut in [n / 2, 5, 0] {
        let info = append_replica(&mut fh, &mut f, all.slice(2 * n..2 * n + cut)).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (10, 9));
    }
    // Already present: a mismatch, nothing changes.
    assert!(matches!(
        append_replica(&mut fh, &mut f, all.slice(..n)),
        Err(LogError::Batch(BatchError::OffsetMismatch {
            expected: 10,
            got: 0
        }))
    ));
    append_replica(&mut fh, &mut f, all.slice(2 * n..)).unwrap();
    assert_eq!(f.log_end_offset(), 20);
    assert_eq!(
        fh.disk.read_all(&seg_path(0, "log")),
        lh.disk.read_all(&seg_path(0, "log"))
    );
}

/// Appends at epochs 1, 2, 3 (5 records a batch), in segments of 3 batches.
fn log_with_epochs(h: &mut Harness, cfg: LogConfig, batches: usize) -> PartitionLog {
    let mut log = h.create(cfg);
    for i in 0..batches {
        append_epoch(h, &mut log, batch(5), 1 + (i as i32) / 4);
    }
    log
}

fn check_truncated(h: &mut Harness, log: &mut PartitionLog, cfg: &LogConfig, end: i64) {
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.high_watermark(), end);
    assert_eq!(log.local_end_offset(), end);
    assert!(log.epoch_entries().iter().all(|&(_, s)| s < end.max(1)));
    assert_eq!(
        all_offsets(h, log),
        (log.log_start_offset()..end).collect::<Vec<_>>()
    );
    let cp = Checkpoint::parse(&h.disk.read_all(&format!("{DIR}/checkpoint")).unwrap()).unwrap();
    assert!(cp.recovery_point <= end, "{cp:?}");
    let active = log.active().base;
    for f in seg_files(h) {
        let (base, ext) = segment::parse_file_name(f.rsplit('/').next().unwrap()).unwrap();
        assert!(base <= active, "{f} left behind");
        assert!(
            ext == "log" || base < active,
            "{f}: the active segment has no index files"
        );
    }
    // Durable: a power loss now recovers the same log and epochs.
    let epochs = log.epoch_entries().to_vec();
    h.disk.crash();
    let mut reopened = h.open(cfg.clone());
    assert_eq!(reopened.log_end_offset(), end);
    assert_eq!(reopened.epoch_entries(), &epochs[..]);
    assert_eq!(
        all_offsets(h, &mut reopened),
        (log.log_start_offset()..end).collect::<Vec<_>>()
    );
    *log = reopened;
}

#[test]
fn truncate_in_the_middle_of_the_active_segment() {
    let b = batch(5);
    let cfg = small_segments(&b, 3);
    let mut h = Harness::new();
    let mut log = log_with_epochs(&mut h, cfg.clone(), 11);
    assert_eq!(log.active().base, 45);
    assert_eq!(log.epoch_entries(), &[(1, 0), (2, 20), (3, 40)]);
    assert_eq!(truncate(&mut h, &mut log, 50), 50);
    assert_eq!(log.epoch_entries(), &[(1, 0), (2, 20), (3, 40)]);
    check_truncated(&mut h, &mut log, &cfg, 50);
    assert_eq!(
        h.disk.read_all(&seg_path(45, "log")).unwrap().len(),
        b.len()
    );
    // Appends continue at the new end, with a new epoch.
    let info = append_epoch(&mut h, &mut log, b.clone(), 7);
    assert_eq!(info.base_offset, 50);
    assert_eq!(log.epoch_entries(), &[(1, 0), (2, 20), (3, 40), (7, 50)]);
    check_truncated(&mut h, &mut log, &cfg, 55);
    assert_eq!(log.end_offset_for_epoch(3), (3, 50));
}

#[test]
fn truncate_at_a_segment_boundary_and_across_segments() {
    let b = batch(5);
    let cfg = small_segments(&b, 3);
    let mut h = Harness::new();
    let mut log = log_with_epochs(&mut h, cfg.clone(), 12);
    assert_eq!(log.log_end_offset(), 60);
    // Exactly at the base of the third segment: it stays, empty and active.
    assert_eq!(truncate(&mut h, &mut log, 30), 30);
    assert_eq!(log.segments.len(), 3);
    assert_eq!(log.active().base, 30);
    assert_eq!(log.epoch_entries(), &[(1, 0), (2, 20)]);
    check_truncated(&mut h, &mut log, &cfg, 30);
    // Into the middle of a closed segment, across the active one.
    append_epoch(&mut h, &mut log, b.clone(), 5);
    append_epoch(&mut h, &mut log, b.clone(), 5);
    assert_eq!(truncate(&mut h, &mut log, 20), 20);
    assert_eq!(log.active().base, 15);
    assert_eq!(log.epoch_entries(), &[(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 20));
    check_truncated(&mut h, &mut log, &cfg, 20);
    // Appends fill the cut segment up and roll again.
    for _ in 0..4 {
        append_epoch(&mut h, &mut log, b.clone(), 6);
    }
    assert_eq!(log.log_end_offset(), 40);
    check_truncated(&mut h, &mut log, &cfg, 40);
    assert_eq!(log.epoch_entries(), &[(1, 0), (6, 20)]);
}

#[test]
fn truncate_to_log_start_and_refusals() {
    let b = batch(5);
    let cfg = small_segments(&b, 2);
    let mut h = Harness::new();
    let mut log = log_with_epochs(&mut h, cfg.clone(), 5);
    // At or above the end: nothing to do.
    h.call(|io, _| log.truncate_to(25, io)).unwrap();
    assert!(!log.is_truncating() && h.queue.is_empty());
    // While a truncation is in progress: appends, replica reads and another
    // truncation are refused; plain reads below the new end go on.
    h.call(|io, _| log.truncate_to(12, io)).unwrap();
    assert!(log.is_truncating());
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.high_watermark(), 12);
    assert_eq!(h.append(&mut log, b.clone()), Err(LogError::NotReady));
    assert_eq!(
        h.call(|io, _| log.truncate_to(3, io)),
        Err(LogError::NotReady)
    );
    assert_eq!(
        h.call(|io, now| log.read_replica(0, 100, now, io)),
        Err(LogError::NotReady)
    );
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert!(offsets(&data.records).iter().all(|&o| o < 15));
    assert_eq!(
        log.poll_truncated(),
        Some(10),
        "offset 12 is inside a batch: cut before it"
    );
    assert_eq!(log.log_end_offset(), 10);
    check_truncated(&mut h, &mut log, &cfg, 10);
    // To the log start: nothing left.
    assert_eq!(truncate(&mut h, &mut log, 0), 0);
    assert_eq!(log.epoch_entries(), &[]);
    assert_eq!(log.latest_epoch(), None);
    check_truncated(&mut h, &mut log, &cfg, 0);
    assert_eq!(seg_files(&h), vec![seg_path(0, "log")]);
    assert_eq!(h.append(&mut log, b.clone()).unwrap().base_offset, 0);
    h.run(&mut log);
    // Below the log start: an error.
    let mut h = Harness::new();
    let mut log = log_with_epochs(
        &mut h,
        LogConfig {
            retention_bytes: 0,
            ..cfg.clone()
        },
        6,
    );
    h.maintain(&mut log);
    assert_eq!(log.log_start_offset(), 20);
    assert_eq!(
        log.epoch_entries(),
        &[(2, 20)],
        "retention drops epochs below log start"
    );
    assert!(matches!(
        h.call(|io, _| log.truncate_to(15, io)),
        Err(LogError::OffsetOutOfRange { requested: 15, .. })
    ));
    assert_eq!(truncate(&mut h, &mut log, 25), 25);
    assert_eq!(log.epoch_entries(), &[(2, 20)]);
    assert_eq!(truncate(&mut h, &mut log, 20), 20);
    assert_eq!(log.epoch_entries(), &[]);
    check_truncated(&mut h, &mut log, &cfg, 20);
}

#[test]
fn truncation_survives_power_loss_of_unsynced_data() {
    let b = batch(5);
    let cfg = LogConfig {
        durability: Durability::PageCache,
        ..small_segments(&b, 3)
    };
    let mut h = Harness::new();
    let mut log = log_with_epochs(&mut h, cfg.clone(), 5);
    h.call(|io, _| log.flush(io));
    h.run(&mut log);
    for _ in 0..6 {
        append_epoch(&mut h, &mut log, b.clone(), 3);
    }
    assert_eq!(log.log_end_offset(), 55);
    assert_eq!(truncate(&mut h, &mut log, 35), 35);
    append_epoch(&mut h, &mut log, b.clone(), 4);
    // The new batch is written, not synced: lost in a crash, the cut stays.
    h.disk.crash();
    let mut log = h.open(cfg.clone());
    assert_eq!(log.log_end_offset(), 35);
    assert_eq!(log.epoch_entries(), &[(1, 0), (2, 20), (3, 25)]);
    assert_eq!(all_offsets(&mut h, &mut log), (0..35).collect::<Vec<_>>());
    // A crash at every step of a truncation recovers the old or the new end,
    // with epochs matching the batches.
    for steps in 0..40 {
        let mut h = Harness::new();
        let mut log = log_with_epochs(&mut h, small_segments(&b, 3), 12);
        h.call(|io, _| log.truncate_to(22, io)).unwrap();
        for _ in 0..steps {
            h.step(&mut log);
        }
        let done = log.poll_truncated().is_some();
        h.disk.crash();
        h.queue.clear();
        let mut log = h.open(small_segments(&b, 3));
        let end = log.log_end_offset();
        assert!(
            end == 20 || (!done && end == 60),
            "steps {steps}: end {end}"
        );
        let expected: &[(i32, i64)] = if end == 20 {
            &[(1, 0)]
        } else {
            &[(1, 0), (2, 20), (3, 40)]
        };
        assert_eq!(log.epoch_entries(), expected, "steps {steps}");
        assert_eq!(all_offsets(&mut h, &mut log), (0..end).collect::<Vec<_>>());
    }
}

#[test]
fn truncation_cuts_at_a_corrupt_batch() {
    let b = batch(5);
    let cfg = small_segments(&b, 4);
    let mut h = Harness::new();
    let mut log = log_with_epochs(&mut h, cfg.clone(), 4);
    // Damage the second batch, then truncate to 15: the walk stops at 5.
    h.disk
        .execute(&DiskOp::Write {
            path: seg_path(0, "log"),
            offset: b.len() as u64 + 70,
            data: Bytes::from_static(b"xx"),
        })
        .unwrap();
    assert_eq!(truncate(&mut h, &mut log, 15), 5);
    check_truncated(&mut h, &mut log, &cfg, 5);
}

#[test]
fn epoch_cache_persisted_reloaded_and_rebuilt_from_garbage() {
    let cfg = config();
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    assert_eq!(epoch_file(&h), None);
    append_epoch(&mut h, &mut log, batch(5), 2);
    // A new leader records its epoch at its log end.
    h.call(|io, _| log.assign_epoch(5, 5, io));
    h.run(&mut log);
    h.call(|io, _| log.assign_epoch(4, 5, io));
    h.run(&mut log);
    assert_eq!(log.epoch_entries(), &[(2, 0), (5, 5)]);
    assert_eq!(log.end_offset_for_epoch(5), (5, 5));
    assert_eq!(log.end_offset_for_epoch(3), (2, 5));
    assert_eq!(log.end_offset_for_epoch(1), (1, 0));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    append_epoch(&mut h, &mut log, batch(5), 5);
    append_epoch(&mut h, &mut log, batch(5), 8);
    let entries = [(2, 0), (5, 5), (8, 10)];
    assert_eq!(log.epoch_entries(), &entries[..]);
    assert_eq!(
        h.disk
            .read_all(&format!("{DIR}/{}", epoch::EPOCH_FILE))
            .unwrap(),
        Bytes::from_static(b"0\n3\n2 0\n5 5\n8 10\n")
    );
    h.disk.crash();
    let log = h.open(cfg.clone());
    assert_eq!(log.epoch_entries(), &entries[..]);
    // Garbage: ignored, rebuilt from the batch headers (the epoch 5 assigned
    // before any batch of it existed is not in any header).
    h.call(|_, _| ());
    let path = format!("{DIR}/{}", epoch::EPOCH_FILE);
    h.disk
        .execute(&DiskOp::Create { path: path.clone() })
        .unwrap();
    h.disk
        .execute(&DiskOp::Write {
            path: path.clone(),
            offset: 0,
            data: Bytes::from_static(b"0\n2\n9 0\n3 1\n"),
        })
        .unwrap();
    let log = h.open(cfg.clone());
    assert_eq!(log.epoch_entries(), &entries[..]);
    assert_eq!(epoch_file(&h).unwrap().entries(), &entries[..]);
    // Missing: the same.
    h.disk.execute(&DiskOp::Remove { path }).unwrap();
    let log = h.open(cfg);
    assert_eq!(log.epoch_entries(), &entries[..]);
}

#[test]
fn replicated_high_watermark() {
    let b = batch(5);
    let cfg = LogConfig {
        index_interval_bytes: 1,
        ..config()
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    log.set_replicated(true);
    for _ in 0..4 {
        append_epoch(&mut h, &mut log, b.clone(), 1);
    }
    assert_eq!(log.local_end_offset(), 20);
    assert_eq!(log.high_watermark(), 0, "does not follow the local end");
    assert_eq!(h.read(&mut log, 0, 1 << 20).unwrap().records.len(), 0);
    assert_eq!(log.bytes_available(0), 0);
    assert_eq!(log.bytes_available_to(0, i64::MAX), 4 * b.len() as u64);
    assert_eq!(log.bytes_available_to(5, 15), 2 * b.len() as u64);
    let data = read_replica(&mut h, &mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..20).collect::<Vec<_>>());
    assert_eq!(data.high_watermark, 0);
    log.advance_high_watermark(10);
    assert_eq!(log.high_watermark(), 10);
    log.advance_high_watermark(5);
    assert_eq!(log.high_watermark(), 10, "never back");
    assert_eq!(all_offsets(&mut h, &mut log), (0..10).collect::<Vec<_>>());
    assert_eq!(log.bytes_available(0), 2 * b.len() as u64);
    assert!(matches!(
        h.read(&mut log, 11, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(h.find_ts(&mut log, 0).unwrap().map(|(o, _)| o), Some(0));
    // Above the local end (written, not yet synced) is fine; above the log end is not.
    h.call(|io, now| log.append(b.clone(), 1, now, io)).unwrap();
    assert_eq!(log.local_end_offset(), 20);
    log.advance_high_watermark(25);
    assert_eq!(log.high_watermark(), 25);
    log.advance_high_watermark(100);
    assert_eq!(log.high_watermark(), 25);
    assert_eq!(all_offsets(&mut h, &mut log), (0..25).collect::<Vec<_>>());
    h.run(&mut log);
    // Restore after open clamps to the log end, and may lower it only then.
    h.disk.crash();
    let mut log = h.open(cfg.clone());
    log.set_replicated(true);
    assert_eq!(log.high_watermark(), 25);
    h.call(|io, _| log.restore_high_watermark(1000, io));
    assert_eq!(log.high_watermark(), 25);
    h.call(|io, _| log.restore_high_watermark(10, io));
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(all_offsets(&mut h, &mut log), (0..10).collect::<Vec<_>>());
    log.advance_high_watermark(15);
    assert_eq!(all_offsets(&mut h, &mut log), (0..15).collect::<Vec<_>>());
    h.call(|io, _| log.restore_high_watermark(5, io));
    assert_eq!(log.high_watermark(), 15, "only right after open");
    // A truncation below the high watermark takes it back.
    assert_eq!(truncate(&mut h, &mut log, 10), 10);
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(all_offsets(&mut h, &mut log), (0..10).collect::<Vec<_>>());
    // Not replicated again: it catches up with the local end.
    h.append(&mut log, b.clone()).unwrap();
    h.run(&mut log);
    assert_eq!(log.high_watermark(), 10);
    log.set_replicated(false);
    assert_eq!(log.high_watermark(), 15);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Append `n` records at the latest epoch (+1 if `bump`), as leader
        /// or as follower (with a partial batch after it if `tail`). Queued only.
        Append {
            n: usize,
            bump: bool,
            replica: bool,
            tail: bool,
        },
        /// Run every queued disk request.
        Run,
        /// Run the queue, then truncate to the start of a batch picked by `pick`.
        Truncate { pick: usize },
        /// Execute `k` queued requests, lose power, reopen (restoring the
        /// high watermark of a replicated log).
        Crash { k: usize },
        /// Replicated logs: advance the high watermark to a batch end.
        Advance { pick: usize },
        /// Run the queue, then drop everything and start at the end + `gap`.
        StartAt { gap: i64 },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..4, any::<bool>(), any::<bool>(), any::<bool>())
                .prop_map(|(n, bump, replica, tail)| Op::Append { n, bump, replica, tail }),
            2 => Just(Op::Run),
            2 => any::<usize>().prop_map(|pick| Op::Truncate { pick }),
            1 => (0usize..30).prop_map(|k| Op::Crash { k }),
            2 => any::<usize>().prop_map(|pick| Op::Advance { pick }),
            1 => (0i64..20).prop_map(|gap| Op::StartAt { gap }),
        ]
    }

    /// The epoch cache the batches (base, count, epoch) imply. The model's
    /// first entry is (log start, 0, -1).
    fn derived(model: &[(i64, i64, i32)]) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for &(base, _, epoch) in model {
            if epoch >= 0 && out.last().is_none_or(|&(e, _)| epoch > e) {
                out.push((epoch, base));
            }
        }
        out
    }

    fn end(model: &[(i64, i64, i32)]) -> i64 {
        model.last().map_or(0, |&(b, c, _)| b + c)
    }

    /// `hw`: the high watermark of a replicated log (else the log end).
    fn check(h: &mut Harness, log: &mut PartitionLog, model: &[(i64, i64, i32)], hw: Option<i64>) {
        assert!(h.queue.is_empty());
        assert_eq!(log.log_end_offset(), end(model));
        let hw = hw.unwrap_or(end(model));
        assert_eq!(log.high_watermark(), hw);
        assert_eq!(log.epoch_entries(), &derived(model)[..]);
        let start = model[0].0;
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(all_offsets(h, log), (start..hw).collect::<Vec<_>>());
        // A follower's fetches get everything up to the log end (one segment
        // per fetch at most).
        let mut next = start;
        while next < end(model) {
            let data = read_replica(h, log, next, 1 << 30).unwrap();
            assert_eq!(data.high_watermark, hw);
            let got = offsets(&data.records);
            assert_eq!(got.first(), Some(&next));
            next = got.last().unwrap() + 1;
        }
        assert_eq!(next, end(model));
        let on_disk: Vec<(String, u64)> = h
            .files()
            .into_iter()
            .filter(|f| f.ends_with(".log"))
            .map(|f| {
                let len = h.disk.read_all(&f).map_or(0, |b| b.len() as u64);
                (f, len)
            })
            .collect();
        let in_memory: Vec<(String, u64)> = log
            .segments
            .iter()
            .map(|s| (seg_path(s.base, "log"), s.size))
            .collect();
        assert_eq!(on_disk, in_memory);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random leader and follower appends, truncations and crashes keep
        /// the log end, the epoch cache, the data and the segment files
        /// consistent with a model of the batches.
        #[test]
        fn prop_appends_truncations_and_crashes_stay_consistent(
            ops in proptest::collection::vec(arb_op(), 1..40),
            index_interval in prop_oneof![Just(1u64), Just(4096u64)],
            page_cache in any::<bool>(),
            replicated in any::<bool>(),
        ) {
            let b = batch(3);
            let cfg = LogConfig {
                segment_bytes: (b.len() * 3) as u64,
                index_interval_bytes: index_interval,
                durability: if page_cache { Durability::PageCache } else { Durability::Sync },
                ..config()
            };
            let mut h = Harness::new();
            let mut log = h.create(cfg.clone());
            log.set_replicated(replicated);
            let mut model: Vec<(i64, i64, i32)> = vec![(0, 0, -1)];
            let mut hw = 0i64;
            let model_hw = |hw: i64| replicated.then_some(hw);
            for op in ops {
                match op {
                    Op::Append { n, bump, replica, tail } => {
                        let latest = model.iter().map(|m| m.2).max().unwrap_or(0).max(0);
                        let epoch = latest + i32::from(bump);
                        let base = end(&model);
                        if replica {
                            let mut data = BytesMut::from(&batch(n)[..]);
                            batch::assign_offsets(&mut data, base, epoch);
                            if tail {
                                data.extend_from_slice(&batch(1)[..20]);
                            }
                            let info = h
                                .call(|io, now| log.append_replica(data.freeze(), now, io))
                                .unwrap();
                            prop_assert_eq!(info.base_offset, base);
                        } else {
                            let info = h
                                .call(|io, now| log.append(batch(n), epoch, now, io))
                                .unwrap();
                            prop_assert_eq!(info.base_offset, base);
                        }
                        model.push((base, n as i64, epoch));
                    }
                    Op::Run => {
                        h.run(&mut log);
                        check(&mut h, &mut log, &model, model_hw(hw));
                    }
                    Op::Truncate { pick } => {
                        h.run(&mut log);
                        if model.is_empty() {
                            continue;
                        }
                        let keep = pick % model.len();
                        let to = model[keep].0;
                        if to < log.log_end_offset() {
                            prop_assert_eq!(truncate(&mut h, &mut log, to), to);
                        }
                        model.truncate(keep.max(1));
                        hw = hw.min(to);
                        check(&mut h, &mut log, &model, model_hw(hw));
                    }
                    Op::Crash { k } => {
                        for _ in 0..k {
                            h.step(&mut log);
                        }
                        let acked = log.local_end_offset();
                        h.disk.crash();
                        h.queue.clear();
                        log = h.open(cfg.clone());
                        log.set_replicated(replicated);
                        let recovered = log.log_end_offset();
                        hw = hw.min(recovered);
                        if replicated {
                            prop_assert_eq!(log.high_watermark(), recovered);
                            h.call(|io, _| log.restore_high_watermark(hw, io));
                            h.run(&mut log);
                        }
                        // Page-cache mode acknowledges unsynced data, which a crash may lose.
                        prop_assert!(page_cache || recovered >= acked, "{} < {}", recovered, acked);
                        let keep = model.iter().take_while(|m| m.0 < recovered).count();
                        model.truncate(keep.max(1));
                        prop_assert_eq!(end(&model), recovered, "recovered end on a batch boundary");
                        check(&mut h, &mut log, &model, model_hw(hw));
                    }
                    Op::StartAt { gap } => {
                        h.run(&mut log);
                        let start = end(&model) + gap;
                        h.call(|io, _| log.truncate_fully_and_start_at(start, io)).unwrap();
                        h.run(&mut log);
                        prop_assert_eq!(log.poll_truncated(), Some(start));
                        model = vec![(start, 0, -1)];
                        hw = start;
                        check(&mut h, &mut log, &model, model_hw(hw));
                    }
                    Op::Advance { pick } => {
                        if !replicated || model.is_empty() {
                            continue;
                        }
                        let (b, c, _) = model[pick % model.len()];
                        log.advance_high_watermark(b + c);
                        hw = hw.max(b + c);
                        prop_assert_eq!(log.high_watermark(), hw);
                    }
                }
            }
            h.run(&mut log);
            check(&mut h, &mut log, &model, model_hw(hw));
        }
    }
}

#[test]
fn restored_high_watermark_finds_exact_batch_positions() {
    // No sparse index entries: only the walk can place the high watermark.
    let cfg = config();
    let mut h = Harness::new();
    let mut log = h.create(cfg.clone());
    for _ in 0..8 {
        append_epoch(&mut h, &mut log, batch(2), 1);
    }
    h.disk.crash();
    let mut log = h.open(cfg.clone());
    log.set_replicated(true);
    h.call(|io, _| log.restore_high_watermark(7, io));
    assert_eq!(log.high_watermark(), 7);
    // Before the walk: nothing above the high watermark, maybe less.
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert!(offsets(&data.records).iter().all(|&o| o < 7));
    h.run(&mut log);
    // Offset 7 is inside the batch [6, 8): reads stop at 6, whole batches.
    let data = h.read(&mut log, 0, 1 << 20).unwrap();
    assert_eq!(offsets(&data.records), (0..6).collect::<Vec<_>>());
    log.advance_high_watermark(12);
    assert_eq!(all_offsets(&mut h, &mut log), (0..12).collect::<Vec<_>>());
    assert_eq!(log.bytes_available(0), 6 * batch(2).len() as u64);
    // Appends after the walk keep their own marks.
    append_epoch(&mut h, &mut log, batch(2), 2);
    log.advance_high_watermark(14);
    assert_eq!(all_offsets(&mut h, &mut log), (0..14).collect::<Vec<_>>());
    log.advance_high_watermark(18);
    assert_eq!(all_offsets(&mut h, &mut log), (0..18).collect::<Vec<_>>());
    // An append while the walk is under way, and an advance past the restored value.
    h.disk.crash();
    let mut log = h.open(cfg);
    log.set_replicated(true);
    h.call(|io, _| log.restore_high_watermark(4, io));
    h.call(|io, now| log.append(batch(2), 2, now, io)).unwrap();
    log.advance_high_watermark(10);
    h.run(&mut log);
    assert_eq!(all_offsets(&mut h, &mut log), (0..10).collect::<Vec<_>>());
    log.advance_high_watermark(20);
    assert_eq!(all_offsets(&mut h, &mut log), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_new_follower_starts_at_the_leaders_log_start() {
    let b = batch(5);
    let cfg = LogConfig {
        retention_bytes: (b.len() * 2) as i64,
        ..small_segments(&b, 2)
    };
    let mut lh = Harness::new();
    let mut leader = log_with_epochs(&mut lh, cfg.clone(), 9);
    lh.maintain(&mut leader);
    assert_eq!(leader.log_start_offset(), 30);
    let mut fh = Harness::new();
    let mut f = log_with_epochs(&mut fh, small_segments(&b, 2), 3);
    assert!(matches!(
        read_replica(&mut lh, &mut leader, f.log_end_offset(), 1 << 20),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    fh.call(|io, _| f.truncate_fully_and_start_at(30, io))
        .unwrap();
    assert_eq!(
        (f.log_start_offset(), f.log_end_offset(), f.high_watermark()),
        (30, 30, 30)
    );
    assert_eq!(fh.append(&mut f, b.clone()), Err(LogError::NotReady));
    fh.run(&mut f);
    assert_eq!(f.poll_truncated(), Some(30));
    assert_eq!(f.epoch_entries(), &[]);
    assert_eq!(seg_files(&fh), vec![seg_path(30, "log")]);
    replicate(&mut lh, &mut leader, &mut fh, &mut f);
    assert_eq!(f.epoch_entries(), &[(2, 30), (3, 40)]);
    assert_eq!(all_offsets(&mut fh, &mut f), (30..45).collect::<Vec<_>>());
    fh.disk.crash();
    let mut f = fh.open(small_segments(&b, 2));
    assert_eq!((f.log_start_offset(), f.log_end_offset()), (30, 45));
    assert_eq!(f.epoch_entries(), &[(2, 30), (3, 40)]);
    assert_eq!(all_offsets(&mut fh, &mut f), (30..45).collect::<Vec<_>>());
    // At a crash in every step: the old log or the new one.
    for steps in 0..30 {
        let mut h = Harness::new();
        let mut log = log_with_epochs(&mut h, small_segments(&b, 2), 5);
        h.call(|io, _| log.truncate_fully_and_start_at(100, io))
            .unwrap();
        for _ in 0..steps {
            h.step(&mut log);
        }
        h.disk.crash();
        h.queue.clear();
        let mut log = h.open(small_segments(&b, 2));
        let span = (log.log_start_offset(), log.log_end_offset());
        assert!(
            span == (0, 25) || span == (100, 100),
            "steps {steps}: {span:?}"
        );
        let epochs: &[(i32, i64)] = if span.0 == 0 { &[(1, 0), (2, 20)] } else { &[] };
        assert_eq!(log.epoch_entries(), epochs, "steps {steps}");
        assert_eq!(
            all_offsets(&mut h, &mut log),
            (span.0..span.1).collect::<Vec<_>>()
        );
        assert_eq!(h.append(&mut log, batch(1)).unwrap().base_offset, span.1);
        h.run(&mut log);
    }
}

#[test]
fn reads_during_a_truncation_stay_below_the_new_end() {
    let b = batch(5);
    let cfg = LogConfig {
        durability: Durability::PageCache,
        ..small_segments(&b, 4)
    };
    let mut h = Harness::new();
    let mut log = h.create(cfg);
    log.set_replicated(true);
    for _ in 0..3 {
        append_epoch(&mut h, &mut log, b.clone(), 1);
    }
    // A write still in flight when the truncation starts.
    h.call(|io, now| log.append(b.clone(), 1, now, io)).unwrap();
    h.call(|io, _| log.truncate_to(10, io)).unwrap();
    h.step(&mut log); // the write completes: the local end is clamped to 10
    assert_eq!(log.local_end_offset(), 10);
    log.advance_high_watermark(10);
    assert_eq!(log.high_watermark(), 10);
    let token = h.call(|io, now| log.read(0, 1 << 20, now, io)).unwrap();
    h.run(&mut log);
    let got = h.events.iter().find_map(|e| match e {
        LogEvent::ReadDone { token: t, result } if *t == token => Some(result.clone()),
        _ => None,
    });
    let data = got.expect("ReadDone").unwrap();
    assert!(offsets(&data.records).iter().all(|&o| o < 10));
    assert_eq!(log.poll_truncated(), Some(10));
    assert_eq!(all_offsets(&mut h, &mut log), (0..10).collect::<Vec<_>>());
}
