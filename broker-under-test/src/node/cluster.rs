//! A node as a member of a KRaft cluster: its metadata quorum replica, the
//! metadata image it builds from the committed log, and what follows from
//! that image on this node (which partitions it hosts).
//!
//! The layers, lowest first: `raft` (the quorum, opaque entries),
//! `quorum_store` (its files), `quorum_wire` (its messages), `metadata`
//! (records, image, controller). This module drives them: it carries the
//! quorum's actions out, feeds it what comes back, applies committed
//! records in offset order, snapshots the image, and reconciles the local
//! partition logs with the image. The active controller's request handling
//! is in `controller_glue`, the broker's registration, heartbeats and
//! forwarding in `lifecycle`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::peers::{PeerEvent, PeerTag, Peers};
use super::quorum_store::{QuorumStore, StoreEvent};
use super::quorum_wire::{self as wire, WireRequest, WireResponse};
use super::{DiskOwner, Node, Phase, ReplyTo, Topic, TIMER_RAFT};
use crate::config::Durability;
use crate::diskio::DiskIo;
use crate::log::PartitionLog;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;
use crate::raft::{Action, EntryKind, Raft, RaftConfig, Snapshot};
use crate::seam::{DiskError, DiskReply, DiskReqId, NodeId, Now, Output};

/// A proposal waiting for the quorum to commit it, with its two possible answers.
pub(super) struct CommitWaiter {
    pub reply: ReplyTo,
    /// Sent once the proposal is committed.
    pub committed: Bytes,
    /// Sent if this node stops being the leader first.
    pub lost: Bytes,
}

pub(super) struct Cluster {
    pub store: QuorumStore,
    /// `None` until the quorum's state is recovered from disk.
    pub raft: Option<Raft>,
    pub peers: Peers,
    /// The committed metadata, applied up to `applied_end` (exclusive).
    pub image: MetadataImage,
    pub applied_end: i64,
    /// The active controller, on the quorum leader once its epoch's first
    /// entry is committed (so it starts from everything committed before).
    pub controller: Option<crate::metadata::controller::Controller>,
    pub commit_waiters: BTreeMap<i64, Vec<CommitWaiter>>,
    /// Inbound quorum requests by the token the core answers with.
    pub inbound: BTreeMap<u64, (ReplyTo, ApiKey)>,
    pub next_token: u64,
    pub lifecycle: super::lifecycle::BrokerLifecycle,
    /// Bytes of records applied since the last snapshot.
    pub bytes_since_snapshot: u64,
    pub snapshot_in_flight: bool,
    pub raft_timer: Option<u64>,
    pub seed: u64,
    pub replication: super::replication::Replication,
    pub hw_checkpoint: super::hw_checkpoint::HwCheckpoint,
}

impl Cluster {
    pub fn new(config: &crate::config::BrokerConfig, seed: u64, incarnation: Uuid) -> Cluster {
        Cluster {
            store: QuorumStore::new(
                &config.cluster_id,
                config.node_id,
                config.durability == Durability::Sync,
                seed,
            ),
            raft: None,
            peers: Peers::new(config.node_id),
            image: MetadataImage::new(),
            applied_end: 0,
            controller: None,
            commit_waiters: BTreeMap::new(),
            inbound: BTreeMap::new(),
            next_token: 1,
            lifecycle: super::lifecycle::BrokerLifecycle::new(incarnation),
            bytes_since_snapshot: 0,
            snapshot_in_flight: false,
            raft_timer: None,
            seed,
            replication: Default::default(),
            hw_checkpoint: Default::default(),
        }
    }

    /// The quorum leader this node knows, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.as_ref().and_then(|r| r.leader())
    }
}

impl Node {
    pub(super) fn cluster_start(&mut self, out: &mut Vec<Output>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let first = self.next_disk_req;
        cluster
            .store
            .start(&mut DiskIo::new(&mut self.next_disk_req, out));
        for req in first..self.next_disk_req {
            self.disk_owner.insert(req, DiskOwner::Quorum);
        }
    }

    /// Whether the quorum's state has been recovered (always true outside a cluster).
    pub(super) fn quorum_ready(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.raft.is_some())
    }

    pub(super) fn quorum_disk_done(
        &mut self,
        now: Now,
        req: DiskReqId,
        result: Result<DiskReply, DiskError>,
        out: &mut Vec<Output>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        let first = self.next_disk_req;
        cluster.store.on_disk_done(
            req,
            result,
            &mut DiskIo::new(&mut self.next_disk_req, out),
            &mut events,
        );
        for req in first..self.next_disk_req {
            self.disk_owner.insert(req, DiskOwner::Quorum);
        }
        for event in events {
            self.on_store_event(now, event, out);
        }
        self.pump_raft(now, out);
    }

    fn on_store_event(&mut self, now: Now, event: StoreEvent, out: &mut Vec<Output>) {
        let now_ms = now.mono_millis();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        match event {
            StoreEvent::Recovered(recovered) => {
                if let Some(snapshot) = &recovered.snapshot {
                    match MetadataImage::decode_snapshot(&snapshot.data) {
                        Ok(image) => {
                            cluster.image = image;
                            cluster.applied_end = snapshot.end_offset;
                        }
                        Err(e) => {
                            warn!(error = ?e, "metadata snapshot does not decode; starting from an empty image")
                        }
                    }
                }
                let mut config = RaftConfig::new(self.config.node_id, self.config.voter_ids());
                config.election_timeout_ms = self.config.quorum_election_timeout_ms;
                config.fetch_timeout_ms = self.config.quorum_fetch_timeout_ms;
                config.election_backoff_max_ms = self.config.quorum_election_backoff_max_ms;
                config.request_timeout_ms = self.config.quorum_request_timeout_ms;
                let seed = cluster.seed;
                cluster.raft = Some(Raft::new(config, recovered, now_ms, seed));
                info!(
                    node = self.config.node_id,
                    voter = self.config.is_controller(),
                    "metadata quorum replica started"
                );
                self.check_recovered(now, out);
            }
            StoreEvent::Refused(why) => {
                error!("{why}");
                self.stop_now(out);
            }
            StoreEvent::Failed(why) => {
                // Kafka exits on a metadata log failure; so do we (the
                // operator, or the simulator's, restarts the node).
                error!(%why, "metadata quorum storage failed; stopping the node");
                self.stop_now(out);
            }
            StoreEvent::StatePersisted(version) => {
                if let Some(raft) = cluster.raft.as_mut() {
                    raft.on_state_persisted(now_ms, version);
                }
            }
            StoreEvent::LogDurable(end) => {
                if let Some(raft) = cluster.raft.as_mut() {
                    raft.on_log_durable(now_ms, end);
                }
            }
            StoreEvent::SnapshotInstalled(end) => {
                if let Some(raft) = cluster.raft.as_mut() {
                    if let Some(snapshot) = raft.snapshot().cloned() {
                        match MetadataImage::decode_snapshot(&snapshot.data) {
                            Ok(image) => {
                                cluster.image = image;
                                cluster.applied_end = snapshot.end_offset;
                                cluster.bytes_since_snapshot = 0;
                            }
                            Err(e) => {
                                error!(error = ?e, "a snapshot from the leader does not decode")
                            }
                        }
                    }
                    raft.on_snapshot_installed(now_ms, end);
                }
                let topics: Vec<Uuid> = self
                    .cluster
                    .as_ref()
                    .map(|c| c.image.topics.values().map(|t| t.id).collect())
                    .unwrap_or_default();
                self.remove_topics_not_in_image(now, out);
                self.reconcile_topics(now, &topics.into_iter().collect(), out);
            }
            StoreEvent::SnapshotStored(snapshot) => {
                cluster.snapshot_in_flight = false;
                if let Some(raft) = cluster.raft.as_mut() {
                    raft.snapshot_taken(now_ms, snapshot);
                }
            }
        }
    }

    /// Stop at once (a fatal condition at start or in the metadata log).
    fn stop_now(&mut self, out: &mut Vec<Output>) {
        self.phase = Phase::Stopped;
        for (conn, _) in std::mem::take(&mut self.conns) {
            out.push(Output::Close { conn });
        }
        out.push(Output::Stopped);
    }

    /// Carry out everything the quorum asked for, then re-arm its timer.
    pub(super) fn pump_raft(&mut self, now: Now, out: &mut Vec<Output>) {
        loop {
            let Some(action) = self
                .cluster
                .as_mut()
                .and_then(|c| c.raft.as_mut())
                .and_then(|r| r.poll_action())
            else {
                break;
            };
            self.carry_out_raft(now, action, out);
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let deadline = cluster
            .raft
            .as_ref()
            .and_then(|r| r.next_deadline())
            .map(|ms| ms.saturating_mul(1_000_000));
        if deadline != cluster.raft_timer {
            cluster.raft_timer = deadline;
            match deadline {
                Some(at) => out.push(Output::SetTimer {
                    id: TIMER_RAFT,
                    at_nanos: at,
                }),
                None => out.push(Output::CancelTimer { id: TIMER_RAFT }),
            }
        }
    }

    fn with_store(&mut self, out: &mut Vec<Output>, f: impl FnOnce(&mut QuorumStore, &mut DiskIo)) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let first = self.next_disk_req;
        f(
            &mut cluster.store,
            &mut DiskIo::new(&mut self.next_disk_req, out),
        );
        for req in first..self.next_disk_req {
            self.disk_owner.insert(req, DiskOwner::Quorum);
        }
    }

    fn carry_out_raft(&mut self, now: Now, action: Action, out: &mut Vec<Output>) {
        match action {
            Action::PersistState {
                version,
                epoch,
                voted_for,
                leader,
            } => self.with_store(out, |s, io| {
                s.persist_state(io, version, epoch, voted_for, leader)
            }),
            Action::AppendLog { entries } => self.with_store(out, |s, io| s.append(io, &entries)),
            Action::TruncateLog { from } => self.with_store(out, |s, io| s.truncate(io, from)),
            Action::InstallSnapshot { snapshot } => {
                self.with_store(out, |s, io| s.install_snapshot(io, &snapshot))
            }
            Action::DeleteLogPrefix { before } => {
                let keep: Vec<_> = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.raft.as_ref())
                    .map(|r| r.entries(before, usize::MAX).to_vec())
                    .unwrap_or_default();
                self.with_store(out, |s, io| s.delete_prefix(io, before, &keep))
            }
            Action::Send { to, request } => self.send_quorum_request(now, to, request, out),
            Action::Respond { token, response } => {
                let Some((reply, _api)) =
                    self.cluster.as_mut().and_then(|c| c.inbound.remove(&token))
                else {
                    return;
                };
                self.respond_wire(reply, wire::response_to_wire(&response), out);
            }
            Action::Committed { high_watermark } => self.apply_committed(now, high_watermark, out),
            Action::LeaderChanged { epoch, leader } => {
                info!(epoch, leader = ?leader, "metadata quorum leader changed");
                self.on_quorum_leader_changed(now, out);
            }
        }
    }

    fn send_quorum_request(
        &mut self,
        now: Now,
        to: NodeId,
        request: crate::raft::Request,
        out: &mut Vec<Output>,
    ) {
        let Some(addr) = self.config.voter_address(to).map(str::to_string) else {
            warn!(to, "no address for a quorum peer");
            return;
        };
        let pre_vote = matches!(request, crate::raft::Request::Vote { pre_vote: true, .. });
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let tag = PeerTag::Raft { pre_vote };
        let peers = &mut cluster.peers;
        let nanos = now.mono_nanos;
        match wire::to_wire(&request, &self.config.cluster_id, to) {
            WireRequest::Vote(r) => peers.send(
                nanos,
                to,
                &addr,
                ApiKey::Vote,
                wire::VOTE_VERSION,
                &r,
                tag,
                out,
            ),
            WireRequest::BeginQuorumEpoch(r) => peers.send(
                nanos,
                to,
                &addr,
                ApiKey::BeginQuorumEpoch,
                wire::BEGIN_EPOCH_VERSION,
                &r,
                tag,
                out,
            ),
            WireRequest::EndQuorumEpoch(r) => peers.send(
                nanos,
                to,
                &addr,
                ApiKey::EndQuorumEpoch,
                wire::END_EPOCH_VERSION,
                &r,
                tag,
                out,
            ),
            WireRequest::Fetch(r) => peers.send(
                nanos,
                to,
                &addr,
                ApiKey::Fetch,
                wire::FETCH_VERSION,
                &r,
                tag,
                out,
            ),
            WireRequest::FetchSnapshot(r) => peers.send(
                nanos,
                to,
                &addr,
                ApiKey::FetchSnapshot,
                wire::FETCH_SNAPSHOT_VERSION,
                &r,
                tag,
                out,
            ),
        }
    }

    pub(super) fn respond_wire(
        &mut self,
        reply: ReplyTo,
        response: WireResponse,
        out: &mut Vec<Output>,
    ) {
        match response {
            WireResponse::Vote(r) => self.respond(reply, &r, out),
            WireResponse::BeginQuorumEpoch(r) => self.respond(reply, &r, out),
            WireResponse::EndQuorumEpoch(r) => self.respond(reply, &r, out),
            WireResponse::Fetch(r) => self.respond(reply, &r, out),
            WireResponse::FetchSnapshot(r) => self.respond(reply, &r, out),
        }
    }

    /// Hand an inbound quorum request to the core (or refuse it).
    pub(super) fn quorum_request(
        &mut self,
        now: Now,
        reply: ReplyTo,
        api: ApiKey,
        parsed: Result<crate::raft::Request, wire::Refusal>,
        out: &mut Vec<Output>,
    ) {
        let ready = self.cluster.as_ref().is_some_and(|c| c.raft.is_some());
        let request = match parsed {
            Ok(request) if ready => request,
            Ok(_) => {
                // Not in a quorum (legacy broker) or not recovered yet.
                let code = kafka_protocol::error::ResponseError::NotLeaderOrFollower.code();
                if let Some(r) = wire::refusal_response(api, code) {
                    self.respond_wire(reply, r, out);
                }
                return;
            }
            Err(refusal) => {
                let code = match refusal {
                    wire::Refusal::Cluster => {
                        kafka_protocol::error::ResponseError::InconsistentClusterId.code()
                    }
                    wire::Refusal::Shape => {
                        kafka_protocol::error::ResponseError::InvalidRequest.code()
                    }
                };
                warn!(conn = reply.conn, ?api, ?refusal, "quorum request refused");
                if let Some(r) = wire::refusal_response(api, code) {
                    self.respond_wire(reply, r, out);
                }
                return;
            }
        };
        let cluster = self.cluster.as_mut().expect("ready");
        let token = cluster.next_token;
        cluster.next_token += 1;
        cluster.inbound.insert(token, (reply, api));
        if let Some(raft) = cluster.raft.as_mut() {
            raft.handle_request(now.mono_millis(), token, request);
        }
        self.pump_raft(now, out);
    }

    /// Connection events and responses on outbound peer connections.
    pub(super) fn drain_peer_events(&mut self, now: Now, out: &mut Vec<Output>) {
        loop {
            let Some(event) = self.cluster.as_mut().and_then(|c| c.peers.poll_event()) else {
                break;
            };
            match event {
                PeerEvent::Response {
                    node,
                    tag,
                    api_key,
                    version,
                    body,
                } => match tag {
                    PeerTag::Raft { pre_vote } => {
                        match wire::response_from_wire(api_key, version, body, pre_vote) {
                            Ok(response) => {
                                if let Some(raft) =
                                    self.cluster.as_mut().and_then(|c| c.raft.as_mut())
                                {
                                    raft.handle_response(now.mono_millis(), node, response);
                                }
                            }
                            Err(why) => {
                                warn!(node, %why, "dropping a quorum response");
                                if let Some(raft) =
                                    self.cluster.as_mut().and_then(|c| c.raft.as_mut())
                                {
                                    raft.on_request_failed(now.mono_millis(), node);
                                }
                            }
                        }
                    }
                    PeerTag::BrokerRegistration | PeerTag::BrokerHeartbeat => {
                        self.lifecycle_response(now, tag, version, Some(body), out)
                    }
                    PeerTag::Forward { op } => {
                        self.forward_response(op, api_key, version, Some(body), out)
                    }
                    PeerTag::ReplicaFetch => {
                        self.replica_fetch_response(node, version, Some(body), now, out)
                    }
                    PeerTag::AlterPartition { id } => {
                        self.alter_partition_response(id, version, Some(body), now, out)
                    }
                    PeerTag::AllocateProducerIds => {
                        self.allocate_producer_ids_response(version, Some(body), now, out)
                    }
                    PeerTag::WriteTxnMarkers { id } => {
                        self.txn_markers_response(id, version, Some(body), now, out)
                    }
                    PeerTag::VerifyTxn { id } => {
                        self.verify_txn_response(id, version, Some(body), now, out)
                    }
                },
                PeerEvent::Failed { node, tag } => match tag {
                    PeerTag::Raft { .. } => {
                        if let Some(raft) = self.cluster.as_mut().and_then(|c| c.raft.as_mut()) {
                            raft.on_request_failed(now.mono_millis(), node);
                        }
                    }
                    PeerTag::BrokerRegistration | PeerTag::BrokerHeartbeat => {
                        self.lifecycle_response(now, tag, 0, None, out)
                    }
                    PeerTag::Forward { op } => {
                        self.forward_response(op, ApiKey::Metadata, 0, None, out)
                    }
                    PeerTag::ReplicaFetch => self.replica_fetch_response(node, 0, None, now, out),
                    PeerTag::AlterPartition { id } => {
                        self.alter_partition_response(id, 0, None, now, out)
                    }
                    PeerTag::AllocateProducerIds => {
                        self.allocate_producer_ids_response(0, None, now, out)
                    }
                    PeerTag::WriteTxnMarkers { id } => {
                        self.txn_markers_response(id, 0, None, now, out)
                    }
                    PeerTag::VerifyTxn { id } => self.verify_txn_response(id, 0, None, now, out),
                },
            }
        }
        self.pump_raft(now, out);
    }

    // ----- applying the committed log -----

    fn apply_committed(&mut self, now: Now, high_watermark: i64, out: &mut Vec<Output>) {
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        let mut removed: Vec<Uuid> = Vec::new();
        {
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            let Some(raft) = cluster.raft.as_ref() else {
                return;
            };
            while cluster.applied_end < high_watermark {
                let offset = cluster.applied_end;
                let Some(entry) = raft.entry(offset) else {
                    // Below the log start: the snapshot covers it (installed
                    // separately); nothing more can be applied now.
                    break;
                };
                cluster.applied_end = offset + 1;
                cluster.bytes_since_snapshot += entry.data.len() as u64 + 32;
                if entry.kind != EntryKind::Data {
                    continue;
                }
                match MetadataRecord::decode(&entry.data) {
                    Ok(record) => {
                        match &record {
                            MetadataRecord::Topic { topic_id, .. }
                            | MetadataRecord::Partition { topic_id, .. }
                            | MetadataRecord::PartitionChange { topic_id, .. } => {
                                touched.insert(*topic_id);
                            }
                            MetadataRecord::RemoveTopic { topic_id } => removed.push(*topic_id),
                            _ => {}
                        }
                        cluster.image.apply(offset, &record);
                    }
                    Err(e) => {
                        error!(offset, error = ?e, "a committed metadata record does not decode; skipped")
                    }
                }
            }
            // Answer the proposals that are now committed.
            let done: Vec<i64> = cluster
                .commit_waiters
                .range(..cluster.applied_end)
                .map(|(k, _)| *k)
                .collect();
            let mut answers = Vec::new();
            for key in done {
                if let Some(waiters) = cluster.commit_waiters.remove(&key) {
                    answers.extend(waiters.into_iter().map(|w| (w.reply, w.committed)));
                }
            }
            for (reply, bytes) in answers {
                self.answer(reply, Some(bytes), out);
            }
        }
        for id in removed {
            self.delete_local_topic_by_id(now, id, out);
        }
        self.reconcile_topics(now, &touched, out);
        self.reconcile_replicas(now, out);
        self.maybe_activate_controller(now, out);
        self.maybe_snapshot(out);
    }

    /// Create the local logs of partitions the image puts on this node.
    pub(super) fn reconcile_topics(
        &mut self,
        now: Now,
        touched: &BTreeSet<Uuid>,
        out: &mut Vec<Output>,
    ) {
        if !self.config.is_broker() {
            return;
        }
        let me = self.config.node_id;
        let mut wanted: Vec<(String, Uuid, i32)> = Vec::new();
        if let Some(cluster) = self.cluster.as_ref() {
            for id in touched {
                let Some(topic) = cluster.image.topic_by_id(id) else {
                    continue;
                };
                for (index, p) in &topic.partitions {
                    if p.replicas.contains(&me) {
                        wanted.push((topic.name.clone(), topic.id, *index));
                    }
                }
            }
        }
        for (name, id, index) in wanted {
            // A local topic of the same name but another id is an old
            // incarnation of it: remove it first.
            if self
                .topics
                .get(&name)
                .is_some_and(|t| t.id != id && !t.id.is_nil())
            {
                self.delete_local_topic(now, &name, out);
            }
            if self.lookup(&name, index).is_some() {
                if let Some(t) = self.topics.get_mut(&name) {
                    if t.id.is_nil() {
                        t.id = id;
                    }
                }
                continue;
            }
            let dir = format!("{name}-{index}");
            let part = self.add_partition(
                &name,
                index,
                |config, io| PartitionLog::create(dir, *id.as_bytes(), config, now, io),
                out,
            );
            self.topics
                .entry(name.clone())
                .or_insert_with(|| Topic {
                    id,
                    partitions: BTreeMap::new(),
                })
                .partitions
                .insert(index, part);
            info!(topic = %name, partition = index, "hosting a new partition replica");
            while let Some(event) = self
                .partitions
                .get_mut(&part)
                .and_then(|p| p.log.poll_event())
            {
                self.dispatch_log_event(part, event, now, out);
            }
        }
    }

    /// After a snapshot replaced the image: local topics it no longer has are gone.
    fn remove_topics_not_in_image(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let stale: Vec<String> = self
            .topics
            .iter()
            .filter(|(name, t)| {
                !t.id.is_nil()
                    && cluster
                        .image
                        .topic(name)
                        .is_none_or(|image_topic| image_topic.id != t.id)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.delete_local_topic(now, &name, out);
        }
    }

    fn delete_local_topic_by_id(&mut self, now: Now, id: Uuid, out: &mut Vec<Output>) {
        let name = self
            .topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.clone());
        if let Some(name) = name {
            self.delete_local_topic(now, &name, out);
        }
    }

    /// Take a snapshot of the image when enough has been applied since the last.
    fn maybe_snapshot(&mut self, out: &mut Vec<Output>) {
        let threshold = self.config.metadata_snapshot_bytes;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.snapshot_in_flight || cluster.bytes_since_snapshot < threshold {
            return;
        }
        let Some(raft) = cluster.raft.as_ref() else {
            return;
        };
        let end = cluster.applied_end;
        let Some(epoch) = raft.entry(end - 1).map(|e| e.epoch) else {
            return;
        };
        let snapshot = Snapshot {
            end_offset: end,
            epoch,
            data: cluster.image.encode_snapshot(),
        };
        info!(
            end_offset = end,
            bytes = snapshot.data.len(),
            "taking a metadata snapshot"
        );
        cluster.snapshot_in_flight = true;
        cluster.bytes_since_snapshot = 0;
        self.with_store(out, |s, io| s.store_snapshot(io, snapshot));
    }

    pub(super) fn on_raft_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        let quorum_ms = self.config.quorum_request_timeout_ms;
        let control_ms = self.config.broker_session_timeout_ms;
        if let Some(cluster) = self.cluster.as_mut() {
            cluster
                .peers
                .expire(now.mono_nanos, quorum_ms, control_ms, out);
            cluster.raft_timer = None;
            if let Some(raft) = cluster.raft.as_mut() {
                raft.tick(now.mono_millis());
            }
        }
        self.drain_peer_events(now, out);
    }
}
