//! TFLite's integer arithmetic for the operators beyond convolution (whose fixed-point
//! requantization is [`FixedMultiplier`] in `requant`), so that imported TFLite files give
//! tflite-runtime's numbers bit for bit. Values are in the int8 domain; a uint8 file's are
//! shifted by 128 with their zero points, which every formula here sees only as `q - z`
//! except the average pool, which takes the offset back (see [`avg_round`]).
//!
//! Notation: `M(x, m)` is TFLite's `MultiplyByQuantizedMultiplier` with `m` from
//! `QuantizeMultiplier` ([`FixedMultiplier`]); `sat` clamps to the output's bounds.
//!
//! ```text
//! ADD    d = 2 * max(s_a, s_b)  (f32, exact)
//!        y = sat(M(M((a - z_a) << 20, s_a / d) + M((b - z_b) << 20, s_b / d), d / (2^20 s_y)) + z_y)
//! MUL    y = sat(M((a - z_a) * (b - z_b), f32(f32(s_a * s_b) / s_y)) + z_y)
//! MEAN   over n = H * W pixels, m = s_x / s_y:  k = min(floor(log2 n), 32, 31 + e_m),
//!        m' = (q_m << k) / n (integer division), e' = e_m - k,
//!        y = sat(M(sum (x - z_x), (m', e')) + z_y)
//! AVERAGE_POOL_2D (same grid in and out), count = taps inside the input:
//!        y = sat(round_half_away(sum x / count))         (on the file's own integers)
//! QUANTIZE (int8 -> int8)  y = sat(M(x - z_x, s_x / s_y) + z_y)
//! LOGISTIC y = sat(round_half_away(sigmoid_f32(s_x (x - z_x)) / s_y) + z_y)   (a table)
//! HARD_SWISH  TFLite's 16-bit fixed-point formula (`hard_swish_i8`), as a table
//! ```
//! Unary operators on int8 take 256 values, so each becomes a table of 256 outputs computed
//! once at prepare time with TFLite's own formula (`lut[x + 128]`).

use super::requant::{rounding_div_pow2, FixedMultiplier};
use crate::base::error::{Error, Result};
use crate::model::etm::ValueQuant;

/// TFLite's left shift of int8 ADD inputs (`left_shift = 20` for 8-bit types).
const ADD_LEFT_SHIFT: u32 = 20;

fn positive(op: &'static str, m: f64) -> Result<f64> {
    if m.is_finite() && m > 0.0 {
        Ok(m)
    } else {
        Err(Error::invalid(op, format!("multiplier {m} is not a positive finite number")))
    }
}

/// TFLite's int8 ADD, prepared once (see module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TfliteAdd {
    zero_a: i32,
    zero_b: i32,
    mult_a: FixedMultiplier,
    mult_b: FixedMultiplier,
    mult_out: FixedMultiplier,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl TfliteAdd {
    /// `a`, `b`: the inputs' grids; `(lo, hi)`: the output's bounds after its activation.
    pub fn new(a: ValueQuant, b: ValueQuant, out: ValueQuant, (lo, hi): (i32, i32)) -> Result<Self> {
        let twice_max = 2.0 * a.scale.max(b.scale) as f64;
        let shifted_out = ((1u32 << ADD_LEFT_SHIFT) as f32 * out.scale) as f64;
        Ok(TfliteAdd {
            zero_a: a.zero_point,
            zero_b: b.zero_point,
            mult_a: FixedMultiplier::new(positive("add", a.scale as f64 / twice_max)?),
            mult_b: FixedMultiplier::new(positive("add", b.scale as f64 / twice_max)?),
            mult_out: FixedMultiplier::new(positive("add", twice_max / shifted_out)?),
            zero_point: out.zero_point,
            lo,
            hi,
        })
    }

    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let ta = self.mult_a.apply((a as i32 - self.zero_a) << ADD_LEFT_SHIFT);
        let tb = self.mult_b.apply((b as i32 - self.zero_b) << ADD_LEFT_SHIFT);
        let sum = ta.saturating_add(tb);
        self.mult_out.apply(sum).saturating_add(self.zero_point).clamp(self.lo, self.hi) as i8
    }
}

/// TFLite's int8 MUL, prepared once (see module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TfliteMul {
    zero_a: i32,
    zero_b: i32,
    mult: FixedMultiplier,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl TfliteMul {
    pub fn new(a: ValueQuant, b: ValueQuant, out: ValueQuant, (lo, hi): (i32, i32)) -> Result<Self> {
        // TFLite multiplies and divides the float scales in f32, then widens.
        let m = (a.scale * b.scale / out.scale) as f64;
        Ok(TfliteMul {
            zero_a: a.zero_point,
            zero_b: b.zero_point,
            mult: FixedMultiplier::new(positive("mul", m)?),
            zero_point: out.zero_point,
            lo,
            hi,
        })
    }

    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let p = (a as i32 - self.zero_a) * (b as i32 - self.zero_b);
        self.mult.apply(p).saturating_add(self.zero_point).clamp(self.lo, self.hi) as i8
    }
}

/// TFLite's int8 MEAN over `count` pixels from grid `x` onto grid `y` (see module docs):
/// the multiplier that takes `sum (x - z_x)` to `y - z_y`.
pub fn mean_multiplier(x: ValueQuant, y: ValueQuant, count: usize) -> Result<FixedMultiplier> {
    let m = FixedMultiplier::new(positive("mean", x.scale as f64 / y.scale as f64)?);
    if count == 0 {
        return Err(Error::invalid("mean", "a mean over no pixels"));
    }
    let k = (usize::BITS - 1 - count.leading_zeros()).min(32) as i32;
    let k = k.min(31 + m.exponent).max(0);
    let q31 = (((m.q31 as i64) << k) / count as i64) as i32;
    Ok(FixedMultiplier { q31, exponent: m.exponent - k })
}

/// `sum / count` rounded half away from zero, as TFLite's integer average pools round, on
/// the file's own integers: `offset` (128 for a uint8 file, else 0) is added to each of the
/// `count` int8-domain values summed in `sum` before the division and taken off after.
#[inline]
pub fn avg_round(sum: i32, count: usize, offset: i32) -> i32 {
    let n = count.max(1) as i64;
    let acc = sum as i64 + offset as i64 * n;
    let q = if acc > 0 { (acc + n / 2) / n } else { (acc - n / 2) / n };
    q as i32 - offset
}

/// A 256-entry table `lut[x + 128]` of an int8 elementwise operator.
pub type Lut = [i8; 256];

fn table(f: impl Fn(i32) -> i32) -> Box<Lut> {
    let mut lut = Box::new([0i8; 256]);
    for (k, v) in lut.iter_mut().enumerate() {
        *v = f(k as i32 - 128).clamp(-128, 127) as i8;
    }
    lut
}

/// QUANTIZE from int8 grid `x` to int8 grid `y` (requantization inside the graph).
pub fn requantize_lut(x: ValueQuant, y: ValueQuant) -> Result<Box<Lut>> {
    let m = FixedMultiplier::new(positive("quantize", x.scale as f64 / y.scale as f64)?);
    Ok(table(|q| m.apply(q - x.zero_point).saturating_add(y.zero_point)))
}

/// LOGISTIC: TFLite's table, filled in f32 (`LUTPopulate`): the dequantized input, the
/// sigmoid `1 / (1 + exp(-v))`, times `1 / s_y`, rounded half away from zero.
pub fn logistic_lut(x: ValueQuant, y: ValueQuant) -> Box<Lut> {
    let inverse = 1.0f32 / y.scale;
    table(|q| {
        let v = x.scale * (q - x.zero_point) as f32;
        let s = 1.0f32 / (1.0f32 + (-v).exp());
        ((s * inverse).round() as i32).saturating_add(y.zero_point)
    })
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul` on 16-bit values.
fn sat_rounding_doubling_high_mul_i16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// The same without rounding (truncates toward zero; ARM's SQDMULH).
fn sat_doubling_high_mul_i16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    ((a as i32 * b as i32) / (1 << 15)) as i16
}

fn sat_left_shift_i16(v: i16, amount: i32) -> i16 {
    ((v as i64) << amount.clamp(0, 40)).clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// A Q31 multiplier rounded to Q15 (TFLite's `DownScaleInt32ToInt16Multiplier`).
fn q15(m: FixedMultiplier) -> i16 {
    if m.q31 >= i32::MAX - (1 << 15) {
        return i16::MAX;
    }
    ((m.q31 + (1 << 15)) >> 16) as i16
}

/// HARD_SWISH `x * relu6(x + 3) / 6` in TFLite's 16-bit fixed point, as a table.
pub fn hard_swish_lut(x: ValueQuant, y: ValueQuant) -> Result<Box<Lut>> {
    let hires = x.scale / 128.0;
    let out = FixedMultiplier::new(positive("hard_swish", (hires / y.scale) as f64)?);
    if out.exponent > 0 {
        return Err(Error::unsupported(format!(
            "HARD_SWISH from scale {} onto {}: TFLite itself requires the output scale above 1/128 of the input's",
            x.scale, y.scale
        )));
    }
    let reluish = FixedMultiplier::new(positive("hard_swish", (hires / (3.0f32 / 32768.0)) as f64)?);
    let (out_m, reluish_m) = (q15(out), q15(reluish));
    Ok(table(|q| {
        let v = (q - x.zero_point) as i16;
        let hires_v = v.wrapping_mul(1 << 7);
        let preshift = sat_rounding_doubling_high_mul_i16(hires_v, out_m);
        let mut r = hires_v;
        if reluish.exponent > 0 {
            r = sat_left_shift_i16(r, reluish.exponent - 1);
        }
        r = sat_rounding_doubling_high_mul_i16(r, reluish_m);
        if reluish.exponent > 0 {
            r = sat_left_shift_i16(r, 1);
        }
        if reluish.exponent < 0 {
            r = rounding_div_pow2(r as i32, (-reluish.exponent) as u32) as i16;
        }
        let r = ((r as i32 + (1 << 15)) >> 1) as i16;
        let pre = sat_doubling_high_mul_i16(r, preshift);
        rounding_div_pow2(pre as i32, (-out.exponent) as u32) + y.zero_point
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scale: f32, zero_point: i32) -> ValueQuant {
        ValueQuant { scale, zero_point }
    }

    #[test]
    fn add_is_the_sum_within_one_step() {
        let (a, b, y) = (q(0.05, -3), q(0.031, 10), q(0.07, 2));
        let add = TfliteAdd::new(a, b, y, (-128, 127)).unwrap();
        for x in (-128..=127).step_by(5) {
            for z in (-128..=127).step_by(7) {
                let real = a.scale * (x - a.zero_point) as f32 + b.scale * (z - b.zero_point) as f32;
                let exact = (real / y.scale + y.zero_point as f32).clamp(-128.0, 127.0);
                let got = add.apply(x as i8, z as i8) as f32;
                assert!((got - exact).abs() <= 1.0, "{x} + {z}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn mul_is_the_product_within_one_step() {
        let (a, b, y) = (q(0.02, 5), q(1.0 / 256.0, -128), q(0.015, -7));
        let mul = TfliteMul::new(a, b, y, (-128, 127)).unwrap();
        for x in (-128..=127).step_by(3) {
            for z in (-128..=127).step_by(11) {
                let real = a.scale * (x - a.zero_point) as f32 * b.scale * (z - b.zero_point) as f32;
                let exact = (real / y.scale + y.zero_point as f32).clamp(-128.0, 127.0);
                let got = mul.apply(x as i8, z as i8) as f32;
                assert!((got - exact).abs() <= 1.0, "{x} * {z}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn mean_multiplier_divides_by_the_count() {
        // Same grid: the mean of n equal values is that value.
        for n in [1usize, 3, 9, 49, 1024, 50_000] {
            let m = mean_multiplier(q(0.1, 0), q(0.1, 0), n).unwrap();
            assert!(m.exponent >= -31, "n {n}");
            for v in [-128, -5, 0, 7, 127] {
                assert_eq!(m.apply(v * n as i32), v, "n {n} v {v}");
            }
        }
    }

    #[test]
    fn average_rounding_is_half_away_from_zero() {
        assert_eq!([avg_round(5, 2, 0), avg_round(-5, 2, 0), avg_round(4, 3, 0), avg_round(-4, 3, 0)], [3, -3, 1, -1]);
        // uint8 files round their own non-negative integers half up: -128 + 128 = 0 ...
        assert_eq!(avg_round(-255, 2, 128), -127); // (1 + 0) / 2 = 0.5 -> 1 -> -127
    }

    #[test]
    fn tables_follow_their_functions() {
        let (x, y) = (q(0.05, 3), q(0.04, -20));
        let id = requantize_lut(x, y).unwrap();
        let sig = logistic_lut(x, q(1.0 / 256.0, -128));
        let hs = hard_swish_lut(x, y).unwrap();
        for v in -128..=127i32 {
            let real = x.scale * (v - x.zero_point) as f32;
            let on_y = |r: f32| (r / y.scale + y.zero_point as f32).clamp(-128.0, 127.0);
            assert!((id[(v + 128) as usize] as f32 - on_y(real)).abs() <= 0.5 + 1e-3, "requantize {v}");
            let s = 1.0 / (1.0 + (-real).exp());
            assert!((sig[(v + 128) as usize] as f32 - (s * 256.0 - 128.0).clamp(-128.0, 127.0)).abs() <= 0.5 + 1e-3);
            let h = real * (real + 3.0).clamp(0.0, 6.0) / 6.0;
            assert!((hs[(v + 128) as usize] as f32 - on_y(h)).abs() <= 1.0, "hard_swish {v}");
        }
    }
}
