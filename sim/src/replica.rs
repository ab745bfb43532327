//! The simulator's one window onto a node's partition replicas: what each
//! replica is (leader, follower, neither), in which leader epoch, with which
//! watermarks and ISR, and the truncations the node made.
//!
//! The types are the broker's own (`broker::node::view`); the legacy single
//! broker, which has no replica roles, is shown as leading what it holds.

use broker::node::Node;

pub use broker::node::view::{ReplicaRoleView as ReplicaRole, ReplicaView, TruncationEvent};

/// A node as the monitor reads its replicas.
pub trait ReplicaSource {
    /// Every partition replica the node holds, in (topic, partition) order.
    fn replica_views(&self) -> Vec<ReplicaView>;
    /// Truncations since the last call (drained).
    fn take_truncations(&mut self) -> Vec<TruncationEvent>;
}

impl ReplicaSource for Node {
    /// A cluster node reports its replicas' roles itself; the legacy single
    /// broker leads every partition it holds, in epoch 0.
    fn replica_views(&self) -> Vec<ReplicaView> {
        if self.metadata_image().is_some() {
            let mut views = Node::replica_views(self);
            views.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            return views;
        }
        let me = self.config().node_id;
        self.partition_summary()
            .map(|(topic, partition, start, hw, end)| ReplicaView {
                topic: topic.to_string(),
                partition,
                role: ReplicaRole::Leader,
                leader_epoch: 0,
                high_watermark: hw,
                log_end: end,
                log_start: start,
                isr: vec![me],
            })
            .collect()
    }

    fn take_truncations(&mut self) -> Vec<TruncationEvent> {
        Node::take_truncations(self)
    }
}

/// Whether this build's broker replicates partition data. Decides the data
/// topic's default replication factor (`min(3, brokers)` once it does, 1
/// before: a second replica that never receives data would be elected empty).
pub fn broker_replicates() -> bool {
    true
}
