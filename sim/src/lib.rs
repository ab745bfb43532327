//! The simulated world in which Stormlog brokers and simulated clients run,
//! driven by one seed: clock, network, disks, processes, faults, the trace,
//! scenarios and the runner behind the `stormlog` CLI.

pub mod bench;
pub mod catalogue;
pub mod commit_bench;
pub mod disk;
pub mod fault;
pub mod group_bench;
pub mod monitor;
pub mod net;
pub mod real_bench;
pub mod replica;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod world;
