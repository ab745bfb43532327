//! Partition replication on a cluster node: which role each local replica
//! plays (from the committed metadata image), the followers' fetchers (one
//! per source broker, batching that broker's partitions into one replica
//! Fetch), the leader's bookkeeping of follower fetches (high watermark, ISR
//! changes sent to the controller as AlterPartition), and truncation of
//! divergent suffixes by leader epoch.
//!
//! The decisions themselves are in `crate::replica`; this module carries
//! them out over the node's logs and peer connections.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_request::{
    AlterPartitionRequest, PartitionData as AlterPartitionData, TopicData as AlterTopicData,
};
use kafka_protocol::messages::alter_partition_response::AlterPartitionResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use super::peers::{decode_response, PeerTag};
use super::view::{ReplicaRoleView, ReplicaView, TruncationEvent};
use super::{Node, PartId, TIMER_REPLICATION};
use crate::log::{LogError, LogState, PartitionLog};
use crate::replica::follower::{last_fetched_epoch, truncation_for_diverging, EpochLookup};
use crate::replica::leader::{AlterFailure, LeaderState};
use crate::seam::{NodeId, Now, Output};

/// The replica Fetch version followers send (last fetched epoch, diverging epoch).
const REPLICA_FETCH_VERSION: i16 = 12;
/// AlterPartition with topic ids.
const ALTER_PARTITION_VERSION: i16 = 2;
/// How often leaders look at their ISR and fetchers retry.
const REPLICATION_TICK_MS: u64 = 250;
/// How long before an AlterPartition whose outcome is unknown is sent again
/// (Kafka's `retry.backoff.ms` default).
const ALTER_RETRY_BACKOFF_MS: u64 = 100;

const NONE: i16 = 0;

/// What this node's replica of a partition does.
#[derive(Debug)]
pub(super) enum ReplicaRole {
    /// The legacy single broker: its logs are their own authority.
    Standalone,
    /// In a cluster, not (yet) acting: no leader known, log not open, or
    /// the broker not yet caught up with the metadata after starting.
    Offline,
    Leader(Box<LeaderState>),
    Follower(FollowerRole),
}

#[derive(Debug)]
pub(super) struct FollowerRole {
    pub leader: NodeId,
    pub leader_epoch: i32,
    /// The high watermark in the leader's last answer.
    pub leader_hw: i64,
    /// A truncation is being made durable; no fetching meanwhile.
    pub truncating: bool,
    /// No fetch for this partition before (mono ms).
    pub backoff_until_ms: u64,
}

/// One source broker's fetcher: at most one Fetch in flight.
#[derive(Debug, Default)]
pub(super) struct Fetcher {
    in_flight: bool,
    backoff_until_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct Replication {
    fetchers: BTreeMap<NodeId, Fetcher>,
    truncations: Vec<TruncationEvent>,
    /// AlterPartition requests in flight, by their tag's id.
    alters: BTreeMap<u64, PartId>,
    next_alter: u64,
    timer_armed: bool,
}

/// The log as the follower decisions see it.
struct LogEpochs<'a>(&'a PartitionLog);

impl EpochLookup for LogEpochs<'_> {
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.0.end_offset_for_epoch(epoch)
    }
    fn log_end(&self) -> i64 {
        self.0.log_end_offset()
    }
}

impl Node {
    fn is_serving_replicas(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.lifecycle.unfenced_once && self.config.is_broker())
    }

    /// Bring every local replica's role in line with the committed image.
    pub(super) fn reconcile_replicas(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.cluster.is_none() {
            return;
        }
        let me = self.config.node_id;
        let serving = self.is_serving_replicas();
        let parts: Vec<PartId> = self.partitions.keys().copied().collect();
        let mut changed = Vec::new();
        for part in parts {
            let Some(p) = self.partitions.get(&part) else {
                continue;
            };
            let image = self
                .cluster
                .as_ref()
                .and_then(|c| c.image.partition(&p.topic, p.index))
                .cloned();
            let online = matches!(p.log.state(), LogState::Online);
            // Acting needs a leader (this node or another) and an open log.
            let target =
                image.filter(|ip| serving && online && ip.replicas.contains(&me) && ip.leader >= 0);
            let Some(p) = self.partitions.get_mut(&part) else {
                continue;
            };
            let Some(ip) = target else {
                if !matches!(p.role, ReplicaRole::Offline) {
                    p.role = ReplicaRole::Offline;
                    changed.push(part);
                }
                continue;
            };
            if ip.leader == me {
                match &mut p.role {
                    ReplicaRole::Leader(l) if l.leader_epoch == ip.leader_epoch => {
                        l.on_partition_update(
                            ip.partition_epoch,
                            ip.replicas.clone(),
                            ip.isr.clone(),
                            now.mono_millis(),
                        );
                    }
                    _ => {
                        let leo = p.log.log_end_offset();
                        info!(topic = %p.topic, partition = p.index, epoch = ip.leader_epoch,
                            log_end = leo, isr = ?ip.isr, "becoming the partition leader");
                        p.role = ReplicaRole::Leader(Box::new(LeaderState::new(
                            me,
                            ip.leader_epoch,
                            ip.partition_epoch,
                            ip.replicas.clone(),
                            ip.isr.clone(),
                            leo,
                            now.mono_millis(),
                        )));
                        self.with_log(part, out, |log, io| {
                            log.set_replicated(true);
                            log.assign_epoch(ip.leader_epoch, leo, io);
                        });
                        changed.push(part);
                    }
                }
            } else {
                let same = matches!(&p.role, ReplicaRole::Follower(f)
                    if f.leader == ip.leader && f.leader_epoch == ip.leader_epoch);
                if !same {
                    let truncating = matches!(&p.role, ReplicaRole::Follower(f) if f.truncating);
                    debug!(topic = %p.topic, partition = p.index, leader = ip.leader,
                        epoch = ip.leader_epoch, "following");
                    p.role = ReplicaRole::Follower(FollowerRole {
                        leader: ip.leader,
                        leader_epoch: ip.leader_epoch,
                        leader_hw: -1,
                        truncating,
                        backoff_until_ms: 0,
                    });
                    self.with_log(part, out, |log, _| log.set_replicated(true));
                    changed.push(part);
                }
            }
        }
        // A new leader's high watermark may move at once (a leader alone in
        // its ISR); requests parked on a replica whose role changed re-check it.
        for part in changed {
            self.replica_log_activity(part, now, out);
            self.wake(part, now, out);
            self.coordinators_log_activity(part, now, out);
        }
        self.pump_fetchers(now, out);
        self.arm_replication_timer(now, out);
        self.coordinators_reconcile(now, out);
    }

    /// After a log's activity: move its high watermark, and let a follower
    /// whose appends are now durable fetch again.
    pub(super) fn replica_log_activity(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        let Some(p) = self.partitions.get_mut(&part) else {
            return;
        };
        if !matches!(p.log.state(), LogState::Online) {
            return;
        }
        let local_end = p.log.local_end_offset();
        match &p.role {
            ReplicaRole::Leader(l) => {
                if let Some(hw) = l.high_watermark(local_end) {
                    if hw > p.log.high_watermark() {
                        p.log.advance_high_watermark(hw);
                    }
                }
            }
            ReplicaRole::Follower(f) => {
                let hw = f.leader_hw.min(local_end);
                if hw > p.log.high_watermark() {
                    p.log.advance_high_watermark(hw);
                }
                if !f.truncating && local_end == p.log.log_end_offset() {
                    self.pump_fetchers(now, out);
                }
            }
            ReplicaRole::Standalone | ReplicaRole::Offline => {}
        }
    }

    /// A truncation the log has made durable.
    pub(super) fn replica_truncated(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        if let Some(p) = self.partitions.get_mut(&part) {
            if let ReplicaRole::Follower(f) = &mut p.role {
                f.truncating = false;
            }
        }
        self.pump_fetchers(now, out);
    }

    // ----- followers -----

    /// Send a Fetch to every source broker that has partitions ready and no
    /// fetch in flight.
    pub(super) fn pump_fetchers(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.cluster.is_none() || !matches!(self.phase, super::Phase::Running) {
            return;
        }
        let now_ms = now.mono_millis();
        let mut by_leader: BTreeMap<NodeId, Vec<PartId>> = BTreeMap::new();
        // Leaders with a partition whose last answer is still being synced:
        // their next fetch waits for it, so that it carries that partition
        // too (sent without it, it would long-poll and hold the partition
        // back for a whole fetch wait).
        let mut settling: Vec<NodeId> = Vec::new();
        for (&part, p) in &self.partitions {
            let ReplicaRole::Follower(f) = &p.role else {
                continue;
            };
            if f.truncating
                || f.backoff_until_ms > now_ms
                || !matches!(p.log.state(), LogState::Online)
            {
                continue;
            }
            if p.log.local_end_offset() == p.log.log_end_offset() {
                by_leader.entry(f.leader).or_default().push(part);
            } else {
                settling.push(f.leader);
            }
        }
        for (leader, parts) in by_leader {
            if parts.is_empty() || settling.contains(&leader) {
                continue;
            }
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            let fetcher = cluster.replication.fetchers.entry(leader).or_default();
            if fetcher.in_flight || fetcher.backoff_until_ms > now_ms {
                continue;
            }
            let Some(addr) = self.broker_address(leader) else {
                continue;
            };
            let request = self.build_replica_fetch(&parts);
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            if let Some(f) = cluster.replication.fetchers.get_mut(&leader) {
                f.in_flight = true;
            }
            cluster.peers.send(
                now.mono_nanos,
                leader,
                &addr,
                ApiKey::Fetch,
                REPLICA_FETCH_VERSION,
                &request,
                PeerTag::ReplicaFetch,
                out,
            );
        }
        // A send that failed at once (peer in backoff) left an event: it is
        // drained at the end of the step, not here, which may be inside a drain.
    }

    /// The address of a broker's inter-broker listener, from its registration.
    fn broker_address(&self, id: NodeId) -> Option<String> {
        let image = &self.cluster.as_ref()?.image;
        let b = image.broker(id)?;
        let e = b
            .endpoints
            .iter()
            .find(|e| e.listener == self.config.inter_broker_listener_name)
            .or_else(|| b.endpoints.first())?;
        Some(format!("{}:{}", e.host, e.port))
    }

    fn build_replica_fetch(&self, parts: &[PartId]) -> FetchRequest {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for part in parts {
            let Some(p) = self.partitions.get(part) else {
                continue;
            };
            let ReplicaRole::Follower(f) = &p.role else {
                continue;
            };
            let leo = p.log.log_end_offset();
            topics.entry(&p.topic).or_default().push(
                FetchPartition::default()
                    .with_partition(p.index)
                    .with_current_leader_epoch(f.leader_epoch)
                    .with_fetch_offset(leo)
                    .with_last_fetched_epoch(last_fetched_epoch(leo, |o| p.log.epoch_at(o)))
                    .with_log_start_offset(p.log.log_start_offset())
                    .with_partition_max_bytes(self.config.replica_fetch_max_bytes as i32),
            );
        }
        FetchRequest::default()
            .with_replica_id(BrokerId(self.config.node_id))
            .with_max_wait_ms(self.config.replica_fetch_wait_max_ms as i32)
            .with_min_bytes(1)
            .with_max_bytes(self.config.replica_fetch_response_max_bytes as i32)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
    }

    /// A fetcher's answer (`None`: the request failed).
    pub(super) fn replica_fetch_response(
        &mut self,
        leader: NodeId,
        version: i16,
        body: Option<Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let now_ms = now.mono_millis();
        let backoff = self.config.replica_fetch_backoff_ms;
        let response = body.and_then(|b| decode_response::<FetchResponse>(b, version));
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let fetcher = cluster.replication.fetchers.entry(leader).or_default();
        fetcher.in_flight = false;
        let response = match response {
            Some(r) if r.error_code == NONE => r,
            other => {
                if let Some(r) = other {
                    warn!(leader, error = r.error_code, "replica fetch refused");
                } else {
                    debug!(leader, "replica fetch failed");
                }
                fetcher.backoff_until_ms = now_ms + backoff;
                self.arm_replication_timer(now, out);
                return;
            }
        };
        let mut touched = Vec::new();
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for pd in topic.partitions {
                let Some(part) = self.lookup(&name, pd.partition_index) else {
                    continue;
                };
                // Only for the leader and epoch we are still following.
                let following = self.partitions.get(&part).is_some_and(
                    |p| matches!(&p.role, ReplicaRole::Follower(f) if f.leader == leader),
                );
                if !following {
                    continue;
                }
                let out_of_range = kafka_protocol::error::ResponseError::OffsetOutOfRange.code();
                let behind_start = self
                    .partitions
                    .get(&part)
                    .is_some_and(|p| pd.log_start_offset > p.log.log_end_offset());
                if pd.error_code == out_of_range && behind_start {
                    // The leader's log starts past our end (retention): start over there.
                    info!(topic = %name, partition = pd.partition_index, leader,
                        start = pd.log_start_offset, "starting over at the leader's log start");
                    let start = pd.log_start_offset;
                    let result = self
                        .with_log(part, out, |log, io| {
                            log.truncate_fully_and_start_at(start, io)
                        })
                        .unwrap_or(Err(LogError::NotReady));
                    if result.is_ok() {
                        if let Some(ReplicaRole::Follower(f)) =
                            self.partitions.get_mut(&part).map(|p| &mut p.role)
                        {
                            f.truncating = true;
                        }
                    }
                    continue;
                }
                if pd.error_code != NONE {
                    debug!(topic = %name, partition = pd.partition_index, leader,
                        error = pd.error_code, "replica fetch partition error");
                    if let Some(ReplicaRole::Follower(f)) =
                        self.partitions.get_mut(&part).map(|p| &mut p.role)
                    {
                        f.backoff_until_ms = now_ms + backoff;
                    }
                    continue;
                }
                let diverging = pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0;
                if diverging {
                    self.truncate_divergent(
                        part,
                        pd.diverging_epoch.epoch,
                        pd.diverging_epoch.end_offset,
                        now,
                        out,
                    );
                    touched.push(part);
                    continue;
                }
                if let Some(ReplicaRole::Follower(f)) =
                    self.partitions.get_mut(&part).map(|p| &mut p.role)
                {
                    f.leader_hw = f.leader_hw.max(pd.high_watermark);
                }
                let records = pd.records.unwrap_or_default();
                if !records.is_empty() {
                    let result = self
                        .with_log(part, out, |log, io| log.append_replica(records, now, io))
                        .unwrap_or(Err(LogError::NotReady));
                    if let Err(e) = result {
                        warn!(topic = %name, partition = pd.partition_index, leader, error = %e,
                            "cannot append what the leader sent");
                        if let Some(ReplicaRole::Follower(f)) =
                            self.partitions.get_mut(&part).map(|p| &mut p.role)
                        {
                            f.backoff_until_ms = now_ms + backoff;
                        }
                    }
                }
                touched.push(part);
            }
        }
        for part in touched {
            self.after_log_activity(part, now, out);
        }
        self.pump_fetchers(now, out);
        self.arm_replication_timer(now, out);
    }

    /// The leader found our log diverging after `epoch` (ending at
    /// `end_offset` on the leader): cut the divergent suffix.
    fn truncate_divergent(
        &mut self,
        part: PartId,
        epoch: i32,
        end_offset: i64,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Some(p) = self.partitions.get(&part) else {
            return;
        };
        let (to, _settled) = truncation_for_diverging(&LogEpochs(&p.log), epoch, end_offset);
        let leo = p.log.log_end_offset();
        let hw = p.log.high_watermark();
        if to >= leo {
            return;
        }
        if to < hw {
            warn!(topic = %p.topic, partition = p.index, to, high_watermark = hw,
                "truncating below the high watermark (an unclean leader's history)");
        } else {
            info!(topic = %p.topic, partition = p.index, from = leo, to,
                "truncating a divergent suffix");
        }
        let event = TruncationEvent {
            topic: p.topic.clone(),
            partition: p.index,
            from_end: leo,
            to,
            high_watermark: hw,
        };
        let result = self
            .with_log(part, out, |log, io| log.truncate_to(to, io))
            .unwrap_or(Err(LogError::NotReady));
        match result {
            Ok(()) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.replication.truncations.push(event);
                }
                if let Some(ReplicaRole::Follower(f)) =
                    self.partitions.get_mut(&part).map(|p| &mut p.role)
                {
                    f.truncating = true;
                }
            }
            Err(e) => warn!(error = %e, "cannot truncate"),
        }
        let _ = now;
    }

    // ----- leaders -----

    /// A replica fetch reached this leader: check the follower's epoch
    /// history and record its progress. `Some((epoch, end))`: the follower
    /// diverges; answer with that and no records.
    pub(super) fn leader_on_replica_fetch(
        &mut self,
        part: PartId,
        follower: NodeId,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<Option<(i32, i64)>, i16> {
        let Some(p) = self.partitions.get_mut(&part) else {
            return Err(kafka_protocol::error::ResponseError::NotLeaderOrFollower.code());
        };
        let ReplicaRole::Leader(l) = &mut p.role else {
            return Err(kafka_protocol::error::ResponseError::NotLeaderOrFollower.code());
        };
        if !l.is_replica(follower) {
            return Err(kafka_protocol::error::ResponseError::NotLeaderOrFollower.code());
        }
        if let Some(d) = crate::replica::leader::diverging_epoch(
            &LogEpochs(&p.log),
            last_fetched_epoch,
            fetch_offset,
        ) {
            return Ok(Some(d));
        }
        let leo = p.log.log_end_offset();
        if fetch_offset > leo || fetch_offset < p.log.log_start_offset() {
            return Err(kafka_protocol::error::ResponseError::OffsetOutOfRange.code());
        }
        l.on_follower_fetch(follower, fetch_offset, leo, now.mono_millis());
        self.replica_log_activity(part, now, out);
        self.maybe_alter_isr(part, Some(follower), now, out);
        self.wake(part, now, out);
        // A follower's fetch moves the high watermark: group writes may be done.
        self.coordinators_log_activity(part, now, out);
        Ok(None)
    }

    /// The leader epoch check of Fetch and ListOffsets (KIP-320): a request
    /// naming an older epoch is fenced, a newer one is unknown here.
    pub(super) fn check_leader_epoch(&self, part: PartId, current_leader_epoch: i32) -> i16 {
        if current_leader_epoch < 0 {
            return NONE;
        }
        let Some(p) = self.partitions.get(&part) else {
            return NONE;
        };
        let mine = match &p.role {
            ReplicaRole::Leader(l) => l.leader_epoch,
            ReplicaRole::Follower(f) => f.leader_epoch,
            ReplicaRole::Standalone => return NONE,
            ReplicaRole::Offline => {
                return kafka_protocol::error::ResponseError::NotLeaderOrFollower.code()
            }
        };
        use kafka_protocol::error::ResponseError;
        match current_leader_epoch.cmp(&mine) {
            std::cmp::Ordering::Less => ResponseError::FencedLeaderEpoch.code(),
            std::cmp::Ordering::Greater => ResponseError::UnknownLeaderEpoch.code(),
            std::cmp::Ordering::Equal => NONE,
        }
    }

    /// Whether this node leads `part` now (always, for the legacy broker).
    pub(super) fn leads(&self, part: PartId) -> bool {
        self.partitions
            .get(&part)
            .is_some_and(|p| matches!(p.role, ReplicaRole::Standalone | ReplicaRole::Leader(_)))
    }

    /// The ISR size min.insync.replicas is checked against (1 for the legacy broker).
    pub(super) fn insync_count(&self, part: PartId) -> usize {
        match self.partitions.get(&part).map(|p| &p.role) {
            Some(ReplicaRole::Leader(l)) => l.maximal_isr().len(),
            Some(ReplicaRole::Standalone) => usize::MAX,
            _ => 0,
        }
    }

    /// `min.insync.replicas` of a partition's topic (topic config, else the broker's).
    pub(super) fn min_insync_replicas(&self, part: PartId) -> usize {
        let broker = self.config.min_insync_replicas.max(1) as usize;
        let Some(p) = self.partitions.get(&part) else {
            return broker;
        };
        self.cluster
            .as_ref()
            .and_then(|c| {
                c.image
                    .resource_config(
                        crate::metadata::records::RESOURCE_TOPIC,
                        &p.topic,
                        "min.insync.replicas",
                    )?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(broker)
            .max(1)
    }

    /// Ask the controller for the ISR change the leader wants, if any
    /// (`fetched`: the follower whose fetch is being handled; see
    /// [`LeaderState::wanted_isr`]).
    fn maybe_alter_isr(
        &mut self,
        part: PartId,
        fetched: Option<NodeId>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let lag = self.config.replica_lag_time_max_ms;
        let Some(p) = self.partitions.get(&part) else {
            return;
        };
        let ReplicaRole::Leader(l) = &p.role else {
            return;
        };
        let now_ms = now.mono_millis();
        let resend = l.isr_to_resend(now_ms);
        let Some(isr) = resend
            .clone()
            .or_else(|| l.wanted_isr(now_ms, lag, p.log.high_watermark(), fetched))
        else {
            return;
        };
        let (leader_epoch, partition_epoch) = (l.leader_epoch, l.partition_epoch);
        let (topic, index) = (p.topic.clone(), p.index);
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let super::lifecycle::Registration::Registered {
            epoch: broker_epoch,
        } = cluster.lifecycle.registration
        else {
            return;
        };
        let Some(topic_id) = cluster.image.topic(&topic).map(|t| t.id) else {
            return;
        };
        let Some(controller) = cluster.leader() else {
            return;
        };
        let Some(addr) = self.config.voter_address(controller).map(str::to_string) else {
            return;
        };
        if resend.is_some() {
            info!(topic = %topic, partition = index, ?isr, leader_epoch, partition_epoch,
                "asking the controller again for an ISR change whose outcome is unknown");
        } else {
            info!(topic = %topic, partition = index, ?isr, leader_epoch, partition_epoch,
                "asking the controller for an ISR change");
        }
        let request = AlterPartitionRequest::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_broker_epoch(broker_epoch)
            .with_topics(vec![AlterTopicData::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![AlterPartitionData::default()
                    .with_partition_index(index)
                    .with_leader_epoch(leader_epoch)
                    .with_new_isr(isr.iter().map(|&r| BrokerId(r)).collect())
                    .with_partition_epoch(partition_epoch)])]);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let id = cluster.replication.next_alter;
        cluster.replication.next_alter += 1;
        cluster.replication.alters.insert(id, part);
        if let Some(ReplicaRole::Leader(l)) = self.partitions.get_mut(&part).map(|p| &mut p.role) {
            l.on_alter_sent(isr, id);
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.peers.send(
            now.mono_nanos,
            controller,
            &addr,
            ApiKey::AlterPartition,
            ALTER_PARTITION_VERSION,
            &request,
            PeerTag::AlterPartition { id },
            out,
        );
    }

    /// The controller's answer to an AlterPartition (`None`: it failed).
    pub(super) fn alter_partition_response(
        &mut self,
        id: u64,
        version: i16,
        body: Option<Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Some(part) = self
            .cluster
            .as_mut()
            .and_then(|c| c.replication.alters.remove(&id))
        else {
            return;
        };
        let response = body.and_then(|b| decode_response::<AlterPartitionResponse>(b, version));
        let top_level = response.as_ref().map(|r| r.error_code);
        let answer = response
            .as_ref()
            .and_then(|r| r.topics.first())
            .and_then(|t| t.partitions.first())
            .cloned();
        let Some(p) = self.partitions.get_mut(&part) else {
            return;
        };
        let ReplicaRole::Leader(l) = &mut p.role else {
            return;
        };
        match answer {
            Some(a) if top_level == Some(NONE) && a.error_code == NONE => {
                let isr: Vec<i32> = a.isr.iter().map(|b| b.0).collect();
                if a.leader_epoch == l.leader_epoch {
                    info!(topic = %p.topic, partition = p.index, ?isr,
                        partition_epoch = a.partition_epoch, "ISR change committed");
                    l.on_alter_accepted(id, a.partition_epoch, isr);
                } else {
                    // Another leader epoch: this leader's view is stale.
                    debug!(topic = %p.topic, partition = p.index, ?isr,
                        leader_epoch = a.leader_epoch, "ISR change answered for another leader epoch");
                    l.on_alter_failed(id, AlterFailure::AwaitMetadata, 0);
                }
            }
            other => {
                let failure = AlterFailure::of(top_level, other.as_ref().map(|a| a.error_code));
                debug!(topic = %p.topic, partition = p.index, ?top_level,
                    error = ?other.map(|a| a.error_code), ?failure, "ISR change not made");
                l.on_alter_failed(id, failure, now.mono_millis() + ALTER_RETRY_BACKOFF_MS);
            }
        }
        self.replica_log_activity(part, now, out);
        self.wake(part, now, out);
        self.coordinators_log_activity(part, now, out);
    }

    // ----- the periodic tick -----

    pub(super) fn arm_replication_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.replication.timer_armed || !matches!(self.phase, super::Phase::Running) {
            return;
        }
        cluster.replication.timer_armed = true;
        out.push(Output::SetTimer {
            id: TIMER_REPLICATION,
            at_nanos: now.after_millis(REPLICATION_TICK_MS),
        });
    }

    pub(super) fn on_replication_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        if let Some(c) = self.cluster.as_mut() {
            c.replication.timer_armed = false;
        }
        let leaders: Vec<PartId> = self
            .partitions
            .iter()
            .filter(|(_, p)| matches!(p.role, ReplicaRole::Leader(_)))
            .map(|(id, _)| *id)
            .collect();
        for part in leaders {
            self.maybe_alter_isr(part, None, now, out);
        }
        self.pump_fetchers(now, out);
        self.hw_checkpoint_maybe_write(now, false, out);
        let busy = self
            .partitions
            .values()
            .any(|p| matches!(p.role, ReplicaRole::Leader(_) | ReplicaRole::Follower(_)));
        if busy {
            self.arm_replication_timer(now, out);
        }
    }

    // ----- views for monitors and tests -----

    /// Every local replica's role and offsets (empty for the legacy broker).
    pub fn replica_views(&self) -> Vec<ReplicaView> {
        // Before recovery is complete a log's high watermark is not yet the
        // one it resumes from (see `hw_checkpoint_apply`).
        if self.cluster.is_none() || self.phase != super::Phase::Running {
            return Vec::new();
        }
        self.partitions
            .values()
            .filter(|p| matches!(p.log.state(), LogState::Online))
            .map(|p| {
                let (role, leader_epoch, isr) = match &p.role {
                    ReplicaRole::Leader(l) => {
                        (ReplicaRoleView::Leader, l.leader_epoch, l.maximal_isr())
                    }
                    ReplicaRole::Follower(f) => {
                        (ReplicaRoleView::Follower, f.leader_epoch, Vec::new())
                    }
                    ReplicaRole::Standalone | ReplicaRole::Offline => {
                        (ReplicaRoleView::None, -1, Vec::new())
                    }
                };
                ReplicaView {
                    topic: p.topic.clone(),
                    partition: p.index,
                    role,
                    leader_epoch,
                    high_watermark: p.log.high_watermark(),
                    log_end: p.log.log_end_offset(),
                    log_start: p.log.log_start_offset(),
                    isr,
                }
            })
            .collect()
    }

    /// Truncations of divergent suffixes since the last call.
    pub fn take_truncations(&mut self) -> Vec<TruncationEvent> {
        self.cluster
            .as_mut()
            .map(|c| std::mem::take(&mut c.replication.truncations))
            .unwrap_or_default()
    }
}
