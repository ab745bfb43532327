//! Microbenchmarks of the wire codec: a Produce request carrying one 16 KB
//! record batch (encode, then frame header parse + body decode as the broker
//! does), a Fetch response carrying 1 MB of records (encode and decode), and
//! request header parsing alone.

use broker::protocol::{decode_body, encode_response, parse_request};
use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;

/// One uncompressed v2 batch of `count` records with `value_len`-byte values.
fn make_batch(count: usize, value_len: usize, base: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_len])),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf.freeze()
}

fn produce_request(batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(3)
                .with_records(Some(batch))])])
}

/// A request frame body (no length prefix), as the broker's frame decoder
/// hands it to `parse_request`.
fn request_frame<T: Encodable + HeaderVersion>(api_key: ApiKey, version: i16, body: &T) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    let mut buf = BytesMut::with_capacity(20 * 1024);
    header
        .encode(&mut buf, T::header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn fetch_response(records: Bytes) -> FetchResponse {
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(vec![PartitionData::default()
            .with_partition_index(3)
            .with_high_watermark(1 << 20)
            .with_last_stable_offset(1 << 20)
            .with_log_start_offset(0)
            .with_records(Some(records))])])
}

fn bench(c: &mut Criterion) {
    // 16 records of 1 KiB: one ~16 KiB batch.
    let batch = make_batch(16, 1024, 0);
    let request = produce_request(batch.clone());
    let frame = request_frame(ApiKey::Produce, PRODUCE_VERSION, &request);

    let mut group = c.benchmark_group("produce_request_16KiB");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| request_frame(ApiKey::Produce, PRODUCE_VERSION, black_box(&request)))
    });
    group.bench_function("parse_header_and_decode", |b| {
        b.iter(|| {
            let raw = parse_request(black_box(frame.clone())).expect("parse");
            let body: ProduceRequest = decode_body(&raw).expect("decode");
            black_box(body)
        })
    });
    group.finish();

    // 1 MiB of records: 64 batches of 16 x 1 KiB, back to back as in a log.
    let mut records = BytesMut::with_capacity(1 << 20);
    while records.len() < (1 << 20) {
        let base = records.len() as i64;
        records.put(make_batch(16, 1024, base));
    }
    let records = records.freeze();
    let response = fetch_response(records.clone());
    let encoded = encode_response(7, FETCH_VERSION, &response).expect("encode");
    // The body after the length prefix and the v1 response header.
    let body_only = {
        let mut b = BytesMut::new();
        response.encode(&mut b, FETCH_VERSION).expect("encode");
        b.freeze()
    };
    let mut group = c.benchmark_group("fetch_response_1MiB");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_response(7, FETCH_VERSION, black_box(&response)).expect("encode"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut bytes = black_box(body_only.clone());
            black_box(FetchResponse::decode(&mut bytes, FETCH_VERSION).expect("decode"))
        })
    });
    group.finish();

    // Header parsing alone, on a small Metadata-sized frame and on the produce frame.
    let mut group = c.benchmark_group("parse_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("header_of_16KiB_produce", |b| {
        b.iter(|| parse_request(black_box(frame.clone())).expect("parse"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
