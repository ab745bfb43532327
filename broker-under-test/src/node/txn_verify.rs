//! KIP-890 at a partition leader in a cluster: the first transactional
//! batch of a producer in a partition is held while the leader asks the
//! transaction's coordinator (AddPartitionsToTxn v4, verify only) whether
//! the partition is in the producer's open transaction. Confirmed, the
//! partition is remembered (`txn::verification`) and the batch appended;
//! refused, the produce gets INVALID_TXN_STATE; no answer, a retriable
//! NOT_ENOUGH_REPLICAS (as Kafka answers when it cannot verify).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    add_partitions_to_txn_request, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::peers::PeerTag;
use super::txn_host::TXN_TOPIC;
use super::{Node, OpId, OpKind, PartId};
use crate::seam::{Now, Output};

const VERIFY_VERSION: i16 = 4;

/// A held batch, as `handle_produce` leaves it.
pub(super) struct ToVerify {
    pub topic_slot: usize,
    pub part_slot: usize,
    pub part: PartId,
    pub topic: String,
    pub index: i32,
    pub records: Bytes,
    pub txn_id: String,
    /// The coordinator's broker id and address.
    pub coordinator: (i32, String),
}

pub(super) struct PendingVerify {
    op: OpId,
    held: ToVerify,
    producer_id: i64,
    epoch: i16,
}

impl Node {
    /// The broker coordinating `txn_id` when it is another one (a cluster,
    /// acks=all, the coordinator's partition has a live leader).
    pub(super) fn remote_txn_coordinator(
        &self,
        txn_id: Option<&str>,
        acks: i16,
    ) -> Option<(i32, String)> {
        let txn_id = txn_id?;
        let cluster = self.cluster.as_ref()?;
        if acks != -1 || txn_id.is_empty() {
            return None;
        }
        let index = crate::group::partition_for(txn_id, self.config.txn_state_partitions);
        let leader = cluster.image.partition(TXN_TOPIC, index)?.leader;
        if leader < 0 || leader == self.config.node_id {
            return None;
        }
        let broker = cluster.image.brokers.get(&leader).filter(|b| !b.fenced)?;
        let e = broker.endpoints.first()?;
        Some((leader, format!("{}:{}", e.host, e.port)))
    }

    pub(super) fn send_txn_verifications(
        &mut self,
        op: OpId,
        held: Vec<ToVerify>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        for h in held {
            let Some(header) = crate::log::batch::parse_header(&h.records).ok() else {
                continue;
            };
            let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(h.txn_id.clone())))
                    .with_producer_id(ProducerId(header.producer_id))
                    .with_producer_epoch(header.producer_epoch)
                    .with_verify_only(true)
                    .with_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(h.topic.clone())))
                            .with_partitions(vec![h.index]),
                    ]),
            ]);
            let id = self.next_verify;
            self.next_verify += 1;
            let (node, addr) = h.coordinator.clone();
            tracing::debug!(id, node, topic = %h.topic, partition = h.index, "asking the transaction coordinator to verify a partition");
            self.pending_verifies.insert(
                id,
                PendingVerify {
                    op,
                    held: h,
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                },
            );
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.peers.send(
                    now.mono_nanos,
                    node,
                    &addr,
                    ApiKey::AddPartitionsToTxn,
                    VERIFY_VERSION,
                    &request,
                    PeerTag::VerifyTxn { id },
                    out,
                );
            }
        }
    }

    /// The coordinator's answer (`None`: none came).
    pub(super) fn verify_txn_response(
        &mut self,
        id: u64,
        version: i16,
        body: Option<Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Some(v) = self.pending_verifies.remove(&id) else {
            return;
        };
        tracing::debug!(
            id,
            answered = body.is_some(),
            "transaction coordinator's verification answer"
        );
        let response: Option<AddPartitionsToTxnResponse> =
            body.and_then(|b| super::peers::decode_response(b, version));
        let code = response.as_ref().and_then(|r| {
            if r.error_code != 0 {
                return Some(r.error_code);
            }
            r.results_by_transaction
                .iter()
                .flat_map(|t| t.topic_results.iter())
                .filter(|t| t.name.0.as_str() == v.held.topic)
                .flat_map(|t| t.results_by_partition.iter())
                .find(|p| p.partition_index == v.held.index)
                .map(|p| p.partition_error_code)
        });
        let outcome = match code {
            Some(0) => {
                let h = &v.held;
                self.txn_verification
                    .add(v.producer_id, v.epoch, &h.topic, h.index);
                self.append_one(h.part, Some(h.records.clone()), now, out)
            }
            Some(c) if c == ResponseError::InvalidTxnState.code() => Err((
                ResponseError::InvalidTxnState,
                Some(format!(
                    "{}-{} is not part of an open transaction of producer {} epoch {}",
                    v.held.topic, v.held.index, v.producer_id, v.epoch
                )),
            )),
            other => Err((
                ResponseError::NotEnoughReplicas,
                Some(format!(
                    "the transaction coordinator could not verify the partition ({other:?}); retry"
                )),
            )),
        };
        let Some(OpKind::Produce(pending)) = self.ops.get_mut(&v.op).map(|op| &mut op.kind) else {
            return;
        };
        let Some(p) = pending
            .topics
            .get_mut(v.held.topic_slot)
            .and_then(|(_, ps)| ps.get_mut(v.held.part_slot))
        else {
            return;
        };
        if !p.verifying {
            return;
        }
        p.verifying = false;
        match outcome {
            Ok(info) => {
                p.base_offset = info.base_offset;
                p.log_start_offset = info.log_start_offset;
                p.awaiting = Some(info.last_offset);
                self.after_log_activity(v.held.part, now, out);
            }
            Err((error, message)) => {
                p.error = error.code();
                p.message = message;
            }
        }
        self.produce_poll(v.op, false, out);
    }
}
