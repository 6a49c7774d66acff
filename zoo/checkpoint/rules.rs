//! Key remapping rules: how a checkpoint file's keys and tensors map onto zoo's variable paths,
//! for files whose layout differs from the reference the zoo follows (torchvision's old DenseNet
//! names, Cadene's `last_linear` and 1001-class heads, DataParallel's `module.` prefix, ...).
//! The manifest stores them per weights entry; `--weights FILE` users can pass them too.
use super::StateDict;
use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One rule, applied in order to every key of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyRule {
    /// Regex replace on the key (`regex` crate syntax, `$1` for groups), e.g.
    /// `^(.*denselayer\d+\.(?:norm|relu|conv))\.(\d+)\.` -> `$1$2.`
    Rename { pattern: String, replace: String },
    /// Drop keys matching the pattern (e.g. auxiliary heads the zoo model does not build).
    Drop { pattern: String },
    /// Drop the first row (dimension 0, index 0) of tensors whose key matches: a 1001-class
    /// head whose row 0 is TensorFlow's background class.
    DropFirstRow { pattern: String },
}

impl KeyRule {
    /// The rule's regex source.
    pub fn pattern(&self) -> &str {
        match self {
            KeyRule::Rename { pattern, .. } | KeyRule::Drop { pattern } | KeyRule::DropFirstRow { pattern } => pattern,
        }
    }
}

/// Applies `rules`, in order, to every entry of `sd` (each rule sees the key as renamed by the
/// rules before it). Fails on an invalid regex, on `DropFirstRow` of a tensor without rows, and
/// if two entries end up with the same key.
pub fn apply_rules(sd: StateDict, rules: &[KeyRule]) -> Result<StateDict> {
    let compiled = rules
        .iter()
        .map(|r| Regex::new(r.pattern()).with_context(|| format!("invalid regex in key rule {r:?}")))
        .collect::<Result<Vec<Regex>>>()?;
    let mut entries = Vec::with_capacity(sd.entries.len());
    'entries: for (mut key, mut t) in sd.entries {
        for (rule, re) in rules.iter().zip(&compiled) {
            if !re.is_match(&key) {
                continue;
            }
            match rule {
                KeyRule::Rename { replace, .. } => key = re.replace_all(&key, replace.as_str()).into_owned(),
                KeyRule::Drop { .. } => continue 'entries,
                KeyRule::DropFirstRow { .. } => {
                    let rows = t.size().first().copied().unwrap_or(0);
                    if rows < 1 {
                        bail!(
                            "drop_first_row on `{}` of shape {:?}: it has no first row",
                            crate::text::escape_controls(&key),
                            t.size()
                        );
                    }
                    // A copy, so the smaller tensor does not keep the dropped row alive.
                    t = t.f_narrow(0, 1, rows - 1)?.f_contiguous()?;
                }
            }
        }
        entries.push((key, t));
    }
    let mut seen = HashSet::new();
    let dups: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).filter(|k| !seen.insert(*k)).collect();
    if !dups.is_empty() {
        let dups: Vec<_> = dups.iter().map(|k| crate::text::escape_controls(k)).collect();
        bail!("after applying the key rules several tensors share the key(s) {}", dups.join(", "));
    }
    Ok(StateDict { entries })
}
