//! Committed offsets: OffsetCommit (with Kafka's generation fencing),
//! OffsetFetch, OffsetDelete and offset expiry. A commit becomes visible
//! only once its record is replicated (applied in `on_append_done`).

use std::collections::BTreeSet;

use super::consumer::ConsumerGroup;
use super::coordinator::{Coordinator, Then};
use super::group::{code, reply, ClassicGroup, GroupState};
use super::records::{self, OffsetValue};
use super::*;

/// Kafka's ClassicGroup.validateOffsetCommit (non-transactional).
fn validate_commit(g: &ClassicGroup, r: &CommitRequest) -> Result<(), i16> {
    if g.is(GroupState::Dead) {
        return Err(code::COORDINATOR_NOT_AVAILABLE);
    }
    // Outside group management (admin tools, assign()): only an Empty group.
    if r.generation_id < 0 && g.is(GroupState::Empty) {
        return Ok(());
    }
    if r.generation_id >= 0 || !r.member_id.is_empty() || r.group_instance_id.is_some() {
        g.validate_member(&r.member_id, r.group_instance_id.as_deref())?;
        if r.generation_id != g.generation_id {
            return Err(code::ILLEGAL_GENERATION);
        }
    } else if !g.is(GroupState::Empty) {
        return Err(code::UNKNOWN_MEMBER_ID);
    }
    // The member has its new generation but not its assignment yet.
    if g.is(GroupState::CompletingRebalance) {
        return Err(code::REBALANCE_IN_PROGRESS);
    }
    Ok(())
}

/// Kafka's ConsumerGroup.validateOffsetCommit: a commit from outside the
/// group (no member, epoch -1) is allowed; a member's must carry its
/// current epoch (older: STALE_MEMBER_EPOCH, newer: FENCED_MEMBER_EPOCH).
fn validate_consumer_commit(g: &ConsumerGroup, r: &CommitRequest) -> Result<(), i16> {
    if r.generation_id < 0 && r.member_id.is_empty() && r.group_instance_id.is_none() {
        return Ok(());
    }
    let m = g.members.get(&r.member_id).ok_or(code::UNKNOWN_MEMBER_ID)?;
    match r.generation_id {
        e if e > m.epoch => Err(code::FENCED_MEMBER_EPOCH),
        e if e < m.epoch => Err(code::STALE_MEMBER_EPOCH),
        _ => Ok(()),
    }
}

impl Coordinator {
    pub fn commit(
        &mut self,
        now_ms: i64,
        req: ReqId,
        request: CommitRequest,
        out: &mut Vec<Effect>,
    ) {
        let group_error = if request.group_id.is_empty() {
            Err(code::INVALID_GROUP_ID)
        } else {
            self.serving(&request.group_id)
        };
        let group_error = group_error.and_then(|partition| {
            if let Some(g) = self.consumer_groups.get(&request.group_id) {
                validate_consumer_commit(g, &request)?;
                // Its offsets live in an offsets-only entry.
                self.group_or_new(&request.group_id, partition, Some(now_ms));
                return Ok(partition);
            }
            match self.groups.get(&request.group_id) {
                Some(g) => validate_commit(g, &request).map(|()| partition),
                None if request.generation_id < 0 => {
                    // A "simple" group, only storing offsets.
                    self.group_or_new(&request.group_id, partition, Some(now_ms));
                    Ok(partition)
                }
                // Kafka before OffsetCommit v9 answers a missing group this way.
                None => Err(code::ILLEGAL_GENERATION),
            }
        });
        let partition = match group_error {
            Ok(p) => p,
            Err(e) => {
                let response = request
                    .partitions
                    .into_iter()
                    .map(|(p, pre)| (p.topic, p.partition, if pre != 0 { pre } else { e }))
                    .collect();
                return reply(out, req, Reply::Commit(response));
            }
        };
        let mut response = Vec::new();
        let mut batch = Vec::new();
        for (p, pre) in request.partitions {
            let metadata = p.metadata.unwrap_or_default();
            let error = if pre != code::NONE {
                pre
            } else if metadata.len() > self.config().offset_metadata_max_bytes {
                code::OFFSET_METADATA_TOO_LARGE
            } else {
                let value = OffsetValue {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: None,
                };
                let key = records::offset_key(&request.group_id, &p.topic, p.partition);
                batch.push((key, Some(records::offset_value(&value))));
                code::NONE
            };
            response.push((p.topic, p.partition, error));
        }
        if batch.is_empty() {
            return reply(out, req, Reply::Commit(response));
        }
        let then = Then::Commit {
            req,
            group: request.group_id,
            response,
        };
        self.appends.append(partition, batch, then, out);
    }

    /// Answered at once.
    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        let error = if request.group_id.is_empty() {
            Err(code::INVALID_GROUP_ID)
        } else {
            self.serving(&request.group_id)
        };
        if let Err(e) = error {
            let partitions = request.partitions.iter().flatten();
            return OffsetFetchResponse {
                error: e,
                partitions: partitions.map(|(t, p)| (t.clone(), *p, None, e)).collect(),
            };
        }
        let group = self.groups.get(&request.group_id);
        let committed = |tp: &(String, i32)| {
            group
                .and_then(|g| g.offsets.get(tp))
                .map(|v| CommittedOffset {
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    commit_timestamp_ms: v.commit_timestamp_ms,
                })
        };
        let partitions = match &request.partitions {
            Some(list) => list
                .iter()
                .map(|tp| (tp.0.clone(), tp.1, committed(tp), code::NONE))
                .collect(),
            None => group
                .map(|g| g.offsets.keys().collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|tp| (tp.0.clone(), tp.1, committed(tp), code::NONE))
                .collect(),
        };
        OffsetFetchResponse {
            error: code::NONE,
            partitions,
        }
    }

    /// OffsetDelete for one group.
    pub fn delete_offsets(
        &mut self,
        now_ms: i64,
        req: ReqId,
        group_id: String,
        partitions: Vec<(String, i32)>,
        out: &mut Vec<Effect>,
    ) {
        let _ = now_ms;
        let fail = |out: &mut Vec<Effect>, e| reply(out, req, Reply::OffsetDelete(e, Vec::new()));
        if group_id.is_empty() {
            return fail(out, code::INVALID_GROUP_ID);
        }
        let partition = match self.serving(&group_id) {
            Ok(p) => p,
            Err(e) => return fail(out, e),
        };
        let g = match self.groups.get(&group_id) {
            Some(g) if !g.is(GroupState::Dead) => g,
            _ => return fail(out, code::GROUP_ID_NOT_FOUND),
        };
        // Only consumer groups know which topics their members use.
        if !g.is(GroupState::Empty) && !g.uses_consumer_protocol() {
            return fail(out, code::NON_EMPTY_GROUP);
        }
        let mut response = Vec::new();
        let mut batch = Vec::new();
        for (topic, p) in partitions {
            let error = if g.is_subscribed_to(&topic) {
                code::GROUP_SUBSCRIBED_TO_TOPIC
            } else {
                // Also covers a commit still in flight for it.
                batch.push((records::offset_key(&group_id, &topic, p), None));
                code::NONE
            };
            response.push((topic, p, error));
        }
        if batch.is_empty() {
            return reply(out, req, Reply::OffsetDelete(code::NONE, response));
        }
        let then = Then::OffsetDelete { req, response };
        self.appends.append(partition, batch, then, out);
    }

    /// Kafka's offset cleanup for one partition: tombstones for expired
    /// offsets, and for Empty groups left without any.
    pub(super) fn expire_offsets(&mut self, partition: i32, now_ms: i64, out: &mut Vec<Effect>) {
        let retention = self.config().offsets_retention_ms;
        let mut batch = Vec::new();
        let mut deleted = Vec::new();
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.partition == partition && !g.is(GroupState::Dead))
            // A consumer group with members keeps its offsets.
            .filter(|g| {
                self.consumer_groups
                    .get(&g.group_id)
                    .is_none_or(|c| c.members.is_empty())
            })
            .map(|g| g.group_id.clone())
            .collect();
        for id in ids {
            let in_flight: BTreeSet<(String, i32)> =
                self.pending_commits(&id).into_iter().collect();
            let g = &self.groups[&id];
            let expired: Vec<&(String, i32)> = g
                .offsets
                .iter()
                .filter(|(tp, _)| !in_flight.contains(*tp))
                .filter(|(tp, v)| is_expired(g, &tp.0, v, now_ms, retention))
                .map(|(tp, _)| tp)
                .collect();
            for (topic, p) in &expired {
                batch.push((records::offset_key(&id, topic, *p), None));
            }
            let none_left = expired.len() == g.offsets.len() && in_flight.is_empty();
            if none_left && g.is(GroupState::Empty) {
                batch.push((records::group_key(&id), None));
                deleted.push(id.clone());
            }
        }
        for id in &deleted {
            // Dead until the tombstone is replicated.
            self.groups.get_mut(id).expect("listed").state = GroupState::Dead;
        }
        if !batch.is_empty() {
            let then = Then::Expiry { groups: deleted };
            self.appends.append(partition, batch, then, out);
        }
    }
}

/// Kafka's offsetExpirationCondition: an Empty group's offsets expire
/// `retention` after it became Empty (or after their commit when that is
/// unknown); a Stable consumer group's offsets of topics no member
/// subscribes to, after their commit; a group without protocol (offsets
/// only), after their commit. An explicit v1 expire timestamp wins.
fn is_expired(g: &ClassicGroup, topic: &str, v: &OffsetValue, now_ms: i64, retention: i64) -> bool {
    let base = match &g.protocol_type {
        None => v.commit_timestamp_ms,
        Some(_) if g.is(GroupState::Empty) => g.state_timestamp_ms.unwrap_or(v.commit_timestamp_ms),
        Some(_)
            if g.uses_consumer_protocol()
                && g.subscribed_topics.is_some()
                && g.is(GroupState::Stable) =>
        {
            if g.is_subscribed_to(topic) {
                return false;
            }
            v.commit_timestamp_ms
        }
        Some(_) => return false,
    };
    match v.expire_timestamp_ms {
        Some(at) => now_ms >= at,
        None => now_ms - base >= retention,
    }
}
