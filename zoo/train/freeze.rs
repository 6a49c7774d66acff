//! Which variables fine-tuning leaves alone: `--freeze none|backbone|until:STAGE`.
//!
//! Freezing a variable means two things: it gets no gradient (`requires_grad = false`, and the
//! optimiser never sees it), and a frozen batch norm stays in eval mode while the rest of the
//! network trains: it normalises with its running statistics and never updates them. zoo's
//! layers take one `train` flag for the whole network, so the trainer marks the listed batch
//! norms frozen through the model's [`crate::nn::BatchNorms`] (the mode is held by each layer,
//! on whatever thread the forward pass runs), which makes them ignore that flag; no statistics
//! are snapshotted and restored, and the forward pass is the one PyTorch runs with `bn.eval()`
//! on frozen modules.
//!
//! `until:STAGE` freezes everything the forward pass runs up to the end of STAGE (a name from
//! `feature_info`, e.g. `layer3`): the order comes from tracing one eval forward pass, so stems
//! and layers between named stages are covered without a table per architecture.
use crate::models::{is_buffer, Model};
use crate::nn::trace;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use tch::{Device, Kind, Tensor};

/// What to freeze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Freeze {
    /// Train everything.
    #[default]
    None,
    /// Train only the classifier head(s).
    Backbone,
    /// Freeze from the input up to and including this feature stage.
    Until(String),
}

impl std::str::FromStr for Freeze {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "none" => Ok(Freeze::None),
            "backbone" => Ok(Freeze::Backbone),
            _ => match t.strip_prefix("until:") {
                Some(stage) if !stage.is_empty() => Ok(Freeze::Until(stage.to_string())),
                _ => bail!("unknown --freeze '{s}': use none, backbone or until:STAGE (e.g. until:layer3)"),
            },
        }
    }
}

impl std::fmt::Display for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Freeze::None => f.write_str("none"),
            Freeze::Backbone => f.write_str("backbone"),
            Freeze::Until(s) => write!(f, "until:{s}"),
        }
    }
}

/// The frozen part of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frozen {
    /// Frozen variable paths (parameters and buffers).
    pub vars: BTreeSet<String>,
    /// Dotted paths of the batch norms kept in eval mode.
    pub batch_norms: HashSet<String>,
}

impl Frozen {
    /// Whether the variable at `name` is frozen.
    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains(name)
    }
}

/// Stage names of a model, for messages.
pub fn stage_names(model: &Model) -> Vec<String> {
    model.net.feature_info().into_iter().map(|f| f.name).collect()
}

/// Works out what `freeze` covers in `model`; `input` is the `[C, H, W]` of one sample.
pub fn resolve(model: &Model, freeze: &Freeze, input: [i64; 3]) -> Result<Frozen> {
    let names: Vec<String> = model.vs.variables().into_keys().collect();
    let vars: BTreeSet<String> = match freeze {
        Freeze::None => BTreeSet::new(),
        Freeze::Backbone => {
            let head = model.net.classifier_prefixes();
            names.iter().filter(|n| !head.iter().any(|p| n.starts_with(p.as_str()))).cloned().collect()
        }
        Freeze::Until(stage) => {
            let stages = stage_names(model);
            if !stages.iter().any(|s| s == stage) {
                bail!(
                    "--freeze until:{stage}: {} has no stage named '{stage}'; its stages are: {}",
                    model.spec.name,
                    stages.join(", ")
                );
            }
            until(model, stage, input, &names)?
        }
    };
    let batch_norms = vars.iter().filter_map(|v| v.strip_suffix(".running_mean")).map(str::to_string).collect();
    Ok(Frozen { vars, batch_norms })
}

/// Variables of every layer the forward pass enters before STAGE's subtree ends.
fn until(model: &Model, stage: &str, input: [i64; 3], names: &[String]) -> Result<BTreeSet<String>> {
    let device = model.vs.device();
    let xs = Tensor::zeros([1, input[0], input[1], input[2]], (Kind::Float, Device::Cpu)).to_device(device);
    let (_, events) = tch::no_grad(|| trace::record(|| model.net.forward_t(&xs, false)));
    // Subtree end of event i: the first later event at the same or a shallower depth.
    let end_of = |i: usize| -> usize {
        let d = events[i].depth;
        (i + 1..events.len()).find(|&j| events[j].depth <= d).unwrap_or(events.len())
    };
    let Some(at) = events.iter().position(|e| e.path == stage) else {
        bail!("--freeze until:{stage}: the stage did not show up in a traced forward pass of {}", model.spec.name);
    };
    let limit = end_of(at);
    let mut frozen = BTreeSet::new();
    for name in names {
        // The deepest traced layer owning this variable.
        let owner = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.path.is_empty() && name.starts_with(&format!("{}.", e.path)))
            .max_by_key(|(_, e)| e.path.len());
        // A layer is frozen when its whole subtree runs before STAGE ends (a container that
        // straddles the end, such as the model's `features`, is decided by its children).
        if let Some((i, _)) = owner {
            if end_of(i) <= limit {
                frozen.insert(name.clone());
            }
        }
    }
    if frozen.iter().all(|n| is_buffer(n)) {
        bail!("--freeze until:{stage} covers no parameter of {}", model.spec.name);
    }
    Ok(frozen)
}
