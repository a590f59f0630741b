// conv_i8_requant.wgsl: int8 direct convolution (regular, grouped or depthwise; any KH x KW,
// stride, padding; no dilation) with fused bias + per-channel requantization + clamp, the spec
// of crate/ops/conv.rs:
//   acc[n, oy, ox, oc] = bias[oc] + sum_{ky, kx inside the input, ci < Cin_g}
//                        (x[n, iy, ix, g * Cin_g + ci] - zx) * w[oc, ky, kx, ci],  g = oc / Cout_g
//   iy = oy * stride_h - pad_top + ky,  ix = ox * stride_w - pad_left + kx
//   out = requantize(acc, mult[oc], zp, lo, hi)
// Layouts: x NHWC (C = Cin) and out NHWC (C = Cout) as one int8 value per i32 word; w OHWI
// [Cout, KH, KW, Cin_g] i32 (symmetric weights, zero point 0); bias [Cout] i32; mult [Cout] f32.
// Taps in the padding contribute nothing (a padded value equals zx). Pointwise convolutions go
// to the GEMM kernel instead. Dispatch: (ceil(Cout / 64), OW, N * OH), one invocation per output.
// Needs `requantize` (requant.wgsl).
struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    cin_g: u32,
    cout_g: u32,
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
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read> wt: array<i32>;
@group(0) @binding(3) var<storage, read> bias: array<i32>;
@group(0) @binding(4) var<storage, read> mult: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let oc = id.x;
    let ox = id.y;
    let b = id.z / p.oh;
    let oy = id.z % p.oh;
    if (oc >= p.cout || ox >= p.ow || b >= p.n) {
        return;
    }
    let ci0 = (oc / p.cout_g) * p.cin_g;
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
            let xo = ((b * p.h + iy) * p.w + ix) * p.cin + ci0;
            let wo = ((oc * p.kh + ky) * p.kw + kx) * p.cin_g;
            for (var ci = 0u; ci < p.cin_g; ci++) {
                acc += (x[xo + ci] - p.zx) * wt[wo + ci];
            }
        }
    }
    acc += bias[oc];
    out[((b * p.oh + oy) * p.ow + ox) * p.cout + oc] = requantize(acc, mult[oc], p.zp, p.lo, p.hi);
}
