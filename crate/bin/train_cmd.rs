//! `edgetune finetune`: trains a new head (or the last blocks) of a backbone on labelled
//! images and writes a normal `.etm` whose labels are the new classes.

use std::path::{Path, PathBuf};

use edgetune::data::cifar::{CifarFile, CLASSES, SIDE};
use edgetune::data::images::{list_images, load_rgb};
use edgetune::model::etm::ModelFile;
use edgetune::train::augment::{Augment, RgbImage};
use edgetune::train::finetune::{finetune, Event, FinetuneOptions, Mode, Samples};
use edgetune::train::loss::Loss;
use edgetune::train::optim::Optimizer;
use edgetune::train::schedule::Decay;
use edgetune::train::trainer::TrainConfig;
use edgetune::{Error, Result};

/// Training options shared by `finetune` and `fewshot`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The backbone .etm (f32 or int8; last-blocks needs f32); for prune, qat and distill the
    /// model to compress (also spelled --model, and --student for distill).
    #[arg(long, visible_aliases = ["model", "student"])]
    pub backbone: PathBuf,
    /// cifar10:PATH, or a folder with one sub-folder of images per class.
    #[arg(long)]
    pub data: String,
    /// head or last-blocks:K.
    #[arg(long, default_value = "head")]
    pub mode: String,
    /// sgd, momentum, nesterov, adam, adamw or rmsprop.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// ce, mse or hinge.
    #[arg(long, default_value = "ce")]
    pub loss: String,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Peak learning rate (cosine decay to 0).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Augmented copies per sample (random crop, flip, brightness/contrast).
    #[arg(long, default_value_t = 0)]
    pub augment: usize,
    /// Fraction of each class held out for validation (keeps the best epoch).
    #[arg(long, default_value_t = 0.0)]
    pub validation: f32,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// last-blocks: learning rate of the blocks relative to the head's.
    #[arg(long, default_value_t = 0.1)]
    pub backbone_lr_scale: f32,
}

/// The first `per_class` images of each class: from a CIFAR-10 file, or from a folder with
/// one sub-folder of images per class (the sub-folder names become the labels).
pub fn load_samples(spec: &str, per_class: usize) -> Result<Samples> {
    if per_class == 0 {
        return Err(Error::invalid("finetune", "--per-class must be at least 1"));
    }
    if let Some(p) = spec.strip_prefix("cifar10:") {
        let file = CifarFile::open(Path::new(p))?;
        let (mut images, mut labels, mut count) = (vec![], vec![], [0usize; 10]);
        for i in 0..file.len() {
            let y = file.label(i);
            if count[y] < per_class {
                count[y] += 1;
                images.push(RgbImage::new(SIDE, SIDE, file.rgb(i))?);
                labels.push(y);
            }
        }
        return Ok(Samples { images, labels, class_names: CLASSES.iter().map(|s| s.to_string()).collect() });
    }
    let root = PathBuf::from(spec);
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| Error::io(&root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let (mut images, mut labels, mut names) = (vec![], vec![], vec![]);
    for dir in &classes {
        let files = list_images(dir)?;
        if files.is_empty() {
            return Err(Error::invalid("finetune", format!("class folder {} has no images", dir.display())));
        }
        for f in files.iter().take(per_class) {
            let (w, h, px) = load_rgb(f)?;
            images.push(RgbImage::new(w, h, px)?);
            labels.push(names.len());
        }
        names.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    if names.len() < 2 {
        return Err(Error::invalid(
            "finetune",
            format!("{} needs at least two class sub-folders of images (or use cifar10:PATH)", root.display()),
        ));
    }
    Ok(Samples { images, labels, class_names: names })
}

pub fn options(a: &TrainArgs) -> Result<FinetuneOptions> {
    let train = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        optimizer: Optimizer::parse(&a.optimizer, a.weight_decay)?,
        loss: Loss::parse(&a.loss)?,
        warmup_epochs: 0,
        decay: Decay::Cosine { min_lr: 0.0 },
        clip_norm: None,
        validation: a.validation,
        patience: a.patience,
        seed: a.seed,
        distill: None,
    };
    Ok(FinetuneOptions {
        mode: Mode::parse(&a.mode)?,
        augment: Augment::default(),
        copies: a.augment,
        train,
        backbone_lr_scale: a.backbone_lr_scale,
    })
}

/// One line per finished epoch: training loss and accuracy, and validation's when held out.
pub fn epoch_line(p: &edgetune::train::trainer::Progress) -> String {
    let val = match (p.val_loss, p.val_accuracy) {
        (Some(l), Some(acc)) => format!(", validation loss {l:.4} accuracy {:.1}%", acc * 100.0),
        _ => String::new(),
    };
    format!("epoch {:>3}/{}: loss {:.4} accuracy {:.1}%{val}", p.epoch, p.epochs, p.loss, p.accuracy * 100.0)
}

pub fn run(
    a: &TrainArgs,
    per_class: usize,
    out: &Path,
    bar: &dyn Fn(usize, &str) -> indicatif::ProgressBar,
) -> Result<bool> {
    let backbone = ModelFile::load(&a.backbone)?;
    let samples = load_samples(&a.data, per_class)?;
    let opts = options(a)?;
    println!(
        "fine-tuning {} ({}) on {} images of {} classes from {}",
        a.backbone.display(),
        opts.mode.describe(),
        samples.images.len(),
        samples.class_names.len(),
        a.data
    );
    let copies = 1 + a.augment;
    let fpb = bar(samples.images.len() * copies, "features");
    let tpb = std::cell::RefCell::new(None::<indicatif::ProgressBar>);
    let r = finetune(&backbone, &samples, &opts, &mut |ev| {
        match ev {
            Event::Features { done, .. } => fpb.set_position(done as u64),
            Event::Train(p) => {
                let mut t = tpb.borrow_mut();
                let pb = t.get_or_insert_with(|| {
                    fpb.finish_and_clear();
                    bar(p.epochs * p.steps, "training")
                });
                pb.set_position(((p.epoch - 1) * p.steps + p.step) as u64);
                if p.end_of_epoch {
                    let line = epoch_line(p);
                    if pb.is_hidden() {
                        println!("{line}")
                    } else {
                        pb.println(line)
                    }
                }
            }
        }
        true
    })?;
    if let Some(pb) = tpb.borrow_mut().take() {
        pb.finish_and_clear();
    }
    let epochs = r.history.len().max(1);
    println!(
        "features: {:.1} s ({:.1} ms per image); training: {:.2} s ({:.1} ms per epoch){}",
        r.feature_seconds,
        r.feature_seconds * 1e3 / (samples.images.len() * copies).max(1) as f64,
        r.train_seconds,
        r.train_seconds * 1e3 / epochs as f64,
        if r.stopped_early { ", stopped early" } else { "" }
    );
    if let Some(v) = &r.validation {
        println!("validation accuracy {:.2}% ({} images)", v.accuracy() * 100.0, v.total());
    }
    r.model.save(out)?;
    println!(
        "wrote {} ({} bytes, labels: {})",
        out.display(),
        std::fs::metadata(out).map_or(0, |m| m.len()),
        samples.class_names.join(", ")
    );
    Ok(true)
}

/// `edgetune fewshot`: the few-shot table. For each N, fine-tunes on the first N images per
/// class of the training source and measures accuracy on the test source, whose features
/// (embeddings, or cut activations for last-blocks) are computed once and reused.
pub fn fewshot(
    a: &TrainArgs,
    shots: &[usize],
    test: &str,
    test_range: (usize, Option<usize>),
    json: Option<&Path>,
) -> Result<bool> {
    use edgetune::base::pool::map_items;
    use edgetune::data::images::ImageSource;
    use edgetune::exec::cpu_f32::PreparedF32;
    use edgetune::exec::Classifier;
    use edgetune::train::blocks::split_last_blocks;
    use edgetune::train::metrics::Confusion;
    use edgetune::train::trainer::Trainable;

    let backbone = ModelFile::load(&a.backbone)?;
    let opts = options(a)?;
    let src = ImageSource::open(test)?;
    let (offset, limit) = test_range;
    if offset >= src.len() {
        return Err(Error::invalid("fewshot", format!("test offset {offset}: the source has {} images", src.len())));
    }
    let n_test = limit.unwrap_or(src.len()).min(src.len() - offset);
    let p = backbone.header.preprocess;
    let start = std::time::Instant::now();
    // Features in parallel over the test images (`pool::map_items`: index order, the same
    // values for any thread count).
    let test_feats: Vec<Vec<f32>> = match opts.mode {
        Mode::Head => {
            let net = Classifier::new(backbone.clone())?;
            map_items(n_test, &|i| Ok(net.embeddings(src.preprocessed(offset + i, &p)?)?.into_data()))?
        }
        Mode::LastBlocks(k) => {
            let plan = PreparedF32::new(&backbone.header.graph, &backbone.f32_tensors())?;
            let cut = split_last_blocks(&plan.graph, k)?.cut;
            map_items(n_test, &|i| {
                let v = plan.forward_prefix(src.preprocessed(offset + i, &p)?, cut)?;
                Ok(v.last().map(|t| t.data().to_vec()).unwrap_or_default())
            })?
        }
    };
    let test_labels = (offset..offset + n_test)
        .map(|i| src.label(i).ok_or_else(|| Error::invalid("fewshot", "the test source has no labels")))
        .collect::<Result<Vec<usize>>>()?;
    let test_feature_ms = start.elapsed().as_secs_f64() * 1e3 / n_test.max(1) as f64;
    println!(
        "{} ({}, {} {} lr {} epochs {} augment {}) on {} test images of {test} from #{offset} ({test_feature_ms:.1} ms/image for features)",
        a.backbone.display(),
        opts.mode.describe(),
        opts.train.optimizer.name(),
        a.loss,
        a.lr,
        a.epochs,
        a.augment,
        n_test
    );
    println!("{:>5} {:>9} {:>11} {:>12} {:>11}", "N", "accuracy", "ms/epoch", "features s", "epochs run");
    let mut rows = vec![];
    for &n in shots {
        let samples = load_samples(&a.data, n)?;
        let r = finetune(&backbone, &samples, &opts, &mut |_| true)?;
        let mut conf = Confusion::new(samples.class_names.len());
        for (chunk, labels) in test_feats.chunks(64).zip(test_labels.chunks(64)) {
            let batch: Vec<&[f32]> = chunk.iter().map(|v| v.as_slice()).collect();
            let logits = match &r.suffix {
                Some(s) => s.clone().forward(&batch)?,
                None => r.head.logits(&batch.concat(), batch.len())?,
            };
            for (row, &y) in logits.chunks_exact(samples.class_names.len()).zip(labels) {
                let pred = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                conf.add(y, pred)?;
            }
        }
        let epochs = r.history.len().max(1);
        let ms_epoch = r.train_seconds * 1e3 / epochs as f64;
        println!("{n:>5} {:>8.2}% {ms_epoch:>11.1} {:>12.1} {epochs:>11}", conf.accuracy() * 100.0, r.feature_seconds);
        rows.push(serde_json::json!({
            "per_class": n, "accuracy": conf.accuracy(), "ms_per_epoch": ms_epoch,
            "feature_seconds": r.feature_seconds, "epochs": epochs,
            "final_train_loss": r.history.last().map(|h| h.loss),
        }));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "backbone": a.backbone.display().to_string(), "mode": opts.mode.describe(),
            "optimizer": opts.train.optimizer.name(), "loss": a.loss, "lr": a.lr, "epochs": a.epochs,
            "batch_size": a.batch_size, "weight_decay": a.weight_decay, "augment": a.augment, "seed": a.seed,
            "train": a.data, "test": test, "test_offset": offset, "test_images": n_test,
            "test_feature_ms_per_image": test_feature_ms, "rows": rows,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::invalid("fewshot", e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        println!("wrote {}", path.display());
    }
    Ok(true)
}
