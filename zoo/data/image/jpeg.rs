//! JPEG decoding with libjpeg-turbo, the way Pillow does it.
//!
//! PIL decodes JPEG through libjpeg-turbo's libjpeg API with the library's defaults: the
//! accurate integer IDCT (`JDCT_ISLOW`) and "fancy" (triangle-filter) chroma upsampling. Any
//! other decoder rounds its IDCT and upsampling its own way (zune-jpeg, which the `image` crate
//! uses, is a level or two off on many pixels, which moved EfficientNet-Lite0's probabilities by
//! up to 1.3e-2), so zoo uses the same library with the same settings: TurboJPEG's defaults are
//! exactly those (no `TJPARAM_FASTDCT`, no `TJPARAM_FASTUPSAMPLE`), and its pixels are PIL's.
//!
//! What PIL does on top, reproduced here:
//! - a 4-component file is always read as Adobe-inverted CMYK (PIL's raw mode `CMYK;I`, "assume
//!   adobe conventions"), whether it is CMYK or YCCK (libjpeg turns YCCK into CMYK) and whether
//!   or not it carries an Adobe marker; `convert("RGB")` then gives
//!   `nk - nk * c / 255` per channel with `nk = 255 - k`, rounded as PIL's `MULDIV255`;
//! - a 1-component file is mode `L`; 3 components are RGB (YCbCr or stored as RGB);
//! - only 8-bit samples (PIL refuses other precisions);
//! - libjpeg's warnings (extraneous bytes, a damaged entropy segment) are ignored, as PIL's
//!   decoder ignores them; its errors fail the file.
//!
//! The binding is `turbojpeg-sys`, the raw half of the well-kept `turbojpeg` crate, through the
//! small safe [`Tj`] wrapper below: the safe crate turns every libjpeg warning into an error and
//! exposes neither `TJPARAM_MAXMEMORY` (the memory cap on progressive files' coefficient
//! buffers) nor the warning/error distinction. turbojpeg-sys builds its bundled libjpeg-turbo 3.1
//! (cmake and nasm, installed by `tools/setup.sh`) and links it statically: Pillow's wheels
//! bundle 3.x, and Debian 12's libturbojpeg (2.1.5, the same pixels on every file we tried) has
//! only the TurboJPEG 2 API, which the crate no longer binds and which cannot cap memory.
use std::ffi::{c_int, CStr};

use ::image::metadata::Orientation;
use ::image::{DynamicImage, GrayImage, RgbImage};
use turbojpeg_sys as tj;

use super::{DecodeLimits, DecodeOptions, ImageError, ImageErrorKind};

const FORMAT: &str = "JPEG";

/// Progressive scans accepted before a file is refused: libjpeg-turbo's documentation calls
/// more than 500 unreasonable (a legitimate encoder writes about ten), and a file of many empty
/// scans costs a full pass over the coefficients for each (a decompression-time bomb).
const MAX_SCANS: i32 = 500;

/// A TurboJPEG decompressor instance, destroyed on drop.
struct Tj(tj::tjhandle);

impl Tj {
    fn new() -> Result<Self, ImageError> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked below.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            return Err(corrupt("cannot initialise libjpeg-turbo".to_string()));
        }
        Ok(Tj(handle))
    }

    fn set(&mut self, param: tj::TJPARAM, value: i32) -> Result<(), ImageError> {
        // SAFETY: the handle is valid for the lifetime of self.
        if unsafe { tj::tj3Set(self.0, param as c_int, value) } != 0 {
            return Err(corrupt(self.message()));
        }
        Ok(())
    }

    fn get(&mut self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is valid for the lifetime of self.
        unsafe { tj::tj3Get(self.0, param as c_int) }
    }

    /// The last error's message.
    fn message(&mut self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
        unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) }.to_string_lossy().into_owned()
    }

    /// Whether the last failure was only a warning (the output is complete).
    fn last_was_warning(&mut self) -> bool {
        // SAFETY: the handle is valid for the lifetime of self.
        let code = unsafe { tj::tj3GetErrorCode(self.0) };
        code == tj::TJERR_TJERR_WARNING as c_int
    }

    /// Reads the headers up to the first scan.
    fn read_header(&mut self, data: &[u8]) -> Result<(), String> {
        // SAFETY: data is a valid slice of data.len() bytes.
        let rc = unsafe { tj::tj3DecompressHeader(self.0, data.as_ptr(), data.len() as tj::size_t) };
        if rc != 0 {
            return Err(self.message());
        }
        Ok(())
    }

    fn set_scale(&mut self, denom: u32) -> Result<(), ImageError> {
        let factor = tj::tjscalingfactor { num: 1, denom: denom as c_int };
        // SAFETY: the handle is valid; 1/1, 1/2, 1/4 and 1/8 are supported factors.
        if unsafe { tj::tj3SetScalingFactor(self.0, factor) } != 0 {
            return Err(corrupt(self.message()));
        }
        Ok(())
    }

    /// Decompresses into `out`, `width * channels` bytes a row (the header must have been read
    /// and `out` sized from it). A warning is not a failure.
    fn decompress(&mut self, data: &[u8], out: &mut [u8], format: tj::TJPF) -> Result<(), String> {
        // SAFETY: out holds the whole scaled image in `format` (the caller sizes it from the
        // header and the scaling factor); pitch 0 means tightly packed rows.
        let rc =
            unsafe { tj::tj3Decompress8(self.0, data.as_ptr(), data.len() as tj::size_t, out.as_mut_ptr(), 0, format) };
        if rc != 0 && !self.last_was_warning() {
            return Err(self.message());
        }
        Ok(())
    }
}

impl Drop for Tj {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

fn corrupt(detail: String) -> ImageError {
    ImageErrorKind::Corrupt { format: FORMAT, detail }.into()
}

/// The DCT-domain scale (1, 2, 4 or 8) PIL's `draft(mode, (side, side))` picks for a
/// `width x height` image: the largest that keeps both sides at least `side`.
pub(super) fn draft_scale(width: u32, height: u32, side: u32) -> u32 {
    let fits = (width / side.max(1)).min(height / side.max(1));
    [8, 4, 2].into_iter().find(|&s| fits >= s).unwrap_or(1)
}

/// The `(width, height)` a JPEG's frame header gives (before EXIF orientation), decoding nothing.
pub(super) fn header_dimensions(data: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut tj = Tj::new()?;
    tj.read_header(data).map_err(corrupt)?;
    Ok((tj.get(tj::TJPARAM_TJPARAM_JPEGWIDTH) as u32, tj.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT) as u32))
}

/// Decodes a complete JPEG file (see the module documentation), applying its EXIF orientation.
pub(super) fn decode(data: &[u8], opts: &DecodeOptions) -> Result<DynamicImage, ImageError> {
    // libjpeg pads a cut file with grey; PIL refuses it. The walk is cheap and also finds EXIF.
    let segments = scan_segments(data)
        .map_err(|detail| ImageError::from(ImageErrorKind::Truncated { format: FORMAT, detail: detail.to_string() }))?;
    let limits: &DecodeLimits = &opts.limits;
    let mut tj = Tj::new()?;
    tj.read_header(data).map_err(corrupt)?;
    let (width, height) = (tj.get(tj::TJPARAM_TJPARAM_JPEGWIDTH) as u32, tj.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT) as u32);
    let pixels = u64::from(width) * u64::from(height);
    if let Some(limit) = limits.max_pixels {
        if pixels > limit {
            return Err(ImageErrorKind::TooManyPixels { format: FORMAT, width, height, pixels, limit }.into());
        }
    }
    if pixels == 0 {
        return Err(corrupt(format!("the header gives a size of {width}x{height}")));
    }
    let precision = tj.get(tj::TJPARAM_TJPARAM_PRECISION);
    if precision != 8 {
        return Err(ImageErrorKind::Unsupported {
            format: FORMAT,
            detail: format!("{precision}-bit samples (PIL, too, reads only 8-bit JPEGs)"),
        }
        .into());
    }
    let colorspace = tj.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS;
    let (pixel_format, channels) = match colorspace {
        tj::TJCS_TJCS_GRAY => (tj::TJPF_TJPF_GRAY, 1),
        tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (tj::TJPF_TJPF_CMYK, 4),
        _ => (tj::TJPF_TJPF_RGB, 3),
    };
    let lossless = tj.get(tj::TJPARAM_TJPARAM_LOSSLESS) != 0;
    // Lossless files have no DCT to scale in (TurboJPEG ignores the factor for them).
    let scale = match opts.draft {
        Some(side) if !lossless => draft_scale(width, height, side),
        _ => 1,
    };
    let (out_w, out_h) = (width.div_ceil(scale), height.div_ceil(scale));
    let out_pixels = u64::from(out_w) * u64::from(out_h);
    // The decoded samples, and for CMYK the RGB image converted from them, are held at once.
    let needed = out_pixels * channels + if channels == 4 { out_pixels * 3 } else { 0 };
    if let Some(limit) = limits.max_alloc {
        if needed > limit {
            return Err(ImageErrorKind::MemoryLimit {
                limit,
                detail: format!("a {out_w}x{out_h} JPEG with {channels} channels needs {needed} bytes"),
            }
            .into());
        }
        // What is left bounds libjpeg's own buffers (a progressive file keeps every DCT
        // coefficient: 2 bytes a sample). TurboJPEG counts in MiB and reads 0 as "no limit".
        let left_mib = ((limit - needed) >> 20).clamp(1, i32::MAX as u64) as i32;
        tj.set(tj::TJPARAM_TJPARAM_MAXMEMORY, left_mib)?;
    }
    tj.set(tj::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS)?;
    if scale > 1 {
        tj.set_scale(scale)?;
    }
    let mut buf = vec![0u8; needed_usize(out_pixels * channels)?];
    tj.decompress(data, &mut buf, pixel_format).map_err(|detail| classify_failure(detail, limits))?;
    let mut img = match channels {
        1 => DynamicImage::ImageLuma8(GrayImage::from_raw(out_w, out_h, buf).expect("buffer size matches")),
        3 => DynamicImage::ImageRgb8(RgbImage::from_raw(out_w, out_h, buf).expect("buffer size matches")),
        _ => DynamicImage::ImageRgb8(
            RgbImage::from_raw(out_w, out_h, inverted_cmyk_to_rgb(&buf)).expect("buffer size matches"),
        ),
    };
    // A broken EXIF block must not lose the image: no rotation then (PIL ignores it too).
    if let Some(orientation) = segments.exif.and_then(Orientation::from_exif_chunk) {
        img.apply_orientation(orientation);
    }
    Ok(img)
}

fn needed_usize(bytes: u64) -> Result<usize, ImageError> {
    usize::try_from(bytes).map_err(|_| {
        ImageErrorKind::MemoryLimit { limit: usize::MAX as u64, detail: format!("{bytes} bytes of pixels") }.into()
    })
}

/// Sorts libjpeg's fatal errors into memory, bomb and corrupt-data failures.
fn classify_failure(detail: String, limits: &DecodeLimits) -> ImageError {
    let lower = detail.to_ascii_lowercase();
    // jmemmgr's messages when TJPARAM_MAXMEMORY is reached (it has no backing store).
    if lower.contains("memory limit") || lower.contains("backing store") || lower.contains("insufficient memory") {
        return ImageErrorKind::MemoryLimit {
            limit: limits.max_alloc.unwrap_or(u64::MAX),
            detail: format!("libjpeg-turbo's coefficient buffers: {detail}"),
        }
        .into();
    }
    if lower.contains("scans") {
        return corrupt(format!("{detail} (possible decompression bomb)"));
    }
    corrupt(detail)
}

/// PIL's reading of a 4-channel JPEG (raw mode `CMYK;I`: every sample inverted) followed by its
/// `convert("RGB")` (`cmyk2rgb`: `nk - MULDIV255(c, nk)` with `nk = 255 - k`).
fn inverted_cmyk_to_rgb(stored: &[u8]) -> Vec<u8> {
    #[inline]
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    let mut out = Vec::with_capacity(stored.len() / 4 * 3);
    for p in stored.chunks_exact(4) {
        // Inverted: PIL's c is 255 - stored c, and its 255 - k is the stored k.
        let nk = u32::from(p[3]);
        for &s in &p[..3] {
            out.push((nk - muldiv255(255 - u32::from(s), nk)) as u8);
        }
    }
    out
}

/// What the segment walk found.
pub(super) struct Segments<'a> {
    /// The first APP1 `Exif` segment's TIFF data, which PIL reads the orientation from.
    pub exif: Option<&'a [u8]>,
}

/// Walks a JPEG's segments to its EOI marker, as libjpeg (and so PIL) needs to reach it.
///
/// Segments are skipped by their length (so an EXIF thumbnail's markers are not mistaken for
/// the image's); entropy-coded data is scanned for the next marker that is not a stuffed byte
/// or a restart marker. Trailing bytes after EOI are fine.
pub(super) fn scan_segments(data: &[u8]) -> Result<Segments<'_>, &'static str> {
    const EOF: &str = "the data ends before the end-of-image marker";
    let n = data.len();
    if n < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err("missing start-of-image marker");
    }
    let mut found = Segments { exif: None };
    let mut i = 2;
    loop {
        // Next marker: skip stray bytes (libjpeg warns and resynchronises) and 0xFF fill bytes.
        while i < n && data[i] != 0xFF {
            i += 1;
        }
        while i < n && data[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return Err(EOF);
        }
        let marker = data[i];
        i += 1;
        match marker {
            0xD9 => return Ok(found),
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if i + 2 > n {
            return Err(EOF);
        }
        let len = usize::from(u16::from_be_bytes([data[i], data[i + 1]]));
        if len < 2 {
            return Err("a segment has an invalid length");
        }
        if i + len > n {
            return Err(EOF);
        }
        let payload = &data[i + 2..i + len];
        if marker == 0xE1 && found.exif.is_none() {
            found.exif = payload.strip_prefix(b"Exif\0\0");
        }
        i += len;
        if marker == 0xDA {
            // Entropy-coded data: runs until 0xFF followed by something other than a stuffed
            // zero, a restart marker or more fill.
            loop {
                let Some(p) = data[i..].iter().position(|&b| b == 0xFF) else {
                    return Err(EOF);
                };
                let p = i + p;
                if p + 1 >= n {
                    return Err(EOF);
                }
                match data[p + 1] {
                    0x00 | 0xD0..=0xD7 => i = p + 2,
                    0xFF => i = p + 1,
                    _ => {
                        i = p;
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_scale_follows_pil() {
        // PIL: scale = min(w // side, h // side), then the largest of 8, 4, 2, 1 not above it.
        assert_eq!(draft_scale(4000, 3000, 256), 8);
        assert_eq!(draft_scale(1024, 768, 256), 2);
        assert_eq!(draft_scale(1024, 1023, 256), 2);
        assert_eq!(draft_scale(1024, 1024, 256), 4);
        assert_eq!(draft_scale(511, 2000, 256), 1);
        assert_eq!(draft_scale(100, 100, 256), 1);
    }

    #[test]
    fn cmyk_conversion_is_pils() {
        // Stored (inverted) samples: 255 is no ink, 0 is full ink.
        assert_eq!(inverted_cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(inverted_cmyk_to_rgb(&[0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(inverted_cmyk_to_rgb(&[10, 200, 128, 0]), [0, 0, 0]);
        // c = 100, k = 55: nk = 200, 200 - (100 * 200 + 128 + ...) / 255 = 200 - 78 = 122.
        assert_eq!(inverted_cmyk_to_rgb(&[155, 155, 155, 200]), [122, 122, 122]);
    }
}
