//! The layers every zoo model is built from. Each holds the dotted path of its variables (the
//! checkpoint key prefix, e.g. `layer1.0.conv1`) and reports itself to [`super::trace`].
//!
//! Defaults follow PyTorch's modules (`nn.Conv2d`, `nn.BatchNorm2d` with eps 1e-5 and momentum
//! 0.1, `nn.Linear`), so a zoo model and its PyTorch reference agree bit for bit in layout.
use super::trace::{self, Op};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tch::nn::{self, Init};
use tch::Tensor;

/// Every zoo layer, block and model is a tch module: a forward pass where `train` switches
/// dropout and batch-norm statistics. So zoo's parts go into `tch::nn::seq_t()` and tch's into zoo.
pub use tch::nn::ModuleT;

/// The dotted checkpoint path of a var-store path (`layer1.0.conv1`).
pub fn path_of(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

thread_local! {
    static SKIP_INIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The batch norms built so far inside [`collect_batch_norms`] on this thread (construction
    /// only: a built model's batch norms hold their own modes).
    static BUILDING: std::cell::RefCell<Option<Vec<NamedMode>>> = const { std::cell::RefCell::new(None) };
}

/// A batch norm's dotted path and its mode.
type NamedMode = (String, Arc<BatchNormMode>);

/// A training-mode batch norm whose statistics span more than this process's batch
/// (`--sync-bn`, [`crate::dist::sync_batch_norm`]): `(input, weight, bias, running_mean,
/// running_var, momentum, eps)` to the output.
pub type SyncBatchNorm = fn(&Tensor, &Tensor, &Tensor, &Tensor, &Tensor, f64, f64) -> Tensor;

/// How one batch norm trains, held by the layer (shared with its model's
/// [`BatchNorms`] handle), so it holds on whatever thread the forward pass runs.
#[derive(Debug, Default)]
pub struct BatchNormMode {
    /// In eval mode even when the network trains: normalise with, and keep, the running
    /// statistics (a frozen stage of a fine-tune).
    frozen: AtomicBool,
    /// Momentum used instead of the layer's own (bits of an f64; NaN: the layer's own).
    momentum: AtomicU64,
    /// Training-mode normalisation through this instead of libtorch's (synchronised batch norm).
    sync: Mutex<Option<SyncBatchNorm>>,
}

impl BatchNormMode {
    fn new() -> Self {
        BatchNormMode {
            frozen: AtomicBool::new(false),
            momentum: AtomicU64::new(f64::NAN.to_bits()),
            sync: Mutex::new(None),
        }
    }

    fn momentum(&self) -> Option<f64> {
        Some(f64::from_bits(self.momentum.load(Ordering::Relaxed))).filter(|m| !m.is_nan())
    }
}

/// The batch norms of one model, by dotted path (`layer1.0.bn1`), whose modes a trainer sets:
/// frozen statistics, another momentum, synchronised statistics. Built by [`collect_batch_norms`]
/// around the model's construction ([`crate::models::Model`] does it).
#[derive(Debug, Clone, Default)]
pub struct BatchNorms(Vec<NamedMode>);

impl BatchNorms {
    /// The dotted paths, in construction order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(p, _)| p.as_str())
    }

    /// Puts the batch norms at `paths` in eval mode even when the network runs in train mode (they
    /// normalise with, and leave unchanged, their running statistics); every other one trains.
    pub fn freeze(&self, paths: &std::collections::HashSet<String>) {
        for (p, m) in &self.0 {
            m.frozen.store(paths.contains(p), Ordering::Relaxed);
        }
    }

    /// Every batch norm updates its running statistics with `momentum` instead of its own (e.g.
    /// 0.1 for TensorFlow ports whose 0.01 lags far behind the weights in a short fine-tuning
    /// run); `None` gives each its own back.
    pub fn set_momentum(&self, momentum: Option<f64>) {
        let bits = momentum.unwrap_or(f64::NAN).to_bits();
        for (_, m) in &self.0 {
            m.momentum.store(bits, Ordering::Relaxed);
        }
    }

    /// Every batch norm that trains (not frozen) normalises through `sync` instead of libtorch's
    /// batch norm; `None` gives libtorch's back.
    pub fn set_sync(&self, sync: Option<SyncBatchNorm>) {
        for (_, m) in &self.0 {
            *m.sync.lock().unwrap_or_else(|e| e.into_inner()) = sync;
        }
    }
}

/// Runs `f` (a model's construction) and gives the batch norms it built, for [`BatchNorms`].
pub fn collect_batch_norms<R>(f: impl FnOnce() -> R) -> (R, BatchNorms) {
    struct Reset(Option<Vec<NamedMode>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            BUILDING.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let reset = Reset(BUILDING.with(|c| c.replace(Some(Vec::new()))));
    let r = f();
    let built = BUILDING.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (r, BatchNorms(built))
}

/// Builds with every weight set to zero instead of drawn at random: for counting parameters and
/// tracing shapes, where the values do not matter and random init of VGG's 138M would dominate.
pub fn without_init<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SKIP_INIT.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(SKIP_INIT.with(|c| c.replace(true)));
    f()
}

/// The initialiser to use: `default`, or zeros inside [`without_init`].
fn init(default: Init) -> Init {
    if SKIP_INIT.with(std::cell::Cell::get) {
        Init::Const(0.0)
    } else {
        default
    }
}

/// A size given as one number (square) or as `[h, w]`.
pub trait Pair {
    fn pair(self) -> [i64; 2];
}
impl Pair for i64 {
    fn pair(self) -> [i64; 2] {
        [self, self]
    }
}
impl Pair for [i64; 2] {
    fn pair(self) -> [i64; 2] {
        self
    }
}

/// Options of a 2-D convolution, PyTorch's defaults: stride 1, no padding, bias on.
#[derive(Debug, Clone, Copy)]
pub struct ConvOpts {
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
    pub bias: bool,
}

impl Default for ConvOpts {
    fn default() -> Self {
        ConvOpts { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, bias: true }
    }
}

impl ConvOpts {
    pub fn stride(mut self, s: impl Pair) -> Self {
        self.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl Pair) -> Self {
        self.padding = p.pair();
        self
    }
    pub fn dilation(mut self, d: impl Pair) -> Self {
        self.dilation = d.pair();
        self
    }
    pub fn groups(mut self, g: i64) -> Self {
        self.groups = g;
        self
    }
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
}

/// Convolution options with bias off (the usual conv before batch norm).
pub fn no_bias() -> ConvOpts {
    ConvOpts::default().bias(false)
}

/// `nn.Conv2d`: variables `weight` [out, in/groups, kh, kw] and optional `bias`.
#[derive(Debug)]
pub struct Conv2d {
    path: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: [i64; 2],
    pub opts: ConvOpts,
}

impl Conv2d {
    /// Weights initialised as torchvision initialises its CNNs (Kaiming normal, fan-out).
    pub fn new(p: &nn::Path, in_channels: i64, out_channels: i64, kernel: impl Pair, opts: ConvOpts) -> Self {
        let kernel = kernel.pair();
        let kaiming = Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        };
        let weight = p.var("weight", &[out_channels, in_channels / opts.groups, kernel[0], kernel[1]], init(kaiming));
        let bias = opts.bias.then(|| p.zeros("bias", &[out_channels]));
        Conv2d { path: path_of(p), weight, bias, in_channels, out_channels, kernel, opts }
    }

    fn op(&self) -> Op {
        Op::Conv {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            kernel: self.kernel,
            stride: self.opts.stride,
            padding: self.opts.padding,
            dilation: self.opts.dilation,
            groups: self.opts.groups,
            bias: self.bias.is_some(),
        }
    }
}

impl ModuleT for Conv2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || self.op(),
            xs,
            |xs| {
                xs.conv2d(
                    &self.weight,
                    self.bias.as_ref(),
                    self.opts.stride,
                    self.opts.padding,
                    self.opts.dilation,
                    self.opts.groups,
                )
            },
        )
    }
}

/// `nn.BatchNorm2d`: `weight`, `bias`, and the buffers `running_mean`, `running_var`.
#[derive(Debug)]
pub struct BatchNorm2d {
    path: String,
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
    pub momentum: f64,
    mode: Arc<BatchNormMode>,
}

impl BatchNorm2d {
    pub fn new(p: &nn::Path, features: i64) -> Self {
        Self::with_eps(p, features, 1e-5)
    }

    /// Batch norm with another epsilon (TensorFlow ports use 1e-3).
    pub fn with_eps(p: &nn::Path, features: i64, eps: f64) -> Self {
        let (path, mode) = (path_of(p), Arc::new(BatchNormMode::new()));
        BUILDING.with(|c| {
            if let Some(list) = c.borrow_mut().as_mut() {
                list.push((path.clone(), mode.clone()));
            }
        });
        BatchNorm2d {
            path,
            mode,
            weight: p.ones("weight", &[features]),
            bias: p.zeros("bias", &[features]),
            running_mean: p.zeros_no_train("running_mean", &[features]),
            running_var: p.ones_no_train("running_var", &[features]),
            eps,
            momentum: 0.1,
        }
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let op = || Op::BatchNorm { features: self.weight.size()[0] };
        trace::layer(&self.path, op, xs, |xs| {
            let train = train && !self.mode.frozen.load(Ordering::Relaxed);
            let momentum = self.mode.momentum().unwrap_or(self.momentum);
            let sync = *self.mode.sync.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(sync) = sync.filter(|_| train) {
                return sync(xs, &self.weight, &self.bias, &self.running_mean, &self.running_var, momentum, self.eps);
            }
            Tensor::batch_norm(
                xs,
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                momentum,
                self.eps,
                true,
            )
        })
    }
}

/// `nn.Linear`: `weight` `[out, in]` and `bias` `[out]`, PyTorch's default uniform init.
#[derive(Debug)]
pub struct Linear {
    path: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &nn::Path, in_features: i64, out_features: i64) -> Self {
        let bound = 1.0 / (in_features as f64).sqrt();
        let uniform = init(Init::Uniform { lo: -bound, up: bound });
        Linear {
            path: path_of(p),
            weight: p.var("weight", &[out_features, in_features], uniform),
            bias: Some(p.var("bias", &[out_features], uniform)),
        }
    }

    /// `nn.Linear(bias=False)`, with PyTorch's default init (uniform in ±1/sqrt(in)).
    pub fn without_bias(p: &nn::Path, in_features: i64, out_features: i64) -> Self {
        let bound = 1.0 / (in_features as f64).sqrt();
        let uniform = init(Init::Uniform { lo: -bound, up: bound });
        Linear { path: path_of(p), weight: p.var("weight", &[out_features, in_features], uniform), bias: None }
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

impl ModuleT for Linear {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let s = self.weight.size();
        let op = || Op::Linear { in_features: s[1], out_features: s[0], bias: self.bias.is_some() };
        trace::layer(&self.path, op, xs, |xs| xs.linear(&self.weight, self.bias.as_ref()))
    }
}

/// Parameter-free element-wise layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Relu,
    Relu6,
    Hardswish,
    Hardsigmoid,
    Silu,
    Sigmoid,
    Tanh,
    Identity,
}

impl Act {
    /// Applies the activation without tracing (inside a block that is traced itself).
    pub fn apply(self, xs: &Tensor) -> Tensor {
        match self {
            Act::Relu => xs.relu(),
            Act::Relu6 => xs.clamp(0.0, 6.0),
            Act::Hardswish => xs.hardswish(),
            Act::Hardsigmoid => xs.hardsigmoid(),
            Act::Silu => xs.silu(),
            Act::Sigmoid => xs.sigmoid(),
            Act::Tanh => xs.tanh(),
            Act::Identity => xs.shallow_clone(),
        }
    }

    /// Applies the activation to `xs`, a tensor the caller owns and nobody else reads (a fresh
    /// convolution, batch-norm or sum output), in place where PyTorch's modules run with
    /// `inplace=True`: ReLU, ReLU6 and Hardswish. That saves one activation-sized allocation per
    /// layer, which is what a CPU training step of a narrow, deep network spends its time on
    /// (mobilenet_v2's expanded maps are 150 MB a batch). Autograd stays exact: none of the
    /// producers keeps its output for the backward pass, and these activations' own backward
    /// reads their result. While a trace is recording or tapping, the input may have been
    /// captured, so it is left untouched.
    pub fn apply_owned(self, xs: Tensor) -> Tensor {
        if trace::active() {
            return self.apply(&xs);
        }
        let mut xs = xs;
        match self {
            Act::Relu => xs.relu_(),
            Act::Relu6 => xs.relu6_(),
            Act::Hardswish => xs.hardswish_(),
            _ => self.apply(&xs),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Act::Relu => "ReLU",
            Act::Relu6 => "ReLU6",
            Act::Hardswish => "Hardswish",
            Act::Hardsigmoid => "Hardsigmoid",
            Act::Silu => "SiLU",
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
            Act::Identity => "Identity",
        }
    }
}

/// An activation as a named module (e.g. `features.1` in torchvision's VGG).
#[derive(Debug)]
pub struct Activation {
    path: String,
    pub act: Act,
    inplace: bool,
}

impl Activation {
    /// An activation that leaves its input untouched (e.g. the ReLU that opens an Xception block,
    /// whose input the skip connection also reads).
    pub fn new(p: &nn::Path, act: Act) -> Self {
        Activation { path: path_of(p), act, inplace: false }
    }

    /// An activation that may overwrite its input (PyTorch's `inplace=True`): only where the
    /// input is the previous layer's output and nothing else reads it. See [`Act::apply_owned`].
    pub fn inplace(p: &nn::Path, act: Act) -> Self {
        Activation { path: path_of(p), act, inplace: true }
    }
}

impl ModuleT for Activation {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Elementwise(self.act.name()),
            xs,
            |xs| {
                if self.inplace {
                    self.act.apply_owned(xs.shallow_clone())
                } else {
                    self.act.apply(xs)
                }
            },
        )
    }
}

/// `nn.Dropout(p)`.
#[derive(Debug)]
pub struct Dropout {
    path: String,
    pub p: f64,
}

impl Dropout {
    pub fn new(p: &nn::Path, prob: f64) -> Self {
        Dropout { path: path_of(p), p: prob }
    }
}

impl ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Elementwise("Dropout"),
            xs,
            |xs| {
                if train && self.p > 0.0 {
                    xs.dropout(self.p, true)
                } else {
                    xs.shallow_clone()
                }
            },
        )
    }
}

/// `nn.MaxPool2d` / `nn.AvgPool2d`.
#[derive(Debug)]
pub struct Pool2d {
    path: String,
    pub max: bool,
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl Pool2d {
    pub fn max(p: &nn::Path, kernel: impl Pair, stride: impl Pair) -> Self {
        Self::new(p, true, kernel.pair(), stride.pair())
    }
    pub fn avg(p: &nn::Path, kernel: impl Pair, stride: impl Pair) -> Self {
        Self::new(p, false, kernel.pair(), stride.pair())
    }
    fn new(p: &nn::Path, max: bool, kernel: [i64; 2], stride: [i64; 2]) -> Self {
        Pool2d { path: path_of(p), max, kernel, stride, padding: [0, 0], ceil_mode: false, count_include_pad: true }
    }
    pub fn padding(mut self, pad: impl Pair) -> Self {
        self.padding = pad.pair();
        self
    }
    pub fn ceil_mode(mut self, ceil: bool) -> Self {
        self.ceil_mode = ceil;
        self
    }
    pub fn count_include_pad(mut self, c: bool) -> Self {
        self.count_include_pad = c;
        self
    }
}

impl ModuleT for Pool2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let op = || Op::Pool {
            kind: if self.max { "MaxPool2d" } else { "AvgPool2d" },
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        };
        trace::layer(&self.path, op, xs, |xs| {
            if self.max {
                xs.max_pool2d(self.kernel, self.stride, self.padding, [1, 1], self.ceil_mode)
            } else {
                xs.avg_pool2d(self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad, None)
            }
        })
    }
}

/// `nn.AdaptiveAvgPool2d(out)`; `out = [1, 1]` is global average pooling.
#[derive(Debug)]
pub struct AdaptiveAvgPool2d {
    path: String,
    pub out: [i64; 2],
}

impl AdaptiveAvgPool2d {
    pub fn new(p: &nn::Path, out: impl Pair) -> Self {
        AdaptiveAvgPool2d { path: path_of(p), out: out.pair() }
    }
}

impl ModuleT for AdaptiveAvgPool2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::GlobalPool { kind: "AdaptiveAvgPool2d" },
            xs,
            |xs| {
                if self.out == [1, 1] {
                    xs.mean_dim(&[-2i64, -1][..], true, None)
                } else {
                    xs.adaptive_avg_pool2d(self.out)
                }
            },
        )
    }
}

/// `nn.LocalResponseNorm(size, alpha, beta, k)` as in AlexNet (2012), computed as PyTorch does:
/// `x / (k + alpha/size * sum_{neighbours} x^2)^beta` over `size` adjacent channels.
#[derive(Debug)]
pub struct LocalResponseNorm {
    path: String,
    pub size: i64,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl LocalResponseNorm {
    pub fn new(p: &nn::Path, size: i64, alpha: f64, beta: f64, k: f64) -> Self {
        LocalResponseNorm { path: path_of(p), size, alpha, beta, k }
    }
}

impl ModuleT for LocalResponseNorm {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Elementwise("LocalResponseNorm"),
            xs,
            |xs| {
                // Shape-generic (no sizes read here), so an exported graph takes any input size.
                let div = (xs * xs).unsqueeze(1);
                let div = div.constant_pad_nd([0, 0, 0, 0, self.size / 2, (self.size - 1) / 2]);
                let div = div.avg_pool3d([self.size, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None).squeeze_dim(1);
                let div = (div * self.alpha + self.k).pow_tensor_scalar(self.beta);
                xs / div
            },
        )
    }
}

/// `nn.Flatten()` from dimension 1.
#[derive(Debug)]
pub struct Flatten {
    path: String,
}

impl Flatten {
    pub fn new(p: &nn::Path) -> Self {
        Flatten { path: path_of(p) }
    }
}

impl ModuleT for Flatten {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        trace::layer(&self.path, || Op::Elementwise("Flatten"), xs, |xs| xs.flatten(1, -1))
    }
}

/// `nn.Sequential`: children named `0`, `1`, ... under its path, as in PyTorch.
#[derive(Debug)]
pub struct Sequential {
    path: String,
    kind: &'static str,
    pub layers: Vec<Box<dyn ModuleT>>,
}

impl Sequential {
    pub fn new(p: &nn::Path) -> Self {
        Self::named(p, "Sequential")
    }

    /// A sequence reported under another type name (e.g. `Stage`, `Transition`).
    pub fn named(p: &nn::Path, kind: &'static str) -> Self {
        Sequential { path: path_of(p), kind, layers: Vec::new() }
    }

    pub fn push(&mut self, layer: impl ModuleT + 'static) -> &mut Self {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl ModuleT for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container(self.kind),
            xs,
            |xs| {
                let mut it = self.layers.iter();
                let Some(first) = it.next() else { return xs.shallow_clone() };
                it.fold(first.forward_t(xs, train), |acc, l| l.forward_t(&acc, train))
            },
        )
    }
}

/// Conv → BatchNorm → activation, the unit most post-2015 networks repeat. The three parts are
/// named by the caller, since references disagree (`conv`/`bn`, `0`/`1`, ...).
#[derive(Debug)]
pub struct ConvBnAct {
    path: String,
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
    pub act: Act,
}

impl ConvBnAct {
    /// Builds it with the children named `conv_name` and `bn_name` under `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        conv_name: &str,
        bn_name: &str,
        in_c: i64,
        out_c: i64,
        kernel: impl Pair,
        opts: ConvOpts,
        bn_eps: f64,
        act: Act,
    ) -> Self {
        ConvBnAct {
            path: path_of(p),
            conv: Conv2d::new(&(p / conv_name), in_c, out_c, kernel, opts),
            bn: BatchNorm2d::with_eps(&(p / bn_name), out_c, bn_eps),
            act,
        }
    }
}

impl ModuleT for ConvBnAct {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("ConvBnAct"),
            xs,
            |xs| {
                let ys = self.bn.forward_t(&self.conv.forward_t(xs, train), train);
                self.act.apply_owned(ys)
            },
        )
    }
}

/// torchvision's `BasicConv2d` (GoogLeNet, Inception v3; timm's `ConvNormAct` in the rest of the
/// Inception line): convolution without bias, batch norm with TensorFlow's eps 1e-3, ReLU;
/// children `conv` and `bn`.
pub fn basic_conv(p: &nn::Path, cin: i64, cout: i64, kernel: impl Pair, opts: ConvOpts) -> ConvBnAct {
    ConvBnAct::new(p, "conv", "bn", cin, cout, kernel, opts.bias(false), 1e-3, Act::Relu)
}
