//! Image decoding and preprocessing against the Python side: torchvision's eval transform on
//! `PIL.Image.open(p).convert("RGB")` for the photos of `assets/photos` and for JPEGs of every
//! kind generated from them, PIL's conversions for small images in every mode, and typed errors
//! (never panics) for bad files.
//!
//! References come from `tests/py/preprocess_reference.py`, run with `ZOO_PYTHON` (else
//! `.venv/bin/python`), into `target/test-fixtures/images/`.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use image::RgbImage;
use zoo::data::image::{
    from_bytes, load_luma, load_luma_with, load_rgb, load_rgb_with, DecodeLimits, DecodeOptions, ImageErrorKind,
    PIL_MAX_IMAGE_PIXELS,
};
use zoo::data::preprocess::{ChannelOrder, Interpolation, Preprocess};

// ------------------------------------------------------------------------------------ helpers

fn photos() -> Vec<PathBuf> {
    let dir = common::root().join("assets/photos");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg" | "jpeg")))
        .collect();
    v.sort();
    assert!(v.len() >= 5, "expected at least 5 photos in {}, found {v:?}", dir.display());
    v
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// (mean |a-b|, max |a-b|) over two equally long slices.
fn diff<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let mut sum = 0.0;
    let mut max = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        let d = (x.into() - y.into()).abs();
        sum += d;
        max = max.max(d);
    }
    (sum / a.len().max(1) as f64, max)
}

fn spec(resize: u32, crop: [u32; 2], interpolation: Interpolation) -> Preprocess {
    Preprocess { resize, crop, interpolation, ..Preprocess::imagenet(resize, crop[0]) }
}

/// The preprocess specs compared with torchvision, with a label each.
fn parity_specs() -> Vec<(&'static str, Preprocess)> {
    vec![
        ("imagenet 256/224 bilinear", Preprocess::imagenet(256, 224)),
        ("inception 342/299 bilinear", Preprocess::imagenet(342, 299)),
        ("256/224 bicubic", spec(256, [224, 224], Interpolation::Bicubic)),
        ("256/224 nearest", spec(256, [224, 224], Interpolation::Nearest)),
        (
            "BGR 0-255 (BN-Inception) 256/224",
            Preprocess {
                mean: [104.0, 117.0, 128.0],
                std: [1.0, 1.0, 1.0],
                channel_order: ChannelOrder::Bgr,
                value_range: 255.0,
                ..Preprocess::imagenet(256, 224)
            },
        ),
        (
            "luma 36/32 (LeNet-like)",
            Preprocess {
                mean: [0.5, 0.5, 0.5],
                std: [0.25, 0.25, 0.25],
                channels: 1,
                ..spec(36, [32, 32], Interpolation::Bilinear)
            },
        ),
        // The crop is taller than the resized image: torchvision pads with black.
        ("160/[208,176] padded bilinear", spec(160, [208, 176], Interpolation::Bilinear)),
        ("160/[176,256] padded bicubic", spec(160, [176, 256], Interpolation::Bicubic)),
    ]
}

fn spec_json(p: &Preprocess) -> serde_json::Value {
    serde_json::to_value(p).unwrap()
}

/// An emptied fixture folder `images/NAME` holding `specs.json` (the specs for the reference).
fn fresh_reference_dir(name: &str, specs: &[(&str, Preprocess)]) -> (PathBuf, PathBuf) {
    let dir = common::fixtures("images").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let specs: Vec<_> = specs.iter().map(|(_, p)| spec_json(p)).collect();
    let spec_file = dir.join("specs.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&specs).unwrap()).unwrap();
    (dir, spec_file)
}

/// Runs the torchvision reference once per test process.
fn torchvision_reference() -> &'static (PathBuf, Vec<PathBuf>) {
    static REF: OnceLock<(PathBuf, Vec<PathBuf>)> = OnceLock::new();
    REF.get_or_init(|| {
        let (dir, spec_file) = fresh_reference_dir("torchvision", &parity_specs());
        let photos = photos();
        let mut args = vec!["preprocess", "--specs", spec_file.to_str().unwrap(), "--out", dir.to_str().unwrap()];
        args.extend(photos.iter().map(|p| p.to_str().unwrap()));
        common::run_python("preprocess_reference.py", &args);
        (dir, photos)
    })
}

/// Runs the PIL fixture generator once per test process.
fn pil_fixtures() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::fixtures("images").join("pil");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        common::run_python("preprocess_reference.py", &["fixtures", "--out", dir.to_str().unwrap()]);
        dir
    })
}

// ------------------------------------------------------------------------------------ parity

#[test]
fn preprocess_matches_torchvision_on_photos() {
    let (dir, photos) = torchvision_reference();
    let manifest = json(&dir.join("manifest.json"));
    let specs = parity_specs();
    let limits = DecodeLimits::default();
    let images: Vec<RgbImage> = photos.iter().map(|p| load_rgb(p, &limits).unwrap()).collect();
    let mut worst_mean = 0.0f64;
    let mut failures = Vec::new();
    eprintln!("{:<36} {:<20} {:>10} {:>10}", "spec", "photo", "mean|d|", "max|d|");
    for (k, (label, pre)) in specs.iter().enumerate() {
        for (i, (img, path)) in images.iter().zip(photos.iter()).enumerate() {
            let entry = manifest
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["spec"] == k && e["image"] == path.to_str().unwrap())
                .unwrap_or_else(|| panic!("no reference for spec {k} image {i}"));
            let shape: Vec<usize> =
                entry["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(shape, pre.output_shape().to_vec(), "{label}: shape differs from torchvision's");
            let want = read_f32(&dir.join(entry["file"].as_str().unwrap()));
            let got = pre.apply(img).unwrap();
            let (mean, max) = diff(&got, &want);
            let name = path.file_name().unwrap().to_string_lossy();
            eprintln!("{label:<36} {name:<20} {mean:>10.6} {max:>10.6}");
            // The tolerances are in the units of a 0-1 spec: a 0-255 spec's values are 255x.
            let unit = f64::from(pre.value_range);
            worst_mean = worst_mean.max(mean / unit);
            if mean > 0.02 * unit {
                failures.push(format!("{label} / {name}: mean |zoo - torchvision| = {mean} > {}", 0.02 * unit));
            }
            // One 8-bit level, in output units.
            let level = pre
                .std
                .iter()
                .take(pre.channels as usize)
                .map(|s| unit / 255.0 / f64::from(*s).abs())
                .fold(0.0, f64::max);
            // PNG and JPEG pixels are the same in both pipelines (JPEG: libjpeg-turbo on both
            // sides), and the resampling is PIL's own integer arithmetic: identical output.
            if max > 1e-6 * unit {
                failures.push(format!(
                    "{label} / {name}: max |zoo - torchvision| = {max} ({:.1} levels), expected identical output",
                    max / level
                ));
            }
        }
    }
    eprintln!("worst mean |zoo - torchvision| = {worst_mean:.6}");
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[test]
fn batch_and_tensor_agree_with_apply() {
    let photos = photos();
    let limits = DecodeLimits::default();
    let images: Vec<RgbImage> = photos.iter().map(|p| load_rgb(p, &limits).unwrap()).collect();
    let pre = Preprocess::imagenet(256, 224);
    let batch = pre.batch(&images).unwrap();
    assert_eq!(batch.size(), vec![images.len() as i64, 3, 224, 224]);
    for (i, img) in images.iter().enumerate() {
        let want = pre.apply(img).unwrap();
        let row: Vec<f32> = Vec::try_from(batch.get(i as i64).flatten(0, -1)).unwrap();
        assert_eq!(row, want, "batch row {i} differs from apply()");
        let single = pre.to_tensor(img).unwrap();
        assert_eq!(single.size(), vec![1, 3, 224, 224]);
        let single: Vec<f32> = Vec::try_from(single.flatten(0, -1)).unwrap();
        assert_eq!(single, want, "to_tensor differs from apply()");
    }
    // The 8-bit crop is what apply() normalises.
    let crop = pre.resize_crop_to_rgb8(&images[0]).unwrap();
    assert_eq!(crop.dimensions(), (224, 224));
    let v = pre.apply(&images[0]).unwrap();
    let p = crop.get_pixel(10, 20);
    let expect = (p[1] as f32 / 255.0 - pre.mean[1]) / pre.std[1];
    assert_eq!(v[224 * 224 + 20 * 224 + 10], expect);
}

#[test]
fn load_batch_reports_bad_files_and_keeps_good_ones() {
    let dir = common::fixtures("images").join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let mut paths = photos();
    paths.insert(1, empty.clone());
    paths.push(dir.join("missing.png"));
    let pre = Preprocess::imagenet(256, 224);
    let t0 = Instant::now();
    let out = pre.load_batch(&paths, &DecodeLimits::default()).unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    eprintln!("load_batch: {} files (decode + preprocess) in {ms:.1} ms", paths.len());
    let n = paths.len();
    assert_eq!(out.loaded, (0..n - 1).filter(|&i| i != 1).collect::<Vec<_>>());
    assert_eq!(out.tensor.size(), vec![(n - 2) as i64, 3, 224, 224]);
    assert_eq!(out.errors.len(), 2);
    assert_eq!(out.errors[0].0, 1);
    assert!(out.errors[0].1.to_string().contains("empty file"), "{}", out.errors[0].1);
    assert!(out.errors[1].1.to_string().contains("missing.png"), "{}", out.errors[1].1);
    // Row 0 is the first photo, identical to the one-image path.
    let first = pre.apply(&load_rgb(&paths[0], &DecodeLimits::default()).unwrap()).unwrap();
    let row: Vec<f32> = Vec::try_from(out.tensor.get(0).flatten(0, -1)).unwrap();
    assert_eq!(row, first);
}

// ------------------------------------------------------------------------------------ geometry

#[test]
fn resized_size_follows_torchvision() {
    // int(r * long / short), truncated; the shorter side gets exactly r.
    let pre = Preprocess::imagenet(256, 224);
    assert_eq!(pre.resized_size(451, 300), (384, 256)); // 384.85
    assert_eq!(pre.resized_size(300, 451), (256, 384));
    assert_eq!(pre.resized_size(512, 512), (256, 256));
    assert_eq!(pre.resized_size(1, 1000), (256, 256000));
    let inc = Preprocess::imagenet(342, 299);
    assert_eq!(inc.resized_size(640, 427), (512, 342)); // 512.59
    assert_eq!(inc.resized_size(600, 400), (513, 342)); // exactly 513.0
                                                        // 3 * 7 / 3 is exactly 7 in floating point too.
    let small = spec(3, [3, 3], Interpolation::Bilinear);
    assert_eq!(small.resized_size(7, 3), (7, 3));
}

#[test]
fn center_crop_rounds_half_to_even_like_python() {
    // Red = x: with no resampling (the short side already equals `resize`), the first output
    // column tells the crop's left edge. (w - 224) / 2 = 16.5 -> 16, 17.5 -> 18, 16 -> 16.
    for (w, left) in [(257u32, 16u8), (259, 18), (256, 16)] {
        let img = RgbImage::from_fn(w, 224, |x, y| image::Rgb([x as u8, y as u8, 7]));
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Nearest] {
            let pre = spec(224, [224, 224], interp);
            let out = pre.resize_crop_to_rgb8(&img).unwrap();
            assert_eq!(out.get_pixel(0, 0)[0], left, "width {w} {interp:?}");
            assert_eq!(out.get_pixel(223, 5)[0], left + 223, "width {w} {interp:?}");
            assert_eq!(out.get_pixel(3, 5)[1], 5, "no vertical shift");
        }
    }
}

#[test]
fn crop_larger_than_image_pads_with_black() {
    // 40x20 -> Resize(20) keeps it; CenterCrop(30x50) pads (50-40)//2 = 5 left, (30-20)//2 = 5 top.
    let img = RgbImage::from_pixel(40, 20, image::Rgb([200, 100, 50]));
    let pre = spec(20, [30, 50], Interpolation::Bilinear);
    let out = pre.resize_crop_to_rgb8(&img).unwrap();
    assert_eq!(out.dimensions(), (50, 30));
    assert_eq!(out.get_pixel(4, 15).0, [0, 0, 0]);
    assert_eq!(out.get_pixel(5, 5).0, [200, 100, 50]);
    assert_eq!(out.get_pixel(44, 24).0, [200, 100, 50]);
    assert_eq!(out.get_pixel(45, 24).0, [0, 0, 0]);
    assert_eq!(out.get_pixel(20, 25).0, [0, 0, 0]);
    assert_eq!(out.get_pixel(20, 4).0, [0, 0, 0]);
}

#[test]
fn invalid_specs_are_rejected() {
    let img = RgbImage::new(8, 8);
    let bad = [
        Preprocess { channels: 2, ..Preprocess::default() },
        Preprocess { resize: 0, ..Preprocess::default() },
        Preprocess { crop: [0, 224], ..Preprocess::default() },
        Preprocess { std: [0.2, 0.0, 0.2], ..Preprocess::default() },
        Preprocess { value_range: f32::NAN, ..Preprocess::default() },
    ];
    for pre in bad {
        assert!(pre.apply(&img).is_err(), "{pre:?} should be rejected");
    }
    assert!(Preprocess::default().apply(&RgbImage::new(0, 0)).is_err(), "empty image");
}

// ------------------------------------------------------------------------------------ decoding

#[test]
fn conversions_match_pil() {
    let dir = pil_fixtures();
    let cases = json(&dir.join("fixtures.json"));
    let limits = DecodeLimits::default();
    let mut failures = Vec::new();
    let mut seen_modes = std::collections::BTreeSet::new();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let file = dir.join(case["file"].as_str().unwrap());
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        seen_modes.insert(format!("{} {}", case["pil_format"].as_str().unwrap(), case["pil_mode"].as_str().unwrap()));
        // Lossy WebP: image-webp's and libwebp's chroma upsampling legitimately differ. A wrong
        // orientation, channel order or conversion is off by far more than these bounds on the
        // noisy test pattern. JPEG is not lossy here: libjpeg-turbo on both sides.
        let (max_mean, max_abs) = if case["lossy"].is_null() { (0.0, 0.0) } else { (0.5, 4.0) };
        let rgb = match load_rgb(&file, &limits) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if rgb.dimensions() != (w, h) {
            failures.push(format!("{name}: size {:?}, PIL {:?}", rgb.dimensions(), (w, h)));
            continue;
        }
        let want = std::fs::read(dir.join(format!("{name}.rgb"))).unwrap();
        let (mean, max) = diff(rgb.as_raw(), &want);
        eprintln!("{name:<24} RGB mean {mean:.4} max {max:.0}");
        if mean > max_mean || max > max_abs {
            failures
                .push(format!("{name}: RGB differs from PIL: mean {mean:.4} max {max} (allowed {max_mean}/{max_abs})"));
        }
        let luma = load_luma(&file, &limits).unwrap();
        let want = std::fs::read(dir.join(format!("{name}.l"))).unwrap();
        let (mean, max) = diff(luma.as_raw(), &want);
        if mean > max_mean || max > max_abs {
            failures
                .push(format!("{name}: L differs from PIL: mean {mean:.4} max {max} (allowed {max_mean}/{max_abs})"));
        }
        // In-memory decoding is the same decoder.
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(from_bytes(&bytes, &limits).unwrap(), rgb, "{name}: from_bytes differs from load_rgb");
    }
    eprintln!("PIL formats and modes covered: {seen_modes:?}");
    for needed in
        ["PNG L", "PNG LA", "PNG P", "PNG RGBA", "PNG I;16", "JPEG CMYK", "GIF P", "TIFF RGB", "WEBP RGB", "BMP RGB"]
    {
        assert!(seen_modes.contains(needed), "fixtures lack {needed}");
    }
    assert!(failures.is_empty(), "conversions differ from PIL:\n{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------------ JPEG

/// The specs compared on the generated JPEGs (two resamplings, two sizes).
fn jpeg_specs() -> Vec<(&'static str, Preprocess)> {
    vec![
        ("imagenet 256/224 bilinear", Preprocess::imagenet(256, 224)),
        ("342/299 bicubic", spec(342, [299, 299], Interpolation::Bicubic)),
    ]
}

/// The resize target the fast-decode test drafts for.
const DRAFT_SIDE: u32 = 256;

/// Kinds PIL cannot write, made with libjpeg-turbo's encoder (the `turbojpeg` crate) from
/// chelsea.png: YCCK, arithmetic coding, 4:4:0 and 4:1:1 subsampling.
fn turbojpeg_made(dir: &Path) -> Vec<PathBuf> {
    use turbojpeg::{Colorspace, Compressor, Image, PixelFormat, Subsamp};
    let rgb = load_rgb(&common::root().join("assets/photos/chelsea.png"), &DecodeLimits::default()).unwrap();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    // Any CMYK will do: the reference is what PIL makes of the file.
    let cmyk: Vec<u8> = rgb
        .pixels()
        .flat_map(|p| {
            let k = 255 - p[0].max(p[1]).max(p[2]);
            [255 - p[0] - k / 2, 255 - p[1] - k / 2, 255 - p[2] - k / 2, k]
        })
        .collect();
    let write = |name: &str, pixels: &[u8], format: PixelFormat, setup: &dyn Fn(&mut Compressor)| {
        let mut c = Compressor::new().unwrap();
        c.set_quality(90).unwrap();
        setup(&mut c);
        let image = Image { pixels, width: w, pitch: w * format.size(), height: h, format };
        let path = dir.join(name);
        std::fs::write(&path, c.compress_to_vec(image).unwrap()).unwrap();
        path
    };
    vec![
        write("tj_ycck_420_q90.jpg", &cmyk, PixelFormat::CMYK, &|c| {
            c.set_colorspace(Colorspace::YCCK).unwrap();
            c.set_subsamp(Subsamp::Sub2x2).unwrap();
        }),
        write("tj_arithmetic_420_q90.jpg", rgb.as_raw(), PixelFormat::RGB, &|c| {
            c.set_subsamp(Subsamp::Sub2x2).unwrap();
            c.set_arithmetic(true).unwrap();
        }),
        write("tj_440_q90.jpg", rgb.as_raw(), PixelFormat::RGB, &|c| c.set_subsamp(Subsamp::Sub1x2).unwrap()),
        write("tj_411_q90.jpg", rgb.as_raw(), PixelFormat::RGB, &|c| c.set_subsamp(Subsamp::Sub4x1).unwrap()),
    ]
}

/// Generates the JPEGs and PIL's / torchvision's view of them once per test process.
fn jpeg_reference() -> &'static (PathBuf, Vec<serde_json::Value>) {
    static REF: OnceLock<(PathBuf, Vec<serde_json::Value>)> = OnceLock::new();
    REF.get_or_init(|| {
        let (dir, spec_file) = fresh_reference_dir("jpegs", &jpeg_specs());
        let extra = turbojpeg_made(&dir);
        let photos = ["chelsea.png", "coffee.png"].map(|p| common::root().join("assets/photos").join(p));
        let draft = DRAFT_SIDE.to_string();
        let mut args = vec!["jpegs", "--specs", spec_file.to_str().unwrap(), "--out", dir.to_str().unwrap()];
        args.extend(["--draft", &draft]);
        args.push("--extra");
        args.extend(extra.iter().map(|p| p.to_str().unwrap()));
        args.push("--");
        args.extend(photos.iter().map(|p| p.to_str().unwrap()));
        common::run_python("preprocess_reference.py", &args);
        let cases = json(&dir.join("jpegs.json")).as_array().unwrap().clone();
        (dir, cases)
    })
}

/// How many bytes differ, and the largest difference.
fn byte_diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).filter(|(x, y)| x != y).fold((0, 0), |(n, m), (x, y)| (n + 1, m.max(x.abs_diff(*y))))
}

#[test]
fn jpegs_decode_and_preprocess_exactly_as_pil_and_torchvision() {
    let (dir, cases) = jpeg_reference();
    let specs = jpeg_specs();
    let limits = DecodeLimits::default();
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    eprintln!("{:<36} {:<52} {:>9} {:>9}", "file", "kind", "RGB diff", "max|d|");
    for case in cases {
        let name = case["file"].as_str().unwrap();
        let what = case["what"].as_str().unwrap();
        kinds.insert(format!("{} {}", case["pil_mode"].as_str().unwrap(), case["progressive"]));
        let path = dir.join(name);
        let rgb = match load_rgb(&path, &limits) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{name} ({what}): {e}"));
                continue;
            }
        };
        let size: Vec<u32> = case["size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        if rgb.dimensions() != (size[0], size[1]) {
            failures.push(format!("{name}: size {:?}, PIL {size:?}", rgb.dimensions()));
            continue;
        }
        let (n_rgb, max_rgb) = byte_diff(rgb.as_raw(), &std::fs::read(dir.join(format!("{name}.rgb"))).unwrap());
        if n_rgb > 0 {
            failures.push(format!("{name} ({what}): {n_rgb} RGB samples differ from PIL's, by up to {max_rgb}"));
        }
        let luma = load_luma(&path, &limits).unwrap();
        let (n_l, max_l) = byte_diff(luma.as_raw(), &std::fs::read(dir.join(format!("{name}.l"))).unwrap());
        if n_l > 0 {
            failures.push(format!("{name} ({what}): {n_l} L samples differ from PIL's, by up to {max_l}"));
        }
        let mut worst = 0.0f64;
        for t in case["tensors"].as_array().unwrap() {
            let (label, pre) = &specs[t["spec"].as_u64().unwrap() as usize];
            let want = read_f32(&dir.join(t["file"].as_str().unwrap()));
            let (_, max) = diff(&pre.apply(&rgb).unwrap(), &want);
            worst = worst.max(max);
            if max > 1e-6 {
                failures.push(format!("{name} ({what}) / {label}: max |zoo - torchvision| = {max}"));
            }
        }
        eprintln!("{name:<36} {what:<52} {n_rgb:>9} {worst:>9.2e}");
    }
    eprintln!("{} JPEGs; PIL modes and progressive: {kinds:?}", cases.len());
    assert!(cases.len() >= 50, "expected the full set of generated JPEGs, got {}", cases.len());
    for needed in ["L false", "L true", "RGB false", "RGB true", "CMYK false"] {
        assert!(kinds.contains(needed), "no JPEG of kind {needed}");
    }
    assert!(failures.is_empty(), "JPEGs differ from PIL + torchvision:\n{}", failures.join("\n"));
}

#[test]
fn fast_decode_is_pils_draft() {
    let (dir, cases) = jpeg_reference();
    let opts = DecodeOptions { draft: Some(DRAFT_SIDE), ..DecodeOptions::default() };
    let mut scaled = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["file"].as_str().unwrap();
        let size: Vec<u32> =
            case["draft_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let full = case["size"].as_array().unwrap()[0].as_u64().unwrap() as u32;
        let img = load_rgb_with(&dir.join(name), &opts).unwrap();
        if img.dimensions() != (size[0], size[1]) {
            failures.push(format!("{name}: drafted to {:?}, PIL {size:?}", img.dimensions()));
            continue;
        }
        scaled.insert(full.div_ceil(size[0]));
        // The same library's scaled IDCT on both sides: PIL's pixels exactly.
        let (n, max) = byte_diff(img.as_raw(), &std::fs::read(dir.join(format!("{name}.draft.rgb"))).unwrap());
        if n > 0 {
            failures.push(format!("{name}: {n} samples differ from PIL's draft(), by up to {max}"));
        }
        // Luma drafts the same way.
        let luma = load_luma_with(&dir.join(name), &opts).unwrap();
        assert_eq!(luma.dimensions(), img.dimensions(), "{name}: luma draft size");
    }
    eprintln!("draft scales exercised: {scaled:?}");
    assert_eq!(scaled, [1, 2, 4, 8].into(), "every DCT scale should be exercised");
    assert!(failures.is_empty(), "fast decode differs from PIL's draft():\n{}", failures.join("\n"));
}

#[test]
fn jpeg_memory_cap_covers_libjpegs_own_buffers() {
    let (dir, _) = jpeg_reference();
    // 2400x1600 progressive 4:4:4: 11.5 MB of RGB, and libjpeg keeps 23 MB of DCT coefficients.
    let path = dir.join("coffee_x4_444_q85_progressive.jpg");
    let cap = |mib: u64| DecodeLimits { max_pixels: None, max_alloc: Some(mib << 20) };
    let err = load_rgb(&path, &cap(8)).expect_err("the output alone is over 8 MiB");
    eprintln!("8 MiB: {err}");
    assert!(matches!(err.kind(), ImageErrorKind::MemoryLimit { .. }), "{err:?}");
    let err = load_rgb(&path, &cap(20)).expect_err("the coefficients do not fit in what is left of 20 MiB");
    eprintln!("20 MiB: {err}");
    assert!(matches!(err.kind(), ImageErrorKind::MemoryLimit { .. }), "{err:?}");
    assert!(err.to_string().contains("coefficient"), "{err}");
    assert_eq!(load_rgb(&path, &cap(48)).unwrap().dimensions(), (2400, 1600));
    // The same image as a baseline JPEG streams through small buffers: 20 MiB is enough.
    let baseline = dir.join("coffee_x4_420_q90.jpg");
    assert_eq!(load_rgb(&baseline, &cap(20)).unwrap().dimensions(), (2400, 1600));
}

// ------------------------------------------------------------------------------------ bad input

/// A PNG of the given IHDR size with one tiny IDAT (what a decompression bomb looks like).
fn png_with_size(width: u32, height: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes (stored block).
    chunk(&mut png, b"IDAT", &[0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn bad_inputs_give_typed_errors() {
    let dir = common::fixtures("images").join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let limits = DecodeLimits::default();
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let jpeg = std::fs::read(common::root().join("assets/photos/rocket.jpg")).unwrap();
    let png = std::fs::read(common::root().join("assets/photos/chelsea.png")).unwrap();

    let check = |path: &Path, what: &str, ok: &dyn Fn(&ImageErrorKind) -> bool| {
        let t0 = Instant::now();
        let err = load_rgb(path, &limits).expect_err(what);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!("{what}: {err} ({ms:.1} ms)");
        assert!(ok(err.kind()), "{what}: unexpected error kind {:?}", err.kind());
        let msg = err.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{what}: message lacks the path: {msg}");
        // Luma decoding shares the checks.
        let err = load_luma(path, &limits).expect_err(what);
        assert!(ok(err.kind()), "{what} (luma): unexpected error kind {:?}", err.kind());
        ms
    };

    check(&write("empty.jpg", b""), "empty file", &|k| matches!(k, ImageErrorKind::Empty));
    check(
        &write("text.jpg", b"hello, this is not a JPEG\n"),
        "text named .jpg",
        &|k| matches!(k, ImageErrorKind::UnknownFormat { hint } if hint.contains("text")),
    );
    check(
        &write("page.png", b"<!DOCTYPE html><html><body>404</body></html>"),
        "HTML named .png",
        &|k| matches!(k, ImageErrorKind::UnknownFormat { hint } if hint.contains("HTML")),
    );
    check(&write("half.jpg", &jpeg[..jpeg.len() / 2]), "JPEG cut in half", &|k| {
        matches!(k, ImageErrorKind::Truncated { format: "JPEG", .. })
    });
    check(&write("no_eoi.jpg", &jpeg[..jpeg.len() - 2]), "JPEG without its last 2 bytes (PIL refuses it)", &|k| {
        matches!(k, ImageErrorKind::Truncated { format: "JPEG", .. })
    });
    check(&write("header_only.jpg", &jpeg[..600]), "JPEG cut in its headers", &|k| {
        matches!(k, ImageErrorKind::Truncated { format: "JPEG", .. })
    });
    check(&write("half.png", &png[..png.len() / 2]), "PNG cut in half", &|k| {
        matches!(k, ImageErrorKind::Truncated { format: "PNG", .. })
    });
    check(&write("head.png", &png[..40]), "PNG cut after its header", &|k| {
        matches!(k, ImageErrorKind::Truncated { format: "PNG", .. })
    });
    let mut corrupt = png.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0x5A;
    }
    check(&write("corrupt.png", &corrupt), "PNG with damaged data", &|k| {
        matches!(k, ImageErrorKind::Corrupt { format: "PNG", .. })
    });
    // Refused from the header: the error is TooManyPixels with the header's figures (a decode
    // would need 30 GB). No wall-clock bound: the time is printed, and varies with the machine.
    check(&write("bomb.png", &png_with_size(100_000, 100_000)), "PNG claiming 100000x100000", &|k| {
        matches!(
            k,
            ImageErrorKind::TooManyPixels { width: 100_000, height: 100_000, pixels: 10_000_000_000, limit, .. }
                if *limit == PIL_MAX_IMAGE_PIXELS
        )
    });
    // A JPEG whose frame header claims 65500x65500 (4.3 G pixels).
    let mut big = jpeg.clone();
    let sof = big.windows(2).position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2]).expect("SOF marker");
    big[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
    check(&write("bomb.jpg", &big), "JPEG claiming 65500x65500", &|k| {
        matches!(k, ImageErrorKind::TooManyPixels { format: "JPEG", width: 65500, height: 65500, .. })
    });
    check(
        &write("image.qoi", b"qoif\x00\x00\x00\x10\x00\x00\x00\x10\x03\x00rest"),
        "QOI (not built in)",
        &|k| matches!(k, ImageErrorKind::UnsupportedFormat { format } if format == "QOI"),
    );
    check(&dir.join("does-not-exist.jpg"), "missing file", &|k| matches!(k, ImageErrorKind::Io(_)));
    check(&dir, "a directory", &|k| matches!(k, ImageErrorKind::Io(_)));

    // Without a pixel limit, the memory limit still stops the bomb before any allocation.
    let memory = DecodeLimits { max_pixels: None, max_alloc: Some(64 << 20) };
    let err = from_bytes(&png_with_size(100_000, 100_000), &memory).expect_err("memory limit");
    assert!(matches!(err.kind(), ImageErrorKind::MemoryLimit { limit, .. } if *limit == 64 << 20), "{err:?}");
    // And a real photo fits a custom pixel limit or not.
    let tight = DecodeLimits { max_pixels: Some(640 * 427 - 1), ..DecodeLimits::default() };
    assert!(matches!(from_bytes(&jpeg, &tight).unwrap_err().kind(), ImageErrorKind::TooManyPixels { .. }));
    let exact = DecodeLimits { max_pixels: Some(640 * 427), ..DecodeLimits::default() };
    assert_eq!(from_bytes(&jpeg, &exact).unwrap().dimensions(), (640, 427));
    // A PNG missing only its IEND chunk decodes (PIL accepts it too).
    let no_iend = &png[..png.len() - 12];
    assert_eq!(from_bytes(no_iend, &limits).unwrap(), from_bytes(&png, &limits).unwrap());
    // Trailing bytes after a complete JPEG are fine (PIL accepts them too).
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"some trailing garbage");
    assert_eq!(from_bytes(&trailing, &limits).unwrap().dimensions(), (640, 427));
}
