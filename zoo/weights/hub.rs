//! The caches users already have, used in place (never copied): torch.hub's checkpoints folder
//! (`$TORCH_HOME/hub/checkpoints`, default `~/.cache/torch/hub/checkpoints`), where files keep
//! their download names, and the Hugging Face hub's (`$HF_HUB_CACHE`, else `$HF_HOME/hub`,
//! default `~/.cache/huggingface/hub`), where `models--ORG--REPO/refs/main` names the snapshot
//! whose `snapshots/REV/FILE` links to `blobs/SHA256`.
//!
//! A file found there is verified against the entry's published digest (for an entry without
//! one, a Hugging Face blob must match the SHA-256 it is named by, or trust must be given), and
//! a stamp in `$ZOO_HOME/weights/external/ENTRY.json` records the verification (path, size,
//! mtime, digest), so later runs do not rehash it while the file is unchanged.
use super::digest::{hash_file, Algorithm};
use super::manifest::{url_file_name, WeightsEntry};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Where the other caches are; `None` where one is not looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubCaches {
    /// torch.hub's `hub/checkpoints` folder.
    pub torch_hub: Option<PathBuf>,
    /// The Hugging Face hub cache (the folder holding `models--ORG--REPO`).
    pub hf_hub: Option<PathBuf>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn user_cache() -> Option<PathBuf> {
    env_path("XDG_CACHE_HOME").or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
}

impl HubCaches {
    /// The folders torch.hub and `huggingface_hub` use under the current environment:
    /// `TORCH_HOME`, `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), `HF_HOME`,
    /// `XDG_CACHE_HOME`, as those libraries read them.
    pub fn from_env() -> Self {
        let torch_home = env_path("TORCH_HOME").or_else(|| user_cache().map(|c| c.join("torch")));
        let hf_hub = env_path("HF_HUB_CACHE")
            .or_else(|| env_path("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| user_cache().map(|c| c.join("huggingface").join("hub")));
        HubCaches { torch_hub: torch_home.map(|t| t.join("hub").join("checkpoints")), hf_hub }
    }
}

/// One place an entry's file may be in another cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file (or, for a snapshot whose ref is missing, the ref file that was looked for).
    pub path: PathBuf,
    /// `torch.hub cache` or `Hugging Face cache`.
    pub kind: &'static str,
}

/// `https://huggingface.co/ORG/REPO/resolve/REV/FILE` as (ORG, REPO, REV, FILE).
fn hf_parts(url: &str) -> Option<(String, String, String, String)> {
    let rest = url.split_once("://")?.1;
    let rest = rest.strip_prefix("huggingface.co/")?;
    let rest = rest.split(['?', '#']).next()?;
    let mut parts = rest.splitn(5, '/');
    let (org, repo, resolve, rev, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (resolve == "resolve" && !file.is_empty()).then(|| (org.into(), repo.into(), rev.into(), file.into()))
}

/// Every place the entry's file could be in `caches`, in the order they are tried.
pub fn candidates(entry: &WeightsEntry, caches: &HubCaches) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(dir) = &caches.torch_hub {
        let mut names = vec![entry.file_name()];
        if entry.archive_member().is_none() {
            names.extend(entry.urls.iter().filter(|u| hf_parts(u).is_none()).filter_map(|u| url_file_name(u)));
        }
        names.dedup();
        out.extend(names.into_iter().map(|n| Candidate { path: dir.join(n), kind: "torch.hub cache" }));
    }
    if let Some(hub) = &caches.hf_hub {
        for (org, repo, rev, file) in entry.urls.iter().filter_map(|u| hf_parts(u)) {
            let repo_dir = hub.join(format!("models--{org}--{repo}"));
            let commit = if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
                Some(rev.clone())
            } else {
                fs::read_to_string(repo_dir.join("refs").join(&rev)).ok().map(|s| s.trim().to_string())
            };
            let path = match commit {
                Some(c) => repo_dir.join("snapshots").join(c).join(&file),
                None => repo_dir.join("refs").join(&rev),
            };
            out.push(Candidate { path, kind: "Hugging Face cache" });
        }
    }
    out
}

/// The record that a file in another cache was verified for an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    entry: String,
    path: PathBuf,
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
    algorithm: String,
    digest: String,
    /// Checked against a published digest (false: a content address or trust).
    published: bool,
}

fn stamp_path(zoo_cache: &Path, entry: &WeightsEntry) -> PathBuf {
    zoo_cache.join("external").join(format!("{}.json", entry.name))
}

fn file_state(path: &Path) -> Option<(u64, u64, u32)> {
    let meta = fs::metadata(path).ok()?;
    let t = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((meta.len(), t.as_secs(), t.subsec_nanos()))
}

/// The SHA-256 a Hugging Face snapshot file is stored under (`blobs/HEX`), if it is a link.
fn content_address(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    let name = target.file_name()?.to_str()?.to_ascii_lowercase();
    (name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit())).then_some(name)
}

/// What happened with one candidate, for the offline error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    /// The place.
    pub candidate: Candidate,
    /// Why it was not used (`not there`, a digest mismatch, ...).
    pub outcome: String,
}

/// The first candidate that verifies for `entry`, used in place; else what each place gave.
/// `zoo_cache` is the zoo's weights folder (for the stamps).
pub fn find(
    entry: &WeightsEntry,
    caches: &HubCaches,
    zoo_cache: &Path,
    trust_unverified: bool,
) -> Result<PathBuf, Vec<Looked>> {
    let mut looked = Vec::new();
    for candidate in candidates(entry, caches) {
        match verify(entry, &candidate, zoo_cache, trust_unverified) {
            Ok(()) => return Ok(candidate.path),
            Err(outcome) => looked.push(Looked { candidate, outcome }),
        }
    }
    Err(looked)
}

fn verify(entry: &WeightsEntry, c: &Candidate, zoo_cache: &Path, trust: bool) -> Result<(), String> {
    let Some((size, secs, nanos)) = file_state(&c.path).filter(|_| c.path.is_file()) else {
        return Err("not there".into());
    };
    let expected = entry.expected_digest();
    let stamp_file = stamp_path(zoo_cache, entry);
    let stamp: Option<Stamp> = fs::read_to_string(&stamp_file).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let Some(s) = stamp {
        let same = s.path == c.path && s.size == size && s.mtime_secs == secs && s.mtime_nanos == nanos;
        let still = expected.as_ref().is_none_or(|x| s.algorithm == x.algorithm.name() && x.matches(&s.digest));
        if same && still {
            return Ok(());
        }
    }
    if let Some(want) = entry.exact_size().filter(|&n| n != size) {
        return Err(format!("{size} bytes, the entry's file has {want}: not used"));
    }
    let algorithm = expected.as_ref().map_or(Algorithm::Sha256, |x| x.algorithm);
    let digest = hash_file(&c.path, algorithm).map_err(|e| format!("unreadable: {e}"))?;
    let published = match &expected {
        Some(x) if x.matches(&digest) => true,
        Some(x) => return Err(format!("{algorithm} {digest} is not {x}: not used")),
        None if content_address(&c.path).is_some_and(|a| a == digest) => false,
        None if trust => false,
        None => {
            return Err(format!(
                "{} publishes no digest and the file has no content address: pass --trust-unverified to use it",
                entry.name
            ))
        }
    };
    let record = Stamp {
        entry: entry.name.clone(),
        path: c.path.clone(),
        size,
        mtime_secs: secs,
        mtime_nanos: nanos,
        algorithm: algorithm.name().into(),
        digest,
        published,
    };
    // The stamp only spares rehashing: failing to write it does not stop the run.
    let _ = fs::create_dir_all(stamp_file.parent().unwrap_or(zoo_cache))
        .and_then(|_| fs::write(&stamp_file, serde_json::to_vec_pretty(&record).unwrap_or_default()));
    eprintln!("zoo: using {} from the {} in place (verified, {algorithm})", c.path.display(), c.kind);
    Ok(())
}
