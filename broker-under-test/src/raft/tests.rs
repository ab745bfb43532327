//! Scripted, deterministic unit tests of the quorum core: single nodes driven
//! by hand, and a small synchronous cluster (instant delivery, optional
//! partitions, storage that acknowledges at once unless told not to).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn cfg(id: NodeId, voters: &[NodeId]) -> RaftConfig {
    RaftConfig::new(id, voters.to_vec())
}

fn drain(r: &mut Raft) -> Vec<Action> {
    let mut v = Vec::new();
    while let Some(a) = r.poll_action() {
        v.push(a);
    }
    v
}

/// Drains, acknowledging state writes, log appends and installs at once.
fn ack_all(r: &mut Raft, now: u64) -> Vec<Action> {
    let mut seen = Vec::new();
    while let Some(a) = r.poll_action() {
        match &a {
            Action::PersistState { version, .. } => r.on_state_persisted(now, *version),
            Action::AppendLog { .. } => {
                let end = r.log_end();
                r.on_log_durable(now, end)
            }
            Action::InstallSnapshot { snapshot } => {
                r.on_snapshot_installed(now, snapshot.end_offset)
            }
            _ => {}
        }
        seen.push(a);
    }
    seen
}

fn responses(actions: &[Action]) -> Vec<(u64, Response)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Respond { token, response } => Some((*token, response.clone())),
            _ => None,
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<(NodeId, Request)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, request } => Some((*to, request.clone())),
            _ => None,
        })
        .collect()
}

fn vote_resp(epoch: i32, granted: bool, pre_vote: bool) -> Response {
    Response::Vote {
        epoch,
        leader: None,
        granted,
        pre_vote,
        error: None,
    }
}

/// Node 1 of `voters` made leader of epoch 1 by hand (votes from node 2).
fn make_leader(voters: &[NodeId]) -> (Raft, u64) {
    let mut r = Raft::new(cfg(1, voters), Recovered::default(), 0, 7);
    ack_all(&mut r, 0);
    let now = r.next_deadline().expect("election timer");
    r.tick(now);
    assert_eq!(r.role(), Role::Prospective);
    ack_all(&mut r, now);
    r.handle_response(now, 2, vote_resp(0, true, true));
    assert_eq!(r.role(), Role::Candidate);
    assert_eq!(r.epoch(), 1);
    ack_all(&mut r, now);
    r.handle_response(now, 2, vote_resp(1, true, false));
    assert_eq!(r.role(), Role::Leader);
    ack_all(&mut r, now);
    (r, now)
}

/// Observable state that bad inputs must not change.
fn snapshot_of(r: &Raft) -> (Role, i32, Option<NodeId>, Option<NodeId>, i64, Option<i64>) {
    (
        r.role(),
        r.epoch(),
        r.voted_for(),
        r.leader(),
        r.log_end(),
        r.high_watermark(),
    )
}

// ---------------------------------------------------------------------------
// A synchronous in-test cluster.

struct TNode {
    raft: Raft,
    /// The caller's log (what AppendLog/TruncateLog/InstallSnapshot made).
    log: Vec<Entry>,
    auto_persist: bool,
    auto_durable: bool,
    /// Every action seen, for assertions.
    history: Vec<Action>,
}

enum Msg {
    Req {
        from: NodeId,
        to: NodeId,
        req: Request,
    },
    Resp {
        from: NodeId,
        to: NodeId,
        resp: Response,
    },
}

struct Cluster {
    now: u64,
    nodes: BTreeMap<NodeId, TNode>,
    queue: VecDeque<Msg>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    tokens: BTreeMap<u64, (NodeId, NodeId)>,
    next_token: u64,
}

impl Cluster {
    fn new(voters: &[NodeId], observers: &[NodeId]) -> Cluster {
        Self::with(voters, observers, |_| {}, |_| Recovered::default())
    }

    fn with(
        voters: &[NodeId],
        observers: &[NodeId],
        tweak: impl Fn(&mut RaftConfig),
        recovered: impl Fn(NodeId) -> Recovered,
    ) -> Cluster {
        let mut nodes = BTreeMap::new();
        for &id in voters.iter().chain(observers) {
            let mut c = cfg(id, voters);
            tweak(&mut c);
            let rec = recovered(id);
            let log = rec.entries.clone();
            nodes.insert(
                id,
                TNode {
                    raft: Raft::new(c, rec, 0, 1000 + id as u64),
                    log,
                    auto_persist: true,
                    auto_durable: true,
                    history: Vec::new(),
                },
            );
        }
        let mut c = Cluster {
            now: 0,
            nodes,
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            tokens: BTreeMap::new(),
            next_token: 1,
        };
        let ids: Vec<NodeId> = c.nodes.keys().copied().collect();
        for id in ids {
            c.process(id);
        }
        c
    }

    fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id].raft
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        &mut self.nodes.get_mut(&id).expect("node").raft
    }

    fn process(&mut self, id: NodeId) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        while let Some(a) = n.raft.poll_action() {
            match &a {
                Action::PersistState { version, .. } => {
                    if n.auto_persist {
                        n.raft.on_state_persisted(now, *version);
                    }
                }
                Action::AppendLog { entries } => {
                    n.log.extend(entries.iter().cloned());
                    if n.auto_durable {
                        let end = n.raft.log_end();
                        n.raft.on_log_durable(now, end);
                    }
                }
                Action::TruncateLog { from } => n.log.retain(|e| e.offset < *from),
                Action::InstallSnapshot { snapshot } => {
                    n.log.clear();
                    n.raft.on_snapshot_installed(now, snapshot.end_offset);
                }
                Action::DeleteLogPrefix { before } => n.log.retain(|e| e.offset >= *before),
                Action::Send { to, request } => self.queue.push_back(Msg::Req {
                    from: id,
                    to: *to,
                    req: request.clone(),
                }),
                Action::Respond { token, response } => {
                    if let Some((server, client)) = self.tokens.remove(token) {
                        assert_eq!(server, id, "token answered by the wrong node");
                        self.queue.push_back(Msg::Resp {
                            from: id,
                            to: client,
                            resp: response.clone(),
                        });
                    } else {
                        panic!("unknown or twice-answered token {token}");
                    }
                }
                Action::Committed { .. } | Action::LeaderChanged { .. } => {}
            }
            n.history.push(a);
        }
    }

    fn deliver_all(&mut self) {
        let mut budget = 100_000;
        while let Some(m) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "message storm");
            let now = self.now;
            match m {
                Msg::Req { from, to, req } => {
                    let token = self.next_token;
                    self.next_token += 1;
                    if self.blocked.contains(&(from, to)) || !self.nodes.contains_key(&to) {
                        continue;
                    }
                    self.tokens.insert(token, (to, from));
                    self.node_mut(to).handle_request(now, token, req);
                    self.process(to);
                }
                Msg::Resp { from, to, resp } => {
                    if self.blocked.contains(&(from, to)) {
                        continue;
                    }
                    self.node_mut(to).handle_response(now, from, resp);
                    self.process(to);
                }
            }
        }
    }

    /// Advances time in steps of `step` ms for `ms` ms.
    fn run(&mut self, ms: u64, step: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += step;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let now = self.now;
                self.node_mut(id).tick(now);
                self.process(id);
            }
            self.deliver_all();
        }
    }

    fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for o in ids {
            if o != id {
                self.blocked.insert((id, o));
                self.blocked.insert((o, id));
            }
        }
    }

    fn heal(&mut self) {
        self.blocked.clear();
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.role() == Role::Leader)
            .map(|(&id, _)| id)
            .collect()
    }

    fn leader(&self) -> NodeId {
        let l = self.leaders();
        assert_eq!(l.len(), 1, "expected exactly one leader, got {l:?}");
        l[0]
    }

    fn propose(&mut self, data: &[&str]) -> i64 {
        let l = self.leader();
        let now = self.now;
        let off = self
            .node_mut(l)
            .propose(now, data.iter().map(|s| b(s)).collect())
            .expect("leader accepts");
        self.process(l);
        self.deliver_all();
        off
    }
}

// ---------------------------------------------------------------------------

#[test]
fn single_voter_elects_itself_at_once() {
    let mut r = Raft::new(cfg(1, &[1]), Recovered::default(), 0, 1);
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.epoch(), 1);
    let actions = drain(&mut r);
    assert!(matches!(
        actions[0],
        Action::PersistState {
            version: 1,
            epoch: 1,
            voted_for: Some(1),
            leader: None
        }
    ));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistState {
            epoch: 1,
            voted_for: Some(1),
            leader: Some(1),
            ..
        }
    )));
    let append = actions.iter().find_map(|a| match a {
        Action::AppendLog { entries } => Some(entries.clone()),
        _ => None,
    });
    let append = append.expect("LeaderChange appended");
    assert_eq!(append.len(), 1);
    assert_eq!(append[0].kind, EntryKind::LeaderChange);
    assert_eq!(append[0].offset, 0);
    assert_eq!(r.high_watermark(), None, "not durable yet");
    r.on_log_durable(0, 1);
    assert_eq!(r.high_watermark(), Some(1));
    assert!(drain(&mut r).contains(&Action::Committed { high_watermark: 1 }));
    assert_eq!(r.propose(1, vec![b("a"), b("b")]), Ok(2));
    drain(&mut r);
    r.on_log_durable(1, 3);
    assert_eq!(r.high_watermark(), Some(3));

    // Restart from its durable state: still elects itself at once, in a new epoch.
    let rec = Recovered {
        epoch: 1,
        voted_for: Some(1),
        leader: Some(1),
        snapshot: None,
        entries: r.entries(0, 10).to_vec(),
    };
    let r2 = Raft::new(cfg(1, &[1]), rec, 5, 2);
    assert_eq!(r2.role(), Role::Leader);
    assert_eq!(r2.epoch(), 2);
    assert_eq!(r2.log_end(), 4);
}

#[test]
fn three_voter_election() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let l = c.leader();
    let epoch = c.node(l).epoch();
    assert!(epoch >= 1);
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).epoch(), epoch);
        assert_eq!(c.node(id).leader(), Some(l));
        if id != l {
            assert_eq!(c.node(id).role(), Role::Follower);
        }
    }
    // The LeaderChange entry is committed everywhere.
    for id in [1, 2, 3] {
        assert!(c.node(id).high_watermark().unwrap_or(0) >= 1);
    }
}

#[test]
fn log_matching_and_commit() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let mut last = 0;
    for i in 0..10 {
        last = c.propose(&[&format!("e{i}")]);
        c.run(20, 10);
    }
    c.run(2_000, 10);
    let l = c.leader();
    let end = last + 1;
    for id in [1, 2, 3] {
        let n = c.node(id);
        assert_eq!(n.log_end(), end);
        assert_eq!(n.high_watermark(), Some(end));
        assert_eq!(n.entries(0, 100), c.node(l).entries(0, 100));
        assert_eq!(
            c.nodes[&id].log,
            n.entries(0, 100).to_vec(),
            "caller log agrees"
        );
    }
    let d = c.node(l).describe();
    assert_eq!(d.voters.len(), 3);
    assert!(d.voters.iter().all(|v| v.log_end == end));
}

#[test]
fn hw_counts_only_durable_positions() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let l = c.leader();
    let f: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    let hw0 = c.node(l).high_watermark().expect("hw");
    c.nodes.get_mut(&l).unwrap().auto_durable = false;
    c.nodes.get_mut(&f[0]).unwrap().auto_durable = false;
    let off = c.propose(&["x"]);
    c.run(3_000, 10);
    // f[1] has it durably, the leader and f[0] only in memory: no majority.
    assert_eq!(c.node(f[1]).durable_end(), off + 1);
    assert_eq!(c.node(f[0]).log_end(), off + 1);
    assert_eq!(c.node(f[0]).durable_end(), off);
    assert_eq!(c.node(l).high_watermark(), Some(hw0));
    // f[0]'s append becomes durable: it fetches from there and the entry commits.
    let now = c.now;
    c.node_mut(f[0]).on_log_durable(now, off + 1);
    c.process(f[0]);
    c.run(1_000, 10);
    assert_eq!(c.node(l).high_watermark(), Some(off + 1));
    assert_eq!(c.node(l).durable_end(), off, "leader still not durable");
}

fn entry(offset: i64, epoch: i32, data: &str) -> Entry {
    Entry {
        offset,
        epoch,
        kind: EntryKind::Data,
        data: b(data),
    }
}

#[test]
fn follower_truncates_divergent_suffix() {
    // Node 2 holds an uncommitted tail from epoch 2; nodes 1 and 3 moved on
    // in epoch 3. Node 2 cannot win (its last epoch is older), and when it
    // follows it must cut its tail at offset 2.
    let common = vec![entry(0, 1, "a"), entry(1, 1, "b")];
    let mut winners = common.clone();
    winners.push(entry(2, 3, "c3"));
    let mut loser = common;
    loser.push(entry(2, 2, "x"));
    loser.push(entry(3, 2, "y"));
    let mut c = Cluster::with(
        &[1, 2, 3],
        &[],
        |_| {},
        |id| Recovered {
            epoch: 3,
            voted_for: None,
            leader: None,
            snapshot: None,
            entries: if id == 2 {
                loser.clone()
            } else {
                winners.clone()
            },
        },
    );
    c.run(6_000, 10);
    let l = c.leader();
    assert_ne!(l, 2);
    assert!(c.nodes[&2]
        .history
        .contains(&Action::TruncateLog { from: 2 }));
    let leader_log = c.node(l).entries(0, 100).to_vec();
    assert_eq!(c.node(2).entries(0, 100), &leader_log[..]);
    assert_eq!(c.nodes[&2].log, leader_log);
    assert_eq!(c.node(2).entry(2).map(|e| e.epoch), Some(3));
}

#[test]
fn snapshot_and_fetch_snapshot_to_far_behind_node() {
    let mut c = Cluster::with(
        &[1, 2, 3],
        &[],
        |c| c.snapshot_chunk_bytes = 4,
        |_| Recovered::default(),
    );
    c.run(5_000, 10);
    let l = c.leader();
    let behind = [1, 2, 3].into_iter().find(|&x| x != l).unwrap();
    c.isolate(behind);
    let mut last = 0;
    for i in 0..30 {
        last = c.propose(&[&format!("v{i}")]);
    }
    c.run(1_000, 10);
    let hw = c.node(l).high_watermark().unwrap();
    assert_eq!(hw, last + 1);
    let snap = Snapshot {
        end_offset: hw - 5,
        epoch: c.node(l).entry(hw - 6).unwrap().epoch,
        data: b("0123456789"), // 3 chunks of at most 4 bytes
    };
    let now = c.now;
    c.node_mut(l).snapshot_taken(now, snap.clone());
    c.process(l);
    assert!(c.nodes[&l]
        .history
        .contains(&Action::DeleteLogPrefix { before: hw - 5 }));
    assert_eq!(c.node(l).log_start(), hw - 5);
    assert_eq!(c.node(l).snapshot_id(), Some((hw - 5, snap.epoch)));
    // The isolated node still has only a short prefix; it comes back.
    assert!(c.node(behind).log_end() < hw - 5);
    c.heal();
    c.run(3_000, 10);
    let n = c.node(behind);
    assert_eq!(n.snapshot(), Some(&snap));
    assert_eq!(n.log_start(), hw - 5);
    assert_eq!(n.log_end(), c.node(l).log_end());
    assert_eq!(n.entries(hw - 5, 100), c.node(l).entries(hw - 5, 100));
    assert!(n.high_watermark().unwrap() >= hw);
    let chunks = c.nodes[&behind]
        .history
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    request: Request::FetchSnapshot { .. },
                    ..
                }
            )
        })
        .count();
    assert!(chunks >= 3, "pulled in chunks ({chunks})");
    assert!(c.nodes[&behind]
        .history
        .iter()
        .any(|a| matches!(a, Action::InstallSnapshot { snapshot } if *snapshot == snap)));
}

#[test]
fn snapshot_to_empty_observer() {
    let mut c = Cluster::with(&[1, 2, 3], &[], |_| {}, |_| Recovered::default());
    c.run(5_000, 10);
    let l = c.leader();
    for i in 0..5 {
        c.propose(&[&format!("v{i}")]);
    }
    c.run(1_000, 10);
    let hw = c.node(l).high_watermark().unwrap();
    let snap = Snapshot {
        end_offset: hw,
        epoch: c.node(l).entry(hw - 1).unwrap().epoch,
        data: b("state"),
    };
    let now = c.now;
    c.node_mut(l).snapshot_taken(now, snap.clone());
    c.process(l);
    // A new observer with an empty log joins.
    let obs = Raft::new(cfg(9, &[1, 2, 3]), Recovered::default(), now, 99);
    c.nodes.insert(
        9,
        TNode {
            raft: obs,
            log: Vec::new(),
            auto_persist: true,
            auto_durable: true,
            history: Vec::new(),
        },
    );
    c.process(9);
    c.run(3_000, 10);
    let o = c.node(9);
    assert_eq!(o.role(), Role::Observer);
    assert_eq!(o.leader(), Some(l));
    assert_eq!(o.snapshot(), Some(&snap));
    assert_eq!(o.log_end(), c.node(l).log_end());
}

#[test]
fn prevote_partitioned_node_does_not_depose_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let l = c.leader();
    let epoch = c.node(l).epoch();
    let p = [1, 2, 3].into_iter().find(|&x| x != l).unwrap();
    c.isolate(p);
    let mut saw_prospective = false;
    for _ in 0..100 {
        c.run(100, 10);
        saw_prospective |= c.node(p).role() == Role::Prospective;
        // Pre-votes never reach a majority: no epoch bump.
        assert_eq!(c.node(p).epoch(), epoch);
        assert_ne!(c.node(p).role(), Role::Candidate);
    }
    assert!(saw_prospective, "the cut-off node tried to campaign");
    c.heal();
    c.run(5_000, 10);
    assert_eq!(c.leader(), l);
    assert_eq!(
        c.node(l).epoch(),
        epoch,
        "the healthy leader kept its epoch"
    );
    assert_eq!(c.node(p).role(), Role::Follower);
    assert_eq!(c.node(p).leader(), Some(l));
    let off = c.propose(&["after"]);
    c.run(1_000, 10);
    assert_eq!(c.node(p).high_watermark(), Some(off + 1));
}

#[test]
fn follower_rejects_prevote_while_leader_is_alive() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let l = c.leader();
    let f = [1, 2, 3].into_iter().find(|&x| x != l).unwrap();
    let other = [1, 2, 3].into_iter().find(|&x| x != l && x != f).unwrap();
    let epoch = c.node(f).epoch();
    let before = snapshot_of(c.node(f));
    let now = c.now;
    let (le, end) = (c.node(f).last_epoch(), c.node(f).log_end());
    let fr = c.node_mut(f);
    fr.handle_request(
        now,
        1,
        Request::Vote {
            epoch,
            candidate: other,
            last_epoch: le,
            last_end_offset: end + 10,
            pre_vote: true,
        },
    );
    let resp = responses(&drain(fr));
    assert_eq!(
        resp,
        vec![(
            1,
            Response::Vote {
                epoch,
                leader: Some(l),
                granted: false,
                pre_vote: true,
                error: None
            }
        )]
    );
    assert_eq!(snapshot_of(c.node(f)), before);
}

#[test]
fn check_quorum_step_down() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let old = c.leader();
    let epoch = c.node(old).epoch();
    c.isolate(old);
    c.run(2_100, 10);
    // Kafka 4: resigns in the same epoch once a majority is silent.
    assert_ne!(c.node(old).role(), Role::Leader);
    assert_eq!(c.node(old).epoch(), epoch);
    assert!(c.nodes[&old]
        .history
        .iter()
        .any(|a| matches!(a, Action::LeaderChanged { .. })));
    let now = c.now;
    assert_eq!(
        c.node_mut(old).propose(now, vec![b("x")]),
        Err(RaftError::NotLeader)
    );
    c.process(old);
    c.run(5_000, 10);
    let others: Vec<NodeId> = c.leaders().into_iter().filter(|&x| x != old).collect();
    assert_eq!(others.len(), 1, "the majority side elected a leader");
    let new = others[0];
    assert!(c.node(new).epoch() > epoch);
    c.heal();
    c.run(3_000, 10);
    assert_eq!(c.leader(), new);
    assert_eq!(c.node(old).leader(), Some(new));
}

#[test]
fn vote_not_granted_before_persistence_acknowledged() {
    let mut r = Raft::new(cfg(2, &[1, 2, 3]), Recovered::default(), 0, 3);
    drain(&mut r);
    r.handle_request(
        10,
        77,
        Request::Vote {
            epoch: 1,
            candidate: 1,
            last_epoch: 0,
            last_end_offset: 0,
            pre_vote: false,
        },
    );
    let actions = drain(&mut r);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::PersistState { .. }))
            .count(),
        2,
        "epoch bump, then the vote"
    );
    let last_version = actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistState {
                version,
                epoch: 1,
                voted_for: Some(1),
                ..
            } => Some(*version),
            _ => None,
        })
        .next_back()
        .expect("vote persisted");
    assert!(responses(&actions).is_empty(), "answer held until durable");
    assert!(r.is_persisting());
    // Acknowledging an older write is not enough.
    r.on_state_persisted(11, last_version - 1);
    assert!(responses(&drain(&mut r)).is_empty());
    r.on_state_persisted(12, last_version);
    let resp = responses(&drain(&mut r));
    assert_eq!(
        resp,
        vec![(
            77,
            Response::Vote {
                epoch: 1,
                leader: None,
                granted: true,
                pre_vote: false,
                error: None
            }
        )]
    );
    // A second candidate in the same epoch is refused.
    r.handle_request(
        13,
        78,
        Request::Vote {
            epoch: 1,
            candidate: 3,
            last_epoch: 0,
            last_end_offset: 5,
            pre_vote: false,
        },
    );
    let resp = responses(&drain(&mut r));
    assert!(matches!(resp[0].1, Response::Vote { granted: false, .. }));
    assert_eq!(r.voted_for(), Some(1));
}

#[test]
fn candidate_sends_votes_only_after_its_own_vote_is_durable() {
    let mut r = Raft::new(cfg(1, &[1, 2, 3]), Recovered::default(), 0, 4);
    drain(&mut r);
    let t = r.next_deadline().unwrap();
    assert!((1000..2000).contains(&t), "randomized election timeout {t}");
    r.tick(t);
    ack_all(&mut r, t);
    r.handle_response(t, 2, vote_resp(0, true, true));
    assert_eq!(r.role(), Role::Candidate);
    let actions = drain(&mut r);
    let v = actions
        .iter()
        .find_map(|a| match a {
            Action::PersistState { version, .. } => Some(*version),
            _ => None,
        })
        .expect("candidacy persisted");
    assert!(sends(&actions).is_empty(), "vote requests held");
    r.on_state_persisted(t, v);
    let s = sends(&drain(&mut r));
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|(_, req)| matches!(
        req,
        Request::Vote {
            epoch: 1,
            pre_vote: false,
            ..
        }
    )));
}

#[test]
fn long_poll_fetch_is_parked_and_woken() {
    let (mut r, now) = make_leader(&[1, 2, 3]);
    let end = r.log_end();
    let fetch = |offset: i64| Request::Fetch {
        epoch: 1,
        replica: 2,
        fetch_offset: offset,
        last_fetched_epoch: 1,
        max_wait_ms: 500,
    };
    // First fetch at the end: it moves the hw (node 2 and the leader are a
    // majority), which is news to node 2: answered at once.
    r.handle_request(now, 1, fetch(end));
    let resp = responses(&ack_all(&mut r, now));
    assert!(matches!(
        resp[..],
        [(
            1,
            Response::Fetch {
                high_watermark: 1,
                ..
            }
        )]
    ));
    // Same position, nothing new: parked; a proposal wakes it with the entry.
    r.handle_request(now, 2, fetch(end));
    assert!(responses(&ack_all(&mut r, now)).is_empty(), "parked");
    r.propose(now + 1, vec![b("x")]).unwrap();
    let resp = responses(&ack_all(&mut r, now + 1));
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].0, 2);
    let Response::Fetch { entries, .. } = &resp[0].1 else {
        panic!("{resp:?}")
    };
    // The entry before the fetch offset comes first, for the follower's check.
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].offset, end - 1);
    assert_eq!(entries[1].data, b("x"));
    // Now a fetch with nothing new is parked, then released at its deadline.
    let end = r.log_end();
    r.handle_request(now + 2, 3, fetch(end));
    ack_all(&mut r, now + 2);
    r.handle_request(now + 3, 4, fetch(end));
    assert!(responses(&ack_all(&mut r, now + 3)).is_empty(), "parked");
    assert!(r.next_deadline().unwrap() <= now + 3 + 500);
    r.tick(now + 3 + 500);
    let resp = responses(&ack_all(&mut r, now + 503));
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].0, 4);
}

#[test]
fn bad_inputs_are_refused_without_state_change() {
    let (mut r, now) = make_leader(&[1, 2, 3]);
    let p = r.propose(now, vec![b("a")]).unwrap();
    ack_all(&mut r, now);
    let before = snapshot_of(&r);
    let check = |r: &mut Raft, req: Request, want: RaftError| {
        r.handle_request(now, 5, req.clone());
        let actions = drain(r);
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                Action::PersistState { .. } | Action::AppendLog { .. } | Action::TruncateLog { .. }
            )),
            "{req:?} changed durable state"
        );
        let resp = responses(&actions);
        assert_eq!(resp.len(), 1, "{req:?}");
        let err = match &resp[0].1 {
            Response::Vote { error, granted, .. } => {
                assert!(!granted);
                *error
            }
            Response::BeginQuorumEpoch { error, .. }
            | Response::EndQuorumEpoch { error, .. }
            | Response::Fetch { error, .. }
            | Response::FetchSnapshot { error, .. } => *error,
        };
        assert_eq!(err, Some(want), "{req:?}");
    };
    let vote = |epoch, candidate, last_epoch, last_end| Request::Vote {
        epoch,
        candidate,
        last_epoch,
        last_end_offset: last_end,
        pre_vote: false,
    };
    check(&mut r, vote(5, 9, 0, 0), RaftError::InconsistentVoter);
    check(&mut r, vote(5, 1, 0, 0), RaftError::InconsistentVoter);
    check(
        &mut r,
        Request::Vote {
            epoch: 0,
            candidate: 2,
            last_epoch: 0,
            last_end_offset: 9,
            pre_vote: true,
        },
        RaftError::FencedLeaderEpoch,
    );
    check(&mut r, vote(5, 2, 0, -1), RaftError::PositionOutOfRange);
    check(&mut r, vote(5, 2, 5, 3), RaftError::PositionOutOfRange);
    check(&mut r, vote(5, 2, -3, 3), RaftError::PositionOutOfRange);
    check(
        &mut r,
        Request::BeginQuorumEpoch {
            epoch: 9,
            leader: 9,
        },
        RaftError::InconsistentVoter,
    );
    check(
        &mut r,
        Request::BeginQuorumEpoch {
            epoch: 0,
            leader: 2,
        },
        RaftError::FencedLeaderEpoch,
    );
    check(
        &mut r,
        Request::EndQuorumEpoch {
            epoch: 9,
            leader: 7,
            preferred_successors: vec![1, 2, 3, i32::MAX, -1],
        },
        RaftError::InconsistentVoter,
    );
    let fetch = |epoch, replica, off, le| Request::Fetch {
        epoch,
        replica,
        fetch_offset: off,
        last_fetched_epoch: le,
        max_wait_ms: u64::MAX,
    };
    check(&mut r, fetch(1, 2, -1, 0), RaftError::PositionOutOfRange);
    check(&mut r, fetch(1, 2, 0, -1), RaftError::PositionOutOfRange);
    check(&mut r, fetch(1, 2, 3, 2), RaftError::PositionOutOfRange);
    check(&mut r, fetch(0, 2, 0, 0), RaftError::FencedLeaderEpoch);
    check(&mut r, fetch(2, 2, 0, 0), RaftError::UnknownLeaderEpoch);
    check(&mut r, fetch(1, 1, 0, 0), RaftError::InconsistentVoter);
    let fs = |end_offset, snapshot_epoch, position| Request::FetchSnapshot {
        epoch: 1,
        replica: 2,
        end_offset,
        snapshot_epoch,
        position,
    };
    check(&mut r, fs(1, 1, 0), RaftError::SnapshotNotFound);
    check(&mut r, fs(-1, 1, 0), RaftError::PositionOutOfRange);
    // With a snapshot: wrong id, or a position past its end. First node 2
    // catches up so that the entry commits.
    r.handle_request(now, 50, fetch(1, 2, p + 1, 1));
    ack_all(&mut r, now);
    assert_eq!(r.high_watermark(), Some(p + 1));
    r.snapshot_taken(
        now,
        Snapshot {
            end_offset: p + 1,
            epoch: 1,
            data: b("abc"),
        },
    );
    ack_all(&mut r, now);
    assert_eq!(r.snapshot_id(), Some((p + 1, 1)));
    let before = (
        before.0,
        before.1,
        before.2,
        before.3,
        r.log_end(),
        r.high_watermark(),
    );
    check(&mut r, fs(p + 1, 2, 0), RaftError::SnapshotNotFound);
    check(&mut r, fs(p + 1, 1, 4), RaftError::PositionOutOfRange);
    check(
        &mut r,
        fs(p + 1, 1, u64::MAX),
        RaftError::PositionOutOfRange,
    );
    assert_eq!(snapshot_of(&r), before);

    // Garbage responses: from a non-voter, or stale, change nothing.
    r.handle_response(
        now,
        9,
        Response::Fetch {
            epoch: i32::MAX,
            leader: Some(9),
            high_watermark: i64::MAX,
            log_start: -5,
            entries: vec![entry(-1, i32::MAX, "z")],
            diverging: Some((-1, -1)),
            snapshot_id: Some((i64::MIN, -1)),
            error: None,
        },
    );
    r.handle_response(now, 2, vote_resp(0, true, true));
    r.handle_response(
        now,
        2,
        Response::FetchSnapshot {
            epoch: 1,
            leader: Some(1),
            end_offset: 3,
            snapshot_epoch: 1,
            size: u64::MAX,
            position: u64::MAX,
            data: b("zz"),
            error: None,
        },
    );
    assert!(!drain(&mut r)
        .iter()
        .any(|a| matches!(a, Action::PersistState { .. } | Action::TruncateLog { .. })));
    assert_eq!(snapshot_of(&r), before);
}

#[test]
fn follower_ignores_stale_or_bogus_fetch_answers() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let l = c.leader();
    for i in 0..5 {
        c.propose(&[&format!("v{i}")]);
    }
    c.run(1_000, 10);
    let f = [1, 2, 3].into_iter().find(|&x| x != l).unwrap();
    let epoch = c.node(f).epoch();
    let hw = c.node(f).high_watermark().unwrap();
    let before = snapshot_of(c.node(f));
    let now = c.now;
    let fr = c.node_mut(f);
    let answer = |diverging, snapshot_id, entries| Response::Fetch {
        epoch,
        leader: Some(l),
        high_watermark: hw,
        log_start: 0,
        entries,
        diverging,
        snapshot_id,
        error: None,
    };
    // A divergence below the high watermark (a stale answer): ignored.
    fr.handle_response(now, l, answer(Some((1, 1)), None, vec![]));
    // Entries that contradict ours: ignored.
    fr.handle_response(
        now,
        l,
        answer(
            None,
            None,
            vec![entry(1, epoch, "evil"), entry(2, epoch, "e")],
        ),
    );
    // Entries with a gap: ignored.
    fr.handle_response(
        now,
        l,
        answer(None, None, vec![entry(hw + 3, epoch, "gap")]),
    );
    // A snapshot we do not need.
    fr.handle_response(now, l, answer(None, Some((1, 1)), vec![]));
    let actions = drain(fr);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::TruncateLog { .. } | Action::AppendLog { .. } | Action::InstallSnapshot { .. }
        )),
        "{actions:?}"
    );
    assert_eq!(snapshot_of(c.node(f)), before);
}

#[test]
fn observer_follows_without_counting() {
    let mut c = Cluster::new(&[1, 2, 3], &[4]);
    c.run(5_000, 10);
    let l = c.leader();
    assert_eq!(c.node(4).role(), Role::Observer);
    assert_eq!(c.node(4).leader(), Some(l));
    assert!(!c.node(4).is_voter());
    let off = c.propose(&["o"]);
    c.run(1_000, 10);
    assert_eq!(c.node(4).high_watermark(), Some(off + 1));
    assert_eq!(c.node(4).entries(0, 100), c.node(l).entries(0, 100));
    let d = c.node(l).describe();
    assert_eq!(d.observers.len(), 1);
    assert_eq!(d.observers[0].id, 4);
    // Cut the leader off from both voters: the observer alone does not commit.
    let hw = c.node(l).high_watermark().unwrap();
    for v in [1, 2, 3] {
        if v != l {
            c.blocked.insert((l, v));
            c.blocked.insert((v, l));
        }
    }
    let off = c.propose(&["lonely"]);
    c.run(500, 10);
    assert_eq!(c.node(4).log_end(), off + 1, "the observer has it");
    assert_eq!(
        c.node(l).high_watermark(),
        Some(hw),
        "but it does not count"
    );
    // Observers never vote.
    let now = c.now;
    let o = c.node_mut(4);
    o.handle_request(
        now,
        1,
        Request::Vote {
            epoch: 100,
            candidate: 1,
            last_epoch: 50,
            last_end_offset: 1000,
            pre_vote: false,
        },
    );
    let resp = responses(&drain(o));
    assert!(matches!(resp[0].1, Response::Vote { granted: false, .. }));
}

#[test]
fn resign_hands_leadership_over() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    let old = c.leader();
    let epoch = c.node(old).epoch();
    let now = c.now;
    c.node_mut(old).resign(now);
    c.process(old);
    assert_eq!(c.node(old).role(), Role::Resigned);
    assert!(c.nodes[&old].history.iter().any(|a| matches!(a,
        Action::Send { request: Request::EndQuorumEpoch { preferred_successors, .. }, .. }
            if preferred_successors.len() == 2)));
    c.deliver_all();
    // The first preferred successor campaigns at once; well under a timeout.
    c.run(600, 10);
    let l = c.leader();
    assert_ne!(l, old);
    assert!(c.node(l).epoch() > epoch);
}

#[test]
fn restarted_leader_resigns() {
    let rec = Recovered {
        epoch: 4,
        voted_for: Some(1),
        leader: Some(1),
        snapshot: None,
        entries: vec![entry(0, 4, "a")],
    };
    let mut r = Raft::new(cfg(1, &[1, 2, 3]), rec, 0, 5);
    assert_eq!(r.role(), Role::Resigned);
    assert_eq!(r.epoch(), 4);
    assert_eq!(r.high_watermark(), None);
    let s = sends(&drain(&mut r));
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|(_, req)| matches!(
        req,
        Request::EndQuorumEpoch {
            epoch: 4,
            leader: 1,
            ..
        }
    )));
    assert_eq!(r.propose(1, vec![b("x")]), Err(RaftError::NotLeader));
}

#[test]
fn recovered_log_newer_than_state_bumps_epoch() {
    // A state write lost in a crash, while the log append survived.
    let rec = Recovered {
        epoch: 2,
        voted_for: Some(3),
        leader: None,
        snapshot: None,
        entries: vec![entry(0, 3, "a")],
    };
    let mut r = Raft::new(cfg(1, &[1, 2, 3]), rec, 0, 5);
    assert_eq!(r.epoch(), 3);
    assert_eq!(r.voted_for(), None);
    assert!(drain(&mut r).iter().any(|a| matches!(
        a,
        Action::PersistState {
            epoch: 3,
            voted_for: None,
            ..
        }
    )));
}

#[test]
fn timers_are_reported() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(5_000, 10);
    for id in [1, 2, 3] {
        let d = c.node(id).next_deadline().expect("every voter has a timer");
        assert!(d >= c.now, "deadline {d} in the past at {}", c.now);
    }
}

/// Drains, acknowledging state writes only.
fn ack_state(r: &mut Raft, now: u64) -> Vec<Action> {
    let mut seen = Vec::new();
    while let Some(a) = r.poll_action() {
        if let Action::PersistState { version, .. } = &a {
            r.on_state_persisted(now, *version);
        }
        seen.push(a);
    }
    seen
}

fn fetch_answer(epoch: i32, hw: i64, entries: Vec<Entry>) -> Response {
    Response::Fetch {
        epoch,
        leader: Some(1),
        high_watermark: hw,
        log_start: 0,
        entries,
        diverging: None,
        snapshot_id: None,
        error: None,
    }
}

#[test]
fn only_current_epoch_entries_commit() {
    // Raft's Figure 8: entries of an older epoch held by a majority are not
    // committed until an entry of the leader's own epoch is.
    let rec = Recovered {
        epoch: 1,
        voted_for: None,
        leader: None,
        snapshot: None,
        entries: vec![entry(0, 1, "a"), entry(1, 1, "b")],
    };
    let mut r = Raft::new(cfg(1, &[1, 2, 3]), rec, 0, 9);
    ack_state(&mut r, 0);
    let t = r.next_deadline().unwrap();
    r.tick(t);
    ack_state(&mut r, t);
    r.handle_response(t, 2, vote_resp(1, true, true));
    ack_state(&mut r, t);
    r.handle_response(t, 2, vote_resp(2, true, false));
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.epoch(), 2);
    ack_state(&mut r, t); // the LeaderChange at 2 is not durable yet
    let fetch = |offset, last_epoch| Request::Fetch {
        epoch: 2,
        replica: 2,
        fetch_offset: offset,
        last_fetched_epoch: last_epoch,
        max_wait_ms: 0,
    };
    r.handle_request(t, 1, fetch(2, 1));
    ack_state(&mut r, t);
    // Leader (durable to 2) and node 2 (at 2) are a majority at offset 2, but
    // entry 1 is from epoch 1.
    assert_eq!(r.high_watermark(), None);
    r.on_log_durable(t, 3);
    assert_eq!(
        r.high_watermark(),
        None,
        "node 2 does not have offset 2 yet"
    );
    r.handle_request(t, 2, fetch(3, 2));
    assert_eq!(r.high_watermark(), Some(3));
    assert!(drain(&mut r).contains(&Action::Committed { high_watermark: 3 }));
}

#[test]
fn stale_fetch_answer_during_snapshot_install_is_ignored() {
    let mut r = Raft::new(cfg(2, &[1, 2, 3]), Recovered::default(), 0, 11);
    r.handle_request(
        0,
        1,
        Request::BeginQuorumEpoch {
            epoch: 1,
            leader: 1,
        },
    );
    let s = sends(&ack_state(&mut r, 0));
    assert!(matches!(
        s[..],
        [(
            1,
            Request::Fetch {
                fetch_offset: 0,
                ..
            }
        )]
    ));
    r.handle_response(
        1,
        1,
        Response::Fetch {
            epoch: 1,
            leader: Some(1),
            high_watermark: 5,
            log_start: 5,
            entries: vec![],
            diverging: None,
            snapshot_id: Some((5, 1)),
            error: None,
        },
    );
    let s = sends(&ack_state(&mut r, 1));
    assert!(matches!(
        s[..],
        [(
            1,
            Request::FetchSnapshot {
                end_offset: 5,
                position: 0,
                ..
            }
        )]
    ));
    let chunk = Response::FetchSnapshot {
        epoch: 1,
        leader: Some(1),
        end_offset: 5,
        snapshot_epoch: 1,
        size: 3,
        position: 0,
        data: b("abc"),
        error: None,
    };
    r.handle_response(2, 1, chunk.clone());
    let actions = ack_state(&mut r, 2);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::InstallSnapshot { snapshot } if snapshot.end_offset == 5)));
    assert!(sends(&actions).is_empty(), "no fetch until installed");
    // A late answer (and a duplicate chunk) arrive before the install is acknowledged.
    r.handle_response(
        3,
        1,
        fetch_answer(1, 5, vec![entry(0, 1, "x"), entry(1, 1, "y")]),
    );
    r.handle_response(3, 1, chunk);
    let actions = ack_state(&mut r, 3);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Committed { .. } | Action::AppendLog { .. } | Action::InstallSnapshot { .. }
        )),
        "{actions:?}"
    );
    assert_eq!(r.high_watermark(), None);
    r.on_snapshot_installed(4, 5);
    let actions = ack_state(&mut r, 4);
    assert!(actions.contains(&Action::Committed { high_watermark: 5 }));
    assert!(sends(&actions).iter().any(|(_, req)| matches!(
        req,
        Request::Fetch {
            fetch_offset: 5,
            last_fetched_epoch: 1,
            ..
        }
    )));
    assert_eq!(r.log_start(), 5);
    assert_eq!(r.snapshot_id(), Some((5, 1)));
}

#[test]
fn confirmed_prefix_survives_a_lost_prevote() {
    // Node 2 confirms entries 0..5 with leader 1 of epoch 2, loses contact,
    // fails a pre-vote and follows again: a stale divergence answer from
    // earlier in the epoch must not cut what it confirmed.
    let rec = Recovered {
        epoch: 2,
        voted_for: None,
        leader: Some(1),
        snapshot: None,
        entries: vec![entry(0, 1, "a"), entry(1, 1, "b"), entry(2, 2, "c")],
    };
    let mut r = Raft::new(cfg(2, &[1, 2, 3]), rec, 0, 12);
    assert_eq!(r.role(), Role::Follower);
    let s = sends(&ack_state(&mut r, 0));
    assert!(matches!(
        s[..],
        [(
            1,
            Request::Fetch {
                fetch_offset: 3,
                last_fetched_epoch: 2,
                ..
            }
        )]
    ));
    r.handle_response(
        1,
        1,
        fetch_answer(
            2,
            2,
            vec![entry(2, 2, "c"), entry(3, 2, "d"), entry(4, 2, "e")],
        ),
    );
    ack_state(&mut r, 1);
    assert_eq!(r.log_end(), 5);
    assert_eq!(r.high_watermark(), Some(2));
    // The leader goes quiet: pre-vote, rejected by both, back to following.
    let t = 1 + 2_000;
    r.tick(t);
    assert_eq!(r.role(), Role::Prospective);
    ack_state(&mut r, t);
    for from in [1, 3] {
        r.handle_response(
            t,
            from,
            Response::Vote {
                epoch: 2,
                leader: Some(1),
                granted: false,
                pre_vote: true,
                error: None,
            },
        );
    }
    assert_eq!(r.role(), Role::Follower);
    ack_state(&mut r, t);
    // An answer the leader gave to an old position of ours (2, 1).
    r.handle_response(
        t + 1,
        1,
        Response::Fetch {
            epoch: 2,
            leader: Some(1),
            high_watermark: 2,
            log_start: 0,
            entries: vec![],
            diverging: Some((1, 2)),
            snapshot_id: None,
            error: None,
        },
    );
    let actions = ack_state(&mut r, t + 1);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::TruncateLog { .. })),
        "{actions:?}"
    );
    assert_eq!(r.log_end(), 5);
}

#[test]
fn every_request_kind_answers_its_token_once() {
    // Whatever the role, each request gets exactly one answer (a parked fetch
    // at its deadline at the latest).
    let (mut leader, now) = make_leader(&[1, 2, 3]);
    let mut follower = Raft::new(cfg(2, &[1, 2, 3]), Recovered::default(), 0, 13);
    follower.handle_request(
        0,
        99,
        Request::BeginQuorumEpoch {
            epoch: 1,
            leader: 1,
        },
    );
    ack_all(&mut follower, 0);
    let reqs = [
        Request::Vote {
            epoch: 1,
            candidate: 3,
            last_epoch: 0,
            last_end_offset: 0,
            pre_vote: true,
        },
        Request::BeginQuorumEpoch {
            epoch: 1,
            leader: 3,
        },
        Request::EndQuorumEpoch {
            epoch: 1,
            leader: 3,
            preferred_successors: vec![],
        },
        Request::Fetch {
            epoch: 1,
            replica: 3,
            fetch_offset: 1,
            last_fetched_epoch: 1,
            max_wait_ms: 100,
        },
        Request::FetchSnapshot {
            epoch: 1,
            replica: 3,
            end_offset: 1,
            snapshot_epoch: 1,
            position: 0,
        },
    ];
    for r in [&mut leader, &mut follower] {
        let mut answered = BTreeMap::new();
        for (i, req) in reqs.iter().enumerate() {
            r.handle_request(now, 1000 + i as u64, req.clone());
            for (t, _) in responses(&ack_all(r, now)) {
                *answered.entry(t).or_insert(0) += 1;
            }
        }
        r.tick(now + 2_000);
        for (t, _) in responses(&ack_all(r, now + 2_000)) {
            *answered.entry(t).or_insert(0) += 1;
        }
        let want: BTreeMap<u64, i32> = (0..reqs.len()).map(|i| (1000 + i as u64, 1)).collect();
        assert_eq!(answered, want);
    }
}

#[test]
fn non_leader_redirects_fetches() {
    let mut f = Raft::new(cfg(2, &[1, 2, 3]), Recovered::default(), 0, 14);
    f.handle_request(
        0,
        1,
        Request::BeginQuorumEpoch {
            epoch: 3,
            leader: 1,
        },
    );
    ack_all(&mut f, 0);
    let before = snapshot_of(&f);
    f.handle_request(
        1,
        2,
        Request::Fetch {
            epoch: 3,
            replica: 9, // an observer
            fetch_offset: 0,
            last_fetched_epoch: 0,
            max_wait_ms: 500,
        },
    );
    let resp = responses(&ack_all(&mut f, 1));
    assert!(matches!(
        resp[..],
        [(
            2,
            Response::Fetch {
                epoch: 3,
                leader: Some(1),
                error: Some(RaftError::NotLeader),
                ..
            }
        )]
    ));
    assert_eq!(snapshot_of(&f), before);
}

#[test]
fn recovery_skips_entries_under_the_snapshot() {
    let snap = Snapshot {
        end_offset: 2,
        epoch: 1,
        data: b("s"),
    };
    let rec = Recovered {
        epoch: 2,
        voted_for: None,
        leader: None,
        snapshot: Some(snap),
        // The prefix below 2 was not deleted yet; then a bad tail.
        entries: vec![
            entry(0, 1, "a"),
            entry(1, 1, "b"),
            entry(2, 2, "c"),
            entry(4, 2, "gap"),
        ],
    };
    let mut r = Raft::new(cfg(1, &[1, 2, 3]), rec, 0, 15);
    assert_eq!((r.log_start(), r.log_end(), r.durable_end()), (2, 3, 3));
    assert_eq!(r.entry(2).map(|e| e.data.clone()), Some(b("c")));
    assert_eq!(r.snapshot_id(), Some((2, 1)));
    let actions = drain(&mut r);
    assert_eq!(actions[0], Action::TruncateLog { from: 3 });
}
