//! The faults the world can inject, and the nemesis that schedules them from
//! the seed. Every fault has a start and a heal; every schedule ends healed.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Machine crash: the process dies and the disk keeps only its durable
    /// view (with torn writes if the scenario allows); restarts at heal.
    Crash,
    /// Process crash (kill -9): the page cache survives; restarts at heal.
    Kill,
    /// The process stops being scheduled (a long GC pause); resumes at heal.
    Pause,
    /// Clients and broker cannot reach each other in either direction.
    Partition,
    /// Only the broker's answers are dropped (one-way partition).
    PartitionOneWay,
    /// Bytes to and from the broker are held, then delivered at heal.
    Clog,
    /// Swizzle-clog: the links of a random subset of clients are clogged one
    /// after another, then unclogged in a different order.
    SwizzleClog,
    /// Every connection of the broker is reset.
    Reset,
    /// Disk service times are multiplied by 10..100.
    SlowDisk,
    /// The disk stops serving until heal.
    DiskStall,
    /// Reads fail with EIO while the fault lasts.
    LatentReadError,
    /// A random bit of durable data flips (silent corruption).
    BitFlip,
    /// Writes land at the wrong offset while the fault lasts.
    MisdirectedWrite,
    /// Syncs fail while the fault lasts (and make nothing durable).
    FailSync,
    /// The disk is full while the fault lasts.
    FullDisk,
    /// The broker's wall clock jumps by up to ±1 hour; it jumps back at heal.
    ClockJump,
    /// The machine is replaced: crash, and its disk comes back empty at heal.
    /// Loses everything on a single node; a scenario using it expects that.
    Wipe,
}

impl FaultKind {
    pub const ALL: &'static [FaultKind] = &[
        FaultKind::Crash,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::PartitionOneWay,
        FaultKind::Clog,
        FaultKind::SwizzleClog,
        FaultKind::Reset,
        FaultKind::SlowDisk,
        FaultKind::DiskStall,
        FaultKind::LatentReadError,
        FaultKind::BitFlip,
        FaultKind::MisdirectedWrite,
        FaultKind::FailSync,
        FaultKind::FullDisk,
        FaultKind::ClockJump,
        FaultKind::Wipe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::PartitionOneWay => "partition-one-way",
            FaultKind::Clog => "clog",
            FaultKind::SwizzleClog => "swizzle-clog",
            FaultKind::Reset => "reset",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::DiskStall => "disk-stall",
            FaultKind::LatentReadError => "latent-read-error",
            FaultKind::BitFlip => "bit-flip",
            FaultKind::MisdirectedWrite => "misdirected-write",
            FaultKind::FailSync => "fail-sync",
            FaultKind::FullDisk => "full-disk",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::Wipe => "wipe",
        }
    }
}

/// One fault in a schedule: strikes `node` at `start_ms`, heals at `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub kind: FaultKind,
    pub node: u32,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The whole schedule of a run: the scenario's explicit faults plus those the
/// nemesis draws from `rng`, all healed by `scenario.duration_ms`.
pub fn plan(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<PlannedFault> {
    let end = scenario.duration_ms;
    let [dmin, dmax] = scenario.nemesis.duration_ms;
    let mut faults: Vec<PlannedFault> = scenario
        .schedule
        .iter()
        .map(|f| {
            let duration = f.duration_ms.unwrap_or((dmin + dmax) / 2);
            PlannedFault {
                kind: f.fault,
                node: f.node,
                start_ms: f.at_ms.min(end),
                end_ms: (f.at_ms + duration).min(end),
            }
        })
        .collect();
    if !scenario.nemesis.kinds.is_empty() {
        let [imin, imax] = scenario.nemesis.interval_ms;
        let mut t = rng.gen_range(imin..=imax);
        // One fault at a time per node keeps every fault recoverable: a
        // crash never lands on a node that is already down.
        while t < end {
            let kind = scenario.nemesis.kinds[rng.gen_range(0..scenario.nemesis.kinds.len())];
            let node = rng.gen_range(0..scenario.brokers);
            let duration = rng.gen_range(dmin..=dmax);
            let stop = (t + duration).min(end);
            faults.push(PlannedFault {
                kind,
                node,
                start_ms: t,
                end_ms: stop,
            });
            // At least a millisecond between faults, whatever the scenario says.
            t = stop + rng.gen_range(imin..=imax).max(1);
        }
    }
    faults.sort_by_key(|f| (f.start_ms, f.end_ms, f.kind, f.node));
    faults
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scenario(kinds: Vec<FaultKind>) -> Scenario {
        let mut s = Scenario::from_toml("name = \"t\"\nduration_ms = 30000\n").unwrap();
        s.nemesis.kinds = kinds;
        s
    }

    #[test]
    fn schedules_heal_before_the_end_and_follow_the_seed() {
        let s = scenario(vec![FaultKind::Crash, FaultKind::Pause]);
        let a = plan(&s, &mut ChaCha8Rng::seed_from_u64(1));
        let b = plan(&s, &mut ChaCha8Rng::seed_from_u64(1));
        let c = plan(&s, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.is_empty());
        for f in &a {
            assert!(f.start_ms <= f.end_ms && f.end_ms <= 30_000);
        }
        // Generated faults never overlap.
        for pair in a.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms);
        }
    }

    #[test]
    fn no_kinds_no_faults() {
        assert!(plan(&scenario(vec![]), &mut ChaCha8Rng::seed_from_u64(1)).is_empty());
    }
}
