//! Simulated Kafka clients that speak the real protocol through the seam, the
//! histories they record, and the checks that judge those histories.

pub mod check;
pub mod consumer;
pub mod history;
pub mod producer;
pub mod session;
