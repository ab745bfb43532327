//! Join, sync, heartbeat and leave: Kafka's classic rebalance protocol.

use bytes::Bytes;

use super::harness::*;
use crate::group::records::{decode_group_value, decode_key, RecordKey};
use crate::group::*;

/// `n` dynamic members joined and synced: their ids (the leader first).
pub fn stable_group(h: &mut H, n: usize) -> Vec<String> {
    let joins: Vec<ReqId> = (0..n).map(|_| h.join("", None)).collect();
    h.advance(h.c.config().initial_rebalance_delay_ms as i64 * 2 + 1);
    let resps: Vec<JoinResponse> = joins.iter().map(|r| h.take_join(*r)).collect();
    let ids: Vec<String> = resps.iter().map(|r| r.member_id.clone()).collect();
    let generation = resps[0].generation_id;
    let assignments: Vec<(String, Vec<u8>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), vec![i as u8]))
        .collect();
    let refs: Vec<(&str, &[u8])> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_slice()))
        .collect();
    let syncs: Vec<ReqId> = ids.iter().map(|id| h.sync(id, generation, &refs)).collect();
    h.complete_all();
    for s in syncs {
        assert_eq!(h.take_sync(s).error, 0);
    }
    assert_eq!(h.state(), "Stable");
    ids
}

#[test]
fn three_members_join_sync_and_heartbeat() {
    let mut h = H::new(config());
    let reqs: Vec<ReqId> = (0..3).map(|_| h.join("", None)).collect();
    assert!(h.replies.is_empty(), "the initial delay holds every join");
    assert_eq!(h.state(), "PreparingRebalance");
    // Each newcomer extends the initial delay once more (3s + 3s).
    h.advance(3_000);
    assert!(h.replies.is_empty());
    h.advance(3_000);
    let resps: Vec<JoinResponse> = reqs.iter().map(|r| h.take_join(*r)).collect();
    let leader = resps[0].member_id.clone();
    for r in &resps {
        assert_eq!(r.error, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, leader);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert!(!r.skip_assignment);
        assert!(r.member_id.starts_with("client-"));
    }
    assert_eq!(resps[0].members.len(), 3, "the leader gets the members");
    assert!(resps[1].members.is_empty() && resps[2].members.is_empty());
    assert_eq!(h.state(), "CompletingRebalance");

    let ids: Vec<String> = resps.iter().map(|r| r.member_id.clone()).collect();
    let s1 = h.sync(&ids[1], 1, &[]);
    let s2 = h.sync(&ids[2], 1, &[]);
    assert!(h.replies.is_empty(), "followers wait for the leader");
    let plan = [(ids[0].as_str(), &b"a"[..]), (ids[1].as_str(), &b"b"[..])];
    let s0 = h.sync(&ids[0], 1, &plan);
    assert!(
        h.replies.is_empty(),
        "nobody is answered before the record is replicated"
    );
    assert_eq!(h.appends.len(), 1);
    // The record: generation 1, the leader's assignment, an empty one for the third.
    let (_, records) = h.appends.values().next().unwrap().clone();
    assert_eq!(
        decode_key(&records[0].0).unwrap(),
        RecordKey::Group { group: "g".into() }
    );
    let value = decode_group_value(records[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(value.generation, 1);
    assert_eq!(value.leader.as_deref(), Some(ids[0].as_str()));
    assert_eq!(value.members.len(), 3);
    assert_eq!(&value.members[1].assignment[..], b"b");
    assert!(value.members[2].assignment.is_empty());
    h.complete_all();
    assert_eq!(&h.take_sync(s0).assignment[..], b"a");
    assert_eq!(&h.take_sync(s1).assignment[..], b"b");
    assert!(h.take_sync(s2).assignment.is_empty());
    assert_eq!(h.state(), "Stable");
    for id in &ids {
        assert_eq!(h.heartbeat(id, None, 1), 0);
    }
    // A follower syncing again in Stable gets its assignment at once.
    let again = h.sync(&ids[1], 1, &[]);
    assert_eq!(&h.take_sync(again).assignment[..], b"b");
}

#[test]
fn new_member_gets_an_id_with_member_id_required() {
    let mut h = H::new(config());
    let mut r = join_request("g", "", None, range(&["t"]));
    r.require_known_member_id = true;
    let req = h.join_req(r.clone());
    let resp = h.take_join(req);
    assert_eq!(resp.error, code::MEMBER_ID_REQUIRED);
    assert!(resp.member_id.starts_with("client-"));
    assert_eq!(h.state(), "Empty");
    r.member_id = resp.member_id.clone();
    let req = h.join_req(r.clone());
    h.advance(3_000);
    let joined = h.take_join(req);
    assert_eq!(joined.error, 0);
    assert_eq!(joined.member_id, resp.member_id);

    // A pending id that is not used within the session timeout is forgotten.
    let mut late = join_request("g", "", None, range(&["t"]));
    late.require_known_member_id = true;
    let req = h.join_req(late.clone());
    let id = h.take_join(req).member_id;
    h.heartbeat(&joined.member_id, None, 1);
    h.advance(SESSION as i64 + 1);
    late.member_id = id;
    let req = h.join_req(late);
    assert_eq!(h.take_join(req).error, code::UNKNOWN_MEMBER_ID);
}

#[test]
fn member_ids_come_from_the_seed() {
    let ids = |seed| {
        let mut c = Coordinator::new(config(), seed);
        let mut out = Vec::new();
        c.begin_load(0, &mut out);
        c.finish_load(0, 0, &mut out);
        let mut r = join_request("g", "", None, range(&["t"]));
        r.require_known_member_id = true;
        c.join(0, 1, r, &mut out);
        out
    };
    assert_eq!(ids(1), ids(1));
    assert_ne!(ids(1), ids(2));
}

#[test]
fn failed_group_metadata_append_answers_the_mapped_error_and_rebalances() {
    let mut h = H::new(config());
    let a = h.join("", None);
    h.advance(3_000);
    let id = h.take_join(a).member_id;
    let s = h.sync(&id, 1, &[(&id, b"x")]);
    h.complete_next(Err(code::NOT_LEADER_OR_FOLLOWER));
    assert_eq!(h.take_sync(s).error, code::NOT_COORDINATOR);
    // Kafka's storeGroup: a timeout tells the members to rejoin.
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(h.heartbeat(&id, None, 1), code::REBALANCE_IN_PROGRESS);
    let rejoin = h.join(&id, None);
    let resp = h.take_join(rejoin);
    assert_eq!(resp.generation_id, 2);
    let s = h.sync(&id, 2, &[(&id, b"y")]);
    h.complete_next(Err(code::REQUEST_TIMED_OUT));
    assert_eq!(h.take_sync(s).error, code::REBALANCE_IN_PROGRESS);
}

#[test]
fn session_timeout_removes_the_member_and_rebalances() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 2);
    h.advance(SESSION as i64 / 2);
    assert_eq!(h.heartbeat(&ids[0], None, 1), 0);
    assert_eq!(h.state(), "Stable");
    h.advance(SESSION as i64 / 2);
    assert_eq!(h.state(), "PreparingRebalance", "the silent member expired");
    assert_eq!(h.view().assignments.len(), 1);
    assert_eq!(h.heartbeat(&ids[0], None, 1), code::REBALANCE_IN_PROGRESS);
    let j = h.join(&ids[0], None);
    let resp = h.take_join(j);
    assert_eq!((resp.generation_id, resp.members.len()), (2, 1));
    assert_eq!(h.heartbeat(&ids[1], None, 2), code::UNKNOWN_MEMBER_ID);
}

#[test]
fn rebalance_timeout_removes_members_that_do_not_rejoin() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 2);
    // The leader rejoining starts a rebalance.
    let j = h.join(&ids[0], None);
    assert_eq!(h.state(), "PreparingRebalance");
    let mut waited = 0;
    while waited <= REBALANCE as i64 {
        h.advance(5_000);
        waited += 5_000;
        if h.answered(j) {
            break;
        }
        // Alive but never rejoining.
        assert_eq!(h.heartbeat(&ids[1], None, 1), code::REBALANCE_IN_PROGRESS);
    }
    let resp = h.take_join(j);
    assert_eq!(resp.generation_id, 2);
    assert_eq!(resp.members.len(), 1);
    assert_eq!(h.heartbeat(&ids[1], None, 2), code::UNKNOWN_MEMBER_ID);
}

#[test]
fn member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = H::new(config());
    let a = h.join("", None);
    let b = h.join("", None);
    h.advance(6_000);
    let (a, b) = (h.take_join(a).member_id, h.take_join(b).member_id);
    let s = h.sync(&a, 1, &[(&a, b"x"), (&b, b"y")]);
    h.complete_all();
    assert_eq!(h.take_sync(s).error, 0);
    for _ in 0..7 {
        h.advance(5_000);
        h.heartbeat(&a, None, 1);
    }
    assert_eq!(h.state(), "PreparingRebalance");
    assert!(h.view().assignments.iter().all(|(m, _)| *m == a));
}

fn static_join(h: &mut H, instance: &str) -> ReqId {
    h.join("", Some(instance))
}

#[test]
fn static_member_rejoining_replaces_itself_without_rebalance() {
    let mut h = H::new(config());
    let ja = static_join(&mut h, "a");
    let jb = static_join(&mut h, "b");
    h.advance(6_000);
    let a = h.take_join(ja).member_id;
    let b = h.take_join(jb).member_id;
    assert!(
        a.starts_with("a-") && b.starts_with("b-"),
        "static ids start with the instance id"
    );
    let s = h.sync(&a, 1, &[(&a, b"1"), (&b, b"2")]);
    h.complete_all();
    h.take_sync(s);

    // "b" restarts: same instance, no member id.
    let j = static_join(&mut h, "b");
    assert_eq!(h.state(), "Stable", "no rebalance");
    assert!(!h.answered(j), "answered once the new id is persisted");
    h.complete_all();
    let resp = h.take_join(j);
    assert_eq!(resp.error, 0);
    assert_eq!(resp.generation_id, 1);
    assert_eq!(resp.leader, a);
    assert_ne!(resp.member_id, b);
    let new_b = resp.member_id;
    // The old id is fenced; the new one gets b's assignment.
    assert_eq!(h.heartbeat(&b, Some("b"), 1), code::FENCED_INSTANCE_ID);
    assert_eq!(h.heartbeat(&new_b, Some("b"), 1), 0);
    let s = h.sync(&new_b, 1, &[]);
    assert_eq!(&h.take_sync(s).assignment[..], b"2");
    assert_eq!(h.view().generation_id, 1);

    // The same with a failed append: the old id is restored.
    let j = static_join(&mut h, "b");
    h.complete_next(Err(code::NOT_LEADER_OR_FOLLOWER));
    let resp = h.take_join(j);
    assert_eq!(resp.error, code::NOT_COORDINATOR);
    assert_eq!(h.heartbeat(&new_b, Some("b"), 1), 0);

    // A static member does not leave when the group rebalances without it.
    let j = h.join(&a, Some("a"));
    while !h.answered(j) {
        h.advance(5_000);
        h.heartbeat(&new_b, Some("b"), 1);
    }
    let resp = h.take_join(j);
    assert_eq!(resp.members.len(), 2, "b is still a member");
}

#[test]
fn static_replacement_overtaken_by_a_rebalance_is_answered_by_it() {
    let mut h = H::new(config());
    let ja = static_join(&mut h, "a");
    h.advance(3_000);
    let a = h.take_join(ja).member_id;
    let s = h.sync(&a, 1, &[(&a, b"1")]);
    h.complete_all();
    h.take_sync(s);
    let j = static_join(&mut h, "a");
    // Everyone (the replaced member and the newcomer) is waiting: the
    // rebalance completes at once and answers both.
    let other = h.join("", None);
    assert_eq!(h.state(), "CompletingRebalance");
    let resp = h.take_join(j);
    assert_eq!((resp.error, resp.generation_id), (0, 2));
    assert_eq!(h.take_join(other).generation_id, 2);
    // The replacement's record lands later: nobody is answered twice.
    h.complete_all();
    assert!(h.replies.is_empty());
}

#[test]
fn static_member_with_new_protocol_triggers_a_rebalance() {
    let mut h = H::new(config());
    let ja = static_join(&mut h, "a");
    h.advance(3_000);
    let a = h.take_join(ja).member_id;
    let s = h.sync(&a, 1, &[(&a, b"1")]);
    h.complete_all();
    h.take_sync(s);
    let mut r = join_request("g", "", Some("a"), vec![("other".into(), Bytes::new())]);
    r.protocols.push(("range".into(), Bytes::new()));
    let _ = h.join_req(r);
    assert_eq!(
        h.state(),
        "CompletingRebalance",
        "the sole member rejoined: next generation"
    );
    assert_eq!(h.view().protocol.as_deref(), Some("other"));
}

#[test]
fn leave_group_batch_with_per_member_errors() {
    let mut h = H::new(config());
    let j1 = h.join("", None);
    let j2 = h.join("", None);
    let js = h.join("", Some("s"));
    h.advance(9_000);
    let (m1, m2, s) = (h.take_join(j1), h.take_join(j2), h.take_join(js));
    let (m1, m2, s) = (m1.member_id, m2.member_id, s.member_id);
    let sync = h.sync(&m1, 1, &[]);
    h.complete_all();
    h.take_sync(sync);
    let resp = h.leave(&[
        ("wrong-id", Some("s")),
        (&m2, None),
        ("", Some("s")),
        ("nobody", None),
        ("", Some("nope")),
    ]);
    assert_eq!(resp.error, 0);
    let errors: Vec<i16> = resp.members.iter().map(|m| m.2).collect();
    assert_eq!(
        errors,
        vec![
            code::FENCED_INSTANCE_ID,
            0,
            0,
            code::UNKNOWN_MEMBER_ID,
            code::UNKNOWN_MEMBER_ID
        ]
    );
    // Only m1 is left; it was not waiting, so the group waits for it.
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(h.heartbeat(&s, Some("s"), 1), code::UNKNOWN_MEMBER_ID);
    let j = h.join(&m1, None);
    assert_eq!(h.take_join(j).generation_id, 2);
    // The last member leaving empties the group (a record of the empty generation).
    let before = h.appends.len();
    let sync = h.sync(&m1, 2, &[]);
    h.complete_all();
    h.take_sync(sync);
    h.leave(&[(&m1, None)]);
    assert_eq!(h.state(), "Empty");
    assert_eq!(h.view().generation_id, 3);
    assert!(h.appends.len() > before);
}

#[test]
fn leaving_a_missing_group_reports_unknown_members() {
    let mut h = H::new(config());
    let resp = h.leave(&[("x", None)]);
    assert_eq!(resp.error, 0);
    assert_eq!(resp.members[0].2, code::UNKNOWN_MEMBER_ID);
}

#[test]
fn group_max_size_refuses_new_joiners() {
    let mut h = H::new(GroupConfig {
        max_size: 2,
        ..config()
    });
    let a = h.join("", None);
    let b = h.join("", None);
    let c = h.join("", None);
    assert_eq!(h.take_join(c).error, code::GROUP_MAX_SIZE_REACHED);
    h.advance(6_000);
    assert_eq!(h.take_join(a).error, 0);
    assert_eq!(h.take_join(b).error, 0);
    let d = h.join("", None);
    assert_eq!(h.take_join(d).error, code::GROUP_MAX_SIZE_REACHED);
}

#[test]
fn invalid_requests_are_refused() {
    let mut h = H::new(config());
    let mut r = join_request("g", "", None, range(&["t"]));
    r.session_timeout_ms = 1;
    let req = h.join_req(r);
    assert_eq!(h.take_join(req).error, code::INVALID_SESSION_TIMEOUT);
    let mut r = join_request("g", "", None, range(&["t"]));
    r.session_timeout_ms = 1_800_001;
    let req = h.join_req(r);
    assert_eq!(h.take_join(req).error, code::INVALID_SESSION_TIMEOUT);
    let req = h.join_req(join_request("", "", None, range(&["t"])));
    assert_eq!(h.take_join(req).error, code::INVALID_GROUP_ID);
    let req = h.join_req(join_request("g", "ghost", None, range(&["t"])));
    let resp = h.take_join(req);
    assert_eq!(
        (resp.error, resp.generation_id),
        (code::UNKNOWN_MEMBER_ID, -1)
    );
    let req = h.join_req(join_request("g", "", None, vec![]));
    assert_eq!(h.take_join(req).error, code::INCONSISTENT_GROUP_PROTOCOL);
    assert!(
        h.c.views().is_empty(),
        "refused joins leave no group behind"
    );
    assert_eq!(h.heartbeat("ghost", None, 0), code::UNKNOWN_MEMBER_ID);
    let s = h.sync("ghost", 0, &[]);
    assert_eq!(h.take_sync(s).error, code::UNKNOWN_MEMBER_ID);
}

#[test]
fn mismatched_protocols_and_generations_are_refused() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 1);
    let mut other = join_request("g", "", None, vec![("roundrobin".into(), Bytes::new())]);
    let req = h.join_req(other.clone());
    assert_eq!(h.take_join(req).error, code::INCONSISTENT_GROUP_PROTOCOL);
    other.protocol_type = "connect".into();
    other.protocols = range(&["t"]);
    let req = h.join_req(other);
    assert_eq!(h.take_join(req).error, code::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.heartbeat(&ids[0], None, 0), code::ILLEGAL_GENERATION);
    let s = h.sync(&ids[0], 7, &[]);
    assert_eq!(h.take_sync(s).error, code::ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat("stranger", None, 1), code::UNKNOWN_MEMBER_ID);
    let mut r = SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: ids[0].clone(),
        protocol_name: Some("roundrobin".into()),
        ..SyncRequest::default()
    };
    let mut out = Vec::new();
    h.c.sync(h.now, 999, r.clone(), &mut out);
    h.absorb(out);
    assert_eq!(h.take_sync(999).error, code::INCONSISTENT_GROUP_PROTOCOL);
    r.protocol_name = Some("range".into());
    let mut out = Vec::new();
    h.c.sync(h.now, 1000, r, &mut out);
    h.absorb(out);
    assert_eq!(h.take_sync(1000).error, 0);
}

#[test]
fn a_newcomer_during_completing_rebalance_restarts_it() {
    let mut h = H::new(config());
    let a = h.join("", None);
    h.advance(3_000);
    let a = h.take_join(a).member_id;
    let s = h.sync(&a, 1, &[]);
    h.complete_all();
    h.take_sync(s);
    // b joins (rebalance); a rejoins; the join completes: gen 2, CompletingRebalance.
    let b = h.join("", None);
    let ja = h.join(&a, None);
    let b_id = h.take_join(b).member_id;
    h.take_join(ja);
    let sb = h.sync(&b_id, 2, &[]);
    let c = h.join("", None);
    assert_eq!(h.take_sync(sb).error, code::REBALANCE_IN_PROGRESS);
    assert_eq!(h.state(), "PreparingRebalance");
    assert!(!h.answered(c));
}

#[test]
fn list_and_describe() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 2);
    let (err, groups) = h.c.list_groups(&[]);
    assert_eq!(err, 0);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].state, "Stable");
    assert_eq!(groups[0].protocol_type, "consumer");
    assert!(h.c.list_groups(&["stable".into()]).1.len() == 1);
    assert!(h.c.list_groups(&["Empty".into()]).1.is_empty());
    let d = h.c.describe("g");
    assert_eq!(
        (d.error, d.state.as_str(), d.protocol.as_str()),
        (0, "Stable", "range")
    );
    assert_eq!(d.members.len(), 2);
    assert_eq!(&d.members[1].assignment[..], &[1]);
    assert_eq!(d.members[0].member_id, ids[0]);
    let unknown = h.c.describe("nope");
    assert_eq!((unknown.error, unknown.state.as_str()), (0, "Dead"));
    // During a rebalance, no metadata or assignments are shown.
    h.join(&ids[0], None);
    let d = h.c.describe("g");
    assert_eq!(d.state, "PreparingRebalance");
    assert!(d.protocol.is_empty() && d.members[1].assignment.is_empty());
}
