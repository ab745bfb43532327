//! The broker node: one broker process as a state machine.

use crate::config::BrokerConfig;
use crate::seam::{Input, Now, Output};

/// One broker process. See [`crate::seam`] for the protocol it speaks with its driver.
pub struct Node {
    config: BrokerConfig,
    seed: u64,
}

impl Node {
    /// A new node. `seed` feeds every random choice the node makes.
    pub fn new(config: BrokerConfig, seed: u64) -> Node {
        Node { config, seed }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Deliver one input; outputs are appended to `out`.
    pub fn step(&mut self, _now: Now, _input: Input, _out: &mut Vec<Output>) {
        let _ = self.seed;
    }
}
