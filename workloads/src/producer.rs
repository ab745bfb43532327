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
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
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
        }
    }
}

/// Records of one request, by partition, and how many attempts it has had.
#[derive(Debug, Clone)]
struct Batch {
    records: BTreeMap<i32, Vec<String>>,
    attempts: u32,
    /// A retry goes no earlier than this (monotonic nanoseconds).
    retry_at: u64,
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
        Producer {
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
            let (groups, mut rest) = self.by_leader(batch.records, out);
            for (session, records) in groups {
                if !blocked.contains(&session) && self.cluster.can_send(session, max) {
                    let part = Batch {
                        records,
                        attempts: batch.attempts,
                        retry_at: 0,
                    };
                    self.send(now, session, part, out);
                } else {
                    blocked.insert(session);
                    rest.extend(records);
                }
            }
            if !rest.is_empty() {
                waiting.extend(rest.keys().copied());
                self.retry_queue.push_back(Batch {
                    records: rest,
                    attempts: batch.attempts,
                    retry_at: batch.retry_at,
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
                self.send(
                    now,
                    session,
                    Batch {
                        records,
                        attempts: 0,
                        retry_at: 0,
                    },
                    out,
                );
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
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(encode_records(
                        values,
                        self.config.value_bytes,
                        now.wall_millis,
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
        event.outcome = Some(outcome);
        event.complete_nanos = Some(now.mono_nanos);
        if failed && retriable && batch.attempts < self.config.retries && self.config.acks != 0 {
            batch.attempts += 1;
            batch.retry_at = now.after_millis(self.config.retry_backoff_ms).max(1);
            self.retry_queue.push_back(batch);
            self.arm_retry_timer(now, out);
        }
    }
}

/// One record batch holding `values` in order, each padded to `size` bytes.
pub fn encode_records(values: &[String], size: usize, timestamp: i64) -> Bytes {
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
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
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
}
