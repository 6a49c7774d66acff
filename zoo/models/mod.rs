//! The model contract ([`Classifier`]), the registry of every architecture, and [`Model`], the
//! handle users hold (variables, network and its registry entry together).
//!
//! One file per family, holding its layers, its paper and its registered variants
//! (`variants()`); `families!` below declares the family modules and the order the registry
//! lists them in, so a new model is its own file and one name there.
/// Implements [`tch::nn::ModuleT`] for classifiers: the logits, `forward_head` on
/// `forward_features`.
macro_rules! classifier_module {
    ($($t:ty),+ $(,)?) => {$(
        impl tch::nn::ModuleT for $t {
            fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
                use $crate::models::Classifier;
                self.forward_head(&self.forward_features(xs, train), train, false)
            }
        }
    )+};
}

/// Declares each family's module and `FAMILIES`, their `variants()` in listing order.
macro_rules! families {
    ($($family:ident),+ $(,)?) => {
        $(pub mod $family;)+
        /// Every family's registered variants, in listing order (the registry concatenates them).
        pub(crate) const FAMILIES: &[fn() -> Vec<ModelSpec>] = &[$($family::variants),+];
    };
}

// Shared by several families.
pub mod classic;
pub mod inception;
pub mod registry;

// The classic line, the other torchvision families, then the networks beyond torchvision.
families!(
    lenet,
    alexnet,
    zfnet,
    vgg,
    resnet,
    googlenet,
    inception_v3,
    densenet,
    squeezenet,
    mobilenet_v2,
    mobilenet_v3,
    shufflenet_v2,
    mobilenet_v1,
    bninception,
    inception_v4,
    inception_resnet,
    xception,
    shufflenet_v1,
    efficientnet_lite,
);

pub use registry::{find, registry, ModelSpec};

use anyhow::{bail, Result};
use tch::nn::ModuleT;
use tch::{nn, Device, Kind, Tensor};

/// A named stage of a network whose output can be taken as features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    /// Module path of the stage (`layer3`, `features.29`), usable as a tap name.
    pub name: String,
    /// Channels of its output.
    pub channels: i64,
    /// Total stride from the input (`reduction`, as timm calls it).
    pub reduction: i64,
}

impl FeatureInfo {
    pub fn new(name: impl Into<String>, channels: i64, reduction: i64) -> Self {
        FeatureInfo { name: name.into(), channels, reduction }
    }
}

/// Options every architecture accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    /// Classes of the head; 0 builds no head (`forward_t` returns pooled features).
    pub num_classes: i64,
    /// Dropout before the classifier, overriding the architecture's default.
    pub drop_rate: Option<f64>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig { num_classes: 1000, drop_rate: None }
    }
}

/// Options of the reference builder beyond [`BuildConfig`], for the architectures that have
/// them (GoogLeNet, Inception v3: [`ModelSpec::build_with`]); `None` keeps the registry's
/// configuration, which is the one the default weights expect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchOptions {
    /// torchvision's `transform_input`: on with its pretrained weights, off for `weights=None`.
    pub transform_input: Option<bool>,
    /// Build the auxiliary classifiers (trained with, run in train mode only).
    pub aux_logits: Option<bool>,
}

impl ArchOptions {
    /// What torchvision's builder does without weights (`googlenet(weights=None)`):
    /// `transform_input` off. The loader uses it for checkpoints no manifest entry describes.
    pub fn unweighted() -> Self {
        ArchOptions { transform_input: Some(false), aux_logits: None }
    }
}

/// The contract every classifier meets (timm's, in Rust). Every classifier is a
/// [`tch::nn::ModuleT`] whose `forward_t` gives the logits
/// (`forward_head(forward_features(xs))`, written once by `classifier_module!`).
pub trait Classifier: ModuleT {
    /// The unpooled feature map of the last stage, [N, num_features, h, w].
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor;

    /// Pooling and classifier on a feature map. With `pre_logits`, stops before the last
    /// linear layer (the pooled features, or VGG/AlexNet's FC7 after its ReLU).
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor;

    /// Logits and, in train mode, the auxiliary classifiers' logits (GoogLeNet, Inception v3).
    fn forward_aux(&self, xs: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        (self.forward_t(xs, train), Vec::new())
    }

    /// Width of the pre-logits features.
    fn num_features(&self) -> i64;

    /// The classifier, as data: its path, class count and layer ([`crate::nn::Head`]).
    fn head(&self) -> &dyn crate::nn::Head;

    /// The classifier, to replace.
    fn head_mut(&mut self) -> &mut dyn crate::nn::Head;

    /// Classes of the current head (0 when there is none).
    fn num_classes(&self) -> i64 {
        self.head().num_classes()
    }

    /// Replaces the classifier with a fresh one for `num_classes` (0 removes it), under `root`,
    /// the var-store root the model was built on. The old head's variables are removed.
    fn reset_classifier(&mut self, root: &nn::Path, num_classes: i64) {
        self.head_mut().reset(root, num_classes)
    }

    /// Variable-path prefixes of the classifier (`fc.`, `classifier.6.`): what fine-tuning
    /// replaces and what a checkpoint for another class count may lack.
    fn classifier_prefixes(&self) -> Vec<String> {
        self.head().prefixes()
    }

    /// Every named stage, shallow to deep.
    fn feature_info(&self) -> Vec<FeatureInfo>;
}

/// Removes every variable whose path starts with one of `prefixes` from the store.
pub fn remove_vars(vs: &nn::VarStore, prefixes: &[String]) {
    let mut vars = vs.variables_.lock().unwrap();
    let doomed: Vec<String> =
        vars.named_variables.keys().filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))).cloned().collect();
    for name in doomed {
        if let Some(t) = vars.named_variables.remove(&name) {
            let ptr = t.data_ptr();
            vars.trainable_variables.retain(|v| v.tensor.data_ptr() != ptr);
        }
    }
}

/// A built network with its variables and registry entry: what commands and users hold.
#[derive(Debug)]
pub struct Model {
    pub spec: &'static ModelSpec,
    pub config: BuildConfig,
    pub vs: nn::VarStore,
    pub net: Box<dyn Classifier>,
    /// The network's batch norms, whose training modes (frozen, momentum, synchronised) are set
    /// here and held by the layers.
    pub batch_norms: crate::nn::BatchNorms,
}

impl Model {
    /// Builds `name` (case-insensitive) with random initialisation on `device`.
    pub fn new(name: &str, config: BuildConfig, device: Device) -> Result<Self> {
        Self::with_options(name, config, ArchOptions::default(), device)
    }

    /// [`Model::new`] with builder options; architectures without options ignore them.
    pub fn with_options(name: &str, config: BuildConfig, options: ArchOptions, device: Device) -> Result<Self> {
        let spec = find(name)?;
        let vs = nn::VarStore::new(device);
        let (net, batch_norms) = crate::nn::collect_batch_norms(|| match spec.build_with {
            Some(build) => build(&vs.root(), &config, options),
            None => (spec.build)(&vs.root(), &config),
        });
        Ok(Model { spec, config, vs, net, batch_norms })
    }

    /// Builds `name` with the weights of a local checkpoint, exactly as `zoo classify NAME
    /// --weights FILE` does (see [`crate::weights::pretrained`]): the file identified by digest
    /// or layout, its key rules, the class count of its head, the builder options it needs.
    pub fn from_file(name: &str, path: &std::path::Path, device: Device) -> Result<Self> {
        let mut opts = crate::weights::pretrained::LoadOptions::new(device);
        opts.quiet = true;
        Ok(crate::weights::pretrained::load_with(name, Some(path), &opts)?.model)
    }

    /// Replaces the head (fine-tuning), removing the old head's variables from the store.
    pub fn reset_classifier(&mut self, num_classes: i64) {
        remove_vars(&self.vs, &self.net.classifier_prefixes());
        self.net.reset_classifier(&self.vs.root(), num_classes);
        self.config.num_classes = num_classes;
    }

    /// Fails with a clear message when `xs` cannot go through this network.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let size = xs.size();
        let [c, _, _] = self.spec.input_size;
        if size.len() != 4 {
            bail!("{} expects a batch [N, C, H, W], got a tensor of shape {:?}", self.spec.name, size);
        }
        if size[1] != c {
            bail!("{} expects {} input channels, got {} (shape {:?})", self.spec.name, c, size[1], size);
        }
        let min = self.spec.min_input;
        if size[2] < min || size[3] < min {
            bail!(
                "{} needs inputs of at least {min}x{min} pixels, got {}x{} (its default is {}x{})",
                self.spec.name,
                size[2],
                size[3],
                self.spec.input_size[1],
                self.spec.input_size[2]
            );
        }
        if let Some((fits, why)) = self.spec.side_rule {
            if !fits(size[2]) || !fits(size[3]) {
                bail!("{} cannot take a {}x{} input: {why}", self.spec.name, size[2], size[3]);
            }
        }
        Ok(())
    }

    /// Eval-mode logits, without gradients.
    pub fn predict(&self, xs: &Tensor) -> Result<Tensor> {
        self.check_input(xs)?;
        let xs = xs.to_device(self.vs.device()).to_kind(self.kind());
        Ok(tch::no_grad(|| self.net.forward_t(&xs, false)))
    }

    /// Eval-mode logits, without gradients, the batch run `chunk` images at a time (see
    /// [`Model::inference_chunk`]); the result is the same as [`Model::predict`]'s.
    pub fn predict_in_chunks(&self, xs: &Tensor, chunk: i64) -> Result<Tensor> {
        let n = xs.size().first().copied().unwrap_or(0);
        if chunk <= 0 || n <= chunk {
            return self.predict(xs);
        }
        let parts = xs.split(chunk, 0).iter().map(|x| self.predict(x)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0))
    }

    /// How many images of shape `[C, H, W]` an inference pass should take at once. On CUDA, the
    /// whole batch. On the CPU a batch whose largest activation map outgrows the last-level cache
    /// runs slower per image (measured on this project's 2-core EPYC with the allocator tuned by
    /// [`crate::runtime::tune_cpu_allocator`], images/s at 4 and at 16: mobilenet_v2 117 and 96,
    /// efficientnet_lite0 84 and 79, resnet50 19 and 18): the chunk is the number of images whose
    /// largest map fits in two thirds of this process's share of that cache
    /// ([`cpu_cache_share_bytes`]), found by tracing one image. `ZOO_CPU_CHUNK` overrides it.
    pub fn inference_chunk(&self, input: [i64; 3]) -> i64 {
        if self.vs.device() != Device::Cpu {
            return i64::MAX;
        }
        if let Some(n) = std::env::var("ZOO_CPU_CHUNK").ok().and_then(|v| v.parse::<i64>().ok()) {
            return n.max(1);
        }
        let one = Tensor::zeros([1, input[0], input[1], input[2]], (self.kind(), Device::Cpu));
        if self.check_input(&one).is_err() {
            return i64::MAX; // the forward pass will report it
        }
        let (_, events) = tch::no_grad(|| crate::nn::trace::record(|| self.net.forward_t(&one, false)));
        let largest = events.iter().map(|e| e.output_shape.iter().product::<i64>()).max().unwrap_or(1);
        let bytes = largest.max(1) * self.kind().elt_size_in_bytes() as i64;
        (cpu_cache_share_bytes() * 2 / 3 / bytes).max(1)
    }

    /// The floating-point kind of the variables.
    pub fn kind(&self) -> Kind {
        self.vs.variables().values().next().map(|t| t.kind()).unwrap_or(Kind::Float)
    }

    /// Number of parameters (trainable and frozen; buffers such as running statistics excluded).
    pub fn num_params(&self) -> i64 {
        count_params(&self.vs)
    }

    /// Loads a checkpoint file (any supported format) into the model as built, strictly, through
    /// the loader of `zoo classify --weights` ([`crate::weights::pretrained::load_file_into`]): the
    /// file is identified the same way and gets the same key rules, and the tensors the
    /// architecture declares optional (GoogLeNet's auxiliary heads) may be present or absent.
    /// [`Model::from_file`] also picks the class count and builder options the file needs.
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<()> {
        crate::weights::pretrained::load_file_into(self, path)
    }

    /// Every layer name [`Model::features`] takes, in forward order: `fc7` and `pre_logits`
    /// where the network has them, then every module path (traced on the model itself, one image
    /// of its default size, so no second network is built).
    pub fn layer_names(&self) -> Vec<String> {
        let [c, h, w] = self.spec.input_size;
        let xs = Tensor::zeros([1, c, h, w], (self.kind(), self.vs.device()));
        tch::no_grad(|| crate::nn::trace::tap_names(|| self.net.forward_t(&xs, false)))
    }

    /// Checks `layer` before any image is read. The error names the closest layer names and the
    /// stages, and points to `zoo info` for the full list.
    pub fn check_layer(&self, layer: &str) -> Result<()> {
        let names = self.layer_names();
        if names.iter().any(|n| n == layer) {
            return Ok(());
        }
        let mut near: Vec<(f64, &String)> =
            names.iter().map(|n| (strsim::normalized_damerau_levenshtein(layer, n), n)).collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0));
        let near: Vec<&str> = near.iter().take(3).map(|(_, n)| n.as_str()).collect();
        let stages: Vec<String> = self.net.feature_info().into_iter().map(|f| f.name).collect();
        bail!(
            "{} has no layer '{layer}'; the closest are {}. Its stages: {}, and pre_logits{}. \
             `zoo info {} --layers` lists every layer.",
            self.spec.name,
            near.join(", "),
            stages.join(", "),
            if names.iter().any(|n| n == "fc7") { ", fc7" } else { "" },
            self.spec.name
        )
    }

    /// Eval-mode output of the layer `layer` (`fc7`, `pre_logits`, a stage or a module path, as
    /// [`Model::layer_names`] lists) for a batch, without gradients, pooled as asked.
    ///
    /// ```
    /// use zoo::models::{BuildConfig, Model, Pool};
    /// # fn main() -> anyhow::Result<()> {
    /// let model = Model::new("resnet18", BuildConfig::default(), tch::Device::Cpu)?;
    /// let xs = tch::Tensor::randn([4, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
    /// let stage = model.features(&xs, "layer3", Pool::None)?; // a stage: [4, 256, 14, 14]
    /// assert_eq!(stage.size(), [4, 256, 14, 14]);
    /// let pooled = model.features(&xs, "pre_logits", Pool::None)?; // before the classifier
    /// assert_eq!(pooled.size(), [4, 512]);
    /// assert!(model.features(&xs, "layer9", Pool::Avg).is_err()); // the error names the closest
    /// # Ok(())
    /// # }
    /// ```
    pub fn features(&self, xs: &Tensor, layer: &str, pool: Pool) -> Result<Tensor> {
        self.check_input(xs)?;
        let taps = [layer.to_string()];
        let (_, mut got) = tch::no_grad(|| crate::nn::trace::capture(&taps, || self.net.forward_t(xs, false)));
        let Some(t) = got.remove(layer) else {
            bail!("layer '{layer}' did not run in {}", self.spec.name);
        };
        Ok(pooled(t, pool))
    }

    /// Puts the variables in `precision`: float16 on CUDA, bfloat16 on CUDA and on CPUs that
    /// compute it natively (AVX512-BF16, AMX-BF16, Arm BF16); elsewhere a clear refusal.
    pub fn set_precision(&mut self, precision: crate::runtime::Precision) -> Result<()> {
        use crate::runtime::Precision;
        crate::runtime::check_precision(precision, self.vs.device())?;
        match precision {
            // int8: the onednn engine quantizes a float32 copy ([`crate::infer::Runner::int8`]).
            Precision::F32 | Precision::Int8 => {}
            Precision::F16 => self.vs.half(),
            Precision::Bf16 => self.vs.bfloat16(),
        }
        Ok(())
    }
}

/// `t` globally pooled as `pool` says when it is a spatial map (`[N, C, H, W]` to `[N, C]`),
/// as it is otherwise.
pub fn pooled(t: Tensor, pool: Pool) -> Tensor {
    match (pool, t.dim()) {
        (Pool::Avg, 4) => t.mean_dim(&[2i64, 3][..], false, None),
        (Pool::Max, 4) => t.amax(&[2i64, 3][..], false),
        _ => t,
    }
}

/// Global pooling of spatial feature maps ([`Model::features`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Pool {
    Avg,
    Max,
    None,
}

/// A model is a tch module: `xs.apply_t(&model, train)` gives the logits, and a model goes into
/// `nn::seq_t()` like any tch layer. The input is used as given (device and kind included); for
/// eval-mode inference with checks, [`Model::predict`].
impl ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(xs, train)
    }
}

/// The most last-level cache one core is counted for. A VM's sysfs may describe the whole
/// socket's L3 (480 MiB seen on a 2-core Xeon guest) as shared by its own few CPUs only; no CPU
/// sold today gives a core more than this (AMD's 3D V-Cache parts: 96 MiB for 8 cores, 12 MiB).
const MAX_CACHE_PER_CORE: i64 = 16 << 20;

/// The last-level cache bytes this process can count on: the cache's size divided among the
/// CPUs that share it (sysfs `shared_cpu_list`), at most `MAX_CACHE_PER_CORE` each, times
/// the CPUs this process may run on (never more than the whole cache). 32 MiB where sysfs
/// cannot be read.
pub fn cpu_cache_share_bytes() -> i64 {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    match last_level_cache() {
        Some((size, sharing)) => cache_share(size, sharing, usable),
        None => 32 << 20,
    }
}

/// `size` bytes of cache shared by `sharing` CPUs, for a process on `usable` CPUs.
fn cache_share(size: i64, sharing: i64, usable: i64) -> i64 {
    let per_core = (size / sharing.max(1)).min(MAX_CACHE_PER_CORE);
    (per_core * usable.clamp(1, sharing.max(1))).clamp(1, size.max(1))
}

/// The CPU's highest-level cache (Linux sysfs): its size in bytes and how many CPUs share it.
fn last_level_cache() -> Option<(i64, i64)> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let size = |s: &str| match s.strip_suffix('K') {
        Some(k) => k.parse::<i64>().ok().map(|k| k * 1024),
        None => match s.strip_suffix('M') {
            Some(m) => m.parse::<i64>().ok().map(|m| m << 20),
            None => s.parse().ok(),
        },
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let level = read(e.path().join("level"))?.parse::<u32>().ok()?;
            let bytes = size(&read(e.path().join("size"))?)?;
            let sharing = read(e.path().join("shared_cpu_list")).and_then(|l| cpu_list_len(&l)).unwrap_or(1);
            Some((level, bytes, sharing))
        })
        .max()
        .map(|(_, bytes, sharing)| (bytes, sharing))
}

/// The number of CPUs in a sysfs CPU list such as `0-3,8-11` or `0,2`.
fn cpu_list_len(list: &str) -> Option<i64> {
    list.split(',').filter(|r| !r.is_empty()).try_fold(0, |n, range| {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b) = (a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?);
        (b >= a).then_some(n + b - a + 1)
    })
}

/// Parameters of a var store: trainable and frozen variables, not running statistics.
pub fn count_params(vs: &nn::VarStore) -> i64 {
    vs.variables().iter().filter(|(k, _)| !is_buffer(k)).map(|(_, t)| t.numel() as i64).sum()
}

/// Whether a variable path is a buffer (batch-norm statistics) rather than a parameter.
pub fn is_buffer(path: &str) -> bool {
    path.ends_with("running_mean") || path.ends_with("running_var") || path.ends_with("num_batches_tracked")
}

#[cfg(test)]
mod tests {
    use super::{cache_share, cpu_list_len, MAX_CACHE_PER_CORE};

    #[test]
    fn cpu_lists_count_every_cpu() {
        assert_eq!(cpu_list_len("0"), Some(1));
        assert_eq!(cpu_list_len("0-1"), Some(2));
        assert_eq!(cpu_list_len("0-3,8-11"), Some(8));
        assert_eq!(cpu_list_len("0,2,4"), Some(3));
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len("x"), None);
    }

    /// The share never exceeds the cache, nor the bounded per-core share times the CPUs used:
    /// a 2-CPU guest that sees a 480 MiB socket L3 counts 32 MiB, like one that sees 32 MiB.
    #[test]
    fn cache_share_is_bounded_per_core() {
        let mib = 1 << 20;
        assert_eq!(cache_share(480 * mib, 2, 2), 2 * MAX_CACHE_PER_CORE);
        assert_eq!(cache_share(32 * mib, 2, 2), 32 * mib);
        assert_eq!(cache_share(32 * mib, 8, 2), 8 * mib, "a CCX shared with 6 other CPUs");
        assert_eq!(cache_share(105 * mib, 56, 56), 105 * mib);
        assert_eq!(cache_share(105 * mib, 56, 1000), 105 * mib, "never more than the cache");
        assert_eq!(cache_share(0, 0, 0), 1);
    }
}
