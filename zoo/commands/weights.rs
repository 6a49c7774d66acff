//! `zoo weights list | fetch | verify | path | import`: the manifest and the local cache.
use crate::weights::{self, CacheState, FetchOptions};
use anyhow::{anyhow, bail, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

/// What `zoo weights` was asked to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// The entries matching `glob`; `json`: one object per entry (the manifest's fields, with
    /// `cached` and the cache `path`).
    List {
        glob: Option<String>,
        json: bool,
    },
    Fetch {
        name: String,
        trust_unverified: bool,
    },
    Verify,
    Path {
        name: String,
    },
    /// Files (or folders of files) to import; `name` names the entry (the file must still match
    /// its digest), else each file's digest names it.
    Import {
        file: PathBuf,
        name: Option<String>,
    },
}

fn size(bytes: Option<u64>, approximate: bool) -> String {
    match bytes {
        Some(b) => format!("{}{:.1} MiB", if approximate { "~" } else { "" }, b as f64 / (1024.0 * 1024.0)),
        None => "?".into(),
    }
}

/// Runs an action with the environment's options (`ZOO_HOME`, `ZOO_OFFLINE`, `ZOO_MIRROR`).
pub fn run(action: Action) -> Result<String> {
    run_with(action, FetchOptions::from_env())
}

/// Runs an action with explicit options; returns what to print.
pub fn run_with(action: Action, mut opts: FetchOptions) -> Result<String> {
    let manifest = weights::manifest().map_err(|e| anyhow!("{e}"))?;
    let mut out = String::new();
    match action {
        Action::List { glob, json: true } => {
            let entries = manifest.list(glob.as_deref()).map_err(|e| anyhow!("invalid pattern: {e}"))?;
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e)?;
                    let path = opts.cache.path_of(e);
                    v["cached"] = path.exists().into();
                    v["path"] = path.display().to_string().into();
                    Ok(v)
                })
                .collect::<Result<_>>()?;
            out = serde_json::to_string_pretty(&rows)? + "\n";
        }
        Action::List { glob, json: false } => {
            let entries = manifest.list(glob.as_deref()).map_err(|e| anyhow!("invalid pattern: {e}"))?;
            writeln!(out, "{:<44} {:>12} {:>7} {:>8}  {:<9} cached", "weights", "size", "top-1", "digest", "layout")?;
            for e in &entries {
                let cached = opts.cache.path_of(e).exists();
                writeln!(
                    out,
                    "{:<44} {:>12} {:>7} {:>8}  {:<9} {}",
                    format!("{}{}", e.name, if e.default { " *" } else { "" }),
                    size(e.size, e.size_approximate),
                    e.acc1.map_or("-".into(), |a| format!("{a:.2}")),
                    format!("{:?}", e.digest_kind).to_lowercase(),
                    e.layout.as_deref().unwrap_or("-"),
                    if cached { "yes" } else { "no" }
                )?;
            }
            writeln!(
                out,
                "{} (* = the default for its architecture)",
                crate::text::count(entries.len(), "entry", "entries")
            )?;
        }
        Action::Fetch { name, trust_unverified } => {
            opts.trust_unverified |= trust_unverified;
            let entry = manifest.resolve(&name).map_err(|e| anyhow!("{e}"))?;
            let path = weights::fetch(entry, &opts).map_err(|e| anyhow!("{e}"))?;
            writeln!(out, "{} {}", entry.name, path.display())?;
        }
        Action::Verify => {
            let mut bad = 0;
            // Every file rehashed: verifying must not rest on the sidecar's word.
            for (name, state) in weights::rehash_all(manifest, &opts) {
                let line = match state {
                    CacheState::Missing => continue,
                    CacheState::Verified { path, .. } => format!("ok        {name} {}", path.display()),
                    CacheState::Unrecorded { path } => {
                        format!("unverified {name} {} (no published digest)", path.display())
                    }
                    CacheState::Corrupted { path, expected, actual } => {
                        bad += 1;
                        format!("CORRUPT   {name} {}: expected {expected}, got {actual}", path.display())
                    }
                    CacheState::Unreadable { path, error } => {
                        bad += 1;
                        format!("UNREADABLE {name} {}: {error}", path.display())
                    }
                };
                writeln!(out, "{line}")?;
            }
            if bad > 0 {
                print!("{out}");
                bail!("{bad} cached file(s) failed verification: delete them and run `zoo weights fetch`");
            }
        }
        Action::Path { name } => {
            let entry = manifest.resolve(&name).map_err(|e| anyhow!("{e}"))?;
            let path = weights::path_of(entry, &opts);
            writeln!(out, "{}", path.display())?;
            if !path.is_file() {
                // Standard output stays the path alone, for scripts.
                eprintln!(
                    "not in zoo's cache yet: `zoo weights fetch {}` puts it there (from the torch.hub or Hugging Face \
                     cache if it is in one, else from the network)",
                    entry.name
                );
            }
        }
        Action::Import { file, name: Some(name) } => {
            let entry = manifest.resolve(&name).map_err(|e| anyhow!("{e}"))?;
            let path = weights::import(&file, entry, &opts).map_err(|e| anyhow!("{e}"))?;
            writeln!(
                out,
                "imported {} as {} -> {}",
                crate::text::escape_controls(&file.display().to_string()),
                entry.name,
                path.display()
            )?;
        }
        Action::Import { file, name: None } => {
            let files: Vec<PathBuf> = if file.is_dir() {
                let mut v: Vec<PathBuf> = walkdir::WalkDir::new(&file)
                    .follow_links(true)
                    .into_iter()
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_file())
                    .map(|e| e.into_path())
                    .collect();
                v.sort();
                v
            } else {
                vec![file.clone()]
            };
            let (mut imported, mut unknown) = (0, Vec::new());
            for f in &files {
                let hashed = weights::identify::entry_of_file(manifest, f);
                match hashed.map_err(|e| anyhow!("reading {}: {e}", f.display()))? {
                    Some(entry) => {
                        let path = weights::import(f, entry, &opts).map_err(|e| anyhow!("{e}"))?;
                        let shown = f.display().to_string();
                        let shown = crate::text::escape_controls(&shown);
                        writeln!(out, "imported {shown} as {} (digest) -> {}", entry.name, path.display())?;
                        imported += 1;
                    }
                    None => unknown.push(f.display().to_string()),
                }
            }
            for u in &unknown {
                writeln!(
                    out,
                    "skipped {}: its digest matches no manifest entry (none of the files `zoo weights list` lists)",
                    crate::text::escape_controls(u)
                )?;
            }
            if imported == 0 {
                print!("{out}");
                bail!(
                    "nothing imported from {}: no file's digest matches a manifest entry, so none is a published \
                     file zoo lists (--as ARCH.TAG names the entry, but the file must still match its digest); \
                     load a file of your own with --weights FILE",
                    file.display()
                );
            }
        }
    }
    Ok(out)
}
