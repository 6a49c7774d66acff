//! The pictures zoo draws, checked against the data they show: a known confusion matrix is
//! rendered and read back pixel by pixel (each cell's shade at its place, each count at its
//! cell's centre, each row label at its row's centre and in the rows' order), a 1,000-class
//! evaluation draws only the classes that occur, `zoo eval` on real Fashion-MNIST images writes
//! a picture that matches its own `confusion.csv`, and the training curves keep their legends
//! off the data.
use image::RgbImage;
use std::path::Path;
use std::process::Command;
use zoo::plot::{confusion, confusion_color, training_curves, ConfusionLayout, EpochPoint};

fn dark(img: &RgbImage, x: i32, y: i32) -> bool {
    let p = img.get_pixel(x as u32, y as u32).0;
    (p[0] as u32 + p[1] as u32 + p[2] as u32) < 3 * 110
}

/// Rows (y) of the image inside `x0..x1` holding dark ink, grouped into runs; each run is
/// `(first y, last y, leftmost x, rightmost x)`.
fn ink_runs(img: &RgbImage, x0: i32, x1: i32, y0: i32, y1: i32) -> Vec<(i32, i32, i32, i32)> {
    let mut runs: Vec<(i32, i32, i32, i32)> = Vec::new();
    for y in y0..y1 {
        let xs: Vec<i32> = (x0..x1).filter(|&x| dark(img, x, y)).collect();
        if xs.is_empty() {
            continue;
        }
        let (l, r) = (xs[0], *xs.last().unwrap());
        match runs.last_mut() {
            Some(run) if run.1 >= y - 2 => *run = (run.0, y, run.2.min(l), run.3.max(r)),
            _ => runs.push((y, y, l, r)),
        }
    }
    runs
}

/// Checks the picture at `png` against `counts` and `labels` as the layout places them.
fn check_picture(png: &Path, layout: &ConfusionLayout, labels: &[String], counts: &[Vec<u64>]) {
    let img = image::open(png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), layout.size, "image size");
    let k = layout.shown.len();
    for (r, &t) in layout.shown.iter().enumerate() {
        let total = counts[t].iter().sum::<u64>().max(1);
        for (c, &p) in layout.shown.iter().enumerate() {
            let (x0, y0, x1, y1) = layout.cell_rect(r, c);
            // The cell's corner (away from its count) has the shade of its share of the row.
            let want = confusion_color(counts[t][p] as f64 / total as f64);
            let got = img.get_pixel((x0 + 3) as u32, (y0 + 3) as u32).0;
            assert_eq!(got, [want.0, want.1, want.2], "cell ({}, {}) shade", labels[t], labels[p]);
            // Its count, when non-zero, is drawn centred in the cell.
            let ink: Vec<(i32, i32)> = (y0 + 1..y1 - 1)
                .flat_map(|y| (x0 + 1..x1 - 1).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x as u32, y as u32).0 != got)
                .collect();
            if counts[t][p] == 0 {
                assert!(ink.is_empty(), "cell ({}, {}) is 0 but has text", labels[t], labels[p]);
                continue;
            }
            assert!(!ink.is_empty(), "cell ({}, {}) shows no count", labels[t], labels[p]);
            let cx = (ink.iter().map(|p| p.0).min().unwrap() + ink.iter().map(|p| p.0).max().unwrap()) / 2;
            let cy = (ink.iter().map(|p| p.1).min().unwrap() + ink.iter().map(|p| p.1).max().unwrap()) / 2;
            let tol = (layout.cell / 8).max(3);
            assert!((cx - (x0 + x1) / 2).abs() <= tol, "count of ({}, {}) not centred: x {cx}", labels[t], labels[p]);
            assert!((cy - (y0 + y1) / 2).abs() <= tol, "count of ({}, {}) not centred: y {cy}", labels[t], labels[p]);
        }
    }
    // Row labels: one run of ink per row, centred on it, top to bottom in the rows' order.
    let (gx, gy) = layout.origin;
    let runs = ink_runs(&img, gx - layout.label_width - 10, gx - 2, gy, gy + k as i32 * layout.cell);
    assert_eq!(runs.len(), k, "one label per row: {runs:?}");
    for (r, run) in runs.iter().enumerate() {
        let centre = (run.0 + run.1) / 2;
        let row_centre = gy + r as i32 * layout.cell + layout.cell / 2;
        assert!(
            (centre - row_centre).abs() <= (layout.cell / 8).max(3),
            "label of row {r} at y {centre}, the row's centre is {row_centre}"
        );
        assert!(run.3 <= gx - 4, "label of row {r} runs into the grid");
    }
    // The labels' widths follow the labels' lengths, so each row carries its own label.
    let widths: Vec<i32> = runs.iter().map(|r| r.3 - r.2).collect();
    for a in 0..k {
        for b in 0..k {
            let (la, lb) = (labels[layout.shown[a]].len(), labels[layout.shown[b]].len());
            if la + 3 < lb {
                assert!(widths[a] < widths[b], "row {a} ('{}') drawn wider than row {b}", labels[layout.shown[a]]);
            }
        }
    }
}

#[test]
fn a_known_three_class_matrix_is_drawn_where_its_data_is() {
    let tmp = tempfile::tempdir().unwrap();
    let labels: Vec<String> = ["a", "mmmmmmmmmmmm", "mmmmmm"].map(String::from).to_vec();
    let counts = vec![vec![5, 1, 0], vec![0, 3, 3], vec![2, 0, 9]];
    let png = tmp.path().join("c.png");
    let layout = confusion(&png, "three classes", &labels, &counts).unwrap();
    assert_eq!(layout.shown, [0, 1, 2]);
    assert!(layout.top_confusions.is_empty(), "few classes: the grid shows everything");
    check_picture(&png, &layout, &labels, &counts);
}

#[test]
fn many_classes_show_the_classes_that_occur_and_list_the_largest_confusions() {
    let tmp = tempfile::tempdir().unwrap();
    let labels: Vec<String> = (0..1000).map(|i| format!("class {i}")).collect();
    let mut counts = vec![vec![0u64; 1000]; 1000];
    counts[281][281] = 1;
    counts[281][285] = 1;
    counts[7][999] = 2;
    let png = tmp.path().join("c.png");
    let layout = confusion(&png, "1000 classes, 4 images", &labels, &counts).unwrap();
    assert_eq!(layout.shown, [7, 281, 285, 999], "only the classes that occur, in label order");
    assert_eq!(layout.top_confusions, [(7, 999, 2), (281, 285, 1)]);
    assert!(layout.size.0 < 1600 && layout.size.1 < 1200, "a readable picture, not a 1000x1000 grid");
    check_picture(&png, &layout, &labels, &counts);
}

#[test]
fn zoo_eval_draws_its_own_confusion_csv() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let idx = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(idx.is_dir(), "the Debian package dataset-fashion-mnist is missing: run `make setup`");
    let tmp = tempfile::tempdir().unwrap();
    let zoo = env!("CARGO_BIN_EXE_zoo");
    let data = tmp.path().join("fmnist");
    let o = Command::new(zoo)
        .env("ZOO_HOME", tmp.path().join("home"))
        .env("ZOO_OFFLINE", "1")
        .args(["dataset", "export-idx", "--split", "val", "--limit-per-class", "4", "--classes", "fashion"])
        .arg("--images")
        .arg(idx.join("t10k-images-idx3-ubyte.gz"))
        .arg("--labels")
        .arg(idx.join("t10k-labels-idx1-ubyte.gz"))
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "export-idx: {}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("eval");
    let o = Command::new(zoo)
        .env("ZOO_HOME", tmp.path().join("home"))
        .env("ZOO_OFFLINE", "1")
        .args(["eval", "lenet5", "--device", "cpu", "--weights"])
        .arg(root.join("assets/weights/lenet5-fashion_mnist.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "eval: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let mut csv = csv::Reader::from_path(out.join("confusion.csv")).unwrap();
    let labels: Vec<String> = csv.headers().unwrap().iter().skip(1).map(String::from).collect();
    assert_eq!(labels.len(), 10, "Fashion-MNIST's ten classes: {labels:?}");
    let mut counts = Vec::new();
    for (i, row) in csv.records().enumerate() {
        let row = row.unwrap();
        assert_eq!(&row[0], labels[i].as_str(), "rows in the columns' order");
        counts.push(row.iter().skip(1).map(|v| v.parse::<u64>().unwrap()).collect::<Vec<_>>());
    }
    assert_eq!(counts.iter().flatten().sum::<u64>(), 40, "4 images of each of 10 classes");
    let layout = ConfusionLayout::new(&labels, &counts);
    check_picture(&out.join("confusion.png"), &layout, &labels, &counts);
}

#[test]
fn training_curves_have_integer_epochs_and_legends_above_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<EpochPoint> = (1..=3)
        .map(|e| EpochPoint {
            epoch: e,
            lr: 0.1 / e as f64,
            train_loss: 2.0 / e as f64,
            val_loss: 2.2 / e as f64,
            train_acc1: 30.0 * e as f64,
            val_acc1: f64::NAN,
        })
        .collect();
    let png = tmp.path().join("curves.png");
    training_curves(&png, "run", &rows).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    // Each of the three panels has its legend in a strip above its plot: the series' colours
    // appear there, and the plot area below the strip is where the lines are.
    let blue = [31u8, 119, 180];
    let band = |y0: u32, y1: u32, c: [u8; 3]| (y0..y1).any(|y| (0..w).any(|x| img.get_pixel(x, y).0 == c));
    let top = 34; // below the title
    let panel = (h - top) / 3;
    for i in 0..2 {
        let y0 = top + i * panel;
        assert!(band(y0, y0 + 26, blue), "panel {i}: legend strip shows the train series");
        assert!(band(y0 + 30, y0 + panel, blue), "panel {i}: the train series is drawn below its legend");
    }
    assert!(training_curves(&png, "run", &[]).is_err(), "nothing to plot is an error");
}
