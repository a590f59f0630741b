//! The `.etm` loader on arbitrary bytes: loading validates or fails with an error; a file
//! that loads must also prepare (f32 or int8 plan) without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = edgetune::model::etm::ModelFile::from_bytes(data) {
        let _ = edgetune::exec::Classifier::new(file);
    }
});
