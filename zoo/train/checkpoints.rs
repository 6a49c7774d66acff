//! The files a training run keeps in `OUT`: `last.safetensors`, `best.safetensors` (best val
//! top-1), `resume.safetensors` (weights under `model.`, optimiser state under `optim.`, and a
//! [`ResumeState`] in the metadata), `metrics.csv`, `curves.png` and `run.json`. Each is written
//! atomically, so a crash leaves the previous epoch's file in place.
use super::dataset::DataSet;
use super::optim::GradScaler;
use super::trainer::TrainConfig;
use crate::checkpoint::{self, StateDict};
use crate::data::preprocess::Preprocess;
use crate::weights::pretrained::meta;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The resume file's name in a run's folder.
pub const RESUME_FILE: &str = "resume.safetensors";

/// Metadata key of the resume file's state (JSON of [`ResumeState`]).
pub const RESUME_KEY: &str = "zoo.resume";

/// What the resume file records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs finished.
    pub epoch: usize,
    /// Optimiser steps attempted (the schedule's position).
    pub global_step: u64,
    /// Optimiser steps applied (AdamW's bias correction).
    pub optimizer_steps: u64,
    pub best_acc1: Option<f64>,
    pub best_epoch: usize,
    pub scaler: GradScaler,
    pub classes: Vec<String>,
    pub config: TrainConfig,
    /// Processes of the data-parallel run that wrote it (1: a single process).
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

/// The state stored in the resume file at `path`.
pub fn read_resume_state(path: &Path) -> Result<ResumeState> {
    let meta = checkpoint::read_safetensors_metadata(path)?;
    serde_json::from_str(meta.get(RESUME_KEY).context("the resume file has no zoo.resume state")?)
        .context("reading the resume state")
}

/// The tensors of the resume file at `path`: the model's weights and the optimiser's state.
pub(super) fn read_resume_entries(path: &Path) -> Result<(StateDict, StateDict)> {
    Ok(split_resume(checkpoint::read(path)?))
}

/// A resume file's tensors parted into the model's weights and the optimiser's state (each
/// without its `model.` / `optim.` prefix).
pub fn split_resume(tensors: StateDict) -> (StateDict, StateDict) {
    let (mut weights, mut optim) = (StateDict::default(), StateDict::default());
    for (k, t) in tensors.entries {
        if let Some(k) = k.strip_prefix("model.") {
            weights.entries.push((k.to_string(), t));
        } else if let Some(k) = k.strip_prefix("optim.") {
            optim.entries.push((k.to_string(), t));
        }
    }
    (weights, optim)
}

/// Metrics of one epoch (one row of `metrics.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc1: f64,
    pub val_loss: f64,
    pub val_acc1: f64,
    pub val_acc5: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,lr,train_loss,train_acc1,val_loss,val_acc1,val_acc5,seconds,images_per_second";

impl EpochMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{:.6e},{:.6},{:.4},{:.6},{:.4},{:.4},{:.2},{:.1}",
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_acc1,
            self.val_loss,
            self.val_acc1,
            self.val_acc5,
            self.seconds,
            self.images_per_second
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let v: Vec<f64> = line.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
        (v.len() == 9).then(|| EpochMetrics {
            epoch: v[0] as usize,
            lr: v[1],
            train_loss: v[2],
            train_acc1: v[3],
            val_loss: v[4],
            val_acc1: v[5],
            val_acc5: v[6],
            seconds: v[7],
            images_per_second: v[8],
        })
    }
}

/// Metadata that makes a zoo checkpoint self-describing (see [`meta`]).
pub fn checkpoint_metadata(arch: &str, classes: &[String], pre: &Preprocess) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    m.insert(meta::ARCH.to_string(), arch.to_string());
    m.insert(meta::CLASSES.to_string(), serde_json::to_string(classes)?);
    m.insert(meta::PREPROCESS.to_string(), serde_json::to_string(pre)?);
    Ok(m)
}

/// The output folder of one run, with what every epoch writes into it unchanged.
pub(super) struct RunFiles {
    out: PathBuf,
    /// Of every checkpoint: architecture, classes, preprocessing.
    metadata: BTreeMap<String, String>,
    /// `run.json` but for the progress fields, which each write adds.
    run_json: serde_json::Value,
    #[cfg(feature = "plot")]
    title: String,
}

impl RunFiles {
    /// The files of `cfg`'s run: `arch` started from `source` on `data`.
    pub(super) fn new(
        cfg: &TrainConfig,
        arch: &str,
        source: &str,
        pre: &Preprocess,
        data: &DataSet,
        device: Device,
    ) -> Result<Self> {
        let run_json = serde_json::json!({
            "zoo_version": env!("CARGO_PKG_VERSION"),
            "command": if cfg.pretrained { "finetune" } else { "train" },
            "arch": arch,
            "initial_weights": source,
            "classes": data.classes,
            "preprocess": pre,
            "config": cfg,
            "device": format!("{device:?}"),
            "data": {
                "layout": format!("{:?}", data.layout),
                "train_images": data.train.len(),
                "val_images": data.val.len(),
                "train_per_class": data.counts(&data.train),
                "val_per_class": data.counts(&data.val),
                "skipped": data.skipped.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect::<Vec<_>>(),
                "warnings": data.warnings,
            },
        });
        Ok(RunFiles {
            out: cfg.out.clone(),
            metadata: checkpoint_metadata(arch, &data.classes, pre)?,
            run_json,
            #[cfg(feature = "plot")]
            title: format!("{arch} on {}", cfg.data.display()),
        })
    }

    /// The rows of `metrics.csv` up to epoch `upto` (those after it belong to an epoch the
    /// resume file does not hold).
    pub(super) fn history(&self, upto: usize) -> Vec<EpochMetrics> {
        let text = std::fs::read_to_string(self.out.join("metrics.csv")).unwrap_or_default();
        text.lines().skip(1).filter_map(EpochMetrics::parse).filter(|m| m.epoch <= upto).collect()
    }

    /// `run.json` after `epochs_done` epochs, the best of them so far `best_epoch`.
    pub(super) fn write_run_json(&self, epochs_done: usize, best_epoch: usize, best_acc1: Option<f64>) -> Result<()> {
        let mut json = self.run_json.clone();
        if let Some(o) = json.as_object_mut() {
            o.insert("epochs_done".into(), epochs_done.into());
            o.insert("best_epoch".into(), best_epoch.into());
            o.insert("best_val_acc1".into(), serde_json::to_value(best_acc1)?);
        }
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        write_atomic(&self.out.join("run.json"), &text)
    }

    /// Everything a finished epoch writes: the weights `entries` (as `best` too when they
    /// `improved`), `history`, the resume file (`state` and the optimiser's `optim` entries) and
    /// `run.json`. Checkpoints first, then metrics, then the resume file: a crash in between
    /// redoes this epoch on `--resume` (metrics rows beyond the resume epoch are dropped).
    pub(super) fn write_epoch(
        &self,
        entries: &[(String, Tensor)],
        improved: bool,
        history: &[EpochMetrics],
        state: &ResumeState,
        optim: Vec<(String, Tensor)>,
    ) -> Result<()> {
        checkpoint::write_safetensors(&self.out.join("last.safetensors"), entries, Some(&self.metadata))?;
        if improved {
            checkpoint::write_safetensors(&self.out.join("best.safetensors"), entries, Some(&self.metadata))?;
        }
        write_metrics(&self.out.join("metrics.csv"), history)?;
        #[cfg(feature = "plot")]
        if let Err(e) = plot_curves(&self.out.join("curves.png"), &self.title, history) {
            eprintln!("warning: curves.png not drawn: {e:#}");
        }
        let mut resume: Vec<(String, Tensor)> =
            entries.iter().map(|(k, t)| (format!("model.{k}"), t.shallow_clone())).collect();
        resume.extend(optim.into_iter().map(|(k, t)| (format!("optim.{k}"), t)));
        let mut meta = self.metadata.clone();
        meta.insert(RESUME_KEY.to_string(), serde_json::to_string(state)?);
        checkpoint::write_safetensors(&self.out.join(RESUME_FILE), &resume, Some(&meta))?;
        self.write_run_json(state.epoch, state.best_epoch, state.best_acc1)
    }
}

/// Writes `text` to `path` atomically (a hidden file of its own beside it, then a rename).
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut tmp = crate::outfile::beside(path)?;
    tmp.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    crate::outfile::persist(tmp, path)
}

fn write_metrics(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut s = String::from(METRICS_HEADER);
    s.push('\n');
    for r in rows {
        s += &r.csv();
        s.push('\n');
    }
    write_atomic(path, &s)
}

#[cfg(feature = "plot")]
fn plot_curves(path: &Path, title: &str, rows: &[EpochMetrics]) -> Result<()> {
    let points: Vec<crate::plot::EpochPoint> = rows
        .iter()
        .map(|r| crate::plot::EpochPoint {
            epoch: r.epoch,
            lr: r.lr,
            train_loss: r.train_loss,
            val_loss: r.val_loss,
            train_acc1: r.train_acc1,
            val_acc1: r.val_acc1,
        })
        .collect();
    crate::plot::training_curves(path, title, &points)
}
