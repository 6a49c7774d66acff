//! The registry: one table of every architecture zoo builds. Names are torchvision's wherever
//! torchvision has the model, so users move between the two without a lookup table.
use super::classic::ClassicNet;
use super::resnet::{BlockKind::*, ResNet, ResNetConfig};
use super::{alexnet, lenet, vgg, zfnet, BuildConfig, Classifier};
use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::nn;

/// One registered architecture.
pub struct ModelSpec {
    /// Registry name (`resnet50`), lower case.
    pub name: &'static str,
    /// Family (`ResNet`), for listings.
    pub family: &'static str,
    /// The paper that introduced it.
    pub paper: &'static str,
    /// Default input [channels, height, width].
    pub input_size: [i64; 3],
    /// Smallest height and width the network accepts.
    pub min_input: i64,
    /// Classes of the default head (ImageNet's 1000 unless the model says otherwise).
    pub num_classes: i64,
    /// Builds the network under a var-store path.
    pub build: fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>,
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec").field("name", &self.name).field("family", &self.family).finish()
    }
}

impl ModelSpec {
    /// The build configuration this architecture uses by default.
    pub fn default_config(&self) -> BuildConfig {
        BuildConfig { num_classes: self.num_classes, ..BuildConfig::default() }
    }
}

const LENET: &str = "LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998";
const ALEXNET: &str = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012";
const ZFNET: &str = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014";
const VGG: &str = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015";
const RESNET: &str = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016";
const WIDE: &str = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016";
const RESNEXT: &str = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017";

/// A row of the table for a 3-channel ImageNet classifier.
const fn row(
    name: &'static str,
    family: &'static str,
    paper: &'static str,
    size: i64,
    min_input: i64,
    build: fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>,
) -> ModelSpec {
    ModelSpec { name, family, paper, input_size: [3, size, size], min_input, num_classes: 1000, build }
}

fn resnet(p: &nn::Path, b: &BuildConfig, cfg: ResNetConfig) -> Box<dyn Classifier> {
    Box::new(ResNet::new(p, &cfg, b))
}

fn vgg(p: &nn::Path, b: &BuildConfig, cfg: &[i64], bn: bool) -> Box<dyn Classifier> {
    Box::new(ClassicNet::new(p, &vgg::spec(cfg, bn), b))
}

#[rustfmt::skip]
fn table() -> Vec<ModelSpec> {
    vec![
        ModelSpec { input_size: [1, 32, 32], num_classes: 10, ..row("lenet5", "LeNet", LENET, 32, 32, |p, b| Box::new(ClassicNet::new(p, &lenet::spec(), b))) },
        row("alexnet", "AlexNet", ALEXNET, 224, 63, |p, b| Box::new(ClassicNet::new(p, &alexnet::spec(), b))),
        row("alexnet_lrn", "AlexNet", ALEXNET, 227, 67, |p, b| Box::new(ClassicNet::new(p, &alexnet::spec_lrn(), b))),
        row("zfnet", "ZFNet", ZFNET, 224, 35, |p, b| Box::new(ClassicNet::new(p, &zfnet::spec(), b))),
        row("vgg11", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG11, false)),
        row("vgg11_bn", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG11, true)),
        row("vgg13", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG13, false)),
        row("vgg13_bn", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG13, true)),
        row("vgg16", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG16, false)),
        row("vgg16_bn", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG16, true)),
        row("vgg19", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG19, false)),
        row("vgg19_bn", "VGG", VGG, 224, 32, |p, b| vgg(p, b, vgg::VGG19, true)),
        row("resnet18", "ResNet", RESNET, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [2, 2, 2, 2]))),
        row("resnet34", "ResNet", RESNET, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [3, 4, 6, 3]))),
        row("resnet50", "ResNet", RESNET, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]))),
        row("resnet101", "ResNet", RESNET, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]))),
        row("resnet152", "ResNet", RESNET, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 8, 36, 3]))),
        row("wide_resnet50_2", "Wide ResNet", WIDE, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(1, 128))),
        row("wide_resnet101_2", "Wide ResNet", WIDE, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(1, 128))),
        row("resnext50_32x4d", "ResNeXt", RESNEXT, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(32, 4))),
        row("resnext101_32x8d", "ResNeXt", RESNEXT, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(32, 8))),
        row("resnext101_64x4d", "ResNeXt", RESNEXT, 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(64, 4))),
        // -- the other torchvision families --
        // -- beyond torchvision --
    ]
}

/// Every registered architecture, in table order.
pub fn registry() -> &'static [ModelSpec] {
    static TABLE: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    TABLE.get_or_init(table)
}

/// Looks a name up, case-insensitively; an unknown name fails with the closest names.
pub fn find(name: &str) -> Result<&'static ModelSpec> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(spec) = registry().iter().find(|s| s.name == key) {
        return Ok(spec);
    }
    let mut scored: Vec<(f64, &str)> =
        registry().iter().map(|s| (strsim::normalized_damerau_levenshtein(&key, s.name), s.name)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let close: Vec<&str> = scored.iter().take(3).filter(|(score, _)| *score > 0.4).map(|(_, n)| *n).collect();
    if close.is_empty() {
        bail!("unknown model '{name}': `zoo list` shows every model zoo has");
    }
    bail!("unknown model '{name}'; did you mean {}? (`zoo list` shows them all)", close.join(", "))
}
