//! KIP-848 consumer groups, scripted: joins, the assignors, revocation
//! before reassignment, fencing, timeouts, leaves, static members and replay.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::harness::*;
use crate::group::assignors::TopicPartitions;
use crate::group::*;

const T: Uuid = Uuid::from_bytes([1; 16]);
const U: Uuid = Uuid::from_bytes([2; 16]);

fn h() -> H {
    let mut h = H::new(config());
    h.c.set_topics(BTreeMap::from([
        ("t".to_string(), (T, 4)),
        ("u".to_string(), (U, 2)),
    ]));
    h
}

fn tp(list: &[(Uuid, &[i32])]) -> TopicPartitions {
    list.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn request(member: &str, epoch: i32) -> ConsumerHeartbeatRequest {
    ConsumerHeartbeatRequest {
        version: 1,
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: 30_000,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn join_req(member: &str, topics: &[&str]) -> ConsumerHeartbeatRequest {
    ConsumerHeartbeatRequest {
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        ..request(member, 0)
    }
}

/// Sends a heartbeat, replicates what it writes and returns the answer.
fn send(h: &mut H, r: ConsumerHeartbeatRequest) -> ConsumerHeartbeatResponse {
    let req = h.next_req();
    let mut out = Vec::new();
    h.c.consumer_heartbeat(h.now, req, r, &mut out);
    h.absorb(out);
    h.complete_all();
    match h.take(req) {
        Reply::ConsumerHeartbeat(r) => r,
        other => panic!("not a heartbeat answer: {other:?}"),
    }
}

/// A heartbeat reporting what the member owns.
fn beat(h: &mut H, member: &str, epoch: i32, owned: &TopicPartitions) -> ConsumerHeartbeatResponse {
    send(
        h,
        ConsumerHeartbeatRequest {
            owned: Some(owned.clone()),
            ..request(member, epoch)
        },
    )
}

/// A client that does what it is told: owns what it was assigned last.
struct Client {
    id: String,
    epoch: i32,
    owned: TopicPartitions,
}

impl Client {
    fn join(h: &mut H, id: &str, topics: &[&str], assignor: Option<&str>) -> Client {
        let r = send(
            h,
            ConsumerHeartbeatRequest {
                server_assignor: assignor.map(str::to_string),
                ..join_req(id, topics)
            },
        );
        assert_eq!(r.error, 0, "{r:?}");
        Client {
            id: id.into(),
            epoch: r.member_epoch,
            owned: r
                .assignment
                .expect("a join is answered with its assignment"),
        }
    }

    fn beat(&mut self, h: &mut H) -> ConsumerHeartbeatResponse {
        let r = beat(h, &self.id, self.epoch, &self.owned);
        assert_eq!(r.error, 0, "{r:?}");
        self.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            self.owned = a.clone();
        }
        r
    }
}

fn count(a: &TopicPartitions) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// No partition owned by two clients.
fn disjoint(clients: &[&Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}/{p} owned twice");
            }
        }
    }
}

/// Heartbeats every client until none changes.
fn settle(h: &mut H, clients: &mut [&mut Client]) {
    for _ in 0..10 {
        let before: Vec<_> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        for i in 0..clients.len() {
            clients[i].beat(h);
            disjoint(&clients_ref(clients));
        }
        let after: Vec<_> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        if before == after {
            return;
        }
    }
    panic!("the group did not settle");
}

fn clients_ref<'a>(clients: &'a [&mut Client]) -> Vec<&'a Client> {
    clients.iter().map(|c| &**c).collect()
}

#[test]
fn two_members_split_the_topic_and_the_second_waits_for_revocation() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], None);
    assert_eq!((a.epoch, count(&a.owned)), (1, 4));
    let mut b = Client::join(&mut h, "b", &["t"], None);
    // b is in the new epoch but its partitions are still a's.
    assert_eq!((b.epoch, count(&b.owned)), (2, 0));
    let r = a.beat(&mut h);
    // a must revoke two first; its epoch waits.
    assert_eq!((r.member_epoch, count(&a.owned)), (1, 2));
    b.beat(&mut h);
    assert_eq!(count(&b.owned), 0, "nothing is free before a acknowledges");
    a.beat(&mut h);
    assert_eq!(a.epoch, 2);
    b.beat(&mut h);
    assert_eq!(count(&b.owned), 2);
    disjoint(&[&a, &b]);
    assert_eq!(h.c.consumer_describe("g").state, "Stable");
}

#[test]
fn three_members_get_a_uniform_share() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t", "u"], None);
    let mut b = Client::join(&mut h, "b", &["t", "u"], None);
    let mut c = Client::join(&mut h, "c", &["t", "u"], None);
    settle(&mut h, &mut [&mut a, &mut b, &mut c]);
    let counts = [count(&a.owned), count(&b.owned), count(&c.owned)];
    assert_eq!(counts.iter().sum::<usize>(), 6);
    assert!(counts.iter().all(|&n| n == 2), "{counts:?}");
    let d = h.c.consumer_describe("g");
    assert_eq!(
        (d.state.as_str(), d.assignor_name.as_str()),
        ("Stable", "uniform")
    );
}

#[test]
fn range_assigns_consecutive_partitions() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], Some("range"));
    let mut b = Client::join(&mut h, "b", &["t"], Some("range"));
    let mut c = Client::join(&mut h, "c", &["t"], Some("range"));
    settle(&mut h, &mut [&mut a, &mut b, &mut c]);
    assert_eq!(a.owned, tp(&[(T, &[0, 1])]));
    assert_eq!(b.owned, tp(&[(T, &[2])]));
    assert_eq!(c.owned, tp(&[(T, &[3])]));
    let r = send(
        &mut h,
        ConsumerHeartbeatRequest {
            server_assignor: Some("sticky".into()),
            ..join_req("d", &["t"])
        },
    );
    assert_eq!(r.error, code::UNSUPPORTED_ASSIGNOR);
}

#[test]
fn epochs_fence_heartbeats_and_commits() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], None);
    let r = beat(&mut h, "a", a.epoch + 1, &a.owned);
    assert_eq!(r.error, code::FENCED_MEMBER_EPOCH);
    assert_eq!(
        beat(&mut h, "zz", 3, &a.owned).error,
        code::UNKNOWN_MEMBER_ID
    );
    let mut b = Client::join(&mut h, "b", &["t"], None);
    settle(&mut h, &mut [&mut a, &mut b]);
    assert_eq!(a.epoch, 2);
    // A lost answer to the last bump is forgiven; older epochs are not.
    assert_eq!(beat(&mut h, "a", 1, &a.owned).error, 0);
    assert_eq!(
        beat(&mut h, "a", 1, &tp(&[(T, &[0, 1, 2, 3])])).error,
        code::FENCED_MEMBER_EPOCH
    );
    let commit = |h: &mut H, epoch| {
        let req = h.commit("a", epoch, &[("t", 0, 5)]);
        h.complete_all();
        h.take_commit(req)[0].2
    };
    assert_eq!(commit(&mut h, 1), code::STALE_MEMBER_EPOCH);
    assert_eq!(commit(&mut h, 3), code::FENCED_MEMBER_EPOCH);
    assert_eq!(commit(&mut h, 2), 0);
    assert_eq!(h.fetch("t", 0), Some(5));
}

#[test]
fn a_silent_member_is_fenced_after_its_session() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], None);
    let mut b = Client::join(&mut h, "b", &["t"], None);
    settle(&mut h, &mut [&mut a, &mut b]);
    for _ in 0..10 {
        h.advance(5_000);
        a.beat(&mut h);
    }
    h.complete_all();
    assert_eq!(h.c.consumer_describe("g").members.len(), 1);
    a.beat(&mut h);
    assert_eq!(count(&a.owned), 4);
    assert_eq!(
        beat(&mut h, "b", b.epoch, &b.owned).error,
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_leaving_member_hands_its_partitions_over() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], None);
    let mut b = Client::join(&mut h, "b", &["t"], None);
    settle(&mut h, &mut [&mut a, &mut b]);
    let r = send(&mut h, request("b", -1));
    assert_eq!((r.error, r.member_epoch), (0, -1));
    a.beat(&mut h);
    assert_eq!((a.epoch, count(&a.owned)), (3, 4));
    let d = h.c.consumer_describe("g");
    assert_eq!((d.group_epoch, d.members.len()), (3, 1));
}

#[test]
fn a_static_member_comes_back_under_a_new_id() {
    let mut h = h();
    let static_join = |h: &mut H, id: &str| {
        send(
            h,
            ConsumerHeartbeatRequest {
                instance_id: Some("i1".into()),
                ..join_req(id, &["t"])
            },
        )
    };
    let r = static_join(&mut h, "a");
    let (epoch, owned) = (r.member_epoch, r.assignment.unwrap());
    assert_eq!(
        static_join(&mut h, "a2").error,
        code::UNRELEASED_INSTANCE_ID
    );
    let r = send(
        &mut h,
        ConsumerHeartbeatRequest {
            instance_id: Some("i1".into()),
            ..request("a", -2)
        },
    );
    assert_eq!((r.error, r.member_epoch), (0, -2));
    // Still there, still owning its partitions: nothing rebalanced.
    assert_eq!(h.c.consumer_describe("g").group_epoch, 1);
    let r = static_join(&mut h, "a2");
    assert_eq!(
        (r.error, r.member_epoch, r.assignment),
        (0, epoch, Some(owned))
    );
    let d = h.c.consumer_describe("g");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, "a2");
}

#[test]
fn replay_restores_the_groups() {
    let mut h = h();
    let mut a = Client::join(&mut h, "a", &["t"], None);
    let mut b = Client::join(&mut h, "b", &["t", "u"], Some("range"));
    a.beat(&mut h); // a is revoking now
    let mut c = h.replayed();
    c.set_topics(BTreeMap::from([
        ("t".to_string(), (T, 4)),
        ("u".to_string(), (U, 2)),
    ]));
    assert_eq!(c.consumer_describe("g"), h.c.consumer_describe("g"));
    settle(&mut h, &mut [&mut a, &mut b]);
    let c = h.replayed();
    assert_eq!(c.consumer_describe("g"), h.c.consumer_describe("g"));
    assert_eq!(c.list_groups(&[]).1[0].group_type, "consumer");
}

#[test]
fn classic_and_consumer_groups_do_not_mix() {
    let mut h = h();
    Client::join(&mut h, "a", &["t"], None);
    let req = h.join("", None);
    assert_eq!(h.take_join(req).error, code::INCONSISTENT_GROUP_PROTOCOL);
    let mut classic = super::harness::H::new(config());
    classic.join("", None);
    let r = send(&mut classic, join_req("x", &["t"]));
    assert_eq!(r.error, code::GROUP_ID_NOT_FOUND);
}

#[test]
fn invalid_heartbeats_are_refused() {
    let mut h = h();
    let mut r = join_req("a", &["t"]);
    r.rebalance_timeout_ms = -1;
    assert_eq!(send(&mut h, r).error, code::INVALID_REQUEST);
    assert_eq!(send(&mut h, request("", 3)).error, code::INVALID_REQUEST);
    assert_eq!(send(&mut h, request("a", -2)).error, code::INVALID_REQUEST);
    // v0: the coordinator names the member.
    let mut r = join_req("", &["t"]);
    r.version = 0;
    let r = send(&mut h, r);
    assert!(r.member_id.is_some_and(|id| !id.is_empty()));
}

#[test]
fn a_regex_subscription_follows_matching_topics() {
    let mut h = h();
    let regex_join = |h: &mut H, pattern: &str| {
        send(
            h,
            ConsumerHeartbeatRequest {
                subscribed_topic_names: None,
                subscribed_topic_regex: Some(pattern.into()),
                ..request("a", 0)
            },
        )
    };
    assert_eq!(
        regex_join(&mut h, "(").error,
        code::INVALID_REGULAR_EXPRESSION
    );
    let r = regex_join(&mut h, "[u-z]");
    assert_eq!(r.assignment, Some(tp(&[(U, &[0, 1])])));
    // A new matching topic rebalances the group on the next heartbeat.
    let v = Uuid::from_bytes([3; 16]);
    h.c.set_topics(BTreeMap::from([
        ("t".to_string(), (T, 4)),
        ("u".to_string(), (U, 2)),
        ("v".to_string(), (v, 1)),
    ]));
    let r = beat(&mut h, "a", r.member_epoch, &tp(&[(U, &[0, 1])]));
    assert_eq!(r.assignment, Some(tp(&[(U, &[0, 1]), (v, &[0])])));
}
