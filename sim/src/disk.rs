//! A node's simulated disk: the in-memory disk of the broker crate (page cache
//! and durable views) plus service times and the faults of a real device.

use broker::memdisk::MemDisk;
use broker::seam::{DiskError, DiskErrorKind, DiskExecutor, DiskOp, DiskReply};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::DiskSpec;

/// Faults currently active on a disk.
#[derive(Debug, Clone, Default)]
pub struct DiskFaults {
    /// Service times are multiplied by this (1 = healthy).
    pub slow_factor: u64,
    /// Reads fail with EIO.
    pub latent_read_errors: bool,
    /// Writes land at a wrong offset.
    pub misdirected_writes: bool,
    /// Syncs fail.
    pub failing_syncs: bool,
}

/// Counters of what the disk did, for reports and fault tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub ops: u64,
    pub syncs: u64,
    pub failed_ops: u64,
    pub torn_sectors_kept: u64,
    pub bit_flips: u64,
    pub misdirected: u64,
}

pub struct SimDisk {
    pub mem: MemDisk,
    spec: DiskSpec,
    pub faults: DiskFaults,
    pub stats: DiskStats,
}

pub const SECTOR: usize = 512;

impl SimDisk {
    pub fn new(spec: DiskSpec) -> SimDisk {
        SimDisk {
            mem: MemDisk::new(),
            spec,
            faults: DiskFaults {
                slow_factor: 1,
                ..Default::default()
            },
            stats: DiskStats::default(),
        }
    }

    /// How long `op` takes to serve, in nanoseconds.
    pub fn service_nanos(&self, op: &DiskOp, rng: &mut ChaCha8Rng) -> u64 {
        let [min, max] = match op {
            DiskOp::SyncFile { .. } | DiskOp::SyncDir { .. } => self.spec.sync_latency_us,
            _ => self.spec.latency_us,
        };
        rng.gen_range(min..=max) * 1_000 * self.faults.slow_factor.max(1)
    }

    /// Carry out `op` with the active faults.
    pub fn execute(&mut self, op: &DiskOp, rng: &mut ChaCha8Rng) -> Result<DiskReply, DiskError> {
        self.stats.ops += 1;
        let result = match op {
            DiskOp::Read { .. } if self.faults.latent_read_errors => {
                Err(DiskError::new(DiskErrorKind::Io, "latent sector error"))
            }
            DiskOp::SyncFile { .. } | DiskOp::SyncDir { .. } if self.faults.failing_syncs => {
                // The kernel may drop the dirty pages after a failed sync; the
                // broker must not trust a later sync to save them.
                Err(DiskError::new(DiskErrorKind::Io, "sync failed"))
            }
            DiskOp::Write { path, offset, data }
                if self.faults.misdirected_writes && rng.gen_bool(0.5) =>
            {
                self.stats.misdirected += 1;
                let shift = SECTOR as u64 * rng.gen_range(1..8u64);
                let wrong = if rng.gen_bool(0.5) {
                    offset.saturating_sub(shift)
                } else {
                    offset + shift
                };
                // The device reports success for a write it put elsewhere.
                self.mem.execute(&DiskOp::Write {
                    path: path.clone(),
                    offset: wrong,
                    data: data.clone(),
                })
            }
            other => {
                if matches!(other, DiskOp::SyncFile { .. } | DiskOp::SyncDir { .. }) {
                    self.stats.syncs += 1;
                }
                self.mem.execute(other)
            }
        };
        if result.is_err() {
            self.stats.failed_ops += 1;
        }
        result
    }

    /// Power loss: keep the durable view, plus (with torn writes) a random
    /// prefix of the sectors of each file's unsynced tail.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) {
        let torn = self.spec.torn_writes;
        let mut kept = 0u64;
        self.mem.crash_torn(&mut |unsynced_sectors| {
            if !torn || unsynced_sectors == 0 {
                return 0;
            }
            let keep = rng.gen_range(0..=unsynced_sectors);
            kept += keep as u64;
            keep
        });
        self.stats.torn_sectors_kept += kept;
        self.faults = DiskFaults {
            slow_factor: 1,
            ..Default::default()
        };
    }

    /// Flip one random bit of one random file's durable data, if any.
    pub fn flip_bit(&mut self, rng: &mut ChaCha8Rng) -> Option<(String, u64)> {
        let flipped = self.mem.flip_random_bit(&mut |n| rng.gen_range(0..n));
        if flipped.is_some() {
            self.stats.bit_flips += 1;
        }
        flipped
    }

    /// A new empty disk (the node is replaced).
    pub fn wipe(&mut self) {
        self.mem = MemDisk::new();
    }

    /// Fill the disk: writes that grow it fail until `free` is called.
    pub fn fill(&mut self) {
        let used = self.mem.used_bytes();
        self.mem.set_capacity(Some(used));
    }

    pub fn free(&mut self) {
        self.mem.set_capacity(None);
    }
}
