// gemm_f32.wgsl: f32 GEMM, the float baseline the int8 kernels are measured against (same
// shape, same 4 x 4 register tile, same number of loads per step as gemm_i8_requant.wgsl):
//   out[m, n] = bias[n] + sum_k A[m, k] * B[n, k]
// A: [M, K4] vec4<f32> (K zero-padded to a multiple of 4); B: [N4 * 4, K4] vec4<f32> (padded
// rows zero); bias [N4] vec4<f32>; out [M, N4] vec4<f32>. Summation order: per output, the
// four lanes of each step through dot(), steps in K order (so results differ from a serial
// CPU sum by rounding only). Dispatch: (ceil(N4 / 8), ceil(M / 32), 1), 8 x 8 invocations.
struct Params {
    m: u32,
    n4: u32,
    k4: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = id.x;
    let r0 = id.y * 4u;
    if (cw >= p.n4 || r0 >= p.m) {
        return;
    }
    let last = p.m - 1u;
    let rows = vec4<u32>(r0, min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * p.k4;
    let cols = vec4<u32>(4u * cw, 4u * cw + 1u, 4u * cw + 2u, 4u * cw + 3u) * p.k4;
    var acc0 = bias[cw];
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    for (var t = 0u; t < p.k4; t++) {
        let b0 = b[cols.x + t];
        let b1 = b[cols.y + t];
        let b2 = b[cols.z + t];
        let b3 = b[cols.w + t];
        let a0 = a[rows.x + t];
        let a1 = a[rows.y + t];
        let a2 = a[rows.z + t];
        let a3 = a[rows.w + t];
        acc0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        acc1 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        acc2 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        acc3 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
    }
    out[r0 * p.n4 + cw] = acc0;
    if (r0 + 1u < p.m) {
        out[(r0 + 1u) * p.n4 + cw] = acc1;
    }
    if (r0 + 2u < p.m) {
        out[(r0 + 2u) * p.n4 + cw] = acc2;
    }
    if (r0 + 3u < p.m) {
        out[(r0 + 3u) * p.n4 + cw] = acc3;
    }
}
