//! Class names of a weights entry: ImageNet-1k's built in (torchvision's `_IMAGENET_CATEGORIES`
//! order, `zoo/data/imagenet_classes.txt`), or a file named by the entry.
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use super::manifest::WeightsEntry;

const IMAGENET_CLASSES_TXT: &str = include_str!("../data/imagenet_classes.txt");

/// The 1000 ImageNet-1k class names, index = class id, in torchvision's order.
pub fn imagenet_classes() -> &'static [&'static str] {
    static CLASSES: OnceLock<Vec<&'static str>> = OnceLock::new();
    CLASSES.get_or_init(|| IMAGENET_CLASSES_TXT.lines().filter(|l| !l.is_empty()).collect())
}

/// The 1000 ImageNet-1k WordNet IDs (`n01440764` ...), index = class id: the folder names of
/// ImageNet's own train and val trees. From timm (`timm/data/_info/imagenet_synsets.txt`).
pub fn imagenet_synsets() -> &'static [&'static str] {
    static SYNSETS: OnceLock<Vec<&'static str>> = OnceLock::new();
    SYNSETS.get_or_init(|| IMAGENET_SYNSETS_TXT.lines().filter(|l| !l.is_empty()).collect())
}

const IMAGENET_SYNSETS_TXT: &str = include_str!("../data/imagenet_synsets.txt");

/// The ImageNet-1k class of a WordNet-ID folder name (`n02123045`), when `labels` are
/// ImageNet-1k's.
pub fn imagenet_class_of_synset(labels: &[String], folder: &str) -> Option<usize> {
    let classes = imagenet_classes();
    if labels.len() != classes.len() || labels.iter().zip(classes).any(|(a, b)| a != b) {
        return None;
    }
    imagenet_synsets().iter().position(|s| *s == folder)
}

/// Fashion-MNIST's classes in the order `zoo dataset export-idx` folders sort (the output order
/// of the shipped `lenet5.fashion_mnist`).
pub const FASHION_MNIST_FOLDERS: [&str; 10] =
    ["Ankle_boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt_top", "Trouser"];

/// The class names an entry's model predicts: `imagenet1k`, `fashion_mnist`, or a text file (one
/// name per line; a relative path is taken from the zoo home, `$ZOO_HOME`).
pub fn category_names(entry: &WeightsEntry) -> Result<Vec<String>> {
    if entry.categories.eq_ignore_ascii_case("imagenet1k") {
        return Ok(imagenet_classes().iter().map(|s| s.to_string()).collect());
    }
    if entry.categories.eq_ignore_ascii_case("fashion_mnist") {
        return Ok(FASHION_MNIST_FOLDERS.iter().map(|s| s.to_string()).collect());
    }
    let mut path = PathBuf::from(&entry.categories);
    if path.is_relative() {
        path = super::cache::zoo_home().join(path);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the categories of {} from {}", entry.name, path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}
