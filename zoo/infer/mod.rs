//! Inference engines and their measurement (`zoo benchmark`): zoo's eager forward pass; the
//! same pass traced once by libtorch's JIT tracer, frozen and optimized for inference
//! (`jit`: batch norms folded into convolutions, oneDNN convolutions with prepacked weights and
//! fused activations, as `torch.jit.optimize_for_inference` does in Python); and `onednn`, the
//! frozen trace rewritten as PyTorch's Inductor lowers convolutions on the CPU (each convolution
//! one oneDNN primitive with its weight reordered once for the batch's shape, its activation or
//! residual addition fused, activations channels-last, the early layers on slices of the batch
//! sized so that their tensors stay in cache, each primitive made once rather than on every call:
//! zoo/infer/onednn.cpp). `onednn` also runs
//! int8 post-training static quantization ([`Runner::int8`]).
use crate::export::torchscript::Traced;
use crate::models::{Model, Pool};
use crate::runtime::Precision;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// How the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `onednn` on the CPU for a run of at least 64 images ([`AUTO_ONEDNN_IMAGES`]), `eager`
    /// otherwise (on CUDA, and for a few images, where the one-off trace costs more than it saves).
    #[cfg_attr(
        feature = "cli",
        value(help = "onednn on the CPU for a run of at least 64 images, eager otherwise (on CUDA, and for a few \
                      images, where the one-off trace costs more than it saves)")
    )]
    Auto,
    /// zoo's layers, op by op.
    Eager,
    /// Traced once, frozen and optimized for inference (`torch.jit.optimize_for_inference`).
    Jit,
    /// Traced once, frozen, convolutions as fused oneDNN primitives on channels-last tensors.
    Onednn,
}

/// Images from which [`Engine::Auto`] picks `onednn` on the CPU. Tracing, freezing and packing
/// the weights adds about 0.4 s to a run of resnet50 and 0.2 s to one of mobilenet_v2 on 2
/// cores (`zoo classify` of one JPEG, onednn against eager), which the faster forward pass wins
/// back by some 64 images (whole runs of 32 and 64 JPEGs, AMD EPYC Zen 4, 2026-12-07: resnet50
/// eager 2.38 and 4.08 s, onednn 2.82 and 4.03 s; mobilenet_v2 0.76 and 1.05 s, 0.87 and 1.05 s).
pub const AUTO_ONEDNN_IMAGES: usize = 64;

impl Engine {
    /// The engine `Auto` stands for on `device` for a run of `images` images (`None`: unknown,
    /// taken as many); other engines stand for themselves.
    pub fn resolve(self, device: Device, images: Option<usize>) -> Engine {
        match self {
            Engine::Auto if device == Device::Cpu && images.is_none_or(|n| n >= AUTO_ONEDNN_IMAGES) => Engine::Onednn,
            Engine::Auto => Engine::Eager,
            e => e,
        }
    }
}

/// A model running inference with one engine. The traced engines (`jit`, `onednn`) are built
/// once, by [`Runner::prepare`] or on the first batch given; later batches may have other sizes
/// (nothing in the traced graph depends on them).
pub struct Runner<'a> {
    model: &'a Model,
    engine: Engine,
    /// The layer whose output [`Runner::forward`] gives (`None`: the logits).
    layer: Option<String>,
    /// int8: the calibration images ([`Runner::int8`]).
    calibration: Option<Tensor>,
    traced: std::cell::OnceCell<Traced>,
}

impl<'a> Runner<'a> {
    /// `engine` for `model` on its device ([`Engine::Auto`] taken as for many images).
    pub fn new(model: &'a Model, engine: Engine) -> Runner<'a> {
        Runner::for_images(model, engine, None)
    }

    /// `engine` for a run of `images` images, which decides what [`Engine::Auto`] picks.
    pub fn for_images(model: &'a Model, engine: Engine, images: Option<usize>) -> Runner<'a> {
        let engine = engine.resolve(model.vs.device(), images);
        Runner { model, engine, layer: None, calibration: None, traced: std::cell::OnceCell::new() }
    }

    /// The `onednn` engine in int8: post-training static quantization, as PyTorch's x86
    /// quantizer and Inductor run it. Convolution weights become int8 per output channel;
    /// activations uint8 per tensor, their ranges the minimum and maximum each reaches on
    /// `calibration` (float32 images preprocessed as the inputs will be: a few dozen like them);
    /// a value stays uint8 from the convolution writing it to those reading it, so a ResNet
    /// quantizes only its input. Everything but the 2-D convolutions runs in float32.
    /// `engine` must be `auto` or `onednn`; the model must be on the CPU, in float32.
    pub fn int8(model: &'a Model, engine: Engine, calibration: Tensor) -> Result<Runner<'a>> {
        crate::runtime::check_precision(Precision::Int8, model.vs.device())?;
        check_int8_engine(engine)?;
        if model.kind() != Kind::Float {
            bail!("int8 quantizes a float32 model, this one is in {:?}", model.kind());
        }
        model.check_input(&calibration).context("the calibration images")?;
        let calibration = calibration.to_kind(Kind::Float);
        Ok(Runner {
            model,
            engine: Engine::Onednn,
            layer: None,
            calibration: Some(calibration),
            traced: std::cell::OnceCell::new(),
        })
    }

    /// `engine` computing the eval-mode output of `layer` (a name [`Model::layer_names`] lists,
    /// checked here) instead of the logits, for a run of `images` images: `zoo features`. On
    /// the traced engines the graph ends at that layer; its value is the eager pass's (batch
    /// norms folded into convolutions exactly, up to rounding).
    pub fn features(model: &'a Model, engine: Engine, layer: &str, images: Option<usize>) -> Result<Runner<'a>> {
        model.check_layer(layer)?;
        let mut runner = Runner::for_images(model, engine, images);
        runner.layer = Some(layer.to_string());
        Ok(runner)
    }

    /// The engine that runs (never `Auto`).
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Eval-mode logits of `xs` (already on the model's device and in its precision), or the
    /// output of the layer a [`Runner::features`] runner was made for.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self.engine {
            Engine::Auto | Engine::Eager => match &self.layer {
                None => self.model.predict(xs),
                Some(layer) => self.model.features(xs, layer, Pool::None),
            },
            Engine::Jit | Engine::Onednn => {
                if self.engine == Engine::Onednn && xs.device() != Device::Cpu {
                    bail!(
                        "the onednn engine runs on the CPU (oneDNN's kernels): on {:?} use eager or jit",
                        xs.device()
                    );
                }
                let out = self.traced(xs)?.forward(xs);
                if self.engine == Engine::Jit {
                    // PyTorch's oneDNN-layout operators have gaps the others do not (an adaptive
                    // pool to a size that does not divide its input's: VGG below 224 pixels).
                    return out.with_context(|| {
                        format!(
                            "the jit engine (PyTorch's optimize_for_inference) cannot run {} on a {:?} input: \
                             use --engine onednn or eager",
                            self.model.spec.name,
                            xs.size()
                        )
                    });
                }
                out
            }
        }
    }

    /// The traced engine, built on `example` the first time (its values are not read: only its
    /// shape, for the shapes of the graph's tensors and the sizes of the batch's slices). The
    /// trace runs on the first sample alone: no model reads the batch size, so the graph takes
    /// any batch, and a trace of the whole batch would cost an eager forward pass over all of it
    /// (a third of a second for 32 images through efficientnet_lite0 on 2 cores).
    fn traced(&self, example: &Tensor) -> Result<&Traced> {
        if let Some(t) = self.traced.get() {
            return Ok(t);
        }
        let one = example.narrow(0, 0, example.size()[0].min(1));
        let traced = match &self.layer {
            None => Traced::trace(self.model, &one)?,
            Some(layer) => Traced::trace_layer(self.model, &one, layer)?,
        };
        let traced = match (self.engine, &self.calibration) {
            (Engine::Jit, _) => traced.optimized()?,
            (_, Some(calibration)) => traced.onednn_int8(example, calibration)?.0,
            (_, None) => traced.onednn(example)?.0,
        };
        Ok(self.traced.get_or_init(|| traced))
    }

    /// The size of the first forward pass of a run of `images` in batches of `batch_size`, each
    /// run in chunks of `chunk` ([`crate::models::Model::inference_chunk`]): what
    /// [`Runner::prepare`] builds the engine for.
    pub fn first_batch(batch_size: usize, images: usize, chunk: i64) -> usize {
        batch_size.max(1).min(images).min(chunk.max(1) as usize)
    }

    /// Builds the traced engine now, for batches of `n` images of the model's input `shape`
    /// (`[C, H, W]`), rather than on the first batch [`Runner::forward`] is given: `zoo classify`,
    /// `zoo features` and `zoo eval` run it while their first batch is being decoded. Nothing for
    /// the eager engine, where the engine is already built, for `n` = 0, or for `onednn` off the
    /// CPU (the first forward pass says why not).
    pub fn prepare(&self, n: usize, shape: [usize; 3]) -> Result<()> {
        let device = self.model.vs.device();
        let skip = matches!(self.engine, Engine::Auto | Engine::Eager)
            || (self.engine == Engine::Onednn && device != Device::Cpu)
            || self.traced.get().is_some()
            || n == 0;
        if skip {
            return Ok(());
        }
        let [c, h, w] = shape.map(|d| d as i64);
        self.traced(&Tensor::zeros([n as i64, c, h, w], (self.model.kind(), device))).map(|_| ())
    }

    /// [`Runner::forward`] of a [`Runner::features`] runner, global spatial maps pooled as
    /// [`Model::features`] pools them.
    pub fn features_pooled(&self, xs: &Tensor, pool: Pool) -> Result<Tensor> {
        Ok(crate::models::pooled(self.forward(xs)?, pool))
    }

    /// Eval-mode logits of any batch (checked, moved to the model's device and precision), run
    /// `chunk` images at a time as [`Model::predict_in_chunks`] does.
    pub fn predict_in_chunks(&self, xs: &Tensor, chunk: i64) -> Result<Tensor> {
        if matches!(self.engine, Engine::Auto | Engine::Eager) {
            return self.model.predict_in_chunks(xs, chunk);
        }
        self.model.check_input(xs)?;
        let xs = xs.to_device(self.model.vs.device()).to_kind(self.model.kind());
        let parts = xs.split(chunk.max(1), 0).iter().map(|x| self.forward(x)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0))
    }
}

extern "C" {
    // zoo/infer/onednn.cpp
    #[allow(clippy::too_many_arguments)]
    fn zoo_cat_batch_norm(
        xs: *const *const torch_sys::C_tensor,
        n: usize,
        weight: *const torch_sys::C_tensor,
        bias: *const torch_sys::C_tensor,
        mean: *const torch_sys::C_tensor,
        var: *const torch_sys::C_tensor,
        eps: f64,
        relu: bool,
        err: *mut *mut std::ffi::c_char,
    ) -> *mut torch_sys::C_tensor;
}

/// `xs` concatenated along the channels (dimension 1), then an eval batch norm with these
/// parameters and, where `relu`, a ReLU: what the `onednn` engine runs for a pre-activation
/// network's `cat -> batch_norm -> relu` (DenseNet's every layer and transition,
/// `zoo::cat_affine`), in one pass that reads each input once and writes the result once, where
/// aten's three ops read and write the concatenation three times. The result equals aten's to
/// the bit: the batch norm's scale and shift are computed as aten computes them, and each value
/// is rounded as aten's kernels round it. 2-D and 4-D float32 tensors, and bfloat16 ones on CPUs
/// with AVX-512 (F, BW and VL), take the one pass and come out channels-last; anything else is
/// computed by aten's ops.
pub fn cat_batch_norm(
    xs: &[Tensor],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let ptrs: Vec<*const torch_sys::C_tensor> = xs.iter().map(|x| x.as_ptr()).collect();
    let opt = |t: Option<&Tensor>| t.map_or(std::ptr::null(), |t| t.as_ptr());
    let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: valid tensors (or null for absent ones) for the call's duration; the result is a
    // new tensor we own.
    let out = unsafe {
        zoo_cat_batch_norm(
            ptrs.as_ptr(),
            ptrs.len(),
            opt(weight),
            opt(bias),
            running_mean.as_ptr(),
            running_var.as_ptr(),
            eps,
            relu,
            &mut err,
        )
    };
    if out.is_null() {
        bail!("cat_batch_norm: {}", crate::export::torchscript::take(err));
    }
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// The calibration images int8 reads at most: ranges settle after a few dozen.
pub const MAX_CALIBRATION_IMAGES: usize = 128;

/// The calibration batch of [`Runner::int8`] from image files: at most
/// [`MAX_CALIBRATION_IMAGES`] of them, evenly spread over the list (sorted folders of classes
/// would otherwise give the first few), preprocessed by `pre` as the inputs will be. Files that
/// cannot be read are named on stderr and left out.
pub fn calibration_images(
    files: &[std::path::PathBuf],
    pre: &crate::data::preprocess::Preprocess,
    decode: &crate::data::image::DecodeOptions,
) -> Result<Tensor> {
    if files.is_empty() {
        bail!(
            "int8 (--precision int8) needs calibration images: --calibrate DIR with a few dozen images like \
             the ones run (their activation ranges fix the quantization)"
        );
    }
    let step = files.len().div_ceil(MAX_CALIBRATION_IMAGES);
    let files: Vec<_> = files.iter().step_by(step).cloned().collect();
    crate::data::batch::load_all(&files, pre, decode).context("reading the calibration images")
}

/// What `zoo benchmark` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub engine: Engine,
    pub batch_size: i64,
    /// Height and width (default: the model's input size).
    pub input_size: Option<[i64; 2]>,
    pub precision: Precision,
    /// A training step (forward, cross-entropy, backward, SGD) instead of inference.
    pub train: bool,
    /// Timed seconds, after the warm-up.
    pub seconds: f64,
    /// Untimed batches first (oneDNN picks and caches its kernels on the first ones).
    pub warmup: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            engine: Engine::Auto,
            batch_size: 16,
            input_size: None,
            precision: Precision::F32,
            train: false,
            seconds: 5.0,
            warmup: 2,
        }
    }
}

/// One measurement, as `zoo benchmark --format json` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub mode: &'static str,
    pub engine: Engine,
    pub precision: &'static str,
    pub device: String,
    pub batch_size: i64,
    pub input_shape: [i64; 4],
    pub batches: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub ms_per_batch: f64,
    pub threads: i32,
    pub cpu: String,
    pub cpu_flags: Vec<String>,
}

/// Measures `model` (random weights do as well as trained ones) as `opts` says: warm-up
/// batches, then whole batches until `opts.seconds` have passed (at least 3).
pub fn benchmark(model: &mut Model, opts: &BenchOptions) -> Result<BenchResult> {
    check_bench(opts)?;
    model.set_precision(opts.precision)?;
    let mut bench = Bench::new(model, opts)?;
    bench.round()?;
    Ok(bench.result())
}

/// [`benchmark`] of every `(engine, precision)` in `combos` on model `name` (random weights;
/// one copy per precision, int8 quantizing the float32 one), `rounds` rounds alternating over
/// the combinations, each reported at its best round: a shared machine's slow spells then cost
/// each alike. The warm-up (and the one-off trace) runs in the first round only. `opts.engine`
/// and `opts.precision` are ignored.
pub fn benchmark_each(
    name: &str,
    device: Device,
    combos: &[(Engine, Precision)],
    opts: &BenchOptions,
    rounds: usize,
) -> Result<Vec<BenchResult>> {
    let spec = crate::models::find(name)?;
    let options: Vec<BenchOptions> =
        combos.iter().map(|&(engine, precision)| BenchOptions { engine, precision, ..opts.clone() }).collect();
    // int8 quantizes the float32 weights.
    let weights_of = |p: Precision| if p == Precision::Int8 { Precision::F32 } else { p };
    let mut models: Vec<(Precision, Model)> = Vec::new();
    for o in &options {
        check_bench(o)?;
        let weights = weights_of(o.precision);
        if !models.iter().any(|(p, _)| *p == weights) {
            let mut model = Model::new(spec.name, spec.default_config(), device)?;
            model.set_precision(weights)?;
            models.push((weights, model));
        }
    }
    let model_for = |p: Precision| &models.iter().find(|(q, _)| *q == weights_of(p)).expect("made above").1;
    let mut benches = options.iter().map(|o| Bench::new(model_for(o.precision), o)).collect::<Result<Vec<_>>>()?;
    for _ in 0..rounds.max(1) {
        for b in &mut benches {
            b.round()?;
        }
    }
    Ok(benches.iter().map(Bench::result).collect())
}

/// What a measurement cannot be, checked before any model is made.
fn check_bench(opts: &BenchOptions) -> Result<()> {
    if opts.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    if opts.train && !matches!(opts.engine, Engine::Auto | Engine::Eager) {
        bail!("--train measures zoo's own training step: use --engine eager");
    }
    if opts.train && opts.precision != Precision::F32 {
        bail!("--train measures float32 training steps (CUDA's mixed precision is `zoo train --amp`)");
    }
    if opts.precision == Precision::Int8 {
        check_int8_engine(opts.engine)?;
    }
    Ok(())
}

/// int8 runs on the onednn engine only.
fn check_int8_engine(engine: Engine) -> Result<()> {
    if !matches!(engine, Engine::Auto | Engine::Onednn) {
        bail!("int8 runs on the onednn engine (oneDNN's quantized convolutions): use --engine onednn or auto");
    }
    Ok(())
}

/// What `zoo benchmark --engine E,.. --precision P,..` measures: every engine (resolved on
/// `device`; auto is eager for a training step, zoo's own) in every precision, in that order,
/// each once, int8 only on onednn (or for a training step, which refuses it). Also gives the
/// engines whose int8 was left out. With nothing left, the first pair stays, to be refused with
/// what to do.
pub fn bench_combinations(
    engines: &[Engine],
    precisions: &[Precision],
    device: Device,
    train: bool,
) -> (Vec<(Engine, Precision)>, Vec<Engine>) {
    let resolve = |e: Engine| if train && e == Engine::Auto { Engine::Eager } else { e.resolve(device, None) };
    let all: Vec<(Engine, Precision)> =
        engines.iter().flat_map(|&e| precisions.iter().map(move |&p| (resolve(e), p))).collect();
    let (mut combos, mut skipped) = (Vec::new(), Vec::new());
    for &(e, p) in &all {
        if p == Precision::Int8 && !train && e != Engine::Onednn {
            skipped.push(e);
        } else if !combos.contains(&(e, p)) {
            combos.push((e, p));
        }
    }
    if combos.is_empty() {
        combos.extend(all.first().copied());
    }
    (combos, skipped)
}

/// One configuration being measured: its step (a forward pass, or a training step) on a fixed
/// random batch, and its best round so far.
struct Bench<'m> {
    model: &'m Model,
    opts: BenchOptions,
    engine: Engine,
    shape: [i64; 4],
    step: Box<dyn FnMut() -> Result<()> + 'm>,
    warmed: bool,
    /// Batches and seconds of the fastest round.
    best: Option<(usize, f64)>,
}

impl<'m> Bench<'m> {
    /// `opts` on `model`, already in `opts.precision`'s weights (float32 for int8).
    fn new(model: &'m Model, opts: &BenchOptions) -> Result<Bench<'m>> {
        let device = model.vs.device();
        let [c, h, w] = model.spec.input_size;
        let [h, w] = opts.input_size.unwrap_or([h, w]);
        let shape = [opts.batch_size, c, h, w];
        tch::manual_seed(0);
        let xs = Tensor::randn(shape, (Kind::Float, device)).to_kind(opts.precision.kind());
        model.check_input(&xs)?;
        let engine = match (opts.train, opts.precision) {
            (true, _) => Engine::Eager,
            (false, Precision::Int8) => Engine::Onednn,
            (false, _) => opts.engine.resolve(device, None),
        };
        let step: Box<dyn FnMut() -> Result<()> + 'm> = if opts.train {
            let classes = model.config.num_classes.max(1);
            let labels = Tensor::randint(classes, [opts.batch_size], (Kind::Int64, device));
            let mut sgd =
                tch::nn::OptimizerConfig::build(tch::nn::Sgd { momentum: 0.9, ..Default::default() }, &model.vs, 0.01)?;
            let net = &model.net;
            Box::new(move || {
                let loss = net.forward_t(&xs, true).cross_entropy_for_logits(&labels);
                sgd.backward_step(&loss);
                Ok(())
            })
        } else {
            // int8 calibrates on the benchmark's own (random) input: its speed does not depend
            // on the ranges.
            let runner = if opts.precision == Precision::Int8 {
                Runner::int8(model, opts.engine, xs.shallow_clone())?
            } else {
                Runner::new(model, engine)
            };
            Box::new(move || {
                let out = runner.forward(&xs)?;
                // Wait for the device (CUDA runs asynchronously) by reading one value back.
                let _ = out.view(-1).double_value(&[0]);
                Ok(())
            })
        };
        Ok(Bench { model, opts: opts.clone(), engine, shape, step, warmed: false, best: None })
    }

    /// One timed round (after the warm-up, the first time).
    fn round(&mut self) -> Result<()> {
        if !self.warmed {
            for _ in 0..self.opts.warmup {
                (self.step)()?;
            }
            self.warmed = true;
        }
        let budget = Duration::from_secs_f64(self.opts.seconds.max(0.0));
        let start = Instant::now();
        let mut batches = 0;
        while batches < 3 || start.elapsed() < budget {
            (self.step)()?;
            batches += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        if self.best.is_none_or(|(b, s)| batches as f64 / seconds > b as f64 / s) {
            self.best = Some((batches, seconds));
        }
        Ok(())
    }

    /// The fastest round.
    fn result(&self) -> BenchResult {
        let (batches, seconds) = self.best.unwrap_or((0, f64::NAN));
        let (cpu, cpu_flags) = crate::runtime::cpu_info();
        let wanted = [
            "avx2",
            "avx512f",
            "avx512_bf16",
            "avx512_vnni",
            "amx_bf16",
            "amx_int8",
            "amx_tile",
            "bf16",
            "asimd",
            "sve",
        ];
        let (opts, device) = (&self.opts, self.model.vs.device());
        BenchResult {
            model: self.model.spec.name.to_string(),
            mode: if opts.train { "train step" } else { "inference" },
            engine: self.engine,
            precision: opts.precision.name(),
            device: match device {
                Device::Cpu => "cpu".into(),
                d => format!("{d:?}").to_ascii_lowercase(),
            },
            batch_size: opts.batch_size,
            input_shape: self.shape,
            batches,
            seconds,
            images_per_second: (batches as i64 * opts.batch_size) as f64 / seconds,
            ms_per_batch: 1000.0 * seconds / batches as f64,
            threads: tch::get_num_threads(),
            cpu,
            cpu_flags: cpu_flags.into_iter().filter(|f| wanted.contains(&f.as_str())).collect(),
        }
    }
}
