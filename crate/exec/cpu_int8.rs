//! int8 execution of a quantized model: every convolution and residual add runs in int8 on
//! the reference kernels (i32 accumulation, fused bias + requantization + ReLU6). The global
//! pool sums int8 values in i32 and dequantizes the mean to the f32 embedding
//! (`e[c] = s_x * sum(x - zx) / (H * W)`): the embedding is what on-device training caches, and
//! an 8-bit rounding of it cost about 3 dB of logit SQNR. The head then runs with int8 weights
//! on that f32 embedding: `logit[c] = s_w[c] * sum_k e[k] * (w_q[c, k] - z_w[c]) + b[c]`.
//!
//! Imported models (TFLite, ONNX QDQ) carry their own quantization, which may differ from the
//! project's own PTQ in two ways, both honoured here so that they run as their authors built them:
//! - weight zero points (`<weight>.zero_point`, I32 per output channel; absent = 0), from
//!   uint8 asymmetric weights shifted into int8;
//! - a quantization on the embedding or the logits value: the f32 value is then rounded onto
//!   that grid, `v = s * (clamp(round(v / s) + z, -128, 127) - z)`, as the source model's
//!   quantized pool or classifier output is. The project's own PTQ leaves both `None`.
//! - TFLite arithmetic ([`Arithmetic`]): fixed-point requantization (`quant::requant`), the
//!   pool as TFLite's integer average `(sum + hw/2) / hw` (uint8: half up; int8: half away
//!   from zero), and the classifier as an integer product of the rounded embedding
//!   `k = round(e / s_e)` with `b_q = round(b / (s_e * s_w))` recovered from the stored f32 bias
//!   (exact for `|b_q| < 2^23`), requantized like a convolution. A head trained here on such a
//!   backbone has no logits grid and runs as the engine's head on the f32 embedding.

use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::exec::profile::LayerProfile;
use crate::model::etm::{Arithmetic, ModelFile, Stored, ValueQuant};
use crate::model::graph::{Graph, Op, Unary};
use crate::ops::activation::apply_activation;
use crate::ops::add::{add_i8_ort_requant, add_i8_requant, add_i8_tflite};
use crate::ops::combine::{concat_channels, mul_f32, mul_i8_f32, mul_i8_tflite};
use crate::ops::conv::{conv2d_i8_requant, prepare_conv_weights, Conv2dParams, ConvWeightsI8};
use crate::ops::gemm::{dense_i8_on_grid, dot_i8_f32_rows};
use crate::ops::pool::{avg_pool2d_i8, avg_pool2d_i8_tflite, max_pool2d_i8, requantize_values, Pool2dParams};
use crate::ops::quantize::quantize_i8;
use crate::quant::calibrate::MAX_BIAS_Q;
use crate::quant::tflite::{TfliteAdd, TfliteMul};
use crate::quant::{Activation, AddRequant, OrtAddRequant, OutputQuant, QParams, Requant};

#[derive(Clone, Debug)]
enum Int8Op {
    Conv {
        weight: QTensor,
        /// The weights laid out once for the kernel (GEMM or depthwise).
        prepared: Option<ConvWeightsI8>,
        bias: Option<Vec<i32>>,
        params: Conv2dParams,
        out: OutputQuant,
        /// `s_x * s_w[c] / s_y` per channel (or TFLite's fixed point), from the model's grids.
        requant: Requant,
    },
    Add {
        out: OutputQuant,
        requant: AddArithmetic,
    },
    /// `tflite_mean`: TFLite's MEAN (requantizing) rather than its AVERAGE_POOL_2D, when the
    /// model runs in TFLite's arithmetic.
    GlobalAvgPool {
        tflite_mean: bool,
    },
    /// Head on the f32 embedding with int8 weights.
    Dense {
        weight: Vec<i8>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        bias: Option<Vec<f32>>,
        activation: Activation,
        /// Set when the file quantizes both the classifier's input and output: it then runs
        /// as an integer product ([`dense_i8_on_grid`]).
        integer: Option<IntegerDense>,
    },
    MaxPool {
        params: Pool2dParams,
        out: OutputQuant,
    },
    AvgPool {
        params: Pool2dParams,
        out: OutputQuant,
    },
    /// Output grid when the output is quantized (values after a mid-network global pool are
    /// f32, rounded onto their grid).
    Concat {
        out: Option<OutputQuant>,
    },
    Mul {
        out: Option<OutputQuant>,
        /// TFLite's integer product, when both inputs and the output are int8 in its arithmetic.
        tflite: Option<TfliteMul>,
    },
    /// `lut[q + 128]`: the function of each int8 input value on the output grid, when both
    /// are quantized.
    Unary {
        function: Unary,
        lut: Option<Box<[i8; 256]>>,
        out: Option<OutputQuant>,
    },
}

/// The requantization of an int8 add in the model's arithmetic, prepared once.
#[derive(Clone, Copy, Debug)]
enum AddArithmetic {
    Engine(AddRequant),
    Onnxruntime(OrtAddRequant),
    Tflite(TfliteAdd),
}

/// An integer classifier's per-model constants: input and output grids, the requantization
/// and the int32 bias `b_q = round(b / (s_x * s_w[c]))` (exact for `|b_q| < 2^23`).
#[derive(Clone, Debug)]
struct IntegerDense {
    input_scale: f32,
    output: (f32, i32),
    requant: Requant,
    bias_q: Vec<i32>,
}

impl Int8Op {
    fn kind(&self) -> &'static str {
        match self {
            Int8Op::Conv { .. } => "conv",
            Int8Op::Add { .. } => "add",
            Int8Op::GlobalAvgPool { .. } => "pool",
            Int8Op::Dense { .. } => "dense",
            Int8Op::MaxPool { .. } => "max_pool",
            Int8Op::AvgPool { .. } => "avg_pool",
            Int8Op::Concat { .. } => "concat",
            Int8Op::Mul { .. } => "mul",
            Int8Op::Unary { function, .. } => function.name(),
        }
    }
}

/// `f` on every int8 value of grid `x`, rounded onto grid `y`: `lut[q + 128]`.
fn unary_lut(f: Unary, x: ValueQuant, y: ValueQuant) -> Box<[i8; 256]> {
    let mut lut = Box::new([0i8; 256]);
    for (k, v) in lut.iter_mut().enumerate() {
        let real = crate::quant::requant::dequantize(k as i32 - 128, x.scale, x.zero_point);
        *v = crate::quant::requant::quantize_value(f.apply(real), y.scale, y.zero_point, -128, 127) as i8;
    }
    lut
}

/// `f` on every pair of int8 values: `table[(a + 128) * 256 + (b + 128)]`.
fn add_table(f: impl Fn(i8, i8) -> i8) -> Vec<i8> {
    (0..crate::gpu::table::TABLE_LEN)
        .map(|k| f(((k / 256) as i32 - 128) as i8, ((k % 256) as i32 - 128) as i8))
        .collect()
}

/// The table of unary `f` from grid `x` onto grid `y` in TFLite's arithmetic: its own
/// formula for the operators TFLite files hold, the engine's rounding for the rest.
fn tflite_unary_lut(f: Unary, x: ValueQuant, y: ValueQuant) -> Result<Box<[i8; 256]>> {
    use crate::quant::tflite;
    Ok(match f {
        Unary::Identity => tflite::requantize_lut(x, y)?,
        Unary::Sigmoid => tflite::logistic_lut(x, y),
        Unary::HardSwish => tflite::hard_swish_lut(x, y)?,
        other => unary_lut(other, x, y),
    })
}

/// One node of a quantized network as another backend sees it (the GPU plan walks these):
/// the constants and the prepared requantization, identical to what the CPU path uses.
pub enum Int8Layer<'a> {
    Conv {
        weight: &'a QTensor,
        bias: Option<&'a [i32]>,
        params: &'a Conv2dParams,
        requant: &'a Requant,
    },
    /// An add in the engine's arithmetic (the GPU has no kernel for onnxruntime's).
    Add {
        requant: AddRequant,
    },
    /// An add in an imported file's own arithmetic (TFLite's or onnxruntime's), as the table
    /// of its 65,536 results, `table[(a + 128) * 256 + (b + 128)]` (`gpu::table`).
    TableAdd {
        table: Vec<i8>,
    },
    GlobalAvgPool,
    /// The head: runs on the CPU for every backend ([`PreparedI8::head_logits`]).
    Dense,
    /// An op only the CPU runs (pooling windows, concat, mul, unary functions), by kind.
    Other(&'static str),
}

/// A quantized model ready to run.
#[derive(Clone, Debug)]
pub struct PreparedI8 {
    pub graph: Graph,
    values: Vec<Option<ValueQuant>>,
    ops: Vec<Int8Op>,
    arithmetic: Arithmetic,
    /// Per value: the last node that reads it ([`Graph::last_readers`]), after which a pass
    /// recycles its buffer.
    last_reader: Vec<Option<usize>>,
}

pub(crate) enum Val {
    Q(QTensor),
    F(Tensor),
}

/// Global average pool of an int8 NHWC value to the f32 `[N, C]` embedding:
/// `e = s_x * sum(x - zx) / (H * W)`, summed exactly in i32, rounded onto `out` when given.
fn global_avg_pool_i8_to_f32(x: &QTensor, out: Option<ValueQuant>) -> Result<Tensor> {
    let (sx, _) = x.params().per_tensor_pair("global_avg_pool")?;
    let (sums, hw) = global_sums_i8(x)?;
    let c = *x.shape().last().unwrap_or(&1);
    Tensor::new(vec![sums.len() / c.max(1), c], embedding_from_sums(&sums, sx, hw, out))
}

/// Rounds f32 values onto an int8 grid and back (the source model's quantized output).
fn round_onto(v: &mut [f32], q: Option<ValueQuant>) {
    if let Some(q) = q {
        for x in v {
            let k = crate::quant::requant::quantize_value(*x, q.scale, q.zero_point, -128, 127);
            *x = crate::quant::requant::dequantize(k, q.scale, q.zero_point);
        }
    }
}

/// The integer half of global average pooling: `sum[n, c] = sum_{h, w} (x - zx)` (exact in
/// i32) and `H * W`. The GPU computes the same sums (`shaders/global_sum_i8.wgsl`).
pub fn global_sums_i8(x: &QTensor) -> Result<(Vec<i32>, usize)> {
    let &[n, h, w, c] = x.shape() else {
        return Err(Error::shape("global_avg_pool", format!("expected NHWC, got {:?}", x.shape())));
    };
    let (_, zx) = x.params().per_tensor_pair("global_avg_pool")?;
    crate::ops::gemm::check_int8_reduction("global_avg_pool", h * w)?;
    let xd = x.i8_data("global_avg_pool")?;
    let mut sums = vec![0i32; n * c];
    for (b, acc) in sums.chunks_exact_mut(c.max(1)).enumerate() {
        for px in xd[b * h * w * c..(b + 1) * h * w * c].chunks_exact(c.max(1)) {
            for (a, &v) in acc.iter_mut().zip(px) {
                *a += v as i32 - zx;
            }
        }
    }
    Ok((sums, h * w))
}

/// The float half: `e = s_x * sum / (H * W)`; on the CPU for every backend (so the embedding
/// is bit-identical whether the sums came from the CPU or the GPU). When the model quantizes
/// its embedding (imported QDQ/QOperator files), the mean is requantized onto that grid as
/// onnxruntime's QLinearGlobalAveragePool does, `q = requantize(sum, s_x / (s_y * H * W))`
/// with the multiplier in f32, and `e = s_y * (q - z_y)`.
pub fn embedding_from_sums(sums: &[i32], sx: f32, hw: usize, out: Option<ValueQuant>) -> Vec<f32> {
    match out {
        None => sums.iter().map(|&a| a as f32 * sx / hw as f32).collect(),
        Some(q) => {
            let m = sx / (q.scale * hw as f32);
            sums.iter()
                .map(|&a| {
                    let k = crate::quant::requantize(a, m, q.zero_point, -128, 127);
                    crate::quant::requant::dequantize(k, q.scale, q.zero_point)
                })
                .collect()
        }
    }
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
fn float(m: &ModelFile, name: &str) -> Result<Vec<f32>> {
    match m.tensors.get(name) {
        Some(Stored::F32(t)) => Ok(t.data().to_vec()),
        _ => Err(Error::invalid("int8 model", format!("tensor '{name}' is missing or not F32"))),
    }
}
/// Per-output-channel weight zero points: `<weight>.zero_point` when stored, else zeros.
fn weight_zero_points(m: &ModelFile, weight: &str, channels: usize) -> Result<Vec<i32>> {
    match m.tensors.get(&format!("{weight}.zero_point")) {
        None => Ok(vec![0; channels]),
        Some(Stored::I32 { data, .. }) if data.len() == channels => Ok(data.clone()),
        Some(_) => {
            Err(Error::invalid("int8 model", format!("zero points '{weight}.zero_point' are not I32 [{channels}]")))
        }
    }
}
fn scales(m: &ModelFile, weight: &str) -> Result<Vec<f32>> {
    match m.tensors.get(&format!("{weight}.scale")) {
        Some(Stored::F32(t)) => Ok(t.data().to_vec()),
        _ => Err(Error::invalid("int8 model", format!("per-channel scales '{weight}.scale' missing"))),
    }
}

/// The requantization of a conv or classifier output in the model's arithmetic.
/// TFLite rounds the last shift of its int8 files' convolutions and fully connected layers
/// half up ([`Arithmetic::TfliteInt8`]; `Requant::shift_half_up`), of uint8 files' away
/// from zero.
fn requant_in(arithmetic: Arithmetic, input_scale: f32, weight_scales: &[f32], out: &OutputQuant) -> Result<Requant> {
    if arithmetic.is_tflite() {
        let half_up = arithmetic == Arithmetic::TfliteInt8;
        Requant::tflite("conv2d_i8", input_scale, weight_scales, out, half_up)
    } else {
        Requant::new("conv2d_i8", input_scale, weight_scales, out)
    }
}

/// The value node `n` reads as its input `k`.
fn input(n: &crate::model::graph::Node, k: usize) -> Result<usize> {
    n.inputs.get(k).copied().ok_or_else(|| Error::invalid("int8 model", format!("node '{}' lacks input {k}", n.name)))
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
        let optional_out = |i: usize| -> Result<Option<OutputQuant>> {
            q.values
                .get(i)
                .copied()
                .flatten()
                .map(|v| OutputQuant::new(v.scale, v.zero_point, Activation::None))
                .transpose()
        };
        let mut ops = Vec::with_capacity(graph.nodes.len());
        for (i, n) in graph.nodes.iter().enumerate() {
            let out_value = i + 1;
            ops.push(match &n.op {
                Op::Conv2d { weight, bias, activation, .. } => {
                    let (shape, data) = int8(m, weight)?;
                    let s = scales(m, weight)?;
                    let zps = weight_zero_points(m, weight, s.len())?;
                    let weight = QTensor::from_i8(shape, data, QParams::per_axis(0, s, zps)?)?;
                    let params = n.op.conv_params().ok_or_else(|| Error::invalid("int8 model", "conv params"))?;
                    let out = out_quant(out_value, *activation)?;
                    Int8Op::Conv {
                        prepared: prepare_conv_weights(&weight, &params)?,
                        requant: requant_in(q.arithmetic, vq(input(n, 0)?)?.scale, weight.params().scales(), &out)?,
                        weight,
                        bias: bias.as_deref().map(|b| int32(m, b)).transpose()?,
                        params,
                        out,
                    }
                }
                Op::Add { activation } => {
                    let out = out_quant(out_value, *activation)?;
                    let pair = |k: usize| -> Result<(f32, i32)> { vq(input(n, k)?).map(|v| (v.scale, v.zero_point)) };
                    let requant = match q.arithmetic.ort_add_offset() {
                        _ if q.arithmetic.is_tflite() => AddArithmetic::Tflite(TfliteAdd::new(
                            vq(input(n, 0)?)?,
                            vq(input(n, 1)?)?,
                            vq(out_value)?,
                            out.bounds(),
                        )?),
                        Some(offset) => {
                            AddArithmetic::Onnxruntime(OrtAddRequant::new(pair(0)?, pair(1)?, &out, offset)?)
                        }
                        None => AddArithmetic::Engine(AddRequant::new(pair(0)?, pair(1)?, &out)?),
                    };
                    Int8Op::Add { out, requant }
                }
                Op::GlobalAvgPool { tflite_mean } => Int8Op::GlobalAvgPool { tflite_mean: *tflite_mean },
                Op::Dense { weight, bias, activation } => {
                    let scales = scales(m, weight)?;
                    let bias = bias.as_deref().map(|b| float(m, b)).transpose()?;
                    let input = n.inputs.first().and_then(|&v| q.values.get(v).copied().flatten());
                    let output = q.values.get(out_value).copied().flatten();
                    let integer = match (input, output) {
                        (Some(x), Some(y)) => {
                            let out = OutputQuant::new(y.scale, y.zero_point, *activation)?;
                            let bias_q = (0..scales.len())
                                .map(|c| {
                                    let b = bias.as_ref().map_or(0.0, |b| b[c] as f64);
                                    (b / (x.scale as f64 * scales[c] as f64)).round() as i32
                                })
                                .collect();
                            Some(IntegerDense {
                                input_scale: x.scale,
                                output: (y.scale, y.zero_point),
                                requant: requant_in(q.arithmetic, x.scale, &scales, &out)?,
                                bias_q,
                            })
                        }
                        _ => None,
                    };
                    Int8Op::Dense {
                        weight: int8(m, weight)?.1,
                        zero_points: weight_zero_points(m, weight, scales.len())?,
                        scales,
                        bias,
                        activation: *activation,
                        integer,
                    }
                }
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let params = n.op.pool_params().ok_or_else(|| Error::invalid("int8 model", "pool params"))?;
                    let out = out_quant(out_value, Activation::None)?;
                    if matches!(n.op, Op::MaxPool { .. }) {
                        Int8Op::MaxPool { params, out }
                    } else {
                        Int8Op::AvgPool { params, out }
                    }
                }
                Op::Concat => Int8Op::Concat { out: optional_out(out_value)? },
                Op::Mul => {
                    let grids = |k: usize| n.inputs.get(k).and_then(|&v| q.values.get(v).copied().flatten());
                    let tflite = match (grids(0), grids(1), q.values.get(out_value).copied().flatten()) {
                        (Some(a), Some(b), Some(y)) if q.arithmetic.is_tflite() => {
                            Some(TfliteMul::new(a, b, y, (-128, 127))?)
                        }
                        _ => None,
                    };
                    Int8Op::Mul { out: optional_out(out_value)?, tflite }
                }
                Op::Unary { function } => {
                    let input = n.inputs.first().and_then(|&v| q.values.get(v).copied().flatten());
                    let output = q.values.get(out_value).copied().flatten();
                    let lut = match input.zip(output) {
                        Some((x, y)) if q.arithmetic.is_tflite() => Some(tflite_unary_lut(*function, x, y)?),
                        Some((x, y)) => Some(unary_lut(*function, x, y)),
                        None => None,
                    };
                    Int8Op::Unary { function: *function, lut, out: optional_out(out_value)? }
                }
            });
        }
        let last_reader = graph.last_readers();
        Ok(PreparedI8 { graph, values: q.values.clone(), ops, arithmetic: q.arithmetic, last_reader })
    }

    /// Whose integer arithmetic the model runs with.
    pub fn arithmetic(&self) -> Arithmetic {
        self.arithmetic
    }

    /// 128 for a uint8 TFLite file (its integers are the int8 values plus 128), else 0.
    fn tflite_offset(&self) -> i32 {
        if self.arithmetic == Arithmetic::TfliteUint8 {
            128
        } else {
            0
        }
    }

    /// The f32 embedding from the global pool's integer sums `sum (x - z_x)` over `hw`
    /// pixels (computed by the CPU or the GPU), in the model's own arithmetic and onto its
    /// embedding grid when it has one: every backend finishes the pool here, so equal sums
    /// give bit-identical embeddings. TFLite: its MEAN (`quant::tflite::mean_multiplier`) or
    /// its AVERAGE_POOL_2D rounding (`quant::tflite::avg_round`, one grid in and out);
    /// otherwise [`embedding_from_sums`].
    pub fn embedding_from_pool_sums(&self, sums: &[i32], x: ValueQuant, hw: usize) -> Result<Vec<f32>> {
        let out = self.value_quant_opt(self.graph.embedding);
        let tflite_mean = matches!(
            self.graph.embedding.checked_sub(1).and_then(|i| self.ops.get(i)),
            Some(Int8Op::GlobalAvgPool { tflite_mean: true })
        );
        let (Some(out), true) = (out, self.arithmetic.is_tflite()) else {
            return Ok(embedding_from_sums(sums, x.scale, hw, out));
        };
        let mean = if tflite_mean { Some(crate::quant::tflite::mean_multiplier(x, out, hw)?) } else { None };
        let offset = self.tflite_offset();
        Ok(sums
            .iter()
            .map(|&s| {
                let q = match mean {
                    Some(m) => m.apply(s).saturating_add(out.zero_point),
                    None => crate::quant::tflite::avg_round(s.saturating_add(hw as i32 * x.zero_point), hw, offset),
                };
                crate::quant::requant::dequantize(q.clamp(-128, 127), out.scale, out.zero_point)
            })
            .collect())
    }

    /// The quantization of value `v` if it has one (the embedding and logits usually do not).
    pub fn value_quant_opt(&self, v: usize) -> Option<ValueQuant> {
        self.values.get(v).copied().flatten()
    }

    /// Scale and zero point of value `v` (0 = the input, node `i` writes value `i + 1`).
    pub fn value_quant(&self, v: usize) -> Result<(f32, i32)> {
        match self.values.get(v).copied().flatten() {
            Some(q) => Ok((q.scale, q.zero_point)),
            None => Err(Error::invalid("int8 model", format!("value {v} has no quantization"))),
        }
    }

    /// Node `i` with its requantization prepared from its inputs' and output's parameters.
    pub fn layer(&self, i: usize) -> Result<Int8Layer<'_>> {
        let (Some(node), Some(op)) = (self.graph.nodes.get(i), self.ops.get(i)) else {
            return Err(Error::invalid("int8 model", format!("no node {i}")));
        };
        let _ = node;
        Ok(match op {
            Int8Op::Conv { weight, bias, params, requant, .. } => {
                Int8Layer::Conv { weight, bias: bias.as_deref(), params, requant }
            }
            Int8Op::Add { requant: AddArithmetic::Engine(requant), .. } => Int8Layer::Add { requant: *requant },
            Int8Op::Add { requant: AddArithmetic::Onnxruntime(rq), .. } => {
                Int8Layer::TableAdd { table: add_table(|a, b| rq.apply(a, b)) }
            }
            Int8Op::Add { requant: AddArithmetic::Tflite(rq), .. } => {
                Int8Layer::TableAdd { table: add_table(|a, b| rq.apply(a, b)) }
            }
            Int8Op::GlobalAvgPool { .. } => Int8Layer::GlobalAvgPool,
            Int8Op::Dense { .. } => Int8Layer::Dense,
            other => Int8Layer::Other(other.kind()),
        })
    }

    /// The quantized input (value 0) of a preprocessed f32 NHWC batch.
    pub fn quantize_input(&self, input: &Tensor) -> Result<QTensor> {
        match self.input_value(input)? {
            Val::Q(q) => Ok(q),
            Val::F(_) => Err(Error::invalid("forward_i8", "the input is not quantized")),
        }
    }

    /// Logits from the f32 embedding `[N, D]`: the nodes after the global pool, on the CPU.
    /// Every backend finishes here, so equal embeddings give bit-identical logits.
    pub fn head_logits(&self, embedding: Tensor) -> Result<Tensor> {
        let e = self.graph.embedding;
        // Values before the embedding are never read by the head (the graph validates that a
        // node only reads earlier values; heads read the pool); empty stand-ins fill the slots.
        let empty = Tensor::zeros(vec![0])?;
        let mut values: Vec<Val> = (0..e).map(|_| Val::F(empty.clone())).collect();
        values.push(Val::F(embedding));
        for i in e..self.ops.len() {
            let y = self.step(i, &values)?;
            values.push(y);
        }
        match values.into_iter().nth(self.graph.logits) {
            Some(Val::F(t)) => Ok(t),
            _ => Err(Error::invalid("forward_i8", "the logits value is not the float head output")),
        }
    }

    /// Logits `[N, classes]` for a preprocessed f32 NHWC batch (quantized on entry).
    pub fn logits(&self, input: &Tensor) -> Result<Tensor> {
        match self.value(input, self.graph.logits)? {
            Val::F(t) => Ok(t),
            Val::Q(_) => Err(Error::invalid("forward_i8", "the logits value is not the float head output")),
        }
    }

    /// Every value of a forward pass as f32 (int8 values dequantized), index 0 = the input:
    /// for layer-by-layer comparison with the float model.
    pub fn dequantized_values(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.run_all(input)?
            .into_iter()
            .map(|v| match v {
                Val::Q(q) => crate::ops::quantize::dequantize_tensor(&q),
                Val::F(t) => Ok(t),
            })
            .collect()
    }

    /// Value `v` alone, dequantized (only the nodes before it run): what a frozen int8
    /// prefix hands the trained part in quantization-aware training.
    pub fn dequantized_value(&self, input: &Tensor, v: usize) -> Result<Tensor> {
        match self.value(input, v)? {
            Val::Q(q) => crate::ops::quantize::dequantize_tensor(&q),
            Val::F(t) => Ok(t),
        }
    }

    /// The f32 embedding `[N, D]` (the global pool's output); the head is not run.
    pub fn embeddings(&self, input: &Tensor) -> Result<Tensor> {
        match self.value(input, self.graph.embedding)? {
            Val::F(t) => Ok(t),
            Val::Q(_) => Err(Error::invalid("forward_i8", "the embedding value is not the float pool output")),
        }
    }

    /// Every value of a forward pass (index 0 = the input).
    fn run_all(&self, input: &Tensor) -> Result<Vec<Val>> {
        let mut values = vec![self.input_value(input)?];
        for i in 0..self.ops.len() {
            let y = self.step(i, &values)?;
            values.push(y);
        }
        Ok(values)
    }

    /// Value `target` alone: the nodes before it run, and each value is released after the
    /// last node that reads it, its buffer recycled for later outputs
    /// ([`crate::ops::scratch`]). A pass holds only its live values and, from the second pass
    /// on, zeroes no fresh memory. The bits of [`Self::run_all`]'s value `target`.
    fn value(&self, input: &Tensor, target: usize) -> Result<Val> {
        self.pass(self.input_value(input)?, target, |_, _, _, _| {})
    }

    /// [`Self::value`] from the quantized input `x`, with `each(node, output, values so far,
    /// ms)` after every node (the values its inputs were read from, before any is released).
    fn pass(&self, x: Val, target: usize, mut each: impl FnMut(usize, &Val, &[Val], f64)) -> Result<Val> {
        if target > self.ops.len() {
            return Err(Error::invalid("forward_i8", format!("no value {target}")));
        }
        let mut values = vec![x];
        for i in 0..target {
            let t = crate::base::clock::now_ms();
            let y = self.step(i, &values)?;
            each(i, &y, &values, crate::base::clock::now_ms() - t);
            values.push(y);
            if let Some(node) = self.graph.nodes.get(i) {
                for &v in &node.inputs {
                    self.release(&mut values, v, Some(i), target);
                }
            }
            self.release(&mut values, i + 1, None, target);
        }
        values.pop().ok_or_else(|| Error::invalid("forward_i8", format!("no value {target}")))
    }

    /// Recycles value `v` if node `reader` is its last reader (`None`: nothing reads it) and
    /// it is not the `target`; an empty f32 stand-in (no buffer) keeps the others' indices.
    fn release(&self, values: &mut [Val], v: usize, reader: Option<usize>, target: usize) {
        if v == target || self.last_reader.get(v).copied().flatten() != reader {
            return;
        }
        let (Some(slot), Ok(empty)) = (values.get_mut(v), Tensor::new(vec![0], Vec::new())) else { return };
        match std::mem::replace(slot, Val::F(empty)) {
            Val::Q(q) => {
                if let crate::base::tensor::QData::I8(data) = q.into_data() {
                    crate::ops::scratch::recycle_i8(data);
                }
            }
            Val::F(t) => crate::ops::scratch::recycle_f32(t.into_data()),
        }
    }

    /// Wall-clock milliseconds of each node on one input, in graph order (what the speed
    /// work profiles), with its kind ("pointwise", "depthwise", "conv", "add", "pool",
    /// "dense") and multiply-accumulates (output elements x reduction length; 0 for add and
    /// pool). The input's quantization is the first entry, kind "quantize".
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LayerProfile>> {
        let t0 = crate::base::clock::now_ms();
        let x = self.input_value(input)?;
        let mut out = vec![LayerProfile {
            name: "input".into(),
            kind: "quantize",
            ms: crate::base::clock::now_ms() - t0,
            macs: 0,
        }];
        let shape = |v: &Val| match v {
            Val::Q(q) => q.shape().to_vec(),
            Val::F(f) => f.shape().to_vec(),
        };
        self.pass(x, self.ops.len(), |i, y, values, ms| {
            let (Some(node), Some(op)) = (self.graph.nodes.get(i), self.ops.get(i)) else { return };
            let y_len = shape(y).iter().product::<usize>() as u64;
            // The dense head's reduction is its input's last axis.
            let in_last = node
                .inputs
                .first()
                .and_then(|&v| values.get(v))
                .map_or(0, |v| shape(v).last().copied().unwrap_or(0) as u64);
            let (kind, macs) = match op {
                Int8Op::Conv { weight, params, .. } => LayerProfile::conv(weight.shape(), params.groups, y_len),
                Int8Op::Dense { .. } => ("dense", y_len * in_last),
                other => (other.kind(), 0),
            };
            out.push(LayerProfile { name: node.name.clone(), kind, ms, macs });
        })?;
        Ok(out)
    }

    /// The quantized input value (value 0) of a preprocessed f32 NHWC batch.
    pub(crate) fn input_value(&self, input: &Tensor) -> Result<Val> {
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
        Ok(Val::Q(quantize_i8(input, &QParams::per_tensor(iq.scale, iq.zero_point)?)?))
    }

    /// Runs node `i` on the values computed so far (`values[..=i]`).
    pub(crate) fn step(&self, i: usize, values: &[Val]) -> Result<Val> {
        let (node, op) = match (self.graph.nodes.get(i), self.ops.get(i)) {
            (Some(n), Some(o)) => (n, o),
            _ => return Err(Error::invalid("forward_i8", format!("no node {i}"))),
        };
        let input = |k: usize| {
            node.inputs
                .get(k)
                .and_then(|&v| values.get(v))
                .ok_or_else(|| Error::invalid("forward_i8", format!("node '{}' input {k} is not computed", node.name)))
        };
        Ok(match (op, input(0)?) {
            (Int8Op::Conv { weight, prepared, bias, params, out, requant }, Val::Q(x)) => {
                let (g, y) = conv2d_i8_requant(x, weight, prepared.as_ref(), bias.as_deref(), params, requant)?;
                Val::Q(QTensor::from_i8(g.out_shape().to_vec(), y, QParams::per_tensor(out.scale, out.zero_point)?)?)
            }
            (Int8Op::Add { out, requant }, Val::Q(x)) => match input(1)? {
                Val::Q(b) => match requant {
                    AddArithmetic::Onnxruntime(rq) => Val::Q(add_i8_ort_requant(x, b, rq, out)?),
                    AddArithmetic::Engine(rq) => Val::Q(add_i8_requant(x, b, rq, out)?),
                    AddArithmetic::Tflite(rq) => Val::Q(add_i8_tflite(x, b, rq, out)?),
                },
                Val::F(_) => {
                    return Err(Error::invalid("forward_i8", format!("node '{}' adds a float value", node.name)))
                }
            },
            (Int8Op::GlobalAvgPool { .. }, Val::Q(x)) if i + 1 == self.graph.embedding => {
                let (scale, zero_point) = x.params().per_tensor_pair("global_avg_pool")?;
                let (sums, hw) = global_sums_i8(x)?;
                let c = *x.shape().last().unwrap_or(&1);
                let e = self.embedding_from_pool_sums(&sums, ValueQuant { scale, zero_point }, hw)?;
                Val::F(Tensor::new(vec![sums.len() / c.max(1), c], e)?)
            }
            (Int8Op::GlobalAvgPool { .. }, Val::Q(x)) => {
                Val::F(global_avg_pool_i8_to_f32(x, self.value_quant_opt(i + 1))?)
            }
            // An integer classifier where the file quantizes both its input and output (TFLite's
            // in its arithmetic, onnxruntime's QGemm / QDQ Gemm in the engine's): the f32 input
            // is on its grid, so `round(e / s_e)` recovers its integers exactly. A head trained
            // here has no output grid and takes the float path below.
            (Int8Op::Dense { weight, zero_points, integer: Some(d), .. }, Val::F(x)) => {
                let (m, n) = (x.shape()[0], zero_points.len());
                let y =
                    dense_i8_on_grid(x.data(), m, d.input_scale, weight, zero_points, &d.bias_q, &d.requant, d.output)?;
                Val::F(Tensor::new(vec![m, n], y)?)
            }
            (Int8Op::Dense { weight, scales, zero_points, bias, activation, integer: None }, Val::F(x)) => {
                let (m, k) = (x.shape()[0], x.shape()[1]);
                let n = scales.len();
                let mut y = vec![0f32; m * n];
                for (row, e) in y.chunks_exact_mut(n.max(1)).zip(x.data().chunks_exact(k.max(1))) {
                    dot_i8_f32_rows(weight, zero_points, e, row)?;
                    for (c, out) in row.iter_mut().enumerate() {
                        *out = *out * scales[c] + bias.as_ref().map_or(0.0, |b| b[c]);
                    }
                }
                apply_activation(&mut y, *activation);
                round_onto(&mut y, self.value_quant_opt(i + 1));
                Val::F(Tensor::new(vec![m, n], y)?)
            }
            (Int8Op::MaxPool { params, out }, Val::Q(x)) => Val::Q(max_pool2d_i8(x, params, out)?),
            (Int8Op::AvgPool { params, out }, Val::Q(x)) if self.arithmetic.is_tflite() => {
                Val::Q(avg_pool2d_i8_tflite(x, params, out, self.tflite_offset())?)
            }
            (Int8Op::AvgPool { params, out }, Val::Q(x)) => Val::Q(avg_pool2d_i8(x, params, out)?),
            (Int8Op::Unary { lut: Some(lut), out: Some(out), .. }, Val::Q(x)) => {
                let y: Vec<i8> = x.i8_data("unary_i8")?.iter().map(|&q| lut[(q as i32 + 128) as usize]).collect();
                Val::Q(QTensor::from_i8(x.shape().to_vec(), y, QParams::per_tensor(out.scale, out.zero_point)?)?)
            }
            (Int8Op::Unary { function, .. }, Val::F(x)) => {
                let mut y = x.clone();
                y.data_mut().iter_mut().for_each(|v| *v = function.apply(*v));
                round_onto(y.data_mut(), self.value_quant_opt(i + 1));
                Val::F(y)
            }
            (Int8Op::Mul { out: Some(out), tflite: Some(m) }, Val::Q(x)) => match input(1)? {
                Val::Q(b) => Val::Q(mul_i8_tflite(x, b, m, out)?),
                Val::F(_) => {
                    return Err(Error::invalid("forward_i8", format!("node '{}' multiplies a float value", node.name)))
                }
            },
            (Int8Op::Mul { out, .. }, Val::Q(x)) => {
                let out =
                    out.ok_or_else(|| Error::invalid("forward_i8", format!("'{}' has no output grid", node.name)))?;
                let b = match input(1)? {
                    Val::Q(b) => crate::ops::quantize::dequantize_tensor(b)?,
                    Val::F(b) => b.clone(),
                };
                Val::Q(mul_i8_f32(x, &b, &out)?)
            }
            (Int8Op::Mul { .. }, Val::F(x)) => {
                let b = match input(1)? {
                    Val::Q(b) => crate::ops::quantize::dequantize_tensor(b)?,
                    Val::F(b) => b.clone(),
                };
                let mut y = mul_f32(x, &b)?;
                round_onto(y.data_mut(), self.value_quant_opt(i + 1));
                Val::F(y)
            }
            (Int8Op::Concat { out }, _) => {
                let parts: Vec<&Val> = (0..node.inputs.len()).map(input).collect::<Result<_>>()?;
                match out {
                    Some(out) if parts.iter().all(|p| matches!(p, Val::Q(_))) => {
                        let mut moved = vec![];
                        for p in &parts {
                            let Val::Q(q) = p else { continue };
                            let (sq, zq) = q.params().per_tensor_pair("concat_i8")?;
                            moved.push((requantize_values(q.i8_data("concat_i8")?.to_vec(), sq, zq, out)?, q.shape()));
                        }
                        let views: Vec<(&[i8], &[usize])> = moved.iter().map(|(d, s)| (&d[..], *s)).collect();
                        let (d, shape) = concat_channels(&views)?;
                        Val::Q(QTensor::from_i8(shape, d, QParams::per_tensor(out.scale, out.zero_point)?)?)
                    }
                    _ => {
                        let floats: Vec<Tensor> = parts
                            .iter()
                            .map(|p| match p {
                                Val::Q(q) => crate::ops::quantize::dequantize_tensor(q),
                                Val::F(t) => Ok(t.clone()),
                            })
                            .collect::<Result<_>>()?;
                        let views: Vec<(&[f32], &[usize])> = floats.iter().map(|t| (t.data(), t.shape())).collect();
                        let (mut d, shape) = concat_channels(&views)?;
                        round_onto(&mut d, self.value_quant_opt(i + 1));
                        Val::F(Tensor::new(shape, d)?)
                    }
                }
            }
            _ => {
                return Err(Error::invalid("forward_i8", format!("node '{}' got a value of the wrong kind", node.name)))
            }
        })
    }

    /// Per-channel sums of node `i`'s dequantized output (after its activation) and the
    /// number of pixels summed; `None` for nodes without a bias to correct.
    pub(crate) fn output_sums(&self, i: usize, values: &[Val]) -> Result<Option<(Vec<f64>, usize)>> {
        if !matches!(self.ops.get(i), Some(Int8Op::Conv { bias: Some(_), .. })) {
            return Ok(None);
        }
        let Val::Q(y) = self.step(i, values)? else { return Ok(None) };
        let (sy, zy) = y.params().per_tensor_pair("bias correction")?;
        let c = *y.shape().last().unwrap_or(&1);
        let mut sums = vec![0f64; c];
        for px in y.i8_data("bias correction")?.chunks_exact(c.max(1)) {
            sums.iter_mut().zip(px).for_each(|(s, &q)| *s += (q as i32 - zy) as f64 * sy as f64);
        }
        Ok(Some((sums, y.len() / c.max(1))))
    }

    /// Moves convolution `i`'s output down by `shift[c]` (real units) through its int32 bias;
    /// returns the new bias as stored in the model file.
    pub(crate) fn shift_bias(&mut self, i: usize, shift: &[f64], in_scale: f32) -> Result<Option<Stored>> {
        match self.ops.get_mut(i) {
            Some(Int8Op::Conv { weight, bias: Some(bias), .. }) => {
                for ((b, &d), &sw) in bias.iter_mut().zip(shift).zip(weight.params().scales()) {
                    let step = (d / (in_scale as f64 * sw as f64)).round();
                    *b = (*b as f64 - step).clamp(-MAX_BIAS_Q, MAX_BIAS_Q) as i32;
                }
                Ok(Some(Stored::I32 { shape: vec![bias.len()], data: bias.clone() }))
            }
            _ => Ok(None),
        }
    }
}
