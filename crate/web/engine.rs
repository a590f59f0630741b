//! `Engine`: a model on the chosen backend in the page ([`crate::exec::engine`] under JS).
//!
//! ```js
//! const engine = await Engine.create(modelBytes /* Uint8Array of an .etm */, "auto");
//! engine.backend();   // { backend: "gpu" | "cpu", precision, device, variant, reason }
//! engine.info();      // modelInfo() of the loaded model
//! engine.frameSize(); // 256: send square frames of this side (the crop is then exact)
//! engine.setHead(weight, bias, names, 3);  // the user's classes (a head trained on embed());
//!                                         // returns their top 3 on the last frame classified
//! const r = await engine.classify(rgba /* Uint8Array */, width, height, 5, ["embedding"]);
//! // r = { top: [{ index, label, probability }], head?: [...same, the user's classes], headTag?,
//! //       embedding?: number[], logits?: number[], ms, backend }
//! const e = await engine.embed(rgba, width, height);  // Float32Array (the pooled features)
//! ```
//! `classify` returns only what the caller reads: the model's top `k`, the user's top `k`
//! when a head is set (run here, in wasm, on the embedding: [`UserHead`]), and the embedding
//! or all logits only when `include` names them.
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
use crate::exec::user_head::UserHead;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<Vec<Top>>,
    #[serde(rename = "headTag", skip_serializing_if = "Option::is_none")]
    head_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<Vec<f32>>,
    ms: f64,
    backend: &'static str,
}

fn tops(top: Vec<(usize, f32)>, labels: &[String]) -> Vec<Top> {
    top.into_iter()
        .map(|(index, probability)| Top { index, label: labels.get(index).cloned().unwrap_or_default(), probability })
        .collect()
}

/// A model on its backend (see the module docs).
#[wasm_bindgen(js_name = Engine)]
pub struct JsEngine {
    inner: Rc<RefCell<Engine>>,
    /// The user's head and the caller's tag for it (echoed by `classify` as `headTag`).
    head: Rc<RefCell<Option<(UserHead, String)>>>,
    /// The embedding width a head takes (None: the model has no dense head to replace).
    dim: Option<usize>,
    /// The embedding of the last frame classified, so a new head answers at once.
    last: Rc<RefCell<Option<Vec<f32>>>>,
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
        let dim = engine.classifier.file.embedding_dim();
        let (head, last) = (Rc::new(RefCell::new(None)), Rc::new(RefCell::new(None)));
        Ok(JsEngine { inner: Rc::new(RefCell::new(engine)), head, dim, last })
    }

    /// What runs and why: `{ backend, precision, device, variant, reason }`.
    pub fn backend(&self) -> Result<JsValue, JsError> {
        to_js(take(&self.inner)?.report())
    }

    /// What the model is: the object `modelInfo` gives for its bytes, from the model already
    /// loaded.
    pub fn info(&self) -> Result<JsValue, JsError> {
        to_js(&super::info_of(&take(&self.inner)?.classifier.file))
    }

    /// The model's class labels.
    pub fn labels(&self) -> Result<Vec<String>, JsError> {
        Ok(take(&self.inner)?.classifier.file.header.labels.clone())
    }

    /// The side of the square RGBA frame to send: the model's centre crop of it is then
    /// exactly its input, with no second resampling.
    #[wasm_bindgen(js_name = frameSize)]
    pub fn frame_size(&self) -> Result<usize, JsError> {
        Ok(take(&self.inner)?.classifier.file.header.preprocess.frame_size())
    }

    /// Sets the user's head (`weight` `[classes, dim]` row-major, `bias` `[classes]`, class
    /// names), run on every `classify` from now on; bad shapes or values throw. Returns its top
    /// `k` (3 by default) on the last frame classified (null before the first), so a view can
    /// show the new classes without waiting for a frame. It does not wait for a `classify` in
    /// flight; every `classify` result says which head it ran as `headTag` (`tag`, "" by
    /// default).
    #[wasm_bindgen(js_name = setHead)]
    pub fn set_head(
        &self,
        weight: Vec<f32>,
        bias: Vec<f32>,
        names: Vec<String>,
        k: Option<usize>,
        tag: Option<String>,
    ) -> Result<JsValue, JsError> {
        let dim = self.dim.ok_or_else(|| JsError::new("this model has no dense head on pooled features to replace"))?;
        let head = UserHead::new(dim, weight, bias, names).map_err(js_err)?;
        let top = match self.last.try_borrow().ok().as_deref().and_then(Option::as_ref) {
            Some(e) => Some(tops(head.top_k(e, k.unwrap_or(3)).map_err(js_err)?, head.names())),
            None => None,
        };
        *self.head.try_borrow_mut().map_err(|_| JsError::new("engine busy: the head is in use"))? =
            Some((head, tag.unwrap_or_default()));
        to_js(&top)
    }

    /// Removes the user's head (`classify` then returns the model's classes only).
    #[wasm_bindgen(js_name = clearHead)]
    pub fn clear_head(&self) -> Result<(), JsError> {
        *self.head.try_borrow_mut().map_err(|_| JsError::new("engine busy: the previous call has not finished"))? =
            None;
        Ok(())
    }

    /// Top-`k` classes (5 by default) of one RGBA frame, the model's and (with a head set) the
    /// user's; `include` may name "embedding" and "logits" to have them returned too.
    pub fn classify(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
        k: Option<usize>,
        include: Option<Vec<String>>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let head = self.head.clone();
        let last = self.last.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let wants = |what: &str| include.as_ref().is_some_and(|v| v.iter().any(|s| s == what));
            let mut engine = take(&inner)?;
            let x = preprocess(&rgba, width, height, 4, &engine.classifier.file.header.preprocess).map_err(js_err)?;
            let k = k.unwrap_or(5);
            let start = now_ms();
            let (embedding, logits) = engine.embeddings_and_logits(x).await.map_err(js_err)?;
            if let Ok(mut l) = last.try_borrow_mut() {
                *l = Some(embedding.data().to_vec());
            }
            let user = head.try_borrow().map_err(|_| JsError::new("engine busy: the head is being replaced"))?;
            let (head_top, head_tag) = match user.as_ref() {
                Some((h, tag)) => {
                    (Some(tops(h.top_k(embedding.data(), k).map_err(js_err)?, h.names())), Some(tag.clone()))
                }
                None => (None, None),
            };
            let ms = now_ms() - start;
            let r = Classification {
                top: tops(top_k(logits.data(), k), &engine.classifier.file.header.labels),
                head: head_top,
                head_tag,
                logits: wants("logits").then(|| logits.into_data()),
                embedding: wants("embedding").then(|| embedding.into_data()),
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
