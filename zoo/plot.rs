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

/// Draws a `size` chart with `draw` into an RGB buffer and writes it to `path` as PNG (with the
/// image crate, which zoo builds anyway, rather than plotters' own encoder and its second copy
/// of an older image crate).
fn png<T>(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<T>,
) -> Result<T> {
    let mut buf = vec![0u8; size.0 as usize * size.1 as usize * 3];
    let out = draw(BitMapBackend::with_buffer(&mut buf, size).into_drawing_area())?;
    image::save_buffer_with_format(path, &buf, size.0, size.1, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(out)
}

/// A labelled point of a scatter chart.
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// Scatter chart with labelled points, x on a log scale (multiply-adds span three decades).
pub fn scatter(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[Point], footnote: &str) -> Result<()> {
    fonts();
    if points.is_empty() {
        return Err(anyhow!("nothing to plot: no model has both a cost and an accuracy"));
    }
    png(path, (1000, 700), |root| {
        root.fill(&WHITE).map_err(err)?;
        let (plot_area, foot) = root.split_vertically(if footnote.is_empty() { 700 } else { 670 });
        let (xmin, xmax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
        let (ymin, ymax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin * 0.7..xmax * 1.5).log_scale(), (ymin - 2.0)..(ymax + 2.0))
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).draw().map_err(err)?;
        // Labels placed so that none overlaps another, each as near its point as that allows,
        // with a leader line when it had to move away.
        let anchors: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(&(p.x, p.y))).collect();
        let widths: Vec<i32> = points.iter().map(|p| label_width(&p.label)).collect();
        let offsets = place_labels(&anchors, &widths, LABEL_HEIGHT);
        chart
            .draw_series(points.iter().map(|p| EmptyElement::at((p.x, p.y)) + Circle::new((0, 0), 5, BLUE.filled())))
            .map_err(err)?;
        for ((p, &(ax, ay)), &dy) in points.iter().zip(&anchors).zip(&offsets) {
            let (tx, ty) = (ax + LABEL_DX, ay + dy);
            if dy.abs() > LABEL_HEIGHT {
                let near = if dy < 0 { ty + LABEL_HEIGHT } else { ty };
                plot_area.draw(&PathElement::new(vec![(ax, ay), (tx, near)], BLACK.mix(0.4))).map_err(err)?;
            }
            plot_area.draw(&Text::new(p.label.clone(), (tx, ty), ("sans-serif", 14))).map_err(err)?;
        }
        if !footnote.is_empty() {
            foot.draw(&Text::new(footnote.to_string(), (20, 5), ("sans-serif", 14))).map_err(err)?;
        }
        root.present().map_err(err)?;
        Ok(())
    })
}

/// Height of a scatter label's box, pixels (14-point text).
pub const LABEL_HEIGHT: i32 = 16;
/// Horizontal gap from a point to its label, pixels.
pub const LABEL_DX: i32 = 7;

/// The width of a scatter label's box: 14-point DejaVu Sans averages under 8 pixels a character.
pub fn label_width(label: &str) -> i32 {
    8 * label.chars().count() as i32 + 2
}

/// Vertical offsets (pixels, from each anchor) of labels `widths` wide and `height` high drawn
/// `LABEL_DX` right of their anchors, so that no two boxes overlap and none covers a point's dot:
/// each label, left to right, takes the first free place of just above its point, just below,
/// then further up and down.
pub fn place_labels(anchors: &[(i32, i32)], widths: &[i32], height: i32) -> Vec<i32> {
    let mut order: Vec<usize> = (0..anchors.len()).collect();
    order.sort_by_key(|&i| (anchors[i].0, anchors[i].1));
    // Every point's dot is taken from the start: no label covers another model's point.
    let mut placed: Vec<(i32, i32, i32, i32)> = anchors.iter().map(|&(x, y)| (x - 6, y - 6, x + 6, y + 6)).collect();
    let mut offsets = vec![0; anchors.len()];
    let overlaps = |a: (i32, i32, i32, i32), b: &(i32, i32, i32, i32)| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    for i in order {
        let (x, y) = anchors[i];
        let candidates = (0..200).map(|k| {
            let step = (k / 2) * (height + 1);
            if k % 2 == 0 {
                -height - step
            } else {
                2 + step
            }
        });
        for dy in candidates {
            let b = (x + LABEL_DX, y + dy, x + LABEL_DX + widths[i], y + dy + height);
            if !placed.iter().any(|p| overlaps(b, p)) {
                offsets[i] = dy;
                placed.push(b);
                break;
            }
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crowded chart (the torchvision ResNets and ShuffleNets sit a few pixels apart): no
    /// two label boxes overlap, and every label stays beside its own point when it can.
    #[test]
    fn labels_never_overlap() {
        let anchors: Vec<(i32, i32)> = (0..30).map(|i| (400 + (i % 5) * 6, 300 + (i / 5) * 4)).collect();
        let widths: Vec<i32> = (0..30).map(|i| label_width(&format!("model_{i}"))).collect();
        let dy = place_labels(&anchors, &widths, LABEL_HEIGHT);
        let boxes: Vec<_> = anchors
            .iter()
            .zip(&dy)
            .zip(&widths)
            .map(|((&(x, y), &d), &w)| (x + LABEL_DX, y + d, x + LABEL_DX + w, y + d + LABEL_HEIGHT))
            .collect();
        let overlap =
            |a: &(i32, i32, i32, i32), b: &(i32, i32, i32, i32)| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!overlap(a, b), "{a:?} overlaps {b:?}");
            }
            for &(x, y) in &anchors {
                assert!(!overlap(a, &(x - 5, y - 5, x + 5, y + 5)), "{a:?} covers the point at ({x}, {y})");
            }
        }
        // Points far apart keep their label right above them.
        let lone = place_labels(&[(100, 100), (600, 400)], &[50, 50], LABEL_HEIGHT);
        assert_eq!(lone, vec![-LABEL_HEIGHT, -LABEL_HEIGHT]);
    }
}

/// One epoch's figures for [`training_curves`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Top-1 accuracy in percent (NaN where not measured).
    pub train_acc1: f64,
    pub val_acc1: f64,
}

/// Training curves in three panels sharing integer epoch ticks: loss (train, val), top-1 accuracy
/// in percent (train, val) and the learning rate. Each panel's legend sits above its plot, off the
/// data; a series with no finite value is left out.
pub fn training_curves(path: &Path, title: &str, rows: &[EpochPoint]) -> Result<()> {
    fonts();
    if rows.is_empty() {
        return Err(anyhow!("nothing to plot: no epoch finished"));
    }
    let first = rows.iter().map(|r| r.epoch).min().unwrap_or(1) as i32;
    let last = rows.iter().map(|r| r.epoch).max().unwrap_or(1) as i32;
    png(path, (900, 960), |root| {
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 24)).map_err(err)?;
        let panels = root.split_evenly((3, 1));
        type Series<'a> = (&'a str, &'a dyn Fn(&EpochPoint) -> f64);
        let specs: [(&str, Vec<Series>); 3] = [
            ("loss", vec![("train loss", &|r| r.train_loss), ("val loss", &|r| r.val_loss)]),
            ("top-1 (%)", vec![("train top-1", &|r| r.train_acc1), ("val top-1", &|r| r.val_acc1)]),
            ("learning rate", vec![("learning rate", &|r| r.lr)]),
        ];
        for (panel, (y_desc, series)) in panels.iter().zip(specs) {
            let series: Vec<(String, Vec<(i32, f64)>)> = series
                .iter()
                .map(|(name, f)| {
                    let pts = rows.iter().map(|r| (r.epoch as i32, f(r))).filter(|(_, y)| y.is_finite()).collect();
                    (name.to_string(), pts)
                })
                .filter(|(_, p): &(String, Vec<(i32, f64)>)| !p.is_empty())
                .collect();
            let ys = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
            let (ymin, ymax) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
            let (ymin, ymax) = if ymin > ymax { (0.0, 1.0) } else { (ymin, ymax) };
            let pad = ((ymax - ymin) * 0.08).max(ymax.abs() * 0.02).max(1e-9);
            // The legend strip: above the plot area, so it never covers a point.
            let (legend, body) = panel.split_vertically(26);
            let mut x = 70;
            for (i, (name, _)) in series.iter().enumerate() {
                let color = series_color(y_desc, i);
                legend.draw(&PathElement::new(vec![(x, 14), (x + 24, 14)], color.stroke_width(3))).map_err(err)?;
                legend.draw(&Text::new(name.clone(), (x + 30, 6), ("sans-serif", 15))).map_err(err)?;
                x += 40 + 9 * name.len() as i32;
            }
            // Integer epochs only: one tick per epoch up to 20, fewer beyond.
            let span = (last - first + 1).max(1);
            let mut chart = ChartBuilder::on(&body)
                .margin_left(10)
                .margin_right(20)
                .margin_bottom(5)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d((first - 1)..(last + 1), (ymin - pad)..(ymax + pad))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels((span as usize + 2).min(22))
                .x_label_formatter(&|e| if *e >= first && *e <= last { e.to_string() } else { String::new() })
                .x_desc("epoch")
                .y_desc(y_desc)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            for (i, (_, pts)) in series.iter().enumerate() {
                let color = series_color(y_desc, i);
                chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(err)?;
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
            }
        }
        root.present().map_err(err)?;
        Ok(())
    })
}

fn series_color(panel: &str, i: usize) -> RGBAColor {
    if panel == "learning rate" {
        return RGBColor(90, 90, 90).to_rgba();
    }
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40)][i % 2].to_rgba()
}

/// Most classes a confusion-matrix picture shows cell by cell; beyond it, the classes most
/// involved (true or predicted) are shown and the largest confusions are listed beside them.
pub use crate::train::trainer::CONFUSION_MAX_CLASSES;

/// Where [`confusion`] draws each part, in pixels of the PNG: computed once and used both to
/// draw and, in tests, to check the picture against the data.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionLayout {
    /// Width and height of the image.
    pub size: (u32, u32),
    /// The classes shown, as indices into the labels, in the order of rows (top to bottom) and
    /// columns (left to right).
    pub shown: Vec<usize>,
    /// Top-left corner of the grid and the side of one cell.
    pub origin: (i32, i32),
    pub cell: i32,
    /// Width of the row-label column left of the grid (labels end at its right edge).
    pub label_width: i32,
    /// Off-diagonal confusions listed beside the grid, largest first: `(true, predicted, count)`.
    pub top_confusions: Vec<(usize, usize, u64)>,
}

impl ConfusionLayout {
    /// Lays out `counts` (rows true classes, columns predictions) for `labels`.
    pub fn new(labels: &[String], counts: &[Vec<u64>]) -> Self {
        let n = labels.len();
        let row_sum = |i: usize| counts.get(i).map_or(0, |r| r.iter().sum::<u64>());
        let col_sum = |j: usize| counts.iter().map(|r| r.get(j).copied().unwrap_or(0)).sum::<u64>();
        let mut shown: Vec<usize> = if n <= CONFUSION_MAX_CLASSES {
            (0..n).collect()
        } else {
            let mut present: Vec<(u64, usize)> =
                (0..n).map(|i| (row_sum(i) + col_sum(i), i)).filter(|&(s, _)| s > 0).collect();
            present.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            present.truncate(CONFUSION_MAX_CLASSES);
            present.into_iter().map(|(_, i)| i).collect()
        };
        shown.sort_unstable();
        let mut top_confusions: Vec<(usize, usize, u64)> = counts
            .iter()
            .enumerate()
            .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &c)| (t, p, c)))
            .filter(|&(t, p, c)| t != p && c > 0)
            .collect();
        top_confusions.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        top_confusions.truncate(if n > CONFUSION_MAX_CLASSES { 15 } else { 0 });
        let k = shown.len().max(1) as i32;
        let cell = (600 / k).clamp(18, 60);
        let longest = shown.iter().map(|&i| short_label(&labels[i]).chars().count()).max().unwrap_or(1) as i32;
        let label_width = (longest * 8 + 16).clamp(40, 260);
        let origin = (label_width + 40, 70);
        let list_width = if top_confusions.is_empty() { 0 } else { 420 };
        let width = origin.0 + k * cell + 30 + list_width;
        let height = origin.1 + k * cell + label_width + 50;
        ConfusionLayout {
            size: (width as u32, height.max(origin.1 + 40 + 22 * top_confusions.len() as i32) as u32),
            shown,
            origin,
            cell,
            label_width,
            top_confusions,
        }
    }

    /// Pixel rectangle `(x0, y0, x1, y1)` of the cell for true class `row` and prediction `col`
    /// (positions in [`ConfusionLayout::shown`]).
    pub fn cell_rect(&self, row: usize, col: usize) -> (i32, i32, i32, i32) {
        let (x0, y0) = (self.origin.0 + col as i32 * self.cell, self.origin.1 + row as i32 * self.cell);
        (x0, y0, x0 + self.cell, y0 + self.cell)
    }
}

/// The fill of a cell whose share of its row is `v` in [0, 1].
pub fn confusion_color(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    RGBColor(255 - (v * 215.0) as u8, 255 - (v * 155.0) as u8, 255 - (v * 40.0) as u8)
}

fn short_label(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > 30 {
        s.chars().take(29).chain(std::iter::once('…')).collect()
    } else {
        s
    }
}

/// A confusion matrix as a heat map: rows are true classes (top to bottom in label order),
/// columns predictions (left to right); each cell is shaded by its share of the row and shows its
/// count at its centre, each label sits at the centre of its row or column. With more than
/// [`CONFUSION_MAX_CLASSES`] classes only the classes most involved are drawn, and the largest
/// confusions are listed beside the grid.
pub fn confusion(path: &Path, title: &str, labels: &[String], counts: &[Vec<u64>]) -> Result<ConfusionLayout> {
    fonts();
    let layout = ConfusionLayout::new(labels, counts);
    png(path, layout.size, |root| {
        root.fill(&WHITE).map_err(err)?;
        let centred = |size: u32| ("sans-serif", size).into_font().into_text_style(&root);
        let anchor = |h, v| plotters::style::text_anchor::Pos::new(h, v);
        use plotters::style::text_anchor::{HPos, VPos};
        root.draw(&Text::new(title.to_string(), (20, 18), centred(22))).map_err(err)?;
        let k = layout.shown.len();
        let (gx, gy) = layout.origin;
        let side = k as i32 * layout.cell;
        let count_size = (layout.cell as u32 * 2 / 5).clamp(9, 16);
        for (r, &t) in layout.shown.iter().enumerate() {
            let row = &counts[t];
            let total = row.iter().sum::<u64>().max(1);
            for (c, &p) in layout.shown.iter().enumerate() {
                let count = row.get(p).copied().unwrap_or(0);
                let v = count as f64 / total as f64;
                let (x0, y0, x1, y1) = layout.cell_rect(r, c);
                root.draw(&Rectangle::new([(x0, y0), (x1, y1)], confusion_color(v).filled())).map_err(err)?;
                if count > 0 {
                    let ink = if v > 0.6 { WHITE } else { BLACK };
                    let style = centred(count_size).color(&ink).pos(anchor(HPos::Center, VPos::Center));
                    // VPos::Center centres the font's box, whose descender space leaves digits high:
                    // a quarter of the size down puts their ink at the cell's centre.
                    let y = (y0 + y1) / 2 + count_size as i32 / 4;
                    root.draw(&Text::new(count.to_string(), ((x0 + x1) / 2, y), style)).map_err(err)?;
                }
            }
            // Row label: right-aligned against the grid, at the row's centre.
            let y = gy + r as i32 * layout.cell + layout.cell / 2 + 13 / 4;
            let style = centred(13).pos(anchor(HPos::Right, VPos::Center));
            root.draw(&Text::new(short_label(&labels[t]), (gx - 8, y), style)).map_err(err)?;
            // Column label: below the grid, rotated, starting at the column's centre.
            let x = gx + r as i32 * layout.cell + layout.cell / 2;
            let style = centred(13).transform(FontTransform::Rotate90).pos(anchor(HPos::Left, VPos::Center));
            root.draw(&Text::new(short_label(&labels[t]), (x, gy + side + 8), style)).map_err(err)?;
        }
        root.draw(&Rectangle::new([(gx, gy), (gx + side, gy + side)], BLACK.stroke_width(1))).map_err(err)?;
        let axis = centred(15).pos(anchor(HPos::Center, VPos::Center));
        root.draw(&Text::new("predicted", (gx + side / 2, gy - 16), axis.clone())).map_err(err)?;
        let true_style = centred(15).transform(FontTransform::Rotate270).pos(anchor(HPos::Center, VPos::Center));
        root.draw(&Text::new("true", (14, gy + side / 2), true_style)).map_err(err)?;
        if !layout.top_confusions.is_empty() {
            let x = gx + side + 30;
            let n = labels.len();
            let head = format!("{} of {n} classes shown; largest confusions:", layout.shown.len());
            root.draw(&Text::new(head, (x, gy), centred(14))).map_err(err)?;
            for (i, &(t, p, c)) in layout.top_confusions.iter().enumerate() {
                let line = format!("{c}  {} → {}", short_label(&labels[t]), short_label(&labels[p]));
                root.draw(&Text::new(line, (x, gy + 24 + 22 * i as i32), centred(13))).map_err(err)?;
            }
        }
        root.present().map_err(err)?;
        Ok(layout)
    })
}
