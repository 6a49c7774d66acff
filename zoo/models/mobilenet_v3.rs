//! MobileNet v3 large and small (Howard et al., "Searching for MobileNetV3", ICCV 2019):
//! MobileNet v2's inverted residuals with squeeze-and-excitation (hard-sigmoid gate), hard-swish
//! in the deeper half, and a last stage that pools before its 1×1 convolution (here a Linear).
//!
//! Layout and variable paths follow torchvision's `mobilenetv3.py` (`features.N.block.M.0`/`.1`,
//! the SE's `fc1`/`fc2` 1×1 convolutions from `torchvision.ops.SqueezeExcitation`,
//! `classifier.0` and `classifier.3`), with its batch norm (eps 0.001, momentum 0.01), so
//! torchvision's checkpoints load unchanged.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace;
use crate::nn::{
    make_divisible, no_bias, Act, Activation, AdaptiveAvgPool2d, ConvBnAct, ConvOpts, Dropout, HeadLinear,
    InvertedResidual, Linear, ModuleT, Sequential, SqueezeExcitation,
};
use tch::{nn, Tensor};

const BN_EPS: f64 = 0.001;
const BN_MOMENTUM: f64 = 0.01;
const RE: Act = Act::Relu;
const HS: Act = Act::Hardswish;

/// One row of the paper's Tables 1 and 2 (torchvision's `InvertedResidualConfig` at width 1):
/// input channels, kernel, expanded channels, output channels, squeeze-excitation, activation,
/// stride.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bneck(pub i64, pub i64, pub i64, pub i64, pub bool, pub Act, pub i64);

/// MobileNetV3-Large (Table 1).
#[rustfmt::skip]
pub const LARGE: &[Bneck] = &[
    //    in  k  exp  out   SE     act  s
    Bneck(16, 3,  16,  16, false, RE, 1),
    Bneck(16, 3,  64,  24, false, RE, 2),
    Bneck(24, 3,  72,  24, false, RE, 1),
    Bneck(24, 5,  72,  40, true,  RE, 2),
    Bneck(40, 5, 120,  40, true,  RE, 1),
    Bneck(40, 5, 120,  40, true,  RE, 1),
    Bneck(40, 3, 240,  80, false, HS, 2),
    Bneck(80, 3, 200,  80, false, HS, 1),
    Bneck(80, 3, 184,  80, false, HS, 1),
    Bneck(80, 3, 184,  80, false, HS, 1),
    Bneck(80, 3, 480, 112, true,  HS, 1),
    Bneck(112, 3, 672, 112, true, HS, 1),
    Bneck(112, 5, 672, 160, true, HS, 2),
    Bneck(160, 5, 960, 160, true, HS, 1),
    Bneck(160, 5, 960, 160, true, HS, 1),
];

/// MobileNetV3-Small (Table 2).
#[rustfmt::skip]
pub const SMALL: &[Bneck] = &[
    //    in  k  exp  out   SE     act  s
    Bneck(16, 3,  16,  16, true,  RE, 2),
    Bneck(16, 3,  72,  24, false, RE, 2),
    Bneck(24, 3,  88,  24, false, RE, 1),
    Bneck(24, 5,  96,  40, true,  HS, 2),
    Bneck(40, 5, 240,  40, true,  HS, 1),
    Bneck(40, 5, 240,  40, true,  HS, 1),
    Bneck(40, 5, 120,  48, true,  HS, 1),
    Bneck(48, 5, 144,  48, true,  HS, 1),
    Bneck(48, 5, 288,  96, true,  HS, 2),
    Bneck(96, 5, 576,  96, true,  HS, 1),
    Bneck(96, 5, 576,  96, true,  HS, 1),
];

/// One MobileNet v3: its block table, the width of the last hidden layer and the width
/// multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileNetV3Config {
    /// The bottleneck table at width 1 ([`LARGE`] or [`SMALL`]).
    pub blocks: &'static [Bneck],
    /// Width of `classifier.0` at width 1 (1280 large, 1024 small).
    pub last_channel: i64,
    /// Width multiplier applied to every block (and the last hidden layer), rounded to 8.
    pub width_mult: f64,
    /// Dropout before the last Linear (0.2), unless the build config overrides it.
    pub dropout: f64,
}

impl MobileNetV3Config {
    /// MobileNetV3-Large at width `width_mult`.
    pub const fn large(width_mult: f64) -> Self {
        MobileNetV3Config { blocks: LARGE, last_channel: 1280, width_mult, dropout: 0.2 }
    }
    /// MobileNetV3-Small at width `width_mult`.
    pub const fn small(width_mult: f64) -> Self {
        MobileNetV3Config { blocks: SMALL, last_channel: 1024, width_mult, dropout: 0.2 }
    }
    fn adjust(&self, channels: i64) -> i64 {
        make_divisible(channels as f64 * self.width_mult, 8)
    }
}

/// Conv2dNormActivation with v3's batch norm.
fn conv_bn_act(p: &nn::Path, cin: i64, cout: i64, k: i64, opts: ConvOpts, act: Act) -> ConvBnAct {
    let mut unit = ConvBnAct::new(p, "0", "1", cin, cout, k, opts, BN_EPS, act);
    unit.bn.momentum = BN_MOMENTUM;
    unit
}

/// The v3 bottleneck (`features.N`): v2's inverted residual around `block`, which holds [expand
/// 1×1,] depthwise k×k, [SE,] and the linear projection.
fn bneck(p: &nn::Path, cfg: &MobileNetV3Config, b: &Bneck) -> InvertedResidual {
    let &Bneck(inp, k, exp, out, se, act, stride) = b;
    let (inp, exp, out) = (cfg.adjust(inp), cfg.adjust(exp), cfg.adjust(out));
    let bp = p / "block";
    let mut block = Sequential::new(&bp);
    let mut idx = 0;
    let mut next = || {
        idx += 1;
        &bp / (idx - 1)
    };
    if exp != inp {
        block.push(conv_bn_act(&next(), inp, exp, 1, no_bias(), act));
    }
    let dw = no_bias().stride(stride).padding((k - 1) / 2).groups(exp);
    block.push(conv_bn_act(&next(), exp, exp, k, dw, act));
    if se {
        block.push(SqueezeExcitation::new(&next(), exp, make_divisible((exp / 4) as f64, 8)));
    }
    block.push(conv_bn_act(&next(), exp, out, 1, no_bias(), Act::Identity));
    InvertedResidual::with_body(p, block, stride == 1 && inp == out)
}

/// MobileNet v3 (large or small) at any width.
#[derive(Debug)]
pub struct MobileNetV3 {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    /// `classifier.0` (Linear), `.1` (Hardswish), `.2` (Dropout).
    hidden: Sequential,
    /// `classifier.3`.
    head: HeadLinear,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl MobileNetV3 {
    /// Builds the network under `p` with torchvision's paths.
    pub fn new(p: &nn::Path, cfg: &MobileNetV3Config, build: &BuildConfig) -> Self {
        let fp = p / "features";
        let mut features = Sequential::new(&fp);
        let first = cfg.adjust(cfg.blocks[0].0);
        let stem = no_bias().stride(2).padding(1);
        features.push(conv_bn_act(&(&fp / 0), 3, first, 3, stem, Act::Hardswish));
        let mut reduction = 2;
        let mut stages = vec![FeatureInfo::new("features.0", first, reduction)];
        for (i, b) in cfg.blocks.iter().enumerate() {
            let idx = features.len();
            features.push(bneck(&(&fp / idx), cfg, b));
            reduction *= b.6;
            // A stage ends before the next downsampling block, or at the last block.
            if cfg.blocks.get(i + 1).is_none_or(|next| next.6 > 1) {
                stages.push(FeatureInfo::new(format!("features.{idx}"), cfg.adjust(b.3), reduction));
            }
        }
        let last_in = cfg.adjust(cfg.blocks[cfg.blocks.len() - 1].3);
        let last_conv = 6 * last_in;
        let idx = features.len();
        features.push(conv_bn_act(&(&fp / idx), last_in, last_conv, 1, no_bias(), Act::Hardswish));
        stages.push(FeatureInfo::new(format!("features.{idx}"), last_conv, reduction));
        let last_channel = cfg.adjust(cfg.last_channel);
        let cp = p / "classifier";
        let mut hidden = Sequential::named(&cp, "Classifier");
        hidden.push(Linear::new(&(&cp / 0), last_conv, last_channel));
        hidden.push(Activation::inplace(&(&cp / 1), Act::Hardswish));
        hidden.push(Dropout::new(&(&cp / 2), build.drop_rate.unwrap_or(cfg.dropout)));
        MobileNetV3 {
            features,
            avgpool: AdaptiveAvgPool2d::new(&(p / "avgpool"), 1),
            hidden,
            head: HeadLinear::new(p, "classifier.3", last_channel, build.num_classes),
            num_features: last_channel,
            stages,
        }
    }
}

classifier_module!(MobileNetV3);

impl Classifier for MobileNetV3 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }

    /// `avgpool`, then `classifier`. `pre_logits` is the 1280 (large) or 1024 (small) features
    /// after `classifier.0`'s hard-swish and dropout.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = self.avgpool.forward_t(xs, train).flatten(1, -1);
        let xs = trace::point("pre_logits", self.hidden.forward_t(&xs, train));
        if pre_logits {
            return xs;
        }
        self.head.forward(xs, train)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.head
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.head
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Howard et al., Searching for MobileNetV3, ICCV 2019";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("mobilenet_v3_large", "MobileNet v3", PAPER, "classifier.3.", 224, 32, |p, b| {
            Box::new(MobileNetV3::new(p, &MobileNetV3Config::large(1.0), b))
        }),
        row("mobilenet_v3_small", "MobileNet v3", PAPER, "classifier.3.", 224, 32, |p, b| {
            Box::new(MobileNetV3::new(p, &MobileNetV3Config::small(1.0), b))
        }),
    ]
}
