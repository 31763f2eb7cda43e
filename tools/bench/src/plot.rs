//! The latency percentile plot: HdrHistogram-plotter style, x = percentile
//! on a log scale of 1/(1-p), y = latency in ns (log scale), one line per
//! system and wait strategy, plus the core-to-core floor.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::latency::{LatResult, LatSystem};

/// Draws `results` into an SVG at `path`. `floor_ns` adds the core-to-core
/// one-way floor as a dashed line.
pub fn percentile_svg(
    path: &Path,
    title: &str,
    results: &[LatResult],
    floor_ns: Option<f64>,
) -> Result<(), Box<dyn Error>> {
    let samples = results
        .iter()
        .map(|r| r.hist.len())
        .max()
        .unwrap_or(1)
        .max(10);
    // x runs to the decade that holds the last sample's 1/(1-p).
    let x_max = 10f64.powi((samples as f64).log10().ceil() as i32);
    let y_min = results
        .iter()
        .map(|r| r.hist.min().max(1) as f64)
        .chain(floor_ns)
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let y_max = results
        .iter()
        .map(|r| r.hist.max() as f64)
        .fold(y_min * 10.0, f64::max);
    let (y_lo, y_hi) = (
        10f64.powi(y_min.log10().floor() as i32),
        10f64.powi(y_max.log10().ceil() as i32),
    );

    let root = SVGBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .margin_right(60)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..x_max).log_scale(), (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("one-way latency (ns)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| ns_label(*y))
        .draw()?;

    for r in results {
        let color = color_of(r.system);
        let mut points: Vec<(f64, f64)> = Vec::new();
        for v in r.hist.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let x = if q < 1.0 {
                (1.0 / (1.0 - q)).min(x_max)
            } else {
                x_max
            };
            points.push((x, (v.value_iterated_to() as f64).max(y_lo)));
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(r.system.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some(f) = floor_ns {
        let style = BLACK.mix(0.6).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(1.0, f), (x_max, f)],
                6,
                4,
                style,
            ))?
            .label(format!("core-to-core floor {f:.0} ns"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A fixed colour per system, so plots of different runs compare at a glance.
fn color_of(system: LatSystem) -> RGBAColor {
    use telering::WaitStrategy::{BusySpin, Park, SpinYield};
    let rgb = match system {
        LatSystem::Base => RGBColor(110, 110, 110),
        LatSystem::Ring(BusySpin) => RGBColor(214, 39, 40),
        LatSystem::Ring(SpinYield) => RGBColor(255, 127, 14),
        LatSystem::Ring(Park) => RGBColor(140, 86, 75),
        LatSystem::RingPoll => RGBColor(188, 189, 34),
        LatSystem::RingMarked(_) => RGBColor(128, 0, 0),
        LatSystem::Engine(BusySpin) => RGBColor(31, 119, 180),
        LatSystem::Engine(SpinYield) => RGBColor(23, 190, 207),
        LatSystem::Engine(Park) => RGBColor(120, 170, 230),
        LatSystem::Disruptor => RGBColor(44, 160, 44),
        LatSystem::Rtrb => RGBColor(148, 103, 189),
        LatSystem::Channel => RGBColor(227, 119, 194),
    };
    rgb.to_rgba()
}

/// Percentile label for x = 1/(1-p): only at decades (0 %, 90 %, 99 %, ...).
fn percentile_label(x: f64) -> String {
    let decade = x.log10();
    if (decade - decade.round()).abs() > 1e-6 {
        return String::new();
    }
    let d = decade.round() as i32;
    if d == 0 {
        return "0%".to_owned();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    format!("{p:.*}%", (d - 2).max(0) as usize)
}

fn ns_label(y: f64) -> String {
    let (v, unit) = if y >= 1e6 {
        (y / 1e6, "ms")
    } else if y >= 1e3 {
        (y / 1e3, "µs")
    } else {
        (y, "ns")
    };
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}
