//! A node as a one-voter KRaft cluster, stepped by the protocol test
//! harness (whose loopback network lets the broker reach its own
//! controller): election, registration, the controller's topic handling,
//! serving by leadership, recovery, and refusals of bad quorum input.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::tests::{batch, fetch, produce, topic_name, values, Harness};
use crate::config::{BrokerConfig, ProcessRole};

fn cluster_config(cluster_id: &str) -> BrokerConfig {
    BrokerConfig {
        node_id: 0,
        advertised: "node-0:9092".into(),
        cluster_id: cluster_id.into(),
        process_roles: vec![ProcessRole::Broker, ProcessRole::Controller],
        controller_quorum_voters: vec![(0, "node-0:9092".into())],
        broker_heartbeat_interval_ms: 200,
        ..BrokerConfig::default()
    }
}

fn metadata(h: &mut Harness, conn: u64, topics: Option<&[&str]>) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(n)))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    h.call(conn, ApiKey::Metadata, 12, &request)
}

/// Step time until the broker is registered and unfenced (it shows up in
/// Metadata), within 10 simulated seconds.
fn wait_until_serving(h: &mut Harness, conn: u64) -> u64 {
    for step in 0..200 {
        let m = metadata(h, conn, Some(&[]));
        // Registered, and acting for every partition it holds (a restarted
        // broker takes its replica roles once the controller unfenced it).
        let acting = h
            .node
            .replica_views()
            .iter()
            .all(|v| v.role != crate::node::view::ReplicaRoleView::None);
        if !m.brokers.is_empty() && acting {
            return step * 50;
        }
        h.advance_millis(50);
    }
    panic!(
        "the one-node cluster never served: quorum {:?}",
        h.node.quorum_view()
    );
}

fn create(
    h: &mut Harness,
    conn: u64,
    name: &str,
    partitions: i32,
    rf: i16,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    let correlation = h.send(conn, ApiKey::CreateTopics, 7, &request);
    // The answer comes once the records are committed (a sync away).
    for _ in 0..100 {
        if let Some(frame) = h.take_frame(conn) {
            let (got, response) = super::tests::decode_response(frame, 7);
            assert_eq!(got, correlation);
            return response;
        }
        h.advance_millis(10);
    }
    panic!("no CreateTopics answer");
}

#[test]
fn one_node_cluster_elects_itself_registers_creates_and_serves() {
    let mut h = Harness::new(cluster_config("c1"));
    h.connect(1);
    let took = wait_until_serving(&mut h, 1);
    let view = h.node.quorum_view().expect("a quorum member");
    assert_eq!(view.leader, Some(0));
    assert!(took <= 5_000, "took {took} ms to serve");

    let created = create(&mut h, 1, "orders", 2, 1);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    assert!(!created.topics[0].topic_id.is_nil());

    // The image reaches Metadata; this node leads both partitions.
    let m = metadata(&mut h, 1, Some(&["orders"]));
    let t = &m.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.partitions.len(), 2);
    for p in &t.partitions {
        assert_eq!(p.leader_id.0, 0);
        assert_eq!(p.replica_nodes, vec![BrokerId(0)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(0)]);
    }
    assert_eq!(m.controller_id.0, 0);
    assert_eq!(m.cluster_id.as_deref(), Some("c1"));

    let first = produce(&mut h, 1, "orders", 1, batch(&["a", "b"]));
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let data = fetch(&mut h, 1, "orders", 1, 0);
    assert_eq!(data.error_code, 0);
    assert_eq!(values(data.records.unwrap()).len(), 2);

    // Same name again: refused by the controller.
    let again = create(&mut h, 1, "orders", 1, 1);
    assert_eq!(
        again.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
    // More replicas than live brokers: refused.
    let wide = create(&mut h, 1, "wide", 1, 3);
    assert_eq!(
        wide.topics[0].error_code,
        ResponseError::InvalidReplicationFactor.code()
    );
    let message = wide.topics[0].error_message.clone().unwrap_or_default();
    assert!(message.contains('3') && message.contains('1'), "{message}");
}

#[test]
fn restart_recovers_the_metadata_log_and_hosted_topics() {
    let mut h = Harness::new(cluster_config("c1"));
    h.connect(1);
    wait_until_serving(&mut h, 1);
    create(&mut h, 1, "kept", 3, 1);
    produce(&mut h, 1, "kept", 2, batch(&["x"]));
    let epoch_before = h.node.quorum_view().unwrap().epoch;
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash(); // only what was synced survives

    let mut h = Harness::on_disk(cluster_config("c1"), disk);
    h.connect(1);
    wait_until_serving(&mut h, 1);
    let view = h.node.quorum_view().unwrap();
    assert!(
        view.epoch > epoch_before,
        "a new epoch after restart: {view:?}"
    );
    let m = metadata(&mut h, 1, Some(&["kept"]));
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].partitions.len(), 3);
    let data = fetch(&mut h, 1, "kept", 2, 0);
    assert_eq!(values(data.records.unwrap()), vec![(0, "x".to_string())]);
}

/// Broker 0 as the image has it: (incarnation, epoch, log dirs, fenced).
fn registration(h: &Harness) -> Option<(uuid::Uuid, i64, Vec<uuid::Uuid>, bool)> {
    let b = h.node.cluster.as_ref()?.image.broker(0)?;
    Some((b.incarnation_id, b.epoch, b.log_dirs.clone(), b.fenced))
}

#[test]
fn a_restart_on_the_same_storage_serves_without_waiting_out_the_old_session() {
    // Found by the simulator (cluster-controller-kill): a killed combined
    // broker+controller came back as a new incarnation while the new
    // controller held its old, unfenced registration in session; refused
    // as a duplicate, it could not serve until that session ran out (and
    // never, with the controller killed again and again). Its directory id
    // shows the controller it is the same broker.
    let config = cluster_config("c1");
    let mut h = Harness::new(config.clone());
    h.connect(1);
    wait_until_serving(&mut h, 1);
    create(&mut h, 1, "t", 1, 1);
    let dir = h.node.cluster.as_ref().unwrap().store.directory_id();
    let dir = dir.expect("a directory id once recovered");
    let (_, old_epoch, dirs, fenced) = registration(&h).unwrap();
    assert_eq!((dirs, fenced), (vec![dir], false));
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();

    let mut h = Harness::on_disk(config, disk);
    // The harness seeds every node alike: give this life an incarnation of
    // its own, as a new process would have.
    let incarnation = uuid::Uuid::from_u128(0x5e_c0dd);
    h.node.cluster.as_mut().unwrap().lifecycle.incarnation = incarnation;
    h.connect(1);
    let start = h.now.mono_millis();
    let session = h.node.config().broker_session_timeout_ms;
    loop {
        let life = &h.node.cluster.as_ref().unwrap().lifecycle;
        let (inc, epoch, dirs, fenced) = registration(&h).unwrap();
        if inc == incarnation && !fenced && life.unfenced_once {
            assert!(epoch > old_epoch);
            assert_eq!(dirs, vec![dir]);
            break;
        }
        let waited = h.now.mono_millis() - start;
        assert!(
            waited < session / 3,
            "not registered again after {waited} ms (session {session} ms)"
        );
        h.advance_millis(50);
    }
    assert_eq!(
        h.node.cluster.as_ref().unwrap().store.directory_id(),
        Some(dir)
    );
    let r = produce(&mut h, 1, "t", 0, batch(&["after"]));
    assert_eq!(r.error_code, 0, "{r:?}");
}

#[test]
fn a_data_dir_of_another_cluster_is_refused() {
    let mut h = Harness::new(cluster_config("first"));
    h.connect(1);
    wait_until_serving(&mut h, 1);
    let disk = std::mem::take(&mut h.disk);
    let mut node = super::Node::new(cluster_config("second"), 9);
    let mut disk = disk;
    let mut queue = std::collections::VecDeque::from([crate::seam::Input::Start]);
    let mut stopped = false;
    while let Some(input) = queue.pop_front() {
        let mut out = Vec::new();
        node.step(h.now, input, &mut out);
        for o in out {
            match o {
                crate::seam::Output::Disk { req, op } => {
                    use crate::seam::DiskExecutor;
                    queue.push_back(crate::seam::Input::DiskDone {
                        req,
                        result: disk.execute(&op),
                    });
                }
                crate::seam::Output::Stopped => stopped = true,
                _ => {}
            }
        }
    }
    assert!(stopped, "a node must not start on another cluster's data");
    assert_eq!(node.phase(), super::Phase::Stopped);
}

#[test]
fn quorum_requests_with_bad_identity_are_refused_and_change_nothing() {
    let mut h = Harness::new(cluster_config("c1"));
    h.connect(1);
    wait_until_serving(&mut h, 1);
    let before = h.node.quorum_view().unwrap();
    let vote = |cluster: &str, candidate: i32, epoch: i32| {
        VoteRequest::default()
            .with_cluster_id(Some(StrBytes::from_string(cluster.into())))
            .with_topics(vec![vote_request::TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![vote_request::PartitionData::default()
                    .with_replica_epoch(epoch)
                    .with_replica_id(BrokerId(candidate))
                    .with_last_offset_epoch(before.epoch)
                    .with_last_offset(1_000)])])
    };
    // Another cluster: refused as a whole.
    let r: VoteResponse = h.call(1, ApiKey::Vote, 2, &vote("other", 0, before.epoch + 1));
    assert_eq!(r.error_code, ResponseError::InconsistentClusterId.code());
    // A voter this quorum does not have.
    let r: VoteResponse = h.call(1, ApiKey::Vote, 2, &vote("c1", 7, before.epoch + 1));
    let p = &r.topics[0].partitions[0];
    assert!(!p.vote_granted);
    assert_eq!(p.error_code, ResponseError::InconsistentVoterSet.code());
    // A quorum Fetch from another cluster.
    let fetch = FetchRequest::default()
        .with_cluster_id(Some(StrBytes::from_string("other".into())))
        .with_replica_id(BrokerId(0))
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name("__cluster_metadata"))
            .with_partitions(vec![fetch_request::FetchPartition::default()])]);
    let r: FetchResponse = h.call(1, ApiKey::Fetch, 12, &fetch);
    assert_eq!(r.error_code, ResponseError::InconsistentClusterId.code());
    let after = h.node.quorum_view().unwrap();
    assert_eq!(
        (after.epoch, after.leader, after.voted_for),
        (before.epoch, before.leader, before.voted_for)
    );
}

#[test]
fn describe_quorum_and_cluster_answer_from_the_leader() {
    let mut h = Harness::new(cluster_config("c1"));
    h.connect(1);
    wait_until_serving(&mut h, 1);
    let q: DescribeQuorumResponse = h.call(
        1,
        ApiKey::DescribeQuorum,
        1,
        &DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
        ]),
    );
    assert_eq!(q.error_code, 0);
    let p = &q.topics[0].partitions[0];
    assert_eq!(p.leader_id.0, 0);
    assert!(p.high_watermark > 0);
    assert_eq!(p.current_voters.len(), 1);
    // Wall-clock Unix milliseconds, as Kafka reports them.
    let fetched = p.current_voters[0].last_fetch_timestamp;
    assert!(
        fetched > 1_600_000_000_000 && fetched <= h.now.wall_millis,
        "{fetched}"
    );
    let c: DescribeClusterResponse = h.call(
        1,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(c.cluster_id.as_str(), "c1");
    assert_eq!(c.brokers.len(), 1);
    assert!(!c.brokers[0].is_fenced);
}

mod never_panics {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// Well-framed requests to the quorum and controller APIs (and a
        /// Fetch, which may be a quorum fetch) with random bodies: no panic,
        /// and the one-node quorum still leads and serves afterwards.
        #[test]
        fn random_quorum_and_controller_bodies(
            key in prop::sample::select(vec![1i16, 37, 52, 53, 54, 55, 59, 60, 62, 63]),
            version in 0i16..5,
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut h = Harness::new(cluster_config("c1"));
            h.connect(1);
            wait_until_serving(&mut h, 1);
            let api = ApiKey::try_from(key).unwrap();
            let mut frame = BytesMut::new();
            frame.put_i32(0);
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(7);
            frame.put_i16(-1);
            let valid = api.valid_versions();
            if api.request_header_version(version.clamp(valid.min, valid.max)) >= 2 {
                frame.put_u8(0);
            }
            frame.put_slice(&body);
            let len = (frame.len() - 4) as i32;
            frame[0..4].copy_from_slice(&len.to_be_bytes());
            h.send_raw(1, &frame);
            h.advance_millis(3_000);
            let view = h.node.quorum_view().unwrap();
            prop_assert_eq!(view.leader, Some(0), "{:?}", view);
            h.connect(2);
            prop_assert!(!metadata(&mut h, 2, Some(&[])).brokers.is_empty());
        }
    }
}

/// InitProducerId in a cluster: the broker asks its controller for a block
/// (AllocateProducerIds, a committed record); a restarted broker gets a new
/// block, never the old ids.
#[test]
fn producer_ids_come_from_controller_blocks_and_are_not_reused_after_a_restart() {
    fn init(h: &mut Harness, conn: u64) -> i64 {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let correlation = h.send(conn, ApiKey::InitProducerId, 4, &request);
        for _ in 0..200 {
            if let Some(frame) = h.take_frame(conn) {
                let (got, response): (i32, InitProducerIdResponse) =
                    super::tests::decode_response(frame, 4);
                assert_eq!(got, correlation);
                assert_eq!(response.error_code, 0, "{response:?}");
                return response.producer_id.0;
            }
            h.advance_millis(10);
        }
        panic!("no InitProducerId answer");
    }
    let mut h = Harness::new(cluster_config("c1"));
    h.connect(1);
    wait_until_serving(&mut h, 1);
    assert_eq!(init(&mut h, 1), 0);
    assert_eq!(init(&mut h, 1), 1);
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(cluster_config("c1"), disk);
    h.connect(1);
    wait_until_serving(&mut h, 1);
    assert_eq!(init(&mut h, 1), 1000, "the next block");
}
