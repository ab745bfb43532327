//! The simulator's one window onto a node's partition replicas: what each
//! replica is (leader, follower, neither), in which leader epoch, with which
//! watermarks and ISR, and the truncations the node made.
//!
//! The broker is growing this view (`broker::node::view::ReplicaView`,
//! `Node::replica_views`, `Node::take_truncations`) together with partition
//! replication. Until it lands, the types are defined here with exactly the
//! broker's fields, and [`ReplicaSource`] for [`Node`] derives the views from
//! what today's node shows (its online logs and its committed metadata
//! image) and has no truncations to report. When the broker side lands, this
//! is the only file that changes:
//! - replace the three type definitions by
//!   `pub use broker::node::view::{ReplicaRole, ReplicaView, TruncationEvent};`
//! - make the impl's bodies `Node::replica_views(self)` and
//!   `Node::take_truncations(self)`;
//! - make [`broker_replicates`] return `true`.
//!
//! (Every other part of the simulator uses only these names.)

use broker::node::Node;

/// What a node's replica of a partition is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaRole {
    Leader,
    Follower,
    /// The node holds the partition but does not serve it.
    None,
}

/// One node's replica of one partition, as that node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub topic: String,
    pub partition: i32,
    pub role: ReplicaRole,
    /// The epoch this node's replica acts in.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub log_end: i64,
    pub log_start: i64,
    /// The ISR as this node knows it (a leader: the maximal ISR it uses for
    /// the high watermark).
    pub isr: Vec<i32>,
}

/// A replica cut its log from `from_end` back to `to` (its high watermark
/// was `high_watermark` when it did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncationEvent {
    pub topic: String,
    pub partition: i32,
    pub from_end: i64,
    pub to: i64,
    pub high_watermark: i64,
}

/// A node as the monitor reads its replicas.
pub trait ReplicaSource {
    /// Every partition replica the node holds, in (topic, partition) order.
    fn replica_views(&self) -> Vec<ReplicaView>;
    /// Truncations since the last call (drained).
    fn take_truncations(&mut self) -> Vec<TruncationEvent>;
}

impl ReplicaSource for Node {
    /// Today's node: every online log, its role from the committed metadata
    /// image (a cluster node leads what the image says it leads; the legacy
    /// single broker leads everything, in epoch 0).
    fn replica_views(&self) -> Vec<ReplicaView> {
        let me = self.config().node_id;
        let image = self.metadata_image();
        self.partition_summary()
            .map(|(topic, partition, start, hw, end)| {
                let placed = image.and_then(|i| i.topics.get(topic)?.partitions.get(&partition));
                let (role, leader_epoch, isr) = match (image, placed) {
                    (None, _) => (ReplicaRole::Leader, 0, vec![me]),
                    (Some(_), None) => (ReplicaRole::None, -1, Vec::new()),
                    (Some(_), Some(p)) => {
                        let role = if p.leader == me {
                            ReplicaRole::Leader
                        } else if p.replicas.contains(&me) {
                            ReplicaRole::Follower
                        } else {
                            ReplicaRole::None
                        };
                        (role, p.leader_epoch, p.isr.clone())
                    }
                };
                ReplicaView {
                    topic: topic.to_string(),
                    partition,
                    role,
                    leader_epoch,
                    high_watermark: hw,
                    log_end: end,
                    log_start: start,
                    isr,
                }
            })
            .collect()
    }

    fn take_truncations(&mut self) -> Vec<TruncationEvent> {
        Vec::new()
    }
}

/// Whether this build's broker replicates partition data. Decides the data
/// topic's default replication factor (`min(3, brokers)` once it does, 1
/// before: a second replica that never receives data would be elected empty).
pub fn broker_replicates() -> bool {
    false
}
