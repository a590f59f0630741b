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
    let per_tensor = params.axis().is_none();
    crate::base::pool::parallel_chunks_mut(&mut q, chunk, &|t, part| {
        let first = t * chunk;
        if per_tensor {
            return quantize_per_tensor(
                &xd[first..first + part.len()],
                params.scale(0),
                params.zero_point(0),
                lo,
                hi,
                part,
            );
        }
        for (k, (o, &v)) in part.iter_mut().zip(&xd[first..]).enumerate() {
            let c = ch(first + k);
            *o = quantize_value(v, params.scale(c), params.zero_point(c), lo, hi);
        }
    });
    Ok(q)
}

/// One scale and zero point for every value: a straight loop the compiler vectorizes, built
/// a second time for AVX2 natively where the CPU has it (the baseline x86-64 build has no
/// vector rounding instruction and calls libm per value; the AVX2 one rounds eight at once
/// with the same ties-to-even result).
fn quantize_per_tensor(x: &[f32], scale: f32, zp: i32, lo: i32, hi: i32, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::native_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { quantize_per_tensor_avx2(x, scale, zp, lo, hi, out) };
    }
    quantize_per_tensor_loop(x, scale, zp, lo, hi, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_per_tensor_avx2(x: &[f32], scale: f32, zp: i32, lo: i32, hi: i32, out: &mut [i32]) {
    quantize_per_tensor_loop(x, scale, zp, lo, hi, out)
}

#[inline(always)]
fn quantize_per_tensor_loop(x: &[f32], scale: f32, zp: i32, lo: i32, hi: i32, out: &mut [i32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_value(v, scale, zp, lo, hi);
    }
}

/// Quantizes `x` to an int8 [`QTensor`]. Per tensor (a network's input), straight into the
/// int8 buffer (a recycled one natively: every element is stored); per axis through
/// [`quantize_to_range`].
pub fn quantize_i8(x: &Tensor, params: &QParams) -> Result<QTensor> {
    if params.axis().is_some() {
        let q = quantize_to_range(x, params, -128, 127)?;
        return QTensor::from_i8(x.shape().to_vec(), q.into_iter().map(|v| v as i8).collect(), params.clone());
    }
    params.check_for_shape("quantize", x.shape())?;
    let xd = x.data();
    let (scale, zp) = (params.scale(0), params.zero_point(0));
    let mut q = super::scratch::output_i8(xd.len());
    let chunk = crate::base::pool::chunk_len(q.len(), 16 * 1024);
    crate::base::pool::parallel_chunks_mut(&mut q, chunk, &|t, part| {
        quantize_per_tensor_i8(&xd[t * chunk..][..part.len()], scale, zp, part)
    });
    QTensor::from_i8(x.shape().to_vec(), q, params.clone())
}

/// [`quantize_per_tensor`] into int8 (bounds -128, 127): 32 values at a time with AVX2
/// natively where the CPU has it, the scalar spec for the rest.
fn quantize_per_tensor_i8(x: &[f32], scale: f32, zp: i32, out: &mut [i8]) {
    let n = out.len().min(x.len());
    #[cfg(target_arch = "x86_64")]
    let done = if crate::ops::native_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above); the kernel stays inside the first
        // `32 * (n / 32)` elements of both slices.
        unsafe { quantize_per_tensor_i8_avx2(&x[..n], scale, zp, &mut out[..n]) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (o, &v) in out[done..n].iter_mut().zip(&x[done..n]) {
        *o = quantize_value(v, scale, zp, -128, 127) as i8;
    }
}

/// The spec's steps on eight lanes: `x / s` (`vdivps`), the clamp to `[-128 - zp, 127 - zp]`
/// (`vmaxps`, `vminps`), round half to even (`vcvtps2dq`, default MXCSR; exact after the
/// clamp), plus `zp`; NaN lanes take `clamp(zp)` (a blend on an unordered compare). The
/// results lie in [-128, 127], so the packs to bytes never saturate. Returns how many leading
/// values it wrote.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_per_tensor_i8_avx2(x: &[f32], scale: f32, zp: i32, out: &mut [i8]) -> usize {
    use core::arch::x86_64::*;
    let s = _mm256_set1_ps(scale);
    let (lo, hi) = (_mm256_set1_ps((-128 - zp) as f32), _mm256_set1_ps((127 - zp) as f32));
    let (zv, nan) = (_mm256_set1_epi32(zp), _mm256_set1_epi32(zp.clamp(-128, 127)));
    let blocks = out.len().min(x.len()) / 32;
    for b in 0..blocks {
        let mut q = [_mm256_setzero_si256(); 4];
        for (g, slot) in q.iter_mut().enumerate() {
            let v = _mm256_loadu_ps(x.as_ptr().add(32 * b + 8 * g));
            let t = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(v, s), lo), hi);
            let r = _mm256_add_epi32(_mm256_cvtps_epi32(t), zv);
            *slot = _mm256_blendv_epi8(r, nan, _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)));
        }
        let bytes = super::requant_x86::pack32_i32_to_i8(q);
        _mm256_storeu_si256(out.as_mut_ptr().add(32 * b) as *mut __m256i, bytes);
    }
    blocks * 32
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

    /// The per-tensor loop (AVX2 natively where the CPU has it) equals the scalar spec value by
    /// value: exact ties both ways, both bounds, NaN and infinities, lengths off the 8 lanes.
    #[test]
    fn per_tensor_quantization_equals_the_scalar_spec() {
        let mut x: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 0.25).collect();
        x.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.125, -0.125, 0.375]);
        for (scale, zp, lo, hi) in [(0.25f32, 0, -128, 127), (0.5, -3, -128, 127), (0.125, 10, 0, 60)] {
            let mut got = vec![0i32; x.len()];
            quantize_per_tensor(&x, scale, zp, lo, hi, &mut got);
            for (&g, &v) in got.iter().zip(&x) {
                assert_eq!(g, quantize_value(v, scale, zp, lo, hi), "x={v} scale={scale} zp={zp}");
            }
        }
    }

    /// Per-tensor quantization straight into int8 (AVX2 natively where the CPU has it) equals
    /// the scalar spec: NaN and infinities in every lane position, ties, both bounds, zero
    /// points that clamp NaN's result, lengths around the 32-value blocks.
    #[test]
    fn per_tensor_int8_quantization_equals_the_scalar_spec() {
        let mut x: Vec<f32> = (0..301).map(|i| (i as f32 - 150.0) * 0.625).collect();
        for (k, special) in
            [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 1e-40, -0.0].into_iter().enumerate()
        {
            x[k * 37 % 301] = special;
            x[(k * 37 + 13) % 301] = special;
        }
        for (scale, zp) in [(0.25f32, 0), (0.5, -3), (0.125, 10), (1.25, -128), (0.75, 127), (1.0, 200)] {
            for len in [301, 288, 257, 33, 32, 31, 1, 0] {
                let xs = Tensor::new(vec![len], x[..len].to_vec()).unwrap();
                let q = quantize_i8(&xs, &QParams::per_tensor(scale, zp).unwrap());
                let Ok(q) = q else {
                    assert!(zp > 127, "zero point {zp} refused");
                    continue;
                };
                let want: Vec<i8> = x[..len].iter().map(|&v| quantize_value(v, scale, zp, -128, 127) as i8).collect();
                assert_eq!(q.i8_data("t").unwrap(), want.as_slice(), "scale={scale} zp={zp} len={len}");
            }
        }
    }

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
