//! The examples in `examples/` run as a user runs them (`cargo run --release --example NAME`),
//! on the real EfficientNet-Lite0 checkpoint, a real photo and Fashion-MNIST images, and do
//! what their documentation says.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/NAME`, built by `cargo test` beside this test's binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name))
        .args(args)
        .env("ZOO_OFFLINE", "1")
        .env("ZOO_HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e} (is it built? cargo test builds examples)"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "example {name} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// 4 Fashion-MNIST training images per class, as `zoo dataset export-idx` writes them.
fn fashion(dir: &Path) -> PathBuf {
    let idx = "/usr/share/datasets/fashion-mnist";
    let images = format!("{idx}/train-images-idx3-ubyte.gz");
    let labels = format!("{idx}/train-labels-idx1-ubyte.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(["dataset", "export-idx", "--images", &images, "--labels", &labels, "--split", "train"])
        .args(["--limit-per-class", "4", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("train")
}

fn lite0() -> String {
    common::lite0_checkpoint().to_string_lossy().into_owned()
}

#[test]
fn classify_image_names_the_espresso() {
    let photo = common::root().join("assets/photos/coffee.png");
    let out = run("classify_image", &["efficientnet_lite0", "--weights", &lite0(), photo.to_str().unwrap()]);
    let first = out.lines().nth(1).unwrap_or_default();
    assert!(first.ends_with("espresso"), "top-1 of coffee.png:\n{out}");
}

#[test]
fn compose_trains_a_tch_head_on_a_zoo_backbone() {
    let out = run("compose", &[]);
    let losses: Vec<f64> =
        out.lines().filter_map(|l| l.split("loss ").nth(1)).map(|v| v.trim().parse().unwrap()).collect();
    assert_eq!(losses.len(), 5, "{out}");
    assert!(losses[4] < losses[0], "the head learns: {losses:?}");
    assert!(out.contains("output [8, 3]"), "{out}");
}

#[test]
fn features_of_a_pretrained_network_separate_fashion_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fashion(tmp.path());
    let out = run("features", &["efficientnet_lite0", "--weights", &lite0(), data.to_str().unwrap()]);
    assert!(out.contains("40 images, 10 classes, features [40, 1280]"), "{out}");
    let line = out.lines().find(|l| l.contains("leave-one-out")).unwrap();
    let correct: usize = line.rsplit(": ").next().unwrap().split('/').next().unwrap().parse().unwrap();
    // Chance is 4 of 40: ImageNet features put most garments nearest their own class.
    assert!(correct >= 16, "{line}");
}

#[test]
fn finetune_lowers_the_loss_of_a_new_head() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fashion(tmp.path());
    let out = run("finetune", &["efficientnet_lite0", "--weights", &lite0(), data.to_str().unwrap()]);
    let losses: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("loss ").nth(1))
        .map(|v| v.split(',').next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 5, "{out}");
    assert!(losses[4] < 0.8 * losses[0], "the new head learns the 10 classes: {losses:?}");
}

/// The README's "export, then serve" snippets: the real Lite0 checkpoint exported to ONNX and
/// TorchScript, then `examples/serve/*.py` (ONNX Runtime, `torch.jit.load`) classify a real
/// photo from the files' own metadata, with `zoo classify`'s top-1 and probability.
#[test]
fn serve_scripts_classify_as_zoo_does() {
    let dir = tempfile::tempdir().unwrap();
    let lite0 = common::lite0_checkpoint();
    let photo = common::root().join("assets/photos/coffee.png");
    let zoo = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zoo")).args(args).env("ZOO_OFFLINE", "1").output().unwrap();
        assert!(out.status.success(), "zoo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let w = lite0.as_os_str();
    let csv = zoo(&[
        "classify".as_ref(),
        "efficientnet_lite0".as_ref(),
        "--weights".as_ref(),
        w,
        "--format".as_ref(),
        "csv".as_ref(),
        photo.as_os_str(),
    ]);
    // path,rank,class_index,label,probability: the first row is the top-1.
    let top1: Vec<String> = csv.lines().nth(1).unwrap().split(',').map(str::to_string).collect();
    let (label, prob): (&str, f64) = (&top1[3], top1[4].parse().unwrap());
    for (script, file) in [("onnx_classify.py", "lite0.onnx"), ("torchscript_classify.py", "lite0.pt")] {
        let path = dir.path().join(file);
        zoo(&[
            "export".as_ref(),
            "efficientnet_lite0".as_ref(),
            "--weights".as_ref(),
            w,
            "--output".as_ref(),
            path.as_os_str(),
        ]);
        let out = Command::new(common::python())
            .arg(common::root().join("examples/serve").join(script))
            .arg(&path)
            .arg(&photo)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        // "PATH espresso 95.66%, cup 1.23%, ...": the first class and its percentage.
        let first = stdout.split_once(' ').unwrap().1.split(", ").next().unwrap();
        let (name, pct) = first.rsplit_once(' ').unwrap();
        let pct: f64 = pct.trim_end_matches('%').parse().unwrap();
        assert_eq!(name, label, "{script}: {stdout}");
        assert!((pct / 100.0 - prob).abs() < 5e-3, "{script}: {pct}% against zoo's {prob}: {stdout}");
    }
}
