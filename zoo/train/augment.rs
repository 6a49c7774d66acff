//! Training-time augmentation on 8-bit images, run on the CPU in rayon workers.
//!
//! One sample goes through: geometry (torchvision's `RandomResizedCrop`, or the eval resize +
//! center crop when it is off), then flip / rotation / translation as one inverse-mapped
//! bilinear warp (black fill, as torchvision's `RandomAffine`), then photometry (contrast
//! stretching, histogram equalisation (PIL's `ImageOps.equalize`) or CLAHE, and colour jitter
//! in a random order), then `ToTensor` + `Normalize` with the eval preprocessing's statistics.
//!
//! Every random draw comes from a [`Rng`] seeded by `(seed, epoch, sample index)`, so a run is
//! reproducible whatever the number of workers and the order they finish in.
use crate::data::preprocess::{ChannelOrder, Preprocess};
use anyhow::{bail, ensure, Context, Result};
use image::imageops::{self, FilterType};
use image::{GrayImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// One SplitMix64 output for `x` (a good 64-bit mixer).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed))
    }

    /// The stream of one sample in one epoch: depends only on the three numbers.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        Rng::new(mix(mix(seed) ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407)) ^ index.wrapping_mul(0x9FB2_1C65_1E98_DF25))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.uniform() * n as f64) as u64).min(n.saturating_sub(1))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.uniform() < p
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// What augmentation a training run applies; every field off is the eval transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// `RandomResizedCrop` area range (fractions of the image); `None`: eval resize + center crop.
    pub crop_scale: Option<[f64; 2]>,
    /// `RandomResizedCrop` aspect-ratio range.
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Largest rotation, degrees (uniform in `[-rotate, rotate]`).
    pub rotate: f64,
    /// Largest shift, as a fraction of the width / height.
    pub translate: f64,
    /// Probability of a contrast stretch (1st-99th luma percentile mapped to 0-255).
    pub contrast_stretch: f64,
    /// Probability of global histogram equalisation (per channel, as PIL).
    pub equalize: f64,
    /// Probability of CLAHE on the luminance (8×8 tiles at most, clip limit 2).
    pub clahe: f64,
    /// Colour jitter: brightness factor drawn from `[1 - b, 1 + b]`.
    pub brightness: f64,
    /// Colour jitter: contrast factor drawn from `[1 - c, 1 + c]`.
    pub contrast: f64,
    /// Colour jitter: saturation factor drawn from `[1 - s, 1 + s]`.
    pub saturation: f64,
}

impl Default for AugmentConfig {
    /// torchvision's ImageNet training recipe: `RandomResizedCrop` (0.08-1, 3/4-4/3) and flips.
    fn default() -> Self {
        AugmentConfig { crop_scale: Some([0.08, 1.0]), hflip: 0.5, ..AugmentConfig::none() }
    }
}

impl AugmentConfig {
    /// No augmentation: the eval transform.
    pub fn none() -> Self {
        AugmentConfig {
            crop_scale: None,
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip: 0.0,
            rotate: 0.0,
            translate: 0.0,
            contrast_stretch: 0.0,
            equalize: 0.0,
            clahe: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }

    /// Checks ranges (probabilities in 0-1, positive scales and ratios).
    pub fn validate(&self) -> Result<()> {
        for (name, p) in [
            ("hflip", self.hflip),
            ("contrast-stretch", self.contrast_stretch),
            ("equalize", self.equalize),
            ("clahe", self.clahe),
        ] {
            ensure!((0.0..=1.0).contains(&p), "--{name} is a probability: 0 to 1, got {p}");
        }
        if let Some([lo, hi]) = self.crop_scale {
            ensure!(0.0 < lo && lo <= hi && hi <= 1.0, "--crop-scale needs 0 < MIN <= MAX <= 1, got {lo},{hi}");
        }
        let [rlo, rhi] = self.crop_ratio;
        ensure!(0.0 < rlo && rlo <= rhi, "--crop-ratio needs 0 < MIN <= MAX, got {rlo},{rhi}");
        ensure!((0.0..=180.0).contains(&self.rotate), "--rotate is in degrees, 0 to 180, got {}", self.rotate);
        ensure!((0.0..1.0).contains(&self.translate), "--translate is a fraction, 0 to 1, got {}", self.translate);
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)]
        {
            ensure!((0.0..=1.0).contains(&v), "jitter {name} must be 0 to 1, got {v}");
        }
        Ok(())
    }
}

/// An 8-bit image, grayscale (1-channel networks) or RGB.
#[derive(Debug, Clone, PartialEq)]
pub enum Picture {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Picture {
    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Picture::Gray(i) => i.dimensions(),
            Picture::Rgb(i) => i.dimensions(),
        }
    }

    /// Interleaved channels: 1 or 3.
    pub fn channels(&self) -> usize {
        match self {
            Picture::Gray(_) => 1,
            Picture::Rgb(_) => 3,
        }
    }

    /// The interleaved bytes.
    pub fn raw(&self) -> &[u8] {
        match self {
            Picture::Gray(i) => i.as_raw(),
            Picture::Rgb(i) => i.as_raw(),
        }
    }

    fn raw_mut(&mut self) -> &mut [u8] {
        match self {
            Picture::Gray(i) => i,
            Picture::Rgb(i) => i,
        }
    }

    /// A picture of the same kind from raw bytes.
    fn like(&self, w: u32, h: u32, data: Vec<u8>) -> Picture {
        match self {
            Picture::Gray(_) => Picture::Gray(GrayImage::from_raw(w, h, data).expect("buffer size matches")),
            Picture::Rgb(_) => Picture::Rgb(RgbImage::from_raw(w, h, data).expect("buffer size matches")),
        }
    }

    /// As RGB (gray replicated), for previews.
    pub fn to_rgb(&self) -> RgbImage {
        match self {
            Picture::Rgb(i) => i.clone(),
            Picture::Gray(i) => {
                let (w, h) = i.dimensions();
                RgbImage::from_raw(w, h, i.as_raw().iter().flat_map(|&v| [v, v, v]).collect()).expect("size")
            }
        }
    }

    /// Decoded bytes it holds.
    pub fn byte_len(&self) -> usize {
        self.raw().len()
    }
}

/// `Resize` + `CenterCrop` of the eval transform, still 8-bit.
pub fn eval_geometry(src: &Picture, pre: &Preprocess) -> Result<Picture> {
    Ok(match src {
        Picture::Gray(i) => Picture::Gray(pre.resize_crop_to_luma8(i)?),
        Picture::Rgb(i) => Picture::Rgb(pre.resize_crop_to_rgb8(i)?),
    })
}

/// torchvision's `RandomResizedCrop.get_params`: `(left, top, width, height)` of the window.
pub fn random_resized_crop_box(
    w: u32,
    h: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut Rng,
) -> (u32, u32, u32, u32) {
    let area = f64::from(w) * f64::from(h);
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.range(scale[0], scale[1]);
        let aspect = rng.range(lr0, lr1).exp();
        let cw = (target * aspect).sqrt().round() as i64;
        let ch = (target / aspect).sqrt().round() as i64;
        if 0 < cw && cw <= i64::from(w) && 0 < ch && ch <= i64::from(h) {
            let top = rng.below((i64::from(h) - ch + 1) as u64) as u32;
            let left = rng.below((i64::from(w) - cw + 1) as u64) as u32;
            return (left, top, cw as u32, ch as u32);
        }
    }
    // Fallback: a center crop at the closest allowed ratio.
    let in_ratio = f64::from(w) / f64::from(h);
    let (cw, ch) = if in_ratio < ratio[0] {
        (w, ((f64::from(w) / ratio[0]).round() as u32).clamp(1, h))
    } else if in_ratio > ratio[1] {
        (((f64::from(h) * ratio[1]).round() as u32).clamp(1, w), h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// Crops a window and resizes it to `out_w × out_h` (antialiased triangle filter).
fn crop_resize(src: &Picture, (x, y, w, h): (u32, u32, u32, u32), out_w: u32, out_h: u32) -> Picture {
    let (sw, _) = src.dimensions();
    let c = src.channels();
    let row = sw as usize * c;
    let mut window = Vec::with_capacity(w as usize * h as usize * c);
    for yy in y as usize..(y + h) as usize {
        window.extend_from_slice(&src.raw()[yy * row + x as usize * c..yy * row + (x + w) as usize * c]);
    }
    match src.like(w, h, window) {
        Picture::Gray(sub) => Picture::Gray(imageops::resize(&sub, out_w, out_h, FilterType::Triangle)),
        Picture::Rgb(sub) => Picture::Rgb(imageops::resize(&sub, out_w, out_h, FilterType::Triangle)),
    }
}

/// Mirrors left-right in place.
fn hflip(p: &mut Picture) {
    let (w, _) = p.dimensions();
    let c = p.channels();
    let row = w as usize * c;
    for line in p.raw_mut().chunks_exact_mut(row) {
        for x in 0..w as usize / 2 {
            let (a, b) = (x * c, (w as usize - 1 - x) * c);
            for k in 0..c {
                line.swap(a + k, b + k);
            }
        }
    }
}

/// Rotation by `degrees` (counter-clockwise) about the centre, then a shift of `(tx, ty)`
/// pixels; bilinear sampling, black outside.
fn affine(src: &Picture, degrees: f64, tx: f64, ty: f64) -> Picture {
    let (w, h) = src.dimensions();
    let c = src.channels();
    let (cx, cy) = (f64::from(w) * 0.5, f64::from(h) * 0.5);
    let (s, co) = degrees.to_radians().sin_cos();
    let data = src.raw();
    let stride = w as usize * c;
    let mut out = vec![0u8; data.len()];
    for y in 0..h as usize {
        for x in 0..w as usize {
            // Inverse map: undo the shift, then the rotation (image y points down).
            let qx = x as f64 + 0.5 - cx - tx;
            let qy = y as f64 + 0.5 - cy - ty;
            let sx = co * qx - s * qy + cx - 0.5;
            let sy = s * qx + co * qy + cy - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let o = y * stride + x * c;
            for k in 0..c {
                let at = |xx: i64, yy: i64| -> f64 {
                    if xx < 0 || yy < 0 || xx >= i64::from(w) || yy >= i64::from(h) {
                        0.0
                    } else {
                        f64::from(data[yy as usize * stride + xx as usize * c + k])
                    }
                };
                let v = (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                    + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
                out[o + k] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    src.like(w, h, out)
}

/// PIL's luma of one pixel.
fn luma(p: &[u8]) -> u8 {
    if p.len() == 1 {
        return p[0];
    }
    ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8
}

/// Linear stretch of the 1st-99th luma percentiles onto 0-255, same map for every channel.
fn contrast_stretch(p: &mut Picture) {
    let c = p.channels();
    let mut hist = [0u64; 256];
    for px in p.raw().chunks_exact(c) {
        hist[luma(px) as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let percentile = |q: f64| -> usize {
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (v, &n) in hist.iter().enumerate() {
            acc += n;
            if acc >= target {
                return v;
            }
        }
        255
    };
    let (lo, hi) = (percentile(0.01), percentile(0.99));
    if hi <= lo {
        return;
    }
    let scale = 255.0 / (hi - lo) as f64;
    let lut: Vec<u8> = (0..256).map(|v| ((v as f64 - lo as f64) * scale).round().clamp(0.0, 255.0) as u8).collect();
    for v in p.raw_mut() {
        *v = lut[*v as usize];
    }
}

/// PIL's `ImageOps.equalize`, channel by channel.
fn equalize(p: &mut Picture) {
    let c = p.channels();
    for k in 0..c {
        let mut h = [0u64; 256];
        for px in p.raw().chunks_exact(c) {
            h[px[k] as usize] += 1;
        }
        let histo: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
        if histo.len() <= 1 {
            continue;
        }
        let step = (histo.iter().sum::<u64>() - histo[histo.len() - 1]) / 255;
        if step == 0 {
            continue;
        }
        let mut n = step / 2;
        let mut lut = [0u8; 256];
        for (i, l) in lut.iter_mut().enumerate() {
            *l = (n / step).min(255) as u8;
            n += h[i];
        }
        for px in p.raw_mut().chunks_exact_mut(c) {
            px[k] = lut[px[k] as usize];
        }
    }
}

/// Contrast-limited adaptive histogram equalisation of the luminance (colour kept by scaling
/// RGB with the luma ratio): tiles of at least 8 pixels (8×8 at most), clip limit 2, bilinear
/// blending of the neighbouring tiles' maps.
fn clahe(p: &mut Picture) {
    let (w, h) = p.dimensions();
    let (w, h) = (w as usize, h as usize);
    let c = p.channels();
    let y: Vec<u8> = p.raw().chunks_exact(c).map(luma).collect();
    let gx = (w / 8).clamp(1, 8);
    let gy = (h / 8).clamp(1, 8);
    let (tw, th) = (w.div_ceil(gx), h.div_ceil(gy));
    let mut luts = vec![[0u8; 256]; gx * gy];
    for ty in 0..gy {
        for tx in 0..gx {
            let mut hist = [0u32; 256];
            let (x0, x1) = (tx * tw, ((tx + 1) * tw).min(w));
            let (y0, y1) = (ty * th, ((ty + 1) * th).min(h));
            let area = ((x1 - x0) * (y1 - y0)).max(1) as u32;
            for yy in y0..y1 {
                for xx in x0..x1 {
                    hist[y[yy * w + xx] as usize] += 1;
                }
            }
            let limit = ((2.0 * f64::from(area) / 256.0).ceil() as u32).max(1);
            let mut excess = 0;
            for n in hist.iter_mut() {
                if *n > limit {
                    excess += *n - limit;
                    *n = limit;
                }
            }
            let (each, rest) = (excess / 256, (excess % 256) as usize);
            for (i, n) in hist.iter_mut().enumerate() {
                *n += each + u32::from(i < rest);
            }
            let mut acc = 0u32;
            for (v, l) in luts[ty * gx + tx].iter_mut().enumerate() {
                acc += hist[v];
                *l = ((f64::from(acc) * 255.0 / f64::from(area)).round()).min(255.0) as u8;
            }
        }
    }
    let coord = |pos: usize, tile: usize, n: usize| -> (usize, usize, f64) {
        let f = (pos as f64 + 0.5) / tile as f64 - 0.5;
        if f <= 0.0 {
            return (0, 0, 0.0);
        }
        let i = f.floor() as usize;
        if i + 1 >= n {
            return (n - 1, n - 1, 0.0);
        }
        (i, i + 1, f - i as f64)
    };
    let raw = p.raw_mut();
    for yy in 0..h {
        let (ya, yb, fy) = coord(yy, th, gy);
        for xx in 0..w {
            let (xa, xb, fx) = coord(xx, tw, gx);
            let v = y[yy * w + xx] as usize;
            let m = |tx: usize, ty: usize| f64::from(luts[ty * gx + tx][v]);
            let mapped =
                (1.0 - fy) * ((1.0 - fx) * m(xa, ya) + fx * m(xb, ya)) + fy * ((1.0 - fx) * m(xa, yb) + fx * m(xb, yb));
            let o = (yy * w + xx) * c;
            if c == 1 {
                raw[o] = mapped.round().clamp(0.0, 255.0) as u8;
            } else {
                let ratio = (mapped + 0.5) / (v as f64 + 0.5);
                for k in 0..c {
                    raw[o + k] = (f64::from(raw[o + k]) * ratio).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Blends every value with `other(pixel)` as `f * v + (1 - f) * other`, rounded and clamped.
fn blend(p: &mut Picture, f: f64, other: impl Fn(&[u8]) -> f64) {
    let c = p.channels();
    for px in p.raw_mut().chunks_exact_mut(c) {
        let o = other(px);
        for v in px.iter_mut() {
            *v = (f * f64::from(*v) + (1.0 - f) * o).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// torchvision's `ColorJitter` (brightness, contrast, saturation, in a random order).
fn color_jitter(p: &mut Picture, cfg: &AugmentConfig, rng: &mut Rng) {
    let mut order = [0usize, 1, 2];
    rng.shuffle(&mut order);
    for op in order {
        match op {
            0 if cfg.brightness > 0.0 => {
                let f = rng.range(1.0 - cfg.brightness, 1.0 + cfg.brightness);
                blend(p, f, |_| 0.0);
            }
            1 if cfg.contrast > 0.0 => {
                let f = rng.range(1.0 - cfg.contrast, 1.0 + cfg.contrast);
                let c = p.channels();
                let n = (p.raw().len() / c).max(1);
                let mean = p.raw().chunks_exact(c).map(|px| f64::from(luma(px))).sum::<f64>() / n as f64;
                blend(p, f, |_| mean);
            }
            2 if cfg.saturation > 0.0 && p.channels() == 3 => {
                let f = rng.range(1.0 - cfg.saturation, 1.0 + cfg.saturation);
                blend(p, f, |px| f64::from(luma(px)));
            }
            _ => {}
        }
    }
}

/// One augmented sample at the preprocessing's crop size, still 8-bit.
pub fn augment(src: &Picture, pre: &Preprocess, cfg: &AugmentConfig, rng: &mut Rng) -> Result<Picture> {
    let (ow, oh) = (pre.crop[1], pre.crop[0]);
    let (w, h) = src.dimensions();
    ensure!(w > 0 && h > 0, "empty image ({w}x{h})");
    let mut p = match cfg.crop_scale {
        Some(scale) => {
            let window = random_resized_crop_box(w, h, scale, cfg.crop_ratio, rng);
            crop_resize(src, window, ow, oh)
        }
        None => eval_geometry(src, pre)?,
    };
    if rng.chance(cfg.hflip) {
        hflip(&mut p);
    }
    if cfg.rotate > 0.0 || cfg.translate > 0.0 {
        let angle = if cfg.rotate > 0.0 { rng.range(-cfg.rotate, cfg.rotate) } else { 0.0 };
        let (mut tx, mut ty) = (0.0, 0.0);
        if cfg.translate > 0.0 {
            // torchvision rounds the shift to whole pixels.
            tx = (rng.range(-cfg.translate, cfg.translate) * f64::from(ow)).round();
            ty = (rng.range(-cfg.translate, cfg.translate) * f64::from(oh)).round();
        }
        if angle != 0.0 || tx != 0.0 || ty != 0.0 {
            p = affine(&p, angle, tx, ty);
        }
    }
    if rng.chance(cfg.contrast_stretch) {
        contrast_stretch(&mut p);
    }
    if rng.chance(cfg.equalize) {
        equalize(&mut p);
    }
    if rng.chance(cfg.clahe) {
        clahe(&mut p);
    }
    if cfg.brightness > 0.0 || cfg.contrast > 0.0 || cfg.saturation > 0.0 {
        color_jitter(&mut p, cfg, rng);
    }
    Ok(p)
}

/// `ToTensor` + `Normalize` + channel order of a picture already at the crop size, into `out`
/// (`channels * crop_h * crop_w` floats, CHW).
pub fn normalize_into(p: &Picture, pre: &Preprocess, out: &mut [f32]) -> Result<()> {
    let (w, h) = p.dimensions();
    ensure!([h, w] == pre.crop, "picture is {w}x{h}, the crop is {}x{}", pre.crop[1], pre.crop[0]);
    let hw = (w * h) as usize;
    let c = pre.channels as usize;
    ensure!(out.len() == c * hw, "output has {} floats, {c}x{h}x{w} needs {}", out.len(), c * hw);
    let value = |v: u8, k: usize| (f32::from(v) / 255.0 * pre.value_range - pre.mean[k]) / pre.std[k];
    let nch = p.channels();
    let raw = p.raw();
    match (c, nch) {
        (1, 1) => out.iter_mut().zip(raw).for_each(|(o, &v)| *o = value(v, 0)),
        (1, 3) => out.iter_mut().zip(raw.chunks_exact(3)).for_each(|(o, px)| *o = value(luma(px), 0)),
        (3, _) => {
            let src = match pre.channel_order {
                ChannelOrder::Rgb => [0, 1, 2],
                ChannelOrder::Bgr => [2, 1, 0],
            };
            for k in 0..3 {
                let plane = &mut out[k * hw..(k + 1) * hw];
                for (i, o) in plane.iter_mut().enumerate() {
                    let s = if nch == 3 { raw[i * 3 + src[k]] } else { raw[i] };
                    *o = value(s, k);
                }
            }
        }
        _ => bail!("{c}-channel preprocessing is not supported"),
    }
    Ok(())
}

/// Writes pictures as a PNG grid (`columns` wide), small ones enlarged so they can be seen.
pub fn write_grid(pictures: &[Picture], columns: usize, path: &Path) -> Result<()> {
    ensure!(!pictures.is_empty(), "no pictures to show");
    let columns = columns.clamp(1, pictures.len());
    let rows = pictures.len().div_ceil(columns);
    let (cw, ch) = pictures.iter().fold((1, 1), |(a, b), p| {
        let (w, h) = p.dimensions();
        (a.max(w), b.max(h))
    });
    let zoom = (96 / cw.max(ch)).max(1);
    let (cw, ch) = (cw * zoom, ch * zoom);
    let gap = 2;
    let mut grid =
        RgbImage::from_pixel(columns as u32 * (cw + gap) + gap, rows as u32 * (ch + gap) + gap, Rgb([255, 255, 255]));
    for (i, p) in pictures.iter().enumerate() {
        let rgb = p.to_rgb();
        let (w, h) = rgb.dimensions();
        let big = imageops::resize(&rgb, w * zoom, h * zoom, FilterType::Nearest);
        let (x, y) = ((i % columns) as u32 * (cw + gap) + gap, (i / columns) as u32 * (ch + gap) + gap);
        imageops::replace(&mut grid, &big, i64::from(x), i64::from(y));
    }
    grid.save(path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_sample(1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_sample(1, 2, 3).next_u64(), Rng::for_sample(1, 2, 4).next_u64());
        let mut r = Rng::new(7);
        let mean = (0..10_000).map(|_| r.uniform()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn crop_box_stays_inside() {
        let mut r = Rng::new(0);
        for _ in 0..1000 {
            let (x, y, w, h) = random_resized_crop_box(40, 30, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut r);
            assert!(w > 0 && h > 0 && x + w <= 40 && y + h <= 30);
        }
    }

    #[test]
    fn flip_twice_is_identity_and_equalize_spreads() {
        let img = GrayImage::from_fn(64, 64, |x, y| Luma([100 + ((x + y) / 2) as u8]));
        let mut p = Picture::Gray(img.clone());
        hflip(&mut p);
        assert_ne!(p, Picture::Gray(img.clone()));
        hflip(&mut p);
        assert_eq!(p, Picture::Gray(img));
        equalize(&mut p);
        let (lo, hi) = p.raw().iter().fold((255, 0), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo < 20 && hi > 230, "{lo} {hi}");
        // CLAHE and stretching widen a low-contrast image's range too.
        let range = |p: &Picture| p.raw().iter().max().unwrap() - p.raw().iter().min().unwrap();
        let flat = Picture::Gray(GrayImage::from_fn(64, 64, |x, y| Luma([120 + ((x * y) % 16) as u8])));
        let mut q = flat.clone();
        clahe(&mut q);
        assert!(range(&q) > 3 * range(&flat), "{} vs {}", range(&q), range(&flat));
        let mut r = flat.clone();
        contrast_stretch(&mut r);
        assert!(range(&r) > 200, "{}", range(&r));
    }

    #[test]
    fn zero_rotation_is_identity() {
        let img = RgbImage::from_fn(9, 7, |x, y| Rgb([x as u8 * 20, y as u8 * 30, 7]));
        let p = Picture::Rgb(img);
        assert_eq!(affine(&p, 0.0, 0.0, 0.0), p);
        let shifted = affine(&p, 0.0, 1.0, 0.0);
        assert_eq!(shifted.raw()[3..6], p.raw()[0..3]);
    }
}
