//! One run of a scenario with a seed: build the world, strike and heal the
//! planned faults, let the workload run, then judge the histories.

use std::collections::{BTreeMap, BTreeSet};

use broker::config::{BrokerConfig, Properties};
use rand::Rng;
use serde::{Deserialize, Serialize};
use workloads::admin::{Admin, AdminConfig};
use workloads::checkers::{check, Anomaly};
use workloads::consumer::{Consumer, ConsumerConfig};
use workloads::group::{GroupConsumer, GroupConsumerConfig};
use workloads::history::{History, Op};
use workloads::producer::{Producer, ProducerConfig};

use crate::disk::SimDisk;
use crate::fault::{plan, FaultKind, PlannedFault, Target};
use crate::net::ProcId;
use crate::scenario::Scenario;
use crate::world::{derive_rng, Actor, ProcState, World};

/// Something the run does to the world at a planned time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldAction {
    /// Strike `faults[i]` (its target is resolved now).
    Strike(usize),
    /// Heal `faults[i]`: undo it on the nodes it struck.
    Heal(usize),
    /// The operator's periodic look at the brokers (see [`Run::operate`]).
    OperatorCheck,
    /// Group member action `i` of the scenario's `[[group.actions]]`:
    /// strike (`true`) or its end (`false`: resume, restart).
    Member(usize, bool),
}

/// How often the simulated operator looks for offline partitions.
const OPERATOR_INTERVAL_MS: u64 = 1_000;

/// Liveness of a cluster: after the last fault that could affect the
/// metadata quorum heals, a leader followed by a majority of voters must
/// exist within this much simulated time.
pub const ELECTION_BOUND_MS: u64 = 10_000;

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
    /// The nodes each fault struck (its target resolved at strike time), by
    /// fault index; empty for a fault that never struck.
    #[serde(default)]
    pub struck: Vec<Vec<u32>>,
    /// Findings that are not failures: e.g. acknowledged writes truncated
    /// by a replica in a configuration that does not promise to keep them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Some node showed a metadata quorum view during the run.
    #[serde(default)]
    pub quorum_observed: bool,
    /// Clusters: simulated ms from the heal of the last fault that could
    /// affect the quorum until a leader was followed by a majority of voters
    /// (`None`: never, or not a cluster).
    #[serde(default)]
    pub election_ms: Option<u64>,
    /// For every fault that took the active controller out (a kill, power
    /// loss, pause or isolation targeted at it): simulated ms from the
    /// strike until another node leads the quorum.
    #[serde(default)]
    pub failover_ms: Vec<u64>,
    /// For every fault that took a partition leader out (a kill, power loss,
    /// pause, isolation or split targeted at `leader:P`): simulated ms from
    /// the strike until a write to that partition was next acknowledged.
    #[serde(default)]
    pub partition_failover_ms: Vec<u64>,
    /// The admin workload's CreateTopics by outcome.
    #[serde(default)]
    pub creates: SendCounts,
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
    /// Every node's process, indexed by node id (broker and controller
    /// nodes alike; see `scenario::ClusterSpec` for the numbering).
    pub brokers: Vec<ProcId>,
    pub producers: Vec<ProcId>,
    pub consumers: Vec<ProcId>,
    /// The consumer group's members, by member index.
    pub members: Vec<ProcId>,
    /// Restarts of each member so far (a fresh client each time).
    member_restarts: Vec<u32>,
    /// Faults (by index) that strike the group's coordinator.
    coordinator_faults: BTreeSet<usize>,
    pub admin: ProcId,
    pub faults: Vec<PlannedFault>,
    /// The nodes each fault struck, by fault index (resolved at strike time).
    pub struck: Vec<Vec<u32>>,
    /// Clock jumps in force: (broker, jump in ms), undone at heal.
    clock_jumps: Vec<(ProcId, i64)>,
    /// Faults struck and not yet healed, by index.
    active: Vec<usize>,
    /// Links cut or clogged by the cluster network faults: the pairs each
    /// fault holds, and how many faults hold each pair.
    fault_links: BTreeMap<usize, Vec<Link>>,
    link_holds: BTreeMap<Link, u32>,
    /// Draws for resolving role targets (which minority, which fallback).
    target_rng: rand_chacha::ChaCha8Rng,
    /// When the last fault that could affect the quorum healed (ns).
    quorum_heal_nanos: u64,
}

/// A directed link held by a fault: (from, to, clogged rather than blocked).
type Link = (ProcId, ProcId, bool);

/// Faults of the links between clients and a broker (they leave the quorum alone).
fn is_client_link_fault(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::Partition
            | FaultKind::PartitionOneWay
            | FaultKind::Clog
            | FaultKind::SwizzleClog
            | FaultKind::Reset
    )
}

fn list(nodes: &[u32]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    format!("{{{}}}", names.join(","))
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

/// Whether this build's broker accepts property `key` (with value 1).
fn broker_knows(key: &str) -> bool {
    Properties::parse(&format!("{key}=1"))
        .is_ok_and(|p| BrokerConfig::default().apply_properties(&p).is_ok())
}

/// Whether this build's broker coordinates consumer groups (it takes the
/// coordinator's properties; before groups, `offsets.topic.num.partitions`
/// and `group.min.session.timeout.ms` were refused); group scenarios need it.
pub fn broker_has_groups() -> bool {
    broker_knows("offsets.topic.num.partitions") && broker_knows("group.min.session.timeout.ms")
}

/// The config of node `node_index` a scenario asks for: the cluster's
/// generated properties (roles, voters, listeners, replication) under the
/// scenario's `[broker]` table; the legacy single broker gets the table alone.
pub fn broker_config(scenario: &Scenario, node_index: u32) -> Result<BrokerConfig, String> {
    let mut config = BrokerConfig {
        node_id: node_index as i32,
        advertised: format!("node-{node_index}:9092"),
        num_partitions: scenario.topic.partitions as i32,
        ..BrokerConfig::default()
    };
    let text = scenario.node_properties(node_index, broker_knows);
    let props = Properties::parse(&text).map_err(|e| format!("[broker] {e}"))?;
    config
        .apply_properties(&props)
        .map_err(|e| format!("[broker] {e}"))?;
    Ok(config)
}

impl Run {
    pub fn new(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<Run, String> {
        let mut world = World::new(seed, scenario, options.keep_trace);
        world.monitor.set_voters(scenario.voters());
        world
            .monitor
            .set_replicated(scenario.replication_factor() > 1);
        world.monitor.watch_groups(scenario.group.is_some());
        let mut brokers = Vec::new();
        let mut clock_rng = derive_rng(seed, 7);
        for node in scenario.nodes() {
            let config = broker_config(scenario, node.id)?;
            let name = match node.roles {
                None => format!("broker-{}", node.id),
                Some(_) => format!("node-{}", node.id),
            };
            let disk = SimDisk::new(scenario.disk.clone());
            let proc = world.add_node(node.id, name, config, disk);
            let max = scenario.clock.max_skew_ms as i64;
            world.procs[proc as usize].skew_millis = clock_rng.gen_range(-max..=max);
            brokers.push(proc);
        }
        let bootstrap = scenario.bootstrap();
        let duration = scenario.duration_ms * 1_000_000;
        let quiet = scenario.quiet_ms * 1_000_000;
        // The admin creates the topic before anyone uses it (and, with an
        // admin workload, keeps creating topics to the end).
        let admin = Admin::new(
            AdminConfig {
                bootstrap: bootstrap.clone(),
                topic: scenario.topic.name.clone(),
                partitions: scenario.topic.partitions as i32,
                replication_factor: scenario.replication_factor() as i16,
                topic_configs: scenario.topic_configs(),
                request_timeout_ms: scenario.workload.request_timeout_ms,
                create_every_ms: scenario.workload.admin_create_every_ms,
                stop_at_nanos: duration + quiet,
                process: scenario.workload.producers + scenario.workload.consumers,
            },
            1 << 40,
        );
        let admin = world.add_client("admin".into(), Actor::Admin(Box::new(admin)));
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
                enable_idempotence: scenario.idempotent(),
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
                // Every other consumer reads committed, as librdkafka's do by
                // default: both fetch paths are checked in every scenario.
                read_committed: i % 2 == 1,
            };
            let consumer = Consumer::new(config, 1 + process as u64 * 1_000_000);
            consumers.push(
                world.add_client(format!("consumer-{i}"), Actor::Consumer(Box::new(consumer))),
            );
        }
        let mut members = Vec::new();
        let mut coordinator_faults = BTreeSet::new();
        let mut faults = plan(scenario, &mut derive_rng(seed, 3));
        if let Some(group) = &scenario.group {
            for i in 0..group.members {
                let config = member_config(scenario, i);
                let member = GroupConsumer::new(config, member_conn_base(i, 0));
                members.push(world.add_client(
                    format!("member-{i}"),
                    Actor::GroupConsumer(Box::new(member)),
                ));
            }
            for (i, action) in group.actions.iter().enumerate() {
                use crate::scenario::MemberActionKind as K;
                if matches!(action.action, K::Pause | K::Kill) {
                    world.schedule_action(action.at_ms * 1_000_000, WorldAction::Member(i, true));
                    if let Some(d) = action.duration_ms {
                        world.schedule_action(
                            (action.at_ms + d) * 1_000_000,
                            WorldAction::Member(i, false),
                        );
                    }
                }
            }
            // Faults at the coordinator, resolved when they strike (the
            // target here is a placeholder, replaced by the node struck).
            for f in &group.coordinator_faults {
                let end = scenario.duration_ms;
                coordinator_faults.insert(faults.len());
                faults.push(PlannedFault {
                    kind: f.fault,
                    target: Target::Node(0),
                    start_ms: f.at_ms.min(end),
                    end_ms: (f.at_ms + f.duration_ms).min(end),
                });
            }
        }
        for (i, fault) in faults.iter().enumerate() {
            world.schedule_action(fault.start_ms * 1_000_000, WorldAction::Strike(i));
            world.schedule_action(fault.end_ms * 1_000_000, WorldAction::Heal(i));
        }
        world.schedule_action(OPERATOR_INTERVAL_MS * 1_000_000, WorldAction::OperatorCheck);
        Ok(Run {
            world,
            scenario: scenario.clone(),
            brokers,
            producers,
            consumers,
            member_restarts: vec![0; members.len()],
            members,
            coordinator_faults,
            admin,
            struck: vec![Vec::new(); faults.len()],
            faults,
            clock_jumps: Vec::new(),
            active: Vec::new(),
            fault_links: BTreeMap::new(),
            link_holds: BTreeMap::new(),
            target_rng: derive_rng(seed, 9),
            quorum_heal_nanos: 0,
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
        self.check_replicas();
        self.check_sequences();
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
            .chain(&self.members)
            .copied()
            .collect()
    }

    /// The operator: a log that failed stays offline until its broker
    /// restarts, as in Kafka; once no disk fault is active on that broker,
    /// the operator restarts it (recovery repairs what it can).
    fn operate(&mut self) {
        for (index, &broker) in self.brokers.iter().enumerate() {
            let disk_faulty = self.active.iter().any(|&f| {
                is_disk_fault(self.faults[f].kind) && self.struck[f].contains(&(index as u32))
            });
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
                continue;
            }
            // A node that stopped itself (Kafka exits on a metadata log
            // failure) is restarted by its supervisor, as systemd would,
            // once no fault keeps it down.
            let held_down = self.active.iter().any(|&f| {
                matches!(
                    self.faults[f].kind,
                    FaultKind::Crash | FaultKind::Kill | FaultKind::Wipe | FaultKind::Shutdown
                ) && self.struck[f].contains(&(index as u32))
            });
            let down = self.world.procs[broker as usize].state == crate::world::ProcState::Down;
            if down && !held_down && !disk_faulty {
                let now = self.world.now;
                self.world.trace.world(
                    now,
                    broker,
                    "supervisor restarts the node (it stopped itself)".into(),
                );
                self.world.restart(broker);
            }
        }
        let next = self.world.now + OPERATOR_INTERVAL_MS * 1_000_000;
        self.world.schedule_action(next, WorldAction::OperatorCheck);
    }

    fn apply(&mut self, action: WorldAction) {
        let (index, strike) = match action {
            WorldAction::Strike(i) => (i, true),
            WorldAction::Heal(i) => (i, false),
            WorldAction::OperatorCheck => return self.operate(),
            WorldAction::Member(i, strike) => return self.member_action(i, strike),
        };
        let fault = self.faults[index].clone();
        if strike {
            let nodes = if self.coordinator_faults.contains(&index) {
                let node = self.group_coordinator();
                self.faults[index].target = Target::Node(node);
                self.note(
                    node,
                    format!("target coordinator of the group: node {node}"),
                );
                vec![node]
            } else {
                self.resolve(fault.target)
            };
            self.struck[index] = nodes;
            self.active.push(index);
        } else {
            self.active.retain(|&i| i != index);
            if self.affects_quorum(index) {
                self.quorum_heal_nanos = self.quorum_heal_nanos.max(self.world.now);
            }
        }
        let nodes = self.struck[index].clone();
        // Replicas must agree below their high watermarks at every turn.
        self.check_replicas();
        self.check_sequences();
        if fault.kind.is_inter_node() {
            return self.cluster_link_fault(index, strike);
        }
        for node in nodes {
            self.apply_to_node(&fault, strike, node);
        }
    }

    /// The disk-reading replica check (`replica-divergence`), over every up
    /// node's segment files; replicated runs only.
    pub fn check_replicas(&mut self) {
        if self.scenario.replication_factor() < 2 {
            return;
        }
        let now = self.world.now;
        let brokers = &self.brokers;
        let crate::world::World { monitor, procs, .. } = &mut self.world;
        monitor.check_divergence(now, |node| {
            let proc = brokers.get(node as usize)?;
            match &procs.get(*proc as usize)?.actor {
                Actor::Broker(host) => Some(&host.disk.mem),
                _ => None,
            }
        });
    }

    /// The disk-reading `producer-sequence-repeat` check, over every up broker.
    pub fn check_sequences(&mut self) {
        let now = self.world.now;
        let brokers = &self.brokers;
        let crate::world::World { monitor, procs, .. } = &mut self.world;
        for (node, proc) in brokers.iter().enumerate() {
            let Some(p) = procs.get(*proc as usize) else {
                continue;
            };
            // A down node's disk may hold a torn tail until recovery.
            if let (Actor::Broker(host), false) = (&p.actor, p.state == ProcState::Down) {
                monitor.check_sequences(now, node as u32, &host.disk.mem);
            }
        }
    }

    /// Truncations that cut acknowledged (acks=all) writes: failures when
    /// the configuration promises to keep them, notes otherwise.
    fn acked_truncations(&self, history: &History) -> (Vec<Anomaly>, Vec<String>) {
        if self.scenario.acks() != -1 {
            return (Vec::new(), Vec::new());
        }
        let mut acked: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
        for (_, write, offset) in history.acknowledged() {
            acked.entry(write.partition).or_default().insert(offset);
        }
        let found = self
            .world
            .monitor
            .acked_truncations(&self.scenario.topic.name, &acked);
        let describe = |v: &crate::monitor::Violation| {
            format!("at {} ms: {}", v.at_nanos / 1_000_000, v.explanation)
        };
        if self.scenario.promises_acked_writes() {
            let anomalies = found
                .iter()
                .map(|v| Anomaly {
                    kind: v.kind.clone(),
                    explanation: describe(v),
                    partition: None,
                    offsets: vec![],
                    values: vec![],
                })
                .collect();
            (anomalies, Vec::new())
        } else {
            let notes = found
                .iter()
                .map(|v| {
                    format!(
                        "{} (not a failure: this configuration does not promise to keep acknowledged writes): {}",
                        v.kind,
                        describe(v)
                    )
                })
                .collect();
            (Vec::new(), notes)
        }
    }

    /// Whether fault `index` could have affected the metadata quorum: a
    /// fault between nodes, or any fault but a client-link one on a voter.
    fn affects_quorum(&self, index: usize) -> bool {
        let kind = self.faults[index].kind;
        let voters = self.scenario.voters();
        kind.is_inter_node()
            || (!is_client_link_fault(kind)
                && self.struck[index].iter().any(|n| voters.contains(n)))
    }

    /// The process of node `node`.
    pub fn node_proc(&self, node: u32) -> ProcId {
        self.brokers[node as usize]
    }

    /// Nodes whose process is not down.
    fn up_nodes(&self, among: &[u32]) -> Vec<u32> {
        among
            .iter()
            .copied()
            .filter(|n| self.world.procs[self.node_proc(*n) as usize].state != ProcState::Down)
            .collect()
    }

    /// A deterministic shuffle with the targeting generator.
    fn shuffled(&mut self, mut nodes: Vec<u32>) -> Vec<u32> {
        for i in (1..nodes.len()).rev() {
            nodes.swap(i, self.target_rng.gen_range(0..=i));
        }
        nodes
    }

    fn note(&mut self, node: u32, text: String) {
        let now = self.world.now;
        let proc = self.brokers.get(node as usize).copied().unwrap_or(0);
        self.world.trace.world(now, proc, text);
    }

    /// The leader of partition `partition` of the workload's topic: the
    /// legacy broker leads everything; in a cluster, the leader that the up
    /// nodes' metadata images name with the highest leader epoch.
    pub fn partition_leader(&self, partition: u32) -> Option<u32> {
        if self.scenario.cluster_spec().is_none() {
            return Some(0);
        }
        self.brokers
            .iter()
            .filter_map(|p| self.world.broker(*p)?.node.as_ref())
            .flat_map(|n| n.partition_leaders())
            .filter(|(t, p, l, _)| {
                *t == self.scenario.topic.name && *p == partition as i32 && *l >= 0
            })
            .max_by_key(|(_, _, l, epoch)| (*epoch, std::cmp::Reverse(*l)))
            .map(|(_, _, l, _)| l as u32)
    }

    /// The replicas of partition `partition` of the workload's topic and its
    /// leader, as the up nodes' metadata images with the highest leader
    /// epoch name them (no replicas known: empty).
    pub fn partition_replicas(&self, partition: u32) -> (Vec<u32>, Option<u32>) {
        let topic = &self.scenario.topic.name;
        self.brokers
            .iter()
            .filter_map(|p| self.world.broker(*p)?.node.as_ref()?.metadata_image())
            .filter_map(|image| image.topics.get(topic)?.partitions.get(&(partition as i32)))
            .max_by_key(|p| (p.leader_epoch, p.partition_epoch))
            .map(|p| {
                let replicas = p.replicas.iter().map(|r| *r as u32).collect();
                (replicas, (p.leader >= 0).then_some(p.leader as u32))
            })
            .unwrap_or_else(|| (Vec::new(), self.partition_leader(partition)))
    }

    /// Resolve a target to node ids, from the world's state now; every
    /// choice comes from the run's targeting generator and is traced.
    pub fn resolve(&mut self, target: Target) -> Vec<u32> {
        let all: Vec<u32> = (0..self.brokers.len() as u32).collect();
        let voters = self.scenario.voters();
        // The legacy broker is its own (only) voter.
        let pool = if voters.is_empty() {
            all.clone()
        } else {
            voters.clone()
        };
        let mut nodes = match target {
            Target::Node(n) => return vec![n],
            Target::Controller => {
                match self.world.monitor.quorum_leader() {
                    Some((leader, epoch)) => {
                        self.note(
                            leader,
                            format!(
                                "target controller: node {leader} (quorum leader of epoch {epoch})"
                            ),
                        );
                        vec![leader]
                    }
                    None => {
                        let up = self.up_nodes(&pool);
                        let from = if up.is_empty() { pool.clone() } else { up };
                        let pick = from[self.target_rng.gen_range(0..from.len())];
                        self.note(
                        pick,
                        format!("target controller: no quorum leader known; falls back to voter {pick}"),
                    );
                        vec![pick]
                    }
                }
            }
            Target::Leader(p) => match self.partition_leader(p) {
                Some(leader) => {
                    if self.scenario.cluster_spec().is_some() {
                        self.note(
                            leader,
                            format!(
                                "target leader:{p}: node {leader} leads {}-{p}",
                                self.scenario.topic.name
                            ),
                        );
                    }
                    vec![leader]
                }
                None => {
                    let brokers: Vec<u32> = self
                        .scenario
                        .nodes()
                        .iter()
                        .filter(|n| n.is_broker())
                        .map(|n| n.id)
                        .collect();
                    let up = self.up_nodes(&brokers);
                    let from = if up.is_empty() { brokers } else { up };
                    let pick = from[self.target_rng.gen_range(0..from.len())];
                    self.note(
                        pick,
                        format!(
                            "target leader:{p}: leader of {}-{p} unknown; falls back to broker {pick}",
                            self.scenario.topic.name
                        ),
                    );
                    vec![pick]
                }
            },
            Target::Follower(p) => {
                let (replicas, leader) = self.partition_replicas(p);
                let followers: Vec<u32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| Some(*r) != leader)
                    .collect();
                let (from, how) = if followers.is_empty() {
                    let brokers: Vec<u32> = self
                        .scenario
                        .nodes()
                        .iter()
                        .filter(|n| n.is_broker() && Some(n.id) != leader)
                        .map(|n| n.id)
                        .collect();
                    (brokers, "replicas unknown; falls back to broker")
                } else {
                    (followers, "follows as replica:")
                };
                let pick = if from.is_empty() {
                    0
                } else {
                    from[self.target_rng.gen_range(0..from.len())]
                };
                self.note(
                    pick,
                    format!(
                        "target follower:{p}: {how} node {pick} of {}-{p} (leader {})",
                        self.scenario.topic.name,
                        leader.map_or("unknown".to_string(), |l| l.to_string())
                    ),
                );
                return vec![pick];
            }
            Target::Minority | Target::Majority => {
                let size = if target == Target::Minority {
                    ((pool.len() - 1) / 2).max(1)
                } else {
                    pool.len() / 2 + 1
                };
                let mut picked = self.shuffled(pool);
                picked.truncate(size);
                picked
            }
            Target::Voters => pool,
            Target::All => all,
            Target::Any => vec![all[self.target_rng.gen_range(0..all.len())]],
        };
        nodes.sort_unstable();
        if matches!(
            target,
            Target::Minority | Target::Majority | Target::Voters | Target::All | Target::Any
        ) {
            self.note(nodes[0], format!("target {target}: nodes {}", list(&nodes)));
        }
        nodes
    }

    /// The faults between cluster nodes: cut or clog exactly the links they
    /// name, and give them back at heal (a link held by several faults is
    /// released by the last heal).
    fn cluster_link_fault(&mut self, index: usize, strike: bool) {
        let fault = self.faults[index].clone();
        let verb = if strike { "strike" } else { "heal" };
        let nodes = self.struck[index].clone();
        let Some(&first) = nodes.first() else {
            return;
        };
        if !strike {
            self.note(first, format!("heal {}", fault.kind.name()));
            for link in self.fault_links.remove(&index).unwrap_or_default() {
                let holds = self.link_holds.entry(link).or_default();
                *holds = holds.saturating_sub(1);
                if *holds == 0 {
                    self.link_holds.remove(&link);
                    let (from, to, clog) = link;
                    let set = if clog {
                        &mut self.world.net.links.clogged
                    } else {
                        &mut self.world.net.links.blocked
                    };
                    set.remove(&(from, to));
                }
            }
            self.world.release_links();
            return;
        }
        let all_nodes: Vec<u32> = (0..self.brokers.len() as u32).collect();
        let everyone: Vec<ProcId> = (0..self.world.procs.len() as ProcId).collect();
        let mut links: Vec<Link> = Vec::new();
        let both = |links: &mut Vec<Link>, a: ProcId, b: ProcId, clog: bool| {
            if a != b {
                links.push((a, b, clog));
                links.push((b, a, clog));
            }
        };
        let note = match fault.kind {
            FaultKind::Isolate | FaultKind::ClogNode => {
                let clog = fault.kind == FaultKind::ClogNode;
                for &n in &nodes {
                    for &q in &everyone {
                        both(&mut links, self.node_proc(n), q, clog);
                    }
                }
                format!("{verb} {}: nodes {}", fault.kind.name(), list(&nodes))
            }
            FaultKind::Split => {
                let other: Vec<u32> = all_nodes
                    .iter()
                    .copied()
                    .filter(|n| !nodes.contains(n))
                    .collect();
                for &a in &nodes {
                    for &b in &other {
                        both(&mut links, self.node_proc(a), self.node_proc(b), false);
                    }
                }
                format!("{verb} split: nodes {} | {}", list(&nodes), list(&other))
            }
            FaultKind::SplitBrokers => {
                let other: Vec<u32> = self
                    .scenario
                    .nodes()
                    .iter()
                    .filter(|n| n.is_broker() && !nodes.contains(&n.id))
                    .map(|n| n.id)
                    .collect();
                for &a in &nodes {
                    for &b in &other {
                        both(&mut links, self.node_proc(a), self.node_proc(b), false);
                    }
                }
                format!(
                    "{verb} split-brokers: nodes {} | brokers {}",
                    list(&nodes),
                    list(&other)
                )
            }
            FaultKind::Bridge => {
                let others: Vec<u32> = all_nodes.iter().copied().filter(|n| *n != first).collect();
                let mut others = self.shuffled(others);
                let mut b = others.split_off(others.len() / 2);
                let mut a = others;
                a.sort_unstable();
                b.sort_unstable();
                for &x in &a {
                    for &y in &b {
                        both(&mut links, self.node_proc(x), self.node_proc(y), false);
                    }
                }
                self.struck[index] = vec![first];
                format!(
                    "{verb} bridge: nodes {} | node {first} | nodes {}",
                    list(&a),
                    list(&b)
                )
            }
            FaultKind::OneWayToLeader => {
                let leader = match self.world.monitor.quorum_leader() {
                    Some((l, _)) => l,
                    None => {
                        let pool = self.scenario.voters();
                        let pool = if pool.is_empty() {
                            all_nodes.clone()
                        } else {
                            pool
                        };
                        let pick = pool[self.target_rng.gen_range(0..pool.len())];
                        self.note(
                            pick,
                            format!("one-way-to-leader: no quorum leader known; falls back to voter {pick}"),
                        );
                        pick
                    }
                };
                let mut senders: Vec<u32> =
                    nodes.iter().copied().filter(|n| *n != leader).collect();
                if senders.is_empty() {
                    senders = all_nodes.iter().copied().filter(|n| *n != leader).collect();
                }
                for &s in &senders {
                    links.push((self.node_proc(s), self.node_proc(leader), false));
                }
                self.struck[index] = senders.clone();
                format!(
                    "{verb} one-way-to-leader: nodes {} lose what they send to leader {leader}",
                    list(&senders)
                )
            }
            _ => unreachable!("not a cluster link fault"),
        };
        self.note(first, note);
        links.sort_unstable();
        links.dedup();
        for &link in &links {
            *self.link_holds.entry(link).or_default() += 1;
            let (from, to, clog) = link;
            if clog {
                self.world.net.links.clogged.insert((from, to));
            } else {
                self.world.net.links.blocked.insert((from, to));
            }
        }
        self.fault_links.insert(index, links);
    }

    /// A fault that strikes one node at a time (process, disk, clock and
    /// client-link faults), carried out on `node`.
    fn apply_to_node(&mut self, fault: &PlannedFault, strike: bool, node: u32) {
        let Some(&broker) = self.brokers.get(node as usize) else {
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
                w.monitor.forget_node(node);
            }
            (FaultKind::Crash | FaultKind::Kill | FaultKind::Wipe, false) => w.restart(broker),
            (FaultKind::Shutdown, true) => w.shutdown(broker),
            (FaultKind::Shutdown, false) => {
                if w.procs[broker as usize].state != ProcState::Down {
                    // The controlled shutdown did not finish: kill it, as
                    // an operator's script would after its timeout.
                    let now = w.now;
                    w.trace
                        .world(now, broker, "shutdown did not finish: killed".into());
                    w.crash(broker, false);
                }
                w.restart(broker);
            }
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
                // Links a cluster link fault still holds stay as they are.
                let holds = &self.link_holds;
                w.net.links.blocked.retain(|&(a, b)| {
                    (a != broker && b != broker) || holds.contains_key(&(a, b, false))
                });
                w.net.links.clogged.retain(|&(a, b)| {
                    (a != broker && b != broker) || holds.contains_key(&(a, b, true))
                });
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
            (
                FaultKind::Isolate
                | FaultKind::Split
                | FaultKind::Bridge
                | FaultKind::OneWayToLeader
                | FaultKind::ClogNode
                | FaultKind::SplitBrokers,
                _,
            ) => unreachable!("cluster link faults are carried out by cluster_link_fault"),
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
        let specs = self.scenario.nodes();
        for (i, p) in self.world.procs.iter().enumerate() {
            match &p.actor {
                Actor::Broker(host) => {
                    let mut line = format!("p{i} {} {:?}", p.name, p.state);
                    let roles = specs
                        .iter()
                        .find(|n| n.id == host.node_index)
                        .and_then(|n| n.roles);
                    if let Some(roles) = roles {
                        line.push_str(&format!(" roles={}", roles.property()));
                    }
                    if let Some(view) = host.node.as_ref().and_then(|n| n.quorum_view()) {
                        line.push_str(&format!(
                            " quorum:{:?} epoch={} leader={} hw={} log=[{},{}) durable={} snapshot={}",
                            view.role,
                            view.epoch,
                            view.leader.map_or("-".to_string(), |l| l.to_string()),
                            view.high_watermark
                                .map_or("-".to_string(), |h| h.to_string()),
                            view.log_start,
                            view.log_end,
                            view.durable_end,
                            view.snapshot
                                .map_or("-".to_string(), |(end, epoch)| format!("{end}@{epoch}")),
                        ));
                    }
                    if let Some(image) = host.node.as_ref().and_then(|n| n.metadata_image()) {
                        let brokers: Vec<String> = image
                            .brokers
                            .values()
                            .map(|b| {
                                let state = if b.fenced { "fenced" } else { "live" };
                                format!("{}:{state}@{}", b.id, b.epoch)
                            })
                            .collect();
                        line.push_str(&format!(" brokers=[{}]", brokers.join(" ")));
                    }
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
                Actor::GroupConsumer(m) => {
                    let st = m.status();
                    let progress: Vec<String> = m
                        .progress()
                        .iter()
                        .map(|(p, (f, d))| format!("{p}:fetch={f},done={d}"))
                        .collect();
                    lines.push(format!(
                        "p{i} {} {:?} group {:?} member={} generation={} coordinator={} owned={:?} {} (last error {:?})",
                        p.name,
                        p.state,
                        st.phase,
                        st.member_id,
                        st.generation,
                        st.coordinator.map_or("-".to_string(), |c| c.to_string()),
                        st.owned,
                        progress.join(" "),
                        st.last_error
                    ));
                }
                Actor::Admin(a) => {
                    let mut line = format!(
                        "p{i} {} {:?} topic created: {} (last error {:?})",
                        p.name,
                        p.state,
                        a.done(),
                        a.last_error()
                    );
                    let creates = a.history().events.len();
                    if creates > 0 {
                        let ok = a.history().events.iter().filter(|e| e.is_ok()).count();
                        line.push_str(&format!(
                            " creates: {ok} ok of {creates}; talks to {}",
                            a.current_address()
                        ));
                    }
                    lines.push(line);
                }
            }
        }
        if self.world.monitor.quorum_observed() {
            let changes: Vec<String> = self
                .world
                .monitor
                .leadership()
                .iter()
                .map(|(t, l)| match l {
                    Some((n, e)) => format!("{} ms: node {n} (epoch {e})", t / 1_000_000),
                    None => format!("{} ms: none", t / 1_000_000),
                })
                .collect();
            lines.push(format!("quorum leadership: {}", changes.join("; ")));
        }
        lines
    }

    /// The merged history of every client.
    pub fn history(&self) -> History {
        History::merge(self.world.procs.iter().filter_map(|p| match &p.actor {
            Actor::Producer(x) => Some(x.history().clone()),
            Actor::Consumer(x) => Some(x.history().clone()),
            Actor::Admin(x) => Some(x.history().clone()),
            Actor::GroupConsumer(x) => Some(x.history().clone()),
            Actor::Broker(_) => None,
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
        anomalies.extend(self.group_liveness(history));
        self.reclassify_truncated(&mut anomalies);
        let (truncated, notes) = self.acked_truncations(history);
        anomalies.extend(truncated);
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
        let election_ms = self.election_ms();
        if self.scenario.cluster_spec().is_some() {
            let healed = self.quorum_heal_nanos / 1_000_000;
            match election_ms {
                Some(ms) if ms <= ELECTION_BOUND_MS => {}
                Some(ms) => reasons.push(format!(
                    "liveness: a quorum leader took {ms} ms after the last quorum fault healed at {healed} ms (bound {ELECTION_BOUND_MS} ms)"
                )),
                None => reasons.push(format!(
                    "liveness: no quorum leader followed by a majority of voters after the last quorum fault healed at {healed} ms{}",
                    if self.world.monitor.quorum_observed() {
                        ""
                    } else {
                        " (no node ever showed a quorum view)"
                    }
                )),
            }
        }
        let mut creates = SendCounts::default();
        for (e, _) in history.create_topics() {
            match e.outcome {
                Some(workloads::history::Outcome::Ok) => creates.ok += 1,
                Some(workloads::history::Outcome::Fail { .. }) => creates.fail += 1,
                Some(workloads::history::Outcome::Unknown { .. }) => creates.unknown += 1,
                None => creates.in_flight += 1,
            }
        }
        if self.scenario.workload.admin_create_every_ms.is_some() {
            let created_after_heal = history
                .create_topics()
                .any(|(e, _)| e.is_ok() && e.invoke_nanos >= heal_nanos);
            if !created_after_heal {
                reasons.push(
                    "liveness: no CreateTopics issued after the faults healed succeeded".into(),
                );
            }
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
            struck: self.struck.clone(),
            notes,
            quorum_observed: self.world.monitor.quorum_observed(),
            election_ms,
            failover_ms: self.controller_failovers(),
            partition_failover_ms: self.partition_failovers(history),
            creates,
        }
    }

    /// See [`RunResult::failover_ms`].
    pub fn controller_failovers(&self) -> Vec<u64> {
        use crate::fault::Target;
        let leadership = self.world.monitor.leadership();
        let mut times = Vec::new();
        for (fault, struck) in self.faults.iter().zip(&self.struck) {
            let takes_leader_out = matches!(
                fault.kind,
                FaultKind::Kill | FaultKind::Crash | FaultKind::Pause | FaultKind::Isolate
            );
            let [old] = struck.as_slice() else { continue };
            if fault.target != Target::Controller || !takes_leader_out {
                continue;
            }
            let strike = fault.start_ms * 1_000_000;
            // Only strikes that found `old` leading (not one that fell back
            // to another node during an election).
            // (The strike itself records "no leader" at `strike`.)
            let leading = leadership
                .iter()
                .rev()
                .find(|(at, _)| *at < strike)
                .is_some_and(|(_, l)| l.is_some_and(|(n, _)| n == *old));
            if !leading {
                continue;
            }
            let next = leadership
                .iter()
                .find(|(at, leader)| *at >= strike && leader.is_some_and(|(n, _)| n != *old));
            if let Some((at, _)) = next {
                times.push((at - strike) / 1_000_000);
            }
        }
        times
    }

    /// See [`RunResult::partition_failover_ms`].
    pub fn partition_failovers(&self, history: &History) -> Vec<u64> {
        use crate::fault::Target;
        let mut times = Vec::new();
        for (fault, struck) in self.faults.iter().zip(&self.struck) {
            let takes_leader_out = matches!(
                fault.kind,
                FaultKind::Kill
                    | FaultKind::Crash
                    | FaultKind::Pause
                    | FaultKind::Isolate
                    | FaultKind::Split
            );
            let Target::Leader(partition) = fault.target else {
                continue;
            };
            if !takes_leader_out || struck.is_empty() {
                continue;
            }
            let strike = fault.start_ms * 1_000_000;
            let next_ack = history
                .events
                .iter()
                .filter(|e| e.is_ok())
                .filter(|e| match &e.op {
                    Op::Send { writes } => writes
                        .iter()
                        .any(|w| i64::from(w.partition) == i64::from(partition)),
                    _ => false,
                })
                .filter_map(|e| e.complete_nanos)
                .filter(|&done| done > strike)
                .min();
            if let Some(done) = next_ack {
                times.push((done - strike) / 1_000_000);
            }
        }
        times
    }

    /// Clusters: simulated ms from the heal of the last fault that could
    /// affect the quorum (or the start) until a leader is followed by a
    /// majority of voters.
    pub fn election_ms(&self) -> Option<u64> {
        self.scenario.cluster_spec()?;
        let since = self.quorum_heal_nanos;
        self.world
            .monitor
            .leader_since(since)
            .map(|t| (t - since) / 1_000_000)
    }
}

/// The config of group member `i` (of the scenario's `[group]`).
pub fn member_config(scenario: &Scenario, i: u32) -> GroupConsumerConfig {
    let group = scenario.group.as_ref().expect("a [group] table");
    let process = scenario.workload.producers + scenario.workload.consumers + 1 + i;
    let mut c = GroupConsumerConfig::new(
        process,
        &scenario.bootstrap(),
        &scenario.topic.name,
        &group.id,
    );
    c.instance_id = group.instance_id(i);
    c.assignor = group.assignor();
    c.commit = group.commit_mode();
    c.session_timeout_ms = group.session_timeout_ms as i32;
    c.rebalance_timeout_ms = group.rebalance_timeout_ms as i32;
    c.heartbeat_interval_ms = group.heartbeat_interval_ms;
    c.auto_commit_interval_ms = group.auto_commit_interval_ms;
    c.processing_ms = group.processing_ms;
    c.request_timeout_ms = scenario.workload.request_timeout_ms;
    c.retry_backoff_ms = scenario.workload.retry_backoff_ms;
    c.start_at_nanos = group.start_ms(i) * 1_000_000;
    c.leave_at_nanos = group.leave_ms(i).map(|ms| ms * 1_000_000);
    c.read_committed = i % 2 == 1;
    c
}

/// Connection ids of member `i` in its `restart`-th life.
fn member_conn_base(i: u32, restart: u32) -> broker::seam::ConnId {
    (2u64 << 40)
        + u64::from(i) * (1 << 32)
        + u64::from(restart) * workloads::group::consumer::CONN_RANGE
}

impl Run {
    /// A `[[group.actions]]` entry strikes (or ends).
    fn member_action(&mut self, index: usize, strike: bool) {
        use crate::scenario::MemberActionKind as K;
        let Some(group) = self.scenario.group.clone() else {
            return;
        };
        let action = group.actions[index].clone();
        let i = action.member;
        let proc = self.members[i as usize];
        let now = self.world.now;
        let verb = if strike { "strike" } else { "heal" };
        self.world.trace.world(
            now,
            proc,
            format!("{verb} member {i} {:?}", action.action).to_lowercase(),
        );
        match (action.action, strike) {
            (K::Pause, true) => self.world.pause(proc),
            (K::Pause, false) => self.world.resume(proc),
            (K::Kill, true) => self.world.crash(proc, false),
            (K::Kill, false) => {
                // A fresh client (the same instance id when static) goes on
                // with the history of the one that died.
                self.member_restarts[i as usize] += 1;
                let restart = self.member_restarts[i as usize];
                let mut config = member_config(&self.scenario, i);
                config.start_at_nanos = 0;
                if config.leave_at_nanos.is_some_and(|t| t <= now) {
                    return;
                }
                let history = match &mut self.world.procs[proc as usize].actor {
                    Actor::GroupConsumer(m) => m.take_history(),
                    _ => return,
                };
                let member =
                    GroupConsumer::new(config, member_conn_base(i, restart)).with_history(history);
                self.world.procs[proc as usize].actor = Actor::GroupConsumer(Box::new(member));
                self.world.restart(proc);
            }
            (K::Join | K::Leave, _) => {}
        }
    }

    /// The node coordinating the scenario's group now: the leader of its
    /// `__consumer_offsets` partition as the nodes' metadata says, else the
    /// coordinator a member last found, else node 0.
    pub fn group_coordinator(&self) -> u32 {
        let Some(group) = &self.scenario.group else {
            return 0;
        };
        if self.scenario.cluster_spec().is_none() {
            return 0;
        }
        let partitions = self
            .scenario
            .broker
            .get("offsets.topic.num.partitions")
            .and_then(|v| v.as_integer())
            .map_or(
                broker::group::GroupConfig::default().offsets_partitions,
                |n| n as i32,
            );
        let partition = broker::group::partition_for(&group.id, partitions);
        let from_metadata = self
            .brokers
            .iter()
            .filter_map(|p| self.world.broker(*p)?.node.as_ref())
            .flat_map(|n| n.partition_leaders())
            .filter(|(t, p, l, _)| t == "__consumer_offsets" && *p == partition && *l >= 0)
            .max_by_key(|(_, _, l, epoch)| (*epoch, std::cmp::Reverse(*l)))
            .map(|(_, _, l, _)| l as u32);
        let from_members = || {
            self.members
                .iter()
                .find_map(|m| match &self.world.procs[*m as usize].actor {
                    Actor::GroupConsumer(c) => c.status().coordinator.map(|c| c as u32),
                    _ => None,
                })
        };
        from_metadata.or_else(from_members).unwrap_or(0)
    }

    /// The group's liveness (see `workloads::checkers::groups::liveness`).
    fn group_liveness(&self, history: &History) -> Vec<Anomaly> {
        use crate::scenario::MemberActionKind as K;
        let Some(group) = &self.scenario.group else {
            return Vec::new();
        };
        let heal = self.scenario.duration_ms;
        // Members alive at the end: up, not closed.
        let live: Vec<u32> = self
            .members
            .iter()
            .filter(|m| match &self.world.procs[**m as usize] {
                p if p.state == ProcState::Down => false,
                p => match &p.actor {
                    Actor::GroupConsumer(c) => c.status().phase != workloads::group::Phase::Closed,
                    _ => false,
                },
            })
            .map(|m| match &self.world.procs[*m as usize].actor {
                Actor::GroupConsumer(c) => c.config().process,
                _ => 0,
            })
            .collect();
        let last_change = group
            .actions
            .iter()
            .map(|a| match a.action {
                K::Pause | K::Kill => a.at_ms + a.duration_ms.unwrap_or(0),
                K::Join | K::Leave => a.at_ms,
            })
            .chain(std::iter::once(heal))
            .max()
            .unwrap_or(heal);
        let spec = workloads::checkers::groups::GroupLiveness {
            group: &group.id,
            live,
            partitions: self.scenario.topic.partitions as i32,
            since_nanos: last_change * 1_000_000,
            bound_nanos: group.settle_bound_ms * 1_000_000,
        };
        workloads::checkers::groups::liveness(history, &spec)
    }
}

/// Run `scenario` with `seed` to the end.
pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<RunResult, String> {
    Ok(Run::new(scenario, seed, options)?.execute())
}
