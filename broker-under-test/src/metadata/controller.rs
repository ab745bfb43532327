//! The active controller's command handling.
//!
//! A [`Controller`] holds a *working* image: the committed image plus every
//! record this controller has proposed but not yet seen committed. Each
//! proposed record is applied to the working image at once, so a command
//! sees the effects of the commands before it (two creates of one name in a
//! row: the second is refused), as Kafka's `QuorumController` does.
//!
//! Each command returns the records to propose, in order, and the answer
//! for the client. The node proposes the records through the quorum and
//! answers the client once they commit. If it loses leadership (or a
//! proposal fails) it drops the `Controller` and, when active again, builds
//! a fresh one from the committed image.
//!
//! Working-image offsets: the controller applies its proposals at
//! `applied_offset + 1, + 2, ...`, a prediction; the quorum may place them
//! elsewhere. Only `applied_offset` of the working image depends on this.
//!
//! Everything here is deterministic given the committed image, the config,
//! the seed and the sequence of calls (times come in as arguments).

use super::errors::{
    BROKER_ID_NOT_REGISTERED, DUPLICATE_BROKER_REGISTRATION, FENCED_LEADER_EPOCH,
    INCONSISTENT_CLUSTER_ID, INELIGIBLE_REPLICA, INVALID_CONFIG, INVALID_PARTITIONS,
    INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_REQUEST,
    INVALID_UPDATE_VERSION, NONE, NOT_CONTROLLER, STALE_BROKER_EPOCH, TOPIC_ALREADY_EXISTS,
    UNKNOWN_SERVER_ERROR, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use super::image::{MetadataImage, PartitionImage};
use super::records::{Endpoint, MetadataRecord, NO_LEADER, RESOURCE_TOPIC};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Most partitions a topic may have; more is refused with
/// `INVALID_PARTITIONS` (a guard against requests that would build
/// millions of records; Kafka has no such fixed limit).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// Controller settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms` (Kafka default 9000).
    pub session_timeout_ms: u64,
    /// `default.replication.factor`, used when a create asks for -1.
    pub default_replication_factor: i16,
    /// `num.partitions`, used when a create asks for -1.
    pub num_partitions: i32,
    /// The cluster id brokers must register with.
    pub cluster_id: String,
    /// `unclean.leader.election.enable` (Kafka default false): when no ISR
    /// member can lead, elect the first active replica and make it the
    /// whole ISR. A topic config of the same name overrides it.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (Kafka default true): move leadership
    /// back to preferred replicas (see [`Controller::tick`]).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds (Kafka
    /// default 300 s): the least time between two rebalance checks.
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage` (Kafka default 10): a
    /// broker's preferred partitions are moved back to it only when more
    /// than this percentage of them are led by someone else.
    pub leader_imbalance_per_broker_percentage: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            session_timeout_ms: 9000,
            default_replication_factor: 1,
            num_partitions: 1,
            cluster_id: String::new(),
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

/// The topic config (and broker property) enabling unclean leader election.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// `LeaderRecoveryState.RECOVERED`: the leader's log is complete.
pub const LEADER_RECOVERED: i8 = 0;
/// `LeaderRecoveryState.RECOVERING`: the leader was elected uncleanly and
/// has not finished recovering.
pub const LEADER_RECOVERING: i8 = 1;

/// A BrokerRegistration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistrationReq {
    pub broker_id: i32,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The directory ids of the broker's log directories (BrokerRegistration
    /// v2+ `LogDirs`); empty if it sent none.
    pub log_dirs: Vec<Uuid>,
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReq {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The last metadata offset the broker has applied.
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shutdown: bool,
}

/// A BrokerHeartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub error: i16,
    /// The broker has applied the metadata log up to its own registration.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shutdown: bool,
}

/// One topic of a CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicReq {
    pub name: String,
    /// -1 for `num.partitions`.
    pub num_partitions: i32,
    /// -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit `(partition, replicas)` assignments; when present both
    /// counts above must be -1.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs; a `None` value is refused.
    pub configs: Vec<(String, Option<String>)>,
}

/// The answer for one topic of a CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicResult {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
    /// The new topic's id; nil on error and for `validate_only`.
    pub topic_id: Uuid,
    /// -1 on error.
    pub num_partitions: i32,
    /// -1 on error.
    pub replication_factor: i16,
}

/// The answer for one topic of a DeleteTopics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicResult {
    pub name: Option<String>,
    pub topic_id: Uuid,
    pub error: i16,
}

/// One topic of a CreatePartitions request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartitionsReq {
    pub name: String,
    /// The new total partition count.
    pub count: i32,
    /// Replicas of each new partition, or empty for automatic placement.
    pub assignments: Vec<Vec<i32>>,
}

/// An AlterPartition request from a partition leader (ISR change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionReq {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
    /// The broker epoch of each `new_isr` member, in the same order
    /// (AlterPartition v3); empty when not given (v2). An epoch of -1 is
    /// not checked.
    pub new_isr_broker_epochs: Vec<i64>,
    /// [`LEADER_RECOVERED`] or [`LEADER_RECOVERING`].
    pub leader_recovery_state: i8,
}

/// The answer to an [`AlterPartitionReq`]: on success the partition state
/// after the change (leader epoch, partition epoch, ISR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionReply {
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The answer for one topic of a CreatePartitions request:
/// `(name, error code, error message)`.
pub type CreatePartitionsResult = (String, i16, Option<String>);

type CmdError = (i16, String);

/// Producer ids per AllocateProducerIds block (Kafka's).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// `(replicas, isr)` of each partition, in partition order.
type Placement = Vec<(Vec<i32>, Vec<i32>)>;

/// The active controller (see the module docs).
#[derive(Debug, Clone)]
pub struct Controller {
    working: MetadataImage,
    config: ControllerConfig,
    rng: ChaCha8Rng,
    /// Last heartbeat (or registration, or controller start) per broker.
    last_contact_ms: BTreeMap<i32, u64>,
    /// When the last preferred-leader check ran (or the controller started).
    last_rebalance_ms: u64,
}

impl Controller {
    /// A controller over `committed`. Every broker in the image gets a full
    /// session from `now_ms`, so a new controller does not fence everyone.
    pub fn new(committed: MetadataImage, config: ControllerConfig, now_ms: u64, seed: u64) -> Self {
        let last_contact_ms = committed.brokers.keys().map(|&id| (id, now_ms)).collect();
        Controller {
            working: committed,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            last_contact_ms,
            last_rebalance_ms: now_ms,
        }
    }

    /// The committed image plus this controller's proposals.
    pub fn working(&self) -> &MetadataImage {
        &self.working
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    fn propose(&mut self, out: &mut Vec<MetadataRecord>, record: MetadataRecord) {
        let offset = self.working.applied_offset + 1;
        self.working.apply(offset, &record);
        out.push(record);
    }

    fn session_valid(&self, broker_id: i32, now_ms: u64) -> bool {
        self.last_contact_ms
            .get(&broker_id)
            .is_some_and(|&t| now_ms <= t.saturating_add(self.config.session_timeout_ms))
    }

    // ----------------------------------------------------------------
    // Brokers
    // ----------------------------------------------------------------

    /// Handles a BrokerRegistration. `next_offset` is the log offset where
    /// the first returned record will land; it becomes the broker epoch.
    ///
    /// The registration is fenced until a heartbeat shows the broker caught
    /// up. A re-registration replaces the old one: the old registration's
    /// leaderships and ISR memberships are removed as when it is fenced.
    ///
    /// A new incarnation is refused (DUPLICATE_BROKER_REGISTRATION) while
    /// the old registration is unfenced and its session lives, as Kafka
    /// does, so that two processes cannot both claim one broker id; unless
    /// both name the same non-empty set of log directories: the same
    /// storage, so this is the broker restarted (say after a kill -9) and
    /// the old process is gone. A broker whose data directory was wiped has
    /// a new directory id and still waits for the old session to expire.
    pub fn register_broker(
        &mut self,
        now_ms: u64,
        next_offset: i64,
        req: BrokerRegistrationReq,
    ) -> (Vec<MetadataRecord>, Result<i64, i16>) {
        if req.cluster_id != self.config.cluster_id {
            return (Vec::new(), Err(INCONSISTENT_CLUSTER_ID));
        }
        if req.broker_id < 0 {
            return (Vec::new(), Err(INVALID_REQUEST));
        }
        if let Some(existing) = self.working.broker(req.broker_id) {
            // As in Kafka, only a live (unfenced) registration holds a
            // session: a fenced one never blocks its broker's next incarnation.
            if existing.incarnation_id != req.incarnation_id
                && !existing.fenced
                && self.session_valid(req.broker_id, now_ms)
                && !same_storage(&existing.log_dirs, &req.log_dirs)
            {
                return (Vec::new(), Err(DUPLICATE_BROKER_REGISTRATION));
            }
        }
        let mut out = Vec::new();
        self.propose(
            &mut out,
            MetadataRecord::RegisterBroker {
                broker_id: req.broker_id,
                incarnation_id: req.incarnation_id,
                broker_epoch: next_offset,
                endpoints: req.endpoints,
                rack: req.rack,
                log_dirs: req.log_dirs,
            },
        );
        self.remove_from_partitions(req.broker_id, &mut out);
        self.last_contact_ms.insert(req.broker_id, now_ms);
        (out, Ok(next_offset))
    }

    /// Handles a BrokerHeartbeat.
    ///
    /// - A fenced broker that has applied the log up to its registration
    ///   (and does not want to be fenced) is unfenced, and leaderless
    ///   partitions that list it as a replica get a leader if one can be
    ///   elected (see `elect_leaderless_with`; unclean election included).
    /// - `want_shutdown` on an unfenced broker begins a controlled shutdown:
    ///   its leaderships move to other active ISR members and it leaves the
    ///   ISRs (the last member stays, leaderless). A later heartbeat finding
    ///   it leads nothing fences it and answers `should_shutdown`. A fenced
    ///   broker may shut down at once.
    /// - `want_fence` on an unfenced broker fences it.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        req: HeartbeatReq,
    ) -> (Vec<MetadataRecord>, HeartbeatReply) {
        let refuse = |error| HeartbeatReply {
            error,
            is_caught_up: false,
            is_fenced: true,
            should_shutdown: false,
        };
        let Some(info) = self.working.broker(req.broker_id).cloned() else {
            return (Vec::new(), refuse(BROKER_ID_NOT_REGISTERED));
        };
        if info.epoch != req.broker_epoch {
            return (Vec::new(), refuse(STALE_BROKER_EPOCH));
        }
        let id = info.id;
        let epoch = info.epoch;
        self.last_contact_ms.insert(id, now_ms);
        let caught_up = req.current_metadata_offset >= epoch;
        let mut out = Vec::new();
        let mut should_shutdown = false;
        if info.fenced {
            if req.want_shutdown {
                should_shutdown = true;
            } else if caught_up && !req.want_fence {
                self.propose(
                    &mut out,
                    MetadataRecord::UnfenceBroker {
                        broker_id: id,
                        broker_epoch: epoch,
                    },
                );
                self.elect_leaderless_with(id, &mut out);
            }
        } else if info.in_controlled_shutdown || req.want_shutdown {
            if !info.in_controlled_shutdown {
                self.propose(
                    &mut out,
                    MetadataRecord::BeginControlledShutdown {
                        broker_id: id,
                        broker_epoch: epoch,
                    },
                );
            }
            self.remove_from_partitions(id, &mut out);
            if info.in_controlled_shutdown && !self.leads_any(id) {
                self.propose(
                    &mut out,
                    MetadataRecord::FenceBroker {
                        broker_id: id,
                        broker_epoch: epoch,
                    },
                );
                should_shutdown = true;
            }
        } else if req.want_fence {
            self.fence(id, epoch, &mut out);
        }
        let is_fenced = self.working.broker(id).is_none_or(|b| b.fenced);
        (
            out,
            HeartbeatReply {
                error: NONE,
                is_caught_up: caught_up,
                is_fenced,
                should_shutdown,
            },
        )
    }

    /// Fences every unfenced broker whose last heartbeat is more than
    /// `session_timeout_ms` old, moving its leaderships away; then, at most
    /// once per `leader_imbalance_check_interval_ms`, moves leaderships back
    /// to preferred replicas (see [`balance_leaders`](Self::balance_leaders)).
    pub fn tick(&mut self, now_ms: u64) -> Vec<MetadataRecord> {
        let unfenced: Vec<(i32, i64)> = self
            .working
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| (b.id, b.epoch))
            .collect();
        let mut out = Vec::new();
        for (id, epoch) in unfenced {
            self.last_contact_ms.entry(id).or_insert(now_ms);
            if !self.session_valid(id, now_ms) {
                tracing::info!(broker_id = id, "broker session expired; fencing it");
                self.fence(id, epoch, &mut out);
            }
        }
        if self.rebalance_at().is_some_and(|at| now_ms >= at) {
            self.last_rebalance_ms = now_ms;
            self.balance_leaders(&mut out);
        }
        out
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do:
    /// a session expiry, or the next preferred-leader check while some
    /// partition could move back to its preferred replica.
    pub fn next_deadline(&self) -> Option<u64> {
        let sessions = self
            .working
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| self.last_contact_ms.get(&b.id))
            .map(|&t| {
                t.saturating_add(self.config.session_timeout_ms)
                    .saturating_add(1)
            })
            .min();
        let rebalance = self
            .rebalance_at()
            .filter(|_| self.any_preferred_leader_movable());
        match (sessions, rebalance) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the next preferred-leader check is due, if they are enabled. An
    /// interval of 0 counts as 1 ms, so the timer never spins in place.
    fn rebalance_at(&self) -> Option<u64> {
        self.config.auto_leader_rebalance_enable.then(|| {
            self.last_rebalance_ms
                .saturating_add(self.config.leader_imbalance_check_interval_ms.max(1))
        })
    }

    /// Whether `p`'s preferred replica (its first) could lead it and does not.
    fn preferred_movable(&self, p: &PartitionImage) -> Option<i32> {
        let preferred = *p.replicas.first()?;
        (p.leader != preferred && p.isr.contains(&preferred) && self.working.is_active(preferred))
            .then_some(preferred)
    }

    fn any_preferred_leader_movable(&self) -> bool {
        self.working.topics.values().any(|t| {
            t.partitions
                .values()
                .any(|p| self.preferred_movable(p).is_some())
        })
    }

    /// Preferred leader election, as Kafka's auto leader rebalance: for each
    /// broker, among the partitions whose preferred replica (first replica)
    /// it is, the share led by another broker (or by none) is its imbalance.
    /// When that exceeds `leader_imbalance_per_broker_percentage`, each of
    /// those partitions where the broker is active and in the ISR gets it
    /// back as leader (the ISR is unchanged).
    fn balance_leaders(&mut self, out: &mut Vec<MetadataRecord>) {
        // preferred broker -> (its partitions, those it does not lead,
        // those it could lead now)
        type Tally = (u64, u64, Vec<(Uuid, i32)>);
        let mut per_broker: BTreeMap<i32, Tally> = BTreeMap::new();
        for t in self.working.topics.values() {
            for (&idx, p) in &t.partitions {
                let Some(&preferred) = p.replicas.first() else {
                    continue;
                };
                let tally = per_broker.entry(preferred).or_default();
                tally.0 += 1;
                if p.leader != preferred {
                    tally.1 += 1;
                    if self.preferred_movable(p).is_some() {
                        tally.2.push((t.id, idx));
                    }
                }
            }
        }
        let percentage = u64::from(self.config.leader_imbalance_per_broker_percentage);
        let mut changes = Vec::new();
        for (broker, (total, elsewhere, movable)) in per_broker {
            // elsewhere / total > percentage / 100, in integers.
            if movable.is_empty() || elsewhere * 100 <= percentage * total {
                continue;
            }
            tracing::info!(
                broker_id = broker,
                partitions = movable.len(),
                imbalance_percent = elsewhere * 100 / total,
                "preferred leader election"
            );
            for (topic_id, partition) in movable {
                changes.push(MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    leader: Some(broker),
                    isr: None,
                    replicas: None,
                });
            }
        }
        for c in changes {
            self.propose(out, c);
        }
    }

    fn fence(&mut self, id: i32, epoch: i64, out: &mut Vec<MetadataRecord>) {
        self.remove_from_partitions(id, out);
        self.propose(
            out,
            MetadataRecord::FenceBroker {
                broker_id: id,
                broker_epoch: epoch,
            },
        );
    }

    fn leads_any(&self, id: i32) -> bool {
        self.working
            .topics
            .values()
            .any(|t| t.partitions.values().any(|p| p.leader == id))
    }

    /// First replica (in replica order) that is in `isr`, active, and not
    /// `exclude`; [`NO_LEADER`] if none.
    fn elect(&self, p: &PartitionImage, isr: &[i32], exclude: Option<i32>) -> i32 {
        p.replicas
            .iter()
            .copied()
            .find(|&r| Some(r) != exclude && isr.contains(&r) && self.working.is_active(r))
            .unwrap_or(NO_LEADER)
    }

    /// First active replica (in replica order) other than `exclude`: the
    /// unclean election's choice.
    fn elect_unclean(&self, p: &PartitionImage, exclude: Option<i32>) -> Option<i32> {
        p.replicas
            .iter()
            .copied()
            .find(|&r| Some(r) != exclude && self.working.is_active(r))
    }

    /// Whether unclean leader election is enabled for `topic`: its topic
    /// config if set to `true` or `false` (any case), else the broker default.
    pub fn unclean_leader_election_enabled(&self, topic: &str) -> bool {
        let value = self
            .working
            .configs
            .get(&(RESOURCE_TOPIC, topic.to_owned()))
            .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_ENABLE));
        match value.map(|v| v.trim()) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => self.config.unclean_leader_election_enable,
        }
    }

    /// Takes broker `b` out of every leadership and ISR, as Kafka does when
    /// a broker is fenced or enters controlled shutdown. A leader it gave up
    /// is replaced by the first active ISR member in replica order. If none
    /// is left: with unclean leader election enabled for the topic, the
    /// first active replica leads and is the whole ISR; otherwise the last
    /// ISR member stays in the ISR and the partition is left without a leader.
    fn remove_from_partitions(&mut self, b: i32, out: &mut Vec<MetadataRecord>) {
        let mut changes = Vec::new();
        for t in self.working.topics.values() {
            let unclean = self.unclean_leader_election_enabled(&t.name);
            for (&idx, p) in &t.partitions {
                if p.leader != b && !p.isr.contains(&b) {
                    continue;
                }
                let mut isr: Vec<i32> = p.isr.iter().copied().filter(|&r| r != b).collect();
                let mut leader = if p.leader != b
                    && p.leader != NO_LEADER
                    && isr.contains(&p.leader)
                    && self.working.is_active(p.leader)
                {
                    p.leader
                } else {
                    self.elect(p, &isr, Some(b))
                };
                if leader == NO_LEADER {
                    match self.elect_unclean(p, Some(b)).filter(|_| unclean) {
                        Some(u) => {
                            tracing::warn!(topic = %t.name, partition = idx, leader = u,
                                "unclean leader election");
                            leader = u;
                            isr = vec![u];
                        }
                        None if isr.is_empty() => isr = p.isr.clone(),
                        None => {}
                    }
                }
                if let Some(change) = partition_change(t.id, idx, p, leader, isr) {
                    changes.push(change);
                }
            }
        }
        for c in changes {
            self.propose(out, c);
        }
    }

    /// Elects a leader for every leaderless partition that lists `b` as a
    /// replica, `b` having just become active: the first active ISR member
    /// in replica order, or, with unclean leader election enabled for the
    /// topic, the first active replica, which becomes the whole ISR.
    fn elect_leaderless_with(&mut self, b: i32, out: &mut Vec<MetadataRecord>) {
        let mut changes = Vec::new();
        for t in self.working.topics.values() {
            let unclean = self.unclean_leader_election_enabled(&t.name);
            for (&idx, p) in &t.partitions {
                if p.leader != NO_LEADER || !p.replicas.contains(&b) {
                    continue;
                }
                let mut leader = self.elect(p, &p.isr, None);
                let mut isr = p.isr.clone();
                if leader == NO_LEADER && unclean {
                    if let Some(u) = self.elect_unclean(p, None) {
                        tracing::warn!(topic = %t.name, partition = idx, leader = u,
                            "unclean leader election");
                        leader = u;
                        isr = vec![u];
                    }
                }
                if let Some(change) = partition_change(t.id, idx, p, leader, isr) {
                    changes.push(change);
                }
            }
        }
        for c in changes {
            self.propose(out, c);
        }
    }

    /// The broker-level check of an AlterPartition request, answered as the
    /// request's top-level error: `STALE_BROKER_EPOCH` when the broker is
    /// not registered or registered with another epoch (Kafka's
    /// `checkBrokerEpoch`), else `NONE`.
    pub fn check_broker_epoch(&self, broker_id: i32, broker_epoch: i64) -> i16 {
        match self.working.broker(broker_id) {
            Some(b) if b.epoch == broker_epoch => NONE,
            _ => STALE_BROKER_EPOCH,
        }
    }

    /// AllocateProducerIds from a broker: the next block of
    /// [`PRODUCER_ID_BLOCK_SIZE`] ids, `(first id, length)`, and the record
    /// that hands it out. Refused with `STALE_BROKER_EPOCH` when the broker
    /// is not registered with that epoch (as Kafka), with
    /// `UNKNOWN_SERVER_ERROR` when the ids are exhausted.
    pub fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(Vec<MetadataRecord>, (i64, i32)), i16> {
        let error = self.check_broker_epoch(broker_id, broker_epoch);
        if error != NONE {
            return Err(error);
        }
        let first = self.working.next_producer_id;
        let Some(next) = first.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)) else {
            return Err(UNKNOWN_SERVER_ERROR);
        };
        let mut out = Vec::new();
        self.propose(
            &mut out,
            MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id: next,
            },
        );
        Ok((out, (first, PRODUCER_ID_BLOCK_SIZE)))
    }

    /// Handles one partition of an AlterPartition from a partition leader,
    /// with Kafka's checks in Kafka's order:
    ///
    /// 1. the broker epoch ([`check_broker_epoch`](Self::check_broker_epoch));
    /// 2. unknown topic id: `UNKNOWN_TOPIC_ID`; unknown partition:
    ///    `UNKNOWN_TOPIC_OR_PARTITION`;
    /// 3. a leader or partition epoch *newer* than this controller's:
    ///    `NOT_CONTROLLER` (this controller is likely stale);
    /// 4. an older leader epoch: `FENCED_LEADER_EPOCH`;
    /// 5. the sender is not the leader: `INVALID_REQUEST`;
    /// 6. an older partition epoch: `INVALID_UPDATE_VERSION`;
    /// 7. a new ISR that repeats a broker, names a non-replica, leaves out
    ///    the leader, or gives broker epochs for a different number of
    ///    members: `INVALID_REQUEST`; `RECOVERING` (this controller never
    ///    records a recovering leader, so every partition is `RECOVERED`
    ///    and may not go back): `INVALID_REQUEST`;
    /// 8. a new ISR member not registered, fenced, in controlled shutdown,
    ///    or whose given broker epoch (not -1) is not its registration's:
    ///    `INELIGIBLE_REPLICA`.
    ///
    /// On success the reply carries the state after the change; an ISR
    /// equal to the current one proposes nothing.
    pub fn alter_partition(
        &mut self,
        req: AlterPartitionReq,
    ) -> (Vec<MetadataRecord>, AlterPartitionReply) {
        let refuse = |error| AlterPartitionReply {
            error,
            leader: NO_LEADER,
            leader_epoch: -1,
            partition_epoch: -1,
            isr: Vec::new(),
        };
        let error = self.check_broker_epoch(req.broker_id, req.broker_epoch);
        if error != NONE {
            return (Vec::new(), refuse(error));
        }
        let Some(p) = self.working.partition_by_id(&req.topic_id, req.partition) else {
            let error = if self.working.topic_by_id(&req.topic_id).is_some() {
                UNKNOWN_TOPIC_OR_PARTITION
            } else {
                UNKNOWN_TOPIC_ID
            };
            return (Vec::new(), refuse(error));
        };
        let error = self.validate_alter(&req, p);
        if error != NONE {
            return (Vec::new(), refuse(error));
        }
        let mut out = Vec::new();
        if req.new_isr != p.isr {
            let change = MetadataRecord::PartitionChange {
                topic_id: req.topic_id,
                partition: req.partition,
                leader: None,
                isr: Some(req.new_isr.clone()),
                replicas: None,
            };
            self.propose(&mut out, change);
        }
        let reply = match self.working.partition_by_id(&req.topic_id, req.partition) {
            Some(p) => AlterPartitionReply {
                error: NONE,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: p.isr.clone(),
            },
            None => refuse(UNKNOWN_TOPIC_OR_PARTITION),
        };
        (out, reply)
    }

    /// Steps 3 to 8 of [`alter_partition`](Self::alter_partition).
    fn validate_alter(&self, req: &AlterPartitionReq, p: &PartitionImage) -> i16 {
        if req.leader_epoch > p.leader_epoch || req.partition_epoch > p.partition_epoch {
            return NOT_CONTROLLER;
        }
        if req.leader_epoch < p.leader_epoch {
            return FENCED_LEADER_EPOCH;
        }
        if req.broker_id != p.leader {
            return INVALID_REQUEST;
        }
        if req.partition_epoch < p.partition_epoch {
            return INVALID_UPDATE_VERSION;
        }
        let mut seen = BTreeSet::new();
        let valid_isr = req.new_isr.contains(&p.leader)
            && req
                .new_isr
                .iter()
                .all(|r| seen.insert(*r) && p.replicas.contains(r))
            && (req.new_isr_broker_epochs.is_empty()
                || req.new_isr_broker_epochs.len() == req.new_isr.len());
        if !valid_isr || req.leader_recovery_state != LEADER_RECOVERED {
            return INVALID_REQUEST;
        }
        let eligible = |(i, r): (usize, &i32)| {
            let given = req.new_isr_broker_epochs.get(i).copied().unwrap_or(-1);
            self.working
                .broker(*r)
                .is_some_and(|b| b.is_active() && (given == -1 || given == b.epoch))
        };
        if !req.new_isr.iter().enumerate().all(eligible) {
            return INELIGIBLE_REPLICA;
        }
        NONE
    }

    // ----------------------------------------------------------------
    // Topics
    // ----------------------------------------------------------------

    /// Handles CreateTopics. Topic names must have been validated by the
    /// caller. With `validate_only` nothing is proposed, but a name repeated
    /// within the batch is still refused.
    pub fn create_topics(
        &mut self,
        _now_ms: u64,
        topics: Vec<CreateTopicReq>,
        validate_only: bool,
    ) -> (Vec<MetadataRecord>, Vec<CreateTopicResult>) {
        let mut out = Vec::new();
        let mut batch = BTreeSet::new();
        let mut results = Vec::with_capacity(topics.len());
        for req in topics {
            let result = match self.create_topic(&req, validate_only, &mut batch, &mut out) {
                Ok((topic_id, num_partitions, replication_factor)) => CreateTopicResult {
                    name: req.name,
                    error: NONE,
                    message: None,
                    topic_id,
                    num_partitions,
                    replication_factor,
                },
                Err((error, message)) => CreateTopicResult {
                    name: req.name,
                    error,
                    message: Some(message),
                    topic_id: Uuid::nil(),
                    num_partitions: -1,
                    replication_factor: -1,
                },
            };
            results.push(result);
        }
        (out, results)
    }

    fn create_topic(
        &mut self,
        req: &CreateTopicReq,
        validate_only: bool,
        batch: &mut BTreeSet<String>,
        out: &mut Vec<MetadataRecord>,
    ) -> Result<(Uuid, i32, i16), CmdError> {
        if self.working.topic(&req.name).is_some() || batch.contains(&req.name) {
            return Err((
                TOPIC_ALREADY_EXISTS,
                format!("Topic '{}' already exists.", req.name),
            ));
        }
        let mut configs = BTreeMap::new();
        for (name, value) in &req.configs {
            let Some(value) = value else {
                return Err((
                    INVALID_CONFIG,
                    format!("Null value not supported for topic configs: {name}"),
                ));
            };
            if name.is_empty() {
                return Err((INVALID_CONFIG, "Empty topic config name.".to_owned()));
            }
            configs.insert(name.clone(), value.clone());
        }
        let placement: Placement = if !req.assignments.is_empty() {
            if req.num_partitions != -1 || req.replication_factor != -1 {
                return Err((
                    INVALID_REQUEST,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                     Both cannot be used at the same time."
                        .to_owned(),
                ));
            }
            self.manual_assignment(&req.assignments)?
        } else {
            let num_partitions = if req.num_partitions == -1 {
                self.config.num_partitions
            } else {
                req.num_partitions
            };
            let rf = if req.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                req.replication_factor
            };
            check_partition_count(num_partitions)?;
            let brokers = self.usable_brokers_for(rf)?;
            if validate_only {
                // Placement is not needed to answer; keep the rng untouched.
                batch.insert(req.name.clone());
                return Ok((Uuid::nil(), num_partitions, rf));
            }
            let rf = rf as usize;
            self.place(&brokers, 0, num_partitions, rf)
                .into_iter()
                .map(|r| (r.clone(), r))
                .collect()
        };
        let num_partitions = placement.len() as i32;
        let rf = placement
            .first()
            .map_or(0, |(r, _)| i16::try_from(r.len()).unwrap_or(i16::MAX));
        batch.insert(req.name.clone());
        if validate_only {
            return Ok((Uuid::nil(), num_partitions, rf));
        }
        let topic_id = self.new_topic_id();
        self.propose(
            out,
            MetadataRecord::Topic {
                name: req.name.clone(),
                topic_id,
            },
        );
        for (name, value) in configs {
            self.propose(
                out,
                MetadataRecord::Config {
                    resource_type: RESOURCE_TOPIC,
                    resource_name: req.name.clone(),
                    name,
                    value: Some(value),
                },
            );
        }
        for (idx, (replicas, isr)) in placement.into_iter().enumerate() {
            let leader = isr.first().copied().unwrap_or(NO_LEADER);
            self.propose(
                out,
                MetadataRecord::Partition {
                    topic_id,
                    partition: idx as i32,
                    replicas,
                    isr,
                    leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            );
        }
        Ok((topic_id, num_partitions, rf))
    }

    /// Validates explicit `(partition, replicas)` assignments of a new
    /// topic; returns `(replicas, isr)` per partition in partition order.
    fn manual_assignment(&self, assignments: &[(i32, Vec<i32>)]) -> Result<Placement, CmdError> {
        let by_partition: BTreeMap<i32, &Vec<i32>> =
            assignments.iter().map(|(p, r)| (*p, r)).collect();
        let consecutive = by_partition.len() == assignments.len()
            && by_partition.keys().copied().eq(0..assignments.len() as i32);
        if !consecutive {
            return Err((
                INVALID_REPLICA_ASSIGNMENT,
                "The manual partition assignment partitions should be a consecutive 0-based integer sequence."
                    .to_owned(),
            ));
        }
        check_partition_count(i32::try_from(assignments.len()).unwrap_or(i32::MAX))?;
        let rf = by_partition.values().next().map_or(0, |r| r.len());
        by_partition
            .iter()
            .map(|(&p, replicas)| self.check_manual_replicas(p, replicas, rf))
            .collect()
    }

    /// Checks one explicit replica list; returns `(replicas, isr)` where the
    /// ISR is the active replicas.
    fn check_manual_replicas(
        &self,
        partition: i32,
        replicas: &[i32],
        rf: usize,
    ) -> Result<(Vec<i32>, Vec<i32>), CmdError> {
        let bad = |m: String| Err((INVALID_REPLICA_ASSIGNMENT, m));
        if replicas.is_empty() {
            return bad(format!(
                "The manual partition assignment includes an empty replica list for partition {partition}."
            ));
        }
        if replicas.len() != rf {
            return bad(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not \
                 consistent with previous partitions, which have {rf} replica(s).",
                replicas.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for &r in replicas {
            if !seen.insert(r) {
                return bad(format!(
                    "The manual partition assignment includes the broker {r} more than once."
                ));
            }
            if self.working.broker(r).is_none() {
                return bad(format!(
                    "The manual partition assignment includes broker {r}, but no such broker is registered."
                ));
            }
        }
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|&r| self.working.is_active(r))
            .collect();
        if isr.is_empty() {
            return bad(format!(
                "All brokers specified in the manual partition assignment for partition {partition} \
                 are fenced or in controlled shutdown."
            ));
        }
        Ok((replicas.to_vec(), isr))
    }

    /// The brokers automatic placement may use, if there are at least `rf`.
    fn usable_brokers_for(&self, rf: i16) -> Result<Vec<i32>, CmdError> {
        let brokers = self.working.active_brokers();
        if rf <= 0 {
            return Err((
                INVALID_REPLICATION_FACTOR,
                format!("Replication factor must be larger than 0, but was {rf}."),
            ));
        }
        if rf as usize > brokers.len() {
            return Err((
                INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} \
                     cannot be reached because only {} broker(s) are registered and unfenced.",
                    brokers.len()
                ),
            ));
        }
        Ok(brokers)
    }

    /// Kafka's rack-unaware placement: partition `p`'s first replica (its
    /// leader) is `brokers[(start + p) % n]`, the others follow at distinct
    /// shifts `1 + (shift + j) % (n - 1)`, and `shift` grows by one each
    /// time `p` wraps around the brokers. `start` and `shift` are random.
    /// `rf` must be in `1..=brokers.len()`.
    fn place(
        &mut self,
        brokers: &[i32],
        first_partition: i32,
        count: i32,
        rf: usize,
    ) -> Vec<Vec<i32>> {
        let n = brokers.len();
        if n == 0 || rf == 0 || rf > n || count <= 0 {
            return Vec::new();
        }
        let start = self.rng.gen_range(0..n);
        let mut shift = self.rng.gen_range(0..n);
        let first_partition = first_partition.max(0) as usize;
        let mut out = Vec::with_capacity(count as usize);
        for p in first_partition..first_partition + count as usize {
            if p > 0 && p % n == 0 {
                shift += 1;
            }
            let first = (start + p) % n;
            let mut replicas = Vec::with_capacity(rf);
            replicas.push(brokers[first]);
            for j in 0..rf - 1 {
                let s = 1 + (shift + j) % (n - 1);
                replicas.push(brokers[(first + s) % n]);
            }
            out.push(replicas);
        }
        out
    }

    fn new_topic_id(&mut self) -> Uuid {
        loop {
            let mut bytes = [0u8; 16];
            self.rng.fill_bytes(&mut bytes);
            let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
            if !self.working.topic_names_by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// Handles DeleteTopics: by name (unknown: `UNKNOWN_TOPIC_OR_PARTITION`)
    /// then by id (unknown: `UNKNOWN_TOPIC_ID`). Results come in that order.
    pub fn delete_topics(
        &mut self,
        names: Vec<String>,
        ids: Vec<Uuid>,
    ) -> (Vec<MetadataRecord>, Vec<DeleteTopicResult>) {
        let mut out = Vec::new();
        let mut results = Vec::with_capacity(names.len() + ids.len());
        for name in names {
            let result = match self.working.topic(&name).map(|t| t.id) {
                Some(topic_id) => {
                    self.propose(&mut out, MetadataRecord::RemoveTopic { topic_id });
                    DeleteTopicResult {
                        name: Some(name),
                        topic_id,
                        error: NONE,
                    }
                }
                None => DeleteTopicResult {
                    name: Some(name),
                    topic_id: Uuid::nil(),
                    error: UNKNOWN_TOPIC_OR_PARTITION,
                },
            };
            results.push(result);
        }
        for topic_id in ids {
            let result = match self.working.topic_by_id(&topic_id).map(|t| t.name.clone()) {
                Some(name) => {
                    self.propose(&mut out, MetadataRecord::RemoveTopic { topic_id });
                    DeleteTopicResult {
                        name: Some(name),
                        topic_id,
                        error: NONE,
                    }
                }
                None => DeleteTopicResult {
                    name: None,
                    topic_id,
                    error: UNKNOWN_TOPIC_ID,
                },
            };
            results.push(result);
        }
        (out, results)
    }

    /// Handles CreatePartitions: `count` is the new total. New partitions
    /// keep the topic's replication factor and are placed like new topics'.
    pub fn create_partitions(
        &mut self,
        _now_ms: u64,
        reqs: Vec<CreatePartitionsReq>,
        validate_only: bool,
    ) -> (Vec<MetadataRecord>, Vec<CreatePartitionsResult>) {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut results = Vec::with_capacity(reqs.len());
        for req in reqs {
            let result = if !seen.insert(req.name.clone()) {
                Err((INVALID_REQUEST, "Duplicate topic name.".to_owned()))
            } else {
                self.create_partitions_one(&req, validate_only, &mut out)
            };
            results.push(match result {
                Ok(()) => (req.name, NONE, None),
                Err((code, message)) => (req.name, code, Some(message)),
            });
        }
        (out, results)
    }

    fn create_partitions_one(
        &mut self,
        req: &CreatePartitionsReq,
        validate_only: bool,
        out: &mut Vec<MetadataRecord>,
    ) -> Result<(), CmdError> {
        let Some(topic) = self.working.topic(&req.name) else {
            return Err((
                UNKNOWN_TOPIC_OR_PARTITION,
                format!("The topic '{}' does not exist.", req.name),
            ));
        };
        let topic_id = topic.id;
        let current = topic.partitions.keys().next_back().map_or(0, |&p| p + 1);
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(0, |p| p.replicas.len());
        if req.count == current {
            return Err((
                INVALID_PARTITIONS,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        if req.count < current {
            return Err((
                INVALID_PARTITIONS,
                format!(
                    "The topic {} currently has {current} partition(s); {} would not be an increase.",
                    req.name, req.count
                ),
            ));
        }
        check_partition_count(req.count)?;
        let add = req.count - current;
        let placement: Placement = if !req.assignments.is_empty() {
            if req.assignments.len() != add as usize {
                return Err((
                    INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "Attempted to add {add} additional partition(s), but only {} assignment(s) were specified.",
                        req.assignments.len()
                    ),
                ));
            }
            req.assignments
                .iter()
                .enumerate()
                .map(|(i, r)| self.check_manual_replicas(current + i as i32, r, rf))
                .collect::<Result<_, _>>()?
        } else {
            let brokers = self.usable_brokers_for(i16::try_from(rf).unwrap_or(i16::MAX))?;
            if validate_only {
                return Ok(());
            }
            self.place(&brokers, current, add, rf)
                .into_iter()
                .map(|r| (r.clone(), r))
                .collect()
        };
        if validate_only {
            return Ok(());
        }
        for (i, (replicas, isr)) in placement.into_iter().enumerate() {
            let leader = isr.first().copied().unwrap_or(NO_LEADER);
            self.propose(
                out,
                MetadataRecord::Partition {
                    topic_id,
                    partition: current + i as i32,
                    replicas,
                    isr,
                    leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            );
        }
        Ok(())
    }
}

fn check_partition_count(n: i32) -> Result<(), CmdError> {
    if n <= 0 {
        return Err((
            INVALID_PARTITIONS,
            format!("Number of partitions was set to an invalid non-positive value {n}."),
        ));
    }
    if n > MAX_PARTITIONS_PER_TOPIC {
        return Err((
            INVALID_PARTITIONS,
            format!("Number of partitions {n} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."),
        ));
    }
    Ok(())
}

/// The PartitionChange taking `p` to `(leader, isr)`, if anything changes.
fn partition_change(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    leader: i32,
    isr: Vec<i32>,
) -> Option<MetadataRecord> {
    let leader = (leader != p.leader).then_some(leader);
    let isr = (isr != p.isr).then_some(isr);
    if leader.is_none() && isr.is_none() {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader,
        isr,
        replicas: None,
    })
}

/// Whether two registrations name the same storage: the same non-empty set
/// of log directory ids. Kafka reserves the first 100 UUIDs (unassigned,
/// lost, migrating, ...) as directory ids that name no directory: a list
/// holding one proves nothing.
fn same_storage(a: &[Uuid], b: &[Uuid]) -> bool {
    let real = |dirs: &[Uuid]| {
        !dirs.is_empty() && dirs.iter().all(|d| d.as_u128() >= RESERVED_DIRECTORY_IDS)
    };
    if !real(a) || !real(b) {
        return false;
    }
    let a: BTreeSet<&Uuid> = a.iter().collect();
    let b: BTreeSet<&Uuid> = b.iter().collect();
    a == b
}

/// Directory ids below this are reserved (Kafka's `DirectoryId`).
const RESERVED_DIRECTORY_IDS: u128 = 100;
