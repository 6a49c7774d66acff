//! Inception-ResNet v1 and v2 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4,
//! Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017,
//! arXiv:1602.07261): Inception blocks whose concatenated branches go through a 1×1 convolution
//! back to the input width and are added to the input as a residual, scaled down (0.1-0.3, the
//! paper's Section 3.3) to keep the sum stable; a last block at scale 1 without ReLU ends the
//! 8×8 stage.
//!
//! v2, layout follows timm's `timm/models/inception_resnet_v2.py` (timm 1.0.31, Cadene's port of
//! the TensorFlow-Slim weights): `conv2d_1a`...`conv2d_4a`, `mixed_5b`, `repeat` (10 × Block35),
//! `mixed_6a`, `repeat_1` (20 × Block17), `mixed_7a`, `repeat_2` (9 × Block8), `block8`,
//! `conv2d_7b` and the classifier `classif`; conv units `conv` (no bias) + `bn` (eps 1e-3), the
//! residual 1×1 convolution `conv2d` with bias. timm's `inception_resnet_v2.tf_in1k` loads
//! unchanged; Cadene's `inceptionresnetv2` file names the head `last_linear` and has 1001 classes.
//!
//! v1, layout follows pytorchcv's `pytorchcv/models/inceptionresnetv1.py` (pytorchcv 0.0.74, the
//! one public ImageNet checkpoint): `features.init_block` (`conv1`-`conv6`), `features.stage1`-
//! `stage3` of `unitN` blocks (`branches.branchN`, residual `conv`), the reductions as each later
//! stage's `unit1`, and the head `output` (`fc1` without bias, a 1-D batch norm `bn`, `fc2`).
//! Its conv units use eps 1e-3 like v2's. pytorchcv closes with a fixed 8×8 average pool; zoo
//! pools globally, which is the same at 299×299 and works at any size.
//!
//! Both take 299×299 by default and at least 75×75.
use super::inception::{
    conv_unit, convs, max_pool, pooled, same, valid, BranchSpec, Branches, ConvSpec, HeadSpec, InceptionNet, Mixed,
};
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{at, path_of, Act, BatchNorm2d, Conv2d, ConvOpts, Linear, ModuleT, Pool2d, Sequential};
use tch::{nn, Tensor};

/// The three residual block types, by grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// 35×35 (v2's Block35, v1's Inception-ResNet-A).
    A,
    /// 17×17 (Block17, Inception-ResNet-B).
    B,
    /// 8×8 (Block8, Inception-ResNet-C).
    C,
}

/// A residual Inception block: branches concatenated, a 1×1 convolution with bias back to the
/// input width, `x + scale * that`, then ReLU unless it is the last block.
#[derive(Debug)]
struct Residual {
    path: String,
    kind: &'static str,
    branches: Branches,
    up: Conv2d,
    scale: f64,
    relu: bool,
}

impl Residual {
    /// `up` names the 1×1 convolution (`conv2d` in timm, `conv` in pytorchcv).
    fn new(p: &nn::Path, kind: &'static str, cin: i64, specs: &[BranchSpec], up: &str, scale: f64, relu: bool) -> Self {
        let branches = Branches::new(p, cin, specs);
        let up = Conv2d::new(&at(p, up), branches.out_channels, cin, 1, ConvOpts::default());
        Residual { path: path_of(p), kind, branches, up, scale, relu }
    }
}

impl ModuleT for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container(self.kind),
            xs,
            |xs| {
                let ys = self.up.forward_t(&self.branches.forward_t(xs, train), train) * self.scale + xs;
                if self.relu {
                    Act::Relu.apply_owned(ys)
                } else {
                    ys
                }
            },
        )
    }
}

/// One version's block counts and residual scales: `repeats[g]` scaled blocks per grid, then one
/// more 8×8 block at scale 1 without ReLU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionResNetConfig {
    /// Scaled residual blocks on the 35×35, 17×17 and 8×8 grids.
    pub repeats: [usize; 3],
    /// The residual scale of each grid's blocks.
    pub scales: [f64; 3],
}

/// Inception-ResNet v2 as timm and Cadene build it (the paper's Figure 15 schema counts 5/10/5; the
/// released TensorFlow-Slim model, which every checkpoint comes from, has 10/20/9 + 1).
pub const V2: InceptionResNetConfig = InceptionResNetConfig { repeats: [10, 20, 9], scales: [0.17, 0.10, 0.20] };

/// Inception-ResNet v1 as pytorchcv builds it: 5 A, 10 B and 5 C blocks (the paper's Figure 15),
/// then the unscaled, unactivated C block.
pub const V1: InceptionResNetConfig = InceptionResNetConfig { repeats: [5, 10, 5], scales: [0.17, 0.10, 0.20] };

/// v2's residual blocks (timm's names; 320, 1088 and 2080 channels).
fn v2_block(grid: Grid) -> (&'static str, Vec<BranchSpec>) {
    match grid {
        Grid::A => (
            "Block35",
            vec![
                convs(vec![same("branch0", 32, 1, 1)]),
                convs(vec![same("branch1.0", 32, 1, 1), same("branch1.1", 32, 3, 3)]),
                convs(vec![same("branch2.0", 32, 1, 1), same("branch2.1", 48, 3, 3), same("branch2.2", 64, 3, 3)]),
            ],
        ),
        Grid::B => (
            "Block17",
            vec![
                convs(vec![same("branch0", 192, 1, 1)]),
                convs(vec![same("branch1.0", 128, 1, 1), same("branch1.1", 160, 1, 7), same("branch1.2", 192, 7, 1)]),
            ],
        ),
        Grid::C => (
            "Block8",
            vec![
                convs(vec![same("branch0", 192, 1, 1)]),
                convs(vec![same("branch1.0", 192, 1, 1), same("branch1.1", 224, 1, 3), same("branch1.2", 256, 3, 1)]),
            ],
        ),
    }
}

/// v2's non-residual blocks: `mixed_5b` (192 → 320), `mixed_6a` (320 → 1088, Reduction-A with
/// k=256, l=256, m=384, n=384), `mixed_7a` (1088 → 2080, Reduction-B).
fn v2_mixed(name: &str) -> (&'static str, Vec<BranchSpec>) {
    match name {
        "mixed_5b" => (
            "Mixed_5b",
            vec![
                convs(vec![same("branch0", 96, 1, 1)]),
                convs(vec![same("branch1.0", 48, 1, 1), same("branch1.1", 64, 5, 5)]),
                convs(vec![same("branch2.0", 64, 1, 1), same("branch2.1", 96, 3, 3), same("branch2.2", 96, 3, 3)]),
                pooled(vec![same("branch3.1", 64, 1, 1)]),
            ],
        ),
        "mixed_6a" => (
            "Mixed_6a",
            vec![
                convs(vec![valid("branch0", 384, 3, 2)]),
                convs(vec![same("branch1.0", 256, 1, 1), same("branch1.1", 256, 3, 3), valid("branch1.2", 384, 3, 2)]),
                max_pool(),
            ],
        ),
        "mixed_7a" => (
            "Mixed_7a",
            vec![
                convs(vec![same("branch0.0", 256, 1, 1), valid("branch0.1", 384, 3, 2)]),
                convs(vec![same("branch1.0", 256, 1, 1), valid("branch1.1", 288, 3, 2)]),
                convs(vec![same("branch2.0", 256, 1, 1), same("branch2.1", 288, 3, 3), valid("branch2.2", 320, 3, 2)]),
                max_pool(),
            ],
        ),
        _ => unreachable!("no block {name} in Inception-ResNet v2"),
    }
}

/// One step of v2's body, with timm's module name.
enum V2Step {
    Conv(ConvSpec),
    MaxPool(&'static str),
    Mixed(&'static str),
    /// A `Sequential` of `V2.repeats[grid]` residual blocks.
    Repeat(&'static str, Grid),
    /// The last 8×8 block, unscaled and without ReLU.
    Last(&'static str),
}

#[rustfmt::skip]
const V2_STEPS: [V2Step; 15] = [
    V2Step::Conv(valid("conv2d_1a", 32, 3, 2)),
    V2Step::Conv(valid("conv2d_2a", 32, 3, 1)),
    V2Step::Conv(same("conv2d_2b", 64, 3, 3)),
    V2Step::MaxPool("maxpool_3a"),
    V2Step::Conv(same("conv2d_3b", 80, 1, 1)),
    V2Step::Conv(valid("conv2d_4a", 192, 3, 1)),
    V2Step::MaxPool("maxpool_5a"),
    V2Step::Mixed("mixed_5b"),
    V2Step::Repeat("repeat", Grid::A),
    V2Step::Mixed("mixed_6a"),
    V2Step::Repeat("repeat_1", Grid::B),
    V2Step::Mixed("mixed_7a"),
    V2Step::Repeat("repeat_2", Grid::C),
    V2Step::Last("block8"),
    V2Step::Conv(same("conv2d_7b", 1536, 1, 1)),
];

fn grid_index(grid: Grid) -> usize {
    match grid {
        Grid::A => 0,
        Grid::B => 1,
        Grid::C => 2,
    }
}

/// Inception-ResNet v2 on timm's layout, with `cfg`'s counts and scales.
pub fn inception_resnet_v2(p: &nn::Path, cfg: &InceptionResNetConfig, build: &BuildConfig) -> InceptionNet {
    let mut body: Vec<Box<dyn ModuleT>> = Vec::new();
    let mut width = 3;
    for step in &V2_STEPS {
        match *step {
            V2Step::Conv(spec) => {
                body.push(Box::new(conv_unit(p, width, spec)));
                width = spec.out;
            }
            V2Step::MaxPool(name) => body.push(Box::new(Pool2d::max(&(p / name), 3, 2))),
            V2Step::Mixed(name) => {
                let (kind, specs) = v2_mixed(name);
                let mixed = Mixed::new(&(p / name), width, kind, &specs);
                width = mixed.out_channels();
                body.push(Box::new(mixed));
            }
            V2Step::Repeat(name, grid) => {
                let (kind, specs) = v2_block(grid);
                let g = grid_index(grid);
                let sp = p / name;
                let mut seq = Sequential::new(&sp);
                for i in 0..cfg.repeats[g] {
                    seq.push(Residual::new(&(&sp / i), kind, width, &specs, "conv2d", cfg.scales[g], true));
                }
                body.push(Box::new(seq));
            }
            V2Step::Last(name) => {
                let (kind, specs) = v2_block(Grid::C);
                body.push(Box::new(Residual::new(&(p / name), kind, width, &specs, "conv2d", 1.0, false)));
            }
        }
    }
    debug_assert_eq!(width, 1536);
    // timm's feature_info.
    let info = vec![
        FeatureInfo::new("conv2d_2b", 64, 2),
        FeatureInfo::new("conv2d_4a", 192, 4),
        FeatureInfo::new("repeat", 320, 8),
        FeatureInfo::new("repeat_1", 1088, 16),
        FeatureInfo::new("conv2d_7b", 1536, 32),
    ];
    let head = HeadSpec { pool: "global_pool", drop_rate: 0.0, fc: "classif" };
    InceptionNet::new(p, build, body, Vec::new(), width, head, info)
}

/// v1's residual units (pytorchcv's InceptionAUnit/BUnit/CUnit; 256, 896 and 1792 channels).
fn v1_unit(grid: Grid) -> (&'static str, Vec<BranchSpec>) {
    match grid {
        Grid::A => (
            "InceptionAUnit",
            vec![
                convs(vec![same("branches.branch1.conv", 32, 1, 1)]),
                convs(vec![
                    same("branches.branch2.conv_list.conv1", 32, 1, 1),
                    same("branches.branch2.conv_list.conv2", 32, 3, 3),
                ]),
                convs(vec![
                    same("branches.branch3.conv_list.conv1", 32, 1, 1),
                    same("branches.branch3.conv_list.conv2", 32, 3, 3),
                    same("branches.branch3.conv_list.conv3", 32, 3, 3),
                ]),
            ],
        ),
        Grid::B => (
            "InceptionBUnit",
            vec![
                convs(vec![same("branches.branch1.conv", 128, 1, 1)]),
                convs(vec![
                    same("branches.branch2.conv_list.conv1", 128, 1, 1),
                    same("branches.branch2.conv_list.conv2", 128, 1, 7),
                    same("branches.branch2.conv_list.conv3", 128, 7, 1),
                ]),
            ],
        ),
        Grid::C => (
            "InceptionCUnit",
            vec![
                convs(vec![same("branches.branch1.conv", 192, 1, 1)]),
                convs(vec![
                    same("branches.branch2.conv_list.conv1", 192, 1, 1),
                    same("branches.branch2.conv_list.conv2", 192, 1, 3),
                    same("branches.branch2.conv_list.conv3", 192, 3, 1),
                ]),
            ],
        ),
    }
}

/// v1's reductions, the first unit of stages 2 and 3: Reduction-A (k=192, l=192, m=256, n=384;
/// 256 → 896) and Reduction-B (896 → 1792).
fn v1_reduction(grid: Grid) -> (&'static str, Vec<BranchSpec>) {
    match grid {
        Grid::B => (
            "ReductionAUnit",
            vec![
                convs(vec![valid("branches.branch1.conv_list.conv1", 384, 3, 2)]),
                convs(vec![
                    same("branches.branch2.conv_list.conv1", 192, 1, 1),
                    same("branches.branch2.conv_list.conv2", 192, 3, 3),
                    valid("branches.branch2.conv_list.conv3", 256, 3, 2),
                ]),
                max_pool(),
            ],
        ),
        Grid::C => (
            "ReductionBUnit",
            vec![
                convs(vec![
                    same("branches.branch1.conv_list.conv1", 256, 1, 1),
                    valid("branches.branch1.conv_list.conv2", 384, 3, 2),
                ]),
                convs(vec![
                    same("branches.branch2.conv_list.conv1", 256, 1, 1),
                    valid("branches.branch2.conv_list.conv2", 256, 3, 2),
                ]),
                convs(vec![
                    same("branches.branch3.conv_list.conv1", 256, 1, 1),
                    same("branches.branch3.conv_list.conv2", 256, 3, 3),
                    valid("branches.branch3.conv_list.conv3", 256, 3, 2),
                ]),
                max_pool(),
            ],
        ),
        Grid::A => unreachable!("stage 1 starts without a reduction"),
    }
}

/// v1's stem, `features.init_block` (3 → 256 channels, stride 8); `None` is its 3×3/2 max pool.
const V1_STEM: [Option<ConvSpec>; 7] = [
    Some(valid("conv1", 32, 3, 2)),
    Some(valid("conv2", 32, 3, 1)),
    Some(same("conv3", 64, 3, 3)),
    None,
    Some(same("conv4", 80, 1, 1)),
    Some(valid("conv5", 192, 3, 1)),
    Some(valid("conv6", 256, 3, 2)),
];

/// Width of v1's bottleneck FC before the classifier.
const V1_HIDDEN: i64 = 512;

/// Inception-ResNet v1 on pytorchcv's layout, with `cfg`'s counts and scales.
pub fn inception_resnet_v1(p: &nn::Path, cfg: &InceptionResNetConfig, build: &BuildConfig) -> InceptionNet {
    let fp = p / "features";
    let mut features = Sequential::new(&fp);
    let ip = &fp / "init_block";
    let mut init = Sequential::named(&ip, "InceptInitBlock");
    let mut width = 3;
    for spec in V1_STEM {
        match spec {
            Some(spec) => {
                init.push(conv_unit(&ip, width, spec));
                width = spec.out;
            }
            None => {
                init.push(Pool2d::max(&(&ip / "pool"), 3, 2));
            }
        }
    }
    features.push(init);
    for (g, grid) in [Grid::A, Grid::B, Grid::C].into_iter().enumerate() {
        let sp = &fp / format!("stage{}", g + 1);
        let mut stage = Sequential::named(&sp, "Stage");
        if grid != Grid::A {
            let (kind, specs) = v1_reduction(grid);
            let unit = Mixed::new(&(&sp / "unit1"), width, kind, &specs);
            width = unit.out_channels();
            stage.push(unit);
        }
        let (kind, specs) = v1_unit(grid);
        for _ in 0..cfg.repeats[g] {
            let name = format!("unit{}", stage.len() + 1);
            stage.push(Residual::new(&(&sp / name), kind, width, &specs, "conv", cfg.scales[g], true));
        }
        if grid == Grid::C {
            let name = format!("unit{}", stage.len() + 1);
            stage.push(Residual::new(&(&sp / name), kind, width, &specs, "conv", 1.0, false));
        }
        features.push(stage);
    }
    debug_assert_eq!(width, 1792);
    let op = p / "output";
    let hidden: Vec<Box<dyn ModuleT>> = vec![
        Box::new(Linear::without_bias(&(&op / "fc1"), width, V1_HIDDEN)),
        // `nn.BatchNorm1d`: the same computation and variables on [N, C].
        Box::new(BatchNorm2d::with_eps(&(&op / "bn"), V1_HIDDEN, 1e-3)),
    ];
    // The last module at each stride, as timm chooses for v2.
    let info = vec![
        FeatureInfo::new("features.init_block.conv3", 64, 2),
        FeatureInfo::new("features.init_block.conv5", 192, 4),
        FeatureInfo::new("features.stage1", 256, 8),
        FeatureInfo::new("features.stage2", 896, 16),
        FeatureInfo::new("features.stage3", 1792, 32),
    ];
    let head = HeadSpec { pool: "features.final_pool", drop_rate: 0.6, fc: "output.fc2" };
    InceptionNet::new(p, build, vec![Box::new(features)], hidden, V1_HIDDEN, head, info)
}

/// The registry's builder for `inception_resnet_v1`.
pub fn build_v1(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(inception_resnet_v1(p, &V1, b))
}

/// The registry's builder for `inception_resnet_v2`.
pub fn build_v2(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(inception_resnet_v2(p, &V2, b))
}

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    use super::inception_v4::PAPER;
    vec![
        row("inception_resnet_v1", "Inception-ResNet", PAPER, "output.fc2.", 299, 75, build_v1),
        row("inception_resnet_v2", "Inception-ResNet", PAPER, "classif.", 299, 75, build_v2),
    ]
}
