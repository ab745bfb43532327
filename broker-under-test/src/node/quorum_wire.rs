//! The metadata quorum's messages on the wire: KRaft's own APIs (Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch on `__cluster_metadata`,
//! FetchSnapshot) through kafka-protocol, to and from the quorum core's
//! plain [`Request`]/[`Response`] values.
//!
//! Entries travel in a Fetch's `records` field in the same framing as the
//! on-disk log (length, CRC-32C, offset, epoch, kind, data), so a damaged
//! payload is detected before anything is applied.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::raft::{Entry, EntryKind, RaftError, Request, Response};
use crate::seam::NodeId;

pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// API versions this node speaks to its peers.
pub const VOTE_VERSION: i16 = 2;
pub const BEGIN_EPOCH_VERSION: i16 = 0;
pub const END_EPOCH_VERSION: i16 = 0;
pub const FETCH_VERSION: i16 = 12;
pub const FETCH_SNAPSHOT_VERSION: i16 = 0;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str(METADATA_TOPIC))
}

fn cluster(id: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(id.to_string()))
}

fn leader_opt(id: i32) -> Option<NodeId> {
    (id >= 0).then_some(id)
}

pub fn error_code(error: Option<RaftError>) -> i16 {
    match error {
        None => 0,
        Some(RaftError::FencedLeaderEpoch) => ResponseError::FencedLeaderEpoch.code(),
        Some(RaftError::NotLeader) => ResponseError::NotLeaderOrFollower.code(),
        Some(RaftError::UnknownLeaderEpoch) => ResponseError::UnknownLeaderEpoch.code(),
        Some(RaftError::InconsistentVoter) => ResponseError::InconsistentVoterSet.code(),
        Some(RaftError::PositionOutOfRange) => ResponseError::PositionOutOfRange.code(),
        Some(RaftError::SnapshotNotFound) => ResponseError::SnapshotNotFound.code(),
    }
}

/// The quorum error a code stands for; `Err` for codes the quorum does not
/// understand (the response is then dropped: the core retries by timer).
fn raft_error(code: i16) -> Result<Option<RaftError>, i16> {
    Ok(Some(match code {
        0 => return Ok(None),
        c if c == ResponseError::FencedLeaderEpoch.code() => RaftError::FencedLeaderEpoch,
        c if c == ResponseError::NotLeaderOrFollower.code() => RaftError::NotLeader,
        c if c == ResponseError::UnknownLeaderEpoch.code() => RaftError::UnknownLeaderEpoch,
        c if c == ResponseError::InconsistentVoterSet.code() => RaftError::InconsistentVoter,
        c if c == ResponseError::PositionOutOfRange.code() => RaftError::PositionOutOfRange,
        c if c == ResponseError::SnapshotNotFound.code() => RaftError::SnapshotNotFound,
        other => return Err(other),
    }))
}

// ----- entry frames: the metadata log file and Fetch records alike -----

/// Bytes of a frame before the entry's data: length, CRC, offset, epoch, kind.
const FRAME_HEADER: usize = 4 + 4 + 8 + 4 + 1;

/// Append one entry as `[len u32][crc32c u32][offset i64][epoch i32][kind u8][data]`,
/// the CRC covering everything after it.
pub fn write_frame(buf: &mut BytesMut, entry: &Entry) {
    let body_len = FRAME_HEADER - 8 + entry.data.len();
    let start = buf.len();
    buf.put_u32(body_len as u32);
    buf.put_u32(0);
    buf.put_i64(entry.offset);
    buf.put_i32(entry.epoch);
    buf.put_u8(match entry.kind {
        EntryKind::Data => 0,
        EntryKind::LeaderChange => 1,
    });
    buf.put_slice(&entry.data);
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// The frame at `pos`: its entry (sharing `bytes`) and the position after
/// it; `None` at the end of the input; `Err` for a torn or damaged frame.
pub fn read_frame(bytes: &Bytes, pos: usize) -> Result<Option<(Entry, usize)>, String> {
    let rest = &bytes[pos.min(bytes.len())..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < 8 {
        return Err(format!("truncated entry header at byte {pos}"));
    }
    let mut head = rest;
    let len = head.get_u32() as usize;
    let crc = head.get_u32();
    if len < FRAME_HEADER - 8 || rest.len() - 8 < len {
        return Err(format!("entry at byte {pos} claims {len} bytes"));
    }
    let body = &rest[8..8 + len];
    if crc32c::crc32c(body) != crc {
        return Err(format!("entry at byte {pos} fails its checksum"));
    }
    let mut b = body;
    let offset = b.get_i64();
    let epoch = b.get_i32();
    let kind = match b.get_u8() {
        0 => EntryKind::Data,
        1 => EntryKind::LeaderChange,
        k => return Err(format!("entry at byte {pos} has unknown kind {k}")),
    };
    let entry = Entry {
        offset,
        epoch,
        kind,
        data: bytes.slice(pos + FRAME_HEADER..pos + 8 + len),
    };
    Ok(Some((entry, pos + 8 + len)))
}

pub fn encode_entries(entries: &[Entry]) -> Bytes {
    let mut buf = BytesMut::new();
    for entry in entries {
        write_frame(&mut buf, entry);
    }
    buf.freeze()
}

/// Every entry, or an error naming the first bad one; never a partial list.
pub fn decode_entries(bytes: &Bytes) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = 0usize;
    while let Some((entry, next)) = read_frame(bytes, pos)? {
        if let Some(prev) = entries.last().map(|e| e.offset) {
            if entry.offset != prev + 1 {
                return Err(format!(
                    "entry offsets jump from {prev} to {}",
                    entry.offset
                ));
            }
        }
        entries.push(entry);
        pos = next;
    }
    Ok(entries)
}

// ----- outbound requests -----

/// An encodable request with its API key and version.
pub enum WireRequest {
    Vote(m::VoteRequest),
    BeginQuorumEpoch(m::BeginQuorumEpochRequest),
    EndQuorumEpoch(m::EndQuorumEpochRequest),
    Fetch(m::FetchRequest),
    FetchSnapshot(m::FetchSnapshotRequest),
}

pub fn to_wire(request: &Request, cluster_id: &str, to: NodeId) -> WireRequest {
    match request {
        Request::Vote {
            epoch,
            candidate,
            last_epoch,
            last_end_offset,
            pre_vote,
        } => WireRequest::Vote(
            m::VoteRequest::default()
                .with_cluster_id(cluster(cluster_id))
                .with_voter_id(BrokerId(to))
                .with_topics(vec![m::vote_request::TopicData::default()
                    .with_topic_name(topic())
                    .with_partitions(vec![m::vote_request::PartitionData::default()
                        .with_replica_epoch(*epoch)
                        .with_replica_id(BrokerId(*candidate))
                        .with_last_offset_epoch(*last_epoch)
                        .with_last_offset(*last_end_offset)
                        .with_pre_vote(*pre_vote)])]),
        ),
        Request::BeginQuorumEpoch { epoch, leader } => WireRequest::BeginQuorumEpoch(
            m::BeginQuorumEpochRequest::default()
                .with_cluster_id(cluster(cluster_id))
                .with_topics(vec![m::begin_quorum_epoch_request::TopicData::default()
                    .with_topic_name(topic())
                    .with_partitions(vec![
                        m::begin_quorum_epoch_request::PartitionData::default()
                            .with_leader_id(BrokerId(*leader))
                            .with_leader_epoch(*epoch),
                    ])]),
        ),
        Request::EndQuorumEpoch {
            epoch,
            leader,
            preferred_successors,
        } => WireRequest::EndQuorumEpoch(
            m::EndQuorumEpochRequest::default()
                .with_cluster_id(cluster(cluster_id))
                .with_topics(vec![m::end_quorum_epoch_request::TopicData::default()
                    .with_topic_name(topic())
                    .with_partitions(vec![
                        m::end_quorum_epoch_request::PartitionData::default()
                            .with_leader_id(BrokerId(*leader))
                            .with_leader_epoch(*epoch)
                            .with_preferred_successors(preferred_successors.clone()),
                    ])]),
        ),
        Request::Fetch {
            epoch,
            replica,
            fetch_offset,
            last_fetched_epoch,
            max_wait_ms,
        } => WireRequest::Fetch(
            m::FetchRequest::default()
                .with_cluster_id(cluster(cluster_id))
                .with_replica_id(BrokerId(*replica))
                .with_max_wait_ms((*max_wait_ms).min(i32::MAX as u64) as i32)
                .with_min_bytes(1)
                .with_max_bytes(8 * 1024 * 1024)
                .with_topics(vec![m::fetch_request::FetchTopic::default()
                    .with_topic(topic())
                    .with_partitions(vec![m::fetch_request::FetchPartition::default()
                        .with_current_leader_epoch(*epoch)
                        .with_fetch_offset(*fetch_offset)
                        .with_last_fetched_epoch(*last_fetched_epoch)
                        .with_partition_max_bytes(8 * 1024 * 1024)])]),
        ),
        Request::FetchSnapshot {
            epoch,
            replica,
            end_offset,
            snapshot_epoch,
            position,
        } => WireRequest::FetchSnapshot(
            m::FetchSnapshotRequest::default()
                .with_cluster_id(cluster(cluster_id))
                .with_replica_id(BrokerId(*replica))
                .with_max_bytes(1024 * 1024)
                .with_topics(vec![m::fetch_snapshot_request::TopicSnapshot::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        m::fetch_snapshot_request::PartitionSnapshot::default()
                            .with_current_leader_epoch(*epoch)
                            .with_snapshot_id(
                                m::fetch_snapshot_request::SnapshotId::default()
                                    .with_end_offset(*end_offset)
                                    .with_epoch(*snapshot_epoch),
                            )
                            .with_position((*position).min(i64::MAX as u64) as i64),
                    ])]),
        ),
    }
}

// ----- inbound requests -----

/// Why an inbound quorum request is refused before reaching the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong `cluster_id`: INCONSISTENT_CLUSTER_ID.
    Cluster,
    /// Not a request about `__cluster_metadata-0`, or not exactly one partition.
    Shape,
}

fn check_cluster(found: &Option<StrBytes>, ours: &str) -> Result<(), Refusal> {
    match found {
        Some(id) if id.as_str() != ours => Err(Refusal::Cluster),
        _ => Ok(()),
    }
}

pub fn vote_from_wire(r: &m::VoteRequest, cluster_id: &str) -> Result<Request, Refusal> {
    check_cluster(&r.cluster_id, cluster_id)?;
    let [t] = r.topics.as_slice() else {
        return Err(Refusal::Shape);
    };
    let [p] = t.partitions.as_slice() else {
        return Err(Refusal::Shape);
    };
    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
        return Err(Refusal::Shape);
    }
    Ok(Request::Vote {
        epoch: p.replica_epoch,
        candidate: p.replica_id.0,
        last_epoch: p.last_offset_epoch,
        last_end_offset: p.last_offset,
        pre_vote: p.pre_vote,
    })
}

pub fn begin_epoch_from_wire(
    r: &m::BeginQuorumEpochRequest,
    cluster_id: &str,
) -> Result<Request, Refusal> {
    check_cluster(&r.cluster_id, cluster_id)?;
    let [t] = r.topics.as_slice() else {
        return Err(Refusal::Shape);
    };
    let [p] = t.partitions.as_slice() else {
        return Err(Refusal::Shape);
    };
    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
        return Err(Refusal::Shape);
    }
    Ok(Request::BeginQuorumEpoch {
        epoch: p.leader_epoch,
        leader: p.leader_id.0,
    })
}

pub fn end_epoch_from_wire(
    r: &m::EndQuorumEpochRequest,
    cluster_id: &str,
) -> Result<Request, Refusal> {
    check_cluster(&r.cluster_id, cluster_id)?;
    let [t] = r.topics.as_slice() else {
        return Err(Refusal::Shape);
    };
    let [p] = t.partitions.as_slice() else {
        return Err(Refusal::Shape);
    };
    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
        return Err(Refusal::Shape);
    }
    let mut preferred = p.preferred_successors.clone();
    preferred.extend(p.preferred_candidates.iter().map(|c| c.candidate_id.0));
    Ok(Request::EndQuorumEpoch {
        epoch: p.leader_epoch,
        leader: p.leader_id.0,
        preferred_successors: preferred,
    })
}

/// Whether a Fetch is a quorum fetch (a replica fetching `__cluster_metadata`).
pub fn is_quorum_fetch(r: &m::FetchRequest) -> bool {
    r.topics
        .iter()
        .any(|t| t.topic.0.as_str() == METADATA_TOPIC)
}

pub fn fetch_from_wire(r: &m::FetchRequest, cluster_id: &str) -> Result<Request, Refusal> {
    check_cluster(&r.cluster_id, cluster_id)?;
    let [t] = r.topics.as_slice() else {
        return Err(Refusal::Shape);
    };
    let [p] = t.partitions.as_slice() else {
        return Err(Refusal::Shape);
    };
    if t.topic.0.as_str() != METADATA_TOPIC || p.partition != 0 || r.replica_id.0 < 0 {
        return Err(Refusal::Shape);
    }
    Ok(Request::Fetch {
        epoch: p.current_leader_epoch,
        replica: r.replica_id.0,
        fetch_offset: p.fetch_offset,
        last_fetched_epoch: p.last_fetched_epoch,
        max_wait_ms: r.max_wait_ms.max(0) as u64,
    })
}

pub fn fetch_snapshot_from_wire(
    r: &m::FetchSnapshotRequest,
    cluster_id: &str,
) -> Result<Request, Refusal> {
    check_cluster(&r.cluster_id, cluster_id)?;
    let [t] = r.topics.as_slice() else {
        return Err(Refusal::Shape);
    };
    let [p] = t.partitions.as_slice() else {
        return Err(Refusal::Shape);
    };
    if t.name.0.as_str() != METADATA_TOPIC || p.partition != 0 {
        return Err(Refusal::Shape);
    }
    if p.position < 0 {
        // The core refuses it with POSITION_OUT_OF_RANGE; keep the sign visible.
        return Ok(Request::FetchSnapshot {
            epoch: p.current_leader_epoch,
            replica: r.replica_id.0,
            end_offset: p.snapshot_id.end_offset,
            snapshot_epoch: p.snapshot_id.epoch,
            position: u64::MAX,
        });
    }
    Ok(Request::FetchSnapshot {
        epoch: p.current_leader_epoch,
        replica: r.replica_id.0,
        end_offset: p.snapshot_id.end_offset,
        snapshot_epoch: p.snapshot_id.epoch,
        position: p.position as u64,
    })
}

// ----- responses, both ways -----

/// An inbound quorum request's response, encoded for the API it answers.
pub enum WireResponse {
    Vote(m::VoteResponse),
    BeginQuorumEpoch(m::BeginQuorumEpochResponse),
    EndQuorumEpoch(m::EndQuorumEpochResponse),
    Fetch(m::FetchResponse),
    FetchSnapshot(m::FetchSnapshotResponse),
}

/// A whole-request refusal in the layout of `api`.
pub fn refusal_response(api: ApiKey, code: i16) -> Option<WireResponse> {
    Some(match api {
        ApiKey::Vote => WireResponse::Vote(m::VoteResponse::default().with_error_code(code)),
        ApiKey::BeginQuorumEpoch => WireResponse::BeginQuorumEpoch(
            m::BeginQuorumEpochResponse::default().with_error_code(code),
        ),
        ApiKey::EndQuorumEpoch => {
            WireResponse::EndQuorumEpoch(m::EndQuorumEpochResponse::default().with_error_code(code))
        }
        ApiKey::Fetch => WireResponse::Fetch(m::FetchResponse::default().with_error_code(code)),
        ApiKey::FetchSnapshot => {
            WireResponse::FetchSnapshot(m::FetchSnapshotResponse::default().with_error_code(code))
        }
        _ => return None,
    })
}

pub fn response_to_wire(response: &Response) -> WireResponse {
    match response {
        Response::Vote {
            epoch,
            leader,
            granted,
            error,
            ..
        } => WireResponse::Vote(m::VoteResponse::default().with_topics(vec![
            m::vote_response::TopicData::default()
                .with_topic_name(topic())
                .with_partitions(vec![m::vote_response::PartitionData::default()
                    .with_error_code(error_code(*error))
                    .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                    .with_leader_epoch(*epoch)
                    .with_vote_granted(*granted)]),
        ])),
        Response::BeginQuorumEpoch {
            epoch,
            leader,
            error,
        } => WireResponse::BeginQuorumEpoch(m::BeginQuorumEpochResponse::default().with_topics(
            vec![m::begin_quorum_epoch_response::TopicData::default()
                .with_topic_name(topic())
                .with_partitions(vec![
                    m::begin_quorum_epoch_response::PartitionData::default()
                        .with_error_code(error_code(*error))
                        .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                        .with_leader_epoch(*epoch),
                ])],
        )),
        Response::EndQuorumEpoch {
            epoch,
            leader,
            error,
        } => WireResponse::EndQuorumEpoch(m::EndQuorumEpochResponse::default().with_topics(
            vec![m::end_quorum_epoch_response::TopicData::default()
                .with_topic_name(topic())
                .with_partitions(vec![m::end_quorum_epoch_response::PartitionData::default()
                    .with_error_code(error_code(*error))
                    .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                    .with_leader_epoch(*epoch)])],
        )),
        Response::Fetch {
            epoch,
            leader,
            high_watermark,
            log_start,
            entries,
            diverging,
            snapshot_id,
            error,
        } => {
            let mut p = m::fetch_response::PartitionData::default()
                .with_error_code(error_code(*error))
                .with_high_watermark(*high_watermark)
                .with_log_start_offset(*log_start)
                .with_current_leader(
                    m::fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                        .with_leader_epoch(*epoch),
                )
                .with_records(Some(encode_entries(entries)));
            if let Some((e, end)) = diverging {
                p = p.with_diverging_epoch(
                    m::fetch_response::EpochEndOffset::default()
                        .with_epoch(*e)
                        .with_end_offset(*end),
                );
            }
            if let Some((end, e)) = snapshot_id {
                p = p.with_snapshot_id(
                    m::fetch_response::SnapshotId::default()
                        .with_end_offset(*end)
                        .with_epoch(*e),
                );
            }
            WireResponse::Fetch(m::FetchResponse::default().with_responses(vec![
                m::fetch_response::FetchableTopicResponse::default()
                    .with_topic(topic())
                    .with_partitions(vec![p]),
            ]))
        }
        Response::FetchSnapshot {
            epoch,
            leader,
            end_offset,
            snapshot_epoch,
            size,
            position,
            data,
            error,
        } => WireResponse::FetchSnapshot(m::FetchSnapshotResponse::default().with_topics(vec![
            m::fetch_snapshot_response::TopicSnapshot::default()
                .with_name(topic())
                .with_partitions(vec![m::fetch_snapshot_response::PartitionSnapshot::default()
                    .with_error_code(error_code(*error))
                    .with_snapshot_id(
                        m::fetch_snapshot_response::SnapshotId::default()
                            .with_end_offset(*end_offset)
                            .with_epoch(*snapshot_epoch),
                    )
                    .with_current_leader(
                        m::fetch_snapshot_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                            .with_leader_epoch(*epoch),
                    )
                    .with_size((*size).min(i64::MAX as u64) as i64)
                    .with_position((*position).min(i64::MAX as u64) as i64)
                    .with_unaligned_records(data.clone())]),
        ])),
    }
}

/// Turn a peer's response into the core's form; `Err` explains why it is dropped.
pub fn response_from_wire(
    api_key: ApiKey,
    version: i16,
    body: Bytes,
    pre_vote: bool,
) -> Result<Response, String> {
    use crate::node::peers::decode_response;
    let bad = |what: &str| format!("{api_key:?} v{version} response: {what}");
    match api_key {
        ApiKey::Vote => {
            let r: m::VoteResponse =
                decode_response(body, version).ok_or_else(|| bad("undecodable"))?;
            let p = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| bad(&format!("no partition (error {})", r.error_code)))?;
            let error = raft_error(p.error_code).map_err(|c| bad(&format!("error {c}")))?;
            Ok(Response::Vote {
                epoch: p.leader_epoch,
                leader: leader_opt(p.leader_id.0),
                granted: p.vote_granted,
                pre_vote,
                error,
            })
        }
        ApiKey::BeginQuorumEpoch => {
            let r: m::BeginQuorumEpochResponse =
                decode_response(body, version).ok_or_else(|| bad("undecodable"))?;
            let p = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| bad(&format!("no partition (error {})", r.error_code)))?;
            let error = raft_error(p.error_code).map_err(|c| bad(&format!("error {c}")))?;
            Ok(Response::BeginQuorumEpoch {
                epoch: p.leader_epoch,
                leader: leader_opt(p.leader_id.0),
                error,
            })
        }
        ApiKey::EndQuorumEpoch => {
            let r: m::EndQuorumEpochResponse =
                decode_response(body, version).ok_or_else(|| bad("undecodable"))?;
            let p = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| bad(&format!("no partition (error {})", r.error_code)))?;
            let error = raft_error(p.error_code).map_err(|c| bad(&format!("error {c}")))?;
            Ok(Response::EndQuorumEpoch {
                epoch: p.leader_epoch,
                leader: leader_opt(p.leader_id.0),
                error,
            })
        }
        ApiKey::Fetch => {
            let r: m::FetchResponse =
                decode_response(body, version).ok_or_else(|| bad("undecodable"))?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| bad(&format!("no partition (error {})", r.error_code)))?;
            let error = raft_error(p.error_code).map_err(|c| bad(&format!("error {c}")))?;
            let entries = match &p.records {
                Some(bytes) => decode_entries(bytes).map_err(|e| bad(&e))?,
                None => Vec::new(),
            };
            let diverging = (p.diverging_epoch.epoch >= 0)
                .then_some((p.diverging_epoch.epoch, p.diverging_epoch.end_offset));
            let snapshot_id = (p.snapshot_id.end_offset >= 0)
                .then_some((p.snapshot_id.end_offset, p.snapshot_id.epoch));
            Ok(Response::Fetch {
                epoch: p.current_leader.leader_epoch,
                leader: leader_opt(p.current_leader.leader_id.0),
                high_watermark: p.high_watermark,
                log_start: p.log_start_offset,
                entries,
                diverging,
                snapshot_id,
                error,
            })
        }
        ApiKey::FetchSnapshot => {
            let r: m::FetchSnapshotResponse =
                decode_response(body, version).ok_or_else(|| bad("undecodable"))?;
            let p = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| bad(&format!("no partition (error {})", r.error_code)))?;
            let error = raft_error(p.error_code).map_err(|c| bad(&format!("error {c}")))?;
            if p.size < 0 || p.position < 0 {
                return Err(bad("negative size or position"));
            }
            Ok(Response::FetchSnapshot {
                epoch: p.current_leader.leader_epoch,
                leader: leader_opt(p.current_leader.leader_id.0),
                end_offset: p.snapshot_id.end_offset,
                snapshot_epoch: p.snapshot_id.epoch,
                size: p.size as u64,
                position: p.position as u64,
                data: p.unaligned_records.clone(),
                error,
            })
        }
        other => Err(format!("{other:?} is not a quorum API")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn round_trip<T: Encodable + Decodable>(msg: &T, version: i16) -> T {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version).unwrap();
        T::decode(&mut buf.freeze(), version).unwrap()
    }

    #[test]
    fn requests_survive_the_wire() {
        let requests = [
            Request::Vote {
                epoch: 4,
                candidate: 2,
                last_epoch: 3,
                last_end_offset: 17,
                pre_vote: true,
            },
            Request::BeginQuorumEpoch {
                epoch: 5,
                leader: 1,
            },
            Request::EndQuorumEpoch {
                epoch: 5,
                leader: 1,
                preferred_successors: vec![2, 0],
            },
            Request::Fetch {
                epoch: 5,
                replica: 2,
                fetch_offset: 10,
                last_fetched_epoch: 4,
                max_wait_ms: 500,
            },
            Request::FetchSnapshot {
                epoch: 5,
                replica: 2,
                end_offset: 100,
                snapshot_epoch: 4,
                position: 65536,
            },
        ];
        for request in requests {
            let back = match to_wire(&request, "c1", 7) {
                WireRequest::Vote(r) => vote_from_wire(&round_trip(&r, VOTE_VERSION), "c1"),
                WireRequest::BeginQuorumEpoch(r) => {
                    begin_epoch_from_wire(&round_trip(&r, BEGIN_EPOCH_VERSION), "c1")
                }
                WireRequest::EndQuorumEpoch(r) => {
                    end_epoch_from_wire(&round_trip(&r, END_EPOCH_VERSION), "c1")
                }
                WireRequest::Fetch(r) => {
                    let r = round_trip(&r, FETCH_VERSION);
                    assert!(is_quorum_fetch(&r));
                    fetch_from_wire(&r, "c1")
                }
                WireRequest::FetchSnapshot(r) => {
                    fetch_snapshot_from_wire(&round_trip(&r, FETCH_SNAPSHOT_VERSION), "c1")
                }
            };
            assert_eq!(back.unwrap(), request);
        }
    }

    #[test]
    fn a_request_from_another_cluster_is_refused() {
        let WireRequest::Vote(r) = to_wire(
            &Request::Vote {
                epoch: 1,
                candidate: 1,
                last_epoch: 0,
                last_end_offset: 0,
                pre_vote: false,
            },
            "theirs",
            0,
        ) else {
            unreachable!()
        };
        assert_eq!(vote_from_wire(&r, "ours"), Err(Refusal::Cluster));
    }

    #[test]
    fn responses_survive_the_wire() {
        let entries = vec![
            Entry {
                offset: 10,
                epoch: 4,
                kind: EntryKind::LeaderChange,
                data: Bytes::new(),
            },
            Entry {
                offset: 11,
                epoch: 4,
                kind: EntryKind::Data,
                data: Bytes::from_static(b"record"),
            },
        ];
        let responses = [
            Response::Vote {
                epoch: 4,
                leader: None,
                granted: true,
                pre_vote: true,
                error: None,
            },
            Response::Fetch {
                epoch: 4,
                leader: Some(1),
                high_watermark: 11,
                log_start: 0,
                entries,
                diverging: Some((3, 9)),
                snapshot_id: None,
                error: None,
            },
            Response::Fetch {
                epoch: 4,
                leader: Some(1),
                high_watermark: 11,
                log_start: 5,
                entries: vec![],
                diverging: None,
                snapshot_id: Some((5, 2)),
                error: Some(RaftError::NotLeader),
            },
            Response::FetchSnapshot {
                epoch: 4,
                leader: Some(1),
                end_offset: 5,
                snapshot_epoch: 2,
                size: 100,
                position: 0,
                data: Bytes::from_static(b"chunk"),
                error: None,
            },
        ];
        for response in responses {
            let (api, version, body) = match response_to_wire(&response) {
                WireResponse::Vote(r) => (ApiKey::Vote, VOTE_VERSION, encode(&r, VOTE_VERSION)),
                WireResponse::Fetch(r) => (ApiKey::Fetch, FETCH_VERSION, encode(&r, FETCH_VERSION)),
                WireResponse::FetchSnapshot(r) => (
                    ApiKey::FetchSnapshot,
                    FETCH_SNAPSHOT_VERSION,
                    encode(&r, FETCH_SNAPSHOT_VERSION),
                ),
                _ => unreachable!(),
            };
            let pre_vote = matches!(response, Response::Vote { pre_vote: true, .. });
            assert_eq!(
                response_from_wire(api, version, body, pre_vote).unwrap(),
                response
            );
        }
    }

    fn encode<T: Encodable>(msg: &T, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn damaged_entries_are_refused_whole() {
        let bytes = encode_entries(&[Entry {
            offset: 0,
            epoch: 1,
            kind: EntryKind::Data,
            data: Bytes::from_static(b"abc"),
        }]);
        let mut bad = bytes.to_vec();
        bad[15] ^= 1;
        assert!(decode_entries(&Bytes::from(bad)).is_err());
        assert!(decode_entries(&bytes.slice(..10)).is_err());
        assert_eq!(decode_entries(&bytes).unwrap().len(), 1);
    }
}
