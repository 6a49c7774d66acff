//! Data-parallel training on libtorch's own distributed engine (c10d), with the semantics of
//! PyTorch's `DistributedDataParallel` and `DistributedSampler`.
//!
//! - [`Launch`]: who started this process — `torchrun` (its agent serves the store), Slurm's
//!   `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `MASTER_ADDR`/`MASTER_PORT`), or
//!   plain `RANK`/`WORLD_SIZE`/`LOCAL_RANK`/`MASTER_ADDR`/`MASTER_PORT` (Kubeflow's PyTorchJob).
//! - [`Group`]: the process group (Gloo on the CPU, NCCL on CUDA) joined through a TCPStore.
//! - [`Reducer`]: c10d's gradient bucketing; its autograd hooks all-reduce each bucket as soon
//!   as backward has produced it, overlapped with the rest of backward, averaged over the world.
//! - [`sampler`]: which samples each rank takes per epoch.
//!
//! The C++ side is `c10d.cpp`, compiled by build.rs against the wheel's headers and Debian's
//! libgloo-dev; without those headers zoo builds without it and says so when launched.
pub mod sampler;

use anyhow::{bail, ensure, Context, Result};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Default of `--dist-timeout`: how long a rank waits for a peer (rendezvous, every collective)
/// before it gives up. A peer that dies is noticed at once (its sockets close); this bounds
/// the wait for one that hangs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// DDP's bucket size of the rank-0 broadcast of the module state (`_sync_module_states`).
const BROADCAST_BUCKET_BYTES: i64 = 250 << 20;

/// How this process was launched as one rank of a data-parallel job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Rank on this node: the CUDA device of this process.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already serves the store: every rank connects as a client.
    pub agent_store: bool,
    /// `torchrun`, `slurm` or `environment` (for messages).
    pub launcher: &'static str,
    /// Key prefix in the store (torchrun's restart count, so a restarted job starts clean).
    pub prefix: String,
}

impl Launch {
    /// Reads the launch from the process environment; `None` when this is a single process.
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let num = |k: &str| -> Result<Option<usize>> {
            var(k)
                .map(|v| v.trim().parse::<usize>().with_context(|| format!("{k}={v:?} is not a non-negative integer")))
                .transpose()
        };
        let port = || -> Result<u16> {
            match var("MASTER_PORT") {
                None => Ok(29500),
                Some(p) => p.trim().parse().with_context(|| format!("MASTER_PORT={p:?} is not a port number")),
            }
        };
        let (rank, world, local_rank, launcher) = if let (Some(rank), Some(world)) = (num("RANK")?, num("WORLD_SIZE")?)
        {
            let launcher = if var("TORCHELASTIC_RUN_ID").is_some() { "torchrun" } else { "environment" };
            (rank, world, num("LOCAL_RANK")?.unwrap_or(0), launcher)
        } else if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            bail!("RANK and WORLD_SIZE must be set together (with MASTER_ADDR and MASTER_PORT)");
        } else if let (Some(rank), Some(world), true) =
            (num("SLURM_PROCID")?, num("SLURM_NTASKS")?, var("SLURM_STEP_ID").is_some())
        {
            // Inside an srun step; a batch script's own shell (no step) stays a single process.
            if world <= 1 {
                return Ok(None);
            }
            (rank, world, num("SLURM_LOCALID")?.unwrap_or(0), "slurm")
        } else {
            return Ok(None);
        };
        ensure!(world >= 1, "WORLD_SIZE must be at least 1");
        ensure!(rank < world, "rank {rank} is not below the world size {world}");
        let master_addr = match var("MASTER_ADDR") {
            Some(a) if !a.trim().is_empty() => a.trim().to_string(),
            _ if world == 1 => "127.0.0.1".to_string(),
            _ if launcher == "slurm" => bail!(
                "srun started {world} tasks but MASTER_ADDR is not set: in the sbatch script, \
                 export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)"
            ),
            _ => bail!("RANK/WORLD_SIZE are set but MASTER_ADDR is not: set it to rank 0's host"),
        };
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let prefix = format!("zoo/{}/", var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into()));
        Ok(Some(Launch { rank, world, local_rank, master_addr, master_port: port()?, agent_store, launcher, prefix }))
    }
}

#[cfg(zoo_c10d)]
mod ffi {
    use std::ffi::{c_char, c_void};
    extern "C" {
        pub fn zoo_dist_free_error(e: *mut c_char);
        pub fn zoo_dist_has_nccl() -> bool;
        #[allow(clippy::too_many_arguments)]
        pub fn zoo_dist_init(
            host: *const c_char,
            port: i32,
            rank: i32,
            world: i32,
            server: bool,
            listen_fd: i32,
            prefix: *const c_char,
            timeout_ms: i64,
            device: i32,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn zoo_dist_all_reduce_sum(g: *mut c_void, t: *mut c_void) -> *mut c_char;
        pub fn zoo_dist_broadcast(
            g: *mut c_void,
            ts: *const *mut c_void,
            n: usize,
            bucket_bytes: i64,
            src: i32,
        ) -> *mut c_char;
        pub fn zoo_dist_reducer_new(
            g: *mut c_void,
            params: *const *mut c_void,
            n: usize,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn zoo_dist_reducer_before_forward(r: *mut c_void, sync: bool) -> *mut c_char;
        pub fn zoo_dist_reducer_after_forward(r: *mut c_void) -> *mut c_char;
        #[allow(clippy::too_many_arguments)]
        pub fn zoo_dist_sync_batch_norm(
            g: *mut c_void,
            x: *mut c_void,
            weight: *mut c_void,
            bias: *mut c_void,
            running_mean: *mut c_void,
            running_var: *mut c_void,
            momentum: f64,
            eps: f64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
    }
}

/// Without the shim every entry point refuses with the same message.
#[cfg(not(zoo_c10d))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    use std::ffi::{c_char, c_void};
    fn refuse() -> *mut c_char {
        c"this zoo was built without distributed training (no Gloo headers at build time): \
          apt-get install libgloo-dev (tools/setup.sh does) and rebuild"
            .as_ptr()
            .cast_mut()
    }
    pub unsafe fn zoo_dist_free_error(_: *mut c_char) {}
    pub unsafe fn zoo_dist_has_nccl() -> bool {
        false
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn zoo_dist_init(
        _: *const c_char,
        _: i32,
        _: i32,
        _: i32,
        _: bool,
        _: i32,
        _: *const c_char,
        _: i64,
        _: i32,
        _: *mut *mut c_void,
    ) -> *mut c_char {
        refuse()
    }
    pub unsafe fn zoo_dist_all_reduce_sum(_: *mut c_void, _: *mut c_void) -> *mut c_char {
        refuse()
    }
    pub unsafe fn zoo_dist_broadcast(_: *mut c_void, _: *const *mut c_void, _: usize, _: i64, _: i32) -> *mut c_char {
        refuse()
    }
    pub unsafe fn zoo_dist_reducer_new(
        _: *mut c_void,
        _: *const *mut c_void,
        _: usize,
        _: *mut *mut c_void,
    ) -> *mut c_char {
        refuse()
    }
    pub unsafe fn zoo_dist_reducer_before_forward(_: *mut c_void, _: bool) -> *mut c_char {
        refuse()
    }
    pub unsafe fn zoo_dist_reducer_after_forward(_: *mut c_void) -> *mut c_char {
        refuse()
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn zoo_dist_sync_batch_norm(
        _: *mut c_void,
        _: *mut c_void,
        _: *mut c_void,
        _: *mut c_void,
        _: *mut c_void,
        _: *mut c_void,
        _: f64,
        _: f64,
        _: *mut *mut c_void,
    ) -> *mut c_char {
        refuse()
    }
}

/// Turns the shim's error (a malloc'd message, or null) into a `Result`.
fn check(e: *mut c_char) -> Result<()> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: a NUL-terminated message from c10d.cpp, freed once here.
    let msg = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    // SAFETY: as above (the stub's static message is never freed: its free is a no-op).
    unsafe { ffi::zoo_dist_free_error(e) };
    bail!("{}", msg.trim())
}

/// Whether this build can use NCCL (CUDA) process groups.
pub fn has_nccl() -> bool {
    // SAFETY: a constant query.
    unsafe { ffi::zoo_dist_has_nccl() }
}

fn ptrs(ts: &[Tensor]) -> Vec<*mut c_void> {
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

/// One rank's membership of a process group.
pub struct Group {
    ptr: *mut c_void,
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub timeout: Duration,
    /// The device collectives run on (CPU: Gloo, CUDA: NCCL).
    pub device: Device,
    /// `host:port` of the store (for messages).
    pub address: String,
}

// SAFETY: c10d's process group is thread-safe (its work queue serialises collectives); zoo
// drives it from the training thread only.
unsafe impl Send for Group {}
// SAFETY: as above.
unsafe impl Sync for Group {}

static GROUP: OnceLock<Group> = OnceLock::new();

/// The process group of this process, once [`init`] has joined one.
pub fn group() -> Option<&'static Group> {
    GROUP.get()
}

/// Joins the process group `launch` describes, on `device` (CPU: Gloo; `cuda:N`: NCCL), and
/// keeps it for the rest of the process ([`group`]). The group is never torn down: c10d's
/// destructors wait for pending work, which would turn a failed peer into a hang at exit.
pub fn init(launch: &Launch, device: Device, timeout: Duration) -> Result<&'static Group> {
    ensure!(GROUP.get().is_none(), "the process group is already initialised");
    let cuda = match device {
        Device::Cuda(i) => {
            ensure!(has_nccl(), "--device cuda with several processes needs NCCL, and this zoo was built without it (no nccl.h in the venv at build time): rebuild after tools/setup.sh, or use --device cpu (Gloo)");
            i as i32
        }
        _ => -1,
    };
    let address = format!("{}:{}", launch.master_addr, launch.master_port);
    let host = CString::new(launch.master_addr.as_str())?;
    let prefix = CString::new(launch.prefix.as_str())?;
    let server = launch.rank == 0 && !launch.agent_store;
    // On a loopback master address rank 0 listens there and nowhere else (c10d alone would
    // listen on every interface, as PyTorch does for the multi-node case).
    let listen_fd = if server && is_loopback(&launch.master_addr) {
        use std::os::fd::IntoRawFd;
        let l = std::net::TcpListener::bind((launch.master_addr.as_str(), launch.master_port)).with_context(|| {
            format!("rank 0 cannot listen on {address} (MASTER_ADDR:MASTER_PORT): is another job using the port?")
        })?;
        l.into_raw_fd()
    } else {
        -1
    };
    let mut ptr = std::ptr::null_mut();
    // SAFETY: valid C strings and an out pointer; the shim catches every C++ exception.
    let e = unsafe {
        ffi::zoo_dist_init(
            host.as_ptr(),
            i32::from(launch.master_port),
            launch.rank as i32,
            launch.world as i32,
            server,
            listen_fd,
            prefix.as_ptr(),
            timeout.as_millis() as i64,
            cuda,
            &mut ptr,
        )
    };
    check(e).with_context(|| {
        format!(
            "rank {} of {} ({}) could not join the process group at {address} within {} s \
             (--dist-timeout){}",
            launch.rank,
            launch.world,
            launch.launcher,
            timeout.as_secs(),
            if server {
                ": this rank serves the store there, is the port free?"
            } else {
                ": check MASTER_ADDR/MASTER_PORT and that rank 0 is running"
            }
        )
    })?;
    let g =
        Group { ptr, rank: launch.rank, world: launch.world, local_rank: launch.local_rank, timeout, device, address };
    Ok(GROUP.get_or_init(|| g))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// Joins the job this process was launched into (torchrun, srun, or `RANK`/`WORLD_SIZE`), if
/// any, and returns the device this rank runs on: `device` (`auto`, `cpu`, `cuda`, `cuda:N`),
/// where `auto` and `cuda` become this node's GPU number `LOCAL_RANK` (one GPU per process).
pub fn join_from_env(device: &str, timeout: Duration) -> Result<String> {
    let Some(launch) = Launch::from_env()? else {
        return Ok(device.to_string());
    };
    let d = match crate::runtime::parse_device(device)? {
        Device::Cuda(_) if device == "auto" || device == "cuda" => Device::Cuda(launch.local_rank),
        d => d,
    };
    init(&launch, d, timeout)?;
    Ok(crate::runtime::device_name(d))
}

/// Whether this process is rank 0 of its job, or not part of one (it writes the outputs).
pub fn is_lead() -> bool {
    group().is_none_or(|g| g.rank == 0)
}

impl Group {
    /// What a failed collective reports: which rank, doing what, and the likely cause.
    pub fn failed(&self, what: &str) -> String {
        format!(
            "rank {} of {}: {what} failed: a peer has exited or stopped responding within {} s \
             (--dist-timeout); see the other ranks' output",
            self.rank,
            self.world,
            self.timeout.as_secs()
        )
    }

    /// Sums `t` over the group, in place.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<()> {
        // SAFETY: `t` is a live at::Tensor; the shim copies the handle.
        check(unsafe { ffi::zoo_dist_all_reduce_sum(self.ptr, t.as_ptr() as *mut c_void) })
            .with_context(|| self.failed("an all-reduce"))
    }

    /// Copies rank `src`'s values of `ts` into every rank's, in place.
    pub fn broadcast(&self, ts: &[Tensor], src: usize) -> Result<()> {
        let p = ptrs(ts);
        // SAFETY: live tensors for the duration of the call.
        check(unsafe { ffi::zoo_dist_broadcast(self.ptr, p.as_ptr(), p.len(), BROADCAST_BUCKET_BYTES, src as i32) })
            .with_context(|| self.failed("a broadcast"))
    }

    /// Every rank's `values` (each rank passes the same number), indexed by rank.
    pub fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<Vec<u64>>> {
        let k = values.len();
        let mut rows = vec![0i64; self.world * k];
        for (i, v) in values.iter().enumerate() {
            rows[self.rank * k + i] = *v as i64;
        }
        // Only one rank contributes a non-zero to each slot: the sum is that value, exactly.
        let t = Tensor::from_slice(&rows).to_device(self.device);
        self.all_reduce_sum(&t)?;
        let all = Vec::<i64>::try_from(t.to_device(Device::Cpu))?;
        Ok(all.chunks(k.max(1)).map(|c| c.iter().map(|&x| x as u64).collect()).collect())
    }

    /// Sums `values` over the group (float64).
    pub fn sum_f64(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).to_device(self.device);
        self.all_reduce_sum(&t)?;
        Ok(Vec::<f64>::try_from(t.to_device(Device::Cpu))?)
    }

    /// Sums `values` over the group (exact integers).
    pub fn sum_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
        let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
        let t = Tensor::from_slice(&v).to_device(self.device);
        self.all_reduce_sum(&t)?;
        Ok(Vec::<i64>::try_from(t.to_device(Device::Cpu))?.into_iter().map(|x| x as u64).collect())
    }

    /// Refuses to go on when the ranks disagree about any of `parts` (name, hash): every rank
    /// fails with the same message naming what differs and where.
    pub fn check_same(&self, parts: &[(&str, u64)]) -> Result<()> {
        let hashes: Vec<u64> = parts.iter().map(|p| p.1).collect();
        let all = self.all_gather_u64(&hashes)?;
        let mut diffs = Vec::new();
        for (i, (name, _)) in parts.iter().enumerate() {
            let odd: Vec<String> = (1..self.world).filter(|&r| all[r][i] != all[0][i]).map(|r| r.to_string()).collect();
            if !odd.is_empty() {
                diffs.push(format!("{name} (rank {} differ from rank 0)", odd.join(", ")));
            }
        }
        ensure!(
            diffs.is_empty(),
            "the ranks of this job were started differently: {}. Start every rank with the same \
             command, model, weights and data",
            diffs.join("; ")
        );
        Ok(())
    }
}

/// DDP's gradient synchronisation of `params`: c10d's Reducer, bucketed as
/// DistributedDataParallel does (one bucket until the first backward has shown the order in
/// which gradients arrive, then 1 MiB first and 25 MiB buckets), gradients averaged.
pub struct Reducer {
    ptr: *mut c_void,
    group: &'static Group,
    /// Whether the last backward was synchronised (DDP's `require_forward_param_sync`).
    synced: bool,
    buffers: Vec<Tensor>,
}

impl Reducer {
    /// Registers the reducer's hooks on `params` (the trained leaves); `buffers` (batch-norm
    /// statistics) are re-broadcast from rank 0 before each synchronised forward, as DDP's
    /// `broadcast_buffers=True` does.
    pub fn new(group: &'static Group, params: &[Tensor], buffers: Vec<Tensor>) -> Result<Reducer> {
        let p = ptrs(params);
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live tensors; the reducer keeps its own references.
        check(unsafe { ffi::zoo_dist_reducer_new(group.ptr, p.as_ptr(), p.len(), &mut ptr) })
            .context("creating the gradient reducer")?;
        Ok(Reducer { ptr, group, synced: true, buffers })
    }

    /// Before the forward pass of a micro-batch; `sync`: its backward all-reduces (the last
    /// micro-batch of an optimiser step; others accumulate locally, as under DDP's no_sync()).
    pub fn before_forward(&mut self, sync: bool) -> Result<()> {
        // SAFETY: a live reducer.
        check(unsafe { ffi::zoo_dist_reducer_before_forward(self.ptr, sync) })
            .with_context(|| self.group.failed("rebuilding the gradient buckets"))?;
        if self.synced && !self.buffers.is_empty() {
            self.group.broadcast(&self.buffers, 0)?;
        }
        Ok(())
    }

    /// After the forward pass, before backward.
    pub fn after_forward(&mut self, sync: bool) -> Result<()> {
        self.synced = sync;
        if sync {
            // SAFETY: a live reducer.
            check(unsafe { ffi::zoo_dist_reducer_after_forward(self.ptr) })
                .with_context(|| self.group.failed("preparing the gradient all-reduce"))?;
        }
        Ok(())
    }

    /// The group it reduces over.
    pub fn group(&self) -> &'static Group {
        self.group
    }
}

/// `--sync-bn`: a training-mode batch norm over the batches of every rank of [`group`] (mean
/// and variance of the whole job's batch; backward all-reduces the matching sums), with the
/// signature of [`crate::nn::SyncBatchNorm`]. A failed collective cannot be returned from a
/// layer's forward: it ends the process with the group's message.
pub fn sync_batch_norm(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    eps: f64,
) -> Tensor {
    let g = group().expect("--sync-bn runs inside a process group");
    let p = |t: &Tensor| t.as_ptr() as *mut c_void;
    let mut out = std::ptr::null_mut();
    // SAFETY: live tensors; on success the shim hands over a new at::Tensor, which tch owns.
    let e = unsafe {
        ffi::zoo_dist_sync_batch_norm(
            g.ptr,
            p(xs),
            p(weight),
            p(bias),
            p(running_mean),
            p(running_var),
            momentum,
            eps,
            &mut out,
        )
    };
    if let Err(e) = check(e) {
        eprintln!("error: {}: {e:#}", g.failed("a synchronised batch norm"));
        std::process::exit(1);
    }
    // SAFETY: a fresh at::Tensor* from the shim.
    unsafe { Tensor::from_ptr(out.cast()) }
}

/// A stable 64-bit digest of `bytes` (the first 8 bytes of their SHA-256).
pub fn digest(bytes: &[u8]) -> u64 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(bytes);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// A digest of tensors' names, shapes and values.
pub fn digest_tensors<'a>(named: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<u64> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, t) in named {
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.size()).as_bytes());
        let flat = t.detach().to_device(Device::Cpu).to_kind(Kind::Double).flatten(0, -1);
        let v = Vec::<f64>::try_from(&flat)?;
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    let out = h.finalize();
    Ok(u64::from_le_bytes(out[..8].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn launches_are_read_from_torchrun_slurm_and_plain_variables() {
        assert_eq!(launch(&[]).unwrap(), None);
        let t = launch(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29411"),
            ("TORCHELASTIC_RUN_ID", "x"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((t.rank, t.world, t.local_rank, t.master_port), (1, 2, 1, 29411));
        assert!(t.agent_store);
        assert_eq!((t.launcher, t.prefix.as_str()), ("torchrun", "zoo/2/"));
        let s = launch(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_ID", "0"),
            ("MASTER_ADDR", "node1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((s.rank, s.world, s.local_rank, s.master_port, s.launcher), (3, 4, 1, 29500, "slurm"));
        assert!(!s.agent_store);
        // The batch script itself (no step) is one process.
        assert_eq!(launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]).unwrap(), None);
        let e = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"), ("SLURM_STEP_ID", "0")]).unwrap_err();
        assert!(e.to_string().contains("MASTER_ADDR"), "{e}");
        assert!(launch(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]).is_err());
        assert!(launch(&[("RANK", "0")]).is_err());
    }
}
