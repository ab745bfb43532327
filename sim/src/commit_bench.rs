//! `stormlog bench --real --offset-commit`: OffsetCommit throughput and
//! latency against a real broker over TCP.
//!
//! **Real-world code, not simulation** (like [`crate::real_bench`]): tokio,
//! real sockets and `std::time`, never called from the simulator.
//!
//! Each of `connections` connections commits for its own group (a "simple"
//! commit: generation -1, no member, as `assign()` consumers and admin tools
//! send), one offset per partition of the bench topic, closed-loop with
//! `inflight` requests pipelined. A commit's latency runs from its send to
//! its answer; it is acknowledged only once written to `__consumer_offsets`
//! and replicated, so this measures the coordinator's write path.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorResponse, GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::time::Instant;

use crate::bench::{latency_ms, new_histogram, record_nanos, BenchConfig};
use crate::real_bench::{connect, frame, prepare_topic, read_response, round_trip};

const FIND_COORDINATOR_VERSION: i16 = 3;
const OFFSET_COMMIT_VERSION: i16 = 8;
/// Requests pipelined per connection.
const INFLIGHT: usize = 8;
const COORDINATOR_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one OffsetCommit run measured.
#[derive(Debug, Clone)]
pub struct CommitBenchResult {
    pub connections: u32,
    pub partitions_per_commit: i32,
    pub seconds: f64,
    pub commits: u64,
    pub errors: u64,
    pub commits_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for CommitBenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OffsetCommit: {} connection(s) x {} in flight, {} partition offsets per commit, {:.1} s\n  \
             {} commits ({} failed), {:.0} commits/s ({:.0} offsets/s)\n  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.connections,
            INFLIGHT,
            self.partitions_per_commit,
            self.seconds,
            self.commits,
            self.errors,
            self.commits_per_sec,
            self.commits_per_sec * self.partitions_per_commit as f64,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

pub fn run_commit_bench(
    bootstrap: &str,
    config: &BenchConfig,
) -> anyhow::Result<CommitBenchResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(bootstrap, config))
}

fn group_of(connection: u32) -> String {
    format!("stormlog-bench-commit-{connection}")
}

/// Wait until the broker names a coordinator for `group` (the first ask
/// creates `__consumer_offsets`); returns its `host:port`.
async fn coordinator_for(bootstrap: &str, group: &str) -> anyhow::Result<String> {
    let mut stream = connect(bootstrap).await?;
    let started = Instant::now();
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let response: FindCoordinatorResponse = round_trip(
            &mut stream,
            ApiKey::FindCoordinator,
            FIND_COORDINATOR_VERSION,
            &request,
        )
        .await?;
        if response.error_code == 0 {
            return Ok(format!("{}:{}", response.host, response.port));
        }
        if started.elapsed() > COORDINATOR_READY_TIMEOUT {
            bail!(
                "no group coordinator after {} s: error {} {:?}",
                COORDINATOR_READY_TIMEOUT.as_secs(),
                response.error_code,
                response.error_message
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn commit_request(group: &str, topic: &str, partitions: i32, offset: i64) -> OffsetCommitRequest {
    let parts = (0..partitions)
        .map(|p| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(parts)])
}

async fn run(bootstrap: &str, config: &BenchConfig) -> anyhow::Result<CommitBenchResult> {
    let partitions = prepare_topic(bootstrap, config).await?;
    let measured = Duration::from_millis(config.step_ms.max(1));
    let warmup = Duration::from_millis(config.warmup_ms);
    let mut tasks = Vec::new();
    for c in 0..config.producers.max(1) {
        let group = group_of(c);
        let address = coordinator_for(bootstrap, &group).await?;
        let topic = config.topic.clone();
        tasks.push(tokio::spawn(async move {
            one_connection(&address, &group, &topic, partitions, warmup, measured).await
        }));
    }
    let mut hist = new_histogram();
    let (mut commits, mut errors) = (0u64, 0u64);
    for task in tasks {
        let (h, c, e) = task
            .await
            .map_err(|e| anyhow!("bench task failed: {e}"))??;
        hist.add(&h).map_err(|e| anyhow!("{e}"))?;
        commits += c;
        errors += e;
    }
    let seconds = measured.as_secs_f64();
    let latency = latency_ms(&hist);
    Ok(CommitBenchResult {
        connections: config.producers.max(1),
        partitions_per_commit: partitions,
        seconds,
        commits,
        errors,
        commits_per_sec: commits as f64 / seconds,
        p50_ms: latency.p50,
        p99_ms: latency.p99,
        max_ms: latency.max,
    })
}

/// Commit closed-loop with [`INFLIGHT`] requests pipelined; returns the
/// latency histogram of the measured window, its commits and its failures.
async fn one_connection(
    address: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    warmup: Duration,
    measured: Duration,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, u64)> {
    let stream = connect(address).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut hist = new_histogram();
    let (mut commits, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    let (begin, end) = (start + warmup, start + warmup + measured);
    let mut sent_at = std::collections::VecDeque::new();
    let mut correlation = 0i32;
    let mut offset = 0i64;
    loop {
        let now = Instant::now();
        while sent_at.len() < INFLIGHT && now < end {
            offset += 1;
            correlation += 1;
            let request = commit_request(group, topic, partitions, offset);
            writer
                .write_all(&frame(
                    ApiKey::OffsetCommit,
                    OFFSET_COMMIT_VERSION,
                    correlation,
                    &request,
                )?)
                .await?;
            sent_at.push_back(Instant::now());
        }
        let Some(sent) = sent_at.pop_front() else {
            break;
        };
        let (_, mut body) = tokio::time::timeout(
            Duration::from_secs(30),
            read_response(&mut reader, ApiKey::OffsetCommit, OFFSET_COMMIT_VERSION),
        )
        .await
        .map_err(|_| anyhow!("no OffsetCommit answer within 30 s"))??;
        let answered = Instant::now();
        let response = OffsetCommitResponse::decode(&mut body, OFFSET_COMMIT_VERSION)
            .map_err(|e| anyhow!("unreadable OffsetCommit response: {e}"))?;
        let failed = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0);
        if sent >= begin && sent < end {
            if failed {
                errors += 1;
            } else {
                commits += 1;
                record_nanos(&mut hist, (answered - sent).as_nanos() as u64);
            }
        }
    }
    Ok((hist, commits, errors))
}
