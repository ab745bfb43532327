//! The coordinator's KIP-848 entry points: ConsumerGroupHeartbeat (join,
//! heartbeat, leave), ConsumerGroupDescribe, session and revocation
//! timeouts, and replaying the consumer group records on load.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::assignors::{self, TopicPartitions};
use super::consumer::{
    ConsumerGroup, ConsumerMember, MemberState, Rec, LEAVE_EPOCH, LEAVE_STATIC_EPOCH,
};
use super::coordinator::{Coordinator, Then};
use super::group::{code, reply};
use super::records::consumer::{self as rec, ConsumerKey};
use super::records::DecodeError;
use super::*;

type Refusal = (i16, Option<String>);

fn refuse<T>(error: i16, message: impl Into<String>) -> Result<T, Refusal> {
    Err((error, Some(message.into())))
}

/// Kafka's checks of a heartbeat's fields before anything else.
fn validate(r: &ConsumerHeartbeatRequest) -> Result<(), Refusal> {
    let invalid = code::INVALID_REQUEST;
    if r.group_id.is_empty() {
        return refuse(invalid, "GroupId can't be empty.");
    }
    if r.instance_id.as_deref() == Some("") {
        return refuse(invalid, "InstanceId can't be empty.");
    }
    match r.member_epoch {
        0 => {
            if r.rebalance_timeout_ms == -1 {
                return refuse(
                    invalid,
                    "RebalanceTimeoutMs must be provided in first request.",
                );
            }
            if r.subscribed_topic_names.is_none() && r.subscribed_topic_regex.is_none() {
                return refuse(
                    invalid,
                    "SubscribedTopicNames must be set in first request.",
                );
            }
            if r.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return refuse(invalid, "TopicPartitions must be empty when (re-)joining.");
            }
            if r.version >= 1 && r.member_id.is_empty() {
                return refuse(invalid, "MemberId can't be empty.");
            }
        }
        e if e > 0 || e == LEAVE_EPOCH || e == LEAVE_STATIC_EPOCH => {
            if r.member_id.is_empty() {
                return refuse(invalid, "MemberId can't be empty.");
            }
            if e == LEAVE_STATIC_EPOCH && r.instance_id.is_none() {
                return refuse(invalid, "InstanceId can't be null for a static leave.");
            }
        }
        _ => return refuse(invalid, "MemberEpoch is invalid."),
    }
    if let Some(re) = r
        .subscribed_topic_regex
        .as_deref()
        .filter(|re| !re.is_empty())
    {
        if let Err(e) = super::consumer::topic_regex(re) {
            let msg = format!("SubscribedTopicRegex {re}: {e}");
            return refuse(code::INVALID_REGULAR_EXPRESSION, msg);
        }
    }
    if let Some(a) = r.server_assignor.as_deref() {
        if !assignors::is_known(a) {
            return refuse(
                code::UNSUPPORTED_ASSIGNOR,
                format!("ServerAssignor {a} is not supported."),
            );
        }
    }
    Ok(())
}

fn is_subset(a: &TopicPartitions, b: &TopicPartitions) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

/// What a heartbeat leads to: the partition, records to write and the answer.
type Outcome = (i32, Vec<Rec>, ConsumerHeartbeatResponse);

impl Coordinator {
    /// The topics subscriptions resolve against: name -> (id, partition count).
    /// Cheap to call often; groups rebalance on their next heartbeat when a
    /// subscribed topic appears, disappears or grows.
    pub fn set_topics(&mut self, topics: BTreeMap<String, (Uuid, i32)>) {
        self.topics = topics;
    }

    pub fn consumer_heartbeat(
        &mut self,
        now_ms: i64,
        req: ReqId,
        r: ConsumerHeartbeatRequest,
        out: &mut Vec<Effect>,
    ) {
        let group_id = r.group_id.clone();
        match self.heartbeat_outcome(now_ms, &r) {
            Err((error, error_message)) => {
                // A group created by a refused join leaves nothing behind.
                if self
                    .consumer_groups
                    .get(&group_id)
                    .is_some_and(|g| g.members.is_empty() && g.epoch == 0)
                {
                    self.consumer_groups.remove(&group_id);
                }
                let response = ConsumerHeartbeatResponse {
                    error,
                    error_message,
                    ..Default::default()
                };
                reply(out, req, Reply::ConsumerHeartbeat(response));
            }
            Ok((_, records, response)) if records.is_empty() => {
                reply(out, req, Reply::ConsumerHeartbeat(response))
            }
            Ok((partition, records, response)) => {
                let then = Then::ConsumerHeartbeat { req, response };
                self.appends.append(partition, records, then, out);
            }
        }
    }

    fn heartbeat_outcome(
        &mut self,
        now_ms: i64,
        r: &ConsumerHeartbeatRequest,
    ) -> Result<Outcome, Refusal> {
        validate(r)?;
        let partition = self.serving(&r.group_id).map_err(|e| (e, None))?;
        if self
            .groups
            .get(&r.group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            let msg = format!("Group {} is not a consumer group.", r.group_id);
            return refuse(code::GROUP_ID_NOT_FOUND, msg);
        }
        if r.member_epoch < 0 {
            return self.consumer_leave(partition, r);
        }
        if r.member_epoch > 0 && !self.consumer_groups.contains_key(&r.group_id) {
            return refuse(code::UNKNOWN_MEMBER_ID, "Unknown consumer group.");
        }
        // v0: the coordinator names a joining member (v1: the client does).
        let member_id = if r.member_id.is_empty() {
            self.uuid()
        } else {
            r.member_id.clone()
        };
        let topics = self.topics.clone();
        let cfg = self.config().clone();
        let g = self
            .consumer_groups
            .entry(r.group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(&r.group_id, partition));
        let mut records = Vec::new();
        let joining = r.member_epoch == 0;
        let mut replaced = false;
        if let Some(instance) = &r.instance_id {
            match g.static_members.get(instance).cloned() {
                Some(old) if old != member_id => {
                    if !joining {
                        return refuse(
                            code::FENCED_INSTANCE_ID,
                            "Instance id used by another member.",
                        );
                    }
                    if g.members
                        .get(&old)
                        .is_some_and(|m| m.epoch != LEAVE_STATIC_EPOCH)
                    {
                        let msg = format!("Static member {instance} has not left yet.");
                        return refuse(code::UNRELEASED_INSTANCE_ID, msg);
                    }
                    // The newcomer takes the static member's place and partitions.
                    records.extend(g.member_tombstones(&old));
                    if let Some(mut m) = g.members.remove(&old) {
                        m.member_id = member_id.clone();
                        m.epoch = m.previous_epoch;
                        g.members.insert(member_id.clone(), m);
                    }
                    if let Some(t) = g.target.remove(&old) {
                        let key = rec::key(rec::TARGET_MEMBER, &g.group_id, Some(&member_id));
                        records.push((key, Some(rec::target_member_value(&t))));
                        g.target.insert(member_id.clone(), t);
                    }
                    g.static_members.insert(instance.clone(), member_id.clone());
                    replaced = true;
                }
                Some(_) => {}
                None if !joining => {
                    return refuse(code::UNKNOWN_MEMBER_ID, "Unknown static member.")
                }
                None => {
                    g.static_members.insert(instance.clone(), member_id.clone());
                }
            }
        }
        let mut rebalance = false;
        let before = match g.members.get_mut(&member_id) {
            None if !joining => return refuse(code::UNKNOWN_MEMBER_ID, "Unknown member."),
            None => {
                g.members
                    .insert(member_id.clone(), ConsumerMember::new(&member_id));
                rebalance = true;
                None
            }
            Some(m) => {
                let before = (!replaced).then(|| (m.meta.clone(), m.current()));
                if joining {
                    if replaced {
                        // Took a static member's place above.
                    } else if m.epoch == LEAVE_STATIC_EPOCH {
                        m.epoch = m.previous_epoch;
                    } else {
                        // A rejoin: the member gave up whatever it had.
                        m.epoch = 0;
                        m.previous_epoch = 0;
                        m.state = MemberState::Stable;
                        m.assigned.clear();
                        m.pending_revocation.clear();
                    }
                } else if r.member_epoch > m.epoch {
                    return refuse(code::FENCED_MEMBER_EPOCH, "The member epoch is ahead.");
                } else if r.member_epoch < m.epoch {
                    // Only a lost answer to the last bump is forgiven.
                    let lost = r.member_epoch == m.previous_epoch
                        && r.owned.as_ref().is_none_or(|o| is_subset(o, &m.assigned));
                    if !lost {
                        return refuse(code::FENCED_MEMBER_EPOCH, "The member epoch is stale.");
                    }
                }
                before
            }
        };
        let m = g.members.get_mut(&member_id).expect("present");
        let mut meta = m.meta.clone();
        meta.instance_id = r.instance_id.clone();
        if r.rack_id.is_some() {
            meta.rack_id = r.rack_id.clone();
        }
        meta.client_id = r.client_id.clone();
        meta.client_host = r.client_host.clone();
        if r.rebalance_timeout_ms != -1 {
            meta.rebalance_timeout_ms = r.rebalance_timeout_ms;
        }
        if let Some(names) = &r.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            rebalance |= names != meta.subscribed_topic_names;
            meta.subscribed_topic_names = names;
        }
        if r.subscribed_topic_regex.is_some() {
            rebalance |= r.subscribed_topic_regex != meta.subscribed_topic_regex;
            meta.subscribed_topic_regex = r.subscribed_topic_regex.clone();
        }
        if r.server_assignor.is_some() && r.server_assignor != meta.server_assignor {
            rebalance = true;
            meta.server_assignor = r.server_assignor.clone();
        }
        m.meta = meta;
        if before
            .as_ref()
            .is_none_or(|(meta, _)| *meta != g.members[&member_id].meta)
        {
            records.push(g.member_record(&g.members[&member_id]));
        }
        rebalance |= g.resolve(&topics) != g.subscribed_topics;
        if rebalance {
            records.extend(g.rebalance(&topics));
        }
        g.reconcile(&member_id, r.owned.as_ref());
        let m = &g.members[&member_id];
        let changed = before
            .as_ref()
            .is_none_or(|(_, current)| *current != m.current());
        if changed {
            records.push(g.current_record(m));
        }
        let send_assignment = joining
            || changed
            || r.owned
                .as_ref()
                .is_some_and(|o| !is_subset(&m.assigned, o) || !is_subset(o, &m.assigned));
        let response = ConsumerHeartbeatResponse {
            error: code::NONE,
            error_message: None,
            member_id: Some(member_id.clone()),
            member_epoch: m.epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms,
            assignment: send_assignment.then(|| m.assigned.clone()),
        };
        let m = g.members.get_mut(&member_id).expect("present");
        m.session_deadline = Some(now_ms + cfg.consumer_session_timeout_ms as i64);
        m.revocation_deadline = match m.state {
            MemberState::UnrevokedPartitions => m
                .revocation_deadline
                .or(Some(now_ms + m.meta.rebalance_timeout_ms.max(0) as i64)),
            _ => None,
        };
        Ok((partition, records, response))
    }

    fn consumer_leave(
        &mut self,
        partition: i32,
        r: &ConsumerHeartbeatRequest,
    ) -> Result<Outcome, Refusal> {
        let topics = self.topics.clone();
        let Some(g) = self.consumer_groups.get_mut(&r.group_id) else {
            return refuse(code::UNKNOWN_MEMBER_ID, "Unknown consumer group.");
        };
        if let Some(instance) = &r.instance_id {
            match g.static_members.get(instance) {
                None => return refuse(code::UNKNOWN_MEMBER_ID, "Unknown static member."),
                Some(id) if *id != r.member_id => {
                    return refuse(
                        code::FENCED_INSTANCE_ID,
                        "Instance id used by another member.",
                    )
                }
                Some(_) => {}
            }
        }
        let Some(m) = g.members.get_mut(&r.member_id) else {
            return refuse(code::UNKNOWN_MEMBER_ID, "Unknown member.");
        };
        let records = if r.member_epoch == LEAVE_STATIC_EPOCH {
            // Away for a while: it keeps its partitions until its session ends.
            if m.epoch != LEAVE_STATIC_EPOCH {
                m.previous_epoch = m.epoch;
                m.epoch = LEAVE_STATIC_EPOCH;
            }
            vec![g.current_record(&g.members[&r.member_id])]
        } else {
            remove_member(g, &r.member_id, &topics)
        };
        let response = ConsumerHeartbeatResponse {
            member_id: Some(r.member_id.clone()),
            member_epoch: r.member_epoch,
            ..Default::default()
        };
        Ok((partition, records, response))
    }

    /// ConsumerGroupDescribe for one group (answered at once).
    pub fn consumer_describe(&self, group_id: &str) -> DescribedConsumerGroup {
        let mut d = DescribedConsumerGroup {
            group_id: group_id.to_string(),
            ..Default::default()
        };
        if let Err(e) = self.serving(group_id) {
            d.error = e;
            return d;
        }
        let Some(g) = self.consumer_groups.get(group_id) else {
            d.error = code::GROUP_ID_NOT_FOUND;
            return d;
        };
        d.state = g.state_name().to_string();
        d.group_epoch = g.epoch;
        d.assignment_epoch = g.assignment_epoch;
        d.assignor_name = g.assignor();
        d.members = g
            .members
            .values()
            .map(|m| DescribedConsumerMember {
                member_id: m.member_id.clone(),
                instance_id: m.meta.instance_id.clone(),
                rack_id: m.meta.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.meta.client_id.clone(),
                client_host: m.meta.client_host.clone(),
                subscribed_topic_names: m.meta.subscribed_topic_names.clone(),
                subscribed_topic_regex: m.meta.subscribed_topic_regex.clone(),
                assignment: m.assigned.clone(),
                target_assignment: g.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        d
    }

    /// A topic id's name, for answers that carry both.
    pub fn topic_name(&self, id: &Uuid) -> Option<String> {
        self.topics
            .iter()
            .find(|(_, (tid, _))| tid == id)
            .map(|(n, _)| n.clone())
    }

    /// Members whose session or revocation time ran out are fenced.
    pub(super) fn consumer_tick(&mut self, now_ms: i64, served: &[i32], out: &mut Vec<Effect>) {
        let topics = self.topics.clone();
        let mut batches: Vec<(i32, Vec<Rec>)> = Vec::new();
        for g in self.consumer_groups.values_mut() {
            if !served.contains(&g.partition) {
                continue;
            }
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| deadline(m).is_some_and(|t| t <= now_ms))
                .map(|m| m.member_id.clone())
                .collect();
            let mut records = Vec::new();
            for id in expired {
                tracing::info!(group = %g.group_id, member = %id, "consumer group member fenced (timeout)");
                records.extend(remove_member(g, &id, &topics));
            }
            if !records.is_empty() {
                batches.push((g.partition, records));
            }
        }
        for (partition, records) in batches {
            self.appends.append(partition, records, Then::Nothing, out);
        }
    }

    pub(super) fn consumer_next_deadline(&self, served: impl Fn(i32) -> bool) -> Option<i64> {
        self.consumer_groups
            .values()
            .filter(|g| served(g.partition))
            .flat_map(|g| g.members.values().filter_map(deadline))
            .min()
    }

    /// One consumer group record read while loading.
    pub(super) fn replay_consumer(
        &mut self,
        partition: i32,
        key: ConsumerKey,
        value: Option<&[u8]>,
    ) -> Result<(), DecodeError> {
        let g = match (self.consumer_groups.get_mut(&key.group), value) {
            (Some(g), _) => g,
            (None, None) => return Ok(()),
            (None, Some(_)) => self
                .consumer_groups
                .entry(key.group.clone())
                .or_insert_with(|| ConsumerGroup::new(&key.group, partition)),
        };
        let member = key.member.clone().unwrap_or_default();
        match (key.kind, value) {
            (rec::GROUP_METADATA, Some(v)) => g.epoch = rec::decode_epoch_value(v)?,
            (rec::GROUP_METADATA, None) => {
                self.consumer_groups.remove(&key.group);
            }
            (rec::TARGET_METADATA, Some(v)) => g.assignment_epoch = rec::decode_epoch_value(v)?,
            (rec::MEMBER_METADATA, Some(v)) => {
                let meta = rec::decode_member_value(v)?;
                let m = g
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::new(&member));
                m.meta = meta;
            }
            (rec::MEMBER_METADATA, None) => {
                g.members.remove(&member);
            }
            (rec::TARGET_MEMBER, Some(v)) => {
                g.target.insert(member, rec::decode_target_member_value(v)?);
            }
            (rec::TARGET_MEMBER, None) => {
                g.target.remove(&member);
            }
            (rec::CURRENT_ASSIGNMENT, Some(v)) => {
                let a = rec::decode_current_assignment_value(v)?;
                g.members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::new(&member))
                    .restore_current(a);
            }
            _ => {}
        }
        Ok(())
    }

    /// A partition's consumer groups are loaded: rebuild what is not stored.
    pub(super) fn consumer_loaded(&mut self, partition: i32, now_ms: i64) {
        let session = self.config().consumer_session_timeout_ms as i64;
        let topics = self.topics.clone();
        for g in self
            .consumer_groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            g.static_members = g
                .members
                .values()
                .filter_map(|m| Some((m.meta.instance_id.clone()?, m.member_id.clone())))
                .collect();
            for m in g.members.values_mut() {
                m.session_deadline = Some(now_ms + session);
            }
            g.subscribed_topics = g.resolve(&topics);
        }
    }
}

fn deadline(m: &ConsumerMember) -> Option<i64> {
    match (m.session_deadline, m.revocation_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Removes a member for good and rebalances the rest; returns the records.
fn remove_member(
    g: &mut ConsumerGroup,
    member_id: &str,
    topics: &BTreeMap<String, (Uuid, i32)>,
) -> Vec<Rec> {
    let mut records = g.member_tombstones(member_id);
    if let Some(m) = g.members.remove(member_id) {
        if let Some(instance) = m.meta.instance_id {
            if g.static_members.get(&instance).map(String::as_str) == Some(member_id) {
                g.static_members.remove(&instance);
            }
        }
    }
    g.target.remove(member_id);
    records.extend(g.rebalance(topics));
    records
}
