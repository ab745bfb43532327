//! A simulated consumer by assignment: learns the topic's partitions, then
//! long-polls every partition from offset 0 and records each record it reads.
//! It keeps reading for the whole run, so at the end it has seen everything
//! the broker exposes (the final read of a lost-write check).
//!
//! Each partition is read from its leader: one Fetch per broker for the
//! partitions it leads, carrying the leader epochs the consumer knows
//! (KIP-320). An answer that the leader moved or the epoch is stale, or a
//! lost connection, makes it refresh metadata and go on from the same
//! position at the new leader.

use std::collections::{BTreeMap, BTreeSet};

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::cluster::{Cluster, ClusterEvent, SessionId};
use crate::history::{Event, History, Op, Outcome, Read};
use crate::producer::decode_value;
use crate::session::{decode_body, SESSION_TIMER_LIMIT};

// SESSION_TIMER_LIMIT itself is the cluster's metadata timer.
const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const START_TIMER: TimerId = SESSION_TIMER_LIMIT + 2;
/// Backoff after a failed request to a broker, and between metadata
/// refreshes that left a partition without a leader.
const BACKOFF_MS: u64 = 100;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Errors that say this broker does not (or cannot) lead the partition now,
/// or that our leader epoch is not its: forget the leader and refresh
/// metadata, then go on from the same position.
const LEADER_GONE: &[i16] = &[
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    56, // KAFKA_STORAGE_ERROR
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub process: u32,
    /// One `host:port`, or a comma-separated list of them.
    pub bootstrap: String,
    pub topic: String,
    pub max_wait_ms: i32,
    pub request_timeout_ms: u64,
    /// Start consuming only at this simulated time (nanoseconds).
    pub start_at_nanos: u64,
    /// `isolation.level=read_committed`: fetches stop at the last stable
    /// offset, and "latest" is the last stable offset.
    pub read_committed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A fetch, sent at `invoked`.
    Fetch {
        invoked: u64,
    },
    ListOffsets,
}

/// A fetch or list-offsets request in flight.
#[derive(Debug, Clone)]
struct Request {
    session: SessionId,
    kind: Kind,
    partitions: Vec<i32>,
}

pub struct Consumer {
    config: ConsumerConfig,
    cluster: Cluster,
    /// partition -> next offset to read.
    positions: BTreeMap<i32, i64>,
    /// partition -> the high watermark last reported.
    high_watermarks: BTreeMap<i32, i64>,
    history: History,
    /// Partitions whose position must be reset to the log start.
    resets: Vec<i32>,
    /// Fetch and list-offsets requests in flight, by tag: at most one per
    /// broker, and a partition in at most one.
    requests: BTreeMap<u64, Request>,
    /// Brokers not to ask again before this time (after a failed request).
    backoff: BTreeMap<SessionId, u64>,
    next_tag: u64,
}

impl Consumer {
    /// `conn_base`: the first of the 1_000_000 connection ids this client
    /// may use (see `cluster::CONN_SPAN`).
    pub fn new(config: ConsumerConfig, conn_base: ConnId) -> Consumer {
        let cluster = Cluster::new(
            &config.bootstrap,
            &format!("consumer-{}", config.process),
            conn_base,
            config.request_timeout_ms,
            &config.topic,
            BACKOFF_MS,
        );
        Consumer {
            config,
            cluster,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            history: History::default(),
            resets: Vec::new(),
            requests: BTreeMap::new(),
            backoff: BTreeMap::new(),
            next_tag: 0,
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// What the consumer knows of the cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
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
                self.cluster.start(now, out);
                return;
            }
            Input::TimerFired { id: RETRY_TIMER } => {
                self.next_request(now, out);
                return;
            }
            _ => {}
        }
        for event in self.cluster.handle(now, &input, out) {
            match event {
                ClusterEvent::Connected { .. } => {}
                ClusterEvent::Metadata { .. } => {
                    for p in 0..self.cluster.partition_count().unwrap_or(0) {
                        self.positions.entry(p).or_insert(0);
                    }
                }
                ClusterEvent::Response {
                    session,
                    tag,
                    version,
                    body,
                    ..
                } => {
                    let Some(request) = self.requests.remove(&tag) else {
                        continue;
                    };
                    let ok = match request.kind {
                        Kind::Fetch { invoked } => {
                            self.on_fetch(now, invoked, decode_body(&body, version), out)
                        }
                        Kind::ListOffsets => {
                            self.on_list_offsets(now, decode_body(&body, version), out)
                        }
                    };
                    if !ok {
                        self.backoff.insert(session, now.after_millis(BACKOFF_MS));
                    }
                }
                ClusterEvent::Lost { in_flight, .. } => {
                    // Nothing was read; the cluster is learning the leaders again.
                    for tag in in_flight {
                        self.requests.remove(&tag);
                    }
                }
            }
        }
        self.next_request(now, out);
    }

    fn topic(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.config.topic.clone()))
    }

    /// Ask every leader that is free for what we need of it: the log start
    /// of partitions to reset, else records of the partitions it leads.
    fn next_request(&mut self, now: Now, out: &mut Vec<Output>) {
        let busy_sessions: BTreeSet<SessionId> =
            self.requests.values().map(|r| r.session).collect();
        let busy_partitions: BTreeSet<i32> = self
            .requests
            .values()
            .flat_map(|r| r.partitions.iter().copied())
            .collect();
        // session -> (partitions to reset, partitions to fetch)
        let mut work: BTreeMap<SessionId, (Vec<i32>, Vec<i32>)> = BTreeMap::new();
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        for p in partitions {
            if busy_partitions.contains(&p) {
                continue;
            }
            // Without a known leader, the partition waits for the metadata
            // refresh the cluster keeps making.
            let Some(session) = self.cluster.leader_session(p, out) else {
                continue;
            };
            let entry = work.entry(session).or_default();
            if self.resets.contains(&p) {
                entry.0.push(p);
            } else {
                entry.1.push(p);
            }
        }
        let mut wake: Option<u64> = None;
        for (session, (resets, fetches)) in work {
            if busy_sessions.contains(&session) || !self.cluster.session(session).is_ready() {
                continue;
            }
            if let Some(until) = self.backoff.get(&session).copied() {
                if until > now.mono_nanos {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    continue;
                }
                self.backoff.remove(&session);
            }
            if !resets.is_empty() {
                self.list_offsets(now, session, resets, out);
            } else if !fetches.is_empty() {
                self.fetch(now, session, fetches, out);
            }
        }
        if let Some(at) = wake {
            out.push(Output::SetTimer {
                id: RETRY_TIMER,
                at_nanos: at,
            });
        }
    }

    fn list_offsets(
        &mut self,
        now: Now,
        session: SessionId,
        partitions: Vec<i32>,
        out: &mut Vec<Output>,
    ) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(i8::from(self.config.read_committed))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(self.topic())
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(self.cluster.leader_epoch(*p))
                                .with_timestamp(-2)
                        })
                        .collect(),
                )]);
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.cluster.send(
            now,
            session,
            ApiKey::ListOffsets,
            5,
            &request,
            Some(tag),
            out,
        ) {
            self.requests.insert(
                tag,
                Request {
                    session,
                    kind: Kind::ListOffsets,
                    partitions,
                },
            );
        }
    }

    fn fetch(&mut self, now: Now, session: SessionId, partitions: Vec<i32>, out: &mut Vec<Output>) {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(i8::from(self.config.read_committed))
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(4 * 1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(self.topic())
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(self.cluster.leader_epoch(*p))
                                .with_fetch_offset(self.positions.get(p).copied().unwrap_or(0))
                                .with_partition_max_bytes(1024 * 1024)
                        })
                        .collect(),
                )]);
        let tag = self.next_tag;
        self.next_tag += 1;
        if self
            .cluster
            .send(now, session, ApiKey::Fetch, 11, &request, Some(tag), out)
        {
            self.requests.insert(
                tag,
                Request {
                    session,
                    kind: Kind::Fetch {
                        invoked: now.mono_nanos,
                    },
                    partitions,
                },
            );
        }
    }

    /// Whether every partition of the answer was reset.
    fn on_list_offsets(
        &mut self,
        now: Now,
        response: Option<ListOffsetsResponse>,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(topic) = response.and_then(|r| r.topics.into_iter().next()) else {
            return false;
        };
        let mut positions = BTreeMap::new();
        let mut all_ok = true;
        for p in topic.partitions {
            if p.error_code == 0 {
                self.positions.insert(p.partition_index, p.offset);
                self.resets.retain(|x| *x != p.partition_index);
                positions.insert(p.partition_index, p.offset);
            } else {
                all_ok = false;
                if LEADER_GONE.contains(&p.error_code) {
                    self.cluster.forget_leader(now, p.partition_index, out);
                }
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
        all_ok
    }

    /// Whether the fetch (sent at `invoked`) was answered without errors.
    fn on_fetch(
        &mut self,
        now: Now,
        invoked: u64,
        response: Option<FetchResponse>,
        out: &mut Vec<Output>,
    ) -> bool {
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
                    if LEADER_GONE.contains(&p.error_code) {
                        self.cluster.forget_leader(now, p.partition_index, out);
                    }
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
                invoke_nanos: invoked,
                complete_nanos: Some(now.mono_nanos),
                outcome: Some(Outcome::Ok),
                op: Op::Poll { reads: polled },
            });
        }
        all_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::CONN_SPAN;
    use crate::testwire::{at, connects, metadata, requests_of, Sent};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::MetadataResponse;

    const BASE: ConnId = 3_000_001;

    fn consumer(bootstrap: &str) -> Consumer {
        Consumer::new(
            ConsumerConfig {
                process: 3,
                bootstrap: bootstrap.to_string(),
                topic: "events".to_string(),
                max_wait_ms: 500,
                request_timeout_ms: 5_000,
                start_at_nanos: 0,
                read_committed: false,
            },
            BASE,
        )
    }

    fn step(c: &mut Consumer, millis: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        c.step(at(millis), input, &mut out);
        out
    }

    /// (partition, fetch offset, current leader epoch) of a fetch request.
    fn fetched(sent: &Sent) -> Vec<(i32, i64, i32)> {
        let request: FetchRequest = sent.decode();
        request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition, p.fetch_offset, p.current_leader_epoch))
            .collect()
    }

    /// A fetch answer: per partition (index, error, values from offset `from`).
    fn answer(sent: &Sent, parts: &[(i32, i16, i64, &[&str])]) -> Input {
        sent.answer(&FetchResponse::default().with_responses(
            vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("events")))
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, error, from, values)| {
                            let values: Vec<String> =
                                values.iter().map(|v| v.to_string()).collect();
                            let mut records = crate::producer::encode_records(&values, 10, 0);
                            if !values.is_empty() {
                                // Rebase the batch at `from`.
                                let mut b = records.to_vec();
                                b[0..8].copy_from_slice(&from.to_be_bytes());
                                records = b.into();
                            }
                            PartitionData::default()
                                .with_partition_index(*p)
                                .with_error_code(*error)
                                .with_high_watermark(from + values.len() as i64)
                                .with_records(Some(if values.is_empty() {
                                    Default::default()
                                } else {
                                    records
                                }))
                        })
                        .collect(),
                )],
        ))
    }

    fn learn(c: &mut Consumer, answer: MetadataResponse) -> Vec<Output> {
        let out = step(c, 0, Input::Start);
        assert_eq!(connects(&out)[0].0, BASE);
        let out = step(c, 1, Input::Connected { conn: BASE });
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1);
        step(c, 2, asked[0].answer(&answer))
    }

    #[test]
    fn fetches_are_grouped_by_leader_and_carry_leader_epochs() {
        let mut c = consumer("node-1:9092");
        let out = learn(
            &mut c,
            metadata(
                &[(1, "node-1:9092"), (2, "node-2:9092")],
                "events",
                &[(0, 1, 3), (1, 2, 4), (2, 1, 5)],
            ),
        );
        let to_node_1 = requests_of(&out, ApiKey::Fetch);
        assert_eq!(to_node_1.len(), 1);
        assert_eq!(to_node_1[0].conn, BASE);
        assert_eq!(fetched(&to_node_1[0]), [(0, 0, 3), (2, 0, 5)]);
        assert_eq!(
            connects(&out),
            [(BASE + CONN_SPAN, "node-2:9092".to_string())]
        );
        let out = step(
            &mut c,
            3,
            Input::Connected {
                conn: BASE + CONN_SPAN,
            },
        );
        let to_node_2 = requests_of(&out, ApiKey::Fetch);
        assert_eq!(to_node_2.len(), 1);
        assert_eq!(to_node_2[0].conn, BASE + CONN_SPAN);
        assert_eq!(fetched(&to_node_2[0]), [(1, 0, 4)]);
    }

    #[test]
    fn a_fenced_epoch_refreshes_metadata_and_goes_on_at_the_new_leader() {
        let mut c = consumer("node-1:9092");
        let out = learn(
            &mut c,
            metadata(
                &[(1, "node-1:9092"), (2, "node-2:9092")],
                "events",
                &[(0, 1, 3), (1, 2, 4)],
            ),
        );
        let to_node_1 = requests_of(&out, ApiKey::Fetch).remove(0);
        let node_2 = BASE + CONN_SPAN;
        let out = step(&mut c, 3, Input::Connected { conn: node_2 });
        let to_node_2 = requests_of(&out, ApiKey::Fetch).remove(0);
        // Node 2 serves two records of partition 1; the next fetch follows.
        let out = step(&mut c, 4, answer(&to_node_2, &[(1, 0, 0, &["0-1", "0-3"])]));
        let to_node_2 = requests_of(&out, ApiKey::Fetch).remove(0);
        assert_eq!(fetched(&to_node_2), [(1, 2, 4)]);
        // Fenced: node 2 is not partition 1's leader in epoch 4 any more.
        let out = step(&mut c, 5, answer(&to_node_2, &[(1, 74, 2, &[])]));
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1, "FENCED_LEADER_EPOCH refreshes metadata");
        assert_eq!(c.cluster().partition(1).unwrap().leader, None);
        assert_eq!(c.progress()[&1].0, 2, "the position stays");
        let out = step(
            &mut c,
            6,
            asked[0].answer(&metadata(
                &[(1, "node-1:9092"), (2, "node-2:9092")],
                "events",
                &[(0, 1, 3), (1, 1, 6)],
            )),
        );
        // Node 1 is busy with partition 0's fetch: partition 1 waits for it.
        assert!(requests_of(&out, ApiKey::Fetch).is_empty());
        let out = step(&mut c, 7, answer(&to_node_1, &[(0, 0, 0, &["0-0"])]));
        let next = requests_of(&out, ApiKey::Fetch);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].conn, BASE);
        assert_eq!(fetched(&next[0]), [(0, 1, 3), (1, 2, 6)]);
        // Every record was recorded once, by partition, as polls.
        let reads: Vec<(i32, i64)> = c
            .history()
            .events
            .iter()
            .flat_map(|e| match &e.op {
                Op::Poll { reads } => reads
                    .iter()
                    .flat_map(|(p, rs)| rs.iter().map(|r| (*p, r.offset)))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(reads, [(1, 0), (1, 1), (0, 0)]);
        // Losing node 1's connection forgets its leaders and asks node 2.
        let out = step(&mut c, 8, Input::Closed { conn: BASE });
        let asked = requests_of(&out, ApiKey::Metadata);
        assert_eq!(asked.len(), 1, "a lost connection refreshes metadata");
        assert_eq!(asked[0].conn, node_2);
        assert_eq!(c.cluster().partition(0).unwrap().leader, None);
        assert_eq!(c.cluster().partition(1).unwrap().leader, None);
    }

    #[test]
    fn a_single_bootstrap_address_fetches_everything_on_one_connection() {
        let mut c = consumer("node-0:9092");
        let out = learn(
            &mut c,
            metadata(&[(0, "node-0:9092")], "events", &[(0, 0, 0), (1, 0, 0)]),
        );
        assert!(connects(&out).is_empty());
        let sent = requests_of(&out, ApiKey::Fetch);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].conn, BASE);
        assert_eq!(fetched(&sent[0]), [(0, 0, 0), (1, 0, 0)]);
        // OFFSET_OUT_OF_RANGE resets through ListOffsets, as before.
        let out = step(
            &mut c,
            5,
            answer(&sent[0], &[(0, 1, 0, &[]), (1, 0, 0, &["0-1"])]),
        );
        let list = requests_of(&out, ApiKey::ListOffsets);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].conn, BASE);
        assert!(requests_of(&out, ApiKey::Fetch).is_empty());
    }

    #[test]
    fn stale_metadata_after_a_fence_does_not_bring_the_old_leader_back() {
        let mut c = consumer("node-1:9092");
        let brokers = [(1, "node-1:9092"), (2, "node-2:9092")];
        let out = learn(&mut c, metadata(&brokers, "events", &[(0, 1, 3)]));
        let sent = requests_of(&out, ApiKey::Fetch).remove(0);
        assert_eq!(fetched(&sent), [(0, 0, 3)]);
        // Node 1 was deposed: epoch 3 is fenced.
        let out = step(&mut c, 3, answer(&sent, &[(0, 74, 0, &[])]));
        let asked = requests_of(&out, ApiKey::Metadata).remove(0);
        // A lagging broker still names node 1 in epoch 3... then 2: taken
        // only once the epoch is not older than one already seen (4, from
        // a third answer).
        step(
            &mut c,
            4,
            asked.answer(&metadata(&brokers, "events", &[(0, -1, 4)])),
        );
        assert_eq!(c.cluster().partition(0).unwrap().leader, None);
        assert_eq!(c.cluster().leader_epoch(0), 4);
        let out = step(
            &mut c,
            104,
            Input::TimerFired {
                id: crate::cluster::METADATA_TIMER,
            },
        );
        let asked = requests_of(&out, ApiKey::Metadata).remove(0);
        let out = step(
            &mut c,
            105,
            asked.answer(&metadata(&brokers, "events", &[(0, 1, 3)])),
        );
        assert_eq!(
            c.cluster().partition(0).unwrap().leader,
            None,
            "an older epoch's leader is not taken"
        );
        assert!(requests_of(&out, ApiKey::Fetch).is_empty());
        let out = step(
            &mut c,
            205,
            Input::TimerFired {
                id: crate::cluster::METADATA_TIMER,
            },
        );
        let asked = requests_of(&out, ApiKey::Metadata).remove(0);
        step(
            &mut c,
            206,
            asked.answer(&metadata(&brokers, "events", &[(0, 2, 4)])),
        );
        assert_eq!(c.cluster().partition(0).unwrap().leader, Some(2));
        let out = step(
            &mut c,
            207,
            Input::Connected {
                conn: BASE + CONN_SPAN,
            },
        );
        let next = requests_of(&out, ApiKey::Fetch);
        assert_eq!(next.len(), 1);
        assert_eq!(fetched(&next[0]), [(0, 0, 4)], "the new leader, epoch 4");
    }

    #[test]
    fn unknown_leader_epoch_and_list_offsets_carry_the_epoch_and_refresh() {
        let mut c = consumer("node-1:9092");
        let brokers = [(1, "node-1:9092")];
        let out = learn(&mut c, metadata(&brokers, "events", &[(0, 1, 7)]));
        let sent = requests_of(&out, ApiKey::Fetch).remove(0);
        // The leader has not learned epoch 7 yet.
        let out = step(&mut c, 3, answer(&sent, &[(0, 75, 0, &[])]));
        assert_eq!(requests_of(&out, ApiKey::Metadata).len(), 1);
        assert_eq!(c.cluster().partition(0).unwrap().leader, None);
        // Out of range: the reset asks ListOffsets with the epoch it knows.
        let asked = requests_of(&out, ApiKey::Metadata).remove(0);
        step(
            &mut c,
            4,
            asked.answer(&metadata(&brokers, "events", &[(0, 1, 7)])),
        );
        // After the broker's backoff, the fetch goes again with epoch 7.
        let out = step(&mut c, 104, Input::TimerFired { id: RETRY_TIMER });
        let sent = requests_of(&out, ApiKey::Fetch).remove(0);
        assert_eq!(fetched(&sent), [(0, 0, 7)]);
        let out = step(&mut c, 200, answer(&sent, &[(0, 1, 0, &[])]));
        let out = if requests_of(&out, ApiKey::ListOffsets).is_empty() {
            step(&mut c, 400, Input::TimerFired { id: RETRY_TIMER })
        } else {
            out
        };
        let list = requests_of(&out, ApiKey::ListOffsets);
        assert_eq!(list.len(), 1);
        let request: ListOffsetsRequest = list[0].decode();
        assert_eq!(request.topics[0].partitions[0].current_leader_epoch, 7);
    }
}
