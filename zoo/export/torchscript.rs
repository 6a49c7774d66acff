//! A traced TorchScript module: zoo's forward pass recorded by libtorch's JIT tracer
//! (`zoo/export/jit.cpp`) into a `torch::jit::Module` that holds the model's own tensors under
//! their checkpoint keys. What Python's `torch.jit.trace` makes of an `nn.Module`, made from Rust.
use crate::models::{is_buffer, Model};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct CModule {
    _private: [u8; 0],
}

type ForwardFn = extern "C" fn(*mut c_void, *mut C_tensor) -> *mut C_tensor;

extern "C" {
    fn zoo_jit_trace(
        class_name: *const c_char,
        n: usize,
        names: *const *const c_char,
        tensors: *const *const C_tensor,
        is_buffer: *const bool,
        n_layers: usize,
        layers: *const *const c_char,
        input: *const C_tensor,
        forward: ForwardFn,
        ctx: *mut c_void,
        err: *mut *mut c_char,
    ) -> *mut CModule;
    fn zoo_jit_free(m: *mut CModule);
    fn zoo_jit_free_string(s: *mut c_char);
    fn zoo_jit_push_scope(name: *const c_char);
    fn zoo_jit_pop_scope();
    fn zoo_jit_save(
        m: *const CModule,
        path: *const c_char,
        extra_name: *const c_char,
        extra: *const c_char,
        err: *mut *mut c_char,
    ) -> bool;
    fn zoo_jit_graph_json(m: *const CModule, err: *mut *mut c_char) -> *mut c_char;
    fn zoo_jit_optimized(m: *const CModule, err: *mut *mut c_char) -> *mut CModule;
    fn zoo_jit_forward(m: *const CModule, x: *const C_tensor, err: *mut *mut c_char) -> *mut C_tensor;
    // zoo/infer/onednn.cpp
    fn zoo_onednn_optimized(
        m: *const CModule,
        example: *const C_tensor,
        slice: i64,
        count: *mut c_int,
        sliced: *mut c_int,
        err: *mut *mut c_char,
    ) -> *mut CModule;
    fn zoo_onednn_int8(
        m: *const CModule,
        example: *const C_tensor,
        calibration: *const C_tensor,
        reduce_range: bool,
        count: *mut c_int,
        quantized: *mut c_int,
        err: *mut *mut c_char,
    ) -> *mut CModule;
    fn zoo_onednn_forward(m: *const CModule, x: *const C_tensor, err: *mut *mut c_char) -> *mut C_tensor;
}

/// Takes a string the shim allocated.
pub(crate) fn take(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: the shim returns NUL-terminated strings from malloc, freed here once.
    let out = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { zoo_jit_free_string(s) };
    out
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{s:?} holds a NUL byte"))
}

/// A traced forward pass, owned.
pub struct Traced {
    module: *mut CModule,
    /// Each layer that ran (its path, the scope its operators carry) and what it is.
    pub layers: std::collections::HashMap<String, crate::nn::trace::Op>,
    /// Rewritten by [`Traced::onednn`]: inputs go in as channels-last tensors.
    channels_last: bool,
}

impl Drop for Traced {
    fn drop(&mut self) {
        // SAFETY: created by zoo_jit_trace, freed once.
        unsafe { zoo_jit_free(self.module) }
    }
}

struct Ctx<'a> {
    forward: &'a dyn Fn(&Tensor) -> Tensor,
    panic: Option<String>,
}

extern "C" fn forward_trampoline(ctx: *mut c_void, input: *mut C_tensor) -> *mut C_tensor {
    // SAFETY: `ctx` is the `Ctx` that `Traced::trace` passed, alive for the call; `input` is a
    // tensor the shim allocated for us to own.
    let ctx = unsafe { &mut *(ctx as *mut Ctx) };
    let input = unsafe { Tensor::from_ptr(input) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.forward)(&input))) {
        Ok(mut out) => {
            let p = out.as_mut_ptr();
            std::mem::forget(out);
            p
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            ctx.panic = Some(msg);
            std::ptr::null_mut()
        }
    }
}

fn push_scope(path: &str) {
    if let Ok(c) = CString::new(path) {
        // SAFETY: a valid C string; the shim copies it.
        unsafe { zoo_jit_push_scope(c.as_ptr()) }
    }
}

fn pop_scope() {
    // SAFETY: pairs with push_scope (a no-op when no trace runs).
    unsafe { zoo_jit_pop_scope() }
}

impl Traced {
    /// Traces `model`'s eval-mode forward pass on `input` into a module of class `class_name`
    /// holding every variable of the model under its checkpoint key.
    pub fn trace(model: &Model, input: &Tensor) -> Result<Traced> {
        Traced::trace_output(model, input, None)
    }

    /// Traces the eval-mode forward pass up to the output of `layer` (a name
    /// [`Model::layer_names`] lists), which becomes the module's output: what `zoo features` runs
    /// on a traced engine. The layers after it are left out of the frozen graph (nothing reads
    /// them), and folding a batch norm into the convolution before it is exact, so a tap on
    /// either sees what the eager pass sees.
    pub fn trace_layer(model: &Model, input: &Tensor, layer: &str) -> Result<Traced> {
        model.check_layer(layer)?;
        Traced::trace_output(model, input, Some(layer))
    }

    fn trace_output(model: &Model, input: &Tensor, layer: Option<&str>) -> Result<Traced> {
        model.check_input(input)?;
        let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
        // PyTorch's batch norms count their training batches in a buffer zoo does not keep; a
        // zero there gives the module torchvision's and timm's state_dict() keys.
        let counters: Vec<(String, Tensor)> = vars
            .iter()
            .filter_map(|(k, _)| k.strip_suffix("running_mean"))
            .map(|prefix| format!("{prefix}num_batches_tracked"))
            .filter(|k| !vars.iter().any(|(v, _)| v == k))
            .map(|k| (k, Tensor::zeros([], (tch::Kind::Int64, model.vs.device()))))
            .collect();
        vars.extend(counters);
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let names = vars.iter().map(|(k, _)| c_string(k)).collect::<Result<Vec<_>>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
        let tensors: Vec<*const C_tensor> = vars.iter().map(|(_, t)| t.as_ptr()).collect();
        let buffers: Vec<bool> = vars.iter().map(|(k, _)| is_buffer(k)).collect();
        let class = c_string(&class_name(model.spec.name))?;
        let net = &model.net;
        let input = input.to_device(model.vs.device()).to_kind(model.kind());
        // Every layer becomes a submodule: its path is the scope its operators are traced in.
        let one = input.narrow(0, 0, 1);
        let (_, events) = tch::no_grad(|| crate::nn::trace::record(|| net.forward_t(&one, false)));
        let layer_ops: std::collections::HashMap<String, crate::nn::trace::Op> =
            events.iter().map(|e| (e.path.clone(), e.op.clone())).collect();
        let mut paths: Vec<String> = events.into_iter().map(|e| e.path).filter(|p| !p.is_empty()).collect();
        paths.sort();
        paths.dedup();
        let layers = paths.iter().map(|p| c_string(p)).collect::<Result<Vec<_>>>()?;
        let layer_ptrs: Vec<*const c_char> = layers.iter().map(|c| c.as_ptr()).collect();
        let taps: Vec<String> = layer.iter().map(|l| l.to_string()).collect();
        let forward = |xs: &Tensor| {
            let (logits, mut got) =
                crate::nn::trace::scoped_capture(push_scope, pop_scope, &taps, || net.forward_t(xs, false));
            match layer {
                None => logits,
                Some(l) => got.remove(l).unwrap_or_else(|| panic!("layer '{l}' did not run")),
            }
        };
        let mut ctx = Ctx { forward: &forward, panic: None };
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: every pointer outlives the call; the shim copies what it keeps.
        let module = tch::no_grad(|| unsafe {
            zoo_jit_trace(
                class.as_ptr(),
                vars.len(),
                name_ptrs.as_ptr(),
                tensors.as_ptr(),
                buffers.as_ptr(),
                layer_ptrs.len(),
                layer_ptrs.as_ptr(),
                input.as_ptr(),
                forward_trampoline,
                &mut ctx as *mut Ctx as *mut c_void,
                &mut err,
            )
        });
        if let Some(p) = ctx.panic {
            if !module.is_null() {
                // SAFETY: as in Drop.
                unsafe { zoo_jit_free(module) };
            }
            bail!("tracing {} failed in its forward pass: {p}", model.spec.name);
        }
        if module.is_null() {
            bail!("tracing {} failed: {}", model.spec.name, take(err));
        }
        Ok(Traced { module, layers: layer_ops, channels_last: false })
    }

    /// Writes the module as a TorchScript archive with `extra/<name>` holding `extra`
    /// (`torch.jit.load(path, _extra_files={name: ""})` reads it back).
    pub fn save(&self, path: &Path, extra_name: &str, extra: &str) -> Result<()> {
        let p = c_string(&path.to_string_lossy())?;
        let (name, extra) = (c_string(extra_name)?, c_string(extra)?);
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid module and C strings.
        if unsafe { zoo_jit_save(self.module, p.as_ptr(), name.as_ptr(), extra.as_ptr(), &mut err) } {
            Ok(())
        } else {
            Err(anyhow!("{}", take(err))).with_context(|| format!("writing {}", path.display()))
        }
    }

    /// The traced graph, inlined, as the JSON `zoo/export/jit.cpp` writes (read by the ONNX
    /// writer).
    pub fn graph_json(&self) -> Result<String> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid module.
        let s = unsafe { zoo_jit_graph_json(self.module, &mut err) };
        if s.is_null() {
            bail!("reading the traced graph: {}", take(err));
        }
        Ok(take(s))
    }

    /// An inference copy: frozen (batch norms folded into convolutions) and optimized as
    /// `torch.jit.optimize_for_inference` does (oneDNN convolutions with prepacked weights).
    pub fn optimized(&self) -> Result<Traced> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid module.
        let module = unsafe { zoo_jit_optimized(self.module, &mut err) };
        if module.is_null() {
            bail!("optimizing the traced graph for inference: {}", take(err));
        }
        Ok(Traced { module, layers: self.layers.clone(), channels_last: false })
    }

    /// The `onednn` engine's copy (zoo/infer/onednn.cpp): frozen, then every 2-D convolution one
    /// oneDNN primitive with its weight reordered once for `example`'s shape and the activation or
    /// residual addition after it fused; activations channels-last; the early layers, up to 1/16
    /// of the input's resolution, run on slices of the batch sized to the caches (a loop in the
    /// graph) so that their tensors stay there. Also gives how many convolutions were rewritten and how many nodes
    /// run on slices (0 where the graph has no place to cut).
    pub fn onednn(&self, example: &Tensor) -> Result<(Traced, usize, usize)> {
        self.onednn_sliced(example, None)
    }

    /// [`Traced::onednn`] with the early layers' slice fixed at `slice` images (`Some(0)`: no
    /// slices) instead of sized to the caches: for measuring, and for tests that need a given
    /// number of turns of the loop.
    pub fn onednn_sliced(&self, example: &Tensor, slice: Option<usize>) -> Result<(Traced, usize, usize)> {
        let mut err: *mut c_char = std::ptr::null_mut();
        let (mut count, mut sliced): (c_int, c_int) = (0, 0);
        let slice = slice.map_or(-1, |s| s as i64);
        // SAFETY: valid module and tensor.
        let module =
            unsafe { zoo_onednn_optimized(self.module, example.as_ptr(), slice, &mut count, &mut sliced, &mut err) };
        if module.is_null() {
            bail!("rewriting the traced graph for oneDNN: {}", take(err));
        }
        let traced = Traced { module, layers: self.layers.clone(), channels_last: true };
        Ok((traced, count.max(0) as usize, sliced.max(0) as usize))
    }

    /// The `onednn` engine's int8 copy (post-training static quantization, zoo/infer/onednn.cpp):
    /// every 2-D convolution oneDNN's quantized one, its weight int8 per output channel, its
    /// activations uint8 per tensor with the ranges `calibration` (float32 images, preprocessed
    /// as the inputs will be) gives, in 7 bits on a CPU without VNNI (where oneDNN's 16-bit
    /// intermediate sums could saturate); uint8 from convolution to convolution. Also gives how many
    /// convolutions were rewritten and how many float32 tensors each forward pass quantizes.
    pub fn onednn_int8(&self, example: &Tensor, calibration: &Tensor) -> Result<(Traced, usize, usize)> {
        self.onednn_int8_range(example, calibration, !crate::runtime::cpu_has_vnni())
    }

    /// [`Traced::onednn_int8`] with the activations' width chosen: 7 bits where `reduce_range`
    /// (what a CPU without VNNI gets, and runs on any x86 CPU), else 8.
    pub fn onednn_int8_range(
        &self,
        example: &Tensor,
        calibration: &Tensor,
        reduce_range: bool,
    ) -> Result<(Traced, usize, usize)> {
        if calibration.kind() != tch::Kind::Float || calibration.dim() != 4 || calibration.size()[0] == 0 {
            bail!("int8 calibration needs a non-empty float32 batch of images, got {:?}", calibration.size());
        }
        let mut err: *mut c_char = std::ptr::null_mut();
        let (mut count, mut quantized): (c_int, c_int) = (0, 0);
        // SAFETY: valid module and tensors.
        let module = unsafe {
            zoo_onednn_int8(
                self.module,
                example.as_ptr(),
                calibration.as_ptr(),
                reduce_range,
                &mut count,
                &mut quantized,
                &mut err,
            )
        };
        if module.is_null() {
            bail!("quantizing the traced graph to int8: {}", take(err));
        }
        let traced = Traced { module, layers: self.layers.clone(), channels_last: true };
        Ok((traced, count.max(0) as usize, quantized.max(0) as usize))
    }

    /// Runs the module's forward pass on `x` (no gradients).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid module and tensor; the result is a new tensor we own.
        let out = unsafe {
            if self.channels_last {
                zoo_onednn_forward(self.module, x.as_ptr(), &mut err)
            } else {
                zoo_jit_forward(self.module, x.as_ptr(), &mut err)
            }
        };
        if out.is_null() {
            bail!("running the traced module: {}", take(err));
        }
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

/// A TorchScript class name for a registry name (`resnet50` → `Resnet50`, `shufflenet_v2_x1_0` →
/// `ShufflenetV2X10`).
fn class_name(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'M');
    }
    out
}
