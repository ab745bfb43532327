//! Produce: validate and append each partition's batches, then answer once
//! they are durable (acks=1/all), at once (acks=0: no answer at all), or
//! with REQUEST_TIMED_OUT when `timeout_ms` passes first.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;

use super::{decode, HandlerResult, Node, OpId, OpKind, PartId, ReplyTo};
use crate::log::batch::BatchError;
use crate::log::producers::ProducerError;
use crate::log::{LogError, LogState};
use crate::protocol::{self, RawRequest};
use crate::seam::{Now, Output};

/// One partition of a produce request.
pub(super) struct ProducePartition {
    pub(super) index: i32,
    pub(super) part: Option<PartId>,
    pub(super) error: i16,
    pub(super) message: Option<String>,
    pub(super) base_offset: i64,
    pub(super) log_start_offset: i64,
    /// Durable once the high watermark passes this offset.
    pub(super) awaiting: Option<i64>,
    /// min.insync.replicas of the partition's topic when appended.
    pub(super) min_insync: usize,
    /// Waiting for the transaction coordinator to confirm the partition is
    /// in the batch's transaction (KIP-890); appended after.
    pub(super) verifying: bool,
}

impl ProducePartition {
    pub(super) fn new(index: i32) -> ProducePartition {
        ProducePartition {
            index,
            part: None,
            error: 0,
            message: None,
            base_offset: -1,
            log_start_offset: -1,
            awaiting: None,
            min_insync: 1,
            verifying: false,
        }
    }
}

pub(super) struct PendingProduce {
    pub(super) topics: Vec<(kafka_protocol::messages::TopicName, Vec<ProducePartition>)>,
    /// 1: the leader's own copy counts; -1: the high watermark must pass.
    pub(super) acks: i16,
    /// A WriteTxnMarkers request: (producer id, how many of `topics` are its
    /// marker's), in order; answered in that shape instead of a produce's.
    pub(super) markers: Option<Vec<(i64, usize)>>,
}

/// The Kafka error code for a batch or marker the producer state refuses.
pub(super) fn producer_error_code(refused: &ProducerError) -> ResponseError {
    match refused {
        ProducerError::InvalidRecord(_) => ResponseError::InvalidRecord,
        ProducerError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        ProducerError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        ProducerError::UnknownProducerId(_) => ResponseError::UnknownProducerId,
        ProducerError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        ProducerError::CoordinatorFenced(_) => ResponseError::TransactionCoordinatorFenced,
    }
}

impl Node {
    pub(super) fn handle_produce(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: ProduceRequest = decode(raw)?;
        let acks = request.acks;
        let txn_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
        let mut topics = Vec::with_capacity(request.topic_data.len());
        let mut waiting_on = Vec::new();
        let mut to_verify = Vec::new();
        for topic in request.topic_data {
            let name = topic.name.0.to_string();
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for data in topic.partition_data {
                let mut result = ProducePartition::new(data.index);
                let outcome = if !matches!(acks, -1..=1) {
                    Err((ResponseError::InvalidRequiredAcks, None))
                } else if let Err(why) = protocol::validate_topic_name(&name) {
                    Err((ResponseError::InvalidTopicException, Some(why)))
                } else if name == super::group::OFFSETS_TOPIC || name == super::txn_host::TXN_TOPIC
                {
                    // Only the group coordinator writes there (Kafka refuses too).
                    Err((
                        ResponseError::InvalidTopicException,
                        Some(format!("cannot produce to the internal topic {name}")),
                    ))
                } else if let Some(pid) = self.unissued_producer_id(data.records.as_deref()) {
                    Err((
                        ResponseError::UnknownProducerId,
                        Some(format!(
                            "producer id {pid} was never handed out by InitProducerId"
                        )),
                    ))
                } else {
                    match self.leader_lookup(&name, data.index) {
                        Ok(part) => match self.admit_produce(part, acks) {
                            Ok(min_insync) => {
                                result.part = Some(part);
                                result.min_insync = min_insync;
                                match self.verify_transactional(
                                    part,
                                    &name,
                                    data.index,
                                    &data.records,
                                ) {
                                    Ok(()) => self.append_one(part, data.records, now, out),
                                    Err(refused) => match self
                                        .remote_txn_coordinator(txn_id.as_deref(), acks)
                                    {
                                        Some(coordinator) => {
                                            result.verifying = true;
                                            to_verify.push(super::txn_verify::ToVerify {
                                                topic_slot: topics.len(),
                                                part_slot: partitions.len(),
                                                part,
                                                topic: name.clone(),
                                                index: data.index,
                                                records: data.records.clone().unwrap_or_default(),
                                                txn_id: txn_id.clone().unwrap_or_default(),
                                                coordinator,
                                            });
                                            Err(refused)
                                        }
                                        None => Err(refused),
                                    },
                                }
                            }
                            Err(refused) => Err(refused),
                        },
                        Err(error) => Err((error, None)),
                    }
                };
                match outcome {
                    Ok(info) => {
                        result.base_offset = info.base_offset;
                        result.log_start_offset = info.log_start_offset;
                        result.awaiting = Some(info.last_offset);
                        if let Some(part) = result.part {
                            waiting_on.push(part);
                        }
                    }
                    // Answered once the coordinator has confirmed; the
                    // request waits on the partition from now on.
                    Err(_) if result.verifying => waiting_on.extend(result.part),
                    Err((error, message)) => {
                        result.error = error.code();
                        result.message = message;
                    }
                }
                partitions.push(result);
            }
            topics.push((topic.name, partitions));
        }

        if acks == 0 {
            // No answer is ever sent for acks=0; Kafka closes the connection
            // on an error so the client notices.
            let failed = topics.iter().flat_map(|(_, p)| p).find(|p| p.error != 0);
            if let Some(failed) = failed {
                tracing::warn!(
                    conn = reply.conn,
                    error = failed.error,
                    "acks=0 produce failed; closing"
                );
                self.conns.remove(&reply.conn);
                out.push(Output::Close { conn: reply.conn });
            } else {
                self.answer(reply, None, out);
            }
            waiting_on.dedup();
            for part in waiting_on {
                self.after_log_activity(part, now, out);
            }
            return Ok(());
        }
        let deadline = now.after_millis(request.timeout_ms.max(0) as u64);
        let id = self.park(
            reply,
            Some(deadline),
            OpKind::Produce(PendingProduce {
                topics,
                acks,
                markers: None,
            }),
            &waiting_on,
        );
        self.send_txn_verifications(id, to_verify, now, out);
        // Appends may have settled at once, and parked fetches may now have data.
        waiting_on.dedup();
        for part in waiting_on {
            self.after_log_activity(part, now, out);
        }
        self.produce_poll(id, false, out);
        Ok(())
    }

    /// KIP-890: a transactional batch may open a transaction in a partition
    /// only if the coordinator added the partition to it; once one is open
    /// here, the rest of its batches follow freely.
    fn verify_transactional(
        &self,
        part: PartId,
        topic: &str,
        index: i32,
        records: &Option<bytes::Bytes>,
    ) -> Result<(), (ResponseError, Option<String>)> {
        let Some(h) = records
            .as_deref()
            .and_then(|r| crate::log::batch::parse_header(r).ok())
        else {
            return Ok(());
        };
        if h.attributes & crate::log::producers::TRANSACTIONAL_FLAG == 0 || h.producer_id < 0 {
            return Ok(());
        }
        let open = self.partitions.get(&part).is_some_and(|p| {
            p.log
                .producer_states()
                .get(h.producer_id)
                .is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == h.producer_epoch)
        });
        if open
            || self
                .txn_verification
                .includes(h.producer_id, h.producer_epoch, topic, index)
            || self
                .txns
                .includes(h.producer_id, h.producer_epoch, topic, index)
        {
            return Ok(());
        }
        Err((
            ResponseError::InvalidTxnState,
            Some(format!(
                "{topic}-{index} is not part of an open transaction of producer {} epoch {} (AddPartitionsToTxn first)",
                h.producer_id, h.producer_epoch
            )),
        ))
    }

    /// The producer id of a batch that names one no block ever held.
    fn unissued_producer_id(&self, records: Option<&[u8]>) -> Option<i64> {
        let header = crate::log::batch::parse_header(records?).ok()?;
        let pid = header.producer_id;
        (pid >= 0 && self.producer_id_never_issued(pid)).then_some(pid)
    }

    /// Whether this replica may take a produce now: it must lead, and for
    /// acks=all its ISR must be at least `min.insync.replicas` (which is
    /// returned, to check again once the write is replicated).
    pub(super) fn admit_produce(
        &self,
        part: PartId,
        acks: i16,
    ) -> Result<usize, (ResponseError, Option<String>)> {
        if !self.leads(part) {
            return Err((ResponseError::NotLeaderOrFollower, None));
        }
        let min_insync = self.min_insync_replicas(part);
        let insync = self.insync_count(part);
        if acks == -1 && insync < min_insync {
            return Err((
                ResponseError::NotEnoughReplicas,
                Some(format!(
                    "the in-sync replicas are {insync} of the {min_insync} min.insync.replicas requires"
                )),
            ));
        }
        Ok(min_insync)
    }

    pub(super) fn append_one(
        &mut self,
        part: PartId,
        records: Option<bytes::Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<crate::log::AppendInfo, (ResponseError, Option<String>)> {
        let Some(records) = records else {
            return Err((ResponseError::CorruptMessage, Some("no records".into())));
        };
        let epoch = self.partitions.get(&part).map_or(self.leader_epoch, |p| {
            self.partition_leader_epoch(&p.topic, p.index)
        });
        let result = self
            .with_log(part, out, |log, io| match log.state() {
                LogState::Online => log.append(records, epoch, now, io),
                LogState::Opening => Err(LogError::NotReady),
                LogState::Failed(why) => Err(LogError::Offline(why.clone())),
                LogState::Deleting | LogState::Deleted => Err(LogError::NotReady),
            })
            .unwrap_or(Err(LogError::NotReady));
        result.map_err(|e| match e {
            LogError::Batch(BatchError::TooLarge { size, max }) => (
                ResponseError::MessageTooLarge,
                Some(format!(
                    "batch of {size} bytes exceeds message.max.bytes={max}"
                )),
            ),
            LogError::Batch(other) => (ResponseError::CorruptMessage, Some(other.to_string())),
            LogError::Producer(refused) => {
                (producer_error_code(&refused), Some(refused.to_string()))
            }
            LogError::Offline(why) => (ResponseError::KafkaStorageError, Some(why)),
            LogError::NotReady => (ResponseError::NotLeaderOrFollower, None),
            LogError::OffsetOutOfRange { .. } => (ResponseError::UnknownServerError, None),
        })
    }

    /// Settle what can be settled; answer when nothing is left waiting.
    /// `expired`: the request's timeout has passed.
    pub(super) fn produce_poll(&mut self, id: OpId, expired: bool, out: &mut Vec<Output>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let OpKind::Produce(pending) = &mut op.kind else {
            return;
        };
        let acks = pending.acks;
        let mut open = false;
        for (_, partitions) in &mut pending.topics {
            for p in partitions.iter_mut() {
                if p.verifying {
                    if expired {
                        p.verifying = false;
                        p.error = ResponseError::RequestTimedOut.code();
                    } else {
                        open = true;
                    }
                    continue;
                }
                let Some(last) = p.awaiting else { continue };
                let partition = p.part.and_then(|part| self.partitions.get(&part));
                let log = partition.map(|x| &x.log);
                let leading = partition.is_some_and(|x| {
                    matches!(
                        x.role,
                        super::replication::ReplicaRole::Standalone
                            | super::replication::ReplicaRole::Leader(_)
                    )
                });
                let insync = match partition.map(|x| &x.role) {
                    Some(super::replication::ReplicaRole::Leader(l)) => l.maximal_isr().len(),
                    _ => usize::MAX,
                };
                let required = p.min_insync;
                match log {
                    Some(_) if !leading => {
                        p.awaiting = None;
                        p.error = ResponseError::NotLeaderOrFollower.code();
                        p.base_offset = -1;
                    }
                    Some(log) if acks == 1 && log.local_end_offset() > last => p.awaiting = None,
                    Some(log) if acks != 1 && log.high_watermark() > last => {
                        p.awaiting = None;
                        // Kafka's check once replicated: the ISR it was replicated to
                        // may have shrunk below min.insync.replicas meanwhile.
                        if insync < required {
                            p.error = ResponseError::NotEnoughReplicasAfterAppend.code();
                            p.base_offset = -1;
                        }
                    }
                    Some(log) if matches!(log.state(), LogState::Failed(_)) => {
                        p.awaiting = None;
                        p.error = ResponseError::KafkaStorageError.code();
                        p.base_offset = -1;
                    }
                    None => {
                        // Deleted while waiting.
                        p.awaiting = None;
                        p.error = ResponseError::UnknownTopicOrPartition.code();
                        p.base_offset = -1;
                    }
                    Some(_) if expired => {
                        p.awaiting = None;
                        p.error = ResponseError::RequestTimedOut.code();
                        p.base_offset = -1;
                    }
                    Some(_) => open = true,
                }
            }
        }
        if open {
            return;
        }
        let Some(op) = self.unpark(id) else { return };
        let OpKind::Produce(mut pending) = op.kind else {
            return;
        };
        if let Some(markers) = pending.markers.take() {
            let response = super::txn_markers::markers_response(markers, pending.topics);
            self.respond(op.reply, &response, out);
            return;
        }
        let response = ProduceResponse::default().with_responses(
            pending
                .topics
                .into_iter()
                .map(|(name, partitions)| {
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_partition_responses(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_error_code(p.error)
                                        .with_base_offset(p.base_offset)
                                        .with_log_append_time_ms(-1)
                                        .with_log_start_offset(p.log_start_offset)
                                        .with_error_message(p.message.map(StrBytes::from_string))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        self.respond(op.reply, &response, out);
    }
}
