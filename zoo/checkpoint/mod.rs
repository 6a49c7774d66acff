//! Checkpoint formats: PyTorch zip and legacy `torch.save` files, safetensors, and strict loading.
//!
//! [`read`] detects the format from the file's content, never executes pickled code (see
//! [`pickle`]), unwraps training checkpoints (`{"state_dict": ...}`) and DataParallel's `module.`
//! prefix, and returns a [`StateDict`]. [`apply_rules`] remaps keys, [`load_into`] copies into a
//! VarStore and reports every mismatch at once.
pub mod load;
pub mod pickle;
pub mod rules;
pub mod safetensors_io;
pub mod torch_file;

pub use load::{load_into, LoadError, LoadOptions, LoadReport};
pub use rules::{apply_rules, KeyRule};
pub use safetensors_io::{read_safetensors, read_safetensors_metadata, write_safetensors};

use crate::text::escape_controls;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Named tensors in file order, all on the CPU and contiguous.
#[derive(Debug, Default)]
pub struct StateDict {
    /// `(dotted key, tensor)` pairs.
    pub entries: Vec<(String, Tensor)>,
}

impl StateDict {
    /// The tensor stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// The keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A checkpoint file format, as detected from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` since PyTorch 1.6 (a zip archive).
    TorchZip,
    /// `torch.save` before 1.6, or with `_use_new_zipfile_serialization=False`.
    TorchLegacy,
    /// Hugging Face safetensors.
    Safetensors,
}

/// Detects the format from the first bytes of the file.
pub fn detect_format(path: &Path) -> Result<Format> {
    ensure_regular(path)?;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)?.take(16).read_to_end(&mut head)?;
    // Legacy files start with the pickle of the magic number: PROTO 2, LONG1 10 bytes.
    let legacy_prefix = [&[0x80u8, 0x02, 0x8a, 0x0a][..], &torch_file::LEGACY_MAGIC[..]].concat();
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(Format::TorchZip)
    } else if head.starts_with(&legacy_prefix) {
        Ok(Format::TorchLegacy)
    } else if head.len() >= 9 && head[8] == b'{' {
        // safetensors: a little-endian u64 header length, then a JSON object.
        Ok(Format::Safetensors)
    } else {
        bail!("unrecognised checkpoint format: neither a torch.save file (zip or legacy) nor safetensors")
    }
}

/// Reads any supported checkpoint into a [`StateDict`]: the format is detected from the
/// content; a state dict nested under `state_dict`/`model`/`model_state_dict`/`net` is
/// unwrapped; a `module.` prefix on every key (DataParallel) is stripped.
pub fn read(path: &Path) -> Result<StateDict> {
    let format = detect_format(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sd = match format {
        Format::TorchZip => torch_file::read_zip(path),
        Format::TorchLegacy => torch_file::read_legacy(path),
        Format::Safetensors => read_safetensors(path),
    }
    .with_context(|| format!("reading {} ({format:?} format)", path.display()))?;
    if !sd.is_empty() && sd.keys().all(|k| k.starts_with("module.")) {
        for (k, _) in &mut sd.entries {
            k.drain(.."module.".len());
        }
    }
    Ok(sd)
}

/// Refuses what is not a regular file before opening it: a FIFO would block the open, a device
/// such as `/dev/zero` would never end.
pub(crate) fn ensure_regular(path: &Path) -> Result<()> {
    crate::data::inputs::check_regular(path)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.replace("an image file", "a checkpoint file")))
}

/// A libtorch error as one line: its message without the C++ backtrace that follows it
/// ("Exception raised from ... frame #0 ..."), which tells a user nothing.
pub(crate) fn libtorch(e: tch::TchError) -> anyhow::Error {
    let text = e.to_string();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown error");
    let first = first.split(" Exception raised from ").next().unwrap_or(first);
    anyhow!("libtorch refused it: {}", escape_controls(first))
}

/// Checks a shape from a file against what libtorch can represent, before any libtorch call:
/// every dimension and the element count fit in an i64 (zero-sized dimensions included, since
/// libtorch still multiplies the others for strides), and so does the size in bytes. Returns
/// the element count.
pub(crate) fn check_shape(shape: &[u64], kind: Kind) -> Result<u64> {
    let max = i64::MAX as u64;
    let overflow =
        || anyhow!("shape {shape:?} of {kind:?} overflows: more elements or bytes than libtorch can address");
    let mut nonzero = 1u64;
    for (i, &d) in shape.iter().enumerate() {
        if d > max {
            bail!("dimension {i} of shape {shape:?} is {d}, more than libtorch can address (at most 2^63-1)");
        }
        if d != 0 {
            nonzero = nonzero.checked_mul(d).filter(|&n| n <= max).ok_or_else(overflow)?;
        }
    }
    nonzero.checked_mul(kind.elt_size_in_bytes() as u64).filter(|&b| b <= max).ok_or_else(overflow)?;
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}
