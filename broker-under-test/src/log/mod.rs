//! The partition log.

pub mod batch;
