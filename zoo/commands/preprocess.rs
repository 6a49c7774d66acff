//! The preprocessing flags of `classify`, `features`, `eval` and `finetune`: `--preprocess
//! ARCH.TAG` borrows an entry's eval transform, `--resize`, `--crop`, `--interpolation`, `--mean`
//! and `--std` replace one field (see [`crate::weights::pretrained::PreprocessOverride`]).
use crate::data::preprocess::Interpolation;
use crate::weights::pretrained::PreprocessOverride;

/// `--preprocess` and the per-field overrides.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PreprocessArgs {
    /// Use this weights entry's eval transform (ARCH.TAG) instead of the identified one.
    #[arg(long, value_name = "ARCH.TAG")]
    pub preprocess: Option<String>,
    /// Resize the shorter side to this many pixels.
    #[arg(long)]
    pub resize: Option<u32>,
    /// Center crop: SIZE or HxW.
    #[arg(long, value_parser = parse_crop)]
    pub crop: Option<[u32; 2]>,
    /// Resampling of the resize: bilinear, bicubic or nearest.
    #[arg(long, value_parser = parse_interpolation)]
    pub interpolation: Option<Interpolation>,
    /// Per-channel mean: one number or R,G,B.
    #[arg(long, value_parser = parse_channels)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation: one number or R,G,B.
    #[arg(long, value_parser = parse_channels)]
    pub std: Option<[f32; 3]>,
}

impl PreprocessArgs {
    /// The overrides these flags ask for.
    pub fn to_override(&self) -> PreprocessOverride {
        PreprocessOverride {
            borrow: self.preprocess.clone(),
            resize: self.resize,
            crop: self.crop,
            interpolation: self.interpolation,
            mean: self.mean,
            std: self.std,
        }
    }
}

/// `224` or `224x192` (height x width).
pub fn parse_crop(s: &str) -> Result<[u32; 2], String> {
    let num = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("'{s}' is not a crop: use SIZE or HxW, e.g. 224"));
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok([num(h)?, num(w)?]),
        None => num(s).map(|v| [v, v]),
    }
}

/// `bilinear`, `bicubic` or `nearest`.
pub fn parse_interpolation(s: &str) -> Result<Interpolation, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_lowercase()))
        .map_err(|_| format!("unknown interpolation '{s}': use bilinear, bicubic or nearest"))
}

/// One number for all three channels, or three separated by commas.
pub fn parse_channels(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not a number or R,G,B"))?;
    match v[..] {
        [a] => Ok([a; 3]),
        [a, b, c] => Ok([a, b, c]),
        _ => Err(format!("'{s}': give one number or three (R,G,B)")),
    }
}
