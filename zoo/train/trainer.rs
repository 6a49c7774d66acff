//! The training loop behind `zoo finetune` and `zoo train`, and the evaluation behind `zoo eval`.
//!
//! [`run`] is four steps: prepare (check the flags, load the data, build or restore the model,
//! set up the optimiser), then per epoch train, evaluate the val split and checkpoint. Training
//! decodes and augments batches in rayon workers on a producer thread, one bounded queue ahead
//! of the forward/backward pass ([`crate::data::prefetch`]); the val split is evaluated with the
//! eval transform. Each epoch appends a row to `OUT/metrics.csv`, redraws `OUT/curves.png`, and
//! writes `OUT/last.safetensors`, `OUT/best.safetensors` (best val top-1) and
//! `OUT/resume.safetensors` (weights, optimiser state, epoch, step), each atomically
//! ([`super::checkpoints`]): a crash or Ctrl-C loses at most the epoch in progress, and
//! `--resume OUT` continues from the last finished one. Runs are reproducible: the model is
//! seeded from `--seed`, torch's generator is re-seeded from `(seed, epoch)` at every epoch, the
//! shuffle from `(seed, epoch)` and each sample's augmentation from `(seed, epoch, index)`, so a
//! resumed run follows the same path as an uninterrupted one.
use super::augment::{self, mix, AugmentConfig, Picture, Rng};
use super::checkpoints::{self, RunFiles, RESUME_FILE};
use super::dataset::{self, DataSet, Sample};
use super::freeze::{self, Freeze, Frozen};
use super::optim::{GradScaler, Optimizer, OptimizerKind, Param, Schedule};
use crate::checkpoint::{self, StateDict};
use crate::data::image::{load_luma, load_rgb, DecodeLimits};
use crate::data::prefetch::{prefetch, prefetch_after};
use crate::data::preprocess::Preprocess;
use crate::dist::{Group, Reducer};
use crate::models::{is_buffer, BuildConfig, Model, ModelSpec};
use crate::runtime::parse_device;
use crate::weights::pretrained::{self, Loaded, PreprocessOverride};
use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

pub use super::checkpoints::{checkpoint_metadata, EpochMetrics, ResumeState, METRICS_HEADER, RESUME_KEY};

/// Everything a run is configured with (saved in `run.json` and the resume file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// `ARCH` or `ARCH.TAG`.
    pub model: String,
    /// Start from pretrained weights (`finetune`) rather than random initialisation (`train`).
    pub pretrained: bool,
    /// A local checkpoint to start from instead of the manifest's weights.
    pub weights: Option<PathBuf>,
    /// The image folder.
    pub data: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Fraction of each class held out when `data` has no train/val folders.
    pub val_split: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Base learning rate (the head's; the backbone's is scaled by `backbone_lr_scale`).
    pub lr: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    pub label_smoothing: f64,
    pub freeze: Freeze,
    /// Learning-rate factor of everything but the classifier head (discriminative fine-tuning).
    pub backbone_lr_scale: f64,
    pub seed: u64,
    /// float16 autocast with loss scaling (CUDA only).
    pub amp: bool,
    /// Channels-last memory layout (CUDA only).
    pub channels_last: bool,
    /// Batches whose gradients are summed per optimiser step.
    pub accumulate: usize,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Train and eval crop (square); default: the weights' or the model's input size.
    pub input_size: Option<u32>,
    /// Eval resize (shorter side); default: `input_size / 0.875` (3-channel) or `input_size`.
    pub resize: Option<u32>,
    /// Overrides of the weights' eval preprocessing (`--preprocess`, `--interpolation`,
    /// `--mean`, `--std`), applied before `input_size` and `resize`.
    #[serde(default, skip_serializing_if = "PreprocessOverride::is_empty")]
    pub preprocess: PreprocessOverride,
    /// Dropout before the classifier (training from scratch only).
    pub drop_rate: Option<f64>,
    pub augment: AugmentConfig,
    /// Keep decoded images in memory when they fit in this many MiB (0: never).
    pub cache_mb: usize,
    /// Batch-norm momentum while training (`None`: each layer's own).
    #[serde(default)]
    pub bn_momentum: Option<f64>,
    /// Data-parallel runs: batch-norm statistics over every rank's batch (SyncBatchNorm).
    #[serde(default)]
    pub sync_bn: bool,
    /// Weights, activations, gradients and optimiser state in float64 (checkpoints too): for
    /// checking numerics, e.g. that a data-parallel run equals one process, where float32's
    /// rounding would hide a real difference. Several times slower than float32.
    #[serde(default)]
    pub float64: bool,
    /// libtorch's intra-op threads (`None`: its default, one per core).
    #[serde(skip)]
    pub threads: Option<usize>,
    /// Continue the run in `out`.
    #[serde(skip)]
    pub resume: bool,
    /// Stop after this many epochs of this invocation (the schedule still spans `epochs`).
    #[serde(skip)]
    pub stop_after: Option<usize>,
    /// Write a grid of augmented training samples here first.
    #[serde(skip)]
    pub show_augment: Option<PathBuf>,
    /// Progress bars (on a terminal).
    #[serde(skip)]
    pub progress: bool,
    /// Accept weights without a published digest.
    #[serde(skip)]
    pub trust_unverified: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: String::new(),
            pretrained: false,
            weights: None,
            data: PathBuf::new(),
            out: PathBuf::from("runs/zoo"),
            val_split: 0.1,
            epochs: 10,
            batch_size: 64,
            lr: 0.01,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::SGD,
            schedule: Schedule::COSINE,
            label_smoothing: 0.0,
            freeze: Freeze::None,
            backbone_lr_scale: 1.0,
            seed: 0,
            amp: false,
            channels_last: true,
            accumulate: 1,
            device: "auto".into(),
            input_size: None,
            resize: None,
            preprocess: PreprocessOverride::default(),
            drop_rate: None,
            augment: AugmentConfig::default(),
            cache_mb: 1024,
            bn_momentum: None,
            sync_bn: false,
            float64: false,
            threads: None,
            resume: false,
            stop_after: None,
            show_augment: None,
            progress: false,
            trust_unverified: false,
        }
    }
}

impl TrainConfig {
    /// Rejects values that cannot work, before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs >= 1, "--epochs must be at least 1");
        ensure!(self.batch_size >= 1, "--batch-size must be at least 1");
        ensure!(self.accumulate >= 1, "--accumulate must be at least 1");
        ensure!(self.lr.is_finite() && self.lr > 0.0, "--lr must be positive, got {}", self.lr);
        ensure!(self.weight_decay >= 0.0, "--weight-decay must be >= 0");
        ensure!((0.0..1.0).contains(&self.label_smoothing), "--label-smoothing must be in [0, 1)");
        ensure!(self.backbone_lr_scale >= 0.0, "--backbone-lr-scale must be >= 0");
        ensure!(!(self.float64 && self.amp), "--float64 and --amp exclude each other: give one");
        if let Some(m) = self.bn_momentum {
            ensure!((0.0..=1.0).contains(&m), "--bn-momentum must be in [0, 1], got {m}");
        }
        if let Some(n) = self.input_size {
            ensure!(n > 0, "--input-size must be positive");
        }
        if self.freeze != Freeze::None && !self.pretrained {
            eprintln!("warning: --freeze {} on randomly initialised weights keeps them random", self.freeze);
        }
        self.augment.validate()
    }
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub out: PathBuf,
    pub classes: Vec<String>,
    /// Every epoch so far, including those of earlier invocations.
    pub history: Vec<EpochMetrics>,
    pub best_epoch: usize,
    /// Best val top-1 (%), `None` without a val split.
    pub best_acc1: Option<f64>,
    /// Warnings about the data.
    pub warnings: Vec<String>,
    /// Files left out because they could not be read (at the folder scan or when decoded),
    /// each with why; every one was named on stderr.
    pub unread: Vec<(PathBuf, String)>,
}

/// Decoded images of a data set, with an optional in-memory cache.
pub struct Source {
    pub samples: Vec<Sample>,
    channels: u32,
    limits: DecodeLimits,
    cache: Option<Vec<OnceLock<Arc<Picture>>>>,
    failures: Mutex<BTreeMap<PathBuf, String>>,
}

impl Source {
    /// Images for a network of `channels` input channels; cached when they fit in `cache_mb`.
    pub fn new(samples: Vec<Sample>, channels: u32, cache_mb: usize) -> Self {
        let bytes: u64 = samples.iter().map(|s| u64::from(s.size.0) * u64::from(s.size.1) * u64::from(channels)).sum();
        let cache = (bytes <= cache_mb as u64 * (1 << 20)).then(|| samples.iter().map(|_| OnceLock::new()).collect());
        Source { samples, channels, limits: DecodeLimits::default(), cache, failures: Mutex::new(BTreeMap::new()) }
    }

    /// Whether decoded images are kept.
    pub fn cached(&self) -> bool {
        self.cache.is_some()
    }

    /// Sample `i`, decoded (gray for 1-channel networks).
    pub fn picture(&self, i: usize) -> std::result::Result<Arc<Picture>, String> {
        if let Some(cache) = &self.cache {
            if let Some(p) = cache[i].get() {
                return Ok(p.clone());
            }
        }
        let path = &self.samples[i].path;
        let decoded = if self.channels == 1 {
            load_luma(path, &self.limits).map(Picture::Gray)
        } else {
            load_rgb(path, &self.limits).map(Picture::Rgb)
        };
        match decoded {
            Ok(p) => {
                let p = Arc::new(p);
                if let Some(cache) = &self.cache {
                    let _ = cache[i].set(p.clone());
                }
                Ok(p)
            }
            Err(e) => {
                // The path is the map's key; the message says only what went wrong.
                let msg = e.kind().to_string();
                self.failures.lock().expect("lock").insert(path.clone(), msg.clone());
                Err(msg)
            }
        }
    }

    /// Files that failed to decode so far.
    pub fn failures(&self) -> BTreeMap<PathBuf, String> {
        self.failures.lock().expect("lock").clone()
    }
}

/// A batch ready for the network.
struct Batch {
    data: Vec<f32>,
    labels: Vec<i64>,
}

/// Stacks per-sample results into a batch, dropping the failures.
fn assemble(items: Vec<Option<(Vec<f32>, i64)>>) -> Batch {
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for (d, l) in items.into_iter().flatten() {
        data.extend_from_slice(&d);
        labels.push(l);
    }
    Batch { data, labels }
}

/// `[n, C, H, W]` with channels-last strides.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The floating kind of `model`'s weights (float64 under `--float64`), which its inputs take.
fn weight_kind(model: &Model) -> Kind {
    model.vs.trainable_variables().first().map_or(Kind::Float, |t| t.kind())
}

fn to_input(b: &Batch, pre: &Preprocess, device: Device, cl: bool, kind: Kind) -> (Tensor, Tensor) {
    let [c, h, w] = pre.output_shape();
    let n = b.labels.len() as i64;
    let xs = Tensor::from_slice(&b.data).view([n, c as i64, h as i64, w as i64]).to_device(device).to_kind(kind);
    let xs = if cl { channels_last(&xs) } else { xs };
    (xs, Tensor::from_slice(&b.labels).to_device(device))
}

/// Evaluation of a model on labelled samples.
#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Images evaluated.
    pub n: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Top-1 and top-5 accuracy, %.
    pub acc1: f64,
    pub acc5: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Files that failed to decode.
    pub failed: Vec<(PathBuf, String)>,
    pub seconds: f64,
}

impl EvalResult {
    /// The result of `n` images from their summed loss and top-1 / top-5 hits (NaN figures
    /// when `n` is 0).
    fn from_counts(
        n: usize,
        loss_sum: f64,
        (top1, top5): (u64, u64),
        confusion: Vec<Vec<u64>>,
        failed: Vec<(PathBuf, String)>,
        seconds: f64,
    ) -> Self {
        let pct = |k: u64| if n == 0 { f64::NAN } else { 100.0 * k as f64 / n as f64 };
        EvalResult {
            n,
            loss: if n == 0 { f64::NAN } else { loss_sum / n as f64 },
            acc1: pct(top1),
            acc5: pct(top5),
            confusion,
            failed,
            seconds,
        }
    }

    /// Per-class accuracy (%), `None` for classes without images.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| 100.0 * row[i] as f64 / total as f64)
            })
            .collect()
    }
}

/// How [`evaluate`] runs.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions<'a> {
    pub batch_size: usize,
    /// A progress bar on standard error.
    pub progress: bool,
    /// The inference engine ([`crate::infer::Engine::Auto`]: onednn on the CPU for long runs).
    pub engine: crate::infer::Engine,
    /// int8: the calibration images of [`crate::infer::Runner::int8`] (`None`: the model's own
    /// precision).
    pub calibration: Option<&'a Tensor>,
}

/// Evaluates `model` in eval mode on `indices` of `source`, with the eval transform `pre`.
pub fn evaluate(
    model: &Model,
    source: &Source,
    indices: &[usize],
    num_classes: usize,
    pre: &Preprocess,
    opts: EvalOptions<'_>,
) -> Result<EvalResult> {
    let start = Instant::now();
    let (batch_size, progress) = (opts.batch_size, opts.progress);
    let runner = match opts.calibration {
        Some(calibration) => crate::infer::Runner::int8(model, opts.engine, calibration.shallow_clone())?,
        None => crate::infer::Runner::for_images(model, opts.engine, Some(indices.len())),
    };
    let device = model.vs.device();
    let batches: Vec<Vec<usize>> = indices.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect();
    let bar = crate::progress::Bar::images(indices.len(), progress);
    let mut confusion = vec![vec![0u64; num_classes]; num_classes];
    let (mut n, mut loss_sum, mut top1, mut top5) = (0usize, 0f64, 0u64, 0u64);
    let make = |b: &[usize]| {
        assemble(
            b.par_iter()
                .map(|&i| {
                    let p = source.picture(i).ok()?;
                    let data = match &*p {
                        Picture::Gray(g) => pre.apply_luma(g),
                        Picture::Rgb(r) => pre.apply(r),
                    }
                    .ok()?;
                    Some((data, source.samples[i].label as i64))
                })
                .collect(),
        )
    };
    let chunk = {
        let [c, h, w] = pre.output_shape();
        model.inference_chunk([c as i64, h as i64, w as i64])
    };
    let first_batch = crate::infer::Runner::first_batch(batch_size, indices.len(), chunk);
    prefetch_after(
        &batches,
        2,
        |b| make(b),
        || runner.prepare(first_batch, pre.output_shape()),
        |_, b| {
            bar.inc(b.labels.len() as u64);
            if b.labels.is_empty() {
                return Ok(());
            }
            let (xs, ys) = to_input(&b, pre, device, false, weight_kind(model));
            model.check_input(&xs)?;
            let logits = runner.predict_in_chunks(&xs, chunk)?.to_kind(Kind::Float);
            ensure!(
                logits.size()[1] as usize == num_classes,
                "the model has {} outputs, the data set {num_classes} classes",
                logits.size()[1]
            );
            let loss = logits.cross_entropy_loss::<Tensor>(&ys, None, Reduction::Sum, -100, 0.0);
            loss_sum += loss.double_value(&[]);
            let k = 5.min(num_classes as i64);
            let (_, idx) = logits.topk(k, -1, true, true);
            let idx = Vec::<Vec<i64>>::try_from(idx.to_device(Device::Cpu))?;
            for (row, &y) in idx.iter().zip(&b.labels) {
                confusion[y as usize][row[0] as usize] += 1;
                top1 += u64::from(row[0] == y);
                top5 += u64::from(row.contains(&y));
            }
            n += b.labels.len();
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    let wanted: HashSet<&Path> = indices.iter().map(|&i| source.samples[i].path.as_path()).collect();
    for (p, e) in source.failures() {
        if wanted.contains(p.as_path()) {
            failed.push((p, e));
        }
    }
    Ok(EvalResult::from_counts(n, loss_sum, (top1, top5), confusion, failed, start.elapsed().as_secs_f64()))
}

/// Sums an evaluation over the ranks of a data-parallel job: exact counts (the confusion
/// matrix, top-1 and top-5 hits), the loss summed; every rank gets the whole result.
pub fn all_reduce_eval(group: &crate::dist::Group, r: EvalResult) -> Result<EvalResult> {
    let k = r.confusion.len();
    // top-5 hits, recovered exactly from the percentage of this rank's images.
    let top5 = if r.n == 0 { 0 } else { (r.acc5 * r.n as f64 / 100.0).round() as u64 };
    let mut counts: Vec<u64> = r.confusion.iter().flatten().copied().collect();
    counts.extend([r.n as u64, top5]);
    let counts = group.sum_u64(&counts)?;
    let loss = group.sum_f64(&[if r.n == 0 { 0.0 } else { r.loss * r.n as f64 }])?[0];
    let confusion: Vec<Vec<u64>> = counts[..k * k].chunks(k.max(1)).map(<[u64]>::to_vec).collect();
    let (n, top5) = (counts[k * k] as usize, counts[k * k + 1]);
    let top1: u64 = (0..k).map(|i| confusion[i][i]).sum();
    Ok(EvalResult::from_counts(n, loss, (top1, top5), confusion, r.failed, r.seconds))
}

/// What the ranks of a data-parallel run must agree on, as digests: the flags (all but the
/// device, which is each rank's own GPU), the data (files, labels, sizes), and the starting
/// weights when they come from a file (pretrained or resumed; the new head is left out, it is
/// random and broadcast from rank 0 like everything else).
fn run_digests(cfg: &TrainConfig, data: &DataSet, model: &Model, resumed: bool) -> Result<Vec<(&'static str, u64)>> {
    use crate::dist::{digest, digest_tensors};
    let mut flags = serde_json::to_value(cfg)?;
    if let Some(o) = flags.as_object_mut() {
        o.remove("device");
        o.insert("resume".into(), cfg.resume.into());
    }
    let mut files = String::new();
    for s in data.train.iter().chain(&data.val) {
        let rel = s.path.strip_prefix(&cfg.data).unwrap_or(&s.path);
        files += &format!("{}\t{}\t{}x{}\n", rel.display(), s.label, s.size.0, s.size.1);
    }
    files += &format!("{} train\n{}\n", data.train.len(), data.classes.join(","));
    let head = model.net.classifier_prefixes();
    let entries = model_entries(model);
    let weights =
        entries.iter().filter(|(n, _)| resumed || (cfg.pretrained && !head.iter().any(|p| n.starts_with(p.as_str()))));
    let shapes: String = entries.iter().map(|(n, t)| format!("{n}{:?};", t.size())).collect();
    Ok(vec![
        ("the flags", digest(serde_json::to_string(&flags)?.as_bytes())),
        ("the model", digest(shapes.as_bytes())),
        ("the data", digest(files.as_bytes())),
        ("the starting weights", digest_tensors(weights.map(|(n, t)| (n.as_str(), t)))?),
    ])
}

/// What the ranks of a data-parallel `zoo eval` must agree on: the weights and the images.
pub fn eval_digests(model: &Model, data: &DataSet, root: &Path) -> Result<Vec<(&'static str, u64)>> {
    let mut files = String::new();
    for s in &data.val {
        let rel = s.path.strip_prefix(root).unwrap_or(&s.path);
        files += &format!("{}\t{}\n", rel.display(), s.label);
    }
    let entries = model_entries(model);
    Ok(vec![
        ("the weights", crate::dist::digest_tensors(entries.iter().map(|(n, t)| (n.as_str(), t)))?),
        ("the data", crate::dist::digest(files.as_bytes())),
    ])
}

/// The eval preprocessing of a run: the weights' (or model's), with `--input-size`/`--resize`.
pub fn run_preprocess(base: &Preprocess, input_size: Option<u32>, resize: Option<u32>) -> Preprocess {
    let mut pre = base.clone();
    if let Some(n) = input_size {
        pre.crop = [n, n];
        pre.resize = if pre.channels == 1 { n } else { (f64::from(n) / 0.875).round() as u32 };
    }
    if let Some(r) = resize {
        pre.resize = r;
    }
    pre
}

/// The model's variables as checkpoint entries, sorted by name.
pub fn model_entries(model: &Model) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Compares the stored configuration with the current one: hard mismatches fail, others warn.
fn check_resume(stored: &TrainConfig, now: &TrainConfig) -> Result<Vec<String>> {
    if pretrained::arch_of(&stored.model)?.name != pretrained::arch_of(&now.model)?.name {
        bail!("the run in {} trains {}, not {}", now.out.display(), stored.model, now.model);
    }
    if stored.optimizer.name() != now.optimizer.name() {
        bail!(
            "the run in {} uses --optimizer {}, not {}",
            now.out.display(),
            stored.optimizer.name(),
            now.optimizer.name()
        );
    }
    if stored.freeze != now.freeze {
        bail!("the run in {} uses --freeze {}, not {}", now.out.display(), stored.freeze, now.freeze);
    }
    let (a, b) = (serde_json::to_value(stored)?, serde_json::to_value(now)?);
    let mut notes = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, va) in a {
            if ["device", "out", "resume", "stop_after", "progress"].contains(&k.as_str()) {
                continue;
            }
            if b.get(k) != Some(va) {
                notes.push(format!("{k} was {va}, now {}", b.get(k).cloned().unwrap_or_default()));
            }
        }
    }
    Ok(notes)
}

/// Loads `name` (`ARCH` or `ARCH.TAG`) with its weights through the one loading path
/// ([`pretrained::load_with`]): `weights` when given, else the manifest's file; class names and
/// preprocessing stored in a zoo checkpoint's metadata are used, then `preprocess` applied.
pub fn load_pretrained(
    name: &str,
    weights: Option<&Path>,
    device: Device,
    trust_unverified: bool,
    preprocess: &PreprocessOverride,
) -> Result<Loaded> {
    let mut opts = pretrained::LoadOptions::new(device);
    opts.fetch.trust_unverified |= trust_unverified;
    opts.preprocess = preprocess.clone();
    pretrained::load_with(name, weights, &opts)
}

/// Builds the model, loads weights and fixes the preprocessing.
fn build(cfg: &TrainConfig, classes: usize, device: Device) -> Result<(Model, Preprocess, String)> {
    let spec = pretrained::arch_of(&cfg.model)?;
    let (mut model, base, source) = if cfg.pretrained {
        let loaded =
            load_pretrained(&cfg.model, cfg.weights.as_deref(), device, cfg.trust_unverified, &cfg.preprocess)?;
        (loaded.model, loaded.preprocess, loaded.source)
    } else {
        let config = BuildConfig { num_classes: classes as i64, drop_rate: cfg.drop_rate };
        let model = Model::new(spec.name, config, device)?;
        let base = match pretrained::entry_for(&cfg.model).ok().flatten() {
            Some(e) => e.preprocess.clone(),
            None => pretrained::default_preprocess(spec),
        };
        let (base, _) = cfg.preprocess.apply(base, String::new())?;
        if let Some(w) = &cfg.weights {
            bail!("--weights {} with `zoo train` (random initialisation): use `zoo finetune`", w.display());
        }
        (model, base, "random initialisation".to_string())
    };
    if cfg.pretrained {
        if cfg.drop_rate.is_some() {
            eprintln!("warning: --drop-rate applies to training from scratch only; ignored");
        }
        model.reset_classifier(classes as i64);
    }
    let pre = run_preprocess(&base, cfg.input_size, cfg.resize);
    pre.validate()?;
    let min = spec.min_input as u32;
    if pre.crop[0] < min || pre.crop[1] < min {
        bail!(
            "{} needs inputs of at least {min}x{min}, the crop is {}x{}: raise --input-size",
            spec.name,
            pre.crop[1],
            pre.crop[0]
        );
    }
    if pre.channels as i64 != spec.input_size[0] {
        bail!("{} takes {} channel(s), the preprocessing gives {}", spec.name, spec.input_size[0], pre.channels);
    }
    Ok((model, pre, source))
}

/// The optimised parameters: trainable, not frozen; head at the full rate.
fn parameters(model: &Model, frozen: &Frozen, backbone_scale: f64) -> Vec<Param> {
    let head = model.net.classifier_prefixes();
    model_entries(model)
        .into_iter()
        .filter(|(n, _)| !is_buffer(n) && !frozen.contains(n))
        .map(|(name, tensor)| {
            let is_head = head.iter().any(|p| name.starts_with(p.as_str()));
            let decay = tensor.dim() > 1;
            Param { name, tensor, lr_scale: if is_head { 1.0 } else { backbone_scale }, decay }
        })
        .collect()
}

/// Runs (or resumes) a training run; see the module documentation.
pub fn run(cfg: &TrainConfig) -> Result<TrainSummary> {
    let mut run = Run::prepare(cfg)?;
    for epoch in (run.start_epoch + 1..=cfg.epochs).take(cfg.stop_after.unwrap_or(usize::MAX)) {
        let train = run.train_epoch(epoch)?;
        run.report_failures();
        let val = run.evaluate_val()?;
        let m = run.metrics(epoch, &train, val.as_ref());
        run.checkpoint(m, val.map(|v| v.acc1))?;
    }
    Ok(run.summary())
}

/// A run made ready by [`Run::prepare`]: what its epochs read, and what they advance.
struct Run<'a> {
    cfg: &'a TrainConfig,
    spec: &'static ModelSpec,
    device: Device,
    /// float16 autocast: `--amp` on a CUDA device.
    amp: bool,
    /// Channels-last inputs: `--channels-last` on a CUDA device.
    channels_last: bool,
    /// Under a data-parallel launch (crate::dist): the group, this rank and the world; rank 0
    /// alone writes files and reports.
    group: Option<&'static Group>,
    rank: usize,
    world: usize,
    lead: bool,
    data: DataSet,
    /// The train images, then the val images.
    source: Source,
    /// This rank's part of the val split (all of it in a single process); counts are summed.
    my_val: Vec<usize>,
    pre: Preprocess,
    model: Model,
    /// The floating kind of the weights, which the inputs take.
    input_kind: Kind,
    opt: Optimizer,
    scaler: GradScaler,
    reducer: Option<Reducer>,
    steps_per_epoch: u64,
    /// Epochs finished before this invocation.
    start_epoch: usize,
    /// Optimiser steps attempted (the schedule's position).
    global_step: u64,
    best_acc1: Option<f64>,
    best_epoch: usize,
    /// Every epoch's metrics, earlier invocations' included.
    history: Vec<EpochMetrics>,
    /// The files that failed to decode and were named already.
    reported_failures: HashSet<PathBuf>,
    files: RunFiles,
}

/// What one epoch of training measured, over every rank.
struct EpochTrain {
    /// The learning rate of its last step.
    lr: f64,
    loss: f64,
    acc1: f64,
    images_per_second: f64,
    started: Instant,
}

impl<'a> Run<'a> {
    /// Checks `cfg`, loads the data and builds the model (restored from the resume file with
    /// `--resume`), sets up the optimiser, says what will run and writes `run.json`.
    fn prepare(cfg: &'a TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let spec = pretrained::arch_of(&cfg.model)?;
        let device = parse_device(&cfg.device)?;
        let amp = cfg.amp && device.is_cuda();
        if cfg.amp && !amp {
            eprintln!("warning: --amp needs a CUDA device: training in float32 on the CPU");
        }
        let group = crate::dist::group();
        let (rank, world) = group.map_or((0, 1), |g| (g.rank, g.world));
        let lead = rank == 0;
        if let Some(n) = cfg.threads {
            tch::set_num_threads(n.max(1) as i32);
        }
        check_out(cfg)?;

        let data = dataset::image_folder(&cfg.data, cfg.val_split, cfg.seed)?;
        for w in data.warnings.iter().filter(|_| lead) {
            eprintln!("warning: {}", crate::text::escape_controls(w));
        }
        ensure!(!data.train.is_empty(), "no training images in {}", cfg.data.display());

        tch::manual_seed(cfg.seed as i64);
        let (mut model, pre, source_name) = build(cfg, data.classes.len(), device)?;
        if lead {
            std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
        }
        let resumed = if cfg.resume { Some(restore(cfg, &data.classes, &model, lead)?) } else { None };
        let channels_last = cfg.channels_last && device.is_cuda();
        let frozen = prepare_model(cfg, &mut model, &pre, channels_last, group, &data, resumed.is_some())?;
        let (mut opt, reducer, trained) = optimiser(cfg, &model, &frozen, group)?;
        let mut scaler = GradScaler::new(amp);
        let (mut start_epoch, mut global_step, mut best_acc1, mut best_epoch) = (0, 0u64, None::<f64>, 0);
        if let Some((st, optim)) = &resumed {
            opt.load_state(optim, st.optimizer_steps).context("restoring the optimizer state")?;
            scaler = st.scaler;
            scaler.enabled = amp;
            (start_epoch, global_step, best_acc1, best_epoch) = (st.epoch, st.global_step, st.best_acc1, st.best_epoch);
            if start_epoch < cfg.epochs && lead {
                eprintln!("resuming {} at epoch {} of {}", cfg.out.display(), start_epoch + 1, cfg.epochs);
            }
        }

        let n_train = data.train.len();
        let val_idx: Vec<usize> = (n_train..n_train + data.val.len()).collect();
        let my_val = crate::dist::sampler::split(&val_idx, rank, world);
        // Samples per rank and epoch: DistributedSampler's ceil(N / W).
        let batches_per_epoch = n_train.div_ceil(world).div_ceil(cfg.batch_size);
        let source = Source::new(data.train.iter().chain(&data.val).cloned().collect(), pre.channels, cfg.cache_mb);
        let files = RunFiles::new(cfg, spec.name, &source_name, &pre, &data, device)?;
        let mut run = Run {
            cfg,
            spec,
            device,
            amp,
            channels_last,
            group,
            rank,
            world,
            lead,
            data,
            source,
            my_val,
            pre,
            input_kind: weight_kind(&model),
            model,
            opt,
            scaler,
            reducer,
            steps_per_epoch: batches_per_epoch.div_ceil(cfg.accumulate) as u64,
            start_epoch,
            global_step,
            best_acc1,
            best_epoch,
            history: Vec::new(),
            reported_failures: HashSet::new(),
            files,
        };
        run.announce(&source_name, trained, &frozen);
        if let Some(path) = cfg.show_augment.as_ref().filter(|_| lead) {
            run.show_augment(path)?;
        }
        if let Some((st, _)) = resumed.as_ref().filter(|(st, _)| st.world_size != world) {
            // Another world size, another number of steps per epoch: the schedule restarts from
            // the epoch boundary in this run's steps.
            run.global_step = st.epoch as u64 * run.steps_per_epoch;
            if lead {
                eprintln!("resuming a run of {} process(es) with {world}", st.world_size);
            }
        }
        run.history = run.files.history(start_epoch);
        if lead {
            run.files.write_run_json(start_epoch, best_epoch, best_acc1)?;
        }
        if start_epoch >= cfg.epochs && lead {
            eprintln!(
                "{} already ran {start_epoch} epoch(s) (--epochs {}): raise --epochs to train further",
                cfg.out.display(),
                cfg.epochs
            );
        }
        Ok(run)
    }

    /// Says what trains on what (rank 0).
    fn announce(&self, source_name: &str, trained: i64, frozen: &Frozen) {
        if !self.lead {
            return;
        }
        let cfg = self.cfg;
        if let Some(g) = self.group {
            eprintln!(
                "data-parallel: {} processes ({}, {}), {} images per process and step, {} per step in all",
                self.world,
                if g.device.is_cuda() { "NCCL" } else { "Gloo" },
                g.address,
                cfg.batch_size,
                cfg.batch_size * self.world
            );
        }
        eprintln!(
            "{}: {} ({}), {} classes, {} train / {} val images, {} of {} parameters trained{}, {:?}{}{}",
            if cfg.pretrained { "finetune" } else { "train" },
            self.spec.name,
            source_name,
            self.data.classes.len(),
            self.data.train.len(),
            self.data.val.len(),
            trained,
            self.model.num_params(),
            if frozen.vars.is_empty() { String::new() } else { format!(" (--freeze {})", cfg.freeze) },
            self.device,
            if self.amp { ", amp" } else { "" },
            if self.source.cached() { ", images cached in memory" } else { "" },
        );
    }

    /// Writes a grid of the next epoch's first 32 training samples, augmented, to `path`.
    fn show_augment(&self, path: &Path) -> Result<()> {
        let (source, pre, epoch) = (&self.source, &self.pre, self.start_epoch + 1);
        let order = epoch_order(self.data.train.len(), self.cfg.seed, epoch);
        let pics: Vec<Picture> = order
            .iter()
            .take(32)
            .collect::<Vec<_>>()
            .par_iter()
            .filter_map(|&&i| augmented(source, pre, self.cfg, i, epoch).ok())
            .collect();
        augment::write_grid(&pics, 8, path)?;
        eprintln!("wrote {} augmented samples to {}", pics.len(), path.display());
        Ok(())
    }

    /// One epoch of training on this rank's shard of the train split: a forward and backward
    /// pass per batch, an optimiser step per `--accumulate` batches.
    fn train_epoch(&mut self, epoch: usize) -> Result<EpochTrain> {
        let (cfg, rank, world, amp) = (self.cfg, self.rank, self.world, self.amp);
        // Dropout masks differ between ranks (rank 0 draws what a single process draws).
        let rank_salt = if rank == 0 { 0 } else { mix(rank as u64) };
        tch::manual_seed((mix(mix(cfg.seed) ^ epoch as u64) ^ rank_salt) as i64 & i64::MAX);
        let started = Instant::now();
        let order = crate::dist::sampler::shard(&epoch_order(self.data.train.len(), cfg.seed, epoch), rank, world);
        let batches: Vec<Vec<usize>> = order.chunks(cfg.batch_size).map(<[usize]>::to_vec).collect();
        let bar = crate::progress::Bar::epoch(order.len(), cfg.progress && self.lead, epoch, cfg.epochs);
        let (mut seen, mut loss_sum, mut correct) = (0usize, 0f64, 0i64);
        let mut lr = Schedule::lr(&cfg.schedule, cfg.lr, self.global_step, self.steps_per_epoch, cfg.epochs);
        let (source, pre) = (&self.source, &self.pre);
        let make = |b: &[usize]| {
            let items = b
                .par_iter()
                .map(|&i| {
                    let p = augmented(source, pre, cfg, i, epoch).ok()?;
                    let mut v = vec![0f32; pre.output_len()];
                    augment::normalize_into(&p, pre, &mut v).ok()?;
                    Some((v, source.samples[i].label as i64))
                })
                .collect();
            assemble(items)
        };
        self.opt.zero_grad();
        let mut micro = 0;
        prefetch(
            &batches,
            2,
            |b| make(b),
            |bi, b| {
                bar.inc(b.labels.len() as u64);
                let last = bi + 1 == batches.len();
                if b.labels.is_empty() && self.reducer.is_some() {
                    // The other ranks are in this step's all-reduce: stop them rather than hang.
                    bail!("rank {rank}: no image of batch {} could be read: remove the unreadable files", bi + 1);
                }
                if !b.labels.is_empty() {
                    // The last micro-batch of an optimiser step all-reduces its gradients.
                    let sync = (micro + 1) % cfg.accumulate == 0 || last;
                    if let Some(r) = self.reducer.as_mut() {
                        r.before_forward(sync)?;
                    }
                    let (xs, ys) = to_input(&b, pre, self.device, self.channels_last, self.input_kind);
                    if bi == 0 {
                        self.model.check_input(&xs)?;
                    }
                    let scale = self.scaler.scale;
                    let forward = || forward_loss(&self.model, &xs, &ys, cfg.label_smoothing, self.spec.aux_weight);
                    let (loss, logits) = if amp { super::autocast::autocast(true, forward) } else { forward() };
                    if let Some(r) = self.reducer.as_mut() {
                        r.after_forward(sync)?;
                    }
                    (&loss * (scale / cfg.accumulate as f64)).f_backward().map_err(|e| match &self.reducer {
                        Some(r) => anyhow::anyhow!("{}: {e}", r.group().failed("the gradient all-reduce")),
                        None => anyhow::anyhow!("backward: {e}"),
                    })?;
                    let l = loss.double_value(&[]);
                    if !l.is_finite() && !amp {
                        bail!("the loss became {l} at epoch {epoch}, batch {}: lower --lr", bi + 1);
                    }
                    let n = b.labels.len();
                    loss_sum += l * n as f64;
                    correct += logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64).int64_value(&[]);
                    seen += n;
                    micro += 1;
                    bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
                }
                if micro > 0 && (micro % cfg.accumulate == 0 || last) {
                    lr = Schedule::lr(&cfg.schedule, cfg.lr, self.global_step, self.steps_per_epoch, cfg.epochs);
                    self.global_step += 1;
                    // Every micro-batch of this step was scaled by the current scale.
                    let scale_used = self.scaler.scale;
                    let finite = !amp || self.opt.grads_finite();
                    if self.scaler.update(finite) {
                        self.opt.step(lr, scale_used);
                    } else {
                        // Through the bar, which clears itself, prints the line and redraws.
                        bar.println(&format!(
                            "amp: gradient overflow, step skipped (loss scale now {})",
                            self.scaler.scale
                        ));
                    }
                    self.opt.zero_grad();
                    micro = 0;
                }
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        if let Some(g) = self.group {
            let sums = g.sum_f64(&[loss_sum, correct as f64, seen as f64])?;
            (loss_sum, correct, seen) = (sums[0], sums[1] as i64, sums[2] as usize);
        }
        let train_secs = started.elapsed().as_secs_f64();
        ensure!(seen > 0, "no training image of epoch {epoch} could be read");
        Ok(EpochTrain {
            lr,
            loss: loss_sum / seen as f64,
            acc1: 100.0 * correct as f64 / seen as f64,
            images_per_second: seen as f64 / train_secs.max(1e-9),
            started,
        })
    }

    /// Names each file that failed to decode once, in the epoch it first failed.
    fn report_failures(&mut self) {
        let fresh: Vec<(PathBuf, String)> =
            self.source.failures().into_iter().filter(|(p, _)| !self.reported_failures.contains(p)).collect();
        if let Some(w) = dataset::skipped_warning(&fresh) {
            eprintln!("warning: {w}");
        }
        self.reported_failures.extend(fresh.into_iter().map(|(p, _)| p));
    }

    /// The val split evaluated over every rank (`None` without one).
    fn evaluate_val(&self) -> Result<Option<EvalResult>> {
        if self.data.val.is_empty() {
            return Ok(None);
        }
        let (classes, cfg) = (self.data.classes.len(), self.cfg);
        let r = evaluate(
            &self.model,
            &self.source,
            &self.my_val,
            classes,
            &self.pre,
            EvalOptions {
                batch_size: cfg.batch_size,
                progress: cfg.progress && self.lead,
                // The weights change every epoch: a trace would be stale by the next one.
                engine: crate::infer::Engine::Eager,
                calibration: None,
            },
        )?;
        Ok(Some(match self.group {
            Some(g) => all_reduce_eval(g, r)?,
            None => r,
        }))
    }

    /// The epoch's row of `metrics.csv`, printed (rank 0).
    fn metrics(&self, epoch: usize, train: &EpochTrain, val: Option<&EvalResult>) -> EpochMetrics {
        let m = EpochMetrics {
            epoch,
            lr: train.lr,
            train_loss: train.loss,
            train_acc1: train.acc1,
            val_loss: val.map_or(f64::NAN, |v| v.loss),
            val_acc1: val.map_or(f64::NAN, |v| v.acc1),
            val_acc5: val.map_or(f64::NAN, |v| v.acc5),
            seconds: train.started.elapsed().as_secs_f64(),
            images_per_second: train.images_per_second,
        };
        if self.lead {
            eprintln!(
                "epoch {epoch}/{}  lr {:.3e}  train loss {:.4} top-1 {:.2}%  val loss {:.4} top-1 {:.2}% top-5 {:.2}%  {:.1} s  {:.0} img/s",
                self.cfg.epochs, m.lr, m.train_loss, m.train_acc1, m.val_loss, m.val_acc1, m.val_acc5, m.seconds, m.images_per_second
            );
        }
        m
    }

    /// Records the epoch `m` (the best so far when its val top-1 `val_acc1` is, or without a
    /// val split) and writes its files (rank 0).
    fn checkpoint(&mut self, m: EpochMetrics, val_acc1: Option<f64>) -> Result<()> {
        let epoch = m.epoch;
        let improved = match (val_acc1, self.best_acc1) {
            (Some(v), Some(b)) => v > b,
            (Some(_), None) | (None, _) => true,
        };
        if improved {
            self.best_acc1 = val_acc1;
            self.best_epoch = epoch;
        }
        self.history.push(m);
        if !self.lead {
            return Ok(());
        }
        let state = ResumeState {
            epoch,
            global_step: self.global_step,
            optimizer_steps: self.opt.steps,
            best_acc1: self.best_acc1,
            best_epoch: self.best_epoch,
            scaler: self.scaler,
            classes: self.data.classes.clone(),
            config: self.cfg.clone(),
            world_size: self.world,
        };
        self.files.write_epoch(&model_entries(&self.model), improved, &self.history, &state, self.opt.state_entries())
    }

    /// What the run reports at its end; rank 0 names the best checkpoint.
    fn summary(self) -> TrainSummary {
        let out = self.cfg.out.clone();
        if let Some(b) = self.best_acc1.filter(|_| self.lead) {
            eprintln!(
                "best val top-1 {b:.2}% at epoch {}: {}",
                self.best_epoch,
                out.join("best.safetensors").display()
            );
        }
        let mut unread = self.data.skipped.clone();
        unread.extend(self.source.failures());
        TrainSummary {
            out,
            classes: self.data.classes,
            history: self.history,
            best_epoch: self.best_epoch,
            best_acc1: self.best_acc1,
            warnings: self.data.warnings,
            unread,
        }
    }
}

/// Refuses to start a run where one is, or to resume one that is not there.
fn check_out(cfg: &TrainConfig) -> Result<()> {
    let out = &cfg.out;
    if cfg.resume {
        ensure!(out.join(RESUME_FILE).exists(), "--resume {}: no {RESUME_FILE} there to continue from", out.display());
    } else if out.join(RESUME_FILE).exists() {
        bail!(
            "{} already holds a run: continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// The run `cfg` resumes: its state, checked against `classes` and `cfg`, and its optimiser's;
/// its weights are loaded into `model`.
fn restore(cfg: &TrainConfig, classes: &[String], model: &Model, lead: bool) -> Result<(ResumeState, StateDict)> {
    let path = cfg.out.join(RESUME_FILE);
    let st = checkpoints::read_resume_state(&path)?;
    if st.classes != classes {
        bail!(
            "the run in {} was trained on classes [{}], the data now has [{}]",
            cfg.out.display(),
            st.classes.join(", "),
            classes.join(", ")
        );
    }
    for note in check_resume(&st.config, cfg)?.iter().filter(|_| lead) {
        eprintln!("warning: resuming with a changed setting: {note}");
    }
    let (weights, optim) = checkpoints::read_resume_entries(&path)?;
    checkpoint::load_into(&model.vs, &weights, &Default::default()).context("restoring the weights")?;
    Ok((st, optim))
}

/// Readies `model` for training: float64 under `--float64`, the frozen part without
/// gradients, 4-D weights channels-last (`cl`), and under a data-parallel launch every rank checked
/// against the others and given rank 0's weights. Returns the frozen part.
fn prepare_model(
    cfg: &TrainConfig,
    model: &mut Model,
    pre: &Preprocess,
    cl: bool,
    group: Option<&Group>,
    data: &DataSet,
    resumed: bool,
) -> Result<Frozen> {
    if cfg.float64 {
        // In place: the layers' handles see the converted tensors.
        model.vs.double();
    }
    let [c, h, w] = pre.output_shape();
    let frozen = freeze::resolve(model, &cfg.freeze, [c as i64, h as i64, w as i64])?;
    for (name, t) in model.vs.variables() {
        if frozen.contains(&name) {
            let _ = t.set_requires_grad(false);
        }
    }
    if cl {
        tch::no_grad(|| {
            for (_, mut t) in model.vs.variables() {
                if t.dim() == 4 {
                    let v = channels_last(&t);
                    t.set_data(&v);
                }
            }
        });
    }
    if let Some(g) = group {
        // Refuse ranks started differently, then give everyone rank 0's weights (DDP's
        // _sync_module_states).
        g.check_same(&run_digests(cfg, data, model, resumed)?)?;
        let all: Vec<Tensor> = model_entries(model).into_iter().map(|(_, t)| t).collect();
        g.broadcast(&all, 0)?;
    }
    Ok(frozen)
}

/// The optimiser of `model`'s trained parameters, with the batch norms' training modes set for
/// the run and, under a data-parallel launch, the gradients' reducer; and how many weights train.
fn optimiser(
    cfg: &TrainConfig,
    model: &Model,
    frozen: &Frozen,
    group: Option<&'static Group>,
) -> Result<(Optimizer, Option<Reducer>, i64)> {
    let params = parameters(model, frozen, cfg.backbone_lr_scale);
    ensure!(!params.is_empty(), "nothing to train: --freeze {} leaves no parameter", cfg.freeze);
    let sync_bn: Option<crate::nn::SyncBatchNorm> =
        group.filter(|_| cfg.sync_bn).map(|_| crate::dist::sync_batch_norm as crate::nn::SyncBatchNorm);
    if cfg.sync_bn && group.is_none() {
        eprintln!("warning: --sync-bn outside a data-parallel launch: plain batch norm");
    }
    // The batch norms' training modes, held by the layers for the whole run.
    model.batch_norms.freeze(&frozen.batch_norms);
    model.batch_norms.set_momentum(cfg.bn_momentum);
    model.batch_norms.set_sync(sync_bn);
    let reducer = match group {
        Some(g) => {
            let leaves: Vec<Tensor> = params.iter().map(|p| p.tensor.shallow_clone()).collect();
            let buffers = model_entries(model).into_iter().filter(|(n, _)| is_buffer(n)).map(|(_, t)| t).collect();
            Some(Reducer::new(g, &leaves, buffers)?)
        }
        None => None,
    };
    let trained: i64 = params.iter().map(|p| p.tensor.numel() as i64).sum();
    Ok((Optimizer::new(cfg.optimizer, params, cfg.weight_decay), reducer, trained))
}

/// The train split (indices `0..n_train`) in epoch `epoch`'s order, the same on every rank.
fn epoch_order(n_train: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_train).collect();
    Rng::for_sample(seed, epoch as u64, u64::MAX).shuffle(&mut order);
    order
}

/// Sample `i` of `source`, augmented as epoch `epoch` draws it.
fn augmented(
    source: &Source,
    pre: &Preprocess,
    cfg: &TrainConfig,
    i: usize,
    epoch: usize,
) -> std::result::Result<Picture, String> {
    let p = source.picture(i)?;
    let mut rng = Rng::for_sample(cfg.seed, epoch as u64, i as u64);
    augment::augment(&p, pre, &cfg.augment, &mut rng).map_err(|e| format!("{e:#}"))
}

/// The training loss of a batch, the auxiliary heads' weighted in (`aux_weight`), and the
/// main head's logits: float32, or float64 under `--float64`.
fn forward_loss(model: &Model, xs: &Tensor, ys: &Tensor, label_smoothing: f64, aux_weight: f64) -> (Tensor, Tensor) {
    let (logits, aux) = model.net.forward_aux(xs, true);
    // Half-precision logits go to float32 for the loss; float64 stays.
    let loss_kind = |l: &Tensor| if l.kind() == Kind::Double { Kind::Double } else { Kind::Float };
    let logits = logits.to_kind(loss_kind(&logits));
    let ce = |l: &Tensor| {
        l.to_kind(loss_kind(l)).cross_entropy_loss::<Tensor>(ys, None, Reduction::Mean, -100, label_smoothing)
    };
    let loss = aux.iter().fold(ce(&logits), |acc, a| acc + ce(a) * aux_weight);
    (loss, logits)
}

/// Writes `confusion.csv`, `per_class.csv` and (with the `plot` feature) `confusion.png` of an
/// evaluation into `dir`.
/// `confusion.csv` has a row and a column for every class when there are at most
/// [`CONFUSION_MAX_CLASSES`], else for the classes that occur (as truth or as a
/// prediction), so 3 images of a 1,000-class model give a 3x3 table, not a 1000x1000 one.
pub fn write_eval_reports(dir: &Path, title: &str, classes: &[String], r: &EvalResult) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = classes.len();
    let occurs = |i: usize| r.confusion[i].iter().sum::<u64>() > 0 || r.confusion.iter().any(|row| row[i] > 0);
    let shown: Vec<usize> = (0..n).filter(|&i| n <= CONFUSION_MAX_CLASSES || occurs(i)).collect();
    let csv_err = |e: csv::Error| anyhow::anyhow!("writing a CSV report in {}: {e}", dir.display());
    let mut w = csv::Writer::from_path(dir.join("confusion.csv")).map_err(csv_err)?;
    w.write_record(std::iter::once("true\\predicted").chain(shown.iter().map(|&i| classes[i].as_str())))
        .map_err(csv_err)?;
    for &t in &shown {
        let row = shown.iter().map(|&p| r.confusion[t][p].to_string());
        w.write_record(std::iter::once(classes[t].clone()).chain(row)).map_err(csv_err)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("per_class.csv")).map_err(csv_err)?;
    w.write_record(["class", "images", "correct", "accuracy"]).map_err(csv_err)?;
    for (i, c) in classes.iter().enumerate() {
        let total: u64 = r.confusion[i].iter().sum();
        let acc =
            if total > 0 { format!("{:.2}", 100.0 * r.confusion[i][i] as f64 / total as f64) } else { String::new() };
        w.write_record([c.clone(), total.to_string(), r.confusion[i][i].to_string(), acc]).map_err(csv_err)?;
    }
    w.flush()?;
    #[cfg(feature = "plot")]
    crate::plot::confusion(&dir.join("confusion.png"), title, classes, &r.confusion)?;
    let _ = title;
    Ok(())
}

/// Confusion matrices of more classes than this are reduced to the classes that occur (the
/// CSV) or that are most involved (the picture).
pub const CONFUSION_MAX_CLASSES: usize = 30;
