//! `zoo`: the classic convolutional networks, from LeNet-5 to ShuffleNet, on libtorch via `tch`.
//!
//! - [`models`]: one file per architecture, one trait ([`models::Classifier`]) and one registry.
//! - [`nn`]: the layers models are built from; each knows its checkpoint path and can be traced.
//! - [`checkpoint`]: reading PyTorch (zip and legacy) and safetensors files without executing pickles.
//! - [`weights`]: the manifest of public checkpoints, the verifying downloader and the cache.
//! - [`data`]: image decoding and preprocessing, class names, data sets.
//! - [`dist`]: data-parallel training on c10d (torchrun, Slurm, Gloo, NCCL), DDP's semantics.
//! - [`train`]: fine-tuning and training (data sets, augmentation, optimisers, the loop).
//! - [`commands`]: what the `zoo` command line runs.
//! - [`text`]: escaping control characters in messages that quote file content.
//! - [`runtime`]: process-wide settings for libtorch on the CPU ([`runtime::tune_cpu_allocator`]).
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod dist;
pub mod models;
pub mod nn;
pub mod plot;
pub mod runtime;
pub mod text;
pub mod train;
pub mod weights;
