//! ShuffleNet v2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
//! Architecture Design", ECCV 2018): units that split the channels in two, transform one half
//! (1×1, depthwise 3×3, 1×1), concatenate and shuffle; downsampling units transform both halves.
//!
//! Layout and variable paths follow torchvision's `shufflenetv2.py` (`conv1.0`/`.1`, `maxpool`,
//! `stage2`–`stage4` with `branch1`/`branch2`, `conv5`, `fc`), so torchvision's checkpoints load
//! unchanged.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::channel_shuffle;
use crate::nn::trace::{self, Op};
use crate::nn::{no_bias, path_of, Act, Activation, BatchNorm2d, Conv2d, LinearHead, ModuleT, Pool2d, Sequential};
use tch::{nn, Tensor};

/// One ShuffleNet v2: units per stage (2, 3, 4) and the widths of `conv1`, the three stages and
/// `conv5` (the paper's Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuffleNetV2Config {
    /// Units in `stage2`, `stage3`, `stage4` (the first of each downsamples).
    pub repeats: [i64; 3],
    /// Output channels of `conv1`, `stage2`, `stage3`, `stage4` and `conv5`.
    pub channels: [i64; 5],
}

/// The four widths of the paper's Table 5.
#[rustfmt::skip]
pub mod variants {
    use super::ShuffleNetV2Config as C;
    /// 0.5×.
    pub const X0_5: C = C { repeats: [4, 8, 4], channels: [24,  48,  96, 192, 1024] };
    /// 1×.
    pub const X1_0: C = C { repeats: [4, 8, 4], channels: [24, 116, 232, 464, 1024] };
    /// 1.5×.
    pub const X1_5: C = C { repeats: [4, 8, 4], channels: [24, 176, 352, 704, 1024] };
    /// 2×.
    pub const X2_0: C = C { repeats: [4, 8, 4], channels: [24, 244, 488, 976, 2048] };
}

/// Conv → BN [→ ReLU] appended to `seq` at the next indices, as in torchvision's Sequential.
fn push_conv_bn(seq: &mut Sequential, p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64, relu: bool) {
    let depthwise = k == 3;
    let opts = no_bias().stride(stride).padding(k / 2).groups(if depthwise { cin } else { 1 });
    let i = seq.len();
    seq.push(Conv2d::new(&(p / i), cin, cout, k, opts));
    seq.push(BatchNorm2d::new(&(p / (i + 1)), cout));
    if relu {
        seq.push(Activation::inplace(&(p / (i + 2)), Act::Relu));
    }
}

/// The ShuffleNet v2 unit (`stageN.M`). Stride 1: split, `branch2` on the second half. Stride 2:
/// `branch1` (depthwise, 1×1) and `branch2` on the whole input. Then concatenation and shuffle.
#[derive(Debug)]
struct InvertedResidual {
    path: String,
    branch1: Option<Sequential>,
    branch2: Sequential,
}

impl InvertedResidual {
    fn new(p: &nn::Path, inp: i64, oup: i64, stride: i64) -> Self {
        let branch = oup / 2;
        assert!(stride > 1 || inp == branch * 2, "a stride-1 unit keeps its width ({inp} vs {oup})");
        let branch1 = (stride > 1).then(|| {
            let bp = p / "branch1";
            let mut seq = Sequential::new(&bp);
            push_conv_bn(&mut seq, &bp, inp, inp, 3, stride, false);
            push_conv_bn(&mut seq, &bp, inp, branch, 1, 1, true);
            seq
        });
        let bp = p / "branch2";
        let mut branch2 = Sequential::new(&bp);
        push_conv_bn(&mut branch2, &bp, if stride > 1 { inp } else { branch }, branch, 1, 1, true);
        push_conv_bn(&mut branch2, &bp, branch, branch, 3, stride, false);
        push_conv_bn(&mut branch2, &bp, branch, branch, 1, 1, true);
        InvertedResidual { path: path_of(p), branch1, branch2 }
    }
}

impl ModuleT for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("ShuffleUnit"),
            xs,
            |xs| {
                let out = match &self.branch1 {
                    Some(b1) => Tensor::cat(&[b1.forward_t(xs, train), self.branch2.forward_t(xs, train)], 1),
                    None => {
                        let halves = xs.chunk(2, 1);
                        Tensor::cat(&[halves[0].shallow_clone(), self.branch2.forward_t(&halves[1], train)], 1)
                    }
                };
                channel_shuffle(&out, 2)
            },
        )
    }
}

/// ShuffleNet v2 at any of its widths.
#[derive(Debug)]
pub struct ShuffleNetV2 {
    conv1: Sequential,
    maxpool: Pool2d,
    stages: Vec<Sequential>,
    conv5: Sequential,
    fc: LinearHead,
    num_features: i64,
    channels: [i64; 5],
}

impl ShuffleNetV2 {
    /// Builds the network under `p` with torchvision's paths.
    pub fn new(p: &nn::Path, cfg: &ShuffleNetV2Config, build: &BuildConfig) -> Self {
        let c = cfg.channels;
        let mut conv1 = Sequential::new(&(p / "conv1"));
        conv1.push(Conv2d::new(&(p / "conv1" / 0), 3, c[0], 3, no_bias().stride(2).padding(1)));
        conv1.push(BatchNorm2d::new(&(p / "conv1" / 1), c[0]));
        conv1.push(Activation::inplace(&(p / "conv1" / 2), Act::Relu));
        let mut input = c[0];
        let stages = (0..3)
            .map(|s| {
                let sp = p / format!("stage{}", s + 2);
                let mut stage = Sequential::named(&sp, "Stage");
                for i in 0..cfg.repeats[s] {
                    let stride = if i == 0 { 2 } else { 1 };
                    stage.push(InvertedResidual::new(&(&sp / i), input, c[s + 1], stride));
                    input = c[s + 1];
                }
                stage
            })
            .collect();
        let cp = p / "conv5";
        let mut conv5 = Sequential::new(&cp);
        push_conv_bn(&mut conv5, &cp, input, c[4], 1, 1, true);
        ShuffleNetV2 {
            conv1,
            maxpool: Pool2d::max(&(p / "maxpool"), 3, 2).padding(1),
            stages,
            conv5,
            fc: LinearHead::new(p, "fc", c[4], build.num_classes, build.drop_rate.unwrap_or(0.0)),
            num_features: c[4],
            channels: c,
        }
    }
}

classifier_module!(ShuffleNetV2);

impl Classifier for ShuffleNetV2 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.maxpool.forward_t(&self.conv1.forward_t(xs, train), train);
        let xs = self.stages.iter().fold(xs, |xs, s| s.forward_t(&xs, train));
        self.conv5.forward_t(&xs, train)
    }

    /// The global mean, then `fc`; `pre_logits` is the pooled `conv5` features.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.fc.forward(xs.mean_dim(&[2i64, 3][..], false, None), train, pre_logits)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.fc
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.fc
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        let c = self.channels;
        vec![
            FeatureInfo::new("conv1", c[0], 2),
            FeatureInfo::new("stage2", c[1], 8),
            FeatureInfo::new("stage3", c[2], 16),
            FeatureInfo::new("stage4", c[3], 32),
            FeatureInfo::new("conv5", c[4], 32),
        ]
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str =
    "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018";

fn shufflenet_v2(p: &nn::Path, b: &BuildConfig, cfg: ShuffleNetV2Config) -> Box<dyn Classifier> {
    Box::new(ShuffleNetV2::new(p, &cfg, b))
}

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
#[rustfmt::skip]
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("shufflenet_v2_x0_5", "ShuffleNet v2", PAPER, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, variants::X0_5)),
        row("shufflenet_v2_x1_0", "ShuffleNet v2", PAPER, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, variants::X1_0)),
        row("shufflenet_v2_x1_5", "ShuffleNet v2", PAPER, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, variants::X1_5)),
        row("shufflenet_v2_x2_0", "ShuffleNet v2", PAPER, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, variants::X2_0)),
    ]
}
