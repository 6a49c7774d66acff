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

/// `zoo list --format json`: one object per model (name, family, params, input).
pub fn list_json(glob: Option<&str>) -> Result<String> {
    let rows: Vec<serde_json::Value> = matching(glob)?
        .iter()
        .map(|s| {
            serde_json::json!({
                "model": s.name,
                "family": s.family,
                "params": param_count(s),
                "input_size": s.input_size,
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&rows)? + "\n")
}

/// The `zoo info MODEL` report as JSON: what [`info`] prints, plus the weights entry's
/// preprocessing and metrics when `name` is `ARCH.TAG` (or `ARCH` with default weights).
pub fn info_json(name: &str) -> Result<String> {
    let (model, entry) = info_parts(name)?;
    let s = model.spec;
    let stages: Vec<serde_json::Value> = model
        .net
        .feature_info()
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "channels": f.channels, "reduction": f.reduction}))
        .collect();
    let v = serde_json::json!({
        "model": s.name,
        "family": s.family,
        "paper": s.paper,
        "input_size": s.input_size,
        "min_input": s.min_input,
        "params": model.num_params(),
        "num_features": model.net.num_features(),
        "num_classes": s.num_classes,
        "classifier": model.net.classifier_prefixes(),
        "stages": stages,
        "weights": entry,
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// The model named by `ARCH` or `ARCH.TAG` (built with zeroed weights) and the weights entry the
/// name resolves to, if any.
fn info_parts(name: &str) -> Result<(Model, Option<&'static crate::weights::WeightsEntry>)> {
    let spec = crate::weights::pretrained::arch_of(name)?;
    let entry = crate::weights::pretrained::entry_for(name)?;
    let model = crate::nn::without_init(|| Model::new(spec.name, spec.default_config(), Device::Cpu))?;
    Ok((model, entry))
}

/// `zoo info MODEL --layers`: every layer name `zoo features --layer` takes, one per line.
pub fn layers(name: &str) -> Result<String> {
    let (model, _) = info_parts(name)?;
    Ok(model.layer_names().into_iter().map(|n| n + "\n").collect())
}

/// The `zoo info MODEL` report: paper, input, parameters, feature stages and top-level layers;
/// with `ARCH.TAG`, also that entry's preprocessing and published accuracy.
pub fn info(name: &str) -> Result<String> {
    let (model, entry) = info_parts(name)?;
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
    if let Some(e) = entry {
        let p = &e.preprocess;
        writeln!(out, "weights:     {} ({} classes)", e.name, e.num_classes)?;
        writeln!(
            out,
            "preprocess:  resize {} ({}), crop {}x{}, mean {:?}, std {:?}",
            p.resize,
            p.interpolation.name(),
            p.crop[0],
            p.crop[1],
            p.mean,
            p.std
        )?;
        if let Some(a) = e.acc1 {
            writeln!(out, "top-1:       {a:.2}%")?;
        }
    }
    Ok(out)
}
