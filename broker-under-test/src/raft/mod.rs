//! A KRaft-style quorum core: leader election and replication of opaque
//! entries among a fixed set of voters (plus any number of observers), as a
//! deterministic, sans-IO state machine.
//!
//! The model is Kafka's `KafkaRaftClient` (KIP-595) with pre-vote (KIP-996)
//! and check-quorum, as in Kafka 4:
//!
//! * Roles: `Unattached` → `Prospective` (pre-vote, same epoch) → `Candidate`
//!   (epoch bumped, voted for itself) → `Leader`; `Follower` of a known
//!   leader; `Resigned` (a leader that stepped down: on `resign`, on failed
//!   check-quorum, or on restart from a state that says it led); `Observer`
//!   (any node that is not a voter: it only fetches).
//! * Replication is pull-based: followers send `Fetch(fetch_offset,
//!   last_fetched_epoch)`; the leader answers with entries, a divergence
//!   point, or a snapshot id. A fetch with nothing new is parked (long poll).
//! * The high watermark (commit point) is the largest offset held durably by
//!   a majority of voters whose previous entry is from the leader's epoch.
//!
//! Nothing here does I/O, reads a clock or draws ambient randomness: time is
//! the `now_ms` the caller passes in, randomness comes from a ChaCha8 stream
//! seeded at construction, and every effect is an [`Action`] the caller
//! drains with [`Raft::poll_action`] after every call.
//!
//! # Caller contract (ordering rules)
//!
//! 1. Drain `poll_action` after every call and execute the actions **in the
//!    order given**. Log actions (`AppendLog`, `TruncateLog`,
//!    `InstallSnapshot`, `DeleteLogPrefix`) must be applied to the caller's
//!    log in that order.
//! 2. `PersistState { version, .. }`: write the whole triple durably, then
//!    call `on_state_persisted(version)`. Complete the writes in version
//!    order (an older write must never land over a newer one: the durable
//!    state may not go back). Acknowledging version `v` means "the state of
//!    version `v` (or a later one) is durable". Versions restart at 1 in each
//!    incarnation.
//! 3. **Hold rule.** While any `PersistState` is unacknowledged, every `Send`
//!    and `Respond` produced after it is held inside the core and released, in
//!    order, once `on_state_persisted` covers the version that was current when
//!    it was produced. So no peer ever sees a vote, a candidacy or a
//!    leadership claim that a crash could make the node forget. Other actions
//!    are never held.
//! 4. `on_log_durable(end)`: every entry below `end` in the log *as the caller
//!    holds it after executing all actions polled so far* is on stable
//!    storage. Stale values are harmless (the core clamps to its own log).
//!    A `TruncateLog` takes effect at once (a crash after it must not bring
//!    the cut entries back together with later appends).
//! 5. `InstallSnapshot`: store it, replace the log with an empty one starting
//!    at its `end_offset`, then call `on_snapshot_installed(end_offset)`.
//!    Until then the node neither fetches nor campaigns, and ignores fetch
//!    answers.
//! 6. `snapshot_taken`: store the snapshot durably *before* calling it; the
//!    `DeleteLogPrefix` that follows may then be applied lazily. On restart
//!    pass the snapshot and the log entries from its end.
//! 7. `Respond { token }` answers the request given that token; a long-poll
//!    fetch is answered later (at most `request_timeout_ms` after arrival),
//!    and a request that arrives while state is being persisted is answered
//!    after the write. Every token is answered exactly once while the core
//!    lives.
//! 8. Call `tick` at (or after) `next_deadline()`; calling it more often is
//!    harmless. `now_ms` must not go backwards (a smaller value is treated as
//!    the largest seen so far).
//! 9. **Transport.** Deliver at most one response per `Send`, only to the
//!    incarnation that sent it, and none after `request_timeout_ms` (what a
//!    correlation-id transport with request timeouts does, like Kafka's
//!    `NetworkClient`); call `on_request_failed(to)` when giving up on a
//!    request (optional: the core also retries on its own timers).
//!    Requests may be lost, duplicated, delayed and reordered. Responses
//!    carry no request id, so the core defends itself against late or
//!    duplicated ones anyway (it never applies an answer that contradicts
//!    what it confirmed), but such answers can keep extra fetches in flight.
//!
//! # Pre-vote epoch
//!
//! As in Kafka 4, a pre-vote request (`pre_vote: true`) carries the
//! prospective's *current* epoch (not the bumped one) and is granted without
//! any durable change; a standard vote carries the candidate's bumped epoch.
//! A receiver at a lower epoch moves up to the request's epoch for both kinds
//! (the sender legitimately reached that epoch), and a voter refuses a
//! pre-vote while it hears from a live leader (within `fetch_timeout_ms`).
//!
//! # Files
//!
//! `mod.rs` types and API; `state.rs` roles, transitions, timers; `election.rs`
//! votes; `leader.rs` the leader and resigned states; `follower.rs` followers
//! and observers; `log.rs` the in-memory log and epoch history; `outbox.rs`
//! the action queue and hold rule; `tests.rs` scripted tests; `sim_tests.rs`
//! the randomized cluster simulation.

mod election;
mod follower;
mod leader;
mod log;
mod outbox;
mod state;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use self::log::RaftLog;
use self::outbox::Outbox;
use self::state::RoleState;

/// A node's id (Kafka's `node.id`).
pub type NodeId = i32;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An entry proposed by the caller.
    Data,
    /// Written by a new leader at the start of its epoch; its data is
    /// [`encode_leader_change`].
    LeaderChange,
}

/// One replicated log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: i64,
    pub epoch: i32,
    pub kind: EntryKind,
    pub data: Bytes,
}

/// A snapshot of the caller's state machine covering offsets below
/// `end_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub end_offset: i64,
    /// Epoch of the entry at `end_offset - 1`.
    pub epoch: i32,
    pub data: Bytes,
}

/// Static configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    pub node_id: NodeId,
    /// The voter set. If `node_id` is not in it, the node is an observer.
    pub voters: Vec<NodeId>,
    pub election_timeout_ms: u64,
    pub election_backoff_max_ms: u64,
    pub fetch_timeout_ms: u64,
    pub fetch_max_wait_ms: u64,
    pub request_timeout_ms: u64,
    /// Most entries in one Fetch response.
    pub max_fetch_entries: usize,
    /// Most bytes in one FetchSnapshot response.
    pub snapshot_chunk_bytes: usize,
}

impl RaftConfig {
    /// Kafka's defaults: 1 s election timeout, 1 s max backoff, 2 s fetch
    /// timeout, 500 ms fetch wait, 2 s request timeout; 500 entries per
    /// fetch, 64 KiB snapshot chunks.
    pub fn new(node_id: NodeId, voters: Vec<NodeId>) -> Self {
        RaftConfig {
            node_id,
            voters,
            election_timeout_ms: 1000,
            election_backoff_max_ms: 1000,
            fetch_timeout_ms: 2000,
            fetch_max_wait_ms: 500,
            request_timeout_ms: 2000,
            max_fetch_entries: 500,
            snapshot_chunk_bytes: 64 * 1024,
        }
    }
}

/// What the caller read back from stable storage at start (all durable).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    pub epoch: i32,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub snapshot: Option<Snapshot>,
    /// Contiguous from the snapshot's end (or 0).
    pub entries: Vec<Entry>,
}

/// The node's role in its current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unattached,
    Prospective,
    Candidate,
    Leader,
    Follower,
    Resigned,
    /// Not a voter (whether or not it currently knows a leader).
    Observer,
}

/// Errors carried in responses (and returned by `propose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftError {
    /// The request's epoch is older than ours.
    FencedLeaderEpoch,
    /// We are not the leader (the response names the leader we know).
    NotLeader,
    /// The request is from a newer epoch than ours (leader-only requests).
    UnknownLeaderEpoch,
    /// The sender is not a voter where one is required (or claims our id).
    InconsistentVoter,
    /// Negative or nonsensical offsets/epochs/positions.
    PositionOutOfRange,
    /// We do not hold the requested snapshot.
    SnapshotNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `epoch`: for a standard vote, the candidate's (bumped) epoch; for a
    /// pre-vote, the prospective's current epoch (see the module docs).
    Vote {
        epoch: i32,
        candidate: NodeId,
        last_epoch: i32,
        last_end_offset: i64,
        pre_vote: bool,
    },
    BeginQuorumEpoch {
        epoch: i32,
        leader: NodeId,
    },
    EndQuorumEpoch {
        epoch: i32,
        leader: NodeId,
        preferred_successors: Vec<NodeId>,
    },
    Fetch {
        epoch: i32,
        replica: NodeId,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        max_wait_ms: u64,
    },
    FetchSnapshot {
        epoch: i32,
        replica: NodeId,
        end_offset: i64,
        snapshot_epoch: i32,
        position: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Vote {
        epoch: i32,
        leader: Option<NodeId>,
        granted: bool,
        /// Echo of the request's flag.
        pre_vote: bool,
        error: Option<RaftError>,
    },
    BeginQuorumEpoch {
        epoch: i32,
        leader: Option<NodeId>,
        error: Option<RaftError>,
    },
    EndQuorumEpoch {
        epoch: i32,
        leader: Option<NodeId>,
        error: Option<RaftError>,
    },
    /// `high_watermark` is -1 while the leader does not know it. When the
    /// fetch is valid and `fetch_offset - 1` is still in the leader's log,
    /// `entries` starts with that entry (already held by the follower) so the
    /// follower can check the answer belongs to its current position.
    Fetch {
        epoch: i32,
        leader: Option<NodeId>,
        high_watermark: i64,
        log_start: i64,
        entries: Vec<Entry>,
        /// (epoch, end offset of that epoch in the leader's log).
        diverging: Option<(i32, i64)>,
        /// (end offset, epoch) of the snapshot to fetch.
        snapshot_id: Option<(i64, i32)>,
        error: Option<RaftError>,
    },
    FetchSnapshot {
        epoch: i32,
        leader: Option<NodeId>,
        end_offset: i64,
        snapshot_epoch: i32,
        size: u64,
        position: u64,
        data: Bytes,
        error: Option<RaftError>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make (epoch, voted_for, leader) durable, then call
    /// `on_state_persisted(version)`.
    PersistState {
        version: u64,
        epoch: i32,
        voted_for: Option<NodeId>,
        leader: Option<NodeId>,
    },
    /// Append to the log (in order); call `on_log_durable(end)` once they are
    /// on stable storage.
    AppendLog { entries: Vec<Entry> },
    /// Remove every entry at offset >= `from` (a divergent suffix). Never
    /// below the high watermark the node knows.
    TruncateLog { from: i64 },
    /// A complete snapshot fetched from the leader: store it durably, replace
    /// the log with an empty one starting at its end_offset, then call
    /// `on_snapshot_installed(end_offset)`.
    InstallSnapshot { snapshot: Snapshot },
    /// Entries below `before` are covered by a snapshot the caller took: it
    /// may delete them from disk.
    DeleteLogPrefix { before: i64 },
    /// Send a request to a peer (the reply comes back via `handle_response`).
    Send { to: NodeId, request: Request },
    /// Answer the inbound request that was given `token`.
    Respond { token: u64, response: Response },
    /// The high watermark advanced: entries below it are committed.
    Committed { high_watermark: i64 },
    /// The known leader or epoch changed.
    LeaderChanged { epoch: i32, leader: Option<NodeId> },
}

/// One replica as the leader sees it (for DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub id: NodeId,
    /// Last valid fetch offset (the leader's own log end for itself); -1 if
    /// unknown.
    pub log_end: i64,
    pub last_fetch_ms: Option<u64>,
    pub last_caught_up_ms: Option<u64>,
}

/// The quorum as this node sees it. Replica details are only known on the
/// leader; elsewhere they are -1/None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    pub epoch: i32,
    pub leader: Option<NodeId>,
    pub high_watermark: Option<i64>,
    pub voters: Vec<ReplicaState>,
    pub observers: Vec<ReplicaState>,
}

/// The data of a `LeaderChange` entry: the leader id then the voter ids, each
/// a big-endian i32, preceded by the voter count (big-endian i32).
pub fn encode_leader_change(leader: NodeId, voters: &[NodeId]) -> Bytes {
    let mut buf = Vec::with_capacity(8 + 4 * voters.len());
    buf.extend_from_slice(&leader.to_be_bytes());
    let count = i32::try_from(voters.len()).unwrap_or(i32::MAX);
    buf.extend_from_slice(&count.to_be_bytes());
    for v in voters {
        buf.extend_from_slice(&v.to_be_bytes());
    }
    Bytes::from(buf)
}

/// The quorum core of one node. See the module docs for the caller contract.
pub struct Raft {
    cfg: RaftConfig,
    /// Sorted, deduplicated.
    voters: Vec<NodeId>,
    rng: ChaCha8Rng,
    /// Largest `now_ms` seen.
    now: u64,
    epoch: i32,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    role: RoleState,
    log: RaftLog,
    /// Known this incarnation; never decreases.
    hw: Option<i64>,
    out: Outbox,
    /// End offset of a snapshot handed to the caller with `InstallSnapshot`
    /// and not yet acknowledged.
    installing: Option<i64>,
    /// Consecutive lost elections, for the backoff.
    election_retries: u32,
    /// (epoch, offset): our log below `offset` was shown to equal the log
    /// of that epoch's leader (which is unique, so this holds all epoch).
    matched: (i32, i64),
}

impl Raft {
    /// Starts a node from what it recovered from stable storage.
    pub fn new(config: RaftConfig, recovered: Recovered, now_ms: u64, seed: u64) -> Raft {
        let mut voters = config.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        let (log, dropped_from) = RaftLog::recover(recovered.snapshot, recovered.entries);
        let mut raft = Raft {
            cfg: config,
            voters,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: now_ms,
            epoch: recovered.epoch.max(0),
            voted_for: None,
            leader: None,
            role: RoleState::Unattached {
                election_deadline: now_ms,
            },
            log,
            hw: None,
            out: Outbox::default(),
            installing: None,
            election_retries: 0,
            matched: (-1, 0),
        };
        if let Some(from) = dropped_from {
            // The caller handed us entries that do not fit; make its log
            // agree with ours.
            raft.out.push(Action::TruncateLog { from });
        }
        raft.start(recovered.voted_for, recovered.leader, now_ms);
        raft.drive(now_ms);
        raft
    }

    /// Runs timers. Call at `next_deadline()`, or any time.
    pub fn tick(&mut self, now_ms: u64) {
        let now = self.advance(now_ms);
        self.drive(now);
    }

    /// When `tick` next has something to do (None: only an input can cause
    /// progress).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadline()
    }

    /// An inbound request; its answer is a `Respond { token }`, now or later.
    pub fn handle_request(&mut self, now_ms: u64, token: u64, request: Request) {
        let now = self.advance(now_ms);
        match request {
            Request::Vote {
                epoch,
                candidate,
                last_epoch,
                last_end_offset,
                pre_vote,
            } => self.on_vote_request(
                now,
                token,
                epoch,
                candidate,
                last_epoch,
                last_end_offset,
                pre_vote,
            ),
            Request::BeginQuorumEpoch { epoch, leader } => {
                self.on_begin_quorum_epoch(now, token, epoch, leader)
            }
            Request::EndQuorumEpoch {
                epoch,
                leader,
                preferred_successors,
            } => self.on_end_quorum_epoch(now, token, epoch, leader, &preferred_successors),
            Request::Fetch {
                epoch,
                replica,
                fetch_offset,
                last_fetched_epoch,
                max_wait_ms,
            } => self.on_fetch_request(
                now,
                token,
                epoch,
                replica,
                fetch_offset,
                last_fetched_epoch,
                max_wait_ms,
            ),
            Request::FetchSnapshot {
                epoch,
                replica,
                end_offset,
                snapshot_epoch,
                position,
            } => self.on_fetch_snapshot_request(
                token,
                epoch,
                replica,
                end_offset,
                snapshot_epoch,
                position,
                now,
            ),
        }
        self.drive(now);
    }

    /// A reply from `from` to a request this node sent.
    pub fn handle_response(&mut self, now_ms: u64, from: NodeId, response: Response) {
        let now = self.advance(now_ms);
        // Only voters are ever asked anything: answers from elsewhere are
        // not ours to trust.
        if from != self.cfg.node_id && self.is_voter_id(from) {
            match response {
                Response::Vote {
                    epoch,
                    leader,
                    granted,
                    pre_vote,
                    error,
                } => self.on_vote_response(now, from, epoch, leader, granted, pre_vote, error),
                Response::BeginQuorumEpoch {
                    epoch,
                    leader,
                    error,
                } => self.on_begin_quorum_epoch_response(now, from, epoch, leader, error),
                Response::EndQuorumEpoch {
                    epoch,
                    leader,
                    error,
                } => self.on_end_quorum_epoch_response(now, from, epoch, leader, error),
                Response::Fetch { .. } => self.on_fetch_response(now, from, response),
                Response::FetchSnapshot { .. } => {
                    self.on_fetch_snapshot_response(now, from, response)
                }
            }
        }
        self.drive(now);
    }

    /// A request sent to `to` failed (connection lost, timed out).
    pub fn on_request_failed(&mut self, now_ms: u64, to: NodeId) {
        let now = self.advance(now_ms);
        self.request_failed(now, to);
        self.drive(now);
    }

    /// Appends entries (leader only). Returns the offset of the last one.
    pub fn propose(&mut self, now_ms: u64, data: Vec<Bytes>) -> Result<i64, RaftError> {
        let now = self.advance(now_ms);
        let result = self.leader_propose(now, data);
        self.drive(now);
        result
    }

    /// The `PersistState` of `version` (or a later one) is durable.
    pub fn on_state_persisted(&mut self, now_ms: u64, version: u64) {
        let now = self.advance(now_ms);
        self.out.acked(version);
        self.drive(now);
    }

    /// Every entry below `end_offset` is durable (see the module docs).
    pub fn on_log_durable(&mut self, now_ms: u64, end_offset: i64) {
        let now = self.advance(now_ms);
        self.log.set_durable(end_offset);
        if matches!(self.role, RoleState::Leader(_)) {
            self.maybe_advance_hw(now);
        }
        self.drive(now);
    }

    /// The snapshot of an `InstallSnapshot` is stored and the log replaced.
    pub fn on_snapshot_installed(&mut self, now_ms: u64, end_offset: i64) {
        let now = self.advance(now_ms);
        self.snapshot_installed(now, end_offset);
        self.drive(now);
    }

    /// The caller durably stored a snapshot of its state machine at
    /// `snapshot.end_offset <= high watermark`: entries below it are dropped
    /// from memory and the caller may delete them (`DeleteLogPrefix`).
    /// Ignored unless it is newer than the current snapshot, committed, and
    /// its epoch matches the log.
    pub fn snapshot_taken(&mut self, now_ms: u64, snapshot: Snapshot) {
        let now = self.advance(now_ms);
        let end = snapshot.end_offset;
        let usable = self.installing.is_none()
            && end > self.log.start()
            && self.hw.is_some_and(|hw| end <= hw)
            && self.log.epoch_at(end - 1) == Some(snapshot.epoch);
        if usable {
            self.log.compact(snapshot);
            self.out.push(Action::DeleteLogPrefix { before: end });
        }
        self.drive(now);
    }

    /// Orderly shutdown: a leader sends EndQuorumEpoch to the other voters
    /// (preferred successors by log end) and stops leading.
    pub fn resign(&mut self, now_ms: u64) {
        let now = self.advance(now_ms);
        if let RoleState::Leader(ls) = &self.role {
            let successors = ls.successors_by_position();
            self.become_resigned(now, successors);
        }
        self.drive(now);
    }

    /// The next effect to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop()
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    pub fn config(&self) -> &RaftConfig {
        &self.cfg
    }

    pub fn role(&self) -> Role {
        self.role.role()
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }

    /// None until known in this incarnation.
    pub fn high_watermark(&self) -> Option<i64> {
        self.hw
    }

    /// First offset held in the log (the snapshot's end, or 0).
    pub fn log_start(&self) -> i64 {
        self.log.start()
    }

    pub fn log_end(&self) -> i64 {
        self.log.end()
    }

    pub fn durable_end(&self) -> i64 {
        self.log.durable_end()
    }

    /// Epoch of the last entry (or of the snapshot; 0 for an empty log).
    pub fn last_epoch(&self) -> i32 {
        self.log.last_epoch()
    }

    /// (end offset, epoch) of the latest snapshot.
    pub fn snapshot_id(&self) -> Option<(i64, i32)> {
        self.log.snapshot().map(|s| (s.end_offset, s.epoch))
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.log.snapshot()
    }

    pub fn entry(&self, offset: i64) -> Option<&Entry> {
        self.log.entry(offset)
    }

    /// Up to `max` entries from `from` (empty if `from` is outside the log).
    pub fn entries(&self, from: i64, max: usize) -> &[Entry] {
        self.log.slice(from, max)
    }

    pub fn is_voter(&self) -> bool {
        self.voters.binary_search(&self.cfg.node_id).is_ok()
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// True while `Send`/`Respond` actions are held for a state write.
    pub fn is_persisting(&self) -> bool {
        self.out.is_pending()
    }

    /// The quorum as this node sees it (replica details only on the leader).
    pub fn describe(&self) -> QuorumDescription {
        self.describe_quorum()
    }

    fn advance(&mut self, now_ms: u64) -> u64 {
        self.now = self.now.max(now_ms);
        self.now
    }
}
