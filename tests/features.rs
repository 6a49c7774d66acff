//! `zoo features` parity: the zoo's taps give exactly what torchvision's
//! `create_feature_extractor` returns for the same node, on the same weights and input, and their
//! average and max pools what torch's `adaptive_avg_pool2d` / `adaptive_max_pool2d` give
//! (tests/py/refs_features.py). The same through the `zoo features` binary is in tests/cli.rs.
mod common;

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
    ("resnet50_features", "resnet50", &[("layer3", "layer3", true), ("flatten", "pre_logits", false)]),
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
        }
    }
}
