//! Fine-tuning and training: `zoo finetune`, `zoo train` and `zoo eval`.
//!
//! - [`dataset`]: image folders (`DIR/train` + `DIR/val`, or one folder split per class).
//! - [`augment`]: on-the-fly augmentation in rayon workers, reproducible per sample.
//! - [`autocast`]: float16 autocast on CUDA (`--amp`).
//! - [`optim`]: SGD / AdamW over explicit parameter groups, schedules, loss scaling.
//! - [`freeze`]: `--freeze none|backbone|until:STAGE`, frozen batch norms kept in eval mode.
//! - [`trainer`]: the loop (preparation, epochs, resume), and evaluation.
//! - [`checkpoints`]: the files of a run: weights, resume state, metrics, curves, `run.json`.
pub mod augment;
pub mod autocast;
pub mod checkpoints;
pub mod dataset;
pub mod freeze;
pub mod optim;
pub mod trainer;

pub use augment::AugmentConfig;
pub use freeze::Freeze;
pub use optim::{OptimizerKind, Schedule};
pub use trainer::{evaluate, run, EvalOptions, EvalResult, TrainConfig, TrainSummary};
