//! Metadata, CreateTopics and DeleteTopics.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

use tracing::info;
use uuid::Uuid;

use super::{decode, HandlerResult, Node, OpId, OpKind, PartId, ReplyTo, Topic};
use crate::log::{LogState, PartitionLog};
use crate::protocol::{validate_topic_name, RawRequest};
use crate::seam::{Now, Output};

pub(super) struct PendingCreate {
    results: Vec<(CreatableTopicResult, Vec<PartId>)>,
}

pub(super) struct PendingDelete {
    results: Vec<(DeletableTopicResult, Vec<PartId>)>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Node {
    pub(super) fn handle_metadata(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        if self.cluster.is_some() {
            return self.cluster_metadata(now, reply, raw, out);
        }
        let request: MetadataRequest = decode(raw)?;
        let (requested, allow_create) = self.metadata_asks(request, raw.api_version);
        let names = requested.unwrap_or_else(|| self.topics.keys().cloned().collect());
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            let mut topic = MetadataResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_is_internal(name == super::group::OFFSETS_TOPIC)
                .with_topic_authorized_operations(i32::MIN);
            if let Err(why) = validate_topic_name(&name) {
                tracing::debug!(%why, "metadata for an invalid topic name");
                topic.error_code = ResponseError::InvalidTopicException.code();
            } else if self.topics.contains_key(&name) {
                topic = self.describe_topic(topic, &name);
            } else if allow_create {
                let partitions = self.config.num_partitions;
                let parts = self.create_topic(&name, partitions, now, out);
                info!(topic = %name, partitions, "auto-created topic");
                let _ = parts;
                topic = self.describe_topic(topic, &name);
            } else {
                topic.error_code = ResponseError::UnknownTopicOrPartition.code();
            }
            topics.push(topic);
        }
        let (host, port) = self.advertised_host_port();
        let response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(self.config.node_id))
                .with_host(str_bytes(&host))
                .with_port(port)])
            .with_cluster_id(Some(str_bytes(&self.config.cluster_id)))
            .with_controller_id(BrokerId(self.config.node_id))
            .with_topics(topics)
            .with_cluster_authorized_operations(i32::MIN);
        self.respond(reply, &response, out);
        Ok(())
    }

    /// What a Metadata request asks for: the topics it names (`None`: all
    /// of them) and whether unknown ones may be auto-created.
    pub(super) fn metadata_asks(
        &self,
        request: MetadataRequest,
        version: i16,
    ) -> (Option<Vec<String>>, bool) {
        // v0: an empty list means all topics; v1+: null means all.
        let requested = match request.topics {
            None => None,
            Some(list) if list.is_empty() && version == 0 => None,
            // v10+ may name a topic by id (KIP-848 clients resolve their
            // assignments so); an unknown id is left out.
            Some(list) => Some(
                list.into_iter()
                    .filter_map(|t| match t.name {
                        Some(n) => Some(n.0.to_string()),
                        None => self.topic_name_by_id(&t.topic_id),
                    })
                    .collect(),
            ),
        };
        let allow_create = (version < 4 || request.allow_auto_topic_creation)
            && self.config.auto_create_topics_enable;
        (requested, allow_create)
    }

    fn topic_name_by_id(&self, id: &Uuid) -> Option<String> {
        if id.is_nil() {
            return None;
        }
        match &self.cluster {
            Some(c) => c.image.topic_names_by_id.get(id).cloned(),
            None => self
                .topics
                .iter()
                .find(|(_, t)| t.id == *id)
                .map(|(n, _)| n.clone()),
        }
    }

    pub(super) fn advertised_host_port(&self) -> (String, i32) {
        match self.config.advertised.rsplit_once(':') {
            Some((host, port)) => (
                host.trim_matches(['[', ']']).to_string(),
                port.parse().unwrap_or(9092),
            ),
            None => (self.config.advertised.clone(), 9092),
        }
    }

    fn describe_topic(
        &self,
        mut topic: MetadataResponseTopic,
        name: &str,
    ) -> MetadataResponseTopic {
        let Some(t) = self.topics.get(name) else {
            topic.error_code = ResponseError::UnknownTopicOrPartition.code();
            return topic;
        };
        topic.topic_id = t.id;
        let me = BrokerId(self.config.node_id);
        let mut any_opening = false;
        for (&index, part) in &t.partitions {
            let state = self.partitions.get(part).map(|p| p.log.state().clone());
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(me)
                .with_leader_epoch(self.leader_epoch)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me]);
            match state {
                Some(LogState::Online) => {}
                Some(LogState::Failed(_)) => {
                    p.error_code = ResponseError::KafkaStorageError.code();
                    p.leader_id = BrokerId(-1);
                    p.isr_nodes = vec![];
                    p.offline_replicas = vec![me];
                }
                _ => {
                    any_opening = true;
                    p.error_code = ResponseError::LeaderNotAvailable.code();
                    p.leader_id = BrokerId(-1);
                }
            }
            topic.partitions.push(p);
        }
        if any_opening {
            topic.error_code = ResponseError::LeaderNotAvailable.code();
        }
        topic
    }

    /// Create a topic's partitions (their logs open asynchronously).
    pub(super) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        now: Now,
        out: &mut Vec<Output>,
    ) -> BTreeMap<i32, PartId> {
        let id = self.new_topic_id();
        let mut parts = BTreeMap::new();
        for index in 0..partitions {
            let dir = format!("{name}-{index}");
            let part = self.add_partition(
                name,
                index,
                |config, io| PartitionLog::create(dir, *id.as_bytes(), config, now, io),
                out,
            );
            parts.insert(index, part);
        }
        self.topics.insert(
            name.to_string(),
            Topic {
                id,
                partitions: parts.clone(),
            },
        );
        for part in parts.values() {
            // Creation may finish at once on some disks; take its events.
            while let Some(event) = self
                .partitions
                .get_mut(part)
                .and_then(|p| p.log.poll_event())
            {
                self.dispatch_log_event(*part, event, now, out);
            }
        }
        parts
    }

    /// A partition directory of `name` is still being deleted.
    fn deleting(&self, name: &str) -> bool {
        self.partitions
            .values()
            .any(|p| p.topic == name && matches!(p.log.state(), LogState::Deleting))
    }

    pub(super) fn handle_create_topics(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: CreateTopicsRequest = decode(raw)?;
        let mut results = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut waiting = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let num_partitions = if topic.num_partitions == -1 {
                self.config.num_partitions
            } else {
                topic.num_partitions
            };
            let replication = if topic.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                topic.replication_factor
            };
            let mut result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(num_partitions)
                .with_replication_factor(replication);
            let error: Option<(ResponseError, String)> = if !seen.insert(name.clone()) {
                Some((
                    ResponseError::InvalidRequest,
                    format!("topic `{name}` is named twice"),
                ))
            } else if let Err(why) = validate_topic_name(&name) {
                Some((ResponseError::InvalidTopicException, why))
            } else if self.topics.contains_key(&name) {
                Some((
                    ResponseError::TopicAlreadyExists,
                    format!("topic `{name}` already exists"),
                ))
            } else if self.deleting(&name) {
                Some((
                    ResponseError::TopicAlreadyExists,
                    format!("topic `{name}` is being deleted"),
                ))
            } else if !topic.assignments.is_empty() {
                Some((
                    ResponseError::InvalidReplicaAssignment,
                    "manual replica assignment is not supported".to_string(),
                ))
            } else if num_partitions < 1 {
                Some((
                    ResponseError::InvalidPartitions,
                    "number of partitions must be at least 1".into(),
                ))
            } else if num_partitions > 100_000 {
                Some((
                    ResponseError::InvalidPartitions,
                    "at most 100000 partitions per topic".into(),
                ))
            } else if replication != 1 {
                Some((
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "replication factor {replication} is larger than the 1 available broker"
                    ),
                ))
            } else {
                None
            };
            match error {
                Some((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(StrBytes::from_string(message));
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                    results.push((result, Vec::new()));
                }
                None if request.validate_only => results.push((result, Vec::new())),
                None => {
                    if !topic.configs.is_empty() {
                        tracing::warn!(topic = %name, "topic configs are not supported yet; broker defaults apply");
                    }
                    let parts = self.create_topic(&name, num_partitions, now, out);
                    info!(topic = %name, partitions = num_partitions, "created topic");
                    result.topic_id = self.topics.get(&name).map(|t| t.id).unwrap_or(Uuid::nil());
                    waiting.extend(parts.values().copied());
                    results.push((result, parts.into_values().collect()));
                }
            }
        }
        let deadline = now.after_millis(request.timeout_ms.max(0) as u64);
        let id = self.park(
            reply,
            Some(deadline),
            OpKind::CreateTopics(PendingCreate { results }),
            &waiting,
        );
        self.create_poll(id, out);
        Ok(())
    }

    pub(super) fn create_poll(&mut self, id: OpId, out: &mut Vec<Output>) {
        let Some(OpKind::CreateTopics(pending)) = self.ops.get(&id).map(|op| &op.kind) else {
            return;
        };
        let opening = pending
            .results
            .iter()
            .any(|(_, parts)| self.any_log_in(parts, is_opening));
        if !opening {
            self.create_answer(id, false, out);
        }
    }

    pub(super) fn create_expire(&mut self, id: OpId, out: &mut Vec<Output>) {
        self.create_answer(id, true, out);
    }

    fn create_answer(&mut self, id: OpId, expired: bool, out: &mut Vec<Output>) {
        let Some(op) = self.unpark(id) else { return };
        let OpKind::CreateTopics(pending) = op.kind else {
            return;
        };
        let mut topics = Vec::new();
        for (mut result, parts) in pending.results {
            if let Some((code, message)) = self.admin_outcome(&parts, expired, is_opening) {
                result.error_code = code;
                result.error_message = message.map(StrBytes::from_string);
            }
            topics.push(result);
        }
        self.respond(
            op.reply,
            &CreateTopicsResponse::default().with_topics(topics),
            out,
        );
    }

    pub(super) fn handle_delete_topics(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: DeleteTopicsRequest = decode(raw)?;
        // v0-5 name topics in `topic_names`; v6 in `topics`, by name or id.
        let mut wanted: Vec<(Option<String>, Uuid)> = request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect();
        wanted.extend(
            request
                .topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
        );
        let mut results = Vec::new();
        let mut waiting = Vec::new();
        for (name, topic_id) in wanted {
            let name = name.or_else(|| {
                self.topics
                    .iter()
                    .find(|(_, t)| t.id == topic_id && !topic_id.is_nil())
                    .map(|(n, _)| n.clone())
            });
            let mut result = DeletableTopicResult::default()
                .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(topic_id);
            let Some(name) = name else {
                result.error_code = ResponseError::UnknownTopicId.code();
                results.push((result, Vec::new()));
                continue;
            };
            let Some(topic) = self.topics.remove(&name) else {
                result.error_code = ResponseError::UnknownTopicOrPartition.code();
                results.push((result, Vec::new()));
                continue;
            };
            result.topic_id = topic.id;
            info!(topic = %name, "deleting topic");
            self.delete_logs(now, &topic, out);
            waiting.extend(topic.partitions.values().copied());
            results.push((result, topic.partitions.into_values().collect()));
        }
        let deadline = now.after_millis(request.timeout_ms.max(0) as u64);
        let id = self.park(
            reply,
            Some(deadline),
            OpKind::DeleteTopics(PendingDelete { results }),
            &waiting,
        );
        self.delete_poll(id, out);
        Ok(())
    }

    pub(super) fn delete_poll(&mut self, id: OpId, out: &mut Vec<Output>) {
        let Some(OpKind::DeleteTopics(pending)) = self.ops.get(&id).map(|op| &op.kind) else {
            return;
        };
        let deleting = pending
            .results
            .iter()
            .any(|(_, parts)| self.any_log_in(parts, is_deleting));
        if !deleting {
            self.delete_answer(id, false, out);
        }
    }

    pub(super) fn delete_expire(&mut self, id: OpId, out: &mut Vec<Output>) {
        self.delete_answer(id, true, out);
    }

    fn delete_answer(&mut self, id: OpId, expired: bool, out: &mut Vec<Output>) {
        let Some(op) = self.unpark(id) else { return };
        let OpKind::DeleteTopics(pending) = op.kind else {
            return;
        };
        let mut responses = Vec::new();
        for (mut result, parts) in pending.results {
            if let Some((code, message)) = self.admin_outcome(&parts, expired, is_deleting) {
                result.error_code = code;
                result.error_message = message.map(StrBytes::from_string);
            }
            responses.push(result);
        }
        self.respond(
            op.reply,
            &DeleteTopicsResponse::default().with_responses(responses),
            out,
        );
    }

    /// Start deleting a topic's local logs (their directories go when done).
    fn delete_logs(&mut self, now: Now, topic: &Topic, out: &mut Vec<Output>) {
        for part in topic.partitions.values() {
            self.with_log(*part, out, |log, io| log.delete(io));
            while let Some(event) = self
                .partitions
                .get_mut(part)
                .and_then(|p| p.log.poll_event())
            {
                self.dispatch_log_event(*part, event, now, out);
            }
        }
    }

    /// Forget a local topic and delete its logs (the image removed it, or a
    /// new topic of the same name replaces it).
    pub(super) fn delete_local_topic(&mut self, now: Now, name: &str, out: &mut Vec<Output>) {
        if let Some(topic) = self.topics.remove(name) {
            info!(topic = %name, "deleting the local replicas of a removed topic");
            self.delete_logs(now, &topic, out);
        }
    }

    /// Whether any of these partitions' logs is still in a `busy` state.
    fn any_log_in(&self, parts: &[PartId], busy: fn(&LogState) -> bool) -> bool {
        parts.iter().any(|part| {
            self.partitions
                .get(part)
                .is_some_and(|p| busy(p.log.state()))
        })
    }

    /// The error a topic's CreateTopics/DeleteTopics result takes from its
    /// partitions' logs: a failed log's KAFKA_STORAGE_ERROR first, else
    /// REQUEST_TIMED_OUT if the request expired with a log still `busy`.
    fn admin_outcome(
        &self,
        parts: &[PartId],
        expired: bool,
        busy: fn(&LogState) -> bool,
    ) -> Option<(i16, Option<String>)> {
        let states = parts
            .iter()
            .filter_map(|part| self.partitions.get(part).map(|p| p.log.state()));
        let mut timed_out = false;
        for state in states {
            if let LogState::Failed(why) = state {
                return Some((ResponseError::KafkaStorageError.code(), Some(why.clone())));
            }
            timed_out |= expired && busy(state);
        }
        timed_out.then(|| (ResponseError::RequestTimedOut.code(), None))
    }
}

fn is_opening(state: &LogState) -> bool {
    matches!(state, LogState::Opening)
}

fn is_deleting(state: &LogState) -> bool {
    matches!(state, LogState::Deleting)
}
