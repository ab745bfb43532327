//! Broker-side invariants, watched after every step of every broker: a
//! partition's high watermark and log start offset never go back, across
//! restarts too (what was exposed to consumers must stay exposed).

use std::collections::BTreeMap;

use broker::node::Node;
use serde::{Deserialize, Serialize};

/// A broken broker-side invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `high-watermark-regression` or `log-start-regression`.
    pub kind: String,
    pub at_nanos: u64,
    pub explanation: String,
}

#[derive(Debug, Default)]
pub struct Monitor {
    /// (node index, topic, partition) -> (highest log start, highest high watermark) seen.
    seen: BTreeMap<(u32, String, i32), (i64, i64)>,
    pub violations: Vec<Violation>,
}

/// At most this many violations are kept (the first ones tell the story).
const MAX_VIOLATIONS: usize = 100;

impl Monitor {
    pub fn observe(&mut self, at_nanos: u64, node_index: u32, node: &Node) {
        for (topic, partition, start, hw, _leo) in node.partition_summary() {
            let key = (node_index, topic.to_string(), partition);
            let entry = self.seen.entry(key).or_insert((start, hw));
            if hw < entry.1 && self.violations.len() < MAX_VIOLATIONS {
                self.violations.push(Violation {
                    kind: "high-watermark-regression".into(),
                    at_nanos,
                    explanation: format!(
                        "node {node_index} {topic}-{partition}: high watermark went back from {} to {hw}",
                        entry.1
                    ),
                });
            }
            if start < entry.0 && self.violations.len() < MAX_VIOLATIONS {
                self.violations.push(Violation {
                    kind: "log-start-regression".into(),
                    at_nanos,
                    explanation: format!(
                        "node {node_index} {topic}-{partition}: log start offset went back from {} to {start}",
                        entry.0
                    ),
                });
            }
            *entry = (entry.0.max(start), entry.1.max(hw));
        }
    }

    /// A node whose disk was wiped starts from nothing: forget what it exposed.
    pub fn forget_node(&mut self, node_index: u32) {
        self.seen.retain(|(n, _, _), _| *n != node_index);
    }
}
