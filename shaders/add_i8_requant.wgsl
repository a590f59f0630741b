// add_i8_requant.wgsl: int8 residual addition, the spec of crate/quant/requant.rs `AddRequant`:
//   out[i] = round(clamp(f32(a[i] - za) * ma + f32(b[i] - zb) * mb, lo - zp, hi - zp)) + zp
// ma and mb carry at most 15 significant bits and |a - za| <= 255 has 8, so both products are
// exact in f32 and the sum is one correctly rounded addition, identical with or without FMA.
// Layouts: a, b, out as one int8 value per i32 word, same length. Dispatch: (ceil(len / 256), 1, 1).
struct Params {
    len: u32,
    za: i32,
    zb: i32,
    zp: i32,
    ma: f32,
    mb: f32,
    lo: i32,
    hi: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<i32>;
@group(0) @binding(2) var<storage, read> b: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= p.len) {
        return;
    }
    let t = f32(a[i] - p.za) * p.ma + f32(b[i] - p.zb) * p.mb;
    out[i] = i32(round(clamp(t, f32(p.lo - p.zp), f32(p.hi - p.zp)))) + p.zp;
}
