//! Consumer groups, the client side: a simulated member of a classic
//! consumer group (`GroupConsumer`) and the assignors its leader runs.

pub mod assignor;
pub mod consumer;
#[cfg(test)]
mod tests;

pub use assignor::Assignor;
pub use consumer::{CommitMode, GroupConsumer, GroupConsumerConfig, GroupStatus, Phase};
