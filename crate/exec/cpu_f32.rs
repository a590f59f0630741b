//! f32 execution of a [`Graph`]: a prepared plan (batch norm folded into convolutions once,
//! `w' = w * gamma / sqrt(var + eps)`, `b' = (b - mean) * gamma / sqrt(var + eps) + beta`)
//! and a forward pass that returns every value (input, then each node's output), which is
//! what calibration and embedding extraction need.

use std::collections::HashMap;

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::profile::LayerProfile;
use crate::model::graph::{Graph, Op, Unary};
use crate::ops::activation::apply_activation;
use crate::ops::add::add_f32;
use crate::ops::combine::{concat_channels, mul_f32};
use crate::ops::conv::{conv2d_f32_prepared, prepare_conv_weights_f32, Conv2dParams};
use crate::ops::gemm::{matmul_f32_packed, BLayout, PackedF32B};
use crate::ops::norm::{fold_into_conv, BatchNorm};
use crate::ops::pool::{avg_pool2d_f32, global_avg_pool_f32, max_pool2d_f32, Pool2dParams};
use crate::quant::Activation;

/// One prepared node.
#[derive(Clone, Debug)]
pub enum PreparedOp {
    /// `packed`: the weights laid out once for the GEMM (one-group convolutions).
    Conv {
        weight: Tensor,
        packed: Option<PackedF32B>,
        bias: Vec<f32>,
        params: Conv2dParams,
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    GlobalAvgPool,
    /// `packed`: `weight` `[out, in]` laid out once for the GEMM.
    Dense {
        weight: Tensor,
        packed: PackedF32B,
        bias: Option<Vec<f32>>,
        activation: Activation,
    },
    MaxPool(Pool2dParams),
    AvgPool(Pool2dParams),
    Concat,
    Mul,
    Unary(Unary),
}

impl PreparedOp {
    /// Kind name of the ops with no weights (profiles and errors).
    pub fn kind(&self) -> &'static str {
        match self {
            PreparedOp::Conv { .. } => "conv",
            PreparedOp::Add { .. } => "add",
            PreparedOp::GlobalAvgPool => "pool",
            PreparedOp::Dense { .. } => "dense",
            PreparedOp::MaxPool(_) => "max_pool",
            PreparedOp::AvgPool(_) => "avg_pool",
            PreparedOp::Concat => "concat",
            PreparedOp::Mul => "mul",
            PreparedOp::Unary(f) => f.name(),
        }
    }
}

/// A graph ready to run in f32.
#[derive(Clone, Debug)]
pub struct PreparedF32 {
    pub graph: Graph,
    pub ops: Vec<PreparedOp>,
}

fn get(tensors: &HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    tensors.get(name).cloned().ok_or_else(|| Error::invalid("prepare", format!("missing tensor '{name}'")))
}

impl PreparedF32 {
    /// Validates the graph against its weights and folds batch norms.
    pub fn new(graph: &Graph, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        graph.infer_shapes(tensors, 1)?;
        let ops = graph
            .nodes
            .iter()
            .map(|n| {
                Ok(match &n.op {
                    Op::Conv2d { weight, bias, batch_norm, activation, .. } => {
                        let mut w = get(tensors, weight)?;
                        let cout = w.shape()[0];
                        let mut b = match bias {
                            Some(b) => get(tensors, b)?.into_data(),
                            None => vec![0.0; cout],
                        };
                        if let Some(bn) = batch_norm {
                            let bn = BatchNorm {
                                gamma: get(tensors, &bn.gamma)?.into_data(),
                                beta: get(tensors, &bn.beta)?.into_data(),
                                mean: get(tensors, &bn.mean)?.into_data(),
                                var: get(tensors, &bn.var)?.into_data(),
                                eps: bn.eps,
                            };
                            fold_into_conv(w.data_mut(), &mut b, &bn)?;
                        }
                        let params = n.op.conv_params().ok_or_else(|| Error::invalid("prepare", "conv params"))?;
                        let packed = prepare_conv_weights_f32(&w, &params)?;
                        PreparedOp::Conv { weight: w, packed, bias: b, params, activation: *activation }
                    }
                    Op::Add { activation } => PreparedOp::Add { activation: *activation },
                    Op::GlobalAvgPool => PreparedOp::GlobalAvgPool,
                    Op::Dense { weight, bias, activation } => {
                        let weight = get(tensors, weight)?;
                        let [n, k] = weight.shape() else {
                            return Err(Error::shape(
                                "prepare",
                                format!("dense weights {:?} are not [out, in]", weight.shape()),
                            ));
                        };
                        PreparedOp::Dense {
                            packed: PackedF32B::new(weight.data(), *k, *n, BLayout::NK)?,
                            weight,
                            bias: bias.as_ref().map(|b| get(tensors, b).map(Tensor::into_data)).transpose()?,
                            activation: *activation,
                        }
                    }
                    Op::MaxPool { .. } | Op::AvgPool { .. } => {
                        let p = n.op.pool_params().ok_or_else(|| Error::invalid("prepare", "pool params"))?;
                        if matches!(n.op, Op::MaxPool { .. }) {
                            PreparedOp::MaxPool(p)
                        } else {
                            PreparedOp::AvgPool(p)
                        }
                    }
                    Op::Concat => PreparedOp::Concat,
                    Op::Mul => PreparedOp::Mul,
                    Op::Unary { function } => PreparedOp::Unary(*function),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedF32 { graph: graph.clone(), ops })
    }

    /// Runs the network on an NHWC batch; returns every value (index 0 = the input).
    pub fn forward_all(&self, input: Tensor) -> Result<Vec<Tensor>> {
        self.run(input, self.ops.len())
    }

    /// Values `0..=upto` only (the nodes producing them), e.g. a frozen prefix's output.
    pub fn forward_prefix(&self, input: Tensor, upto: usize) -> Result<Vec<Tensor>> {
        self.run(input, upto.min(self.ops.len()))
    }

    fn run(&self, input: Tensor, nodes: usize) -> Result<Vec<Tensor>> {
        let [h, w, c] = self.graph.input;
        if input.shape().len() != 4 || input.shape()[1..] != [h, w, c] {
            return Err(Error::shape(
                "forward",
                format!("input {:?} does not match the model's [N, {h}, {w}, {c}]", input.shape()),
            ));
        }
        let mut values = vec![input];
        for i in 0..nodes.min(self.ops.len()) {
            let y = self.step(i, &values)?;
            values.push(y);
        }
        Ok(values)
    }

    /// Node `i` on the values computed so far.
    fn step(&self, i: usize, values: &[Tensor]) -> Result<Tensor> {
        let (Some(node), Some(op)) = (self.graph.nodes.get(i), self.ops.get(i)) else {
            return Err(Error::invalid("forward", format!("no node {i}")));
        };
        let value = |k: usize| {
            node.inputs
                .get(k)
                .and_then(|&v| values.get(v))
                .ok_or_else(|| Error::invalid("forward", format!("node '{}' input {k} is not computed", node.name)))
        };
        let x = value(0)?;
        Ok(match op {
            PreparedOp::Conv { weight, packed, bias, params, activation } => {
                let mut y = conv2d_f32_prepared(x, weight, packed.as_ref(), Some(bias), params)?;
                apply_activation(y.data_mut(), *activation);
                y
            }
            PreparedOp::Add { activation } => {
                let mut y = add_f32(x, value(1)?)?;
                apply_activation(y.data_mut(), *activation);
                y
            }
            PreparedOp::GlobalAvgPool => {
                let y = global_avg_pool_f32(x)?;
                let (n, c) = (y.shape()[0], y.shape()[3]);
                y.reshape(vec![n, c])?
            }
            PreparedOp::Dense { packed, bias, activation, .. } => {
                let [m, _] = x.shape() else {
                    return Err(Error::shape("dense", format!("input {:?} is not [N, features]", x.shape())));
                };
                let n = packed.dims().1;
                let mut y = matmul_f32_packed(x.data(), *m, packed, bias.as_deref())?;
                apply_activation(&mut y, *activation);
                Tensor::new(vec![*m, n], y)?
            }
            PreparedOp::MaxPool(p) => max_pool2d_f32(x, p)?,
            PreparedOp::AvgPool(p) => avg_pool2d_f32(x, p)?,
            PreparedOp::Concat => {
                let parts: Vec<&Tensor> = (0..node.inputs.len()).map(value).collect::<Result<_>>()?;
                let views: Vec<(&[f32], &[usize])> = parts.iter().map(|t| (t.data(), t.shape())).collect();
                let (d, s) = concat_channels(&views)?;
                Tensor::new(s, d)?
            }
            PreparedOp::Mul => mul_f32(x, value(1)?)?,
            PreparedOp::Unary(f) => {
                let mut y = x.clone();
                y.data_mut().iter_mut().for_each(|v| *v = f.apply(*v));
                y
            }
        })
    }

    /// Wall-clock milliseconds, kind and multiply-adds of each node on one input, in graph
    /// order (see [`crate::exec::cpu_int8::PreparedI8::profile`]).
    pub fn profile(&self, input: Tensor) -> Result<Vec<LayerProfile>> {
        let now = crate::base::clock::now_ms;
        let mut values = vec![input];
        let mut out = vec![];
        for (i, (node, op)) in self.graph.nodes.iter().zip(&self.ops).enumerate() {
            let t = now();
            let y = self.step(i, &values)?;
            let ms = now() - t;
            let (kind, macs) = match op {
                PreparedOp::Conv { weight, params, .. } => {
                    LayerProfile::conv(weight.shape(), params.groups, y.len() as u64)
                }
                PreparedOp::Dense { weight, .. } => {
                    ("dense", y.len() as u64 * weight.shape().get(1).copied().unwrap_or(0) as u64)
                }
                other => (other.kind(), 0),
            };
            values.push(y);
            out.push(LayerProfile { name: node.name.clone(), kind, ms, macs });
        }
        Ok(out)
    }

    /// Logits from the embedding `[N, D]`: the nodes after the global pool (the head). With
    /// the embedding of [`Self::forward_prefix`] this is the same arithmetic as a whole pass.
    pub fn head_logits(&self, embedding: Tensor) -> Result<Tensor> {
        let e = self.graph.embedding;
        // Head nodes read the pool and later values; empty stand-ins fill the earlier slots
        // (a node reading one would fail on its shape, never compute from it).
        let empty = Tensor::zeros(vec![0])?;
        let mut values: Vec<Tensor> = (0..e).map(|_| empty.clone()).collect();
        values.push(embedding);
        for i in e..self.ops.len() {
            let y = self.step(i, &values)?;
            values.push(y);
        }
        values.into_iter().nth(self.graph.logits).ok_or_else(|| Error::invalid("forward", "no logits value"))
    }

    /// Logits `[N, classes]` of an NHWC batch.
    pub fn logits(&self, input: Tensor) -> Result<Tensor> {
        let logits = self.graph.logits;
        self.forward_all(input)?.into_iter().nth(logits).ok_or_else(|| Error::invalid("forward", "no logits value"))
    }
}
