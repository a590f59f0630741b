// add_i8_requant.wgsl: int8 residual addition, the spec of crate/quant/requant.rs `AddRequant`:
//   out[i] = round(clamp(f32(a[i] - za) * ma + f32(b[i] - zb) * mb, lo - zp, hi - zp)) + zp
// ma and mb carry at most 15 significant bits and |a - za| <= 255 has 8, so both products are
// exact in f32 and the sum is one correctly rounded addition, identical with or without FMA.
// Layouts: a, b, out packed 4 x i8 per u32, `words` words each (padded lanes are computed
// too and ignored downstream). Dispatch: (ceil(words / 256), 1, 1). Needs `lanes`, `pack_lanes`.
struct Params {
    words: u32,
    za: i32,
    zb: i32,
    zp: i32,
    ma: f32,
    mb: f32,
    lo: i32,
    hi: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= p.words) {
        return;
    }
    let t = vec4<f32>(lanes(a[i]) - vec4<i32>(p.za)) * p.ma + vec4<f32>(lanes(b[i]) - vec4<i32>(p.zb)) * p.mb;
    let r = round(clamp(t, vec4<f32>(f32(p.lo - p.zp)), vec4<f32>(f32(p.hi - p.zp))));
    out[i] = pack_lanes(vec4<i32>(r) + vec4<i32>(p.zp));
}
