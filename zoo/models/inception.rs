//! What the Inception line shares (GoogLeNet's successors: Inception v3, v4, Inception-ResNet
//! v1/v2, BN-Inception): branch tables (`BranchSpec`) of convolution units (`ConvSpec`), the
//! block that runs them side by side and concatenates (`Mixed`), and [`InceptionNet`], the
//! body-plus-head classifier Inception v4, Inception-ResNet v1/v2 and BN-Inception are built on.
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace::{self, Op};
use crate::nn::{at, basic_conv, path_of, AdaptiveAvgPool2d, ConvBnAct, ConvOpts, HeadLinear, Linear, ModuleT};
use tch::{nn, Tensor};

/// One convolution unit of a branch (convolution, batch norm, ReLU): its path relative to the
/// block, output channels, kernel [h, w], stride and padding [h, w].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub name: &'static str,
    pub out: i64,
    pub kernel: [i64; 2],
    pub stride: i64,
    pub padding: [i64; 2],
}

/// Stride 1 with "same" padding (kernel / 2): every unstrided padded convolution of the line,
/// the factorised 1×n and n×1 ones included.
pub(crate) const fn same(name: &'static str, out: i64, kh: i64, kw: i64) -> ConvSpec {
    ConvSpec { name, out, kernel: [kh, kw], stride: 1, padding: [kh / 2, kw / 2] }
}

/// A square convolution without padding (TensorFlow's "VALID"): the stems and grid reductions.
pub(crate) const fn valid(name: &'static str, out: i64, k: i64, stride: i64) -> ConvSpec {
    ConvSpec { name, out, kernel: [k, k], stride, padding: [0, 0] }
}

/// Builds a conv unit as timm's `ConvNormAct` / Cadene's `BasicConv2d` / pytorchcv's
/// `ConvBlock` with eps 1e-3: children `conv` (no bias) and `bn`, then ReLU.
pub(crate) fn conv_unit(p: &nn::Path, cin: i64, spec: ConvSpec) -> ConvBnAct {
    let opts = ConvOpts::default().stride(spec.stride).padding(spec.padding);
    basic_conv(&at(p, spec.name), cin, spec.out, spec.kernel, opts)
}

/// The parameter-free operation a branch starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchPool {
    None,
    /// 3×3 average pool, stride 1, padding 1, not counting the padding (`count_include_pad=False`).
    Avg,
    /// The same, counting the padding (PyTorch's default, which torchvision's Inception v3 keeps).
    AvgCountingPad,
    /// 3×3 max pool, stride 2, no padding: the pool-only branch of a grid reduction.
    Max,
}

/// One branch of a block: a pool, a chain of conv units, and optionally final units applied to
/// the chain's output side by side and concatenated (Inception-C's 1×3 / 3×1 split).
#[derive(Debug, Clone)]
pub(crate) struct BranchSpec {
    pub pool: BranchPool,
    pub chain: Vec<ConvSpec>,
    pub split: Vec<ConvSpec>,
}

/// A chain of conv units.
pub(crate) fn convs(chain: Vec<ConvSpec>) -> BranchSpec {
    BranchSpec { pool: BranchPool::None, chain, split: Vec::new() }
}

/// Average pool, then a chain of conv units.
pub(crate) fn pooled(chain: Vec<ConvSpec>) -> BranchSpec {
    BranchSpec { pool: BranchPool::Avg, chain, split: Vec::new() }
}

/// Average pool counting the padding, then a chain of conv units.
pub(crate) fn pooled_counting_pad(chain: Vec<ConvSpec>) -> BranchSpec {
    BranchSpec { pool: BranchPool::AvgCountingPad, chain, split: Vec::new() }
}

/// The 3×3 stride-2 max pool alone.
pub(crate) fn max_pool() -> BranchSpec {
    BranchSpec { pool: BranchPool::Max, chain: Vec::new(), split: Vec::new() }
}

/// A chain, then two units side by side on its output.
pub(crate) fn split(chain: Vec<ConvSpec>, split: Vec<ConvSpec>) -> BranchSpec {
    BranchSpec { pool: BranchPool::None, chain, split }
}

/// A built branch.
#[derive(Debug)]
struct Branch {
    pool: BranchPool,
    chain: Vec<ConvBnAct>,
    split: Vec<ConvBnAct>,
}

impl Branch {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = match self.pool {
            BranchPool::None => xs.shallow_clone(),
            BranchPool::Avg => xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None),
            BranchPool::AvgCountingPad => xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None),
            BranchPool::Max => xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false),
        };
        let ys = self.chain.iter().fold(xs, |acc, conv| conv.forward_t(&acc, train));
        if self.split.is_empty() {
            ys
        } else {
            Tensor::cat(&self.split.iter().map(|conv| conv.forward_t(&ys, train)).collect::<Vec<_>>(), 1)
        }
    }
}

/// Parallel branches whose outputs are concatenated along channels, in table order.
#[derive(Debug)]
pub(crate) struct Branches {
    branches: Vec<Branch>,
    /// Channels of the concatenation.
    pub out_channels: i64,
}

impl Branches {
    /// Builds `specs` under `p` on a `cin`-channel input.
    pub(crate) fn new(p: &nn::Path, cin: i64, specs: &[BranchSpec]) -> Self {
        let mut out_channels = 0;
        let branches = specs
            .iter()
            .map(|spec| {
                let mut width = cin;
                let chain: Vec<ConvBnAct> = spec
                    .chain
                    .iter()
                    .map(|&conv| {
                        let built = conv_unit(p, width, conv);
                        width = conv.out;
                        built
                    })
                    .collect();
                let split: Vec<ConvBnAct> = spec.split.iter().map(|&conv| conv_unit(p, width, conv)).collect();
                if !split.is_empty() {
                    width = spec.split.iter().map(|conv| conv.out).sum();
                }
                out_channels += width;
                Branch { pool: spec.pool, chain, split }
            })
            .collect();
        Branches { branches, out_channels }
    }

    pub(crate) fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Tensor::cat(&self.branches.iter().map(|b| b.forward_t(xs, train)).collect::<Vec<_>>(), 1)
    }
}

/// A mixed (Inception) block: its branches, concatenated.
#[derive(Debug)]
pub(crate) struct Mixed {
    path: String,
    kind: &'static str,
    branches: Branches,
}

impl Mixed {
    /// A block named `kind` (its reference class name, for summaries) under `p`.
    pub(crate) fn new(p: &nn::Path, cin: i64, kind: &'static str, specs: &[BranchSpec]) -> Self {
        Mixed { path: path_of(p), kind, branches: Branches::new(p, cin, specs) }
    }

    pub(crate) fn out_channels(&self) -> i64 {
        self.branches.out_channels
    }
}

impl ModuleT for Mixed {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(&self.path, || Op::Container(self.kind), xs, |xs| self.branches.forward_t(xs, train))
    }
}

/// How an auxiliary classifier first shrinks its input map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AuxPool {
    /// Average pooling to a fixed grid (GoogLeNet: 4×4).
    Adaptive(i64),
    /// Average pooling with a kernel and stride (Inception v3: 5×5, stride 3).
    Avg(i64, i64),
}

/// The layout of an auxiliary classifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AuxSpec {
    pub pool: AuxPool,
    /// Convolution units (conv, batch norm, ReLU) after the pool: name, output width, kernel.
    pub convs: &'static [(&'static str, i64, i64)],
    /// Global average pooling after the convolutions (Inception v3); otherwise the map is
    /// flattened (GoogLeNet's 128×4×4 = 2048).
    pub global_pool: bool,
    /// A hidden fully connected layer, with ReLU and dropout after it: name, in and out widths
    /// (GoogLeNet's `fc1`, 2048 → 1024).
    pub hidden: Option<(&'static str, i64, i64)>,
    /// Name of the classifier layer (`fc2`, `fc`) and its input width.
    pub fc: (&'static str, i64),
}

/// An auxiliary classifier on an intermediate map, as GoogLeNet (`aux1`, `aux2`) and Inception
/// v3 (`AuxLogits`) build them: see [`AuxSpec`]. Its classifier is a [`HeadLinear`], reset with
/// the main one.
#[derive(Debug)]
pub(crate) struct InceptionAux {
    path: String,
    spec: AuxSpec,
    convs: Vec<ConvBnAct>,
    hidden: Option<Linear>,
    /// Dropout after the hidden layer, in training.
    dropout: f64,
    /// Without a layer (0 classes) the head returns the features it would classify.
    pub fc: HeadLinear,
}

impl InceptionAux {
    /// The head `name` under the model root `root`, on a `cin`-wide map.
    pub(crate) fn new(root: &nn::Path, name: &str, cin: i64, spec: AuxSpec, num_classes: i64, dropout: f64) -> Self {
        let p = root / name;
        let mut width = cin;
        let convs = spec
            .convs
            .iter()
            .map(|&(conv, out, k)| {
                let unit = basic_conv(&(&p / conv), width, out, k, ConvOpts::default());
                width = out;
                unit
            })
            .collect();
        let hidden = spec.hidden.map(|(fc1, cin, out)| Linear::new(&(&p / fc1), cin, out));
        let fc = HeadLinear::new(root, &format!("{name}.{}", spec.fc.0), spec.fc.1, num_classes);
        InceptionAux { path: path_of(&p), spec, convs, hidden, dropout, fc }
    }
}

impl ModuleT for InceptionAux {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("InceptionAux"),
            xs,
            |xs| {
                let ys = match self.spec.pool {
                    AuxPool::Adaptive(side) => xs.adaptive_avg_pool2d([side, side]),
                    AuxPool::Avg(k, s) => xs.avg_pool2d([k, k], [s, s], [0, 0], false, true, None),
                };
                let ys = self.convs.iter().fold(ys, |ys, c| c.forward_t(&ys, train));
                let ys =
                    if self.spec.global_pool { ys.mean_dim(&[-2i64, -1][..], false, None) } else { ys.flatten(1, -1) };
                let ys = match &self.hidden {
                    Some(fc1) => {
                        let ys = fc1.forward_t(&ys, train).relu();
                        if train && self.dropout > 0.0 {
                            ys.dropout(self.dropout, true)
                        } else {
                            ys
                        }
                    }
                    None => ys,
                };
                self.fc.forward(ys, train)
            },
        )
    }
}

/// Where the head's parts live and what it does by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HeadSpec {
    /// Path of the global average pool (parameter-free; names it in summaries and taps).
    pub pool: &'static str,
    /// Dropout before the classifier when [`BuildConfig::drop_rate`] does not say.
    pub drop_rate: f64,
    /// Path of the classifier (`last_linear`, `classif`, `output.fc2`).
    pub fc: &'static str,
}

/// The Inception line's classifier: a body of layers run in order, then global average pooling,
/// dropout (train mode only), optional hidden layers (`hidden`, e.g. Inception-ResNet v1's
/// bias-free FC and batch norm) and the linear classifier.
#[derive(Debug)]
pub struct InceptionNet {
    body: Vec<Box<dyn ModuleT>>,
    pool: AdaptiveAvgPool2d,
    drop_rate: f64,
    hidden: Vec<Box<dyn ModuleT>>,
    fc: HeadLinear,
    num_features: i64,
    info: Vec<FeatureInfo>,
}

impl InceptionNet {
    /// Assembles a network whose body ends in `info`'s last stage and whose pre-logits features
    /// are `num_features` wide (the body's width, or the hidden layers' output).
    pub(crate) fn new(
        p: &nn::Path,
        build: &BuildConfig,
        body: Vec<Box<dyn ModuleT>>,
        hidden: Vec<Box<dyn ModuleT>>,
        num_features: i64,
        head: HeadSpec,
        info: Vec<FeatureInfo>,
    ) -> Self {
        InceptionNet {
            body,
            pool: AdaptiveAvgPool2d::new(&at(p, head.pool), 1),
            drop_rate: build.drop_rate.unwrap_or(head.drop_rate),
            hidden,
            fc: HeadLinear::new(p, head.fc, num_features, build.num_classes),
            num_features,
            info,
        }
    }
}

classifier_module!(InceptionNet);

impl Classifier for InceptionNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut it = self.body.iter();
        let Some(first) = it.next() else { return xs.shallow_clone() };
        it.fold(first.forward_t(xs, train), |acc, l| l.forward_t(&acc, train))
    }

    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = self.pool.forward_t(xs, train).flatten(1, -1);
        let xs = if train && self.drop_rate > 0.0 { xs.dropout(self.drop_rate, true) } else { xs };
        let xs = self.hidden.iter().fold(xs, |acc, l| l.forward_t(&acc, train));
        let xs = trace::point("pre_logits", xs);
        if pre_logits {
            return xs;
        }
        self.fc.forward(xs, train)
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
        self.info.clone()
    }
}
