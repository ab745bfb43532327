//! `stormlog bench --real --bootstrap HOST:PORT`: a built-in load generator
//! that speaks the Kafka protocol over real TCP to a real broker (Stormlog's
//! `stormlog-broker`, or any Kafka-compatible broker), with the workload and
//! the result table of the simulated bench ([`crate::bench`]).
//!
//! **This is real-world code, not simulation.** Like the broker's tokio shell
//! (`broker::runtime`), it is the one place in the `sim` crate allowed to use
//! tokio, `std::time` and real sockets; nothing here is deterministic and
//! nothing in the simulator may call into it.
//!
//! What it does, per step (one target rate):
//!
//! - `producers` connections (at least 1) share the target rate evenly. Each
//!   generates records on a fixed schedule, one every `1 / rate_per_conn`
//!   seconds (connections staggered), and gathers them into batches for one
//!   partition at a time (round robin, like Kafka's sticky partitioner): a
//!   batch closes when it holds `batch_records` records or when `linger_ms`
//!   has passed since its first record, and its Produce request (acks=all,
//!   v9) is sent at that moment *on the schedule*, open-loop: requests are
//!   pipelined on the connection whatever is outstanding.
//! - Latency of each record runs from its **intended** time on the schedule
//!   (not from when the request actually went out) to the response, so a
//!   broker that stalls the sender cannot hide its stall (no coordinated
//!   omission). How late requests actually left is reported as `delay99`.
//! - Only records whose intended time falls after the warm-up and within the
//!   measured window count. The load goes on for `drain_ms` after the window,
//!   then the step waits at most `drain_ms` more for responses: the step's
//!   time limit. Records with no answer by then are `unacked` and enter the
//!   histogram with their censored latency (deadline - intended).
//! - Timers are tokio's (millisecond granularity): a request may leave up to
//!   about 1 ms after its intended time, and that counts in its latency.
//!
//! Before the first step the topic is created (CreateTopics, `partitions`
//! partitions, replication factor 1; TOPIC_ALREADY_EXISTS is fine) and the
//! bench waits until Metadata shows every partition with a leader. All
//! connections go to the bootstrap address: this assumes a single broker.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use broker::log::batch;
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::bench::{latency_ms, new_histogram, record_nanos, BenchConfig, BenchStepResult};

const PRODUCE_VERSION: i16 = 9;
const METADATA_VERSION: i16 = 9;
const CREATE_TOPICS_VERSION: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the topic's partitions to all have a leader.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Run every step of `config` against the broker at `bootstrap`
/// (`HOST:PORT`) on a tokio runtime of its own. Must not be called from
/// inside a tokio runtime; use [`run_real_bench_async`] there.
pub fn run_real_bench(
    bootstrap: &str,
    config: &BenchConfig,
) -> anyhow::Result<Vec<BenchStepResult>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run_real_bench_async(bootstrap, config))
}

/// [`run_real_bench`] on the caller's tokio runtime.
pub async fn run_real_bench_async(
    bootstrap: &str,
    config: &BenchConfig,
) -> anyhow::Result<Vec<BenchStepResult>> {
    if config.rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
        bail!("every target rate must be above 0 (got {:?})", config.rates);
    }
    let partitions = prepare_topic(bootstrap, config).await?;
    let mut steps = Vec::new();
    for &rate in &config.rates {
        steps.push(run_step(bootstrap, config, partitions, rate).await?);
    }
    Ok(steps)
}

pub(crate) async fn connect(bootstrap: &str) -> anyhow::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(bootstrap))
        .await
        .map_err(|_| {
            anyhow!(
                "cannot connect to the broker at {bootstrap}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("cannot connect to the broker at {bootstrap} (is it running?)"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request frame: length prefix, header, body.
pub(crate) fn frame<T: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("stormlog-bench")));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, T::header_version(version))
        .map_err(|e| anyhow!("encoding a {api_key:?} header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| anyhow!("encoding a {api_key:?} v{version} request: {e}"))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Read one response frame; returns (correlation id, body after the header).
pub(crate) async fn read_response<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    api_key: ApiKey,
    version: i16,
) -> std::io::Result<(i32, Bytes)> {
    let len = reader.read_i32().await?;
    if len < 4 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("response frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok((header.correlation_id, body))
}

/// One request, one response, on its own connection.
pub(crate) async fn round_trip<Req: Encodable + HeaderVersion, Resp: Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    request: &Req,
) -> anyhow::Result<Resp> {
    stream
        .write_all(&frame(api_key, version, 1, request)?)
        .await?;
    let (_, mut body) = tokio::time::timeout(
        Duration::from_secs(30),
        read_response(stream, api_key, version),
    )
    .await
    .map_err(|_| anyhow!("no {api_key:?} response within 30 s"))??;
    Resp::decode(&mut body, version).map_err(|e| anyhow!("unreadable {api_key:?} response: {e}"))
}

/// Create the topic (or accept that it exists) and wait until every
/// partition has a leader; returns the partition count.
pub(crate) async fn prepare_topic(bootstrap: &str, config: &BenchConfig) -> anyhow::Result<i32> {
    let mut stream = connect(bootstrap).await?;
    let name = TopicName(StrBytes::from_string(config.topic.clone()));
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(config.request_timeout_ms as i32)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name.clone())
            .with_num_partitions(config.partitions.max(1) as i32)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse = round_trip(
        &mut stream,
        ApiKey::CreateTopics,
        CREATE_TOPICS_VERSION,
        &create,
    )
    .await?;
    let topic = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("CreateTopics answered without the topic"))?;
    if topic.error_code != 0 && topic.error_code != TOPIC_ALREADY_EXISTS {
        bail!(
            "cannot create topic {}: error {} {:?}",
            config.topic,
            topic.error_code,
            topic.error_message
        );
    }
    let metadata = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name))
        ]));
    let started = Instant::now();
    loop {
        let response: MetadataResponse =
            round_trip(&mut stream, ApiKey::Metadata, METADATA_VERSION, &metadata).await?;
        if let Some(t) = response.topics.first() {
            let ready = t.error_code == 0
                && !t.partitions.is_empty()
                && t.partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader_id.0 >= 0);
            if ready {
                let n = t.partitions.len() as i32;
                if n != config.partitions as i32 {
                    eprintln!(
                        "bench: topic {} already exists with {n} partitions (asked for {}); using {n}",
                        config.topic, config.partitions
                    );
                }
                return Ok(n);
            }
        }
        if started.elapsed() > TOPIC_READY_TIMEOUT {
            bail!(
                "topic {} has partitions without a leader after {} s",
                config.topic,
                TOPIC_READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fixed schedule of one connection in one step. Times are nanoseconds
/// from the step's start.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Intended time of record 0.
    pub offset_ns: f64,
    /// Time between two records.
    pub record_ns: f64,
    /// Records per request.
    pub batch: u64,
    /// The batch fills up before the linger passes (it is sent when full).
    pub full: bool,
    /// Linger (when the batch closes before it is full).
    pub linger_ns: f64,
    /// Number of requests.
    pub requests: u64,
}

impl Schedule {
    /// Connection `conn` of `conns` sharing `rate` records/s; records are
    /// generated until `stop_ns`.
    pub fn new(
        rate: f64,
        conn: u32,
        conns: u32,
        batch_records: usize,
        linger_ms: u64,
        stop_ns: u64,
    ) -> Schedule {
        let conns = conns.max(1);
        let record_ns = 1e9 * conns as f64 / rate;
        let linger_ns = linger_ms as f64 * 1e6;
        // Records arriving within the linger after the first join its batch.
        let batch =
            ((linger_ns / record_ns).floor() as u64 + 1).clamp(1, batch_records.max(1) as u64);
        let offset_ns = record_ns * conn as f64 / conns as f64;
        let mut s = Schedule {
            offset_ns,
            record_ns,
            batch,
            full: batch == batch_records.max(1) as u64,
            linger_ns,
            requests: 0,
        };
        let records = ((stop_ns as f64 - offset_ns) / record_ns).ceil().max(0.0) as u64;
        s.requests = records.div_ceil(batch);
        s
    }

    /// Intended time of record `i`.
    pub fn record_at(&self, i: u64) -> u64 {
        (self.offset_ns + i as f64 * self.record_ns) as u64
    }

    /// When request `k` is due: when its batch is full, or when the linger
    /// since its first record has passed.
    pub fn send_at(&self, k: u64) -> u64 {
        let first = k * self.batch;
        if self.full {
            self.record_at(first + self.batch - 1)
        } else {
            (self.offset_ns + first as f64 * self.record_ns + self.linger_ns) as u64
        }
    }
}

/// What happened to one connection's requests: per request, when it was
/// sent and when it was answered (nanoseconds from the step start) and
/// whether the answer was ok.
#[derive(Debug, Clone, Default)]
pub struct ConnOutcome {
    pub sent_at: Vec<Option<u64>>,
    pub answered: Vec<Option<(u64, bool)>>,
}

/// Turn schedules and outcomes into a step result (a pure function).
pub fn summarize(
    schedules: &[Schedule],
    outcomes: &[ConnOutcome],
    window: (u64, u64),
    deadline_ns: u64,
) -> BenchStepResult {
    let (start, end) = window;
    let mut latency: Histogram<u64> = new_histogram();
    let mut delay: Histogram<u64> = new_histogram();
    let (mut records, mut acked, mut errors, mut unacked, mut acked_in_window) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (s, o) in schedules.iter().zip(outcomes) {
        for k in 0..s.requests {
            let sent = o.sent_at.get(k as usize).copied().flatten();
            let answer = o.answered.get(k as usize).copied().flatten();
            for i in k * s.batch..(k + 1) * s.batch {
                let at = s.record_at(i);
                let ok_at = match answer {
                    Some((t, true)) => Some(t),
                    _ => None,
                };
                if let Some(t) = ok_at {
                    if (start..end).contains(&t) {
                        acked_in_window += 1;
                    }
                }
                if !(start..end).contains(&at) {
                    continue;
                }
                records += 1;
                if let Some(t) = sent {
                    record_nanos(&mut delay, t.saturating_sub(at));
                }
                match answer {
                    Some((t, true)) => {
                        acked += 1;
                        record_nanos(&mut latency, t.saturating_sub(at));
                    }
                    Some((_, false)) => errors += 1,
                    None => {
                        unacked += 1;
                        record_nanos(&mut latency, deadline_ns.saturating_sub(at));
                    }
                }
            }
        }
    }
    let window_s = (end - start) as f64 / 1e9;
    BenchStepResult {
        mode: "real".into(),
        target_rate: 0.0,
        achieved_rate: acked_in_window as f64 / window_s.max(1e-9),
        window_s,
        records,
        acked,
        errors,
        unacked,
        latency_ms: latency_ms(&latency),
        send_delay_p99_ms: if delay.is_empty() {
            0.0
        } else {
            delay.value_at_quantile(0.99) as f64 / 1_000.0
        },
        events: 0,
        wall_s: 0.0,
    }
}

/// One record batch of `count` records of `size` bytes (encoded once per step
/// and reused by every request: the broker does not care that values repeat).
/// One batch whatever the count, as clients send it (the encoder keeps
/// records together while offset − sequence is constant); without a
/// producer (ids, epoch, sequence -1), or stamped per request with
/// [`batch::set_producer`] when idempotent.
fn encode_batch(count: u64, size: usize) -> anyhow::Result<Bytes> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 0,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp,
            key: None,
            value: Some(Bytes::from(vec![b'x'; size])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| anyhow!("encoding a record batch: {e}"))?;
    batch::set_producer(&mut buf, -1, -1, -1);
    Ok(buf.freeze())
}

async fn run_step(
    bootstrap: &str,
    config: &BenchConfig,
    partitions: i32,
    rate: f64,
) -> anyhow::Result<BenchStepResult> {
    let wall = std::time::Instant::now();
    let conns = config.producers.max(1);
    let window_start = config.warmup_ms * 1_000_000;
    let window_end = window_start + config.step_ms * 1_000_000;
    let stop = window_end + config.drain_ms * 1_000_000;
    let deadline = stop + config.drain_ms * 1_000_000;
    let schedules: Vec<Schedule> = (0..conns)
        .map(|c| Schedule::new(rate, c, conns, config.batch_records, config.linger_ms, stop))
        .collect();
    let mut streams = Vec::new();
    let mut producers = Vec::new();
    for _ in 0..conns {
        let mut stream = connect(bootstrap).await?;
        producers.push(if config.idempotent {
            Some(init_producer_id(&mut stream).await?)
        } else {
            None
        });
        streams.push(stream);
    }
    // Batches by size (all connections use the same batch size).
    let records = encode_batch(schedules[0].batch, config.message_bytes)?;
    let topic = TopicName(StrBytes::from_string(config.topic.clone()));
    // The schedule starts a little after the connections are up.
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for (c, ((stream, schedule), producer)) in streams
        .into_iter()
        .zip(schedules.iter().cloned())
        .zip(producers)
        .enumerate()
    {
        let (read, write) = stream.into_split();
        let schedule = Arc::new(schedule);
        let writer = tokio::spawn(write_loop(
            write,
            schedule.clone(),
            t0,
            deadline,
            c as u32,
            conns,
            partitions,
            topic.clone(),
            records.clone(),
            config.request_timeout_ms,
            producer,
        ));
        let reader = tokio::spawn(read_loop(read, schedule.requests, t0, deadline));
        tasks.push((writer, reader));
    }
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    for (c, (writer, reader)) in tasks.into_iter().enumerate() {
        // The write half stays open until the reader is done: dropping it
        // half-closes the socket, and the broker then closes the connection
        // before the last responses are out.
        let (sent_at, write_error, write_half) = writer.await.context("writer task panicked")?;
        let (answered, read_error) = reader.await.context("reader task panicked")?;
        drop(write_half);
        for e in [write_error, read_error].into_iter().flatten() {
            problems.push(format!("connection {c}: {e}"));
        }
        outcomes.push(ConnOutcome { sent_at, answered });
    }
    for p in &problems {
        eprintln!("bench: {rate}/s: {p}");
    }
    let mut result = summarize(&schedules, &outcomes, (window_start, window_end), deadline);
    if result.acked == 0 && !problems.is_empty() {
        bail!(
            "step at {rate} records/s: nothing acknowledged; {}",
            problems.join("; ")
        );
    }
    result.target_rate = rate;
    result.wall_s = wall.elapsed().as_secs_f64();
    Ok(result)
}

/// Send the connection's requests on schedule; returns when each was sent
/// (and the write half, which must outlive the reader).
#[allow(clippy::too_many_arguments)]
async fn write_loop(
    mut write: OwnedWriteHalf,
    schedule: Arc<Schedule>,
    t0: Instant,
    deadline: u64,
    conn: u32,
    conns: u32,
    partitions: i32,
    topic: TopicName,
    records: Bytes,
    request_timeout_ms: u64,
    producer: Option<(i64, i16)>,
) -> (Vec<Option<u64>>, Option<String>, OwnedWriteHalf) {
    let mut sent_at = vec![None; schedule.requests as usize];
    // Idempotent: the next sequence of each partition.
    let mut next_seq = vec![0i32; partitions.max(1) as usize];
    let batch_records = batch::parse_header(&records).map_or(0, |h| h.record_count);
    for k in 0..schedule.requests {
        let due = schedule.send_at(k);
        tokio::time::sleep_until(t0 + Duration::from_nanos(due)).await;
        let now = t0.elapsed().as_nanos() as u64;
        if now >= deadline {
            let why = format!("sender behind: stopped at request {k}");
            return (sent_at, Some(why), write);
        }
        // Round robin over partitions, connections interleaved.
        let partition = ((conn as u64 + k * conns as u64) % partitions.max(1) as u64) as i32;
        // Stamped per request in both modes, so that the client does the
        // same work (a copy and a CRC) with idempotence on and off.
        let mut stamped = BytesMut::from(&records[..]);
        match producer {
            Some((id, epoch)) => {
                let seq = &mut next_seq[partition as usize];
                batch::set_producer(&mut stamped, id, epoch, *seq);
                *seq = seq.wrapping_add(batch_records) & i32::MAX;
            }
            None => batch::set_producer(&mut stamped, -1, -1, -1),
        }
        let records = stamped.freeze();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(request_timeout_ms as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let bytes = match frame(ApiKey::Produce, PRODUCE_VERSION, k as i32, &request) {
            Ok(b) => b,
            Err(e) => return (sent_at, Some(e.to_string()), write),
        };
        sent_at[k as usize] = Some(now);
        if let Err(e) = write.write_all(&bytes).await {
            sent_at[k as usize] = None;
            return (sent_at, Some(format!("write failed: {e}")), write);
        }
    }
    (sent_at, None, write)
}

/// InitProducerId on a fresh connection: (producer id, epoch).
async fn init_producer_id(stream: &mut TcpStream) -> anyhow::Result<(i64, i16)> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse =
        round_trip(stream, ApiKey::InitProducerId, 4, &request).await?;
    if response.error_code != 0 {
        bail!("InitProducerId answered error {}", response.error_code);
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

/// Read responses until every request is answered or the deadline passes.
async fn read_loop(
    read: tokio::net::tcp::OwnedReadHalf,
    requests: u64,
    t0: Instant,
    deadline: u64,
) -> (Vec<Option<(u64, bool)>>, Option<String>) {
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut answered = vec![None; requests as usize];
    let mut count = 0u64;
    let until = t0 + Duration::from_nanos(deadline);
    while count < requests {
        let next = tokio::time::timeout_at(
            until,
            read_response(&mut reader, ApiKey::Produce, PRODUCE_VERSION),
        )
        .await;
        let now = t0.elapsed().as_nanos() as u64;
        let (correlation, mut body) = match next {
            Err(_) => {
                return (
                    answered,
                    Some(format!(
                        "{} requests unanswered at the step's time limit",
                        requests - count
                    )),
                )
            }
            Ok(Err(e)) => return (answered, Some(format!("read failed: {e}"))),
            Ok(Ok(r)) => r,
        };
        let ok = ProduceResponse::decode(&mut body, PRODUCE_VERSION)
            .map(|r| {
                r.responses
                    .iter()
                    .flat_map(|t| t.partition_responses.iter())
                    .all(|p| p.error_code == 0)
            })
            .unwrap_or(false);
        match answered.get_mut(correlation as usize) {
            Some(slot @ None) => {
                *slot = Some((now, ok));
                count += 1;
            }
            _ => {
                return (
                    answered,
                    Some(format!("unexpected correlation id {correlation}")),
                )
            }
        }
    }
    (answered, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_batch_by_linger_or_size() {
        // 1000/s on one connection, linger 1 ms: records at 0, 1, 2... ms;
        // two records per request, sent 1 ms after the first.
        let s = Schedule::new(1_000.0, 0, 1, 16, 1, 10_000_000);
        assert_eq!(s.batch, 2);
        assert_eq!(s.requests, 5);
        assert_eq!(s.send_at(0), 1_000_000);
        assert_eq!(s.send_at(1), 3_000_000);
        // 100k/s: the batch fills (16 records) before the linger.
        let s = Schedule::new(100_000.0, 0, 1, 16, 1, 1_000_000);
        assert_eq!(s.batch, 16);
        assert_eq!(s.send_at(0), s.record_at(15));
        // Two connections are staggered by half a record interval.
        let s = Schedule::new(1_000.0, 1, 2, 1, 0, 10_000_000);
        assert_eq!(s.record_at(0), 1_000_000);
        assert_eq!(s.send_at(0), 1_000_000);
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let s = Schedule::new(1_000.0, 0, 1, 1, 0, 4_000_000);
        assert_eq!(s.requests, 4);
        // Request 1 (intended at 1 ms) left at 2.5 ms and was answered at 3 ms.
        let o = ConnOutcome {
            sent_at: vec![Some(0), Some(2_500_000), Some(2_600_000), None],
            answered: vec![
                Some((500_000, true)),
                Some((3_000_000, true)),
                Some((3_100_000, false)),
                None,
            ],
        };
        let r = summarize(&[s], &[o], (1_000_000, 4_000_000), 10_000_000);
        assert_eq!((r.records, r.acked, r.errors, r.unacked), (3, 1, 1, 1));
        // 2 ms for record 1, 7 ms (censored at the deadline) for record 3.
        assert!((r.latency_ms.p50 - 2.0).abs() < 0.01, "{r:?}");
        assert!((r.latency_ms.max - 7.0).abs() < 0.01, "{r:?}");
    }
}
