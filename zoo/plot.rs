//! Charts written as PNG with plotters: accuracy against multiply-adds (`zoo summary --plot`),
//! training curves and confusion matrices. Text is drawn with the bundled DejaVu Sans font, so
//! no system font library is needed.
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn fonts() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        // The font is known good; a failure here would only lose text, not the chart.
        let _ = register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing chart: {e}")
}

/// A labelled point of a scatter chart.
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// Scatter chart with labelled points, x on a log scale (multiply-adds span three decades).
pub fn scatter(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[Point]) -> Result<()> {
    fonts();
    if points.is_empty() {
        return Err(anyhow!("nothing to plot: no model has both a cost and an accuracy"));
    }
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (xmin, xmax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
    let (ymin, ymax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin * 0.7..xmax * 1.5).log_scale(), (ymin - 2.0)..(ymax + 2.0))
        .map_err(err)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).draw().map_err(err)?;
    chart
        .draw_series(points.iter().map(|p| {
            EmptyElement::at((p.x, p.y))
                + Circle::new((0, 0), 5, BLUE.filled())
                + Text::new(p.label.clone(), (7, -7), ("sans-serif", 14))
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Line chart of several named series sharing the x axis (e.g. loss per epoch).
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    fonts();
    let all = series.iter().flat_map(|(_, s)| s.iter());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (xmin, xmax, ymin, ymax) = (xmin.min(x), xmax.max(x), ymin.min(y), ymax.max(y));
    }
    if xmin > xmax {
        return Err(anyhow!("nothing to plot"));
    }
    let pad = ((ymax - ymin) * 0.05).max(1e-6);
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xmin..xmax.max(xmin + 1.0), (ymin - pad)..(ymax + pad))
        .map_err(err)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 15)).draw().map_err(err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A confusion matrix as a heat map: rows are true classes, columns predictions.
pub fn confusion(path: &Path, title: &str, labels: &[String], counts: &[Vec<u64>]) -> Result<()> {
    fonts();
    let n = labels.len();
    let side = (60 + 40 * n as u32).clamp(400, 1400);
    let root = BitMapBackend::new(path, (side + 200, side + 120)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(120)
        .y_label_area_size(160)
        .build_cartesian_2d(0..n, 0..n)
        .map_err(err)?;
    let label = |i: &usize| labels.get(*i).cloned().unwrap_or_default();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .x_desc("predicted")
        .y_desc("true")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (t, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (p, &c) in row.iter().enumerate() {
            let v = c as f64 / total as f64;
            let color = RGBColor(255 - (v * 200.0) as u8, 255 - (v * 120.0) as u8, 255);
            let y = n - 1 - t;
            chart
                .draw_series(std::iter::once(Rectangle::new([(p, y), (p + 1, y + 1)], color.filled())))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(c.to_string(), (p, y + 1), ("sans-serif", 12))))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
