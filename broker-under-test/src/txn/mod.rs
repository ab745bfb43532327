//! Producer ids and transactions: producer id blocks (`producer_ids`), the
//! transaction coordinator's state machine (`state`) and its records in
//! `__transaction_state` (`records`), and the partitions each open
//! transaction added, which partition leaders check (`verification`). The
//! per-partition idempotence and transaction state lives with the log
//! (`log::producers`): it is rebuilt from the log's own batches.

pub mod producer_ids;
pub mod records;
pub mod state;
pub mod verification;
