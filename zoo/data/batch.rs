//! Image files to batches: each file decoded and preprocessed (in parallel, rayon), batches
//! made one or more ahead of their consumer through a bounded queue ([`crate::data::prefetch`]),
//! so memory stays bounded by batch size and queue depth whatever the number of files. Used by
//! classify, features and evaluation; a file that cannot be read is an `Err` in its slot, never
//! a failed batch.
use crate::data::image::{load_luma_with, load_rgb_with, DecodeLimits, DecodeOptions};
use crate::data::inputs;
use crate::data::prefetch::prefetch_after;
use crate::data::preprocess::Preprocess;
use crate::text::escape_controls;
use anyhow::Result;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// A decoded, preprocessed file, or why not.
pub struct Prepared {
    /// The preprocessed `[C, H, W]` values, or the reason the file was not read.
    pub data: std::result::Result<Vec<f32>, String>,
    /// Something the user should know about a file that was read (upscaled to the crop).
    pub warning: Option<String>,
}

/// How the inputs of `pre` are decoded: full size and bit-exact, or (`fast`) JPEGs decoded at
/// 1/2, 1/4 or 1/8 size in the DCT domain while the short side stays at least `pre.resize`, as
/// PIL's `draft("RGB", (resize, resize))` does. The resize then starts from other pixels:
/// probabilities move a little (see BENCHMARKS.md).
pub fn decode_options(pre: &Preprocess, limits: DecodeLimits, fast: bool) -> DecodeOptions {
    DecodeOptions { limits, draft: fast.then_some(pre.resize) }
}

/// Decodes and preprocesses one file (used by classify and features).
pub fn prepare(path: &Path, pre: &Preprocess, decode: &DecodeOptions) -> Prepared {
    if let Err(e) = inputs::check_regular(path) {
        return Prepared { data: Err(e), warning: None };
    }
    let (dims, data) = if pre.channels == 1 {
        match load_luma_with(path, decode) {
            Ok(img) => (img.dimensions(), pre.apply_luma(&img)),
            // What went wrong, without the path: the item is the path's.
            Err(e) => return Prepared { data: Err(e.kind().to_string()), warning: None },
        }
    } else {
        match load_rgb_with(path, decode) {
            Ok(img) => (img.dimensions(), pre.apply(&img)),
            // What went wrong, without the path: the item is the path's.
            Err(e) => return Prepared { data: Err(e.kind().to_string()), warning: None },
        }
    };
    let (w, h) = dims;
    let warning = (w < pre.crop[1] || h < pre.crop[0]).then(|| {
        format!("image is {w}x{h}, smaller than the {}x{} crop: upscaled as torchvision does", pre.crop[1], pre.crop[0])
    });
    Prepared { data: data.map_err(|e| format!("{e:#}")), warning }
}

/// Decodes and preprocesses `files` a batch at a time (each batch in parallel), `queue_depth`
/// batches ahead of `consume`, which gets the index of the batch's first file; `setup` runs
/// while the first batch decodes.
pub fn pipeline(
    files: &[PathBuf],
    pre: &Preprocess,
    decode: &DecodeOptions,
    batch_size: usize,
    queue_depth: usize,
    setup: impl FnOnce() -> Result<()>,
    mut consume: impl FnMut(usize, Vec<Prepared>) -> Result<()>,
) -> Result<()> {
    let batch_size = batch_size.max(1);
    let chunks: Vec<&[PathBuf]> = files.chunks(batch_size).collect();
    let make = |chunk: &&[PathBuf]| chunk.par_iter().map(|p| prepare(p, pre, decode)).collect::<Vec<_>>();
    prefetch_after(&chunks, queue_depth, make, setup, |i, batch| consume(i * batch_size, batch))
}

/// Decodes and preprocesses `files` (in parallel) into one float32 batch: int8 calibration
/// images. Files that cannot be read are skipped with a line on standard error; none readable
/// is an error.
pub fn load_all(files: &[PathBuf], pre: &Preprocess, decode: &DecodeOptions) -> Result<Tensor> {
    let prepared: Vec<Prepared> = files.par_iter().map(|p| prepare(p, pre, decode)).collect();
    for (p, item) in files.iter().zip(&prepared) {
        if let Err(e) = &item.data {
            eprintln!("{}", escape_controls(&format!("zoo: skipping {}: {e}", p.display())));
        }
    }
    stack(&prepared, pre).ok_or_else(|| anyhow::anyhow!("none of the {} image(s) could be read", files.len()))
}

/// Stacks the successfully prepared items of a batch into `[n, C, H, W]`.
pub fn stack(batch: &[Prepared], pre: &Preprocess) -> Option<Tensor> {
    let [c, h, w] = pre.output_shape();
    let rows: Vec<&Vec<f32>> = batch.iter().filter_map(|p| p.data.as_ref().ok()).collect();
    if rows.is_empty() {
        return None;
    }
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Some(Tensor::from_slice(&flat).view([rows.len() as i64, c as i64, h as i64, w as i64]))
}
