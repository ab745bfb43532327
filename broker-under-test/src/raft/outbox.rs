//! The action queue, with the hold rule: while a `PersistState` is not yet
//! acknowledged, `Send` and `Respond` actions produced after it wait here and
//! are released in order once the state they depend on is durable. This is
//! what makes a granted vote (or a candidacy, or a leadership claim) visible
//! to peers only after it survives a crash.

use std::collections::VecDeque;

use super::{Action, NodeId};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    ready: VecDeque<Action>,
    /// (state version current when produced, action), in production order.
    held: VecDeque<(u64, Action)>,
    /// Version of the last `PersistState` emitted.
    emitted: u64,
    /// Highest version acknowledged durable.
    acked: u64,
}

impl Outbox {
    /// Emits a `PersistState` with the next version.
    pub(crate) fn persist(
        &mut self,
        epoch: i32,
        voted_for: Option<NodeId>,
        leader: Option<NodeId>,
    ) {
        self.emitted += 1;
        self.ready.push_back(Action::PersistState {
            version: self.emitted,
            epoch,
            voted_for,
            leader,
        });
    }

    pub(crate) fn push(&mut self, action: Action) {
        let holdable = matches!(action, Action::Send { .. } | Action::Respond { .. });
        if holdable && self.is_pending() {
            self.held.push_back((self.emitted, action));
        } else {
            self.ready.push_back(action);
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.emitted > self.acked
    }

    /// The state of `version` (or later) is durable: release what waited for it.
    pub(crate) fn acked(&mut self, version: u64) {
        let version = version.min(self.emitted);
        if version <= self.acked {
            return;
        }
        self.acked = version;
        while self.held.front().is_some_and(|(v, _)| *v <= self.acked) {
            if let Some((_, action)) = self.held.pop_front() {
                self.ready.push_back(action);
            }
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Action> {
        self.ready.pop_front()
    }
}
