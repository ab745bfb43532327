//! The scenario catalogue shipped with the binary, and finding a scenario by
//! name or path.

use crate::scenario::Scenario;

/// (name, TOML) of every catalogue scenario, in suite order.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("steady", include_str!("../scenarios/steady.toml")),
    (
        "crash-restart",
        include_str!("../scenarios/crash-restart.toml"),
    ),
    ("power-loss", include_str!("../scenarios/power-loss.toml")),
    ("slow-disk", include_str!("../scenarios/slow-disk.toml")),
    (
        "latent-read-errors",
        include_str!("../scenarios/latent-read-errors.toml"),
    ),
    (
        "silent-corruption",
        include_str!("../scenarios/silent-corruption.toml"),
    ),
    ("full-disk", include_str!("../scenarios/full-disk.toml")),
    (
        "client-partitions",
        include_str!("../scenarios/client-partitions.toml"),
    ),
    ("clock-skew", include_str!("../scenarios/clock-skew.toml")),
    ("pause", include_str!("../scenarios/pause.toml")),
    ("retries", include_str!("../scenarios/retries.toml")),
    (
        "retries-non-idempotent",
        include_str!("../scenarios/retries-non-idempotent.toml"),
    ),
    (
        "kitchen-sink",
        include_str!("../scenarios/kitchen-sink.toml"),
    ),
    (
        "page-cache-power-loss",
        include_str!("../scenarios/page-cache-power-loss.toml"),
    ),
    (
        "cluster-steady",
        include_str!("../scenarios/cluster-steady.toml"),
    ),
    (
        "cluster-controller-kill",
        include_str!("../scenarios/cluster-controller-kill.toml"),
    ),
    (
        "cluster-split",
        include_str!("../scenarios/cluster-split.toml"),
    ),
    (
        "cluster-bridge",
        include_str!("../scenarios/cluster-bridge.toml"),
    ),
    (
        "cluster-isolate-controller",
        include_str!("../scenarios/cluster-isolate-controller.toml"),
    ),
    (
        "cluster-one-way-leader",
        include_str!("../scenarios/cluster-one-way-leader.toml"),
    ),
    (
        "cluster-power-loss",
        include_str!("../scenarios/cluster-power-loss.toml"),
    ),
    (
        "cluster-pause",
        include_str!("../scenarios/cluster-pause.toml"),
    ),
    (
        "cluster-5-separate",
        include_str!("../scenarios/cluster-5-separate.toml"),
    ),
    (
        "cluster-kitchen-sink",
        include_str!("../scenarios/cluster-kitchen-sink.toml"),
    ),
    (
        "cluster-snapshot-catch-up",
        include_str!("../scenarios/cluster-snapshot-catch-up.toml"),
    ),
    (
        "cluster-page-cache-power-loss",
        include_str!("../scenarios/cluster-page-cache-power-loss.toml"),
    ),
    (
        "replication-idempotent-retries",
        include_str!("../scenarios/replication-idempotent-retries.toml"),
    ),
    (
        "replication-leader-kill",
        include_str!("../scenarios/replication-leader-kill.toml"),
    ),
    (
        "replication-leader-power-loss",
        include_str!("../scenarios/replication-leader-power-loss.toml"),
    ),
    (
        "replication-isolate-leader",
        include_str!("../scenarios/replication-isolate-leader.toml"),
    ),
    (
        "replication-majority-minority",
        include_str!("../scenarios/replication-majority-minority.toml"),
    ),
    (
        "replication-bridge",
        include_str!("../scenarios/replication-bridge.toml"),
    ),
    (
        "replication-one-way-to-leader",
        include_str!("../scenarios/replication-one-way-to-leader.toml"),
    ),
    (
        "replication-slow-follower",
        include_str!("../scenarios/replication-slow-follower.toml"),
    ),
    (
        "replication-full-disk-replica",
        include_str!("../scenarios/replication-full-disk-replica.toml"),
    ),
    (
        "replication-rolling-restart",
        include_str!("../scenarios/replication-rolling-restart.toml"),
    ),
    (
        "replication-wipe-broker",
        include_str!("../scenarios/replication-wipe-broker.toml"),
    ),
    (
        "replication-correlated-power-loss",
        include_str!("../scenarios/replication-correlated-power-loss.toml"),
    ),
    (
        "replication-clock-skew",
        include_str!("../scenarios/replication-clock-skew.toml"),
    ),
    (
        "replication-kitchen-sink",
        include_str!("../scenarios/replication-kitchen-sink.toml"),
    ),
    (
        "unsafe-acks1-leader-crash",
        include_str!("../scenarios/unsafe-acks1-leader-crash.toml"),
    ),
    (
        "unsafe-min-insync-1-isolated-leader",
        include_str!("../scenarios/unsafe-min-insync-1-isolated-leader.toml"),
    ),
    (
        "unsafe-unclean-election",
        include_str!("../scenarios/unsafe-unclean-election.toml"),
    ),
    (
        "unsafe-page-cache-correlated-power-loss",
        include_str!("../scenarios/unsafe-page-cache-correlated-power-loss.toml"),
    ),
    (
        "safe-acks-all-leader-crash",
        include_str!("../scenarios/safe-acks-all-leader-crash.toml"),
    ),
    (
        "unsafe-wipe-last-isr-member",
        include_str!("../scenarios/unsafe-wipe-last-isr-member.toml"),
    ),
    (
        "safe-clean-election",
        include_str!("../scenarios/safe-clean-election.toml"),
    ),
    (
        "safe-sync-correlated-power-loss",
        include_str!("../scenarios/safe-sync-correlated-power-loss.toml"),
    ),
    (
        "group-steady",
        include_str!("../scenarios/group-steady.toml"),
    ),
    (
        "group-join-leave",
        include_str!("../scenarios/group-join-leave.toml"),
    ),
    (
        "group-cooperative-join-leave",
        include_str!("../scenarios/group-cooperative-join-leave.toml"),
    ),
    (
        "group-zombie-pause",
        include_str!("../scenarios/group-zombie-pause.toml"),
    ),
    (
        "group-coordinator-crash",
        include_str!("../scenarios/group-coordinator-crash.toml"),
    ),
    (
        "group-coordinator-partition",
        include_str!("../scenarios/group-coordinator-partition.toml"),
    ),
    (
        "group-offsets-leader-move",
        include_str!("../scenarios/group-offsets-leader-move.toml"),
    ),
    (
        "group-static-restart",
        include_str!("../scenarios/group-static-restart.toml"),
    ),
    (
        "group-unsafe-commit-before-process",
        include_str!("../scenarios/group-unsafe-commit-before-process.toml"),
    ),
    (
        "group-kitchen-sink",
        include_str!("../scenarios/group-kitchen-sink.toml"),
    ),
];

/// The catalogue scenarios about partition replication (`replication-*`,
/// `unsafe-*`): they need a broker that replicates partition data
/// ([`crate::replica::broker_replicates`]); until then the default suite
/// and `cargo test` leave them out.
pub fn needs_replication(name: &str) -> bool {
    name.starts_with("replication-") || name.starts_with("unsafe-") || name.starts_with("safe-")
}

/// The catalogue scenarios about consumer groups (`group-*`): they need a
/// broker that coordinates groups ([`crate::run::broker_has_groups`]).
pub fn needs_groups(name: &str) -> bool {
    name.starts_with("group-")
}

/// Load a scenario from a file path, or from the catalogue by name.
pub fn load(name_or_path: &str) -> Result<Scenario, String> {
    let path = std::path::Path::new(name_or_path);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name_or_path}: {e}"))?;
        return Scenario::from_toml(&text).map_err(|e| format!("{name_or_path}: {e}"));
    }
    match CATALOGUE.iter().find(|(name, _)| *name == name_or_path) {
        Some((name, text)) => {
            Scenario::from_toml(text).map_err(|e| format!("catalogue scenario {name}: {e}"))
        }
        None => Err(format!(
            "{name_or_path}: no such file, and not a catalogue scenario (known: {})",
            CATALOGUE
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Every catalogue scenario, parsed.
pub fn all() -> Vec<Scenario> {
    CATALOGUE
        .iter()
        .map(|(name, text)| {
            Scenario::from_toml(text).unwrap_or_else(|e| panic!("catalogue scenario {name}: {e}"))
        })
        .collect()
}

/// Parse a seed written in hex (`0x1f`) or decimal.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a seed (decimal, or hex with 0x)"))
}

/// Parse `A..B` (B exclusive) into a seed range.
pub fn parse_seed_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}`: expected A..B"))?;
    let (a, b) = (parse_seed(a)?, parse_seed(b)?);
    if a >= b {
        return Err(format!("`{text}`: empty range"));
    }
    Ok(a..b)
}

/// Format a seed the way every command prints it.
pub fn seed_hex(seed: u64) -> String {
    format!("{seed:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_parses() {
        assert_eq!(all().len(), CATALOGUE.len());
        for (name, _) in CATALOGUE {
            assert_eq!(
                load(name).unwrap().name,
                *name,
                "file name matches scenario name"
            );
        }
    }

    #[test]
    fn seeds_in_hex_and_decimal() {
        assert_eq!(parse_seed("0x1f").unwrap(), 31);
        assert_eq!(parse_seed("31").unwrap(), 31);
        assert!(parse_seed("x").is_err());
        assert_eq!(parse_seed_range("0..0x10").unwrap(), 0..16);
        assert!(parse_seed_range("5..5").is_err());
        assert_eq!(seed_hex(31), "0x1f");
    }
}
