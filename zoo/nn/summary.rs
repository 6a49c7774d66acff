//! Model summaries (`zoo summary`): per-layer output shapes, parameters, multiply-adds, activation memory and
//! receptive field, read from a traced forward pass of the real model (no hand-kept tables).
//!
//! Receptive field arithmetic (Araujo et al., "Computing Receptive Fields of Convolutional Neural
//! Networks", Distill 2019): a layer with effective kernel k (dilation included), stride s and
//! padding p maps the input's field r, jump j and start x0 to
//! `r' = r + (k - 1)·j`, `j' = j·s`, `x0' = x0 + ((k - 1)/2 - p)·j`. Branches are followed by
//! tensor identity; a block's output takes the largest field of the layers inside it (the union
//! of parallel paths, as for concatenation and residual sums).
use crate::models::{find, BuildConfig, Model};
use crate::nn::trace::{self, Event, Op};
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Receptive field of one unit of a layer's output, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Field {
    /// Side of the field (pixels); `None` after global pooling (the whole image).
    pub size: Option<i64>,
    /// Distance in input pixels between adjacent output units (the effective stride).
    pub jump: i64,
    /// Input coordinate of the centre of the first output unit's field.
    pub start: f64,
}

impl Field {
    const INPUT: Field = Field { size: Some(1), jump: 1, start: 0.5 };

    fn through(self, kernel: i64, stride: i64, padding: i64) -> Field {
        Field {
            size: self.size.map(|r| r + (kernel - 1) * self.jump),
            jump: self.jump * stride,
            start: self.start + ((kernel - 1) as f64 / 2.0 - padding as f64) * self.jump as f64,
        }
    }

    fn global(self) -> Field {
        Field { size: None, ..self }
    }

    fn wider(self, other: Field) -> Field {
        match (self.size, other.size) {
            (None, _) => self,
            (_, None) => other,
            (Some(a), Some(b)) if b > a => other,
            _ => self,
        }
    }
}

/// One row of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub depth: usize,
    pub output_shape: Vec<i64>,
    pub params: i64,
    pub trainable: i64,
    pub macs: i64,
    /// Bytes of this layer's output for the batch.
    pub activation_bytes: i64,
    pub field: Field,
    /// Whether the layer is a leaf (conv, linear, norm, pool, activation), not a block.
    pub leaf: bool,
}

/// The summary of one model at one input size.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub model: String,
    pub input: [i64; 4],
    pub rows: Vec<Row>,
    pub params: i64,
    pub trainable: i64,
    pub macs: i64,
    pub param_bytes: i64,
    pub activation_bytes: i64,
    pub conv_macs: i64,
    pub fc_macs: i64,
    pub conv_params: i64,
    pub fc_params: i64,
    /// Receptive field at the last stage of `feature_info`.
    pub last_stage_field: Option<i64>,
}

/// Multiply-adds of one layer for the whole batch.
fn macs(op: &Op, out: &[i64]) -> i64 {
    match op {
        Op::Conv { in_channels, kernel, groups, .. } => {
            out.iter().product::<i64>() * (in_channels / groups) * kernel[0] * kernel[1]
        }
        Op::Linear { in_features, .. } => out.iter().product::<i64>() * in_features,
        _ => 0,
    }
}

/// Traces `model` on a batch of zeros and builds the summary.
pub fn summarize(model: &Model, batch: i64, height: i64, width: i64) -> Result<Summary> {
    let c = model.spec.input_size[0];
    let xs = Tensor::zeros([batch, c, height, width], (Kind::Float, model.vs.device()));
    model.check_input(&xs)?;
    let last_stage = model.net.feature_info().last().map(|f| f.name.clone());
    Ok(summarize_forward(model.spec.name, &model.vs, &xs, |x| model.net.forward_t(x, false), last_stage))
}

/// Summarises any forward pass built from zoo layers over the variables of `vs`: the core of
/// [`summarize`], usable on a hand-built stack of layers.
pub fn summarize_forward(
    name: &str,
    vs: &tch::nn::VarStore,
    xs: &Tensor,
    forward: impl FnOnce(&Tensor) -> Tensor,
    last_stage: Option<String>,
) -> Summary {
    let (_, events) = trace::record(|| tch::no_grad(|| forward(xs)));
    let vars = vs.variables();
    let input = xs.size();
    let (mut fields, mut rows) = (HashMap::from([(xs.data_ptr() as usize, Field::INPUT)]), Vec::new());
    let mut last = Field::INPUT;
    // Children come after their container; fix containers up once their subtree is done.
    let mut open: Vec<(usize, usize)> = Vec::new(); // (row index, depth)
    for ev in &events {
        while let Some(&(i, d)) = open.last() {
            if ev.depth > d {
                break;
            }
            open.pop();
            close_container(&mut rows, i, &mut fields, &events[i]);
        }
        let input = fields.get(&ev.input_ptr).copied().unwrap_or(last);
        let field = match &ev.op {
            Op::Conv { kernel, stride, padding, dilation, .. } => {
                input.through(dilation[0] * (kernel[0] - 1) + 1, stride[0], padding[0])
            }
            Op::Pool { kernel, stride, padding, .. } => input.through(kernel[0], stride[0], padding[0]),
            Op::GlobalPool { .. } | Op::Linear { .. } => input.global(),
            _ => input,
        };
        let leaf = !matches!(ev.op, Op::Container(_));
        if leaf {
            fields.insert(ev.output_ptr, field);
            last = field;
        }
        let prefix = format!("{}.", ev.path);
        let owned: Vec<&Tensor> = vars
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !crate::models::is_buffer(k))
            .map(|(_, t)| t)
            .collect();
        let params: i64 = owned.iter().map(|t| t.numel() as i64).sum();
        let trainable: i64 = owned.iter().filter(|t| t.requires_grad()).map(|t| t.numel() as i64).sum();
        rows.push(Row {
            name: ev.path.clone(),
            kind: ev.op.type_name().to_string(),
            depth: ev.depth,
            output_shape: ev.output_shape.clone(),
            params,
            trainable,
            macs: macs(&ev.op, &ev.output_shape),
            activation_bytes: ev.output_shape.iter().product::<i64>() * 4,
            field,
            leaf,
        });
        if !leaf {
            open.push((rows.len() - 1, ev.depth));
        }
    }
    while let Some((i, _)) = open.pop() {
        close_container(&mut rows, i, &mut fields, &events[i]);
    }
    let leaves = || rows.iter().zip(&events).filter(|(r, _)| r.leaf);
    let sum = |f: &dyn Fn(&Row, &Event) -> i64| leaves().map(|(r, e)| f(r, e)).sum::<i64>();
    let is_conv = |e: &Event| matches!(e.op, Op::Conv { .. });
    let is_fc = |e: &Event| matches!(e.op, Op::Linear { .. });
    // A module run more than once (EfficientNet-Lite's shared `_swish`) is the stage at its last run.
    let last_stage_field = last_stage.and_then(|s| rows.iter().rev().find(|r| r.name == s)).and_then(|r| r.field.size);
    Summary {
        model: name.to_string(),
        input: [input[0], input[1], input[2], input[3]],
        params: crate::models::count_params(vs),
        trainable: vars
            .iter()
            .filter(|(k, t)| !crate::models::is_buffer(k) && t.requires_grad())
            .map(|(_, t)| t.numel() as i64)
            .sum(),
        macs: sum(&|r, _| r.macs),
        param_bytes: vars.values().map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum(),
        activation_bytes: sum(&|r, _| r.activation_bytes),
        conv_macs: sum(&|r, e| if is_conv(e) { r.macs } else { 0 }),
        fc_macs: sum(&|r, e| if is_fc(e) { r.macs } else { 0 }),
        conv_params: sum(&|r, e| if is_conv(e) { r.params } else { 0 }),
        fc_params: sum(&|r, e| if is_fc(e) { r.params } else { 0 }),
        last_stage_field,
        rows,
    }
}

/// A block's field is the widest of the layers inside it (its output tensor maps to that field),
/// and its multiply-adds are the sum of its layers'.
fn close_container(rows: &mut [Row], i: usize, fields: &mut HashMap<usize, Field>, ev: &Event) {
    let depth = rows[i].depth;
    let mut field = rows[i].field;
    let mut first = true;
    let mut macs = 0;
    for r in rows[i + 1..].iter().take_while(|r| r.depth > depth) {
        field = if first { r.field } else { field.wider(r.field) };
        first = false;
        if r.leaf {
            macs += r.macs;
        }
    }
    rows[i].field = field;
    rows[i].macs = macs;
    fields.insert(ev.output_ptr, field);
}

/// Builds `name` (zeroed weights: values do not matter here) and summarises it.
pub fn summarize_name(name: &str, batch: i64, size: Option<(i64, i64)>) -> Result<Summary> {
    let spec = find(name)?;
    let model = crate::nn::without_init(|| Model::new(name, BuildConfig { ..spec.default_config() }, Device::Cpu))?;
    let (h, w) = size.unwrap_or((spec.input_size[1], spec.input_size[2]));
    if batch < 1 {
        bail!("--batch must be at least 1");
    }
    summarize(&model, batch, h, w)
}

/// One line of `zoo summary --compare`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub model: String,
    pub params: i64,
    pub macs: i64,
    /// ImageNet-1k top-1 of the model's default weights, from the manifest (`None` where the
    /// default weights are another data set's: lenet5's Fashion-MNIST).
    pub top1: Option<f64>,
    pub field: Option<i64>,
}

/// Column to sort a comparison by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SortBy {
    Name,
    Params,
    Macs,
    Top1,
    Field,
}

/// One line per model: parameters, multiply-adds, top-1 of the default weights, receptive field.
pub fn compare(models: &[String], size: Option<(i64, i64)>, sort: SortBy) -> Result<Vec<CompareRow>> {
    let mut rows = Vec::new();
    for name in models {
        let s = summarize_name(name, 1, size)?;
        rows.push(CompareRow {
            model: s.model.clone(),
            params: s.params,
            macs: s.macs,
            top1: crate::weights::default_imagenet_top1(&s.model),
            field: s.last_stage_field,
        });
    }
    let key = |r: &CompareRow| -> f64 {
        match sort {
            SortBy::Name => 0.0,
            SortBy::Params => r.params as f64,
            SortBy::Macs => r.macs as f64,
            SortBy::Top1 => r.top1.unwrap_or(f64::MIN),
            SortBy::Field => r.field.unwrap_or(i64::MAX) as f64,
        }
    };
    if sort == SortBy::Name {
        rows.sort_by(|a, b| a.model.cmp(&b.model));
    } else {
        rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
    }
    Ok(rows)
}
