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

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;
use tch::Tensor;

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
