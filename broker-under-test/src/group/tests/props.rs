//! Random interleavings of a few consumers' requests, timers and append
//! completions (some failing), checked against the coordinator's invariants
//! and against a replay of everything that was replicated.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::harness::*;
use crate::group::group::GroupState;
use crate::group::*;

#[derive(Debug, Clone)]
enum Op {
    Join(usize, bool),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Commit(usize, u8, i64),
    CommitOutside(u8, i64),
    Advance(i64),
    Complete,
    Fail(i16),
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..3usize;
    prop_oneof![
        3 => (client.clone(), any::<bool>()).prop_map(|(c, k)| Op::Join(c, k)),
        3 => client.clone().prop_map(Op::Sync),
        2 => client.clone().prop_map(Op::Heartbeat),
        1 => client.clone().prop_map(Op::Leave),
        2 => (client, 0..3u8, 0..1000i64).prop_map(|(c, p, o)| Op::Commit(c, p, o)),
        1 => (0..3u8, 0..1000i64).prop_map(|(p, o)| Op::CommitOutside(p, o)),
        3 => (0..25_000i64).prop_map(Op::Advance),
        4 => Just(Op::Complete),
        1 => prop_oneof![
            Just(code::NOT_LEADER_OR_FOLLOWER),
            Just(code::REQUEST_TIMED_OUT),
            Just(code::NOT_ENOUGH_REPLICAS)
        ]
        .prop_map(Op::Fail),
    ]
}

/// A group's committed offsets as its view shows them.
type Offsets = Vec<((String, i32), i64)>;

/// What one simulated consumer knows.
#[derive(Debug, Default, Clone)]
struct Client {
    member_id: String,
    instance: Option<String>,
    generation: i32,
    /// Members to assign to when it leads.
    members: Vec<String>,
}

enum Asked {
    Join(usize),
    /// A SyncGroup for this generation.
    Sync(i32),
    Other,
}

struct World {
    h: H,
    clients: Vec<Client>,
    asked: BTreeMap<ReqId, Asked>,
    generation_seen: i32,
}

impl World {
    fn new() -> World {
        let mut clients = vec![Client::default(); 3];
        clients[2].instance = Some("static".into());
        World {
            h: H::new(GroupConfig {
                initial_rebalance_delay_ms: 1_000,
                ..config()
            }),
            clients,
            asked: BTreeMap::new(),
            generation_seen: 0,
        }
    }

    fn run(&mut self, op: Op) {
        let offsets_before = self.offsets();
        let completes = matches!(op, Op::Complete);
        match op {
            Op::Join(i, require) => {
                let c = &self.clients[i];
                let mut r = join_request("g", &c.member_id, c.instance.as_deref(), range(&["t"]));
                r.require_known_member_id = require;
                let req = self.h.join_req(r);
                self.asked.insert(req, Asked::Join(i));
            }
            Op::Sync(i) => {
                let c = self.clients[i].clone();
                let plan: Vec<(String, Vec<u8>)> = c
                    .members
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (m.clone(), vec![c.generation as u8, k as u8]))
                    .collect();
                let refs: Vec<(&str, &[u8])> = plan
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_slice()))
                    .collect();
                let req = self.h.sync(&c.member_id, c.generation, &refs);
                self.asked.insert(req, Asked::Sync(c.generation));
            }
            Op::Heartbeat(i) => {
                let c = self.clients[i].clone();
                let e = self
                    .h
                    .heartbeat(&c.member_id, c.instance.as_deref(), c.generation);
                if e == code::UNKNOWN_MEMBER_ID || e == code::FENCED_INSTANCE_ID {
                    self.clients[i].member_id.clear();
                }
            }
            Op::Leave(i) => {
                let c = self.clients[i].clone();
                self.h.leave(&[(&c.member_id, c.instance.as_deref())]);
                self.clients[i].member_id.clear();
            }
            Op::Commit(i, p, o) => {
                let c = self.clients[i].clone();
                let mut r = commit_request("g", &c.member_id, c.generation, &[("t", p as i32, o)]);
                r.group_instance_id = c.instance;
                let req = self.h.commit_req(r);
                self.asked.insert(req, Asked::Other);
            }
            Op::CommitOutside(p, o) => {
                let req = self.h.commit("", -1, &[("u", p as i32, o)]);
                self.asked.insert(req, Asked::Other);
            }
            Op::Advance(ms) => self.h.advance(ms),
            Op::Complete => {
                if !self.h.appends.is_empty() {
                    self.h.complete_next(Ok(()));
                }
            }
            Op::Fail(e) => {
                if !self.h.appends.is_empty() {
                    self.h.complete_next(Err(e));
                }
            }
        }
        if !completes {
            assert_eq!(
                self.offsets(),
                offsets_before,
                "offsets changed without a completed append"
            );
        }
        self.learn();
        self.check();
    }

    fn offsets(&self) -> Vec<(String, Offsets)> {
        let views = self.h.c.views().into_iter();
        views
            .filter(|v| !v.offsets.is_empty())
            .map(|v| (v.group_id, v.offsets))
            .collect()
    }

    /// Clients learn from their answers.
    fn learn(&mut self) {
        let replies = std::mem::take(&mut self.h.replies);
        for (req, reply) in replies {
            let asked = self
                .asked
                .remove(&req)
                .expect("an answer to a request made");
            match (asked, reply) {
                (Asked::Join(i), Reply::Join(r)) => {
                    let c = &mut self.clients[i];
                    if r.error == 0 {
                        c.member_id = r.member_id;
                        c.generation = r.generation_id;
                        c.members = r.members.into_iter().map(|m| m.member_id).collect();
                    } else if r.error == code::MEMBER_ID_REQUIRED {
                        c.member_id = r.member_id;
                    } else if r.error == code::UNKNOWN_MEMBER_ID
                        || r.error == code::FENCED_INSTANCE_ID
                    {
                        c.member_id.clear();
                    }
                }
                (Asked::Sync(generation), Reply::Sync(r)) => {
                    // Never an assignment of another generation.
                    if r.error == 0 && !r.assignment.is_empty() {
                        assert_eq!(r.assignment[0], generation as u8);
                    }
                }
                (Asked::Other, _) => {}
                (_, other) => panic!("unexpected answer {other:?}"),
            }
        }
    }

    fn check(&mut self) {
        let Some(g) = self.h.c.groups.get("g") else {
            return;
        };
        assert!(
            g.generation_id >= self.generation_seen,
            "generations only increase"
        );
        self.generation_seen = g.generation_id;
        if g.is(GroupState::Stable) {
            for m in g.members.values() {
                assert_eq!(
                    m.assignment_generation, g.generation_id,
                    "{} unassigned",
                    m.member_id
                );
            }
        }
        assert_eq!(
            g.leader_id.is_some(),
            !g.members.is_empty(),
            "a group with members has a leader among them"
        );
        if let Some(l) = &g.leader_id {
            assert!(g.members.contains_key(l));
        }
    }

    /// Everything replicated, replayed into a fresh coordinator, gives the
    /// same committed offsets, and the same generation, protocol and leader
    /// for a Stable group with nothing in flight.
    fn check_replay(&self) {
        let replayed = self.h.replayed();
        let by_id = |c: &Coordinator| -> BTreeMap<String, Offsets> {
            c.views()
                .into_iter()
                .filter(|v| !v.offsets.is_empty())
                .map(|v| (v.group_id, v.offsets))
                .collect()
        };
        assert_eq!(
            by_id(&replayed),
            by_id(&self.h.c),
            "offsets differ from the log's"
        );
        let ours = self.h.c.groups.get("g");
        if let Some(g) = ours.filter(|g| g.is(GroupState::Stable) && self.h.appends.is_empty()) {
            let theirs = replayed
                .groups
                .get("g")
                .expect("a Stable group was persisted");
            assert_eq!(
                (
                    theirs.generation_id,
                    &theirs.protocol_name,
                    &theirs.leader_id
                ),
                (g.generation_id, &g.protocol_name, &g.leader_id)
            );
            let ids = |g: &group::ClassicGroup| g.members.keys().cloned().collect::<Vec<_>>();
            assert_eq!(ids(theirs), ids(g));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in ops {
            w.run(op);
            if w.h.appends.is_empty() {
                w.check_replay();
            }
        }
        w.h.complete_all();
        w.learn();
        w.check();
        w.check_replay();
    }
}

/// A fixed long history, so that the rebalance paths are surely visited.
#[test]
fn a_busy_history_keeps_the_invariants() {
    let mut w = World::new();
    for round in 0..40i64 {
        for i in 0..3 {
            w.run(Op::Join(i, round % 2 == 0));
            w.run(Op::Advance(1_500));
            w.run(Op::Sync(i));
            w.run(Op::Complete);
            w.run(Op::Heartbeat(i));
            w.run(Op::Commit(i, (round % 3) as u8, round));
            if round % 7 == i as i64 {
                w.run(Op::Fail(code::NOT_LEADER_OR_FOLLOWER));
            }
            w.run(Op::Complete);
        }
        if round % 5 == 0 {
            w.run(Op::Leave((round % 3) as usize));
        }
        w.run(Op::Advance(4_000 * (round % 4)));
    }
    // Everyone rejoins and syncs: the history ends Stable, so that the
    // replay comparison covers the group too.
    w.run(Op::Advance(REBALANCE as i64 * 2));
    w.h.complete_all();
    for i in 0..3 {
        w.run(Op::Join(i, false));
    }
    w.run(Op::Advance(3_500));
    for i in 0..3 {
        w.run(Op::Sync(i));
    }
    w.h.complete_all();
    w.learn();
    let g = &w.h.c.groups["g"];
    assert!(g.is(GroupState::Stable), "{:?}", g.state);
    assert!(g.generation_id > 5);
    w.check_replay();
}
