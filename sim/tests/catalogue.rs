//! Every catalogue scenario on a fixed set of seeds, one test per scenario.
//!
//! `STORMLOG_SEED=0x2a cargo test -p sim --test catalogue crash_restart` reruns
//! one seed; `STORMLOG_SEEDS=50` runs seeds 0..50 instead of the default.
//! A failing seed prints the command that replays it.

use sim::catalogue::{self, parse_seed, seed_hex};
use sim::run::{run, Run, RunOptions};

/// Seeds per scenario when `STORMLOG_SEEDS` is not set: enough to exercise
/// every fault kind while the whole test command stays well under 20 minutes
/// on a 2-core machine in a debug build (the release suite and the nightly
/// sweep run many more).
const DEFAULT_SEEDS: u64 = 3;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("STORMLOG_SEED") {
        return vec![parse_seed(&seed).unwrap_or_else(|e| panic!("STORMLOG_SEED: {e}"))];
    }
    let count = std::env::var("STORMLOG_SEEDS")
        .ok()
        .map(|n| {
            n.parse::<u64>()
                .unwrap_or_else(|_| panic!("STORMLOG_SEEDS={n}: expected a count"))
        })
        .unwrap_or(DEFAULT_SEEDS);
    (0..count).collect()
}

fn check_scenario(name: &str) {
    let scenario = catalogue::load(name).unwrap();
    let mut failures = Vec::new();
    for seed in seeds() {
        let result = run(&scenario, seed, &RunOptions::default()).unwrap();
        if !result.pass {
            failures.push(format!(
                "{name} seed {}: {}\n    replay: cargo run --release -- replay --scenario {name} --seed {}\n    rerun:  STORMLOG_SEED={} cargo test -p sim --test catalogue {}",
                seed_hex(seed),
                result.reasons.join("; "),
                seed_hex(seed),
                seed_hex(seed),
                name.replace('-', "_"),
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The replication scenarios need a broker that replicates partition data
/// (`sim::replica::broker_replicates`); until then they are left out of the
/// default run (say so, and check that they still parse and build).
fn check_replication_scenario(name: &str) {
    assert!(catalogue::needs_replication(name));
    if !sim::replica::broker_replicates() {
        let scenario = catalogue::load(name).unwrap();
        Run::new(&scenario, 0, &RunOptions::default()).unwrap();
        eprintln!("{name}: not run: the broker does not replicate partitions yet");
        return;
    }
    check_scenario(name);
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal),* $(,)?
     ; replication: $($rtest:ident => $rname:literal),* $(,)?) => {
        $(#[test] fn $test() { check_scenario($name); })*
        $(#[test] fn $rtest() { check_replication_scenario($rname); })*

        /// Every catalogue scenario has a test here.
        #[test]
        fn every_catalogue_scenario_is_tested() {
            let tested: Vec<&str> = vec![$($name,)* $($rname),*];
            for (name, _) in catalogue::CATALOGUE {
                // The group scenarios are tested in `mod groups`.
                if catalogue::needs_groups(name) {
                    continue;
                }
                assert!(tested.contains(name), "add a test for catalogue scenario {name}");
            }
        }
    };
}

scenario_tests! {
    steady => "steady",
    crash_restart => "crash-restart",
    power_loss => "power-loss",
    slow_disk => "slow-disk",
    latent_read_errors => "latent-read-errors",
    silent_corruption => "silent-corruption",
    full_disk => "full-disk",
    client_partitions => "client-partitions",
    clock_skew => "clock-skew",
    pause => "pause",
    retries => "retries",
    retries_non_idempotent => "retries-non-idempotent",
    kitchen_sink => "kitchen-sink",
    page_cache_power_loss => "page-cache-power-loss",
    cluster_steady => "cluster-steady",
    cluster_controller_kill => "cluster-controller-kill",
    cluster_split => "cluster-split",
    cluster_bridge => "cluster-bridge",
    cluster_isolate_controller => "cluster-isolate-controller",
    cluster_one_way_leader => "cluster-one-way-leader",
    cluster_power_loss => "cluster-power-loss",
    cluster_pause => "cluster-pause",
    cluster_5_separate => "cluster-5-separate",
    cluster_kitchen_sink => "cluster-kitchen-sink",
    cluster_snapshot_catch_up => "cluster-snapshot-catch-up",
    cluster_page_cache_power_loss => "cluster-page-cache-power-loss",
    ; replication:
    replication_leader_kill => "replication-leader-kill",
    replication_idempotent_retries => "replication-idempotent-retries",
    replication_leader_power_loss => "replication-leader-power-loss",
    replication_isolate_leader => "replication-isolate-leader",
    replication_majority_minority => "replication-majority-minority",
    replication_bridge => "replication-bridge",
    replication_one_way_to_leader => "replication-one-way-to-leader",
    replication_slow_follower => "replication-slow-follower",
    replication_full_disk_replica => "replication-full-disk-replica",
    replication_rolling_restart => "replication-rolling-restart",
    replication_wipe_broker => "replication-wipe-broker",
    replication_correlated_power_loss => "replication-correlated-power-loss",
    replication_clock_skew => "replication-clock-skew",
    replication_kitchen_sink => "replication-kitchen-sink",
    unsafe_acks1_leader_crash => "unsafe-acks1-leader-crash",
    unsafe_min_insync_1_isolated_leader => "unsafe-min-insync-1-isolated-leader",
    unsafe_unclean_election => "unsafe-unclean-election",
    unsafe_page_cache_correlated_power_loss => "unsafe-page-cache-correlated-power-loss",
    unsafe_wipe_last_isr_member => "unsafe-wipe-last-isr-member",
    safe_acks_all_leader_crash => "safe-acks-all-leader-crash",
    safe_clean_election => "safe-clean-election",
    safe_sync_correlated_power_loss => "safe-sync-correlated-power-loss",
}

/// Seeds that once failed, each a regular test now.
mod regressions {
    use super::*;

    fn must_pass(name: &str, seed: u64) {
        let scenario = catalogue::load(name).unwrap();
        let result = run(&scenario, seed, &RunOptions::default()).unwrap();
        assert!(
            result.pass,
            "{name} {}: {:?}",
            seed_hex(seed),
            result.reasons
        );
    }

    /// A fetch whose first partition was caught up answered before the other
    /// partitions' reads were issued: the consumer never got their data.
    #[test]
    fn crash_restart_seed_0x2_fetch_answers_every_partition() {
        must_pass("crash-restart", 0x2);
    }

    /// Corruption below the recovery point was trusted by every recovery:
    /// the broker went offline again after each restart.
    /// A misdirected write leaves a valid batch where offsets go back: the
    /// producer-sequence-repeat check must not read it as a retry appended twice.
    #[test]
    fn silent_corruption_seeds_0x16_0x17_a_misplaced_batch_is_no_sequence_repeat() {
        must_pass("silent-corruption", 0x16);
        must_pass("silent-corruption", 0x17);
    }

    /// A flipped bit in a batch's base offset (outside its CRC) was served:
    /// a consumer read one value at offsets 771 and 771 + 2^14 (`duplicate`).
    /// Reads now check that base offsets run on from the index entry.
    #[test]
    fn silent_corruption_seed_0x1d_a_damaged_base_offset_is_never_served() {
        must_pass("silent-corruption", 0x1d);
    }

    #[test]
    fn silent_corruption_seed_0xc_recovery_repairs_old_segments() {
        must_pass("silent-corruption", 0xc);
    }

    /// The active controller's own broker registers over a connection to
    /// itself; the simulated network routed by process and echoed its
    /// requests back, so that broker never registered and no RF 3 topic
    /// could be created.
    #[test]
    fn cluster_steady_seed_0x1_a_controller_reaches_its_own_broker() {
        must_pass("cluster-steady", 0x1);
    }

    /// Every new controller renewed the sessions of fenced brokers and
    /// refused their next incarnation as a duplicate: with controllers
    /// killed in turn, restarted brokers stayed fenced and RF 3 creates
    /// failed to the end.
    #[test]
    fn cluster_controller_kill_seed_0x0_a_killed_broker_registers_again() {
        must_pass("cluster-controller-kill", 0x0);
    }

    /// A producer's Metadata auto-created the workload topic with the
    /// default replication factor before the admin created it: a failover
    /// then elected an empty replica (inconsistent-offsets).
    #[test]
    fn cluster_bridge_seed_0x3_the_workload_topic_has_its_replication_factor() {
        must_pass("cluster-bridge", 0x3);
    }

    /// meta.properties written without a sync in page-cache mode came back
    /// empty after a power loss, and every restarted node refused to start.
    #[test]
    fn cluster_page_cache_power_loss_seed_0x1_nodes_start_again_after_power_loss() {
        must_pass("cluster-page-cache-power-loss", 0x1);
    }

    /// Replication: a killed combined node came back, and every new active
    /// controller renewed its old registration's session, so its new
    /// incarnation was refused (DUPLICATE_BROKER_REGISTRATION) to the end and
    /// its replicas never served. A restart on the same storage (its
    /// directory.id) now replaces the live registration at once.
    #[test]
    fn cluster_power_loss_seed_0x0_a_restart_on_the_same_storage_registers_at_once() {
        must_pass("cluster-power-loss", 0x0);
    }

    /// The same stall with separate controllers (no write acknowledged after the heal).
    #[test]
    fn cluster_5_separate_seed_0x0_a_restarted_broker_serves_again() {
        must_pass("cluster-5-separate", 0x0);
    }

    /// The same stall under the kitchen sink.
    #[test]
    fn cluster_kitchen_sink_seed_0x8_a_restarted_broker_serves_again() {
        must_pass("cluster-kitchen-sink", 0x8);
    }

    /// A restarted replica recovered with its high watermark at its log end
    /// (above what was committed), then lowered it to the checkpointed value
    /// (hw-regression, and a window where uncommitted data was readable).
    #[test]
    fn replication_leader_kill_seed_0x0_a_restarted_replica_resumes_from_its_checkpointed_high_watermark(
    ) {
        must_pass("replication-leader-kill", 0x0);
    }

    /// A replica elected from the ISR held less than the high watermark, and
    /// the others truncated acknowledged writes to it (acked-write-truncated).
    /// The leader had asked to add it back to the ISR; its controller
    /// resigned before committing and answered NOT_CONTROLLER, the leader
    /// dropped the pending expansion and moved the high watermark past the
    /// replica, but the next controller committed the expansion and later
    /// elected that replica. An ISR change whose outcome is unknown now stays
    /// pending (counted in the high watermark) and is sent again. Found once
    /// only a follower's own fetch added it back: the periodic check had been
    /// re-asking for the expansion at once, which hid it.
    #[test]
    fn replication_one_way_to_leader_seed_0x73_no_acknowledged_write_is_truncated() {
        must_pass("replication-one-way-to-leader", 0x73);
    }

    /// The leader's periodic ISR check added back a follower that was cut
    /// off, on what its last fetch (before the cut) had shown: the ISR
    /// flapped, and the wiped last ISR member was not the last one, so the
    /// known loss went unfound. Only a follower's own fetch adds it now
    /// (these known-unsafe scenarios pass when they find their anomaly).
    #[test]
    fn unsafe_wipe_last_isr_member_seed_0x87_a_cut_off_follower_stays_out_of_the_isr() {
        must_pass("unsafe-wipe-last-isr-member", 0x87);
        must_pass("unsafe-min-insync-1-isolated-leader", 0x87);
    }
}

/// The consumer-group scenarios (`group-*`), once the broker coordinates
/// groups (`sim::run::broker_has_groups`); until then they are only built.
mod groups {
    use super::*;
    use workloads::history::Op;

    fn check_group_scenario(name: &str) {
        assert!(catalogue::needs_groups(name));
        if !sim::run::broker_has_groups() {
            let scenario = catalogue::load(name).unwrap();
            Run::new(&scenario, 0, &RunOptions::default()).unwrap();
            eprintln!("{name}: not run: the broker does not coordinate groups yet");
            return;
        }
        check_scenario(name);
    }

    macro_rules! group_tests {
        ($($test:ident => $name:literal),* $(,)?) => {
            $(#[test] fn $test() { check_group_scenario($name); })*

            /// Every group scenario of the catalogue has a test here.
            #[test]
            fn every_group_scenario_is_tested() {
                let tested: Vec<&str> = vec![$($name),*];
                for (name, _) in catalogue::CATALOGUE {
                    if catalogue::needs_groups(name) {
                        assert!(tested.contains(name), "add a test for group scenario {name}");
                    }
                }
            }
        };
    }

    group_tests! {
        group_steady => "group-steady",
        group_join_leave => "group-join-leave",
        group_cooperative_join_leave => "group-cooperative-join-leave",
        group_zombie_pause => "group-zombie-pause",
        group_coordinator_crash => "group-coordinator-crash",
        group_coordinator_partition => "group-coordinator-partition",
        group_offsets_leader_move => "group-offsets-leader-move",
        group_static_restart => "group-static-restart",
        group_unsafe_commit_before_process => "group-unsafe-commit-before-process",
        group_kitchen_sink => "group-kitchen-sink",
    }

    /// Regression (group-zombie-pause seed 0): on a cluster, a coordinator
    /// write was acknowledged only when `offsets.commit.timeout.ms` (5 s)
    /// ran out, because a follower's fetch that moved the high watermark
    /// did not tell the coordinator. Commits of the members that were never
    /// paused are acknowledged within a second (simulated time).
    #[test]
    fn group_zombie_pause_seed_0_commits_are_acknowledged_when_replicated() {
        let scenario = catalogue::load("group-zombie-pause").unwrap();
        let (result, history) = Run::new(&scenario, 0, &RunOptions::default())
            .unwrap()
            .finish();
        assert!(result.pass, "{:?}", result.reasons);
        let mut latencies: Vec<u64> = history
            .events
            .iter()
            .filter(|e| matches!(e.op, Op::Commit { .. }))
            .filter(|e| matches!(e.outcome, Some(workloads::history::Outcome::Ok)))
            .filter_map(|e| Some(e.complete_nanos? - e.invoke_nanos))
            .collect();
        latencies.sort_unstable();
        assert!(
            latencies.len() > 100,
            "{} commits acknowledged",
            latencies.len()
        );
        let p99 = latencies[latencies.len() * 99 / 100] / 1_000_000;
        assert!(p99 < 1_000, "commit p99 {p99} ms");
    }

    /// The same seed gives the same run, group members and all.
    #[test]
    fn a_group_run_is_deterministic() {
        if !sim::run::broker_has_groups() {
            return;
        }
        let scenario = catalogue::load("group-cooperative-join-leave").unwrap();
        let a = run(&scenario, 1, &RunOptions::default()).unwrap();
        let b = run(&scenario, 1, &RunOptions::default()).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.events, b.events);
    }

    /// KIP-345: a static member restarted within its session timeout gets
    /// its assignment back in the same generation; nobody else rebalances.
    #[test]
    fn a_static_member_restarts_without_a_rebalance() {
        if !sim::run::broker_has_groups() {
            return;
        }
        let scenario = catalogue::load("group-static-restart").unwrap();
        let (result, history) = Run::new(&scenario, 0, &RunOptions::default())
            .unwrap()
            .finish();
        assert!(result.pass, "{:?}", result.reasons);
        // Generations given out after the members first settled (5 s).
        let mut generations: Vec<(u64, u32, i32)> = history
            .events
            .iter()
            .filter_map(|e| match &e.op {
                Op::Assignment { generation, .. } if e.is_ok() => {
                    Some((e.invoke_nanos / 1_000_000, e.process, *generation))
                }
                _ => None,
            })
            .collect();
        generations.sort_unstable();
        let settled = generations
            .iter()
            .filter(|(t, _, _)| *t < 9_000)
            .map(|(_, _, g)| *g)
            .max()
            .expect("the group formed before the first restart");
        let later: Vec<&(u64, u32, i32)> = generations
            .iter()
            .filter(|(t, _, g)| *t >= 9_000 && *g != settled)
            .collect();
        assert!(
            later.is_empty(),
            "generation {settled} should survive the restarts: {later:?}"
        );
    }

    /// A checker that cannot fail is a defect: the unsafe twin must be caught
    /// on every default seed (check_scenario already demands it); here the
    /// skipped records are also named.
    #[test]
    fn committing_before_processing_is_caught_as_a_group_skip() {
        if !sim::run::broker_has_groups() {
            return;
        }
        let scenario = catalogue::load("group-unsafe-commit-before-process").unwrap();
        let result = run(&scenario, 0, &RunOptions::default()).unwrap();
        let skip = result
            .anomalies
            .iter()
            .find(|a| a.kind == "group-skip")
            .expect("group-skip found");
        assert!(
            skip.explanation.contains("before any member processed"),
            "{skip:?}"
        );
    }
}
