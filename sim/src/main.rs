//! `stormlog`: run, sweep, replay and benchmark simulated Stormlog clusters.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sim::catalogue::{self, parse_seed, parse_seed_range, seed_hex};
use sim::run::{Run, RunOptions, RunResult};
use sim::scenario::Scenario;
use sim::sweep::{parse_shard, shard, sweep};

#[derive(Parser)]
#[command(
    name = "stormlog",
    version,
    about = "Deterministic simulation of Stormlog brokers under faults",
    long_about = "Runs Stormlog brokers and simulated Kafka clients in a simulated world \
                  (clock, network, disks, processes) driven by one seed. The same scenario \
                  and seed always give the same run and the same trace hash.\n\n\
                  With no command, runs the default scenario suite and writes its results.\n\n\
                  SCENARIO is a path to a TOML file or the name of a catalogue scenario \
                  (see `sim/scenarios/`: steady, crash-restart, power-loss, slow-disk, latent-read-errors, silent-corruption, full-disk, client-partitions, clock-skew, pause, retries, kitchen-sink, page-cache-power-loss, and the cluster-* scenarios: cluster-steady, cluster-controller-kill, cluster-split, cluster-bridge, cluster-isolate-controller, cluster-one-way-leader, cluster-power-loss, cluster-pause, cluster-5-separate, cluster-kitchen-sink, cluster-page-cache-power-loss). Seeds are accepted in \
                  decimal or hex (0x...) and printed in hex."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One run; ends with `verdict: pass|fail` and `trace-hash: <hex>`.
    Run {
        #[arg(long)]
        scenario: String,
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        /// Also print the run's summary as JSON.
        #[arg(long)]
        json: bool,
        /// Write the run's history (every client operation) as JSON to this file.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Write an HTML report (page, charts, JSON) into this folder.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Many seeds of one or more scenarios in parallel; non-zero exit if any fails.
    Sweep {
        #[arg(long, num_args = 1.., required = true)]
        scenario: Vec<String>,
        /// Seed range A..B (B exclusive), e.g. 0..500 or 0x0..0x100.
        #[arg(long, value_parser = parse_seed_range)]
        seeds: std::ops::Range<u64>,
        /// Worker threads (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard i of n (1-based): every n-th seed.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Write every run's summary as JSON lines to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write an HTML report into this folder: the sweep page, and a run
        /// page (with charts) for every failing seed and each scenario's first seed.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The same run again, verbosely; `--trace` prints every delivered event.
    Replay {
        #[arg(long)]
        scenario: String,
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        #[arg(long)]
        trace: bool,
    },
    /// Reports: compare two benchmark or run JSON files (exit 1 on a regression).
    Report {
        /// OLD.json NEW.json: benchmark (`bench --json`) or run reports.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], required = true)]
        compare: Vec<PathBuf>,
        /// A latency percentile rising more than this is a regression.
        #[arg(long, default_value_t = 10.0)]
        latency_pct: f64,
        /// Throughput falling more than this is a regression.
        #[arg(long, default_value_t = 5.0)]
        throughput_pct: f64,
    },
    /// Throughput and latency benchmarks: an OpenMessaging-Benchmark-like
    /// workload (1 topic x 16 partitions, 1 KB records, stepped target rates)
    /// in the simulator (default) or against a real broker (`--real`);
    /// latency is measured from each record's intended send time.
    /// `--speed` measures the simulator itself instead.
    Bench {
        /// Run the workload in the simulator (the default).
        #[arg(long, conflicts_with_all = ["real", "speed"])]
        sim: bool,
        /// Run the workload against a real broker over TCP.
        #[arg(long, requires = "bootstrap", conflicts_with = "speed")]
        real: bool,
        /// The real broker's HOST:PORT (with --real).
        #[arg(long)]
        bootstrap: Option<String>,
        /// Target rates in records per second, one step each (e.g. 1000,5000,10000).
        #[arg(long, value_delimiter = ',')]
        rates: Option<Vec<f64>>,
        /// Measured seconds per step (after a warm-up).
        #[arg(long)]
        step_seconds: Option<f64>,
        /// Unmeasured seconds at the start of each step.
        #[arg(long)]
        warmup_seconds: Option<f64>,
        /// Producers (sim) or connections (real); they share the rate.
        #[arg(long)]
        connections: Option<u32>,
        /// Partitions of the bench topic (default 16).
        #[arg(long)]
        partitions: Option<u32>,
        /// Simulated brokers (default 1); more than one makes a KRaft cluster
        /// with the bench topic replicated (RF min(3, brokers), min.insync 2).
        #[arg(long)]
        brokers: Option<u32>,
        /// Most records per partition batch (default 16).
        #[arg(long)]
        batch_records: Option<usize>,
        /// Kafka's linger.ms (default 1).
        #[arg(long)]
        linger_ms: Option<u64>,
        /// Seed of the simulated steps.
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Write the results as JSON (a report that `report --compare` reads).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an HTML page with the latency chart into this folder.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Measure the simulator: simulated events and seconds per wall second.
        #[arg(long, conflicts_with = "failover")]
        speed: bool,
        /// Measure failover: for every fault that takes the active controller
        /// out, simulated ms until another node leads (e.g. --scenario
        /// cluster-controller-kill); for every fault that takes a partition
        /// leader out, simulated ms until that partition's next acknowledged
        /// write (e.g. --scenario replication-leader-kill).
        #[arg(long)]
        failover: bool,
        /// Measure consumer-group rebalances: a 10-member group, one member
        /// leaving and one joining, eager (range) and cooperative
        /// (cooperative-sticky); p50/p99 simulated ms over --runs seeds
        /// (--brokers N: on a cluster).
        #[arg(long, conflicts_with_all = ["speed", "failover", "real"])]
        groups: bool,
        /// With --real: measure OffsetCommit (throughput and latency of the
        /// group coordinator's replicated writes) instead of Produce;
        /// --connections groups commit closed-loop for --step-seconds.
        #[arg(long, requires = "real")]
        offset_commit: bool,
        /// With --real: idempotent producers (InitProducerId once per
        /// connection, producer id, epoch and per-partition sequence in every
        /// batch), to compare with a run without it.
        #[arg(long, requires = "real")]
        idempotent: bool,
        /// With --speed or --failover: the scenario to run.
        #[arg(long, default_value = "crash-restart")]
        scenario: String,
        /// With --speed or --failover: how many seeds (from 0).
        #[arg(long, default_value_t = 20)]
        runs: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STORMLOG_LOG")
                // Each node's step is in a span naming the node and the
                // simulated time: always on when anything is logged.
                .map(|f| f.add_directive("sim::node=info".parse().expect("directive")))
                .unwrap_or_else(|_| "off".into()),
        )
        .with_writer(std::io::stderr)
        // Simulated time is in each node's span; the wall clock means nothing here.
        .without_time()
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => suite(),
        Some(Command::Run {
            scenario,
            seed,
            json,
            history,
            report,
        }) => run_one(&scenario, seed, json, history, report),
        Some(Command::Sweep {
            scenario,
            seeds,
            jobs,
            shard: part,
            out,
            report,
        }) => sweep_cmd(&scenario, seeds, jobs, part, out, report),
        Some(Command::Replay {
            scenario,
            seed,
            trace,
        }) => replay(&scenario, seed, trace),
        Some(Command::Report {
            compare,
            latency_pct,
            throughput_pct,
        }) => compare_cmd(&compare[0], &compare[1], latency_pct, throughput_pct),
        Some(Command::Bench {
            real,
            bootstrap,
            rates,
            step_seconds,
            warmup_seconds,
            connections,
            partitions,
            brokers,
            batch_records,
            linger_ms,
            seed,
            json,
            report,
            speed,
            failover,
            groups,
            scenario,
            runs,
            offset_commit,
            idempotent,
            ..
        }) => {
            if groups {
                bench_groups(brokers.unwrap_or(1), runs)
            } else if speed {
                bench_speed(&scenario, runs)
            } else if offset_commit {
                bench_offset_commit(
                    bootstrap.unwrap_or_default(),
                    step_seconds,
                    warmup_seconds,
                    connections,
                    partitions,
                )
            } else if failover {
                bench_failover(&scenario, runs)
            } else {
                let shape = BenchShape {
                    warmup_seconds,
                    connections,
                    partitions,
                    brokers,
                    batch_records,
                    linger_ms,
                    seed,
                    idempotent,
                };
                bench(
                    real.then_some(bootstrap).flatten(),
                    rates,
                    step_seconds,
                    shape,
                    json,
                    report,
                )
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn replay_command(scenario: &str, seed: u64) -> String {
    format!(
        "cargo run --release -- replay --scenario {scenario} --seed {}",
        seed_hex(seed)
    )
}

fn print_result(result: &RunResult, scenario_arg: &str) {
    println!(
        "scenario: {}  seed: {}",
        result.scenario,
        seed_hex(result.seed)
    );
    println!(
        "simulated: {} ms, {} events, {} faults, {} broker restarts",
        result.simulated_ms,
        result.events,
        result.faults.len(),
        result.restarts
    );
    println!(
        "sends: {} ok, {} failed, {} unknown, {} in flight; reads: {}",
        result.sends.ok,
        result.sends.fail,
        result.sends.unknown,
        result.sends.in_flight,
        result.reads
    );
    let (p, e) = (&result.produce_latency_ms, &result.end_to_end_latency_ms);
    println!(
        "throughput: {:.0} acked/s; produce latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; end-to-end p50 {:.2} p99 {:.2}",
        result.throughput, p.p50, p.p99, p.p999, p.max, e.p50, e.p99
    );
    if let Some(ms) = result.election_ms {
        println!(
            "quorum: a leader followed by a majority {ms} ms after the last quorum fault healed"
        );
    }
    let c = &result.creates;
    if c.ok + c.fail + c.unknown + c.in_flight > 0 {
        println!(
            "creates: {} ok, {} failed, {} unknown, {} in flight",
            c.ok, c.fail, c.unknown, c.in_flight
        );
    }
    if !result.found.is_empty() {
        println!(
            "anomalies found: {} (expected: {:?})",
            result.found.join(", "),
            result.expected
        );
        for a in result.anomalies.iter().take(5) {
            println!("  {}: {}", a.kind, a.explanation);
        }
    }
    for note in result.notes.iter().take(5) {
        println!("note: {note}");
    }
    if result.pass {
        println!("verdict: pass");
    } else {
        println!("verdict: fail");
        for reason in &result.reasons {
            println!("  - {reason}");
        }
        println!("replay: {}", replay_command(scenario_arg, result.seed));
    }
    println!("trace-hash: {}", result.trace_hash);
}

fn run_one(
    scenario_arg: &str,
    seed: u64,
    json: bool,
    history_out: Option<PathBuf>,
    report_dir: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let scenario = catalogue::load(scenario_arg)?;
    let (result, history) = Run::new(&scenario, seed, &RunOptions::default())?.finish();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
        );
    }
    if let Some(path) = history_out {
        std::fs::write(&path, history.to_json()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "history: {} ({} operations)",
            path.display(),
            history.events.len()
        );
    }
    print_result(&result, scenario_arg);
    if let Some(dir) = report_dir {
        let report = sim::report::run_report(
            &result,
            &history,
            &sim::report::node_names(&scenario),
            replay_command(scenario_arg, seed),
        );
        write_run_report(&dir, &report)?;
        let index = reports::write_index(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        println!("report: {}", index.display());
    }
    Ok(if result.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_run_report(dir: &std::path::Path, report: &reports::RunReport) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    reports::write_run_page(dir, report).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Write the sweep's HTML report: a run page for every failing seed and for
/// each scenario's first seed (runs are deterministic, so they are run again
/// to get their histories), the sweep page and the index. Returns the index.
fn write_sweep_report(
    dir: &std::path::Path,
    title: &str,
    scenarios: &[(String, Scenario)],
    results: &[RunResult],
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut first_of: std::collections::BTreeSet<&str> = Default::default();
    let mut summaries = Vec::new();
    for r in results {
        let (arg, scenario) = scenarios
            .iter()
            .find(|(_, s)| s.name == r.scenario)
            .ok_or_else(|| format!("no scenario {}", r.scenario))?;
        let replay = replay_command(arg, r.seed);
        let wanted = !r.pass || first_of.insert(r.scenario.as_str());
        let page = if wanted {
            let (again, history) = Run::new(scenario, r.seed, &RunOptions::default())?.finish();
            let report = sim::report::run_report(
                &again,
                &history,
                &sim::report::node_names(scenario),
                replay.clone(),
            );
            let path = write_run_report(dir, &report)?;
            path.file_name().map(|n| n.to_string_lossy().into_owned())
        } else {
            None
        };
        summaries.push(sim::report::run_summary(r, replay, page));
    }
    let sweep = reports::SweepReport::new(title, summaries);
    reports::write_sweep_page(dir, &sweep).map_err(|e| format!("{}: {e}", dir.display()))?;
    reports::write_index(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn compare_cmd(
    old: &std::path::Path,
    new: &std::path::Path,
    latency_pct: f64,
    throughput_pct: f64,
) -> Result<ExitCode, String> {
    let thresholds = reports::Thresholds {
        latency_up_pct: latency_pct,
        throughput_down_pct: throughput_pct,
        ..reports::Thresholds::default()
    };
    let comparison = reports::compare_files(old, new, &thresholds).map_err(|e| e.to_string())?;
    comparison.print_table();
    if comparison.has_regression() {
        println!(
            "verdict: regression ({} metrics beyond thresholds)",
            comparison.regressions().count()
        );
        Ok(ExitCode::FAILURE)
    } else {
        println!("verdict: no regression");
        Ok(ExitCode::SUCCESS)
    }
}

fn replay(scenario_arg: &str, seed: u64, trace: bool) -> Result<ExitCode, String> {
    let scenario = catalogue::load(scenario_arg)?;
    let run = Run::new(&scenario, seed, &RunOptions { keep_trace: trace })?;
    println!("faults planned:");
    for f in &run.faults {
        println!(
            "  {:>7} ms .. {:>7} ms  {} on {}",
            f.start_ms,
            f.end_ms,
            f.kind.name(),
            f.target
        );
    }
    let mut run = run;
    let end = (scenario.duration_ms + scenario.quiet_ms) * 1_000_000;
    run.run_until(end);
    if let Some(records) = run.world.trace.records.take() {
        for r in &records {
            println!("{r}");
        }
    }
    let resolved: Vec<String> = run
        .faults
        .iter()
        .zip(&run.struck)
        .filter(|(f, _)| !matches!(f.target, sim::fault::Target::Node(_)))
        .map(|(f, nodes)| {
            format!(
                "  {:>7} ms  {} on {} struck nodes {:?}",
                f.start_ms,
                f.kind.name(),
                f.target,
                nodes
            )
        })
        .collect();
    if !resolved.is_empty() {
        println!("targets resolved:");
        for line in resolved {
            println!("{line}");
        }
    }
    println!("final state:");
    for line in run.describe_state() {
        println!("  {line}");
    }
    // Already at the end: this only judges.
    let result = run.execute();
    print_result(&result, scenario_arg);
    Ok(if result.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn sweep_cmd(
    scenarios: &[String],
    seeds: std::ops::Range<u64>,
    jobs: Option<usize>,
    part: Option<(u64, u64)>,
    out: Option<PathBuf>,
    report: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let loaded: Vec<(String, Scenario)> = scenarios
        .iter()
        .map(|s| catalogue::load(s).map(|sc| (s.clone(), sc)))
        .collect::<Result<_, _>>()?;
    let seeds: Vec<u64> = match part {
        Some((i, n)) => shard(seeds, i, n),
        None => seeds.collect(),
    };
    let work: Vec<(Scenario, u64)> = loaded
        .iter()
        .flat_map(|(_, sc)| seeds.iter().map(move |s| (sc.clone(), *s)))
        .collect();
    let jobs = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    eprintln!("sweep: {} runs on {jobs} threads", work.len());
    let started = std::time::Instant::now();
    let results = sweep(&work, jobs, true);
    let wall = started.elapsed();
    if let Some(path) = &out {
        let mut text = String::new();
        for r in &results {
            text.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let failing = summarize(&loaded, &results);
    println!("wall time: {:.1} s", wall.as_secs_f64());
    if let Some(path) = out {
        println!("results: {}", path.display());
    }
    if let Some(dir) = report {
        let title = match part {
            Some((i, n)) => format!("sweep of {} runs (shard {i}/{n})", results.len()),
            None => format!("sweep of {} runs", results.len()),
        };
        let index = write_sweep_report(&dir, &title, &loaded, &results)?;
        println!("report: {}", index.display());
    }
    Ok(if failing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Print the per-scenario table and every failing seed; returns the failure count.
fn summarize(scenarios: &[(String, Scenario)], results: &[RunResult]) -> usize {
    println!(
        "{:<22} {:>4} {:>4} {:>4} {:>8} {:>7} {:>5} {:>9} {:>9} {:>9}  anomalies (runs)",
        "scenario",
        "runs",
        "pass",
        "fail",
        "acked/s",
        "unknown",
        "rst",
        "p50 ms",
        "p99 ms",
        "e2e p99"
    );
    for (_, scenario) in scenarios {
        let mine: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let pass = mine.iter().filter(|r| r.pass).count();
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for r in &mine {
            for k in &r.found {
                *kinds.entry(k.as_str()).or_default() += 1;
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let n = mine.len() as f64;
        // Per-run percentiles, summarised as the median run's p50 and the worst run's p99.
        let mut p50s: Vec<f64> = mine.iter().map(|r| r.produce_latency_ms.p50).collect();
        p50s.sort_by(|a, b| a.total_cmp(b));
        let worst_p99 = mine
            .iter()
            .map(|r| r.produce_latency_ms.p99)
            .fold(0.0, f64::max);
        let worst_e2e = mine
            .iter()
            .map(|r| r.end_to_end_latency_ms.p99)
            .fold(0.0, f64::max);
        println!(
            "{:<22} {:>4} {:>4} {:>4} {:>8.0} {:>7} {:>5} {:>9.2} {:>9.2} {:>9.2}  {}",
            scenario.name,
            mine.len(),
            pass,
            mine.len() - pass,
            mine.iter().map(|r| r.throughput).sum::<f64>() / n,
            mine.iter().map(|r| r.sends.unknown).sum::<usize>(),
            mine.iter().map(|r| r.restarts as usize).sum::<usize>(),
            p50s[p50s.len() / 2],
            worst_p99,
            worst_e2e,
            if kinds.is_empty() {
                "-".to_string()
            } else {
                kinds.join(", ")
            }
        );
    }
    println!("(acked/s: mean per run; p50: median run's produce p50; p99, e2e p99: worst run's; simulated time)");
    let failing: Vec<&RunResult> = results.iter().filter(|r| !r.pass).collect();
    if !failing.is_empty() {
        println!("\nfailing seeds:");
        for r in &failing {
            let arg = scenarios
                .iter()
                .find(|(_, s)| s.name == r.scenario)
                .map(|(a, _)| a.as_str())
                .unwrap_or(&r.scenario);
            println!(
                "  {} {}: {}",
                r.scenario,
                seed_hex(r.seed),
                r.reasons.first().cloned().unwrap_or_default()
            );
            println!("    {}", replay_command(arg, r.seed));
        }
    }
    failing.len()
}

/// The default suite: every catalogue scenario on a modest number of seeds.
fn suite() -> Result<ExitCode, String> {
    const SEEDS: u64 = 16;
    let replicates = sim::replica::broker_replicates();
    let names: Vec<String> = catalogue::CATALOGUE
        .iter()
        .map(|(name, _)| name.to_string())
        .filter(|name| replicates || !catalogue::needs_replication(name))
        .filter(|name| sim::run::broker_has_groups() || !catalogue::needs_groups(name))
        .collect();
    if !replicates {
        println!(
            "stormlog: the replication-* and unsafe-* scenarios are left out: the broker does not replicate partitions yet"
        );
    }
    let out_dir = PathBuf::from("target/stormlog");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let out = out_dir.join("suite.jsonl");
    println!(
        "stormlog: default suite, {} scenarios x {SEEDS} seeds",
        names.len()
    );
    sweep_cmd(
        &names,
        0..SEEDS,
        None,
        None,
        Some(out),
        Some(out_dir.join("report")),
    )
}

/// Failover of the metadata quorum: simulated ms from each fault that takes
/// the active controller out until another node leads, over `runs` seeds.
fn bench_failover(scenario_arg: &str, runs: u64) -> Result<ExitCode, String> {
    let scenario = catalogue::load(scenario_arg)?;
    if scenario.cluster_spec().is_none() {
        return Err(format!(
            "bench --failover: {} is not a cluster scenario (try --scenario cluster-controller-kill)",
            scenario.name
        ));
    }
    let mut histogram = reports::LatencyHistogram::new();
    let mut partitions = reports::LatencyHistogram::new();
    let started = std::time::Instant::now();
    let mut events = 0u64;
    for seed in 0..runs {
        let result = sim::run::run(&scenario, seed, &RunOptions::default())?;
        events += result.events;
        for ms in &result.failover_ms {
            histogram.record(ms * 1_000_000);
        }
        for ms in &result.partition_failover_ms {
            partitions.record(ms * 1_000_000);
        }
        if (seed + 1) % 100 == 0 {
            eprintln!("bench --failover: {}/{runs} seeds", seed + 1);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let p = histogram.percentiles();
    println!(
        "bench --failover: scenario {} x {runs} seeds: {} controller failovers",
        scenario.name,
        histogram.len()
    );
    if !histogram.is_empty() {
        println!(
            "  simulated ms from the strike to a new leader: p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}",
            p.p50, p.p95, p.p99, p.max
        );
    }
    if !partitions.is_empty() {
        let q = partitions.percentiles();
        println!(
            "  {} partition-leader strikes; simulated ms from the strike to the partition's next acknowledged write: p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}",
            partitions.len(),
            q.p50,
            q.p95,
            q.p99,
            q.max
        );
    }
    println!(
        "  wall: {wall:.1} s ({:.0} seeds/min, {:.0} events/s)",
        runs as f64 * 60.0 / wall,
        events as f64 / wall
    );
    Ok(ExitCode::SUCCESS)
}

/// Rebalance time of a 10-member group, eager against cooperative.
fn bench_groups(brokers: u32, runs: u64) -> Result<ExitCode, String> {
    if !sim::run::broker_has_groups() {
        return Err("bench --groups: the broker does not coordinate consumer groups yet".into());
    }
    println!(
        "bench --groups: {brokers} broker(s), 10 members, 20 partitions; member 0 leaves at {} ms, an 11th joins at {} ms; {runs} seeds",
        sim::group_bench::LEAVE_MS,
        sim::group_bench::JOIN_MS
    );
    println!("  simulated ms until the last member has its settled assignment:");
    for assignor in ["range", "cooperative-sticky"] {
        let r = sim::group_bench::run_group_bench(assignor, brokers, runs);
        let show = |v: &[u64]| match sim::group_bench::p50_p99(v) {
            Some((p50, p99)) => format!("p50 {p50:>5}  p99 {p99:>5}"),
            None => "no data".to_string(),
        };
        println!(
            "  {:<19} leave: {}   join: {}   unsettled: {}",
            assignor,
            show(&r.leave_ms),
            show(&r.join_ms),
            r.unsettled
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_speed(scenario_arg: &str, runs: u64) -> Result<ExitCode, String> {
    let scenario = catalogue::load(scenario_arg)?;
    let mut events = 0u64;
    let mut simulated_ms = 0u64;
    let started = std::time::Instant::now();
    let mut per_run = Vec::new();
    for seed in 0..runs {
        let t = std::time::Instant::now();
        let result = sim::run::run(&scenario, seed, &RunOptions::default())?;
        per_run.push(t.elapsed().as_secs_f64());
        events += result.events;
        simulated_ms += result.simulated_ms;
    }
    let wall = started.elapsed().as_secs_f64();
    per_run.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let median = per_run[per_run.len() / 2];
    println!("bench --speed: scenario {} x {runs} seeds", scenario.name);
    println!("  events:             {events}");
    println!("  simulated seconds:  {:.1}", simulated_ms as f64 / 1000.0);
    println!("  wall seconds:       {wall:.2}");
    println!("  events / wall s:    {:.0}", events as f64 / wall);
    println!(
        "  sim s / wall s:     {:.1}",
        simulated_ms as f64 / 1000.0 / wall
    );
    println!(
        "  median run:         {:.3} s wall for {:.0} s simulated",
        median,
        scenario.duration_ms as f64 / 1000.0 + scenario.quiet_ms as f64 / 1000.0
    );
    Ok(ExitCode::SUCCESS)
}

/// OffsetCommit throughput and latency against a real broker.
fn bench_offset_commit(
    bootstrap: String,
    step_seconds: Option<f64>,
    warmup_seconds: Option<f64>,
    connections: Option<u32>,
    partitions: Option<u32>,
) -> Result<ExitCode, String> {
    let mut config = sim::bench::BenchConfig {
        topic: "stormlog-bench-commits".into(),
        partitions: partitions.unwrap_or(16).max(1),
        producers: connections.unwrap_or(4).max(1),
        ..sim::bench::BenchConfig::default()
    };
    if let Some(s) = step_seconds.filter(|s| *s > 0.0) {
        config.step_ms = (s * 1000.0) as u64;
    }
    if let Some(s) = warmup_seconds.filter(|s| *s >= 0.0) {
        config.warmup_ms = (s * 1000.0) as u64;
    }
    println!(
        "bench --real --offset-commit against {bootstrap}: {} connection(s), {} partition offsets per commit",
        config.producers, config.partitions
    );
    let result =
        sim::commit_bench::run_commit_bench(&bootstrap, &config).map_err(|e| format!("{e:#}"))?;
    println!("{result}");
    Ok(if result.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The throughput/latency benchmark, simulated or against a real broker.
/// Bench settings beyond rates and step length, as given on the command line.
struct BenchShape {
    warmup_seconds: Option<f64>,
    connections: Option<u32>,
    partitions: Option<u32>,
    brokers: Option<u32>,
    batch_records: Option<usize>,
    linger_ms: Option<u64>,
    seed: Option<u64>,
    idempotent: bool,
}

fn bench(
    bootstrap: Option<String>,
    rates: Option<Vec<f64>>,
    step_seconds: Option<f64>,
    shape: BenchShape,
    json: Option<PathBuf>,
    report_dir: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let mut config = sim::bench::BenchConfig::default();
    if let Some(rates) = rates {
        if rates.is_empty() || rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
            return Err("--rates: give positive records-per-second values, e.g. 1000,5000".into());
        }
        config.rates = rates;
    }
    if let Some(seconds) = step_seconds {
        if seconds.is_nan() || seconds <= 0.0 {
            return Err("--step-seconds must be above 0".into());
        }
        config.step_ms = (seconds * 1000.0) as u64;
    }
    if let Some(seconds) = shape.warmup_seconds {
        if seconds.is_nan() || seconds < 0.0 {
            return Err("--warmup-seconds must be 0 or more".into());
        }
        config.warmup_ms = (seconds * 1000.0) as u64;
    }
    let positive = |name: &str, v: u64| {
        if v == 0 {
            Err(format!("--{name} must be at least 1"))
        } else {
            Ok(v)
        }
    };
    if let Some(n) = shape.connections {
        config.producers = positive("connections", n as u64)? as u32;
    }
    if let Some(n) = shape.partitions {
        config.partitions = positive("partitions", n as u64)? as u32;
    }
    if let Some(n) = shape.brokers {
        if bootstrap.is_some() {
            return Err(
                "--brokers is for the simulator; --real measures the broker it is given".into(),
            );
        }
        config.brokers = positive("brokers", n as u64)? as u32;
    }
    if let Some(n) = shape.batch_records {
        config.batch_records = positive("batch-records", n as u64)? as usize;
    }
    if let Some(ms) = shape.linger_ms {
        config.linger_ms = ms;
    }
    if let Some(seed) = shape.seed {
        config.seed = seed;
    }
    config.idempotent = shape.idempotent;
    let (name, steps) = match &bootstrap {
        Some(addr) => {
            println!("bench --real: {} steps against {addr}", config.rates.len());
            let steps =
                sim::real_bench::run_real_bench(addr, &config).map_err(|e| format!("{e:#}"))?;
            ("bench-real".to_string(), steps)
        }
        None => {
            println!("bench --sim: {} steps in the simulator", config.rates.len());
            ("bench-sim".to_string(), sim::bench::run_sim_bench(&config))
        }
    };
    sim::bench::print_table(&steps);
    let report = reports::BenchReport {
        name: name.clone(),
        workload: format!(
            "1 topic x {} partitions, {} B records, {} producer(s), batches of up to {} records{}",
            config.partitions,
            config.message_bytes,
            config.producers,
            config.batch_records,
            if config.brokers > 1 {
                format!(", {} brokers (replicated)", config.brokers)
            } else if config.idempotent {
                ", idempotent".to_string()
            } else {
                String::new()
            }
        ),
        steps: steps
            .iter()
            .map(|s| reports::BenchStep {
                target_rate: s.target_rate,
                achieved_rate: s.achieved_rate,
                percentiles: reports::Percentiles {
                    count: s.acked,
                    p50: s.latency_ms.p50,
                    p75: s.latency_ms.p75,
                    p95: s.latency_ms.p95,
                    p99: s.latency_ms.p99,
                    p999: s.latency_ms.p999,
                    p9999: s.latency_ms.p9999,
                    max: s.latency_ms.max,
                },
            })
            .collect(),
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("results: {}", path.display());
    }
    if let Some(dir) = report_dir {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        reports::write_bench_page(&dir, &report).map_err(|e| format!("{}: {e}", dir.display()))?;
        let index = reports::write_index(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        println!("report: {}", index.display());
    }
    Ok(ExitCode::SUCCESS)
}
