// int8_lanes.wgsl: activations and weights travel as 4 x i8 per u32 word, byte j = lane j
// (channel 4w + j, or k = 4t + j along a GEMM reduction), two's complement, channels
// zero-padded to a multiple of 4. These helpers are prepended to every kernel that touches
// individual lanes; they need no WGSL extension.

// The four lanes of `v`, sign-extended (extractBits on i32 sign-extends).
fn lanes(v: u32) -> vec4<i32> {
    let x = bitcast<i32>(v);
    return vec4<i32>(extractBits(x, 0u, 8u), extractBits(x, 8u, 8u), extractBits(x, 16u, 8u), extractBits(x, 24u, 8u));
}

// Four int8 values (already in [-128, 127]) packed into one word.
fn pack_lanes(q: vec4<i32>) -> u32 {
    let b = vec4<u32>(bitcast<vec4<u32>>(q) & vec4<u32>(0xffu));
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}
