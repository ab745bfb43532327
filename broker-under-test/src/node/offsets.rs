//! ListOffsets: earliest (-2), latest (-1: the high watermark, or the last
//! stable offset for read_committed), max timestamp (-3) from memory;
//! by timestamp through the log's time index (a disk read, so it may wait).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, TopicName};

use super::{decode, HandlerResult, Node, OpId, OpKind, PartId, ReplyTo};
use crate::log::{LogError, LogState};
use crate::protocol::RawRequest;
use crate::seam::{Now, Output};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// One partition's answer: its topic's slot, the answer so far, and the
/// outstanding timestamp lookup (partition, token) if any.
type PartitionAnswer = (usize, ListOffsetsPartitionResponse, Option<(PartId, u64)>);

pub(super) struct PendingListOffsets {
    topics: Vec<TopicName>,
    partitions: Vec<PartitionAnswer>,
}

impl Node {
    pub(super) fn handle_list_offsets(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: ListOffsetsRequest = decode(raw)?;
        // read_committed (v2+): the latest offset is the last stable offset.
        let read_committed = request.isolation_level == 1;
        let mut topics = Vec::new();
        let mut partitions = Vec::new();
        let mut lookups = Vec::new();
        for topic in request.topics {
            let slot = topics.len();
            let name = topic.name.0.to_string();
            topics.push(topic.name);
            for p in topic.partitions {
                let mut answer = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    // leader_epoch exists from v4; earlier versions refuse a non-default value.
                    .with_leader_epoch(if raw.api_version >= 4 {
                        self.partition_leader_epoch(&name, p.partition_index)
                    } else {
                        -1
                    });
                let (part, not_served) = match self.leader_lookup(&name, p.partition_index) {
                    Ok(part) if !self.leads(part) => {
                        (None, Some(ResponseError::NotLeaderOrFollower))
                    }
                    Ok(part) => match self.check_leader_epoch(part, p.current_leader_epoch) {
                        0 => (Some(part), None),
                        code => (None, Some(epoch_error(code))),
                    },
                    Err(error) => (None, Some(error)),
                };
                let log = part.and_then(|id| self.partitions.get(&id)).map(|x| &x.log);
                match log {
                    None => {
                        answer.error_code = not_served
                            .unwrap_or(ResponseError::UnknownTopicOrPartition)
                            .code()
                    }
                    Some(log) => match log.state() {
                        LogState::Online => match p.timestamp {
                            EARLIEST => answer.offset = log.log_start_offset(),
                            LATEST if read_committed => answer.offset = log.last_stable_offset(),
                            LATEST => answer.offset = log.high_watermark(),
                            MAX_TIMESTAMP => {
                                if let Some((offset, ts)) = log.max_timestamp() {
                                    answer.offset = offset;
                                    answer.timestamp = ts;
                                }
                            }
                            ts if ts >= 0 => {
                                if let Some(part) = part {
                                    lookups.push((partitions.len(), part, ts));
                                }
                            }
                            _ => answer.error_code = ResponseError::InvalidRequest.code(),
                        },
                        LogState::Failed(_) => {
                            answer.error_code = ResponseError::KafkaStorageError.code()
                        }
                        _ => answer.error_code = ResponseError::NotLeaderOrFollower.code(),
                    },
                }
                partitions.push((slot, answer, None));
            }
        }
        let id = self.park(
            reply,
            None,
            OpKind::ListOffsets(PendingListOffsets { topics, partitions }),
            &[],
        );
        for (slot, part, ts) in lookups {
            let result = self
                .with_log(part, out, |log, io| {
                    log.find_offset_for_timestamp(ts, now, io)
                })
                .unwrap_or(Err(LogError::NotReady));
            if let Some(OpKind::ListOffsets(pending)) = self.ops.get_mut(&id).map(|op| &mut op.kind)
            {
                match result {
                    Ok(token) => {
                        pending.partitions[slot].2 = Some((part, token));
                        self.log_tokens.insert((part, token), id);
                    }
                    Err(_) => {
                        pending.partitions[slot].1.error_code =
                            ResponseError::KafkaStorageError.code()
                    }
                }
            }
            while let Some(event) = self
                .partitions
                .get_mut(&part)
                .and_then(|p| p.log.poll_event())
            {
                self.dispatch_log_event(part, event, now, out);
            }
        }
        self.list_offsets_maybe_answer(id, out);
        Ok(())
    }

    pub(super) fn list_offsets_found(
        &mut self,
        id: OpId,
        part: PartId,
        token: u64,
        result: Result<Option<(i64, i64)>, LogError>,
        out: &mut Vec<Output>,
    ) {
        let Some(OpKind::ListOffsets(pending)) = self.ops.get_mut(&id).map(|op| &mut op.kind)
        else {
            return;
        };
        if let Some(entry) = pending
            .partitions
            .iter_mut()
            .find(|(_, _, lookup)| *lookup == Some((part, token)))
        {
            entry.2 = None;
            match result {
                Ok(Some((offset, ts))) => {
                    entry.1.offset = offset;
                    entry.1.timestamp = ts;
                }
                Ok(None) => {}
                Err(_) => entry.1.error_code = ResponseError::KafkaStorageError.code(),
            }
        }
        self.list_offsets_maybe_answer(id, out);
    }

    fn list_offsets_maybe_answer(&mut self, id: OpId, out: &mut Vec<Output>) {
        let Some(OpKind::ListOffsets(pending)) = self.ops.get(&id).map(|op| &op.kind) else {
            return;
        };
        if pending
            .partitions
            .iter()
            .any(|(_, _, lookup)| lookup.is_some())
        {
            return;
        }
        let Some(op) = self.unpark(id) else { return };
        let OpKind::ListOffsets(pending) = op.kind else {
            return;
        };
        let mut topics: Vec<ListOffsetsTopicResponse> = pending
            .topics
            .into_iter()
            .map(|name| ListOffsetsTopicResponse::default().with_name(name))
            .collect();
        for (slot, answer, _) in pending.partitions {
            topics[slot].partitions.push(answer);
        }
        self.respond(
            op.reply,
            &ListOffsetsResponse::default().with_topics(topics),
            out,
        );
    }
}

fn epoch_error(code: i16) -> ResponseError {
    if code == ResponseError::FencedLeaderEpoch.code() {
        ResponseError::FencedLeaderEpoch
    } else if code == ResponseError::UnknownLeaderEpoch.code() {
        ResponseError::UnknownLeaderEpoch
    } else {
        ResponseError::NotLeaderOrFollower
    }
}

impl Node {
    /// OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader
    /// epoch in the leader's log, which a consumer or follower uses to find
    /// where its own history diverges.
    pub(super) fn handle_offset_for_leader_epoch(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        use kafka_protocol::messages::offset_for_leader_epoch_response::{
            EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
        };
        let request: kafka_protocol::messages::OffsetForLeaderEpochRequest = decode(raw)?;
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                let name = t.topic.0.to_string();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let answer = EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                        let part = match self.leader_lookup(&name, p.partition) {
                            Ok(part) if !self.leads(part) => {
                                Err(ResponseError::NotLeaderOrFollower.code())
                            }
                            Ok(part) => match self.check_leader_epoch(part, p.current_leader_epoch)
                            {
                                0 => Ok(part),
                                code => Err(code),
                            },
                            Err(e) => Err(e.code()),
                        };
                        let log = part
                            .as_ref()
                            .ok()
                            .and_then(|id| self.partitions.get(id))
                            .map(|x| &x.log);
                        match (part, log) {
                            (Err(code), _) => answer.with_error_code(code),
                            (Ok(_), Some(log)) if matches!(log.state(), LogState::Online) => {
                                let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                                answer.with_leader_epoch(epoch).with_end_offset(end)
                            }
                            (Ok(_), Some(log)) if matches!(log.state(), LogState::Failed(_)) => {
                                answer.with_error_code(ResponseError::KafkaStorageError.code())
                            }
                            (Ok(_), _) => {
                                answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                            }
                        }
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(partitions)
            })
            .collect();
        let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
        self.respond(reply, &response, out);
        Ok(())
    }
}
