//! `edgetune prune`, `qat` and `distill` end to end on small data: a MobileNetV2 0.35 built
//! from the architecture code (32x32 input, the ten CIFAR-10 classes) is compressed on a few
//! real CIFAR-10 training images, and the results are checked with `edgetune info` and
//! `classify`. Bad arguments must fail with a message naming the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgetune::data::cifar::CLASSES;
use edgetune::model::etm::ModelFile;
use edgetune::model::preprocess::Preprocess;
use edgetune::zoo::mobilenet_v2::mobilenet_v2;

fn small_model(dir: &Path, name: &str, labels: Vec<String>) -> PathBuf {
    let (mut graph, tensors) = mobilenet_v2(0.35, labels.len(), 11).unwrap();
    graph.input = [32, 32, 3];
    let p = Preprocess { size: 32, crop_fraction: 1.0, ..Default::default() };
    let m = ModelFile::float("mobilenet_v2_0.35", graph, tensors, p, labels, "random initialization (test)");
    let path = dir.join(name);
    m.save(&path).unwrap();
    path
}

/// A scratch folder removed when dropped.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("edgetune-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn edgetune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgetune")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = edgetune(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "edgetune {} failed:\n{text}", args.join(" "));
    text
}

fn fails_with(args: &[&str], needle: &str) {
    let out = edgetune(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "edgetune {} should fail", args.join(" "));
    assert!(err.contains(needle), "edgetune {}: expected '{needle}' in:\n{err}", args.join(" "));
}

fn field(info: &str, name: &str) -> u64 {
    let line = info.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in:\n{info}"));
    line[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn prune_qat_and_distill_on_small_data_and_their_bad_arguments() {
    let Some(train) = common::shared("data/cifar10/train.bin") else { return };
    let dir = TempDir::new("compress_cli");
    let cifar: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let model = small_model(dir.path(), "m.etm", cifar);
    let m = model.to_str().unwrap();
    let data = format!("cifar10:{}", train.display());
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common = ["--data", &data, "--per-class", "3", "--mode", "last-blocks:1", "--epochs", "2", "--lr", "1e-3"];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(common.iter()).chain(tail.iter()).map(|s| s.to_string()).collect()
    };
    let run = |v: Vec<String>| ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let info = |p: &str| ok(&["info", p]);
    let macs = field(&info(m), "MACs");

    // Unstructured: half the trained weights are zero; the model still classifies.
    let pruned = out("pruned.etm");
    let text = run(with(&["prune", "--model", m, "--sparsity", "0.5"], &["--out", &pruned]));
    assert!(text.contains("weights in the trained layers are zero (50."), "{text}");
    let i = info(&pruned);
    assert!(i.contains("convolution and dense weights are zero"), "{i}");
    assert_eq!(field(&i, "MACs"), macs, "unstructured pruning keeps the dense shapes");
    let photo = common::shared_dir().join("data/photos/cat.bmp");
    ok(&["classify", "--backend", "cpu", "--model", &pruned, photo.to_str().unwrap()]);

    // Structured: at least 30% fewer MACs in a smaller dense model.
    let structured = out("structured.etm");
    let text = run(with(
        &["prune", "--model", m, "--structured", "--sparsity", "0.3", "--calib-images", "10"],
        &["--out", &structured],
    ));
    assert!(text.contains("structured: "), "{text}");
    let smaller = field(&info(&structured), "MACs");
    assert!(smaller as f64 <= 0.7 * macs as f64, "{smaller} of {macs} MACs");
    assert!(field(&info(&structured), "parameters") < field(&info(m), "parameters"));

    // QAT: an int8 model the engine runs.
    let qat = out("qat.int8.etm");
    run(with(&["qat", "--model", m, "--samples", "10", "--method", "minmax"], &["--out", &qat]));
    assert!(info(&qat).contains("precision     int8"));
    ok(&["classify", "--backend", "cpu", "--model", &qat, photo.to_str().unwrap()]);

    // Distillation into the structured student, with unlabelled images.
    let distilled = out("distilled.etm");
    let text = run(with(
        &[
            "distill",
            "--teacher",
            m,
            "--student",
            &structured,
            "--unlabelled",
            &data,
            "--unlabelled-offset",
            "100",
            "--unlabelled-count",
            "8",
        ],
        &["--out", &distilled],
    ));
    assert!(text.contains("plus 8 unlabelled images"), "{text}");
    assert!(info(&distilled).contains("distilled (alpha 0.5, temperature 4)"));

    // Bad arguments.
    for s in ["1.0", "-0.1", "1.5"] {
        let v = with(&["prune", "--model", m, "--sparsity", s], &["--out", &out("x.etm")]);
        fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "outside [0, 1)");
    }
    let other = small_model(dir.path(), "other.etm", (0..10).map(|i| format!("thing {i}")).collect());
    let v = with(&["distill", "--teacher", other.to_str().unwrap(), "--student", m], &["--out", &out("x.etm")]);
    fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "teacher's labels (thing 0, thing 1");
    let v = with(&["distill", "--teacher", m, "--student", other.to_str().unwrap()], &["--out", &out("x.etm")]);
    fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "student's labels");
    let v = with(&["qat", "--model", &qat], &["--out", &out("x.etm")]);
    fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "already quantized");
    let v = with(&["prune", "--model", &qat, "--structured", "--sparsity", "0.3"], &["--out", &out("x.etm")]);
    fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "is int8");
    let v = with(&["distill", "--teacher", m, "--student", m, "--alpha", "2"], &["--out", &out("x.etm")]);
    fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), "--alpha 2 must be in [0, 1]");
    assert!(!dir.path().join("x.etm").exists(), "a failed command writes nothing");
}
