//! A simulated consumer by assignment: learns the topic's partitions, then
//! long-polls every partition from offset 0 and records each record it reads.
//! It keeps reading for the whole run, so at the end it has seen everything
//! the broker exposes (the final read of a lost-write check).

use std::collections::BTreeMap;

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::history::{Event, History, Op, Outcome, Read};
use crate::producer::decode_value;
use crate::session::{decode_body, Session, SessionEvent, SESSION_TIMER_LIMIT};

const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const START_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
const METADATA_TAG: u64 = 1;
const FETCH_TAG: u64 = 2;
const LIST_OFFSETS_TAG: u64 = 3;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub process: u32,
    pub bootstrap: String,
    pub topic: String,
    pub max_wait_ms: i32,
    pub request_timeout_ms: u64,
    /// Start consuming only at this simulated time (nanoseconds).
    pub start_at_nanos: u64,
}

pub struct Consumer {
    config: ConsumerConfig,
    session: Session,
    /// partition -> next offset to read.
    positions: BTreeMap<i32, i64>,
    /// partition -> the high watermark last reported.
    high_watermarks: BTreeMap<i32, i64>,
    history: History,
    /// Partitions whose position must be reset to the log start.
    resets: Vec<i32>,
    /// When the fetch in flight was sent.
    poll_invoked: u64,
}

impl Consumer {
    pub fn new(config: ConsumerConfig, conn_base: ConnId) -> Consumer {
        let session = Session::new(
            &config.bootstrap,
            &format!("consumer-{}", config.process),
            conn_base,
            config.request_timeout_ms,
        );
        Consumer {
            config,
            session,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            history: History::default(),
            resets: Vec::new(),
            poll_invoked: 0,
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// partition -> (position, last known high watermark).
    pub fn progress(&self) -> BTreeMap<i32, (i64, i64)> {
        self.positions
            .iter()
            .map(|(p, pos)| {
                (
                    *p,
                    (*pos, self.high_watermarks.get(p).copied().unwrap_or(-1)),
                )
            })
            .collect()
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start if now.mono_nanos < self.config.start_at_nanos => {
                out.push(Output::SetTimer {
                    id: START_TIMER,
                    at_nanos: self.config.start_at_nanos,
                });
                return;
            }
            Input::Start | Input::TimerFired { id: START_TIMER } => {
                self.session.connect(out);
                return;
            }
            Input::TimerFired { id: RETRY_TIMER } => {
                self.next_request(now, out);
                return;
            }
            _ => {}
        }
        for event in self.session.handle(now, &input, out) {
            match event {
                SessionEvent::Connected => self.next_request(now, out),
                SessionEvent::Response {
                    tag, version, body, ..
                } => {
                    let ok = match tag {
                        METADATA_TAG => self.on_metadata(decode_body(&body, version)),
                        FETCH_TAG => self.on_fetch(now, decode_body(&body, version)),
                        LIST_OFFSETS_TAG => self.on_list_offsets(now, decode_body(&body, version)),
                        _ => false,
                    };
                    if ok {
                        self.next_request(now, out);
                    } else {
                        self.retry_later(now, out);
                    }
                }
                SessionEvent::Lost { .. } => {}
            }
        }
    }

    fn topic(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.config.topic.clone()))
    }

    fn retry_later(&mut self, now: Now, out: &mut Vec<Output>) {
        out.push(Output::SetTimer {
            id: RETRY_TIMER,
            at_nanos: now.after_millis(100),
        });
    }

    fn next_request(&mut self, now: Now, out: &mut Vec<Output>) {
        if !self.session.is_ready() || self.session.in_flight() > 0 {
            return;
        }
        if self.positions.is_empty() {
            let request = MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(self.topic())),
                ]));
            self.session
                .send(now, ApiKey::Metadata, 9, &request, Some(METADATA_TAG), out);
        } else if !self.resets.is_empty() {
            let partitions = self
                .resets
                .iter()
                .map(|p| {
                    ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_timestamp(-2)
                })
                .collect();
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(self.topic())
                    .with_partitions(partitions)]);
            self.session.send(
                now,
                ApiKey::ListOffsets,
                5,
                &request,
                Some(LIST_OFFSETS_TAG),
                out,
            );
        } else {
            let partitions = self
                .positions
                .iter()
                .map(|(p, offset)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*offset)
                        .with_partition_max_bytes(1024 * 1024)
                })
                .collect();
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.config.max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(4 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(self.topic())
                    .with_partitions(partitions)]);
            self.poll_invoked = now.mono_nanos;
            self.session
                .send(now, ApiKey::Fetch, 11, &request, Some(FETCH_TAG), out);
        }
    }

    fn on_metadata(&mut self, response: Option<MetadataResponse>) -> bool {
        let Some(topic) = response.and_then(|r| r.topics.into_iter().next()) else {
            return false;
        };
        if topic.error_code != 0 || topic.partitions.is_empty() {
            return false;
        }
        for p in topic.partitions {
            self.positions.entry(p.partition_index).or_insert(0);
        }
        true
    }

    fn on_list_offsets(&mut self, now: Now, response: Option<ListOffsetsResponse>) -> bool {
        let Some(topic) = response.and_then(|r| r.topics.into_iter().next()) else {
            return false;
        };
        let mut positions = BTreeMap::new();
        for p in topic.partitions {
            if p.error_code == 0 {
                self.positions.insert(p.partition_index, p.offset);
                self.resets.retain(|x| *x != p.partition_index);
                positions.insert(p.partition_index, p.offset);
            }
        }
        if !positions.is_empty() {
            self.history.events.push(Event {
                process: self.config.process,
                invoke_nanos: now.mono_nanos,
                complete_nanos: Some(now.mono_nanos),
                outcome: Some(Outcome::Ok),
                op: Op::Seek { positions },
            });
        }
        self.resets.is_empty()
    }

    fn on_fetch(&mut self, now: Now, response: Option<FetchResponse>) -> bool {
        let Some(response) = response else {
            return false;
        };
        let mut all_ok = response.error_code == 0;
        let mut polled: BTreeMap<i32, Vec<Read>> = BTreeMap::new();
        for topic in response.responses {
            for p in topic.partitions {
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    self.resets.push(p.partition_index);
                    continue;
                }
                if p.error_code != 0 {
                    all_ok = false;
                    continue;
                }
                self.high_watermarks
                    .insert(p.partition_index, p.high_watermark);
                let Some(mut records) = p.records else {
                    continue;
                };
                let Ok(sets) = RecordBatchDecoder::decode_all(&mut records) else {
                    all_ok = false;
                    continue;
                };
                let position = self.positions.entry(p.partition_index).or_insert(0);
                for record in sets.into_iter().flat_map(|s| s.records) {
                    if record.offset < *position || record.control {
                        continue;
                    }
                    let value = record
                        .value
                        .as_deref()
                        .map(decode_value)
                        .unwrap_or_default();
                    polled.entry(p.partition_index).or_default().push(Read {
                        offset: record.offset,
                        value,
                    });
                    *position = record.offset + 1;
                }
            }
        }
        if !polled.is_empty() {
            self.history.events.push(Event {
                process: self.config.process,
                invoke_nanos: self.poll_invoked,
                complete_nanos: Some(now.mono_nanos),
                outcome: Some(Outcome::Ok),
                op: Op::Poll { reads: polled },
            });
        }
        all_ok
    }
}
