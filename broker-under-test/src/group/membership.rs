//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup
//! and the timers that drive rebalances, following Kafka's ClassicGroup
//! handling in GroupMetadataManager step by step (names match it where
//! they can, to make the comparison easy).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::coordinator::{Appends, Then};
use super::group::{
    code, join_error, reply, sync_error, ClassicGroup, GroupState, JoinTimer, Member,
};
use super::records;
use super::*;

/// How long a new member's JoinGroup may wait before it is dropped (Kafka's
/// `group.classic.new.member.join.timeout.ms`, not configurable there either).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// What the group state machine needs besides the group.
pub(super) struct Cx<'a> {
    pub cfg: &'a GroupConfig,
    pub now: i64,
    pub out: &'a mut Vec<Effect>,
    pub appends: &'a mut Appends,
}

impl Cx<'_> {
    fn reply(&mut self, req: ReqId, r: Reply) {
        reply(self.out, req, r);
    }

    /// Writes the group's GroupMetadata record.
    fn store_group(
        &mut self,
        g: &ClassicGroup,
        assignment: Option<&BTreeMap<String, Bytes>>,
        then: Then,
    ) {
        let value = records::group_value(&g.to_record(assignment));
        let batch = vec![(records::group_key(&g.group_id), Some(value))];
        self.appends.append(g.partition, batch, then, self.out);
    }
}

/// A static member's replacement awaiting its record.
#[derive(Debug, Clone)]
pub(super) struct StaticReplace {
    pub group: String,
    pub instance_id: String,
    pub old_id: String,
    pub new_id: String,
    pub old_protocols: Vec<(String, Bytes)>,
    pub old_rebalance_timeout_ms: i32,
    pub old_session_timeout_ms: i32,
    pub leader_before: Option<String>,
}

pub(super) fn join(
    g: &mut ClassicGroup,
    cx: &mut Cx,
    req: ReqId,
    r: JoinRequest,
    new_id: Option<String>,
) {
    if !accept_joining_member(g, &r.member_id, cx.cfg.max_size) {
        // Over the limit: an existing member that had not rejoined is dropped.
        g.remove(&r.member_id);
        cx.reply(
            req,
            Reply::Join(join_error(&r.member_id, code::GROUP_MAX_SIZE_REACHED)),
        );
    } else if let Some(new_id) = new_id {
        join_new_member(g, cx, req, r, new_id);
    } else {
        join_existing_member(g, cx, req, r);
    }
    // The initial rebalance completes only by its delay.
    if g.is(GroupState::PreparingRebalance)
        && g.has_all_members_joined()
        && g.previous_state != GroupState::Empty
    {
        complete_join(g, cx);
    }
}

fn accept_joining_member(g: &ClassicGroup, member_id: &str, max_size: usize) -> bool {
    match g.state {
        GroupState::Empty | GroupState::Dead => true,
        // Counting those who rejoined lets the last rejoiners be the ones refused.
        GroupState::PreparingRebalance => {
            g.members
                .get(member_id)
                .is_some_and(|m| m.join_waiter.is_some())
                || g.num_awaiting_join() < max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            g.members.contains_key(member_id) || g.members.len() < max_size
        }
    }
}

fn join_new_member(g: &mut ClassicGroup, cx: &mut Cx, req: ReqId, r: JoinRequest, new_id: String) {
    if g.is(GroupState::Dead) {
        // Being deleted: the member finds the coordinator again and rejoins.
        cx.reply(
            req,
            Reply::Join(join_error(&r.member_id, code::COORDINATOR_NOT_AVAILABLE)),
        );
    } else if !g.supports_protocols(&r.protocol_type, &r.protocols) {
        cx.reply(
            req,
            Reply::Join(join_error(&r.member_id, code::INCONSISTENT_GROUP_PROTOCOL)),
        );
    } else if let Some(instance) = r.group_instance_id.clone() {
        match g.static_members.get(&instance).cloned() {
            Some(old_id) => update_static_member(g, cx, req, r, instance, old_id, new_id),
            None => add_member_then_rebalance(g, cx, req, r, new_id),
        }
    } else if r.require_known_member_id {
        // KIP-394: hand out an id; the member joins again with it.
        let deadline = cx.now + r.session_timeout_ms as i64;
        g.pending_members.insert(new_id.clone(), deadline);
        let resp = join_error(&new_id, code::MEMBER_ID_REQUIRED);
        cx.reply(req, Reply::Join(resp));
    } else {
        add_member_then_rebalance(g, cx, req, r, new_id);
    }
}

fn join_existing_member(g: &mut ClassicGroup, cx: &mut Cx, req: ReqId, r: JoinRequest) {
    let id = r.member_id.clone();
    if g.is(GroupState::Dead) {
        return cx.reply(
            req,
            Reply::Join(join_error(&id, code::COORDINATOR_NOT_AVAILABLE)),
        );
    }
    if !g.supports_protocols(&r.protocol_type, &r.protocols) {
        return cx.reply(
            req,
            Reply::Join(join_error(&id, code::INCONSISTENT_GROUP_PROTOCOL)),
        );
    }
    if g.pending_members.contains_key(&id) {
        // Pending members are never static (static members skip KIP-394).
        if r.group_instance_id.is_some() {
            return cx.reply(req, Reply::Join(join_error(&id, code::UNKNOWN_MEMBER_ID)));
        }
        return add_member_then_rebalance(g, cx, req, r, id);
    }
    if let Err(e) = g.validate_member(&id, r.group_instance_id.as_deref()) {
        return cx.reply(req, Reply::Join(join_error(&id, e)));
    }
    let member = &g.members[&id];
    match g.state {
        GroupState::PreparingRebalance => update_member_then_rebalance(g, cx, req, r),
        GroupState::CompletingRebalance if member.matches(&r.protocols) => {
            // It missed its JoinGroup answer: give it the same again.
            let resp = g.join_response(&id, g.is_leader(&id));
            cx.reply(req, Reply::Join(resp));
        }
        GroupState::Stable if !g.is_leader(&id) && member.matches(&r.protocols) => {
            // A follower with nothing new: it may simply sync again.
            let resp = g.join_response(&id, false);
            cx.reply(req, Reply::Join(resp));
        }
        // Changed metadata, or the leader asking for a rebalance.
        GroupState::CompletingRebalance | GroupState::Stable => {
            update_member_then_rebalance(g, cx, req, r)
        }
        GroupState::Empty | GroupState::Dead => {
            cx.reply(req, Reply::Join(join_error(&id, code::UNKNOWN_MEMBER_ID)))
        }
    }
}

fn new_member(r: &JoinRequest, member_id: String, req: ReqId, now: i64) -> Member {
    Member {
        member_id,
        group_instance_id: r.group_instance_id.clone(),
        client_id: r.client_id.clone(),
        client_host: r.client_host.clone(),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        session_timeout_ms: r.session_timeout_ms,
        protocol_type: r.protocol_type.clone(),
        protocols: r.protocols.clone(),
        assignment: Bytes::new(),
        assignment_generation: -1,
        join_waiter: Some(req),
        sync_waiter: None,
        is_new: true,
        // A new member's JoinGroup may be a retry left behind: it expires.
        heartbeat_deadline: Some(now + NEW_MEMBER_JOIN_TIMEOUT_MS),
    }
}

fn add_member_then_rebalance(
    g: &mut ClassicGroup,
    cx: &mut Cx,
    req: ReqId,
    r: JoinRequest,
    member_id: String,
) {
    if g.is(GroupState::PreparingRebalance) && g.previous_state == GroupState::Empty {
        g.new_member_added = true;
    }
    g.add(new_member(&r, member_id, req, cx.now));
    maybe_prepare_rebalance_or_complete_join(g, cx);
}

/// Parks the member's JoinGroup (answering one it replaces) with its new
/// protocols and timeouts.
fn update_member(g: &mut ClassicGroup, cx: &mut Cx, req: Option<ReqId>, r: &JoinRequest) {
    let m = g.members.get_mut(&r.member_id).expect("validated member");
    m.protocols = r.protocols.clone();
    m.rebalance_timeout_ms = r.rebalance_timeout_ms;
    m.session_timeout_ms = r.session_timeout_ms;
    if let Some(old) = std::mem::replace(&mut m.join_waiter, req) {
        // Kafka drops a superseded JoinGroup; the node must still answer it.
        let resp = join_error(&r.member_id, code::REBALANCE_IN_PROGRESS);
        cx.reply(old, Reply::Join(resp));
    }
}

fn update_member_then_rebalance(g: &mut ClassicGroup, cx: &mut Cx, req: ReqId, r: JoinRequest) {
    update_member(g, cx, Some(req), &r);
    maybe_prepare_rebalance_or_complete_join(g, cx);
}

/// KIP-345: a known instance rejoins under a new member id.
fn update_static_member(
    g: &mut ClassicGroup,
    cx: &mut Cx,
    req: ReqId,
    r: JoinRequest,
    instance_id: String,
    old_id: String,
    new_id: String,
) {
    let leader_before = g.leader_id.clone();
    g.replace_static_member(&instance_id, &old_id, &new_id, cx.out);
    let m = g.members.get_mut(&new_id).expect("just replaced");
    m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
    let saved = StaticReplace {
        group: g.group_id.clone(),
        instance_id,
        old_id,
        new_id: new_id.clone(),
        old_protocols: m.protocols.clone(),
        old_rebalance_timeout_ms: m.rebalance_timeout_ms,
        old_session_timeout_ms: m.session_timeout_ms,
        leader_before,
    };
    let mut r = r;
    r.member_id = new_id;
    update_member(g, cx, Some(req), &r);
    match g.state {
        GroupState::Stable => {
            if g.select_protocol() == g.protocol_name {
                // Same protocol: persist the new id, no rebalance.
                cx.store_group(g, None, Then::StaticReplace(saved));
            } else {
                maybe_prepare_rebalance_or_complete_join(g, cx);
            }
        }
        // The leader may already have assigned to the old id: rebalance.
        GroupState::CompletingRebalance => prepare_rebalance(g, cx),
        _ => maybe_complete_join_phase(g, cx),
    }
}

pub(super) fn static_replace_done(
    g: &mut ClassicGroup,
    cx: &mut Cx,
    s: StaticReplace,
    result: Result<(), i16>,
) {
    // If a rebalance started meanwhile, the member's JoinGroup is answered
    // by it, with the next generation.
    let still_there =
        g.is(GroupState::Stable) && g.static_members.get(&s.instance_id) == Some(&s.new_id);
    let Some(m) = g.members.get_mut(&s.new_id).filter(|_| still_there) else {
        return;
    };
    let Some(req) = m.join_waiter.take() else {
        return;
    };
    let mut resp = JoinResponse {
        error: code::NONE,
        generation_id: g.generation_id,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol_name.clone(),
        // The previous leader: the new member syncs as a follower and gets
        // its assignment from the Stable group.
        leader: s.leader_before.clone().unwrap_or_default(),
        skip_assignment: false,
        member_id: s.new_id.clone(),
        members: Vec::new(),
    };
    if let Err(e) = result {
        // Undo: the old id is the instance's again.
        m.protocols = s.old_protocols;
        m.rebalance_timeout_ms = s.old_rebalance_timeout_ms;
        m.session_timeout_ms = s.old_session_timeout_ms;
        g.replace_static_member(&s.instance_id, &s.new_id, &s.old_id, cx.out);
        let old = g.members.get_mut(&s.old_id).expect("just restored");
        old.heartbeat_deadline = Some(cx.now + old.session_timeout_ms as i64);
        resp.error = e;
        resp.member_id = String::new();
    }
    cx.reply(req, Reply::Join(resp));
}

fn maybe_prepare_rebalance_or_complete_join(g: &mut ClassicGroup, cx: &mut Cx) {
    if g.can_rebalance() {
        prepare_rebalance(g, cx);
    } else {
        maybe_complete_join_phase(g, cx);
    }
}

fn maybe_complete_join_phase(g: &mut ClassicGroup, cx: &mut Cx) {
    if g.is(GroupState::PreparingRebalance)
        && g.has_all_members_joined()
        && g.previous_state != GroupState::Empty
    {
        complete_join(g, cx);
    }
}

pub(super) fn prepare_rebalance(g: &mut ClassicGroup, cx: &mut Cx) {
    if g.is(GroupState::CompletingRebalance) {
        reset_and_propagate_assignment(g, cx, code::REBALANCE_IN_PROGRESS);
    }
    g.sync_timer = None;
    let initial = g.is(GroupState::Empty);
    if initial {
        // A new group waits a little for more members before the first generation.
        let delay = cx.cfg.initial_rebalance_delay_ms as i64;
        let remaining = (g.rebalance_timeout_ms() - delay).max(0);
        let timer = JoinTimer::InitialDelay {
            delay_ms: delay,
            remaining_ms: remaining,
        };
        g.join_timer = Some((cx.now + delay, timer));
    }
    g.transition_to(GroupState::PreparingRebalance, cx.now);
    if !initial {
        if g.has_all_members_joined() {
            complete_join(g, cx);
        } else {
            let deadline = cx.now + g.rebalance_timeout_ms();
            g.join_timer = Some((deadline, JoinTimer::Rebalance));
        }
    }
}

/// The join phase ends: drop dynamic members that did not rejoin (static
/// ones leave by session timeout only), start the next generation and
/// answer every JoinGroup.
fn complete_join(g: &mut ClassicGroup, cx: &mut Cx) {
    g.join_timer = None;
    let gone: Vec<String> = g
        .members
        .values()
        .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in gone {
        take_out(g, cx, &id);
    }
    if g.is(GroupState::Dead) {
        return;
    }
    if !maybe_elect_joined_leader(g) && !g.members.is_empty() {
        // Nobody rejoined (only static members left): wait for their sessions.
        let deadline = cx.now + g.rebalance_timeout_ms();
        g.join_timer = Some((deadline, JoinTimer::Rebalance));
        return;
    }
    g.init_next_generation(cx.now);
    if g.is(GroupState::Empty) {
        cx.store_group(g, None, Then::Nothing);
        return;
    }
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let resp = g.join_response(&id, g.is_leader(&id));
        g.complete_join(&id, resp, cx.out);
        let m = g.members.get_mut(&id).expect("listed");
        m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
        m.is_new = false;
        g.pending_sync.insert(id);
    }
    g.sync_timer = Some((cx.now + g.rebalance_timeout_ms(), g.generation_id));
}

/// Keeps the leader if it rejoined, else picks a member that did.
fn maybe_elect_joined_leader(g: &mut ClassicGroup) -> bool {
    let Some(leader) = &g.leader_id else {
        return false;
    };
    if g.members
        .get(leader)
        .is_some_and(|m| m.join_waiter.is_some())
    {
        return true;
    }
    match g.members.values().find(|m| m.join_waiter.is_some()) {
        Some(m) => {
            g.leader_id = Some(m.member_id.clone());
            true
        }
        None => false,
    }
}

/// Answers every waiting SyncGroup with `error` and empty assignments.
fn reset_and_propagate_assignment(g: &mut ClassicGroup, cx: &mut Cx, error: i16) {
    for m in g.members.values_mut() {
        m.assignment = Bytes::new();
        m.assignment_generation = -1;
    }
    let answered = g.propagate_assignment(error, cx.out);
    rearm_sessions(g, cx, &answered);
}

/// A member's session runs again once a rebalance answered it.
fn rearm_sessions(g: &mut ClassicGroup, cx: &Cx, ids: &[String]) {
    for id in ids {
        if let Some(m) = g.members.get_mut(id) {
            m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
        }
    }
}

/// Removes a member, answering what it waits on with UNKNOWN_MEMBER_ID
/// (so that a client still alive joins again).
fn take_out(g: &mut ClassicGroup, cx: &mut Cx, member_id: &str) {
    if let Some(m) = g.remove(member_id) {
        if let Some(req) = m.join_waiter {
            cx.reply(req, Reply::Join(join_error("", code::UNKNOWN_MEMBER_ID)));
        }
        if let Some(req) = m.sync_waiter {
            cx.reply(req, Reply::Sync(sync_error(code::UNKNOWN_MEMBER_ID)));
        }
    }
}

/// A member's session expired.
fn remove_member_and_update(g: &mut ClassicGroup, cx: &mut Cx, member_id: &str) {
    take_out(g, cx, member_id);
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(g, cx)
        }
        GroupState::PreparingRebalance if g.has_all_members_joined() => complete_join(g, cx),
        _ => {}
    }
}

pub(super) fn sync(g: &mut ClassicGroup, cx: &mut Cx, req: ReqId, r: SyncRequest) {
    let fail = |cx: &mut Cx, e| cx.reply(req, Reply::Sync(sync_error(e)));
    if g.is(GroupState::Dead) {
        return fail(cx, code::COORDINATOR_NOT_AVAILABLE);
    }
    if let Err(e) = g.validate_member(&r.member_id, r.group_instance_id.as_deref()) {
        return fail(cx, e);
    }
    if r.generation_id != g.generation_id {
        return fail(cx, code::ILLEGAL_GENERATION);
    }
    let inconsistent = |asked: &Option<String>, ours: &Option<String>| matches!((asked, ours), (Some(a), Some(o)) if a != o);
    if inconsistent(&r.protocol_type, &g.protocol_type)
        || inconsistent(&r.protocol_name, &g.protocol_name)
    {
        return fail(cx, code::INCONSISTENT_GROUP_PROTOCOL);
    }
    let id = r.member_id.clone();
    match g.state {
        GroupState::PreparingRebalance => fail(cx, code::REBALANCE_IN_PROGRESS),
        GroupState::CompletingRebalance => {
            let m = g.members.get_mut(&id).expect("validated");
            if let Some(old) = m.sync_waiter.replace(req) {
                // Kafka drops a superseded SyncGroup; the node must still answer it.
                cx.reply(old, Reply::Sync(sync_error(code::REBALANCE_IN_PROGRESS)));
            }
            g.pending_sync.remove(&id);
            if g.is_leader(&id) {
                // Members the leader left out get an empty assignment.
                let mut assignment: BTreeMap<String, Bytes> = r.assignments.into_iter().collect();
                for member_id in g.members.keys() {
                    assignment.entry(member_id.clone()).or_default();
                }
                let then = Then::LeaderSync {
                    group: g.group_id.clone(),
                    generation: g.generation_id,
                    assignment: assignment.clone(),
                };
                cx.store_group(g, Some(&assignment), then);
            }
        }
        GroupState::Stable => {
            g.pending_sync.remove(&id);
            let m = g.members.get_mut(&id).expect("validated");
            m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
            let resp = SyncResponse {
                error: code::NONE,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                assignment: m.assignment.clone(),
            };
            cx.reply(req, Reply::Sync(resp));
        }
        GroupState::Empty | GroupState::Dead => fail(cx, code::UNKNOWN_MEMBER_ID),
    }
}

/// The leader's assignment is replicated (or not): hand it out and become
/// Stable, or tell everyone and rebalance. Ignored if the group moved on.
pub(super) fn leader_sync_done(
    g: &mut ClassicGroup,
    cx: &mut Cx,
    generation: i32,
    result: Result<BTreeMap<String, Bytes>, i16>,
) {
    if !g.is(GroupState::CompletingRebalance) || g.generation_id != generation {
        return;
    }
    match result {
        Ok(assignment) => {
            for m in g.members.values_mut() {
                m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
                m.assignment_generation = generation;
            }
            let answered = g.propagate_assignment(code::NONE, cx.out);
            rearm_sessions(g, cx, &answered);
            g.transition_to(GroupState::Stable, cx.now);
        }
        Err(error) => {
            reset_and_propagate_assignment(g, cx, error);
            maybe_prepare_rebalance_or_complete_join(g, cx);
        }
    }
}

pub(super) fn heartbeat(g: &mut ClassicGroup, cx: &mut Cx, r: &HeartbeatRequest) -> i16 {
    if g.is(GroupState::Dead) {
        return code::COORDINATOR_NOT_AVAILABLE;
    }
    if let Err(e) = g.validate_member(&r.member_id, r.group_instance_id.as_deref()) {
        return e;
    }
    if r.generation_id != g.generation_id {
        return code::ILLEGAL_GENERATION;
    }
    let m = g.members.get_mut(&r.member_id).expect("validated");
    m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
    match g.state {
        GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
        // Members heartbeat while they wait for their assignment too.
        GroupState::CompletingRebalance | GroupState::Stable => code::NONE,
        GroupState::Empty | GroupState::Dead => code::UNKNOWN_MEMBER_ID,
    }
}

pub(super) fn leave(g: &mut ClassicGroup, cx: &mut Cx, r: LeaveRequest) -> LeaveResponse {
    if g.is(GroupState::Dead) {
        return LeaveResponse {
            error: code::COORDINATOR_NOT_AVAILABLE,
            members: Vec::new(),
        };
    }
    let mut members = Vec::new();
    let mut removed_any = false;
    for (member_id, instance, _reason) in r.members {
        let error = if member_id.is_empty() {
            // Administrative removal by instance id.
            match instance
                .as_ref()
                .and_then(|i| g.static_members.get(i))
                .cloned()
            {
                Some(id) => {
                    take_out(g, cx, &id);
                    code::NONE
                }
                None => code::UNKNOWN_MEMBER_ID,
            }
        } else if g.pending_members.remove(&member_id).is_some() {
            code::NONE
        } else {
            match g.validate_member(&member_id, instance.as_deref()) {
                Ok(()) => {
                    take_out(g, cx, &member_id);
                    code::NONE
                }
                Err(e) => e,
            }
        };
        removed_any |= error == code::NONE;
        members.push((member_id, instance, error));
    }
    if removed_any {
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                maybe_prepare_rebalance_or_complete_join(g, cx)
            }
            GroupState::PreparingRebalance => maybe_complete_join_phase(g, cx),
            _ => {}
        }
    }
    LeaveResponse {
        error: code::NONE,
        members,
    }
}

/// A group just loaded: sessions start now; a group over the (maybe
/// lowered) size limit rebalances so that some members are refused.
pub(super) fn on_loaded(g: &mut ClassicGroup, cx: &mut Cx) {
    for m in g.members.values_mut() {
        m.heartbeat_deadline = Some(cx.now + m.session_timeout_ms as i64);
    }
    if g.is(GroupState::Stable) && g.members.len() > cx.cfg.max_size {
        prepare_rebalance(g, cx);
    }
}

/// The group's earliest timer.
pub(super) fn next_deadline(g: &ClassicGroup) -> Option<i64> {
    let members = g.members.values().filter_map(|m| m.heartbeat_deadline);
    let pending = g.pending_members.values().copied();
    let join = g.join_timer.map(|(t, _)| t);
    let sync = g.sync_timer.map(|(t, _)| t);
    members.chain(pending).chain(join).chain(sync).min()
}

/// Fires the group's due timers.
pub(super) fn tick(g: &mut ClassicGroup, cx: &mut Cx) {
    let now = cx.now;
    let expired_pending: Vec<String> = g
        .pending_members
        .iter()
        .filter(|(_, t)| **t <= now)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired_pending {
        g.pending_members.remove(&id);
        if g.is(GroupState::PreparingRebalance) && g.has_all_members_joined() {
            complete_join(g, cx);
        }
    }
    let expired: Vec<String> = g
        .members
        .values()
        .filter(|m| m.heartbeat_deadline.is_some_and(|t| t <= now))
        .map(|m| m.member_id.clone())
        .collect();
    for id in expired {
        let Some(m) = g.members.get_mut(&id) else {
            continue;
        };
        m.heartbeat_deadline = None;
        if !m.has_satisfied_heartbeat() {
            remove_member_and_update(g, cx, &id);
        }
    }
    if let Some((t, timer)) = g.join_timer {
        if t <= now && g.is(GroupState::PreparingRebalance) {
            on_join_timer(g, cx, timer);
        } else if t <= now {
            g.join_timer = None;
        }
    }
    if let Some((t, generation)) = g.sync_timer {
        if t <= now {
            g.sync_timer = None;
            expire_pending_sync(g, cx, generation);
        }
    }
}

fn on_join_timer(g: &mut ClassicGroup, cx: &mut Cx, timer: JoinTimer) {
    match timer {
        JoinTimer::InitialDelay {
            delay_ms,
            remaining_ms,
        } if g.new_member_added && remaining_ms != 0 => {
            // Someone joined during the delay: wait another delay, within the rebalance timeout.
            g.new_member_added = false;
            let next_delay = (cx.cfg.initial_rebalance_delay_ms as i64).min(remaining_ms);
            let next_remaining = (remaining_ms - delay_ms).max(0);
            let timer = JoinTimer::InitialDelay {
                delay_ms: next_delay,
                remaining_ms: next_remaining,
            };
            g.join_timer = Some((cx.now + next_delay, timer));
        }
        _ => complete_join(g, cx),
    }
}

/// Members that never sent SyncGroup in time are removed and the group rebalances.
fn expire_pending_sync(g: &mut ClassicGroup, cx: &mut Cx, generation: i32) {
    let in_sync_phase = matches!(
        g.state,
        GroupState::CompletingRebalance | GroupState::Stable
    );
    if generation != g.generation_id || !in_sync_phase || g.pending_sync.is_empty() {
        return;
    }
    let late: Vec<String> = g.pending_sync.iter().cloned().collect();
    for id in late {
        take_out(g, cx, &id);
    }
    prepare_rebalance(g, cx);
}
