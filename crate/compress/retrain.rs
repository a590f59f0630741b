//! Compression by further training of a model's own last blocks and head, on labelled
//! (and, for distillation, unlabelled) images; the model keeps its classes.
//!
//! - [`Method::Plain`]: fine-tuning, with a teacher's logits when given (distillation, the
//!   loss of [`crate::train::trainer`]: `alpha CE + (1 - alpha) T^2 KL`, the soft part alone for
//!   unlabelled images). The student is any float model with the data's classes, e.g. a
//!   channel-pruned copy of the teacher ([`crate::compress::channel_prune`]).
//! - [`Method::Prune`]: magnitude pruning of the trained part's weights on the gradual
//!   schedule of [`crate::compress::prune`].
//! - [`Method::Qat`]: quantization-aware training from a post-training-quantized model. The
//!   frozen prefix runs in int8 (the features at the cut are what the int8 network computes
//!   there), the trained part fake-quantizes weights and values on the PTQ model's grids with
//!   tracked ranges ([`crate::quant::fake_quant`]), and [`export_qat`] writes a real int8 model: the
//!   PTQ model with the trained part's weights, biases and value grids replaced.
//!
//! Features are cached once per sample at the cut of [`split_last_blocks`] (the model's
//! float prefix, or the int8 prefix for QAT); training is [`crate::train::trainer::train`].

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::cpu_f32::{PreparedF32, PreparedOp};
use crate::exec::cpu_int8::PreparedI8;
use crate::exec::Classifier;
use crate::model::etm::{ModelFile, Stored, ValueQuant};
use crate::model::graph::Op;
use crate::model::preprocess::preprocess;
use crate::quant::calibrate::{params_from_range, quantize_weights_per_channel, MAX_BIAS_Q};

use crate::compress::prune::Pruned;
use crate::quant::fake_quant::FakeQuant;
use crate::train::blocks::{split_last_blocks, SuffixModel};
use crate::train::finetune::{check_samples, with_head, with_suffix, Samples};
use crate::train::head::LinearHead;
use crate::train::metrics::Confusion;
use crate::train::trainer::{train, Dataset, Progress, TrainConfig};

const OP: &str = "compress";

/// What the training does to the model.
pub enum Method<'a> {
    Plain,
    /// Final sparsity and the epochs over which it ramps up.
    Prune {
        sparsity: f32,
        ramp_epochs: usize,
    },
    /// Starts from this post-training-quantized form of the model.
    Qat {
        ptq: &'a ModelFile,
    },
}

/// Settings shared by the methods.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// Blocks trained before the embedding (`last-blocks:K`).
    pub blocks: usize,
    pub train: TrainConfig,
    /// Learning-rate factor of the blocks relative to the head.
    pub backbone_lr_scale: f32,
}

/// The result and how training went.
pub struct Compressed {
    pub model: ModelFile,
    pub history: Vec<Progress>,
    pub validation: Option<Confusion>,
    /// Pruning: `(zero weights, weights)` in the trained part.
    pub sparsity: Option<(usize, usize)>,
    pub feature_seconds: f64,
    pub train_seconds: f64,
}

/// Refuses a model (or teacher) whose labels are not the data's classes.
pub fn check_labels(model: &ModelFile, classes: &[String], what: &str) -> Result<()> {
    if model.header.labels != classes {
        let show = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(", ... ({} labels)", v.len()));
            }
            s
        };
        return Err(Error::invalid(
            OP,
            format!(
                "the {what}'s labels ({}) differ from the data's classes ({}): fine-tune it on these classes first",
                show(&model.header.labels),
                show(classes)
            ),
        ));
    }
    Ok(())
}

/// The teacher's logits `[n][classes]` for the images, after checking its labels.
pub fn teacher_logits(teacher: &ModelFile, samples: &Samples, progress: &mut dyn FnMut(usize)) -> Result<Vec<f32>> {
    check_labels(teacher, &samples.class_names, "teacher")?;
    let net = Classifier::new(teacher.clone())?;
    let p = teacher.header.preprocess;
    let mut out = Vec::with_capacity(samples.images.len() * samples.class_names.len());
    for (i, img) in samples.images.iter().enumerate() {
        out.extend_from_slice(net.logits(preprocess(&img.pixels, img.width, img.height, 3, &p)?)?.data());
        progress(i + 1);
    }
    Ok(out)
}

/// The model's dense head as a trainable [`LinearHead`].
fn own_head(plan: &PreparedF32) -> Result<LinearHead> {
    match plan.ops.get(plan.graph.logits.wrapping_sub(1)) {
        Some(PreparedOp::Dense { weight, bias, .. }) => {
            let (classes, dim) = (weight.shape()[0], weight.shape()[1]);
            Ok(LinearHead {
                dim,
                classes,
                weight: weight.data().to_vec(),
                bias: bias.clone().unwrap_or_else(|| vec![0.0; classes]),
            })
        }
        _ => Err(Error::invalid(OP, "the model's logits are not produced by a dense head")),
    }
}

/// Grids of the trained part's values in the PTQ model, as ranges (the embedding: `None`).
fn ptq_ranges(ptq: &ModelFile, cut: usize, nodes: usize) -> Result<Vec<Option<(f32, f32)>>> {
    let q = ptq.header.quantization.as_ref().ok_or_else(|| Error::invalid(OP, "the PTQ model is not int8"))?;
    Ok((0..=nodes)
        .map(|local| {
            q.values.get(cut + local).copied().flatten().map(|v| {
                let lo = (-128 - v.zero_point) as f32 * v.scale;
                let hi = (127 - v.zero_point) as f32 * v.scale;
                (lo, hi)
            })
        })
        .collect())
}

/// Trains the model's last blocks and head by `method` (see the module header).
pub fn retrain(
    model: &ModelFile,
    samples: &Samples,
    method: Method,
    opts: &CompressOptions,
    teacher: Option<&[f32]>,
    features_done: &mut dyn FnMut(usize, usize),
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Compressed> {
    check_samples(samples)?;
    check_labels(model, &samples.class_names, "model")?;
    if model.is_int8() {
        return Err(Error::invalid(OP, "the model is int8: start from the float model"));
    }
    let plan = PreparedF32::new(&model.header.graph, &model.f32_tensors())?;
    let split = split_last_blocks(&plan.graph, opts.blocks)?;
    let int8 = match &method {
        Method::Qat { ptq } => {
            if !ptq.is_int8() || ptq.header.graph.nodes.len() != plan.graph.nodes.len() {
                return Err(Error::invalid(OP, "QAT needs the int8 (post-training quantized) form of the same model"));
            }
            check_labels(ptq, &samples.class_names, "PTQ model")?;
            Some(PreparedI8::new(ptq)?)
        }
        _ => None,
    };
    let p = model.header.preprocess;
    let start = now();
    let mut features = vec![];
    for (i, img) in samples.images.iter().enumerate() {
        let x = preprocess(&img.pixels, img.width, img.height, 3, &p)?;
        let cut = match &int8 {
            Some(net) => net.dequantized_value(&x, split.cut)?,
            None => plan.value(x, split.cut)?,
        };
        features.extend_from_slice(cut.data());
        features_done(i + 1, samples.images.len());
    }
    let feature_seconds = now() - start;
    let classes = samples.class_names.len();
    let dim = features.len() / samples.images.len().max(1);
    let data = Dataset { features: &features, labels: &samples.labels, dim, variants: 1, classes, teacher };
    let mut suffix = SuffixModel::new(&plan, split.clone(), own_head(&plan)?)?;
    suffix.backbone_lr_scale = opts.backbone_lr_scale;
    let start = now();
    let (model, history, validation, sparsity) = match method {
        Method::Plain => {
            let r = train(suffix, &data, &opts.train, progress)?;
            (with_suffix(model, &r.model, &samples.class_names)?, r.history, r.validation, None)
        }
        Method::Prune { sparsity, ramp_epochs } => {
            let r = train(Pruned::new(suffix, sparsity, ramp_epochs)?, &data, &opts.train, progress)?;
            let mut pruned = r.model;
            pruned.prune_to(sparsity);
            let counts = pruned.counts();
            (with_suffix(model, &pruned.inner, &samples.class_names)?, r.history, r.validation, Some(counts))
        }
        Method::Qat { ptq } => {
            suffix.qat =
                Some(FakeQuant { ranges: ptq_ranges(ptq, split.cut, suffix.nodes.len())?, ..Default::default() });
            let r = train(suffix, &data, &opts.train, progress)?;
            (export_qat(ptq, &r.model, &samples.class_names)?, r.history, r.validation, None)
        }
    };
    let train_seconds = now() - start;
    let mut model = model;
    let c = &opts.train;
    model.header.provenance.steps.push(format!(
        "{} by edgetune {} (last-blocks:{}, {} samples of {classes} classes{}, {} epochs, {} lr {}, seed {})",
        match (&sparsity, teacher.is_some(), model.is_int8()) {
            (Some((z, n)), _, _) => format!("magnitude-pruned to {z} of {n} trained weights zero"),
            (None, _, true) => "quantization-aware trained".into(),
            (None, true, _) => format!(
                "distilled (alpha {}, temperature {})",
                c.distill.map_or(0.0, |d| d.alpha),
                c.distill.map_or(0.0, |d| d.temperature)
            ),
            (None, false, _) => "fine-tuned".into(),
        },
        crate::VERSION,
        opts.blocks,
        samples.images.len(),
        if teacher.is_some() { " with a teacher's logits" } else { "" },
        history.len(),
        c.optimizer.name(),
        c.lr,
        c.seed
    ));
    model.validate()?;
    Ok(Compressed { model, history, validation, sparsity, feature_seconds, train_seconds })
}

/// The PTQ model with the QAT-trained part: value grids from the tracked ranges, per-channel
/// int8 weights and int32 biases quantized as the exporter always does (with the weights'
/// scale floor that keeps biases in range), and the head per-channel int8.
pub fn export_qat(ptq: &ModelFile, suffix: &SuffixModel, labels: &[String]) -> Result<ModelFile> {
    let fq =
        suffix.qat.as_ref().ok_or_else(|| Error::invalid(OP, "the model was not trained with fake quantization"))?;
    let mut m = ptq.clone();
    let first = suffix.split.first;
    let q = m.header.quantization.as_mut().ok_or_else(|| Error::invalid(OP, "the PTQ model is not int8"))?;
    for j in 0..suffix.nodes.len() {
        let v = first + j + 1;
        if let (Some(Some((lo, hi))), Some(slot @ Some(_))) = (fq.ranges.get(j + 1), q.values.get_mut(v)) {
            let (scale, zero_point) = params_from_range(*lo, *hi);
            *slot = Some(ValueQuant { scale, zero_point });
        }
    }
    let values = q.values.clone();
    for (j, (_, op)) in suffix.nodes.iter().enumerate() {
        let PreparedOp::Conv { weight, bias, .. } = op else { continue };
        let node = &m.header.graph.nodes[first + j];
        let Op::Conv2d { weight: wname, bias: Some(bname), .. } = &node.op else {
            return Err(Error::invalid(
                OP,
                format!("node '{}' of the PTQ model is not an int8 convolution", node.name),
            ));
        };
        let (wname, bname) = (wname.clone(), bname.clone());
        let in_scale = values
            .get(node.inputs[0])
            .copied()
            .flatten()
            .ok_or_else(|| Error::invalid(OP, format!("the input of '{}' is not quantized", node.name)))?
            .scale as f64;
        let cout = weight.shape()[0];
        let floor: Vec<f32> = bias.iter().map(|&b| (b.abs() as f64 / (in_scale * MAX_BIAS_Q)) as f32).collect();
        let (wq, s) = quantize_weights_per_channel(weight.data(), cout, Some(&floor))?;
        let bq: Vec<i32> = bias
            .iter()
            .zip(&s)
            .map(|(&b, &sw)| (b as f64 / (in_scale * sw as f64)).round().clamp(-MAX_BIAS_Q, MAX_BIAS_Q) as i32)
            .collect();
        m.tensors.insert(format!("{wname}.scale"), Stored::F32(Tensor::new(vec![cout], s)?));
        m.tensors.insert(wname, Stored::I8 { shape: weight.shape().to_vec(), data: wq });
        m.tensors.insert(bname, Stored::I32 { shape: vec![cout], data: bq });
    }
    with_head(&m, &suffix.head, labels)
}

fn now() -> f64 {
    crate::base::clock::now_ms() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::Rng;
    use crate::compress::ptq::{quantize_model, BiasCorrection, Calibration};
    use crate::model::preprocess::Preprocess;
    use crate::quant::calibrate::Method as CalMethod;
    use crate::train::augment::RgbImage;
    use crate::train::trainer::{Distill, Trainable, UNLABELLED};
    use crate::zoo::testnet::tiny_network;

    fn names() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    fn float_model() -> ModelFile {
        let (graph, tensors) = tiny_network();
        ModelFile::float("tiny", graph, tensors, Preprocess { size: 6, ..Default::default() }, names(), "test")
    }

    /// Images whose class sets the mean brightness of one colour channel.
    fn samples(n: usize, seed: u64) -> Samples {
        let mut rng = Rng::new(seed);
        let (mut images, mut labels) = (vec![], vec![]);
        for i in 0..n {
            let y = i % 3;
            let px =
                (0..6 * 6 * 3).map(|k| if k % 3 == y { 150 + rng.below(100) } else { rng.below(120) } as u8).collect();
            images.push(RgbImage::new(6, 6, px).unwrap());
            labels.push(y);
        }
        Samples { images, labels, class_names: names() }
    }

    fn ptq(m: &ModelFile, s: &Samples) -> ModelFile {
        let p = m.header.preprocess;
        let sample = |i: usize| {
            let im = &s.images[i];
            preprocess(&im.pixels, im.width, im.height, 3, &p)
        };
        let cal = Calibration {
            method: CalMethod::MinMax,
            samples: s.images.len(),
            source: "test images".into(),
            sample: &sample,
            progress: &|_, _, _| {},
            bias_correction: BiasCorrection::None,
        };
        quantize_model(m, &cal).unwrap()
    }

    fn opts(epochs: usize, lr: f32) -> CompressOptions {
        CompressOptions {
            blocks: 1,
            train: TrainConfig { epochs, batch_size: 8, lr, ..Default::default() },
            backbone_lr_scale: 1.0,
        }
    }

    fn accuracy(m: &ModelFile, s: &Samples) -> f64 {
        let net = Classifier::new(m.clone()).unwrap();
        let p = m.header.preprocess;
        let hits = s
            .images
            .iter()
            .zip(&s.labels)
            .filter(|(im, &y)| {
                let l = net.logits(preprocess(&im.pixels, im.width, im.height, 3, &p).unwrap()).unwrap();
                crate::exec::top_k(l.data(), 1)[0].0 == y
            })
            .count();
        hits as f64 / s.images.len() as f64
    }

    /// The fake-quantized forward pass is what the exported int8 model computes: on the
    /// int8 prefix's cut values, the QAT suffix's logits match the int8 engine's.
    #[test]
    fn fake_quant_forward_matches_the_exported_int8_model() {
        let m = float_model();
        let data = samples(24, 1);
        let q = ptq(&m, &data);
        let plan = PreparedF32::new(&m.header.graph, &m.f32_tensors()).unwrap();
        let split = split_last_blocks(&plan.graph, 1).unwrap();
        let mut suffix = SuffixModel::new(&plan, split.clone(), own_head(&plan).unwrap()).unwrap();
        suffix.qat =
            Some(FakeQuant { ranges: ptq_ranges(&q, split.cut, suffix.nodes.len()).unwrap(), ..Default::default() });
        let exported = export_qat(&q, &suffix, &names()).unwrap();
        let (int8, prefix) = (PreparedI8::new(&exported).unwrap(), PreparedI8::new(&q).unwrap());
        let p = m.header.preprocess;
        let (mut worst, mut scale) = (0f32, 0f32);
        for im in &data.images {
            let x = preprocess(&im.pixels, im.width, im.height, 3, &p).unwrap();
            let cut = prefix.dequantized_value(&x, split.cut).unwrap();
            let fq = suffix.forward(&[cut.data()]).unwrap();
            let real = int8.logits(&x).unwrap();
            for (a, b) in fq.iter().zip(real.data()) {
                worst = worst.max((a - b).abs());
                scale = scale.max(b.abs());
            }
        }
        assert!(worst <= 0.02 * scale, "fake-quant logits differ from int8 by {worst} (logit scale {scale})");
    }

    #[test]
    fn qat_trains_and_exports_an_int8_model_the_engine_runs() {
        let m = float_model();
        let data = samples(60, 2);
        let q = ptq(&m, &data);
        let r =
            retrain(&m, &data, Method::Qat { ptq: &q }, &opts(15, 0.02), None, &mut |_, _| {}, &mut |_| true).unwrap();
        assert!(r.model.is_int8() && r.model.header.labels == names());
        assert!(r.model.header.provenance.steps.last().unwrap().contains("quantization-aware"));
        let (before, after) = (accuracy(&q, &data), accuracy(&r.model, &data));
        assert!(after > before.max(0.6), "int8 accuracy {before} before QAT, {after} after");
        // The frozen prefix is the PTQ model's, unchanged.
        assert_eq!(r.model.tensors.get("stem.weight"), q.tensors.get("stem.weight"));
        // QAT needs the int8 form of the same model.
        let e = retrain(&m, &data, Method::Qat { ptq: &m }, &opts(1, 0.0), None, &mut |_, _| {}, &mut |_| true);
        assert!(e.is_err());
    }

    #[test]
    fn pruning_leaves_the_trained_weights_at_the_target_sparsity() {
        let m = float_model();
        let data = samples(60, 3);
        let method = Method::Prune { sparsity: 0.5, ramp_epochs: 4 };
        let r = retrain(&m, &data, method, &opts(8, 0.02), None, &mut |_, _| {}, &mut |_| true).unwrap();
        let (zero, total) = r.sparsity.unwrap();
        assert!((zero as f64 / total as f64 - 0.5).abs() < 0.02, "{zero} of {total}");
        let zeros_in = |name: &str| match r.model.tensors.get(name) {
            Some(Stored::F32(t)) => t.data().iter().filter(|v| **v == 0.0).count() as f64 / t.len() as f64,
            _ => panic!("{name}"),
        };
        for w in ["blocks.0.expand.weight", "blocks.0.dw.weight", "blocks.0.project.weight", "head.weight", "fc.weight"]
        {
            assert!((zeros_in(w) - 0.5).abs() < 0.1, "{w}: {}", zeros_in(w));
        }
        assert!(zeros_in("stem.weight") < 0.1, "the frozen stem is not pruned");
        assert!(accuracy(&r.model, &data) > 0.6);
        let bad = Method::Prune { sparsity: 1.0, ramp_epochs: 4 };
        let e = retrain(&m, &data, bad, &opts(1, 0.0), None, &mut |_, _| {}, &mut |_| true).err().unwrap();
        assert!(e.to_string().contains("outside [0, 1)"), "{e}");
    }

    #[test]
    fn distillation_uses_the_teachers_logits_and_unlabelled_images() {
        let teacher = float_model();
        let mut data = samples(30, 4);
        let logits = teacher_logits(&teacher, &data, &mut |_| {}).unwrap();
        assert_eq!(logits.len(), 30 * 3);
        for y in data.labels.iter_mut().skip(15) {
            *y = UNLABELLED;
        }
        let mut o = opts(3, 0.01);
        o.train.distill = Some(Distill { alpha: 0.5, temperature: 2.0 });
        let r = retrain(&teacher, &data, Method::Plain, &o, Some(&logits), &mut |_, _| {}, &mut |_| true).unwrap();
        assert!(r.model.header.provenance.steps.last().unwrap().contains("distilled (alpha 0.5, temperature 2)"));
        // A teacher with other classes is refused, naming both label sets.
        let mut other = float_model();
        other.header.labels = vec!["x".into(), "y".into(), "z".into()];
        let e = teacher_logits(&other, &data, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("teacher's labels (x, y, z) differ from the data's classes (a, b, c)"), "{e}");
        // Unlabelled images need a teacher.
        let e = retrain(&teacher, &data, Method::Plain, &opts(1, 0.0), None, &mut |_, _| {}, &mut |_| true);
        assert!(e.is_err());
    }
}
