//! A simulated member of a classic consumer group, speaking the real
//! protocol: FindCoordinator (key type 0), JoinGroup (v7: a member id is
//! required, KIP-394; static membership with `group.instance.id`, KIP-345),
//! the leader's client-side assignment (`range` eager, or
//! `cooperative-sticky` incremental, KIP-429), SyncGroup, Heartbeat every
//! `heartbeat.interval.ms`, OffsetFetch of the committed offsets of what it
//! is given (none: the earliest offset), Fetch from the partitions' leaders,
//! OffsetCommit (auto every interval, or after processing each batch; and
//! on every orderly revoke), LeaveGroup on close.
//!
//! Processing a record is recording it in the history (a `Poll`, completed
//! when processed); `processing_ms` delays it after the fetch. Commits carry
//! the processed positions, except in the known-unsafe `before-process`
//! mode, which commits what it fetched before processing it.
//!
//! The group traffic goes over the member's own sessions (one per broker
//! address, slots from [`GROUP_SLOT_BASE`], connection ids from
//! `conn_base + 1_000_000`); fetches go through the [`Cluster`] like
//! the assign-mode consumer's.
//!
//! Rejoining: REBALANCE_IN_PROGRESS rejoins (eager: commit, revoke all,
//! join; cooperative: keep what it owns); ILLEGAL_GENERATION,
//! UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID lose every partition without
//! committing (the member was fenced) and rejoin; NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE or a lost connection forget the coordinator and
//! find it again (a JoinGroup or SyncGroup in flight is then joined again;
//! a stable member goes on heartbeating at the new coordinator, as Kafka's
//! clients do). No heartbeat answered for a session timeout forgets the
//! coordinator too.
//!
//! History: one `Assignment` per SyncGroup answer (group, generation,
//! member, partitions), every commit as a `Commit` with its outcome (a lost
//! answer is unknown), a `Seek` whenever a partition starts at its committed
//! offset, and `Poll`s of what was processed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::assignor::{self, Assignor, MemberSubscription};
use crate::cluster::{Cluster, ClusterEvent, SessionId, CONN_SPAN, MAX_SESSIONS};
use crate::history::{Event, History, Op, Outcome, Read};
use crate::producer::decode_value;
use crate::session::{decode_body, split_addrs, Session, SessionEvent, SESSION_TIMER_LIMIT};

/// The first session slot of the group sessions (the cluster's are below
/// [`MAX_SESSIONS`]).
pub const GROUP_SLOT_BASE: u64 = MAX_SESSIONS as u64;
/// The "session index" of group requests sent over a cluster session.
const VIA_CLUSTER: usize = usize::MAX;
/// Connection ids a member needs from its `conn_base`.
pub const CONN_RANGE: ConnId = 2_000_000;

const START_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const FETCH_RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
const HEARTBEAT_TIMER: TimerId = SESSION_TIMER_LIMIT + 3;
const AUTO_COMMIT_TIMER: TimerId = SESSION_TIMER_LIMIT + 4;
const PROCESS_TIMER: TimerId = SESSION_TIMER_LIMIT + 5;
const GROUP_TIMER: TimerId = SESSION_TIMER_LIMIT + 6;
const LEAVE_TIMER: TimerId = SESSION_TIMER_LIMIT + 7;

/// Protocol versions spoken.
const FIND_COORDINATOR_VERSION: i16 = 3;
const JOIN_VERSION: i16 = 7;
const SYNC_VERSION: i16 = 5;
const HEARTBEAT_VERSION: i16 = 4;
const LEAVE_VERSION: i16 = 4;
const COMMIT_VERSION: i16 = 8;
const OFFSET_FETCH_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;

// Kafka's error codes.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;
const LEADER_GONE: &[i16] = &[3, 5, 6, 56, 74, 75];

/// Kafka's name for an error code (for histories and status lines).
pub fn error_name(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"))
}

/// When a member commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// `enable.auto.commit`: the processed positions every
    /// `auto_commit_interval_ms`, and on every orderly revoke and close.
    Auto,
    /// `commitSync()` after processing each batch (and on revoke and close).
    AfterProcess,
    /// Known unsafe: commits what it fetched as soon as it is fetched,
    /// before processing it (and its fetch positions on revoke). A member
    /// that loses the partition before processing skips those records.
    BeforeProcess,
}

impl CommitMode {
    pub fn parse(name: &str) -> Option<CommitMode> {
        match name {
            "auto" => Some(CommitMode::Auto),
            "after-process" => Some(CommitMode::AfterProcess),
            "before-process" => Some(CommitMode::BeforeProcess),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub process: u32,
    /// One `host:port`, or a comma-separated list of them.
    pub bootstrap: String,
    pub topic: String,
    pub group_id: String,
    /// `group.instance.id`: a static member.
    pub instance_id: Option<String>,
    pub assignor: Assignor,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub heartbeat_interval_ms: u64,
    pub commit: CommitMode,
    pub auto_commit_interval_ms: u64,
    /// Simulated time between a fetch answer and its records being processed.
    pub processing_ms: u64,
    pub max_wait_ms: i32,
    pub request_timeout_ms: u64,
    /// Kafka's `retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// Join only at this simulated time (nanoseconds).
    pub start_at_nanos: u64,
    /// Close (commit, then LeaveGroup unless static) at this time.
    pub leave_at_nanos: Option<u64>,
    /// `isolation.level=read_committed`: fetches stop at the last stable offset.
    pub read_committed: bool,
}

impl GroupConsumerConfig {
    /// Kafka's consumer defaults for the rest.
    pub fn new(process: u32, bootstrap: &str, topic: &str, group_id: &str) -> GroupConsumerConfig {
        GroupConsumerConfig {
            process,
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            group_id: group_id.to_string(),
            instance_id: None,
            assignor: Assignor::Range,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            heartbeat_interval_ms: 3_000,
            commit: CommitMode::Auto,
            auto_commit_interval_ms: 1_000,
            processing_ms: 0,
            max_wait_ms: 500,
            request_timeout_ms: 5_000,
            retry_backoff_ms: 100,
            start_at_nanos: 0,
            leave_at_nanos: None,
            read_committed: false,
        }
    }
}

/// Where the member stands in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// Wants to (re)join: finding the coordinator, or about to send JoinGroup.
    Unjoined,
    /// Eager: committing before giving everything up and joining.
    Revoking,
    Joining,
    Syncing,
    Stable,
    /// Closed (left the group, or a static member gone).
    Closed,
}

/// A member's state, for status lines and the run's liveness judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub phase: Phase,
    pub member_id: String,
    pub generation: i32,
    pub owned: Vec<i32>,
    pub coordinator: Option<i32>,
    pub last_error: Option<String>,
}

/// What to do once a commit is answered (or lost).
#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    Nothing,
    /// Eager: give everything up, then join.
    Join,
    /// Cooperative: give these up, then rejoin.
    Revoke(Vec<i32>),
    /// Close: LeaveGroup (dynamic members), then stop.
    Close,
}

#[derive(Debug, Clone)]
enum GroupRequest {
    FindCoordinator,
    Join,
    Sync {
        generation: i32,
    },
    Heartbeat {
        sent: u64,
    },
    /// `event`: the index of its `Commit` in the history.
    Commit {
        event: usize,
        after: After,
    },
    /// Partitions with the assignment epoch they were asked for in.
    OffsetFetch {
        partitions: Vec<(i32, u64)>,
    },
    Leave,
}

/// A partition the member owns.
#[derive(Debug, Clone, Copy)]
struct Owned {
    /// Next offset to fetch; `None` until the committed offset is known.
    fetch: Option<i64>,
    /// Next offset to process (what a safe commit carries).
    processed: Option<i64>,
    /// Bumped at every (re)assignment: answers for an older one are dropped.
    epoch: u64,
}

#[derive(Debug, Clone)]
struct FetchInFlight {
    session: SessionId,
    partitions: Vec<(i32, u64)>,
    invoked: u64,
}

/// Fetched records waiting to be processed.
#[derive(Debug, Clone)]
struct Batch {
    due: u64,
    partition: i32,
    epoch: u64,
    invoked: u64,
    reads: Vec<Read>,
}

pub struct GroupConsumer {
    config: GroupConsumerConfig,
    conn_base: ConnId,
    cluster: Cluster,
    history: History,
    phase: Phase,
    member_id: String,
    generation: i32,
    /// The protocol the group chose in the last join.
    leader: bool,
    coordinator: Option<(i32, String)>,
    /// Group sessions by address (slots from GROUP_SLOT_BASE).
    sessions: Vec<(String, Session)>,
    /// Candidates for FindCoordinator when no session is ready.
    rotation: usize,
    /// Group requests in flight: tag -> (session index, request).
    requests: BTreeMap<u64, (usize, GroupRequest)>,
    /// Group requests wait for this time (a backoff after an error).
    group_backoff_until: u64,
    group_timer_at: Option<u64>,
    heartbeat_due: bool,
    owned: BTreeMap<i32, Owned>,
    next_epoch: u64,
    /// Partition -> the last offset committed by this member (ok).
    committed: BTreeMap<i32, i64>,
    /// A commit wanted while one was in flight.
    commit_wanted: bool,
    fetches: BTreeMap<u64, FetchInFlight>,
    fetch_backoff: BTreeMap<SessionId, u64>,
    queue: VecDeque<Batch>,
    next_tag: u64,
    last_error: Option<String>,
    /// The member wants to close once its commit is done.
    closing: bool,
    /// Cooperative: partitions to revoke once the commit in flight is answered.
    pending_revoke: Option<Vec<i32>>,
}

impl GroupConsumer {
    /// `conn_base`: the first of [`CONN_RANGE`] connection ids this member may use.
    pub fn new(config: GroupConsumerConfig, conn_base: ConnId) -> GroupConsumer {
        let client_id = format!("group-consumer-{}", config.process);
        let cluster = Cluster::new(
            &config.bootstrap,
            &client_id,
            conn_base,
            config.request_timeout_ms,
            &config.topic,
            config.retry_backoff_ms,
        );
        GroupConsumer {
            config,
            conn_base,
            cluster,
            history: History::default(),
            phase: Phase::Idle,
            member_id: String::new(),
            generation: -1,
            leader: false,
            coordinator: None,
            sessions: Vec::new(),
            rotation: 0,
            requests: BTreeMap::new(),
            group_backoff_until: 0,
            group_timer_at: None,
            heartbeat_due: false,
            owned: BTreeMap::new(),
            next_epoch: 0,
            committed: BTreeMap::new(),
            commit_wanted: false,
            fetches: BTreeMap::new(),
            fetch_backoff: BTreeMap::new(),
            queue: VecDeque::new(),
            next_tag: 0,
            last_error: None,
            closing: false,
            pending_revoke: None,
        }
    }

    pub fn config(&self) -> &GroupConsumerConfig {
        &self.config
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Hand the history over (a restarted member goes on with it).
    pub fn take_history(&mut self) -> History {
        std::mem::take(&mut self.history)
    }

    /// Continue `history` (a restarted member's earlier life).
    pub fn with_history(mut self, history: History) -> GroupConsumer {
        self.history = history;
        self
    }

    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            phase: self.phase,
            member_id: self.member_id.clone(),
            generation: self.generation,
            owned: self.owned.keys().copied().collect(),
            coordinator: self.coordinator.as_ref().map(|c| c.0),
            last_error: self.last_error.clone(),
        }
    }

    /// partition -> (fetch position, processed position), -1 when unknown.
    pub fn progress(&self) -> BTreeMap<i32, (i64, i64)> {
        self.owned
            .iter()
            .map(|(p, o)| (*p, (o.fetch.unwrap_or(-1), o.processed.unwrap_or(-1))))
            .collect()
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => {
                if let Some(at) = self.config.leave_at_nanos {
                    out.push(Output::SetTimer {
                        id: LEAVE_TIMER,
                        at_nanos: at,
                    });
                }
                if now.mono_nanos < self.config.start_at_nanos {
                    out.push(Output::SetTimer {
                        id: START_TIMER,
                        at_nanos: self.config.start_at_nanos,
                    });
                } else {
                    self.start(now, out);
                }
                return;
            }
            Input::TimerFired { id: START_TIMER } => {
                if self.phase == Phase::Idle {
                    self.start(now, out);
                }
                return;
            }
            Input::TimerFired { id: LEAVE_TIMER } => {
                self.close(now, out);
                return;
            }
            _ => {}
        }
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            Input::TimerFired {
                id: FETCH_RETRY_TIMER,
            } => {}
            Input::TimerFired {
                id: HEARTBEAT_TIMER,
            } => self.heartbeat_tick(now, out),
            Input::TimerFired {
                id: AUTO_COMMIT_TIMER,
            } => {
                if self.config.commit == CommitMode::Auto {
                    self.commit_wanted = true;
                }
                out.push(Output::SetTimer {
                    id: AUTO_COMMIT_TIMER,
                    at_nanos: now.after_millis(self.config.auto_commit_interval_ms),
                });
            }
            Input::TimerFired { id: PROCESS_TIMER } => self.process_due(now, out),
            Input::TimerFired { id: GROUP_TIMER } => self.group_timer_at = None,
            ref other => {
                if let Some(index) = self.sessions.iter().position(|(_, s)| s.owns(other)) {
                    let events = self.sessions[index].1.handle(now, other, out);
                    for event in events {
                        self.on_group_event(now, index, event, out);
                    }
                } else {
                    self.on_cluster_input(now, other, out);
                }
            }
        }
        self.pump(now, out);
    }

    fn start(&mut self, now: Now, out: &mut Vec<Output>) {
        self.phase = Phase::Unjoined;
        self.cluster.start(now, out);
        if self.config.commit == CommitMode::Auto {
            out.push(Output::SetTimer {
                id: AUTO_COMMIT_TIMER,
                at_nanos: now.after_millis(self.config.auto_commit_interval_ms),
            });
        }
        self.pump(now, out);
    }

    /// Close as Kafka's `consumer.close()` does: commit what was processed,
    /// then LeaveGroup (a static member does not leave: it is expected back).
    pub fn close(&mut self, now: Now, out: &mut Vec<Output>) {
        if matches!(self.phase, Phase::Closed | Phase::Idle) {
            self.finish_close(now, out);
            return;
        }
        self.closing = true;
        if self.phase == Phase::Stable && self.can_send_group() && !self.commit_in_flight() {
            let offsets = self.commit_offsets(true);
            if !offsets.is_empty() && self.send_commit(now, offsets, After::Close, out) {
                return;
            }
        }
        if self.commit_in_flight() {
            // The close follows the commit in flight.
            return;
        }
        self.leave_and_stop(now, out);
    }

    fn leave_and_stop(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.config.instance_id.is_none() && !self.member_id.is_empty() && self.can_send_group()
        {
            let request = LeaveGroupRequest::default()
                .with_group_id(self.group_id())
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(self.member_id.clone()))
                    .with_reason(Some(StrBytes::from_static_str(
                        "the consumer is being closed",
                    )))]);
            self.send_group(
                now,
                ApiKey::LeaveGroup,
                LEAVE_VERSION,
                &request,
                GroupRequest::Leave,
                out,
            );
        }
        self.finish_close(now, out);
    }

    fn finish_close(&mut self, now: Now, out: &mut Vec<Output>) {
        self.drop_partitions(now, &self.owned.keys().copied().collect::<Vec<_>>());
        self.phase = Phase::Closed;
        for id in [
            START_TIMER,
            FETCH_RETRY_TIMER,
            HEARTBEAT_TIMER,
            AUTO_COMMIT_TIMER,
            PROCESS_TIMER,
            GROUP_TIMER,
        ] {
            out.push(Output::CancelTimer { id });
        }
        // The LeaveGroup's bytes go out before the close (the network keeps
        // a connection's order); its answer is not awaited.
        for (_, s) in &mut self.sessions {
            s.close(out);
        }
        self.requests.clear();
    }

    // ----- the group -----

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.config.group_id.clone()))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.config
            .instance_id
            .as_ref()
            .map(|i| StrBytes::from_string(i.clone()))
    }

    fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.config.topic.clone()))
    }

    fn coordinator_session(&self) -> Option<usize> {
        let (_, addr) = self.coordinator.as_ref()?;
        self.sessions.iter().position(|(a, _)| a == addr)
    }

    fn can_send_group(&self) -> bool {
        self.coordinator_session()
            .is_some_and(|i| self.sessions[i].1.is_ready())
    }

    fn commit_in_flight(&self) -> bool {
        self.requests
            .values()
            .any(|(_, r)| matches!(r, GroupRequest::Commit { .. }))
    }

    fn in_flight(&self, pred: impl Fn(&GroupRequest) -> bool) -> bool {
        self.requests.values().any(|(_, r)| pred(r))
    }

    /// The session of `addr`, made if new.
    fn session_for(&mut self, addr: &str) -> Option<usize> {
        if let Some(i) = self.sessions.iter().position(|(a, _)| a == addr) {
            return Some(i);
        }
        let i = self.sessions.len();
        if i >= MAX_SESSIONS {
            return None;
        }
        // JoinGroup waits for the whole rebalance: its timeout covers the
        // rebalance timeout, as Kafka's clients' does.
        let timeout = self
            .config
            .request_timeout_ms
            .max(self.config.rebalance_timeout_ms.max(0) as u64 + 5_000);
        let session = Session::in_slot(
            addr,
            &format!("group-consumer-{}", self.config.process),
            self.conn_base,
            GROUP_SLOT_BASE + i as u64,
            CONN_SPAN,
            timeout,
        );
        self.sessions.push((addr.to_string(), session));
        Some(i)
    }

    fn send_group<
        T: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
    >(
        &mut self,
        now: Now,
        api_key: ApiKey,
        version: i16,
        body: &T,
        request: GroupRequest,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(index) = self.coordinator_session() else {
            return false;
        };
        self.send_on(now, index, api_key, version, body, request, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_on<T: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion>(
        &mut self,
        now: Now,
        index: usize,
        api_key: ApiKey,
        version: i16,
        body: &T,
        request: GroupRequest,
        out: &mut Vec<Output>,
    ) -> bool {
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.sessions[index]
            .1
            .send(now, api_key, version, body, Some(tag), out)
        {
            self.requests.insert(tag, (index, request));
            true
        } else {
            false
        }
    }

    fn back_off_group(&mut self, now: Now, out: &mut Vec<Output>) {
        let until = now.after_millis(self.config.retry_backoff_ms);
        self.group_backoff_until = self.group_backoff_until.max(until);
        if self.group_timer_at.is_none_or(|t| t > until) {
            self.group_timer_at = Some(until);
            out.push(Output::SetTimer {
                id: GROUP_TIMER,
                at_nanos: until,
            });
        }
    }

    /// Forget the coordinator: it moved, failed or stopped answering.
    /// Its connection is closed, as Kafka's clients do: what was in flight
    /// there will not be answered.
    fn forget_coordinator(&mut self, now: Now, why: &str, out: &mut Vec<Output>) {
        self.last_error = Some(why.to_string());
        if let Some(index) = self.coordinator_session() {
            tracing::debug!(
                ms = now.mono_nanos / 1_000_000,
                process = self.config.process,
                why,
                "coordinator forgotten"
            );
            let lost: Vec<u64> = self
                .requests
                .iter()
                .filter(|(_, (i, _))| *i == index)
                .map(|(t, _)| *t)
                .collect();
            self.sessions[index].1.close(out);
            self.coordinator = None;
            self.on_lost(now, lost, out);
        }
        self.coordinator = None;
        self.back_off_group(now, out);
    }

    /// Something says the group is rebalancing (or must): join again.
    fn rejoin(&mut self, now: Now, out: &mut Vec<Output>) {
        if matches!(self.phase, Phase::Closed | Phase::Idle) || self.closing {
            return;
        }
        if matches!(
            self.phase,
            Phase::Joining | Phase::Syncing | Phase::Revoking
        ) {
            // Already at it: a join or sync in flight (or the revoke before
            // it) leads to a new generation anyway.
            if self.phase != Phase::Revoking
                && !self.in_flight(|r| matches!(r, GroupRequest::Join | GroupRequest::Sync { .. }))
            {
                self.phase = Phase::Unjoined;
            }
            return;
        }
        tracing::debug!(
            ms = now.mono_nanos / 1_000_000,
            process = self.config.process,
            "rejoining"
        );
        self.phase = Phase::Unjoined;
        out.push(Output::CancelTimer {
            id: HEARTBEAT_TIMER,
        });
        self.heartbeat_due = false;
    }

    /// The member was fenced: everything it owned is lost (not committed).
    fn fenced(&mut self, now: Now, code: i16, out: &mut Vec<Output>) {
        self.last_error = Some(error_name(code));
        if code == UNKNOWN_MEMBER_ID || code == FENCED_INSTANCE_ID {
            self.member_id.clear();
        }
        self.generation = -1;
        let all: Vec<i32> = self.owned.keys().copied().collect();
        self.drop_partitions(now, &all);
        if self.phase == Phase::Revoking {
            self.phase = Phase::Unjoined;
        }
        self.rejoin(now, out);
        if code == FENCED_INSTANCE_ID {
            self.back_off_group(now, out);
        }
    }

    /// Give partitions up: forget their positions and unprocessed records.
    fn drop_partitions(&mut self, _now: Now, partitions: &[i32]) {
        if let Some(pending) = &mut self.pending_revoke {
            pending.retain(|p| !partitions.contains(p));
        }
        for p in partitions {
            self.owned.remove(p);
            self.committed.remove(p);
        }
        self.queue.retain(|b| !partitions.contains(&b.partition));
    }

    /// Send what the group needs next, if nothing stands in the way.
    fn pump(&mut self, now: Now, out: &mut Vec<Output>) {
        if matches!(self.phase, Phase::Idle | Phase::Closed) {
            return;
        }
        self.pump_group(now, out);
        self.pump_fetches(now, out);
    }

    fn pump_group(&mut self, now: Now, out: &mut Vec<Output>) {
        if now.mono_nanos < self.group_backoff_until {
            return;
        }
        if self.coordinator.is_none() {
            self.find_coordinator(now, out);
            return;
        }
        let Some(index) = self.coordinator_session() else {
            return;
        };
        if !self.sessions[index].1.is_ready() {
            self.sessions[index].1.connect(out);
            return;
        }
        match self.phase {
            Phase::Unjoined => self.prepare_join(now, out),
            Phase::Stable => {
                if self.heartbeat_due
                    && !self.in_flight(|r| matches!(r, GroupRequest::Heartbeat { .. }))
                {
                    self.send_heartbeat(now, out);
                }
                self.maybe_commit(now, out);
                self.fetch_committed(now, out);
            }
            _ => {}
        }
    }

    fn find_coordinator(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.in_flight(|r| matches!(r, GroupRequest::FindCoordinator)) {
            return;
        }
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(self.config.group_id.clone()))
            .with_key_type(0);
        // Any broker will do: first the connections the fetches use.
        let mut addrs = split_addrs(&self.config.bootstrap);
        addrs.extend(self.cluster.brokers().values().cloned());
        let ready = addrs
            .iter()
            .filter_map(|a| self.cluster.session_of(a))
            .find(|id| self.cluster.session(*id).is_ready());
        if let Some(id) = ready {
            let tag = self.next_tag;
            self.next_tag += 1;
            if self.cluster.send(
                now,
                id,
                ApiKey::FindCoordinator,
                FIND_COORDINATOR_VERSION,
                &request,
                Some(tag),
                out,
            ) {
                self.requests
                    .insert(tag, (VIA_CLUSTER, GroupRequest::FindCoordinator));
                return;
            }
        }
        if let Some(index) = (0..self.sessions.len()).find(|i| self.sessions[*i].1.is_ready()) {
            self.send_on(
                now,
                index,
                ApiKey::FindCoordinator,
                FIND_COORDINATOR_VERSION,
                &request,
                GroupRequest::FindCoordinator,
                out,
            );
            return;
        }
        if self.sessions.iter().any(|(_, s)| s.is_connecting()) {
            return;
        }
        let mut candidates = split_addrs(&self.config.bootstrap);
        for addr in self.cluster.brokers().values() {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        for _ in 0..candidates.len() {
            let addr = candidates[self.rotation % candidates.len()].clone();
            self.rotation += 1;
            let Some(index) = self.session_for(&addr) else {
                continue;
            };
            if self.sessions[index].1.is_idle() {
                self.sessions[index].1.connect(out);
                return;
            }
        }
    }

    /// Unjoined with a ready coordinator: eager members commit and give
    /// everything up first; then JoinGroup.
    fn prepare_join(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.in_flight(|r| matches!(r, GroupRequest::Join | GroupRequest::Sync { .. })) {
            return;
        }
        // A leader must know the topic's partitions to assign them.
        if self.cluster.partition_count().is_none() {
            return;
        }
        if !self.config.assignor.cooperative() && !self.owned.is_empty() {
            if self.commit_in_flight() {
                self.phase = Phase::Revoking;
                return;
            }
            let offsets = self.commit_offsets(true);
            if !offsets.is_empty() && self.send_commit(now, offsets, After::Join, out) {
                self.phase = Phase::Revoking;
                return;
            }
            let all: Vec<i32> = self.owned.keys().copied().collect();
            self.drop_partitions(now, &all);
        }
        self.send_join(now, out);
    }

    fn send_join(&mut self, now: Now, out: &mut Vec<Output>) {
        let owned: Vec<i32> = if self.config.assignor.cooperative() {
            self.owned.keys().copied().collect()
        } else {
            Vec::new()
        };
        let generation = if owned.is_empty() {
            -1
        } else {
            self.generation
        };
        let metadata = assignor::encode_subscription(&self.config.topic, &owned, generation);
        let request = JoinGroupRequest::default()
            .with_group_id(self.group_id())
            .with_session_timeout_ms(self.config.session_timeout_ms)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout_ms)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(self.config.assignor.name()))
                .with_metadata(metadata)]);
        if self.send_group(
            now,
            ApiKey::JoinGroup,
            JOIN_VERSION,
            &request,
            GroupRequest::Join,
            out,
        ) {
            self.phase = Phase::Joining;
        }
    }

    fn send_heartbeat(&mut self, now: Now, out: &mut Vec<Output>) {
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id());
        if self.send_group(
            now,
            ApiKey::Heartbeat,
            HEARTBEAT_VERSION,
            &request,
            GroupRequest::Heartbeat {
                sent: now.mono_nanos,
            },
            out,
        ) {
            self.heartbeat_due = false;
        }
    }

    fn heartbeat_tick(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.phase != Phase::Stable {
            return;
        }
        self.heartbeat_due = true;
        out.push(Output::SetTimer {
            id: HEARTBEAT_TIMER,
            at_nanos: now.after_millis(self.config.heartbeat_interval_ms),
        });
        // A heartbeat unanswered for a session timeout: the coordinator
        // (or the way to it) is gone; find it again. (A member that was
        // itself paused has no heartbeat out: it heartbeats, and learns.)
        let oldest = self
            .requests
            .values()
            .filter_map(|(_, r)| match r {
                GroupRequest::Heartbeat { sent } => Some(*sent),
                _ => None,
            })
            .min();
        let limit = self.config.session_timeout_ms.max(0) as u64 * 1_000_000;
        if oldest.is_some_and(|sent| now.mono_nanos.saturating_sub(sent) > limit) {
            self.forget_coordinator(now, "a heartbeat unanswered for a session timeout", out);
        }
    }

    /// What a commit now would carry: partition -> offset (processed
    /// positions; fetch positions in `before-process` mode), only those
    /// that moved since the last ok commit unless `all`.
    fn commit_offsets(&self, all: bool) -> BTreeMap<i32, i64> {
        self.owned
            .iter()
            .filter_map(|(p, o)| {
                let position = if self.config.commit == CommitMode::BeforeProcess {
                    o.fetch
                } else {
                    o.processed
                }?;
                let moved = self.committed.get(p) != Some(&position);
                (all || moved).then_some((*p, position))
            })
            .collect()
    }

    fn maybe_commit(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.commit_wanted || self.commit_in_flight() {
            return;
        }
        let offsets = self.commit_offsets(false);
        self.commit_wanted = false;
        if !offsets.is_empty() {
            self.send_commit(now, offsets, After::Nothing, out);
        }
    }

    fn send_commit(
        &mut self,
        now: Now,
        offsets: BTreeMap<i32, i64>,
        after: After,
        out: &mut Vec<Output>,
    ) -> bool {
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(self.topic_name())
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(StrBytes::from_static_str("")))
                        })
                        .collect(),
                )]);
        let event = self.history.events.len();
        let sent = self.send_group(
            now,
            ApiKey::OffsetCommit,
            COMMIT_VERSION,
            &request,
            GroupRequest::Commit { event, after },
            out,
        );
        if sent {
            self.history.events.push(Event {
                process: self.config.process,
                invoke_nanos: now.mono_nanos,
                complete_nanos: None,
                outcome: None,
                op: Op::Commit {
                    group: self.config.group_id.clone(),
                    generation: self.generation,
                    member: self.member_id.clone(),
                    offsets,
                },
            });
        }
        sent
    }

    /// OffsetFetch for owned partitions whose start is not known yet.
    fn fetch_committed(&mut self, now: Now, out: &mut Vec<Output>) {
        let asking: BTreeSet<i32> = self
            .requests
            .values()
            .filter_map(|(_, r)| match r {
                GroupRequest::OffsetFetch { partitions } => Some(partitions.clone()),
                _ => None,
            })
            .flatten()
            .map(|(p, _)| p)
            .collect();
        let wanted: Vec<(i32, u64)> = self
            .owned
            .iter()
            .filter(|(p, o)| o.fetch.is_none() && !asking.contains(p))
            .map(|(p, o)| (*p, o.epoch))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(self.group_id())
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(self.topic_name())
                .with_partition_indexes(wanted.iter().map(|(p, _)| *p).collect())]));
        self.send_group(
            now,
            ApiKey::OffsetFetch,
            OFFSET_FETCH_VERSION,
            &request,
            GroupRequest::OffsetFetch { partitions: wanted },
            out,
        );
    }

    fn on_group_event(
        &mut self,
        now: Now,
        index: usize,
        event: SessionEvent,
        out: &mut Vec<Output>,
    ) {
        match event {
            SessionEvent::Connected => {}
            SessionEvent::Lost { in_flight, reason } => {
                let coordinator = self.coordinator_session() == Some(index);
                self.on_lost(now, in_flight, out);
                if coordinator {
                    self.forget_coordinator(now, &format!("coordinator connection: {reason}"), out);
                }
            }
            SessionEvent::Response {
                tag, version, body, ..
            } => {
                let Some((_, request)) = self.requests.remove(&tag) else {
                    return;
                };
                self.on_response(now, index, request, version, body, out);
            }
        }
    }

    /// Requests whose answers will never come.
    fn on_lost(&mut self, now: Now, tags: Vec<u64>, out: &mut Vec<Output>) {
        for tag in tags {
            let Some((_, request)) = self.requests.remove(&tag) else {
                continue;
            };
            match request {
                GroupRequest::Join | GroupRequest::Sync { .. } => {
                    if matches!(self.phase, Phase::Joining | Phase::Syncing) {
                        self.phase = Phase::Unjoined;
                    }
                }
                GroupRequest::Commit { event, after } => {
                    self.complete(
                        event,
                        now,
                        Outcome::Unknown {
                            reason: "connection lost".into(),
                        },
                    );
                    self.after_commit(now, after, out);
                }
                GroupRequest::FindCoordinator
                | GroupRequest::Heartbeat { .. }
                | GroupRequest::OffsetFetch { .. }
                | GroupRequest::Leave => {}
            }
        }
    }

    fn complete(&mut self, event: usize, now: Now, outcome: Outcome) {
        if let Some(e) = self.history.events.get_mut(event) {
            e.complete_nanos = Some(now.mono_nanos);
            e.outcome = Some(outcome);
        }
    }

    fn on_response(
        &mut self,
        now: Now,
        index: usize,
        request: GroupRequest,
        version: i16,
        body: Bytes,
        out: &mut Vec<Output>,
    ) {
        match request {
            GroupRequest::FindCoordinator => {
                let response: Option<FindCoordinatorResponse> = decode_body(&body, version);
                match response {
                    Some(r) if r.error_code == 0 && r.node_id.0 >= 0 => {
                        let addr = if r.host.contains(':') {
                            format!("[{}]:{}", r.host, r.port)
                        } else {
                            format!("{}:{}", r.host, r.port)
                        };
                        if let Some(i) = self.session_for(&addr) {
                            self.coordinator = Some((r.node_id.0, addr));
                            self.sessions[i].1.connect(out);
                        }
                    }
                    Some(r) => {
                        self.last_error = Some(error_name(r.error_code));
                        self.back_off_group(now, out);
                    }
                    None => self.back_off_group(now, out),
                }
            }
            GroupRequest::Join => {
                let response: Option<JoinGroupResponse> = decode_body(&body, version);
                self.on_join(now, response, out);
            }
            GroupRequest::Sync { generation } => {
                let response: Option<SyncGroupResponse> = decode_body(&body, version);
                self.on_sync(now, generation, response, out);
            }
            GroupRequest::Heartbeat { .. } => {
                let Some(r): Option<HeartbeatResponse> = decode_body(&body, version) else {
                    return;
                };
                if r.error_code != 0 {
                    tracing::debug!(
                        ms = now.mono_nanos / 1_000_000,
                        process = self.config.process,
                        error = r.error_code,
                        "Heartbeat answered"
                    );
                }
                match r.error_code {
                    0 => {}
                    REBALANCE_IN_PROGRESS => {
                        if self.phase == Phase::Stable {
                            self.rejoin(now, out);
                        }
                    }
                    ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                        if self.phase == Phase::Stable {
                            self.fenced(now, r.error_code, out);
                        }
                    }
                    NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                        self.forget_coordinator(now, &error_name(r.error_code), out)
                    }
                    other => self.last_error = Some(error_name(other)),
                }
            }
            GroupRequest::Commit { event, after } => {
                let response: Option<OffsetCommitResponse> = decode_body(&body, version);
                self.on_commit(now, event, response, out);
                self.after_commit(now, after, out);
            }
            GroupRequest::OffsetFetch { partitions } => {
                let response: Option<OffsetFetchResponse> = decode_body(&body, version);
                self.on_offset_fetch(now, partitions, response, out);
            }
            GroupRequest::Leave => {}
        }
        let _ = index;
    }

    fn on_join(&mut self, now: Now, response: Option<JoinGroupResponse>, out: &mut Vec<Output>) {
        tracing::debug!(
            ms = now.mono_nanos / 1_000_000,
            process = self.config.process,
            phase = ?self.phase,
            error = response.as_ref().map(|r| r.error_code),
            generation = response.as_ref().map(|r| r.generation_id),
            "JoinGroup answered"
        );
        if self.phase != Phase::Joining {
            return;
        }
        let Some(r) = response else {
            self.phase = Phase::Unjoined;
            self.back_off_group(now, out);
            return;
        };
        match r.error_code {
            0 => {
                self.member_id = r.member_id.to_string();
                self.generation = r.generation_id;
                self.leader = *r.leader == *r.member_id;
                let assignments = if self.leader {
                    self.leader_assignment(&r)
                } else {
                    Vec::new()
                };
                let request = SyncGroupRequest::default()
                    .with_group_id(self.group_id())
                    .with_generation_id(self.generation)
                    .with_member_id(StrBytes::from_string(self.member_id.clone()))
                    .with_group_instance_id(self.instance_id())
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str(
                        self.config.assignor.name(),
                    )))
                    .with_assignments(assignments);
                let generation = self.generation;
                if self.send_group(
                    now,
                    ApiKey::SyncGroup,
                    SYNC_VERSION,
                    &request,
                    GroupRequest::Sync { generation },
                    out,
                ) {
                    self.phase = Phase::Syncing;
                } else {
                    self.phase = Phase::Unjoined;
                }
            }
            MEMBER_ID_REQUIRED => {
                self.member_id = r.member_id.to_string();
                self.phase = Phase::Unjoined;
                self.send_join(now, out);
            }
            code => {
                self.last_error = Some(error_name(code));
                self.phase = Phase::Unjoined;
                match code {
                    UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID => {
                        self.fenced(now, code, out);
                        self.back_off_group(now, out);
                    }
                    NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                        self.forget_coordinator(now, &error_name(code), out)
                    }
                    REBALANCE_IN_PROGRESS => {}
                    _ => self.back_off_group(now, out),
                }
            }
        }
    }

    /// The leader's SyncGroup assignments for the members the join named.
    fn leader_assignment(&self, r: &JoinGroupResponse) -> Vec<SyncGroupRequestAssignment> {
        let members: Vec<MemberSubscription> = r
            .members
            .iter()
            .map(|m| MemberSubscription {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                subscription: assignor::decode_subscription(&m.metadata, &self.config.topic)
                    .unwrap_or_default(),
            })
            .collect();
        let partitions = self.cluster.partition_count().unwrap_or(0);
        let plan = assignor::assign(self.config.assignor, partitions, &members);
        plan.iter()
            .map(|(member, parts)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(assignor::encode_assignment(&self.config.topic, parts))
            })
            .collect()
    }

    fn on_sync(
        &mut self,
        now: Now,
        generation: i32,
        response: Option<SyncGroupResponse>,
        out: &mut Vec<Output>,
    ) {
        tracing::debug!(
            ms = now.mono_nanos / 1_000_000,
            process = self.config.process,
            phase = ?self.phase,
            generation,
            error = response.as_ref().map(|r| r.error_code),
            "SyncGroup answered"
        );
        if self.phase != Phase::Syncing || generation != self.generation {
            return;
        }
        let Some(r) = response else {
            self.phase = Phase::Unjoined;
            self.back_off_group(now, out);
            return;
        };
        if r.error_code != 0 {
            self.last_error = Some(error_name(r.error_code));
            self.phase = Phase::Unjoined;
            match r.error_code {
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID => {
                    self.fenced(now, r.error_code, out)
                }
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                    self.forget_coordinator(now, &error_name(r.error_code), out)
                }
                REBALANCE_IN_PROGRESS => {}
                _ => self.back_off_group(now, out),
            }
            return;
        }
        let Some(assigned) = assignor::decode_assignment(&r.assignment, &self.config.topic) else {
            self.last_error = Some("malformed assignment".into());
            self.phase = Phase::Unjoined;
            self.back_off_group(now, out);
            return;
        };
        self.history.events.push(Event {
            process: self.config.process,
            invoke_nanos: now.mono_nanos,
            complete_nanos: Some(now.mono_nanos),
            outcome: Some(Outcome::Ok),
            op: Op::Assignment {
                group: self.config.group_id.clone(),
                generation: self.generation,
                member: self.member_id.clone(),
                instance: self.config.instance_id.clone(),
                partitions: assigned.clone(),
            },
        });
        self.phase = Phase::Stable;
        self.heartbeat_due = false;
        out.push(Output::SetTimer {
            id: HEARTBEAT_TIMER,
            at_nanos: now.after_millis(self.config.heartbeat_interval_ms),
        });
        let revoked: Vec<i32> = self
            .owned
            .keys()
            .copied()
            .filter(|p| !assigned.contains(p))
            .collect();
        for p in &assigned {
            if !self.owned.contains_key(p) {
                self.next_epoch += 1;
                self.owned.insert(
                    *p,
                    Owned {
                        fetch: None,
                        processed: None,
                        epoch: self.next_epoch,
                    },
                );
            }
        }
        if !revoked.is_empty() {
            self.revoke(now, revoked, out);
        }
    }

    /// Cooperative: commit what the revoked partitions processed, give them
    /// up, rejoin. A commit in flight is waited for first (its answer must
    /// not land after the partitions' next owner read the committed offset).
    fn revoke(&mut self, now: Now, revoked: Vec<i32>, out: &mut Vec<Output>) {
        if self.commit_in_flight() {
            self.pending_revoke = Some(revoked);
            return;
        }
        let offsets: BTreeMap<i32, i64> = self
            .commit_offsets(true)
            .into_iter()
            .filter(|(p, _)| revoked.contains(p))
            .collect();
        if !offsets.is_empty()
            && self.can_send_group()
            && self.send_commit(now, offsets, After::Revoke(revoked.clone()), out)
        {
            return;
        }
        self.after_commit(now, After::Revoke(revoked), out);
    }

    fn on_commit(
        &mut self,
        now: Now,
        event: usize,
        response: Option<OffsetCommitResponse>,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = response else {
            self.complete(
                event,
                now,
                Outcome::Unknown {
                    reason: "undecodable OffsetCommit answer".into(),
                },
            );
            return;
        };
        let errors: BTreeMap<i32, i16> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        let Some(Event {
            op: Op::Commit { offsets, .. },
            ..
        }) = self.history.events.get(event).cloned()
        else {
            return;
        };
        let failed: BTreeMap<i32, i16> = offsets
            .keys()
            .map(|p| (*p, errors.get(p).copied().unwrap_or(-1)))
            .filter(|(_, e)| *e != 0)
            .collect();
        if failed.is_empty() {
            self.complete(event, now, Outcome::Ok);
            for (p, o) in &offsets {
                if self.owned.contains_key(p) {
                    self.committed.insert(*p, *o);
                }
            }
            return;
        }
        let first = failed.values().next().copied().unwrap_or(-1);
        tracing::debug!(
            ms = now.mono_nanos / 1_000_000,
            process = self.config.process,
            error = first,
            "OffsetCommit failed"
        );
        let describe = |code: i16| {
            if code == -1 {
                "no answer for the partition".to_string()
            } else {
                error_name(code)
            }
        };
        if failed.len() == offsets.len() {
            self.complete(
                event,
                now,
                Outcome::Fail {
                    error: describe(first),
                },
            );
        } else {
            // Split: the ok partitions in this event, the failed in a new one.
            let ok: BTreeMap<i32, i64> = offsets
                .iter()
                .filter(|(p, _)| !failed.contains_key(p))
                .map(|(p, o)| (*p, *o))
                .collect();
            let bad: BTreeMap<i32, i64> = offsets
                .iter()
                .filter(|(p, _)| failed.contains_key(p))
                .map(|(p, o)| (*p, *o))
                .collect();
            let mut copy = self.history.events[event].clone();
            if let Op::Commit { offsets, .. } = &mut self.history.events[event].op {
                *offsets = ok.clone();
            }
            self.complete(event, now, Outcome::Ok);
            for (p, o) in &ok {
                if self.owned.contains_key(p) {
                    self.committed.insert(*p, *o);
                }
            }
            if let Op::Commit { offsets, .. } = &mut copy.op {
                *offsets = bad;
            }
            copy.complete_nanos = Some(now.mono_nanos);
            copy.outcome = Some(Outcome::Fail {
                error: describe(first),
            });
            self.history.events.push(copy);
        }
        self.last_error = Some(describe(first));
        match first {
            ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                if matches!(self.phase, Phase::Stable | Phase::Revoking) {
                    self.fenced(now, first, out);
                }
            }
            REBALANCE_IN_PROGRESS => self.rejoin(now, out),
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.forget_coordinator(now, &error_name(first), out)
            }
            _ => {}
        }
    }

    fn after_commit(&mut self, now: Now, after: After, out: &mut Vec<Output>) {
        match after {
            After::Nothing => {
                if let Some(revoked) = self.pending_revoke.take() {
                    self.revoke(now, revoked, out);
                } else if self.phase == Phase::Revoking {
                    // An eager revoke waited for this commit: now its own.
                    self.phase = Phase::Unjoined;
                }
            }
            After::Join => {
                let all: Vec<i32> = self.owned.keys().copied().collect();
                self.drop_partitions(now, &all);
                if matches!(self.phase, Phase::Revoking) {
                    self.phase = Phase::Unjoined;
                }
            }
            After::Revoke(partitions) => {
                self.drop_partitions(now, &partitions);
                self.rejoin(now, out);
            }
            After::Close => self.leave_and_stop(now, out),
        }
        if self.closing && self.phase != Phase::Closed && !self.commit_in_flight() {
            self.leave_and_stop(now, out);
        }
    }

    fn on_offset_fetch(
        &mut self,
        now: Now,
        partitions: Vec<(i32, u64)>,
        response: Option<OffsetFetchResponse>,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = response else {
            self.back_off_group(now, out);
            return;
        };
        if r.error_code != 0 {
            self.last_error = Some(error_name(r.error_code));
            match r.error_code {
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                    self.forget_coordinator(now, &error_name(r.error_code), out)
                }
                _ => self.back_off_group(now, out),
            }
            return;
        }
        let mut positions = BTreeMap::new();
        let mut retry = false;
        for t in &r.topics {
            if *t.name.0 != *self.config.topic {
                continue;
            }
            for p in &t.partitions {
                let Some(&(_, epoch)) = partitions.iter().find(|(x, _)| *x == p.partition_index)
                else {
                    continue;
                };
                let Some(owned) = self.owned.get_mut(&p.partition_index) else {
                    continue;
                };
                if owned.epoch != epoch || owned.fetch.is_some() {
                    continue;
                }
                if p.error_code != 0 {
                    retry = true;
                    self.last_error = Some(error_name(p.error_code));
                    continue;
                }
                // None committed: the earliest offset.
                let start = p.committed_offset.max(0);
                owned.fetch = Some(start);
                owned.processed = Some(start);
                positions.insert(p.partition_index, start);
                // Nothing to commit until the position moves.
                self.committed.insert(p.partition_index, start);
            }
        }
        if !positions.is_empty() {
            self.history.events.push(Event {
                process: self.config.process,
                invoke_nanos: now.mono_nanos,
                complete_nanos: Some(now.mono_nanos),
                outcome: Some(Outcome::Ok),
                op: Op::Seek { positions },
            });
        }
        if retry {
            self.back_off_group(now, out);
        }
    }

    // ----- fetching and processing -----

    fn on_cluster_input(&mut self, now: Now, input: &Input, out: &mut Vec<Output>) {
        for event in self.cluster.handle(now, input, out) {
            match event {
                ClusterEvent::Connected { .. } | ClusterEvent::Metadata { .. } => {}
                ClusterEvent::Response {
                    session,
                    tag,
                    version,
                    body,
                    ..
                } => {
                    if let Some((VIA_CLUSTER, request)) = self.requests.remove(&tag) {
                        self.on_response(now, VIA_CLUSTER, request, version, body, out);
                        continue;
                    }
                    let Some(fetch) = self.fetches.remove(&tag) else {
                        continue;
                    };
                    if !self.on_fetch(now, &fetch, decode_body(&body, version), out) {
                        self.fetch_backoff
                            .insert(session, now.after_millis(self.config.retry_backoff_ms));
                    }
                }
                ClusterEvent::Lost { in_flight, .. } => {
                    for tag in &in_flight {
                        self.fetches.remove(tag);
                    }
                    self.on_lost(now, in_flight, out);
                }
            }
        }
    }

    fn pump_fetches(&mut self, now: Now, out: &mut Vec<Output>) {
        let busy_sessions: BTreeSet<SessionId> = self.fetches.values().map(|f| f.session).collect();
        let busy: BTreeSet<i32> = self
            .fetches
            .values()
            .flat_map(|f| f.partitions.iter().map(|(p, _)| *p))
            .collect();
        // Back-pressure: wait while records await processing.
        let queued: BTreeSet<i32> = self.queue.iter().map(|b| b.partition).collect();
        let mut work: BTreeMap<SessionId, Vec<(i32, u64, i64)>> = BTreeMap::new();
        let candidates: Vec<(i32, u64, i64)> = self
            .owned
            .iter()
            .filter_map(|(p, o)| Some((*p, o.epoch, o.fetch?)))
            .filter(|(p, _, _)| !busy.contains(p) && !queued.contains(p))
            .collect();
        for (p, epoch, position) in candidates {
            let Some(session) = self.cluster.leader_session(p, out) else {
                continue;
            };
            work.entry(session).or_default().push((p, epoch, position));
        }
        let mut wake: Option<u64> = None;
        for (session, parts) in work {
            if busy_sessions.contains(&session) || !self.cluster.session(session).is_ready() {
                continue;
            }
            if let Some(until) = self.fetch_backoff.get(&session).copied() {
                if until > now.mono_nanos {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    continue;
                }
                self.fetch_backoff.remove(&session);
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(i8::from(self.config.read_committed))
                .with_max_wait_ms(self.config.max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(4 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(self.topic_name())
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, _, position)| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_current_leader_epoch(self.cluster.leader_epoch(*p))
                                    .with_fetch_offset(*position)
                                    .with_partition_max_bytes(1024 * 1024)
                            })
                            .collect(),
                    )]);
            let tag = self.next_tag;
            self.next_tag += 1;
            if self.cluster.send(
                now,
                session,
                ApiKey::Fetch,
                FETCH_VERSION,
                &request,
                Some(tag),
                out,
            ) {
                self.fetches.insert(
                    tag,
                    FetchInFlight {
                        session,
                        partitions: parts.iter().map(|(p, e, _)| (*p, *e)).collect(),
                        invoked: now.mono_nanos,
                    },
                );
            }
        }
        if let Some(at) = wake {
            out.push(Output::SetTimer {
                id: FETCH_RETRY_TIMER,
                at_nanos: at,
            });
        }
    }

    /// Whether the fetch was answered without errors.
    fn on_fetch(
        &mut self,
        now: Now,
        fetch: &FetchInFlight,
        response: Option<FetchResponse>,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(response) = response else {
            return false;
        };
        let mut all_ok = response.error_code == 0;
        let mut fetched_any = false;
        for topic in response.responses {
            for p in topic.partitions {
                let index = p.partition_index;
                let Some(&(_, epoch)) = fetch.partitions.iter().find(|(x, _)| *x == index) else {
                    continue;
                };
                // Given up (or given up and given back) since it was asked.
                let Some(owned) = self.owned.get(&index).copied() else {
                    continue;
                };
                if owned.epoch != epoch {
                    continue;
                }
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    // Start over from the committed offset (or the earliest).
                    if let Some(o) = self.owned.get_mut(&index) {
                        o.fetch = None;
                        o.processed = None;
                    }
                    continue;
                }
                if p.error_code != 0 {
                    all_ok = false;
                    if LEADER_GONE.contains(&p.error_code) {
                        self.cluster.forget_leader(now, index, out);
                    }
                    continue;
                }
                let Some(mut records) = p.records else {
                    continue;
                };
                let Ok(sets) = RecordBatchDecoder::decode_all(&mut records) else {
                    all_ok = false;
                    continue;
                };
                let mut position = owned.fetch.unwrap_or(0);
                let mut reads = Vec::new();
                for record in sets.into_iter().flat_map(|s| s.records) {
                    if record.offset < position || record.control {
                        continue;
                    }
                    let value = record
                        .value
                        .as_deref()
                        .map(decode_value)
                        .unwrap_or_default();
                    reads.push(Read {
                        offset: record.offset,
                        value,
                    });
                    position = record.offset + 1;
                }
                if reads.is_empty() {
                    continue;
                }
                fetched_any = true;
                if let Some(o) = self.owned.get_mut(&index) {
                    o.fetch = Some(position);
                }
                self.queue.push_back(Batch {
                    due: now.after_millis(self.config.processing_ms),
                    partition: index,
                    epoch,
                    invoked: fetch.invoked,
                    reads,
                });
            }
        }
        if fetched_any {
            if self.config.commit == CommitMode::BeforeProcess && self.phase == Phase::Stable {
                // Known unsafe: what was fetched is committed before processing.
                self.commit_wanted = true;
            }
            if self.config.processing_ms == 0 {
                self.process_due(now, out);
            } else {
                out.push(Output::SetTimer {
                    id: PROCESS_TIMER,
                    at_nanos: self.queue.front().map_or(now.mono_nanos, |b| b.due),
                });
            }
        }
        all_ok
    }

    /// Process the batches that are due: record them, move the processed positions.
    fn process_due(&mut self, now: Now, out: &mut Vec<Output>) {
        let mut processed = false;
        while let Some(batch) = self.queue.front() {
            if batch.due > now.mono_nanos {
                out.push(Output::SetTimer {
                    id: PROCESS_TIMER,
                    at_nanos: batch.due,
                });
                break;
            }
            let batch = self.queue.pop_front().expect("present");
            let Some(owned) = self.owned.get_mut(&batch.partition) else {
                continue;
            };
            if owned.epoch != batch.epoch {
                continue;
            }
            owned.processed = batch.reads.last().map(|r| r.offset + 1).or(owned.processed);
            self.history.events.push(Event {
                process: self.config.process,
                invoke_nanos: batch.invoked,
                complete_nanos: Some(now.mono_nanos),
                outcome: Some(Outcome::Ok),
                op: Op::Poll {
                    reads: BTreeMap::from([(batch.partition, batch.reads)]),
                },
            });
            processed = true;
        }
        if processed
            && self.config.commit == CommitMode::AfterProcess
            && self.phase == Phase::Stable
        {
            self.commit_wanted = true;
        }
    }
}
