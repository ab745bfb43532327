//! `stormlog bench --groups`: rebalance time of a consumer group in the
//! simulator, eager (`range`) against cooperative (`cooperative-sticky`).
//!
//! One broker, a topic of 20 partitions written at a steady rate, a group of
//! ten members that join at once. At `LEAVE_MS` member 0 closes (commit,
//! LeaveGroup); at `JOIN_MS` an eleventh member joins. A rebalance's time is
//! from the action until the last member got its assignment of the
//! generation the group settles in (for the cooperative protocol that
//! includes the second rebalance that hands out the revoked partitions),
//! in simulated ms. Each run is one seed.

use serde::{Deserialize, Serialize};
use workloads::history::{History, Op};

use crate::run::{Run, RunOptions};
use crate::scenario::{GroupSpec, MemberAction, MemberActionKind, Scenario};

/// When member 0 leaves and member 10 joins (simulated ms).
pub const LEAVE_MS: u64 = 12_000;
pub const JOIN_MS: u64 = 22_000;
const END_MS: u64 = 32_000;

/// The bench's scenario for `assignor`.
pub fn scenario(assignor: &str) -> Scenario {
    let text = format!(
        r#"
name = "bench-groups-{assignor}"
duration_ms = {END_MS}
quiet_ms = 0
[broker]
"group.initial.rebalance.delay.ms" = 500
[topic]
partitions = 20
[workload]
producers = 2
consumers = 0
rate = 50.0
"#
    );
    let mut s = Scenario::from_toml(&text).expect("a well-formed bench scenario");
    s.group = Some(GroupSpec {
        members: 11,
        assignor: assignor.to_string(),
        session_timeout_ms: 10_000,
        heartbeat_interval_ms: 1_000,
        actions: vec![
            MemberAction {
                member: 0,
                at_ms: LEAVE_MS,
                action: MemberActionKind::Leave,
                duration_ms: None,
            },
            MemberAction {
                member: 10,
                at_ms: JOIN_MS,
                action: MemberActionKind::Join,
                duration_ms: None,
            },
        ],
        ..toml::from_str::<GroupSpec>("").expect("defaults")
    });
    s
}

/// Simulated ms from `at` to the last assignment in `[at, until)`; `None` if
/// none came.
pub fn settle_ms(history: &History, at_ms: u64, until_ms: u64) -> Option<u64> {
    history
        .events
        .iter()
        .filter(|e| e.is_ok() && matches!(e.op, Op::Assignment { .. }))
        .map(|e| e.complete_nanos.unwrap_or(e.invoke_nanos) / 1_000_000)
        .filter(|t| (at_ms..until_ms).contains(t))
        .max()
        .map(|t| t - at_ms)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupBenchResult {
    pub assignor: String,
    pub runs: u64,
    /// Rebalance times after the leave and after the join, simulated ms.
    pub leave_ms: Vec<u64>,
    pub join_ms: Vec<u64>,
    /// Runs whose group did not settle after an action.
    pub unsettled: u64,
}

/// Run the bench for one assignor over seeds `0..runs`.
pub fn run_group_bench(assignor: &str, runs: u64) -> GroupBenchResult {
    let scenario = scenario(assignor);
    let mut result = GroupBenchResult {
        assignor: assignor.to_string(),
        runs,
        ..Default::default()
    };
    for seed in 0..runs {
        let Ok(run) = Run::new(&scenario, seed, &RunOptions::default()) else {
            continue;
        };
        let (_, history) = run.finish();
        match settle_ms(&history, LEAVE_MS, JOIN_MS) {
            Some(ms) => result.leave_ms.push(ms),
            None => result.unsettled += 1,
        }
        match settle_ms(&history, JOIN_MS, END_MS) {
            Some(ms) => result.join_ms.push(ms),
            None => result.unsettled += 1,
        }
    }
    result
}

/// p50 and p99 (nearest rank) of `values`.
pub fn p50_p99(values: &[u64]) -> Option<(u64, u64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((rank(0.50), rank(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(p50_p99(&[]), None);
        assert_eq!(p50_p99(&[5]), Some((5, 5)));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(p50_p99(&v), Some((50, 99)));
    }

    #[test]
    fn the_bench_scenarios_build() {
        for a in ["range", "cooperative-sticky"] {
            let s = scenario(a);
            assert_eq!(s.group.as_ref().unwrap().members, 11);
            Run::new(&s, 0, &RunOptions::default()).unwrap();
        }
    }
}
