//! Tests of the group coordinator.

mod harness;
mod offsets;
mod props;
mod rebalance;
mod records;
