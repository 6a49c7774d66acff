//! `zoo finetune`, `zoo train`, `zoo eval` and `zoo dataset export-idx`: flags and what they run.
//!
//! The flag structs are clap `Args` so `bin/zoo.rs` only names them; the work is in
//! [`crate::train`] and [`crate::data::fashion_mnist`].
use crate::commands::preprocess::PreprocessArgs;
use crate::commands::TextFormat;
use crate::data::fashion_mnist;
use crate::train::checkpoints::{self, RESUME_FILE};
use crate::train::trainer::{self, Source};
use crate::train::{dataset, AugmentConfig, EvalResult, Freeze, OptimizerKind, Schedule, TrainConfig, TrainSummary};
use crate::weights::pretrained::{self, PreprocessOverride};
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The defaults the flags take and `--help` shows: the library's ([`TrainConfig::default`]).
fn defaults() -> &'static TrainConfig {
    static DEFAULTS: OnceLock<TrainConfig> = OnceLock::new();
    DEFAULTS.get_or_init(TrainConfig::default)
}

/// The defaults of the flags that set one variant's parameters: the library's constants'
/// ([`OptimizerKind::SGD`], [`Schedule::COSINE`], [`Schedule::STEP`]).
struct VariantDefaults {
    momentum: f64,
    min_lr: f64,
    step_size: usize,
    gamma: f64,
}

const VARIANT: VariantDefaults = match (OptimizerKind::SGD, Schedule::COSINE, Schedule::STEP) {
    (OptimizerKind::Sgd { momentum, .. }, Schedule::Cosine { min_lr, .. }, Schedule::Step { step_size, gamma, .. }) => {
        VariantDefaults { momentum, min_lr, step_size, gamma }
    }
    _ => unreachable!(),
};

/// Comma-separated numbers.
fn numbers(s: &str) -> Result<Vec<f64>, String> {
    s.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// `MIN,MAX`: a range flag's two numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range(pub [f64; 2]);

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.0[0], self.0[1])
    }
}

/// `--crop-scale`'s default: the library's RandomResizedCrop area range.
fn default_crop_scale() -> Range {
    Range(defaults().augment.crop_scale.expect("the default augmentation crops"))
}

fn parse_range(s: &str) -> Result<Range, String> {
    match numbers(s)?[..] {
        [a, b] => Ok(Range([a, b])),
        _ => Err(format!("'{s}': expected two numbers, MIN,MAX")),
    }
}

/// `--jitter`'s BRIGHTNESS,CONTRAST,SATURATION (one number when the three are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter(pub [f64; 3]);

impl std::fmt::Display for Jitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            [a, b, c] if a == b && b == c => write!(f, "{a}"),
            [a, b, c] => write!(f, "{a},{b},{c}"),
        }
    }
}

/// `--jitter`'s default: the library's brightness, contrast and saturation.
fn default_jitter() -> Jitter {
    let a = &defaults().augment;
    Jitter([a.brightness, a.contrast, a.saturation])
}

fn parse_jitter(s: &str) -> Result<Jitter, String> {
    match numbers(s)?[..] {
        [a] => Ok(Jitter([a; 3])),
        [a, b, c] => Ok(Jitter([a, b, c])),
        _ => Err(format!("'{s}': expected BRIGHTNESS,CONTRAST,SATURATION (or one number for all three)")),
    }
}

/// Flags of `zoo finetune` and `zoo train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// `ARCH` (`finetune`: its default weights) or `ARCH.TAG`; with `--resume DIR`, the run's.
    #[arg(required_unless_present = "resume")]
    pub model: Option<String>,
    /// Image folder: `DIR/train/<class>/` + `DIR/val/<class>/`, or `DIR/<class>/` (split by
    /// --val-split); with `--resume DIR`, the run's.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Output folder (default runs/ARCH); `--out` is the same flag.
    #[arg(long = "output", alias = "out")]
    pub out: Option<PathBuf>,
    /// Start from this checkpoint instead of the manifest's weights (finetune).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Learning rate of the head [default: sgd 0.01 finetune / 0.05 train, adamw 0.001].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay (not applied to biases and norm weights) [default: sgd 1e-4, adamw 0.01].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum, default_value_t = defaults().optimizer)]
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    #[arg(long, default_value_t = VARIANT.momentum)]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, value_enum, default_value_t = defaults().schedule)]
    pub schedule: Schedule,
    /// Linear warm-up, in epochs (fractions allowed).
    #[arg(long, default_value_t = defaults().schedule.warmup_epochs())]
    pub warmup_epochs: f64,
    /// Final learning rate of the cosine schedule.
    #[arg(long, default_value_t = VARIANT.min_lr)]
    pub min_lr: f64,
    /// Step schedule: epochs between decays.
    #[arg(long, default_value_t = VARIANT.step_size)]
    pub step_size: usize,
    /// Step schedule: decay factor.
    #[arg(long, default_value_t = VARIANT.gamma)]
    pub gamma: f64,
    #[arg(long, default_value_t = defaults().label_smoothing)]
    pub label_smoothing: f64,
    /// none, backbone, or until:STAGE (a stage name from `zoo info ARCH`, e.g. until:layer3).
    #[arg(long, default_value_t = defaults().freeze.to_string())]
    pub freeze: String,
    /// Learning-rate factor of everything but the head (discriminative fine-tuning).
    #[arg(long, default_value_t = defaults().backbone_lr_scale)]
    pub backbone_lr_scale: f64,
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Mixed precision (float16 autocast with loss scaling; CUDA only).
    #[arg(long)]
    pub amp: bool,
    /// Train in float64 (weights, activations, gradients, checkpoints): for checking numerics,
    /// e.g. that a data-parallel run equals one process; several times slower.
    #[arg(long)]
    pub float64: bool,
    /// Keep the NCHW layout on CUDA (channels-last is the default there).
    #[arg(long)]
    pub no_channels_last: bool,
    /// Sum gradients over N batches per optimiser step.
    #[arg(long, default_value_t = defaults().accumulate)]
    pub accumulate: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value_t = defaults().device.clone())]
    pub device: String,
    /// Fraction of each class held out for validation when DIR has no train/val folders.
    #[arg(long, default_value_t = defaults().val_split)]
    pub val_split: f64,
    /// Square input size for training and evaluation [default: the weights' or model's].
    #[arg(long)]
    pub input_size: Option<u32>,
    /// The eval preprocessing's overrides (`--resize` of the shorter side: default input size /
    /// 0.875, or the input size for 1-channel models).
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Dropout before the classifier (train only).
    #[arg(long)]
    pub drop_rate: Option<f64>,
    /// No augmentation at all (the eval transform).
    #[arg(long)]
    pub no_augment: bool,
    /// No RandomResizedCrop: the eval resize + center crop, then the other augmentations.
    #[arg(long)]
    pub no_crop: bool,
    /// RandomResizedCrop area range.
    #[arg(long, value_parser = parse_range, default_value_t = default_crop_scale())]
    pub crop_scale: Range,
    /// RandomResizedCrop aspect-ratio range.
    #[arg(long, value_parser = parse_range, default_value_t = Range(defaults().augment.crop_ratio))]
    pub crop_ratio: Range,
    /// Probability of a horizontal flip.
    #[arg(long, default_value_t = defaults().augment.hflip)]
    pub hflip: f64,
    /// Largest random rotation, degrees.
    #[arg(long, default_value_t = defaults().augment.rotate)]
    pub rotate: f64,
    /// Largest random shift, fraction of the size.
    #[arg(long, default_value_t = defaults().augment.translate)]
    pub translate: f64,
    /// Probability of contrast stretching.
    #[arg(long, default_value_t = defaults().augment.contrast_stretch)]
    pub contrast_stretch: f64,
    /// Probability of histogram equalisation.
    #[arg(long, default_value_t = defaults().augment.equalize)]
    pub equalize: f64,
    /// Probability of CLAHE.
    #[arg(long, default_value_t = defaults().augment.clahe)]
    pub clahe: f64,
    /// Colour jitter BRIGHTNESS,CONTRAST,SATURATION (or one number for all).
    #[arg(long, value_parser = parse_jitter, default_value_t = default_jitter())]
    pub jitter: Jitter,
    /// Write a grid of augmented training samples to this PNG first (add --stop-after 0 to only preview).
    #[arg(long)]
    pub show_augment: Option<PathBuf>,
    /// Continue the run in this folder with the settings it was started with (its
    /// resume.safetensors holds them); flags given here override them, each said on stderr.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after N epochs of this invocation (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Keep decoded images in memory when they fit in this many MiB (0: never).
    #[arg(long, default_value_t = defaults().cache_mb)]
    pub cache_mb: usize,
    /// Batch-norm momentum while training [default: finetune 0.1, PyTorch's, for every layer
    /// (TensorFlow ports such as EfficientNet-Lite carry 0.01, whose running statistics a short
    /// fine-tune leaves at ImageNet's); train: each layer's own].
    #[arg(long)]
    pub bn_momentum: Option<f64>,
    /// libtorch CPU threads [default: one per core]; 1 is faster for tiny models on a busy machine.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Accept weights whose source publishes no digest.
    #[arg(long)]
    pub trust_unverified: bool,
    /// Data-parallel runs: synchronised batch norm (statistics over every rank's batch, as
    /// PyTorch's SyncBatchNorm).
    #[arg(long)]
    pub sync_bn: bool,
    /// Data-parallel runs (torchrun, srun, RANK/WORLD_SIZE): seconds a rank waits for its peers
    /// (rendezvous and every collective) before it exits with an error.
    #[arg(long, default_value_t = DEFAULT_DIST_TIMEOUT)]
    pub dist_timeout: u64,
    /// The ids of the flags given on the command line (the rest took their defaults): what a
    /// resumed run takes from here rather than from the stored run. Filled by the command line
    /// (`zoo`'s main, from clap's value sources); `None` (a library caller) counts every flag as
    /// given.
    #[arg(skip)]
    pub explicit: Option<Vec<String>>,
}

/// The flags (clap ids) each run setting of a [`TrainConfig`] is made from.
fn flags_of(key: &str) -> &'static [&'static str] {
    match key {
        "model" => &["model"],
        "weights" => &["weights"],
        "data" => &["data"],
        "optimizer" => &["optimizer", "momentum", "nesterov"],
        "lr" => &["lr"],
        "schedule" => &["schedule", "warmup_epochs", "min_lr", "step_size", "gamma"],
        "channels_last" => &["no_channels_last"],
        "preprocess" => &["preprocess", "crop", "interpolation", "mean", "std"],
        "augment" => &[
            "no_augment",
            "no_crop",
            "crop_scale",
            "crop_ratio",
            "hflip",
            "rotate",
            "translate",
            "contrast_stretch",
            "equalize",
            "clahe",
            "jitter",
        ],
        "epochs" => &["epochs"],
        "batch_size" => &["batch_size"],
        "weight_decay" => &["weight_decay"],
        "label_smoothing" => &["label_smoothing"],
        "freeze" => &["freeze"],
        "backbone_lr_scale" => &["backbone_lr_scale"],
        "seed" => &["seed"],
        "amp" => &["amp"],
        "float64" => &["float64"],
        "accumulate" => &["accumulate"],
        "val_split" => &["val_split"],
        "input_size" => &["input_size"],
        "resize" => &["resize"],
        "drop_rate" => &["drop_rate"],
        "bn_momentum" => &["bn_momentum"],
        "sync_bn" => &["sync_bn"],
        _ => &[],
    }
}

/// The run stored in `DIR/resume.safetensors`: its configuration as it was started.
pub fn stored_run(dir: &Path) -> Result<TrainConfig> {
    let path = dir.join(RESUME_FILE);
    if !path.exists() {
        bail!("--resume {}: no {RESUME_FILE} there to continue from", dir.display());
    }
    Ok(checkpoints::read_resume_state(&path)?.config)
}

/// `--dist-timeout`'s default, seconds.
pub const DEFAULT_DIST_TIMEOUT: u64 = crate::dist::DEFAULT_TIMEOUT.as_secs();

impl TrainArgs {
    /// The run configuration these flags describe. With `--resume DIR`, the stored run's,
    /// with the flags given on the command line (and the per-invocation ones) in place of its.
    pub fn config(&self, pretrained: bool) -> Result<TrainConfig> {
        let Some(dir) = &self.resume else { return self.flags_config(pretrained, None) };
        let stored = stored_run(dir)?;
        if stored.pretrained != pretrained {
            let (was, is) = if stored.pretrained { ("finetune", "train") } else { ("train", "finetune") };
            bail!(
                "the run in {} was started by `zoo {was}`: continue it with `zoo {was} --resume {}`, not `zoo {is}`",
                dir.display(),
                dir.display()
            );
        }
        let now = self.flags_config(pretrained, Some(&stored))?;
        let given = |key: &str| match &self.explicit {
            None => true,
            Some(ids) => flags_of(key).iter().any(|f| ids.iter().any(|i| i == f)),
        };
        let mut merged = serde_json::to_value(&stored)?;
        if let (Some(m), Some(n)) = (merged.as_object_mut(), serde_json::to_value(&now)?.as_object()) {
            for (key, value) in n {
                if given(key) {
                    m.insert(key.clone(), value.clone());
                }
            }
        }
        let mut cfg: TrainConfig =
            serde_json::from_value(merged).context("merging the stored run's settings with the command line's")?;
        // What belongs to this invocation, not to the run, comes from its command line.
        cfg.out = now.out;
        cfg.device = now.device;
        cfg.threads = now.threads;
        cfg.cache_mb = now.cache_mb;
        cfg.resume = now.resume;
        cfg.stop_after = now.stop_after;
        cfg.show_augment = now.show_augment;
        cfg.progress = now.progress;
        cfg.trust_unverified = now.trust_unverified;
        Ok(cfg)
    }

    /// The configuration the flags alone give (`stored`: the run being resumed supplies the
    /// model and data when the command line does not name them).
    fn flags_config(&self, pretrained: bool, stored: Option<&TrainConfig>) -> Result<TrainConfig> {
        let model = match (&self.model, stored) {
            (Some(m), _) => m.clone(),
            (None, Some(s)) => s.model.clone(),
            (None, None) => bail!("name the model to train (or --resume a run)"),
        };
        let data = match (&self.data, stored) {
            (Some(d), _) => d.clone(),
            (None, Some(s)) => s.data.clone(),
            (None, None) => bail!("--data DIR is needed (or --resume a run)"),
        };
        let arch = pretrained::arch_of(&model)?.name;
        let out = match (&self.resume, &self.out) {
            (Some(r), Some(o)) if r != o => {
                bail!("--resume {} and --out {} name different folders", r.display(), o.display())
            }
            (Some(r), _) => r.clone(),
            (None, Some(o)) => o.clone(),
            (None, None) => PathBuf::from("runs").join(arch),
        };
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd { .. } => OptimizerKind::Sgd { momentum: self.momentum, nesterov: self.nesterov },
            adamw @ OptimizerKind::Adamw { .. } => adamw,
        };
        let lr = self.lr.unwrap_or(match (optimizer, pretrained) {
            (OptimizerKind::Adamw { .. }, _) => 1e-3,
            (OptimizerKind::Sgd { .. }, true) => 0.01,
            (OptimizerKind::Sgd { .. }, false) => 0.05,
        });
        let weight_decay = self.weight_decay.unwrap_or(match optimizer {
            OptimizerKind::Sgd { .. } => 1e-4,
            OptimizerKind::Adamw { .. } => 0.01,
        });
        let warmup_epochs = self.warmup_epochs;
        let schedule = match self.schedule {
            Schedule::Cosine { .. } => Schedule::Cosine { warmup_epochs, min_lr: self.min_lr },
            Schedule::Step { .. } => Schedule::Step { warmup_epochs, step_size: self.step_size, gamma: self.gamma },
            Schedule::Constant { .. } => Schedule::Constant { warmup_epochs },
        };
        let augment = if self.no_augment {
            AugmentConfig::none()
        } else {
            AugmentConfig {
                crop_scale: (!self.no_crop).then_some(self.crop_scale.0),
                crop_ratio: self.crop_ratio.0,
                hflip: self.hflip,
                rotate: self.rotate,
                translate: self.translate,
                contrast_stretch: self.contrast_stretch,
                equalize: self.equalize,
                clahe: self.clahe,
                brightness: self.jitter.0[0],
                contrast: self.jitter.0[1],
                saturation: self.jitter.0[2],
            }
        };
        Ok(TrainConfig {
            model,
            pretrained,
            weights: self.weights.clone(),
            data,
            out,
            val_split: self.val_split,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr,
            weight_decay,
            optimizer,
            schedule,
            label_smoothing: self.label_smoothing,
            freeze: self.freeze.parse::<Freeze>()?,
            backbone_lr_scale: self.backbone_lr_scale,
            seed: self.seed,
            amp: self.amp,
            channels_last: !self.no_channels_last,
            accumulate: self.accumulate,
            device: self.device.clone(),
            input_size: self.input_size,
            resize: self.pre.resize,
            preprocess: PreprocessOverride { resize: None, ..self.pre.to_override() },
            drop_rate: self.drop_rate,
            augment,
            cache_mb: self.cache_mb,
            bn_momentum: self.bn_momentum,
            sync_bn: self.sync_bn,
            float64: self.float64,
            threads: self.threads,
            resume: self.resume.is_some(),
            stop_after: self.stop_after,
            show_augment: self.show_augment.clone(),
            progress: std::io::stderr().is_terminal(),
            trust_unverified: self.trust_unverified,
        })
    }
}

/// `zoo finetune`: pretrained weights, a new head for the folder's classes.
pub fn finetune(args: &TrainArgs) -> Result<TrainSummary> {
    let mut cfg = args.config(true)?;
    cfg.bn_momentum = cfg.bn_momentum.or(Some(FINETUNE_BN_MOMENTUM));
    trainer::run(&joined(cfg, args.dist_timeout)?)
}

/// Batch-norm momentum of `zoo finetune` unless `--bn-momentum` says otherwise: PyTorch's. With
/// a TensorFlow port's 0.01 a short fine-tune validates with statistics still ImageNet's (3
/// epochs of EfficientNet-Lite0 on 300 Fashion-MNIST images: 46.0% at 0.01, 63.5% at 0.1).
pub const FINETUNE_BN_MOMENTUM: f64 = 0.1;

/// `cfg` on the device of this rank, once the job it was launched into (if any) is joined.
fn joined(mut cfg: TrainConfig, timeout: u64) -> Result<TrainConfig> {
    cfg.device = crate::dist::join_from_env(&cfg.device, Duration::from_secs(timeout))?;
    cfg.progress &= crate::dist::is_lead();
    Ok(cfg)
}

/// `zoo train`: the same loop from random initialisation.
pub fn train(args: &TrainArgs) -> Result<TrainSummary> {
    if args.freeze != "none" {
        bail!("--freeze needs pretrained weights: use `zoo finetune`");
    }
    trainer::run(&joined(args.config(false)?, args.dist_timeout)?)
}

/// Flags of `zoo eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// `ARCH`, `ARCH.TAG`, or ARCH with --weights FILE (e.g. a run's best.safetensors).
    pub model: String,
    /// Image folder: `DIR/val/<class>/` when present, else `DIR/<class>/`; folders are matched to
    /// the model's class names (or ImageNet's WordNet IDs, `n02123045/`).
    #[arg(long)]
    pub data: PathBuf,
    /// A local checkpoint instead of the manifest's weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `json`: the report as one JSON object (totals, per-class accuracy, unread files).
    #[arg(long, value_enum, default_value_t = TextFormat::Table)]
    pub format: TextFormat,
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Where confusion.csv, confusion.png and per_class.csv go (default eval/ARCH); `--out` is
    /// the same flag.
    #[arg(long = "output", alias = "out")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto: onednn on the CPU for 64 images or more, eager otherwise; or eager, jit, onednn (as
    /// `zoo classify --engine`).
    #[arg(long, value_enum, default_value_t = crate::infer::Engine::Auto)]
    pub engine: crate::infer::Engine,
    /// fp32; bf16 (CUDA, or a CPU with native bfloat16); fp16 (CUDA); int8 (the CPU's onednn
    /// engine, calibrated on --calibrate); auto: fp16 on CUDA, bf16 on CPUs where it beats fp32
    /// (AMX, AMD's AVX512-BF16), fp32 elsewhere (as `zoo classify`).
    #[arg(long, value_enum, default_value_t = crate::runtime::PrecisionChoice::Fp32)]
    pub precision: crate::runtime::PrecisionChoice,
    /// int8: image files and folders whose activation ranges calibrate the quantization; images
    /// held out from --data, like a training split (at most 128, evenly spread, are read).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub calibrate: Vec<PathBuf>,
    /// Accept weights whose source publishes no digest.
    #[arg(long)]
    pub trust_unverified: bool,
    /// Data-parallel evaluation: seconds a rank waits for its peers.
    #[arg(long, default_value_t = DEFAULT_DIST_TIMEOUT)]
    pub dist_timeout: u64,
}

/// `zoo eval`: prints top-1/top-5 and per-class accuracy, writes the confusion matrix.
pub fn eval(args: &EvalArgs) -> Result<EvalResult> {
    let device = crate::dist::join_from_env(&args.device, Duration::from_secs(args.dist_timeout))?;
    let device = crate::commands::classify::parse_device(&device)?;
    let lead = crate::dist::is_lead();
    let pre = args.pre.to_override();
    let precision = args.precision.resolve(device);
    crate::runtime::check_precision(precision, device)?;
    let int8 = precision == crate::runtime::Precision::Int8;
    if int8 && args.calibrate.is_empty() {
        bail!(
            "int8 (--precision int8) needs calibration images: --calibrate DIR with a few dozen images held out from \
             --data (a training split); their activation ranges fix the quantization"
        );
    }
    let mut loaded =
        trainer::load_pretrained(&args.model, args.weights.as_deref(), device, args.trust_unverified, &pre)?;
    loaded.model.set_precision(precision)?;
    let calibration = match int8 {
        true => {
            let files = crate::data::inputs::collect_files(&args.calibrate);
            let decode = crate::data::batch::decode_options(&loaded.preprocess, Default::default(), false);
            Some(crate::infer::calibration_images(&files, &loaded.preprocess, &decode)?)
        }
        false => None,
    };
    let data = dataset::eval_folder(&args.data, &loaded.labels)?;
    for w in data.warnings.iter().filter(|_| lead) {
        eprintln!("warning: {}", crate::text::escape_controls(w));
    }
    let n = data.val.len();
    let source = Source::new(data.val.clone(), loaded.preprocess.channels, 0);
    let all: Vec<usize> = (0..n).collect();
    // Under a data-parallel launch each rank evaluates every W-th image; counts are summed.
    let idx = match crate::dist::group() {
        Some(g) => {
            g.check_same(&trainer::eval_digests(&loaded.model, &data, &args.data)?)?;
            crate::dist::sampler::split(&all, g.rank, g.world)
        }
        None => all,
    };
    let progress = std::io::stderr().is_terminal() && lead;
    let r = trainer::evaluate(
        &loaded.model,
        &source,
        &idx,
        loaded.labels.len(),
        &loaded.preprocess,
        trainer::EvalOptions {
            batch_size: args.batch_size,
            progress,
            engine: args.engine,
            calibration: calibration.as_ref(),
        },
    )?;
    let r = match crate::dist::group() {
        Some(g) => trainer::all_reduce_eval(g, r)?,
        None => r,
    };
    if !lead {
        return Ok(r);
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("eval").join(loaded.model.spec.name));
    let title = format!("{} on {}", loaded.source, args.data.display());
    trainer::write_eval_reports(&out, &title, &loaded.labels, &r)?;
    match args.format {
        TextFormat::Table => print!("{}", render_eval(&loaded.source, &args.data, &loaded.labels, &r)),
        TextFormat::Json => print!("{}", eval_json(&loaded.source, &args.data, &loaded.labels, &r, &data.skipped)?),
    }
    eprintln!("wrote {}/confusion.csv, confusion.png, per_class.csv", out.display());
    // Files whose header could not be read were named when the folder was scanned; those that
    // failed to decode are named here; all of them make the exit status 1.
    for (path, why) in &r.failed {
        eprintln!("{}", crate::text::escape_controls(&format!("zoo eval: skipped {}: {why}", path.display())));
    }
    let mut r = r;
    r.failed.extend(data.skipped.iter().cloned());
    if !r.failed.is_empty() {
        eprintln!("zoo eval: {} image(s) could not be read and were not evaluated (named above)", r.failed.len());
    }
    Ok(r)
}

/// The report as JSON: what [`render_eval`] prints, plus every unread file.
pub fn eval_json(
    source: &str,
    data: &Path,
    labels: &[String],
    r: &EvalResult,
    skipped: &[(PathBuf, String)],
) -> Result<String> {
    let per_class: Vec<serde_json::Value> = r
        .per_class()
        .iter()
        .enumerate()
        .filter_map(|(i, acc)| {
            let images: u64 = r.confusion[i].iter().sum();
            acc.map(|a| serde_json::json!({"class": labels[i], "images": images, "correct": r.confusion[i][i], "accuracy": a}))
        })
        .collect();
    let unread: Vec<serde_json::Value> = r
        .failed
        .iter()
        .chain(skipped)
        .map(|(p, e)| serde_json::json!({"path": p.display().to_string(), "error": e}))
        .collect();
    let v = serde_json::json!({
        "weights": source,
        "data": data.display().to_string(),
        "images": r.n,
        "top1": r.acc1,
        "top5": r.acc5,
        "loss": r.loss,
        "seconds": r.seconds,
        "per_class": per_class,
        "unread": unread,
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// The text report of an evaluation.
pub fn render_eval(source: &str, data: &Path, labels: &[String], r: &EvalResult) -> String {
    let mut s = format!(
        "{source} on {}: {} images, top-1 {:.2}%, top-5 {:.2}%, loss {:.4} ({:.1} s)\n",
        data.display(),
        r.n,
        r.acc1,
        r.acc5,
        r.loss,
        r.seconds
    );
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(5).clamp(5, 40);
    for (i, acc) in r.per_class().iter().enumerate() {
        if let Some(a) = acc {
            let total: u64 = r.confusion[i].iter().sum();
            s += &format!("  {:<width$}  {:>6.2}%  ({} images)\n", crate::text::escape_controls(&labels[i]), a, total);
        }
    }
    s
}

/// `zoo dataset` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DatasetCommand {
    /// Turn an IDX image/label pair (Fashion-MNIST, MNIST) into an image folder of PNGs.
    ExportIdx(ExportIdxArgs),
}

/// Flags of `zoo dataset export-idx`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportIdxArgs {
    /// The images, e.g. train-images-idx3-ubyte.gz.
    #[arg(long)]
    pub images: PathBuf,
    /// The labels, e.g. train-labels-idx1-ubyte.gz.
    #[arg(long)]
    pub labels: PathBuf,
    /// Root of the image folder.
    #[arg(long)]
    pub out: PathBuf,
    /// fashion, digits, a comma-separated list or a file of names (one per line).
    #[arg(long, default_value = "fashion")]
    pub classes: String,
    /// Sub-folder: train, val, or none [default: val for t10k/test files, else train].
    #[arg(long)]
    pub split: Option<String>,
    /// Keep only the first N images of each class.
    #[arg(long)]
    pub limit_per_class: Option<usize>,
}

/// `zoo dataset ...`.
pub fn dataset(cmd: &DatasetCommand) -> Result<()> {
    match cmd {
        DatasetCommand::ExportIdx(a) => {
            let s = export_idx(a)?;
            let total: usize = s.per_class.iter().sum();
            println!("wrote {total} images in {} class folders under {}", s.per_class.len(), s.dir.display());
            Ok(())
        }
    }
}

/// Runs `zoo dataset export-idx`.
pub fn export_idx(a: &ExportIdxArgs) -> Result<fashion_mnist::ExportSummary> {
    let split = match a.split.as_deref() {
        Some(s) => s.to_string(),
        None => {
            let name = a.images.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            if name.contains("t10k") || name.contains("test") { "val" } else { "train" }.to_string()
        }
    };
    let dir = match split.as_str() {
        "none" | "" => a.out.clone(),
        "train" | "val" => a.out.join(&split),
        other => bail!("--split {other}: use train, val or none"),
    };
    let images = fashion_mnist::read_images(&a.images)?;
    let labels = fashion_mnist::read_labels(&a.labels)?;
    let classes = fashion_mnist::class_names(&a.classes)?;
    fashion_mnist::export(&images, &labels, &classes, &dir, a.limit_per_class)
        .with_context(|| format!("exporting {} to {}", a.images.display(), dir.display()))
}
