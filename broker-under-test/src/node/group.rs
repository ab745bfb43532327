//! The node's side of the group coordinator: which `__consumer_offsets`
//! partitions it serves (those it leads), loading them from the log, carrying
//! the coordinator's writes to the log and reporting them once replicated
//! like an acks=all produce, and its timer. The wire side is `group_wire.rs`.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tracing::{info, warn};

use super::internal_load::{Loader, Loads};
use super::{Node, PartId, ReplyTo, TIMER_GROUP};
use crate::group::{AppendToken, Coordinator, Effect, ReqId};
use crate::log::{FetchData, LogError, LogState};
use crate::seam::{Now, Output};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// A coordinator write waiting to be replicated.
#[derive(Debug)]
struct PendingAppend {
    part: PartId,
    last_offset: i64,
    deadline_ms: u64,
}

/// The group coordinator and what the node does for it.
pub(super) struct GroupHost {
    pub(super) coordinator: Coordinator,
    /// Requests answered later: where, and as which API.
    waiting: BTreeMap<ReqId, (ReplyTo, ApiKey)>,
    next_req: ReqId,
    appends: BTreeMap<AppendToken, PendingAppend>,
    /// `__consumer_offsets` partition index -> its load.
    /// Loading the `__consumer_offsets` partitions this node leads.
    pub(super) loads: Loads,
    /// Effects not yet carried out (handled in a loop, never recursively).
    effects: VecDeque<Effect>,
    pumping: bool,
    armed: Option<u64>,
}

impl GroupHost {
    pub(super) fn new(config: crate::group::GroupConfig, seed: u64) -> GroupHost {
        GroupHost {
            coordinator: Coordinator::new(config, seed),
            waiting: BTreeMap::new(),
            next_req: 1,
            appends: BTreeMap::new(),
            loads: Loads::new(OFFSETS_TOPIC),
            effects: VecDeque::new(),
            pumping: false,
            armed: None,
        }
    }

    /// A handle for a request whose answer the coordinator gives (maybe later).
    pub(super) fn register(&mut self, reply: ReplyTo, api: ApiKey) -> ReqId {
        let id = self.next_req;
        self.next_req += 1;
        self.waiting.insert(id, (reply, api));
        id
    }

    /// Whether `part` is a partition the coordinator waits on.
    pub(super) fn watches(&self, part: PartId) -> bool {
        self.loads.watches(part) || self.appends.values().any(|a| a.part == part)
    }

    pub(super) fn push_effects(&mut self, effects: Vec<Effect>) {
        self.effects.extend(effects);
    }

    pub(super) fn take_read(&mut self, part: PartId, token: u64) -> Option<i32> {
        self.loads.take_read(part, token)
    }
}

/// Kafka's mapping of a failed group write to what the client is told
/// (GroupMetadataManager / OffsetMetadataManager).
fn client_error_for_append(error: ResponseError) -> i16 {
    match error {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator.code()
        }
        ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
            ResponseError::InvalidCommitOffsetSize.code()
        }
        _ => ResponseError::UnknownServerError.code(),
    }
}

/// One batch of records (key, value or tombstone) in the v2 format.
pub(super) fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    leader_epoch: i32,
    wall_ms: i64,
) -> Option<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: leader_epoch,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Offset minus sequence must be constant or the encoder splits
            // the batch; the base sequence stays -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: wall_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).ok()?;
    Some(buf.freeze())
}

/// The records of whole batches in `data` at or after `from`:
/// (offset, key, value). Returns them and the offset after the last batch.
/// A batch that does not decode is skipped with a warning.
/// A record read back: (offset, key, value or tombstone).
pub(super) type ReadRecord = (i64, Bytes, Option<Bytes>);

pub(super) fn decode_batches(mut data: Bytes, from: i64) -> (Vec<ReadRecord>, Option<i64>) {
    let mut out = Vec::new();
    let mut next = None;
    // Batch header: base offset (8), length (4), then `length` bytes.
    while data.len() >= 12 {
        let base = i64::from_be_bytes(data[0..8].try_into().unwrap_or_default());
        let length = i32::from_be_bytes(data[8..12].try_into().unwrap_or_default());
        let total = 12usize.saturating_add(length.max(0) as usize);
        if length < 0 || total > data.len() {
            break; // a partial tail: read again from here
        }
        let mut batch = data.split_to(total);
        // Last offset delta sits at byte 23 of the batch (after base offset,
        // length, partition leader epoch, magic, crc, attributes).
        let last_delta = if total >= 27 {
            i32::from_be_bytes(batch[23..27].try_into().unwrap_or_default())
        } else {
            0
        };
        next = Some(base.saturating_add(last_delta as i64).saturating_add(1));
        match RecordBatchDecoder::decode(&mut batch) {
            Ok(set) => {
                for record in set.records {
                    if record.control || record.offset < from {
                        continue;
                    }
                    if let Some(key) = record.key {
                        out.push((record.offset, key, record.value));
                    }
                }
            }
            Err(e) => {
                warn!(base, error = %e, "skipping a __consumer_offsets batch that does not decode")
            }
        }
    }
    (out, next)
}

impl Node {
    /// The `__consumer_offsets` partitions this node should serve: the ones it
    /// leads with an open log. Starts loading new ones; drops lost ones.
    pub(super) fn groups_reconcile(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.config.is_broker() && self.cluster.is_some() {
            return;
        }
        self.groups_set_topics();
        let wanted = self.led_partitions(OFFSETS_TOPIC);
        let (dropped, added) = self.groups.loads.changes(&wanted);
        for index in dropped {
            info!(
                partition = index,
                "no longer coordinating this __consumer_offsets partition"
            );
            self.groups.loads.remove(index);
            let mut effects = Vec::new();
            self.groups.coordinator.unload(index, &mut effects);
            self.groups.effects.extend(effects);
        }
        for (index, part, leader_epoch) in added {
            self.begin_load(Loader::Groups, index, part, leader_epoch);
            let mut effects = Vec::new();
            self.groups.coordinator.begin_load(index, &mut effects);
            self.groups.effects.extend(effects);
            self.group_load_step(index, now, out);
        }
        self.pump_groups(now, out);
    }

    /// Move a load along; once loaded, the coordinator serves the partition.
    fn group_load_step(&mut self, index: i32, now: Now, out: &mut Vec<Output>) {
        if self.load_step(Loader::Groups, index, now, out) {
            let mut effects = Vec::new();
            self.groups
                .coordinator
                .finish_load(index, now.mono_millis() as i64, &mut effects);
            self.groups.effects.extend(effects);
        }
    }

    /// A load's read finished: replay its records.
    pub(super) fn group_read_done(
        &mut self,
        index: i32,
        result: Result<FetchData, LogError>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        for (offset, key, value) in self.load_read_done(Loader::Groups, index, result) {
            self.groups
                .coordinator
                .replay(index, offset, &key, value.as_deref());
        }
        self.group_load_step(index, now, out);
        self.pump_groups(now, out);
    }

    /// After activity on a log the coordinator watches: loads and writes move on.
    pub(super) fn groups_log_activity(&mut self, part: PartId, now: Now, out: &mut Vec<Output>) {
        if !self.groups.watches(part) {
            return;
        }
        for index in self.groups.loads.indexes_on(part) {
            self.group_load_step(index, now, out);
        }
        self.settle_group_appends(Some(part), now, out);
        self.pump_groups(now, out);
    }

    /// Report the writes that are replicated, failed or timed out.
    fn settle_group_appends(&mut self, only: Option<PartId>, now: Now, out: &mut Vec<Output>) {
        let _ = out;
        let now_ms = now.mono_millis();
        let mut done = Vec::new();
        for (&token, a) in &self.groups.appends {
            if only.is_some_and(|p| p != a.part) {
                continue;
            }
            let partition = self.partitions.get(&a.part);
            let result = match partition {
                None => Some(Err(ResponseError::NotLeaderOrFollower)),
                Some(_) if !self.leads(a.part) => Some(Err(ResponseError::NotLeaderOrFollower)),
                Some(p) if p.log.high_watermark() > a.last_offset => Some(Ok(())),
                Some(p) if matches!(p.log.state(), LogState::Failed(_)) => {
                    Some(Err(ResponseError::KafkaStorageError))
                }
                Some(_) if now_ms >= a.deadline_ms => Some(Err(ResponseError::RequestTimedOut)),
                Some(_) => None,
            };
            if let Some(result) = result {
                done.push((token, result));
            }
        }
        for (token, result) in done {
            self.groups.appends.remove(&token);
            let result = result.map_err(client_error_for_append);
            let mut effects = Vec::new();
            self.groups
                .coordinator
                .on_append_done(now_ms as i64, token, result, &mut effects);
            self.groups.effects.extend(effects);
        }
    }

    /// Carry out the coordinator's effects until none are left.
    pub(super) fn pump_groups(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.groups.pumping {
            return;
        }
        self.groups.pumping = true;
        while let Some(effect) = self.groups.effects.pop_front() {
            match effect {
                Effect::Reply { req, reply } => {
                    if let Some((to, api)) = self.groups.waiting.remove(&req) {
                        self.answer_group(to, api, reply, out);
                    }
                }
                Effect::Append {
                    partition,
                    token,
                    records,
                } => self.group_append(partition, token, records, now, out),
            }
        }
        self.groups.pumping = false;
        self.arm_group_timer(now, out);
    }

    fn group_append(
        &mut self,
        index: i32,
        token: AppendToken,
        records: Vec<(Bytes, Option<Bytes>)>,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let part = self.lookup(OFFSETS_TOPIC, index);
        let admitted = match part {
            None => Err(ResponseError::NotLeaderOrFollower),
            Some(part) => self.admit_produce(part, -1).map_err(|(e, _)| e),
        };
        let epoch = self.partition_leader_epoch(OFFSETS_TOPIC, index);
        let appended = admitted.and_then(|_| {
            let part = part.unwrap_or_default();
            let batch = encode_batch(&records, epoch, now.wall_millis)
                .ok_or(ResponseError::CorruptMessage)?;
            self.append_one(part, Some(batch), now, out)
                .map(|info| (part, info.last_offset))
                .map_err(|(e, _)| e)
        });
        match appended {
            Ok((part, last_offset)) => {
                self.groups.appends.insert(
                    token,
                    PendingAppend {
                        part,
                        last_offset,
                        deadline_ms: now
                            .mono_millis()
                            .saturating_add(self.config.offsets_commit_timeout_ms),
                    },
                );
                // The write may settle at once (a leader alone in its ISR).
                self.after_log_activity(part, now, out);
            }
            Err(e) => {
                let mut effects = Vec::new();
                self.groups.coordinator.on_append_done(
                    now.mono_millis() as i64,
                    token,
                    Err(client_error_for_append(e)),
                    &mut effects,
                );
                self.groups.effects.extend(effects);
            }
        }
    }

    fn arm_group_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        let coordinator = self
            .groups
            .coordinator
            .next_deadline()
            .map(|ms| ms.max(0) as u64);
        let appends = self.groups.appends.values().map(|a| a.deadline_ms).min();
        let next = match (coordinator, appends) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if next == self.groups.armed {
            return;
        }
        self.groups.armed = next;
        match next {
            Some(ms) => out.push(Output::SetTimer {
                id: TIMER_GROUP,
                at_nanos: ms.max(now.mono_millis()).saturating_mul(1_000_000),
            }),
            None => out.push(Output::CancelTimer { id: TIMER_GROUP }),
        }
    }

    pub(super) fn on_group_timer(&mut self, now: Now, out: &mut Vec<Output>) {
        self.groups.armed = None;
        let mut effects = Vec::new();
        self.groups
            .coordinator
            .tick(now.mono_millis() as i64, &mut effects);
        self.groups.effects.extend(effects);
        self.settle_group_appends(None, now, out);
        self.pump_groups(now, out);
    }

    /// Every served group, for the simulator's monitor.
    pub fn group_views(&self) -> Vec<crate::group::GroupView> {
        self.groups.coordinator.views()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_through_the_log_format() {
        let records = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        let mut batch = BytesMut::from(&encode_batch(&records, 3, 1000).unwrap()[..]);
        // The log assigns offsets: put the batch at base offset 40.
        batch[0..8].copy_from_slice(&40i64.to_be_bytes());
        let (decoded, next) = decode_batches(batch.freeze(), 0);
        assert_eq!(next, Some(42), "{decoded:?}");
        assert_eq!(decoded.len(), 2);
        assert_eq!(
            decoded[0],
            (
                40,
                Bytes::from_static(b"k1"),
                Some(Bytes::from_static(b"v1"))
            )
        );
        assert_eq!(decoded[1], (41, Bytes::from_static(b"k2"), None));
        // Records before `from` are skipped; a partial tail is left for later.
        let (decoded, _) = decode_batches(
            {
                let mut b = BytesMut::from(&encode_batch(&records, 3, 1000).unwrap()[..]);
                b.extend_from_slice(&[0u8; 7]);
                b.freeze()
            },
            1,
        );
        assert_eq!(decoded.len(), 1);
    }

    #[test]
    fn garbage_is_skipped_without_panicking() {
        let (decoded, next) = decode_batches(Bytes::from(vec![0xffu8; 64]), 0);
        assert!(decoded.is_empty());
        assert_eq!(next, None);
        let mut junk = vec![0u8; 40];
        junk[8..12].copy_from_slice(&28i32.to_be_bytes());
        let (decoded, next) = decode_batches(Bytes::from(junk), 0);
        assert!(decoded.is_empty());
        assert_eq!(next, Some(1));
    }

    #[test]
    fn append_errors_map_as_kafka_maps_them() {
        assert_eq!(
            client_error_for_append(ResponseError::NotLeaderOrFollower),
            ResponseError::NotCoordinator.code()
        );
        assert_eq!(
            client_error_for_append(ResponseError::RequestTimedOut),
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(
            client_error_for_append(ResponseError::MessageTooLarge),
            ResponseError::InvalidCommitOffsetSize.code()
        );
    }
}
