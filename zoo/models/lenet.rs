//! LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
//! Recognition", Proc. IEEE 1998): CONV-POOL-CONV-POOL-FC-FC-FC on a 32×32 single-channel
//! image. C1: 6 maps 5×5, S2: 2×2/2, C3: 16 maps 5×5, S4: 2×2/2, C5: 120 units (fully
//! connected to the 16×5×5 map), F6: 84, output: one unit per class.
//!
//! Modernised as most courses teach it: ReLU and max pooling in place of the scaled tanh and
//! trainable sub-sampling, and a linear output instead of the RBF layer; the layer table and
//! parameter count of the convolutional and fully connected layers are the paper's. An
//! adaptive 5×5 pool (identity at 32×32) lets larger inputs through.
use super::classic::{ClassicNet, ClassicSpec, DropoutAt, L};
use super::registry::{row, ModelSpec};

pub fn spec() -> ClassicSpec {
    #[rustfmt::skip]
    let features = vec![
        L::Conv(6, 5, 1, 0, 1), L::Relu, L::MaxPool(2, 2, 0),
        L::Conv(16, 5, 1, 0, 1), L::Relu, L::MaxPool(2, 2, 0),
    ];
    ClassicSpec {
        in_channels: 1,
        features,
        avgpool: 5,
        hidden: &[120, 84],
        dropout: DropoutAt::Never,
        dropout_rate: 0.0,
    }
}

/// The paper, as listings cite it.
pub const PAPER: &str = "LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    let lenet5 =
        row("lenet5", "LeNet", PAPER, "classifier.4.", 32, 32, |p, b| Box::new(ClassicNet::new(p, &spec(), b)));
    vec![ModelSpec { input_size: [1, 32, 32], num_classes: 10, ..lenet5 }]
}
