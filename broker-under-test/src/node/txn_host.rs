//! The transaction coordinator of every transactional id whose
//! `__transaction_state` partition (`hash(transactional.id) % partitions`)
//! this node leads: loading those partitions from the log, the client APIs
//! (InitProducerId with a transactional id, AddPartitionsToTxn, EndTxn,
//! DescribeTransactions, ListTransactions), the markers that end each
//! transaction in its partitions, and the timeout that aborts a stuck one.
//!
//! Every state change is a record in `__transaction_state`, and nothing is
//! answered (nor any marker sent) before that record is replicated like an
//! acks=all write: a new coordinator that loads the partition knows every
//! answer the old one gave. The rules for each change are `txn::state`'s.
//! After EndTxn the coordinator writes PrepareCommit/PrepareAbort, answers,
//! sends WriteTxnMarkers to every partition's leader (itself included),
//! and once each has answered writes CompleteCommit/CompleteAbort. A
//! coordinator that loads a transaction in a Prepare state sends its
//! markers again: markers are idempotent at the partitions.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    add_partitions_to_txn_response, describe_transactions_response, list_transactions_response,
    write_txn_markers_request, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use super::cluster_admin::InternalTopic;
use super::group::encode_batch;
use super::group_wire::Located;
use super::internal_load::{LoadPhase, Loader, Loads};
use super::peers::PeerTag;
use super::{decode, HandlerResult, Node, PartId, ReplyTo, TIMER_TXN};
use crate::log::producers::Marker;
use crate::log::{FetchData, LogError, LogState};
use crate::protocol::RawRequest;
use crate::seam::{Now, Output};
use crate::txn::records;
use crate::txn::state::{
    self as txn_state, EndOutcome, InitOutcome, TxnError, TxnMetadata, TxnPartition, TxnState,
};

/// The internal topic holding the transaction coordinator's state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// How long a coordinator write waits to be replicated.
const WRITE_TIMEOUT_MS: u64 = 5_000;
/// A marker that failed is sent again after this long.
const MARKER_RETRY_MS: u64 = 100;
/// WriteTxnMarkers as sent to partition leaders.
const MARKERS_VERSION: i16 = 1;

/// Where one partition's marker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MarkerState {
    /// To be sent at this time (mono ms).
    Due(u64),
    /// Written here; done once the high watermark passes the offset.
    Local { part: PartId, awaiting: Option<i64> },
    /// Sent to another broker in request `id`.
    Remote { id: u64 },
}

#[derive(Debug)]
struct Markers {
    marker: Marker,
    left: BTreeMap<TxnPartition, MarkerState>,
}

/// One transactional id this node coordinates.
#[derive(Debug)]
pub(super) struct TxnEntry {
    /// Its `__transaction_state` partition.
    partition: i32,
    md: TxnMetadata,
    /// A change is being written: other requests get CONCURRENT_TRANSACTIONS.
    writing: bool,
    /// Markers of a Prepare state, until every partition has its own.
    markers: Option<Markers>,
}

/// What to do once a write is replicated (or failed).
#[derive(Debug)]
enum Then {
    InitProducerId(ReplyTo),
    AddPartitions(ReplyTo),
    EndTxn(ReplyTo),
    /// A Prepare state nobody waits for (a fencing InitProducerId, the timeout).
    SendMarkers,
    /// The transaction completed.
    Nothing,
}

#[derive(Debug)]
struct TxnWrite {
    part: PartId,
    last_offset: i64,
    deadline_ms: u64,
    txn_id: String,
    next: TxnMetadata,
    then: Then,
}

pub(super) struct TxnHost {
    txns: BTreeMap<String, TxnEntry>,
    /// Loading the `__transaction_state` partitions this node leads.
    pub(super) loads: Loads,
    writes: BTreeMap<u64, TxnWrite>,
    next_write: u64,
    /// Remote WriteTxnMarkers in flight: id -> (transactional id, partitions).
    remote: BTreeMap<u64, (String, Vec<TxnPartition>)>,
    next_remote: u64,
    armed: Option<u64>,
    last_abort_check_ms: u64,
}

impl Default for TxnHost {
    fn default() -> TxnHost {
        TxnHost {
            txns: BTreeMap::new(),
            loads: Loads::new(TXN_TOPIC),
            writes: BTreeMap::new(),
            next_write: 0,
            remote: BTreeMap::new(),
            next_remote: 0,
            armed: None,
            last_abort_check_ms: 0,
        }
    }
}

impl TxnHost {
    pub(super) fn take_read(&mut self, part: PartId, token: u64) -> Option<i32> {
        self.loads.take_read(part, token)
    }

    fn watches(&self, part: PartId) -> bool {
        self.loads.watches(part)
            || self.writes.values().any(|w| w.part == part)
            || self.txns.values().any(|e| {
                e.markers.as_ref().is_some_and(|m| {
                    m.left
                        .values()
                        .any(|s| matches!(s, MarkerState::Local { part: p, .. } if *p == part))
                })
            })
    }

    /// The open transaction of `producer_id` at `epoch`, if this node
    /// coordinates it and it added the partition (KIP-890 verification).
    pub(super) fn includes(&self, producer_id: i64, epoch: i16, topic: &str, index: i32) -> bool {
        self.txns.values().any(|e| {
            e.md.producer_id == producer_id
                && e.md.producer_epoch == epoch
                && e.md.state == TxnState::Ongoing
                && e.md.partitions.contains(&(topic.to_string(), index))
        })
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The error code of success.
const NONE: i16 = 0;

fn init_answer(error: i16, pid: i64, epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// A failed coordinator write, as the client is told (Kafka's mapping).
fn client_error_for_write(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

impl Node {
    fn txn_topic(&self) -> InternalTopic {
        InternalTopic {
            name: TXN_TOPIC,
            partitions: self.config.txn_state_partitions,
            replication_factor: self.config.txn_state_replication_factor,
            replication_factor_key: "transaction.state.log.replication.factor",
            min_isr: Some(self.config.txn_state_min_isr),
        }
    }

    fn txn_partition_of(&self, txn_id: &str) -> i32 {
        crate::group::partition_for(txn_id, self.config.txn_state_partitions)
    }

    /// FindCoordinator for a transactional id.
    pub(super) fn locate_txn_coordinator(
        &mut self,
        now: Now,
        txn_id: &str,
        out: &mut Vec<Output>,
    ) -> Located {
        let topic = self.txn_topic();
        let index = self.txn_partition_of(txn_id);
        let located = self.locate_internal(now, &topic, index, out);
        if self.cluster.is_none() && located.error != 0 {
            self.coordinators_reconcile(now, out);
        }
        located
    }

    /// Both coordinators follow the node's leaderships.
    pub(super) fn coordinators_reconcile(&mut self, now: Now, out: &mut Vec<Output>) {
        self.groups_reconcile(now, out);
        self.txns_reconcile(now, out);
    }

    /// Both coordinators move on after a log's activity.
    pub(super) fn coordinators_log_activity(
        &mut self,
        part: PartId,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        self.groups_log_activity(part, now, out);
        self.txns_log_activity(part, now, out);
    }

    /// Whether this node serves transactional id `txn_id` now: `Ok` with
    /// its partition, else the error to answer.
    fn txn_serving(&self, txn_id: &str) -> Result<i32, ResponseError> {
        let index = self.txn_partition_of(txn_id);
        match self.txns.loads.phase(index) {
            Some(LoadPhase::Served) => Ok(index),
            Some(_) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// The `__transaction_state` partitions this node should serve: those
    /// it leads with an open log.
    pub(super) fn txns_reconcile(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.config.is_broker() && self.cluster.is_some() {
            return;
        }
        let wanted = self.led_partitions(TXN_TOPIC);
        let (dropped, added) = self.txns.loads.changes(&wanted);
        for index in dropped {
            info!(
                partition = index,
                "no longer coordinating this {TXN_TOPIC} partition"
            );
            self.txns_unload(index, out);
        }
        for (index, part, leader_epoch) in added {
            self.begin_load(Loader::Txns, index, part, leader_epoch);
            self.txn_load_step(index, now, out);
        }
        self.arm_txn_timer(now, out);
    }

    /// Drop what partition `index` held; waiting requests are told NOT_COORDINATOR.
    fn txns_unload(&mut self, index: i32, out: &mut Vec<Output>) {
        self.txns.loads.remove(index);
        self.txns.txns.retain(|_, e| e.partition != index);
        let failed: Vec<u64> = self
            .txns
            .writes
            .iter()
            .filter(|(_, w)| self.txn_partition_of(&w.txn_id) == index)
            .map(|(&t, _)| t)
            .collect();
        for token in failed {
            if let Some(w) = self.txns.writes.remove(&token) {
                self.txn_reply_error(w.then, ResponseError::NotCoordinator, out);
            }
        }
    }

    /// Move a load along; once loaded, transactions caught between Prepare
    /// and Complete get their markers (again).
    fn txn_load_step(&mut self, index: i32, now: Now, out: &mut Vec<Output>) {
        if !self.load_step(Loader::Txns, index, now, out) {
            return;
        }
        let preparing: Vec<String> = self
            .txns
            .txns
            .iter()
            .filter(|(_, e)| {
                e.partition == index
                    && matches!(e.md.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
            })
            .map(|(id, _)| id.clone())
            .collect();
        info!(
            partition = index,
            preparing = preparing.len(),
            "{TXN_TOPIC} partition served"
        );
        for txn_id in preparing {
            self.start_markers(&txn_id, now, out);
        }
    }

    /// A load's read finished: replay its records.
    pub(super) fn txn_read_done(
        &mut self,
        index: i32,
        result: Result<FetchData, LogError>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        for (offset, key, value) in self.load_read_done(Loader::Txns, index, result) {
            self.txn_replay(index, offset, &key, value.as_deref());
        }
        self.txn_load_step(index, now, out);
        self.arm_txn_timer(now, out);
    }

    fn txn_replay(&mut self, index: i32, offset: i64, key: &[u8], value: Option<&[u8]>) {
        let Ok(txn_id) = records::decode_key(key) else {
            warn!(
                partition = index,
                offset, "undecodable {TXN_TOPIC} key skipped"
            );
            return;
        };
        match value.map(records::decode_value) {
            None => {
                self.txns.txns.remove(&txn_id);
            }
            Some(Ok(md)) => {
                self.txns.txns.insert(
                    txn_id,
                    TxnEntry {
                        partition: index,
                        md,
                        writing: false,
                        markers: None,
                    },
                );
            }
            Some(Err(e)) => {
                warn!(partition = index, offset, error = %e.0, "undecodable {TXN_TOPIC} value skipped")
            }
        }
    }

    /// After activity on a log: loads, writes and local markers move on.
    pub(super) fn txns_log_activity(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        if !self.txns.watches(part) {
            return;
        }
        for index in self.txns.loads.indexes_on(part) {
            self.txn_load_step(index, now, out);
        }
        self.settle_txn_writes(now, out);
        self.settle_local_markers(now, out);
        self.arm_txn_timer(now, out);
    }

    // ----- writes -----

    /// Write `next` as `txn_id`'s state; `then` once replicated.
    fn txn_write(
        &mut self,
        txn_id: &str,
        next: TxnMetadata,
        then: Then,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let index = self.txn_partition_of(txn_id);
        let part = self.lookup(TXN_TOPIC, index);
        let epoch = self.partition_leader_epoch(TXN_TOPIC, index);
        let appended = match part {
            None => Err(ResponseError::NotLeaderOrFollower),
            Some(part) => self
                .admit_produce(part, -1)
                .map_err(|(e, _)| e)
                .and_then(|_| {
                    let record = (records::key(txn_id), Some(records::value(&next)));
                    let batch = encode_batch(&[record], epoch, now.wall_millis)
                        .ok_or(ResponseError::CorruptMessage)?;
                    self.append_one(part, Some(batch), now, out)
                        .map(|info| (part, info.last_offset))
                        .map_err(|(e, _)| e)
                }),
        };
        match appended {
            Ok((part, last_offset)) => {
                if let Some(e) = self.txns.txns.get_mut(txn_id) {
                    e.writing = true;
                }
                let token = self.txns.next_write;
                self.txns.next_write += 1;
                self.txns.writes.insert(
                    token,
                    TxnWrite {
                        part,
                        last_offset,
                        deadline_ms: now.mono_millis().saturating_add(WRITE_TIMEOUT_MS),
                        txn_id: txn_id.to_string(),
                        next,
                        then,
                    },
                );
                self.after_log_activity(part, now, out);
            }
            Err(e) => {
                warn!(txn_id, error = ?e, "transaction state write failed");
                self.txn_reply_error(then, client_error_for_write(e), out);
            }
        }
    }

    fn settle_txn_writes(&mut self, now: Now, out: &mut Vec<Output>) {
        let now_ms = now.mono_millis();
        let mut done = Vec::new();
        for (&token, w) in &self.txns.writes {
            let result = match self.partitions.get(&w.part) {
                None => Some(Err(ResponseError::NotLeaderOrFollower)),
                Some(_) if !self.leads(w.part) => Some(Err(ResponseError::NotLeaderOrFollower)),
                Some(p) if p.log.high_watermark() > w.last_offset => Some(Ok(())),
                Some(p) if matches!(p.log.state(), LogState::Failed(_)) => {
                    Some(Err(ResponseError::KafkaStorageError))
                }
                Some(_) if now_ms >= w.deadline_ms => Some(Err(ResponseError::RequestTimedOut)),
                Some(_) => None,
            };
            if let Some(result) = result {
                done.push((token, result));
            }
        }
        for (token, result) in done {
            let Some(w) = self.txns.writes.remove(&token) else {
                continue;
            };
            match result {
                Ok(()) => self.txn_written(w, now, out),
                Err(e) => {
                    if let Some(entry) = self.txns.txns.get_mut(&w.txn_id) {
                        entry.writing = false;
                    }
                    warn!(txn_id = %w.txn_id, error = ?e, "transaction state write not replicated");
                    self.txn_reply_error(w.then, client_error_for_write(e), out);
                }
            }
        }
    }

    /// A write is replicated: it is the transaction's state now.
    fn txn_written(&mut self, w: TxnWrite, now: Now, out: &mut Vec<Output>) {
        let index = self.txn_partition_of(&w.txn_id);
        let md = w.next;
        let entry = self
            .txns
            .txns
            .entry(w.txn_id.clone())
            .or_insert_with(|| TxnEntry {
                partition: index,
                md: md.clone(),
                writing: false,
                markers: None,
            });
        entry.md = md.clone();
        entry.writing = false;
        match w.then {
            Then::InitProducerId(reply) => {
                let answer = init_answer(NONE, md.producer_id, md.producer_epoch);
                self.respond(reply, &answer, out);
            }
            Then::AddPartitions(reply) => {
                self.respond_add_partitions(reply, &md.partitions, NONE, out)
            }
            Then::EndTxn(reply) => {
                self.respond(reply, &EndTxnResponse::default(), out);
                self.start_markers(&w.txn_id, now, out);
            }
            Then::SendMarkers => self.start_markers(&w.txn_id, now, out),
            Then::Nothing => {}
        }
    }

    fn txn_reply_error(&mut self, then: Then, error: ResponseError, out: &mut Vec<Output>) {
        match then {
            Then::InitProducerId(reply) => {
                self.respond(reply, &init_answer(error.code(), -1, -1), out)
            }
            Then::AddPartitions(reply) => {
                self.respond_add_partitions(reply, &BTreeSet::new(), error.code(), out)
            }
            Then::EndTxn(reply) => self.respond(
                reply,
                &EndTxnResponse::default().with_error_code(error.code()),
                out,
            ),
            Then::SendMarkers | Then::Nothing => {}
        }
    }

    // ----- markers -----

    /// Send the markers of `txn_id`'s Prepare state to every partition.
    fn start_markers(&mut self, txn_id: &str, now: Now, out: &mut Vec<Output>) {
        let Some(entry) = self.txns.txns.get_mut(txn_id) else {
            return;
        };
        let commit = match entry.md.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return,
        };
        // Markers carry the coordinator's epoch: its partition's leader epoch.
        let coordinator_epoch = self.txns.loads.leader_epoch(entry.partition).unwrap_or(0);
        let now_ms = now.mono_millis();
        entry.markers = Some(Markers {
            marker: Marker {
                commit,
                coordinator_epoch,
            },
            left: entry
                .md
                .partitions
                .iter()
                .map(|p| (p.clone(), MarkerState::Due(now_ms)))
                .collect(),
        });
        self.send_due_markers(now, out);
        self.maybe_complete(txn_id, now, out);
    }

    /// Send every marker whose time has come: locally led partitions are
    /// written here, the others go to their leader in one request each.
    fn send_due_markers(&mut self, now: Now, out: &mut Vec<Output>) {
        let now_ms = now.mono_millis();
        let due: Vec<(String, TxnPartition, i64, i16, Marker)> = self
            .txns
            .txns
            .iter()
            .filter_map(|(id, e)| e.markers.as_ref().map(|m| (id, e, m)))
            .flat_map(|(id, e, m)| {
                m.left.iter().filter_map(move |(p, s)| match s {
                    MarkerState::Due(at) if *at <= now_ms => Some((
                        id.clone(),
                        p.clone(),
                        e.md.producer_id,
                        e.md.producer_epoch,
                        m.marker,
                    )),
                    _ => None,
                })
            })
            .collect();
        let mut remote: BTreeMap<(String, i32), Vec<TxnPartition>> = BTreeMap::new();
        for (txn_id, tp, pid, epoch, marker) in due {
            let (topic, index) = (tp.0.clone(), tp.1);
            let state = match self.leader_of(&topic, index) {
                Some(leader) if leader == self.config.node_id || self.cluster.is_none() => {
                    match self.write_marker_here(&topic, index, pid, epoch, marker, now, out) {
                        Ok(Some((part, awaiting))) => MarkerState::Local { part, awaiting },
                        Ok(None) => {
                            self.marker_done(&txn_id, &tp);
                            continue;
                        }
                        Err(()) => MarkerState::Due(now_ms + MARKER_RETRY_MS),
                    }
                }
                Some(leader) => {
                    remote
                        .entry((txn_id.clone(), leader))
                        .or_default()
                        .push(tp.clone());
                    continue;
                }
                None => MarkerState::Due(now_ms + MARKER_RETRY_MS),
            };
            self.set_marker_state(&txn_id, &tp, state);
        }
        for ((txn_id, leader), partitions) in remote {
            self.send_remote_markers(&txn_id, leader, partitions, now, out);
        }
    }

    /// The broker leading a partition (this node alone: itself), or `None`
    /// if the partition does not exist any more.
    fn leader_of(&self, topic: &str, index: i32) -> Option<i32> {
        match self.cluster.as_ref() {
            Some(c) => c
                .image
                .partition(topic, index)
                .map(|p| p.leader)
                .filter(|&l| l >= 0),
            None => self.lookup(topic, index).map(|_| self.config.node_id),
        }
    }

    /// `Ok(None)`: nothing left to do for this partition (it is gone, or
    /// refuses the marker for good); `Err`: try again later.
    #[allow(clippy::too_many_arguments)]
    fn write_marker_here(
        &mut self,
        topic: &str,
        index: i32,
        pid: i64,
        epoch: i16,
        marker: Marker,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<Option<(PartId, Option<i64>)>, ()> {
        match self.write_marker(topic, index, pid, epoch, marker, now, out) {
            Ok(found) => Ok(Some(found)),
            Err((ResponseError::UnknownTopicOrPartition, _)) => Ok(None),
            Err((
                e @ (ResponseError::InvalidProducerEpoch
                | ResponseError::TransactionCoordinatorFenced),
                why,
            )) => {
                warn!(topic, partition = index, producer_id = pid, error = ?e, ?why, "marker refused for good");
                Ok(None)
            }
            Err(_) => Err(()),
        }
    }

    fn set_marker_state(&mut self, txn_id: &str, tp: &TxnPartition, state: MarkerState) {
        if let Some(m) = self
            .txns
            .txns
            .get_mut(txn_id)
            .and_then(|e| e.markers.as_mut())
        {
            if let Some(s) = m.left.get_mut(tp) {
                *s = state;
            }
        }
    }

    fn marker_done(&mut self, txn_id: &str, tp: &TxnPartition) {
        if let Some(m) = self
            .txns
            .txns
            .get_mut(txn_id)
            .and_then(|e| e.markers.as_mut())
        {
            m.left.remove(tp);
        }
    }

    fn send_remote_markers(
        &mut self,
        txn_id: &str,
        leader: i32,
        partitions: Vec<TxnPartition>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Some(entry) = self.txns.txns.get(txn_id) else {
            return;
        };
        let Some(marker) = entry.markers.as_ref().map(|m| m.marker) else {
            return;
        };
        let addr = self.cluster.as_ref().and_then(|c| {
            c.image
                .brokers
                .get(&leader)
                .filter(|b| !b.fenced)
                .and_then(|b| b.endpoints.first())
                .map(|e| format!("{}:{}", e.host, e.port))
        });
        let retry = MarkerState::Due(now.mono_millis() + MARKER_RETRY_MS);
        let Some(addr) = addr else {
            for tp in &partitions {
                self.set_marker_state(txn_id, tp, retry.clone());
            }
            return;
        };
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in &partitions {
            topics.entry(t.clone()).or_default().push(*p);
        }
        let request = WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(entry.md.producer_id))
                .with_producer_epoch(entry.md.producer_epoch)
                .with_transaction_result(marker.commit)
                .with_coordinator_epoch(marker.coordinator_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            write_txn_markers_request::WritableTxnMarkerTopic::default()
                                .with_name(TopicName(sb(&t)))
                                .with_partition_indexes(ps)
                        })
                        .collect(),
                ),
        ]);
        let id = self.txns.next_remote;
        self.txns.next_remote += 1;
        for tp in &partitions {
            self.set_marker_state(txn_id, tp, MarkerState::Remote { id });
        }
        self.txns
            .remote
            .insert(id, (txn_id.to_string(), partitions));
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.send(
                now.mono_nanos,
                leader,
                &addr,
                ApiKey::WriteTxnMarkers,
                MARKERS_VERSION,
                &request,
                PeerTag::WriteTxnMarkers { id },
                out,
            );
        }
    }

    /// A leader's answer to markers sent to it (`None`: no answer).
    pub(super) fn txn_markers_response(
        &mut self,
        id: u64,
        version: i16,
        body: Option<Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Some((txn_id, partitions)) = self.txns.remote.remove(&id) else {
            return;
        };
        let response: Option<kafka_protocol::messages::WriteTxnMarkersResponse> =
            body.and_then(|b| super::peers::decode_response(b, version));
        let mut errors: BTreeMap<TxnPartition, i16> = BTreeMap::new();
        for m in response.iter().flat_map(|r| r.markers.iter()) {
            for t in &m.topics {
                for p in &t.partitions {
                    errors.insert((t.name.0.to_string(), p.partition_index), p.error_code);
                }
            }
        }
        let retry_at = now.mono_millis() + MARKER_RETRY_MS;
        for tp in partitions {
            let still_ours = self
                .txns
                .txns
                .get(&txn_id)
                .and_then(|e| e.markers.as_ref())
                .is_some_and(|m| m.left.get(&tp) == Some(&MarkerState::Remote { id }));
            if !still_ours {
                continue;
            }
            match errors.get(&tp).map(|&c| ResponseError::try_from_code(c)) {
                Some(None) => self.marker_done(&txn_id, &tp),
                Some(Some(
                    ResponseError::UnknownTopicOrPartition
                    | ResponseError::InvalidProducerEpoch
                    | ResponseError::TransactionCoordinatorFenced,
                )) => self.marker_done(&txn_id, &tp),
                _ => self.set_marker_state(&txn_id, &tp, MarkerState::Due(retry_at)),
            }
        }
        self.maybe_complete(&txn_id, now, out);
        self.arm_txn_timer(now, out);
    }

    fn settle_local_markers(&mut self, now: Now, out: &mut Vec<Output>) {
        let mut done: Vec<(String, TxnPartition)> = Vec::new();
        let mut retry: Vec<(String, TxnPartition)> = Vec::new();
        for (id, e) in &self.txns.txns {
            let Some(m) = &e.markers else { continue };
            for (tp, s) in &m.left {
                if let MarkerState::Local { part, awaiting } = s {
                    let p = self.partitions.get(part);
                    match p {
                        Some(p)
                            if !self.leads(*part)
                                || matches!(p.log.state(), LogState::Failed(_)) =>
                        {
                            retry.push((id.clone(), tp.clone()))
                        }
                        None => retry.push((id.clone(), tp.clone())),
                        Some(p) => {
                            if awaiting.is_none_or(|a| p.log.high_watermark() > a) {
                                done.push((id.clone(), tp.clone()));
                            }
                        }
                    }
                }
            }
        }
        let retry_at = now.mono_millis() + MARKER_RETRY_MS;
        for (id, tp) in retry {
            self.set_marker_state(&id, &tp, MarkerState::Due(retry_at));
        }
        let ids: BTreeSet<String> = done.iter().map(|(id, _)| id.clone()).collect();
        for (id, tp) in done {
            self.marker_done(&id, &tp);
        }
        for id in ids {
            self.maybe_complete(&id, now, out);
        }
    }

    /// Every marker is in: write the Complete state.
    fn maybe_complete(&mut self, txn_id: &str, now: Now, out: &mut Vec<Output>) {
        let Some(entry) = self.txns.txns.get_mut(txn_id) else {
            return;
        };
        if entry.writing || !entry.markers.as_ref().is_some_and(|m| m.left.is_empty()) {
            return;
        }
        entry.markers = None;
        if let Some(next) = txn_state::complete(&entry.md, now.wall_millis) {
            self.txn_write(txn_id, next, Then::Nothing, now, out);
        }
    }

    // ----- the timer -----

    fn arm_txn_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        let markers = self
            .txns
            .txns
            .values()
            .filter_map(|e| e.markers.as_ref())
            .flat_map(|m| m.left.values())
            .filter_map(|s| match s {
                MarkerState::Due(at) => Some(*at),
                _ => None,
            })
            .min();
        let writes = self.txns.writes.values().map(|w| w.deadline_ms).min();
        let abort_check = self
            .txns
            .txns
            .values()
            .any(|e| e.md.state == TxnState::Ongoing)
            .then(|| {
                self.txns
                    .last_abort_check_ms
                    .saturating_add(self.config.txn_abort_check_interval_ms)
            });
        let next = [markers, writes, abort_check].into_iter().flatten().min();
        if next == self.txns.armed {
            return;
        }
        self.txns.armed = next;
        match next {
            Some(ms) => out.push(Output::SetTimer {
                id: TIMER_TXN,
                at_nanos: ms.max(now.mono_millis()).saturating_mul(1_000_000),
            }),
            None => out.push(Output::CancelTimer { id: TIMER_TXN }),
        }
    }

    pub(super) fn on_txn_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        self.txns.armed = None;
        let now_ms = now.mono_millis();
        if now_ms
            >= self
                .txns
                .last_abort_check_ms
                .saturating_add(self.config.txn_abort_check_interval_ms)
        {
            self.txns.last_abort_check_ms = now_ms;
            self.abort_timed_out(now, out);
        }
        self.settle_txn_writes(now, out);
        self.send_due_markers(now, out);
        let ids: Vec<String> = self.txns.txns.keys().cloned().collect();
        for id in ids {
            self.maybe_complete(&id, now, out);
        }
        self.arm_txn_timer(now, out);
    }

    /// `transaction.timeout.ms` passed: abort under a bumped epoch.
    fn abort_timed_out(&mut self, now: Now, out: &mut Vec<Output>) {
        let expired: Vec<(String, TxnMetadata)> = self
            .txns
            .txns
            .iter()
            .filter(|(_, e)| !e.writing && self.txn_serving_index(e.partition))
            .filter_map(|(id, e)| {
                txn_state::abort_if_expired(&e.md, now.wall_millis).map(|md| (id.clone(), md))
            })
            .collect();
        for (txn_id, md) in expired {
            info!(txn_id = %txn_id, producer_id = md.producer_id, epoch = md.producer_epoch, "transaction timed out; aborting");
            self.txn_write(&txn_id, md, Then::SendMarkers, now, out);
        }
    }

    fn txn_serving_index(&self, index: i32) -> bool {
        self.txns.loads.is_served(index)
    }

    // ----- the client APIs -----

    /// InitProducerId with a transactional id.
    pub(super) fn init_transactional_producer(
        &mut self,
        now: Now,
        reply: ReplyTo,
        txn_id: &str,
        timeout_ms: i32,
        out: &mut Vec<Output>,
    ) {
        if txn_id.is_empty() {
            self.respond(
                reply,
                &init_answer(ResponseError::InvalidRequest.code(), -1, -1),
                out,
            );
            return;
        }
        if let Err(e) = self.txn_serving(txn_id) {
            self.respond(reply, &init_answer(e.code(), -1, -1), out);
            return;
        }
        if let Some(e) = self.txns.txns.get(txn_id) {
            if e.writing || e.markers.is_some() {
                let answer = init_answer(ResponseError::ConcurrentTransactions.code(), -1, -1);
                self.respond(reply, &answer, out);
                return;
            }
        }
        let current = self.txns.txns.get(txn_id).map(|e| e.md.clone());
        let mut took = false;
        let outcome = txn_state::init_producer_id(
            current.as_ref(),
            timeout_ms,
            self.config.txn_max_timeout_ms,
            || {
                took = true;
                self.pids.manager.next_id()
            },
            now.wall_millis,
        );
        if took {
            self.request_producer_id_block(now, out);
        }
        match outcome {
            Ok(InitOutcome::Ready(md)) => {
                self.txn_write(txn_id, md, Then::InitProducerId(reply), now, out)
            }
            Ok(InitOutcome::AbortFirst(md)) => {
                info!(
                    txn_id,
                    producer_id = md.producer_id,
                    epoch = md.producer_epoch,
                    "fencing the previous producer; aborting its transaction"
                );
                let answer = init_answer(ResponseError::ConcurrentTransactions.code(), -1, -1);
                self.respond(reply, &answer, out);
                self.txn_write(txn_id, md, Then::SendMarkers, now, out);
            }
            Err(e) => self.respond(reply, &init_answer(txn_error(e).code(), -1, -1), out),
        }
        self.arm_txn_timer(now, out);
    }

    pub(super) fn handle_add_partitions_to_txn(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: AddPartitionsToTxnRequest = decode(raw)?;
        if raw.api_version >= 4 {
            self.verify_partitions_in_txn(reply, request, out);
            return Ok(());
        }
        let txn_id = request.v3_and_below_transactional_id.0.to_string();
        let partitions: Vec<TxnPartition> = request
            .v3_and_below_topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partitions.iter().map(move |&p| (name.clone(), p))
            })
            .collect();
        let pid = request.v3_and_below_producer_id.0;
        let epoch = request.v3_and_below_producer_epoch;
        let all: BTreeSet<TxnPartition> = partitions.iter().cloned().collect();
        let refused = |node: &mut Node, e: i16, out: &mut Vec<Output>| {
            node.respond_add_partitions(reply, &all, e, out)
        };
        if let Err(e) = self.txn_serving(&txn_id) {
            refused(self, e.code(), out);
            return Ok(());
        }
        // Partitions that do not exist fail; the others are not attempted (as Kafka).
        let unknown: Vec<&TxnPartition> = partitions
            .iter()
            .filter(|(t, p)| {
                t == TXN_TOPIC
                    || t == super::group::OFFSETS_TOPIC
                    || self.leader_of(t, *p).is_none()
            })
            .collect();
        if !unknown.is_empty() {
            let results: Vec<(TxnPartition, i16)> = partitions
                .iter()
                .map(|tp| {
                    let e = if unknown.contains(&tp) {
                        ResponseError::UnknownTopicOrPartition
                    } else {
                        ResponseError::OperationNotAttempted
                    };
                    (tp.clone(), e.code())
                })
                .collect();
            self.respond_add_partitions_each(reply, results, out);
            return Ok(());
        }
        let Some(entry) = self.txns.txns.get(&txn_id) else {
            refused(self, ResponseError::InvalidProducerIdMapping.code(), out);
            return Ok(());
        };
        if entry.writing {
            refused(self, ResponseError::ConcurrentTransactions.code(), out);
            return Ok(());
        }
        match txn_state::add_partitions(&entry.md, pid, epoch, &partitions, now.wall_millis) {
            Ok(None) => refused(self, NONE, out),
            Ok(Some(next)) => self.txn_write(&txn_id, next, Then::AddPartitions(reply), now, out),
            Err(e) => refused(self, txn_error(e).code(), out),
        }
        self.arm_txn_timer(now, out);
        Ok(())
    }

    /// AddPartitionsToTxn v4 from a partition leader (KIP-890): is each
    /// partition in the transaction's open transaction? Nothing changes.
    /// Only `verify_only` transactions are served (transactions V2's
    /// adding through a broker is not).
    fn verify_partitions_in_txn(
        &mut self,
        reply: ReplyTo,
        request: AddPartitionsToTxnRequest,
        out: &mut Vec<Output>,
    ) {
        tracing::debug!(
            conn = reply.conn,
            transactions = request.transactions.len(),
            "verifying partitions for a leader"
        );
        let results = request
            .transactions
            .iter()
            .map(|t| {
                let txn_id = t.transactional_id.0.to_string();
                let serving = self.txn_serving(&txn_id);
                let topic_results = t
                    .topics
                    .iter()
                    .map(|topic| {
                        let name = topic.name.0.to_string();
                        add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                            .with_name(topic.name.clone())
                            .with_results_by_partition(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|&p| {
                                        let code = match serving {
                                            Err(e) => e.code(),
                                            Ok(_) if !t.verify_only => {
                                                ResponseError::InvalidRequest.code()
                                            }
                                            Ok(_) if self.txns.includes(
                                                t.producer_id.0,
                                                t.producer_epoch,
                                                &name,
                                                p,
                                            ) =>
                                            {
                                                NONE
                                            }
                                            Ok(_) => ResponseError::InvalidTxnState.code(),
                                        };
                                        add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                            .with_partition_index(p)
                                            .with_partition_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                add_partitions_to_txn_response::AddPartitionsToTxnResult::default()
                    .with_transactional_id(t.transactional_id.clone())
                    .with_topic_results(topic_results)
            })
            .collect();
        let response = AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
        self.respond(reply, &response, out);
    }

    fn respond_add_partitions(
        &mut self,
        reply: ReplyTo,
        partitions: &BTreeSet<TxnPartition>,
        error: i16,
        out: &mut Vec<Output>,
    ) {
        let results = partitions.iter().map(|tp| (tp.clone(), error)).collect();
        self.respond_add_partitions_each(reply, results, out);
    }

    fn respond_add_partitions_each(
        &mut self,
        reply: ReplyTo,
        results: Vec<(TxnPartition, i16)>,
        out: &mut Vec<Output>,
    ) {
        let mut topics: BTreeMap<String, Vec<(i32, i16)>> = BTreeMap::new();
        for ((t, p), e) in results {
            topics.entry(t).or_default().push((p, e));
        }
        let response = AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(TopicName(sb(&t)))
                        .with_results_by_partition(
                            ps.into_iter()
                                .map(|(p, e)| {
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_partition_error_code(e)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        self.respond(reply, &response, out);
    }

    pub(super) fn handle_end_txn(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: EndTxnRequest = decode(raw)?;
        let txn_id = request.transactional_id.0.to_string();
        let answer = |e: i16| EndTxnResponse::default().with_error_code(e);
        if let Err(e) = self.txn_serving(&txn_id) {
            self.respond(reply, &answer(e.code()), out);
            return Ok(());
        }
        let Some(entry) = self.txns.txns.get(&txn_id) else {
            self.respond(
                reply,
                &answer(ResponseError::InvalidProducerIdMapping.code()),
                out,
            );
            return Ok(());
        };
        if entry.writing {
            self.respond(
                reply,
                &answer(ResponseError::ConcurrentTransactions.code()),
                out,
            );
            return Ok(());
        }
        match txn_state::end_txn(
            &entry.md,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
            now.wall_millis,
        ) {
            Ok(EndOutcome::Prepare(next)) => {
                self.txn_write(&txn_id, next, Then::EndTxn(reply), now, out)
            }
            Ok(EndOutcome::AlreadyDone) => self.respond(reply, &answer(NONE), out),
            Err(e) => self.respond(reply, &answer(txn_error(e).code()), out),
        }
        self.arm_txn_timer(now, out);
        Ok(())
    }

    pub(super) fn handle_describe_transactions(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: DescribeTransactionsRequest = decode(raw)?;
        let states = request
            .transactional_ids
            .iter()
            .map(|id| {
                let txn_id = id.0.to_string();
                let base = describe_transactions_response::TransactionState::default()
                    .with_transactional_id(id.clone());
                if let Err(e) = self.txn_serving(&txn_id) {
                    return base.with_error_code(e.code());
                }
                match self.txns.txns.get(&txn_id) {
                    None => base.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                    Some(e) => {
                        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                        for (t, p) in &e.md.partitions {
                            topics.entry(t).or_default().push(*p);
                        }
                        base.with_transaction_state(sb(e.md.state.name()))
                            .with_transaction_timeout_ms(e.md.timeout_ms)
                            .with_transaction_start_time_ms(e.md.start_ms)
                            .with_producer_id(ProducerId(e.md.producer_id))
                            .with_producer_epoch(e.md.producer_epoch)
                            .with_topics(
                                topics
                                    .into_iter()
                                    .map(|(t, ps)| {
                                        describe_transactions_response::TopicData::default()
                                            .with_topic(TopicName(sb(t)))
                                            .with_partitions(ps)
                                    })
                                    .collect(),
                            )
                    }
                }
            })
            .collect();
        let response = DescribeTransactionsResponse::default().with_transaction_states(states);
        self.respond(reply, &response, out);
        Ok(())
    }

    pub(super) fn handle_list_transactions(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: ListTransactionsRequest = decode(raw)?;
        let states: BTreeSet<String> = request
            .state_filters
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pids: BTreeSet<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
        let listed = self
            .txns
            .txns
            .iter()
            .filter(|(_, e)| self.txn_serving_index(e.partition))
            .filter(|(_, e)| states.is_empty() || states.contains(e.md.state.name()))
            .filter(|(_, e)| pids.is_empty() || pids.contains(&e.md.producer_id))
            .map(|(id, e)| {
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(sb(id)))
                    .with_producer_id(ProducerId(e.md.producer_id))
                    .with_transaction_state(sb(e.md.state.name()))
            })
            .collect();
        let response = ListTransactionsResponse::default().with_transaction_states(listed);
        self.respond(reply, &response, out);
        Ok(())
    }
}

fn txn_error(e: TxnError) -> ResponseError {
    e.code()
}
