//! WriteTxnMarkers: the transaction coordinator asks each partition leader
//! of a transaction to write its commit or abort marker. Each marker is
//! appended like an acks=all produce and answered once replicated, so a
//! coordinator that hears NONE knows the transaction's end is committed
//! there. A partition with no open transaction of the producer (a retried
//! marker, or a partition the transaction never wrote to) writes nothing,
//! and is answered once everything already in its log is committed: a
//! retried marker's first copy may not be replicated yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};

use super::produce::{producer_error_code, PendingProduce, ProducePartition};
use super::{decode, HandlerResult, Node, OpKind, PartId, ReplyTo};
use crate::log::producers::Marker;
use crate::log::{LogError, LogState};
use crate::protocol::{self, RawRequest};
use crate::seam::{Now, Output};

/// How long markers wait to be replicated before REQUEST_TIMED_OUT (the
/// request has no timeout field; Kafka's request.timeout.ms default).
const MARKER_TIMEOUT_MS: u64 = 30_000;

impl Node {
    pub(super) fn handle_write_txn_markers(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: WriteTxnMarkersRequest = decode(raw)?;
        let mut topics = Vec::new();
        let mut markers = Vec::with_capacity(request.markers.len());
        let mut waiting_on = Vec::new();
        for m in request.markers {
            let pid = m.producer_id.0;
            let marker = Marker {
                commit: m.transaction_result,
                coordinator_epoch: m.coordinator_epoch,
            };
            markers.push((pid, m.topics.len()));
            for topic in m.topics {
                let name = topic.name.0.to_string();
                let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
                for index in topic.partition_indexes {
                    let mut result = ProducePartition::new(index);
                    match self.write_marker(&name, index, pid, m.producer_epoch, marker, now, out) {
                        Ok((part, awaiting)) => {
                            result.part = Some(part);
                            result.awaiting = awaiting;
                            waiting_on.push(part);
                        }
                        Err((error, message)) => {
                            tracing::info!(conn = reply.conn, topic = %name, partition = index, producer_id = pid, error = ?error, message = ?message, "marker refused");
                            result.error = error.code();
                        }
                    }
                    partitions.push(result);
                }
                topics.push((topic.name, partitions));
            }
        }
        let id = self.park(
            reply,
            Some(now.after_millis(MARKER_TIMEOUT_MS)),
            OpKind::Produce(PendingProduce {
                topics,
                acks: -1,
                markers: Some(markers),
            }),
            &waiting_on,
        );
        waiting_on.dedup();
        for part in waiting_on {
            self.after_log_activity(part, now, out);
        }
        self.produce_poll(id, false, out);
        Ok(())
    }

    /// Append one marker; the partition and the offset to wait for.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_marker(
        &mut self,
        topic: &str,
        index: i32,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(PartId, Option<i64>), (ResponseError, Option<String>)> {
        protocol::validate_topic_name(topic)
            .map_err(|why| (ResponseError::InvalidTopicException, Some(why)))?;
        if topic == super::group::OFFSETS_TOPIC {
            // Offsets committed in a transaction are not supported yet, so no
            // transaction can have written there.
            return Err((
                ResponseError::InvalidTopicException,
                Some("transactional offset commits are not supported yet".into()),
            ));
        }
        let part = self
            .leader_lookup(topic, index)
            .map_err(|error| (error, None))?;
        self.admit_produce(part, -1)?;
        let epoch = self.partition_leader_epoch(topic, index);
        let result = self
            .with_log(part, out, |log, io| match log.state() {
                LogState::Online => {
                    let written =
                        log.append_marker(producer_id, producer_epoch, marker, epoch, now, io)?;
                    let end = log.log_end_offset();
                    Ok(written.map(|info| info.last_offset).or(Some(end - 1)))
                }
                LogState::Failed(why) => Err(LogError::Offline(why.clone())),
                _ => Err(LogError::NotReady),
            })
            .unwrap_or(Err(LogError::NotReady));
        match result {
            Ok(awaiting) => {
                self.txn_verification.ended(producer_id, topic, index);
                Ok((part, awaiting.filter(|&o| o >= 0)))
            }
            Err(LogError::Producer(refused)) => {
                Err((producer_error_code(&refused), Some(refused.to_string())))
            }
            Err(LogError::Offline(why)) => Err((ResponseError::KafkaStorageError, Some(why))),
            Err(LogError::NotReady) => Err((ResponseError::NotLeaderOrFollower, None)),
            Err(other) => Err((ResponseError::UnknownServerError, Some(other.to_string()))),
        }
    }
}

/// The answer to WriteTxnMarkers: per marker (in request order), its
/// topics' partitions and their errors.
pub(super) fn markers_response(
    markers: Vec<(i64, usize)>,
    topics: Vec<(TopicName, Vec<ProducePartition>)>,
) -> WriteTxnMarkersResponse {
    let mut topics = topics.into_iter();
    let results = markers
        .into_iter()
        .map(|(pid, count)| {
            let topics = topics
                .by_ref()
                .take(count)
                .map(|(name, partitions)| {
                    WritableTxnMarkerTopicResult::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    WritableTxnMarkerPartitionResult::default()
                                        .with_partition_index(p.index)
                                        .with_error_code(p.error)
                                })
                                .collect(),
                        )
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(pid))
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(results)
}
