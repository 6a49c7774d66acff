//! Export for the serving engines users deploy on: ONNX (ONNX Runtime, OpenVINO, TensorRT,
//! Triton) and TorchScript (`torch.jit.load`, TorchServe, `tch::CModule`).
//!
//! Both start from one trace of zoo's own eval-mode forward pass by libtorch's JIT tracer
//! ([`torchscript::Traced`]): the TorchScript file is that traced module, whose parameters and
//! buffers carry the checkpoint keys; the ONNX file is written by zoo from the same graph
//! ([`onnx`]), each operator mapped to standard ONNX, initializers named by checkpoint keys.
//! zoo's forward passes read no tensor sizes, so the traced graphs hold none: the TorchScript
//! file takes any batch and input size; the ONNX file any batch at the exported size.
pub mod onnx;
pub mod torchscript;
pub mod triton;

use crate::weights::pretrained::Loaded;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    Onnx,
    Torchscript,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Onnx => "ONNX",
            Format::Torchscript => "TorchScript",
        })
    }
}

impl Format {
    /// The format an output path's extension names (`.onnx`; `.pt`, `.pth`, `.ts`, `.torchscript`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "onnx" => Some(Format::Onnx),
            "pt" | "pth" | "ts" | "torchscript" => Some(Format::Torchscript),
            _ => None,
        }
    }
}

/// What to export and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    pub format: Format,
    /// Input height and width of the traced graph (the preprocessing's crop by default). The
    /// TorchScript file takes other sizes too; the ONNX file is fixed to this one.
    pub input_size: Option<[i64; 2]>,
    /// ONNX opset ([`onnx::MIN_OPSET`] to [`onnx::MAX_OPSET`]).
    pub opset: i64,
    /// A fixed batch dimension of 1 in the ONNX file instead of a dynamic one.
    pub static_batch: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { format: Format::Onnx, input_size: None, opset: onnx::DEFAULT_OPSET, static_batch: false }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub output: PathBuf,
    pub format: Format,
    pub input_shape: [i64; 4],
    /// Bytes written.
    pub bytes: u64,
    /// Operators in the traced graph (constants and list plumbing not counted).
    pub nodes: usize,
}

/// The batch size a trace runs at: 2, so that a batch dimension is told apart from a size-1
/// dimension in the graph.
pub const TRACE_BATCH: i64 = 2;

/// The metadata both formats carry: the model, its weights, preprocessing and class names.
pub fn metadata(loaded: &Loaded) -> serde_json::Value {
    serde_json::json!({
        "format": "zoo-export",
        "zoo_version": env!("CARGO_PKG_VERSION"),
        "model": loaded.model.spec.name,
        "weights": loaded.source,
        "weights_sha256": loaded.sha256,
        "num_classes": loaded.model.config.num_classes,
        "preprocess": loaded.preprocess,
        "classes": loaded.labels,
    })
}

/// The input a trace runs on: `TRACE_BATCH` images of the exported size, random but fixed.
pub fn trace_input(loaded: &Loaded, input_size: Option<[i64; 2]>) -> Tensor {
    let c = loaded.model.spec.input_size[0];
    let [h, w] = input_size.unwrap_or([loaded.preprocess.crop[0] as i64, loaded.preprocess.crop[1] as i64]);
    tch::manual_seed(0);
    Tensor::randn([TRACE_BATCH, c, h, w], (Kind::Float, Device::Cpu))
}

/// Refuses options no file can be written with (before any model is loaded).
pub fn check_options(opts: &ExportOptions) -> Result<()> {
    if opts.format == Format::Onnx && !(onnx::MIN_OPSET..=onnx::MAX_OPSET).contains(&opts.opset) {
        bail!(
            "--opset {}: zoo writes ONNX opsets {} to {} ({}, the default, is read by ONNX Runtime 1.14+, \
             OpenVINO 2022.3+ and TensorRT 8.6+)",
            opts.opset,
            onnx::MIN_OPSET,
            onnx::MAX_OPSET,
            onnx::DEFAULT_OPSET
        );
    }
    if let Some([h, w]) = opts.input_size {
        if h <= 0 || w <= 0 {
            bail!("--input-size {h}x{w}: sizes must be positive");
        }
    }
    Ok(())
}

/// Exports `loaded` to `output`. Nothing is written when the model cannot be exported (an
/// operator with no ONNX form names its layer); the file appears complete or not at all.
pub fn export(loaded: &Loaded, output: &Path, opts: &ExportOptions) -> Result<Exported> {
    check_options(opts)?;
    crate::outfile::check_folder(output)?;
    if loaded.model.kind() != Kind::Float {
        bail!("zoo exports float32 models; load the model without --half/--bf16");
    }
    let input = trace_input(loaded, opts.input_size);
    let input_shape: [i64; 4] = input.size().try_into().expect("a 4-D input");
    let traced = torchscript::Traced::trace(&loaded.model, &input)?;
    let meta = metadata(loaded);
    let graph = onnx::Graph::parse(&traced.graph_json()?)?;
    let nodes = graph.nodes.iter().filter(|n| !n.kind.starts_with("prim::")).count();
    // Written beside the output and renamed: the file appears complete or not at all.
    let partial = crate::outfile::beside(output)?;
    let written = match opts.format {
        Format::Torchscript => traced.save(partial.path(), "zoo.json", &serde_json::to_string_pretty(&meta)?),
        Format::Onnx => {
            let model = onnx::write(&graph, &traced.layers, &loaded.model, &meta, opts)?;
            std::fs::write(partial.path(), prost::Message::encode_to_vec(&model)).map_err(anyhow::Error::from)
        }
    };
    written.with_context(|| format!("writing {}", output.display()))?;
    crate::outfile::persist(partial, output)?;
    let bytes = std::fs::metadata(output)?.len();
    Ok(Exported { output: output.to_path_buf(), format: opts.format, input_shape, bytes, nodes })
}
