//! What an observer (the simulator's monitor, tests, `replay`) may see of a
//! node's metadata quorum and metadata image. Plain data, no behaviour.

use crate::seam::NodeId;

/// A node's role in the metadata quorum (KRaft's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuorumRole {
    /// A voter that knows no leader for its epoch and has not voted.
    Unattached,
    /// A voter asking for pre-votes (KIP-996) before it bumps the epoch.
    Prospective,
    /// A voter that bumped the epoch and asks for votes.
    Candidate,
    /// The elected leader of its epoch.
    Leader,
    /// A voter that follows the leader of its epoch.
    Follower,
    /// A leader that is stepping down (check-quorum or shutdown).
    Resigned,
    /// A non-voter (a broker-only node) replicating the metadata log.
    Observer,
}

/// A snapshot of a node's quorum state, taken after any step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub node_id: NodeId,
    pub is_voter: bool,
    pub role: QuorumRole,
    /// The node's current epoch (Kafka's leader epoch of `__cluster_metadata`).
    pub epoch: i32,
    /// The leader the node knows for `epoch`.
    pub leader: Option<NodeId>,
    /// The candidate this node voted for in `epoch`.
    pub voted_for: Option<NodeId>,
    /// The committed offset (exclusive) this node knows; `None` until it
    /// has learned one in this incarnation.
    pub high_watermark: Option<i64>,
    /// First offset held in the log (everything below is in the snapshot).
    pub log_start: i64,
    /// End of the log (exclusive), written or not.
    pub log_end: i64,
    /// End of the log (exclusive) known to be on stable storage.
    pub durable_end: i64,
    /// The newest snapshot: (end offset, epoch of the last entry it covers).
    pub snapshot: Option<(i64, i32)>,
}

/// One entry of the metadata log, as the monitor compares them across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryDigest {
    pub epoch: i32,
    /// CRC-32C of the entry's bytes.
    pub crc: u32,
}

/// What a node's replica of a partition is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaRoleView {
    Leader,
    Follower,
    /// Not acting for this partition (no leader, log not open, broker not serving yet).
    None,
}

/// One local partition replica, for monitors and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub topic: String,
    pub partition: i32,
    pub role: ReplicaRoleView,
    /// The leader epoch the replica acts in (-1 when not acting).
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub log_end: i64,
    pub log_start: i64,
    /// A leader's maximal ISR (the one its high watermark counts); empty otherwise.
    pub isr: Vec<i32>,
}

/// A follower cut the suffix `[to, from_end)` of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncationEvent {
    pub topic: String,
    pub partition: i32,
    pub from_end: i64,
    pub to: i64,
    /// The replica's high watermark when it truncated.
    pub high_watermark: i64,
}
