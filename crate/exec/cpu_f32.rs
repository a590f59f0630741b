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
    /// Per value (0 = the input, `i + 1` = node `i`'s output): the last node that reads it,
    /// after which [`Self::logits`] recycles its buffer (`None`: no node reads it).
    last_reader: Vec<Option<usize>>,
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
                    Op::GlobalAvgPool { .. } => PreparedOp::GlobalAvgPool,
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
        Ok(PreparedF32 { graph: graph.clone(), ops, last_reader: graph.last_readers() })
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
        self.check_input(&input)?;
        let mut values = vec![Some(input)];
        for i in 0..nodes.min(self.ops.len()) {
            let y = self.step(i, &values)?;
            values.push(Some(y));
        }
        Ok(values.into_iter().flatten().collect())
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        let [h, w, c] = self.graph.input;
        if input.shape().len() != 4 || input.shape()[1..] != [h, w, c] {
            return Err(Error::shape(
                "forward",
                format!("input {:?} does not match the model's [N, {h}, {w}, {c}]", input.shape()),
            ));
        }
        Ok(())
    }

    /// Node `i` on the values computed so far (`None`: not computed, or already released).
    fn step(&self, i: usize, values: &[Option<Tensor>]) -> Result<Tensor> {
        let (Some(node), Some(op)) = (self.graph.nodes.get(i), self.ops.get(i)) else {
            return Err(Error::invalid("forward", format!("no node {i}")));
        };
        let value = |k: usize| {
            node.inputs
                .get(k)
                .and_then(|&v| values.get(v))
                .and_then(Option::as_ref)
                .ok_or_else(|| Error::invalid("forward", format!("node '{}' input {k} is not computed", node.name)))
        };
        let x = value(0)?;
        Ok(match op {
            PreparedOp::Conv { weight, packed, bias, params, activation } => {
                conv2d_f32_prepared(x, weight, packed.as_ref(), Some(bias), params, *activation)?
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
                Tensor::new(vec![*m, n], matmul_f32_packed(x.data(), *m, packed, bias.as_deref(), *activation)?)?
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
        let mut out = vec![];
        self.pass(input, self.graph.logits, self.ops.len(), |i, y, ms| {
            let (kind, macs) = match &self.ops[i] {
                PreparedOp::Conv { weight, params, .. } => {
                    LayerProfile::conv(weight.shape(), params.groups, y.len() as u64)
                }
                PreparedOp::Dense { weight, .. } => {
                    ("dense", y.len() as u64 * weight.shape().get(1).copied().unwrap_or(0) as u64)
                }
                other => (other.kind(), 0),
            };
            out.push(LayerProfile { name: self.graph.nodes[i].name.clone(), kind, ms, macs });
        })?;
        Ok(out)
    }

    /// Logits from the embedding `[N, D]`: the nodes after the global pool (the head). With
    /// the embedding of [`Self::forward_prefix`] this is the same arithmetic as a whole pass.
    pub fn head_logits(&self, embedding: Tensor) -> Result<Tensor> {
        let e = self.graph.embedding;
        // Head nodes read the pool and later values; the earlier ones are absent (a node
        // reading one fails as "not computed", never computes from it).
        let mut values: Vec<Option<Tensor>> = (0..e).map(|_| None).collect();
        values.push(Some(embedding));
        for i in e..self.ops.len() {
            let y = self.step(i, &values)?;
            values.push(Some(y));
        }
        values.into_iter().nth(self.graph.logits).flatten().ok_or_else(|| Error::invalid("forward", "no logits value"))
    }

    /// Logits `[N, classes]` of an NHWC batch.
    pub fn logits(&self, input: Tensor) -> Result<Tensor> {
        self.pass(input, self.graph.logits, self.ops.len(), |_, _, _| {})
    }

    /// Value `v` alone (e.g. the embedding, `graph.embedding`): the nodes before it, each
    /// value released as soon as it is dead. The bits of [`Self::forward_prefix`]`[v]`.
    pub fn value(&self, input: Tensor, v: usize) -> Result<Tensor> {
        self.pass(input, v, v.min(self.ops.len()), |_, _, _| {})
    }

    /// Nodes `0..nodes` and value `target`, `each(node, output, ms)` after every node. Each
    /// value is dropped after the last node that reads it and its buffer recycled for later
    /// outputs ([`crate::ops::scratch`]), so a pass holds only its live values and, from the
    /// second pass on, zeroes no fresh memory.
    fn pass(
        &self,
        input: Tensor,
        target: usize,
        nodes: usize,
        mut each: impl FnMut(usize, &Tensor, f64),
    ) -> Result<Tensor> {
        self.check_input(&input)?;
        let mut values = vec![Some(input)];
        let release = |values: &mut Vec<Option<Tensor>>, v: usize, reader: Option<usize>| {
            if v != target && self.last_reader.get(v).copied().flatten() == reader {
                if let Some(t) = values.get_mut(v).and_then(Option::take) {
                    crate::ops::scratch::recycle_f32(t.into_data());
                }
            }
        };
        for (i, node) in self.graph.nodes.iter().enumerate().take(nodes) {
            let t = crate::base::clock::now_ms();
            let y = self.step(i, &values)?;
            each(i, &y, crate::base::clock::now_ms() - t);
            values.push(Some(y));
            for &v in &node.inputs {
                release(&mut values, v, Some(i));
            }
            release(&mut values, i + 1, None);
        }
        values
            .get_mut(target)
            .and_then(Option::take)
            .ok_or_else(|| Error::invalid("forward", format!("value {target} is not computed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recycling pass ([`PreparedF32::logits`], [`PreparedF32::value`]) gives the bits of
    /// the pass that keeps every value, also when the recycled buffers hold garbage (NaN) and
    /// when it runs again on its own recycled buffers; the embedding likewise.
    #[test]
    fn recycling_pass_has_the_bits_of_the_full_pass() {
        let (mut g, t) = crate::zoo::mobilenet_v2::mobilenet_v2(0.35, 10, 3).unwrap();
        g.input = [64, 64, 3];
        let plan = PreparedF32::new(&g, &t).unwrap();
        let x =
            Tensor::new(vec![1, 64, 64, 3], (0..64 * 64 * 3).map(|i| ((i * 7 % 251) as f32 - 125.0) / 97.0).collect())
                .unwrap();
        let all = plan.forward_all(x.clone()).unwrap();
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for size in [1usize, 100, 64 * 64 * 64, 1 << 20] {
            crate::ops::scratch::recycle_f32(vec![f32::NAN; size]);
        }
        for _ in 0..2 {
            assert_eq!(bits(&plan.logits(x.clone()).unwrap()), bits(&all[g.logits]));
            assert_eq!(bits(&plan.value(x.clone(), g.embedding).unwrap()), bits(&all[g.embedding]));
        }
        let profile = plan.profile(x.clone()).unwrap();
        assert_eq!(profile.len(), g.nodes.len());
        assert!(plan.logits(Tensor::zeros(vec![1, 32, 32, 3]).unwrap()).is_err());
    }
}
