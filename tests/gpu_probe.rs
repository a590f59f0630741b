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

/// In a plain shell (no XDG_RUNTIME_DIR, as over ssh or in CI) `edgetune probe` prints its one
/// line and nothing else: not Mesa's device-select layer asking Wayland for a display.
#[test]
fn cli_probe_prints_no_mesa_noise_without_a_runtime_dir() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgetune"))
        .arg("probe")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && std::env::var("EDGETUNE_REQUIRE_GPU").map_or(true, |v| v != "1") {
        eprintln!("SKIPPED: no GPU adapter ({stderr})");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("GPU: "), "{stdout}");
    assert_eq!(stderr, "", "stderr should be empty");
}
