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

use std::collections::{BTreeMap, VecDeque};

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::history::{Event, History, Op, Outcome, Write};
use crate::session::{decode_body, Session, SessionEvent, SESSION_TIMER_LIMIT};

const GENERATE_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const METADATA_RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
const LINGER_TIMER: TimerId = SESSION_TIMER_LIMIT + 3;
const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 4;
const METADATA_TAG: u64 = u64::MAX;

/// Kafka error codes after which a produce may be retried (and after which
/// the records may or may not be in the log).
const RETRIABLE: &[i16] = &[
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    7,  // REQUEST_TIMED_OUT
    56, // KAFKA_STORAGE_ERROR
];
/// Of those, the ones after which the records may still have been written.
const MAYBE_WRITTEN: &[i16] = &[7, 56, -1];

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub process: u32,
    pub bootstrap: String,
    pub topic: String,
    /// Records per second.
    pub rate: f64,
    pub value_bytes: usize,
    /// -1 (all), 0 or 1.
    pub acks: i16,
    pub max_in_flight: usize,
    pub request_timeout_ms: u64,
    /// Most records in one partition's batch.
    pub batch_records: usize,
    /// How long a batch waits for more records (0 = send at once).
    pub linger_ms: u64,
    /// Retries of a failed request (0 = never retry).
    pub retries: u32,
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
}

pub struct Producer {
    config: ProducerConfig,
    session: Session,
    partitions: Option<i32>,
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
    pub fn new(config: ProducerConfig, conn_base: ConnId) -> Producer {
        let session = Session::new(
            &config.bootstrap,
            &format!("producer-{}", config.process),
            conn_base,
            config.request_timeout_ms,
        );
        Producer {
            config,
            session,
            partitions: None,
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

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => {
                self.session.connect(out);
                self.schedule_generate(now, out);
                return;
            }
            Input::TimerFired { id: GENERATE_TIMER } => {
                self.generate(now);
                self.schedule_generate(now, out);
                self.flush(now, false, out);
                return;
            }
            Input::TimerFired { id: LINGER_TIMER } => {
                self.flush(now, false, out);
                return;
            }
            Input::TimerFired { id: RETRY_TIMER } => {
                self.flush(now, false, out);
                return;
            }
            Input::TimerFired {
                id: METADATA_RETRY_TIMER,
            } => {
                self.request_metadata(now, out);
                return;
            }
            _ => {}
        }
        for event in self.session.handle(now, &input, out) {
            match event {
                SessionEvent::Connected => self.request_metadata(now, out),
                SessionEvent::Response {
                    tag: METADATA_TAG,
                    version,
                    body,
                    ..
                } => self.on_metadata(now, decode_body::<MetadataResponse>(&body, version), out),
                SessionEvent::Response {
                    tag, version, body, ..
                } => self.on_produce(
                    now,
                    tag,
                    decode_body::<ProduceResponse>(&body, version),
                    out,
                ),
                SessionEvent::Lost { in_flight, reason } => {
                    // Reconnecting: learn the cluster again before sending.
                    self.partitions = None;
                    for tag in in_flight {
                        if tag != METADATA_TAG {
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
                    }
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

    /// A new record joins its partition's pending batch (once partitions are known).
    fn generate(&mut self, now: Now) {
        let Some(partitions) = self.partitions else {
            return;
        };
        let seq = self.next_value;
        self.next_value += 1;
        let partition = (seq % partitions as u64) as i32;
        let value = format!("{}-{}", self.config.process, seq);
        self.pending
            .entry(partition)
            .or_insert((now.mono_nanos, Vec::new()))
            .1
            .push(value);
    }

    /// Send what is due: retries whose backoff passed, then pending batches
    /// that are full or have lingered long enough (all of them if `force`).
    fn flush(&mut self, now: Now, force: bool, out: &mut Vec<Output>) {
        while self.can_send() {
            let Some(batch) = self.retry_queue.pop_front() else {
                break;
            };
            self.send(now, batch, out);
        }
        if !self.can_send() {
            return;
        }
        let linger = self.config.linger_ms * 1_000_000;
        let due: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, (first, values))| {
                force
                    || values.len() >= self.config.batch_records
                    || now.mono_nanos >= first + linger
            })
            .map(|(p, _)| *p)
            .collect();
        if !due.is_empty() {
            let mut records = BTreeMap::new();
            for p in due {
                if let Some((_, values)) = self.pending.remove(&p) {
                    records.insert(p, values);
                }
            }
            self.send(
                now,
                Batch {
                    records,
                    attempts: 0,
                },
                out,
            );
        }
        // Wake up when the oldest remaining batch has lingered enough.
        if let Some(first) = self.pending.values().map(|(first, _)| *first).min() {
            out.push(Output::SetTimer {
                id: LINGER_TIMER,
                at_nanos: (first + linger).max(now.mono_nanos + 1),
            });
        }
    }

    fn can_send(&self) -> bool {
        self.partitions.is_some()
            && self.session.is_ready()
            && self.session.in_flight() < self.config.max_in_flight
    }

    fn send(&mut self, now: Now, batch: Batch, out: &mut Vec<Output>) {
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
        if !self.session.send(
            now,
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

    fn request_metadata(&mut self, now: Now, out: &mut Vec<Output>) {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(
                        self.config.topic.clone(),
                    )))),
            ]));
        self.session
            .send(now, ApiKey::Metadata, 9, &request, Some(METADATA_TAG), out);
    }

    fn on_metadata(&mut self, now: Now, response: Option<MetadataResponse>, out: &mut Vec<Output>) {
        let ready = response.and_then(|r| {
            let topic = r.topics.into_iter().next()?;
            (topic.error_code == 0
                && !topic.partitions.is_empty()
                && topic.partitions.iter().all(|p| p.error_code == 0))
            .then_some(topic.partitions.len() as i32)
        });
        match ready {
            Some(n) => {
                self.partitions = Some(n);
                self.flush(now, false, out);
            }
            None => out.push(Output::SetTimer {
                id: METADATA_RETRY_TIMER,
                at_nanos: now.after_millis(100),
            }),
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
        if errors.iter().any(|c| matches!(c, 5 | 6)) {
            // The leader moved (or is moving): learn the cluster again.
            self.partitions = None;
            self.request_metadata(now, out);
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
            self.retry_queue.push_back(batch);
            out.push(Output::SetTimer {
                id: RETRY_TIMER,
                at_nanos: now.after_millis(self.config.retry_backoff_ms),
            });
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
