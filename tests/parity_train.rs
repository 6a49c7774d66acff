//! Training-step parity: one forward pass in train mode, cross-entropy and backward give the
//! reference's logits, loss, gradients and updated batch-norm statistics, on the same weights
//! and input (tests/py/refs_train.py). This is what fine-tuning rests on, and it checks the
//! in-place activations: autograd through them must be exact.
#[macro_use]
mod common;

use tch::{Device, Kind, Tensor};
use zoo::models::{BuildConfig, Model};

/// max |a - b| within `rel` of the reference's largest magnitude (gradients are small numbers,
/// so an absolute tolerance would prove little). Returns the relative error, err / scale.
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, rel: f64) -> f64 {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let (a, b) = (actual.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let err = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]);
    assert!(scale > 0.0, "{what}: the reference is all zeros, which proves nothing");
    assert!(err <= rel * scale, "{what}: max |zoo - ref| = {err:e} exceeds {rel} x {scale:e}");
    err / scale
}

fn check(arch: &str) {
    let name = format!("{arch}_train");
    let dir = common::export_references("parity", &[&name]);
    let d = dir.join(&name);
    let io = zoo::checkpoint::read(&d.join("io.safetensors")).unwrap();
    let get = |k: &str| io.get(k).unwrap_or_else(|| panic!("{name}: no {k} in the reference"));
    let mut model = Model::new(arch, BuildConfig { num_classes: 1000, drop_rate: Some(0.0) }, Device::Cpu).unwrap();
    model.load_file(&d.join("weights.pth")).unwrap();
    let logits = model.net.forward_t(get("input"), true);
    let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&[3i64, 7]));
    loss.backward();
    // The logits as every parity file checks them (their input-dependent part included).
    common::assert_parity(&format!("{arch} train-mode logits"), &logits, get("train:logits"));
    let mut worst = assert_close(&format!("{arch} loss"), &loss, get("train:loss"), 1e-5);
    let vars = model.vs.variables();
    let (mut grads, mut buffers) = (0, 0);
    for (key, expected) in &io.entries {
        if let Some(param) = key.strip_prefix("grad:") {
            let got = vars[param].grad();
            assert!(got.defined(), "{arch}: {param} has no gradient");
            worst = worst.max(assert_close(&format!("{arch} grad {param}"), &got, expected, 1e-3));
            grads += 1;
        } else if let Some(buffer) = key.strip_prefix("buffer:") {
            let what = format!("{arch} {buffer} after the step");
            worst = worst.max(assert_close(&what, &vars[buffer], expected, 1e-4));
            buffers += 1;
        }
    }
    assert!(grads >= 6, "{arch}: only {grads} gradients compared");
    eprintln!("{arch}: logits, loss, {grads} gradients and {buffers} running means agree (worst {worst:.1e} relative)");
}

parity!(resnet18, mobilenet_v2, mobilenet_v3_small, shufflenet_v2_x0_5, densenet121, squeezenet1_1, xception);
