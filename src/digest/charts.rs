//! The digest's charts as PNG images (plotters on its bitmap backend, encoded with `png`):
//! TTFT p50/p95 per hour, memory over time with the leak trend line, and failures on a
//! timeline. Text is drawn with an embedded subset of DejaVu Sans (`font/`, its licence beside
//! it), so no system font is needed. A chart with nothing to show is left out.

use super::series::Series;
use crate::report::model::Report;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::sync::Once;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
const FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
/// One colour per backend, in report order (Okabe–Ito, readable by the colour-blind).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// One inline image of the mail.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Its Content-ID (the HTML refers to it as `cid:...`).
    pub cid: String,
    pub title: String,
    pub png: Vec<u8>,
}

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub fn draw(report: &Report, series: &Series) -> Vec<Chart> {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded chart font did not load; charts will have no text");
        }
    });
    let mut out = Vec::new();
    let charts: [(&str, &str, DrawFn); 3] = [
        ("ttft", "Time to first token (ms): p50 solid, p95 dashed", ttft),
        ("memory", "Idle memory (MB), dashed: the leak trend", memory),
        ("failures", "Failed requests over time", failures),
    ];
    for (id, title, f) in charts {
        match render(|area| f(area, title, report, series)) {
            Ok(Some(png)) => out.push(Chart { cid: format!("{id}@soakd"), title: title.to_string(), png }),
            Ok(None) => {}
            Err(e) => tracing::warn!(chart = id, "could not draw the chart: {e}"),
        }
    }
    out
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<bool, Box<dyn std::error::Error + 'static>>;
type DrawFn = fn(&Area<'_>, &str, &Report, &Series) -> DrawResult;

/// Draws into an RGB buffer with `f` (false: nothing to draw) and encodes it as PNG.
fn render(f: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        if !f(&area)? {
            return Ok(None);
        }
        area.present()?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        let mut w = enc.write_header()?;
        w.write_image_data(&buf)?;
    }
    Ok(Some(png_bytes))
}

/// Hours since the window's start, the x axis of every chart.
fn hours(report: &Report, at_ms: i64) -> f64 {
    (at_ms - report.window.from) as f64 / 3_600_000.0
}

/// Time labels in UTC, as the report's window: with seconds for a window under two hours.
fn x_label(report: &Report) -> impl Fn(&f64) -> String + '_ {
    let format = if report.window.hours < 2.0 { "%H:%M:%S" } else { "%d %H:%M" };
    move |h: &f64| {
        let ms = report.window.from + (h * 3_600_000.0) as i64;
        chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format(format).to_string()).unwrap_or_default()
    }
}

fn y_label(v: &f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn y_range(values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1.0);
    Some((lo - pad).max(0.0)..hi + pad)
}

type Plot<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white chart of the window's hours (x) against `y`, with its title and grid drawn.
fn frame<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    report: &Report,
    y: std::ops::Range<f64>,
    y_labels: usize,
    y_format: &dyn Fn(&f64) -> String,
) -> Result<Plot<'a, 'b>, Box<dyn std::error::Error + 'static>> {
    area.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 15))
        .margin(8)
        .margin_right(28)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..report.window.hours.max(0.01), y)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&x_label(report))
        .y_labels(y_labels)
        .y_label_formatter(y_format)
        .label_style((FAMILY, 11))
        .light_line_style(WHITE)
        .draw()?;
    Ok(chart)
}

fn ttft(area: &Area<'_>, title: &str, report: &Report, series: &Series) -> DrawResult {
    let values = series.backends.iter().flat_map(|b| b.ttft.iter().flat_map(|p| [p.1, p.2]));
    let Some(y) = y_range(values) else { return Ok(false) };
    let mut chart = frame(area, title, report, y, 10, &y_label)?;
    let half = series.ttft_bucket_ms / 2;
    for (i, (b, s)) in report.backends.iter().zip(&series.backends).enumerate() {
        let c = colour(i);
        let p50: Vec<(f64, f64)> = s.ttft.iter().map(|p| (hours(report, p.0 + half), p.1)).collect();
        let p95: Vec<(f64, f64)> = s.ttft.iter().map(|p| (hours(report, p.0 + half), p.2)).collect();
        chart
            .draw_series(LineSeries::new(p50, c.stroke_width(2)).point_size(2))?
            .label(b.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(p95, 5, 4, c.stroke_width(1)))?;
    }
    legend(&mut chart)?;
    Ok(true)
}

fn memory(area: &Area<'_>, title: &str, report: &Report, series: &Series) -> DrawResult {
    let values = series.backends.iter().flat_map(|b| b.memory.iter().flatten().map(|p| p.1));
    let Some(y) = y_range(values) else { return Ok(false) };
    let mut chart = frame(area, title, report, y, 10, &y_label)?;
    for (i, (b, s)) in report.backends.iter().zip(&series.backends).enumerate() {
        let c = colour(i);
        for (n, life) in s.memory.iter().enumerate() {
            let pts: Vec<(f64, f64)> = life.iter().map(|(at, mb)| (hours(report, *at), *mb)).collect();
            let drawn = chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?;
            if n == 0 {
                drawn
                    .label(b.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
            }
        }
        // The leak's Sen slope through the latest lifetime (its intercept: the median residual).
        if b.leak.verdict == crate::analysis::leaks::Verdict::Leak
            && let (Some(slope), Some(life)) = (b.leak.mb_per_hour, s.memory.iter().rev().find(|l| l.len() >= 2))
        {
            let xs: Vec<f64> = life.iter().map(|(at, _)| hours(report, *at)).collect();
            let residuals = life.iter().zip(&xs).map(|((_, mb), x)| mb - slope * x);
            if let Some(intercept) = crate::measure::stats::median(residuals) {
                let (x0, x1) = (xs[0], xs[xs.len() - 1]);
                let line = vec![(x0, intercept + slope * x0), (x1, intercept + slope * x1)];
                chart.draw_series(DashedLineSeries::new(line, 8, 6, BLACK.mix(0.7).stroke_width(1)))?;
            }
        }
    }
    legend(&mut chart)?;
    Ok(true)
}

fn failures(area: &Area<'_>, title: &str, report: &Report, series: &Series) -> DrawResult {
    let max = series.backends.iter().flat_map(|b| b.failures.iter().map(|f| f.1)).max().unwrap_or(0);
    if report.backends.iter().all(|b| b.requests == 0) {
        return Ok(false);
    }
    let y = 0.0..(max.max(1) as f64 * 1.15);
    let mut chart = frame(area, title, report, y, (max.max(1) as usize + 1).min(6), &|v| format!("{v:.0}"))?;
    let n = series.backends.len().max(1) as f64;
    let width = series.bucket_ms as f64 / 3_600_000.0;
    for (i, (b, s)) in report.backends.iter().zip(&series.backends).enumerate() {
        let c = colour(i);
        let bars = s.failures.iter().map(|(at, count)| {
            let x0 = hours(report, *at) + width * i as f64 / n;
            Rectangle::new([(x0, 0.0), (x0 + width / n, *count as f64)], c.filled())
        });
        chart
            .draw_series(bars)?
            .label(format!("{} ({})", b.name, b.requests - b.ok))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    legend(&mut chart)?;
    Ok(true)
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), Box<dyn std::error::Error + 'static>>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
