//! `edgetune bench`: speed figures printed and written as JSON, never asserted.
//!
//! `--backend gpu`: GEMM throughput of the int8 kernels (each dot-product variant the device
//! compiles) and of the f32 WGSL GEMM on the same shapes; per-layer GPU times of the model's
//! plan (timestamp queries where granted, else one submit-and-wait per layer); whole-network
//! latency (upload, all layers, readback, head) median and p90.
//! `--backend cpu`: whole-network latency of the model on the CPU reference kernels.

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgetune::data::images::load_preprocessed;
use edgetune::exec::engine::{BackendChoice, Engine};
use edgetune::exec::Classifier;
use edgetune::gpu::context::GpuContext;
use edgetune::gpu::conv::ConvI8;
use edgetune::gpu::gemm::{DotVariant, GemmLayer};
use edgetune::gpu::gemm_f32::GemmF32;
use edgetune::gpu::kernel::{block_on, bytes, pack_rows, storage_init, Dispatch, RequantKind};
use edgetune::quant::Requant;
use edgetune::{Error, Result, Tensor};
use serde_json::{json, Value};

pub struct BenchArgs<'a> {
    pub backend: &'a str,
    pub model: &'a Path,
    pub image: Option<&'a Path>,
    pub runs: usize,
    pub json: Option<&'a Path>,
}

/// Median and 90th percentile of `v` (sorted in place).
fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    (at(0.5), at(0.9))
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Wall time of one submit of `dispatches`, waited for, in ms.
fn time_submit(ctx: &GpuContext, dispatches: &[&Dispatch]) -> Result<f64> {
    let start = Instant::now();
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench") });
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bench"), timestamp_writes: None });
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    ctx.queue.submit(Some(enc.finish()));
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Median ms of `runs` timed submits after one warm-up.
fn median_submit(ctx: &GpuContext, d: &Dispatch, runs: usize) -> Result<f64> {
    time_submit(ctx, &[d])?;
    let mut t = (0..runs).map(|_| time_submit(ctx, &[d])).collect::<Result<Vec<f64>>>()?;
    Ok(median_p90(&mut t).0)
}

/// The input image: `--image`, else the shared parrot photo, else a fixed pattern.
fn bench_input(c: &Classifier, image: Option<&Path>) -> Result<(Tensor, String)> {
    let parrot = PathBuf::from("../shared/data/photos/parrot.jpg");
    let path = image.map(Path::to_path_buf).or_else(|| parrot.exists().then_some(parrot));
    match path {
        Some(p) => Ok((load_preprocessed(&p, &c.file.header.preprocess)?, p.display().to_string())),
        None => {
            let [h, w, ch] = c.file.header.graph.input;
            Ok((
                Tensor::new(vec![1, h, w, ch], (0..h * w * ch).map(|i| ((i % 255) as f32 - 127.0) / 128.0).collect())?,
                "pattern".into(),
            ))
        }
    }
}

fn gemm_figures(ctx: &GpuContext, runs: usize) -> Result<Vec<Value>> {
    let mut rows = vec![];
    let mut variants = vec![DotVariant::Unpacked];
    if ctx.report.packed_int8_dot {
        variants.insert(0, DotVariant::Packed);
    }
    let convs = variants
        .iter()
        .map(|&v| block_on(ConvI8::new(ctx, v, RequantKind::Float, false)))
        .collect::<Result<Vec<_>>>()?;
    let f32_gemm = block_on(GemmF32::new(ctx))?;
    for (m, k, n) in [(1024usize, 1024usize, 1024usize), (3136, 256, 256)] {
        let a: Vec<i8> = (0..m * k).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as i8).collect();
        let b: Vec<i8> = (0..n * k).map(|i| ((i.wrapping_mul(40_503) >> 5) as i8).max(-127)).collect();
        let rq =
            Requant { multipliers: vec![1e-4; n], zero_point: 0, lo: -128, hi: 127, fixed: None, shift_half_up: false };
        let layer = GemmLayer { weights: &b, weight_zero_points: None, bias: None, requant: &rq };
        let input = storage_init(ctx, "bench a", &bytes(&pack_rows(&a, m, k)));
        let ops = 2.0 * (m * k * n) as f64;
        let mut add = |kernel: String, ms: f64| {
            println!("  gemm {m}x{k}x{n} {kernel:<22} {ms:>9.2} ms {:>8.1} GOPS", ops / ms / 1e6);
            rows.push(json!({"m": m, "k": k, "n": n, "kernel": kernel, "ms": ms, "gops": ops / ms / 1e6}));
        };
        for conv in &convs {
            let d = conv.gemm.dispatch(ctx, "bench gemm", (&input, 3), &layer, (m, k, n))?;
            add(format!("int8 {}", conv.gemm.variant.name()), median_submit(ctx, &d, runs)?);
        }
        let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let d = f32_gemm.dispatch(ctx, &af, &bf, &vec![0.0; n], (m, k, n))?;
        add("f32".into(), median_submit(ctx, &d, runs)?);
    }
    Ok(rows)
}

pub fn run(args: &BenchArgs) -> Result<bool> {
    let choice: BackendChoice = args.backend.parse()?;
    let runs = args.runs.max(1);
    let mut engine = block_on(Engine::new(Classifier::load(args.model)?, choice))?;
    let report = engine.report().clone();
    println!("edgetune bench: {} ({})", args.model.display(), report.describe());
    println!(
        "machine: {} ({} threads available)",
        cpu_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let (x, input_name) = bench_input(&engine.classifier, args.image)?;
    let mut doc = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "model": args.model.display().to_string(),
        "input": input_name,
        "machine": {"cpu": cpu_name(), "os": std::env::consts::OS},
        "backend": report,
    });
    if let Some((ctx, net)) = engine.gpu() {
        println!("GEMM throughput (median of {runs}, wall time of submit + wait):");
        doc["gemm"] = json!(gemm_figures(ctx, runs)?);
        net.upload(
            ctx,
            &engine.classifier.int8().ok_or_else(|| Error::Gpu("no int8 model".into()))?.quantize_input(&x)?,
        )?;
        let (times, how) = match block_on(net.layer_times_ms(ctx))? {
            Some(_) => {
                let mut all = vec![];
                for _ in 0..runs {
                    all.push(block_on(net.layer_times_ms(ctx))?.unwrap_or_default());
                }
                let per: Vec<f64> = (0..net.layers.len())
                    .map(|i| median_p90(&mut all.iter().map(|r| r[i]).collect::<Vec<_>>()).0)
                    .collect();
                (per, "timestamp queries, one pass per layer")
            }
            None => {
                let per = net.dispatches().iter().map(|d| median_submit(ctx, d, runs)).collect::<Result<Vec<_>>>()?;
                (per, "wall time of one submit + wait per layer")
            }
        };
        println!("per-layer GPU time ({how}, median of {runs}):");
        let mut layers = vec![];
        for (l, ms) in net.layers.iter().zip(&times) {
            println!("  {:<28} {:<10} {:>8.3} ms {:>7.2} GMAC/s", l.name, l.kind, ms, l.macs as f64 / ms / 1e6);
            layers.push(json!({"name": l.name, "kind": l.kind, "macs": l.macs, "ms": ms}));
        }
        let total: f64 = times.iter().sum();
        let by_kind = |k: &str| net.layers.iter().zip(&times).filter(|(l, _)| l.kind == k).map(|(_, t)| t).sum::<f64>();
        println!(
            "  sum {total:.2} ms: gemm {:.2}, conv {:.2}, depthwise {:.2}, add {:.2}, pool {:.2}",
            by_kind("gemm"),
            by_kind("conv"),
            by_kind("depthwise"),
            by_kind("add"),
            by_kind("global_sum")
        );
        doc["layers"] =
            json!({"timing": how, "layers": layers, "sum_ms": total, "macs_per_image": net.macs_per_image()});
    }
    if engine.gpu().is_none() {
        cpu_profile(&engine.classifier, &x, runs, &mut doc)?;
    }
    // Whole network: what a caller of classify sees (GPU: upload, layers, readback, head).
    for _ in 0..3 {
        block_on(engine.logits(x.clone()))?;
    }
    let mut t = vec![];
    for _ in 0..runs {
        let s = Instant::now();
        block_on(engine.logits(x.clone()))?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let (median, p90) = median_p90(&mut t);
    println!(
        "whole network ({} {}, batch 1, {runs} runs after 3 warm-up): median {median:.2} ms, p90 {p90:.2} ms",
        report.backend, report.precision
    );
    // Every run's time too, so that a caller can pool runs taken in several rounds.
    doc["network"] = json!({"runs": runs, "median_ms": median, "p90_ms": p90, "times_ms": t});
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::invalid("bench", e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        println!("wrote {}", path.display());
    }
    Ok(true)
}

/// Per-node CPU times (each node's median over `runs` profiled passes), summed by kind
/// (pointwise, depthwise, conv, add, pool, dense, ...), printed and put in `doc["layers"]`.
fn cpu_profile(c: &Classifier, x: &Tensor, runs: usize, doc: &mut Value) -> Result<()> {
    let passes = (0..runs.clamp(1, 20)).map(|_| c.profile(x)).collect::<Result<Vec<_>>>()?;
    let Some(first) = passes.first() else { return Ok(()) };
    let mut kinds: Vec<(&'static str, f64, u64)> = vec![];
    let mut layers = vec![];
    for (i, l) in first.iter().enumerate() {
        let mut t: Vec<f64> = passes.iter().filter_map(|p| p.get(i)).map(|p| p.ms).collect();
        let ms = median_p90(&mut t).0;
        match kinds.iter_mut().find(|k| k.0 == l.kind) {
            Some(k) => {
                k.1 += ms;
                k.2 += l.macs;
            }
            None => kinds.push((l.kind, ms, l.macs)),
        }
        layers.push(json!({"name": l.name, "kind": l.kind, "macs": l.macs, "ms": ms}));
    }
    let total: f64 = kinds.iter().map(|k| k.1).sum();
    println!(
        "per-node CPU time by kind (median of {} profiled passes, {} threads):",
        passes.len(),
        edgetune::base::pool::threads()
    );
    for (kind, ms, macs) in &kinds {
        let rate = if *macs > 0 { format!("{:>7.2} GMAC/s", *macs as f64 / ms / 1e6) } else { String::new() };
        println!("  {kind:<12} {ms:>8.3} ms {:>5.1}% {rate}", 100.0 * ms / total.max(1e-9));
    }
    println!("  sum          {total:>8.3} ms");
    doc["layers"] = json!({"timing": "CPU wall time per node", "layers": layers, "sum_ms": total});
    Ok(())
}
