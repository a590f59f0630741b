//! A GPU adapter is found natively (lavapipe, Mesa's Vulkan-on-CPU driver, in CI). When the
//! environment promises a GPU (`EDGETUNE_REQUIRE_GPU=1`, set by `npm test`), its absence fails.

#[test]
fn finds_a_gpu_adapter_with_packed_int8_dot() {
    match pollster::block_on(edgetune::gpu::probe()) {
        Ok(r) => {
            eprintln!("GPU: {}", r.describe());
            assert!(!r.backend.is_empty());
            // naga implements WGSL's packed_4x8_integer_dot_product on every native backend.
            assert!(r.packed_int8_dot, "{}", r.describe());
        }
        Err(e) if std::env::var("EDGETUNE_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("{e} (install Mesa's Vulkan drivers: apt-get install mesa-vulkan-drivers)")
        }
        Err(e) => eprintln!("SKIPPED: {e} (install mesa-vulkan-drivers to run GPU tests)"),
    }
}
