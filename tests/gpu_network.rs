//! The whole int8 EfficientNet-Lite0 on the GPU against the CPU: logits bit-identical on the
//! shared photos, batches run image by image, `auto` reports its choice, f32 models stay on
//! the CPU, and a destroyed device is rebuilt without changing a result. Runs on whatever
//! adapter wgpu finds (lavapipe in CI); with `EDGETUNE_REQUIRE_GPU=1` (set by `npm test`) a
//! missing adapter fails instead of skipping.

mod common;

use std::path::{Path, PathBuf};

use edgetune::data::images::load_preprocessed;
use edgetune::exec::engine::{BackendChoice, Engine};
use edgetune::exec::Classifier;
use edgetune::gpu::kernel::block_on;
use edgetune::Tensor;

fn gpu_required() -> bool {
    std::env::var("EDGETUNE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// An engine forced onto the GPU, or `None` (skip) when no adapter exists and none is required.
fn gpu_engine(model: &Path) -> Option<Engine> {
    match block_on(Engine::new(Classifier::load(model).expect("model loads"), BackendChoice::Gpu)) {
        Ok(e) => Some(e),
        Err(e) if !gpu_required() && e.to_string().contains("no GPU adapter") => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e} (install Mesa's Vulkan drivers: apt-get install mesa-vulkan-drivers)"),
    }
}

fn photos() -> Vec<PathBuf> {
    let Some(dir) = common::require(common::shared_dir().join("data/photos"), "shared photos", "../shared/data/photos")
    else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("photos dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "bmp"))
        .collect();
    v.sort();
    v
}

#[test]
fn gpu_logits_are_bit_identical_to_cpu_on_the_shared_photos() {
    let Some(model) = common::default_model("int8") else { return };
    let Some(mut engine) = gpu_engine(&model) else { return };
    let report = engine.report().clone();
    eprintln!("{}", report.describe());
    assert_eq!(report.backend, "gpu");
    assert!(report.variant.is_some());
    let cpu = Classifier::load(&model).unwrap();
    let p = cpu.file.header.preprocess;
    let photos = photos();
    assert!(photos.len() >= 10, "expected the 10 shared photos, found {}", photos.len());
    for path in &photos {
        let x = load_preprocessed(path, &p).unwrap();
        let want = cpu.logits(x.clone()).unwrap();
        let got = block_on(engine.logits(x)).unwrap();
        assert_eq!(got.shape(), want.shape());
        assert!(got.data() == want.data(), "{}: GPU logits differ from the CPU's", path.display());
    }
    // A batch of two runs image by image and equals the CPU's batch.
    let (a, b) = (load_preprocessed(&photos[0], &p).unwrap(), load_preprocessed(&photos[1], &p).unwrap());
    let mut shape = a.shape().to_vec();
    shape[0] = 2;
    let batch = Tensor::new(shape, [a.data(), b.data()].concat()).unwrap();
    let want = cpu.embeddings(batch.clone()).unwrap();
    let got = block_on(engine.embeddings(batch)).unwrap();
    assert_eq!(got.shape(), &[2, 1280]);
    assert!(got.data() == want.data(), "batched GPU embeddings differ from the CPU's");
}

#[test]
fn auto_reports_its_choice_and_f32_models_stay_on_the_cpu() {
    let (Some(int8), Some(f32)) = (common::default_model("int8"), common::default_model("f32")) else { return };
    let Some(gpu) = gpu_engine(&int8) else { return };
    drop(gpu);
    // `auto` keeps whichever of GPU and CPU was faster on the self-test input (on lavapipe,
    // a CPU emulation, the two are close), and says so with the times.
    let auto = block_on(Engine::new(Classifier::load(&int8).unwrap(), BackendChoice::Auto)).unwrap();
    let (backend, reason) = (auto.report().backend, &auto.report().reason);
    match backend {
        "gpu" => assert!(reason.contains("self-test") && reason.contains("faster than the CPU"), "{reason}"),
        "cpu" => assert!(reason.contains("the CPU was faster in the self-test"), "{reason}"),
        other => panic!("unexpected backend {other}: {reason}"),
    }
    let cpu = block_on(Engine::new(Classifier::load(&int8).unwrap(), BackendChoice::Cpu)).unwrap();
    assert_eq!(cpu.report().backend, "cpu");
    let auto_f32 = block_on(Engine::new(Classifier::load(&f32).unwrap(), BackendChoice::Auto)).unwrap();
    assert_eq!(auto_f32.report().backend, "cpu");
    assert!(auto_f32.report().reason.contains("int8"), "{}", auto_f32.report().reason);
    let err =
        block_on(Engine::new(Classifier::load(&f32).unwrap(), BackendChoice::Gpu)).err().expect("f32 on gpu fails");
    assert!(err.to_string().contains("int8"), "{err}");
    assert!("tpu".parse::<BackendChoice>().is_err());
}

#[test]
fn a_lost_device_is_rebuilt_and_results_do_not_change() {
    let Some(model) = common::default_model("int8") else { return };
    let Some(mut engine) = gpu_engine(&model) else { return };
    let cpu = Classifier::load(&model).unwrap();
    let photos = photos();
    let Some(photo) = photos.first() else { return };
    let x = load_preprocessed(photo, &cpu.file.header.preprocess).unwrap();
    let want = cpu.logits(x.clone()).unwrap();
    engine.lose_gpu_device();
    let got = block_on(engine.logits(x)).expect("the engine recovers from a lost device");
    assert!(got.data() == want.data());
    let report = engine.report();
    assert!(report.reason.contains("rebuilt") || report.reason.contains("fell back"), "{}", report.describe());
}
