//! Copying a [`StateDict`] into a `tch` VarStore, strictly by default: every missing key,
//! unexpected key and shape mismatch is collected and reported in one error, and nothing is
//! copied unless everything matches. Keys come from the file, so the report escapes them.
use super::StateDict;
use crate::text::escape_controls;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::fmt;
use tch::{nn::VarStore, Tensor};

/// How strictly [`load_into`] matches checkpoint keys to variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on missing or unexpected keys (shape mismatches always fail).
    pub strict: bool,
    /// Key prefixes of variables that may stay as initialised, e.g. `fc.` for a fresh classifier
    /// head; checkpoint tensors under them that do not fit are left out instead of failing.
    pub ignore_missing: Vec<String>,
    /// Key prefixes of checkpoint tensors the model may lack (e.g. `aux_logits.`).
    pub ignore_unexpected: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { strict: true, ignore_missing: Vec::new(), ignore_unexpected: Vec::new() }
    }
}

/// What [`load_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables filled from the checkpoint.
    pub loaded: usize,
    /// Checkpoint keys deliberately not used: known harmless extras (`*.num_batches_tracked`)
    /// and tensors under an `ignore_missing` prefix whose shape does not fit.
    pub skipped: Vec<String>,
    /// Variables left as initialised (allowed by `ignore_missing` or non-strict mode).
    pub missing: Vec<String>,
    /// Checkpoint keys with no variable (allowed by `ignore_unexpected` or non-strict mode).
    pub unexpected: Vec<String>,
}

/// The most keys of each kind the message lists (the error's fields hold them all): a file of
/// another architecture mismatches in hundreds.
const LISTED: usize = 12;

/// The strict-load failure: everything that does not match, each with its dotted path and shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Variables the checkpoint lacks, with the model's shape.
    pub missing: Vec<(String, Vec<i64>)>,
    /// Checkpoint keys the model lacks, with the checkpoint's shape.
    pub unexpected: Vec<(String, Vec<i64>)>,
    /// `(key, checkpoint shape, model shape)`.
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.missing.len() + self.unexpected.len() + self.mismatched.len();
        writeln!(f, "the checkpoint does not match the model ({n} problems):")?;
        let more = |f: &mut fmt::Formatter<'_>, n: usize| {
            if n > LISTED {
                writeln!(f, "    ... and {} more", n - LISTED)?;
            }
            Ok(())
        };
        if !self.missing.is_empty() {
            writeln!(f, "  missing from the checkpoint ({}):", self.missing.len())?;
            for (k, s) in self.missing.iter().take(LISTED) {
                write!(f, "    {} {s:?}", escape_controls(k))?;
                if let Some(c) = closest(k, self.unexpected.iter().map(|(u, _)| u.as_str())) {
                    write!(f, "  (closest unexpected key: {})", escape_controls(c))?;
                }
                writeln!(f)?;
            }
            more(f, self.missing.len())?;
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "  unexpected in the checkpoint ({}):", self.unexpected.len())?;
            for (k, s) in self.unexpected.iter().take(LISTED) {
                writeln!(f, "    {} {s:?}", escape_controls(k))?;
            }
            more(f, self.unexpected.len())?;
        }
        if !self.mismatched.is_empty() {
            writeln!(f, "  shape mismatch ({}):", self.mismatched.len())?;
            for (k, file, model) in self.mismatched.iter().take(LISTED) {
                writeln!(f, "    {}: checkpoint {file:?} vs model {model:?}", escape_controls(k))?;
            }
            more(f, self.mismatched.len())?;
        }
        let hints = self.hints();
        for (i, h) in hints.iter().enumerate() {
            write!(f, "hint: {h}")?;
            if i + 1 < hints.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// One hint per kind of problem present.
    fn hints(&self) -> Vec<&'static str> {
        let mut hints = Vec::new();
        match (self.missing.is_empty(), self.unexpected.is_empty()) {
            (false, false) => hints.push(
                "the names differ: the file was probably saved from another implementation; add key rules \
                 (rename/drop) to map its keys onto the model's, or check that it is the right architecture",
            ),
            (false, true) => hints.push(
                "the checkpoint lacks some variables: check the architecture variant, or ignore those prefixes \
                 (ignore_missing) to keep them as initialised",
            ),
            (true, false) => hints.push(
                "the checkpoint has extra tensors: check the architecture variant, drop them with a key rule, or \
                 ignore their prefixes (ignore_unexpected)",
            ),
            (true, true) => {}
        }
        if !self.mismatched.is_empty() {
            hints.push(
                "shapes differ: check the architecture variant and the number of classes; to train a fresh head, \
                 ignore its prefix (ignore_missing, e.g. `fc.`)",
            );
        }
        hints
    }
}

/// The most similar candidate key, if reasonably similar (a hint for renames).
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::normalized_levenshtein(key, c), c))
        .filter(|(s, _)| *s >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Extras PyTorch writes that no zoo model has a variable for.
fn harmless_extra(key: &str) -> bool {
    key.ends_with(".num_batches_tracked") || key == "num_batches_tracked"
}

fn has_prefix(key: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| key.starts_with(p.as_str()))
}

/// Copies the checkpoint's tensors into `vs`'s variables (converting dtype and device to each
/// variable's), after checking that everything matches; see [`LoadOptions`]. On failure the
/// error is a [`LoadError`] listing every problem, and no variable has been modified.
pub fn load_into(vs: &VarStore, sd: &StateDict, opts: &LoadOptions) -> Result<LoadReport> {
    let vars = vs.variables_.lock().unwrap_or_else(|e| e.into_inner());
    let vars: &HashMap<String, Tensor> = &vars.named_variables;
    let mut report = LoadReport::default();
    let mut err = LoadError { missing: Vec::new(), unexpected: Vec::new(), mismatched: Vec::new() };
    let mut copies: Vec<(&Tensor, &Tensor)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();

    for (key, t) in &sd.entries {
        match vars.get(key) {
            Some(var) => {
                seen.insert(key);
                if var.size() == t.size() {
                    copies.push((var, t));
                } else if has_prefix(key, &opts.ignore_missing) {
                    // A head being replaced: keep the variable as initialised.
                    report.skipped.push(key.clone());
                    seen.remove(key.as_str());
                } else {
                    err.mismatched.push((key.clone(), t.size(), var.size()));
                }
            }
            None if harmless_extra(key) => report.skipped.push(key.clone()),
            None if has_prefix(key, &opts.ignore_unexpected) || !opts.strict => report.unexpected.push(key.clone()),
            None => err.unexpected.push((key.clone(), t.size())),
        }
    }
    let mut missing: Vec<(&String, &Tensor)> =
        vars.iter().filter(|(k, _)| !seen.contains(k.as_str()) && !harmless_extra(k)).collect();
    missing.sort_by(|a, b| a.0.cmp(b.0));
    for (k, var) in missing {
        if has_prefix(k, &opts.ignore_missing) || !opts.strict {
            report.missing.push(k.clone());
        } else {
            err.missing.push((k.clone(), var.size()));
        }
    }
    if !(err.missing.is_empty() && err.unexpected.is_empty() && err.mismatched.is_empty()) {
        return Err(err.into());
    }
    tch::no_grad(|| -> Result<()> {
        for (var, t) in &copies {
            // copy_ converts dtype and device.
            let mut var = var.shallow_clone();
            var.f_copy_(t)?;
        }
        Ok(())
    })?;
    report.loaded = copies.len();
    Ok(report)
}
