//! pytorchcv's checkpoints through the manifest: for each `ARCH.pytorchcv_in1k` entry whose file
//! uses pytorchcv's own key names, pytorchcv's network with random weights (`get_model(name,
//! pretrained=False)`, see `tests/py/refs_pytorchcv.py`) is saved, read back, renamed by the
//! entry's own `key_rules`, loaded strictly into the entry's architecture and gives pytorchcv's
//! eval logits, with the same parameter count. The same file also goes through
//! `zoo::weights::pretrained::load` (what `zoo classify ARCH.TAG --weights FILE` runs).
//!
//! - Inception v4, Inception-ResNet v2, Xception, BN-Inception: the same networks as the layouts
//!   the zoo follows (timm's, timm's, timm's `legacy_xception`, Cadene's), renamed only.
//! - MobileNet v1: pytorchcv's network uses plain ReLU, so the entry is `mobilenet_v1_relu`.
//! - ZFNet: pytorchcv's network puts LRN before unpadded ceil-mode pools and dropout after the
//!   hidden ReLUs, so the entry is `zfnet_pytorchcv`.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};
use zoo::checkpoint::{apply_rules, load_into, read, LoadOptions, StateDict};
use zoo::models::{BuildConfig, Model};
use zoo::weights::{manifest, Cache, FetchOptions, WeightsEntry};

/// Reference folders generated for this file.
const MODELS: &[&str] =
    &["pcv_inceptionv4", "pcv_inceptionresnetv2", "pcv_xception", "pcv_bninception", "pcv_mobilenet_w1", "pcv_zfnet"];

fn references() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity_pytorchcv", MODELS))
}

fn get<'a>(io: &'a StateDict, key: &str) -> &'a Tensor {
    io.get(key).unwrap_or_else(|| panic!("{key} missing from io.safetensors"))
}

fn entry(name: &str) -> &'static WeightsEntry {
    let m = manifest().unwrap_or_else(|e| panic!("the manifest does not load: {e}"));
    let e = m.resolve(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(e.name, name);
    assert_eq!(e.layout.as_deref(), Some("pytorchcv"), "{name}");
    assert!(!e.key_rules.is_empty(), "{name}: no key rules");
    e
}

/// pytorchcv's reference `reference` against the manifest entry `name`: the raw file does not
/// load, the entry's key rules make it load strictly, and the logits and parameter count agree.
fn check(reference: &str, name: &str) {
    let e = entry(name);
    let dir = references().join(reference);
    let io = read(&dir.join("io.safetensors")).unwrap();
    let (input, expected) = (get(&io, "input"), get(&io, "logits"));
    let params = get(&io, "params").int64_value(&[]);
    // tests/py/refs_pytorchcv.py writes the legacy format for MobileNet only.
    let files = common::weight_files(&dir, reference == "pcv_mobilenet_w1");
    for file in &files {
        let label = format!(
            "{name} <- pytorchcv {reference} ({}, {}px)",
            file.file_name().unwrap().to_string_lossy(),
            input.size()[2]
        );
        let raw = read(file).unwrap();
        assert!(raw.keys().any(|k| k.starts_with("features.stage1.unit1.")), "{label}: pytorchcv's key names");
        let model = Model::new(e.arch(), BuildConfig::default(), Device::Cpu).unwrap();
        let err = load_into(&model.vs, &raw, &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{label}: the file should not load as it is: {err}");

        let sd = apply_rules(raw, &e.key_rules).unwrap();
        let report = load_into(&model.vs, &sd, &LoadOptions::default()).unwrap_or_else(|err| panic!("{label}: {err}"));
        assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{label}: {report:?}");
        assert!(report.skipped.iter().all(|k| k.ends_with("num_batches_tracked")), "{label}: {:?}", report.skipped);
        let logits = model.predict(input).unwrap();
        common::assert_parity(&label, &logits, expected);
        assert_eq!(model.num_params(), params, "{label}: parameter count differs from pytorchcv's");

        // The command path: `ARCH.TAG --weights FILE` applies the entry's rules too.
        let opts = FetchOptions::new(Cache::new(common::fixtures("parity_pytorchcv_home")));
        let loaded = zoo::weights::pretrained::load(name, Some(file), Device::Cpu, &opts).unwrap();
        assert_eq!(loaded.model.spec.name, e.arch());
        // The preprocessing is pytorchcv's own for these weights (its metainfo), not merely the
        // manifest's copy of itself.
        let pcv = file_stem_of_url(&e.urls[0]);
        let row = &common::source_transforms()["pytorchcv"][pcv.as_str()];
        assert!(row.is_object(), "{label}: pytorchcv's metainfo has no {pcv}");
        let used = serde_json::to_value(&loaded.preprocess).unwrap();
        common::assert_same_transform(&format!("{label}: preprocessing"), &used, row);
        let again = loaded.model.predict(input).unwrap();
        assert!(again.equal(&logits), "{label}: pretrained::load gives other logits");
    }
}

/// pytorchcv's model name in an imgclsmob release file name (`NAME-ERROR-SHA1PREFIX.pth.zip`).
fn file_stem_of_url(url: &str) -> String {
    url.rsplit('/').next().unwrap().split('-').next().unwrap().to_string()
}

#[test]
fn inception_v4_pytorchcv() {
    check("pcv_inceptionv4", "inception_v4.pytorchcv_in1k");
}

#[test]
fn inception_resnet_v2_pytorchcv() {
    check("pcv_inceptionresnetv2", "inception_resnet_v2.pytorchcv_in1k");
}

#[test]
fn xception_pytorchcv() {
    check("pcv_xception", "xception.pytorchcv_in1k");
}

#[test]
fn bninception_pytorchcv() {
    check("pcv_bninception", "bninception.pytorchcv_in1k");
}

#[test]
fn mobilenet_v1_relu_pytorchcv() {
    check("pcv_mobilenet_w1", "mobilenet_v1_relu.pytorchcv_in1k");
}

#[test]
fn zfnet_pytorchcv() {
    check("pcv_zfnet", "zfnet_pytorchcv.pytorchcv_in1k");
}

/// The manifest's MobileNet rules are the ones `mobilenet_v1::pytorchcv_key_rules` builds, and the
/// entry names the plain-ReLU variant: timm's ReLU6 network gives other logits on these weights.
#[test]
fn mobilenet_v1_relu_entry_matches_the_model_code() {
    let e = entry("mobilenet_v1_relu.pytorchcv_in1k");
    assert_eq!(e.key_rules, zoo::models::mobilenet_v1::pytorchcv_key_rules());
    assert!(e.default, "the only entry of mobilenet_v1_relu is its default");
    assert_eq!(manifest().unwrap().resolve("mobilenet_v1_relu").unwrap().name, e.name);

    let dir = references().join("pcv_mobilenet_w1");
    let io = read(&dir.join("io.safetensors")).unwrap();
    let sd = apply_rules(read(&dir.join("weights.pth")).unwrap(), &e.key_rules).unwrap();
    let relu6 = Model::new("mobilenet_v1", BuildConfig::default(), Device::Cpu).unwrap();
    load_into(&relu6.vs, &sd, &LoadOptions::default()).unwrap();
    let logits = relu6.predict(get(&io, "input")).unwrap();
    assert!(!common::passes_parity(&logits, get(&io, "logits")), "ReLU6 should change pytorchcv's logits");
}

/// pytorchcv's ZFNet and the paper's differ in the network, not in the tensors: the paper's
/// `zfnet` takes the same renamed file when its classifier paths are used (1/4/6) but gives other
/// logits, and the two architectures have one entry each at most.
#[test]
fn zfnet_pytorchcv_is_not_the_papers_zfnet() {
    let e = entry("zfnet_pytorchcv.pytorchcv_in1k");
    assert!(e.default);
    let m = manifest().unwrap();
    assert!(m.entries_for("zfnet").is_empty(), "pytorchcv's file does not belong to the paper's zfnet");

    let dir = references().join("pcv_zfnet");
    let io = read(&dir.join("io.safetensors")).unwrap();
    let sd = apply_rules(read(&dir.join("weights.pth")).unwrap(), &e.key_rules).unwrap();
    let to_paper = |k: &str| match k.strip_prefix("classifier.") {
        Some(rest) if rest.starts_with("0.") => format!("classifier.1.{}", &rest[2..]),
        Some(rest) if rest.starts_with("3.") => format!("classifier.4.{}", &rest[2..]),
        _ => k.to_string(),
    };
    let sd = StateDict { entries: sd.entries.into_iter().map(|(k, t)| (to_paper(&k), t)).collect() };
    let paper = Model::new("zfnet", BuildConfig::default(), Device::Cpu).unwrap();
    load_into(&paper.vs, &sd, &LoadOptions::default()).unwrap();
    let logits = paper.predict(get(&io, "input")).unwrap();
    assert!(
        !common::passes_parity(&logits, get(&io, "logits")),
        "the paper's ordering should change pytorchcv's logits"
    );
}

/// pytorchcv's ceil-mode pools let windows overhang the map: `zfnet_pytorchcv` runs from 47
/// pixels (its registered minimum; 47 → 22 → 11 → 4 → 2 → 1), while 46 leaves the last pool
/// nothing; at 224 the maps are the paper's 110, 55, 26, 13, 6.
#[test]
fn zfnet_pytorchcv_sizes() {
    let _g = tch::no_grad_guard();
    let model = zoo::nn::without_init(|| Model::new("zfnet_pytorchcv", BuildConfig::default(), Device::Cpu)).unwrap();
    assert_eq!(model.spec.min_input, 47);
    let x = |side: i64| Tensor::zeros([1, 3, side, side], (Kind::Float, Device::Cpu));
    for side in [47, 48, 63, 64, 100, 224, 227] {
        assert_eq!(model.predict(&x(side)).unwrap().size(), [1, 1000], "side {side}");
    }
    let below = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.net.forward_t(&x(46), false)));
    assert!(below.is_err(), "zfnet_pytorchcv ran at 46 pixels: its registered minimum of 47 is too high");
    let taps = ["features.0", "features.3", "features.4", "features.7", "features.14"];
    let names: Vec<String> = taps.iter().map(|s| s.to_string()).collect();
    let (_, got) = zoo::nn::trace::capture(&names, || model.net.forward_t(&x(224), false));
    let sizes: Vec<i64> = taps.iter().map(|t| got[*t].size()[2]).collect();
    assert_eq!(sizes, [110, 55, 26, 13, 6]);
}
