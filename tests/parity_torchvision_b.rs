//! Parity with torchvision 0.26 for GoogLeNet, Inception v3, DenseNet and SqueezeNet: the same
//! state_dict file (zip and legacy formats) loaded into the zoo model gives the reference's eval
//! logits, and for the networks with auxiliary classifiers their train-mode outputs too (dropout
//! at 0 on both sides, a fresh load for each comparison since train-mode batch norm updates the
//! running statistics). References come from `tests/py/reference.py` (with
//! `tests/py/refs_inception.py` for the models whose pretrained form differs from torchvision's
//! constructor defaults).
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};
use zoo::checkpoint::{load_into, read, LoadOptions};
use zoo::models::googlenet::{googlenet_with_aux, AUX_PREFIXES};
use zoo::models::{BuildConfig, Model};

fn references() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity_b", MODELS))
}

/// The reference's folder, its inputs and outputs.
fn reference(name: &str) -> (PathBuf, zoo::checkpoint::StateDict) {
    let dir = references().join(name);
    let io = read(&dir.join("io.safetensors")).unwrap();
    (dir, io)
}

fn get<'a>(io: &'a zoo::checkpoint::StateDict, key: &str) -> &'a Tensor {
    io.get(key).unwrap_or_else(|| panic!("{key} missing from io.safetensors"))
}

/// The checkpoint files of a reference: every reference of this file is written in the zip and
/// the legacy format, and both must be there.
fn files(dir: &Path) -> Vec<PathBuf> {
    common::weight_files(dir, true)
}

/// Loads with options other than strict (the zoo's `Model::load_file` is strict).
fn load_with(model: &Model, path: &Path, opts: LoadOptions) {
    let sd = read(path).unwrap();
    load_into(&model.vs, &sd, &opts).unwrap();
}

fn label(name: &str, file: &Path) -> String {
    format!("{name} ({})", file.file_name().unwrap().to_string_lossy())
}

/// Eval logits and parameter count of `build()` loaded strictly from each file of `reference`.
fn check_eval(reference_name: &str, build: impl Fn() -> Model) {
    let (dir, io) = reference(reference_name);
    let params = get(&io, "params").int64_value(&[]);
    // The tolerance is relative to the logits' scale: exploding or vanishing reference logits
    // would make the comparison meaningless.
    let scale = get(&io, "logits").abs().max().double_value(&[]);
    assert!((0.1..1e4).contains(&scale), "{reference_name}: reference logits at scale {scale:e}");
    for file in files(&dir) {
        let mut model = build();
        model.load_file(&file).unwrap();
        let logits = model.predict(get(&io, "input")).unwrap();
        common::assert_parity(&label(reference_name, &file), &logits, get(&io, "logits"));
        assert_eq!(model.num_params(), params, "{reference_name}: parameter count differs from the reference");
    }
}

/// Train-mode logits and auxiliary outputs (named `aux_names` in the reference, in the zoo's
/// order), each file loaded into a fresh model built without dropout.
fn check_train_aux(reference_name: &str, build: impl Fn() -> Model, aux_names: &[&str]) {
    let (dir, io) = reference(reference_name);
    for file in files(&dir) {
        let mut model = build();
        model.load_file(&file).unwrap();
        let x = get(&io, "input");
        let (logits, aux) = tch::no_grad(|| model.net.forward_aux(x, true));
        let what = label(reference_name, &file);
        common::assert_parity(&format!("{what} train logits"), &logits, get(&io, "train_logits"));
        assert_eq!(aux.len(), aux_names.len(), "{what}: auxiliary outputs");
        for (out, name) in aux.iter().zip(aux_names) {
            common::assert_parity(&format!("{what} {name}"), out, get(&io, name));
        }
    }
}

fn registry_model(name: &str, drop_rate: Option<f64>) -> Model {
    Model::new(name, BuildConfig { num_classes: 1000, drop_rate }, Device::Cpu).unwrap()
}

fn no_dropout() -> BuildConfig {
    BuildConfig { num_classes: 1000, drop_rate: Some(0.0) }
}

/// The file's list, written once: `const MODELS` (every reference folder) and one eval-parity
/// `#[test]` per name before `;`.
macro_rules! eval_parity {
    ($($name:ident),* $(,)?; also: $($extra:literal),* $(,)?) => {
        const MODELS: &[&str] = &[$(stringify!($name),)* $($extra,)*];
        $(
            #[test]
            fn $name() {
                check_eval(stringify!($name), || registry_model(stringify!($name), None));
            }
        )*
    };
}

// Reference folders generated for this file: registry names, plus `googlenet_aux` (GoogLeNet
// with its auxiliary heads, as torchvision's checkpoint file holds them).
eval_parity!(
    googlenet, densenet121, densenet161, densenet169, densenet201, squeezenet1_0, squeezenet1_1;
    also: "googlenet_aux", "inception_v3",
);

#[test]
fn inception_v3() {
    check_eval("inception_v3", || registry_model("inception_v3", None));
    check_train_aux("inception_v3", || registry_model("inception_v3", Some(0.0)), &["aux"]);
}

#[test]
fn googlenet_with_auxiliary_heads() {
    check_eval("googlenet_aux", || googlenet_with_aux(BuildConfig::default(), Device::Cpu).unwrap());
    check_train_aux("googlenet_aux", || googlenet_with_aux(no_dropout(), Device::Cpu).unwrap(), &["aux1", "aux2"]);
}

/// torchvision's checkpoint holds the auxiliary heads; the registry model has none: a strict
/// load into its variables names them, ignoring their prefixes loads the rest with the same
/// logits, and `Model::load_file` (the loader of `--weights`, where they are optional) takes it.
#[test]
fn googlenet_loads_a_checkpoint_with_auxiliary_heads() {
    let (dir, io) = reference("googlenet_aux");
    let file = dir.join("weights.pth");
    let mut model = registry_model("googlenet", None);
    let err = load_into(&model.vs, &read(&file).unwrap(), &LoadOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("aux1."), "strict load should name the aux keys: {err:#}");
    let prefixes: Vec<String> = AUX_PREFIXES.iter().map(|s| s.to_string()).collect();
    load_with(&model, &file, LoadOptions { ignore_unexpected: prefixes, ..LoadOptions::default() });
    let logits = model.predict(get(&io, "input")).unwrap();
    common::assert_parity("googlenet from a file with aux heads", &logits, get(&io, "logits"));
    model.load_file(&file).unwrap();
    assert!(model.predict(get(&io, "input")).unwrap().equal(&logits), "load_file gives the same model");
    // Eval mode and the registry model: no auxiliary outputs.
    let (_, aux) = tch::no_grad(|| model.net.forward_aux(get(&io, "input"), true));
    assert!(aux.is_empty(), "registry googlenet has no auxiliary heads");
}

/// The model with heads loads a checkpoint without them when their prefixes may be missing.
#[test]
fn googlenet_with_aux_loads_a_checkpoint_without_heads() {
    let (dir, io) = reference("googlenet");
    let file = dir.join("weights.pth");
    let mut model = googlenet_with_aux(BuildConfig::default(), Device::Cpu).unwrap();
    assert!(model.load_file(&file).is_err(), "strict load must report the missing heads");
    let prefixes: Vec<String> = AUX_PREFIXES.iter().map(|s| s.to_string()).collect();
    load_with(&model, &file, LoadOptions { ignore_missing: prefixes, ..LoadOptions::default() });
    let x = get(&io, "input");
    common::assert_parity(
        "googlenet_with_aux from a file without heads",
        &model.predict(x).unwrap(),
        get(&io, "logits"),
    );
    let (_, aux) = tch::no_grad(|| model.net.forward_aux(x, false));
    assert!(aux.is_empty(), "auxiliary heads run in train mode only");
    let (_, aux) = tch::no_grad(|| model.net.forward_aux(x, true));
    assert_eq!(aux.iter().map(Tensor::size).collect::<Vec<_>>(), [[2, 1000], [2, 1000]]);
}

const MINE: &[&str] = &[
    "googlenet",
    "inception_v3",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "squeezenet1_0",
    "squeezenet1_1",
];

/// The registered minimum input (torchvision's `min_size`) really goes through.
#[test]
fn minimum_inputs_go_through() {
    let _g = tch::no_grad_guard();
    for name in MINE {
        let model = zoo::nn::without_init(|| registry_model(name, None));
        let side = model.spec.min_input;
        let x = Tensor::randn([1, 3, side, side], (Kind::Float, Device::Cpu));
        assert_eq!(model.predict(&x).unwrap().size(), [1, 1000], "{name} at {side}");
    }
}

/// Every head that classifies is replaced: SqueezeNet's 1×1 conv, the auxiliary heads' last
/// layers; with 0 classes the models return pooled features.
#[test]
fn reset_classifier_replaces_every_classifying_layer() {
    let _g = tch::no_grad_guard();
    let cases: Vec<(&str, Model, Vec<&str>)> = vec![
        ("squeezenet1_1", registry_model("squeezenet1_1", None), vec!["classifier.1.weight"]),
        ("densenet121", registry_model("densenet121", None), vec!["classifier.weight"]),
        ("inception_v3", registry_model("inception_v3", None), vec!["fc.weight", "AuxLogits.fc.weight"]),
        (
            "googlenet_with_aux",
            googlenet_with_aux(BuildConfig::default(), Device::Cpu).unwrap(),
            vec!["fc.weight", "aux1.fc2.weight", "aux2.fc2.weight"],
        ),
    ];
    for (name, mut model, heads) in cases {
        let count = model.vs.variables().len();
        model.reset_classifier(3);
        let vars = model.vs.variables();
        assert_eq!(vars.len(), count, "{name}: the same variables, resized");
        for head in &heads {
            assert_eq!(vars[*head].size()[0], 3, "{name}: {head} resized");
        }
        let side = if name == "inception_v3" { 299 } else { 64 };
        let x = Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu));
        assert_eq!(model.predict(&x).unwrap().size(), [2, 3], "{name}");
        let (_, aux) = model.net.forward_aux(&x, true);
        assert!(aux.iter().all(|a| a.size() == [2, 3]), "{name}: auxiliary heads resized");
        model.reset_classifier(0);
        assert!(heads.iter().all(|h| !model.vs.variables().contains_key(*h)), "{name}: heads removed");
        assert_eq!(model.predict(&x).unwrap().size(), [2, model.net.num_features()], "{name}: no head");
    }
}
