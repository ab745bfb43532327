//! The trace of a run: every input delivered to a process, recorded compactly
//! and folded into one hash. Same seed and scenario, same hash, everywhere.

use broker::seam::{DiskReply, Input};

/// FNV-1a, 64-bit: tiny, stable across platforms and Rust versions.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// One delivered event, compact: what, to whom, when, and a digest of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    pub at_nanos: u64,
    pub process: u32,
    pub kind: &'static str,
    /// Connection, timer or disk request id.
    pub id: u64,
    /// Payload size in bytes (received bytes, data read), else 0.
    pub len: u64,
    pub digest: u64,
    /// A short readable note (a fault's name, a disk error).
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    pub events: u64,
    /// Kept only when asked for (replay --trace).
    pub records: Option<Vec<TraceRecord>>,
}

impl Trace {
    pub fn new(keep_records: bool) -> Trace {
        Trace {
            hash: Fnv64::default(),
            events: 0,
            records: keep_records.then(Vec::new),
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Record an input delivered to `process` at `at_nanos`.
    pub fn input(&mut self, at_nanos: u64, process: u32, input: &Input) {
        let (kind, id, len, digest, note) = describe(input);
        self.push(TraceRecord {
            at_nanos,
            process,
            kind,
            id,
            len,
            digest,
            note,
        });
    }

    /// Record a world event (a fault striking or healing).
    pub fn world(&mut self, at_nanos: u64, process: u32, note: String) {
        let mut h = Fnv64::default();
        h.write(note.as_bytes());
        self.push(TraceRecord {
            at_nanos,
            process,
            kind: "fault",
            id: 0,
            len: 0,
            digest: h.finish(),
            note,
        });
    }

    fn push(&mut self, record: TraceRecord) {
        self.events += 1;
        self.hash.write_u64(record.at_nanos);
        self.hash.write_u64(record.process as u64);
        self.hash.write(record.kind.as_bytes());
        self.hash.write_u64(record.id);
        self.hash.write_u64(record.len);
        self.hash.write_u64(record.digest);
        if let Some(records) = &mut self.records {
            records.push(record);
        }
    }
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::default();
    h.write(bytes);
    h.finish()
}

fn describe(input: &Input) -> (&'static str, u64, u64, u64, String) {
    match input {
        Input::Start => ("start", 0, 0, 0, String::new()),
        Input::Accepted { conn, peer } => {
            ("accepted", *conn, 0, digest(peer.as_bytes()), peer.clone())
        }
        Input::Received { conn, bytes } => (
            "received",
            *conn,
            bytes.len() as u64,
            digest(bytes),
            String::new(),
        ),
        Input::Closed { conn } => ("closed", *conn, 0, 0, String::new()),
        Input::Connected { conn } => ("connected", *conn, 0, 0, String::new()),
        Input::ConnectFailed { conn } => ("connect-failed", *conn, 0, 0, String::new()),
        Input::TimerFired { id } => ("timer", *id, 0, 0, String::new()),
        Input::Shutdown => ("shutdown", 0, 0, 0, String::new()),
        Input::DiskDone { req, result } => match result {
            Ok(DiskReply::Done) => ("disk-done", *req, 0, 0, String::new()),
            Ok(DiskReply::Data(data)) => (
                "disk-data",
                *req,
                data.len() as u64,
                digest(data),
                String::new(),
            ),
            Ok(DiskReply::Listing(entries)) => {
                let mut h = Fnv64::default();
                for e in entries {
                    h.write(e.name.as_bytes());
                    h.write_u64(e.size);
                }
                (
                    "disk-list",
                    *req,
                    entries.len() as u64,
                    h.finish(),
                    String::new(),
                )
            }
            Err(e) => (
                "disk-error",
                *req,
                0,
                digest(e.message.as_bytes()),
                e.to_string(),
            ),
        },
    }
}

impl std::fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.at_nanos / 1_000_000;
        let us = (self.at_nanos / 1_000) % 1_000;
        write!(
            f,
            "{ms:>8}.{us:03}ms  p{:<3} {:<14} id={:<6}",
            self.process, self.kind, self.id
        )?;
        if self.len > 0 {
            write!(f, " {}B #{:016x}", self.len, self.digest)?;
        }
        if !self.note.is_empty() {
            write!(f, " {}", self.note)?;
        }
        Ok(())
    }
}
