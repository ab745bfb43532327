//! The OpenMessaging-Benchmark-style workload of `stormlog bench`, runnable
//! without the CLI: `cargo bench -p sim --bench omb`.
//!
//! Simulated by default. Environment variables override the defaults of
//! [`BenchConfig`]: `BENCH_RATES=1000,5000`, `BENCH_STEP_MS`, `BENCH_WARMUP_MS`,
//! `BENCH_PRODUCERS`, `BENCH_CONSUMERS`, `BENCH_BATCH`, `BENCH_LINGER_MS`,
//! `BENCH_PARTITIONS`, `BENCH_MAX_IN_FLIGHT`, `BENCH_SEED`;
//! `BENCH_REAL=HOST:PORT` runs the real load generator against that broker
//! instead; `BENCH_JSON=FILE` writes the steps as JSON.

use sim::bench::{print_table, run_sim_bench, BenchConfig};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either: run a tiny configuration then, as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut config = BenchConfig::default();
    if smoke {
        config.rates = vec![1_000.0];
        config.warmup_ms = 200;
        config.step_ms = 1_000;
        config.drain_ms = 200;
    }
    if let Ok(rates) = std::env::var("BENCH_RATES") {
        config.rates = rates
            .split(',')
            .map(|r| {
                r.trim()
                    .parse()
                    .expect("BENCH_RATES: numbers separated by commas")
            })
            .collect();
    }
    if let Some(v) = env("BENCH_STEP_MS") {
        config.step_ms = v;
    }
    if let Some(v) = env("BENCH_WARMUP_MS") {
        config.warmup_ms = v;
    }
    if let Some(v) = env("BENCH_DRAIN_MS") {
        config.drain_ms = v;
    }
    if let Some(v) = env("BENCH_PRODUCERS") {
        config.producers = v;
    }
    if let Some(v) = env("BENCH_CONSUMERS") {
        config.consumers = v;
    }
    if let Some(v) = env("BENCH_BATCH") {
        config.batch_records = v;
    }
    if let Some(v) = env("BENCH_LINGER_MS") {
        config.linger_ms = v;
    }
    if let Some(v) = env("BENCH_PARTITIONS") {
        config.partitions = v;
    }
    if let Some(v) = env("BENCH_MAX_IN_FLIGHT") {
        config.max_in_flight = v;
    }
    if let Some(v) = env("BENCH_SEED") {
        config.seed = v;
    }
    let steps = match std::env::var("BENCH_REAL") {
        Ok(bootstrap) => match sim::real_bench::run_real_bench(&bootstrap, &config) {
            Ok(steps) => steps,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
        Err(_) => run_sim_bench(&config),
    };
    print_table(&steps);
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let json = serde_json::to_string_pretty(&steps).expect("serializable");
        std::fs::write(&path, json).expect("write BENCH_JSON");
        println!("json: {path}");
    }
}
