//! A simulated producer: learns the topic's partitions from Metadata, then
//! sends one uniquely valued record per tick at a fixed rate, round-robin
//! over partitions, with up to `max_in_flight` requests outstanding, and
//! records every send's outcome. Values are never retried, so an acknowledged
//! value was written exactly once by this client.

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

const SEND_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const METADATA_RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
const METADATA_TAG: u64 = u64::MAX;

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
    /// Stop sending at this simulated time (nanoseconds).
    pub stop_at_nanos: u64,
}

pub struct Producer {
    config: ProducerConfig,
    session: Session,
    partitions: Option<i32>,
    next_value: u64,
    history: History,
    /// Sends awaiting an answer: tag -> index into `history.sends`.
    pending: std::collections::BTreeMap<u64, usize>,
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
            history: History::default(),
            pending: Default::default(),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => {
                self.session.connect(out);
                self.schedule_send(now, out);
                return;
            }
            Input::TimerFired { id: SEND_TIMER } => {
                self.send_one(now, out);
                self.schedule_send(now, out);
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
                } => self.on_produce(now, tag, decode_body::<ProduceResponse>(&body, version)),
                SessionEvent::Lost { in_flight, reason } => {
                    for tag in in_flight {
                        self.settle(
                            now,
                            tag,
                            Outcome::Unknown {
                                reason: reason.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn schedule_send(&mut self, now: Now, out: &mut Vec<Output>) {
        let interval = (1e9 / self.config.rate.max(0.001)) as u64;
        let at = now.mono_nanos + interval.max(1);
        if at < self.config.stop_at_nanos {
            out.push(Output::SetTimer {
                id: SEND_TIMER,
                at_nanos: at,
            });
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
            Some(n) => self.partitions = Some(n),
            None => out.push(Output::SetTimer {
                id: METADATA_RETRY_TIMER,
                at_nanos: now.after_millis(100),
            }),
        }
    }

    fn send_one(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(partitions) = self.partitions else {
            return;
        };
        if !self.session.is_ready() || self.session.in_flight() >= self.config.max_in_flight {
            return;
        }
        let seq = self.next_value;
        self.next_value += 1;
        let partition = (seq % partitions as u64) as i32;
        let value = format!("{}-{}", self.config.process, seq);
        let records = encode_record(&value, self.config.value_bytes, now.wall_millis);
        let request = ProduceRequest::default()
            .with_acks(self.config.acks)
            .with_timeout_ms(self.config.request_timeout_ms as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.config.topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let index = self.history.events.len();
        self.history.events.push(Event {
            process: self.config.process,
            invoke_nanos: now.mono_nanos,
            complete_nanos: None,
            outcome: None,
            op: Op::Send {
                writes: vec![Write {
                    partition,
                    value,
                    offset: None,
                }],
            },
        });
        self.pending.insert(seq, index);
        let tag = (self.config.acks != 0).then_some(seq);
        if !self
            .session
            .send(now, ApiKey::Produce, 9, &request, tag, out)
        {
            self.settle(
                now,
                seq,
                Outcome::Fail {
                    error: "not connected".into(),
                },
            );
        } else if self.config.acks == 0 {
            // No answer will come: the outcome is unknowable.
            self.settle(
                now,
                seq,
                Outcome::Unknown {
                    reason: "acks=0".into(),
                },
            );
        }
    }

    fn on_produce(&mut self, now: Now, tag: u64, response: Option<ProduceResponse>) {
        let outcome = match response
            .as_ref()
            .and_then(|r| r.responses.first())
            .and_then(|t| t.partition_responses.first())
        {
            None => Outcome::Unknown {
                reason: "unreadable produce response".into(),
            },
            Some(p) if p.error_code == 0 => {
                self.settle_offset(tag, p.base_offset);
                Outcome::Ok
            }
            Some(p) => {
                let name = kafka_protocol::error::ResponseError::try_from_code(p.error_code)
                    .map(|e| format!("{e:?}"))
                    .unwrap_or_else(|| format!("error {}", p.error_code));
                // Errors after which the record may still be in the log.
                if matches!(p.error_code, 7 | 56 | -1) {
                    Outcome::Unknown { reason: name }
                } else {
                    Outcome::Fail { error: name }
                }
            }
        };
        self.settle(now, tag, outcome);
    }

    fn settle_offset(&mut self, tag: u64, base_offset: i64) {
        if let Some(&index) = self.pending.get(&tag) {
            if let Op::Send { writes } = &mut self.history.events[index].op {
                for (i, w) in writes.iter_mut().enumerate() {
                    w.offset = Some(base_offset + i as i64);
                }
            }
        }
    }

    fn settle(&mut self, now: Now, tag: u64, outcome: Outcome) {
        if let Some(index) = self.pending.remove(&tag) {
            let event = &mut self.history.events[index];
            event.outcome = Some(outcome);
            event.complete_nanos = Some(now.mono_nanos);
        }
    }
}

/// One record batch holding `value`, padded to `size` bytes.
pub fn encode_record(value: &str, size: usize, timestamp: i64) -> Bytes {
    let mut payload = value.as_bytes().to_vec();
    if payload.len() < size {
        payload.push(b' ');
        payload.resize(size, b'.');
    }
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: None,
        value: Some(Bytes::from(payload)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    // Encoding a well-formed record into memory cannot fail.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&record),
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
