//! Tests of the group coordinator.

mod harness;
mod offsets;
mod rebalance;
mod records;
