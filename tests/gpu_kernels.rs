//! The WGSL kernels against the CPU reference, bit-exact: the int8 GEMM (both dot-product
//! variants) against `requantize(gemm_i8_acc(...))`, the convolutions (pointwise through the
//! GEMM, one-group direct, depthwise; other grouped ones are refused) against `conv2d_i8`,
//! each also compiled with TFLite's fixed-point requantization (both tie roundings) against
//! `Requant::apply`, the global-pool sums against `global_sums_i8`, the residual add against
//! `add_i8` and the table add against TFLite's and onnxruntime's adds, over property-tested
//! shapes and quantization parameters. Runs on whatever adapter wgpu finds (lavapipe in CI);
//! with `EDGETUNE_REQUIRE_GPU=1` (set by `npm test`) a missing adapter fails instead of
//! skipping.

use std::sync::OnceLock;

use edgetune::exec::cpu_int8::global_sums_i8;
use edgetune::gpu::add::AddI8;
use edgetune::gpu::context::GpuContext;
use edgetune::gpu::conv::{ConvI8, ConvLayer};
use edgetune::gpu::gemm::{DotVariant, GemmLayer};
use edgetune::gpu::gemm_f32::GemmF32;
use edgetune::gpu::kernel::{block_on, pack_rows, unpack_rows, RequantKind};
use edgetune::gpu::pool::GlobalSumI8;
use edgetune::gpu::table::BinaryTableI8;
use edgetune::ops::add::add_i8;
use edgetune::ops::conv::{conv2d_i8, conv2d_i8_requant, Conv2dParams};
use edgetune::ops::gemm::{dense_f32, gemm_i8_acc};
use edgetune::ops::Padding;
use edgetune::quant::{requantize, Activation, AddRequant, OutputQuant, QParams, Requant};
use edgetune::QTensor;
use proptest::prelude::*;

struct Gpu {
    ctx: GpuContext,
    /// One per dot-product variant the device compiles (each holds its GEMM).
    convs: Vec<ConvI8>,
    /// Per dot-product variant, compiled to take asymmetric weights (zero points).
    convs_zp: Vec<ConvI8>,
    /// TFLite's fixed-point requantization, ties away from zero then up (unpacked dot,
    /// asymmetric weights taken).
    fixed: Vec<ConvI8>,
    add: AddI8,
    table: BinaryTableI8,
    sum: GlobalSumI8,
}

fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match block_on(GpuContext::new()) {
        Ok(ctx) => {
            let conv = |v: DotVariant, kind: RequantKind, zp: bool| {
                block_on(ConvI8::new(&ctx, v, kind, zp))
                    .unwrap_or_else(|e| panic!("{} kernels compile: {e}", kind.name()))
            };
            let mut variants = vec![DotVariant::Unpacked];
            if ctx.report.packed_int8_dot {
                variants.push(DotVariant::Packed);
            }
            let convs = variants.iter().map(|&v| conv(v, RequantKind::Float, false)).collect();
            let convs_zp = variants.iter().map(|&v| conv(v, RequantKind::Float, true)).collect();
            let fixed =
                [false, true].map(|half_up| conv(DotVariant::Unpacked, RequantKind::Fixed { half_up }, true)).into();
            eprintln!("GPU: {} ({} dot-product variants)", ctx.report.describe(), variants.len());
            let add = block_on(AddI8::new(&ctx)).expect("add kernel compiles");
            let table = block_on(BinaryTableI8::new(&ctx)).expect("table kernel compiles");
            let sum = block_on(GlobalSumI8::new(&ctx)).expect("global sum kernel compiles");
            Some(Gpu { ctx, convs, convs_zp, fixed, add, table, sum })
        }
        Err(e) if std::env::var("EDGETUNE_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("{e} (install Mesa's Vulkan drivers: apt-get install mesa-vulkan-drivers)")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    })
    .as_ref()
}

#[derive(Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i8>,
    za: i32,
    b: Vec<i8>,
    /// The weights' zero points per output channel (asymmetric weights), or none.
    zb: Option<Vec<i32>>,
    bias: Option<Vec<i32>>,
    mult: Vec<f32>,
    zp: i32,
    lo: i32,
    hi: i32,
}

fn cpu_acc(c: &Case) -> Vec<i32> {
    let zb = c.zb.clone().unwrap_or(vec![0]);
    gemm_i8_acc(&c.a, c.za, &c.b, &zb, c.bias.as_deref(), c.m, c.k, c.n).expect("cpu gemm")
}

fn cpu(c: &Case) -> Vec<i8> {
    let acc = cpu_acc(c);
    acc.iter().enumerate().map(|(i, &v)| requantize(v, c.mult[i % c.n], c.zp, c.lo, c.hi) as i8).collect()
}

fn check(c: &Case) {
    let Some(g) = gpu() else { return };
    let want = cpu(c);
    let rq = Requant {
        multipliers: c.mult.clone(),
        zero_point: c.zp,
        lo: c.lo,
        hi: c.hi,
        fixed: None,
        shift_half_up: false,
    };
    let layer = GemmLayer { weights: &c.b, weight_zero_points: c.zb.as_deref(), bias: c.bias.as_deref(), requant: &rq };
    for conv in if c.zb.is_some() { &g.convs_zp } else { &g.convs } {
        let got = conv.gemm.run(&g.ctx, (&c.a, c.za), &layer, (c.m, c.k, c.n)).expect("gpu gemm");
        assert_eq!(got, want, "{} variant, m {} k {} n {}", conv.gemm.variant.name(), c.m, c.k, c.n);
    }
}

fn case() -> impl Strategy<Value = Case> {
    // M up to 70 spans several 32-row workgroups; N past 8 several output words.
    (1usize..70, 1usize..40, 1usize..12, -128i32..=127, -128i32..=127, any::<bool>(), any::<u64>()).prop_map(
        |(m, k, n, za, zp, relu6, seed)| {
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let a = (0..m * k).map(|_| next() as i8).collect();
            let b = (0..n * k).map(|_| (next() % 255) as i8).map(|v| v.max(-127)).collect();
            let bias = (next() % 2 == 0).then(|| (0..n).map(|_| (next() % 200_001) as i32 - 100_000).collect());
            // Multipliers spanning the realistic range; some land results on exact .5 ties.
            let mult =
                (0..n).map(|_| [1e-4f32, 3.7e-4, 0.0019, 0.0125, 0.5, 1.0 / 1024.0][next() as usize % 6]).collect();
            let (lo, hi) = if relu6 { (zp, (zp + 40).min(127)) } else { (-128, 127) };
            // A third with asymmetric weights (uint8 TFLite files').
            let zb = (next() % 3 == 0).then(|| (0..n).map(|_| (next() % 255) as i32 - 127).collect());
            Case { m, k, n, a, za, b, zb, bias, mult, zp, lo, hi }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn gpu_gemm_equals_cpu_reference(c in case()) {
        check(&c);
    }
}

/// Accumulators beyond 2^24, where a GPU's own i32 -> f32 conversion may round differently:
/// the WGSL requant's split conversion must still match Rust's `acc as f32`.
#[test]
fn large_accumulators_convert_exactly() {
    let (m, k, n) = (3, 1000, 5);
    let a: Vec<i8> = (0..m * k).map(|i| if i % 7 == 0 { 127 } else { -128 }).collect();
    let b: Vec<i8> = (0..n * k).map(|i| if i % 5 == 0 { 1 } else { -127 }).collect();
    let bias = Some((0..n as i32).map(|c| c * 12_345 + 1).collect());
    let mult = vec![3.0e-6, 1.0 / 262_144.0, 4.1e-6, 2.9e-6, 1.0e-6];
    check(&Case { m, k, n, a, za: 127, b, zb: None, bias, mult, zp: -3, lo: -128, hi: 127 });
}

#[test]
fn packing_puts_byte_zero_at_the_lowest_k() {
    assert_eq!(pack_rows(&[1, -1, 2, -2, 3], 1, 5), vec![0xFE02_FF01, 0x0000_0003]);
    let v: Vec<i8> = (0..21).map(|i| (i * 37 - 100) as i8).collect();
    assert_eq!(unpack_rows(&pack_rows(&v, 3, 7), 3, 7), v);
}

#[derive(Debug)]
struct ConvCase {
    shape: [usize; 4],
    /// Output channels and groups (depthwise: both equal the input channels).
    cout: usize,
    groups: usize,
    kernel: usize,
    stride: usize,
    same: bool,
    x: Vec<i8>,
    sx: f32,
    zx: i32,
    w: Vec<i8>,
    sw: Vec<f32>,
    /// Weight zero points per output channel (asymmetric weights), or all zero.
    zw: Vec<i32>,
    bias: Option<Vec<i32>>,
    out: (f32, i32, Activation),
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (1usize..3, 1usize..10, 1usize..10, 1usize..12, 0usize..3, 1usize..3, any::<bool>(), any::<u64>()).prop_map(
        |(n, h, w, c, size, stride, same, seed)| {
            // A third each: one group (1x1 kernels with stride 1 are GEMMs), depthwise, and
            // other grouped convolutions (refused on the GPU).
            let (cout, groups) = match seed % 3 {
                0 => (1 + (seed >> 8) as usize % 12, 1),
                1 if c % 2 == 0 => (c, 2),
                _ => (c, c),
            };
            let kernel = [1, 3, 5][size];
            let (h, w) = if same { (h, w) } else { (h + kernel, w + kernel) };
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let x = (0..n * h * w * c).map(|_| next() as i8).collect();
            let wts =
                (0..cout * kernel * kernel * (c / groups)).map(|_| (next() % 255) as i8).map(|v| v.max(-127)).collect();
            let sw = (0..cout).map(|_| 0.001 + (next() % 1000) as f32 * 1e-5).collect();
            let bias = (next() % 2 == 0).then(|| (0..cout).map(|_| (next() % 20_001) as i32 - 10_000).collect());
            let act = [Activation::None, Activation::Relu, Activation::Relu6][next() as usize % 3];
            let out = (0.02 + (next() % 100) as f32 * 0.003, (next() % 256) as i32 - 128, act);
            let zx = (next() % 256) as i32 - 128;
            let asymmetric = next() % 3 == 0;
            let zw = (0..cout).map(|_| if asymmetric { (next() % 255) as i32 - 127 } else { 0 }).collect();
            ConvCase {
                shape: [n, h, w, c],
                cout,
                groups,
                kernel,
                stride,
                same,
                x,
                sx: 0.05,
                zx,
                w: wts,
                sw,
                zw,
                bias,
                out,
            }
        },
    )
}

fn check_conv(c: &ConvCase) {
    let Some(g) = gpu() else { return };
    let [_, _, _, ch] = c.shape;
    let p = Conv2dParams {
        stride: [c.stride, c.stride],
        padding: if c.same { Padding::SameUpper } else { Padding::VALID },
        groups: c.groups,
        ..Default::default()
    };
    let w_shape = [c.cout, c.kernel, c.kernel, ch / c.groups];
    let xq = QTensor::from_i8(c.shape.to_vec(), c.x.clone(), QParams::per_tensor(c.sx, c.zx).unwrap()).unwrap();
    let wq = QTensor::from_i8(w_shape.to_vec(), c.w.clone(), QParams::per_axis(0, c.sw.clone(), c.zw.clone()).unwrap())
        .unwrap();
    let zw = c.zw.iter().any(|&z| z != 0).then_some(&c.zw[..]);
    let out = OutputQuant::new(c.out.0, c.out.1, c.out.2).unwrap();
    let want = conv2d_i8(&xq, &wq, c.bias.as_deref(), &p, &out).expect("cpu conv");
    fn layer<'a>(
        c: &'a ConvCase,
        shape: &'a [usize],
        zw: Option<&'a [i32]>,
        p: &'a Conv2dParams,
        rq: &'a Requant,
    ) -> ConvLayer<'a> {
        ConvLayer {
            weights: &c.w,
            weight_shape: shape,
            weight_zero_points: zw,
            bias: c.bias.as_deref(),
            params: p,
            requant: rq,
        }
    }
    let rq = Requant::new("test", c.sx, &c.sw, &out).unwrap();
    for conv in if zw.is_some() { &g.convs_zp } else { &g.convs } {
        let result = conv.run(&g.ctx, (&c.x, &c.shape, c.zx), &layer(c, &w_shape, zw, &p, &rq));
        if c.groups != 1 && c.groups != ch {
            let err = result.expect_err("grouped convolutions are refused").to_string();
            assert!(err.contains("grouped convolution"), "{err}");
            continue;
        }
        let (got, shape) = result.expect("gpu conv");
        assert_eq!(shape.to_vec(), want.shape().to_vec());
        assert_eq!(got, want.i8_data("test").unwrap(), "{} variant, {c:?}", conv.gemm.variant.name());
    }
    if c.groups != 1 && c.groups != ch {
        return;
    }
    // TFLite's fixed point: the same layer requantized by `Requant::apply`.
    for conv in &g.fixed {
        let RequantKind::Fixed { half_up } = conv.kind else { unreachable!() };
        let rq = Requant::tflite("test", c.sx, &c.sw, &out, half_up).unwrap();
        let (_, want) = conv2d_i8_requant(&xq, &wq, None, c.bias.as_deref(), &p, &rq).expect("cpu conv");
        let (got, _) =
            conv.run(&g.ctx, (&c.x, &c.shape, c.zx), &layer(c, &w_shape, zw, &p, &rq)).expect("gpu conv, fixed point");
        assert_eq!(got, want, "{}, {c:?}", conv.kind.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn gpu_conv_equals_cpu_reference(c in conv_case()) {
        check_conv(&c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn gpu_int8_add_equals_cpu_reference(
        a in prop::collection::vec(any::<i8>(), 1..700),
        seed in any::<u64>(),
        (sa, za, sb, zb, sy, zy) in (0.001f32..0.5, -128i32..=127, 0.001f32..0.5, -128i32..=127, 0.001f32..0.5, -128i32..=127),
        act in 0usize..3,
    ) {
        let Some(g) = gpu() else { return Ok(()) };
        let b: Vec<i8> = a.iter().enumerate().map(|(i, &v)| (v as i64 * 31 + i as i64 * 7 + seed as i64 % 97) as i8).collect();
        let out = OutputQuant::new(sy, zy, [Activation::None, Activation::Relu, Activation::Relu6][act]).unwrap();
        let shape = vec![a.len()];
        let qa = QTensor::from_i8(shape.clone(), a.clone(), QParams::per_tensor(sa, za).unwrap()).unwrap();
        let qb = QTensor::from_i8(shape, b.clone(), QParams::per_tensor(sb, zb).unwrap()).unwrap();
        let want = add_i8(&qa, &qb, &out).unwrap();
        let rq = AddRequant::new((sa, za), (sb, zb), &out).unwrap();
        let got = g.add.run(&g.ctx, &a, &b, &rq).expect("gpu add");
        prop_assert_eq!(got.as_slice(), want.i8_data("test").unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn gpu_global_sums_equal_cpu_reference(n in 1usize..3, h in 1usize..9, w in 1usize..9, c in 1usize..150, zx in -128i32..=127, seed in any::<u8>()) {
        let Some(g) = gpu() else { return Ok(()) };
        let x: Vec<i8> = (0..n * h * w * c).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed as u32) as i8).collect();
        let q = QTensor::from_i8(vec![n, h, w, c], x.clone(), QParams::per_tensor(0.1, zx).unwrap()).unwrap();
        let (want, _) = global_sums_i8(&q).unwrap();
        prop_assert_eq!(g.sum.run(&g.ctx, &x, [n, h, w, c], zx).expect("gpu sums"), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// The f32 baseline GEMM (benchmarks only) agrees with the CPU's dense layer up to
    /// summation-order rounding.
    #[test]
    fn gpu_f32_gemm_matches_cpu_dense(m in 1usize..40, k in 1usize..50, n in 1usize..12, seed in any::<u32>()) {
        let Some(g) = gpu() else { return Ok(()) };
        let f = |i: usize| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5;
        let a: Vec<f32> = (0..m * k).map(f).collect();
        let b: Vec<f32> = (0..n * k).map(|i| f(i + 7919)).collect();
        let bias: Vec<f32> = (0..n).map(|i| f(i + 104_729)).collect();
        let gemm = block_on(GemmF32::new(&g.ctx)).expect("f32 gemm compiles");
        let got = gemm.run(&g.ctx, &a, &b, &bias, (m, k, n)).expect("gpu f32 gemm");
        let want = dense_f32(&a, &b, Some(&bias), m, k, n).unwrap();
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            prop_assert!((x - y).abs() <= 1e-5 * (k as f32 + 1.0), "{i}: {x} vs {y}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    /// TFLite's fixed point on the GEMM, both tie roundings, against `Requant::apply`: right
    /// shifts that bring the accumulators into the int8 range (half the channels exact powers
    /// of two, whose results often land on ties) and beyond, and left shifts (multipliers up
    /// to 2^6, saturating).
    #[test]
    fn gpu_fixed_point_gemm_equals_cpu_requant(c in case(), e in -20i32..7, half_up in any::<bool>()) {
        let Some(g) = gpu() else { return Ok(()) };
        let scales: Vec<f32> =
            (0..c.n).map(|j| if j % 2 == 0 { 2f32.powi(e) } else { 2f32.powi(e) * (0.5 + 0.049 * j as f32) }).collect();
        let out = OutputQuant::new(1.0, c.zp, Activation::None).unwrap();
        let mut rq = Requant::tflite("test", 1.0, &scales, &out, half_up).unwrap();
        (rq.lo, rq.hi) = (c.lo, c.hi);
        let want: Vec<i8> = cpu_acc(&c).iter().enumerate().map(|(i, &v)| rq.apply(v, i % c.n)).collect();
        let layer = GemmLayer { weights: &c.b, weight_zero_points: c.zb.as_deref(), bias: c.bias.as_deref(), requant: &rq };
        let conv = &g.fixed[half_up as usize];
        let got = conv.gemm.run(&g.ctx, (&c.a, c.za), &layer, (c.m, c.k, c.n)).expect("gpu gemm");
        prop_assert_eq!(got, want, "exponent around {}, {}", e, conv.kind.name());
    }
}

/// A fixed-point layer for kernels compiled with the float requantization, or asymmetric
/// weights for kernels compiled without zero points, is an error, not wrong numbers.
#[test]
fn a_layer_of_the_other_requantization_is_refused() {
    let Some(g) = gpu() else { return };
    let out = OutputQuant::new(0.1, 0, Activation::None).unwrap();
    let rq = Requant::tflite("test", 0.05, &[0.01], &out, false).unwrap();
    let layer = GemmLayer { weights: &[1, 2, 3, 4], weight_zero_points: None, bias: None, requant: &rq };
    let err = g.convs[0].gemm.run(&g.ctx, (&[1, 2, 3, 4], 0), &layer, (1, 4, 1)).expect_err("float kernels refuse");
    assert!(err.to_string().contains("compiled with float"), "{err}");
    // Asymmetric weights for kernels compiled without weight zero points.
    let rq = Requant::new("test", 0.05, &[0.01], &out).unwrap();
    let layer = GemmLayer { weights: &[1, 2, 3, 4], weight_zero_points: Some(&[3]), bias: None, requant: &rq };
    let err = g.convs[0].gemm.run(&g.ctx, (&[1, 2, 3, 4], 0), &layer, (1, 4, 1)).expect_err("refused");
    assert!(err.to_string().contains("without weight zero points"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Adds in TFLite's and onnxruntime's arithmetic as tables, against their CPU formulas.
    #[test]
    fn gpu_table_add_equals_tflite_and_onnxruntime_adds(
        len in 1usize..600, sa in 0.01f32..0.2, sb in 0.01f32..0.2, so in 0.01f32..0.3,
        za in -128i32..=127, zb in -128i32..=127, zo in -128i32..=127, relu in any::<bool>(), seed in any::<u32>()
    ) {
        let Some(g) = gpu() else { return Ok(()) };
        let a: Vec<i8> = (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).to_le_bytes()[3] as i8).collect();
        let b: Vec<i8> = (0..len).map(|i| (i as u32).wrapping_mul(40_503).wrapping_add(seed >> 3).to_le_bytes()[2] as i8).collect();
        let q = |scale, zero_point| edgetune::model::etm::ValueQuant { scale, zero_point };
        let out = OutputQuant::new(so, zo, if relu { Activation::Relu } else { Activation::None }).unwrap();
        let tflite = edgetune::quant::tflite::TfliteAdd::new(q(sa, za), q(sb, zb), q(so, zo), out.bounds()).unwrap();
        let ort = edgetune::quant::OrtAddRequant::new((sa, za), (sb, zb), &out, 128).unwrap();
        for (name, f) in [("tflite", &(|x, y| tflite.apply(x, y)) as &dyn Fn(i8, i8) -> i8), ("onnxruntime", &|x, y| ort.apply(x, y))] {
            let table: Vec<i8> = (0..65_536).map(|k| f((k / 256 - 128) as i8, (k % 256 - 128) as i8)).collect();
            let want: Vec<i8> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
            let got = g.table.run(&g.ctx, &a, &b, &table).expect("gpu table add");
            prop_assert_eq!(got, want, "{} add", name);
        }
    }
}
