//! SqueezeNet (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
//! and <0.5MB model size", arXiv:1602.07360, 2016): Fire modules (a 1×1 "squeeze" convolution
//! feeding parallel 1×1 and 3×3 "expand" convolutions) and a convolutional classifier with no
//! fully connected layer.
//!
//! Layout and variable paths follow torchvision's `squeezenet.py`: `features.N` (Fire modules
//! with `squeeze`, `expand1x1`, `expand3x3`), max pools in ceil mode, and `classifier` =
//! Dropout, 1×1 conv (`classifier.1`), ReLU, global average pool. Version 1.1 (from the
//! authors' repository) moves the pools earlier and uses a 3×3 stem: 2.4× less computation.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{path_of, Act, Activation, AdaptiveAvgPool2d, Conv2d, ConvOpts, HeadConv, ModuleT, Pool2d, Sequential};
use tch::{nn, Tensor};

/// An entry of a `features` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F {
    /// Stem convolution (stride 2, no padding) and its ReLU: out channels, kernel.
    Stem(i64, i64),
    /// 3×3 stride-2 max pool in ceil mode.
    Pool,
    /// Fire module: squeeze, expand 1×1, expand 3×3 widths.
    Fire(i64, i64, i64),
}

/// SqueezeNet 1.0 (the paper's Table 1).
pub const SQUEEZENET1_0: &[F] = &[
    F::Stem(96, 7),
    F::Pool,
    F::Fire(16, 64, 64),
    F::Fire(16, 64, 64),
    F::Fire(32, 128, 128),
    F::Pool,
    F::Fire(32, 128, 128),
    F::Fire(48, 192, 192),
    F::Fire(48, 192, 192),
    F::Fire(64, 256, 256),
    F::Pool,
    F::Fire(64, 256, 256),
];

/// SqueezeNet 1.1.
pub const SQUEEZENET1_1: &[F] = &[
    F::Stem(64, 3),
    F::Pool,
    F::Fire(16, 64, 64),
    F::Fire(16, 64, 64),
    F::Pool,
    F::Fire(32, 128, 128),
    F::Fire(32, 128, 128),
    F::Pool,
    F::Fire(48, 192, 192),
    F::Fire(48, 192, 192),
    F::Fire(64, 256, 256),
    F::Fire(64, 256, 256),
];

/// Squeeze 1×1 + ReLU, then expand 1×1 + ReLU and expand 3×3 + ReLU, concatenated.
#[derive(Debug)]
struct Fire {
    path: String,
    squeeze: Conv2d,
    expand1x1: Conv2d,
    expand3x3: Conv2d,
}

impl Fire {
    fn new(p: &nn::Path, cin: i64, squeeze: i64, e1: i64, e3: i64) -> Self {
        Fire {
            path: path_of(p),
            squeeze: Conv2d::new(&(p / "squeeze"), cin, squeeze, 1, ConvOpts::default()),
            expand1x1: Conv2d::new(&(p / "expand1x1"), squeeze, e1, 1, ConvOpts::default()),
            expand3x3: Conv2d::new(&(p / "expand3x3"), squeeze, e3, 3, ConvOpts::default().padding(1)),
        }
    }
}

impl ModuleT for Fire {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("Fire"),
            xs,
            |xs| {
                let s = Act::Relu.apply_owned(self.squeeze.forward_t(xs, train));
                Tensor::cat(
                    &[
                        Act::Relu.apply_owned(self.expand1x1.forward_t(&s, train)),
                        Act::Relu.apply_owned(self.expand3x3.forward_t(&s, train)),
                    ],
                    1,
                )
            },
        )
    }
}

/// SqueezeNet 1.0 and 1.1.
#[derive(Debug)]
pub struct SqueezeNet {
    features: Sequential,
    dropout: crate::nn::Dropout,
    /// `classifier.1`, the 1×1 convolution that plays the fully connected layer's part.
    final_conv: HeadConv,
    relu: Activation,
    avgpool: AdaptiveAvgPool2d,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl SqueezeNet {
    /// `build.drop_rate` overrides the dropout of 0.5 before the final convolution.
    pub fn new(p: &nn::Path, table: &[F], build: &BuildConfig) -> Self {
        let fp = p / "features";
        let mut features = Sequential::new(&fp);
        let mut stages = Vec::new();
        let (mut width, mut reduction) = (3, 1);
        let mut index = 0;
        for (i, entry) in table.iter().enumerate() {
            // A stage ends where a pool follows (and at the end): record the layer before it.
            let before_pool = matches!(table.get(i + 1), Some(F::Pool) | None);
            match *entry {
                F::Stem(out, k) => {
                    features.push(Conv2d::new(&(&fp / index), width, out, k, ConvOpts::default().stride(2)));
                    features.push(Activation::inplace(&(&fp / (index + 1)), Act::Relu));
                    index += 2;
                    width = out;
                    reduction *= 2;
                }
                F::Pool => {
                    features.push(Pool2d::max(&(&fp / index), 3, 2).ceil_mode(true));
                    index += 1;
                    reduction *= 2;
                }
                F::Fire(s, e1, e3) => {
                    features.push(Fire::new(&(&fp / index), width, s, e1, e3));
                    index += 1;
                    width = e1 + e3;
                }
            }
            if before_pool && !matches!(entry, F::Pool) {
                stages.push(FeatureInfo::new(format!("features.{}", index - 1), width, reduction));
            }
        }
        let cp = p / "classifier";
        SqueezeNet {
            features,
            dropout: crate::nn::Dropout::new(&(&cp / 0), build.drop_rate.unwrap_or(0.5)),
            final_conv: HeadConv::new(p, "classifier.1", width, build.num_classes),
            relu: Activation::inplace(&(&cp / 2), Act::Relu),
            avgpool: AdaptiveAvgPool2d::new(&(&cp / 3), 1),
            num_features: width,
            stages,
        }
    }
}

classifier_module!(SqueezeNet);

impl Classifier for SqueezeNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }

    /// Dropout, 1×1 conv to the classes, ReLU, global pool. Without a head, or with
    /// `pre_logits`, the globally pooled features (the conv's ReLU keeps pooling and the conv
    /// from commuting, so those are the network's last class-free vector).
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        match (&self.final_conv.conv, pre_logits) {
            (Some(conv), false) => {
                let ys = conv.forward_t(&self.dropout.forward_t(xs, train), train);
                self.avgpool.forward_t(&self.relu.forward_t(&ys, train), train).flatten(1, -1)
            }
            _ => trace::point("pre_logits", xs.mean_dim(&[-2i64, -1][..], false, None)),
        }
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    /// The final 1×1 convolution (`classifier.1`): SqueezeNet has no linear layer.
    fn head(&self) -> &dyn crate::nn::Head {
        &self.final_conv
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.final_conv
    }

    /// The stem's ReLU (stride 2) and the last module before each later pool and at the end
    /// (strides 4, 8, 16).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// The registry's builder for one table.
pub fn build(p: &nn::Path, b: &BuildConfig, table: &[F]) -> Box<dyn Classifier> {
    Box::new(SqueezeNet::new(p, table, b))
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, arXiv 2016";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("squeezenet1_0", "SqueezeNet", PAPER, "classifier.1.", 224, 21, |p, b| build(p, b, SQUEEZENET1_0)),
        row("squeezenet1_1", "SqueezeNet", PAPER, "classifier.1.", 224, 17, |p, b| build(p, b, SQUEEZENET1_1)),
    ]
}
