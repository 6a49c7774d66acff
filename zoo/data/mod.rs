//! Images, preprocessing, class names and data sets.
pub mod batch;
pub mod fashion_mnist;
pub mod image;
pub mod inputs;
pub mod prefetch;
pub mod preprocess;
pub mod transform;
