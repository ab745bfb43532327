//! The KIP-848 group APIs on the wire: ConsumerGroupHeartbeat (v0-1) and
//! ConsumerGroupDescribe (v0-1), and the topic map the coordinator resolves
//! subscriptions against.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    consumer_group_describe_response as describe, consumer_group_heartbeat_response as heartbeat,
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{decode, HandlerResult, Node, ReplyTo};
use crate::group::assignors::TopicPartitions;
use crate::group::{self, ConsumerHeartbeatResponse};
use crate::protocol::RawRequest;
use crate::seam::{Now, Output};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

impl Node {
    /// Topic name -> (id, partition count): the metadata image in a cluster,
    /// the local topics otherwise.
    fn topic_map(&self) -> BTreeMap<String, (Uuid, i32)> {
        match &self.cluster {
            Some(c) => c
                .image
                .topics
                .values()
                .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                .collect(),
            None => self
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), (t.id, t.partitions.len() as i32)))
                .collect(),
        }
    }

    /// Hands the coordinator the current topics (cheap; called on every
    /// consumer group request and when the served partitions change).
    pub(super) fn groups_set_topics(&mut self) {
        let topics = self.topic_map();
        self.groups.coordinator.set_topics(topics);
    }

    pub(super) fn handle_consumer_group_api(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        self.groups_set_topics();
        match raw.api_key {
            ApiKey::ConsumerGroupHeartbeat => {
                let r: ConsumerGroupHeartbeatRequest = decode(raw)?;
                let client_host = self
                    .conns
                    .get(&reply.conn)
                    .map(|c| c.peer.clone())
                    .unwrap_or_default();
                let client_id = raw.header.client_id.as_ref().map(|c| c.to_string());
                let owned = r.topic_partitions.map(|tps| {
                    let mut owned = TopicPartitions::new();
                    for t in tps.into_iter().filter(|t| !t.partitions.is_empty()) {
                        owned.entry(t.topic_id).or_default().extend(t.partitions);
                    }
                    owned
                });
                let request = group::ConsumerHeartbeatRequest {
                    version: raw.api_version,
                    group_id: r.group_id.0.to_string(),
                    member_id: r.member_id.to_string(),
                    member_epoch: r.member_epoch,
                    instance_id: opt(&r.instance_id),
                    rack_id: opt(&r.rack_id),
                    rebalance_timeout_ms: r.rebalance_timeout_ms,
                    subscribed_topic_names: r
                        .subscribed_topic_names
                        .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
                    subscribed_topic_regex: opt(&r.subscribed_topic_regex),
                    server_assignor: opt(&r.server_assignor),
                    owned,
                    client_id: client_id.unwrap_or_default(),
                    client_host,
                };
                let req = self.groups.register(reply, ApiKey::ConsumerGroupHeartbeat);
                let mut effects = Vec::new();
                self.groups.coordinator.consumer_heartbeat(
                    now.mono_millis() as i64,
                    req,
                    request,
                    &mut effects,
                );
                self.groups.push_effects(effects);
                self.pump_groups(now, out);
            }
            ApiKey::ConsumerGroupDescribe => {
                let r: ConsumerGroupDescribeRequest = decode(raw)?;
                let mut response = ConsumerGroupDescribeResponse::default();
                for id in r.group_ids {
                    let d = self.groups.coordinator.consumer_describe(&id.0);
                    response
                        .groups
                        .push(self.described(d, r.include_authorized_operations));
                }
                self.respond(reply, &response, out);
            }
            _ => {}
        }
        Ok(())
    }

    fn described(
        &self,
        d: group::DescribedConsumerGroup,
        with_operations: bool,
    ) -> describe::DescribedGroup {
        let assignment = |tps: &TopicPartitions| {
            let mut a = describe::Assignment::default();
            a.topic_partitions = tps
                .iter()
                .map(|(id, ps)| {
                    let mut t = describe::TopicPartitions::default();
                    t.topic_id = *id;
                    let name = self.groups.coordinator.topic_name(id).unwrap_or_default();
                    t.topic_name = TopicName(sb(&name));
                    t.partitions = ps.iter().copied().collect();
                    t
                })
                .collect();
            a
        };
        let mut g = describe::DescribedGroup::default();
        g.error_code = d.error;
        g.group_id = GroupId(sb(&d.group_id));
        g.group_state = sb(&d.state);
        g.group_epoch = d.group_epoch;
        g.assignment_epoch = d.assignment_epoch;
        g.assignor_name = sb(&d.assignor_name);
        // READ, DELETE, DESCRIBE: no authorizer here.
        g.authorized_operations = if with_operations {
            (1 << 3) | (1 << 6) | (1 << 8)
        } else {
            i32::MIN
        };
        g.members = d
            .members
            .iter()
            .map(|m| {
                let mut w = describe::Member::default();
                w.member_id = sb(&m.member_id);
                w.instance_id = m.instance_id.as_deref().map(sb);
                w.rack_id = m.rack_id.as_deref().map(sb);
                w.member_epoch = m.member_epoch;
                w.client_id = sb(&m.client_id);
                w.client_host = sb(&m.client_host);
                w.subscribed_topic_names = m
                    .subscribed_topic_names
                    .iter()
                    .map(|n| TopicName(sb(n)))
                    .collect();
                w.subscribed_topic_regex = m.subscribed_topic_regex.as_deref().map(sb);
                w.assignment = assignment(&m.assignment);
                w.target_assignment = assignment(&m.target_assignment);
                // 1: a member of the consumer protocol (v1).
                w.member_type = 1;
                w
            })
            .collect();
        g
    }

    pub(super) fn answer_consumer_heartbeat(
        &mut self,
        to: ReplyTo,
        r: ConsumerHeartbeatResponse,
        out: &mut Vec<Output>,
    ) {
        let mut w = ConsumerGroupHeartbeatResponse::default();
        w.error_code = r.error;
        w.error_message = r.error_message.as_deref().map(sb);
        w.member_id = r.member_id.as_deref().map(sb);
        w.member_epoch = r.member_epoch;
        w.heartbeat_interval_ms = r.heartbeat_interval_ms;
        w.assignment = r.assignment.map(|tps| {
            let mut a = heartbeat::Assignment::default();
            a.topic_partitions = tps
                .into_iter()
                .map(|(id, ps)| {
                    let mut t = heartbeat::TopicPartitions::default();
                    t.topic_id = id;
                    t.partitions = ps.into_iter().collect();
                    t
                })
                .collect();
            a
        });
        self.respond(to, &w, out);
    }
}
