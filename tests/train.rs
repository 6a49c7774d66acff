//! Fine-tuning and training: a tiny generated data set learnt to ≥ 95 %, frozen stages left
//! bit-identical (batch-norm statistics included), resume continuing exactly where an
//! uninterrupted run goes, the saved metadata read back by `zoo classify` and `zoo eval`, bad
//! input caught up front, and Fashion-MNIST's IDX files read as Python reads them.
//!
//! Training runs are serialised (one lock): torch's random generator is process-wide, and the
//! machine is small. Every run uses one libtorch thread.
mod common;

use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use zoo::checkpoint::{self, write_safetensors};
use zoo::models::Model;
use zoo::train::augment::Rng;
use zoo::train::trainer::{self, checkpoint_metadata, model_entries};
use zoo::train::{dataset, AugmentConfig, Freeze, OptimizerKind, Schedule, TrainConfig};

static RUNS: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn zoo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zoo"))
}

/// Colour patches: each class a base colour with per-pixel noise, `n` images of 32×32.
fn colour_patches(dir: &Path, classes: &[(&str, [u8; 3])], n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, base) in classes {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let img = RgbImage::from_fn(32, 32, |_, _| {
                let mut px = [0u8; 3];
                for (k, v) in px.iter_mut().enumerate() {
                    *v = (f64::from(base[k]) + rng.range(-40.0, 40.0)).clamp(0.0, 255.0) as u8;
                }
                Rgb(px)
            });
            img.save(d.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

const COLOURS: [(&str, [u8; 3]); 3] = [("blue", [40, 60, 200]), ("green", [50, 190, 60]), ("red", [210, 40, 40])];

/// Grayscale stripes: horizontal, vertical or none, random phase and noise.
fn stripes(dir: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for (c, name) in ["flat", "horizontal", "vertical"].iter().enumerate() {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let phase = rng.below(4) as u32;
            let img = GrayImage::from_fn(28, 28, |x, y| {
                let on = match c {
                    1 => (y + phase) % 4 < 2,
                    2 => (x + phase) % 4 < 2,
                    _ => false,
                };
                Luma([((if on { 200.0 } else { 60.0 }) + rng.range(-30.0, 30.0)) as u8])
            });
            img.save(d.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// A small configuration: fixed seed, one thread, no augmentation unless asked.
fn config(model: &str, data: &Path, out: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        model: model.into(),
        data: data.into(),
        out: out.into(),
        epochs,
        batch_size: 16,
        lr: 0.01,
        weight_decay: 1e-4,
        optimizer: OptimizerKind::Sgd { momentum: 0.9, nesterov: true },
        schedule: Schedule::Cosine { warmup_epochs: 0.0, min_lr: 0.0 },
        augment: AugmentConfig::none(),
        seed: 7,
        device: "cpu".into(),
        threads: Some(1),
        ..TrainConfig::default()
    }
}

fn metrics_epochs(out: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(trainer::METRICS_HEADER));
    lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}

fn tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    checkpoint::read(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())).entries
}

fn get<'a>(sd: &'a [(String, tch::Tensor)], key: &str) -> &'a tch::Tensor {
    &sd.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no tensor {key}")).1
}

fn same(a: &tch::Tensor, b: &tch::Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn colour_patches_are_learnt_and_the_checkpoint_describes_itself() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("patches");
    colour_patches(&data.join("train"), &COLOURS, 24, 1);
    colour_patches(&data.join("val"), &COLOURS, 10, 2);
    let out = tmp.path().join("run");
    let mut cfg = config("resnet18", &data, &out, 3);
    cfg.input_size = Some(32);
    cfg.augment = AugmentConfig { hflip: 0.5, ..AugmentConfig::none() };
    let started = std::time::Instant::now();
    let s = trainer::run(&cfg).unwrap();
    eprintln!("resnet18 on colour patches: {:?} in {:.1} s", s.best_acc1, started.elapsed().as_secs_f64());
    assert_eq!(s.classes, ["blue", "green", "red"]);
    assert!(s.best_acc1.unwrap() >= 95.0, "val top-1 {:?} < 95%: {:?}", s.best_acc1, s.history);
    assert_eq!(metrics_epochs(&out), [1, 2, 3]);
    for f in ["best.safetensors", "last.safetensors", "resume.safetensors", "metrics.csv", "curves.png", "run.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let meta = checkpoint::read_safetensors_metadata(&out.join("best.safetensors")).unwrap();
    assert_eq!(meta["zoo.arch"], "resnet18");
    assert_eq!(meta["zoo.classes"], r#"["blue","green","red"]"#);
    let pre: zoo::data::preprocess::Preprocess = serde_json::from_str(&meta["zoo.preprocess"]).unwrap();
    assert_eq!(pre.crop, [32, 32]);

    // `zoo classify` reads the class names and preprocessing back from the file.
    let val_red = data.join("val/red/000.png");
    let val_blue = data.join("val/blue/000.png");
    let o = Command::new(zoo_bin())
        .args(["classify", "resnet18", "--device", "cpu", "--top-k", "1", "--format", "csv", "--weights"])
        .arg(out.join("best.safetensors"))
        .arg(&val_red)
        .arg(&val_blue)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "classify failed: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].split(',').nth(3) == Some("red"), "red patch not classified as red: {stdout}");
    assert!(rows[1].split(',').nth(3) == Some("blue"), "blue patch not classified as blue: {stdout}");

    // `zoo eval`: accuracy and the confusion matrix files.
    let ev = tmp.path().join("eval");
    let o = Command::new(zoo_bin())
        .args(["eval", "resnet18", "--device", "cpu", "--data"])
        .arg(&data)
        .arg("--weights")
        .arg(out.join("best.safetensors"))
        .arg("--out")
        .arg(&ev)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "eval failed: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("30 images"), "{stdout}");
    let csv = std::fs::read_to_string(ev.join("confusion.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("true\\predicted,blue,green,red"));
    let diagonal: u64 =
        csv.lines().skip(1).enumerate().map(|(i, l)| l.split(',').nth(i + 1).unwrap().parse::<u64>().unwrap()).sum();
    assert!(diagonal >= 29, "confusion diagonal {diagonal} of 30:\n{csv}");
    assert!(ev.join("confusion.png").is_file() && ev.join("per_class.csv").is_file());
}

/// A random resnet18 saved as a zoo checkpoint, to fine-tune from.
fn random_resnet18(path: &Path) -> Vec<(String, tch::Tensor)> {
    tch::manual_seed(3);
    let m = Model::new("resnet18", zoo::models::find("resnet18").unwrap().default_config(), tch::Device::Cpu).unwrap();
    let pre = zoo::weights::pretrained::default_preprocess(m.spec);
    let meta = checkpoint_metadata("resnet18", &[], &pre).unwrap();
    let entries = model_entries(&m);
    write_safetensors(path, &entries, Some(&meta)).unwrap();
    entries
}

#[test]
fn freezing_keeps_frozen_stages_and_their_batch_norms_bit_identical() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("patches");
    colour_patches(&data, &COLOURS, 12, 3);
    let init_path = tmp.path().join("init.safetensors");
    let init = random_resnet18(&init_path);

    let out = tmp.path().join("until");
    let mut cfg = config("resnet18", &data, &out, 1);
    cfg.pretrained = true;
    cfg.weights = Some(init_path.clone());
    cfg.input_size = Some(32);
    cfg.val_split = 0.25;
    cfg.freeze = Freeze::Until("layer2".into());
    cfg.lr = 0.05;
    trainer::run(&cfg).unwrap();
    let after = tensors(&out.join("last.safetensors"));
    let (mut frozen, mut trained) = (0, 0);
    for (name, t0) in &init {
        if name.starts_with("fc.") {
            continue;
        }
        let t1 = get(&after, name);
        let stem_or_early = ["conv1.", "bn1.", "layer1.", "layer2."].iter().any(|p| name.starts_with(p));
        if stem_or_early {
            assert!(same(t0, t1), "frozen {name} changed");
            frozen += 1;
        } else if !name.ends_with("running_var") {
            assert!(!same(t0, t1), "trainable {name} did not change");
            trained += 1;
        }
    }
    assert!(frozen > 20 && trained > 20, "{frozen} frozen, {trained} trained");
    // The batch norms of the trained stages ran in train mode (statistics moved) ...
    assert!(!same(get(&init, "layer3.0.bn1.running_mean"), get(&after, "layer3.0.bn1.running_mean")));
    // ... those of the frozen ones in eval mode (checked above, named here for the reader).
    assert!(same(get(&init, "layer2.1.bn2.running_var"), get(&after, "layer2.1.bn2.running_var")));
    assert!(same(get(&init, "bn1.running_mean"), get(&after, "bn1.running_mean")));

    // --freeze backbone: only the new head moves.
    let out = tmp.path().join("backbone");
    let mut cfg = cfg.clone();
    cfg.out = out.clone();
    cfg.freeze = Freeze::Backbone;
    trainer::run(&cfg).unwrap();
    let after = tensors(&out.join("last.safetensors"));
    for (name, t0) in init.iter().filter(|(n, _)| !n.starts_with("fc.")) {
        assert!(same(t0, get(&after, name)), "frozen {name} changed under --freeze backbone");
    }
    assert_eq!(get(&after, "fc.weight").size(), [3, 512]);
}

#[test]
fn resume_continues_where_an_uninterrupted_run_goes() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stripes");
    stripes(&data, 20, 5);
    let whole = tmp.path().join("whole");
    let mut cfg = config("lenet5", &data, &whole, 3);
    cfg.optimizer = OptimizerKind::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    cfg.lr = 2e-3;
    cfg.augment = AugmentConfig { hflip: 0.5, translate: 0.1, ..AugmentConfig::none() };
    trainer::run(&cfg).unwrap();

    let parts = tmp.path().join("parts");
    let mut first = cfg.clone();
    first.out = parts.clone();
    first.stop_after = Some(1);
    let s = trainer::run(&first).unwrap();
    assert_eq!(s.history.len(), 1);
    assert_eq!(metrics_epochs(&parts), [1]);

    // Starting over in the same folder is refused; --resume continues.
    let err = trainer::run(&TrainConfig { stop_after: None, ..first.clone() }).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    let second = TrainConfig { stop_after: None, resume: true, ..first.clone() };
    let s = trainer::run(&second).unwrap();
    assert_eq!(metrics_epochs(&parts), [1, 2, 3], "epochs must continue, not repeat");
    assert_eq!(s.history.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2, 3]);

    // Same weights, bit for bit, as the uninterrupted run.
    let a = tensors(&whole.join("last.safetensors"));
    let b = tensors(&parts.join("last.safetensors"));
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert!(same(t, get(&b, k)), "{k} differs between the resumed and the uninterrupted run");
    }
    // Nothing left to do: a second resume runs no epoch and keeps the metrics.
    trainer::run(&second).unwrap();
    assert_eq!(metrics_epochs(&parts), [1, 2, 3]);
}

#[test]
fn bad_input_is_reported_before_training() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();

    // A single class.
    let one = tmp.path().join("one");
    colour_patches(&one, &COLOURS[..1], 3, 1);
    let err = dataset::image_folder(&one, 0.1, 0).unwrap_err().to_string();
    assert!(err.contains("at least 2 classes") && err.contains("blue"), "{err}");

    // An empty class folder is skipped with a warning; a broken file is listed and skipped; a
    // class with one image leaves the val split without it.
    let mixed = tmp.path().join("mixed");
    colour_patches(&mixed, &COLOURS[..2], 6, 2);
    std::fs::create_dir_all(mixed.join("empty")).unwrap();
    std::fs::write(mixed.join("green/broken.png"), b"not a png at all").unwrap();
    colour_patches(&mixed, &COLOURS[2..], 1, 3);
    let ds = dataset::image_folder(&mixed, 0.2, 0).unwrap();
    assert_eq!(ds.classes, ["blue", "green", "red"]);
    let all = ds.warnings.join("\n");
    assert!(all.contains("empty") && all.contains("no images"), "{all}");
    assert!(all.contains("broken.png") && all.contains("skipped"), "{all}");
    assert!(all.contains("no images of class(es) red"), "{all}");
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.train.len() + ds.val.len(), 13);
    assert!(ds.val.iter().all(|s| s.label != 2) && ds.train.iter().any(|s| s.label == 2));
    // The split is stratified and deterministic.
    let again = dataset::image_folder(&mixed, 0.2, 0).unwrap();
    assert_eq!(again.val, ds.val);
    assert_eq!(ds.counts(&ds.val), [1, 1, 0]);

    // Training on it still works (the broken file never reaches the loop).
    let out = tmp.path().join("run");
    let mut cfg = config("lenet5", &mixed, &out, 1);
    cfg.val_split = 0.2;
    let s = trainer::run(&cfg).unwrap();
    assert!(s.warnings.iter().any(|w| w.contains("broken.png")));

    // A model the registry lacks, and a stage the model lacks.
    let err = trainer::run(&config("resnet181", &mixed, &tmp.path().join("x"), 1)).unwrap_err().to_string();
    assert!(err.contains("unknown model") && err.contains("resnet18"), "{err}");
    let init = tmp.path().join("init.safetensors");
    random_resnet18(&init);
    let mut cfg = config("resnet18", &mixed, &tmp.path().join("y"), 1);
    cfg.pretrained = true;
    cfg.weights = Some(init);
    cfg.input_size = Some(32);
    cfg.freeze = Freeze::Until("NOPE".into());
    let err = format!("{:#}", trainer::run(&cfg).unwrap_err());
    assert!(err.contains("NOPE") && err.contains("layer1") && err.contains("layer4"), "{err}");
    assert!(!tmp.path().join("y/resume.safetensors").exists());
    assert!("until:".parse::<Freeze>().is_err());
}

/// `zoo train` as a user runs it on a folder with two bad files: one whose header is unreadable
/// (found by the folder scan) and a PNG whose header is whole but whose pixel data is cut (found
/// only when decoded, in the first epoch). Each is named once, by its path and why, training goes
/// on with the rest and writes its checkpoints, and the exit status is 1.
#[test]
fn train_names_each_unreadable_file_once_and_exits_1() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    colour_patches(&data, &COLOURS[..2], 6, 5);
    std::fs::write(data.join("blue/garbage.png"), b"not a png at all").unwrap();
    let whole = std::fs::read(data.join("green/000.png")).unwrap();
    // Past the IHDR chunk (the header the scan reads) but before the end of the pixel data.
    std::fs::write(data.join("green/cut.png"), &whole[..60]).unwrap();
    let out = tmp.path().join("run");
    let run = Command::new(zoo_bin())
        .args(["train", "lenet5", "--data", data.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .args(["--epochs", "2", "--batch-size", "4", "--device", "cpu", "--val-split", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    for name in ["garbage.png", "cut.png"] {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name} named once:\n{stderr}");
        // The path once, then why ("truncated", "not a readable image"), not the path twice.
        assert_eq!(lines[0].matches(name).count(), 1, "{}", lines[0]);
    }
    assert!(stderr.lines().any(|l| l.contains("cut.png") && l.contains("truncated")), "{stderr}");
    assert!(stderr.contains("zoo train: 2 image(s) could not be read and were not trained on"), "{stderr}");
    assert_eq!(metrics_epochs(&out), [1, 2]);
    assert!(out.join("last.safetensors").exists());
}

#[test]
fn show_augment_writes_a_grid_without_training() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("patches");
    colour_patches(&data, &COLOURS, 4, 9);
    let grid = tmp.path().join("grid.png");
    let mut cfg = config("resnet18", &data, &tmp.path().join("run"), 1);
    cfg.input_size = Some(32);
    cfg.augment = AugmentConfig {
        rotate: 20.0,
        clahe: 0.5,
        brightness: 0.3,
        contrast: 0.3,
        saturation: 0.3,
        ..AugmentConfig::default()
    };
    cfg.show_augment = Some(grid.clone());
    cfg.stop_after = Some(0);
    let s = trainer::run(&cfg).unwrap();
    assert!(s.history.is_empty());
    let img = image::open(&grid).unwrap();
    // 9 training images (3 held out), 8 per row, 32 px enlarged 3x, 2 px gaps.
    assert_eq!((img.width(), img.height()), (8 * 98 + 2, 2 * 98 + 2));
}

/// The first byte of a gzip file's content at `offset`, as Python reads it.
fn python_byte(path: &Path, offset: usize) -> u8 {
    let py = common::python();
    assert!(py.exists(), "{} is missing: run `make setup` first", py.display());
    let code = format!("import gzip,sys; print(gzip.open(sys.argv[1]).read()[{offset}])");
    let o = Command::new(py).args(["-c", &code]).arg(path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn fashion_mnist_idx_files_read_as_python_reads_them() {
    use zoo::data::fashion_mnist::{self, DEBIAN_DIR, FASHION_CLASSES};
    let dir = Path::new(DEBIAN_DIR);
    let file = |n: &str| dir.join(n);
    assert!(
        file("train-labels-idx1-ubyte.gz").exists(),
        "Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist` (make setup does it)"
    );
    let train_labels = fashion_mnist::read_labels(&file("train-labels-idx1-ubyte.gz")).unwrap();
    let test_labels = fashion_mnist::read_labels(&file("t10k-labels-idx1-ubyte.gz")).unwrap();
    let train_images = fashion_mnist::read_images(&file("train-images-idx3-ubyte.gz")).unwrap();
    let test_images = fashion_mnist::read_images(&file("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((train_labels.len(), test_labels.len()), (60000, 10000));
    assert_eq!((train_images.count, train_images.rows, train_images.cols), (60000, 28, 28));
    assert_eq!(test_images.count, 10000);
    assert!(train_labels.iter().chain(&test_labels).all(|&l| l < 10));
    let mut per_class = [0usize; 10];
    train_labels.iter().for_each(|&l| per_class[l as usize] += 1);
    assert_eq!(per_class, [6000; 10]);
    assert_eq!(train_labels[0], python_byte(&file("train-labels-idx1-ubyte.gz"), 8));
    assert_eq!(test_labels[0], python_byte(&file("t10k-labels-idx1-ubyte.gz"), 8));
    let pixel = 16 + 14 * 28 + 14;
    assert_eq!(train_images.pixels[pixel - 16], python_byte(&file("train-images-idx3-ubyte.gz"), pixel));

    let tmp = tempfile::tempdir().unwrap();
    let classes: Vec<String> = FASHION_CLASSES.iter().map(|s| s.to_string()).collect();
    let s = fashion_mnist::export(&test_images, &test_labels, &classes, tmp.path(), Some(3)).unwrap();
    assert_eq!(s.per_class, [3; 10]);
    let first = tmp.path().join(&classes[test_labels[0] as usize]).join("00000.png");
    let img = image::open(&first).unwrap().to_luma8();
    assert_eq!(img.as_raw()[..], test_images.pixels[..784]);
    let ds = dataset::image_folder(tmp.path(), 0.0, 0).unwrap();
    let mut sorted = classes.clone();
    sorted.sort();
    assert_eq!(ds.classes, sorted);
    assert_eq!(ds.train.len(), 30);
}
