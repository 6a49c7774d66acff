//! Inception v4 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the
//! Impact of Residual Connections on Learning", AAAI 2017, arXiv:1602.07261): the paper's pure
//! Inception network, a stem of unpadded convolutions and parallel stride-2 branches, then
//! 4 × Inception-A (35×35), Reduction-A, 7 × Inception-B (17×17), Reduction-B and
//! 3 × Inception-C (8×8).
//!
//! Layout follows timm's `timm/models/inception_v4.py` (timm 1.0.31, itself Cadene's port of the
//! TensorFlow-Slim weights): the stem and blocks are `features.0`-`features.21`, each convolution
//! a `ConvNormAct` with children `conv` (no bias) and `bn` (eps 1e-3), average-pool branches that
//! do not count the padding, and the classifier `last_linear`, so timm's `inception_v4.tf_in1k`
//! loads unchanged. Cadene's `inceptionv4` file has the same keys but a 1001-class head whose row
//! 0 is TensorFlow's background class (drop that row to load it). Default input 299×299; the
//! smallest that goes through is 75×75.
//!
//!
//! The blocks are tables of branches over the Inception line's shared pieces
//! ([`super::inception`]).
use super::inception::{
    conv_unit, convs, max_pool, pooled, same, split, valid, BranchSpec, ConvSpec, HeadSpec, InceptionNet, Mixed,
};
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::Sequential;
use tch::nn;

/// The blocks of Inception v4 (timm's class names), as branch tables in concatenation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Stem: 3×3/2 max pool beside a 3×3/2 convolution (147 → 73).
    Mixed3a,
    /// Stem: two unpadded 3×3 branches, one factorised 7×7 (73 → 71).
    Mixed4a,
    /// Stem: 3×3/2 convolution beside a 3×3/2 max pool (71 → 35).
    Mixed5a,
    /// Inception-A (35×35, 384 channels).
    InceptionA,
    /// Reduction-A (35 → 17): k=192, l=224, m=256, n=384 of the paper's Table 1.
    ReductionA,
    /// Inception-B (17×17, 1024 channels).
    InceptionB,
    /// Reduction-B (17 → 8).
    ReductionB,
    /// Inception-C (8×8, 1536 channels).
    InceptionC,
}

impl Block {
    fn name(self) -> &'static str {
        match self {
            Block::Mixed3a => "Mixed3a",
            Block::Mixed4a => "Mixed4a",
            Block::Mixed5a => "Mixed5a",
            Block::InceptionA => "InceptionA",
            Block::ReductionA => "ReductionA",
            Block::InceptionB => "InceptionB",
            Block::ReductionB => "ReductionB",
            Block::InceptionC => "InceptionC",
        }
    }

    fn branches(self) -> Vec<BranchSpec> {
        match self {
            Block::Mixed3a => vec![max_pool(), convs(vec![valid("conv", 96, 3, 2)])],
            Block::Mixed4a => vec![
                convs(vec![same("branch0.0", 64, 1, 1), valid("branch0.1", 96, 3, 1)]),
                convs(vec![
                    same("branch1.0", 64, 1, 1),
                    same("branch1.1", 64, 1, 7),
                    same("branch1.2", 64, 7, 1),
                    valid("branch1.3", 96, 3, 1),
                ]),
            ],
            Block::Mixed5a => vec![convs(vec![valid("conv", 192, 3, 2)]), max_pool()],
            Block::InceptionA => vec![
                convs(vec![same("branch0", 96, 1, 1)]),
                convs(vec![same("branch1.0", 64, 1, 1), same("branch1.1", 96, 3, 3)]),
                convs(vec![same("branch2.0", 64, 1, 1), same("branch2.1", 96, 3, 3), same("branch2.2", 96, 3, 3)]),
                pooled(vec![same("branch3.1", 96, 1, 1)]),
            ],
            Block::ReductionA => vec![
                convs(vec![valid("branch0", 384, 3, 2)]),
                convs(vec![same("branch1.0", 192, 1, 1), same("branch1.1", 224, 3, 3), valid("branch1.2", 256, 3, 2)]),
                max_pool(),
            ],
            Block::InceptionB => vec![
                convs(vec![same("branch0", 384, 1, 1)]),
                convs(vec![same("branch1.0", 192, 1, 1), same("branch1.1", 224, 1, 7), same("branch1.2", 256, 7, 1)]),
                convs(vec![
                    same("branch2.0", 192, 1, 1),
                    same("branch2.1", 192, 7, 1),
                    same("branch2.2", 224, 1, 7),
                    same("branch2.3", 224, 7, 1),
                    same("branch2.4", 256, 1, 7),
                ]),
                pooled(vec![same("branch3.1", 128, 1, 1)]),
            ],
            Block::ReductionB => vec![
                convs(vec![same("branch0.0", 192, 1, 1), valid("branch0.1", 192, 3, 2)]),
                convs(vec![
                    same("branch1.0", 256, 1, 1),
                    same("branch1.1", 256, 1, 7),
                    same("branch1.2", 320, 7, 1),
                    valid("branch1.3", 320, 3, 2),
                ]),
                max_pool(),
            ],
            Block::InceptionC => vec![
                convs(vec![same("branch0", 256, 1, 1)]),
                split(
                    vec![same("branch1_0", 384, 1, 1)],
                    vec![same("branch1_1a", 256, 1, 3), same("branch1_1b", 256, 3, 1)],
                ),
                split(
                    vec![same("branch2_0", 384, 1, 1), same("branch2_1", 448, 3, 1), same("branch2_2", 512, 1, 3)],
                    vec![same("branch2_3a", 256, 1, 3), same("branch2_3b", 256, 3, 1)],
                ),
                pooled(vec![same("branch3.1", 256, 1, 1)]),
            ],
        }
    }
}

/// The stem's three plain convolutions (`features.0`-`features.2`).
const STEM: [ConvSpec; 3] = [valid("0", 32, 3, 2), valid("1", 32, 3, 1), same("2", 64, 3, 3)];

/// The blocks after the stem convolutions and how many times each repeats (the paper's Figure 9).
pub const BLOCKS: [(Block, usize); 8] = [
    (Block::Mixed3a, 1),
    (Block::Mixed4a, 1),
    (Block::Mixed5a, 1),
    (Block::InceptionA, 4),
    (Block::ReductionA, 1),
    (Block::InceptionB, 7),
    (Block::ReductionB, 1),
    (Block::InceptionC, 3),
];

/// Width of the last block, the classifier's input.
const NUM_FEATURES: i64 = 1536;

/// Inception v4 on timm's layout.
pub fn inception_v4(p: &nn::Path, build: &BuildConfig) -> InceptionNet {
    let fp = p / "features";
    let mut features = Sequential::new(&fp);
    let mut width = 3;
    for spec in STEM {
        features.push(conv_unit(&fp, width, spec));
        width = spec.out;
    }
    for (block, count) in BLOCKS {
        for _ in 0..count {
            let mixed = Mixed::new(&(&fp / features.len()), width, block.name(), &block.branches());
            width = mixed.out_channels();
            features.push(mixed);
        }
    }
    debug_assert_eq!((features.len(), width), (22, NUM_FEATURES));
    // timm's feature_info: the last module at each stride.
    let info = vec![
        FeatureInfo::new("features.2", 64, 2),
        FeatureInfo::new("features.3", 160, 4),
        FeatureInfo::new("features.9", 384, 8),
        FeatureInfo::new("features.17", 1024, 16),
        FeatureInfo::new("features.21", NUM_FEATURES, 32),
    ];
    let head = HeadSpec { pool: "global_pool", drop_rate: 0.0, fc: "last_linear" };
    InceptionNet::new(p, build, vec![Box::new(features)], Vec::new(), NUM_FEATURES, head, info)
}

/// The registry's builder.
pub fn build(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(inception_v4(p, b))
}

/// The paper, as listings cite it (Inception-ResNet's too).
pub const PAPER: &str =
    "Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning, AAAI 2017";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![row("inception_v4", "Inception v4", PAPER, "last_linear.", 299, 75, build)]
}
