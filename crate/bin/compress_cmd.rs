//! `edgetune prune`, `edgetune qat` and `edgetune distill`: compress a fine-tuned float model
//! by training its last blocks and head further (see `edgetune::compress::retrain`).
//!
//! - `prune --sparsity S`: magnitude pruning of the trained part to sparsity S on a gradual
//!   schedule; `--structured`: removes expansion channels across the whole network until its
//!   MACs fall by S (`edgetune::compress::channel_prune`), then fine-tunes the last blocks.
//! - `qat`: post-training quantization (or `--ptq FILE`), then quantization-aware training of
//!   the last blocks and head; writes an int8 model.
//! - `distill --teacher T --student S`: fine-tunes the student's last blocks and head on the
//!   teacher's logits (`--alpha` on the labels, `--temperature`), with optional unlabelled
//!   images (`--unlabelled SRC`) that train on the teacher alone.
//!
//! `--mode head` trains the layers after the last block and the head (`last-blocks:0`).

use std::path::Path;

use edgetune::compress::channel_prune::{channel_stats, find_expansions, prune_channels};
use edgetune::compress::prune::check_sparsity;
use edgetune::compress::ptq::{quantize_model, BiasCorrection, Calibration};
use edgetune::compress::retrain::{check_labels, retrain, teacher_logits, CompressOptions, Compressed, Method};
use edgetune::data::images::ImageSource;
use edgetune::model::etm::ModelFile;
use edgetune::model::preprocess::preprocess;
use edgetune::quant::calibrate::Method as CalMethod;
use edgetune::train::augment::RgbImage;
use edgetune::train::finetune::{Mode, Samples};
use edgetune::train::trainer::{Distill, UNLABELLED};
use edgetune::{Error, Result};

use crate::train_cmd::{epoch_line, load_samples, options, TrainArgs};

type Bar<'a> = &'a dyn Fn(usize, &str) -> indicatif::ProgressBar;

fn compress_options(a: &TrainArgs) -> Result<CompressOptions> {
    let o = options(a)?;
    if a.augment > 0 {
        return Err(Error::invalid("compress", "--augment is not supported by prune, qat and distill"));
    }
    let blocks = match o.mode {
        Mode::Head => 0,
        Mode::LastBlocks(k) => k,
    };
    Ok(CompressOptions { blocks, train: o.train, backbone_lr_scale: a.backbone_lr_scale })
}

/// Runs [`retrain`] with a feature bar and one line per epoch, prints the outcome, writes `out`.
fn run_retrain(
    model: &ModelFile,
    samples: &Samples,
    method: Method,
    opts: &CompressOptions,
    teacher: Option<&[f32]>,
    out: &Path,
    bar: Bar,
) -> Result<Compressed> {
    let pb = bar(samples.images.len(), "features");
    let r = retrain(model, samples, method, opts, teacher, &mut |done, _| pb.set_position(done as u64), &mut |p| {
        if p.end_of_epoch {
            pb.finish_and_clear();
            println!("{}", epoch_line(p));
        }
        true
    })?;
    pb.finish_and_clear();
    let epochs = r.history.len().max(1);
    println!(
        "features: {:.1} s ({:.1} ms per image); training: {:.1} s ({:.0} ms per epoch)",
        r.feature_seconds,
        r.feature_seconds * 1e3 / samples.images.len().max(1) as f64,
        r.train_seconds,
        r.train_seconds * 1e3 / epochs as f64
    );
    if let Some(v) = &r.validation {
        println!("validation accuracy {:.2}% ({} images)", v.accuracy() * 100.0, v.total());
    }
    r.model.save(out)?;
    println!("wrote {} ({} bytes)", out.display(), std::fs::metadata(out).map_or(0, |m| m.len()));
    Ok(r)
}

fn load(a: &TrainArgs, per_class: usize) -> Result<(ModelFile, Samples)> {
    let model = ModelFile::load(&a.backbone)?;
    let samples = load_samples(&a.data, per_class)?;
    println!(
        "{} on {} images of {} classes from {}",
        a.backbone.display(),
        samples.images.len(),
        samples.class_names.len(),
        a.data
    );
    Ok((model, samples))
}

/// `edgetune prune`.
pub fn prune(
    a: &TrainArgs,
    per_class: usize,
    sparsity: f32,
    structured: bool,
    calib_images: usize,
    out: &Path,
    bar: Bar,
) -> Result<bool> {
    check_sparsity(sparsity)?;
    let (model, samples) = load(a, per_class)?;
    if model.is_int8() {
        return Err(Error::invalid("prune", "the model is int8: prune the float model, then quantize the result"));
    }
    if !structured {
        let mut opts = compress_options(a)?;
        let ramp = opts.train.epochs.div_ceil(2);
        opts.train.epochs = opts.train.epochs.max(1);
        let r = run_retrain(&model, &samples, Method::Prune { sparsity, ramp_epochs: ramp }, &opts, None, out, bar)?;
        if let Some((z, n)) = r.sparsity {
            println!("{z} of {n} weights in the trained layers are zero ({:.1}%)", 100.0 * z as f64 / n.max(1) as f64);
        }
        return Ok(true);
    }
    if calib_images == 0 || calib_images > samples.images.len() {
        return Err(Error::invalid(
            "prune",
            format!("--calib-images {calib_images}: between 1 and the {} training images", samples.images.len()),
        ));
    }
    let exps = find_expansions(&model);
    let p = model.header.preprocess;
    // Spread the statistics' images over the classes (the samples are grouped by class).
    let step = samples.images.len() / calib_images;
    let pick = |i: usize| &samples.images[i * step];
    let pb = bar(calib_images, "channel statistics");
    let stats = channel_stats(&model, &exps, calib_images, &mut |i| {
        pb.set_position(i as u64 + 1);
        let im = pick(i);
        preprocess(&im.pixels, im.width, im.height, 3, &p)
    })?;
    pb.finish_and_clear();
    let (pruned, rep) = prune_channels(&model, sparsity, &stats)?;
    println!(
        "structured: {} of {} expanded channels kept in {} blocks; MACs {:.1} M -> {:.1} M ({:.1}% fewer)",
        rep.channels_after,
        rep.channels_before,
        rep.blocks,
        rep.macs_before as f64 / 1e6,
        rep.macs_after as f64 / 1e6,
        100.0 * (1.0 - rep.macs_after as f64 / rep.macs_before.max(1) as f64)
    );
    if a.epochs == 0 {
        pruned.save(out)?;
        println!("wrote {} without fine-tuning (--epochs 0)", out.display());
        return Ok(true);
    }
    run_retrain(&pruned, &samples, Method::Plain, &compress_options(a)?, None, out, bar)?;
    Ok(true)
}

/// Where QAT's post-training quantization comes from.
pub struct PtqArgs<'a> {
    pub ptq: Option<&'a Path>,
    pub calib: Option<&'a str>,
    pub method: &'a str,
    pub samples: usize,
    pub bias_correction: &'a str,
}

/// `edgetune qat`.
pub fn qat(a: &TrainArgs, per_class: usize, q: &PtqArgs, out: &Path, bar: Bar) -> Result<bool> {
    let (model, samples) = load(a, per_class)?;
    let ptq = match q.ptq {
        Some(path) => ModelFile::load(path)?,
        None => {
            let spec = q.calib.unwrap_or(&a.data);
            let src = ImageSource::open(spec)?;
            if q.samples == 0 || q.samples > src.len() {
                return Err(Error::invalid(
                    "qat",
                    format!("--samples {}: the source has {} images", q.samples, src.len()),
                ));
            }
            let p = model.header.preprocess;
            let pb = bar(q.samples, "post-training quantization");
            let sample = |i: usize| src.preprocessed(i, &p);
            let progress = |_: usize, done: usize, total: usize| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            };
            let method: CalMethod = q.method.parse()?;
            let m = quantize_model(
                &model,
                &Calibration {
                    method,
                    samples: q.samples,
                    source: src.describe(),
                    sample: &sample,
                    progress: &progress,
                    bias_correction: BiasCorrection::parse(q.bias_correction)?,
                },
            )?;
            pb.finish_and_clear();
            println!("post-training quantization: {} calibration on {} images of {spec}", method.name(), q.samples);
            m
        }
    };
    run_retrain(&model, &samples, Method::Qat { ptq: &ptq }, &compress_options(a)?, None, out, bar)?;
    Ok(true)
}

/// Distillation settings and the unlabelled images.
pub struct DistillArgs<'a> {
    pub teacher: &'a Path,
    pub alpha: f32,
    pub temperature: f32,
    pub unlabelled: Option<&'a str>,
    pub unlabelled_offset: usize,
    pub unlabelled_count: Option<usize>,
}

/// `edgetune distill`.
pub fn distill(a: &TrainArgs, per_class: usize, d: &DistillArgs, out: &Path, bar: Bar) -> Result<bool> {
    if !((0.0..=1.0).contains(&d.alpha) && d.temperature.is_finite() && d.temperature > 0.0) {
        return Err(Error::invalid(
            "distill",
            format!("--alpha {} must be in [0, 1] and --temperature {} positive", d.alpha, d.temperature),
        ));
    }
    let teacher = ModelFile::load(d.teacher)?;
    let (student, mut samples) = load(a, per_class)?;
    // Both label checks before the teacher's (slow) pass over the images.
    check_labels(&teacher, &samples.class_names, "teacher")?;
    check_labels(&student, &samples.class_names, "student")?;
    if let Some(spec) = d.unlabelled {
        let src = ImageSource::open(spec)?;
        if d.unlabelled_offset >= src.len() {
            return Err(Error::invalid(
                "distill",
                format!("--unlabelled-offset {}: the source has {} images", d.unlabelled_offset, src.len()),
            ));
        }
        let n = d.unlabelled_count.unwrap_or(src.len()).min(src.len() - d.unlabelled_offset);
        for i in d.unlabelled_offset..d.unlabelled_offset + n {
            let (w, h, px) = src.rgb(i)?;
            samples.images.push(RgbImage::new(w, h, px)?);
            samples.labels.push(UNLABELLED);
        }
        println!("plus {n} unlabelled images from {spec} (teacher's logits only)");
    }
    let pb = bar(samples.images.len(), "teacher logits");
    let logits = teacher_logits(&teacher, &samples, &mut |i| pb.set_position(i as u64))?;
    pb.finish_and_clear();
    let mut opts = compress_options(a)?;
    opts.train.distill = Some(Distill { alpha: d.alpha, temperature: d.temperature });
    run_retrain(&student, &samples, Method::Plain, &opts, Some(&logits), out, bar)?;
    Ok(true)
}
