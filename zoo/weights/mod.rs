//! Pretrained weights: the manifest, the verifying downloader and the cache.
//!
//! - [`manifest`](mod@manifest): typed `arch.tag` entries (`weights-manifest.toml`), lookup, listing, validation.
//! - [`download`]: [`fetch`], [`import`], [`verify_all`], [`rehash_all`], [`path_of`]: what `zoo weights` runs.
//! - [`cache`]: the cache folder, its sidecars and locks.
//! - [`digest`]: SHA-256 / SHA-1, full digests and published prefixes.
//! - [`categories`]: class names ([`imagenet_classes`]).
//! - [`hub`]: the torch.hub and Hugging Face caches, whose verified files are used in place.
//! - [`identify`]: what a local checkpoint is (digest, zoo metadata, layout).
//! - [`pretrained`]: the one loading path (entry or file to a model with its preprocessing).
//!
//! Environment: `ZOO_HOME` (cache and override manifest), `ZOO_OFFLINE=1` (or `HF_HUB_OFFLINE=1`),
//! `ZOO_MIRROR`, `ZOO_TRUST_UNVERIFIED=1`, and `TORCH_HOME`, `HF_HOME`, `HF_HUB_CACHE` for the
//! other caches; see [`FetchOptions::from_env`].
pub mod cache;
pub mod categories;
pub mod digest;
pub mod download;
pub mod hub;
pub mod identify;
pub mod manifest;
pub mod pretrained;

pub use cache::{zoo_home, Cache, CacheState};
pub use categories::{category_names, imagenet_classes};
pub use download::{fetch, import, path_of, rehash_all, verify_all, FetchError, FetchOptions, SourceError};
pub use manifest::{DigestKind, Format, LookupError, Manifest, ManifestError, Problem, WeightsEntry};

use std::sync::OnceLock;

/// The manifest of this process ([`Manifest::load_default`]), loaded once.
pub fn manifest() -> Result<&'static Manifest, &'static ManifestError> {
    static MANIFEST: OnceLock<Result<Manifest, ManifestError>> = OnceLock::new();
    MANIFEST.get_or_init(Manifest::load_default).as_ref()
}

/// ImageNet-1k top-1 accuracy published for `name`'s weights (`arch` means its default entry):
/// the figure comparisons put side by side; `None` for weights of another data set (lenet5's
/// Fashion-MNIST) or without a published figure.
pub fn default_imagenet_top1(name: &str) -> Option<f64> {
    let m = manifest().ok()?;
    let e = m.resolve(name).ok()?;
    e.acc1.filter(|_| e.categories == "imagenet1k")
}
