//! Float and shape ONNX operators, each mapped onto the engine's reference kernels
//! (`crate::ops`). ONNX images are NCHW; the kernels are NHWC, so 4-D tensors are
//! converted on the way in and out (which is how the engine's own importer will lay
//! out imported graphs, too).

use super::attr::Node;
use super::value::{Data, Value};
use crate::base::error::{Error, Result};
use crate::base::tensor::{numel, Tensor};
use crate::ops::add::{add_f32, broadcast_shape, broadcast_strides};
use crate::ops::conv::{conv2d_f32, Conv2dParams};
use crate::ops::gemm::{matmul_f32, BLayout};
use crate::ops::layout::{channels_first_to_last, channels_last_to_first};
use crate::ops::norm::{batch_norm_f32, BatchNorm};
use crate::ops::pool::{avg_pool2d_f32, global_avg_pool_f32, Pool2dParams};
use crate::ops::{activation, softmax, Padding};

/// NCHW f32 value -> NHWC engine tensor.
pub(crate) fn to_nhwc(v: &Value, what: &str) -> Result<Tensor> {
    if v.shape.len() != 4 {
        return Err(Error::unsupported(format!("{what}: rank {} tensor (only 2-D images, rank 4)", v.shape.len())));
    }
    let (d, s) = channels_first_to_last(v.as_f32(what)?, &v.shape)?;
    Tensor::new(s, d)
}

/// NHWC engine tensor -> NCHW f32 value.
pub(crate) fn from_nhwc(t: &Tensor) -> Result<Value> {
    let (d, s) = channels_last_to_first(t.data(), t.shape())?;
    Value::f32(s, d)
}

/// Spatial window attributes shared by Conv and AveragePool: (padding, strides).
pub(crate) fn window_attrs(n: &Node, kernel: [usize; 2]) -> Result<(Padding, [usize; 2])> {
    let two = |v: Option<Vec<usize>>, what: &str| -> Result<[usize; 2]> {
        match v {
            None => Ok([1, 1]),
            Some(v) if v.len() == 2 => Ok([v[0], v[1]]),
            Some(v) => Err(Error::unsupported(format!("{} {what} {v:?} (only 2-D)", n.proto.op_type))),
        }
    };
    let strides = two(n.usizes("strides")?, "strides")?;
    if let Some(k) = n.usizes("kernel_shape")? {
        if k != kernel {
            return Err(Error::shape("onnx window", format!("kernel_shape {k:?} does not match weights {kernel:?}")));
        }
    }
    let auto_pad = n.string("auto_pad")?.unwrap_or_default();
    let padding = match auto_pad.as_str() {
        "" | "NOTSET" => match n.usizes("pads")? {
            None => Padding::VALID,
            Some(p) if p.len() == 4 => Padding::Explicit { top: p[0], left: p[1], bottom: p[2], right: p[3] },
            Some(p) => return Err(Error::unsupported(format!("{} pads {p:?} (only 2-D)", n.proto.op_type))),
        },
        "VALID" => Padding::VALID,
        "SAME_UPPER" => Padding::SameUpper,
        "SAME_LOWER" => Padding::SameLower,
        other => return Err(Error::invalid("onnx window", format!("unknown auto_pad '{other}'"))),
    };
    Ok((padding, strides))
}

/// Conv attributes for OIHW weights of spatial size `kernel`.
pub(crate) fn conv_params(n: &Node, kernel: [usize; 2]) -> Result<Conv2dParams> {
    n.only_attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let (padding, stride) = window_attrs(n, kernel)?;
    let dilation = match n.usizes("dilations")? {
        None => [1, 1],
        Some(d) if d.len() == 2 => [d[0], d[1]],
        Some(d) => return Err(Error::unsupported(format!("Conv dilations {d:?} (only 2-D)"))),
    };
    let groups = usize::try_from(n.int("group", 1)?).map_err(|_| Error::invalid("Conv", "negative group"))?;
    Ok(Conv2dParams { stride, dilation, padding, groups })
}

/// Spatial kernel of OIHW weights.
pub(crate) fn kernel_of(w_shape: &[usize]) -> Result<[usize; 2]> {
    match w_shape {
        [_, _, kh, kw] => Ok([*kh, *kw]),
        s => Err(Error::unsupported(format!("Conv weights of rank {} (only 2-D convolution)", s.len()))),
    }
}

fn conv(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let w = n.input(1)?;
    let p = conv_params(n, kernel_of(&w.shape)?)?;
    let xt = to_nhwc(x, "Conv X")?;
    let (wd, ws) = channels_first_to_last(w.as_f32("Conv W")?, &w.shape)?; // OIHW -> OHWI
    let wt = Tensor::new(ws, wd)?;
    let bias = n.opt(2).map(|b| b.as_f32("Conv B")).transpose()?;
    from_nhwc(&conv2d_f32(&xt, &wt, bias, &p)?)
}

fn relu(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    let x = n.input(0)?;
    let mut d = x.as_f32("Relu X")?.to_vec();
    activation::relu_f32(&mut d);
    Value::f32(x.shape.clone(), d)
}

fn scalar_bound(v: Option<&Value>, what: &str) -> Result<Option<f64>> {
    let Some(v) = v else { return Ok(None) };
    if v.data.len() != 1 {
        return Err(Error::invalid("Clip", format!("{what} must be a scalar, got shape {:?}", v.shape)));
    }
    Ok(Some(match &v.data {
        Data::F32(d) => d[0] as f64,
        _ => v.as_i64s(what)?[0] as f64,
    }))
}

fn clip(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let (lo, hi) = if n.opset < 11 {
        n.only_attrs(&["min", "max"])?;
        (Some(n.float("min", f32::MIN)? as f64), Some(n.float("max", f32::MAX)? as f64))
    } else {
        n.only_attrs(&[])?;
        (scalar_bound(n.opt(1), "min")?, scalar_bound(n.opt(2), "max")?)
    };
    match &x.data {
        Data::F32(d) => {
            let mut d = d.clone();
            activation::clip_f32(
                &mut d,
                lo.map_or(f32::NEG_INFINITY, |v| v as f32),
                hi.map_or(f32::INFINITY, |v| v as f32),
            )?;
            Value::f32(x.shape.clone(), d)
        }
        Data::I8(d) => {
            let mut d = d.clone();
            activation::clip_i8(&mut d, lo.map_or(-128, |v| v as i32), hi.map_or(127, |v| v as i32));
            Value::new(x.shape.clone(), Data::I8(d))
        }
        other => Err(Error::unsupported(format!("Clip on {}", other.type_name()))),
    }
}

fn add(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    let (a, b) = (n.input(0)?, n.input(1)?);
    let ta = Tensor::new(a.shape.clone(), a.as_f32("Add A")?.to_vec())?;
    let tb = Tensor::new(b.shape.clone(), b.as_f32("Add B")?.to_vec())?;
    let y = add_f32(&ta, &tb)?;
    Value::f32(y.shape().to_vec(), y.into_data())
}

fn global_average_pool(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    from_nhwc(&global_avg_pool_f32(&to_nhwc(n.input(0)?, "GlobalAveragePool X")?)?)
}

fn average_pool(n: &Node) -> Result<Value> {
    n.only_attrs(&["auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides", "dilations"])?;
    let kernel = match n.usizes("kernel_shape")? {
        Some(k) if k.len() == 2 => [k[0], k[1]],
        Some(k) => return Err(Error::unsupported(format!("AveragePool kernel_shape {k:?} (only 2-D)"))),
        None => return Err(Error::invalid("AveragePool", "kernel_shape is required")),
    };
    if let Some(d) = n.usizes("dilations")? {
        if d.iter().any(|&v| v != 1) {
            return Err(Error::unsupported(format!("AveragePool dilations {d:?}")));
        }
    }
    let (padding, stride) = window_attrs(n, kernel)?;
    let p = Pool2dParams {
        kernel,
        stride,
        padding,
        count_include_pad: n.int("count_include_pad", 0)? != 0,
        ceil_mode: n.int("ceil_mode", 0)? != 0,
    };
    from_nhwc(&avg_pool2d_f32(&to_nhwc(n.input(0)?, "AveragePool X")?, &p)?)
}

fn softmax_op(n: &Node) -> Result<Value> {
    n.only_attrs(&["axis"])?;
    let x = n.input(0)?;
    let rank = x.shape.len();
    let t = Tensor::new(x.shape.clone(), x.as_f32("Softmax X")?.to_vec())?;
    let y = if n.opset < 13 {
        // Opset 1-12: coerce to 2-D at `axis` (default 1), softmax over the flattened rest.
        let a = n.int("axis", 1)?;
        let axis = if a < 0 { a + rank as i64 } else { a };
        if axis < 0 || axis as usize > rank {
            return Err(Error::invalid("Softmax", format!("axis {a} out of range for rank {rank}")));
        }
        softmax::softmax_f32(&t.flatten(axis as usize)?, 1)?.reshape(x.shape.clone())?
    } else {
        softmax::softmax_f32(&t, n.axis(n.int("axis", -1)?, rank)?)?
    };
    Value::f32(y.shape().to_vec(), y.into_data())
}

fn flatten(n: &Node) -> Result<Value> {
    n.only_attrs(&["axis"])?;
    let x = n.input(0)?;
    let rank = x.shape.len() as i64;
    let a = n.int("axis", 1)?;
    let axis = if a < 0 { a + rank } else { a };
    if axis < 0 || axis > rank {
        return Err(Error::invalid("Flatten", format!("axis {a} out of range for rank {rank}")));
    }
    let axis = axis as usize;
    let shape = vec![numel("Flatten", &x.shape[..axis])?, numel("Flatten", &x.shape[axis..])?];
    Value::new(shape, x.data.clone())
}

pub(crate) fn reshape(n: &Node) -> Result<Value> {
    n.only_attrs(&["allowzero"])?;
    let x = n.input(0)?;
    let spec = n.input(1)?.as_i64s("Reshape shape")?;
    let allow_zero = n.int("allowzero", 0)? != 0;
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        shape.push(match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allow_zero => *x.shape.get(i).ok_or_else(|| {
                Error::shape("Reshape", format!("0 at index {i} copies a dimension that {:?} does not have", x.shape))
            })?,
            d if d >= 0 => d as usize,
            d => return Err(Error::shape("Reshape", format!("invalid dimension {d} in {spec:?}"))),
        });
    }
    let total = x.data.len();
    if let Some(i) = infer {
        let known = numel("Reshape", &shape)?;
        if known == 0 || total % known != 0 {
            return Err(Error::shape("Reshape", format!("cannot infer -1 reshaping {:?} to {spec:?}", x.shape)));
        }
        shape[i] = total / known;
    }
    if numel("Reshape", &shape)? != total {
        return Err(Error::shape("Reshape", format!("cannot reshape {:?} to {spec:?}", x.shape)));
    }
    Value::new(shape, x.data.clone())
}

/// Shapes of a (batched) matrix product `A[.., M, K] · B[.., K, N]`: B either 2-D (shared)
/// or with the same batch dims as A. Returns (batch, m, k, n, output shape, B batched?).
pub(crate) fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(usize, usize, usize, usize, Vec<usize>, bool)> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::unsupported(format!("MatMul of shapes {a:?} and {b:?} (need rank >= 2)")));
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (kb, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != kb {
        return Err(Error::shape("matmul", format!("inner dimensions of {a:?} and {b:?} differ")));
    }
    let batch_a = &a[..a.len() - 2];
    let b_batched = b.len() > 2;
    if b_batched && b[..b.len() - 2] != *batch_a {
        return Err(Error::unsupported(format!("MatMul batch broadcasting of {a:?} and {b:?}")));
    }
    let mut out = batch_a.to_vec();
    out.extend([m, n]);
    Ok((numel("matmul", batch_a)?, m, k, n, out, b_batched))
}

fn matmul(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    let (a, b) = (n.input(0)?, n.input(1)?);
    let (batch, m, k, nn, shape, b_batched) = matmul_dims(&a.shape, &b.shape)?;
    let (ad, bd) = (a.as_f32("MatMul A")?, b.as_f32("MatMul B")?);
    let mut y = Vec::with_capacity(batch * m * nn);
    for i in 0..batch {
        let bi = if b_batched { i } else { 0 };
        y.extend(matmul_f32(&ad[i * m * k..][..m * k], &bd[bi * k * nn..][..k * nn], m, k, nn, BLayout::KN)?);
    }
    Value::f32(shape, y)
}

fn transpose2(d: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| d[r * cols + c])).collect()
}

fn gemm(n: &Node) -> Result<Value> {
    n.only_attrs(&["alpha", "beta", "transA", "transB"])?;
    let (a, b) = (n.input(0)?, n.input(1)?);
    let (&[ar, ac], &[br, bc]) = (&a.shape[..], &b.shape[..]) else {
        return Err(Error::shape("Gemm", format!("A {:?} and B {:?} must be 2-D", a.shape, b.shape)));
    };
    let (alpha, beta) = (n.float("alpha", 1.0)?, n.float("beta", 1.0)?);
    let trans_a = n.int("transA", 0)? != 0;
    let trans_b = n.int("transB", 0)? != 0;
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, nn) = if trans_b { (bc, br) } else { (br, bc) };
    if k != kb {
        return Err(Error::shape(
            "Gemm",
            format!("A {:?} (transA {trans_a}) and B {:?} (transB {trans_b}) do not chain", a.shape, b.shape),
        ));
    }
    let ad = a.as_f32("Gemm A")?;
    let at = if trans_a { transpose2(ad, ar, ac) } else { ad.to_vec() };
    let layout = if trans_b { BLayout::NK } else { BLayout::KN };
    let mut y = matmul_f32(&at, b.as_f32("Gemm B")?, m, k, nn, layout)?;
    y.iter_mut().for_each(|v| *v *= alpha);
    if let Some(c) = n.opt(2) {
        let out = [m, nn];
        if broadcast_shape("Gemm", &c.shape, &out)? != out {
            return Err(Error::shape("Gemm", format!("C {:?} does not broadcast to {out:?}", c.shape)));
        }
        let s = broadcast_strides(&c.shape, &out);
        let cd = c.as_f32("Gemm C")?;
        for i in 0..m {
            for j in 0..nn {
                y[i * nn + j] += beta * cd[i * s[0] + j * s[1]];
            }
        }
    }
    Value::f32(vec![m, nn], y)
}

fn batch_normalization(n: &Node) -> Result<Value> {
    n.only_attrs(&["epsilon", "momentum", "training_mode", "spatial"])?;
    if n.int("training_mode", 0)? != 0 || n.proto.output.len() > 1 {
        return Err(Error::unsupported("BatchNormalization in training mode"));
    }
    let x = n.input(0)?;
    let f = |i: usize, what: &str| -> Result<Vec<f32>> { Ok(n.input(i)?.as_f32(what)?.to_vec()) };
    let bn = BatchNorm {
        gamma: f(1, "scale")?,
        beta: f(2, "B")?,
        mean: f(3, "mean")?,
        var: f(4, "var")?,
        eps: n.float("epsilon", 1e-5)?,
    };
    let (mut d, s) = channels_first_to_last(x.as_f32("BatchNormalization X")?, &x.shape)?;
    batch_norm_f32(&mut d, &bn)?;
    let (d, s) = channels_last_to_first(&d, &s)?;
    Value::f32(s, d)
}

/// Runs one float/shape op, or returns `None` if `op_type` is not one of them.
pub(crate) fn run(op_type: &str, n: &Node) -> Option<Result<Vec<Value>>> {
    let r = match op_type {
        "Conv" => conv(n),
        "Relu" => relu(n),
        "Clip" => clip(n),
        "Add" => add(n),
        "GlobalAveragePool" => global_average_pool(n),
        "AveragePool" => average_pool(n),
        "Softmax" => softmax_op(n),
        "Flatten" => flatten(n),
        "Reshape" => reshape(n),
        "MatMul" => matmul(n),
        "Gemm" => gemm(n),
        "BatchNormalization" => batch_normalization(n),
        _ => return None,
    };
    Some(r.map(|v| vec![v]))
}

/// Float/shape op types this module executes.
pub const OP_TYPES: &[&str] = &[
    "Conv",
    "Relu",
    "Clip",
    "Add",
    "GlobalAveragePool",
    "AveragePool",
    "Softmax",
    "Flatten",
    "Reshape",
    "MatMul",
    "Gemm",
    "BatchNormalization",
];
