//! VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition", ICLR 2015): stacks of 3×3 convolutions, configurations A (11), B (13), D (16)
//! and E (19) layers, with and without batch norm. Paths follow torchvision's `vgg.py`.
use super::classic::{ClassicSpec, DropoutAt, L};

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
