//! Broker-side invariants, watched after every step of every broker node.
//!
//! Partitions: a partition's high watermark and log start offset never go
//! back, across restarts too (what was exposed to consumers must stay
//! exposed).
//!
//! The metadata quorum (from each node's [`QuorumView`] and the digests of its
//! log entries), as KRaft's own simulation test states its invariants:
//! - `two-leaders-one-epoch`: at most one node is ever leader of an epoch;
//! - `quorum-hw-regression`: a node's known high watermark never goes back
//!   within one incarnation of the node;
//! - `metadata-divergence`: every node's entries below its high watermark
//!   equal the committed entries at those offsets, as first seen anywhere
//!   (one global map offset -> digest, extended as watermarks advance);
//! - `lost-committed-metadata`: a node elected leader holds every committed
//!   entry (in its log, or below its log start, in its snapshot);
//! - `commit-not-durable`: when the committed offset advances, a majority of
//!   the voters have the entries on stable storage (each voter's latest known
//!   `durable_end`; durable data survives a crash, so a down voter counts with
//!   its last one, until its disk is wiped).
//!
//! Every check is incremental: a step costs a view comparison, plus digests
//! of the entries newly committed on that node; an election costs one pass
//! over the committed entries the new leader's log should hold.

use std::collections::BTreeMap;

use broker::node::view::{EntryDigest, QuorumRole, QuorumView};
use broker::node::Node;
use serde::{Deserialize, Serialize};

pub const HIGH_WATERMARK_REGRESSION: &str = "high-watermark-regression";
pub const LOG_START_REGRESSION: &str = "log-start-regression";
pub const TWO_LEADERS_ONE_EPOCH: &str = "two-leaders-one-epoch";
pub const QUORUM_HW_REGRESSION: &str = "quorum-hw-regression";
pub const METADATA_DIVERGENCE: &str = "metadata-divergence";
pub const LOST_COMMITTED_METADATA: &str = "lost-committed-metadata";
pub const COMMIT_NOT_DURABLE: &str = "commit-not-durable";

/// A broken broker-side invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// One of the kinds above.
    pub kind: String,
    pub at_nanos: u64,
    pub explanation: String,
}

#[derive(Debug, Default)]
pub struct Monitor {
    /// (node index, topic, partition) -> (highest log start, highest high watermark) seen.
    seen: BTreeMap<(u32, String, i32), (i64, i64)>,
    pub violations: Vec<Violation>,
    /// Violations recorded per kind (each kind keeps its first ones).
    per_kind: BTreeMap<String, usize>,
    quorum: Quorum,
}

/// At most this many violations of one kind are kept (the first ones tell the story).
const MAX_VIOLATIONS_PER_KIND: usize = 100;

/// What the monitor knows of the metadata quorum.
#[derive(Debug, Default)]
struct Quorum {
    /// Node ids of the voters (from the scenario).
    voters: Vec<u32>,
    /// The latest view of every node that is up (or paused).
    nodes: BTreeMap<u32, Watched>,
    /// epoch -> the node that was leader of it.
    leaders: BTreeMap<i32, u32>,
    /// Every committed entry seen: offset -> digest.
    committed: BTreeMap<i64, EntryDigest>,
    /// The highest high watermark any node reported.
    committed_end: i64,
    /// Voter -> its latest known durable end (kept while it is down).
    durable: BTreeMap<u32, i64>,
    /// (time, leader a majority of voters follows: (node, epoch)) at each change.
    leadership: Vec<(u64, Option<(u32, i32)>)>,
    /// Some node ever showed a quorum view.
    observed: bool,
}

/// One node's latest view and how far it has been checked.
#[derive(Debug, Clone)]
struct Watched {
    incarnation: u32,
    view: QuorumView,
    /// The highest high watermark of this incarnation.
    hw_max: Option<i64>,
    /// Entries below this were compared with the committed map.
    checked_to: i64,
    /// A divergence was reported for this incarnation (once is enough).
    diverged: bool,
}

impl Monitor {
    pub fn observe(&mut self, at_nanos: u64, node_index: u32, incarnation: u32, node: &Node) {
        let offsets = node
            .partition_summary()
            .map(|(t, p, start, hw, _)| (t, p, start, hw));
        self.observe_offsets(at_nanos, node_index, offsets);
        if let Some(view) = node.quorum_view() {
            self.observe_quorum(at_nanos, node_index, incarnation, view, |o| {
                node.quorum_entry(o)
            });
        }
    }

    fn violation(&mut self, kind: &str, at_nanos: u64, explanation: String) {
        let count = self.per_kind.entry(kind.to_string()).or_default();
        if *count < MAX_VIOLATIONS_PER_KIND {
            *count += 1;
            self.violations.push(Violation {
                kind: kind.into(),
                at_nanos,
                explanation,
            });
        }
    }

    /// Check (topic, partition, log start, high watermark) readings of one node.
    pub fn observe_offsets<'a>(
        &mut self,
        at_nanos: u64,
        node_index: u32,
        offsets: impl Iterator<Item = (&'a str, i32, i64, i64)>,
    ) {
        for (topic, partition, start, hw) in offsets {
            let key = (node_index, topic.to_string(), partition);
            let entry = *self.seen.entry(key.clone()).or_insert((start, hw));
            if hw < entry.1 {
                self.violation(
                    HIGH_WATERMARK_REGRESSION,
                    at_nanos,
                    format!(
                        "node {node_index} {topic}-{partition}: high watermark went back from {} to {hw}",
                        entry.1
                    ),
                );
            }
            if start < entry.0 {
                self.violation(
                    LOG_START_REGRESSION,
                    at_nanos,
                    format!(
                        "node {node_index} {topic}-{partition}: log start offset went back from {} to {start}",
                        entry.0
                    ),
                );
            }
            self.seen.insert(key, (entry.0.max(start), entry.1.max(hw)));
        }
    }

    /// The quorum's voters (node ids); set once when the run is built.
    pub fn set_voters(&mut self, voters: Vec<u32>) {
        self.quorum.voters = voters;
    }

    /// Some node ever showed a quorum view (the quorum exists in this build).
    pub fn quorum_observed(&self) -> bool {
        self.quorum.observed
    }

    /// The latest quorum view of every node that is up or paused.
    pub fn views(&self) -> impl Iterator<Item = (u32, &QuorumView)> {
        self.quorum.nodes.iter().map(|(n, w)| (*n, &w.view))
    }

    /// The active controller as the views tell it: the up node claiming
    /// leadership in the highest epoch; failing that, the up node the
    /// highest-epoch views name as leader. `(node, epoch)`.
    pub fn quorum_leader(&self) -> Option<(u32, i32)> {
        let claimed = self
            .quorum
            .nodes
            .iter()
            .filter(|(_, w)| w.view.role == QuorumRole::Leader)
            .map(|(n, w)| (w.view.epoch, std::cmp::Reverse(*n)))
            .max()
            .map(|(e, std::cmp::Reverse(n))| (n, e));
        claimed.or_else(|| {
            self.quorum
                .nodes
                .values()
                .filter_map(|w| w.view.leader.map(|l| (w.view.epoch, std::cmp::Reverse(l))))
                .filter(|(_, std::cmp::Reverse(l))| self.quorum.nodes.contains_key(&(*l as u32)))
                .max()
                .map(|(e, std::cmp::Reverse(l))| (l as u32, e))
        })
    }

    /// The leader a majority of voters followed at each change: (time, (node, epoch)).
    pub fn leadership(&self) -> &[(u64, Option<(u32, i32)>)] {
        &self.quorum.leadership
    }

    /// The first time at or after `since` at which a majority of voters
    /// followed one leader (`None`: never, up to now).
    pub fn leader_since(&self, since: u64) -> Option<u64> {
        let before = self
            .quorum
            .leadership
            .iter()
            .rev()
            .find(|(t, _)| *t <= since);
        if before.is_some_and(|(_, l)| l.is_some()) {
            return Some(since);
        }
        self.quorum
            .leadership
            .iter()
            .find(|(t, l)| *t > since && l.is_some())
            .map(|(t, _)| *t)
    }

    /// A node's process died (crash, kill, power loss, shutdown): its view is
    /// gone until it is observed again; its durable end is kept.
    pub fn node_down(&mut self, at_nanos: u64, node_index: u32) {
        if self.quorum.nodes.remove(&node_index).is_some() {
            self.update_leadership(at_nanos);
        }
    }

    /// A node whose disk was wiped starts from nothing: forget what it exposed.
    pub fn forget_node(&mut self, node_index: u32) {
        self.seen.retain(|(n, _, _), _| *n != node_index);
        self.quorum.nodes.remove(&node_index);
        self.quorum.durable.remove(&node_index);
    }

    /// Check one node's quorum view after a step; `entry(offset)` gives the
    /// digest of the node's metadata log entry at `offset`, if it holds one.
    pub fn observe_quorum(
        &mut self,
        at_nanos: u64,
        node: u32,
        incarnation: u32,
        view: QuorumView,
        entry: impl Fn(i64) -> Option<EntryDigest>,
    ) {
        self.quorum.observed = true;
        // The common case: nothing changed since this node's last step.
        if let Some(w) = self.quorum.nodes.get(&node) {
            if w.incarnation == incarnation && w.view == view {
                return;
            }
        }
        let prev = self
            .quorum
            .nodes
            .remove(&node)
            .filter(|w| w.incarnation == incarnation);
        let leadership_changed = prev.as_ref().is_none_or(|p| {
            (p.view.role, p.view.epoch, p.view.leader) != (view.role, view.epoch, view.leader)
        });
        let newly_leader = view.role == QuorumRole::Leader
            && prev
                .as_ref()
                .is_none_or(|p| p.view.role != QuorumRole::Leader || p.view.epoch != view.epoch);
        let mut w = prev.unwrap_or(Watched {
            incarnation,
            view: view.clone(),
            hw_max: None,
            checked_to: view.log_start,
            diverged: false,
        });
        if self.quorum.voters.contains(&node) {
            self.quorum.durable.insert(node, view.durable_end);
        }

        // One leader per epoch; a new leader holds every committed entry.
        if view.role == QuorumRole::Leader {
            match self.quorum.leaders.get(&view.epoch) {
                Some(&other) if other != node => self.violation(
                    TWO_LEADERS_ONE_EPOCH,
                    at_nanos,
                    format!(
                        "node {node} is leader of epoch {} but node {other} already was",
                        view.epoch
                    ),
                ),
                Some(_) => {}
                None => {
                    self.quorum.leaders.insert(view.epoch, node);
                }
            }
            if newly_leader {
                self.check_leader_completeness(at_nanos, node, &view, &entry);
            }
        }

        // The high watermark: never back; what it covers agrees everywhere.
        if let Some(hw) = view.high_watermark {
            if let Some(max) = w.hw_max.filter(|max| hw < *max) {
                self.violation(
                    QUORUM_HW_REGRESSION,
                    at_nanos,
                    format!(
                        "node {node} (incarnation {incarnation}): metadata high watermark went back from {max} to {hw}"
                    ),
                );
            }
            w.hw_max = Some(w.hw_max.map_or(hw, |m| m.max(hw)));
            let from = w.checked_to.max(view.log_start);
            let to = hw.min(view.log_end);
            for offset in from..to {
                let Some(digest) = entry(offset) else {
                    continue;
                };
                match self.quorum.committed.get(&offset) {
                    None => {
                        self.quorum.committed.insert(offset, digest);
                    }
                    Some(c) if *c != digest && !w.diverged => {
                        w.diverged = true;
                        let c = *c;
                        self.violation(
                            METADATA_DIVERGENCE,
                            at_nanos,
                            format!(
                                "node {node}: committed metadata entry {offset} is (epoch {}, crc {:08x}) but was committed as (epoch {}, crc {:08x})",
                                digest.epoch, digest.crc, c.epoch, c.crc
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            w.checked_to = w.checked_to.max(to);
            if hw > self.quorum.committed_end {
                self.check_durable(at_nanos, node, hw);
                self.quorum.committed_end = hw;
            }
        }

        w.view = view;
        self.quorum.nodes.insert(node, w);
        if leadership_changed {
            self.update_leadership(at_nanos);
        }
    }

    /// A node just became leader: its log (or snapshot) holds every committed entry.
    fn check_leader_completeness(
        &mut self,
        at_nanos: u64,
        node: u32,
        view: &QuorumView,
        entry: &impl Fn(i64) -> Option<EntryDigest>,
    ) {
        let mut missing = Vec::new();
        let mut first = None;
        for (&offset, &digest) in self.quorum.committed.range(view.log_start..) {
            let held = if offset >= view.log_end {
                None
            } else {
                entry(offset)
            };
            if held != Some(digest) {
                missing.push(offset);
                first.get_or_insert((offset, held, digest));
            }
        }
        if let Some((offset, held, digest)) = first {
            let what = match held {
                None => "does not hold it".to_string(),
                Some(h) => format!("holds (epoch {}, crc {:08x}) there", h.epoch, h.crc),
            };
            self.violation(
                LOST_COMMITTED_METADATA,
                at_nanos,
                format!(
                    "node {node} became leader of epoch {} with log [{}, {}) missing {} committed entries; first: offset {offset} (epoch {}, crc {:08x}), and the leader {what}",
                    view.epoch,
                    view.log_start,
                    view.log_end,
                    missing.len(),
                    digest.epoch,
                    digest.crc
                ),
            );
        }
    }

    /// The committed offset advances to `hw` (reported by `node`): a majority
    /// of voters must hold everything below it on stable storage.
    fn check_durable(&mut self, at_nanos: u64, node: u32, hw: i64) {
        let voters = &self.quorum.voters;
        if voters.is_empty() {
            return;
        }
        let majority = voters.len() / 2 + 1;
        let durable: Vec<(u32, i64)> = voters
            .iter()
            .map(|v| (*v, self.quorum.durable.get(v).copied().unwrap_or(0)))
            .collect();
        let holding = durable.iter().filter(|(_, d)| *d >= hw).count();
        if holding < majority {
            let ends: Vec<String> = durable
                .iter()
                .map(|(v, d)| format!("node {v}: {d}"))
                .collect();
            self.violation(
                COMMIT_NOT_DURABLE,
                at_nanos,
                format!(
                    "node {node} reports metadata committed up to {hw}, but only {holding} of {} voters have it durable (durable ends: {})",
                    voters.len(),
                    ends.join(", ")
                ),
            );
        }
    }

    /// Recompute the leader a majority of voters follows; record a change.
    fn update_leadership(&mut self, at_nanos: u64) {
        let q = &self.quorum;
        let majority = q.voters.len() / 2 + 1;
        let agreed = q
            .nodes
            .iter()
            .filter(|(n, w)| w.view.role == QuorumRole::Leader && q.voters.contains(n))
            .filter_map(|(&leader, lw)| {
                let epoch = lw.view.epoch;
                let followers = q
                    .nodes
                    .iter()
                    .filter(|(n, w)| {
                        **n != leader
                            && q.voters.contains(n)
                            && w.view.epoch == epoch
                            && w.view.leader == Some(leader as _)
                    })
                    .count();
                (1 + followers >= majority).then_some((epoch, leader))
            })
            .max()
            .map(|(epoch, leader)| (leader, epoch));
        if q.leadership.last().map(|(_, l)| *l) != Some(agreed) {
            self.quorum.leadership.push((at_nanos, agreed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_offsets_pass() {
        let mut m = Monitor::default();
        for (t, hw) in [(1, 0), (2, 5), (3, 5), (4, 9)] {
            m.observe_offsets(t, 0, [("t", 0, 0, hw), ("t", 1, 0, hw * 2)].into_iter());
        }
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn high_watermark_going_back_is_caught() {
        let mut m = Monitor::default();
        m.observe_offsets(1_000_000, 0, [("t", 2, 0, 40)].into_iter());
        m.observe_offsets(2_000_000, 0, [("t", 2, 0, 31)].into_iter());
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.violations[0].kind, "high-watermark-regression");
        assert!(m.violations[0].explanation.contains("t-2"));
        assert!(m.violations[0].explanation.contains("from 40 to 31"));
    }

    #[test]
    fn log_start_going_back_is_caught_and_wipes_are_forgiven() {
        let mut m = Monitor::default();
        m.observe_offsets(1, 0, [("t", 0, 10, 50)].into_iter());
        m.observe_offsets(2, 0, [("t", 0, 3, 50)].into_iter());
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.violations[0].kind, "log-start-regression");
        // A wiped node starts from nothing: no violation after forgetting it.
        m.forget_node(0);
        m.observe_offsets(3, 0, [("t", 0, 0, 0)].into_iter());
        assert_eq!(m.violations.len(), 1);
    }

    // ----- the metadata quorum, from synthetic views -----

    fn d(epoch: i32, crc: u32) -> EntryDigest {
        EntryDigest { epoch, crc }
    }

    /// A synthetic node: its view and its log's digests.
    #[derive(Clone)]
    struct Fake {
        view: QuorumView,
        log: Vec<EntryDigest>,
    }

    impl Fake {
        fn new(id: u32) -> Fake {
            Fake {
                view: QuorumView {
                    node_id: id as _,
                    is_voter: true,
                    role: QuorumRole::Unattached,
                    epoch: 0,
                    leader: None,
                    voted_for: None,
                    high_watermark: None,
                    log_start: 0,
                    log_end: 0,
                    durable_end: 0,
                    snapshot: None,
                },
                log: Vec::new(),
            }
        }

        fn append(&mut self, entries: &[EntryDigest], durable: bool) {
            self.log.extend_from_slice(entries);
            self.view.log_end = self.log.len() as i64;
            if durable {
                self.view.durable_end = self.view.log_end;
            }
        }

        fn lead(&mut self, epoch: i32) {
            self.view.role = QuorumRole::Leader;
            self.view.epoch = epoch;
            self.view.leader = Some(self.view.node_id);
        }

        fn follow(&mut self, leader: u32, epoch: i32) {
            self.view.role = QuorumRole::Follower;
            self.view.epoch = epoch;
            self.view.leader = Some(leader as _);
        }

        fn show(&self, m: &mut Monitor, at: u64, incarnation: u32) {
            let log = self.log.clone();
            let id = self.view.node_id as u32;
            m.observe_quorum(at, id, incarnation, self.view.clone(), |o| {
                log.get(o as usize).copied()
            });
        }
    }

    fn three() -> (Monitor, Vec<Fake>) {
        let mut m = Monitor::default();
        m.set_voters(vec![0, 1, 2]);
        (m, (0..3).map(Fake::new).collect())
    }

    /// Three nodes, no voters set: the durability check stays out of the way.
    fn three_unchecked() -> (Monitor, Vec<Fake>) {
        (Monitor::default(), (0..3).map(Fake::new).collect())
    }

    fn kinds(m: &Monitor) -> Vec<&str> {
        m.violations.iter().map(|v| v.kind.as_str()).collect()
    }

    /// A clean history: node 0 leads epoch 1, replicates to everyone
    /// durably, commits; node 1 takes over in epoch 2 with the whole log.
    fn clean_run(m: &mut Monitor, n: &mut [Fake]) {
        let entries = [d(1, 10), d(1, 11), d(1, 12)];
        n[0].lead(1);
        n[0].show(m, 1, 0);
        n[1].follow(0, 1);
        n[1].show(m, 2, 0);
        n[2].follow(0, 1);
        n[2].show(m, 2, 0);
        for f in n.iter_mut() {
            f.append(&entries, true);
        }
        n[1].show(m, 3, 0);
        n[2].show(m, 3, 0);
        n[0].view.high_watermark = Some(3);
        n[0].show(m, 4, 0);
        for f in n.iter_mut().skip(1) {
            f.view.high_watermark = Some(3);
        }
        n[1].show(m, 5, 0);
        n[2].show(m, 5, 0);
        n[1].lead(2);
        n[1].show(m, 6, 0);
    }

    #[test]
    fn clean_quorum_history_passes_and_leadership_is_timed() {
        let (mut m, mut n) = three();
        clean_run(&mut m, &mut n);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        assert!(m.quorum_observed());
        assert_eq!(m.quorum_leader(), Some((1, 2)));
        // Node 0 led with a majority from t=2 (when node 1 followed).
        assert_eq!(m.leader_since(0), Some(2));
        assert_eq!(m.leader_since(3), Some(3));
        m.node_down(10, 0);
        m.node_down(10, 1);
        assert_eq!(m.leadership().last(), Some(&(10, None)));
        assert_eq!(m.leader_since(11), None);
    }

    #[test]
    fn two_leaders_in_one_epoch_are_caught() {
        let (mut m, mut n) = three();
        n[0].lead(3);
        n[0].show(&mut m, 1, 0);
        n[1].lead(3);
        n[1].show(&mut m, 2, 0);
        assert_eq!(kinds(&m), vec![TWO_LEADERS_ONE_EPOCH]);
        assert!(m.violations[0].explanation.contains("epoch 3"));
    }

    #[test]
    fn quorum_high_watermark_going_back_is_caught_within_an_incarnation_only() {
        let (mut m, mut n) = three_unchecked();
        n[1].append(&[d(1, 1), d(1, 2), d(1, 3)], true);
        n[1].follow(0, 1);
        n[1].view.high_watermark = Some(3);
        n[1].show(&mut m, 1, 0);
        // A restart (new incarnation) starts over: no violation.
        n[1].view.high_watermark = Some(1);
        n[1].show(&mut m, 2, 1);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        // Unknown again (a new leader's) is not a regression either.
        n[1].view.high_watermark = None;
        n[1].show(&mut m, 3, 1);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        n[1].view.high_watermark = Some(0);
        n[1].show(&mut m, 4, 1);
        assert_eq!(kinds(&m), vec![QUORUM_HW_REGRESSION]);
        assert!(m.violations[0].explanation.contains("from 1 to 0"));
    }

    #[test]
    fn divergent_committed_metadata_is_caught() {
        let (mut m, mut n) = three_unchecked();
        n[0].append(&[d(1, 1), d(1, 2)], true);
        n[0].view.high_watermark = Some(2);
        n[0].show(&mut m, 1, 0);
        // Node 2 committed a different entry at offset 1.
        n[2].append(&[d(1, 1), d(2, 9)], true);
        n[2].view.high_watermark = Some(1);
        n[2].show(&mut m, 2, 0);
        assert!(m.violations.is_empty(), "below its hw it agrees");
        n[2].view.high_watermark = Some(2);
        n[2].show(&mut m, 3, 0);
        assert_eq!(kinds(&m), vec![METADATA_DIVERGENCE]);
        assert!(m.violations[0].explanation.contains("entry 1"));
    }

    #[test]
    fn a_leader_missing_committed_entries_is_caught() {
        let (mut m, mut n) = three_unchecked();
        for f in n.iter_mut().take(2) {
            f.append(&[d(1, 1), d(1, 2), d(1, 3)], true);
        }
        n[0].lead(1);
        n[0].view.high_watermark = Some(3);
        n[0].show(&mut m, 1, 0);
        // Node 2 never got offsets 1 and 2 yet is elected.
        n[2].append(&[d(1, 1)], true);
        n[2].lead(2);
        n[2].show(&mut m, 2, 0);
        assert_eq!(kinds(&m), vec![LOST_COMMITTED_METADATA]);
        assert!(m.violations[0].explanation.contains("missing 2"));
        assert!(m.violations[0].explanation.contains("offset 1"));
    }

    #[test]
    fn entries_below_a_leaders_log_start_count_as_in_its_snapshot() {
        let (mut m, mut n) = three_unchecked();
        n[0].append(&[d(1, 1), d(1, 2), d(1, 3)], true);
        n[0].view.high_watermark = Some(3);
        n[0].show(&mut m, 1, 0);
        let mut f = Fake::new(1);
        f.append(&[d(1, 1), d(1, 2), d(1, 3)], true);
        f.view.log_start = 2;
        f.view.snapshot = Some((2, 1));
        f.lead(2);
        f.show(&mut m, 2, 0);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn a_commit_not_durable_on_a_majority_is_caught() {
        let (mut m, mut n) = three();
        // Leader and one follower hold the entries, but only in memory.
        n[0].append(&[d(1, 1), d(1, 2)], false);
        n[1].append(&[d(1, 1), d(1, 2)], false);
        n[1].show(&mut m, 1, 0);
        n[0].lead(1);
        n[0].view.high_watermark = Some(2);
        n[0].show(&mut m, 2, 0);
        assert_eq!(kinds(&m), vec![COMMIT_NOT_DURABLE]);
        assert!(m.violations[0].explanation.contains("only 0 of 3"));
    }

    #[test]
    fn a_down_voters_durable_log_still_counts() {
        let (mut m, mut n) = three();
        n[1].append(&[d(1, 1), d(1, 2)], true);
        n[1].show(&mut m, 1, 0);
        m.node_down(2, 1);
        n[0].append(&[d(1, 1), d(1, 2)], true);
        n[0].lead(1);
        n[0].view.high_watermark = Some(2);
        n[0].show(&mut m, 3, 0);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        // A wiped voter's disk no longer counts.
        let (mut m, mut n) = three();
        n[1].append(&[d(1, 1), d(1, 2)], true);
        n[1].show(&mut m, 1, 0);
        m.forget_node(1);
        n[0].append(&[d(1, 1), d(1, 2)], true);
        n[0].lead(1);
        n[0].view.high_watermark = Some(2);
        n[0].show(&mut m, 3, 0);
        assert_eq!(kinds(&m), vec![COMMIT_NOT_DURABLE]);
    }
}
