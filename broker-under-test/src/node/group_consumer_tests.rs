//! KIP-848 through a whole node: ConsumerGroupHeartbeat joins two members
//! to a topic (in topic ids), the second gets its partitions once the first
//! revoked them, a member-epoch commit, ConsumerGroupDescribe, ListGroups,
//! and the group surviving a restart.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::tests::{create_topics, topic_name, Harness};
use crate::config::BrokerConfig;
use crate::seam::{ConnId, Input};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.group.offsets_partitions = 2;
    config
}

fn ready(h: &mut Harness, conn: ConnId) {
    for _ in 0..50 {
        let mut r = FindCoordinatorRequest::default();
        r.key = sb("g");
        let f: FindCoordinatorResponse = h.call(conn, ApiKey::FindCoordinator, 3, &r);
        if f.error_code == 0 {
            return;
        }
        h.advance_millis(10);
    }
    panic!("no coordinator");
}

fn heartbeat(
    h: &mut Harness,
    conn: ConnId,
    member: &str,
    epoch: i32,
    owned: Option<Vec<(Uuid, Vec<i32>)>>,
) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatRequest::default();
    r.group_id = GroupId(sb("g"));
    r.member_id = sb(member);
    r.member_epoch = epoch;
    r.rebalance_timeout_ms = if epoch == 0 { 30_000 } else { -1 };
    if epoch == 0 {
        r.subscribed_topic_names = Some(vec![topic_name("t")]);
        r.topic_partitions = Some(Vec::new());
    } else {
        r.topic_partitions = owned.map(|o| {
            o.into_iter()
                .map(|(id, ps)| {
                    let mut t = consumer_group_heartbeat_request::TopicPartitions::default();
                    t.topic_id = id;
                    t.partitions = ps;
                    t
                })
                .collect()
        });
    }
    let mut out = h.call(conn, ApiKey::ConsumerGroupHeartbeat, 1, &r);
    for _ in 0..20 {
        let resp: &ConsumerGroupHeartbeatResponse = &out;
        if resp.error_code != ResponseError::CoordinatorLoadInProgress.code() {
            break;
        }
        h.advance_millis(10);
        out = h.call(conn, ApiKey::ConsumerGroupHeartbeat, 1, &r);
    }
    out
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Vec<(Uuid, Vec<i32>)> {
    let a = r.assignment.as_ref().expect("an assignment");
    a.topic_partitions
        .iter()
        .map(|t| (t.topic_id, t.partitions.clone()))
        .collect()
}

fn count(a: &[(Uuid, Vec<i32>)]) -> usize {
    a.iter().map(|(_, ps)| ps.len()).sum()
}

fn describe(h: &mut Harness) -> consumer_group_describe_response::DescribedGroup {
    let mut r = ConsumerGroupDescribeRequest::default();
    r.group_ids = vec![GroupId(sb("g"))];
    let d: ConsumerGroupDescribeResponse = h.call(1, ApiKey::ConsumerGroupDescribe, 0, &r);
    d.groups.into_iter().next().expect("one group")
}

#[test]
fn two_consumer_protocol_members_share_a_topic_through_the_wire() {
    let mut h = Harness::new(config());
    h.connect(1);
    create_topics(&mut h, 1, "t", 4);
    ready(&mut h, 1);
    let a = heartbeat(&mut h, 1, "member-a", 0, None);
    assert_eq!((a.error_code, a.member_epoch), (0, 1), "{a:?}");
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    let a_owned = assigned(&a);
    assert_eq!(count(&a_owned), 4);
    let b = heartbeat(&mut h, 1, "member-b", 0, None);
    assert_eq!((b.member_epoch, count(&assigned(&b))), (2, 0));
    // a is told to keep two; it revokes the others and says so.
    let a2 = heartbeat(&mut h, 1, "member-a", 1, Some(a_owned));
    let kept = assigned(&a2);
    assert_eq!((a2.member_epoch, count(&kept)), (1, 2));
    let a3 = heartbeat(&mut h, 1, "member-a", 1, Some(kept.clone()));
    assert_eq!(a3.member_epoch, 2);
    let b2 = heartbeat(&mut h, 1, "member-b", 2, Some(Vec::new()));
    assert_eq!(count(&assigned(&b2)), 2);

    // A commit with the member epoch; an older epoch is stale.
    let commit = |h: &mut Harness, epoch: i32| {
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(sb("g"));
        r.generation_id_or_member_epoch = epoch;
        r.member_id = sb("member-a");
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.partition_index = kept[0].1[0];
        p.committed_offset = 7;
        p.committed_leader_epoch = -1;
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = topic_name("t");
        t.partitions = vec![p];
        r.topics = vec![t];
        let resp: OffsetCommitResponse = h.call(1, ApiKey::OffsetCommit, 9, &r);
        resp.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut h, 1), ResponseError::StaleMemberEpoch.code());
    assert_eq!(commit(&mut h, 2), 0);

    let d = describe(&mut h);
    assert_eq!((d.error_code, d.group_state.as_str()), (0, "Stable"));
    assert_eq!((d.group_epoch, d.members.len()), (2, 2));
    assert_eq!(
        d.members[0].assignment.topic_partitions[0]
            .topic_name
            .0
            .as_str(),
        "t"
    );
    let mut r = ListGroupsRequest::default();
    r.types_filter = vec![sb("consumer")];
    let listed: ListGroupsResponse = h.call(1, ApiKey::ListGroups, 5, &r);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_type.as_str(), "consumer");

    // Restart: the group and its epochs come back from __consumer_offsets.
    h.step(Input::Shutdown);
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(config(), disk);
    h.connect(1);
    ready(&mut h, 1);
    let again = heartbeat(&mut h, 1, "member-b", 2, None);
    assert_eq!((again.error_code, again.member_epoch), (0, 2), "{again:?}");
    let d = describe(&mut h);
    assert_eq!(
        (d.group_epoch, d.assignment_epoch, d.members.len()),
        (2, 2, 2)
    );
}
