//! A minimal Kafka-protocol client over tokio, for tests and examples that
//! talk to real brokers: one request at a time on one connection, every step
//! bounded by a timeout. Shared by `tests/cluster.rs` and
//! `examples/create_topics_latency.rs` (included with `#[path]`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_quorum_request;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Versions used (all within what Stormlog serves).
pub const METADATA_VERSION: i16 = 12;
pub const CREATE_TOPICS_VERSION: i16 = 7;
pub const DESCRIBE_QUORUM_VERSION: i16 = 1;

/// Kafka error codes a caller may want to name.
pub const NONE: i16 = 0;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const NOT_CONTROLLER: i16 = 41;

/// One connection to one broker.
pub struct Client {
    stream: TcpStream,
    addr: String,
    next_correlation: i32,
    timeout: Duration,
}

impl Client {
    /// Connect to `addr` (`host:port`); `timeout` bounds the connect and,
    /// later, every request.
    pub async fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr}: timed out after {timeout:?}"))?
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            addr: addr.to_string(),
            next_correlation: 1,
            timeout,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send one request and wait for its response.
    pub async fn send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> anyhow::Result<R::Response> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("stormlog-kclient")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, R::header_version(version))?;
        request.encode(&mut frame, version)?;
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr.clone();
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            let len = i32::from_be_bytes(len);
            if !(4..=64 << 20).contains(&len) {
                return Err(std::io::Error::other(format!("bad response length {len}")));
            }
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).await?;
            Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{addr}: no response within {:?}", self.timeout))?
            .with_context(|| format!("{addr}: request api {} v{version}", R::KEY))?;
        let mut body = bytes::Bytes::from(body);
        let response_header =
            ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if response_header.correlation_id != correlation {
            bail!(
                "{addr}: correlation id {} in answer to {correlation}",
                response_header.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            bail!("{addr}: {} bytes left over in a response", body.remaining());
        }
        Ok(response)
    }

    /// Metadata for `topics` (`None`: every topic), never auto-creating.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.send(METADATA_VERSION, &request).await
    }

    /// DescribeQuorum for `__cluster_metadata`.
    pub async fn describe_quorum(&mut self) -> anyhow::Result<DescribeQuorumResponse> {
        let request = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(0)
                ]),
        ]);
        self.send(DESCRIBE_QUORUM_VERSION, &request).await
    }

    /// CreateTopics for one topic; the topic's error code and message.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        timeout_ms: i32,
    ) -> anyhow::Result<(i16, Option<String>)> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)]);
        let response: CreateTopicsResponse = self.send(CREATE_TOPICS_VERSION, &request).await?;
        let topic = response
            .topics
            .into_iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| anyhow!("CreateTopics answer does not name {name}"))?;
        Ok((
            topic.error_code,
            topic.error_message.map(|m| m.as_str().to_string()),
        ))
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The quorum leader and epoch in a DescribeQuorum answer, if it names one.
pub fn quorum_leader(response: &DescribeQuorumResponse) -> Option<(i32, i32)> {
    if response.error_code != NONE {
        return None;
    }
    let p = response.topics.first()?.partitions.first()?;
    (p.error_code == NONE && p.leader_id.0 >= 0).then_some((p.leader_id.0, p.leader_epoch))
}

/// The ids of the brokers a Metadata answer lists.
pub fn broker_ids(response: &MetadataResponse) -> BTreeSet<i32> {
    response.brokers.iter().map(|b| b.node_id.0).collect()
}

/// One partition as Metadata shows it: (index, leader, replicas, isr).
pub type PartitionView = (i32, i32, Vec<i32>, Vec<i32>);

/// A topic's partitions in a Metadata answer, sorted, if it is there
/// without a topic-level error.
pub fn topic_partitions(response: &MetadataResponse, name: &str) -> Option<Vec<PartitionView>> {
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))?;
    if topic.error_code != NONE {
        return None;
    }
    let mut parts: Vec<PartitionView> = topic
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.replica_nodes.iter().map(|r| r.0).collect(),
                p.isr_nodes.iter().map(|r| r.0).collect(),
            )
        })
        .collect();
    parts.sort();
    Some(parts)
}
