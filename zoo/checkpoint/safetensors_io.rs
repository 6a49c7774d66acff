//! Safetensors files: reading into a [`StateDict`] (in file order), writing atomically, and
//! reading only the header's `__metadata__`.
use super::StateDict;
use crate::text::escape_controls;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("unsupported safetensors dtype {other:?}"),
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("cannot store {other:?} tensors in safetensors"),
    })
}

/// One tensor of a safetensors header, as the format defines it.
#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn dtype_named(name: &str) -> Result<Kind> {
    let dtype: Dtype = serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| anyhow!("unknown dtype \"{}\"", escape_controls(name)))?;
    kind_of(dtype)
}

/// Reads the header: its length, then the JSON object, each checked against the file first.
fn read_header(f: &mut File, file_len: u64) -> Result<(u64, serde_json::Map<String, serde_json::Value>)> {
    let mut n = [0u8; 8];
    f.read_exact(&mut n).context("not a safetensors file: shorter than the 8-byte header length")?;
    let n = u64::from_le_bytes(n);
    // Same cap as the safetensors crate, and never beyond the file.
    if n > 100_000_000 || n > file_len - 8 {
        bail!("not a safetensors file: the header claims {n} bytes but the file has {}", file_len - 8);
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow!("the header is not valid JSON: {}", escape_controls(&e.to_string())))?;
    match json {
        serde_json::Value::Object(map) => Ok((n, map)),
        other => bail!("the header is a JSON {}, not an object of tensors", json_kind(&other)),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Reads a safetensors file; entries come in the order of their data in the file. The header is
/// validated in full (dtypes, shapes against libtorch's i64 limits, offsets contiguous and
/// covering exactly the data present) before any tensor is allocated, and each tensor's bytes
/// are then read straight into its memory (never held twice).
pub fn read_safetensors(path: &Path) -> Result<StateDict> {
    super::ensure_regular(path)?;
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let (n, header) = read_header(&mut f, file_len)?;
    let data_len = file_len - 8 - n;
    let mut tensors = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let shown = escape_controls(&name).into_owned();
        let e: HeaderEntry = serde_json::from_value(value).map_err(|e| {
            anyhow!(
                "tensor `{shown}`: the header entry is not {{dtype, shape, data_offsets}}: {}",
                escape_controls(&e.to_string())
            )
        })?;
        let kind = dtype_named(&e.dtype).with_context(|| format!("tensor `{shown}`"))?;
        let numel = super::check_shape(&e.shape, kind).with_context(|| format!("tensor `{shown}`"))?;
        let (start, end) = e.data_offsets;
        let nbytes = numel * kind.elt_size_in_bytes() as u64;
        if end < start || end - start != nbytes {
            bail!(
                "tensor `{shown}`: shape {:?} of {kind:?} needs {nbytes} bytes, but its data_offsets [{start}, {end}] \
                 span {}",
                e.shape,
                end.saturating_sub(start)
            );
        }
        if end > data_len {
            bail!("tensor `{shown}`: its data ends at byte {end} of the data, but the file holds only {data_len}");
        }
        tensors.push((start, end, name, kind, e.shape));
    }
    tensors.sort_by_key(|t| (t.0, t.1));
    // The format packs tensors back to back from offset 0: a gap or an overlap means two names
    // share bytes or bytes belong to no tensor.
    let mut at = 0;
    for (start, end, name, _, _) in &tensors {
        if *start != at {
            bail!(
                "tensor `{}`: its data starts at byte {start}, expected {at}: tensors overlap or leave gaps",
                escape_controls(name)
            );
        }
        at = *end;
    }
    if at != data_len {
        bail!("the tensors cover {at} bytes but the file holds {data_len} bytes of data after the header");
    }
    let mut r = std::io::BufReader::new(f);
    let mut entries = Vec::with_capacity(tensors.len());
    for (start, end, name, kind, shape) in tensors {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_empty(shape.as_slice(), (kind, Device::Cpu)).map_err(super::libtorch)?;
        let len = (end - start) as usize;
        if len > 0 {
            // SAFETY: `t` is a new contiguous CPU tensor of exactly `len` bytes (checked against
            // shape and dtype above) that nothing else refers to; the slice ends with this block.
            let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, len) };
            r.read_exact(buf).with_context(|| format!("reading tensor `{}`", escape_controls(&name)))?;
        }
        entries.push((name, t));
    }
    Ok(StateDict { entries })
}

/// Reads only the `__metadata__` map of a safetensors file's header (empty if absent).
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    super::ensure_regular(path)?;
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let (_, header) = read_header(&mut f, file_len)?;
    let mut out = BTreeMap::new();
    if let Some(meta) = header.get("__metadata__") {
        let meta = meta.as_object().ok_or_else(|| anyhow!("__metadata__ is not an object"))?;
        for (k, v) in meta {
            let v =
                v.as_str().ok_or_else(|| anyhow!("__metadata__ value for {} is not a string", escape_controls(k)))?;
            out.insert(k.clone(), v.to_owned());
        }
    }
    Ok(out)
}

/// A tensor's bytes, ready for the serializer.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn raw(t: &Tensor) -> Result<Raw> {
    let kind = t.f_kind()?;
    let dtype = dtype_of(kind)?;
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(Raw { dtype, shape, data })
}

/// Writes `entries` as a safetensors file, atomically: into a temporary file in the same folder,
/// flushed to disk, then renamed over `path`, so readers never see a half-written file.
pub fn write_safetensors(
    path: &Path,
    entries: &[(String, Tensor)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut raws = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        if !seen.insert(name.as_str()) {
            bail!("duplicate tensor name `{name}`");
        }
        raws.push((name.clone(), raw(t).with_context(|| format!("tensor `{name}`"))?));
    }
    let info: Option<HashMap<String, String>> = metadata.map(|m| m.clone().into_iter().collect());
    let tmp = temp_path(path)?;
    let result = (|| -> Result<()> {
        safetensors::serialize_to_file(raws.iter().map(|(n, r)| (n.as_str(), r)), &info, &tmp)
            .map_err(|e| anyhow!("writing safetensors: {e:?}"))?;
        File::options().append(true).open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // Process id plus a counter: concurrent writers (threads or processes) never share a file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // Fail early with a clear message if the folder is not writable.
    File::create(&tmp).and_then(|mut f| f.flush()).with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}
