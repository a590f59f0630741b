//! Runner for the ONNX backend node tests (`<dir>/<test>/model.onnx` plus
//! `test_data_set_*/input_*.pb` and `output_*.pb`, as installed by Debian's
//! `libonnx-testdata` under `/usr/share/libonnx-testdata/data/node`).
//!
//! Each test is run on the reference kernels through [`super::graph`] and compared with the
//! expected outputs: shapes and element types must match; integer outputs must be equal;
//! float outputs must satisfy `|got - want| <= ONNX_ATOL + ONNX_RTOL * |want|` (the
//! tolerances of ONNX's own backend test runner), NaN matching NaN.
//! A test using an op, attribute or data type the engine does not implement is skipped,
//! with the reason; anything else that goes wrong (including an unreadable file) fails it.

use std::path::{Path, PathBuf};

use super::graph;
use super::value::{Data, Value};
use crate::base::error::{Error, Result};

/// Relative tolerance for float outputs (ONNX backend test default).
pub const ONNX_RTOL: f64 = 1e-3;
/// Absolute tolerance for float outputs (ONNX backend test default).
pub const ONNX_ATOL: f64 = 1e-7;

/// The result of one test.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// Counts over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// Compares one output; `Err` says how it differs.
pub fn compare(want: &Value, got: &Value) -> std::result::Result<(), String> {
    if want.shape != got.shape {
        return Err(format!("shape {:?}, expected {:?}", got.shape, want.shape));
    }
    let first_diff = |idx: Option<usize>, w: String, g: String| match idx {
        None => Ok(()),
        Some(i) => Err(format!("element {i} is {g}, expected {w}")),
    };
    match (&want.data, &got.data) {
        (Data::F32(w), Data::F32(g)) => {
            let bad = w.iter().zip(g).position(|(&w, &g)| {
                let (w, g) = (w as f64, g as f64);
                !((w.is_nan() && g.is_nan()) || w == g || (w - g).abs() <= ONNX_ATOL + ONNX_RTOL * w.abs())
            });
            first_diff(
                bad,
                bad.map_or(String::new(), |i| w[i].to_string()),
                bad.map_or(String::new(), |i| g[i].to_string()),
            )
        }
        (w, g) if std::mem::discriminant(w) == std::mem::discriminant(g) => {
            let (wi, gi) = (int_values(w), int_values(g));
            let bad = wi.iter().zip(&gi).position(|(a, b)| a != b);
            first_diff(
                bad,
                bad.map_or(String::new(), |i| wi[i].to_string()),
                bad.map_or(String::new(), |i| gi[i].to_string()),
            )
        }
        (w, g) => Err(format!("element type {}, expected {}", g.type_name(), w.type_name())),
    }
}

fn int_values(d: &Data) -> Vec<i64> {
    match d {
        Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
        Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
        Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
        Data::I64(v) => v.clone(),
        Data::F32(_) => vec![],
    }
}

/// Sorted `name_0.pb, name_1.pb, ...` files in `dir` (contiguous from 0).
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.is_file()).collect()
}

fn run_data_set(model: &super::proto::ModelProto, set: &Path) -> Result<Option<String>> {
    let names = graph::feed_names(model);
    let inputs = numbered(set, "input");
    if inputs.len() != names.len() {
        return Err(Error::parse(set, format!("{} input files for {} graph inputs", inputs.len(), names.len())));
    }
    let feeds =
        names.into_iter().zip(&inputs).map(|(n, p)| Ok((n, graph::load_tensor(p)?))).collect::<Result<Vec<_>>>()?;
    let expected = numbered(set, "output").iter().map(|p| graph::load_tensor(p)).collect::<Result<Vec<_>>>()?;
    let got = graph::run(model, feeds)?;
    if got.len() != expected.len() {
        return Ok(Some(format!("{} outputs, expected {}", got.len(), expected.len())));
    }
    for (i, (w, g)) in expected.iter().zip(&got).enumerate() {
        if let Err(msg) = compare(w, g) {
            return Ok(Some(format!("{}: output {i}: {msg}", set.display())));
        }
    }
    Ok(None)
}

/// Runs one test directory.
pub fn run_case(dir: &Path) -> Outcome {
    let model = match graph::load_model(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let unsupported = graph::unsupported_nodes(&model);
    if !unsupported.is_empty() {
        return Outcome::Skip(format!("unsupported op {}", unsupported.join(", ")));
    }
    let mut sets: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
            .collect(),
        Err(e) => return Outcome::Fail(Error::io(dir, e).to_string()),
    };
    sets.sort();
    if sets.is_empty() {
        return Outcome::Fail(format!("{}: no test_data_set_* directory", dir.display()));
    }
    for set in &sets {
        match run_data_set(&model, set) {
            Ok(None) => {}
            Ok(Some(msg)) => return Outcome::Fail(msg),
            Err(Error::Unsupported { what }) => return Outcome::Skip(what),
            Err(e) => return Outcome::Fail(e.to_string()),
        }
    }
    Outcome::Pass
}

/// Test names (directories holding a `model.onnx`) under `root`, sorted.
pub fn discover(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads a `--only` list: one test name per line; blank lines and `#` comments ignored.
pub fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Runs the tests under `root` (all, or those named in `only`), calling `report` per test.
/// A name in `only` with no directory under `root` fails.
pub fn run_suite(root: &Path, only: Option<&[String]>, mut report: impl FnMut(&str, &Outcome)) -> Result<Summary> {
    let names = match only {
        Some(list) => list.to_vec(),
        None => discover(root)?,
    };
    if !root.is_dir() {
        return Err(Error::io(root, std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory")));
    }
    let mut s = Summary::default();
    for name in &names {
        let dir = root.join(name);
        let outcome = if dir.join("model.onnx").is_file() {
            run_case(&dir)
        } else {
            Outcome::Fail(format!("{}: no such test (missing model.onnx)", dir.display()))
        };
        match &outcome {
            Outcome::Pass => s.passed += 1,
            Outcome::Fail(_) => s.failed += 1,
            Outcome::Skip(_) => s.skipped += 1,
        }
        report(name, &outcome);
    }
    Ok(s)
}
