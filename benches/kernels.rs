//! Kernel benchmarks at MobileNet / EfficientNet-Lite0 shapes (224x224 input), int8 and f32.
//! int8 convolutions run as a prepared model runs them: weights laid out for their kernel
//! and the requantization computed once, outside the timed call.
//!
//! f32 convolutions and the dense layer run on weights packed once, as a prepared f32 model
//! runs them, and their outputs go back to the buffer pool after each run as the float
//! executor's dead values do. One thread (the pool is set to 1): per-core figures.
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
use edgetune::ops::{recycle_f32, Padding};
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
                let y = conv2d_f32_prepared(&xf, &wf, packed.as_ref(), Some(&bf), &p, Activation::None).expect("conv");
                // Handed back as the float executor hands back dead values, so the next run
                // writes into it as the model's next layer would (no fresh zeroed memory).
                recycle_f32(black_box(y).into_data());
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
            recycle_f32(black_box(matmul_f32_packed(&xf, m, &wf, None, Activation::None).expect("dense")));
        }),
    });
    v
}

/// The measured ceiling of one dtype's instruction mix: `run(rounds)` spins that mix for
/// `rounds` rounds of `macs_per_round` multiply-accumulates, no memory traffic.
struct Ceiling {
    what: &'static str,
    macs_per_round: f64,
    run: Box<dyn Fn(u32)>,
}

impl Ceiling {
    /// MAC/s over one run of `rounds` rounds.
    fn rate(&self, rounds: u32) -> f64 {
        let t = Instant::now();
        (self.run)(black_box(rounds));
        self.macs_per_round * rounds as f64 / t.elapsed().as_secs_f64()
    }
}

/// A kernel timed in pairs with its ceiling: each kernel run right after a ceiling run of
/// about the same length, so that a machine whose speed drifts or stutters (a shared VM's
/// steal time, frequency changes) touches both alike. Warm-up, then up to 50 pairs or about
/// 1.5 seconds.
struct Timed {
    /// Median seconds per kernel run.
    seconds: f64,
    /// Median over the pairs of (kernel MAC/s) / (ceiling MAC/s).
    of_peak: Option<f64>,
    /// Median ceiling MAC/s over the pairs.
    ceiling: Option<f64>,
}

fn time_beside_ceiling(run: &dyn Fn(), macs: u64, ceiling: Option<&Ceiling>) -> Timed {
    let warm = Instant::now();
    for _ in 0..2 {
        run();
    }
    let kernel_s = warm.elapsed().as_secs_f64() / 2.0;
    // Ceiling rounds that last about as long as one kernel run.
    let rounds = ceiling.map_or(0, |c| {
        let rate = c.rate(100_000);
        ((kernel_s * rate / c.macs_per_round) as u32).clamp(1_000, 50_000_000)
    });
    let (mut times, mut ratios, mut ceilings) = (vec![], vec![], vec![]);
    let start = Instant::now();
    while times.len() < 50 && (times.len() < 5 || start.elapsed() < Duration::from_millis(1500)) {
        let c = ceiling.map(|c| c.rate(rounds));
        let s = Instant::now();
        run();
        let t = s.elapsed().as_secs_f64();
        times.push(t);
        if let Some(c) = c {
            ratios.push(macs as f64 / t / c);
            ceilings.push(c);
        }
    }
    let of_peak = (!ratios.is_empty()).then(|| median(&mut ratios));
    let ceiling = (!ceilings.is_empty()).then(|| median(&mut ceilings));
    Timed { seconds: median(&mut times), of_peak, ceiling }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref() != Some("portable") && is_x86_feature_detected!("avx2")
}

/// The int8 kernels' instruction mix at full rate: twelve independent chains of
/// `v = madd(v, w) + w` (enough to hide `pmaddwd`'s latency), or for the GEMM (`gemm`) of
/// `v = vpdpbusd(v, v, w)` where it runs its AVX-512 VNNI kernel, no memory traffic. `None`
/// off x86-64.
fn int8_madd_ceiling(gemm: bool) -> Option<Ceiling> {
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
        /// The VNNI kernel's mix: twelve independent chains of `v = vpdpbusd(v, v, w)`.
        #[target_feature(enable = "avx512f,avx512vnni")]
        unsafe fn vnni(rounds: u32) {
            let w = _mm512_set1_epi32(black_box(0x0103_0201));
            let mut a: [__m512i; 12] = core::array::from_fn(|k| _mm512_set1_epi32(black_box(5 + k as i32)));
            for _ in 0..rounds {
                for v in a.iter_mut() {
                    *v = _mm512_dpbusd_epi32(*v, *v, w);
                }
            }
            black_box(a);
        }
        if gemm && edgetune::ops::gemm::int8_gemm_kernel() == "avx512-vnni" {
            // SAFETY: AVX-512F and VNNI are present (the GEMM runs its VNNI kernel).
            return Some(Ceiling {
                what: "AVX-512 VNNI vpdpbusd",
                macs_per_round: 12.0 * 64.0,
                run: Box::new(|r| unsafe { vnni(r) }),
            });
        }
        Some(if avx2() {
            // SAFETY: AVX2 is present.
            Ceiling {
                what: "AVX2 vpmaddwd + vpaddd",
                macs_per_round: 12.0 * 16.0,
                run: Box::new(|r| unsafe { wide(r) }),
            }
        } else {
            Ceiling { what: "SSE2 pmaddwd + paddd", macs_per_round: 12.0 * 8.0, run: Box::new(narrow) }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The f32 kernels' instruction mix at full rate: fourteen independent chains of
/// `v = v * w + w` as a rounded multiply then a rounded add (14 chains of 2 dependent
/// operations fill two multiply and two add pipes at 3-4 cycles' latency), no memory
/// traffic. `None` off x86-64.
fn f32_mul_add_ceiling() -> Option<Ceiling> {
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
        Some(if avx2() {
            // SAFETY: AVX2 is present.
            Ceiling { what: "AVX vmulps + vaddps", macs_per_round: 14.0 * 8.0, run: Box::new(|r| unsafe { wide(r) }) }
        } else {
            Ceiling { what: "SSE mulps + addps", macs_per_round: 14.0 * 4.0, run: Box::new(narrow) }
        })
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
    // A filter argument (as criterion takes it) also picks the table's rows.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<&Prepared> = cases
        .iter()
        .filter(|p| filter.as_ref().is_none_or(|f| format!("{} {}", p.dtype, p.name).contains(f.as_str())))
        .collect();
    // Where the int8 GEMM runs its VNNI kernel, the depthwise kernels (AVX2 `vpmaddwd`) are
    // measured against their own mix's ceiling.
    let vnni = edgetune::ops::gemm::int8_gemm_kernel() == "avx512-vnni";
    let mut ceilings = vec![("int8", int8_madd_ceiling(true)), ("f32", f32_mul_add_ceiling())];
    if vnni {
        ceilings.push(("int8 depthwise", int8_madd_ceiling(false)));
    }
    let ceiling_key = |p: &Prepared| {
        if vnni && p.dtype == "int8" && p.name.starts_with("depthwise") {
            "int8 depthwise"
        } else {
            p.dtype
        }
    };
    let ceiling_of = |key: &str| ceilings.iter().find(|(d, _)| *d == key).and_then(|(_, c)| c.as_ref());
    println!("\nint8 GEMM kernel: {}", edgetune::ops::gemm::int8_gemm_kernel());
    println!("\n{:<32} {:>5} {:>12} {:>10} {:>9} {:>8}", "kernel", "dtype", "MACs", "median ms", "GMAC/s", "of peak");
    let (mut rows, mut seen) = (vec![], vec![]);
    for p in cases {
        let key = ceiling_key(p);
        let t = time_beside_ceiling(&*p.run, p.macs, ceiling_of(key));
        let gmacs = p.macs as f64 / t.seconds / 1e9;
        let shown = t.of_peak.map_or("-".to_string(), |f| format!("{:.0}%", 100.0 * f));
        println!("{:<32} {:>5} {:>12} {:>10.3} {:>9.2} {:>8}", p.name, p.dtype, p.macs, t.seconds * 1e3, gmacs, shown);
        if let Some(c) = t.ceiling {
            seen.push((key, c));
        }
        rows.push(format!(
            "    {{\"kernel\": \"{}\", \"dtype\": \"{}\", \"macs\": {}, \"median_ms\": {:.4}, \"gmac_per_s\": {:.3}, \"ceiling_gmac_per_s\": {}, \"of_peak\": {}}}",
            p.name,
            p.dtype,
            p.macs,
            t.seconds * 1e3,
            gmacs,
            t.ceiling.map_or("null".to_string(), |c| format!("{:.3}", c / 1e9)),
            t.of_peak.map_or("null".to_string(), |f| format!("{f:.3}"))
        ));
    }
    // The ceiling over the whole run: the median of the runs beside that dtype's kernels.
    let overall = |dtype: &str| {
        let mut v: Vec<f64> = seen.iter().filter(|(d, _)| *d == dtype).map(|&(_, c)| c).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    println!();
    for (dtype, c) in &ceilings {
        if let (Some(c), Some(rate)) = (c, overall(dtype)) {
            println!("{dtype} ceiling ({}, no loads, one core): {:.1} GMAC/s", c.what, rate / 1e9);
        }
    }
    println!("of peak: per kernel, the median over its runs of (kernel rate / rate of a ceiling run of the same length just before)");
    let json = format!(
        "{{\n  \"machine\": \"{}\",\n  \"int8_gemm_kernel\": \"{}\",\n  \"threads\": 1,\n  \"command\": \"cargo bench --bench kernels\",\n  \"of_peak\": \"median over the kernel's runs of its rate over the rate of a ceiling run of the same length just before\",\n  \"int8_peak_gmac_per_s\": {},\n  \"f32_peak_gmac_per_s\": {},\n  \"results\": [\n{}\n  ]\n}}\n",
        cpu_model(),
        edgetune::ops::gemm::int8_gemm_kernel(),
        overall("int8").map_or("null".to_string(), |p| format!("{:.3}", p / 1e9)),
        overall("f32").map_or("null".to_string(), |p| format!("{:.3}", p / 1e9)),
        rows.join(",\n")
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join("kernels-native.json"), json)).is_ok() {
        println!("\nwrote bench/kernels-native.json");
    }
}
