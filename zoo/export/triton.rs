//! A Triton Inference Server model repository for an export: `REPO/NAME/1/model.onnx` (or
//! `model.pt`), `REPO/NAME/config.pbtxt` describing its input and output, and the class names in
//! `REPO/NAME/labels.txt` (Triton's classification extension reports them).
use super::{export, ExportOptions, Exported, Format};
use crate::weights::pretrained::Loaded;
use anyhow::{Context, Result};
use std::path::Path;

/// The largest batch Triton's dynamic batcher gathers for the model (a dynamic ONNX batch).
pub const MAX_BATCH: i64 = 32;

/// The model's folder name in the repository: its registry name.
pub fn model_name(loaded: &Loaded) -> &'static str {
    loaded.model.spec.name
}

/// `config.pbtxt` for an export of `loaded` with input `[N, C, H, W]`. ONNX files keep zoo's
/// tensor names; Triton's libtorch backend names TorchScript tensors by position
/// (`INPUT__0`, `OUTPUT__0`).
pub fn config(loaded: &Loaded, format: Format, input_shape: [i64; 4], static_batch: bool) -> String {
    let [_, c, h, w] = input_shape;
    let (platform, input, output) = match format {
        Format::Onnx => {
            ("onnxruntime_onnx", "input", if loaded.model.config.num_classes > 0 { "logits" } else { "features" })
        }
        Format::Torchscript => ("pytorch_libtorch", "INPUT__0", "OUTPUT__0"),
    };
    let outputs = if loaded.model.config.num_classes > 0 {
        loaded.model.config.num_classes
    } else {
        loaded.model.net.num_features()
    };
    let batch = if format == Format::Onnx && static_batch { 0 } else { MAX_BATCH };
    let (dims_in, dims_out) = if batch == 0 {
        (format!("1, {c}, {h}, {w}"), format!("1, {outputs}"))
    } else {
        (format!("{c}, {h}, {w}"), outputs.to_string())
    };
    let mut s = format!("name: \"{}\"\nplatform: \"{platform}\"\nmax_batch_size: {batch}\n", model_name(loaded));
    s += &format!("input [\n  {{\n    name: \"{input}\"\n    data_type: TYPE_FP32\n    dims: [ {dims_in} ]\n  }}\n]\n");
    s += &format!("output [\n  {{\n    name: \"{output}\"\n    data_type: TYPE_FP32\n    dims: [ {dims_out} ]\n");
    if loaded.model.config.num_classes > 0 {
        s += "    label_filename: \"labels.txt\"\n";
    }
    s += "  }\n]\n";
    if batch > 0 {
        s += "dynamic_batching { }\n";
    }
    s
}

/// Exports `loaded` into the Triton model repository `repo` (created if needed), version 1.
pub fn write_repository(loaded: &Loaded, repo: &Path, opts: &ExportOptions) -> Result<Exported> {
    let folder = repo.join(model_name(loaded));
    let version = folder.join("1");
    std::fs::create_dir_all(&version).with_context(|| format!("creating {}", version.display()))?;
    let file = version.join(match opts.format {
        Format::Onnx => "model.onnx",
        Format::Torchscript => "model.pt",
    });
    let e = export(loaded, &file, opts)?;
    let write = |name: &str, text: String| {
        let path = folder.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("config.pbtxt", config(loaded, opts.format, e.input_shape, opts.static_batch))?;
    if loaded.model.config.num_classes > 0 {
        write("labels.txt", loaded.labels.join("\n") + "\n")?;
    }
    Ok(e)
}
