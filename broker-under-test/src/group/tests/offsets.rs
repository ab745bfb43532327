//! Offsets, loading and unloading, group deletion and expiry.

use bytes::Bytes;

use super::harness::*;
use super::rebalance::stable_group;
use crate::group::*;

const NONE: i16 = 0;

#[test]
fn commit_is_visible_only_once_replicated() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 1);
    let c = h.commit(&ids[0], 1, &[("t", 0, 42)]);
    assert!(!h.answered(c));
    assert_eq!(h.fetch("t", 0), None, "pending commits are not visible");
    h.complete_all();
    assert_eq!(h.take_commit(c), vec![("t".to_string(), 0, NONE)]);
    assert_eq!(h.fetch("t", 0), Some(42));
    let all = h.c.fetch_offsets(&OffsetFetchRequest {
        group_id: "g".into(),
        partitions: None,
    });
    let committed = all.partitions[0].2.clone().unwrap();
    assert_eq!(
        (committed.leader_epoch, committed.metadata.as_str()),
        (3, "md")
    );
    assert_eq!(committed.commit_timestamp_ms, h.now);
    assert_eq!(h.view().offsets, vec![(("t".to_string(), 0), 42)]);
}

#[test]
fn failed_commit_leaves_offsets_untouched() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 1);
    let c = h.commit(&ids[0], 1, &[("t", 0, 1)]);
    h.complete_all();
    h.take_commit(c);
    let c = h.commit(&ids[0], 1, &[("t", 0, 2)]);
    h.complete_next(Err(code::NOT_LEADER_OR_FOLLOWER));
    assert_eq!(h.take_commit(c)[0].2, code::NOT_COORDINATOR);
    let c = h.commit(&ids[0], 1, &[("t", 0, 3)]);
    h.complete_next(Err(code::REQUEST_TIMED_OUT));
    assert_eq!(h.take_commit(c)[0].2, code::REQUEST_TIMED_OUT);
    let c = h.commit(&ids[0], 1, &[("t", 0, 4)]);
    h.complete_next(Err(code::NOT_ENOUGH_REPLICAS));
    assert_eq!(h.take_commit(c)[0].2, code::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(h.fetch("t", 0), Some(1));
}

#[test]
fn commit_errors_per_partition() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 1);
    let mut r = commit_request("g", &ids[0], 1, &[("t", 0, 1), ("t", 1, 1), ("gone", 0, 1)]);
    r.partitions[1].0.metadata = Some("x".repeat(4097));
    r.partitions[2].1 = code::UNKNOWN_TOPIC_OR_PARTITION;
    let c = h.commit_req(r);
    h.complete_all();
    let errors: Vec<i16> = h.take_commit(c).iter().map(|p| p.2).collect();
    assert_eq!(
        errors,
        vec![
            NONE,
            code::OFFSET_METADATA_TOO_LARGE,
            code::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    // Nothing valid to write: answered at once.
    let mut r = commit_request("g", &ids[0], 1, &[("gone", 0, 1)]);
    r.partitions[0].1 = code::UNKNOWN_TOPIC_OR_PARTITION;
    let c = h.commit_req(r);
    assert_eq!(h.take_commit(c)[0].2, code::UNKNOWN_TOPIC_OR_PARTITION);
    // A group-level refusal keeps the partitions' own errors.
    let mut r = commit_request("g", "stranger", 1, &[("t", 0, 1), ("gone", 0, 1)]);
    r.partitions[1].1 = code::UNKNOWN_TOPIC_OR_PARTITION;
    let c = h.commit_req(r);
    let errors: Vec<i16> = h.take_commit(c).iter().map(|p| p.2).collect();
    assert_eq!(
        errors,
        vec![code::UNKNOWN_MEMBER_ID, code::UNKNOWN_TOPIC_OR_PARTITION]
    );
}

#[test]
fn commit_fencing_follows_kafka() {
    let mut h = H::new(config());
    // A missing group: generation -1 creates an offsets-only group.
    let c = h.commit("x", 5, &[("t", 0, 1)]);
    assert_eq!(h.take_commit(c)[0].2, code::ILLEGAL_GENERATION);
    let c = h.commit("", -1, &[("t", 0, 1)]);
    h.complete_all();
    assert_eq!(h.take_commit(c)[0].2, NONE);
    assert_eq!(h.state(), "Empty");

    let ids = stable_group(&mut h, 2);
    let c = h.commit("", -1, &[("t", 0, 2)]);
    assert_eq!(
        h.take_commit(c)[0].2,
        code::UNKNOWN_MEMBER_ID,
        "only for groups without members"
    );
    let c = h.commit("stranger", 1, &[("t", 0, 2)]);
    assert_eq!(h.take_commit(c)[0].2, code::UNKNOWN_MEMBER_ID);
    let c = h.commit(&ids[0], 0, &[("t", 0, 2)]);
    assert_eq!(h.take_commit(c)[0].2, code::ILLEGAL_GENERATION);
    let mut r = commit_request("g", &ids[1], 1, &[("t", 0, 2)]);
    r.group_instance_id = Some("i".into());
    let c = h.commit_req(r);
    assert_eq!(h.take_commit(c)[0].2, code::UNKNOWN_MEMBER_ID);

    // PreparingRebalance: a member of the current generation may still commit.
    let j0 = h.join(&ids[0], None);
    assert_eq!(h.state(), "PreparingRebalance");
    let c = h.commit(&ids[1], 1, &[("t", 0, 3)]);
    h.complete_all();
    assert_eq!(h.take_commit(c)[0].2, NONE);
    // CompletingRebalance: it is told to finish the rebalance first.
    let j1 = h.join(&ids[1], None);
    h.take_join(j0);
    h.take_join(j1);
    assert_eq!(h.state(), "CompletingRebalance");
    let c = h.commit(&ids[1], 2, &[("t", 0, 4)]);
    assert_eq!(h.take_commit(c)[0].2, code::REBALANCE_IN_PROGRESS);
    assert_eq!(h.fetch("t", 0), Some(3));
}

#[test]
fn loading_replays_the_log_into_the_same_state() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 3);
    let c = h.commit(&ids[0], 1, &[("t", 0, 5), ("t", 1, 6)]);
    let c2 = h.commit("", -1, &[]);
    h.take_commit(c2);
    h.complete_all();
    h.take_commit(c);
    let mut r = commit_request("simple", "", -1, &[("u", 0, 9)]);
    r.group_id = "simple".into();
    h.commit_req(r);
    h.complete_all();
    let replayed = h.replayed();
    assert_eq!(replayed.views(), h.c.views());
    // Sessions restart at load: the restored members must heartbeat.
    let mut out = Vec::new();
    let mut c = replayed;
    c.heartbeat(
        h.now,
        1,
        HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: ids[2].clone(),
            group_instance_id: None,
        },
        &mut out,
    );
    assert_eq!(
        out[0],
        Effect::Reply {
            req: 1,
            reply: Reply::Heartbeat(0)
        }
    );
    assert_eq!(c.next_deadline(), Some(h.now + SESSION as i64));
}

#[test]
fn loading_partitions_answer_load_in_progress_and_others_not_coordinator() {
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    let mut out = Vec::new();
    let p = c.partition_of("g");
    c.begin_load(p, &mut out);
    assert_eq!(c.partitions(), vec![(p, coordinator::LoadState::Loading)]);
    c.join(0, 1, join_request("g", "", None, range(&["t"])), &mut out);
    c.heartbeat(
        0,
        2,
        HeartbeatRequest {
            group_id: "g".into(),
            ..Default::default()
        },
        &mut out,
    );
    // Kafka answers heartbeats blindly while loading.
    assert_eq!(
        out[1],
        Effect::Reply {
            req: 2,
            reply: Reply::Heartbeat(0)
        }
    );
    match &out[0] {
        Effect::Reply {
            reply: Reply::Join(r),
            ..
        } => {
            assert_eq!(r.error, code::COORDINATOR_LOAD_IN_PROGRESS)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.list_groups(&[]).0, code::COORDINATOR_LOAD_IN_PROGRESS);
    let other = (0..100)
        .map(|i| format!("g{i}"))
        .find(|g| c.partition_of(g) != p)
        .unwrap();
    out.clear();
    c.commit(
        0,
        3,
        commit_request(&other, "", -1, &[("t", 0, 1)]),
        &mut out,
    );
    assert_eq!(
        out[0],
        Effect::Reply {
            req: 3,
            reply: Reply::Commit(vec![("t".into(), 0, code::NOT_COORDINATOR)])
        }
    );
    let fetched = c.fetch_offsets(&OffsetFetchRequest {
        group_id: other,
        partitions: None,
    });
    assert_eq!(fetched.error, code::NOT_COORDINATOR);
    // Garbage in the log is skipped.
    c.replay(p, 0, &[1, 2, 3], Some(&[4, 5]));
    c.replay(
        p,
        1,
        &crate::group::records::group_key("g"),
        Some(&[0, 3, 0xff]),
    );
    c.finish_load(p, 0, &mut out);
    assert_eq!(c.list_groups(&[]), (0, vec![]));
}

#[test]
fn unload_answers_waiting_requests_not_coordinator() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 2);
    let c = h.commit(&ids[0], 1, &[("t", 0, 1)]);
    let j = h.join(&ids[0], None);
    let mut out = Vec::new();
    h.c.unload(0, &mut out);
    h.absorb(out);
    assert_eq!(h.take_join(j).error, code::NOT_COORDINATOR);
    assert_eq!(h.take_commit(c)[0].2, code::NOT_COORDINATOR);
    assert!(h.c.views().is_empty());
    assert!(h.c.partitions().is_empty());
    // The append's late completion is ignored.
    h.complete_all();
    assert!(h.replies.is_empty());
    assert_eq!(h.heartbeat(&ids[1], None, 1), code::NOT_COORDINATOR);
}

#[test]
fn delete_groups() {
    let mut h = H::new(config());
    stable_group(&mut h, 1);
    let mut r = commit_request("e", "", -1, &[("t", 0, 1), ("t", 1, 1)]);
    r.group_id = "e".into();
    h.commit_req(r);
    h.complete_all();
    h.replies.clear();
    let mut out = Vec::new();
    h.c.delete_groups(
        h.now,
        50,
        vec!["g".into(), "nope".into(), "e".into()],
        &mut out,
    );
    h.absorb(out);
    assert!(
        !h.answered(50),
        "answered once the tombstones are replicated"
    );
    let (_, records) = h.appends.values().next().unwrap().clone();
    assert_eq!(records.len(), 3, "two offsets and the group");
    assert!(records.iter().all(|(_, v)| v.is_none()));
    // Meanwhile the group is Dead: nothing joins it.
    let mut jr = join_request("e", "", None, range(&["t"]));
    jr.group_id = "e".into();
    let j = h.join_req(jr);
    assert_eq!(h.take_join(j).error, code::COORDINATOR_NOT_AVAILABLE);
    h.complete_all();
    assert_eq!(
        h.take(50),
        Reply::Delete(vec![
            ("g".into(), code::NON_EMPTY_GROUP),
            ("nope".into(), code::GROUP_ID_NOT_FOUND),
            ("e".into(), NONE),
        ])
    );
    assert_eq!(h.c.views().len(), 1);
    assert_eq!(h.replayed().views(), h.c.views());
    // A failed deletion leaves the group as it was.
    let mut r = commit_request("f", "", -1, &[("t", 0, 1)]);
    r.group_id = "f".into();
    h.commit_req(r);
    h.complete_all();
    let mut out = Vec::new();
    h.c.delete_groups(h.now, 51, vec!["f".into()], &mut out);
    h.absorb(out);
    h.complete_next(Err(code::NOT_LEADER_OR_FOLLOWER));
    assert_eq!(
        h.take(51),
        Reply::Delete(vec![("f".into(), code::NOT_COORDINATOR)])
    );
    assert_eq!(h.c.describe("f").state, "Empty");
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut h = H::new(config());
    let ids = stable_group(&mut h, 1);
    let c = h.commit(&ids[0], 1, &[("t", 0, 1), ("u", 0, 1)]);
    h.complete_all();
    h.take_commit(c);
    let mut out = Vec::new();
    h.c.delete_offsets(
        h.now,
        60,
        "g".into(),
        vec![("t".into(), 0), ("u".into(), 0)],
        &mut out,
    );
    h.absorb(out);
    h.complete_all();
    assert_eq!(
        h.take(60),
        Reply::OffsetDelete(
            NONE,
            vec![
                ("t".into(), 0, code::GROUP_SUBSCRIBED_TO_TOPIC),
                ("u".into(), 0, NONE)
            ]
        )
    );
    assert_eq!((h.fetch("t", 0), h.fetch("u", 0)), (Some(1), None));
    let mut out = Vec::new();
    h.c.delete_offsets(h.now, 61, "nope".into(), vec![], &mut out);
    h.absorb(out);
    assert_eq!(
        h.take(61),
        Reply::OffsetDelete(code::GROUP_ID_NOT_FOUND, vec![])
    );
}

#[test]
fn offset_delete_with_malformed_or_foreign_metadata() {
    // Malformed consumer metadata: topics unknown, nothing counts as subscribed.
    let mut h = H::new(config());
    let j = h.join_req(join_request(
        "g",
        "",
        None,
        vec![("range".into(), Bytes::from_static(&[0, 0, 0x7f]))],
    ));
    h.advance(3_000);
    let id = h.take_join(j).member_id;
    let s = h.sync(&id, 1, &[]);
    h.complete_all();
    h.take_sync(s);
    let mut out = Vec::new();
    h.c.delete_offsets(h.now, 70, "g".into(), vec![("t".into(), 0)], &mut out);
    h.absorb(out);
    h.complete_all();
    assert_eq!(
        h.take(70),
        Reply::OffsetDelete(NONE, vec![("t".into(), 0, NONE)])
    );
    // A non-consumer group with members cannot say: refused.
    let mut r = join_request("k", "", None, vec![("x".into(), Bytes::new())]);
    r.protocol_type = "connect".into();
    h.join_req(r);
    let mut out = Vec::new();
    h.c.delete_offsets(h.now, 71, "k".into(), vec![("t".into(), 0)], &mut out);
    h.absorb(out);
    assert_eq!(
        h.take(71),
        Reply::OffsetDelete(code::NON_EMPTY_GROUP, vec![])
    );
}

#[test]
fn offsets_expire_and_empty_groups_are_deleted() {
    let cfg = GroupConfig {
        offsets_retention_ms: 100_000,
        offsets_retention_check_interval_ms: 10_000,
        ..config()
    };
    let mut h = H::new(cfg);
    // An offsets-only group: expiry counts from the commit.
    let c = h.commit("", -1, &[("t", 0, 1)]);
    h.complete_all();
    h.take_commit(c);
    h.advance(50_000);
    let c = h.commit("", -1, &[("t", 1, 1)]);
    h.complete_all();
    h.take_commit(c);
    h.advance(55_000);
    h.complete_all();
    assert_eq!((h.fetch("t", 0), h.fetch("t", 1)), (None, Some(1)));
    h.advance(50_000);
    h.complete_all();
    assert!(
        h.c.views().is_empty(),
        "no offsets left: the group is deleted"
    );

    // A consumer group: offsets expire `retention` after it became Empty.
    let ids = stable_group(&mut h, 1);
    let c = h.commit(&ids[0], 1, &[("t", 0, 7)]);
    h.complete_all();
    h.take_commit(c);
    for _ in 0..20 {
        h.advance(5_000);
        assert_eq!(h.heartbeat(&ids[0], None, 1), NONE);
        h.complete_all();
    }
    assert_eq!(
        h.fetch("t", 0),
        Some(7),
        "subscribed topics of a Stable group do not expire"
    );
    h.leave(&[(&ids[0], None)]);
    h.complete_all();
    h.advance(90_000);
    h.complete_all();
    assert_eq!(h.fetch("t", 0), Some(7));
    h.advance(20_000);
    h.complete_all();
    assert_eq!(h.fetch("t", 0), None);
    assert!(h.c.views().is_empty());
    assert_eq!(h.replayed().views(), h.c.views());
}
