//! Each fault of the simulated world, shown doing what it says.

use broker::seam::{DiskErrorKind, DiskOp, DiskReply};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::catalogue;
use sim::disk::{SimDisk, SECTOR};
use sim::run::{Run, RunOptions};
use sim::scenario::DiskSpec;
use sim::world::ProcState;

fn disk(torn: bool) -> SimDisk {
    SimDisk::new(DiskSpec {
        torn_writes: torn,
        ..DiskSpec::default()
    })
}

fn exec(d: &mut SimDisk, op: DiskOp) -> Result<DiskReply, broker::seam::DiskError> {
    d.execute(&op, &mut ChaCha8Rng::seed_from_u64(0))
}

fn write(d: &mut SimDisk, path: &str, offset: u64, data: &[u8]) {
    exec(
        d,
        DiskOp::Write {
            path: path.into(),
            offset,
            data: Bytes::copy_from_slice(data),
        },
    )
    .unwrap();
}

fn read(d: &mut SimDisk, path: &str) -> Vec<u8> {
    match exec(
        d,
        DiskOp::Read {
            path: path.into(),
            offset: 0,
            len: 1 << 20,
        },
    )
    .unwrap()
    {
        DiskReply::Data(b) => b.to_vec(),
        other => panic!("{other:?}"),
    }
}

/// A file `f` whose creation is durable.
fn durable_file(d: &mut SimDisk) {
    exec(d, DiskOp::Create { path: "f".into() }).unwrap();
    exec(d, DiskOp::SyncDir { path: "".into() }).unwrap();
}

#[test]
fn crash_loses_unsynced_write_and_keeps_synced_one() {
    let mut d = disk(false);
    durable_file(&mut d);
    write(&mut d, "f", 0, b"synced");
    exec(&mut d, DiskOp::SyncFile { path: "f".into() }).unwrap();
    write(&mut d, "f", 6, b"-unsynced");
    assert_eq!(read(&mut d, "f"), b"synced-unsynced");
    d.crash(&mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(read(&mut d, "f"), b"synced");
}

#[test]
fn new_file_without_directory_sync_is_gone_after_crash() {
    let mut d = disk(false);
    exec(&mut d, DiskOp::Create { path: "g".into() }).unwrap();
    write(&mut d, "g", 0, b"data");
    exec(&mut d, DiskOp::SyncFile { path: "g".into() }).unwrap();
    d.crash(&mut ChaCha8Rng::seed_from_u64(1));
    let err = exec(
        &mut d,
        DiskOp::Read {
            path: "g".into(),
            offset: 0,
            len: 10,
        },
    )
    .unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NotFound);
}

#[test]
fn torn_write_leaves_a_prefix_of_sectors() {
    let mut kept_counts = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut d = disk(true);
        durable_file(&mut d);
        let old = vec![b'o'; SECTOR];
        write(&mut d, "f", 0, &old);
        exec(&mut d, DiskOp::SyncFile { path: "f".into() }).unwrap();
        let new: Vec<u8> = (0..4 * SECTOR).map(|i| b'a' + (i / SECTOR) as u8).collect();
        write(&mut d, "f", SECTOR as u64, &new);
        d.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        let after = read(&mut d, "f");
        assert_eq!(&after[..SECTOR], &old[..], "synced data survives");
        let tail = &after[SECTOR..];
        assert_eq!(tail.len() % SECTOR, 0, "whole sectors only");
        assert_eq!(tail, &new[..tail.len()], "a prefix of the unsynced sectors");
        kept_counts.insert(tail.len() / SECTOR);
    }
    assert!(
        kept_counts.contains(&0) && kept_counts.iter().any(|k| *k > 0 && *k < 4),
        "{kept_counts:?}"
    );
}

#[test]
fn latent_error_fails_a_read() {
    let mut d = disk(false);
    durable_file(&mut d);
    write(&mut d, "f", 0, b"abc");
    d.faults.latent_read_errors = true;
    let err = exec(
        &mut d,
        DiskOp::Read {
            path: "f".into(),
            offset: 0,
            len: 3,
        },
    )
    .unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::Io);
    d.faults.latent_read_errors = false;
    assert_eq!(read(&mut d, "f"), b"abc");
}

#[test]
fn full_disk_fails_a_write() {
    let mut d = disk(false);
    durable_file(&mut d);
    write(&mut d, "f", 0, b"abc");
    d.fill();
    let err = exec(
        &mut d,
        DiskOp::Write {
            path: "f".into(),
            offset: 3,
            data: Bytes::from_static(b"more"),
        },
    )
    .unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NoSpace);
    d.free();
    write(&mut d, "f", 3, b"more");
}

#[test]
fn failing_sync_makes_nothing_durable() {
    let mut d = disk(false);
    durable_file(&mut d);
    write(&mut d, "f", 0, b"abc");
    d.faults.failing_syncs = true;
    assert!(exec(&mut d, DiskOp::SyncFile { path: "f".into() }).is_err());
    d.crash(&mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(read(&mut d, "f"), b"");
}

#[test]
fn bit_flip_changes_one_durable_bit() {
    let mut d = disk(false);
    durable_file(&mut d);
    write(&mut d, "f", 0, &[0u8; 64]);
    exec(&mut d, DiskOp::SyncFile { path: "f".into() }).unwrap();
    let (path, offset) = d.flip_bit(&mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    assert_eq!(path, "f");
    let after = read(&mut d, "f");
    assert_eq!(after.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    assert_ne!(after[offset as usize], 0);
}

#[test]
fn slow_disk_multiplies_service_time() {
    let mut d = disk(false);
    let op = DiskOp::Read {
        path: "f".into(),
        offset: 0,
        len: 1,
    };
    let normal = d.service_nanos(&op, &mut ChaCha8Rng::seed_from_u64(9));
    d.faults.slow_factor = 50;
    let slow = d.service_nanos(&op, &mut ChaCha8Rng::seed_from_u64(9));
    assert_eq!(slow, normal * 50);
}

/// The steady scenario, built but not run, with a record of every event.
fn steady_run(seed: u64) -> Run {
    let mut scenario = catalogue::load("steady").unwrap();
    // Clients wait longer than TCP, so the network's reset is what they see.
    scenario.workload.request_timeout_ms = 60_000;
    Run::new(&scenario, seed, &RunOptions { keep_trace: true }).unwrap()
}

fn events_of(run: &Run, proc: u32, kind: &str, from: u64, to: u64) -> usize {
    run.world
        .trace
        .records
        .as_ref()
        .unwrap()
        .iter()
        .filter(|r| r.process == proc && r.kind == kind && r.at_nanos >= from && r.at_nanos < to)
        .count()
}

const MS: u64 = 1_000_000;

#[test]
fn partition_stalls_then_resets_connections() {
    let mut run = steady_run(1);
    run.run_until(2_000 * MS);
    let broker = run.brokers[0];
    let producer = run.producers[0];
    for c in run.producers.iter().chain(&run.consumers) {
        run.world.net.links.blocked.insert((*c, broker));
        run.world.net.links.blocked.insert((broker, *c));
    }
    let reset_after = run.scenario.network.reset_after_ms * MS;
    run.run_until(2_000 * MS + reset_after - MS);
    // Stalled: nothing reaches the broker, nobody has noticed yet.
    assert_eq!(
        events_of(
            &run,
            broker,
            "received",
            2_010 * MS,
            2_000 * MS + reset_after - MS
        ),
        0
    );
    assert_eq!(
        events_of(
            &run,
            producer,
            "closed",
            2_000 * MS,
            2_000 * MS + reset_after
        ),
        0
    );
    run.run_until(2_000 * MS + reset_after + 100 * MS);
    assert!(
        events_of(&run, producer, "closed", 2_000 * MS, u64::MAX) >= 1,
        "the producer sees its connection reset"
    );
    assert!(
        events_of(&run, broker, "closed", 2_000 * MS, u64::MAX) >= 1,
        "so does the broker"
    );
}

#[test]
fn clog_delays_then_delivers() {
    let mut run = steady_run(2);
    run.run_until(2_000 * MS);
    let broker = run.brokers[0];
    let producer = run.producers[0];
    run.world.net.links.clogged.insert((producer, broker));
    run.run_until(3_000 * MS);
    let before = events_of(&run, broker, "received", 2_010 * MS, 3_000 * MS);
    run.world.net.links.clogged.clear();
    run.world.release_links();
    run.run_until(3_100 * MS);
    // The producer's requests were held for a second, then all arrived; no reset.
    let after = events_of(&run, broker, "received", 3_000 * MS, 3_100 * MS);
    assert!(after > 50, "held bytes delivered after the clog: {after}");
    assert_eq!(
        events_of(&run, producer, "closed", 2_000 * MS, 3_100 * MS),
        0
    );
    let _ = before;
}

#[test]
fn pause_freezes_timers_until_resume() {
    let mut run = steady_run(3);
    run.run_until(1_000 * MS);
    let producer = run.producers[0];
    run.world.pause(producer);
    run.run_until(3_000 * MS);
    assert_eq!(
        events_of(&run, producer, "timer", 1_000 * MS + 1, 3_000 * MS),
        0
    );
    assert_eq!(run.world.procs[producer as usize].state, ProcState::Paused);
    run.world.resume(producer);
    run.run_until(3_001 * MS);
    assert!(
        events_of(&run, producer, "timer", 3_000 * MS, 3_001 * MS) >= 1,
        "held timers fire at resume"
    );
}

#[test]
fn crash_and_restart_recover_the_broker() {
    let mut run = steady_run(4);
    run.run_until(3_000 * MS);
    let broker = run.brokers[0];
    run.world.crash(broker, true);
    assert_eq!(run.world.procs[broker as usize].state, ProcState::Down);
    run.run_until(4_000 * MS);
    run.world.restart(broker);
    run.run_until(6_000 * MS);
    let node = run.world.broker(broker).unwrap().node.as_ref().unwrap();
    assert_eq!(node.phase(), broker::node::Phase::Running);
    let (_, hw, _) = node.partition_offsets("events", 0).unwrap();
    assert!(hw > 0, "recovered data and accepted new writes");
}

#[test]
fn wipe_replaces_the_disk_with_an_empty_one() {
    let mut run = steady_run(5);
    run.run_until(2_000 * MS);
    let broker = run.brokers[0];
    assert!(!run
        .world
        .broker(broker)
        .unwrap()
        .disk
        .mem
        .files()
        .is_empty());
    run.world.crash(broker, true);
    run.world.broker_mut(broker).unwrap().disk.wipe();
    assert!(run
        .world
        .broker(broker)
        .unwrap()
        .disk
        .mem
        .files()
        .is_empty());
    run.world.restart(broker);
    run.run_until(4_000 * MS);
    let node = run.world.broker(broker).unwrap().node.as_ref().unwrap();
    assert_eq!(
        node.phase(),
        broker::node::Phase::Running,
        "a wiped broker starts empty and serves"
    );
}

#[test]
fn clock_skew_shows_in_wall_time_only() {
    let mut scenario = catalogue::load("steady").unwrap();
    scenario.clock.max_skew_ms = 60_000;
    let run = Run::new(&scenario, 9, &RunOptions::default()).unwrap();
    let broker = run.brokers[0];
    let producer = run.producers[0];
    let b = run.world.now_for(broker);
    let p = run.world.now_for(producer);
    assert_eq!(b.mono_nanos, p.mono_nanos, "one simulated timeline");
    assert_ne!(
        b.wall_millis, p.wall_millis,
        "the broker's wall clock is skewed"
    );
    assert!((b.wall_millis - p.wall_millis).abs() <= 60_000);
}
