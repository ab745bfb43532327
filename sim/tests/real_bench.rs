//! The real load generator against a real broker started in-process (tokio,
//! real sockets, a temporary data directory).

use broker::config::BrokerConfig;
use broker::runtime::{self, RunOptions};
use sim::bench::BenchConfig;
use sim::real_bench::run_real_bench;

#[test]
fn a_short_real_bench_gets_acknowledgements_with_sane_percentiles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = rt
        .block_on(runtime::start(
            BrokerConfig::default(),
            dir.path().to_path_buf(),
            "127.0.0.1:0",
            RunOptions {
                seed: Some(7),
                ..RunOptions::default()
            },
        ))
        .expect("broker starts");
    let config = BenchConfig {
        topic: "real-bench-test".into(),
        partitions: 4,
        rates: vec![200.0],
        warmup_ms: 300,
        step_ms: 1_500,
        drain_ms: 500,
        producers: 2,
        ..BenchConfig::default()
    };
    let steps = run_real_bench(&broker.addr().to_string(), &config).expect("bench runs");
    rt.block_on(broker.shutdown()).expect("broker stops");
    assert_eq!(steps.len(), 1);
    let s = &steps[0];
    assert_eq!(s.mode, "real");
    assert!(s.achieved_rate > 0.0, "{s:?}");
    assert!(s.acked > 0 && s.errors == 0, "{s:?}");
    // About 200/s x 1.5 s of records in the window.
    assert!((250..=350).contains(&s.records), "{s:?}");
    let l = &s.latency_ms;
    assert!(
        l.p50 > 0.0 && l.p50 <= l.p75 && l.p75 <= l.p95 && l.p95 <= l.p99,
        "{l:?}"
    );
    assert!(
        l.p99 <= l.p999 && l.p999 <= l.p9999 && l.p9999 <= l.max,
        "{l:?}"
    );
    // A step is bounded by its time limit (warm-up + window + 2 x drain).
    assert!(l.max < 3_000.0, "{l:?}");
    assert!(s.wall_s < 10.0, "{s:?}");
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = BenchConfig {
        rates: vec![100.0],
        ..BenchConfig::default()
    };
    let err = run_real_bench(&addr.to_string(), &config).expect_err("no broker there");
    let text = format!("{err:#}");
    assert!(text.contains("cannot connect to the broker"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
}
