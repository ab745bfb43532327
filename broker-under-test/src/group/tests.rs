//! Tests of the group coordinator.

mod consumer;
mod harness;
mod offsets;
mod props;
mod rebalance;
mod records;
