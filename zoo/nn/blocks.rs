//! Blocks more than one family is built from: channel rounding ([`make_divisible`]), the
//! inverted residual shortcut (MobileNet v2 and v3), squeeze-excitation (MobileNet v3) and
//! ShuffleNet's channel shuffle (v1 and v2).
use super::layers::{path_of, Conv2d, ConvOpts, ModuleT, Sequential};
use super::trace::{self, Op};
use tch::{nn, Tensor};

/// ShuffleNet's channel shuffle: interleaves the channels of `groups` groups ([N, g·c, H, W]
/// viewed as [N, g, c, H, W], transposed to [N, c, g, H, W] and flattened back). Written
/// without reading the input's sizes, so a traced (exported) graph takes any batch and size.
pub fn channel_shuffle(xs: &Tensor, groups: i64) -> Tensor {
    xs.unflatten(1, [groups, -1]).transpose(1, 2).flatten(1, 2)
}

/// torchvision's (and TF slim's) `_make_divisible`: `v` rounded to the nearest multiple of
/// `divisor`, at least `divisor`, and never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as i64) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// The inverted residual block of MobileNet v2 and v3 (`features.N`): a body (v2's expand 1×1,
/// depthwise 3×3 and linear projection; v3's with squeeze-excitation and hard-swish), the input
/// added back when shapes agree.
#[derive(Debug)]
pub struct InvertedResidual {
    path: String,
    body: Sequential,
    use_res_connect: bool,
}

impl InvertedResidual {
    /// The block at `p` around `body`, with the identity shortcut when `use_res_connect`.
    pub fn with_body(p: &nn::Path, body: Sequential, use_res_connect: bool) -> Self {
        InvertedResidual { path: path_of(p), body, use_res_connect }
    }
}

impl ModuleT for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("InvertedResidual"),
            xs,
            |xs| {
                let ys = self.body.forward_t(xs, train);
                if self.use_res_connect {
                    ys + xs
                } else {
                    ys
                }
            },
        )
    }
}

/// torchvision's `SqueezeExcitation`: global pool, `fc1` 1×1 conv, ReLU, `fc2` 1×1 conv,
/// hard-sigmoid, times the input.
#[derive(Debug)]
pub struct SqueezeExcitation {
    path: String,
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SqueezeExcitation {
    /// `fc1` squeezes `channels` to `squeeze`, `fc2` expands back.
    pub fn new(p: &nn::Path, channels: i64, squeeze: i64) -> Self {
        SqueezeExcitation {
            path: path_of(p),
            fc1: Conv2d::new(&(p / "fc1"), channels, squeeze, 1, ConvOpts::default()),
            fc2: Conv2d::new(&(p / "fc2"), squeeze, channels, 1, ConvOpts::default()),
        }
    }
}

impl ModuleT for SqueezeExcitation {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("SqueezeExcitation"),
            xs,
            |xs| {
                let scale = xs.mean_dim(&[-2i64, -1][..], true, None);
                let scale = self.fc1.forward_t(&scale, train).relu();
                let scale = self.fc2.forward_t(&scale, train).hardsigmoid();
                scale * xs
            },
        )
    }
}
