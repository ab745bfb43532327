//! The group consumer against a hand-played coordinator.

use std::collections::BTreeMap;

use broker::seam::{ConnId, Input, Output};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchResponse, FindCoordinatorResponse, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::assignor::{self, Assignor};
use super::consumer::*;
use crate::cluster::CONN_SPAN;
use crate::history::{Op, Outcome};
use crate::testwire::{at, metadata, requests_of, Sent};

const BASE: ConnId = 5_000_001;
const GROUP_CONN: ConnId = BASE + GROUP_SLOT_BASE * CONN_SPAN;

fn member(assignor: Assignor, commit: CommitMode) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new(7, "node-1:9092", "events", "g");
    config.assignor = assignor;
    config.commit = commit;
    GroupConsumer::new(config, BASE)
}

struct Wire {
    c: GroupConsumer,
    t: u64,
}

impl Wire {
    fn step(&mut self, input: Input) -> Vec<Output> {
        self.t += 1;
        let mut out = Vec::new();
        self.c.step(at(self.t), input, &mut out);
        out
    }

    fn one(out: &[Output], key: ApiKey) -> Sent {
        let mut sent = requests_of(out, key);
        assert_eq!(sent.len(), 1, "one {key:?} in {out:?}");
        sent.remove(0)
    }

    /// Start, learn the topic (3 partitions, all on node 1) and the coordinator (node 1).
    fn up(assignor: Assignor, commit: CommitMode) -> (Wire, Sent) {
        let mut w = Wire {
            c: member(assignor, commit),
            t: 0,
        };
        w.step(Input::Start);
        // FindCoordinator goes with the first broker connection that is up.
        let out = w.step(Input::Connected { conn: BASE });
        let md = Wire::one(&out, ApiKey::Metadata);
        let find = Wire::one(&out, ApiKey::FindCoordinator);
        assert_eq!(find.conn, BASE);
        w.step(Input::Connected { conn: GROUP_CONN });
        w.step(md.answer(&metadata(
            &[(1, "node-1:9092")],
            "events",
            &[(0, 1, 1), (1, 1, 1), (2, 1, 1)],
        )));
        let out = w.step(
            find.answer(
                &FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("node-1"))
                    .with_port(9092),
            ),
        );
        let join = Wire::one(&out, ApiKey::JoinGroup);
        (w, join)
    }

    /// Join as the only member and leader: MEMBER_ID_REQUIRED, join, sync.
    /// Returns the OffsetFetch it then sends.
    fn join_alone(&mut self, join: Sent, generation: i32) -> Sent {
        let request: JoinGroupRequest = join.decode();
        let mut join = join;
        if request.member_id.is_empty() {
            let out = self.step(
                join.answer(
                    &JoinGroupResponse::default()
                        .with_error_code(79)
                        .with_member_id(StrBytes::from_static_str("m-1")),
                ),
            );
            join = Wire::one(&out, ApiKey::JoinGroup);
        }
        let request: JoinGroupRequest = join.decode();
        assert_eq!(&*request.member_id, "m-1");
        assert_eq!(&*request.protocol_type, "consumer");
        let metadata = request.protocols[0].metadata.clone();
        let out = self.step(
            join.answer(
                &JoinGroupResponse::default()
                    .with_generation_id(generation)
                    .with_protocol_name(Some(StrBytes::from_static_str("range")))
                    .with_leader(StrBytes::from_static_str("m-1"))
                    .with_member_id(StrBytes::from_static_str("m-1"))
                    .with_members(vec![JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_static_str("m-1"))
                        .with_metadata(metadata)]),
            ),
        );
        let sync = Wire::one(&out, ApiKey::SyncGroup);
        let request: SyncGroupRequest = sync.decode();
        assert_eq!(request.generation_id, generation);
        assert_eq!(request.assignments.len(), 1);
        let given = request.assignments[0].assignment.clone();
        assert_eq!(
            assignor::decode_assignment(&given, "events").unwrap(),
            vec![0, 1, 2]
        );
        let out = self.step(sync.answer(&SyncGroupResponse::default().with_assignment(given)));
        Wire::one(&out, ApiKey::OffsetFetch)
    }
}

fn offsets_answer(committed: &[(i32, i64)]) -> OffsetFetchResponse {
    OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("events")))
        .with_partitions(
            committed
                .iter()
                .map(|(p, o)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                })
                .collect(),
        )])
}

fn commit_answer(request: &Sent, error: i16) -> Input {
    let r: OffsetCommitRequest = request.decode();
    request.answer(&OffsetCommitResponse::default().with_topics(
        vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("events")))
            .with_partitions(
                r.topics[0]
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error)
                    })
                    .collect(),
            )],
    ))
}

fn committed(request: &Sent) -> Vec<(i32, i64)> {
    let r: OffsetCommitRequest = request.decode();
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

fn fetch_answer(sent: &Sent, partition: i32, from: i64, values: &[&str]) -> Input {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: from + i as i64,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut b = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    sent.answer(
        &FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("events")))
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(partition)
                .with_high_watermark(from + values.len() as i64)
                .with_records(Some(b.freeze()))])]),
    )
}

fn fetched(sent: &Sent) -> Vec<(i32, i64)> {
    let r: kafka_protocol::messages::FetchRequest = sent.decode();
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition, p.fetch_offset))
        .collect()
}

fn ops(c: &GroupConsumer) -> Vec<String> {
    c.history()
        .events
        .iter()
        .map(|e| {
            let outcome = match &e.outcome {
                Some(Outcome::Ok) => "ok".to_string(),
                Some(Outcome::Fail { error }) => format!("fail {error}"),
                Some(Outcome::Unknown { .. }) => "unknown".to_string(),
                None => "-".to_string(),
            };
            match &e.op {
                Op::Assignment {
                    generation,
                    member,
                    partitions,
                    ..
                } => format!("assign g{generation} {member} {partitions:?}"),
                Op::Commit {
                    generation,
                    offsets,
                    ..
                } => format!("commit g{generation} {offsets:?} {outcome}"),
                Op::Seek { positions } => format!("seek {positions:?}"),
                Op::Poll { reads } => {
                    let r: BTreeMap<i32, Vec<i64>> = reads
                        .iter()
                        .map(|(p, rs)| (*p, rs.iter().map(|r| r.offset).collect()))
                        .collect();
                    format!("poll {r:?}")
                }
                other => format!("{other:?}"),
            }
        })
        .collect()
}

#[test]
fn joins_consumes_from_the_committed_offset_and_commits() {
    let (mut w, join) = Wire::up(Assignor::Range, CommitMode::Auto);
    let offsets = w.join_alone(join, 1);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 5), (1, -1), (2, -1)])));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    assert_eq!(fetched(&fetch), vec![(0, 5), (1, 0), (2, 0)]);
    let out = w.step(fetch_answer(&fetch, 0, 5, &["a", "b"]));
    let next = Wire::one(&out, ApiKey::Fetch);
    assert_eq!(fetched(&next), vec![(0, 7), (1, 0), (2, 0)]);
    // The auto-commit timer: the processed position of partition 0 only.
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 4,
    });
    let commit = Wire::one(&out, ApiKey::OffsetCommit);
    assert_eq!(committed(&commit), vec![(0, 7)]);
    let r: OffsetCommitRequest = commit.decode();
    assert_eq!(r.generation_id_or_member_epoch, 1);
    assert_eq!(&*r.member_id, "m-1");
    w.step(commit_answer(&commit, 0));
    assert_eq!(
        ops(&w.c),
        vec![
            "assign g1 m-1 [0, 1, 2]",
            "seek {0: 5, 1: 0, 2: 0}",
            "poll {0: [5, 6]}",
            "commit g1 {0: 7} ok",
        ]
    );
    assert_eq!(w.c.status().phase, Phase::Stable);
}

#[test]
fn an_eager_rebalance_commits_and_gives_everything_up_before_joining() {
    let (mut w, join) = Wire::up(Assignor::Range, CommitMode::Auto);
    let offsets = w.join_alone(join, 1);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    let out = w.step(fetch_answer(&fetch, 1, 0, &["x"]));
    let pending = Wire::one(&out, ApiKey::Fetch);
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 3,
    });
    let hb = Wire::one(&out, ApiKey::Heartbeat);
    let out = w.step(hb.answer(&HeartbeatResponse::default().with_error_code(27)));
    let commit = Wire::one(&out, ApiKey::OffsetCommit);
    assert_eq!(committed(&commit), vec![(0, 0), (1, 1), (2, 0)]);
    assert!(
        requests_of(&out, ApiKey::JoinGroup).is_empty(),
        "commit first"
    );
    assert_eq!(w.c.status().phase, Phase::Revoking);
    let out = w.step(commit_answer(&commit, 0));
    let join = Wire::one(&out, ApiKey::JoinGroup);
    assert!(w.c.status().owned.is_empty(), "eager: everything given up");
    let r: JoinGroupRequest = join.decode();
    let sub = assignor::decode_subscription(&r.protocols[0].metadata, "events").unwrap();
    assert!(sub.owned.is_empty());
    // Generation 2: the same partitions; consumption resumes from the commit.
    let offsets = w.join_alone(join, 2);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 1), (2, 0)])));
    assert!(
        requests_of(&out, ApiKey::Fetch).is_empty(),
        "the old fetch is out"
    );
    // The fetch of generation 1 comes back: its records would be dropped.
    let out = w.step(fetch_answer(&pending, 1, 1, &["late"]));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    assert_eq!(fetched(&fetch), vec![(0, 0), (1, 1), (2, 0)]);
    assert!(
        !ops(&w.c).iter().any(|o| o == "poll {1: [1]}"),
        "a fetch from before the rebalance is not processed"
    );
}

#[test]
fn a_fenced_commit_fails_loses_the_partitions_and_rejoins_without_committing() {
    let (mut w, join) = Wire::up(Assignor::CooperativeSticky, CommitMode::AfterProcess);
    let offsets = w.join_alone(join, 1);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    let out = w.step(fetch_answer(&fetch, 2, 0, &["x", "y"]));
    // Commit after processing.
    let commit = Wire::one(&out, ApiKey::OffsetCommit);
    assert_eq!(committed(&commit), vec![(2, 2)]);
    let out = w.step(commit_answer(&commit, 22));
    assert!(w.c.status().owned.is_empty(), "lost, not revoked");
    assert!(requests_of(&out, ApiKey::OffsetCommit).is_empty());
    let join = Wire::one(&out, ApiKey::JoinGroup);
    let r: JoinGroupRequest = join.decode();
    assert_eq!(
        &*r.member_id, "m-1",
        "ILLEGAL_GENERATION keeps the member id"
    );
    let sub = assignor::decode_subscription(&r.protocols[0].metadata, "events").unwrap();
    assert!(sub.owned.is_empty(), "a fenced member claims nothing");
    assert_eq!(
        ops(&w.c).last().unwrap(),
        "commit g1 {2: 2} fail IllegalGeneration"
    );
}

#[test]
fn a_cooperative_member_keeps_fetching_through_a_rebalance_and_revokes_what_moves() {
    let (mut w, join) = Wire::up(Assignor::CooperativeSticky, CommitMode::Auto);
    let offsets = w.join_alone(join, 1);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    w.step(fetch_answer(&fetch, 0, 0, &["x"]));
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 3,
    });
    let hb = Wire::one(&out, ApiKey::Heartbeat);
    let out = w.step(hb.answer(&HeartbeatResponse::default().with_error_code(27)));
    // No commit, no revoke: straight to JoinGroup, claiming what it owns.
    let join = Wire::one(&out, ApiKey::JoinGroup);
    let r: JoinGroupRequest = join.decode();
    let sub = assignor::decode_subscription(&r.protocols[0].metadata, "events").unwrap();
    assert_eq!(sub.owned, vec![0, 1, 2]);
    assert_eq!(sub.generation, 1);
    // Another member joined; the leader (m-2) took 2 away from us this round.
    let out = w.step(
        join.answer(
            &JoinGroupResponse::default()
                .with_generation_id(2)
                .with_leader(StrBytes::from_static_str("m-2"))
                .with_member_id(StrBytes::from_static_str("m-1")),
        ),
    );
    let sync = Wire::one(&out, ApiKey::SyncGroup);
    let out = w.step(
        sync.answer(
            &SyncGroupResponse::default()
                .with_assignment(assignor::encode_assignment("events", &[0, 1])),
        ),
    );
    // Revoking 2: commit it (its processed position), then rejoin.
    let commit = Wire::one(&out, ApiKey::OffsetCommit);
    assert_eq!(committed(&commit), vec![(2, 0)]);
    let out = w.step(commit_answer(&commit, 0));
    let join = Wire::one(&out, ApiKey::JoinGroup);
    let r: JoinGroupRequest = join.decode();
    let sub = assignor::decode_subscription(&r.protocols[0].metadata, "events").unwrap();
    assert_eq!(sub.owned, vec![0, 1]);
    assert_eq!(sub.generation, 2);
    assert_eq!(w.c.status().owned, vec![0, 1]);
}

#[test]
fn commit_before_processing_commits_what_it_fetched() {
    let mut config = GroupConsumerConfig::new(7, "node-1:9092", "events", "g");
    config.commit = CommitMode::BeforeProcess;
    config.processing_ms = 1_000;
    let mut w = Wire {
        c: GroupConsumer::new(config, BASE),
        t: 0,
    };
    w.step(Input::Start);
    let out = w.step(Input::Connected { conn: BASE });
    let md = Wire::one(&out, ApiKey::Metadata);
    let find = Wire::one(&out, ApiKey::FindCoordinator);
    w.step(Input::Connected { conn: GROUP_CONN });
    w.step(md.answer(&metadata(
        &[(1, "node-1:9092")],
        "events",
        &[(0, 1, 1), (1, 1, 1), (2, 1, 1)],
    )));
    let out = w.step(
        find.answer(
            &FindCoordinatorResponse::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("node-1"))
                .with_port(9092),
        ),
    );
    let join = Wire::one(&out, ApiKey::JoinGroup);
    let offsets = w.join_alone(join, 1);
    let out = w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
    let fetch = Wire::one(&out, ApiKey::Fetch);
    let out = w.step(fetch_answer(&fetch, 0, 0, &["a", "b", "c"]));
    let commit = Wire::one(&out, ApiKey::OffsetCommit);
    assert_eq!(
        committed(&commit),
        vec![(0, 3)],
        "committed before processing"
    );
    assert!(!ops(&w.c).iter().any(|o| o.starts_with("poll")));
}

#[test]
fn not_coordinator_finds_the_coordinator_again_and_goes_on_heartbeating() {
    let (mut w, join) = Wire::up(Assignor::Range, CommitMode::Auto);
    let offsets = w.join_alone(join, 1);
    w.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 3,
    });
    let hb = Wire::one(&out, ApiKey::Heartbeat);
    let out = w.step(hb.answer(&HeartbeatResponse::default().with_error_code(16)));
    // The coordinator's connection is closed; after the backoff, find it again.
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn } if *conn == GROUP_CONN)));
    assert_eq!(w.c.status().coordinator, None);
    assert_eq!(w.c.status().phase, Phase::Stable, "still a member");
    w.t += 100;
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 6,
    });
    let find = Wire::one(&out, ApiKey::FindCoordinator);
    assert_eq!(find.conn, BASE, "over the fetch connection");
    let out = w.step(
        find.answer(
            &FindCoordinatorResponse::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("node-2"))
                .with_port(9092),
        ),
    );
    let new_conn = BASE + (GROUP_SLOT_BASE + 1) * CONN_SPAN;
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Connect { conn, addr } if *conn == new_conn && addr == "node-2:9092")));
    w.step(Input::Connected { conn: new_conn });
    let out = w.step(Input::TimerFired {
        id: crate::session::SESSION_TIMER_LIMIT + 3,
    });
    let hb = Wire::one(&out, ApiKey::Heartbeat);
    assert_eq!(hb.conn, new_conn);
    let r: kafka_protocol::messages::HeartbeatRequest = hb.decode();
    assert_eq!((r.generation_id, &*r.member_id), (1, "m-1"));
}

#[test]
fn closing_commits_then_leaves_and_a_static_member_does_not_leave() {
    for instance in [None, Some("i-7")] {
        let (mut w, join) = Wire::up(Assignor::Range, CommitMode::Auto);
        w.c = {
            let mut config = w.c.config().clone();
            config.instance_id = instance.map(str::to_string);
            config.leave_at_nanos = Some(1_000_000_000);
            GroupConsumer::new(config, BASE)
        };
        // Replay the start with the new config.
        let mut w2 = Wire { c: w.c, t: 0 };
        w2.step(Input::Start);
        let out = w2.step(Input::Connected { conn: BASE });
        let md = Wire::one(&out, ApiKey::Metadata);
        let find = Wire::one(&out, ApiKey::FindCoordinator);
        w2.step(Input::Connected { conn: GROUP_CONN });
        w2.step(md.answer(&metadata(
            &[(1, "node-1:9092")],
            "events",
            &[(0, 1, 1), (1, 1, 1), (2, 1, 1)],
        )));
        let out = w2.step(
            find.answer(
                &FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("node-1"))
                    .with_port(9092),
            ),
        );
        let join2 = Wire::one(&out, ApiKey::JoinGroup);
        let r: JoinGroupRequest = join2.decode();
        assert_eq!(r.group_instance_id.as_deref(), instance);
        drop(join);
        let offsets = w2.join_alone(join2, 1);
        let out = w2.step(offsets.answer(&offsets_answer(&[(0, 0), (1, 0), (2, 0)])));
        let fetch = Wire::one(&out, ApiKey::Fetch);
        w2.step(fetch_answer(&fetch, 0, 0, &["a"]));
        let out = w2.step(Input::TimerFired {
            id: crate::session::SESSION_TIMER_LIMIT + 7,
        });
        let commit = Wire::one(&out, ApiKey::OffsetCommit);
        assert_eq!(committed(&commit), vec![(0, 1), (1, 0), (2, 0)]);
        let out = w2.step(commit_answer(&commit, 0));
        let leaves = requests_of(&out, ApiKey::LeaveGroup);
        assert_eq!(
            leaves.len(),
            usize::from(instance.is_none()),
            "{instance:?}"
        );
        assert_eq!(w2.c.status().phase, Phase::Closed);
    }
}
