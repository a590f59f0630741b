//! `.etm` -> ONNX (opset 13), for onnxruntime, onnxruntime-web and any other ONNX runtime.
//!
//! Layout: the ONNX model takes `input` `[N, 3, H, W]` float (preprocessed as the `.etm`
//! header says) and gives `logits` `[N, classes]`; weights are written OIHW.
//! ```text
//! conv2d           -> Conv (explicit pads: TF "same" is resolved from the input size;
//!                     batch norm folded) [+ Relu | Clip(0, 6)]
//! add              -> Add [+ activation]
//! global_avg_pool  -> GlobalAveragePool, Flatten
//! dense            -> Gemm (transB = 1) [+ activation]
//! max_pool         -> MaxPool;  avg_pool -> AveragePool (pads explicit, ceil_mode kept)
//! concat           -> Concat (axis 1)
//! mul              -> Mul (channel factors reshaped to [N, C, 1, 1])
//! unary            -> Relu | Clip | Sigmoid | HardSigmoid; hard_swish -> x * HardSigmoid(x)
//!                     (HardSwish itself is opset 14)
//! ```
//! An int8 model becomes a QDQ graph, the form onnxruntime fuses into its int8 kernels:
//! every quantized value `v` is followed by `QuantizeLinear(s_v, z_v + 128)` ->
//! `DequantizeLinear` on uint8 (onnxruntime's uint8-activation kernels round as the engine
//! does; with the add grids the engine's quantizer aligns, the file runs there bit for bit),
//! weights are int8 initializers behind `DequantizeLinear(axis 0)` with their per-channel
//! scales (and zero points), and int32 biases behind `DequantizeLinear` with scale
//! `s_in * s_w[c]`. The head's f32 bias stays float, as in the engine.

use std::collections::HashMap;

use prost::Message;

use super::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use crate::base::error::{Error, Result};
use crate::exec::cpu_f32::{PreparedF32, PreparedOp};
use crate::model::etm::{ModelFile, Stored, ValueQuant};
use crate::model::graph::{Op, PadSpec, Unary};
use crate::ops::layout::channels_last_to_first;
use crate::quant::Activation;

const OPSET: i64 = 13;

fn tensor(name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v.to_vec(), r#type: attribute_type::INTS, ..Default::default() }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: v, r#type: attribute_type::FLOAT, ..Default::default() }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: v, r#type: attribute_type::INT, ..Default::default() }
}

struct Writer {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// ONNX name of each graph value (what its readers read).
    names: Vec<String>,
}

impl Writer {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{name}:{op}");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.inits.push(t);
        name
    }

    /// `x` through the activation.
    fn activation(&mut self, x: String, name: &str, act: Activation) -> String {
        match act {
            Activation::None => x,
            Activation::Relu => self.node("Relu", name, &[&x], vec![]),
            Activation::Relu6 => {
                let lo = self.init(tensor(&format!("{name}.clip_min"), &[], data_type::FLOAT, f32s(&[0.0])));
                let hi = self.init(tensor(&format!("{name}.clip_max"), &[], data_type::FLOAT, f32s(&[6.0])));
                self.node("Clip", name, &[&x, &lo, &hi], vec![])
            }
        }
    }

    /// `x` through QuantizeLinear -> DequantizeLinear on the value's int8 grid.
    fn qdq(&mut self, x: String, name: &str, q: ValueQuant) -> String {
        let s = self.init(tensor(&format!("{name}.q_scale"), &[], data_type::FLOAT, f32s(&[q.scale])));
        // uint8 values (the engine's int8 plus 128): onnxruntime's uint8-activation kernels
        // round exactly as the engine does; its int8-activation path does not.
        let zp = (q.zero_point + 128).clamp(0, 255) as u8;
        let z = self.init(tensor(&format!("{name}.q_zero_point"), &[], data_type::UINT8, vec![zp]));
        let quantized = self.node("QuantizeLinear", name, &[&x, &s, &z], vec![]);
        self.node("DequantizeLinear", name, &[&quantized, &s, &z], vec![])
    }

    /// An int8 weight or int32 bias behind DequantizeLinear (per output channel, axis 0).
    fn dequantized(&mut self, name: &str, dims: &[usize], q: (i32, Vec<u8>), scales: &[f32], zps: Vec<u8>) -> String {
        let c = scales.len();
        let data = self.init(tensor(name, dims, q.0, q.1));
        let s = self.init(tensor(&format!("{name}.scale"), &[c], data_type::FLOAT, f32s(scales)));
        let z = self.init(tensor(&format!("{name}.zero_point"), &[c], q.0, zps));
        self.node("DequantizeLinear", name, &[&data, &s, &z], vec![int_attr("axis", 0)])
    }
}

fn f32_of<'a>(m: &'a ModelFile, name: &str) -> Result<&'a crate::base::tensor::Tensor> {
    match m.tensors.get(name) {
        Some(Stored::F32(t)) => Ok(t),
        _ => Err(Error::invalid("export", format!("tensor '{name}' is missing or not F32"))),
    }
}

/// ONNX `pads` `[top, left, bottom, right]` of a convolution on an `in_h x in_w` input.
fn pads(p: PadSpec, (in_h, in_w): (usize, usize), (kh, kw): (usize, usize), [sh, sw]: [usize; 2]) -> [i64; 4] {
    let same = |n: usize, k: usize, s: usize| {
        let total = ((n.div_ceil(s.max(1)).saturating_sub(1)) * s + k).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    match p {
        PadSpec::Valid => [0; 4],
        PadSpec::Explicit { top, left, bottom, right } => [top as i64, left as i64, bottom as i64, right as i64],
        PadSpec::Same => {
            let ((t, b), (l, r)) = (same(in_h, kh, sh), same(in_w, kw, sw));
            [t as i64, l as i64, b as i64, r as i64]
        }
    }
}

/// The ONNX bytes of a model (f32 as float ops, int8 as QDQ).
pub fn export_onnx(m: &ModelFile) -> Result<Vec<u8>> {
    m.validate()?;
    let g = &m.header.graph;
    let [h, w, c] = g.input;
    // Value shapes (for TF-"same" pads): infer_shapes reads only the weights' shapes.
    let view = m
        .tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), crate::base::tensor::Tensor::zeros(v.shape().to_vec())?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let shapes = g.infer_shapes(&view, 1)?;
    let quant = m.header.quantization.as_ref();
    let vq = |v: usize| quant.and_then(|q| q.values.get(v).copied().flatten());
    if quant.is_some_and(|q| q.arithmetic.is_tflite()) {
        return Err(Error::unsupported(
            "export of a model with TFLite arithmetic (its fixed-point rounding has no ONNX form)",
        ));
    }
    let f32_plan = match quant {
        None => Some(PreparedF32::new(g, &m.f32_tensors())?),
        Some(_) => None,
    };
    let mut wr = Writer { nodes: vec![], inits: vec![], names: vec!["input".into()] };
    if let Some(q) = vq(0) {
        wr.names[0] = wr.qdq("input".into(), "input", q);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let name = format!("{}#{i}", n.name);
        let x = wr.names[n.inputs[0]].clone();
        let out = match &n.op {
            Op::Conv2d { weight, bias, stride, padding, groups, activation, .. } => {
                let ws = m.tensors.get(weight).map(|t| t.shape().to_vec()).unwrap_or_default();
                let &[o, kh, kw, ci] = &ws[..] else {
                    return Err(Error::invalid("export", format!("node '{}': weights {ws:?}", n.name)));
                };
                let (wname, bname) = match quant {
                    None => {
                        // The f32 executor's prepared node: batch norm already folded.
                        let Some(PreparedOp::Conv { weight: wt, bias: b, .. }) = f32_plan.as_ref().map(|p| &p.ops[i])
                        else {
                            return Err(Error::invalid("export", format!("node '{}' is not a prepared conv", n.name)));
                        };
                        let (oihw, _) = channels_last_to_first(wt.data(), &ws)?;
                        let wn =
                            wr.init(tensor(&format!("{name}.weight"), &[o, ci, kh, kw], data_type::FLOAT, f32s(&oihw)));
                        let bn = wr.init(tensor(&format!("{name}.bias"), &[o], data_type::FLOAT, f32s(b)));
                        (wn, Some(bn))
                    }
                    Some(_) => {
                        let Some(Stored::I8 { data, .. }) = m.tensors.get(weight) else {
                            return Err(Error::invalid("export", format!("node '{}': int8 weights missing", n.name)));
                        };
                        let scales = f32_of(m, &format!("{weight}.scale"))?.data().to_vec();
                        let zps = match m.tensors.get(&format!("{weight}.zero_point")) {
                            Some(Stored::I32 { data, .. }) => data.iter().map(|&z| z as i8 as u8).collect(),
                            _ => vec![0u8; o],
                        };
                        let (oihw, _) = channels_last_to_first(data, &ws)?;
                        let raw = oihw.iter().map(|&v| v as u8).collect();
                        let wn = wr.dequantized(
                            &format!("{name}.weight"),
                            &[o, ci, kh, kw],
                            (data_type::INT8, raw),
                            &scales,
                            zps,
                        );
                        let in_scale = vq(n.inputs[0]).map_or(1.0, |q| q.scale);
                        let bn = match bias {
                            Some(b) => {
                                let Some(Stored::I32 { data, .. }) = m.tensors.get(b) else {
                                    return Err(Error::invalid(
                                        "export",
                                        format!("node '{}': int32 bias missing", n.name),
                                    ));
                                };
                                let bs: Vec<f32> = scales.iter().map(|s| in_scale * s).collect();
                                let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                                Some(wr.dequantized(
                                    &format!("{name}.bias"),
                                    &[o],
                                    (data_type::INT32, raw),
                                    &bs,
                                    vec![0; 4 * o],
                                ))
                            }
                            None => None,
                        };
                        (wn, bn)
                    }
                };
                let in_shape = &shapes[n.inputs[0]];
                let p = pads(*padding, (in_shape[1], in_shape[2]), (kh, kw), *stride);
                let attrs = vec![
                    ints_attr("kernel_shape", &[kh as i64, kw as i64]),
                    ints_attr("strides", &[stride[0] as i64, stride[1] as i64]),
                    ints_attr("pads", &p),
                    int_attr("group", *groups as i64),
                ];
                let mut inputs = vec![x.as_str(), wname.as_str()];
                if let Some(b) = &bname {
                    inputs.push(b);
                }
                let y = wr.node("Conv", &name, &inputs, attrs);
                wr.activation(y, &name, *activation)
            }
            Op::Add { activation } => {
                let b = wr.names[n.inputs[1]].clone();
                let y = wr.node("Add", &name, &[&x, &b], vec![]);
                wr.activation(y, &name, *activation)
            }
            Op::GlobalAvgPool { .. } => {
                let y = wr.node("GlobalAveragePool", &name, &[&x], vec![]);
                wr.node("Flatten", &name, &[&y], vec![int_attr("axis", 1)])
            }
            Op::Dense { weight, bias, activation } => {
                let ws = m.tensors.get(weight).map(|t| t.shape().to_vec()).unwrap_or_default();
                let &[o, k] = &ws[..] else {
                    return Err(Error::invalid("export", format!("node '{}': weights {ws:?}", n.name)));
                };
                let wname = match m.tensors.get(weight) {
                    Some(Stored::F32(t)) => {
                        wr.init(tensor(&format!("{name}.weight"), &[o, k], data_type::FLOAT, f32s(t.data())))
                    }
                    Some(Stored::I8 { data, .. }) => {
                        let scales = f32_of(m, &format!("{weight}.scale"))?.data().to_vec();
                        let zps = match m.tensors.get(&format!("{weight}.zero_point")) {
                            Some(Stored::I32 { data, .. }) => data.iter().map(|&z| z as i8 as u8).collect(),
                            _ => vec![0u8; o],
                        };
                        let raw = data.iter().map(|&v| v as u8).collect();
                        wr.dequantized(&format!("{name}.weight"), &[o, k], (data_type::INT8, raw), &scales, zps)
                    }
                    _ => return Err(Error::invalid("export", format!("node '{}': weights missing", n.name))),
                };
                let mut inputs = vec![x.clone(), wname];
                if let Some(b) = bias {
                    let t = f32_of(m, b)?;
                    inputs.push(wr.init(tensor(&format!("{name}.bias"), &[o], data_type::FLOAT, f32s(t.data()))));
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let y = wr.node("Gemm", &name, &refs, vec![int_attr("transB", 1)]);
                wr.activation(y, &name, *activation)
            }
            Op::MaxPool { kernel, stride, padding, ceil_mode }
            | Op::AvgPool { kernel, stride, padding, ceil_mode, .. } => {
                let in_shape = &shapes[n.inputs[0]];
                let p = pads(*padding, (in_shape[1], in_shape[2]), (kernel[0], kernel[1]), *stride);
                let mut attrs = vec![
                    ints_attr("kernel_shape", &[kernel[0] as i64, kernel[1] as i64]),
                    ints_attr("strides", &[stride[0] as i64, stride[1] as i64]),
                    ints_attr("pads", &p),
                    int_attr("ceil_mode", *ceil_mode as i64),
                ];
                let op = match n.op {
                    Op::AvgPool { count_include_pad, .. } => {
                        attrs.push(int_attr("count_include_pad", count_include_pad as i64));
                        "AveragePool"
                    }
                    _ => "MaxPool",
                };
                wr.node(op, &name, &[&x], attrs)
            }
            Op::Concat => {
                let parts: Vec<String> = n.inputs.iter().map(|&v| wr.names[v].clone()).collect();
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                wr.node("Concat", &name, &refs, vec![int_attr("axis", 1)])
            }
            Op::Mul => {
                let mut b = wr.names[n.inputs[1]].clone();
                if shapes[n.inputs[1]].len() == 2 && shapes[n.inputs[0]].len() == 4 {
                    let dims = [0i64, -1, 1, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
                    let shape = wr.init(tensor(&format!("{name}.factors_shape"), &[4], data_type::INT64, dims));
                    b = wr.node("Reshape", &name, &[&b, &shape], vec![]);
                }
                wr.node("Mul", &name, &[&x, &b], vec![])
            }
            Op::Unary { function } => match *function {
                Unary::Identity => wr.node("Identity", &name, &[&x], vec![]),
                Unary::Relu => wr.node("Relu", &name, &[&x], vec![]),
                Unary::Clip { min, max } => {
                    let lo = wr.init(tensor(&format!("{name}.min"), &[], data_type::FLOAT, f32s(&[min])));
                    let hi = wr.init(tensor(&format!("{name}.max"), &[], data_type::FLOAT, f32s(&[max])));
                    wr.node("Clip", &name, &[&x, &lo, &hi], vec![])
                }
                Unary::Sigmoid => wr.node("Sigmoid", &name, &[&x], vec![]),
                Unary::HardSigmoid { alpha, beta } => {
                    wr.node("HardSigmoid", &name, &[&x], vec![float_attr("alpha", alpha), float_attr("beta", beta)])
                }
                Unary::HardSwish => {
                    let attrs = vec![float_attr("alpha", 1.0 / 6.0), float_attr("beta", 0.5)];
                    let gate = wr.node("HardSigmoid", &name, &[&x], attrs);
                    wr.node("Mul", &name, &[&x, &gate], vec![])
                }
            },
        };
        let out = match vq(i + 1) {
            Some(q) => wr.qdq(out, &name, q),
            None => out,
        };
        wr.names.push(out);
    }
    // The graph output is the logits value under the name "logits".
    let last = wr.names[g.logits].clone();
    wr.nodes.push(NodeProto {
        input: vec![last],
        output: vec!["logits".into()],
        name: "logits".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    let dims = |d: Vec<Dimension>| {
        Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: d }),
            }),
        })
    };
    let batch = Dimension { dim_param: "batch".into(), ..Default::default() };
    let fixed = |v: usize| Dimension { dim_value: v as i64, ..Default::default() };
    let classes = shapes[g.logits][1];
    let graph = GraphProto {
        node: wr.nodes,
        name: m.header.architecture.clone(),
        initializer: wr.inits,
        input: vec![ValueInfoProto {
            name: "input".into(),
            r#type: dims(vec![batch.clone(), fixed(c), fixed(h), fixed(w)]),
        }],
        output: vec![ValueInfoProto { name: "logits".into(), r#type: dims(vec![batch, fixed(classes)]) }],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "edgetune".into(),
        producer_version: crate::VERSION.into(),
        doc_string: format!("exported from .etm ({}); labels: {}", m.header.architecture, m.header.labels.join(" | ")),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
