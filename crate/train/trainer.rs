//! The training loop shared by head-only training and last-blocks fine-tuning.
//!
//! Data: `n` samples, each with `variants >= 1` cached feature vectors of `dim` floats
//! (variant 0 the original sample, the rest augmented copies), `[n][variants][dim]`.
//! 1. Stratified train/validation split by the seed (each class keeps at least one
//!    training sample; classes with one sample have none in validation).
//! 2. Each epoch shuffles the training samples and, per sample, picks one of its variants at
//!    random; minibatches run forward, loss, backward, optional clipping by global norm, and
//!    one optimizer step per parameter tensor with the scheduled learning rate.
//! 3. After each epoch the validation set (originals only) gives loss and accuracy; the
//!    parameters with the lowest validation loss are kept, and training stops early after
//!    `patience` epochs without improvement.
//! 4. A progress callback sees every epoch (and every step) and can stop the run.
//!
//! Everything random comes from one seeded [`Rng`]: the same seed gives the same run.
//!
//! Distillation: with `teacher` logits `[n][classes]` in the data and `distill` set, the
//! training loss of a batch is `alpha CE + (1 - alpha) T^2 KL` per labelled sample and the
//! soft part alone per [`UNLABELLED`] sample, averaged over the batch
//! ([`distillation_batch`]). Unlabelled samples only ever train; validation uses the
//! labelled ones and the plain loss.

use crate::base::error::{Error, Result};

use super::head::LinearHead;
use super::loss::{distillation, Loss};
use super::metrics::Confusion;
use super::optim::{clip_grad_norm, step, Optimizer, State};
use super::schedule::{Decay, Schedule};
use crate::base::rng::Rng;

/// Training hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub optimizer: Optimizer,
    pub loss: Loss,
    /// Warm-up epochs (linear), then the decay over the remaining epochs.
    pub warmup_epochs: usize,
    pub decay: Decay,
    pub clip_norm: Option<f32>,
    /// Fraction of each class held out for validation (0 for none).
    pub validation: f32,
    /// Stop after this many epochs without a lower validation loss.
    pub patience: Option<usize>,
    pub seed: u64,
    /// Knowledge distillation from the data's teacher logits (needs `Dataset::teacher`).
    pub distill: Option<Distill>,
}

/// Distillation weights: `alpha` on the labels' cross-entropy, `1 - alpha` on the teacher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distill {
    pub alpha: f32,
    pub temperature: f32,
}

/// Label of a sample that has none (trained on the teacher's soft targets alone).
pub const UNLABELLED: usize = usize::MAX;

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 32,
            lr: 1e-3,
            optimizer: Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            loss: Loss::cross_entropy(),
            warmup_epochs: 0,
            decay: Decay::Cosine { min_lr: 0.0 },
            clip_norm: None,
            validation: 0.0,
            patience: None,
            seed: 0,
            distill: None,
        }
    }
}

/// One progress event (after a step, or at the end of an epoch with validation figures).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    /// Mean training loss and accuracy so far in this epoch.
    pub loss: f32,
    pub accuracy: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    pub end_of_epoch: bool,
    pub lr: f32,
}

/// Training samples: cached features and labels.
pub struct Dataset<'a> {
    pub features: &'a [f32],
    pub labels: &'a [usize],
    pub dim: usize,
    pub variants: usize,
    pub classes: usize,
    /// Teacher logits `[n][classes]` for distillation.
    pub teacher: Option<&'a [f32]>,
}

/// A model the loop can train: forward on a batch of feature vectors, backward of that forward.
pub trait Trainable: Clone {
    fn classes(&self) -> usize;
    /// Logits `[batch, classes]`; keeps what `backward` needs.
    fn forward(&mut self, batch: &[&[f32]]) -> Result<Vec<f32>>;
    /// Gradients of the last forward, one per parameter tensor in [`Self::params_mut`] order.
    fn backward(&mut self, dlogits: &[f32]) -> Result<Vec<Vec<f32>>>;
    fn params_mut(&mut self) -> Vec<&mut [f32]>;
    /// Learning-rate factor per parameter tensor (empty: all 1).
    fn lr_scales(&self) -> Vec<f32> {
        vec![]
    }
    /// Called before each epoch's first step (pruning schedules use it).
    fn begin_epoch(&mut self, _epoch: usize, _epochs: usize) {}
    /// Training (true) or evaluation (false) forward passes follow; range tracking and the
    /// like only learn from training batches.
    fn set_training(&mut self, _training: bool) {}
    /// Whether the current state may be kept as the best epoch (a pruned model only once
    /// it reached its final sparsity).
    fn selectable(&self) -> bool {
        true
    }
    /// Per parameter tensor: whether it is a weight (pruned) rather than a bias.
    fn weight_mask(&self) -> Vec<bool> {
        vec![]
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct TrainResult<M> {
    pub model: M,
    /// End-of-epoch events, in order.
    pub history: Vec<Progress>,
    /// Validation confusion matrix of the returned model (None without validation).
    pub validation: Option<Confusion>,
    pub stopped_early: bool,
    pub cancelled: bool,
}

impl Dataset<'_> {
    fn check(&self) -> Result<()> {
        const OP: &str = "train";
        let n = self.labels.len();
        if n == 0 {
            return Err(Error::invalid(OP, "no training samples"));
        }
        if self.dim == 0 || self.variants == 0 || self.features.len() != n * self.variants * self.dim {
            return Err(Error::shape(
                OP,
                format!(
                    "{} feature values for {n} samples x {} variants x {} dims",
                    self.features.len(),
                    self.variants,
                    self.dim
                ),
            ));
        }
        if let Some(t) = self.teacher {
            if t.len() != n * self.classes {
                return Err(Error::shape(
                    OP,
                    format!("{} teacher logits for {n} samples x {} classes", t.len(), self.classes),
                ));
            }
            if t.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid(OP, "teacher logits contain NaN or infinity"));
            }
        }
        let unlabelled_ok = self.teacher.is_some();
        if let Some(&y) = self.labels.iter().find(|&&y| y >= self.classes && !(unlabelled_ok && y == UNLABELLED)) {
            return Err(Error::invalid(OP, format!("label {y} outside 0..{}", self.classes)));
        }
        let mut present = vec![false; self.classes];
        self.labels.iter().filter(|&&y| y != UNLABELLED).for_each(|&y| present[y] = true);
        if present.iter().filter(|&&p| p).count() < 2 {
            return Err(Error::invalid(OP, "need samples of at least two classes"));
        }
        if let Some(i) = self.features.iter().position(|v| !v.is_finite()) {
            let sample = i / (self.variants * self.dim);
            return Err(Error::invalid(OP, format!("sample {sample} has a NaN or infinite feature")));
        }
        Ok(())
    }

    fn teacher_rows(&self, idx: &[usize]) -> Option<Vec<f32>> {
        let t = self.teacher?;
        Some(idx.iter().flat_map(|&i| &t[i * self.classes..(i + 1) * self.classes]).copied().collect())
    }

    fn sample(&self, i: usize, variant: usize) -> &[f32] {
        let o = (i * self.variants + variant) * self.dim;
        &self.features[o..o + self.dim]
    }
}

/// Stratified split: `(train, validation)` sample indices.
pub fn split(labels: &[usize], classes: usize, fraction: f32, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut val) = (vec![], vec![]);
    train.extend((0..labels.len()).filter(|&i| labels[i] == UNLABELLED));
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        rng.shuffle(&mut idx);
        let k = ((idx.len() as f32 * fraction).round() as usize).min(idx.len().saturating_sub(1));
        val.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

/// The distillation loss of a batch whose labels may include [`UNLABELLED`] (see the module
/// header): each part's mean from [`distillation`], weighted by its share of the batch.
pub fn distillation_batch(
    logits: &[f32],
    teacher: &[f32],
    labels: &[usize],
    classes: usize,
    d: Distill,
) -> Result<(f32, Vec<f32>)> {
    let n = labels.len();
    if logits.len() != n * classes || teacher.len() != n * classes {
        return Err(Error::shape(
            "distillation",
            format!("{} logits, {} teacher logits, {n} labels", logits.len(), teacher.len()),
        ));
    }
    let mut grad = vec![0f32; logits.len()];
    let mut loss = 0f64;
    for labelled in [true, false] {
        let rows: Vec<usize> = (0..n).filter(|&i| (labels[i] != UNLABELLED) == labelled).collect();
        if rows.is_empty() {
            continue;
        }
        let pick = |v: &[f32]| -> Vec<f32> {
            rows.iter().flat_map(|&i| &v[i * classes..(i + 1) * classes]).copied().collect()
        };
        let (s, t) = (pick(logits), pick(teacher));
        let (l, g) = if labelled {
            let ys: Vec<usize> = rows.iter().map(|&i| labels[i]).collect();
            distillation(&s, &t, Some(&ys), classes, d.alpha, d.temperature)?
        } else {
            // The soft part alone, weighted as in a labelled sample: (1 - alpha) T^2 KL.
            let (l, mut g) = distillation(&s, &t, None, classes, 0.0, d.temperature)?;
            g.iter_mut().for_each(|v| *v *= 1.0 - d.alpha);
            (l * (1.0 - d.alpha), g)
        };
        let share = rows.len() as f32 / n as f32;
        loss += (l * share) as f64;
        for (k, &i) in rows.iter().enumerate() {
            for j in 0..classes {
                grad[i * classes + j] = g[k * classes + j] * share;
            }
        }
    }
    Ok((loss as f32, grad))
}

/// Loss, accuracy and confusion of `model` on `idx` (variant 0).
fn evaluate<M: Trainable>(
    model: &mut M,
    data: &Dataset,
    idx: &[usize],
    loss: &Loss,
    batch: usize,
) -> Result<(f32, Confusion)> {
    let mut conf = Confusion::new(data.classes);
    let mut total = 0f64;
    for chunk in idx.chunks(batch.max(1)) {
        let xs: Vec<&[f32]> = chunk.iter().map(|&i| data.sample(i, 0)).collect();
        let ys: Vec<usize> = chunk.iter().map(|&i| data.labels[i]).collect();
        let logits = model.forward(&xs)?;
        let (l, _) = loss.compute(&logits, &ys, data.classes)?;
        total += l as f64 * chunk.len() as f64;
        for (row, &y) in logits.chunks_exact(data.classes).zip(&ys) {
            conf.add(y, argmax(row))?;
        }
    }
    Ok(((total / idx.len().max(1) as f64) as f32, conf))
}

/// A training run that advances one epoch at a time, so a caller (the page's worker) can
/// yield between epochs and stop it. [`train`] runs one to the end.
pub struct Session<M> {
    model: M,
    cfg: TrainConfig,
    rng: Rng,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    schedule: Schedule,
    steps_per_epoch: usize,
    states: Vec<State>,
    best: Option<(f32, M, Confusion)>,
    history: Vec<Progress>,
    since_best: usize,
    step: usize,
    epoch: usize,
    stopped_early: bool,
    cancelled: bool,
}

impl<M: Trainable> Session<M> {
    /// Validates the data and settings and splits the samples.
    pub fn new(mut model: M, data: &Dataset, cfg: &TrainConfig) -> Result<Self> {
        data.check()?;
        if model.classes() != data.classes {
            return Err(Error::invalid(
                "train",
                format!("model has {} classes, data {}", model.classes(), data.classes),
            ));
        }
        if cfg.epochs == 0 || cfg.batch_size == 0 {
            return Err(Error::invalid("train", "epochs and batch size must be at least 1"));
        }
        if cfg.distill.is_some() != data.teacher.is_some() {
            return Err(Error::invalid(
                "train",
                "distillation needs teacher logits with the data, and teacher logits need distillation settings",
            ));
        }
        if !(0.0..1.0).contains(&cfg.validation) {
            return Err(Error::invalid("train", format!("validation fraction {} outside [0, 1)", cfg.validation)));
        }
        let mut rng = Rng::new(cfg.seed);
        let (train_idx, val_idx) = split(data.labels, data.classes, cfg.validation, &mut rng);
        let steps_per_epoch = train_idx.len().div_ceil(cfg.batch_size);
        let schedule =
            Schedule::new(cfg.lr, cfg.warmup_epochs * steps_per_epoch, steps_per_epoch * cfg.epochs, cfg.decay)?;
        let states = vec![State::default(); model.params_mut().len()];
        Ok(Session {
            model,
            cfg: cfg.clone(),
            rng,
            train_idx,
            val_idx,
            schedule,
            steps_per_epoch,
            states,
            best: None,
            history: vec![],
            since_best: 0,
            step: 0,
            epoch: 0,
            stopped_early: false,
            cancelled: false,
        })
    }

    /// True once every epoch ran, early stopping triggered or the run was stopped.
    pub fn finished(&self) -> bool {
        self.epoch >= self.cfg.epochs || self.stopped_early || self.cancelled
    }

    /// Stops the run; [`Self::finish`] then returns the best model so far.
    pub fn stop(&mut self) {
        self.cancelled = true;
    }

    /// Runs one epoch (see the module header); `None` when already finished. `progress` sees
    /// every step and returns `false` to stop.
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<Option<Progress>> {
        if self.finished() {
            return Ok(None);
        }
        let cfg = &self.cfg;
        let mut order = self.train_idx.clone();
        self.rng.shuffle(&mut order);
        self.model.begin_epoch(self.epoch, cfg.epochs);
        self.model.set_training(true);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let epoch = self.epoch + 1;
        for (s, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let xs: Vec<&[f32]> = chunk.iter().map(|&i| data.sample(i, self.rng.below(data.variants))).collect();
            let ys: Vec<usize> = chunk.iter().map(|&i| data.labels[i]).collect();
            let logits = self.model.forward(&xs)?;
            let (l, dlogits) = match (cfg.distill, data.teacher_rows(chunk)) {
                (Some(d), Some(t)) => distillation_batch(&logits, &t, &ys, data.classes, d)?,
                _ => cfg.loss.compute(&logits, &ys, data.classes)?,
            };
            let mut grads = self.model.backward(&dlogits)?;
            if let Some(max) = cfg.clip_norm {
                let mut views: Vec<&mut [f32]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
                clip_grad_norm(&mut views, max)?;
            }
            let lr = self.schedule.lr(self.step);
            let scales = self.model.lr_scales();
            let params = self.model.params_mut();
            for (i, ((p, g), st)) in params.into_iter().zip(&grads).zip(self.states.iter_mut()).enumerate() {
                step(&cfg.optimizer, lr * scales.get(i).copied().unwrap_or(1.0), p, g, st)?;
            }
            self.step += 1;
            loss_sum += l as f64 * chunk.len() as f64;
            seen += chunk.len();
            correct += logits.chunks_exact(data.classes).zip(&ys).filter(|(r, &y)| argmax(r) == y).count();
            // (unlabelled samples never count as correct: the training accuracy is a lower bound)
            let ev = Progress {
                epoch,
                epochs: cfg.epochs,
                step: s + 1,
                steps: self.steps_per_epoch,
                loss: (loss_sum / seen as f64) as f32,
                accuracy: correct as f32 / seen as f32,
                val_loss: None,
                val_accuracy: None,
                end_of_epoch: false,
                lr,
            };
            if !progress(&ev) {
                self.cancelled = true;
                return Ok(None);
            }
        }
        self.epoch = epoch;
        self.model.set_training(false);
        let mut ev = Progress {
            epoch,
            epochs: cfg.epochs,
            step: self.steps_per_epoch,
            steps: self.steps_per_epoch,
            loss: (loss_sum / seen.max(1) as f64) as f32,
            accuracy: correct as f32 / seen.max(1) as f32,
            val_loss: None,
            val_accuracy: None,
            end_of_epoch: true,
            lr: self.schedule.lr(self.step.saturating_sub(1)),
        };
        if !self.val_idx.is_empty() {
            let (vl, conf) = evaluate(&mut self.model, data, &self.val_idx, &cfg.loss, cfg.batch_size)?;
            ev.val_loss = Some(vl);
            ev.val_accuracy = Some(conf.accuracy() as f32);
            if self.model.selectable() && self.best.as_ref().is_none_or(|b| vl < b.0) {
                self.best = Some((vl, self.model.clone(), conf));
                self.since_best = 0;
            } else {
                self.since_best += 1;
            }
        }
        self.history.push(ev.clone());
        if !progress(&ev) {
            self.cancelled = true;
        }
        if cfg.patience.is_some_and(|p| self.since_best >= p) {
            self.stopped_early = true;
        }
        Ok(Some(ev))
    }

    /// The model with the lowest validation loss (the last one without validation).
    pub fn finish(self) -> TrainResult<M> {
        let (model, validation) = match self.best {
            Some((_, m, conf)) => (m, Some(conf)),
            None => (self.model, None),
        };
        TrainResult {
            model,
            history: self.history,
            validation,
            stopped_early: self.stopped_early,
            cancelled: self.cancelled,
        }
    }
}

/// Trains `model` on `data` to the end; `progress` returns `false` to stop.
pub fn train<M: Trainable>(
    model: M,
    data: &Dataset,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TrainResult<M>> {
    let mut session = Session::new(model, data, cfg)?;
    while session.run_epoch(data, progress)?.is_some() {}
    Ok(session.finish())
}

/// Head-only training: a [`LinearHead`] on cached embeddings.
#[derive(Clone, Debug)]
pub struct HeadModel {
    pub head: LinearHead,
    batch: Vec<f32>,
}

impl HeadModel {
    pub fn new(head: LinearHead) -> Self {
        HeadModel { head, batch: vec![] }
    }
}

impl Trainable for HeadModel {
    fn classes(&self) -> usize {
        self.head.classes
    }
    fn forward(&mut self, batch: &[&[f32]]) -> Result<Vec<f32>> {
        self.batch = batch.concat();
        self.head.logits(&self.batch, batch.len())
    }
    fn backward(&mut self, dlogits: &[f32]) -> Result<Vec<Vec<f32>>> {
        let n = self.batch.len() / self.head.dim.max(1);
        let (dw, db) = self.head.gradients(&self.batch, n, dlogits)?;
        Ok(vec![dw, db])
    }
    fn params_mut(&mut self) -> Vec<&mut [f32]> {
        vec![&mut self.head.weight, &mut self.head.bias]
    }
    fn weight_mask(&self) -> Vec<bool> {
        vec![true, false]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish blobs per class in 4-D: a head must separate them.
    fn blobs(n_per: usize, classes: usize) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng::new(3);
        let (mut x, mut y) = (vec![], vec![]);
        for c in 0..classes {
            for _ in 0..n_per {
                for d in 0..4 {
                    let centre = if d == c % 4 { 3.0 } else { 0.0 };
                    x.push(centre + rng.uniform(-1.0, 1.0));
                }
                y.push(c);
            }
        }
        (x, y)
    }

    fn run(seed: u64) -> TrainResult<HeadModel> {
        let (x, y) = blobs(20, 3);
        let data = Dataset { features: &x, labels: &y, dim: 4, variants: 1, classes: 3, teacher: None };
        let cfg = TrainConfig { epochs: 20, batch_size: 8, lr: 0.05, validation: 0.25, seed, ..Default::default() };
        let head = LinearHead::new(4, 3, &mut Rng::new(seed)).unwrap();
        train(HeadModel::new(head), &data, &cfg, &mut |_| true).unwrap()
    }

    #[test]
    fn learns_separable_classes_deterministically() {
        let r = run(5);
        let acc = r.validation.as_ref().unwrap().accuracy();
        assert!(acc > 0.9, "validation accuracy {acc}");
        assert_eq!(r.history.len(), 20);
        assert!(r.history.last().unwrap().loss < r.history[0].loss);
        assert_eq!(run(5).model.head, r.model.head, "same seed, same run");
        assert_ne!(run(6).model.head, r.model.head);
    }

    #[test]
    fn stops_when_asked_and_early() {
        let (x, y) = blobs(10, 2);
        let data = Dataset { features: &x, labels: &y, dim: 4, variants: 1, classes: 2, teacher: None };
        let head = LinearHead::new(4, 2, &mut Rng::new(0)).unwrap();
        let cfg = TrainConfig { epochs: 50, batch_size: 4, ..Default::default() };
        let mut calls = 0;
        let r = train(HeadModel::new(head.clone()), &data, &cfg, &mut |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
        assert!(r.cancelled && r.history.is_empty());
        // lr 0 never improves the validation loss: patience 2 stops after epoch 3.
        let cfg = TrainConfig { epochs: 50, lr: 1e-12, validation: 0.3, patience: Some(2), ..cfg };
        let r = train(HeadModel::new(head), &data, &cfg, &mut |_| true).unwrap();
        assert!(r.stopped_early && r.history.len() <= 4, "{} epochs", r.history.len());
    }

    #[test]
    fn bad_data_is_an_error() {
        let head = || HeadModel::new(LinearHead::new(2, 2, &mut Rng::new(0)).unwrap());
        let cfg = TrainConfig::default();
        let empty = Dataset { features: &[], labels: &[], dim: 2, variants: 1, classes: 2, teacher: None };
        assert!(train(head(), &empty, &cfg, &mut |_| true).unwrap_err().to_string().contains("no training samples"));
        let one_class =
            Dataset { features: &[0.0; 4], labels: &[1, 1], dim: 2, variants: 1, classes: 2, teacher: None };
        assert!(train(head(), &one_class, &cfg, &mut |_| true).unwrap_err().to_string().contains("two classes"));
        let nan = Dataset {
            features: &[0.0, f32::NAN, 1.0, 1.0],
            labels: &[0, 1],
            dim: 2,
            variants: 1,
            classes: 2,
            teacher: None,
        };
        assert!(train(head(), &nan, &cfg, &mut |_| true).unwrap_err().to_string().contains("NaN"));
    }

    #[test]
    fn distillation_batches_mix_labelled_and_unlabelled_rows() {
        let d = Distill { alpha: 0.25, temperature: 3.0 };
        let s = [1.0, -0.5, 0.2, 0.0, 2.0, -1.0];
        let t = [0.5, 0.5, -1.0, 1.0, 1.0, 0.0];
        let (l, g) = distillation_batch(&s, &t, &[2, 0], 3, d).unwrap();
        let (l0, g0) = distillation(&s, &t, Some(&[2, 0]), 3, 0.25, 3.0).unwrap();
        assert!((l - l0).abs() < 1e-6 && g.iter().zip(&g0).all(|(a, b)| (a - b).abs() < 1e-7));
        // Row 1 unlabelled: half the batch, its soft part weighted by 1 - alpha.
        let (_, g) = distillation_batch(&s, &t, &[2, UNLABELLED], 3, d).unwrap();
        let (_, soft) = distillation(&s[3..], &t[3..], None, 3, 0.0, 3.0).unwrap();
        let (_, hard) = distillation(&s[..3], &t[..3], Some(&[2]), 3, 0.25, 3.0).unwrap();
        for j in 0..3 {
            assert!((g[3 + j] - 0.5 * 0.75 * soft[j]).abs() < 1e-7);
            assert!((g[j] - 0.5 * hard[j]).abs() < 1e-7);
        }
        // Unlabelled samples without a teacher are out of range.
        let x = [0.0f32; 4];
        let data = Dataset { features: &x, labels: &[0, UNLABELLED], dim: 2, variants: 1, classes: 2, teacher: None };
        let head = HeadModel::new(LinearHead::new(2, 2, &mut Rng::new(0)).unwrap());
        assert!(train(head, &data, &TrainConfig::default(), &mut |_| true).is_err());
    }
}
