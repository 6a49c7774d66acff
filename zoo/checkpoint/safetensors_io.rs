//! Safetensors files: reading into a [`StateDict`] (in file order), writing atomically, and
//! reading only the header's `__metadata__`.
use super::StateDict;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
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

/// Reads a safetensors file; entries come in the order of their data in the file.
pub fn read_safetensors(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("invalid safetensors file: {e:?}"))?;
    let mut views = st.tensors();
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut entries = Vec::with_capacity(views.len());
    for (name, view) in views {
        let kind = kind_of(view.dtype()).with_context(|| format!("tensor `{name}`"))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        // The header was validated by `deserialize`: the data length matches shape and dtype.
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        entries.push((name, t));
    }
    Ok(StateDict { entries })
}

/// Reads only the `__metadata__` map of a safetensors file's header (empty if absent).
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).context("not a safetensors file: too short")?;
    let n = u64::from_le_bytes(n);
    // Same cap as the safetensors crate, and never beyond the file.
    if n > 100_000_000 || n > file_len - 8 {
        bail!("not a safetensors file: header length {n} is implausible");
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header).context("invalid safetensors header")?;
    let mut out = BTreeMap::new();
    if let Some(meta) = json.get("__metadata__") {
        let meta = meta.as_object().ok_or_else(|| anyhow!("__metadata__ is not an object"))?;
        for (k, v) in meta {
            let v = v.as_str().ok_or_else(|| anyhow!("__metadata__ value for {k} is not a string"))?;
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
