//! f32 <-> int8 tensors: `q = clamp(round_half_even(x / s[c]) + zp[c], -128, 127)` and
//! `x = (q - zp[c]) * s[c]`, per tensor or per axis (`c` = index along the params' axis).

use crate::base::error::Result;
use crate::base::tensor::{QTensor, Tensor};
use crate::quant::{dequantize, quantize_value, QParams};

/// Channel index of flat element `i` for params on `axis` of `shape`.
fn channel_of(shape: &[usize], axis: Option<usize>) -> impl Fn(usize) -> usize {
    let (inner, dim) = match axis {
        Some(a) => (shape[a + 1..].iter().product::<usize>().max(1), shape[a].max(1)),
        None => (1, 1),
    };
    move |i| (i / inner) % dim
}

/// Quantizes `x` to int8 with `params` (values clamped to `[lo, hi]`, normally [-128, 127]).
pub fn quantize_to_range(x: &Tensor, params: &QParams, lo: i32, hi: i32) -> Result<Vec<i32>> {
    params.check_for_shape("quantize", x.shape())?;
    let ch = channel_of(x.shape(), params.axis());
    let xd = x.data();
    let mut q = vec![0i32; xd.len()];
    // Element-wise (a frame's input: 150,528 values at 224x224), split over the pool's threads.
    let chunk = crate::base::pool::chunk_len(q.len(), 16 * 1024);
    crate::base::pool::parallel_chunks_mut(&mut q, chunk, &|t, part| {
        let first = t * chunk;
        for (k, (o, &v)) in part.iter_mut().zip(&xd[first..]).enumerate() {
            let c = ch(first + k);
            *o = quantize_value(v, params.scale(c), params.zero_point(c), lo, hi);
        }
    });
    Ok(q)
}

/// Quantizes `x` to an int8 [`QTensor`].
pub fn quantize_i8(x: &Tensor, params: &QParams) -> Result<QTensor> {
    let q = quantize_to_range(x, params, -128, 127)?;
    QTensor::from_i8(x.shape().to_vec(), q.into_iter().map(|v| v as i8).collect(), params.clone())
}

/// Dequantizes integer values `q` of `shape` with `params`.
pub fn dequantize_values(q: &[i32], shape: &[usize], params: &QParams) -> Result<Tensor> {
    params.check_for_shape("dequantize", shape)?;
    let ch = channel_of(shape, params.axis());
    let y = q
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = ch(i);
            dequantize(v, params.scale(c), params.zero_point(c))
        })
        .collect();
    Tensor::new(shape.to_vec(), y)
}

/// Dequantizes an int8 or int32 [`QTensor`].
pub fn dequantize_tensor(q: &QTensor) -> Result<Tensor> {
    let vals: Vec<i32> = match q.data() {
        crate::base::tensor::QData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        crate::base::tensor::QData::I32(v) => v.clone(),
    };
    dequantize_values(&vals, q.shape(), q.params())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_axis_round_trip() {
        let x = Tensor::new(vec![2, 3], vec![0.1, 0.2, 0.3, 1.0, 2.0, 3.0]).unwrap();
        let p = QParams::per_axis(0, vec![0.01, 0.1], vec![0, -10]).unwrap();
        let q = quantize_i8(&x, &p).unwrap();
        assert_eq!(q.i8_data("t").unwrap(), &[10, 20, 30, 0, 10, 20]);
        let back = dequantize_tensor(&q).unwrap();
        for (a, b) in back.data().iter().zip(x.data()) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
