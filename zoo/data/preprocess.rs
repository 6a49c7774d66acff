//! Evaluation preprocessing as data: what a weights entry says its network expects.
//!
//! The fields mirror torchvision's eval transform (`Resize(resize)`, `CenterCrop(crop)`,
//! `ToTensor()`, `Normalize(mean, std)`) plus the two conventions older checkpoints use
//! (BGR channel order, 0-255 value range, e.g. Cadene's BN-Inception).
use serde::{Deserialize, Serialize};

/// Resampling filter for the resize step (PIL's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    #[default]
    Bilinear,
    Bicubic,
}

impl Interpolation {
    /// PIL's (and the manifest's) name: `nearest`, `bilinear`, `bicubic`.
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
}

/// Channel order of the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// Eval-time preprocessing of one weights entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Shorter side after resizing (aspect ratio kept), as torchvision's `Resize(int)`.
    pub resize: u32,
    /// Center crop, height and width.
    pub crop: [u32; 2],
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Per-channel mean, in the network's channel order and value range.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in the network's channel order and value range.
    pub std: [f32; 3],
    #[serde(default)]
    pub channel_order: ChannelOrder,
    /// Largest pixel value before normalisation: 1.0 (ToTensor) or 255.0.
    #[serde(default = "one")]
    pub value_range: f32,
    /// Number of input channels (3, or 1 for grayscale networks such as LeNet-5).
    #[serde(default = "three")]
    pub channels: u32,
}

fn one() -> f32 {
    1.0
}
fn three() -> u32 {
    3
}

impl Preprocess {
    /// torchvision's ImageNet eval transform: resize 256, crop 224, bilinear, ImageNet mean/std.
    pub fn imagenet(resize: u32, crop: u32) -> Self {
        Preprocess {
            resize,
            crop: [crop, crop],
            interpolation: Interpolation::Bilinear,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channel_order: ChannelOrder::Rgb,
            value_range: 1.0,
            channels: 3,
        }
    }

    /// The ImageNet default for a network whose input is `crop` pixels square
    /// (resize by the usual 0.875 crop ratio).
    pub fn imagenet_for_input(crop: u32) -> Self {
        let resize = ((crop as f64) / 0.875).round() as u32;
        Self::imagenet(resize, crop)
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::imagenet(256, 224)
    }
}
