//! Tests of the group coordinator.

mod records;
