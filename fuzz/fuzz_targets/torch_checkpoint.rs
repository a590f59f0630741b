//! The legacy PyTorch checkpoint reader (our own pickle machine) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgetune::import::torch::checkpoint::parse_legacy_checkpoint(data, "fuzz");
});
