//! The active controller on the quorum leader: turns BrokerRegistration,
//! BrokerHeartbeat, AlterPartition, CreateTopics, DeleteTopics and CreatePartitions into
//! metadata records, proposes them, and answers once they are committed
//! (or NOT_CONTROLLER if leadership is lost first).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_response::{self, AlterPartitionResponse};
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::{
    AlterPartitionRequest, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest, BrokerRegistrationResponse, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tracing::{info, warn};
use uuid::Uuid;

use super::cluster::CommitWaiter;
use super::{decode, HandlerResult, Node, ReplyTo, TIMER_CONTROLLER};
use crate::metadata::controller::{
    AlterPartitionReq, BrokerRegistrationReq, Controller, ControllerConfig, CreatePartitionsReq,
    CreateTopicReq, HeartbeatReq,
};
use crate::metadata::records::{Endpoint, MetadataRecord};
use crate::protocol::{self, validate_topic_name, RawRequest};
use crate::raft::Role;
use crate::seam::{Now, Output};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

const NOT_CONTROLLER: i16 = 41;

impl Node {
    fn controller_config(&self) -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: self.config.broker_session_timeout_ms,
            default_replication_factor: self.config.default_replication_factor,
            num_partitions: self.config.num_partitions,
            cluster_id: self.config.cluster_id.clone(),
            unclean_leader_election_enable: self.config.unclean_leader_election_enable,
            auto_leader_rebalance_enable: self.config.auto_leader_rebalance_enable,
            leader_imbalance_check_interval_ms: self.config.leader_imbalance_check_interval_ms,
            leader_imbalance_per_broker_percentage: self
                .config
                .leader_imbalance_per_broker_percentage,
        }
    }

    /// Become the active controller once this leader's epoch has a committed
    /// entry: everything before it is then committed and applied.
    pub(super) fn maybe_activate_controller(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.config.is_controller() {
            return;
        }
        let config = self.controller_config();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.controller.is_some() {
            return;
        }
        let Some(raft) = cluster.raft.as_ref() else {
            return;
        };
        if raft.role() != Role::Leader {
            return;
        }
        let Some(hw) = raft.high_watermark() else {
            return;
        };
        let epoch_committed = raft.entry(hw - 1).is_some_and(|e| e.epoch == raft.epoch());
        if !epoch_committed || cluster.applied_end < hw {
            return;
        }
        info!(epoch = raft.epoch(), offset = hw, "active controller");
        let seed = cluster.seed ^ (raft.epoch() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        cluster.controller = Some(Controller::new(
            cluster.image.clone(),
            config,
            now.mono_millis(),
            seed,
        ));
        self.arm_controller_timer(out);
        self.retry_forwards(now, out);
    }

    pub(super) fn on_quorum_leader_changed(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let leading = cluster
            .raft
            .as_ref()
            .is_some_and(|r| r.role() == Role::Leader);
        if !leading && cluster.controller.take().is_some() {
            info!("no longer the active controller");
            out.push(Output::CancelTimer {
                id: TIMER_CONTROLLER,
            });
        }
        if !leading {
            let waiters: Vec<CommitWaiter> = std::mem::take(&mut cluster.commit_waiters)
                .into_values()
                .flatten()
                .collect();
            for w in waiters {
                self.answer(w.reply, Some(w.lost), out);
            }
        }
        self.maybe_activate_controller(now, out);
        // The broker talks to the new controller at once.
        self.lifecycle_kick(now, out);
        self.retry_forwards(now, out);
    }

    fn arm_controller_timer(&mut self, out: &mut Vec<Output>) {
        let at = self
            .cluster
            .as_ref()
            .and_then(|c| c.controller.as_ref())
            .and_then(|c| c.next_deadline());
        if let Some(ms) = at {
            out.push(Output::SetTimer {
                id: TIMER_CONTROLLER,
                at_nanos: ms.saturating_mul(1_000_000),
            });
        }
    }

    pub(super) fn on_controller_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        let records = match self.cluster.as_mut().and_then(|c| c.controller.as_mut()) {
            Some(controller) => controller.tick(now.mono_millis()),
            None => return,
        };
        if !records.is_empty() {
            info!(
                records = records.len(),
                "controller: fencing brokers whose session expired or electing preferred leaders"
            );
        }
        self.propose(now, records, None, out);
        self.arm_controller_timer(out);
    }

    /// Whether this node is the active controller.
    pub(super) fn is_active_controller(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.controller.is_some())
    }

    /// Propose records; answer `waiter` once they commit. With no records
    /// the committed answer goes out at once.
    fn propose(
        &mut self,
        now: Now,
        records: Vec<MetadataRecord>,
        waiter: Option<CommitWaiter>,
        out: &mut Vec<Output>,
    ) {
        if records.is_empty() {
            if let Some(w) = waiter {
                self.answer(w.reply, Some(w.committed), out);
            }
            return;
        }
        let data: Vec<Bytes> = records.iter().map(MetadataRecord::encode).collect();
        let result = self
            .cluster
            .as_mut()
            .and_then(|c| c.raft.as_mut())
            .map(|r| r.propose(now.mono_millis(), data));
        match result {
            Some(Ok(last)) => {
                if let Some(w) = waiter {
                    if let Some(c) = self.cluster.as_mut() {
                        c.commit_waiters.entry(last).or_default().push(w);
                    }
                }
            }
            _ => {
                // Lost leadership between deciding and proposing.
                if let Some(c) = self.cluster.as_mut() {
                    c.controller = None;
                }
                if let Some(w) = waiter {
                    self.answer(w.reply, Some(w.lost), out);
                }
            }
        }
        self.pump_raft(now, out);
    }

    fn encode_for<T: Encodable + HeaderVersion>(&self, reply: ReplyTo, body: &T) -> Option<Bytes> {
        match protocol::encode_response(reply.correlation_id, reply.version, body) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                warn!(conn = reply.conn, error = %e, "cannot encode a controller response");
                None
            }
        }
    }

    /// Queue the two possible answers of a proposal.
    fn waiter<T: Encodable + HeaderVersion>(
        &mut self,
        reply: ReplyTo,
        committed: &T,
        lost: &T,
        out: &mut Vec<Output>,
    ) -> Option<CommitWaiter> {
        match (
            self.encode_for(reply, committed),
            self.encode_for(reply, lost),
        ) {
            (Some(committed), Some(lost)) => Some(CommitWaiter {
                reply,
                committed,
                lost,
            }),
            _ => {
                self.conns.remove(&reply.conn);
                out.push(Output::Close { conn: reply.conn });
                None
            }
        }
    }

    pub(super) fn handle_broker_registration(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: BrokerRegistrationRequest = decode(raw)?;
        let not_controller = BrokerRegistrationResponse::default()
            .with_error_code(NOT_CONTROLLER)
            .with_broker_epoch(-1);
        let next_offset = self
            .cluster
            .as_ref()
            .and_then(|c| c.raft.as_ref())
            .map(|r| r.log_end());
        let (Some(controller), Some(next_offset)) = (
            self.cluster.as_mut().and_then(|c| c.controller.as_mut()),
            next_offset,
        ) else {
            self.respond(reply, &not_controller, out);
            return Ok(());
        };
        let req = BrokerRegistrationReq {
            broker_id: request.broker_id.0,
            cluster_id: request.cluster_id.to_string(),
            incarnation_id: request.incarnation_id,
            endpoints: request
                .listeners
                .iter()
                .map(|l| Endpoint {
                    listener: l.name.to_string(),
                    host: l.host.to_string(),
                    port: l.port,
                })
                .collect(),
            rack: request.rack.as_ref().map(|r| r.to_string()),
            // Present from v2; empty (the default) before.
            log_dirs: request.log_dirs.clone(),
        };
        let (records, result) = controller.register_broker(now.mono_millis(), next_offset, req);
        let response = match result {
            Ok(epoch) => {
                info!(broker = request.broker_id.0, epoch, "broker registered");
                BrokerRegistrationResponse::default().with_broker_epoch(epoch)
            }
            Err(code) => BrokerRegistrationResponse::default()
                .with_error_code(code)
                .with_broker_epoch(-1),
        };
        let waiter = self.waiter(reply, &response, &not_controller, out);
        self.propose(now, records, waiter, out);
        Ok(())
    }

    pub(super) fn handle_broker_heartbeat(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: BrokerHeartbeatRequest = decode(raw)?;
        let not_controller = BrokerHeartbeatResponse::default()
            .with_error_code(NOT_CONTROLLER)
            .with_is_fenced(true);
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            self.respond(reply, &not_controller, out);
            return Ok(());
        };
        let (records, r) = controller.heartbeat(
            now.mono_millis(),
            HeartbeatReq {
                broker_id: request.broker_id.0,
                broker_epoch: request.broker_epoch,
                current_metadata_offset: request.current_metadata_offset,
                want_fence: request.want_fence,
                want_shutdown: request.want_shut_down,
            },
        );
        let response = BrokerHeartbeatResponse::default()
            .with_error_code(r.error)
            .with_is_caught_up(r.is_caught_up)
            .with_is_fenced(r.is_fenced)
            .with_should_shut_down(r.should_shutdown);
        let waiter = self.waiter(reply, &response, &not_controller, out);
        self.propose(now, records, waiter, out);
        self.arm_controller_timer(out);
        Ok(())
    }

    /// AllocateProducerIds (v0) from a broker, on the active controller: the
    /// answer goes out once the block's record commits.
    pub(super) fn handle_allocate_producer_ids(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: kafka_protocol::messages::AllocateProducerIdsRequest = decode(raw)?;
        let not_controller = kafka_protocol::messages::AllocateProducerIdsResponse::default()
            .with_error_code(NOT_CONTROLLER);
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            self.respond(reply, &not_controller, out);
            return Ok(());
        };
        match controller.allocate_producer_ids(request.broker_id.0, request.broker_epoch) {
            Err(error) => {
                info!(
                    broker = request.broker_id.0,
                    error = crate::metadata::errors::name(error),
                    "controller: AllocateProducerIds refused"
                );
                let response = kafka_protocol::messages::AllocateProducerIdsResponse::default()
                    .with_error_code(error);
                self.respond(reply, &response, out);
            }
            Ok((records, (first, len))) => {
                let response = kafka_protocol::messages::AllocateProducerIdsResponse::default()
                    .with_producer_id_start(kafka_protocol::messages::ProducerId(first))
                    .with_producer_id_len(len);
                let waiter = self.waiter(reply, &response, &not_controller, out);
                self.propose(now, records, waiter, out);
                self.arm_controller_timer(out);
            }
        }
        Ok(())
    }

    /// AlterPartition (v2-v3) from a partition leader: each partition goes
    /// through [`Controller::alter_partition`]; the answer goes out once the
    /// ISR changes commit (at once if there are none). Not the active
    /// controller: `NOT_CONTROLLER`; a stale broker epoch:
    /// `STALE_BROKER_EPOCH`; both as the top-level error.
    // Routed from node/mod.rs's request router (ApiKey::AlterPartition).
    pub(super) fn handle_alter_partition(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: AlterPartitionRequest = decode(raw)?;
        let version = raw.api_version;
        let not_controller = AlterPartitionResponse::default().with_error_code(NOT_CONTROLLER);
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            self.respond(reply, &not_controller, out);
            return Ok(());
        };
        let broker_id = request.broker_id.0;
        let error = controller.check_broker_epoch(broker_id, request.broker_epoch);
        if error != 0 {
            let response = AlterPartitionResponse::default().with_error_code(error);
            self.respond(reply, &response, out);
            return Ok(());
        }
        let mut records = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for t in &request.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let (new_isr, new_isr_broker_epochs) = if version >= 3 {
                    p.new_isr_with_epochs
                        .iter()
                        .map(|s| (s.broker_id.0, s.broker_epoch))
                        .unzip()
                } else {
                    (p.new_isr.iter().map(|b| b.0).collect(), Vec::new())
                };
                let (recs, r) = controller.alter_partition(AlterPartitionReq {
                    broker_id,
                    broker_epoch: request.broker_epoch,
                    topic_id: t.topic_id,
                    partition: p.partition_index,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr,
                    new_isr_broker_epochs,
                    leader_recovery_state: p.leader_recovery_state,
                });
                if r.error != 0 {
                    info!(
                        broker = broker_id,
                        topic_id = %t.topic_id,
                        partition = p.partition_index,
                        error = crate::metadata::errors::name(r.error),
                        "controller: AlterPartition refused"
                    );
                } else if !recs.is_empty() {
                    info!(
                        broker = broker_id,
                        topic_id = %t.topic_id,
                        partition = p.partition_index,
                        isr = ?r.isr,
                        "controller: ISR change"
                    );
                }
                records.extend(recs);
                partitions.push(
                    alter_partition_response::PartitionData::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(r.error)
                        .with_leader_id(BrokerId(r.leader))
                        .with_leader_epoch(r.leader_epoch)
                        .with_isr(r.isr.into_iter().map(BrokerId).collect())
                        .with_partition_epoch(r.partition_epoch),
                );
            }
            topics.push(
                alter_partition_response::TopicData::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(partitions),
            );
        }
        let response = AlterPartitionResponse::default().with_topics(topics);
        let waiter = self.waiter(reply, &response, &not_controller, out);
        self.propose(now, records, waiter, out);
        self.arm_controller_timer(out);
        Ok(())
    }

    pub(super) fn controller_create_topics(
        &mut self,
        now: Now,
        reply: ReplyTo,
        request: CreateTopicsRequest,
        out: &mut Vec<Output>,
    ) {
        let mut invalid: Vec<CreatableTopicResult> = Vec::new();
        let mut reqs = Vec::new();
        for t in &request.topics {
            let name = t.name.0.to_string();
            if let Err(why) = validate_topic_name(&name) {
                invalid.push(
                    CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(ResponseError::InvalidTopicException.code())
                        .with_error_message(Some(sb(&why)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
                continue;
            }
            reqs.push(CreateTopicReq {
                name,
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignments: t
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect(),
                configs: t
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect(),
            });
        }
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            return self.not_controller_create(reply, &request, out);
        };
        let (records, results) =
            controller.create_topics(now.mono_millis(), reqs, request.validate_only);
        let mut topics = invalid;
        for r in results {
            let ok = r.error == 0;
            if ok && !request.validate_only {
                info!(topic = %r.name, partitions = r.num_partitions, rf = r.replication_factor, "controller: creating topic");
            }
            topics.push(
                CreatableTopicResult::default()
                    .with_name(TopicName(sb(&r.name)))
                    .with_topic_id(r.topic_id)
                    .with_error_code(r.error)
                    .with_error_message(r.message.as_deref().map(sb))
                    .with_num_partitions(if ok { r.num_partitions } else { -1 })
                    .with_replication_factor(if ok { r.replication_factor } else { -1 }),
            );
        }
        let response = CreateTopicsResponse::default().with_topics(topics);
        let lost = not_controller_create_response(&request);
        let waiter = self.waiter(reply, &response, &lost, out);
        self.propose(now, records, waiter, out);
    }

    pub(super) fn not_controller_create(
        &mut self,
        reply: ReplyTo,
        request: &CreateTopicsRequest,
        out: &mut Vec<Output>,
    ) {
        self.respond(reply, &not_controller_create_response(request), out);
    }

    pub(super) fn controller_delete_topics(
        &mut self,
        now: Now,
        reply: ReplyTo,
        request: DeleteTopicsRequest,
        out: &mut Vec<Output>,
    ) {
        let mut names: Vec<String> = request
            .topic_names
            .iter()
            .map(|n| n.0.to_string())
            .collect();
        let mut ids: Vec<Uuid> = Vec::new();
        for t in &request.topics {
            match &t.name {
                Some(n) => names.push(n.0.to_string()),
                None => ids.push(t.topic_id),
            }
        }
        let lost = DeleteTopicsResponse::default().with_responses(
            names
                .iter()
                .map(|n| {
                    DeletableTopicResult::default()
                        .with_name(Some(TopicName(sb(n))))
                        .with_error_code(NOT_CONTROLLER)
                })
                .chain(ids.iter().map(|id| {
                    DeletableTopicResult::default()
                        .with_topic_id(*id)
                        .with_error_code(NOT_CONTROLLER)
                }))
                .collect(),
        );
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            self.respond(reply, &lost, out);
            return;
        };
        let (records, results) = controller.delete_topics(names, ids);
        let response = DeleteTopicsResponse::default().with_responses(
            results
                .into_iter()
                .map(|r| {
                    if r.error == 0 {
                        info!(topic = ?r.name, "controller: deleting topic");
                    }
                    DeletableTopicResult::default()
                        .with_name(r.name.as_deref().map(|n| TopicName(sb(n))))
                        .with_topic_id(r.topic_id)
                        .with_error_code(r.error)
                })
                .collect(),
        );
        let waiter = self.waiter(reply, &response, &lost, out);
        self.propose(now, records, waiter, out);
    }

    pub(super) fn controller_create_partitions(
        &mut self,
        now: Now,
        reply: ReplyTo,
        request: CreatePartitionsRequest,
        out: &mut Vec<Output>,
    ) {
        let lost = CreatePartitionsResponse::default().with_results(
            request
                .topics
                .iter()
                .map(|t| {
                    CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(NOT_CONTROLLER)
                })
                .collect(),
        );
        let Some(controller) = self.cluster.as_mut().and_then(|c| c.controller.as_mut()) else {
            self.respond(reply, &lost, out);
            return;
        };
        let reqs = request
            .topics
            .iter()
            .map(|t| CreatePartitionsReq {
                name: t.name.0.to_string(),
                count: t.count,
                assignments: t
                    .assignments
                    .as_ref()
                    .map(|a| {
                        a.iter()
                            .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let (records, results) =
            controller.create_partitions(now.mono_millis(), reqs, request.validate_only);
        let response = CreatePartitionsResponse::default().with_results(
            results
                .into_iter()
                .map(|(name, error, message)| {
                    CreatePartitionsTopicResult::default()
                        .with_name(TopicName(sb(&name)))
                        .with_error_code(error)
                        .with_error_message(message.as_deref().map(sb))
                })
                .collect(),
        );
        let waiter = self.waiter(reply, &response, &lost, out);
        self.propose(now, records, waiter, out);
    }
}

fn not_controller_create_response(request: &CreateTopicsRequest) -> CreateTopicsResponse {
    CreateTopicsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(NOT_CONTROLLER)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    //! AlterPartition on the wire, against a one-voter cluster. The request
    //! goes straight to the handler (as the node's router will send it),
    //! and what the handler outputs is carried out as the harness would.

    use kafka_protocol::messages::alter_partition_request::{
        BrokerState, PartitionData, TopicData,
    };
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic,
    };
    use kafka_protocol::messages::*;
    use uuid::Uuid;

    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::super::tests::{decode_response, topic_name, Harness};
    use super::super::ReplyTo;
    use crate::config::{BrokerConfig, ProcessRole};
    use crate::metadata::controller::{BrokerRegistrationReq, HeartbeatReq};
    use crate::metadata::errors::{
        FENCED_LEADER_EPOCH, INELIGIBLE_REPLICA, INVALID_UPDATE_VERSION, NOT_CONTROLLER,
        STALE_BROKER_EPOCH, UNKNOWN_TOPIC_ID,
    };
    use crate::protocol::RawRequest;
    use crate::seam::{ConnId, DiskExecutor, Input, Output};

    fn cluster_config() -> BrokerConfig {
        BrokerConfig {
            node_id: 0,
            advertised: "node-0:9092".into(),
            cluster_id: "c1".into(),
            process_roles: vec![ProcessRole::Broker, ProcessRole::Controller],
            controller_quorum_voters: vec![(0, "node-0:9092".into())],
            broker_heartbeat_interval_ms: 200,
            ..BrokerConfig::default()
        }
    }

    fn carry_out(h: &mut Harness, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send { conn, bytes } => {
                    h.sent.entry(conn).or_default().extend_from_slice(&bytes)
                }
                Output::Disk { req, op } => {
                    let result = h.disk.execute(&op);
                    h.step(Input::DiskDone { req, result });
                }
                Output::SetTimer { id, at_nanos } => {
                    h.timers.insert(id, at_nanos);
                }
                Output::CancelTimer { id } => {
                    h.timers.remove(&id);
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    /// One AlterPartition round trip at `version`.
    fn alter(
        h: &mut Harness,
        conn: ConnId,
        version: i16,
        request: &AlterPartitionRequest,
    ) -> AlterPartitionResponse {
        // protocol::parse_request refuses API keys the broker does not list
        // as served (AlterPartition is not listed yet): build it by hand.
        let mut body = BytesMut::new();
        request.encode(&mut body, version).unwrap();
        let raw = RawRequest {
            api_key: ApiKey::AlterPartition,
            api_version: version,
            header: RequestHeader::default()
                .with_request_api_key(ApiKey::AlterPartition as i16)
                .with_request_api_version(version)
                .with_correlation_id(99),
            body: body.freeze(),
        };
        let c = h.node.conns.get_mut(&conn).unwrap();
        let seq = c.next_seq;
        c.next_seq += 1;
        c.answers.push_back((seq, None));
        let reply = ReplyTo {
            conn,
            seq,
            correlation_id: 99,
            version,
        };
        let mut out = Vec::new();
        h.node
            .handle_alter_partition(h.now, reply, &raw, &mut out)
            .unwrap();
        carry_out(h, out);
        for _ in 0..100 {
            if let Some(frame) = h.take_frame(conn) {
                let (correlation, response) = decode_response(frame, version);
                assert_eq!(correlation, 99);
                return response;
            }
            h.advance_millis(10);
        }
        panic!("no AlterPartition answer");
    }

    /// A request for partition 0 of `topic_id` from broker 0; the ISR is
    /// put in the field of `version` (epochs are dropped for v2).
    fn request(
        version: i16,
        broker_epoch: i64,
        topic_id: Uuid,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[(i32, i64)],
    ) -> AlterPartitionRequest {
        AlterPartitionRequest::default()
            .with_broker_id(BrokerId(0))
            .with_broker_epoch(broker_epoch)
            .with_topics(vec![TopicData::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(0)
                    .with_leader_epoch(leader_epoch)
                    .with_partition_epoch(partition_epoch)
                    .with_new_isr(if version < 3 {
                        isr.iter().map(|(b, _)| BrokerId(*b)).collect()
                    } else {
                        Vec::new()
                    })
                    .with_new_isr_with_epochs(if version >= 3 {
                        isr.iter()
                            .map(|(b, e)| {
                                BrokerState::default()
                                    .with_broker_id(BrokerId(*b))
                                    .with_broker_epoch(*e)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    })])])
    }

    fn serving(h: &mut Harness) {
        for _ in 0..200 {
            if h.node.is_active_controller()
                && h.node
                    .cluster
                    .as_ref()
                    .and_then(|c| c.image.broker(0))
                    .is_some_and(|b| !b.fenced)
            {
                return;
            }
            h.advance_millis(50);
        }
        panic!("the one-node cluster never served");
    }

    /// Registers and unfences a broker 1 straight through the controller;
    /// returns its epoch.
    fn add_broker_1(h: &mut Harness) -> i64 {
        let now_ms = h.now.mono_millis();
        let cluster = h.node.cluster.as_mut().unwrap();
        let next = cluster.raft.as_ref().unwrap().log_end();
        let controller = cluster.controller.as_mut().unwrap();
        let (mut records, epoch) = controller.register_broker(
            now_ms,
            next,
            BrokerRegistrationReq {
                broker_id: 1,
                cluster_id: "c1".into(),
                incarnation_id: Uuid::from_u128(1),
                endpoints: Vec::new(),
                rack: None,
                log_dirs: Vec::new(),
            },
        );
        let epoch = epoch.unwrap();
        let (more, reply) = controller.heartbeat(
            now_ms,
            HeartbeatReq {
                broker_id: 1,
                broker_epoch: epoch,
                current_metadata_offset: i64::MAX,
                want_fence: false,
                want_shutdown: false,
            },
        );
        assert!(!reply.is_fenced);
        records.extend(more);
        let mut out = Vec::new();
        h.node.propose(h.now, records, None, &mut out);
        carry_out(h, out);
        h.advance_millis(50);
        epoch
    }

    #[test]
    fn alter_partition_to_a_node_that_is_not_the_controller_is_not_controller() {
        let mut h = Harness::new(cluster_config());
        h.connect(1);
        serving(&mut h);
        // As after losing the quorum leadership: no controller.
        h.node.cluster.as_mut().unwrap().controller = None;
        assert!(!h.node.is_active_controller());
        let r = alter(
            &mut h,
            1,
            2,
            &request(2, 0, Uuid::from_u128(1), 0, 0, &[(0, -1)]),
        );
        assert_eq!(r.error_code, NOT_CONTROLLER);
        assert!(r.topics.is_empty());
    }

    #[test]
    fn alter_partition_commits_isr_changes_and_answers_refusals() {
        let mut h = Harness::new(cluster_config());
        h.connect(1);
        serving(&mut h);
        let epoch1 = add_broker_1(&mut h);
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name("t"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(0), BrokerId(1)])])]);
        h.send(1, ApiKey::CreateTopics, 7, &create);
        let mut created = None;
        for _ in 0..100 {
            if let Some(frame) = h.take_frame(1) {
                created = Some(decode_response::<CreateTopicsResponse>(frame, 7).1);
                break;
            }
            h.advance_millis(10);
        }
        let created = created.expect("a CreateTopics answer");
        assert_eq!(created.topics[0].error_code, 0, "{created:?}");
        let tid = created.topics[0].topic_id;
        let image = |h: &Harness| h.node.cluster.as_ref().unwrap().image.clone();
        let epoch0 = image(&h).broker(0).unwrap().epoch;
        assert_eq!(image(&h).partition("t", 0).unwrap().isr, vec![0, 1]);

        // v2 shrink: answered once committed, with the new state.
        let r = alter(&mut h, 1, 2, &request(2, epoch0, tid, 0, 0, &[(0, -1)]));
        assert_eq!(r.error_code, 0);
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 0, 0));
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![BrokerId(0)], 1));
        assert_eq!(r.topics[0].topic_id, tid);
        assert_eq!(image(&h).partition("t", 0).unwrap().isr, vec![0]);

        // v3 expand with a wrong broker epoch for 1: ineligible; right: done.
        let r = alter(
            &mut h,
            1,
            3,
            &request(3, epoch0, tid, 0, 1, &[(0, epoch0), (1, epoch1 + 1)]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, INELIGIBLE_REPLICA);
        let r = alter(
            &mut h,
            1,
            3,
            &request(3, epoch0, tid, 0, 1, &[(0, epoch0), (1, epoch1)]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.isr, vec![BrokerId(0), BrokerId(1)]);
        assert_eq!(p.partition_epoch, 2);
        assert_eq!(image(&h).partition("t", 0).unwrap().isr, vec![0, 1]);

        // Refusals, answered at once.
        let stale = alter(&mut h, 1, 2, &request(2, epoch0, tid, 0, 1, &[(0, -1)]));
        assert_eq!(
            stale.topics[0].partitions[0].error_code,
            INVALID_UPDATE_VERSION
        );
        let fenced = request(2, epoch0, tid, -1, 2, &[(0, -1)]);
        assert_eq!(
            alter(&mut h, 1, 2, &fenced).topics[0].partitions[0].error_code,
            FENCED_LEADER_EPOCH
        );
        let unknown = alter(
            &mut h,
            1,
            2,
            &request(2, epoch0, Uuid::from_u128(7), 0, 2, &[]),
        );
        assert_eq!(unknown.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_ID);
        let wrong_epoch = alter(&mut h, 1, 2, &request(2, epoch0 + 1, tid, 0, 2, &[(0, -1)]));
        assert_eq!(wrong_epoch.error_code, STALE_BROKER_EPOCH);
        assert!(wrong_epoch.topics.is_empty());
        assert_eq!(image(&h).partition("t", 0).unwrap().partition_epoch, 2);
    }
}
