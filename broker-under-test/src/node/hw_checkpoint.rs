//! `replication-offset-checkpoint`: every hosted partition's high watermark,
//! written now and then (`replica.high.watermark.checkpoint.interval.ms`)
//! and on an orderly stop, read back at start so a restarted replica does
//! not begin from a high watermark of zero.
//!
//! Kafka's text format: a version line (0), a count line, then
//! `<topic> <partition> <offset>` per partition. The write goes through a
//! temporary file, a sync and a rename, so a crash leaves the old one whole.

use std::collections::BTreeMap;

use bytes::Bytes;
use tracing::warn;

use super::replication::ReplicaRole;
use super::{DiskOwner, Node};
use crate::diskio::DiskIo;
use crate::log::LogState;
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, Now, Output};

pub const FILE: &str = "replication-offset-checkpoint";
const TMP: &str = "replication-offset-checkpoint.tmp";
/// Larger than any checkpoint of a sane number of partitions.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// Which step of the checkpoint a disk request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HwStep {
    Read,
    WriteStep,
    /// The last step of a write.
    Written,
}

#[derive(Debug, Default)]
pub(super) struct HwCheckpoint {
    /// Read at start, applied once the logs are open.
    pub restored: Option<HighWatermarks>,
    pub reading: bool,
    writing: Option<HighWatermarks>,
    written: HighWatermarks,
    last_write_ms: u64,
}

pub fn encode(hws: &HighWatermarks) -> String {
    let mut text = format!("0\n{}\n", hws.len());
    for ((topic, partition), hw) in hws {
        text.push_str(&format!("{topic} {partition} {hw}\n"));
    }
    text
}

/// `None` for anything malformed (the file is then ignored: high
/// watermarks start at zero and are learned again).
pub fn parse(bytes: &[u8]) -> Option<HighWatermarks> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut hws = HighWatermarks::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let topic = fields.next()?;
        let partition: i32 = fields.next()?.parse().ok()?;
        let hw: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() || partition < 0 || hw < 0 {
            return None;
        }
        hws.insert((topic.to_string(), partition), hw);
    }
    (hws.len() == count && lines.all(|l| l.trim().is_empty())).then_some(hws)
}

impl Node {
    /// At start, when the listing shows a checkpoint: read it.
    pub(super) fn hw_checkpoint_read(&mut self, out: &mut Vec<Output>) {
        let mut io = DiskIo::new(&mut self.next_disk_req, out);
        let req = io.submit(DiskOp::Read {
            path: FILE.to_string(),
            offset: 0,
            len: MAX_BYTES,
        });
        self.disk_owner
            .insert(req, DiskOwner::HwCheckpoint(HwStep::Read));
        if let Some(c) = self.cluster.as_mut() {
            c.hw_checkpoint.reading = true;
        }
    }

    pub(super) fn hw_checkpoint_disk_done(
        &mut self,
        now: Now,
        step: HwStep,
        result: Result<DiskReply, DiskError>,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match step {
            HwStep::Read => {
                c.hw_checkpoint.reading = false;
                match result {
                    Ok(DiskReply::Data(bytes)) => match parse(&bytes) {
                        Some(hws) => c.hw_checkpoint.restored = Some(hws),
                        None => warn!("ignoring a malformed {FILE}"),
                    },
                    Ok(_) => {}
                    Err(e) if e.kind == DiskErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(error = %e, "cannot read {FILE}; high watermarks start at zero")
                    }
                }
                self.check_recovered(now, out);
            }
            HwStep::WriteStep => {
                if let Err(e) = result {
                    warn!(error = %e, "writing {FILE} failed");
                }
            }
            HwStep::Written => {
                let hws = c.hw_checkpoint.writing.take();
                match result {
                    Ok(_) => {
                        if let Some(hws) = hws {
                            c.hw_checkpoint.written = hws;
                        }
                    }
                    Err(e) => warn!(error = %e, "writing {FILE} failed"),
                }
            }
        }
    }

    /// Once the logs are open: give each the high watermark it had. A
    /// partition the checkpoint does not list starts from its log start: what
    /// it holds above that may never have been committed, and its leader will
    /// say how far it was.
    pub(super) fn hw_checkpoint_apply(&mut self, out: &mut Vec<Output>) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let restored = c.hw_checkpoint.restored.take().unwrap_or_default();
        let parts: Vec<(super::PartId, i64)> = self
            .partitions
            .iter()
            .filter(|(_, p)| matches!(p.log.state(), LogState::Online))
            .map(|(id, p)| {
                let hw = restored
                    .get(&(p.topic.clone(), p.index))
                    .copied()
                    .unwrap_or_else(|| p.log.log_start_offset());
                (*id, hw)
            })
            .collect();
        for (part, hw) in parts {
            self.with_log(part, out, |log, io| {
                log.set_replicated(true);
                log.restore_high_watermark(hw, io);
            });
        }
    }

    /// Write the checkpoint if it is due (or `force`) and anything changed.
    pub(super) fn hw_checkpoint_maybe_write(
        &mut self,
        now: Now,
        force: bool,
        out: &mut Vec<Output>,
    ) {
        let interval = self.config.replica_hw_checkpoint_interval_ms;
        // Cheap checks first: this runs on every replication tick.
        let Some(cp) = self.cluster.as_ref().map(|c| &c.hw_checkpoint) else {
            return;
        };
        let due = force || now.mono_millis().saturating_sub(cp.last_write_ms) >= interval;
        if !due || cp.writing.is_some() || cp.reading {
            return;
        }
        let current: HighWatermarks = self
            .partitions
            .values()
            .filter(|p| {
                matches!(p.log.state(), LogState::Online)
                    && matches!(p.role, ReplicaRole::Leader(_) | ReplicaRole::Follower(_))
            })
            .map(|p| ((p.topic.clone(), p.index), p.log.high_watermark()))
            .collect();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let cp = &mut c.hw_checkpoint;
        if current == cp.written {
            return;
        }
        cp.last_write_ms = now.mono_millis();
        let data = Bytes::from(encode(&current));
        cp.writing = Some(current);
        let mut io = DiskIo::new(&mut self.next_disk_req, out);
        let steps = [
            DiskOp::Create {
                path: TMP.to_string(),
            },
            DiskOp::Write {
                path: TMP.to_string(),
                offset: 0,
                data,
            },
            DiskOp::SyncFile {
                path: TMP.to_string(),
            },
            DiskOp::Rename {
                from: TMP.to_string(),
                to: FILE.to_string(),
            },
        ];
        let mut reqs = Vec::new();
        for op in steps {
            reqs.push((io.submit(op), HwStep::WriteStep));
        }
        reqs.push((
            io.submit(DiskOp::SyncDir {
                path: String::new(),
            }),
            HwStep::Written,
        ));
        for (req, step) in reqs {
            self.disk_owner.insert(req, DiskOwner::HwCheckpoint(step));
        }
    }

    /// A checkpoint read or write is in flight.
    pub(super) fn hw_checkpoint_busy(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.hw_checkpoint.reading || c.hw_checkpoint.writing.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut hws = HighWatermarks::new();
        hws.insert(("events".into(), 0), 42);
        hws.insert(("events".into(), 2), 0);
        hws.insert(("other.topic_x".into(), 11), 7_000_000_000);
        let text = encode(&hws);
        assert_eq!(parse(text.as_bytes()), Some(hws));
        assert_eq!(parse(b"0\n0\n"), Some(HighWatermarks::new()));
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\nevents 0 5\n",
            b"0\n1\nevents x 5\n",
            b"0\n1\nevents 0 -5\n",
            b"0\n1\nevents 0 5 9\n",
            b"0\n1\nevents 0 5\nextra 1 1\n",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
