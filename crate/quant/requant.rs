//! Requantization: the one way an int32 accumulator becomes an int8 value, and the
//! f32 <-> int8 conversions. Every backend (CPU, wasm SIMD, WGSL) reproduces these
//! bit-exactly; the WGSL mirror is `shaders/requant.wgsl` (added with the GPU backend).
//!
//! # Scheme: fp32 multiplier, single rounding
//! ```text
//! m = (s_in * s_w[c]) / s_out         once, at prepare time, in f32 in this order (as
//!                                     onnxruntime computes it, so its files match exactly)
//! a = f32(acc)                        round-to-nearest-even conversion of the i32 accumulator
//! r = round_half_even(a * m)          one correctly rounded f32 multiply, ties to even
//! q = clamp(r, lo - zp, hi - zp) + zp clamp in f32 (exact: r and the bounds are integers),
//!                                     zero point added as an integer afterwards
//! ```
//! `[lo, hi]` is `[-128, 127]` narrowed by a fused activation (ReLU: `lo = zp`;
//! ReLU6: also `hi = zp + round(6 / s_out)`).
//!
//! # Why this scheme and not gemmlowp's fixed-point (multiplier, shift)
//! - WGSL has no 64-bit integers; the fixed-point scheme needs a 32x32->64 multiply.
//! - It is what ONNX `QLinearConv`/`QLinearMatMul` specify and onnxruntime computes
//!   (float scale, round half to even), so imported ONNX int8 models match it exactly.
//! - Every step is a correctly rounded IEEE-754 operation, hence deterministic, given two
//!   precautions that the WGSL mirror must keep:
//!   1. i32 -> f32 of `|acc| > 2^24` may round either way on GPUs (implementation-defined in
//!      Vulkan/WGSL). The mirror converts `f32(acc >> 16) * 65536.0 + f32(acc & 0xffff)`:
//!      both parts convert exactly, the product is exact, so the sum is one correctly rounded
//!      addition, which equals Rust's `acc as f32` (round to nearest even). A contraction of
//!      that expression into an FMA gives the same value because the product is exact.
//!   2. No addition after the multiply by `m` (the zero point is added as an integer), so a
//!      compiler's FMA contraction cannot change the result.
//!
//! # TFLite's fixed-point scheme (imported TFLite models only)
//! A model imported from TFLite keeps TFLite's arithmetic so that it gives TFLite's numbers:
//! ```text
//! (q, e) = frexp(f64(s_in) * f64(s_w[c]) / f64(s_out)),  q31 = round(q * 2^31)   (once)
//! r = rounding_div_pow2(sat_rounding_doubling_high_mul(acc << max(e, 0), q31), max(-e, 0))
//! ```
//! ([`FixedMultiplier`]; gemmlowp's `SaturatingRoundingDoublingHighMul` and
//! `RoundingDivideByPOT`, which rounds ties away from zero). TF2's int8 files, as TF 2.20's
//! kernels run their convolutions and fully connected layers, round the ties of that last
//! shift up instead (`floor((s + 2^(r-1)) / 2^r)`, NEON's rounding shift;
//! [`FixedMultiplier::apply_shift_half_up`]); the two differ on negative ties only, which a
//! layer without an activation meets a few times in ten thousand. The other operators of
//! TFLite files are in [`crate::quant::tflite`]. Such models run on the CPU only: WGSL lacks
//! the 64-bit product.
//!
//! # Int8 add
//! `y = round_half_even(f32(a - za) * ma + f32(b - zb) * mb) + zy` with `ma = s_a / s_y`,
//! `mb = s_b / s_y` rounded to [`ADD_MULTIPLIER_MANTISSA_BITS`] significant bits. Since
//! `|a - za| <= 255` has 8 significant bits, each product has at most 23 and is exact in f32;
//! the sum is then one correctly rounded addition, identical with or without FMA. The cost is
//! a relative multiplier error below 2^-15, far under one int8 step.
//!
//! # onnxruntime's int8 add (imported onnxruntime-quantized models only)
//! onnxruntime's x86 kernel (MLAS `QLinearAdd`, AVX2) works on the file's own integers
//! `A, B` (uint8 or int8), in f32, with two fused multiply-adds:
//! ```text
//! r_a = f32(s_a / s_y), r_b = f32(s_b / s_y)
//! k = f32(z_y) - (r_a * z_a + r_b * z_b)            (each operation rounded to f32)
//! y = saturate(round_half_even(fma(A, r_a, fma(B, r_b, k))))
//! ```
//! ([`OrtAddRequant`]). The engine's own add rounds once instead; the two differ by one step
//! on a few values in ten thousand, which grows through a deep network, so models quantized by
//! onnxruntime keep its formula (CPU only: WGSL's `fma` need not be fused).
//!
//! # Quantize / dequantize
//! `q = clamp(round_half_even(x / s) + zp, lo, hi)` (ONNX QuantizeLinear; NaN maps to `zp`),
//! `x = (q - zp) * s`.

use crate::base::error::{Error, Result};

/// Significant bits kept in the int8-add multipliers (see module docs).
pub const ADD_MULTIPLIER_MANTISSA_BITS: u32 = 15;

/// `1.5 * 2^23`: adding and subtracting it rounds an f32 of magnitude below 2^22 to an
/// integer, half to even (the FPU's default rounding), without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Rounds half to even, for `|x| <= 2^22`. `f32::round_ties_even` is a libm call on
/// x86-64 without SSE4.1, which made requantization dominate int8 kernels; this is two adds.
#[inline]
fn round_half_even_small(x: f32) -> f32 {
    (x + ROUND_MAGIC) - ROUND_MAGIC
}

/// Clamps `x` to the integer bounds `[lo, hi]` then rounds half to even. Because the bounds
/// are integers this equals rounding first and clamping after (the order in the spec), and
/// after the clamp `|x| <= 510`, in range for [`round_half_even_small`]. NaN maps to `lo`.
#[inline]
fn clamp_round(x: f32, lo: i32, hi: i32) -> i32 {
    // max/min rather than clamp: clamp panics when bounds are inverted; they never are here.
    round_half_even_small(x.max(lo as f32).min(hi as f32)) as i32
}

/// Requantizes one accumulator: the numerics spec (see module docs).
#[inline]
pub fn requantize(acc: i32, multiplier: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    clamp_round(acc as f32 * multiplier, lo - zero_point, hi - zero_point) + zero_point
}

/// Quantizes one f32 value (ONNX QuantizeLinear semantics, NaN -> zero point).
#[inline]
pub fn quantize_value(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    if x.is_nan() {
        return zero_point.clamp(lo, hi);
    }
    clamp_round(x / scale, lo - zero_point, hi - zero_point) + zero_point
}

/// Dequantizes one value.
#[inline]
pub fn dequantize(q: i32, scale: f32, zero_point: i32) -> f32 {
    (q - zero_point) as f32 * scale
}

/// Rounds a positive finite `m` to `bits` significant bits (round half to even).
pub fn round_multiplier_mantissa(m: f64, bits: u32) -> f64 {
    if !(m.is_finite() && m > 0.0) || bits == 0 || bits >= 53 {
        return m;
    }
    let exp = ((m.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let quantum = 2f64.powi(exp - (bits as i32 - 1));
    (m / quantum).round_ties_even() * quantum
}

/// Activation fused into the requantization clamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
}

/// Output quantization of an int8 op: scale, zero point, fused activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputQuant {
    pub scale: f32,
    pub zero_point: i32,
    pub activation: Activation,
}

impl OutputQuant {
    pub fn new(scale: f32, zero_point: i32, activation: Activation) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid("output quant", format!("scale must be finite and > 0, got {scale}")));
        }
        if !(-128..=127).contains(&zero_point) {
            return Err(Error::invalid("output quant", format!("int8 zero point {zero_point} outside [-128, 127]")));
        }
        Ok(OutputQuant { scale, zero_point, activation })
    }

    /// The int8 clamp bounds `[lo, hi]` after the fused activation.
    pub fn bounds(&self) -> (i32, i32) {
        let zp = self.zero_point;
        match self.activation {
            Activation::None => (-128, 127),
            Activation::Relu => (zp.max(-128), 127),
            Activation::Relu6 => {
                let six = (6.0f64 / self.scale as f64).round_ties_even();
                let hi = (zp as f64 + six).min(127.0) as i32;
                (zp.max(-128), hi.max(zp))
            }
        }
    }
}

/// A real multiplier as TFLite holds it: a Q31 mantissa and a power-of-two exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMultiplier {
    pub q31: i32,
    pub exponent: i32,
}

impl FixedMultiplier {
    /// TFLite's `QuantizeMultiplier`.
    pub fn new(m: f64) -> Self {
        if !(m.is_finite() && m > 0.0) {
            return FixedMultiplier { q31: 0, exponent: 0 };
        }
        // frexp: m = f * 2^e with f in [0.5, 1).
        let mut e = m.log2().floor() as i32 + 1;
        let mut f = m / 2f64.powi(e);
        if f >= 1.0 {
            f /= 2.0;
            e += 1;
        } else if f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut q = (f * (1u64 << 31) as f64).round() as i64;
        if q == 1 << 31 {
            q /= 2;
            e += 1;
        }
        if e < -31 {
            return FixedMultiplier { q31: 0, exponent: 0 };
        }
        FixedMultiplier { q31: q as i32, exponent: e }
    }

    /// The same high multiply followed by a rounding shift whose ties go up (toward +inf),
    /// as NEON's `vrshl` rounds: how TF 2.20 rounds its int8 convolutions and fully connected
    /// layers (checked against its interpreter; [`apply`](Self::apply) rounds ties away from
    /// zero, which differs on negative ties only).
    #[inline]
    pub fn apply_shift_half_up(self, acc: i32) -> i32 {
        let left = self.exponent.max(0) as u32;
        let right = (-self.exponent).clamp(0, 31) as u32;
        let x = acc.saturating_mul(1i32.checked_shl(left).unwrap_or(i32::MAX));
        let h = sat_rounding_doubling_high_mul(x, self.q31) as i64;
        if right == 0 {
            return h as i32;
        }
        ((h + (1i64 << (right - 1))) >> right) as i32
    }

    /// TFLite's `MultiplyByQuantizedMultiplier`.
    #[inline]
    pub fn apply(self, acc: i32) -> i32 {
        let left = self.exponent.max(0) as u32;
        let right = (-self.exponent).max(0) as u32;
        let x = acc.saturating_mul(1i32.checked_shl(left).unwrap_or(i32::MAX));
        rounding_div_pow2(sat_rounding_doubling_high_mul(x, self.q31), right)
    }
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: `round(a * b / 2^31)`, saturating.
#[inline]
fn sat_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
    // C++ integer division truncates toward zero, as Rust's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: `x / 2^e` rounded half away from zero.
#[inline]
pub(crate) fn rounding_div_pow2(x: i32, e: u32) -> i32 {
    if e == 0 {
        return x;
    }
    let e = e.min(31);
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> e) + (remainder > threshold) as i32
}

/// Prepared requantization of a conv/dense output: one multiplier per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    pub multipliers: Vec<f32>,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
    /// TFLite's fixed-point multipliers, for models imported from TFLite (used instead of
    /// `multipliers` when present; the GPU plan refuses them).
    pub fixed: Option<Vec<FixedMultiplier>>,
    /// With `fixed`: the final shift rounds ties up ([`FixedMultiplier::apply_shift_half_up`],
    /// TF2 int8 convolutions of one group and fully connected layers), not away from zero.
    pub shift_half_up: bool,
}

impl Requant {
    /// The float multipliers, one per channel (a per-tensor one repeated).
    pub fn per_channel(&self, channels: usize) -> Result<Vec<f32>> {
        match self.multipliers.len() {
            1 => Ok(vec![self.multipliers[0]; channels]),
            n if n == channels => Ok(self.multipliers.clone()),
            n => Err(Error::shape("requantize", format!("{n} multipliers for {channels} channels"))),
        }
    }

    /// `multipliers[c] = (input_scale * weight_scales[c]) / out.scale` in f32, onnxruntime's
    /// order (f64 arithmetic rounded once differed from it by one step on rare values).
    pub fn new(op: &'static str, input_scale: f32, weight_scales: &[f32], out: &OutputQuant) -> Result<Self> {
        let multipliers = weight_scales
            .iter()
            .map(|&ws| {
                let m = input_scale * ws / out.scale;
                if m.is_finite() && m > 0.0 {
                    Ok(m)
                } else {
                    Err(Error::invalid(
                        op,
                        format!("requant multiplier {input_scale} * {ws} / {} is not a positive finite f32", out.scale),
                    ))
                }
            })
            .collect::<Result<Vec<f32>>>()?;
        let (lo, hi) = out.bounds();
        Ok(Requant { multipliers, zero_point: out.zero_point, lo, hi, fixed: None, shift_half_up: false })
    }

    /// The same, in TFLite's fixed-point arithmetic (see module docs); `shift_half_up` for the
    /// layers whose last shift rounds ties up.
    pub fn tflite(
        op: &'static str,
        input_scale: f32,
        weight_scales: &[f32],
        out: &OutputQuant,
        shift_half_up: bool,
    ) -> Result<Self> {
        let mut r = Self::new(op, input_scale, weight_scales, out)?;
        let m = |ws: f32| FixedMultiplier::new(input_scale as f64 * ws as f64 / out.scale as f64);
        r.fixed = Some(weight_scales.iter().map(|&ws| m(ws)).collect());
        r.shift_half_up = shift_half_up;
        Ok(r)
    }

    /// Requantizes the accumulator of output channel `c`.
    #[inline]
    pub fn apply(&self, acc: i32, c: usize) -> i8 {
        if let Some(fixed) = &self.fixed {
            let f = if fixed.len() == 1 { fixed[0] } else { fixed[c] };
            let r = if self.shift_half_up { f.apply_shift_half_up(acc) } else { f.apply(acc) };
            return (r.saturating_add(self.zero_point)).clamp(self.lo, self.hi) as i8;
        }
        let m = if self.multipliers.len() == 1 { self.multipliers[0] } else { self.multipliers[c] };
        requantize(acc, m, self.zero_point, self.lo, self.hi) as i8
    }
}

/// Prepared int8 residual add (see module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddRequant {
    pub zero_point_a: i32,
    pub zero_point_b: i32,
    pub multiplier_a: f32,
    pub multiplier_b: f32,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl AddRequant {
    pub fn new(a: (f32, i32), b: (f32, i32), out: &OutputQuant) -> Result<Self> {
        let mult = |s: f32| -> Result<f32> {
            let m = round_multiplier_mantissa(s as f64 / out.scale as f64, ADD_MULTIPLIER_MANTISSA_BITS) as f32;
            if m.is_finite() && m > 0.0 {
                Ok(m)
            } else {
                Err(Error::invalid("add_i8", format!("multiplier {s} / {} is not a positive finite f32", out.scale)))
            }
        };
        let (lo, hi) = out.bounds();
        Ok(AddRequant {
            zero_point_a: a.1,
            zero_point_b: b.1,
            multiplier_a: mult(a.0)?,
            multiplier_b: mult(b.0)?,
            zero_point: out.zero_point,
            lo,
            hi,
        })
    }

    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let ta = (a as i32 - self.zero_point_a) as f32 * self.multiplier_a;
        let tb = (b as i32 - self.zero_point_b) as f32 * self.multiplier_b;
        (clamp_round(ta + tb, self.lo - self.zero_point, self.hi - self.zero_point) + self.zero_point) as i8
    }
}

/// onnxruntime's int8 add (see module docs), on int8-domain values: `offset` (128 for a uint8
/// file, else 0) restores the file's own integers before the arithmetic and is removed after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrtAddRequant {
    ratio_a: f32,
    ratio_b: f32,
    fixed: f32,
    offset: i32,
    lo: i32,
    hi: i32,
}

impl OrtAddRequant {
    pub fn new(a: (f32, i32), b: (f32, i32), out: &OutputQuant, offset: i32) -> Result<Self> {
        let (ratio_a, ratio_b) = (a.0 / out.scale, b.0 / out.scale);
        if !(ratio_a.is_finite() && ratio_b.is_finite() && ratio_a > 0.0 && ratio_b > 0.0) {
            return Err(Error::invalid("add_i8", format!("scales {} and {} over {}", a.0, b.0, out.scale)));
        }
        let (za, zb, zy) = ((a.1 + offset) as f32, (b.1 + offset) as f32, (out.zero_point + offset) as f32);
        let fixed = zy - (ratio_a * za + ratio_b * zb);
        let (lo, hi) = out.bounds();
        Ok(OrtAddRequant { ratio_a, ratio_b, fixed, offset, lo, hi })
    }

    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let (a, b) = ((a as i32 + self.offset) as f32, (b as i32 + self.offset) as f32);
        let t = a.mul_add(self.ratio_a, b.mul_add(self.ratio_b, self.fixed));
        // cvtps rounds half to even; packing saturates to the file's type.
        let r = t.round_ties_even().clamp(-32768.0, 32767.0) as i32;
        (r.clamp(-128 + self.offset, 127 + self.offset) - self.offset).clamp(self.lo, self.hi) as i8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantize_rounds_half_to_even_and_saturates() {
        // 5 * 0.5 = 2.5 -> 2 ; 7 * 0.5 = 3.5 -> 4 ; -5 * 0.5 = -2.5 -> -2
        assert_eq!(requantize(5, 0.5, 0, -128, 127), 2);
        assert_eq!(requantize(7, 0.5, 0, -128, 127), 4);
        assert_eq!(requantize(-5, 0.5, 0, -128, 127), -2);
        assert_eq!(requantize(1000, 1.0, 10, -128, 127), 127);
        assert_eq!(requantize(-1000, 1.0, 10, -128, 127), -128);
        assert_eq!(requantize(i32::MAX, 1e30, 0, -128, 127), 127);
        assert_eq!(requantize(i32::MIN, 1e30, 0, -128, 127), -128);
    }

    #[test]
    fn magic_rounding_equals_round_ties_even() {
        let mut x = -600.0f32;
        while x <= 600.0 {
            assert_eq!(round_half_even_small(x), x.round_ties_even(), "{x}");
            x += 0.125;
        }
        for &v in &[0.49999997f32, -0.49999997, 2.5000002, 4194303.5, -4194303.5] {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn fixed_point_multiplier_matches_tflite() {
        // QuantizeMultiplier(0.5) = (2^30, 0); (0.25) = (2^30, -1); (3.0) = (3 * 2^29, 2).
        assert_eq!(FixedMultiplier::new(0.5), FixedMultiplier { q31: 1 << 30, exponent: 0 });
        assert_eq!(FixedMultiplier::new(0.25), FixedMultiplier { q31: 1 << 30, exponent: -1 });
        assert_eq!(FixedMultiplier::new(3.0), FixedMultiplier { q31: 3 << 29, exponent: 2 });
        // Rounding: half away from zero at the final shift.
        let quarter = FixedMultiplier::new(0.25);
        assert_eq!([quarter.apply(2), quarter.apply(6), quarter.apply(-2), quarter.apply(-6)], [1, 2, -1, -2]);
        // Against exact rational arithmetic for many multipliers and accumulators. TFLite rounds
        // twice (the high multiply, then the shift by R), so the error bound is 0.5 + 0.5 / 2^R.
        for i in 1..200 {
            let m = i as f64 * 0.0007319;
            let f = FixedMultiplier::new(m);
            let bound = 0.5 + 0.5 / 2f64.powi((-f.exponent).max(0)) + 1e-9;
            for acc in [-100_000, -12_345, -7, 0, 1, 999, 54_321, 1 << 20] {
                let exact = acc as f64 * f.q31 as f64 * 2f64.powi(f.exponent - 31);
                assert!((f.apply(acc) as f64 - exact).abs() <= bound, "m {m} acc {acc}");
            }
        }
    }

    #[test]
    fn shift_half_up_differs_from_gemmlowp_on_negative_ties_only() {
        let quarter = FixedMultiplier::new(0.25); // q31 = 2^30, right shift 1
        assert_eq!([quarter.apply(2), quarter.apply(-2), quarter.apply(-6)], [1, -1, -2]);
        assert_eq!(
            [quarter.apply_shift_half_up(2), quarter.apply_shift_half_up(-2), quarter.apply_shift_half_up(-6)],
            [1, 0, -1]
        );
        for i in 1..100 {
            let f = FixedMultiplier::new(i as f64 * 0.00731);
            for acc in -3000..3000 {
                let (a, b) = (f.apply(acc), f.apply_shift_half_up(acc));
                assert!(a == b || (b == a + 1 && acc < 0), "m {} acc {acc}: {a} vs {b}", i as f64 * 0.00731);
            }
        }
    }

    #[test]
    fn relu6_bounds_follow_output_scale() {
        let q = OutputQuant::new(6.0 / 255.0, -128, Activation::Relu6).unwrap();
        assert_eq!(q.bounds(), (-128, 127));
        let q = OutputQuant::new(0.1, -10, Activation::Relu6).unwrap();
        assert_eq!(q.bounds(), (-10, 50));
        let q = OutputQuant::new(0.1, 5, Activation::Relu).unwrap();
        assert_eq!(q.bounds(), (5, 127));
    }

    #[test]
    fn split_conversion_equals_rust_conversion() {
        // The WGSL mirror's f32(acc >> 16) * 65536 + f32(acc & 0xffff) must equal `acc as f32`.
        for &acc in &[0, 1, -1, 16_777_217, -16_777_217, 33_554_435, i32::MAX, i32::MIN, 37_300_000, -37_300_001] {
            let split = ((acc >> 16) as f32) * 65536.0 + ((acc & 0xffff) as f32);
            assert_eq!(split, acc as f32, "acc {acc}");
        }
    }

    #[test]
    fn add_multiplier_products_are_exact() {
        let m = round_multiplier_mantissa(0.123456789, ADD_MULTIPLIER_MANTISSA_BITS) as f32;
        for x in -255i32..=255 {
            let p = x as f32 * m;
            assert_eq!(p as f64, x as f64 * m as f64, "x {x}");
        }
        assert!((m as f64 - 0.123456789).abs() / 0.123456789 < 2f64.powi(-15));
    }

    #[test]
    fn quantize_value_handles_nan_inf() {
        assert_eq!(quantize_value(f32::NAN, 0.1, 3, -128, 127), 3);
        assert_eq!(quantize_value(f32::INFINITY, 0.1, 3, -128, 127), 127);
        assert_eq!(quantize_value(f32::NEG_INFINITY, 0.1, 3, 0, 255), 0);
        assert_eq!(quantize_value(0.25, 0.1, 0, -128, 127), 2); // 2.5 -> 2
    }
}
