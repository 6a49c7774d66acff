//! The `zoo` command line.
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use zoo::commands::classify::{self as cls, OutputFormat};
use zoo::commands::summary::{Format as SummaryFormat, SortBy};
use zoo::commands::TextFormat;
use zoo::models::Pool;
use zoo::runtime::{Precision, PrecisionChoice};

#[derive(Parser)]
#[command(name = "zoo", version, about = "The classic convolutional networks, from LeNet-5 to ShuffleNet, on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models (name, family, parameters, input size), optionally matching a glob.
    List {
        glob: Option<String>,
        #[arg(long, value_enum, default_value_t = TextFormat::Table)]
        format: TextFormat,
    },
    /// Describe one model (`ARCH` or `ARCH.TAG`): paper, input, parameters, feature stages, and
    /// the weights entry's preprocessing.
    Info {
        model: String,
        #[arg(long, value_enum, default_value_t = TextFormat::Table)]
        format: TextFormat,
        /// List every layer name `zoo features --layer` takes instead, one per line.
        #[arg(long)]
        layers: bool,
    },
    /// Per-layer shapes, parameters, multiply-adds, memory and receptive field.
    Summary(SummaryArgs),
    /// Classify images and folders of images.
    Classify(ClassifyArgs),
    /// Extract features (fc7, pre_logits, any stage or module path) for every image.
    Features(FeaturesArgs),
    /// Measure a model's forward pass (or training step) in images/s on this machine, by
    /// engine, precision, batch size and threads, with the CPU's name and flags.
    Benchmark(BenchmarkArgs),
    /// Write a model (pretrained, or a checkpoint of yours) as ONNX or TorchScript for serving
    /// engines: ONNX Runtime, OpenVINO, TensorRT, Triton, TorchServe, torch.jit.load.
    Export(ExportArgs),
    /// Pretrained weights: list, fetch, verify, locate, import.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Fine-tune pretrained weights on an image folder (a new head for its classes).
    Finetune(zoo::commands::train::TrainArgs),
    /// Train from random initialisation on an image folder.
    Train(zoo::commands::train::TrainArgs),
    /// Evaluate on an image folder: top-1/top-5, per-class accuracy, confusion matrix.
    Eval(zoo::commands::train::EvalArgs),
    /// Data set tools: export-idx (Fashion-MNIST / MNIST to an image folder).
    #[command(subcommand)]
    Dataset(zoo::commands::train::DatasetCommand),
    /// Print a shell completion script: `zoo completions bash > ~/.local/share/bash-completion/completions/zoo`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ModelArgs {
    /// `ARCH` (its default weights) or `ARCH.TAG`, e.g. resnet50.tv2_in1k.
    model: String,
    /// A local checkpoint (torch.save zip or legacy, or safetensors) instead of the manifest's:
    /// identified by digest, zoo metadata or layout, and said on stderr.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    pre: zoo::commands::preprocess::PreprocessArgs,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Accept weights whose source publishes no digest.
    #[arg(long)]
    trust_unverified: bool,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// auto: onednn on the CPU for 64 images or more, eager otherwise; eager (zoo's layers); jit:
    /// traced once, frozen and optimized for inference; onednn: traced, frozen, every convolution
    /// a fused oneDNN primitive on channels-last tensors (the fastest on the CPU, with --bf16 above
    /// all; see `zoo benchmark`). Both traced engines give eager's results within float32
    /// rounding; tracing costs 0.3-1 s once.
    #[arg(long, value_enum, default_value_t = zoo::infer::Engine::Auto)]
    engine: zoo::infer::Engine,
    /// Image files and folders (walked recursively); `-` reads a list of paths, one per line,
    /// from standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Classes reported per image (at least 1).
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    top_k: usize,
    /// Images per forward pass (at least 1).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    batch_size: usize,
    /// fp32 (the default); bf16 (CUDA, or a CPU with native bfloat16: AVX512-BF16, AMX, Arm
    /// BF16); fp16 (CUDA); int8 (the CPU's onednn engine, post-training static quantization
    /// calibrated on --calibrate); auto: fp16 on CUDA, bf16 on CPUs where it beats fp32 (AMX,
    /// AMD's AVX512-BF16), fp32 elsewhere.
    #[arg(long, value_enum, conflicts_with_all = ["half", "bf16"])]
    precision: Option<PrecisionChoice>,
    /// --precision fp16.
    #[arg(long, conflicts_with = "bf16")]
    half: bool,
    /// --precision bf16.
    #[arg(long)]
    bf16: bool,
    /// int8: image files and folders whose activation ranges calibrate the quantization (a few
    /// dozen like the images classified; at most 128, evenly spread over them, are read).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    calibrate: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Write results here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Take share K of N of the sorted file list (K/N, 1-based).
    #[arg(long)]
    shard: Option<String>,
    /// libtorch CPU threads [default: one per core]; decoding runs on rayon's threads
    /// (RAYON_NUM_THREADS, default one per core) beside them.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    #[command(flatten)]
    decode: DecodeArgs,
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// Decode big JPEGs at 1/2, 1/4 or 1/8 size in the DCT domain when the resize allows (as
    /// PIL's draft()): faster, but NOT bit-exact with PIL + torchvision (probabilities move a
    /// little; see BENCHMARKS.md). Off by default.
    #[arg(long)]
    fast_decode: bool,
}

#[derive(clap::Args)]
struct FeaturesArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files and folders (walked recursively); `-` reads a list of paths, one per line,
    /// from standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// fc7, pre_logits, a stage (layer3) or any module path (features.28).
    #[arg(long, default_value = "pre_logits")]
    layer: String,
    /// auto: onednn on the CPU for 64 images or more, eager otherwise; eager (zoo's layers); jit
    /// or onednn: the network up to --layer traced once and frozen (batch norms folded into the
    /// convolutions before them, exactly), as in `zoo classify --engine`.
    #[arg(long, value_enum, default_value_t = zoo::infer::Engine::Auto)]
    engine: zoo::infer::Engine,
    /// Output file: .safetensors (tensor `features`) or .npy; an index CSV is written beside it.
    #[arg(long)]
    output: PathBuf,
    /// Global pooling of spatial maps.
    #[arg(long, value_enum, default_value_t = Pool::None)]
    pool: Pool,
    /// Images per forward pass (at least 1).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    batch_size: usize,
    /// fp32 (the default); bf16 (CUDA, or a CPU with native bfloat16: AVX512-BF16, AMX, Arm
    /// BF16); fp16 (CUDA); auto: fp16 on CUDA, bf16 on CPUs where it beats fp32 (AMX, AMD's
    /// AVX512-BF16), fp32 elsewhere.
    #[arg(long, value_enum, conflicts_with_all = ["half", "bf16"])]
    precision: Option<PrecisionChoice>,
    /// --precision fp16.
    #[arg(long, conflicts_with = "bf16")]
    half: bool,
    /// --precision bf16.
    #[arg(long)]
    bf16: bool,
    #[command(flatten)]
    decode: DecodeArgs,
}

#[derive(clap::Args)]
struct BenchmarkArgs {
    /// Model name (random weights: speed does not depend on them).
    model: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    batch_size: usize,
    /// Height and width, `H` or `HxW` (default: the model's).
    #[arg(long, value_parser = parse_size)]
    input_size: Option<(i64, i64)>,
    /// fp32; bf16 (CUDA, or a CPU with native bfloat16); fp16 (CUDA); int8 (the CPU's onednn
    /// engine); auto: fp16 on CUDA, bf16 on CPUs where it beats fp32 (AMX, AMD's AVX512-BF16),
    /// fp32 elsewhere. A comma-separated list measures each (`fp32,bf16,int8`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "fp32")]
    precision: Vec<PrecisionChoice>,
    /// auto (onednn on the CPU, eager elsewhere), eager (zoo's layers), jit (traced, frozen,
    /// optimized for inference) or onednn (traced, frozen, convolutions as fused oneDNN
    /// primitives on channels-last tensors). A comma-separated list measures each engine in each
    /// precision (int8 only on onednn).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    engine: Vec<zoo::infer::Engine>,
    /// Rounds alternating over the engines and precisions measured; each reports its best.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    rounds: usize,
    /// libtorch CPU threads [default: one per core].
    #[arg(long)]
    threads: Option<i32>,
    /// A training step (forward, loss, backward, SGD) instead of inference.
    #[arg(long)]
    train: bool,
    /// Timed seconds after the warm-up (more than 0).
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    seconds: f64,
    #[arg(long, value_enum, default_value_t = TextFormat::Table)]
    format: TextFormat,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// onnx or torchscript (default: from the --output extension, .onnx or .pt).
    #[arg(long, value_enum)]
    format: Option<zoo::export::Format>,
    /// The file to write.
    #[arg(long, required_unless_present = "triton", conflicts_with = "triton")]
    output: Option<PathBuf>,
    /// Write a Triton Inference Server model repository here instead: NAME/1/model.onnx (or
    /// model.pt), NAME/config.pbtxt and NAME/labels.txt.
    #[arg(long, value_name = "REPO")]
    triton: Option<PathBuf>,
    /// Height and width the graph is traced at, `H` or `HxW` (default: the preprocessing's
    /// crop). ONNX files are fixed to it; TorchScript files take any size.
    #[arg(long, value_parser = parse_size)]
    input_size: Option<(i64, i64)>,
    /// ONNX opset (13 to 21).
    #[arg(long, default_value_t = zoo::export::onnx::DEFAULT_OPSET)]
    opset: i64,
    /// ONNX: a fixed batch of 1 instead of a dynamic batch dimension.
    #[arg(long)]
    static_batch: bool,
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// List the weights entries (name, size, top-1, digest, layout, cached or not), optionally
    /// matching a glob.
    List {
        glob: Option<String>,
        #[arg(long, value_enum, default_value_t = TextFormat::Table)]
        format: TextFormat,
    },
    /// Download and verify ARCH[.TAG] into the cache.
    Fetch {
        name: String,
        #[arg(long)]
        trust_unverified: bool,
    },
    /// Re-verify every cached file.
    Verify,
    /// Print where ARCH[.TAG]'s file lives in the cache.
    Path { name: String },
    /// Copy FILE (or every file under DIR) into the cache, each identified by its digest and
    /// verified; --as ARCH.TAG names the entry (the file must still match its digest).
    Import {
        file: PathBuf,
        #[arg(long = "as")]
        name: Option<String>,
    },
}

#[derive(clap::Args)]
struct SummaryArgs {
    /// Model name (or several with --compare).
    #[arg(required = true)]
    models: Vec<String>,
    /// Input size, `H` or `HxW` (default: the model's).
    #[arg(long, value_parser = parse_size)]
    input_size: Option<(i64, i64)>,
    /// Batch size (activation memory scales with it).
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
    format: SummaryFormat,
    /// Show layers nested up to this depth (0: the model's top-level parts).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// One line per model instead of per layer.
    #[arg(long)]
    compare: bool,
    /// Sort the comparison by this column.
    #[arg(long, value_enum, default_value_t = SortBy::Macs)]
    sort: SortBy,
    /// With --compare: plot top-1 accuracy against multiply-adds to this PNG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err("must be more than 0".to_string()),
        Err(_) => Err(format!("'{s}' is not a number of seconds")),
    }
}

fn parse_size(s: &str) -> Result<(i64, i64), String> {
    let parse = |v: &str| {
        v.trim().parse::<i64>().map_err(|_| format!("'{s}' is not a size: use H or HxW, e.g. 224 or 160x192"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => parse(s).map(|v| (v, v)),
    }
}

fn summary(a: SummaryArgs) -> Result<()> {
    use zoo::commands::summary;
    if a.compare || a.models.len() > 1 {
        let rows = summary::compare(&a.models, a.input_size, a.sort)?;
        print!("{}", summary::render_compare_as(&rows, a.format)?);
        if let Some(path) = a.plot {
            let left_out = summary::plot(&rows, &path)?;
            eprintln!("wrote {}", path.display());
            if !left_out.is_empty() {
                eprintln!("zoo summary: not plotted, no published ImageNet top-1: {}", left_out.join(", "));
            }
        }
        return Ok(());
    }
    let s = summary::summarize_name(&a.models[0], a.batch, a.input_size)?;
    print!("{}", summary::render(&s, a.depth, a.format)?);
    Ok(())
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::List { glob, format: TextFormat::Table } => print!("{}", zoo::commands::list::list(glob.as_deref())?),
        Command::List { glob, format: TextFormat::Json } => {
            print!("{}", zoo::commands::list::list_json(glob.as_deref())?)
        }
        Command::Info { model, layers: true, .. } => print!("{}", zoo::commands::list::layers(&model)?),
        Command::Info { model, format: TextFormat::Table, .. } => print!("{}", zoo::commands::list::info(&model)?),
        Command::Info { model, format: TextFormat::Json, .. } => print!("{}", zoo::commands::list::info_json(&model)?),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "zoo", &mut std::io::stdout());
        }
        Command::Summary(args) => summary(args)?,
        Command::Classify(args) => return classify(args),
        Command::Features(args) => return features(args),
        Command::Weights(cmd) => return weights(cmd),
        Command::Export(args) => export(args)?,
        Command::Benchmark(args) => benchmark(args)?,
        Command::Finetune(args) => return train_run(&args, true),
        Command::Train(args) => return train_run(&args, false),
        Command::Eval(args) => {
            // 1: some images could not be read (each named on stderr); the rest were counted.
            if !zoo::commands::train::eval(&args)?.failed.is_empty() {
                return Ok(1);
            }
        }
        Command::Dataset(cmd) => zoo::commands::train::dataset(&cmd)?,
    }
    Ok(0)
}

/// The parsed command line, with `train`'s and `finetune`'s flags marked as given or defaulted
/// (a resumed run keeps its stored settings for the flags not given).
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Finetune(args) | Command::Train(args), Some((_, sub))) = (&mut cli.command, matches.subcommand()) {
        let given =
            sub.ids().filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine));
        args.explicit = Some(given.map(|id| id.to_string()).collect());
    }
    cli
}

fn main() {
    zoo::runtime::tune_cpu_allocator();
    let code = run(parse()).unwrap_or_else(|e| {
        // 2: the run could not start (or could not go on); 1 is kept for "some inputs
        // failed, the rest were written"; clap's own usage errors are 2 as well.
        eprintln!("error: {e:#}");
        2
    });
    exit_now(code)
}

/// Ends the process with status `code` once what it wrote is flushed, without running the
/// static destructors of libtorch and of the CUDA libraries it links: they take apart operator
/// registries and kernel caches that the system reclaims at once anyway, and cost 0.12 s at the
/// end of every command on 2 cores. Every writer is flushed and dropped within `run`, and no
/// thread of zoo's outlives it; the process group of a distributed job is never torn down
/// (`zoo::dist::init`).
fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: fflush(NULL) flushes every C stdio stream (oneDNN's verbose lines are written
    // there); _exit has no precondition.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code.into())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    std::process::exit(code.into())
}

fn load(m: &ModelArgs) -> Result<zoo::weights::pretrained::Loaded> {
    let mut opts = zoo::weights::pretrained::LoadOptions::new(zoo::runtime::parse_device(&m.device)?);
    opts.fetch.trust_unverified |= m.trust_unverified;
    opts.preprocess = m.pre.to_override();
    zoo::weights::pretrained::load_with(&m.model, m.weights.as_deref(), &opts)
}

/// Standard output, or a file created for the run (its write errors name it).
fn output(path: &Option<PathBuf>) -> Result<Box<dyn std::io::Write>> {
    /// A file whose errors say which file.
    struct Named<W> {
        path: PathBuf,
        inner: W,
    }
    impl<W: std::io::Write> Named<W> {
        fn named(&self, e: std::io::Error) -> std::io::Error {
            std::io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        }
    }
    impl<W: std::io::Write> std::io::Write for Named<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.inner.write(buf).map_err(|e| self.named(e))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush().map_err(|e| self.named(e))
        }
    }
    Ok(match path {
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
            Box::new(Named { path: p.clone(), inner: std::io::BufWriter::new(file) })
        }
        None => Box::new(std::io::stdout().lock()),
    })
}

fn classify(a: ClassifyArgs) -> Result<u8> {
    if let Some(p) = &a.output {
        // Before the model loads; the file itself is made once it has.
        zoo::outfile::check_folder(p)?;
    }
    let mut files = cls::input_files(&a.paths)?;
    if let Some(s) = &a.shard {
        let (k, n) = cls::parse_shard(s)?;
        let all = files.len();
        files = cls::shard(files, k, n);
        if files.is_empty() {
            // More shards than images (a job array sized for larger folders): this one has
            // nothing to do, which is no failure.
            eprintln!("zoo classify: shard {k}/{n} holds none of the {all} images");
        }
    }
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let device = zoo::runtime::parse_device(&a.model.device)?;
    let precision = precision(a.precision, a.half, a.bf16, device);
    zoo::runtime::check_precision(precision, device)?;
    let mut loaded = load(&a.model)?;
    loaded.model.set_precision(precision)?;
    let opts = cls::ClassifyOptions {
        top_k: a.top_k,
        batch_size: a.batch_size,
        format: a.format,
        precision,
        fast_decode: a.decode.fast_decode,
        engine: a.engine,
        progress: std::io::stderr().is_terminal(),
        echo_failures: a.output.is_some() || !std::io::stdout().is_terminal(),
        calibration: if a.calibrate.is_empty() { Vec::new() } else { cls::collect_files(&a.calibrate) },
        ..Default::default()
    };
    let mut out = output(&a.output)?;
    let s = cls::classify(&loaded, &files, &opts, &mut out)?;
    eprintln!(
        "zoo classify: {} ok, {} failed, {:.1} images/s ({}, {}, {})",
        s.ok,
        s.failed,
        s.images_per_second(),
        loaded.source,
        zoo::runtime::device_name(loaded.model.vs.device()),
        precision.name()
    );
    Ok(if s.failed > 0 { 1 } else { 0 })
}

fn weights(cmd: WeightsCommand) -> Result<u8> {
    print!(
        "{}",
        zoo::commands::weights::run(match cmd {
            WeightsCommand::List { glob, format } =>
                zoo::commands::weights::Action::List { glob, json: format == TextFormat::Json },
            WeightsCommand::Fetch { name, trust_unverified } =>
                zoo::commands::weights::Action::Fetch { name, trust_unverified },
            WeightsCommand::Verify => zoo::commands::weights::Action::Verify,
            WeightsCommand::Path { name } => zoo::commands::weights::Action::Path { name },
            WeightsCommand::Import { file, name } => zoo::commands::weights::Action::Import { file, name },
        })?
    );
    Ok(0)
}

/// `--precision`, or its shorthands `--half` and `--bf16`, on `device`.
fn precision(choice: Option<PrecisionChoice>, half: bool, bf16: bool, device: tch::Device) -> Precision {
    let choice = match (choice, half, bf16) {
        (Some(c), _, _) => c,
        (None, true, _) => PrecisionChoice::Fp16,
        (None, _, true) => PrecisionChoice::Bf16,
        _ => PrecisionChoice::Fp32,
    };
    choice.resolve(device)
}

fn features(a: FeaturesArgs) -> Result<u8> {
    use zoo::commands::features;
    features::FeatureFormat::from_path(&a.output)?;
    zoo::outfile::check_folder(&a.output)?;
    let device = zoo::runtime::parse_device(&a.model.device)?;
    let precision = precision(a.precision, a.half, a.bf16, device);
    zoo::runtime::check_precision(precision, device)?;
    if precision == Precision::Int8 {
        anyhow::bail!(
            "zoo features runs in fp32, bf16 or fp16: int8 is for `zoo classify`, `zoo eval` and `zoo benchmark`"
        );
    }
    let files = cls::input_files(&a.paths)?;
    let mut loaded = load(&a.model)?;
    loaded.model.set_precision(precision)?;
    let opts = features::FeaturesOptions {
        layer: a.layer,
        pool: a.pool,
        batch_size: a.batch_size,
        precision,
        engine: a.engine,
        fast_decode: a.decode.fast_decode,
        progress: std::io::stderr().is_terminal(),
    };
    let s = features::run(&loaded, &files, &a.output, &opts)?;
    eprintln!(
        "zoo features: {} of shape {:?} -> {} (index {}), {} failed",
        zoo::text::count(s.rows, "row", "rows"),
        &s.shape[1..],
        s.output.display(),
        s.index.display(),
        s.failed
    );
    Ok(if s.failed > 0 { 1 } else { 0 })
}

fn benchmark(a: BenchmarkArgs) -> Result<()> {
    let device = zoo::runtime::parse_device(&a.device)?;
    if let Some(t) = a.threads {
        anyhow::ensure!(t >= 1, "--threads must be at least 1");
        tch::set_num_threads(t);
    }
    let precisions: Vec<Precision> = a.precision.iter().map(|p| p.resolve(device)).collect();
    let (combos, skipped) = zoo::infer::bench_combinations(&a.engine, &precisions, device, a.train);
    if a.engine.len() * precisions.len() > 1 {
        for e in skipped {
            eprintln!(
                "zoo benchmark: skipping {} int8 (int8 runs on the onednn engine)",
                format!("{e:?}").to_lowercase()
            );
        }
    }
    let opts = zoo::infer::BenchOptions {
        batch_size: a.batch_size as i64,
        input_size: a.input_size.map(|(h, w)| [h, w]),
        train: a.train,
        seconds: a.seconds,
        ..Default::default()
    };
    let results = zoo::infer::benchmark_each(&a.model, device, &combos, &opts, a.rounds)?;
    match a.format {
        TextFormat::Json if results.len() == 1 => println!("{}", serde_json::to_string_pretty(&results[0])?),
        TextFormat::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        TextFormat::Table => {
            for r in &results {
                let [n, c, h, w] = r.input_shape;
                println!(
                    "{} {} ({}, {}, {}): {:.1} images/s, {:.1} ms per batch of {n}x{c}x{h}x{w} ({} batches in {:.1} s; {}, {} threads, {})",
                    r.model,
                    r.mode,
                    format!("{:?}", r.engine).to_ascii_lowercase(),
                    r.precision,
                    r.device,
                    r.images_per_second,
                    r.ms_per_batch,
                    r.batches,
                    r.seconds,
                    r.cpu,
                    r.threads,
                    r.cpu_flags.join(" ")
                );
            }
        }
    }
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    use zoo::export::{ExportOptions, Format};
    let format = match (a.format, &a.output) {
        (Some(f), _) => f,
        (None, None) => Format::Onnx,
        (None, Some(out)) => Format::from_path(out).ok_or_else(|| {
            anyhow::anyhow!(
                "--output {}: say --format onnx or --format torchscript (or name the file .onnx or .pt)",
                out.display()
            )
        })?,
    };
    let opts = ExportOptions {
        format,
        input_size: a.input_size.map(|(h, w)| [h, w]),
        opset: a.opset,
        static_batch: a.static_batch,
    };
    zoo::export::check_options(&opts)?;
    if let Some(out) = &a.output {
        zoo::outfile::check_folder(out)?;
    }
    let loaded = load(&a.model)?;
    let e = match (&a.output, &a.triton) {
        (Some(out), _) => zoo::export::export(&loaded, out, &opts)?,
        (None, Some(repo)) => zoo::export::triton::write_repository(&loaded, repo, &opts)?,
        (None, None) => anyhow::bail!("say --output FILE or --triton REPO"),
    };
    let [_, c, h, w] = e.input_shape;
    let batch = if format == Format::Onnx && a.static_batch { "1" } else { "N" };
    eprintln!(
        "zoo export: {} ({}) -> {} ({format}, {} operators, input [{batch}, {c}, {h}, {w}], {:.1} MB)",
        loaded.model.spec.name,
        loaded.source,
        e.output.display(),
        e.nodes,
        e.bytes as f64 / 1e6
    );
    Ok(())
}

/// Exit status 1 when some images could not be read (each was named): the rest were trained on
/// and the checkpoints written.
fn train_run(args: &zoo::commands::train::TrainArgs, pretrained: bool) -> Result<u8> {
    let s = if pretrained { zoo::commands::train::finetune(args)? } else { zoo::commands::train::train(args)? };
    // In a data-parallel job rank 0 reports for all.
    if let Some(last) = s.history.last().filter(|_| zoo::dist::is_lead()) {
        println!(
            "{}: {}, last val top-1 {:.2}%, best {:.2}% (epoch {})",
            s.out.display(),
            zoo::text::count(last.epoch, "epoch", "epochs"),
            last.val_acc1,
            s.best_acc1.unwrap_or(f64::NAN),
            s.best_epoch
        );
    }
    if s.unread.is_empty() {
        return Ok(0);
    }
    if zoo::dist::is_lead() {
        let verb = if pretrained { "finetune" } else { "train" };
        eprintln!("zoo {verb}: {} image(s) could not be read and were not trained on (named above)", s.unread.len());
    }
    Ok(1)
}
