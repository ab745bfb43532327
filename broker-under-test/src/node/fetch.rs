//! Fetch with long polling: a fetch that finds fewer than `min_bytes` waits
//! (parked on its partitions) until appends make enough data durable or
//! `max_wait_ms` passes; then every partition is read from its log and the
//! answer is assembled within `max_bytes`.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, TopicName};

use super::{decode, HandlerResult, Node, OpId, OpKind, PartId, ReplyTo};
use crate::log::producers::AbortedTxn;
use crate::log::{FetchData, LogError, LogState};
use crate::seam::{Now, Output};

/// Fetch v7+ session errors.
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

pub(super) struct FetchPartition {
    topic: usize,
    index: i32,
    part: Option<PartId>,
    fetch_offset: i64,
    max_bytes: usize,
    error: i16,
    /// Filled in by the read.
    data: Option<FetchData>,
    /// The read token while a read is outstanding.
    reading: Option<u64>,
    /// A follower's log diverges here (epoch, end offset): answered with no records.
    diverging: Option<(i32, i64)>,
}

pub(super) struct PendingFetch {
    topics: Vec<TopicName>,
    partitions: Vec<FetchPartition>,
    min_bytes: u64,
    max_bytes: usize,
    /// Reads have been issued; waiting for them.
    reading: bool,
    error_code: i16,
    /// A follower's replica fetch (its broker id): reads go up to the log end.
    replica: Option<i32>,
    /// isolation_level 1: reads stop at the last stable offset.
    read_committed: bool,
}

impl Node {
    pub(super) fn handle_fetch(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequestAlias,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: FetchRequest = decode(raw)?;
        if super::quorum_wire::is_quorum_fetch(&request) {
            let parsed = super::quorum_wire::fetch_from_wire(&request, &self.config.cluster_id);
            self.quorum_request(
                now,
                reply,
                kafka_protocol::messages::ApiKey::Fetch,
                parsed,
                out,
            );
            return Ok(());
        }
        let mut topics = Vec::new();
        let mut partitions = Vec::new();
        let mut error_code = 0;
        // Incremental fetch sessions (KIP-227) are not kept: a client asking to
        // open one gets session id 0 and keeps sending full fetches; one that
        // names a session is told it does not exist.
        if raw.api_version >= 7 && request.session_id != 0 {
            error_code = FETCH_SESSION_ID_NOT_FOUND;
        }
        let replica = (request.replica_id.0 >= 0).then_some(request.replica_id.0);
        for topic in &request.topics {
            let topic_index = topics.len();
            topics.push(topic.topic.clone());
            let name = topic.topic.0.as_str();
            for p in &topic.partitions {
                let (part, not_served) = match self.leader_lookup(name, p.partition) {
                    Ok(part) => (Some(part), None),
                    Err(error) => (None, Some(error)),
                };
                let mut error = match part
                    .and_then(|id| self.partitions.get(&id))
                    .map(|x| x.log.state())
                {
                    None => not_served
                        .unwrap_or(ResponseError::UnknownTopicOrPartition)
                        .code(),
                    Some(LogState::Online) => 0,
                    Some(LogState::Failed(_)) => ResponseError::KafkaStorageError.code(),
                    Some(_) => ResponseError::NotLeaderOrFollower.code(),
                };
                let mut diverging = None;
                if let (0, Some(id)) = (error, part) {
                    error = self.check_leader_epoch(id, p.current_leader_epoch);
                }
                if let (0, Some(id), Some(follower)) = (error, part, replica) {
                    match self.leader_on_replica_fetch(
                        id,
                        follower,
                        p.fetch_offset,
                        p.last_fetched_epoch,
                        now,
                        out,
                    ) {
                        Ok(d) => diverging = d,
                        Err(code) => error = code,
                    }
                }
                partitions.push(FetchPartition {
                    topic: topic_index,
                    index: p.partition,
                    part,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    error,
                    data: None,
                    reading: None,
                    diverging,
                });
            }
        }
        let wait_ms = (request.max_wait_ms.max(0) as u64).min(self.config.fetch_max_wait_cap_ms);
        let parts: Vec<PartId> = partitions.iter().filter_map(|p| p.part).collect();
        let pending = PendingFetch {
            topics,
            partitions,
            min_bytes: request.min_bytes.max(0) as u64,
            max_bytes: if request.max_bytes <= 0 {
                usize::MAX
            } else {
                request.max_bytes as usize
            },
            reading: false,
            error_code,
            replica,
            read_committed: request.isolation_level == 1 && replica.is_none(),
        };
        let id = self.park(
            reply,
            Some(now.after_millis(wait_ms)),
            OpKind::Fetch(pending),
            &parts,
        );
        if wait_ms == 0 || error_code != 0 {
            self.fetch_force(id, now, out);
        } else {
            self.fetch_poll(id, now, out);
        }
        Ok(())
    }

    /// Start reading if enough data is there, or if anything is wrong (Kafka
    /// answers errors at once).
    pub(super) fn fetch_poll(&mut self, id: OpId, now: Now, out: &mut Vec<Output>) {
        // A replica that stopped leading answers at once.
        let demoted: Vec<usize> = match self.ops.get(&id).map(|op| &op.kind) {
            Some(OpKind::Fetch(pending)) if !pending.reading => pending
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.error == 0 && p.part.is_some_and(|part| !self.leads(part)))
                .map(|(i, _)| i)
                .collect(),
            _ => return,
        };
        if let Some(OpKind::Fetch(pending)) = self.ops.get_mut(&id).map(|op| &mut op.kind) {
            for i in demoted {
                pending.partitions[i].error = ResponseError::NotLeaderOrFollower.code();
            }
        }
        let Some(OpKind::Fetch(pending)) = self.ops.get(&id).map(|op| &op.kind) else {
            return;
        };
        let mut available = 0u64;
        let mut urgent = false;
        for p in &pending.partitions {
            let log = p
                .part
                .and_then(|part| self.partitions.get(&part))
                .map(|x| &x.log);
            match log {
                Some(_) if p.diverging.is_some() => urgent = true,
                Some(log) if matches!(log.state(), LogState::Online) && p.error == 0 => {
                    // Followers may read everything appended; consumers up to the high watermark.
                    let end = if pending.replica.is_some() {
                        log.log_end_offset()
                    } else if pending.read_committed {
                        log.last_stable_offset()
                    } else {
                        log.high_watermark()
                    };
                    let hw = log.high_watermark().max(end);
                    if p.fetch_offset > hw || p.fetch_offset < log.log_start_offset() {
                        urgent = true; // out of range: answer now
                    } else {
                        available += log.bytes_available_to(p.fetch_offset, end);
                    }
                }
                _ => urgent = true,
            }
        }
        if urgent || available >= pending.min_bytes.max(1) {
            self.fetch_force(id, now, out);
        }
    }

    /// Read every partition now, whatever is there.
    pub(super) fn fetch_force(&mut self, id: OpId, now: Now, out: &mut Vec<Output>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let OpKind::Fetch(pending) = &mut op.kind else {
            return;
        };
        if pending.reading {
            return;
        }
        pending.reading = true;
        let replica = pending.replica.is_some();
        let read_committed = pending.read_committed;
        let mut reads = Vec::new();
        for (slot, p) in pending.partitions.iter().enumerate() {
            if p.error == 0 && pending.error_code == 0 && p.diverging.is_none() {
                if let Some(part) = p.part {
                    reads.push((slot, part, p.fetch_offset, p.max_bytes));
                }
            }
        }
        let parts: Vec<PartId> = reads.iter().map(|r| r.1).collect();
        for (slot, part, offset, max_bytes) in reads {
            let result = self
                .with_log(part, out, |log, io| {
                    if replica {
                        log.read_replica(offset, max_bytes, now, io)
                    } else if read_committed {
                        log.read_committed(offset, max_bytes, now, io)
                    } else {
                        log.read(offset, max_bytes, now, io)
                    }
                })
                .unwrap_or(Err(LogError::NotReady));
            match result {
                Ok(token) => {
                    self.log_tokens.insert((part, token), id);
                    if let Some(OpKind::Fetch(pending)) =
                        self.ops.get_mut(&id).map(|op| &mut op.kind)
                    {
                        pending.partitions[slot].reading = Some(token);
                    }
                }
                Err(e) => self.fetch_partition_failed(id, slot, e),
            }
        }
        // Some reads complete at once (a read at the high watermark). Only now
        // that every read is marked outstanding may completions be routed:
        // routing one earlier would answer the fetch without the rest.
        for part in parts {
            self.drain_reads(part, now, out);
        }
        self.fetch_maybe_answer(id, out);
    }

    fn drain_reads(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        // Only events; waking is left to the caller to avoid recursion.
        while let Some(event) = self
            .partitions
            .get_mut(&part)
            .and_then(|p| p.log.poll_event())
        {
            self.dispatch_log_event(part, event, now, out);
        }
    }

    fn fetch_partition_failed(&mut self, id: OpId, slot: usize, error: LogError) {
        let Some(OpKind::Fetch(pending)) = self.ops.get_mut(&id).map(|op| &mut op.kind) else {
            return;
        };
        let p = &mut pending.partitions[slot];
        p.reading = None;
        p.error = match error {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
            LogError::Offline(_) => ResponseError::KafkaStorageError.code(),
            LogError::NotReady => ResponseError::NotLeaderOrFollower.code(),
            LogError::Batch(_) | LogError::Producer(_) => ResponseError::CorruptMessage.code(),
        };
    }

    pub(super) fn fetch_read_done(
        &mut self,
        id: OpId,
        part: PartId,
        token: u64,
        result: Result<FetchData, LogError>,
        out: &mut Vec<Output>,
    ) {
        let Some(OpKind::Fetch(pending)) = self.ops.get_mut(&id).map(|op| &mut op.kind) else {
            return;
        };
        let Some(slot) = pending
            .partitions
            .iter()
            .position(|p| p.part == Some(part) && p.reading == Some(token))
        else {
            return;
        };
        match result {
            Ok(data) => {
                pending.partitions[slot].reading = None;
                pending.partitions[slot].data = Some(data);
            }
            Err(e) => self.fetch_partition_failed(id, slot, e),
        }
        self.fetch_maybe_answer(id, out);
    }

    fn fetch_maybe_answer(&mut self, id: OpId, out: &mut Vec<Output>) {
        let Some(OpKind::Fetch(pending)) = self.ops.get(&id).map(|op| &op.kind) else {
            return;
        };
        if !pending.reading || pending.partitions.iter().any(|p| p.reading.is_some()) {
            return;
        }
        let Some(op) = self.unpark(id) else { return };
        let OpKind::Fetch(pending) = op.kind else {
            return;
        };
        let read_committed = pending.read_committed;
        let mut budget = pending.max_bytes;
        let mut first = true;
        let mut by_topic: Vec<Vec<PartitionData>> = vec![Vec::new(); pending.topics.len()];
        for p in pending.partitions {
            let log = p
                .part
                .and_then(|part| self.partitions.get(&part))
                .map(|x| &x.log);
            let (hw, start, lso) = log
                .map(|l| {
                    (
                        l.high_watermark(),
                        l.log_start_offset(),
                        l.last_stable_offset(),
                    )
                })
                .unwrap_or((-1, -1, -1));
            let mut records = Bytes::new();
            let (mut high_watermark, mut log_start, mut last_stable) = (hw, start, lso);
            let mut aborted = Vec::new();
            if let Some(data) = p.data {
                high_watermark = data.high_watermark;
                log_start = data.log_start_offset;
                last_stable = data.last_stable_offset;
                aborted = data.aborted.unwrap_or_default();
                // The response limit: at least the first non-empty answer goes
                // whole (KIP-74); later ones only if they fit.
                if first || data.records.len() <= budget {
                    budget = budget.saturating_sub(data.records.len());
                    if !data.records.is_empty() {
                        first = false;
                    }
                    records = data.records;
                }
            }
            let diverging = p
                .diverging
                .map_or_else(Default::default, |(epoch, end_offset)| {
                    kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset)
                });
            by_topic[p.topic].push(
                PartitionData::default()
                    .with_diverging_epoch(diverging)
                    .with_partition_index(p.index)
                    .with_error_code(p.error)
                    .with_high_watermark(high_watermark)
                    .with_last_stable_offset(last_stable)
                    .with_log_start_offset(log_start)
                    .with_aborted_transactions(Some(aborted_list(read_committed, &aborted)))
                    .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                    .with_records(Some(records)),
            );
        }
        let response = FetchResponse::default()
            .with_error_code(pending.error_code)
            .with_session_id(0)
            .with_responses(
                pending
                    .topics
                    .into_iter()
                    .zip(by_topic)
                    .map(|(topic, partitions)| {
                        FetchableTopicResponse::default()
                            .with_topic(topic)
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.respond(op.reply, &response, out);
    }
}

type RawRequestAlias = crate::protocol::RawRequest;

/// The aborted transactions of a partition's answer: what a read_committed
/// consumer needs to drop aborted records (none for read_uncommitted).
fn aborted_list(read_committed: bool, aborted: &[AbortedTxn]) -> Vec<AbortedTransaction> {
    if !read_committed {
        return Vec::new();
    }
    aborted
        .iter()
        .map(|t| {
            AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect()
}
