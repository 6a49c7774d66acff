//! The eval transform a [`Preprocess`] describes, as torchvision runs it on a PIL image.
//!
//! `Resize(resize)` scales the shorter side to `resize` (the longer one to
//! `int(resize * long / short)`, truncated, as torchvision's `_compute_resized_output_size`) with
//! PIL's resampling, reproduced bit for bit: bilinear and bicubic (a = -0.5) are PIL's
//! antialiasing convolutions (support scaled by the downscale factor, 22-bit fixed-point weights,
//! a horizontal pass rounded to 8 bits, then a vertical pass), nearest is PIL's affine
//! nearest-neighbour mapping. (fast_image_resize's convolutions use Pillow-SIMD's 16-bit weights
//! and the vertical pass first: up to 1 level off for bilinear and 6 for bicubic, so they are
//! not used.) `CenterCrop(crop)` takes `top = int(round((h - crop_h) / 2))` (Python rounds half
//! to even) and, where the image is smaller than the crop, pads with black as torchvision does.
//! Only the pixels that survive the crop are computed. Then `ToTensor` (÷255, or 0-255 when
//! `value_range` is 255), `Normalize(mean, std)` in float32 in torchvision's order of
//! operations, and the channel order. Grayscale networks (`channels == 1`) get PIL's
//! `convert("L")` before the resize.
use std::borrow::Borrow;
use std::path::Path;

use ::image::{GrayImage, RgbImage};
use anyhow::{ensure, Context, Result};
use rayon::prelude::*;
use tch::Tensor;

use super::image::{load_luma, load_rgb, rgb_to_luma, DecodeLimits, ImageError};
use super::preprocess::{ChannelOrder, Interpolation, Preprocess};

/// Where the crop window lies along one axis of the resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AxisPlan {
    /// Length of the axis after `Resize`.
    resized: u32,
    /// First resized pixel that is kept.
    start: u32,
    /// Number of resized pixels kept (`crop`, or `resized` when padding).
    len: u32,
    /// Black pixels before the kept ones in the output (torchvision's pad).
    pad: u32,
}

impl AxisPlan {
    fn new(resized: u32, crop: u32) -> Self {
        if crop <= resized {
            // torchvision: int(round((size - crop) / 2.0)); Python rounds half to even.
            let start = (f64::from(resized - crop) / 2.0).round_ties_even() as u32;
            AxisPlan { resized, start, len: crop, pad: 0 }
        } else {
            // torchvision pads (crop - size) // 2 before, the rest after, then crops at 0.
            AxisPlan { resized, start: 0, len: resized, pad: (crop - resized) / 2 }
        }
    }
}

impl Preprocess {
    /// Checks the values make sense (sizes > 0, 1 or 3 channels, finite non-zero std, ...).
    pub fn validate(&self) -> Result<()> {
        ensure!(self.resize > 0, "preprocess: resize must be > 0");
        ensure!(self.crop[0] > 0 && self.crop[1] > 0, "preprocess: crop must be > 0, got {:?}", self.crop);
        ensure!(self.channels == 1 || self.channels == 3, "preprocess: channels must be 1 or 3, got {}", self.channels);
        ensure!(
            self.value_range.is_finite() && self.value_range > 0.0,
            "preprocess: value_range must be positive, got {}",
            self.value_range
        );
        for (m, s) in self.mean.iter().zip(&self.std) {
            ensure!(
                m.is_finite() && s.is_finite() && *s != 0.0,
                "preprocess: mean/std must be finite and std non-zero, got mean {:?} std {:?}",
                self.mean,
                self.std
            );
        }
        Ok(())
    }

    /// Size `(width, height)` after `Resize(resize)`: the shorter side becomes `resize`, the
    /// longer `int(resize * long / short)` (torchvision's `_compute_resized_output_size`).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let r = u64::from(self.resize);
        let (short, long) = if width <= height { (width, height) } else { (height, width) };
        // Python: int(r * long / short): exact integer product, correctly rounded division.
        let new_long = ((r * u64::from(long)) as f64 / f64::from(short.max(1))) as u32;
        if width <= height {
            (self.resize, new_long)
        } else {
            (new_long, self.resize)
        }
    }

    /// Shape of one preprocessed image: `[channels, crop_h, crop_w]`.
    pub fn output_shape(&self) -> [usize; 3] {
        [self.channels as usize, self.crop[0] as usize, self.crop[1] as usize]
    }

    /// Number of floats in one preprocessed image.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// `Resize` + `CenterCrop` of an RGB image, still 8-bit (for augmentation, grids, previews).
    pub fn resize_crop_to_rgb8(&self, img: &RgbImage) -> Result<RgbImage> {
        let (w, h) = img.dimensions();
        let out = self.resize_crop_raw(img.as_raw(), w, h, 3)?;
        Ok(RgbImage::from_raw(self.crop[1], self.crop[0], out).expect("buffer size matches"))
    }

    /// `Resize` + `CenterCrop` of a grayscale image, still 8-bit.
    pub fn resize_crop_to_luma8(&self, img: &GrayImage) -> Result<GrayImage> {
        let (w, h) = img.dimensions();
        let out = self.resize_crop_raw(img.as_raw(), w, h, 1)?;
        Ok(GrayImage::from_raw(self.crop[1], self.crop[0], out).expect("buffer size matches"))
    }

    /// The whole eval transform: a CHW float32 vector of `channels * crop_h * crop_w` values.
    /// With `channels == 1` the image is first converted to luma (PIL's `convert("L")`).
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.output_len()];
        self.apply_into(img, &mut out)?;
        Ok(out)
    }

    /// [`Preprocess::apply`] writing into `out` (`output_len()` floats), e.g. a batch's slot.
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        self.validate()?;
        ensure!(
            out.len() == self.output_len(),
            "preprocess: output slice has {} floats, {:?} needs {}",
            out.len(),
            self.output_shape(),
            self.output_len()
        );
        if self.channels == 1 {
            let luma = rgb_to_luma(img);
            let pixels = self.resize_crop_to_luma8(&luma)?;
            self.normalize(pixels.as_raw(), 1, out);
        } else {
            let pixels = self.resize_crop_to_rgb8(img)?;
            self.normalize(pixels.as_raw(), 3, out);
        }
        Ok(())
    }

    /// The eval transform of a grayscale image (for `channels == 1`; with 3 channels the luma
    /// is replicated, as PIL's L → RGB).
    pub fn apply_luma(&self, img: &GrayImage) -> Result<Vec<f32>> {
        self.validate()?;
        let pixels = self.resize_crop_to_luma8(img)?;
        let mut out = vec![0.0; self.output_len()];
        self.normalize(pixels.as_raw(), 1, &mut out);
        Ok(out)
    }

    /// One image as a `[1, C, H, W]` float tensor on the CPU.
    pub fn to_tensor(&self, img: &RgbImage) -> Result<Tensor> {
        let data = self.apply(img)?;
        let [c, h, w] = self.output_shape();
        Ok(Tensor::from_slice(&data).view([1, c as i64, h as i64, w as i64]))
    }

    /// Several images as one `[N, C, H, W]` float tensor on the CPU, preprocessed in parallel.
    pub fn batch<I: Borrow<RgbImage> + Sync>(&self, imgs: &[I]) -> Result<Tensor> {
        self.validate()?;
        let per = self.output_len();
        let mut data = vec![0.0f32; imgs.len() * per];
        data.par_chunks_mut(per.max(1)).zip(imgs.par_iter()).enumerate().try_for_each(|(i, (out, img))| {
            self.apply_into(img.borrow(), out).with_context(|| format!("preprocessing image {i} of the batch"))
        })?;
        let [c, h, w] = self.output_shape();
        Ok(Tensor::from_slice(&data).view([imgs.len() as i64, c as i64, h as i64, w as i64]))
    }

    /// Decodes and preprocesses files in parallel (luma decoding for `channels == 1`).
    /// Files that fail are reported, not fatal: the tensor holds the ones that loaded.
    pub fn load_batch<P: AsRef<Path> + Sync>(&self, paths: &[P], limits: &DecodeLimits) -> Result<LoadedBatch> {
        self.validate()?;
        let results: Vec<std::result::Result<Vec<f32>, BatchItemError>> = paths
            .par_iter()
            .map(|p| {
                let p = p.as_ref();
                if self.channels == 1 {
                    let img = load_luma(p, limits).map_err(BatchItemError::Decode)?;
                    self.apply_luma(&img).map_err(BatchItemError::Preprocess)
                } else {
                    let img = load_rgb(p, limits).map_err(BatchItemError::Decode)?;
                    self.apply(&img).map_err(BatchItemError::Preprocess)
                }
            })
            .collect();
        let mut data = Vec::with_capacity(results.len() * self.output_len());
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => {
                    data.extend_from_slice(&v);
                    loaded.push(i);
                }
                Err(e) => errors.push((i, e)),
            }
        }
        let [c, h, w] = self.output_shape();
        let tensor = Tensor::from_slice(&data).view([loaded.len() as i64, c as i64, h as i64, w as i64]);
        Ok(LoadedBatch { tensor, loaded, errors })
    }

    /// Resize + center crop of interleaved 8-bit pixels; returns `crop_h * crop_w` pixels.
    fn resize_crop_raw(&self, src: &[u8], width: u32, height: u32, nch: usize) -> Result<Vec<u8>> {
        ensure!(width > 0 && height > 0, "preprocess: empty image ({width}x{height})");
        ensure!(self.resize > 0 && self.crop[0] > 0 && self.crop[1] > 0, "preprocess: resize and crop must be > 0");
        ensure!(
            src.len() == width as usize * height as usize * nch,
            "preprocess: {} bytes do not make a {width}x{height} image of {nch} channels",
            src.len()
        );
        let (rw, rh) = self.resized_size(width, height);
        ensure!(
            rw < u32::MAX && rh < u32::MAX,
            "preprocess: a {width}x{height} image cannot be resized to a shorter side of {}",
            self.resize
        );
        let px = AxisPlan::new(rw, self.crop[1]);
        let py = AxisPlan::new(rh, self.crop[0]);
        let (cw, ch) = (self.crop[1] as usize, self.crop[0] as usize);
        let padded = px.len < self.crop[1] || py.len < self.crop[0];

        let mut window = vec![0u8; px.len as usize * py.len as usize * nch];
        let src = Plane { data: src, width: width as usize, height: height as usize };
        match (self.interpolation, nch) {
            (Interpolation::Nearest, _) => nearest(&src, nch, &px, &py, &mut window),
            (Interpolation::Bilinear, 3) => pil_resample::<3>(&src, Filter::Bilinear, &px, &py, &mut window),
            (Interpolation::Bilinear, 1) => pil_resample::<1>(&src, Filter::Bilinear, &px, &py, &mut window),
            (Interpolation::Bicubic, 3) => pil_resample::<3>(&src, Filter::Bicubic, &px, &py, &mut window),
            (Interpolation::Bicubic, 1) => pil_resample::<1>(&src, Filter::Bicubic, &px, &py, &mut window),
            (_, n) => anyhow::bail!("preprocess: {n}-channel images are not supported"),
        }
        if !padded {
            return Ok(window);
        }
        // torchvision's pad-then-crop: black borders, the resized image centred.
        let mut out = vec![0u8; cw * ch * nch];
        let row = px.len as usize * nch;
        for y in 0..py.len as usize {
            let dst = ((y + py.pad as usize) * cw + px.pad as usize) * nch;
            out[dst..dst + row].copy_from_slice(&window[y * row..(y + 1) * row]);
        }
        Ok(out)
    }

    /// ToTensor + Normalize + channel order: interleaved 8-bit (`nch` = 1 or 3 channels) →
    /// CHW float32 with `channels` planes (a single luma channel is replicated when 3 are wanted).
    fn normalize(&self, pixels: &[u8], nch: usize, out: &mut [f32]) {
        let c = self.channels as usize;
        let hw = pixels.len() / nch;
        debug_assert_eq!(out.len(), c * hw);
        // One table per output channel. Same float32 operations as torchvision:
        // (v / 255 [* 255]) - mean, then / std.
        let mut lut = [[0f32; 256]; 3];
        for (k, table) in lut.iter_mut().enumerate().take(c) {
            for (v, t) in table.iter_mut().enumerate() {
                let x = v as f32 / 255.0 * self.value_range;
                *t = (x - self.mean[k]) / self.std[k];
            }
        }
        if c == 1 {
            for (o, &p) in out.iter_mut().zip(pixels.iter().step_by(nch)) {
                *o = lut[0][p as usize];
            }
            return;
        }
        // Output channel k reads source channel src[k].
        let src = match self.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let (o0, rest) = out.split_at_mut(hw);
        let (o1, o2) = rest.split_at_mut(hw);
        if nch == 3 {
            for (i, p) in pixels.chunks_exact(3).enumerate() {
                o0[i] = lut[0][p[src[0]] as usize];
                o1[i] = lut[1][p[src[1]] as usize];
                o2[i] = lut[2][p[src[2]] as usize];
            }
        } else {
            for (i, &v) in pixels.iter().enumerate() {
                o0[i] = lut[0][v as usize];
                o1[i] = lut[1][v as usize];
                o2[i] = lut[2][v as usize];
            }
        }
    }
}

/// An interleaved 8-bit image borrowed as rows of `width * channels` bytes.
struct Plane<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
}

/// PIL's nearest-neighbour resize (`ImagingScaleAffine`): the source index of each kept output
/// pixel, with PIL's accumulated floating-point steps.
fn nearest_table(src: usize, plan: &AxisPlan) -> Vec<usize> {
    let scale = src as f64 / f64::from(plan.resized);
    let mut pos = scale * 0.5;
    let mut table = Vec::with_capacity(plan.len as usize);
    for x in 0..plan.start + plan.len {
        if x >= plan.start {
            table.push((pos.max(0.0) as usize).min(src - 1));
        }
        pos += scale;
    }
    table
}

fn nearest(src: &Plane, nch: usize, px: &AxisPlan, py: &AxisPlan, out: &mut [u8]) {
    let xs = nearest_table(src.width, px);
    let ys = nearest_table(src.height, py);
    let stride = src.width * nch;
    let row_len = xs.len() * nch;
    for (row, &y) in out.chunks_exact_mut(row_len).zip(&ys) {
        let src_row = &src.data[y * stride..(y + 1) * stride];
        for (o, &x) in row.chunks_exact_mut(nch).zip(&xs) {
            o.copy_from_slice(&src_row[x * nch..(x + 1) * nch]);
        }
    }
}

/// PIL's convolution filters (`Resample.c`).
#[derive(Debug, Clone, Copy)]
enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// PIL's fixed point: 8 bits of result, 2 of headroom for negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The rounding term every accumulator starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One axis's integer weights, for the kept output pixels only.
struct Coeffs {
    /// First source pixel and number of taps, per kept output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per kept output pixel (unused taps are zero).
    weights: Vec<i32>,
    ksize: usize,
}

impl Coeffs {
    /// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size` to
    /// `plan.resized` (box = the whole axis), restricted to the kept window.
    fn new(in_size: usize, plan: &AxisPlan, filter: Filter) -> Self {
        let scale = in_size as f64 / f64::from(plan.resized);
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let n = plan.len as usize;
        let mut bounds = Vec::with_capacity(n);
        let mut weights = vec![0i32; n * ksize];
        let mut k = vec![0f64; ksize];
        for (i, xx) in (plan.start..plan.start + plan.len).enumerate() {
            let center = (f64::from(xx) + 0.5) * scale;
            // C's (int) truncation, then clamping to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(count) {
                let w = filter.weight(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let row = &mut weights[i * ksize..i * ksize + count];
            for (dst, &w) in row.iter_mut().zip(&k[..count]) {
                let w = if ww != 0.0 { w / ww } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
            }
            bounds.push((xmin, count));
        }
        Coeffs { bounds, weights, ksize }
    }

    /// The source pixels read by the kept window: `first..last`.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        (first, last)
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, count) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + count])
    }
}

/// PIL's two-pass convolution resize (`ImagingResample`: horizontal pass, rounded to 8 bits,
/// then vertical pass), evaluated only for the kept window. Each output pixel is the same
/// integer sum as PIL's, so the result is bit-identical. Integer sums do not depend on their
/// order, which lets both passes be vectorised: the vertical pass row by row, the horizontal
/// pass over blocks of [`ROWS`] source rows at once.
fn pil_resample<const N: usize>(src: &Plane, filter: Filter, px: &AxisPlan, py: &AxisPlan, out: &mut [u8]) {
    let row_len = px.len as usize * N;
    // PIL skips a pass when that axis keeps its size (the weights would be the identity).
    let horiz = (px.resized as usize != src.width).then(|| Coeffs::new(src.width, px, filter));
    let vert = (py.resized as usize != src.height).then(|| Coeffs::new(src.height, py, filter));

    // Source rows the vertical pass reads.
    let (first, last) = match &vert {
        Some(c) => c.span(),
        None => (py.start as usize, (py.start + py.len) as usize),
    };

    // Horizontal pass into `tmp` (rows first..last, kept columns only).
    let mut tmp = vec![0u8; (last - first) * row_len];
    match &horiz {
        Some(c) => horizontal_pass::<N>(src, first, last, c, &mut tmp),
        None => {
            let stride = src.width * N;
            let x0 = px.start as usize * N;
            for (y, dst) in (first..last).zip(tmp.chunks_exact_mut(row_len)) {
                dst.copy_from_slice(&src.data[y * stride + x0..y * stride + x0 + row_len]);
            }
        }
    }
    match &vert {
        Some(c) => vertical_pass(&tmp, first, row_len, c, out),
        None => out.copy_from_slice(&tmp),
    }
}

/// Whether the AVX2 builds of the kernels can run here.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The horizontal pass, with AVX2 where the CPU has it.
fn horizontal_pass<const N: usize>(src: &Plane, first: usize, last: usize, c: &Coeffs, tmp: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2.
        return unsafe { horizontal_avx2::<N>(src, first, last, c, tmp) };
    }
    horizontal::<N>(src, first, last, c, tmp)
}

/// The vertical pass, compiled for AVX2 where the CPU has it.
fn vertical_pass(tmp: &[u8], first: usize, row_len: usize, c: &Coeffs, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2.
        return unsafe { vertical_avx2(tmp, first, row_len, c, out) };
    }
    vertical(tmp, first, row_len, c, out)
}

/// [`horizontal`] with AVX2 intrinsics: the same integer sums, 8 source rows per vector.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2<const N: usize>(src: &Plane, first: usize, last: usize, c: &Coeffs, tmp: &mut [u8]) {
    use std::arch::x86_64::*;
    const _: () = assert!(ROWS == 8);
    let stride = src.width * N;
    let out_w = c.bounds.len();
    let row_len = out_w * N;
    let (x0, x1) = c.span();
    let span = (x1 - x0) * N;
    // block[e * 8 + r]: byte e of the block's row r.
    let mut block = vec![0u8; span * 8];
    let half = _mm256_set1_epi32(HALF);
    let zero = _mm256_setzero_si256();
    let max = _mm256_set1_epi32(255);
    let mut y = first;
    while y < last {
        let rows = (last - y).min(ROWS);
        // Lanes past `rows` repeat the last row; their sums are dropped.
        let lines: [&[u8]; ROWS] = std::array::from_fn(|r| {
            let yy = (y + r).min(last - 1);
            &src.data[yy * stride + x0 * N..yy * stride + x1 * N]
        });
        // 8x8 byte transposes, then the tail one byte at a time.
        let full = span / 8;
        for g in 0..full {
            let e = g * 8;
            // SAFETY: e + 8 <= span = every line's length; block has span * 8 bytes.
            let a: [__m128i; 8] = std::array::from_fn(|r| unsafe { _mm_loadl_epi64(lines[r].as_ptr().add(e).cast()) });
            let t0 = _mm_unpacklo_epi8(a[0], a[1]);
            let t1 = _mm_unpacklo_epi8(a[2], a[3]);
            let t2 = _mm_unpacklo_epi8(a[4], a[5]);
            let t3 = _mm_unpacklo_epi8(a[6], a[7]);
            let u0 = _mm_unpacklo_epi16(t0, t1);
            let u1 = _mm_unpackhi_epi16(t0, t1);
            let u2 = _mm_unpacklo_epi16(t2, t3);
            let u3 = _mm_unpackhi_epi16(t2, t3);
            let dst = block.as_mut_ptr().add(e * 8);
            _mm_storeu_si128(dst.cast(), _mm_unpacklo_epi32(u0, u2));
            _mm_storeu_si128(dst.add(16).cast(), _mm_unpackhi_epi32(u0, u2));
            _mm_storeu_si128(dst.add(32).cast(), _mm_unpacklo_epi32(u1, u3));
            _mm_storeu_si128(dst.add(48).cast(), _mm_unpackhi_epi32(u1, u3));
        }
        for e in full * 8..span {
            for (r, line) in lines.iter().enumerate() {
                block[e * 8 + r] = line[e];
            }
        }
        for i in 0..out_w {
            let (start, w) = c.taps(i);
            debug_assert!((start - x0 + w.len()) * N <= span);
            let mut acc = [half; N];
            let mut p = block.as_ptr().add((start - x0) * N * 8);
            for &k in w {
                let kv = _mm256_set1_epi32(k);
                for (ch, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(ch * 8).cast()));
                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(v, kv));
                }
                p = p.add(N * 8);
            }
            let mut lanes = [[0i32; ROWS]; N];
            for (l, a) in lanes.iter_mut().zip(&acc) {
                let v = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(*a, PRECISION_BITS as i32), zero), max);
                _mm256_storeu_si256(l.as_mut_ptr().cast(), v);
            }
            for r in 0..rows {
                let o = (y - first + r) * row_len + i * N;
                for (dst, lane) in tmp[o..o + N].iter_mut().zip(&lanes) {
                    *dst = lane[r] as u8;
                }
            }
        }
        y += rows;
    }
}

/// [`vertical`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_avx2(tmp: &[u8], first: usize, row_len: usize, c: &Coeffs, out: &mut [u8]) {
    vertical(tmp, first, row_len, c, out)
}

/// Source rows processed together by the horizontal pass (one vector of `i32` lanes each).
const ROWS: usize = 8;

/// Horizontal pass over source rows `first..last`, writing the kept columns into `tmp`.
///
/// Blocks of [`ROWS`] rows are transposed so that, for each source pixel and channel, the
/// rows' values sit side by side: every tap is then one multiply-add across all the rows.
fn horizontal<const N: usize>(src: &Plane, first: usize, last: usize, c: &Coeffs, tmp: &mut [u8]) {
    let stride = src.width * N;
    let out_w = c.bounds.len();
    let row_len = out_w * N;
    let (x0, x1) = c.span();
    let span = (x1 - x0) * N;
    let mut block = vec![[0u8; ROWS]; span];
    let mut y = first;
    while y < last {
        let rows = (last - y).min(ROWS);
        // Lanes past `rows` repeat the last row; their sums are dropped.
        let lines: [&[u8]; ROWS] = std::array::from_fn(|r| {
            let yy = (y + r).min(last - 1);
            &src.data[yy * stride + x0 * N..yy * stride + x1 * N]
        });
        for (e, b) in block.iter_mut().enumerate() {
            for r in 0..ROWS {
                b[r] = lines[r][e];
            }
        }
        for i in 0..out_w {
            let (start, w) = c.taps(i);
            let base = (start - x0) * N;
            let mut acc = [[HALF; ROWS]; N];
            for (px, &k) in block[base..base + w.len() * N].chunks_exact(N).zip(w) {
                for ch in 0..N {
                    for r in 0..ROWS {
                        acc[ch][r] += i32::from(px[ch][r]) * k;
                    }
                }
            }
            for r in 0..rows {
                let o = (y - first + r) * row_len + i * N;
                for (dst, lane) in tmp[o..o + N].iter_mut().zip(&acc) {
                    *dst = clip8(lane[r]);
                }
            }
        }
        y += rows;
    }
}

/// Vertical pass: each output row is a weighted sum of whole rows of `tmp` (which starts at
/// source row `first`).
#[inline(always)]
fn vertical(tmp: &[u8], first: usize, row_len: usize, c: &Coeffs, out: &mut [u8]) {
    let mut acc = vec![0i32; row_len];
    for (j, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, w) = c.taps(j);
        acc.fill(HALF);
        for (t, &k) in w.iter().enumerate() {
            let y = start + t - first;
            for (a, &p) in acc.iter_mut().zip(&tmp[y * row_len..(y + 1) * row_len]) {
                *a += i32::from(p) * k;
            }
        }
        for (o, &a) in dst.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

/// Why one file of [`Preprocess::load_batch`] was left out.
#[derive(Debug, thiserror::Error)]
pub enum BatchItemError {
    /// The file could not be decoded.
    #[error(transparent)]
    Decode(ImageError),
    /// The image could not be preprocessed.
    #[error("{0:#}")]
    Preprocess(anyhow::Error),
}

/// The result of [`Preprocess::load_batch`].
#[derive(Debug)]
pub struct LoadedBatch {
    /// `[loaded.len(), C, H, W]` float tensor on the CPU.
    pub tensor: Tensor,
    /// For each row of `tensor`, the index of its file in the input.
    pub loaded: Vec<usize>,
    /// The files that failed, by index, with why.
    pub errors: Vec<(usize, BatchItemError)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes.
    fn noise(len: usize, mut seed: u32) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed >> 24) as u8
            })
            .collect()
    }

    fn both_kernels<const N: usize>(w: usize, h: usize, rw: u32, rh: u32, filter: Filter) {
        let data = noise(w * h * N, (w * 31 + h) as u32 | 1);
        let src = Plane { data: &data, width: w, height: h };
        let px = AxisPlan::new(rw, rw.saturating_sub(3).max(1));
        let py = AxisPlan::new(rh, rh.saturating_sub(5).max(1));
        let hc = Coeffs::new(w, &px, filter);
        let vc = Coeffs::new(h, &py, filter);
        let (first, last) = vc.span();
        let row_len = px.len as usize * N;
        let mut portable = vec![0u8; (last - first) * row_len];
        horizontal::<N>(&src, first, last, &hc, &mut portable);
        let mut dispatched = vec![0u8; portable.len()];
        horizontal_pass::<N>(&src, first, last, &hc, &mut dispatched);
        assert_eq!(portable, dispatched, "horizontal {N}ch {w}x{h} -> {rw}x{rh} {filter:?}");
        let mut out_portable = vec![0u8; py.len as usize * row_len];
        vertical(&portable, first, row_len, &vc, &mut out_portable);
        let mut out_dispatched = vec![0u8; out_portable.len()];
        vertical_pass(&portable, first, row_len, &vc, &mut out_dispatched);
        assert_eq!(out_portable, out_dispatched, "vertical {N}ch {w}x{h} -> {rw}x{rh} {filter:?}");
    }

    #[test]
    fn simd_kernels_match_portable_ones() {
        if !has_avx2() {
            // The dispatch falls back to the portable kernels: comparing them with themselves
            // proves nothing. README.md ("Tests that need hardware") says where this runs.
            eprintln!("simd_kernels_match_portable_ones: SKIPPED, this CPU has no AVX2");
            return;
        }
        // Odd sizes: row counts and spans that are not multiples of 8, up- and downscaling.
        for (w, h, rw, rh) in
            [(37, 23, 16, 11), (451, 300, 384, 256), (1000, 17, 77, 9), (5, 90, 12, 200), (640, 427, 700, 500)]
        {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                both_kernels::<3>(w, h, rw, rh, filter);
                both_kernels::<1>(w, h, rw, rh, filter);
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (src, dst) in [(451u32, 256u32), (256, 451), (1411, 256), (3, 224)] {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                let plan = AxisPlan::new(dst, dst);
                let c = Coeffs::new(src as usize, &plan, filter);
                for i in 0..dst as usize {
                    let (_, w) = c.taps(i);
                    let sum: i32 = w.iter().sum();
                    assert!(
                        (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i32,
                        "{src}->{dst} {filter:?} #{i}: {sum}"
                    );
                }
            }
        }
    }
}
