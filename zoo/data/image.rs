//! Decoding image files into 8-bit RGB (or luma), the way the Python side sees them.
//!
//! The reference is PIL: `ImageOps.exif_transpose(Image.open(p)).convert("RGB")`, which is what
//! a torchvision pipeline feeds its transforms (plus the EXIF rotation a photo viewer applies).
//! The format is recognised from the content, never the file name. Conversions follow PIL's:
//!
//! - grayscale, grayscale+alpha and palette images are expanded; alpha is *dropped*, not
//!   composited over a background (PIL's `convert("RGB")` discards it too), and a palette
//!   entry marked transparent keeps its palette colour;
//! - 16-bit RGB(A) and grayscale+alpha keep the high byte (`v >> 8`), as PIL's unpackers do;
//! - 16-bit grayscale opens in PIL as mode `I;16`, whose conversion to RGB or L *clamps* at 255
//!   (so a typical 16-bit scan turns almost white in torchvision); that is reproduced as is;
//! - JPEG is decoded by libjpeg-turbo with PIL's settings, so its pixels are PIL's exactly,
//!   CMYK and YCCK files included (the private `jpeg` module says how); other formats by the `image` crate;
//! - GIF: the first frame.
//!
//! Decompression bombs are stopped before any pixel is decoded: the header's pixel count is
//! checked against [`DecodeLimits::max_pixels`] (PIL's `MAX_IMAGE_PIXELS` by default), and the
//! decoder's allocations are bounded by [`DecodeLimits::max_alloc`]. Every failure is an
//! [`ImageError`] whose [`ImageErrorKind`] says what went wrong, for per-file reporting.
mod jpeg;

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use ::image::error::{ImageFormatHint, LimitErrorKind, UnsupportedErrorKind};
use ::image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// PIL's `Image.MAX_IMAGE_PIXELS` (`int(1024 * 1024 * 1024 // 4 // 3)`).
///
/// PIL only warns between this and twice this; zoo refuses anything above it.
pub const PIL_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Default bound on the decoder's allocations: 1 GiB.
pub const DEFAULT_MAX_ALLOC: u64 = 1 << 30;

/// How to decode: the limits, and whether JPEGs may be decoded smaller (not bit-exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Pixel and memory limits.
    pub limits: DecodeLimits,
    /// PIL's `draft("RGB", (side, side))`: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size in
    /// the DCT domain (libjpeg-turbo's scaled IDCT), the smallest that keeps both sides at least
    /// `side`. Much faster on big photos, but the resize then starts from other pixels: the
    /// result is PIL's after `draft()`, *not* what plain `Image.open` + torchvision give.
    /// `None` (the default): full-size, bit-exact decoding. Other formats ignore it.
    pub draft: Option<u32>,
}

impl DecodeOptions {
    /// Full-size, bit-exact decoding under `limits`.
    pub fn exact(limits: DecodeLimits) -> Self {
        DecodeOptions { limits, draft: None }
    }
}

/// Limits applied while decoding one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `width * height` accepted, checked from the header before decoding.
    /// `None`: no limit.
    pub max_pixels: Option<u64>,
    /// Largest allocation the decoder may make, in bytes (also bounds the size of the file
    /// read into memory). `None`: no limit.
    pub max_alloc: Option<u64>,
}

impl Default for DecodeLimits {
    /// PIL's pixel limit and 1 GiB of decoder memory.
    fn default() -> Self {
        DecodeLimits { max_pixels: Some(PIL_MAX_IMAGE_PIXELS), max_alloc: Some(DEFAULT_MAX_ALLOC) }
    }
}

impl DecodeLimits {
    /// No limits at all (trusted input only).
    pub fn none() -> Self {
        DecodeLimits { max_pixels: None, max_alloc: None }
    }
}

/// What went wrong while reading an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageErrorKind {
    /// The file has no bytes at all.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The content matches no known image signature.
    #[error("not an image: unrecognised content ({hint})")]
    UnknownFormat {
        /// What the first bytes look like.
        hint: String,
    },
    /// A recognised image format that this build does not decode (AVIF, QOI, ...).
    #[error("{format} images are not supported (supported: JPEG, PNG, WebP, BMP, GIF, TIFF)")]
    UnsupportedFormat {
        /// The format's name.
        format: String,
    },
    /// A supported format using a feature the decoder lacks (an exotic colour type, ...).
    #[error("unsupported {format} variant: {detail}")]
    Unsupported {
        /// The format's name.
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The data ends before the image does.
    #[error("truncated {format} file: {detail}")]
    Truncated {
        /// The format's name.
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The data is not a valid image of its format.
    #[error("corrupt {format} file: {detail}")]
    Corrupt {
        /// The format's name.
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The header announces more pixels than [`DecodeLimits::max_pixels`].
    #[error(
        "{width}x{height} {format} image has {pixels} pixels, more than the limit of {limit} \
         (possible decompression bomb)"
    )]
    TooManyPixels {
        /// The format's name.
        format: &'static str,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// Decoding would allocate more than [`DecodeLimits::max_alloc`].
    #[error("decoding needs more memory than the limit of {limit} bytes: {detail}")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
        /// What needed the memory.
        detail: String,
    },
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
}

/// A failure to read one image: what went wrong and, when it came from a file, which one.
#[derive(Debug)]
pub struct ImageError {
    path: Option<PathBuf>,
    kind: ImageErrorKind,
}

impl ImageError {
    /// An error not tied to a file.
    pub fn new(kind: ImageErrorKind) -> Self {
        ImageError { path: None, kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ImageErrorKind {
        &self.kind
    }

    /// The file, if the image came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Consumes the error, giving what went wrong.
    pub fn into_kind(self) -> ImageErrorKind {
        self.kind
    }

    fn with_path(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl From<ImageErrorKind> for ImageError {
    fn from(kind: ImageErrorKind) -> Self {
        ImageError::new(kind)
    }
}

/// Reads and decodes an image file into 8-bit RGB (see the module documentation).
pub fn load_rgb(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    load_rgb_with(path, &DecodeOptions::exact(*limits))
}

/// [`load_rgb`] with decode options (fast JPEG decoding).
pub fn load_rgb_with(path: &Path, opts: &DecodeOptions) -> Result<RgbImage, ImageError> {
    let bytes = read_file(path, &opts.limits).map_err(|e| e.with_path(path))?;
    rgb_from_bytes_with(&bytes, opts).map_err(|e| e.with_path(path))
}

/// Decodes an encoded image held in memory into 8-bit RGB.
pub fn from_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    rgb_from_bytes_with(bytes, &DecodeOptions::exact(*limits))
}

/// [`from_bytes`] with decode options (fast JPEG decoding).
pub fn rgb_from_bytes_with(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage, ImageError> {
    Ok(to_rgb8_like_pil(decode(bytes, opts)?))
}

/// Reads and decodes an image file into 8-bit luma, as PIL's `convert("L")`
/// (`L = (19595 R + 38470 G + 7471 B + 32768) >> 16`), for 1-channel networks.
pub fn load_luma(path: &Path, limits: &DecodeLimits) -> Result<GrayImage, ImageError> {
    load_luma_with(path, &DecodeOptions::exact(*limits))
}

/// [`load_luma`] with decode options (fast JPEG decoding).
pub fn load_luma_with(path: &Path, opts: &DecodeOptions) -> Result<GrayImage, ImageError> {
    let bytes = read_file(path, &opts.limits).map_err(|e| e.with_path(path))?;
    luma_from_bytes_with(&bytes, opts).map_err(|e| e.with_path(path))
}

/// Decodes an encoded image held in memory into 8-bit luma (see [`load_luma`]).
pub fn luma_from_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<GrayImage, ImageError> {
    luma_from_bytes_with(bytes, &DecodeOptions::exact(*limits))
}

/// [`luma_from_bytes`] with decode options (fast JPEG decoding).
pub fn luma_from_bytes_with(bytes: &[u8], opts: &DecodeOptions) -> Result<GrayImage, ImageError> {
    Ok(match decode(bytes, opts)? {
        DynamicImage::ImageLuma8(img) => img,
        DynamicImage::ImageLumaA8(img) => {
            let (w, h) = img.dimensions();
            let data = img.into_raw().chunks_exact(2).map(|p| p[0]).collect();
            GrayImage::from_raw(w, h, data).expect("buffer size matches")
        }
        DynamicImage::ImageLuma16(img) => {
            let (w, h) = img.dimensions();
            let data = img.into_raw().into_iter().map(clamp16).collect();
            GrayImage::from_raw(w, h, data).expect("buffer size matches")
        }
        other => rgb_to_luma(&to_rgb8_like_pil(other)),
    })
}

/// PIL's RGB → L conversion (ITU-R 601-2 luma in 16-bit fixed point, rounded).
pub fn rgb_to_luma(img: &RgbImage) -> GrayImage {
    let (w, h) = img.dimensions();
    let data = img.as_raw().chunks_exact(3).map(|p| luma_pil(p[0], p[1], p[2])).collect();
    GrayImage::from_raw(w, h, data).expect("buffer size matches")
}

#[inline]
fn luma_pil(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// PIL's `I;16` → 8-bit conversion: values above 255 clamp to 255.
#[inline]
fn clamp16(v: u16) -> u8 {
    v.min(255) as u8
}

/// Converts any decoded image to 8-bit RGB the way PIL's `convert("RGB")` would.
pub fn to_rgb8_like_pil(img: DynamicImage) -> RgbImage {
    fn expand<P: ::image::Pixel>(
        img: &::image::ImageBuffer<P, Vec<P::Subpixel>>,
        f: impl Fn(&P) -> [u8; 3],
    ) -> RgbImage {
        let (w, h) = img.dimensions();
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for p in img.pixels() {
            out.extend_from_slice(&f(p));
        }
        RgbImage::from_raw(w, h, out).expect("buffer size matches")
    }
    match img {
        DynamicImage::ImageRgb8(img) => img,
        DynamicImage::ImageLuma8(img) => expand(&img, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(img) => expand(&img, |p| [p[0]; 3]),
        DynamicImage::ImageRgba8(img) => expand(&img, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma16(img) => expand(&img, |p| [clamp16(p[0]); 3]),
        DynamicImage::ImageLumaA16(img) => expand(&img, |p| [(p[0] >> 8) as u8; 3]),
        DynamicImage::ImageRgb16(img) => expand(&img, |p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]),
        DynamicImage::ImageRgba16(img) => expand(&img, |p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]),
        // Float images (some TIFFs) have no PIL RGB counterpart: image's own scaling of 0..1.
        other => other.to_rgb8(),
    }
}

fn read_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, ImageError> {
    let io = |e| ImageError::new(ImageErrorKind::Io(e));
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    if let Some(limit) = limits.max_alloc {
        if meta.len() > limit {
            return Err(ImageErrorKind::MemoryLimit {
                limit,
                detail: format!("the file alone is {} bytes", meta.len()),
            }
            .into());
        }
    }
    std::fs::read(path).map_err(io)
}

/// A short human name for a format.
fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Avif => "AVIF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Qoi => "QOI",
        ImageFormat::Hdr => "Radiance HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Tga => "TGA",
        ImageFormat::Dds => "DDS",
        ImageFormat::Farbfeld => "farbfeld",
        _ => "image",
    }
}

/// The `(width, height)` of an image file from its header, decoding no pixels: JPEGs through
/// libjpeg-turbo (the decoder zoo uses for them), every other format through the image crate.
pub fn dimensions(path: &Path) -> Result<(u32, u32), ImageError> {
    let io = |e: std::io::Error| ImageError::new(ImageErrorKind::Io(e));
    let reader = ImageReader::open(path).map_err(io)?.with_guessed_format().map_err(io)?;
    match reader.format() {
        Some(ImageFormat::Jpeg) => jpeg::header_dimensions(&std::fs::read(path).map_err(io)?),
        Some(format) => reader.into_dimensions().map_err(|e| map_image_error(e, format, &DecodeLimits::default())),
        None => {
            let head = std::fs::read(path).map_err(io)?;
            Err(ImageErrorKind::UnknownFormat { hint: describe_unknown(&head[..head.len().min(64)]) }.into())
        }
    }
}

/// A PNG's closing chunk.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Decodes to the decoder's native pixel type, applying the EXIF orientation.
fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageErrorKind::Empty.into());
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::new(ImageErrorKind::Io(e)))?;
    let Some(format) = reader.format() else {
        return Err(ImageErrorKind::UnknownFormat { hint: describe_unknown(bytes) }.into());
    };
    if format == ImageFormat::Jpeg {
        return jpeg::decode(bytes, opts);
    }
    let limits = &opts.limits;
    match decode_as(bytes, format, limits) {
        // PIL accepts a PNG that lacks only its IEND chunk; the png crate wants it.
        Err(e)
            if format == ImageFormat::Png
                && matches!(e.kind, ImageErrorKind::Truncated { .. })
                && !bytes.ends_with(&PNG_IEND) =>
        {
            let mut patched = Vec::with_capacity(bytes.len() + PNG_IEND.len());
            patched.extend_from_slice(bytes);
            patched.extend_from_slice(&PNG_IEND);
            decode_as(&patched, format, limits).map_err(|_| e)
        }
        result => result,
    }
}

/// Decodes `bytes` as `format`: pixel limit from the header, memory limit, orientation.
fn decode_as(bytes: &[u8], format: ImageFormat, limits: &DecodeLimits) -> Result<DynamicImage, ImageError> {
    let name = format_name(format);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = Limits::default();
    image_limits.max_alloc = limits.max_alloc;
    reader.limits(image_limits.clone());

    let mut decoder = reader.into_decoder().map_err(|e| map_image_error(e, format, limits))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if let Some(limit) = limits.max_pixels {
        if pixels > limit {
            return Err(ImageErrorKind::TooManyPixels { format: name, width, height, pixels, limit }.into());
        }
    }
    if pixels == 0 {
        return Err(ImageErrorKind::Corrupt {
            format: name,
            detail: format!("the header gives a size of {width}x{height}"),
        }
        .into());
    }
    // The output buffer counts against the memory limit, and whatever is left bounds the
    // decoder's own allocations (as `ImageReader::decode` does).
    image_limits.reserve(decoder.total_bytes()).map_err(|e| map_image_error(e, format, limits))?;
    decoder.set_limits(image_limits).map_err(|e| map_image_error(e, format, limits))?;
    // A broken EXIF block must not lose the image: no rotation then (PIL ignores it too).
    let orientation = decoder.orientation().unwrap_or(::image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, format, limits))?;
    img.apply_orientation(orientation);
    Ok(img)
}

fn map_image_error(e: ::image::ImageError, format: ImageFormat, limits: &DecodeLimits) -> ImageError {
    use ::image::ImageError as E;
    let name = format_name(format);
    let kind = match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageErrorKind::Truncated { format: name, detail: io.to_string() }
        }
        E::IoError(io) => ImageErrorKind::Corrupt { format: name, detail: io.to_string() },
        E::Unsupported(u) => match u.kind() {
            UnsupportedErrorKind::Format(hint) => ImageErrorKind::UnsupportedFormat {
                format: match hint {
                    ImageFormatHint::Exact(f) => format_name(f).to_string(),
                    ImageFormatHint::Name(n) => n,
                    _ => name.to_string(),
                },
            },
            _ => ImageErrorKind::Unsupported { format: name, detail: u.to_string() },
        },
        E::Limits(l) => match l.kind() {
            LimitErrorKind::InsufficientMemory => {
                ImageErrorKind::MemoryLimit { limit: limits.max_alloc.unwrap_or(u64::MAX), detail: l.to_string() }
            }
            _ => ImageErrorKind::Corrupt { format: name, detail: l.to_string() },
        },
        E::Decoding(d) => {
            let detail = error_chain(&d);
            if looks_truncated(&d) {
                ImageErrorKind::Truncated { format: name, detail }
            } else {
                ImageErrorKind::Corrupt { format: name, detail }
            }
        }
        other => ImageErrorKind::Corrupt { format: name, detail: other.to_string() },
    };
    kind.into()
}

/// The error's message followed by its sources' (decoders often wrap the useful part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = inner.source();
    }
    s
}

/// Whether a decoder's error says the data ran out.
fn looks_truncated(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        let m = err.to_string().to_ascii_lowercase();
        if m.contains("eof")
            || m.contains("end of file")
            || m.contains("unexpected end")
            || m.contains("truncated")
            || m.contains("not enough data")
            || m.contains("no more bytes")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// What unrecognised content looks like, for the error message.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let starts = |sig: &[u8]| head.starts_with(sig);
    let known = if starts(b"%PDF") {
        Some("a PDF document")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        match &head[8..12] {
            b"heic" | b"heix" | b"hevc" | b"mif1" | b"msf1" => Some("a HEIF/HEIC image, not supported"),
            _ => Some("an ISO media file (video or HEIF), not supported"),
        }
    } else if starts(b"PK\x03\x04") {
        Some("a ZIP archive")
    } else if starts(b"\x1f\x8b") {
        Some("gzip-compressed data")
    } else if starts(b"\x93NUMPY") {
        Some("a NumPy array file")
    } else {
        None
    };
    if let Some(k) = known {
        return k.to_string();
    }
    let text =
        head.iter().all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace()) || std::str::from_utf8(head).is_ok();
    if text {
        let s: String =
            String::from_utf8_lossy(head).chars().take(32).map(|c| if c.is_control() { ' ' } else { c }).collect();
        let what = if s.trim_start().starts_with("<svg") || s.trim_start().starts_with("<?xml") {
            "XML/SVG text"
        } else if s.trim_start().to_ascii_lowercase().starts_with("<!doctype html")
            || s.trim_start().to_ascii_lowercase().starts_with("<html")
        {
            "an HTML page"
        } else {
            "text"
        };
        format!("{what} starting {:?}", s.trim_end())
    } else {
        let hex: Vec<String> = head.iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!("first bytes {}", hex.join(" "))
    }
}
