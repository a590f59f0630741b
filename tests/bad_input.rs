//! Malformed, truncated and inconsistent ONNX files give errors that name the file and the
//! problem, never a panic, both through the library and through the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgetune::import::onnx::graph::{load_model, load_tensor, run};
use edgetune::import::onnx::proto::{
    data_type, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use edgetune::import::onnx::{Data, Value};
use prost::Message;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgetune-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn relu_model(weights: usize) -> ModelProto {
    let big = TensorProto {
        name: "unused_weights".into(),
        dims: vec![weights as i64],
        data_type: data_type::FLOAT,
        raw_data: vec![0u8; weights * 4],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                op_type: "Relu".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![big],
            input: vec![ValueInfoProto { name: "x".into(), r#type: None }],
            output: vec![ValueInfoProto { name: "y".into(), r#type: None }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor_f32(dims: Vec<i64>, vals: &[f32]) -> TensorProto {
    TensorProto {
        dims,
        data_type: data_type::FLOAT,
        raw_data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn err_of<T: std::fmt::Debug>(r: edgetune::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn valid_model_runs() {
    let dir = temp_dir("valid");
    let p = dir.join("model.onnx");
    std::fs::write(&p, relu_model(16).encode_to_vec()).unwrap();
    let m = load_model(&p).unwrap();
    let x = Value::f32(vec![3], vec![-1.0, 0.0, 2.0]).unwrap();
    let y = run(&m, vec![("x".into(), x)]).unwrap();
    assert_eq!(y[0].data, Data::F32(vec![0.0, 0.0, 2.0]));
}

#[test]
fn truncated_model_names_file_and_problem() {
    let dir = temp_dir("truncated");
    let p = dir.join("model.onnx");
    let bytes = relu_model(1000).encode_to_vec();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(load_model(&p));
    assert!(e.contains("model.onnx") && e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn garbage_and_empty_models_are_rejected() {
    let dir = temp_dir("garbage");
    let p = dir.join("garbage.onnx");
    std::fs::write(&p, b"\xff\xff\xff\xff this is not protobuf").unwrap();
    let e = err_of(load_model(&p));
    assert!(e.contains("garbage.onnx") && e.contains("not a valid ONNX model"), "{e}");
    let p = dir.join("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    let e = err_of(load_model(&p));
    assert!(e.contains("empty.onnx") && e.contains("no graph"), "{e}");
    let e = err_of(load_model(&dir.join("missing.onnx")));
    assert!(e.contains("missing.onnx"), "{e}");
}

#[test]
fn bad_tensor_files_name_file_and_problem() {
    let dir = temp_dir("tensors");
    // truncated protobuf
    let p = dir.join("input_0.pb");
    let bytes = tensor_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).encode_to_vec();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let e = err_of(load_tensor(&p));
    assert!(e.contains("input_0.pb") && e.contains("not a valid ONNX tensor"), "{e}");
    // data shorter than its dims
    let p = dir.join("short.pb");
    std::fs::write(&p, tensor_f32(vec![2, 3], &[1.0, 2.0]).encode_to_vec()).unwrap();
    let e = err_of(load_tensor(&p));
    assert!(e.contains("short.pb") && e.contains("raw bytes"), "{e}");
    // dims whose element count overflows: rejected before allocating
    let p = dir.join("huge.pb");
    std::fs::write(&p, tensor_f32(vec![1 << 40, 1 << 40, 1 << 40], &[]).encode_to_vec()).unwrap();
    let e = err_of(load_tensor(&p));
    assert!(e.contains("overflows"), "{e}");
    // negative dims
    let p = dir.join("neg.pb");
    std::fs::write(&p, tensor_f32(vec![-3], &[]).encode_to_vec()).unwrap();
    let e = err_of(load_tensor(&p));
    assert!(e.contains("neg.pb") && e.contains("negative dimension"), "{e}");
    // unsupported element type
    let p = dir.join("string.pb");
    std::fs::write(
        &p,
        TensorProto { dims: vec![1], data_type: data_type::STRING, ..Default::default() }.encode_to_vec(),
    )
    .unwrap();
    let e = err_of(load_tensor(&p));
    assert!(e.contains("string.pb") && e.contains("string"), "{e}");
}

#[test]
fn graph_errors_are_reported_not_panicked() {
    let mut m = relu_model(1);
    if let Some(g) = m.graph.as_mut() {
        g.node[0].input[0] = "nowhere".into();
    }
    let x = Value::f32(vec![1], vec![1.0]).unwrap();
    let e = err_of(run(&m, vec![("x".into(), x.clone())]));
    assert!(e.contains("nowhere"), "{e}");
    let mut m = relu_model(1);
    if let Some(g) = m.graph.as_mut() {
        g.node[0].op_type = "LSTM".into();
        g.node[0].name = "my_lstm".into();
    }
    let e = err_of(run(&m, vec![("x".into(), x)]));
    assert!(e.contains("LSTM (my_lstm)"), "{e}");
}

fn write_case(root: &Path, name: &str, model: &[u8], input: &[u8], output: &[u8]) {
    let set = root.join(name).join("test_data_set_0");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::write(root.join(name).join("model.onnx"), model).unwrap();
    std::fs::write(set.join("input_0.pb"), input).unwrap();
    std::fs::write(set.join("output_0.pb"), output).unwrap();
}

#[test]
fn cli_reports_corrupt_cases_and_exits_nonzero() {
    let root = temp_dir("cli");
    let model = relu_model(64).encode_to_vec();
    let input = tensor_f32(vec![2], &[-1.0, 3.0]).encode_to_vec();
    let output = tensor_f32(vec![2], &[0.0, 3.0]).encode_to_vec();
    write_case(&root, "test_good", &model, &input, &output);
    write_case(&root, "test_truncated_model", &model[..model.len() - 40], &input, &output);
    write_case(&root, "test_truncated_input", &model, &input[..input.len() - 2], &output);
    let wrong = tensor_f32(vec![2], &[0.0, 4.0]).encode_to_vec();
    write_case(&root, "test_wrong_output", &model, &input, &wrong);
    let out = Command::new(env!("CARGO_BIN_EXE_edgetune")).arg("conformance").arg(&root).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("PASS test_good"), "{stdout}");
    assert!(
        stdout.contains("FAIL test_truncated_model:") && stdout.contains("test_truncated_model/model.onnx"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL test_truncated_input:") && stdout.contains("input_0.pb"), "{stdout}");
    assert!(stdout.contains("FAIL test_wrong_output:") && stdout.contains("element 1 is 3, expected 4"), "{stdout}");
    assert!(stdout.trim_end().ends_with("1 passed, 3 failed, 0 skipped"), "{stdout}");
    // A missing directory is an error (exit 2), not a panic.
    let out =
        Command::new(env!("CARGO_BIN_EXE_edgetune")).args(["conformance", "/nonexistent/edgetune"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/edgetune"));
}
