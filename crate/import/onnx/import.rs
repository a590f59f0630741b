//! ONNX -> `.etm` for float CNN classifiers (what PyTorch's exporter writes for MobileNet-
//! and EfficientNet-style networks).
//!
//! ONNX images are NCHW with OIHW weights; the engine is NHWC with OHWI weights, so weights
//! are transposed on the way in and the graph keeps the engine's layout throughout.
//! ```text
//! Conv (group, pads, strides, auto_pad)    -> conv2d (weights OIHW -> OHWI)
//! BatchNormalization after a Conv          -> folded into that conv's weights and bias
//! Relu, Clip(0, 6), Clip(0, inf)           -> the producing conv/add/dense's activation
//! Pad (constant 0, spatial) before a Conv  -> the conv's padding
//! Add of two images                        -> add
//! GlobalAveragePool, ReduceMean over H, W  -> global_avg_pool ([N, C]: the embedding)
//! Flatten, Reshape, Squeeze of [N, C]      -> nothing
//! Gemm (transB 0/1), MatMul (+ Add bias)   -> dense
//! Softmax of the logits                    -> nothing (the engine applies softmax itself)
//! Dropout, Identity                        -> nothing
//! Constant                                 -> a constant input of a later node
//! shape arithmetic on constants            -> folded (`fold`: Shape, Gather, Slice, Concat, ...)
//! ```
//! Every node whose op is not in [`OPS`] is listed by name in one error before any work.
//! A fusion is only made when the fused value has no other reader; otherwise the node is an
//! error naming it. Preprocessing is not in an ONNX file: the engine's default
//! (`(x - 127) / 128`, centre crop 87.5%) is recorded and can be changed in the header.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use super::attr::Node;
use super::fold;
use super::proto::{GraphProto, ModelProto, NodeProto};
use super::value::{Data, Value};
use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::model::etm::{Arithmetic, Imported, ModelFile, Quantization, Stored, ValueQuant};
use crate::model::graph::{Graph, Node as GNode, Op, PadSpec, Unary};
use crate::model::preprocess::Preprocess;
use crate::ops::layout::channels_first_to_last;
use crate::ops::Padding;
use crate::quant::Activation;

/// ONNX op types the importer maps.
pub const OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "DequantizeLinear",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Squeeze",
];

#[derive(Clone, Copy, Debug)]
enum Bound {
    Image(usize),
    Padded { value: usize, pads: [usize; 4] },
    Flat(usize),
}

/// The graph value behind a bound tensor.
fn bound_value(b: Bound) -> usize {
    let (Bound::Image(v) | Bound::Flat(v) | Bound::Padded { value: v, .. }) = b;
    v
}

/// QOperator ops (onnxruntime's `com.microsoft` domain) the importer maps.
pub const MS_OPS: &[&str] = &["QGemm", "QLinearAdd", "QLinearGlobalAveragePool"];

/// Integer weights (OHWI or [O, K]), their per-channel scales and zero points.
type QWeight = (Vec<i8>, Vec<f32>, Vec<i32>);

struct Importer<'a> {
    file: &'a str,
    opset: i64,
    consts: HashMap<String, Value>,
    readers: HashMap<&'a str, usize>,
    bound: HashMap<String, Bound>,
    nodes: Vec<GNode>,
    tensors: HashMap<String, Tensor>,
    embedding: Option<usize>,
    logits: Option<usize>,
    /// QDQ graphs: the integer form of dequantized constants, by the DequantizeLinear output.
    qconsts: HashMap<String, QConst>,
    /// QDQ graphs: QuantizeLinear outputs, awaiting their DequantizeLinear.
    quantized: HashMap<String, Bound>,
    /// Quantization of each graph value (index 0 = the input), from QuantizeLinear.
    values: Vec<Option<ValueQuant>>,
    /// Integer weights (OHWI or [O, K]) of quantized nodes, by weight key: data, scales, zero points.
    qweights: HashMap<String, QWeight>,
    /// int32 biases of quantized convolutions, by bias key: data and their per-channel scales.
    qbiases: HashMap<String, (Vec<i32>, Vec<f32>)>,
    /// Whether activation zero points were uint8 (the file's integers are int8 + 128).
    uint8_values: bool,
    /// The file's producer ("edgetune" files keep the engine's arithmetic).
    producer: &'a str,
}

/// Where a QOperator node keeps its operands, by input index: value inputs with their scale
/// and zero point; the weight (data, scale, zero point, channel axis); the int32 bias; the
/// output's scale and zero point; and the float op it stands for.
struct QLayout {
    xs: &'static [[usize; 3]],
    weight: Option<[usize; 4]>,
    bias: Option<usize>,
    out: [usize; 2],
    op: &'static str,
}

/// A constant behind DequantizeLinear: integers (uint8 shifted into int8), per-tensor or
/// per-axis scales and zero points.
struct QConst {
    ints: Vec<i32>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    axis: usize,
}

impl QConst {
    /// Scales and zero points per output channel (`axis` must be the channel axis).
    fn per_channel(&self, channels: usize, axis: usize, what: &str) -> Result<(Vec<f32>, Vec<i32>)> {
        match self.scales.len() {
            1 => Ok((vec![self.scales[0]; channels], vec![self.zero_points[0]; channels])),
            n if n == channels && self.axis == axis => Ok((self.scales.clone(), self.zero_points.clone())),
            n => Err(Error::unsupported(format!("{what}: {n} scales on axis {} for {channels} channels", self.axis))),
        }
    }
}

fn err(file: &str, msg: impl Into<String>) -> Error {
    Error::parse(Path::new(file), msg.into())
}

fn node_name(n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!("{} -> {}", n.op_type, n.output.first().map_or("?", String::as_str))
    } else {
        n.name.clone()
    }
}

impl<'a> Importer<'a> {
    fn bound(&self, n: &NodeProto, i: usize) -> Result<Bound> {
        let name = n.input.get(i).map_or("", String::as_str);
        self.bound.get(name).copied().ok_or_else(|| {
            err(self.file, format!("node '{}' reads '{name}', which is not an image the importer holds", node_name(n)))
        })
    }

    fn set(&mut self, n: &NodeProto, b: Bound) {
        if let Some(o) = n.output.first() {
            self.bound.insert(o.clone(), b);
        }
    }

    /// The node `v` produced, if fusing into it is safe: its output has this one reader.
    fn fusable(&mut self, n: &NodeProto, v: usize) -> Result<&mut GNode> {
        let input = n.input.first().map_or("", String::as_str);
        if self.readers.get(input).copied().unwrap_or(0) != 1 || v == 0 {
            return Err(Error::unsupported(format!(
                "{}: node '{}' cannot be fused into the node before it (its input has other readers)",
                self.file,
                node_name(n)
            )));
        }
        Ok(&mut self.nodes[v - 1])
    }

    fn push(&mut self, n: &NodeProto, op: Op, inputs: Vec<usize>) -> usize {
        self.nodes.push(GNode { name: node_name(n), op, inputs });
        self.values.push(None);
        self.nodes.len()
    }

    /// Int8 weights of a quantized node, if input `i` of `n` came from DequantizeLinear:
    /// `layout` maps the ONNX integer data to the engine's layout.
    fn qweight(
        &self,
        n: &NodeProto,
        i: usize,
        channels: usize,
        axis: usize,
        layout: impl Fn(&[i32]) -> Result<Vec<i32>>,
    ) -> Result<Option<QWeight>> {
        let Some(qc) = n.input.get(i).and_then(|k| self.qconsts.get(k)) else { return Ok(None) };
        let (scales, zps) = qc.per_channel(channels, axis, &node_name(n))?;
        let data = layout(&qc.ints)?.into_iter().map(|v| v.clamp(-128, 127) as i8).collect();
        Ok(Some((data, scales, zps)))
    }

    /// QuantizeLinear of a graph value: records its quantization.
    fn quantize(&mut self, n: &NodeProto) -> Result<()> {
        let name = node_name(n);
        let b = self.bound(n, 0)?;
        // A padded value is quantized like the value it pads (zero padding is the zero point).
        let (Bound::Image(v) | Bound::Flat(v) | Bound::Padded { value: v, .. }) = b;
        let scale = self.constant(n, 1)?.as_f32(&name)?.to_vec();
        let (zp, offset) = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let z = self.constant(n, 2)?;
                (z.as_i64s(&name)?, if matches!(z.data, Data::U8(_)) { 128 } else { 0 })
            }
            None => (vec![0], 128), // the default zero point is uint8 0
        };
        let (&[scale], &[zp]) = (&scale[..], &zp[..]) else {
            return Err(Error::unsupported(format!("{name}: per-axis quantization of an activation")));
        };
        self.uint8_values |= offset == 128;
        let q = ValueQuant { scale, zero_point: zp as i32 - offset };
        if !(q.scale.is_finite() && q.scale > 0.0) {
            return Err(err(self.file, format!("{name}: scale {scale}")));
        }
        match self.values[v] {
            Some(old) if old != q => {
                return Err(Error::unsupported(format!("{name}: a value quantized twice ({old:?}, then {q:?})")))
            }
            _ => self.values[v] = Some(q),
        }
        if let Some(o) = n.output.first() {
            self.quantized.insert(o.clone(), b);
            self.bound.insert(o.clone(), b);
        }
        Ok(())
    }

    /// DequantizeLinear: of a quantized value (the value again), or of a constant (folded to
    /// float, with its integers kept for the int8 model).
    fn dequantize(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        let input = n.input.first().cloned().unwrap_or_default();
        // Of a quantized value (after QuantizeLinear, or a QOperator node's output).
        let produced = self.bound.get(&input).copied().filter(|&b| self.values[bound_value(b)].is_some());
        if let Some(b) = self.quantized.get(&input).copied().or(produced) {
            self.set(n, b);
            return Ok(());
        }
        let x = self.constant(n, 0)?.clone();
        let scales = self.constant(n, 1)?.as_f32(&name)?.to_vec();
        let zero_points = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => Some(self.constant(n, 2)?.as_i64s(&name)?),
            None => None,
        };
        let axis = if scales.len() > 1 { node.axis(node.int("axis", 1)?, x.shape.len())? } else { 0 };
        let out = n.output.first().cloned().unwrap_or_default();
        self.store_dequantized(&name, &out, &x, scales, zero_points, axis)
    }

    /// Stores the integer constant `x` dequantized, `(q - z) * s` along `axis`, as constant
    /// `out`, keeping its integers (uint8 shifted into int8) for the int8 model: what
    /// DequantizeLinear of a weight does, and how QOperator nodes' weights and biases are read.
    fn store_dequantized(
        &mut self,
        name: &str,
        out: &str,
        x: &Value,
        scales: Vec<f32>,
        zero_points: Option<Vec<i64>>,
        axis: usize,
    ) -> Result<()> {
        let (ints, offset): (Vec<i32>, i32) = match &x.data {
            Data::I8(d) => (d.iter().map(|&v| v as i32).collect(), 0),
            Data::U8(d) => (d.iter().map(|&v| v as i32 - 128).collect(), 128),
            Data::I32(d) => (d.clone(), 0),
            d => return Err(Error::unsupported(format!("{name}: dequantizing {}", d.type_name()))),
        };
        let shape = x.shape.clone();
        let zero_points: Vec<i32> = match zero_points {
            Some(z) => z.iter().map(|&z| z as i32 - offset).collect(),
            None => vec![0; scales.len()],
        };
        if zero_points.len() != scales.len() || (scales.len() > 1 && shape.get(axis) != Some(&scales.len())) {
            return Err(err(self.file, format!("{name}: {} scales for shape {shape:?}", scales.len())));
        }
        // Float value: (q - z) * s along `axis`.
        let inner: usize = shape.iter().skip(axis + 1).product();
        let floats: Vec<f32> = ints
            .iter()
            .enumerate()
            .map(|(k, &q)| {
                let c = if scales.len() == 1 { 0 } else { (k / inner.max(1)) % scales.len() };
                (q - zero_points[c]) as f32 * scales[c]
            })
            .collect();
        self.consts.insert(out.to_string(), Value::f32(shape, floats)?);
        self.qconsts.insert(out.to_string(), QConst { ints, scales, zero_points, axis });
        Ok(())
    }

    fn constant(&self, n: &NodeProto, i: usize) -> Result<&Value> {
        let name = n.input.get(i).map_or("", String::as_str);
        self.consts.get(name).ok_or_else(|| {
            Error::unsupported(format!("{}: node '{}' input '{name}' must be a constant", self.file, node_name(n)))
        })
    }

    /// ReLU or ReLU6: fused into the node before when that node has a fused activation and
    /// this is its only reader, else a `unary` node.
    fn activation(&mut self, n: &NodeProto, act: Activation) -> Result<()> {
        let b = self.bound(n, 0)?;
        let (Bound::Image(v) | Bound::Flat(v)) = b else {
            return Err(Error::unsupported(format!("{}: activation of a padded tensor", self.file)));
        };
        let input = n.input.first().map_or("", String::as_str);
        if v > 0 && self.readers.get(input).copied().unwrap_or(0) == 1 {
            if let Op::Conv2d { activation, .. } | Op::Add { activation } | Op::Dense { activation, .. } =
                &mut self.nodes[v - 1].op
            {
                // Clamps compose: ReLU then Clip(0, 6) (how PyTorch writes relu6) is ReLU6.
                *activation = match (*activation, act) {
                    (Activation::None, a) | (a, Activation::None) => a,
                    (Activation::Relu, Activation::Relu) => Activation::Relu,
                    _ => Activation::Relu6,
                };
                self.set(n, b);
                return Ok(());
            }
        }
        match act {
            Activation::None => {
                self.set(n, b);
                Ok(())
            }
            Activation::Relu => self.unary(n, Unary::Relu),
            Activation::Relu6 => self.unary(n, Unary::Clip { min: 0.0, max: 6.0 }),
        }
    }

    /// An element-wise function as its own node.
    fn unary(&mut self, n: &NodeProto, function: Unary) -> Result<()> {
        let out = match self.bound(n, 0)? {
            Bound::Image(x) => Bound::Image(self.push(n, Op::Unary { function }, vec![x])),
            Bound::Flat(x) => Bound::Flat(self.push(n, Op::Unary { function }, vec![x])),
            Bound::Padded { .. } => {
                return Err(Error::unsupported(format!("{}: {} of a padded tensor", self.file, node_name(n))))
            }
        };
        self.set(n, out);
        Ok(())
    }

    /// MaxPool and AveragePool over an image.
    fn pool(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        node.only_attrs(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ])?;
        let kernel = match node.usizes("kernel_shape")?.as_deref() {
            Some(&[kh, kw]) => [kh, kw],
            k => return Err(Error::unsupported(format!("{name}: kernel_shape {k:?} (only 2-D)"))),
        };
        if node.ints("dilations")?.is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(Error::unsupported(format!("{name}: dilated pooling")));
        }
        let (padding, stride) = super::ops::window_attrs(node, kernel)?;
        let padding = match padding {
            Padding::Explicit { top, left, bottom, right } => PadSpec::Explicit { top, left, bottom, right },
            Padding::SameUpper => PadSpec::Same,
            Padding::SameLower => return Err(Error::unsupported(format!("{name}: SAME_LOWER pooling"))),
        };
        let ceil_mode = node.int("ceil_mode", 0)? != 0;
        let mut count_include_pad = node.int("count_include_pad", 0)? != 0;
        let (x, padding) = match (self.bound(n, 0)?, padding) {
            (Bound::Image(x), p) => (x, p),
            // PyTorch writes avg_pool2d(count_include_pad=True) as a zero Pad, then the pool:
            // the padded zeros are counted, which is count_include_pad over those pads.
            (Bound::Padded { value, pads: [t, l, b, r] }, PadSpec::Explicit { top, left, bottom, right })
                if n.op_type == "AveragePool" && (count_include_pad || top + left + bottom + right == 0) =>
            {
                count_include_pad = true;
                (value, PadSpec::Explicit { top: top + t, left: left + l, bottom: bottom + b, right: right + r })
            }
            _ => return Err(Error::unsupported(format!("{name}: pooling a padded or pooled tensor"))),
        };
        let op = if n.op_type == "MaxPool" {
            Op::MaxPool { kernel, stride, padding, ceil_mode }
        } else {
            Op::AvgPool { kernel, stride, padding, count_include_pad, ceil_mode }
        };
        let v = self.push(n, op, vec![x]);
        self.set(n, Bound::Image(v));
        Ok(())
    }

    /// Concat along channels of images (axis 1 of NCHW) or of pooled `[N, C]` values.
    fn concat(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        let parts: Vec<Bound> = (0..n.input.len()).map(|i| self.bound(n, i)).collect::<Result<_>>()?;
        let images = parts.iter().all(|b| matches!(b, Bound::Image(_)));
        let flats = parts.iter().all(|b| matches!(b, Bound::Flat(_)));
        let axis = node.int("axis", 1)?;
        if !(images && (axis == 1 || axis == -3) || flats && (axis == 1 || axis == -1)) {
            return Err(Error::unsupported(format!("{name}: Concat on axis {axis} (only channels of like values)")));
        }
        let v = self.push(n, Op::Concat, parts.iter().map(|&b| bound_value(b)).collect());
        self.set(n, if images { Bound::Image(v) } else { Bound::Flat(v) });
        Ok(())
    }

    /// Mul of two like values, or of an image and `[N, C]` channel factors (either order).
    fn mul(&mut self, n: &NodeProto) -> Result<()> {
        let name = node_name(n);
        let (a, b) = match (self.bound(n, 0), n.input.get(1).and_then(|i| self.bound.get(i)).copied()) {
            (Ok(a), Some(b)) => (a, b),
            _ => return Err(Error::unsupported(format!("{name}: Mul by a constant (only of two computed values)"))),
        };
        let (image, inputs) = match (a, b) {
            (Bound::Image(x), Bound::Image(y)) => (true, vec![x, y]),
            (Bound::Image(x), Bound::Flat(f)) | (Bound::Flat(f), Bound::Image(x)) => (true, vec![x, f]),
            (Bound::Flat(x), Bound::Flat(y)) => (false, vec![x, y]),
            _ => return Err(Error::unsupported(format!("{name}: Mul of a padded tensor"))),
        };
        let v = self.push(n, Op::Mul, inputs);
        self.set(n, if image { Bound::Image(v) } else { Bound::Flat(v) });
        Ok(())
    }

    /// The quantization `(scale, zero point)` at inputs `s`, `z` of `n`, in the int8 domain.
    fn quant_at(&self, n: &NodeProto, s: usize, z: usize) -> Result<Option<ValueQuant>> {
        let name = node_name(n);
        if n.input.get(s).is_none_or(|i| i.is_empty()) {
            return Ok(None);
        }
        let scale = self.constant(n, s)?.as_f32(&name)?.first().copied().unwrap_or(0.0);
        let zp = match n.input.get(z).filter(|i| !i.is_empty()) {
            Some(_) => {
                let c = self.constant(n, z)?;
                let offset = if matches!(c.data, Data::U8(_)) { 128 } else { 0 };
                c.as_i64s(&name)?.first().copied().unwrap_or(0) as i32 - offset
            }
            None => -128,
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(err(self.file, format!("{name}: scale {scale}")));
        }
        Ok(Some(ValueQuant { scale, zero_point: zp }))
    }

    /// Records (or checks) the quantization of the value input `i` reads.
    fn expect_quant(&mut self, n: &NodeProto, i: usize, q: ValueQuant) -> Result<()> {
        let v = bound_value(self.bound(n, i)?);
        match self.values[v] {
            Some(old) if old != q => Err(Error::unsupported(format!(
                "{}: node '{}' reads a value quantized as {old:?} with {q:?}",
                self.file,
                node_name(n)
            ))),
            _ => {
                self.values[v] = Some(q);
                Ok(())
            }
        }
    }

    /// QOperator nodes (QLinearConv, QLinearMatMul, QGemm, QLinearAdd,
    /// QLinearGlobalAveragePool): the float op on the dequantized weights (integers kept, as
    /// for QDQ), with the inputs' and output's quantizations recorded on their values.
    fn qoperator(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        let trans_b = node.int("transB", 0)? != 0;
        let l = match n.op_type.as_str() {
            "QLinearConv" => {
                QLayout { xs: &[[0, 1, 2]], weight: Some([3, 4, 5, 0]), bias: Some(8), out: [6, 7], op: "Conv" }
            }
            "QLinearMatMul" => {
                QLayout { xs: &[[0, 1, 2]], weight: Some([3, 4, 5, 1]), bias: None, out: [6, 7], op: "MatMul" }
            }
            "QGemm" => QLayout {
                xs: &[[0, 1, 2]],
                weight: Some([3, 4, 5, if trans_b { 0 } else { 1 }]),
                bias: Some(6),
                out: [7, 8],
                op: "Gemm",
            },
            "QLinearAdd" => QLayout { xs: &[[0, 1, 2], [3, 4, 5]], weight: None, bias: None, out: [6, 7], op: "Add" },
            _ => {
                if node.int("channels_last", 0)? != 0 {
                    return Err(Error::unsupported(format!("{name}: channels_last pooling")));
                }
                QLayout { xs: &[[0, 1, 2]], weight: None, bias: None, out: [3, 4], op: "GlobalAveragePool" }
            }
        };
        let QLayout { xs, weight, bias, out, op: float_op } = l;
        let arg = |i: usize| n.input.get(i).cloned().unwrap_or_default();
        let mut inputs = vec![];
        let mut in_scale = 1.0f32;
        for &[x, s, z] in xs {
            let q = self.quant_at(n, s, z)?.ok_or_else(|| err(self.file, format!("{name}: input {x} has no scale")))?;
            self.expect_quant(n, x, q)?;
            in_scale = q.scale;
            inputs.push(arg(x));
        }
        if let Some([w, s, z, axis]) = weight {
            let wv = self.constant(n, w)?.clone();
            let scales = self.constant(n, s)?.as_f32(&name)?.to_vec();
            let zps = match n.input.get(z).filter(|i| !i.is_empty()) {
                Some(_) => Some(self.constant(n, z)?.as_i64s(&name)?),
                None => None,
            };
            let key = format!("{}#dequantized", arg(w));
            let axis = if scales.len() > 1 { axis } else { 0 };
            self.store_dequantized(&name, &key, &wv, scales.clone(), zps, axis)?;
            inputs.push(key);
            if let Some(b) = bias.filter(|&b| n.input.get(b).is_some_and(|i| !i.is_empty())) {
                let bv = self.constant(n, b)?.clone();
                let channels = bv.data.len();
                let bias_scales: Vec<f32> = match scales.len() {
                    1 => vec![in_scale * scales[0]; channels],
                    _ => scales.iter().map(|&sw| in_scale * sw).collect(),
                };
                let key = format!("{}#dequantized", arg(b));
                self.store_dequantized(&name, &key, &bv, bias_scales, None, 0)?;
                inputs.push(key);
            }
        }
        let mut attrs = n.attribute.clone();
        attrs.retain(|a| !matches!(a.name.as_str(), "channels_last"));
        let float =
            NodeProto { op_type: float_op.into(), domain: String::new(), input: inputs, attribute: attrs, ..n.clone() };
        self.node(&float)?;
        // The file's integer type, for onnxruntime's add (an absent zero point is uint8).
        let zp_type = n.input.get(out[1]).filter(|i| !i.is_empty()).map(|_| self.constant(n, out[1]));
        self.uint8_values |= match zp_type {
            Some(c) => matches!(c?.data, Data::U8(_)),
            None => true,
        };
        if let Some(q) = self.quant_at(n, out[0], out[1])? {
            let o = n.output.first().cloned().unwrap_or_default();
            let b = self.bound.get(&o).copied().ok_or_else(|| err(self.file, format!("{name}: no output")))?;
            self.values[bound_value(b)] = Some(q);
        }
        Ok(())
    }

    fn conv(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        node.only_attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
        let w = self.constant(n, 1)?;
        let &[o, ig, kh, kw] = &w.shape[..] else {
            return Err(err(self.file, format!("{name}: weights of shape {:?}", w.shape)));
        };
        let (data, _) = channels_first_to_last(w.as_f32(&name)?, &[o, ig, kh, kw])?;
        let weight = Tensor::new(vec![o, kh, kw, ig], data)?;
        let to_ohwi = |d: &[i32]| channels_first_to_last(d, &[o, ig, kh, kw]).map(|r| r.0);
        let qweight = self.qweight(n, 1, o, 0, to_ohwi)?;
        let qbias = match n.input.get(2).and_then(|k| self.qconsts.get(k)) {
            Some(qc) => Some((qc.ints.clone(), qc.per_channel(o, 0, &name)?.0)),
            None => None,
        };
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => Some(Tensor::new(vec![o], self.constant(n, 2)?.as_f32(&name)?.to_vec())?),
            None => None,
        };
        if node.ints("dilations")?.is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(Error::unsupported(format!("{name}: dilated convolution")));
        }
        let strides = node.usizes("strides")?.unwrap_or_else(|| vec![1, 1]);
        let group = node.int("group", 1)?.max(1) as usize;
        let pads = node.usizes("pads")?.unwrap_or_else(|| vec![0; 4]);
        let auto_pad = node.string("auto_pad")?.unwrap_or_default();
        let (x, extra) = match self.bound(n, 0)? {
            Bound::Image(v) => (v, [0; 4]),
            Bound::Padded { value, pads } => (value, pads),
            Bound::Flat(_) if kh == 1 && kw == 1 && group == 1 => {
                // A 1x1 convolution of a pooled [N, C, 1, 1] value (squeeze-excitation) is a
                // dense layer; OIHW with 1x1 kernels is already [O, I].
                let qweight = self.qweight(n, 1, o, 0, |d| Ok(d.to_vec()))?;
                let dense_weight = Tensor::new(vec![o, ig], weight.into_data())?;
                let bias = bias.map(Tensor::into_data);
                return self.dense(n, dense_weight, qweight, bias);
            }
            Bound::Flat(_) => return Err(Error::unsupported(format!("{name}: convolution of a pooled tensor"))),
        };
        // A Pad node before the conv (`extra`) adds to explicit padding only.
        let padding = match (auto_pad.as_str(), &pads[..]) {
            ("SAME_UPPER", _) if extra == [0; 4] => PadSpec::Same,
            ("VALID", _) if extra == [0; 4] => PadSpec::Valid,
            ("NOTSET" | "", &[t, l, b, r]) => {
                PadSpec::Explicit { top: t + extra[0], left: l + extra[1], bottom: b + extra[2], right: r + extra[3] }
            }
            _ => {
                return Err(Error::unsupported(format!("{name}: padding {auto_pad:?} {pads:?} after a Pad {extra:?}")))
            }
        };
        let &[sh, sw] = &strides[..] else { return Err(err(self.file, format!("{name}: strides {strides:?}"))) };
        let key = format!("{name}.weight");
        self.tensors.insert(key.clone(), weight);
        if let Some(q) = qweight {
            self.qweights.insert(key.clone(), q);
        }
        let bias_key = bias.map(|b| {
            let k = format!("{name}.bias");
            self.tensors.insert(k.clone(), b);
            if let Some(q) = qbias {
                self.qbiases.insert(k.clone(), q);
            }
            k
        });
        let op = Op::Conv2d {
            weight: key,
            bias: bias_key,
            batch_norm: None,
            stride: [sh, sw],
            padding,
            groups: group,
            activation: Activation::None,
        };
        let v = self.push(n, op, vec![x]);
        self.set(n, Bound::Image(v));
        Ok(())
    }

    /// Folds a BatchNormalization into the conv that produced its input.
    fn batch_norm(&mut self, n: &NodeProto, node: &Node) -> Result<()> {
        let name = node_name(n);
        let eps = node.float("epsilon", 1e-5)?;
        let get = |i: usize| -> Result<Vec<f32>> { Ok(self.constant(n, i)?.as_f32(&name)?.to_vec()) };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        let b = self.bound(n, 0)?;
        let Bound::Image(v) = b else {
            return Err(Error::unsupported(format!("{name}: batch norm not after a convolution")));
        };
        let conv = self.fusable(n, v)?;
        let Op::Conv2d { weight, bias, activation: Activation::None, .. } = &mut conv.op else {
            return Err(Error::unsupported(format!("{name}: batch norm not directly after a convolution")));
        };
        let (wk, bk) = (weight.clone(), bias.clone().unwrap_or_else(|| format!("{wk}.bias", wk = weight)));
        *bias = Some(bk.clone());
        let w = self.tensors.get_mut(&wk).ok_or_else(|| err(self.file, "conv weights missing"))?;
        let o = w.shape()[0];
        if [gamma.len(), beta.len(), mean.len(), var.len()] != [o; 4] {
            return Err(err(
                self.file,
                format!("{name}: batch norm of {} channels after a {o}-channel conv", gamma.len()),
            ));
        }
        let per = w.len() / o.max(1);
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        for (row, s) in w.data_mut().chunks_exact_mut(per.max(1)).zip(&scale) {
            row.iter_mut().for_each(|x| *x *= s);
        }
        let old = self.tensors.get(&bk).map(|t| t.data().to_vec()).unwrap_or_else(|| vec![0.0; o]);
        let new: Vec<f32> = (0..o).map(|c| (old[c] - mean[c]) * scale[c] + beta[c]).collect();
        self.tensors.insert(bk, Tensor::new(vec![o], new)?);
        self.set(n, b);
        Ok(())
    }

    /// A dense layer from weights `[O, K]` (already transposed as needed).
    fn dense(
        &mut self,
        n: &NodeProto,
        weight: Tensor,
        qweight: Option<(Vec<i8>, Vec<f32>, Vec<i32>)>,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let name = node_name(n);
        let Bound::Flat(x) = self.bound(n, 0)? else {
            return Err(Error::unsupported(format!("{name}: a matrix product of an unpooled image")));
        };
        let o = weight.shape()[0];
        let key = format!("{name}.weight");
        self.tensors.insert(key.clone(), weight);
        if let Some(q) = qweight {
            self.qweights.insert(key.clone(), q);
        }
        let bias_key = match bias {
            Some(b) if b.len() == o => {
                let k = format!("{name}.bias");
                self.tensors.insert(k.clone(), Tensor::new(vec![o], b)?);
                Some(k)
            }
            Some(b) => return Err(err(self.file, format!("{name}: {} biases for {o} outputs", b.len()))),
            None => None,
        };
        let v = self.push(n, Op::Dense { weight: key, bias: bias_key, activation: Activation::None }, vec![x]);
        self.logits = Some(v);
        self.set(n, Bound::Flat(v));
        Ok(())
    }

    fn node(&mut self, n: &NodeProto) -> Result<()> {
        let name = node_name(n);
        // For its attributes only: constant inputs are read with `constant`.
        let node = Node { proto: n, opset: self.opset, inputs: &[] };
        match n.op_type.as_str() {
            "Constant" => {
                let t = n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref());
                let t = t.ok_or_else(|| Error::unsupported(format!("{name}: Constant without a tensor 'value'")))?;
                let v = Value::from_proto(t, &name)?;
                if let Some(o) = n.output.first() {
                    self.consts.insert(o.clone(), v);
                }
                Ok(())
            }
            "Conv" => self.conv(n, &node),
            "QLinearConv" | "QLinearMatMul" | "QGemm" | "QLinearAdd" | "QLinearGlobalAveragePool" => {
                self.qoperator(n, &node)
            }
            "QuantizeLinear" => self.quantize(n),
            "DequantizeLinear" => self.dequantize(n, &node),
            "BatchNormalization" => self.batch_norm(n, &node),
            "Relu" => self.activation(n, Activation::Relu),
            "Sigmoid" => self.unary(n, Unary::Sigmoid),
            "HardSigmoid" => {
                let (alpha, beta) = (node.float("alpha", 0.2)?, node.float("beta", 0.5)?);
                self.unary(n, Unary::HardSigmoid { alpha, beta })
            }
            "HardSwish" => self.unary(n, Unary::HardSwish),
            "MaxPool" | "AveragePool" => self.pool(n, &node),
            "Concat" => self.concat(n, &node),
            "Mul" => self.mul(n),
            "Clip" => {
                let (lo, hi) = if self.opset >= 11 {
                    let get = |i: usize| -> Result<Option<f32>> {
                        match n.input.get(i).filter(|s| !s.is_empty()) {
                            Some(_) => Ok(Some(self.constant(n, i)?.as_f32(&name)?.first().copied().unwrap_or(0.0))),
                            None => Ok(None),
                        }
                    };
                    (get(1)?.unwrap_or(f32::NEG_INFINITY), get(2)?.unwrap_or(f32::INFINITY))
                } else {
                    (node.float("min", f32::NEG_INFINITY)?, node.float("max", f32::INFINITY)?)
                };
                match (lo, hi) {
                    (l, h) if l == 0.0 && h == 6.0 => self.activation(n, Activation::Relu6),
                    (l, h) if l == 0.0 && h == f32::INFINITY => self.activation(n, Activation::Relu),
                    (min, max) => self.unary(n, Unary::Clip { min, max }),
                }
            }
            "Add" => match (self.bound(n, 0), n.input.get(1).and_then(|i| self.bound.get(i)).copied()) {
                (Ok(Bound::Image(a)), Some(Bound::Image(b))) => {
                    let v = self.push(n, Op::Add { activation: Activation::None }, vec![a, b]);
                    self.set(n, Bound::Image(v));
                    Ok(())
                }
                (Ok(b @ Bound::Flat(v)), None) => {
                    // A bias after MatMul.
                    let add = self.constant(n, 1)?.as_f32(&name)?.to_vec();
                    let dense = self.fusable(n, v)?;
                    let Op::Dense { bias: bias @ None, weight, .. } = &mut dense.op else {
                        return Err(Error::unsupported(format!("{name}: adding a constant to a pooled tensor")));
                    };
                    let k = format!("{weight}.bias");
                    *bias = Some(k.clone());
                    let o = add.len();
                    self.tensors.insert(k, Tensor::new(vec![o], add)?);
                    self.set(n, b);
                    Ok(())
                }
                _ => Err(Error::unsupported(format!("{name}: Add other than image + image or a dense bias"))),
            },
            "GlobalAveragePool" | "ReduceMean" => {
                if n.op_type == "ReduceMean" {
                    let mut axes = node.ints("axes")?.unwrap_or_default();
                    axes.sort_unstable();
                    if axes != [2, 3] {
                        return Err(Error::unsupported(format!("{name}: ReduceMean over {axes:?} (only 2, 3)")));
                    }
                }
                let Bound::Image(x) = self.bound(n, 0)? else {
                    return Err(Error::unsupported(format!("{name}: pooling a padded tensor")));
                };
                // The last global pool is the embedding; earlier ones feed squeeze-excitation.
                let v = self.push(n, Op::GlobalAvgPool { tflite_mean: false }, vec![x]);
                self.embedding = Some(v);
                self.set(n, Bound::Flat(v));
                Ok(())
            }
            "Flatten" | "Reshape" | "Squeeze" | "Dropout" | "Identity" => {
                let b = self.bound(n, 0)?;
                if matches!(b, Bound::Image(_) | Bound::Padded { .. })
                    && !matches!(n.op_type.as_str(), "Dropout" | "Identity")
                {
                    return Err(Error::unsupported(format!(
                        "{name}: {} of an image (only of the pooled [N, C])",
                        n.op_type
                    )));
                }
                self.set(n, b);
                Ok(())
            }
            "Softmax" => match self.bound(n, 0)? {
                b @ Bound::Flat(v) if Some(v) == self.logits => {
                    self.set(n, b);
                    Ok(())
                }
                _ => Err(Error::unsupported(format!("{name}: Softmax other than of the logits"))),
            },
            "Gemm" => {
                let (alpha, beta) = (node.float("alpha", 1.0)?, node.float("beta", 1.0)?);
                if alpha != 1.0 || beta != 1.0 || node.int("transA", 0)? != 0 {
                    return Err(Error::unsupported(format!("{name}: Gemm with alpha/beta != 1 or transA")));
                }
                let w = self.constant(n, 1)?;
                let &[r, c] = &w.shape[..] else { return Err(err(self.file, format!("{name}: 2-D weights expected"))) };
                let data = w.as_f32(&name)?.to_vec();
                let trans_b = node.int("transB", 0)? != 0;
                let weight = if trans_b { Tensor::new(vec![r, c], data)? } else { transpose(&data, r, c)? };
                let qweight = if trans_b {
                    self.qweight(n, 1, r, 0, |d| Ok(d.to_vec()))?
                } else {
                    self.qweight(n, 1, c, 1, |d| Ok(transpose_ints(d, r, c)))?
                };
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(_) => Some(self.constant(n, 2)?.as_f32(&name)?.to_vec()),
                    None => None,
                };
                self.dense(n, weight, qweight, bias)
            }
            "MatMul" => {
                let w = self.constant(n, 1)?;
                let &[k, o] = &w.shape[..] else { return Err(err(self.file, format!("{name}: 2-D weights expected"))) };
                let weight = transpose(w.as_f32(&name)?, k, o)?;
                let qweight = self.qweight(n, 1, o, 1, |d| Ok(transpose_ints(d, k, o)))?;
                self.dense(n, weight, qweight, None)
            }
            "Pad" => {
                let mode = node.string("mode")?.unwrap_or_else(|| "constant".into());
                let pads: Vec<i64> = if self.opset >= 11 {
                    self.constant(n, 1)?.as_i64s(&name)?
                } else {
                    node.ints("pads")?.unwrap_or_default()
                };
                let value = if self.opset >= 11 {
                    match n.input.get(2).filter(|s| !s.is_empty()) {
                        Some(_) => match &self.constant(n, 2)?.data {
                            Data::F32(v) => v.first().copied().unwrap_or(0.0),
                            // A quantized tensor padded with its zero point (QOperator graphs):
                            // real zero.
                            d @ (Data::U8(_) | Data::I8(_)) => {
                                let offset = if matches!(d, Data::U8(_)) { 128 } else { 0 };
                                let z = self.constant(n, 2)?.as_i64s(&name)?.first().copied().unwrap_or(0);
                                let zp = self.values[bound_value(self.bound(n, 0)?)].map(|q| q.zero_point);
                                if zp == Some(z as i32 - offset) {
                                    0.0
                                } else {
                                    z as f32
                                }
                            }
                            d => return Err(Error::unsupported(format!("{name}: Pad value of {}", d.type_name()))),
                        },
                        None => 0.0,
                    }
                } else {
                    node.float("value", 0.0)?
                };
                // NCHW pads: [n0, c0, h0, w0, n1, c1, h1, w1].
                if mode != "constant"
                    || value != 0.0
                    || pads.len() != 8
                    || pads.iter().any(|&p| p < 0)
                    || pads[0] != 0
                    || pads[1] != 0
                    || pads[4] != 0
                    || pads[5] != 0
                {
                    return Err(Error::unsupported(format!(
                        "{name}: Pad {mode} {value} {pads:?} (only zero spatial padding)"
                    )));
                }
                let Bound::Image(x) = self.bound(n, 0)? else {
                    return Err(Error::unsupported(format!("{name}: Pad of a padded or pooled tensor")));
                };
                let p = |i: usize| pads[i] as usize;
                self.set(n, Bound::Padded { value: x, pads: [p(2), p(3), p(6), p(7)] });
                Ok(())
            }
            other => Err(Error::unsupported(format!("{name}: ONNX op {other}"))),
        }
    }
}

impl Importer<'_> {
    /// Folds `n` into a constant when it is foldable and all its inputs are constants.
    fn fold_constant(&mut self, n: &NodeProto) -> Result<bool> {
        if !fold::FOLDABLE.contains(&n.op_type.as_str()) {
            return Ok(false);
        }
        let mut inputs = Vec::with_capacity(n.input.len());
        for i in &n.input {
            match (i.is_empty(), self.consts.get(i)) {
                (true, _) => inputs.push(None),
                (false, Some(v)) => inputs.push(Some(v)),
                (false, None) => return Ok(false),
            }
        }
        let v = fold::fold(n, self.opset, &inputs)
            .map_err(|e| err(self.file, format!("node '{}' ({}) on constants: {e}", node_name(n), n.op_type)))?;
        if let Some(o) = n.output.first() {
            self.consts.insert(o.clone(), v);
        }
        Ok(true)
    }

    /// The int8 model of a QDQ graph: integer weights with their scales and zero points, int32
    /// conv biases on the scale `s_in * s_w[c]` (requantized from the float bias when the file's
    /// bias scale differs), the f32 head bias, and every value's quantization.
    fn int8_store(&mut self, embedding: usize, logits: usize) -> Result<(HashMap<String, Stored>, Quantization)> {
        let mut store = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if self.values[i + 1].is_none() && i + 1 != embedding && i + 1 != logits {
                return Err(Error::unsupported(format!(
                    "{}: the output of '{}' has no QuantizeLinear (partly quantized graphs are not supported)",
                    self.file, node.name
                )));
            }
            let (weight, bias) = match &node.op {
                Op::Conv2d { weight, bias, .. } | Op::Dense { weight, bias, .. } => (weight, bias),
                _ => continue,
            };
            let Some((w, scales, zps)) = self.qweights.remove(weight) else {
                return Err(Error::unsupported(format!(
                    "{}: the weights of '{}' are float in a quantized graph",
                    self.file, node.name
                )));
            };
            let shape = self.tensors.get(weight).map(|t| t.shape().to_vec()).unwrap_or_default();
            let channels = scales.len();
            store.insert(weight.clone(), Stored::I8 { shape, data: w });
            store.insert(format!("{weight}.scale"), Stored::F32(Tensor::new(vec![channels], scales.clone())?));
            if zps.iter().any(|&z| z != 0) {
                store.insert(format!("{weight}.zero_point"), Stored::I32 { shape: vec![channels], data: zps });
            }
            let Some(b) = bias else { continue };
            let float = self.tensors.get(b).map(|t| t.data().to_vec()).unwrap_or_default();
            if matches!(node.op, Op::Dense { .. }) {
                store.insert(b.clone(), Stored::F32(Tensor::new(vec![float.len()], float)?));
                continue;
            }
            let s_in = self.values[node.inputs[0]].map(|q| q.scale).unwrap_or(1.0);
            let expected: Vec<f64> = scales.iter().map(|&sw| s_in as f64 * sw as f64).collect();
            let data = match self.qbiases.remove(b) {
                Some((ints, bs)) if bs.iter().zip(&expected).all(|(&a, &e)| ((a as f64) - e).abs() <= 1e-6 * e) => ints,
                _ => float.iter().zip(&expected).map(|(&f, &e)| (f as f64 / e).round() as i32).collect(),
            };
            store.insert(b.clone(), Stored::I32 { shape: vec![data.len()], data });
        }
        let q = Quantization {
            method: "onnx-qdq".into(),
            samples: 0,
            calibration_source: format!("kept from the ONNX file {}", self.file),
            values: self.values.clone(),
            // Files onnxruntime quantized run its add; the engine's own exports keep its own.
            arithmetic: match (self.producer, self.uint8_values) {
                ("edgetune", _) => Arithmetic::Engine,
                (_, true) => Arithmetic::OnnxruntimeUint8,
                (_, false) => Arithmetic::OnnxruntimeInt8,
            },
        };
        Ok((store, q))
    }
}

fn transpose_ints(data: &[i32], rows: usize, cols: usize) -> Vec<i32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| data[r * cols + c])).collect()
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
    let mut t = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    Tensor::new(vec![cols, rows], t)
}

/// The image input: the one graph input that is not an initializer, `[N, 3, H, W]`.
fn input_size(file: &str, g: &GraphProto) -> Result<(String, usize, usize)> {
    let feeds: Vec<_> = g.input.iter().filter(|i| !g.initializer.iter().any(|t| t.name == i.name)).collect();
    let &[input] = &feeds[..] else {
        return Err(Error::unsupported(format!("{file}: {} graph inputs (only one image input)", feeds.len())));
    };
    let dims: Vec<i64> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
        .unwrap_or_default();
    match dims[..] {
        [_, 3, h, w] if h > 0 && w > 0 => Ok((input.name.clone(), h as usize, w as usize)),
        _ => {
            Err(Error::unsupported(format!("{file}: input '{}' of shape {dims:?} (expected [N, 3, H, W])", input.name)))
        }
    }
}

/// Imports an ONNX model (`file` names it in errors and provenance; `labels` as for TFLite).
pub fn import_onnx(bytes: &[u8], file: &str, labels: Option<Vec<String>>) -> Result<ModelFile> {
    let model = ModelProto::decode(bytes).map_err(|e| err(file, format!("not a valid ONNX model: {e}")))?;
    let g = model.graph.as_ref().ok_or_else(|| err(file, "ONNX model has no graph"))?;
    // Unsupported ops, each once with its count and first node, in graph order.
    let mut bad: Vec<(String, usize, String)> = vec![];
    for n in &g.node {
        let op = n.op_type.as_str();
        if (n.domain.is_empty() || n.domain == "ai.onnx") && (OPS.contains(&op) || fold::FOLDABLE.contains(&op)) {
            continue;
        }
        if n.domain == "com.microsoft" && MS_OPS.contains(&op) {
            continue;
        }
        let op = if n.domain.is_empty() { n.op_type.clone() } else { format!("{}.{}", n.domain, n.op_type) };
        match bad.iter_mut().find(|b| b.0 == op) {
            Some(b) => b.1 += 1,
            None => bad.push((op, 1, node_name(n))),
        }
    }
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|(op, k, first)| format!("{op} x{k} (first: '{first}')")).collect();
        return Err(Error::unsupported(format!(
            "{file}: {} node(s) of {} op type(s) not supported: {}. Supported: {}; com.microsoft {}; on \
             constants only: {}",
            bad.iter().map(|b| b.1).sum::<usize>(),
            bad.len(),
            list.join(", "),
            OPS.join(", "),
            MS_OPS.join(", "),
            fold::SHAPE_ONLY.join(", ")
        )));
    }
    let (input, h, w) = input_size(file, g)?;
    let mut consts = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.clone(), Value::from_proto(t, &format!("initializer '{}'", t.name))?);
    }
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &g.node {
        for i in &n.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &g.output {
        *readers.entry(o.name.as_str()).or_default() += 1;
    }
    let mut im = Importer {
        file,
        opset: super::graph::opset_version(&model),
        consts,
        readers,
        bound: HashMap::from([(input, Bound::Image(0))]),
        nodes: vec![],
        tensors: HashMap::new(),
        embedding: None,
        logits: None,
        qconsts: HashMap::new(),
        quantized: HashMap::new(),
        values: vec![None],
        qweights: HashMap::new(),
        qbiases: HashMap::new(),
        uint8_values: false,
        producer: &model.producer_name,
    };
    for n in &g.node {
        if im.fold_constant(n)? {
            continue;
        }
        if fold::SHAPE_ONLY.contains(&n.op_type.as_str()) {
            return Err(Error::unsupported(format!(
                "{file}: node '{}' ({}) computes on a value that is not a constant (only constant shape \
                 arithmetic is folded)",
                node_name(n),
                n.op_type
            )));
        }
        im.node(n)?;
    }
    let Some(embedding) = im.embedding else {
        return Err(Error::unsupported(format!("{file}: the network must have a global average pool (the embedding)")));
    };
    // Logits: the last dense layer after the embedding, else the pool itself (networks whose
    // classifier is a convolution before the pool, like SqueezeNet).
    let logits = im.logits.filter(|&l| l > embedding).unwrap_or(embedding);
    let (tensors, quantization) = if im.values.iter().any(Option::is_some) {
        let (t, q) = im.int8_store(embedding, logits)?;
        (t, Some(q))
    } else {
        (std::mem::take(&mut im.tensors).into_iter().map(|(k, v)| (k, Stored::F32(v))).collect(), None)
    };
    Imported {
        kind: "onnx",
        file: file.to_string(),
        graph: Graph { input: [h, w, 3], nodes: im.nodes, embedding, logits },
        preprocess: Preprocess { size: h, ..Preprocess::default() },
        quantization,
        tensors,
        step: format!(
            "imported from ONNX ({} nodes, opset {}, producer '{}')",
            g.node.len(),
            im.opset,
            model.producer_name
        ),
    }
    .into_model(labels)
}
