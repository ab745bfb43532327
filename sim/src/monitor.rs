//! Broker-side invariants, watched after every step of every broker node.
//!
//! Partitions: a partition's high watermark and log start offset never go
//! back, across restarts too (what was exposed to consumers must stay
//! exposed) while the data topic has one replica. Replicated partitions,
//! from each node's replica views (see [`crate::replica`]):
//! - `two-leaders-one-partition-epoch`: two nodes act as leader of one
//!   partition in one leader epoch;
//! - `hw-regression`: a replica's high watermark goes back within one life
//!   of its node (a restart may bring back an older, checkpointed one);
//! - `replica-divergence`: two replicas hold different batches (base and
//!   last offset, partition leader epoch, CRC) below the lower of their
//!   high watermarks, read from the simulated disks' page cache (checked
//!   at every fault transition and at the end of the run);
//! - `acked-write-truncated`: a replica truncated, below its own high
//!   watermark, an offset a write acknowledged with acks=all got (judged
//!   at the end, against the whole history; a failure only where the
//!   configuration promises that such writes survive).
//! - `producer-sequence-repeat` (every run, replicated or not): in a node's
//!   log, a batch of an idempotent producer whose sequence range does not
//!   come after that producer's previous batch in the same epoch: a retry
//!   appended twice (or out of order). The leader checks sequences before
//!   it appends and followers copy its log, so no log may ever hold one;
//!   read from every up node's segment files at each fault transition and
//!   at the end.
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

use std::collections::BTreeSet;

use broker::log::batch;
use broker::memdisk::MemDisk;
use broker::node::view::{EntryDigest, QuorumRole, QuorumView};
use broker::node::Node;
use serde::{Deserialize, Serialize};

use crate::replica::{ReplicaRole, ReplicaSource, ReplicaView, TruncationEvent};

pub const HIGH_WATERMARK_REGRESSION: &str = "high-watermark-regression";
pub const LOG_START_REGRESSION: &str = "log-start-regression";
pub const TWO_LEADERS_ONE_EPOCH: &str = "two-leaders-one-epoch";
pub const QUORUM_HW_REGRESSION: &str = "quorum-hw-regression";
pub const METADATA_DIVERGENCE: &str = "metadata-divergence";
pub const LOST_COMMITTED_METADATA: &str = "lost-committed-metadata";
pub const COMMIT_NOT_DURABLE: &str = "commit-not-durable";
pub const TWO_LEADERS_ONE_PARTITION_EPOCH: &str = "two-leaders-one-partition-epoch";
pub const HW_REGRESSION: &str = "hw-regression";
pub const REPLICA_DIVERGENCE: &str = "replica-divergence";
pub const ACKED_WRITE_TRUNCATED: &str = "acked-write-truncated";
pub const GROUP_DOUBLE_ASSIGNMENT: &str = "group-double-assignment";
pub const COMMITTED_OFFSET_REGRESSION: &str = "committed-offset-regression";
pub const PRODUCER_SEQUENCE_REPEAT: &str = "producer-sequence-repeat";

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
    replicas: Replicas,
    groups: Groups,
}

/// (topic, partition) -> committed offset, of one group.
type GroupOffsets = BTreeMap<(String, i32), i64>;

/// What the monitor knows of consumer groups, from the coordinators' views.
#[derive(Debug, Default)]
struct Groups {
    /// Group scenarios only: the nodes' group views are read after each step.
    watched: bool,
    /// node -> (incarnation, group -> (topic, partition) -> committed offset
    /// it shows), while the group is loaded there.
    shown: BTreeMap<u32, (u32, BTreeMap<String, GroupOffsets>)>,
    /// (group, topic, partition) -> the highest committed offset any node showed.
    high: BTreeMap<(String, String, i32), i64>,
    /// (group, generation) double assignments already reported.
    reported: BTreeSet<(String, i32)>,
}

/// What the monitor knows of partition replicas.
#[derive(Debug, Default)]
struct Replicas {
    /// The data is replicated: high watermarks are checked per node life
    /// (`hw-regression`) rather than across restarts.
    replicated: bool,
    /// Latest views of every node that is up: node -> (incarnation, views).
    views: BTreeMap<u32, (u32, Vec<ReplicaView>)>,
    /// (topic, partition, leader epoch) -> the node that led it.
    leaders: BTreeMap<(String, i32, i32), u32>,
    /// (node, topic, partition) -> (incarnation, highest high watermark in it).
    hw: BTreeMap<(u32, String, i32), (u32, i64)>,
    /// Every truncation reported: (time, node, event).
    truncations: Vec<(u64, u32, TruncationEvent)>,
    /// Divergences already reported: (topic, partition, node, node).
    diverged: BTreeSet<(String, i32, u32, u32)>,
    /// Sequence repeats already reported: (node, partition directory).
    repeats: BTreeSet<(u32, String)>,
}

/// One record batch as replicas are compared: offsets, partition leader
/// epoch and CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDigest {
    pub base: i64,
    pub last: i64,
    pub epoch: i32,
    pub crc: u32,
}

/// At most this many truncation events are kept.
const MAX_TRUNCATIONS: usize = 10_000;

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
    pub fn observe(&mut self, at_nanos: u64, node_index: u32, incarnation: u32, node: &mut Node) {
        if self.replicas.replicated {
            let views = ReplicaSource::replica_views(node);
            self.observe_replicas(at_nanos, node_index, incarnation, views);
        } else {
            let offsets = node
                .partition_summary()
                .map(|(t, p, start, hw, _)| (t, p, start, hw));
            self.observe_offsets(at_nanos, node_index, offsets);
        }
        for t in ReplicaSource::take_truncations(node) {
            self.observe_truncation(at_nanos, node_index, t);
        }
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

    /// The data topic is replicated (set once when the run is built):
    /// replica views are watched, and high watermarks are held per node life.
    pub fn set_replicated(&mut self, replicated: bool) {
        self.replicas.replicated = replicated;
    }

    /// Check one node's replica views after a step: one leader per
    /// partition epoch, high watermarks that do not go back in a life.
    pub fn observe_replicas(
        &mut self,
        at_nanos: u64,
        node: u32,
        incarnation: u32,
        views: Vec<ReplicaView>,
    ) {
        if self
            .replicas
            .views
            .get(&node)
            .is_some_and(|(i, v)| *i == incarnation && *v == views)
        {
            return;
        }
        for v in &views {
            if v.role == ReplicaRole::Leader {
                let key = (v.topic.clone(), v.partition, v.leader_epoch);
                match self.replicas.leaders.get(&key) {
                    Some(&other) if other != node => self.violation(
                        TWO_LEADERS_ONE_PARTITION_EPOCH,
                        at_nanos,
                        format!(
                            "node {node} leads {}-{} in leader epoch {} but node {other} already did",
                            v.topic, v.partition, v.leader_epoch
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        self.replicas.leaders.insert(key, node);
                    }
                }
            }
            let key = (node, v.topic.clone(), v.partition);
            let (life, max) = self
                .replicas
                .hw
                .get(&key)
                .copied()
                .unwrap_or((incarnation, v.high_watermark));
            if life == incarnation && v.high_watermark < max {
                self.violation(
                    HW_REGRESSION,
                    at_nanos,
                    format!(
                        "node {node} (incarnation {incarnation}) {}-{}: high watermark went back from {max} to {}",
                        v.topic, v.partition, v.high_watermark
                    ),
                );
            }
            let max = if life == incarnation {
                max.max(v.high_watermark)
            } else {
                v.high_watermark
            };
            self.replicas.hw.insert(key, (incarnation, max));
        }
        self.replicas.views.insert(node, (incarnation, views));
    }

    /// A node truncated a replica's log: kept for [`Monitor::acked_truncations`].
    pub fn observe_truncation(&mut self, at_nanos: u64, node: u32, event: TruncationEvent) {
        if self.replicas.truncations.len() < MAX_TRUNCATIONS {
            self.replicas.truncations.push((at_nanos, node, event));
        }
    }

    /// Every truncation reported: (time, node, event).
    pub fn truncations(&self) -> &[(u64, u32, TruncationEvent)] {
        &self.replicas.truncations
    }

    /// Truncations of `topic` that cut, below the truncating replica's own
    /// high watermark, an offset that an acknowledged write got (`acked`:
    /// partition -> offsets). One finding per truncation, of kind
    /// `acked-write-truncated`; the caller decides whether it is a failure.
    pub fn acked_truncations(
        &self,
        topic: &str,
        acked: &BTreeMap<i32, BTreeSet<i64>>,
    ) -> Vec<Violation> {
        let mut found = Vec::new();
        for (at, node, t) in &self.replicas.truncations {
            if t.topic != topic {
                continue;
            }
            let end = t.from_end.min(t.high_watermark);
            if t.to >= end {
                continue;
            }
            let Some(offsets) = acked.get(&t.partition) else {
                continue;
            };
            let cut: Vec<i64> = offsets.range(t.to..end).copied().collect();
            if let (Some(first), Some(last)) = (cut.first(), cut.last()) {
                found.push(Violation {
                    kind: ACKED_WRITE_TRUNCATED.into(),
                    at_nanos: *at,
                    explanation: format!(
                        "node {node} truncated {topic}-{} from {} to {} below its high watermark {}, cutting {} acknowledged writes (offsets {first}..={last})",
                        t.partition,
                        t.from_end,
                        t.to,
                        t.high_watermark,
                        cut.len()
                    ),
                });
            }
        }
        found
    }

    /// Compare, for every partition two up nodes hold, their batches below
    /// the lower of their high watermarks, as `disk(node)` holds them now.
    pub fn check_divergence<'a>(
        &mut self,
        at_nanos: u64,
        disk: impl Fn(u32) -> Option<&'a MemDisk>,
    ) {
        // (topic, partition) -> [(node, log start, high watermark)]
        type Holders = BTreeMap<(String, i32), Vec<(u32, i64, i64)>>;
        let mut holders: Holders = BTreeMap::new();
        for (node, (_, views)) in &self.replicas.views {
            for v in views {
                holders
                    .entry((v.topic.clone(), v.partition))
                    .or_default()
                    .push((*node, v.log_start, v.high_watermark));
            }
        }
        for ((topic, partition), nodes) in holders {
            if nodes.len() < 2 {
                continue;
            }
            let batches: Vec<Vec<BatchDigest>> = nodes
                .iter()
                .map(|(n, _, _)| {
                    disk(*n).map_or_else(Vec::new, |d| disk_batches(d, &topic, partition))
                })
                .collect();
            for i in 0..nodes.len() {
                for j in i + 1..nodes.len() {
                    let (a, a_start, a_hw) = nodes[i];
                    let (b, b_start, b_hw) = nodes[j];
                    let key = (topic.clone(), partition, a, b);
                    if self.replicas.diverged.contains(&key) {
                        continue;
                    }
                    let lo = a_start.max(b_start);
                    let bound = a_hw.min(b_hw);
                    let Some(why) = divergence(&batches[i], &batches[j], lo, bound) else {
                        continue;
                    };
                    self.replicas.diverged.insert(key);
                    self.violation(
                        REPLICA_DIVERGENCE,
                        at_nanos,
                        format!(
                            "{topic}-{partition}: nodes {a} and {b} differ below their high watermarks ({a_hw}, {b_hw}): {why}"
                        ),
                    );
                }
            }
        }
    }

    /// `producer-sequence-repeat`: read every partition in `disk` (node
    /// `node`'s segment files as a read would see them now).
    pub fn check_sequences(&mut self, at_nanos: u64, node: u32, disk: &MemDisk) {
        for (dir, why) in sequence_repeats(disk) {
            if self.replicas.repeats.insert((node, dir.clone())) {
                self.violation(
                    PRODUCER_SEQUENCE_REPEAT,
                    at_nanos,
                    format!("node {node}, {dir}: {why}"),
                );
            }
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
        self.replicas.views.remove(&node_index);
        if self.quorum.nodes.remove(&node_index).is_some() {
            self.update_leadership(at_nanos);
        }
    }

    /// Watch the nodes' consumer groups (see [`Monitor::observe_groups`]).
    pub fn watch_groups(&mut self, watch: bool) {
        self.groups.watched = watch;
    }

    pub fn watches_groups(&self) -> bool {
        self.groups.watched
    }

    /// Check one node's group views after a step:
    /// - `group-double-assignment`: two members of a group's current
    ///   generation are assigned one partition;
    /// - `committed-offset-regression`: a committed offset a node shows goes
    ///   back while the group stays loaded there, or a node loading the
    ///   group (becoming its coordinator) shows less than any node showed
    ///   before (an acknowledged commit was lost). Deleted offsets are not
    ///   judged.
    pub fn observe_groups(
        &mut self,
        at_nanos: u64,
        node_index: u32,
        incarnation: u32,
        views: &[broker::group::GroupView],
    ) {
        let mut found = Vec::new();
        let (inc, shown) = self
            .groups
            .shown
            .entry(node_index)
            .or_insert_with(|| (incarnation, BTreeMap::new()));
        if *inc != incarnation {
            *inc = incarnation;
            shown.clear();
        }
        let mut now_shown: BTreeMap<String, GroupOffsets> = BTreeMap::new();
        for view in views {
            // One owner per partition in the current generation.
            let mut owner: BTreeMap<(String, i32), &str> = BTreeMap::new();
            for (member, bytes) in &view.assignments {
                let parts =
                    workloads::group::assignor::decode_assignment_all(bytes).unwrap_or_default();
                for tp in parts {
                    if let Some(other) = owner.insert(tp.clone(), member) {
                        if other != member
                            && self
                                .groups
                                .reported
                                .insert((view.group_id.clone(), view.generation_id))
                        {
                            found.push((
                                GROUP_DOUBLE_ASSIGNMENT,
                                format!(
                                    "node {node_index}: group {} generation {} assigns {}-{} to members {other} and {member}",
                                    view.group_id, view.generation_id, tp.0, tp.1
                                ),
                            ));
                        }
                    }
                }
            }
            let before = shown.get(&view.group_id);
            let mut offsets = BTreeMap::new();
            for ((topic, partition), offset) in &view.offsets {
                let key = (view.group_id.clone(), topic.clone(), *partition);
                let high = self.groups.high.get(&key).copied();
                match before {
                    Some(before) => {
                        if let Some(prev) = before.get(&(topic.clone(), *partition)) {
                            if offset < prev {
                                found.push((
                                    COMMITTED_OFFSET_REGRESSION,
                                    format!(
                                        "node {node_index}: group {} {topic}-{partition}: committed offset went back from {prev} to {offset}",
                                        view.group_id
                                    ),
                                ));
                            }
                        }
                    }
                    None => {
                        if let Some(h) = high.filter(|h| offset < h) {
                            found.push((
                                COMMITTED_OFFSET_REGRESSION,
                                format!(
                                    "node {node_index} loaded group {} with {topic}-{partition} committed at {offset}, below the {h} shown before",
                                    view.group_id
                                ),
                            ));
                        }
                    }
                }
                if high.is_none_or(|h| *offset > h) {
                    self.groups.high.insert(key, *offset);
                }
                offsets.insert((topic.clone(), *partition), *offset);
            }
            now_shown.insert(view.group_id.clone(), offsets);
        }
        *shown = now_shown;
        for (kind, explanation) in found {
            self.violation(kind, at_nanos, explanation);
        }
    }

    /// A node whose disk was wiped starts from nothing: forget what it exposed.
    pub fn forget_node(&mut self, node_index: u32) {
        self.seen.retain(|(n, _, _), _| *n != node_index);
        self.replicas.hw.retain(|(n, _, _), _| *n != node_index);
        self.replicas.views.remove(&node_index);
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

/// The batches of `topic`-`partition` in a node's segment files
/// (`{topic}-{partition}/{base:020}.log`), as a read would return them now
/// (the page cache), in offset order; each file is read up to its first
/// incomplete or invalid batch.
pub fn disk_batches(disk: &MemDisk, topic: &str, partition: i32) -> Vec<BatchDigest> {
    let dir = format!("{topic}-{partition}/");
    let mut out = Vec::new();
    for path in disk.files() {
        let Some(name) = path.strip_prefix(&dir) else {
            continue;
        };
        if name.contains('/') || !name.ends_with(".log") {
            continue;
        }
        let Some(bytes) = disk.read_all(&path) else {
            continue;
        };
        let (headers, _, _) = batch::scan(&bytes);
        out.extend(headers.iter().map(|h| BatchDigest {
            base: h.base_offset,
            last: h.last_offset(),
            epoch: h.partition_leader_epoch,
            crc: h.crc,
        }));
    }
    out.sort_by_key(|d| d.base);
    out
}

/// For each partition directory on `disk` whose log holds an idempotent
/// batch whose sequences are not ahead of its producer's previous batch of
/// the same epoch (sequences wrap from i32::MAX to 0), the first such batch.
pub fn sequence_repeats(disk: &MemDisk) -> Vec<(String, String)> {
    // directory -> its segment files, in offset order (names sort by offset).
    let mut dirs: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    let files = disk.files();
    for path in &files {
        if let Some((dir, name)) = path.split_once('/') {
            if !name.contains('/') && name.ends_with(".log") {
                dirs.entry(dir).or_default().push(path);
            }
        }
    }
    let mut found = Vec::new();
    for (dir, mut paths) in dirs {
        paths.sort();
        // producer id -> (epoch, last sequence, last offset) of its latest batch.
        let mut last: BTreeMap<i64, (i16, i32, i64)> = BTreeMap::new();
        let mut next_offset = i64::MIN;
        'log: for path in paths {
            let Some(bytes) = disk.read_all(path) else {
                continue;
            };
            for h in batch::scan(&bytes).0 {
                // Offsets going back: not a log any more (a misdirected
                // write, say), as recovery would cut it; stop reading.
                if h.base_offset < next_offset {
                    break 'log;
                }
                next_offset = h.next_offset();
                if h.producer_id < 0 {
                    continue;
                }
                let seq_last =
                    broker::log::producers::last_sequence(h.base_sequence, h.last_offset_delta);
                if let Some(&(epoch, prev, prev_offset)) = last.get(&h.producer_id) {
                    let follows = h.base_sequence == prev.wrapping_add(1)
                        || (prev == i32::MAX && h.base_sequence == 0);
                    // Only a batch that is not ahead: a gap may be data a
                    // crash lost (other checks judge losses).
                    let repeat = !follows && h.base_sequence <= prev;
                    if epoch == h.producer_epoch && repeat {
                        found.push((
                            dir.to_string(),
                            format!(
                                "producer {} epoch {}: batch at offset {} has sequences {}..={} after the batch at offset {prev_offset} ending at sequence {prev}",
                                h.producer_id, epoch, h.base_offset, h.base_sequence, seq_last
                            ),
                        ));
                        break 'log;
                    }
                }
                last.insert(h.producer_id, (h.producer_epoch, seq_last, h.base_offset));
            }
        }
    }
    found
}

/// How two replicas' batches differ at offsets in `[lo, bound)` that both
/// hold (a replica whose log does not reach an offset yet, or no longer
/// holds it, is not compared there); `None` if they agree.
pub fn divergence(a: &[BatchDigest], b: &[BatchDigest], lo: i64, bound: i64) -> Option<String> {
    let one_way = |x: &[BatchDigest], y: &[BatchDigest]| {
        let by_base: BTreeMap<i64, &BatchDigest> = y.iter().map(|d| (d.base, d)).collect();
        for d in x.iter().filter(|d| d.base >= lo && d.last < bound) {
            // The batch of `y` holding offset `d.base`, if any.
            let Some((_, other)) = by_base.range(..=d.base).next_back() else {
                continue;
            };
            if other.last < d.base || other.base < lo || other.last >= bound {
                continue;
            }
            if *other != d {
                return Some(format!(
                    "batch [{}, {}] epoch {} crc {:08x} against [{}, {}] epoch {} crc {:08x}",
                    d.base, d.last, d.epoch, d.crc, other.base, other.last, other.epoch, other.crc
                ));
            }
        }
        None
    };
    one_way(a, b).or_else(|| one_way(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gv(
        group: &str,
        generation: i32,
        members: &[(&str, &[i32])],
        offsets: &[(i32, i64)],
    ) -> broker::group::GroupView {
        broker::group::GroupView {
            group_id: group.into(),
            state: "Stable".into(),
            generation_id: generation,
            protocol: Some("range".into()),
            assignments: members
                .iter()
                .map(|(m, parts)| {
                    (
                        m.to_string(),
                        workloads::group::assignor::encode_assignment("t", parts),
                    )
                })
                .collect(),
            offsets: offsets
                .iter()
                .map(|(p, o)| (("t".to_string(), *p), *o))
                .collect(),
        }
    }

    #[test]
    fn group_views_that_assign_once_and_commit_forward_pass() {
        let mut m = Monitor::default();
        m.observe_groups(
            1,
            0,
            0,
            &[gv("g", 1, &[("a", &[0]), ("b", &[1])], &[(0, 3)])],
        );
        m.observe_groups(
            2,
            0,
            0,
            &[gv("g", 2, &[("a", &[0, 1]), ("b", &[])], &[(0, 5), (1, 2)])],
        );
        // A deposed coordinator keeps showing what it had; the new one loads more.
        m.observe_groups(3, 1, 0, &[gv("g", 2, &[], &[(0, 7), (1, 2)])]);
        m.observe_groups(4, 0, 0, &[gv("g", 2, &[], &[(0, 5), (1, 2)])]);
        // Node 0 unloads, then loads again with everything.
        m.observe_groups(5, 0, 0, &[]);
        m.observe_groups(6, 0, 0, &[gv("g", 3, &[], &[(0, 7), (1, 2)])]);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn group_double_assignment_and_committed_offset_regression_are_caught() {
        let mut m = Monitor::default();
        m.observe_groups(
            1,
            0,
            0,
            &[gv("g", 1, &[("a", &[0, 1]), ("b", &[1])], &[(0, 3)])],
        );
        m.observe_groups(
            2,
            0,
            0,
            &[gv("g", 1, &[("a", &[0, 1]), ("b", &[1])], &[(0, 2)])],
        );
        // Node 1 becomes the coordinator and loads less than was committed.
        m.observe_groups(3, 1, 0, &[gv("g", 2, &[], &[(0, 1)])]);
        let kinds: Vec<&str> = m.violations.iter().map(|v| v.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                GROUP_DOUBLE_ASSIGNMENT,
                COMMITTED_OFFSET_REGRESSION,
                COMMITTED_OFFSET_REGRESSION
            ],
            "{:?}",
            m.violations
        );
        assert!(m.violations[2].explanation.contains("below the 3"));
    }

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

    // ----- partition replicas -----

    fn rv(topic: &str, partition: i32, role: ReplicaRole, epoch: i32, hw: i64) -> ReplicaView {
        ReplicaView {
            topic: topic.into(),
            partition,
            role,
            leader_epoch: epoch,
            high_watermark: hw,
            log_end: hw + 5,
            log_start: 0,
            isr: vec![0, 1, 2],
        }
    }

    fn replicated() -> Monitor {
        let mut m = Monitor::default();
        m.set_replicated(true);
        m
    }

    #[test]
    fn one_leader_per_partition_epoch_passes_and_two_are_caught() {
        let mut m = replicated();
        m.observe_replicas(1, 0, 0, vec![rv("t", 0, ReplicaRole::Leader, 1, 0)]);
        m.observe_replicas(2, 1, 0, vec![rv("t", 0, ReplicaRole::Follower, 1, 0)]);
        // The same node again, then a new leader in a new epoch: fine.
        m.observe_replicas(3, 0, 0, vec![rv("t", 0, ReplicaRole::Leader, 1, 3)]);
        m.observe_replicas(4, 1, 0, vec![rv("t", 0, ReplicaRole::Leader, 2, 3)]);
        // Another partition's epoch 1 is another matter.
        m.observe_replicas(5, 2, 0, vec![rv("t", 1, ReplicaRole::Leader, 1, 0)]);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        // Node 2 acts as leader of t-0 in epoch 2 too.
        m.observe_replicas(6, 2, 0, vec![rv("t", 0, ReplicaRole::Leader, 2, 3)]);
        assert_eq!(kinds(&m), vec![TWO_LEADERS_ONE_PARTITION_EPOCH]);
        assert!(m.violations[0]
            .explanation
            .contains("t-0 in leader epoch 2"));
        assert!(m.violations[0].explanation.contains("node 1"));
    }

    #[test]
    fn a_high_watermark_going_back_within_a_life_is_caught_and_a_restart_may_reset_it() {
        let mut m = replicated();
        m.observe_replicas(1, 1, 0, vec![rv("t", 0, ReplicaRole::Follower, 1, 10)]);
        m.observe_replicas(2, 1, 0, vec![rv("t", 0, ReplicaRole::Follower, 1, 12)]);
        // Restarted: the checkpointed watermark may be older.
        m.observe_replicas(3, 1, 1, vec![rv("t", 0, ReplicaRole::Follower, 1, 8)]);
        m.observe_replicas(4, 1, 1, vec![rv("t", 0, ReplicaRole::Follower, 1, 9)]);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        m.observe_replicas(5, 1, 1, vec![rv("t", 0, ReplicaRole::Leader, 2, 7)]);
        assert_eq!(kinds(&m), vec![HW_REGRESSION]);
        assert!(m.violations[0].explanation.contains("from 9 to 7"));
    }

    /// A segment file of batches: (base offset, leader epoch, values).
    fn segment(disk: &mut MemDisk, dir: &str, base: i64, batches: &[(i64, i32, &[&str])]) {
        use broker::seam::{DiskExecutor, DiskOp};
        let mut bytes = Vec::new();
        for (offset, epoch, values) in batches {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let mut b = workloads::producer::encode_records(&values, 20, 0).to_vec();
            batch::assign_offsets(&mut b, *offset, *epoch);
            bytes.extend_from_slice(&b);
        }
        let path = format!("{dir}/{}", broker::log::segment::file_name(base, "log"));
        disk.execute(&DiskOp::CreateDir { path: dir.into() })
            .unwrap();
        disk.execute(&DiskOp::Create { path: path.clone() })
            .unwrap();
        disk.execute(&DiskOp::Write {
            path,
            offset: 0,
            data: bytes.into(),
        })
        .unwrap();
    }

    /// A segment file of idempotent batches: (base offset, producer id, epoch, base sequence, records).
    fn idem_segment(
        disk: &mut MemDisk,
        dir: &str,
        base: i64,
        batches: &[(i64, i64, i16, i32, usize)],
    ) {
        use broker::seam::{DiskExecutor, DiskOp};
        let mut bytes = bytes::BytesMut::new();
        for &(offset, pid, epoch, seq, count) in batches {
            let values: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
            let encoded = workloads::producer::encode_batch(&values, 1, 0, Some((pid, epoch, seq)));
            let mut b = encoded.to_vec();
            batch::assign_offsets(&mut b, offset, 0);
            bytes.extend_from_slice(&b);
        }
        let path = format!("{dir}/{}", broker::log::segment::file_name(base, "log"));
        disk.execute(&DiskOp::CreateDir { path: dir.into() })
            .unwrap();
        disk.execute(&DiskOp::Create { path: path.clone() })
            .unwrap();
        let data = bytes.freeze();
        disk.execute(&DiskOp::Write {
            path,
            offset: 0,
            data,
        })
        .unwrap();
    }

    #[test]
    fn a_retry_appended_twice_is_a_sequence_repeat_and_clean_logs_pass() {
        let mut d = MemDisk::new();
        // Clean: in order across segments, two producers interleaved, a new
        // epoch starting again at 0, and a gap (data a crash lost) is no repeat.
        idem_segment(
            &mut d,
            "t-0",
            0,
            &[(0, 7, 0, 0, 2), (2, 8, 0, 0, 1), (3, 7, 0, 2, 3)],
        );
        idem_segment(
            &mut d,
            "t-0",
            6,
            &[(6, 7, 1, 0, 1), (7, 7, 1, 5, 1), (8, 8, 0, 1, 1)],
        );
        let mut m = Monitor::default();
        m.check_sequences(1, 0, &d);
        assert!(m.violations.is_empty(), "{:?}", m.violations);

        // The same batch of producer 7 epoch 0 at offsets 2 and 4 (in t-1).
        idem_segment(
            &mut d,
            "t-1",
            0,
            &[(0, 7, 0, 0, 2), (2, 7, 0, 2, 2), (4, 7, 0, 2, 2)],
        );
        m.check_sequences(2, 0, &d);
        assert_eq!(kinds(&m), vec![PRODUCER_SEQUENCE_REPEAT]);
        assert!(m.violations[0].explanation.contains("t-1"));
        assert!(m.violations[0].explanation.contains("offset 4"));
        // Reported once per node and partition.
        m.check_sequences(3, 0, &d);
        assert_eq!(m.violations.len(), 1);

        // A batch copied to a wrong place (offsets going back) is not a log:
        // reading stops there (regression: silent-corruption seeds 0x16, 0x17).
        let mut d = MemDisk::new();
        idem_segment(
            &mut d,
            "t-0",
            0,
            &[(0, 7, 0, 0, 2), (2, 7, 0, 2, 2), (0, 7, 0, 0, 2)],
        );
        let mut m = Monitor::default();
        m.check_sequences(1, 0, &d);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn segment_files_are_read_in_offset_order() {
        let mut d = MemDisk::new();
        segment(&mut d, "t-0", 3, &[(3, 2, &["c"]), (4, 2, &["d", "e"])]);
        segment(&mut d, "t-0", 0, &[(0, 1, &["a", "b"]), (2, 1, &["x"])]);
        segment(&mut d, "t-1", 0, &[(0, 1, &["z"])]);
        let got: Vec<(i64, i64, i32)> = disk_batches(&d, "t", 0)
            .iter()
            .map(|b| (b.base, b.last, b.epoch))
            .collect();
        // (The encoder writes each record as a batch of its own.)
        assert_eq!(
            got,
            [
                (0, 0, 1),
                (1, 1, 1),
                (2, 2, 1),
                (3, 3, 2),
                (4, 4, 2),
                (5, 5, 2)
            ]
        );
        assert_eq!(disk_batches(&d, "t", 1).len(), 1);
        assert!(disk_batches(&d, "u", 0).is_empty());
    }

    /// Two nodes' disks and views of t-0; node 1's last batch is `tail`.
    fn two_replicas(tail: (i64, i32, &[&str]), hw: (i64, i64)) -> Monitor {
        let mut m = replicated();
        let mut disks = [MemDisk::new(), MemDisk::new()];
        segment(
            &mut disks[0],
            "t-0",
            0,
            &[(0, 1, &["a", "b"]), (2, 1, &["c"])],
        );
        segment(&mut disks[1], "t-0", 0, &[(0, 1, &["a", "b"]), tail]);
        m.observe_replicas(1, 0, 0, vec![rv("t", 0, ReplicaRole::Leader, 1, hw.0)]);
        m.observe_replicas(1, 1, 0, vec![rv("t", 0, ReplicaRole::Follower, 1, hw.1)]);
        m.check_divergence(2, |n| disks.get(n as usize));
        m
    }

    #[test]
    fn replicas_that_agree_below_their_watermarks_pass() {
        // Identical.
        let m = two_replicas((2, 1, &["c"]), (3, 3));
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        // Different, but above the lower high watermark (uncommitted).
        let m = two_replicas((2, 2, &["q"]), (3, 2));
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn replicas_that_differ_below_their_watermarks_are_caught_once() {
        // Same offsets, another leader epoch and content, both committed.
        let m = two_replicas((2, 2, &["q"]), (3, 3));
        assert_eq!(kinds(&m), vec![REPLICA_DIVERGENCE]);
        assert!(m.violations[0].explanation.contains("t-0: nodes 0 and 1"));
        assert!(m.violations[0].explanation.contains("[2, 2] epoch 1"));
        // Same content, another epoch stamped on it: also divergent.
        let m = two_replicas((2, 5, &["c"]), (3, 3));
        assert_eq!(kinds(&m), vec![REPLICA_DIVERGENCE]);
    }

    #[test]
    fn divergence_ignores_what_a_replica_does_not_hold_yet() {
        let d = |base, last, epoch, crc| BatchDigest {
            base,
            last,
            epoch,
            crc,
        };
        let leader = [d(0, 1, 1, 7), d(2, 4, 1, 8), d(5, 5, 2, 9)];
        let behind = [d(0, 1, 1, 7)];
        assert_eq!(divergence(&leader, &behind, 0, 6), None);
        // Below the log start of one of them: not compared.
        let other_start = [d(2, 4, 1, 8), d(5, 5, 2, 9)];
        assert_eq!(divergence(&leader, &other_start, 2, 6), None);
        // A batch split differently covers offset 2 with other content.
        let split = [d(0, 1, 1, 7), d(2, 2, 1, 1), d(3, 4, 1, 2)];
        assert!(divergence(&leader, &split, 0, 6).is_some());
    }

    fn truncation(partition: i32, from_end: i64, to: i64, hw: i64) -> TruncationEvent {
        TruncationEvent {
            topic: "t".into(),
            partition,
            from_end,
            to,
            high_watermark: hw,
        }
    }

    #[test]
    fn truncating_acknowledged_writes_below_the_high_watermark_is_found() {
        let mut m = replicated();
        // A follower cuts its own uncommitted suffix: fine.
        m.observe_truncation(1, 1, truncation(0, 12, 10, 10));
        // Another partition, and another topic: no acknowledged writes there.
        m.observe_truncation(2, 1, truncation(1, 12, 5, 12));
        m.observe_truncation(
            3,
            1,
            TruncationEvent {
                topic: "u".into(),
                ..truncation(0, 12, 5, 12)
            },
        );
        let acked: BTreeMap<i32, BTreeSet<i64>> =
            [(0, (0..12).collect()), (1, BTreeSet::new())].into();
        assert!(m.acked_truncations("t", &acked).is_empty());
        assert_eq!(m.truncations().len(), 3);
        // Node 2 cuts offsets 6..9 that it knew were committed.
        m.observe_truncation(4, 2, truncation(0, 11, 6, 9));
        let found = m.acked_truncations("t", &acked);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, ACKED_WRITE_TRUNCATED);
        assert!(found[0]
            .explanation
            .contains("3 acknowledged writes (offsets 6..=8)"));
    }
}
