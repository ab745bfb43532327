//! From a run's history and fault plan to the `reports` crate's plain data:
//! latency histograms per operation kind, throughput and p99 over time, fault
//! windows and per-node state timelines.

use std::collections::{BTreeMap, BTreeSet};

use reports::{
    AnomalyRow, FaultWindow, LatencyHistogram, NodeState, NodeTimeline, OpKind, RunReport,
    RunSummary, TimeBucket,
};
use workloads::history::{History, Op};

use crate::catalogue::seed_hex;
use crate::fault::{FaultKind, PlannedFault};
use crate::run::RunResult;
use crate::scenario::Scenario;

/// Width of the over-time buckets.
const BUCKET_MS: u64 = 1_000;

/// Latency histograms (nanoseconds) of one history: produce acknowledgement
/// (invoke to ok), end to end (send invoked to the value first read) and
/// fetch (poll invoked to its answer).
pub fn latency_histograms(history: &History) -> BTreeMap<OpKind, LatencyHistogram> {
    let mut produce = LatencyHistogram::new();
    let mut end_to_end = LatencyHistogram::new();
    let mut fetch = LatencyHistogram::new();
    let mut invoked: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &history.events {
        if let Op::Send { writes } = &e.op {
            for w in writes {
                invoked.insert(w.value.as_str(), e.invoke_nanos);
            }
            if let (true, Some(done)) = (e.is_ok(), e.complete_nanos) {
                produce.record_n(done - e.invoke_nanos, writes.len() as u64);
            }
        }
    }
    let mut seen = BTreeSet::new();
    for e in &history.events {
        if let (Op::Poll { reads }, Some(done)) = (&e.op, e.complete_nanos) {
            fetch.record(done.saturating_sub(e.invoke_nanos));
            for r in reads.values().flatten() {
                if let Some(&sent) = invoked.get(r.value.as_str()) {
                    if seen.insert(r.value.as_str()) {
                        end_to_end.record(done.saturating_sub(sent));
                    }
                }
            }
        }
    }
    BTreeMap::from([
        (OpKind::ProduceAck, produce),
        (OpKind::EndToEnd, end_to_end),
        (OpKind::Fetch, fetch),
    ])
}

/// Acknowledged records and produce p99 per second of simulated time.
fn timeline(history: &History, simulated_ms: u64) -> Vec<TimeBucket> {
    let buckets = (simulated_ms / BUCKET_MS + 1) as usize;
    let mut acked = vec![0u64; buckets];
    let mut latency: Vec<LatencyHistogram> =
        (0..buckets).map(|_| LatencyHistogram::new()).collect();
    for e in &history.events {
        if let (Op::Send { writes }, true, Some(done)) = (&e.op, e.is_ok(), e.complete_nanos) {
            let i = ((done / 1_000_000 / BUCKET_MS) as usize).min(buckets - 1);
            acked[i] += writes.len() as u64;
            latency[i].record_n(done - e.invoke_nanos, writes.len() as u64);
        }
    }
    (0..buckets)
        .map(|i| TimeBucket {
            start_ms: i as u64 * BUCKET_MS,
            acked: acked[i],
            p99_ms: if latency[i].is_empty() {
                0.0
            } else {
                latency[i].quantile_ms(0.99)
            },
        })
        .collect()
}

/// What a fault does to its node, as drawn on the node timeline.
fn state_of(kind: FaultKind) -> Option<NodeState> {
    match kind {
        FaultKind::Crash | FaultKind::Kill | FaultKind::Wipe => Some(NodeState::Down),
        FaultKind::Pause => Some(NodeState::Paused),
        FaultKind::Partition
        | FaultKind::PartitionOneWay
        | FaultKind::Clog
        | FaultKind::SwizzleClog
        | FaultKind::Isolate
        | FaultKind::Split
        | FaultKind::Bridge
        | FaultKind::OneWayToLeader
        | FaultKind::ClogNode => Some(NodeState::Partitioned),
        _ => None,
    }
}

/// The timeline label of every node, by id: `broker-0` for the legacy
/// broker, `node-N (roles)` in a cluster.
pub fn node_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .nodes()
        .iter()
        .map(|n| match n.roles {
            None => format!("broker-{}", n.id),
            Some(r) => format!("node-{} ({})", n.id, r.property()),
        })
        .collect()
}

/// Up / down / paused / partitioned intervals of each node; `struck[i]`
/// are the nodes fault `i` struck.
fn node_timelines(
    names: &[String],
    faults: &[PlannedFault],
    struck: &[Vec<u32>],
    simulated_ms: u64,
) -> Vec<NodeTimeline> {
    (0..names.len() as u32)
        .map(|node| {
            let mut intervals = Vec::new();
            let mut at = 0;
            let mut mine: Vec<&PlannedFault> = faults
                .iter()
                .zip(struck)
                .filter(|(f, s)| s.contains(&node) && state_of(f.kind).is_some())
                .map(|(f, _)| f)
                .collect();
            mine.sort_by_key(|f| f.start_ms);
            for f in mine {
                let start = f.start_ms.max(at);
                if start >= f.end_ms {
                    continue;
                }
                if start > at {
                    intervals.push((at, start, NodeState::Up));
                }
                intervals.push((start, f.end_ms, state_of(f.kind).unwrap_or(NodeState::Up)));
                at = f.end_ms;
            }
            if at < simulated_ms {
                intervals.push((at, simulated_ms, NodeState::Up));
            }
            NodeTimeline {
                name: names[node as usize].clone(),
                intervals,
            }
        })
        .collect()
}

/// The full report of one run.
pub fn run_report(
    result: &RunResult,
    history: &History,
    node_names: &[String],
    replay_command: String,
) -> RunReport {
    RunReport {
        scenario: result.scenario.clone(),
        seed: result.seed,
        seed_hex: seed_hex(result.seed),
        pass: result.pass,
        reasons: result.reasons.clone(),
        anomalies: result
            .anomalies
            .iter()
            .map(|a| AnomalyRow {
                kind: a.kind.clone(),
                explanation: a.explanation.clone(),
            })
            .collect(),
        replay_command,
        trace_hash: result.trace_hash.clone(),
        simulated_ms: result.simulated_ms,
        latencies: latency_histograms(history),
        timeline: timeline(history, result.simulated_ms),
        faults: result
            .faults
            .iter()
            .zip(&result.struck)
            .flat_map(|(f, nodes)| {
                nodes.iter().map(|&node| FaultWindow {
                    start_ms: f.start_ms,
                    end_ms: f.end_ms,
                    label: f.kind.name().into(),
                    node,
                })
            })
            .collect(),
        nodes: node_timelines(
            node_names,
            &result.faults,
            &result.struck,
            result.simulated_ms,
        ),
    }
}

/// The sweep table's row for one run.
pub fn run_summary(
    result: &RunResult,
    replay_command: String,
    run_page: Option<String>,
) -> RunSummary {
    RunSummary {
        scenario: result.scenario.clone(),
        seed_hex: seed_hex(result.seed),
        pass: result.pass,
        anomaly_kinds: result.found.clone(),
        first_reason: result.reasons.first().cloned().unwrap_or_default(),
        replay_command,
        run_page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_timeline_covers_the_run_with_fault_states() {
        let faults = vec![
            PlannedFault {
                kind: FaultKind::Crash,
                target: crate::fault::Target::Node(0),
                start_ms: 1_000,
                end_ms: 2_000,
            },
            PlannedFault {
                kind: FaultKind::SlowDisk,
                target: crate::fault::Target::Node(0),
                start_ms: 3_000,
                end_ms: 4_000,
            },
            PlannedFault {
                kind: FaultKind::Pause,
                target: crate::fault::Target::Node(0),
                start_ms: 5_000,
                end_ms: 6_000,
            },
        ];
        let struck = vec![vec![0]; faults.len()];
        let t = node_timelines(&["broker-0".to_string()], &faults, &struck, 10_000);
        assert_eq!(
            t[0].intervals,
            vec![
                (0, 1_000, NodeState::Up),
                (1_000, 2_000, NodeState::Down),
                (2_000, 5_000, NodeState::Up),
                (5_000, 6_000, NodeState::Paused),
                (6_000, 10_000, NodeState::Up),
            ]
        );
    }

    #[test]
    fn cluster_nodes_are_named_with_their_roles_and_multi_node_faults_show_on_each() {
        let scenario = crate::scenario::Scenario::from_toml(
            "name = \"t\"\nbrokers = 2\n[cluster]\ncontrollers = 1\ncombined = false\n",
        )
        .unwrap();
        let names = node_names(&scenario);
        assert_eq!(
            names,
            vec![
                "node-0 (broker)".to_string(),
                "node-1 (broker)".to_string(),
                "node-2 (controller)".to_string()
            ]
        );
        let faults = vec![PlannedFault {
            kind: FaultKind::Crash,
            target: crate::fault::Target::Majority,
            start_ms: 1_000,
            end_ms: 2_000,
        }];
        let t = node_timelines(&names, &faults, &[vec![0, 2]], 3_000);
        for (node, hit) in [(0, true), (1, false), (2, true)] {
            assert_eq!(
                t[node].intervals.contains(&(1_000, 2_000, NodeState::Down)),
                hit,
                "{node}"
            );
        }
    }
}
