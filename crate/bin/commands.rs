//! The model commands of the CLI: import, info, quantize, classify, eval, embed.

use std::path::Path;
use std::time::Instant;

use edgetune::base::pool::map_items;
use edgetune::compress::ptq::{quantize_model, BiasCorrection, Calibration};
use edgetune::data::cifar::CLASSES;
use edgetune::data::images::{load_preprocessed, ImageSource};
use edgetune::exec::engine::{BackendChoice, Engine};
use edgetune::exec::{top_k, Classifier};
use edgetune::gpu::kernel::block_on;
use edgetune::model::etm::{Header, ModelFile, Provenance, Stored, FORMAT, VERSION};
use edgetune::model::labels::read_labels;
use edgetune::model::preprocess::Preprocess;
use edgetune::quant::calibrate::Method;
use edgetune::train::metrics::Confusion;
use edgetune::zoo::efficientnet::import_lite0_checkpoint;
use edgetune::{Error, Result};

type Bar<'a> = &'a dyn Fn(usize, &str) -> indicatif::ProgressBar;

/// `--mean` / `--std` of `import`: both or neither; each one number, three (R,G,B) or `imagenet`.
pub fn normalization(mean: Option<&str>, std: Option<&str>) -> Result<Option<([f32; 3], [f32; 3])>> {
    let parse = |s: &str, imagenet: [f32; 3], what: &str| -> Result<[f32; 3]> {
        if s.eq_ignore_ascii_case("imagenet") {
            return Ok(imagenet);
        }
        let v: Vec<f32> =
            s.split(',').map(|x| x.trim().parse::<f32>()).collect::<std::result::Result<_, _>>().map_err(|e| {
                Error::invalid("import", format!("--{what} '{s}': {e} (one number, R,G,B or imagenet)"))
            })?;
        match v[..] {
            [a] => Ok([a; 3]),
            [r, g, b] => Ok([r, g, b]),
            _ => Err(Error::invalid("import", format!("--{what} '{s}': {} values (one or three)", v.len()))),
        }
    };
    match (mean, std) {
        (None, None) => Ok(None),
        (Some(m), Some(s)) => {
            Ok(Some((parse(m, Preprocess::IMAGENET_MEAN, "mean")?, parse(s, Preprocess::IMAGENET_STD, "std")?)))
        }
        _ => Err(Error::invalid("import", "--mean and --std go together")),
    }
}

pub fn import(
    input: &Path,
    output: &Path,
    labels: Option<&Path>,
    arch: &str,
    source: &str,
    norm: Option<([f32; 3], [f32; 3])>,
) -> Result<bool> {
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "tflite" || ext == "onnx" {
        let start = Instant::now();
        let labels = labels.map(|p| read_labels(p, None)).transpose()?;
        let bytes = edgetune::base::io::read_limited(input, edgetune::model::etm::MAX_MODEL_BYTES)?;
        let mut model = edgetune::import::import_file(&bytes, &input.display().to_string(), labels)?;
        if let Some((mean, std)) = norm {
            if model.header.quantization.as_ref().is_some_and(|q| q.arithmetic.is_tflite()) {
                return Err(Error::invalid(
                    "import",
                    "--mean/--std: a TFLite model's normalization is its input quantization, kept from the file",
                ));
            }
            model.header.preprocess.set_unit_normalization(mean, std)?;
            model.validate()?;
        }
        model.save(output)?;
        let kind = if model.is_int8() { "int8" } else { "f32" };
        report_written(output, &format!(", {kind}, {} nodes", model.header.graph.nodes.len()), start);
        return Ok(true);
    }
    let labels = labels.ok_or_else(|| Error::invalid("import", "--labels is required for a .pth checkpoint"))?;
    if arch != "efficientnet_lite0" {
        return Err(Error::unsupported(format!("architecture '{arch}' (supported: efficientnet_lite0)")));
    }
    let start = Instant::now();
    let (graph, tensors) = import_lite0_checkpoint(input)?;
    let classes = graph.num_classes(&tensors)?;
    let labels = read_labels(labels, Some(classes))?;
    let source = if source.is_empty() { input.display().to_string() } else { source.to_string() };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        architecture: arch.into(),
        graph,
        preprocess: {
            let mut p = Preprocess::default();
            if let Some((mean, std)) = norm {
                p.set_unit_normalization(mean, std)?;
            }
            p
        },
        labels,
        quantization: None,
        provenance: Provenance {
            source,
            license: "Apache-2.0".into(),
            created_by: format!("edgetune {}", edgetune::VERSION),
            steps: vec![format!("imported from a PyTorch legacy checkpoint by edgetune {}", edgetune::VERSION)],
        },
    };
    let model = ModelFile { header, tensors: tensors.into_iter().map(|(k, v)| (k, Stored::F32(v))).collect() };
    model.validate()?;
    model.save(output)?;
    report_written(output, "", start);
    Ok(true)
}

pub fn export(model: &Path, output: &Path) -> Result<bool> {
    let start = Instant::now();
    let m = ModelFile::load(model)?;
    let bytes = edgetune::import::onnx::export::export_onnx(&m)?;
    std::fs::write(output, bytes).map_err(|e| Error::io(output, e))?;
    let kind = if m.is_int8() { "int8 as QDQ" } else { "f32" };
    report_written(output, &format!(", {kind}, opset 13"), start);
    Ok(true)
}

/// One line saying what was written, its size and how long it took.
fn report_written(path: &Path, detail: &str, start: Instant) {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({bytes} bytes{detail}) in {:.1} s", path.display(), start.elapsed().as_secs_f64());
}

pub fn info(path: &Path) -> Result<bool> {
    let m = ModelFile::load(path)?;
    let h = &m.header;
    let shapes: std::collections::HashMap<_, _> = m
        .tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), edgetune::Tensor::zeros(v.shape().to_vec())?)))
        .collect::<Result<_>>()?;
    let params = edgetune::compress::channel_prune::parameter_count(&m);
    let zeros = edgetune::compress::channel_prune::zero_weights(&m);
    println!("file          {} ({} bytes)", path.display(), std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    println!("format        {} v{}", h.format, h.version);
    println!("architecture  {} ({} nodes)", h.architecture, h.graph.nodes.len());
    println!(
        "precision     {}",
        if m.is_int8() { "int8 (per-channel weights, int8 activations, f32 logits)" } else { "f32" }
    );
    println!("input         {}x{}x{}", h.graph.input[0], h.graph.input[1], h.graph.input[2]);
    let p = &h.preprocess;
    let (mean, scale) = p.normalization();
    let norm = if p.channel_mean.is_some() || p.channel_scale.is_some() {
        format!("(x - {mean:?}[c]) / {scale:?}[c]")
    } else {
        format!("(x - {}) / {}", p.mean, p.scale)
    };
    println!(
        "preprocess    centre crop {:.1}%, resize to {} (area down / bilinear up), {norm}",
        p.crop_fraction * 100.0,
        p.size,
    );
    println!(
        "parameters    {params} ({zeros} convolution and dense weights are zero, {:.1}%)",
        100.0 * zeros as f64 / params.max(1) as f64
    );
    println!("MACs          {}", h.graph.macs(&shapes)?);
    let shown: Vec<&str> = h.labels.iter().take(5).map(String::as_str).collect();
    println!(
        "classes       {}: {}{}",
        h.labels.len(),
        shown.join(" | "),
        if h.labels.len() > 5 { " | ..." } else { "" }
    );
    if let Some(q) = &h.quantization {
        if q.samples == 0 {
            println!("quantization  {} ({:?} arithmetic)", q.calibration_source, q.arithmetic);
        } else {
            println!("quantization  {} calibration on {} images from {}", q.method, q.samples, q.calibration_source);
        }
    }
    println!("source        {} (licence {})", h.provenance.source, h.provenance.license);
    for s in &h.provenance.steps {
        println!("              - {s}");
    }
    Ok(true)
}

/// What `edgetune quantize` was asked for.
pub struct QuantizeArgs<'a> {
    pub calib: &'a str,
    pub method: &'a str,
    pub samples: usize,
    pub bias_correction: &'a str,
}

pub fn quantize(args: &QuantizeArgs, input: &Path, output: &Path, bar: Bar) -> Result<bool> {
    let QuantizeArgs { calib, method, samples, .. } = *args;
    let method: Method = method.parse()?;
    let bias_correction = BiasCorrection::parse(args.bias_correction)?;
    let model = ModelFile::load(input)?;
    let src = ImageSource::open(calib)?;
    if samples == 0 || samples > src.len() {
        return Err(Error::invalid("quantize", format!("--samples {samples}: the source has {} images", src.len())));
    }
    let p = model.header.preprocess;
    let start = Instant::now();
    let pb = bar(samples, "calibrating");
    let passes = 1 + usize::from(method != Method::MinMax) + usize::from(bias_correction == BiasCorrection::Empirical);
    let progress = |pass: usize, done: usize, total: usize| {
        let pass = if pass == 3 { passes } else { pass };
        pb.set_message(format!(
            "pass {pass}/{passes}{}",
            if pass == passes && passes > 1 && bias_correction == BiasCorrection::Empirical {
                " (bias correction, layers)"
            } else {
                ""
            }
        ));
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let sample = |i: usize| src.preprocessed(i, &p);
    let q = quantize_model(
        &model,
        &Calibration { method, samples, source: src.describe(), sample: &sample, progress: &progress, bias_correction },
    )?;
    pb.finish_and_clear();
    q.save(output)?;
    report_written(output, &format!(", {} calibration on {samples} images", method.name()), start);
    Ok(true)
}

/// The model on the chosen backend, with a line saying which runs and why.
pub fn engine(model: &Path, backend: &str) -> Result<Engine> {
    let choice: BackendChoice = backend.parse()?;
    let engine = block_on(Engine::new(Classifier::load(model)?, choice))?;
    println!("model {} ({}), backend {}", model.display(), engine.classifier.precision(), engine.report().describe());
    Ok(engine)
}

pub fn classify(model: &Path, backend: &str, images: &[std::path::PathBuf]) -> Result<bool> {
    let mut engine = engine(model, backend)?;
    let c = &engine.classifier;
    let p = c.file.header.preprocess;
    let mut ok = true;
    for img in images {
        let x = match load_preprocessed(img, &p) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
                continue;
            }
        };
        let start = Instant::now();
        let logits = block_on(engine.logits(x))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("{} ({ms:.1} ms)", img.display());
        for (class, prob) in top_k(logits.data(), 5) {
            println!("  {:>6.2}%  {}", prob * 100.0, engine.classifier.file.header.labels[class]);
        }
    }
    Ok(ok)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// `10 log10(sum r^2 / sum (r - m)^2)` in dB (infinite when identical).
pub fn sqnr_db(reference: &[f32], model: &[f32]) -> f64 {
    let s: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let n: f64 = reference.iter().zip(model).map(|(&r, &m)| (r as f64 - m as f64).powi(2)).sum();
    10.0 * (s / n).log10()
}

pub fn eval(
    (model, backend): (&Path, &str),
    reference: Option<&Path>,
    data: &str,
    limit: Option<usize>,
    offset: usize,
    bar: Bar,
) -> Result<bool> {
    let mut engine = engine(model, backend)?;
    let r = reference.map(Classifier::load).transpose()?;
    let src = ImageSource::open(data)?;
    if offset >= src.len() {
        return Err(Error::invalid("eval", format!("--offset {offset}: the source has {} images", src.len())));
    }
    let n = limit.unwrap_or(src.len()).min(src.len() - offset);
    let labels = engine.classifier.file.header.labels.clone();
    let classes = labels.len();
    let labelled = src.label(0).is_some() && labels.iter().map(String::as_str).eq(CLASSES);
    let mut confusion = Confusion::new(classes);
    if r.is_none() && !labelled {
        return Err(Error::invalid(
            "eval",
            "nothing to compare: give --reference, or labelled data with a matching head",
        ));
    }
    let p = engine.classifier.file.header.preprocess;
    let (mut agree, mut top5, mut correct, mut ref_correct) = (0usize, 0usize, 0usize, 0usize);
    let mut sqnr = vec![];
    let (mut t_model, mut t_ref) = (0f64, 0f64);
    let pb = bar(n, "evaluating");
    // Chunks of images: on the CPU each chunk's logits are computed in parallel (index order,
    // the engine's own arithmetic: embeddings then the head), on the GPU one after another;
    // then the chunk is scored in order. Times are wall time per image.
    let on_cpu = engine.gpu().is_none();
    let chunk = 16 * edgetune::base::pool::threads();
    let mut start = offset;
    while start < offset + n {
        let len = chunk.min(offset + n - start);
        let inputs = map_items(len, &|j| src.preprocessed(start + j, &p))?;
        let s = Instant::now();
        let model_logits = if on_cpu {
            let c = &engine.classifier;
            map_items(len, &|j| c.head_logits(c.embeddings(inputs[j].clone())?))?
        } else {
            let mut v = Vec::with_capacity(len);
            for x in &inputs {
                v.push(block_on(engine.logits(x.clone()))?);
            }
            v
        };
        t_model += s.elapsed().as_secs_f64();
        let s = Instant::now();
        let ref_logits = match &r {
            Some(r) => Some(map_items(len, &|j| r.logits(inputs[j].clone()))?),
            None => None,
        };
        t_ref += s.elapsed().as_secs_f64();
        for (j, lm) in model_logits.iter().enumerate() {
            let i = start + j;
            let pm = argmax(lm.data());
            if let (true, Some(y)) = (labelled, src.label(i)) {
                correct += usize::from(pm == y);
                confusion.add(y, pm)?;
            }
            if let Some(lr) = ref_logits.as_ref().and_then(|v| v.get(j)) {
                if lr.len() != lm.len() {
                    return Err(Error::invalid(
                        "eval",
                        format!("model has {} logits, reference {}", lm.len(), lr.len()),
                    ));
                }
                let pr = argmax(lr.data());
                agree += usize::from(pm == pr);
                top5 += usize::from(top_k(lr.data(), 5).iter().any(|&(c, _)| c == pm));
                sqnr.push(sqnr_db(lr.data(), lm.data()));
                if labelled && Some(pr) == src.label(i) {
                    ref_correct += 1;
                }
            }
        }
        start += len;
        pb.set_position((start - offset) as u64);
    }
    pb.finish_and_clear();
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    println!("data            {} ({n} images from #{offset})", src.describe());
    println!(
        "model           {} ({}), {:.1} ms/image",
        model.display(),
        engine.classifier.precision(),
        t_model * 1e3 / n.max(1) as f64
    );
    if let (Some(r), Some(rp)) = (&r, reference) {
        sqnr.sort_by(|a, b| a.total_cmp(b));
        println!("reference       {} ({}), {:.1} ms/image", rp.display(), r.precision(), t_ref * 1e3 / n.max(1) as f64);
        println!("top-1 agreement {:.2}% ({agree}/{n})", pct(agree));
        println!("top-1 in ref top-5 {:.2}% ({top5}/{n})", pct(top5));
        println!("median logit SQNR {:.2} dB", sqnr.get(sqnr.len() / 2).copied().unwrap_or(f64::NAN));
    }
    if labelled {
        println!("accuracy        {:.2}% ({correct}/{n})", pct(correct));
        print!("{}", confusion.report(&labels));
        if r.is_some() {
            println!("reference accuracy {:.2}% ({ref_correct}/{n})", pct(ref_correct));
        }
    }
    Ok(true)
}

/// Writes a NumPy `.npy` file (format 1.0): the magic, a header dict padded with spaces to a
/// multiple of 64 bytes and ended by a newline, then the data little-endian in C order.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|_| Error::invalid("npy", "header too long"))?;
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// `edgetune embed`: the pooled features (what a head trains on) of images `offset..offset +
/// limit` of `data`, as `[N, dim]` float32 in `out` (.npy) and their labels as int32 in
/// `labels_out` (-1 for an unlabelled image), for analysis outside the engine (e.g. the
/// logistic-regression reference of the few-shot table, bench/fewshot_logreg.py).
pub fn embed(
    model: &Path,
    data: &str,
    range: (usize, Option<usize>),
    out: &Path,
    labels_out: Option<&Path>,
) -> Result<bool> {
    let start = Instant::now();
    let file = ModelFile::load(model)?;
    let p = file.header.preprocess;
    let net = Classifier::new(file)?;
    let src = ImageSource::open(data)?;
    let (offset, limit) = range;
    if offset >= src.len() {
        return Err(Error::invalid("embed", format!("offset {offset}: the source has {} images", src.len())));
    }
    let n = limit.unwrap_or(src.len()).min(src.len() - offset);
    // In parallel over the images (index order: the same file for any thread count).
    let embeddings = map_items(n, &|i| Ok(net.embeddings(src.preprocessed(offset + i, &p)?)?.into_data()))?;
    let dim = embeddings.first().map_or(0, Vec::len);
    let feats: Vec<u8> = embeddings.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Vec<u8> =
        (offset..offset + n).flat_map(|i| src.label(i).map_or(-1, |l| l as i32).to_le_bytes()).collect();
    write_npy(out, "<f4", &[n, dim], &feats)?;
    report_written(out, &format!(", {n} x {dim} features"), start);
    if let Some(path) = labels_out {
        write_npy(path, "<i4", &[n], &labels)?;
        report_written(path, &format!(", {n} labels"), start);
    }
    Ok(true)
}
