// requant.wgsl: THE requantization, mirroring crate/quant/requant.rs `requantize` bit for bit.
//   a = f32(acc)                 exactly as Rust's `acc as f32` (round to nearest even): the two
//                                halves convert exactly, the product is exact, the sum rounds once
//   r = round(clamp(a * m, lo - zp, hi - zp))   WGSL round() is half-to-even; the bounds are
//                                integers, so clamping before rounding equals clamping after
//   q = i32(r) + zp              the zero point is added as an integer (no FMA can touch it)
fn requantize(acc: i32, m: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let a = f32(acc >> 16u) * 65536.0 + f32(acc & 0xffff);
    let r = round(clamp(a * m, f32(lo - zp), f32(hi - zp)));
    return i32(r) + zp;
}

// Per-channel constants of this requantization: four channels' f32 multipliers
// (requant_fixed.wgsl defines its own for TFLite's fixed point).
alias ChannelMult = vec4<f32>;

// requantize on four accumulators with their channels' multipliers, packed (needs `pack_lanes`).
fn requantize4(acc: vec4<i32>, m: ChannelMult, zp: i32, lo: i32, hi: i32) -> u32 {
    return pack_lanes(vec4<i32>(
        requantize(acc.x, m.x, zp, lo, hi),
        requantize(acc.y, m.y, zp, lo, hi),
        requantize(acc.z, m.z, zp, lo, hi),
        requantize(acc.w, m.w, zp, lo, hi),
    ));
}
