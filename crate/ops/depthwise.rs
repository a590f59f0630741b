//! Depthwise 2-D convolution: one filter per channel (groups = Cin = Cout, weights
//! `[C, KH, KW, 1]`), the second half of every inverted-residual block. One name,
//! `depthwise`, everywhere it runs:
//!
//! | what | where |
//! |---|---|
//! | reference (the spec) | [`depthwise_i8_ref`] here |
//! | weights prepared once | [`DepthwiseI8Weights`] here (centred, taps-major) |
//! | portable fast path | [`depthwise_i8_acc`] / [`depthwise_i8_requant`] here |
//! | wasm SIMD | `ops/depthwise_wasm.rs` |
//! | WGSL | `shaders/depthwise_i8_requant.wgsl` |
//! | GPU host | `gpu/depthwise.rs` ([`crate::gpu::depthwise::DepthwiseI8`]) |
//!
//! ```text
//! acc[n, oy, ox, c] = bias[c] + sum_{ky, kx inside} (x[n, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw, c] - zx)
//!                                                   * (w[c, ky, kx] - zw[c])
//! y = requantize(acc, s_x * s_w[c] / s_y)           (see crate::quant::requant)
//! ```
//! Taps in the padding contribute nothing (a padded value equals the input zero point).
//! Every path sums the same exact integer products (each fits i32, sums wrap like the
//! reference), so all of them are bit-identical to [`depthwise_i8_ref`]; the f32 path sums
//! taps in (ky, kx) order from 0 and adds the bias last, like the general convolution.
//!
//! Prepared layout: `taps_major[(ky * KW + kx) * C + c] = w[c, ky, kx] - zw[c]` as i16 (in
//! [-255, 255]), so one tap reads a contiguous channel vector; made once per model by
//! [`DepthwiseI8Weights::new`], never per frame.

use super::conv_shape::{check_bias, Conv2dParams, ConvGeometry, Mac};
use super::gemm::{check_int8_reduction, check_int8_zero_points};
use crate::base::error::{Error, Result};
use crate::base::tensor::QTensor;
use crate::quant::{Activation, Requant};

/// Channels per register block of the portable kernels.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
const BLOCK: usize = 16;

/// The int8 depthwise weights, centred by their zero points and laid out taps-major
/// (see the module docs): what the kernels read.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthwiseI8Weights {
    kernel: [usize; 2],
    channels: usize,
    taps_major: Vec<i16>,
}

impl DepthwiseI8Weights {
    /// From `[C, KH, KW, 1]` int8 weights quantized per tensor or per channel (axis 0).
    pub fn new(w: &QTensor) -> Result<Self> {
        const OP: &str = "depthwise_i8";
        let &[c, kh, kw, 1] = w.shape() else {
            return Err(Error::shape(OP, format!("depthwise weights must be [C, KH, KW, 1], got {:?}", w.shape())));
        };
        let zw = weight_zero_points(OP, w, c)?;
        check_int8_zero_points(OP, &zw)?;
        let wd = w.i8_data(OP)?;
        let taps = kh * kw;
        let mut taps_major = vec![0i16; taps * c];
        for ch in 0..c {
            for t in 0..taps {
                taps_major[t * c + ch] = (wd[ch * taps + t] as i32 - zw[ch]) as i16;
            }
        }
        Ok(DepthwiseI8Weights { kernel: [kh, kw], channels: c, taps_major })
    }

    /// `[KH * KW, C]` centred weights.
    pub fn taps_major(&self) -> &[i16] {
        &self.taps_major
    }

    /// Checks that these weights belong to geometry `g`.
    fn check(&self, g: &ConvGeometry) -> Result<()> {
        if !g.is_depthwise() || g.kernel != self.kernel || g.in_c != self.channels {
            return Err(Error::shape(
                "depthwise_i8",
                format!(
                    "prepared weights {:?}x{} do not match the convolution {:?}x{}",
                    self.kernel, self.channels, g.kernel, g.in_c
                ),
            ));
        }
        Ok(())
    }
}

/// Per-channel zero points of depthwise weights (one per-tensor value broadcast).
fn weight_zero_points(op: &'static str, w: &QTensor, c: usize) -> Result<Vec<i32>> {
    let zw = super::conv_shape::weight_zero_points(op, w)?;
    Ok(if zw.len() == 1 { vec![zw[0]; c] } else { zw })
}

/// The reference: the formula of the module docs as a direct loop over every output,
/// channel and tap. `x` per-tensor int8 NHWC, `w` `[C, KH, KW, 1]`, `bias` i32 `[C]`;
/// returns the geometry and the i32 accumulators `[N, OH, OW, C]`.
pub fn depthwise_i8_ref(
    x: &QTensor,
    w: &QTensor,
    bias: Option<&[i32]>,
    p: &Conv2dParams,
) -> Result<(ConvGeometry, Vec<i32>)> {
    const OP: &str = "depthwise_i8";
    let g = ConvGeometry::new(OP, x.shape(), w.shape(), p)?;
    if !g.is_depthwise() {
        return Err(Error::shape(OP, format!("not a depthwise convolution: {:?} with {} groups", w.shape(), p.groups)));
    }
    check_bias(OP, bias.map(<[i32]>::len), g.out_c)?;
    check_int8_reduction(OP, g.reduction_len())?;
    let (_, zx) = x.params().per_tensor_pair(OP)?;
    let zw = weight_zero_points(OP, w, g.out_c)?;
    let (xd, wd) = (x.i8_data(OP)?, w.i8_data(OP)?);
    let [kh, kw] = g.kernel;
    let inside = |o: usize, k: usize, s: usize, d: usize, pad: usize, len: usize| {
        (o * s + k * d).checked_sub(pad).filter(|&i| i < len)
    };
    let mut y = vec![0i32; g.batch * g.out_h * g.out_w * g.out_c];
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for c in 0..g.out_c {
                    let mut acc = bias.map_or(0, |b| b[c]);
                    for ky in 0..kh {
                        let Some(iy) = inside(oy, ky, g.stride[0], g.dilation[0], g.pad_top, g.in_h) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = inside(ox, kx, g.stride[1], g.dilation[1], g.pad_left, g.in_w) else {
                                continue;
                            };
                            let xv = xd[((n * g.in_h + iy) * g.in_w + ix) * g.in_c + c] as i32 - zx;
                            let wv = wd[(c * kh + ky) * kw + kx] as i32 - zw[c];
                            acc = acc.wrapping_add(xv * wv);
                        }
                    }
                    y[((n * g.out_h + oy) * g.out_w + ox) * g.out_c + c] = acc;
                }
            }
        }
    }
    Ok((g, y))
}

/// The fast accumulators: [`depthwise_wasm`](super) in wasm SIMD builds, the blocked
/// portable loop elsewhere. `x` is the int8 input (zero point `zx`), checked by the caller
/// against `g`.
pub fn depthwise_i8_acc(
    x: &[i8],
    zx: i32,
    w: &DepthwiseI8Weights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
) -> Result<Vec<i32>> {
    w.check(g)?;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Ok(super::depthwise_wasm::depthwise_i8_acc(x, zx, w.taps_major(), bias, g));
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    with_centred(x, zx, |xc| {
        let mut y = vec![0i32; g.batch * g.out_h * g.out_w * g.out_c];
        let (row, rows) = (g.out_w * g.out_c, crate::base::pool::chunk_len(g.batch * g.out_h, 2));
        let pw = pair_weights(w.taps_major(), g);
        crate::base::pool::parallel_chunks_mut(&mut y, rows * row.max(1), &|t, part| {
            depthwise_i8_native_rows(xc, w.taps_major(), &pw, bias, g, t * rows, part)
        });
        Ok(y)
    })
}

/// The int8 output: in wasm SIMD builds each output pixel is requantized while its
/// accumulators are in L1 (no image-sized i32 buffer), in either arithmetic where the SIMD
/// form covers it; otherwise [`depthwise_i8_acc`] then [`requantize_channels_last`]. Same bits
/// either way.
pub fn depthwise_i8_requant(
    x: &[i8],
    zx: i32,
    w: &DepthwiseI8Weights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    rq: &Requant,
) -> Result<Vec<i8>> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use super::requant_wasm::ChannelRequant;
        w.check(g)?;
        match ChannelRequant::new(rq, g.out_c)? {
            Some(ChannelRequant::Float(f)) => {
                return Ok(super::depthwise_wasm::depthwise_i8_requant(x, zx, w.taps_major(), bias, g, &f))
            }
            Some(ChannelRequant::Fixed(f)) => {
                return Ok(super::depthwise_wasm::depthwise_i8_requant(x, zx, w.taps_major(), bias, g, &f))
            }
            None => {}
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        // Natively: blocks of output rows over the pool's threads, each requantized while
        // its sums are in cache.
        w.check(g)?;
        with_centred(x, zx, |xc| depthwise_i8_requant_native(xc, w, bias, rq, g))
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let acc = depthwise_i8_acc(x, zx, w, bias, g)?;
        super::gemm::requantize_channels_last(&acc, g.out_c, rq)
    }
}

/// `x - zx` as i16 (the native kernels' operand) in a per-thread scratch buffer, then `f` on
/// it: no allocation and no zeroing per call.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn with_centred<R>(x: &[i8], zx: i32, f: impl FnOnce(&[i16]) -> R) -> R {
    super::scratch::with_i16(x.len(), |xc| {
        #[cfg(target_arch = "x86_64")]
        super::gemm_x86::centre(x, zx, xc);
        #[cfg(not(target_arch = "x86_64"))]
        for (o, &v) in xc.iter_mut().zip(x) {
            *o = (v as i32 - zx) as i16;
        }
        f(xc)
    })
}

/// The native int8 output on the centred input `xc`: blocks of output rows over the pool's
/// threads, each requantized while its sums are in cache.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn depthwise_i8_requant_native(
    xc: &[i16],
    w: &DepthwiseI8Weights,
    bias: Option<&[i32]>,
    rq: &Requant,
    g: &ConvGeometry,
) -> Result<Vec<i8>> {
    let row = g.out_w * g.out_c;
    // Every element is stored below: a recycled buffer's stale bytes never show.
    let mut out = super::scratch::output_i8(g.batch * g.out_h * row);
    let rows = crate::base::pool::chunk_len(g.batch * g.out_h, 2).min((16 * 1024 / row.max(1)).max(1));
    let channel = super::gemm::ChannelRequantNative::new(rq, g.out_c)?;
    let pw = pair_weights(w.taps_major(), g);
    crate::base::pool::parallel_chunks_mut(&mut out, rows * row.max(1), &|t, part| {
        #[cfg(target_arch = "x86_64")]
        if let (Some(pw), super::gemm::ChannelRequantNative::Float { lane_mults, .. }) = (&pw, &channel) {
            // Requantized in registers as each pixel's block is done: the same bits.
            let bounds = (rq.zero_point, rq.lo, rq.hi);
            let wt = w.taps_major();
            return super::depthwise_x86::depthwise_i8_requant_rows(
                xc,
                wt,
                pw,
                bias,
                g,
                t * rows,
                lane_mults,
                bounds,
                part,
            );
        }
        super::scratch::with_i32(part.len(), |acc| {
            depthwise_i8_native_rows(xc, w.taps_major(), &pw, bias, g, t * rows, acc);
            channel.apply(acc, g.out_c, rq, part);
        })
    });
    Ok(out)
}

/// The f32 depthwise convolution (weights `[C, KH, KW, 1]`) then `act`: the wasm SIMD kernel
/// or the blocked portable loop, both in the reference's summation order. Natively each output
/// row gets its activation while it is still in cache, and the output buffer is a recycled
/// one (every element is stored).
pub fn depthwise_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, g: &ConvGeometry) -> Vec<f32> {
    let wt = taps_major(w, g);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mut y = super::depthwise_wasm::depthwise_f32(x, &wt, bias, g);
        super::activation::apply_activation(&mut y, act);
        y
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut y = super::scratch::output_f32(g.batch * g.out_h * g.out_w * g.out_c);
        let row = (g.out_w * g.out_c).max(1);
        let rows = crate::base::pool::chunk_len(g.batch * g.out_h, 2);
        crate::base::pool::parallel_chunks_mut(&mut y, rows * row, &|t, part| {
            for (r, out_row) in part.chunks_mut(row).enumerate() {
                depthwise_native_rows(x, &wt, bias, g, t * rows + r, out_row);
                super::activation::apply_activation(out_row, act);
            }
        });
        y
    }
}

/// The AVX2 kernel's interleaved weights, once per call (`None`: the portable loop runs).
#[cfg(target_arch = "x86_64")]
type PairWeights = Option<super::depthwise_x86::PairWeights>;
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
type PairWeights = Option<()>;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn pair_weights(_wt: &[i16], _g: &ConvGeometry) -> PairWeights {
    #[cfg(target_arch = "x86_64")]
    return super::depthwise_x86::PairWeights::new(_wt, _g);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The int8 accumulators of output rows `first_row..` natively: the AVX2 kernel
/// (`depthwise_x86`) where it runs (`pw` is made), else the portable loop.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn depthwise_i8_native_rows(
    x: &[i16],
    wt: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(pw) = pw {
        return super::depthwise_x86::depthwise_i8_rows(x, wt, pw, bias, g, first_row, part);
    }
    #[cfg(target_arch = "aarch64")]
    if super::gemm_neon::neon() {
        return super::depthwise_neon::depthwise_i8_rows(x, wt, bias, g, first_row, part);
    }
    let _ = pw;
    depthwise_native_rows(x, wt, bias, g, first_row, part)
}

/// Output rows `first_row..` (over batch and height: `part.len() / (OW * C)` of them) of the
/// portable kernel natively: compiled a second time for AVX2 on x86-64 CPUs that have it
/// (`gemm_x86::avx2`; the same loop on wider vectors: integer sums exact, f32 sums in the
/// same order, no contraction into FMA, so the same bits).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn depthwise_native_rows<T: Mac>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T::Acc]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [T::Acc],
) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm_x86::avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { depthwise_taps_major_avx2(x, wt, bias, g, first_row, part) };
    }
    depthwise_taps_major(x, wt, bias, g, first_row, part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn depthwise_taps_major_avx2<T: Mac>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T::Acc]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [T::Acc],
) {
    depthwise_taps_major(x, wt, bias, g, first_row, part)
}

/// `[C, KH, KW, 1]` as `[KH, KW, C]`.
fn taps_major<T: Copy + Default>(w: &[T], g: &ConvGeometry) -> Vec<T> {
    let (taps, c) = (g.kernel[0] * g.kernel[1], g.in_c);
    let mut wt = vec![T::default(); taps * c];
    for ch in 0..c {
        for t in 0..taps {
            wt[t * c + ch] = w[ch * taps + t];
        }
    }
    wt
}

/// The portable kernel on centred values: channels innermost and contiguous in input,
/// taps-major weights and output; each pixel's valid taps listed once (interior pixels from
/// fixed offsets), then its channels summed over them in blocks ([`pixel_channels`]). Per
/// channel the taps are summed in (ky, kx) order from 0, then the bias, so f32 results
/// equal the reference loop's and integer ones are exact.
///
/// Tried and slower or no faster natively (f32, Lite0): holding a block's weights in
/// registers while walking along the row (the input is then read at a stride of C, block
/// after block), and two neighbouring pixels per block sharing weight loads.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn depthwise_taps_major<T: Mac>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T::Acc]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [T::Acc],
) {
    let [kh, kw] = g.kernel;
    let c = g.in_c;
    let row_len = (g.out_w * c).max(1);
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw); // (input offset, weight offset)
                                                                     // An interior pixel's taps, from its top-left tap: input offsets.
    let rel: Vec<usize> =
        (0..kh * kw).map(|t| ((t / kw) * g.dilation[0] * g.in_w + (t % kw) * g.dilation[1]) * c).collect();
    let inside = |o: usize, s: usize, pad: usize, k: usize, d: usize, len: usize| {
        (o * s).checked_sub(pad).filter(|&i0| i0 + (k - 1) * d < len)
    };
    for (r, out_row) in part.chunks_exact_mut(row_len).enumerate() {
        let (n, oy) = ((first_row + r) / g.out_h.max(1), (first_row + r) % g.out_h.max(1));
        let iy0 = inside(oy, g.stride[0], g.pad_top, kh, g.dilation[0], g.in_h);
        for (ox, out) in out_row.chunks_exact_mut(c.max(1)).enumerate() {
            taps.clear();
            match (iy0, inside(ox, g.stride[1], g.pad_left, kw, g.dilation[1], g.in_w)) {
                // Every tap inside: the same offsets from the top-left one, in tap order.
                (Some(iy0), Some(ix0)) => {
                    let base = ((n * g.in_h + iy0) * g.in_w + ix0) * c;
                    taps.extend(rel.iter().enumerate().map(|(t, &xo)| (base + xo, t * c)));
                }
                _ => g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * c))),
            }
            pixel_channels(x, wt, bias, &taps, c, out);
        }
    }
}

/// The `c` channels of one output pixel over its valid `taps` (input offset, weight offset):
/// wide blocks first (each lane's sum is a chain of dependent adds, so a block of
/// `2 * BLOCK` channels keeps twice the chains in flight), then the bias.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn pixel_channels<T: Mac>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T::Acc]>,
    taps: &[(usize, usize)],
    c: usize,
    out: &mut [T::Acc],
) {
    let mut c0 = 0;
    while c0 + 2 * BLOCK <= c {
        channel_block::<T, { 2 * BLOCK }>(x, wt, taps, c0, out);
        c0 += 2 * BLOCK;
    }
    while c0 + BLOCK <= c {
        channel_block::<T, BLOCK>(x, wt, taps, c0, out);
        c0 += BLOCK;
    }
    while c0 + BLOCK / 2 <= c {
        channel_block::<T, { BLOCK / 2 }>(x, wt, taps, c0, out);
        c0 += BLOCK / 2;
    }
    for ch in c0..c {
        let mut acc = T::Acc::default();
        for &(xo, wo) in taps {
            acc = T::mac(acc, x[xo + ch], wt[wo + ch]);
        }
        out[ch] = acc;
    }
    if let Some(b) = bias {
        for (o, &bv) in out.iter_mut().zip(b) {
            *o = T::add(*o, bv);
        }
    }
}

/// Channels `c0..c0 + N` of one output pixel: sums over `taps` (input offset, weight offset)
/// in order, kept in a local array (registers).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn channel_block<T: Mac, const N: usize>(x: &[T], wt: &[T], taps: &[(usize, usize)], c0: usize, out: &mut [T::Acc]) {
    let mut acc = [T::Acc::default(); N];
    for &(xo, wo) in taps {
        let (xs, ws) = (&x[xo + c0..][..N], &wt[wo + c0..][..N]);
        for i in 0..N {
            acc[i] = T::mac(acc[i], xs[i], ws[i]);
        }
    }
    out[c0..c0 + N].copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Padding;
    use crate::quant::{Activation, OutputQuant, QParams};

    /// Deterministic bytes.
    fn bytes(n: usize, seed: u32) -> Vec<i8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as i8
            })
            .collect()
    }

    /// The fast path (portable natively, wasm SIMD under wasm32-wasip1) equals the reference
    /// bit for bit, accumulators and requantized outputs, over strides, dilation, padding,
    /// channel counts around the SIMD blocks and weight zero points.
    #[test]
    fn depthwise_i8_fast_path_equals_reference() {
        let cases = [
            ([1, 7, 6, 3], [3, 3], Conv2dParams { padding: Padding::SameUpper, groups: 3, ..Default::default() }),
            (
                [2, 11, 10, 16],
                [5, 5],
                Conv2dParams { stride: [2, 1], padding: Padding::SameUpper, groups: 16, ..Default::default() },
            ),
            (
                [1, 9, 9, 24],
                [3, 3],
                Conv2dParams { stride: [2, 2], padding: Padding::SameUpper, groups: 24, ..Default::default() },
            ),
            (
                [1, 8, 9, 40],
                [3, 3],
                Conv2dParams {
                    dilation: [2, 2],
                    padding: Padding::Explicit { top: 1, left: 2, bottom: 3, right: 0 },
                    groups: 40,
                    ..Default::default()
                },
            ),
            ([1, 3, 3, 33], [5, 5], Conv2dParams { padding: Padding::SameUpper, groups: 33, ..Default::default() }),
            // MobileNet V1 0.25's narrowest layer: one 8-channel block.
            ([1, 6, 7, 8], [3, 3], Conv2dParams { padding: Padding::SameUpper, groups: 8, ..Default::default() }),
        ];
        for (k, (xs, [kh, kw], p)) in cases.into_iter().enumerate() {
            let c = xs[3];
            let x = QTensor::from_i8(
                xs.to_vec(),
                bytes(xs.iter().product(), 7 + k as u32),
                QParams::per_tensor(0.1, -9).unwrap(),
            )
            .unwrap();
            let zw: Vec<i32> = (0..c).map(|i| (i % 5) as i32 - 2).collect();
            let wd: Vec<i8> = bytes(c * kh * kw, 99 + k as u32).into_iter().map(|v| v.max(-127)).collect();
            let scales: Vec<f32> = (0..c).map(|i| 0.004 + 0.001 * i as f32).collect();
            let w = QTensor::from_i8(vec![c, kh, kw, 1], wd, QParams::per_axis(0, scales, zw).unwrap()).unwrap();
            let bias: Vec<i32> = (0..c as i32).map(|i| i * 37 - 500).collect();
            let (g, want) = depthwise_i8_ref(&x, &w, Some(&bias), &p).unwrap();
            let prepared = DepthwiseI8Weights::new(&w).unwrap();
            let xd = x.i8_data("t").unwrap();
            assert_eq!(depthwise_i8_acc(xd, -9, &prepared, Some(&bias), &g).unwrap(), want, "case {k}");
            let out = OutputQuant::new(0.37, 3, Activation::Relu6).unwrap();
            for rq in [
                Requant::new("t", 0.1, w.params().scales(), &out).unwrap(),
                Requant::tflite("t", 0.1, w.params().scales(), &out, false).unwrap(),
            ] {
                let q = depthwise_i8_requant(xd, -9, &prepared, Some(&bias), &g, &rq).unwrap();
                let scalar: Vec<i8> = want.iter().enumerate().map(|(i, &a)| rq.apply(a, i % c)).collect();
                assert_eq!(q, scalar, "case {k} requantized");
            }
        }
    }

    #[test]
    fn prepared_weights_must_match_the_convolution() {
        let w = QTensor::from_i8(vec![4, 3, 3, 1], vec![1; 36], QParams::per_tensor(0.1, 0).unwrap()).unwrap();
        let prepared = DepthwiseI8Weights::new(&w).unwrap();
        let x = QTensor::from_i8(vec![1, 4, 4, 8], vec![0; 128], QParams::per_tensor(0.1, 0).unwrap()).unwrap();
        let w8 = QTensor::from_i8(vec![8, 3, 3, 1], vec![1; 72], QParams::per_tensor(0.1, 0).unwrap()).unwrap();
        let g =
            ConvGeometry::new("t", x.shape(), w8.shape(), &Conv2dParams { groups: 8, ..Default::default() }).unwrap();
        assert!(depthwise_i8_acc(x.i8_data("t").unwrap(), 0, &prepared, None, &g).is_err());
        let not_dw = QTensor::from_i8(vec![4, 3, 3, 2], vec![1; 72], QParams::per_tensor(0.1, 0).unwrap()).unwrap();
        assert!(DepthwiseI8Weights::new(&not_dw).is_err());
    }
}
