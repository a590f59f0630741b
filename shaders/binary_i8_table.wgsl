// binary_i8_table.wgsl: an int8 element-wise operator of two inputs as a table of all its
// 256 x 256 results, computed on the CPU by the model's own arithmetic (crate/exec/cpu_int8.rs
// `Int8Layer::TableAdd`): exact for any arithmetic, including those WGSL cannot reproduce
// step by step (onnxruntime's fused multiply-adds; WGSL's fma need not be fused).
//   out[i] = table[(a[i] + 128) * 256 + (b[i] + 128)]
// Layouts: a, b, out packed 4 x i8 per u32, `words` words each (padded lanes are computed
// too and ignored downstream); table: 65536 i8 packed 4 per u32.
// Dispatch: (ceil(words / 256), 1, 1). Needs `lanes`, `pack_lanes`.
struct Params {
    words: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

fn entry(index: i32) -> i32 {
    let word = bitcast<i32>(table[u32(index) >> 2u]);
    return extractBits(word, 8u * (u32(index) & 3u), 8u);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= p.words) {
        return;
    }
    let k = (lanes(a[i]) + vec4<i32>(128)) * 256 + lanes(b[i]) + vec4<i32>(128);
    out[i] = pack_lanes(vec4<i32>(entry(k.x), entry(k.y), entry(k.z), entry(k.w)));
}
