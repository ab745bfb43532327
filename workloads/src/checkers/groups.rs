//! Consumer-group checkers, over the `Assignment`, `Commit`, `OffsetReset`,
//! `Seek` and `Poll` events of group members (the processes that recorded
//! an assignment or a commit for the group).
//!
//! Safety:
//! - `group-double-assignment`: in one generation of a group, two members
//!   (a static member is its `group.instance.id`, whatever its member id)
//!   were given one partition.
//! - `committed-offset-regression`: an ok commit of a partition carries an
//!   offset below one acknowledged to the group before it was invoked, with
//!   no explicit `OffsetReset` of the partition in between.
//! - `group-skip` (at-least-once across members): a commit (ok, unknown or
//!   never answered: it may have taken effect) of offset `X` invoked at `t`, while some
//!   record below `X` (above the last reset, if any) had not been processed
//!   by any member of the group by `t`. The group's next owner starts at
//!   `X`: that record would never be consumed.
//! - `fenced-commit-accepted`: an ok commit from generation `g` invoked
//!   after some member of the group was given generation `g' > g`: the
//!   coordinator accepted a zombie's commit.
//!
//! Liveness ([`liveness`], judged by the run, which knows which members are
//! alive at the end):
//! - `group-unstable`: after the heal the live members do not end in one
//!   generation with a full, disjoint assignment (or got there too late);
//! - `group-unconsumed`: an acknowledged record no member of the group
//!   processed within the bound.

use std::collections::{BTreeMap, BTreeSet};

use super::version_order::VersionOrder;
use super::{list, plural, Anomaly, LISTED};
use crate::history::{Event, History, Op, Outcome};

pub const GROUP_DOUBLE_ASSIGNMENT: &str = "group-double-assignment";
pub const COMMITTED_OFFSET_REGRESSION: &str = "committed-offset-regression";
pub const GROUP_SKIP: &str = "group-skip";
pub const FENCED_COMMIT_ACCEPTED: &str = "fenced-commit-accepted";
pub const GROUP_UNSTABLE: &str = "group-unstable";
pub const GROUP_UNCONSUMED: &str = "group-unconsumed";

/// Every group the history names, with its member processes.
pub fn groups(history: &History) -> BTreeMap<&str, BTreeSet<u32>> {
    let mut out: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for e in &history.events {
        match &e.op {
            Op::Assignment { group, .. } | Op::Commit { group, .. } => {
                out.entry(group.as_str()).or_default().insert(e.process);
            }
            _ => {}
        }
    }
    out
}

/// The safety checkers.
pub fn check(history: &History, order: &VersionOrder) -> Vec<Anomaly> {
    let mut out = Vec::new();
    if !history.events.iter().any(|e| e.op.is_group()) {
        return out;
    }
    double_assignment(history, &mut out);
    regression(history, &mut out);
    fenced_commits(history, &mut out);
    for (group, members) in groups(history) {
        skip(history, order, group, &members, &mut out);
    }
    out
}

fn group_anomaly(
    kind: &str,
    partition: Option<i32>,
    offsets: Vec<i64>,
    values: Vec<String>,
    explanation: String,
) -> Anomaly {
    Anomaly {
        kind: kind.to_string(),
        explanation,
        partition,
        offsets,
        values,
    }
}

/// owner -> (process, member id), of one partition in one generation.
type Owners<'h> = BTreeMap<&'h str, (u32, &'h str)>;

fn double_assignment(history: &History, out: &mut Vec<Anomaly>) {
    // (group, generation, partition) -> its owners
    let mut owners: BTreeMap<(&str, i32, i32), Owners> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        if let Op::Assignment {
            group,
            generation,
            member,
            instance,
            partitions,
        } = &e.op
        {
            let owner = instance.as_deref().unwrap_or(member);
            for p in partitions {
                owners
                    .entry((group, *generation, *p))
                    .or_default()
                    .insert(owner, (e.process, member));
            }
        }
    }
    for ((group, generation, partition), who) in owners {
        if who.len() < 2 {
            continue;
        }
        let named: Vec<String> = who
            .iter()
            .map(|(owner, (process, member))| {
                if owner == member {
                    format!("member {member} (process {process})")
                } else {
                    format!("static member {owner} as {member} (process {process})")
                }
            })
            .collect();
        out.push(group_anomaly(
            GROUP_DOUBLE_ASSIGNMENT,
            Some(partition),
            vec![],
            who.keys().map(|o| o.to_string()).collect(),
            format!(
                "group {group} generation {generation}: partition {partition} was assigned to {}",
                named.join(" and ")
            ),
        ));
    }
}

/// A commit of one partition: (event, offset).
fn commits_of(
    history: &History,
    pred: impl Fn(&Event) -> bool,
) -> BTreeMap<(&str, i32), Vec<(&Event, i64)>> {
    let mut out: BTreeMap<(&str, i32), Vec<(&Event, i64)>> = BTreeMap::new();
    for e in history.events.iter().filter(|e| pred(e)) {
        if let Op::Commit { group, offsets, .. } = &e.op {
            for (p, o) in offsets {
                out.entry((group.as_str(), *p)).or_default().push((e, *o));
            }
        }
    }
    out
}

/// (group, partition) -> resets as (time, offset), by time.
fn resets_of(history: &History) -> BTreeMap<(&str, i32), Vec<(u64, i64)>> {
    let mut out: BTreeMap<(&str, i32), Vec<(u64, i64)>> = BTreeMap::new();
    for e in &history.events {
        if let (Op::OffsetReset { group, offsets }, false) =
            (&e.op, matches!(e.outcome, Some(Outcome::Fail { .. })))
        {
            for (p, o) in offsets {
                out.entry((group.as_str(), *p))
                    .or_default()
                    .push((e.invoke_nanos, *o));
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

fn regression(history: &History, out: &mut Vec<Anomaly>) {
    let resets = resets_of(history);
    for ((group, partition), commits) in commits_of(history, Event::is_ok) {
        // At one time: invocations see only acknowledgements strictly before.
        // Kinds: 0 reset, 1 invocation, 2 acknowledgement.
        let mut timeline: Vec<(u64, u8, i64, usize)> = Vec::new();
        for (i, (e, o)) in commits.iter().enumerate() {
            timeline.push((e.invoke_nanos, 1, *o, i));
            timeline.push((e.complete_nanos.unwrap_or(u64::MAX), 2, *o, i));
        }
        for (t, o) in resets.get(&(group, partition)).into_iter().flatten() {
            timeline.push((*t, 0, *o, usize::MAX));
        }
        timeline.sort_unstable();
        // The highest acknowledged offset so far, and which commit it was.
        let mut high: Option<(i64, usize)> = None;
        for (_, kind, offset, i) in timeline {
            match kind {
                0 => high = None,
                1 => {
                    let Some((h, by)) = high else { continue };
                    if offset >= h {
                        continue;
                    }
                    let (before, _) = commits[by];
                    let (this, _) = commits[i];
                    out.push(group_anomaly(
                        COMMITTED_OFFSET_REGRESSION,
                        Some(partition),
                        vec![h, offset],
                        vec![],
                        format!(
                            "group {group} partition {partition}: offset {h} was committed (process {}, acknowledged at {} ns), then process {} committed {offset} (invoked at {} ns) and it was acknowledged",
                            before.process,
                            before.complete_nanos.unwrap_or(0),
                            this.process,
                            this.invoke_nanos
                        ),
                    ));
                }
                _ => {
                    if high.is_none_or(|(h, _)| offset > h) {
                        high = Some((offset, i));
                    }
                }
            }
        }
    }
}

fn fenced_commits(history: &History, out: &mut Vec<Anomaly>) {
    // group -> assignments as (completed, generation), by time.
    let mut given: BTreeMap<&str, Vec<(u64, i32, u32)>> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        if let Op::Assignment {
            group, generation, ..
        } = &e.op
        {
            given.entry(group.as_str()).or_default().push((
                e.complete_nanos.unwrap_or(e.invoke_nanos),
                *generation,
                e.process,
            ));
        }
    }
    for v in given.values_mut() {
        v.sort_unstable();
    }
    for e in history.events.iter().filter(|e| e.is_ok()) {
        let Op::Commit {
            group,
            generation,
            member,
            offsets,
        } = &e.op
        else {
            continue;
        };
        let Some(assignments) = given.get(group.as_str()) else {
            continue;
        };
        // The newest generation given out strictly before the commit.
        let newer = assignments
            .iter()
            .take_while(|(t, _, _)| *t < e.invoke_nanos)
            .filter(|(_, g, _)| *g > *generation)
            .max_by_key(|(t, g, _)| (*g, std::cmp::Reverse(*t)));
        if let Some((t, g, process)) = newer {
            out.push(group_anomaly(
                FENCED_COMMIT_ACCEPTED,
                offsets.keys().next().copied(),
                offsets.values().copied().collect(),
                vec![member.clone()],
                format!(
                    "group {group}: process {} (member {member}) committed {} in generation {generation} at {} ns and it was acknowledged, though process {process} had been given generation {g} at {t} ns",
                    e.process,
                    list(offsets.iter().map(|(p, o)| format!("{p}:{o}")), LISTED),
                    e.invoke_nanos
                ),
            ));
        }
    }
}

fn skip(
    history: &History,
    order: &VersionOrder,
    group: &str,
    members: &BTreeSet<u32>,
    out: &mut Vec<Anomaly>,
) {
    // partition -> offset -> first time a member processed it.
    let mut first_read: BTreeMap<i32, BTreeMap<i64, u64>> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        let Op::Poll { reads } = &e.op else { continue };
        if !members.contains(&e.process) {
            continue;
        }
        let done = e.complete_nanos.unwrap_or(e.invoke_nanos);
        for (p, records) in reads {
            let at = first_read.entry(*p).or_default();
            for r in records {
                let t = at.entry(r.offset).or_insert(done);
                *t = (*t).min(done);
            }
        }
    }
    let resets = resets_of(history);
    // A commit still in flight when the run ended (or its member died) may
    // have taken effect too.
    let claims = commits_of(history, |e| {
        matches!(
            e.outcome,
            Some(Outcome::Ok) | Some(Outcome::Unknown { .. }) | None
        )
    });
    for ((g, partition), commits) in claims {
        if g != group {
            continue;
        }
        let po = order.partition(partition);
        // Known offsets in order, with when the group first processed each
        // (u64::MAX: never), and the running maximum of those times.
        let known: Vec<i64> = po.by_offset().map(|(o, _)| o).collect();
        let reads = first_read.get(&partition);
        let mut prefix_max: Vec<u64> = Vec::with_capacity(known.len());
        let mut running = 0u64;
        for o in &known {
            let t = reads.and_then(|r| r.get(o)).copied().unwrap_or(u64::MAX);
            running = running.max(t);
            prefix_max.push(running);
        }
        let resets = resets.get(&(group, partition));
        // Report each skipped offset once, at the first commit that skips it.
        let mut reported: BTreeSet<i64> = BTreeSet::new();
        let mut commits = commits.clone();
        commits.sort_by_key(|(e, o)| (e.invoke_nanos, *o, e.process));
        for (e, offset) in commits {
            let t = e.invoke_nanos;
            let floor = resets
                .and_then(|r| r.iter().rev().find(|(at, _)| *at < t))
                .map_or(i64::MIN, |(_, o)| *o);
            let below = known.partition_point(|o| *o < offset);
            if below == 0 || prefix_max[below - 1] <= t {
                continue;
            }
            let skipped: Vec<i64> = known[..below]
                .iter()
                .copied()
                .filter(|o| *o >= floor && !reported.contains(o))
                .filter(|o| reads.and_then(|r| r.get(o)).is_none_or(|at| *at > t))
                .collect();
            if skipped.is_empty() {
                continue;
            }
            reported.extend(skipped.iter().copied());
            let never: Vec<i64> = skipped
                .iter()
                .copied()
                .filter(|o| reads.and_then(|r| r.get(o)).is_none())
                .collect();
            let outcome = match e.outcome {
                Some(Outcome::Ok) => "ok",
                Some(_) => "unknown",
                None => "never answered",
            };
            out.push(group_anomaly(
                GROUP_SKIP,
                Some(partition),
                skipped.clone(),
                skipped.iter().map(|o| po.value_at(*o).to_string()).collect(),
                format!(
                    "group {group} partition {partition}: process {} committed offset {offset} at {t} ns ({outcome}) before any member processed {} at offset(s) {}{}",
                    e.process,
                    plural(skipped.len(), "record"),
                    list(&skipped, LISTED),
                    if never.is_empty() {
                        String::new()
                    } else {
                        format!("; never processed by the group: {}", list(&never, LISTED))
                    }
                ),
            ));
        }
    }
}

/// What the run knows for the liveness judgement of one group.
#[derive(Debug, Clone)]
pub struct GroupLiveness<'a> {
    pub group: &'a str,
    /// Processes of the members alive (and in the group) at the end.
    pub live: Vec<u32>,
    /// The topic's partitions.
    pub partitions: i32,
    /// From when the group had to settle: the heal, or the last membership
    /// change after it.
    pub since_nanos: u64,
    /// How long settling and consuming may take.
    pub bound_nanos: u64,
}

/// The liveness checkers (see the module documentation).
pub fn liveness(history: &History, spec: &GroupLiveness) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let group = spec.group;
    // Each live member's last assignment.
    let mut last: BTreeMap<u32, (u64, i32, &[i32])> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        if let Op::Assignment {
            group: g,
            generation,
            partitions,
            ..
        } = &e.op
        {
            if g == group && spec.live.contains(&e.process) {
                let at = e.complete_nanos.unwrap_or(e.invoke_nanos);
                last.insert(e.process, (at, *generation, partitions));
            }
        }
    }
    let deadline = spec.since_nanos.saturating_add(spec.bound_nanos);
    let missing: Vec<u32> = spec
        .live
        .iter()
        .copied()
        .filter(|p| !last.contains_key(p))
        .collect();
    let generations: BTreeSet<i32> = last.values().map(|(_, g, _)| *g).collect();
    let mut owned: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, _, parts) in last.values() {
        for p in parts.iter() {
            *owned.entry(*p).or_default() += 1;
        }
    }
    let unowned: Vec<i32> = (0..spec.partitions)
        .filter(|p| !owned.contains_key(p))
        .collect();
    let doubled: Vec<i32> = owned
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| *p)
        .collect();
    let settled_at = last.values().map(|(t, _, _)| *t).max().unwrap_or(0);
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "members {} never got an assignment",
            list(&missing, LISTED)
        ));
    }
    if generations.len() > 1 {
        problems.push(format!(
            "the members ended in generations {}",
            list(&generations, LISTED)
        ));
    }
    if !unowned.is_empty() {
        problems.push(format!(
            "partitions {} are owned by nobody",
            list(&unowned, LISTED)
        ));
    }
    if !doubled.is_empty() {
        problems.push(format!(
            "partitions {} are owned twice",
            list(&doubled, LISTED)
        ));
    }
    if problems.is_empty() && settled_at > deadline {
        problems.push(format!(
            "it settled at {} ms, past {} ms (bound {} ms after {} ms)",
            settled_at / 1_000_000,
            deadline / 1_000_000,
            spec.bound_nanos / 1_000_000,
            spec.since_nanos / 1_000_000
        ));
    }
    if !problems.is_empty() {
        out.push(group_anomaly(
            GROUP_UNSTABLE,
            None,
            vec![],
            vec![],
            format!(
                "group {group} did not stabilise after the heal: {}",
                problems.join("; ")
            ),
        ));
    }
    // Every acknowledged record processed by the group within the bound.
    let members = groups(history).remove(group).unwrap_or_default();
    let mut read_at: BTreeMap<(i32, &str), u64> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        let Op::Poll { reads } = &e.op else { continue };
        if !members.contains(&e.process) {
            continue;
        }
        let done = e.complete_nanos.unwrap_or(e.invoke_nanos);
        for (p, records) in reads {
            for r in records {
                let t = read_at.entry((*p, r.value.as_str())).or_insert(done);
                *t = (*t).min(done);
            }
        }
    }
    let mut late: BTreeMap<i32, Vec<(i64, &str, bool)>> = BTreeMap::new();
    for e in history.events.iter().filter(|e| e.is_ok()) {
        let Op::Send { writes } = &e.op else { continue };
        let acked = e.complete_nanos.unwrap_or(e.invoke_nanos);
        let due = acked.max(spec.since_nanos).saturating_add(spec.bound_nanos);
        for w in writes {
            let Some(offset) = w.offset else { continue };
            match read_at.get(&(w.partition, w.value.as_str())) {
                Some(t) if *t <= due => {}
                seen => {
                    late.entry(w.partition)
                        .or_default()
                        .push((offset, &w.value, seen.is_some()))
                }
            }
        }
    }
    for (partition, mut records) in late {
        records.sort_unstable();
        let never = records.iter().filter(|r| !r.2).count();
        out.push(group_anomaly(
            GROUP_UNCONSUMED,
            Some(partition),
            records.iter().map(|r| r.0).collect(),
            records.iter().map(|r| r.1.to_string()).collect(),
            format!(
                "group {group} partition {partition}: {} acknowledged but not processed by the group within {} ms ({} never): offsets {}",
                plural(records.len(), "record"),
                spec.bound_nanos / 1_000_000,
                never,
                list(records.iter().map(|r| r.0), LISTED)
            ),
        ));
    }
    super::sort(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{check, GROUP_SKIP};
    use super::*;
    use crate::history::{Event, Op, Outcome};

    fn assignment(process: u32, at: u64, generation: i32, member: &str, parts: &[i32]) -> Event {
        Event {
            process,
            invoke_nanos: at,
            complete_nanos: Some(at),
            outcome: Some(Outcome::Ok),
            op: Op::Assignment {
                group: "g".into(),
                generation,
                member: member.into(),
                instance: None,
                partitions: parts.to_vec(),
            },
        }
    }

    fn static_assignment(
        process: u32,
        at: u64,
        generation: i32,
        member: &str,
        instance: &str,
        parts: &[i32],
    ) -> Event {
        let mut e = assignment(process, at, generation, member, parts);
        if let Op::Assignment { instance: i, .. } = &mut e.op {
            *i = Some(instance.into());
        }
        e
    }

    fn commit_with(
        process: u32,
        invoke: u64,
        complete: u64,
        generation: i32,
        offsets: &[(i32, i64)],
        outcome: Outcome,
    ) -> Event {
        Event {
            process,
            invoke_nanos: invoke,
            complete_nanos: Some(complete),
            outcome: Some(outcome),
            op: Op::Commit {
                group: "g".into(),
                generation,
                member: format!("m-{process}"),
                offsets: offsets.iter().copied().collect(),
            },
        }
    }

    fn commit(
        process: u32,
        invoke: u64,
        complete: u64,
        generation: i32,
        offsets: &[(i32, i64)],
    ) -> Event {
        commit_with(process, invoke, complete, generation, offsets, Outcome::Ok)
    }

    fn reset(at: u64, offsets: &[(i32, i64)]) -> Event {
        Event {
            process: 99,
            invoke_nanos: at,
            complete_nanos: Some(at),
            outcome: Some(Outcome::Ok),
            op: Op::OffsetReset {
                group: "g".into(),
                offsets: offsets.iter().copied().collect(),
            },
        }
    }

    /// Two members, a rebalance moving partition 1 from member 10 to 11;
    /// everything is processed before it is committed, and 11 resumes at
    /// 10's commit. One record (offset 2 of partition 1) is read by both.
    fn clean() -> Vec<Event> {
        vec![
            send(1, 0, 1, 0, &[("a0", 0), ("a1", 1)]),
            send(1, 2, 3, 1, &[("b0", 0), ("b1", 1), ("b2", 2), ("b3", 3)]),
            assignment(10, 10, 1, "m-10", &[0, 1]),
            seek(10, 11, &[(0, 0), (1, 0)]),
            poll(
                10,
                12,
                13,
                &[
                    (0, &[(0, "a0"), (1, "a1")]),
                    (1, &[(0, "b0"), (1, "b1"), (2, "b2")]),
                ],
            ),
            commit(10, 14, 15, 1, &[(0, 2), (1, 2)]),
            assignment(10, 20, 2, "m-10", &[0]),
            assignment(11, 21, 2, "m-11", &[1]),
            seek(11, 22, &[(1, 2)]),
            poll(11, 23, 24, &[(1, &[(2, "b2"), (3, "b3")])]),
            commit(11, 25, 26, 2, &[(1, 4)]),
            commit(10, 27, 28, 2, &[(0, 2)]),
        ]
    }

    #[test]
    fn a_clean_group_history_passes_every_checker() {
        assert_eq!(check(&history(clean())), vec![]);
        let spec = GroupLiveness {
            group: "g",
            live: vec![10, 11],
            partitions: 2,
            since_nanos: 0,
            bound_nanos: 100,
        };
        assert_eq!(liveness(&history(clean()), &spec), vec![]);
    }

    #[test]
    fn two_owners_in_one_generation_are_caught_and_a_static_member_is_one_owner() {
        let mut h = clean();
        h.push(assignment(12, 21, 2, "m-12", &[1]));
        only(
            &check(&history(h)),
            GROUP_DOUBLE_ASSIGNMENT,
            &["generation 2", "partition 1", "m-11", "m-12"],
        );
        // A static member restarted under a new member id, same generation.
        let mut h = clean();
        h.push(static_assignment(12, 30, 3, "m-12", "i-1", &[0]));
        h.push(static_assignment(13, 40, 3, "m-13", "i-1", &[0]));
        assert_eq!(check(&history(h)), vec![]);
    }

    #[test]
    fn a_committed_offset_going_back_is_caught_unless_reset() {
        let mut h = clean();
        h.push(commit(11, 30, 31, 2, &[(1, 3)]));
        only(
            &check(&history(h)),
            COMMITTED_OFFSET_REGRESSION,
            &["offset 4 was committed", "committed 3"],
        );
        // Concurrent commits may land in either order.
        let mut h = clean();
        h.push(commit(11, 24, 32, 2, &[(1, 3)]));
        assert_eq!(kinds(&check(&history(h))), Vec::<&str>::new());
        // An explicit reset in between allows it.
        let mut h = clean();
        h.push(reset(29, &[(1, 0)]));
        h.push(commit(11, 30, 31, 2, &[(1, 3)]));
        assert_eq!(check(&history(h)), vec![]);
    }

    #[test]
    fn a_commit_past_unprocessed_records_is_a_group_skip() {
        // Member 11 commits 4 before processing 3 (it processes it later).
        let mut h = clean();
        h[9] = poll(11, 23, 24, &[(1, &[(2, "b2")])]);
        h[10] = commit(11, 25, 26, 2, &[(1, 4)]);
        h.push(poll(11, 23, 40, &[(1, &[(3, "b3")])]));
        let found = check(&history(h));
        let a = only(&found, GROUP_SKIP, &["committed offset 4", "offset(s) 3"]);
        assert_eq!(a.partition, Some(1));
        assert_eq!(a.values, vec!["b3"]);
        // Never processed at all, and the commit's outcome unknown: still a skip.
        let mut h = clean();
        h[9] = poll(11, 23, 24, &[(1, &[(2, "b2")])]);
        h[10] = commit_with(
            11,
            25,
            26,
            2,
            &[(1, 4)],
            Outcome::Unknown {
                reason: "lost".into(),
            },
        );
        let found = check(&history(h));
        let skips: Vec<&Anomaly> = found.iter().filter(|a| a.kind == GROUP_SKIP).collect();
        assert_eq!(skips.len(), 1, "{found:#?}");
        assert!(skips[0]
            .explanation
            .contains("never processed by the group: 3"));
        // A failed commit claims nothing.
        let mut h = clean();
        h[9] = poll(11, 23, 24, &[(1, &[(2, "b2")])]);
        h[10] = commit_with(
            11,
            25,
            26,
            2,
            &[(1, 4)],
            Outcome::Fail {
                error: "IllegalGeneration".into(),
            },
        );
        assert!(!kinds(&check(&history(h))).contains(&GROUP_SKIP));
        // Records read only by a consumer outside the group do not count.
        let mut h = clean();
        h[9] = poll(50, 23, 24, &[(1, &[(2, "b2"), (3, "b3")])]);
        assert!(kinds(&check(&history(h))).contains(&GROUP_SKIP));
    }

    #[test]
    fn a_zombies_accepted_commit_is_caught() {
        let mut h = clean();
        // Member 10 was still in generation 1 after generation 2 was given out.
        h.push(commit(10, 30, 31, 1, &[(0, 2)]));
        only(
            &check(&history(h.clone())),
            FENCED_COMMIT_ACCEPTED,
            &["generation 1", "generation 2"],
        );
        // Refused, it is fine.
        h.pop();
        h.push(commit_with(
            10,
            30,
            31,
            1,
            &[(0, 2)],
            Outcome::Fail {
                error: "IllegalGeneration".into(),
            },
        ));
        assert_eq!(check(&history(h)), vec![]);
    }

    #[test]
    fn liveness_wants_one_generation_a_full_assignment_and_everything_consumed() {
        let spec = GroupLiveness {
            group: "g",
            live: vec![10, 11],
            partitions: 2,
            since_nanos: 0,
            bound_nanos: 100,
        };
        // Member 11 never got generation 3; partition 1 unowned in it.
        let mut h = clean();
        h.push(assignment(10, 50, 3, "m-10", &[0]));
        let found = liveness(&history(h), &spec);
        only(&found, GROUP_UNSTABLE, &["generations 2, 3"]);
        // A record nobody in the group processed.
        let mut h = clean();
        h.push(send(1, 30, 31, 1, &[("b4", 4)]));
        let found = liveness(&history(h), &spec);
        only(&found, GROUP_UNCONSUMED, &["partition 1", "offsets 4"]);
        // Settling too late.
        let late = GroupLiveness {
            bound_nanos: 5,
            ..spec.clone()
        };
        let found = liveness(&history(clean()), &late);
        assert!(kinds(&found).contains(&GROUP_UNSTABLE), "{found:#?}");
    }
}
