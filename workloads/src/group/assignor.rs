//! The classic consumer protocol's client side: the subscription a member
//! sends with JoinGroup, the assignment the leader hands out with SyncGroup
//! (both as Kafka's `ConsumerProtocolSubscription` / `Assignment`, with a
//! two-byte version before the body), and the two assignors, computed by
//! the group's leader as Kafka's clients do:
//!
//! - `range`: per topic, members sorted by group instance id (else member
//!   id); each gets a contiguous run of `n / m` partitions, the first
//!   `n % m` one more. Eager: everyone gives up everything before joining.
//! - `cooperative-sticky` (KIP-429): members keep what they own up to their
//!   quota, the rest is spread to the members below it; a partition that
//!   would move from its owner to another member is handed to nobody in
//!   this generation. The owner revokes it and rejoins, and the next
//!   rebalance gives it to its new member.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The version of the consumer protocol's messages we write.
pub const PROTOCOL_VERSION: i16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assignor {
    Range,
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup (Kafka's assignor names).
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep their partitions through a rebalance (KIP-429).
    pub fn cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    pub fn parse(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }
}

/// What a member told the group when it joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// Partitions of `topic` (the one topic the workload reads) it owns.
    pub owned: Vec<i32>,
    /// The generation it owned them in (-1: none).
    pub generation: i32,
}

/// One member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub subscription: Subscription,
}

fn with_version<T: Encodable>(message: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding our own well-formed messages cannot fail.
    let _ = message.encode(&mut buf, version);
    buf.freeze()
}

fn versioned<T: Decodable>(bytes: &Bytes) -> Option<T> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    // Newer versions than we know are read as the newest we know (Kafka's
    // rule: fields are only ever added).
    let version = b.get_i16().clamp(0, PROTOCOL_VERSION);
    T::decode(&mut b, version).ok()
}

/// JoinGroup metadata: the topic, what we own of it and since which generation.
pub fn encode_subscription(topic: &str, owned: &[i32], generation: i32) -> Bytes {
    let owned_partitions = if owned.is_empty() {
        Vec::new()
    } else {
        vec![OwnedTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(owned.to_vec())]
    };
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())])
        .with_owned_partitions(owned_partitions)
        .with_generation_id(generation);
    with_version(&sub, PROTOCOL_VERSION)
}

/// A member's subscription, keeping only what it owns of `topic`.
pub fn decode_subscription(bytes: &Bytes, topic: &str) -> Option<Subscription> {
    let sub: ConsumerProtocolSubscription = versioned(bytes)?;
    let mut owned: Vec<i32> = sub
        .owned_partitions
        .iter()
        .filter(|t| *t.topic.0 == *topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    owned.sort_unstable();
    owned.dedup();
    Some(Subscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned,
        generation: sub.generation_id,
    })
}

/// SyncGroup assignment bytes for `partitions` of `topic`.
pub fn encode_assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let assigned = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![AssignedTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions.to_vec())]
    };
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    with_version(&a, PROTOCOL_VERSION)
}

/// The partitions of `topic` an assignment gives, sorted. Empty bytes are
/// an empty assignment (a member the leader left out).
pub fn decode_assignment(bytes: &Bytes, topic: &str) -> Option<Vec<i32>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let a: ConsumerProtocolAssignment = versioned(bytes)?;
    let mut partitions: Vec<i32> = a
        .assigned_partitions
        .iter()
        .filter(|t| *t.topic.0 == *topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    Some(partitions)
}

/// Every (topic, partition) an assignment gives (whatever the topic), in
/// its order; empty bytes are an empty assignment.
pub fn decode_assignment_all(bytes: &Bytes) -> Option<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let a: ConsumerProtocolAssignment = versioned(bytes)?;
    Some(
        a.assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
    )
}

/// The leader's assignment of partitions `0..partitions` of the topic:
/// member id -> partitions (sorted); every member appears.
pub fn assign(
    assignor: Assignor,
    partitions: i32,
    members: &[MemberSubscription],
) -> BTreeMap<String, Vec<i32>> {
    match assignor {
        Assignor::Range => range(partitions, members),
        Assignor::CooperativeSticky => cooperative_sticky(partitions, members),
    }
}

fn range(partitions: i32, members: &[MemberSubscription]) -> BTreeMap<String, Vec<i32>> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| {
        let ka = a.instance_id.as_deref().unwrap_or(&a.member_id);
        let kb = b.instance_id.as_deref().unwrap_or(&b.member_id);
        (ka, &a.member_id).cmp(&(kb, &b.member_id))
    });
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let m = sorted.len() as i32;
    if m == 0 {
        return out;
    }
    let (per, extra) = (partitions / m, partitions % m);
    let mut next = 0;
    for (i, member) in sorted.iter().enumerate() {
        let count = per + i32::from((i as i32) < extra);
        out.insert(member.member_id.clone(), (next..next + count).collect());
        next += count;
    }
    out
}

fn cooperative_sticky(
    partitions: i32,
    members: &[MemberSubscription],
) -> BTreeMap<String, Vec<i32>> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let mut out: BTreeMap<String, Vec<i32>> = sorted
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    let m = sorted.len();
    if m == 0 {
        return out;
    }
    // Who validly owns what: the claim of the highest generation, if only
    // one member makes it (conflicting claims count as no owner).
    let mut claims: BTreeMap<i32, Vec<(i32, &str)>> = BTreeMap::new();
    for member in &sorted {
        for &p in &member.subscription.owned {
            if (0..partitions).contains(&p) {
                claims
                    .entry(p)
                    .or_default()
                    .push((member.subscription.generation, &member.member_id));
            }
        }
    }
    let mut owner: BTreeMap<i32, &str> = BTreeMap::new();
    for (p, mut c) in claims {
        c.sort();
        let top = c.last().map(|x| x.0);
        let at_top: Vec<&(i32, &str)> = c.iter().filter(|x| Some(x.0) == top).collect();
        if let [only] = at_top.as_slice() {
            owner.insert(p, only.1);
        }
    }
    let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (p, o) in &owner {
        owned.entry(*o).or_default().push(*p);
    }
    // Quotas: the members owning most get the larger quota first.
    let n = partitions.max(0) as usize;
    let (min_quota, extra) = (n / m, n % m);
    let mut by_owned: Vec<&str> = sorted.iter().map(|x| x.member_id.as_str()).collect();
    by_owned.sort_by_key(|id| (std::cmp::Reverse(owned.get(id).map_or(0, Vec::len)), *id));
    let quota: BTreeMap<&str, usize> = by_owned
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, min_quota + usize::from(i < extra)))
        .collect();
    let mut target: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    let mut taken = vec![false; n];
    for id in &by_owned {
        let keep: Vec<i32> = owned
            .get(id)
            .map(|o| o.iter().copied().take(quota[id]).collect())
            .unwrap_or_default();
        for p in &keep {
            taken[*p as usize] = true;
        }
        target.insert(id, keep);
    }
    for (p, _) in taken.iter().enumerate().filter(|(_, t)| !**t) {
        // The member furthest below its quota, then the lowest member id.
        let pick = by_owned
            .iter()
            .filter(|id| target[*id].len() < quota[*id])
            .min_by_key(|id| (target[*id].len() as i64 - quota[*id] as i64, **id));
        if let Some(id) = pick {
            target.get_mut(id).expect("present").push(p as i32);
        }
    }
    // Cooperative: nothing moves straight from one owner to another.
    for (id, parts) in target {
        let mut parts: Vec<i32> = parts
            .into_iter()
            .filter(|p| owner.get(p).is_none_or(|o| *o == id))
            .collect();
        parts.sort_unstable();
        out.insert(id.to_string(), parts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, owned: &[i32], generation: i32) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            instance_id: None,
            subscription: Subscription {
                topics: vec!["t".into()],
                owned: owned.to_vec(),
                generation,
            },
        }
    }

    fn flat(a: &BTreeMap<String, Vec<i32>>) -> Vec<(&str, Vec<i32>)> {
        a.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let b = encode_subscription("t", &[2, 0], 7);
        let s = decode_subscription(&b, "t").unwrap();
        assert_eq!(s.topics, vec!["t".to_string()]);
        assert_eq!(s.owned, vec![0, 2]);
        assert_eq!(s.generation, 7);
        assert_eq!(
            decode_subscription(&b, "other").unwrap().owned,
            Vec::<i32>::new()
        );
        let a = encode_assignment("t", &[1, 3]);
        assert_eq!(decode_assignment(&a, "t").unwrap(), vec![1, 3]);
        assert_eq!(
            decode_assignment(&Bytes::new(), "t").unwrap(),
            Vec::<i32>::new()
        );
        assert!(decode_assignment(&Bytes::from_static(&[0]), "t").is_none());
    }

    #[test]
    fn range_gives_contiguous_runs_the_first_members_one_more() {
        let members = [
            member("b", &[], -1),
            member("a", &[], -1),
            member("c", &[], -1),
        ];
        let a = assign(Assignor::Range, 7, &members);
        assert_eq!(
            flat(&a),
            vec![("a", vec![0, 1, 2]), ("b", vec![3, 4]), ("c", vec![5, 6])]
        );
        let a = assign(Assignor::Range, 2, &members);
        assert_eq!(
            flat(&a),
            vec![("a", vec![0]), ("b", vec![1]), ("c", vec![])]
        );
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_withholds_moves() {
        // Fresh group: balanced.
        let a = assign(
            Assignor::CooperativeSticky,
            6,
            &[member("a", &[], -1), member("b", &[], -1)],
        );
        assert_eq!(flat(&a), vec![("a", vec![0, 2, 4]), ("b", vec![1, 3, 5])]);
        // c joins: a and b keep two each; the partitions that must move to
        // c are withheld from everyone this round.
        let members = [
            member("a", &[0, 1, 2], 1),
            member("b", &[3, 4, 5], 1),
            member("c", &[], -1),
        ];
        let a = assign(Assignor::CooperativeSticky, 6, &members);
        assert_eq!(
            flat(&a),
            vec![("a", vec![0, 1]), ("b", vec![3, 4]), ("c", vec![])]
        );
        // Second round: a and b revoked 2 and 5; c gets them.
        let members = [
            member("a", &[0, 1], 2),
            member("b", &[3, 4], 2),
            member("c", &[], -1),
        ];
        let a = assign(Assignor::CooperativeSticky, 6, &members);
        assert_eq!(
            flat(&a),
            vec![("a", vec![0, 1]), ("b", vec![3, 4]), ("c", vec![2, 5])]
        );
        // A member leaves: its partitions are free and go at once.
        let members = [member("a", &[0, 1], 3), member("c", &[2, 5], 3)];
        let a = assign(Assignor::CooperativeSticky, 6, &members);
        assert_eq!(flat(&a), vec![("a", vec![0, 1, 3]), ("c", vec![2, 4, 5])]);
        // A stale claim (older generation) loses to the newer one.
        let members = [member("a", &[0, 1, 2], 1), member("b", &[2], 4)];
        let a = assign(Assignor::CooperativeSticky, 3, &members);
        assert_eq!(flat(&a), vec![("a", vec![0, 1]), ("b", vec![2])]);
    }

    #[test]
    fn every_assignment_is_disjoint_and_complete_once_settled() {
        for n in 0..9 {
            for m in 1..5 {
                let members: Vec<MemberSubscription> =
                    (0..m).map(|i| member(&format!("m{i}"), &[], -1)).collect();
                for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
                    let a = assign(assignor, n, &members);
                    let mut all: Vec<i32> = a.values().flatten().copied().collect();
                    all.sort_unstable();
                    assert_eq!(all, (0..n).collect::<Vec<_>>(), "{assignor:?} {n}/{m}");
                    let sizes: Vec<usize> = a.values().map(Vec::len).collect();
                    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(hi - lo <= 1, "{assignor:?} {n}/{m} {sizes:?}");
                }
            }
        }
    }
}
