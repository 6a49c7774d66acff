//! ONNX, written by zoo: each operator of the traced forward pass ([`Graph`], from
//! `zoo/export/jit.cpp`) mapped to standard ONNX operators, the model's tensors as initializers
//! under their checkpoint keys, node names from the zoo layer they ran in, and the
//! preprocessing and class names in `metadata_props`. The types are prost's, generated from
//! ONNX's own schema (`onnx.proto`, by `tools/onnx-proto`).
//!
//! The batch dimension is dynamic (`batch`) unless asked otherwise; heights and widths are the
//! exported ones (adaptive pooling and reshapes are resolved at that size).
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod proto {
    include!("proto.rs");
}

use super::{ExportOptions, TRACE_BATCH};
use crate::models::Model;
use crate::nn::trace::Op;
use anyhow::{anyhow, bail, Context, Result};
use proto::attribute_proto::AttributeType;
use proto::tensor_proto::DataType;
use serde::Deserialize;
use std::collections::HashMap;

/// The oldest opset zoo writes (Split's and Squeeze's sizes as inputs, ONNX 1.8).
pub const MIN_OPSET: i64 = 13;
/// The newest opset zoo writes.
pub const MAX_OPSET: i64 = 21;
/// The default: read by ONNX Runtime 1.14 and later, OpenVINO 2022.3 and later, TensorRT 8.6.
pub const DEFAULT_OPSET: i64 = 17;

/// The traced graph as `zoo/export/jit.cpp` writes it.
#[derive(Debug, Deserialize)]
pub struct Graph {
    pub inputs: Vec<Value>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<u64>,
}

/// A value: its id and, for tensors, the sizes it had in the trace.
#[derive(Debug, Clone, Deserialize)]
pub struct Value {
    pub id: u64,
    pub sizes: Option<Vec<i64>>,
}

/// One operator of the traced graph.
#[derive(Debug, Deserialize)]
pub struct Node {
    /// `aten::_convolution`, `prim::Constant`, ...
    pub kind: String,
    /// For a parameter read (`prim::GetAttr`), its checkpoint key.
    pub param: Option<String>,
    /// For a `prim::Constant`, its value.
    pub value: Option<Const>,
    /// The zoo layer the operator ran in (`layer1.0.conv1`), empty at the top level.
    pub scope: String,
    pub inputs: Vec<u64>,
    pub outputs: Vec<Value>,
}

/// A constant's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Const {
    None(bool),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ints(Vec<i64>),
    Tensor { sizes: Vec<i64>, dtype: String, data: Vec<f64> },
    Unsupported(String),
}

impl Graph {
    pub fn parse(json: &str) -> Result<Graph> {
        serde_json::from_str(json).context("reading the traced graph")
    }
}

/// What a traced value is while the ONNX graph is written.
#[derive(Debug, Clone)]
enum Sym {
    /// An ONNX tensor (node output, graph input or initializer) and its traced sizes.
    Tensor(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Str,
    Ints(Vec<i64>),
    Tensors(Vec<String>),
}

/// The ONNX graph being written.
struct Writer {
    opset: i64,
    static_batch: bool,
    vars: HashMap<String, tch::Tensor>,
    syms: HashMap<u64, Sym>,
    sizes: HashMap<String, Vec<i64>>,
    nodes: Vec<proto::NodeProto>,
    initializers: Vec<proto::TensorProto>,
    params: Vec<String>,
    constants: usize,
    names: HashMap<String, usize>,
}

fn attr_int(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v as f32),
        ..Default::default()
    }
}

fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>], batch: &str) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam(batch.into()),
            }),
            ..Default::default()
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An operand of an ONNX node: a tensor name, or "" for an absent optional input.
type Operand = String;

impl Writer {
    fn sym(&self, id: u64) -> Result<&Sym> {
        self.syms.get(&id).ok_or_else(|| anyhow!("value %{id} is used before it is defined"))
    }

    fn tensor(&self, id: u64) -> Result<String> {
        match self.sym(id)? {
            Sym::Tensor(t) => Ok(t.clone()),
            other => bail!("expected a tensor, got {other:?}"),
        }
    }

    fn opt_tensor(&self, id: u64) -> Result<Option<String>> {
        match self.sym(id)? {
            Sym::None => Ok(None),
            _ => self.tensor(id).map(Some),
        }
    }

    fn int(&self, id: u64) -> Result<i64> {
        match self.sym(id)? {
            Sym::Int(v) => Ok(*v),
            Sym::Bool(b) => Ok(*b as i64),
            other => bail!("expected an integer constant, got {other:?}"),
        }
    }

    fn float(&self, id: u64) -> Result<f64> {
        match self.sym(id)? {
            Sym::Int(v) => Ok(*v as f64),
            Sym::Float(v) => Ok(*v),
            other => bail!("expected a number constant, got {other:?}"),
        }
    }

    fn bool(&self, id: u64) -> Result<bool> {
        match self.sym(id)? {
            Sym::Bool(b) => Ok(*b),
            Sym::Int(v) => Ok(*v != 0),
            other => bail!("expected a boolean constant, got {other:?}"),
        }
    }

    fn ints(&self, id: u64) -> Result<Vec<i64>> {
        match self.sym(id)? {
            Sym::Ints(v) => Ok(v.clone()),
            Sym::Int(v) => Ok(vec![*v]),
            other => bail!("expected a list of integers, got {other:?}"),
        }
    }

    fn sizes_of(&self, name: &str) -> Result<&[i64]> {
        self.sizes.get(name).map(Vec::as_slice).ok_or_else(|| anyhow!("no traced shape for {name}"))
    }

    fn rank(&self, name: &str) -> Result<i64> {
        Ok(self.sizes_of(name)?.len() as i64)
    }

    /// A fresh name for a node of `op` in `scope`.
    fn node_name(&mut self, scope: &str, op: &str) -> String {
        let base = if scope.is_empty() { op.to_string() } else { format!("{scope}/{op}") };
        let n = self.names.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}_{}", *n - 1)
        }
    }

    /// Appends a node; returns the names of its outputs.
    fn emit(
        &mut self,
        scope: &str,
        op: &str,
        inputs: Vec<Operand>,
        outputs: usize,
        attrs: Vec<proto::AttributeProto>,
    ) -> Vec<String> {
        let name = self.node_name(scope, op);
        let outs: Vec<String> =
            (0..outputs).map(|i| if outputs == 1 { name.clone() } else { format!("{name}:{i}") }).collect();
        self.nodes.push(proto::NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            input: inputs,
            output: outs.clone(),
            attribute: attrs,
            ..Default::default()
        });
        outs
    }

    fn emit1(&mut self, scope: &str, op: &str, inputs: Vec<Operand>, attrs: Vec<proto::AttributeProto>) -> String {
        self.emit(scope, op, inputs, 1, attrs).remove(0)
    }

    fn const_i64(&mut self, dims: &[i64], data: &[i64]) -> String {
        self.constants += 1;
        let name = format!("const_{}", self.constants);
        self.initializers.push(tensor_i64(&name, dims, data));
        name
    }

    fn const_f32(&mut self, v: f64) -> String {
        self.constants += 1;
        let name = format!("const_{}", self.constants);
        self.initializers.push(tensor_f32(&name, &[], &[v as f32]));
        name
    }

    /// A tensor operand for a value that may be a number (`x + 1.0`).
    fn operand(&mut self, id: u64) -> Result<String> {
        match self.sym(id)?.clone() {
            Sym::Tensor(t) => Ok(t),
            Sym::Int(v) => Ok(self.const_f32(v as f64)),
            Sym::Float(v) => Ok(self.const_f32(v)),
            other => bail!("expected a tensor or a number, got {other:?}"),
        }
    }

    /// The shape operand of a Reshape to `out` (traced sizes): the batch dimension left to the
    /// input (`-1`) unless the batch is static.
    fn reshape_target(&mut self, out: &[i64]) -> Result<String> {
        let mut shape = out.to_vec();
        if !self.static_batch {
            if shape.first() != Some(&TRACE_BATCH) {
                bail!(
                    "a reshape to {out:?} does not keep the batch as its first dimension: export with --static-batch"
                );
            }
            shape[0] = -1;
        } else if let Some(first) = shape.first_mut() {
            *first = 1;
        }
        Ok(self.const_i64(&[shape.len() as i64], &shape))
    }

    fn axis(&self, x: &str, dim: i64) -> Result<i64> {
        Ok(if dim < 0 { dim + self.rank(x)? } else { dim })
    }

    fn param(&mut self, key: &str) -> Result<String> {
        if !self.params.iter().any(|p| p == key) {
            let t =
                self.vars.get(key).ok_or_else(|| anyhow!("the graph reads {key}, which the model does not hold"))?;
            self.sizes.insert(key.to_string(), t.size());
            self.params.push(key.to_string());
        }
        Ok(key.to_string())
    }

    /// One LocalResponseNorm layer's operators (`nn/layers.rs`: x / (k + alpha·avg_pool3d(x²))^beta
    /// over `size` channels) as ONNX's LRN, which is that formula: the parameters are read back
    /// from the traced constants.
    fn lrn(&mut self, nodes: &[Node]) -> Result<()> {
        let scope = nodes[0].scope.clone();
        let (mut size, mut alpha, mut beta, mut bias) = (None, None, None, None);
        let mut input = None;
        let mut output = None;
        for n in nodes {
            let kind = n.kind.strip_suffix('_').unwrap_or(&n.kind);
            match kind {
                _ if !kind.starts_with("aten::") => self.node(n)?,
                "aten::mul" if input.is_none() => input = Some(n.inputs[0]),
                "aten::avg_pool3d" => size = Some(self.ints(n.inputs[1])?[0]),
                "aten::mul" => alpha = Some(self.float(n.inputs[1])?),
                "aten::add" => bias = Some(self.float(n.inputs[1])?),
                "aten::pow" => beta = Some(self.float(n.inputs[1])?),
                "aten::div" => output = n.outputs.first().map(|o| o.id),
                _ => {}
            }
        }
        let (Some(x), Some(size), Some(alpha), Some(beta), Some(bias), Some(out)) =
            (input, size, alpha, beta, bias, output)
        else {
            let kinds: Vec<&str> = nodes.iter().map(|n| n.kind.as_str()).collect();
            bail!("its operators ({}) are not the ones zoo's LocalResponseNorm runs", kinds.join(", "));
        };
        let x = self.tensor(x)?;
        let attrs = vec![
            attr_int("size", size),
            attr_float("alpha", alpha),
            attr_float("beta", beta),
            attr_float("bias", bias),
        ];
        let y = self.emit1(&scope, "LRN", vec![x.clone()], attrs);
        let sizes = self.sizes_of(&x)?.to_vec();
        self.sizes.insert(y.clone(), sizes);
        self.syms.insert(out, Sym::Tensor(y));
        Ok(())
    }

    /// Maps one traced operator.
    fn node(&mut self, node: &Node) -> Result<()> {
        let scope = node.scope.as_str();
        let kind = node.kind.strip_suffix('_').unwrap_or(&node.kind);
        let i = &node.inputs;
        let out_sizes = node.outputs.first().and_then(|o| o.sizes.clone());
        let result: Sym = match kind {
            "prim::Constant" => match node.value.clone().unwrap_or(Const::None(true)) {
                Const::None(_) => Sym::None,
                Const::Bool(b) => Sym::Bool(b),
                Const::Int(v) => Sym::Int(v),
                Const::Float(v) => Sym::Float(v),
                Const::Str(_) => Sym::Str,
                Const::Ints(v) => Sym::Ints(v),
                Const::Tensor { sizes, data, .. } => {
                    self.constants += 1;
                    let name = format!("const_{}", self.constants);
                    let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
                    self.initializers.push(tensor_f32(&name, &sizes, &data));
                    self.sizes.insert(name.clone(), sizes);
                    Sym::Tensor(name)
                }
                Const::Unsupported(what) => bail!("a constant of type {what}"),
            },
            "prim::GetAttr" => {
                let key = node.param.clone().ok_or_else(|| anyhow!("a GetAttr without a key"))?;
                Sym::Tensor(self.param(&key)?)
            }
            "prim::ListConstruct" => {
                let items: Vec<Sym> = i.iter().map(|&v| self.sym(v).cloned()).collect::<Result<_>>()?;
                if items.iter().all(|s| matches!(s, Sym::Int(_))) {
                    Sym::Ints(items.iter().map(|s| if let Sym::Int(v) = s { *v } else { 0 }).collect())
                } else if items.iter().all(|s| matches!(s, Sym::Tensor(_))) {
                    Sym::Tensors(
                        items.iter().map(|s| if let Sym::Tensor(t) = s { t.clone() } else { String::new() }).collect(),
                    )
                } else {
                    bail!("a list mixing tensors and numbers")
                }
            }
            "prim::ListUnpack" => {
                let Sym::Tensors(items) = self.sym(i[0])?.clone() else {
                    bail!("unpacking a list that is not of tensors")
                };
                if items.len() != node.outputs.len() {
                    bail!("unpacking {} tensors into {} values", items.len(), node.outputs.len());
                }
                for (o, t) in node.outputs.iter().zip(items) {
                    self.syms.insert(o.id, Sym::Tensor(t));
                }
                return Ok(());
            }
            "aten::_convolution" | "aten::conv2d" => {
                let (x, w) = (self.tensor(i[0])?, self.tensor(i[1])?);
                let b = self.opt_tensor(i[2])?;
                let (stride, padding, dilation) = (self.ints(i[3])?, self.ints(i[4])?, self.ints(i[5])?);
                let groups = if kind == "aten::conv2d" {
                    self.int(i[6])?
                } else {
                    if self.bool(i[6])? {
                        bail!("a transposed convolution");
                    }
                    self.int(i[8])?
                };
                let kernel = self.sizes_of(&w)?[2..].to_vec();
                let pads = [padding.clone(), padding].concat();
                let mut inputs = vec![x, w];
                inputs.extend(b);
                let attrs = vec![
                    attr_ints("kernel_shape", &kernel),
                    attr_ints("strides", &stride),
                    attr_ints("pads", &pads),
                    attr_ints("dilations", &dilation),
                    attr_int("group", groups),
                ];
                Sym::Tensor(self.emit1(scope, "Conv", inputs, attrs))
            }
            "aten::batch_norm" => {
                if self.bool(i[5])? {
                    bail!("batch norm in training mode");
                }
                let x = self.tensor(i[0])?;
                let c = self.sizes_of(&x)?[1];
                let operand = |w: &mut Self, id: u64, fill: f32| -> Result<String> {
                    Ok(match w.opt_tensor(id)? {
                        Some(t) => t,
                        None => {
                            w.constants += 1;
                            let name = format!("const_{}", w.constants);
                            w.initializers.push(tensor_f32(&name, &[c], &vec![fill; c as usize]));
                            name
                        }
                    })
                };
                let (scale, bias) = (operand(self, i[1], 1.0)?, operand(self, i[2], 0.0)?);
                let (mean, var) = (self.tensor(i[3])?, self.tensor(i[4])?);
                let eps = self.float(i[7])?;
                Sym::Tensor(self.emit1(
                    scope,
                    "BatchNormalization",
                    vec![x, scale, bias, mean, var],
                    vec![attr_float("epsilon", eps)],
                ))
            }
            "aten::relu" => Sym::Tensor(self.emit1(scope, "Relu", vec![self.tensor(i[0])?], vec![])),
            "aten::sigmoid" => Sym::Tensor(self.emit1(scope, "Sigmoid", vec![self.tensor(i[0])?], vec![])),
            "aten::tanh" => Sym::Tensor(self.emit1(scope, "Tanh", vec![self.tensor(i[0])?], vec![])),
            "aten::silu" => {
                let x = self.tensor(i[0])?;
                let s = self.emit1(scope, "Sigmoid", vec![x.clone()], vec![]);
                Sym::Tensor(self.emit1(scope, "Mul", vec![x, s], vec![]))
            }
            "aten::hardsigmoid" => Sym::Tensor(self.emit1(
                scope,
                "HardSigmoid",
                vec![self.tensor(i[0])?],
                vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
            )),
            "aten::hardswish" => {
                let x = self.tensor(i[0])?;
                if self.opset >= 14 {
                    Sym::Tensor(self.emit1(scope, "HardSwish", vec![x], vec![]))
                } else {
                    let hs = self.emit1(
                        scope,
                        "HardSigmoid",
                        vec![x.clone()],
                        vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
                    );
                    Sym::Tensor(self.emit1(scope, "Mul", vec![x, hs], vec![]))
                }
            }
            "aten::clamp" | "aten::hardtanh" | "aten::relu6" | "aten::clamp_min" | "aten::clamp_max" => {
                let x = self.tensor(i[0])?;
                let bound = |w: &mut Self, id: Option<&u64>| -> Result<String> {
                    match id.map(|&id| w.sym(id).cloned()).transpose()? {
                        None | Some(Sym::None) => Ok(String::new()),
                        Some(Sym::Int(v)) => Ok(w.const_f32(v as f64)),
                        Some(Sym::Float(v)) => Ok(w.const_f32(v)),
                        Some(other) => bail!("a clamp bound {other:?}"),
                    }
                };
                let (lo, hi) = match kind {
                    "aten::relu6" => (self.const_f32(0.0), self.const_f32(6.0)),
                    "aten::clamp_min" => (bound(self, i.get(1))?, String::new()),
                    "aten::clamp_max" => (String::new(), bound(self, i.get(1))?),
                    _ => (bound(self, i.get(1))?, bound(self, i.get(2))?),
                };
                Sym::Tensor(self.emit1(scope, "Clip", vec![x, lo, hi], vec![]))
            }
            "aten::max_pool2d" => {
                let x = self.tensor(i[0])?;
                let kernel = self.ints(i[1])?;
                let stride = self.ints(i[2])?;
                let stride = if stride.is_empty() { kernel.clone() } else { stride };
                let padding = self.ints(i[3])?;
                let attrs = vec![
                    attr_ints("kernel_shape", &kernel),
                    attr_ints("strides", &stride),
                    attr_ints("pads", &[padding.clone(), padding].concat()),
                    attr_ints("dilations", &self.ints(i[4])?),
                    attr_int("ceil_mode", self.bool(i[5])? as i64),
                ];
                Sym::Tensor(self.emit1(scope, "MaxPool", vec![x], attrs))
            }
            "aten::avg_pool2d" | "aten::avg_pool3d" => {
                let x = self.tensor(i[0])?;
                let kernel = self.ints(i[1])?;
                let stride = self.ints(i[2])?;
                let stride = if stride.is_empty() { kernel.clone() } else { stride };
                let padding = self.ints(i[3])?;
                if !matches!(self.sym(i[6])?, Sym::None) {
                    bail!("average pooling with a divisor_override");
                }
                let attrs = vec![
                    attr_ints("kernel_shape", &kernel),
                    attr_ints("strides", &stride),
                    attr_ints("pads", &[padding.clone(), padding].concat()),
                    attr_int("ceil_mode", self.bool(i[4])? as i64),
                    attr_int("count_include_pad", self.bool(i[5])? as i64),
                ];
                Sym::Tensor(self.emit1(scope, "AveragePool", vec![x], attrs))
            }
            "aten::adaptive_avg_pool2d" => {
                let x = self.tensor(i[0])?;
                let out = self.ints(i[1])?;
                let s = self.sizes_of(&x)?.to_vec();
                let (ih, iw) = (s[2], s[3]);
                let (oh, ow) = (out[0], *out.get(1).unwrap_or(&out[0]));
                if oh == 1 && ow == 1 {
                    Sym::Tensor(self.emit1(scope, "GlobalAveragePool", vec![x], vec![]))
                } else if ih == oh && iw == ow {
                    Sym::Tensor(x)
                } else if ih % oh == 0 && iw % ow == 0 {
                    let k = [ih / oh, iw / ow];
                    Sym::Tensor(self.emit1(
                        scope,
                        "AveragePool",
                        vec![x],
                        vec![attr_ints("kernel_shape", &k), attr_ints("strides", &k)],
                    ))
                } else {
                    bail!(
                        "adaptive average pooling from {ih}x{iw} to {oh}x{ow}, which no ONNX operator does \
                         (its windows overlap unevenly): export at an input size whose map here is a multiple \
                         of {oh}x{ow}"
                    )
                }
            }
            "aten::mean" => {
                let x = self.tensor(i[0])?;
                let rank = self.rank(&x)?;
                let mut axes: Vec<i64> = self.ints(i[1])?.iter().map(|&d| if d < 0 { d + rank } else { d }).collect();
                axes.sort_unstable();
                let keep = self.bool(i[2])? as i64;
                if rank == 4 && axes == [2, 3] {
                    let g = self.emit1(scope, "GlobalAveragePool", vec![x], vec![]);
                    if keep == 1 {
                        Sym::Tensor(g)
                    } else {
                        Sym::Tensor(self.emit1(scope, "Flatten", vec![g], vec![attr_int("axis", 1)]))
                    }
                } else if self.opset >= 18 {
                    let a = self.const_i64(&[axes.len() as i64], &axes);
                    Sym::Tensor(self.emit1(scope, "ReduceMean", vec![x, a], vec![attr_int("keepdims", keep)]))
                } else {
                    Sym::Tensor(self.emit1(
                        scope,
                        "ReduceMean",
                        vec![x],
                        vec![attr_ints("axes", &axes), attr_int("keepdims", keep)],
                    ))
                }
            }
            "aten::linear" => {
                let (x, w) = (self.tensor(i[0])?, self.tensor(i[1])?);
                let b = self.opt_tensor(i[2])?;
                if self.rank(&x)? != 2 {
                    bail!("a linear layer on a tensor of rank {}", self.rank(&x)?);
                }
                let mut inputs = vec![x, w];
                inputs.extend(b);
                Sym::Tensor(self.emit1(scope, "Gemm", inputs, vec![attr_int("transB", 1)]))
            }
            "aten::flatten" => {
                let x = self.tensor(i[0])?;
                let rank = self.rank(&x)?;
                let (start, end) = (self.axis(&x, self.int(i[1])?)?, self.axis(&x, self.int(i[2])?)?);
                if start == end {
                    Sym::Tensor(x)
                } else if start == 1 && end == rank - 1 {
                    Sym::Tensor(self.emit1(scope, "Flatten", vec![x], vec![attr_int("axis", 1)]))
                } else {
                    let target = self.reshape_target(out_sizes.as_deref().unwrap_or(&[]))?;
                    Sym::Tensor(self.emit1(scope, "Reshape", vec![x, target], vec![]))
                }
            }
            "aten::unflatten" | "aten::view" | "aten::reshape" => {
                let x = self.tensor(i[0])?;
                let target = self.reshape_target(out_sizes.as_deref().unwrap_or(&[]))?;
                Sym::Tensor(self.emit1(scope, "Reshape", vec![x, target], vec![]))
            }
            "aten::transpose" => {
                let x = self.tensor(i[0])?;
                let rank = self.rank(&x)?;
                let (a, b) = (self.axis(&x, self.int(i[1])?)?, self.axis(&x, self.int(i[2])?)?);
                let mut perm: Vec<i64> = (0..rank).collect();
                perm.swap(a as usize, b as usize);
                Sym::Tensor(self.emit1(scope, "Transpose", vec![x], vec![attr_ints("perm", &perm)]))
            }
            "aten::permute" => {
                let x = self.tensor(i[0])?;
                let perm = self.ints(i[1])?;
                Sym::Tensor(self.emit1(scope, "Transpose", vec![x], vec![attr_ints("perm", &perm)]))
            }
            "aten::contiguous" | "aten::dropout" | "aten::feature_dropout" | "aten::alpha_dropout" | "aten::detach" => {
                Sym::Tensor(self.tensor(i[0])?)
            }
            "aten::cat" => {
                let Sym::Tensors(items) = self.sym(i[0])?.clone() else { bail!("concatenating a non-list") };
                let axis = self.axis(&items[0], self.int(i[1])?)?;
                Sym::Tensor(self.emit1(scope, "Concat", items, vec![attr_int("axis", axis)]))
            }
            "aten::chunk" | "aten::split" => {
                let x = self.tensor(i[0])?;
                let axis = self.axis(&x, self.int(i[2])?)?;
                let d = self.sizes_of(&x)?[axis as usize];
                let parts = match kind {
                    "aten::chunk" => {
                        let n = self.int(i[1])?;
                        let each = (d + n - 1) / n;
                        (0..n).map(|k| (d - k * each).clamp(0, each)).filter(|&s| s > 0).collect::<Vec<_>>()
                    }
                    _ => match self.sym(i[1])?.clone() {
                        Sym::Ints(v) => v,
                        Sym::Int(each) => {
                            (0..(d + each - 1) / each).map(|k| (d - k * each).min(each)).collect::<Vec<_>>()
                        }
                        other => bail!("split sizes {other:?}"),
                    },
                };
                let split = self.const_i64(&[parts.len() as i64], &parts);
                let outs = self.emit(scope, "Split", vec![x, split], parts.len(), vec![attr_int("axis", axis)]);
                if let Some(o) = node.outputs.first() {
                    for (k, name) in outs.iter().enumerate() {
                        let mut s = self.sizes_of(&self.tensor(i[0])?)?.to_vec();
                        s[axis as usize] = parts[k];
                        self.sizes.insert(name.clone(), s);
                    }
                    self.syms.insert(o.id, Sym::Tensors(outs));
                }
                return Ok(());
            }
            "aten::add" | "aten::sub" | "aten::mul" | "aten::div" | "aten::pow" => {
                let a = self.operand(i[0])?;
                let mut b = self.operand(i[1])?;
                if matches!(kind, "aten::add" | "aten::sub") && i.len() > 2 {
                    let alpha = self.float(i[2])?;
                    if alpha != 1.0 {
                        let c = self.const_f32(alpha);
                        b = self.emit1(scope, "Mul", vec![b, c], vec![]);
                    }
                }
                if kind == "aten::div" && i.len() > 2 && !matches!(self.sym(i[2])?, Sym::None) {
                    bail!("division with a rounding mode");
                }
                let op = match kind {
                    "aten::add" => "Add",
                    "aten::sub" => "Sub",
                    "aten::mul" => "Mul",
                    "aten::div" => "Div",
                    _ => "Pow",
                };
                Sym::Tensor(self.emit1(scope, op, vec![a, b], vec![]))
            }
            "aten::select" => {
                let x = self.tensor(i[0])?;
                let axis = self.axis(&x, self.int(i[1])?)?;
                let index = self.const_i64(&[], &[self.int(i[2])?]);
                Sym::Tensor(self.emit1(scope, "Gather", vec![x, index], vec![attr_int("axis", axis)]))
            }
            "aten::unsqueeze" => {
                let x = self.tensor(i[0])?;
                let d = self.int(i[1])?;
                let d = if d < 0 { d + self.rank(&x)? + 1 } else { d };
                let axes = self.const_i64(&[1], &[d]);
                Sym::Tensor(self.emit1(scope, "Unsqueeze", vec![x, axes], vec![]))
            }
            "aten::squeeze" => {
                let x = self.tensor(i[0])?;
                let sizes = self.sizes_of(&x)?.to_vec();
                let dims: Vec<i64> = match i.get(1) {
                    Some(&id) => {
                        self.ints(id)?.iter().map(|&d| if d < 0 { d + sizes.len() as i64 } else { d }).collect()
                    }
                    None => (1..sizes.len() as i64).filter(|&d| sizes[d as usize] == 1).collect(),
                };
                let dims: Vec<i64> = dims.into_iter().filter(|&d| sizes[d as usize] == 1).collect();
                if dims.contains(&0) && !self.static_batch {
                    bail!("squeezing the batch dimension");
                }
                if dims.is_empty() {
                    Sym::Tensor(x)
                } else {
                    let axes = self.const_i64(&[dims.len() as i64], &dims);
                    Sym::Tensor(self.emit1(scope, "Squeeze", vec![x, axes], vec![]))
                }
            }
            "aten::constant_pad_nd" => {
                let x = self.tensor(i[0])?;
                let rank = self.rank(&x)? as usize;
                let pad = self.ints(i[1])?;
                let mut begin = vec![0; rank];
                let mut end = vec![0; rank];
                for (k, pair) in pad.chunks(2).enumerate() {
                    begin[rank - 1 - k] = pair[0];
                    end[rank - 1 - k] = *pair.get(1).unwrap_or(&0);
                }
                let pads = self.const_i64(&[2 * rank as i64], &[begin, end].concat());
                let value = self.const_f32(self.float(i[2]).unwrap_or(0.0));
                Sym::Tensor(self.emit1(scope, "Pad", vec![x, pads, value], vec![]))
            }
            other => bail!("the operator {other}, which zoo's ONNX writer has no mapping for"),
        };
        if let (Some(o), Sym::Tensor(name)) = (node.outputs.first(), &result) {
            if let Some(s) = &o.sizes {
                self.sizes.entry(name.clone()).or_insert_with(|| s.clone());
            }
        }
        if let Some(o) = node.outputs.first() {
            self.syms.insert(o.id, result);
        }
        Ok(())
    }
}

/// The ONNX IR version of an opset (ONNX's own table of releases).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Writes `graph` (traced from `model`) as an ONNX model with `meta` in its `metadata_props`.
/// Fails, naming the layer, on an operator with no ONNX form.
pub fn write(
    graph: &Graph,
    layers: &HashMap<String, Op>,
    model: &Model,
    meta: &serde_json::Value,
    opts: &ExportOptions,
) -> Result<proto::ModelProto> {
    let mut w = Writer {
        opset: opts.opset,
        static_batch: opts.static_batch,
        vars: model.vs.variables(),
        syms: HashMap::new(),
        sizes: HashMap::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        params: Vec::new(),
        constants: 0,
        names: HashMap::new(),
    };
    let [input] = graph.inputs.as_slice() else { bail!("the traced graph has {} inputs, not 1", graph.inputs.len()) };
    let input_sizes = input.sizes.clone().ok_or_else(|| anyhow!("the traced input has no shape"))?;
    w.syms.insert(input.id, Sym::Tensor("input".into()));
    w.sizes.insert("input".into(), input_sizes.clone());
    let is_lrn = |scope: &str| matches!(layers.get(scope), Some(Op::Elementwise("LocalResponseNorm")));
    let mut k = 0;
    while k < graph.nodes.len() {
        let scope = graph.nodes[k].scope.as_str();
        if is_lrn(scope) && graph.nodes[k].kind.starts_with("aten::") {
            // A local response norm is one ONNX LRN, not the arithmetic zoo computes it with: its
            // operators up to the next one of another layer (constants, hoisted to the top of the
            // graph, and lists are read as they come).
            let end = graph.nodes[k..]
                .iter()
                .position(|n| n.scope != scope && n.kind.starts_with("aten::"))
                .map_or(graph.nodes.len(), |p| k + p);
            w.lrn(&graph.nodes[k..end]).with_context(|| {
                format!("{}: cannot export layer {scope} (LocalResponseNorm) to ONNX", model.spec.name)
            })?;
            k = end;
            continue;
        }
        let node = &graph.nodes[k];
        w.node(node).with_context(|| {
            let layer = if node.scope.is_empty() {
                "the model's top level".to_string()
            } else {
                format!("layer {}", node.scope)
            };
            format!("{}: cannot export {layer} ({}) to ONNX", model.spec.name, node.kind)
        })?;
        k += 1;
    }
    let [output] = graph.outputs.as_slice() else {
        bail!("the traced graph has {} outputs, not 1", graph.outputs.len())
    };
    let out = w.tensor(*output)?;
    let out_sizes = w.sizes_of(&out)?.to_vec();
    let out_name = if model.config.num_classes > 0 { "logits" } else { "features" };
    w.emit("", "Identity", vec![out], 1, vec![]);
    w.nodes.last_mut().expect("just emitted").output = vec![out_name.to_string()];

    // The initializers: the model's tensors the graph reads, under their checkpoint keys.
    let mut initializers = Vec::new();
    for key in &w.params {
        let t = w.vars[key].detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        // ONNX's raw_data is little-endian, as the tensor's own bytes are on every target zoo
        // builds for; one copy, not one per element.
        let numel = t.numel();
        let mut raw = vec![0u8; numel * 4];
        t.copy_data_u8(&mut raw, numel);
        initializers.push(proto::TensorProto {
            name: Some(key.clone()),
            dims: t.size(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
    }
    initializers.append(&mut w.initializers);

    let batch = |sizes: &[i64]| -> Vec<Option<i64>> {
        sizes.iter().enumerate().map(|(k, &d)| if k == 0 { opts.static_batch.then_some(1) } else { Some(d) }).collect()
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut metadata_props =
        vec![proto::StringStringEntryProto { key: Some("zoo".into()), value: Some(serde_json::to_string(meta)?) }];
    if let Some(obj) = meta.as_object() {
        for (k, v) in obj {
            metadata_props.push(proto::StringStringEntryProto { key: Some(k.clone()), value: Some(text(v)) });
        }
    }
    let graph = proto::GraphProto {
        name: Some(model.spec.name.into()),
        node: w.nodes,
        initializer: initializers,
        input: vec![value_info("input", &batch(&input_sizes), "batch")],
        output: vec![value_info(out_name, &batch(&out_sizes), "batch")],
        doc_string: Some(format!("{} ({}), exported by zoo", model.spec.name, model.spec.paper)),
        ..Default::default()
    };
    Ok(proto::ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(opts.opset) }],
        producer_name: Some("zoo".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        model_version: Some(1),
        doc_string: Some(format!("{}: {}", model.spec.name, model.spec.paper)),
        graph: Some(graph),
        metadata_props,
        ..Default::default()
    })
}
