//! Server-side assignors of KIP-848 consumer groups: `uniform` (the default)
//! and `range`. Both are pure functions of the members' resolved
//! subscriptions, the topics' partition counts and (for `uniform`, which is
//! sticky) the previous target assignment. Everything is ordered (BTreeMap),
//! so the same inputs always give the same assignment.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Topic id -> partition indexes.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

pub fn is_known(name: &str) -> bool {
    name == UNIFORM || name == RANGE
}

/// The target assignment: member id -> partitions.
/// `members`: member id -> subscribed topic ids (resolved, existing only);
/// `topics`: topic id -> partition count.
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, BTreeSet<Uuid>>,
    topics: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, TopicPartitions>,
) -> BTreeMap<String, TopicPartitions> {
    let owners = if assignor == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics, previous)
    };
    let mut out: BTreeMap<String, TopicPartitions> = members
        .keys()
        .map(|m| (m.clone(), TopicPartitions::new()))
        .collect();
    for ((topic, p), m) in owners {
        if let Some(a) = out.get_mut(&m) {
            a.entry(topic).or_default().insert(p);
        }
    }
    out
}

type Owners = BTreeMap<(Uuid, i32), String>;

/// Per topic, its subscribers sorted by member id share consecutive ranges;
/// the first `partitions % subscribers` get one more.
fn range(members: &BTreeMap<String, BTreeSet<Uuid>>, topics: &BTreeMap<Uuid, i32>) -> Owners {
    let mut owners = Owners::new();
    for (&topic, &count) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, subs)| subs.contains(&topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let k = subscribers.len() as i32;
        let (per, extra) = (count / k, count % k);
        let mut next = 0;
        for (i, m) in subscribers.into_iter().enumerate() {
            let n = per + i32::from((i as i32) < extra);
            for p in next..next + n {
                owners.insert((topic, p), m.clone());
            }
            next += n;
        }
    }
    owners
}

/// Balanced and sticky: members keep what they had (up to the fair share),
/// the rest goes to the least loaded subscriber, then partitions move from
/// a member to a subscriber with at least two fewer until none can.
fn uniform(
    members: &BTreeMap<String, BTreeSet<Uuid>>,
    topics: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, TopicPartitions>,
) -> Owners {
    let subscribed = |m: &str, t: &Uuid| members.get(m).is_some_and(|s| s.contains(t));
    let all: Vec<(Uuid, i32)> = topics
        .iter()
        .filter(|(t, _)| members.values().any(|s| s.contains(t)))
        .flat_map(|(&t, &n)| (0..n).map(move |p| (t, p)))
        .collect();
    let mut owners = Owners::new();
    let mut load: BTreeMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    if members.is_empty() {
        return owners;
    }
    let quota = all.len().div_ceil(members.len());
    for (m, had) in previous {
        for (t, ps) in had {
            for &p in ps {
                let exists = topics.get(t).is_some_and(|&n| p < n);
                let Some(l) = load.get_mut(m.as_str()) else {
                    continue;
                };
                if exists && subscribed(m, t) && *l < quota && !owners.contains_key(&(*t, p)) {
                    owners.insert((*t, p), m.clone());
                    *l += 1;
                }
            }
        }
    }
    for tp in &all {
        if owners.contains_key(tp) {
            continue;
        }
        let least = load
            .iter()
            .filter(|(m, _)| subscribed(m, &tp.0))
            .min_by_key(|(m, l)| (**l, **m))
            .map(|(m, _)| m.to_string());
        if let Some(m) = least {
            *load.get_mut(m.as_str()).expect("a member") += 1;
            owners.insert(*tp, m);
        }
    }
    // Each move lowers the sum of squared loads, so this ends.
    loop {
        let mut moved = false;
        for tp in &all {
            let Some(from) = owners.get(tp).cloned() else {
                continue;
            };
            let to = load
                .iter()
                .filter(|(m, _)| subscribed(m, &tp.0))
                .min_by_key(|(m, l)| (**l, **m))
                .map(|(m, l)| (m.to_string(), *l));
            if let Some((to, to_load)) = to {
                if load[from.as_str()] > to_load + 1 {
                    *load.get_mut(from.as_str()).expect("owner") -= 1;
                    *load.get_mut(to.as_str()).expect("member") += 1;
                    owners.insert(*tp, to);
                    moved = true;
                }
            }
        }
        if !moved {
            return owners;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn members(list: &[(&str, &[u8])]) -> BTreeMap<String, BTreeSet<Uuid>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|&n| t(n)).collect()))
            .collect()
    }

    fn count(a: &BTreeMap<String, TopicPartitions>, m: &str) -> usize {
        a[m].values().map(BTreeSet::len).sum()
    }

    #[test]
    fn range_gives_consecutive_ranges_per_topic() {
        let topics = BTreeMap::from([(t(1), 5)]);
        let a = assign(
            RANGE,
            &members(&[("a", &[1]), ("b", &[1])]),
            &topics,
            &BTreeMap::new(),
        );
        assert_eq!(a["a"][&t(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["b"][&t(1)], BTreeSet::from([3, 4]));
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let topics = BTreeMap::from([(t(1), 4)]);
        let two = assign(
            UNIFORM,
            &members(&[("a", &[1]), ("b", &[1])]),
            &topics,
            &BTreeMap::new(),
        );
        assert_eq!((count(&two, "a"), count(&two, "b")), (2, 2));
        let three = assign(
            UNIFORM,
            &members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]),
            &topics,
            &two,
        );
        assert_eq!(count(&three, "c"), 1);
        // Nobody loses a partition it kept except to make room for c.
        let kept = |m: &str| three[m][&t(1)].is_subset(&two[m][&t(1)]);
        assert!(kept("a") && kept("b"), "{three:?}");
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let topics = BTreeMap::from([(t(1), 2), (t(2), 2)]);
        let a = assign(
            UNIFORM,
            &members(&[("a", &[1]), ("b", &[1, 2])]),
            &topics,
            &BTreeMap::new(),
        );
        assert!(!a["a"].contains_key(&t(2)));
        assert_eq!(count(&a, "a") + count(&a, "b"), 4);
    }
}
