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
    /// Each struck node is cut from every other process, nodes and clients,
    /// both ways.
    Isolate,
    /// The struck nodes and the other cluster nodes cannot reach each other
    /// (a majority/minority split when the target is `minority`/`majority`);
    /// clients still reach every node.
    Split,
    /// The cluster's other nodes are split into two halves that cannot reach
    /// each other; the (first) struck node reaches both and bridges them.
    Bridge,
    /// What the struck nodes send to the quorum leader (resolved at strike
    /// time) is lost; what the leader sends them still arrives. Struck as
    /// `controller`, every other node loses its link towards the leader.
    OneWayToLeader,
    /// Every link of the struck nodes (to nodes and clients) is clogged:
    /// bytes are held, then delivered at heal.
    ClogNode,
    /// Orderly shutdown (Kafka's controlled shutdown); the node starts again
    /// at heal (killed first if it has not stopped by then). A rolling
    /// restart is one of these per broker, in turn.
    Shutdown,
    /// The struck nodes and the other broker-role nodes cannot reach each
    /// other; controller-only nodes and clients still reach everyone. Struck
    /// at a partition leader, its followers can no longer fetch from it while
    /// it still talks to the controller (it can shrink the ISR).
    SplitBrokers,
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
        FaultKind::Isolate,
        FaultKind::Split,
        FaultKind::Bridge,
        FaultKind::OneWayToLeader,
        FaultKind::ClogNode,
        FaultKind::Shutdown,
        FaultKind::SplitBrokers,
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
            FaultKind::Isolate => "isolate",
            FaultKind::Split => "split",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWayToLeader => "one-way-to-leader",
            FaultKind::ClogNode => "clog-node",
            FaultKind::Shutdown => "shutdown",
            FaultKind::SplitBrokers => "split-brokers",
        }
    }

    /// Faults of the links between cluster nodes (they may affect the quorum
    /// whoever they strike).
    pub fn is_inter_node(self) -> bool {
        matches!(
            self,
            FaultKind::Isolate
                | FaultKind::Split
                | FaultKind::Bridge
                | FaultKind::OneWayToLeader
                | FaultKind::ClogNode
                | FaultKind::SplitBrokers
        )
    }
}

/// Whom a fault strikes, resolved at strike time from the world's state.
///
/// Written as a string: `node:N` (node id N), `controller` (the active quorum
/// leader), `leader:P` (the leader of partition P of the scenario's topic),
/// `follower:P` (a random replica of partition P that does not lead it),
/// `minority` / `majority` (a random minority / majority of the quorum's
/// voters), `voters` (every voter), `all` (every node), `any` (one random node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Node(u32),
    Controller,
    Leader(u32),
    Follower(u32),
    Minority,
    Majority,
    Voters,
    All,
    Any,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Node(n) => write!(f, "node:{n}"),
            Target::Controller => f.write_str("controller"),
            Target::Leader(p) => write!(f, "leader:{p}"),
            Target::Follower(p) => write!(f, "follower:{p}"),
            Target::Minority => f.write_str("minority"),
            Target::Majority => f.write_str("majority"),
            Target::Voters => f.write_str("voters"),
            Target::All => f.write_str("all"),
            Target::Any => f.write_str("any"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("target `{s}`: `{n}` is not a number"))
        };
        Ok(match s {
            "controller" => Target::Controller,
            "minority" => Target::Minority,
            "majority" => Target::Majority,
            "voters" => Target::Voters,
            "all" => Target::All,
            "any" => Target::Any,
            _ => {
                if let Some(n) = s.strip_prefix("node:") {
                    Target::Node(number(n)?)
                } else if let Some(p) = s.strip_prefix("leader:") {
                    Target::Leader(number(p)?)
                } else if let Some(p) = s.strip_prefix("follower:") {
                    Target::Follower(number(p)?)
                } else {
                    return Err(format!(
                        "target `{s}`: expected node:N, controller, leader:P, follower:P, minority, majority, voters, all or any"
                    ));
                }
            }
        })
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One fault in a schedule: strikes `target` (resolved to nodes at
/// `start_ms`) and heals the same nodes at `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub kind: FaultKind,
    pub target: Target,
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
                target: f.target.unwrap_or(Target::Node(f.node)),
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
            let targets = &scenario.nemesis.targets;
            let target = if targets.is_empty() {
                Target::Node(rng.gen_range(0..scenario.node_count()))
            } else {
                targets[rng.gen_range(0..targets.len())]
            };
            let duration = rng.gen_range(dmin..=dmax);
            let stop = (t + duration).min(end);
            faults.push(PlannedFault {
                kind,
                target,
                start_ms: t,
                end_ms: stop,
            });
            // At least a millisecond between faults, whatever the scenario says.
            t = stop + rng.gen_range(imin..=imax).max(1);
        }
    }
    faults.sort_by_key(|f| (f.start_ms, f.end_ms, f.kind, f.target));
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
    fn targets_parse_print_and_are_drawn_by_the_nemesis() {
        for text in [
            "node:3",
            "controller",
            "leader:2",
            "follower:1",
            "minority",
            "majority",
            "voters",
            "all",
            "any",
        ] {
            let t: Target = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert!("node:x".parse::<Target>().is_err());
        assert!("leader".parse::<Target>().is_err());
        let mut s = scenario(vec![FaultKind::Kill]);
        s.nemesis.targets = vec![Target::Controller, Target::Majority];
        let a = plan(&s, &mut ChaCha8Rng::seed_from_u64(4));
        assert!(a
            .iter()
            .all(|f| matches!(f.target, Target::Controller | Target::Majority)));
        assert!(a.iter().any(|f| f.target == Target::Controller));
    }

    #[test]
    fn no_kinds_no_faults() {
        assert!(plan(&scenario(vec![]), &mut ChaCha8Rng::seed_from_u64(1)).is_empty());
    }
}
