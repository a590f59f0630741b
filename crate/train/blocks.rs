//! Fine-tuning the last blocks of a float network, the rest frozen.
//!
//! Blocks are maximal runs of consecutive nodes whose names share a prefix up to the last
//! dot (`_blocks.15._expand_conv`, `_blocks.15._add` -> `_blocks.15`); the trailing nodes
//! up to the embedding (head conv, global pool) are always trained. The network is cut at
//! the input of the first trained node: value `cut` must be the only earlier value the
//! trained nodes read, so the frozen prefix runs once per sample (and augmented copy) and
//! its output is cached. Batch norm stays frozen (folded into the convolutions, the usual
//! choice with a few samples per class); convolution weights and biases and the new head
//! are trained.
//!
//! With [`SuffixModel::qat`] set, the forward pass fake-quantizes weights and values the way
//! the int8 engine rounds them and backward passes gradients straight through
//! ([`super::fake_quant`]); that is quantization-aware training.
//!
//! Backward runs the nodes in reverse: activation backward from each node's output
//! (ReLU6: `0 < y < 6`), then [`conv2d_backward_f32`], [`add_backward_f32`] or
//! [`global_avg_pool_backward_f32`], gradients accumulating per value.

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::cpu_f32::{PreparedF32, PreparedOp};
use crate::model::graph::Graph;
use crate::ops::activation::apply_activation;
use crate::ops::activation::{relu6_backward_f32, relu_backward_f32};
use crate::ops::add::{add_backward_f32, add_f32};
use crate::ops::conv::{conv2d_backward_f32, conv2d_f32};
use crate::ops::gemm::{dense_backward_f32, dense_f32};
use crate::ops::pool::{global_avg_pool_backward_f32, global_avg_pool_f32};
use crate::quant::Activation;

use super::head::LinearHead;
use super::trainer::Trainable;
use crate::quant::fake_quant::{fake_quant_weights, FakeQuant};

/// Where a network is cut for last-blocks training.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSplit {
    /// Value index of the cached input (the frozen prefix's output).
    pub cut: usize,
    /// First trained node; nodes `first..=last` are trained, `last` produces the embedding.
    pub first: usize,
    pub last: usize,
    /// Names of the trained blocks.
    pub blocks: Vec<String>,
}

fn block_key(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(a, _)| a)
}

/// Finds the cut for training the last `k` blocks (0: only the nodes after the last block).
pub fn split_last_blocks(graph: &Graph, k: usize) -> Result<BlockSplit> {
    const OP: &str = "last blocks";
    let last = graph
        .embedding
        .checked_sub(1)
        .filter(|&i| i < graph.nodes.len())
        .ok_or_else(|| Error::invalid(OP, "the graph has no embedding node"))?;
    // Runs of named blocks before the embedding.
    let mut runs: Vec<(usize, String)> = vec![];
    for (i, n) in graph.nodes[..=last].iter().enumerate() {
        let key = block_key(&n.name);
        if !key.is_empty() && runs.last().is_none_or(|(_, k)| k != key) {
            runs.push((i, key.to_string()));
        }
    }
    let tail_start = match graph.nodes[..=last].iter().rposition(|n| !block_key(&n.name).is_empty()) {
        Some(i) => i + 1,
        None => 0,
    };
    if k > runs.len() {
        return Err(Error::invalid(OP, format!("asked for the last {k} blocks, the network has {}", runs.len())));
    }
    let first = if k == 0 { tail_start } else { runs[runs.len() - k].0 };
    if first > last {
        return Err(Error::invalid(OP, "nothing to train between the cut and the embedding"));
    }
    let cut = first;
    for (i, n) in graph.nodes.iter().enumerate().take(last + 1).skip(first) {
        if let Some(&v) = n.inputs.iter().find(|&&v| v != cut && !(first < v && v <= i)) {
            return Err(Error::invalid(
                OP,
                format!(
                    "node '{}' reads value {v} from before the cut at value {cut}: choose another block count",
                    n.name
                ),
            ));
        }
    }
    Ok(BlockSplit { cut, first, last, blocks: runs[runs.len() - k..].iter().map(|r| r.1.clone()).collect() })
}

/// The trained part: nodes `first..=last` of a float plan, then a new head.
#[derive(Clone, Debug)]
pub struct SuffixModel {
    pub split: BlockSplit,
    /// `[H, W, C]` of the cached cut value.
    pub cut_shape: [usize; 3],
    /// Per node: local input indices (0 = the cut value, `j + 1` = node j's output) and op.
    pub nodes: Vec<(Vec<usize>, PreparedOp)>,
    pub head: LinearHead,
    /// Learning-rate factor of the block parameters relative to the head's.
    pub backbone_lr_scale: f32,
    /// Quantization-aware training: fake quantization in the forward pass.
    pub qat: Option<FakeQuant>,
    values: Vec<Tensor>,
    /// Under QAT, the fake-quantized weights of the last forward (per node; the head last).
    used_weights: Vec<Option<Tensor>>,
    used_head: Option<Vec<f32>>,
}

impl SuffixModel {
    pub fn new(plan: &PreparedF32, split: BlockSplit, head: LinearHead) -> Result<Self> {
        let nodes: Vec<(Vec<usize>, PreparedOp)> = (split.first..=split.last)
            .map(|i| {
                let mut op = plan.ops[i].clone();
                // Training changes the weights in place: a packed copy would go stale.
                if let PreparedOp::Conv { packed, .. } = &mut op {
                    *packed = None;
                }
                (plan.graph.nodes[i].inputs.iter().map(|&v| v - split.cut).collect(), op)
            })
            .collect();
        if nodes.iter().any(|(_, op)| matches!(op, PreparedOp::Dense { .. })) {
            return Err(Error::invalid("last blocks", "a dense layer before the embedding cannot be fine-tuned here"));
        }
        // Backward exists for convolutions, adds and the global pool (what MobileNet- and
        // EfficientNet-style blocks are made of); other ops are trained through the head only.
        if let Some((_, op)) = nodes
            .iter()
            .find(|(_, op)| !matches!(op, PreparedOp::Conv { .. } | PreparedOp::Add { .. } | PreparedOp::GlobalAvgPool))
        {
            return Err(Error::unsupported(format!(
                "fine-tuning blocks with a {} node (train the head alone: --mode head)",
                op.kind()
            )));
        }
        let cut_shape = cut_shape_by_running(plan, split.cut)?;
        Ok(SuffixModel {
            split,
            cut_shape,
            nodes,
            head,
            backbone_lr_scale: 1.0,
            qat: None,
            values: vec![],
            used_weights: vec![],
            used_head: None,
        })
    }

    /// Trained convolutions (each has a weight and a bias tensor in `params_mut`).
    fn conv_count(&self) -> usize {
        self.nodes.iter().filter(|(_, op)| matches!(op, PreparedOp::Conv { .. })).count()
    }

    /// Length of one cached cut value.
    pub fn input_len(&self) -> usize {
        self.cut_shape.iter().product()
    }
}

fn cut_shape_by_running(plan: &PreparedF32, cut: usize) -> Result<[usize; 3]> {
    let [h, w, c] = plan.graph.input;
    let v = plan.forward_prefix(Tensor::zeros(vec![1, h, w, c])?, cut)?;
    match v.last().map(|t| t.shape().to_vec()) {
        Some(s) if s.len() == 4 => Ok([s[1], s[2], s[3]]),
        s => Err(Error::invalid("last blocks", format!("cut value has shape {s:?}, expected NHWC"))),
    }
}

fn act_backward(act: Activation, y: &Tensor, dy: Vec<f32>) -> Result<Vec<f32>> {
    match act {
        Activation::None => Ok(dy),
        Activation::Relu | Activation::Relu6 => {
            let mut dx = vec![0f32; dy.len()];
            if act == Activation::Relu {
                relu_backward_f32(y.data(), &dy, &mut dx)?;
            } else {
                relu6_backward_f32(y.data(), &dy, &mut dx)?;
            }
            Ok(dx)
        }
    }
}

fn accumulate(slot: &mut Option<Vec<f32>>, len: usize) -> &mut Vec<f32> {
    slot.get_or_insert_with(|| vec![0f32; len])
}

impl Trainable for SuffixModel {
    fn classes(&self) -> usize {
        self.head.classes
    }

    fn forward(&mut self, batch: &[&[f32]]) -> Result<Vec<f32>> {
        let emb = self.embeddings(batch)?;
        let h = &self.head;
        let weight = self.used_head.as_ref().unwrap_or(&h.weight);
        dense_f32(&emb, weight, Some(&h.bias), batch.len(), h.dim, h.classes)
    }

    fn set_training(&mut self, training: bool) {
        if let Some(q) = &mut self.qat {
            q.training = training;
        }
    }

    fn weight_mask(&self) -> Vec<bool> {
        let mut m: Vec<bool> = (0..self.conv_count()).flat_map(|_| [true, false]).collect();
        m.extend([true, false]);
        m
    }

    fn lr_scales(&self) -> Vec<f32> {
        let mut s = vec![self.backbone_lr_scale; 2 * self.conv_count()];
        s.extend([1.0, 1.0]);
        s
    }

    fn backward(&mut self, dlogits: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.backward_impl(dlogits)
    }

    fn params_mut(&mut self) -> Vec<&mut [f32]> {
        self.params_impl()
    }
}

impl SuffixModel {
    /// Embeddings `[batch, dim]` of cached cut values; keeps every value for the backward.
    pub fn embeddings(&mut self, batch: &[&[f32]]) -> Result<Vec<f32>> {
        let [h, w, c] = self.cut_shape;
        if batch.iter().any(|x| x.len() != h * w * c) {
            return Err(Error::shape("last blocks", format!("cached inputs must have {} values", h * w * c)));
        }
        let mut values = vec![Tensor::new(vec![batch.len(), h, w, c], batch.concat())?];
        if let Some(q) = &mut self.qat {
            q.apply(0, values[0].data_mut());
        }
        self.used_weights.clear();
        for (j, (inputs, op)) in self.nodes.iter().enumerate() {
            let x = &values[inputs[0]];
            let mut y = match op {
                PreparedOp::Conv { weight, bias, params, activation, .. } => {
                    let fq = match self.qat {
                        Some(_) => Some(Tensor::new(
                            weight.shape().to_vec(),
                            fake_quant_weights(weight.data(), weight.shape()[0])?,
                        )?),
                        None => None,
                    };
                    let mut y = conv2d_f32(x, fq.as_ref().unwrap_or(weight), Some(bias), params)?;
                    self.used_weights.push(fq);
                    apply_activation(y.data_mut(), *activation);
                    y
                }
                PreparedOp::Add { activation } => {
                    let mut y = add_f32(x, &values[inputs[1]])?;
                    apply_activation(y.data_mut(), *activation);
                    y
                }
                PreparedOp::GlobalAvgPool => {
                    let y = global_avg_pool_f32(x)?;
                    let (n, c) = (y.shape()[0], y.shape()[3]);
                    y.reshape(vec![n, c])?
                }
                other => return Err(Error::invalid("last blocks", format!("unexpected {} node", other.kind()))),
            };
            if let Some(q) = &mut self.qat {
                q.apply(j + 1, y.data_mut());
            }
            values.push(y);
        }
        self.used_head = match self.qat {
            Some(_) => Some(fake_quant_weights(&self.head.weight, self.head.classes)?),
            None => None,
        };
        let emb = values.last().ok_or_else(|| Error::invalid("last blocks", "no nodes"))?;
        if emb.shape() != [batch.len(), self.head.dim] {
            return Err(Error::shape("last blocks", format!("embedding {:?} does not fit the head", emb.shape())));
        }
        let out = emb.data().to_vec();
        self.values = values;
        Ok(out)
    }

    fn backward_impl(&mut self, dlogits: &[f32]) -> Result<Vec<Vec<f32>>> {
        let n = self.values.first().map_or(0, |v| v.shape()[0]);
        let emb = self.values.last().ok_or_else(|| Error::invalid("last blocks", "backward before forward"))?;
        let (d, k) = (self.head.dim, self.head.classes);
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; self.values.len()];
        let (mut hw, mut hb, mut demb) = (vec![0f32; d * k], vec![0f32; k], vec![0f32; n * d]);
        let head_w = self.used_head.as_ref().unwrap_or(&self.head.weight);
        dense_backward_f32(emb.data(), head_w, dlogits, (n, d, k), Some(&mut demb), &mut hw, Some(&mut hb))?;
        *grads.last_mut().ok_or_else(|| Error::invalid("last blocks", "no values"))? = Some(demb);
        let mut param_grads: Vec<Vec<f32>> = vec![];
        // Conv index of each node, to find the weights its forward used.
        let mut conv_index = self.used_weights.len();
        for (j, (inputs, op)) in self.nodes.iter().enumerate().rev() {
            if matches!(op, PreparedOp::Conv { .. }) {
                conv_index -= 1;
            }
            let y = &self.values[j + 1];
            let Some(mut dy) = grads[j + 1].take() else {
                if matches!(op, PreparedOp::Conv { .. }) {
                    return Err(Error::invalid("last blocks", format!("node {j} gets no gradient")));
                }
                continue;
            };
            if let Some(q) = &self.qat {
                q.mask_gradient(j + 1, &mut dy);
            }
            let x = &self.values[inputs[0]];
            match op {
                PreparedOp::Conv { weight, bias, params, activation, .. } => {
                    let weight = self.used_weights.get(conv_index).and_then(|w| w.as_ref()).unwrap_or(weight);
                    let dpre = act_backward(*activation, y, dy)?;
                    let (mut dw, mut db) = (vec![0f32; weight.len()], vec![0f32; bias.len()]);
                    // The cut value is frozen input: no gradient needed for it.
                    let dx = if inputs[0] == 0 { None } else { Some(accumulate(&mut grads[inputs[0]], x.len())) };
                    conv2d_backward_f32(
                        x,
                        weight,
                        &dpre,
                        params,
                        dx.map(|v| v.as_mut_slice()),
                        &mut dw,
                        Some(&mut db),
                    )?;
                    param_grads.push(db);
                    param_grads.push(dw);
                }
                PreparedOp::Add { activation } => {
                    let dpre = act_backward(*activation, y, dy)?;
                    let b = &self.values[inputs[1]];
                    let (mut da, mut dbv) = (vec![0f32; x.len()], vec![0f32; b.len()]);
                    add_backward_f32(x.shape(), b.shape(), &dpre, &mut da, &mut dbv)?;
                    for (input, g) in [(inputs[0], da), (inputs[1], dbv)] {
                        if input != 0 {
                            let len = g.len();
                            accumulate(&mut grads[input], len).iter_mut().zip(g).for_each(|(a, b)| *a += b);
                        }
                    }
                }
                PreparedOp::GlobalAvgPool => {
                    if inputs[0] != 0 {
                        let slot = accumulate(&mut grads[inputs[0]], x.len());
                        global_avg_pool_backward_f32(x.shape(), &dy, slot)?;
                    }
                }
                other => return Err(Error::invalid("last blocks", format!("unexpected {} node", other.kind()))),
            }
        }
        // Collected in reverse as (bias, weight) pairs: flip to node order (weight, bias).
        param_grads.reverse();
        param_grads.push(hw);
        param_grads.push(hb);
        Ok(param_grads)
    }

    fn params_impl(&mut self) -> Vec<&mut [f32]> {
        let mut p: Vec<&mut [f32]> = vec![];
        for (_, op) in self.nodes.iter_mut() {
            if let PreparedOp::Conv { weight, bias, .. } = op {
                p.push(weight.data_mut());
                p.push(bias.as_mut_slice());
            }
        }
        p.push(&mut self.head.weight);
        p.push(&mut self.head.bias);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::Rng;
    use crate::ops::gradcheck::values;
    use crate::train::loss::Loss;

    fn tiny() -> PreparedF32 {
        let (g, t) = crate::zoo::testnet::tiny_network();
        PreparedF32::new(&g, &t).unwrap()
    }

    #[test]
    fn splits_at_block_boundaries() {
        let plan = tiny();
        let s = split_last_blocks(&plan.graph, 1).unwrap();
        assert_eq!((s.cut, s.first, s.last), (1, 1, 6));
        assert_eq!(s.blocks, vec!["blocks.0".to_string()]);
        let s0 = split_last_blocks(&plan.graph, 0).unwrap();
        assert_eq!((s0.cut, s0.first), (5, 5));
        assert!(split_last_blocks(&plan.graph, 2).is_err());
    }

    #[test]
    fn suffix_gradients_match_finite_differences() {
        let plan = tiny();
        let split = split_last_blocks(&plan.graph, 1).unwrap();
        let head = LinearHead::new(6, 3, &mut Rng::new(1)).unwrap();
        let mut m = SuffixModel::new(&plan, split, head).unwrap();
        assert_eq!(m.cut_shape, [6, 6, 4]);
        let xs: Vec<Vec<f32>> = (0..2).map(|i| values(m.input_len(), 50 + i)).collect();
        let batch: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
        let labels = [2, 0];
        let loss = |m: &mut SuffixModel| {
            let l = m.forward(&batch).unwrap();
            Loss::cross_entropy().compute(&l, &labels, 3).unwrap()
        };
        let (_, d) = loss(&mut m);
        let grads = m.backward(&d).unwrap();
        assert_eq!(grads.len(), m.params_mut().len());
        // Check a spread of entries of every parameter tensor.
        // A small step keeps pre-activations from crossing ReLU6's kinks.
        let h = 2e-3f32;
        for (p, g) in grads.iter().enumerate() {
            for i in (0..g.len()).step_by((g.len() / 5).max(1)) {
                let mut plus = m.clone();
                plus.params_mut()[p][i] += h;
                let mut minus = m.clone();
                minus.params_mut()[p][i] -= h;
                let numeric = (loss(&mut plus).0 - loss(&mut minus).0) / (2.0 * h);
                let scale = g.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
                assert!((numeric - g[i]).abs() <= 3e-2 * scale, "param {p}[{i}]: analytic {} numeric {numeric}", g[i]);
            }
        }
    }
}
