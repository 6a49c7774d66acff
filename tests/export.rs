//! `zoo export`: every registered model to ONNX, run in ONNX Runtime (and a sample in OpenVINO)
//! against zoo's own outputs; TorchScript exports of reference checkpoints loaded in Python
//! (`torch.jit.load`) against the reference implementation itself.
#[macro_use]
mod common;

use std::path::Path;
use tch::{Device, Kind, Tensor};
use zoo::export::{export, ExportOptions, Format};
use zoo::models::Model;
use zoo::weights::pretrained::Loaded;

/// The sample OpenVINO runs too (the issue's: one per family of operators).
const OPENVINO: &[&str] = &["resnet50", "mobilenet_v3_large", "inception_v3", "shufflenet_v2_x1_0"];

fn read_npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Exports `name` (random weights, calibrated) to ONNX and compares ONNX
/// Runtime's outputs, on a batch of 3 and on its first image alone, with zoo's.
fn check(name: &str) {
    let spec = zoo::models::find(name).unwrap();
    let model = Model::new(name, spec.default_config(), Device::Cpu).unwrap();
    common::calibrate(&model);
    let loaded = Loaded::untrained(model);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    let e = export(&loaded, &path, &ExportOptions::default()).unwrap();
    assert_eq!(e.format, Format::Onnx);
    let [_, c, h, w] = e.input_shape;
    tch::manual_seed(1);
    let x = Tensor::randn([3, c, h, w], (Kind::Float, Device::Cpu));
    let zoo_out = loaded.model.predict(&x).unwrap();
    let input = dir.path().join("input.npy");
    x.write_npy(&input).unwrap();
    let mut args = vec![path.to_str().unwrap(), input.to_str().unwrap(), dir.path().to_str().unwrap()];
    if OPENVINO.contains(&name) {
        args.push("--openvino");
    }
    common::run_python_served("check_onnx.py", &args);
    let mut runs = vec![
        ("ONNX Runtime, batch of 3", read_npy(&dir.path().join("ort_batch.npy")), 3),
        ("ONNX Runtime, first image alone", read_npy(&dir.path().join("ort_first.npy")), 1),
    ];
    if OPENVINO.contains(&name) {
        runs.push(("OpenVINO, batch of 3", read_npy(&dir.path().join("openvino_batch.npy")), 3));
    }
    let mut loaded = loaded;
    let mut truth = common::Float64Truth::new(&x);
    for (engine, out, n) in &runs {
        truth.assert_as_accurate(&format!("{name}: {engine}"), out, &zoo_out, *n, &mut loaded.model);
    }
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("info.json")).unwrap()).unwrap();
    assert_eq!(info["inputs"]["input"], serde_json::json!(["batch", c, h, w]), "{name}: a dynamic batch");
    assert_eq!(info["outputs"]["logits"], serde_json::json!(["batch", spec.num_classes]));
    assert_eq!(info["metadata"]["model"], name);
    // AlexNet (2012) and ZFNet's local response norms are ONNX's own LRN operator.
    let ops: Vec<&str> = info["ops"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    let has_lrn = ["alexnet_lrn", "zfnet", "zfnet_pytorchcv"].contains(&name);
    assert_eq!(ops.contains(&"LRN"), has_lrn, "{name}: {ops:?}");
    let meta: serde_json::Value = serde_json::from_str(info["metadata"]["zoo"].as_str().unwrap()).unwrap();
    assert_eq!(meta["preprocess"], serde_json::to_value(&loaded.preprocess).unwrap());
    assert_eq!(meta["classes"].as_array().unwrap().len() as i64, spec.num_classes);
    // Initializers carry the checkpoint keys: every tensor the eval forward pass reads (all but
    // the auxiliary heads of GoogLeNet and Inception v3, which only training runs).
    let inits: Vec<&str> = info["initializers"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    for (k, _) in loaded.model.vs.variables() {
        if !k.ends_with("num_batches_tracked") && !k.to_ascii_lowercase().starts_with("aux") {
            assert!(inits.contains(&k.as_str()), "{name}: {k} is not an initializer of the ONNX file");
        }
    }
}

every_model!(per_model);

/// `zoo export --format torchscript` of reference checkpoints (torchvision's ResNet-18,
/// GoogLeNet, ShuffleNet v2 and DenseNet-121, timm's Xception), loaded with `torch.jit.load`
/// beside the reference module built from the same file (tests/py/check_torchscript.py).
fn check_torchscript(folder: &str, name: &str) {
    let refs = common::export_references(folder, &[name]);
    let weights = refs.join(name).join("weights.pth");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.pt"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(["export", name, "--weights"])
        .arg(&weights)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "zoo export failed: {stderr}");
    assert!(stderr.contains("TorchScript"), "{stderr}");
    common::run_python("check_torchscript.py", &[out.to_str().unwrap(), name, weights.to_str().unwrap()]);
    // The same file in Rust, through tch's own TorchScript loader, at a size it was not traced at.
    let module = tch::CModule::load(&out).unwrap();
    let model = Model::from_file(name, &weights, Device::Cpu).unwrap();
    tch::manual_seed(3);
    let x = Tensor::randn([3, 3, 192, 192], (Kind::Float, Device::Cpu));
    let from_file = tch::no_grad(|| module.forward_ts(&[&x])).unwrap();
    common::assert_parity(&format!("{name}: tch::CModule"), &from_file, &model.predict(&x).unwrap());
}

fn zoo(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zoo")).arg("export").args(args).output().unwrap()
}

/// `zoo export` of a reference checkpoint (torchvision's ResNet-18 file, calibrated), run in ONNX
/// Runtime on the reference's own input: the logits torchvision computed.
#[test]
fn onnx_of_a_reference_checkpoint_gives_the_references_logits() {
    let refs = common::export_references("parity", &["resnet18"]);
    let io = Tensor::read_safetensors(refs.join("resnet18/io.safetensors")).unwrap();
    let get = |k: &str| io.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone()).unwrap();
    let (input, logits) = (get("input"), get("logits"));
    let side = input.size()[2].to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resnet18.onnx");
    let weights = refs.join("resnet18/weights.pth");
    let run = zoo(&[
        "resnet18".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--input-size".as_ref(),
        side.as_ref(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let npy = dir.path().join("input.npy");
    input.write_npy(&npy).unwrap();
    common::run_python_served(
        "check_onnx.py",
        &[out.to_str().unwrap(), npy.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    common::assert_parity(
        "resnet18 ONNX file against torchvision",
        &read_npy(&dir.path().join("ort_batch.npy")),
        &logits,
    );
}

/// A fine-tuned zoo checkpoint (3 classes of its own, its own preprocessing) exports with them:
/// the ONNX file's metadata and output say so.
#[test]
fn a_fine_tuned_checkpoint_exports_with_its_classes_and_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let model =
        Model::new("mobilenet_v3_small", zoo::models::BuildConfig { num_classes: 3, drop_rate: None }, Device::Cpu)
            .unwrap();
    common::calibrate(&model);
    let classes: Vec<String> = ["cat", "dog", "fish"].iter().map(|s| s.to_string()).collect();
    let mut pre = zoo::weights::pretrained::default_preprocess(model.spec);
    pre.crop = [160, 160];
    pre.resize = 183;
    let meta = zoo::train::trainer::checkpoint_metadata("mobilenet_v3_small", &classes, &pre).unwrap();
    let ckpt = dir.path().join("best.safetensors");
    zoo::checkpoint::write_safetensors(&ckpt, &zoo::train::trainer::model_entries(&model), Some(&meta)).unwrap();
    let out = dir.path().join("pets.onnx");
    let run = zoo(&[
        "mobilenet_v3_small".as_ref(),
        "--weights".as_ref(),
        ckpt.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    tch::manual_seed(4);
    let x = Tensor::randn([2, 3, 160, 160], (Kind::Float, Device::Cpu));
    let npy = dir.path().join("input.npy");
    x.write_npy(&npy).unwrap();
    common::run_python_served(
        "check_onnx.py",
        &[out.to_str().unwrap(), npy.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("info.json")).unwrap()).unwrap();
    assert_eq!(info["inputs"]["input"], serde_json::json!(["batch", 3, 160, 160]), "traced at the checkpoint's crop");
    assert_eq!(info["outputs"]["logits"], serde_json::json!(["batch", 3]));
    assert_eq!(info["metadata"]["classes"], r#"["cat","dog","fish"]"#);
    let stored: serde_json::Value = serde_json::from_str(info["metadata"]["preprocess"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::to_value(&pre).unwrap());
    let expected = Model::from_file("mobilenet_v3_small", &ckpt, Device::Cpu).unwrap().predict(&x).unwrap();
    common::assert_parity("fine-tuned mobilenet_v3_small", &read_npy(&dir.path().join("ort_batch.npy")), &expected);
}

/// What cannot be exported is refused before anything is written, saying why and what to do.
#[test]
fn export_refusals_are_clear_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("lenet.safetensors");
    let model =
        Model::new("lenet5", zoo::models::BuildConfig { num_classes: 10, drop_rate: None }, Device::Cpu).unwrap();
    zoo::checkpoint::write_safetensors(&weights, &zoo::train::trainer::model_entries(&model), None).unwrap();
    let w = weights.as_os_str();
    let out = dir.path().join("x.onnx");
    let o = out.as_os_str();
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec!["lenet5".as_ref(), "--weights".as_ref(), w, "--output".as_ref(), o, "--opset".as_ref(), "9".as_ref()],
            "opsets 13 to 21",
        ),
        (
            vec![
                "lenet5".as_ref(),
                "--weights".as_ref(),
                w,
                "--output".as_ref(),
                dir.path().join("x.bin").as_os_str().to_owned().leak(),
            ],
            "--format onnx",
        ),
        (
            vec![
                "lenet5".as_ref(),
                "--weights".as_ref(),
                w,
                "--output".as_ref(),
                dir.path().join("no/x.onnx").as_os_str().to_owned().leak(),
            ],
            "does not exist",
        ),
        (
            vec![
                "lenet5".as_ref(),
                "--weights".as_ref(),
                w,
                "--output".as_ref(),
                o,
                "--input-size".as_ref(),
                "8".as_ref(),
            ],
            "at least",
        ),
        (vec!["resnet9000".as_ref(), "--output".as_ref(), o], "resnet"),
    ];
    for (args, says) in cases {
        let run = zoo(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: expected '{says}' in: {stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("lenet.safetensors")], "nothing written beside the checkpoint");
}

/// An adaptive pool whose windows no ONNX operator can express (AlexNet's 6x6 pool of a map
/// that is not a multiple of 6) names the layer and the way out; TorchScript takes that size.
#[test]
fn onnx_refuses_an_uneven_adaptive_pool_naming_the_layer() {
    let model = Model::new("alexnet", Default::default(), Device::Cpu).unwrap();
    let loaded = Loaded::untrained(model);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.onnx");
    let opts = ExportOptions { input_size: Some([160, 160]), ..Default::default() };
    let err = format!("{:#}", export(&loaded, &path, &opts).unwrap_err());
    assert!(err.contains("layer avgpool") && err.contains("4x4 to 6x6") && err.contains("input size"), "{err}");
    assert!(!path.exists() && !path.with_extension("partial").exists());
    let ts = ExportOptions { format: Format::Torchscript, ..opts };
    export(&loaded, &dir.path().join("a.pt"), &ts).unwrap();
}

#[test]
fn torchscript_resnet18() {
    check_torchscript("parity", "resnet18");
}

#[test]
fn torchscript_googlenet() {
    check_torchscript("parity_b", "googlenet");
}

#[test]
fn torchscript_shufflenet_v2_x1_0() {
    check_torchscript("parity", "shufflenet_v2_x1_0");
}

#[test]
fn torchscript_densenet121() {
    check_torchscript("parity_b", "densenet121");
}

#[test]
fn torchscript_xception() {
    check_torchscript("parity", "xception");
}

/// `zoo export --triton REPO` lays out a Triton model repository: the file as version 1, a
/// `config.pbtxt` whose tensor names, types and shapes are the file's own (as ONNX Runtime reads
/// them), and the class names.
#[test]
fn triton_repository_describes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("lenet.safetensors");
    let model =
        Model::new("lenet5", zoo::models::BuildConfig { num_classes: 10, drop_rate: None }, Device::Cpu).unwrap();
    let classes: Vec<String> = (0..10).map(|i| format!("digit {i}")).collect();
    let pre = zoo::weights::pretrained::default_preprocess(model.spec);
    let meta = zoo::train::trainer::checkpoint_metadata("lenet5", &classes, &pre).unwrap();
    zoo::checkpoint::write_safetensors(&weights, &zoo::train::trainer::model_entries(&model), Some(&meta)).unwrap();
    let repo = dir.path().join("models");
    let run =
        zoo(&["lenet5".as_ref(), "--weights".as_ref(), weights.as_os_str(), "--triton".as_ref(), repo.as_os_str()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let file = repo.join("lenet5/1/model.onnx");
    let config = std::fs::read_to_string(repo.join("lenet5/config.pbtxt")).unwrap();
    let labels = std::fs::read_to_string(repo.join("lenet5/labels.txt")).unwrap();
    assert_eq!(labels.lines().collect::<Vec<_>>(), classes);
    let [c, h, w] = model.spec.input_size;
    let npy = dir.path().join("input.npy");
    Tensor::randn([3, c, h, w], (Kind::Float, Device::Cpu)).write_npy(&npy).unwrap();
    common::run_python_served(
        "check_onnx.py",
        &[file.to_str().unwrap(), npy.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("info.json")).unwrap()).unwrap();
    for (section, tensors) in [("input", &info["inputs"]), ("output", &info["outputs"])] {
        let (name, shape) = tensors.as_object().unwrap().iter().next().unwrap();
        let dims: Vec<String> = shape.as_array().unwrap()[1..].iter().map(|d| d.to_string()).collect();
        let block =
            format!("  {{\n    name: \"{name}\"\n    data_type: TYPE_FP32\n    dims: [ {} ]\n", dims.join(", "));
        assert!(config.contains(&block), "the {section} {name} {shape} is not in config.pbtxt:\n{config}");
    }
    assert!(config.contains("platform: \"onnxruntime_onnx\"") && config.contains("max_batch_size: 32"), "{config}");
    assert!(config.contains("label_filename: \"labels.txt\""), "{config}");
}
