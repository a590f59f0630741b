//! Fine-tuning a backbone `.etm` on labelled images into a new `.etm` whose labels are the
//! new classes.
//!
//! 1. Features, cached once per sample and augmented copy (copy 0 is the original):
//!    head-only mode uses the backbone's embedding (f32 or int8 backbone); last-blocks mode
//!    runs the frozen float prefix up to the cut ([`super::blocks`]).
//! 2. [`super::trainer::train`] on those features.
//! 3. The result is written back: the head becomes `[classes, dim]` (per-channel int8 with
//!    f32 bias in an int8 model, as every int8 head is stored); trained convolutions get
//!    their folded weights and an f32 bias, their batch norms removed.

use std::collections::HashMap;

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::cpu_f32::{PreparedF32, PreparedOp};
use crate::exec::Classifier;
use crate::model::etm::{ModelFile, Stored};
use crate::model::graph::Op;
use crate::model::preprocess::preprocess;
use crate::quant::calibrate::quantize_weights_per_channel;
use crate::quant::Activation;

use super::augment::{Augment, RgbImage};
use super::blocks::{split_last_blocks, BlockSplit, SuffixModel};
use super::head::LinearHead;
use super::trainer::{train, Dataset, HeadModel, Progress, TrainConfig, TrainResult};
use crate::base::rng::Rng;

/// What is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Head,
    /// The last `k` blocks, the layers after them, and the head.
    LastBlocks(usize),
}

impl Mode {
    /// Parses `head` or `last-blocks:K`.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "head" {
            return Ok(Mode::Head);
        }
        s.strip_prefix("last-blocks:")
            .and_then(|k| k.parse().ok())
            .map(Mode::LastBlocks)
            .ok_or_else(|| Error::invalid("finetune", format!("mode '{s}': expected head or last-blocks:K")))
    }

    pub fn describe(self) -> String {
        match self {
            Mode::Head => "head".into(),
            Mode::LastBlocks(k) => format!("last-blocks:{k}"),
        }
    }
}

/// Labelled training images.
pub struct Samples {
    pub images: Vec<RgbImage>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
}

/// Fine-tuning settings.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    pub mode: Mode,
    /// Augmentation and the number of augmented copies per sample (0: none).
    pub augment: Augment,
    pub copies: usize,
    pub train: TrainConfig,
    /// Last-blocks mode: learning-rate factor of the blocks relative to the head.
    pub backbone_lr_scale: f32,
}

/// Progress of a fine-tuning run.
pub enum Event<'a> {
    /// Features computed for `done` of `total` (sample, copy) pairs.
    Features {
        done: usize,
        total: usize,
    },
    Train(&'a Progress),
}

/// A fine-tuned model and how training went.
pub struct Finetuned {
    pub model: ModelFile,
    /// The trained head, and for last-blocks mode the whole trained part (for evaluating on
    /// cached features without rebuilding the model).
    pub head: LinearHead,
    pub suffix: Option<SuffixModel>,
    pub history: Vec<Progress>,
    pub validation: Option<crate::train::metrics::Confusion>,
    pub stopped_early: bool,
    pub cancelled: bool,
    /// Seconds spent computing features and training.
    pub feature_seconds: f64,
    pub train_seconds: f64,
}

pub(crate) fn check_samples(s: &Samples) -> Result<()> {
    if s.images.len() != s.labels.len() {
        return Err(Error::shape("finetune", format!("{} images, {} labels", s.images.len(), s.labels.len())));
    }
    if s.class_names.len() < 2 {
        return Err(Error::invalid("finetune", "need at least two classes"));
    }
    if let Some(name) = s.class_names.iter().find(|n| n.trim().is_empty()) {
        return Err(Error::invalid("finetune", format!("class name '{name}' is empty")));
    }
    Ok(())
}

/// Fine-tunes `backbone` on `samples`; `events` returns `false` to stop training.
pub fn finetune(
    backbone: &ModelFile,
    samples: &Samples,
    opts: &FinetuneOptions,
    events: &mut dyn FnMut(Event) -> bool,
) -> Result<Finetuned> {
    check_samples(samples)?;
    let classes = samples.class_names.len();
    let mut rng = Rng::new(opts.train.seed ^ 0xA5A5_5A5A);
    let variants = 1 + opts.copies;
    let total = samples.images.len() * variants;
    let p = backbone.header.preprocess;
    let start = web_time::now();
    // (features of one preprocessed image, the trainable model to start from)
    // The (sample, copy) images in order, made a chunk at a time: augmentations draw from
    // `rng` in that order whatever the thread count, then the chunk's features are computed
    // in parallel (`pool::map_items`, index order), so the features never depend on threads.
    let chunk_images = 8 * crate::base::pool::threads();
    let features_of = |feature: &(dyn Fn(&RgbImage) -> Result<Vec<f32>> + Sync),
                       rng: &mut Rng,
                       events: &mut dyn FnMut(Event) -> bool|
     -> Result<Vec<f32>> {
        let mut feats = Vec::new();
        for (c, imgs) in samples.images.chunks(chunk_images).enumerate() {
            let mut batch = Vec::with_capacity(imgs.len() * variants);
            for img in imgs {
                for v in 0..variants {
                    batch.push(if v == 0 { img.clone() } else { opts.augment.apply(img, rng) });
                }
            }
            for f in crate::base::pool::map_items(batch.len(), &|j| feature(&batch[j]))? {
                feats.extend_from_slice(&f);
            }
            events(Event::Features { done: (c * chunk_images + imgs.len()) * variants, total });
        }
        Ok(feats)
    };
    // (features of every (sample, copy), their length, the trainable model to start from)
    let (features, dim, mut result_model) = match opts.mode {
        Mode::Head => {
            let net = Classifier::new(backbone.clone())?;
            let feats = features_of(
                &|im| Ok(net.embeddings(preprocess(&im.pixels, im.width, im.height, 3, &p)?)?.into_data()),
                &mut rng,
                events,
            )?;
            let dim = feats.len() / total.max(1);
            (feats, dim, None)
        }
        Mode::LastBlocks(k) => {
            if backbone.is_int8() {
                return Err(Error::invalid(
                    "finetune",
                    "last-blocks fine-tuning needs the float backbone (quantize the result afterwards)",
                ));
            }
            let plan = PreparedF32::new(&backbone.header.graph, &backbone.f32_tensors())?;
            let split = split_last_blocks(&plan.graph, k)?;
            let feats = features_of(
                &|im| {
                    let vals = plan.forward_prefix(preprocess(&im.pixels, im.width, im.height, 3, &p)?, split.cut)?;
                    let cut = vals.last().ok_or_else(|| Error::invalid("finetune", "empty prefix"))?;
                    Ok(cut.data().to_vec())
                },
                &mut rng,
                events,
            )?;
            let dim = feats.len() / total.max(1);
            (feats, dim, Some((plan, split)))
        }
    };
    let feature_seconds = web_time::now() - start;
    let data = Dataset { features: &features, labels: &samples.labels, dim, variants, classes, teacher: None };
    let start = web_time::now();
    let mut on_progress = |ev: &Progress| events(Event::Train(ev));
    let mut init = Rng::new(opts.train.seed);
    let (model, head, suffix, history, validation, stopped_early, cancelled) = match result_model.take() {
        None => {
            let head = LinearHead::new(dim, classes, &mut init)?;
            let r: TrainResult<HeadModel> = train(HeadModel::new(head), &data, &opts.train, &mut on_progress)?;
            let m = with_head(backbone, &r.model.head, &samples.class_names)?;
            (m, r.model.head, None, r.history, r.validation, r.stopped_early, r.cancelled)
        }
        Some((plan, split)) => {
            let suffix = probed_suffix(&plan, split, &data, &opts.train, opts.backbone_lr_scale)?;
            let r = train(suffix, &data, &opts.train, &mut on_progress)?;
            let m = with_suffix(backbone, &r.model, &samples.class_names)?;
            (m, r.model.head.clone(), Some(r.model), r.history, r.validation, r.stopped_early, r.cancelled)
        }
    };
    let train_seconds = web_time::now() - start;
    let mut model = model;
    let c = &opts.train;
    model.header.provenance.steps.push(format!(
        "fine-tuned by edgetune {} ({}, {} samples of {classes} classes, {} augmented copies, {} epochs, {} lr {}, seed {})",
        crate::VERSION,
        opts.mode.describe(),
        samples.images.len(),
        opts.copies,
        history.len(),
        c.optimizer.name(),
        c.lr,
        c.seed
    ));
    model.validate()?;
    Ok(Finetuned { model, head, suffix, history, validation, stopped_early, cancelled, feature_seconds, train_seconds })
}

/// The starting point of last-blocks training, by linear probe then fine-tune (LP-FT): a
/// head trained (with `cfg`) on the embeddings of the frozen blocks starts the joint
/// training, so the blocks' first updates follow a sensible head instead of a random one.
pub fn probed_suffix(
    plan: &PreparedF32,
    split: BlockSplit,
    data: &Dataset,
    cfg: &TrainConfig,
    backbone_lr_scale: f32,
) -> Result<SuffixModel> {
    let emb_dim = embedding_dim(plan)?;
    let head = LinearHead::new(emb_dim, data.classes, &mut Rng::new(cfg.seed))?;
    let mut suffix = SuffixModel::new(plan, split, head)?;
    let mut embs = Vec::with_capacity(data.labels.len() * data.variants * emb_dim);
    for chunk in data.features.chunks(data.dim * 32) {
        let batch: Vec<&[f32]> = chunk.chunks(data.dim).collect();
        embs.extend(suffix.embeddings(&batch)?);
    }
    let probe_data = Dataset { features: &embs, dim: emb_dim, ..*data };
    let probe = train(HeadModel::new(suffix.head.clone()), &probe_data, cfg, &mut |_| true)?;
    suffix.head = probe.model.head;
    suffix.backbone_lr_scale = backbone_lr_scale;
    Ok(suffix)
}

fn embedding_dim(plan: &PreparedF32) -> Result<usize> {
    match plan.ops.get(plan.graph.logits.wrapping_sub(1)) {
        Some(PreparedOp::Dense { weight, .. }) => Ok(weight.shape()[1]),
        _ => Err(Error::invalid("finetune", "the model's logits are not produced by a dense head")),
    }
}

/// The dense head node's (index, weight name, bias name).
fn head_node(m: &ModelFile) -> Result<(usize, String, String)> {
    let i = m.header.graph.logits.wrapping_sub(1);
    match m.header.graph.nodes.get(i).map(|n| (&n.op, &n.name)) {
        Some((Op::Dense { weight, bias, .. }, name)) => {
            Ok((i, weight.clone(), bias.clone().unwrap_or_else(|| format!("{name}.bias"))))
        }
        _ => Err(Error::invalid("finetune", "the model's logits are not produced by a dense head")),
    }
}

/// `backbone` with a new head and labels. A network whose logits are its pool (SqueezeNet's
/// classifier is a convolution before the pool) gets a dense head after the pool.
pub fn with_head(backbone: &ModelFile, head: &LinearHead, labels: &[String]) -> Result<ModelFile> {
    let mut m = backbone.clone();
    let g = &mut m.header.graph;
    if g.logits == g.embedding {
        g.nodes.push(crate::model::graph::Node {
            name: "head".into(),
            op: Op::Dense {
                weight: "head.weight".into(),
                bias: Some("head.bias".into()),
                activation: Activation::None,
            },
            inputs: vec![g.embedding],
        });
        g.logits = g.nodes.len();
        if let Some(q) = m.header.quantization.as_mut() {
            q.values.push(None);
        }
    }
    let (i, wname, bname) = head_node(&m)?;
    if let Op::Dense { bias, .. } = &mut m.header.graph.nodes[i].op {
        *bias = Some(bname.clone());
    }
    if m.is_int8() {
        // The new head is symmetric and its logits are its own: an imported head's weight
        // zero points and logits grid (TFLite) do not apply to it. Without a logits grid the
        // head runs on the f32 embedding, as the page's live view computes it.
        m.tensors.remove(&format!("{wname}.zero_point"));
        let logits = m.header.graph.logits;
        if let Some(v) = m.header.quantization.as_mut().and_then(|q| q.values.get_mut(logits)) {
            *v = None;
        }
        let (q, s) = quantize_weights_per_channel(&head.weight, head.classes, None)?;
        m.tensors.insert(format!("{wname}.scale"), Stored::F32(Tensor::new(vec![head.classes], s)?));
        m.tensors.insert(wname, Stored::I8 { shape: vec![head.classes, head.dim], data: q });
    } else {
        m.tensors.insert(wname, Stored::F32(Tensor::new(vec![head.classes, head.dim], head.weight.clone())?));
    }
    m.tensors.insert(bname, Stored::F32(Tensor::new(vec![head.classes], head.bias.clone())?));
    m.header.labels = labels.to_vec();
    m.validate()?;
    Ok(m)
}

/// `backbone` with trained convolutions (folded, batch norm removed), head and labels.
pub fn with_suffix(backbone: &ModelFile, suffix: &SuffixModel, labels: &[String]) -> Result<ModelFile> {
    let mut m = backbone.clone();
    let mut dropped: Vec<String> = vec![];
    for (j, (_, op)) in suffix.nodes.iter().enumerate() {
        let node = &mut m.header.graph.nodes[suffix.split.first + j];
        if let (PreparedOp::Conv { weight, bias: b, .. }, Op::Conv2d { weight: wname, bias, batch_norm, .. }) =
            (op, &mut node.op)
        {
            if let Some(bn) = batch_norm.take() {
                dropped.extend([bn.gamma, bn.beta, bn.mean, bn.var]);
            }
            let bname = bias.clone().unwrap_or_else(|| format!("{}.bias", node.name));
            *bias = Some(bname.clone());
            m.tensors.insert(wname.clone(), Stored::F32(weight.clone()));
            m.tensors.insert(bname, Stored::F32(Tensor::new(vec![b.len()], b.clone())?));
        }
    }
    // Batch-norm tensors still used elsewhere stay.
    let used: HashMap<&str, ()> = m
        .header
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d { batch_norm: Some(bn), .. } => Some([bn.gamma.as_str(), &bn.beta, &bn.mean, &bn.var]),
            _ => None,
        })
        .flatten()
        .map(|s| (s, ()))
        .collect();
    let dropped: Vec<String> = dropped.into_iter().filter(|d| !used.contains_key(d.as_str())).collect();
    for d in dropped {
        m.tensors.remove(&d);
    }
    with_head(&m, &suffix.head, labels)
}

/// Wall-clock seconds that work natively and in wasm (where `std::time::Instant` panics).
mod web_time {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn now() -> f64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
    }
    #[cfg(target_arch = "wasm32")]
    pub fn now() -> f64 {
        js_sys::Date::now() / 1000.0
    }
}
