//! `zoo classify`: batch classification of image files and folders.
//!
//! Decoding and preprocessing run in parallel (rayon) one batch ahead of the forward pass,
//! through a bounded queue ([`crate::data::prefetch`]), so memory stays bounded by batch size and
//! queue depth whatever the number of files. On the CPU the forward pass runs the batch in
//! cache-sized chunks ([`crate::models::Model::inference_chunk`]). Every result is written and flushed per batch: an interrupted run keeps all
//! it has written. A file that cannot be read is reported (stderr and the output) and the run
//! goes on.
use crate::data::image::{load_luma_with, load_rgb_with, DecodeLimits, DecodeOptions};
use crate::data::inputs;
use crate::data::prefetch::prefetch;
use crate::data::preprocess::Preprocess;
use crate::weights::pretrained::Loaded;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// File extensions taken from folders (explicit file arguments are always tried).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Jsonl,
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// `--half`: float16 weights and inputs (CUDA only).
    F16,
    /// `--bf16`: bfloat16 weights and inputs (CUDA only).
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::F16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// Options of a classification run.
#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    pub top_k: usize,
    pub batch_size: usize,
    pub format: OutputFormat,
    pub precision: Precision,
    pub limits: DecodeLimits,
    /// `--fast-decode`: JPEGs decoded smaller in the DCT domain when the resize allows
    /// ([`decode_options`]); faster on big photos, not bit-exact.
    pub fast_decode: bool,
    /// Batches decoded ahead of the forward pass.
    pub queue_depth: usize,
    pub progress: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            top_k: 5,
            batch_size: 32,
            format: OutputFormat::Table,
            precision: Precision::F32,
            limits: DecodeLimits::default(),
            fast_decode: false,
            queue_depth: 2,
            progress: false,
        }
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

/// Parses `--shard K/N` (1-based K).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if n >= 1 && (1..=n).contains(&k) => Ok((k, n)),
        _ => bail!("invalid shard '{s}': use K/N with 1 <= K <= N, e.g. 2/8"),
    }
}

/// The files of one shard: a contiguous, deterministic slice, so the outputs of shards 1..N
/// concatenated in order are the output of the whole run.
pub fn shard(files: Vec<PathBuf>, k: usize, n: usize) -> Vec<PathBuf> {
    let len = files.len();
    let (start, end) = ((k - 1) * len / n, k * len / n);
    files.into_iter().skip(start).take(end - start).collect()
}

/// Expands files and folders (recursively, following symlinks, loops skipped) into a sorted,
/// de-duplicated list. Folders contribute files with an image extension and every file that is
/// not regular (FIFOs, devices: reported when prepared, never opened); a path that does not
/// exist is kept, so it is reported as a failed file rather than silently dropped.
pub fn collect_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let (files, problems) = inputs::collect(paths, &|f: &Path| inputs::has_extension(f, IMAGE_EXTENSIONS));
    for p in problems {
        eprintln!("zoo: skipping {p}");
    }
    files
}

/// One class of a result.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Top {
    pub index: i64,
    pub label: String,
    pub prob: f64,
}

/// The result for one file.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FileResult {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub top: Option<Vec<Top>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warning: Option<String>,
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    pub ok: usize,
    pub failed: usize,
    pub seconds: f64,
}

impl RunSummary {
    pub fn images_per_second(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }
}

/// A decoded, preprocessed file, or why not.
pub(crate) struct Prepared {
    pub data: std::result::Result<Vec<f32>, String>,
    pub warning: Option<String>,
}

/// How the inputs of `pre` are decoded: full size and bit-exact, or (`fast`) JPEGs decoded at
/// 1/2, 1/4 or 1/8 size in the DCT domain while the short side stays at least `pre.resize`, as
/// PIL's `draft("RGB", (resize, resize))` does. The resize then starts from other pixels:
/// probabilities move a little (see BENCHMARKS.md).
pub fn decode_options(pre: &Preprocess, limits: DecodeLimits, fast: bool) -> DecodeOptions {
    DecodeOptions { limits, draft: fast.then_some(pre.resize) }
}

/// Decodes and preprocesses one file (used by classify and features).
pub(crate) fn prepare(path: &Path, pre: &Preprocess, decode: &DecodeOptions) -> Prepared {
    if let Err(e) = inputs::check_regular(path) {
        return Prepared { data: Err(e), warning: None };
    }
    let (dims, data) = if pre.channels == 1 {
        match load_luma_with(path, decode) {
            Ok(img) => (img.dimensions(), pre.apply_luma(&img)),
            Err(e) => return Prepared { data: Err(e.to_string()), warning: None },
        }
    } else {
        match load_rgb_with(path, decode) {
            Ok(img) => (img.dimensions(), pre.apply(&img)),
            Err(e) => return Prepared { data: Err(e.to_string()), warning: None },
        }
    };
    let (w, h) = dims;
    let warning = (w < pre.crop[1] || h < pre.crop[0]).then(|| {
        format!("image is {w}x{h}, smaller than the {}x{} crop: upscaled as torchvision does", pre.crop[1], pre.crop[0])
    });
    Prepared { data: data.map_err(|e| format!("{e:#}")), warning }
}

/// Decodes and preprocesses `files` a batch at a time (each batch in parallel), `queue_depth`
/// batches ahead of `consume`, which gets the index of the batch's first file.
pub(crate) fn pipeline(
    files: &[PathBuf],
    pre: &Preprocess,
    decode: &DecodeOptions,
    batch_size: usize,
    queue_depth: usize,
    mut consume: impl FnMut(usize, Vec<Prepared>) -> Result<()>,
) -> Result<()> {
    let batch_size = batch_size.max(1);
    let chunks: Vec<&[PathBuf]> = files.chunks(batch_size).collect();
    let make = |chunk: &&[PathBuf]| chunk.par_iter().map(|p| prepare(p, pre, decode)).collect::<Vec<_>>();
    prefetch(&chunks, queue_depth, make, |i, batch| consume(i * batch_size, batch))
}

/// Stacks the successfully prepared items of a batch into `[n, C, H, W]`.
pub(crate) fn stack(batch: &[Prepared], pre: &Preprocess) -> Option<Tensor> {
    let [c, h, w] = pre.output_shape();
    let rows: Vec<&Vec<f32>> = batch.iter().filter_map(|p| p.data.as_ref().ok()).collect();
    if rows.is_empty() {
        return None;
    }
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Some(Tensor::from_slice(&flat).view([rows.len() as i64, c as i64, h as i64, w as i64]))
}

/// Progress bar with images per second on a terminal, nothing otherwise.
pub(crate) fn progress_bar(total: usize, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Puts the model in the requested precision on its device.
pub fn set_precision(loaded: &mut Loaded, precision: Precision) -> Result<()> {
    if precision != Precision::F32 && loaded.model.vs.device() == Device::Cpu {
        bail!("--half and --bf16 need a CUDA device (use --device cuda)");
    }
    match precision {
        Precision::F32 => {}
        Precision::F16 => loaded.model.vs.half(),
        Precision::Bf16 => loaded.model.vs.bfloat16(),
    }
    Ok(())
}

/// Classifies `files` and writes one result per file, in order, to `out`.
pub fn classify(loaded: &Loaded, files: &[PathBuf], opts: &ClassifyOptions, out: &mut dyn Write) -> Result<RunSummary> {
    let start = Instant::now();
    let model = &loaded.model;
    let k = opts.top_k.clamp(1, loaded.labels.len().max(1));
    let bar = progress_bar(files.len(), opts.progress);
    let (mut ok, mut failed) = (0, 0);
    if opts.format == OutputFormat::Csv {
        writeln!(out, "path,rank,index,label,prob,error")?;
    }
    let [c, h, w] = loaded.preprocess.output_shape();
    let chunk = model.inference_chunk([c as i64, h as i64, w as i64]);
    let pre = &loaded.preprocess;
    let decode = decode_options(pre, opts.limits, opts.fast_decode);
    pipeline(files, pre, &decode, opts.batch_size, opts.queue_depth, |first, batch| {
        let mut tops = Vec::new();
        if let Some(xs) = stack(&batch, &loaded.preprocess) {
            let probs = model
                .predict_in_chunks(&xs, chunk)?
                .to_kind(Kind::Float)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            let (p, i) = probs.topk(k as i64, -1, true, true);
            let p = Vec::<Vec<f32>>::try_from(p).context("reading probabilities")?;
            let i = Vec::<Vec<i64>>::try_from(i).context("reading class indices")?;
            tops = p.into_iter().zip(i).collect();
        }
        let mut tops = tops.into_iter();
        let mut text = String::new();
        for (j, item) in batch.into_iter().enumerate() {
            let path = files[first + j].display().to_string();
            let result = match item.data {
                Ok(_) => {
                    ok += 1;
                    let (p, i) = tops.next().expect("one row per loaded image");
                    let top = p
                        .iter()
                        .zip(&i)
                        .map(|(&prob, &index)| Top {
                            index,
                            label: loaded
                                .labels
                                .get(index as usize)
                                .cloned()
                                .unwrap_or_else(|| format!("class_{index}")),
                            prob: prob as f64,
                        })
                        .collect();
                    FileResult { path, top: Some(top), error: None, warning: item.warning }
                }
                Err(e) => {
                    failed += 1;
                    FileResult { path, top: None, error: Some(e), warning: None }
                }
            };
            if let Some(e) = &result.error {
                eprintln!("zoo classify: skipped {}: {e}", result.path);
            }
            if let Some(w) = &result.warning {
                eprintln!("zoo classify: {}: {w}", result.path);
            }
            text += &render(&result, opts.format)?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        bar.set_position((ok + failed) as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(RunSummary { ok, failed, seconds: start.elapsed().as_secs_f64() })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One file's result in the chosen format (with its trailing newline).
pub fn render(r: &FileResult, format: OutputFormat) -> Result<String> {
    Ok(match format {
        OutputFormat::Jsonl => serde_json::to_string(r)? + "\n",
        OutputFormat::Csv => match (&r.top, &r.error) {
            (Some(top), _) => top
                .iter()
                .enumerate()
                .map(|(rank, t)| {
                    format!("{},{},{},{},{:.6},\n", csv_field(&r.path), rank + 1, t.index, csv_field(&t.label), t.prob)
                })
                .collect(),
            (None, e) => format!("{},,,,,{}\n", csv_field(&r.path), csv_field(e.as_deref().unwrap_or(""))),
        },
        OutputFormat::Table => match (&r.top, &r.error) {
            (Some(top), _) => {
                let mut s = format!("{}\n", r.path);
                for t in top {
                    s += &format!("  {:>6.2}%  {} ({})\n", t.prob * 100.0, t.label, t.index);
                }
                s
            }
            (None, e) => format!("{}\n  error: {}\n", r.path, e.as_deref().unwrap_or("")),
        },
    })
}
