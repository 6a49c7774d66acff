//! Loading a model by name for the commands: `ARCH` (its default weights), `ARCH.TAG` (those
//! weights) or `ARCH --weights FILE` (a local checkpoint in any supported format, including the
//! zoo's own fine-tuned files, which carry their class names and preprocessing).
use super::{category_names, fetch, manifest, FetchOptions, WeightsEntry};
use crate::checkpoint::{self, StateDict};
use crate::data::preprocess::Preprocess;
use crate::models::{find, BuildConfig, Model, ModelSpec};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
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
}

/// Splits `ARCH[.TAG]` and finds the architecture.
pub fn arch_of(name: &str) -> Result<&'static ModelSpec> {
    let arch = name.split_once('.').map_or(name, |(a, _)| a);
    find(arch)
}

/// The manifest entry `name` resolves to, if any (`ARCH` → its default, `ARCH.TAG` → that one).
pub fn entry_for(name: &str) -> Result<Option<&'static WeightsEntry>> {
    let m = manifest().map_err(|e| anyhow::anyhow!("{e}"))?;
    match m.resolve(name) {
        Ok(e) => Ok(Some(e)),
        Err(e) if name.contains('.') => Err(anyhow::anyhow!("{e}")),
        Err(_) => Ok(None),
    }
}

/// Loads `name` (`ARCH` or `ARCH.TAG`), from `weights` when given, else from the manifest
/// (fetching into the cache as needed).
pub fn load(name: &str, weights: Option<&Path>, device: Device, opts: &FetchOptions) -> Result<Loaded> {
    let spec = arch_of(name)?;
    let entry = entry_for(name)?;
    match weights {
        Some(file) => load_file(spec, entry, file, device),
        None => {
            let Some(entry) = entry else {
                bail!(
                    "no pretrained weights are listed for '{}': pass a checkpoint with --weights FILE \
                     (`zoo weights list` shows what is available)",
                    spec.name
                );
            };
            let path = fetch(entry, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
            let sd = checkpoint::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let sd = checkpoint::apply_rules(sd, &entry.key_rules)?;
            let model = build_loaded(spec, &sd, device, &entry.name)?;
            // The zoo's own checkpoints carry their class names; others use the entry's list.
            let meta = match checkpoint::detect_format(&path)? {
                checkpoint::Format::Safetensors => checkpoint::read_safetensors_metadata(&path)?,
                _ => BTreeMap::new(),
            };
            let labels = match meta.get(meta::CLASSES) {
                Some(json) => serde_json::from_str(json).context("reading the class names stored in the checkpoint")?,
                None => category_names(entry)?,
            };
            Ok(Loaded { model, preprocess: entry.preprocess.clone(), labels, source: entry.name.clone() })
        }
    }
}

/// Loads a local checkpoint into `spec`, with the class count the file's head has.
fn load_file(spec: &'static ModelSpec, entry: Option<&WeightsEntry>, file: &Path, device: Device) -> Result<Loaded> {
    let meta = if checkpoint::detect_format(file)? == checkpoint::Format::Safetensors {
        checkpoint::read_safetensors_metadata(file)?
    } else {
        BTreeMap::new()
    };
    if let Some(arch) = meta.get(meta::ARCH) {
        if arch != spec.name {
            bail!("{} holds a {arch} model, not {}: run it as `{arch}`", file.display(), spec.name);
        }
    }
    let mut sd = checkpoint::read(file).with_context(|| format!("reading checkpoint {}", file.display()))?;
    if let Some(e) = entry.filter(|_| meta.is_empty()) {
        // A downloaded file of a known source keeps that source's key names.
        sd = checkpoint::apply_rules(sd, &e.key_rules)?;
    }
    let model = build_loaded(spec, &sd, device, &file.display().to_string())?;
    let classes = model.net.num_classes();
    let preprocess = match meta.get(meta::PREPROCESS) {
        Some(json) => serde_json::from_str(json).context("reading the preprocessing stored in the checkpoint")?,
        None => entry.map(|e| e.preprocess.clone()).unwrap_or_else(|| default_preprocess(spec)),
    };
    let labels = match meta.get(meta::CLASSES) {
        Some(json) => serde_json::from_str(json).context("reading the class names stored in the checkpoint")?,
        None => match entry {
            Some(e) if e.num_classes as i64 == classes => category_names(e)?,
            _ if classes == 1000 => super::imagenet_classes().iter().map(|s| s.to_string()).collect(),
            _ => (0..classes).map(|i| format!("class_{i}")).collect(),
        },
    };
    Ok(Loaded { model, preprocess, labels, source: file.display().to_string() })
}

/// Eval preprocessing for a model without a weights entry: ImageNet's, at its input size.
pub fn default_preprocess(spec: &ModelSpec) -> Preprocess {
    let mut p = Preprocess::imagenet_for_input(spec.input_size[1] as u32);
    if spec.input_size[0] == 1 {
        p = Preprocess { channels: 1, mean: [0.5; 3], std: [0.5; 3], resize: p.crop[0], ..p };
    }
    p
}

/// Builds `spec` with the class count of the checkpoint's head and loads it strictly.
pub fn build_loaded(spec: &'static ModelSpec, sd: &StateDict, device: Device, what: &str) -> Result<Model> {
    let probe = crate::nn::without_init(|| Model::new(spec.name, spec.default_config(), Device::Cpu))?;
    let classes = probe
        .net
        .classifier_prefixes()
        .iter()
        .find_map(|p| sd.get(&format!("{p}weight")).map(|t| t.size()[0]))
        .unwrap_or(spec.num_classes);
    drop(probe);
    let config = BuildConfig { num_classes: classes, ..spec.default_config() };
    let model = crate::nn::without_init(|| Model::new(spec.name, config, device))?;
    checkpoint::load_into(&model.vs, sd, &Default::default())
        .with_context(|| format!("loading {what} into {}", spec.name))?;
    Ok(model)
}
