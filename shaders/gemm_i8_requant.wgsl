// gemm_i8_requant.wgsl: int8 GEMM with fused bias + per-channel requantization + clamp.
//   out[m, n] = requantize(bias_eff[n] + sum_t dot4(A[m, t], B[n, t]), mult[n], zp, lo, hi)
// A: [M, K4] u32, 4 x i8 per word along K (K zero-padded to a multiple of 4);
// B: [N, K4] likewise (weights, symmetric: zero point 0);
// bias_eff[n] = bias[n] - za * sum_k B[n, k] (folds the input zero point, computed at prepare
// time in wrapping i32, like the CPU's expansion); the i32 sum wraps like the CPU's.
// Output: [M, N] i32 holding int8 values. Dispatch: (ceil(N / 8), ceil(M / 8), 1), one
// invocation per output. Needs `dot4` (dot4_i8_*.wgsl) and `requantize` (requant.wgsl).
struct Params {
    m: u32,
    n: u32,
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
@group(0) @binding(3) var<storage, read> bias_eff: array<i32>;
@group(0) @binding(4) var<storage, read> mult: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let col = id.x;
    let row = id.y;
    if (col >= p.n || row >= p.m) {
        return;
    }
    var acc = bias_eff[col];
    for (var t = 0u; t < p.k4; t++) {
        acc += dot4(a[row * p.k4 + t], b[col * p.k4 + t]);
    }
    out[row * p.n + col] = requantize(acc, mult[col], p.zp, p.lo, p.hi);
}
