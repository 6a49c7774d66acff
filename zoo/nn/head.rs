//! The classifier most networks end with: pooled features (the `pre_logits` tap), dropout in
//! training, and one linear layer, absent when the model is built without classes.
use super::layers::{path_of, Linear, ModuleT};
use super::trace;
use tch::{nn, Tensor};

/// A linear head under the model root, named as the reference names it (`fc`, `output`, ...).
#[derive(Debug)]
pub struct LinearHead {
    name: String,
    root: String,
    pub linear: Option<Linear>,
    pub in_features: i64,
    /// Dropout before the linear layer, in training only.
    pub drop_rate: f64,
}

impl LinearHead {
    pub fn new(root: &nn::Path, name: &str, in_features: i64, num_classes: i64, drop_rate: f64) -> Self {
        let linear = (num_classes > 0).then(|| Linear::new(&(root / name), in_features, num_classes));
        LinearHead { name: name.to_string(), root: path_of(root), linear, in_features, drop_rate }
    }

    /// Logits from pooled `[N, in_features]` features; with `pre_logits`, the features themselves.
    pub fn forward(&self, pooled: Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = trace::point("pre_logits", pooled);
        match (&self.linear, pre_logits) {
            (Some(fc), false) => {
                let xs = if train && self.drop_rate > 0.0 { xs.dropout(self.drop_rate, true) } else { xs };
                fc.forward_t(&xs, train)
            }
            _ => xs,
        }
    }

    pub fn num_classes(&self) -> i64 {
        self.linear.as_ref().map_or(0, Linear::out_features)
    }

    /// A fresh linear layer for `num_classes` (none for 0) at the same path.
    pub fn reset(&mut self, root: &nn::Path, num_classes: i64) {
        self.linear =
            (num_classes > 0).then(|| Linear::new(&(root / self.name.as_str()), self.in_features, num_classes));
    }

    /// Variable-path prefix of the linear layer (`fc.`), for a model built at the store's root.
    pub fn prefixes(&self) -> Vec<String> {
        let root = self.root.trim_end_matches('.');
        vec![if root.is_empty() { format!("{}.", self.name) } else { format!("{root}.{}.", self.name) }]
    }
}
