//! MobileNet v2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
//! CVPR 2018): inverted residual blocks (1×1 expansion, 3×3 depthwise, linear 1×1 projection)
//! with ReLU6, and a width multiplier that scales every layer.
//!
//! Layout and variable paths follow torchvision's `mobilenetv2.py` (`features.N.conv.M`, the
//! `Conv2dNormActivation` units as `features.N.conv.M.0`/`.1`, `classifier.1`), so torchvision's
//! checkpoints load unchanged. Channel counts are rounded with torchvision's `_make_divisible`.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace;
use crate::nn::{
    make_divisible, no_bias, Act, BatchNorm2d, Conv2d, ConvBnAct, Dropout, HeadLinear, InvertedResidual, ModuleT,
    Sequential,
};
use tch::{nn, Tensor};

/// The paper's Table 2: expansion `t`, output channels `c`, repeats `n`, first stride `s`.
#[rustfmt::skip]
pub const INVERTED_RESIDUAL_SETTING: &[[i64; 4]] = &[
    // t,   c, n, s
    [1,  16, 1, 1],
    [6,  24, 2, 2],
    [6,  32, 3, 2],
    [6,  64, 4, 2],
    [6,  96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
];

/// One MobileNet v2: the block table, the width multiplier and the classifier's dropout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileNetV2Config {
    /// Rows `[t, c, n, s]` of the paper's Table 2.
    pub setting: &'static [[i64; 4]],
    /// Width multiplier (1.0 is the paper's and torchvision's model; 0.35 ... 1.4 in the paper).
    pub width_mult: f64,
    /// Channels are rounded to a multiple of this (torchvision's `round_nearest`).
    pub round_nearest: i64,
    /// Dropout before the classifier (0.2), unless the build config overrides it.
    pub dropout: f64,
}

impl MobileNetV2Config {
    /// The paper's network at width `width_mult`.
    pub const fn new(width_mult: f64) -> Self {
        MobileNetV2Config { setting: INVERTED_RESIDUAL_SETTING, width_mult, round_nearest: 8, dropout: 0.2 }
    }
}

/// v2's block body `conv`: [expand 1×1,] depthwise 3×3, then the linear projection 1×1 and its
/// batch norm.
fn inverted_residual(p: &nn::Path, inp: i64, oup: i64, stride: i64, expand_ratio: i64) -> InvertedResidual {
    let hidden = inp * expand_ratio;
    let cp = p / "conv";
    let mut conv = Sequential::new(&cp);
    let mut idx = 0;
    let mut next = || {
        idx += 1;
        &cp / (idx - 1)
    };
    if expand_ratio != 1 {
        conv.push(ConvBnAct::new(&next(), "0", "1", inp, hidden, 1, no_bias(), 1e-5, Act::Relu6));
    }
    let dw = no_bias().stride(stride).padding(1).groups(hidden);
    conv.push(ConvBnAct::new(&next(), "0", "1", hidden, hidden, 3, dw, 1e-5, Act::Relu6));
    conv.push(Conv2d::new(&next(), hidden, oup, 1, no_bias()));
    conv.push(BatchNorm2d::new(&next(), oup));
    InvertedResidual::with_body(p, conv, stride == 1 && inp == oup)
}

/// MobileNet v2 at any width.
#[derive(Debug)]
pub struct MobileNetV2 {
    features: Sequential,
    dropout: Dropout,
    /// `classifier.1`.
    classifier: HeadLinear,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl MobileNetV2 {
    /// Builds the network under `p` with torchvision's paths.
    pub fn new(p: &nn::Path, cfg: &MobileNetV2Config, build: &BuildConfig) -> Self {
        let fp = p / "features";
        let mut features = Sequential::new(&fp);
        let mut input_channel = make_divisible(32.0 * cfg.width_mult, cfg.round_nearest);
        let last_channel = make_divisible(1280.0 * cfg.width_mult.max(1.0), cfg.round_nearest);
        let stem = no_bias().stride(2).padding(1);
        features.push(ConvBnAct::new(&(&fp / 0), "0", "1", 3, input_channel, 3, stem, 1e-5, Act::Relu6));
        let mut reduction = 2;
        let mut stages = vec![FeatureInfo::new("features.0", input_channel, reduction)];
        for &[t, c, n, s] in cfg.setting {
            let output_channel = make_divisible(c as f64 * cfg.width_mult, cfg.round_nearest);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let idx = features.len();
                features.push(inverted_residual(&(&fp / idx), input_channel, output_channel, stride, t));
                input_channel = output_channel;
            }
            reduction *= s;
            // A stage ends where the next one changes width or stride; one entry per table row.
            stages.push(FeatureInfo::new(format!("features.{}", features.len() - 1), output_channel, reduction));
        }
        let head_idx = features.len();
        let head =
            ConvBnAct::new(&(&fp / head_idx), "0", "1", input_channel, last_channel, 1, no_bias(), 1e-5, Act::Relu6);
        features.push(head);
        stages.push(FeatureInfo::new(format!("features.{head_idx}"), last_channel, reduction));
        let cp = p / "classifier";
        MobileNetV2 {
            features,
            dropout: Dropout::new(&(&cp / 0), build.drop_rate.unwrap_or(cfg.dropout)),
            classifier: HeadLinear::new(p, "classifier.1", last_channel, build.num_classes),
            num_features: last_channel,
            stages,
        }
    }
}

classifier_module!(MobileNetV2);

impl Classifier for MobileNetV2 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }

    /// Global average pooling, then `classifier` (Dropout, Linear). `pre_logits` is the pooled
    /// features, before the dropout.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = trace::point("pre_logits", xs.mean_dim(&[-2i64, -1][..], false, None));
        if pre_logits || self.classifier.linear.is_none() {
            return xs;
        }
        self.classifier.forward(self.dropout.forward_t(&xs, train), train)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.classifier
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.classifier
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![row("mobilenet_v2", "MobileNet v2", PAPER, "classifier.1.", 224, 32, |p, b| {
        Box::new(MobileNetV2::new(p, &MobileNetV2Config::new(1.0), b))
    })]
}
