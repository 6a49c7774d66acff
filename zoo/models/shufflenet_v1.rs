//! ShuffleNet v1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network
//! for Mobile Devices", CVPR 2018, arXiv:1707.01083): bottleneck units whose 1×1 convolutions are
//! group convolutions (g groups), with a channel shuffle after the first so information crosses
//! the groups, a 3×3 depthwise convolution in the middle, and a residual addition (stride 1) or
//! a concatenation with a 3×3/2 average-pooled shortcut (stride 2).
//!
//! Layout follows pytorchcv's `pytorchcv/models/shufflenet.py` (`shufflenet_g{g}_w{s}`, whose
//! ImageNet weights are public): `features.init_block.{conv,bn,pool}`,
//! `features.stage{1,2,3}.unit{N}.{compress_conv1,compress_bn1,dw_conv2,dw_bn2,expand_conv3,
//! expand_bn3}`, `output`; widths are Table 1's scaled by `int(c·s)`, bottlenecks a quarter of the
//! output, and the first unit's compress conv is not grouped (but is still shuffled). One
//! difference: pytorchcv closes `features` with a fixed 7×7 average pool (`final_pool`, so only
//! 224-pixel inputs work); the zoo pools globally there, which is the same at 224 and lets any
//! input size through.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::channel_shuffle;
use crate::nn::trace::{self, Op};
use crate::nn::{
    no_bias, path_of, Act, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, LinearHead, ModuleT, Pool2d, Sequential,
};
use tch::{nn, Tensor};

/// The paper's Table 1: output channels of stages 2–4 (pytorchcv's `stage1`–`stage3`) at 1× for
/// each group count.
#[rustfmt::skip]
pub const TABLE1: &[(i64, [i64; 3])] = &[
    (1, [144, 288,  576]),
    (2, [200, 400,  800]),
    (3, [240, 480,  960]),
    (4, [272, 544, 1088]),
    (8, [384, 768, 1536]),
];

/// Units per stage (the first downsamples): the paper's Table 1.
pub const REPEATS: [i64; 3] = [4, 8, 4];

/// Width of `init_block` (Conv1) at 1×.
pub const STEM: i64 = 24;

/// One ShuffleNet v1: the group count and the width scale s ("ShuffleNet s×").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShuffleNetV1Config {
    pub groups: i64,
    pub width: f64,
}

impl ShuffleNetV1Config {
    pub const fn new(groups: i64, width: f64) -> Self {
        ShuffleNetV1Config { groups, width }
    }

    /// Stem and stage widths: Table 1's row for `groups`, each scaled as pytorchcv does
    /// (`int(c * s)`, truncating).
    pub fn channels(&self) -> (i64, [i64; 3]) {
        let (_, row) = TABLE1
            .iter()
            .find(|(g, _)| *g == self.groups)
            .unwrap_or_else(|| panic!("ShuffleNet v1 has no Table 1 row for {} groups", self.groups));
        let scale = |c: i64| (c as f64 * self.width) as i64;
        (scale(STEM), row.map(scale))
    }
}

/// The ShuffleNet unit (`features.stageS.unitN`, the paper's Figure 2 b/c): 1×1 group conv to a
/// quarter of the output width, BN, ReLU, shuffle, 3×3 depthwise conv (stride 2 when
/// downsampling), BN, 1×1 group conv, BN; then the input is added, or (downsampling) 3×3/2
/// average-pooled and concatenated after, and a ReLU closes the unit.
#[derive(Debug)]
struct ShuffleUnit {
    path: String,
    groups: i64,
    compress_conv1: Conv2d,
    compress_bn1: BatchNorm2d,
    dw_conv2: Conv2d,
    dw_bn2: BatchNorm2d,
    expand_conv3: Conv2d,
    expand_bn3: BatchNorm2d,
    avgpool: Option<Pool2d>,
}

impl ShuffleUnit {
    fn new(p: &nn::Path, inp: i64, out: i64, groups: i64, downsample: bool, ignore_group: bool) -> Self {
        let mid = out / 4;
        let expanded = if downsample { out - inp } else { out };
        let g1 = if ignore_group { 1 } else { groups };
        let dw = no_bias().stride(if downsample { 2 } else { 1 }).padding(1).groups(mid);
        ShuffleUnit {
            path: path_of(p),
            groups,
            compress_conv1: Conv2d::new(&(p / "compress_conv1"), inp, mid, 1, no_bias().groups(g1)),
            compress_bn1: BatchNorm2d::new(&(p / "compress_bn1"), mid),
            dw_conv2: Conv2d::new(&(p / "dw_conv2"), mid, mid, 3, dw),
            dw_bn2: BatchNorm2d::new(&(p / "dw_bn2"), mid),
            expand_conv3: Conv2d::new(&(p / "expand_conv3"), mid, expanded, 1, no_bias().groups(groups)),
            expand_bn3: BatchNorm2d::new(&(p / "expand_bn3"), expanded),
            avgpool: downsample.then(|| Pool2d::avg(&(p / "avgpool"), 3, 2).padding(1)),
        }
    }
}

impl ModuleT for ShuffleUnit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("ShuffleUnit"),
            xs,
            |xs| {
                let ys = Act::Relu
                    .apply_owned(self.compress_bn1.forward_t(&self.compress_conv1.forward_t(xs, train), train));
                let ys = channel_shuffle(&ys, self.groups);
                let ys = self.dw_bn2.forward_t(&self.dw_conv2.forward_t(&ys, train), train);
                let ys = self.expand_bn3.forward_t(&self.expand_conv3.forward_t(&ys, train), train);
                let ys = match &self.avgpool {
                    Some(pool) => Tensor::cat(&[ys, pool.forward_t(xs, train)], 1),
                    None => ys + xs,
                };
                Act::Relu.apply_owned(ys)
            },
        )
    }
}

/// The stem (`features.init_block`): 3×3/2 conv, BN, ReLU, 3×3/2 max pool.
#[derive(Debug)]
struct InitBlock {
    path: String,
    conv: Conv2d,
    bn: BatchNorm2d,
    pool: Pool2d,
}

impl ModuleT for InitBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("ShuffleInitBlock"),
            xs,
            |xs| {
                let ys = Act::Relu.apply_owned(self.bn.forward_t(&self.conv.forward_t(xs, train), train));
                self.pool.forward_t(&ys, train)
            },
        )
    }
}

/// ShuffleNet v1 at any group count and width.
#[derive(Debug)]
pub struct ShuffleNetV1 {
    init_block: InitBlock,
    stages: Vec<Sequential>,
    final_pool: AdaptiveAvgPool2d,
    output: LinearHead,
    num_features: i64,
    info: Vec<FeatureInfo>,
}

impl ShuffleNetV1 {
    /// Builds the network under `p` with pytorchcv's paths.
    pub fn new(p: &nn::Path, cfg: &ShuffleNetV1Config, build: &BuildConfig) -> Self {
        let (stem, widths) = cfg.channels();
        let fp = p / "features";
        let ip = &fp / "init_block";
        let init_block = InitBlock {
            path: path_of(&ip),
            conv: Conv2d::new(&(&ip / "conv"), 3, stem, 3, no_bias().stride(2).padding(1)),
            bn: BatchNorm2d::new(&(&ip / "bn"), stem),
            pool: Pool2d::max(&(&ip / "pool"), 3, 2).padding(1),
        };
        let mut info = vec![FeatureInfo::new("features.init_block", stem, 4)];
        let mut input = stem;
        let stages = widths
            .iter()
            .zip(REPEATS)
            .enumerate()
            .map(|(s, (&out, n))| {
                let name = format!("stage{}", s + 1);
                let sp = &fp / name.as_str();
                let mut stage = Sequential::named(&sp, "Stage");
                for u in 0..n {
                    let unit = ShuffleUnit::new(
                        &(&sp / format!("unit{}", u + 1)),
                        input,
                        out,
                        cfg.groups,
                        u == 0,
                        s == 0 && u == 0,
                    );
                    stage.push(unit);
                    input = out;
                }
                info.push(FeatureInfo::new(format!("features.{name}"), out, 8 << s));
                stage
            })
            .collect();
        ShuffleNetV1 {
            init_block,
            stages,
            final_pool: AdaptiveAvgPool2d::new(&(&fp / "final_pool"), 1),
            output: LinearHead::new(p, "output", input, build.num_classes, build.drop_rate.unwrap_or(0.0)),
            num_features: input,
            info,
        }
    }
}

classifier_module!(ShuffleNetV1);

impl Classifier for ShuffleNetV1 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.init_block.forward_t(xs, train);
        self.stages.iter().fold(xs, |xs, s| s.forward_t(&xs, train))
    }

    /// Global average pooling (`features.final_pool`), then `output`; `pre_logits` is the pooled
    /// features.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.output.forward(self.final_pool.forward_t(xs, train).flatten(1, -1), train, pre_logits)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.output
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.output
    }

    /// `features.init_block` (stride 4, after the max pool) and the three stages (8, 16, 32).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.info.clone()
    }
}

/// Builds ShuffleNet v1 with `groups` groups at width `width` (registry builder).
pub fn build(p: &nn::Path, b: &BuildConfig, groups: i64, width: f64) -> Box<dyn Classifier> {
    Box::new(ShuffleNetV1::new(p, &ShuffleNetV1Config::new(groups, width), b))
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Zhang et al., ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices, CVPR 2018";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's). `(groups, width)`: Table 2's 1x at every g; 0.25x, 0.5x and
/// pytorchcv's 0.75x at g = 1, 3; Tables 4-5's 1.5x, 2x at g = 3. (0.5x and 0.25x at g = 2, 4, 8
/// do not divide into groups at `int(c * s)`.)
#[rustfmt::skip]
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("shufflenet_v1_g1_x1_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 1, 1.0)),
        row("shufflenet_v1_g2_x1_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 2, 1.0)),
        row("shufflenet_v1_g3_x1_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 1.0)),
        row("shufflenet_v1_g4_x1_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 4, 1.0)),
        row("shufflenet_v1_g8_x1_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 8, 1.0)),
        row("shufflenet_v1_g1_x0_25", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 1, 0.25)),
        row("shufflenet_v1_g1_x0_5", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 1, 0.5)),
        row("shufflenet_v1_g1_x0_75", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 1, 0.75)),
        row("shufflenet_v1_g3_x0_25", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 0.25)),
        row("shufflenet_v1_g3_x0_5", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 0.5)),
        row("shufflenet_v1_g3_x0_75", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 0.75)),
        row("shufflenet_v1_g3_x1_5", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 1.5)),
        row("shufflenet_v1_g3_x2_0", "ShuffleNet v1", PAPER, "output.", 224, 1, |p, b| build(p, b, 3, 2.0)),
    ]
}
