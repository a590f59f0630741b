//! The network graph: nodes in topological order, each reading earlier values by index
//! (value 0 is the network input, value `i + 1` is node `i`'s output), weights referenced by
//! name in a tensor store. Serializable as the `.etm` header's `graph`.
//!
//! Ops (activations NHWC, batch 1 or more):
//! - `conv2d`: OHWI weights, optional bias `[Cout]`, optional batch norm (folded into the
//!   weights when a plan is prepared), stride, padding (`same` = TF SAME_UPPER), groups,
//!   fused activation.
//! - `add`: element-wise sum of two values (residual), fused activation.
//! - `global_avg_pool`: `[N, H, W, C]` -> `[N, C]` (the embedding).
//! - `dense`: `[N, K]` x `[Nout, K]`ᵀ + bias, fused activation (the classifier head, and
//!   the squeeze-excitation layers of imported networks).
//! - `max_pool`, `avg_pool`: 2-D windows over NHWC (padding never counts in a max; in an
//!   average only with `count_include_pad`); `ceil_mode` as ONNX's.
//! - `concat`: along channels (the last axis) of any number of values with equal other dims.
//! - `mul`: element-wise product of two values of one shape, or of an image `[N, H, W, C]` and
//!   per-image channel factors `[N, C]` broadcast over H and W (squeeze-excitation).
//! - `unary`: an element-wise function that could not be fused into the op before it
//!   (`relu`, `clip`, `sigmoid`, `hard_sigmoid` = `clip(alpha x + beta, 0, 1)`,
//!   `hard_swish` = `x * relu6(x + 3) / 6`).
//!
//! Global pools before the last one (squeeze-excitation) give `[N, C]` values read by dense
//! layers; the embedding is the last global pool's output.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::ops::conv::{Conv2dParams, ConvGeometry};
use crate::ops::pool::{pool_out_shape, Pool2dParams};
use crate::ops::Padding;
use crate::quant::Activation;

/// Names of a batch norm's four tensors and its epsilon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormRef {
    pub gamma: String,
    pub beta: String,
    pub mean: String,
    pub var: String,
    pub eps: f32,
}

/// Padding as stored in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadSpec {
    /// TensorFlow "SAME" (SAME_UPPER): output `ceil(in / stride)`, odd pad at the end.
    Same,
    Valid,
    Explicit {
        top: usize,
        left: usize,
        bottom: usize,
        right: usize,
    },
}

impl PadSpec {
    pub fn padding(self) -> Padding {
        match self {
            PadSpec::Same => Padding::SameUpper,
            PadSpec::Valid => Padding::VALID,
            PadSpec::Explicit { top, left, bottom, right } => Padding::Explicit { top, left, bottom, right },
        }
    }
}

/// An element-wise function of a `unary` node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unary {
    /// `y = x`: in int8, a move onto another grid (TFLite's QUANTIZE inside a network).
    Identity,
    Relu,
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
}

impl Unary {
    /// The function on one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Identity => x,
            Unary::Relu => x.max(0.0),
            Unary::Clip { min, max } => x.max(min).min(max),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }

    /// Its name in profiles and errors.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Identity => "identity",
            Unary::Relu => "relu",
            Unary::Clip { .. } => "clip",
            Unary::Sigmoid => "sigmoid",
            Unary::HardSigmoid { .. } => "hard_sigmoid",
            Unary::HardSwish => "hard_swish",
        }
    }
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Conv2d {
        weight: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_norm: Option<BatchNormRef>,
        stride: [usize; 2],
        padding: PadSpec,
        groups: usize,
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    /// Mean over height and width: `[N, H, W, C] -> [N, C]`, the embedding.
    GlobalAvgPool {
        /// The pool is TFLite's MEAN, which requantizes onto its own output grid with one
        /// fixed-point multiplier; otherwise TFLite's AVERAGE_POOL_2D rounding (same grid).
        /// Only TFLite arithmetic reads it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tflite_mean: bool,
    },
    Dense {
        weight: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
        activation: Activation,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: PadSpec,
        #[serde(default)]
        ceil_mode: bool,
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: PadSpec,
        #[serde(default)]
        count_include_pad: bool,
        #[serde(default)]
        ceil_mode: bool,
    },
    Concat,
    Mul,
    Unary {
        function: Unary,
    },
}

impl Op {
    /// Conv hyper-parameters (for conv nodes).
    pub fn conv_params(&self) -> Option<Conv2dParams> {
        match self {
            Op::Conv2d { stride, padding, groups, .. } => {
                Some(Conv2dParams { stride: *stride, dilation: [1, 1], padding: padding.padding(), groups: *groups })
            }
            _ => None,
        }
    }

    /// Window hyper-parameters (for pooling nodes).
    pub fn pool_params(&self) -> Option<Pool2dParams> {
        match *self {
            Op::MaxPool { kernel, stride, padding, ceil_mode } => {
                Some(Pool2dParams { kernel, stride, padding: padding.padding(), count_include_pad: false, ceil_mode })
            }
            Op::AvgPool { kernel, stride, padding, count_include_pad, ceil_mode } => {
                Some(Pool2dParams { kernel, stride, padding: padding.padding(), count_include_pad, ceil_mode })
            }
            _ => None,
        }
    }
}

/// A node: an op applied to earlier values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    pub inputs: Vec<usize>,
}

/// A network: input size, nodes, and which values are the embedding and the logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// `[height, width, channels]` of one input image.
    pub input: [usize; 3],
    pub nodes: Vec<Node>,
    /// Value index of the embedding (the global pool's output).
    pub embedding: usize,
    /// Value index of the logits.
    pub logits: usize,
}

fn tensor<'a>(tensors: &'a HashMap<String, Tensor>, node: &str, name: &str) -> Result<&'a Tensor> {
    tensors.get(name).ok_or_else(|| {
        Error::invalid("graph", format!("node '{node}' needs tensor '{name}', which the model does not have"))
    })
}

fn expect_len(node: &str, name: &str, t: &Tensor, len: usize) -> Result<()> {
    if t.shape() != [len] {
        return Err(Error::shape(
            "graph",
            format!("node '{node}': tensor '{name}' has shape {:?}, expected [{len}]", t.shape()),
        ));
    }
    Ok(())
}

impl Graph {
    /// Per value (0 = the input, `i + 1` = node `i`'s output): the last node that reads it
    /// (`None`: no node does). After that node an executor may free or recycle the value.
    pub fn last_readers(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.nodes.len() + 1];
        for (i, node) in self.nodes.iter().enumerate() {
            for &v in &node.inputs {
                if let Some(slot) = last.get_mut(v) {
                    *slot = Some(i);
                }
            }
        }
        last
    }

    /// Value shapes for a batch of `batch` images (`[0]` = input), validating every node's
    /// inputs and weights. Any inconsistency is an error naming the node.
    pub fn infer_shapes(&self, tensors: &HashMap<String, Tensor>, batch: usize) -> Result<Vec<Vec<usize>>> {
        let [h, w, c] = self.input;
        let mut shapes = vec![vec![batch, h, w, c]];
        for (i, n) in self.nodes.iter().enumerate() {
            let arity = match n.op {
                Op::Add { .. } | Op::Mul => 2,
                Op::Concat => n.inputs.len().max(1),
                _ => 1,
            };
            if n.inputs.len() != arity || n.inputs.iter().any(|&v| v > i) {
                return Err(Error::invalid(
                    "graph",
                    format!("node '{}' (#{i}) has inputs {:?}: needs {arity} earlier values", n.name, n.inputs),
                ));
            }
            let x = &shapes[n.inputs[0]];
            let out = match &n.op {
                Op::Conv2d { weight, bias, batch_norm, .. } => {
                    let wt = tensor(tensors, &n.name, weight)?;
                    let p = n.op.conv_params().ok_or_else(|| Error::invalid("graph", "conv params"))?;
                    let g = ConvGeometry::new("graph conv2d", x, wt.shape(), &p)
                        .map_err(|e| Error::shape("graph", format!("node '{}': {e}", n.name)))?;
                    if let Some(b) = bias {
                        expect_len(&n.name, b, tensor(tensors, &n.name, b)?, g.out_c)?;
                    }
                    if let Some(bn) = batch_norm {
                        for t in [&bn.gamma, &bn.beta, &bn.mean, &bn.var] {
                            expect_len(&n.name, t, tensor(tensors, &n.name, t)?, g.out_c)?;
                        }
                    }
                    g.out_shape().to_vec()
                }
                Op::Add { .. } => {
                    if shapes[n.inputs[1]] != *x {
                        return Err(Error::shape(
                            "graph",
                            format!("node '{}' adds {:?} and {:?}", n.name, x, shapes[n.inputs[1]]),
                        ));
                    }
                    x.clone()
                }
                Op::GlobalAvgPool { .. } => match x[..] {
                    [b, _, _, c] => vec![b, c],
                    _ => return Err(Error::shape("graph", format!("node '{}' pools a {x:?} value", n.name))),
                },
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let p = n.op.pool_params().ok_or_else(|| Error::invalid("graph", "pool params"))?;
                    pool_out_shape("graph pool", x, &p)
                        .map_err(|e| Error::shape("graph", format!("node '{}': {e}", n.name)))?
                }
                Op::Concat => {
                    let mut out = x.clone();
                    let last = out.len().saturating_sub(1);
                    out[last] = 0;
                    for &v in &n.inputs {
                        let s = &shapes[v];
                        if s.len() != x.len() || s[..last] != x[..last] {
                            return Err(Error::shape(
                                "graph",
                                format!("node '{}' concatenates {x:?} and {s:?} (only along channels)", n.name),
                            ));
                        }
                        out[last] += s[last];
                    }
                    out
                }
                Op::Mul => {
                    let b = &shapes[n.inputs[1]];
                    let channel_factors = matches!((&x[..], &b[..]), ([n0, _, _, c], [n1, c1]) if n0 == n1 && c == c1);
                    if b != x && !channel_factors {
                        return Err(Error::shape(
                            "graph",
                            format!("node '{}' multiplies {x:?} by {b:?} (same shape, or [N, C] factors)", n.name),
                        ));
                    }
                    x.clone()
                }
                Op::Unary { .. } => x.clone(),
                Op::Dense { weight, bias, .. } => {
                    let wt = tensor(tensors, &n.name, weight)?;
                    match (&x[..], wt.shape()) {
                        ([b, k], [nout, k2]) if k == k2 => {
                            if let Some(bn) = bias {
                                expect_len(&n.name, bn, tensor(tensors, &n.name, bn)?, *nout)?;
                            }
                            vec![*b, *nout]
                        }
                        _ => {
                            return Err(Error::shape(
                                "graph",
                                format!("node '{}': input {x:?} does not fit weights {:?}", n.name, wt.shape()),
                            ))
                        }
                    }
                }
            };
            shapes.push(out);
        }
        for (what, v) in [("embedding", self.embedding), ("logits", self.logits)] {
            if v >= shapes.len() || shapes[v].len() != 2 {
                return Err(Error::invalid("graph", format!("{what} value {v} is not a [batch, features] value")));
            }
        }
        Ok(shapes)
    }

    /// Number of classes (the logits' width) given the weights.
    pub fn num_classes(&self, tensors: &HashMap<String, Tensor>) -> Result<usize> {
        Ok(self.infer_shapes(tensors, 1)?[self.logits][1])
    }

    /// Multiply-accumulates of one forward pass (batch 1).
    pub fn macs(&self, tensors: &HashMap<String, Tensor>) -> Result<u64> {
        let shapes = self.infer_shapes(tensors, 1)?;
        let mut total = 0u64;
        for (i, n) in self.nodes.iter().enumerate() {
            let out = &shapes[i + 1];
            total += match &n.op {
                Op::Conv2d { weight, .. } => {
                    let w = tensor(tensors, &n.name, weight)?.shape();
                    (out.iter().product::<usize>() * w[1] * w[2] * w[3]) as u64
                }
                Op::Dense { weight, .. } => tensor(tensors, &n.name, weight)?.len() as u64,
                _ => 0,
            };
        }
        Ok(total)
    }
}
