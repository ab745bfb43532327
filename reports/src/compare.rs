//! Comparing a result against a stored baseline and naming regressions.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::charts::fmt_num;
use crate::data::{BenchReport, Percentiles, RunReport};

/// Which way a metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Latency (ms): higher is worse; judged against `Thresholds::latency_up_pct`.
    Latency,
    /// Throughput (records/s): lower is worse; judged against `Thresholds::throughput_down_pct`.
    Throughput,
    /// Shown, never a regression (counts, maxima).
    Info,
}

/// One named number of a baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub kind: MetricKind,
}

/// Anything that can be compared against a baseline: a flat list of named metrics.
/// Metrics are matched by name between old and new.
pub trait Baseline {
    fn metrics(&self) -> Vec<Metric>;
}

fn latency_metrics(out: &mut Vec<Metric>, prefix: &str, p: &Percentiles) {
    let mut push = |n: &str, v: f64, kind| {
        out.push(Metric {
            name: format!("{prefix}{n}"),
            value: v,
            kind,
        })
    };
    push("p50 ms", p.p50, MetricKind::Latency);
    push("p99 ms", p.p99, MetricKind::Latency);
    push("p99.9 ms", p.p999, MetricKind::Latency);
    push("max ms", p.max, MetricKind::Info);
}

impl Baseline for BenchReport {
    /// Per step (keyed by offered rate): achieved rate, p50, p99, p99.9, max.
    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for s in &self.steps {
            let prefix = format!("@{} rec/s ", fmt_num(s.target_rate));
            out.push(Metric {
                name: format!("{prefix}achieved rec/s"),
                value: s.achieved_rate,
                kind: MetricKind::Throughput,
            });
            latency_metrics(&mut out, &prefix, &s.percentiles);
        }
        out
    }
}

impl Baseline for RunReport {
    /// Throughput over the run, then p50, p99, p99.9, max per operation kind.
    fn metrics(&self) -> Vec<Metric> {
        let mut out = vec![Metric {
            name: "throughput rec/s".into(),
            value: self.throughput(),
            kind: MetricKind::Throughput,
        }];
        for (k, h) in &self.latencies {
            latency_metrics(&mut out, &format!("{k} "), &h.percentiles());
        }
        out
    }
}

impl Baseline for Vec<Metric> {
    fn metrics(&self) -> Vec<Metric> {
        self.clone()
    }
}

/// When a change is a regression.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A latency metric going up by more than this percentage is a regression (default 10).
    pub latency_up_pct: f64,
    /// Throughput going down by more than this percentage is a regression (default 5).
    pub throughput_down_pct: f64,
    /// Latency increases smaller than this many ms are never regressions (default 0), so
    /// that sub-millisecond noise on tiny values is not flagged.
    pub latency_floor_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            latency_up_pct: 10.0,
            throughput_down_pct: 5.0,
            latency_floor_ms: 0.0,
        }
    }
}

/// One compared metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub metric: String,
    /// `None` when the metric is only in the new result.
    pub old: Option<f64>,
    /// `None` when the metric is missing from the new result.
    pub new: Option<f64>,
    /// (new - old) / old × 100; `None` when either side is missing or old is 0 (and new is not).
    pub change_pct: Option<f64>,
    pub regression: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub rows: Vec<Delta>,
}

impl Comparison {
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.regression)
    }

    pub fn regressions(&self) -> impl Iterator<Item = &Delta> {
        self.rows.iter().filter(|r| r.regression)
    }

    /// A plain-text table, one row per metric, regressions marked `REGRESSION`.
    pub fn to_table(&self) -> String {
        let headers = ["metric", "old", "new", "change", ""];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|d| {
                [
                    d.metric.clone(),
                    d.old.map(fmt_num).unwrap_or_else(|| "-".into()),
                    d.new.map(fmt_num).unwrap_or_else(|| "-".into()),
                    d.change_pct
                        .map(|c| format!("{c:+.1}%"))
                        .unwrap_or_else(|| "-".into()),
                    if d.regression {
                        "REGRESSION".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        let mut w = headers.map(|h| h.chars().count());
        for row in &cells {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, row: [&str; 5]| {
            let _ = writeln!(
                out,
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            );
        };
        line(&mut out, headers);
        for row in &cells {
            line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
        }
        let n = self.regressions().count();
        let _ = writeln!(
            out,
            "{}",
            if n == 0 {
                "no regressions".to_string()
            } else {
                format!("{n} regression(s)")
            }
        );
        out.lines()
            .map(|l| l.trim_end().to_string() + "\n")
            .collect()
    }

    /// Prints [`Comparison::to_table`] to stdout.
    pub fn print_table(&self) {
        print!("{}", self.to_table());
    }
}

/// Compares `new` against `old`. Metrics are matched by name; a metric missing from `new`
/// is reported (and is not a regression), one only in `new` is listed at the end.
pub fn compare<B: Baseline + ?Sized>(old: &B, new: &B, t: &Thresholds) -> Comparison {
    let old_m = old.metrics();
    let new_m = new.metrics();
    let mut rows = Vec::new();
    for o in &old_m {
        let n = new_m.iter().find(|m| m.name == o.name);
        let nv = n.map(|m| m.value);
        let change_pct = match nv {
            Some(nv) if o.value != 0.0 => Some((nv - o.value) / o.value * 100.0),
            Some(0.0) => Some(0.0),
            _ => None,
        };
        let regression = match (nv, o.kind) {
            (Some(nv), MetricKind::Latency) => {
                let up = nv - o.value;
                up > t.latency_floor_ms
                    && (o.value == 0.0 || up / o.value * 100.0 > t.latency_up_pct)
            }
            (Some(nv), MetricKind::Throughput) => {
                o.value > 0.0 && (o.value - nv) / o.value * 100.0 > t.throughput_down_pct
            }
            _ => false,
        };
        rows.push(Delta {
            metric: o.name.clone(),
            old: Some(o.value),
            new: nv,
            change_pct,
            regression,
        });
    }
    for n in &new_m {
        if !old_m.iter().any(|o| o.name == n.name) {
            rows.push(Delta {
                metric: n.name.clone(),
                old: None,
                new: Some(n.value),
                change_pct: None,
                regression: false,
            });
        }
    }
    Comparison { rows }
}

/// A report file of either kind, as the CLI's `report --compare OLD NEW` reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnyReport {
    Bench(BenchReport),
    Run(Box<RunReport>),
}

impl Baseline for AnyReport {
    fn metrics(&self) -> Vec<Metric> {
        match self {
            AnyReport::Bench(b) => b.metrics(),
            AnyReport::Run(r) => r.metrics(),
        }
    }
}

/// Reads two JSON reports (bench or run, of the same kind) and compares them.
pub fn compare_files(old: &Path, new: &Path, t: &Thresholds) -> io::Result<Comparison> {
    let o: AnyReport = crate::html::read_json(old)?;
    let n: AnyReport = crate::html::read_json(new)?;
    match (&o, &n) {
        (AnyReport::Bench(_), AnyReport::Bench(_)) | (AnyReport::Run(_), AnyReport::Run(_)) => {
            Ok(compare(&o, &n, t))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} and {} are reports of different kinds (bench vs run)",
                old.display(),
                new.display()
            ),
        )),
    }
}
