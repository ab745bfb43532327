//! CreateTopics latency against a running cluster: creates N topics one at a
//! time (each request waits for its answer) and prints the round-trip
//! percentiles in milliseconds.
//!
//! ```sh
//! ci/cluster start
//! cargo run --release -p broker --example create_topics_latency -- localhost:19092 --topics 200 --rf 3
//! ```
//!
//! The request goes to the bootstrap broker, which forwards it to the active
//! controller unless it is that controller (`--to-controller` sends straight
//! to the controller, found with DescribeQuorum). Topic names get a per-run
//! prefix, so runs can be repeated against the same cluster.

#[path = "../tests/support/kclient.rs"]
mod kclient;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use kclient::{quorum_leader, Client, NONE};

#[derive(Debug, Parser)]
#[command(about = "CreateTopics round-trip latency against a running cluster")]
struct Args {
    /// A broker to send the requests to, HOST:PORT (the first of a
    /// comma-separated list is used).
    #[arg(default_value = "localhost:19092")]
    bootstrap: String,
    /// How many topics to create.
    #[arg(long, default_value_t = 200)]
    topics: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor.
    #[arg(long, default_value_t = 3)]
    rf: i16,
    /// Topic name prefix (a per-run suffix is added).
    #[arg(long, default_value = "latency")]
    prefix: String,
    /// Send to the active controller instead of the bootstrap broker.
    #[arg(long)]
    to_controller: bool,
    /// Per-request timeout in seconds (also the CreateTopics timeout_ms).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(args: Args) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let bootstrap = args
        .bootstrap
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut client = Client::connect(&bootstrap, timeout).await?;
    let metadata = client.metadata(Some(&[])).await.context("Metadata")?;
    let brokers: Vec<String> = metadata
        .brokers
        .iter()
        .map(|b| format!("{}@{}:{}", b.node_id.0, b.host.as_str(), b.port))
        .collect();
    let quorum = client.describe_quorum().await.context("DescribeQuorum")?;
    let leader = quorum_leader(&quorum);
    println!(
        "cluster {}: brokers [{}], quorum leader {:?} (id, epoch), Metadata controller {}",
        metadata
            .cluster_id
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("?"),
        brokers.join(", "),
        leader,
        metadata.controller_id.0
    );
    if args.to_controller {
        let Some((id, _)) = leader else {
            bail!("no active controller known");
        };
        let Some(b) = metadata.brokers.iter().find(|b| b.node_id.0 == id) else {
            bail!("the controller, node {id}, is not a listed broker");
        };
        client = Client::connect(&format!("{}:{}", b.host.as_str(), b.port), timeout).await?;
    }
    println!(
        "creating {} topics ({} partitions, RF {}) one at a time through {}",
        args.topics,
        args.partitions,
        args.rf,
        client.addr()
    );
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() % 1_000_000_000;
    let mut took = Vec::with_capacity(args.topics);
    let mut failures = Vec::new();
    let started = Instant::now();
    for i in 0..args.topics {
        let name = format!("{}-{run_id}-{i}", args.prefix);
        let start = Instant::now();
        let result = client
            .create_topic(
                &name,
                args.partitions,
                args.rf,
                (timeout.as_millis() as i32).max(1),
            )
            .await;
        let rtt = start.elapsed();
        match result {
            Ok((NONE, _)) => took.push(rtt),
            Ok((code, message)) => failures.push(format!("{name}: error {code} {message:?}")),
            Err(e) => {
                failures.push(format!("{name}: {e:#}"));
                // The connection may be gone; open a new one.
                let addr = client.addr().to_string();
                client = Client::connect(&addr, timeout).await?;
            }
        }
    }
    let wall = started.elapsed();
    for f in failures.iter().take(10) {
        eprintln!("failed: {f}");
    }
    if took.is_empty() {
        bail!("no topic was created ({} failures)", failures.len());
    }
    took.sort();
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    println!(
        "CreateTopics round trip over {} topics ({} failed) in {:.1} s: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        took.len(),
        failures.len(),
        wall.as_secs_f64(),
        ms(took[0]),
        ms(percentile(&took, 0.50)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().unwrap()),
        ms(mean),
    );
    if !failures.is_empty() {
        bail!("{} of {} CreateTopics failed", failures.len(), args.topics);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
