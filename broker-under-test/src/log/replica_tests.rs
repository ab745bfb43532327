//! Tests of replication support: see `replica.rs`.
