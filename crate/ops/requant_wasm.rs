//! Requantization of i32 accumulators with WebAssembly SIMD (wasm32 + `simd128`), four
//! channels per step, in both arithmetics of [`crate::quant::requant`], bit-identical to the
//! scalar [`Requant::apply`]. The GEMM and depthwise kernels fuse it into their stores
//! ([`Requant4`]); [`requantize_rows`] is the unfused form.
//!
//! # The engine's float multiplier ([`FloatRequant`])
//! ```text
//! q = nearest_even(clamp(f32(acc) * m[c], lo - zp, hi - zp)) + zp
//! ```
//! `f32x4.convert_i32x4_s` (round to nearest even, like `as f32`), one `f32x4.mul`,
//! `pmax`/`pmin` against the integer bounds, then the scalar code's rounding: add `1.5 * 2^23`
//! (ties to even) and subtract its bit pattern as integers, then the zero point as an
//! integer. Every step is a single x86 instruction in V8 (`f32x4.nearest` and `trunc_sat`
//! cost several, and made requantization a third of the depthwise time).
//!
//! # TFLite's fixed point ([`FixedRequant`])
//! With `q31[c]` and right shift `r[c] = -exponent[c]` (`0 <= r <= 30`, no left shift):
//! ```text
//! s = (acc * q31 + 2^30) >> 31                        in i64: SaturatingRoundingDoublingHighMul
//! t = (s * 2^(30 - r) + H - [s < 0] * N) >> 30       in i64: RoundingDivideByPOT(s, r)
//!     H = 2^29, N = 2^(30 - r) when r >= 1;  H = N = 0 when r = 0
//!     N = 0 also with `Requant::shift_half_up` (TF2 int8 files: every tie rounds up)
//! q = clamp(t, lo - zp, hi - zp) + zp
//! ```
//! Why these equal gemmlowp's: for `ab = acc * q31`, the nudge `ab >= 0 ? 2^30 : 1 - 2^30`
//! followed by a division truncating toward zero is `floor((ab + 2^30) / 2^31)` in both signs
//! (for `ab < 0`, truncation adds `2^31 - 1` before flooring). `RoundingDivideByPOT` rounds
//! half away from zero: `floor((s + 2^(r-1) - [s < 0]) / 2^r)`; multiplying numerator and
//! denominator by `2^(30 - r)` turns the per-channel shift, which wasm SIMD lacks (shift counts
//! are per vector), into a per-lane multiply and one common shift. Both products are exact in
//! i64 (`|s| < 2^31`), and only the low 32 bits of each shift are kept, so the logical 64-bit
//! shift (one x86 instruction) serves for the arithmetic one. Clamping before adding the zero
//! point equals the scalar saturating add then clamp. A left shift (multiplier >= 1) or
//! `r > 30` takes the scalar path ([`ChannelRequant::new`] returns `None`).
//!
//! Results leave as i32 lanes in `[lo, hi]`; sixteen are narrowed with saturation (a no-op)
//! to i8 and stored at once.

use core::arch::wasm32::*;

use crate::base::error::Result;
use crate::quant::Requant;

/// Four accumulators of channels `c..c + 4` requantized, as i32 lanes in `[lo, hi]`.
pub(super) trait Requant4 {
    fn apply4(&self, acc: v128, c: usize) -> v128;
    /// The same for one accumulator (row tails).
    fn apply1(&self, acc: i32, c: usize) -> i8;
}

/// The SIMD form of a [`Requant`] for `n` channels, its per-channel constants padded with
/// zero channels to a multiple of 8 (the GEMM's channel block).
pub(super) enum ChannelRequant<'a> {
    Float(FloatRequant<'a>),
    Fixed(FixedRequant<'a>),
}

impl<'a> ChannelRequant<'a> {
    /// `None` when the SIMD path does not cover `rq` (a TFLite multiplier with a left shift or
    /// a right shift over 30); the caller then takes the scalar path.
    pub(super) fn new(rq: &'a Requant, n: usize) -> Result<Option<Self>> {
        let np = n.div_ceil(8) * 8;
        let (zp, lo, hi) = (rq.zero_point, rq.lo, rq.hi);
        let Some(fixed) = &rq.fixed else {
            let mut mults = vec![0f32; np];
            mults[..n].copy_from_slice(&rq.per_channel(n)?);
            let bounds = (f32x4_splat((lo - zp) as f32), f32x4_splat((hi - zp) as f32));
            return Ok(Some(ChannelRequant::Float(FloatRequant { rq, mults, bounds, zp: i32x4_splat(zp) })));
        };
        if fixed.iter().any(|f| !(-30..=0).contains(&f.exponent)) {
            return Ok(None);
        }
        let at = |c: usize| if fixed.len() == 1 { fixed[0] } else { fixed[c] };
        if fixed.len() != 1 && fixed.len() != n {
            return Err(crate::base::error::Error::shape(
                "requantize",
                format!("{} multipliers for {n} channels", fixed.len()),
            ));
        }
        let mut f = FixedRequant {
            rq,
            q31: vec![0; np],
            scale: vec![0; np],
            half: vec![0; np],
            negative: vec![0; np],
            bounds: (i32x4_splat(lo - zp), i32x4_splat(hi - zp)),
            zp: i32x4_splat(zp),
        };
        for c in 0..n {
            let m = at(c);
            let r = (-m.exponent) as u32;
            f.q31[c] = m.q31;
            f.scale[c] = 1 << (30 - r);
            if r >= 1 {
                f.half[c] = 1 << 29;
                // Ties of negative values go away from zero (gemmlowp), or up like the rest
                // (`Requant::shift_half_up`, TF2's int8 files).
                f.negative[c] = if rq.shift_half_up { 0 } else { 1 << (30 - r) };
            }
        }
        Ok(Some(ChannelRequant::Fixed(f)))
    }
}

/// The engine's float-multiplier requantization (module docs).
pub(super) struct FloatRequant<'a> {
    rq: &'a Requant,
    mults: Vec<f32>,
    /// `[lo - zp, hi - zp]` in f32.
    bounds: (v128, v128),
    zp: v128,
}

impl Requant4 for FloatRequant<'_> {
    #[inline(always)]
    fn apply4(&self, acc: v128, c: usize) -> v128 {
        let f = f32x4_mul(f32x4_convert_i32x4(acc), load4(&self.mults, c));
        // pmax/pmin (one x86 instruction each; the NaN- and zero-sign-exact max/min are several)
        // equal max/min here: no operand is NaN, and a -0.0 result rounds to 0 like +0.0.
        let f = f32x4_pmin(f32x4_pmax(f, self.bounds.0), self.bounds.1);
        // Round half to even as the scalar code does: adding 1.5 * 2^23 leaves the integer in the
        // low mantissa bits (|f| <= 510), so the bit patterns' difference is that integer.
        let r = f32x4_add(f, f32x4_splat(ROUND_MAGIC));
        i32x4_add(i32x4_sub(r, i32x4_splat(ROUND_MAGIC.to_bits() as i32)), self.zp)
    }

    fn apply1(&self, acc: i32, c: usize) -> i8 {
        self.rq.apply(acc, c)
    }
}

/// TFLite's fixed-point requantization (module docs), per channel `c`: `q31`, `scale =
/// 2^(30 - r)`, `half = H`, `negative = N`.
pub(super) struct FixedRequant<'a> {
    rq: &'a Requant,
    q31: Vec<i32>,
    scale: Vec<i32>,
    half: Vec<i32>,
    negative: Vec<i32>,
    /// `[lo - zp, hi - zp]`.
    bounds: (v128, v128),
    zp: v128,
}

/// The low 32 bits of `(v + add) >> shift` for two i64 lanes each of `lo` and `hi`, as four
/// i32 lanes (the logical shift's low bits equal the arithmetic one's for `shift <= 32`).
#[inline(always)]
fn shift_pairs(lo: v128, hi: v128, add_lo: v128, add_hi: v128, shift: u32) -> v128 {
    let lo = u64x2_shr(i64x2_add(lo, add_lo), shift);
    let hi = u64x2_shr(i64x2_add(hi, add_hi), shift);
    i32x4_shuffle::<0, 2, 4, 6>(lo, hi)
}

impl Requant4 for FixedRequant<'_> {
    #[inline(always)]
    fn apply4(&self, acc: v128, c: usize) -> v128 {
        let q = load4(&self.q31, c);
        let nudge = i64x2_splat(1 << 30);
        let s = shift_pairs(i64x2_extmul_low_i32x4(acc, q), i64x2_extmul_high_i32x4(acc, q), nudge, nudge, 31);
        let scale = load4(&self.scale, c);
        // H - [s < 0] * N, in [-2^29, 2^29]: fits the i32 lanes.
        let adjust = i32x4_sub(load4(&self.half, c), v128_and(i32x4_shr(s, 31), load4(&self.negative, c)));
        let t = shift_pairs(
            i64x2_extmul_low_i32x4(s, scale),
            i64x2_extmul_high_i32x4(s, scale),
            i64x2_extend_low_i32x4(adjust),
            i64x2_extend_high_i32x4(adjust),
            30,
        );
        i32x4_add(i32x4_min(i32x4_max(t, self.bounds.0), self.bounds.1), self.zp)
    }

    fn apply1(&self, acc: i32, c: usize) -> i8 {
        self.rq.apply(acc, c)
    }
}

#[inline(always)]
fn load4<T: Copy>(s: &[T], at: usize) -> v128 {
    assert!(core::mem::size_of::<T>() == 4 && s.len() >= at + 4);
    // SAFETY: `s[at..at + 4]` holds 16 bytes (asserted); wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().add(at) as *const v128) }
}

/// `1.5 * 2^23`, as in [`crate::quant::requant`].
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `out[r * c + j] = rq.apply(acc[r * c + j], j)` for rows of `c` channels: blocks of 16
/// channels, then 8 and 4 (MobileNets' narrow layers have 8 or 24), then single channels.
pub(super) fn requantize_rows<R: Requant4>(acc: &[i32], c: usize, rq: &R, out: &mut [i8]) {
    let c = c.max(1);
    let one = |a: &[i32], j: usize| -> v128 { rq.apply4(load4(a, j), j) };
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        let mut j = 0;
        while j + 16 <= c {
            let (v0, v1, v2, v3) = (one(arow, j), one(arow, j + 4), one(arow, j + 8), one(arow, j + 12));
            let q = i8x16_narrow_i16x8(i16x8_narrow_i32x4(v0, v1), i16x8_narrow_i32x4(v2, v3));
            let dst = &mut orow[j..j + 16];
            // SAFETY: `dst` holds exactly 16 bytes; v128_store has no alignment requirement.
            unsafe { v128_store(dst.as_mut_ptr() as *mut v128, q) };
            j += 16;
        }
        if j + 8 <= c {
            let q16 = i16x8_narrow_i32x4(one(arow, j), one(arow, j + 4));
            let dst = &mut orow[j..j + 8];
            // SAFETY: `dst` holds exactly 8 bytes, what the 64-bit lane store writes.
            unsafe { v128_store64_lane::<0>(i8x16_narrow_i16x8(q16, q16), dst.as_mut_ptr() as *mut u64) };
            j += 8;
        }
        if j + 4 <= c {
            let v = one(arow, j);
            let q16 = i16x8_narrow_i32x4(v, v);
            let dst = &mut orow[j..j + 4];
            // SAFETY: `dst` holds exactly 4 bytes, what the 32-bit lane store writes.
            unsafe { v128_store32_lane::<0>(i8x16_narrow_i16x8(q16, q16), dst.as_mut_ptr() as *mut u32) };
            j += 4;
        }
        for (k, (o, &a)) in orow.iter_mut().zip(arow).enumerate().skip(j) {
            *o = rq.apply1(a, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Activation, OutputQuant};

    /// Accumulators that reach every branch: zero, small, the rounding ties of each shift,
    /// and the i32 extremes.
    fn accumulators(seed: u32) -> Vec<i32> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let mut v: Vec<i32> = vec![0, 1, -1, i32::MAX, i32::MIN, i32::MIN + 1, i32::MAX - 1];
        for e in 0..31 {
            v.extend([1 << e, -(1 << e), (1 << e) + (1 << e >> 1), -((1 << e) + (1 << e >> 1))]);
        }
        v.extend((0..4000).map(|k| {
            let r = next() as i32;
            // Mostly the sizes real layers produce, some anywhere in i32.
            if k % 4 == 0 {
                r
            } else {
                r >> (next() % 24)
            }
        }));
        v
    }

    fn check(rq: &Requant, c: usize, acc: &[i32]) {
        let cr = ChannelRequant::new(rq, c).unwrap().expect("covered by the SIMD path");
        let rows = acc.len() / c;
        let acc = &acc[..rows * c];
        let mut out = vec![0i8; acc.len()];
        match &cr {
            ChannelRequant::Float(f) => requantize_rows(acc, c, f, &mut out),
            ChannelRequant::Fixed(f) => requantize_rows(acc, c, f, &mut out),
        }
        for (k, (&o, &a)) in out.iter().zip(acc).enumerate() {
            assert_eq!(o, rq.apply(a, k % c), "acc {a} channel {}", k % c);
        }
    }

    #[test]
    fn simd_requantization_equals_the_scalar_one_in_both_arithmetics() {
        for (seed, act) in [(1u32, Activation::None), (7, Activation::Relu), (99, Activation::Relu6)] {
            for c in [37usize, 8, 24, 4, 3] {
                // 37: two 16-channel blocks, a 4-block and a scalar tail; 24: a 16- and an 8-block
                let out = OutputQuant::new(0.021, -5, act).unwrap();
                // Multipliers from about 2^-31 to just under 1: right shifts 0 to 30.
                let scales: Vec<f32> = (0..c).map(|k| 0.9 * 0.55f32.powi(k as i32 % 36)).collect();
                let acc = accumulators(seed);
                check(&Requant::new("t", 0.021, &scales, &out).unwrap(), c, &acc);
                check(&Requant::tflite("t", 0.021, &scales, &out, false).unwrap(), c, &acc);
                check(&Requant::tflite("t", 0.021, &scales, &out, true).unwrap(), c, &acc);
                // One per-tensor multiplier (uint8 TFLite files).
                check(&Requant::tflite("t", 0.021, &[0.0123], &out, false).unwrap(), c, &acc);
            }
        }
    }

    #[test]
    fn multipliers_the_simd_path_does_not_cover_are_refused() {
        let out = OutputQuant::new(0.01, 0, Activation::None).unwrap();
        // Multiplier 3 needs a left shift.
        assert!(ChannelRequant::new(&Requant::tflite("t", 0.03, &[1.0], &out, false).unwrap(), 4).unwrap().is_none());
    }
}
