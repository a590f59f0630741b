//! Joining values: channel concatenation and element-wise products, NHWC (or `[N, C]`).
//!
//! - concat: `y[.., c0 + c] = x_k[.., c]` with `c0` the channels of the parts before `k`; every
//!   part has the same leading dims. int8 parts on other grids are requantized onto the
//!   output's first (see [`crate::ops::pool::requantize_values`]).
//! - mul: `y = a * b` for equal shapes, or `y[n, h, w, c] = a[n, h, w, c] * f[n, c]` for
//!   per-image channel factors (squeeze-excitation). int8 (a and y quantized, f real):
//!   `y = round((a - za) * (s_a * f / s_y)) + z_y`, one multiplier per (n, c); two int8
//!   operands of one shape: `round((a - za)(b - zb) * s_a s_b / s_y) + z_y`.

use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::quant::tflite::TfliteMul;
use crate::quant::{requantize, OutputQuant, QParams};

/// Rows (everything but the last axis) and channels of a shape.
fn rows_channels(shape: &[usize]) -> (usize, usize) {
    let c = shape.last().copied().unwrap_or(1);
    (shape.iter().rev().skip(1).product(), c)
}

/// Concatenates `parts` (data, shape) along the last axis; returns the data and shape.
pub fn concat_channels<T: Copy>(parts: &[(&[T], &[usize])]) -> Result<(Vec<T>, Vec<usize>)> {
    let Some(&(_, first)) = parts.first() else { return Err(Error::invalid("concat", "no inputs")) };
    let lead = &first[..first.len().saturating_sub(1)];
    let mut shape = first.to_vec();
    let mut total_c = 0;
    for (d, s) in parts {
        if s.len() != first.len() || &s[..s.len() - 1] != lead || d.len() != s.iter().product::<usize>() {
            return Err(Error::shape("concat", format!("{first:?} and {s:?} do not concatenate along channels")));
        }
        total_c += s[s.len() - 1];
    }
    let (rows, _) = rows_channels(first);
    if let Some(last) = shape.last_mut() {
        *last = total_c;
    }
    let mut out = Vec::with_capacity(rows * total_c);
    for r in 0..rows {
        for (d, s) in parts {
            let c = s[s.len() - 1];
            out.extend_from_slice(&d[r * c..(r + 1) * c]);
        }
    }
    Ok((out, shape))
}

/// Checks `b` against `a` for [`mul_f32`]: true when `b` is `[N, C]` channel factors.
fn channel_factors(a: &[usize], b: &[usize]) -> Result<bool> {
    match (a, b) {
        _ if a == b => Ok(false),
        ([n, _, _, c], [n2, c2]) if n == n2 && c == c2 => Ok(true),
        _ => Err(Error::shape("mul", format!("{a:?} times {b:?} (same shape, or [N, C] factors of NHWC)"))),
    }
}

/// f32 product of equal shapes or an image and `[N, C]` channel factors.
pub fn mul_f32(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut y = a.data().to_vec();
    if channel_factors(a.shape(), b.shape())? {
        let (n, c) = (a.shape()[0], a.shape()[3]);
        let per = a.len() / n.max(1);
        for (img, f) in y.chunks_exact_mut(per.max(1)).zip(b.data().chunks_exact(c.max(1))) {
            for px in img.chunks_exact_mut(c.max(1)) {
                px.iter_mut().zip(f).for_each(|(v, &k)| *v *= k);
            }
        }
    } else {
        y.iter_mut().zip(b.data()).for_each(|(v, &k)| *v *= k);
    }
    Tensor::new(a.shape().to_vec(), y)
}

/// int8 image times real values `b` (same shape, or `[N, C]` factors) onto `out`.
pub fn mul_i8_f32(a: &QTensor, b: &Tensor, out: &OutputQuant) -> Result<QTensor> {
    const OP: &str = "mul_i8";
    let (sa, za) = a.params().per_tensor_pair(OP)?;
    let factors = channel_factors(a.shape(), b.shape())?;
    let (lo, hi) = out.bounds();
    let k = sa as f64 / out.scale as f64;
    let ad = a.i8_data(OP)?;
    let c = a.shape().last().copied().unwrap_or(1).max(1);
    let per = a.len() / a.shape().first().copied().unwrap_or(1).max(1);
    let y: Vec<i8> = ad
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let f = if factors { b.data()[(i / per.max(1)) * c + i % c] } else { b.data()[i] };
            requantize(q as i32 - za, (k * f as f64) as f32, out.zero_point, lo, hi) as i8
        })
        .collect();
    QTensor::from_i8(a.shape().to_vec(), y, QParams::per_tensor(out.scale, out.zero_point)?)
}

/// int8 times int8 of the same shape in TFLite's fixed-point arithmetic
/// (`quant::tflite::TfliteMul`), for imported TFLite files.
pub fn mul_i8_tflite(a: &QTensor, b: &QTensor, m: &TfliteMul, out: &OutputQuant) -> Result<QTensor> {
    const OP: &str = "mul_i8_tflite";
    if a.shape() != b.shape() {
        return Err(Error::unsupported(format!(
            "{OP}: TFLite MUL of shapes {:?} and {:?} (only equal shapes)",
            a.shape(),
            b.shape()
        )));
    }
    let y: Vec<i8> = a.i8_data(OP)?.iter().zip(b.i8_data(OP)?).map(|(&x, &v)| m.apply(x, v)).collect();
    QTensor::from_i8(a.shape().to_vec(), y, QParams::per_tensor(out.scale, out.zero_point)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_interleaves_channels_per_pixel() {
        let (a, b) = ([1, 2, 3, 4], [10, 20, 30, 40, 50, 60]);
        let (y, s) = concat_channels(&[(&a[..], &[1, 2, 2][..]), (&b[..], &[1, 2, 3][..])]).unwrap();
        assert_eq!(s, vec![1, 2, 5]);
        assert_eq!(y, vec![1, 2, 10, 20, 30, 3, 4, 40, 50, 60]);
        assert!(concat_channels(&[(&a[..], &[2, 2][..]), (&b[..], &[3, 2][..])]).is_err());
    }

    #[test]
    fn channel_factors_broadcast_and_int8_follows_f32() {
        let a = Tensor::new(vec![2, 1, 2, 2], vec![1.0, -2.0, 3.0, 4.0, 0.5, 0.25, -1.0, 2.0]).unwrap();
        let f = Tensor::new(vec![2, 2], vec![2.0, 0.5, -1.0, 3.0]).unwrap();
        let y = mul_f32(&a, &f).unwrap();
        assert_eq!(y.data(), &[2.0, -1.0, 6.0, 2.0, -0.5, 0.75, 1.0, 6.0]);
        let q = crate::ops::quantize::quantize_i8(&a, &QParams::per_tensor(0.05, 3).unwrap()).unwrap();
        let out = OutputQuant::new(0.1, -5, crate::quant::Activation::None).unwrap();
        let yq = crate::ops::quantize::dequantize_tensor(&mul_i8_f32(&q, &f, &out).unwrap()).unwrap();
        for (p, w) in yq.data().iter().zip(y.data()) {
            assert!((p - w).abs() <= 0.05 + 0.025 * 3.0 + 1e-6, "{p} vs {w}");
        }
        assert!(mul_f32(&a, &Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap()).is_err());
    }
}
