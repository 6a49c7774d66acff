//! `zoo features` parity: the zoo's taps give exactly what torchvision's
//! `create_feature_extractor` returns for the same node, on the same weights and input.
mod common;

use zoo::commands::features::{extract, Pool};
use zoo::models::{BuildConfig, Model};

/// (reference name, zoo architecture, [(torchvision node, zoo layer)]).
type Case = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const CASES: &[Case] = &[
    (
        "vgg16_features",
        "vgg16",
        &[("classifier.4", "fc7"), ("features.29", "features.29"), ("features.30", "features.30")],
    ),
    ("resnet50_features", "resnet50", &[("layer3", "layer3"), ("flatten", "pre_logits")]),
    (
        "densenet121_features",
        "densenet121",
        &[("features.denseblock3", "features.denseblock3"), ("features.transition2", "features.transition2")],
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
        for (node, layer) in *nodes {
            let expected = io.get(&format!("node:{node}")).unwrap();
            let got = extract(&model, x, layer, Pool::None).unwrap();
            common::assert_parity(&format!("{arch} {layer} (torchvision node {node})"), &got, expected);
        }
        // Pooling a spatial map is the mean over its positions.
        let (node, layer) = nodes[0];
        if let Some(t) = io.get(&format!("node:{node}")).filter(|t| t.dim() == 4) {
            let pooled = extract(&model, x, layer, Pool::Avg).unwrap();
            common::assert_parity(
                &format!("{arch} {layer} avg-pooled"),
                &pooled,
                &t.mean_dim(&[2i64, 3][..], false, None),
            );
        }
    }
}
