//! The leader: serving Fetch and FetchSnapshot, the high watermark, parked
//! (long-poll) fetches, BeginQuorumEpoch, check-quorum; and the Resigned
//! state a leader falls into (EndQuorumEpoch).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::log::{FetchValidation, RaftLog};
use super::state::{Observed, RoleState, RETRY_BACKOFF_MS};
use super::{
    encode_leader_change, Action, Entry, EntryKind, NodeId, QuorumDescription, Raft, RaftError,
    ReplicaState, Request, Response,
};

/// What the leader knows of one replica (voter or observer).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplicaProgress {
    voter: bool,
    /// Largest valid fetch offset: the replica durably holds the log below it.
    position: Option<i64>,
    last_fetch: Option<u64>,
    last_caught_up: Option<u64>,
    /// High watermark in the last response it got (to decide parking).
    sent_hw: Option<i64>,
}

/// A Fetch with nothing new, waiting for entries, a high watermark move, or
/// its deadline.
#[derive(Debug, Clone)]
pub(crate) struct ParkedFetch {
    token: u64,
    replica: NodeId,
    request_epoch: i32,
    fetch_offset: i64,
    deadline: u64,
}

pub(crate) struct LeaderState {
    since: u64,
    /// Offset of this epoch's LeaderChange entry: the high watermark only
    /// moves past it (entries of the current epoch commit older ones).
    epoch_start: i64,
    replicas: BTreeMap<NodeId, ReplicaProgress>,
    /// Voters that have neither acknowledged BeginQuorumEpoch nor fetched →
    /// when to (re)send it.
    pub(crate) begin_pending: BTreeMap<NodeId, u64>,
    pub(crate) parked: Vec<ParkedFetch>,
}

impl LeaderState {
    /// Other voters by position (best first), for EndQuorumEpoch.
    pub(crate) fn successors_by_position(&self) -> Vec<NodeId> {
        let mut v: Vec<(i64, NodeId)> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.voter)
            .map(|(&id, r)| (r.position.unwrap_or(-1), id))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// When check-quorum fails if no voter fetches again.
    fn check_quorum_deadline(&self, quorum: usize, fetch_timeout: u64) -> Option<u64> {
        let needed = quorum.saturating_sub(1);
        if needed == 0 {
            return None;
        }
        let mut times: Vec<u64> = self
            .replicas
            .values()
            .filter(|r| r.voter)
            .map(|r| r.last_fetch.unwrap_or(self.since).max(self.since))
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let kth = times.get(needed - 1).copied().unwrap_or(self.since);
        Some(kth.saturating_add(fetch_timeout))
    }

    pub(crate) fn next_deadline(&self, raft: &Raft) -> Option<u64> {
        let mut d = self.check_quorum_deadline(raft.quorum(), raft.cfg.fetch_timeout_ms);
        let mut consider = |t: u64| d = Some(d.map_or(t, |x| x.min(t)));
        self.begin_pending.values().for_each(|&t| consider(t));
        self.parked.iter().for_each(|p| consider(p.deadline));
        d
    }
}

pub(crate) struct ResignedState {
    successors: Vec<NodeId>,
    /// Voters that have not acknowledged EndQuorumEpoch → when to (re)send.
    pending: BTreeMap<NodeId, u64>,
    election_deadline: u64,
}

impl ResignedState {
    pub(crate) fn new(successors: Vec<NodeId>, others: &[NodeId], now: u64, deadline: u64) -> Self {
        ResignedState {
            successors,
            pending: others.iter().map(|&v| (v, now)).collect(),
            election_deadline: deadline,
        }
    }

    pub(crate) fn next_deadline(&self) -> u64 {
        self.pending
            .values()
            .copied()
            .fold(self.election_deadline, u64::min)
    }

    pub(crate) fn retry_soon(&mut self, to: NodeId, at: u64) {
        if let Some(t) = self.pending.get_mut(&to) {
            *t = (*t).min(at);
        }
    }
}

/// A valid fetch's answer: entries from `fetch_offset`, preceded by the
/// entry at `fetch_offset - 1` when it is still in the log.
fn fetch_entries(log: &RaftLog, fetch_offset: i64, max: usize) -> Vec<Entry> {
    let max = max.max(1);
    if fetch_offset > log.start() {
        log.slice(fetch_offset - 1, max.saturating_add(1)).to_vec()
    } else {
        log.slice(fetch_offset, max).to_vec()
    }
}

impl Raft {
    pub(crate) fn become_leader(&mut self, now: u64) {
        let me = self.cfg.node_id;
        self.election_retries = 0;
        self.set_election(self.epoch, self.voted_for, Some(me));
        let offset = self.log.end();
        let entry = Entry {
            offset,
            epoch: self.epoch,
            kind: EntryKind::LeaderChange,
            data: encode_leader_change(me, &self.voters),
        };
        self.log.append(std::slice::from_ref(&entry));
        self.out.push(Action::AppendLog {
            entries: vec![entry],
        });
        let others = self.other_voters();
        let ls = LeaderState {
            since: now,
            epoch_start: offset,
            replicas: others
                .iter()
                .map(|&v| {
                    (
                        v,
                        ReplicaProgress {
                            voter: true,
                            ..ReplicaProgress::default()
                        },
                    )
                })
                .collect(),
            begin_pending: others.iter().map(|&v| (v, now)).collect(),
            parked: Vec::new(),
        };
        let old = std::mem::replace(&mut self.role, RoleState::Leader(Box::new(ls)));
        debug_assert!(!matches!(old, RoleState::Leader(_)));
        self.maybe_advance_hw(now);
    }

    pub(crate) fn leader_propose(&mut self, _now: u64, data: Vec<Bytes>) -> Result<i64, RaftError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(RaftError::NotLeader);
        }
        let epoch = self.epoch;
        let entries: Vec<Entry> = (self.log.end()..)
            .zip(data)
            .map(|(offset, data)| Entry {
                offset,
                epoch,
                kind: EntryKind::Data,
                data,
            })
            .collect();
        if entries.is_empty() {
            return Ok(self.log.end() - 1);
        }
        self.log.append(&entries);
        self.out.push(Action::AppendLog { entries });
        self.answer_all_parked();
        Ok(self.log.end() - 1)
    }

    /// Recomputes the high watermark; on a move, announces it and answers
    /// parked fetches. Returns whether it moved.
    pub(crate) fn maybe_advance_hw(&mut self, _now: u64) -> bool {
        let me = self.cfg.node_id;
        let RoleState::Leader(ls) = &self.role else {
            return false;
        };
        let mut positions: Vec<i64> = self
            .voters
            .iter()
            .map(|&v| {
                if v == me {
                    self.log.durable_end()
                } else {
                    ls.replicas.get(&v).and_then(|r| r.position).unwrap_or(-1)
                }
            })
            .collect();
        positions.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&n) = positions.get(self.quorum() - 1) else {
            return false;
        };
        let n = n.min(self.log.end());
        let current_epoch = n > ls.epoch_start;
        if !current_epoch || self.hw.is_some_and(|hw| n <= hw) {
            return false;
        }
        self.hw = Some(n);
        self.out.push(Action::Committed { high_watermark: n });
        self.answer_all_parked();
        true
    }

    fn fetch_error_response(&self, error: RaftError) -> Response {
        Response::Fetch {
            epoch: self.epoch,
            leader: self.leader,
            high_watermark: self.hw.unwrap_or(-1),
            log_start: self.log.start(),
            entries: Vec::new(),
            diverging: None,
            snapshot_id: None,
            error: Some(error),
        }
    }

    /// Kafka's `validateLeaderOnlyRequest`.
    fn leader_only_error(&self, epoch: i32) -> Option<RaftError> {
        if epoch < self.epoch {
            Some(RaftError::FencedLeaderEpoch)
        } else if epoch > self.epoch {
            Some(RaftError::UnknownLeaderEpoch)
        } else if !matches!(self.role, RoleState::Leader(_)) {
            Some(RaftError::NotLeader)
        } else {
            None
        }
    }

    /// Answers a valid fetch from `fetch_offset` with the current log.
    fn answer_fetch(&mut self, token: u64, replica: NodeId, fetch_offset: i64) {
        let entries = fetch_entries(&self.log, fetch_offset, self.cfg.max_fetch_entries);
        let hw = self.hw;
        if let RoleState::Leader(ls) = &mut self.role {
            if let Some(r) = ls.replicas.get_mut(&replica) {
                r.sent_hw = hw;
            }
        }
        let response = Response::Fetch {
            epoch: self.epoch,
            leader: self.leader,
            high_watermark: hw.unwrap_or(-1),
            log_start: self.log.start(),
            entries,
            diverging: None,
            snapshot_id: None,
            error: None,
        };
        self.out.push(Action::Respond { token, response });
    }

    fn answer_all_parked(&mut self) {
        let parked = match &mut self.role {
            RoleState::Leader(ls) => std::mem::take(&mut ls.parked),
            _ => return,
        };
        for p in parked {
            self.answer_fetch(p.token, p.replica, p.fetch_offset);
        }
    }

    /// Parked fetches of a leader that lost its role: answered with errors.
    pub(crate) fn fail_parked(&mut self, parked: Vec<ParkedFetch>, _now: u64) {
        for p in parked {
            let error = if p.request_epoch < self.epoch {
                RaftError::FencedLeaderEpoch
            } else {
                RaftError::NotLeader
            };
            let response = self.fetch_error_response(error);
            self.out.push(Action::Respond {
                token: p.token,
                response,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_fetch_request(
        &mut self,
        now: u64,
        token: u64,
        epoch: i32,
        replica: NodeId,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        max_wait_ms: u64,
    ) {
        let error = if replica == self.cfg.node_id {
            Some(RaftError::InconsistentVoter)
        } else if fetch_offset < 0 || last_fetched_epoch < 0 || last_fetched_epoch > epoch {
            Some(RaftError::PositionOutOfRange)
        } else {
            self.leader_only_error(epoch)
        };
        if let Some(error) = error {
            let response = self.fetch_error_response(error);
            self.out.push(Action::Respond { token, response });
            return;
        }
        let voter = self.is_voter_id(replica);
        let validation = self.log.validate(fetch_offset, last_fetched_epoch);
        let log_end = self.log.end();
        let wait = max_wait_ms.min(self.cfg.request_timeout_ms);
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let r = ls
            .replicas
            .entry(replica)
            .or_insert_with(|| ReplicaProgress {
                voter,
                ..ReplicaProgress::default()
            });
        r.last_fetch = Some(now);
        if validation == FetchValidation::Valid {
            r.position = Some(r.position.map_or(fetch_offset, |p| p.max(fetch_offset)));
            if fetch_offset >= log_end {
                r.last_caught_up = Some(now);
            }
        }
        let sent_hw = r.sent_hw;
        if voter {
            ls.begin_pending.remove(&replica);
        }
        match validation {
            FetchValidation::Snapshot { end_offset, epoch } => {
                self.respond_fetch_redirect(token, None, Some((end_offset, epoch)))
            }
            FetchValidation::Diverging { epoch, end_offset } => {
                self.respond_fetch_redirect(token, Some((epoch, end_offset)), None)
            }
            FetchValidation::Valid => {
                if voter {
                    self.maybe_advance_hw(now);
                }
                let nothing_new = fetch_offset >= self.log.end() && sent_hw == self.hw;
                if nothing_new && wait > 0 {
                    if let RoleState::Leader(ls) = &mut self.role {
                        ls.parked.push(ParkedFetch {
                            token,
                            replica,
                            request_epoch: epoch,
                            fetch_offset,
                            deadline: now.saturating_add(wait),
                        });
                    }
                } else {
                    self.answer_fetch(token, replica, fetch_offset);
                }
            }
        }
    }

    fn respond_fetch_redirect(
        &mut self,
        token: u64,
        diverging: Option<(i32, i64)>,
        snapshot_id: Option<(i64, i32)>,
    ) {
        let response = Response::Fetch {
            epoch: self.epoch,
            leader: self.leader,
            high_watermark: self.hw.unwrap_or(-1),
            log_start: self.log.start(),
            entries: Vec::new(),
            diverging,
            snapshot_id,
            error: None,
        };
        self.out.push(Action::Respond { token, response });
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_fetch_snapshot_request(
        &mut self,
        token: u64,
        epoch: i32,
        replica: NodeId,
        end_offset: i64,
        snapshot_epoch: i32,
        position: u64,
        now: u64,
    ) {
        let error = if replica == self.cfg.node_id {
            Some(RaftError::InconsistentVoter)
        } else if end_offset < 0 || snapshot_epoch < 0 {
            Some(RaftError::PositionOutOfRange)
        } else {
            self.leader_only_error(epoch)
        };
        let snapshot = self
            .log
            .snapshot()
            .filter(|s| s.end_offset == end_offset && s.epoch == snapshot_epoch)
            .cloned();
        let error = error.or(match &snapshot {
            None => Some(RaftError::SnapshotNotFound),
            Some(s) if position > s.data.len() as u64 => Some(RaftError::PositionOutOfRange),
            Some(_) => None,
        });
        let (size, data) = match (&snapshot, error) {
            (Some(s), None) => {
                let size = s.data.len();
                let from = usize::try_from(position).unwrap_or(size).min(size);
                let to = from
                    .saturating_add(self.cfg.snapshot_chunk_bytes.max(1))
                    .min(size);
                (size as u64, s.data.slice(from..to))
            }
            _ => (0, Bytes::new()),
        };
        if error.is_none() || error == Some(RaftError::SnapshotNotFound) {
            // A voter pulling a snapshot from us is a live follower.
            if let RoleState::Leader(ls) = &mut self.role {
                if self.voters.binary_search(&replica).is_ok() {
                    if let Some(r) = ls.replicas.get_mut(&replica) {
                        r.last_fetch = Some(now);
                    }
                    ls.begin_pending.remove(&replica);
                }
            }
        }
        let response = Response::FetchSnapshot {
            epoch: self.epoch,
            leader: self.leader,
            end_offset,
            snapshot_epoch,
            size,
            position,
            data,
            error,
        };
        self.out.push(Action::Respond { token, response });
    }

    pub(crate) fn drive_leader(&mut self, now: u64) {
        let quorum = self.quorum();
        let fetch_timeout = self.cfg.fetch_timeout_ms;
        let resend_at = now.saturating_add(self.cfg.request_timeout_ms);
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        if ls
            .check_quorum_deadline(quorum, fetch_timeout)
            .is_some_and(|d| now >= d)
        {
            // Check-quorum: a majority has not fetched within the fetch
            // timeout; we may be partitioned away. Step down (Kafka 4).
            tracing::info!(
                node = self.cfg.node_id,
                epoch = self.epoch,
                "raft: check-quorum failed, resigning"
            );
            self.become_resigned(now, Vec::new());
            return;
        }
        let (expired, kept): (Vec<ParkedFetch>, Vec<ParkedFetch>) = std::mem::take(&mut ls.parked)
            .into_iter()
            .partition(|p| now >= p.deadline);
        ls.parked = kept;
        let mut due = Vec::new();
        for (&v, at) in ls.begin_pending.iter_mut() {
            if *at <= now {
                due.push(v);
                *at = resend_at;
            }
        }
        for p in expired {
            self.answer_fetch(p.token, p.replica, p.fetch_offset);
        }
        let me = self.cfg.node_id;
        for to in due {
            self.out.push(Action::Send {
                to,
                request: Request::BeginQuorumEpoch {
                    epoch: self.epoch,
                    leader: me,
                },
            });
        }
    }

    pub(crate) fn drive_resigned(&mut self, now: u64) {
        let resend_at = now.saturating_add(self.cfg.request_timeout_ms);
        let RoleState::Resigned(rs) = &mut self.role else {
            return;
        };
        if now >= rs.election_deadline {
            if !self.become_prospective(now) {
                if let RoleState::Resigned(rs) = &mut self.role {
                    rs.election_deadline = now.saturating_add(RETRY_BACKOFF_MS);
                }
            }
            return;
        }
        let mut due = Vec::new();
        for (&v, at) in rs.pending.iter_mut() {
            if *at <= now {
                due.push(v);
                *at = resend_at;
            }
        }
        let successors = rs.successors.clone();
        let me = self.cfg.node_id;
        for to in due {
            self.out.push(Action::Send {
                to,
                request: Request::EndQuorumEpoch {
                    epoch: self.epoch,
                    leader: me,
                    preferred_successors: successors.clone(),
                },
            });
        }
    }

    pub(crate) fn on_begin_quorum_epoch_response(
        &mut self,
        now: u64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        error: Option<RaftError>,
    ) {
        if self.observe(now, epoch, leader) != Observed::Same || error.is_some() {
            return;
        }
        if let RoleState::Leader(ls) = &mut self.role {
            ls.begin_pending.remove(&from);
        }
    }

    pub(crate) fn on_end_quorum_epoch_response(
        &mut self,
        now: u64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        error: Option<RaftError>,
    ) {
        if self.observe(now, epoch, leader) != Observed::Same || error.is_some() {
            return;
        }
        if let RoleState::Resigned(rs) = &mut self.role {
            rs.pending.remove(&from);
        }
    }

    pub(crate) fn describe_quorum(&self) -> QuorumDescription {
        let me = self.cfg.node_id;
        let unknown = |id| ReplicaState {
            id,
            log_end: -1,
            last_fetch_ms: None,
            last_caught_up_ms: None,
        };
        let mut voters: Vec<ReplicaState> = Vec::new();
        let mut observers = Vec::new();
        match &self.role {
            RoleState::Leader(ls) => {
                for &v in &self.voters {
                    if v == me {
                        voters.push(ReplicaState {
                            id: me,
                            log_end: self.log.end(),
                            last_fetch_ms: Some(self.now),
                            last_caught_up_ms: Some(self.now),
                        });
                    } else {
                        voters.push(ls.replicas.get(&v).map_or(unknown(v), |r| ReplicaState {
                            id: v,
                            log_end: r.position.unwrap_or(-1),
                            last_fetch_ms: r.last_fetch,
                            last_caught_up_ms: r.last_caught_up,
                        }));
                    }
                }
                for (&id, r) in ls.replicas.iter().filter(|(_, r)| !r.voter) {
                    observers.push(ReplicaState {
                        id,
                        log_end: r.position.unwrap_or(-1),
                        last_fetch_ms: r.last_fetch,
                        last_caught_up_ms: r.last_caught_up,
                    });
                }
            }
            _ => voters = self.voters.iter().map(|&v| unknown(v)).collect(),
        }
        QuorumDescription {
            epoch: self.epoch,
            leader: self.leader,
            high_watermark: self.hw,
            voters,
            observers,
        }
    }
}
