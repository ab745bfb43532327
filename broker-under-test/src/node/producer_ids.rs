//! InitProducerId for idempotent producers, and where the ids come from.
//!
//! In a cluster, blocks of ids come from the active controller
//! (AllocateProducerIds, answered here too when this node is it): each
//! block is a committed metadata record, so no id is ever handed out twice.
//! A node without a quorum reserves blocks itself in `producer-id-block`
//! (the end of the last reserved block), made durable before any id of the
//! block goes out; at start, the floor is also above every producer id in
//! its logs, so a lost file cannot make a new producer look like an old one.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, ApiKey, BrokerId,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};
use tracing::{error, info, warn};

use super::peers::{decode_response, PeerTag};
use super::{decode, DiskOwner, HandlerResult, Node, OpKind, ReplyTo, TIMER_PRODUCER_IDS};
use crate::diskio::DiskIo;
use crate::metadata::controller::PRODUCER_ID_BLOCK_SIZE;
use crate::protocol::RawRequest;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, Now, Output};
use crate::txn::producer_ids::{IdBlock, ProducerIdManager};

pub const FILE: &str = "producer-id-block";
const TMP: &str = "producer-id-block.tmp";
/// How long an InitProducerId waits for a block before
/// COORDINATOR_LOAD_IN_PROGRESS (which clients retry).
const WAIT_MS: u64 = 5_000;
/// Pause before asking the controller again after a failed request.
const RETRY_MS: u64 = 100;
const ALLOCATE_VERSION: i16 = 0;

/// Which step of a standalone block reservation a disk request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PidStep {
    Read,
    WriteStep,
    /// The last step: the block ending here is durable.
    Reserved(i64),
}

/// What a node without a quorum knows of its reserved blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    /// `producer-id-block` is being read at start.
    Reading,
    /// Read (or absent): the end of the last reserved block, before the
    /// floor from the logs is applied.
    Read(i64),
    /// Ready: every id below this was (or may have been) handed out.
    Ready(i64),
    /// The file is unreadable: handing out ids could repeat old ones.
    Broken,
}

#[derive(Debug)]
pub(super) struct ProducerIds {
    pub(super) manager: ProducerIdManager,
    /// Parked InitProducerId requests, oldest first.
    waiting: VecDeque<super::OpId>,
    /// Standalone only.
    reserved: Reserved,
    retry_armed: bool,
}

impl Default for ProducerIds {
    fn default() -> Self {
        ProducerIds {
            manager: ProducerIdManager::default(),
            waiting: VecDeque::new(),
            reserved: Reserved::Read(0),
            retry_armed: false,
        }
    }
}

pub(super) fn parse(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let end: i64 = lines.next()?.trim().parse().ok()?;
    (end >= 0 && lines.all(|l| l.trim().is_empty())).then_some(end)
}

fn encode(end: i64) -> Bytes {
    Bytes::from(format!("0\n{end}\n"))
}

impl Node {
    /// At start, when the listing shows `producer-id-block`: read it.
    pub(super) fn producer_ids_read(&mut self, out: &mut Vec<Output>) {
        let mut io = DiskIo::new(&mut self.next_disk_req, out);
        let req = io.submit(DiskOp::Read {
            path: FILE.to_string(),
            offset: 0,
            len: 4096,
        });
        self.disk_owner
            .insert(req, DiskOwner::ProducerIds(PidStep::Read));
        self.pids.reserved = Reserved::Reading;
    }

    pub(super) fn producer_ids_busy(&self) -> bool {
        self.pids.reserved == Reserved::Reading
    }

    /// Recovery is complete: the standalone floor is above every producer
    /// id the logs hold.
    pub(super) fn producer_ids_recovered(&mut self) {
        if self.cluster.is_some() {
            return;
        }
        if let Reserved::Read(end) = self.pids.reserved {
            let in_logs = self
                .partitions
                .values()
                .filter_map(|p| p.log.producer_states().max_producer_id())
                .max()
                .map_or(0, |m| m + 1);
            if in_logs > end {
                warn!(
                    reserved = end,
                    in_logs,
                    "producer ids in the logs above the reserved block; starting above them"
                );
            }
            self.pids.reserved = Reserved::Ready(end.max(in_logs));
        }
    }

    pub(super) fn producer_ids_disk_done(
        &mut self,
        now: Now,
        step: PidStep,
        result: Result<DiskReply, DiskError>,
        out: &mut Vec<Output>,
    ) {
        match step {
            PidStep::Read => {
                self.pids.reserved = match result {
                    Ok(DiskReply::Data(bytes)) => match parse(&bytes) {
                        Some(end) => Reserved::Read(end),
                        None => {
                            error!("{FILE} is unreadable; no producer ids will be handed out (they could repeat ones handed out before)");
                            Reserved::Broken
                        }
                    },
                    Err(e) if e.kind == DiskErrorKind::NotFound => Reserved::Read(0),
                    other => {
                        error!(
                            ?other,
                            "cannot read {FILE}; no producer ids will be handed out"
                        );
                        Reserved::Broken
                    }
                };
                self.check_recovered(now, out);
            }
            PidStep::WriteStep => {
                if let Err(e) = result {
                    error!(error = %e, "reserving producer ids failed");
                }
            }
            PidStep::Reserved(end) => match result {
                Ok(_) => {
                    let first = end - i64::from(PRODUCER_ID_BLOCK_SIZE);
                    self.pids.reserved = Reserved::Ready(end);
                    self.pids.manager.on_block(IdBlock {
                        first,
                        len: i64::from(PRODUCER_ID_BLOCK_SIZE),
                    });
                    self.answer_waiting_inits(out);
                }
                Err(e) => {
                    // Whether the file holds the new end is unknown: so the
                    // ids stay reserved (never handed out, never reused).
                    error!(error = %e, "reserving producer ids failed");
                    self.pids.reserved = Reserved::Ready(end);
                    self.pids.manager.on_request_failed();
                    self.arm_producer_ids_retry(now, out);
                }
            },
        }
    }

    /// Whether no block ever included `producer_id` (as far as this node
    /// knows: in a cluster, its committed metadata image).
    pub(super) fn producer_id_never_issued(&self, producer_id: i64) -> bool {
        match &self.cluster {
            Some(c) => producer_id >= c.image.next_producer_id,
            None => match self.pids.reserved {
                Reserved::Ready(end) => producer_id >= end,
                _ => false,
            },
        }
    }

    pub(super) fn handle_init_producer_id(
        &mut self,
        now: Now,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        let request: InitProducerIdRequest = decode(raw)?;
        if let Some(id) = &request.transactional_id {
            let txn_id = id.0.to_string();
            self.init_transactional_producer(
                now,
                reply,
                &txn_id,
                request.transaction_timeout_ms,
                out,
            );
            return Ok(());
        }
        if self.cluster.is_none() && self.pids.reserved == Reserved::Broken {
            let response = init_error(
                ResponseError::KafkaStorageError,
                format!("{FILE} is unreadable; producer ids cannot be handed out safely"),
            );
            self.respond(reply, &response, out);
            return Ok(());
        }
        // Non-transactional: always a fresh id at epoch 0, whatever id and
        // epoch the request names (as Kafka).
        match self.pids.manager.next_id() {
            Some(id) => {
                self.respond(reply, &init_ok(id), out);
            }
            None => {
                let deadline = now.after_millis(WAIT_MS);
                let op = self.park(reply, Some(deadline), OpKind::InitProducerId, &[]);
                self.pids.waiting.push_back(op);
            }
        }
        self.request_producer_id_block(now, out);
        Ok(())
    }

    /// An InitProducerId that waited too long.
    pub(super) fn init_producer_id_expire(&mut self, op: super::OpId, out: &mut Vec<Output>) {
        self.pids.waiting.retain(|&w| w != op);
        if let Some(op) = self.unpark(op) {
            let response = init_error(
                ResponseError::CoordinatorLoadInProgress,
                "no producer id block yet; retry".into(),
            );
            self.respond(op.reply, &response, out);
        }
    }

    fn answer_waiting_inits(&mut self, out: &mut Vec<Output>) {
        while let Some(&op) = self.pids.waiting.front() {
            let Some(id) = self.pids.manager.next_id() else {
                return;
            };
            self.pids.waiting.pop_front();
            // (An op that is gone leaves its id unused: ids are plentiful.)
            if let Some(op) = self.unpark(op) {
                self.respond(op.reply, &init_ok(id), out);
            }
        }
    }

    /// Ask for the next block if one is wanted: from the controller, or by
    /// reserving one on disk.
    pub(super) fn request_producer_id_block(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.pids.manager.wants_block() {
            return;
        }
        if self.cluster.is_none() {
            let Reserved::Ready(end) = self.pids.reserved else {
                return;
            };
            let Some(new_end) = end.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)) else {
                error!("producer ids exhausted");
                return;
            };
            self.pids.manager.set_requested();
            let mut io = DiskIo::new(&mut self.next_disk_req, out);
            let steps = [
                DiskOp::Create { path: TMP.into() },
                DiskOp::Write {
                    path: TMP.into(),
                    offset: 0,
                    data: encode(new_end),
                },
                DiskOp::SyncFile { path: TMP.into() },
                DiskOp::Rename {
                    from: TMP.into(),
                    to: FILE.into(),
                },
            ];
            for op in steps {
                let req = io.submit(op);
                self.disk_owner
                    .insert(req, DiskOwner::ProducerIds(PidStep::WriteStep));
            }
            let req = io.submit(DiskOp::SyncDir {
                path: String::new(),
            });
            self.disk_owner
                .insert(req, DiskOwner::ProducerIds(PidStep::Reserved(new_end)));
            return;
        }
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let super::lifecycle::Registration::Registered { epoch } = cluster.lifecycle.registration
        else {
            // Not registered yet: asked again by the retry timer.
            self.arm_producer_ids_retry(now, out);
            return;
        };
        let Some(controller) = cluster.leader() else {
            self.arm_producer_ids_retry(now, out);
            return;
        };
        let Some(addr) = self.config.voter_address(controller).map(str::to_string) else {
            self.arm_producer_ids_retry(now, out);
            return;
        };
        let request = AllocateProducerIdsRequest::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_broker_epoch(epoch);
        self.pids.manager.set_requested();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.peers.send(
            now.mono_nanos,
            controller,
            &addr,
            ApiKey::AllocateProducerIds,
            ALLOCATE_VERSION,
            &request,
            PeerTag::AllocateProducerIds,
            out,
        );
    }

    fn arm_producer_ids_retry(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.pids.retry_armed {
            self.pids.retry_armed = true;
            out.push(Output::SetTimer {
                id: TIMER_PRODUCER_IDS,
                at_nanos: now.after_millis(RETRY_MS),
            });
        }
    }

    pub(super) fn on_producer_ids_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        self.pids.retry_armed = false;
        if !self.pids.waiting.is_empty() {
            self.request_producer_id_block(now, out);
        }
    }

    /// The controller's answer to AllocateProducerIds (`None`: it failed).
    pub(super) fn allocate_producer_ids_response(
        &mut self,
        version: i16,
        body: Option<Bytes>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let response =
            body.and_then(|b| decode_response::<AllocateProducerIdsResponse>(b, version));
        match response {
            Some(r) if r.error_code == 0 && r.producer_id_len > 0 => {
                info!(
                    first = r.producer_id_start.0,
                    len = r.producer_id_len,
                    "producer id block from the controller"
                );
                self.pids.manager.on_block(IdBlock {
                    first: r.producer_id_start.0,
                    len: i64::from(r.producer_id_len),
                });
                self.answer_waiting_inits(out);
                // 90% used already (many producers): ask for the next.
                self.request_producer_id_block(now, out);
            }
            other => {
                warn!(
                    error = ?other.map(|r| r.error_code),
                    "AllocateProducerIds failed; asking again"
                );
                self.pids.manager.on_request_failed();
                self.arm_producer_ids_retry(now, out);
            }
        }
    }
}

fn init_ok(id: i64) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(0)
}

fn init_error(error: ResponseError, why: String) -> InitProducerIdResponse {
    warn!(error = ?error, %why, "InitProducerId refused");
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
