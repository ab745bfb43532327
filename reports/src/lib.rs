//! Stormlog reports: latency histograms, charts (SVG and PNG), static HTML and JSON reports,
//! and comparison against a stored baseline.
//!
//! This crate depends on nothing of Stormlog's: the simulator fills the plain data types of
//! [`data`] and calls [`html::write_run_page`], [`html::write_sweep_page`],
//! [`html::write_index`] and [`compare::compare`].

pub mod charts;
pub mod compare;
pub mod data;
pub mod html;

pub use charts::{render, Chart, ChartFiles, LatencyChart, NodeTimelineChart, TimelineChart};
pub use compare::{compare, compare_files, AnyReport, Baseline, Comparison, Delta, Thresholds};
pub use data::{
    AnomalyRow, BenchReport, BenchStep, FaultWindow, LatencyHistogram, NodeState, NodeTimeline,
    OpKind, Percentiles, RunReport, RunSummary, ScenarioRow, SweepReport, TimeBucket,
};
pub use html::{
    read_json, write_bench_page, write_index, write_json, write_run_page, write_sweep_page,
};
