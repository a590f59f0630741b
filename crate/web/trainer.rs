//! `HeadTrainer`: head-only training for the page (and its Web Worker), advancing one epoch
//! per call so the caller can yield between epochs, draw progress and stop the run.
//!
//! ```js
//! const t = new HeadTrainer(1280, ["mug", "plant"], { epochs: 100, lr: 3e-3, optimizer: "adam" });
//! t.addSample(embedding /* Float32Array(1280) */, 0);            // ... for every sample
//! t.start();                                                     // validates, splits
//! let p;
//! while ((p = t.runEpoch()) !== null) { draw(p); await new Promise(r => setTimeout(r)); }
//! const r = t.result();  // { weight, bias, classes, dim, history, validationAccuracy, confusion, ... }
//! ```
//! Options (all optional): `epochs`, `lr`, `optimizer` (sgd, momentum, nesterov, adam,
//! adamw, rmsprop), `loss` (ce, mse, hinge), `batchSize`, `weightDecay`, `validation`
//! (fraction held out), `patience`, `seed`. Errors (no samples, one class, NaN features,
//! wrong lengths, unknown names) are thrown as `Error`s with the engine's message.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::base::rng::Rng;
use crate::train::head::LinearHead;
use crate::train::loss::Loss;
use crate::train::optim::Optimizer;
use crate::train::trainer::{Dataset, HeadModel, Progress, Session, TrainConfig};

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Options {
    epochs: Option<usize>,
    lr: Option<f32>,
    optimizer: Option<String>,
    loss: Option<String>,
    batch_size: Option<usize>,
    weight_decay: Option<f32>,
    validation: Option<f32>,
    patience: Option<usize>,
    seed: Option<u64>,
}

/// Head-only trainer on embeddings supplied by the page.
#[wasm_bindgen]
pub struct HeadTrainer {
    dim: usize,
    classes: Vec<String>,
    cfg: TrainConfig,
    features: Vec<f32>,
    labels: Vec<usize>,
    session: Option<Session<HeadModel>>,
    trained: Option<LinearHead>,
    /// The head training starts from (a federation's global head), else a fresh one.
    initial: Option<LinearHead>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainOutput {
    dim: usize,
    classes: Vec<String>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    history: Vec<Progress>,
    validation_accuracy: Option<f64>,
    confusion: Option<Vec<u64>>,
    stopped_early: bool,
    cancelled: bool,
}

impl HeadTrainer {
    fn data(&self) -> Dataset<'_> {
        dataset(&self.features, &self.labels, self.dim, self.classes.len())
    }
}

/// The trainers' samples as a training set (one variant per sample).
fn dataset<'a>(features: &'a [f32], labels: &'a [usize], dim: usize, classes: usize) -> Dataset<'a> {
    Dataset { features, labels, dim, variants: 1, classes, teacher: None }
}

/// One epoch of a started session, as the JS progress object (or `null` when over).
fn epoch_js<M: crate::train::trainer::Trainable>(
    session: &mut Option<Session<M>>,
    data: &Dataset,
) -> Result<JsValue, JsError> {
    let session = session.as_mut().ok_or_else(|| JsError::new("train: call start() first"))?;
    match session.run_epoch(data, &mut |_| true).map_err(js_err)? {
        Some(p) => serde_wasm_bindgen::to_value(&p).map_err(js_err),
        None => Ok(JsValue::NULL),
    }
}

#[wasm_bindgen]
impl HeadTrainer {
    #[wasm_bindgen(constructor)]
    pub fn new(dim: usize, classes: JsValue, options: JsValue) -> Result<HeadTrainer, JsError> {
        let classes: Vec<String> = serde_wasm_bindgen::from_value(classes).map_err(js_err)?;
        if dim == 0 {
            return Err(JsError::new("train: embedding dimension must be positive"));
        }
        let cfg = parse_options(&classes, options)?;
        Ok(HeadTrainer {
            dim,
            classes,
            cfg,
            features: vec![],
            labels: vec![],
            session: None,
            trained: None,
            initial: None,
        })
    }

    /// Adds one sample (before `start`).
    #[wasm_bindgen(js_name = addSample)]
    pub fn add_sample(&mut self, embedding: &[f32], label: usize) -> Result<(), JsError> {
        if self.session.is_some() {
            return Err(JsError::new("train: samples cannot be added while training"));
        }
        if embedding.len() != self.dim {
            return Err(JsError::new(&format!(
                "train: embedding has {} values, expected {}",
                embedding.len(),
                self.dim
            )));
        }
        if label >= self.classes.len() {
            return Err(JsError::new(&format!("train: label {label} outside 0..{}", self.classes.len())));
        }
        self.features.extend_from_slice(embedding);
        self.labels.push(label);
        Ok(())
    }

    #[wasm_bindgen(js_name = sampleCount)]
    pub fn sample_count(&self) -> usize {
        self.labels.len()
    }

    /// Starts the next run from this head (`weight` `[classes, dim]`, `bias` `[classes]`)
    /// instead of a freshly initialized one: federated rounds train the global head further.
    #[wasm_bindgen(js_name = setInitialHead)]
    pub fn set_initial_head(&mut self, weight: Vec<f32>, bias: Vec<f32>) -> Result<(), JsError> {
        let k = self.classes.len();
        if weight.len() != k * self.dim || bias.len() != k {
            return Err(JsError::new(&format!(
                "train: the initial head has {} weights and {} biases, expected {} x {} and {k}",
                weight.len(),
                bias.len(),
                k,
                self.dim
            )));
        }
        if !weight.iter().chain(&bias).all(|v| v.is_finite()) {
            return Err(JsError::new("train: the initial head holds NaN or infinite values"));
        }
        self.initial = Some(LinearHead { dim: self.dim, classes: k, weight, bias });
        Ok(())
    }

    /// Validates the samples and settings and starts a run.
    pub fn start(&mut self) -> Result<(), JsError> {
        let head = match &self.initial {
            Some(h) => h.clone(),
            None => LinearHead::new(self.dim, self.classes.len(), &mut Rng::new(self.cfg.seed)).map_err(js_err)?,
        };
        let session = Session::new(HeadModel::new(head), &self.data(), &self.cfg).map_err(js_err)?;
        self.session = Some(session);
        self.trained = None;
        Ok(())
    }

    /// Runs one epoch; returns its progress event, or `null` when the run is over.
    #[wasm_bindgen(js_name = runEpoch)]
    pub fn run_epoch(&mut self) -> Result<JsValue, JsError> {
        let data = dataset(&self.features, &self.labels, self.dim, self.classes.len());
        epoch_js(&mut self.session, &data)
    }

    /// Stops the run after the current epoch; `result()` returns the best head so far.
    pub fn stop(&mut self) {
        if let Some(s) = self.session.as_mut() {
            s.stop();
        }
    }

    /// The trained head and how training went (ends the run).
    pub fn result(&mut self) -> Result<JsValue, JsError> {
        let session = self.session.take().ok_or_else(|| JsError::new("train: nothing trained (call start())"))?;
        let r = session.finish();
        let out = TrainOutput {
            dim: self.dim,
            classes: self.classes.clone(),
            weight: r.model.head.weight.clone(),
            bias: r.model.head.bias.clone(),
            history: r.history,
            validation_accuracy: r.validation.as_ref().map(|c| c.accuracy()),
            confusion: r.validation.map(|c| c.counts),
            stopped_early: r.stopped_early,
            cancelled: r.cancelled,
        };
        self.trained = Some(r.model.head);
        serde_wasm_bindgen::to_value(&out).map_err(js_err)
    }

    /// Logits of one embedding under the trained head (after `result()`).
    pub fn logits(&self, embedding: &[f32]) -> Result<Vec<f32>, JsError> {
        let head = self.trained.as_ref().ok_or_else(|| JsError::new("train: no trained head yet"))?;
        head.logits(embedding, 1).map_err(js_err)
    }
}

/// Last-blocks fine-tuning in the page: the float backbone's frozen prefix runs once per
/// added image, then the last `blocks` blocks, the head convolution and a new head train
/// (after a linear probe), one epoch per `runEpoch()` call.
///
/// ```js
/// const t = new BlockTrainer(f32EtmBytes, 1, ["mug", "plant"], { epochs: 20, lr: 3e-3 });
/// t.addImage(rgbaBytes, width, height, 0);     // ... every sample (RGBA, e.g. from a canvas)
/// t.start(); while (t.runEpoch() !== null) { ... }
/// const r = t.result();   // { history, validationAccuracy, confusion, model: Uint8Array (.etm) }
/// ```
#[wasm_bindgen]
pub struct BlockTrainer {
    backbone: crate::model::etm::ModelFile,
    plan: crate::exec::cpu_f32::PreparedF32,
    split: crate::train::blocks::BlockSplit,
    classes: Vec<String>,
    cfg: TrainConfig,
    features: Vec<f32>,
    labels: Vec<usize>,
    dim: usize,
    session: Option<Session<crate::train::blocks::SuffixModel>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockOutput {
    history: Vec<Progress>,
    validation_accuracy: Option<f64>,
    confusion: Option<Vec<u64>>,
    stopped_early: bool,
    cancelled: bool,
    #[serde(with = "serde_bytes_as_array")]
    model: Vec<u8>,
}

/// Model bytes cross as a `Uint8Array`.
mod serde_bytes_as_array {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

fn parse_options(classes: &[String], options: JsValue) -> Result<TrainConfig, JsError> {
    let o: Options = if options.is_undefined() {
        Options::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(js_err)?
    };
    if classes.len() < 2 {
        return Err(JsError::new("train: need at least two classes"));
    }
    let d = TrainConfig::default();
    Ok(TrainConfig {
        epochs: o.epochs.unwrap_or(100),
        lr: o.lr.unwrap_or(3e-3),
        optimizer: Optimizer::parse(o.optimizer.as_deref().unwrap_or("adam"), o.weight_decay.unwrap_or(0.0))
            .map_err(js_err)?,
        loss: Loss::parse(o.loss.as_deref().unwrap_or("ce")).map_err(js_err)?,
        batch_size: o.batch_size.unwrap_or(d.batch_size),
        validation: o.validation.unwrap_or(0.0),
        patience: o.patience,
        seed: o.seed.unwrap_or(0),
        ..d
    })
}

#[wasm_bindgen]
impl BlockTrainer {
    #[wasm_bindgen(constructor)]
    pub fn new(model: &[u8], blocks: usize, classes: JsValue, options: JsValue) -> Result<BlockTrainer, JsError> {
        let classes: Vec<String> = serde_wasm_bindgen::from_value(classes).map_err(js_err)?;
        let cfg = parse_options(&classes, options)?;
        let backbone = crate::model::etm::ModelFile::from_bytes(model).map_err(js_err)?;
        if backbone.is_int8() {
            return Err(JsError::new("train: last-blocks fine-tuning needs the float backbone"));
        }
        let plan =
            crate::exec::cpu_f32::PreparedF32::new(&backbone.header.graph, &backbone.f32_tensors()).map_err(js_err)?;
        let split = crate::train::blocks::split_last_blocks(&plan.graph, blocks).map_err(js_err)?;
        Ok(BlockTrainer {
            backbone,
            plan,
            split,
            classes,
            cfg,
            features: vec![],
            labels: vec![],
            dim: 0,
            session: None,
        })
    }

    /// Adds one RGBA (or RGB, `channels` 3) image: preprocessed and run through the frozen prefix.
    #[wasm_bindgen(js_name = addImage)]
    pub fn add_image(&mut self, pixels: &[u8], width: usize, height: usize, label: usize) -> Result<(), JsError> {
        if label >= self.classes.len() {
            return Err(JsError::new(&format!("train: label {label} outside 0..{}", self.classes.len())));
        }
        let channels = if width * height * 4 == pixels.len() { 4 } else { 3 };
        let x = crate::model::preprocess::preprocess(pixels, width, height, channels, &self.backbone.header.preprocess)
            .map_err(js_err)?;
        let values = self.plan.forward_prefix(x, self.split.cut).map_err(js_err)?;
        let cut = values.last().ok_or_else(|| JsError::new("train: empty prefix"))?;
        self.dim = cut.len();
        self.features.extend_from_slice(cut.data());
        self.labels.push(label);
        Ok(())
    }

    #[wasm_bindgen(js_name = sampleCount)]
    pub fn sample_count(&self) -> usize {
        self.labels.len()
    }

    pub fn start(&mut self) -> Result<(), JsError> {
        let data = dataset(&self.features, &self.labels, self.dim.max(1), self.classes.len());
        let suffix = crate::train::finetune::probed_suffix(&self.plan, self.split.clone(), &data, &self.cfg, 0.1)
            .map_err(js_err)?;
        self.session = Some(Session::new(suffix, &data, &self.cfg).map_err(js_err)?);
        Ok(())
    }

    #[wasm_bindgen(js_name = runEpoch)]
    pub fn run_epoch(&mut self) -> Result<JsValue, JsError> {
        let data = dataset(&self.features, &self.labels, self.dim.max(1), self.classes.len());
        epoch_js(&mut self.session, &data)
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.session.as_mut() {
            s.stop();
        }
    }

    /// How training went and the fine-tuned model as `.etm` bytes (ends the run).
    pub fn result(&mut self) -> Result<JsValue, JsError> {
        let session = self.session.take().ok_or_else(|| JsError::new("train: nothing trained (call start())"))?;
        let r = session.finish();
        let model = crate::train::finetune::with_suffix(&self.backbone, &r.model, &self.classes).map_err(js_err)?;
        let out = BlockOutput {
            history: r.history,
            validation_accuracy: r.validation.as_ref().map(|c| c.accuracy()),
            confusion: r.validation.map(|c| c.counts),
            stopped_early: r.stopped_early,
            cancelled: r.cancelled,
            model: model.to_bytes().map_err(js_err)?,
        };
        serde_wasm_bindgen::to_value(&out).map_err(js_err)
    }
}
