//! The broker node: one broker process as a state machine.
//!
//! [`Node::step`] takes one [`Input`] and appends the [`Output`]s it causes.
//! Requests that must wait (a produce for its sync, a fetch for data, a
//! topic creation for its files) are parked as [`Op`]s, Kafka-purgatory style,
//! keyed by the partitions they wait on, and finished by a log event or a
//! deadline.

mod admin;
mod cluster;
mod cluster_admin;
mod controller_glue;
mod fetch;
mod group;
mod group_consumer_wire;
mod group_wire;
mod hw_checkpoint;
mod internal_load;
mod lifecycle;
mod offsets;
pub mod peers;
mod produce;
mod producer_ids;
pub mod quorum_store;
pub mod quorum_wire;
pub mod replication;
mod txn_host;
mod txn_markers;
mod txn_verify;
mod versions;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::{BrokerConfig, Durability};
use crate::diskio::DiskIo;
use crate::log::{LogConfig, LogEvent, LogState, PartitionLog};
use crate::protocol::{self, FrameDecoder, FrameError, RawRequest};
use crate::seam::{ConnId, DiskOp, DiskReply, DiskReqId, Input, Now, Output, TimerId};

/// A partition's handle inside the node (stable while the node lives).
pub type PartId = u32;
/// A parked request's handle.
type OpId = u64;

const TIMER_DEADLINES: TimerId = 1;
const TIMER_MAINTENANCE: TimerId = 2;
/// The metadata quorum's next deadline.
const TIMER_RAFT: TimerId = 3;
/// The broker's next registration or heartbeat.
const TIMER_LIFECYCLE: TimerId = 4;
/// The active controller's next session expiry check.
const TIMER_CONTROLLER: TimerId = 5;
/// A controlled shutdown gives up waiting for the controller.
const TIMER_SHUTDOWN: TimerId = 6;
/// Leaders' ISR checks and followers' fetch retries.
const TIMER_REPLICATION: TimerId = 7;
/// The group coordinator's next deadline (sessions, rebalances, writes).
const TIMER_GROUP: TimerId = 8;
/// Asking again for a block of producer ids.
const TIMER_PRODUCER_IDS: TimerId = 9;
/// The transaction coordinator: markers to retry, writes to time out, the abort check.
const TIMER_TXN: TimerId = 10;

/// How long an orderly stop waits for the controller to move leaderships away.
const CONTROLLED_SHUTDOWN_MS: u64 = 5_000;

/// The node's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for `Input::Start`.
    Idle,
    /// Reading the data directory and recovering logs; requests are queued.
    Recovering,
    Running,
    /// Finishing in-flight work before `Output::Stopped`.
    ShuttingDown,
    Stopped,
}

/// A topic and its partitions (index `i` of `partitions` is partition `i`).
#[derive(Debug)]
struct Topic {
    id: Uuid,
    /// Partition index -> handle. A cluster node hosts only the partitions
    /// whose replicas include it, so this may have gaps.
    partitions: BTreeMap<i32, PartId>,
}

/// One partition this node hosts.
struct Partition {
    topic: String,
    index: i32,
    log: PartitionLog,
    role: replication::ReplicaRole,
}

/// Who issued a disk request.
#[derive(Debug, Clone, Copy)]
enum DiskOwner {
    Log(PartId),
    /// The listing of the data directory at start.
    Startup,
    /// The metadata quorum's files.
    Quorum,
    /// `replication-offset-checkpoint`.
    HwCheckpoint(hw_checkpoint::HwStep),
    /// `producer-id-block` (a node without a quorum).
    ProducerIds(producer_ids::PidStep),
}

/// One client connection: its frame decoder and its answers, which are sent
/// strictly in request order even when they complete out of order.
struct Connection {
    decoder: FrameDecoder,
    /// Requests in arrival order; `Some` once answered (`Some(None)`: answered
    /// with nothing to send, as for acks=0 produce).
    answers: VecDeque<(u64, Option<Option<Bytes>>)>,
    next_seq: u64,
    /// Frames that arrived before the node finished recovering.
    queued: VecDeque<Bytes>,
    /// The client's address, as group members' `client_host`.
    peer: String,
}

/// Where an answer goes.
#[derive(Debug, Clone, Copy)]
struct ReplyTo {
    conn: ConnId,
    seq: u64,
    correlation_id: i32,
    version: i16,
}

/// A request that is waiting for something.
struct Op {
    reply: ReplyTo,
    deadline: Option<u64>,
    kind: OpKind,
}

enum OpKind {
    Produce(produce::PendingProduce),
    Fetch(fetch::PendingFetch),
    ListOffsets(offsets::PendingListOffsets),
    CreateTopics(admin::PendingCreate),
    DeleteTopics(admin::PendingDelete),
    /// An admin request forwarded to the active controller.
    Forward(lifecycle::PendingForward),
    /// Waiting for a block of producer ids.
    InitProducerId,
}

/// One broker process.
pub struct Node {
    config: BrokerConfig,
    log_config: LogConfig,
    rng: ChaCha8Rng,
    phase: Phase,
    conns: BTreeMap<ConnId, Connection>,
    topics: BTreeMap<String, Topic>,
    partitions: BTreeMap<PartId, Partition>,
    next_part: PartId,
    next_disk_req: DiskReqId,
    disk_owner: BTreeMap<DiskReqId, DiskOwner>,
    ops: BTreeMap<OpId, Op>,
    next_op: OpId,
    /// Parked ops to re-examine when a partition's log changes.
    waiters: BTreeMap<PartId, BTreeSet<OpId>>,
    /// Outstanding log reads: (partition, token) -> op.
    log_tokens: BTreeMap<(PartId, u64), OpId>,
    deadlines: BTreeSet<(u64, OpId)>,
    armed_deadline: Option<u64>,
    leader_epoch: i32,
    /// Cluster membership (metadata quorum, image, controller); `None` for
    /// the legacy single-node broker (no `process.roles`).
    cluster: Option<Box<cluster::Cluster>>,
    /// An orderly stop no longer waits for the controller.
    shutdown_gave_up: bool,
    /// The group coordinator over `__consumer_offsets`.
    groups: Box<group::GroupHost>,
    /// Producer ids for InitProducerId.
    pids: producer_ids::ProducerIds,
    /// Partitions each open transaction has added (KIP-890 verification).
    txn_verification: crate::txn::verification::TxnVerification,
    /// When this node last asked the controller to create each internal topic.
    internal_create_asked: BTreeMap<&'static str, u64>,
    /// The transaction coordinator over `__transaction_state`.
    txns: Box<txn_host::TxnHost>,
    /// Transactional batches held until their coordinator confirms them.
    pending_verifies: BTreeMap<u64, txn_verify::PendingVerify>,
    next_verify: u64,
}

impl Node {
    /// A new node. `seed` feeds every random choice the node makes (topic ids).
    pub fn new(config: BrokerConfig, seed: u64) -> Node {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cluster = config.is_cluster().then(|| {
            let mut id = [0u8; 16];
            rng.fill_bytes(&mut id);
            Box::new(cluster::Cluster::new(
                &config,
                rng.next_u64(),
                Uuid::from_bytes(id),
            ))
        });
        // Its own stream (not drawn from `rng`, so adding groups moved no topic id).
        let groups = Box::new(group::GroupHost::new(
            config.group.clone(),
            seed ^ 0x6772_6f75_7073,
        ));
        Node {
            pids: Default::default(),
            txn_verification: Default::default(),
            internal_create_asked: BTreeMap::new(),
            txns: Box::default(),
            pending_verifies: BTreeMap::new(),
            next_verify: 1,
            groups,
            cluster,
            shutdown_gave_up: false,
            log_config: LogConfig::from_broker(&config),
            config,
            rng,
            phase: Phase::Idle,
            conns: BTreeMap::new(),
            topics: BTreeMap::new(),
            partitions: BTreeMap::new(),
            next_part: 0,
            next_disk_req: 1,
            disk_owner: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_op: 1,
            waiters: BTreeMap::new(),
            log_tokens: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            armed_deadline: None,
            leader_epoch: 0,
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Names of the topics this node hosts, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    /// (log start offset, high watermark, log end offset) of a partition.
    pub fn partition_offsets(&self, topic: &str, partition: i32) -> Option<(i64, i64, i64)> {
        let part = self.topics.get(topic)?.partitions.get(&partition)?;
        let log = &self.partitions.get(part)?.log;
        Some((
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset(),
        ))
    }

    /// Every online partition's (topic, partition, log start, high watermark,
    /// log end), in topic then partition order. For invariant monitors; a log
    /// still recovering or failed has no offsets to show.
    pub fn partition_summary(&self) -> impl Iterator<Item = (&str, i32, i64, i64, i64)> + '_ {
        self.topics.iter().flat_map(move |(name, topic)| {
            topic.partitions.values().filter_map(move |part| {
                let p = self.partitions.get(part)?;
                if !matches!(p.log.state(), LogState::Online) {
                    return None;
                }
                let log = &p.log;
                Some((
                    name.as_str(),
                    p.index,
                    log.log_start_offset(),
                    log.high_watermark(),
                    log.log_end_offset(),
                ))
            })
        })
    }

    /// The node's metadata quorum state; `None` for a node not (yet) in a quorum.
    pub fn quorum_view(&self) -> Option<view::QuorumView> {
        use crate::raft::Role;
        let raft = self.cluster.as_ref()?.raft.as_ref()?;
        Some(view::QuorumView {
            node_id: self.config.node_id,
            is_voter: raft.is_voter(),
            role: match raft.role() {
                Role::Unattached => view::QuorumRole::Unattached,
                Role::Prospective => view::QuorumRole::Prospective,
                Role::Candidate => view::QuorumRole::Candidate,
                Role::Leader => view::QuorumRole::Leader,
                Role::Follower => view::QuorumRole::Follower,
                Role::Resigned => view::QuorumRole::Resigned,
                Role::Observer => view::QuorumRole::Observer,
            },
            epoch: raft.epoch(),
            leader: raft.leader(),
            voted_for: raft.voted_for(),
            high_watermark: raft.high_watermark(),
            log_start: raft.log_start(),
            log_end: raft.log_end(),
            durable_end: raft.durable_end(),
            snapshot: raft.snapshot_id(),
        })
    }

    /// The metadata log entry at `offset`, if this node holds it.
    pub fn quorum_entry(&self, offset: i64) -> Option<view::EntryDigest> {
        let raft = self.cluster.as_ref()?.raft.as_ref()?;
        let entry = raft.entry(offset)?;
        let mut crc = crc32c::crc32c(&[entry.kind as u8]);
        crc = crc32c::crc32c_append(crc, &entry.data);
        Some(view::EntryDigest {
            epoch: entry.epoch,
            crc,
        })
    }

    /// Every partition in this node's committed metadata image:
    /// (topic, partition, leader node id or -1, leader epoch). Empty for
    /// the legacy single-node broker.
    pub fn partition_leaders(&self) -> Vec<(String, i32, i32, i32)> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Vec::new();
        };
        cluster
            .image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |(i, p)| (t.name.clone(), *i, p.leader, p.leader_epoch))
            })
            .collect()
    }

    /// The committed metadata image, for tests and tools (cluster mode only).
    pub fn metadata_image(&self) -> Option<&crate::metadata::image::MetadataImage> {
        self.cluster.as_ref().map(|c| &c.image)
    }

    /// Partitions whose log has failed (KAFKA_STORAGE_ERROR) and stays
    /// offline until the node restarts.
    pub fn offline_partitions(&self) -> usize {
        self.partitions
            .values()
            .filter(|p| matches!(p.log.state(), LogState::Failed(_)))
            .count()
    }

    /// Deliver one input; outputs are appended to `out`.
    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        if self.phase == Phase::Stopped {
            return;
        }
        match input {
            Input::Start => self.start(out),
            Input::Accepted { conn, peer } => {
                debug!(conn, %peer, "connection accepted");
                self.conns.insert(
                    conn,
                    Connection {
                        decoder: FrameDecoder::new(),
                        answers: VecDeque::new(),
                        next_seq: 0,
                        queued: VecDeque::new(),
                        peer: format!("/{peer}"),
                    },
                );
            }
            Input::Received { conn, bytes } if self.is_peer_conn(conn) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.peers.on_received(now.mono_nanos, conn, &bytes, out);
                }
                self.drain_peer_events(now, out);
            }
            Input::Received { conn, bytes } => self.on_received(now, conn, &bytes, out),
            Input::Closed { conn } | Input::ConnectFailed { conn } if self.is_peer_conn(conn) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.peers.on_lost(now.mono_nanos, conn);
                }
                self.drain_peer_events(now, out);
            }
            Input::Closed { conn } => {
                debug!(conn, "connection closed");
                self.conns.remove(&conn);
            }
            Input::Connected { conn } if self.is_peer_conn(conn) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.peers.on_connected(conn, out);
                }
            }
            // An outbound connection nobody asked for (a previous life's).
            Input::Connected { conn } | Input::ConnectFailed { conn } => {
                out.push(Output::Close { conn });
            }
            Input::TimerFired { id } => match id {
                TIMER_DEADLINES => {
                    self.armed_deadline = None;
                    self.expire_deadlines(now, out);
                }
                TIMER_MAINTENANCE => self.maintain(now, out),
                TIMER_RAFT => self.on_raft_timer(now, out),
                TIMER_LIFECYCLE => self.on_lifecycle_timer(now, out),
                TIMER_CONTROLLER => self.on_controller_timer(now, out),
                TIMER_SHUTDOWN => self.shutdown_gave_up = true,
                TIMER_REPLICATION => self.on_replication_timer(now, out),
                TIMER_GROUP => self.on_group_timer(now, out),
                TIMER_PRODUCER_IDS => self.on_producer_ids_timer(now, out),
                TIMER_TXN => self.on_txn_timer(now, out),
                _ => {}
            },
            Input::DiskDone { req, result } => match self.disk_owner.remove(&req) {
                Some(DiskOwner::Log(part)) => {
                    self.with_log(part, out, |log, io| log.on_disk_done(req, result, now, io));
                    self.after_log_activity(part, now, out);
                }
                Some(DiskOwner::Startup) => self.on_data_dir_listed(now, result, out),
                Some(DiskOwner::Quorum) => self.quorum_disk_done(now, req, result, out),
                Some(DiskOwner::ProducerIds(step)) => {
                    self.producer_ids_disk_done(now, step, result, out)
                }
                Some(DiskOwner::HwCheckpoint(step)) => {
                    self.hw_checkpoint_disk_done(now, step, result, out)
                }
                None => warn!(req, "completion of an unknown disk request"),
            },
            Input::Shutdown => self.begin_shutdown(now, out),
        }
        if self.cluster.as_ref().is_some_and(|c| c.peers.has_events()) {
            self.drain_peer_events(now, out);
        }
        self.arm_deadline_timer(out);
        if self.phase == Phase::ShuttingDown {
            self.maybe_finish_shutdown(out);
        }
    }

    // ----- lifecycle -----

    fn start(&mut self, out: &mut Vec<Output>) {
        if self.phase != Phase::Idle {
            return;
        }
        info!(
            node = self.config.node_id,
            "starting: reading the data directory"
        );
        self.phase = Phase::Recovering;
        let mut io = DiskIo::new(&mut self.next_disk_req, out);
        let req = io.submit(DiskOp::List {
            path: String::new(),
        });
        self.disk_owner.insert(req, DiskOwner::Startup);
        self.cluster_start(out);
    }

    fn is_peer_conn(&self, conn: ConnId) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.peers.owns(conn))
    }

    fn on_data_dir_listed(
        &mut self,
        now: Now,
        result: Result<DiskReply, crate::seam::DiskError>,
        out: &mut Vec<Output>,
    ) {
        let entries = match result {
            Ok(DiskReply::Listing(entries)) => entries,
            Ok(other) => {
                warn!(?other, "unexpected reply to listing the data directory");
                Vec::new()
            }
            Err(e) if e.kind == crate::seam::DiskErrorKind::NotFound => Vec::new(),
            Err(e) => {
                // Serving without knowing what is on disk could overwrite it.
                tracing::error!(error = %e, "cannot list the data directory; stopping");
                self.phase = Phase::Stopped;
                out.push(Output::Stopped);
                return;
            }
        };
        if self.cluster.is_some()
            && entries
                .iter()
                .any(|e| !e.is_dir && e.name == hw_checkpoint::FILE)
        {
            self.hw_checkpoint_read(out);
        }
        if self.cluster.is_none()
            && entries
                .iter()
                .any(|e| !e.is_dir && e.name == producer_ids::FILE)
        {
            self.producer_ids_read(out);
        }
        // Partition directories are named `<topic>-<partition>`.
        let mut found: BTreeMap<String, BTreeMap<i32, String>> = BTreeMap::new();
        for entry in entries
            .into_iter()
            .filter(|e| e.is_dir && e.name != quorum_store::DIR)
        {
            let parsed = entry.name.rsplit_once('-').and_then(|(topic, index)| {
                let index: i32 = index.parse().ok()?;
                (protocol::validate_topic_name(topic).is_ok() && index >= 0)
                    .then(|| (topic.to_string(), index))
            });
            match parsed {
                Some((topic, index)) => {
                    found.entry(topic).or_default().insert(index, entry.name);
                }
                None => warn!(name = %entry.name, "ignoring a directory that is not a partition"),
            }
        }
        for (topic, dirs) in found {
            let mut parts = BTreeMap::new();
            for (expected, (index, dir)) in dirs.into_iter().enumerate() {
                // A cluster node hosts only some partitions of a topic.
                if index as usize != expected && !self.config.is_cluster() {
                    warn!(%topic, index, "partition directories are not contiguous; ignoring the rest");
                    break;
                }
                let part = self.add_partition(
                    &topic,
                    index,
                    |log_config, io| PartitionLog::open(dir, log_config, now, io),
                    out,
                );
                parts.insert(index, part);
            }
            info!(%topic, partitions = parts.len(), "recovering topic");
            self.topics.insert(
                topic,
                Topic {
                    id: Uuid::nil(),
                    partitions: parts,
                },
            );
        }
        self.check_recovered(now, out);
    }

    fn check_recovered(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.phase != Phase::Recovering {
            return;
        }
        if self
            .partitions
            .values()
            .any(|p| matches!(p.log.state(), LogState::Opening))
            || !self.quorum_ready()
            || self.hw_checkpoint_busy()
            || self.producer_ids_busy()
        {
            return;
        }
        self.hw_checkpoint_apply(out);
        self.producer_ids_recovered();
        // Recovered topics take their id from their first partition's metadata.
        for topic in self.topics.values_mut() {
            if topic.id.is_nil() {
                if let Some(p) = topic
                    .partitions
                    .values()
                    .next()
                    .and_then(|p| self.partitions.get(p))
                {
                    topic.id = Uuid::from_bytes(p.log.topic_id());
                }
            }
        }
        info!(
            topics = self.topics.len(),
            partitions = self.partitions.len(),
            "recovery complete; serving"
        );
        self.phase = Phase::Running;
        let interval = self.maintenance_interval_ms();
        out.push(Output::SetTimer {
            id: TIMER_MAINTENANCE,
            at_nanos: now.after_millis(interval),
        });
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            while let Some(frame) = self.conns.get_mut(&conn).and_then(|c| c.queued.pop_front()) {
                self.handle_frame(now, conn, frame, out);
            }
        }
        self.lifecycle_kick(now, out);
        self.pump_raft(now, out);
        self.reconcile_replicas(now, out);
        self.coordinators_reconcile(now, out);
    }

    fn maintenance_interval_ms(&self) -> u64 {
        let mut interval = self.config.log_retention_check_interval_ms;
        if self.config.durability == Durability::PageCache {
            interval = interval.min(self.config.log_flush_interval_ms);
        }
        interval.max(1)
    }

    fn maintain(&mut self, now: Now, out: &mut Vec<Output>) {
        let parts: Vec<PartId> = self.partitions.keys().copied().collect();
        for part in parts {
            self.with_log(part, out, |log, io| log.maintain(now, io));
            self.after_log_activity(part, now, out);
        }
        if self.phase == Phase::Running {
            let interval = self.maintenance_interval_ms();
            out.push(Output::SetTimer {
                id: TIMER_MAINTENANCE,
                at_nanos: now.after_millis(interval),
            });
        }
    }

    fn begin_shutdown(&mut self, now: Now, out: &mut Vec<Output>) {
        if matches!(self.phase, Phase::ShuttingDown | Phase::Stopped) {
            return;
        }
        info!("shutting down: finishing in-flight requests and syncing logs");
        self.phase = Phase::ShuttingDown;
        out.push(Output::CancelTimer {
            id: TIMER_MAINTENANCE,
        });
        // Parked fetches answer now with what they have; produces wait for the flush.
        let fetches: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(op.kind, OpKind::Fetch(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in fetches {
            self.fetch_force(id, now, out);
        }
        let parts: Vec<PartId> = self.partitions.keys().copied().collect();
        for part in parts {
            self.with_log(part, out, |log, io| log.flush(io));
            self.after_log_activity(part, now, out);
        }
        self.hw_checkpoint_maybe_write(now, true, out);
        // In a cluster: ask the controller to move our leaderships away
        // (controlled shutdown) and hand quorum leadership over.
        let registered = self.cluster.as_ref().is_some_and(|c| {
            matches!(
                c.lifecycle.registration,
                lifecycle::Registration::Registered { .. }
            )
        });
        if let Some(c) = self.cluster.as_mut() {
            if registered && self.config.is_broker() {
                c.lifecycle.want_shutdown = true;
            }
            if let Some(raft) = c.raft.as_mut() {
                raft.resign(now.mono_millis());
            }
            c.controller = None;
        }
        if registered {
            self.lifecycle_kick(now, out);
            out.push(Output::SetTimer {
                id: TIMER_SHUTDOWN,
                at_nanos: now.after_millis(CONTROLLED_SHUTDOWN_MS),
            });
        } else {
            self.shutdown_gave_up = true;
        }
        self.pump_raft(now, out);
    }

    fn maybe_finish_shutdown(&mut self, out: &mut Vec<Output>) {
        if !self.ops.is_empty()
            || self.partitions.values().any(|p| !p.log.is_idle())
            || self.hw_checkpoint_busy()
        {
            return;
        }
        if let Some(c) = self.cluster.as_mut() {
            let granted = c.lifecycle.shutdown_granted || !c.lifecycle.want_shutdown;
            if !(granted || self.shutdown_gave_up) || !c.store.is_idle() {
                return;
            }
            c.peers.close_all(out);
            out.push(Output::CancelTimer { id: TIMER_RAFT });
            out.push(Output::CancelTimer {
                id: TIMER_LIFECYCLE,
            });
            out.push(Output::CancelTimer { id: TIMER_SHUTDOWN });
        }
        for (conn, _) in std::mem::take(&mut self.conns) {
            out.push(Output::Close { conn });
        }
        out.push(Output::CancelTimer {
            id: TIMER_DEADLINES,
        });
        self.phase = Phase::Stopped;
        info!("stopped");
        out.push(Output::Stopped);
    }

    // ----- connections and requests -----

    fn on_received(&mut self, now: Now, conn: ConnId, bytes: &[u8], out: &mut Vec<Output>) {
        let max = self.config.socket_request_max_bytes;
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        connection.decoder.extend(bytes);
        loop {
            let Some(connection) = self.conns.get_mut(&conn) else {
                return;
            };
            match connection.decoder.next_frame(max) {
                Ok(Some(frame)) => match self.phase {
                    Phase::Running => self.handle_frame(now, conn, frame, out),
                    Phase::Idle | Phase::Recovering => connection.queued.push_back(frame),
                    // No new work once shutting down; the connection closes at the end.
                    Phase::ShuttingDown | Phase::Stopped => {}
                },
                Ok(None) => return,
                Err(e) => {
                    self.close_for(conn, &e, out);
                    return;
                }
            }
        }
    }

    fn close_for(&mut self, conn: ConnId, error: &FrameError, out: &mut Vec<Output>) {
        warn!(conn, %error, "closing connection");
        self.conns.remove(&conn);
        out.push(Output::Close { conn });
    }

    fn handle_frame(&mut self, now: Now, conn: ConnId, frame: Bytes, out: &mut Vec<Output>) {
        let raw = match protocol::parse_request(frame) {
            Ok(raw) => raw,
            Err(e) => return self.close_for(conn, &e, out),
        };
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let seq = connection.next_seq;
        connection.next_seq += 1;
        connection.answers.push_back((seq, None));
        let reply = ReplyTo {
            conn,
            seq,
            correlation_id: raw.header.correlation_id,
            version: raw.api_version,
        };
        let (min, max) = protocol::supported_versions(raw.api_key).unwrap_or((0, -1));
        if raw.api_version < min || raw.api_version > max {
            return self.reject_version(reply, &raw, out);
        }
        let result = match raw.api_key {
            ApiKey::ApiVersions => self.handle_api_versions(reply, &raw, out),
            ApiKey::Metadata => self.handle_metadata(now, reply, &raw, out),
            ApiKey::CreateTopics | ApiKey::DeleteTopics | ApiKey::CreatePartitions
                if self.cluster.is_some() =>
            {
                self.route_admin(now, reply, &raw, out)
            }
            ApiKey::CreateTopics => self.handle_create_topics(now, reply, &raw, out),
            ApiKey::DeleteTopics => self.handle_delete_topics(now, reply, &raw, out),
            ApiKey::CreatePartitions => {
                self.admin_error_answer(
                    reply,
                    &raw,
                    kafka_protocol::error::ResponseError::InvalidRequest.code(),
                    out,
                );
                Ok(())
            }
            ApiKey::DescribeCluster => self.handle_describe_cluster(reply, &raw, out),
            ApiKey::DescribeQuorum => self.handle_describe_quorum(now, reply, &raw, out),
            ApiKey::BrokerRegistration => self.handle_broker_registration(now, reply, &raw, out),
            ApiKey::BrokerHeartbeat => self.handle_broker_heartbeat(now, reply, &raw, out),
            ApiKey::AlterPartition => self.handle_alter_partition(now, reply, &raw, out),
            ApiKey::AllocateProducerIds => self.handle_allocate_producer_ids(now, reply, &raw, out),
            ApiKey::InitProducerId => self.handle_init_producer_id(now, reply, &raw, out),
            ApiKey::Vote
            | ApiKey::BeginQuorumEpoch
            | ApiKey::EndQuorumEpoch
            | ApiKey::FetchSnapshot => self.handle_quorum_api(now, reply, &raw, out),
            ApiKey::Produce => self.handle_produce(now, reply, &raw, out),
            ApiKey::WriteTxnMarkers => self.handle_write_txn_markers(now, reply, &raw, out),
            ApiKey::AddPartitionsToTxn => self.handle_add_partitions_to_txn(now, reply, &raw, out),
            ApiKey::EndTxn => self.handle_end_txn(now, reply, &raw, out),
            ApiKey::DescribeTransactions => self.handle_describe_transactions(reply, &raw, out),
            ApiKey::ListTransactions => self.handle_list_transactions(reply, &raw, out),
            ApiKey::Fetch => self.handle_fetch(now, reply, &raw, out),
            ApiKey::ListOffsets => self.handle_list_offsets(now, reply, &raw, out),
            ApiKey::OffsetForLeaderEpoch => self.handle_offset_for_leader_epoch(reply, &raw, out),
            ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::ListGroups
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete => self.handle_group_api(now, reply, &raw, out),
            ApiKey::ConsumerGroupHeartbeat | ApiKey::ConsumerGroupDescribe => {
                self.handle_consumer_group_api(now, reply, &raw, out)
            }
            other => Err(FrameError::UnknownApiKey(other as i16)),
        };
        if let Err(e) = result {
            self.close_for(conn, &e, out);
        }
    }

    /// Vote, BeginQuorumEpoch, EndQuorumEpoch and FetchSnapshot go to the
    /// metadata quorum (quorum Fetch is told apart inside `handle_fetch`).
    fn handle_quorum_api(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        use kafka_protocol::messages as m;
        let cluster_id = self.config.cluster_id.clone();
        let parsed = match raw.api_key {
            ApiKey::Vote => {
                quorum_wire::vote_from_wire(&decode::<m::VoteRequest>(raw)?, &cluster_id)
            }
            ApiKey::BeginQuorumEpoch => quorum_wire::begin_epoch_from_wire(
                &decode::<m::BeginQuorumEpochRequest>(raw)?,
                &cluster_id,
            ),
            ApiKey::EndQuorumEpoch => quorum_wire::end_epoch_from_wire(
                &decode::<m::EndQuorumEpochRequest>(raw)?,
                &cluster_id,
            ),
            _ => quorum_wire::fetch_snapshot_from_wire(
                &decode::<m::FetchSnapshotRequest>(raw)?,
                &cluster_id,
            ),
        };
        self.quorum_request(now, reply, raw.api_key, parsed, out);
        Ok(())
    }

    /// Encode and queue an answer; sends every answer that is now at the head.
    fn respond<T: Encodable + HeaderVersion>(
        &mut self,
        reply: ReplyTo,
        body: &T,
        out: &mut Vec<Output>,
    ) {
        match protocol::encode_response(reply.correlation_id, reply.version, body) {
            Ok(bytes) => self.answer(reply, Some(bytes), out),
            Err(e) => {
                warn!(conn = reply.conn, error = %e, "cannot encode a response; closing");
                self.conns.remove(&reply.conn);
                out.push(Output::Close { conn: reply.conn });
            }
        }
    }

    /// Record the answer (or its absence) for a request and flush in order.
    fn answer(&mut self, reply: ReplyTo, bytes: Option<Bytes>, out: &mut Vec<Output>) {
        let Some(connection) = self.conns.get_mut(&reply.conn) else {
            return; // the client went away; the work was still done
        };
        if let Some(slot) = connection.answers.iter_mut().find(|(s, _)| *s == reply.seq) {
            slot.1 = Some(bytes);
        }
        while let Some((_, Some(_))) = connection.answers.front() {
            if let Some((_, Some(Some(bytes)))) = connection.answers.pop_front() {
                out.push(Output::Send {
                    conn: reply.conn,
                    bytes,
                });
            }
        }
    }

    // ----- partitions and logs -----

    fn add_partition(
        &mut self,
        topic: &str,
        index: i32,
        make: impl FnOnce(LogConfig, &mut DiskIo) -> PartitionLog,
        out: &mut Vec<Output>,
    ) -> PartId {
        let part = self.next_part;
        self.next_part += 1;
        let first = self.next_disk_req;
        let log = make(
            self.log_config.clone(),
            &mut DiskIo::new(&mut self.next_disk_req, out),
        );
        for req in first..self.next_disk_req {
            self.disk_owner.insert(req, DiskOwner::Log(part));
        }
        self.partitions.insert(
            part,
            Partition {
                topic: topic.to_string(),
                index,
                log,
                role: if self.cluster.is_some() {
                    replication::ReplicaRole::Offline
                } else {
                    replication::ReplicaRole::Standalone
                },
            },
        );
        part
    }

    /// Run `f` on a partition's log, recording which disk requests it issued.
    fn with_log<R>(
        &mut self,
        part: PartId,
        out: &mut Vec<Output>,
        f: impl FnOnce(&mut PartitionLog, &mut DiskIo) -> R,
    ) -> Option<R> {
        let first = self.next_disk_req;
        let partition = self.partitions.get_mut(&part)?;
        let result = f(
            &mut partition.log,
            &mut DiskIo::new(&mut self.next_disk_req, out),
        );
        for req in first..self.next_disk_req {
            self.disk_owner.insert(req, DiskOwner::Log(part));
        }
        Some(result)
    }

    /// Handle what a log reports and wake the requests waiting on it.
    fn after_log_activity(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        while let Some(event) = self
            .partitions
            .get_mut(&part)
            .and_then(|p| p.log.poll_event())
        {
            self.dispatch_log_event(part, event, now, out);
        }
        self.replica_log_activity(part, now, out);
        self.wake(part, now, out);
        self.coordinators_log_activity(part, now, out);
    }

    fn dispatch_log_event(
        &mut self,
        part: PartId,
        event: LogEvent,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        match event {
            LogEvent::Opened => {
                self.check_recovered(now, out);
                if self.phase == Phase::Running {
                    self.reconcile_replicas(now, out);
                    self.coordinators_reconcile(now, out);
                }
            }
            LogEvent::Truncated { .. } => self.replica_truncated(part, now, out),
            LogEvent::Failed { reason } => {
                if let Some(p) = self.partitions.get(&part) {
                    tracing::error!(topic = %p.topic, partition = p.index, %reason,
                        "log failed; partition offline (KAFKA_STORAGE_ERROR)");
                }
                self.check_recovered(now, out);
            }
            LogEvent::ReadDone { token, result } => {
                if let Some(op) = self.log_tokens.remove(&(part, token)) {
                    self.fetch_read_done(op, part, token, result, out);
                } else if let Some(index) = self.groups.take_read(part, token) {
                    self.group_read_done(index, result, now, out);
                } else if let Some(index) = self.txns.take_read(part, token) {
                    self.txn_read_done(index, result, now, out);
                }
            }
            LogEvent::TimestampFound { token, result } => {
                if let Some(op) = self.log_tokens.remove(&(part, token)) {
                    self.list_offsets_found(op, part, token, result, out);
                }
            }
            LogEvent::Deleted => {
                self.partitions.remove(&part);
            }
        }
    }

    /// Re-examine every parked op waiting on `part`.
    fn wake(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        let Some(waiting) = self.waiters.get(&part).cloned() else {
            return;
        };
        for id in waiting {
            self.poll_op(id, now, out);
        }
    }

    fn poll_op(&mut self, id: OpId, now: Now, out: &mut Vec<Output>) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        match op.kind {
            OpKind::Produce(_) => self.produce_poll(id, false, out),
            OpKind::Fetch(_) => self.fetch_poll(id, now, out),
            OpKind::CreateTopics(_) => self.create_poll(id, out),
            OpKind::DeleteTopics(_) => self.delete_poll(id, out),
            OpKind::ListOffsets(_) | OpKind::Forward(_) | OpKind::InitProducerId => {}
        }
    }

    fn park(
        &mut self,
        reply: ReplyTo,
        deadline: Option<u64>,
        kind: OpKind,
        parts: &[PartId],
    ) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        for part in parts {
            self.waiters.entry(*part).or_default().insert(id);
        }
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
        self.ops.insert(
            id,
            Op {
                reply,
                deadline,
                kind,
            },
        );
        id
    }

    /// Remove a parked op from every index and hand it back.
    fn unpark(&mut self, id: OpId) -> Option<Op> {
        let op = self.ops.remove(&id)?;
        self.waiters.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        self.log_tokens.retain(|_, op_id| *op_id != id);
        if let Some(at) = op.deadline {
            self.deadlines.remove(&(at, id));
        }
        Some(op)
    }

    fn expire_deadlines(&mut self, now: Now, out: &mut Vec<Output>) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now.mono_nanos {
                break;
            }
            self.deadlines.remove(&(at, id));
            if let Some(op) = self.ops.get_mut(&id) {
                op.deadline = None;
            }
            match self.ops.get(&id).map(|op| &op.kind) {
                Some(OpKind::Produce(_)) => self.produce_poll(id, true, out),
                Some(OpKind::Fetch(_)) => self.fetch_force(id, now, out),
                Some(OpKind::CreateTopics(_)) => self.create_expire(id, out),
                Some(OpKind::DeleteTopics(_)) => self.delete_expire(id, out),
                Some(OpKind::Forward(_)) => self.forward_expire(id, out),
                Some(OpKind::InitProducerId) => self.init_producer_id_expire(id, out),
                Some(OpKind::ListOffsets(_)) | None => {}
            }
        }
    }

    fn arm_deadline_timer(&mut self, out: &mut Vec<Output>) {
        let earliest = self.deadlines.first().map(|(at, _)| *at);
        if earliest != self.armed_deadline {
            match earliest {
                Some(at) => out.push(Output::SetTimer {
                    id: TIMER_DEADLINES,
                    at_nanos: at,
                }),
                None => out.push(Output::CancelTimer {
                    id: TIMER_DEADLINES,
                }),
            }
            self.armed_deadline = earliest;
        }
    }

    /// The partition of `topic` numbered `index`, if hosted here.
    fn lookup(&self, topic: &str, index: i32) -> Option<PartId> {
        self.topics.get(topic)?.partitions.get(&index).copied()
    }

    fn new_topic_id(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        // RFC 4122 version 4 layout, like Kafka's random topic ids.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid::from_bytes(bytes)
    }
}

/// Used by handlers: a request that cannot be decoded closes the connection.
type HandlerResult = Result<(), FrameError>;

fn decode<T: kafka_protocol::protocol::Decodable>(raw: &RawRequest) -> Result<T, FrameError> {
    protocol::decode_body(raw)
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod group_consumer_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod idempotence_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
