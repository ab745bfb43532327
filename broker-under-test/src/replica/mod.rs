//! One partition replica's decisions, free of I/O: what a leader knows of its
//! followers (their log ends, the ISR, the high watermark, which ISR change to
//! ask the controller for) and how a follower reacts to what its leader
//! answers (append, or truncate a divergent suffix found by leader epoch).
//!
//! The node drives these with what arrives (replica fetches, fetch answers,
//! metadata changes) and carries out what they decide (log appends and
//! truncations, AlterPartition requests).

pub mod follower;
pub mod leader;

#[cfg(test)]
mod tests;
