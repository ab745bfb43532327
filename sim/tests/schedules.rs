//! Property tests over fault schedules: proptest generates explicit
//! schedules, the broker must survive every one, and a failing schedule is
//! shrunk to a minimal one and printed as a scenario file that
//! `stormlog replay --scenario FILE --seed 0` runs again.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use sim::fault::FaultKind;
use sim::run::{run, RunOptions};
use sim::scenario::{Scenario, ScheduledFault};

/// A short single-broker base scenario with no generated faults.
fn base(durability: &str) -> Scenario {
    let text = format!(
        r#"
name = "schedule"
duration_ms = 8000
quiet_ms = 5000
[broker]
"stormlog.durability" = "{durability}"
"log.flush.interval.ms" = 60000
[workload]
producers = 1
rate = 100.0
consumer_start_ms = 8000
"#
    );
    Scenario::from_toml(&text).unwrap()
}

const RECOVERABLE: &[FaultKind] = &[
    FaultKind::Crash,
    FaultKind::Kill,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::Clog,
    FaultKind::Reset,
    FaultKind::SlowDisk,
    FaultKind::DiskStall,
    FaultKind::FailSync,
    FaultKind::FullDisk,
];

fn fault() -> impl Strategy<Value = ScheduledFault> {
    (prop::sample::select(RECOVERABLE), 0u64..7_000, 50u64..2_000).prop_map(
        |(fault, at_ms, duration)| ScheduledFault {
            at_ms,
            fault,
            node: 0,
            target: None,
            duration_ms: Some(duration),
        },
    )
}

fn schedule() -> impl Strategy<Value = Vec<ScheduledFault>> {
    prop::collection::vec(fault(), 0..5)
}

/// Run `scenario` with `schedule`; Err with the scenario file when it fails.
fn survives(mut scenario: Scenario, schedule: Vec<ScheduledFault>) -> Result<(), TestCaseError> {
    scenario.schedule = schedule;
    let result = run(&scenario, 0, &RunOptions::default()).map_err(TestCaseError::fail)?;
    if result.pass {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{}\n--- save as a .toml file and replay with: stormlog replay --scenario FILE --seed 0 ---\n{}",
            result.reasons.join("; "),
            scenario.to_toml()
        )))
    }
}

proptest! {
    // A fixed seed: the same cases on every run (PROPTEST_RNG_SEED=N for
    // others); random draws made CI pass or fail by luck.
    #![proptest_config(Config {
        cases: 6,
        max_shrink_iters: 32,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(proptest::test_runner::RngSeed::Fixed(0x5eed), proptest::test_runner::RngSeed::Fixed),
        ..Config::default()
    })]

    /// Synced durability survives any schedule of recoverable faults.
    #[test]
    fn synced_broker_survives_generated_schedules(schedule in schedule()) {
        survives(base("sync"), schedule)?;
    }
}

/// Found by `synced_broker_survives_generated_schedules` in CI: the producer
/// reconnected just as a client partition struck; its SYN was lost and the
/// simulated TCP gave up only after 10 s, long after the heal, so no write
/// was acknowledged in the quiet period. TCP retransmits a lost SYN (1 s,
/// 2 s, 4 s, ...) and connects once the path is back; so does the simulator.
#[test]
fn a_connect_lost_to_a_partition_goes_through_after_the_heal() {
    let schedule = vec![
        ScheduledFault {
            at_ms: 2528,
            fault: FaultKind::Crash,
            node: 0,
            target: None,
            duration_ms: Some(1942),
        },
        ScheduledFault {
            at_ms: 4571,
            fault: FaultKind::Partition,
            node: 0,
            target: None,
            duration_ms: Some(1616),
        },
    ];
    survives(base("sync"), schedule).unwrap();
}

/// The shrinking path, shown on a configuration that is unsafe on purpose:
/// with page-cache durability some generated schedule loses acknowledged
/// data; proptest must find one and shrink it to a single power loss.
#[test]
fn unsafe_configuration_shrinks_to_one_power_loss() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        max_shrink_iters: 256,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let outcome = runner.run(&schedule(), |schedule| {
        survives(base("page-cache"), schedule)
    });
    match outcome {
        Err(TestError::Fail(reason, minimal)) => {
            assert_eq!(minimal.len(), 1, "shrunk to one fault: {minimal:?}");
            assert_eq!(minimal[0].fault, FaultKind::Crash, "{minimal:?}");
            let text = reason.to_string();
            assert!(
                text.contains("[[schedule]]") && text.contains("fault = \"crash\""),
                "{text}"
            );
            // The printed scenario is a valid scenario file.
            let toml = text.split("---\n").last().unwrap();
            let replayed = Scenario::from_toml(toml).expect("the printed scenario parses");
            assert_eq!(replayed.schedule, minimal);
        }
        other => panic!("expected a shrunk failure, got {other:?}"),
    }
}
