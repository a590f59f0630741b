//! int8 execution of a quantized model: every convolution, residual add and the global
//! pool run in int8 on the reference kernels (i32 accumulation, fused bias + requantization
//! + ReLU6); the classifier head's i32 accumulators are dequantized to f32 logits
//! (`logit[c] = acc[c] * s_x * s_w[c]`), which keeps the logits free of a final 8-bit rounding.

use super::etm::{ModelFile, Stored, ValueQuant};
use super::forward::apply_activation;
use super::graph::{Graph, Op};
use crate::error::{Error, Result};
use crate::ops::add::add_i8;
use crate::ops::conv::{conv2d_i8, Conv2dParams};
use crate::ops::gemm::gemm_i8_acc;
use crate::ops::pool::global_avg_pool_i8;
use crate::ops::quantize::quantize_i8;
use crate::quant::{Activation, OutputQuant, QParams};
use crate::tensor::{QTensor, Tensor};

#[derive(Clone, Debug)]
enum Int8Op {
    Conv {
        weight: QTensor,
        bias: Option<Vec<i32>>,
        params: Conv2dParams,
        out: OutputQuant,
    },
    Add {
        out: OutputQuant,
    },
    GlobalAvgPool {
        out: OutputQuant,
    },
    /// Float-output head.
    Dense {
        weight: Vec<i8>,
        scales: Vec<f32>,
        bias: Option<Vec<i32>>,
        activation: Activation,
    },
}

/// A quantized model ready to run.
#[derive(Clone, Debug)]
pub struct PreparedI8 {
    pub graph: Graph,
    values: Vec<Option<ValueQuant>>,
    ops: Vec<Int8Op>,
}

enum Val {
    Q(QTensor),
    F(Tensor),
}

fn int8(m: &ModelFile, name: &str) -> Result<(Vec<usize>, Vec<i8>)> {
    match m.tensors.get(name) {
        Some(Stored::I8 { shape, data }) => Ok((shape.clone(), data.clone())),
        _ => Err(Error::invalid("int8 model", format!("tensor '{name}' is missing or not I8"))),
    }
}
fn int32(m: &ModelFile, name: &str) -> Result<Vec<i32>> {
    match m.tensors.get(name) {
        Some(Stored::I32 { data, .. }) => Ok(data.clone()),
        _ => Err(Error::invalid("int8 model", format!("tensor '{name}' is missing or not I32"))),
    }
}
fn scales(m: &ModelFile, weight: &str) -> Result<Vec<f32>> {
    match m.tensors.get(&format!("{weight}.scale")) {
        Some(Stored::F32(t)) => Ok(t.data().to_vec()),
        _ => Err(Error::invalid("int8 model", format!("per-channel scales '{weight}.scale' missing"))),
    }
}

impl PreparedI8 {
    /// Prepares a quantized `.etm` model (validated on load).
    pub fn new(m: &ModelFile) -> Result<Self> {
        let q =
            m.header.quantization.as_ref().ok_or_else(|| Error::invalid("int8 model", "the model is not quantized"))?;
        let graph = m.header.graph.clone();
        let vq = |i: usize| -> Result<ValueQuant> {
            q.values
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| Error::invalid("int8 model", format!("value {i} has no quantization")))
        };
        let out_quant = |i: usize, act: Activation| -> Result<OutputQuant> {
            let v = vq(i)?;
            OutputQuant::new(v.scale, v.zero_point, act)
        };
        let mut ops = Vec::with_capacity(graph.nodes.len());
        for (i, n) in graph.nodes.iter().enumerate() {
            let out_value = i + 1;
            ops.push(match &n.op {
                Op::Conv2d { weight, bias, activation, .. } => {
                    let (shape, data) = int8(m, weight)?;
                    let s = scales(m, weight)?;
                    let zps = vec![0; s.len()];
                    Int8Op::Conv {
                        weight: QTensor::from_i8(shape, data, QParams::per_axis(0, s, zps)?)?,
                        bias: bias.as_deref().map(|b| int32(m, b)).transpose()?,
                        params: n.op.conv_params().ok_or_else(|| Error::invalid("int8 model", "conv params"))?,
                        out: out_quant(out_value, *activation)?,
                    }
                }
                Op::Add { activation } => Int8Op::Add { out: out_quant(out_value, *activation)? },
                Op::GlobalAvgPool => Int8Op::GlobalAvgPool { out: out_quant(out_value, Activation::None)? },
                Op::Dense { weight, bias, activation } => Int8Op::Dense {
                    weight: int8(m, weight)?.1,
                    scales: scales(m, weight)?,
                    bias: bias.as_deref().map(|b| int32(m, b)).transpose()?,
                    activation: *activation,
                },
            });
        }
        Ok(PreparedI8 { graph, values: q.values.clone(), ops })
    }

    /// Logits `[N, classes]` for a preprocessed f32 NHWC batch (quantized on entry).
    pub fn logits(&self, input: &Tensor) -> Result<Tensor> {
        let [h, w, c] = self.graph.input;
        if input.shape().len() != 4 || input.shape()[1..] != [h, w, c] {
            return Err(Error::shape(
                "forward_i8",
                format!("input {:?} does not match the model's [N, {h}, {w}, {c}]", input.shape()),
            ));
        }
        let iq = self
            .values
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| Error::invalid("forward_i8", "input has no quantization"))?;
        let mut values = vec![Val::Q(quantize_i8(input, &QParams::per_tensor(iq.scale, iq.zero_point)?)?)];
        for (node, op) in self.graph.nodes.iter().zip(&self.ops) {
            let x = match &values[node.inputs[0]] {
                Val::Q(q) => q,
                Val::F(_) => {
                    return Err(Error::invalid("forward_i8", format!("node '{}' reads a float value", node.name)))
                }
            };
            let y = match op {
                Int8Op::Conv { weight, bias, params, out } => {
                    Val::Q(conv2d_i8(x, weight, bias.as_deref(), params, out)?)
                }
                Int8Op::Add { out } => match &values[node.inputs[1]] {
                    Val::Q(b) => Val::Q(add_i8(x, b, out)?),
                    Val::F(_) => return Err(Error::invalid("forward_i8", "add of a float value")),
                },
                Int8Op::GlobalAvgPool { out } => {
                    let y = global_avg_pool_i8(x, out)?;
                    let (n, c) = (y.shape()[0], y.shape()[3]);
                    Val::Q(y.reshape(vec![n, c])?)
                }
                Int8Op::Dense { weight, scales, bias, activation } => {
                    let (m, k) = (x.shape()[0], x.shape()[1]);
                    let n = scales.len();
                    let (sx, zx) = x.params().per_tensor_pair("dense")?;
                    let acc = gemm_i8_acc(x.i8_data("dense")?, zx, weight, &[0], bias.as_deref(), m, k, n)?;
                    let mut y: Vec<f32> =
                        acc.iter().enumerate().map(|(i, &a)| a as f32 * (sx * scales[i % n])).collect();
                    apply_activation(&mut y, *activation);
                    Val::F(Tensor::new(vec![m, n], y)?)
                }
            };
            values.push(y);
        }
        match values.into_iter().nth(self.graph.logits) {
            Some(Val::F(t)) => Ok(t),
            _ => Err(Error::invalid("forward_i8", "the logits value is not the float head output")),
        }
    }
}
