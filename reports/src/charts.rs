//! Charts drawn with plotters, to SVG and PNG through the same drawing code.
//!
//! Each chart is a value implementing [`Chart`]; [`render`] draws it twice, once on the SVG
//! backend and once on an RGB bitmap that is then encoded as PNG (with the `png` crate, so
//! the `image` crate is not needed). Text uses DejaVu Sans, embedded in the crate and
//! registered with plotters' `ab_glyph` font support, so nothing depends on system fonts.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::data::{
    bucket_width_ms, BenchReport, FaultWindow, LatencyHistogram, NodeState, NodeTimeline,
    Percentiles, RunReport, TimeBucket,
};

static FONT_REGULAR: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");
const FONT: &str = "sans-serif";

/// Registers the embedded fonts with plotters (once per process).
pub fn ensure_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            let _ = register_font(family, FontStyle::Normal, FONT_REGULAR);
            let _ = register_font(family, FontStyle::Bold, FONT_BOLD);
        }
    });
}

/// Error type of drawing on backend `DB`.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something that can be drawn on any plotters backend.
pub trait Chart {
    /// Size in pixels (PNG) and user units (SVG).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// The files one chart was rendered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartFiles {
    pub svg: PathBuf,
    pub png: PathBuf,
}

fn draw_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("drawing chart: {e:?}"))
}

/// Draws `chart` into `dir/stem.svg` and `dir/stem.png`.
pub fn render<C: Chart>(chart: &C, dir: &Path, stem: &str) -> io::Result<ChartFiles> {
    fs::create_dir_all(dir)?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    fs::write(&svg, render_svg(chart)?)?;
    fs::write(&png, render_png(chart)?)?;
    Ok(ChartFiles { svg, png })
}

/// Draws `chart` as an SVG document.
pub fn render_svg<C: Chart>(chart: &C) -> io::Result<String> {
    ensure_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, chart.size()).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        chart.draw(&root).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

/// Draws `chart` as a PNG file's bytes (8-bit RGB).
pub fn render_png<C: Chart>(chart: &C) -> io::Result<Vec<u8>> {
    ensure_fonts();
    let (w, h) = chart.size();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        chart.draw(&root).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(io::Error::other)?;
        writer.write_image_data(&buf).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Line colours, readable on white and distinguishable.
const SERIES_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Fault shading colours (drawn with transparency).
const FAULT_COLORS: [RGBColor; 6] = [
    RGBColor(230, 85, 13),
    RGBColor(117, 107, 177),
    RGBColor(49, 130, 189),
    RGBColor(199, 21, 133),
    RGBColor(128, 128, 0),
    RGBColor(0, 128, 128),
];

fn series_color(i: usize) -> RGBColor {
    SERIES_COLORS[i % SERIES_COLORS.len()]
}

/// Formats a number compactly: at most 3 significant digits after the point, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    let a = v.abs();
    let s = if a >= 1_000_000.0 {
        return format!("{}M", fmt_num(v / 1_000_000.0));
    } else if a >= 10_000.0 {
        return format!("{}k", fmt_num(v / 1000.0));
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let decimals = (-a.log10()).floor() as usize + 3;
        format!("{v:.decimals$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// "Nice" linear ticks (1, 2, 5 × 10^k steps) covering `[lo, hi]`, about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A linear f64 axis whose grid lines and labels sit exactly at the given ticks.
#[derive(Clone, Debug)]
pub struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickAxis {
    pub fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        TickAxis { lo, hi, ticks }
    }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A value axis that is either linear or log10, drawn as a linear axis with custom ticks.
#[derive(Clone, Debug)]
struct ValueAxis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl ValueAxis {
    /// Chooses log scale when positive values span more than `log_ratio`.
    fn fit(values: impl Iterator<Item = f64>, log_ratio: f64) -> ValueAxis {
        let vals: Vec<f64> = values.filter(|v| v.is_finite() && *v >= 0.0).collect();
        let max = vals.iter().cloned().fold(0.0f64, f64::max);
        let min_pos = vals
            .iter()
            .cloned()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        if max <= 0.0 {
            return ValueAxis {
                log: false,
                lo: 0.0,
                hi: 1.0,
                ticks: nice_ticks(0.0, 1.0, 5),
            };
        }
        if min_pos.is_finite() && max / min_pos > log_ratio {
            let lo = min_pos.log10().floor();
            let hi = max.log10().ceil().max(lo + 1.0);
            let mut ticks = Vec::new();
            let decades = (hi - lo) as i32;
            let mults: &[f64] = if decades <= 3 {
                &[1.0, 2.0, 5.0]
            } else {
                &[1.0]
            };
            for k in (lo as i32)..=(hi as i32) {
                for m in mults {
                    let t = (m * 10f64.powi(k)).log10();
                    if t >= lo - 1e-9 && t <= hi + 1e-9 {
                        ticks.push(t);
                    }
                }
            }
            ValueAxis {
                log: true,
                lo,
                hi,
                ticks,
            }
        } else {
            let hi = max * 1.1;
            let ticks = nice_ticks(0.0, hi, 6);
            ValueAxis {
                log: false,
                lo: 0.0,
                hi,
                ticks,
            }
        }
    }

    /// Stretches a linear axis upwards by `factor` (room for labels above the data).
    fn with_headroom(mut self, factor: f64) -> Self {
        if !self.log {
            self.hi *= factor;
            self.ticks = nice_ticks(self.lo, self.hi, 6);
        }
        self
    }

    /// Maps a value to axis coordinates (log10 on a log axis; zero clamps to the bottom).
    fn map(&self, v: f64) -> f64 {
        if self.log {
            if v <= 0.0 {
                self.lo
            } else {
                v.log10().max(self.lo)
            }
        } else {
            v
        }
    }

    fn label(&self, a: f64) -> String {
        if self.log {
            fmt_num(10f64.powf(a))
        } else {
            fmt_num(a)
        }
    }

    fn coord(&self) -> TickAxis {
        TickAxis::new(self.lo, self.hi, self.ticks.clone())
    }
}

fn text_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

fn caption_style() -> TextStyle<'static> {
    (FONT, 20).into_font().style(FontStyle::Bold).color(&BLACK)
}

/// Seconds of simulated time on the x axis, with nice ticks.
fn time_axis(end_ms: u64) -> TickAxis {
    let end_s = (end_ms as f64 / 1000.0).max(0.001);
    TickAxis::new(0.0, end_s, nice_ticks(0.0, end_s, 10))
}

fn fault_palette(faults: &[FaultWindow]) -> BTreeMap<String, RGBColor> {
    let mut m = BTreeMap::new();
    for f in faults {
        let kind = fault_kind(&f.label);
        let n = m.len();
        m.entry(kind)
            .or_insert(FAULT_COLORS[n % FAULT_COLORS.len()]);
    }
    m
}

/// The first word of a fault label ("partition n1|n2" -> "partition"): the colour key.
fn fault_kind(label: &str) -> String {
    label
        .split(|c: char| c.is_whitespace() || c == ':' || c == '(')
        .next()
        .unwrap_or(label)
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Latency by percentile

/// One line of a latency-by-percentile chart.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySeries {
    pub name: String,
    /// (quantile in 0..1, latency ms), quantiles from 0.5 to 0.9999.
    pub points: Vec<(f64, f64)>,
    pub max_ms: Option<f64>,
}

impl LatencySeries {
    pub fn from_histogram(name: impl Into<String>, h: &LatencyHistogram) -> Self {
        LatencySeries {
            name: name.into(),
            points: h.curve(),
            max_ms: (!h.is_empty()).then(|| h.max_ms()),
        }
    }

    pub fn from_percentiles(name: impl Into<String>, p: &Percentiles) -> Self {
        LatencySeries {
            name: name.into(),
            points: p.points(),
            max_ms: Some(p.max),
        }
    }
}

/// Latency against percentile, on an x axis of -log10(1 - q) (50% .. 99.99%, then max).
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyChart {
    pub title: String,
    pub series: Vec<LatencySeries>,
}

/// x position of the "max" column.
const X_MAX: f64 = 4.5;
const X_TICKS: [(f64, &str); 7] = [
    (std::f64::consts::LOG10_2, "50%"),
    (0.602_059_991_327_962_4, "75%"),
    (1.0, "90%"),
    (2.0, "99%"),
    (3.0, "99.9%"),
    (4.0, "99.99%"),
    (X_MAX, "max"),
];

/// The chart x coordinate of quantile `q`: -log10(1 - q), q clamped to [0, 0.9999].
pub fn percentile_x(q: f64) -> f64 {
    -(1.0 - q.clamp(0.0, 0.9999)).log10()
}

impl LatencyChart {
    /// One line per operation kind of a run.
    pub fn from_run(run: &RunReport) -> Self {
        LatencyChart {
            title: format!(
                "Latency by percentile — {} seed {}",
                run.scenario, run.seed_hex
            ),
            series: run
                .latencies
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(k, h)| LatencySeries::from_histogram(k.as_str(), h))
                .collect(),
        }
    }

    /// One line per compared run (name, histogram).
    pub fn compare(title: impl Into<String>, runs: &[(&str, &LatencyHistogram)]) -> Self {
        LatencyChart {
            title: title.into(),
            series: runs
                .iter()
                .map(|(n, h)| LatencySeries::from_histogram(*n, h))
                .collect(),
        }
    }

    /// One line per load step of a benchmark.
    pub fn from_bench(b: &BenchReport) -> Self {
        LatencyChart {
            title: format!("Latency by percentile — {} ({})", b.name, b.workload),
            series: b
                .steps
                .iter()
                .map(|s| {
                    LatencySeries::from_percentiles(
                        format!("{} rec/s offered", fmt_num(s.target_rate)),
                        &s.percentiles,
                    )
                })
                .collect(),
        }
    }
}

impl Chart for LatencyChart {
    fn size(&self) -> (u32, u32) {
        (1000, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let values = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1).chain(s.max_ms));
        let y = ValueAxis::fit(values, 20.0);
        let xr = TickAxis::new(0.2, X_MAX + 0.2, X_TICKS.iter().map(|t| t.0).collect());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, caption_style())
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(xr, y.coord())?;
        let ylabel = |v: &f64| y.label(*v);
        let xlabel = |v: &f64| {
            X_TICKS
                .iter()
                .find(|t| (t.0 - v).abs() < 1e-6)
                .map(|t| t.1.to_string())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc(if y.log {
                "latency (ms, log scale)"
            } else {
                "latency (ms)"
            })
            .x_label_formatter(&xlabel)
            .y_label_formatter(&ylabel)
            .label_style(text_style(15))
            .axis_desc_style(text_style(16))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        if self.series.is_empty() {
            chart.draw_series(std::iter::once(Text::new(
                "no latencies recorded",
                (1.5, y.lo + (y.hi - y.lo) / 2.0),
                text_style(18),
            )))?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = series_color(i);
            let style = color.stroke_width(2);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|(q, ms)| (percentile_x(*q), y.map(*ms)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), style))?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            if let (Some(last), Some(max)) = (pts.last(), s.max_ms) {
                let m = (X_MAX, y.map(max));
                chart.draw_series(DashedLineSeries::new(
                    vec![*last, m],
                    4,
                    4,
                    color.stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Circle::new(m, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(text_style(15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput and p99 over simulated time

/// Throughput (acked records/s) and p99 latency over simulated time, fault windows shaded.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineChart {
    pub title: String,
    pub buckets: Vec<TimeBucket>,
    pub bucket_ms: u64,
    pub faults: Vec<FaultWindow>,
    pub end_ms: u64,
}

impl TimelineChart {
    pub fn from_run(run: &RunReport) -> Self {
        let bucket_ms = bucket_width_ms(&run.timeline);
        let last = run
            .timeline
            .last()
            .map(|b| b.start_ms + bucket_ms)
            .unwrap_or(0);
        let fault_end = run.faults.iter().map(|f| f.end_ms).max().unwrap_or(0);
        TimelineChart {
            title: format!(
                "Throughput and p99 latency over time — {} seed {}",
                run.scenario, run.seed_hex
            ),
            buckets: run.timeline.clone(),
            bucket_ms,
            faults: run.faults.clone(),
            end_ms: run.simulated_ms.max(last).max(fault_end).max(1),
        }
    }

    fn step_points(&self, value: impl Fn(&TimeBucket) -> f64) -> Vec<(f64, f64)> {
        let mut pts = Vec::with_capacity(self.buckets.len() * 2);
        for b in &self.buckets {
            let v = value(b);
            pts.push((b.start_ms as f64 / 1000.0, v));
            pts.push(((b.start_ms + self.bucket_ms) as f64 / 1000.0, v));
        }
        pts
    }

    #[allow(clippy::too_many_arguments)]
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        pts: Vec<(f64, f64)>,
        y: ValueAxis,
        y_desc: &str,
        color: RGBColor,
        fault_labels: bool,
    ) -> DrawResult<DB> {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(16)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(time_axis(self.end_ms), y.coord())?;
        let ylabel = |v: &f64| y.label(*v);
        let xlabel = |v: &f64| fmt_num(*v);
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc(y_desc)
            .x_label_formatter(&xlabel)
            .y_label_formatter(&ylabel)
            .label_style(text_style(14))
            .axis_desc_style(text_style(15))
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;

        // Fault windows first, so the line is drawn over them.
        let palette = fault_palette(&self.faults);
        let label_each = fault_labels && self.faults.len() <= MAX_FAULT_LABELS;
        for (i, f) in self.faults.iter().enumerate() {
            let c = palette[&fault_kind(&f.label)];
            let x0 = f.start_ms as f64 / 1000.0;
            let x1 = (f.end_ms.max(f.start_ms + 1)) as f64 / 1000.0;
            chart.draw_series([Rectangle::new(
                [(x0, y.lo), (x1, y.hi)],
                c.mix(0.18).filled(),
            )])?;
            chart.draw_series([
                PathElement::new(vec![(x0, y.lo), (x0, y.hi)], c.mix(0.7).stroke_width(1)),
                PathElement::new(vec![(x1, y.lo), (x1, y.hi)], c.mix(0.4).stroke_width(1)),
            ])?;
            if label_each {
                // Stagger labels over three rows so neighbouring windows don't collide.
                let row = (i % 3) as f64;
                let ty = y.hi - (y.hi - y.lo) * (0.03 + 0.075 * row);
                chart.draw_series([Text::new(
                    format!("{} (n{})", f.label, f.node),
                    (x0, ty),
                    text_style(12).color(&c.mix(1.0)),
                )])?;
            }
        }
        chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
        Ok(())
    }

    /// The legend column on the right: the two lines, then one swatch per fault kind.
    fn draw_legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut y = 30;
        let x = 8;
        let line = |area: &DrawingArea<DB, Shift>, y: i32, c: RGBColor, label: &str| {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                c.stroke_width(3),
            ))?;
            area.draw(&Text::new(
                label.to_string(),
                (x + 34, y - 8),
                text_style(14),
            ))
        };
        line(area, y, SERIES_COLORS[0], "throughput")?;
        y += 24;
        line(area, y, SERIES_COLORS[1], "p99 latency")?;
        y += 36;
        if !self.faults.is_empty() {
            area.draw(&Text::new(
                "faults",
                (x, y - 8),
                text_style(14).color(&RGBColor(90, 90, 90)),
            ))?;
            y += 24;
        }
        let palette = fault_palette(&self.faults);
        for (i, (kind, c)) in palette.iter().enumerate() {
            if i == MAX_FAULT_KINDS {
                area.draw(&Text::new(
                    format!("… {} more", palette.len() - MAX_FAULT_KINDS),
                    (x, y - 8),
                    text_style(13),
                ))?;
                break;
            }
            area.draw(&Rectangle::new(
                [(x, y - 8), (x + 26, y + 8)],
                c.mix(0.35).filled(),
            ))?;
            area.draw(&Rectangle::new(
                [(x, y - 8), (x + 26, y + 8)],
                c.mix(0.8).stroke_width(1),
            ))?;
            area.draw(&Text::new(kind.clone(), (x + 34, y - 8), text_style(14)))?;
            y += 24;
        }
        Ok(())
    }
}

/// Fault windows get a text label each only when there are at most this many.
const MAX_FAULT_LABELS: usize = 12;
/// Legend entries for fault kinds.
const MAX_FAULT_KINDS: usize = 14;

impl Chart for TimelineChart {
    fn size(&self) -> (u32, u32) {
        (1100, 720)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = root
            .margin(8, 0, 0, 0)
            .titled(&self.title, caption_style())?;
        let (w, _) = area.dim_in_pixel();
        let (plots, legend) = area.split_horizontally(w as i32 - 170);
        let (_, h) = plots.dim_in_pixel();
        let (top, bottom) = plots.split_vertically(h as i32 / 2);
        let bucket_s = self.bucket_ms.max(1) as f64 / 1000.0;
        let tput = self.step_points(|b| b.acked as f64 / bucket_s);
        let p99 = self.step_points(|b| b.p99_ms);
        let ty = ValueAxis::fit(tput.iter().map(|p| p.1), f64::INFINITY).with_headroom(
            if self.faults.is_empty() || self.faults.len() > MAX_FAULT_LABELS {
                1.0
            } else {
                1.2
            },
        );
        let ly = ValueAxis::fit(p99.iter().map(|p| p.1), 30.0);
        let p99_pts = p99.iter().map(|(x, v)| (*x, ly.map(*v))).collect();
        self.draw_panel(
            &top,
            tput,
            ty,
            "throughput (acked records/s)",
            SERIES_COLORS[0],
            true,
        )?;
        let desc = if ly.log {
            "p99 latency (ms, log scale)"
        } else {
            "p99 latency (ms)"
        };
        self.draw_panel(&bottom, p99_pts, ly, desc, SERIES_COLORS[1], false)?;
        self.draw_legend(&legend)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Per-node timeline

/// Each node's state (up / down / paused / partitioned) as coloured bars over simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTimelineChart {
    pub title: String,
    pub nodes: Vec<NodeTimeline>,
    pub end_ms: u64,
}

/// The colour a node state is drawn in.
pub fn state_color(s: NodeState) -> RGBColor {
    match s {
        NodeState::Up => RGBColor(102, 187, 106),
        NodeState::Down => RGBColor(211, 47, 47),
        NodeState::Paused => RGBColor(255, 179, 0),
        NodeState::Partitioned => RGBColor(123, 31, 162),
    }
}

impl NodeTimelineChart {
    pub fn from_run(run: &RunReport) -> Self {
        let end = run
            .nodes
            .iter()
            .flat_map(|n| n.intervals.iter().map(|i| i.1))
            .max()
            .unwrap_or(0);
        NodeTimelineChart {
            title: format!(
                "Node states over time — {} seed {}",
                run.scenario, run.seed_hex
            ),
            nodes: run.nodes.clone(),
            end_ms: run.simulated_ms.max(end).max(1),
        }
    }
}

impl Chart for NodeTimelineChart {
    fn size(&self) -> (u32, u32) {
        (1000, 170 + 44 * self.nodes.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let n = self.nodes.len();
        // Row i (node i) is drawn top-down; one extra row on top holds the legend.
        let rows = n as f64 + 1.0;
        let centers: Vec<f64> = (0..n).map(|i| (n - 1 - i) as f64 + 0.5).collect();
        let yr = TickAxis::new(0.0, rows, centers.clone());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, caption_style())
            .margin(16)
            .margin_right(24)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d(time_axis(self.end_ms), yr)?;
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let ylabel = |v: &f64| {
            centers
                .iter()
                .position(|c| (c - v).abs() < 1e-6)
                .map(|i| names[i].clone())
                .unwrap_or_default()
        };
        let xlabel = |v: &f64| fmt_num(*v);
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc("node")
            .x_label_formatter(&xlabel)
            .y_label_formatter(&ylabel)
            .label_style(text_style(14))
            .axis_desc_style(text_style(15))
            .bold_line_style(RGBColor(230, 230, 230))
            .draw()?;
        for (i, node) in self.nodes.iter().enumerate() {
            let c = centers[i];
            chart.draw_series(node.intervals.iter().map(|(s, e, st)| {
                Rectangle::new(
                    [
                        (*s as f64 / 1000.0, c - 0.32),
                        ((*e).max(*s) as f64 / 1000.0, c + 0.32),
                    ],
                    state_color(*st).filled(),
                )
            }))?;
        }
        // Legend: a row of swatches above the bars (in the spare top row).
        let end_s = (self.end_ms as f64 / 1000.0).max(0.001);
        let ly = n as f64 + 0.5;
        for (i, st) in NodeState::ALL.iter().enumerate() {
            let x0 = end_s * (0.01 + 0.15 * i as f64);
            let x1 = x0 + end_s * 0.025;
            chart.draw_series([Rectangle::new(
                [(x0, ly - 0.2), (x1, ly + 0.2)],
                state_color(*st).filled(),
            )])?;
            chart.draw_series([Text::new(
                st.as_str(),
                (x1 + end_s * 0.008, ly + 0.05),
                text_style(14),
            )])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(0.0123), "0.0123");
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1000.0), "1000");
        assert_eq!(fmt_num(25_000.0), "25k");
        assert_eq!(fmt_num(3_000_000.0), "3M");
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            nice_ticks(0.0, 45.0, 10),
            (0..10).map(|i| i as f64 * 5.0).collect::<Vec<_>>()
        );
        let log = ValueAxis::fit([0.5, 40.0].into_iter(), 20.0);
        assert!(log.log);
        let labels: Vec<String> = log.ticks.iter().map(|t| log.label(*t)).collect();
        assert_eq!(
            labels,
            ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100"]
        );
        let lin = ValueAxis::fit([1.0, 4.0].into_iter(), 20.0);
        assert!(!lin.log);
    }

    #[test]
    fn percentile_positions() {
        assert!((percentile_x(0.5) - std::f64::consts::LOG10_2).abs() < 1e-9);
        assert!((percentile_x(0.99) - 2.0).abs() < 1e-9);
        assert!((percentile_x(0.9999) - 4.0).abs() < 1e-6);
        assert!(percentile_x(1.0) < X_MAX);
    }
}
