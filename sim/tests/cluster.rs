//! Clusters in the simulated world, tested without the real metadata quorum:
//! node layouts and their properties, faults between nodes blocking exactly
//! the right links, role targets resolved from (synthetic) quorum views,
//! correlated power loss, and the admin client walking its bootstrap list.

use std::collections::BTreeSet;

use broker::node::view::{QuorumRole, QuorumView};
use sim::catalogue;
use sim::fault::Target;
use sim::net::ProcId;
use sim::run::{Run, RunOptions};
use sim::scenario::Scenario;
use sim::world::ProcState;
use workloads::history::Op;

const MS: u64 = 1_000_000;

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(&format!(
        "name = \"t\"\nduration_ms = 6000\nquiet_ms = 2000\n{text}"
    ))
    .unwrap()
}

fn run(text: &str, seed: u64) -> Run {
    Run::new(&scenario(text), seed, &RunOptions { keep_trace: true }).unwrap()
}

/// Every directed pair between the processes of `a` and those of `b`.
fn across(run: &Run, a: &[u32], b: &[u32]) -> BTreeSet<(ProcId, ProcId)> {
    let mut pairs = BTreeSet::new();
    for &x in a {
        for &y in b {
            pairs.insert((run.node_proc(x), run.node_proc(y)));
            pairs.insert((run.node_proc(y), run.node_proc(x)));
        }
    }
    pairs
}

fn fault_notes(run: &Run) -> Vec<String> {
    run.world
        .trace
        .records
        .as_ref()
        .unwrap()
        .iter()
        .filter(|r| r.kind == "fault")
        .map(|r| r.note.clone())
        .collect()
}

fn view(node: u32, role: QuorumRole, epoch: i32, leader: Option<u32>) -> QuorumView {
    QuorumView {
        node_id: node as _,
        is_voter: true,
        role,
        epoch,
        leader: leader.map(|l| l as _),
        voted_for: None,
        high_watermark: None,
        log_start: 0,
        log_end: 0,
        durable_end: 0,
        snapshot: None,
    }
}

/// Show the monitor that `leader` leads `epoch`, followed by `followers`
/// (what the real nodes will report once the quorum is integrated).
fn inject_leader(run: &mut Run, leader: u32, followers: &[u32], epoch: i32) {
    let now = run.world.now;
    let mut views = vec![view(leader, QuorumRole::Leader, epoch, Some(leader))];
    for &f in followers {
        views.push(view(f, QuorumRole::Follower, epoch, Some(leader)));
    }
    for v in views {
        let node = v.node_id as u32;
        let incarnation = run.world.procs[run.node_proc(node) as usize].incarnation;
        run.world
            .monitor
            .observe_quorum(now, node, incarnation, v, |_| None);
    }
}

// ----- layouts and properties -----

#[test]
fn combined_and_separate_layouts_number_nodes_and_generate_kraft_properties() {
    let combined = scenario("brokers = 4\n[cluster]\ncontrollers = 3\n");
    assert_eq!(combined.node_count(), 4);
    assert_eq!(combined.voters(), vec![0, 1, 2]);
    assert_eq!(
        combined.bootstrap(),
        "node-0:9092,node-1:9092,node-2:9092,node-3:9092"
    );
    let p0 = combined.node_properties(0, |_| true);
    assert!(p0.contains("process.roles=broker,controller\n"), "{p0}");
    assert!(p0.contains("node.id=0\n"));
    assert!(p0.contains("controller.quorum.voters=0@node-0:9092,1@node-1:9092,2@node-2:9092\n"));
    assert!(p0.contains("listeners=PLAINTEXT://node-0:9092\n"));
    assert!(p0.contains("controller.listener.names=PLAINTEXT\n"));
    assert!(p0.contains("default.replication.factor=3\n"));
    // Follows the workload topic's replication factor (3 here): 2 from
    // three replicas, as the catalogue's safe configurations use.
    assert!(p0.contains("min.insync.replicas=2\n"), "{p0}");
    let p3 = combined.node_properties(3, |_| true);
    assert!(p3.contains("process.roles=broker\n"), "{p3}");
    // A key the broker does not know yet is left out.
    assert!(!combined
        .node_properties(0, |k| k != "min.insync.replicas")
        .contains("min.insync.replicas"));

    let separate = scenario("brokers = 2\n[cluster]\ncontrollers = 3\ncombined = false\n");
    assert_eq!(separate.node_count(), 5);
    assert_eq!(separate.voters(), vec![2, 3, 4]);
    assert_eq!(separate.bootstrap(), "node-0:9092,node-1:9092");
    // The workload topic and the brokers' default (the admin workload's
    // topics) both get min(3, brokers) replicas.
    assert_eq!(separate.replication_factor(), 2);
    assert_eq!(separate.default_replication_factor(), 2);
    let c = separate.node_properties(2, |_| true);
    assert!(c.contains("process.roles=controller\n"), "{c}");
    assert!(c.contains("controller.quorum.voters=2@node-2:9092,3@node-3:9092,4@node-4:9092\n"));
    assert!(!c.contains("advertised.listeners"));
    let b = separate.node_properties(0, |_| true);
    assert!(b.contains("process.roles=broker\n"));
    assert!(b.contains("advertised.listeners=PLAINTEXT://node-0:9092\n"));

    // The [broker] table goes over the generated properties.
    let over = scenario("brokers = 3\n[broker]\n\"default.replication.factor\" = 2\n");
    assert!(over.cluster_spec().is_some(), "brokers > 1 is a cluster");
    assert!(over
        .node_properties(1, |_| true)
        .contains("default.replication.factor=2\n"));

    let run = Run::new(&separate, 1, &RunOptions::default()).unwrap();
    let names: Vec<&str> = run
        .brokers
        .iter()
        .map(|p| run.world.procs[*p as usize].name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["node-0", "node-1", "node-2", "node-3", "node-4"]
    );
}

#[test]
fn the_legacy_single_broker_keeps_its_config() {
    let steady = catalogue::load("steady").unwrap();
    assert!(steady.cluster_spec().is_none());
    assert_eq!(steady.bootstrap(), "node-0:9092");
    assert_eq!(steady.replication_factor(), 1);
    let props = steady.node_properties(0, |_| true);
    assert_eq!(props, steady.broker_properties());
    assert!(!props.contains("process.roles"));
    let run = Run::new(&steady, 1, &RunOptions::default()).unwrap();
    assert_eq!(run.world.procs[run.brokers[0] as usize].name, "broker-0");
}

#[test]
fn bad_cluster_shapes_are_refused() {
    for (text, why) in [
        ("brokers = 2\n[cluster]\ncontrollers = 3\n", "combined"),
        (
            "brokers = 3\n[topic]\nreplication_factor = 4\n",
            "replication_factor",
        ),
        (
            "brokers = 3\n[[schedule]]\nat_ms = 1\nfault = \"kill\"\ntarget = \"node:3\"\n",
            "node:3",
        ),
        (
            "brokers = 3\n[nemesis]\nkinds = [\"kill\"]\ntargets = [\"leader:7\"]\n",
            "leader:7",
        ),
        (
            "brokers = 3\n[nemesis]\nkinds = [\"kill\"]\ntargets = [\"boss\"]\n",
            "boss",
        ),
    ] {
        let err = Scenario::from_toml(&format!("name = \"t\"\n{text}")).unwrap_err();
        assert!(err.0.contains(why), "{text}: {err}");
    }
}

#[test]
fn every_cluster_catalogue_scenario_builds() {
    let mut clusters = 0;
    for s in catalogue::all() {
        if s.cluster_spec().is_none() {
            continue;
        }
        assert!(
            ["cluster-", "replication-", "unsafe-", "safe-", "group-"]
                .iter()
                .any(|p| s.name.starts_with(p)),
            "{}",
            s.name
        );
        clusters += 1;
        let run =
            Run::new(&s, 0, &RunOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(run.brokers.len() as u32, s.node_count(), "{}", s.name);
        assert!(!s.voters().is_empty());
    }
    assert!(clusters >= 11, "{clusters} cluster scenarios");
}

#[test]
fn replication_knobs_reach_topic_configs_and_the_safety_promise() {
    let safe = catalogue::load("replication-leader-kill").unwrap();
    assert_eq!(safe.replication_factor(), 3);
    assert_eq!(safe.min_insync_replicas(), 2);
    assert!(safe.promises_acked_writes());
    assert_eq!(
        safe.topic_configs(),
        vec![("min.insync.replicas".to_string(), "2".to_string())]
    );
    // Defaults once the broker replicates: RF min(3, brokers), min.insync 2.
    let plain = scenario("brokers = 3\n");
    assert_eq!(plain.replication_factor_when(true), 3);
    assert_eq!(plain.replication_factor_when(false), 1);
    let unclean = catalogue::load("unsafe-unclean-election").unwrap();
    assert!(unclean.unclean_leader_election());
    assert!(!unclean.promises_acked_writes());
    assert!(unclean
        .topic_configs()
        .contains(&("unclean.leader.election.enable".into(), "true".into())));
    // A broker that does not know a replication property does not get it.
    assert!(!unclean
        .node_properties(0, |k| k != "unclean.leader.election.enable")
        .contains("unclean.leader.election.enable"));
    assert!(unclean
        .node_properties(0, |_| true)
        .contains("unclean.leader.election.enable=true\n"));
    for name in [
        "unsafe-acks1-leader-crash",
        "unsafe-min-insync-1-isolated-leader",
        "unsafe-page-cache-correlated-power-loss",
    ] {
        let s = catalogue::load(name).unwrap();
        assert!(!s.promises_acked_writes(), "{name}");
        assert_eq!(s.expect, vec!["lost-write".to_string()], "{name}");
    }
}

#[test]
fn split_brokers_cuts_a_node_from_the_other_brokers_only() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\ncombined = false\n[[schedule]]\nat_ms = 1000\nfault = \"split-brokers\"\ntarget = \"node:0\"\nduration_ms = 2000\n",
        3,
    );
    r.run_until(1_000 * MS);
    let (b0, b1, b2, c3) = (
        r.node_proc(0),
        r.node_proc(1),
        r.node_proc(2),
        r.node_proc(3),
    );
    let links = &r.world.net.links;
    assert!(links.is_blocked(b0, b1) && links.is_blocked(b1, b0));
    assert!(links.is_blocked(b0, b2) && links.is_blocked(b2, b0));
    assert!(!links.is_blocked(b0, c3) && !links.is_blocked(c3, b0));
    assert!(!links.is_blocked(b1, b2));
    r.run_until(3_000 * MS);
    assert!(!r.world.net.links.is_blocked(b0, b1));
}

#[test]
fn a_follower_target_is_a_replica_that_does_not_lead() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[topic]\nreplication_factor = 3\n",
        1,
    );
    r.run_until(8_000 * MS);
    let leader = r.partition_leader(0).expect("a leader after 8 s");
    let (replicas, named) = r.partition_replicas(0);
    assert_eq!(named, Some(leader));
    assert_eq!(replicas.len(), 3);
    for _ in 0..10 {
        let picked = r.resolve(sim::fault::Target::Follower(0));
        assert_eq!(picked.len(), 1);
        assert_ne!(picked[0], leader);
        assert!(replicas.contains(&picked[0]));
    }
}

#[test]
fn an_orderly_shutdown_stops_the_node_and_the_heal_starts_it() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[[schedule]]\nat_ms = 2000\nfault = \"shutdown\"\ntarget = \"node:2\"\nduration_ms = 3000\n",
        2,
    );
    r.run_until(4_900 * MS);
    let p = r.node_proc(2);
    assert_eq!(r.world.procs[p as usize].state, ProcState::Down);
    r.run_until(5_100 * MS);
    assert_eq!(r.world.procs[p as usize].state, ProcState::Up);
}

// ----- faults between nodes -----

#[test]
fn a_split_blocks_exactly_the_links_across_it_and_heals() {
    let mut r = run(
        "brokers = 5\n[cluster]\ncontrollers = 5\n[[schedule]]\nat_ms = 1000\nfault = \"split\"\ntarget = \"minority\"\nduration_ms = 2000\n",
        3,
    );
    r.run_until(1_000 * MS);
    let side = r.struck[0].clone();
    assert_eq!(side.len(), 2, "a minority of five voters");
    let other: Vec<u32> = (0..5).filter(|n| !side.contains(n)).collect();
    assert_eq!(r.world.net.links.blocked, across(&r, &side, &other));
    assert!(r.world.net.links.clogged.is_empty());
    assert!(fault_notes(&r)
        .iter()
        .any(|n| n.starts_with("strike split: nodes {")));
    r.run_until(3_001 * MS);
    assert!(r.world.net.links.blocked.is_empty(), "healed");
}

#[test]
fn isolating_a_node_cuts_it_from_nodes_and_clients_only() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[[schedule]]\nat_ms = 500\nfault = \"isolate\"\ntarget = \"node:1\"\nduration_ms = 1000\n",
        1,
    );
    r.run_until(500 * MS);
    let p1 = r.node_proc(1);
    let mut expected = BTreeSet::new();
    for q in 0..r.world.procs.len() as ProcId {
        if q != p1 {
            expected.insert((p1, q));
            expected.insert((q, p1));
        }
    }
    assert!(
        expected.contains(&(r.admin, p1)),
        "the admin is cut off too"
    );
    assert_eq!(r.world.net.links.blocked, expected);
    r.run_until(1_501 * MS);
    assert!(r.world.net.links.blocked.is_empty());
}

#[test]
fn a_bridge_joins_two_halves_through_one_node() {
    let mut r = run(
        "brokers = 5\n[cluster]\ncontrollers = 5\n[[schedule]]\nat_ms = 500\nfault = \"bridge\"\ntarget = \"node:2\"\nduration_ms = 1000\n",
        7,
    );
    r.run_until(500 * MS);
    assert_eq!(r.struck[0], vec![2]);
    let bridge = r.node_proc(2);
    let blocked = r.world.net.links.blocked.clone();
    assert!(blocked.iter().all(|(a, b)| *a != bridge && *b != bridge));
    // Four nodes in two halves of two: 2 x 2 pairs, both ways.
    assert_eq!(blocked.len(), 8);
    let note = fault_notes(&r)
        .into_iter()
        .find(|n| n.starts_with("strike bridge"))
        .unwrap();
    assert!(note.contains("| node 2 |"), "{note}");
    // Each node outside the bridge is cut from exactly two others.
    for n in [0u32, 1, 3, 4] {
        let p = r.node_proc(n);
        assert_eq!(blocked.iter().filter(|(a, _)| *a == p).count(), 2);
    }
    r.run_until(1_501 * MS);
    assert!(r.world.net.links.blocked.is_empty());
}

#[test]
fn one_way_loss_towards_the_leader_drops_only_what_goes_to_it() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[[schedule]]\nat_ms = 1000\nfault = \"one-way-to-leader\"\ntarget = \"controller\"\nduration_ms = 1000\n",
        2,
    );
    r.run_until(999 * MS);
    inject_leader(&mut r, 2, &[0, 1], 3);
    r.run_until(1_000 * MS);
    let leader = r.node_proc(2);
    let expected: BTreeSet<(ProcId, ProcId)> =
        [(r.node_proc(0), leader), (r.node_proc(1), leader)].into();
    assert_eq!(r.world.net.links.blocked, expected);
    assert_eq!(r.struck[0], vec![0, 1]);
    r.run_until(2_001 * MS);
    assert!(r.world.net.links.blocked.is_empty());
}

#[test]
fn overlapping_faults_release_a_shared_link_at_the_last_heal() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n\
         [[schedule]]\nat_ms = 500\nfault = \"isolate\"\ntarget = \"node:0\"\nduration_ms = 1000\n\
         [[schedule]]\nat_ms = 700\nfault = \"split\"\ntarget = \"node:0\"\nduration_ms = 2000\n",
        1,
    );
    r.run_until(1_600 * MS);
    // The isolation healed; the split still cuts node 0 from the others.
    assert_eq!(r.world.net.links.blocked, across(&r, &[0], &[1, 2]));
    r.run_until(2_701 * MS);
    assert!(r.world.net.links.blocked.is_empty());
}

// ----- role targets -----

#[test]
fn role_targets_resolve_from_the_quorum_views() {
    let mut r = run("brokers = 5\n[cluster]\ncontrollers = 3\n", 5);
    r.run_until(100 * MS);
    inject_leader(&mut r, 1, &[0, 2], 7);
    assert_eq!(r.world.monitor.quorum_leader(), Some((1, 7)));
    assert_eq!(r.world.monitor.leader_since(0), Some(100 * MS));
    assert_eq!(r.resolve(Target::Controller), vec![1]);
    let voters = [0u32, 1, 2];
    let majority = r.resolve(Target::Majority);
    assert_eq!(majority.len(), 2);
    assert!(majority.iter().all(|n| voters.contains(n)));
    let minority = r.resolve(Target::Minority);
    assert_eq!(minority.len(), 1);
    assert!(voters.contains(&minority[0]));
    assert_eq!(r.resolve(Target::Voters), vec![0, 1, 2]);
    assert_eq!(r.resolve(Target::All), vec![0, 1, 2, 3, 4]);
    assert_eq!(r.resolve(Target::Any).len(), 1);
    assert_eq!(r.resolve(Target::Node(4)), vec![4]);
    let notes = fault_notes(&r);
    assert!(notes
        .iter()
        .any(|n| n == "target controller: node 1 (quorum leader of epoch 7)"));
    // A newer epoch's leader wins.
    inject_leader(&mut r, 2, &[0], 8);
    assert_eq!(r.resolve(Target::Controller), vec![2]);
}

#[test]
fn role_targets_without_views_fall_back_deterministically() {
    let picks = |seed| {
        let mut r = run("brokers = 3\n[cluster]\ncontrollers = 3\n", seed);
        let picks: Vec<Vec<u32>> = (0..6)
            .map(|i| {
                r.resolve(if i % 2 == 0 {
                    Target::Controller
                } else {
                    Target::Leader(0)
                })
            })
            .collect();
        assert!(fault_notes(&r).iter().any(|n| n.contains("falls back")));
        picks
    };
    assert_eq!(picks(11), picks(11));
    assert!(picks(11).iter().all(|p| p.len() == 1 && p[0] < 3));
}

// ----- process faults by role -----

#[test]
fn correlated_power_loss_crashes_exactly_the_struck_nodes() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[[schedule]]\nat_ms = 1000\nfault = \"crash\"\ntarget = \"majority\"\nduration_ms = 2000\n",
        4,
    );
    r.run_until(1_000 * MS);
    let struck = r.struck[0].clone();
    assert_eq!(struck.len(), 2);
    for n in 0..3u32 {
        let state = r.world.procs[r.node_proc(n) as usize].state;
        let want = if struck.contains(&n) {
            ProcState::Down
        } else {
            ProcState::Up
        };
        assert_eq!(state, want, "node {n}");
    }
    r.run_until(3_001 * MS);
    for n in 0..3u32 {
        assert_eq!(r.world.procs[r.node_proc(n) as usize].state, ProcState::Up);
    }

    // In separate mode the voters are the controller-only nodes.
    let mut r = run(
        "brokers = 2\n[cluster]\ncontrollers = 3\ncombined = false\n[[schedule]]\nat_ms = 500\nfault = \"crash\"\ntarget = \"voters\"\nduration_ms = 1000\n",
        4,
    );
    r.run_until(500 * MS);
    assert_eq!(r.struck[0], vec![2, 3, 4]);
    let down: Vec<u32> = (0..5u32)
        .filter(|n| r.world.procs[r.node_proc(*n) as usize].state == ProcState::Down)
        .collect();
    assert_eq!(down, vec![2, 3, 4]);
}

#[test]
fn killing_the_controller_kills_the_node_the_views_name_and_is_traced() {
    let mut r = run(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[[schedule]]\nat_ms = 1000\nfault = \"kill\"\ntarget = \"controller\"\nduration_ms = 500\n",
        6,
    );
    r.run_until(999 * MS);
    inject_leader(&mut r, 1, &[0, 2], 2);
    r.run_until(1_000 * MS);
    assert_eq!(r.struck[0], vec![1]);
    assert_eq!(
        r.world.procs[r.node_proc(1) as usize].state,
        ProcState::Down
    );
    // The dead leader's view is gone: no leader is followed any more.
    assert_eq!(r.world.monitor.quorum_leader(), None);
    assert_eq!(r.world.monitor.leadership().last().unwrap().1, None);
    assert!(r.world.monitor.views().all(|(n, _)| n != 1));
    let notes = fault_notes(&r);
    assert!(notes
        .iter()
        .any(|n| n.contains("target controller: node 1")));
    assert!(notes.iter().any(|n| n == "strike kill"));
}

// ----- the admin client and workload -----

#[test]
fn admin_workload_records_creates_and_the_run_still_judges_clean() {
    let s = scenario("[workload]\nadmin_create_every_ms = 500\n");
    let (result, history) = Run::new(&s, 1, &RunOptions::default()).unwrap().finish();
    let creates: Vec<_> = history.create_topics().collect();
    assert!(creates.len() >= 10, "{}", creates.len());
    assert!(creates.iter().all(|(e, _)| e.is_ok()), "{creates:?}");
    assert_eq!(creates[0].1, "events-a0");
    assert_eq!(result.creates.ok, creates.len());
    assert!(result.pass, "{:?}", result.reasons);
    assert!(history
        .events
        .iter()
        .any(|e| matches!(e.op, Op::Send { .. })));
}

#[test]
fn the_admin_moves_along_its_bootstrap_list_when_a_node_dies() {
    // Topics of one replica (the admin workload's take the brokers'
    // default) fit on the two brokers left while node 0 is down; node 0 may
    // be the active controller, so the window leaves time for an election.
    let s = scenario(
        "brokers = 3\n[cluster]\ncontrollers = 3\n[topic]\nreplication_factor = 1\n\
         [broker]\n\"default.replication.factor\" = 1\n\
         [workload]\nadmin_create_every_ms = 200\nrequest_timeout_ms = 1000\n\
         [[schedule]]\nat_ms = 6000\nfault = \"kill\"\ntarget = \"node:0\"\nduration_ms = 6000\n",
    );
    let mut r = Run::new(&s, 2, &RunOptions::default()).unwrap();
    r.run_until(11_900 * MS);
    let history = r.history();
    let during: Vec<_> = history
        .create_topics()
        .filter(|(e, _)| e.invoke_nanos > 6_500 * MS && e.invoke_nanos < 11_900 * MS)
        .collect();
    assert!(
        during.iter().any(|(e, _)| e.is_ok()),
        "creates succeed on another node while node 0 is down: {during:?}"
    );
    assert!(history
        .create_topics()
        .any(|(e, _)| e.invoke_nanos < 6_000 * MS && e.is_ok()));
}

#[test]
fn cluster_scenarios_round_trip_through_toml() {
    for name in [
        "cluster-kitchen-sink",
        "cluster-page-cache-power-loss",
        "cluster-5-separate",
    ] {
        let s = catalogue::load(name).unwrap();
        let again = Scenario::from_toml(&s.to_toml()).unwrap();
        assert_eq!(again.cluster, s.cluster, "{name}");
        assert_eq!(again.nemesis.targets, s.nemesis.targets, "{name}");
        assert_eq!(again.schedule, s.schedule, "{name}");
        assert_eq!(again.nodes(), s.nodes(), "{name}");
    }
    let text = catalogue::load("steady").unwrap().to_toml();
    assert!(
        !text.contains("cluster") && !text.contains("target"),
        "{text}"
    );
}
