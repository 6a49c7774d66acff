//! Parity for the Inception line beyond torchvision: BN-Inception against Cadene's
//! `pretrainedmodels`, Inception v4 and Inception-ResNet v2 against timm, Inception-ResNet v1
//! against pytorchcv. The reference's state_dict file (zip format, and legacy format for
//! BN-Inception and Inception-ResNet v1) loaded into the zoo model gives the reference's eval
//! logits, and the parameter counts agree.
//!
//! Cadene's Inception v4 and Inception-ResNet v2 files (1001 classes, background first, head
//! `last_linear`) load through the checkpoint module's key rules, [`cadene_rules`], and then give
//! Cadene's logits without the background column.
//!
//! References come from `tests/py/reference.py` with `tests/py/refs_inception_line.py`.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zoo::checkpoint::{apply_rules, load_into, read, KeyRule, LoadError, LoadOptions, StateDict};
use zoo::models::{BuildConfig, Model};

/// Reference folders generated for this file.
const MODELS: &[&str] = &[
    "bninception",
    "inception_v4",
    "inception_resnet_v1",
    "inception_resnet_v2",
    "cadene_inceptionv4",
    "cadene_inceptionresnetv2",
];

fn references() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity_inception_line", MODELS))
}

/// The reference's folder and its inputs and outputs.
fn reference(name: &str) -> (PathBuf, StateDict) {
    let dir = references().join(name);
    let io = read(&dir.join("io.safetensors")).unwrap();
    (dir, io)
}

fn get<'a>(io: &'a StateDict, key: &str) -> &'a tch::Tensor {
    io.get(key).unwrap_or_else(|| panic!("{key} missing from io.safetensors"))
}

/// Eval logits and parameter count of the registry model `name`, loaded strictly from each file.
fn check(name: &str, expect_legacy: bool) {
    let (dir, io) = reference(name);
    let files = common::weight_files(&dir, expect_legacy);
    let params = get(&io, "params").int64_value(&[]);
    for file in files {
        let mut model = Model::new(name, BuildConfig::default(), tch::Device::Cpu).unwrap();
        model.load_file(&file).unwrap();
        let logits = model.predict(get(&io, "input")).unwrap();
        let label = format!("{name} ({})", file.file_name().unwrap().to_string_lossy());
        common::assert_parity(&label, &logits, get(&io, "logits"));
        assert_eq!(model.num_params(), params, "{name}: parameter count differs from the reference");
    }
}

#[test]
fn bninception() {
    check("bninception", true);
}

#[test]
fn inception_v4() {
    check("inception_v4", false);
}

#[test]
fn inception_resnet_v1() {
    check("inception_resnet_v1", true);
}

#[test]
fn inception_resnet_v2() {
    check("inception_resnet_v2", false);
}

/// The key rules that load Cadene's file for `zoo_name`: rename its `last_linear` head to the
/// zoo's classifier path (timm's names: Inception v4 keeps `last_linear`, Inception-ResNet v2
/// calls it `classif`), then drop row 0 of the head's weight and bias (TensorFlow's background
/// class). Every other key is already the zoo's.
fn cadene_rules(zoo_name: &str) -> Vec<KeyRule> {
    let mut rules = Vec::new();
    if zoo_name == "inception_resnet_v2" {
        rules.push(KeyRule::Rename { pattern: r"^last_linear\.".into(), replace: "classif.".into() });
    }
    let head =
        if zoo_name == "inception_resnet_v2" { r"^classif\.(weight|bias)$" } else { r"^last_linear\.(weight|bias)$" };
    rules.push(KeyRule::DropFirstRow { pattern: head.into() });
    rules
}

/// Cadene's 1001-class file, through [`cadene_rules`], gives Cadene's logits less column 0; the
/// file as it is does not load.
fn check_cadene(reference_name: &str, zoo_name: &str) {
    let (dir, io) = reference(reference_name);
    let file = dir.join("weights.pth");
    let expected = get(&io, "logits");
    assert_eq!(expected.size()[1], 1001, "{reference_name}: Cadene's head has 1001 classes");
    let model = Model::new(zoo_name, BuildConfig::default(), tch::Device::Cpu).unwrap();

    let raw = read(&file).unwrap();
    let err = load_into(&model.vs, &raw, &LoadOptions::default()).unwrap_err().downcast::<LoadError>().unwrap();
    let names = err.unexpected.iter().map(|(k, _)| k).chain(err.mismatched.iter().map(|(k, _, _)| k));
    assert!(
        names.into_iter().any(|k| k.contains("last_linear")),
        "{reference_name}: the raw file should not load: {err}"
    );

    let sd = apply_rules(read(&file).unwrap(), &cadene_rules(zoo_name)).unwrap();
    load_into(&model.vs, &sd, &LoadOptions::default()).unwrap();
    let logits = model.predict(get(&io, "input")).unwrap();
    common::assert_parity(&format!("{reference_name} -> {zoo_name}"), &logits, &expected.narrow(1, 1, 1000));
    let params = get(&io, "params").int64_value(&[]);
    assert_eq!(model.num_params(), params - 1537, "{zoo_name}: Cadene's count less one head row (1536 + 1)");
}

#[test]
fn cadene_inceptionv4_through_key_rules() {
    check_cadene("cadene_inceptionv4", "inception_v4");
}

#[test]
fn cadene_inceptionresnetv2_through_key_rules() {
    check_cadene("cadene_inceptionresnetv2", "inception_resnet_v2");
}

/// BN-Inception's ceil-mode pools fit its stride-2 convolutions on some sizes only (as in Caffe's
/// and Cadene's models): 299 is refused before running, with the sizes that work, and the sizes
/// around the default go through.
#[test]
fn bninception_names_the_input_sizes_it_accepts() {
    let _g = tch::no_grad_guard();
    let model = zoo::nn::without_init(|| Model::new("bninception", BuildConfig::default(), tch::Device::Cpu)).unwrap();
    let x = |side: i64| tch::Tensor::zeros([1, 3, side, side], (tch::Kind::Float, tch::Device::Cpu));
    for side in [31, 223, 224, 230] {
        assert_eq!(model.predict(&x(side)).unwrap().size(), [1, 1000], "side {side}");
    }
    let msg = model.predict(&x(299)).unwrap_err().to_string();
    assert!(msg.contains("299x299") && msg.contains("31 to 38 modulo 32"), "{msg}");
    // Past the registry's check (a caller running the network directly), the module still
    // stops with its own name rather than a libtorch error.
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.net.forward_t(&x(299), false))).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("inception_3c_output") && msg.contains("31-38 modulo 32"), "{msg}");
}
