//! Inception v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
//! CVPR 2016, arXiv:1512.00567): factorised convolutions (n×1 after 1×n), grid reductions by
//! parallel stride-2 branches, and one auxiliary classifier on the 17×17 grid.
//!
//! Layout and variable paths follow torchvision's `inception.py` (`Conv2d_1a_3x3` ...
//! `Mixed_7c`, `AuxLogits`, `fc`), so its checkpoint (a port of Google's TensorFlow weights)
//! loads unchanged. As in torchvision's pretrained model, the auxiliary head is built (its
//! parameters count: 27.2M in all) and runs in train mode only, and `transform_input` is on.
//! Default input 299×299; the smallest that goes through is 75×75 (in train mode the auxiliary
//! head needs about 299).
use super::googlenet::transform_input;
use super::inception::{
    convs, max_pool, pooled_counting_pad, same, split, valid, AuxPool, AuxSpec, BranchSpec, InceptionAux, Mixed,
};
use super::registry::{row, ModelSpec};
use super::{ArchOptions, BuildConfig, Classifier, FeatureInfo};
use crate::nn::basic_conv;
use crate::nn::{AdaptiveAvgPool2d, ConvOpts, Head, LinearHead, ModuleT, Pool2d};
use tch::{nn, Tensor};

/// The five block types of torchvision's file, as branch tables (Inception v4's builders: every
/// convolution is "same" at stride 1 and unpadded at stride 2, as torchvision's file pads them).
/// Branch order is the order of the concatenation.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// InceptionA (35×35 grid): pool projection width.
    A(i64),
    /// InceptionB: reduction 35→17.
    B,
    /// InceptionC (17×17 grid, 7×7 factorised): width of the 7×7 branches.
    C(i64),
    /// InceptionD: reduction 17→8.
    D,
    /// InceptionE (8×8 grid, expanded 3×3 splits).
    E,
}

impl Block {
    fn name(self) -> &'static str {
        match self {
            Block::A(_) => "InceptionA",
            Block::B => "InceptionB",
            Block::C(_) => "InceptionC",
            Block::D => "InceptionD",
            Block::E => "InceptionE",
        }
    }

    fn branches(self) -> Vec<BranchSpec> {
        // torchvision's average pools count the padding (PyTorch's default).
        let pool = pooled_counting_pad;
        let max = max_pool();
        match self {
            Block::A(pool_features) => vec![
                convs(vec![same("branch1x1", 64, 1, 1)]),
                convs(vec![same("branch5x5_1", 48, 1, 1), same("branch5x5_2", 64, 5, 5)]),
                convs(vec![
                    same("branch3x3dbl_1", 64, 1, 1),
                    same("branch3x3dbl_2", 96, 3, 3),
                    same("branch3x3dbl_3", 96, 3, 3),
                ]),
                pool(vec![same("branch_pool", pool_features, 1, 1)]),
            ],
            Block::B => vec![
                convs(vec![valid("branch3x3", 384, 3, 2)]),
                convs(vec![
                    same("branch3x3dbl_1", 64, 1, 1),
                    same("branch3x3dbl_2", 96, 3, 3),
                    valid("branch3x3dbl_3", 96, 3, 2),
                ]),
                max,
            ],
            Block::C(c7) => vec![
                convs(vec![same("branch1x1", 192, 1, 1)]),
                convs(vec![
                    same("branch7x7_1", c7, 1, 1),
                    same("branch7x7_2", c7, 1, 7),
                    same("branch7x7_3", 192, 7, 1),
                ]),
                convs(vec![
                    same("branch7x7dbl_1", c7, 1, 1),
                    same("branch7x7dbl_2", c7, 7, 1),
                    same("branch7x7dbl_3", c7, 1, 7),
                    same("branch7x7dbl_4", c7, 7, 1),
                    same("branch7x7dbl_5", 192, 1, 7),
                ]),
                pool(vec![same("branch_pool", 192, 1, 1)]),
            ],
            Block::D => vec![
                convs(vec![same("branch3x3_1", 192, 1, 1), valid("branch3x3_2", 320, 3, 2)]),
                convs(vec![
                    same("branch7x7x3_1", 192, 1, 1),
                    same("branch7x7x3_2", 192, 1, 7),
                    same("branch7x7x3_3", 192, 7, 1),
                    valid("branch7x7x3_4", 192, 3, 2),
                ]),
                max,
            ],
            Block::E => vec![
                convs(vec![same("branch1x1", 320, 1, 1)]),
                split(
                    vec![same("branch3x3_1", 384, 1, 1)],
                    vec![same("branch3x3_2a", 384, 1, 3), same("branch3x3_2b", 384, 3, 1)],
                ),
                split(
                    vec![same("branch3x3dbl_1", 448, 1, 1), same("branch3x3dbl_2", 384, 3, 3)],
                    vec![same("branch3x3dbl_3a", 384, 1, 3), same("branch3x3dbl_3b", 384, 3, 1)],
                ),
                pool(vec![same("branch_pool", 192, 1, 1)]),
            ],
        }
    }
}

/// One step of the network, in order.
enum Step {
    /// `BasicConv2d`: in, out, kernel, stride, padding.
    Conv(i64, i64, i64, i64, i64),
    /// 3×3 max pool, stride 2.
    MaxPool,
    /// A mixed block and its input width.
    Mixed(i64, Block),
}

/// The network as data, with torchvision's module names (the paper's Table 1 and Figures 5-7).
#[rustfmt::skip]
const STEPS: [(&str, Step); 18] = [
    ("Conv2d_1a_3x3", Step::Conv(3, 32, 3, 2, 0)),
    ("Conv2d_2a_3x3", Step::Conv(32, 32, 3, 1, 0)),
    ("Conv2d_2b_3x3", Step::Conv(32, 64, 3, 1, 1)),
    ("maxpool1", Step::MaxPool),
    ("Conv2d_3b_1x1", Step::Conv(64, 80, 1, 1, 0)),
    ("Conv2d_4a_3x3", Step::Conv(80, 192, 3, 1, 0)),
    ("maxpool2", Step::MaxPool),
    ("Mixed_5b", Step::Mixed(192, Block::A(32))),
    ("Mixed_5c", Step::Mixed(256, Block::A(64))),
    ("Mixed_5d", Step::Mixed(288, Block::A(64))),
    ("Mixed_6a", Step::Mixed(288, Block::B)),
    ("Mixed_6b", Step::Mixed(768, Block::C(128))),
    ("Mixed_6c", Step::Mixed(768, Block::C(160))),
    ("Mixed_6d", Step::Mixed(768, Block::C(160))),
    ("Mixed_6e", Step::Mixed(768, Block::C(192))),
    ("Mixed_7a", Step::Mixed(768, Block::D)),
    ("Mixed_7b", Step::Mixed(1280, Block::E)),
    ("Mixed_7c", Step::Mixed(2048, Block::E)),
];

/// The module the auxiliary head follows, and its input width.
const AUX_AFTER: (&str, i64) = ("Mixed_6e", 768);

/// Width of `Mixed_7c`, the classifier's input.
const NUM_FEATURES: i64 = 2048;

/// The auxiliary classifier: 5×5/3 average pool, 1×1 conv to 128, 5×5 conv to 768, global
/// pool, FC.
const AUX_HEAD: AuxSpec = AuxSpec {
    pool: AuxPool::Avg(5, 3),
    convs: &[("conv0", 128, 1), ("conv1", 768, 5)],
    global_pool: true,
    hidden: None,
    fc: ("fc", 768),
};

/// Inception v3.
#[derive(Debug)]
pub struct InceptionV3 {
    transform_input: bool,
    body: Vec<(&'static str, Box<dyn ModuleT>)>,
    aux: Option<InceptionAux>,
    avgpool: AdaptiveAvgPool2d,
    fc: LinearHead,
}

impl InceptionV3 {
    /// With `aux_logits`, builds `AuxLogits` (torchvision's default and its checkpoint's layout);
    /// with `transform_input`, re-normalises ImageNet-normalised input as the checkpoint expects.
    /// `build.drop_rate` overrides the dropout of 0.5 before `fc`.
    pub fn new(p: &nn::Path, build: &BuildConfig, aux_logits: bool, transform_input: bool) -> Self {
        // The table states each block's input width as torchvision's constructor calls do;
        // `width` follows the real widths to catch a wrong row.
        let mut width = 3;
        let body = STEPS
            .iter()
            .map(|(name, step)| {
                let sp = p / *name;
                let layer: Box<dyn ModuleT> = match *step {
                    Step::Conv(cin, cout, k, s, pad) => {
                        debug_assert_eq!(cin, width, "{name}");
                        width = cout;
                        Box::new(basic_conv(&sp, cin, cout, k, ConvOpts::default().stride(s).padding(pad)))
                    }
                    Step::MaxPool => Box::new(Pool2d::max(&sp, 3, 2)),
                    Step::Mixed(cin, block) => {
                        debug_assert_eq!(cin, width, "{name}");
                        let mixed = Mixed::new(&sp, cin, block.name(), &block.branches());
                        width = mixed.out_channels();
                        Box::new(mixed)
                    }
                };
                (*name, layer)
            })
            .collect();
        debug_assert_eq!(width, NUM_FEATURES);
        InceptionV3 {
            transform_input,
            body,
            aux: aux_logits.then(|| InceptionAux::new(p, "AuxLogits", AUX_AFTER.1, AUX_HEAD, build.num_classes, 0.0)),
            avgpool: AdaptiveAvgPool2d::new(&(p / "avgpool"), 1),
            fc: LinearHead::new(p, "fc", NUM_FEATURES, build.num_classes, build.drop_rate.unwrap_or(0.5)),
        }
    }

    /// `Mixed_7c`'s map and, when `with_aux` and the head exists, its output.
    fn run(&self, xs: &Tensor, train: bool, with_aux: bool) -> (Tensor, Vec<Tensor>) {
        let mut xs = if self.transform_input { transform_input(xs) } else { xs.shallow_clone() };
        let mut aux_out = Vec::new();
        for (name, layer) in &self.body {
            xs = layer.forward_t(&xs, train);
            if let (true, Some(aux), true) = (with_aux, &self.aux, *name == AUX_AFTER.0) {
                aux_out.push(aux.forward_t(&xs, train));
            }
        }
        (xs, aux_out)
    }
}

classifier_module!(InceptionV3);

impl Classifier for InceptionV3 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, false).0
    }

    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.fc.forward(self.avgpool.forward_t(xs, train).flatten(1, -1), train, pre_logits)
    }

    /// In train mode: logits and `[AuxLogits]`. In eval mode the head does not run.
    fn forward_aux(&self, xs: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let (feats, aux) = self.run(xs, train, train);
        (self.forward_head(&feats, train, false), aux)
    }

    fn num_features(&self) -> i64 {
        NUM_FEATURES
    }

    fn head(&self) -> &dyn Head {
        &self.fc
    }

    fn head_mut(&mut self) -> &mut dyn Head {
        &mut self.fc
    }

    /// Replaces `fc` and the auxiliary head's `fc`, which classify the same classes.
    fn reset_classifier(&mut self, root: &nn::Path, num_classes: i64) {
        self.fc.reset(root, num_classes);
        if let Some(aux) = &mut self.aux {
            aux.fc.reset(root, num_classes);
        }
    }

    fn classifier_prefixes(&self) -> Vec<String> {
        let aux = self.aux.iter().flat_map(|a| a.fc.prefixes());
        self.fc.prefixes().into_iter().chain(aux).collect()
    }

    /// timm's stages for this network: the last module at each stride.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![
            FeatureInfo::new("Conv2d_2b_3x3", 64, 2),
            FeatureInfo::new("Conv2d_4a_3x3", 192, 4),
            FeatureInfo::new("Mixed_5d", 288, 8),
            FeatureInfo::new("Mixed_6e", 768, 16),
            FeatureInfo::new("Mixed_7c", NUM_FEATURES, 32),
        ]
    }
}

/// The registry's builder: torchvision's pretrained configuration (auxiliary head, input
/// transform).
pub fn build(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    build_with(p, b, ArchOptions::default())
}

/// The builder with options: unset ones are the pretrained configuration's (auxiliary head
/// and `transform_input` on).
pub fn build_with(p: &nn::Path, b: &BuildConfig, o: ArchOptions) -> Box<dyn Classifier> {
    Box::new(InceptionV3::new(p, b, o.aux_logits.unwrap_or(true), o.transform_input.unwrap_or(true)))
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![ModelSpec {
        build_with: Some(build_with),
        aux_weight: 0.4,
        ..row("inception_v3", "Inception", PAPER, "fc.", 299, 75, build)
    }]
}
