//! One run of a scenario with a seed: build the world, strike and heal the
//! planned faults, let the workload run, then judge the histories.

use std::collections::BTreeSet;

use broker::config::{BrokerConfig, Properties};
use rand::Rng;
use serde::{Deserialize, Serialize};
use workloads::admin::{Admin, AdminConfig};
use workloads::checkers::{check, Anomaly};
use workloads::consumer::{Consumer, ConsumerConfig};
use workloads::history::{History, Op};
use workloads::producer::{Producer, ProducerConfig};

use crate::disk::SimDisk;
use crate::fault::{plan, FaultKind, PlannedFault};
use crate::net::ProcId;
use crate::scenario::Scenario;
use crate::world::{derive_rng, Actor, World};

/// Something the run does to the world at a planned time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldAction {
    Strike(PlannedFault),
    Heal(PlannedFault),
    /// The operator's periodic look at the brokers (see [`Run::operate`]).
    OperatorCheck,
}

/// How often the simulated operator looks for offline partitions.
const OPERATOR_INTERVAL_MS: u64 = 1_000;

/// What a run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub pass: bool,
    /// Why it failed (empty on a pass).
    pub reasons: Vec<String>,
    pub anomalies: Vec<Anomaly>,
    /// Anomaly kinds found, sorted, deduplicated.
    pub found: Vec<String>,
    pub expected: Vec<String>,
    pub trace_hash: String,
    pub events: u64,
    pub simulated_ms: u64,
    pub faults: Vec<PlannedFault>,
    pub sends: SendCounts,
    pub reads: usize,
    /// Broker restarts (recoveries) during the run.
    pub restarts: u32,
    /// Acknowledged records per simulated second.
    pub throughput: f64,
    /// Produce latency, invoke to acknowledgement, of ok sends (simulated ms).
    pub produce_latency_ms: reports::Percentiles,
    /// End to end, send invoked to first read, of values read (simulated ms).
    pub end_to_end_latency_ms: reports::Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendCounts {
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    pub in_flight: usize,
}

/// Options beyond scenario and seed.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep every trace record (for `replay --trace`).
    pub keep_trace: bool,
}

/// A built world with its processes, ready to run.
pub struct Run {
    pub world: World,
    pub scenario: Scenario,
    pub brokers: Vec<ProcId>,
    pub producers: Vec<ProcId>,
    pub consumers: Vec<ProcId>,
    pub faults: Vec<PlannedFault>,
    /// Clock jumps in force: (broker, jump in ms), undone at heal.
    clock_jumps: Vec<(ProcId, i64)>,
    /// Faults struck and not yet healed.
    active: Vec<PlannedFault>,
}

/// Faults of the disk itself (as opposed to the process or the network).
fn is_disk_fault(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::SlowDisk
            | FaultKind::DiskStall
            | FaultKind::LatentReadError
            | FaultKind::MisdirectedWrite
            | FaultKind::FailSync
            | FaultKind::FullDisk
    )
}

/// The broker config a scenario asks for.
pub fn broker_config(scenario: &Scenario, node_index: u32) -> Result<BrokerConfig, String> {
    let mut config = BrokerConfig {
        node_id: node_index as i32,
        advertised: format!("node-{node_index}:9092"),
        num_partitions: scenario.topic.partitions as i32,
        ..BrokerConfig::default()
    };
    let props =
        Properties::parse(&scenario.broker_properties()).map_err(|e| format!("[broker] {e}"))?;
    config
        .apply_properties(&props)
        .map_err(|e| format!("[broker] {e}"))?;
    Ok(config)
}

impl Run {
    pub fn new(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<Run, String> {
        let mut world = World::new(seed, scenario, options.keep_trace);
        let mut brokers = Vec::new();
        let mut clock_rng = derive_rng(seed, 7);
        for index in 0..scenario.brokers {
            let config = broker_config(scenario, index)?;
            let proc = world.add_broker(index, config, SimDisk::new(scenario.disk.clone()));
            let max = scenario.clock.max_skew_ms as i64;
            world.procs[proc as usize].skew_millis = clock_rng.gen_range(-max..=max);
            brokers.push(proc);
        }
        let bootstrap = "node-0:9092".to_string();
        let duration = scenario.duration_ms * 1_000_000;
        let quiet = scenario.quiet_ms * 1_000_000;
        // The admin creates the topic before anyone uses it.
        let admin = Admin::new(
            AdminConfig {
                bootstrap: bootstrap.clone(),
                topic: scenario.topic.name.clone(),
                partitions: scenario.topic.partitions as i32,
                replication_factor: 1,
                request_timeout_ms: scenario.workload.request_timeout_ms,
            },
            1 << 40,
        );
        world.add_client("admin".into(), Actor::Admin(Box::new(admin)));
        let mut producers = Vec::new();
        for i in 0..scenario.workload.producers {
            let config = ProducerConfig {
                process: i,
                bootstrap: bootstrap.clone(),
                topic: scenario.topic.name.clone(),
                rate: scenario.workload.rate,
                value_bytes: scenario.workload.value_bytes,
                acks: scenario.acks(),
                max_in_flight: scenario.workload.max_in_flight,
                request_timeout_ms: scenario.workload.request_timeout_ms,
                batch_records: scenario.workload.batch_records,
                linger_ms: scenario.workload.linger_ms,
                retries: scenario.workload.retries,
                retry_backoff_ms: scenario.workload.retry_backoff_ms,
                // Keep writing into the healed period: liveness needs writes to succeed again.
                stop_at_nanos: duration + quiet / 2,
            };
            let producer = Producer::new(config, 1 + i as u64 * 1_000_000);
            producers.push(
                world.add_client(format!("producer-{i}"), Actor::Producer(Box::new(producer))),
            );
        }
        let mut consumers = Vec::new();
        for i in 0..scenario.workload.consumers {
            let process = scenario.workload.producers + i;
            let config = ConsumerConfig {
                process,
                bootstrap: bootstrap.clone(),
                topic: scenario.topic.name.clone(),
                max_wait_ms: 500,
                request_timeout_ms: scenario.workload.request_timeout_ms,
                start_at_nanos: scenario.workload.consumer_start_ms * 1_000_000,
            };
            let consumer = Consumer::new(config, 1 + process as u64 * 1_000_000);
            consumers.push(
                world.add_client(format!("consumer-{i}"), Actor::Consumer(Box::new(consumer))),
            );
        }
        let faults = plan(scenario, &mut derive_rng(seed, 3));
        for fault in &faults {
            world.schedule_action(
                fault.start_ms * 1_000_000,
                WorldAction::Strike(fault.clone()),
            );
            world.schedule_action(fault.end_ms * 1_000_000, WorldAction::Heal(fault.clone()));
        }
        world.schedule_action(OPERATOR_INTERVAL_MS * 1_000_000, WorldAction::OperatorCheck);
        Ok(Run {
            world,
            scenario: scenario.clone(),
            brokers,
            producers,
            consumers,
            faults,
            clock_jumps: Vec::new(),
            active: Vec::new(),
        })
    }

    /// Run to the end of the quiet period and judge.
    pub fn execute(self) -> RunResult {
        self.finish().0
    }

    /// Run to the end of the quiet period; the verdict and the history it was
    /// judged on.
    pub fn finish(mut self) -> (RunResult, History) {
        let end = (self.scenario.duration_ms + self.scenario.quiet_ms) * 1_000_000;
        self.run_until(end);
        let history = self.history();
        (self.judge(&history), history)
    }

    /// Run until `until`, carrying out planned actions on the way.
    pub fn run_until(&mut self, until: u64) {
        loop {
            let actions = self.world.run_until(until);
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.apply(action);
            }
        }
    }

    fn clients(&self) -> Vec<ProcId> {
        self.producers
            .iter()
            .chain(&self.consumers)
            .copied()
            .collect()
    }

    /// The operator: a log that failed stays offline until its broker
    /// restarts, as in Kafka; once no disk fault is active on that broker,
    /// the operator restarts it (recovery repairs what it can).
    fn operate(&mut self) {
        for (index, &broker) in self.brokers.iter().enumerate() {
            let disk_faulty = self
                .active
                .iter()
                .any(|f| f.node as usize == index && is_disk_fault(f.kind));
            let offline = self
                .world
                .broker(broker)
                .and_then(|h| h.node.as_ref())
                .is_some_and(|n| n.offline_partitions() > 0);
            if offline && !disk_faulty {
                let now = self.world.now;
                self.world.trace.world(
                    now,
                    broker,
                    "operator restarts the broker (offline partitions)".into(),
                );
                self.world.crash(broker, false);
                self.world.restart(broker);
            }
        }
        let next = self.world.now + OPERATOR_INTERVAL_MS * 1_000_000;
        self.world.schedule_action(next, WorldAction::OperatorCheck);
    }

    fn apply(&mut self, action: WorldAction) {
        let (fault, strike) = match action {
            WorldAction::Strike(f) => (f, true),
            WorldAction::Heal(f) => (f, false),
            WorldAction::OperatorCheck => return self.operate(),
        };
        if strike {
            self.active.push(fault.clone());
        } else if let Some(i) = self.active.iter().position(|f| *f == fault) {
            self.active.remove(i);
        }
        let Some(&broker) = self.brokers.get(fault.node as usize) else {
            return;
        };
        let verb = if strike { "strike" } else { "heal" };
        let now = self.world.now;
        self.world
            .trace
            .world(now, broker, format!("{verb} {}", fault.kind.name()));
        let clients = self.clients();
        let w = &mut self.world;
        match (fault.kind, strike) {
            (FaultKind::Crash, true) => w.crash(broker, true),
            (FaultKind::Kill, true) => w.crash(broker, false),
            (FaultKind::Wipe, true) => {
                w.crash(broker, true);
                if let Some(h) = w.broker_mut(broker) {
                    h.disk.wipe();
                }
                w.monitor.forget_node(fault.node);
            }
            (FaultKind::Crash | FaultKind::Kill | FaultKind::Wipe, false) => w.restart(broker),
            (FaultKind::Pause, true) => w.pause(broker),
            (FaultKind::Pause, false) => w.resume(broker),
            (FaultKind::Partition, true) => {
                for c in clients {
                    w.net.links.blocked.insert((c, broker));
                    w.net.links.blocked.insert((broker, c));
                }
            }
            (FaultKind::PartitionOneWay, true) => {
                for c in clients {
                    w.net.links.blocked.insert((broker, c));
                }
            }
            (FaultKind::Clog, true) => {
                for c in clients {
                    w.net.links.clogged.insert((c, broker));
                    w.net.links.clogged.insert((broker, c));
                }
            }
            (FaultKind::SwizzleClog, true) => {
                // Clog a random subset now; the heal unclogs them one by one
                // in a shuffled order.
                let mut rng = derive_rng(w.seed ^ now, 5);
                for c in clients {
                    if rng.gen_bool(0.5) {
                        w.net.links.clogged.insert((c, broker));
                        w.net.links.clogged.insert((broker, c));
                    }
                }
            }
            (FaultKind::SwizzleClog, false) => {
                let mut rng = derive_rng(w.seed ^ now, 6);
                let mut clogged: Vec<(ProcId, ProcId)> =
                    w.net.links.clogged.iter().copied().collect();
                // Fisher-Yates with the run's generator: a deterministic shuffle.
                for i in (1..clogged.len()).rev() {
                    clogged.swap(i, rng.gen_range(0..=i));
                }
                for pair in clogged {
                    w.net.links.clogged.remove(&pair);
                    w.release_links();
                }
            }
            (FaultKind::Partition | FaultKind::PartitionOneWay | FaultKind::Clog, false) => {
                w.net
                    .links
                    .blocked
                    .retain(|(a, b)| *a != broker && *b != broker);
                w.net
                    .links
                    .clogged
                    .retain(|(a, b)| *a != broker && *b != broker);
                w.release_links();
            }
            (FaultKind::Reset, true) => w.reset_all(broker),
            (FaultKind::Reset, false) => {}
            (FaultKind::SlowDisk, true) => {
                let factor = w.disk_rng().gen_range(10..=100);
                if let Some(h) = w.broker_mut(broker) {
                    h.disk.faults.slow_factor = factor;
                }
            }
            (FaultKind::DiskStall, true) => w.stall_disk(broker, fault.end_ms * 1_000_000),
            (FaultKind::LatentReadError, true) => {
                self.disk_fault(broker, |d| d.faults.latent_read_errors = true)
            }
            (FaultKind::MisdirectedWrite, true) => {
                self.disk_fault(broker, |d| d.faults.misdirected_writes = true)
            }
            (FaultKind::FailSync, true) => {
                self.disk_fault(broker, |d| d.faults.failing_syncs = true)
            }
            (FaultKind::FullDisk, true) => self.disk_fault(broker, |d| d.fill()),
            (FaultKind::BitFlip, true) => {
                let w = &mut self.world;
                let mut rng = derive_rng(w.seed ^ now, 4);
                if let Some(h) = w.broker_mut(broker) {
                    h.disk.flip_bit(&mut rng);
                }
            }
            (
                FaultKind::SlowDisk
                | FaultKind::DiskStall
                | FaultKind::LatentReadError
                | FaultKind::MisdirectedWrite
                | FaultKind::FailSync
                | FaultKind::FullDisk
                | FaultKind::BitFlip,
                false,
            ) => {
                self.disk_fault(broker, |d| {
                    d.faults.slow_factor = 1;
                    d.faults.latent_read_errors = false;
                    d.faults.misdirected_writes = false;
                    d.faults.failing_syncs = false;
                    d.free();
                });
            }
            (FaultKind::ClockJump, true) => {
                let jump = derive_rng(w.seed ^ now, 8).gen_range(-3_600_000i64..=3_600_000);
                w.procs[broker as usize].skew_millis += jump;
                self.clock_jumps.push((broker, jump));
            }
            (FaultKind::ClockJump, false) => {
                if let Some(i) = self.clock_jumps.iter().position(|(b, _)| *b == broker) {
                    let (_, jump) = self.clock_jumps.remove(i);
                    w.procs[broker as usize].skew_millis -= jump;
                }
            }
        }
    }

    fn disk_fault(&mut self, broker: ProcId, f: impl FnOnce(&mut SimDisk)) {
        if let Some(h) = self.world.broker_mut(broker) {
            f(&mut h.disk);
        }
    }

    /// Readable lines describing where every process stands (for replay).
    pub fn describe_state(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, p) in self.world.procs.iter().enumerate() {
            match &p.actor {
                Actor::Broker(host) => {
                    let mut line = format!("p{i} {} {:?}", p.name, p.state);
                    if let Some(node) = &host.node {
                        line.push_str(&format!(
                            " phase={:?} offline={}",
                            node.phase(),
                            node.offline_partitions()
                        ));
                        for topic in node.topic_names() {
                            for partition in 0.. {
                                let Some((start, hw, leo)) =
                                    node.partition_offsets(&topic, partition)
                                else {
                                    break;
                                };
                                line.push_str(&format!(
                                    " {topic}-{partition}:[{start},{hw},{leo}]"
                                ));
                            }
                        }
                    }
                    lines.push(line);
                }
                Actor::Consumer(c) => {
                    let progress: Vec<String> = c
                        .progress()
                        .iter()
                        .map(|(p, (pos, hw))| format!("{p}:pos={pos},hw={hw}"))
                        .collect();
                    lines.push(format!(
                        "p{i} {} {:?} {}",
                        p.name,
                        p.state,
                        progress.join(" ")
                    ));
                }
                Actor::Producer(_) => lines.push(format!("p{i} {} {:?}", p.name, p.state)),
                Actor::Admin(a) => lines.push(format!(
                    "p{i} {} {:?} topic created: {} (last error {:?})",
                    p.name,
                    p.state,
                    a.done(),
                    a.last_error()
                )),
            }
        }
        lines
    }

    /// The merged history of every client.
    pub fn history(&self) -> History {
        History::merge(self.world.procs.iter().filter_map(|p| match &p.actor {
            Actor::Producer(x) => Some(x.history().clone()),
            Actor::Consumer(x) => Some(x.history().clone()),
            Actor::Broker(_) | Actor::Admin(_) => None,
        }))
    }

    /// An `unseen` record that the broker's log no longer reaches was not
    /// waiting to be read: recovery cut it away. That is a lost write.
    fn reclassify_truncated(&self, anomalies: &mut [Anomaly]) {
        let mut log_end: std::collections::BTreeMap<i32, i64> = Default::default();
        for &b in &self.brokers {
            if let Some(node) = self.world.broker(b).and_then(|h| h.node.as_ref()) {
                for (topic, partition, _, _, leo) in node.partition_summary() {
                    if topic == self.scenario.topic.name {
                        log_end.insert(partition, leo);
                    }
                }
            }
        }
        for a in anomalies.iter_mut().filter(|a| a.kind == "unseen") {
            let (Some(partition), Some(&first)) = (a.partition, a.offsets.first()) else {
                continue;
            };
            if let Some(&end) = log_end.get(&partition) {
                if end <= first {
                    a.kind = "lost-write".into();
                    a.explanation = format!(
                        "{} (the log now ends at offset {end}: recovery cut them away)",
                        a.explanation
                    );
                }
            }
        }
    }

    fn judge(&self, history: &History) -> RunResult {
        let heal_nanos = self.scenario.duration_ms * 1_000_000;
        let mut reasons = Vec::new();
        let mut anomalies = check(history);
        self.reclassify_truncated(&mut anomalies);
        // Broker-side invariants join the client-side anomalies.
        for v in &self.world.monitor.violations {
            anomalies.push(Anomaly {
                kind: v.kind.clone(),
                explanation: format!("at {} ms: {}", v.at_nanos / 1_000_000, v.explanation),
                partition: None,
                offsets: vec![],
                values: vec![],
            });
        }
        let acked_after_heal = history
            .events
            .iter()
            .any(|e| e.is_ok() && e.invoke_nanos >= heal_nanos && matches!(e.op, Op::Send { .. }));
        if !acked_after_heal && !self.producers.is_empty() && self.scenario.acks() != 0 {
            reasons.push("liveness: no write was acknowledged after the faults healed".into());
        }
        let found: BTreeSet<String> = anomalies.iter().map(|a| a.kind.clone()).collect();
        let expected: BTreeSet<String> = self.scenario.expect.iter().cloned().collect();
        let allowed: BTreeSet<String> = self.scenario.allow.iter().cloned().collect();
        for kind in found
            .difference(&expected)
            .filter(|k| !allowed.contains(*k))
        {
            let mine: Vec<&Anomaly> = anomalies.iter().filter(|a| &a.kind == kind).collect();
            // Acknowledged records nobody read by the end: the system did not
            // recover in the quiet period (a liveness failure, not a loss).
            let label = if kind == "unseen" {
                "liveness (unseen)".to_string()
            } else {
                format!("unexpected {kind}")
            };
            reasons.push(format!(
                "{label}: {} found; first: {}",
                mine.len(),
                mine[0].explanation
            ));
        }
        for kind in expected.difference(&found) {
            reasons.push(format!("expected {kind} but it was not found"));
        }
        let (ok, fail, unknown, in_flight) = history.send_counts();
        let latencies = crate::report::latency_histograms(history);
        let percentiles = |kind| {
            latencies
                .get(&kind)
                .map(|h| h.percentiles())
                .unwrap_or_default()
        };
        let restarts = self
            .brokers
            .iter()
            .filter_map(|b| self.world.broker(*b))
            .map(|h| h.restarts.saturating_sub(1))
            .sum();
        RunResult {
            scenario: self.scenario.name.clone(),
            seed: self.world.seed,
            pass: reasons.is_empty(),
            reasons,
            anomalies,
            found: found.into_iter().collect(),
            expected: expected.into_iter().collect(),
            trace_hash: format!("{:016x}", self.world.trace.hash()),
            events: self.world.trace.events,
            simulated_ms: self.world.now / 1_000_000,
            faults: self.faults.clone(),
            sends: SendCounts {
                ok,
                fail,
                unknown,
                in_flight,
            },
            reads: history.reads().count(),
            restarts,
            throughput: ok as f64 / ((self.world.now as f64 / 1e9).max(1e-9)),
            produce_latency_ms: percentiles(reports::OpKind::ProduceAck),
            end_to_end_latency_ms: percentiles(reports::OpKind::EndToEnd),
        }
    }
}

/// Run `scenario` with `seed` to the end.
pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<RunResult, String> {
    Ok(Run::new(scenario, seed, options)?.execute())
}
