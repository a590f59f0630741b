//! Quantized ONNX operators on the engine's int8 kernels.
//!
//! ONNX allows uint8 or int8 data; the kernels are int8. A uint8 tensor maps exactly onto
//! int8 by subtracting 128 from its values *and* its zero point, since every kernel only
//! sees `q - zero_point`; a uint8 output is the int8 output plus 128 with its zero point
//! shifted the same way (the clamp range [0, 255] becomes [-128, 127]).

use super::attr::Node;
use super::ops::{conv_params, kernel_of, matmul_dims};
use super::value::{Data, Value};
use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::ops::conv::{conv2d_i8, conv2d_i8_acc};
use crate::ops::gemm::{dense_i8, gemm_i8_acc};
use crate::ops::layout::{channels_first_to_last, channels_last_to_first};
use crate::ops::quantize::{dequantize_values, quantize_to_range};
use crate::quant::{Activation, OutputQuant, QParams, Requant};

/// Integer data as int8 plus the offset that restores it (128 for uint8, 0 for int8).
fn as_i8(v: &Value, what: &str) -> Result<(Vec<i8>, i32)> {
    match &v.data {
        Data::U8(d) => Ok((d.iter().map(|&x| (x as i32 - 128) as i8).collect(), 128)),
        Data::I8(d) => Ok((d.clone(), 0)),
        d => Err(Error::unsupported(format!("{what}: data type {} (expected uint8 or int8)", d.type_name()))),
    }
}

/// Zero points shifted into the int8 domain; an absent zero point is 0 in the original domain.
fn zero_points(v: Option<&Value>, offset: i32, what: &str) -> Result<Vec<i32>> {
    match v {
        None => Ok(vec![-offset]),
        Some(z) => {
            let (_, zoff) = as_i8(z, what)?;
            if zoff != offset {
                return Err(Error::invalid(
                    "onnx quantized op",
                    format!("{what} type {} does not match its data", z.data.type_name()),
                ));
            }
            Ok(z.as_i64s(what)?.into_iter().map(|x| x as i32 - offset).collect())
        }
    }
}

/// A scale tensor's values (scalar or 1-D).
fn scales(v: &Value, what: &str) -> Result<Vec<f32>> {
    Ok(v.as_f32(what)?.to_vec())
}

fn params(scales: Vec<f32>, zps: Vec<i32>, axis: usize, what: &str) -> Result<QParams> {
    if scales.len() == 1 && zps.len() == 1 {
        return QParams::per_tensor(scales[0], zps[0]);
    }
    let zps = if zps.len() == 1 { vec![zps[0]; scales.len()] } else { zps };
    QParams::per_axis(axis, scales, zps).map_err(|e| Error::invalid("onnx quantized op", format!("{what}: {e}")))
}

/// Back from int8 to the output's original type.
fn restore(shape: Vec<usize>, y: Vec<i8>, offset: i32) -> Result<Value> {
    if offset == 128 {
        Value::new(shape, Data::U8(y.iter().map(|&v| (v as i32 + 128) as u8).collect()))
    } else {
        Value::new(shape, Data::I8(y))
    }
}

/// NCHW int8 data -> NHWC QTensor.
fn nhwc_q(d: &[i8], shape: &[usize], p: QParams) -> Result<QTensor> {
    let (d, s) = channels_first_to_last(d, shape)?;
    QTensor::from_i8(s, d, p)
}

fn conv_integer(n: &Node) -> Result<Value> {
    let (x, w) = (n.input(0)?, n.input(1)?);
    let p = conv_params(n, kernel_of(&w.shape)?)?;
    let (xd, xo) = as_i8(x, "ConvInteger x")?;
    let (wd, wo) = as_i8(w, "ConvInteger w")?;
    let zx = zero_points(n.opt(2), xo, "x_zero_point")?;
    let zw = zero_points(n.opt(3), wo, "w_zero_point")?;
    if zx.len() != 1 {
        return Err(Error::unsupported("ConvInteger with per-channel input zero point"));
    }
    let xq = nhwc_q(&xd, &x.shape, QParams::per_tensor(1.0, zx[0])?)?;
    let wq = nhwc_q(&wd, &w.shape, params(vec![1.0; zw.len()], zw, 0, "w_zero_point")?)?;
    let (g, acc) = conv2d_i8_acc(&xq, &wq, None, &p)?;
    let (acc, s) = channels_last_to_first(&acc, &g.out_shape())?;
    Value::new(s, Data::I32(acc))
}

fn qlinear_conv(n: &Node) -> Result<Value> {
    let (x, w) = (n.input(0)?, n.input(3)?);
    let p = conv_params(n, kernel_of(&w.shape)?)?;
    let (xd, xo) = as_i8(x, "QLinearConv x")?;
    let (wd, wo) = as_i8(w, "QLinearConv w")?;
    let xp = params(scales(n.input(1)?, "x_scale")?, zero_points(n.opt(2), xo, "x_zero_point")?, 0, "x")?;
    let wp = params(scales(n.input(4)?, "w_scale")?, zero_points(n.opt(5), wo, "w_zero_point")?, 0, "w")?;
    let y_zp = n.opt(7);
    let yo = match y_zp {
        Some(z) => as_i8(z, "y_zero_point")?.1,
        None => 128,
    };
    let (ys, yz) = (scales(n.input(6)?, "y_scale")?, zero_points(y_zp, yo, "y_zero_point")?);
    if ys.len() != 1 || yz.len() != 1 {
        return Err(Error::invalid("QLinearConv", "y_scale and y_zero_point must be scalars"));
    }
    let out = OutputQuant::new(ys[0], yz[0], Activation::None)?;
    let bias = n.opt(8).map(|b| match &b.data {
        Data::I32(d) => Ok(d.clone()),
        d => Err(Error::invalid("QLinearConv", format!("B must be int32, got {}", d.type_name()))),
    });
    let bias = bias.transpose()?;
    let y = conv2d_i8(&nhwc_q(&xd, &x.shape, xp)?, &nhwc_q(&wd, &w.shape, wp)?, bias.as_deref(), &p, &out)?;
    let (yd, s) = channels_last_to_first(y.i8_data("QLinearConv")?, y.shape())?;
    restore(s, yd, yo)
}

/// Runs `f(A[i] as [M, K], B[i] as [N, K])` for each batch of a (batched) integer matmul
/// and concatenates the results. ONNX stores B as `[.., K, N]`; the int8 GEMM wants one row
/// per output column, so each B slice is transposed. `dims` comes from [`matmul_dims`].
fn per_batch<T>(
    a: &[i8],
    b: &[i8],
    dims: (usize, usize, usize, usize, bool),
    f: impl Fn(&[i8], &[i8]) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let (batch, m, k, n, b_batched) = dims;
    let mut y = Vec::with_capacity(batch * m * n);
    for i in 0..batch {
        let bi = if b_batched { i } else { 0 };
        let bs = &b[bi * k * n..][..k * n];
        let bt: Vec<i8> = (0..n).flat_map(|j| (0..k).map(move |p| bs[p * n + j])).collect();
        y.extend(f(&a[i * m * k..][..m * k], &bt)?);
    }
    Ok(y)
}

fn matmul_integer(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    let (a, b) = (n.input(0)?, n.input(1)?);
    let (batch, m, k, nn, shape, b_batched) = matmul_dims(&a.shape, &b.shape)?;
    let (ad, ao) = as_i8(a, "MatMulInteger A")?;
    let (bd, bo) = as_i8(b, "MatMulInteger B")?;
    let za = zero_points(n.opt(2), ao, "a_zero_point")?;
    let zb = zero_points(n.opt(3), bo, "b_zero_point")?;
    if za.len() != 1 {
        return Err(Error::unsupported("MatMulInteger with per-row a_zero_point"));
    }
    let y = per_batch(&ad, &bd, (batch, m, k, nn, b_batched), |a, bt| gemm_i8_acc(a, za[0], bt, &zb, None, m, k, nn))?;
    Value::new(shape, Data::I32(y))
}

fn qlinear_matmul(n: &Node) -> Result<Value> {
    n.only_attrs(&[])?;
    let (a, b) = (n.input(0)?, n.input(3)?);
    let (batch, m, k, nn, shape, b_batched) = matmul_dims(&a.shape, &b.shape)?;
    let (ad, ao) = as_i8(a, "QLinearMatMul a")?;
    let (bd, bo) = as_i8(b, "QLinearMatMul b")?;
    let a_s = scales(n.input(1)?, "a_scale")?;
    let za = zero_points(n.opt(2), ao, "a_zero_point")?;
    let b_s = scales(n.input(4)?, "b_scale")?;
    let zb = zero_points(n.opt(5), bo, "b_zero_point")?;
    let y_zp = n.input(7)?;
    let (_, yo) = as_i8(y_zp, "y_zero_point")?;
    let ys = scales(n.input(6)?, "y_scale")?;
    let yz = zero_points(Some(y_zp), yo, "y_zero_point")?;
    if a_s.len() != 1 || za.len() != 1 || ys.len() != 1 || yz.len() != 1 {
        return Err(Error::unsupported("QLinearMatMul with per-row a or y quantization"));
    }
    let out = OutputQuant::new(ys[0], yz[0], Activation::None)?;
    let rq = Requant::new("QLinearMatMul", a_s[0], &b_s, &out)?;
    let y =
        per_batch(&ad, &bd, (batch, m, k, nn, b_batched), |a, bt| dense_i8(a, za[0], bt, &zb, None, &rq, m, k, nn))?;
    restore(shape, y, yo)
}

/// The `axis` attribute of (De)QuantizeLinear, normalized, when the scale is 1-D.
fn quant_axis(n: &Node, rank: usize) -> Result<usize> {
    n.only_attrs(&["axis"])?;
    n.axis(n.int("axis", 1)?, rank)
}

fn quantize_linear(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let s = scales(n.input(1)?, "y_scale")?;
    let axis = if s.len() > 1 { quant_axis(n, x.shape.len())? } else { n.only_attrs(&["axis"]).map(|_| 0)? };
    let zp = n.opt(2);
    let is_u8 = !matches!(zp.map(|z| &z.data), Some(Data::I8(_)));
    if let Some(z) = zp {
        as_i8(z, "y_zero_point")?;
    }
    let zps: Vec<i32> = match zp {
        Some(z) => z.as_i64s("y_zero_point")?.into_iter().map(|v| v as i32).collect(),
        None => vec![0],
    };
    let p = params(s, zps, axis, "QuantizeLinear")?;
    let t = Tensor::new(x.shape.clone(), x.as_f32("QuantizeLinear x")?.to_vec())?;
    let (lo, hi) = if is_u8 { (0, 255) } else { (-128, 127) };
    let q = quantize_to_range(&t, &p, lo, hi)?;
    let data = if is_u8 {
        Data::U8(q.iter().map(|&v| v as u8).collect())
    } else {
        Data::I8(q.iter().map(|&v| v as i8).collect())
    };
    Value::new(x.shape.clone(), data)
}

fn dequantize_linear(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let s = scales(n.input(1)?, "x_scale")?;
    let axis = if s.len() > 1 { quant_axis(n, x.shape.len())? } else { n.only_attrs(&["axis"]).map(|_| 0)? };
    let zps: Vec<i32> = match n.opt(2) {
        Some(z) => z.as_i64s("x_zero_point")?.into_iter().map(|v| v as i32).collect(),
        None => vec![0],
    };
    let q: Vec<i32> = x.as_i64s("DequantizeLinear x")?.into_iter().map(|v| v as i32).collect();
    if matches!(x.data, Data::I64(_) | Data::F32(_)) {
        return Err(Error::unsupported(format!("DequantizeLinear of {}", x.data.type_name())));
    }
    let p = params(s, zps, axis, "DequantizeLinear")?;
    let y = dequantize_values(&q, &x.shape, &p)?;
    Value::f32(y.shape().to_vec(), y.into_data())
}

/// Runs one quantized op, or returns `None` if `op_type` is not one of them.
pub(crate) fn run(op_type: &str, n: &Node) -> Option<Result<Vec<Value>>> {
    let r = match op_type {
        "ConvInteger" => conv_integer(n),
        "QLinearConv" => qlinear_conv(n),
        "MatMulInteger" => matmul_integer(n),
        "QLinearMatMul" => qlinear_matmul(n),
        "QuantizeLinear" => quantize_linear(n),
        "DequantizeLinear" => dequantize_linear(n),
        _ => return None,
    };
    Some(r.map(|v| vec![v]))
}

/// Quantized op types this module executes.
pub const OP_TYPES: &[&str] =
    &["ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear"];
