// global_sum_i8.wgsl: the integer half of global average pooling,
//   sum[n, c] = sum_{h, w} (x[n, h, w, c] - zx)          exact in i32 (H * W * 255 << 2^31)
// The embedding e = s_x * sum / (H * W) is finished on the CPU after the one small readback,
// exactly as crate/model/int8.rs computes it (WGSL's f32 division is not correctly rounded,
// so doing it here could not be bit-exact). Layouts: x NHWC as one int8 value per i32 word;
// sum [N, C] i32. Dispatch: (ceil(C / 64), N, 1), one invocation per (n, c).
struct Params {
    n: u32,
    hw: u32,
    c: u32,
    zx: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read_write> sum: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let ch = id.x;
    let b = id.y;
    if (ch >= p.c || b >= p.n) {
        return;
    }
    var acc = 0;
    for (var i = 0u; i < p.hw; i++) {
        acc += x[(b * p.hw + i) * p.c + ch] - p.zx;
    }
    sum[b * p.c + ch] = acc;
}
