//! One transactional id's transaction, as the coordinator keeps it, and
//! Kafka's rules for moving it from state to state. Every function here is
//! pure: it judges a request against the current metadata and returns the
//! metadata to persist in `__transaction_state` (the coordinator answers
//! only once that record is replicated, then makes it current) or the
//! Kafka error to answer with.
//!
//! States, as Kafka numbers them on disk:
//! Empty (0) -> Ongoing (1) on AddPartitionsToTxn; Ongoing -> PrepareCommit
//! (2) or PrepareAbort (3) on EndTxn (or the timeout, which aborts with a
//! bumped epoch); Prepare* -> CompleteCommit (4) / CompleteAbort (5) once every
//! partition has its marker; Complete* -> Ongoing (next transaction) or
//! Empty (InitProducerId bumps the epoch). Dead (6): expired, removed.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
}

impl TxnState {
    /// Kafka's on-disk number of the state.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions report.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// A topic partition of a transaction.
pub type TxnPartition = (String, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions the open (or ending) transaction wrote to.
    pub partitions: BTreeSet<TxnPartition>,
    /// When the open transaction began (-1: none).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// Why a request is refused; each is one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// CONCURRENT_TRANSACTIONS: the previous transaction is still ending; retry.
    Concurrent,
    /// PRODUCER_FENCED: a newer producer with this transactional id exists.
    Fenced,
    /// INVALID_PRODUCER_ID_MAPPING: the producer id is not this transactional id's.
    WrongProducerId,
    /// INVALID_TXN_STATE: the request makes no sense in this state.
    InvalidState,
    /// INVALID_TRANSACTION_TIMEOUT: above `transaction.max.timeout.ms` or not positive.
    InvalidTimeout,
}

impl TxnError {
    pub fn code(self) -> kafka_protocol::error::ResponseError {
        use kafka_protocol::error::ResponseError as E;
        match self {
            TxnError::Concurrent => E::ConcurrentTransactions,
            TxnError::Fenced => E::ProducerFenced,
            TxnError::WrongProducerId => E::InvalidProducerIdMapping,
            TxnError::InvalidState => E::InvalidTxnState,
            TxnError::InvalidTimeout => E::InvalidTransactionTimeout,
        }
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code())
    }
}

/// What InitProducerId leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Persist this (state Empty, the epoch bumped or a fresh producer id),
    /// then answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// A transaction is open: persist this (PrepareAbort at a bumped epoch,
    /// which fences the old producer), write its abort markers, and answer
    /// CONCURRENT_TRANSACTIONS so that the client asks again.
    AbortFirst(TxnMetadata),
}

/// The epoch after `epoch`, or `None` when it is exhausted (a new producer
/// id is needed, as Kafka does at `i16::MAX - 1`).
fn next_epoch(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then_some(epoch + 1)
}

fn check_timeout(timeout_ms: i32, max_timeout_ms: i32) -> Result<(), TxnError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(TxnError::InvalidTimeout);
    }
    Ok(())
}

/// InitProducerId with a transactional id. `fresh_pid` is a producer id
/// never used before, taken only when one is needed (`None` if none is at
/// hand: then the client is told to retry).
pub fn init_producer_id(
    current: Option<&TxnMetadata>,
    timeout_ms: i32,
    max_timeout_ms: i32,
    fresh_pid: impl FnOnce() -> Option<i64>,
    now_ms: i64,
) -> Result<InitOutcome, TxnError> {
    check_timeout(timeout_ms, max_timeout_ms)?;
    let Some(md) = current.filter(|m| m.state != TxnState::Dead) else {
        let pid = fresh_pid().ok_or(TxnError::Concurrent)?;
        return Ok(InitOutcome::Ready(TxnMetadata {
            producer_id: pid,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }));
    };
    if md.state.preparing() {
        return Err(TxnError::Concurrent);
    }
    let (producer_id, producer_epoch) = match next_epoch(md.producer_epoch) {
        Some(e) => (md.producer_id, e),
        None => (fresh_pid().ok_or(TxnError::Concurrent)?, 0),
    };
    if md.state == TxnState::Ongoing {
        // The old producer's transaction is aborted under the new epoch, so
        // its late writes and its EndTxn are fenced.
        return Ok(InitOutcome::AbortFirst(TxnMetadata {
            producer_id,
            producer_epoch,
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..md.clone()
        }));
    }
    Ok(InitOutcome::Ready(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        last_update_ms: now_ms,
    }))
}

fn check_producer(md: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
    if md.producer_id != producer_id {
        return Err(TxnError::WrongProducerId);
    }
    if epoch != md.producer_epoch {
        return Err(TxnError::Fenced);
    }
    Ok(())
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
/// partition). `Ok(None)`: every partition is already in the open
/// transaction, nothing to persist.
pub fn add_partitions(
    md: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    partitions: &[TxnPartition],
    now_ms: i64,
) -> Result<Option<TxnMetadata>, TxnError> {
    check_producer(md, producer_id, epoch)?;
    match md.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(TxnError::Concurrent),
        TxnState::Dead => return Err(TxnError::InvalidState),
        _ => {}
    }
    let ongoing = md.state == TxnState::Ongoing;
    if ongoing && partitions.iter().all(|p| md.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = md.clone();
    if !ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.state = TxnState::Ongoing;
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Persist this (PrepareCommit or PrepareAbort), answer, then write the markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that already completed: answer NONE, nothing to do.
    AlreadyDone,
}

/// EndTxn: commit (`commit`) or abort the open transaction.
pub fn end_txn(
    md: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndOutcome, TxnError> {
    // A client never bumps its own epoch: any other epoch is a fenced
    // producer's (as Kafka answers).
    check_producer(md, producer_id, epoch)?;
    let target = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    match (md.state, commit) {
        (TxnState::Ongoing, _) => Ok(EndOutcome::Prepare(TxnMetadata {
            state: target,
            last_update_ms: now_ms,
            ..md.clone()
        })),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndOutcome::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::Concurrent)
        }
        // Nothing was begun (clients send EndTxn only after adding a partition).
        _ => Err(TxnError::InvalidState),
    }
}

/// Every partition has its marker: the transaction is complete.
pub fn complete(md: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    let state = match md.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    Some(TxnMetadata {
        state,
        partitions: BTreeSet::new(),
        start_ms: -1,
        last_update_ms: now_ms,
        ..md.clone()
    })
}

/// `transaction.timeout.ms` has passed since an open transaction began: it
/// is aborted under a bumped epoch (fencing the producer, which must call
/// InitProducerId again), as Kafka does.
pub fn abort_if_expired(md: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    if md.state != TxnState::Ongoing
        || now_ms.saturating_sub(md.start_ms) <= i64::from(md.timeout_ms)
    {
        return None;
    }
    // An exhausted epoch stays: the abort still ends the transaction.
    let producer_epoch = next_epoch(md.producer_epoch).unwrap_or(md.producer_epoch);
    Some(TxnMetadata {
        producer_epoch,
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        ..md.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i32 = 900_000;

    fn ready(outcome: Result<InitOutcome, TxnError>) -> TxnMetadata {
        match outcome {
            Ok(InitOutcome::Ready(md)) => md,
            other => panic!("{other:?}"),
        }
    }

    fn tp(p: i32) -> TxnPartition {
        ("t".to_string(), p)
    }

    #[test]
    fn a_transaction_goes_from_empty_to_ongoing_to_prepare_to_complete() {
        let md = ready(init_producer_id(None, 60_000, MAX, || Some(7), 0));
        assert_eq!(
            (md.producer_id, md.producer_epoch, md.state),
            (7, 0, TxnState::Empty)
        );
        let md = add_partitions(&md, 7, 0, &[tp(0)], 10).unwrap().unwrap();
        assert_eq!((md.state, md.start_ms), (TxnState::Ongoing, 10));
        assert_eq!(add_partitions(&md, 7, 0, &[tp(0)], 11), Ok(None));
        let md = add_partitions(&md, 7, 0, &[tp(1)], 12).unwrap().unwrap();
        assert_eq!(md.partitions.len(), 2);
        assert_eq!(md.start_ms, 10);
        let EndOutcome::Prepare(md) = end_txn(&md, 7, 0, true, 20).unwrap() else {
            panic!()
        };
        assert_eq!(md.state, TxnState::PrepareCommit);
        assert_eq!(
            add_partitions(&md, 7, 0, &[tp(2)], 21),
            Err(TxnError::Concurrent)
        );
        assert_eq!(end_txn(&md, 7, 0, true, 21), Err(TxnError::Concurrent));
        assert_eq!(end_txn(&md, 7, 0, false, 21), Err(TxnError::InvalidState));
        let md = complete(&md, 30).unwrap();
        assert_eq!(
            (md.state, md.partitions.len()),
            (TxnState::CompleteCommit, 0)
        );
        assert_eq!(end_txn(&md, 7, 0, true, 31), Ok(EndOutcome::AlreadyDone));
        assert_eq!(end_txn(&md, 7, 0, false, 31), Err(TxnError::InvalidState));
        // The next transaction starts afresh.
        let md = add_partitions(&md, 7, 0, &[tp(3)], 40).unwrap().unwrap();
        assert_eq!(md.partitions, BTreeSet::from([tp(3)]));
        assert_eq!(md.start_ms, 40);
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_open_transaction() {
        let md = ready(init_producer_id(None, 60_000, MAX, || Some(7), 0));
        let open = add_partitions(&md, 7, 0, &[tp(0)], 1).unwrap().unwrap();
        let Ok(InitOutcome::AbortFirst(aborting)) =
            init_producer_id(Some(&open), 60_000, MAX, || None, 2)
        else {
            panic!()
        };
        assert_eq!(
            (aborting.producer_epoch, aborting.state),
            (1, TxnState::PrepareAbort)
        );
        assert_eq!(
            aborting.partitions, open.partitions,
            "markers go where it wrote"
        );
        // The old producer is fenced everywhere.
        assert_eq!(end_txn(&aborting, 7, 0, true, 3), Err(TxnError::Fenced));
        assert_eq!(
            add_partitions(&aborting, 7, 0, &[tp(1)], 3),
            Err(TxnError::Fenced)
        );
        assert_eq!(
            init_producer_id(Some(&aborting), 60_000, MAX, || None, 3),
            Err(TxnError::Concurrent),
            "the client retries until the abort completes"
        );
        let done = complete(&aborting, 4).unwrap();
        let md = ready(init_producer_id(Some(&done), 60_000, MAX, || None, 5));
        assert_eq!(
            (md.producer_id, md.producer_epoch, md.state),
            (7, 2, TxnState::Empty)
        );
        assert_eq!(
            add_partitions(&md, 8, 2, &[tp(0)], 6),
            Err(TxnError::WrongProducerId)
        );
    }

    #[test]
    fn an_exhausted_epoch_takes_a_new_producer_id_and_bad_timeouts_are_refused() {
        let mut md = ready(init_producer_id(None, 60_000, MAX, || Some(7), 0));
        md.producer_epoch = i16::MAX - 1;
        let md = ready(init_producer_id(Some(&md), 60_000, MAX, || Some(99), 1));
        assert_eq!((md.producer_id, md.producer_epoch), (99, 0));
        for bad in [0, -5, MAX + 1] {
            assert_eq!(
                init_producer_id(None, bad, MAX, || Some(1), 0),
                Err(TxnError::InvalidTimeout)
            );
        }
        assert_eq!(
            init_producer_id(None, 1000, MAX, || None, 0),
            Err(TxnError::Concurrent),
            "no producer id at hand yet"
        );
    }

    #[test]
    fn the_timeout_aborts_an_open_transaction_under_a_bumped_epoch() {
        let md = ready(init_producer_id(None, 1_000, MAX, || Some(7), 0));
        assert_eq!(abort_if_expired(&md, 10_000), None, "nothing open");
        let open = add_partitions(&md, 7, 0, &[tp(0)], 100).unwrap().unwrap();
        assert_eq!(abort_if_expired(&open, 1_100), None);
        let aborting = abort_if_expired(&open, 1_101).unwrap();
        assert_eq!(
            (aborting.producer_epoch, aborting.state),
            (1, TxnState::PrepareAbort)
        );
        assert_eq!(end_txn(&aborting, 7, 0, true, 1_200), Err(TxnError::Fenced));
        assert_eq!(end_txn(&md, 7, 0, false, 5), Err(TxnError::InvalidState));
        assert_eq!(end_txn(&md, 7, 0, true, 5), Err(TxnError::InvalidState));
        assert_eq!(
            end_txn(&md, 7, 3, true, 5),
            Err(TxnError::Fenced),
            "a newer epoch"
        );
    }

    #[test]
    fn state_ids_round_trip() {
        for id in 0..7 {
            assert_eq!(TxnState::from_id(id).unwrap().id(), id);
        }
        assert_eq!(TxnState::from_id(7), None);
        assert_eq!(TxnState::from_id(-1), None);
    }
}
