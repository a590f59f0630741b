//! Average and max pooling (2-D window and global), f32 and int8, NHWC.
//!
//! Max: `y[n, oy, ox, c] = max_{window inside the input} x[n, iy, ix, c]` (padding never
//! wins, as ONNX pads with -inf); int8 takes the max of the integers, which commutes with the
//! monotone requantization onto the output grid (a copy when the grids are equal).
//!
//! `y[n, oy, ox, c] = (1 / count) * sum_{window} x[n, iy, ix, c]` where `count` is the
//! number of window taps inside the input (`count_include_pad = false`, TensorFlow's and
//! ONNX's default) or inside input + explicit padding (`count_include_pad = true`).
//! Global pooling averages all `H * W` pixels: output `[N, 1, 1, C]`.
//!
//! int8: `acc = sum (x - zx)` in i32, then `y = requantize(acc, s_x / (s_y * count))`, the
//! multiplier computed once per distinct count (f64, rounded to f32), like every other
//! requantization in the engine.

use super::window::{explicit_pads, resolve_axis};
use super::Padding;
use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::quant::{requantize, OutputQuant, QParams};

/// Hyper-parameters of a 2-D pooling window. `[height, width]` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub count_include_pad: bool,
    pub ceil_mode: bool,
}

struct PoolGeometry {
    batch: usize,
    in_h: usize,
    in_w: usize,
    c: usize,
    out_h: usize,
    out_w: usize,
    pad_top: usize,
    pad_left: usize,
    /// Extent of input + explicit padding (for count_include_pad).
    padded_h: usize,
    padded_w: usize,
}

fn geometry(op: &'static str, shape: &[usize], p: &Pool2dParams) -> Result<PoolGeometry> {
    let &[batch, in_h, in_w, c] = shape else {
        return Err(Error::shape(op, format!("expected NHWC input of rank 4, got {shape:?}")));
    };
    let (ph, pw) = explicit_pads(p.padding);
    let ah = resolve_axis(op, in_h, p.kernel[0], p.stride[0], 1, p.padding, ph, p.ceil_mode)?;
    let aw = resolve_axis(op, in_w, p.kernel[1], p.stride[1], 1, p.padding, pw, p.ceil_mode)?;
    let (padded_h, padded_w) = match p.padding {
        Padding::Explicit { .. } => {
            (in_h.saturating_add(ph.0).saturating_add(ph.1), in_w.saturating_add(pw.0).saturating_add(pw.1))
        }
        // "same" padding is implicit: ONNX counts it like explicit padding when asked.
        _ => {
            let tot = |out: usize, s: usize, k: usize, inp: usize| ((out.max(1) - 1) * s).saturating_add(k).max(inp);
            (tot(ah.out, p.stride[0], p.kernel[0], in_h), tot(aw.out, p.stride[1], p.kernel[1], in_w))
        }
    };
    crate::base::tensor::numel(op, &[batch, ah.out, aw.out, c])?;
    Ok(PoolGeometry {
        batch,
        in_h,
        in_w,
        c,
        out_h: ah.out,
        out_w: aw.out,
        pad_top: ah.pad_begin,
        pad_left: aw.pad_begin,
        padded_h,
        padded_w,
    })
}

/// Output shape `[N, out_h, out_w, C]` of a pooling window over an NHWC `shape`.
pub fn pool_out_shape(op: &'static str, shape: &[usize], p: &Pool2dParams) -> Result<Vec<usize>> {
    let g = geometry(op, shape, p)?;
    Ok(vec![g.batch, g.out_h, g.out_w, g.c])
}

/// f32 max pooling (a window without input pixels gives 0).
pub fn max_pool2d_f32(x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let g = geometry("max_pool2d_f32", x.shape(), p)?;
    let mut y = vec![0.0f32; g.batch * g.out_h * g.out_w * g.c];
    let xd = x.data();
    for_each_window(&g, p, |out, inputs, _| {
        let o = &mut y[out..out + g.c];
        if let Some((&first, rest)) = inputs.split_first() {
            o.copy_from_slice(&xd[first..first + g.c]);
            for &i in rest {
                for (v, &xv) in o.iter_mut().zip(&xd[i..i + g.c]) {
                    // NaN propagates, as in ONNX.
                    if xv > *v || xv.is_nan() {
                        *v = xv;
                    }
                }
            }
        }
    });
    Tensor::new(vec![g.batch, g.out_h, g.out_w, g.c], y)
}

/// int8 max pooling onto the output grid `out` (x per-tensor).
pub fn max_pool2d_i8(x: &QTensor, p: &Pool2dParams, out: &OutputQuant) -> Result<QTensor> {
    const OP: &str = "max_pool2d_i8";
    let g = geometry(OP, x.shape(), p)?;
    let (sx, zx) = x.params().per_tensor_pair(OP)?;
    let xd = x.i8_data(OP)?;
    let mut y = vec![0i8; g.batch * g.out_h * g.out_w * g.c];
    let mut acc = vec![0i8; g.c];
    for_each_window(&g, p, |o, inputs, _| {
        acc.iter_mut().for_each(|a| *a = zx.clamp(-128, 127) as i8);
        if let Some((&first, rest)) = inputs.split_first() {
            acc.copy_from_slice(&xd[first..first + g.c]);
            for &i in rest {
                for (a, &xv) in acc.iter_mut().zip(&xd[i..i + g.c]) {
                    *a = (*a).max(xv);
                }
            }
        }
        y[o..o + g.c].copy_from_slice(&acc);
    });
    let y = requantize_values(y, sx, zx, out)?;
    QTensor::from_i8(vec![g.batch, g.out_h, g.out_w, g.c], y, QParams::per_tensor(out.scale, out.zero_point)?)
}

/// int8 values moved from grid `(sx, zx)` onto `out`: `round((q - zx) * sx / s_out) + z_out`,
/// clamped to `out`'s bounds; a copy when the grids are equal and nothing clamps.
pub fn requantize_values(mut q: Vec<i8>, sx: f32, zx: i32, out: &OutputQuant) -> Result<Vec<i8>> {
    let (lo, hi) = out.bounds();
    if sx == out.scale && zx == out.zero_point && lo <= -128 && hi >= 127 {
        return Ok(q);
    }
    let m = (sx as f64 / out.scale as f64) as f32;
    if !(m.is_finite() && m > 0.0) {
        return Err(Error::invalid("requantize", format!("multiplier {sx} / {} is not a positive f32", out.scale)));
    }
    for v in q.iter_mut() {
        *v = requantize(*v as i32 - zx, m, out.zero_point, lo, hi) as i8;
    }
    Ok(q)
}

/// Visits each output pixel with its window's valid input pixels and its divisor `count`.
fn for_each_window(g: &PoolGeometry, p: &Pool2dParams, mut f: impl FnMut(usize, &[usize], usize)) {
    let mut inputs = Vec::with_capacity(p.kernel[0] * p.kernel[1]);
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                inputs.clear();
                let y0 = oy * p.stride[0];
                let x0 = ox * p.stride[1];
                let mut padded_count = 0;
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let (py, px) = (y0 + ky, x0 + kx); // coordinates in the padded frame
                        if py < g.padded_h && px < g.padded_w {
                            padded_count += 1;
                        }
                        let (Some(iy), Some(ix)) = (py.checked_sub(g.pad_top), px.checked_sub(g.pad_left)) else {
                            continue;
                        };
                        if iy < g.in_h && ix < g.in_w {
                            inputs.push(((n * g.in_h + iy) * g.in_w + ix) * g.c);
                        }
                    }
                }
                let count = if p.count_include_pad { padded_count } else { inputs.len() };
                f(((n * g.out_h + oy) * g.out_w + ox) * g.c, &inputs, count);
            }
        }
    }
}

/// f32 average pooling.
pub fn avg_pool2d_f32(x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    let g = geometry("avg_pool2d_f32", x.shape(), p)?;
    let mut y = vec![0.0f32; g.batch * g.out_h * g.out_w * g.c];
    let xd = x.data();
    for_each_window(&g, p, |out, inputs, count| {
        let o = &mut y[out..out + g.c];
        for &i in inputs {
            for (v, &xv) in o.iter_mut().zip(&xd[i..i + g.c]) {
                *v += xv;
            }
        }
        let inv = if count == 0 { 0.0 } else { count as f32 };
        for v in o.iter_mut() {
            *v = if inv == 0.0 { 0.0 } else { *v / inv };
        }
    });
    Tensor::new(vec![g.batch, g.out_h, g.out_w, g.c], y)
}

/// f32 global average pooling: `[N, H, W, C]` -> `[N, 1, 1, C]`.
pub fn global_avg_pool_f32(x: &Tensor) -> Result<Tensor> {
    let &[n, h, w, c] = x.shape() else {
        return Err(Error::shape("global_avg_pool_f32", format!("expected NHWC rank 4, got {:?}", x.shape())));
    };
    let mut y = vec![0.0f32; n * c];
    let hw = h * w;
    for b in 0..n {
        let o = &mut y[b * c..(b + 1) * c];
        for px in x.data()[b * hw * c..(b + 1) * hw * c].chunks_exact(c.max(1)) {
            for (v, &xv) in o.iter_mut().zip(px) {
                *v += xv;
            }
        }
        for v in o.iter_mut() {
            *v /= hw.max(1) as f32;
        }
    }
    Tensor::new(vec![n, 1, 1, c], y)
}

/// Backward of [`avg_pool2d_f32`], accumulating: each output gradient is spread evenly over
/// its window's input pixels, `dx[i] += dy[o] / count`.
pub fn avg_pool2d_backward_f32(x_shape: &[usize], p: &Pool2dParams, dy: &[f32], dx: &mut [f32]) -> Result<()> {
    const OP: &str = "avg_pool2d_backward_f32";
    let g = geometry(OP, x_shape, p)?;
    if dy.len() != g.batch * g.out_h * g.out_w * g.c || dx.len() != g.batch * g.in_h * g.in_w * g.c {
        return Err(Error::shape(OP, format!("dy {} / dx {} do not fit input {x_shape:?}", dy.len(), dx.len())));
    }
    for_each_window(&g, p, |out, inputs, count| {
        if count == 0 {
            return;
        }
        for &i in inputs {
            for (gx, &d) in dx[i..i + g.c].iter_mut().zip(&dy[out..out + g.c]) {
                *gx += d / count as f32;
            }
        }
    });
    Ok(())
}

/// Backward of [`global_avg_pool_f32`], accumulating: `dx[n, h, w, c] += dy[n, c] / (H * W)`.
pub fn global_avg_pool_backward_f32(x_shape: &[usize], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    const OP: &str = "global_avg_pool_backward_f32";
    let &[n, h, w, c] = x_shape else {
        return Err(Error::shape(OP, format!("expected NHWC rank 4, got {x_shape:?}")));
    };
    if dy.len() != n * c || dx.len() != n * h * w * c {
        return Err(Error::shape(OP, format!("dy {} / dx {} do not fit input {x_shape:?}", dy.len(), dx.len())));
    }
    let inv = 1.0 / (h * w).max(1) as f32;
    for (dxb, dyb) in dx.chunks_exact_mut((h * w * c).max(1)).zip(dy.chunks_exact(c.max(1))) {
        for px in dxb.chunks_exact_mut(c.max(1)) {
            px.iter_mut().zip(dyb).for_each(|(g, &d)| *g += d * inv);
        }
    }
    Ok(())
}

/// Requant multipliers for every possible window count `0..=max_count`.
fn count_multipliers(op: &'static str, sx: f32, out: &OutputQuant, max_count: usize) -> Result<Vec<f32>> {
    (0..=max_count)
        .map(|count| {
            if count == 0 {
                return Ok(0.0);
            }
            let m = (sx as f64 / (out.scale as f64 * count as f64)) as f32;
            if m.is_finite() && m > 0.0 {
                Ok(m)
            } else {
                Err(Error::invalid(
                    op,
                    format!("pool multiplier {sx} / ({} * {count}) is not a positive finite f32", out.scale),
                ))
            }
        })
        .collect()
}

/// int8 average pooling (x per-tensor).
pub fn avg_pool2d_i8(x: &QTensor, p: &Pool2dParams, out: &OutputQuant) -> Result<QTensor> {
    const OP: &str = "avg_pool2d_i8";
    let (sx, zx) = x.params().per_tensor_pair(OP)?;
    let mult = count_multipliers(OP, sx, out, p.kernel[0] * p.kernel[1])?;
    let (lo, hi) = out.bounds();
    window_sums_i8(OP, x, p, out, zx, |a, count| requantize(a, mult[count], out.zero_point, lo, hi) as i8)
}

/// int8 average pooling in TFLite's arithmetic (imported TFLite files): input and output on
/// one grid, `y = round_half_away(sum x / count)` on the file's own integers (`offset`: 128
/// for a uint8 file; see `quant::tflite::avg_round`), clamped to the fused activation.
pub fn avg_pool2d_i8_tflite(x: &QTensor, p: &Pool2dParams, out: &OutputQuant, offset: i32) -> Result<QTensor> {
    const OP: &str = "avg_pool2d_i8_tflite";
    let (sx, zx) = x.params().per_tensor_pair(OP)?;
    if sx != out.scale || zx != out.zero_point || p.count_include_pad {
        return Err(Error::unsupported(format!(
            "{OP}: TFLite's average pool keeps its input's grid ({sx}, {zx}), not ({}, {})",
            out.scale, out.zero_point
        )));
    }
    let (lo, hi) = out.bounds();
    window_sums_i8(OP, x, p, out, 0, |a, count| crate::quant::tflite::avg_round(a, count, offset).clamp(lo, hi) as i8)
}

/// Per window and channel, `sum (x - shift)` over the taps inside the input, turned into the
/// output value by `finish(sum, count)`; the output on `out`'s grid.
fn window_sums_i8(
    op: &'static str,
    x: &QTensor,
    p: &Pool2dParams,
    out: &OutputQuant,
    shift: i32,
    finish: impl Fn(i32, usize) -> i8,
) -> Result<QTensor> {
    let g = geometry(op, x.shape(), p)?;
    let xd = x.i8_data(op)?;
    let mut y = vec![0i8; g.batch * g.out_h * g.out_w * g.c];
    let mut acc = vec![0i32; g.c];
    for_each_window(&g, p, |o, inputs, count| {
        acc.iter_mut().for_each(|a| *a = 0);
        for &i in inputs {
            for (a, &xv) in acc.iter_mut().zip(&xd[i..i + g.c]) {
                *a += xv as i32 - shift;
            }
        }
        for (yv, &a) in y[o..o + g.c].iter_mut().zip(&acc) {
            *yv = finish(a, count);
        }
    });
    QTensor::from_i8(vec![g.batch, g.out_h, g.out_w, g.c], y, QParams::per_tensor(out.scale, out.zero_point)?)
}

/// int8 global average pooling: `[N, H, W, C]` -> `[N, 1, 1, C]`.
pub fn global_avg_pool_i8(x: &QTensor, out: &OutputQuant) -> Result<QTensor> {
    const OP: &str = "global_avg_pool_i8";
    let &[n, h, w, c] = x.shape() else {
        return Err(Error::shape(OP, format!("expected NHWC rank 4, got {:?}", x.shape())));
    };
    let (sx, zx) = x.params().per_tensor_pair(OP)?;
    let hw = h * w;
    super::gemm::check_int8_reduction(OP, hw)?;
    let m = *count_multipliers(OP, sx, out, hw)?.last().unwrap_or(&0.0);
    let (lo, hi) = out.bounds();
    let xd = x.i8_data(OP)?;
    let mut y = Vec::with_capacity(n * c);
    for b in 0..n {
        let mut acc = vec![0i32; c];
        for px in xd[b * hw * c..(b + 1) * hw * c].chunks_exact(c.max(1)) {
            for (a, &xv) in acc.iter_mut().zip(px) {
                *a += xv as i32 - zx;
            }
        }
        y.extend(acc.iter().map(|&a| requantize(a, m, out.zero_point, lo, hi) as i8));
    }
    QTensor::from_i8(vec![n, 1, 1, c], y, QParams::per_tensor(out.scale, out.zero_point)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_ignores_padding_and_int8_matches_f32() {
        // 1x3x3x1, 2x2 window, stride 2, pad 1 on every side, with negative values: a
        // padded zero must never win.
        let x = Tensor::new(vec![1, 3, 3, 1], vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0]).unwrap();
        let p = Pool2dParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: Padding::Explicit { top: 1, left: 1, bottom: 1, right: 1 },
            count_include_pad: false,
            ceil_mode: false,
        };
        let y = max_pool2d_f32(&x, &p).unwrap();
        assert_eq!(y.shape(), &[1, 2, 2, 1]);
        assert_eq!(y.data(), &[-1.0, -2.0, -4.0, -5.0]);
        let q = crate::ops::quantize::quantize_i8(&x, &QParams::per_tensor(0.05, 60).unwrap()).unwrap();
        let out = OutputQuant::new(0.1, 10, crate::quant::Activation::None).unwrap();
        let yq = max_pool2d_i8(&q, &p, &out).unwrap();
        let back = crate::ops::quantize::dequantize_tensor(&yq).unwrap();
        for (a, b) in back.data().iter().zip(y.data()) {
            assert!((a - b).abs() <= 0.05 + 1e-6, "{a} vs {b}");
        }
        // Same grid: the integers are the input's own.
        let same = OutputQuant::new(0.05, 60, crate::quant::Activation::None).unwrap();
        let ys = max_pool2d_i8(&q, &p, &same).unwrap();
        assert_eq!(ys.i8_data("t").unwrap()[0], q.i8_data("t").unwrap()[0]);
    }
    use crate::quant::Activation;

    #[test]
    fn pool_gradients_match_finite_differences() {
        use crate::ops::gradcheck::{check, values};
        let shape = [2usize, 5, 4, 3];
        let x = values(120, 1);
        let t = |v: &[f32]| Tensor::new(shape.to_vec(), v.to_vec()).unwrap();
        let dy = values(6, 2);
        let mut dx = vec![0.0; 120];
        global_avg_pool_backward_f32(&shape, &dy, &mut dx).unwrap();
        check("global pool", &|v| global_avg_pool_f32(&t(v)).unwrap().into_data(), &x, &dy, &dx, 1e-3);
        for include in [false, true] {
            let p = Pool2dParams {
                kernel: [3, 2],
                stride: [2, 1],
                padding: Padding::Explicit { top: 1, left: 0, bottom: 1, right: 1 },
                count_include_pad: include,
                ceil_mode: false,
            };
            let y = avg_pool2d_f32(&t(&x), &p).unwrap();
            let dy = values(y.len(), 3);
            let mut dx = vec![0.0; 120];
            avg_pool2d_backward_f32(&shape, &p, &dy, &mut dx).unwrap();
            check("avg pool", &|v| avg_pool2d_f32(&t(v), &p).unwrap().into_data(), &x, &dy, &dx, 1e-3);
        }
    }

    #[test]
    fn avg_pool_excludes_padding_by_default() {
        let x = Tensor::new(vec![1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let p = Pool2dParams {
            kernel: [2, 2],
            stride: [1, 1],
            padding: Padding::Explicit { top: 1, left: 1, bottom: 0, right: 0 },
            count_include_pad: false,
            ceil_mode: false,
        };
        let y = avg_pool2d_f32(&x, &p).unwrap();
        assert_eq!(y.data(), &[1.0, 1.5, 2.0, 2.5]);
        let y = avg_pool2d_f32(&x, &Pool2dParams { count_include_pad: true, ..p }).unwrap();
        assert_eq!(y.data(), &[0.25, 0.75, 1.0, 2.5]);
    }

    #[test]
    fn int8_global_pool_matches_f32_within_half_step() {
        let vals: Vec<i8> = (0..2 * 3 * 3 * 4).map(|i| ((i * 29) % 256) as u8 as i8).collect();
        let x = QTensor::from_i8(vec![2, 3, 3, 4], vals.clone(), QParams::per_tensor(0.1, 3).unwrap()).unwrap();
        let out = OutputQuant::new(0.07, -5, Activation::None).unwrap();
        let y = global_avg_pool_i8(&x, &out).unwrap();
        let xf = Tensor::new(vec![2, 3, 3, 4], vals.iter().map(|&v| (v as i32 - 3) as f32 * 0.1).collect()).unwrap();
        let yf = global_avg_pool_f32(&xf).unwrap();
        for (&q, &f) in y.i8_data("t").unwrap().iter().zip(yf.data()) {
            let deq = (q as i32 + 5) as f32 * 0.07;
            assert!((deq - f).abs() <= 0.07 * 0.5 + 1e-5, "{deq} vs {f}");
        }
    }
}
