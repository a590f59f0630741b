//! The depthwise convolution with WebAssembly SIMD (wasm32 + `simd128`): the fast form of
//! [`super::depthwise::depthwise_i8_ref`] (int8) and of the f32 reference loop, called by
//! [`super::depthwise`].
//!
//! ```text
//! acc[n, oy, ox, c] = bias[c] + sum_{ky, kx inside} x'[n, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw, c] * w'[c, ky, kx]
//! ```
//! with `x'`, `w'` the zero-point-centred values (in [-255, 255]; the input is widened to
//! i16 and centred as it is loaded, the weights once when the model is prepared, [`super::depthwise::DepthwiseI8Weights`]), input NHWC,
//! weights taps-major `[KH, KW, C]` so a tap reads a contiguous channel vector. Per output pixel, channels go in blocks of 16 (then 8): per tap and 8
//! channels one widening input load and one weight load, `i32x4.extmul_{low,high}_i16x8_s` into two i32x4 accumulators that stay in
//! registers over all taps. Each product fits i32 and integer sums are exact in any order
//! (wrapping like the scalar loop), so results are bit-identical to the reference.
//!
//! The valid taps of an output position form one contiguous range per axis (the tap index
//! grows with `ky * dh`), computed once per row and column instead of testing every tap.

use core::arch::wasm32::*;

use super::conv_shape::ConvGeometry;

const LANES: usize = 8;

/// `[first, end)` of the kernel taps on one axis whose input index `o*s - pad + k*d` lies in `[0, len)`.
fn tap_range(o: usize, kernel: usize, stride: usize, dilation: usize, pad: usize, len: usize) -> (usize, usize) {
    let base = (o * stride) as isize - pad as isize;
    let d = dilation.max(1) as isize;
    // First k with base + k*d >= 0, and first k with base + k*d >= len.
    let first = if base >= 0 { 0 } else { ((-base) + d - 1) / d };
    let end = if (len as isize) <= base { 0 } else { ((len as isize - base) + d - 1) / d };
    let first = (first as usize).min(kernel);
    (first, (end as usize).clamp(first, kernel))
}

#[inline(always)]
fn load4(s: &[i32], at: usize) -> v128 {
    let chunk = &s[at..at + 4];
    // SAFETY: `chunk` holds exactly 4 i32 (16 bytes).
    unsafe { v128_load(chunk.as_ptr() as *const v128) }
}

#[inline(always)]
fn store4(out: &mut [i32], at: usize, v: v128) {
    let dst = &mut out[at..at + 4];
    // SAFETY: `dst` holds exactly 4 i32 (16 bytes); v128_store has no alignment requirement.
    unsafe { v128_store(dst.as_mut_ptr() as *mut v128, v) }
}

/// See the module docs. `x` is the int8 input with zero point `zx` (centred as it is
/// loaded), `wc` the centred taps-major weights `[KH, KW, C]` ([`super::depthwise::DepthwiseI8Weights`]).
pub fn depthwise_i8_acc(x: &[i8], zx: i32, wc: &[i16], bias: Option<&[i32]>, g: &ConvGeometry) -> Vec<i32> {
    let c = g.in_c;
    let mut y = vec![0i32; g.batch * g.out_h * g.out_w * c];
    depthwise_pixels(x, zx, wc, bias, g, 0..g.batch * g.out_h, |px, acc| y[px * c..(px + 1) * c].copy_from_slice(acc));
    y
}

/// The depthwise convolution straight to int8: each output pixel's accumulators are
/// requantized while they are still in L1 ([`super::requant_wasm::requantize_rows`], the
/// engine's scheme, `mults` one per channel), so no image-sized i32 buffer is written and
/// read back (that pass was a third of the depthwise time in Lite0).
pub(super) fn depthwise_i8_requant<R: super::requant_wasm::Requant4 + Sync>(
    x: &[i8],
    zx: i32,
    wc: &[i16],
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    rq: &R,
) -> Vec<i8> {
    let c = g.in_c;
    let mut y = vec![0i8; g.batch * g.out_h * g.out_w * c];
    // Output rows split over the pool's threads, each task writing its own rows.
    let (rows, row_len) = (g.batch * g.out_h, g.out_w * c);
    let threads = crate::base::pool::threads();
    let per_task = if threads <= 1 { rows } else { rows.div_ceil(threads * 2) }.max(1);
    crate::base::pool::parallel_chunks_mut(&mut y, per_task * row_len.max(1), &|t, part| {
        let (r0, px0) = (t * per_task, t * per_task * g.out_w);
        let r1 = (r0 + per_task).min(rows);
        depthwise_pixels(x, zx, wc, bias, g, r0..r1, |px, acc| {
            let at = (px - px0) * c;
            super::requant_wasm::requantize_rows(acc, c, rq, &mut part[at..at + c]);
        });
    });
    y
}

/// Where one output pixel's valid taps lie, for a channel-last input and tap-major weights:
/// tap `(dy, dx)` of the window (`rows x cols` valid taps) reads the input at
/// `x + dy * x_row + dx * x_col` and the weights at `w + dy * w_row + dx * c`, plus the channel.
struct Window {
    /// Output pixel index in `[N, OH, OW]` order.
    px: usize,
    x: usize,
    w: usize,
    rows: usize,
    cols: usize,
    x_row: usize,
    x_col: usize,
    w_row: usize,
}

impl Window {
    /// Calls `f(input, weights)` with pointers to every valid tap at channel `c0`, in (ky, kx)
    /// order; `c` is the channel count (the weights' step between taps of a row).
    ///
    /// # Safety
    /// `x` and `w` must be the input and tap-major weights this window was made for, and the
    /// channels `f` reads from `c0` on must lie inside `c`.
    #[inline(always)]
    unsafe fn for_each_tap<X, W>(
        &self,
        x: *const X,
        w: *const W,
        c0: usize,
        c: usize,
        mut f: impl FnMut(*const X, *const W),
    ) {
        for dy in 0..self.rows {
            let xr = x.add(self.x + dy * self.x_row + c0);
            let wr = w.add(self.w + dy * self.w_row + c0);
            for dx in 0..self.cols {
                f(xr.add(dx * self.x_col), wr.add(dx * c));
            }
        }
    }
}

/// Calls `f` with the [`Window`] of every output pixel of output rows `rows` (indices into
/// the `N * OH` rows), in output order.
fn for_each_window(g: &ConvGeometry, rows: core::ops::Range<usize>, mut f: impl FnMut(&Window)) {
    let [kh, kw] = g.kernel;
    let c = g.in_c;
    let (dil_y, dil_x) = (g.dilation[0], g.dilation[1]);
    let cols: Vec<(usize, usize)> =
        (0..g.out_w).map(|ox| tap_range(ox, kw, g.stride[1], dil_x, g.pad_left, g.in_w)).collect();
    for row in rows {
        let (n, oy) = (row / g.out_h.max(1), row % g.out_h.max(1));
        let (ky0, ky1) = tap_range(oy, kh, g.stride[0], dil_y, g.pad_top, g.in_h);
        let iy0 = (oy * g.stride[0] + ky0 * dil_y).saturating_sub(g.pad_top);
        for (ox, &(kx0, kx1)) in cols.iter().enumerate() {
            let ix0 = (ox * g.stride[1] + kx0 * dil_x).saturating_sub(g.pad_left);
            f(&Window {
                px: (n * g.out_h + oy) * g.out_w + ox,
                x: ((n * g.in_h + iy0) * g.in_w + ix0) * c,
                w: (ky0 * kw + kx0) * c,
                rows: ky1 - ky0,
                cols: kx1 - kx0,
                x_row: dil_y * g.in_w * c,
                x_col: dil_x * c,
                w_row: kw * c,
            });
        }
    }
}

/// The kernel: computes output pixel `px` (in `[N, OH, OW]` order) into a reused row of `C`
/// accumulators and hands it to `emit(px, row)`.
fn depthwise_pixels(
    x: &[i8],
    zx: i32,
    wc: &[i16],
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    rows: core::ops::Range<usize>,
    mut emit: impl FnMut(usize, &[i32]),
) {
    let c = g.in_c;
    let wt = wc;
    let mut bias_c = vec![0i32; c];
    if let Some(b) = bias {
        bias_c.copy_from_slice(&b[..c]);
    }
    let zx8 = i16x8_splat(zx as i16);
    let c16 = c / 16 * 16;
    let c8 = c / LANES * LANES;
    let mut out = vec![0i32; c];
    // The unchecked loads below rely on these lengths.
    assert!(x.len() >= g.batch * g.in_h * g.in_w * c && wt.len() == g.kernel[0] * g.kernel[1] * c);
    for_each_window(g, rows, |t| {
        let mut c0 = 0;
        // 16 channels (four accumulators) per pass, then 8, then single channels.
        while c0 < c16 {
            let (mut a0, mut a1, mut a2, mut a3) =
                (load4(&bias_c, c0), load4(&bias_c, c0 + 4), load4(&bias_c, c0 + 8), load4(&bias_c, c0 + 12));
            // SAFETY: the taps iterated are the valid ones (tap_range), so every input offset
            // is a pixel of `x` plus c0 + 16 <= c channels; weight offsets are taps of `wt`
            // plus the same channels (lengths asserted above).
            unsafe {
                t.for_each_tap(x.as_ptr(), wt.as_ptr(), c0, c, |xo, wo| {
                    let x0 = i16x8_sub(i16x8_load_extend_i8x8(xo), zx8);
                    let x1 = i16x8_sub(i16x8_load_extend_i8x8(xo.add(8)), zx8);
                    let w0 = v128_load(wo as *const v128);
                    let w1 = v128_load(wo.add(8) as *const v128);
                    a0 = i32x4_add(a0, i32x4_extmul_low_i16x8(x0, w0));
                    a1 = i32x4_add(a1, i32x4_extmul_high_i16x8(x0, w0));
                    a2 = i32x4_add(a2, i32x4_extmul_low_i16x8(x1, w1));
                    a3 = i32x4_add(a3, i32x4_extmul_high_i16x8(x1, w1));
                });
            }
            store4(&mut out, c0, a0);
            store4(&mut out, c0 + 4, a1);
            store4(&mut out, c0 + 8, a2);
            store4(&mut out, c0 + 12, a3);
            c0 += 16;
        }
        while c0 < c8 {
            let (mut lo, mut hi) = (load4(&bias_c, c0), load4(&bias_c, c0 + 4));
            // SAFETY: as for the 16-channel pass, with c0 + 8 <= c.
            unsafe {
                t.for_each_tap(x.as_ptr(), wt.as_ptr(), c0, c, |xo, wo| {
                    let xv = i16x8_sub(i16x8_load_extend_i8x8(xo), zx8);
                    let wv = v128_load(wo as *const v128);
                    lo = i32x4_add(lo, i32x4_extmul_low_i16x8(xv, wv));
                    hi = i32x4_add(hi, i32x4_extmul_high_i16x8(xv, wv));
                });
            }
            store4(&mut out, c0, lo);
            store4(&mut out, c0 + 4, hi);
            c0 += LANES;
        }
        for (ch, o) in out.iter_mut().enumerate().skip(c8) {
            let mut s = bias_c[ch];
            for dy in 0..t.rows {
                let (xr, wr) = (t.x + dy * t.x_row + ch, t.w + dy * t.w_row + ch);
                for dx in 0..t.cols {
                    let xv = x[xr + dx * t.x_col] as i32 - zx;
                    s = s.wrapping_add(xv * wt[wr + dx * c] as i32);
                }
            }
            *o = s;
        }
        emit(t.px, &out);
    });
}

/// The f32 depthwise convolution (weights taps-major `[KH, KW, C]`), the fast form of the reference
/// loop with its exact order: per channel the sum starts at 0, adds `x * w` over the valid
/// taps in (ky, kx) order with separately rounded multiplies and adds, then adds the bias.
/// Sixteen channels are four f32x4 accumulators, so the bits equal the scalar loop's.
pub fn depthwise_f32(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    let c = g.in_c;
    let c16 = c / 16 * 16;
    let mut y = vec![0f32; g.batch * g.out_h * g.out_w * c];
    // The unchecked loads below rely on these lengths.
    assert!(x.len() >= g.batch * g.in_h * g.in_w * c && wt.len() == g.kernel[0] * g.kernel[1] * c);
    for_each_window(g, 0..g.batch * g.out_h, |t| {
        let out = &mut y[t.px * c..(t.px + 1) * c];
        let mut c0 = 0;
        while c0 < c16 {
            let mut acc = [f32x4_splat(0.0); 4];
            // SAFETY: the taps iterated are the valid ones (tap_range), so every input offset
            // is a pixel of `x` plus c0 + 16 <= c channels, every weight offset a tap of `wt`
            // plus the same channels (lengths asserted above).
            unsafe {
                t.for_each_tap(x.as_ptr(), wt.as_ptr(), c0, c, |xo, wo| {
                    for (q, a) in acc.iter_mut().enumerate() {
                        let xv = v128_load(xo.add(4 * q) as *const v128);
                        let wv = v128_load(wo.add(4 * q) as *const v128);
                        *a = f32x4_add(*a, f32x4_mul(xv, wv));
                    }
                });
            }
            for (q, a) in acc.iter().enumerate() {
                let dst = &mut out[c0 + 4 * q..c0 + 4 * q + 4];
                // SAFETY: `dst` holds exactly 4 f32 (16 bytes); unaligned store.
                unsafe { v128_store(dst.as_mut_ptr() as *mut v128, *a) };
            }
            c0 += 16;
        }
        for (ch, o) in out.iter_mut().enumerate().skip(c16) {
            let mut s = 0f32;
            for dy in 0..t.rows {
                let (xr, wr) = (t.x + dy * t.x_row + ch, t.w + dy * t.w_row + ch);
                for dx in 0..t.cols {
                    s += x[xr + dx * t.x_col] * wt[wr + dx * c];
                }
            }
            *o = s;
        }
        if let Some(b) = bias {
            for (o, &bv) in out.iter_mut().zip(b) {
                *o += bv;
            }
        }
    });
    y
}
