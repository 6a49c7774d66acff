//! `zoo classify`: batch classification of image files and folders.
//!
//! Decoding and preprocessing run in parallel (rayon) one batch ahead of the forward pass,
//! through a bounded queue ([`crate::data::prefetch`]), so memory stays bounded by batch size and
//! queue depth whatever the number of files. On the CPU the forward pass runs the batch in
//! cache-sized chunks ([`crate::models::Model::inference_chunk`]). Every result is written and flushed per batch: an interrupted run keeps all
//! it has written. A file that cannot be read is reported (stderr and the output) and the run
//! goes on.
use crate::data::batch::{decode_options, pipeline, stack};
use crate::data::image::DecodeLimits;
use crate::text::escape_controls;
use crate::weights::pretrained::Loaded;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub use crate::data::inputs::{collect_files, parse_shard, shard, IMAGE_EXTENSIONS};
pub use crate::runtime::{parse_device, Precision};
use tch::{Device, Kind};

/// The command line's paths with `-` replaced by the paths read from standard input, one per
/// line (blank lines skipped), as `find ... | zoo classify MODEL -` gives them.
pub fn with_stdin(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        if p.as_os_str() == "-" {
            for line in std::io::stdin().lines() {
                let line = line.context("reading the file list from standard input")?;
                if !line.trim().is_empty() {
                    out.push(PathBuf::from(line.trim_end_matches(['\r', '\n'])));
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The image files `paths` name (`-`: a list on standard input), as [`collect_files`] finds
/// them. An error when there are none, or when no named path exists at all (a mistyped folder:
/// the run cannot start, where one missing file among others is one failed result).
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let named = with_stdin(paths)?;
    if named.is_empty() {
        bail!("no images: standard input listed no files (one path a line)");
    }
    // The first dozen, for a list from standard input may be long.
    let shown = || {
        let mut names: Vec<String> =
            named.iter().take(12).map(|p| escape_controls(&p.display().to_string()).into_owned()).collect();
        if named.len() > 12 {
            names.push(format!("and {} more", named.len() - 12));
        }
        names.join(", ")
    };
    if named.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        bail!("no such file or folder: {}", shown());
    }
    let files = collect_files(&named);
    if files.is_empty() {
        bail!("no images found in {} (looked for {})", shown(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(files)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Jsonl,
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
    /// Say each failed file on stderr too (off when the results themselves go to the terminal,
    /// where each failure would otherwise show twice).
    pub echo_failures: bool,
    /// How the forward pass runs ([`crate::infer::Engine`]).
    pub engine: crate::infer::Engine,
    /// int8: the images whose activation ranges calibrate the quantization
    /// ([`crate::infer::Runner::int8`]); at most [`crate::infer::MAX_CALIBRATION_IMAGES`] of them are read,
    /// evenly spread over the list.
    pub calibration: Vec<PathBuf>,
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
            echo_failures: true,
            engine: crate::infer::Engine::Auto,
            calibration: Vec::new(),
        }
    }
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

/// Classifies `files` and writes one result per file, in order, to `out` (none but the CSV
/// header for no files: an empty shard).
pub fn classify(loaded: &Loaded, files: &[PathBuf], opts: &ClassifyOptions, out: &mut dyn Write) -> Result<RunSummary> {
    let start = Instant::now();
    let model = &loaded.model;
    let k = opts.top_k.clamp(1, loaded.labels.len().max(1));
    let bar = crate::progress::Bar::images(files.len(), opts.progress);
    let (mut ok, mut failed) = (0, 0);
    let mut upscaled: (usize, Option<String>) = (0, None);
    if opts.format == OutputFormat::Csv {
        writeln!(out, "path,rank,index,label,prob,error")?;
    }
    if files.is_empty() {
        out.flush()?;
        return Ok(RunSummary { ok, failed, seconds: start.elapsed().as_secs_f64() });
    }
    let [c, h, w] = loaded.preprocess.output_shape();
    let chunk = model.inference_chunk([c as i64, h as i64, w as i64]);
    let pre = &loaded.preprocess;
    let decode = decode_options(pre, opts.limits, opts.fast_decode);
    let runner = if opts.precision == Precision::Int8 {
        let xs = crate::infer::calibration_images(&opts.calibration, pre, &decode)?;
        crate::infer::Runner::int8(model, opts.engine, xs)?
    } else {
        crate::infer::Runner::for_images(model, opts.engine, Some(files.len()))
    };
    let first_batch = crate::infer::Runner::first_batch(opts.batch_size, files.len(), chunk);
    let setup = || runner.prepare(first_batch, [c, h, w]);
    pipeline(files, pre, &decode, opts.batch_size, opts.queue_depth, setup, |first, batch| {
        let mut tops = Vec::new();
        if let Some(xs) = stack(&batch, &loaded.preprocess) {
            let logits = runner.predict_in_chunks(&xs, chunk)?;
            let probs = logits.to_kind(Kind::Float).softmax(-1, Kind::Float).to_device(Device::Cpu);
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
                if opts.echo_failures {
                    bar.println(&escape_controls(&format!("zoo classify: skipped {}: {e}", result.path)));
                }
            }
            if let Some(w) = &result.warning {
                // One line at the end for all of them: the results carry each file's warning.
                upscaled.0 += 1;
                upscaled.1.get_or_insert_with(|| format!("{}: {w}", result.path));
            }
            text += &render(&result, opts.format)?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        bar.set_position((ok + failed) as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    if let (n, Some(first)) = &upscaled {
        let more =
            if *n > 1 { format!(" (and {} more image(s): see each result's warning)", n - 1) } else { String::new() };
        eprintln!("{}", escape_controls(&format!("zoo classify: {first}{more}")));
    }
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
        // For a terminal: file names and labels (a fine-tuned file's metadata) with their
        // control characters escaped, as every message quoting untrusted text has them.
        OutputFormat::Table => match (&r.top, &r.error) {
            (Some(top), _) => {
                let mut s = format!("{}\n", escape_controls(&r.path));
                for t in top {
                    s += &format!("  {:>6.2}%  {} ({})\n", t.prob * 100.0, escape_controls(&t.label), t.index);
                }
                if let Some(w) = &r.warning {
                    s += &format!("  warning: {w}\n");
                }
                s
            }
            (None, e) => {
                format!("{}\n  error: {}\n", escape_controls(&r.path), escape_controls(e.as_deref().unwrap_or("")))
            }
        },
    })
}
