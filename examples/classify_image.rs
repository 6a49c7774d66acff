//! Loads a model with pretrained weights and prints the top-5 classes of each image.
//!
//! ```text
//! cargo run --release --example classify_image -- MODEL[.TAG] [--weights FILE] IMAGE...
//! cargo run --release --example classify_image -- efficientnet_lite0 --weights lite0.pth coffee.png
//! ```
//! Without `--weights` the manifest's file is used (downloaded and verified on first use, or
//! found in zoo's, torch.hub's or Hugging Face's cache). The preprocessing is the one the weights
//! were published with: `load_with` returns it beside the model.
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::Device;
use zoo::data::image::{load_rgb, DecodeLimits};
use zoo::weights::pretrained::{load_with, LoadOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(model) = args.next() else { bail!("usage: classify_image MODEL[.TAG] [--weights FILE] IMAGE...") };
    let (mut weights, mut images) = (None, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--weights" => weights = args.next().map(PathBuf::from),
            _ => images.push(PathBuf::from(a)),
        }
    }
    let loaded = load_with(&model, weights.as_deref(), &LoadOptions::new(Device::cuda_if_available()))?;
    for path in &images {
        let image = load_rgb(path, &DecodeLimits::default())?;
        let input = loaded.preprocess.to_tensor(&image)?;
        let probs = loaded.model.predict(&input)?.softmax(-1, tch::Kind::Float).squeeze_dim(0);
        let (p, i) = probs.topk(5, -1, true, true);
        println!("{}", path.display());
        for k in 0..5 {
            let class = i.int64_value(&[k]) as usize;
            println!("  {:>6.2}%  {}", 100.0 * p.double_value(&[k]), loaded.labels[class]);
        }
    }
    Ok(())
}
