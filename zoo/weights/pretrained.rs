//! The one loading path, for the library and every command: `ARCH` (its default weights),
//! `ARCH.TAG` (those weights) or `ARCH --weights FILE` (a local checkpoint in any supported
//! format) become a [`Loaded`] model with its preprocessing and class names.
//!
//! A local file is read once ([`LocalFile`]) and identified from its own content
//! ([`identify`](super::identify)): by digest (a file of another architecture is refused with the
//! entry it is), by the zoo's metadata (fine-tuned files keep their classes and preprocessing),
//! by layout (the entry whose key rules make it load strictly), else as unknown. An unknown file
//! gets no key rules, the architecture's classic eval transform ([`classic_preprocess`]) and the
//! reference builder's options without weights ([`ArchOptions::unweighted`]: GoogLeNet and
//! Inception v3 with `transform_input` off, as torchvision builds them for `weights=None`). One
//! stderr line says what the file was identified as and which preprocessing is used;
//! [`PreprocessOverride`] (`--preprocess ARCH.TAG`, `--resize`, `--crop`, `--interpolation`,
//! `--mean`, `--std`) replaces it.
use super::identify::{identify, Identity, LocalFile};
use super::manifest::DigestKind;
use super::{category_names, fetch, manifest, FetchOptions, WeightsEntry};
use crate::checkpoint::{self, StateDict};
use crate::data::preprocess::{Interpolation, Preprocess};
use crate::models::{find, ArchOptions, BuildConfig, Model, ModelSpec};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tch::Device;

/// Metadata keys the zoo writes into the safetensors files it saves (fine-tuning outputs).
pub mod meta {
    /// Registry name of the architecture.
    pub const ARCH: &str = "zoo.arch";
    /// JSON list of class names, in output order.
    pub const CLASSES: &str = "zoo.classes";
    /// JSON of the eval [`crate::data::preprocess::Preprocess`].
    pub const PREPROCESS: &str = "zoo.preprocess";
}

/// A model with weights, ready for a command: what to feed it and what its outputs mean.
#[derive(Debug)]
pub struct Loaded {
    pub model: Model,
    pub preprocess: Preprocess,
    pub labels: Vec<String>,
    /// What was loaded, for messages (`resnet50.tv2_in1k`, or the file path).
    pub source: String,
    /// What the weights were identified as.
    pub identity: Identity,
    /// The line describing the file and its preprocessing (printed for local files).
    pub notice: String,
    /// SHA-256 of the weights file: computed for a local file, the manifest's for a fetched
    /// one (`None` where the manifest publishes only a prefix or another digest).
    pub sha256: Option<String>,
}

impl Loaded {
    /// A model as built, without weights (random initialisation, or weights the caller set):
    /// the architecture's classic eval transform, and ImageNet's class names for 1000 classes.
    pub fn untrained(model: Model) -> Loaded {
        let classes = model.config.num_classes;
        let labels = if classes == 1000 {
            super::imagenet_classes().iter().map(|s| s.to_string()).collect()
        } else {
            (0..classes).map(|i| format!("class_{i}")).collect()
        };
        Loaded {
            preprocess: classic_preprocess(model.spec),
            labels,
            source: "random initialisation".into(),
            identity: Identity::Unknown,
            notice: String::new(),
            sha256: None,
            model,
        }
    }
}

/// Replacements for the identified preprocessing, applied in this order: `borrow` an entry's
/// whole transform, then each field given.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PreprocessOverride {
    /// `ARCH.TAG` (or `ARCH`) whose eval transform to use (`--preprocess`).
    pub borrow: Option<String>,
    pub resize: Option<u32>,
    /// Height and width.
    pub crop: Option<[u32; 2]>,
    pub interpolation: Option<Interpolation>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

impl PreprocessOverride {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `base` with the overrides applied, and what the result is made of.
    pub fn apply(&self, base: Preprocess, from: String) -> Result<(Preprocess, String)> {
        let (mut p, mut from) = (base, from);
        if let Some(name) = &self.borrow {
            let m = manifest().map_err(|e| anyhow!("{e}"))?;
            let e = m.resolve(name).map_err(|e| anyhow!("--preprocess {name}: {e}"))?;
            p = e.preprocess.clone();
            from = format!("{}'s, from --preprocess", e.name);
        }
        let mut set = Vec::new();
        if let Some(v) = self.resize {
            p.resize = v;
            set.push("--resize");
        }
        if let Some(v) = self.crop {
            p.crop = v;
            set.push("--crop");
        }
        if let Some(v) = self.interpolation {
            p.interpolation = v;
            set.push("--interpolation");
        }
        if let Some(v) = self.mean {
            p.mean = v;
            set.push("--mean");
        }
        if let Some(v) = self.std {
            p.std = v;
            set.push("--std");
        }
        if !set.is_empty() {
            from = format!("{from}; {} given", set.join(", "));
        }
        p.validate().context("the preprocessing asked for")?;
        Ok((p, from))
    }
}

/// How to load: device, where weights come from, and what to override.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Fetching the manifest's files (cache, hub caches, mirror, network).
    pub fetch: FetchOptions,
    pub preprocess: PreprocessOverride,
    /// Builder options on top of the identified ones (e.g. GoogLeNet's auxiliary heads).
    pub arch: ArchOptions,
    /// Do not print the notice line.
    pub quiet: bool,
}

impl LoadOptions {
    /// Loading on `device` with the environment's fetch options and nothing overridden.
    pub fn new(device: Device) -> Self {
        LoadOptions {
            device,
            fetch: FetchOptions::from_env(),
            preprocess: PreprocessOverride::default(),
            arch: ArchOptions::default(),
            quiet: false,
        }
    }
}

/// Splits `ARCH[.TAG]` and finds the architecture.
pub fn arch_of(name: &str) -> Result<&'static ModelSpec> {
    let arch = name.split_once('.').map_or(name, |(a, _)| a);
    find(arch)
}

/// The manifest entry `name` resolves to, if any (`ARCH` → its default, `ARCH.TAG` → that one).
pub fn entry_for(name: &str) -> Result<Option<&'static WeightsEntry>> {
    let m = manifest().map_err(|e| anyhow!("{e}"))?;
    match m.resolve(name) {
        Ok(e) => Ok(Some(e)),
        Err(e) if name.contains('.') => Err(anyhow!("{e}")),
        Err(_) => Ok(None),
    }
}

/// Loads `name` (`ARCH` or `ARCH.TAG`), from `weights` when given, else from the manifest
/// (fetching into the cache as needed), with nothing overridden.
pub fn load(name: &str, weights: Option<&Path>, device: Device, opts: &FetchOptions) -> Result<Loaded> {
    load_with(name, weights, &LoadOptions { fetch: opts.clone(), ..LoadOptions::new(device) })
}

/// Loads `name` (`ARCH` or `ARCH.TAG`) from `weights` when given, else from the manifest
/// (fetched and verified on first use, or found in zoo's, torch.hub's or Hugging Face's cache).
/// A local file is identified (digest, file name, metadata, layout) and gets its own key rules,
/// head and preprocessing, said in one stderr line unless `opts.quiet`.
///
/// ```no_run
/// use zoo::data::image::{load_rgb, DecodeLimits};
/// use zoo::weights::pretrained::{load_with, LoadOptions};
/// # fn main() -> anyhow::Result<()> {
/// let loaded = load_with("resnet50.tv2_in1k", None, &LoadOptions::new(tch::Device::Cpu))?;
/// let image = load_rgb(std::path::Path::new("cat.jpg"), &DecodeLimits::default())?;
/// // The preprocessing the weights were published with: resize 232, crop 224, bilinear.
/// let probs = loaded.model.predict(&loaded.preprocess.to_tensor(&image)?)?.softmax(-1, tch::Kind::Float);
/// let best = probs.argmax(-1, false).int64_value(&[0]) as usize;
/// println!("{}", loaded.labels[best]);
/// # Ok(())
/// # }
/// ```
pub fn load_with(name: &str, weights: Option<&Path>, opts: &LoadOptions) -> Result<Loaded> {
    let spec = arch_of(name)?;
    let named = entry_for(name)?;
    let m = manifest().map_err(|e| anyhow!("{e}"))?;
    let (mut file, identity) = match weights {
        Some(path) => {
            let file = LocalFile::read(path)?;
            let identity = identify(m, spec, &file, named.filter(|_| name.contains('.')))?;
            (file, identity)
        }
        None => {
            let Some(entry) = named else {
                bail!(
                    "no pretrained weights are listed for '{}': pass a checkpoint with --weights FILE \
                     (`zoo weights list` shows what is available)",
                    spec.name
                );
            };
            let path = fetch(entry, &opts.fetch).map_err(|e| anyhow!("{e}"))?;
            // The cache verified it: no rehashing.
            (LocalFile::read_with(&path, String::new(), String::new())?, Identity::Fetched(entry))
        }
    };
    let what = file.path.display().to_string();
    let sd = checkpoint::apply_rules(std::mem::take(&mut file.tensors), identity.rules())?;
    let classes = sd.get(&format!("{}weight", spec.head)).map_or(spec.num_classes, |t| t.size()[0]);
    let mut options = if identity == Identity::Unknown { ArchOptions::unweighted() } else { ArchOptions::default() };
    options.aux_logits = opts.arch.aux_logits.or(options.aux_logits);
    options.transform_input = opts.arch.transform_input.or(options.transform_input);
    let config = BuildConfig { num_classes: classes, ..spec.default_config() };
    let model = crate::nn::without_init(|| Model::with_options(spec.name, config, options, opts.device))?;
    load_strict(&model, &sd, &what)?;

    let stored = |key: &str| file.metadata.get(key);
    let (base, from) = match (stored(meta::PREPROCESS), identity.entry()) {
        (Some(json), _) => (
            serde_json::from_str(json).context("reading the preprocessing stored in the checkpoint")?,
            "stored in the checkpoint".to_string(),
        ),
        (None, Some(e)) => (e.preprocess.clone(), format!("{}'s", e.name)),
        (None, None) => (classic_preprocess(spec), format!("{}'s classic eval transform", spec.name)),
    };
    let (preprocess, from) = opts.preprocess.apply(base, from)?;
    let labels = match (stored(meta::CLASSES), identity.entry()) {
        (Some(json), _) => serde_json::from_str(json).context("reading the class names stored in the checkpoint")?,
        (None, Some(e)) if e.num_classes as i64 == classes => category_names(e)?,
        _ if classes == 1000 => super::imagenet_classes().iter().map(|s| s.to_string()).collect(),
        _ => (0..classes).map(|i| format!("class_{i}")).collect(),
    };
    let source = match identity {
        Identity::Fetched(e) => e.name.clone(),
        _ => what.clone(),
    };
    let mut notice = format!(
        "zoo: {what}: {}; {classes} classes; preprocessing {} ({from})",
        identity.describe(&file),
        describe_preprocess(&preprocess)
    );
    if options.transform_input == Some(false) && spec.build_with.is_some() {
        notice.push_str("; transform_input off, as torchvision builds it without weights");
    }
    if identity == Identity::Unknown && opts.preprocess.is_empty() {
        notice.push_str("; set --preprocess ARCH.TAG or --resize/--crop/--interpolation/--mean/--std to change it");
    }
    if weights.is_some() && !opts.quiet {
        eprintln!("{notice}");
    }
    let sha256 = match identity {
        Identity::Fetched(e) if e.digest_kind == DigestKind::Sha256 => Some(e.digest.clone()),
        Identity::Fetched(_) => None,
        _ => Some(file.sha256.clone()).filter(|d| !d.is_empty()),
    };
    Ok(Loaded { model, preprocess, labels, source, identity, notice, sha256 })
}

/// Loads a local checkpoint into `model` as built, identified and key-ruled as [`load_with`]
/// does (what [`Model::load_file`] runs).
pub fn load_file_into(model: &mut Model, path: &Path) -> Result<()> {
    let m = manifest().map_err(|e| anyhow!("{e}"))?;
    let file = LocalFile::read(path)?;
    let identity = identify(m, model.spec, &file, None)?;
    let sd = checkpoint::apply_rules(file.tensors, identity.rules())?;
    load_strict(model, &sd, &path.display().to_string())
}

/// Strict loading, where the checkpoint may hold the architecture's optional tensors (GoogLeNet's
/// auxiliary heads) that the model was built without.
fn load_strict(model: &Model, sd: &StateDict, what: &str) -> Result<()> {
    let vars = model.vs.variables();
    let absent: Vec<String> =
        model.spec.optional.iter().filter(|p| !vars.keys().any(|k| k.starts_with(*p))).map(|p| p.to_string()).collect();
    let opts = checkpoint::LoadOptions { ignore_unexpected: absent, ..Default::default() };
    checkpoint::load_into(&model.vs, sd, &opts).with_context(|| format!("loading {what} into {}", model.spec.name))?;
    Ok(())
}

/// `resize 256, crop 224x224, bilinear, mean [..], std [..]`.
pub fn describe_preprocess(p: &Preprocess) -> String {
    let crop = if p.crop[0] == p.crop[1] { p.crop[0].to_string() } else { format!("{}x{}", p.crop[0], p.crop[1]) };
    format!("resize {}, crop {crop}, {}, mean {:?}, std {:?}", p.resize, p.interpolation.name(), p.mean, p.std)
}

/// The architecture's classic eval transform, for weights nothing describes: resize to
/// crop / 0.875 (rounded), bilinear, the network's default input as the crop, and the mean/std
/// most of the architecture's published weights use (else its family's): ImageNet's, or
/// 0.5/0.5 where those sources use it (the TensorFlow ports: Inception v4, Inception-ResNet v2,
/// EfficientNet-Lite, MobileNet v1); ImageNet's on a tie. One-channel networks (LeNet-5): no
/// resize, 0.5/0.5.
pub fn classic_preprocess(spec: &ModelSpec) -> Preprocess {
    let mut p = Preprocess::imagenet_for_input(spec.input_size[1] as u32);
    if spec.input_size[0] == 1 {
        return Preprocess { channels: 1, mean: [0.5; 3], std: [0.5; 3], resize: p.crop[0], ..p };
    }
    if half_normalised(spec) {
        p.mean = [0.5; 3];
        p.std = [0.5; 3];
    }
    p
}

/// Whether most published weights of the architecture (else of its family) use mean 0.5.
fn half_normalised(spec: &ModelSpec) -> bool {
    let Ok(m) = manifest() else { return false };
    let vote = |entries: Vec<&WeightsEntry>| {
        let half = entries.iter().filter(|e| e.preprocess.mean.iter().all(|v| (v - 0.5).abs() < 0.01)).count();
        (!entries.is_empty()).then_some(2 * half > entries.len())
    };
    let family = || {
        let archs: Vec<&str> =
            crate::models::registry().iter().filter(|s| s.family == spec.family).map(|s| s.name).collect();
        m.entries.iter().filter(|e| archs.contains(&e.arch())).collect()
    };
    vote(m.entries_for(spec.name)).or_else(|| vote(family())).unwrap_or(false)
}

/// Eval preprocessing for a model without a weights entry: [`classic_preprocess`].
pub fn default_preprocess(spec: &ModelSpec) -> Preprocess {
    classic_preprocess(spec)
}
