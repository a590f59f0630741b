// depthwise_i8_requant.wgsl: int8 depthwise convolution (groups = C = Cout, one filter per
// channel; any KH x KW, stride, padding, no dilation) with fused bias + per-channel
// requantization + clamp, the spec of crate/ops/depthwise.rs (depthwise_i8_ref, requantized):
//   acc[n, oy, ox, c] = bias[c] + sum_{ky, kx inside the input} (x[n, iy, ix, c] - zx) * (w[c, ky, kx] - zw[c])
//   out = requantize(acc, mult[c], zp, lo, hi)
// Lane-wise: each invocation owns one word (4 channels) of 4 adjacent output pixels; taps in
// the padding are skipped, as on the CPU.
// Layouts: x [N, H, W, C4] u32; w [KH, KW, C4] u32 (the filter of channel c in lane c % 4 of
// word c / 4, padded channels zero); bias [2 * C4] vec4<i32> (the biases, then the weights'
// zero points zw, read when compiled with WEIGHT_ZERO_POINTS); mult [C4] ChannelMult (requant*.wgsl);
// out [N, OH, OW, C4] u32.
// Dispatch: (ceil(C4 / 8), ceil(OW / 32), N * OH), 8 x 8 invocations per workgroup.
// Needs `lanes`, `requantize4` (requant.wgsl or requant_fixed.wgsl) and WEIGHT_ZERO_POINTS.
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c4: u32,
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
    cin: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> wt: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> mult: array<ChannelMult>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>;

// Each invocation computes 4 horizontally adjacent output pixels of one channel word, so an
// input word shared by neighbouring windows (stride < KW) is loaded once: a row of the window
// span is 3 * stride + KW words instead of 4 * KW.
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let cw = id.x;
    let ox0 = id.y * 4u;
    let b = id.z / p.oh;
    let oy = id.z % p.oh;
    if (cw >= p.c4 || ox0 >= p.ow || b >= p.n) {
        return;
    }
    let zx = vec4<i32>(p.zx);
    let bias0 = bias[cw];
    // The weights' zero points (asymmetric weights), after the biases.
    var zw = vec4<i32>(0);
    if (WEIGHT_ZERO_POINTS) {
        zw = bias[p.c4 + cw];
    }
    var acc = array<vec4<i32>, 4>(bias0, bias0, bias0, bias0);
    let span = 3u * p.stride_w + p.kw;
    for (var ky = 0u; ky < p.kh; ky++) {
        let py = oy * p.stride_h + ky;
        if (py < p.pad_top || py - p.pad_top >= p.h) {
            continue;
        }
        let xrow = (b * p.h + (py - p.pad_top)) * p.w;
        let wrow = ky * p.kw;
        for (var c = 0u; c < span; c++) {
            // Padded column c of the span, shared by the 4 outputs whose window covers it.
            let px = ox0 * p.stride_w + c;
            if (px < p.pad_left || px - p.pad_left >= p.w) {
                continue;
            }
            let xv = lanes(x[(xrow + (px - p.pad_left)) * p.c4 + cw]) - zx;
            for (var j = 0u; j < 4u; j++) {
                let start = j * p.stride_w;
                if (c >= start && c - start < p.kw) {
                    acc[j] += xv * (lanes(wt[(wrow + c - start) * p.c4 + cw]) - zw);
                }
            }
        }
    }
    let m = mult[cw];
    for (var j = 0u; j < 4u; j++) {
        let ox = ox0 + j;
        if (ox < p.ow) {
            out[((b * p.oh + oy) * p.ow + ox) * p.c4 + cw] = requantize4(acc[j], m, p.zp, p.lo, p.hi);
        }
    }
}
