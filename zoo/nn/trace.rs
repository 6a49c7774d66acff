//! Tracing of a forward pass: which layers ran, with what geometry and output shape, and taps
//! that capture any named layer's output.
//!
//! libtorch has no module hooks in `tch`, so zoo's layers report themselves. Tracing is off by
//! default and costs one thread-local flag check per layer; `zoo summary` turns it on to read the
//! real module graph, and feature extraction uses taps to pull out `layer3` or `features.28`.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use tch::Tensor;

/// What a layer is, with the geometry the summary needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv {
        in_channels: i64,
        out_channels: i64,
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        groups: i64,
        bias: bool,
    },
    Linear {
        in_features: i64,
        out_features: i64,
        bias: bool,
    },
    BatchNorm {
        features: i64,
    },
    Pool {
        kind: &'static str,
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    /// Adaptive or global pooling: the kernel depends on the input size.
    GlobalPool {
        kind: &'static str,
    },
    /// Element-wise: activations, dropout, normalisation without parameters.
    Elementwise(&'static str),
    /// A module made of other modules (a block, a stage, a Sequential).
    Container(&'static str),
}

impl Op {
    /// Short type name for tables (`Conv2d`, `Linear`, `BatchNorm2d`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "Conv2d",
            Op::Linear { .. } => "Linear",
            Op::BatchNorm { .. } => "BatchNorm2d",
            Op::Pool { kind, .. } | Op::GlobalPool { kind } => kind,
            Op::Elementwise(k) | Op::Container(k) => k,
        }
    }
}

/// One layer's run, recorded when tracing is on. Events are in entry order (a container comes
/// before its children); `depth` is the nesting level (0 = the model's direct children).
#[derive(Debug)]
pub struct Event {
    pub path: String,
    pub op: Op,
    pub depth: usize,
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
    /// Storage address of the input and output, to follow the data flow through branches.
    pub input_ptr: usize,
    pub output_ptr: usize,
    /// The output, kept alive for the whole recording so no later tensor reuses its address.
    pub output: Tensor,
}

/// What opens and closes a layer's scope: `(push(path), pop())`.
type Scopes = (fn(&str), fn());

#[derive(Default)]
struct Tracer {
    record: bool,
    events: Vec<Option<Event>>,
    depth: usize,
    taps: BTreeSet<String>,
    captured: BTreeMap<String, Tensor>,
    points: Vec<String>,
    /// Opens and closes a named scope around each layer (libtorch's JIT tracer, for export).
    scopes: Option<Scopes>,
}

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static TRACER: RefCell<Tracer> = RefCell::new(Tracer::default());
}

/// Whether a trace is recording or tapping on this thread (layers then keep their inputs intact).
pub fn active() -> bool {
    ACTIVE.with(Cell::get)
}

/// Runs `f` as the layer at `path`; records it when tracing is on. Every zoo layer and block
/// goes through here.
pub fn layer(path: &str, op: impl FnOnce() -> Op, xs: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    if !ACTIVE.with(Cell::get) {
        return f(xs);
    }
    let (slot, scopes) = TRACER.with(|t| {
        let mut t = t.borrow_mut();
        t.depth += 1;
        let slot = if t.record {
            t.events.push(None);
            Some(t.events.len() - 1)
        } else {
            None
        };
        (slot, t.scopes.filter(|_| !path.is_empty()))
    });
    if let Some((push, _)) = scopes {
        push(path);
    }
    let out = f(xs);
    if let Some((_, pop)) = scopes {
        pop();
    }
    TRACER.with(|t| {
        let mut t = t.borrow_mut();
        t.depth -= 1;
        let depth = t.depth;
        if let Some(i) = slot {
            t.events[i] = Some(Event {
                path: path.to_string(),
                op: op(),
                depth,
                input_shape: xs.size(),
                output_shape: out.size(),
                input_ptr: xs.data_ptr() as usize,
                output_ptr: out.data_ptr() as usize,
                output: out.shallow_clone(),
            });
        }
        if t.taps.contains(path) {
            t.captured.insert(path.to_string(), out.shallow_clone());
        }
    });
    out
}

/// Marks a named point that is not a module of its own (e.g. `pre_logits`, `fc7`), so taps can
/// capture it.
pub fn point(path: &str, xs: Tensor) -> Tensor {
    if ACTIVE.with(Cell::get) {
        TRACER.with(|t| {
            let mut t = t.borrow_mut();
            if t.record {
                t.points.push(path.to_string());
            }
            if t.taps.contains(path) {
                t.captured.insert(path.to_string(), xs.shallow_clone());
            }
        });
    }
    xs
}

struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(false));
        TRACER.with(|t| *t.borrow_mut() = Tracer::default());
    }
}

fn start(record: bool, taps: BTreeSet<String>) -> Guard {
    TRACER.with(|t| *t.borrow_mut() = Tracer { record, taps, ..Tracer::default() });
    ACTIVE.with(|a| a.set(true));
    Guard
}

/// Runs `f` with recording on and returns its result and the layers that ran, in entry order.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<Event>) {
    let _guard = start(true, BTreeSet::new());
    let r = f();
    let events = TRACER.with(|t| std::mem::take(&mut t.borrow_mut().events));
    (r, events.into_iter().flatten().collect())
}

/// Every name a tap can take during `f`: layer paths in entry order, then named points.
pub fn tap_names<R>(f: impl FnOnce() -> R) -> Vec<String> {
    let _guard = start(true, BTreeSet::new());
    f();
    TRACER.with(|t| {
        let mut t = t.borrow_mut();
        let mut names: Vec<String> = t.events.iter().flatten().map(|e| e.path.clone()).collect();
        names.append(&mut t.points);
        names
    })
}

/// Runs `f` with `push(path)` and `pop()` around every named layer (its children nested inside), and
/// layers keeping their inputs intact (no in-place activations), as a graph tracer needs.
pub fn scoped<R>(push: fn(&str), pop: fn(), f: impl FnOnce() -> R) -> R {
    scoped_capture(push, pop, &[], f).0
}

/// [`scoped`] that also returns the outputs of the layers (or points) named in `taps`, as
/// [`capture`] does: what a graph tracer records of a layer's output (`zoo features` on a traced
/// engine).
pub fn scoped_capture<R>(
    push: fn(&str),
    pop: fn(),
    taps: &[String],
    f: impl FnOnce() -> R,
) -> (R, BTreeMap<String, Tensor>) {
    let _guard = start(false, taps.iter().cloned().collect());
    TRACER.with(|t| t.borrow_mut().scopes = Some((push, pop)));
    let r = f();
    let captured = TRACER.with(|t| std::mem::take(&mut t.borrow_mut().captured));
    (r, captured)
}

/// Runs `f` and returns the outputs of the layers (or points) named in `taps`.
/// Names that never ran are absent from the map.
pub fn capture<R>(taps: &[String], f: impl FnOnce() -> R) -> (R, BTreeMap<String, Tensor>) {
    let _guard = start(false, taps.iter().cloned().collect());
    let r = f();
    let captured = TRACER.with(|t| std::mem::take(&mut t.borrow_mut().captured));
    (r, captured)
}
