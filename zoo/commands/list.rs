//! `zoo list [GLOB]` and `zoo info MODEL`: what the zoo holds, with no network and no weights.
use crate::models::{registry, Model, ModelSpec};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use tch::Device;

/// Models whose name matches `glob` (all when `None`), in registry order.
pub fn matching(glob: Option<&str>) -> Result<Vec<&'static ModelSpec>> {
    let matcher = match glob {
        Some(g) => Some(
            globset::GlobBuilder::new(&g.to_ascii_lowercase())
                .build()
                .with_context(|| format!("invalid pattern '{g}'"))?
                .compile_matcher(),
        ),
        None => None,
    };
    Ok(registry().iter().filter(|s| matcher.as_ref().is_none_or(|m| m.is_match(s.name))).collect())
}

/// Parameters of an architecture with its default head (built with zeroed weights: fast).
pub fn param_count(spec: &ModelSpec) -> i64 {
    crate::nn::without_init(|| {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _net = (spec.build)(&vs.root(), &spec.default_config());
        crate::models::count_params(&vs)
    })
}

/// The `zoo list` table.
pub fn list(glob: Option<&str>) -> Result<String> {
    let specs = matching(glob)?;
    let mut out = String::new();
    writeln!(out, "{:<22} {:<18} {:>12} {:>12}", "model", "family", "params", "input")?;
    for s in &specs {
        let [c, h, w] = s.input_size;
        writeln!(
            out,
            "{:<22} {:<18} {:>11.2}M {:>12}",
            s.name,
            s.family,
            param_count(s) as f64 / 1e6,
            format!("{c}x{h}x{w}")
        )?;
    }
    writeln!(out, "{} models", specs.len())?;
    Ok(out)
}

/// The `zoo info MODEL` report: paper, input, parameters, feature stages and top-level layers.
pub fn info(name: &str) -> Result<String> {
    let spec = crate::models::find(name)?;
    let model = crate::nn::without_init(|| Model::new(name, spec.default_config(), Device::Cpu))?;
    let s = model.spec;
    let mut out = String::new();
    writeln!(out, "{} ({})", s.name, s.family)?;
    writeln!(out, "paper:       {}", s.paper)?;
    writeln!(
        out,
        "input:       {}x{}x{} (at least {}x{})",
        s.input_size[0], s.input_size[1], s.input_size[2], s.min_input, s.min_input
    )?;
    writeln!(out, "parameters:  {} ({:.2}M)", model.num_params(), model.num_params() as f64 / 1e6)?;
    writeln!(out, "features:    {} (pre-logits width)", model.net.num_features())?;
    writeln!(out, "classes:     {}", s.num_classes)?;
    writeln!(out, "classifier:  {}", model.net.classifier_prefixes().join(", "))?;
    writeln!(out, "stages (name, channels, reduction):")?;
    for f in model.net.feature_info() {
        writeln!(out, "  {:<16} {:>6} {:>6}", f.name, f.channels, f.reduction)?;
    }
    Ok(out)
}
