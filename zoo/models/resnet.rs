//! ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), with the
//! Wide ResNet (Zagoruyko & Komodakis 2016) and ResNeXt (Xie et al. 2017) variants as rows of
//! the same table.
//!
//! Layout and variable paths follow torchvision's `resnet.py` (V1.5: the stride of a bottleneck
//! sits in its 3×3 convolution), so torchvision's checkpoints load unchanged.
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{
    no_bias, path_of, Act, Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, LinearHead, ModuleT, Pool2d, Sequential,
};
use tch::{nn, Tensor};

/// The two residual blocks of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand ×4 (ResNet-50 and deeper).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// One ResNet variant: block type, blocks per stage, and the ResNeXt/Wide cardinality and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    pub block: BlockKind,
    pub layers: [i64; 4],
    pub groups: i64,
    pub width_per_group: i64,
}

impl ResNetConfig {
    pub const fn new(block: BlockKind, layers: [i64; 4]) -> Self {
        ResNetConfig { block, layers, groups: 1, width_per_group: 64 }
    }
    /// ResNeXt: `groups` paths of `width_per_group` channels each (torchvision's 32x4d = 32, 4).
    pub const fn grouped(self, groups: i64, width_per_group: i64) -> Self {
        ResNetConfig { groups, width_per_group, ..self }
    }
}

/// A residual block (basic or bottleneck) with its optional projection shortcut.
#[derive(Debug)]
struct Block {
    path: String,
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<Sequential>,
}

impl Block {
    fn new(p: &nn::Path, cfg: &ResNetConfig, in_planes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * cfg.block.expansion();
        // (name suffix, in, out, kernel, stride, groups) for each conv of the block.
        let specs: Vec<(i64, i64, i64, i64, i64)> = match cfg.block {
            BlockKind::Basic => vec![(in_planes, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            BlockKind::Bottleneck => {
                let width = planes * cfg.width_per_group / 64 * cfg.groups;
                vec![(in_planes, width, 1, 1, 1), (width, width, 3, stride, cfg.groups), (width, out, 1, 1, 1)]
            }
        };
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k, s, g))| {
                let opts = no_bias().stride(s).padding(k / 2).groups(g);
                let conv = Conv2d::new(&(p / format!("conv{}", i + 1)), cin, cout, k, opts);
                (conv, BatchNorm2d::new(&(p / format!("bn{}", i + 1)), cout))
            })
            .collect();
        let downsample = (stride != 1 || in_planes != out).then(|| {
            let d = p / "downsample";
            let mut seq = Sequential::new(&d);
            seq.push(Conv2d::new(&(&d / 0), in_planes, out, 1, no_bias().stride(stride)));
            seq.push(BatchNorm2d::new(&(&d / 1), out));
            seq
        });
        Block { path: path_of(p), convs, downsample }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("ResidualBlock"),
            xs,
            |xs| {
                let last = self.convs.len() - 1;
                let mut ys = xs.shallow_clone();
                for (i, (conv, bn)) in self.convs.iter().enumerate() {
                    ys = bn.forward_t(&conv.forward_t(&ys, train), train);
                    if i < last {
                        ys = Act::Relu.apply_owned(ys);
                    }
                }
                let shortcut = match &self.downsample {
                    Some(d) => d.forward_t(xs, train),
                    None => xs.shallow_clone(),
                };
                Act::Relu.apply_owned(ys + shortcut)
            },
        )
    }
}

/// ResNet, Wide ResNet and ResNeXt.
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    relu: Activation,
    maxpool: Pool2d,
    stages: Vec<Sequential>,
    avgpool: AdaptiveAvgPool2d,
    fc: LinearHead,
    num_features: i64,
}

impl ResNet {
    pub fn new(p: &nn::Path, cfg: &ResNetConfig, build: &BuildConfig) -> Self {
        let mut in_planes = 64;
        let stages = [64, 128, 256, 512]
            .iter()
            .zip(cfg.layers)
            .enumerate()
            .map(|(i, (&planes, n))| {
                let sp = p / format!("layer{}", i + 1);
                let mut stage = Sequential::named(&sp, "Stage");
                for b in 0..n {
                    let stride = if b == 0 && i > 0 { 2 } else { 1 };
                    stage.push(Block::new(&(&sp / b), cfg, in_planes, planes, stride));
                    in_planes = planes * cfg.block.expansion();
                }
                stage
            })
            .collect();
        ResNet {
            conv1: Conv2d::new(&(p / "conv1"), 3, 64, 7, no_bias().stride(2).padding(3)),
            bn1: BatchNorm2d::new(&(p / "bn1"), 64),
            relu: Activation::inplace(&(p / "relu"), Act::Relu),
            maxpool: Pool2d::max(&(p / "maxpool"), 3, 2).padding(1),
            stages,
            avgpool: AdaptiveAvgPool2d::new(&(p / "avgpool"), 1),
            // torchvision's ResNet has no dropout; `drop_rate` adds one before `fc`.
            fc: LinearHead::new(p, "fc", in_planes, build.num_classes, build.drop_rate.unwrap_or(0.0)),
            num_features: in_planes,
        }
    }
}

classifier_module!(ResNet);

impl Classifier for ResNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = self.relu.forward_t(&self.bn1.forward_t(&self.conv1.forward_t(xs, train), train), train);
        let xs = self.maxpool.forward_t(&xs, train);
        self.stages.iter().fold(xs, |xs, s| s.forward_t(&xs, train))
    }

    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.fc.forward(self.avgpool.forward_t(xs, train).flatten(1, -1), train, pre_logits)
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
        let mut info = vec![FeatureInfo::new("relu", 64, 2)];
        let e = self.num_features / 512;
        for (i, c) in [64, 128, 256, 512].iter().enumerate() {
            info.push(FeatureInfo::new(format!("layer{}", i + 1), c * e, 4 << i));
        }
        info
    }
}

/// The papers, as listings cite them: ResNet's, Wide ResNet's and ResNeXt's.
pub const PAPER: &str = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016";
pub const PAPER_WIDE: &str = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016";
pub const PAPER_RESNEXT: &str = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017";

fn resnet(p: &nn::Path, b: &BuildConfig, cfg: ResNetConfig) -> Box<dyn Classifier> {
    Box::new(ResNet::new(p, &cfg, b))
}

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
#[rustfmt::skip]
pub(super) fn variants() -> Vec<ModelSpec> {
    use BlockKind::{Basic, Bottleneck};
    vec![
        row("resnet18", "ResNet", PAPER, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [2, 2, 2, 2]))),
        row("resnet34", "ResNet", PAPER, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [3, 4, 6, 3]))),
        row("resnet50", "ResNet", PAPER, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]))),
        row("resnet101", "ResNet", PAPER, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]))),
        row("resnet152", "ResNet", PAPER, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 8, 36, 3]))),
        row("wide_resnet50_2", "Wide ResNet", PAPER_WIDE, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(1, 128))),
        row("wide_resnet101_2", "Wide ResNet", PAPER_WIDE, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(1, 128))),
        row("resnext50_32x4d", "ResNeXt", PAPER_RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(32, 4))),
        row("resnext101_32x8d", "ResNeXt", PAPER_RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(32, 8))),
        row("resnext101_64x4d", "ResNeXt", PAPER_RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(64, 4))),
    ]
}
