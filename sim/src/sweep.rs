//! Many runs at once: seeds spread over worker threads (each run is itself
//! single-threaded and deterministic; results are ordered by scenario and
//! seed, so the summary does not depend on scheduling).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::run::{run, RunOptions, RunResult};
use crate::scenario::Scenario;

/// Run every (scenario, seed) pair on `jobs` threads, reporting progress on stderr.
pub fn sweep(work: &[(Scenario, u64)], jobs: usize, progress: bool) -> Vec<RunResult> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(work.len()));
    let failures = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((scenario, seed)) = work.get(i) else {
                    break;
                };
                let result = match run(scenario, *seed, &RunOptions::default()) {
                    Ok(result) => result,
                    Err(e) => failed_to_start(scenario, *seed, e),
                };
                if !result.pass {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                results
                    .lock()
                    .expect("no panics while holding")
                    .push((i, result));
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                if progress {
                    print_progress(finished, work.len(), failures.load(Ordering::SeqCst));
                }
            });
        }
    });
    if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    let mut results = results.into_inner().expect("no panics while holding");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn failed_to_start(scenario: &Scenario, seed: u64, error: String) -> RunResult {
    RunResult {
        scenario: scenario.name.clone(),
        seed,
        pass: false,
        reasons: vec![format!("could not start: {error}")],
        anomalies: vec![],
        found: vec![],
        expected: scenario.expect.clone(),
        trace_hash: String::new(),
        events: 0,
        simulated_ms: 0,
        faults: vec![],
        sends: Default::default(),
        reads: 0,
        restarts: 0,
        throughput: 0.0,
        produce_latency_ms: Default::default(),
        end_to_end_latency_ms: Default::default(),
        struck: vec![],
        notes: Vec::new(),
        quorum_observed: false,
        election_ms: None,
        failover_ms: Vec::new(),
        partition_failover_ms: Vec::new(),
        creates: Default::default(),
    }
}

/// A bar redrawn in place on a terminal; in a log (CI), a line every 10%.
fn print_progress(done: usize, total: usize, failures: usize) {
    use std::io::IsTerminal;
    const WIDTH: usize = 30;
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let filled = done * WIDTH / total.max(1);
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} runs, {failures} failing",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled)
        );
    } else if done == total || (done * 10 / total.max(1)) != ((done - 1) * 10 / total.max(1)) {
        let _ = writeln!(err, "sweep: {done}/{total} runs, {failures} failing");
    }
    let _ = err.flush();
}

/// Keep the seeds of shard `index` of `count` (`--shard i/n`, 1-based):
/// every n-th seed, so shards get similar mixes.
pub fn shard(seeds: std::ops::Range<u64>, index: u64, count: u64) -> Vec<u64> {
    seeds.filter(|s| s % count == index - 1).collect()
}

/// Parse `i/n`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: expected i/n, e.g. 2/4"))?;
    let (i, n): (u64, u64) = (
        i.parse()
            .map_err(|_| format!("`{text}`: bad shard index"))?,
        n.parse()
            .map_err(|_| format!("`{text}`: bad shard count"))?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(format!("`{text}`: need 1 <= i <= n"));
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_seeds() {
        let all: Vec<u64> = (1..=3).flat_map(|i| shard(0..10, i, 3)).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(parse_shard("2/4").unwrap(), (2, 4));
        assert!(parse_shard("0/4").is_err());
        assert!(parse_shard("5/4").is_err());
    }
}
