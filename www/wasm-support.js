// Whether this browser's WebAssembly has the 128-bit SIMD the engine is built with (every
// browser with WebGPU does: Chrome/Edge 91+, Firefox 89+, Safari 16.4+). The probe is the
// smallest module using a SIMD instruction: (func (result v128) (i32x4.splat (i32.const 0))).
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, //       type section: () -> v128
  0x03, 0x02, 0x01, 0x00, //                         function section: one function of type 0
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x11, 0x0b, // code: i32.const 0, i32x4.splat, end
]);

export function wasmSimdSupported() {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

export const SIMD_MISSING = "This browser's WebAssembly has no SIMD, which the engine needs: use Chrome or Edge 91+, Firefox 89+ or Safari 16.4+.";
