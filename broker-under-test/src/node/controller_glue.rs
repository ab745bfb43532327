//! The active controller on the quorum leader: turns BrokerRegistration,
//! BrokerHeartbeat, CreateTopics, DeleteTopics and CreatePartitions into
//! metadata records, proposes them, and answers once they are committed
//! (or NOT_CONTROLLER if leadership is lost first).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
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
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tracing::{info, warn};
use uuid::Uuid;

use super::cluster::CommitWaiter;
use super::{decode, HandlerResult, Node, ReplyTo, TIMER_CONTROLLER};
use crate::metadata::controller::{
    BrokerRegistrationReq, Controller, ControllerConfig, CreatePartitionsReq, CreateTopicReq,
    HeartbeatReq,
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
