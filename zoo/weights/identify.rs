//! What a local checkpoint is, found from the file itself and never from the architecture's
//! default entry: by digest (full SHA-256 against every manifest entry, torch.hub's SHA-256
//! prefixes, pytorchcv's SHA-1 of the inner `.pth`), by the zoo's own metadata, or by layout (the
//! entry whose key rules map the file's keys onto the model, such as Cadene's 1001-row heads);
//! else it is unknown and gets no key rules at all.
use super::digest::{Algorithm, Hasher};
use super::manifest::{url_file_name, Manifest, WeightsEntry};
use crate::checkpoint::{self, KeyRule, StateDict};
use crate::models::{Model, ModelSpec};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Device;

/// A checkpoint file read once: its format, digests, metadata and tensors.
#[derive(Debug)]
pub struct LocalFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Format detected from the content.
    pub format: checkpoint::Format,
    /// Full SHA-256, lowercase hex.
    pub sha256: String,
    /// Full SHA-1, lowercase hex (pytorchcv publishes these).
    pub sha1: String,
    /// safetensors `__metadata__` (empty for other formats).
    pub metadata: BTreeMap<String, String>,
    /// The tensors, as stored (no key rules applied).
    pub tensors: StateDict,
}

impl LocalFile {
    /// Reads `path`: both digests in one pass over the bytes, then the tensors.
    pub fn read(path: &Path) -> Result<Self> {
        // A FIFO or a device would block or never end the hashing: refuse it unopened.
        if !path.exists() {
            bail!(
                "weights file {} does not exist: give a checkpoint's path, or a tag from `zoo weights list` \
                 as MODEL.TAG",
                path.display()
            );
        }
        crate::data::inputs::check_regular(path)
            .map_err(|e| anyhow::anyhow!("cannot read weights {}: {e}", path.display()))?;
        let (sha256, sha1) = digests(path).with_context(|| format!("hashing {}", path.display()))?;
        Self::read_with(path, sha256, sha1)
    }

    /// Reads a file whose digests are already known (a verified cache file: empty digests).
    pub fn read_with(path: &Path, sha256: String, sha1: String) -> Result<Self> {
        let format = checkpoint::detect_format(path).with_context(|| format!("reading {}", path.display()))?;
        let metadata = match format {
            checkpoint::Format::Safetensors => checkpoint::read_safetensors_metadata(path)?,
            _ => BTreeMap::new(),
        };
        let mut tensors = checkpoint::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        if metadata.contains_key(crate::train::checkpoints::RESUME_KEY) {
            // A training run's resume state: the model's weights (under `model.`) beside the
            // optimiser's; for inference, the weights.
            tensors = crate::train::checkpoints::split_resume(tensors).0;
        }
        Ok(LocalFile { path: path.to_path_buf(), format, sha256, sha1, metadata, tensors })
    }
}

fn digests(path: &Path) -> std::io::Result<(String, String)> {
    let mut file = std::fs::File::open(path)?;
    let (mut a, mut b) = (Hasher::new(Algorithm::Sha256), Hasher::new(Algorithm::Sha1));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        a.update(&buf[..n]);
        b.update(&buf[..n]);
    }
    Ok((a.finish_hex(), b.finish_hex()))
}

/// What a file was identified as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Identity {
    /// The manifest's own file for the entry (fetched, cached, or found in a hub cache).
    Fetched(&'static WeightsEntry),
    /// A manifest entry's file, recognised by its digest.
    Digest(&'static WeightsEntry, Algorithm),
    /// A checkpoint the zoo wrote: its metadata names the architecture, classes and preprocessing.
    ZooFile,
    /// The entry named with the file (`ARCH.TAG --weights FILE`): its key rules and preprocessing.
    Named(&'static WeightsEntry),
    /// No digest matched; the entry whose key rules make the file load strictly.
    Layout(&'static WeightsEntry),
    /// Nothing known: no key rules, the architecture's classic eval transform and the builder
    /// without weights.
    Unknown,
}

impl Identity {
    /// The manifest entry the file stands for, if any.
    pub fn entry(&self) -> Option<&'static WeightsEntry> {
        match *self {
            Identity::Fetched(e) | Identity::Digest(e, _) | Identity::Named(e) | Identity::Layout(e) => Some(e),
            Identity::ZooFile | Identity::Unknown => None,
        }
    }

    /// The key rules to apply to the file's tensors.
    pub fn rules(&self) -> &'static [KeyRule] {
        self.entry().map_or(&[], |e| e.key_rules.as_slice())
    }

    /// What to say about it, for the notice line.
    pub fn describe(&self, file: &LocalFile) -> String {
        let short = file.sha256.get(..12).unwrap_or("?");
        match self {
            Identity::Fetched(e) => e.name.clone(),
            Identity::Digest(e, a) => format!("{} (its {a} matches)", e.name),
            Identity::ZooFile if file.metadata.contains_key(crate::train::checkpoints::RESUME_KEY) => {
                "a zoo training run's resume state: its model's weights (classes and preprocessing from its \
                 metadata)"
                    .into()
            }
            Identity::ZooFile => "a zoo checkpoint (classes and preprocessing from its metadata)".into(),
            Identity::Named(e) => format!("{} as named (sha256 {short}… is not that entry's)", e.name),
            Identity::Layout(e) => format!("{}'s layout (sha256 {short}… unknown; its key rules fit)", e.name),
            Identity::Unknown => format!("not a known file (sha256 {short}…), no key rules"),
        }
    }
}

/// The manifest entry whose published digest a file with these digests has: full digests
/// first, then prefixes.
pub fn by_digest(manifest: &'static Manifest, sha256: &str, sha1: &str) -> Option<(&'static WeightsEntry, Algorithm)> {
    let of = |a: Algorithm| if a == Algorithm::Sha256 { sha256 } else { sha1 };
    let matching = |prefix: bool| {
        manifest.entries.iter().find_map(|e| {
            let x = e.expected_digest().filter(|x| x.prefix == prefix)?;
            x.matches(of(x.algorithm)).then_some((e, x.algorithm))
        })
    };
    matching(false).or_else(|| matching(true))
}

/// The manifest entry a file on disk is, by digest alone (what `zoo weights import` uses).
pub fn entry_of_file(manifest: &'static Manifest, path: &Path) -> std::io::Result<Option<&'static WeightsEntry>> {
    let (sha256, sha1) = digests(path)?;
    Ok(by_digest(manifest, &sha256, &sha1).map(|(e, _)| e))
}

/// An entry whose published file name (torch.hub's `NAME-HASHPREFIX.pth`) the file carries.
pub fn by_name(manifest: &'static Manifest, path: &Path) -> Option<&'static WeightsEntry> {
    let name = path.file_name()?.to_str()?;
    manifest
        .entries
        .iter()
        .find(|e| e.file_name() == name || e.urls.iter().any(|u| url_file_name(u).as_deref() == Some(name)))
}

/// Identifies `file` for `spec`. `named` is the entry given with the file (`ARCH.TAG`). A file
/// whose digest is another architecture's entry is refused with that entry's name.
pub fn identify(
    manifest: &'static Manifest,
    spec: &'static ModelSpec,
    file: &LocalFile,
    named: Option<&'static WeightsEntry>,
) -> Result<Identity> {
    let shown = file.path.display();
    if let Some(arch) = file.metadata.get(super::pretrained::meta::ARCH) {
        if arch != spec.name {
            bail!("{shown} holds the model {arch}, not {}: run it as `{arch}`", spec.name);
        }
    }
    if let Some((e, algorithm)) = by_digest(manifest, &file.sha256, &file.sha1) {
        if !e.arch().eq_ignore_ascii_case(spec.name) {
            bail!(
                "{shown} is {} (its {algorithm} matches that entry), not a {} checkpoint: run it as `{}` \
                 (e.g. `zoo classify {} --weights {shown}`)",
                e.name,
                spec.name,
                e.arch(),
                e.arch()
            );
        }
        if let Some(n) = named.filter(|n| n.name != e.name) {
            bail!(
                "{shown} is {} (its {algorithm} matches), not {}: name it `{}` or `{}`",
                e.name,
                n.name,
                e.name,
                e.arch()
            );
        }
        return Ok(Identity::Digest(e, algorithm));
    }
    if let Some(e) = by_name(manifest, &file.path) {
        eprintln!(
            "zoo: warning: {shown} is named like {}'s file ({}) but its content is not that file (sha256 {}…)",
            e.name,
            e.file_name(),
            file.sha256.get(..12).unwrap_or("?")
        );
    }
    if file.metadata.contains_key(super::pretrained::meta::ARCH) {
        return Ok(Identity::ZooFile);
    }
    if let Some(e) = named {
        return Ok(Identity::Named(e));
    }
    by_layout(manifest, spec, &file.tensors)
}

/// Copies of the tensor handles (the data is shared), so rules can be tried without rereading.
fn shallow(sd: &StateDict) -> StateDict {
    StateDict { entries: sd.entries.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect() }
}

/// Keys and shapes, without the architecture's optional tensors: a rule that only drops those
/// (GoogLeNet's auxiliary heads) says nothing about where a file comes from.
fn signature(spec: &ModelSpec, sd: &StateDict) -> Vec<(String, Vec<i64>)> {
    let optional = |k: &str| spec.optional.iter().any(|p| k.starts_with(p));
    sd.entries.iter().filter(|(k, _)| !optional(k)).map(|(k, t)| (k.clone(), t.size())).collect()
}

/// The layout entry of the architecture whose key rules change the file and make it load
/// strictly with that entry's class count; else [`Identity::Unknown`] (no rules).
pub fn by_layout(manifest: &'static Manifest, spec: &'static ModelSpec, sd: &StateDict) -> Result<Identity> {
    let with_rules: Vec<&'static WeightsEntry> =
        manifest.entries_for(spec.name).into_iter().filter(|e| !e.key_rules.is_empty()).collect();
    if with_rules.is_empty() {
        return Ok(Identity::Unknown);
    }
    let shapes = variable_shapes(spec)?;
    let before = signature(spec, sd);
    for e in with_rules {
        let Ok(mapped) = checkpoint::apply_rules(shallow(sd), &e.key_rules) else { continue };
        if signature(spec, &mapped) != before && fits(spec, &shapes, &mapped) == Some(e.num_classes as i64) {
            return Ok(Identity::Layout(e));
        }
    }
    Ok(Identity::Unknown)
}

/// Variable shapes of the architecture's default build (built without initialisation).
fn variable_shapes(spec: &'static ModelSpec) -> Result<HashMap<String, Vec<i64>>> {
    let model = crate::nn::without_init(|| Model::new(spec.name, spec.default_config(), Device::Cpu))?;
    let shapes = model.vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
    Ok(shapes)
}

/// The class count with which `sd` loads strictly into the architecture (shapes under the head
/// compared without their first dimension), or `None` when it does not.
fn fits(spec: &ModelSpec, shapes: &HashMap<String, Vec<i64>>, sd: &StateDict) -> Option<i64> {
    let classes = sd.get(&format!("{}weight", spec.head))?.size()[0];
    let skip = |k: &str| k.ends_with("num_batches_tracked") || spec.optional.iter().any(|p| k.starts_with(p));
    let mut seen = HashSet::new();
    for (k, t) in &sd.entries {
        if skip(k) {
            continue;
        }
        let want = shapes.get(k)?;
        let size = t.size();
        let ok = if k.starts_with(spec.head) {
            size.first() == Some(&classes) && size[1..] == want[1..]
        } else {
            &size == want
        };
        if !ok {
            return None;
        }
        seen.insert(k.as_str());
    }
    shapes.keys().all(|k| skip(k) || seen.contains(k.as_str())).then_some(classes)
}
