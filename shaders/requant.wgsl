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
