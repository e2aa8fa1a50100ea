//! `nasrank eval --plot FILE`: one score-vs-accuracy scatter panel per score column, in a
//! grid, PNG or SVG by the file's extension.
//!
//! Text needs a font: the PNG backend rasterises it with ab_glyph from a subset of DejaVu
//! Sans embedded in the binary (assets/fonts, licence beside it), so no system font is
//! looked up; the SVG backend writes `<text>` elements and measures them with the same font.

use crate::CliError;
use anyhow::anyhow;
use nasrank::eval::table::{quality, Joined};
use nasrank::proxy::Score;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;

/// Pixel size of one panel; the image is a grid of `ceil(sqrt(k))` panels per row.
pub const PANEL: (u32, u32) = (420, 340);

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");

/// The output format, from the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotFormat {
    Png,
    Svg,
}

pub fn plot_format(path: &Path) -> Result<PlotFormat, CliError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(PlotFormat::Png),
        Some("svg") => Ok(PlotFormat::Svg),
        _ => Err(CliError::usage(anyhow!(
            "--plot {}: the file name must end in .png or .svg (the format follows the extension)",
            path.display()
        ))),
    }
}

/// Panels per row and rows for `k` panels.
pub fn grid(k: usize) -> (usize, usize) {
    let cols = (1..=k.max(1)).find(|c| c * c >= k).unwrap_or(1);
    (cols, k.max(1).div_ceil(cols))
}

/// Draws every score column of `joined` against the accuracy (`metric`).
pub fn plot(path: &Path, joined: &Joined, metric: &str) -> Result<(), CliError> {
    let format = plot_format(path)?;
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| CliError::Run(anyhow!("the embedded font does not parse")))?;
    let (cols, rows) = grid(joined.columns.len());
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32);
    let fail = |e: String| CliError::Run(anyhow!("cannot draw {}: {e}", path.display()));
    match format {
        PlotFormat::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(&root, joined, metric, rows, cols).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        PlotFormat::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(&root, joined, metric, rows, cols).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    joined: &Joined,
    metric: &str,
    rows: usize,
    cols: usize,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((rows, cols));
    for ((name, values), area) in joined.columns.iter().zip(&panels) {
        panel(area, name, values, &joined.accuracy, metric).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One scatter. Drawn: finite values; a score whose positive values span more than three
/// decades on a log10 axis (its values <= 0 then not drawn); the x axis limited to 3
/// interquartile ranges beyond the quartiles, so that a few outliers do not squash the
/// rest. The title counts what is not drawn.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    values: &[f64],
    accuracy: &[f64],
    metric: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let q = quality(name, values, accuracy);
    let lower_better = name.parse::<Score>().is_ok_and(|s| !s.higher_is_better());
    let finite: Vec<(f64, f64)> = values
        .iter()
        .zip(accuracy)
        .filter(|(v, a)| v.is_finite() && a.is_finite())
        .map(|(&v, &a)| (v, a))
        .collect();
    let positive: Vec<f64> = finite.iter().map(|p| p.0).filter(|&v| v > 0.0).collect();
    let (lo, hi) = positive
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let log = positive.len() * 10 >= finite.len() * 9 && hi / lo > 1e3;
    let mut points: Vec<(f64, f64)> = finite
        .iter()
        .filter(|(v, _)| !log || *v > 0.0)
        .map(|&(v, a)| (if log { v.log10() } else { v }, a))
        .collect();
    let (fence_lo, fence_hi) = fences(points.iter().map(|p| p.0).collect());
    let in_view = points.len();
    points.retain(|p| p.0 >= fence_lo && p.0 <= fence_hi);
    let mut title = format!(
        "{name}: Spearman \u{3c1} = {:.3}{}",
        q.spearman,
        if lower_better {
            " (of \u{2212}value)"
        } else {
            ""
        }
    );
    let not_finite = values.len() - finite.len();
    let not_positive = finite.len() - in_view;
    let outside = in_view - points.len();
    for (count, what) in [
        (not_finite, "not finite"),
        (not_positive, "<= 0"),
        (outside, "off axis"),
    ] {
        if count > 0 {
            title.push_str(&format!(", {count} {what}"));
        }
    }
    let x_label = if log {
        format!("log10 {name}")
    } else {
        name.to_string()
    };
    let (x0, x1) = padded(points.iter().map(|p| p.0));
    let (y0, y1) = padded(points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(metric)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(
        points
            .iter()
            .map(|&p| Circle::new(p, 2, RGBColor(31, 119, 180).mix(0.55).filled())),
    )?;
    Ok(())
}

/// Quartiles minus and plus 3 interquartile ranges (everything when there are few values).
fn fences(mut v: Vec<f64>) -> (f64, f64) {
    if v.len() < 8 {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    v.sort_by(f64::total_cmp);
    let (q1, q3) = (v[v.len() / 4], v[3 * v.len() / 4]);
    let iqr = q3 - q1;
    if iqr <= 0.0 {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    (q1 - 3.0 * iqr, q3 + 3.0 * iqr)
}

/// A short tick label: at most 4 significant digits, exponent form beyond 1e5.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_string()
        } else {
            s.to_string()
        }
    }
}

/// The range of `values` widened by 5 % each side (a unit range around a single value or
/// none).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}
