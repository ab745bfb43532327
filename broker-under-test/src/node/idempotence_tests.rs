//! Idempotent produce over the wire: a producer id from InitProducerId,
//! retries answered with their original offsets, Kafka's error codes for
//! bad sequences and epochs, nothing appended on any of them, and the state
//! kept across a crash.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::tests::{create_topics, fetch, produce, values, Harness};
use crate::config::BrokerConfig;
use crate::seam::Input;

/// An idempotent batch: producer `pid`, `epoch`, base sequence `seq`, one
/// record per value.
fn idem(pid: i64, epoch: i16, seq: i32, vals: &[&str]) -> Bytes {
    let values: Vec<&[u8]> = vals.iter().map(|v| v.as_bytes()).collect();
    crate::log::batch::tests::make_producer_batch(pid, epoch, seq, &values)
}

fn init_producer_id(h: &mut Harness, conn: u64) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = h.call(conn, ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    (response.producer_id.0, response.producer_epoch)
}

fn setup() -> (Harness, i64) {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    assert_eq!(create_topics(&mut h, 1, "t", 1).topics[0].error_code, 0);
    let (pid, epoch) = init_producer_id(&mut h, 1);
    assert_eq!(epoch, 0);
    (h, pid)
}

fn log_end(h: &mut Harness) -> i64 {
    fetch(h, 1, "t", 0, 0).high_watermark
}

#[test]
fn a_retry_is_answered_with_its_original_offset_and_stored_once() {
    let (mut h, pid) = setup();
    let first = produce(&mut h, 1, "t", 0, idem(pid, 0, 0, &["a", "b", "c"]));
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let second = produce(&mut h, 1, "t", 0, idem(pid, 0, 3, &["d"]));
    assert_eq!((second.error_code, second.base_offset), (0, 3));
    // Both retried (the client never saw the answers).
    for (seq, vals, offset) in [(0, &["a", "b", "c"][..], 0), (3, &["d"][..], 3)] {
        let retry = produce(&mut h, 1, "t", 0, idem(pid, 0, seq, vals));
        assert_eq!((retry.error_code, retry.base_offset), (0, offset));
    }
    let data = fetch(&mut h, 1, "t", 0, 0);
    let got: Vec<String> = values(data.records.unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
}

#[test]
fn bad_sequences_epochs_and_fields_get_kafka_codes_and_append_nothing() {
    let (mut h, pid) = setup();
    produce(&mut h, 1, "t", 0, idem(pid, 0, 0, &["a"]));
    let (other, _) = init_producer_id(&mut h, 1);
    assert_ne!(other, pid, "every InitProducerId gets a fresh id");
    let cases: Vec<(&str, Bytes, ResponseError)> = vec![
        (
            "a gap",
            idem(pid, 0, 5, &["x"]),
            ResponseError::OutOfOrderSequenceNumber,
        ),
        (
            "a new epoch not starting at 0",
            idem(pid, 3, 1, &["x"]),
            ResponseError::OutOfOrderSequenceNumber,
        ),
        (
            "an issued id unknown here, mid-sequence",
            idem(other, 0, 7, &["x"]),
            ResponseError::UnknownProducerId,
        ),
        (
            "an id never issued",
            idem(1 << 40, 0, 0, &["x"]),
            ResponseError::UnknownProducerId,
        ),
        (
            "a producer id without a sequence",
            idem(pid, 0, -1, &["x"]),
            ResponseError::InvalidRecord,
        ),
    ];
    for (what, records, expected) in cases {
        let answer = produce(&mut h, 1, "t", 0, records);
        assert_eq!(answer.error_code, expected.code(), "{what}: {answer:?}");
        assert_eq!(answer.base_offset, -1, "{what}");
        assert!(answer.error_message.is_some(), "{what}: says why");
    }
    // A bumped epoch starts at 0 and fences the old one.
    let bumped = produce(&mut h, 1, "t", 0, idem(pid, 1, 0, &["b"]));
    assert_eq!((bumped.error_code, bumped.base_offset), (0, 1));
    let fenced = produce(&mut h, 1, "t", 0, idem(pid, 0, 1, &["x"]));
    assert_eq!(
        fenced.error_code,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        log_end(&mut h),
        2,
        "only the two good batches are in the log"
    );
}

#[test]
fn a_retry_after_a_crash_is_still_a_duplicate_and_ids_are_not_reissued() {
    let (mut h, pid) = setup();
    produce(&mut h, 1, "t", 0, idem(pid, 0, 0, &["a", "b"]));
    produce(&mut h, 1, "t", 0, idem(pid, 0, 2, &["c"]));
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(BrokerConfig::default(), disk);
    h.connect(1);
    let retry = produce(&mut h, 1, "t", 0, idem(pid, 0, 2, &["c"]));
    assert_eq!((retry.error_code, retry.base_offset), (0, 2));
    let next = produce(&mut h, 1, "t", 0, idem(pid, 0, 3, &["d"]));
    assert_eq!((next.error_code, next.base_offset), (0, 3));
    let (fresh, _) = init_producer_id(&mut h, 1);
    assert!(fresh > pid, "a restarted node never issues an id again");
    h.step(Input::Shutdown);
}

/// The block file lost: ids start above every producer id in the logs, so
/// a new producer is never taken for an old one. A garbage file: no ids.
#[test]
fn ids_start_above_the_logs_without_the_block_file_and_never_from_a_garbage_one() {
    use crate::seam::{DiskExecutor, DiskOp};
    let (mut h, pid) = setup();
    let (second, _) = init_producer_id(&mut h, 1);
    produce(&mut h, 1, "t", 0, idem(pid, 0, 0, &["a"]));
    produce(&mut h, 1, "t", 0, idem(second, 0, 0, &["b"]));
    h.step(Input::Shutdown);
    let mut disk = std::mem::take(&mut h.disk);
    disk.execute(&DiskOp::Remove {
        path: super::producer_ids::FILE.into(),
    })
    .unwrap();
    let mut h = Harness::on_disk(BrokerConfig::default(), disk);
    h.connect(1);
    let (fresh, _) = init_producer_id(&mut h, 1);
    assert!(fresh > second, "{fresh} after {second}");

    h.step(Input::Shutdown);
    let mut disk = std::mem::take(&mut h.disk);
    disk.execute(&DiskOp::Write {
        path: super::producer_ids::FILE.into(),
        offset: 0,
        data: Bytes::from_static(b"garbage"),
    })
    .unwrap();
    let mut h = Harness::on_disk(BrokerConfig::default(), disk);
    h.connect(1);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = h.call(1, ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, ResponseError::KafkaStorageError.code());
}
