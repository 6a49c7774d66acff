//! `torch.save` files: the zip format (PyTorch ≥ 1.6: `<prefix>/data.pkl` plus raw storages in
//! `<prefix>/data/<key>`) and the legacy format (a sequence of pickles followed by the raw
//! storages, as in torchvision's older `.pth` files). Pickles go through the non-executing VM in
//! [`super::pickle`]; storages are read only once their claimed size has been checked against the
//! bytes actually present.
use super::pickle::{self, StorageRef, TensorSpec, Unpickled, Value};
use super::StateDict;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

/// Keys under which training checkpoints commonly nest the model's state dict.
pub const WRAPPER_KEYS: [&str; 4] = ["state_dict", "model", "model_state_dict", "net"];

/// The legacy format's first pickle: this magic number, as a little-endian integer.
pub const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Bytes of tensor data a file may make us copy beyond its storages (views such as `x[1:]` saved
/// next to `x` are copied out): a multiple of the file size, so that thousands of references to
/// one storage cannot turn a small file into a huge allocation.
fn copy_budget(file_len: u64) -> u64 {
    file_len.saturating_mul(4).saturating_add(64 << 20)
}

/// Reads a zip-format `torch.save` file.
pub fn read_zip(path: &Path) -> Result<StateDict> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("not a readable zip archive")?;
    let pkl_name = zip
        .file_names()
        .filter(|n| (*n == "data.pkl" || n.ends_with("/data.pkl")) && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("zip archive without `<name>/data.pkl`: not a torch.save checkpoint"))?;
    let prefix = pkl_name.strip_suffix("data.pkl").expect("filtered above").to_owned();

    let data_pkl = read_entry(&mut zip, &pkl_name, file_len, None)?;
    let unpickled = pickle::unpickle_bytes(&data_pkl).context("reading data.pkl")?;
    drop(data_pkl);

    let big_endian = match read_entry(&mut zip, &format!("{prefix}byteorder"), file_len, None) {
        Ok(b) => match b.as_slice() {
            b"little" => false,
            b"big" => true,
            other => bail!("unknown byteorder record {:?}", String::from_utf8_lossy(other)),
        },
        Err(_) => false, // files before the byteorder record were written little-endian
    };

    let selected = select_state_dict(&unpickled)?;
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut budget = copy_budget(file_len);
    let mut entries = Vec::with_capacity(selected.len());
    for (name, spec) in selected {
        let key = &spec.storage.key;
        if !storages.contains_key(key) {
            let elt = spec.storage.kind.elt_size_in_bytes() as u64;
            let nbytes =
                (spec.storage.numel as u64).checked_mul(elt).ok_or_else(|| anyhow!("storage {key} size overflows"))?;
            let record = format!("{prefix}data/{key}");
            let mut bytes = read_entry(&mut zip, &record, file_len, Some(nbytes))
                .with_context(|| format!("reading the storage of `{name}`"))?;
            if big_endian {
                swap_bytes(&mut bytes, elt as usize);
            }
            storages.insert(key.clone(), raw_storage(&bytes)?);
        }
        let t = materialize(&spec, &storages[key], &mut budget).with_context(|| format!("tensor `{name}`"))?;
        entries.push((name, t));
    }
    Ok(StateDict { entries })
}

/// Reads one zip entry, refusing sizes the file cannot justify before allocating. With
/// `expected`, the entry must hold exactly that many bytes.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    file_len: u64,
    expected: Option<u64>,
) -> Result<Vec<u8>> {
    let entry = zip.by_name(name).with_context(|| format!("missing record `{name}`"))?;
    let size = entry.size();
    // Stored entries cannot exceed the file; deflate expands at most ~1032:1.
    let limit = match entry.compression() {
        zip::CompressionMethod::Stored => file_len,
        _ => entry.compressed_size().min(file_len).saturating_mul(1032),
    };
    if size > limit {
        bail!("record `{name}` claims {size} bytes, more than the file can hold");
    }
    if let Some(n) = expected {
        if n != size {
            bail!("the checkpoint says `{name}` holds {n} bytes of tensor data, but the record has {size}");
        }
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry.take(size).read_to_end(&mut buf).with_context(|| format!("reading record `{name}`"))?;
    if buf.len() as u64 != size {
        bail!("record `{name}` is truncated: {} of {size} bytes", buf.len());
    }
    Ok(buf)
}

/// Reads a legacy (pre-1.6, non-zip) `torch.save` file.
pub fn read_legacy(path: &Path) -> Result<StateDict> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut pos = 0u64;
    let next = |r: &mut BufReader<File>, pos: &mut u64, what: &str| -> Result<Unpickled> {
        let u = pickle::unpickle(r, file_len - *pos).with_context(|| format!("reading the {what} pickle"))?;
        *pos += u.consumed;
        Ok(u)
    };
    let magic = next(&mut r, &mut pos, "magic-number")?;
    if !matches!(&magic.root, Value::BigInt(b) if **b == LEGACY_MAGIC) {
        bail!("not a legacy torch.save file: wrong magic number");
    }
    let proto = next(&mut r, &mut pos, "protocol-version")?;
    if proto.root.as_int() != Some(1001) {
        bail!("unsupported legacy torch.save protocol version {:?}", proto.root.as_int());
    }
    let sys_info = next(&mut r, &mut pos, "sys_info")?;
    let big_endian = matches!(sys_info.dict_get(&sys_info.root, "little_endian"), Some(Value::Bool(false)));
    let main = next(&mut r, &mut pos, "main")?;
    let keys_pickle = next(&mut r, &mut pos, "storage-key list")?;
    let keys = keys_pickle
        .list(&keys_pickle.root)
        .ok_or_else(|| anyhow!("the storage-key list is not a list"))?
        .iter()
        .map(|k| k.as_str().map(str::to_owned).ok_or_else(|| anyhow!("storage key is not a string")))
        .collect::<Result<Vec<String>>>()?;

    let selected = select_state_dict(&main)?;
    // Element types of every root storage (needed to skip unused ones too).
    let mut kinds: HashMap<&str, Kind> = HashMap::new();
    for s in &main.storages {
        kinds.entry(s.key.as_str()).or_insert(s.kind);
    }
    let wanted: std::collections::HashSet<&str> = selected.iter().map(|(_, s)| s.storage.key.as_str()).collect();

    // The storages follow in the order of the key list: an int64 element count, then the data.
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    for key in &keys {
        let kind = *kinds.get(key.as_str()).ok_or_else(|| anyhow!("storage {key} is listed but never used"))?;
        let elt = kind.elt_size_in_bytes() as u64;
        let mut n = [0u8; 8];
        if file_len - pos < 8 {
            bail!("truncated file: storage {key} is missing");
        }
        r.read_exact(&mut n).context("truncated file")?;
        pos += 8;
        let numel = if big_endian { i64::from_be_bytes(n) } else { i64::from_le_bytes(n) };
        let nbytes = u64::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(elt))
            .ok_or_else(|| anyhow!("storage {key} claims an invalid size {numel}"))?;
        if nbytes > file_len - pos {
            bail!("storage {key} claims {numel} elements ({nbytes} bytes) but only {} bytes remain", file_len - pos);
        }
        if wanted.contains(key.as_str()) {
            let mut bytes = vec![0u8; nbytes as usize];
            r.read_exact(&mut bytes).context("truncated file")?;
            if big_endian {
                swap_bytes(&mut bytes, elt as usize);
            }
            storages.insert(key.clone(), raw_storage(&bytes)?.f_view_dtype(kind)?);
        } else {
            r.seek_relative(nbytes as i64)?;
        }
        pos += nbytes;
    }

    let mut budget = copy_budget(file_len);
    let mut entries = Vec::with_capacity(selected.len());
    for (name, spec) in selected {
        let root = storages
            .get(&spec.storage.key)
            .ok_or_else(|| anyhow!("tensor `{name}` uses storage {} which the file does not hold", spec.storage.key))?;
        let n = root.size()[0];
        let window = match &spec.storage.view {
            None => (0, n),
            Some(v) => {
                if v.offset < 0 || v.numel < 0 || v.offset.checked_add(v.numel).is_none_or(|end| end > n) {
                    bail!("tensor `{name}`: storage view {}+{} is outside its {n}-element storage", v.offset, v.numel);
                }
                (v.offset, v.numel)
            }
        };
        let t = materialize_typed(&spec, root, window, &mut budget).with_context(|| format!("tensor `{name}`"))?;
        entries.push((name, t));
    }
    Ok(StateDict { entries })
}

/// Picks the state dict out of the top-level object: a dict of tensors, or one nested under a
/// [`WRAPPER_KEYS`] key (training checkpoints). Non-tensor values next to tensors are skipped.
fn select_state_dict(u: &Unpickled) -> Result<Vec<(String, Rc<TensorSpec>)>> {
    let mut v = &u.root;
    for _ in 0..4 {
        let entries = u
            .dict(v)
            .ok_or_else(|| anyhow!("the checkpoint holds a {}, not a dict of tensors (a state dict)", v.type_name()))?;
        if let Some(inner) = WRAPPER_KEYS.iter().find_map(|w| u.dict_get(v, w).filter(|x| u.dict(x).is_some())) {
            v = inner;
            continue;
        }
        let mut out = Vec::new();
        for (k, val) in entries {
            if let Value::Tensor(t) = val {
                let k = k.as_str().ok_or_else(|| anyhow!("state dict key is a {}, not a str", k.type_name()))?;
                out.push((k.to_owned(), t.clone()));
            }
        }
        if out.is_empty() {
            let keys: Vec<String> =
                entries.iter().take(20).map(|(k, _)| k.as_str().unwrap_or("<non-str>").to_owned()).collect();
            bail!(
                "no tensors found in the checkpoint's dict (keys: {}); expected a state dict, possibly nested \
                 under one of {WRAPPER_KEYS:?}",
                keys.join(", ")
            );
        }
        return Ok(out);
    }
    bail!("the state dict is nested too deeply under {WRAPPER_KEYS:?} keys")
}

/// Raw bytes to a 1-D uint8 CPU tensor (copied: libtorch owns its memory).
fn raw_storage(bytes: &[u8]) -> Result<Tensor> {
    Ok(Tensor::f_from_data_size(bytes, &[bytes.len() as i64], Kind::Uint8)?)
}

/// Zip format: the storage record is raw bytes; view it with the reference's element type.
fn materialize(spec: &TensorSpec, raw: &Tensor, budget: &mut u64) -> Result<Tensor> {
    let s: &StorageRef = &spec.storage;
    let elt = s.kind.elt_size_in_bytes() as i64;
    let nbytes = raw.size()[0];
    if nbytes % elt != 0 || nbytes / elt < s.numel {
        bail!("storage {} holds {nbytes} bytes, not {} elements of {elt} bytes", s.key, s.numel);
    }
    // Several references may view one record with different element types.
    let typed = raw.f_view_dtype(s.kind)?;
    materialize_typed(spec, &typed, (0, s.numel), budget)
}

/// Builds the tensor `spec` describes from its typed 1-D storage (a contiguous tensor starting
/// at the storage's first element), of which it may use only the `(start, len)` window (a legacy
/// storage view), after checking that every element it addresses lies inside the window. Views
/// that are not the whole window are copied out (charged to `budget`) so entries never alias
/// partially.
fn materialize_typed(spec: &TensorSpec, storage: &Tensor, window: (i64, i64), budget: &mut u64) -> Result<Tensor> {
    let (start, n) = window;
    let (size, stride, offset) = (&spec.size, &spec.stride, spec.offset);
    if offset < 0 || size.iter().any(|&d| d < 0) || stride.iter().any(|&d| d < 0) {
        bail!("negative size, stride or offset (size {size:?}, stride {stride:?}, offset {offset})");
    }
    let numel = size.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| anyhow!("size overflows"))?;
    if numel > 0 {
        let last = size
            .iter()
            .zip(stride)
            .try_fold(offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)))
            .ok_or_else(|| anyhow!("strides overflow"))?;
        if last >= n {
            bail!(
                "size {size:?}, stride {stride:?} at offset {offset} reaches element {last} of a storage of {n} \
                 elements: the file is corrupt"
            );
        }
    }
    let contiguous = {
        let mut expect = 1i64;
        let mut ok = true;
        for (&d, &s) in size.iter().zip(stride).rev() {
            if d != 1 && s != expect {
                ok = false;
            }
            expect = expect.saturating_mul(d);
        }
        ok
    };
    if contiguous && offset == 0 && numel == n {
        return Ok(storage.f_narrow(0, start, n)?.f_view(size.as_slice())?);
    }
    let bytes = (numel as u64).saturating_mul(spec.storage.kind.elt_size_in_bytes() as u64);
    if bytes > *budget {
        bail!("tensor views would need {bytes} more bytes than the file size justifies");
    }
    *budget -= bytes;
    // as_strided's offset is absolute in the underlying storage, hence `start + offset`.
    let view = storage.f_as_strided(size.as_slice(), stride.as_slice(), start + offset)?;
    let mut out = Tensor::f_empty(size.as_slice(), (spec.storage.kind, Device::Cpu))?;
    tch::no_grad(|| out.f_copy_(&view))?;
    Ok(out)
}

/// Converts big-endian elements of `elt` bytes to little-endian in place.
fn swap_bytes(bytes: &mut [u8], elt: usize) {
    if elt > 1 {
        for chunk in bytes.chunks_exact_mut(elt) {
            chunk.reverse();
        }
    }
}
