//! ZFNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014),
//! the network of the paper's Figure 3: AlexNet with a 7×7 stride-2 first layer (so the first
//! maps keep more detail), a stride-2 5×5 second layer, and dense (single-GPU) convolutions.
//! Map sizes follow the figure: 224 → 110 → 55 → 26 → 13 → 13 → 13 → 6.
//!
//! [`spec_pytorchcv`] is the network pytorchcv trained its `zfnet` weights on (`pytorchcv/models/
//! zfnet.py` on its `AlexNet`): the same layers, but LRN right after the first two ReLUs and
//! before the pools, which are unpadded and round up (`ceil_mode`), and dropout after each hidden
//! ReLU. Map sizes at 224: 110 → 55 → 26 → 13 → 13 → 13 → 6, as the paper's.
use super::classic::{ClassicNet, ClassicSpec, DropoutAt, L};
use super::registry::{row, ModelSpec};

/// Contrast normalisation across feature maps, as AlexNet's LRN.
const LRN: L = L::Lrn(5, 1e-4, 0.75, 2.0);

pub fn spec() -> ClassicSpec {
    #[rustfmt::skip]
    let features = vec![
        L::Conv(96, 7, 2, 1, 1), L::Relu, L::MaxPool(3, 2, 1), LRN,
        L::Conv(256, 5, 2, 0, 1), L::Relu, L::MaxPool(3, 2, 1), LRN,
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(256, 3, 1, 1, 1), L::Relu, L::MaxPool(3, 2, 0),
    ];
    ClassicSpec {
        in_channels: 3,
        features,
        avgpool: 6,
        hidden: &[4096, 4096],
        dropout: DropoutAt::Before,
        dropout_rate: 0.5,
    }
}

/// pytorchcv's ZFNet (`zfnet`): conv, ReLU, LRN, then a 3×3/2 max pool without padding in ceil
/// mode, for the first two layers; the third pool likewise; classifier Linear, ReLU, Dropout
/// twice, then the output layer (pytorchcv's `AlexDense`). Paths `features.0/4/8/10/12` for the
/// convolutions and `classifier.0/3/6` for the linear layers. pytorchcv flattens the 6×6 map of
/// a 224 input without an adaptive pool; the zoo's `avgpool` (to 6×6) is the identity there and
/// lets other sizes through (from 47: its ceil-mode pools accept windows that overhang).
pub fn spec_pytorchcv() -> ClassicSpec {
    #[rustfmt::skip]
    let features = vec![
        L::Conv(96, 7, 2, 1, 1), L::Relu, LRN, L::MaxPoolCeil(3, 2, 0),
        L::Conv(256, 5, 2, 0, 1), L::Relu, LRN, L::MaxPoolCeil(3, 2, 0),
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(256, 3, 1, 1, 1), L::Relu, L::MaxPoolCeil(3, 2, 0),
    ];
    ClassicSpec { features, dropout: DropoutAt::After, ..spec() }
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("zfnet", "ZFNet", PAPER, "classifier.6.", 224, 35, |p, b| Box::new(ClassicNet::new(p, &spec(), b))),
        row("zfnet_pytorchcv", "ZFNet", PAPER, "classifier.6.", 224, 47, |p, b| {
            Box::new(ClassicNet::new(p, &spec_pytorchcv(), b))
        }),
    ]
}
