//! Layers with checkpoint paths, the blocks several families share, model summaries, and
//! tracing of forward passes.
pub mod blocks;
pub mod head;
pub mod layers;
pub mod summary;
pub mod trace;

pub use blocks::*;
pub use head::{at, Head, HeadConv, HeadLinear, LinearHead};
pub use layers::*;
