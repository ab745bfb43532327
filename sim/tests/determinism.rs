//! Same scenario and seed, same run: the trace hash is asserted equal over
//! repeated runs, for many seeds across the catalogue.

use sim::catalogue;
use sim::run::{run, RunOptions};
use sim::scenario::Scenario;

/// The catalogue scenario, shortened so debug-build tests stay quick; the
/// faults and workload are the scenario's own.
fn short(name: &str) -> Scenario {
    let mut s = catalogue::load(name).unwrap();
    s.duration_ms = s.duration_ms.min(8_000);
    s.quiet_ms = s.quiet_ms.min(4_000);
    s.nemesis.interval_ms = [500, 2_000];
    for f in &mut s.schedule {
        f.at_ms = f.at_ms.min(4_000);
    }
    s
}

#[test]
fn same_seed_same_trace_hash_across_the_catalogue() {
    let mut checked = 0;
    for (name, _) in catalogue::CATALOGUE {
        let scenario = short(name);
        for seed in 0..5u64 {
            let a = run(&scenario, seed, &RunOptions::default()).unwrap();
            let b = run(&scenario, seed, &RunOptions::default()).unwrap();
            assert_eq!(a.trace_hash, b.trace_hash, "{name} seed {seed:#x}");
            assert_eq!(a.events, b.events);
            assert_eq!(a.sends.ok, b.sends.ok);
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} seeds checked");
}

#[test]
fn different_seeds_differ() {
    let scenario = short("crash-restart");
    let a = run(&scenario, 1, &RunOptions::default()).unwrap();
    let b = run(&scenario, 2, &RunOptions::default()).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash);
}

/// Recording the full trace must not change the run.
#[test]
fn keeping_the_trace_does_not_change_the_hash() {
    let scenario = short("crash-restart");
    let plain = run(&scenario, 7, &RunOptions::default()).unwrap();
    let traced = run(&scenario, 7, &RunOptions { keep_trace: true }).unwrap();
    assert_eq!(plain.trace_hash, traced.trace_hash);
}

/// `STORMLOG_HASH_CHECK=path` writes `scenario seed hash` lines, so CI can
/// compare a debug build's hashes with a release build's.
#[test]
fn hashes_for_cross_build_comparison() {
    let Ok(path) = std::env::var("STORMLOG_HASH_CHECK") else {
        return;
    };
    let mut lines = String::new();
    for name in ["steady", "crash-restart"] {
        let scenario = short(name);
        for seed in 0..3u64 {
            let r = run(&scenario, seed, &RunOptions::default()).unwrap();
            lines.push_str(&format!("{name} {seed:#x} {}\n", r.trace_hash));
        }
    }
    std::fs::write(path, lines).unwrap();
}
