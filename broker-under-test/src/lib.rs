//! Stormlog's broker: a Kafka-compatible broker written as a sans-IO state
//! machine ([`node::Node`]) behind the seam in [`seam`], plus the thin tokio
//! shell in `runtime` that runs it for real.
//!
//! Everything except `runtime` is deterministic: no clocks, sockets, files,
//! threads or ambient randomness.

pub mod config;
pub mod diskio;
pub mod group;
pub mod log;
pub mod memdisk;
pub mod metadata;
pub mod node;
pub mod protocol;
pub mod raft;
pub mod replica;
pub mod runtime;
pub mod seam;
pub mod txn;
