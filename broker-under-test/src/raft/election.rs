//! Elections: the vote rules (pre-vote and standard) and the Prospective
//! and Candidate rounds.
//!
//! A voter grants a standard vote iff the candidate's (last epoch, end
//! offset) is at least its own and it has not voted for another in that
//! epoch nor knows a leader of it; the grant is persisted (and, by the hold
//! rule, answered only once durable). A pre-vote changes nothing durable and
//! is refused by a voter that heard from a live leader within the fetch
//! timeout.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{Observed, RoleState};
use super::{Action, NodeId, Raft, RaftError, Request, Response};

/// One pre-vote or vote round.
pub(crate) struct Round {
    granted: BTreeSet<NodeId>,
    rejected: BTreeSet<NodeId>,
    /// Voters not yet answered → when to (re)send the request.
    pending: BTreeMap<NodeId, u64>,
    /// When the round is given up.
    deadline: u64,
}

impl Round {
    pub(crate) fn new(me: NodeId, others: &[NodeId], now: u64, deadline: u64) -> Round {
        Round {
            granted: BTreeSet::from([me]),
            rejected: BTreeSet::new(),
            pending: others.iter().map(|&v| (v, now)).collect(),
            deadline,
        }
    }

    pub(crate) fn next_deadline(&self) -> u64 {
        self.pending.values().copied().fold(self.deadline, u64::min)
    }

    pub(crate) fn retry_soon(&mut self, to: NodeId, at: u64) {
        if let Some(t) = self.pending.get_mut(&to) {
            *t = (*t).min(at);
        }
    }

    fn record(&mut self, from: NodeId, granted: bool) {
        if self.pending.remove(&from).is_none() {
            return; // not asked, or already answered (a duplicate)
        }
        if granted {
            self.granted.insert(from);
        } else {
            self.rejected.insert(from);
        }
    }

    /// Requests due now; marks them as sent.
    fn due(&mut self, now: u64, resend_at: u64) -> Vec<NodeId> {
        let mut due = Vec::new();
        for (&v, at) in self.pending.iter_mut() {
            if *at <= now {
                due.push(v);
                *at = resend_at;
            }
        }
        due
    }
}

impl Raft {
    /// Whether the current round has a majority of grants.
    pub(crate) fn round_won(&self) -> bool {
        let q = self.quorum();
        match &self.role {
            RoleState::Prospective(r) | RoleState::Candidate { round: r, .. } => {
                r.granted.len() >= q
            }
            _ => false,
        }
    }

    fn round_lost(&self) -> bool {
        let n = self.voters.len();
        let q = self.quorum();
        match &self.role {
            RoleState::Prospective(r) | RoleState::Candidate { round: r, .. } => {
                r.rejected.len() > n - q
            }
            _ => false,
        }
    }

    fn respond_vote(
        &mut self,
        token: u64,
        granted: bool,
        pre_vote: bool,
        error: Option<RaftError>,
    ) {
        let response = Response::Vote {
            epoch: self.epoch,
            leader: self.leader,
            granted,
            pre_vote,
            error,
        };
        self.out.push(Action::Respond { token, response });
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_vote_request(
        &mut self,
        now: u64,
        token: u64,
        epoch: i32,
        candidate: NodeId,
        last_epoch: i32,
        last_end: i64,
        pre_vote: bool,
    ) {
        let me = self.cfg.node_id;
        // A standard candidate bumped its epoch past its last entry's; a
        // prospective did not.
        let illegal_epoch = if pre_vote {
            last_epoch > epoch
        } else {
            last_epoch >= epoch
        };
        let error = if candidate == me {
            Some(RaftError::InconsistentVoter)
        } else if last_end < 0 || last_epoch < 0 || illegal_epoch {
            Some(RaftError::PositionOutOfRange)
        } else if !self.is_voter_id(candidate) {
            Some(RaftError::InconsistentVoter)
        } else if epoch < self.epoch {
            Some(RaftError::FencedLeaderEpoch)
        } else {
            None
        };
        if error.is_some() || !self.is_voter() {
            // Observers never vote.
            self.respond_vote(token, false, pre_vote, error);
            return;
        }
        if epoch > self.epoch {
            let deadline = self.election_deadline(now);
            self.become_unattached(now, epoch, None, deadline);
        }
        let up_to_date = (last_epoch, last_end) >= (self.log.last_epoch(), self.log.end());
        let voted = self.voted_for;
        let fetch_timeout = self.cfg.fetch_timeout_ms;
        let granted = match &self.role {
            RoleState::Unattached { .. } => {
                if pre_vote {
                    up_to_date
                } else {
                    voted == Some(candidate) || (voted.is_none() && up_to_date)
                }
            }
            RoleState::Prospective(_) => {
                if pre_vote {
                    up_to_date
                } else {
                    voted == Some(candidate)
                        || (voted.is_none() && self.leader.is_none() && up_to_date)
                }
            }
            RoleState::Candidate { .. } => pre_vote && up_to_date,
            RoleState::Follower(fs) => {
                let leader_silent = fs.leader_resigned
                    || fs
                        .last_contact
                        .is_none_or(|t| now >= t.saturating_add(fetch_timeout));
                pre_vote && up_to_date && leader_silent
            }
            RoleState::Leader(_) | RoleState::Resigned(_) | RoleState::Observer(_) => false,
        };
        if granted && !pre_vote && voted != Some(candidate) {
            let deadline = self.election_deadline(now);
            self.become_unattached(now, self.epoch, Some(candidate), deadline);
        }
        self.respond_vote(token, granted, pre_vote, None);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_vote_response(
        &mut self,
        now: u64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        granted: bool,
        pre_vote: bool,
        error: Option<RaftError>,
    ) {
        if !self.is_voter_id(from) || self.observe(now, epoch, leader) != Observed::Same {
            return;
        }
        if error.is_some() {
            return; // the round's timers retry or give up
        }
        match &mut self.role {
            RoleState::Prospective(round) if pre_vote => {
                round.record(from, granted);
                if self.round_won() {
                    self.become_candidate(now);
                } else if self.round_lost() {
                    self.lose_prevote(now);
                }
            }
            RoleState::Candidate {
                round,
                backoff_until,
            } if !pre_vote => {
                round.record(from, granted);
                if backoff_until.is_none() {
                    if self.round_won() {
                        self.become_leader(now);
                    } else if self.round_lost() {
                        // Gridlocked: back off instead of waiting out the timeout.
                        let until = self.election_backoff(now);
                        if let RoleState::Candidate { backoff_until, .. } = &mut self.role {
                            *backoff_until = Some(until);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn vote_request(&self, pre_vote: bool) -> Request {
        Request::Vote {
            epoch: self.epoch,
            candidate: self.cfg.node_id,
            last_epoch: self.log.last_epoch(),
            last_end_offset: self.log.end(),
            pre_vote,
        }
    }

    pub(crate) fn drive_prospective(&mut self, now: u64) {
        let resend_at = now.saturating_add(self.cfg.request_timeout_ms);
        let RoleState::Prospective(round) = &mut self.role else {
            return;
        };
        if now >= round.deadline {
            self.lose_prevote(now);
            return;
        }
        let due = round.due(now, resend_at);
        let request = self.vote_request(true);
        for to in due {
            self.out.push(Action::Send {
                to,
                request: request.clone(),
            });
        }
    }

    pub(crate) fn drive_candidate(&mut self, now: u64) {
        let resend_at = now.saturating_add(self.cfg.request_timeout_ms);
        let RoleState::Candidate {
            round,
            backoff_until,
        } = &mut self.role
        else {
            return;
        };
        let over = match backoff_until {
            Some(until) => now >= *until,
            None => now >= round.deadline,
        };
        if over {
            self.become_prospective(now);
            return;
        }
        if backoff_until.is_some() {
            return;
        }
        let due = round.due(now, resend_at);
        let request = self.vote_request(false);
        for to in due {
            self.out.push(Action::Send {
                to,
                request: request.clone(),
            });
        }
    }
}
