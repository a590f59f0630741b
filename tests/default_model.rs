//! The default EfficientNet-Lite0 models built by `scripts/models.sh`: f32 logits against an
//! independent numpy reference, both precisions on the shared photos, and clear errors for
//! corrupt, truncated or mismatched checkpoints and model files.

mod common;

use std::path::Path;
use std::process::Command;

use edgetune::data::images::load_preprocessed;
use edgetune::exec::{top_k, Classifier};
use edgetune::import::torch::checkpoint::{parse_legacy_checkpoint, read_legacy_checkpoint};
use edgetune::model::etm::ModelFile;
use edgetune::zoo::efficientnet::{check_tensor_names, efficientnet_lite0_graph, to_engine_layout};

const PHOTOS: [&str; 10] = [
    "bird.bmp",
    "cat.bmp",
    "dragonfly.bmp",
    "grace_hopper.bmp",
    "sunflower.bmp",
    "hot_dog.jpg",
    "kite_and_cold.jpg",
    "owl.jpg",
    "parrot.jpg",
    "pets.jpg",
];

/// Relative tolerance of the f32 logits against the float64 reference: max |a - b| / max |b|.
const REFERENCE_RTOL: f32 = 1e-4;

#[test]
fn f32_logits_match_independent_numpy_reference() {
    let (Some(model), Some(ckpt), Some(photos)) =
        (common::default_model("f32"), common::lite0_checkpoint(), common::shared("data/photos"))
    else {
        return;
    };
    let numpy_ok = Command::new("python3").args(["-c", "import numpy"]).status().is_ok_and(|s| s.success());
    if !numpy_ok {
        assert!(
            !common::data_required(),
            "numpy is required for the reference check (pip install numpy; npm test installs it)"
        );
        eprintln!("SKIPPED: numpy not installed");
        return;
    }
    let c = Classifier::load(&model).unwrap();
    let script = common::repo_dir().join("tests/reference/efficientnet_lite0_numpy.py");
    let tmp = std::env::temp_dir().join(format!("edgetune-ref-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for photo in ["parrot.jpg", "cat.bmp"] {
        let x = load_preprocessed(&photos.join(photo), &c.file.header.preprocess).unwrap();
        let input = tmp.join("input.f32");
        let output = tmp.join("logits.f32");
        std::fs::write(&input, x.data().iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let st = Command::new("python3").arg(&script).arg(&ckpt).arg(&input).arg(&output).status().unwrap();
        assert!(st.success(), "reference script failed");
        let want: Vec<f32> = std::fs::read(&output)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let got = c.logits(x).unwrap();
        assert_eq!(want.len(), got.len());
        let scale = want.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let err = want.iter().zip(got.data()).fold(0f32, |a, (&w, &g)| a.max((w - g).abs()));
        eprintln!(
            "{photo}: max |edgetune - numpy| = {err:.3e}, max |logit| = {scale:.3}, relative {:.3e}",
            err / scale
        );
        assert!(err / scale <= REFERENCE_RTOL, "{photo}: relative error {} > {REFERENCE_RTOL}", err / scale);
    }
}

fn top1(c: &Classifier, path: &Path) -> (usize, f32) {
    let x = load_preprocessed(path, &c.file.header.preprocess).unwrap();
    top_k(c.logits(x).unwrap().data(), 1)[0]
}

#[test]
fn both_precisions_classify_the_shared_photos() {
    let (Some(f32m), Some(i8m), Some(photos)) =
        (common::default_model("f32"), common::default_model("int8"), common::shared("data/photos"))
    else {
        return;
    };
    let (f, q) = (Classifier::load(&f32m).unwrap(), Classifier::load(&i8m).unwrap());
    assert_eq!((f.precision(), q.precision()), ("f32", "int8"));
    let label = |c: &Classifier, i: usize| c.file.header.labels[i].clone();
    let mut same = 0;
    for photo in PHOTOS {
        let (a, pa) = top1(&f, &photos.join(photo));
        let (b, pb) = top1(&q, &photos.join(photo));
        same += usize::from(a == b);
        eprintln!("{photo:18} f32: {:5.1}% {:28} int8: {:5.1}% {}", pa * 100.0, label(&f, a), pb * 100.0, label(&q, b));
        for (c, class) in [(&f, a), (&q, b)] {
            let name = label(c, class);
            match photo {
                "parrot.jpg" => assert_eq!(name, "macaw", "{} parrot", c.precision()),
                "hot_dog.jpg" => assert!(name.starts_with("hotdog"), "{} hot_dog: {name}", c.precision()),
                "cat.bmp" => assert!(
                    ["tabby", "tiger cat", "Egyptian cat"].iter().any(|k| name.starts_with(k)),
                    "{} cat: {name}",
                    c.precision()
                ),
                _ => {}
            }
        }
    }
    eprintln!("int8 top-1 equals f32 top-1 on {same} of {} photos", PHOTOS.len());
    // docs/default-model.md: "int8 has f32's top-1 on 10 of 10 photos".
    assert_eq!(same, PHOTOS.len(), "int8 top-1 equals f32 top-1 on {same} of {} photos", PHOTOS.len());
}

#[test]
fn model_files_round_trip_and_bad_files_are_rejected() {
    let Some(path) = common::default_model("int8") else { return };
    let bytes = std::fs::read(&path).unwrap();
    let m = ModelFile::from_bytes(&bytes).unwrap();
    assert_eq!(ModelFile::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
    assert!(bytes.len() <= 5_500_000, "int8 model is {} bytes", bytes.len());

    let err = |b: &[u8]| ModelFile::from_bytes(b).unwrap_err().to_string();
    assert!(err(&bytes[..bytes.len() / 2]).contains("not a valid safetensors container"));
    assert!(err(b"garbage").contains("not a valid safetensors container"));
    let mut bad = m.clone();
    bad.header.labels.pop();
    assert!(err(&bad.to_bytes().unwrap()).contains("999 labels for 1000 classes"));
    let mut bad = m.clone();
    bad.header.version = 99;
    assert!(err(&bad.to_bytes().unwrap()).contains("format version 99 is not supported"));
    let mut bad = m.clone();
    bad.tensors.remove("_conv_head.weight.scale");
    assert!(err(&bad.to_bytes().unwrap()).contains("_conv_head.weight.scale"));
    let mut bad = m.clone();
    bad.tensors.remove("_blocks.3._depthwise_conv.weight");
    assert!(err(&bad.to_bytes().unwrap()).contains("_blocks.3._depthwise_conv.weight"));
    let mut bad = m;
    if let Some(q) = bad.header.quantization.as_mut() {
        q.values[5] = Some(edgetune::model::etm::ValueQuant { scale: -1.0, zero_point: 0 });
    }
    assert!(err(&bad.to_bytes().unwrap()).contains("value 5: invalid quantization"));
    // Through the file API the message names the file.
    let tmp = std::env::temp_dir().join(format!("edgetune-truncated-{}.etm", std::process::id()));
    std::fs::write(&tmp, &bytes[..1000]).unwrap();
    let e = ModelFile::load(&tmp).unwrap_err().to_string();
    assert!(e.contains(&tmp.display().to_string()), "{e}");
}

#[test]
fn truncated_corrupt_and_mismatched_checkpoints_are_clear_errors() {
    let Some(ckpt) = common::lite0_checkpoint() else { return };
    let bytes = std::fs::read(&ckpt).unwrap();
    // Cut inside each part: the magic, the state dict pickle, the key list, the storages.
    for cut in [5, 100, 40_000, 47_100, 50_000, bytes.len() - 1] {
        let e = parse_legacy_checkpoint(&bytes[..cut], "cut.pth").unwrap_err().to_string();
        assert!(e.starts_with("cut.pth: "), "cut at {cut}: {e}");
    }
    assert!(parse_legacy_checkpoint(b"PK\x03\x04 zip", "z.pth").unwrap_err().to_string().contains("zip-format"));
    let mut flipped = bytes.clone();
    flipped[6] ^= 0xff; // inside the magic number
    assert!(parse_legacy_checkpoint(&flipped, "m.pth").unwrap_err().to_string().contains("magic"));
    // A checkpoint of another network: a tensor missing and one extra.
    let mut t = to_engine_layout(read_legacy_checkpoint(&ckpt).unwrap()).unwrap();
    let w = t.remove("_blocks.7._project_conv.weight").unwrap();
    t.insert("classifier.weight".into(), w);
    let e = check_tensor_names(&efficientnet_lite0_graph(), &t).unwrap_err().to_string();
    assert!(e.contains("_blocks.7._project_conv.weight") && e.contains("classifier.weight"), "{e}");
}

#[test]
fn cli_info_and_classify() {
    let (Some(model), Some(photos)) = (common::default_model("int8"), common::shared("data/photos")) else { return };
    let exe = env!("CARGO_BIN_EXE_edgetune");
    let out = Command::new(exe).arg("info").arg(&model).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && s.contains("efficientnet_lite0") && s.contains("int8") && s.contains("1000"),
        "{s}"
    );
    let out =
        Command::new(exe).args(["classify", "--model"]).arg(&model).arg(photos.join("parrot.jpg")).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains("macaw") && s.contains(" ms)"), "{s}");
    // The GPU backend prints the same top-5 with the same probabilities as the CPU on every
    // shared photo (only the timing and the backend line differ).
    let mut images: Vec<_> = std::fs::read_dir(&photos)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "bmp"))
        .collect();
    images.sort();
    let run = |backend: &str| {
        let out = Command::new(exe)
            .args(["classify", "--backend", backend, "--model"])
            .arg(&model)
            .args(&images)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{backend}: {s}{}", String::from_utf8_lossy(&out.stderr));
        let first = s.lines().next().unwrap_or_default().to_string();
        let timing = strip_times(&s);
        (first, timing)
    };
    let (cpu_head, cpu) = run("cpu");
    let has_gpu = Command::new(exe).arg("probe").output().is_ok_and(|p| p.status.success());
    if has_gpu || std::env::var("EDGETUNE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        let (gpu_head, gpu) = run("gpu");
        assert!(cpu_head.contains("backend cpu") && gpu_head.contains("backend gpu"), "{cpu_head} / {gpu_head}");
        assert_eq!(gpu, cpu, "GPU and CPU top-5 differ");
    } else {
        eprintln!("SKIPPED: the GPU half of cli_info_and_classify (no GPU adapter)");
    }
    let out = Command::new(exe)
        .args(["classify", "--backend", "tpu", "--model"])
        .arg(&model)
        .arg(&images[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(exe).args(["classify", "--model"]).arg(&model).arg("/nonexistent.jpg").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jpg"));
    assert_eq!(out.status.code(), Some(1));
}

/// `classify` output without the model/backend line and the per-image times.
fn strip_times(s: &str) -> Vec<String> {
    s.lines().skip(1).map(|l| l.split(" (").next().unwrap_or(l).to_string()).collect()
}

/// The page's "Quantize" path, natively: the f32 model quantized on RGBA frames (the shared
/// photos, centre-cropped to 256 x 256 as the page's frames are), judged by top-1 agreement
/// with f32 on photos it was not calibrated on.
#[test]
fn quantizing_on_rgba_frames_agrees_with_f32_on_other_frames() {
    let (Some(path), Some(photos)) = (common::default_model("f32"), common::shared("data/photos")) else { return };
    use edgetune::compress::frames::{quantize_on_frames, top1_agreement, RgbaFrames};
    let f32_model = ModelFile::load(&path).unwrap();
    let side = 256;
    let frame = |name: &str| -> Vec<u8> {
        let (w, h, rgb) = edgetune::data::images::load_rgb(&photos.join(name)).unwrap();
        let s = w.min(h);
        let (x0, y0) = ((w - s) / 2, (h - s) / 2);
        let mut out = Vec::with_capacity(side * side * 4);
        for y in 0..side {
            for x in 0..side {
                let (sx, sy) = (x0 + x * s / side, y0 + y * s / side);
                out.extend_from_slice(&rgb[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
                out.push(255);
            }
        }
        out
    };
    let (calib, held): (Vec<&str>, Vec<&str>) =
        PHOTOS.iter().partition(|p| !matches!(**p, "parrot.jpg" | "cat.bmp" | "hot_dog.jpg" | "owl.jpg"));
    let pack = |names: &[&str]| names.iter().flat_map(|n| frame(n)).collect::<Vec<u8>>();
    let (cdata, hdata) = (pack(&calib), pack(&held));
    let cal = RgbaFrames::new(&cdata, calib.len(), side, side).unwrap();
    let test = RgbaFrames::new(&hdata, held.len(), side, side).unwrap();
    let q = quantize_on_frames(&f32_model, &cal, "minmax", &|_, _, _| {}).unwrap();
    assert!(q.is_int8());
    assert!(q.header.quantization.as_ref().unwrap().calibration_source.contains("camera frames"));
    let same = top1_agreement(&f32_model, &q, &test).unwrap();
    eprintln!("int8 calibrated on {} frames: top-1 equals f32 on {same}/{} held-out frames", calib.len(), held.len());
    assert!(same >= held.len() - 1, "{same}/{}", held.len());
    assert!(quantize_on_frames(&q, &cal, "minmax", &|_, _, _| {})
        .unwrap_err()
        .to_string()
        .contains("already quantized"));
    assert!(quantize_on_frames(&f32_model, &cal, "best", &|_, _, _| {})
        .unwrap_err()
        .to_string()
        .contains("unknown method"));
}

/// The torch_checkpoint fuzz target's seed (fuzz/seeds/torch_seed.py, run by scripts/fuzz.sh)
/// is a valid checkpoint the reader parses whole, so libFuzzer starts past the first checks.
#[test]
fn the_fuzz_seed_checkpoint_parses_whole() {
    let Some(python) = common::interop_python() else { return };
    let dir = std::env::temp_dir().join(format!("edgetune-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed-small.pth");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = std::process::Command::new(python).arg(root.join("fuzz/seeds/torch_seed.py")).arg(&seed).status().unwrap();
    assert!(st.success(), "torch_seed.py failed");
    let bytes = std::fs::read(&seed).unwrap();
    let tensors = parse_legacy_checkpoint(&bytes, "seed-small.pth").unwrap();
    let shapes: Vec<(&str, &[usize])> = tensors.iter().map(|(n, t)| (n.as_str(), t.shape())).collect();
    // `num_batches_tracked` (an integer storage) is read and skipped, as the reader documents.
    assert_eq!(
        shapes,
        [("conv.weight", &[4, 3, 3, 3][..]), ("conv.bias", &[4][..]), ("fc.weight", &[2, 4][..])],
        "{} bytes",
        bytes.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
