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
