//! The in-memory log: entries since the latest snapshot, the epoch history
//! derived from them, the durable end, and the snapshot bytes to serve.
//!
//! Offsets are `i64` and come from peers, so every lookup is checked; nothing
//! here indexes with an unchecked peer-supplied value.

use super::{Entry, Snapshot};

/// The leader's verdict on a follower's (fetch_offset, last_fetched_epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchValidation {
    Valid,
    /// (largest epoch <= last_fetched_epoch, end offset of that epoch here).
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
    /// The follower must fetch this snapshot (end offset, epoch).
    Snapshot {
        end_offset: i64,
        epoch: i32,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// First offset held (the snapshot's end, or 0).
    start: i64,
    /// Epoch of the entry at `start - 1` (the snapshot's epoch), 0 if none.
    start_epoch: i32,
    /// `entries[i].offset == start + i`.
    entries: Vec<Entry>,
    /// (epoch, first offset) for each epoch present in `entries`, ascending.
    epochs: Vec<(i32, i64)>,
    durable_end: i64,
    snapshot: Option<Snapshot>,
}

impl RaftLog {
    /// Builds the log from recovered state. Skips entries the snapshot covers,
    /// then keeps the longest well-formed prefix of the rest (contiguous from
    /// the snapshot's end, epochs non-decreasing and not below the
    /// snapshot's); returns the offset from which recovered entries were
    /// dropped, if any.
    pub(crate) fn recover(
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
    ) -> (RaftLog, Option<i64>) {
        let snapshot = snapshot.filter(|s| s.end_offset > 0 && s.epoch >= 0);
        let (start, start_epoch) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.end_offset, s.epoch));
        let mut log = RaftLog {
            start,
            start_epoch,
            entries: Vec::new(),
            epochs: Vec::new(),
            durable_end: start,
            snapshot,
        };
        let mut total = entries.len();
        let mut kept = 0;
        for e in entries {
            if e.offset < log.start {
                total -= 1; // covered by the snapshot (prefix not yet deleted)
                continue;
            }
            if e.offset != log.end() || e.epoch < log.last_epoch() {
                break;
            }
            log.push(e);
            kept += 1;
        }
        log.durable_end = log.end();
        let dropped = (kept < total).then(|| log.end());
        (log, dropped)
    }

    pub(crate) fn start(&self) -> i64 {
        self.start
    }

    pub(crate) fn end(&self) -> i64 {
        self.start + self.entries.len() as i64
    }

    pub(crate) fn durable_end(&self) -> i64 {
        self.durable_end
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Epoch of the last entry, or of the snapshot, or 0.
    pub(crate) fn last_epoch(&self) -> i32 {
        self.entries.last().map_or(self.start_epoch, |e| e.epoch)
    }

    fn index(&self, offset: i64) -> Option<usize> {
        if offset < self.start {
            return None;
        }
        let i = usize::try_from(offset - self.start).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    pub(crate) fn entry(&self, offset: i64) -> Option<&Entry> {
        self.index(offset).and_then(|i| self.entries.get(i))
    }

    /// Epoch of the entry at `offset`, including the snapshot boundary
    /// (`start - 1`); None when unknown.
    pub(crate) fn epoch_at(&self, offset: i64) -> Option<i32> {
        if offset == self.start - 1 && self.start > 0 {
            return Some(self.start_epoch);
        }
        self.entry(offset).map(|e| e.epoch)
    }

    /// Up to `max` entries from `from`.
    pub(crate) fn slice(&self, from: i64, max: usize) -> &[Entry] {
        match self.index(from) {
            Some(i) => {
                let end = i.saturating_add(max).min(self.entries.len());
                self.entries.get(i..end).unwrap_or(&[])
            }
            None => &[],
        }
    }

    fn push(&mut self, e: Entry) {
        if self.epochs.last().is_none_or(|&(ep, _)| e.epoch > ep) {
            self.epochs.push((e.epoch, e.offset));
        }
        self.entries.push(e);
    }

    /// Appends entries already checked to continue the log (contiguous,
    /// epochs non-decreasing).
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            debug_assert_eq!(e.offset, self.end());
            self.push(e.clone());
        }
    }

    /// Removes every entry at `from` and above.
    pub(crate) fn truncate(&mut self, from: i64) {
        if let Some(i) = self.index(from) {
            self.entries.truncate(i);
            while self.epochs.last().is_some_and(|&(_, s)| s >= from) {
                self.epochs.pop();
            }
        }
        self.durable_end = self.durable_end.min(self.end());
    }

    pub(crate) fn set_durable(&mut self, end: i64) {
        self.durable_end = self.durable_end.max(end.min(self.end()));
    }

    /// Replaces everything with an empty log starting at the snapshot's end.
    pub(crate) fn install(&mut self, snapshot: Snapshot) {
        self.start = snapshot.end_offset;
        self.start_epoch = snapshot.epoch;
        self.entries.clear();
        self.epochs.clear();
        self.durable_end = self.start;
        self.snapshot = Some(snapshot);
    }

    /// Drops entries below the snapshot's end (which must be in the log).
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let Some(i) = self
            .index(snapshot.end_offset)
            .or_else(|| (snapshot.end_offset == self.end()).then_some(self.entries.len()))
        else {
            return;
        };
        self.entries.drain(..i);
        self.start = snapshot.end_offset;
        self.start_epoch = snapshot.epoch;
        self.durable_end = self.durable_end.max(self.start);
        self.snapshot = Some(snapshot);
        // Rebuild: compaction is rare and the history is small.
        self.epochs.clear();
        let entries = std::mem::take(&mut self.entries);
        for e in entries {
            self.push(e);
        }
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch <= `epoch` in the log
    /// and the offset where it ends (the next epoch's start, or the log end).
    /// Below every epoch held: the snapshot boundary (start_epoch, start).
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let pos = self.epochs.iter().rposition(|&(ep, _)| ep <= epoch);
        match pos {
            Some(i) => {
                let end = self
                    .epochs
                    .get(i + 1)
                    .map_or(self.end(), |&(_, start)| start);
                (self.epochs[i].0, end)
            }
            None => (self.start_epoch, self.start),
        }
    }

    /// Kafka's `validateOffsetAndEpoch`, on the leader.
    pub(crate) fn validate(&self, offset: i64, epoch: i32) -> FetchValidation {
        if self.start == 0 && offset == 0 {
            return FetchValidation::Valid;
        }
        if self.start > 0
            && (offset < self.start
                || (offset == self.start && epoch != self.start_epoch)
                || epoch < self.start_epoch)
        {
            if let Some(s) = &self.snapshot {
                return FetchValidation::Snapshot {
                    end_offset: s.end_offset,
                    epoch: s.epoch,
                };
            }
        }
        let (e, end) = self.end_offset_for_epoch(epoch);
        if e != epoch || end < offset {
            FetchValidation::Diverging {
                epoch: e,
                end_offset: end,
            }
        } else {
            FetchValidation::Valid
        }
    }

    /// Kafka's `truncateToEndOffset`, on a follower told it diverges at
    /// (epoch, end): where to cut. Always <= the log end.
    pub(crate) fn truncation_point(&self, epoch: i32, end: i64) -> i64 {
        if epoch == 0 {
            return end.min(self.end());
        }
        let (local_epoch, local_end) = self.end_offset_for_epoch(epoch);
        let point = if local_epoch == epoch {
            local_end.min(end)
        } else {
            local_end
        };
        point.min(self.end())
    }
}
