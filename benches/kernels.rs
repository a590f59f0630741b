//! Kernel benchmarks at MobileNet / EfficientNet-Lite0 shapes (224x224 input), int8 and f32.
//! int8 convolutions run as a prepared model runs them: weights laid out for their kernel
//! and the requantization computed once, outside the timed call.
//!
//! f32 convolutions and the dense layer run on weights packed once, as a prepared f32 model
//! runs them. One thread (the pool is set to 1): per-core figures.
//!
//! `cargo bench --bench kernels` runs criterion (throughput in elements = multiply-accumulates,
//! so criterion's "Melem/s" reads as MMAC/s), then prints a GMAC/s table from its own
//! median timing, each kernel next to the measured ceiling of its own instruction mix on this
//! core ("of peak"), and writes it to `bench/kernels-native.json`. The ceilings: int8,
//! 16-bit multiply-add pairs into i32 (`vpmaddwd` + `vpaddd` on 256 bits where the AVX2
//! kernels run, else SSE2's 128-bit forms); f32, a rounded multiply then a rounded add
//! (`vmulps` + `vaddps`, the bit-exact kernels never use FMA), 256 bits where AVX2 runs.
//! No loads in either ceiling: a kernel at 100% would be compute-bound with free memory.
//! No assertions: figures only.
//! Under `cargo test --benches` each kernel runs once as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use edgetune::ops::conv::{
    conv2d_f32_prepared, conv2d_i8_requant, prepare_conv_weights, prepare_conv_weights_f32, Conv2dParams,
};
use edgetune::ops::gemm::{dense_i8, matmul_f32_packed, BLayout, PackedF32B};
use edgetune::ops::Padding;
use edgetune::quant::{Activation, OutputQuant, QParams, Requant};
use edgetune::{QTensor, Tensor};

/// Deterministic pseudo-random bytes (no RNG dependency needed for benchmarks).
fn bytes(n: usize, seed: u32) -> Vec<i8> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as u8 as i8
        })
        .collect()
}

fn floats(n: usize, seed: u32) -> Vec<f32> {
    bytes(n, seed).into_iter().map(|b| b as f32 / 128.0).collect()
}

struct Case {
    name: &'static str,
    /// input [N, H, W, C]
    x: [usize; 4],
    /// weights [Cout, KH, KW, Cin/groups]
    w: [usize; 4],
    stride: usize,
    groups: usize,
}

impl Case {
    fn params(&self) -> Conv2dParams {
        Conv2dParams { stride: [self.stride; 2], dilation: [1, 1], padding: Padding::SameUpper, groups: self.groups }
    }
    fn macs(&self) -> u64 {
        let oh = self.x[1].div_ceil(self.stride);
        let ow = self.x[2].div_ceil(self.stride);
        (self.x[0] * oh * ow * self.w[0] * self.w[1] * self.w[2] * self.w[3]) as u64
    }
}

const CONVS: &[Case] = &[
    Case { name: "stem 3x3 s2 224x224x3->32", x: [1, 224, 224, 3], w: [32, 3, 3, 3], stride: 2, groups: 1 },
    Case { name: "depthwise 3x3 s1 112x112x32", x: [1, 112, 112, 32], w: [32, 3, 3, 1], stride: 1, groups: 32 },
    Case { name: "depthwise 3x3 s2 112x112x96", x: [1, 112, 112, 96], w: [96, 3, 3, 1], stride: 2, groups: 96 },
    Case { name: "depthwise 5x5 s1 14x14x480", x: [1, 14, 14, 480], w: [480, 5, 5, 1], stride: 1, groups: 480 },
    Case { name: "pw 56x56 24->144", x: [1, 56, 56, 24], w: [144, 1, 1, 24], stride: 1, groups: 1 },
    Case { name: "pw 28x28 240->40", x: [1, 28, 28, 240], w: [40, 1, 1, 240], stride: 1, groups: 1 },
    Case { name: "pw 14x14 80->480", x: [1, 14, 14, 80], w: [480, 1, 1, 80], stride: 1, groups: 1 },
    Case { name: "pw head 7x7 320->1280", x: [1, 7, 7, 320], w: [1280, 1, 1, 320], stride: 1, groups: 1 },
];

/// The classifier: [1, 1280] x [1000, 1280]^T.
const DENSE: (usize, usize, usize) = (1, 1280, 1000);

struct Prepared {
    name: String,
    dtype: &'static str,
    macs: u64,
    run: Box<dyn Fn()>,
}

fn prepare() -> Vec<Prepared> {
    let mut v = vec![];
    let out = OutputQuant::new(0.05, -3, Activation::Relu6).expect("valid output quant");
    for (i, c) in CONVS.iter().enumerate() {
        let nx: usize = c.x.iter().product();
        let nw: usize = c.w.iter().product();
        let p = c.params();
        let xq = QTensor::from_i8(c.x.to_vec(), bytes(nx, i as u32 + 1), QParams::per_tensor(0.02, 5).expect("qp"))
            .expect("x");
        let wq = QTensor::from_i8(
            c.w.to_vec(),
            bytes(nw, i as u32 + 100).into_iter().map(|b| b.max(-127)).collect(),
            QParams::per_axis(0, vec![0.003; c.w[0]], vec![0; c.w[0]]).expect("qp"),
        )
        .expect("w");
        let bias: Vec<i32> = (0..c.w[0] as i32).map(|j| j * 31 - 500).collect();
        let b2 = bias.clone();
        // What a prepared model holds: weights laid out for their kernel, the requantization.
        let weights = prepare_conv_weights(&wq, &p).expect("prepare");
        let rq = Requant::new("bench", 0.02, wq.params().scales(), &out).expect("rq");
        v.push(Prepared {
            name: c.name.to_string(),
            dtype: "int8",
            macs: c.macs(),
            run: Box::new(move || {
                black_box(conv2d_i8_requant(&xq, &wq, weights.as_ref(), Some(&b2), &p, &rq).expect("conv"));
            }),
        });
        let xf = Tensor::new(c.x.to_vec(), floats(nx, i as u32 + 1)).expect("x");
        let wf = Tensor::new(c.w.to_vec(), floats(nw, i as u32 + 100)).expect("w");
        let bf: Vec<f32> = bias.iter().map(|&b| b as f32 * 1e-3).collect();
        let packed = prepare_conv_weights_f32(&wf, &p).expect("prepare f32");
        v.push(Prepared {
            name: c.name.to_string(),
            dtype: "f32",
            macs: c.macs(),
            run: Box::new(move || {
                black_box(
                    conv2d_f32_prepared(&xf, &wf, packed.as_ref(), Some(&bf), &p, Activation::None).expect("conv"),
                );
            }),
        });
    }
    let (m, k, n) = DENSE;
    let name = format!("dense {m}x{k} -> {n}");
    let (xa, wa) = (bytes(m * k, 7), bytes(n * k, 8).into_iter().map(|b| b.max(-127)).collect::<Vec<_>>());
    let rq = Requant::new("bench", 0.02, &vec![0.003; n], &OutputQuant::new(0.1, 0, Activation::None).expect("oq"))
        .expect("rq");
    v.push(Prepared {
        name: name.clone(),
        dtype: "int8",
        macs: (m * k * n) as u64,
        run: Box::new(move || {
            black_box(dense_i8(&xa, 5, &wa, &[0], None, &rq, m, k, n).expect("dense"));
        }),
    });
    let xf = floats(m * k, 7);
    let wf = PackedF32B::new(&floats(n * k, 8), k, n, BLayout::NK).expect("pack");
    v.push(Prepared {
        name,
        dtype: "f32",
        macs: (m * k * n) as u64,
        run: Box::new(move || {
            black_box(matmul_f32_packed(&xf, m, &wf, None, Activation::None).expect("dense"));
        }),
    });
    v
}

/// Median seconds per run: warm-up, then up to 50 runs or about one second.
fn median_time(f: &dyn Fn()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let mut t = vec![];
    let start = Instant::now();
    while t.len() < 50 && (t.len() < 5 || start.elapsed() < Duration::from_secs(1)) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// Best of three timings of `run`, as operations per second for `ops` operations.
fn best_rate(ops: f64, run: &dyn Fn()) -> f64 {
    run();
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    ops / best
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref() != Some("portable") && is_x86_feature_detected!("avx2")
}

/// Rounds of the ceiling loops (each ~0.1 s).
#[cfg(target_arch = "x86_64")]
const ROUNDS: u32 = 10_000_000;

/// The int8 kernels' instruction mix at full rate: twelve independent chains of
/// `v = madd(v, w) + w` (enough to hide `pmaddwd`'s latency), no memory traffic.
/// MAC/s and the instructions' name, or `None` off x86-64.
fn int8_madd_peak() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx2")]
        unsafe fn wide(rounds: u32) {
            let w = _mm256_set1_epi32(black_box(0x0003_0001));
            let mut a: [__m256i; 12] = core::array::from_fn(|k| _mm256_set1_epi32(black_box(5 + k as i32)));
            for _ in 0..rounds {
                for v in a.iter_mut() {
                    *v = _mm256_add_epi32(_mm256_madd_epi16(*v, w), w);
                }
            }
            black_box(a);
        }
        fn narrow(rounds: u32) {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                let w = _mm_set1_epi32(black_box(0x0003_0001));
                let mut a: [__m128i; 12] = core::array::from_fn(|k| _mm_set1_epi32(black_box(5 + k as i32)));
                for _ in 0..rounds {
                    for v in a.iter_mut() {
                        *v = _mm_add_epi32(_mm_madd_epi16(*v, w), w);
                    }
                }
                black_box(a);
            }
        }
        if avx2() {
            // SAFETY: AVX2 is present.
            Some((
                best_rate(12.0 * 16.0 * ROUNDS as f64, &|| unsafe { wide(black_box(ROUNDS)) }),
                "AVX2 vpmaddwd + vpaddd",
            ))
        } else {
            Some((best_rate(12.0 * 8.0 * ROUNDS as f64, &|| narrow(black_box(ROUNDS))), "SSE2 pmaddwd + paddd"))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The f32 kernels' instruction mix at full rate: fourteen independent chains of
/// `v = v * w + w` as a rounded multiply then a rounded add (14 chains of 2 dependent
/// operations fill two multiply and two add pipes at 3-4 cycles' latency), no memory
/// traffic. MAC/s and the instructions' name, or `None` off x86-64.
fn f32_mul_add_peak() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx2")]
        unsafe fn wide(rounds: u32) {
            let w = _mm256_set1_ps(black_box(0.5));
            let mut a: [__m256; 14] = core::array::from_fn(|k| _mm256_set1_ps(black_box(k as f32)));
            for _ in 0..rounds {
                for v in a.iter_mut() {
                    *v = _mm256_add_ps(_mm256_mul_ps(*v, w), w);
                }
            }
            black_box(a);
        }
        fn narrow(rounds: u32) {
            // SAFETY: SSE is part of the x86-64 baseline.
            unsafe {
                let w = _mm_set1_ps(black_box(0.5));
                let mut a: [__m128; 14] = core::array::from_fn(|k| _mm_set1_ps(black_box(k as f32)));
                for _ in 0..rounds {
                    for v in a.iter_mut() {
                        *v = _mm_add_ps(_mm_mul_ps(*v, w), w);
                    }
                }
                black_box(a);
            }
        }
        if avx2() {
            // SAFETY: AVX2 is present.
            Some((best_rate(14.0 * 8.0 * ROUNDS as f64, &|| unsafe { wide(black_box(ROUNDS)) }), "AVX vmulps + vaddps"))
        } else {
            Some((best_rate(14.0 * 4.0 * ROUNDS as f64, &|| narrow(black_box(ROUNDS))), "SSE mulps + addps"))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs
    // each benchmark once as a test), and then no timing table is made.
    let test_mode = !std::env::args().any(|a| a == "--bench");
    edgetune::base::pool::set_threads(1);
    let cases = prepare();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    {
        let mut g = c.benchmark_group("kernels");
        g.sample_size(10);
        for p in &cases {
            g.throughput(Throughput::Elements(p.macs));
            g.bench_function(format!("{} {}", p.dtype, p.name), |b| b.iter(|| (p.run)()));
        }
        g.finish();
    }
    c.final_summary();
    if test_mode {
        return;
    }
    let peaks = [("int8", int8_madd_peak()), ("f32", f32_mul_add_peak())];
    for (dtype, peak) in &peaks {
        if let Some((p, what)) = peak {
            println!("{dtype} ceiling ({what}, no loads, one core): {:.1} GMAC/s", p / 1e9);
        }
    }
    let peak_of = |dtype: &str| peaks.iter().find(|(d, _)| *d == dtype).and_then(|(_, p)| p.map(|(v, _)| v));
    println!("\n{:<32} {:>5} {:>12} {:>10} {:>9} {:>8}", "kernel", "dtype", "MACs", "median ms", "GMAC/s", "of peak");
    let mut rows = vec![];
    for p in &cases {
        let s = median_time(&*p.run);
        let gmacs = p.macs as f64 / s / 1e9;
        let of_peak = peak_of(p.dtype).map(|pk| gmacs * 1e9 / pk);
        let shown = of_peak.map_or("-".to_string(), |f| format!("{:.0}%", 100.0 * f));
        println!("{:<32} {:>5} {:>12} {:>10.3} {:>9.2} {:>8}", p.name, p.dtype, p.macs, s * 1e3, gmacs, shown);
        rows.push(format!(
            "    {{\"kernel\": \"{}\", \"dtype\": \"{}\", \"macs\": {}, \"median_ms\": {:.4}, \"gmac_per_s\": {:.3}, \"of_peak\": {}}}",
            p.name,
            p.dtype,
            p.macs,
            s * 1e3,
            gmacs,
            of_peak.map_or("null".to_string(), |f| format!("{f:.3}"))
        ));
    }
    let json = format!(
        "{{\n  \"machine\": \"{}\",\n  \"threads\": 1,\n  \"command\": \"cargo bench --bench kernels\",\n  \"int8_peak_gmac_per_s\": {},\n  \"f32_peak_gmac_per_s\": {},\n  \"results\": [\n{}\n  ]\n}}\n",
        cpu_model(),
        peak_of("int8").map_or("null".to_string(), |p| format!("{:.3}", p / 1e9)),
        peak_of("f32").map_or("null".to_string(), |p| format!("{:.3}", p / 1e9)),
        rows.join(",\n")
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join("kernels-native.json"), json)).is_ok() {
        println!("\nwrote bench/kernels-native.json");
    }
}
