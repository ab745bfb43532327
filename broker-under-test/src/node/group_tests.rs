//! The group APIs through a whole node: FindCoordinator creating
//! `__consumer_offsets`, a member's join/sync/heartbeat/commit/leave, offsets
//! surviving a restart (loaded back from the log), and bad input.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::tests::{create_topics, topic_name, Harness};
use crate::config::BrokerConfig;
use crate::seam::{ConnId, Input};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.group.initial_rebalance_delay_ms = 0;
    config.group.offsets_partitions = 4;
    config
}

fn find(h: &mut Harness, conn: ConnId, group: &str, version: i16) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorRequest::default();
    if version >= 4 {
        r.coordinator_keys = vec![sb(group)];
    } else {
        r.key = sb(group);
    }
    h.call(conn, ApiKey::FindCoordinator, version, &r)
}

/// FindCoordinator until the coordinator is there (the first creates the topic).
fn find_ready(h: &mut Harness, conn: ConnId, group: &str) -> FindCoordinatorResponse {
    for _ in 0..20 {
        let r = find(h, conn, group, 3);
        if r.error_code == 0 {
            return r;
        }
        assert_eq!(r.error_code, ResponseError::CoordinatorNotAvailable.code());
        h.advance_millis(10);
    }
    panic!("no coordinator for {group}");
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(sb(group));
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = sb(member);
    r.protocol_type = sb("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = bytes::Bytes::from_static(b"subscription");
    r.protocols = vec![p];
    r
}

/// Join as a new member (twice: KIP-394 hands out the id first) and sync as
/// the leader; returns (member id, generation).
fn join_and_sync(h: &mut Harness, conn: ConnId, group: &str) -> (String, i32) {
    let first: JoinGroupResponse = h.call(conn, ApiKey::JoinGroup, 7, &join_request(group, ""));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    h.send(conn, ApiKey::JoinGroup, 7, &join_request(group, &member));
    h.advance_millis(1);
    let (_, joined): (i32, JoinGroupResponse) = h.recv(conn, 7);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(sb(group));
    sync.generation_id = joined.generation_id;
    sync.member_id = sb(&member);
    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = sb(&member);
    a.assignment = bytes::Bytes::from_static(b"all of t");
    sync.assignments = vec![a];
    let synced: SyncGroupResponse = h.call(conn, ApiKey::SyncGroup, 5, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"all of t");
    (member, joined.generation_id)
}

#[allow(clippy::too_many_arguments)]
fn commit(
    h: &mut Harness,
    conn: ConnId,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(sb(group));
    r.generation_id_or_member_epoch = generation;
    r.member_id = sb(member);
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    p.committed_leader_epoch = -1;
    p.committed_metadata = Some(sb("m"));
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    r.topics = vec![t];
    let response: OffsetCommitResponse = h.call(conn, ApiKey::OffsetCommit, 8, &r);
    response.topics[0].partitions[0].error_code
}

fn fetch_offset(h: &mut Harness, conn: ConnId, group: &str, topic: &str, partition: i32) -> i64 {
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(sb(group));
    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
    t.name = topic_name(topic);
    t.partition_indexes = vec![partition];
    r.topics = Some(vec![t]);
    let response: OffsetFetchResponse = h.call(conn, ApiKey::OffsetFetch, 7, &r);
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

#[test]
fn find_coordinator_creates_the_offsets_topic_then_names_this_node() {
    let mut h = Harness::new(config());
    h.connect(1);
    let first = find(&mut h, 1, "g", 3);
    assert_eq!(
        first.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    let ready = find_ready(&mut h, 1, "g");
    assert_eq!(ready.node_id.0, h.node.config().node_id);
    assert!(ready.port > 0);
    assert!(h
        .node
        .topic_names()
        .iter()
        .any(|t| t == "__consumer_offsets"));
    // v4 batches keys.
    let mut r = FindCoordinatorRequest::default();
    r.coordinator_keys = vec![sb("a"), sb("b")];
    let batched: FindCoordinatorResponse = h.call(1, ApiKey::FindCoordinator, 4, &r);
    assert_eq!(batched.coordinators.len(), 2);
    assert!(batched.coordinators.iter().all(|c| c.error_code == 0));
    // A key type not served (share groups, 2): a clear error, not a hang.
    let mut r = FindCoordinatorRequest::default();
    r.key = sb("share");
    r.key_type = 2;
    let txn: FindCoordinatorResponse = h.call(1, ApiKey::FindCoordinator, 3, &r);
    assert_eq!(txn.error_code, ResponseError::InvalidRequest.code());
}

#[test]
fn a_member_joins_syncs_heartbeats_commits_and_the_offsets_survive_a_restart() {
    let mut h = Harness::new(config());
    h.connect(1);
    create_topics(&mut h, 1, "t", 2);
    find_ready(&mut h, 1, "g");
    let (member, generation) = join_and_sync(&mut h, 1, "g");

    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(sb("g"));
    hb.generation_id = generation;
    hb.member_id = sb(&member);
    let beat: HeartbeatResponse = h.call(1, ApiKey::Heartbeat, 4, &hb);
    assert_eq!(beat.error_code, 0);
    hb.generation_id = generation + 7;
    let stale: HeartbeatResponse = h.call(1, ApiKey::Heartbeat, 4, &hb);
    assert_eq!(stale.error_code, ResponseError::IllegalGeneration.code());

    assert_eq!(commit(&mut h, 1, "g", &member, generation, "t", 1, 42), 0);
    assert_eq!(fetch_offset(&mut h, 1, "g", "t", 1), 42);
    assert_eq!(fetch_offset(&mut h, 1, "g", "t", 0), -1);
    // A wrong generation is fenced and changes nothing.
    assert_eq!(
        commit(&mut h, 1, "g", &member, generation + 1, "t", 1, 99),
        ResponseError::IllegalGeneration.code()
    );
    // An unknown topic is refused per partition.
    assert_eq!(
        commit(&mut h, 1, "g", &member, generation, "nope", 0, 5),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(fetch_offset(&mut h, 1, "g", "t", 1), 42);

    // Leave; the group is empty, its offsets stay.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(sb("g"));
    let mut m = leave_group_request::MemberIdentity::default();
    m.member_id = sb(&member);
    leave.members = vec![m];
    let left: LeaveGroupResponse = h.call(1, ApiKey::LeaveGroup, 5, &leave);
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);

    // Restart: the offsets come back from __consumer_offsets.
    h.step(Input::Shutdown);
    assert!(h.stopped);
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(config(), disk);
    h.connect(1);
    let mut offset = None;
    for _ in 0..20 {
        let mut r = OffsetFetchRequest::default();
        r.group_id = GroupId(sb("g"));
        r.topics = None;
        let response: OffsetFetchResponse = h.call(1, ApiKey::OffsetFetch, 7, &r);
        if response.error_code == ResponseError::CoordinatorLoadInProgress.code() {
            h.advance_millis(10);
            continue;
        }
        assert_eq!(response.error_code, 0);
        offset = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "t")
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 1))
            .map(|p| p.committed_offset);
        break;
    }
    assert_eq!(offset, Some(42));
}

#[test]
fn list_describe_and_delete_groups() {
    let mut h = Harness::new(config());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    find_ready(&mut h, 1, "g");
    let (member, generation) = join_and_sync(&mut h, 1, "g");
    assert_eq!(commit(&mut h, 1, "g", &member, generation, "t", 0, 3), 0);

    let listed: ListGroupsResponse =
        h.call(1, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(listed.error_code, 0);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state.as_str(), "Stable");

    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(sb("g"))];
    let described: DescribeGroupsResponse = h.call(1, ApiKey::DescribeGroups, 5, &d);
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(described.groups[0].protocol_data.as_str(), "range");

    // A group with members cannot be deleted.
    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![GroupId(sb("g"))];
    let refused: DeleteGroupsResponse = h.call(1, ApiKey::DeleteGroups, 2, &del);
    assert_eq!(
        refused.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(sb("g"));
    leave.member_id = sb(&member);
    let left: LeaveGroupResponse = h.call(1, ApiKey::LeaveGroup, 2, &leave);
    assert_eq!(left.error_code, 0);
    let deleted: DeleteGroupsResponse = h.call(1, ApiKey::DeleteGroups, 2, &del);
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(fetch_offset(&mut h, 1, "g", "t", 0), -1);
}

#[test]
fn bad_group_input_gets_kafka_errors_and_changes_nothing() {
    let mut h = Harness::new(config());
    h.connect(1);
    find_ready(&mut h, 1, "g");
    // A session timeout out of range.
    let mut r = join_request("g", "");
    r.session_timeout_ms = 1;
    let bad: JoinGroupResponse = h.call(1, ApiKey::JoinGroup, 7, &r);
    assert_eq!(bad.error_code, ResponseError::InvalidSessionTimeout.code());
    // An unknown member.
    let unknown: JoinGroupResponse = h.call(1, ApiKey::JoinGroup, 7, &join_request("g", "nobody"));
    assert_eq!(unknown.error_code, ResponseError::UnknownMemberId.code());
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(sb("g"));
    hb.member_id = sb("nobody");
    let beat: HeartbeatResponse = h.call(1, ApiKey::Heartbeat, 4, &hb);
    assert_ne!(beat.error_code, 0);
    let listed: ListGroupsResponse =
        h.call(1, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert!(listed.groups.is_empty(), "{listed:?}");
    // A garbage JoinGroup body closes only that connection.
    h.connect(2);
    let mut frame = super::tests::request_frame(ApiKey::JoinGroup, 7, 9, &join_request("g", ""));
    let keep = frame.len() - 9;
    let truncated = frame.split_to(keep);
    let mut broken = bytes::BytesMut::from(&truncated[..]);
    let len = (broken.len() - 4) as i32;
    broken[0..4].copy_from_slice(&len.to_be_bytes());
    h.send_raw(2, &broken);
    assert!(h.closed.contains(&2));
    assert!(!h.closed.contains(&1));
}

#[test]
fn every_supported_version_of_every_group_api_answers() {
    let mut h = Harness::new(config());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    find_ready(&mut h, 1, "g");
    for (key, min, max) in crate::protocol::SUPPORTED_APIS {
        for version in *min..=*max {
            let answered = match key {
                ApiKey::FindCoordinator => {
                    find(&mut h, 1, "g", version);
                    true
                }
                ApiKey::OffsetFetch => {
                    let mut r = OffsetFetchRequest::default();
                    if version >= 8 {
                        let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                        g.group_id = GroupId(sb("g"));
                        r.groups = vec![g];
                    } else {
                        r.group_id = GroupId(sb("g"));
                        r.topics = (version >= 2).then(Vec::new).or(Some(Vec::new()));
                    }
                    let _: OffsetFetchResponse = h.call(1, ApiKey::OffsetFetch, version, &r);
                    true
                }
                ApiKey::ListGroups => {
                    let _: ListGroupsResponse = h.call(
                        1,
                        ApiKey::ListGroups,
                        version,
                        &ListGroupsRequest::default(),
                    );
                    true
                }
                ApiKey::DescribeGroups => {
                    let mut d = DescribeGroupsRequest::default();
                    d.groups = vec![GroupId(sb("g"))];
                    let _: DescribeGroupsResponse = h.call(1, ApiKey::DescribeGroups, version, &d);
                    true
                }
                ApiKey::Heartbeat => {
                    let mut hb = HeartbeatRequest::default();
                    hb.group_id = GroupId(sb("g"));
                    hb.member_id = sb("x");
                    let _: HeartbeatResponse = h.call(1, ApiKey::Heartbeat, version, &hb);
                    true
                }
                ApiKey::OffsetCommit => {
                    let mut r = OffsetCommitRequest::default();
                    r.group_id = GroupId(sb("solo"));
                    r.generation_id_or_member_epoch = -1;
                    let _: OffsetCommitResponse = h.call(1, ApiKey::OffsetCommit, version, &r);
                    true
                }
                _ => false,
            };
            let _ = answered;
        }
    }
    assert!(!h.closed.contains(&1));
}

/// In a (one-node) KRaft cluster the offsets topic is created through the
/// controller with `offsets.topic.replication.factor`, and refused until
/// enough brokers are registered.
#[test]
fn a_cluster_creates_the_offsets_topic_through_the_controller() {
    let cluster = |rf: i16| BrokerConfig {
        node_id: 0,
        advertised: "node-0:9092".into(),
        cluster_id: "c1".into(),
        process_roles: vec![
            crate::config::ProcessRole::Broker,
            crate::config::ProcessRole::Controller,
        ],
        controller_quorum_voters: vec![(0, "node-0:9092".into())],
        broker_heartbeat_interval_ms: 200,
        offsets_topic_replication_factor: rf,
        ..config()
    };
    // Replication factor 3 on one broker: unavailable, with the reason.
    let mut h = Harness::new(cluster(3));
    h.connect(1);
    for _ in 0..60 {
        h.advance_millis(50);
    }
    let r = find(&mut h, 1, "g", 3);
    assert_eq!(r.error_code, ResponseError::CoordinatorNotAvailable.code());
    assert!(r
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("offsets.topic.replication.factor")));

    let mut h = Harness::new(cluster(1));
    h.connect(1);
    let mut ready = None;
    for _ in 0..200 {
        let r = find(&mut h, 1, "g", 3);
        if r.error_code == 0 {
            ready = Some(r);
            break;
        }
        h.advance_millis(50);
    }
    let ready = ready.expect("a coordinator within 10 s");
    assert_eq!(ready.node_id.0, 0);
    assert_eq!(ready.host.as_str(), "node-0");
    let (member, generation) = {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name("t"))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        h.send(1, ApiKey::CreateTopics, 7, &request);
        let mut created = false;
        for _ in 0..100 {
            if h.take_frame(1).is_some() {
                created = true;
                break;
            }
            h.advance_millis(10);
        }
        assert!(created);
        for _ in 0..20 {
            h.advance_millis(50);
        }
        join_and_sync(&mut h, 1, "g")
    };
    assert_eq!(commit(&mut h, 1, "g", &member, generation, "t", 0, 7), 0);
    assert_eq!(fetch_offset(&mut h, 1, "g", "t", 0), 7);
}
