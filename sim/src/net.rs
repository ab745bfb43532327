//! The simulated network: connections as ordered byte streams between two
//! processes, with latency, bandwidth and the link faults (partitions, clogs).
//!
//! The network only decides *when* things arrive; the world delivers them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use broker::seam::ConnId;
use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::NetworkSpec;

pub type ProcId = u32;
pub type NetConnId = u64;

/// One end of a connection: the process and the id it knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct End {
    pub proc: ProcId,
    pub conn: ConnId,
    pub incarnation: u32,
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Direction {
    /// Nothing sent later may arrive earlier than this (TCP ordering).
    pub next_arrival: u64,
    /// Bytes held by a partition or a clog, in order.
    pub held: VecDeque<Bytes>,
    /// When held bytes started waiting behind a partition (reset timer).
    pub stalled_since: Option<u64>,
}

#[derive(Debug)]
pub struct Connection {
    /// The side that connected.
    pub client: End,
    /// The side that accepted.
    pub server: End,
    /// [client -> server, server -> client].
    pub dirs: [Direction; 2],
}

impl Connection {
    /// (direction index, destination end) for bytes sent by `proc`.
    /// The direction and destination of bytes sent from the end (`proc`,
    /// `conn`). Both are needed: a node may connect to itself.
    pub fn route(&self, proc: ProcId, conn: ConnId) -> (usize, End) {
        if proc == self.client.proc && conn == self.client.conn {
            (0, self.server)
        } else {
            (1, self.client)
        }
    }
}

/// Link faults between processes: blocked pairs (partition) and held pairs (clog).
#[derive(Debug, Default)]
pub struct Links {
    /// (from, to): bytes from `from` to `to` are stalled; stalled long enough,
    /// the connection resets.
    pub blocked: BTreeSet<(ProcId, ProcId)>,
    /// (from, to): bytes are held and delivered when the clog lifts.
    pub clogged: BTreeSet<(ProcId, ProcId)>,
}

impl Links {
    pub fn is_blocked(&self, from: ProcId, to: ProcId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn is_held(&self, from: ProcId, to: ProcId) -> bool {
        self.blocked.contains(&(from, to)) || self.clogged.contains(&(from, to))
    }
}

pub struct Network {
    pub spec: NetworkSpec,
    pub conns: BTreeMap<NetConnId, Connection>,
    /// (process, its conn id) -> connection.
    pub by_end: BTreeMap<(ProcId, ConnId), NetConnId>,
    pub links: Links,
    next_id: NetConnId,
}

impl Network {
    pub fn new(spec: NetworkSpec) -> Network {
        Network {
            spec,
            conns: BTreeMap::new(),
            by_end: BTreeMap::new(),
            links: Links::default(),
            next_id: 1,
        }
    }

    pub fn latency(&self, rng: &mut ChaCha8Rng) -> u64 {
        let [min, max] = self.spec.latency_us;
        rng.gen_range(min..=max) * 1_000
    }

    /// Time to put `len` bytes on the wire.
    pub fn transmit_nanos(&self, len: usize) -> u64 {
        if self.spec.bytes_per_sec == 0 {
            0
        } else {
            (len as u128 * 1_000_000_000 / self.spec.bytes_per_sec as u128) as u64
        }
    }

    pub fn open(&mut self, client: End, server: End) -> NetConnId {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Connection {
                client,
                server,
                dirs: Default::default(),
            },
        );
        self.by_end.insert((client.proc, client.conn), id);
        self.by_end.insert((server.proc, server.conn), id);
        id
    }

    pub fn remove(&mut self, id: NetConnId) -> Option<Connection> {
        let conn = self.conns.remove(&id)?;
        self.by_end.remove(&(conn.client.proc, conn.client.conn));
        self.by_end.remove(&(conn.server.proc, conn.server.conn));
        Some(conn)
    }

    pub fn find(&self, proc: ProcId, conn: ConnId) -> Option<NetConnId> {
        self.by_end.get(&(proc, conn)).copied()
    }

    /// Connections with an end at `proc`.
    pub fn of_proc(&self, proc: ProcId) -> Vec<NetConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.client.proc == proc || c.server.proc == proc)
            .map(|(id, _)| *id)
            .collect()
    }
}
