//! Handing out producer ids (InitProducerId) from blocks: the controller's
//! (AllocateProducerIds) in a cluster, or blocks the node reserves on its
//! own disk when it runs alone. Like Kafka's RPCProducerIdManager, the next
//! block is asked for once 90% of the current one is used, so that an
//! InitProducerId rarely waits. Pure state; the node does the asking.

use std::collections::VecDeque;

/// A block of ids: `[first, first + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBlock {
    pub first: i64,
    pub len: i64,
}

impl IdBlock {
    pub fn end(&self) -> i64 {
        self.first.saturating_add(self.len)
    }
}

#[derive(Debug, Default)]
pub struct ProducerIdManager {
    /// The next id to hand out and the end of its block.
    current: Option<(i64, i64)>,
    /// Blocks received while the current one still had ids.
    ready: VecDeque<IdBlock>,
    /// A block request is on its way.
    requested: bool,
}

impl ProducerIdManager {
    /// The next id, if one is at hand.
    pub fn next_id(&mut self) -> Option<i64> {
        loop {
            match self.current {
                Some((next, end)) if next < end => {
                    self.current = Some((next + 1, end));
                    return Some(next);
                }
                _ => {
                    let block = self.ready.pop_front()?;
                    self.current = Some((block.first, block.end()));
                }
            }
        }
    }

    /// Whether the node should ask for a block now: none asked yet, none
    /// waiting, and the current one is 90% used (or there is none).
    pub fn wants_block(&self) -> bool {
        if self.requested || !self.ready.is_empty() {
            return false;
        }
        match self.current {
            None => true,
            Some((next, end)) => {
                let left = end - next;
                // Blocks are 1000 ids: ask when fewer than a tenth are left.
                left * 10 < crate::metadata::controller::PRODUCER_ID_BLOCK_SIZE as i64
            }
        }
    }

    pub fn set_requested(&mut self) {
        self.requested = true;
    }

    /// The block asked for arrived.
    pub fn on_block(&mut self, block: IdBlock) {
        self.requested = false;
        if block.len > 0 {
            self.ready.push_back(block);
        }
    }

    /// The request failed; the next [`Self::wants_block`] asks again.
    pub fn on_request_failed(&mut self) {
        self.requested = false;
    }

    /// Forget every block (a node stopping, or losing the right to use them).
    pub fn reset(&mut self) {
        *self = ProducerIdManager::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_in_order_from_blocks_and_the_next_block_is_asked_for_early() {
        let mut m = ProducerIdManager::default();
        assert!(m.wants_block());
        assert_eq!(m.next_id(), None);
        m.set_requested();
        assert!(!m.wants_block(), "one request at a time");
        m.on_block(IdBlock {
            first: 1000,
            len: 1000,
        });
        for want in 1000..1900 {
            assert_eq!(m.next_id(), Some(want));
        }
        assert!(!m.wants_block(), "100 left of 1000");
        assert_eq!(m.next_id(), Some(1900));
        assert!(m.wants_block(), "99 left: ask for the next block");
        m.set_requested();
        m.on_block(IdBlock {
            first: 5000,
            len: 1000,
        });
        for want in 1901..2000 {
            assert_eq!(m.next_id(), Some(want));
        }
        assert_eq!(m.next_id(), Some(5000), "then the next block");
    }

    #[test]
    fn a_failed_request_is_asked_again() {
        let mut m = ProducerIdManager::default();
        m.set_requested();
        m.on_request_failed();
        assert!(m.wants_block());
        m.on_block(IdBlock { first: 0, len: 0 });
        assert_eq!(m.next_id(), None, "an empty block gives nothing");
    }
}
