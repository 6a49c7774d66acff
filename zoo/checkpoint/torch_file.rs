//! `torch.save` files: the zip format (PyTorch ≥ 1.6: `<prefix>/data.pkl` plus raw storages in
//! `<prefix>/data/<key>`) and the legacy format (a sequence of pickles followed by the raw
//! storages, as in torchvision's older `.pth` files). Pickles go through the non-executing VM in
//! [`super::pickle`]; storages are read only once their claimed size has been checked against the
//! bytes actually present.
//!
//! Everything is bounded by the file on disk, not by what its headers claim: the pickle's work
//! and memory by the bytes it occupies (compressed, for a deflated record), all records together
//! by `inflation_budget`, copies of views by `copy_budget`, and storages go straight into
//! tensor memory (never held twice). Archives that two readers could read differently are
//! refused: a record name given twice, records sharing bytes, several top-level `data.pkl`.
//! Every record's CRC-32 is checked.
use super::pickle::{self, StorageRef, TensorSpec, Unpickled, Value};
use super::{check_shape, libtorch, StateDict};
use crate::text::{escape_bytes, escape_controls};
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

/// Bytes all records of a zip checkpoint may hold once inflated, together. `torch.save` stores
/// records uncompressed, so a real file needs at most its own size; re-zipped files compress
/// float weights barely. The multiple and the floor leave room for those, while a record that
/// inflates a thousandfold (a "zip bomb") is refused before it is read.
fn inflation_budget(file_len: u64) -> u64 {
    file_len.saturating_mul(4).saturating_add(64 << 20)
}

/// Reads a zip-format `torch.save` file.
pub fn read_zip(path: &Path) -> Result<StateDict> {
    super::ensure_regular(path)?;
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("not a readable zip archive")?;
    check_layout(&mut zip, path, file_len)?;
    let pkl_name = data_pkl_name(&zip)?;
    let prefix = pkl_name.strip_suffix("data.pkl").expect("ends with data.pkl").to_owned();
    let mut inflation = inflation_budget(file_len);

    let unpickled = {
        let (entry, size, cost) = open_record(&mut zip, &pkl_name, file_len, &mut inflation)?;
        // Streamed from the decompressor: the pickle is never held inflated.
        let mut input = BufReader::new(entry);
        let u = pickle::unpickle_costed(&mut input, size, cost).context("reading data.pkl")?;
        at_end(&mut input, &pkl_name)?;
        u
    };

    let byteorder = format!("{prefix}byteorder");
    // Files written before the byteorder record existed are little-endian.
    let big_endian = match zip.index_for_name(&byteorder) {
        None => false,
        Some(_) => {
            let (entry, size, _) = open_record(&mut zip, &byteorder, file_len, &mut inflation)?;
            let mut b = Vec::new();
            entry.take(size.min(16)).read_to_end(&mut b).context("reading the byteorder record")?;
            match b.as_slice() {
                b"little" => false,
                b"big" => true,
                other => bail!("unknown byteorder record {:?}", String::from_utf8_lossy(other)),
            }
        }
    };

    let selected = select_state_dict(&unpickled)?;
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut budget = copy_budget(file_len);
    let mut entries = Vec::with_capacity(selected.len());
    for (name, spec) in selected {
        let key = &spec.storage.key;
        if !storages.contains_key(key) {
            let elt = spec.storage.kind.elt_size_in_bytes() as u64;
            let nbytes = (spec.storage.numel as u64)
                .checked_mul(elt)
                .ok_or_else(|| anyhow!("storage {} size overflows", escape_controls(key)))?;
            let record = format!("{prefix}data/{key}");
            let raw = (|| {
                let (mut entry, size, _) = open_record(&mut zip, &record, file_len, &mut inflation)?;
                if size != nbytes {
                    bail!(
                        "the checkpoint says `{}` holds {nbytes} bytes of tensor data, but the record has {size}",
                        escape_controls(&record)
                    );
                }
                let t = read_into_tensor(&mut entry, size, big_endian.then_some(elt as usize))
                    .with_context(|| format!("reading record `{}`", escape_controls(&record)))?;
                at_end(&mut entry, &record)?;
                Ok(t)
            })()
            .with_context(|| format!("reading the storage of `{}`", escape_controls(&name)))?;
            storages.insert(key.clone(), raw);
        }
        let t = materialize(&spec, &storages[key], &mut budget)
            .with_context(|| format!("tensor `{}`", escape_controls(&name)))?;
        entries.push((name, t));
    }
    Ok(StateDict { entries })
}

/// The one top-level `data.pkl` (`data.pkl` or `<prefix>/data.pkl`). Several are ambiguous:
/// torch.load refuses them, and reading whichever comes first would let a file show one set of
/// weights to a torch-based scanner and load another here.
fn data_pkl_name<R: Read + Seek>(zip: &zip::ZipArchive<R>) -> Result<String> {
    let found: Vec<&str> = zip
        .file_names()
        .filter(|n| (*n == "data.pkl" || n.ends_with("/data.pkl")) && n.matches('/').count() <= 1)
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!("zip archive without `<name>/data.pkl`: not a torch.save checkpoint"),
        many => bail!(
            "the archive holds {} top-level data.pkl records ({}): it is ambiguous which one is the \
             checkpoint, so it is refused (torch.load refuses it too); re-save it with torch.save",
            many.len(),
            many.iter().map(|n| escape_controls(n).into_owned()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Refuses archives that two zip readers could read differently: a record name given twice
/// (the zip crate keeps the last copy; torch.load's binary search may take either), records that overlap or share
/// bytes (160 names for one 8 MiB record would be read 160 times), and records reaching into
/// the central directory.
fn check_layout<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, path: &Path, file_len: u64) -> Result<()> {
    let dir_start = zip.central_directory_start();
    let names = central_directory_names(path, dir_start, file_len)?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_slice())) {
        bail!(
            "the archive holds the record `{}` more than once: which copy is meant is ambiguous (readers \
             differ: this one would take the last, torch.load picks by its own search), so the file is refused",
            escape_bytes(dup)
        );
    }
    if names.len() != zip.len() {
        bail!(
            "the archive's central directory lists {} records but its end record counts {}: the file is \
             inconsistent and refused",
            names.len(),
            zip.len()
        );
    }
    let mut extents = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).with_context(|| format!("reading the local header of record {i}"))?;
        let end = f.data_start().checked_add(f.compressed_size()).filter(|&e| e <= dir_start);
        let Some(end) = end else {
            bail!("record `{}` extends past the end of the records: the file is corrupt", escape_controls(f.name()));
        };
        extents.push((f.header_start(), end, f.name().to_owned()));
    }
    extents.sort();
    for w in extents.windows(2) {
        let ((_, end, a), (start, _, b)) = (&w[0], &w[1]);
        if start < end {
            bail!(
                "records `{}` and `{}` overlap in the file: one set of bytes would be read as two records, so the \
                 file is refused",
                escape_controls(a),
                escape_controls(b)
            );
        }
    }
    Ok(())
}

/// Every name in the central directory starting at `start`, duplicates included (the zip crate's
/// index keeps one entry per name).
fn central_directory_names(path: &Path, start: u64, file_len: u64) -> Result<Vec<Vec<u8>>> {
    let mut r = BufReader::new(File::open(path)?);
    r.seek(std::io::SeekFrom::Start(start))?;
    let mut names = Vec::new();
    let mut pos = start;
    let mut head = [0u8; 46];
    // Each central header is at least 46 bytes: the file length bounds the loop.
    while pos + 46 <= file_len {
        r.read_exact(&mut head).context("reading the zip central directory")?;
        if head[..4] != *b"PK\x01\x02" {
            break;
        }
        let field = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]) as u64;
        let (name_len, rest) = (field(28), field(30) + field(32));
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name).context("reading the zip central directory")?;
        r.seek_relative(rest as i64)?;
        names.push(name);
        pos += 46 + name_len + rest;
    }
    Ok(names)
}

/// Opens a record for reading, refusing sizes the file cannot justify before anything is read:
/// a stored record cannot exceed its stored bytes, a deflated one its ~1032:1 maximum, and all
/// records together not [`inflation_budget`] (charged to `inflation`). Returns the reader, the
/// record's size and the bytes it occupies in the file.
fn open_record<'z, R: Read + Seek>(
    zip: &'z mut zip::ZipArchive<R>,
    name: &str,
    file_len: u64,
    inflation: &mut u64,
) -> Result<(zip::read::ZipFile<'z, R>, u64, u64)> {
    let entry = zip.by_name(name).with_context(|| format!("missing record `{}`", escape_controls(name)))?;
    let (size, stored) = (entry.size(), entry.compressed_size());
    let limit = match entry.compression() {
        zip::CompressionMethod::Stored => stored.min(file_len),
        _ => stored.min(file_len).saturating_mul(1032),
    };
    if size > limit {
        bail!("record `{}` claims {size} bytes, more than the file can hold", escape_controls(name));
    }
    if size > *inflation {
        bail!(
            "record `{}` inflates from {stored} to {size} bytes: with the records before it, more than a \
             {file_len}-byte file justifies (torch.save never compresses records), so it is refused",
            escape_controls(name)
        );
    }
    *inflation -= size;
    Ok((entry, size, stored.max(1)))
}

/// Checks that a record has been read to its end: the zip reader verifies the CRC-32 there.
fn at_end(r: &mut impl Read, name: &str) -> Result<()> {
    let mut probe = [0u8; 1];
    match r.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => bail!("record `{}` holds more bytes than its contents use", escape_controls(name)),
        Err(e) => bail!("record `{}` is corrupt: {e}", escape_controls(name)),
    }
}

/// Reads exactly `n` bytes into a new 1-D uint8 CPU tensor, straight into libtorch's memory (the
/// data is never held twice), swapping each `swap`-byte element's byte order if asked.
fn read_into_tensor(r: &mut impl Read, n: u64, swap: Option<usize>) -> Result<Tensor> {
    let len = i64::try_from(n).map_err(|_| anyhow!("a storage of {n} bytes is too large"))?;
    let t = Tensor::f_empty([len], (Kind::Uint8, Device::Cpu)).map_err(libtorch)?;
    if n > 0 {
        // SAFETY: `t` is a new contiguous CPU tensor of exactly `n` bytes that nothing else refers
        // to yet; the slice does not outlive this block, and `t` outlives the slice.
        let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, n as usize) };
        r.read_exact(buf).map_err(|e| anyhow!("truncated: fewer than the {n} bytes it claims ({e})"))?;
        if let Some(elt) = swap {
            swap_bytes(buf, elt);
        }
    }
    Ok(t)
}

/// Reads a legacy (pre-1.6, non-zip) `torch.save` file.
pub fn read_legacy(path: &Path) -> Result<StateDict> {
    super::ensure_regular(path)?;
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
        let kind = *kinds
            .get(key.as_str())
            .ok_or_else(|| anyhow!("storage {} is listed but never used", escape_controls(key)))?;
        let elt = kind.elt_size_in_bytes() as u64;
        let mut n = [0u8; 8];
        if file_len - pos < 8 {
            bail!("truncated file: storage {} is missing", escape_controls(key));
        }
        r.read_exact(&mut n).context("truncated file")?;
        pos += 8;
        let numel = if big_endian { i64::from_be_bytes(n) } else { i64::from_le_bytes(n) };
        let nbytes = u64::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(elt))
            .ok_or_else(|| anyhow!("storage {} claims an invalid size {numel}", escape_controls(key)))?;
        if nbytes > file_len - pos {
            bail!(
                "storage {} claims {numel} elements ({nbytes} bytes) but only {} bytes remain",
                escape_controls(key),
                file_len - pos
            );
        }
        if wanted.contains(key.as_str()) {
            let raw = read_into_tensor(&mut r, nbytes, big_endian.then_some(elt as usize))
                .with_context(|| format!("reading storage {}", escape_controls(key)))?;
            storages.insert(key.clone(), raw.f_view_dtype(kind).map_err(libtorch)?);
        } else {
            r.seek_relative(nbytes as i64)?;
        }
        pos += nbytes;
    }

    let mut budget = copy_budget(file_len);
    let mut entries = Vec::with_capacity(selected.len());
    for (name, spec) in selected {
        let root = storages.get(&spec.storage.key).ok_or_else(|| {
            anyhow!(
                "tensor `{}` uses storage {} which the file does not hold",
                escape_controls(&name),
                escape_controls(&spec.storage.key)
            )
        })?;
        let n = root.size()[0];
        let window = match &spec.storage.view {
            None => (0, n),
            Some(v) => {
                if v.offset < 0 || v.numel < 0 || v.offset.checked_add(v.numel).is_none_or(|end| end > n) {
                    bail!(
                        "tensor `{}`: storage view {}+{} is outside its {n}-element storage",
                        escape_controls(&name),
                        v.offset,
                        v.numel
                    );
                }
                (v.offset, v.numel)
            }
        };
        let t = materialize_typed(&spec, root, window, &mut budget)
            .with_context(|| format!("tensor `{}`", escape_controls(&name)))?;
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
            let keys: Vec<String> = entries
                .iter()
                .take(20)
                .map(|(k, _)| escape_controls(k.as_str().unwrap_or("<non-str>")).into_owned())
                .collect();
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

/// Zip format: the storage record is raw bytes; view it with the reference's element type.
fn materialize(spec: &TensorSpec, raw: &Tensor, budget: &mut u64) -> Result<Tensor> {
    let s: &StorageRef = &spec.storage;
    let elt = s.kind.elt_size_in_bytes() as i64;
    let nbytes = raw.size()[0];
    if nbytes % elt != 0 || nbytes / elt < s.numel {
        bail!("storage {} holds {nbytes} bytes, not {} elements of {elt} bytes", escape_controls(&s.key), s.numel);
    }
    // Several references may view one record with different element types.
    let typed = raw.f_view_dtype(s.kind).map_err(libtorch)?;
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
    // Validated before libtorch sees it: no shape from a file may reach libtorch's own checks.
    let numel = check_shape(&size.iter().map(|&d| d as u64).collect::<Vec<_>>(), spec.storage.kind)? as i64;
    if numel == 0 {
        return Tensor::f_empty(size.as_slice(), (spec.storage.kind, Device::Cpu)).map_err(libtorch);
    }
    {
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
        return storage.f_narrow(0, start, n).and_then(|t| t.f_view(size.as_slice())).map_err(libtorch);
    }
    let bytes = (numel as u64).saturating_mul(spec.storage.kind.elt_size_in_bytes() as u64);
    if bytes > *budget {
        bail!("tensor views would need {bytes} more bytes than the file size justifies");
    }
    *budget -= bytes;
    // as_strided's offset is absolute in the underlying storage, hence `start + offset`.
    let copy = || -> Result<Tensor, tch::TchError> {
        let view = storage.f_as_strided(size.as_slice(), stride.as_slice(), start + offset)?;
        let mut out = Tensor::f_empty(size.as_slice(), (spec.storage.kind, Device::Cpu))?;
        tch::no_grad(|| out.f_copy_(&view))?;
        Ok(out)
    };
    copy().map_err(libtorch)
}

/// Converts big-endian elements of `elt` bytes to little-endian in place.
fn swap_bytes(bytes: &mut [u8], elt: usize) {
    if elt > 1 {
        for chunk in bytes.chunks_exact_mut(elt) {
            chunk.reverse();
        }
    }
}
