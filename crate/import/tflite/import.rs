//! TFLite -> `.etm`: quantized image classifiers (MobileNet-style, uint8 files of TF1 and the
//! full-integer int8 files of TF2's converter) keep the file's own quantization and run in
//! int8 with TFLite's arithmetic (`quant::requant::FixedMultiplier`, `quant::tflite`).
//!
//! Mapping (TFLite tensors are NHWC like the engine's, so no layout change):
//! ```text
//! CONV_2D            [O, KH, KW, I] weights  -> conv2d (groups 1), fused activation
//! DEPTHWISE_CONV_2D  [1, KH, KW, C*m]        -> conv2d, weights [C*m, KH, KW, 1], groups C
//! PAD (constant)     before a conv           -> the conv's explicit padding
//! AVERAGE_POOL_2D    window = whole image    -> global_avg_pool (output quantization kept)
//! AVERAGE_POOL_2D    other windows           -> avg_pool (TFLite's rounding)
//! MAX_POOL_2D                                -> max_pool
//! MEAN               over axes 1, 2          -> global_avg_pool { tflite_mean } (requantizes)
//! CONV_2D 1x1 / FULLY_CONNECTED after pool   -> dense (the classifier)
//! ADD, MUL                                   -> add (fused activation), mul
//! CONCATENATION      along channels          -> concat (inputs on the output's grid)
//! HARD_SWISH, LOGISTIC                       -> unary hard_swish, sigmoid (tables)
//! QUANTIZE           of a float input        -> the input's quantization
//! QUANTIZE           inside the network      -> unary identity (in int8: a requantization)
//! RESHAPE/SQUEEZE    of the pooled [N, C]    -> nothing (the engine's pool is already [N, C])
//! SOFTMAX            at the end              -> nothing (the engine applies softmax itself)
//! DEQUANTIZE         of the output           -> nothing
//! ```
//! uint8 data maps exactly onto int8 by subtracting 128 from values and zero points alike
//! (every kernel sees only `q - zero_point`). Per-tensor parameters are repeated per channel;
//! per-channel ones (TF2's int8 files) run along the output channels: axis 0 of convolution
//! and fully connected weights, axis 3 of depthwise `[1, KH, KW, C]` weights.
//! Weight zero points (uint8 files) are stored as `<weight>.zero_point`; the pool and
//! classifier outputs keep their quantization, which the int8 path rounds onto (see
//! `model::int8`). Biases: int32 with scale `s_in * s_w[c]`, as the engine's; the classifier's
//! becomes f32 `b_q * s_in * s_w[c]`.
//!
//! Preprocessing: TFLite image classifiers take the pixel itself as the quantized input, so
//! `mean = zero point (uint8 domain)` and `scale = 1 / s_in`.

use std::collections::HashMap;
use std::path::Path;

use super::schema::{
    self, AddOptions, ConcatenationOptions, Conv2DOptions, DepthwiseConv2DOptions, MulOptions, Operator, Pool2DOptions,
    ReducerOptions, TensorDef,
};
use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::model::etm::{Arithmetic, Imported, ModelFile, Quantization, Stored, ValueQuant};
use crate::model::graph::{Graph, Node, Op, PadSpec, Unary};
use crate::model::preprocess::Preprocess;
use crate::quant::Activation;

/// Operators the importer maps (the error for any other names them all).
pub const OPS: &[&str] = &[
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEQUANTIZE",
    "FULLY_CONNECTED",
    "HARD_SWISH",
    "LOGISTIC",
    "MAX_POOL_2D",
    "MEAN",
    "MUL",
    "PAD",
    "QUANTIZE",
    "RESHAPE",
    "SOFTMAX",
    "SQUEEZE",
];

/// Builtin operator names by code (schema.fbs `BuiltinOperator`), for the ones mapped and the
/// common ones an error may need to name.
fn op_name(code: i32) -> String {
    let name = match code {
        0 => "ADD",
        1 => "AVERAGE_POOL_2D",
        2 => "CONCATENATION",
        3 => "CONV_2D",
        4 => "DEPTHWISE_CONV_2D",
        6 => "DEQUANTIZE",
        9 => "FULLY_CONNECTED",
        14 => "LOGISTIC",
        17 => "MAX_POOL_2D",
        18 => "MUL",
        19 => "RELU",
        21 => "RELU6",
        22 => "RESHAPE",
        23 => "RESIZE_BILINEAR",
        25 => "SOFTMAX",
        28 => "TANH",
        32 => "CUSTOM",
        34 => "PAD",
        39 => "TRANSPOSE",
        40 => "MEAN",
        41 => "SUB",
        43 => "SQUEEZE",
        114 => "QUANTIZE",
        117 => "HARD_SWISH",
        _ => return format!("builtin operator {code}"),
    };
    name.to_string()
}

const TYPE_FLOAT32: i8 = 0;
const TYPE_INT32: i8 = 2;
const TYPE_UINT8: i8 = 3;
const TYPE_INT8: i8 = 9;

/// What a TFLite tensor is on the engine side.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// An NHWC int8 graph value.
    Image(usize),
    /// A padded image awaiting the convolution that absorbs the padding.
    Padded { value: usize, top: usize, left: usize, bottom: usize, right: usize },
    /// A `[N, C]` graph value (pooled embedding or logits).
    Flat(usize),
}

struct Importer<'a> {
    file: &'a str,
    model: schema::Model<'a>,
    tensors: flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<TensorDef<'a>>>,
    nodes: Vec<Node>,
    values: Vec<Option<ValueQuant>>,
    store: HashMap<String, Stored>,
    bound: HashMap<usize, Bound>,
    embedding: Option<usize>,
    logits: Option<usize>,
    /// uint8 zero point of the input (for the preprocessing) and its scale.
    input_zero_u8: i32,
    /// The quantized input is uint8 (a TF1-era file, whose arithmetic differs in rounding).
    input_uint8: bool,
    input_scale: f32,
}

fn err(file: &str, msg: impl Into<String>) -> Error {
    Error::parse(Path::new(file), msg.into())
}

/// Int8-domain quantization of an activation tensor (uint8 shifted by 128); per-tensor only.
fn value_quant(file: &str, t: &TensorDef) -> Result<ValueQuant> {
    let name = t.name().unwrap_or("?");
    let offset = match Some(t.tensor_type().unwrap_or(TYPE_FLOAT32)) {
        Some(TYPE_UINT8) => 128,
        Some(TYPE_INT8) => 0,
        ty => return Err(err(file, format!("tensor '{name}' has type {ty:?}: activations must be uint8 or int8"))),
    };
    let q = t.quantization();
    let (scales, zps) = (q.and_then(|q| q.scale()), q.and_then(|q| q.zero_point()));
    match (scales, zps) {
        (Some(s), Some(z)) if s.len() == 1 && z.len() == 1 => {
            let v = ValueQuant { scale: s.get(0), zero_point: z.get(0) as i32 - offset };
            if !(v.scale.is_finite() && v.scale > 0.0 && (-128..=127).contains(&v.zero_point)) {
                return Err(err(file, format!("tensor '{name}' has invalid quantization {v:?}")));
            }
            Ok(v)
        }
        _ => Err(err(file, format!("tensor '{name}' is not quantized per tensor"))),
    }
}

fn activation(file: &str, code: Option<i8>, op: &str) -> Result<Activation> {
    match code.unwrap_or(0) {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        3 => Ok(Activation::Relu6),
        c => Err(err(file, format!("{op}: fused activation {c} is not supported (only NONE, RELU, RELU6)"))),
    }
}

/// Operators whose fused activation the importer does not map.
fn activation_none(file: &str, code: Option<i8>, op: &str) -> Result<()> {
    match activation(file, code, op)? {
        Activation::None => Ok(()),
        a => Err(Error::unsupported(format!("{op}: a fused {a:?} on this operator"))),
    }
}

fn padding(code: Option<i8>) -> PadSpec {
    if code == Some(1) {
        PadSpec::Valid
    } else {
        PadSpec::Same
    }
}

impl<'a> Importer<'a> {
    fn tensor(&self, index: i32) -> Result<TensorDef<'a>> {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < self.tensors.len())
            .map(|i| self.tensors.get(i))
            .ok_or_else(|| err(self.file, format!("operator refers to tensor {index}, which does not exist")))
    }

    fn shape(&self, t: &TensorDef) -> Vec<usize> {
        t.shape().map(|s| s.iter().map(|d| d.max(0) as usize).collect()).unwrap_or_default()
    }

    /// The constant data of a tensor, from its buffer.
    fn data(&self, t: &TensorDef) -> Result<&'a [u8]> {
        let name = t.name().unwrap_or("?");
        let buffers = self.model.buffers().ok_or_else(|| err(self.file, "the model has no buffers"))?;
        let b = t.buffer().unwrap_or(0) as usize;
        if b >= buffers.len() {
            return Err(err(self.file, format!("tensor '{name}' refers to buffer {b}, which does not exist")));
        }
        let buf = buffers.get(b);
        if buf.offset().unwrap_or(0) > 1 {
            return Err(err(self.file, format!("tensor '{name}' is stored outside the flatbuffer (files over 2 GB)")));
        }
        let data = buf.data().map(|d| d.bytes()).unwrap_or(&[]);
        let want = self.shape(t).iter().product::<usize>()
            * if Some(t.tensor_type().unwrap_or(TYPE_FLOAT32)) == Some(TYPE_INT32) { 4 } else { 1 };
        if data.len() != want {
            return Err(err(
                self.file,
                format!("tensor '{name}' has {} bytes of data, its shape needs {want}", data.len()),
            ));
        }
        Ok(data)
    }

    fn int32s(&self, t: &TensorDef) -> Result<Vec<i32>> {
        if Some(t.tensor_type().unwrap_or(TYPE_FLOAT32)) != Some(TYPE_INT32) {
            return Err(err(self.file, format!("tensor '{}' must be int32", t.name().unwrap_or("?"))));
        }
        Ok(self.data(t)?.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Weights as int8 (uint8 shifted), per-output-channel scales and zero points (int8
    /// domain). Per-channel parameters must run along `axis`, the output channels' dimension
    /// (0 for convolutions and fully connected layers, 3 for depthwise `[1, KH, KW, C]`).
    fn weights(&self, t: &TensorDef, channels: usize, axis: i32) -> Result<(Vec<i8>, Vec<f32>, Vec<i32>)> {
        let name = t.name().unwrap_or("?");
        let offset = match Some(t.tensor_type().unwrap_or(TYPE_FLOAT32)) {
            Some(TYPE_UINT8) => 128,
            Some(TYPE_INT8) => 0,
            Some(TYPE_FLOAT32) => {
                return Err(err(
                    self.file,
                    format!("weights '{name}' are float: only quantized TFLite models are imported"),
                ))
            }
            ty => return Err(err(self.file, format!("weights '{name}' have type {ty:?} (expected uint8 or int8)"))),
        };
        let data: Vec<i8> =
            self.data(t)?.iter().map(|&b| if offset == 128 { (b as i32 - 128) as i8 } else { b as i8 }).collect();
        let q = t.quantization().ok_or_else(|| err(self.file, format!("weights '{name}' are not quantized")))?;
        let scales: Vec<f32> = q.scale().map(|s| s.iter().collect()).unwrap_or_default();
        let zps: Vec<i32> = q.zero_point().map(|z| z.iter().map(|v| v as i32 - offset).collect()).unwrap_or_default();
        let per_channel = |v: usize| v == channels && (channels == 1 || q.quantized_dimension().unwrap_or(0) == axis);
        let (scales, zps) = match (scales.len(), zps.len()) {
            (1, 1) => (vec![scales[0]; channels], vec![zps[0]; channels]),
            (s, z) if per_channel(s) && per_channel(z) => (scales, zps),
            (s, z) => {
                return Err(err(
                    self.file,
                    format!(
                        "weights '{name}': {s} scales and {z} zero points along axis {} for {channels} output channels along axis {axis}",
                        q.quantized_dimension().unwrap_or(0)
                    ),
                ))
            }
        };
        if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) || zps.iter().any(|z| !(-128..=127).contains(z)) {
            return Err(err(self.file, format!("weights '{name}' have invalid scales or zero points")));
        }
        Ok((data, scales, zps))
    }

    fn image(&self, t: i32, op: &str) -> Result<Bound> {
        match self.bound.get(&(t.max(0) as usize)) {
            Some(b @ (Bound::Image(_) | Bound::Padded { .. })) => Ok(*b),
            Some(Bound::Flat(_)) => Err(err(self.file, format!("{op} reads a pooled [N, C] tensor"))),
            None => Err(err(self.file, format!("{op} reads tensor {t}, which no earlier operator produced"))),
        }
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<usize>, out: Option<ValueQuant>) -> usize {
        self.nodes.push(Node { name: name.to_string(), op, inputs });
        self.values.push(out);
        self.nodes.len()
    }

    fn store_weights(&mut self, key: &str, shape: Vec<usize>, (w, s, z): (Vec<i8>, Vec<f32>, Vec<i32>)) -> Result<()> {
        let c = s.len();
        self.store.insert(key.to_string(), Stored::I8 { shape, data: w });
        self.store.insert(format!("{key}.scale"), Stored::F32(Tensor::new(vec![c], s)?));
        if z.iter().any(|&v| v != 0) {
            self.store.insert(format!("{key}.zero_point"), Stored::I32 { shape: vec![c], data: z });
        }
        Ok(())
    }

    fn conv(&mut self, op: &Operator<'a>, depthwise: bool) -> Result<()> {
        let ins: Vec<i32> = op.inputs().map(|v| v.iter().collect()).unwrap_or_default();
        let kind = if depthwise { "DEPTHWISE_CONV_2D" } else { "CONV_2D" };
        let (Some(&xi), Some(&wi)) = (ins.first(), ins.get(1)) else {
            return Err(err(self.file, format!("{kind} needs an input and weights")));
        };
        let out = self.output(op, kind)?;
        let out_t = self.tensor(out)?;
        let name = out_t.name().unwrap_or(kind).to_string();
        let w_t = self.tensor(wi)?;
        let ws = self.shape(&w_t);
        let (stride, pad, act, dilation) = if depthwise {
            let o =
                op.options::<DepthwiseConv2DOptions>().ok_or_else(|| err(self.file, format!("{name}: no options")))?;
            let d = (o.dilation_h_factor().unwrap_or(1), o.dilation_w_factor().unwrap_or(1));
            (
                [o.stride_h().unwrap_or(1), o.stride_w().unwrap_or(1)],
                padding(o.padding()),
                activation(self.file, o.fused_activation_function(), &name)?,
                d,
            )
        } else {
            let o = op.options::<Conv2DOptions>().ok_or_else(|| err(self.file, format!("{name}: no options")))?;
            let d = (o.dilation_h_factor().unwrap_or(1), o.dilation_w_factor().unwrap_or(1));
            (
                [o.stride_h().unwrap_or(1), o.stride_w().unwrap_or(1)],
                padding(o.padding()),
                activation(self.file, o.fused_activation_function(), &name)?,
                d,
            )
        };
        if dilation != (1, 1) {
            return Err(Error::unsupported(format!("{name}: dilated convolution {dilation:?}")));
        }
        if stride.iter().any(|&s| s < 1) {
            return Err(err(self.file, format!("{name}: stride {stride:?}")));
        }
        let &[o, kh, kw, i] = &ws[..] else {
            return Err(err(self.file, format!("{name}: weights of shape {ws:?} (expected 4-D)")));
        };
        let channels = if depthwise { i } else { o };
        let weights = self.weights(&w_t, channels, if depthwise { 3 } else { 0 })?;
        let out_q = value_quant(self.file, &out_t)?;
        let key = format!("{name}.weight");
        // A classifier: a 1x1 convolution of the pooled [N, C] tensor.
        if let Some(Bound::Flat(x)) = self.bound.get(&(xi.max(0) as usize)).copied() {
            if depthwise || kh != 1 || kw != 1 {
                return Err(err(self.file, format!("{name}: a {kh}x{kw} convolution of a pooled tensor")));
            }
            return self.dense(&name, x, (o, i), weights, ins.get(2).copied(), act, out, out_q);
        }
        let (x, pad) = match self.image(xi, &name)? {
            Bound::Padded { value, top, left, bottom, right } if pad == PadSpec::Valid => {
                (value, PadSpec::Explicit { top, left, bottom, right })
            }
            Bound::Padded { .. } => {
                return Err(Error::unsupported(format!("{name}: PAD followed by a SAME-padded convolution")))
            }
            Bound::Image(v) | Bound::Flat(v) => (v, pad),
        };
        let groups = if depthwise {
            // [1, KH, KW, C*m] -> [C*m, KH, KW, 1]
            let (w, s, z) = weights;
            let mut t = vec![0i8; w.len()];
            for (k, v) in w.iter().enumerate() {
                let (tap, c) = (k / i, k % i);
                t[c * kh * kw + tap] = *v;
            }
            let in_c = self.shape(&self.tensor(xi)?).last().copied().unwrap_or(0);
            if o != 1 || i % in_c.max(1) != 0 {
                return Err(err(self.file, format!("{name}: depthwise weights {ws:?} for {in_c} input channels")));
            }
            self.store_weights(&key, vec![i, kh, kw, 1], (t, s, z))?;
            in_c
        } else {
            self.store_weights(&key, vec![o, kh, kw, i], weights)?;
            1
        };
        let bias = match ins.get(2).copied().filter(|&b| b >= 0) {
            Some(b) => {
                let data = self.int32s(&self.tensor(b)?)?;
                if data.len() != channels {
                    return Err(err(self.file, format!("{name}: {} biases for {channels} channels", data.len())));
                }
                let bk = format!("{name}.bias");
                self.store.insert(bk.clone(), Stored::I32 { shape: vec![channels], data });
                Some(bk)
            }
            None => None,
        };
        let op = Op::Conv2d {
            weight: key,
            bias,
            batch_norm: None,
            stride: [stride[0] as usize, stride[1] as usize],
            padding: pad,
            groups,
            activation: act,
        };
        let v = self.push(&name, op, vec![x], Some(out_q));
        self.bound.insert(out as usize, Bound::Image(v));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dense(
        &mut self,
        name: &str,
        x: usize,
        (o, k): (usize, usize),
        (w, s, z): (Vec<i8>, Vec<f32>, Vec<i32>),
        bias: Option<i32>,
        act: Activation,
        out: i32,
        out_q: ValueQuant,
    ) -> Result<()> {
        let in_scale =
            self.values[x].map(|q| q.scale).ok_or_else(|| err(self.file, format!("{name}: unquantized input")))?;
        let key = format!("{name}.weight");
        let bias_key = match bias.filter(|&b| b >= 0) {
            Some(b) => {
                let data = self.int32s(&self.tensor(b)?)?;
                if data.len() != o {
                    return Err(err(self.file, format!("{name}: {} biases for {o} outputs", data.len())));
                }
                let f: Vec<f32> =
                    data.iter().zip(&s).map(|(&b, &sw)| (b as f64 * in_scale as f64 * sw as f64) as f32).collect();
                let bk = format!("{name}.bias");
                self.store.insert(bk.clone(), Stored::F32(Tensor::new(vec![o], f)?));
                Some(bk)
            }
            None => None,
        };
        self.store_weights(&key, vec![o, k], (w, s, z))?;
        let v = self.push(name, Op::Dense { weight: key, bias: bias_key, activation: act }, vec![x], Some(out_q));
        self.logits = Some(v);
        self.bound.insert(out as usize, Bound::Flat(v));
        Ok(())
    }

    fn output(&self, op: &Operator, kind: &str) -> Result<i32> {
        match op.outputs().map(|o| o.iter().collect::<Vec<_>>()) {
            Some(o) if o.len() == 1 => Ok(o[0]),
            _ => Err(err(self.file, format!("{kind} must have one output"))),
        }
    }

    /// The global pool (the embedding): TFLite's MEAN, which requantizes, or its
    /// AVERAGE_POOL_2D over the whole image, which keeps its input's grid.
    fn pool(&mut self, x: usize, out: i32, name: &str, tflite_mean: bool) -> Result<()> {
        if self.embedding.is_some() {
            return Err(Error::unsupported(format!("{name}: a second global pool")));
        }
        let q = value_quant(self.file, &self.tensor(out)?)?;
        if !tflite_mean && Some(q) != self.values[x] {
            // TFLite's integer average pool assumes it.
            return Err(Error::unsupported(format!("{name}: pool output quantized unlike its input")));
        }
        let v = self.push(name, Op::GlobalAvgPool { tflite_mean }, vec![x], Some(q));
        self.embedding = Some(v);
        self.bound.insert(out as usize, Bound::Flat(v));
        Ok(())
    }

    /// An elementwise operator of an image (a table in int8); a QUANTIZE onto the grid its
    /// input already has is nothing.
    fn unary(&mut self, input: i32, out: i32, name: &str, function: Unary) -> Result<()> {
        let Bound::Image(x) = self.image(input, name)? else {
            return Err(Error::unsupported(format!("{name}: {} of a padded tensor", function.name())));
        };
        let q = value_quant(self.file, &self.tensor(out)?)?;
        let v = if function == Unary::Identity && self.values[x] == Some(q) {
            x
        } else {
            self.push(name, Op::Unary { function }, vec![x], Some(q))
        };
        self.bound.insert(out as usize, Bound::Image(v));
        Ok(())
    }

    /// MAX_POOL_2D or AVERAGE_POOL_2D over a window; both keep their input's grid in TFLite.
    fn window_pool(&mut self, o: &Pool2DOptions, x: usize, out: i32, name: &str, max: bool) -> Result<()> {
        let q = value_quant(self.file, &self.tensor(out)?)?;
        if self.values[x] != Some(q) {
            return Err(Error::unsupported(format!("{name}: pool output quantized unlike its input")));
        }
        let dim = |v: Option<i32>| usize::try_from(v.unwrap_or(0)).ok().filter(|&d| d > 0);
        let (Some(kh), Some(kw), Some(sh), Some(sw)) =
            (dim(o.filter_height()), dim(o.filter_width()), dim(o.stride_h()), dim(o.stride_w()))
        else {
            return Err(err(self.file, format!("{name}: pool window or stride not positive")));
        };
        let (kernel, stride, padding) = ([kh, kw], [sh, sw], padding(o.padding()));
        let op = if max {
            Op::MaxPool { kernel, stride, padding, ceil_mode: false }
        } else {
            Op::AvgPool { kernel, stride, padding, count_include_pad: false, ceil_mode: false }
        };
        let v = self.push(name, op, vec![x], Some(q));
        self.bound.insert(out as usize, Bound::Image(v));
        Ok(())
    }

    fn operator(&mut self, op: &Operator<'a>, code: i32) -> Result<()> {
        let ins: Vec<i32> = op.inputs().map(|v| v.iter().collect()).unwrap_or_default();
        let kind = op_name(code);
        let out = self.output(op, &kind)?;
        let name = self.tensor(out)?.name().unwrap_or(&kind).to_string();
        let first = *ins.first().ok_or_else(|| err(self.file, format!("{name}: no inputs")))?;
        match code {
            3 => self.conv(op, false),
            4 => self.conv(op, true),
            9 => {
                // FULLY_CONNECTED: [O, K] weights on the pooled tensor.
                let Some(Bound::Flat(x)) = self.bound.get(&(first.max(0) as usize)).copied() else {
                    return Err(Error::unsupported(format!("{name}: FULLY_CONNECTED on an unpooled tensor")));
                };
                let w_t = self.tensor(*ins.get(1).ok_or_else(|| err(self.file, format!("{name}: no weights")))?)?;
                let &[o, k] = &self.shape(&w_t)[..] else {
                    return Err(err(self.file, format!("{name}: weights must be 2-D")));
                };
                let act = activation(
                    self.file,
                    op.options::<schema::FullyConnectedOptions>().and_then(|o| o.fused_activation_function()),
                    &name,
                )?;
                let weights = self.weights(&w_t, o, 0)?;
                let out_q = value_quant(self.file, &self.tensor(out)?)?;
                self.dense(&name, x, (o, k), weights, ins.get(2).copied(), act, out, out_q)
            }
            0 => {
                let (Bound::Image(a), Some(&bi)) = (self.image(first, &name)?, ins.get(1)) else {
                    return Err(Error::unsupported(format!("{name}: ADD of a padded tensor")));
                };
                let Bound::Image(b) = self.image(bi, &name)? else {
                    return Err(Error::unsupported(format!("{name}: ADD of a padded tensor")));
                };
                let act = activation(
                    self.file,
                    op.options::<AddOptions>().and_then(|o| o.fused_activation_function()),
                    &name,
                )?;
                let q = value_quant(self.file, &self.tensor(out)?)?;
                let v = self.push(&name, Op::Add { activation: act }, vec![a, b], Some(q));
                self.bound.insert(out as usize, Bound::Image(v));
                Ok(())
            }
            1 => {
                let Bound::Image(x) = self.image(first, &name)? else {
                    return Err(Error::unsupported(format!("{name}: pooling a padded tensor")));
                };
                let o = op.options::<Pool2DOptions>().ok_or_else(|| err(self.file, format!("{name}: no options")))?;
                let in_shape = self.shape(&self.tensor(first)?);
                let window = [o.filter_height().unwrap_or(0) as usize, o.filter_width().unwrap_or(0) as usize];
                if o.fused_activation_function().unwrap_or(0) != 0 {
                    return Err(Error::unsupported(format!("{name}: AVERAGE_POOL_2D with a fused activation")));
                }
                if in_shape.len() == 4 && window == [in_shape[1], in_shape[2]] {
                    return self.pool(x, out, &name, false);
                }
                self.window_pool(&o, x, out, &name, false)
            }
            17 => {
                let Bound::Image(x) = self.image(first, &name)? else {
                    return Err(Error::unsupported(format!("{name}: pooling a padded tensor")));
                };
                let o = op.options::<Pool2DOptions>().ok_or_else(|| err(self.file, format!("{name}: no options")))?;
                if o.fused_activation_function().unwrap_or(0) != 0 {
                    return Err(Error::unsupported(format!("{name}: MAX_POOL_2D with a fused activation")));
                }
                self.window_pool(&o, x, out, &name, true)
            }
            2 => {
                let o = op
                    .options::<ConcatenationOptions>()
                    .ok_or_else(|| err(self.file, format!("{name}: no options")))?;
                let rank = self.shape(&self.tensor(out)?).len() as i32;
                if o.axis().unwrap_or(0).rem_euclid(rank.max(1)) != 3 || rank != 4 {
                    return Err(Error::unsupported(format!(
                        "{name}: CONCATENATION along axis {} of a rank-{rank} tensor (only channels)",
                        o.axis().unwrap_or(0)
                    )));
                }
                activation_none(self.file, o.fused_activation_function(), &name)?;
                let q = value_quant(self.file, &self.tensor(out)?)?;
                let mut parts = vec![];
                for &t in &ins {
                    let Bound::Image(v) = self.image(t, &name)? else {
                        return Err(Error::unsupported(format!("{name}: CONCATENATION of a padded tensor")));
                    };
                    if self.values[v] != Some(q) {
                        // TFLite's int8 concatenation requires one grid (its converter inserts
                        // a QUANTIZE otherwise); a uint8 file's rescales in f32.
                        return Err(Error::unsupported(format!(
                            "{name}: CONCATENATION of inputs quantized unlike its output"
                        )));
                    }
                    parts.push(v);
                }
                let v = self.push(&name, Op::Concat, parts, Some(q));
                self.bound.insert(out as usize, Bound::Image(v));
                Ok(())
            }
            117 | 14 => {
                let function = if code == 117 { Unary::HardSwish } else { Unary::Sigmoid };
                self.unary(first, out, &name, function)
            }
            18 => {
                let (Bound::Image(a), Some(&bi)) = (self.image(first, &name)?, ins.get(1)) else {
                    return Err(Error::unsupported(format!("{name}: MUL of a padded tensor")));
                };
                let Bound::Image(b) = self.image(bi, &name)? else {
                    return Err(Error::unsupported(format!("{name}: MUL of a padded tensor")));
                };
                let (sa, sb) = (self.shape(&self.tensor(first)?), self.shape(&self.tensor(bi)?));
                if sa != sb {
                    return Err(Error::unsupported(format!("{name}: MUL of shapes {sa:?} and {sb:?} (no broadcast)")));
                }
                activation_none(
                    self.file,
                    op.options::<MulOptions>().and_then(|o| o.fused_activation_function()),
                    &name,
                )?;
                let q = value_quant(self.file, &self.tensor(out)?)?;
                let v = self.push(&name, Op::Mul, vec![a, b], Some(q));
                self.bound.insert(out as usize, Bound::Image(v));
                Ok(())
            }
            40 => {
                let Bound::Image(x) = self.image(first, &name)? else {
                    return Err(Error::unsupported(format!("{name}: MEAN of a padded tensor")));
                };
                let axes = self.int32s(&self.tensor(*ins.get(1).unwrap_or(&-1))?)?;
                let mut sorted = axes.clone();
                sorted.sort_unstable();
                if sorted != [1, 2] {
                    return Err(Error::unsupported(format!("{name}: MEAN over axes {axes:?} (only 1, 2)")));
                }
                if op.options::<ReducerOptions>().and_then(|o| o.keep_dims()).unwrap_or(false) {
                    // TFLite runs a 4-D MEAN that keeps its dimensions with another kernel,
                    // whose rounding is not reproduced here.
                    return Err(Error::unsupported(format!("{name}: MEAN keeping its dimensions (keep_dims)")));
                }
                self.pool(x, out, &name, true)
            }
            22 | 43 | 6 => {
                // RESHAPE / SQUEEZE / DEQUANTIZE of the pooled or final [N, C] tensor: nothing to do.
                match self.bound.get(&(first.max(0) as usize)).copied() {
                    Some(b @ Bound::Flat(_)) => {
                        self.bound.insert(out as usize, b);
                        Ok(())
                    }
                    _ => Err(Error::unsupported(format!("{name}: {kind} of an image tensor"))),
                }
            }
            25 => match self.bound.get(&(first.max(0) as usize)).copied() {
                Some(b @ Bound::Flat(v)) if Some(v) == self.logits => {
                    self.bound.insert(out as usize, b);
                    Ok(())
                }
                _ => Err(Error::unsupported(format!("{name}: SOFTMAX other than of the classifier's output"))),
            },
            34 => {
                let Bound::Image(x) = self.image(first, &name)? else {
                    return Err(Error::unsupported(format!("{name}: two PADs in a row")));
                };
                let p = self.int32s(&self.tensor(*ins.get(1).unwrap_or(&-1))?)?;
                if p.len() != 8 || p[0] != 0 || p[1] != 0 || p[6] != 0 || p[7] != 0 || p.iter().any(|&v| v < 0) {
                    return Err(Error::unsupported(format!("{name}: PAD {p:?} (only spatial, non-negative)")));
                }
                let u = |i: usize| p[i] as usize;
                self.bound
                    .insert(out as usize, Bound::Padded { value: x, top: u(2), bottom: u(3), left: u(4), right: u(5) });
                Ok(())
            }
            114 => {
                // QUANTIZE of the float model input: the input's quantization.
                if !self.bound.contains_key(&(first.max(0) as usize)) && self.nodes.is_empty() {
                    self.set_input(&self.tensor(out)?)?;
                    self.bound.insert(out as usize, Bound::Image(0));
                    return Ok(());
                }
                // Inside the network: a move onto another grid.
                self.unary(first, out, &name, Unary::Identity)
            }
            _ => Err(Error::unsupported(format!("{name}: operator {kind}"))),
        }
    }

    fn set_input(&mut self, t: &TensorDef) -> Result<()> {
        let q = value_quant(self.file, t)?;
        // In the uint8 domain whichever the file's type (see `value_quant`).
        self.input_zero_u8 = q.zero_point + 128;
        self.input_uint8 = t.tensor_type() == Some(TYPE_UINT8);
        self.input_scale = q.scale;
        self.values[0] = Some(q);
        Ok(())
    }
}

/// Imports a TFLite flatbuffer. `file` names it in errors and provenance; `labels` are the
/// class names (else those of the model's metadata, else `class 0`, `class 1`, ...).
pub fn import_tflite(bytes: &[u8], file: &str, labels: Option<Vec<String>>) -> Result<ModelFile> {
    let model = schema::model(bytes).map_err(|e| err(file, format!("not a valid TFLite model: {e}")))?;
    let meta = super::metadata::read(bytes, &model, file)?.unwrap_or_default();
    let labels_from = match (&labels, &meta.labels) {
        (Some(_), _) => "given",
        (None, Some(_)) => "from its metadata",
        (None, None) => "none",
    };
    let labels = labels.or(meta.labels);
    let subgraphs = model.subgraphs().ok_or_else(|| err(file, "the model has no subgraph"))?;
    if subgraphs.len() != 1 {
        return Err(Error::unsupported(format!("{file}: {} subgraphs (only single-graph models)", subgraphs.len())));
    }
    let graph = subgraphs.get(0);
    let codes: Vec<i32> = model.operator_codes().map(|c| c.iter().map(|c| c.builtin()).collect()).unwrap_or_default();
    let ops: Vec<Operator> = graph.operators().map(|o| o.iter().collect()).unwrap_or_default();
    let tensors = graph.tensors().ok_or_else(|| err(file, "the graph has no tensors"))?;
    // Every unsupported operator, named, before any work.
    let mut unsupported = vec![];
    let mut op_codes = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        // Scalars equal to their schema default are not stored: an absent index is 0.
        let code = codes.get(op.opcode_index().unwrap_or(0) as usize).copied();
        let Some(code) = code else {
            return Err(err(file, format!("operator {i} has an operator code out of range")));
        };
        let name = op_name(code);
        if !OPS.contains(&name.as_str()) {
            let out = op.outputs().and_then(|o| o.iter().next()).and_then(|t| usize::try_from(t).ok());
            let tname = out.filter(|&t| t < tensors.len()).and_then(|t| tensors.get(t).name()).unwrap_or("?");
            unsupported.push(format!("{name} (operator {i}, output '{tname}')"));
        }
        op_codes.push(code);
    }
    if !unsupported.is_empty() {
        return Err(Error::unsupported(format!(
            "{file}: {} operator(s) not supported: {}. Supported: {}",
            unsupported.len(),
            unsupported.join(", "),
            OPS.join(", ")
        )));
    }
    let inputs: Vec<i32> = graph.inputs().map(|v| v.iter().collect()).unwrap_or_default();
    let &[input] = &inputs[..] else {
        return Err(Error::unsupported(format!("{file}: {} inputs (only one image input)", inputs.len())));
    };
    let mut im = Importer {
        file,
        model,
        tensors,
        nodes: vec![],
        values: vec![None],
        store: HashMap::new(),
        bound: HashMap::new(),
        embedding: None,
        logits: None,
        input_zero_u8: 128,
        input_uint8: false,
        input_scale: 1.0 / 128.0,
    };
    let input_t = im.tensor(input)?;
    let in_shape = im.shape(&input_t);
    let &[1, h, w, 3] = &in_shape[..] else {
        return Err(Error::unsupported(format!("{file}: input of shape {in_shape:?} (expected [1, H, W, 3])")));
    };
    if input_t.tensor_type().unwrap_or(TYPE_FLOAT32) != TYPE_FLOAT32 {
        im.set_input(&input_t)?;
        im.bound.insert(input as usize, Bound::Image(0));
    }
    for (op, &code) in ops.iter().zip(&op_codes) {
        im.operator(op, code)?;
    }
    let (Some(embedding), Some(logits)) = (im.embedding, im.logits) else {
        return Err(Error::unsupported(format!(
            "{file}: the network must end in a global average pool and a classifier"
        )));
    };
    if im.values[0].is_none() {
        return Err(Error::unsupported(format!("{file}: a float input without a QUANTIZE")));
    }
    let arithmetic = if im.input_uint8 { Arithmetic::TfliteUint8 } else { Arithmetic::TfliteInt8 };
    let mut preprocess = Preprocess {
        size: h,
        crop_fraction: 0.875,
        mean: im.input_zero_u8 as f32,
        scale: 1.0 / im.input_scale,
        ..Preprocess::default()
    };
    // A float input is the normalized image: the metadata says how (a quantized input takes
    // the pixel itself, as its quantization says).
    if input_t.tensor_type().unwrap_or(TYPE_FLOAT32) == TYPE_FLOAT32 {
        if let Some((mean, std)) = &meta.normalization {
            let three = |v: &[f32]| if v.len() == 3 { [v[0], v[1], v[2]] } else { [v[0]; 3] };
            (preprocess.mean, preprocess.scale) = (mean[0], std[0]);
            if mean.len() == 3 || std.len() == 3 {
                (preprocess.channel_mean, preprocess.channel_scale) = (Some(three(mean)), Some(three(std)));
            }
        }
    }
    Imported {
        kind: "tflite",
        file: file.to_string(),
        graph: Graph { input: [h, w, 3], nodes: im.nodes, embedding, logits },
        preprocess,
        quantization: Some(Quantization {
            method: "tflite".into(),
            samples: 0,
            calibration_source: format!("kept from the TFLite file {file}"),
            values: im.values,
            arithmetic,
        }),
        tensors: im.store,
        step: format!(
            "imported from TFLite ({} operators); its quantization kept; class names {labels_from}",
            ops.len()
        ),
    }
    .into_model(labels)
}
