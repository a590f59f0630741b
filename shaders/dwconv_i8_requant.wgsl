// dwconv_i8_requant.wgsl: int8 depthwise convolution (any KH x KW, stride, padding) with fused
// bias + per-channel requantization + clamp, the spec of crate/ops/conv.rs (depthwise path):
//   acc[n, oy, ox, c] = bias[c] + sum_{ky, kx inside the input} (x[n, iy, ix, c] - zx) * w[c, ky, kx]
//   iy = oy * stride_h - pad_top + ky,  ix = ox * stride_w - pad_left + kx
//   out = requantize(acc, mult[c], zp, lo, hi)
// Layouts: x NHWC and out NHWC as one int8 value per i32 word; w [C, KH, KW] i32 (symmetric
// weights, zero point 0); bias [C] i32; mult [C] f32. Taps in the padding contribute nothing
// (a padded value equals zx). Dispatch: (ceil(C / 64), OW, N * OH), one invocation per output.
// Needs `requantize` (requant.wgsl).
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    zx: i32,
    zp: i32,
    lo: i32,
    hi: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read> wt: array<i32>;
@group(0) @binding(3) var<storage, read> bias: array<i32>;
@group(0) @binding(4) var<storage, read> mult: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let ch = id.x;
    let ox = id.y;
    let b = id.z / p.oh;
    let oy = id.z % p.oh;
    if (ch >= p.c || ox >= p.ow || b >= p.n) {
        return;
    }
    var acc = 0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let py = oy * p.stride_h + ky;
        if (py < p.pad_top || py - p.pad_top >= p.h) {
            continue;
        }
        let iy = py - p.pad_top;
        for (var kx = 0u; kx < p.kw; kx++) {
            let px = ox * p.stride_w + kx;
            if (px < p.pad_left || px - p.pad_left >= p.w) {
                continue;
            }
            let ix = px - p.pad_left;
            let xv = x[((b * p.h + iy) * p.w + ix) * p.c + ch] - p.zx;
            acc += xv * wt[(ch * p.kh + ky) * p.kw + kx];
        }
    }
    acc += bias[ch];
    out[((b * p.oh + oy) * p.ow + ox) * p.c + ch] = requantize(acc, mult[ch], p.zp, p.lo, p.hi);
}
