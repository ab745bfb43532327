//! The seam between the broker's state machine and whatever drives it.
//!
//! A broker node never touches a clock, a socket, a file or a random source.
//! A driver (the simulator, or the tokio shell in `runtime`) hands it [`Input`]s
//! together with the current [`Now`], and carries out the [`Output`]s it emits.

use bytes::Bytes;

/// Identifies one connection, inbound or outbound. Inbound ids are chosen by
/// the driver; outbound ids are chosen by the node from [`OUTBOUND_CONN_BASE`] up,
/// so the two can never collide.
pub type ConnId = u64;

/// Outbound connection ids start here; drivers must number accepted
/// connections below it.
pub const OUTBOUND_CONN_BASE: ConnId = 1 << 62;

/// Identifies a timer set by the node.
pub type TimerId = u64;

/// Identifies one asynchronous disk request issued by the node.
pub type DiskReqId = u64;

/// A broker's id within its cluster (Kafka's `node.id` / `broker.id`).
pub type NodeId = i32;

/// The time as the driver sees it when delivering an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Now {
    /// Monotonic time in nanoseconds since an arbitrary start; used for
    /// timers, timeouts and durations. Never goes back.
    pub mono_nanos: u64,
    /// Wall-clock time in milliseconds since the Unix epoch; used only where
    /// Kafka exposes wall time (record timestamps, time-based retention and
    /// segment roll, ListOffsets by timestamp). May jump or be skewed.
    pub wall_millis: i64,
}

impl Now {
    pub fn from_millis(mono_millis: u64, wall_millis: i64) -> Now {
        Now {
            mono_nanos: mono_millis * 1_000_000,
            wall_millis,
        }
    }

    /// Monotonic time in milliseconds.
    pub fn mono_millis(&self) -> u64 {
        self.mono_nanos / 1_000_000
    }

    /// The monotonic instant `millis` after this one.
    pub fn after_millis(&self, millis: u64) -> u64 {
        self.mono_nanos
            .saturating_add(millis.saturating_mul(1_000_000))
    }
}

/// Everything that can happen to a node.
#[derive(Debug, Clone)]
pub enum Input {
    /// The node process has started (first input ever given to a node value).
    /// The node recovers its state from disk before serving requests.
    Start,
    /// A peer connected to the node's listener.
    Accepted { conn: ConnId, peer: String },
    /// Bytes arrived on a connection, in order.
    Received { conn: ConnId, bytes: Bytes },
    /// The connection was closed or reset by the peer or the network.
    Closed { conn: ConnId },
    /// An outbound connection requested with [`Output::Connect`] is established.
    Connected { conn: ConnId },
    /// An outbound connection could not be established.
    ConnectFailed { conn: ConnId },
    /// A timer set with [`Output::SetTimer`] fired.
    TimerFired { id: TimerId },
    /// A disk request completed, successfully or not.
    DiskDone {
        req: DiskReqId,
        result: Result<DiskReply, DiskError>,
    },
    /// An orderly shutdown was asked for (SIGTERM, ctrl-c). The node stops
    /// accepting work, answers or fails what is in flight, syncs, and emits
    /// [`Output::Stopped`].
    Shutdown,
}

/// Everything a node can ask its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write bytes to a connection, in order.
    Send { conn: ConnId, bytes: Bytes },
    /// Close a connection (after any bytes already sent on it).
    Close { conn: ConnId },
    /// Open an outbound connection to `addr` ("host:port"); the outcome comes
    /// back as `Connected` or `ConnectFailed` with the same id.
    Connect { conn: ConnId, addr: String },
    /// Fire `TimerFired { id }` at monotonic time `at_nanos` (or at once if it has passed).
    /// Setting an existing id moves it.
    SetTimer { id: TimerId, at_nanos: u64 },
    /// Forget a timer; a no-op if it already fired.
    CancelTimer { id: TimerId },
    /// Start a disk request; its completion comes back as `DiskDone { req }`.
    Disk { req: DiskReqId, op: DiskOp },
    /// The node has finished an orderly shutdown; the driver may drop it.
    Stopped,
}

/// A path relative to the node's data directory, with `/` separators.
/// Never absolute, never containing `..`.
pub type DiskPath = String;

/// An asynchronous disk operation.
///
/// Ordering: a driver performs one node's disk operations one at a time, in
/// the order they were issued, and delivers their completions in that order.
/// The node relies on this (a write issued before a sync is covered by it; a
/// file created before a write exists when the write runs).
///
/// Semantics follow POSIX files: writes land in the page cache; only
/// `SyncFile` makes a file's contents durable and only `SyncDir` makes the
/// creation, rename or removal of a directory entry durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Create a directory (and its parents); succeeds if it exists.
    CreateDir { path: DiskPath },
    /// Create an empty file, truncating it if it exists.
    Create { path: DiskPath },
    /// Write `data` at byte `offset`, extending the file if needed.
    /// The file must exist.
    Write {
        path: DiskPath,
        offset: u64,
        data: Bytes,
    },
    /// Read up to `len` bytes from `offset`; fewer at end of file.
    Read {
        path: DiskPath,
        offset: u64,
        len: u64,
    },
    /// Make the file's contents durable.
    SyncFile { path: DiskPath },
    /// Make the directory's entries (creations, renames, removals) durable.
    SyncDir { path: DiskPath },
    /// Cut or extend the file to `len` bytes.
    Truncate { path: DiskPath, len: u64 },
    /// Atomically replace `to` with `from`.
    Rename { from: DiskPath, to: DiskPath },
    /// Remove a file, or an empty directory.
    Remove { path: DiskPath },
    /// Remove a directory and everything in it.
    RemoveDirAll { path: DiskPath },
    /// List a directory's entries, sorted by name.
    List { path: DiskPath },
}

impl DiskOp {
    /// The path the operation acts on (the source, for a rename).
    pub fn path(&self) -> &str {
        match self {
            DiskOp::CreateDir { path }
            | DiskOp::Create { path }
            | DiskOp::Write { path, .. }
            | DiskOp::Read { path, .. }
            | DiskOp::SyncFile { path }
            | DiskOp::SyncDir { path }
            | DiskOp::Truncate { path, .. }
            | DiskOp::Remove { path }
            | DiskOp::RemoveDirAll { path }
            | DiskOp::List { path } => path,
            DiskOp::Rename { from, .. } => from,
        }
    }
}

/// The successful result of a disk operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskReply {
    /// The operation had no data to return.
    Done,
    /// The bytes read.
    Data(Bytes),
    /// A directory listing, sorted by name.
    Listing(Vec<DirEntry>),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    /// File size in bytes (0 for directories).
    pub size: u64,
}

/// Why a disk operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskErrorKind {
    NotFound,
    AlreadyExists,
    /// ENOSPC.
    NoSpace,
    /// EIO and everything else: the device failed the operation.
    Io,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskError {
    pub kind: DiskErrorKind,
    pub message: String,
}

impl DiskError {
    pub fn new(kind: DiskErrorKind, message: impl Into<String>) -> DiskError {
        DiskError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for DiskError {}

/// Something that executes disk operations synchronously: the in-memory disk
/// for unit tests, the simulator's disk, or a real directory.
pub trait DiskExecutor {
    fn execute(&mut self, op: &DiskOp) -> Result<DiskReply, DiskError>;
}
