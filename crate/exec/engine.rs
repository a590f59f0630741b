//! Backend selection: one [`Engine`] runs a [`Classifier`] on the CPU or on the GPU, with the
//! same numbers either way.
//!
//! - `cpu`: the CPU kernels (int8 or f32, as the model file says): wasm SIMD in the browser,
//!   the portable reference natively, with the same bits.
//! - `gpu`: the int8 network's WGSL plan ([`crate::exec::gpu_plan`]); an error when no adapter
//!   exists, the model is f32, or the startup self-test fails.
//! - `auto`: the GPU when an adapter exists, the self-test passes and the GPU was faster than
//!   the CPU on the self-test input, else the CPU; the [`BackendReport`] says which and why.
//!   (A CPU-emulated adapter such as SwiftShader or lavapipe is about 30x slower than the
//!   wasm SIMD CPU path on EfficientNet-Lite0, and timing both is what tells them apart.)
//!
//! Startup self-test: a fixed pseudo-random input runs through the CPU and through the GPU
//! plan in each dot-product variant the device compiles; a variant is usable only if its pool
//! sums give an embedding bit-identical to the CPU's. Among usable variants the faster on that
//! run is kept (the measured check): `dot4I8Packed` where it both exists and wins.
//!
//! A lost device (or any GPU error mid-run) rebuilds the context and plan once from the
//! model, which stays in memory on the CPU side; if that fails, `auto` carries on with the
//! CPU and `gpu` reports the error.
//!
//! Whatever runs the network ([`Backend`]), the head runs here, once, on the CPU, from the
//! embedding ([`Classifier::head_logits`]): one implementation for every backend.

use super::backend::{Backend, GpuBackend};
use crate::base::clock::now_ms;
use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::cpu_int8::PreparedI8;
use crate::exec::gpu_plan::GpuNetwork;
use crate::exec::Classifier;
use crate::gpu::context::GpuContext;
use crate::gpu::gemm::DotVariant;

/// Which backend the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "gpu" | "webgpu" => Ok(BackendChoice::Gpu),
            _ => Err(Error::invalid("backend", format!("'{s}': expected auto, cpu or gpu"))),
        }
    }
}

/// What runs, for logs, the CLI and the page.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackendReport {
    /// "gpu" or "cpu".
    pub backend: &'static str,
    /// The model's precision: "int8" or "f32".
    pub precision: &'static str,
    /// GPU: the adapter ([`crate::gpu::AdapterReport::describe`]); CPU: [`cpu_kernels`].
    pub device: String,
    /// GPU: "dot4I8Packed" or "unpacked".
    pub variant: Option<&'static str>,
    /// Why this backend and variant (self-test and measured times, or why not the GPU).
    pub reason: String,
}

impl BackendReport {
    /// One line, e.g. `gpu int8 (dot4I8Packed) on llvmpipe (vulkan, cpu), ...: <reason>`.
    pub fn describe(&self) -> String {
        let variant = self.variant.map(|v| format!(" ({v})")).unwrap_or_default();
        format!("{} {}{variant} on {}: {}", self.backend, self.precision, self.device, self.reason)
    }
}

/// A classifier with its backend.
pub struct Engine {
    pub classifier: Classifier,
    choice: BackendChoice,
    backend: Backend,
    report: BackendReport,
}

/// What runs on the CPU: the hand-written SIMD kernels in the shipped wasm; natively, the
/// AVX2 kernels where an x86-64 CPU has AVX2 (`crate::ops::gemm_x86`, `depthwise_x86`,
/// `gemm_f32_x86`, `requant_x86`), the NEON kernels on aarch64 (`gemm_neon`,
/// `depthwise_neon`, `gemm_f32_neon`), and the portable reference kernels (bit-identical to
/// all of them) for the rest.
pub fn cpu_kernels() -> &'static str {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return "wasm SIMD kernels";
    #[cfg(target_arch = "x86_64")]
    if crate::ops::gemm::native_simd() {
        return "AVX2 kernels (int8 GEMM and depthwise with fused requantization, f32 GEMM), portable reference for the rest";
    }
    #[cfg(target_arch = "aarch64")]
    if crate::ops::gemm::native_simd() {
        return "NEON kernels (int8 GEMM and depthwise, f32 GEMM), portable reference for the rest";
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    "portable reference kernels"
}

/// The self-test input: a fixed pseudo-random image in [-1, 1], `[1, H, W, C]`.
fn self_test_input(model: &PreparedI8) -> Result<Tensor> {
    let [h, w, c] = model.graph.input;
    let mut rng = crate::base::rng::Rng::new(0x5e1f_7e57);
    Tensor::new(vec![1, h, w, c], (0..h * w * c).map(|_| rng.uniform(-1.0, 1.0)).collect())
}

impl Engine {
    /// Prepares `classifier` on the chosen backend (see the module docs for `auto`).
    pub async fn new(classifier: Classifier, choice: BackendChoice) -> Result<Engine> {
        let precision = classifier.precision();
        let cpu_report = |reason: String| BackendReport {
            backend: "cpu",
            precision,
            device: cpu_kernels().into(),
            variant: None,
            reason,
        };
        if choice == BackendChoice::Cpu {
            let report = cpu_report("asked for".into());
            return Ok(Engine { classifier, choice, backend: Backend::Cpu, report });
        }
        match Self::start_gpu(&classifier).await {
            // `auto` keeps the GPU only if it beat the CPU on the self-test input: a
            // CPU-emulated adapter (SwiftShader, lavapipe) or a weak GPU loses to the SIMD
            // CPU kernels, and the user should get the faster path.
            Ok((_, report, gpu_ms, cpu_ms)) if choice == BackendChoice::Auto && cpu_ms < gpu_ms => {
                let why = format!(
                    "the CPU was faster in the self-test ({cpu_ms:.1} ms against {gpu_ms:.1} ms for the GPU on {})",
                    report.device
                );
                Ok(Engine { classifier, choice, backend: Backend::Cpu, report: cpu_report(why) })
            }
            Ok((gpu, mut report, _, cpu_ms)) => {
                if choice == BackendChoice::Auto {
                    report.reason = format!("{}; faster than the CPU ({cpu_ms:.1} ms)", report.reason);
                }
                Ok(Engine { classifier, choice, backend: Backend::Gpu(Box::new(gpu)), report })
            }
            Err(e) if choice == BackendChoice::Auto => {
                let report = cpu_report(format!("no usable GPU ({e})"));
                Ok(Engine { classifier, choice, backend: Backend::Cpu, report })
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a device, self-tests each variant against the CPU and keeps the fastest
    /// bit-exact one; also returns its time and the CPU's on the same input (ms).
    async fn start_gpu(classifier: &Classifier) -> Result<(GpuBackend, BackendReport, f64, f64)> {
        let model = classifier
            .int8()
            .ok_or_else(|| Error::unsupported("an f32 model on the GPU (the GPU backend runs int8 models)"))?;
        let ctx = GpuContext::new().await?;
        let input = self_test_input(model)?;
        let want = model.embeddings(&input)?;
        // The CPU's time on the same input, warm (the run above allocated and warmed caches).
        let start = now_ms();
        model.embeddings(&input)?;
        let cpu_ms = now_ms() - start;
        let x = model.quantize_input(&input)?;
        let mut variants = vec![DotVariant::Unpacked];
        if ctx.report.packed_int8_dot {
            variants.insert(0, DotVariant::Packed);
        }
        let mut best: Option<(GpuNetwork, f64)> = None;
        let mut notes = vec![];
        for v in variants {
            let net = match GpuNetwork::new(&ctx, model, v, 1).await {
                Ok(net) => net,
                Err(e) => {
                    notes.push(format!("{}: {e}", v.name()));
                    continue;
                }
            };
            // The first run warms up (pipelines compile on first use); the faster of the next
            // two is the variant's time. Every run must equal the CPU's embedding.
            let mut ms = f64::INFINITY;
            let mut exact = true;
            for run in 0..3 {
                let start = now_ms();
                let got = net.embeddings(&ctx, model, &x).await?;
                if run > 0 {
                    ms = ms.min(now_ms() - start);
                }
                exact &= got.data() == want.data();
            }
            if !exact {
                notes.push(format!("{}: self-test embedding differs from the CPU's", v.name()));
                continue;
            }
            notes.push(format!("{} {ms:.1} ms", v.name()));
            if best.as_ref().is_none_or(|(_, t)| ms < *t) {
                best = Some((net, ms));
            }
        }
        let Some((net, gpu_ms)) = best else {
            return Err(Error::Gpu(format!("GPU self-test failed on {}: {}", ctx.report.describe(), notes.join("; "))));
        };
        let why = if ctx.report.packed_int8_dot {
            "faster bit-exact variant in the self-test"
        } else {
            "no packed_4x8_integer_dot_product; self-test bit-exact"
        };
        let report = BackendReport {
            backend: "gpu",
            precision: "int8",
            device: ctx.report.describe(),
            variant: Some(net.variant.name()),
            reason: format!("{why} ({})", notes.join(", ")),
        };
        Ok((GpuBackend { ctx, plan: net }, report, gpu_ms, cpu_ms))
    }

    /// What runs and why.
    pub fn report(&self) -> &BackendReport {
        &self.report
    }

    /// The GPU context and plan, when the GPU runs (benchmarks).
    pub fn gpu(&self) -> Option<(&GpuContext, &GpuNetwork)> {
        match &self.backend {
            Backend::Gpu(g) => Some((&g.ctx, &g.plan)),
            Backend::Cpu => None,
        }
    }

    /// Embeddings `[N, D]` of a preprocessed NHWC batch, on the backend in use (after a GPU
    /// error: on the rebuilt GPU, or the CPU under `auto`).
    pub async fn embeddings(&mut self, input: Tensor) -> Result<Tensor> {
        crate::exec::check_finite(&input)?;
        match self.backend.embeddings(&self.classifier, &input).await {
            Ok(e) => Ok(e),
            Err(e) => {
                self.recover(e).await?;
                self.backend.embeddings(&self.classifier, &input).await
            }
        }
    }

    /// Logits `[N, classes]` of a preprocessed NHWC batch.
    pub async fn logits(&mut self, input: Tensor) -> Result<Tensor> {
        Ok(self.embeddings_and_logits(input).await?.1)
    }

    /// Embeddings `[N, D]` and logits `[N, classes]` of one pass: what a live view needs to
    /// show the model's classes and feed the user's own head. The head runs here, on the CPU,
    /// for every backend.
    pub async fn embeddings_and_logits(&mut self, input: Tensor) -> Result<(Tensor, Tensor)> {
        let e = self.embeddings(input).await?;
        let logits = self.classifier.head_logits(e.clone())?;
        Ok((e, logits))
    }

    /// After a GPU error: rebuild once (a lost device gets a new one); else fall back to the
    /// CPU under `auto`, or give the error under `gpu`. Shape errors are the caller's and
    /// pass through unchanged.
    async fn recover(&mut self, error: Error) -> Result<()> {
        if !matches!(error, Error::Gpu(_)) {
            return Err(error);
        }
        crate::base::log::log(&format!("edgetune: GPU error ({error}); rebuilding the GPU backend"));
        self.backend = Backend::Cpu;
        match Self::start_gpu(&self.classifier).await {
            Ok((gpu, mut report, ..)) => {
                report.reason = format!("rebuilt after: {error}; {}", report.reason);
                self.backend = Backend::Gpu(Box::new(gpu));
                self.report = report;
                Ok(())
            }
            Err(e2) if self.choice == BackendChoice::Auto => {
                self.report = BackendReport {
                    backend: "cpu",
                    precision: self.classifier.precision(),
                    device: cpu_kernels().into(),
                    variant: None,
                    reason: format!("fell back from the GPU: {error}; rebuilding failed: {e2}"),
                };
                Ok(())
            }
            Err(e2) => Err(Error::Gpu(format!("{error}; rebuilding the GPU backend failed: {e2}"))),
        }
    }

    /// Destroys the GPU device as a driver reset would (tests of the recovery path).
    pub fn lose_gpu_device(&self) {
        if let Backend::Gpu(g) = &self.backend {
            g.ctx.destroy();
        }
    }
}
