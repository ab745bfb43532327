//! Protocol tests: a node stepped with encoded requests over an in-memory
//! disk, its answers decoded with kafka-protocol.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{Node, Phase};
use crate::config::BrokerConfig;
use crate::memdisk::MemDisk;
use crate::seam::{ConnId, DiskExecutor, Input, Now, Output};

/// A node on an in-memory disk, with a clock the test moves.
pub(crate) struct Harness {
    pub node: Node,
    pub disk: MemDisk,
    pub now: Now,
    /// Bytes sent by the node, per connection.
    pub sent: std::collections::BTreeMap<ConnId, BytesMut>,
    pub closed: Vec<ConnId>,
    pub timers: std::collections::BTreeMap<u64, u64>,
    pub stopped: bool,
    next_correlation: i32,
    /// Loopback connections the node opened to itself: each end -> the other.
    loopback: std::collections::BTreeMap<ConnId, ConnId>,
}

impl Harness {
    pub fn new(config: BrokerConfig) -> Harness {
        Harness::on_disk(config, MemDisk::new())
    }

    pub fn on_disk(config: BrokerConfig, disk: MemDisk) -> Harness {
        let mut h = Harness {
            node: Node::new(config, 7),
            disk,
            now: Now::from_millis(0, 1_700_000_000_000),
            sent: Default::default(),
            closed: Vec::new(),
            timers: Default::default(),
            stopped: false,
            next_correlation: 1,
            loopback: Default::default(),
        };
        h.step(Input::Start);
        assert_eq!(h.node.phase(), Phase::Running);
        h
    }

    /// Step an input and carry out everything that follows (disk at once, in order).
    pub fn step(&mut self, input: Input) {
        let mut queue = std::collections::VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let mut out = Vec::new();
            self.node.step(self.now, input, &mut out);
            for output in out {
                match output {
                    Output::Send { conn, bytes } => match self.loopback.get(&conn) {
                        Some(&peer) => queue.push_back(Input::Received { conn: peer, bytes }),
                        None => self.sent.entry(conn).or_default().extend_from_slice(&bytes),
                    },
                    Output::Close { conn } => {
                        if let Some(peer) = self.loopback.remove(&conn) {
                            self.loopback.remove(&peer);
                            queue.push_back(Input::Closed { conn: peer });
                        }
                        self.closed.push(conn)
                    }
                    Output::Disk { req, op } => {
                        let result = self.disk.execute(&op);
                        queue.push_back(Input::DiskDone { req, result });
                    }
                    Output::SetTimer { id, at_nanos } => {
                        self.timers.insert(id, at_nanos);
                    }
                    Output::CancelTimer { id } => {
                        self.timers.remove(&id);
                    }
                    Output::Stopped => self.stopped = true,
                    // Every address is this node (a one-node cluster
                    // talks to its own controller over the network).
                    Output::Connect { conn, .. } => {
                        let inbound = 1_000_000 + (conn & 0xffff);
                        self.loopback.insert(conn, inbound);
                        self.loopback.insert(inbound, conn);
                        queue.push_back(Input::Accepted {
                            conn: inbound,
                            peer: "self".into(),
                        });
                        queue.push_back(Input::Connected { conn });
                    }
                }
            }
        }
    }

    /// Move the clock and fire the timers that are due.
    pub fn advance_millis(&mut self, millis: u64) {
        self.now.mono_nanos += millis * 1_000_000;
        self.now.wall_millis += millis as i64;
        loop {
            let due: Vec<u64> = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= self.now.mono_nanos)
                .map(|(id, _)| *id)
                .collect();
            if due.is_empty() {
                break;
            }
            for id in due {
                self.timers.remove(&id);
                self.step(Input::TimerFired { id });
            }
        }
    }

    pub fn connect(&mut self, conn: ConnId) {
        self.step(Input::Accepted {
            conn,
            peer: "test".into(),
        });
    }

    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.step(Input::Received {
            conn,
            bytes: Bytes::copy_from_slice(bytes),
        });
    }

    /// Send a request; returns its correlation id.
    pub fn send<T: Encodable + HeaderVersion>(
        &mut self,
        conn: ConnId,
        key: ApiKey,
        version: i16,
        body: &T,
    ) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = request_frame(key, version, correlation_id, body);
        self.send_raw(conn, &frame);
        correlation_id
    }

    /// Take the next whole response frame sent on `conn`, if any.
    pub fn take_frame(&mut self, conn: ConnId) -> Option<Bytes> {
        let buf = self.sent.get_mut(&conn)?;
        if buf.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            return None;
        }
        let frame = buf.split_to(4 + len).freeze();
        Some(frame.slice(4..))
    }

    /// Take and decode the next response on `conn`.
    pub fn recv<T: Decodable + HeaderVersion>(&mut self, conn: ConnId, version: i16) -> (i32, T) {
        let frame = self.take_frame(conn).expect("a response");
        decode_response(frame, version)
    }

    /// A request/response round trip.
    pub fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        conn: ConnId,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let correlation = self.send(conn, key, version, body);
        let (got, response) = self.recv(conn, version);
        assert_eq!(got, correlation);
        response
    }
}

pub(crate) fn request_frame<T: Encodable + HeaderVersion>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("test")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, T::header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

pub(crate) fn decode_response<T: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
) -> (i32, T) {
    let header = ResponseHeader::decode(&mut frame, T::header_version(version)).unwrap();
    let body = T::decode(&mut frame, version).unwrap();
    (header.correlation_id, body)
}

/// One uncompressed batch holding `values`, keyed `k<i>`.
pub(crate) fn batch(values: &[&str]) -> Bytes {
    batch_at(values, 1_700_000_000_000)
}

pub(crate) fn batch_at(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// (offset, value) of every record in fetched bytes.
pub(crate) fn values(mut records: Bytes) -> Vec<(i64, String)> {
    let mut found = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
        for r in set.records {
            found.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    found
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn create_topics(
    h: &mut Harness,
    conn: ConnId,
    name: &str,
    partitions: i32,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    h.call(conn, ApiKey::CreateTopics, 7, &request)
}

pub(crate) fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])])
}

pub(crate) fn produce(
    h: &mut Harness,
    conn: ConnId,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let response: ProduceResponse = h.call(
        conn,
        ApiKey::Produce,
        9,
        &produce_request(topic, partition, records, -1),
    );
    response.responses[0].partition_responses[0].clone()
}

pub(crate) fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1024 * 1024)])])
}

pub(crate) fn fetch(
    h: &mut Harness,
    conn: ConnId,
    topic: &str,
    partition: i32,
    offset: i64,
) -> fetch_response::PartitionData {
    let response: FetchResponse = h.call(
        conn,
        ApiKey::Fetch,
        12,
        &fetch_request(topic, partition, offset, 0, 1),
    );
    response.responses[0].partitions[0].clone()
}

fn list_offset(
    h: &mut Harness,
    conn: ConnId,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> list_offsets_response::ListOffsetsPartitionResponse {
    list_offset_v(h, conn, topic, partition, timestamp, 7)
}

fn list_offset_v(
    h: &mut Harness,
    conn: ConnId,
    topic: &str,
    partition: i32,
    timestamp: i64,
    version: i16,
) -> list_offsets_response::ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp),
            ])]);
    let response: ListOffsetsResponse = h.call(conn, ApiKey::ListOffsets, version, &request);
    response.topics[0].partitions[0].clone()
}

#[test]
fn api_versions_lists_what_is_served() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    let response: ApiVersionsResponse =
        h.call(1, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
    assert_eq!(
        response.api_keys.len(),
        crate::protocol::SUPPORTED_APIS.len()
    );
}

#[test]
fn api_versions_from_the_future_gets_a_v0_answer() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    // Version 9 of ApiVersions does not exist; the header is v2-shaped.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(9);
    frame.put_i32(42);
    frame.put_i16(-1); // null client id
    frame.put_u8(0); // no tagged fields
    let len = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    h.send_raw(1, &frame);
    let (correlation, response): (i32, ApiVersionsResponse) = h.recv(1, 0);
    assert_eq!(correlation, 42);
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(!response.api_keys.is_empty());
}

#[test]
fn unsupported_produce_version_answers_unsupported_version() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    let response: ProduceResponse = h.call(
        1,
        ApiKey::Produce,
        11,
        &produce_request("t", 0, batch(&["a"]), -1),
    );
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(h.closed.is_empty());
}

#[test]
fn produce_then_fetch_round_trip() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    let created = create_topics(&mut h, 1, "orders", 2);
    assert_eq!(created.topics[0].error_code, 0);
    let first = produce(&mut h, 1, "orders", 1, batch(&["a", "b", "c"]));
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let second = produce(&mut h, 1, "orders", 1, batch(&["d"]));
    assert_eq!((second.error_code, second.base_offset), (0, 3));

    let data = fetch(&mut h, 1, "orders", 1, 0);
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 4);
    let got = values(data.records.unwrap());
    assert_eq!(
        got,
        vec![
            (0, "a".into()),
            (1, "b".into()),
            (2, "c".into()),
            (3, "d".into())
        ]
    );
    // Partition 0 is empty.
    let empty = fetch(&mut h, 1, "orders", 0, 0);
    assert_eq!((empty.error_code, empty.high_watermark), (0, 0));
    assert!(empty.records.unwrap().is_empty());
}

#[test]
fn list_offsets_earliest_latest_and_by_time() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    produce(&mut h, 1, "t", 0, batch_at(&["a", "b"], 1000));
    produce(&mut h, 1, "t", 0, batch_at(&["c"], 5000));
    assert_eq!(list_offset(&mut h, 1, "t", 0, -2).offset, 0);
    assert_eq!(list_offset(&mut h, 1, "t", 0, -1).offset, 3);
    let by_time = list_offset(&mut h, 1, "t", 0, 1001);
    assert_eq!((by_time.offset, by_time.timestamp), (1, 1001));
    let later = list_offset(&mut h, 1, "t", 0, 4000);
    assert_eq!((later.offset, later.timestamp), (2, 5000));
    let none = list_offset(&mut h, 1, "t", 0, 9000);
    assert_eq!(none.offset, -1);
    let missing = list_offset(&mut h, 1, "nope", 0, -1);
    assert_eq!(
        missing.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn fetch_waits_for_data_then_answers() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    h.connect(2);
    create_topics(&mut h, 1, "t", 1);
    let correlation = h.send(2, ApiKey::Fetch, 12, &fetch_request("t", 0, 0, 10_000, 1));
    assert!(h.take_frame(2).is_none(), "a fetch with no data waits");
    produce(&mut h, 1, "t", 0, batch(&["x"]));
    let (got, response): (i32, FetchResponse) = h.recv(2, 12);
    assert_eq!(got, correlation);
    assert_eq!(
        values(response.responses[0].partitions[0].records.clone().unwrap()),
        vec![(0, "x".into())]
    );
}

#[test]
fn fetch_times_out_empty() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    h.send(1, ApiKey::Fetch, 12, &fetch_request("t", 0, 0, 500, 1));
    h.advance_millis(499);
    assert!(h.take_frame(1).is_none());
    h.advance_millis(1);
    let (_, response): (i32, FetchResponse) = h.recv(1, 12);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().unwrap().is_empty());
}

#[test]
fn fetch_out_of_range_and_unknown() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    produce(&mut h, 1, "t", 0, batch(&["x"]));
    assert_eq!(
        fetch(&mut h, 1, "t", 0, 5).error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(
        fetch(&mut h, 1, "u", 0, 0).error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn metadata_auto_creates_and_reports_leader() {
    let config = BrokerConfig {
        num_partitions: 3,
        advertised: "broker.example:9093".into(),
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    h.connect(1);
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic_name("auto")))]));
    let response: MetadataResponse = h.call(1, ApiKey::Metadata, 12, &request);
    assert_eq!(response.brokers[0].host.as_str(), "broker.example");
    assert_eq!(response.brokers[0].port, 9093);
    // Kafka's answer while a new topic's logs are being created; clients retry.
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::LeaderNotAvailable.code()
    );
    let response: MetadataResponse = h.call(1, ApiKey::Metadata, 12, &request);
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.partitions.len(), 3);
    assert!(!topic.topic_id.is_nil());
    assert_eq!(h.node.topic_names(), vec!["auto".to_string()]);
}

#[test]
fn metadata_without_auto_create_says_unknown() {
    let config = BrokerConfig {
        auto_create_topics_enable: false,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    h.connect(1);
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic_name("x")))]));
    let response: MetadataResponse = h.call(1, ApiKey::Metadata, 12, &request);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn create_topics_validates() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    assert_eq!(
        create_topics(&mut h, 1, "bad/name", 1).topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(
        create_topics(&mut h, 1, "ok", 0).topics[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(create_topics(&mut h, 1, "ok", 1).topics[0].error_code, 0);
    assert_eq!(
        create_topics(&mut h, 1, "ok", 1).topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic_name("r3"))
            .with_num_partitions(1)
            .with_replication_factor(3),
    ]);
    let response: CreateTopicsResponse = h.call(1, ApiKey::CreateTopics, 7, &request);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::InvalidReplicationFactor.code()
    );
}

#[test]
fn produce_to_invalid_or_unknown_topic() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    assert_eq!(
        produce(&mut h, 1, "no such", 0, batch(&["a"])).error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(
        produce(&mut h, 1, "nosuch", 0, batch(&["a"])).error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn corrupt_and_oversized_batches_are_refused() {
    let config = BrokerConfig {
        message_max_bytes: 200,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    let mut bad = batch(&["hello"]).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        produce(&mut h, 1, "t", 0, Bytes::from(bad)).error_code,
        ResponseError::CorruptMessage.code()
    );
    let big = "x".repeat(300);
    assert_eq!(
        produce(&mut h, 1, "t", 0, batch(&[&big])).error_code,
        ResponseError::MessageTooLarge.code()
    );
    // Nothing was appended.
    assert_eq!(h.node.partition_offsets("t", 0), Some((0, 0, 0)));
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let config = BrokerConfig {
        socket_request_max_bytes: 1000,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    h.connect(1);
    h.connect(2);
    h.connect(3);
    // Too short to be a request.
    h.send_raw(1, &[0, 0, 0, 2, 0, 1]);
    // A length prefix over the limit: closed before the body arrives.
    h.send_raw(2, &[0, 0, 0x10, 0]);
    // Unknown API key.
    h.send_raw(3, &[0, 0, 0, 10, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    assert_eq!(h.closed, vec![1, 2, 3]);
    h.connect(4);
    let response: ApiVersionsResponse =
        h.call(4, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

#[test]
fn garbage_body_closes_the_connection() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    // A Produce v9 header followed by a body that is not a produce request.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::Produce as i16);
    frame.put_i16(9);
    frame.put_i32(1);
    frame.put_i16(-1);
    frame.put_u8(0);
    frame.put_slice(&[0xff; 7]);
    let len = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    h.send_raw(1, &frame);
    assert_eq!(h.closed, vec![1]);
}

#[test]
fn pipelined_answers_keep_request_order() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    // A waiting fetch, then a metadata request on the same connection.
    let fetch_correlation = h.send(1, ApiKey::Fetch, 12, &fetch_request("t", 0, 0, 1000, 1));
    let metadata_correlation = h.send(1, ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        h.take_frame(1).is_none(),
        "metadata must wait behind the fetch"
    );
    h.advance_millis(1000);
    let (first, _): (i32, FetchResponse) = h.recv(1, 12);
    let (second, _): (i32, MetadataResponse) = h.recv(1, 12);
    assert_eq!((first, second), (fetch_correlation, metadata_correlation));
}

#[test]
fn acks_zero_gets_no_answer() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    h.send(
        1,
        ApiKey::Produce,
        9,
        &produce_request("t", 0, batch(&["a"]), 0),
    );
    assert!(h.take_frame(1).is_none());
    assert_eq!(fetch(&mut h, 1, "t", 0, 0).high_watermark, 1);
}

#[test]
fn delete_topics_removes() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 2);
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topic_names(vec![topic_name("t"), topic_name("u")]);
    let response: DeleteTopicsResponse = h.call(1, ApiKey::DeleteTopics, 5, &request);
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(
        response.responses[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(h.node.topic_names().is_empty());
    assert_eq!(create_topics(&mut h, 1, "t", 1).topics[0].error_code, 0);
}

#[test]
fn requests_before_recovery_wait_for_it() {
    let mut node = Node::new(BrokerConfig::default(), 1);
    let mut out = Vec::new();
    let now = Now::default();
    node.step(
        now,
        Input::Accepted {
            conn: 1,
            peer: "p".into(),
        },
        &mut out,
    );
    let frame = request_frame(ApiKey::ApiVersions, 3, 5, &ApiVersionsRequest::default());
    node.step(
        now,
        Input::Received {
            conn: 1,
            bytes: frame,
        },
        &mut out,
    );
    assert!(out.is_empty(), "nothing is answered before start");
    node.step(now, Input::Start, &mut out);
    let list = out.iter().find_map(|o| match o {
        Output::Disk { req, .. } => Some(*req),
        _ => None,
    });
    out.clear();
    node.step(
        now,
        Input::DiskDone {
            req: list.unwrap(),
            result: Ok(crate::seam::DiskReply::Listing(vec![])),
        },
        &mut out,
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Send { conn: 1, .. })));
}

#[test]
fn data_survives_restart() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 2);
    produce(&mut h, 1, "t", 1, batch(&["a", "b"]));
    h.step(Input::Shutdown);
    assert!(h.stopped);
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(BrokerConfig::default(), disk);
    h.connect(1);
    let data = fetch(&mut h, 1, "t", 1, 0);
    assert_eq!(
        values(data.records.unwrap()),
        vec![(0, "a".into()), (1, "b".into())]
    );
    let created = create_topics(&mut h, 1, "t", 1);
    assert_eq!(
        created.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
}

/// Regression (kcat 1.7 via ci/compat): ListOffsets v1 answers must not carry
/// a leader epoch, which that version cannot encode.
#[test]
fn list_offsets_every_supported_version_answers() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    produce(&mut h, 1, "t", 0, batch(&["a"]));
    for version in 1..=7 {
        assert_eq!(
            list_offset_v(&mut h, 1, "t", 0, -1, version).offset,
            1,
            "v{version}"
        );
    }
    assert!(h.closed.is_empty());
}

/// Every supported version of every API encodes an answer (no field set
/// that a version cannot carry).
#[test]
fn every_supported_version_of_fetch_and_metadata_answers() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    produce(&mut h, 1, "t", 0, batch(&["a"]));
    for version in 4..=12 {
        let response: FetchResponse =
            h.call(1, ApiKey::Fetch, version, &fetch_request("t", 0, 0, 0, 1));
        assert_eq!(
            response.responses[0].partitions[0].error_code, 0,
            "fetch v{version}"
        );
    }
    for version in 0..=12 {
        let request = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
        ]));
        let response: MetadataResponse = h.call(1, ApiKey::Metadata, version, &request);
        assert_eq!(response.topics[0].error_code, 0, "metadata v{version}");
    }
    for version in 3..=9 {
        let response: ProduceResponse = h.call(
            1,
            ApiKey::Produce,
            version,
            &produce_request("t", 0, batch(&["b"]), -1),
        );
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, 0,
            "produce v{version}"
        );
    }
    for version in 2..=7 {
        let name = format!("c{version}");
        let request = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name(&name))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        let response: CreateTopicsResponse = h.call(1, ApiKey::CreateTopics, version, &request);
        assert_eq!(response.topics[0].error_code, 0, "create topics v{version}");
    }
    for version in 1..=5 {
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(&format!("c{}", version + 1))]);
        let response: DeleteTopicsResponse = h.call(1, ApiKey::DeleteTopics, version, &request);
        assert_eq!(
            response.responses[0].error_code, 0,
            "delete topics v{version}"
        );
    }
    for version in 0..=4 {
        let response: ApiVersionsResponse = h.call(
            1,
            ApiKey::ApiVersions,
            version,
            &ApiVersionsRequest::default(),
        );
        assert_eq!(response.error_code, 0, "api versions v{version}");
    }
    assert!(h.closed.is_empty());
}

/// Found by the simulator: crash-restart seed 0x2. A fetch whose first
/// partition is caught up (its read completes at once) answered before the
/// other partitions' reads were issued, so a consumer never got their data.
#[test]
fn fetch_with_a_caught_up_first_partition_returns_the_others() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 2);
    produce(&mut h, 1, "t", 0, batch(&["a"]));
    produce(&mut h, 1, "t", 1, batch(&["b"]));
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name("t"))
            .with_partitions(vec![
                // Partition 0 from its high watermark: nothing new.
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20),
                fetch_request::FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
            ])]);
    let response: FetchResponse = h.call(1, ApiKey::Fetch, 12, &request);
    let partitions = &response.responses[0].partitions;
    assert!(partitions[0].records.as_ref().unwrap().is_empty());
    assert_eq!(
        values(partitions[1].records.clone().unwrap()),
        vec![(0, "b".into())]
    );
}

/// A failed sync takes the partition offline with KAFKA_STORAGE_ERROR; what
/// was acknowledged before is still there after a restart.
#[test]
fn failed_sync_answers_storage_error_and_loses_nothing_acknowledged() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    assert_eq!(produce(&mut h, 1, "t", 0, batch(&["kept"])).error_code, 0);
    h.disk.fail_syncs(true);
    let failed = produce(&mut h, 1, "t", 0, batch(&["unsynced"]));
    assert_eq!(failed.error_code, ResponseError::KafkaStorageError.code());
    h.disk.fail_syncs(false);
    // Offline until restart: the sync is not retried and trusted.
    let again = produce(&mut h, 1, "t", 0, batch(&["later"]));
    assert_eq!(again.error_code, ResponseError::KafkaStorageError.code());
    assert_eq!(
        fetch(&mut h, 1, "t", 0, 0).error_code,
        ResponseError::KafkaStorageError.code()
    );
    assert_eq!(h.node.offline_partitions(), 1);
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
    ]));
    let metadata: MetadataResponse = h.call(1, ApiKey::Metadata, 12, &request);
    assert_eq!(
        metadata.topics[0].partitions[0].error_code,
        ResponseError::KafkaStorageError.code()
    );
    // Power loss and restart: the acknowledged record is there.
    let mut disk = std::mem::take(&mut h.disk);
    disk.crash();
    let mut h = Harness::on_disk(BrokerConfig::default(), disk);
    h.connect(1);
    let data = fetch(&mut h, 1, "t", 0, 0);
    assert_eq!(values(data.records.unwrap()), vec![(0, "kept".into())]);
}

/// A full disk answers KAFKA_STORAGE_ERROR too.
#[test]
fn full_disk_answers_storage_error() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    create_topics(&mut h, 1, "t", 1);
    h.disk.set_capacity(Some(h.disk.used_bytes()));
    let answer = produce(&mut h, 1, "t", 0, batch(&["x"]));
    assert_eq!(answer.error_code, ResponseError::KafkaStorageError.code());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary bytes, framed or not, split anyhow, never panic the node.
        #[test]
        fn random_bytes(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut h = Harness::new(BrokerConfig::default());
            h.connect(1);
            for chunk in chunks {
                h.send_raw(1, &chunk);
            }
        }

        /// Well-framed requests with a valid header and a random body.
        #[test]
        fn random_bodies(key in prop::sample::select(vec![0i16, 1, 2, 3, 18, 19, 20]), version in 0i16..14, body in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut h = Harness::new(BrokerConfig::default());
            h.connect(1);
            create_topics(&mut h, 1, "t", 1);
            let mut frame = BytesMut::new();
            frame.put_i32(0);
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(7);
            frame.put_i16(-1);
            if version >= 9 || (key == 18 && version >= 3) {
                frame.put_u8(0);
            }
            frame.put_slice(&body);
            let len = (frame.len() - 4) as i32;
            frame[0..4].copy_from_slice(&len.to_be_bytes());
            h.send_raw(1, &frame);
        }

        /// Produce requests carrying random "record batches".
        #[test]
        fn random_record_batches(records in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut h = Harness::new(BrokerConfig::default());
            h.connect(1);
            create_topics(&mut h, 1, "t", 1);
            let answer = produce(&mut h, 1, "t", 0, Bytes::from(records));
            let refused = [ResponseError::CorruptMessage.code(), ResponseError::MessageTooLarge.code()];
            prop_assert!(refused.contains(&answer.error_code), "error {}", answer.error_code);
            prop_assert_eq!(h.node.partition_offsets("t", 0), Some((0, 0, 0)));
        }
    }
}

/// Found by `never_panics::random_bodies`: a request claiming an array of
/// 2^31 elements made the decoder ask for ~100 GB and the process aborted.
/// The patched kafka-protocol refuses it; the connection is closed.
#[test]
fn huge_array_count_closes_the_connection_instead_of_aborting() {
    let mut h = Harness::new(BrokerConfig::default());
    h.connect(1);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(1);
    frame.put_i32(9);
    frame.put_i16(-1); // null client id
    frame.put_i32(i32::MAX); // "2^31 - 1 topics follow"
    let len = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    h.send_raw(1, &frame);
    assert_eq!(h.closed, vec![1]);
}
