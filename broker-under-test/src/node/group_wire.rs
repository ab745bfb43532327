//! The group APIs on the wire: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
//! DescribeGroups, DeleteGroups and OffsetDelete. Requests are decoded into
//! the coordinator's plain structs; its answers are encoded here, per version.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use kafka_protocol::messages::{
    describe_groups_response, join_group_response, leave_group_response, list_groups_response,
    offset_commit_response, offset_delete_response, offset_fetch_response, ApiKey, BrokerId,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::cluster_admin::InternalTopic;
use super::group::OFFSETS_TOPIC;
use super::{decode, HandlerResult, Node, ReplyTo};
use crate::group::{self, Reply};
use crate::protocol::RawRequest;
use crate::seam::{Now, Output};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Per-partition answers grouped by topic, topics in first-seen order (the
/// wire nests partitions under their topic).
fn by_topic<T>(parts: impl IntoIterator<Item = (String, i32, T)>) -> Vec<(String, Vec<(i32, T)>)> {
    let mut topics: Vec<(String, Vec<(i32, T)>)> = Vec::new();
    for (topic, index, answer) in parts {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, list)) => list.push((index, answer)),
            None => topics.push((topic, vec![(index, answer)])),
        }
    }
    topics
}

/// Kafka's FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a group's coordinator is, or why it cannot be told yet.
pub(super) struct Located {
    pub(super) error: i16,
    message: Option<String>,
    node: i32,
    host: String,
    port: i32,
}

impl Located {
    fn unavailable(message: impl Into<String>) -> Located {
        Located {
            error: ResponseError::CoordinatorNotAvailable.code(),
            message: Some(message.into()),
            node: -1,
            host: String::new(),
            port: -1,
        }
    }
}

impl Node {
    pub(super) fn handle_group_api(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let now_ms = now.mono_millis() as i64;
        let version = raw.api_version;
        let client_id = raw
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let mut effects = Vec::new();
        match raw.api_key {
            ApiKey::FindCoordinator => {
                let request: FindCoordinatorRequest = decode(raw)?;
                self.find_coordinator(now, reply, request, out);
                return Ok(());
            }
            ApiKey::JoinGroup => {
                let r: JoinGroupRequest = decode(raw)?;
                let host = self
                    .conns
                    .get(&reply.conn)
                    .map(|c| c.peer.clone())
                    .unwrap_or_default();
                let request = group::JoinRequest {
                    group_id: r.group_id.0.to_string(),
                    session_timeout_ms: r.session_timeout_ms,
                    // v0 has no rebalance timeout: Kafka uses the session timeout.
                    rebalance_timeout_ms: if version == 0 {
                        r.session_timeout_ms
                    } else {
                        r.rebalance_timeout_ms
                    },
                    member_id: r.member_id.to_string(),
                    group_instance_id: opt(&r.group_instance_id),
                    protocol_type: r.protocol_type.to_string(),
                    protocols: r
                        .protocols
                        .into_iter()
                        .map(|p| (p.name.to_string(), p.metadata))
                        .collect(),
                    require_known_member_id: version >= 4,
                    client_id,
                    client_host: host,
                    reason: opt(&r.reason),
                };
                let req = self.groups.register(reply, ApiKey::JoinGroup);
                self.groups
                    .coordinator
                    .join(now_ms, req, request, &mut effects);
            }
            ApiKey::SyncGroup => {
                let r: SyncGroupRequest = decode(raw)?;
                let request = group::SyncRequest {
                    group_id: r.group_id.0.to_string(),
                    generation_id: r.generation_id,
                    member_id: r.member_id.to_string(),
                    group_instance_id: opt(&r.group_instance_id),
                    protocol_type: opt(&r.protocol_type),
                    protocol_name: opt(&r.protocol_name),
                    assignments: r
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.to_string(), a.assignment))
                        .collect(),
                };
                let req = self.groups.register(reply, ApiKey::SyncGroup);
                self.groups
                    .coordinator
                    .sync(now_ms, req, request, &mut effects);
            }
            ApiKey::Heartbeat => {
                let r: HeartbeatRequest = decode(raw)?;
                let request = group::HeartbeatRequest {
                    group_id: r.group_id.0.to_string(),
                    generation_id: r.generation_id,
                    member_id: r.member_id.to_string(),
                    group_instance_id: opt(&r.group_instance_id),
                };
                let req = self.groups.register(reply, ApiKey::Heartbeat);
                self.groups
                    .coordinator
                    .heartbeat(now_ms, req, request, &mut effects);
            }
            ApiKey::LeaveGroup => {
                let r: LeaveGroupRequest = decode(raw)?;
                let members = if version >= 3 {
                    r.members
                        .into_iter()
                        .map(|m| {
                            (
                                m.member_id.to_string(),
                                opt(&m.group_instance_id),
                                opt(&m.reason),
                            )
                        })
                        .collect()
                } else {
                    vec![(r.member_id.to_string(), None, None)]
                };
                let request = group::LeaveRequest {
                    group_id: r.group_id.0.to_string(),
                    members,
                };
                let req = self.groups.register(reply, ApiKey::LeaveGroup);
                self.groups
                    .coordinator
                    .leave(now_ms, req, request, &mut effects);
            }
            ApiKey::OffsetCommit => {
                let r: OffsetCommitRequest = decode(raw)?;
                let mut partitions = Vec::new();
                for topic in r.topics {
                    let name = topic.name.0.to_string();
                    for p in topic.partitions {
                        let error = if self.topic_partition_exists(&name, p.partition_index) {
                            0
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        };
                        partitions.push((
                            group::CommitPartition {
                                topic: name.clone(),
                                partition: p.partition_index,
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                metadata: opt(&p.committed_metadata),
                            },
                            error,
                        ));
                    }
                }
                let request = group::CommitRequest {
                    group_id: r.group_id.0.to_string(),
                    generation_id: r.generation_id_or_member_epoch,
                    member_id: r.member_id.to_string(),
                    group_instance_id: opt(&r.group_instance_id),
                    partitions,
                };
                let req = self.groups.register(reply, ApiKey::OffsetCommit);
                self.groups
                    .coordinator
                    .commit(now_ms, req, request, &mut effects);
            }
            ApiKey::OffsetFetch => {
                let r: OffsetFetchRequest = decode(raw)?;
                self.offset_fetch(reply, r, out);
                return Ok(());
            }
            ApiKey::ListGroups => {
                let r: ListGroupsRequest = decode(raw)?;
                let states: Vec<String> = r.states_filter.iter().map(|s| s.to_string()).collect();
                // v5 filters by group type ("classic" or "consumer").
                let wanted = |group_type: &str| {
                    r.types_filter.is_empty()
                        || r.types_filter
                            .iter()
                            .any(|t| t.eq_ignore_ascii_case(group_type))
                };
                let (error, groups) = self.groups.coordinator.list_groups(&states);
                let mut response = ListGroupsResponse::default();
                response.error_code = error;
                response.groups = groups
                    .into_iter()
                    .filter(|g| wanted(&g.group_type))
                    .map(|g| {
                        let mut l = list_groups_response::ListedGroup::default();
                        l.group_id = GroupId(sb(&g.group_id));
                        l.protocol_type = sb(&g.protocol_type);
                        l.group_state = sb(&g.state);
                        l.group_type = sb(&g.group_type);
                        l
                    })
                    .collect();
                self.respond(reply, &response, out);
                return Ok(());
            }
            ApiKey::DescribeGroups => {
                let r: DescribeGroupsRequest = decode(raw)?;
                let mut response = DescribeGroupsResponse::default();
                for id in r.groups.clone() {
                    let g = self.groups.coordinator.describe(&id.0);
                    let mut d = describe_groups_response::DescribedGroup::default();
                    d.error_code = g.error;
                    d.group_id = id;
                    d.group_state = sb(&g.state);
                    d.protocol_type = sb(&g.protocol_type);
                    d.protocol_data = sb(&g.protocol);
                    // Without an authorizer every group operation is allowed:
                    // READ (3), DELETE (6), DESCRIBE (8); MIN_VALUE when not asked.
                    d.authorized_operations = if r.include_authorized_operations {
                        (1 << 3) | (1 << 6) | (1 << 8)
                    } else {
                        i32::MIN
                    };
                    d.members = g
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut w = describe_groups_response::DescribedGroupMember::default();
                            w.member_id = sb(&m.member_id);
                            w.group_instance_id = m.group_instance_id.as_deref().map(sb);
                            w.client_id = sb(&m.client_id);
                            w.client_host = sb(&m.client_host);
                            w.member_metadata = m.metadata;
                            w.member_assignment = m.assignment;
                            w
                        })
                        .collect();
                    response.groups.push(d);
                }
                self.respond(reply, &response, out);
                return Ok(());
            }
            ApiKey::DeleteGroups => {
                let r: DeleteGroupsRequest = decode(raw)?;
                let groups = r
                    .groups_names
                    .into_iter()
                    .map(|g| g.0.to_string())
                    .collect();
                let req = self.groups.register(reply, ApiKey::DeleteGroups);
                self.groups
                    .coordinator
                    .delete_groups(now_ms, req, groups, &mut effects);
            }
            ApiKey::OffsetDelete => {
                let r: OffsetDeleteRequest = decode(raw)?;
                let partitions = r
                    .topics
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.to_string();
                        t.partitions
                            .into_iter()
                            .map(move |p| (name.clone(), p.partition_index))
                    })
                    .collect();
                let req = self.groups.register(reply, ApiKey::OffsetDelete);
                self.groups.coordinator.delete_offsets(
                    now_ms,
                    req,
                    r.group_id.0.to_string(),
                    partitions,
                    &mut effects,
                );
            }
            _ => return Ok(()),
        }
        self.groups.push_effects(effects);
        self.pump_groups(now, out);
        Ok(())
    }

    /// Whether clients can use `topic`'s partition `index` (in the image or, for
    /// a single node, hosted here).
    fn topic_partition_exists(&self, topic: &str, index: i32) -> bool {
        match self.cluster.as_ref() {
            Some(c) => c.image.partition(topic, index).is_some(),
            None => self.lookup(topic, index).is_some(),
        }
    }

    fn find_coordinator(
        &mut self,
        now: Now,
        reply: ReplyTo,
        request: FindCoordinatorRequest,
        out: &mut Vec<Output>,
    ) {
        let keys: Vec<String> = if reply.version >= 4 {
            request
                .coordinator_keys
                .iter()
                .map(|k| k.to_string())
                .collect()
        } else {
            vec![request.key.to_string()]
        };
        let located: Vec<(String, Located)> = keys
            .into_iter()
            .map(|key| {
                let found = if request.key_type == KEY_TYPE_GROUP {
                    self.locate_group(now, &key, out)
                } else if request.key_type == KEY_TYPE_TRANSACTION {
                    self.locate_txn_coordinator(now, &key, out)
                } else {
                    Located {
                        error: ResponseError::InvalidRequest.code(),
                        message: Some(format!(
                            "coordinator key type {} is not served (groups 0, transactions 1)",
                            request.key_type
                        )),
                        node: -1,
                        host: String::new(),
                        port: -1,
                    }
                };
                (key, found)
            })
            .collect();
        let mut response = FindCoordinatorResponse::default();
        if reply.version >= 4 {
            response.coordinators = located
                .into_iter()
                .map(|(key, l)| {
                    let mut c = WireCoordinator::default();
                    c.key = sb(&key);
                    c.node_id = BrokerId(l.node);
                    c.host = sb(&l.host);
                    c.port = l.port;
                    c.error_code = l.error;
                    c.error_message = l.message.as_deref().map(sb);
                    c
                })
                .collect();
        } else if let Some((_, l)) = located.into_iter().next() {
            response.error_code = l.error;
            response.error_message = l.message.as_deref().map(sb);
            response.node_id = BrokerId(l.node);
            response.host = sb(&l.host);
            response.port = l.port;
        }
        self.respond(reply, &response, out);
    }

    /// The broker leading the group's `__consumer_offsets` partition; the
    /// topic is created on first use, as Kafka does.
    fn locate_group(&mut self, now: Now, group_id: &str, out: &mut Vec<Output>) -> Located {
        let partitions = self.groups.coordinator.config().offsets_partitions;
        let index = group::partition_for(group_id, partitions);
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions,
            replication_factor: self.config.offsets_topic_replication_factor,
            replication_factor_key: "offsets.topic.replication.factor",
            min_isr: None,
        };
        let located = self.locate_internal(now, &topic, index, out);
        if self.cluster.is_none() && located.error != 0 {
            self.groups_reconcile(now, out);
        }
        located
    }

    /// The broker leading partition `index` of an internal topic (a
    /// coordinator's); the topic is created on first use, as Kafka does.
    pub(super) fn locate_internal(
        &mut self,
        now: Now,
        topic: &InternalTopic,
        index: i32,
        out: &mut Vec<Output>,
    ) -> Located {
        let name = topic.name;
        let Some(cluster) = self.cluster.as_ref() else {
            if self.topics.contains_key(name) {
                let (host, port) = self.advertised_host_port();
                return Located {
                    error: 0,
                    message: None,
                    node: self.config.node_id,
                    host,
                    port,
                };
            }
            info!(partitions = topic.partitions, "creating {name}");
            self.create_topic(name, topic.partitions, now, out);
            return Located::unavailable(format!("{name} is being created"));
        };
        let image = &cluster.image;
        if image.topic(name).is_none() {
            let brokers = image.live_brokers().len();
            let rf = topic.replication_factor;
            if brokers < rf as usize {
                return Located::unavailable(format!(
                    "{name} needs {}={rf} brokers; {brokers} are registered",
                    topic.replication_factor_key
                ));
            }
            // At most one ask a second: whoever needs the topic asks again.
            let now_ms = now.mono_millis();
            let asked = self.internal_create_asked.get(name).copied();
            if asked.is_none_or(|at| now_ms >= at.saturating_add(1000)) {
                self.internal_create_asked.insert(name, now_ms);
                self.create_internal_topic(now, topic, out);
            }
            return Located::unavailable(format!("{name} is being created"));
        }
        let Some(p) = image.partition(name, index) else {
            return Located::unavailable(format!("{name} has no partition {index}"));
        };
        let endpoint = image
            .brokers
            .get(&p.leader)
            .filter(|b| !b.fenced)
            .and_then(|b| b.endpoints.first());
        match endpoint {
            Some(e) => Located {
                error: 0,
                message: None,
                node: p.leader,
                host: e.host.clone(),
                port: e.port as i32,
            },
            None => Located::unavailable(format!("{name} partition {index} has no leader")),
        }
    }

    fn offset_fetch(&mut self, reply: ReplyTo, r: OffsetFetchRequest, out: &mut Vec<Output>) {
        let mut response = OffsetFetchResponse::default();
        let answer = |coordinator: &crate::group::Coordinator,
                      group_id: &str,
                      topics: Option<Vec<(String, Vec<i32>)>>| {
            coordinator.fetch_offsets(&group::OffsetFetchRequest {
                group_id: group_id.to_string(),
                partitions: topics.map(|ts| {
                    ts.into_iter()
                        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                        .collect()
                }),
            })
        };
        if reply.version >= 8 {
            for g in r.groups {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let fetched = answer(&self.groups.coordinator, &g.group_id.0, topics);
                let mut wire = offset_fetch_response::OffsetFetchResponseGroup::default();
                wire.group_id = g.group_id;
                wire.error_code = fetched.error;
                wire.topics = by_topic(
                    fetched
                        .partitions
                        .into_iter()
                        .map(|(t, p, c, e)| (t, p, (c, e))),
                )
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = offset_fetch_response::OffsetFetchResponseTopics::default();
                    t.name = TopicName(sb(&name));
                    t.partitions = parts
                        .into_iter()
                        .map(|(index, (committed, error))| {
                            let mut p =
                                offset_fetch_response::OffsetFetchResponsePartitions::default();
                            p.partition_index = index;
                            p.error_code = error;
                            p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                            p.committed_leader_epoch =
                                committed.as_ref().map_or(-1, |c| c.leader_epoch);
                            p.metadata =
                                Some(sb(committed.as_ref().map_or("", |c| c.metadata.as_str())));
                            p
                        })
                        .collect();
                    t
                })
                .collect();
                response.groups.push(wire);
            }
        } else {
            let topics = r.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = answer(&self.groups.coordinator, &r.group_id.0, topics);
            response.error_code = fetched.error;
            response.topics = by_topic(
                fetched
                    .partitions
                    .into_iter()
                    .map(|(t, p, c, e)| (t, p, (c, e))),
            )
            .into_iter()
            .map(|(name, parts)| {
                let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
                t.name = TopicName(sb(&name));
                t.partitions = parts
                    .into_iter()
                    .map(|(index, (committed, error))| {
                        let mut p = offset_fetch_response::OffsetFetchResponsePartition::default();
                        p.partition_index = index;
                        // v0-1 have no top-level error: a group error goes on
                        // each partition, as Kafka does.
                        p.error_code = if error == 0 && reply.version < 2 {
                            fetched.error
                        } else {
                            error
                        };
                        p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                        p.committed_leader_epoch =
                            committed.as_ref().map_or(-1, |c| c.leader_epoch);
                        p.metadata =
                            Some(sb(committed.as_ref().map_or("", |c| c.metadata.as_str())));
                        p
                    })
                    .collect();
                t
            })
            .collect();
        }
        self.respond(reply, &response, out);
    }

    /// Encode the coordinator's answer to a request as its API and version want.
    pub(super) fn answer_group(
        &mut self,
        to: ReplyTo,
        api: ApiKey,
        reply: Reply,
        out: &mut Vec<Output>,
    ) {
        match (api, reply) {
            (ApiKey::JoinGroup, Reply::Join(j)) => {
                let mut r = JoinGroupResponse::default();
                r.error_code = j.error;
                r.generation_id = j.generation_id;
                // v0-6 carry a non-null protocol name.
                r.protocol_name = match j.protocol_name {
                    Some(p) => Some(sb(&p)),
                    None if to.version < 7 => Some(sb("")),
                    None => None,
                };
                r.protocol_type = j.protocol_type.as_deref().map(sb);
                r.leader = sb(&j.leader);
                r.skip_assignment = j.skip_assignment;
                r.member_id = sb(&j.member_id);
                r.members = j
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut w = join_group_response::JoinGroupResponseMember::default();
                        w.member_id = sb(&m.member_id);
                        w.group_instance_id = m.group_instance_id.as_deref().map(sb);
                        w.metadata = m.metadata;
                        w
                    })
                    .collect();
                self.respond(to, &r, out);
            }
            (ApiKey::SyncGroup, Reply::Sync(s)) => {
                let mut r = SyncGroupResponse::default();
                r.error_code = s.error;
                r.protocol_type = s.protocol_type.as_deref().map(sb);
                r.protocol_name = s.protocol_name.as_deref().map(sb);
                r.assignment = s.assignment;
                self.respond(to, &r, out);
            }
            (ApiKey::Heartbeat, Reply::Heartbeat(error)) => {
                let mut r = HeartbeatResponse::default();
                r.error_code = error;
                self.respond(to, &r, out);
            }
            (ApiKey::LeaveGroup, Reply::Leave(l)) => {
                let mut r = LeaveGroupResponse::default();
                if to.version >= 3 {
                    r.error_code = l.error;
                    r.members = l
                        .members
                        .into_iter()
                        .map(|(id, instance, error)| {
                            let mut m = leave_group_response::MemberResponse::default();
                            m.member_id = sb(&id);
                            m.group_instance_id = instance.as_deref().map(sb);
                            m.error_code = error;
                            m
                        })
                        .collect();
                } else {
                    // v0-2 name one member: its error is the answer's.
                    r.error_code = if l.error != 0 {
                        l.error
                    } else {
                        l.members.first().map_or(0, |m| m.2)
                    };
                }
                self.respond(to, &r, out);
            }
            (ApiKey::OffsetCommit, Reply::Commit(parts)) => {
                let mut r = OffsetCommitResponse::default();
                for (topic, partitions) in by_topic(parts) {
                    let mut t = offset_commit_response::OffsetCommitResponseTopic::default();
                    t.name = TopicName(sb(&topic));
                    for (index, error) in partitions {
                        let mut p =
                            offset_commit_response::OffsetCommitResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = error;
                        t.partitions.push(p);
                    }
                    r.topics.push(t);
                }
                self.respond(to, &r, out);
            }
            (ApiKey::DeleteGroups, Reply::Delete(results)) => {
                let mut r = DeleteGroupsResponse::default();
                r.results = results
                    .into_iter()
                    .map(|(group_id, error)| {
                        let mut d =
                            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
                        d.group_id = GroupId(sb(&group_id));
                        d.error_code = error;
                        d
                    })
                    .collect();
                self.respond(to, &r, out);
            }
            (ApiKey::OffsetDelete, Reply::OffsetDelete(error, parts)) => {
                let mut r = OffsetDeleteResponse::default();
                r.error_code = error;
                for (topic, partitions) in by_topic(parts) {
                    let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
                    t.name = TopicName(sb(&topic));
                    for (index, error) in partitions {
                        let mut p =
                            offset_delete_response::OffsetDeleteResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = error;
                        t.partitions.push(p);
                    }
                    r.topics.push(t);
                }
                self.respond(to, &r, out);
            }
            (ApiKey::ConsumerGroupHeartbeat, Reply::ConsumerHeartbeat(r)) => {
                self.answer_consumer_heartbeat(to, r, out)
            }
            (api, reply) => {
                tracing::error!(?api, ?reply, "group answer of the wrong kind; closing");
                self.conns.remove(&to.conn);
                out.push(Output::Close { conn: to.conn });
            }
        }
    }
}
