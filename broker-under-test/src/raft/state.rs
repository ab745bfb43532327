//! Roles and the transitions between them, the common handling of epochs
//! and leader hints carried by every message, and the timer loop.
//!
//! Every change of (epoch, voted_for, leader) goes through `set_election`,
//! which emits the `PersistState` (and so arms the hold rule of the outbox)
//! and the `LeaderChanged` notice.

use rand::Rng;

use super::election::Round;
use super::follower::FollowerState;
use super::leader::{LeaderState, ResignedState};
use super::{Action, NodeId, Raft, Role};

/// How soon a failed or refused request is retried.
pub(crate) const RETRY_BACKOFF_MS: u64 = 50;
/// Base of the binary exponential election backoff (Kafka's).
const ELECTION_BACKOFF_BASE_MS: u64 = 50;

pub(crate) enum RoleState {
    /// No leader known in this epoch (maybe voted). Voters campaign when the
    /// deadline passes.
    Unattached {
        election_deadline: u64,
    },
    /// Pre-vote round in the current epoch.
    Prospective(Round),
    /// Vote round in a bumped epoch; after a majority rejected, backs off.
    Candidate {
        round: Round,
        backoff_until: Option<u64>,
    },
    Leader(Box<LeaderState>),
    Follower(FollowerState),
    Resigned(ResignedState),
    /// A non-voter, following a leader or looking for one.
    Observer(FollowerState),
}

impl RoleState {
    pub(crate) fn role(&self) -> Role {
        match self {
            RoleState::Unattached { .. } => Role::Unattached,
            RoleState::Prospective(_) => Role::Prospective,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
            RoleState::Follower(_) => Role::Follower,
            RoleState::Resigned(_) => Role::Resigned,
            RoleState::Observer(_) => Role::Observer,
        }
    }
}

/// What a message's (epoch, leader) meant for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Older than our epoch: the message is stale.
    Stale,
    /// Newer: we moved to its epoch (its content answered an older state).
    Advanced,
    /// Our epoch (we may have learned the leader).
    Same,
}

impl Raft {
    pub(crate) fn is_voter_id(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    pub(crate) fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub(crate) fn other_voters(&self) -> Vec<NodeId> {
        let me = self.cfg.node_id;
        self.voters.iter().copied().filter(|&v| v != me).collect()
    }

    /// Initial role from the recovered state.
    pub(crate) fn start(&mut self, voted_for: Option<NodeId>, leader: Option<NodeId>, now: u64) {
        let mut voted = voted_for.filter(|&v| self.is_voter_id(v));
        let mut leader = leader.filter(|&l| self.is_voter_id(l));
        let mut persist = false;
        // Defensive: a log entry from a newer epoch than the stored state
        // means the state write was lost; never reuse that epoch's vote.
        if self.log.last_epoch() > self.epoch {
            self.epoch = self.log.last_epoch();
            voted = None;
            leader = None;
            persist = true;
        }
        self.voted_for = voted;
        self.leader = leader;
        if persist {
            self.out.persist(self.epoch, voted, leader);
        }
        let me = self.cfg.node_id;
        if !self.is_voter() {
            self.role = RoleState::Observer(FollowerState::new(now, self.cfg.fetch_timeout_ms));
        } else if self.voters.len() == 1 {
            // A single voter is a quorum by itself: lead at once.
            self.become_prospective(now);
        } else if leader == Some(me) {
            // A leader's in-memory state is gone: it cannot resume leading.
            self.become_resigned(now, Vec::new());
        } else if let Some(l) = leader {
            self.become_follower(now, self.epoch, l);
        } else {
            let deadline = self.election_deadline(now);
            self.role = RoleState::Unattached {
                election_deadline: deadline,
            };
        }
    }

    /// Sets (epoch, voted_for, leader), persisting and announcing changes.
    pub(crate) fn set_election(
        &mut self,
        epoch: i32,
        voted_for: Option<NodeId>,
        leader: Option<NodeId>,
    ) {
        let changed = (epoch, voted_for, leader) != (self.epoch, self.voted_for, self.leader);
        let leader_changed = (epoch, leader) != (self.epoch, self.leader);
        self.epoch = epoch;
        self.voted_for = voted_for;
        self.leader = leader;
        if changed {
            self.out.persist(epoch, voted_for, leader);
        }
        if leader_changed {
            tracing::debug!(
                node = self.cfg.node_id,
                epoch,
                ?leader,
                "raft: leader changed"
            );
            self.out.push(Action::LeaderChanged { epoch, leader });
        }
    }

    /// Randomized election timeout: [T, 2T).
    pub(crate) fn election_deadline(&mut self, now: u64) -> u64 {
        let t = self.cfg.election_timeout_ms;
        let jitter = if t > 0 { self.rng.gen_range(0..t) } else { 0 };
        now.saturating_add(t).saturating_add(jitter)
    }

    /// Binary exponential backoff after a lost election, capped.
    pub(crate) fn election_backoff(&mut self, now: u64) -> u64 {
        self.election_retries = self.election_retries.saturating_add(1);
        let shift = self.election_retries.min(10);
        let cap = ELECTION_BACKOFF_BASE_MS
            .saturating_mul(1u64 << shift)
            .min(self.cfg.election_backoff_max_ms);
        now.saturating_add(self.rng.gen_range(0..=cap))
    }

    /// Replaces the role; cleans up after the old one.
    fn replace_role(&mut self, now: u64, new: RoleState) {
        let old = std::mem::replace(&mut self.role, new);
        if let RoleState::Leader(ls) = old {
            // Parked fetches are answered with the new state (an error).
            self.fail_parked(ls.parked, now);
        }
    }

    pub(crate) fn become_unattached(
        &mut self,
        now: u64,
        epoch: i32,
        voted_for: Option<NodeId>,
        deadline: u64,
    ) {
        let role = if self.is_voter() {
            RoleState::Unattached {
                election_deadline: deadline,
            }
        } else {
            RoleState::Observer(FollowerState::new(now, self.cfg.fetch_timeout_ms))
        };
        let voted_for = if self.is_voter() { voted_for } else { None };
        self.set_election(epoch, voted_for, None);
        self.replace_role(now, role);
    }

    /// Follows `leader` in `epoch` (keeping our vote if the epoch is ours).
    pub(crate) fn become_follower(&mut self, now: u64, epoch: i32, leader: NodeId) {
        let voted = if epoch == self.epoch {
            self.voted_for
        } else {
            None
        };
        let fs = FollowerState::new(now, self.cfg.fetch_timeout_ms);
        let role = if self.is_voter() {
            RoleState::Follower(fs)
        } else {
            RoleState::Observer(fs)
        };
        let voted = if self.is_voter() { voted } else { None };
        self.election_retries = 0;
        self.set_election(epoch, voted, Some(leader));
        self.replace_role(now, role);
    }

    /// Starts a pre-vote round in the current epoch (voters only; not while a
    /// snapshot is being installed). Returns false if it could not.
    pub(crate) fn become_prospective(&mut self, now: u64) -> bool {
        if !self.is_voter() || self.installing.is_some() {
            return false;
        }
        let me = self.cfg.node_id;
        if self.leader == Some(me) {
            // Resigned → Prospective: we no longer lead this epoch.
            self.set_election(self.epoch, self.voted_for, None);
        }
        let deadline = self.election_deadline(now);
        let round = Round::new(me, &self.other_voters(), now, deadline);
        self.replace_role(now, RoleState::Prospective(round));
        if self.round_won() {
            self.become_candidate(now);
        }
        true
    }

    /// Bumps the epoch and votes for itself.
    pub(crate) fn become_candidate(&mut self, now: u64) {
        let Some(epoch) = self.epoch.checked_add(1) else {
            return;
        };
        let me = self.cfg.node_id;
        self.set_election(epoch, Some(me), None);
        let deadline = self.election_deadline(now);
        let round = Round::new(me, &self.other_voters(), now, deadline);
        self.replace_role(
            now,
            RoleState::Candidate {
                round,
                backoff_until: None,
            },
        );
        if self.round_won() {
            self.become_leader(now);
        }
    }

    /// Lost a pre-vote round: back to the known leader, or wait and retry.
    pub(crate) fn lose_prevote(&mut self, now: u64) {
        let me = self.cfg.node_id;
        match self.leader {
            Some(l) if l != me => self.become_follower(now, self.epoch, l),
            _ => {
                let deadline = self.election_backoff(now);
                self.become_unattached(now, self.epoch, self.voted_for, deadline);
            }
        }
    }

    pub(crate) fn become_resigned(&mut self, now: u64, successors: Vec<NodeId>) {
        let me = self.cfg.node_id;
        self.set_election(self.epoch, self.voted_for, Some(me));
        let deadline = self.election_deadline(now);
        let rs = ResignedState::new(successors, &self.other_voters(), now, deadline);
        self.replace_role(now, RoleState::Resigned(rs));
    }

    /// Common handling of the (epoch, leader) any message carries: step up
    /// to a newer epoch, learn the leader of ours.
    pub(crate) fn observe(&mut self, now: u64, epoch: i32, leader: Option<NodeId>) -> Observed {
        let me = self.cfg.node_id;
        let leader = leader.filter(|&l| l != me && self.is_voter_id(l));
        if epoch < self.epoch {
            return Observed::Stale;
        }
        if epoch > self.epoch {
            match leader {
                Some(l) => self.become_follower(now, epoch, l),
                None => {
                    let deadline = self.election_deadline(now);
                    self.become_unattached(now, epoch, None, deadline);
                }
            }
            return Observed::Advanced;
        }
        if let Some(l) = leader {
            if self.leader.is_none() {
                self.become_follower(now, epoch, l);
            }
        }
        Observed::Same
    }

    /// Runs timers and sends whatever is due; repeats while the role changes
    /// (a transition may make the new role's first step due at once).
    pub(crate) fn drive(&mut self, now: u64) {
        for _ in 0..8 {
            let before = std::mem::discriminant(&self.role);
            match &self.role {
                RoleState::Unattached { .. } => self.drive_unattached(now),
                RoleState::Prospective(_) => self.drive_prospective(now),
                RoleState::Candidate { .. } => self.drive_candidate(now),
                RoleState::Leader(_) => self.drive_leader(now),
                RoleState::Resigned(_) => self.drive_resigned(now),
                RoleState::Follower(_) | RoleState::Observer(_) => self.drive_follower(now),
            }
            if std::mem::discriminant(&self.role) == before {
                break;
            }
        }
    }

    fn drive_unattached(&mut self, now: u64) {
        let RoleState::Unattached { election_deadline } = self.role else {
            return;
        };
        if now >= election_deadline && self.is_voter() && !self.become_prospective(now) {
            // Installing a snapshot: look again shortly.
            if let RoleState::Unattached { election_deadline } = &mut self.role {
                *election_deadline = now.saturating_add(RETRY_BACKOFF_MS);
            }
        }
    }

    /// The earliest time `tick` has something to do.
    pub(crate) fn deadline(&self) -> Option<u64> {
        match &self.role {
            RoleState::Unattached { election_deadline } => {
                self.is_voter().then_some(*election_deadline)
            }
            RoleState::Prospective(round) => Some(round.next_deadline()),
            RoleState::Candidate {
                round,
                backoff_until,
            } => Some(backoff_until.unwrap_or_else(|| round.next_deadline())),
            RoleState::Leader(ls) => ls.next_deadline(self),
            RoleState::Resigned(rs) => Some(rs.next_deadline()),
            RoleState::Follower(fs) | RoleState::Observer(fs) => self.follower_deadline(fs),
        }
    }

    /// A request to `to` got no reply: retry it soon.
    pub(crate) fn request_failed(&mut self, now: u64, to: NodeId) {
        let soon = now.saturating_add(RETRY_BACKOFF_MS);
        match &mut self.role {
            RoleState::Prospective(round) | RoleState::Candidate { round, .. } => {
                round.retry_soon(to, soon)
            }
            RoleState::Leader(ls) => {
                if let Some(at) = ls.begin_pending.get_mut(&to) {
                    *at = (*at).min(soon);
                }
            }
            RoleState::Resigned(rs) => rs.retry_soon(to, soon),
            RoleState::Follower(fs) | RoleState::Observer(fs) => {
                if fs.in_flight.is_some_and(|(t, _)| t == to) {
                    fs.in_flight = None;
                    fs.next_fetch_at = soon;
                    if self.leader.is_none() {
                        fs.search = fs.search.wrapping_add(1);
                    }
                }
            }
            RoleState::Unattached { .. } => {}
        }
    }
}
