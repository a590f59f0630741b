//! 2-D convolution, f32 and int8: one op for regular, grouped, depthwise and pointwise
//! convolution, with a fast path for the last two.
//!
//! Layouts: input `[N, H, W, Cin]` (NHWC), weights `[Cout, KH, KW, Cin / groups]` (OHWI),
//! bias `[Cout]`, output `[N, OH, OW, Cout]`. With `g = oc / (Cout / groups)`:
//! ```text
//! y[n, oy, ox, oc] = bias[oc] + sum_{ky, kx, ci} x[n, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw, g*Cin_g + ci]
//!                                                * w[oc, ky, kx, ci]
//! ```
//! Taps that fall in the padding contribute nothing (in int8: a padded value equals the
//! input zero point, so `x - zx = 0`). Output size and padding: see [`Padding`].
//!
//! int8: `acc = bias[oc] + sum (x - zx) * (w - zw[oc])` in i32, then
//! `y = requantize(acc, s_x * s_w[oc] / s_y)` (see [`crate::quant::requant`]).
//! The f32 sum starts at 0, runs over taps in (ky, kx, ci) order and adds the bias last, in
//! every path, so fast paths give the same bits as the general loop.

use super::activation::apply_activation;
use super::conv_shape::{check_bias, weight_zero_points, Mac};
pub use super::conv_shape::{Conv2dParams, ConvGeometry};
use super::depthwise::{depthwise_f32, depthwise_i8_acc, depthwise_i8_requant, DepthwiseI8Weights};
use super::gemm::{
    check_int8_reduction, check_int8_zero_points, gemm_i8_acc, gemm_i8_acc_packed, gemm_i8_requant_packed, matmul_f32,
    matmul_f32_packed, requantize_channels_last, BLayout, PackedB, PackedF32B,
};
use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::quant::{Activation, OutputQuant, Requant};

/// General direct convolution (any groups, stride, dilation, padding).
fn conv_general<T: Mac>(x: &[T], w: &[T], bias: Option<&[T::Acc]>, g: &ConvGeometry) -> Vec<T::Acc> {
    let [kh, kw] = g.kernel;
    let cig = g.in_c_group;
    let mut y = vec![T::Acc::default(); g.batch * g.out_h * g.out_w * g.out_c];
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw); // (input pixel offset, weight tap offset)
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                taps.clear();
                g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * cig)));
                let out = ((n * g.out_h + oy) * g.out_w + ox) * g.out_c;
                for oc in 0..g.out_c {
                    let ci0 = (oc / g.out_c_group) * cig;
                    let wo = oc * kh * kw * cig;
                    let mut acc = T::Acc::default();
                    for &(xo, wt) in &taps {
                        let xs = &x[xo + ci0..xo + ci0 + cig];
                        let ws = &w[wo + wt..wo + wt + cig];
                        for (&a, &b) in xs.iter().zip(ws) {
                            acc = T::mac(acc, a, b);
                        }
                    }
                    if let Some(b) = bias {
                        acc = T::add(acc, b[oc]);
                    }
                    y[out + oc] = acc;
                }
            }
        }
    }
    y
}

/// f32 convolution (NHWC input, OHWI weights).
pub fn conv2d_f32(x: &Tensor, w: &Tensor, bias: Option<&[f32]>, p: &Conv2dParams) -> Result<Tensor> {
    conv2d_f32_prepared(x, w, None, bias, p, Activation::None)
}

/// The weights of a one-group f32 convolution as the GEMM's packed `[KH*KW*Cin, Cout]`
/// operand (the prepare step); `None` for grouped convolutions, which need no packing.
pub fn prepare_conv_weights_f32(w: &Tensor, p: &Conv2dParams) -> Result<Option<PackedF32B>> {
    let [out_c, kh, kw, in_c] = w.shape() else {
        return Err(Error::shape("conv2d_f32", format!("weights must be OHWI of rank 4, got {:?}", w.shape())));
    };
    if p.groups != 1 {
        return Ok(None);
    }
    PackedF32B::new(w.data(), kh * kw * in_c, *out_c, BLayout::NK).map(Some)
}

/// [`conv2d_f32`] then `act`, with the weights also packed once by
/// [`prepare_conv_weights_f32`] (`packed` must come from `w`); the same bits either way. The
/// GEMM and depthwise kernels apply `act` as they store (one pass over the output, not two).
pub fn conv2d_f32_prepared(
    x: &Tensor,
    w: &Tensor,
    packed: Option<&PackedF32B>,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    act: Activation,
) -> Result<Tensor> {
    const OP: &str = "conv2d_f32";
    let g = ConvGeometry::new(OP, x.shape(), w.shape(), p)?;
    check_bias(OP, bias.map(<[f32]>::len), g.out_c)?;
    if let Some(packed) = packed {
        if packed.dims() != (g.reduction_len(), g.out_c) || g.groups != 1 {
            return Err(Error::invalid(OP, "packed weights do not belong to this convolution"));
        }
    }
    // A one-group convolution is a GEMM: pointwise on the input itself, otherwise on im2col
    // rows. Each sum runs over the taps in (ky, kx, ci) order from 0 like the direct loop
    // (padding taps add exact zeros), then the bias.
    let gemm = |a: &[f32], rows: usize| match packed {
        Some(b) => matmul_f32_packed(a, rows, b, bias, act),
        None => {
            matmul_f32_packed(a, rows, &PackedF32B::new(w.data(), g.reduction_len(), g.out_c, BLayout::NK)?, bias, act)
        }
    };
    let y = if g.is_pointwise() {
        gemm(x.data(), g.batch * g.in_h * g.in_w)?
    } else if g.groups == 1 {
        gemm(&im2col(x.data(), 0.0f32, &g)?, g.batch * g.out_h * g.out_w)?
    } else if g.is_depthwise() {
        depthwise_f32(x.data(), w.data(), bias, act, &g)
    } else {
        let mut y = conv_general(x.data(), w.data(), bias, &g);
        apply_activation(&mut y, act);
        y
    };
    Tensor::new(g.out_shape().to_vec(), y)
}

/// int8 convolution accumulators (before requantization): `[N, OH, OW, Cout]` i32.
/// `x` must be per-tensor quantized; `w` per-tensor or per output channel.
pub fn conv2d_i8_acc(
    x: &QTensor,
    w: &QTensor,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
) -> Result<(ConvGeometry, Vec<i32>)> {
    conv2d_i8_acc_prepared(x, w, None, bias, p)
}

/// The weights of an int8 convolution laid out once for the kernel that runs it (the
/// prepare step; a frame never re-lays weights): the GEMM's packed `[Cout, KH*KW*Cin]` for
/// one-group convolutions (pointwise or im2col), the centred taps-major depthwise weights.
#[derive(Clone, Debug)]
pub enum ConvWeightsI8 {
    Gemm(PackedB),
    Depthwise(DepthwiseI8Weights),
}

/// [`ConvWeightsI8`] of `w` for a convolution with `p`; `None` for grouped convolutions
/// other than depthwise, which take the general loop.
pub fn prepare_conv_weights(w: &QTensor, p: &Conv2dParams) -> Result<Option<ConvWeightsI8>> {
    const OP: &str = "conv2d_i8";
    let [out_c, kh, kw, in_c] = w.shape() else {
        return Err(Error::shape(OP, format!("weights must be OHWI of rank 4, got {:?}", w.shape())));
    };
    if p.groups == 1 {
        let zw = weight_zero_points(OP, w)?;
        return PackedB::new(w.i8_data(OP)?, &zw, *out_c, kh * kw * in_c).map(|b| Some(ConvWeightsI8::Gemm(b)));
    }
    if p.groups == *out_c && *in_c == 1 {
        return DepthwiseI8Weights::new(w).map(|d| Some(ConvWeightsI8::Depthwise(d)));
    }
    Ok(None)
}

/// The checked geometry and int8 data of a convolution: `(g, zx, zw, x, w)`.
type Int8ConvInputs<'a> = (ConvGeometry, i32, Vec<i32>, &'a [i8], &'a [i8]);

fn int8_conv_inputs<'a>(
    x: &'a QTensor,
    w: &'a QTensor,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
) -> Result<Int8ConvInputs<'a>> {
    const OP: &str = "conv2d_i8";
    let g = ConvGeometry::new(OP, x.shape(), w.shape(), p)?;
    check_bias(OP, bias.map(<[i32]>::len), g.out_c)?;
    check_int8_reduction(OP, g.reduction_len())?;
    let (_, zx) = x.params().per_tensor_pair(OP)?;
    let zw = weight_zero_points(OP, w)?;
    check_int8_zero_points(OP, &[zx])?;
    check_int8_zero_points(OP, &zw)?;
    Ok((g, zx, zw, x.i8_data(OP)?, w.i8_data(OP)?))
}

/// im2col for a one-group convolution: row r holds output pixel r's taps, K = KH*KW*Cin
/// values in the weights' (ky, kx, ci) order. Padding taps hold the input zero point, which
/// centres to 0: exactly what the direct loop, which skips them, computes.
/// `fill` is what a padding tap holds (the int8 zero point, or 0.0 for f32: adding `0 * w`
/// to a sum that starts at +0.0 never changes its bits when `w` is finite, and weights are
/// checked finite when a model loads).
fn im2col<T: Copy>(xd: &[T], fill: T, g: &ConvGeometry) -> Result<Vec<T>> {
    let k = g.reduction_len();
    let rows = g.batch * g.out_h * g.out_w;
    crate::base::tensor::numel("im2col", &[rows, k])?;
    let mut cols = vec![fill; rows * k];
    let [kh, kw] = g.kernel;
    // With dilation 1 a kernel row's taps are one contiguous run of `KW * C` input values:
    // an interior pixel copies KH runs instead of KH * KW single taps.
    let run = kw * g.in_c;
    let inside =
        |o: usize, s: usize, pad: usize, k: usize, len: usize| (o * s).checked_sub(pad).filter(|&i0| i0 + k <= len);
    let mut r = 0;
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            let iy0 = inside(oy, g.stride[0], g.pad_top, kh, g.in_h).filter(|_| g.dilation[0] == 1);
            for ox in 0..g.out_w {
                let row = &mut cols[r * k..(r + 1) * k];
                match (iy0, inside(ox, g.stride[1], g.pad_left, kw, g.in_w).filter(|_| g.dilation[1] == 1)) {
                    (Some(iy0), Some(ix0)) => {
                        for (ky, dst) in row.chunks_exact_mut(run.max(1)).enumerate() {
                            let at = ((n * g.in_h + iy0 + ky) * g.in_w + ix0) * g.in_c;
                            dst.copy_from_slice(&xd[at..at + run]);
                        }
                    }
                    _ => g.for_each_tap(n, oy, ox, |t, xo| {
                        row[t * g.in_c..(t + 1) * g.in_c].copy_from_slice(&xd[xo..xo + g.in_c]);
                    }),
                }
                r += 1;
            }
        }
    }
    Ok(cols)
}

/// int8 convolution to its int8 output: [`conv2d_i8_acc_prepared`], then
/// [`requantize_channels_last`] with `rq`, the same bits by faster routes: with prepared
/// weights a one-group convolution goes through [`gemm_i8_requant_packed`] (requantization
/// fused into the GEMM in wasm SIMD builds) and a depthwise one through
/// [`depthwise_i8_requant`] (fused per output pixel in wasm SIMD builds).
pub fn conv2d_i8_requant(
    x: &QTensor,
    w: &QTensor,
    prepared: Option<&ConvWeightsI8>,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
    rq: &Requant,
) -> Result<(ConvGeometry, Vec<i8>)> {
    // Checked once for both fast routes; the general route below checks for itself.
    let (g, zx, _, xd, _) = int8_conv_inputs(x, w, bias, p)?;
    match prepared {
        Some(ConvWeightsI8::Depthwise(dw)) => {
            let y = depthwise_i8_requant(xd, zx, dw, bias, &g, rq)?;
            return Ok((g, y));
        }
        Some(ConvWeightsI8::Gemm(b)) if g.groups == 1 => {
            check_packed(b, &g, w)?;
            let y = if g.is_pointwise() {
                gemm_i8_requant_packed(xd, zx, b, bias, rq, g.batch * g.in_h * g.in_w)?
            } else {
                gemm_i8_requant_packed(&im2col(xd, zx as i8, &g)?, zx, b, bias, rq, g.batch * g.out_h * g.out_w)?
            };
            return Ok((g, y));
        }
        _ => {}
    }
    let (g, acc) = conv2d_i8_acc_prepared(x, w, prepared, bias, p)?;
    let y = requantize_channels_last(&acc, g.out_c, rq)?;
    Ok((g, y))
}

fn check_packed(b: &PackedB, g: &ConvGeometry, w: &QTensor) -> Result<()> {
    match b.dims() == (g.out_c, g.reduction_len()) {
        true => Ok(()),
        false => Err(Error::shape("conv2d_i8", format!("packed weights {:?} do not match {:?}", b.dims(), w.shape()))),
    }
}

/// Weights `[Cout, K]` minus their zero points (per tensor or per output channel), as i16.
fn centred_weights(wd: &[i8], zw: &[i32], per_oc: usize) -> Vec<i16> {
    wd.chunks_exact(per_oc.max(1))
        .enumerate()
        .flat_map(|(oc, row)| {
            let z = if zw.len() == 1 { zw[0] } else { zw[oc] };
            row.iter().map(move |&v| (v as i32 - z) as i16)
        })
        .collect()
}

/// [`conv2d_i8_acc`] with the weights prepared beforehand ([`prepare_conv_weights`] of the
/// same `w`); `None` prepares them for this call.
pub fn conv2d_i8_acc_prepared(
    x: &QTensor,
    w: &QTensor,
    prepared: Option<&ConvWeightsI8>,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
) -> Result<(ConvGeometry, Vec<i32>)> {
    let (g, zx, zw, xd, wd) = int8_conv_inputs(x, w, bias, p)?;
    let gemm = |a: &[i8], rows: usize| -> Result<Vec<i32>> {
        match prepared {
            Some(ConvWeightsI8::Gemm(b)) => {
                check_packed(b, &g, w).and_then(|_| gemm_i8_acc_packed(a, zx, b, bias, rows))
            }
            _ => gemm_i8_acc(a, zx, wd, &zw, bias, rows, g.reduction_len(), g.out_c),
        }
    };
    if g.is_pointwise() {
        return Ok((g, gemm(xd, g.batch * g.in_h * g.in_w)?));
    }
    if g.groups == 1 {
        let cols = im2col(xd, zx as i8, &g)?;
        return Ok((g, gemm(&cols, g.batch * g.out_h * g.out_w)?));
    }
    if g.is_depthwise() {
        let acc = match prepared {
            Some(ConvWeightsI8::Depthwise(dw)) => depthwise_i8_acc(xd, zx, dw, bias, &g)?,
            _ => depthwise_i8_acc(xd, zx, &DepthwiseI8Weights::new(w)?, bias, &g)?,
        };
        return Ok((g, acc));
    }
    // Centre once: (x - zx) and (w - zw[oc]) as i16 (both in [-255, 255]), then exact MACs.
    let wc = centred_weights(wd, &zw, g.reduction_len());
    let xc: Vec<i16> = xd.iter().map(|&v| (v as i32 - zx) as i16).collect();
    Ok((g, conv_general(&xc, &wc, bias, &g)))
}

/// int8 convolution with fused bias, requantization and activation.
/// `x` per-tensor int8, `w` int8 per output channel, `bias` i32 with scale `s_x * s_w[oc]`.
pub fn conv2d_i8(
    x: &QTensor,
    w: &QTensor,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
    out: &OutputQuant,
) -> Result<QTensor> {
    const OP: &str = "conv2d_i8";
    let (sx, _) = x.params().per_tensor_pair(OP)?;
    let rq = Requant::new(OP, sx, w.params().scales(), out)?;
    let (g, acc) = conv2d_i8_acc(x, w, bias, p)?;
    let y = requantize_channels_last(&acc, g.out_c, &rq)?;
    QTensor::from_i8(g.out_shape().to_vec(), y, crate::quant::QParams::per_tensor(out.scale, out.zero_point)?)
}

/// f32 convolution backward, accumulating into the gradients:
/// ```text
/// db[oc]              += sum_{n, oy, ox} dy[n, oy, ox, oc]
/// dw[oc, ky, kx, ci]  += sum_{n, oy, ox} dy[n, oy, ox, oc] * x[n, iy, ix, g*Cin_g + ci]
/// dx[n, iy, ix, g*Cin_g + ci] += sum_{oc in group g, taps reaching (iy, ix)} dy[n, oy, ox, oc] * w[oc, ky, kx, ci]
/// ```
/// with `iy = oy*sh - pt + ky*dh` (taps in the padding contribute nothing). Pointwise
/// convolutions use the matrix-product form, depthwise ones run channels innermost.
/// `dx` and `db` are skipped when `None`.
pub fn conv2d_backward_f32(
    x: &Tensor,
    w: &Tensor,
    dy: &[f32],
    p: &Conv2dParams,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_f32";
    let g = ConvGeometry::new(OP, x.shape(), w.shape(), p)?;
    let out_len = g.batch * g.out_h * g.out_w * g.out_c;
    let lens = [(dy.len(), out_len, "dy"), (dw.len(), w.len(), "dw")];
    let opt = [(dx.as_ref().map(|d| d.len()), x.len(), "dx"), (db.as_ref().map(|d| d.len()), g.out_c, "db")];
    for (got, want, what) in lens.into_iter().chain(opt.into_iter().filter_map(|(l, w, n)| l.map(|l| (l, w, n)))) {
        if got != want {
            return Err(Error::shape(OP, format!("{what} has {got} values, expected {want}")));
        }
    }
    if let Some(db) = db {
        for row in dy.chunks_exact(g.out_c.max(1)) {
            db.iter_mut().zip(row).for_each(|(a, &d)| *a += d);
        }
    }
    let (xd, wd) = (x.data(), w.data());
    if g.is_pointwise() {
        let rows = g.batch * g.in_h * g.in_w;
        if let Some(dx) = dx {
            let t = matmul_f32(dy, wd, rows, g.out_c, g.in_c, BLayout::KN)?;
            dx.iter_mut().zip(t).for_each(|(a, b)| *a += b);
        }
        for (xr, dyr) in xd.chunks_exact(g.in_c.max(1)).zip(dy.chunks_exact(g.out_c.max(1))) {
            for (oc, &d) in dyr.iter().enumerate() {
                if d != 0.0 {
                    dw[oc * g.in_c..(oc + 1) * g.in_c].iter_mut().zip(xr).for_each(|(a, &xv)| *a += d * xv);
                }
            }
        }
        return Ok(());
    }
    let [kh, kw] = g.kernel;
    let mut dx = dx;
    if g.is_depthwise() {
        let c = g.in_c;
        // Weights and their gradient as [KH, KW, C]: every tap reads contiguous channels.
        let mut wt = vec![0f32; wd.len()];
        let mut dwt = vec![0f32; wd.len()];
        for ch in 0..c {
            for t in 0..kh * kw {
                wt[t * c + ch] = wd[ch * kh * kw + t];
            }
        }
        for n in 0..g.batch {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let d = &dy[((n * g.out_h + oy) * g.out_w + ox) * c..][..c];
                    g.for_each_tap(n, oy, ox, |t, xo| {
                        let (xs, gw) = (&xd[xo..xo + c], &mut dwt[t * c..(t + 1) * c]);
                        gw.iter_mut().zip(xs).zip(d).for_each(|((a, &xv), &dv)| *a += dv * xv);
                        if let Some(dx) = dx.as_deref_mut() {
                            let ws = &wt[t * c..(t + 1) * c];
                            dx[xo..xo + c].iter_mut().zip(ws).zip(d).for_each(|((a, &wv), &dv)| *a += dv * wv);
                        }
                    });
                }
            }
        }
        for ch in 0..c {
            for t in 0..kh * kw {
                dw[ch * kh * kw + t] += dwt[t * c + ch];
            }
        }
        return Ok(());
    }
    let cig = g.in_c_group;
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw);
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                taps.clear();
                g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * cig)));
                let out = ((n * g.out_h + oy) * g.out_w + ox) * g.out_c;
                for oc in 0..g.out_c {
                    let d = dy[out + oc];
                    if d == 0.0 {
                        continue;
                    }
                    let ci0 = (oc / g.out_c_group) * cig;
                    let wo = oc * kh * kw * cig;
                    for &(xo, wt) in &taps {
                        let xs = &xd[xo + ci0..xo + ci0 + cig];
                        dw[wo + wt..wo + wt + cig].iter_mut().zip(xs).for_each(|(a, &xv)| *a += d * xv);
                        if let Some(dx) = dx.as_deref_mut() {
                            let ws = &wd[wo + wt..wo + wt + cig];
                            dx[xo + ci0..xo + ci0 + cig].iter_mut().zip(ws).for_each(|(a, &wv)| *a += d * wv);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Padding;
    use crate::quant::QParams;

    #[test]
    fn conv_gradients_match_finite_differences() {
        use crate::ops::gradcheck::{check, values};
        // (input NHWC, weights OHWI, params): regular strided "same", grouped dilated,
        // depthwise 3x3 stride 2, pointwise.
        let same = Padding::SameUpper;
        let cases = [
            ([2, 5, 4, 3], [4, 3, 3, 3], Conv2dParams { stride: [2, 1], padding: same, ..Default::default() }),
            ([1, 6, 5, 4], [6, 2, 2, 2], Conv2dParams { groups: 2, dilation: [2, 1], ..Default::default() }),
            (
                [1, 5, 5, 3],
                [3, 3, 3, 1],
                Conv2dParams { groups: 3, stride: [2, 2], padding: same, ..Default::default() },
            ),
            ([2, 3, 3, 4], [5, 1, 1, 4], Conv2dParams::default()),
        ];
        for (ci, (xs, ws, p)) in cases.into_iter().enumerate() {
            let x = t(&xs, |i| values(i + 1, ci as u64 * 7 + 1)[i]);
            let w = t(&ws, |i| values(i + 1, ci as u64 * 7 + 2)[i]);
            let b = values(ws[0], ci as u64 * 7 + 3);
            let y = conv2d_f32(&x, &w, Some(&b), &p).unwrap();
            let dy = values(y.len(), ci as u64 * 7 + 4);
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
            conv2d_backward_f32(&x, &w, &dy, &p, Some(&mut dx), &mut dw, Some(&mut db)).unwrap();
            let fx = |v: &[f32]| conv2d_f32(&t(&xs, |i| v[i]), &w, Some(&b), &p).unwrap().into_data();
            let fw = |v: &[f32]| conv2d_f32(&x, &t(&ws, |i| v[i]), Some(&b), &p).unwrap().into_data();
            let fb = |v: &[f32]| conv2d_f32(&x, &w, Some(v), &p).unwrap().into_data();
            check(&format!("conv case {ci} dx"), &fx, x.data(), &dy, &dx, 1e-3);
            check(&format!("conv case {ci} dw"), &fw, w.data(), &dy, &dw, 1e-3);
            check(&format!("conv case {ci} db"), &fb, &b, &dy, &db, 1e-3);
        }
    }

    fn t(shape: &[usize], f: impl Fn(usize) -> f32) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(f).collect()).unwrap()
    }

    #[test]
    fn conv_f32_3x3_same_padding_by_hand() {
        // 1x3x3x1 input 1..9, 3x3 kernel of ones, SAME: centre = 45, corner = 1+2+4+5 = 12.
        let x = t(&[1, 3, 3, 1], |i| (i + 1) as f32);
        let w = t(&[1, 3, 3, 1], |_| 1.0);
        let p = Conv2dParams { padding: Padding::SameUpper, ..Default::default() };
        let y = conv2d_f32(&x, &w, Some(&[0.5]), &p).unwrap();
        assert_eq!(y.shape(), &[1, 3, 3, 1]);
        assert_eq!(y.data()[4], 45.5);
        assert_eq!(y.data()[0], 12.5);
    }

    #[test]
    fn fast_paths_equal_general_loop_f32() {
        let x = t(&[2, 5, 4, 6], |i| ((i * 37 % 11) as f32 - 5.0) * 0.37);
        // pointwise
        let w = t(&[3, 1, 1, 6], |i| ((i * 13 % 7) as f32 - 3.0) * 0.21);
        let p = Conv2dParams::default();
        let g = ConvGeometry::new("t", x.shape(), w.shape(), &p).unwrap();
        assert!(g.is_pointwise());
        let fast = conv2d_f32(&x, &w, Some(&[0.1, 0.2, 0.3]), &p).unwrap();
        let slow = conv_general(x.data(), w.data(), Some(&[0.1, 0.2, 0.3]), &g);
        assert_eq!(fast.data(), &slow[..]);
        // depthwise 3x3 stride 2 same
        let w = t(&[6, 3, 3, 1], |i| ((i * 17 % 9) as f32 - 4.0) * 0.11);
        let p = Conv2dParams { stride: [2, 2], padding: Padding::SameUpper, groups: 6, ..Default::default() };
        let g = ConvGeometry::new("t", x.shape(), w.shape(), &p).unwrap();
        assert!(g.is_depthwise());
        let fast = conv2d_f32(&x, &w, None, &p).unwrap();
        let slow = conv_general(x.data(), w.data(), None, &g);
        assert_eq!(fast.data(), &slow[..]);
        // Channel counts past the SIMD widths (16-channel blocks and a tail), padding on every
        // side, bias; compared bit for bit (signed zeros included).
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let x = t(&[1, 7, 6, 35], |i| ((i * 37 % 29) as f32 - 14.0) * 0.173);
        let b: Vec<f32> = (0..35).map(|i| i as f32 * 0.01 - 0.2).collect();
        for (ws, groups, stride) in
            [([35, 3, 3, 1], 35, 1), ([35, 5, 5, 1], 35, 2), ([13, 1, 1, 35], 1, 1), ([9, 3, 3, 35], 1, 2)]
        {
            let w = t(&ws, |i| ((i * 17 % 23) as f32 - 11.0) * 0.071);
            let p = Conv2dParams { stride: [stride; 2], padding: Padding::SameUpper, groups, ..Default::default() };
            let g = ConvGeometry::new("t", x.shape(), w.shape(), &p).unwrap();
            let fast = conv2d_f32(&x, &w, Some(&b[..ws[0]]), &p).unwrap();
            let slow = conv_general(x.data(), w.data(), Some(&b[..ws[0]]), &g);
            assert_eq!(bits(fast.data()), bits(&slow), "weights {ws:?}");
        }
    }

    #[test]
    fn shape_errors_name_op_and_shapes() {
        let x = Tensor::zeros(vec![1, 7, 7, 3]).unwrap();
        let w = Tensor::zeros(vec![8, 3, 3, 4]).unwrap();
        let e = conv2d_f32(&x, &w, None, &Conv2dParams::default()).unwrap_err().to_string();
        assert!(e.contains("conv2d_f32") && e.contains("[1, 7, 7, 3]") && e.contains("[8, 3, 3, 4]"), "{e}");
    }

    /// Every int8 fast path (pointwise GEMM, im2col GEMM, depthwise; in wasm builds the SIMD
    /// kernels) against the general loop on the same centred values: strides, dilation,
    /// padding on every side, channel counts off the SIMD widths, zero points, bias.
    #[test]
    fn int8_fast_paths_equal_general_loop() {
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let cases: &[([usize; 4], [usize; 4], Conv2dParams)] = &[
            ([1, 5, 7, 6], [5, 1, 1, 6], Conv2dParams::default()),
            (
                [2, 6, 5, 3],
                [9, 3, 3, 3],
                Conv2dParams { stride: [2, 2], padding: Padding::SameUpper, ..Default::default() },
            ),
            (
                [1, 9, 8, 19],
                [19, 3, 3, 1],
                Conv2dParams { padding: Padding::SameUpper, groups: 19, ..Default::default() },
            ),
            (
                [1, 9, 8, 24],
                [24, 3, 3, 1],
                Conv2dParams { stride: [2, 2], padding: Padding::SameUpper, groups: 24, ..Default::default() },
            ),
            (
                [2, 11, 10, 16],
                [16, 5, 5, 1],
                Conv2dParams { stride: [2, 1], padding: Padding::SameUpper, groups: 16, ..Default::default() },
            ),
            (
                [1, 8, 9, 8],
                [8, 3, 3, 1],
                Conv2dParams {
                    dilation: [2, 2],
                    padding: Padding::Explicit { top: 1, left: 2, bottom: 3, right: 0 },
                    groups: 8,
                    ..Default::default()
                },
            ),
            (
                [1, 3, 3, 32],
                [32, 5, 5, 1],
                Conv2dParams { padding: Padding::SameUpper, groups: 32, ..Default::default() },
            ),
        ];
        for (xs, ws, p) in cases {
            let nx: usize = xs.iter().product();
            let nw: usize = ws.iter().product();
            let zx = (next() % 200) as i32 - 100;
            let x = QTensor::from_i8(
                xs.to_vec(),
                (0..nx).map(|_| next() as i8).collect(),
                QParams::per_tensor(0.1, zx).unwrap(),
            )
            .unwrap();
            let zw: Vec<i32> = (0..ws[0]).map(|_| (next() % 5) as i32 - 2).collect();
            let w = QTensor::from_i8(
                ws.to_vec(),
                (0..nw).map(|_| (next() as i8).max(-127)).collect(),
                QParams::per_axis(0, (0..ws[0]).map(|j| 0.004 + 0.001 * j as f32).collect(), zw.clone()).unwrap(),
            )
            .unwrap();
            let bias: Vec<i32> = (0..ws[0]).map(|_| (next() % 2001) as i32 - 1000).collect();
            let (g, fast) = conv2d_i8_acc(&x, &w, Some(&bias), p).unwrap();
            let xc: Vec<i16> = x.i8_data("t").unwrap().iter().map(|&v| (v as i32 - zx) as i16).collect();
            let per = nw / ws[0];
            let wc: Vec<i16> =
                w.i8_data("t").unwrap().iter().enumerate().map(|(i, &v)| (v as i32 - zw[i / per]) as i16).collect();
            let slow = conv_general(&xc, &wc, Some(&bias), &g);
            assert_eq!(fast, slow, "input {xs:?}, weights {ws:?}, {p:?}");
            // Requantizing as the pixels are computed (wasm depthwise) equals requantizing the sums.
            let rq = Requant::new(
                "t",
                0.1,
                w.params().scales(),
                &OutputQuant::new(0.37, 3, crate::quant::Activation::Relu6).unwrap(),
            )
            .unwrap();
            let (_, q) = conv2d_i8_requant(&x, &w, None, Some(&bias), p, &rq).unwrap();
            assert_eq!(q, requantize_channels_last(&slow, g.out_c, &rq).unwrap(), "requantized: {xs:?}, {ws:?}");
            // Weights packed once (as a prepared model holds them) give the same sums, and the
            // same int8 outputs with the requantization fused into the GEMM (wasm).
            if let Some(packed) = prepare_conv_weights(&w, p).unwrap() {
                let (_, again) = conv2d_i8_acc_prepared(&x, &w, Some(&packed), Some(&bias), p).unwrap();
                assert_eq!(again, slow, "packed: input {xs:?}, weights {ws:?}");
                let (_, q) = conv2d_i8_requant(&x, &w, Some(&packed), Some(&bias), p, &rq).unwrap();
                assert_eq!(q, requantize_channels_last(&slow, g.out_c, &rq).unwrap(), "packed, requantized: {xs:?}");
            }
        }
    }

    #[test]
    fn int8_conv_requantizes_per_channel() {
        let x = QTensor::from_i8(vec![1, 1, 1, 2], vec![10, -4], QParams::per_tensor(0.5, 2).unwrap()).unwrap();
        let w = QTensor::from_i8(
            vec![2, 1, 1, 2],
            vec![1, 2, -3, 1],
            QParams::per_axis(0, vec![0.1, 0.2], vec![0, 0]).unwrap(),
        )
        .unwrap();
        // centred x = [8, -6]; acc0 = 8 - 12 = -4 (+bias 4 = 0), acc1 = -24 - 6 = -30
        let out = OutputQuant::new(0.05, -1, crate::quant::Activation::None).unwrap();
        let y = conv2d_i8(&x, &w, Some(&[4, 0]), &Conv2dParams::default(), &out).unwrap();
        // y1 = round(-30 * 0.5*0.2/0.05) - 1 = -60 - 1 = -61
        assert_eq!(y.i8_data("t").unwrap(), &[-1, -61]);
    }

    /// The f32 depthwise kernel (interior taps from fixed offsets, blocks of 32, 16 and 8
    /// channels and a scalar tail, the activation per row) against the direct loop then the
    /// activation, bit for bit: 3x3 and 5x5 kernels, strides 1 and 2, dilation, padding on
    /// either side, channel counts on and off every block size, with and without bias; and
    /// one-group convolutions of the same geometries (im2col then the GEMM).
    #[test]
    fn depthwise_f32_has_the_bits_of_the_direct_loop() {
        let value = |i: usize, salt: u64| ((i as u64 * 2_654_435_761 + salt) % 1997) as f32 / 311.0 - 3.1;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let same = Padding::SameUpper;
        let cases = [
            ([1, 9, 11], [3, 3], Conv2dParams { padding: same, ..Default::default() }),
            ([2, 8, 7], [3, 3], Conv2dParams { stride: [2, 2], padding: same, ..Default::default() }),
            ([1, 12, 10], [5, 5], Conv2dParams { padding: same, ..Default::default() }),
            ([1, 13, 13], [5, 5], Conv2dParams { stride: [2, 2], padding: Padding::SameLower, ..Default::default() }),
            ([1, 10, 9], [3, 3], Conv2dParams { dilation: [2, 2], padding: same, ..Default::default() }),
            ([1, 6, 6], [3, 2], Conv2dParams::default()),
        ];
        for ([n, h, w], [kh, kw], p) in cases {
            for c in [1usize, 7, 8, 17, 24, 33, 40, 72] {
                let x = Tensor::new(vec![n, h, w, c], (0..n * h * w * c).map(|i| value(i, 1)).collect()).unwrap();
                let wt = Tensor::new(vec![c, kh, kw, 1], (0..c * kh * kw).map(|i| value(i, 2)).collect()).unwrap();
                let bias: Vec<f32> = (0..c).map(|i| value(i, 3)).collect();
                let p = Conv2dParams { groups: c, ..p };
                let g = ConvGeometry::new("test", x.shape(), wt.shape(), &p).unwrap();
                for (b, act) in [(None, Activation::None), (Some(&bias[..]), Activation::Relu6)] {
                    let mut want = conv_general(x.data(), wt.data(), b, &g);
                    apply_activation(&mut want, act);
                    let got = conv2d_f32_prepared(&x, &wt, None, b, &p, act).unwrap();
                    assert_eq!(bits(got.data()), bits(&want), "x {:?} w {:?} {p:?} {act:?}", x.shape(), wt.shape());
                }
                // The same geometries as one-group convolutions (im2col: interior pixels copy
                // whole kernel rows, border and dilated ones tap by tap, then the GEMM).
                if c <= 17 {
                    let oc = 5;
                    let w1 =
                        Tensor::new(vec![oc, kh, kw, c], (0..oc * kh * kw * c).map(|i| value(i, 4)).collect()).unwrap();
                    let p1 = Conv2dParams { groups: 1, ..p };
                    let g1 = ConvGeometry::new("test", x.shape(), w1.shape(), &p1).unwrap();
                    let b1: Vec<f32> = (0..oc).map(|i| value(i, 5)).collect();
                    let mut want = conv_general(x.data(), w1.data(), Some(&b1), &g1);
                    apply_activation(&mut want, Activation::Relu);
                    let got = conv2d_f32_prepared(&x, &w1, None, Some(&b1), &p1, Activation::Relu).unwrap();
                    assert_eq!(bits(got.data()), bits(&want), "one group: x {:?} w {:?} {p1:?}", x.shape(), w1.shape());
                }
            }
        }
    }
}
