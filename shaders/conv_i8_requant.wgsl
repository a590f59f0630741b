// conv_i8_requant.wgsl: int8 direct convolution, one group (groups = 1; any KH x KW, stride,
// padding, no dilation), with fused bias + per-channel requantization + clamp, the spec of
// crate/ops/conv.rs:
//   acc[n, oy, ox, oc] = bias[oc] + sum_{ky, kx inside the input, ci} (x[n, iy, ix, ci] - zx) * w[oc, ky, kx, ci]
//   iy = oy * stride_h - pad_top + ky,  ix = ox * stride_w - pad_left + kx
//   out = requantize(acc, mult[oc], zp, lo, hi)
// Computed as bias_eff[oc] + sum_taps dot4(x word, w word) with
// bias_eff[oc] = bias[oc] - zx * sum_{ky, kx, ci} w[oc, ky, kx, ci] (prepare time, wrapping i32):
// a tap in the padding reads the word `zx_word` (zx in all four lanes), whose dot product
// cancels exactly the zx * sum w of that tap that bias_eff took away, i.e. it adds nothing,
// as on the CPU. Asymmetric weights (zero points zw[oc], compiled with WEIGHT_ZERO_POINTS):
// the kernel also sums
// x over the window's real channels (padding taps read zx) into s and takes zw[oc] * s off;
// bias_eff then also holds + zw[oc] * KH * KW * Cin * zx, so the padding again adds nothing.
// Layouts (4 x i8 per u32, channels padded to a multiple of 4 with zero weights):
// x [N, H, W, Cin4] u32; w [Cout4 * 4, KH, KW, Cin4] u32 (OHWI, padded rows zero);
// bias_eff [2 * Cout4] vec4<i32> (bias_eff, then zw); mult [Cout4] ChannelMult (requant*.wgsl); out [N, OH, OW, Cout4] u32.
// Dispatch: (ceil(Cout4 / 8), ceil(OW / 8), N * OH), 8 x 8 invocations per workgroup, one
// output word (4 channels of one pixel) per invocation.
// Needs `dot4`, `requantize4` (requant.wgsl or requant_fixed.wgsl) and WEIGHT_ZERO_POINTS.
struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin4: u32,
    cout4: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    zx_word: u32,
    zp: i32,
    lo: i32,
    hi: i32,
    pad0: u32,
    cin: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> wt: array<u32>;
@group(0) @binding(3) var<storage, read> bias_eff: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> mult: array<ChannelMult>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = id.x;
    let ox = id.y;
    let b = id.z / p.oh;
    let oy = id.z % p.oh;
    if (cw >= p.cout4 || ox >= p.ow || b >= p.n) {
        return;
    }
    let taps = p.kh * p.kw * p.cin4;
    let w0 = 4u * cw * taps;
    var acc = bias_eff[cw];
    var s = 0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let py = oy * p.stride_h + ky;
        let row_inside = py >= p.pad_top && py - p.pad_top < p.h;
        for (var kx = 0u; kx < p.kw; kx++) {
            let px = ox * p.stride_w + kx;
            let inside = row_inside && px >= p.pad_left && px - p.pad_left < p.w;
            let xo = ((b * p.h + (py - p.pad_top)) * p.w + (px - p.pad_left)) * p.cin4;
            let wo = w0 + (ky * p.kw + kx) * p.cin4;
            for (var c = 0u; c < p.cin4; c++) {
                var xv = p.zx_word;
                if (inside) {
                    xv = x[xo + c];
                }
                acc += vec4<i32>(
                    dot4(xv, wt[wo + c]),
                    dot4(xv, wt[wo + taps + c]),
                    dot4(xv, wt[wo + 2u * taps + c]),
                    dot4(xv, wt[wo + 3u * taps + c]),
                );
                if (WEIGHT_ZERO_POINTS) {
                    // Ones in the lanes of real channels only (zx_word fills all four).
                    let real = min(p.cin - 4u * c, 4u);
                    s += dot4(xv, select(0x01010101u & ((1u << (8u * real)) - 1u), 0x01010101u, real >= 4u));
                }
            }
        }
    }
    if (WEIGHT_ZERO_POINTS) {
        acc -= bias_eff[p.cout4 + cw] * s;
    }
    out[((b * p.oh + oy) * p.ow + ox) * p.cout4 + cw] = requantize4(acc, mult[cw], p.zp, p.lo, p.hi);
}
