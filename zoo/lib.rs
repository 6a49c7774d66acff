//! `zoo`: the classic convolutional networks, from LeNet-5 to ShuffleNet, on libtorch via `tch`.
//!
//! - [`models`]: one file per architecture, one trait ([`models::Classifier`]) and one registry.
//!   Features of any layer: [`models::Model::features`].
//! - [`nn`]: the layers models are built from; each knows its checkpoint path and can be traced.
//! - [`checkpoint`]: reading PyTorch (zip and legacy) and safetensors files without executing pickles.
//! - [`weights`]: the manifest of public checkpoints, the verifying downloader and the cache.
//! - [`data`]: image decoding and preprocessing, class names, data sets.
//! - [`dist`]: data-parallel training on c10d (torchrun, Slurm, Gloo, NCCL), DDP's semantics.
//! - [`infer`]: inference engines (eager, or traced, frozen and optimized) and `zoo benchmark`'s
//!   measurement.
//! - [`export`]: ONNX and TorchScript files of any model, for serving engines.
//! - [`train`]: fine-tuning and training (data sets, augmentation, optimisers, the loop).
//! - `commands` (the `cli` feature): what the `zoo` command line runs.
//! - [`outfile`]: output files written whole or not at all, beside the user's path.
//! - [`text`]: escaping control characters in messages that quote file content.
//! - [`runtime`]: process-wide settings for libtorch on the CPU ([`runtime::tune_cpu_allocator`]).
//! - [`progress`]: terminal progress bars (drawn with the `progress` feature).
//!
//! Every model is a [`tch::nn::ModuleT`]: it takes `apply_t` and goes into `nn::seq_t()`.
//!
//! ```
//! use tch::nn::{self, ModuleT};
//! use tch::{Device, Kind, Tensor};
//! use zoo::models::{BuildConfig, Model};
//!
//! # fn main() -> anyhow::Result<()> {
//! let _no_grad = tch::no_grad_guard();
//! let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
//! // Random initialisation; `weights::pretrained::load_with` gives pretrained ones.
//! let model = Model::new("resnet18", BuildConfig::default(), Device::Cpu)?;
//! assert_eq!(xs.apply_t(&model, false).size(), [2, 1000]);
//!
//! // Without a head (0 classes) a model gives its pooled features: a backbone for tch layers.
//! let backbone = Model::new("mobilenet_v3_small", BuildConfig { num_classes: 0, drop_rate: None }, Device::Cpu)?;
//! let vs = nn::VarStore::new(Device::Cpu);
//! let head = nn::linear(vs.root() / "head", backbone.net.num_features(), 10, Default::default());
//! let net = nn::seq_t().add(backbone).add(head);
//! assert_eq!(xs.apply_t(&net, false).size(), [2, 10]);
//! # Ok(())
//! # }
//! ```
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod commands;
pub mod data;
pub mod dist;
pub mod export;
pub mod infer;
pub mod models;
pub mod nn;
pub mod outfile;
#[cfg(feature = "plot")]
pub mod plot;
pub mod progress;
pub mod runtime;
pub mod text;
pub mod train;
pub mod weights;
