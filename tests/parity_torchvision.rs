//! Parity with torchvision 0.26: the same state_dict file (written by torch.save, zip and legacy
//! formats) loaded into the zoo model gives the reference's eval logits.
#[macro_use]
mod common;

use std::path::Path;
use std::sync::OnceLock;
use zoo::models::{BuildConfig, Model};

/// Every torchvision model the zoo has; references are generated once, in one Python process.
const MODELS: &[&str] = &[
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
];

fn references() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::export_references("parity", MODELS))
}

fn check(name: &str) {
    let dir = references().join(name);
    let io = zoo::checkpoint::read(&dir.join("io.safetensors")).unwrap();
    let input = io.get("input").expect("input in io.safetensors");
    let expected = io.get("logits").expect("logits in io.safetensors");
    let mut files = vec!["weights.pth"];
    if dir.join("weights_legacy.pth").exists() {
        files.push("weights_legacy.pth");
    }
    for file in files {
        let mut model = Model::new(name, BuildConfig::default(), tch::Device::Cpu).unwrap();
        model.load_file(&dir.join(file)).unwrap();
        let logits = model.predict(input).unwrap();
        common::assert_parity(&format!("{name} ({file})"), &logits, expected);
        let params = io.get("params").expect("params in io.safetensors").int64_value(&[]);
        assert_eq!(model.num_params(), params, "{name}: parameter count differs from the reference");
    }
}

parity!(
    alexnet, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn, resnet18, resnet34, resnet50,
    resnet101, resnet152,
);
