//! Images, preprocessing, class names and data sets.
pub mod preprocess;
