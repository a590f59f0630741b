//! The shape side of every 2-D convolution (regular, grouped, pointwise, depthwise):
//! [`Conv2dParams`], the resolved [`ConvGeometry`] (output size, padding, taps inside the
//! input), the checks shared by the convolution kernels, and [`Mac`], the multiply-accumulate
//! on zero-point-centred values they run. Formulas: [`super::conv`].

use super::window::{explicit_pads, resolve_axis};
use super::Padding;
use crate::base::error::{Error, Result};
use crate::base::tensor::{numel, QTensor};

/// Hyper-parameters of a 2-D convolution. `[height, width]` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], dilation: [1, 1], padding: Padding::VALID, groups: 1 }
    }
}

/// Resolved shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad_top: usize,
    pub pad_left: usize,
    pub groups: usize,
    /// Input channels per group (= weights' last dim).
    pub in_c_group: usize,
    /// Output channels per group.
    pub out_c_group: usize,
}

impl ConvGeometry {
    /// Validates `x_shape` (NHWC) and `w_shape` (OHWI) against `p`, resolving padding.
    pub fn new(op: &'static str, x_shape: &[usize], w_shape: &[usize], p: &Conv2dParams) -> Result<Self> {
        let (&[batch, in_h, in_w, in_c], &[out_c, kh, kw, in_c_group]) = (x_shape, w_shape) else {
            return Err(Error::shape(
                op,
                format!("expected input NHWC and weights OHWI of rank 4, got {x_shape:?} and {w_shape:?}"),
            ));
        };
        let groups = p.groups;
        if groups == 0 || out_c % groups != 0 || in_c_group.checked_mul(groups) != Some(in_c) {
            return Err(Error::shape(
                op,
                format!(
                    "input {x_shape:?} has {in_c} channels, weights {w_shape:?} with {groups} groups expect {} (and Cout divisible by groups)",
                    in_c_group.saturating_mul(groups)
                ),
            ));
        }
        let (ph, pw) = explicit_pads(p.padding);
        let ah = resolve_axis(op, in_h, kh, p.stride[0], p.dilation[0], p.padding, ph, false)?;
        let aw = resolve_axis(op, in_w, kw, p.stride[1], p.dilation[1], p.padding, pw, false)?;
        let g = ConvGeometry {
            batch,
            in_h,
            in_w,
            in_c,
            out_h: ah.out,
            out_w: aw.out,
            out_c,
            kernel: [kh, kw],
            stride: p.stride,
            dilation: p.dilation,
            pad_top: ah.pad_begin,
            pad_left: aw.pad_begin,
            groups,
            in_c_group,
            out_c_group: out_c / groups,
        };
        numel(op, &g.out_shape())?;
        Ok(g)
    }

    /// `[N, OH, OW, Cout]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.batch, self.out_h, self.out_w, self.out_c]
    }

    /// Length of one dot product: `KH * KW * Cin / groups`.
    pub fn reduction_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.in_c_group
    }

    /// 1x1, stride 1, no padding, one group: a GEMM `[N*H*W, Cin] · [Cout, Cin]ᵀ`.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.groups == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    /// One input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_c && self.in_c_group == 1 && self.out_c_group == 1
    }

    /// Input row/column of tap `k` for output position `o` on an axis, if inside the input.
    #[inline]
    fn tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, len: usize) -> Option<usize> {
        (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < len)
    }

    /// Calls `f(ky * KW + kx, offset of input pixel [n, iy, ix, 0])` for each kernel tap of
    /// output pixel `(n, oy, ox)` that falls inside the input (padding taps are skipped).
    #[inline]
    pub(crate) fn for_each_tap(&self, n: usize, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
        let [kh, kw] = self.kernel;
        for ky in 0..kh {
            let Some(iy) = Self::tap(oy, ky, self.stride[0], self.dilation[0], self.pad_top, self.in_h) else {
                continue;
            };
            for kx in 0..kw {
                let Some(ix) = Self::tap(ox, kx, self.stride[1], self.dilation[1], self.pad_left, self.in_w) else {
                    continue;
                };
                f(ky * kw + kx, ((n * self.in_h + iy) * self.in_w + ix) * self.in_c);
            }
        }
    }
}

/// Multiply-accumulate over already zero-point-centred values: f32 into f32, or i16 into
/// i32. Centred int8 values `q - z` lie in [-255, 255] and fit i16; widening i16 products
/// let the compiler use 16-bit multiplies (SSE2 `pmaddwd`, wasm `i32x4.dot_i16x8_s`), where
/// 32-bit lanes would need a slow emulated multiply. The i32 sum wraps, and is exact within
/// [`super::gemm::MAX_INT8_REDUCTION`].
pub(crate) trait Mac: Copy + Default {
    type Acc: Copy + Default;
    fn mac(acc: Self::Acc, a: Self, b: Self) -> Self::Acc;
    fn add(acc: Self::Acc, b: Self::Acc) -> Self::Acc;
}
impl Mac for f32 {
    type Acc = f32;
    #[inline]
    fn mac(acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }
    #[inline]
    fn add(acc: f32, b: f32) -> f32 {
        acc + b
    }
}
impl Mac for i16 {
    type Acc = i32;
    #[inline]
    fn mac(acc: i32, a: i16, b: i16) -> i32 {
        acc.wrapping_add(a as i32 * b as i32)
    }
    #[inline]
    fn add(acc: i32, b: i32) -> i32 {
        acc.wrapping_add(b)
    }
}

pub(crate) fn check_bias(op: &'static str, len: Option<usize>, out_c: usize) -> Result<()> {
    match len {
        Some(l) if l != out_c => Err(Error::shape(op, format!("bias has {l} values, expected {out_c}"))),
        _ => Ok(()),
    }
}

/// Weight zero points of an OHWI int8 weight tensor: per-tensor or per output channel (axis 0).
pub(crate) fn weight_zero_points(op: &'static str, w: &QTensor) -> Result<Vec<i32>> {
    let p = w.params();
    match p.axis() {
        None => Ok(vec![p.zero_point(0)]),
        Some(0) => Ok(p.zero_points().to_vec()),
        Some(a) => {
            Err(Error::invalid(op, format!("weights must be quantized per output channel (axis 0), got axis {a}")))
        }
    }
}
