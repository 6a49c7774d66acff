//! ZFNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014),
//! the network of the paper's Figure 3: AlexNet with a 7×7 stride-2 first layer (so the first
//! maps keep more detail), a stride-2 5×5 second layer, and dense (single-GPU) convolutions.
//! Map sizes follow the figure: 224 → 110 → 55 → 26 → 13 → 13 → 13 → 6.
use super::classic::{ClassicSpec, DropoutAt, L};

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
