//! What clients see of the cluster: Metadata and DescribeCluster from the
//! committed metadata image, DescribeQuorum from the quorum leader, the
//! routing of admin requests to the active controller, and which partitions
//! this node serves (their leader).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::describe_quorum_response::{self as dq, DescribeQuorumResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeQuorumRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{decode, HandlerResult, Node, PartId, ReplyTo};
use crate::log::LogState;
use crate::metadata::image::MetadataImage;
use crate::protocol::{validate_topic_name, RawRequest};
use crate::raft::Role;
use crate::seam::{Now, Output};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Client ids of requests one node sends another; such requests are never
/// forwarded again (a forwarding loop between two stale nodes).
const PEER_CLIENT_PREFIX: &str = "stormlog-node-";

/// An internal topic a coordinator keeps its state in.
pub(super) struct InternalTopic {
    pub name: &'static str,
    pub partitions: i32,
    pub replication_factor: i16,
    /// The setting that gives the replication factor, for messages.
    pub replication_factor_key: &'static str,
    /// Its `min.insync.replicas` (capped at the replication factor).
    pub min_isr: Option<i16>,
}

impl Node {
    /// The partition of `topic` numbered `index` if this node should serve
    /// clients for it, or the error that tells them where to go.
    pub(super) fn leader_lookup(&self, topic: &str, index: i32) -> Result<PartId, ResponseError> {
        let Some(cluster) = self.cluster.as_ref() else {
            return self
                .lookup(topic, index)
                .ok_or(ResponseError::UnknownTopicOrPartition);
        };
        let Some(p) = cluster.image.partition(topic, index) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        if p.leader != self.config.node_id {
            return Err(if p.leader < 0 {
                ResponseError::LeaderNotAvailable
            } else {
                ResponseError::NotLeaderOrFollower
            });
        }
        self.lookup(topic, index)
            .ok_or(ResponseError::NotLeaderOrFollower)
    }

    /// The leader epoch of a partition this node serves (0 outside a cluster).
    pub(super) fn partition_leader_epoch(&self, topic: &str, index: i32) -> i32 {
        self.cluster
            .as_ref()
            .and_then(|c| c.image.partition(topic, index))
            .map_or(self.leader_epoch, |p| p.leader_epoch)
    }

    /// Whether a request came from another node of the cluster.
    fn from_peer(raw: &RawRequest) -> bool {
        raw.header
            .client_id
            .as_ref()
            .is_some_and(|c| c.starts_with(PEER_CLIENT_PREFIX))
    }

    /// CreateTopics, DeleteTopics and CreatePartitions in a cluster: the
    /// active controller does them; a broker forwards them to it.
    pub(super) fn route_admin(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let timeout_ms = match raw.api_key {
            ApiKey::CreateTopics => {
                let request: CreateTopicsRequest = decode(raw)?;
                if self.is_active_controller() {
                    self.controller_create_topics(now, reply, request, out);
                    return Ok(());
                }
                request.timeout_ms
            }
            ApiKey::DeleteTopics => {
                let request: DeleteTopicsRequest = decode(raw)?;
                if self.is_active_controller() {
                    self.controller_delete_topics(now, reply, request, out);
                    return Ok(());
                }
                request.timeout_ms
            }
            ApiKey::CreatePartitions => {
                let request: CreatePartitionsRequest = decode(raw)?;
                if self.is_active_controller() {
                    self.controller_create_partitions(now, reply, request, out);
                    return Ok(());
                }
                request.timeout_ms
            }
            _ => return Ok(()),
        };
        if Self::from_peer(raw) || !self.config.is_broker() {
            self.admin_error_answer(reply, raw, ResponseError::NotController.code(), out);
        } else {
            self.forward_to_controller(now, reply, raw, timeout_ms.max(1000) as u64, out);
        }
        Ok(())
    }

    /// Metadata answered from the committed image.
    pub(super) fn cluster_metadata(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: MetadataRequest = decode(raw)?;
        let version = raw.api_version;
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(());
        };
        let image = &cluster.image;
        let (requested, allow_create) = self.metadata_asks(request, version);
        let names: Vec<String> =
            requested.unwrap_or_else(|| image.topics.keys().cloned().collect());
        let mut topics = Vec::with_capacity(names.len());
        let mut to_create = Vec::new();
        for name in names {
            let mut topic = MetadataResponseTopic::default()
                .with_name(Some(TopicName(sb(&name))))
                .with_is_internal(name == super::group::OFFSETS_TOPIC)
                .with_topic_authorized_operations(i32::MIN);
            if let Err(why) = validate_topic_name(&name) {
                tracing::debug!(%why, "metadata for an invalid topic name");
                topic.error_code = ResponseError::InvalidTopicException.code();
            } else if let Some(t) = image.topic(&name) {
                topic.topic_id = t.id;
                for (&index, p) in &t.partitions {
                    let offline: Vec<BrokerId> = p
                        .replicas
                        .iter()
                        .filter(|r| image.broker(**r).is_none_or(|b| b.fenced))
                        .map(|r| BrokerId(*r))
                        .collect();
                    let mut mp = MetadataResponsePartition::default()
                        .with_partition_index(index)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                        .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                        .with_offline_replicas(offline);
                    if p.leader < 0 {
                        mp.error_code = ResponseError::LeaderNotAvailable.code();
                    } else if p.leader == self.config.node_id {
                        // Our own log may still be opening, or failed.
                        let state = self
                            .lookup(&name, index)
                            .and_then(|part| self.partitions.get(&part))
                            .map(|x| x.log.state().clone());
                        if let Some(LogState::Failed(_)) = state {
                            mp.error_code = ResponseError::KafkaStorageError.code();
                        }
                    }
                    topic.partitions.push(mp);
                }
            } else if allow_create {
                topic.error_code = ResponseError::LeaderNotAvailable.code();
                to_create.push(name.clone());
            } else {
                topic.error_code = ResponseError::UnknownTopicOrPartition.code();
            }
            topics.push(topic);
        }
        let brokers = metadata_brokers(image);
        let controller = self.client_visible_controller(image);
        let response = MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(sb(&self.config.cluster_id)))
            .with_controller_id(BrokerId(controller))
            .with_topics(topics)
            .with_cluster_authorized_operations(i32::MIN);
        self.respond(reply, &response, out);
        if !to_create.is_empty() {
            self.auto_create(now, to_create, out);
        }
        Ok(())
    }

    /// Kafka 4 shows clients a live broker as "the controller" (the real
    /// one may be unreachable to them): the quorum leader if it is a live
    /// broker, else the lowest live broker.
    fn client_visible_controller(&self, image: &MetadataImage) -> i32 {
        let live = image.live_brokers();
        let leader = self.cluster.as_ref().and_then(|c| c.leader());
        match leader {
            Some(l) if live.contains(&l) => l,
            _ => live.first().copied().unwrap_or(-1),
        }
    }

    /// Ask the controller to create topics a Metadata request named
    /// (`auto.create.topics.enable`); the client retries its Metadata.
    fn auto_create(&mut self, now: Now, names: Vec<String>, out: &mut Vec<Output>) {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let topics = names
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(TopicName(sb(n)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect();
        tracing::info!(topics = ?names, "auto-creating topics");
        self.ask_controller_to_create(now, topics, out);
    }

    /// Ask the controller to create `__consumer_offsets` (compacted, as Kafka's).
    /// Ask the active controller to create an internal topic (compacted).
    pub(super) fn create_internal_topic(
        &mut self,
        now: Now,
        topic: &InternalTopic,
        out: &mut Vec<Output>,
    ) {
        use kafka_protocol::messages::create_topics_request::{
            CreatableTopic, CreatableTopicConfig,
        };
        let mut configs = vec![CreatableTopicConfig::default()
            .with_name(sb("cleanup.policy"))
            .with_value(Some(sb("compact")))];
        if let Some(min_isr) = topic.min_isr {
            let min_isr = min_isr.min(topic.replication_factor);
            configs.push(
                CreatableTopicConfig::default()
                    .with_name(sb("min.insync.replicas"))
                    .with_value(Some(sb(&min_isr.to_string()))),
            );
        }
        let request = CreatableTopic::default()
            .with_name(TopicName(sb(topic.name)))
            .with_num_partitions(topic.partitions)
            .with_replication_factor(topic.replication_factor)
            .with_configs(configs);
        tracing::info!(
            partitions = topic.partitions,
            replication_factor = topic.replication_factor,
            "asking the controller to create {}",
            topic.name
        );
        self.ask_controller_to_create(now, vec![request], out);
    }

    /// Send a CreateTopics nobody waits for to the active controller (or do it
    /// here when this node is it); whoever needs the topics asks again.
    fn ask_controller_to_create(
        &mut self,
        now: Now,
        topics: Vec<kafka_protocol::messages::create_topics_request::CreatableTopic>,
        out: &mut Vec<Output>,
    ) {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(topics);
        // No client waits for this answer: it goes nowhere.
        let sink = ReplyTo {
            conn: u64::MAX,
            seq: 0,
            correlation_id: 0,
            version: 5,
        };
        if self.is_active_controller() {
            self.controller_create_topics(now, sink, request, out);
            return;
        }
        let Some(leader) = self.cluster.as_ref().and_then(|c| c.leader()) else {
            return;
        };
        let Some(addr) = self.config.voter_address(leader).map(str::to_string) else {
            return;
        };
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.send(
                now.mono_nanos,
                leader,
                &addr,
                ApiKey::CreateTopics,
                5,
                &request,
                super::peers::PeerTag::Forward { op: 0 },
                out,
            );
        }
    }

    pub(super) fn handle_describe_cluster(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let _request: DescribeClusterRequest = decode(raw)?;
        let Some(cluster) = self.cluster.as_ref() else {
            // The legacy single node describes itself.
            let (host, port) = self.advertised_host_port();
            let response = DescribeClusterResponse::default()
                .with_cluster_id(sb(&self.config.cluster_id))
                .with_controller_id(BrokerId(self.config.node_id))
                .with_cluster_authorized_operations(i32::MIN)
                .with_brokers(vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(self.config.node_id))
                    .with_host(sb(&host))
                    .with_port(port)]);
            self.respond(reply, &response, out);
            return Ok(());
        };
        let image = &cluster.image;
        let brokers = image
            .brokers
            .values()
            .filter_map(|b| {
                let e = b.endpoints.first()?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(sb(&e.host))
                        .with_port(e.port as i32)
                        .with_rack(b.rack.as_deref().map(sb))
                        .with_is_fenced(b.fenced),
                )
            })
            .collect();
        let controller = self.client_visible_controller(image);
        let response = DescribeClusterResponse::default()
            .with_cluster_id(sb(&self.config.cluster_id))
            .with_controller_id(BrokerId(controller))
            .with_cluster_authorized_operations(i32::MIN)
            .with_brokers(brokers);
        self.respond(reply, &response, out);
        Ok(())
    }

    /// DescribeQuorum: the leader answers; a broker forwards it there.
    pub(super) fn handle_describe_quorum(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let _request: DescribeQuorumRequest = decode(raw)?;
        let leading = self
            .cluster
            .as_ref()
            .and_then(|c| c.raft.as_ref())
            .is_some_and(|r| r.role() == Role::Leader);
        if !leading {
            if self.cluster.is_some() && !Self::from_peer(raw) {
                self.forward_to_controller(now, reply, raw, 5_000, out);
            } else {
                let code = ResponseError::NotLeaderOrFollower.code();
                self.respond(
                    reply,
                    &DescribeQuorumResponse::default().with_error_code(code),
                    out,
                );
            }
            return Ok(());
        }
        let raft = self
            .cluster
            .as_ref()
            .and_then(|c| c.raft.as_ref())
            .expect("leading");
        let d = raft.describe();
        // The core keeps monotonic times; Kafka reports wall-clock Unix ms.
        let wall = |mono_ms: Option<u64>| {
            mono_ms.map_or(-1, |t| {
                now.wall_millis - (now.mono_millis().saturating_sub(t)) as i64
            })
        };
        let state = |r: &crate::raft::ReplicaState| {
            dq::ReplicaState::default()
                .with_replica_id(BrokerId(r.id))
                .with_log_end_offset(r.log_end)
                .with_last_fetch_timestamp(wall(r.last_fetch_ms))
                .with_last_caught_up_timestamp(wall(r.last_caught_up_ms))
        };
        let partition = dq::PartitionData::default()
            .with_leader_id(BrokerId(d.leader.unwrap_or(-1)))
            .with_leader_epoch(d.epoch)
            .with_high_watermark(d.high_watermark.unwrap_or(-1))
            .with_current_voters(d.voters.iter().map(state).collect())
            .with_observers(d.observers.iter().map(state).collect());
        let response = DescribeQuorumResponse::default()
            .with_topics(vec![dq::TopicData::default()
                .with_topic_name(TopicName(sb(super::quorum_wire::METADATA_TOPIC)))
                .with_partitions(vec![partition])]);
        self.respond(reply, &response, out);
        Ok(())
    }
}

/// Live brokers with the endpoint clients use (the first one registered).
fn metadata_brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b.endpoints.first()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(sb(&e.host))
                    .with_port(e.port as i32)
                    .with_rack(b.rack.as_deref().map(sb)),
            )
        })
        .collect()
}
