// dot4_i8_packed.wgsl: the int8 4-lane dot product with WGSL's packed_4x8_integer_dot_product.
// Operands: 4 x i8 per u32, byte 0 = lowest index along K. Prepended to the GEMM kernel.
requires packed_4x8_integer_dot_product;

fn dot4(a: u32, b: u32) -> i32 {
    return dot4I8Packed(a, b);
}
