//! The metadata quorum's stable storage, in `__cluster_metadata-0/`:
//!
//! - `quorum-state`: the epoch, the vote and the known leader (replaced
//!   atomically: write a temporary file, sync it, rename, sync the directory);
//! - `log`: the metadata log since the snapshot, one frame per entry:
//!   `[len u32][crc32c u32][offset i64][epoch i32][kind u8][data]`, the CRC
//!   covering everything after it; appended, synced, cut at a torn tail on
//!   recovery, truncated by the quorum at a divergent suffix;
//! - `snapshot`: `[crc32c u32][end offset i64][epoch i32][data]`, replaced atomically.
//!
//! and, at the top of the data directory, `meta.properties` (Kafka's format
//! step): `version=1`, `cluster.id`, `node.id` and `directory.id` (KIP-858),
//! a random UUID drawn when the directory is formatted that names this
//! storage for as long as it lives: the broker registers with it, and the
//! controller recognizes a restart of the same broker by it.
//!
//! The quorum core (`raft`) decides what to persist; this module turns its
//! actions into disk requests and tells it when they are durable. In
//! `page-cache` durability nothing is synced and writes count as durable once
//! in the page cache: Kafka's semantics, and the known-unsafe configuration.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::quorum_wire::{read_frame, write_frame};
use crate::diskio::DiskIo;
use crate::raft::{Entry, Recovered, Snapshot};
use crate::seam::{DiskError, DiskErrorKind, DiskOp, DiskReply, DiskReqId, NodeId};

pub const DIR: &str = "__cluster_metadata-0";
const STATE: &str = "__cluster_metadata-0/quorum-state";
const STATE_TMP: &str = "__cluster_metadata-0/quorum-state.tmp";
const LOG: &str = "__cluster_metadata-0/log";
const LOG_TMP: &str = "__cluster_metadata-0/log.tmp";
const SNAPSHOT: &str = "__cluster_metadata-0/snapshot";
const SNAPSHOT_TMP: &str = "__cluster_metadata-0/snapshot.tmp";
pub const META: &str = "meta.properties";
const META_TMP: &str = "meta.properties.tmp";

/// What the store tells the node.
#[derive(Debug)]
pub enum StoreEvent {
    /// Recovery finished: the quorum's durable state.
    Recovered(Recovered),
    /// The data directory belongs to another cluster or node: refuse to start.
    Refused(String),
    StatePersisted(u64),
    LogDurable(i64),
    SnapshotInstalled(i64),
    /// A snapshot the node took is durable (the quorum may drop the log below it).
    SnapshotStored(Snapshot),
    /// The disk failed us: the quorum cannot go on safely on this node.
    Failed(String),
}

/// Where recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    ReadMeta,
    WriteMeta,
    ListDir,
    ReadFiles,
    CutTail,
    Ready,
    Failed,
}

/// What a disk request was for.
#[derive(Debug, Clone)]
enum Purpose {
    /// Part of a chain whose last request carries the outcome.
    Step,
    Meta,
    Listing,
    ReadState,
    ReadLog,
    ReadSnapshot,
    TailCut,
    StateDone(u64),
    /// A sync (or, in page-cache mode, a write) after which the log is
    /// durable up to this end offset.
    LogDone(i64),
    SnapshotInstalled(i64),
    SnapshotStored(Snapshot),
}

pub struct QuorumStore {
    cluster_id: String,
    node_id: NodeId,
    sync: bool,
    /// Draws the directory id if this start formats the directory.
    seed: u64,
    /// This data directory's `directory.id`, once read or drawn.
    directory_id: Option<Uuid>,
    step: Step,
    pending: BTreeMap<DiskReqId, Purpose>,
    /// Byte position in `log` of each entry's frame, by offset.
    positions: BTreeMap<i64, u64>,
    /// Length of `log` in bytes, as issued.
    log_len: u64,
    /// End offset (exclusive) of what has been issued to `log`.
    log_end: i64,
    // What recovery has read so far.
    state_bytes: Option<Bytes>,
    log_bytes: Option<Bytes>,
    snapshot_bytes: Option<Bytes>,
    reads_left: usize,
    recovered: Option<Recovered>,
}

impl QuorumStore {
    /// `seed` comes from the node's seeded randomness (a fresh one per
    /// process start); a directory formatted by this start gets its id from it.
    pub fn new(cluster_id: &str, node_id: NodeId, sync: bool, seed: u64) -> QuorumStore {
        QuorumStore {
            cluster_id: cluster_id.to_string(),
            node_id,
            sync,
            seed,
            directory_id: None,
            step: Step::Idle,
            pending: BTreeMap::new(),
            positions: BTreeMap::new(),
            log_len: 0,
            log_end: 0,
            state_bytes: None,
            log_bytes: None,
            snapshot_bytes: None,
            reads_left: 0,
            recovered: None,
        }
    }

    /// The data directory's `directory.id`: known once recovery has read
    /// `meta.properties` (or formatted the directory); `None` before, or if
    /// the file holds one that does not parse.
    pub fn directory_id(&self) -> Option<Uuid> {
        self.directory_id
    }

    /// A new random directory id (RFC 4122 version 4, as Kafka's
    /// `Uuid.randomUuid`), from this start's seed on a stream of its own so
    /// that it is independent of every other draw made from the seed. Never
    /// one of the ids Kafka reserves (the first 100).
    fn draw_directory_id(&self) -> Uuid {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(DIRECTORY_ID_STREAM);
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid::from_bytes(bytes)
    }

    pub fn owns(&self, req: DiskReqId) -> bool {
        self.pending.contains_key(&req)
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn submit(&mut self, io: &mut DiskIo, op: DiskOp, purpose: Purpose) -> DiskReqId {
        let req = io.submit(op);
        self.pending.insert(req, purpose);
        req
    }

    /// Begin recovery: check `meta.properties`, then read the quorum's files.
    pub fn start(&mut self, io: &mut DiskIo) {
        self.step = Step::ReadMeta;
        self.submit(
            io,
            DiskOp::Read {
                path: META.into(),
                offset: 0,
                len: 64 * 1024,
            },
            Purpose::Meta,
        );
    }

    fn meta_text(&self, directory_id: Uuid) -> String {
        format!(
            "# written by stormlog on first start (Kafka's format step)\nversion=1\ncluster.id={}\nnode.id={}\ndirectory.id={}\n",
            self.cluster_id, self.node_id, directory_id
        )
    }

    /// Write `meta.properties` durably in every mode (a torn one would keep
    /// the node from starting), then go on to list the quorum's directory.
    fn write_meta(&mut self, io: &mut DiskIo, text: String) {
        self.step = Step::WriteMeta;
        self.replace_with(
            io,
            META_TMP,
            META,
            Bytes::from(text),
            Purpose::Listing,
            true,
        );
    }

    /// Replace `path` atomically with `data` through `tmp`; the last request
    /// carries `done`.
    fn replace_atomically(
        &mut self,
        io: &mut DiskIo,
        tmp: &str,
        path: &str,
        data: Bytes,
        done: Purpose,
    ) {
        let sync = self.sync;
        self.replace_with(io, tmp, path, data, done, sync);
    }

    /// As [`Self::replace_atomically`], syncing or not whatever the mode.
    fn replace_with(
        &mut self,
        io: &mut DiskIo,
        tmp: &str,
        path: &str,
        data: Bytes,
        done: Purpose,
        sync: bool,
    ) {
        self.submit(io, DiskOp::Create { path: tmp.into() }, Purpose::Step);
        let write = DiskOp::Write {
            path: tmp.into(),
            offset: 0,
            data,
        };
        self.submit(io, write, Purpose::Step);
        if sync {
            self.submit(io, DiskOp::SyncFile { path: tmp.into() }, Purpose::Step);
        }
        let rename = DiskOp::Rename {
            from: tmp.into(),
            to: path.into(),
        };
        if !sync {
            self.submit(io, rename, done);
            return;
        }
        self.submit(io, rename, Purpose::Step);
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        self.submit(io, DiskOp::SyncDir { path: dir.into() }, done);
    }

    pub fn on_disk_done(
        &mut self,
        req: DiskReqId,
        result: Result<DiskReply, DiskError>,
        io: &mut DiskIo,
        events: &mut Vec<StoreEvent>,
    ) {
        let Some(purpose) = self.pending.remove(&req) else {
            return;
        };
        if self.step == Step::Failed {
            return;
        }
        let not_found = matches!(&result, Err(e) if e.kind == DiskErrorKind::NotFound);
        match purpose {
            Purpose::Meta => match result {
                Ok(DiskReply::Data(bytes)) => {
                    match check_meta(&bytes, &self.cluster_id, self.node_id) {
                        Ok(DirectoryId::Found(id)) => {
                            self.directory_id = Some(id);
                            self.list_dir(io);
                        }
                        Ok(DirectoryId::Malformed(value)) => {
                            // Not ours to overwrite (it may be evidence of
                            // corruption): run without one. The broker then
                            // registers without log directories, which only
                            // costs a restart the wait for the old session.
                            warn!(
                                value,
                                "{META} has a directory.id that does not parse; running without one"
                            );
                            self.list_dir(io);
                        }
                        Ok(DirectoryId::Missing) => {
                            // Written before directory ids existed: give
                            // the directory one now, kept as the rest of
                            // the file is.
                            let id = self.draw_directory_id();
                            info!(directory_id = %id, "{META} has no directory.id; adding one");
                            self.directory_id = Some(id);
                            let mut text = String::from_utf8_lossy(&bytes).into_owned();
                            if !text.is_empty() && !text.ends_with('\n') {
                                text.push('\n');
                            }
                            text.push_str(&format!("directory.id={id}\n"));
                            self.write_meta(io, text);
                        }
                        Err(why) => {
                            self.step = Step::Failed;
                            events.push(StoreEvent::Refused(why));
                        }
                    }
                }
                _ if not_found => {
                    let id = self.draw_directory_id();
                    info!(cluster_id = %self.cluster_id, directory_id = %id, "formatting a fresh data directory");
                    self.directory_id = Some(id);
                    self.submit(io, DiskOp::CreateDir { path: DIR.into() }, Purpose::Step);
                    // Kafka's format step.
                    let text = self.meta_text(id);
                    self.write_meta(io, text);
                }
                other => self.fail(events, format!("reading {META}: {other:?}")),
            },
            Purpose::Listing if self.step == Step::WriteMeta => self.list_dir(io),
            Purpose::Listing => match result {
                Ok(DiskReply::Listing(entries)) => {
                    self.step = Step::ReadFiles;
                    for entry in entries.iter().filter(|e| !e.is_dir) {
                        let purpose = match entry.name.as_str() {
                            "quorum-state" => Purpose::ReadState,
                            "log" => Purpose::ReadLog,
                            "snapshot" => Purpose::ReadSnapshot,
                            _ => continue,
                        };
                        self.reads_left += 1;
                        let path = format!("{DIR}/{}", entry.name);
                        let read = DiskOp::Read {
                            path,
                            offset: 0,
                            len: entry.size,
                        };
                        self.submit(io, read, purpose);
                    }
                    if self.reads_left == 0 {
                        self.finish_recovery(io, events);
                    }
                }
                _ if not_found => {
                    self.step = Step::ReadFiles;
                    self.submit(io, DiskOp::CreateDir { path: DIR.into() }, Purpose::Step);
                    self.finish_recovery(io, events);
                }
                other => self.fail(events, format!("listing {DIR}: {other:?}")),
            },
            Purpose::ReadState | Purpose::ReadLog | Purpose::ReadSnapshot => {
                let bytes = match result {
                    Ok(DiskReply::Data(bytes)) => bytes,
                    other => {
                        return self.fail(
                            events,
                            format!("reading the metadata quorum's files: {other:?}"),
                        )
                    }
                };
                match purpose {
                    Purpose::ReadState => self.state_bytes = Some(bytes),
                    Purpose::ReadLog => self.log_bytes = Some(bytes),
                    _ => self.snapshot_bytes = Some(bytes),
                }
                self.reads_left -= 1;
                if self.reads_left == 0 {
                    self.finish_recovery(io, events);
                }
            }
            Purpose::TailCut => match result {
                Ok(_) => self.recovered_ready(events),
                Err(e) => self.fail(events, format!("cutting the metadata log's torn tail: {e}")),
            },
            Purpose::Step => {
                if let Err(e) = result {
                    self.fail(events, format!("metadata quorum storage: {e}"));
                }
            }
            Purpose::StateDone(version) => match result {
                Ok(_) => events.push(StoreEvent::StatePersisted(version)),
                Err(e) => self.fail(events, format!("persisting the quorum state: {e}")),
            },
            Purpose::LogDone(end) => match result {
                Ok(_) => events.push(StoreEvent::LogDurable(end)),
                Err(e) => self.fail(events, format!("syncing the metadata log: {e}")),
            },
            Purpose::SnapshotInstalled(end) => match result {
                Ok(_) => events.push(StoreEvent::SnapshotInstalled(end)),
                Err(e) => self.fail(events, format!("installing a metadata snapshot: {e}")),
            },
            Purpose::SnapshotStored(snapshot) => match result {
                Ok(_) => events.push(StoreEvent::SnapshotStored(snapshot)),
                Err(e) => self.fail(events, format!("storing a metadata snapshot: {e}")),
            },
        }
    }

    fn list_dir(&mut self, io: &mut DiskIo) {
        self.step = Step::ListDir;
        self.submit(io, DiskOp::List { path: DIR.into() }, Purpose::Listing);
    }

    fn fail(&mut self, events: &mut Vec<StoreEvent>, why: String) {
        error!(%why, "metadata quorum storage failed");
        self.step = Step::Failed;
        events.push(StoreEvent::Failed(why));
    }

    /// Parse what was read; cut a torn log tail before reporting.
    fn finish_recovery(&mut self, io: &mut DiskIo, events: &mut Vec<StoreEvent>) {
        let (epoch, voted_for, leader) = match self.state_bytes.take() {
            Some(bytes) => parse_state(&bytes).unwrap_or_else(|why| {
                // The file is replaced atomically, so this is corruption: the
                // safe reading is "no vote", but the epoch must not go back.
                warn!(%why, "quorum-state unreadable; starting from epoch 0 without a vote");
                (0, None, None)
            }),
            None => (0, None, None),
        };
        let snapshot = self.snapshot_bytes.take().and_then(|bytes| match parse_snapshot(&bytes) {
            Ok(s) => Some(s),
            Err(why) => {
                warn!(%why, "metadata snapshot refused; the log will be fetched again from the leader");
                None
            }
        });
        let start = snapshot.as_ref().map_or(0, |s| s.end_offset);
        let log = self.log_bytes.take().unwrap_or_default();
        let (entries, positions, valid_len) = parse_log(&log, start);
        if snapshot.is_none() && entries.first().is_some_and(|e| e.offset != 0) {
            // A log that starts after a snapshot we lost: unusable.
            warn!("metadata log starts past offset 0 with no snapshot; discarding it");
        }
        let usable = snapshot.is_some() || entries.first().is_none_or(|e| e.offset == 0);
        let (entries, positions, valid_len) = if usable {
            (entries, positions, valid_len)
        } else {
            (Vec::new(), BTreeMap::new(), 0)
        };
        self.positions = positions;
        self.log_len = valid_len;
        self.log_end = entries.last().map_or(start, |e| e.offset + 1);
        // Epoch: never lower than any epoch in the log.
        let epoch = entries
            .iter()
            .map(|e| e.epoch)
            .max()
            .unwrap_or(0)
            .max(epoch);
        info!(
            epoch,
            entries = entries.len(),
            snapshot_end = start,
            "metadata quorum state recovered"
        );
        self.recovered = Some(Recovered {
            epoch,
            voted_for,
            leader,
            snapshot,
            entries,
        });
        if (log.len() as u64) != valid_len {
            warn!(
                bytes = log.len() as u64 - valid_len,
                "cutting a torn or invalid tail off the metadata log"
            );
            self.step = Step::CutTail;
            self.submit(
                io,
                DiskOp::Truncate {
                    path: LOG.into(),
                    len: valid_len,
                },
                Purpose::Step,
            );
            let sync = DiskOp::SyncFile { path: LOG.into() };
            self.submit(io, sync, Purpose::TailCut);
        } else {
            if log.is_empty() {
                self.submit(io, DiskOp::Create { path: LOG.into() }, Purpose::Step);
                if self.sync {
                    self.submit(io, DiskOp::SyncDir { path: DIR.into() }, Purpose::Step);
                }
            }
            self.recovered_ready(events);
        }
    }

    fn recovered_ready(&mut self, events: &mut Vec<StoreEvent>) {
        self.step = Step::Ready;
        if let Some(r) = self.recovered.take() {
            events.push(StoreEvent::Recovered(r));
        }
    }

    // ----- the quorum's actions -----

    pub fn persist_state(
        &mut self,
        io: &mut DiskIo,
        version: u64,
        epoch: i32,
        voted_for: Option<NodeId>,
        leader: Option<NodeId>,
    ) {
        let text = format!(
            "epoch={epoch}\nvoted_for={}\nleader={}\n",
            voted_for.unwrap_or(-1),
            leader.unwrap_or(-1)
        );
        let crc = crc32c::crc32c(text.as_bytes());
        let data = Bytes::from(format!("{text}crc={crc}\n"));
        self.replace_atomically(io, STATE_TMP, STATE, data, Purpose::StateDone(version));
    }

    /// Append entries, then make them durable (one sync for the lot).
    pub fn append(&mut self, io: &mut DiskIo, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut buf = BytesMut::new();
        for entry in entries {
            self.positions
                .insert(entry.offset, self.log_len + buf.len() as u64);
            write_frame(&mut buf, entry);
            self.log_end = entry.offset + 1;
        }
        let len = buf.len() as u64;
        let write = DiskOp::Write {
            path: LOG.into(),
            offset: self.log_len,
            data: buf.freeze(),
        };
        self.log_len += len;
        let end = self.log_end;
        if self.sync {
            self.submit(io, write, Purpose::Step);
            self.submit(
                io,
                DiskOp::SyncFile { path: LOG.into() },
                Purpose::LogDone(end),
            );
        } else {
            self.submit(io, write, Purpose::LogDone(end));
        }
    }

    /// Cut every entry at `from` and after.
    pub fn truncate(&mut self, io: &mut DiskIo, from: i64) {
        let Some(&pos) = self.positions.range(from..).next().map(|(_, p)| p) else {
            return; // nothing at or after `from`
        };
        self.positions.split_off(&from);
        self.log_len = pos;
        self.log_end = from;
        let op = DiskOp::Truncate {
            path: LOG.into(),
            len: pos,
        };
        if self.sync {
            self.submit(io, op, Purpose::Step);
            self.submit(io, DiskOp::SyncFile { path: LOG.into() }, Purpose::Step);
        } else {
            self.submit(io, op, Purpose::Step);
        }
    }

    /// A snapshot fetched from the leader replaces the log.
    pub fn install_snapshot(&mut self, io: &mut DiskIo, snapshot: &Snapshot) {
        let end = snapshot.end_offset;
        self.replace_atomically(
            io,
            SNAPSHOT_TMP,
            SNAPSHOT,
            encode_snapshot(snapshot),
            Purpose::Step,
        );
        self.positions.clear();
        self.log_len = 0;
        self.log_end = end;
        self.replace_atomically(
            io,
            LOG_TMP,
            LOG,
            Bytes::new(),
            Purpose::SnapshotInstalled(end),
        );
    }

    /// Store a snapshot the node took of its own image.
    pub fn store_snapshot(&mut self, io: &mut DiskIo, snapshot: Snapshot) {
        let data = encode_snapshot(&snapshot);
        self.replace_atomically(
            io,
            SNAPSHOT_TMP,
            SNAPSHOT,
            data,
            Purpose::SnapshotStored(snapshot),
        );
    }

    /// Drop entries below `before` from the log file: rewrite what remains
    /// into a new file and swap it in. Issued in one go, so that (the disk
    /// being FIFO) every later append lands in the new file.
    pub fn delete_prefix(&mut self, io: &mut DiskIo, before: i64, keep: &[Entry]) {
        let mut buf = BytesMut::new();
        let mut positions = BTreeMap::new();
        for entry in keep.iter().filter(|e| e.offset >= before) {
            positions.insert(entry.offset, buf.len() as u64);
            write_frame(&mut buf, entry);
        }
        self.positions = positions;
        self.log_len = buf.len() as u64;
        self.replace_atomically(io, LOG_TMP, LOG, buf.freeze(), Purpose::Step);
    }
}

/// `ChaCha8Rng` stream of the directory id draw ("dir.id" in ASCII).
const DIRECTORY_ID_STREAM: u64 = 0x6469_722e_6964;

/// What `meta.properties` says of `directory.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirectoryId {
    Found(Uuid),
    /// No `directory.id` line (a file from before directory ids).
    Missing,
    /// A value that is not a UUID.
    Malformed(String),
}

fn check_meta(bytes: &[u8], cluster_id: &str, node_id: NodeId) -> Result<DirectoryId, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut found_cluster = None;
    let mut found_node = None;
    let mut directory = DirectoryId::Missing;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("cluster.id=") {
            found_cluster = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("node.id=") {
            found_node = v.parse::<NodeId>().ok();
        } else if let Some(v) = line.strip_prefix("directory.id=") {
            directory = match Uuid::parse_str(v.trim()) {
                Ok(id) => DirectoryId::Found(id),
                Err(_) => DirectoryId::Malformed(v.to_string()),
            };
        }
    }
    match (found_cluster, found_node) {
        (Some(c), _) if c != cluster_id => Err(format!(
            "the data directory belongs to cluster `{c}`, but this node is configured for cluster `{cluster_id}` (cluster.id); refusing to start"
        )),
        (_, Some(n)) if n != node_id => Err(format!(
            "the data directory belongs to node {n}, but this node is node.id={node_id}; refusing to start"
        )),
        (None, _) => Err(format!("{META} has no cluster.id; refusing to start")),
        _ => Ok(directory),
    }
}

fn parse_state(bytes: &[u8]) -> Result<(i32, Option<NodeId>, Option<NodeId>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let (body, crc_line) = text
        .rsplit_once("crc=")
        .ok_or_else(|| "no checksum".to_string())?;
    let crc: u32 = crc_line
        .trim()
        .parse()
        .map_err(|_| "bad checksum".to_string())?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    let mut epoch = None;
    let mut voted = None;
    let mut leader = None;
    for line in body.lines() {
        let (k, v) = line.split_once('=').ok_or("bad line")?;
        let v: i64 = v.parse().map_err(|_| format!("bad value in `{line}`"))?;
        match k {
            "epoch" => epoch = i32::try_from(v).ok(),
            "voted_for" => voted = (v >= 0).then_some(v as NodeId),
            "leader" => leader = (v >= 0).then_some(v as NodeId),
            _ => {}
        }
    }
    Ok((epoch.ok_or("no epoch")?, voted, leader))
}

/// Parse frames until the first torn or invalid one (or one that does not
/// follow its predecessor). Returns the entries, their positions and the
/// length of the valid prefix.
fn parse_log(bytes: &[u8], start: i64) -> (Vec<Entry>, BTreeMap<i64, u64>, u64) {
    let whole = Bytes::copy_from_slice(bytes);
    let mut entries: Vec<Entry> = Vec::new();
    let mut positions = BTreeMap::new();
    let mut pos = 0usize;
    while let Ok(Some((entry, next))) = read_frame(&whole, pos) {
        let follows = entries
            .last()
            .is_none_or(|prev| entry.offset == prev.offset + 1 && entry.epoch >= prev.epoch);
        if !follows {
            break;
        }
        positions.insert(entry.offset, pos as u64);
        entries.push(entry);
        pos = next;
    }
    // Entries below the snapshot are covered by it; keep positions exact.
    entries.retain(|e| e.offset >= start);
    positions.retain(|o, _| *o >= start);
    (entries, positions, pos as u64)
}

fn encode_snapshot(snapshot: &Snapshot) -> Bytes {
    let mut body = BytesMut::with_capacity(12 + snapshot.data.len());
    body.put_i64(snapshot.end_offset);
    body.put_i32(snapshot.epoch);
    body.put_slice(&snapshot.data);
    let mut buf = BytesMut::with_capacity(4 + body.len());
    buf.put_u32(crc32c::crc32c(&body));
    buf.put_slice(&body);
    buf.freeze()
}

fn parse_snapshot(bytes: &Bytes) -> Result<Snapshot, String> {
    if bytes.len() < 16 {
        return Err("snapshot file too short".into());
    }
    let mut b = &bytes[..];
    let crc = b.get_u32();
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err("snapshot checksum mismatch".into());
    }
    let end_offset = b.get_i64();
    let epoch = b.get_i32();
    if end_offset < 0 {
        return Err("negative snapshot offset".into());
    }
    Ok(Snapshot {
        end_offset,
        epoch,
        data: bytes.slice(16..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryKind;

    fn entry(offset: i64, epoch: i32, data: &'static [u8]) -> Entry {
        Entry {
            offset,
            epoch,
            kind: EntryKind::Data,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn log_frames_round_trip_and_a_torn_tail_is_cut() {
        let mut buf = BytesMut::new();
        for e in [entry(0, 1, b"a"), entry(1, 1, b"bb"), entry(2, 2, b"ccc")] {
            write_frame(&mut buf, &e);
        }
        let full = buf.len();
        let (entries, positions, len) = parse_log(&buf, 0);
        assert_eq!(entries.len(), 3);
        assert_eq!(len as usize, full);
        assert_eq!(positions.len(), 3);
        assert_eq!(&entries[2].data[..], b"ccc");
        // Torn: the last frame is cut short.
        let (entries, _, len) = parse_log(&buf[..full - 2], 0);
        assert_eq!(entries.len(), 2);
        assert!((len as usize) < full);
        // A flipped bit in the middle frame cuts there.
        let mut bad = buf.to_vec();
        bad[positions[&1] as usize + 9] ^= 0x40;
        let (entries, _, _) = parse_log(&bad, 0);
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn state_file_round_trips_and_corruption_is_detected() {
        let text = "epoch=7\nvoted_for=2\nleader=-1\n";
        let file = format!("{text}crc={}\n", crc32c::crc32c(text.as_bytes()));
        assert_eq!(parse_state(file.as_bytes()).unwrap(), (7, Some(2), None));
        let bad = file.replace("epoch=7", "epoch=9");
        assert!(parse_state(bad.as_bytes()).is_err());
    }

    #[test]
    fn snapshot_with_a_bad_checksum_is_refused() {
        let s = Snapshot {
            end_offset: 42,
            epoch: 3,
            data: Bytes::from_static(b"image"),
        };
        let bytes = encode_snapshot(&s);
        assert_eq!(parse_snapshot(&bytes).unwrap(), s);
        let mut bad = bytes.to_vec();
        bad[20] ^= 1;
        assert!(parse_snapshot(&Bytes::from(bad)).is_err());
    }

    #[test]
    fn another_clusters_data_dir_is_refused() {
        let meta = "version=1\ncluster.id=abc\nnode.id=1\n";
        assert_eq!(
            check_meta(meta.as_bytes(), "abc", 1),
            Ok(DirectoryId::Missing)
        );
        let err = check_meta(meta.as_bytes(), "xyz", 1).unwrap_err();
        assert!(err.contains("cluster `abc`"), "{err}");
        assert!(check_meta(meta.as_bytes(), "abc", 2).is_err());
    }

    #[test]
    fn meta_directory_id_is_read_or_found_missing_or_malformed() {
        let id = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        let meta = format!("version=1\ncluster.id=abc\nnode.id=1\ndirectory.id={id}\n");
        assert_eq!(
            check_meta(meta.as_bytes(), "abc", 1),
            Ok(DirectoryId::Found(id))
        );
        let meta = "version=1\ncluster.id=abc\nnode.id=1\ndirectory.id=not-a-uuid\n";
        assert_eq!(
            check_meta(meta.as_bytes(), "abc", 1),
            Ok(DirectoryId::Malformed("not-a-uuid".into()))
        );
    }

    use crate::memdisk::MemDisk;
    use crate::seam::{DiskExecutor, Output};

    /// Run a store's recovery over `disk` to the end, carrying out its disk
    /// requests in issue order; returns the store and what it reported.
    fn recover(disk: &mut MemDisk, seed: u64, sync: bool) -> (QuorumStore, Vec<StoreEvent>) {
        let mut store = QuorumStore::new("c1", 3, sync, seed);
        let mut next_req = 1;
        let mut out = Vec::new();
        let mut events = Vec::new();
        store.start(&mut DiskIo::new(&mut next_req, &mut out));
        while !out.is_empty() {
            for o in std::mem::take(&mut out) {
                let Output::Disk { req, op } = o else {
                    panic!("unexpected output {o:?}");
                };
                let result = disk.execute(&op);
                store.on_disk_done(
                    req,
                    result,
                    &mut DiskIo::new(&mut next_req, &mut out),
                    &mut events,
                );
            }
        }
        assert!(store.is_idle());
        assert!(
            events.iter().any(|e| matches!(e, StoreEvent::Recovered(_))),
            "{events:?}"
        );
        (store, events)
    }

    fn meta_file(disk: &MemDisk) -> String {
        String::from_utf8(disk.read_all(META).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn a_formatted_directory_keeps_its_directory_id_across_restarts() {
        for sync in [true, false] {
            let mut disk = MemDisk::new();
            let (store, _) = recover(&mut disk, 7, sync);
            let id = store.directory_id().expect("a directory id on format");
            assert_eq!(id.get_version_num(), 4);
            assert!(
                meta_file(&disk).contains(&format!("\ndirectory.id={id}\n")),
                "{}",
                meta_file(&disk)
            );
            // Power loss (durable in every mode: the format step syncs),
            // then restarts with other seeds: the same id, and the file
            // is not rewritten.
            for seed in [8, 9] {
                disk.crash();
                let before = meta_file(&disk);
                let (store, _) = recover(&mut disk, seed, sync);
                assert_eq!(store.directory_id(), Some(id));
                assert_eq!(meta_file(&disk), before);
            }
        }
    }

    #[test]
    fn directory_ids_come_from_the_seed() {
        let draw = |seed| recover(&mut MemDisk::new(), seed, true).0.directory_id();
        assert_eq!(draw(7), draw(7));
        // Another start's seed: a wiped (re-formatted) directory gets a new id.
        assert_ne!(draw(7), draw(8));
    }

    fn put_meta(disk: &mut MemDisk, text: &str) {
        for op in [
            DiskOp::Create { path: META.into() },
            DiskOp::Write {
                path: META.into(),
                offset: 0,
                data: Bytes::copy_from_slice(text.as_bytes()),
            },
            DiskOp::SyncFile { path: META.into() },
            DiskOp::SyncDir { path: "".into() },
        ] {
            disk.execute(&op).unwrap();
        }
    }

    #[test]
    fn a_meta_properties_without_a_directory_id_gets_one_durably() {
        // As written before directory ids existed (no final newline, even).
        let old = "# written by stormlog on first start (Kafka's format step)\nversion=1\ncluster.id=c1\nnode.id=3";
        let mut disk = MemDisk::new();
        put_meta(&mut disk, old);
        let (store, _) = recover(&mut disk, 5, false);
        let id = store.directory_id().expect("an id added");
        assert_eq!(meta_file(&disk), format!("{old}\ndirectory.id={id}\n"));
        disk.crash();
        let (store, _) = recover(&mut disk, 6, false);
        assert_eq!(store.directory_id(), Some(id));
    }

    #[test]
    fn a_malformed_directory_id_is_left_alone_and_unknown() {
        let text = "version=1\ncluster.id=c1\nnode.id=3\ndirectory.id=zz\n";
        let mut disk = MemDisk::new();
        put_meta(&mut disk, text);
        let (store, _) = recover(&mut disk, 5, true);
        assert_eq!(store.directory_id(), None);
        assert_eq!(meta_file(&disk), text);
    }
}
