//! `Engine`: a model on the chosen backend in the page ([`crate::exec::engine`] under JS).
//!
//! ```js
//! const engine = await Engine.create(modelBytes /* Uint8Array of an .etm */, "auto");
//! engine.backend();   // { backend: "gpu" | "cpu", precision, device, variant, reason }
//! const r = await engine.classify(rgba /* Uint8Array */, width, height, 5);
//! // r = { top: [{ index, label, probability }], logits: number[], embedding: number[], ms, backend }
//! const e = await engine.embed(rgba, width, height);  // Float32Array (the pooled features)
//! ```
//! `backend` is "auto" (WebGPU when an adapter exists and the startup self-test passes,
//! else CPU), "gpu" (an error otherwise) or "cpu". Frames are RGBA as `getImageData` gives
//! them; preprocessing (crop, resize, normalize) is the model's own, in wasm. One call runs
//! at a time: a second call while one is running is rejected with a "busy" error rather
//! than queued, so a frame loop never piles up stale frames. A lost WebGPU device is rebuilt
//! (or, under "auto", the CPU takes over) inside the call; `backend()` then says so.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::base::clock::now_ms;
use crate::exec::engine::{BackendChoice, Engine};
use crate::exec::{top_k, Classifier};
use crate::model::etm::ModelFile;
use crate::model::preprocess::preprocess;

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    serde_wasm_bindgen::to_value(v).map_err(js_err)
}

#[derive(Serialize)]
struct Top {
    index: usize,
    label: String,
    probability: f32,
}

#[derive(Serialize)]
struct Classification {
    top: Vec<Top>,
    logits: Vec<f32>,
    embedding: Vec<f32>,
    ms: f64,
    backend: &'static str,
}

/// A model on its backend (see the module docs).
#[wasm_bindgen(js_name = Engine)]
pub struct JsEngine {
    inner: Rc<RefCell<Engine>>,
}

/// `inner`, unless a call is already running on it.
fn take(inner: &Rc<RefCell<Engine>>) -> Result<std::cell::RefMut<'_, Engine>, JsError> {
    inner.try_borrow_mut().map_err(|_| JsError::new("engine busy: the previous call has not finished"))
}

// The engine is borrowed across the awaits of a GPU call on purpose: the borrow is what makes
// an overlapping call fail fast with "engine busy" (see `take`), and JS is single-threaded.
#[allow(clippy::await_holding_refcell_ref)]
#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Loads an `.etm` model and prepares it on `backend` ("auto" by default).
    pub async fn create(model: Vec<u8>, backend: Option<String>) -> Result<JsEngine, JsError> {
        let choice: BackendChoice = backend.as_deref().unwrap_or("auto").parse().map_err(js_err)?;
        let classifier = Classifier::new(ModelFile::from_bytes(&model).map_err(js_err)?).map_err(js_err)?;
        let engine = Engine::new(classifier, choice).await.map_err(js_err)?;
        Ok(JsEngine { inner: Rc::new(RefCell::new(engine)) })
    }

    /// What runs and why: `{ backend, precision, device, variant, reason }`.
    pub fn backend(&self) -> Result<JsValue, JsError> {
        to_js(take(&self.inner)?.report())
    }

    /// The model's class labels.
    pub fn labels(&self) -> Result<Vec<String>, JsError> {
        Ok(take(&self.inner)?.classifier.file.header.labels.clone())
    }

    /// Top-`k` classes (5 by default) and all logits of one RGBA frame.
    pub fn classify(&self, rgba: Vec<u8>, width: usize, height: usize, k: Option<usize>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine = take(&inner)?;
            let x = preprocess(&rgba, width, height, 4, &engine.classifier.file.header.preprocess).map_err(js_err)?;
            let start = now_ms();
            let (embedding, logits) = engine.embeddings_and_logits(x).await.map_err(js_err)?;
            let ms = now_ms() - start;
            let labels = &engine.classifier.file.header.labels;
            let top = top_k(logits.data(), k.unwrap_or(5))
                .into_iter()
                .map(|(index, probability)| Top {
                    index,
                    label: labels.get(index).cloned().unwrap_or_default(),
                    probability,
                })
                .collect();
            let r = Classification {
                top,
                logits: logits.into_data(),
                embedding: embedding.into_data(),
                ms,
                backend: engine.report().backend,
            };
            Ok(to_js(&r)?)
        })
    }

    /// The embedding (global-pool features) of one RGBA frame: what head training uses.
    pub fn embed(&self, rgba: Vec<u8>, width: usize, height: usize) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine = take(&inner)?;
            let x = preprocess(&rgba, width, height, 4, &engine.classifier.file.header.preprocess).map_err(js_err)?;
            let e = engine.embeddings(x).await.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(e.data()).into())
        })
    }

    /// Destroys the WebGPU device as a driver reset would (tests the recovery path).
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> Result<(), JsError> {
        take(&self.inner)?.lose_gpu_device();
        Ok(())
    }
}

/// The backbone `.etm` with the user's trained head (`weight` `[classes, dim]` row-major,
/// `bias` `[classes]`) and class names: a normal model file (int8 backbones get an int8
/// head, quantized per class) that the CLI and the engine load like any other.
#[wasm_bindgen(js_name = modelWithHead)]
pub fn model_with_head(backbone: &[u8], weight: &[f32], bias: &[f32], names: Vec<String>) -> Result<Vec<u8>, JsError> {
    let m = ModelFile::from_bytes(backbone).map_err(js_err)?;
    let classes = names.len();
    if classes < 2 || bias.len() != classes || !weight.len().is_multiple_of(classes) || weight.is_empty() {
        return Err(JsError::new(&format!(
            "modelWithHead: {classes} names, {} biases and {} weights do not make a head",
            bias.len(),
            weight.len()
        )));
    }
    let head = crate::train::head::LinearHead {
        dim: weight.len() / classes,
        classes,
        weight: weight.to_vec(),
        bias: bias.to_vec(),
    };
    let out = crate::train::finetune::with_head(&m, &head, &names).map_err(js_err)?;
    out.to_bytes().map_err(js_err)
}
