//! The TFLite importer: flatbuffer verification, then the mapping to `.etm` (which validates
//! the result). Any input must give a model or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgetune::import::tflite::import_tflite(data, "fuzz.tflite", None);
});
