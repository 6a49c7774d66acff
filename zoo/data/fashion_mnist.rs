//! MNIST-style IDX files (Fashion-MNIST, MNIST), gzip-compressed or not, and their export to
//! an image-folder tree of PNGs that `zoo train` reads.
//!
//! IDX: a big-endian header `0x00 0x00 TYPE NDIM`, then `NDIM` u32 dimensions, then the data;
//! images are `0x08` (u8) with 3 dimensions (count, rows, columns), labels `0x08` with one.
//! Debian's `dataset-fashion-mnist` installs them under `/usr/share/datasets/fashion-mnist/`.
use anyhow::{bail, ensure, Context, Result};
use image::GrayImage;
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Fashion-MNIST's class names, folder-safe, in label order.
pub const FASHION_CLASSES: [&str; 10] =
    ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"];

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A stack of same-sized 8-bit images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` bytes, image after image, row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Image `i` as a grayscale image.
    pub fn image(&self, i: usize) -> GrayImage {
        let n = self.rows * self.cols;
        GrayImage::from_raw(self.cols as u32, self.rows as u32, self.pixels[i * n..(i + 1) * n].to_vec())
            .expect("buffer size matches")
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header: the dimensions and where the data starts.
fn parse_header(bytes: &[u8], what: &str) -> Result<(Vec<usize>, usize)> {
    ensure!(bytes.len() >= 4, "{what}: too short for an IDX file");
    ensure!(bytes[0] == 0 && bytes[1] == 0, "{what}: not an IDX file (bad magic {:02x}{:02x})", bytes[0], bytes[1]);
    ensure!(bytes[2] == 0x08, "{what}: IDX data type 0x{:02x}, only unsigned bytes (0x08) are supported", bytes[2]);
    let ndim = bytes[3] as usize;
    let start = 4 + 4 * ndim;
    ensure!(bytes.len() >= start, "{what}: truncated IDX header");
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let need = dims.iter().product::<usize>();
    ensure!(
        bytes.len() - start == need,
        "{what}: dimensions {dims:?} need {need} bytes of data, the file has {}",
        bytes.len() - start
    );
    Ok((dims, start))
}

/// Reads an `idx3-ubyte` image file (`.gz` or not).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_gz(path)?;
    let what = path.display().to_string();
    let (dims, start) = parse_header(&bytes, &what)?;
    ensure!(dims.len() == 3, "{what}: an image file has 3 dimensions, this one {}", dims.len());
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes[start..].to_vec() })
}

/// Reads an `idx1-ubyte` label file (`.gz` or not).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let what = path.display().to_string();
    let (dims, start) = parse_header(&bytes, &what)?;
    ensure!(dims.len() == 1, "{what}: a label file has 1 dimension, this one {}", dims.len());
    Ok(bytes[start..].to_vec())
}

/// Class names for `--classes`: `fashion`, `digits`, a comma-separated list, or a file with
/// one name per line.
pub fn class_names(spec: &str) -> Result<Vec<String>> {
    let names: Vec<String> = match spec {
        "fashion" | "fashion-mnist" | "fashion_mnist" => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        "digits" | "mnist" => (0..10).map(|d| d.to_string()).collect(),
        s if Path::new(s).is_file() => {
            std::fs::read_to_string(s)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
        }
        s => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
    };
    for n in &names {
        if n.contains(['/', '\\']) || n == "." || n == ".." {
            bail!("class name '{n}' cannot be a folder name");
        }
    }
    Ok(names)
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    /// Images written per class.
    pub per_class: Vec<usize>,
}

/// Writes `images` as `dir/<class>/<index>.png` (index = position in the file, 5 digits), the
/// first `limit_per_class` of each class when given. Existing files are overwritten.
pub fn export(
    images: &IdxImages,
    labels: &[u8],
    classes: &[String],
    dir: &Path,
    limit_per_class: Option<usize>,
) -> Result<ExportSummary> {
    ensure!(
        images.count == labels.len(),
        "{} images but {} labels: the files do not belong together",
        images.count,
        labels.len()
    );
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes.len()) {
        bail!("label {bad} found but only {} class names given", classes.len());
    }
    let mut per_class = vec![0usize; classes.len()];
    let mut chosen = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if limit_per_class.is_none_or(|n| per_class[l] < n) {
            per_class[l] += 1;
            chosen.push(i);
        }
    }
    for c in classes {
        std::fs::create_dir_all(dir.join(c)).with_context(|| format!("creating {}", dir.join(c).display()))?;
    }
    chosen.par_iter().try_for_each(|&i| -> Result<()> {
        let path = dir.join(&classes[labels[i] as usize]).join(format!("{i:05}.png"));
        images.image(i).save(&path).with_context(|| format!("writing {}", path.display()))
    })?;
    Ok(ExportSummary { dir: dir.to_path_buf(), per_class })
}
