//! AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
//! Neural Networks", NIPS 2012).
//!
//! - `alexnet`: torchvision's version (from Krizhevsky's "One weird trick", 2014: 64-192-384-256-256
//!   channels, no LRN), whose checkpoint loads unchanged.
//! - `alexnet_lrn`: the 2012 network as published: 96-256-384-384-256 channels, local response
//!   normalisation after conv1 and conv2 (size 5, α 1e-4, β 0.75, k 2), overlapping 3×3/2 max
//!   pooling, and the two-GPU split kept as groups of 2 in conv2, conv4 and conv5. Input 227×227
//!   (the paper's "224" needs 227 for its 55×55 first map).
use super::classic::{ClassicNet, ClassicSpec, DropoutAt, L};
use super::registry::{row, ModelSpec};

const LRN: L = L::Lrn(5, 1e-4, 0.75, 2.0);

/// torchvision's `alexnet`.
pub fn spec() -> ClassicSpec {
    #[rustfmt::skip]
    let features = vec![
        L::Conv(64, 11, 4, 2, 1), L::Relu, L::MaxPool(3, 2, 0),
        L::Conv(192, 5, 1, 2, 1), L::Relu, L::MaxPool(3, 2, 0),
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(256, 3, 1, 1, 1), L::Relu,
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

/// The 2012 network with LRN and grouped convolutions.
pub fn spec_lrn() -> ClassicSpec {
    #[rustfmt::skip]
    let features = vec![
        L::Conv(96, 11, 4, 0, 1), L::Relu, LRN, L::MaxPool(3, 2, 0),
        L::Conv(256, 5, 1, 2, 2), L::Relu, LRN, L::MaxPool(3, 2, 0),
        L::Conv(384, 3, 1, 1, 1), L::Relu,
        L::Conv(384, 3, 1, 1, 2), L::Relu,
        L::Conv(256, 3, 1, 1, 2), L::Relu, L::MaxPool(3, 2, 0),
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

/// The paper, as listings cite it.
pub const PAPER: &str = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![
        row("alexnet", "AlexNet", PAPER, "classifier.6.", 224, 63, |p, b| Box::new(ClassicNet::new(p, &spec(), b))),
        row("alexnet_lrn", "AlexNet", PAPER, "classifier.6.", 227, 67, |p, b| {
            Box::new(ClassicNet::new(p, &spec_lrn(), b))
        }),
    ]
}
