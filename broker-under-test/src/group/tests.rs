//! Tests of the group coordinator.

mod harness;
mod rebalance;
mod records;
