//! Followers and observers: the fetch loop, applying Fetch answers
//! (entries, divergence, snapshot redirect), pulling snapshots in chunks,
//! BeginQuorumEpoch / EndQuorumEpoch, and the fetch timeout.
//!
//! Fetch answers carry no request id, so a late or duplicated answer to an
//! older fetch can arrive after the log has moved on. Three rules keep that
//! harmless:
//! * entries are appended only after the entry before them is shown to match
//!   (the leader sends the entry at `fetch_offset - 1` first), and any
//!   overlapping entry that does not match voids the whole answer;
//! * `matched` is the prefix known to equal the leader's log; a truncation
//!   below it (or below the high watermark) is refused as stale, since a
//!   genuine divergence never cuts a matching entry;
//! * a snapshot is installed only when it is ahead of the log or the log
//!   provably differs at the snapshot's last offset.
//!
//! A follower learns the high watermark as min(leader's, `matched`).

use bytes::Bytes;

use super::state::{Observed, RoleState, RETRY_BACKOFF_MS};
use super::{Action, Entry, NodeId, Raft, RaftError, Request, Response, Snapshot};

/// A snapshot being pulled from the leader.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFetch {
    end_offset: i64,
    epoch: i32,
    size: Option<u64>,
    buf: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct FollowerState {
    /// When the leader is given up on (no successful answer since).
    pub(crate) timeout_at: u64,
    /// Last time the leader answered or announced itself.
    pub(crate) last_contact: Option<u64>,
    /// (to, sent at) of the outstanding Fetch / FetchSnapshot.
    pub(crate) in_flight: Option<(NodeId, u64)>,
    pub(crate) next_fetch_at: u64,
    pub(crate) snapshot: Option<SnapshotFetch>,
    /// The leader said it stepped down (EndQuorumEpoch, NotLeader).
    pub(crate) leader_resigned: bool,
    /// Observers without a leader: which voter to ask next.
    pub(crate) search: usize,
}

impl FollowerState {
    pub(crate) fn new(now: u64, fetch_timeout: u64) -> Self {
        FollowerState {
            timeout_at: now.saturating_add(fetch_timeout),
            last_contact: None,
            in_flight: None,
            next_fetch_at: now,
            snapshot: None,
            leader_resigned: false,
            search: 0,
        }
    }
}

/// Kafka's strict exponential backoff for preferred successors: the first
/// campaigns at once, later ones wait longer, others wait the maximum.
fn successor_backoff(position: Option<usize>, total: usize, max: u64) -> u64 {
    match position {
        Some(0) => 0,
        Some(p) if p < total => {
            let shift = u32::try_from(total - 1).unwrap_or(u32::MAX);
            let base = max.checked_shr(shift).unwrap_or(0);
            let factor = 1u64
                .checked_shl(u32::try_from(p - 1).unwrap_or(64))
                .unwrap_or(u64::MAX);
            base.saturating_mul(factor).min(max)
        }
        _ => max,
    }
}

impl Raft {
    fn follower_state(&mut self) -> Option<&mut FollowerState> {
        match &mut self.role {
            RoleState::Follower(fs) | RoleState::Observer(fs) => Some(fs),
            _ => None,
        }
    }

    /// The prefix of our log known to equal the log of this epoch's leader:
    /// what it confirmed in this epoch, and anything committed or
    /// snapshotted (which every leader holds).
    pub(crate) fn matched(&self) -> i64 {
        let base = self.hw.unwrap_or(0).max(self.log.start());
        if self.matched.0 == self.epoch {
            base.max(self.matched.1)
        } else {
            base
        }
    }

    fn set_matched(&mut self, offset: i64) {
        if self.matched.0 == self.epoch {
            self.matched.1 = self.matched.1.max(offset);
        } else {
            self.matched = (self.epoch, offset);
        }
    }

    /// Whom to fetch from: the leader, or (observer) the next voter to ask.
    fn fetch_target(&self, fs: &FollowerState) -> Option<NodeId> {
        if let Some(l) = self.leader {
            return Some(l);
        }
        if self.is_voter() || self.voters.is_empty() {
            return None;
        }
        self.voters.get(fs.search % self.voters.len()).copied()
    }

    pub(crate) fn follower_deadline(&self, fs: &FollowerState) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut consider = |t: u64| d = Some(d.map_or(t, |x| x.min(t)));
        if self.leader.is_some() && self.installing.is_none() {
            consider(fs.timeout_at);
        }
        match fs.in_flight {
            Some((_, sent)) => consider(sent.saturating_add(self.cfg.request_timeout_ms)),
            None => {
                let blocked = self.installing.is_some()
                    || (fs.snapshot.is_none() && self.log.durable_end() < self.log.end());
                if !blocked && self.fetch_target(fs).is_some() {
                    consider(fs.next_fetch_at);
                }
            }
        }
        d
    }

    pub(crate) fn drive_follower(&mut self, now: u64) {
        let voter = self.is_voter();
        let request_timeout = self.cfg.request_timeout_ms;
        let has_leader = self.leader.is_some();
        let installing = self.installing.is_some();
        let Some(fs) = self.follower_state() else {
            return;
        };
        if has_leader && now >= fs.timeout_at {
            if voter {
                if !installing {
                    self.become_prospective(now);
                    return;
                }
            } else {
                // Observer: forget the silent leader and look for one.
                fs.in_flight = None;
                fs.snapshot = None;
                fs.search = fs.search.wrapping_add(1);
                self.set_election(self.epoch, None, None);
                return self.drive_follower(now);
            }
        }
        if let Some((_, sent)) = fs.in_flight {
            if now >= sent.saturating_add(request_timeout) {
                fs.in_flight = None;
                if !has_leader {
                    fs.search = fs.search.wrapping_add(1);
                }
            }
        }
        if fs.in_flight.is_some() || now < fs.next_fetch_at || installing {
            return;
        }
        let (to, request) = {
            let fs = match &self.role {
                RoleState::Follower(fs) | RoleState::Observer(fs) => fs,
                _ => return,
            };
            let Some(to) = self.fetch_target(fs) else {
                return;
            };
            let request = match &fs.snapshot {
                Some(sf) => Request::FetchSnapshot {
                    epoch: self.epoch,
                    replica: self.cfg.node_id,
                    end_offset: sf.end_offset,
                    snapshot_epoch: sf.epoch,
                    position: sf.buf.len() as u64,
                },
                None => {
                    if self.log.durable_end() < self.log.end() {
                        // Fetch only from a durable position: the fetch offset
                        // is what the leader counts for the high watermark.
                        return;
                    }
                    Request::Fetch {
                        epoch: self.epoch,
                        replica: self.cfg.node_id,
                        fetch_offset: self.log.end(),
                        last_fetched_epoch: self.log.last_epoch(),
                        max_wait_ms: self.cfg.fetch_max_wait_ms,
                    }
                }
            };
            (to, request)
        };
        if let Some(fs) = self.follower_state() {
            fs.in_flight = Some((to, now));
        }
        self.out.push(Action::Send { to, request });
    }

    /// Common start of handling an answer from `from` to our fetch: epoch,
    /// leader hint, error. Returns true if the answer is from our leader and
    /// should be applied.
    fn accept_fetch_answer(
        &mut self,
        now: u64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        error: Option<RaftError>,
    ) -> bool {
        if self.observe(now, epoch, leader) != Observed::Same {
            return false;
        }
        let leader_now = self.leader;
        let fetch_timeout = self.cfg.fetch_timeout_ms;
        let installing = self.installing.is_some();
        let Some(fs) = self.follower_state() else {
            return false;
        };
        if fs.in_flight.is_some_and(|(to, _)| to == from) {
            fs.in_flight = None;
        }
        if installing {
            // Our log is being replaced: nothing to apply an answer to.
            return false;
        }
        if let Some(error) = error {
            if leader_now == Some(from) && error == RaftError::NotLeader {
                // It no longer leads this epoch and never will again.
                fs.leader_resigned = true;
            }
            if leader_now.is_none() {
                fs.search = fs.search.wrapping_add(1);
            }
            if error == RaftError::SnapshotNotFound || error == RaftError::PositionOutOfRange {
                fs.snapshot = None;
            }
            fs.next_fetch_at = now.saturating_add(RETRY_BACKOFF_MS);
            return false;
        }
        if leader_now != Some(from) {
            return false;
        }
        fs.last_contact = Some(now);
        if !fs.leader_resigned {
            fs.timeout_at = now.saturating_add(fetch_timeout);
        }
        fs.next_fetch_at = now;
        true
    }

    pub(crate) fn on_fetch_response(&mut self, now: u64, from: NodeId, response: Response) {
        let Response::Fetch {
            epoch,
            leader,
            high_watermark,
            log_start,
            entries,
            diverging,
            snapshot_id,
            error,
        } = response
        else {
            return;
        };
        if !self.accept_fetch_answer(now, from, epoch, leader, error) {
            return;
        }
        if let Some((end_offset, snapshot_epoch)) = snapshot_id {
            self.follower_start_snapshot(now, end_offset, snapshot_epoch);
        } else if let Some((div_epoch, div_end)) = diverging {
            self.follower_truncate(div_epoch, div_end);
        } else {
            self.follower_append(entries, log_start, high_watermark);
        }
    }

    fn follower_start_snapshot(&mut self, now: u64, end_offset: i64, epoch: i32) {
        if end_offset <= 0 || epoch < 0 || epoch > self.epoch {
            return;
        }
        // Needed only if the snapshot is ahead of our log or our log provably
        // differs at its last offset (then nothing from there on matches).
        let needed = if end_offset > self.log.end() {
            true
        } else if end_offset < self.log.start() {
            false
        } else {
            self.log.epoch_at(end_offset - 1) != Some(epoch)
        };
        let hw = self.hw.unwrap_or(0);
        let Some(fs) = self.follower_state() else {
            return;
        };
        if needed && end_offset >= hw {
            fs.snapshot = Some(SnapshotFetch {
                end_offset,
                epoch,
                size: None,
                buf: Vec::new(),
            });
        } else {
            fs.next_fetch_at = now.saturating_add(RETRY_BACKOFF_MS);
        }
    }

    fn follower_truncate(&mut self, epoch: i32, end: i64) {
        if epoch < 0 || end < 0 {
            return;
        }
        let point = self.log.truncation_point(epoch, end);
        if !matches!(self.role, RoleState::Follower(_) | RoleState::Observer(_)) {
            return;
        }
        let floor = self.matched();
        if point < floor {
            // A genuine divergence never cuts a matching entry: stale answer.
            return;
        }
        if point < self.log.end() {
            self.log.truncate(point);
            self.out.push(Action::TruncateLog { from: point });
        }
    }

    fn follower_append(&mut self, entries: Vec<Entry>, leader_start: i64, leader_hw: i64) {
        let end = self.log.end();
        let mut last_epoch = self.log.last_epoch();
        let mut verified: Option<i64> = None;
        let mut new: Vec<Entry> = Vec::new();
        let mut expected: Option<i64> = None;
        for e in entries {
            if expected.is_some_and(|x| x != e.offset) {
                break; // not contiguous: use what came before
            }
            expected = e.offset.checked_add(1);
            if e.epoch < 0 || e.epoch > self.epoch || e.offset < 0 {
                return; // nonsense
            }
            if e.offset < end {
                match self.log.epoch_at(e.offset) {
                    Some(ep) if ep == e.epoch => verified = Some(e.offset + 1),
                    Some(_) => return, // answers an older position of ours
                    None => {}         // below our snapshot
                }
            } else {
                let next = end.saturating_add(new.len() as i64);
                if e.offset != next || e.epoch < last_epoch {
                    break;
                }
                last_epoch = e.epoch;
                new.push(e);
            }
        }
        if !matches!(self.role, RoleState::Follower(_) | RoleState::Observer(_)) {
            return;
        }
        let matched_before = self.matched();
        if !new.is_empty() {
            // The new entries continue our log only if it matches the
            // leader's up to `end`: shown by the overlap, or trivially at the
            // start, at our snapshot, or where the leader had no entry to show.
            let continues = verified == Some(end)
                || matched_before >= end
                || end == 0
                || end == self.log.start()
                || end == leader_start;
            if !continues {
                return;
            }
            self.log.append(&new);
            let end = self.log.end();
            self.set_matched(end);
            self.out.push(Action::AppendLog { entries: new });
        } else if let Some(v) = verified {
            self.set_matched(v);
        }
        let matched = self.matched();
        if leader_hw >= 0 {
            let hw = leader_hw.min(matched);
            if self.hw.is_none_or(|old| hw > old) {
                self.hw = Some(hw);
                self.out.push(Action::Committed { high_watermark: hw });
            }
        }
    }

    pub(crate) fn on_fetch_snapshot_response(
        &mut self,
        now: u64,
        from: NodeId,
        response: Response,
    ) {
        let Response::FetchSnapshot {
            epoch,
            leader,
            end_offset,
            snapshot_epoch,
            size,
            position,
            data,
            error,
        } = response
        else {
            return;
        };
        if !self.accept_fetch_answer(now, from, epoch, leader, error) {
            return;
        }
        let fs = match &mut self.role {
            RoleState::Follower(fs) | RoleState::Observer(fs) => fs,
            _ => return,
        };
        let Some(sf) = fs.snapshot.as_mut() else {
            return;
        };
        if end_offset != sf.end_offset
            || snapshot_epoch != sf.epoch
            || position != sf.buf.len() as u64
        {
            return; // a stale or duplicated chunk
        }
        let new_len = (sf.buf.len() as u64).saturating_add(data.len() as u64);
        let consistent = sf.size.is_none_or(|s| s == size) && new_len <= size;
        if !consistent || (data.is_empty() && new_len < size) {
            fs.snapshot = None; // start over from a fresh Fetch
            return;
        }
        sf.size = Some(size);
        sf.buf.extend_from_slice(&data);
        if new_len == size {
            if let Some(sf) = fs.snapshot.take() {
                let snapshot = Snapshot {
                    end_offset: sf.end_offset,
                    epoch: sf.epoch,
                    data: Bytes::from(sf.buf),
                };
                self.installing = Some(snapshot.end_offset);
                // Our in-memory log follows the caller's, which is replaced
                // now; fetching and campaigning wait for the acknowledgement.
                self.log.install(snapshot.clone());
                self.out.push(Action::InstallSnapshot { snapshot });
            }
        }
    }

    pub(crate) fn snapshot_installed(&mut self, now: u64, end_offset: i64) {
        if self.installing != Some(end_offset) {
            return;
        }
        self.installing = None;
        self.set_matched(end_offset);
        // A leader's snapshot only covers committed entries.
        if self.hw.is_none_or(|hw| end_offset > hw) {
            self.hw = Some(end_offset);
            self.out.push(Action::Committed {
                high_watermark: end_offset,
            });
        }
        if let Some(fs) = self.follower_state() {
            fs.next_fetch_at = now;
        }
    }

    pub(crate) fn on_begin_quorum_epoch(
        &mut self,
        now: u64,
        token: u64,
        epoch: i32,
        leader: NodeId,
    ) {
        let error = if leader == self.cfg.node_id || !self.is_voter_id(leader) {
            Some(RaftError::InconsistentVoter)
        } else if epoch < self.epoch {
            Some(RaftError::FencedLeaderEpoch)
        } else {
            None
        };
        if error.is_none() {
            self.observe(now, epoch, Some(leader));
            if self.leader == Some(leader) {
                if matches!(self.role, RoleState::Prospective(_)) {
                    // The leader we gave up on is alive after all.
                    self.become_follower(now, epoch, leader);
                }
                let fetch_timeout = self.cfg.fetch_timeout_ms;
                if let Some(fs) = self.follower_state() {
                    fs.last_contact = Some(now);
                    if !fs.leader_resigned {
                        fs.timeout_at = now.saturating_add(fetch_timeout);
                    }
                }
            }
        }
        let response = Response::BeginQuorumEpoch {
            epoch: self.epoch,
            leader: self.leader,
            error,
        };
        self.out.push(Action::Respond { token, response });
    }

    pub(crate) fn on_end_quorum_epoch(
        &mut self,
        now: u64,
        token: u64,
        epoch: i32,
        leader: NodeId,
        successors: &[NodeId],
    ) {
        let error = if leader == self.cfg.node_id || !self.is_voter_id(leader) {
            Some(RaftError::InconsistentVoter)
        } else if epoch < self.epoch {
            Some(RaftError::FencedLeaderEpoch)
        } else {
            None
        };
        if error.is_none() {
            self.observe(now, epoch, Some(leader));
            if self.leader == Some(leader) {
                let me = self.cfg.node_id;
                let position = successors.iter().position(|&s| s == me);
                let delay =
                    successor_backoff(position, successors.len(), self.cfg.election_backoff_max_ms);
                if let RoleState::Follower(fs) = &mut self.role {
                    fs.leader_resigned = true;
                    fs.timeout_at = fs.timeout_at.min(now.saturating_add(delay));
                }
            }
        }
        let response = Response::EndQuorumEpoch {
            epoch: self.epoch,
            leader: self.leader,
            error,
        };
        self.out.push(Action::Respond { token, response });
    }
}
