//! BN-Inception, a.k.a. Inception v2 (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep
//! Network Training by Reducing Internal Covariate Shift", ICML 2015, arXiv:1502.03167): GoogLeNet
//! with batch normalisation after every convolution, the 5×5 convolutions replaced by two 3×3,
//! and stride-2 Inception modules (3c, 4e) instead of the max pools between stages.
//!
//! Layout follows Cadene's `pretrainedmodels/models/bninception.py` (pretrainedmodels 0.7.4, a
//! port of the Caffe model whose checkpoint is the public one): every module sits at the root
//! under its Caffe layer name (`conv1_7x7_s2`, `conv1_7x7_s2_bn`, `inception_3a_1x1`,
//! `inception_3a_double_3x3_reduce_bn`, ...), convolutions carry a bias, batch norms use eps 1e-5,
//! pools round up (`ceil_mode`), and the classifier is `last_linear`. Blocks and stages are tapped
//! by the Caffe name of their concatenation (`inception_3b_output`).
//!
//! The checkpoint expects BGR input in the 0-255 range minus the mean (104, 117, 128), std 1: that
//! preprocessing belongs to the weights (the manifest), not to the network.
//!
//! Input sizes: Cadene's final pool is a fixed 7×7 average (224×224 input); zoo pools globally,
//! the same at 224. The ceil-mode pools of the two stride-2 modules give maps that match the
//! stride-2 convolutions beside them only for even sizes, so the network (Caffe's as much as
//! Cadene's) accepts sides of 31 to 38 modulo 32 (31, 63-70, ..., 223-230, 255-262, ...; 299 does
//! not go through) and stops with a message naming the module otherwise. The smallest is 31.
use super::inception::{HeadSpec, InceptionNet};
use super::registry::{row, ModelSpec};
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{Act, Activation, BatchNorm2d, Conv2d, ConvOpts, ModuleT, Pool2d};
use tch::{nn, Tensor};

/// Convolution (with bias), batch norm (`<name>_bn`, eps 1e-5) and ReLU, all at the root as
/// Caffe named them; each part reports itself, as Cadene's modules do.
#[derive(Debug)]
struct Unit {
    conv: Conv2d,
    bn: BatchNorm2d,
    relu: Activation,
}

impl Unit {
    fn new(p: &nn::Path, name: &str, relu: &str, cin: i64, cout: i64, kernel: i64, stride: i64) -> Self {
        let opts = ConvOpts::default().stride(stride).padding(kernel / 2);
        Unit {
            conv: Conv2d::new(&(p / name), cin, cout, kernel, opts),
            bn: BatchNorm2d::with_eps(&(p / format!("{name}_bn")), cout, 1e-5),
            relu: Activation::inplace(&(p / relu), Act::Relu),
        }
    }
}

impl ModuleT for Unit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.relu.forward_t(&self.bn.forward_t(&self.conv.forward_t(xs, train), train), train)
    }
}

/// The pool branch of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// 3×3 average, stride 1, padding 1 (counting it), then the `pool_proj` 1×1 unit.
    Avg,
    /// 3×3 max, stride 1, padding 1, then `pool_proj` (module 5b, as in Caffe's model).
    Max,
    /// 3×3 max, stride 2, no projection: the stride-2 modules.
    MaxReduce,
}

/// One Inception module of the paper's Figure 5 table: widths of the 1×1 branch (0: none), the
/// 3×3 branch (reduce, conv), the double-3×3 branch (reduce, conv, conv), the pool projection
/// (0: none), and the stride of the 3×3 convolutions that end the branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub c1x1: i64,
    pub c3x3_reduce: i64,
    pub c3x3: i64,
    pub double_reduce: i64,
    pub double: i64,
    pub pool: PoolKind,
    pub pool_proj: i64,
    pub stride: i64,
}

#[rustfmt::skip]
#[allow(clippy::too_many_arguments)]
const fn m(name: &'static str, c1x1: i64, c3x3_reduce: i64, c3x3: i64, double_reduce: i64, double: i64, pool: PoolKind, pool_proj: i64) -> ModuleSpec {
    let stride = if matches!(pool, PoolKind::MaxReduce) { 2 } else { 1 };
    ModuleSpec { name, c1x1, c3x3_reduce, c3x3, double_reduce, double, pool, pool_proj, stride }
}

/// The ten modules, in order (Caffe's widths, which Cadene's file and checkpoint have).
#[rustfmt::skip]
pub const MODULES: [ModuleSpec; 10] = [
    m("inception_3a", 64, 64, 64, 64, 96, PoolKind::Avg, 32),
    m("inception_3b", 64, 64, 96, 64, 96, PoolKind::Avg, 64),
    m("inception_3c", 0, 128, 160, 64, 96, PoolKind::MaxReduce, 0),
    m("inception_4a", 224, 64, 96, 96, 128, PoolKind::Avg, 128),
    m("inception_4b", 192, 96, 128, 96, 128, PoolKind::Avg, 128),
    m("inception_4c", 160, 128, 160, 128, 160, PoolKind::Avg, 128),
    m("inception_4d", 96, 128, 192, 160, 192, PoolKind::Avg, 128),
    m("inception_4e", 0, 128, 192, 192, 256, PoolKind::MaxReduce, 0),
    m("inception_5a", 352, 192, 320, 160, 224, PoolKind::Avg, 128),
    m("inception_5b", 352, 192, 320, 192, 224, PoolKind::Max, 128),
];

/// A built Inception module.
#[derive(Debug)]
struct Module {
    path: String,
    branches: Vec<Vec<Box<dyn ModuleT>>>,
    out_channels: i64,
}

impl Module {
    fn new(p: &nn::Path, cin: i64, spec: &ModuleSpec) -> Self {
        let n = spec.name;
        let unit = |suffix: &str, cin: i64, cout: i64, kernel: i64, stride: i64| -> Box<dyn ModuleT> {
            Box::new(Unit::new(p, &format!("{n}_{suffix}"), &format!("{n}_relu_{suffix}"), cin, cout, kernel, stride))
        };
        let mut branches = Vec::new();
        if spec.c1x1 > 0 {
            branches.push(vec![unit("1x1", cin, spec.c1x1, 1, 1)]);
        }
        branches.push(vec![
            unit("3x3_reduce", cin, spec.c3x3_reduce, 1, 1),
            unit("3x3", spec.c3x3_reduce, spec.c3x3, 3, spec.stride),
        ]);
        branches.push(vec![
            unit("double_3x3_reduce", cin, spec.double_reduce, 1, 1),
            unit("double_3x3_1", spec.double_reduce, spec.double, 3, 1),
            unit("double_3x3_2", spec.double, spec.double, 3, spec.stride),
        ]);
        let pp = p / format!("{n}_pool");
        let pool = match spec.pool {
            PoolKind::Avg => Pool2d::avg(&pp, 3, 1).padding(1),
            PoolKind::Max => Pool2d::max(&pp, 3, 1).padding(1),
            PoolKind::MaxReduce => Pool2d::max(&pp, 3, 2),
        };
        let mut pool_branch: Vec<Box<dyn ModuleT>> = vec![Box::new(pool.ceil_mode(true))];
        if spec.pool_proj > 0 {
            pool_branch.push(unit("pool_proj", cin, spec.pool_proj, 1, 1));
        }
        branches.push(pool_branch);
        let pool_width = if spec.pool_proj > 0 { spec.pool_proj } else { cin };
        let out_channels = spec.c1x1 + spec.c3x3 + spec.double + pool_width;
        Module { path: format!("{n}_output"), branches, out_channels }
    }
}

impl ModuleT for Module {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("InceptionModule"),
            xs,
            |xs| {
                let outs: Vec<Tensor> = self
                    .branches
                    .iter()
                    .map(|b| b.iter().fold(xs.shallow_clone(), |acc, l| l.forward_t(&acc, train)))
                    .collect();
                let sizes: Vec<Vec<i64>> = outs.iter().map(|t| t.size()[2..].to_vec()).collect();
                if sizes.iter().any(|s| *s != sizes[0]) {
                    let [h, w] = [xs.size()[2], xs.size()[3]];
                    panic!(
                        "bninception: {} gets a {h}x{w} map and its branches come out as {sizes:?}: its ceil-mode \
                         pool fits the stride-2 convolutions on even sizes only; use an input side of 31-38 \
                         modulo 32 (e.g. 224)",
                        self.path
                    );
                }
                Tensor::cat(&outs, 1)
            },
        )
    }
}

/// What the registry tells a user whose input side [`side_fits`] refuses.
pub const SIDE_RULE: &str = "its ceil-mode pools fit the stride-2 convolutions beside them only when the side is \
     31 to 38 modulo 32 (e.g. 224 or 256)";

/// Whether an input side goes through every Inception module (both branches of each
/// stride-2 module come out the same size).
pub fn side_fits(side: i64) -> bool {
    (side - 31).rem_euclid(32) <= 7
}

/// BN-Inception on Cadene's layout.
pub fn bninception(p: &nn::Path, build: &BuildConfig) -> InceptionNet {
    let mut body: Vec<Box<dyn ModuleT>> = vec![
        Box::new(Unit::new(p, "conv1_7x7_s2", "conv1_relu_7x7", 3, 64, 7, 2)),
        Box::new(Pool2d::max(&(p / "pool1_3x3_s2"), 3, 2).ceil_mode(true)),
        Box::new(Unit::new(p, "conv2_3x3_reduce", "conv2_relu_3x3_reduce", 64, 64, 1, 1)),
        Box::new(Unit::new(p, "conv2_3x3", "conv2_relu_3x3", 64, 192, 3, 1)),
        Box::new(Pool2d::max(&(p / "pool2_3x3_s2"), 3, 2).ceil_mode(true)),
    ];
    let mut width = 192;
    for spec in &MODULES {
        let module = Module::new(p, width, spec);
        width = module.out_channels;
        body.push(Box::new(module));
    }
    debug_assert_eq!(width, 1024);
    let info = vec![
        FeatureInfo::new("conv1_relu_7x7", 64, 2),
        FeatureInfo::new("conv2_relu_3x3", 192, 4),
        FeatureInfo::new("inception_3b_output", 320, 8),
        FeatureInfo::new("inception_4d_output", 608, 16),
        FeatureInfo::new("inception_5b_output", 1024, 32),
    ];
    let head = HeadSpec { pool: "global_pool", drop_rate: 0.0, fc: "last_linear" };
    InceptionNet::new(p, build, body, Vec::new(), width, head, info)
}

/// The registry's builder.
pub fn build(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    Box::new(bninception(p, b))
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift, ICML 2015";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![ModelSpec {
        side_rule: Some((side_fits, SIDE_RULE)),
        ..row("bninception", "BN-Inception", PAPER, "last_linear.", 224, 31, build)
    }]
}
