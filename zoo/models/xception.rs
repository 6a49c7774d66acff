//! Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017):
//! Inception modules taken to the limit — every convolution after the stem is a depthwise-
//! separable one (3×3 depthwise, then 1×1 pointwise), in 12 residual blocks: the entry flow
//! (3 blocks to 728 channels at stride 16), the middle flow (8 identical blocks) and the exit
//! flow (one block to 1024 channels, two separable convolutions to 1536 and 2048), then global
//! average pooling and one linear layer.
//!
//! Layout follows timm's `timm/models/xception.py` (`legacy_xception`, itself Cadene's port of
//! the Keras model): `conv1`/`bn1`, `conv2`/`bn2`, `block1`–`block12` with `rep.N` (ReLU,
//! `SeparableConv2d` as `conv1` depthwise + `pointwise`, BatchNorm2d, max pool) and the projection
//! shortcut `skip`/`skipbn`, `conv3`/`bn3`, `conv4`/`bn4`, head `fc`; so timm's (and Cadene's,
//! after renaming `last_linear` to `fc`) checkpoint loads unchanged. Like the reference, the stem
//! convolutions are unpadded.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{no_bias, path_of, Act, Activation, BatchNorm2d, Conv2d, LinearHead, ModuleT, Pool2d, Sequential};
use tch::{nn, Tensor};

/// One residual block of the paper's Figure 5 (timm's `Block` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Separable convolutions in the block.
    pub reps: i64,
    /// Stride of the closing 3×3 max pool and of the shortcut (1: no pool).
    pub stride: i64,
    /// Whether the block opens with a ReLU (all but the first).
    pub start_with_relu: bool,
    /// Whether the first separable conv changes the width (else the last one does).
    pub grow_first: bool,
}

const fn block(in_channels: i64, out_channels: i64, reps: i64, stride: i64) -> BlockConfig {
    BlockConfig { in_channels, out_channels, reps, stride, start_with_relu: true, grow_first: true }
}

const MIDDLE: BlockConfig = block(728, 728, 3, 1);

/// The twelve blocks: entry flow (`block1`–`block3`), middle flow (`block4`–`block11`) and the
/// exit flow's residual block (`block12`).
#[rustfmt::skip]
pub const BLOCKS: [BlockConfig; 12] = [
    BlockConfig { start_with_relu: false, ..block(64, 128, 2, 2) },
    block(128, 256, 2, 2),
    block(256, 728, 2, 2),
    MIDDLE, MIDDLE, MIDDLE, MIDDLE, MIDDLE, MIDDLE, MIDDLE, MIDDLE,
    BlockConfig { grow_first: false, ..block(728, 1024, 2, 2) },
];

/// A depthwise-separable convolution: `conv1` (3×3 depthwise, padding 1) then `pointwise` (1×1),
/// no batch norm or activation in between (as the paper found best).
#[derive(Debug)]
pub struct SeparableConv2d {
    path: String,
    conv1: Conv2d,
    pointwise: Conv2d,
}

impl SeparableConv2d {
    pub fn new(p: &nn::Path, inp: i64, oup: i64) -> Self {
        SeparableConv2d {
            path: path_of(p),
            conv1: Conv2d::new(&(p / "conv1"), inp, inp, 3, no_bias().padding(1).groups(inp)),
            pointwise: Conv2d::new(&(p / "pointwise"), inp, oup, 1, no_bias()),
        }
    }
}

impl ModuleT for SeparableConv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("SeparableConv2d"),
            xs,
            |xs| self.pointwise.forward_t(&self.conv1.forward_t(xs, train), train),
        )
    }
}

/// A residual block (`blockN`): `rep` = [ReLU,] (SeparableConv2d, BatchNorm2d, ReLU)… ending in
/// a batch norm [and a 3×3/2 max pool], plus the input, through `skip`/`skipbn` (1×1 conv with
/// the block's stride) when the width or the size changes. The shortcut takes the input before
/// the opening ReLU.
#[derive(Debug)]
struct Block {
    path: String,
    rep: Sequential,
    skip: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    fn new(p: &nn::Path, cfg: &BlockConfig) -> Self {
        let rp = p / "rep";
        let mut rep = Sequential::new(&rp);
        let (inc, outc) = (cfg.in_channels, cfg.out_channels);
        for i in 0..cfg.reps {
            let (cin, cout) = match (cfg.grow_first, i) {
                (true, 0) => (inc, outc),
                (true, _) => (outc, outc),
                (false, i) if i < cfg.reps - 1 => (inc, inc),
                (false, _) => (inc, outc),
            };
            // The opening ReLU reads the block's input, which the skip reads too: not in place.
            if i > 0 {
                rep.push(Activation::inplace(&(&rp / rep.len()), Act::Relu));
            } else if cfg.start_with_relu {
                rep.push(Activation::new(&(&rp / rep.len()), Act::Relu));
            }
            rep.push(SeparableConv2d::new(&(&rp / rep.len()), cin, cout));
            rep.push(BatchNorm2d::new(&(&rp / rep.len()), cout));
        }
        if cfg.stride != 1 {
            rep.push(Pool2d::max(&(&rp / rep.len()), 3, cfg.stride).padding(1));
        }
        let skip = (outc != inc || cfg.stride != 1).then(|| {
            let conv = Conv2d::new(&(p / "skip"), inc, outc, 1, no_bias().stride(cfg.stride));
            (conv, BatchNorm2d::new(&(p / "skipbn"), outc))
        });
        Block { path: path_of(p), rep, skip }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("XceptionBlock"),
            xs,
            |xs| {
                let ys = self.rep.forward_t(xs, train);
                match &self.skip {
                    Some((conv, bn)) => ys + bn.forward_t(&conv.forward_t(xs, train), train),
                    None => ys + xs,
                }
            },
        )
    }
}

/// Xception.
#[derive(Debug)]
pub struct Xception {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    act1: Activation,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    act2: Activation,
    blocks: Vec<Block>,
    conv3: SeparableConv2d,
    bn3: BatchNorm2d,
    act3: Activation,
    conv4: SeparableConv2d,
    bn4: BatchNorm2d,
    act4: Activation,
    fc: LinearHead,
}

/// Width of the features before the classifier.
pub const NUM_FEATURES: i64 = 2048;

impl Xception {
    /// Builds the network under `p` with timm's paths.
    pub fn new(p: &nn::Path, build: &BuildConfig) -> Self {
        let blocks = BLOCKS.iter().enumerate().map(|(i, b)| Block::new(&(p / format!("block{}", i + 1)), b)).collect();
        Xception {
            conv1: Conv2d::new(&(p / "conv1"), 3, 32, 3, no_bias().stride(2)),
            bn1: BatchNorm2d::new(&(p / "bn1"), 32),
            act1: Activation::inplace(&(p / "act1"), Act::Relu),
            conv2: Conv2d::new(&(p / "conv2"), 32, 64, 3, no_bias()),
            bn2: BatchNorm2d::new(&(p / "bn2"), 64),
            act2: Activation::inplace(&(p / "act2"), Act::Relu),
            blocks,
            conv3: SeparableConv2d::new(&(p / "conv3"), 1024, 1536),
            bn3: BatchNorm2d::new(&(p / "bn3"), 1536),
            act3: Activation::inplace(&(p / "act3"), Act::Relu),
            conv4: SeparableConv2d::new(&(p / "conv4"), 1536, NUM_FEATURES),
            bn4: BatchNorm2d::new(&(p / "bn4"), NUM_FEATURES),
            act4: Activation::inplace(&(p / "act4"), Act::Relu),
            fc: LinearHead::new(p, "fc", NUM_FEATURES, build.num_classes, build.drop_rate.unwrap_or(0.0)),
        }
    }
}

classifier_module!(Xception);

impl Classifier for Xception {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.act1.forward_t(&self.bn1.forward_t(&self.conv1.forward_t(xs, train), train), train);
        let xs = self.act2.forward_t(&self.bn2.forward_t(&self.conv2.forward_t(&xs, train), train), train);
        let xs = self.blocks.iter().fold(xs, |xs, b| b.forward_t(&xs, train));
        let xs = self.act3.forward_t(&self.bn3.forward_t(&self.conv3.forward_t(&xs, train), train), train);
        self.act4.forward_t(&self.bn4.forward_t(&self.conv4.forward_t(&xs, train), train), train)
    }

    /// Global average pooling, dropout (when set; timm's default is none), then `fc`;
    /// `pre_logits` is the pooled features.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.fc.forward(xs.mean_dim(&[-2i64, -1][..], false, None), train, pre_logits)
    }

    fn num_features(&self) -> i64 {
        NUM_FEATURES
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.fc
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.fc
    }

    /// timm's taps: the stem (`act2`), the ReLU that opens `block2`, `block3` and `block12`
    /// (the activated outputs of `block1`, `block2` and `block11`), and `act4`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![
            FeatureInfo::new("act2", 64, 2),
            FeatureInfo::new("block2.rep.0", 128, 4),
            FeatureInfo::new("block3.rep.0", 256, 8),
            FeatureInfo::new("block12.rep.0", 728, 16),
            FeatureInfo::new("act4", NUM_FEATURES, 32),
        ]
    }
}

/// Builds Xception (registry builder).
pub fn build(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(Xception::new(p, b))
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Chollet, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR 2017";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![row("xception", "Xception", PAPER, "fc.", 299, 7, build)]
}
