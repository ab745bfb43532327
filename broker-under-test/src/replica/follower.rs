//! A follower's reactions to its leader's Fetch answers: where to truncate
//! when the leader reports a diverging epoch (KIP-320), and what to ask for
//! next.

/// Where a follower's log stands, as the follower decision needs it.
pub trait EpochLookup {
    /// Kafka's end offset for `epoch`: `(largest epoch <= epoch, its end)`,
    /// `(-1, -1)` when unknown.
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64);
    fn log_end(&self) -> i64;
}

/// The leader said the follower's log diverges after epoch `epoch`, whose
/// entries end at `end_offset` on the leader. The offset to truncate to, and
/// whether that settles it (`false`: the follower's own history for that
/// epoch differs, so after truncating it fetches again and the leader checks
/// the older epoch).
pub fn truncation_for_diverging(
    log: &impl EpochLookup,
    epoch: i32,
    end_offset: i64,
) -> (i64, bool) {
    let leo = log.log_end();
    if epoch < 0 || end_offset < 0 {
        // The leader has nothing for any epoch we know: keep what matches by offset.
        return (end_offset.max(0).min(leo), false);
    }
    let (local_epoch, local_end) = log.end_offset_for_epoch(epoch);
    if local_epoch < 0 {
        // We know no epoch at or below it: nothing we hold can be trusted past its end.
        return (end_offset.min(leo), true);
    }
    if local_epoch == epoch {
        (end_offset.min(local_end).min(leo), true)
    } else {
        (local_end.min(leo), false)
    }
}

/// The last fetched epoch a follower sends: the epoch of the batch holding
/// `log_end - 1`, or -1 for an empty log.
pub fn last_fetched_epoch(log_end: i64, epoch_at: impl Fn(i64) -> Option<i32>) -> i32 {
    if log_end <= 0 {
        return -1;
    }
    epoch_at(log_end - 1).unwrap_or(-1)
}
