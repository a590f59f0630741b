//! Helpers shared by integration tests: locating external test data and deciding whether
//! its absence is a skip (a user's checkout) or a failure (CI / `npm test`, which install it).

#![allow(dead_code)]

use std::path::PathBuf;

/// True when the environment promises the test prerequisites (`npm test` sets
/// `EDGETUNE_REQUIRE_TEST_DATA=1`; CI sets `CI=true`).
pub fn data_required() -> bool {
    std::env::var("EDGETUNE_REQUIRE_TEST_DATA").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns `path` if it exists; otherwise panics (data required) or prints why the test is
/// skipped and returns `None`.
pub fn require(path: PathBuf, what: &str, install_hint: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!("{what} not found at {} ({install_hint})", path.display());
    if data_required() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// `../shared` beside the repository root.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared")
}

/// The ONNX backend node tests from Debian's libonnx-testdata.
pub fn onnx_node_tests() -> Option<PathBuf> {
    require(
        PathBuf::from("/usr/share/libonnx-testdata/data/node"),
        "ONNX backend node tests",
        "install with: apt-get install libonnx-testdata",
    )
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A default model built by `scripts/models.sh` (`npm start` / `npm test` run it).
pub fn default_model(precision: &str) -> Option<PathBuf> {
    require(
        repo_dir().join(format!("www/models/efficientnet_lite0.{precision}.etm")),
        "the default model",
        "build it with: bash scripts/models.sh (npm test does this)",
    )
}

/// `$EDGETUNE_CACHE` (default `~/.cache/edgetune`), where the scripts keep downloads.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EDGETUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/edgetune"))
}

/// The Python of the interop environment (torch, onnxruntime, onnx, tflite-runtime) that
/// `scripts/test-deps.sh` creates.
pub fn interop_python() -> Option<PathBuf> {
    require(
        cache_dir().join("interop-venv/bin/python"),
        "the interop Python environment",
        "create it with: bash scripts/test-deps.sh (npm test does this)",
    )
}

/// The Python of the converter environment (tensorflow-cpu: its TFLite converter and
/// interpreter) that `scripts/test-deps.sh` creates.
pub fn converter_python() -> Option<PathBuf> {
    require(
        cache_dir().join("tf-converter-venv/bin/python"),
        "the TFLite converter environment",
        "create it with: bash scripts/test-deps.sh (npm test does this)",
    )
}

/// The TF2 full-integer int8 models TensorFlow's converter made (`scripts/test-deps.sh`,
/// `tests/reference/tflite_convert.py`).
pub fn tf2_int8_models() -> Option<PathBuf> {
    require(
        cache_dir().join("tf2-int8/.stamp"),
        "the TF2 int8 test models",
        "make them with: bash scripts/test-deps.sh (npm test does this)",
    )
    .map(|_| cache_dir().join("tf2-int8"))
}

/// The EfficientNet-Lite0 checkpoint extracted by `scripts/models.sh` into the cache.
pub fn lite0_checkpoint() -> Option<PathBuf> {
    require(
        cache_dir().join("lite0/efficientnet-lite0-57934424.pth"),
        "the EfficientNet-Lite0 checkpoint",
        "fetch it with: bash scripts/models.sh (npm test does this)",
    )
}

/// `../shared` data, required only in CI.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = shared_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    let msg = format!("{} not found (../shared beside the repository holds the test data)", p.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// True where onnxruntime's x86 int8 kernels use VNNI dot products and are exact for 8-bit
/// weights; on x86 CPUs without VNNI its AVX2 kernels saturate (`vpmaddubsw`) and the
/// interop tests run edgetune's own 8-bit exports through onnxruntime unfused, in float
/// (tests/reference/onnx_reference.py `run`). Always true off x86.
pub fn onnxruntime_int8_exact() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return true;
    }
    std::fs::read_to_string("/proc/cpuinfo").map_or(true, |s| {
        s.lines()
            .find(|l| l.starts_with("flags"))
            .is_none_or(|l| l.split_whitespace().any(|f| f == "avx512_vnni" || f == "avx_vnni"))
    })
}

/// Runs the imported model `file` on a GPU-forced engine and on the CPU over every shared
/// photo and asserts bit-identical logits (the GPU plan in the model's own arithmetic).
/// Skips without a GPU adapter unless `EDGETUNE_REQUIRE_GPU=1` (set by `npm test`).
pub fn assert_gpu_logits_equal_cpu(file: edgetune::model::etm::ModelFile, what: &str) {
    use edgetune::exec::engine::{BackendChoice, Engine};
    use edgetune::gpu::kernel::block_on;
    let Some(photos) = shared("data/photos") else { return };
    let cpu = edgetune::exec::Classifier::new(file.clone()).expect("model prepares");
    let mut engine = match block_on(Engine::new(edgetune::exec::Classifier::new(file).unwrap(), BackendChoice::Gpu)) {
        Ok(e) => e,
        Err(e) if std::env::var("EDGETUNE_REQUIRE_GPU").map_or(true, |v| v != "1") => {
            eprintln!("SKIPPED: {what} on the GPU: {e}");
            return;
        }
        Err(e) => panic!("{what} on the GPU: {e}"),
    };
    assert_eq!(engine.report().backend, "gpu", "{what}: {}", engine.report().describe());
    let images = edgetune::data::images::list_images(&photos).unwrap();
    for img in &images {
        let x = edgetune::data::images::load_preprocessed(img, &cpu.file.header.preprocess).unwrap();
        let want = cpu.logits(x.clone()).unwrap();
        let got = block_on(engine.logits(x)).unwrap();
        assert!(got.data() == want.data(), "{what} {}: GPU logits differ from the CPU's", img.display());
    }
    eprintln!("{what}: GPU logits identical to the CPU's on {} photos ({})", images.len(), engine.report().describe());
}
