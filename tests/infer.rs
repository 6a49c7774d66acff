//! The inference engines and `zoo benchmark`: the traced, frozen and optimized engines (`jit`,
//! `onednn`) give the reference implementation's logits on its own checkpoints and inputs, as
//! the eager one does; `onednn` gives every registered model's eager logits (one test per
//! model); `zoo benchmark` reports what it measured and refuses what it cannot measure.
#[macro_use]
mod common;

use std::process::Command;
use tch::{Device, Tensor};
use zoo::infer::{Engine, Runner};
use zoo::models::Model;

/// `jit` and `onednn` on the reference checkpoint of `name`, on the reference's input, against
/// the reference's logits (torchvision; batch norms folded into convolutions by the freezing).
fn check_reference(folder: &str, name: &str) {
    let refs = common::export_references(folder, &[name]);
    let model = Model::from_file(name, &refs.join(name).join("weights.pth"), Device::Cpu).unwrap();
    let io = Tensor::read_safetensors(refs.join(name).join("io.safetensors")).unwrap();
    let get = |k: &str| io.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone()).unwrap();
    let (x, logits) = (get("input"), get("logits"));
    let eager = Runner::new(&model, Engine::Eager);
    // A batch of another size through the same optimized module.
    let three = Tensor::cat(&[&x, &x.narrow(0, 0, 1)], 0);
    let x_before = x.copy();
    for engine in [Engine::Jit, Engine::Onednn] {
        let runner = Runner::new(&model, engine);
        let first = runner.forward(&x).unwrap();
        common::assert_parity(&format!("{name}, {engine:?} engine"), &first, &logits);
        // onednn's residual convolutions accumulate into buffers of their own: the caller's
        // input stays as it was and a second call computes the same.
        assert!(x.equal(&x_before), "{name}, {engine:?} engine: the forward pass wrote into its input");
        assert!(runner.forward(&x).unwrap().equal(&first), "{name}, {engine:?} engine: a second call differs");
        common::assert_parity(
            &format!("{name}, {engine:?} engine, batch 3"),
            &runner.forward(&three).unwrap(),
            &eager.forward(&three).unwrap(),
        );
    }
    // onednn runs the early layers on slices of the batch (as many images as the caches hold);
    // fixed at 4 here, a batch of 9 takes three turns of the loop, the last one short.
    let nine = Tensor::cat(&[&x; 9], 0).narrow(0, 0, 9);
    let traced = zoo::export::torchscript::Traced::trace(&model, &nine).unwrap();
    let (onednn, _, sliced) = traced.onednn_sliced(&nine, Some(4)).unwrap();
    assert!(sliced > 0, "{name}: the onednn engine found no place to cut the graph into slices");
    common::assert_parity(
        &format!("{name}, onednn engine, batch 9 in slices of 4"),
        &onednn.forward(&nine).unwrap(),
        &eager.forward(&nine).unwrap(),
    );
}

#[test]
fn engines_resnet18() {
    check_reference("parity", "resnet18");
}

#[test]
fn engines_mobilenet_v2() {
    check_reference("parity", "mobilenet_v2");
}

#[test]
fn engines_shufflenet_v2_x1_0() {
    check_reference("parity", "shufflenet_v2_x1_0");
}

#[test]
fn engines_densenet121() {
    check_reference("parity_b", "densenet121");
}

/// `onednn` on `name` (random weights, batch norms calibrated on noise) against zoo's eager
/// pass: a batch of 2, then one image through the module rewritten for 2.
fn check(name: &str) {
    let spec = zoo::models::find(name).unwrap();
    let mut model = Model::new(name, spec.default_config(), Device::Cpu).unwrap();
    common::calibrate(&model);
    let [c, h, w] = spec.input_size;
    tch::manual_seed(1);
    let x = Tensor::randn([2, c, h, w], (tch::Kind::Float, Device::Cpu));
    let eager = model.predict(&x).unwrap();
    let (two, one) = {
        let fused = Runner::new(&model, Engine::Onednn);
        (fused.forward(&x).unwrap(), fused.forward(&x.narrow(0, 0, 1)).unwrap())
    };
    let mut truth = common::Float64Truth::new(&x);
    truth.assert_as_accurate(&format!("{name}: onednn, batch of 2"), &two, &eager, 2, &mut model);
    truth.assert_as_accurate(&format!("{name}: onednn, first image alone"), &one, &eager, 1, &mut model);
}

every_model!(per_model);

fn zoo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zoo")).args(args).output().unwrap()
}

/// `zoo` with the arguments of a command line (split at whitespace).
fn zoo_line(line: &str) -> std::process::Output {
    zoo(&line.split_whitespace().collect::<Vec<_>>())
}

/// `zoo benchmark --format json` says what it ran (model, engine, precision, shape, threads,
/// the CPU) and how fast; each engine and the training step run. Without `--engine`, auto runs
/// onednn on the CPU and says so.
#[test]
fn benchmark_reports_what_it_measured() {
    let runs: [(&[&str], &str); 4] =
        [(&[], "onednn"), (&["--engine", "eager"], "eager"), (&["--engine", "jit"], "jit"), (&["--train"], "eager")];
    for (extra, engine) in runs {
        let mut args = vec!["benchmark", "lenet5", "--device", "cpu", "--batch-size", "4", "--seconds", "0.2"];
        args.extend(["--threads", "1", "--format", "json"]);
        args.extend(extra);
        let out = zoo(&args);
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["model"], "lenet5");
        assert_eq!(r["engine"], engine, "{extra:?}");
        assert_eq!(r["input_shape"], serde_json::json!([4, 1, 32, 32]));
        assert_eq!(r["threads"], 1);
        assert_eq!(r["cpu"], zoo::runtime::cpu_info().0.as_str());
        assert_eq!(r["mode"], if extra == ["--train"] { "train step" } else { "inference" });
        let (n, secs, ips) =
            (r["batches"].as_f64().unwrap(), r["seconds"].as_f64().unwrap(), r["images_per_second"].as_f64().unwrap());
        assert!(n >= 3.0 && secs > 0.0 && (ips - 4.0 * n / secs).abs() < 1e-6 * ips, "{r}");
    }
}

/// Several engines and precisions in one run (`--engine eager,onednn --precision fp32,int8`):
/// one result per combination it can run, in the order asked, each saying what it ran; a
/// combination that cannot run (int8 needs the onednn engine) is skipped and says so on stderr,
/// and asking for the same combination twice measures it once.
#[test]
fn benchmark_measures_each_engine_and_precision_asked_for() {
    let out = zoo_line(
        "benchmark lenet5 --device cpu --batch-size 2 --seconds 0.05 --rounds 2 \
         --engine eager,onednn,onednn --precision fp32,int8 --format json",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipping eager int8"), "{stderr}");
    let rs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ran: Vec<(&str, &str)> =
        rs.iter().map(|r| (r["engine"].as_str().unwrap(), r["precision"].as_str().unwrap())).collect();
    assert_eq!(ran, [("eager", "float32"), ("onednn", "float32"), ("onednn", "int8")]);
    for r in &rs {
        assert_eq!(r["input_shape"], serde_json::json!([2, 1, 32, 32]), "{r}");
        assert!(r["images_per_second"].as_f64().unwrap() > 0.0, "{r}");
    }
    let out = zoo(&["benchmark", "lenet5", "--device", "cpu", "--rounds", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `auto` is onednn on the CPU once a run is long enough to repay the trace, eager for a few
/// images and on CUDA; the other engines stand for themselves.
#[test]
fn auto_picks_onednn_on_the_cpu_for_long_runs_only() {
    use zoo::infer::AUTO_ONEDNN_IMAGES as N;
    let cpu = tch::Device::Cpu;
    assert_eq!(Engine::Auto.resolve(cpu, None), Engine::Onednn);
    assert_eq!(Engine::Auto.resolve(cpu, Some(N)), Engine::Onednn);
    assert_eq!(Engine::Auto.resolve(cpu, Some(N - 1)), Engine::Eager);
    assert_eq!(Engine::Auto.resolve(tch::Device::Cuda(0), None), Engine::Eager);
    for e in [Engine::Eager, Engine::Jit, Engine::Onednn] {
        assert_eq!(e.resolve(cpu, Some(1)), e);
    }
    let model = Model::new("lenet5", zoo::models::find("lenet5").unwrap().default_config(), cpu).unwrap();
    assert_eq!(Runner::for_images(&model, Engine::Auto, Some(3)).engine(), Engine::Eager);
    assert_eq!(Runner::new(&model, Engine::Auto).engine(), Engine::Onednn);
    // `--help` says the threshold in words, as the constant has it (and no rustdoc link).
    let help = String::from_utf8(zoo(&["benchmark", "--help"]).stdout).unwrap();
    assert!(help.contains(&format!("at least {N} images")), "{help}");
    assert!(!help.contains("[`"), "a rustdoc link in --help:\n{help}");
}

/// What `zoo benchmark` cannot measure is refused with exit status 2 and the reason.
#[test]
fn benchmark_refusals() {
    let cases: &[(&[&str], &str)] = &[
        (&["--train", "--engine", "jit"], "--engine eager"),
        (&["--precision", "f16"], "CUDA"),
        (&["--input-size", "8"], "at least"),
        (&["--threads", "0"], "at least 1"),
    ];
    for (extra, says) in cases {
        let mut args = vec!["benchmark", "lenet5", "--device", "cpu", "--seconds", "0.1"];
        args.extend(extra.iter());
        let out = zoo(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: expected '{says}' in {stderr}");
    }
    let out = zoo(&["benchmark", "resnet9000"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `--precision auto` on the CPU is what `auto_precision` says, which never picks a precision
/// the CPU would refuse (bfloat16 only with native bfloat16); `fp32` is also spelled `f32`;
/// `fp16` on the CPU is refused with exit status 2, pointing to CUDA.
#[test]
fn precision_auto_picks_a_native_precision_and_fp16_needs_cuda() {
    use zoo::runtime::{auto_precision, Precision};
    let auto = auto_precision(tch::Device::Cpu);
    assert!(auto != Precision::F16, "float16 on the CPU");
    if auto == Precision::Bf16 {
        assert!(zoo::runtime::cpu_has_native_bf16(), "auto picked bfloat16 on a CPU without it");
    }
    let (name, flags) = zoo::runtime::cpu_info();
    eprintln!(
        "--precision auto on {name} ({}): {auto:?}",
        flags.iter().filter(|f| f.contains("bf16")).cloned().collect::<Vec<_>>().join(" ")
    );
    let bench = |precision: &str| {
        zoo_line(&format!(
            "benchmark lenet5 --device cpu --batch-size 2 --seconds 0.1 --format json --precision {precision}"
        ))
    };
    for (precision, want) in [("auto", auto), ("f32", Precision::F32), ("fp32", Precision::F32)] {
        let out = bench(precision);
        assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["precision"], want.name(), "--precision {precision}");
    }
    let out = bench("fp16");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CUDA"), "{stderr}");
}

/// A random-weight `name` (batch norms calibrated on noise), 8 noise images to calibrate int8 on,
/// a batch of 3 more, and the eager float32 logits of those.
fn int8_case(name: &str) -> (Model, Tensor, Tensor, Tensor) {
    let spec = zoo::models::find(name).unwrap();
    let model = Model::new(name, spec.default_config(), Device::Cpu).unwrap();
    common::calibrate(&model);
    let [c, h, w] = spec.input_size;
    tch::manual_seed(2);
    let calibration = Tensor::randn([8, c, h, w], (tch::Kind::Float, Device::Cpu));
    let x = Tensor::randn([3, c, h, w], (tch::Kind::Float, Device::Cpu));
    let eager = model.predict(&x).unwrap();
    (model, calibration, x, eager)
}

/// int8 logits point the way the float32 ones do, at their scale: cosine similarity at least 0.9
/// and relative error (of the difference's norm) at most 0.4.
fn assert_int8_follows(what: &str, int8: &Tensor, eager: &Tensor) {
    assert_eq!(int8.size(), eager.size(), "{what}");
    let cos = (int8 * eager).sum(tch::Kind::Double).double_value(&[])
        / (int8.norm().double_value(&[]) * eager.norm().double_value(&[]));
    let rel = (int8 - eager).norm().double_value(&[]) / eager.norm().double_value(&[]);
    eprintln!("{what} against float32: cosine similarity {cos:.4}, relative error {rel:.3}");
    assert!(cos >= 0.9 && rel <= 0.4, "{what}: cosine similarity {cos}, relative error {rel}");
}

/// The 7-bit activations a CPU without VNNI gets (`reduce_range`, as PyTorch's x86 quantizer
/// sets it there), run here on whatever CPU this is: on a residual network and a mobile one with
/// hard-swish and squeeze-excitation, 7-bit and 8-bit int8 both follow float32 as in the test
/// below, and the two differ (the width reached the quantizer). Measured on the Intel guest:
/// cosine similarity 0.999 / 0.96 in 7 bits, 0.999 / 0.99 in 8.
#[test]
fn int8_in_seven_bits_follows_float32() {
    for name in ["resnet18", "mobilenet_v3_large"] {
        let (model, calibration, x, eager) = int8_case(name);
        let traced = zoo::export::torchscript::Traced::trace(&model, &x).unwrap();
        let run = |seven: bool| {
            let (q, convs, _) = traced.onednn_int8_range(&x, &calibration, seven).unwrap();
            assert!(convs > 0, "{name}: no convolution quantized");
            q.forward(&x).unwrap()
        };
        let (seven, eight) = (run(true), run(false));
        assert_int8_follows(&format!("{name}, 7-bit int8"), &seven, &eager);
        assert_int8_follows(&format!("{name}, 8-bit int8"), &eight, &eager);
        assert!(!seven.allclose(&eight, 0.0, 0.0, false), "{name}: 7-bit and 8-bit int8 gave the same logits");
    }
}

/// int8 (`Runner::int8`) through one model of each structure the rewrite meets: residual sums
/// (resnet, inception-resnet, xception, whose sum takes a max pool's output), concatenations
/// (inception, densenet, googlenet, squeezenet), channel shuffles and grouped convolutions
/// (shufflenet), depthwise convolutions with hard-swish and squeeze-excitation (mobilenet_v3),
/// TensorFlow padding (efficientnet_lite0). Random weights, batch norms calibrated on noise,
/// quantization calibrated on 8 noise images of the same distribution: over the batch of 3, the
/// int8 logits follow the eager float32 ones (`assert_int8_follows`). Measured on the Intel
/// guest: cosine similarity 0.96-0.9999, relative error 0.01-0.28 (inception_v3 the farthest).
#[test]
fn int8_follows_float32_through_every_structure() {
    for name in [
        "resnet18",
        "inception_v3",
        "inception_resnet_v2",
        "xception",
        "densenet121",
        "googlenet",
        "squeezenet1_1",
        "shufflenet_v1_g3_x1_0",
        "shufflenet_v2_x1_0",
        "mobilenet_v3_large",
        "efficientnet_lite0",
    ] {
        let (model, calibration, x, eager) = int8_case(name);
        let int8 = Runner::int8(&model, Engine::Auto, calibration).unwrap().forward(&x).unwrap();
        assert_int8_follows(&format!("{name}: int8"), &int8, &eager);
    }
}

/// `zoo::infer::cat_batch_norm`, the onednn engine's one pass for a pre-activation network's
/// `cat -> batch_norm -> relu`, gives what aten's three ops give, to the bit (NaN where aten
/// gives NaN), in float32 and bfloat16 (the AVX-512 loop where the CPU has it): DenseNet's piece
/// widths, widths that are not multiples of 16 (the loop's masked tail), one piece, 2-D and 4-D,
/// with and without the ReLU, the batch norm's weight and bias given or not, with NaN and
/// infinities among the values.
#[test]
fn cat_batch_norm_equals_atens_cat_batch_norm_relu_to_the_bit() {
    use tch::Kind;
    tch::manual_seed(0);
    let cases: [(usize, &[i64]); 4] = [(4, &[64, 32, 32]), (4, &[12, 20, 7, 33]), (4, &[5]), (2, &[48, 13])];
    let randn = |shape: &[i64]| Tensor::randn(shape, (Kind::Float, Device::Cpu));
    for kind in [Kind::Float, Kind::BFloat16] {
        for (dims, widths) in cases {
            let pieces: Vec<Tensor> = widths
                .iter()
                .map(|&w| {
                    let shape = if dims == 4 { vec![3, w, 5, 6] } else { vec![3, w] };
                    let x = randn(&shape) * 3.0;
                    let flat = x.view(-1);
                    for (i, v) in [(0, f64::NAN), (1, f64::INFINITY), (2, f64::NEG_INFINITY)] {
                        let _ = flat.narrow(0, i, 1).fill_(v);
                    }
                    x.to_kind(kind)
                })
                .collect();
            let c: i64 = widths.iter().sum();
            let (weight, bias, mean) =
                (randn(&[c]).to_kind(kind), randn(&[c]).to_kind(kind), randn(&[c]).to_kind(kind));
            let var = (Tensor::rand([c], (Kind::Float, Device::Cpu)) + 0.05).to_kind(kind);
            let eps = 1e-5;
            for affine in [true, false] {
                let (w, b) = if affine { (Some(&weight), Some(&bias)) } else { (None, None) };
                let normed = Tensor::cat(&pieces, 1).batch_norm(w, b, Some(&mean), Some(&var), false, 0.1, eps, false);
                for relu in [true, false] {
                    let want = if relu { normed.relu() } else { normed.shallow_clone() };
                    let got = zoo::infer::cat_batch_norm(&pieces, w, b, &mean, &var, eps, relu).unwrap();
                    let what = format!("{kind:?}, {dims}-D, widths {widths:?}, affine {affine}, relu {relu}");
                    assert_eq!((got.kind(), got.size()), (kind, want.size()), "{what}");
                    let same = got.to_kind(Kind::Float).isclose(&want.to_kind(Kind::Float), 0.0, 0.0, true);
                    let n = same.logical_not().sum(Kind::Int64).int64_value(&[]);
                    assert_eq!(n, 0, "{what}: {n} values differ from aten's cat, batch_norm and relu");
                }
            }
        }
    }
}

/// `zoo features MODEL --weights W --engine onednn --precision P` on the real photos with `env`
/// set: its features and its stderr; `None` where the run was refused with exit status 2
/// (bfloat16 on a CPU without it).
fn onednn_features(
    model: &str,
    weights: &std::path::Path,
    precision: &str,
    env: &[(&str, &str)],
) -> Option<(Tensor, String)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features.safetensors");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoo"));
    cmd.args(["features", model, "--weights"]).arg(weights);
    cmd.args(["--engine", "onednn", "--precision", precision, "--device", "cpu", "--output"]).arg(&out);
    cmd.arg(common::root().join("assets/photos")).envs(env.iter().copied());
    let run = cmd.output().unwrap();
    if run.status.code() == Some(2) {
        return None;
    }
    assert!(run.status.success(), "{model} {precision} {env:?}: {}", String::from_utf8_lossy(&run.stderr));
    let features = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    assert_eq!(features.size()[0], 6, "one row a photo");
    Some((features, String::from_utf8_lossy(&run.stderr).into_owned()))
}

/// The onednn engine's DenseNet-121 in bfloat16 (where the CPU has it) through `zoo features`
/// on the real photos: with the fused `cat -> batch_norm -> relu` (on AVX-512) and without it
/// (`ZOO_ONEDNN_CAT_AFFINE=0`, aten's three ops), the features are the same to the bit. On a CPU
/// without native bfloat16 the run is refused with exit status 2.
#[test]
fn densenet_bf16_features_are_the_same_with_the_fused_batch_norms() {
    let weights = common::export_references("parity_b", &["densenet121"]).join("densenet121/weights.pth");
    let Some((fused, _)) = onednn_features("densenet121", &weights, "bf16", &[]) else {
        assert!(!zoo::runtime::cpu_has_native_bf16(), "bf16 refused on a CPU that has it");
        eprintln!("this CPU has no native bfloat16: refused as expected");
        return;
    };
    let (apart, _) = onednn_features("densenet121", &weights, "bf16", &[("ZOO_ONEDNN_CAT_AFFINE", "0")]).unwrap();
    assert!(fused.equal(&apart), "densenet121 bf16: the fused batch norms changed the features");
}

/// The onednn engine's convolutions run as primitives zoo makes once (`zoo::conv`, libtorch's
/// own oneDNN found by address) and give what libtorch's `_convolution_pointwise` gives
/// (`ZOO_ONEDNN_CACHED=0`) to the bit: resnet18 (residual sums with a ReLU), mobilenet_v2
/// (ReLU6 as a clip post-op, depthwise convolutions, sums without one) and shufflenet_v2
/// (depthwise convolutions without an activation) on the reference checkpoints, and the
/// published efficientnet_lite0 (TensorFlow's uneven "SAME" padding, which the primitives take
/// as their own padding where libtorch's operator needs the pad folded into the kernel or a
/// padded copy), through `zoo features` on the real photos, in float32 and, where the CPU has
/// it, bfloat16. So does the fallback a shape takes where oneDNN makes no primitive for it
/// (libtorch's operator run by `zoo::conv`, forced here by `ZOO_ONEDNN_CACHED=fallback`).
///
/// efficientnet_lite0's three forms of one padding (uneven, a 4x4 kernel with zero taps, a
/// padded copy) add the same products and some exact zeros: the same to the bit where oneDNN's
/// kernels sum the taps in order (AVX-512 on AMD EPYC Zen 4: they do). On a CPU with AMX, whose
/// tiles block the sums otherwise and which this project's AMD machine cannot check, the
/// features are held within rounding instead (relative norm of the difference: float32 1e-5;
/// bfloat16 2e-2, where libtorch's own jit engine is 0.8e-2 from onednn's and bfloat16 itself
/// 7.7e-2 from float32). So are the other models' bfloat16 features there: their primitives are
/// made from the same descriptors as libtorch's, so oneDNN should pick the same AMX kernel, but
/// that has not been seen on such a CPU.
#[test]
fn cached_primitives_compute_what_libtorchs_convolutions_compute() {
    let amx = zoo::runtime::cpu_info().1.iter().any(|f| f.starts_with("amx"));
    let refs = common::export_references("parity", &["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0"]);
    for model in ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_lite0"] {
        let weights = match model {
            "efficientnet_lite0" => common::lite0_checkpoint(),
            _ => refs.join(model).join("weights.pth"),
        };
        for precision in ["fp32", "bf16"] {
            let Some((cached, graph)) = onednn_features(model, &weights, precision, &[("ZOO_ONEDNN_DUMP", "1")]) else {
                assert!(precision == "bf16" && !zoo::runtime::cpu_has_native_bf16(), "{model} {precision} refused");
                continue;
            };
            assert!(graph.contains("zoo::conv("), "{model} {precision}: no cached primitive in the graph:\n{graph}");
            assert!(
                !graph.contains("aten::constant_pad_nd("),
                "{model} {precision}: a pad left in the graph:\n{graph}"
            );
            let off = [("ZOO_ONEDNN_CACHED", "0"), ("ZOO_ONEDNN_DUMP", "1")];
            let (libtorch, graph) = onednn_features(model, &weights, precision, &off).unwrap();
            assert!(
                !graph.contains("zoo::conv(") && graph.contains("mkldnn::_convolution_pointwise("),
                "{model} {precision}: ZOO_ONEDNN_CACHED=0 did not keep libtorch's convolutions:\n{graph}"
            );
            let same = |a: &Tensor, b: &Tensor, what: &str| {
                if !amx || (model != "efficientnet_lite0" && precision == "fp32") {
                    assert!(a.equal(b), "{model} {precision}: {what} changed the features");
                    return;
                }
                let rel = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]);
                eprintln!("{model} {precision}: {what} against libtorch's: relative difference {rel:e}");
                let tolerance = if precision == "fp32" { 1e-5 } else { 2e-2 };
                assert!(rel <= tolerance, "{model} {precision}: {what} changed the features by {rel:e}");
            };
            same(&cached, &libtorch, "the cached primitives");
            let forced = [("ZOO_ONEDNN_CACHED", "fallback"), ("ZOO_ONEDNN_DUMP", "1")];
            let (fallback, graph) = onednn_features(model, &weights, precision, &forced).unwrap();
            assert!(graph.contains("zoo::conv("), "{model} {precision}: no zoo::conv with the fallback forced");
            same(&fallback, &libtorch, "the fallback");
        }
    }
}
