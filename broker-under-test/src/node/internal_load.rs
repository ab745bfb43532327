//! Loading the internal-topic partitions a coordinator serves (the group
//! coordinator's `__consumer_offsets`, the transaction coordinator's
//! `__transaction_state`): when this node becomes a partition's leader, its
//! log is replayed from the start to the end it had then, and the partition
//! is served once the high watermark has reached that end too, so that
//! nothing served can still be lost with a leader change. The records go
//! to the coordinator to replay; what it does once loaded is its own.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::group::{decode_batches, ReadRecord};
use super::{Node, PartId};
use crate::log::{FetchData, LogError, LogState};
use crate::seam::{Now, Output};

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoadPhase {
    /// Replaying the log from `next` up to `target` (its end when leadership began).
    Reading {
        next: i64,
        target: i64,
    },
    /// Everything is replayed; waiting for the high watermark to reach `target`.
    Settling {
        target: i64,
    },
    Served,
}

#[derive(Debug)]
pub(super) struct Load {
    pub part: PartId,
    pub leader_epoch: i32,
    pub phase: LoadPhase,
    /// A read in flight (its token).
    reading: Option<u64>,
}

/// The loads of one coordinator's partitions.
#[derive(Debug)]
pub(super) struct Loads {
    topic: &'static str,
    /// Partition index -> its load.
    pub loads: BTreeMap<i32, Load>,
    /// Log reads in flight: (partition handle, token) -> partition index.
    reads: BTreeMap<(PartId, u64), i32>,
}

/// Which coordinator's loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loader {
    Groups,
    Txns,
}

impl Loads {
    pub(super) fn new(topic: &'static str) -> Loads {
        Loads {
            topic,
            loads: BTreeMap::new(),
            reads: BTreeMap::new(),
        }
    }

    pub(super) fn take_read(&mut self, part: PartId, token: u64) -> Option<i32> {
        self.reads.remove(&(part, token))
    }

    pub(super) fn watches(&self, part: PartId) -> bool {
        self.loads.values().any(|l| l.part == part)
    }

    pub(super) fn phase(&self, index: i32) -> Option<LoadPhase> {
        self.loads.get(&index).map(|l| l.phase)
    }

    pub(super) fn leader_epoch(&self, index: i32) -> Option<i32> {
        self.loads.get(&index).map(|l| l.leader_epoch)
    }

    pub(super) fn is_served(&self, index: i32) -> bool {
        self.phase(index) == Some(LoadPhase::Served)
    }

    /// Partitions with a load on `part` (a log's activity may move them).
    pub(super) fn indexes_on(&self, part: PartId) -> Vec<i32> {
        self.loads
            .iter()
            .filter(|(_, l)| l.part == part)
            .map(|(&i, _)| i)
            .collect()
    }

    /// Given the partitions this node should serve now (index -> handle and
    /// leader epoch): those to drop, and those to start loading.
    pub(super) fn changes(
        &self,
        wanted: &BTreeMap<i32, (PartId, i32)>,
    ) -> (Vec<i32>, Vec<(i32, PartId, i32)>) {
        let dropped = self
            .loads
            .iter()
            .filter(|(i, l)| wanted.get(i) != Some(&(l.part, l.leader_epoch)))
            .map(|(&i, _)| i)
            .collect();
        let added = wanted
            .iter()
            .filter(|(i, &(part, epoch))| {
                self.loads
                    .get(i)
                    .is_none_or(|l| (l.part, l.leader_epoch) != (part, epoch))
            })
            .map(|(&i, &(part, epoch))| (i, part, epoch))
            .collect();
        (dropped, added)
    }

    pub(super) fn remove(&mut self, index: i32) {
        self.loads.remove(&index);
        self.reads.retain(|_, i| *i != index);
    }
}

impl Node {
    fn loads_mut(&mut self, c: Loader) -> &mut Loads {
        match c {
            Loader::Groups => &mut self.groups.loads,
            Loader::Txns => &mut self.txns.loads,
        }
    }

    fn loads_of(&self, c: Loader) -> &Loads {
        match c {
            Loader::Groups => &self.groups.loads,
            Loader::Txns => &self.txns.loads,
        }
    }

    /// The partitions of `topic` this node leads with an open log: index ->
    /// (handle, leader epoch).
    pub(super) fn led_partitions(&self, topic: &str) -> BTreeMap<i32, (PartId, i32)> {
        let mut led = BTreeMap::new();
        if let Some(t) = self.topics.get(topic) {
            for (&index, &part) in &t.partitions {
                let online = self
                    .partitions
                    .get(&part)
                    .is_some_and(|p| matches!(p.log.state(), LogState::Online));
                if online && self.leads(part) {
                    led.insert(index, (part, self.partition_leader_epoch(topic, index)));
                }
            }
        }
        led
    }

    /// Start loading partition `index` (its log from the start to its end now).
    pub(super) fn begin_load(&mut self, c: Loader, index: i32, part: PartId, leader_epoch: i32) {
        let Some(p) = self.partitions.get(&part) else {
            return;
        };
        let (next, target) = (p.log.log_start_offset(), p.log.log_end_offset());
        let loads = self.loads_mut(c);
        info!(
            partition = index,
            leader_epoch,
            from = next,
            to = target,
            "loading {} partition",
            loads.topic
        );
        loads.loads.insert(
            index,
            Load {
                part,
                leader_epoch,
                phase: LoadPhase::Reading { next, target },
                reading: None,
            },
        );
    }

    /// Move a load along: issue the next read, or finish once the high
    /// watermark is there. True when the partition just became served.
    pub(super) fn load_step(
        &mut self,
        c: Loader,
        index: i32,
        now: Now,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(load) = self.loads_of(c).loads.get(&index) else {
            return false;
        };
        let (part, phase, reading) = (load.part, load.phase, load.reading);
        let topic = self.loads_of(c).topic;
        match phase {
            LoadPhase::Reading { next, target } => {
                if reading.is_some() {
                    return false;
                }
                if next >= target {
                    if let Some(l) = self.loads_mut(c).loads.get_mut(&index) {
                        l.phase = LoadPhase::Settling { target };
                    }
                    return self.load_step(c, index, now, out);
                }
                let start = self.partitions.get(&part).map(|p| p.log.log_start_offset());
                let from = start.map_or(next, |s| next.max(s));
                match self.with_log(part, out, |log, io| {
                    log.read_replica(from, LOAD_READ_BYTES, now, io)
                }) {
                    Some(Ok(token)) => {
                        let loads = self.loads_mut(c);
                        loads.reads.insert((part, token), index);
                        if let Some(l) = loads.loads.get_mut(&index) {
                            l.reading = Some(token);
                            l.phase = LoadPhase::Reading { next: from, target };
                        }
                    }
                    // Truncating or busy: tried again on the log's next activity.
                    Some(Err(LogError::NotReady)) | None => {}
                    Some(Err(e)) => {
                        warn!(partition = index, error = ?e, "cannot read {topic}; retrying")
                    }
                }
                false
            }
            LoadPhase::Settling { target } => {
                let hw = self
                    .partitions
                    .get(&part)
                    .map_or(-1, |p| p.log.high_watermark());
                if hw < target {
                    return false;
                }
                info!(partition = index, end = target, "{topic} partition loaded");
                if let Some(l) = self.loads_mut(c).loads.get_mut(&index) {
                    l.phase = LoadPhase::Served;
                }
                true
            }
            LoadPhase::Served => false,
        }
    }

    /// A load's read finished: the records read, to replay (then call
    /// [`Node::load_step`]).
    pub(super) fn load_read_done(
        &mut self,
        c: Loader,
        index: i32,
        result: Result<FetchData, LogError>,
    ) -> Vec<ReadRecord> {
        let loads = self.loads_mut(c);
        let topic = loads.topic;
        let Some(load) = loads.loads.get_mut(&index) else {
            return Vec::new();
        };
        load.reading = None;
        let LoadPhase::Reading { next, target } = load.phase else {
            return Vec::new();
        };
        match result {
            Ok(data) => {
                let (records, after) = decode_batches(data.records, next);
                load.phase = match after.filter(|a| *a > next) {
                    Some(after) => LoadPhase::Reading {
                        next: after,
                        target,
                    },
                    None => {
                        // Nothing more could be read below the target.
                        warn!(
                            partition = index,
                            next,
                            target,
                            "{topic} ends before its recorded end; serving what was read"
                        );
                        LoadPhase::Settling { target: next }
                    }
                };
                records
            }
            Err(e) => {
                warn!(partition = index, error = ?e, "reading {topic} failed; retrying");
                Vec::new()
            }
        }
    }
}
