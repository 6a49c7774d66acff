//! `make bench`'s Rust side: forward-pass and training-step times of zoo models on the CPU,
//! printed as JSON lines for tools/bench.py, which runs the same work in PyTorch eager and
//! writes BENCHMARKS.md. Timings are medians over repeated runs after warm-up.
//!
//! Usage: cargo bench --bench step -- WEIGHTS_DIR THREADS [cpu|cuda] [f32|f16|bf16]
//! (on CUDA, every timed run ends with a device synchronisation).
use std::time::Instant;
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};
use zoo::models::{BuildConfig, Model};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(device: Device, warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    for _ in 0..warmup {
        f();
    }
    sync();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                sync();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let dir = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("build/bench"));
    let threads: i32 = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
    let device = zoo::runtime::parse_device(args.get(3).map(String::as_str).unwrap_or("cpu"))?;
    let kind = match args.get(4).map(String::as_str) {
        Some("f16") => Kind::Half,
        Some("bf16") => Kind::BFloat16,
        _ => Kind::Float,
    };
    let (fwd_batch, steps) = if device == Device::Cpu { (16, 5) } else { (64, 20) };
    zoo::runtime::tune_cpu_allocator(); // as the zoo command does
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    // Forward pass alone, eval mode, batch 16 at 224.
    for name in ["resnet50", "efficientnet_lite0"] {
        let mut model = Model::new(name, BuildConfig::default(), device)?;
        let file = dir.join(format!("{name}.pth"));
        if file.exists() {
            model.load_file(&file)?; // the same file the PyTorch side loads
        }
        model.vs.set_kind(kind);
        let xs = Tensor::randn([fwd_batch, 3, 224, 224], (kind, device));
        let t = time(device, 2, steps, || {
            let _ = tch::no_grad(|| model.net.forward_t(&xs, false));
        });
        println!(
            r#"{{"bench": "forward", "model": "{name}", "batch": {fwd_batch}, "kind": "{kind:?}", "seconds": {t}}}"#
        );
    }
    // One training step: forward, cross-entropy, backward, SGD with momentum; batch 32 at 224.
    for name in ["resnet18", "mobilenet_v2"] {
        if kind != Kind::Float {
            continue; // training steps are timed in float32 (mixed precision is the trainer's --amp)
        }
        let model = Model::new(name, BuildConfig::default(), device)?;
        let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&model.vs, 0.01)?;
        let xs = Tensor::randn([32, 3, 224, 224], (Kind::Float, device));
        let ys = Tensor::randint(1000, [32], (Kind::Int64, device));
        let t = time(device, 1, 3, || {
            let loss = model.net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
            opt.backward_step(&loss);
        });
        println!(r#"{{"bench": "train_step", "model": "{name}", "batch": 32, "seconds": {t}}}"#);
    }
    Ok(())
}
