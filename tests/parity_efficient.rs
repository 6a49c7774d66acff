//! The architectures torchvision lacks — Xception, MobileNet v1, ShuffleNet v1 — against the
//! references their layouts follow (timm's `legacy_xception` and `mobilenetv1_100`, pytorchcv's
//! `shufflenet_g*_w*`, all with random weights, see `tests/py/refs_efficient.py`): the reference's
//! state_dict file loads strictly and gives its eval logits, and the parameter counts agree.
//! pytorchcv's `mobilenet_w1` loads through key rules. Then the papers' own figures.
#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::nn::ModuleT;
use tch::{nn, Device, Kind, Tensor};
use zoo::checkpoint::{apply_rules, load_into, LoadError, LoadOptions};
use zoo::models::mobilenet_v1::{pytorchcv_key_rules, MobileNetV1, MobileNetV1Config};
use zoo::models::{count_params, BuildConfig, Model};
use zoo::nn::summary::summarize_name;

/// The references also written in the legacy format (tests/py/refs_efficient.py: one model of
/// each family); the others are zip only.
const LEGACY: &[&str] = &["xception", "mobilenet_v1", "shufflenet_v1_g3_x1_0"];

fn references() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity", MODELS))
}

/// The reference's input, logits and parameter count.
fn io(name: &str) -> (Tensor, Tensor, i64) {
    let io = zoo::checkpoint::read(&references().join(name).join("io.safetensors")).unwrap();
    let params = io.get("params").expect("params in io.safetensors").int64_value(&[]);
    (io.get("input").unwrap().shallow_clone(), io.get("logits").unwrap().shallow_clone(), params)
}

fn check(name: &str) {
    let dir = references().join(name);
    let (input, expected, params) = io(name);
    for path in common::weight_files(&dir, LEGACY.contains(&name)) {
        let file = path.file_name().unwrap().to_string_lossy();
        let mut model = Model::new(name, BuildConfig::default(), Device::Cpu).unwrap();
        model.load_file(&path).unwrap();
        let logits = model.predict(&input).unwrap();
        common::assert_parity(&format!("{name} ({file}, {}px)", input.size()[2]), &logits, &expected);
        assert_eq!(model.num_params(), params, "{name}: parameter count differs from the reference");
    }
}

// Registry models checked against a reference, and the extra reference the key-rule test uses.
parity_set!(xception, mobilenet_v1, mobilenet_v1_x0_75, mobilenet_v1_x0_5, mobilenet_v1_x0_25, shufflenet_v1_g1_x1_0, shufflenet_v1_g2_x1_0, shufflenet_v1_g3_x1_0, shufflenet_v1_g4_x1_0, shufflenet_v1_g8_x1_0, shufflenet_v1_g1_x0_25, shufflenet_v1_g1_x0_5, shufflenet_v1_g1_x0_75, shufflenet_v1_g3_x0_25, shufflenet_v1_g3_x0_5, shufflenet_v1_g3_x0_75, shufflenet_v1_g3_x1_5, shufflenet_v1_g3_x2_0; also: "pytorchcv_mobilenet_w1");

/// pytorchcv's `mobilenet_w1` file (its own key names, plain ReLU) loads strictly into the zoo's
/// MobileNet v1 through the key rules, and gives pytorchcv's logits.
#[test]
fn pytorchcv_mobilenet_w1_loads_through_key_rules() {
    let name = "pytorchcv_mobilenet_w1";
    let (input, expected, params) = io(name);
    let sd = zoo::checkpoint::read(&references().join(name).join("weights.pth")).unwrap();
    assert!(sd.get("features.stage4.unit6.pw_conv.bn.running_var").is_some(), "pytorchcv's key names");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = MobileNetV1::new(&vs.root(), &MobileNetV1Config::new(1.0).with_relu(), &BuildConfig::default());

    // Without the rules nothing matches: every name differs.
    let err = load_into(&vs, &sd, &LoadOptions::default()).unwrap_err().downcast::<LoadError>().unwrap();
    let has = |keys: &[(String, Vec<i64>)], key: &str| keys.iter().any(|(k, _)| k == key);
    assert!(has(&err.missing, "conv_stem.weight") && has(&err.unexpected, "features.init_block.conv.weight"), "{err}");

    let sd = apply_rules(sd, &pytorchcv_key_rules()).unwrap();
    for key in ["conv_stem.weight", "bn1.running_mean", "blocks.3.5.conv_pw.weight", "blocks.4.1.bn2.bias"] {
        assert!(sd.get(key).is_some(), "{key} after the rules");
    }
    assert!(sd.get("classifier.weight").is_some());
    let report = load_into(&vs, &sd, &LoadOptions::default()).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    assert_eq!(count_params(&vs), params, "parameter count differs from pytorchcv's");
    let logits = tch::no_grad(|| net.forward_t(&input, false));
    common::assert_parity("pytorchcv mobilenet_w1 (224px, key rules)", &logits, &expected);

    // The registered model (timm's ReLU6) differs from pytorchcv's ReLU network on these
    // weights: the activation is part of what a checkpoint needs.
    let vs6 = nn::VarStore::new(Device::Cpu);
    let net6 = MobileNetV1::new(&vs6.root(), &MobileNetV1Config::new(1.0), &BuildConfig::default());
    load_into(&vs6, &sd, &LoadOptions::default()).unwrap();
    let logits6 = tch::no_grad(|| net6.forward_t(&input, false));
    assert!(!common::passes_parity(&logits6, &expected), "ReLU6 should change these logits");
}

/// Every model takes its registered minimum input; Xception (unpadded 3×3/2 and 3×3 stem) needs 7
/// pixels: 7 → 3 → 1, while 6 → 2 leaves too little for the second 3×3.
#[test]
fn minimum_inputs_go_through() {
    let _g = tch::no_grad_guard();
    for name in MODELS.iter().filter(|n| !n.starts_with("pytorchcv")) {
        let model = zoo::nn::without_init(|| Model::new(name, BuildConfig::default(), Device::Cpu)).unwrap();
        let side = model.spec.min_input;
        let x = Tensor::randn([1, 3, side, side], (Kind::Float, Device::Cpu));
        assert_eq!(model.predict(&x).unwrap().size(), [1, 1000], "{name} at {side}");
    }
    let model = zoo::nn::without_init(|| Model::new("xception", BuildConfig::default(), Device::Cpu)).unwrap();
    let x = Tensor::zeros([1, 3, 6, 6], (Kind::Float, Device::Cpu));
    let below = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.net.forward_t(&x, false)));
    assert!(below.is_err(), "xception ran at 6 pixels: its registered minimum of 7 is too high");
}

fn mmacs(name: &str, side: i64) -> (f64, f64, f64) {
    let s = summarize_name(name, 1, Some((side, side))).unwrap();
    (s.macs as f64 / 1e6, s.conv_macs as f64 / 1e6, s.params as f64 / 1e6)
}

/// MobileNet v1, Table 1 and Tables 6–7: "1.0 MobileNet-224" has 569 million mult-adds and 4.2
/// million parameters. Counting every conv and the FC layer at 224:
/// stem 112²·32·27 = 10.8M; the 13 depthwise 3×3 and pointwise 1×1 pairs; FC 1024·1000 = 1.0M;
/// 568.7M in all, within 0.1% of 569M. Width α and resolution ρ scale it as the paper tabulates.
#[test]
fn mobilenet_v1_paper_figures() {
    let (macs, _, params) = mmacs("mobilenet_v1", 224);
    eprintln!("mobilenet_v1 @224: {macs:.2}M mult-adds (paper 569M), {params:.3}M params (paper 4.2M)");
    assert!((macs - 569.0).abs() <= 0.01 * 569.0, "{macs}M mult-adds vs 569M");
    assert!((params - 4.2).abs() <= 0.01 * 4.2, "{params}M parameters vs 4.2M");
    // Table 6 (width multiplier, at 224): 0.75 -> 325M, 2.6M; 0.5 -> 149M, 1.3M; 0.25 -> 41M, 0.5M.
    // The paper prints parameters to one decimal (0.47M is its "0.5").
    for (name, paper_macs, paper_params) in
        [("mobilenet_v1_x0_75", 325.0, 2.6), ("mobilenet_v1_x0_5", 149.0, 1.3), ("mobilenet_v1_x0_25", 41.0, 0.5)]
    {
        let (macs, _, params) = mmacs(name, 224);
        eprintln!(
            "{name} @224: {macs:.2}M mult-adds (paper {paper_macs}M), {params:.3}M params (paper {paper_params}M)"
        );
        assert!((macs - paper_macs).abs() <= 0.01 * paper_macs, "{name}: {macs}M vs {paper_macs}M");
        assert_eq!((params * 10.0).round() / 10.0, paper_params, "{name}: {params}M parameters");
    }
    // Table 7 (resolution multiplier, width 1.0): 192 -> 418M, 160 -> 290M, 128 -> 186M.
    for (side, paper) in [(192, 418.0), (160, 290.0), (128, 186.0)] {
        let (macs, _, _) = mmacs("mobilenet_v1", side);
        eprintln!("mobilenet_v1 @{side}: {macs:.2}M mult-adds (paper {paper}M)");
        assert!((macs - paper).abs() <= 0.01 * paper, "mobilenet_v1 at {side}: {macs}M vs {paper}M");
    }
}

/// ShuffleNet v1: the paper's "FLOPs" are multiply-adds. Table 1 gives the 1× complexity per
/// group count — 143, 140, 137, 133, 137 MFLOPs for g = 1, 2, 3, 4, 8 — and these are the
/// convolutions alone at 224 (with the FC layer, 576k–1.5M more, g = 2, 4, 8 would round to 141,
/// 134, 138). The headline "ShuffleNet 1× (g = 3), 140 MFLOPs" (Table 2) is the budget level:
/// g = 3 measures 136.5M conv + 0.96M FC = 137.5M, 1.8% under it. Table 2's 0.5× level is 38
/// MFLOPs; Tables 4–5 give 524 MFLOPs for 2× (g = 3).
#[test]
fn shufflenet_v1_paper_figures() {
    let (total, conv, params) = mmacs("shufflenet_v1_g3_x1_0", 224);
    eprintln!(
        "shufflenet_v1_g3_x1_0 @224: {total:.2}M mult-adds ({conv:.2}M conv), {params:.3}M params (paper 140 MFLOPs)"
    );
    assert!((total - 140.0).abs() <= 0.03 * 140.0, "{total}M vs 140M");
    for (g, table1) in [(1, 143.0), (2, 140.0), (3, 137.0), (4, 133.0), (8, 137.0)] {
        let name = format!("shufflenet_v1_g{g}_x1_0");
        let (total, conv, _) = mmacs(&name, 224);
        eprintln!("{name} @224: {conv:.2}M conv + {:.2}M FC = {total:.2}M (Table 1: {table1})", total - conv);
        assert_eq!(conv.round(), table1, "{name}: {conv}M conv mult-adds vs Table 1's {table1}");
    }
    for (name, paper, tol) in [
        ("shufflenet_v1_g3_x0_5", 38.0, 0.03),
        ("shufflenet_v1_g1_x0_5", 38.0, 0.03),
        ("shufflenet_v1_g3_x2_0", 524.0, 0.01),
    ] {
        let (total, conv, _) = mmacs(name, 224);
        eprintln!("{name} @224: {total:.2}M mult-adds ({conv:.2}M conv), paper {paper}M");
        assert!((total - paper).abs() <= tol * paper, "{name}: {total}M vs {paper}M");
    }
    // Printed only: 1.5× (Table 4: 292) measures 299.6M and 0.25× (Table 2: 13) 11.0M. The paper
    // does not list its widths at those scales, and int(c·s) of Table 1 (pytorchcv's, whose
    // weights these layouts load) is 2.6% over and 15% under; no assertion on a guessed rounding.
    for name in ["shufflenet_v1_g3_x1_5", "shufflenet_v1_g3_x0_25", "shufflenet_v1_g1_x0_25"] {
        let (total, conv, params) = mmacs(name, 224);
        eprintln!("{name} @224: {total:.2}M mult-adds ({conv:.2}M conv), {params:.3}M params");
    }
}

/// Xception, Table 3: 22,855,952 parameters (the paper's exact count, FC included).
#[test]
fn xception_paper_parameter_count() {
    let (macs, _, _) = mmacs("xception", 299);
    let s = summarize_name("xception", 1, None).unwrap();
    eprintln!("xception @299: {} params (paper 22,855,952), {:.3}G mult-adds", s.params, macs / 1e3);
    assert_eq!(s.params, 22_855_952);
    assert_eq!(s.input, [1, 3, 299, 299]);
}

/// The heads named by `classifier_prefixes` (`fc`, `classifier`, `output`) are what
/// `reset_classifier` replaces; with 0 classes the models return the pooled features.
#[test]
fn reset_classifier_replaces_each_head() {
    let _g = tch::no_grad_guard();
    for (name, head, features) in [
        ("xception", "fc.", 2048),
        ("mobilenet_v1_x0_5", "classifier.", 512),
        ("shufflenet_v1_g8_x1_0", "output.", 1536),
    ] {
        let mut model = zoo::nn::without_init(|| Model::new(name, BuildConfig::default(), Device::Cpu)).unwrap();
        assert_eq!(model.net.classifier_prefixes(), [head], "{name}");
        let before = model.vs.variables().len();
        model.reset_classifier(3);
        let vars = model.vs.variables();
        assert_eq!(vars.len(), before, "{name}: same variables, new head");
        assert_eq!(vars[&format!("{head}weight")].size(), [3, features], "{name}");
        let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert_eq!(model.predict(&x).unwrap().size(), [1, 3], "{name}");
        model.reset_classifier(0);
        assert_eq!(model.predict(&x).unwrap().size(), [1, features], "{name}: no head");
    }
}
