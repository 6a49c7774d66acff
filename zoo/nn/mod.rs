//! Layers with checkpoint paths, and tracing of forward passes.
pub mod head;
pub mod layers;
pub mod trace;

pub use head::LinearHead;
pub use layers::*;
