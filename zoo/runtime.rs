//! Process-wide settings that make libtorch fast on the CPU. The `zoo` command and `make bench`
//! call [`tune_cpu_allocator`] first thing; a program using the library should do the same.
//! Also: the device a flag names ([`parse_device`]) and the precision of a forward pass.

use anyhow::{bail, Result};
use tch::{Device, Kind};

/// Makes the C allocator keep freed memory for reuse instead of returning it to the system.
///
/// libtorch allocates every activation with `malloc`. glibc serves a request above
/// `M_MMAP_THRESHOLD` (128 KiB, rising to at most 32 MiB as big blocks are freed) with a fresh
/// `mmap` and unmaps it on free, so each forward pass of a batch page-faults its activations in
/// from zeroed memory again: the kernel's page clearing, not the convolutions, then takes most
/// of the time of a narrow network. With both thresholds at 1 GiB, freed activations stay in the
/// heap and the next batch reuses them, as PyTorch's CUDA caching allocator does on the GPU.
/// Measured on this project's 2-core EPYC (eval forward, images/s, before and after):
/// efficientnet_lite0 at batch 4, 44 and 84; resnet50 at batch 16, 12 and 18. The cost is that
/// the process keeps the memory of its largest batch until it exits.
///
/// Returns whether the settings took (only glibc has them; elsewhere it does nothing).
pub fn tune_cpu_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only sets allocator parameters; it is called before any thread of ours
        // allocates concurrently, and glibc takes its own lock anyway.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The CPU's model name and feature flags, from `/proc/cpuinfo` (empty elsewhere).
pub fn cpu_info() -> (String, Vec<String>) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("model name").or_else(|| field("CPU part")).unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
    (name, flags.split_whitespace().map(str::to_string).collect())
}

/// Whether the CPU computes bfloat16 natively (x86: AVX512-BF16 or AMX-BF16; Arm: BF16), so
/// libtorch's oneDNN kernels run bfloat16 faster than float32 rather than emulating it.
pub fn cpu_has_native_bf16() -> bool {
    let (_, flags) = cpu_info();
    flags.iter().any(|f| matches!(f.as_str(), "avx512_bf16" | "amx_bf16" | "bf16"))
}

/// Whether the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8): int8 dot products without
/// 16-bit intermediate sums.
pub fn cpu_has_vnni() -> bool {
    let (_, flags) = cpu_info();
    flags.iter().any(|f| matches!(f.as_str(), "avx512_vnni" | "avx_vnni" | "amx_int8"))
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    F32,
    /// `--half`: float16 weights and inputs (CUDA only).
    F16,
    /// `--bf16`: bfloat16 weights and inputs (CUDA, and CPUs with native bfloat16).
    Bf16,
    /// int8 post-training static quantization on the CPU: float32 weights and inputs, quantized
    /// by the `onednn` engine with activation ranges from calibration images
    /// ([`crate::infer::Runner::int8`]).
    Int8,
}

/// What `--precision` asks for: a precision, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PrecisionChoice {
    /// float32.
    #[cfg_attr(feature = "cli", value(alias = "f32"))]
    Fp32,
    /// bfloat16 (CUDA, and CPUs with native bfloat16).
    Bf16,
    /// float16 (CUDA only).
    #[cfg_attr(feature = "cli", value(alias = "f16"))]
    Fp16,
    /// int8 post-training static quantization (the CPU's onednn engine; calibration images).
    Int8,
    /// The fastest precision the device computes natively ([`auto_precision`]).
    #[cfg_attr(feature = "cli", value(help = "The fastest precision the device computes natively"))]
    Auto,
}

impl PrecisionChoice {
    /// The precision this choice stands for on `device`.
    pub fn resolve(self, device: Device) -> Precision {
        match self {
            PrecisionChoice::Fp32 => Precision::F32,
            PrecisionChoice::Bf16 => Precision::Bf16,
            PrecisionChoice::Fp16 => Precision::F16,
            PrecisionChoice::Int8 => Precision::Int8,
            PrecisionChoice::Auto => auto_precision(device),
        }
    }
}

/// Refuses a precision `device` cannot run natively: float16 on the CPU, bfloat16 on a CPU
/// without native bfloat16 (libtorch would emulate it, slower than float32). What
/// [`crate::models::Model::set_precision`] checks, callable before any weights are fetched.
pub fn check_precision(precision: Precision, device: Device) -> Result<()> {
    if device == Device::Cpu {
        match precision {
            Precision::F16 => bail!(
                "float16 (--precision fp16, --half) needs a CUDA device (use --device cuda); on the CPU, bfloat16 \
                 (--precision bf16) where the CPU has native bfloat16, or --precision auto"
            ),
            Precision::Bf16 if !cpu_has_native_bf16() => bail!(
                "bfloat16 (--precision bf16, --bf16) on the CPU needs native bfloat16 (AVX512-BF16 or AMX on x86, \
                 BF16 on Arm), which this {} lacks: libtorch would emulate it, slower than float32. Run in \
                 float32 (or --precision auto), or use --device cuda",
                cpu_info().0
            ),
            _ => {}
        }
    } else if precision == Precision::Int8 {
        bail!("int8 (--precision int8) runs on the CPU (oneDNN's quantized convolutions): use --device cpu");
    }
    Ok(())
}

/// `--precision auto`: a reduced precision only where the device computes it natively and
/// faster than float32 (measured by `make bench`, BENCHMARKS.md's "CPU engines"):
/// - CUDA: float16 (every GPU this libtorch runs on has float16 tensor cores);
/// - a CPU with AMX-BF16, or AMD's AVX512-BF16 (Zen 4 and later: resnet50 73 against 42
///   images/s in float32): bfloat16;
/// - any other CPU: float32. That includes Intel's AVX512-BF16 without AMX (Cooper Lake, and
///   Sapphire Rapids guests whose hypervisor hides AMX), where oneDNN's bfloat16 convolutions run
///   slower than its float32 ones (resnet50 16 against 23 images/s, OpenVINO 18 against 29),
///   and Arm's BF16, not measured here.
pub fn auto_precision(device: Device) -> Precision {
    match device {
        Device::Cpu => {}
        Device::Cuda(_) => return Precision::F16,
        _ => return Precision::F32,
    }
    let (name, flags) = cpu_info();
    let has = |f: &str| flags.iter().any(|g| g == f);
    if has("amx_bf16") || (has("avx512_bf16") && name.contains("AMD")) {
        Precision::Bf16
    } else {
        Precision::F32
    }
}

impl Precision {
    /// How `zoo benchmark --format json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::F16 => "float16",
            Precision::Bf16 => "bfloat16",
            Precision::Int8 => "int8",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 | Precision::Int8 => Kind::Float,
            Precision::F16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// How messages name `device`, as `--device` spells it: `cpu`, `cuda:N`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// Parses `--device auto|cpu|cuda|cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let device = match s.as_str() {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Device::Cuda(n),
            None => bail!("unknown device '{s}': use auto, cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(n) = device {
        let count = tch::Cuda::device_count() as usize;
        if n >= count {
            bail!("device cuda:{n} is not available ({count} CUDA devices found): use --device cpu");
        }
    }
    Ok(device)
}
