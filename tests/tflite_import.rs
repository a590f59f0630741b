//! TFLite import against TFLite's own interpreter, on every shared photo with the same
//! quantized input fed to both:
//! - both shared uint8 MobileNet v1 files against tflite-runtime (PyPI): same top-1, logits and
//!   softmax outputs identical (0 steps);
//! - TF2 full-integer int8 files made by TensorFlow's converter (`tests/reference/
//!   tflite_convert.py`) against LiteRT's interpreter (ai-edge-litert, PyPI): the same.
//!
//! Also: class names from the model's metadata; corrupt and truncated files are clear errors.

mod common;

use std::path::Path;
use std::process::Command;

use edgetune::data::images::{list_images, load_preprocessed};
use edgetune::exec::Classifier;
use edgetune::import::tflite::import_tflite;
use edgetune::ops::softmax::softmax_row;

const MODELS: [&str; 2] = ["mobilenet_v1_0.25_128_quant.tflite", "mobilenet_v1_0.5_160_quant.tflite"];
/// Made by `tests/reference/tflite_convert.py` (see there).
const TF2_MODELS: [&str; 2] = ["mobilenet_v2_int8.tflite", "op_zoo_int8.tflite"];

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// The largest differences, in steps of the file's own grids, between the engine and TFLite's
/// interpreter (`python` runs `tests/reference/tflite_reference.py`) on every shared photo:
/// `(logits, softmax outputs)`. Top-1 must agree on each photo.
fn steps_from_tflite(path: &Path, labels: Option<Vec<String>>, python: &Path) -> (i32, i32) {
    let photos = common::shared_dir().join("data/photos");
    let images = list_images(&photos).unwrap();
    assert!(images.len() >= 10, "expected the 10 shared photos, found {}", images.len());
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let dir = tempdir("tflite");
    let bytes = std::fs::read(path).unwrap();
    let file = import_tflite(&bytes, &name, labels).unwrap();
    let names = file.header.labels.clone();
    let model = Classifier::new(file.clone()).unwrap();
    let net = model.int8().expect("a TFLite import is an int8 model");
    // The same input for both: the engine's preprocessing, quantized; shifted to uint8.
    let mut raw = vec![];
    let mut inputs = vec![];
    for img in &images {
        let x = load_preprocessed(img, &file.header.preprocess).unwrap();
        let q = net.quantize_input(&x).unwrap();
        raw.extend(q.i8_data("test").unwrap().iter().map(|&v| (v as i32 + 128) as u8));
        inputs.push(x);
    }
    let input_file = dir.join(format!("{name}.u8"));
    let out_file = dir.join(format!("{name}.json"));
    std::fs::write(&input_file, &raw).unwrap();
    let st = Command::new(python)
        .arg(common::repo_dir().join("tests/reference/tflite_reference.py"))
        .args([path, &input_file])
        .arg(images.len().to_string())
        .arg(&out_file)
        .status()
        .unwrap();
    assert!(st.success(), "the TFLite reference failed on {name}");
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let (ls, lz) = net.value_quant(file.header.graph.logits).unwrap();
    let (mut worst_logit, mut worst_prob) = (0, 0);
    for ((img, x), r) in images.iter().zip(inputs).zip(reference["results"].as_array().unwrap()) {
        let ints =
            |k: &str| -> Vec<i32> { r[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect() };
        let (theirs_logits, theirs_out) = (ints("logits"), ints("output"));
        let logits = model.logits(x).unwrap().into_data();
        // Back onto the file's grid in the uint8 domain (the engine rounds the logits onto it).
        let ours_logits: Vec<i32> = logits.iter().map(|&l| (l / ls).round() as i32 + lz + 128).collect();
        let probs = softmax_row(&logits);
        let ours_out: Vec<i32> = probs.iter().map(|&p| ((p * 256.0).round() as i32).min(255)).collect();
        let dl = ours_logits.iter().zip(&theirs_logits).map(|(a, b)| (a - b).abs()).max().unwrap();
        let dp = ours_out.iter().zip(&theirs_out).map(|(a, b)| (a - b).abs()).max().unwrap();
        worst_logit = worst_logit.max(dl);
        worst_prob = worst_prob.max(dp);
        let theirs_top = argmax_i(&theirs_out);
        let theirs_top_logit = argmax_i(&theirs_logits);
        let ours_top = argmax(&logits);
        println!(
            "{name} {}: ours '{}' theirs '{}' (logit step diff {dl}, output step diff {dp})",
            img.file_name().unwrap().to_string_lossy(),
            names[ours_top],
            names[theirs_top_logit]
        );
        assert_eq!(ours_top, theirs_top_logit, "{name} {}: top-1 differs", img.display());
        assert!(theirs_out[theirs_top] == theirs_out[ours_top], "{name} {}: top-1 output differs", img.display());
    }
    println!("{name}: largest difference {worst_logit} step(s) in logits, {worst_prob} in outputs");
    (worst_logit, worst_prob)
}

fn argmax_i(v: &[i32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

#[test]
fn tflite_models_match_tflite_runtime_on_every_photo() {
    let (Some(models), Some(photos), Some(python)) =
        (common::shared("models"), common::shared("data/photos"), common::interop_python())
    else {
        return;
    };
    let labels = edgetune::model::labels::read_labels(&photos.join("imagenet_labels.txt"), None).unwrap();
    for name in MODELS {
        let (logits, outputs) = steps_from_tflite(&models.join(name), Some(labels.clone()), &python);
        assert_eq!(logits, 0, "{name}: logits differ by {logits} uint8 steps (TFLite arithmetic is kept bit for bit)");
        // docs/import.md: "the logits and the softmax outputs are identical (0 steps)".
        assert_eq!(outputs, 0, "{name}: softmax outputs differ by {outputs} uint8 steps");
        // On the GPU plan too: TFLite's fixed point in WGSL, asymmetric uint8 weights.
        let file = import_tflite(&std::fs::read(models.join(name)).unwrap(), name, Some(labels.clone())).unwrap();
        common::assert_gpu_logits_equal_cpu(file, name);
    }
}

/// TF2's full-integer int8 files, made by TensorFlow's own converter (float and int8 I/O,
/// per-channel weights, MEAN, the op zoo), against LiteRT's interpreter (ai-edge-litert).
#[test]
fn tf2_int8_models_match_tflite_on_every_photo() {
    let (Some(models), Some(_), Some(python)) =
        (common::tf2_int8_models(), common::shared("data/photos"), common::converter_python())
    else {
        return;
    };
    let cifar10 = edgetune::model::labels::read_labels(&models.join("labels.txt"), None).unwrap();
    for name in TF2_MODELS {
        // The class names are the model's own (its metadata), with no labels given.
        let file = import_tflite(&std::fs::read(models.join(name)).unwrap(), name, None).unwrap();
        assert_eq!(file.header.labels, cifar10, "{name}: class names from its metadata");
        let (logits, outputs) = steps_from_tflite(&models.join(name), None, &python);
        assert_eq!(logits, 0, "{name}: logits differ by {logits} int8 steps (TFLite arithmetic is kept bit for bit)");
        if name == "mobilenet_v2_int8.tflite" {
            // Its operators are all the GPU plan's: convolutions, adds, the pool.
            common::assert_gpu_logits_equal_cpu(file, name);
        }
        // docs/import.md: "the logits and the softmax outputs are identical (0 steps)".
        assert_eq!(outputs, 0, "{name}: softmax outputs differ by {outputs} int8 steps");
    }
}

#[test]
fn corrupt_and_truncated_tflite_files_are_clear_errors() {
    let Some(models) = common::shared("models") else { return };
    let bytes = std::fs::read(models.join(MODELS[0])).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", bytes[..bytes.len() / 3].to_vec()),
        ("not a flatbuffer", b"this is not a model at all, just text".to_vec()),
        ("offset out of range", {
            let mut b = bytes.clone();
            b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
            b
        }),
    ];
    for (what, data) in cases {
        let e = import_tflite(&data, "broken.tflite", None).expect_err(what).to_string();
        assert!(e.contains("broken.tflite") && e.contains("not a valid TFLite model"), "{what}: {e}");
    }
    // Flipped bytes anywhere in the file never panic: either an error or a valid model.
    for i in (0..bytes.len()).step_by(997) {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let _ = import_tflite(&b, "flipped.tflite", None);
    }
}

/// Every shared TFLite file carries TFLite Support metadata with its label file in the zip
/// appended to the model: imported without labels, the class names are that file's lines, as
/// Python's own `zipfile` reads them; given labels win; a label file the metadata names but
/// the archive lacks is a clear error.
#[test]
fn class_names_come_from_the_models_metadata() {
    let (Some(models), Some(python)) = (common::shared("models"), common::interop_python()) else { return };
    for name in
        ["mobilenet_v1_0.25_128_quant.tflite", "mobilenet_v1_0.5_160_quant.tflite", "mobilenet_v2_1.0_224_quant.tflite"]
    {
        let path = models.join(name);
        let bytes = std::fs::read(&path).unwrap();
        let out = Command::new(&python)
            .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.write(z.read(z.namelist()[0]).decode())"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "python zipfile on {name}");
        let want: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(want.len(), 1001, "{name}: the ImageNet label file");
        let file = import_tflite(&bytes, name, None).unwrap();
        assert_eq!(file.header.labels, want, "{name}");
        assert!(file.header.provenance.steps.iter().any(|s| s.contains("class names from its metadata")), "{name}");
        let given: Vec<String> = (0..1001).map(|i| format!("mine {i}")).collect();
        assert_eq!(import_tflite(&bytes, name, Some(given.clone())).unwrap().header.labels, given);
        // The archive's entry renamed: the metadata names a file that is not there.
        let mut renamed = bytes.clone();
        let at = renamed.windows(19).rposition(|w| w == b"imagenet_labels.txt").unwrap();
        renamed[at] = b'X';
        let e = import_tflite(&renamed, name, None).unwrap_err().to_string();
        assert!(e.contains("label file 'imagenet_labels.txt'") && e.contains("not in the model's archive"), "{e}");
    }
}

#[test]
fn wrong_label_count_is_an_error() {
    let Some(models) = common::shared("models") else { return };
    let bytes = std::fs::read(models.join(MODELS[0])).unwrap();
    let e = import_tflite(&bytes, "m.tflite", Some(vec!["a".into(), "b".into()])).unwrap_err().to_string();
    assert!(e.contains("2 labels for 1001 classes"), "{e}");
}

/// A head trained on an imported TFLite backbone (what the page's "Open model" then Train
/// saves): the imported classifier's weight zero points and logits grid are dropped, and the
/// model's logits are the int8 head on the backbone's embedding, `W e + b` within the head's
/// own weight rounding.
#[test]
fn a_new_head_on_a_tflite_backbone_computes_w_e_plus_b() {
    let (Some(models), Some(photos)) = (common::shared("models"), common::shared("data/photos")) else { return };
    let bytes = std::fs::read(models.join(MODELS[0])).unwrap();
    let backbone = import_tflite(&bytes, MODELS[0], None).unwrap();
    let dim = backbone.embedding_dim().expect("a dense classifier");
    assert_eq!(dim, 256);
    let classes = 3;
    let weight: Vec<f32> = (0..classes * dim).map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 0.2).collect();
    let head = edgetune::train::head::LinearHead { dim, classes, weight: weight.clone(), bias: vec![0.1, -0.2, 0.05] };
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let m = edgetune::train::finetune::with_head(&backbone, &head, &names).unwrap();
    let m = edgetune::model::etm::ModelFile::from_bytes(&m.to_bytes().unwrap()).unwrap();
    let model = Classifier::new(m.clone()).unwrap();
    for img in list_images(&photos).unwrap().iter().take(3) {
        let x = load_preprocessed(img, &m.header.preprocess).unwrap();
        let e = model.embeddings(x.clone()).unwrap().into_data();
        let logits = model.logits(x).unwrap().into_data();
        for c in 0..classes {
            let want: f32 =
                head.bias[c] + weight[c * dim..(c + 1) * dim].iter().zip(&e).map(|(w, v)| w * v).sum::<f32>();
            let scale: f32 = weight[c * dim..(c + 1) * dim].iter().zip(&e).map(|(w, v)| (w * v).abs()).sum::<f32>();
            assert!((logits[c] - want).abs() <= 0.01 * scale + 1e-4, "{img:?} class {c}: {} vs {want}", logits[c]);
        }
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgetune-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
