// global_sum_i8.wgsl: the integer half of global average pooling,
//   sum[n, c] = sum_{h, w} (x[n, h, w, c] - zx)          exact in i32 (H * W * 255 << 2^31)
// The embedding e = s_x * sum / (H * W) is finished on the CPU after the one small readback,
// exactly as crate/model/int8.rs computes it (WGSL's f32 division is not correctly rounded,
// so doing it here could not be bit-exact). Layouts: x [N, H, W, C4] u32 packed 4 x i8;
// sum [N, C] i32 (padded lanes are not written). Dispatch: (ceil(C4 / 64), N, 1), one
// invocation per (n, word of 4 channels). Needs `lanes`.
struct Params {
    n: u32,
    hw: u32,
    c: u32,
    c4: u32,
    zx: i32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> sum: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = id.x;
    let b = id.y;
    if (cw >= p.c4 || b >= p.n) {
        return;
    }
    var acc = vec4<i32>(0);
    for (var i = 0u; i < p.hw; i++) {
        acc += lanes(x[(b * p.hw + i) * p.c4 + cw]);
    }
    // sum (x - zx) = sum x - hw * zx, both exact in i32.
    acc -= vec4<i32>(i32(p.hw) * p.zx);
    for (var j = 0u; j < 4u; j++) {
        let c = 4u * cw + j;
        if (c < p.c) {
            sum[b * p.c + c] = acc[j];
        }
    }
}
