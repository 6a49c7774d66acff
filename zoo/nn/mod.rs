//! Layers with checkpoint paths, and tracing of forward passes.
pub mod layers;
pub mod trace;

pub use layers::*;
