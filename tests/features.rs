//! `zoo features` parity: the zoo's taps give exactly what torchvision's
//! `create_feature_extractor` returns for the same node, on the same weights and input, and their
//! average and max pools what torch's `adaptive_avg_pool2d` / `adaptive_max_pool2d` give
//! (tests/py/refs_features.py), on the eager pass and on the traced engines. The same through the
//! `zoo features` binary is in tests/cli.rs.
mod common;

use zoo::infer::{Engine, Runner};
use zoo::models::Pool;
use zoo::models::{BuildConfig, Model};

/// (reference name, zoo architecture, [(torchvision node, zoo layer, whether it is a spatial map)]).
type Case = (&'static str, &'static str, &'static [(&'static str, &'static str, bool)]);

const CASES: &[Case] = &[
    (
        "vgg16_features",
        "vgg16",
        &[("classifier.4", "fc7", false), ("features.29", "features.29", true), ("features.30", "features.30", true)],
    ),
    (
        "resnet50_features",
        "resnet50",
        &[
            ("layer3", "layer3", true),
            ("flatten", "pre_logits", false),
            ("layer2.0.bn1", "layer2.0.bn1", true),
            ("layer1.0.conv2", "layer1.0.conv2", true),
        ],
    ),
    (
        "densenet121_features",
        "densenet121",
        &[
            ("features.denseblock3", "features.denseblock3", true),
            ("features.transition2", "features.transition2", true),
        ],
    ),
];

#[test]
fn features_equal_torchvision_feature_extractor() {
    let references: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    let dir = common::export_references("parity", &references);
    for (reference, arch, nodes) in CASES {
        let d = dir.join(reference);
        let io = zoo::checkpoint::read(&d.join("io.safetensors")).unwrap();
        let mut model = Model::new(arch, BuildConfig::default(), tch::Device::Cpu).unwrap();
        model.load_file(&d.join("weights.pth")).unwrap();
        let x = io.get("input").unwrap();
        // The same network in float64: the truth the traced engines' rounding is measured against.
        let mut float64 = Model::new(arch, BuildConfig::default(), tch::Device::Cpu).unwrap();
        float64.load_file(&d.join("weights.pth")).unwrap();
        float64.vs.double();
        for (node, layer, map) in *nodes {
            let expected = io.get(&format!("node:{node}")).unwrap();
            let got = model.features(x, layer, Pool::None).unwrap();
            assert_eq!(got.dim() == 4, *map, "{arch} {layer}: a spatial map or not");
            common::assert_parity(&format!("{arch} {layer} (torchvision node {node})"), &got, expected);
            // Every map's pools against torch's, never skipped: the reference must hold them.
            for (pool, key) in [(Pool::Avg, "avg"), (Pool::Max, "max")] {
                let want = io.get(&format!("{key}:{node}"));
                assert_eq!(want.is_some(), *map, "{reference}: {key}:{node} in the reference");
                if let Some(want) = want {
                    let pooled = model.features(x, layer, pool).unwrap();
                    common::assert_parity(&format!("{arch} {layer} {key}-pooled"), &pooled, want);
                }
            }
            // The traced engines, whose graph ends at the layer (batch norms folded), see the same.
            for engine in [Engine::Jit, Engine::Onednn] {
                let runner = Runner::features(&model, engine, layer, None).unwrap();
                assert_eq!(runner.engine(), engine);
                let what = format!("{arch} {layer}, {engine:?} engine");
                if engine == Engine::Jit && *arch == "vgg16" && *layer == "fc7" {
                    // PyTorch's oneDNN-layout adaptive pool takes only sizes that divide its
                    // input's (3x3 to 7x7 here): a clear refusal, naming the engines that run it.
                    let err = format!("{:#}", runner.forward(x).unwrap_err());
                    assert!(err.contains("use --engine onednn or eager"), "{err}");
                    continue;
                }
                let truth = || float64.features(&x.to_kind(tch::Kind::Double), layer, Pool::None).unwrap();
                as_accurate(&what, &runner.forward(x).unwrap(), expected, truth);
                if let Some(want) = io.get(&format!("avg:{node}")) {
                    let pooled = runner.features_pooled(x, Pool::Avg).unwrap();
                    let truth = || zoo::models::pooled(truth(), Pool::Avg);
                    as_accurate(&format!("{what}, avg-pooled"), &pooled, want, truth);
                }
            }
        }
    }
}

/// A traced engine's `got` against torchvision's float32 `expected`: within the parity
/// tolerance, or (folding batch norms into convolutions rounds differently, and deep random
/// networks amplify it past 1e-4) at most twice as far from the float64 `truth` as torchvision's
/// own float32 output is.
fn as_accurate(what: &str, got: &tch::Tensor, expected: &tch::Tensor, truth: impl FnOnce() -> tch::Tensor) {
    if common::check_parity(what, got, expected).is_ok() {
        common::assert_parity(what, got, expected);
        return;
    }
    let truth = truth();
    let (engine, torchvision) = (common::compare(got, &truth), common::compare(expected, &truth));
    eprintln!("{what}: against float64, {engine:?}; torchvision's float32 {torchvision:?}");
    let bound = |own: f64| (2.0 * own).max(common::PARITY_TOL);
    assert!(
        engine.full <= bound(torchvision.full) && engine.varying <= bound(torchvision.varying),
        "{what}: the error against float64 ({:.2e}, input-dependent part {:.2e}) exceeds twice torchvision's \
         float32 error ({:.2e}, {:.2e})",
        engine.full,
        engine.varying,
        torchvision.full,
        torchvision.varying
    );
}
