//! The classifier as data. A [`Head`] knows where it lives (its checkpoint path: `fc`,
//! `classifier.6`, `last_linear`), how many classes it gives, how to replace itself for another
//! class count, and which variable prefixes are its own: what [`crate::models::Classifier`]'s
//! `num_classes`, `reset_classifier` and `classifier_prefixes` read, written once here rather
//! than in every model.
//!
//! [`HeadLinear`] is the one linear layer most networks end with; [`LinearHead`] adds what most
//! of them put before it (the `pre_logits` tap and dropout in training).
use super::layers::{path_of, Conv2d, ConvOpts, Linear, ModuleT};
use super::trace;
use tch::{nn, Tensor};

/// The layer(s) giving a network's class scores.
pub trait Head: std::fmt::Debug + Send {
    /// Classes given (0 when built without a head).
    fn num_classes(&self) -> i64;

    /// A fresh layer for `num_classes` (none for 0) at the same path under `root`, the var-store
    /// root the model was built on.
    fn reset(&mut self, root: &nn::Path, num_classes: i64);

    /// Variable-path prefixes of the head (`fc.`), for a model built at the store's root: what
    /// fine-tuning replaces and what a checkpoint for another class count may lack.
    fn prefixes(&self) -> Vec<String>;
}

/// Joins the components of a dotted path onto `root` (`classifier.6` → `root/classifier/6`).
pub fn at<'a>(root: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(root.clone(), |acc, part| acc.sub(part))
}

/// Where a head lives: its dotted path below the model root, and that root's own path.
#[derive(Debug, Clone)]
struct HeadPath {
    /// Below the model root, dotted (`classifier.1`).
    path: String,
    /// The model root's own dotted path (empty at the store's root).
    root: String,
}

impl HeadPath {
    fn new(root: &nn::Path, path: &str) -> Self {
        HeadPath { path: path.to_string(), root: path_of(root) }
    }

    fn under<'a>(&self, root: &nn::Path<'a>) -> nn::Path<'a> {
        at(root, &self.path)
    }

    fn prefixes(&self) -> Vec<String> {
        let (root, path) = (&self.root, &self.path);
        vec![if root.is_empty() { format!("{path}.") } else { format!("{root}.{path}.") }]
    }
}

/// One linear layer at a dotted path below the model root, absent when the model is built
/// without classes.
#[derive(Debug)]
pub struct HeadLinear {
    at: HeadPath,
    pub in_features: i64,
    pub linear: Option<Linear>,
}

impl HeadLinear {
    pub fn new(root: &nn::Path, path: &str, in_features: i64, num_classes: i64) -> Self {
        let mut head = HeadLinear { at: HeadPath::new(root, path), in_features, linear: None };
        head.reset(root, num_classes);
        head
    }

    /// The logits of `xs` (`[N, in_features]`), or `xs` itself without a layer.
    pub fn forward(&self, xs: Tensor, train: bool) -> Tensor {
        match &self.linear {
            Some(fc) => fc.forward_t(&xs, train),
            None => xs,
        }
    }
}

impl Head for HeadLinear {
    fn num_classes(&self) -> i64 {
        self.linear.as_ref().map_or(0, Linear::out_features)
    }

    fn reset(&mut self, root: &nn::Path, num_classes: i64) {
        self.linear = (num_classes > 0).then(|| Linear::new(&self.at.under(root), self.in_features, num_classes));
    }

    fn prefixes(&self) -> Vec<String> {
        self.at.prefixes()
    }
}

/// A 1×1 convolution (with bias) giving one map per class, for the networks whose classifier
/// is convolutional (SqueezeNet's `classifier.1`); absent when built without classes.
#[derive(Debug)]
pub struct HeadConv {
    at: HeadPath,
    pub in_channels: i64,
    pub conv: Option<Conv2d>,
}

impl HeadConv {
    pub fn new(root: &nn::Path, path: &str, in_channels: i64, num_classes: i64) -> Self {
        let mut head = HeadConv { at: HeadPath::new(root, path), in_channels, conv: None };
        head.reset(root, num_classes);
        head
    }
}

impl Head for HeadConv {
    fn num_classes(&self) -> i64 {
        self.conv.as_ref().map_or(0, |c| c.out_channels)
    }

    fn reset(&mut self, root: &nn::Path, num_classes: i64) {
        self.conv = (num_classes > 0)
            .then(|| Conv2d::new(&self.at.under(root), self.in_channels, num_classes, 1, ConvOpts::default()));
    }

    fn prefixes(&self) -> Vec<String> {
        self.at.prefixes()
    }
}

/// The classifier most networks end with: pooled features (the `pre_logits` tap), dropout in
/// training, and one linear layer under the model root, named as the reference names it (`fc`,
/// `output`, ...).
#[derive(Debug)]
pub struct LinearHead {
    pub head: HeadLinear,
    /// Dropout before the linear layer, in training only.
    pub drop_rate: f64,
}

impl LinearHead {
    pub fn new(root: &nn::Path, name: &str, in_features: i64, num_classes: i64, drop_rate: f64) -> Self {
        LinearHead { head: HeadLinear::new(root, name, in_features, num_classes), drop_rate }
    }

    /// Logits from pooled `[N, in_features]` features; with `pre_logits`, the features themselves.
    pub fn forward(&self, pooled: Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = trace::point("pre_logits", pooled);
        if pre_logits || self.head.linear.is_none() {
            return xs;
        }
        let xs = if train && self.drop_rate > 0.0 { xs.dropout(self.drop_rate, true) } else { xs };
        self.head.forward(xs, train)
    }
}

impl Head for LinearHead {
    fn num_classes(&self) -> i64 {
        self.head.num_classes()
    }

    fn reset(&mut self, root: &nn::Path, num_classes: i64) {
        self.head.reset(root, num_classes)
    }

    fn prefixes(&self) -> Vec<String> {
        self.head.prefixes()
    }
}
