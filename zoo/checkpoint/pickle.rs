//! A pickle virtual machine (protocols 0-5 opcodes as written by `torch.save`) that executes and
//! imports nothing: it builds a value tree, resolves only a short whitelist of globals (the
//! OrderedDict, tensor/parameter rebuild functions, storage types and dtypes) and interprets those
//! itself. Any other global is an error naming it.
//!
//! Hostile input is expected: every read is bounds-checked against the bytes that are actually
//! available, tuple/list nesting is bounded (no deep recursive drops), and nothing is allocated
//! from a length field before checking that the input really holds that many bytes. The work
//! done and the memory built are both budgeted against the bytes of the *file* read so far
//! ([`WORK_PER_BYTE`], [`MEMORY_PER_BYTE`] plus a floor): for a deflated zip record that is its
//! compressed size, so neither memo amplification nor a record that inflates a thousandfold can
//! make a small file cost much more than a small multiple of itself. Names quoted from the
//! pickle in errors are escaped ([`crate::text::escape_controls`]).
use crate::text::escape_controls;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::mem::size_of;
use std::rc::Rc;
use tch::Kind;

/// Deepest nesting of tuples/lists/dicts accepted (real checkpoints nest a handful of levels).
pub const MAX_DEPTH: u32 = 200;
/// Most dimensions a rebuilt tensor may have (libtorch itself caps dimensions well below this).
pub const MAX_DIMS: usize = 64;
/// Work units (opcodes, items moved) allowed per byte of the file read so far. Real pickles do
/// 2-4 per byte: each item is pushed, moved into its container and perhaps memoised.
pub const WORK_PER_BYTE: u64 = 16;
/// Work allowed whatever the size, so tiny pickles never hit the per-byte bound.
pub const WORK_FLOOR: u64 = 4 << 20;
/// Bytes of values, containers and memo entries allowed per byte of the file read so far. The
/// charge is an upper bound (temporaries are never refunded): a real state-dict pickle is
/// charged ~20 per byte (a 2-byte memo entry is ~40 bytes), a run of empty dicts ~45.
pub const MEMORY_PER_BYTE: u64 = 64;
/// Memory allowed whatever the size (covers every real state-dict pickle of up to some MB).
pub const MEMORY_FLOOR: u64 = 32 << 20;

/// Index of a mutable container (list, dict, set) in [`Unpickled::heap`]. Containers live in an
/// arena so that the memo can share them and later `APPEND`/`SETITEM`s are seen by every
/// reference, as in Python, without reference cycles or recursive drops.
pub type ObjId = usize;

/// A whitelisted callable: the only things `REDUCE`/`NEWOBJ` may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callable {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `builtins.set` / `builtins.frozenset`
    Set,
    /// `torch.Size`: behaves as a tuple of ints.
    Size,
    /// `_codecs.encode(str, "latin1")`: how protocol 2 pickles `bytes` objects.
    CodecsEncode,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor`
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`
    RebuildParameterWithState,
}

/// A storage reference, from a persistent id `('storage', type, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Record name (zip: `data/<key>`) or root key (legacy format).
    pub key: String,
    /// Element type, from the storage class (`torch.FloatStorage` → `Float`).
    pub kind: Kind,
    /// Device tag such as `cpu` or `cuda:0`; everything is read onto the CPU.
    pub location: String,
    /// Number of elements the file claims the storage holds (validated when reading data).
    pub numel: i64,
    /// Legacy format only: this reference is a view `(view_key, offset, numel)` into the root.
    pub view: Option<StorageView>,
}

/// A legacy-format storage view: `numel` elements starting at element `offset` of the root.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageView {
    /// Identity of the view (several tensors may share it).
    pub key: String,
    /// First element of the view inside the root storage.
    pub offset: i64,
    /// Elements in the view.
    pub numel: i64,
}

/// What `_rebuild_tensor_v2` would build: a strided view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The storage holding the data.
    pub storage: Rc<StorageRef>,
    /// Offset of element `[0, ..., 0]` in the storage, in elements.
    pub offset: i64,
    /// Shape.
    pub size: Vec<i64>,
    /// Strides, in elements.
    pub stride: Vec<i64>,
    /// Whether it was saved as a parameter requiring gradients (informational).
    pub requires_grad: bool,
}

/// A tuple together with its nesting depth (kept so nesting can be bounded in O(1) per tuple).
#[derive(Debug)]
pub struct Tuple {
    /// The elements.
    pub items: Vec<Value>,
    depth: u32,
}

/// A pickle value. Cloning is O(1): strings, bytes and tuples are reference counted and
/// containers are arena handles, so `DUP`/`BINGET` can never multiply memory.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer, as its little-endian two's complement bytes (e.g. the legacy magic).
    BigInt(Rc<[u8]>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `bytes` / `bytearray`.
    Bytes(Rc<[u8]>),
    /// A tuple.
    Tuple(Rc<Tuple>),
    /// A list in the heap.
    List(ObjId),
    /// A dict or OrderedDict in the heap (insertion order kept).
    Dict(ObjId),
    /// A set or frozenset in the heap.
    Set(ObjId),
    /// A whitelisted callable not yet called.
    Global(Callable),
    /// A storage class such as `torch.FloatStorage`.
    StorageType(Kind),
    /// A dtype such as `torch.float32`.
    Dtype(Kind),
    /// A storage reference produced by a persistent id.
    Storage(Rc<StorageRef>),
    /// A tensor (or parameter) description.
    Tensor(Rc<TensorSpec>),
}

impl Value {
    /// Python-ish type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::StorageType(_) => "storage type",
            Value::Dtype(_) => "dtype",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an int (or a bool, as Python allows).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The elements, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(&t.items),
            _ => None,
        }
    }
}

/// A mutable container in the heap.
#[derive(Debug)]
pub enum Obj {
    /// List items.
    List(Vec<Value>),
    /// Dict entries in insertion order; `index` maps string keys to their position so that
    /// re-assigning a key replaces it (as Python does) in O(1).
    Dict { entries: Vec<(Value, Value)>, index: HashMap<Rc<str>, usize> },
    /// Set items (no deduplication: nothing downstream relies on set semantics).
    Set(Vec<Value>),
}

/// The result of running one pickle.
#[derive(Debug)]
pub struct Unpickled {
    /// The containers the value tree refers to.
    pub heap: Vec<Obj>,
    /// The object the pickle returned.
    pub root: Value,
    /// Every storage reference created, in order (the legacy format needs their element types
    /// even for storages the caller does not use).
    pub storages: Vec<Rc<StorageRef>>,
    /// Bytes the pickle occupied, up to and including `STOP`.
    pub consumed: u64,
}

impl Unpickled {
    /// Entries of a dict value, or `None` if `v` is not a dict.
    pub fn dict<'a>(&'a self, v: &Value) -> Option<&'a [(Value, Value)]> {
        match v {
            Value::Dict(id) => match &self.heap[*id] {
                Obj::Dict { entries, .. } => Some(entries),
                _ => None,
            },
            _ => None,
        }
    }

    /// Items of a list value, or `None` if `v` is not a list.
    pub fn list<'a>(&'a self, v: &Value) -> Option<&'a [Value]> {
        match v {
            Value::List(id) => match &self.heap[*id] {
                Obj::List(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// Looks up a string key in a dict value.
    pub fn dict_get<'a>(&'a self, v: &Value, key: &str) -> Option<&'a Value> {
        self.dict(v)?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
}

/// Runs one pickle from `input`, reading at most `available` bytes (the rest of the file or
/// record): every length field is checked against it before anything is allocated.
pub fn unpickle<R: Read>(input: &mut R, available: u64) -> Result<Unpickled> {
    unpickle_costed(input, available, available)
}

/// [`unpickle`] for input that occupies only `cost` bytes of the file (a deflated record of
/// `available` bytes once inflated): work and memory are budgeted against `cost`, in proportion
/// to how far the pickle has been read.
pub fn unpickle_costed<R: Read>(input: &mut R, available: u64, cost: u64) -> Result<Unpickled> {
    let mut vm = Machine {
        input,
        pos: 0,
        available,
        cost: cost.min(available),
        heap: Vec::new(),
        obj_depth: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        work: 0,
        memory: 0,
        stack_peak: 0,
    };
    let root = vm.run()?;
    Ok(Unpickled { heap: vm.heap, root, storages: vm.storages, consumed: vm.pos })
}

/// Runs a pickle held entirely in memory.
pub fn unpickle_bytes(data: &[u8]) -> Result<Unpickled> {
    let mut cursor = data;
    unpickle(&mut cursor, data.len() as u64)
}

struct Machine<'r, R: Read> {
    input: &'r mut R,
    pos: u64,
    available: u64,
    heap: Vec<Obj>,
    obj_depth: Vec<u32>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: Vec<Rc<StorageRef>>,
    /// File bytes behind the `available` input bytes.
    cost: u64,
    work: u64,
    /// Bytes charged for everything built (never refunded: an upper bound of what is held).
    memory: u64,
    /// Most stack slots and marks seen, so that their growth is charged once.
    stack_peak: usize,
}

/// Maps `module.name` to what it stands for, or `None` if it is not whitelisted.
fn resolve_global(module: &str, name: &str) -> Option<Value> {
    use Callable::*;
    let v = match (module, name) {
        ("collections", "OrderedDict") => Value::Global(OrderedDict),
        ("builtins" | "__builtin__", "set" | "frozenset") => Value::Global(Set),
        ("_codecs", "encode") => Value::Global(CodecsEncode),
        ("torch", "Size") => Value::Global(Size),
        ("torch._utils", "_rebuild_tensor_v2") => Value::Global(RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Value::Global(RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Value::Global(RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => Value::Global(RebuildParameterWithState),
        ("torch" | "torch.storage", "UntypedStorage") => Value::StorageType(Kind::Uint8),
        ("torch", storage) if storage.ends_with("Storage") => Value::StorageType(storage_kind(storage)?),
        ("torch" | "torch.serialization", dtype) => Value::Dtype(dtype_kind(dtype)?),
        _ => return None,
    };
    Some(v)
}

fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "DoubleStorage" => Kind::Double,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn dtype_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" | "float" => Kind::Float,
        "float16" | "half" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "float64" | "double" => Kind::Double,
        "int64" | "long" => Kind::Int64,
        "int32" | "int" => Kind::Int,
        "int16" | "short" => Kind::Int16,
        "int8" => Kind::Int8,
        "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        _ => return None,
    })
}

/// The error for a global outside the whitelist. `os.system` is pickled as `posix.system` (or
/// `nt.system`), so name both spellings.
fn forbidden_global(module: &str, name: &str) -> anyhow::Error {
    let alias = match module {
        "posix" | "nt" => format!(" (os.{})", escape_controls(name)),
        _ => String::new(),
    };
    anyhow!(
        "the pickle references the global `{}.{}`{alias}, which a plain tensor checkpoint never \
         needs: this file is not a plain tensor checkpoint (it may be a full pickled model or code, or \
         malicious) and is refused; re-save it with `torch.save(model.state_dict(), path)`",
        escape_controls(module),
        escape_controls(name),
    )
}

impl<R: Read> Machine<'_, R> {
    /// File bytes read so far: input bytes scaled down by the record's compression ratio.
    fn file_bytes_read(&self) -> u64 {
        (self.pos as u128 * self.cost as u128 / self.available.max(1) as u128) as u64
    }

    fn charge(&mut self, units: u64) -> Result<()> {
        self.work = self.work.saturating_add(units);
        if self.work > self.file_bytes_read().saturating_mul(WORK_PER_BYTE).saturating_add(WORK_FLOOR) {
            bail!(
                "the pickle does far more work than its {} bytes in the file justify (memo amplification or \
                 a record that inflates enormously): refused",
                self.cost
            );
        }
        Ok(())
    }

    /// Charges `bytes` of memory built by the pickle.
    fn charge_memory(&mut self, bytes: usize) -> Result<()> {
        self.memory = self.memory.saturating_add(bytes as u64);
        if self.memory > self.file_bytes_read().saturating_mul(MEMORY_PER_BYTE).saturating_add(MEMORY_FLOOR) {
            bail!(
                "the pickle builds far more data ({} bytes so far) than its {} bytes in the file justify (memo \
                 amplification or a record that inflates enormously): refused",
                self.memory,
                self.cost
            );
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.available.saturating_sub(self.pos)
    }

    fn read_into(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining() {
            bail!("truncated pickle: needs {} more bytes at offset {}", buf.len(), self.pos);
        }
        self.input.read_exact(buf).map_err(|e| anyhow!("truncated pickle at offset {}: {e}", self.pos))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_into(&mut b)?;
        Ok(b[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read_into(&mut b)?;
        Ok(b)
    }

    /// Reads `n` bytes, refusing before allocating if the input cannot hold them.
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > self.remaining() {
            bail!(
                "the pickle claims a {n}-byte string at offset {} but only {} bytes remain",
                self.pos,
                self.remaining()
            );
        }
        self.charge_memory(n as usize + 2 * size_of::<usize>())?;
        let mut v = vec![0u8; n as usize];
        self.read_into(&mut v)?;
        Ok(v)
    }

    /// Reads a newline-terminated line (text opcodes), bounded by the remaining input.
    fn line(&mut self) -> Result<String> {
        let mut out = Vec::new();
        loop {
            let b = self.u8()?;
            if b == b'\n' {
                break;
            }
            out.push(b);
        }
        self.charge_memory(out.len())?;
        String::from_utf8(out).map_err(|_| anyhow!("invalid UTF-8 in a text opcode"))
    }

    fn string(&mut self, n: u64) -> Result<Value> {
        let b = self.bytes(n)?;
        let s = String::from_utf8(b).map_err(|_| anyhow!("invalid UTF-8 in a pickled str"))?;
        Ok(Value::Str(s.into()))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.fence() {
            bail!("malformed pickle: stack underflow");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<&Value> {
        if self.stack.len() <= self.fence() {
            bail!("malformed pickle: stack underflow");
        }
        Ok(self.stack.last().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| anyhow!("malformed pickle: no MARK on the stack"))?;
        self.charge((self.stack.len() - m) as u64)?;
        Ok(self.stack.split_off(m))
    }

    fn depth(&self, v: &Value) -> u32 {
        match v {
            Value::Tuple(t) => t.depth,
            Value::List(id) | Value::Dict(id) | Value::Set(id) => self.obj_depth[*id],
            _ => 0,
        }
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value> {
        self.charge_memory(size_of::<Tuple>() + 2 * size_of::<usize>() + items.len() * size_of::<Value>())?;
        let depth = 1 + items.iter().map(|v| self.depth(v)).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            bail!("the pickle nests deeper than {MAX_DEPTH} levels");
        }
        Ok(Value::Tuple(Rc::new(Tuple { items, depth })))
    }

    fn new_obj(&mut self, obj: Obj) -> Result<ObjId> {
        self.charge_memory(size_of::<Obj>() + size_of::<u32>())?;
        self.heap.push(obj);
        self.obj_depth.push(1);
        Ok(self.heap.len() - 1)
    }

    /// Records that `id` now contains values; bounds nesting (best effort: a child mutated after
    /// insertion is not re-propagated, which only matters to recursive consumers, and there are
    /// none).
    fn note_children(&mut self, id: ObjId, values: &[&Value]) -> Result<()> {
        let d = values.iter().map(|v| self.depth(v)).max().unwrap_or(0) + 1;
        if d > MAX_DEPTH {
            bail!("the pickle nests deeper than {MAX_DEPTH} levels");
        }
        self.obj_depth[id] = self.obj_depth[id].max(d);
        Ok(())
    }

    fn append(&mut self, target: &Value, items: Vec<Value>) -> Result<()> {
        self.charge(items.len() as u64)?;
        self.charge_memory(items.len() * size_of::<Value>())?;
        let id = match target {
            Value::List(id) | Value::Set(id) => *id,
            other => bail!("malformed pickle: APPEND to a {}", other.type_name()),
        };
        self.note_children(id, &items.iter().collect::<Vec<_>>())?;
        match &mut self.heap[id] {
            Obj::List(v) | Obj::Set(v) => v.extend(items),
            Obj::Dict { .. } => unreachable!("ids of lists and sets never point at dicts"),
        }
        Ok(())
    }

    fn set_items(&mut self, target: &Value, kvs: Vec<(Value, Value)>) -> Result<()> {
        self.charge(kvs.len() as u64)?;
        // The entry, plus its slot in the string index.
        self.charge_memory(kvs.len() * (size_of::<(Value, Value)>() + size_of::<(Rc<str>, usize)>() + 8))?;
        let Value::Dict(id) = target else {
            bail!("malformed pickle: SETITEM on a {}", target.type_name());
        };
        let id = *id;
        let refs: Vec<&Value> = kvs.iter().flat_map(|(k, v)| [k, v]).collect();
        self.note_children(id, &refs)?;
        let Obj::Dict { entries, index } = &mut self.heap[id] else {
            unreachable!("ids of dicts always point at dicts");
        };
        for (k, v) in kvs {
            if let Value::Str(s) = &k {
                if let Some(&i) = index.get(s) {
                    entries[i].1 = v;
                    continue;
                }
                index.insert(s.clone(), entries.len());
            }
            entries.push((k, v));
        }
        Ok(())
    }

    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo.get(&i).cloned().ok_or_else(|| anyhow!("malformed pickle: memo entry {i} is not set"))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        if self.memo.insert(i, v).is_none() {
            self.charge_memory(size_of::<(u32, Value)>() + 8)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            self.charge(1)?;
            if op == b'.' {
                // STOP
                if self.stack.len() != 1 || !self.marks.is_empty() {
                    bail!("malformed pickle: STOP with {} values on the stack", self.stack.len());
                }
                return Ok(self.stack.pop().expect("checked above"));
            }
            self.step(op).with_context(|| format!("pickle opcode 0x{op:02x} at offset {at}"))?;
            let slots = self.stack.len() + self.marks.len();
            if slots > self.stack_peak {
                self.charge_memory((slots - self.stack_peak) * size_of::<Value>())?;
                self.stack_peak = slots;
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => {
                // PROTO
                let p = self.u8()?;
                if p > 5 {
                    bail!("unsupported pickle protocol {p}");
                }
            }
            0x95 => {
                // FRAME: a length hint only; check it is plausible and go on.
                let n = u64::from_le_bytes(self.array()?);
                if n > self.remaining() {
                    bail!("truncated pickle: a frame of {n} bytes but {} remain", self.remaining());
                }
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                // POP: Python also pops a MARK if one is on top.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v);
            }
            // Constants and numbers.
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as u64;
                let v = self.long(n)?;
                self.push(v);
            }
            0x8b => {
                let n = u32::from_le_bytes(self.array()?) as u64;
                if n > 255 {
                    bail!("integer of {n} bytes is too large for a checkpoint");
                }
                let v = self.long(n)?;
                self.push(v);
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v));
            }
            b'I' => {
                // INT (text): also encodes True/False as 01/00.
                let line = self.line()?;
                let v = match line.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    s => Value::Int(s.trim().parse().map_err(|_| anyhow!("bad INT {s:?}"))?),
                };
                self.push(v);
            }
            b'L' => {
                let line = self.line()?;
                let s = line.trim().trim_end_matches('L');
                self.push(Value::Int(s.parse().map_err(|_| anyhow!("unsupported LONG {s:?}"))?));
            }
            b'F' => {
                let line = self.line()?;
                self.push(Value::Float(line.trim().parse().map_err(|_| anyhow!("bad FLOAT {line:?}"))?));
            }
            // Strings and bytes.
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as u64;
                let v = self.string(n)?;
                self.push(v);
            }
            0x8c => {
                let n = self.u8()? as u64;
                let v = self.string(n)?;
                self.push(v);
            }
            0x8d => {
                let n = u64::from_le_bytes(self.array()?);
                let v = self.string(n)?;
                self.push(v);
            }
            b'T' | b'U' => {
                // BINSTRING / SHORT_BINSTRING: Python 2 `str`; decoded as Python 3 does (ASCII,
                // here any UTF-8), else kept as bytes.
                let n = if op == b'T' {
                    let n = i32::from_le_bytes(self.array()?);
                    u64::try_from(n).map_err(|_| anyhow!("negative string length"))?
                } else {
                    self.u8()? as u64
                };
                let b = self.bytes(n)?;
                let v = match String::from_utf8(b) {
                    Ok(s) => Value::Str(s.into()),
                    Err(e) => Value::Bytes(e.into_bytes().into()),
                };
                self.push(v);
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => u32::from_le_bytes(self.array()?) as u64,
                    b'C' => self.u8()? as u64,
                    _ => u64::from_le_bytes(self.array()?),
                };
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b.into()));
            }
            b'V' => {
                // UNICODE (text, raw-unicode-escape): accepted only without escapes.
                let line = self.line()?;
                if line.contains('\\') {
                    bail!("escaped text UNICODE strings are not supported");
                }
                self.push(Value::Str(line.into()));
            }
            b'S' => {
                // STRING (text, quoted repr): accepted only without escapes.
                let line = self.line()?;
                let s = line.trim();
                let q = s.chars().next().filter(|c| *c == '\'' || *c == '"');
                match q {
                    Some(q) if s.len() >= 2 && s.ends_with(q) && !s.contains('\\') => {
                        self.push(Value::Str(s[1..s.len() - 1].into()))
                    }
                    _ => bail!("unsupported text STRING {s:?}"),
                }
            }
            // Tuples.
            b')' => {
                let v = self.tuple(Vec::new())?;
                self.push(v);
            }
            b't' => {
                let items = self.pop_mark()?;
                let v = self.tuple(items)?;
                self.push(v);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < self.fence() + n {
                    bail!("malformed pickle: stack underflow");
                }
                let items = self.stack.split_off(self.stack.len() - n);
                let v = self.tuple(items)?;
                self.push(v);
            }
            // Lists.
            b']' => {
                let id = self.new_obj(Obj::List(Vec::new()))?;
                self.push(Value::List(id));
            }
            b'l' => {
                let items = self.pop_mark()?;
                let id = self.new_obj(Obj::List(Vec::new()))?;
                self.append(&Value::List(id), items)?;
                self.push(Value::List(id));
            }
            b'a' => {
                let v = self.pop()?;
                let target = self.top()?.clone();
                self.append(&target, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.append(&target, items)?;
            }
            // Dicts.
            b'}' => {
                let id = self.new_dict()?;
                self.push(Value::Dict(id));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let id = self.new_dict()?;
                self.set_items(&Value::Dict(id), pairs(items)?)?;
                self.push(Value::Dict(id));
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?.clone();
                self.set_items(&target, vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.set_items(&target, pairs(items)?)?;
            }
            // Sets.
            0x8f => {
                let id = self.new_obj(Obj::Set(Vec::new()))?;
                self.push(Value::Set(id));
            }
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                if !matches!(target, Value::Set(_)) {
                    bail!("malformed pickle: ADDITEMS to a {}", target.type_name());
                }
                self.append(&target, items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                let id = self.new_obj(Obj::Set(Vec::new()))?;
                self.append(&Value::Set(id), items)?;
                self.push(Value::Set(id));
            }
            // Memo.
            b'q' => {
                let i = self.u8()? as u32;
                self.memo_put(i)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.array()?);
                self.memo_put(i)?;
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).map_err(|_| anyhow!("memo too large"))?;
                self.memo_put(i)?;
            }
            b'p' => {
                let line = self.line()?;
                let i = line.trim().parse().map_err(|_| anyhow!("bad PUT index {line:?}"))?;
                self.memo_put(i)?;
            }
            b'h' => {
                let i = self.u8()? as u32;
                let v = self.memo_get(i)?;
                self.push(v);
            }
            b'j' => {
                let i = u32::from_le_bytes(self.array()?);
                let v = self.memo_get(i)?;
                self.push(v);
            }
            b'g' => {
                let line = self.line()?;
                let i = line.trim().parse().map_err(|_| anyhow!("bad GET index {line:?}"))?;
                let v = self.memo_get(i)?;
                self.push(v);
            }
            // Globals and calls.
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let v = resolve_global(&module, &name).ok_or_else(|| forbidden_global(&module, &name))?;
                self.push(v);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                    bail!("malformed pickle: STACK_GLOBAL needs two strings");
                };
                let v = resolve_global(module, name).ok_or_else(|| forbidden_global(module, name))?;
                self.push(v);
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.call(&callable, &args)?;
                self.push(v);
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let callable = self.pop()?;
                if self.dict_len(&kwargs) != Some(0) {
                    bail!("keyword arguments to a constructor are not supported");
                }
                let v = self.call(&callable, &args)?;
                self.push(v);
            }
            b'b' => {
                // BUILD sets attributes: only the OrderedDict's `_metadata` (torchvision's state
                // dicts) and tensor state reach here, and neither matters for the weights.
                let state = self.pop()?;
                let target = self.top()?;
                match target {
                    Value::Dict(_) | Value::Tensor(_) => drop(state),
                    other => bail!("BUILD on a {} is not supported in a tensor checkpoint", other.type_name()),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent(&pid)?;
                self.push(v);
            }
            b'P' => {
                let line = self.line()?;
                let v = self.persistent(&Value::Str(line.into()))?;
                self.push(v);
            }
            b'i' | b'o' => bail!("INST/OBJ opcodes (pickle protocol 0/1 objects) are not supported"),
            0x82..=0x84 => bail!("pickle extension-registry opcodes are not supported"),
            0x97 | 0x98 => bail!("out-of-band pickle buffers are not supported"),
            other => bail!("unknown pickle opcode 0x{other:02x}"),
        }
        Ok(())
    }

    fn new_dict(&mut self) -> Result<ObjId> {
        self.new_obj(Obj::Dict { entries: Vec::new(), index: HashMap::new() })
    }

    fn dict_len(&self, v: &Value) -> Option<usize> {
        match v {
            Value::Dict(id) => match &self.heap[*id] {
                Obj::Dict { entries, .. } => Some(entries.len()),
                _ => None,
            },
            _ => None,
        }
    }

    /// LONG1/LONG4 payload: little-endian two's complement.
    fn long(&mut self, n: u64) -> Result<Value> {
        let b = self.bytes(n)?;
        if b.len() <= 8 {
            let fill = if b.last().is_some_and(|x| x & 0x80 != 0) { 0xff } else { 0 };
            let mut full = [fill; 8];
            full[..b.len()].copy_from_slice(&b);
            Ok(Value::Int(i64::from_le_bytes(full)))
        } else {
            Ok(Value::BigInt(b.into()))
        }
    }

    /// Interprets a whitelisted call; nothing is ever executed.
    fn call(&mut self, callable: &Value, args: &Value) -> Result<Value> {
        let Value::Global(f) = callable else {
            bail!("malformed pickle: calling a {}, which is not callable", callable.type_name());
        };
        let Some(args) = args.as_tuple() else {
            bail!("malformed pickle: call arguments are a {}, not a tuple", args.type_name());
        };
        let args: Vec<Value> = args.to_vec();
        self.charge(args.len() as u64)?;
        match f {
            Callable::OrderedDict => {
                let id = self.new_dict()?;
                match args.as_slice() {
                    [] => {}
                    [Value::Dict(src)] => {
                        let entries = match &self.heap[*src] {
                            Obj::Dict { entries, .. } => entries.clone(),
                            _ => unreachable!("ids of dicts always point at dicts"),
                        };
                        self.set_items(&Value::Dict(id), entries)?;
                    }
                    [Value::List(src)] => {
                        let items = match &self.heap[*src] {
                            Obj::List(items) => items.clone(),
                            _ => unreachable!("ids of lists always point at lists"),
                        };
                        self.charge(items.len() as u64)?;
                        let mut kvs = Vec::with_capacity(items.len());
                        for item in items {
                            match item.as_tuple() {
                                Some([k, v]) => kvs.push((k.clone(), v.clone())),
                                _ => bail!("OrderedDict() needs (key, value) pairs"),
                            }
                        }
                        self.set_items(&Value::Dict(id), kvs)?;
                    }
                    _ => bail!("unsupported OrderedDict() arguments"),
                }
                Ok(Value::Dict(id))
            }
            Callable::Set => {
                let items = match args.as_slice() {
                    [] => Vec::new(),
                    [Value::List(src)] | [Value::Set(src)] => match &self.heap[*src] {
                        Obj::List(v) | Obj::Set(v) => v.clone(),
                        Obj::Dict { .. } => unreachable!("ids of lists and sets never point at dicts"),
                    },
                    [Value::Tuple(t)] => t.items.clone(),
                    _ => bail!("unsupported set() arguments"),
                };
                let id = self.new_obj(Obj::Set(Vec::new()))?;
                self.append(&Value::Set(id), items)?;
                Ok(Value::Set(id))
            }
            Callable::Size => match args.as_slice() {
                [t @ Value::Tuple(_)] => Ok(t.clone()),
                _ => bail!("torch.Size() needs one tuple"),
            },
            Callable::CodecsEncode => match args.as_slice() {
                [Value::Str(s), Value::Str(enc)] if matches!(&**enc, "latin1" | "latin-1") => {
                    let bytes = s
                        .chars()
                        .map(|c| u8::try_from(c as u32).map_err(|_| anyhow!("non-latin1 character")))
                        .collect::<Result<Vec<u8>>>()?;
                    self.charge_memory(bytes.len() + 2 * size_of::<usize>())?;
                    Ok(Value::Bytes(bytes.into()))
                }
                _ => bail!("unsupported _codecs.encode() arguments"),
            },
            Callable::RebuildTensorV2 | Callable::RebuildTensor => {
                if args.len() < 4 || (*f == Callable::RebuildTensorV2 && !(6..=7).contains(&args.len())) {
                    bail!("{f:?} called with {} arguments", args.len());
                }
                let Value::Storage(storage) = &args[0] else {
                    bail!("tensor storage is a {}, not a storage reference", args[0].type_name());
                };
                let offset = args[1].as_int().ok_or_else(|| anyhow!("tensor storage offset is not an int"))?;
                let size = int_tuple(&args[2], "size")?;
                let stride = int_tuple(&args[3], "stride")?;
                if size.len() != stride.len() {
                    bail!("tensor has {} sizes but {} strides", size.len(), stride.len());
                }
                let requires_grad = args.get(4).and_then(Value::as_int).unwrap_or(0) != 0;
                self.charge_memory(size_of::<TensorSpec>() + 2 * size_of::<usize>() + 16 * size.len())?;
                Ok(Value::Tensor(Rc::new(TensorSpec { storage: storage.clone(), offset, size, stride, requires_grad })))
            }
            Callable::RebuildParameter | Callable::RebuildParameterWithState => match args.first() {
                Some(Value::Tensor(t)) if (3..=4).contains(&args.len()) => {
                    self.charge_memory(size_of::<TensorSpec>() + 2 * size_of::<usize>() + 16 * t.size.len())?;
                    let mut t = (**t).clone();
                    t.requires_grad = args[1].as_int().unwrap_or(0) != 0;
                    Ok(Value::Tensor(Rc::new(t)))
                }
                _ => bail!("{f:?} needs a tensor and 2-3 more arguments"),
            },
        }
    }

    /// Resolves a persistent id: only torch storage references are understood.
    fn persistent(&mut self, pid: &Value) -> Result<Value> {
        let Some(t) = pid.as_tuple() else {
            bail!("unsupported persistent id (a {}): not a torch storage reference", pid.type_name());
        };
        if t.first().and_then(Value::as_str) != Some("storage") || !(5..=6).contains(&t.len()) {
            bail!("unsupported persistent id: not a ('storage', ...) tuple");
        }
        let kind = match &t[1] {
            Value::StorageType(k) | Value::Dtype(k) => *k,
            other => bail!("storage type is a {}, not a torch storage class", other.type_name()),
        };
        let key = key_string(&t[2]).ok_or_else(|| anyhow!("storage key is not a string"))?;
        let location = match &t[3] {
            Value::Str(s) => s.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => bail!("storage location is a {}", other.type_name()),
        };
        let numel = t[4].as_int().ok_or_else(|| anyhow!("storage size is not an int"))?;
        if numel < 0 {
            bail!("storage {} claims a negative size {numel}", escape_controls(&key));
        }
        let view = match t.get(5) {
            None | Some(Value::None) => None,
            Some(Value::Tuple(v)) => match v.items.as_slice() {
                [k, off, n] => {
                    let key = key_string(k).ok_or_else(|| anyhow!("storage view key is not a string"))?;
                    let (Some(offset), Some(numel)) = (off.as_int(), n.as_int()) else {
                        bail!("storage view offset/size are not ints");
                    };
                    Some(StorageView { key, offset, numel })
                }
                _ => bail!("storage view metadata is not (key, offset, size)"),
            },
            Some(other) => bail!("storage view metadata is a {}", other.type_name()),
        };
        self.charge_memory(size_of::<StorageRef>() + 2 * size_of::<usize>() + key.len() + location.len())?;
        let r = Rc::new(StorageRef { key, kind, location, numel, view });
        self.storages.push(r.clone());
        Ok(Value::Storage(r))
    }
}

fn key_string(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<i64>> {
    let items = v.as_tuple().ok_or_else(|| anyhow!("tensor {what} is a {}, not a tuple", v.type_name()))?;
    if items.len() > MAX_DIMS {
        bail!("tensor {what} has {} dimensions (at most {MAX_DIMS} supported)", items.len());
    }
    items
        .iter()
        .map(|x| x.as_int().ok_or_else(|| anyhow!("tensor {what} holds a {}, not an int", x.type_name())))
        .collect()
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        bail!("malformed pickle: odd number of items for a dict");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values() {
        // pickle.dumps({"a": (1, -2, 3.5), "b": [True, None]}, protocol=2)
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend([b'X', 1, 0, 0, 0, b'a', b'K', 1, b'J']);
        p.extend((-2i32).to_le_bytes());
        p.push(b'G');
        p.extend(3.5f64.to_be_bytes());
        p.extend([0x87, b'X', 1, 0, 0, 0, b'b', b']', b'(', 0x88, b'N', b'e', b'u', b'.']);
        let u = unpickle_bytes(&p).unwrap();
        let a = u.dict_get(&u.root, "a").unwrap().as_tuple().unwrap();
        assert_eq!(a[0].as_int(), Some(1));
        assert_eq!(a[1].as_int(), Some(-2));
        assert!(matches!(a[2], Value::Float(f) if f == 3.5));
        let b = u.list(u.dict_get(&u.root, "b").unwrap()).unwrap();
        assert!(matches!(b, [Value::Bool(true), Value::None]));
        assert_eq!(u.consumed, p.len() as u64);
    }

    #[test]
    fn hostile_inputs_error() {
        // Forbidden global, by GLOBAL and STACK_GLOBAL.
        let e = unpickle_bytes(b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00a\x85R.").unwrap_err();
        assert!(format!("{e:#}").contains("os.system"), "{e:#}");
        let e = unpickle_bytes(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.").unwrap_err();
        assert!(format!("{e:#}").contains("builtins.eval"), "{e:#}");
        // A string longer than the input, before allocating.
        assert!(unpickle_bytes(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
        // Deep tuple nesting.
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85, 100_000));
        p.push(b'.');
        assert!(format!("{:#}", unpickle_bytes(&p).unwrap_err()).contains("nests deeper"));
        // Stack underflow, missing memo, no STOP.
        assert!(unpickle_bytes(b"\x80\x02s.").is_err());
        assert!(unpickle_bytes(b"\x80\x02h\x05.").is_err());
        assert!(unpickle_bytes(b"\x80\x02N").is_err());
        assert!(unpickle_bytes(b"").is_err());
    }

    #[test]
    fn memo_amplification_is_bounded() {
        // A 1000-item list, then OrderedDict(list) rebuilt from the memo many times.
        let mut p = vec![0x80, 2, b']', b'q', 0, b'('];
        for _ in 0..1000 {
            p.extend([b'K', 1, b'K', 2, 0x86]);
        }
        p.extend([b'e', b'c']);
        p.extend(b"collections\nOrderedDict\n");
        p.extend([b'q', 1]);
        for _ in 0..200_000 {
            p.extend([b'h', 1, b'h', 0, 0x85, b'R', b'0']);
        }
        p.extend([b'.']);
        let e = unpickle_bytes(&p).unwrap_err();
        assert!(format!("{e:#}").contains("justify"), "{e:#}");
    }

    #[test]
    fn budgets_follow_the_bytes_in_the_file_not_the_inflated_record() {
        // 2 Mi empty dicts, each popped at once: 4 MiB of pickle but ~180 MiB of dicts, from a
        // record compressed 8:1.
        let mut p = vec![0x80, 2];
        for _ in 0..(2 << 20) {
            p.extend([b'}', b'0']);
        }
        p.extend([b'N', b'.']);
        let e = unpickle_costed(&mut &p[..], p.len() as u64, p.len() as u64 / 8).unwrap_err();
        assert!(format!("{e:#}").contains("builds far more data"), "{e:#}");
        // A small pickle read as a record that cost 1 byte per 1000: the floor still admits it.
        let small = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.";
        assert!(unpickle_costed(&mut &small[..], small.len() as u64, 1).is_ok());
        // 3 Mi EMPTY_TUPLE + POP: fine when stored, refused as a 4 KB deflated record.
        let mut p = vec![0x80, 2];
        for _ in 0..(3 << 20) {
            p.extend([b')', b'0']);
        }
        p.extend([b'N', b'.']);
        assert!(unpickle_bytes(&p).is_ok());
        let e = unpickle_costed(&mut &p[..], p.len() as u64, 4096).unwrap_err();
        assert!(format!("{e:#}").contains("4096 bytes in the file"), "{e:#}");
    }
}
