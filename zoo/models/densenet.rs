//! DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017,
//! arXiv:1608.06993): dense blocks in which every layer sees the concatenation of all earlier
//! layers' outputs, joined by transitions that halve channels and resolution (DenseNet-BC).
//!
//! Layout and variable paths follow torchvision's `densenet.py` module names
//! (`features.denseblock1.denselayer1.norm1.weight`, `features.transition1.conv.weight`,
//! `features.norm5`, `classifier`). torchvision's checkpoint files predate those names
//! (`norm.1`, `conv.1`, ...); the loader's key rules rename them as torchvision does on load.
//! Variants are rows of [`DenseNetConfig`].
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{no_bias, path_of, Act, Activation, BatchNorm2d, Conv2d, LinearHead, ModuleT, Pool2d, Sequential};
use tch::{nn, Tensor};

/// One DenseNet variant (torchvision's `_densenet` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseNetConfig {
    /// Channels each dense layer adds (`k` in the paper).
    pub growth_rate: i64,
    /// Dense layers in each of the four blocks.
    pub block_config: [i64; 4],
    /// Channels of the stem convolution.
    pub num_init_features: i64,
    /// Bottleneck width of a dense layer, in multiples of the growth rate.
    pub bn_size: i64,
}

impl DenseNetConfig {
    const fn new(growth_rate: i64, block_config: [i64; 4], num_init_features: i64) -> Self {
        DenseNetConfig { growth_rate, block_config, num_init_features, bn_size: 4 }
    }
}

/// DenseNet-121 (k = 32).
pub const DENSENET121: DenseNetConfig = DenseNetConfig::new(32, [6, 12, 24, 16], 64);
/// DenseNet-161 (k = 48, wider stem).
pub const DENSENET161: DenseNetConfig = DenseNetConfig::new(48, [6, 12, 36, 24], 96);
/// DenseNet-169 (k = 32).
pub const DENSENET169: DenseNetConfig = DenseNetConfig::new(32, [6, 12, 32, 32], 64);
/// DenseNet-201 (k = 32).
pub const DENSENET201: DenseNetConfig = DenseNetConfig::new(32, [6, 12, 48, 32], 64);

/// BN-ReLU-Conv1×1 (bottleneck to `bn_size·k`), BN-ReLU-Conv3×3 (to `k`).
#[derive(Debug)]
struct DenseLayer {
    path: String,
    norm1: BatchNorm2d,
    relu1: Activation,
    conv1: Conv2d,
    norm2: BatchNorm2d,
    relu2: Activation,
    conv2: Conv2d,
}

impl DenseLayer {
    fn new(p: &nn::Path, cin: i64, growth_rate: i64, bn_size: i64) -> Self {
        let mid = bn_size * growth_rate;
        DenseLayer {
            path: path_of(p),
            norm1: BatchNorm2d::new(&(p / "norm1"), cin),
            relu1: Activation::inplace(&(p / "relu1"), Act::Relu),
            conv1: Conv2d::new(&(p / "conv1"), cin, mid, 1, no_bias()),
            norm2: BatchNorm2d::new(&(p / "norm2"), mid),
            relu2: Activation::inplace(&(p / "relu2"), Act::Relu),
            conv2: Conv2d::new(&(p / "conv2"), mid, growth_rate, 3, no_bias().padding(1)),
        }
    }
}

impl ModuleT for DenseLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("DenseLayer"),
            xs,
            |xs| {
                let ys = self.conv1.forward_t(&self.relu1.forward_t(&self.norm1.forward_t(xs, train), train), train);
                self.conv2.forward_t(&self.relu2.forward_t(&self.norm2.forward_t(&ys, train), train), train)
            },
        )
    }
}

/// Dense layers `denselayer1..n`, each fed the concatenation of the block input and every
/// earlier layer's output; the block returns that whole concatenation.
#[derive(Debug)]
struct DenseBlock {
    path: String,
    layers: Vec<DenseLayer>,
}

impl ModuleT for DenseBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("DenseBlock"),
            xs,
            |xs| {
                let mut features = vec![xs.shallow_clone()];
                for layer in &self.layers {
                    let new = layer.forward_t(&Tensor::cat(&features, 1), train);
                    features.push(new);
                }
                Tensor::cat(&features, 1)
            },
        )
    }
}

/// DenseNet-BC.
#[derive(Debug)]
pub struct DenseNet {
    features: Sequential,
    classifier: LinearHead,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl DenseNet {
    /// `build.drop_rate` adds dropout before `classifier` (torchvision has none; its own
    /// `drop_rate`, dropout inside the dense layers, stays 0 as in every released checkpoint).
    pub fn new(p: &nn::Path, cfg: &DenseNetConfig, build: &BuildConfig) -> Self {
        let fp = p / "features";
        let mut features = Sequential::new(&fp);
        let init = cfg.num_init_features;
        features.push(Conv2d::new(&(&fp / "conv0"), 3, init, 7, no_bias().stride(2).padding(3)));
        features.push(BatchNorm2d::new(&(&fp / "norm0"), init));
        features.push(Activation::inplace(&(&fp / "relu0"), Act::Relu));
        features.push(Pool2d::max(&(&fp / "pool0"), 3, 2).padding(1));
        let mut stages = vec![FeatureInfo::new("features.relu0", init, 2)];
        let mut width = init;
        let mut reduction = 4;
        for (i, &n) in cfg.block_config.iter().enumerate() {
            let bp = &fp / format!("denseblock{}", i + 1);
            let layers = (0..n)
                .map(|j| {
                    let cin = width + j * cfg.growth_rate;
                    DenseLayer::new(&(&bp / format!("denselayer{}", j + 1)), cin, cfg.growth_rate, cfg.bn_size)
                })
                .collect();
            features.push(DenseBlock { path: path_of(&bp), layers });
            width += n * cfg.growth_rate;
            if i + 1 == cfg.block_config.len() {
                break;
            }
            stages.push(FeatureInfo::new(path_of(&bp), width, reduction));
            let tp = &fp / format!("transition{}", i + 1);
            let mut transition = Sequential::named(&tp, "Transition");
            transition.push(BatchNorm2d::new(&(&tp / "norm"), width));
            transition.push(Activation::inplace(&(&tp / "relu"), Act::Relu));
            transition.push(Conv2d::new(&(&tp / "conv"), width, width / 2, 1, no_bias()));
            transition.push(Pool2d::avg(&(&tp / "pool"), 2, 2));
            features.push(transition);
            width /= 2;
            reduction *= 2;
        }
        features.push(BatchNorm2d::new(&(&fp / "norm5"), width));
        stages.push(FeatureInfo::new("features.norm5", width, reduction));
        DenseNet {
            features,
            classifier: LinearHead::new(p, "classifier", width, build.num_classes, build.drop_rate.unwrap_or(0.0)),
            num_features: width,
            stages,
        }
    }
}

classifier_module!(DenseNet);

impl Classifier for DenseNet {
    /// torchvision's `model.features(x)`: ends at `norm5`, before the final ReLU.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }

    /// ReLU, global average pool, classifier.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.classifier.forward(xs.relu().mean_dim(&[-2i64, -1][..], false, None), train, pre_logits)
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

    /// timm's stages: the stem after its ReLU (stride 2), each dense block but the last (before
    /// its transition: strides 4, 8, 16), and `norm5` (stride 32, = `forward_features`).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}

/// The registry's builder for one row.
pub fn build(p: &nn::Path, b: &BuildConfig, cfg: DenseNetConfig) -> Box<dyn Classifier> {
    Box::new(DenseNet::new(p, &cfg, b))
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("densenet121", "DenseNet", PAPER, "classifier.", 224, 29, |p, b| build(p, b, DENSENET121)),
        row("densenet161", "DenseNet", PAPER, "classifier.", 224, 29, |p, b| build(p, b, DENSENET161)),
        row("densenet169", "DenseNet", PAPER, "classifier.", 224, 29, |p, b| build(p, b, DENSENET169)),
        row("densenet201", "DenseNet", PAPER, "classifier.", 224, 29, |p, b| build(p, b, DENSENET201)),
    ]
}
