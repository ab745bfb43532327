//! Simulated Kafka clients that speak the real protocol through the seam, the
//! histories they record, and the checkers that judge those histories.

pub mod admin;
pub mod checkers;
pub mod cluster;
pub mod consumer;
pub mod group;
pub mod history;
pub mod producer;
pub mod session;
#[cfg(test)]
mod testwire;
