//! One KIP-848 consumer group: its members, the group epoch, the target
//! assignment and each member's reconciliation toward it.
//!
//! The group epoch moves when the membership, a subscription or the
//! subscribed topics change; the target assignment is then recomputed by
//! the server-side assignor and stamped with that epoch. Each member walks
//! toward its target as KIP-848's CurrentAssignmentBuilder does: it first
//! revokes what it must give up (UNREVOKED_PARTITIONS, its epoch held
//! back), then takes the new epoch and whatever is free; partitions still
//! owned by another member are withheld (UNRELEASED_PARTITIONS) until that
//! member acknowledges their revocation. So a partition never has two
//! owners.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use uuid::Uuid;

use super::assignors::{self, TopicPartitions};
use super::records::consumer::{self as rec, CurrentAssignment, MemberMetadata};

/// Kafka's MemberState values (as written in the current assignment record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable = 0,
    UnrevokedPartitions = 1,
    UnreleasedPartitions = 2,
}

impl MemberState {
    pub fn from_i8(v: i8) -> MemberState {
        match v {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// Member epoch of a static member that left for a while (KIP-848).
pub const LEAVE_STATIC_EPOCH: i32 = -2;
pub const LEAVE_EPOCH: i32 = -1;

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub meta: MemberMetadata,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
    /// Not persisted: the session and revocation deadlines.
    pub session_deadline: Option<i64>,
    pub revocation_deadline: Option<i64>,
}

impl ConsumerMember {
    pub fn new(member_id: &str) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            meta: MemberMetadata {
                rebalance_timeout_ms: -1,
                ..MemberMetadata::default()
            },
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: TopicPartitions::new(),
            pending_revocation: TopicPartitions::new(),
            session_deadline: None,
            revocation_deadline: None,
        }
    }

    pub fn current(&self) -> CurrentAssignment {
        CurrentAssignment {
            member_epoch: self.epoch,
            previous_member_epoch: self.previous_epoch,
            state: self.state as i8,
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }

    pub fn restore_current(&mut self, a: CurrentAssignment) {
        self.epoch = a.member_epoch;
        self.previous_epoch = a.previous_member_epoch;
        self.state = MemberState::from_i8(a.state);
        self.assigned = a.assigned;
        self.pending_revocation = a.pending_revocation;
    }

    pub fn owns(&self, topic: &Uuid, p: i32) -> bool {
        let has = |tps: &TopicPartitions| tps.get(topic).is_some_and(|s| s.contains(&p));
        has(&self.assigned) || has(&self.pending_revocation)
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub group_id: String,
    pub partition: i32,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Instance id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Member id -> target partitions (of `assignment_epoch`).
    pub target: BTreeMap<String, TopicPartitions>,
    /// The subscribed topics the target was computed against: name -> (id, partitions).
    pub subscribed_topics: BTreeMap<String, (Uuid, i32)>,
}

/// A subscription regex as Kafka matches it: against the whole topic name.
pub fn topic_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// The topics a member subscribes to: the names it gives, and the
/// (non-internal) topics its regex matches.
pub fn subscribed_names(
    m: &ConsumerMember,
    topics: &BTreeMap<String, (Uuid, i32)>,
) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = m.meta.subscribed_topic_names.iter().cloned().collect();
    let pattern = m.meta.subscribed_topic_regex.as_deref();
    if let Some(Ok(re)) = pattern.filter(|p| !p.is_empty()).map(topic_regex) {
        let matching = topics
            .keys()
            .filter(|t| !t.starts_with("__") && re.is_match(t));
        names.extend(matching.cloned());
    }
    names
}

/// A record to append: key and value (or tombstone).
pub type Rec = (Bytes, Option<Bytes>);

impl ConsumerGroup {
    pub fn new(group_id: &str, partition: i32) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            partition,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: BTreeMap::new(),
        }
    }

    /// Kafka's ConsumerGroupState name.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            (m.epoch != self.assignment_epoch && m.epoch != LEAVE_STATIC_EPOCH)
                || m.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor most members asked for (ties: the smaller name); `uniform` when none.
    pub fn assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.meta.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)));
        best.map_or(assignors::UNIFORM, |(n, _)| n).to_string()
    }

    /// The subscribed topic names of every member, resolved against `topics`.
    pub fn resolve(&self, topics: &BTreeMap<String, (Uuid, i32)>) -> BTreeMap<String, (Uuid, i32)> {
        self.members
            .values()
            .flat_map(|m| subscribed_names(m, topics))
            .filter_map(|name| topics.get(&name).map(|t| (name, *t)))
            .collect()
    }

    // Records describing the group.

    pub fn epoch_record(&self) -> Rec {
        let key = rec::key(rec::GROUP_METADATA, &self.group_id, None);
        (key, Some(rec::epoch_value(self.epoch)))
    }

    pub fn member_record(&self, m: &ConsumerMember) -> Rec {
        let key = rec::key(rec::MEMBER_METADATA, &self.group_id, Some(&m.member_id));
        (key, Some(rec::member_value(&m.meta)))
    }

    pub fn current_record(&self, m: &ConsumerMember) -> Rec {
        let key = rec::key(rec::CURRENT_ASSIGNMENT, &self.group_id, Some(&m.member_id));
        (key, Some(rec::current_assignment_value(&m.current())))
    }

    /// Tombstones of a member's three records.
    pub fn member_tombstones(&self, member_id: &str) -> Vec<Rec> {
        [
            rec::CURRENT_ASSIGNMENT,
            rec::TARGET_MEMBER,
            rec::MEMBER_METADATA,
        ]
        .iter()
        .map(|&kind| (rec::key(kind, &self.group_id, Some(member_id)), None))
        .collect()
    }

    /// Tombstones of the whole group (it must have no members).
    pub fn group_tombstones(&self) -> Vec<Rec> {
        let mut out = Vec::new();
        for kind in [
            rec::TARGET_METADATA,
            rec::PARTITION_METADATA,
            rec::GROUP_METADATA,
        ] {
            out.push((rec::key(kind, &self.group_id, None), None));
        }
        out
    }

    /// Bumps the group epoch, recomputes the target assignment against
    /// `topics` and returns the records of both.
    pub fn rebalance(&mut self, topics: &BTreeMap<String, (Uuid, i32)>) -> Vec<Rec> {
        self.epoch += 1;
        let mut out = vec![self.epoch_record()];
        self.subscribed_topics = self.resolve(topics);
        let members: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| {
                let ids = subscribed_names(m, topics)
                    .iter()
                    .filter_map(|n| self.subscribed_topics.get(n).map(|t| t.0))
                    .collect();
                (m.member_id.clone(), ids)
            })
            .collect();
        let partitions = self.subscribed_topics.values().copied().collect();
        let target = assignors::assign(&self.assignor(), &members, &partitions, &self.target);
        for (m, tps) in &target {
            if self.target.get(m) != Some(tps) {
                let key = rec::key(rec::TARGET_MEMBER, &self.group_id, Some(m));
                out.push((key, Some(rec::target_member_value(tps))));
            }
        }
        self.target = target;
        self.assignment_epoch = self.epoch;
        let key = rec::key(rec::TARGET_METADATA, &self.group_id, None);
        out.push((key, Some(rec::epoch_value(self.assignment_epoch))));
        out
    }

    /// The epoch of the member (other than `except`) owning a partition, if any.
    fn owner_epoch(&self, except: &str, topic: &Uuid, p: i32) -> Option<i32> {
        self.members
            .values()
            .find(|m| m.member_id != except && m.owns(topic, p))
            .map(|m| m.epoch)
    }

    /// Moves member `id` toward its target (KIP-848's CurrentAssignmentBuilder).
    /// `owned`: what the member says it owns (`None`: as before).
    /// Returns whether its current assignment changed.
    pub fn reconcile(&mut self, id: &str, owned: Option<&TopicPartitions>) -> bool {
        let Some(m) = self.members.get(id) else {
            return false;
        };
        let still_revoking = |m: &ConsumerMember| match owned {
            None => true,
            Some(o) => m
                .pending_revocation
                .iter()
                .any(|(t, ps)| o.get(t).is_some_and(|op| !op.is_disjoint(ps))),
        };
        let recompute = match m.state {
            MemberState::Stable => m.epoch != self.assignment_epoch,
            MemberState::UnrevokedPartitions => !still_revoking(m),
            MemberState::UnreleasedPartitions => true,
        };
        if !recompute {
            return false;
        }
        let before = m.current();
        let target = self.target.get(id).cloned().unwrap_or_default();
        let mut keep = TopicPartitions::new();
        let mut revoke = TopicPartitions::new();
        let mut gain = TopicPartitions::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = m.assigned.keys().chain(target.keys()).copied().collect();
        for t in topics {
            let empty = BTreeSet::new();
            let have = m.assigned.get(&t).unwrap_or(&empty);
            let want = target.get(&t).unwrap_or(&empty);
            for &p in have.intersection(want) {
                keep.entry(t).or_default().insert(p);
            }
            for &p in have.difference(want) {
                revoke.entry(t).or_default().insert(p);
            }
            for &p in want.difference(have) {
                match self.owner_epoch(id, &t, p) {
                    None => {
                        gain.entry(t).or_default().insert(p);
                    }
                    Some(_) => unreleased = true,
                }
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("looked up above");
        if !revoke.is_empty() {
            // Give up first; the epoch waits for the acknowledgement.
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = keep;
            m.pending_revocation = revoke;
        } else {
            for (t, ps) in gain {
                keep.entry(t).or_default().extend(ps);
            }
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
            }
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            m.assigned = keep;
            m.pending_revocation = TopicPartitions::new();
        }
        m.current() != before
    }
}
