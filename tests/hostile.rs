//! Hostile and broken input, through the `zoo` binary as a user runs it: one test per row of
//! issue #15's table. Checkpoints are built by `tests/py/make_hostile_fixtures.py` (run once
//! with `$ZOO_PYTHON` into `target/test-fixtures/hostile/`), FIFOs, sockets and device links
//! here. Memory is the child's peak RSS (`wait4`'s `ru_maxrss`), bounded relative to the file
//! size above the RSS of a normal run; every child runs under a 4 GiB data limit so that a
//! regression fails the test instead of the machine, and a child still running after 120 s is
//! killed and reported as hung (a safety net, not a speed bound).
#![cfg(all(target_os = "linux", target_env = "gnu"))]
mod common;

use serde_json::Value as Json;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a `zoo` run did.
struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set size in KiB.
    peak_kib: u64,
    hung: bool,
}

impl Run {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?}, signal {:?}, hung {}, peak {} MiB\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.signal,
            self.hung,
            self.peak_kib / 1024,
            self.stdout,
            self.stderr
        )
    }
}

/// The binary under test: this build's, or `ZOO_TEST_BIN` (to run these tests against another
/// build, e.g. the code before the fixes, and watch them fail).
fn zoo_bin() -> PathBuf {
    std::env::var_os("ZOO_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_zoo")))
}

/// Runs `zoo args` with `ZOO_HOME=home` (a fresh one if `None`), offline unless `online`.
fn zoo_in(home: Option<&Path>, online: bool, args: &[&str]) -> Run {
    let fresh = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(zoo_bin());
    cmd.args(args)
        .env_remove("ZOO_MIRROR")
        .env_remove("ZOO_TRUST_UNVERIFIED")
        .env("ZOO_HOME", home.unwrap_or(fresh.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if online {
        cmd.env_remove("ZOO_OFFLINE");
    } else {
        cmd.env("ZOO_OFFLINE", "1");
    }
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit { rlim_cur: 4 << 30, rlim_max: 4 << 30 };
            libc::setrlimit(libc::RLIMIT_DATA, &cap);
            Ok(())
        });
    }
    // Reaped below with wait4 (for its rusage), which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut hung = false;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our child, not yet reaped (std never waits for it: we never call wait).
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        assert!(r == 0, "wait4 failed");
        if !hung && start.elapsed() > Duration::from_secs(120) {
            hung = true;
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (None, Some(libc::WTERMSIG(status)))
    };
    Run {
        code,
        signal,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        peak_kib: usage.ru_maxrss as u64,
        hung,
    }
}

fn zoo(args: &[&str]) -> Run {
    zoo_in(None, false, args)
}

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lenet = common::root().join("assets/weights/lenet5-fashion_mnist.safetensors");
        common::generated_fixtures("hostile", "make_hostile_fixtures.py", &[lenet.to_str().unwrap()])
    })
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn photo() -> PathBuf {
    common::root().join("assets/photos/camera.png")
}

fn classify_with(weights: &Path, inputs: &[&Path]) -> Run {
    let w = weights.display().to_string();
    let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["classify", "lenet5", "--weights", w.as_str(), "--top-k", "1"];
    args.extend(inputs.iter().map(String::as_str));
    zoo(&args)
}

/// Peak RSS of classifying one photo with the real LeNet-5 weights as a `.pth`: what libtorch
/// and the binary cost before any hostile input.
fn baseline_kib() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let run = classify_with(&fixture("lenet5.pth"), &[&photo()]);
        assert!(run.success(), "{}", run.describe());
        println!("baseline: classify with the real lenet5.pth peaks at {} MiB", run.peak_kib / 1024);
        run.peak_kib
    })
}

/// The run refused `file`, saying `needle`, within `baseline + 8 x file size + 192 MiB`.
fn refused_within_bound(file: &str, needle: &str) {
    let path = fixture(file);
    let len = std::fs::metadata(&path).unwrap().len();
    let base = baseline_kib();
    let run = classify_with(&path, &[&photo()]);
    let bound = base + (8 * len + (192 << 20)) / 1024;
    println!("{file} ({len} bytes): exit {:?}, peak {} MiB, bound {} MiB", run.code, run.peak_kib / 1024, bound / 1024);
    assert!(!run.success() && run.signal.is_none() && !run.hung, "{file}: {}", run.describe());
    assert!(run.stderr.contains(needle), "{file}: expected {needle:?} in\n{}", run.describe());
    assert!(run.peak_kib <= bound, "{file}: peak {} KiB above the bound {bound} KiB\n{}", run.peak_kib, run.describe());
}

// ---- resource bounds that hold for compressed and shared records -----------------------------

#[test]
fn a_deflated_data_pkl_of_millions_of_opcodes_is_budgeted_against_its_compressed_size() {
    refused_within_bound("pickle_bomb.pth", "than its");
}

#[test]
fn a_deflated_storage_that_inflates_a_thousandfold_is_refused_before_it_is_read() {
    refused_within_bound("storage_bomb.pth", "inflates from");
}

#[test]
fn central_directory_entries_sharing_one_record_are_refused() {
    refused_within_bound("shared_records.pth", "overlap");
}

#[test]
fn memo_amplification_is_refused_early() {
    refused_within_bound("memo_amplification.pth", "far more");
}

// ---- ambiguous archives ----------------------------------------------------------------------

fn torch_expected(file: &str) -> Json {
    let all: Json = serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    all[file].clone()
}

#[test]
fn a_record_given_twice_is_refused() {
    // torch.load reads some first copies (the weights a scanner would see); zoo read the last.
    println!("torch.load on duplicate_record.pth: {}", torch_expected("duplicate_record.pth"));
    let run = classify_with(&fixture("duplicate_record.pth"), &[&photo()]);
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stderr.contains("more than once") && run.stderr.contains("/data/"), "{}", run.describe());
}

#[test]
fn two_top_level_data_pkl_are_refused_as_torch_does() {
    let torch = torch_expected("two_data_pkl.pth");
    assert_eq!(torch["torch"], "refused", "{torch}");
    let run = classify_with(&fixture("two_data_pkl.pth"), &[&photo()]);
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stderr.contains("2 top-level data.pkl"), "{}", run.describe());
}

// ---- no C++ backtraces, no raw escapes -------------------------------------------------------

#[test]
fn a_safetensors_shape_past_i64_is_refused_in_words() {
    let run = classify_with(&fixture("huge_dim.safetensors"), &[&photo()]);
    assert!(!run.success(), "{}", run.describe());
    for cxx in ["Exception raised from", "frame #", "c10::"] {
        assert!(!run.stderr.contains(cxx), "a C++ backtrace reached the user:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("dimension 1") && run.stderr.contains("9223372036854775813"), "{}", run.describe());
}

#[test]
fn escape_sequences_in_a_pickle_global_are_shown_not_obeyed() {
    let run = classify_with(&fixture("escape_global.pth"), &[&photo()]);
    assert!(!run.success(), "{}", run.describe());
    let raw: Vec<char> = run.stderr.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(raw.is_empty(), "raw control characters {raw:?} reached the terminal:\n{:?}", run.stderr);
    assert!(run.stderr.contains(r"os\x1b[2J\x1b]0;zoo: weights OK\x07.system"), "{}", run.stderr);
    assert!(run.stderr.contains("not a plain tensor checkpoint"), "{}", run.stderr);
}

// ---- non-regular files -----------------------------------------------------------------------

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// The JSON lines of a `--format jsonl` run, by file name.
fn results(run: &Run) -> Vec<(String, Json)> {
    run.stdout
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let name = Path::new(v["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (name, v)
        })
        .collect()
}

fn classify_jsonl(inputs: &[&Path]) -> Run {
    let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["classify", "lenet5", "--format", "jsonl", "--top-k", "1"];
    args.extend(inputs.iter().map(String::as_str));
    zoo(&args)
}

#[test]
fn a_fifo_named_on_the_command_line_is_reported_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.png");
    mkfifo(&fifo);
    let run = classify_jsonl(&[&fifo, &photo()]);
    assert!(!run.hung && run.code == Some(1), "{}", run.describe());
    let rows = results(&run);
    assert_eq!(rows.len(), 2, "{}", run.describe());
    assert!(rows[0].1["error"].as_str().unwrap().contains("not a regular file (a FIFO)"), "{:?}", rows[0]);
    assert!(rows[1].1["top"].is_array(), "the photo after the FIFO was not classified: {:?}", rows[1]);
}

#[test]
fn a_link_to_dev_zero_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.png");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let run = classify_jsonl(&[&zero, &photo()]);
    assert!(!run.hung && run.code == Some(1), "{}", run.describe());
    let rows = results(&run);
    let err = rows[0].1["error"].as_str().unwrap_or_default();
    assert!(err.contains("a character device, through a symbolic link"), "{:?}", rows[0]);
    assert!(rows[1].1["top"].is_array(), "{:?}", rows[1]);
    let bound = baseline_kib() + (192 << 10);
    assert!(run.peak_kib <= bound, "peak {} KiB above {bound} KiB", run.peak_kib);
}

#[test]
fn fifos_sockets_and_devices_inside_a_folder_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(photo(), d.join("a_photo.png")).unwrap();
    mkfifo(&d.join("b_pipe.jpg"));
    std::os::unix::fs::symlink("/dev/null", d.join("c_null.png")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(d.join("d_socket")).unwrap();
    let run = classify_jsonl(&[d]);
    assert!(!run.hung && run.code == Some(1), "{}", run.describe());
    let rows = results(&run);
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a_photo.png", "b_pipe.jpg", "c_null.png", "d_socket"], "{}", run.describe());
    assert!(rows[0].1["top"].is_array(), "{:?}", rows[0]);
    for ((name, row), kind) in rows[1..].iter().zip(["a FIFO", "a character device", "a socket"]) {
        let err = row["error"].as_str().unwrap_or_default();
        assert!(err.contains(&format!("not a regular file ({kind}")), "{name}: {row}");
    }
    assert!(run.stderr.contains("1 ok, 3 failed"), "{}", run.stderr);
}

#[test]
fn a_fifo_given_as_weights_is_refused_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("weights.pth");
    mkfifo(&fifo);
    let run = classify_with(&fifo, &[&photo()]);
    assert!(!run.hung && !run.success(), "{}", run.describe());
    assert!(run.stderr.contains("not a regular file (a FIFO)"), "{}", run.describe());
}

// ---- the cache -------------------------------------------------------------------------------

/// A cache home holding the verified LeNet-5 weights (`zoo weights fetch`, from the file in the
/// repository) and the path of the cached file.
fn cache_with_lenet() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let run = zoo_in(Some(home.path()), false, &["weights", "fetch", "lenet5"]);
    assert!(run.success(), "{}", run.describe());
    let path = PathBuf::from(run.stdout.split_whitespace().nth(1).unwrap());
    assert!(path.starts_with(home.path()), "{}", run.stdout);
    (home, path)
}

/// The safetensors file with every data byte zeroed: same size, same header, other weights.
fn zeroed_weights(file: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + n..].fill(0);
    bytes
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn a_cached_file_swapped_behind_the_caches_back_is_caught() {
    let (home, cached) = cache_with_lenet();
    let classify = || {
        zoo_in(
            Some(home.path()),
            false,
            &["classify", "lenet5", "--top-k", "1", "--format", "jsonl", photo().to_str().unwrap()],
        )
    };
    let good = classify();
    assert!(good.success(), "{}", good.describe());
    let good_top = results(&good)[0].1["top"][0].clone();

    // Other bytes of the same size written in place, the mtime set back.
    let mtime = std::fs::metadata(&cached).unwrap().modified().unwrap();
    std::fs::write(&cached, zeroed_weights(&cached)).unwrap();
    set_mtime(&cached, mtime);
    let run = classify();
    assert!(run.success(), "{}", run.describe());
    assert!(run.stderr.contains("corrupted"), "the swapped file was used silently:\n{}", run.describe());
    assert_eq!(results(&run)[0].1["top"][0], good_top, "not the verified weights: {}", run.stdout);

    // Renamed over it (another inode), the mtime set back: `zoo weights verify` rehashes.
    let mtime = std::fs::metadata(&cached).unwrap().modified().unwrap();
    let other = cached.with_extension("other");
    std::fs::write(&other, zeroed_weights(&cached)).unwrap();
    set_mtime(&other, mtime);
    std::fs::rename(&other, &cached).unwrap();
    let run = zoo_in(Some(home.path()), false, &["weights", "verify"]);
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stdout.contains("CORRUPT") && run.stdout.contains("lenet5"), "{}", run.describe());
}

#[test]
fn stale_temporaries_and_locks_are_cleaned() {
    let (home, cached) = cache_with_lenet();
    let dir = cached.parent().unwrap();
    let name = cached.file_name().unwrap().to_str().unwrap();
    // A sidecar write cut short (its process, pid 4000000000, cannot exist), one of the old
    // fixed name an hour old, and a lock a killed fetch left.
    let dead = dir.join(format!("{name}.verified.tmp-4000000000-0"));
    let old = dir.join(format!("{name}.verified.tmp"));
    let lock = dir.join("resnet18.tv_in1k.pth.lock");
    for p in [&dead, &old, &lock] {
        std::fs::write(p, b"{").unwrap();
    }
    set_mtime(&old, std::time::SystemTime::now() - Duration::from_secs(3600));
    let run = zoo_in(Some(home.path()), false, &["weights", "verify"]);
    assert!(run.success(), "{}", run.describe());
    for p in [&dead, &old, &lock] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }

    // A fetch that fails offline leaves no lock behind.
    let run = zoo_in(Some(home.path()), false, &["weights", "fetch", "resnet18"]);
    assert!(!run.success(), "{}", run.describe());
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock") || n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_host_name_that_does_not_resolve_fails_at_once() {
    let home = tempfile::tempdir().unwrap();
    // `.invalid` never resolves (RFC 6761).
    let manifest = r#"
[[weights]]
name = "lenet5.unresolvable"
urls = ["http://zoo-hostile-test.invalid/lenet5.safetensors"]
format = "safetensors"
digest_kind = "sha256"
digest = "5e79478acbf4d199a0830a9269972e698d61c266679b832e02f5461807b0fff3"
num_classes = 10
categories = "fashion_mnist"
preprocess = { resize = 32, crop = [32, 32], mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5], channels = 1 }
license = "test"
origin = "test"
layout = "zoo"
"#;
    std::fs::write(home.path().join("manifest.toml"), manifest).unwrap();
    let run = zoo_in(Some(home.path()), true, &["weights", "fetch", "lenet5.unresolvable"]);
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stderr.contains("does not resolve"), "{}", run.describe());
    assert!(!run.stderr.contains("retrying"), "a name that does not resolve was retried:\n{}", run.stderr);
}
