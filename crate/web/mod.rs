//! The only `#[wasm_bindgen]` surface (wasm32 builds only). Errors cross the boundary as
//! `JsError` with the engine's message; a panic hook turns any panic into a console error
//! instead of an opaque `unreachable`. Results cross as plain JS objects
//! (serde-wasm-bindgen).
//!
//! JS API (ES module `pkg/edgetune.js`, after `await init()`):
//! - `version(): string`: the engine version.
//! - `probeBackend(): Promise<{ backend: "webgpu" | "cpu", description: string, dot4: boolean }>`:
//!   whether a WebGPU adapter exists (and supports `dot4I8Packed`); without one the engine
//!   uses its CPU path and `description` says why.
//! - `Engine`: a model on WebGPU or the CPU: `classify`, `embed`, `setHead`, `frameSize`,
//!   `backend()`, `info()` (see [`engine`]).
//! - `headPredictions(weight, bias, embeddings)`: the class a head predicts for each embedding.
//! - `HeadTrainer`: head-only training on embeddings, one epoch per call (see [`trainer`]).
//! - `importModel(bytes: Uint8Array, fileName: string, labels?: string[], normalization?:
//!   "imagenet"): Uint8Array`: a `.tflite`, `.onnx` or `.etm` file converted in the browser to
//!   `.etm` bytes for `Engine.create` (format by extension, else by content); `"imagenet"`
//!   records torchvision's per-channel mean/std (an ONNX file carries no preprocessing); bad
//!   files throw a clear error.
//!   Only in the importer module `pkg/importer/edgetune.js` (the same API plus the ONNX and
//!   TFLite readers), which the page loads when a model file is opened; the engine module
//!   `pkg/edgetune.js` leaves the readers out to stay small.
//! - `modelInfo(etm: Uint8Array)`: `{ architecture, precision, classes, dim, input, source,
//!   normalization: { mean, scale } }` (per channel, pixel units);
//!   `dim` is the embedding width a trained head takes (null when the logits have no dense head).
//! - `quantizeModel(etm, rgba, count, width, height, method, progress?)`: a float model
//!   post-training quantized to int8 on the user's own frames (`count` RGBA frames packed);
//!   `topOneAgreement(a, b, rgba, count, width, height)`: how many frames two models agree on.
//! - `profileLayers(etm, rgba, width, height, runs)`: `[{ name, kind, ms, macs }]`, each node's
//!   median CPU time (the browser benchmark's per-layer profile).
//! - `simdPeak(iters)`: multiply-adds per second of the int8 SIMD instruction mix alone.
//! - `setThreads(n)`, `threads()`: how many threads the CPU kernels split work for (the
//!   threaded module, `pkg/threads/`; always 1 in the others), and `poolHelper()`, the life of
//!   a helper worker (never returns; `www/lib/engine-loader.js` starts them).

mod engine;
mod trainer;

use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Installs the panic hook once, when the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The engine version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// Converts a model file to `.etm` bytes (see the module docs). Only in the importer module
/// (`pkg/importer/`, built with the `importers` feature), which the page loads on demand.
#[cfg(feature = "importers")]
#[wasm_bindgen(js_name = importModel)]
pub fn import_model(
    bytes: Vec<u8>,
    file_name: String,
    labels: Option<Vec<String>>,
    normalization: Option<String>,
) -> Result<Vec<u8>, JsError> {
    let err = |e: crate::Error| JsError::new(&e.to_string());
    let mut m = crate::import::import_file(&bytes, &file_name, labels).map_err(err)?;
    match normalization.as_deref() {
        None | Some("") => {}
        Some("imagenet") if m.header.quantization.as_ref().is_none_or(|q| !q.arithmetic.is_tflite()) => {
            let (mean, std) = (
                crate::model::preprocess::Preprocess::IMAGENET_MEAN,
                crate::model::preprocess::Preprocess::IMAGENET_STD,
            );
            m.header.preprocess.set_unit_normalization(mean, std).map_err(err)?;
        }
        Some(other) => {
            return Err(JsError::new(&format!(
                "normalization '{other}' (only \"imagenet\", for models without a TFLite input quantization)"
            )))
        }
    }
    m.to_bytes().map_err(err)
}

#[derive(Serialize)]
struct ModelInfo {
    architecture: String,
    precision: &'static str,
    classes: usize,
    /// The embedding width a head trained on this model takes (None: no dense head).
    dim: Option<usize>,
    input: [usize; 3],
    source: String,
    /// Per-channel (R, G, B) mean and divisor in pixel units: `(x - mean[c]) / scale[c]`.
    normalization: Normalization,
}

#[derive(Serialize)]
struct Normalization {
    mean: [f32; 3],
    scale: [f32; 3],
}

/// What an `.etm` holds (see the module docs).
#[wasm_bindgen(js_name = modelInfo)]
pub fn model_info(etm: Vec<u8>) -> Result<JsValue, JsError> {
    let m = crate::model::etm::ModelFile::from_bytes(&etm).map_err(|e| JsError::new(&e.to_string()))?;
    serde_wasm_bindgen::to_value(&info_of(&m)).map_err(|e| JsError::new(&e.to_string()))
}

/// [`model_info`]'s object for a loaded model (also `Engine.info()`, without parsing again).
fn info_of(m: &crate::model::etm::ModelFile) -> ModelInfo {
    ModelInfo {
        architecture: m.header.architecture.clone(),
        precision: if m.is_int8() { "int8" } else { "f32" },
        classes: m.header.labels.len(),
        dim: m.embedding_dim(),
        input: m.header.graph.input,
        source: m.header.provenance.source.clone(),
        normalization: {
            let (mean, scale) = m.header.preprocess.normalization();
            Normalization { mean, scale }
        },
    }
}

/// A trained head `[classes, dim]` quantized per output channel to int8, as every int8 model
/// stores its head (`s_c = max |w_c| / 127`, `q = round(w / s_c)`): `{ weight, scales }` with
/// `weight` the dequantized values `q s_c` (what the int8 head computes with, and what the
/// page keeps) and `scales` per class.
#[wasm_bindgen(js_name = quantizeHead)]
pub fn quantize_head(weight: &[f32], classes: usize) -> Result<JsValue, JsError> {
    #[derive(serde::Serialize)]
    struct Head {
        weight: Vec<f32>,
        scales: Vec<f32>,
    }
    if classes == 0 || weight.is_empty() || !weight.len().is_multiple_of(classes) {
        return Err(JsError::new(&format!("quantize head: {} weights for {classes} classes", weight.len())));
    }
    if weight.iter().any(|v| !v.is_finite()) {
        return Err(JsError::new("quantize head: the weights contain NaN or infinity"));
    }
    let (q, scales) = crate::quant::calibrate::quantize_weights_per_channel(weight, classes, None)
        .map_err(|e| JsError::new(&e.to_string()))?;
    let per = weight.len() / classes;
    let weight = q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / per]).collect();
    serde_wasm_bindgen::to_value(&Head { weight, scales }).map_err(|e| JsError::new(&e.to_string()))
}

/// The class the head (`weight` `[classes, dim]`, `bias` `[classes]`) predicts for each of
/// the embeddings packed in `embeddings` (`[n, dim]`): the engine's own head arithmetic
/// ([`crate::exec::user_head::UserHead`]), for judging a head on stored samples.
#[wasm_bindgen(js_name = headPredictions)]
pub fn head_predictions(weight: Vec<f32>, bias: Vec<f32>, embeddings: &[f32]) -> Result<Vec<u32>, JsError> {
    let err = |e: crate::Error| JsError::new(&e.to_string());
    let classes = bias.len();
    let dim = weight.len().checked_div(classes).unwrap_or(0);
    let names = (0..classes).map(|c| c.to_string()).collect();
    let head = crate::exec::user_head::UserHead::new(dim, weight, bias, names).map_err(err)?;
    Ok(head.predictions(embeddings).map_err(err)?.into_iter().map(|c| c as u32).collect())
}

/// How a head (`weight` `[classes, dim]`, `bias` `[classes]`) does on labelled embeddings
/// (`[n, dim]` packed, `labels` in `0..classes`): `{ loss, accuracy, count }`, the mean
/// cross-entropy of its float logits and the share of the engine's head predictions
/// ([`head_predictions`]) that are right. A federation's evaluate round reports this.
#[wasm_bindgen(js_name = headEvaluate)]
pub fn head_evaluate(weight: Vec<f32>, bias: Vec<f32>, embeddings: &[f32], labels: &[u32]) -> Result<JsValue, JsError> {
    let classes = bias.len();
    let dim = weight.len().checked_div(classes).unwrap_or(0);
    let n = labels.len();
    if dim == 0 || weight.len() != dim * classes || embeddings.len() != n * dim {
        return Err(JsError::new(&format!(
            "evaluate: {} weights, {classes} classes and {} values for {n} samples do not fit together",
            weight.len(),
            embeddings.len()
        )));
    }
    if n == 0 {
        return Err(JsError::new("evaluate: no samples"));
    }
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    if let Some(l) = labels.iter().find(|&&l| l >= classes) {
        return Err(JsError::new(&format!("evaluate: label {l} outside 0..{classes}")));
    }
    let head = crate::train::head::LinearHead { dim, classes, weight: weight.clone(), bias: bias.clone() };
    let logits = head.logits(embeddings, n).map_err(|e| JsError::new(&e.to_string()))?;
    let (loss, _) = crate::train::loss::Loss::cross_entropy()
        .compute(&logits, &labels, classes)
        .map_err(|e| JsError::new(&e.to_string()))?;
    let predicted = head_predictions(weight, bias, embeddings)?;
    let right = predicted.iter().zip(&labels).filter(|(p, l)| **p as usize == **l).count();
    #[derive(Serialize)]
    struct Evaluation {
        loss: f32,
        accuracy: f64,
        count: usize,
    }
    serde_wasm_bindgen::to_value(&Evaluation { loss, accuracy: right as f64 / n as f64, count: n })
        .map_err(|e| JsError::new(&e.to_string()))
}

/// A float `.etm` quantized to int8 on `count` RGBA frames of `width x height` packed in
/// `rgba` (see [`crate::compress::frames`]); `method` is "minmax", "percentile" or "mse";
/// `progress(pass, done, total)` is called as calibration goes; if it throws, calibration
/// finishes without calling it again and the first exception is returned as the error.
#[wasm_bindgen(js_name = quantizeModel)]
pub fn quantize_model(
    etm: &[u8],
    rgba: &[u8],
    count: usize,
    width: usize,
    height: usize,
    method: String,
    progress: Option<js_sys::Function>,
) -> Result<Vec<u8>, JsError> {
    let err = |e: crate::Error| JsError::new(&e.to_string());
    let m = crate::model::etm::ModelFile::from_bytes(etm).map_err(err)?;
    let frames = crate::compress::frames::RgbaFrames::new(rgba, count, width, height).map_err(err)?;
    let thrown = core::cell::RefCell::new(None::<JsValue>);
    let report = |pass: usize, done: usize, total: usize| {
        let Some(f) = &progress else { return };
        if thrown.borrow().is_some() {
            return;
        }
        if let Err(e) = f.call3(&JsValue::NULL, &pass.into(), &done.into(), &total.into()) {
            thrown.replace(Some(e));
        }
    };
    let q = crate::compress::frames::quantize_on_frames(&m, &frames, &method, &report).map_err(err)?;
    if let Some(e) = thrown.into_inner() {
        let what =
            e.as_string().or_else(|| js_sys::Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()));
        return Err(JsError::new(&format!(
            "the progress callback threw: {}",
            what.unwrap_or_else(|| "(no message)".into())
        )));
    }
    q.to_bytes().map_err(err)
}

/// On how many of the packed RGBA frames the two `.etm` models agree on the top-1 class.
#[wasm_bindgen(js_name = topOneAgreement)]
pub fn top_one_agreement(
    a: &[u8],
    b: &[u8],
    rgba: &[u8],
    count: usize,
    width: usize,
    height: usize,
) -> Result<usize, JsError> {
    let err = |e: crate::Error| JsError::new(&e.to_string());
    let (a, b) = (
        crate::model::etm::ModelFile::from_bytes(a).map_err(err)?,
        crate::model::etm::ModelFile::from_bytes(b).map_err(err)?,
    );
    let frames = crate::compress::frames::RgbaFrames::new(rgba, count, width, height).map_err(err)?;
    crate::compress::frames::top1_agreement(&a, &b, &frames).map_err(err)
}

#[derive(Serialize)]
struct LayerTime {
    name: String,
    kind: &'static str,
    ms: f64,
    macs: f64,
}

/// Per-layer CPU times of an `.etm` (int8 or f32) on one RGBA frame: the median over `runs`
/// runs of each node (see [`crate::exec::Classifier::profile`]).
#[wasm_bindgen(js_name = profileLayers)]
pub fn profile_layers(etm: &[u8], rgba: &[u8], width: usize, height: usize, runs: usize) -> Result<JsValue, JsError> {
    let err = |e: crate::Error| JsError::new(&e.to_string());
    let m = crate::model::etm::ModelFile::from_bytes(etm).map_err(err)?;
    let x = crate::model::preprocess::preprocess(rgba, width, height, 4, &m.header.preprocess).map_err(err)?;
    let c = crate::exec::Classifier::new(m).map_err(err)?;
    let mut all = vec![];
    for _ in 0..runs.max(1) {
        all.push(c.profile(&x).map_err(err)?);
    }
    let rows = (0..all[0].len())
        .map(|i| {
            let mut ms: Vec<f64> = all.iter().map(|r| r[i].ms).collect();
            ms.sort_by(f64::total_cmp);
            let first = &all[0][i];
            LayerTime { name: first.name.clone(), kind: first.kind, ms: ms[ms.len() / 2], macs: first.macs as f64 }
        })
        .collect::<Vec<_>>();
    serde_wasm_bindgen::to_value(&rows).map_err(|e| JsError::new(&e.to_string()))
}

/// Multiply-adds per second of the int8 GEMM's SIMD instruction mix without memory traffic
/// (`i32x4.dot_i16x8_s` + `i32x4.add`, or the relaxed dot in relaxed builds), over `iters` rounds of 12 chains: the ceiling the browser
/// benchmark compares the measured kernels with. `undefined` if this build has no SIMD.
#[wasm_bindgen(js_name = simdPeak)]
pub fn simd_peak(iters: u32) -> Option<f64> {
    crate::ops::gemm::int8_dot_peak_macs_per_s(iters)
}

/// Sets how many threads the CPU kernels split work for (this thread plus helpers the page
/// started with `poolHelper`); returns the count in effect (1 in a module without threads).
#[wasm_bindgen(js_name = setThreads)]
pub fn set_threads(n: usize) -> usize {
    crate::base::pool::set_threads(n);
    crate::base::pool::threads()
}

/// The thread count the CPU kernels split work for.
#[wasm_bindgen]
pub fn threads() -> usize {
    crate::base::pool::threads()
}

/// A helper worker's loop in the threaded module: waits for kernel tasks and runs them; never
/// returns. Call it from a Web Worker that instantiated this module on the page's shared memory.
#[cfg(target_feature = "atomics")]
#[wasm_bindgen(js_name = poolHelper)]
pub fn pool_helper() {
    crate::base::pool::helper_loop()
}

#[derive(Serialize)]
struct BackendReport {
    backend: &'static str,
    description: String,
    dot4: bool,
}

/// True if `navigator.gpu` exists in this global scope (window or worker).
fn has_webgpu() -> bool {
    let global = js_sys::global();
    let Ok(nav) = js_sys::Reflect::get(&global, &JsValue::from_str("navigator")) else { return false };
    if nav.is_undefined() || nav.is_null() {
        return false;
    }
    js_sys::Reflect::get(&nav, &JsValue::from_str("gpu")).is_ok_and(|g| !g.is_undefined() && !g.is_null())
}

/// Finds the backend the engine will use in this browser.
#[wasm_bindgen(js_name = probeBackend)]
pub async fn probe_backend() -> Result<JsValue, JsError> {
    let report = if !has_webgpu() {
        BackendReport {
            backend: "cpu",
            description: "WebGPU is not available in this browser; using the CPU".into(),
            dot4: false,
        }
    } else {
        match crate::gpu::probe().await {
            Ok(r) => BackendReport { backend: "webgpu", description: r.describe(), dot4: r.packed_int8_dot },
            Err(e) => BackendReport { backend: "cpu", description: format!("{e}; using the CPU"), dot4: false },
        }
    };
    serde_wasm_bindgen::to_value(&report).map_err(|e| JsError::new(&e.to_string()))
}
