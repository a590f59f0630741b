//! The ONNX importer end to end: protobuf decode, graph mapping (float and QDQ), `.etm`
//! validation, and for every model that imports, the ONNX export of it. Any input must give a
//! model or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = edgetune::import::onnx::import::import_onnx(data, "fuzz.onnx", None) {
        let _ = edgetune::import::onnx::export::export_onnx(&m);
    }
});
