use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use reports::charts::{
    render, render_png, render_svg, LatencyChart, NodeTimelineChart, TimelineChart,
};
use reports::compare::{compare, compare_files, Thresholds};
use reports::data::*;
use reports::html::{
    escape, read_json, write_bench_page, write_index, write_json, write_run_page, write_sweep_page,
};

/// A deterministic pseudo-random latency in ns with a long tail.
fn latency(i: u64, base_us: u64) -> u64 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 33;
    let u = (x % 1_000_000) as f64 / 1_000_000.0;
    // Pareto-ish tail: base / (1 - u)^0.7
    let ns = base_us as f64 * 1000.0 / (1.0 - u * 0.9999).powf(0.7);
    ns as u64
}

fn sample_run(pass: bool) -> RunReport {
    let mut latencies = BTreeMap::new();
    for (k, base) in [
        (OpKind::ProduceAck, 800),
        (OpKind::EndToEnd, 2500),
        (OpKind::Fetch, 300),
    ] {
        let mut h = LatencyHistogram::new();
        for i in 0..20_000u64 {
            h.record(latency(i + base, base));
        }
        latencies.insert(k, h);
    }
    let faults = vec![
        FaultWindow {
            start_ms: 8_000,
            end_ms: 14_000,
            label: "partition n1 | n2,n3".into(),
            node: 1,
        },
        FaultWindow {
            start_ms: 20_000,
            end_ms: 23_500,
            label: "crash".into(),
            node: 2,
        },
        FaultWindow {
            start_ms: 30_000,
            end_ms: 34_000,
            label: "slow-disk 50ms".into(),
            node: 3,
        },
    ];
    let timeline = (0..45u64)
        .map(|s| {
            let t = s * 1000;
            let in_fault = faults.iter().any(|f| t >= f.start_ms && t < f.end_ms);
            TimeBucket {
                start_ms: t,
                acked: if in_fault {
                    1200 + (s % 3) * 150
                } else {
                    5000 + (s % 5) * 120
                },
                p99_ms: if in_fault {
                    180.0 + s as f64
                } else {
                    4.0 + (s % 4) as f64 * 0.5
                },
            }
        })
        .collect();
    let nodes = vec![
        NodeTimeline {
            name: "n1".into(),
            intervals: vec![
                (0, 8_000, NodeState::Up),
                (8_000, 14_000, NodeState::Partitioned),
                (14_000, 45_000, NodeState::Up),
            ],
        },
        NodeTimeline {
            name: "n2".into(),
            intervals: vec![
                (0, 20_000, NodeState::Up),
                (20_000, 23_500, NodeState::Down),
                (23_500, 45_000, NodeState::Up),
            ],
        },
        NodeTimeline {
            name: "n3".into(),
            intervals: vec![
                (0, 36_000, NodeState::Up),
                (36_000, 38_000, NodeState::Paused),
                (38_000, 45_000, NodeState::Up),
            ],
        },
    ];
    RunReport {
        scenario: "partition-leader".into(),
        seed: 0xc,
        seed_hex: "0xc".into(),
        pass,
        reasons: if pass {
            vec![]
        } else {
            vec!["lost-write: offset 17 acknowledged but never read".into()]
        },
        anomalies: if pass {
            vec![]
        } else {
            vec![AnomalyRow {
                kind: "lost-write".into(),
                explanation: "record k=7 acked at offset 17 <script>alert(1)</script> was not read"
                    .into(),
            }]
        },
        replay_command: "stormlog replay --scenario partition-leader --seed 0xc".into(),
        trace_hash: "9f86d081884c7d65".into(),
        simulated_ms: 45_000,
        latencies,
        timeline,
        faults,
        nodes,
    }
}

fn sample_bench(p99_scale: f64, rate_scale: f64) -> BenchReport {
    let steps = [1000.0, 5000.0, 10000.0]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = (i + 1) as f64;
            BenchStep {
                target_rate: *r,
                achieved_rate: r * 0.99 * rate_scale,
                percentiles: Percentiles {
                    count: 10_000,
                    p50: 1.0 * f,
                    p75: 1.5 * f,
                    p95: 3.0 * f,
                    p99: 6.0 * f * p99_scale,
                    p999: 12.0 * f,
                    p9999: 30.0 * f,
                    max: 55.0 * f,
                },
            }
        })
        .collect();
    BenchReport {
        name: "produce-throughput".into(),
        workload: "acks=all, 3 replicas, 1 KiB records".into(),
        steps,
    }
}

fn sample_sweep() -> SweepReport {
    let mut runs = Vec::new();
    for seed in 0..6u64 {
        let pass = seed % 3 != 0;
        runs.push(RunSummary {
            scenario: if seed < 4 {
                "partition-leader".into()
            } else {
                "crash-restart".into()
            },
            seed_hex: format!("{seed:#x}"),
            pass,
            anomaly_kinds: if pass {
                vec![]
            } else {
                vec!["lost-write".into(), "duplicate".into()]
            },
            first_reason: if pass {
                String::new()
            } else {
                "lost-write: <b>offset</b> 17".into()
            },
            replay_command: format!("stormlog replay --seed {seed:#x}"),
            run_page: if pass {
                None
            } else {
                Some(format!("run-partition-leader-{seed:#x}.html"))
            },
        });
    }
    SweepReport::new("nightly 2026-11-23", runs)
}

fn png_dims(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 33, "png too short");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "png signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

/// Decodes the PNG fully and returns how many distinct colours it has.
fn png_colours(bytes: &[u8]) -> usize {
    let dec = png::Decoder::new(bytes);
    let mut reader = dec.read_info().expect("png header decodes");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame decodes");
    let mut colours = std::collections::HashSet::new();
    for px in buf[..info.buffer_size()].chunks(3) {
        colours.insert((px[0], px[1], px[2]));
    }
    colours.len()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn histogram_percentiles_on_known_data() {
    let mut h = LatencyHistogram::new();
    // 1..=10_000 microseconds, uniform.
    for us in 1..=10_000u64 {
        h.record(us * 1000);
    }
    let p = h.percentiles();
    assert_eq!(p.count, 10_000);
    let close = |got: f64, want: f64| (got - want).abs() / want < 0.002;
    assert!(close(p.p50, 5.0), "p50 {}", p.p50);
    assert!(close(p.p75, 7.5), "p75 {}", p.p75);
    assert!(close(p.p95, 9.5), "p95 {}", p.p95);
    assert!(close(p.p99, 9.9), "p99 {}", p.p99);
    assert!(close(p.p999, 9.99), "p999 {}", p.p999);
    assert!(close(p.p9999, 9.999), "p9999 {}", p.p9999);
    assert!(close(p.max, 10.0), "max {}", p.max);
}

#[test]
fn histogram_merge_and_auto_resize() {
    let mut a = LatencyHistogram::new();
    let mut b = LatencyHistogram::new();
    a.record(1_000_000);
    b.record(3_600_000_000_000); // an hour: beyond any initial range
    b.record_n(2_000_000, 2);
    a.merge(&b);
    let p = a.percentiles();
    assert_eq!(p.count, 4);
    assert!((p.p50 - 2.0).abs() < 0.01, "p50 {}", p.p50);
    assert!(
        (p.max - 3_600_000.0).abs() / 3_600_000.0 < 0.001,
        "max {}",
        p.max
    );
    assert_eq!(
        LatencyHistogram::new().percentiles(),
        Percentiles::default()
    );
}

#[test]
fn histogram_serde_round_trip_is_exact() {
    let run = sample_run(false);
    let h = &run.latencies[&OpKind::EndToEnd];
    let json = serde_json::to_string(h).unwrap();
    assert!(
        json.starts_with("\"HISTF"),
        "V2 deflate base64: {}",
        &json[..20]
    );
    let back: LatencyHistogram = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, h);
    assert_eq!(back.percentiles(), h.percentiles());
    let hv: Vec<_> = h
        .inner()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    let bv: Vec<_> = back
        .inner()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    assert_eq!(hv, bv);
    // The deserialised histogram still auto-resizes.
    let mut back = back;
    back.record(u64::MAX / 4);
    assert_eq!(back.len(), h.len() + 1);
}

#[test]
fn op_kind_names() {
    assert_eq!(OpKind::ProduceAck.to_string(), "produce ack");
    assert_eq!(OpKind::EndToEnd.to_string(), "end-to-end");
    assert_eq!(OpKind::Fetch.to_string(), "fetch");
    assert_eq!(
        serde_json::to_string(&OpKind::ProduceAck).unwrap(),
        "\"produce ack\""
    );
    for k in OpKind::ALL {
        assert_eq!(k.as_str().parse::<OpKind>().unwrap(), k);
    }
}

#[test]
fn serde_round_trip_of_every_report_type() {
    fn rt<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let s = serde_json::to_string_pretty(v).unwrap();
        let back: T = serde_json::from_str(&s).unwrap();
        assert_eq!(&back, v);
    }
    let run = sample_run(false);
    rt(&run);
    rt(&sample_run(true));
    rt(&sample_sweep());
    rt(&sample_bench(1.0, 1.0));
    rt(&run.latencies[&OpKind::Fetch].percentiles());
    rt(&run.anomalies[0]);
    rt(&run.timeline[0]);
    rt(&run.faults[0]);
    rt(&run.nodes[0]);
    rt(&NodeState::Partitioned);
    rt(&sample_sweep().runs[0]);
    rt(&sample_sweep().per_scenario[0]);
    rt(&sample_bench(1.0, 1.0).steps[0]);
    let cmp = compare(
        &sample_bench(1.0, 1.0),
        &sample_bench(1.5, 1.0),
        &Thresholds::default(),
    );
    rt(&cmp);
    rt(&Thresholds::default());
    // Files too.
    let dir = tempfile::tempdir().unwrap();
    let p = write_json(dir.path(), "run", &run).unwrap();
    assert!(p.ends_with("run.json"));
    let back: RunReport = read_json(&p).unwrap();
    assert_eq!(back, run);
}

#[test]
fn sweep_rows_are_computed() {
    let s = sample_sweep();
    assert_eq!(s.per_scenario.len(), 2);
    let crash = &s.per_scenario[0];
    assert_eq!(crash.scenario, "crash-restart");
    assert_eq!((crash.runs, crash.passes, crash.fails), (2, 2, 0));
    assert!(crash.anomaly_counts.is_empty());
    let part = &s.per_scenario[1];
    assert_eq!((part.runs, part.passes, part.fails), (4, 2, 2));
    assert_eq!(part.anomaly_counts["lost-write"], 2);
    assert_eq!(s.failures().count(), 2);
}

#[test]
fn charts_render_to_svg_and_png() {
    let run = sample_run(false);
    let dir = tempfile::tempdir().unwrap();
    let files = [
        render(&LatencyChart::from_run(&run), dir.path(), "lat").unwrap(),
        render(&TimelineChart::from_run(&run), dir.path(), "tl").unwrap(),
        render(&NodeTimelineChart::from_run(&run), dir.path(), "nodes").unwrap(),
        render(
            &LatencyChart::from_bench(&sample_bench(1.0, 1.0)),
            dir.path(),
            "bench",
        )
        .unwrap(),
    ];
    let sizes = [(1000, 560), (1100, 720), (1000, 170 + 44 * 3), (1000, 560)];
    for (f, size) in files.iter().zip(sizes) {
        let svg = fs::read_to_string(&f.svg).unwrap();
        assert!(
            svg.len() > 5_000,
            "{} is {} bytes",
            f.svg.display(),
            svg.len()
        );
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        let png = fs::read(&f.png).unwrap();
        assert!(
            png.len() > 10_000,
            "{} is {} bytes",
            f.png.display(),
            png.len()
        );
        assert_eq!(png_dims(&png), size);
        // Antialiased text and several line colours: far more than a handful of colours.
        assert!(png_colours(&png) > 50, "{} looks blank", f.png.display());
    }
    let svg = fs::read_to_string(&files[0].svg).unwrap();
    for label in [
        "percentile",
        "latency (ms",
        "99.99%",
        "produce ack",
        "end-to-end",
        "fetch",
        "max",
    ] {
        assert!(svg.contains(label), "latency svg lacks {label:?}");
    }
    let svg = fs::read_to_string(&files[1].svg).unwrap();
    for label in [
        "simulated time (s)",
        "acked records/s",
        "p99 latency (ms",
        "crash",
        "partition",
        "throughput",
    ] {
        assert!(svg.contains(label), "timeline svg lacks {label:?}");
    }
    let svg = fs::read_to_string(&files[2].svg).unwrap();
    for label in ["n1", "n3", "partitioned", "paused", "down"] {
        assert!(svg.contains(label), "node svg lacks {label:?}");
    }
}

#[test]
fn charts_of_empty_runs_still_render() {
    let mut run = sample_run(true);
    run.latencies.clear();
    run.timeline.clear();
    run.faults.clear();
    run.nodes.clear();
    run.simulated_ms = 0;
    assert!(render_svg(&LatencyChart::from_run(&run))
        .unwrap()
        .contains("no latencies"));
    png_dims(&render_png(&TimelineChart::from_run(&run)).unwrap());
    png_dims(&render_png(&NodeTimelineChart::from_run(&run)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    assert!(write_run_page(dir.path(), &run).unwrap().exists());
}

#[test]
fn run_page_escapes_and_links_charts() {
    let dir = tempfile::tempdir().unwrap();
    let run = sample_run(false);
    let page = write_run_page(dir.path(), &run).unwrap();
    assert_eq!(page.file_name().unwrap(), "run-partition-leader-0xc.html");
    let html = fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script>"), "unescaped script tag");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("FAIL"));
    assert!(html.contains("<pre>stormlog replay --scenario partition-leader --seed 0xc</pre>"));
    for f in ["latency", "timeline", "nodes"] {
        let png = format!("run-partition-leader-0xc-{f}.png");
        let svg = format!("run-partition-leader-0xc-{f}.svg");
        assert!(
            html.contains(&format!("<img src=\"{png}\"")),
            "no img {png}"
        );
        assert!(html.contains(&format!("href=\"{svg}\"")), "no link {svg}");
        assert!(dir.path().join(&png).exists() && dir.path().join(&svg).exists());
    }
    assert!(dir.path().join("run-partition-leader-0xc.json").exists());
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

#[test]
fn sweep_page_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sample_sweep();
    let sp = write_sweep_page(dir.path(), &sweep).unwrap();
    let html = fs::read_to_string(&sp).unwrap();
    assert!(html.contains("lost-write: &lt;b&gt;offset&lt;/b&gt; 17"));
    assert!(!html.contains("<b>offset"));
    assert!(html.contains("stormlog replay --seed 0x3"));
    assert!(html.contains("href=\"run-partition-leader-0x3.html\""));
    assert!(html.contains("crash-restart"));
    assert!(html.contains("lost-write × 2"));
    let rp = write_run_page(dir.path(), &sample_run(false)).unwrap();
    let mut other = sample_run(true);
    other.seed_hex = "0xd".into();
    let rp2 = write_run_page(dir.path(), &other).unwrap();
    let bp = write_bench_page(dir.path(), &sample_bench(1.0, 1.0)).unwrap();
    let idx = write_index(dir.path()).unwrap();
    let html = fs::read_to_string(&idx).unwrap();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for p in [&sp, &rp, &rp2, &bp] {
        assert!(
            html.contains(&format!("href=\"{}\"", name(p))),
            "index lacks {}",
            name(p)
        );
    }
    // Newest (greatest name) first.
    let a = html.find(&name(&rp2)).unwrap();
    let b = html.find(&name(&rp)).unwrap();
    assert!(a < b, "run pages not sorted newest first");
    assert!(!html.contains("index.html\">index"));
}

#[test]
fn compare_flags_regressions_and_passes_equal_runs() {
    let t = Thresholds::default();
    let base = sample_bench(1.0, 1.0);
    let same = compare(&base, &base.clone(), &t);
    assert!(!same.has_regression(), "{}", same.to_table());
    assert!(same.to_table().contains("no regressions"));

    // p99 up 20%: regression on each step's p99.
    let slower = compare(&base, &sample_bench(1.2, 1.0), &t);
    assert!(slower.has_regression());
    let regs: Vec<_> = slower.regressions().map(|d| d.metric.clone()).collect();
    assert_eq!(regs.len(), 3, "{regs:?}");
    assert!(regs.iter().all(|m| m.ends_with("p99 ms")));
    assert!(slower.to_table().contains("REGRESSION"));
    assert!(slower.to_table().contains("+20.0%"));

    // p99 up 5% and throughput down 3%: within thresholds.
    assert!(!compare(&base, &sample_bench(1.05, 0.97), &t).has_regression());
    // throughput down 10%: regression.
    let lower = compare(&base, &sample_bench(1.0, 0.9), &t);
    assert_eq!(lower.regressions().count(), 3);
    // p99 better: not a regression.
    assert!(!compare(&base, &sample_bench(0.5, 1.2), &t).has_regression());
    // Configurable thresholds.
    let loose = Thresholds {
        latency_up_pct: 25.0,
        ..t
    };
    assert!(!compare(&base, &sample_bench(1.2, 1.0), &loose).has_regression());

    // Runs compare too, and from files.
    let run = sample_run(true);
    assert!(!compare(&run, &run.clone(), &t).has_regression());
    let mut worse = run.clone();
    for b in &mut worse.timeline {
        b.acked /= 2;
    }
    assert!(compare(&run, &worse, &t).has_regression());
    let dir = tempfile::tempdir().unwrap();
    let o = write_json(dir.path(), "old", &base).unwrap();
    let n = write_json(dir.path(), "new", &sample_bench(1.2, 1.0)).unwrap();
    assert!(compare_files(&o, &n, &t).unwrap().has_regression());
    assert!(!compare_files(&o, &o, &t).unwrap().has_regression());
    let r = write_json(dir.path(), "run", &run).unwrap();
    assert!(!compare_files(&r, &r, &t).unwrap().has_regression());
    assert!(compare_files(&o, &r, &t).is_err());
}

/// Writes a full example report set to $REPORTS_EXAMPLE_DIR (when set) for people to look at.
#[test]
fn example_report_set() {
    let Some(dir) = std::env::var_os("REPORTS_EXAMPLE_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    write_run_page(dir, &sample_run(false)).unwrap();
    let mut ok = sample_run(true);
    ok.seed = 0x2a;
    ok.seed_hex = "0x2a".into();
    write_run_page(dir, &ok).unwrap();
    // A long nemesis run: many short faults of several kinds, five nodes.
    let mut busy = sample_run(false);
    busy.scenario = "nemesis-mix".into();
    busy.simulated_ms = 600_000;
    let kinds = ["partition", "crash", "pause", "slow-disk", "clock-skew"];
    busy.faults = (0..40u64)
        .map(|i| FaultWindow {
            start_ms: 5_000 + i * 14_500,
            end_ms: 5_000 + i * 14_500 + 3_000 + (i % 4) * 1_500,
            label: format!("{} #{i}", kinds[(i % 5) as usize]),
            node: (i % 5) as u32 + 1,
        })
        .collect();
    busy.timeline = (0..600u64)
        .map(|s| TimeBucket {
            start_ms: s * 1000,
            acked: 4000 + (s * 37 % 900),
            p99_ms: 3.0 + (s * 13 % 50) as f64 / 10.0,
        })
        .collect();
    busy.nodes = (1..=5)
        .map(|n| NodeTimeline {
            name: format!("broker-{n}"),
            intervals: vec![
                (0, 100_000 * n, NodeState::Up),
                (100_000 * n, 100_000 * n + 20_000, NodeState::Down),
                (100_000 * n + 20_000, 600_000, NodeState::Up),
            ],
        })
        .collect();
    write_run_page(dir, &busy).unwrap();
    write_sweep_page(dir, &sample_sweep()).unwrap();
    write_bench_page(dir, &sample_bench(1.0, 1.0)).unwrap();
    println!("{}", write_index(dir).unwrap().display());
}
