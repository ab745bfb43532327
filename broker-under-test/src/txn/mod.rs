//! Producer ids (this module) and, with transactions, the transaction
//! coordinator. The per-partition idempotence state lives with the log
//! (`log::producers`): it is rebuilt from the log's own batches.

pub mod producer_ids;
pub mod verification;
