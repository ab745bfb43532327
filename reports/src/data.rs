//! Plain report data: what the simulator fills in and the reports read.
//!
//! Everything here is `serde` (JSON) so reports can be stored, compared and re-rendered.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

const NANOS_PER_MS: f64 = 1_000_000.0;

/// Latency histogram in nanoseconds (3 significant digits, auto-resizing).
///
/// Serialized as the HdrHistogram V2 deflate encoding in base64 (the `HISTF...` strings
/// that HdrHistogram tools in other languages read too); round-trips exactly.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
}

/// Latency percentiles in milliseconds, plus the number of recorded values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    /// (quantile, ms) points for the latency-by-percentile chart, `max` excluded.
    pub fn points(&self) -> Vec<(f64, f64)> {
        vec![
            (0.5, self.p50),
            (0.75, self.p75),
            (0.95, self.p95),
            (0.99, self.p99),
            (0.999, self.p999),
            (0.9999, self.p9999),
        ]
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        let mut hist = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        hist.auto(true);
        Self { hist }
    }

    /// Records one latency in nanoseconds. Zero is recorded as is.
    pub fn record(&mut self, nanos: u64) {
        // Auto-resize makes this infallible for any u64 the histogram can represent.
        let _ = self.hist.record(nanos);
    }

    /// Records `count` occurrences of one latency.
    pub fn record_n(&mut self, nanos: u64, count: u64) {
        let _ = self.hist.record_n(nanos, count);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.hist
            .add(&other.hist)
            .expect("auto-resizing histograms always merge");
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Latency at quantile `q` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / NANOS_PER_MS
    }

    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.max() as f64 / NANOS_PER_MS
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.hist.len(),
            p50: self.quantile_ms(0.5),
            p75: self.quantile_ms(0.75),
            p95: self.quantile_ms(0.95),
            p99: self.quantile_ms(0.99),
            p999: self.quantile_ms(0.999),
            p9999: self.quantile_ms(0.9999),
            max: self.max_ms(),
        }
    }

    /// (quantile, ms) points from p50 to p99.99 on a fine log grid (for a smooth chart line).
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        // x = -log10(1 - q) from log10(2) (p50) to 4 (p99.99), 24 steps per decade.
        let start = 2f64.log10();
        let steps = ((4.0 - start) * 24.0).ceil() as usize;
        (0..=steps)
            .map(|i| {
                let x = start + (4.0 - start) * i as f64 / steps as f64;
                let q = 1.0 - 10f64.powf(-x);
                (q, self.quantile_ms(q))
            })
            .collect()
    }

    /// The underlying hdrhistogram.
    pub fn inner(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The V2 deflate encoding in base64.
    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut buf)
            .expect("serializing into a Vec cannot fail");
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// Reads the V2 (plain or deflate) encoding in base64.
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| format!("latency histogram: bad base64: {e}"))?;
        let mut hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("latency histogram: bad V2 encoding: {e:?}"))?;
        hist.auto(true);
        Ok(Self { hist })
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.hist == other.hist
    }
}

impl From<Histogram<u64>> for LatencyHistogram {
    fn from(mut hist: Histogram<u64>) -> Self {
        hist.auto(true);
        Self { hist }
    }
}

impl Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// The operations whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpKind {
    #[serde(rename = "produce ack")]
    ProduceAck,
    #[serde(rename = "end-to-end")]
    EndToEnd,
    #[serde(rename = "fetch")]
    Fetch,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::ProduceAck, OpKind::EndToEnd, OpKind::Fetch];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::ProduceAck => "produce ack",
            OpKind::EndToEnd => "end-to-end",
            OpKind::Fetch => "fetch",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "produce ack" | "produce-ack" | "produce_ack" => Ok(OpKind::ProduceAck),
            "end-to-end" | "end_to_end" | "e2e" => Ok(OpKind::EndToEnd),
            "fetch" => Ok(OpKind::Fetch),
            _ => Err(format!("unknown op kind {s:?}")),
        }
    }
}

/// One anomaly found by a checker, with a human explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyRow {
    pub kind: String,
    pub explanation: String,
}

/// Throughput and tail latency of one slice of simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeBucket {
    pub start_ms: u64,
    /// Records acknowledged within the bucket.
    pub acked: u64,
    pub p99_ms: f64,
}

/// A fault active over `[start_ms, end_ms)` of simulated time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub start_ms: u64,
    pub end_ms: u64,
    pub label: String,
    pub node: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Down,
    Paused,
    Partitioned,
}

impl NodeState {
    pub const ALL: [NodeState; 4] = [
        NodeState::Up,
        NodeState::Down,
        NodeState::Paused,
        NodeState::Partitioned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Paused => "paused",
            NodeState::Partitioned => "partitioned",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node's state over simulated time: `(start_ms, end_ms, state)` intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTimeline {
    pub name: String,
    pub intervals: Vec<(u64, u64, NodeState)>,
}

/// Everything about one seeded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub seed_hex: String,
    pub pass: bool,
    pub reasons: Vec<String>,
    pub anomalies: Vec<AnomalyRow>,
    pub replay_command: String,
    pub trace_hash: String,
    pub simulated_ms: u64,
    pub latencies: BTreeMap<OpKind, LatencyHistogram>,
    pub timeline: Vec<TimeBucket>,
    pub faults: Vec<FaultWindow>,
    pub nodes: Vec<NodeTimeline>,
}

impl RunReport {
    /// Width of the timeline buckets in ms: the smallest gap between consecutive bucket
    /// starts (1000 when there are fewer than two buckets).
    pub fn bucket_ms(&self) -> u64 {
        bucket_width_ms(&self.timeline)
    }

    /// Acknowledged records per second of simulated time over the whole run.
    pub fn throughput(&self) -> f64 {
        let acked: u64 = self.timeline.iter().map(|b| b.acked).sum();
        if self.simulated_ms == 0 {
            return 0.0;
        }
        acked as f64 * 1000.0 / self.simulated_ms as f64
    }

    /// The base file name of this run's page and charts: `run-<scenario>-<seed_hex>`.
    pub fn page_stem(&self) -> String {
        format!(
            "run-{}-{}",
            file_safe(&self.scenario),
            file_safe(&self.seed_hex)
        )
    }
}

pub(crate) fn bucket_width_ms(timeline: &[TimeBucket]) -> u64 {
    timeline
        .windows(2)
        .filter_map(|w| w[1].start_ms.checked_sub(w[0].start_ms))
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(1000)
}

/// Replaces everything but `[A-Za-z0-9._-]` with `_` (for file names).
pub fn file_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".to_string()
    } else {
        out
    }
}

/// One run of a sweep, in brief.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub scenario: String,
    pub seed_hex: String,
    pub pass: bool,
    pub anomaly_kinds: Vec<String>,
    pub first_reason: String,
    pub replay_command: String,
    /// Relative link to the run's page, when one was written.
    pub run_page: Option<String>,
}

/// Counts for one scenario of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRow {
    pub scenario: String,
    pub runs: u64,
    pub passes: u64,
    pub fails: u64,
    /// Runs in which each anomaly kind was seen (a run counts once per kind).
    pub anomaly_counts: BTreeMap<String, u64>,
}

/// A sweep over many seeds (and possibly many scenarios).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub title: String,
    pub runs: Vec<RunSummary>,
    /// Computed from `runs` by [`SweepReport::new`] (and recomputed by the sweep page).
    #[serde(default)]
    pub per_scenario: Vec<ScenarioRow>,
}

impl SweepReport {
    pub fn new(title: impl Into<String>, runs: Vec<RunSummary>) -> Self {
        let per_scenario = Self::compute_per_scenario(&runs);
        Self {
            title: title.into(),
            runs,
            per_scenario,
        }
    }

    /// Rows per scenario, sorted by scenario name.
    pub fn compute_per_scenario(runs: &[RunSummary]) -> Vec<ScenarioRow> {
        let mut rows: BTreeMap<&str, ScenarioRow> = BTreeMap::new();
        for r in runs {
            let row = rows.entry(&r.scenario).or_insert_with(|| ScenarioRow {
                scenario: r.scenario.clone(),
                runs: 0,
                passes: 0,
                fails: 0,
                anomaly_counts: BTreeMap::new(),
            });
            row.runs += 1;
            if r.pass {
                row.passes += 1;
            } else {
                row.fails += 1;
            }
            let mut kinds: Vec<&String> = r.anomaly_kinds.iter().collect();
            kinds.sort();
            kinds.dedup();
            for k in kinds {
                *row.anomaly_counts.entry(k.clone()).or_insert(0) += 1;
            }
        }
        rows.into_values().collect()
    }

    pub fn failures(&self) -> impl Iterator<Item = &RunSummary> {
        self.runs.iter().filter(|r| !r.pass)
    }
}

/// One load step of a benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchStep {
    /// Offered load, records/s.
    pub target_rate: f64,
    /// Acknowledged records/s.
    pub achieved_rate: f64,
    pub percentiles: Percentiles,
}

/// A benchmark: latency at a series of offered loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub name: String,
    pub workload: String,
    pub steps: Vec<BenchStep>,
}
