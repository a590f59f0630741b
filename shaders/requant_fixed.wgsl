// requant_fixed.wgsl: TFLite's fixed-point requantization, mirroring crate/quant/requant.rs
// `Requant::apply` with `fixed` multipliers bit for bit, in 32-bit integers (WGSL has no i64):
//   x = acc * 2^left, saturating                 left = max(e, 0)
//   s = floor((x * q31 + 2^30) / 2^31)            gemmlowp's SaturatingRoundingDoublingHighMul
//                                                 (its nudge and truncating division are this
//                                                 floor in both signs); the 64-bit product is
//                                                 built from 16-bit halves in `high_mul`
//   t = s / 2^right, ties away from zero          gemmlowp's RoundingDivideByPOT, right = max(-e, 0)
//       or ties up when SHIFT_HALF_UP             TF2 int8 files (`Requant::shift_half_up`)
//   q = clamp(t, lo - zp, hi - zp) + zp           = the CPU's saturating add, then clamp
// Per-channel constants: `ChannelMult` holds four channels' q31 and exponents. The host
// prepends `const SHIFT_HALF_UP: bool = ...;` and refuses exponents outside [-31, 30].
struct ChannelMult {
    q31: vec4<i32>,
    exponent: vec4<i32>,
}

// floor((a * b + 2^30) / 2^31), saturating the one overflow (MIN * MIN).
fn high_mul(a: i32, b: i32) -> i32 {
    if (a == b && a == -2147483647 - 1) {
        return 2147483647;
    }
    // The unsigned 64-bit product of the bit patterns, from four 16 x 16 products ...
    let ua = bitcast<u32>(a);
    let ub = bitcast<u32>(b);
    let a0 = ua & 0xffffu;
    let a1 = ua >> 16u;
    let b0 = ub & 0xffffu;
    let b1 = ub >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let mid = p01 + a1 * b0;
    let mid_carry = select(0u, 0x10000u, mid < p01);
    let lo = p00 + (mid << 16u);
    var hi = a1 * b1 + (mid >> 16u) + mid_carry + select(0u, 1u, lo < p00);
    // ... made signed: a = ua - 2^32 [a < 0], so subtract ub * 2^32 and ua * 2^32 (mod 2^64).
    if (a < 0) {
        hi -= ub;
    }
    if (b < 0) {
        hi -= ua;
    }
    // + 2^30, then bits 31..62 (the result fits in i32).
    let lo2 = lo + 0x40000000u;
    let hi2 = hi + select(0u, 1u, lo2 < lo);
    return bitcast<i32>((hi2 << 1u) | (lo2 >> 31u));
}

// x / 2^r rounded (0 <= r <= 31): ties up, or away from zero.
fn shift_rounded(x: i32, r: u32) -> i32 {
    if (r == 0u) {
        return x;
    }
    if (SHIFT_HALF_UP) {
        return (x >> r) + ((x >> (r - 1u)) & 1);
    }
    let mask = (1u << r) - 1u;
    let remainder = bitcast<u32>(x) & mask;
    let threshold = (mask >> 1u) + select(0u, 1u, x < 0);
    return (x >> r) + select(0, 1, remainder > threshold);
}

fn requantize_fixed(acc: i32, q31: i32, e: i32, zp: i32, lo: i32, hi: i32) -> i32 {
    var x = acc;
    if (e > 0) {
        let left = u32(e);
        if (acc > (2147483647 >> left)) {
            x = 2147483647;
        } else if (acc < -(1 << (31u - left))) {
            x = -2147483647 - 1;
        } else {
            x = acc << left;
        }
    }
    let t = shift_rounded(high_mul(x, q31), u32(max(-e, 0)));
    return clamp(t, lo - zp, hi - zp) + zp;
}

// Four accumulators with their channels' multipliers, packed (needs `pack_lanes`).
fn requantize4(acc: vec4<i32>, m: ChannelMult, zp: i32, lo: i32, hi: i32) -> u32 {
    return pack_lanes(vec4<i32>(
        requantize_fixed(acc.x, m.q31.x, m.exponent.x, zp, lo, hi),
        requantize_fixed(acc.y, m.q31.y, m.exponent.y, zp, lo, hi),
        requantize_fixed(acc.z, m.q31.z, m.exponent.z, zp, lo, hi),
        requantize_fixed(acc.w, m.q31.w, m.exponent.w, zp, lo, hi),
    ));
}
