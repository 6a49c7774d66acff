//! MobileNet v1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
//! Vision Applications", arXiv:1704.04861, 2017): a 3×3 stem, then thirteen depthwise-separable
//! units (3×3 depthwise, 1×1 pointwise, each followed by batch norm and an activation), global
//! average pooling and one linear layer. The width multiplier α scales every layer; the
//! resolution multiplier is simply the input size, which may be anything (global pooling).
//!
//! Layout follows timm's `timm/models/efficientnet.py` (`_gen_mobilenet_v1`, `mobilenetv1_100`,
//! arch `dsa_r1_k3_s1_c64 … dsa_r2_k3_s2_c1024`, no head convolution): `conv_stem`, `bn1`,
//! `blocks.S.U.{conv_dw,bn1,conv_pw,bn2}`, `classifier`, with timm's ReLU6 and channel rounding
//! (`round_channels`: nearest multiple of 8, never below 90%), so timm's checkpoints load
//! unchanged. The paper's plain ReLU (pytorchcv's `mobilenet_w*`) is [`MobileNetV1Config::act`].
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::make_divisible;
use crate::nn::trace::{self, Op};
use crate::nn::{no_bias, path_of, Act, BatchNorm2d, Conv2d, LinearHead, ModuleT, Sequential};
use tch::{nn, Tensor};

/// The paper's Table 1 as stages: output channels, units, stride of the first unit. The stem
/// (3×3/2, 32 channels) comes before.
#[rustfmt::skip]
pub const STAGES: &[[i64; 3]] = &[
    //  c, n, s
    [  64, 1, 1],
    [ 128, 2, 2],
    [ 256, 2, 2],
    [ 512, 6, 2],
    [1024, 2, 2],
];

/// One MobileNet v1: the stage table, the stem width, the width multiplier α and the activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileNetV1Config {
    /// Rows `[c, n, s]` (see [`STAGES`]).
    pub stages: &'static [[i64; 3]],
    /// Stem channels before the multiplier (32).
    pub stem: i64,
    /// Width multiplier α (the paper's 1.0, 0.75, 0.5, 0.25).
    pub width_mult: f64,
    /// Activation after every batch norm: timm's ReLU6 by default, the paper's ReLU for
    /// pytorchcv's weights.
    pub act: Act,
    /// Dropout before the classifier (timm's default 0), unless the build config overrides it.
    pub dropout: f64,
}

impl MobileNetV1Config {
    /// timm's `mobilenetv1_100` layout at width α (ReLU6).
    pub const fn new(width_mult: f64) -> Self {
        MobileNetV1Config { stages: STAGES, stem: 32, width_mult, act: Act::Relu6, dropout: 0.0 }
    }

    /// The same network with the paper's plain ReLU, as pytorchcv's `mobilenet_w*` builds it.
    pub const fn with_relu(self) -> Self {
        MobileNetV1Config { act: Act::Relu, ..self }
    }

    /// Channels after the width multiplier (timm's `round_channels`).
    pub fn channels(&self, c: i64) -> i64 {
        make_divisible(c as f64 * self.width_mult, 8)
    }
}

/// The depthwise-separable unit (`blocks.S.U`): 3×3 depthwise conv (`conv_dw`, carrying the
/// stride), `bn1`, activation, 1×1 pointwise conv (`conv_pw`), `bn2`, activation. No residual.
#[derive(Debug)]
struct DepthwiseSeparable {
    path: String,
    conv_dw: Conv2d,
    bn1: BatchNorm2d,
    conv_pw: Conv2d,
    bn2: BatchNorm2d,
    act: Act,
}

impl DepthwiseSeparable {
    fn new(p: &nn::Path, inp: i64, oup: i64, stride: i64, act: Act) -> Self {
        let dw = no_bias().stride(stride).padding(1).groups(inp);
        DepthwiseSeparable {
            path: path_of(p),
            conv_dw: Conv2d::new(&(p / "conv_dw"), inp, inp, 3, dw),
            bn1: BatchNorm2d::new(&(p / "bn1"), inp),
            conv_pw: Conv2d::new(&(p / "conv_pw"), inp, oup, 1, no_bias()),
            bn2: BatchNorm2d::new(&(p / "bn2"), oup),
            act,
        }
    }
}

impl ModuleT for DepthwiseSeparable {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("DepthwiseSeparableConv"),
            xs,
            |xs| {
                let ys = self.act.apply_owned(self.bn1.forward_t(&self.conv_dw.forward_t(xs, train), train));
                self.act.apply_owned(self.bn2.forward_t(&self.conv_pw.forward_t(&ys, train), train))
            },
        )
    }
}

/// MobileNet v1 at any width.
#[derive(Debug)]
pub struct MobileNetV1 {
    conv_stem: Conv2d,
    bn1: BatchNorm2d,
    act: Act,
    blocks: Sequential,
    classifier: LinearHead,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl MobileNetV1 {
    /// Builds the network under `p` with timm's paths.
    pub fn new(p: &nn::Path, cfg: &MobileNetV1Config, build: &BuildConfig) -> Self {
        let stem = cfg.channels(cfg.stem);
        let bp = p / "blocks";
        let mut blocks = Sequential::new(&bp);
        let (mut input, mut reduction) = (stem, 2);
        let mut stages = Vec::new();
        for (s, &[c, n, stride]) in cfg.stages.iter().enumerate() {
            let sp = &bp / s;
            let mut stage = Sequential::named(&sp, "Stage");
            let out = cfg.channels(c);
            for u in 0..n {
                stage.push(DepthwiseSeparable::new(&(&sp / u), input, out, if u == 0 { stride } else { 1 }, cfg.act));
                input = out;
            }
            reduction *= stride;
            stages.push(FeatureInfo::new(format!("blocks.{s}"), out, reduction));
            blocks.push(stage);
        }
        MobileNetV1 {
            conv_stem: Conv2d::new(&(p / "conv_stem"), 3, stem, 3, no_bias().stride(2).padding(1)),
            bn1: BatchNorm2d::new(&(p / "bn1"), stem),
            act: cfg.act,
            blocks,
            classifier: LinearHead::new(
                p,
                "classifier",
                input,
                build.num_classes,
                build.drop_rate.unwrap_or(cfg.dropout),
            ),
            num_features: input,
            stages,
        }
    }
}

classifier_module!(MobileNetV1);

impl Classifier for MobileNetV1 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.act.apply_owned(self.bn1.forward_t(&self.conv_stem.forward_t(xs, train), train));
        self.blocks.forward_t(&xs, train)
    }

    /// Global average pooling, dropout (when set), then `classifier`; `pre_logits` is the pooled
    /// features.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.classifier.forward(xs.mean_dim(&[-2i64, -1][..], false, None), train, pre_logits)
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

    /// timm's: `blocks.0` … `blocks.4`, reductions 2 to 32; the last is `forward_features`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// Builds MobileNet v1 at width `width_mult` (registry builder).
pub fn build(p: &nn::Path, b: &BuildConfig, width_mult: f64) -> Box<dyn Classifier> {
    Box::new(MobileNetV1::new(p, &MobileNetV1Config::new(width_mult), b))
}

/// Builds MobileNet v1 at width `width_mult` with the paper's plain ReLU, as pytorchcv's
/// `mobilenet_w*` (registry builder of `mobilenet_v1_relu`).
pub fn build_relu(p: &nn::Path, b: &BuildConfig, width_mult: f64) -> Box<dyn Classifier> {
    Box::new(MobileNetV1::new(p, &MobileNetV1Config::new(width_mult).with_relu(), b))
}

/// Key rules mapping pytorchcv's `mobilenet_w*` files onto this layout: `features.init_block.
/// {conv,bn}` to `conv_stem`/`bn1`, `features.stageS.unitU.{dw_conv,pw_conv}.{conv,bn}` (counted
/// from 1) to `blocks.S-1.U-1.{conv_dw,bn1,conv_pw,bn2}`, `output` to `classifier`. pytorchcv's
/// network uses plain ReLU: build it with [`MobileNetV1Config::with_relu`] to reproduce its outputs.
pub fn pytorchcv_key_rules() -> Vec<crate::checkpoint::KeyRule> {
    use crate::checkpoint::KeyRule::Rename;
    let rename = |pattern: String, replace: String| Rename { pattern, replace };
    let mut rules = vec![
        rename(r"^features\.init_block\.conv\.".into(), "conv_stem.".into()),
        rename(r"^features\.init_block\.bn\.".into(), "bn1.".into()),
    ];
    let max_units = STAGES.iter().map(|s| s[1]).max().unwrap_or(0);
    rules.extend((0..STAGES.len()).map(|s| rename(format!(r"^features\.stage{}\.", s + 1), format!("blocks.{s}."))));
    rules.extend((0..max_units).map(|u| rename(format!(r"^(blocks\.\d+\.)unit{}\.", u + 1), format!("${{1}}{u}."))));
    for (from, to) in
        [("dw_conv.conv", "conv_dw"), ("dw_conv.bn", "bn1"), ("pw_conv.conv", "conv_pw"), ("pw_conv.bn", "bn2")]
    {
        rules.push(rename(format!(r"^(blocks\.\d+\.\d+\.){}\.", from.replace('.', r"\.")), format!("${{1}}{to}.")));
    }
    rules.push(rename(r"^output\.".into(), "classifier.".into()));
    rules
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, arXiv 2017";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("mobilenet_v1_relu", "MobileNet v1", PAPER, "classifier.", 224, 1, |p, b| build_relu(p, b, 1.0)),
        row("mobilenet_v1", "MobileNet v1", PAPER, "classifier.", 224, 1, |p, b| build(p, b, 1.0)),
        row("mobilenet_v1_x0_75", "MobileNet v1", PAPER, "classifier.", 224, 1, |p, b| build(p, b, 0.75)),
        row("mobilenet_v1_x0_5", "MobileNet v1", PAPER, "classifier.", 224, 1, |p, b| build(p, b, 0.5)),
        row("mobilenet_v1_x0_25", "MobileNet v1", PAPER, "classifier.", 224, 1, |p, b| build(p, b, 0.25)),
    ]
}
