//! VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition", ICLR 2015): stacks of 3×3 convolutions, configurations A (11), B (13), D (16)
//! and E (19) layers, with and without batch norm. Paths follow torchvision's `vgg.py`.
use super::classic::{ClassicNet, ClassicSpec, DropoutAt, L};
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier};
use tch::nn;

/// Convolution widths per configuration; 0 is a 2×2 max pool (torchvision's `"M"`).
pub const VGG11: &[i64] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
pub const VGG13: &[i64] = &[64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
pub const VGG16: &[i64] = &[64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
pub const VGG19: &[i64] =
    &[64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0];

/// The `features` table of a configuration: conv 3×3 pad 1, [batch norm], ReLU; pools 2×2/2.
pub fn features(cfg: &[i64], batch_norm: bool) -> Vec<L> {
    let mut layers = Vec::new();
    for &v in cfg {
        if v == 0 {
            layers.push(L::MaxPool(2, 2, 0));
        } else {
            layers.push(L::Conv(v, 3, 1, 1, 1));
            if batch_norm {
                layers.push(L::BatchNorm);
            }
            layers.push(L::Relu);
        }
    }
    layers
}

/// The whole network for a configuration.
pub fn spec(cfg: &[i64], batch_norm: bool) -> ClassicSpec {
    ClassicSpec {
        in_channels: 3,
        features: features(cfg, batch_norm),
        avgpool: 7,
        hidden: &[4096, 4096],
        dropout: DropoutAt::After,
        dropout_rate: 0.5,
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015";

fn vgg(p: &nn::Path, b: &BuildConfig, cfg: &[i64], bn: bool) -> Box<dyn Classifier> {
    Box::new(ClassicNet::new(p, &spec(cfg, bn), b))
}

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
#[rustfmt::skip]
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("vgg11", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG11, false)),
        row("vgg11_bn", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG11, true)),
        row("vgg13", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG13, false)),
        row("vgg13_bn", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG13, true)),
        row("vgg16", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG16, false)),
        row("vgg16_bn", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG16, true)),
        row("vgg19", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG19, false)),
        row("vgg19_bn", "VGG", PAPER, "classifier.6.", 224, 32, |p, b| vgg(p, b, VGG19, true)),
    ]
}
