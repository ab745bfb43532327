//! Kafka wire framing, request headers and the API versions this broker speaks.
//!
//! Message bodies are encoded and decoded by the `kafka-protocol` crate; this
//! module only cuts the byte stream into frames and frames answers.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// The APIs served and the versions of each, advertised in ApiVersions.
/// Only versions whose semantics are implemented are listed.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    // The metadata quorum (KRaft) and the broker-to-controller channel.
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::FetchSnapshot, 0, 1),
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
    (ApiKey::AlterPartition, 2, 3),
    (ApiKey::AllocateProducerIds, 0, 0),
    // Idempotent producers (v5 and up speak of transactions V2).
    (ApiKey::InitProducerId, 0, 4),
    // Transactions (v4 of AddPartitionsToTxn and v5 of EndTxn speak of
    // KIP-890's broker verification and transactions V2).
    // v4: a partition leader's verification (KIP-890), as Kafka advertises it.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::WriteTxnMarkers, 0, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 0),
    // Consumer groups (classic protocol).
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    // v9: a KIP-848 member commits and fetches with its member epoch.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Consumer groups (KIP-848).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The supported version range of `key`, if the API is served at all.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Why the byte stream of a connection cannot be read any further.
/// Each of these closes the connection, as Kafka does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is negative or above `socket.request.max.bytes`.
    TooLarge { size: i64, max: usize },
    /// The frame is too short to hold a request header, or the header is garbage.
    Malformed(String),
    /// The API key is not one Kafka defines or one this broker serves.
    UnknownApiKey(i16),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(
                    f,
                    "request of {size} bytes exceeds socket.request.max.bytes={max}"
                )
            }
            FrameError::Malformed(why) => write!(f, "malformed request: {why}"),
            FrameError::UnknownApiKey(key) => write!(f, "unknown API key {key}"),
        }
    }
}

/// Cuts a connection's byte stream into request frames.
///
/// The length prefix is checked before the body is buffered, so an oversized
/// frame costs no memory.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Add bytes received from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame body (without its length prefix), if any.
    pub fn next_frame(&mut self, max_size: usize) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]);
        if size < 0 || size as usize > max_size {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: max_size,
            });
        }
        let size = size as usize;
        if self.buffer.len() < 4 + size {
            return Ok(None);
        }
        self.buffer.advance(4);
        Ok(Some(self.buffer.split_to(size).freeze()))
    }

    /// Bytes buffered but not yet part of a complete frame.
    pub fn pending_len(&self) -> usize {
        self.buffer.len()
    }
}

/// A request frame whose header has been read; the body is still raw.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Read the request header of a frame.
pub fn parse_request(mut frame: Bytes) -> Result<RawRequest, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Malformed(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    if supported_versions(api_key).is_none() {
        return Err(FrameError::UnknownApiKey(raw_key));
    }
    // A version beyond what kafka-protocol knows is read with the newest header
    // layout; if it is still garbage the frame is malformed.
    let header_version = api_key.request_header_version(
        api_version.clamp(api_key.valid_versions().min, api_key.valid_versions().max),
    );
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| FrameError::Malformed(format!("request header: {e}")))?;
    Ok(RawRequest {
        api_key,
        api_version,
        header,
        body: frame,
    })
}

/// Decode a request body of type `T` at `version`.
pub fn decode_body<T: Decodable>(raw: &RawRequest) -> Result<T, FrameError> {
    let mut body = raw.body.clone();
    T::decode(&mut body, raw.api_version).map_err(|e| {
        FrameError::Malformed(format!("{:?} v{} body: {e}", raw.api_key, raw.api_version))
    })
}

/// Encode a whole response frame: length prefix, response header, body.
/// Fails only if `version` is outside what the body type can encode.
pub fn encode_response<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &T,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = T::header_version(version);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Kafka's rule for topic names: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be `{name}`"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters; the limit is 249",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{bad}`; legal characters are ASCII alphanumerics, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_at_length_prefixes() {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(decoder.next_frame(100), Ok(None));
        decoder.extend(&[3, 0, 0, 0, 1, 9]);
        assert_eq!(
            decoder.next_frame(100),
            Ok(Some(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(decoder.next_frame(100), Ok(Some(Bytes::from_static(&[9]))));
        assert_eq!(decoder.next_frame(100), Ok(None));
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&[0, 0, 1, 0]);
        assert!(matches!(
            decoder.next_frame(255),
            Err(FrameError::TooLarge { size: 256, .. })
        ));
        let mut decoder = FrameDecoder::new();
        decoder.extend(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decoder.next_frame(255),
            Err(FrameError::TooLarge { size: -1, .. })
        ));
    }

    #[test]
    fn unknown_api_keys_and_short_frames_are_errors() {
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            parse_request(frame).unwrap_err(),
            FrameError::UnknownApiKey(0x7f00)
        );
        assert!(matches!(
            parse_request(Bytes::from_static(&[0, 18, 0])),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
