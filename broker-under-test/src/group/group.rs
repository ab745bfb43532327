//! One classic group: members, generation and Kafka's state machine.
//!
//! This file holds the group's data and the primitive steps of Kafka's
//! ClassicGroup (add/remove/replace members, protocol selection, the next
//! generation). The request handling that strings them together, with its
//! timers and appends, lives in `membership.rs`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::records::{GroupValue, MemberValue, OffsetValue};
use super::{Effect, JoinMember, JoinResponse, Reply, ReqId, SyncResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name, as ListGroups and DescribeGroups show it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The generation `assignment` was handed out in (-1: none).
    pub assignment_generation: i32,
    /// The JoinGroup waiting for the end of the join phase.
    pub join_waiter: Option<ReqId>,
    /// The SyncGroup waiting for the leader's assignment.
    pub sync_waiter: Option<ReqId>,
    /// Joined in the current rebalance: its session does not run yet, a
    /// shorter join timeout does (it may be a retry left behind).
    pub is_new: bool,
    /// When the session timer fires; `None` when no timer is armed (as in
    /// Kafka, a timer that fires on a member waiting in a rebalance is
    /// dropped and re-armed when the rebalance hands it its result).
    pub heartbeat_deadline: Option<i64>,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Whether an expired session timer spares the member.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.join_waiter.is_some() || self.sync_waiter.is_some())
    }
}

/// What the group's join timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTimer {
    /// The first rebalance of an empty group waits for more members; each
    /// newcomer extends it by another delay, up to the rebalance timeout.
    InitialDelay { delay_ms: i64, remaining_ms: i64 },
    /// The rebalance timeout: complete the join with whoever rejoined.
    Rebalance,
}

#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub group_id: String,
    pub partition: i32,
    pub state: GroupState,
    pub previous_state: GroupState,
    /// When the group entered its state (what offset expiry of an Empty group counts from).
    pub state_timestamp_ms: Option<i64>,
    pub generation_id: i32,
    /// `None` for a group that only stores offsets (no member ever joined).
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// In join order (the first joiner leads).
    pub members: IndexMap<String, Member>,
    /// group instance id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED -> expiry deadline.
    pub pending_members: BTreeMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// A member joined during the initial delay (the delay is extended).
    pub new_member_added: bool,
    pub join_timer: Option<(i64, JoinTimer)>,
    /// (deadline, generation): members still pending sync are removed then.
    pub sync_timer: Option<(i64, i32)>,
    /// Topics the consumer-protocol members subscribe to; `None`: unknown.
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// Committed (replicated) offsets.
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl ClassicGroup {
    pub fn new(group_id: &str, partition: i32, now_ms: Option<i64>) -> ClassicGroup {
        ClassicGroup {
            group_id: group_id.to_string(),
            partition,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn transition_to(&mut self, state: GroupState, now_ms: i64) {
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    /// Kafka: PreparingRebalance may follow Stable, CompletingRebalance and Empty.
    pub fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.join_waiter.is_some())
            .count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_members.is_empty()
    }

    /// The largest rebalance timeout of the members.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `validateMember`: the error for an unknown or fenced member.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(code::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => Err(code::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            },
            None if !self.members.contains_key(member_id) => Err(code::UNKNOWN_MEMBER_ID),
            None => Ok(()),
        }
    }

    /// Whether a member with these protocols could join: in an empty group
    /// any non-empty set will do; otherwise the type must match and one of
    /// the protocols must be supported by every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The protocol supported by every member with the most first-choice
    /// votes; ties go to the smallest name (Kafka leaves them to hash order).
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = m.vote(&candidates) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(name, _)| name.to_string())
    }

    pub fn add(&mut self, member: Member) {
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member (or a pending one); a removed leader is succeeded
    /// by the first remaining member.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.shift_remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Static membership: `new_id` takes `old_id`'s place, keeping its
    /// protocols and assignment; whoever waits under the old id is fenced.
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
        out: &mut Vec<Effect>,
    ) {
        let Some(mut old) = self.members.shift_remove(old_id) else {
            return;
        };
        let fenced = code::FENCED_INSTANCE_ID;
        if let Some(req) = old.join_waiter.take() {
            let mut resp = join_error(old_id, fenced);
            resp.member_id = old_id.to_string();
            reply(out, req, Reply::Join(resp));
        }
        if let Some(req) = old.sync_waiter.take() {
            reply(out, req, Reply::Sync(sync_error(fenced)));
        }
        self.pending_sync.remove(old_id);
        old.member_id = new_id.to_string();
        old.is_new = false;
        self.members.insert(new_id.to_string(), old);
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_id.to_string());
    }

    /// The next generation: select a protocol, or become Empty.
    pub fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition_to(GroupState::CompletingRebalance, now_ms);
        }
        self.subscribed_topics = self.compute_subscribed_topics();
        self.pending_sync.clear();
        self.sync_timer = None;
    }

    /// The members as the leader's JoinGroup response lists them.
    pub fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    /// A successful JoinGroup answer for `member_id` in the current generation.
    pub fn join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members {
                self.join_members()
            } else {
                Vec::new()
            },
        }
    }

    /// Answers the member's waiting JoinGroup, if any.
    pub fn complete_join(&mut self, member_id: &str, resp: JoinResponse, out: &mut Vec<Effect>) {
        if let Some(req) = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.join_waiter.take())
        {
            reply(out, req, Reply::Join(resp));
        }
    }

    /// Answers every waiting SyncGroup with the member's assignment (or
    /// with `error`); returns the members answered.
    pub fn propagate_assignment(&mut self, error: i16, out: &mut Vec<Effect>) -> Vec<String> {
        let (ptype, pname) = if error == 0 {
            (self.protocol_type.clone(), self.protocol_name.clone())
        } else {
            (None, None)
        };
        let mut answered = Vec::new();
        for m in self.members.values_mut() {
            if let Some(req) = m.sync_waiter.take() {
                let resp = SyncResponse {
                    error,
                    protocol_type: ptype.clone(),
                    protocol_name: pname.clone(),
                    assignment: m.assignment.clone(),
                };
                reply(out, req, Reply::Sync(resp));
                answered.push(m.member_id.clone());
            }
        }
        answered
    }

    /// Topics subscribed to by the members (consumer protocol only, parsed
    /// as its version-0 prefix like Kafka); `None` when not knowable.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_some_and(|t| t.contains(topic))
    }

    /// The GroupMetadata record for the current generation, with
    /// `assignment` (member id -> bytes) in place of the members' own.
    pub fn to_record(&self, assignment: Option<&BTreeMap<String, Bytes>>) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: match assignment {
                        Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    /// Rebuilds the group from its last GroupMetadata record: Stable with
    /// its members, or Empty. Offsets are kept (they have their own records).
    pub fn restore(&mut self, value: GroupValue) {
        let protocol = value.protocol.clone().unwrap_or_default();
        self.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        self.generation_id = value.generation;
        self.protocol_name = value.protocol;
        self.leader_id = value.leader;
        self.state_timestamp_ms = Some(value.current_state_timestamp_ms).filter(|t| *t >= 0);
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        self.join_timer = None;
        self.sync_timer = None;
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                assignment_generation: value.generation,
                join_waiter: None,
                sync_waiter: None,
                is_new: false,
                heartbeat_deadline: None,
            };
            self.members.insert(m.member_id, member);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.previous_state = self.state;
        self.subscribed_topics = self.compute_subscribed_topics();
    }
}

/// The topics of a ConsumerProtocolSubscription (int16 version, then the
/// version-0 layout that prefixes every version). `None` when malformed.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return None;
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
    Some(sub.topics.into_iter().map(|t| t.to_string()).collect())
}

pub fn reply(out: &mut Vec<Effect>, req: ReqId, reply: Reply) {
    out.push(Effect::Reply { req, reply });
}

/// A failed JoinGroup answer (Kafka's defaults: generation -1, no protocol).
pub fn join_error(member_id: &str, error: i16) -> JoinResponse {
    JoinResponse {
        error,
        generation_id: -1,
        member_id: member_id.to_string(),
        ..JoinResponse::default()
    }
}

pub fn sync_error(error: i16) -> SyncResponse {
    SyncResponse {
        error,
        ..SyncResponse::default()
    }
}

/// Kafka's error codes used here.
pub mod code {
    use kafka_protocol::error::ResponseError as E;

    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
    pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
    pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
    pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
    pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
    pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
    pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
    pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
    pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
    pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
    pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
    pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();
    pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = E::InvalidCommitOffsetSize.code();
    pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();
    pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
    pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = E::NotEnoughReplicasAfterAppend.code();
    pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
    pub const MESSAGE_TOO_LARGE: i16 = E::MessageTooLarge.code();
    pub const RECORD_LIST_TOO_LARGE: i16 = E::RecordListTooLarge.code();
    pub const INVALID_FETCH_SIZE: i16 = E::InvalidFetchSize.code();
    pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
    pub const FENCED_MEMBER_EPOCH: i16 = E::FencedMemberEpoch.code();
    pub const UNRELEASED_INSTANCE_ID: i16 = E::UnreleasedInstanceId.code();
    pub const UNSUPPORTED_ASSIGNOR: i16 = E::UnsupportedAssignor.code();
    pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();
    pub const INVALID_REGULAR_EXPRESSION: i16 = E::InvalidRegularExpression.code();

    /// A failed GroupMetadata append, as the members are told (Kafka's
    /// `storeGroup` mapping; a timeout makes them rejoin).
    pub fn for_group_append(error: i16) -> i16 {
        match error {
            UNKNOWN_TOPIC_OR_PARTITION | NOT_ENOUGH_REPLICAS | NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
                COORDINATOR_NOT_AVAILABLE
            }
            NOT_LEADER_OR_FOLLOWER | KAFKA_STORAGE_ERROR => NOT_COORDINATOR,
            REQUEST_TIMED_OUT => REBALANCE_IN_PROGRESS,
            MESSAGE_TOO_LARGE | RECORD_LIST_TOO_LARGE | INVALID_FETCH_SIZE => UNKNOWN_SERVER_ERROR,
            other => other,
        }
    }

    /// A failed offset append, as the committer is told (Kafka's `storeOffsets`).
    pub fn for_offset_append(error: i16) -> i16 {
        match error {
            UNKNOWN_TOPIC_OR_PARTITION | NOT_ENOUGH_REPLICAS | NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
                COORDINATOR_NOT_AVAILABLE
            }
            NOT_LEADER_OR_FOLLOWER | KAFKA_STORAGE_ERROR => NOT_COORDINATOR,
            MESSAGE_TOO_LARGE | RECORD_LIST_TOO_LARGE | INVALID_FETCH_SIZE => {
                INVALID_COMMIT_OFFSET_SIZE
            }
            other => other,
        }
    }
}
