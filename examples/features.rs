//! Features for transfer learning: a pretrained network's pooled features (`pre_logits`) for the
//! images of a class-folder tree, then a nearest-class-mean classifier on them, scored by
//! leaving each image out in turn.
//!
//! ```text
//! cargo run --release --example features -- MODEL[.TAG] [--weights FILE] DIR
//! ```
//! DIR holds one folder per class (`DIR/cat/*.jpg`, `DIR/dog/*.jpg`). Any layer
//! `Model::layer_names` lists works in place of `pre_logits` (`fc7` for VGG, `layer3`, ...).
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use zoo::data::image::DecodeLimits;
use zoo::data::inputs::collect_files;
use zoo::models::Pool;
use zoo::weights::pretrained::{load_with, LoadOptions};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, weights, dir) = match args.as_slice() {
        [m, w, f, d] if w == "--weights" => (m, Some(PathBuf::from(f)), PathBuf::from(d)),
        [m, d] => (m, None, PathBuf::from(d)),
        _ => bail!("usage: features MODEL[.TAG] [--weights FILE] DIR"),
    };
    let loaded = load_with(model, weights.as_deref(), &LoadOptions::new(Device::Cpu))?;
    let files = collect_files(std::slice::from_ref(&dir));
    // The class of a file is its folder's name.
    let class_of = |p: &PathBuf| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    let mut classes: Vec<String> = files.iter().filter_map(class_of).collect();
    classes.dedup();
    let batch = loaded.preprocess.load_batch(&files, &DecodeLimits::default())?;
    let feats = loaded.model.features(&batch.tensor, "pre_logits", Pool::Avg)?;
    let labels: Vec<usize> = batch
        .loaded
        .iter()
        .map(|&i| classes.iter().position(|c| Some(c) == class_of(&files[i]).as_ref()).unwrap_or(0))
        .collect();
    println!("{} images, {} classes, features {:?}", labels.len(), classes.len(), feats.size());
    // Leave-one-out nearest class mean, on L2-normalised features.
    let feats = &feats / feats.norm_scalaropt_dim(2, [1i64], true).clamp_min(1e-12);
    let mut correct = 0;
    for (i, &truth) in labels.iter().enumerate() {
        let mut best = (f64::MIN, 0);
        for c in 0..classes.len() {
            let rows: Vec<i64> = (0..labels.len()).filter(|&j| j != i && labels[j] == c).map(|j| j as i64).collect();
            if rows.is_empty() {
                continue;
            }
            let mean = feats.index_select(0, &Tensor::from_slice(&rows)).mean_dim(0, false, Kind::Float);
            let score = (feats.get(i as i64) * mean).sum(Kind::Float).double_value(&[]);
            if score > best.0 {
                best = (score, c);
            }
        }
        correct += usize::from(best.1 == truth);
    }
    println!("nearest class mean, leave-one-out: {correct}/{} correct", labels.len());
    Ok(())
}
