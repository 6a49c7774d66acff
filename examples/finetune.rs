//! A fine-tuning loop written with the library: pretrained weights, a new head for the classes
//! of a class-folder tree, the backbone frozen, Adam on the head, a few epochs.
//!
//! ```text
//! cargo run --release --example finetune -- MODEL[.TAG] [--weights FILE] DIR
//! ```
//! (`zoo finetune` is the full version: augmentation, schedules, validation, checkpoints.)
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::nn::{ModuleT, OptimizerConfig};
use tch::{nn, Device, Tensor};
use zoo::data::image::DecodeLimits;
use zoo::data::inputs::collect_files;
use zoo::weights::pretrained::{load_with, LoadOptions};

fn main() -> Result<()> {
    tch::manual_seed(0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, weights, dir) = match args.as_slice() {
        [m, w, f, d] if w == "--weights" => (m, Some(PathBuf::from(f)), PathBuf::from(d)),
        [m, d] => (m, None, PathBuf::from(d)),
        _ => bail!("usage: finetune MODEL[.TAG] [--weights FILE] DIR"),
    };
    let mut loaded = load_with(model, weights.as_deref(), &LoadOptions::new(Device::Cpu))?;
    let files = collect_files(std::slice::from_ref(&dir));
    let class_of = |p: &PathBuf| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    let mut classes: Vec<String> = files.iter().filter_map(class_of).collect();
    classes.dedup();
    let batch = loaded.preprocess.load_batch(&files, &DecodeLimits::default())?;
    let ys: Vec<i64> = batch
        .loaded
        .iter()
        .map(|&i| classes.iter().position(|c| Some(c) == class_of(&files[i]).as_ref()).unwrap_or(0) as i64)
        .collect();
    let ys = Tensor::from_slice(&ys);

    // A new head for these classes; everything else frozen.
    let model = &mut loaded.model;
    model.reset_classifier(classes.len() as i64);
    let head = model.net.classifier_prefixes();
    for (name, mut var) in model.vs.variables() {
        let _ = var.requires_grad_(head.iter().any(|p| name.starts_with(p.as_str())));
    }
    let mut opt = nn::Adam::default().build(&model.vs, 1e-2)?;
    for epoch in 1..=5 {
        // Frozen batch norms keep their running statistics: the backbone runs in eval mode.
        let logits = model.forward_t(&batch.tensor, false);
        let loss = logits.cross_entropy_for_logits(&ys);
        opt.backward_step(&loss);
        let acc = logits.argmax(-1, false).eq_tensor(&ys).to_kind(tch::Kind::Float).mean(tch::Kind::Float);
        println!(
            "epoch {epoch}: loss {:.4}, train accuracy {:.1}%",
            loss.double_value(&[]),
            100.0 * acc.double_value(&[])
        );
    }
    Ok(())
}
