//! The metadata quorum of a running cluster, as Kafka's
//! `kafka-metadata-quorum.sh describe --status` and `--replication` show it,
//! from one DescribeQuorum request (any broker forwards it to the leader),
//! plus the brokers from Metadata.
//!
//! ```sh
//! cargo run --release -p broker --example quorum -- localhost:19092
//! ```

#[path = "../tests/support/kclient.rs"]
mod kclient;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use kclient::Client;

async fn run(bootstrap: &str) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(10);
    let mut client = Client::connect(bootstrap, timeout).await?;
    let asked = Instant::now();
    let quorum = client.describe_quorum().await.context("DescribeQuorum")?;
    let took = asked.elapsed();
    let metadata = client.metadata(Some(&[])).await.context("Metadata")?;
    if quorum.error_code != 0 {
        bail!(
            "DescribeQuorum: error {} {:?}",
            quorum.error_code,
            quorum.error_message
        );
    }
    let Some(p) = quorum.topics.first().and_then(|t| t.partitions.first()) else {
        bail!("DescribeQuorum: empty answer");
    };
    if p.error_code != 0 {
        bail!(
            "DescribeQuorum: partition error {} (no leader yet?)",
            p.error_code
        );
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    // Kafka reports wall-clock Unix milliseconds; show anything else raw.
    let ago = |t: i64| {
        if t < 0 {
            "-".to_string()
        } else if t < 1_000_000_000_000 {
            format!("t={t}")
        } else {
            format!("{} ms ago", now_ms - t)
        }
    };
    let leader = p.leader_id.0;
    let leader_end = p
        .current_voters
        .iter()
        .find(|v| v.replica_id.0 == leader)
        .map_or(p.high_watermark, |v| v.log_end_offset);
    let max_lag = p
        .current_voters
        .iter()
        .map(|v| leader_end - v.log_end_offset)
        .max()
        .unwrap_or(0);
    let voters: Vec<String> = p
        .current_voters
        .iter()
        .map(|v| v.replica_id.0.to_string())
        .collect();
    let observers: Vec<String> = p
        .observers
        .iter()
        .map(|v| v.replica_id.0.to_string())
        .collect();
    println!(
        "ClusterId:       {}",
        metadata.cluster_id.as_ref().map_or("?", |c| c.as_str())
    );
    println!("LeaderId:        {leader}");
    println!("LeaderEpoch:     {}", p.leader_epoch);
    println!("HighWatermark:   {}", p.high_watermark);
    println!("MaxFollowerLag:  {max_lag}");
    println!("CurrentVoters:   [{}]", voters.join(","));
    println!("CurrentObservers: [{}]", observers.join(","));
    println!(
        "(asked {}, answered in {:.1} ms)",
        client.addr(),
        took.as_secs_f64() * 1000.0
    );
    println!();
    println!(
        "{:<8} {:<14} {:<8} {:<22} {:<22} Status",
        "NodeId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp"
    );
    let rows = p
        .current_voters
        .iter()
        .map(|v| {
            (
                v,
                if v.replica_id.0 == leader {
                    "Leader"
                } else {
                    "Follower"
                },
            )
        })
        .chain(p.observers.iter().map(|v| (v, "Observer")));
    for (v, status) in rows {
        println!(
            "{:<8} {:<14} {:<8} {:<22} {:<22} {status}",
            v.replica_id.0,
            v.log_end_offset,
            leader_end - v.log_end_offset,
            ago(v.last_fetch_timestamp),
            ago(v.last_caught_up_timestamp),
        );
    }
    println!();
    let brokers: Vec<String> = metadata
        .brokers
        .iter()
        .map(|b| format!("{}@{}:{}", b.node_id.0, b.host.as_str(), b.port))
        .collect();
    println!("Live brokers (Metadata): [{}]", brokers.join(", "));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:19092".to_string());
    let bootstrap = bootstrap.split(',').next().unwrap_or("").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(&bootstrap)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
