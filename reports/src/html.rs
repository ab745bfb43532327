//! Static HTML pages (inline CSS, no scripts) and JSON files.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::charts::{self, fmt_num, LatencyChart, NodeTimelineChart, TimelineChart};
use crate::data::{file_safe, BenchReport, RunReport, SweepReport};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.7em; overflow-x: auto; white-space: pre-wrap; }
.pass { color: #1b7f2a; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
.verdict { font-size: 1.3em; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #777; }
code { background: #f6f8fa; padding: 0 0.2em; }
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n{}\n\
         <p class=\"muted\"><a href=\"index.html\">all reports</a></p>\n</body>\n</html>\n",
        escape(title),
        CSS,
        body
    )
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "<span class=\"pass\">PASS</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn chart_html(out: &mut String, heading: &str, files: &charts::ChartFiles) {
    let png = escape(&file_name(&files.png));
    let svg = escape(&file_name(&files.svg));
    let _ = write!(
        out,
        "<h2>{}</h2>\n<p><a href=\"{svg}\"><img src=\"{png}\" alt=\"{}\"></a><br>\
         <a href=\"{svg}\">SVG</a> · <a href=\"{png}\">PNG</a></p>\n",
        escape(heading),
        escape(heading)
    );
}

/// Writes `dir/<name>.json` (pretty-printed); `name` may already end in `.json`.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let name = if name.ends_with(".json") {
        name.to_string()
    } else {
        format!("{name}.json")
    };
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    fs::write(&path, text + "\n")?;
    Ok(path)
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<T> {
    let text = fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Writes the page of one run (`dir/run-<scenario>-<seed_hex>.html`), its charts
/// (PNG and SVG) and its JSON next to it; returns the page's path.
pub fn write_run_page(dir: &Path, run: &RunReport) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let stem = run.page_stem();
    write_json(dir, &stem, run)?;
    let latency = charts::render(
        &LatencyChart::from_run(run),
        dir,
        &format!("{stem}-latency"),
    )?;
    let timeline = charts::render(
        &TimelineChart::from_run(run),
        dir,
        &format!("{stem}-timeline"),
    )?;
    let nodes = if run.nodes.is_empty() {
        None
    } else {
        Some(charts::render(
            &NodeTimelineChart::from_run(run),
            dir,
            &format!("{stem}-nodes"),
        )?)
    };

    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} <span class=\"muted\">seed {}</span></h1>\n<p class=\"verdict\">{}</p>\n",
        escape(&run.scenario),
        escape(&run.seed_hex),
        verdict(run.pass)
    );
    b.push_str("<table>\n");
    let rows = [
        ("scenario", escape(&run.scenario)),
        (
            "seed",
            format!(
                "{} <span class=\"muted\">({})</span>",
                escape(&run.seed_hex),
                run.seed
            ),
        ),
        (
            "simulated time",
            format!("{} s", fmt_num(run.simulated_ms as f64 / 1000.0)),
        ),
        (
            "throughput",
            format!("{} acked records/s", fmt_num(run.throughput())),
        ),
        (
            "trace hash",
            format!("<code>{}</code>", escape(&run.trace_hash)),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(b, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    b.push_str("</table>\n");

    b.push_str("<h2>Replay</h2>\n");
    let _ = writeln!(b, "<pre>{}</pre>", escape(&run.replay_command));

    if !run.reasons.is_empty() {
        b.push_str("<h2>Reasons</h2>\n<ul>\n");
        for r in &run.reasons {
            let _ = writeln!(b, "<li>{}</li>", escape(r));
        }
        b.push_str("</ul>\n");
    }

    b.push_str("<h2>Anomalies</h2>\n");
    if run.anomalies.is_empty() {
        b.push_str("<p>None found.</p>\n");
    } else {
        b.push_str("<table>\n<tr><th>kind</th><th>explanation</th></tr>\n");
        for a in &run.anomalies {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&a.kind),
                escape(&a.explanation)
            );
        }
        b.push_str("</table>\n");
    }

    if !run.latencies.is_empty() {
        b.push_str("<h2>Latency percentiles (ms)</h2>\n<table>\n<tr><th>operation</th><th>count</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>\n");
        for (k, h) in &run.latencies {
            let p = h.percentiles();
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=\"num\">{}</td>",
                escape(k.as_str()),
                p.count
            );
            for v in [p.p50, p.p75, p.p95, p.p99, p.p999, p.p9999, p.max] {
                let _ = write!(b, "<td class=\"num\">{}</td>", fmt_num(v));
            }
            b.push_str("</tr>\n");
        }
        b.push_str("</table>\n");
    }

    chart_html(&mut b, "Latency by percentile", &latency);
    chart_html(&mut b, "Throughput and p99 latency over time", &timeline);
    if let Some(n) = &nodes {
        chart_html(&mut b, "Node states", n);
    }

    if !run.faults.is_empty() {
        b.push_str("<h2>Fault windows</h2>\n<table>\n<tr><th>start (ms)</th><th>end (ms)</th><th>node</th><th>fault</th></tr>\n");
        for f in &run.faults {
            let _ = writeln!(
                b,
                "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                f.start_ms,
                f.end_ms,
                f.node,
                escape(&f.label)
            );
        }
        b.push_str("</table>\n");
    }
    let _ = writeln!(
        b,
        "<p class=\"muted\">Data: <a href=\"{0}.json\">{0}.json</a></p>",
        escape(&stem)
    );

    let title = format!(
        "{} seed {} — {}",
        run.scenario,
        run.seed_hex,
        if run.pass { "PASS" } else { "FAIL" }
    );
    let path = dir.join(format!("{stem}.html"));
    fs::write(&path, page(&title, &b))?;
    Ok(path)
}

/// Writes the page of a sweep (`dir/sweep-<title>.html`) and its JSON; returns the page's path.
pub fn write_sweep_page(dir: &Path, sweep: &SweepReport) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let stem = format!("sweep-{}", file_safe(&sweep.title));
    write_json(dir, &stem, sweep)?;
    let rows = SweepReport::compute_per_scenario(&sweep.runs);
    let total = sweep.runs.len();
    let fails = sweep.runs.iter().filter(|r| !r.pass).count();

    let mut b = String::new();
    let _ = writeln!(
        b,
        "<h1>{}</h1>\n<p class=\"verdict\">{} — {} runs, {} passed, {} failed</p>",
        escape(&sweep.title),
        verdict(fails == 0),
        total,
        total - fails,
        fails
    );

    b.push_str("<h2>Per scenario</h2>\n<table>\n<tr><th>scenario</th><th>runs</th><th>passed</th><th>failed</th><th>anomalies (runs by kind)</th></tr>\n");
    for r in &rows {
        let anomalies = if r.anomaly_counts.is_empty() {
            "<span class=\"muted\">none</span>".to_string()
        } else {
            r.anomaly_counts
                .iter()
                .map(|(k, n)| format!("{} × {}", escape(k), n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&r.scenario),
            r.runs,
            r.passes,
            if r.fails > 0 {
                format!("<span class=\"fail\">{}</span>", r.fails)
            } else {
                "0".to_string()
            },
            anomalies
        );
    }
    b.push_str("</table>\n");

    // Anomaly kinds over the whole sweep.
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &rows {
        for (k, n) in &r.anomaly_counts {
            *kinds.entry(k.clone()).or_insert(0) += n;
        }
    }
    if !kinds.is_empty() {
        b.push_str("<h2>Anomalies by kind</h2>\n<table>\n<tr><th>kind</th><th>runs</th></tr>\n");
        for (k, n) in &kinds {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(k),
                n
            );
        }
        b.push_str("</table>\n");
    }

    b.push_str("<h2>Failing seeds</h2>\n");
    if fails == 0 {
        b.push_str("<p>None.</p>\n");
    } else {
        b.push_str("<table>\n<tr><th>scenario</th><th>seed</th><th>anomalies</th><th>first reason</th><th>replay</th></tr>\n");
        for r in sweep.runs.iter().filter(|r| !r.pass) {
            let seed = match &r.run_page {
                Some(p) => format!("<a href=\"{}\">{}</a>", escape(p), escape(&r.seed_hex)),
                None => escape(&r.seed_hex),
            };
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                escape(&r.scenario),
                seed,
                escape(&r.anomaly_kinds.join(", ")),
                escape(&r.first_reason),
                escape(&r.replay_command)
            );
        }
        b.push_str("</table>\n");
    }
    let _ = writeln!(
        b,
        "<p class=\"muted\">Data: <a href=\"{0}.json\">{0}.json</a></p>",
        escape(&stem)
    );

    let path = dir.join(format!("{stem}.html"));
    fs::write(&path, page(&sweep.title, &b))?;
    Ok(path)
}

/// Writes the page of a benchmark (`dir/bench-<name>.html`): a latency-by-percentile chart
/// with one line per load step, a table of the steps, and the JSON.
pub fn write_bench_page(dir: &Path, bench: &BenchReport) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let stem = format!("bench-{}", file_safe(&bench.name));
    write_json(dir, &stem, bench)?;
    let latency = charts::render(
        &LatencyChart::from_bench(bench),
        dir,
        &format!("{stem}-latency"),
    )?;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<h1>{}</h1>\n<p>workload: {}</p>",
        escape(&bench.name),
        escape(&bench.workload)
    );
    b.push_str("<table>\n<tr><th>offered (rec/s)</th><th>achieved (rec/s)</th><th>count</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>\n");
    for s in &bench.steps {
        let p = &s.percentiles;
        let _ = write!(
            b,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            fmt_num(s.target_rate),
            fmt_num(s.achieved_rate),
            p.count
        );
        for v in [p.p50, p.p75, p.p95, p.p99, p.p999, p.p9999, p.max] {
            let _ = write!(b, "<td class=\"num\">{}</td>", fmt_num(v));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</table>\n<p class=\"muted\">latencies in ms</p>\n");
    chart_html(&mut b, "Latency by percentile", &latency);
    let path = dir.join(format!("{stem}.html"));
    fs::write(&path, page(&bench.name, &b))?;
    Ok(path)
}

/// Writes `dir/index.html` linking every run, sweep and bench page in `dir`, each group
/// sorted by file name, newest (greatest name) first; returns its path.
pub fn write_index(dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let mut sweeps = Vec::new();
    let mut runs = Vec::new();
    let mut benches = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".html") || name == "index.html" {
            continue;
        }
        if name.starts_with("sweep-") {
            sweeps.push(name);
        } else if name.starts_with("run-") {
            runs.push(name);
        } else if name.starts_with("bench-") {
            benches.push(name);
        }
    }
    let mut b = String::from("<h1>Stormlog reports</h1>\n");
    for (heading, mut names) in [("Sweeps", sweeps), ("Runs", runs), ("Benchmarks", benches)] {
        if names.is_empty() {
            continue;
        }
        names.sort_by(|a, b| b.cmp(a));
        let _ = writeln!(b, "<h2>{heading}</h2>\n<ul>");
        for n in &names {
            let label = n.trim_end_matches(".html");
            let _ = writeln!(
                b,
                "<li><a href=\"{}\">{}</a></li>",
                escape(n),
                escape(label)
            );
        }
        b.push_str("</ul>\n");
    }
    let path = dir.join("index.html");
    fs::write(&path, page("Stormlog reports", &b))?;
    Ok(path)
}
