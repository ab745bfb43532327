//! A simulated producer, behaving like a Kafka client's: records are
//! generated at a fixed rate (each with a value unique in the run), gathered
//! per partition into batches that are sent when full or when `linger_ms`
//! has passed, with at most `max_in_flight` requests outstanding. Retriable
//! errors and lost connections are retried up to `retries` times after
//! `retry_backoff_ms`, and they make the producer refresh its metadata.
//!
//! Every request is one `Send` in the history. A retry is a new `Send` of the
//! same values: without idempotence a retried record can be written twice,
//! which the duplicate checker reports, as Jepsen's does.
//!
//! With `enable_idempotence` (Kafka clients' default) the producer behaves
//! as Kafka's does: a producer id from InitProducerId first; each
//! partition's batch carries the id, the epoch and its base sequence, which
//! a retry keeps (the broker answers a retry it already has with the
//! original offset); partitions are judged one by one (one that succeeded
//! is not sent again). OUT_OF_ORDER_SEQUENCE_NUMBER behind a batch of the
//! partition awaiting its retry is retried in order. A sequence that can no
//! longer be trusted (a batch given up, UNKNOWN_PRODUCER_ID, or
//! OUT_OF_ORDER_SEQUENCE_NUMBER with nothing before it) makes the producer
//! bump its epoch once nothing is in flight (KIP-360) and start every
//! partition's sequences at 0; queued retries whose first attempt may have
//! been written are then given up, never sent under the new epoch (that
//! could write them twice). INVALID_PRODUCER_EPOCH stops the producer.

//!
//! Partitions are spread over brokers: each batch goes to its partition's
//! leader (see `cluster`), one request per broker with the due batches it
//! leads, at most `max_in_flight` requests outstanding per broker connection.
//! A partition whose leader is unknown keeps its records until a metadata
//! refresh names one. Errors that say the leader moved or is unavailable,
//! and lost connections, make the producer forget that leader and refresh;
//! a retry goes to whoever leads the partition then.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::cluster::{Cluster, ClusterEvent, SessionId};
use crate::history::{Event, History, Op, Outcome, Write};
use crate::session::{decode_body, SESSION_TIMER_LIMIT};

// SESSION_TIMER_LIMIT itself is the cluster's metadata timer.
const GENERATE_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const LINGER_TIMER: TimerId = SESSION_TIMER_LIMIT + 3;
const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 4;
/// The tag of the producer's InitProducerId request.
const INIT_TAG: u64 = u64::MAX - 1;
/// Kafka's error codes of idempotent produce.
const OUT_OF_ORDER_SEQUENCE: i16 = 45;
const DUPLICATE_SEQUENCE: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const PRODUCER_FENCED: i16 = 90;
/// InitProducerId errors a client retries.
const INIT_RETRIABLE: &[i16] = &[7, 14, 15, 16, 51, 56];

/// The most value bytes one partition's batch carries in one request
/// (unless `batch_records` asks for more records): half the broker's default
/// `message.max.bytes`, so a backlog after an outage goes out in batches
/// the broker accepts. (Kafka's own default `batch.size`, 16 KiB, capped the
/// simulated bench at ~16k records/s with 4 partitions and 5 in flight.)
const BATCH_BYTES: usize = 512 * 1024;

/// Kafka error codes after which a produce may be retried (and after which
/// the records may or may not be in the log).
const RETRIABLE: &[i16] = &[
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    7,  // REQUEST_TIMED_OUT
    19, // NOT_ENOUGH_REPLICAS
    20, // NOT_ENOUGH_REPLICAS_AFTER_APPEND
    56, // KAFKA_STORAGE_ERROR
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];
/// Of those, the ones after which the records may still have been written.
const MAYBE_WRITTEN: &[i16] = &[7, 20, 56, -1];
/// Errors that say this broker does not (or cannot) lead the partition now:
/// forget the leader and refresh metadata.
const LEADER_GONE: &[i16] = &[3, 5, 6, 56, 74, 75];
/// Errors after which the leader stands but metadata is refreshed.
const REFRESH: &[i16] = &[19, 20];

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub process: u32,
    /// One `host:port`, or a comma-separated list of them.
    pub bootstrap: String,
    pub topic: String,
    /// Records per second.
    pub rate: f64,
    pub value_bytes: usize,
    /// -1 (all), 0 or 1.
    pub acks: i16,
    /// Most requests awaiting an answer, per broker connection.
    pub max_in_flight: usize,
    pub request_timeout_ms: u64,
    /// Most records in one partition's batch.
    pub batch_records: usize,
    /// How long a batch waits for more records (0 = send at once).
    pub linger_ms: u64,
    /// Retries of a failed request (0 = never retry).
    pub retries: u32,
    /// Backoff before a retry, and between metadata refreshes that left a
    /// partition without a leader (Kafka's `retry.backoff.ms`).
    pub retry_backoff_ms: u64,
    /// Stop generating records at this simulated time (nanoseconds).
    pub stop_at_nanos: u64,
    /// Kafka's `enable.idempotence` (needs acks=all and at most 5 in flight).
    pub enable_idempotence: bool,
}

impl ProducerConfig {
    /// Defaults for everything but who and where.
    pub fn new(process: u32, bootstrap: &str, topic: &str) -> ProducerConfig {
        ProducerConfig {
            process,
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            rate: 100.0,
            value_bytes: 100,
            acks: -1,
            max_in_flight: 5,
            request_timeout_ms: 5_000,
            batch_records: 1,
            linger_ms: 0,
            retries: 0,
            retry_backoff_ms: 100,
            stop_at_nanos: u64::MAX,
            enable_idempotence: false,
        }
    }
}

/// Records of one request, by partition, and how many attempts it has had.
#[derive(Debug, Clone, Default)]
struct Batch {
    records: BTreeMap<i32, Vec<String>>,
    attempts: u32,
    /// A retry goes no earlier than this (monotonic nanoseconds).
    retry_at: u64,
    /// Idempotent: each partition's base sequence, under `producer`.
    seqs: BTreeMap<i32, i32>,
    producer: Option<(i64, i16)>,
    /// An attempt may have been written: never re-sequenced.
    maybe_written: bool,
}

impl Batch {
    /// The part of this batch for `records` (a subset of its partitions).
    fn part(&self, records: BTreeMap<i32, Vec<String>>) -> Batch {
        let seqs = self
            .seqs
            .iter()
            .filter(|(p, _)| records.contains_key(p))
            .map(|(p, s)| (*p, *s))
            .collect();
        Batch {
            records,
            seqs,
            retry_at: 0,
            ..self.clone()
        }
    }
}

/// The idempotent producer's state.
#[derive(Debug, Default)]
struct Idempotence {
    /// (producer id, epoch) once InitProducerId answered.
    producer: Option<(i64, i16)>,
    init_in_flight: bool,
    /// No InitProducerId before this (monotonic nanoseconds).
    init_retry_at: u64,
    next_seq: BTreeMap<i32, i32>,
    /// Bump the epoch once nothing is in flight.
    bump: bool,
    /// INVALID_PRODUCER_EPOCH: the producer stops.
    fatal: bool,
}

/// The next sequence after `n` records from `seq` (wrapping at i32::MAX).
fn seq_after(seq: i32, n: usize) -> i32 {
    ((i64::from(seq) + n as i64) % (i64::from(i32::MAX) + 1)) as i32
}

pub struct Producer {
    config: ProducerConfig,
    cluster: Cluster,
    next_value: u64,
    /// Records waiting to be sent, per partition, with when the first arrived.
    pending: BTreeMap<i32, (u64, Vec<String>)>,
    /// Batches to retry once the backoff passes, in order.
    retry_queue: VecDeque<Batch>,
    /// Requests in flight: tag -> (history index, batch).
    in_flight: BTreeMap<u64, (usize, Batch)>,
    next_tag: u64,
    history: History,
    idem: Option<Idempotence>,
}

impl Producer {
    /// `conn_base`: the first of the 1_000_000 connection ids this client
    /// may use (see `cluster::CONN_SPAN`).
    pub fn new(config: ProducerConfig, conn_base: ConnId) -> Producer {
        let cluster = Cluster::new(
            &config.bootstrap,
            &format!("producer-{}", config.process),
            conn_base,
            config.request_timeout_ms,
            &config.topic,
            config.retry_backoff_ms,
        );
        let idem = config.enable_idempotence.then(Idempotence::default);
        Producer {
            idem,
            config,
            cluster,
            next_value: 0,
            pending: BTreeMap::new(),
            retry_queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_tag: 0,
            history: History::default(),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// What the producer knows of the cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => {
                self.cluster.start(now, out);
                self.schedule_generate(now, out);
                return;
            }
            Input::TimerFired { id: GENERATE_TIMER } => {
                self.generate(now);
                self.schedule_generate(now, out);
                self.flush(now, false, out);
                return;
            }
            Input::TimerFired {
                id: LINGER_TIMER | RETRY_TIMER,
            } => {
                self.flush(now, false, out);
                return;
            }
            _ => {}
        }
        for event in self.cluster.handle(now, &input, out) {
            match event {
                ClusterEvent::Connected { .. } | ClusterEvent::Metadata { .. } => {
                    self.flush(now, false, out)
                }
                ClusterEvent::Response {
                    tag, version, body, ..
                } if tag == INIT_TAG => {
                    let response = decode_body::<InitProducerIdResponse>(&body, version);
                    self.on_init_producer_id(now, response, out);
                    self.flush(now, false, out);
                }
                ClusterEvent::Response {
                    tag, version, body, ..
                } => {
                    self.on_produce(
                        now,
                        tag,
                        decode_body::<ProduceResponse>(&body, version),
                        out,
                    );
                    self.flush(now, false, out);
                }
                ClusterEvent::Lost {
                    in_flight, reason, ..
                } => {
                    // The cluster forgot the leaders on that broker and is
                    // learning the cluster again; retries wait for it.
                    for tag in in_flight {
                        if tag == INIT_TAG {
                            self.on_init_producer_id(now, None, out);
                            continue;
                        }
                        self.settle(
                            now,
                            tag,
                            Outcome::Unknown {
                                reason: reason.clone(),
                            },
                            true,
                            out,
                        );
                    }
                    self.flush(now, false, out);
                }
            }
        }
    }

    fn schedule_generate(&mut self, now: Now, out: &mut Vec<Output>) {
        let interval = (1e9 / self.config.rate.max(0.001)) as u64;
        let at = now.mono_nanos + interval.max(1);
        if at < self.config.stop_at_nanos {
            out.push(Output::SetTimer {
                id: GENERATE_TIMER,
                at_nanos: at,
            });
        }
    }

    /// A new record joins its partition's pending batch. Records go round
    /// robin over the partitions; like Kafka's partitioner for records
    /// without a key, one whose turn it is but whose leader is unknown is
    /// passed over for the next that has one. While no partition has a known
    /// leader (or the partitions are not known yet) no record is made, as a
    /// Kafka producer blocks in `send` without metadata: a backlog does not
    /// build up during an outage.
    fn generate(&mut self, now: Now) {
        let Some(partitions) = self.cluster.partition_count() else {
            return;
        };
        let seq = self.next_value;
        let turn = (seq % partitions as u64) as i32;
        let Some(partition) = (0..partitions).map(|i| (turn + i) % partitions).find(|p| {
            self.cluster
                .partition(*p)
                .is_some_and(|i| i.leader.is_some())
        }) else {
            return;
        };
        self.next_value += 1;
        let value = format!("{}-{}", self.config.process, seq);
        self.pending
            .entry(partition)
            .or_insert((now.mono_nanos, Vec::new()))
            .1
            .push(value);
    }

    /// Send what is due: retries whose backoff passed, then pending batches
    /// that are full or have lingered long enough (all of them if `force`),
    /// each to its partition's leader. A broker that cannot take a queued
    /// retry takes nothing newer, and a partition with a queued retry sends
    /// nothing newer, so that a partition's records go out in order.
    fn flush(&mut self, now: Now, force: bool, out: &mut Vec<Output>) {
        if !self.idempotence_ready(now, out) {
            return;
        }
        let max = self.config.max_in_flight;
        let mut blocked: BTreeSet<SessionId> = BTreeSet::new();
        let mut waiting: BTreeSet<i32> = BTreeSet::new();
        for batch in std::mem::take(&mut self.retry_queue) {
            if batch.retry_at > now.mono_nanos {
                // Still backing off: its partitions wait, its broker does not.
                waiting.extend(batch.records.keys().copied());
                self.retry_queue.push_back(batch);
                continue;
            }
            let (groups, mut rest) = self.by_leader(batch.records.clone(), out);
            for (session, records) in groups {
                if !blocked.contains(&session) && self.cluster.can_send(session, max) {
                    let part = batch.part(records);
                    self.send(now, session, part, out);
                } else {
                    blocked.insert(session);
                    rest.extend(records);
                }
            }
            if !rest.is_empty() {
                waiting.extend(rest.keys().copied());
                let retry_at = batch.retry_at;
                self.retry_queue.push_back(Batch {
                    retry_at,
                    ..batch.part(rest)
                });
            }
        }
        self.arm_retry_timer(now, out);
        let linger = self.config.linger_ms * 1_000_000;
        let due: Vec<i32> = self
            .pending
            .keys()
            .copied()
            .filter(|p| !waiting.contains(p) && self.is_due(*p, now, force))
            .collect();
        let mut groups: BTreeMap<SessionId, Vec<i32>> = BTreeMap::new();
        for p in due {
            if let Some(session) = self.cluster.leader_session(p, out) {
                groups.entry(session).or_default().push(p);
            }
        }
        for (session, partitions) in groups {
            // As many requests as the broker takes, each with at most one
            // batch's worth of every due partition it leads.
            let cap = self.batch_cap();
            while !blocked.contains(&session) && self.cluster.can_send(session, max) {
                let mut records = BTreeMap::new();
                for p in &partitions {
                    if !self.is_due(*p, now, force) {
                        continue;
                    }
                    let Some((_, values)) = self.pending.get_mut(p) else {
                        continue;
                    };
                    let n = values.len().min(cap);
                    records.insert(*p, values.drain(..n).collect::<Vec<_>>());
                    if values.is_empty() {
                        self.pending.remove(p);
                    }
                }
                if records.is_empty() {
                    break;
                }
                let batch = self.sequenced(records);
                self.send(now, session, batch, out);
            }
        }
        // Wake up when the oldest batch not yet due has lingered enough;
        // due batches that wait for a leader, a connection or room in flight
        // go when that changes.
        if let Some(first) = self
            .pending
            .values()
            .map(|(first, _)| *first)
            .filter(|first| first + linger > now.mono_nanos)
            .min()
        {
            out.push(Output::SetTimer {
                id: LINGER_TIMER,
                at_nanos: first + linger,
            });
        }
    }

    /// A partition's pending records are due: a full batch, or lingered enough.
    fn is_due(&self, partition: i32, now: Now, force: bool) -> bool {
        let linger = self.config.linger_ms * 1_000_000;
        self.pending.get(&partition).is_some_and(|(first, values)| {
            !values.is_empty()
                && (force
                    || values.len() >= self.config.batch_records
                    || now.mono_nanos >= first + linger)
        })
    }

    /// Most records of one partition in one request: a full batch, or as
    /// many as fit in `BATCH_BYTES` if that is more. (A
    /// backlog, after an outage, goes out in batches of this size.)
    fn batch_cap(&self) -> usize {
        self.config
            .batch_records
            .max(BATCH_BYTES / self.config.value_bytes.max(1))
            .max(1)
    }

    /// Wake up when the next queued retry's backoff has passed.
    fn arm_retry_timer(&self, now: Now, out: &mut Vec<Output>) {
        if let Some(at) = self
            .retry_queue
            .iter()
            .map(|b| b.retry_at)
            .filter(|at| *at > now.mono_nanos)
            .min()
        {
            out.push(Output::SetTimer {
                id: RETRY_TIMER,
                at_nanos: at,
            });
        }
    }

    /// Records split by the session of their partition's leader; the
    /// records of partitions without a known leader apart.
    #[allow(clippy::type_complexity)]
    fn by_leader(
        &mut self,
        records: BTreeMap<i32, Vec<String>>,
        out: &mut Vec<Output>,
    ) -> (
        BTreeMap<SessionId, BTreeMap<i32, Vec<String>>>,
        BTreeMap<i32, Vec<String>>,
    ) {
        let mut groups: BTreeMap<SessionId, BTreeMap<i32, Vec<String>>> = BTreeMap::new();
        let mut rest = BTreeMap::new();
        for (p, values) in records {
            match self.cluster.leader_session(p, out) {
                Some(session) => {
                    groups.entry(session).or_default().insert(p, values);
                }
                None => {
                    rest.insert(p, values);
                }
            }
        }
        (groups, rest)
    }

    fn send(&mut self, now: Now, session: SessionId, batch: Batch, out: &mut Vec<Output>) {
        let partition_data = batch
            .records
            .iter()
            .map(|(p, values)| {
                let producer = batch
                    .producer
                    .zip(batch.seqs.get(p))
                    .map(|((id, epoch), seq)| (id, epoch, *seq));
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(encode_batch(
                        values,
                        self.config.value_bytes,
                        now.wall_millis,
                        producer,
                    )))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(self.config.acks)
            .with_timeout_ms(self.config.request_timeout_ms as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.config.topic.clone())))
                .with_partition_data(partition_data)]);
        let writes = batch
            .records
            .iter()
            .flat_map(|(p, values)| {
                values.iter().map(|v| Write {
                    partition: *p,
                    value: v.clone(),
                    offset: None,
                })
            })
            .collect();
        let index = self.history.events.len();
        self.history.events.push(Event {
            process: self.config.process,
            invoke_nanos: now.mono_nanos,
            complete_nanos: None,
            outcome: None,
            op: Op::Send { writes },
        });
        let tag = self.next_tag;
        self.next_tag += 1;
        self.in_flight.insert(tag, (index, batch));
        let expects_reply = self.config.acks != 0;
        if !self.cluster.send(
            now,
            session,
            ApiKey::Produce,
            9,
            &request,
            expects_reply.then_some(tag),
            out,
        ) {
            self.settle(
                now,
                tag,
                Outcome::Fail {
                    error: "not connected".into(),
                },
                true,
                out,
            );
        } else if !expects_reply {
            // No answer will come: the outcome is unknowable.
            self.settle(
                now,
                tag,
                Outcome::Unknown {
                    reason: "acks=0".into(),
                },
                false,
                out,
            );
        }
    }

    fn on_produce(
        &mut self,
        now: Now,
        tag: u64,
        response: Option<ProduceResponse>,
        out: &mut Vec<Output>,
    ) {
        let Some((index, _)) = self.in_flight.get(&tag) else {
            return;
        };
        let index = *index;
        let Some(response) = response else {
            return self.settle(
                now,
                tag,
                Outcome::Unknown {
                    reason: "unreadable produce response".into(),
                },
                true,
                out,
            );
        };
        if self.idem.is_some() {
            return self.on_idempotent_produce(now, tag, response, out);
        }
        // partition -> (error, base offset)
        let answers: BTreeMap<i32, (i16, i64)> = response
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(|p| (p.index, (p.error_code, p.base_offset)))
            })
            .collect();
        let errors: Vec<i16> = answers
            .values()
            .map(|(e, _)| *e)
            .filter(|e| *e != 0)
            .collect();
        if errors.is_empty() {
            if let Op::Send { writes } = &mut self.history.events[index].op {
                let mut next: BTreeMap<i32, i64> =
                    answers.iter().map(|(p, (_, base))| (*p, *base)).collect();
                for w in writes.iter_mut() {
                    if let Some(offset) = next.get_mut(&w.partition) {
                        w.offset = Some(*offset);
                        *offset += 1;
                    }
                }
            }
            return self.settle(now, tag, Outcome::Ok, false, out);
        }
        // One request, one outcome: any error makes the whole send not ok.
        let name = |code: i16| {
            kafka_protocol::error::ResponseError::try_from_code(code)
                .map(|e| format!("{e:?}"))
                .unwrap_or_else(|| format!("error {code}"))
        };
        let error = errors
            .iter()
            .map(|c| name(*c))
            .collect::<Vec<_>>()
            .join(", ");
        let maybe =
            errors.iter().any(|c| MAYBE_WRITTEN.contains(c)) || errors.len() < answers.len();
        let retriable = errors.iter().all(|c| RETRIABLE.contains(c));
        for (p, (code, _)) in &answers {
            if LEADER_GONE.contains(code) {
                // The leader moved (or is moving, or is down): learn it again.
                self.cluster.forget_leader(now, *p, out);
            } else if REFRESH.contains(code) {
                self.cluster.refresh(now, out);
            }
        }
        let outcome = if maybe {
            Outcome::Unknown { reason: error }
        } else {
            Outcome::Fail { error }
        };
        self.settle(now, tag, outcome, retriable, out);
    }

    /// Record a request's outcome; retry it if it failed and may be retried.
    fn settle(
        &mut self,
        now: Now,
        tag: u64,
        outcome: Outcome,
        retriable: bool,
        out: &mut Vec<Output>,
    ) {
        let Some((index, mut batch)) = self.in_flight.remove(&tag) else {
            return;
        };
        let event = &mut self.history.events[index];
        let failed = outcome != Outcome::Ok;
        let maybe = matches!(outcome, Outcome::Unknown { .. });
        event.outcome = Some(outcome);
        event.complete_nanos = Some(now.mono_nanos);
        if failed && retriable && batch.attempts < self.config.retries && self.config.acks != 0 {
            batch.attempts += 1;
            batch.maybe_written |= maybe;
            batch.retry_at = now.after_millis(self.config.retry_backoff_ms).max(1);
            self.retry_queue.push_back(batch);
            self.arm_retry_timer(now, out);
        } else if failed {
            // Given up: its sequences leave a hole (or may not).
            if let Some(idem) = self.idem.as_mut() {
                idem.bump = true;
            }
        }
    }

    // ----- idempotence -----

    /// Whether sends may go out: always without idempotence; with it, once
    /// there is a producer id, no epoch bump waits, and nothing was fatal.
    fn idempotence_ready(&mut self, now: Now, out: &mut Vec<Output>) -> bool {
        let Some(idem) = self.idem.as_mut() else {
            return true;
        };
        if idem.fatal {
            self.pending.clear();
            self.retry_queue.clear();
            return false;
        }
        if idem.bump {
            if !self.in_flight.is_empty() {
                return false;
            }
            self.bump_epoch();
        }
        let idem = self.idem.as_ref().expect("idempotent");
        if idem.producer.is_none() {
            self.init_producer_id(now, out);
            return false;
        }
        true
    }

    /// KIP-360: the next epoch (a new producer id past the last epoch);
    /// every partition's sequences start again at 0. Queued retries that may
    /// have been written are given up; the others get the new sequences.
    fn bump_epoch(&mut self) {
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        idem.bump = false;
        idem.next_seq.clear();
        idem.producer = match idem.producer {
            Some((id, epoch)) if epoch < i16::MAX => Some((id, epoch + 1)),
            _ => None,
        };
        self.retry_queue.retain(|b| !b.maybe_written);
        self.resequence_queue();
    }

    /// Give the queued retries sequences under the current producer id and epoch.
    fn resequence_queue(&mut self) {
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        let Some(producer) = idem.producer else {
            return;
        };
        for batch in self.retry_queue.iter_mut() {
            batch.producer = Some(producer);
            batch.seqs.clear();
            for (p, values) in &batch.records {
                let seq = idem.next_seq.entry(*p).or_insert(0);
                batch.seqs.insert(*p, *seq);
                *seq = seq_after(*seq, values.len());
            }
        }
    }

    /// A new batch of `records`, sequenced if the producer is idempotent.
    fn sequenced(&mut self, records: BTreeMap<i32, Vec<String>>) -> Batch {
        let mut batch = Batch {
            records,
            ..Batch::default()
        };
        if let Some(idem) = self.idem.as_mut() {
            batch.producer = idem.producer;
            for (p, values) in &batch.records {
                let seq = idem.next_seq.entry(*p).or_insert(0);
                batch.seqs.insert(*p, *seq);
                *seq = seq_after(*seq, values.len());
            }
        }
        batch
    }

    /// Ask any known broker for a producer id (unless asked, or backing off).
    fn init_producer_id(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(idem) = self.idem.as_ref() else {
            return;
        };
        if idem.init_in_flight {
            return;
        }
        if idem.init_retry_at > now.mono_nanos {
            out.push(Output::SetTimer {
                id: RETRY_TIMER,
                at_nanos: idem.init_retry_at,
            });
            return;
        }
        let partitions = self.cluster.partition_count().unwrap_or(0);
        let Some(session) = (0..partitions).find_map(|p| self.cluster.leader_session(p, out))
        else {
            // Metadata names no broker yet: its arrival flushes again.
            return;
        };
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let sent = self.cluster.send(
            now,
            session,
            ApiKey::InitProducerId,
            4,
            &request,
            Some(INIT_TAG),
            out,
        );
        if let Some(idem) = self.idem.as_mut() {
            idem.init_in_flight = sent;
        }
    }

    fn on_init_producer_id(
        &mut self,
        now: Now,
        response: Option<InitProducerIdResponse>,
        out: &mut Vec<Output>,
    ) {
        let backoff = now.after_millis(self.config.retry_backoff_ms);
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        idem.init_in_flight = false;
        match response {
            Some(r) if r.error_code == 0 && r.producer_id.0 >= 0 => {
                idem.producer = Some((r.producer_id.0, r.producer_epoch));
                idem.next_seq.clear();
                self.resequence_queue();
            }
            Some(r) if r.error_code != 0 && !INIT_RETRIABLE.contains(&r.error_code) => {
                // Not something a retry mends: the producer cannot produce.
                idem.fatal = true;
            }
            _ => {
                idem.init_retry_at = backoff;
                out.push(Output::SetTimer {
                    id: RETRY_TIMER,
                    at_nanos: backoff,
                });
            }
        }
    }

    /// Whether a batch of partition `p` sent before sequence `seq` (same
    /// producer and epoch) is still unresolved: queued for a retry, or in
    /// flight.
    fn earlier_unresolved(&self, p: i32, producer: Option<(i64, i16)>, seq: i32) -> bool {
        let earlier =
            |b: &Batch| b.producer == producer && b.seqs.get(&p).is_some_and(|s| *s < seq);
        self.retry_queue.iter().any(earlier) || self.in_flight.values().any(|(_, b)| earlier(b))
    }

    /// An idempotent producer judges each partition of a produce answer on
    /// its own: the ones that succeeded are done, the others are retried (in
    /// order), given up, or bump the epoch (see the module docs).
    fn on_idempotent_produce(
        &mut self,
        now: Now,
        tag: u64,
        response: ProduceResponse,
        out: &mut Vec<Output>,
    ) {
        let Some((index, batch)) = self.in_flight.remove(&tag) else {
            return;
        };
        let answers: BTreeMap<i32, (i16, i64)> = response
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(|p| (p.index, (p.error_code, p.base_offset)))
            })
            .collect();
        let name = |code: i16| {
            kafka_protocol::error::ResponseError::try_from_code(code)
                .map(|e| format!("{e:?}"))
                .unwrap_or_else(|| format!("error {code}"))
        };
        let mut ok: BTreeMap<i32, i64> = BTreeMap::new();
        let mut retry: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        let mut errors: Vec<String> = Vec::new();
        let (mut maybe, mut bump, mut give_up, mut fatal) = (false, false, false, false);
        for (p, values) in &batch.records {
            let seq = batch.seqs.get(p).copied().unwrap_or(0);
            let Some(&(code, base)) = answers.get(p) else {
                errors.push("no answer".into());
                maybe = true;
                retry.insert(*p, values.clone());
                continue;
            };
            if LEADER_GONE.contains(&code) {
                self.cluster.forget_leader(now, *p, out);
            } else if REFRESH.contains(&code) {
                self.cluster.refresh(now, out);
            }
            match code {
                0 => {
                    ok.insert(*p, base);
                    continue;
                }
                c if RETRIABLE.contains(&c) => maybe |= MAYBE_WRITTEN.contains(&c),
                OUT_OF_ORDER_SEQUENCE if self.earlier_unresolved(*p, batch.producer, seq) => {}
                OUT_OF_ORDER_SEQUENCE | UNKNOWN_PRODUCER_ID => bump = true,
                DUPLICATE_SEQUENCE => {
                    // Written before, offset not told: known written, not ok.
                    maybe = true;
                    give_up = true;
                }
                INVALID_PRODUCER_EPOCH | PRODUCER_FENCED => fatal = true,
                _ => give_up = true,
            }
            errors.push(name(code));
            retry.insert(*p, values.clone());
        }
        // One request, one outcome: ok only if every partition is.
        let event = &mut self.history.events[index];
        event.complete_nanos = Some(now.mono_nanos);
        if retry.is_empty() {
            if let Op::Send { writes } = &mut event.op {
                let mut next = ok.clone();
                for w in writes.iter_mut() {
                    if let Some(offset) = next.get_mut(&w.partition) {
                        w.offset = Some(*offset);
                        *offset += 1;
                    }
                }
            }
            event.outcome = Some(Outcome::Ok);
            return;
        }
        let error = errors.join(", ");
        // Some partitions written, or maybe: the whole send's fate is unknown.
        event.outcome = Some(if maybe || !ok.is_empty() {
            Outcome::Unknown { reason: error }
        } else {
            Outcome::Fail { error }
        });
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        if fatal {
            idem.fatal = true;
            return;
        }
        idem.bump |= bump || give_up;
        if give_up || batch.attempts >= self.config.retries {
            idem.bump = true;
            return;
        }
        let mut again = batch.part(retry);
        again.attempts += 1;
        again.maybe_written |= maybe;
        again.retry_at = now.after_millis(self.config.retry_backoff_ms).max(1);
        self.retry_queue.push_back(again);
        self.arm_retry_timer(now, out);
    }
}

/// One record batch holding `values` in order, each padded to `size` bytes.
pub fn encode_records(values: &[String], size: usize, timestamp: i64) -> Bytes {
    encode_batch(values, size, timestamp, None)
}

/// As [`encode_records`], for `producer` = (producer id, epoch, base
/// sequence) when idempotent: then one batch whatever the count (the
/// encoder keeps records in one batch while offset − sequence is constant).
pub fn encode_batch(
    values: &[String],
    size: usize,
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let mut payload = value.as_bytes().to_vec();
            if payload.len() < size {
                payload.push(b' ');
                payload.resize(size, b'.');
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if producer.is_some() {
                    seq_after(base_sequence, i)
                } else {
                    -1
                },
                timestamp,
                key: None,
                value: Some(Bytes::from(payload)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    // Encoding well-formed records into memory cannot fail.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    );
    buf.freeze()
}

/// The value a record carries (the part before the padding).
pub fn decode_value(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    text.split(' ').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{CONN_SPAN, METADATA_TIMER};
    use crate::testwire::{at, connects, metadata, requests_of, Sent};
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::MetadataResponse;

    const BASE: ConnId = 1_000_001;

    fn producer(bootstrap: &str, retries: u32) -> Producer {
        let mut config = ProducerConfig::new(0, bootstrap, "events");
        config.retries = retries;
        Producer::new(config, BASE)
    }

    fn step(p: &mut Producer, millis: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        p.step(at(millis), input, &mut out);
        out
    }

    /// The partitions (and their values) a produce request carries.
    fn produced(sent: &Sent) -> BTreeMap<i32, usize> {
        let request: ProduceRequest = sent.decode();
        request
            .topic_data
            .iter()
            .flat_map(|t| t.partition_data.iter())
            .map(|p| (p.index, p.records.as_ref().map_or(0, |r| r.len())))
            .collect()
    }

    fn answer(sent: &Sent, errors: &[(i32, i16)]) -> Input {
        sent.answer(&ProduceResponse::default().with_responses(
            vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partition_responses(
                    errors
                        .iter()
                        .map(|(p, e)| {
                            PartitionProduceResponse::default()
                                .with_index(*p)
                                .with_error_code(*e)
                                .with_base_offset(if *e == 0 { 0 } else { -1 })
                        })
                        .collect(),
                )],
        ))
    }

    /// Start, connect to the bootstrap broker and answer its metadata request.
    fn learn(p: &mut Producer, answer: MetadataResponse) {
        let out = step(p, 0, Input::Start);
        assert_eq!(connects(&out)[0].0, BASE);
        let out = step(p, 1, Input::Connected { conn: BASE });
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1, "metadata is asked at once");
        step(p, 2, asked[0].answer(&answer));
    }

    fn two_brokers() -> MetadataResponse {
        metadata(
            &[(1, "node-1:9092"), (2, "node-2:9092")],
            "events",
            &[(0, 1, 5), (1, 2, 7)],
        )
    }

    #[test]
    fn produce_requests_go_to_each_partitions_leader() {
        let mut p = producer("node-1:9092", 0);
        learn(&mut p, two_brokers());
        // Record 0 is partition 0's, led by node 1: the bootstrap connection.
        let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let sent = requests_of(&out, ApiKey::Produce);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].conn, BASE);
        assert_eq!(produced(&sent[0]).keys().copied().collect::<Vec<_>>(), [0]);
        // Record 1 is partition 1's, led by node 2: a new session, slot 1.
        let out = step(&mut p, 20, Input::TimerFired { id: GENERATE_TIMER });
        assert_eq!(
            connects(&out),
            [(BASE + CONN_SPAN, "node-2:9092".to_string())]
        );
        assert!(requests_of(&out, ApiKey::Produce).is_empty());
        let out = step(
            &mut p,
            21,
            Input::Connected {
                conn: BASE + CONN_SPAN,
            },
        );
        let sent = requests_of(&out, ApiKey::Produce);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].conn, BASE + CONN_SPAN);
        assert_eq!(produced(&sent[0]).keys().copied().collect::<Vec<_>>(), [1]);
        // Both answered: both sends ok.
        step(&mut p, 22, answer(&sent[0], &[(1, 0)]));
        assert_eq!(p.history().events.len(), 2);
        assert_eq!(p.history().events[1].outcome, Some(Outcome::Ok));
    }

    #[test]
    fn not_leader_refreshes_metadata_and_retries_at_the_new_leader() {
        let mut p = producer("node-1:9092", 1);
        learn(&mut p, two_brokers());
        step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let out = step(&mut p, 20, Input::TimerFired { id: GENERATE_TIMER });
        assert_eq!(connects(&out).len(), 1);
        let out = step(
            &mut p,
            21,
            Input::Connected {
                conn: BASE + CONN_SPAN,
            },
        );
        let to_node_2 = requests_of(&out, ApiKey::Produce).remove(0);
        // Node 2 no longer leads partition 1.
        let out = step(&mut p, 30, answer(&to_node_2, &[(1, 6)]));
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1, "NOT_LEADER_OR_FOLLOWER refreshes metadata");
        assert!(requests_of(&out, ApiKey::Produce).is_empty());
        let event = &p.history().events[1];
        assert!(matches!(event.outcome, Some(Outcome::Fail { .. })));
        // Node 1 leads partition 1 now.
        let moved = metadata(
            &[(1, "node-1:9092"), (2, "node-2:9092")],
            "events",
            &[(0, 1, 5), (1, 1, 8)],
        );
        let out = step(&mut p, 31, asked[0].answer(&moved));
        assert!(
            requests_of(&out, ApiKey::Produce).is_empty(),
            "the retry waits for its backoff"
        );
        assert_eq!(p.cluster().partition(1).unwrap().leader, Some(1));
        assert_eq!(p.cluster().leader_epoch(1), 8);
        let out = step(&mut p, 130, Input::TimerFired { id: RETRY_TIMER });
        let retry = requests_of(&out, ApiKey::Produce);
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].conn, BASE, "the retry goes to the new leader");
        assert_eq!(produced(&retry[0]), produced(&to_node_2));
        // The retry is a new send of the same values.
        let events = &p.history().events;
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].op, events[1].op);
    }

    #[test]
    fn unknown_leader_waits_for_metadata_instead_of_failing() {
        let mut p = producer("node-1:9092", 0);
        // Partition 1 has no leader yet.
        learn(
            &mut p,
            metadata(&[(1, "node-1:9092")], "events", &[(0, 1, 0), (1, -1, 0)]),
        );
        step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let out = step(&mut p, 20, Input::TimerFired { id: GENERATE_TIMER });
        // Record 1's turn was partition 1's: it went to partition 0 instead.
        let sent = requests_of(&out, ApiKey::Produce);
        assert_eq!(sent.len(), 1);
        assert_eq!(produced(&sent[0]).keys().copied().collect::<Vec<_>>(), [0]);
        // Metadata is asked again after the backoff.
        let out = step(&mut p, 102, Input::TimerFired { id: METADATA_TIMER });
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1);
        assert!(p
            .history()
            .events
            .iter()
            .all(|e| !matches!(e.outcome, Some(Outcome::Fail { .. }))));
    }

    #[test]
    fn a_single_bootstrap_address_uses_one_connection_as_before() {
        let mut p = producer("node-0:9092", 1);
        learn(
            &mut p,
            metadata(&[(0, "node-0:9092")], "events", &[(0, 0, 0), (1, 0, 0)]),
        );
        let mut all = Vec::new();
        for i in 0..4 {
            all.extend(step(
                &mut p,
                10 + i,
                Input::TimerFired { id: GENERATE_TIMER },
            ));
        }
        let sent = requests_of(&all, ApiKey::Produce);
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|s| s.conn == BASE));
        assert!(connects(&all).is_empty());
        // The connection drops: what was in flight is unknown, the session
        // reconnects after its backoff (its timer id 1, as before) on the
        // next connection id to the same address, then asks for metadata.
        let out = step(&mut p, 20, Input::Closed { conn: BASE });
        assert!(out.contains(&Output::SetTimer {
            id: 1,
            at_nanos: at(120).mono_nanos
        }));
        assert_eq!(p.history().events.len(), 4);
        assert!(p
            .history()
            .events
            .iter()
            .all(|e| matches!(e.outcome, Some(Outcome::Unknown { .. }))));
        // No records are made while no leader is known.
        step(&mut p, 30, Input::TimerFired { id: GENERATE_TIMER });
        let out = step(&mut p, 120, Input::TimerFired { id: 1 });
        assert_eq!(connects(&out), [(BASE + 1, "node-0:9092".to_string())]);
        let out = step(&mut p, 121, Input::Connected { conn: BASE + 1 });
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1);
        let out = step(
            &mut p,
            122,
            asked[0].answer(&metadata(
                &[(0, "node-0:9092")],
                "events",
                &[(0, 0, 0), (1, 0, 0)],
            )),
        );
        // The retries (their backoff has passed) go on the new connection;
        // nothing else was made meanwhile.
        let sent = requests_of(&out, ApiKey::Produce);
        assert_eq!(sent.len(), 4);
        assert_eq!(p.history().events.len(), 8);
        assert!(sent.iter().all(|s| s.conn == BASE + 1));
    }

    #[test]
    fn metadata_comes_from_the_next_bootstrap_address_when_one_fails() {
        let mut p = producer("node-1:9092, node-2:9092", 0);
        let out = step(&mut p, 0, Input::Start);
        assert_eq!(connects(&out), [(BASE, "node-1:9092".to_string())]);
        let out = step(&mut p, 5, Input::ConnectFailed { conn: BASE });
        assert_eq!(
            connects(&out),
            [(BASE + CONN_SPAN, "node-2:9092".to_string())]
        );
        let out = step(
            &mut p,
            6,
            Input::Connected {
                conn: BASE + CONN_SPAN,
            },
        );
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].conn, BASE + CONN_SPAN);
    }

    /// One record of partition 0 sent to node 1 (the only broker).
    fn one_send(p: &mut Producer) -> Sent {
        learn(p, metadata(&[(1, "node-1:9092")], "events", &[(0, 1, 5)]));
        let out = step(p, 10, Input::TimerFired { id: GENERATE_TIMER });
        requests_of(&out, ApiKey::Produce).remove(0)
    }

    #[test]
    fn replication_errors_are_retried_and_judged_as_kafka_clients_do() {
        // (error, outcome kind: fail / unknown, leader forgotten)
        for (code, maybe_written, forgets) in [
            (19, false, false), // NOT_ENOUGH_REPLICAS: refused before the append
            (20, true, false),  // NOT_ENOUGH_REPLICAS_AFTER_APPEND: appended
            (7, true, false),   // REQUEST_TIMED_OUT: acks=all may still complete
            (5, false, true),   // LEADER_NOT_AVAILABLE
            (6, false, true),   // NOT_LEADER_OR_FOLLOWER
            (74, false, true),  // FENCED_LEADER_EPOCH
            (75, false, true),  // UNKNOWN_LEADER_EPOCH
        ] {
            let mut p = producer("node-1:9092", 1);
            let sent = one_send(&mut p);
            let out = step(&mut p, 20, answer(&sent, &[(0, code)]));
            let outcome = p.history().events[0].outcome.clone();
            if maybe_written {
                assert!(
                    matches!(outcome, Some(Outcome::Unknown { .. })),
                    "{code}: {outcome:?}"
                );
            } else {
                assert!(
                    matches!(outcome, Some(Outcome::Fail { .. })),
                    "{code}: {outcome:?}"
                );
            }
            assert_eq!(
                p.cluster().partition(0).unwrap().leader.is_none(),
                forgets,
                "{code}"
            );
            if code == 19 || code == 20 || forgets {
                assert_eq!(
                    requests_of(&out, ApiKey::Metadata).len(),
                    1,
                    "{code} refreshes metadata"
                );
            }
            // Retried after the backoff (to the leader, once known again).
            if forgets {
                let asked = requests_of(&out, ApiKey::Metadata).remove(0);
                step(
                    &mut p,
                    21,
                    asked.answer(&metadata(&[(1, "node-1:9092")], "events", &[(0, 1, 6)])),
                );
            }
            let out = step(&mut p, 130, Input::TimerFired { id: RETRY_TIMER });
            let retry = requests_of(&out, ApiKey::Produce);
            assert_eq!(retry.len(), 1, "{code} is retried");
            assert_eq!(produced(&retry[0]), produced(&sent));
        }
    }

    #[test]
    fn a_lost_connection_under_acks_all_is_unknown_and_refreshes() {
        let mut p = producer("node-1:9092", 0);
        let _sent = one_send(&mut p);
        step(&mut p, 20, Input::Closed { conn: BASE });
        assert!(matches!(
            p.history().events[0].outcome,
            Some(Outcome::Unknown { .. })
        ));
        assert_eq!(p.cluster().partition(0).unwrap().leader, None);
    }

    // ----- idempotence -----

    fn idempotent(retries: u32) -> Producer {
        let mut config = ProducerConfig::new(0, "node-1:9092", "events");
        config.retries = retries;
        config.enable_idempotence = true;
        Producer::new(config, BASE)
    }

    /// One broker leading both partitions.
    fn one_broker() -> MetadataResponse {
        metadata(&[(1, "node-1:9092")], "events", &[(0, 1, 5), (1, 1, 5)])
    }

    /// (producer id, epoch, base sequence, records) of each partition's batch.
    fn stamps(sent: &Sent) -> BTreeMap<i32, (i64, i16, i32, usize)> {
        let request: ProduceRequest = sent.decode();
        request
            .topic_data
            .iter()
            .flat_map(|t| t.partition_data.iter())
            .map(|p| {
                let mut bytes = p.records.clone().unwrap();
                let sets =
                    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap();
                assert_eq!(sets.len(), 1, "one batch per partition");
                let r = &sets[0].records;
                (
                    p.index,
                    (
                        r[0].producer_id,
                        r[0].producer_epoch,
                        r[0].sequence,
                        r.len(),
                    ),
                )
            })
            .collect()
    }

    fn init_answer(sent: &Sent, error: i16, id: i64, epoch: i16) -> Input {
        sent.answer(
            &InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
        )
    }

    /// Learn the cluster, get producer id 42 epoch 0.
    fn started(p: &mut Producer) {
        step(p, 0, Input::Start);
        let out = step(p, 1, Input::Connected { conn: BASE });
        let asked = requests_of(&out, ApiKey::Metadata);
        // Once the cluster is known, the producer id is asked for at once.
        let out = step(p, 2, asked[0].answer(&one_broker()));
        let init = requests_of(&out, ApiKey::InitProducerId);
        let out = step(p, 5, Input::TimerFired { id: GENERATE_TIMER });
        assert!(requests_of(&out, ApiKey::Produce).is_empty(), "no id yet");
        assert_eq!(init.len(), 1);
        let asked: InitProducerIdRequest = init[0].decode();
        assert_eq!(asked.transactional_id, None);
        let out = step(p, 6, init_answer(&init[0], 0, 42, 0));
        // The record made meanwhile goes out now; it succeeds.
        for sent in requests_of(&out, ApiKey::Produce) {
            let parts: Vec<(i32, i16)> = stamps(&sent).keys().map(|p| (*p, 0)).collect();
            step(p, 7, answer(&sent, &parts));
        }
    }

    #[test]
    fn an_idempotent_producer_stamps_each_batch_with_its_id_epoch_and_sequence() {
        let mut p = idempotent(0);
        started(&mut p);
        // Records 0 (partition 0) and 1 (partition 1) went out with the id.
        // Partition 0's first batch (one record, sequence 0) is done.
        let mut seen: BTreeMap<i32, (i64, i16, i32, usize)> = BTreeMap::from([(0, (42, 0, 0, 1))]);
        for _ in 0..2 {
            let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
            for s in requests_of(&out, ApiKey::Produce) {
                for (part, stamp) in stamps(&s) {
                    let prev = seen.insert(part, stamp);
                    if let Some((_, _, seq, n)) = prev {
                        assert_eq!(stamp.2, seq + n as i32, "sequences follow on");
                    }
                    assert_eq!((stamp.0, stamp.1), (42, 0));
                }
            }
        }
        assert!(!seen.is_empty());
    }

    #[test]
    fn a_retry_keeps_its_sequence_and_out_of_order_behind_it_is_retried_in_order() {
        let mut p = idempotent(3);
        started(&mut p);
        let mut sends = Vec::new();
        for t in 0..4 {
            let out = step(&mut p, 10 + t, Input::TimerFired { id: GENERATE_TIMER });
            sends.extend(requests_of(&out, ApiKey::Produce));
        }
        // Partition 0's first batch times out at the broker; the next one
        // (a gap there) gets OUT_OF_ORDER_SEQUENCE_NUMBER.
        let p0: Vec<&Sent> = sends
            .iter()
            .filter(|s| stamps(s).contains_key(&0))
            .collect();
        assert!(p0.len() >= 2, "{}", p0.len());
        let (a, b) = (stamps(p0[0])[&0], stamps(p0[1])[&0]);
        step(&mut p, 20, answer(p0[0], &[(0, 7)]));
        step(&mut p, 21, answer(p0[1], &[(0, OUT_OF_ORDER_SEQUENCE)]));
        assert!(matches!(
            p.history().events.last().unwrap().outcome,
            Some(Outcome::Fail { .. })
        ));
        // Both retried in order with their sequences, once the backoff passed.
        let out = step(&mut p, 400, Input::TimerFired { id: RETRY_TIMER });
        let again: Vec<(i64, i16, i32, usize)> = requests_of(&out, ApiKey::Produce)
            .iter()
            .filter_map(|s| stamps(s).get(&0).copied())
            .collect();
        assert_eq!(again, vec![a, b]);
    }

    #[test]
    fn unknown_producer_id_bumps_the_epoch_and_restarts_sequences() {
        let mut p = idempotent(3);
        started(&mut p);
        let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let sent = requests_of(&out, ApiKey::Produce).remove(0);
        let part = *stamps(&sent).keys().next().unwrap();
        step(&mut p, 20, answer(&sent, &[(part, UNKNOWN_PRODUCER_ID)]));
        let out = step(&mut p, 400, Input::TimerFired { id: RETRY_TIMER });
        let again = requests_of(&out, ApiKey::Produce);
        assert_eq!(again.len(), 1);
        assert_eq!(
            stamps(&again[0])[&part],
            (42, 1, 0, 1),
            "epoch 1, sequence 0"
        );
    }

    #[test]
    fn a_batch_that_may_be_written_is_given_up_not_resent_under_a_new_epoch() {
        let mut p = idempotent(0);
        started(&mut p);
        let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let sent = requests_of(&out, ApiKey::Produce).remove(0);
        // No retries: a timed-out batch is given up; the epoch is bumped
        // before anything else goes out.
        let part = *stamps(&sent).keys().next().unwrap();
        step(&mut p, 20, answer(&sent, &[(part, 7)]));
        assert!(matches!(
            p.history().events.last().unwrap().outcome,
            Some(Outcome::Unknown { .. })
        ));
        let out = step(&mut p, 30, Input::TimerFired { id: GENERATE_TIMER });
        let next = requests_of(&out, ApiKey::Produce);
        assert_eq!(next.len(), 1);
        let stamp = stamps(&next[0]).into_values().next().unwrap();
        assert_eq!((stamp.0, stamp.1, stamp.2), (42, 1, 0));
        assert_eq!(
            p.history().events.len(),
            3,
            "the given-up batch was not sent again"
        );
    }

    #[test]
    fn invalid_producer_epoch_stops_the_producer() {
        let mut p = idempotent(3);
        started(&mut p);
        let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        let sent = requests_of(&out, ApiKey::Produce).remove(0);
        let part = *stamps(&sent).keys().next().unwrap();
        step(&mut p, 20, answer(&sent, &[(part, INVALID_PRODUCER_EPOCH)]));
        let out = step(&mut p, 30, Input::TimerFired { id: GENERATE_TIMER });
        assert!(requests_of(&out, ApiKey::Produce).is_empty());
    }

    #[test]
    fn without_idempotence_batches_carry_no_producer_id() {
        let mut p = producer("node-1:9092", 0);
        learn(&mut p, one_broker());
        let out = step(&mut p, 10, Input::TimerFired { id: GENERATE_TIMER });
        assert!(requests_of(&out, ApiKey::InitProducerId).is_empty());
        let sent = requests_of(&out, ApiKey::Produce).remove(0);
        let stamp = stamps(&sent).into_values().next().unwrap();
        assert_eq!((stamp.0, stamp.1, stamp.2), (-1, -1, -1));
    }
}
