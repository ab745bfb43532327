//! The simulated world: a single-threaded discrete-event loop that hosts
//! broker nodes and client processes behind the seam, with one simulated
//! timeline, a network, a disk per broker, and faults.
//!
//! Every random choice comes from generators derived from the run's seed;
//! events at equal times run in the order they were scheduled.

use std::collections::{BTreeMap, VecDeque};

use broker::config::BrokerConfig;
use broker::node::Node;
use broker::seam::{ConnId, DiskOp, Input, Now, Output, TimerId};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use workloads::consumer::Consumer;
use workloads::producer::Producer;

use crate::disk::SimDisk;
use crate::net::{End, NetConnId, Network, ProcId};
use crate::scenario::Scenario;
use crate::trace::Trace;

/// Wall clock at simulated time zero (2024-01-01T00:00:00Z).
pub const WALL_EPOCH_MILLIS: i64 = 1_704_067_200_000;

/// Accepted connections on a broker are numbered from here up.
const FIRST_ACCEPTED_CONN: ConnId = 1;

/// What runs in a process.
pub enum Actor {
    Broker(Box<BrokerHost>),
    Producer(Box<Producer>),
    Consumer(Box<Consumer>),
    Admin(Box<workloads::admin::Admin>),
    /// A member of the scenario's consumer group.
    GroupConsumer(Box<workloads::group::GroupConsumer>),
}

/// A broker machine: the node (absent while down), its config and its disk.
pub struct BrokerHost {
    pub node_index: u32,
    pub node: Option<Node>,
    pub config: BrokerConfig,
    pub disk: SimDisk,
    /// The disk serves one request at a time (FIFO, as the seam requires).
    pub disk_busy_until: u64,
    /// The disk serves nothing before this (a stall).
    pub disk_stalled_until: u64,
    /// Restarts so far (each gets a fresh node seed).
    pub restarts: u32,
    next_accepted: ConnId,
}

/// The state of a process, for timelines and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Up,
    Down,
    Paused,
}

pub struct Process {
    pub name: String,
    pub actor: Actor,
    pub state: ProcState,
    /// Bumped at every crash: events for an older incarnation are dropped.
    pub incarnation: u32,
    /// Inputs that arrived while paused, delivered in order on resume.
    held: VecDeque<Input>,
    /// Live timers: id -> generation (a moved or cancelled timer's old event is ignored).
    timers: BTreeMap<TimerId, u64>,
    /// Wall-clock offset of this process's machine, in milliseconds.
    pub skew_millis: i64,
    /// Listening address for brokers ("node-0:9092").
    pub address: Option<String>,
}

#[derive(Debug)]
enum Event {
    /// Deliver an input to a process.
    Deliver {
        proc: ProcId,
        incarnation: u32,
        input: Input,
    },
    /// A timer comes due.
    Timer {
        proc: ProcId,
        incarnation: u32,
        id: TimerId,
        generation: u64,
    },
    /// A disk request finishes being served: carry it out and report.
    DiskServed {
        proc: ProcId,
        incarnation: u32,
        req: u64,
        op: DiskOp,
    },
    /// A client's connection attempt reaches the broker.
    ConnectArrives { client: End, server: ProcId },
    /// A SYN lost to a partition is sent again (TCP retransmits it after
    /// 1 s, 2 s, 4 s, ...); the connect fails once `reset_after_ms` has
    /// passed since `first`.
    SynRetry {
        client: End,
        server: ProcId,
        first: u64,
        backoff: u64,
    },
    /// Bytes arrive at one end of a connection.
    Arrive {
        conn: NetConnId,
        to: End,
        bytes: Bytes,
    },
    /// The peer's close arrives.
    CloseArrives { to: End },
    /// Check whether a stalled direction has waited long enough to reset.
    StallCheck {
        conn: NetConnId,
        dir: usize,
        since: u64,
    },
    /// A scripted world action (faults, stopping a process).
    Action(crate::run::WorldAction),
}

/// The world. `run` drives it; tests poke at it directly.
pub struct World {
    pub now: u64,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    pub procs: Vec<Process>,
    pub net: Network,
    /// Draws for the network (latency).
    net_rng: ChaCha8Rng,
    /// Draws for the disks (service times, torn sectors, flips).
    disk_rng: ChaCha8Rng,
    pub trace: Trace,
    /// Broker-side invariants, checked after every broker step.
    pub monitor: crate::monitor::Monitor,
    pub seed: u64,
    timer_generation: u64,
}

impl World {
    pub fn new(seed: u64, scenario: &Scenario, keep_trace: bool) -> World {
        World {
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            procs: Vec::new(),
            net: Network::new(scenario.network.clone()),
            net_rng: derive_rng(seed, 1),
            disk_rng: derive_rng(seed, 2),
            trace: Trace::new(keep_trace),
            monitor: Default::default(),
            seed,
            timer_generation: 0,
        }
    }

    /// Add a broker machine (process `broker-{node_index}`); it starts at once.
    pub fn add_broker(&mut self, node_index: u32, config: BrokerConfig, disk: SimDisk) -> ProcId {
        self.add_node(node_index, format!("broker-{node_index}"), config, disk)
    }

    /// Add a node machine listening on `node-{node_index}:9092` under the
    /// process name `name`; it starts at once.
    pub fn add_node(
        &mut self,
        node_index: u32,
        name: String,
        config: BrokerConfig,
        disk: SimDisk,
    ) -> ProcId {
        let address = format!("node-{node_index}:9092");
        let host = BrokerHost {
            node_index,
            node: None,
            config,
            disk,
            disk_busy_until: 0,
            disk_stalled_until: 0,
            restarts: 0,
            next_accepted: FIRST_ACCEPTED_CONN,
        };
        let proc = self.add_process(name, Actor::Broker(Box::new(host)), Some(address));
        self.boot(proc);
        proc
    }

    pub fn add_client(&mut self, name: String, actor: Actor) -> ProcId {
        let proc = self.add_process(name, actor, None);
        let incarnation = self.procs[proc as usize].incarnation;
        self.schedule(
            self.now,
            Event::Deliver {
                proc,
                incarnation,
                input: Input::Start,
            },
        );
        proc
    }

    fn add_process(&mut self, name: String, actor: Actor, address: Option<String>) -> ProcId {
        self.procs.push(Process {
            name,
            actor,
            state: ProcState::Up,
            incarnation: 0,
            held: VecDeque::new(),
            timers: BTreeMap::new(),
            skew_millis: 0,
            address,
        });
        (self.procs.len() - 1) as ProcId
    }

    /// Create a fresh node over the broker's disk and start it.
    fn boot(&mut self, proc: ProcId) {
        let seed = self.seed;
        let p = &mut self.procs[proc as usize];
        if let Actor::Broker(host) = &mut p.actor {
            let node_seed = derive_seed(
                seed,
                1000 + host.node_index as u64 * 1000 + host.restarts as u64,
            );
            host.node = Some(Node::new(host.config.clone(), node_seed));
            host.restarts += 1;
            host.disk_busy_until = host.disk_busy_until.max(self.now);
        }
        p.state = ProcState::Up;
        let incarnation = p.incarnation;
        self.schedule(
            self.now,
            Event::Deliver {
                proc,
                incarnation,
                input: Input::Start,
            },
        );
    }

    pub fn schedule_action(&mut self, at: u64, action: crate::run::WorldAction) {
        self.schedule(at, Event::Action(action));
    }

    fn schedule(&mut self, at: u64, event: Event) {
        let at = at.max(self.now);
        self.queue.insert((at, self.seq), event);
        self.seq += 1;
    }

    /// The time of the next event, if any.
    pub fn next_time(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Run events until simulated time `until` (inclusive); returns the
    /// world actions that came due, for the caller to carry out.
    pub fn run_until(&mut self, until: u64) -> Vec<crate::run::WorldAction> {
        let mut actions = Vec::new();
        while let Some((&(at, seq), _)) = self.queue.iter().next() {
            if at > until {
                break;
            }
            let event = self.queue.remove(&(at, seq)).expect("present");
            self.now = at;
            match event {
                Event::Action(action) => {
                    actions.push(action);
                    // Actions are carried out by the caller in order; stop here
                    // so later events see their effect.
                    return actions;
                }
                other => self.handle(other),
            }
        }
        self.now = self.now.max(until);
        actions
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                proc,
                incarnation,
                input,
            } => self.deliver(proc, incarnation, input),
            Event::Timer {
                proc,
                incarnation,
                id,
                generation,
            } => {
                let p = &mut self.procs[proc as usize];
                if p.incarnation == incarnation && p.timers.get(&id) == Some(&generation) {
                    if p.state == ProcState::Paused {
                        // A paused process's timers wait for it.
                        p.held.push_back(Input::TimerFired { id });
                        p.timers.remove(&id);
                    } else {
                        p.timers.remove(&id);
                        self.deliver(proc, incarnation, Input::TimerFired { id });
                    }
                }
            }
            Event::DiskServed {
                proc,
                incarnation,
                req,
                op,
            } => {
                if self.procs[proc as usize].incarnation != incarnation {
                    return; // the machine crashed before the request was served
                }
                let result = match &mut self.procs[proc as usize].actor {
                    Actor::Broker(host) => host.disk.execute(&op, &mut self.disk_rng),
                    _ => return,
                };
                self.deliver(proc, incarnation, Input::DiskDone { req, result });
            }
            Event::ConnectArrives { client, server } => self.connect_arrives(client, server),
            Event::SynRetry {
                client,
                server,
                first,
                backoff,
            } => self.syn_retry(client, server, first, backoff),
            Event::Arrive { conn, to, bytes } => {
                if self.net.conns.contains_key(&conn) {
                    self.deliver(
                        to.proc,
                        to.incarnation,
                        Input::Received {
                            conn: to.conn,
                            bytes,
                        },
                    );
                }
            }
            Event::CloseArrives { to } => {
                if let Some(id) = self.net.find(to.proc, to.conn) {
                    self.net.remove(id);
                    self.deliver(to.proc, to.incarnation, Input::Closed { conn: to.conn });
                }
            }
            Event::StallCheck { conn, dir, since } => {
                let stalled = self
                    .net
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.dirs[dir].stalled_since == Some(since));
                if stalled {
                    self.reset_connection(conn);
                }
            }
            Event::Action(_) => unreachable!("actions are returned by run_until"),
        }
    }

    /// The time as process `proc` sees it.
    pub fn now_for(&self, proc: ProcId) -> Now {
        let skew = self.procs[proc as usize].skew_millis;
        Now {
            mono_nanos: self.now,
            wall_millis: WALL_EPOCH_MILLIS + (self.now / 1_000_000) as i64 + skew,
        }
    }

    fn deliver(&mut self, proc: ProcId, incarnation: u32, input: Input) {
        let p = &mut self.procs[proc as usize];
        if p.incarnation != incarnation || p.state == ProcState::Down {
            return;
        }
        if p.state == ProcState::Paused {
            p.held.push_back(input);
            return;
        }
        self.trace.input(self.now, proc, &input);
        let now = self.now_for(proc);
        let mut out = Vec::new();
        match &mut self.procs[proc as usize].actor {
            Actor::Broker(host) => {
                if let Some(node) = &mut host.node {
                    // Log lines carry the node and the simulated time (ms).
                    let _span = tracing::info_span!(
                        target: "sim::node",
                        "node",
                        n = host.node_index,
                        t = self.now / 1_000_000
                    )
                    .entered();
                    node.step(now, input, &mut out);
                    self.monitor
                        .observe(self.now, host.node_index, incarnation, node);
                    if self.monitor.watches_groups() {
                        let views = node.group_views();
                        self.monitor
                            .observe_groups(self.now, host.node_index, incarnation, &views);
                    }
                }
            }
            Actor::Producer(producer) => producer.step(now, input, &mut out),
            Actor::Consumer(consumer) => consumer.step(now, input, &mut out),
            Actor::Admin(admin) => admin.step(now, input, &mut out),
            Actor::GroupConsumer(member) => member.step(now, input, &mut out),
        }
        for output in out {
            self.carry_out(proc, output);
        }
    }

    fn carry_out(&mut self, proc: ProcId, output: Output) {
        let incarnation = self.procs[proc as usize].incarnation;
        match output {
            Output::Send { conn, bytes } => self.send(proc, conn, bytes),
            Output::Close { conn } => self.close(proc, conn),
            Output::Connect { conn, addr } => self.connect(proc, conn, &addr),
            Output::SetTimer { id, at_nanos } => {
                self.timer_generation += 1;
                let generation = self.timer_generation;
                self.procs[proc as usize].timers.insert(id, generation);
                self.schedule(
                    at_nanos,
                    Event::Timer {
                        proc,
                        incarnation,
                        id,
                        generation,
                    },
                );
            }
            Output::CancelTimer { id } => {
                self.procs[proc as usize].timers.remove(&id);
            }
            Output::Disk { req, op } => {
                let now = self.now;
                let Actor::Broker(host) = &mut self.procs[proc as usize].actor else {
                    return;
                };
                let service = host.disk.service_nanos(&op, &mut self.disk_rng);
                let start = host.disk_busy_until.max(now).max(host.disk_stalled_until);
                let done = start + service;
                host.disk_busy_until = done;
                self.schedule(
                    done,
                    Event::DiskServed {
                        proc,
                        incarnation,
                        req,
                        op,
                    },
                );
            }
            Output::Stopped => {
                let p = &mut self.procs[proc as usize];
                p.state = ProcState::Down;
                p.incarnation += 1;
                p.timers.clear();
                if let Actor::Broker(host) = &mut p.actor {
                    host.node = None;
                    let index = host.node_index;
                    self.monitor.node_down(self.now, index);
                }
            }
        }
    }

    // ----- network -----

    fn connect(&mut self, proc: ProcId, conn: ConnId, addr: &str) {
        let incarnation = self.procs[proc as usize].incarnation;
        let client = End {
            proc,
            conn,
            incarnation,
        };
        let server = self
            .procs
            .iter()
            .position(|p| p.address.as_deref() == Some(addr));
        let latency = self.net.latency(&mut self.net_rng);
        match server {
            None => self.schedule(
                self.now + latency,
                Event::Deliver {
                    proc,
                    incarnation,
                    input: Input::ConnectFailed { conn },
                },
            ),
            Some(server) => {
                let server = server as ProcId;
                if self.net.links.is_blocked(proc, server)
                    || self.net.links.is_blocked(server, proc)
                {
                    // The SYN is lost; TCP sends it again after 1 s.
                    self.schedule(
                        self.now + 1_000_000_000,
                        Event::SynRetry {
                            client,
                            server,
                            first: self.now,
                            backoff: 1_000_000_000,
                        },
                    );
                } else {
                    self.schedule(self.now + latency, Event::ConnectArrives { client, server });
                }
            }
        }
    }

    /// A retransmitted SYN: it gets through if the path is open again;
    /// otherwise TCP backs off (doubling) until `reset_after_ms` is spent,
    /// then the connect fails.
    fn syn_retry(&mut self, client: End, server: ProcId, first: u64, backoff: u64) {
        if self.procs[client.proc as usize].incarnation != client.incarnation {
            return;
        }
        let blocked = self.net.links.is_blocked(client.proc, server)
            || self.net.links.is_blocked(server, client.proc);
        if !blocked {
            let latency = self.net.latency(&mut self.net_rng);
            self.schedule(self.now + latency, Event::ConnectArrives { client, server });
            return;
        }
        let give_up = first + self.net.spec.reset_after_ms * 1_000_000;
        let next = self.now + backoff * 2;
        if next < give_up {
            self.schedule(
                next,
                Event::SynRetry {
                    client,
                    server,
                    first,
                    backoff: backoff * 2,
                },
            );
        } else {
            self.schedule(
                give_up,
                Event::Deliver {
                    proc: client.proc,
                    incarnation: client.incarnation,
                    input: Input::ConnectFailed { conn: client.conn },
                },
            );
        }
    }

    fn connect_arrives(&mut self, client: End, server: ProcId) {
        let p = &mut self.procs[server as usize];
        let refused = p.state == ProcState::Down;
        let latency = self.net.latency(&mut self.net_rng);
        if refused {
            self.schedule(
                self.now + latency,
                Event::Deliver {
                    proc: client.proc,
                    incarnation: client.incarnation,
                    input: Input::ConnectFailed { conn: client.conn },
                },
            );
            return;
        }
        let Actor::Broker(host) = &mut p.actor else {
            return;
        };
        let conn = host.next_accepted;
        host.next_accepted += 1;
        let server_end = End {
            proc: server,
            conn,
            incarnation: p.incarnation,
        };
        self.net.open(client, server_end);
        let peer = self.procs[client.proc as usize].name.clone();
        self.deliver(
            server,
            server_end.incarnation,
            Input::Accepted { conn, peer },
        );
        self.schedule(
            self.now + latency,
            Event::Deliver {
                proc: client.proc,
                incarnation: client.incarnation,
                input: Input::Connected { conn: client.conn },
            },
        );
    }

    fn send(&mut self, proc: ProcId, conn: ConnId, bytes: Bytes) {
        let Some(id) = self.net.find(proc, conn) else {
            return;
        };
        let latency = self.net.latency(&mut self.net_rng);
        let transmit = self.net.transmit_nanos(bytes.len());
        let reset_after = self.net.spec.reset_after_ms * 1_000_000;
        let now = self.now;
        let c = self.net.conns.get_mut(&id).expect("found");
        let (dir, to) = c.route(proc, conn);
        let blocked = self.net.links.is_blocked(proc, to.proc);
        // Bytes queue behind a fault, and behind bytes already held.
        let held = self.net.links.is_held(proc, to.proc) || !c.dirs[dir].held.is_empty();
        let d = &mut c.dirs[dir];
        if held {
            d.held.push_back(bytes);
            if blocked && d.stalled_since.is_none() {
                d.stalled_since = Some(now);
                self.schedule(
                    now + reset_after,
                    Event::StallCheck {
                        conn: id,
                        dir,
                        since: now,
                    },
                );
            }
            return;
        }
        let arrival = d.next_arrival.max(now + latency) + transmit;
        d.next_arrival = arrival;
        self.schedule(
            arrival,
            Event::Arrive {
                conn: id,
                to,
                bytes,
            },
        );
    }

    fn close(&mut self, proc: ProcId, conn: ConnId) {
        let Some(id) = self.net.find(proc, conn) else {
            return;
        };
        let latency = self.net.latency(&mut self.net_rng);
        let c = &self.net.conns[&id];
        let (dir, to) = c.route(proc, conn);
        let at = if self.net.links.is_held(proc, to.proc) {
            // The FIN waits behind the fault too; the peer's TCP gives up first.
            self.now + self.net.spec.reset_after_ms * 1_000_000
        } else {
            c.dirs[dir].next_arrival.max(self.now + latency)
        };
        // This end forgets the connection now; the peer learns after the bytes in flight.
        self.net.by_end.remove(&(proc, conn));
        self.schedule(at, Event::CloseArrives { to });
    }

    fn reset_connection(&mut self, id: NetConnId) {
        if let Some(c) = self.net.remove(id) {
            for end in [c.client, c.server] {
                self.deliver(end.proc, end.incarnation, Input::Closed { conn: end.conn });
            }
        }
    }

    /// Deliver everything held on links that are no longer held.
    pub fn release_links(&mut self) {
        let ids: Vec<NetConnId> = self.net.conns.keys().copied().collect();
        for id in ids {
            for dir in 0..2 {
                let now = self.now;
                let (from, to) = {
                    let c = &self.net.conns[&id];
                    if dir == 0 {
                        (c.client, c.server)
                    } else {
                        (c.server, c.client)
                    }
                };
                if self.net.links.is_held(from.proc, to.proc) {
                    continue;
                }
                let mut arrivals = Vec::new();
                let latency = self.net.latency(&mut self.net_rng);
                let transmit_total: Vec<u64> = {
                    let c = &self.net.conns[&id];
                    c.dirs[dir]
                        .held
                        .iter()
                        .map(|b| self.net.transmit_nanos(b.len()))
                        .collect()
                };
                let c = self.net.conns.get_mut(&id).expect("present");
                let d = &mut c.dirs[dir];
                d.stalled_since = None;
                for (bytes, transmit) in d.held.drain(..).zip(transmit_total) {
                    let arrival = d.next_arrival.max(now + latency) + transmit;
                    d.next_arrival = arrival;
                    arrivals.push((arrival, bytes));
                }
                for (arrival, bytes) in arrivals {
                    self.schedule(
                        arrival,
                        Event::Arrive {
                            conn: id,
                            to,
                            bytes,
                        },
                    );
                }
            }
        }
    }

    // ----- processes -----

    /// Machine crash (`power_loss`) or process kill: the node is dropped, its
    /// connections reset, its timers and in-flight disk requests vanish.
    pub fn crash(&mut self, proc: ProcId, power_loss: bool) {
        let p = &mut self.procs[proc as usize];
        if p.state == ProcState::Down {
            return;
        }
        p.state = ProcState::Down;
        p.incarnation += 1;
        p.timers.clear();
        p.held.clear();
        if let Actor::Broker(host) = &mut p.actor {
            host.node = None;
            host.disk_busy_until = self.now;
            host.disk_stalled_until = 0;
            if power_loss {
                host.disk.crash(&mut self.disk_rng);
            }
            self.monitor.node_down(self.now, host.node_index);
        }
        // The peers see their connections reset.
        for id in self.net.of_proc(proc) {
            if let Some(c) = self.net.remove(id) {
                let peer = if c.client.proc == proc {
                    c.server
                } else {
                    c.client
                };
                let latency = self.net.latency(&mut self.net_rng);
                self.schedule(
                    self.now + latency,
                    Event::Deliver {
                        proc: peer.proc,
                        incarnation: peer.incarnation,
                        input: Input::Closed { conn: peer.conn },
                    },
                );
            }
        }
    }

    /// Bring a crashed broker back over its disk.
    pub fn restart(&mut self, proc: ProcId) {
        if self.procs[proc as usize].state == ProcState::Down {
            self.boot(proc);
        }
    }

    pub fn pause(&mut self, proc: ProcId) {
        let p = &mut self.procs[proc as usize];
        if p.state == ProcState::Up {
            p.state = ProcState::Paused;
        }
    }

    pub fn resume(&mut self, proc: ProcId) {
        let p = &mut self.procs[proc as usize];
        if p.state != ProcState::Paused {
            return;
        }
        p.state = ProcState::Up;
        let incarnation = p.incarnation;
        let held: Vec<Input> = p.held.drain(..).collect();
        for input in held {
            self.schedule(
                self.now,
                Event::Deliver {
                    proc,
                    incarnation,
                    input,
                },
            );
        }
    }

    /// Reset every connection of `proc`.
    pub fn reset_all(&mut self, proc: ProcId) {
        for id in self.net.of_proc(proc) {
            self.reset_connection(id);
        }
    }

    /// Ask a broker to shut down in an orderly way.
    pub fn shutdown(&mut self, proc: ProcId) {
        let incarnation = self.procs[proc as usize].incarnation;
        self.schedule(
            self.now,
            Event::Deliver {
                proc,
                incarnation,
                input: Input::Shutdown,
            },
        );
    }

    pub fn broker(&self, proc: ProcId) -> Option<&BrokerHost> {
        match &self.procs[proc as usize].actor {
            Actor::Broker(host) => Some(host),
            _ => None,
        }
    }

    pub fn broker_mut(&mut self, proc: ProcId) -> Option<&mut BrokerHost> {
        match &mut self.procs[proc as usize].actor {
            Actor::Broker(host) => Some(host),
            _ => None,
        }
    }

    /// Stall a broker's disk until `until` (nanoseconds).
    pub fn stall_disk(&mut self, proc: ProcId, until: u64) {
        if let Some(host) = self.broker_mut(proc) {
            host.disk_stalled_until = until;
        }
    }

    /// Draw from the disk generator (faults that pick a target).
    pub fn disk_rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.disk_rng
    }
}

/// A generator for one purpose, derived from the run's seed: the same
/// (seed, stream) always gives the same draws, whatever else is drawn.
pub fn derive_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    use rand::RngCore;
    derive_rng(seed, stream).next_u64()
}
