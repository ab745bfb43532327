//! Transactions at a partition leader, over the wire: a transactional batch
//! is taken only for a partition its transaction added (KIP-890), markers
//! from WriteTxnMarkers end transactions, read_committed fetches and
//! ListOffsets stop at the last stable offset and name the aborted
//! transactions, and bad markers change nothing.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::tests::{create_topics, fetch_request, produce, values, Harness};
use crate::config::BrokerConfig;
use crate::log::producers::TRANSACTIONAL_FLAG;

/// A transactional batch: producer `pid`, `epoch`, base sequence `seq`.
fn txn(pid: i64, epoch: i16, seq: i32, vals: &[&str]) -> Bytes {
    let values: Vec<&[u8]> = vals.iter().map(|v| v.as_bytes()).collect();
    let plain = crate::log::batch::tests::make_producer_batch(pid, epoch, seq, &values);
    let mut b = BytesMut::from(&plain[..]);
    let attributes = i16::from_be_bytes([b[21], b[22]]) | TRANSACTIONAL_FLAG;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn init_producer_id(h: &mut Harness) -> i64 {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = h.call(1, ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    response.producer_id.0
}

fn setup() -> (Harness, i64, i64) {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    assert_eq!(create_topics(&mut h, 1, "t", 2).topics[0].error_code, 0);
    let a = init_producer_id(&mut h);
    let b = init_producer_id(&mut h);
    (h, a, b)
}

/// WriteTxnMarkers for one producer on partitions of "t": the error per partition.
fn markers(h: &mut Harness, pid: i64, epoch: i16, commit: bool, partitions: &[i32]) -> Vec<i16> {
    markers_on(h, pid, epoch, commit, 0, "t", partitions)
}

fn markers_on(
    h: &mut Harness,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let request = WriteTxnMarkersRequest::default().with_markers(vec![
        write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(TopicName(topic.to_string().into()))
                    .with_partition_indexes(partitions.to_vec()),
            ]),
    ]);
    let response: WriteTxnMarkersResponse = h.call(1, ApiKey::WriteTxnMarkers, 1, &request);
    assert_eq!(response.markers.len(), 1);
    assert_eq!(response.markers[0].producer_id.0, pid);
    response.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_isolated(
    h: &mut Harness,
    partition: i32,
    offset: i64,
    isolation: i8,
) -> fetch_response::PartitionData {
    let request = fetch_request("t", partition, offset, 0, 1).with_isolation_level(isolation);
    let response: FetchResponse = h.call(1, ApiKey::Fetch, 12, &request);
    response.responses[0].partitions[0].clone()
}

fn latest(h: &mut Harness, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName("t".to_string().into()))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let response: ListOffsetsResponse = h.call(1, ApiKey::ListOffsets, 7, &request);
    response.topics[0].partitions[0].offset
}

#[test]
fn a_transactional_batch_needs_its_partition_added_to_the_transaction() {
    let (mut h, a, _) = setup();
    let refused = produce(&mut h, 1, "t", 0, txn(a, 0, 0, &["x"]));
    assert_eq!(refused.error_code, ResponseError::InvalidTxnState.code());
    assert!(refused.error_message.is_some());
    h.node.txn_verification.add(a, 0, "t", 0);
    let wrong_partition = produce(&mut h, 1, "t", 1, txn(a, 0, 0, &["x"]));
    assert_eq!(
        wrong_partition.error_code,
        ResponseError::InvalidTxnState.code()
    );
    assert_eq!(
        produce(&mut h, 1, "t", 0, txn(a, 0, 0, &["x"])).error_code,
        0
    );
    // Once open here, the transaction's next batches need no verification.
    assert_eq!(markers(&mut h, a, 0, true, &[0]), vec![0]);
    // The marker ended it: the next transaction must be added again.
    let late = produce(&mut h, 1, "t", 0, txn(a, 0, 1, &["zombie"]));
    assert_eq!(late.error_code, ResponseError::InvalidTxnState.code());
}

#[test]
fn read_committed_sees_committed_data_never_aborted_and_waits_for_open_ones() {
    let (mut h, a, b) = setup();
    h.node.txn_verification.add(a, 0, "t", 0);
    h.node.txn_verification.add(b, 0, "t", 0);
    produce(&mut h, 1, "t", 0, txn(a, 0, 0, &["a1", "a2"])); // 0-1
    produce(&mut h, 1, "t", 0, txn(b, 0, 0, &["b1"])); // 2
    produce(&mut h, 1, "t", 0, txn(a, 0, 2, &["a3"])); // 3
    let open = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(open.last_stable_offset, 0);
    assert_eq!(open.high_watermark, 4);
    assert!(open.records.unwrap_or_default().is_empty());
    assert_eq!((latest(&mut h, 1), latest(&mut h, 0)), (0, 4));

    assert_eq!(markers(&mut h, a, 0, false, &[0]), vec![0]); // abort at 4
    assert_eq!(markers(&mut h, b, 0, true, &[0]), vec![0]); // commit at 5
    let done = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(done.last_stable_offset, 6);
    let aborted = done.aborted_transactions.clone().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (a, 0));
    // The consumer drops a's records by the aborted list; b's remain.
    // (The two markers, at 4 and 5, decode as records of control values.)
    let got: Vec<String> = values(done.records.unwrap())
        .into_iter()
        .filter(|(offset, _)| *offset < 4)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, ["a1", "a2", "b1", "a3"]);
    // read_uncommitted: no aborted list, everything below the high watermark.
    let plain = fetch_isolated(&mut h, 0, 0, 0);
    assert_eq!(plain.aborted_transactions, Some(vec![]));
    assert_eq!(latest(&mut h, 1), 6);
}

#[test]
fn bad_markers_get_kafka_codes_and_change_nothing() {
    let (mut h, a, _) = setup();
    h.node.txn_verification.add(a, 3, "t", 0);
    produce(&mut h, 1, "t", 0, txn(a, 3, 0, &["x"]));
    let end = |h: &mut Harness| fetch_isolated(h, 0, 0, 0).high_watermark;
    assert_eq!(end(&mut h), 1);
    assert_eq!(
        markers(&mut h, a, 2, true, &[0]),
        vec![ResponseError::InvalidProducerEpoch.code()]
    );
    assert_eq!(
        markers_on(&mut h, a, 3, true, 0, "nope", &[0]),
        vec![ResponseError::UnknownTopicOrPartition.code()]
    );
    assert_eq!(
        markers_on(&mut h, a, 3, true, 0, "__consumer_offsets", &[0]),
        vec![ResponseError::InvalidTopicException.code()]
    );
    assert_eq!(
        markers(&mut h, a, 3, true, &[7]),
        vec![ResponseError::UnknownTopicOrPartition.code()]
    );
    assert_eq!(end(&mut h), 1, "nothing written");
    // A marker for a producer with nothing open here: success, nothing written.
    assert_eq!(markers(&mut h, 12345, 0, false, &[0, 1]), vec![0, 0]);
    assert_eq!(end(&mut h), 1);
    // The real one, from coordinator epoch 5; then one from an older coordinator.
    assert_eq!(markers_on(&mut h, a, 3, false, 5, "t", &[0]), vec![0]);
    h.node.txn_verification.add(a, 3, "t", 0);
    produce(&mut h, 1, "t", 0, txn(a, 3, 1, &["y"]));
    assert_eq!(
        markers_on(&mut h, a, 3, true, 4, "t", &[0]),
        vec![ResponseError::TransactionCoordinatorFenced.code()]
    );
    assert_eq!(end(&mut h), 3);
    // Control batches from a client are refused.
    let mut marker = BytesMut::from(
        &crate::log::batch::encode_marker(
            a,
            3,
            crate::log::producers::Marker {
                commit: true,
                coordinator_epoch: 5,
            },
            0,
        )[..],
    );
    marker[0..8].copy_from_slice(&0i64.to_be_bytes());
    let refused = produce(&mut h, 1, "t", 0, marker.freeze());
    assert_eq!(refused.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(end(&mut h), 3);
}

/// A read_committed long poll whose data lies below the last stable offset
/// is answered at once, even when the sparse index cannot tell the bytes
/// apart (the LSO inside one index interval of the fetch offset).
#[test]
fn a_read_committed_long_poll_with_data_below_the_lso_does_not_wait() {
    let (mut h, a, _) = setup();
    h.node.txn_verification.add(a, 0, "t", 0);
    produce(&mut h, 1, "t", 0, txn(a, 0, 0, &["x"])); // 0: open
    produce(&mut h, 1, "t", 0, super::tests::batch(&["plain"])); // 1
    assert_eq!(markers(&mut h, a, 0, true, &[0]), vec![0]); // 2
    h.node.txn_verification.add(a, 0, "t", 0);
    produce(&mut h, 1, "t", 0, txn(a, 0, 1, &["y"])); // 3: open again
    let request = fetch_request("t", 0, 0, 10_000, 1).with_isolation_level(1);
    h.send(1, ApiKey::Fetch, 12, &request);
    let (_, response): (i32, FetchResponse) = h.recv(1, 12);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.last_stable_offset, 3);
    let got: Vec<i64> = values(p.records.clone().unwrap())
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(got, [0, 1, 2]);
}

// ---- The transaction coordinator, on one node ----

fn coordinator_config() -> BrokerConfig {
    BrokerConfig {
        txn_state_partitions: 4,
        ..BrokerConfig::default()
    }
}

fn sbs(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

/// FindCoordinator for a transactional id until it is served (the first
/// creates `__transaction_state`).
fn find_txn_coordinator(h: &mut Harness, txn_id: &str) -> FindCoordinatorResponse {
    for _ in 0..20 {
        let r: FindCoordinatorResponse = h.call(
            1,
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(sbs(txn_id))
                .with_key_type(1),
        );
        if r.error_code == 0 {
            return r;
        }
        assert_eq!(
            r.error_code,
            ResponseError::CoordinatorNotAvailable.code(),
            "{r:?}"
        );
        h.advance_millis(10);
    }
    panic!("no transaction coordinator for {txn_id}");
}

fn init_txn(h: &mut Harness, txn_id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(sbs(txn_id))))
        .with_transaction_timeout_ms(timeout_ms);
    h.call(1, ApiKey::InitProducerId, 4, &request)
}

/// InitProducerId, retried while the coordinator says CONCURRENT_TRANSACTIONS.
fn init_txn_ready(h: &mut Harness, txn_id: &str, timeout_ms: i32) -> (i64, i16) {
    for _ in 0..50 {
        let r = init_txn(h, txn_id, timeout_ms);
        if r.error_code == 0 {
            return (r.producer_id.0, r.producer_epoch);
        }
        assert_eq!(
            r.error_code,
            ResponseError::ConcurrentTransactions.code(),
            "{r:?}"
        );
        h.advance_millis(20);
    }
    panic!("InitProducerId never succeeded");
}

fn add_partitions(
    h: &mut Harness,
    txn_id: &str,
    pid: i64,
    epoch: i16,
    partitions: &[i32],
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(sbs(txn_id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(sbs("t")))
                .with_partitions(partitions.to_vec()),
        ]);
    let r: AddPartitionsToTxnResponse = h.call(1, ApiKey::AddPartitionsToTxn, 3, &request);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn end(h: &mut Harness, txn_id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(sbs(txn_id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = h.call(1, ApiKey::EndTxn, 3, &request);
    r.error_code
}

fn describe(h: &mut Harness, txn_id: &str) -> describe_transactions_response::TransactionState {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(sbs(txn_id))]);
    let r: DescribeTransactionsResponse = h.call(1, ApiKey::DescribeTransactions, 0, &request);
    r.transaction_states[0].clone()
}

fn coordinator_setup() -> Harness {
    let mut h = Harness::new(coordinator_config());
    h.connect(1);
    assert_eq!(create_topics(&mut h, 1, "t", 2).topics[0].error_code, 0);
    let found = find_txn_coordinator(&mut h, "tx");
    assert_eq!(found.node_id.0, h.node.config().node_id);
    h
}

#[test]
fn a_transaction_commits_and_aborts_through_the_coordinator() {
    let mut h = coordinator_setup();
    let (pid, epoch) = init_txn_ready(&mut h, "tx", 60_000);
    assert_eq!(epoch, 0);
    // Without AddPartitionsToTxn the partition refuses the batch.
    let early = produce(&mut h, 1, "t", 0, txn(pid, epoch, 0, &["early"]));
    assert_eq!(early.error_code, ResponseError::InvalidTxnState.code());
    assert_eq!(
        add_partitions(&mut h, "tx", pid, epoch, &[0, 1]),
        vec![0, 0]
    );
    assert_eq!(describe(&mut h, "tx").transaction_state.as_str(), "Ongoing");
    assert_eq!(
        produce(&mut h, 1, "t", 0, txn(pid, epoch, 0, &["c1", "c2"])).error_code,
        0
    );
    assert_eq!(
        produce(&mut h, 1, "t", 1, txn(pid, epoch, 0, &["c3"])).error_code,
        0
    );
    assert_eq!(fetch_isolated(&mut h, 0, 0, 1).last_stable_offset, 0);
    assert_eq!(end(&mut h, "tx", pid, epoch, true), 0);
    h.advance_millis(10);
    let state = describe(&mut h, "tx");
    assert_eq!(state.transaction_state.as_str(), "CompleteCommit");
    for partition in [0, 1] {
        let p = fetch_isolated(&mut h, partition, 0, 1);
        assert_eq!(
            p.last_stable_offset, p.high_watermark,
            "partition {partition}"
        );
        assert_eq!(p.aborted_transactions, Some(vec![]));
    }
    // A retried EndTxn is fine; the other outcome is not.
    assert_eq!(end(&mut h, "tx", pid, epoch, true), 0);
    assert_eq!(
        end(&mut h, "tx", pid, epoch, false),
        ResponseError::InvalidTxnState.code()
    );

    // The next transaction aborts: read_committed consumers are told.
    assert_eq!(add_partitions(&mut h, "tx", pid, epoch, &[0]), vec![0]);
    produce(&mut h, 1, "t", 0, txn(pid, epoch, 2, &["a1"])); // offset 3
    assert_eq!(end(&mut h, "tx", pid, epoch, false), 0);
    h.advance_millis(10);
    assert_eq!(
        describe(&mut h, "tx").transaction_state.as_str(),
        "CompleteAbort"
    );
    let p = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(p.last_stable_offset, 5);
    let aborted = p.aborted_transactions.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (pid, 3)
    );
    // ListTransactions names it.
    let listed: ListTransactionsResponse = h.call(
        1,
        ApiKey::ListTransactions,
        0,
        &ListTransactionsRequest::default(),
    );
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(listed.transaction_states[0].producer_id.0, pid);
}

#[test]
fn a_new_producer_fences_the_old_one_and_its_open_transaction_is_aborted() {
    let mut h = coordinator_setup();
    let (pid, old) = init_txn_ready(&mut h, "tx", 60_000);
    add_partitions(&mut h, "tx", pid, old, &[0]);
    produce(&mut h, 1, "t", 0, txn(pid, old, 0, &["zombie"]));
    // The new instance: told to retry while the old transaction is aborted.
    let first = init_txn(&mut h, "tx", 60_000);
    assert_eq!(
        first.error_code,
        ResponseError::ConcurrentTransactions.code()
    );
    let (same, new) = init_txn_ready(&mut h, "tx", 60_000);
    assert_eq!(
        (same, new),
        (pid, old + 2),
        "one bump to abort, one for the new producer"
    );
    let p = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(
        p.last_stable_offset, p.high_watermark,
        "the old transaction ended"
    );
    assert_eq!(p.aborted_transactions.unwrap().len(), 1);
    // The old producer is fenced everywhere.
    assert_eq!(
        end(&mut h, "tx", pid, old, true),
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        add_partitions(&mut h, "tx", pid, old, &[1]),
        vec![ResponseError::ProducerFenced.code()]
    );
    let late = produce(&mut h, 1, "t", 0, txn(pid, old, 1, &["late"]));
    assert_ne!(late.error_code, 0);
    // The wrong producer id for the transactional id.
    assert_eq!(
        end(&mut h, "tx", pid + 1000, new, true),
        ResponseError::InvalidProducerIdMapping.code()
    );
}

#[test]
fn a_stuck_transaction_is_aborted_after_its_timeout() {
    let mut h = coordinator_setup();
    let (pid, epoch) = init_txn_ready(&mut h, "tx", 1_000);
    add_partitions(&mut h, "tx", pid, epoch, &[0]);
    produce(&mut h, 1, "t", 0, txn(pid, epoch, 0, &["stuck"]));
    assert_eq!(fetch_isolated(&mut h, 0, 0, 1).last_stable_offset, 0);
    // The abort check runs every 10 s (Kafka's default).
    h.advance_millis(10_500);
    h.advance_millis(50);
    let p = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(p.last_stable_offset, p.high_watermark);
    assert_eq!(
        describe(&mut h, "tx").transaction_state.as_str(),
        "CompleteAbort"
    );
    assert_eq!(
        end(&mut h, "tx", pid, epoch, true),
        ResponseError::ProducerFenced.code(),
        "the producer was fenced by the abort"
    );
}

/// A crash after EndTxn: the restarted coordinator loads the transaction
/// from `__transaction_state` (finishing its markers if it was still in
/// PrepareCommit) and the producer carries on at the next epoch.
#[test]
fn a_restarted_coordinator_keeps_the_outcome_and_the_epoch() {
    let mut h = coordinator_setup();
    let (pid, epoch) = init_txn_ready(&mut h, "tx", 60_000);
    add_partitions(&mut h, "tx", pid, epoch, &[0]);
    produce(&mut h, 1, "t", 0, txn(pid, epoch, 0, &["x"]));
    assert_eq!(end(&mut h, "tx", pid, epoch, true), 0);
    h.step(crate::seam::Input::Shutdown);
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(coordinator_config(), disk);
    h.connect(1);
    find_txn_coordinator(&mut h, "tx");
    h.advance_millis(50);
    assert_eq!(
        describe(&mut h, "tx").transaction_state.as_str(),
        "CompleteCommit"
    );
    let p = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(p.last_stable_offset, p.high_watermark);
    // The producer carries on after a new InitProducerId.
    let (again, bumped) = init_txn_ready(&mut h, "tx", 60_000);
    assert_eq!((again, bumped), (pid, epoch + 1));
}

/// In a (one-node) KRaft cluster `__transaction_state` is created through
/// the controller with its replication factor, and a transaction commits.
#[test]
fn a_cluster_creates_the_transaction_state_topic_and_commits() {
    let config = BrokerConfig {
        node_id: 0,
        advertised: "node-0:9092".into(),
        cluster_id: "c1".into(),
        process_roles: vec![
            crate::config::ProcessRole::Broker,
            crate::config::ProcessRole::Controller,
        ],
        controller_quorum_voters: vec![(0, "node-0:9092".into())],
        broker_heartbeat_interval_ms: 200,
        txn_state_replication_factor: 1,
        ..coordinator_config()
    };
    let mut h = Harness::new(config);
    h.connect(1);
    for _ in 0..60 {
        h.advance_millis(50);
    }
    let mut created = false;
    for _ in 0..40 {
        let r = create_topics(&mut h, 1, "t", 2);
        if r.topics[0].error_code == 0 {
            created = true;
            break;
        }
        h.advance_millis(50);
    }
    assert!(created, "topic t created");
    let mut found = None;
    for _ in 0..100 {
        let r: FindCoordinatorResponse = h.call(
            1,
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(sbs("tx"))
                .with_key_type(1),
        );
        if r.error_code == 0 {
            found = Some(r);
            break;
        }
        h.advance_millis(50);
    }
    assert_eq!(found.expect("a coordinator").node_id.0, 0);
    let mut ready = None;
    for _ in 0..100 {
        let r = init_txn(&mut h, "tx", 60_000);
        if r.error_code == 0 {
            ready = Some((r.producer_id.0, r.producer_epoch));
            break;
        }
        h.advance_millis(50);
    }
    let (pid, epoch) = ready.expect("InitProducerId answered");
    assert_eq!(add_partitions(&mut h, "tx", pid, epoch, &[0]), vec![0]);
    assert_eq!(
        produce(&mut h, 1, "t", 0, txn(pid, epoch, 0, &["c"])).error_code,
        0
    );
    assert_eq!(end(&mut h, "tx", pid, epoch, true), 0);
    for _ in 0..20 {
        h.advance_millis(50);
    }
    assert_eq!(
        describe(&mut h, "tx").transaction_state.as_str(),
        "CompleteCommit"
    );
    let p = fetch_isolated(&mut h, 0, 0, 1);
    assert_eq!(p.last_stable_offset, p.high_watermark);
    assert_eq!(p.high_watermark, 2, "the record and its marker");
}
