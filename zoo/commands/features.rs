//! `zoo features`: features of any named layer for every image, for transfer learning.
//!
//! `--layer` takes `fc7` (AlexNet, ZFNet, VGG: the second fully connected layer after its ReLU),
//! `pre_logits` (the pooled features of any model), a stage of `feature_info` (`layer3`) or any
//! module path (`features.28`). Rows are streamed to a temporary file as batches finish, so
//! memory does not grow with the number of images; the output file appears, complete, at the end.
use crate::data::batch::{decode_options, pipeline, stack};
use crate::data::image::DecodeLimits;
use crate::infer::{Engine, Runner};
pub use crate::models::Pool;
use crate::runtime::Precision;
use crate::text::escape_controls;
use crate::weights::pretrained::Loaded;
use anyhow::{bail, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// File format of the feature matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureFormat {
    Safetensors,
    Npy,
}

impl FeatureFormat {
    /// The format an output path's extension names: `.safetensors` or `.npy`; any other is
    /// refused (before a model is loaded or an image read).
    pub fn from_path(p: &Path) -> Result<Self> {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("npy") => Ok(FeatureFormat::Npy),
            Some(e) if e.eq_ignore_ascii_case("safetensors") => Ok(FeatureFormat::Safetensors),
            _ => bail!(
                "--output {}: zoo writes features as .safetensors (tensor `features`) or .npy; name the file so",
                p.display()
            ),
        }
    }
}

/// Totals of a features run.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturesSummary {
    pub rows: usize,
    pub failed: usize,
    pub shape: Vec<i64>,
    pub output: PathBuf,
    pub index: PathBuf,
}

/// The name of the folder `file` is in (`DIR/<class>/x.jpg`: the class), also where the path
/// names it `.` or not at all (`x.jpg` in the current folder).
fn class_folder(file: &Path) -> String {
    let parent = file.parent().unwrap_or(Path::new(""));
    let named = parent.file_name().map(|n| n.to_string_lossy().into_owned());
    named
        .or_else(|| {
            let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            dir.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// The index CSV written beside `output` (`feats.safetensors` → `feats.index.csv`).
pub fn index_path(output: &Path) -> PathBuf {
    output.with_extension("index.csv")
}

/// What `zoo features` computes and how.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturesOptions {
    /// `fc7`, `pre_logits`, a stage or a module path ([`crate::models::Model::layer_names`]).
    pub layer: String,
    pub pool: Pool,
    pub batch_size: usize,
    pub precision: Precision,
    /// [`Engine::Auto`]: `onednn` on the CPU for a run of many images ([`Runner::features`]).
    pub engine: Engine,
    pub fast_decode: bool,
    pub progress: bool,
}

/// Runs the files through `loaded` and writes the features of `opts.layer`, one row per image
/// that loaded, and the index CSV (row, path, error) for every file.
pub fn run(loaded: &Loaded, files: &[PathBuf], output: &Path, opts: &FeaturesOptions) -> Result<FeaturesSummary> {
    let FeaturesOptions { layer, pool, batch_size, precision, engine, fast_decode, progress } = opts;
    let (layer, pool, batch_size) = (layer.as_str(), *pool, *batch_size);
    let runner = Runner::features(&loaded.model, *engine, layer, Some(files.len()))?;
    let format = FeatureFormat::from_path(output)?;
    // The rows and the index are written under names of their own; at the end the output is
    // written and renamed onto the user's path, then the .npy's meta.json, then the index: an
    // interrupted or failed run leaves the previous output and its index as they were.
    let partial = crate::outfile::beside(output)?;
    let mut data = BufWriter::new(partial.as_file().try_clone()?);
    let index = index_path(output);
    let index_tmp = crate::outfile::beside(&index)?;
    let mut idx = BufWriter::new(index_tmp.as_file().try_clone()?);
    writeln!(idx, "row,path,label,error")?;
    let (mut rows, mut failed, mut row_shape): (usize, usize, Option<Vec<i64>>) = (0, 0, None);
    let device = loaded.model.vs.device();
    let bar = crate::progress::Bar::images(files.len(), *progress);
    let decode = decode_options(&loaded.preprocess, DecodeLimits::default(), *fast_decode);
    let setup = || runner.prepare(batch_size.min(files.len()), loaded.preprocess.output_shape());
    pipeline(files, &loaded.preprocess, &decode, batch_size, 2, setup, |first, batch| {
        if let Some(xs) = stack(&batch, &loaded.preprocess) {
            let xs = xs.to_device(device).to_kind(precision.kind());
            let f = runner.features_pooled(&xs, pool)?.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
            let shape = f.size()[1..].to_vec();
            if row_shape.get_or_insert_with(|| shape.clone()) != &shape {
                bail!("layer '{layer}' changed shape between batches: use --pool avg for inputs of varied sizes");
            }
            let flat = Vec::<f32>::try_from(f.view(-1))?;
            for v in flat {
                data.write_all(&v.to_le_bytes())?;
            }
        }
        for (j, item) in batch.iter().enumerate() {
            let file = &files[first + j];
            let path = file.display().to_string();
            // The class-folder label (`DIR/<class>/x.jpg`): what a transfer-learning fit needs.
            let label = class_folder(file);
            match &item.data {
                Ok(_) => {
                    writeln!(idx, "{rows},{},{},", csv(&path), csv(&label))?;
                    rows += 1;
                }
                Err(e) => {
                    bar.println(&escape_controls(&format!("zoo features: skipped {path}: {e}")));
                    writeln!(idx, ",{},{},{}", csv(&path), csv(&label), csv(e))?;
                    failed += 1;
                }
            }
        }
        data.flush()?;
        idx.flush()?;
        bar.set_position((rows + failed) as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    drop(data);
    let mut shape = vec![rows as i64];
    shape.extend(row_shape.unwrap_or_default());
    let metadata = serde_json::json!({
        "format": "zoo-features",
        "model": loaded.model.spec.name,
        "weights": loaded.source,
        "weights_sha256": loaded.sha256.clone().unwrap_or_default(),
        "layer": layer,
        "pool": format!("{pool:?}").to_lowercase(),
        "engine": format!("{:?}", runner.engine()).to_lowercase(),
        "preprocess": serde_json::to_string(&loaded.preprocess)?,
        "zoo": env!("CARGO_PKG_VERSION"),
    });
    drop(idx);
    finish(partial.path(), output, &shape, format, &metadata)?;
    crate::outfile::persist(index_tmp, &index)?;
    Ok(FeaturesSummary { rows, failed, shape, output: output.to_path_buf(), index })
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the header for `shape` and the streamed rows into `output`, atomically, with `meta`
/// (model, weights and their digest, layer, pooling, preprocessing) in the safetensors header,
/// or beside a `.npy` file as `NAME.meta.json` (NumPy's format has no place for it).
fn finish(partial: &Path, output: &Path, shape: &[i64], format: FeatureFormat, meta: &serde_json::Value) -> Result<()> {
    let (header, sidecar) = match format {
        FeatureFormat::Npy => {
            let path = output.with_extension("meta.json");
            let mut tmp = crate::outfile::beside(&path)?;
            tmp.write_all((serde_json::to_string_pretty(meta)? + "\n").as_bytes())?;
            (npy_header(shape), Some((tmp, path)))
        }
        FeatureFormat::Safetensors => (safetensors_header(shape, meta), None),
    };
    let tmp = crate::outfile::beside(output)?;
    {
        let mut out = BufWriter::new(tmp.as_file());
        out.write_all(&header)?;
        let mut src = File::open(partial)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    crate::outfile::persist(tmp, output)?;
    if let Some((tmp, path)) = sidecar {
        crate::outfile::persist(tmp, &path)?;
    }
    Ok(())
}

/// NumPy `.npy` version 1.0 header for a little-endian float32 C-order array.
fn npy_header(shape: &[i64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + dict + newline, padded to a multiple of 64.
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    dict.push_str(&" ".repeat(total - 10 - dict.len() - 1));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// safetensors header for one float32 tensor named `features`, with `meta` (string values) as
/// its `__metadata__`.
fn safetensors_header(shape: &[i64], meta: &serde_json::Value) -> Vec<u8> {
    let bytes: i64 = shape.iter().product::<i64>() * 4;
    let json = serde_json::json!({
        "features": {"dtype": "F32", "shape": shape, "data_offsets": [0, bytes]},
        "__metadata__": meta
    })
    .to_string();
    let mut json = json.into_bytes();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut h = (json.len() as u64).to_le_bytes().to_vec();
    h.extend_from_slice(&json);
    h
}
