//! Test helpers: read the requests a client writes and hand it made-up
//! responses, as a broker would, through the seam.

use broker::seam::{ConnId, Input, Now, Output};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub fn at(millis: u64) -> Now {
    Now::from_millis(millis, 1_700_000_000_000 + millis as i64)
}

/// One request a client sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub conn: ConnId,
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation: i32,
    pub body: Bytes,
}

impl Sent {
    pub fn decode<T: Decodable>(&self) -> T {
        let mut body = self.body.clone();
        T::decode(&mut body, self.version).expect("a well-formed request")
    }

    /// The response frame for this request.
    pub fn answer<T: Encodable>(&self, response: &T) -> Input {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(self.correlation)
            .encode(&mut buf, self.api_key.response_header_version(self.version))
            .unwrap();
        response.encode(&mut buf, self.version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Input::Received {
            conn: self.conn,
            bytes: buf.freeze(),
        }
    }
}

/// Every request among `out` (one frame per `Send`, as clients write them).
pub fn requests(out: &[Output]) -> Vec<Sent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, bytes } => {
                let mut b = bytes.clone();
                let len = b.get_i32() as usize;
                assert_eq!(len, b.len(), "one frame per send");
                let api_key = ApiKey::try_from(i16::from_be_bytes([b[0], b[1]])).unwrap();
                let version = i16::from_be_bytes([b[2], b[3]]);
                let header =
                    RequestHeader::decode(&mut b, api_key.request_header_version(version)).unwrap();
                Some(Sent {
                    conn: *conn,
                    api_key,
                    version,
                    correlation: header.correlation_id,
                    body: b,
                })
            }
            _ => None,
        })
        .collect()
}

/// The requests of one kind among `out`.
pub fn requests_of(out: &[Output], api_key: ApiKey) -> Vec<Sent> {
    requests(out)
        .into_iter()
        .filter(|s| s.api_key == api_key)
        .collect()
}

/// Every `Connect` among `out`, as (conn, addr).
pub fn connects(out: &[Output]) -> Vec<(ConnId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { conn, addr } => Some((*conn, addr.clone())),
            _ => None,
        })
        .collect()
}

/// A metadata answer: `brokers` as (node id, host:port); the topic's
/// partitions as (index, leader, leader epoch), in order.
pub fn metadata(
    brokers: &[(i32, &str)],
    topic: &str,
    partitions: &[(i32, i32, i32)],
) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|(id, addr)| {
                    let (host, port) = addr.rsplit_once(':').unwrap();
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(StrBytes::from_string(host.to_string()))
                        .with_port(port.parse().unwrap())
                })
                .collect(),
        )
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(index, leader, epoch)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(*index)
                            .with_error_code(if *leader < 0 { 5 } else { 0 })
                            .with_leader_id(BrokerId(*leader))
                            .with_leader_epoch(*epoch)
                            .with_replica_nodes(vec![BrokerId(*leader)])
                            .with_isr_nodes(vec![BrokerId(*leader)])
                    })
                    .collect(),
            )])
}
