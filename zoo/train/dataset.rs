//! Image-folder data sets (torchvision's `ImageFolder` layout) for training and evaluation.
//!
//! Two layouts are read: `DIR/train/<class>/*` with `DIR/val/<class>/*`, or one folder of class
//! subfolders `DIR/<class>/*` split into train and val per class (stratified), deterministically
//! from a seed. Class names are the sorted folder names; class `i` is output `i`. Files are found
//! recursively by extension ([`crate::data::inputs::IMAGE_EXTENSIONS`]) and sorted.
//!
//! Every problem that would otherwise surface hours into a run is found up front: each file's
//! header is read (in parallel) and files that cannot be read are listed and skipped, empty
//! class folders are skipped with a warning, fewer than two classes is an error, and a val split
//! lacking a class is a warning.
use crate::data::inputs;
use crate::data::inputs::IMAGE_EXTENSIONS;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::augment::Rng;

/// One labelled image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// Class index (into [`DataSet::classes`]).
    pub label: usize,
    /// `(width, height)` from the file's header.
    pub size: (u32, u32),
}

/// Where the train / val division came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// `DIR/train` and `DIR/val` folders.
    TrainVal,
    /// One folder of classes, split per class with this fraction and seed.
    Split { fraction: f64, seed: u64 },
    /// One folder of classes, all of it evaluated (`zoo eval`).
    Whole,
}

/// A scanned data set.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// Class names, sorted; index = label.
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub layout: Layout,
    /// Everything worth telling the user (already phrased), in the order found.
    pub warnings: Vec<String>,
    /// Files that could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl DataSet {
    /// Number of samples per class in `samples`.
    pub fn counts(&self, samples: &[Sample]) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for s in samples {
            c[s.label] += 1;
        }
        c
    }
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|x| x.to_str()).is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// Class folders of `dir` (sorted by name) with their image files (recursive, sorted).
/// Images lying directly in `dir` are reported in `warnings`.
pub fn scan_class_folders(dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<(String, Vec<PathBuf>)>> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder: expected an image folder (DIR/<class>/*.png or DIR/train/<class>/ + DIR/val/<class>/)",
            dir.display()
        );
    }
    let mut classes = Vec::new();
    let mut loose = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            // Non-regular files (FIFOs, devices) come along to be reported by `probe`.
            let (files, _unreadable) = inputs::walk_folder(&path, &is_image);
            classes.push((name, files));
        } else if is_image(&path) {
            loose += 1;
        }
    }
    if loose > 0 {
        warnings.push(format!(
            "{loose} image(s) lie directly in {} and are ignored: put each class in its own subfolder",
            dir.display()
        ));
    }
    Ok(classes)
}

/// Reads every file's header in parallel (JPEGs through libjpeg-turbo, as they are decoded):
/// `(width, height)` or why not.
pub fn probe(paths: &[PathBuf]) -> Vec<std::result::Result<(u32, u32), String>> {
    paths
        .par_iter()
        .map(|p| {
            inputs::check_regular(p)?;
            crate::data::image::dimensions(p).map_err(|e| format!("not a readable image: {e}"))
        })
        .collect()
}

/// Probes `(class, files)` lists into samples; unreadable files go to `skipped`.
fn to_samples(lists: &[(usize, Vec<PathBuf>)], skipped: &mut Vec<(PathBuf, String)>) -> Vec<Sample> {
    let flat: Vec<(usize, PathBuf)> =
        lists.iter().flat_map(|(c, fs)| fs.iter().map(move |f| (*c, f.clone()))).collect();
    let paths: Vec<PathBuf> = flat.iter().map(|(_, p)| p.clone()).collect();
    let mut out = Vec::with_capacity(flat.len());
    for ((label, path), r) in flat.into_iter().zip(probe(&paths)) {
        match r {
            Ok(size) => out.push(Sample { path, label, size }),
            Err(e) => skipped.push((path, e)),
        }
    }
    out
}

/// The warning that lists unreadable files (the first 20).
pub fn skipped_warning(skipped: &[(PathBuf, String)]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut s = format!("{} file(s) could not be read and are skipped:", skipped.len());
    for (p, e) in skipped.iter().take(20) {
        // One line each, whatever the file's name holds.
        s += &format!("\n  {}", crate::text::escape_controls(&format!("{}: {e}", p.display())));
    }
    if skipped.len() > 20 {
        s += &format!("\n  ... and {} more", skipped.len() - 20);
    }
    Some(s)
}

/// Removes classes left without a readable image, renumbering the labels.
fn drop_dead_classes(classes: &mut Vec<String>, samples: &mut [Sample], warnings: &mut Vec<String>) {
    let alive: Vec<bool> = (0..classes.len()).map(|c| samples.iter().any(|s| s.label == c)).collect();
    if alive.iter().all(|a| *a) {
        return;
    }
    let mut remap = vec![usize::MAX; classes.len()];
    let mut kept = Vec::new();
    for (c, name) in classes.iter().enumerate() {
        if alive[c] {
            remap[c] = kept.len();
            kept.push(name.clone());
        } else {
            warnings.push(format!("class {name} has no readable images: skipped"));
        }
    }
    samples.iter_mut().for_each(|s| s.label = remap[s.label]);
    *classes = kept;
}

fn need_two(classes: &[String], dir: &Path) -> Result<()> {
    if classes.len() < 2 {
        bail!(
            "{} has {} class folder(s) with readable images ({}): a classifier needs at least 2 classes. \
             Expected layout: DIR/<class>/*.png, or DIR/train/<class>/ and DIR/val/<class>/",
            dir.display(),
            classes.len(),
            if classes.is_empty() { "none".to_string() } else { classes.join(", ") }
        );
    }
    Ok(())
}

/// Reads a training data set from `dir` (see the module documentation): `val_split` is the
/// fraction of each class held out when `dir` has no `train`/`val` folders.
pub fn image_folder(dir: &Path, val_split: f64, seed: u64) -> Result<DataSet> {
    if !(0.0..1.0).contains(&val_split) {
        bail!("--val-split must be at least 0 and below 1, got {val_split}");
    }
    let mut warnings = Vec::new();
    let mut skipped = Vec::new();
    let (train_dir, val_dir) = (dir.join("train"), dir.join("val"));
    if train_dir.is_dir() {
        let train_lists = scan_class_folders(&train_dir, &mut warnings)?;
        let mut classes = Vec::new();
        let mut lists = Vec::new();
        for (name, files) in train_lists {
            if files.is_empty() {
                warnings.push(format!("class folder {} has no images: skipped", train_dir.join(&name).display()));
                continue;
            }
            lists.push((classes.len(), files));
            classes.push(name);
        }
        let mut train = to_samples(&lists, &mut skipped);
        drop_dead_classes(&mut classes, &mut train, &mut warnings);
        need_two(&classes, &train_dir)?;
        let (val, layout) = if val_dir.is_dir() {
            let mut val_lists = Vec::new();
            for (name, files) in scan_class_folders(&val_dir, &mut warnings)? {
                match classes.iter().position(|c| *c == name) {
                    Some(i) => val_lists.push((i, files)),
                    None if files.is_empty() => {}
                    None => warnings.push(format!(
                        "val class {name} is not a training class: its {} image(s) are ignored",
                        files.len()
                    )),
                }
            }
            (to_samples(&val_lists, &mut skipped), Layout::TrainVal)
        } else {
            warnings
                .push(format!("{} has no val folder: holding out {val_split} of each training class", dir.display()));
            let (t, v) = split(train, classes.len(), val_split, seed);
            train = t;
            (v, Layout::Split { fraction: val_split, seed })
        };
        let mut ds = DataSet { classes, train, val, layout, warnings, skipped };
        finish(&mut ds);
        return Ok(ds);
    }
    let lists = scan_class_folders(dir, &mut warnings)?;
    let mut classes = Vec::new();
    let mut numbered = Vec::new();
    for (name, files) in lists {
        if files.is_empty() {
            warnings.push(format!("class folder {} has no images: skipped", dir.join(&name).display()));
            continue;
        }
        numbered.push((classes.len(), files));
        classes.push(name);
    }
    need_two(&classes, dir)?;
    let mut all = to_samples(&numbered, &mut skipped);
    drop_dead_classes(&mut classes, &mut all, &mut warnings);
    need_two(&classes, dir)?;
    let (train, val) = split(all, classes.len(), val_split, seed);
    let mut ds =
        DataSet { classes, train, val, layout: Layout::Split { fraction: val_split, seed }, warnings, skipped };
    finish(&mut ds);
    Ok(ds)
}

/// Warnings common to both layouts: unreadable files, classes missing from val.
fn finish(ds: &mut DataSet) {
    if let Some(w) = skipped_warning(&ds.skipped) {
        ds.warnings.push(w);
    }
    let train_counts = ds.counts(&ds.train);
    for (i, n) in train_counts.iter().enumerate() {
        if *n == 0 {
            ds.warnings.push(format!("class {} has no training images left", ds.classes[i]));
        }
    }
    if ds.val.is_empty() {
        ds.warnings.push("the val split is empty: no validation metrics, best.safetensors = the last epoch".into());
        return;
    }
    let val_counts = ds.counts(&ds.val);
    let missing: Vec<&str> =
        ds.classes.iter().zip(&val_counts).filter(|(_, n)| **n == 0).map(|(c, _)| c.as_str()).collect();
    if !missing.is_empty() {
        ds.warnings.push(format!(
            "the val split has no images of class(es) {}: their accuracy is not measured",
            missing.join(", ")
        ));
    }
}

/// Stratified, deterministic split: per class, files in path order shuffled by a generator
/// seeded from `(seed, class)`, the first `round(n * fraction)` (at least 1 when the class has
/// 2 or more files and `fraction > 0`, never all of them) go to val.
pub fn split(samples: Vec<Sample>, classes: usize, fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut by_class: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
    for s in samples {
        by_class.entry(s.label).or_default().push(s);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let mut items = by_class.remove(&c).unwrap_or_default();
        items.sort_by(|a, b| a.path.cmp(&b.path));
        let n = items.len();
        let mut k = (n as f64 * fraction).round() as usize;
        if fraction > 0.0 && n >= 2 {
            k = k.clamp(1, n - 1);
        } else if n < 2 {
            k = 0;
        }
        let mut rng = Rng::for_sample(seed, u64::MAX, c as u64);
        rng.shuffle(&mut items);
        for (i, s) in items.into_iter().enumerate() {
            if i < k {
                val.push(s);
            } else {
                train.push(s);
            }
        }
    }
    let key = |s: &Sample| (s.label, s.path.clone());
    train.sort_by_key(key);
    val.sort_by_key(key);
    (train, val)
}

/// An evaluation set for a model whose outputs are `labels`: `dir/val` when it exists, else
/// `dir` itself, class folders matched to labels by name (exactly, then ignoring case, then as
/// ImageNet's WordNet-ID folders `n02123045/` for an ImageNet-1k model). With
/// generic labels (`class_N`) and as many folders as outputs, folders map in sorted order.
pub fn eval_folder(dir: &Path, labels: &[String]) -> Result<DataSet> {
    let mut warnings = Vec::new();
    let mut skipped = Vec::new();
    let root = if dir.join("val").is_dir() { dir.join("val") } else { dir.to_path_buf() };
    let lists: Vec<(String, Vec<PathBuf>)> =
        scan_class_folders(&root, &mut warnings)?.into_iter().filter(|(_, f)| !f.is_empty()).collect();
    if lists.is_empty() {
        bail!("{} has no class folders with images (expected {}/<class>/*.png)", root.display(), root.display());
    }
    let generic = labels.iter().enumerate().all(|(i, l)| *l == format!("class_{i}"));
    let mut numbered = Vec::new();
    let mut unknown = Vec::new();
    for (i, (name, files)) in lists.iter().enumerate() {
        let found = labels
            .iter()
            .position(|l| l == name)
            .or_else(|| labels.iter().position(|l| l.eq_ignore_ascii_case(name)))
            .or_else(|| crate::weights::categories::imagenet_class_of_synset(labels, name))
            .or_else(|| (generic && lists.len() == labels.len()).then_some(i));
        match found {
            Some(label) => numbered.push((label, files.clone())),
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = labels.iter().take(12).map(String::as_str).collect();
        bail!(
            "folder(s) {} of {} match no class of the model (its classes: {}{})",
            unknown.join(", "),
            root.display(),
            shown.join(", "),
            if labels.len() > 12 { ", ..." } else { "" }
        );
    }
    let val = to_samples(&numbered, &mut skipped);
    let mut ds = DataSet { classes: labels.to_vec(), train: Vec::new(), val, layout: Layout::Whole, warnings, skipped };
    if let Some(w) = skipped_warning(&ds.skipped) {
        ds.warnings.push(w);
    }
    Ok(ds)
}
