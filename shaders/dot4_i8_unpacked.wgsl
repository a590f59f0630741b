// dot4_i8_unpacked.wgsl: the same 4-lane int8 dot product without the packed-dot extension:
// each byte is sign-extended with extractBits on i32 (which sign-extends) and multiplied.
fn dot4(a: u32, b: u32) -> i32 {
    let x = bitcast<i32>(a);
    let y = bitcast<i32>(b);
    var s = 0;
    for (var j = 0u; j < 4u; j++) {
        s += extractBits(x, 8u * j, 8u) * extractBits(y, 8u * j, 8u);
    }
    return s;
}
