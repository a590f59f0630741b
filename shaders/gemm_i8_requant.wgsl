// gemm_i8_requant.wgsl: int8 GEMM with fused bias + per-channel requantization + clamp
// (pointwise convolutions and dense layers on packed activations):
//   out[m, n] = requantize(bias_eff[n] + sum_t dot4(A[m, t], B[n, t]), mult[n], zp, lo, hi)
// A: [M, K4] u32, 4 x i8 per word along K (an NHWC activation with C = K, channels padded
// to a multiple of 4); B: [N4 * 4, K4] u32 weights (padded lanes and padded rows are zero,
// so they add nothing); bias_eff [2 * N4] vec4<i32>: first
// bias_eff[n] = bias[n] - za * sum_k B[n, k] + zw[n] * K * za (folds the input zero point,
// computed at prepare time in wrapping i32 like the CPU's expansion; exact whenever the CPU's
// accumulator is), then the weights' zero points zw[n] (asymmetric weights, as uint8 TFLite
// files have). Compiled with WEIGHT_ZERO_POINTS the kernel also sums each row of A and takes
// zw[n] * rowsum(A[m]) off: sum_k (A - za) (B - zw) expanded;
// mult [N4] ChannelMult (requant*.wgsl: four channels' multipliers). Output: [M, N4] u32,
// packed like A, ready for the next layer.
// Register tile: each invocation computes 4 rows x 4 columns (one output word per row), so
// each A word is used 4 times and each B word 4 times from registers.
// Dispatch: (ceil(N4 / 8), ceil(M / 32), 1) with 8 x 8 invocations per workgroup.
// Needs `dot4` (dot4_i8_*.wgsl), `requantize4` (requant.wgsl or requant_fixed.wgsl) and the
// constant WEIGHT_ZERO_POINTS (gpu::kernel::zero_points_wgsl).
struct Params {
    m: u32,
    n4: u32,
    k4: u32,
    zp: i32,
    lo: i32,
    hi: i32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> bias_eff: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> mult: array<ChannelMult>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = id.x;
    let r0 = id.y * 4u;
    if (cw >= p.n4 || r0 >= p.m) {
        return;
    }
    // Rows past M repeat the last row (cheaper than branching); their results are not stored.
    let last = p.m - 1u;
    let rows = vec4<u32>(r0, min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * p.k4;
    let cols = vec4<u32>(4u * cw, 4u * cw + 1u, 4u * cw + 2u, 4u * cw + 3u) * p.k4;
    let bias = bias_eff[cw];
    var acc0 = bias;
    var acc1 = bias;
    var acc2 = bias;
    var acc3 = bias;
    var rowsum = vec4<i32>(0);
    for (var t = 0u; t < p.k4; t++) {
        let b0 = b[cols.x + t];
        let b1 = b[cols.y + t];
        let b2 = b[cols.z + t];
        let b3 = b[cols.w + t];
        let a0 = a[rows.x + t];
        let a1 = a[rows.y + t];
        let a2 = a[rows.z + t];
        let a3 = a[rows.w + t];
        acc0 += vec4<i32>(dot4(a0, b0), dot4(a0, b1), dot4(a0, b2), dot4(a0, b3));
        acc1 += vec4<i32>(dot4(a1, b0), dot4(a1, b1), dot4(a1, b2), dot4(a1, b3));
        acc2 += vec4<i32>(dot4(a2, b0), dot4(a2, b1), dot4(a2, b2), dot4(a2, b3));
        acc3 += vec4<i32>(dot4(a3, b0), dot4(a3, b1), dot4(a3, b2), dot4(a3, b3));
        if (WEIGHT_ZERO_POINTS) {
            let ones = 0x01010101u;
            rowsum += vec4<i32>(dot4(a0, ones), dot4(a1, ones), dot4(a2, ones), dot4(a3, ones));
        }
    }
    if (WEIGHT_ZERO_POINTS) {
        let zw = bias_eff[p.n4 + cw];
        acc0 -= zw * rowsum.x;
        acc1 -= zw * rowsum.y;
        acc2 -= zw * rowsum.z;
        acc3 -= zw * rowsum.w;
    }
    let m = mult[cw];
    out[r0 * p.n4 + cw] = requantize4(acc0, m, p.zp, p.lo, p.hi);
    if (r0 + 1u < p.m) {
        out[(r0 + 1u) * p.n4 + cw] = requantize4(acc1, m, p.zp, p.lo, p.hi);
    }
    if (r0 + 2u < p.m) {
        out[(r0 + 2u) * p.n4 + cw] = requantize4(acc2, m, p.zp, p.lo, p.hi);
    }
    if (r0 + 3u < p.m) {
        out[(r0 + 3u) * p.n4 + cw] = requantize4(acc3, m, p.zp, p.lo, p.hi);
    }
}
