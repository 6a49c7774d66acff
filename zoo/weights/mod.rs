//! Pretrained weights: the manifest, the verifying downloader and the cache.
