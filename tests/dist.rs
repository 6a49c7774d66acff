//! Data-parallel training through the `zoo` binary: two processes on 127.0.0.1 (Gloo, c10d),
//! launched with plain `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT` and by the venv's
//! `torchrun`, on a tiny image folder exported from Fashion-MNIST.
//!
//! - DDP's property: 2 processes × batch 4 end with the weights of 1 process × batch 8 (same
//!   seed, no augmentation, LeNet-5 has no batch norm), within 1e-5 relative; so does a run
//!   started on 2 processes and resumed on 1.
//! - `zoo eval` on 2 processes counts exactly what 1 process counts.
//! - Faults end every rank with a clear error in bounded time: a killed peer, a stopped
//!   (hanging) peer, ranks started with different flags or data, a rendezvous nobody serves.
//!
//! Every child is killed when its test ends or times out; ports are free ones of 127.0.0.1.
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a job of these tests may take before its processes are killed and the test fails.
const JOB_LIMIT: Duration = Duration::from_secs(240);

fn zoo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zoo"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `zoo` command isolated from the test's environment (no inherited launch variables).
fn zoo(home: &Path) -> Command {
    let mut c = Command::new(zoo_bin());
    for k in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_STEP_ID"] {
        c.env_remove(k);
    }
    c.env("ZOO_HOME", home).env("ZOO_OFFLINE", "1").env("OMP_NUM_THREADS", "1");
    c
}

/// 40 training images (4 per class) and 20 val images of Fashion-MNIST, exported once.
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let src = Path::new("/usr/share/datasets/fashion-mnist");
        assert!(
            src.join("train-images-idx3-ubyte.gz").exists(),
            "Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist` (make setup does it)"
        );
        let dir = common::fixtures("dist-fmnist");
        let home = tempfile::tempdir().unwrap();
        for (set, n) in [("train", "4"), ("t10k", "2")] {
            if dir.join(if set == "train" { "train" } else { "val" }).exists() {
                continue;
            }
            let out = zoo(home.path())
                .args(["dataset", "export-idx", "--limit-per-class", n, "--out"])
                .arg(&dir)
                .arg("--images")
                .arg(src.join(format!("{set}-images-idx3-ubyte.gz")))
                .arg("--labels")
                .arg(src.join(format!("{set}-labels-idx1-ubyte.gz")))
                .output()
                .unwrap();
            assert!(out.status.success(), "export-idx: {}", String::from_utf8_lossy(&out.stderr));
        }
        dir
    })
}

/// `zoo train lenet5` on the test data with a fixed seed and no augmentation.
fn train_args(out: &Path, batch: usize, epochs: usize) -> Vec<String> {
    let mut v: Vec<String> =
        ["train", "lenet5", "--no-augment", "--seed", "3", "--lr", "0.05", "--threads", "1"].map(String::from).to_vec();
    v.extend(["--data".into(), data().display().to_string(), "--out".into(), out.display().to_string()]);
    v.extend(["--batch-size".into(), batch.to_string(), "--epochs".into(), epochs.to_string()]);
    v
}

/// Processes of one test, killed when dropped; stderr of each in a file.
struct Job {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Job {
    /// Starts `world` ranks with plain environment variables; `args(rank)` gives each its flags.
    fn start(home: &Path, world: usize, args: impl Fn(usize) -> Vec<String>) -> Job {
        let port = free_port();
        let mut job = Job { children: Vec::new(), logs: Vec::new() };
        for rank in 0..world {
            let log = home.join(format!("rank{rank}-{port}.log"));
            let mut c = zoo(home);
            c.args(args(rank))
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string());
            job.spawn(c, log);
        }
        job
    }

    fn spawn(&mut self, mut c: Command, log: PathBuf) {
        let f = std::fs::File::create(&log).unwrap();
        self.children.push(c.stdout(Stdio::null()).stderr(f).spawn().unwrap());
        self.logs.push(log);
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    /// Waits for process `i` at most `limit`; `None` if it is still running then.
    fn wait(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.children[i].try_wait().unwrap() {
                return Some(s);
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for every process (killing all and failing past [`JOB_LIMIT`]).
    fn finish(mut self) -> Vec<(ExitStatus, String)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..self.children.len() {
            let left = JOB_LIMIT.saturating_sub(t0.elapsed());
            match self.wait(i, left) {
                Some(s) => out.push((s, self.log(i))),
                None => panic!("process {i} still running after {JOB_LIMIT:?}:\n{}", self.log(i)),
            }
        }
        out
    }

    /// Waits until process `i`'s stderr contains `text`.
    fn wait_for(&mut self, i: usize, text: &str) {
        let t0 = Instant::now();
        while !self.log(i).contains(text) {
            assert!(self.children[i].try_wait().unwrap().is_none(), "process {i} ended early:\n{}", self.log(i));
            assert!(t0.elapsed() < JOB_LIMIT, "no '{text}' from process {i}:\n{}", self.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn succeed(results: Vec<(ExitStatus, String)>) -> String {
    for (i, (s, log)) in results.iter().enumerate() {
        assert!(s.success(), "process {i} failed ({s}):\n{log}");
    }
    results.into_iter().next().map(|r| r.1).unwrap_or_default()
}

/// Largest relative difference over the tensors of two checkpoints (max |a-b| / max |b|).
fn max_rel_diff(a: &Path, b: &Path) -> f64 {
    let a = zoo::checkpoint::read(a).unwrap();
    let b = zoo::checkpoint::read(b).unwrap();
    assert_eq!(a.entries.len(), b.entries.len());
    let mut worst = 0f64;
    for ((na, ta), (nb, tb)) in a.entries.iter().zip(&b.entries) {
        assert_eq!(na, nb);
        let scale = tb.abs().max().double_value(&[]).max(1e-12);
        let d = (ta - tb).abs().max().double_value(&[]) / scale;
        worst = worst.max(d);
    }
    worst
}

/// One process with batch 8 for 2 epochs: what every data-parallel run below must reproduce.
fn reference() -> &'static Path {
    static REF: OnceLock<PathBuf> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = common::fixtures("dist-runs").join("reference");
        let _ = std::fs::remove_dir_all(&dir);
        let home = tempfile::tempdir().unwrap();
        let out = zoo(home.path()).args(train_args(&dir, 8, 2)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

#[test]
fn two_processes_with_batch_4_train_like_one_with_batch_8() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w2");
    let job = Job::start(tmp.path(), 2, |_| train_args(&out, 4, 2));
    let log = succeed(job.finish());
    assert!(log.contains("data-parallel: 2 processes (Gloo, 127.0.0.1:"), "{log}");
    let d = max_rel_diff(&out.join("last.safetensors"), &reference().join("last.safetensors"));
    println!("W=2 B=4 vs W=1 B=8 after 2 epochs: max relative difference {d:.3e}");
    assert!(d < 1e-5, "weights differ by {d:e} relative");
    // Rank 0 alone wrote the outputs, with the metrics of the whole job.
    for f in ["last.safetensors", "best.safetensors", "resume.safetensors", "metrics.csv", "curves.png", "run.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let rows = |p: &Path| -> Vec<Vec<String>> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let (a, b) = (rows(&out), rows(reference()));
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        // val top-1 and top-5 (exact counts summed over the ranks), and the learning rate.
        assert_eq!((&x[1], &x[5], &x[6]), (&y[1], &y[5], &y[6]), "metrics differ: {x:?} vs {y:?}");
        let (lx, ly): (f64, f64) = (x[2].parse().unwrap(), y[2].parse().unwrap());
        assert!((lx - ly).abs() < 1e-4 * ly.abs().max(1.0), "train loss {lx} vs {ly}");
    }
}

/// `--sync-bn`: two processes with batch 4 train a ResNet-18 (batch norm everywhere; 32 px, so
/// layer4's statistics are over single pixels of the batch) exactly as one process with batch 8:
/// weights and running statistics. In float64, because float32's rounding alone (one thread
/// against two, one process) moves this network's weights by up to 1e-2 relative in 10 steps.
/// Without `--sync-bn` each rank normalises its own 4 images and the runs part by over 1.
#[test]
fn two_processes_with_sync_bn_train_a_resnet_like_one_with_batch_8() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |out: &Path, batch: usize, extra: &[&str]| {
        let mut v: Vec<String> = ["train", "resnet18", "--no-augment", "--seed", "3", "--lr", "0.01", "--threads", "1"]
            .map(String::from)
            .to_vec();
        v.extend(["--input-size", "32", "--epochs", "2", "--float64"].map(String::from));
        v.extend(["--data".into(), data().display().to_string(), "--output".into(), out.display().to_string()]);
        v.extend(["--batch-size".into(), batch.to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let one = tmp.path().join("w1");
    let out = zoo(tmp.path()).args(args(&one, 8, &[])).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_two = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let job = Job::start(tmp.path(), 2, |_| args(&dir, 4, extra));
        succeed(job.finish());
        max_rel_diff(&dir.join("last.safetensors"), &one.join("last.safetensors"))
    };
    let synced = run_two("sync", &["--sync-bn"]);
    let plain = run_two("plain", &[]);
    println!("W=2 B=4 vs W=1 B=8, resnet18, float64: --sync-bn {synced:.3e}, without {plain:.3e}");
    assert!(synced < 1e-4, "with --sync-bn the weights differ by {synced:e} relative");
    assert!(plain > 1e-2, "without --sync-bn the runs should part ({plain:e}): the test would not see a fault");
}

#[test]
fn torchrun_launches_two_processes_that_train_like_one() {
    let torchrun = common::root().join(".venv/bin/torchrun");
    assert!(torchrun.exists(), "{} is missing: run make setup", torchrun.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("torchrun");
    let mut c = Command::new(&torchrun);
    c.args(["--standalone", "--nproc-per-node", "2", "--no-python"]).arg(zoo_bin()).args(train_args(&out, 4, 2));
    c.env("ZOO_HOME", tmp.path()).env("ZOO_OFFLINE", "1").env("OMP_NUM_THREADS", "1");
    let mut job = Job { children: Vec::new(), logs: Vec::new() };
    job.spawn(c, tmp.path().join("torchrun.log"));
    let log = succeed(job.finish());
    assert!(log.contains("data-parallel: 2 processes"), "{log}");
    let d = max_rel_diff(&out.join("last.safetensors"), &reference().join("last.safetensors"));
    println!("torchrun W=2 B=4 vs W=1 B=8: max relative difference {d:.3e}");
    assert!(d < 1e-5, "weights differ by {d:e} relative");
}

#[test]
fn a_run_started_on_two_processes_resumes_on_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let job = Job::start(tmp.path(), 2, |_| {
        let mut a = train_args(&out, 4, 2);
        a.extend(["--stop-after".into(), "1".into()]);
        a
    });
    succeed(job.finish());
    let mut args = train_args(&out, 8, 2);
    let i = args.iter().position(|a| a == "--out").unwrap();
    args[i] = "--resume".into();
    let r = zoo(tmp.path()).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("resuming a run of 2 process(es) with 1"), "{err}");
    let d = max_rel_diff(&out.join("last.safetensors"), &reference().join("last.safetensors"));
    println!("W=2 epoch 1 + W=1 epoch 2 vs W=1: max relative difference {d:.3e}");
    assert!(d < 1e-5, "weights differ by {d:e} relative");
}

#[test]
fn eval_on_two_processes_counts_what_one_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = reference().join("best.safetensors");
    let eval = |out: &Path| -> Vec<String> {
        ["eval", "lenet5", "--batch-size", "3", "--data", &data().display().to_string()]
            .map(String::from)
            .into_iter()
            .chain(["--weights".into(), weights.display().to_string(), "--out".into(), out.display().to_string()])
            .collect()
    };
    let one = zoo(tmp.path()).args(eval(&tmp.path().join("one"))).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let two = tmp.path().join("two");
    let job = Job::start(tmp.path(), 2, |_| eval(&two));
    succeed(job.finish());
    let confusion = |d: &Path| std::fs::read_to_string(d.join("confusion.csv")).unwrap();
    assert_eq!(confusion(&two), confusion(&tmp.path().join("one")));
    let total: u64 = confusion(&two)
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').skip(1).map(|x| x.parse::<u64>().unwrap()).collect::<Vec<_>>())
        .sum();
    assert_eq!(total, 20, "every val image counted once");
}

#[test]
fn a_killed_peer_ends_the_other_rank_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("killed");
    let mut job = Job::start(tmp.path(), 2, |_| {
        let mut a = train_args(&out, 4, 100_000);
        a.extend(["--dist-timeout".into(), "60".into()]);
        a
    });
    job.wait_for(0, "epoch 2/");
    job.children[1].kill().unwrap();
    let t0 = Instant::now();
    let status = job.wait(0, Duration::from_secs(90)).expect("rank 0 kept running after its peer was killed");
    let log = job.log(0);
    println!("rank 0 exited {:.1} s after its peer was killed", t0.elapsed().as_secs_f64());
    assert!(!status.success());
    assert!(log.contains("error: ") && log.contains("a peer has exited or stopped responding"), "{log}");
}

#[test]
fn a_hanging_peer_ends_the_other_rank_within_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hung");
    // The timeout bounds every collective, the first epoch's too: 10 s leaves room for a loaded
    // 2-core machine there, and still ends the run long before the 90 s this test waits.
    let mut job = Job::start(tmp.path(), 2, |_| {
        let mut a = train_args(&out, 4, 100_000);
        a.extend(["--dist-timeout".into(), "10".into()]);
        a
    });
    job.wait_for(0, "epoch 2/");
    let pid = job.children[1].id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let status = job.wait(0, Duration::from_secs(90)).expect("rank 0 kept waiting for a stopped peer");
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let log = job.log(0);
    assert!(!status.success());
    assert!(log.contains("within 10 s (--dist-timeout)"), "{log}");
}

#[test]
fn ranks_started_with_different_flags_or_data_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mismatch");
    let job = Job::start(tmp.path(), 2, |rank| {
        let mut a = train_args(&out, 4, 1);
        if rank == 1 {
            let i = a.iter().position(|x| x == "--lr").unwrap();
            a[i + 1] = "0.02".into();
        }
        a
    });
    for (i, (s, log)) in job.finish().into_iter().enumerate() {
        assert!(!s.success(), "rank {i} went on:\n{log}");
        assert!(log.contains("were started differently: the flags (rank 1 differ from rank 0)"), "rank {i}:\n{log}");
    }
    // Another data folder: a copy with one image fewer.
    let other = tmp.path().join("data");
    for e in walkdir::WalkDir::new(data()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let rel = e.path().strip_prefix(data()).unwrap();
        std::fs::create_dir_all(other.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(e.path(), other.join(rel)).unwrap();
    }
    let first = walkdir::WalkDir::new(other.join("train")).into_iter().flatten().find(|e| e.file_type().is_file());
    std::fs::remove_file(first.unwrap().path()).unwrap();
    let job = Job::start(tmp.path(), 2, |rank| {
        let mut a = train_args(&out, 4, 1);
        if rank == 1 {
            let i = a.iter().position(|x| x == "--data").unwrap();
            a[i + 1] = other.display().to_string();
        }
        a
    });
    for (i, (s, log)) in job.finish().into_iter().enumerate() {
        assert!(!s.success(), "rank {i} went on:\n{log}");
        assert!(log.contains("the data (rank 1 differ"), "rank {i}:\n{log}");
    }
}

#[test]
fn a_rendezvous_nobody_serves_names_the_address_and_port() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = zoo(tmp.path());
    c.args(train_args(&tmp.path().join("alone"), 4, 1))
        .args(["--dist-timeout", "3"])
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    let mut job = Job { children: Vec::new(), logs: Vec::new() };
    job.spawn(c, tmp.path().join("alone.log"));
    let (s, log) = job.finish().remove(0);
    assert!(!s.success());
    assert!(log.contains(&format!("could not join the process group at 127.0.0.1:{port} within 3 s")), "{log}");
}
