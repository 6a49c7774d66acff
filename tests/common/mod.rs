//! Shared test support: the project's Python (the reference implementations), generated
//! fixture folders, and the parity comparison.
#![allow(dead_code, unused_macros)]

/// One `#[test]` per model name, each calling the `check(name)` of the file that invokes it.
macro_rules! parity {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
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

static PY_LOCK: Mutex<()> = Mutex::new(());

/// Runs a Python script of `tests/py/` with arguments; panics with its output on failure.
/// Calls are serialised: reference generation is CPU-bound and the machine is small.
pub fn run_python(script: &str, args: &[&str]) {
    let _guard = PY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let py = python();
    assert!(py.exists(), "{} is missing: run `make setup` (tools/setup.sh) first", py.display());
    let out = Command::new(&py)
        .arg(root().join("tests/py").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// max |a - b| and the tolerance 1e-4 × max(1, max |b|) the parity tests use.
pub fn parity_error(actual: &Tensor, expected: &Tensor) -> (f64, f64) {
    assert_eq!(actual.size(), expected.size(), "shape differs from the reference");
    let a = actual.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    let b = expected.to_kind(tch::Kind::Double);
    let err = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (err, 1e-4 * scale)
}

/// Asserts parity within the harness tolerance, naming what was compared.
pub fn assert_parity(what: &str, actual: &Tensor, expected: &Tensor) {
    let (err, tol) = parity_error(actual, expected);
    assert!(err <= tol, "{what}: max |zoo - ref| = {err:e} exceeds {tol:e}");
    eprintln!("{what}: max |zoo - ref| = {err:.3e} (tolerance {tol:.1e})");
}

/// torchvision's published table (parameters, GFLOPS, digests): the copy in ../shared/reference,
/// or the one shipped in tests/support (identical when shipped).
pub fn torchvision_table() -> String {
    std::fs::read_to_string(root().join("../shared/reference/torchvision-weights.tsv"))
        .unwrap_or_else(|_| include_str!("../support/torchvision-weights.tsv").to_string())
}
