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
        let offsets = node
            .partition_summary()
            .map(|(t, p, start, hw, _)| (t, p, start, hw));
        self.observe_offsets(at_nanos, node_index, offsets);
    }

    /// Check (topic, partition, log start, high watermark) readings of one node.
    pub fn observe_offsets<'a>(
        &mut self,
        at_nanos: u64,
        node_index: u32,
        offsets: impl Iterator<Item = (&'a str, i32, i64, i64)>,
    ) {
        for (topic, partition, start, hw) in offsets {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_offsets_pass() {
        let mut m = Monitor::default();
        for (t, hw) in [(1, 0), (2, 5), (3, 5), (4, 9)] {
            m.observe_offsets(t, 0, [("t", 0, 0, hw), ("t", 1, 0, hw * 2)].into_iter());
        }
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn high_watermark_going_back_is_caught() {
        let mut m = Monitor::default();
        m.observe_offsets(1_000_000, 0, [("t", 2, 0, 40)].into_iter());
        m.observe_offsets(2_000_000, 0, [("t", 2, 0, 31)].into_iter());
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.violations[0].kind, "high-watermark-regression");
        assert!(m.violations[0].explanation.contains("t-2"));
        assert!(m.violations[0].explanation.contains("from 40 to 31"));
    }

    #[test]
    fn log_start_going_back_is_caught_and_wipes_are_forgiven() {
        let mut m = Monitor::default();
        m.observe_offsets(1, 0, [("t", 0, 10, 50)].into_iter());
        m.observe_offsets(2, 0, [("t", 0, 3, 50)].into_iter());
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.violations[0].kind, "log-start-regression");
        // A wiped node starts from nothing: no violation after forgetting it.
        m.forget_node(0);
        m.observe_offsets(3, 0, [("t", 0, 0, 0)].into_iter());
        assert_eq!(m.violations.len(), 1);
    }
}
