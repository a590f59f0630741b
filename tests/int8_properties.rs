//! Property tests: the int8 conv / GEMM / add kernels against naive references written
//! independently here: accumulators in i64 with zero points subtracted element by element,
//! and the requantization spec modelled exactly in integer arithmetic (no floats), so a
//! wrong rounding step, a wrong tie rule or a lost carry in the kernels shows up as a
//! mismatch. Named regression cases at the bottom pin shapes and values that matter
//! (accumulators beyond 2^24, exact ties, saturation); proptest also keeps any shrunk
//! failure in `proptest-regressions/`.

use edgetune::ops::add::add_i8;
use edgetune::ops::conv::{conv2d_i8, conv2d_i8_acc, conv2d_i8_requant, prepare_conv_weights, Conv2dParams};
use edgetune::ops::depthwise::depthwise_i8_ref;
use edgetune::ops::gemm::{dense_i8, gemm_i8_acc};
use edgetune::ops::Padding;
use edgetune::quant::{
    round_multiplier_mantissa, Activation, OutputQuant, QParams, Requant, ADD_MULTIPLIER_MANTISSA_BITS,
};
use edgetune::QTensor;
use proptest::prelude::*;

// ---------- exact integer model of the requantization spec ----------

/// `v / 2^shift` rounded to nearest, ties to even.
fn div_pow2_half_even(v: i128, shift: u32) -> i128 {
    if shift == 0 {
        return v;
    }
    if shift >= 120 {
        return 0;
    }
    let d = 1i128 << shift;
    let (q, r) = (v.div_euclid(d), v.rem_euclid(d));
    let half = d / 2;
    if r > half || (r == half && q & 1 == 1) {
        q + 1
    } else {
        q
    }
}

/// `mant * 2^exp` rounded to 24 significant bits (an f32 significand), ties to even.
fn round_to_f32(mant: i128, exp: i32) -> (i128, i32) {
    let len = 128 - mant.unsigned_abs().leading_zeros();
    if len <= 24 {
        return (mant, exp);
    }
    let shift = len - 24;
    (div_pow2_half_even(mant, shift), exp + shift as i32)
}

/// A positive normal f32 as `mant * 2^exp`.
fn f32_parts(m: f32) -> (i128, i32) {
    let bits = m.to_bits();
    let e = ((bits >> 23) & 0xff) as i32;
    assert!(e != 0 && e != 255, "test multipliers are normal: {m}");
    (((bits & 0x7f_ffff) | 0x80_0000) as i128, e - 150)
}

/// `mant * 2^exp` rounded to an integer, ties to even (saturating far outside i32).
fn round_to_int(mant: i128, exp: i32) -> i128 {
    if exp >= 0 {
        if exp > 60 {
            return mant.signum() * (1i128 << 100);
        }
        mant << exp
    } else {
        div_pow2_half_even(mant, (-exp) as u32)
    }
}

fn clamp_zp(r: i128, zp: i32, lo: i32, hi: i32) -> i32 {
    (r.clamp((lo - zp) as i128, (hi - zp) as i128) + zp as i128) as i32
}

/// The spec: f32(acc), one f32 multiply, round half even, clamp, + zero point.
fn model_requantize(acc: i64, m: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let (a, ae) = round_to_f32(acc as i128, 0);
    let (mm, me) = f32_parts(m);
    let (p, pe) = round_to_f32(a * mm, ae + me);
    clamp_zp(round_to_int(p, pe), zp, lo, hi)
}

/// The int8 add spec: exact products, one rounded f32 sum, round half even.
fn model_add(ta: i64, ma: f32, tb: i64, mb: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let ((a, ae), (b, be)) = (f32_parts(ma), f32_parts(mb));
    let e = ae.min(be);
    let sum = ta as i128 * a * (1i128 << (ae - e)) + tb as i128 * b * (1i128 << (be - e));
    let (s, se) = round_to_f32(sum, e);
    clamp_zp(round_to_int(s, se), zp, lo, hi)
}

// ---------- naive references ----------

struct ConvCase {
    n: usize,
    h: usize,
    w: usize,
    groups: usize,
    cin_g: usize,
    cout_g: usize,
    k: [usize; 2],
    p: Conv2dParams,
    x: Vec<i8>,
    zx: i32,
    wts: Vec<i8>,
    zw: Vec<i32>,
    bias: Option<Vec<i32>>,
    mults: Vec<f32>,
    out_zp: i32,
    act: Activation,
}

impl std::fmt::Debug for ConvCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConvCase {{ x [{}, {}, {}, {}], groups {}, cout {}, k {:?}, {:?}, zx {}, zw {:?}, mults {:?}, out_zp {}, {:?} }}",
            self.n,
            self.h,
            self.w,
            self.groups * self.cin_g,
            self.groups,
            self.groups * self.cout_g,
            self.k,
            self.p,
            self.zx,
            self.zw,
            self.mults,
            self.out_zp,
            self.act
        )
    }
}

/// Output length and begin padding of one axis, computed from the ONNX/TF definitions.
fn ref_axis(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    padding: Padding,
    explicit: (usize, usize),
) -> Option<(usize, usize)> {
    let keff = (k - 1) * d + 1;
    match padding {
        Padding::Explicit { .. } => {
            let padded = input + explicit.0 + explicit.1;
            (padded >= keff).then(|| ((padded - keff) / s + 1, explicit.0))
        }
        Padding::SameUpper | Padding::SameLower => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + keff).saturating_sub(input);
            Some((out, if padding == Padding::SameUpper { total / 2 } else { total - total / 2 }))
        }
    }
}

fn ref_conv_acc(c: &ConvCase) -> Option<(Vec<usize>, Vec<i64>)> {
    let (ph, pw) = match c.p.padding {
        Padding::Explicit { top, left, bottom, right } => ((top, bottom), (left, right)),
        _ => ((0, 0), (0, 0)),
    };
    let (oh, pt) = ref_axis(c.h, c.k[0], c.p.stride[0], c.p.dilation[0], c.p.padding, ph)?;
    let (ow, pl) = ref_axis(c.w, c.k[1], c.p.stride[1], c.p.dilation[1], c.p.padding, pw)?;
    let (cin, cout) = (c.groups * c.cin_g, c.groups * c.cout_g);
    let mut out = vec![];
    for n in 0..c.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..cout {
                    let g = oc / c.cout_g;
                    let mut acc: i64 = c.bias.as_ref().map_or(0, |b| b[oc] as i64);
                    for ky in 0..c.k[0] {
                        for kx in 0..c.k[1] {
                            let iy = (oy * c.p.stride[0] + ky * c.p.dilation[0]) as i64 - pt as i64;
                            let ix = (ox * c.p.stride[1] + kx * c.p.dilation[1]) as i64 - pl as i64;
                            if iy < 0 || ix < 0 || iy >= c.h as i64 || ix >= c.w as i64 {
                                continue;
                            }
                            for ci in 0..c.cin_g {
                                let xv =
                                    c.x[((n * c.h + iy as usize) * c.w + ix as usize) * cin + g * c.cin_g + ci] as i64;
                                let wv = c.wts[((oc * c.k[0] + ky) * c.k[1] + kx) * c.cin_g + ci] as i64;
                                let zw = if c.zw.len() == 1 { c.zw[0] } else { c.zw[oc] } as i64;
                                acc += (xv - c.zx as i64) * (wv - zw);
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    Some((vec![c.n, oh, ow, cout], out))
}

/// Output quantization whose per-channel multipliers are exactly `mults` (s_x = s_y = 1).
fn out_quant(zp: i32, act: Activation) -> OutputQuant {
    OutputQuant::new(1.0, zp, act).unwrap()
}

fn run_conv_case(c: &ConvCase) -> Result<(), TestCaseError> {
    let Some((shape, want_acc)) = ref_conv_acc(c) else { return Ok(()) };
    let x =
        QTensor::from_i8(vec![c.n, c.h, c.w, c.groups * c.cin_g], c.x.clone(), QParams::per_tensor(1.0, c.zx).unwrap())
            .unwrap();
    let cout = c.groups * c.cout_g;
    let wp = if c.zw.len() == 1 && c.mults.len() == 1 {
        QParams::per_tensor(c.mults[0], c.zw[0]).unwrap()
    } else {
        let zw = if c.zw.len() == 1 { vec![c.zw[0]; cout] } else { c.zw.clone() };
        let mults = if c.mults.len() == 1 { vec![c.mults[0]; cout] } else { c.mults.clone() };
        QParams::per_axis(0, mults, zw).unwrap()
    };
    let w = QTensor::from_i8(vec![cout, c.k[0], c.k[1], c.cin_g], c.wts.clone(), wp).unwrap();
    let (g, acc) = conv2d_i8_acc(&x, &w, c.bias.as_deref(), &c.p).unwrap();
    prop_assert_eq!(g.out_shape().to_vec(), shape.clone());
    let acc64: Vec<i64> = acc.iter().map(|&v| v as i64).collect();
    prop_assert_eq!(&acc64, &want_acc);
    // The depthwise reference (ops/depthwise.rs) against the same integer model.
    if c.cin_g == 1 && c.cout_g == 1 {
        let (_, dw) = depthwise_i8_ref(&x, &w, c.bias.as_deref(), &c.p).unwrap();
        prop_assert_eq!(dw.iter().map(|&v| v as i64).collect::<Vec<_>>(), want_acc.clone());
    }
    let out = out_quant(c.out_zp, c.act);
    let (lo, hi) = out.bounds();
    let y = conv2d_i8(&x, &w, c.bias.as_deref(), &c.p, &out).unwrap();
    let want: Vec<i8> = want_acc
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let m = if c.mults.len() == 1 { c.mults[0] } else { c.mults[i % cout] };
            model_requantize(a, m, c.out_zp, lo, hi) as i8
        })
        .collect();
    prop_assert_eq!(y.i8_data("t").unwrap(), &want[..]);
    // The path a prepared model runs: weights laid out once for their kernel, the
    // requantization prepared.
    let rq = Requant::new("t", 1.0, w.params().scales(), &out).unwrap();
    let prepared = prepare_conv_weights(&w, &c.p).unwrap();
    let (_, yp) = conv2d_i8_requant(&x, &w, prepared.as_ref(), c.bias.as_deref(), &c.p, &rq).unwrap();
    prop_assert_eq!(&yp[..], &want[..]);
    Ok(())
}

/// Multipliers: random magnitudes, exact powers of two (rounding ties) and large (saturation).
fn multiplier() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => 1e-5f32..0.05f32,
        2 => (1u32..12).prop_map(|k| 0.5f32.powi(k as i32)),
        1 => 0.5f32..8.0f32,
    ]
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        (0usize..3, 0usize..3, 0usize..3, 0usize..3).prop_map(|(top, left, bottom, right)| Padding::Explicit {
            top,
            left,
            bottom,
            right
        }),
        Just(Padding::SameUpper),
        Just(Padding::SameLower),
    ]
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![Just(Activation::None), Just(Activation::Relu), Just(Activation::Relu6)]
}

/// Conv cases; `mode` 0 = general, 1 = depthwise, 2 = pointwise, so every path is hit often.
fn conv_case() -> impl Strategy<Value = ConvCase> {
    (0usize..3, 1usize..3, 1usize..9, 1usize..9, 1usize..4, 1usize..5, 1usize..5)
        .prop_flat_map(|(mode, n, h, w, groups, cin_g, cout_g)| {
            let (groups, cin_g, cout_g) = match mode {
                1 => (groups + cin_g, 1, 1),
                2 => (1, cin_g + groups, cout_g),
                _ => (groups, cin_g, cout_g),
            };
            let k = if mode == 2 { Just([1usize, 1]).boxed() } else { [1usize..4, 1usize..4].boxed() };
            let stride = if mode == 2 { Just([1usize, 1]).boxed() } else { [1usize..4, 1usize..4].boxed() };
            let dilation = if mode == 2 { Just([1usize, 1]).boxed() } else { [1usize..3, 1usize..3].boxed() };
            let pad = if mode == 2 { Just(Padding::VALID).boxed() } else { padding().boxed() };
            let cout = groups * cout_g;
            (
                Just((n, h, w, groups, cin_g, cout_g)),
                k,
                stride,
                dilation,
                pad,
                any::<i8>().prop_map(|v| v as i32),
                prop_oneof![3 => Just(vec![0i32]), 1 => proptest::collection::vec(-20i32..20, cout)],
                proptest::option::of(proptest::collection::vec(-20_000i32..20_000, cout)),
                prop_oneof![Just(1usize), Just(cout)].prop_flat_map(|l| proptest::collection::vec(multiplier(), l)),
                any::<i8>().prop_map(|v| v as i32),
                activation(),
            )
        })
        .prop_flat_map(
            |((n, h, w, groups, cin_g, cout_g), k, stride, dilation, padding, zx, zw, bias, mults, out_zp, act)| {
                let xs = proptest::collection::vec(any::<i8>(), n * h * w * groups * cin_g);
                let ws = proptest::collection::vec(-127i8..=127, groups * cout_g * k[0] * k[1] * cin_g);
                (xs, ws).prop_map(move |(x, wts)| ConvCase {
                    n,
                    h,
                    w,
                    groups,
                    cin_g,
                    cout_g,
                    k,
                    p: Conv2dParams { stride, dilation, padding, groups },
                    x,
                    zx,
                    wts,
                    zw: zw.clone(),
                    bias: bias.clone(),
                    mults: mults.clone(),
                    out_zp,
                    act,
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn conv_i8_matches_naive_reference(c in conv_case()) {
        run_conv_case(&c)?;
    }

    #[test]
    fn gemm_i8_matches_naive_reference(
        (m, k, n, a, b) in (1usize..7, prop_oneof![4 => 1usize..64, 1 => 64usize..1500], 1usize..7)
            .prop_flat_map(|(m, k, n)| (Just(m), Just(k), Just(n),
                proptest::collection::vec(any::<i8>(), m * k), proptest::collection::vec(any::<i8>(), n * k))),
        za in any::<i8>(),
        zb_per_row in any::<bool>(),
        zb_seed in any::<i8>(),
        bias in proptest::option::of(-100_000i32..100_000),
        mult in multiplier(),
        out_zp in any::<i8>(),
        act in activation(),
    ) {
        let zb: Vec<i32> = if zb_per_row { (0..n).map(|j| zb_seed as i32 / (j as i32 + 1)).collect() } else { vec![zb_seed as i32] };
        let bias_v: Option<Vec<i32>> = bias.map(|b| (0..n).map(|j| b - j as i32 * 7).collect());
        let acc = gemm_i8_acc(&a, za as i32, &b, &zb, bias_v.as_deref(), m, k, n).unwrap();
        let mut want = vec![];
        for i in 0..m {
            for j in 0..n {
                let z = if zb.len() == 1 { zb[0] } else { zb[j] } as i64;
                let s: i64 = (0..k).map(|p| (a[i * k + p] as i64 - za as i64) * (b[j * k + p] as i64 - z)).sum();
                want.push(s + bias_v.as_ref().map_or(0, |bv| bv[j] as i64));
            }
        }
        let got: Vec<i64> = acc.iter().map(|&v| v as i64).collect();
        prop_assert_eq!(&got, &want);
        let out = out_quant(out_zp as i32, act);
        let (lo, hi) = out.bounds();
        let rq = Requant::new("t", 1.0, &[mult], &out).unwrap();
        let y = dense_i8(&a, za as i32, &b, &zb, bias_v.as_deref(), &rq, m, k, n).unwrap();
        let want_y: Vec<i8> = want.iter().map(|&v| model_requantize(v, mult, out_zp as i32, lo, hi) as i8).collect();
        prop_assert_eq!(y, want_y);
    }

    #[test]
    fn add_i8_matches_exact_model(
        a in proptest::collection::vec(any::<i8>(), 1..64),
        seed in any::<u64>(),
        (sa, sb, sy) in (1e-3f32..1.0, 1e-3f32..1.0, 1e-3f32..1.0),
        (za, zb, zy) in (any::<i8>(), any::<i8>(), any::<i8>()),
        act in activation(),
    ) {
        let b: Vec<i8> = a.iter().enumerate().map(|(i, &v)| (v as u64 ^ seed.rotate_left(i as u32 * 7)) as i8).collect();
        let qa = QTensor::from_i8(vec![a.len()], a.clone(), QParams::per_tensor(sa, za as i32).unwrap()).unwrap();
        let qb = QTensor::from_i8(vec![b.len()], b.clone(), QParams::per_tensor(sb, zb as i32).unwrap()).unwrap();
        let out = OutputQuant::new(sy, zy as i32, act).unwrap();
        let (lo, hi) = out.bounds();
        let y = add_i8(&qa, &qb, &out).unwrap();
        let ma = round_multiplier_mantissa(sa as f64 / sy as f64, ADD_MULTIPLIER_MANTISSA_BITS) as f32;
        let mb = round_multiplier_mantissa(sb as f64 / sy as f64, ADD_MULTIPLIER_MANTISSA_BITS) as f32;
        let want: Vec<i8> = a.iter().zip(&b).map(|(&x, &v)| {
            model_add(x as i64 - za as i64, ma, v as i64 - zb as i64, mb, zy as i32, lo, hi) as i8
        }).collect();
        prop_assert_eq!(y.i8_data("t").unwrap(), &want[..]);
    }
}

// ---------- named regression cases ----------

/// Accumulators beyond 2^24 (K = 1152 as in EfficientNet-Lite0's last blocks, extreme values):
/// the i32 -> f32 conversion rounds, and every backend must round it the same way.
#[test]
fn regression_accumulator_beyond_2_pow_24() {
    let k = 1151;
    let a = vec![-128i8; k];
    let b = vec![127i8; k];
    let acc = gemm_i8_acc(&a, 127, &b, &[0], None, 1, k, 1).unwrap();
    assert_eq!(acc[0] as i64, -(255 * 127 * k as i64)); // -37,275,135: odd and > 2^24, not representable in f32
    assert_ne!((acc[0] as f32) as i64, acc[0] as i64);
    let m = 3.0e-6f32;
    let rq = Requant::new("t", 1.0, &[m], &out_quant(0, Activation::None)).unwrap();
    let y = dense_i8(&a, 127, &b, &[0], None, &rq, 1, k, 1).unwrap();
    assert_eq!(y[0] as i32, model_requantize(acc[0] as i64, m, 0, -128, 127));
    assert_eq!(y[0], -112);
}

/// Exact ties round to even in both directions.
#[test]
fn regression_ties_round_to_even() {
    let rq = Requant::new("t", 1.0, &[0.5], &out_quant(0, Activation::None)).unwrap();
    let got: Vec<i8> = [1, 3, 5, -1, -3, -5].iter().map(|&acc| rq.apply(acc, 0)).collect();
    assert_eq!(got, vec![0, 2, 2, 0, -2, -2]);
}

/// Saturation and fused ReLU6 clamp at both ends.
#[test]
fn regression_saturation_and_relu6() {
    let out = OutputQuant::new(0.05, -100, Activation::Relu6).unwrap(); // 6 / 0.05 = 120 -> hi = 20
    let rq = Requant::new("t", 1.0, &[1.0], &out).unwrap();
    assert_eq!(out.bounds(), (-100, 20));
    assert_eq!(rq.apply(-1_000_000, 0), -100);
    assert_eq!(rq.apply(1_000_000, 0), 20);
    // multiplier 1 * 1 / 0.05 = 20: acc 1 -> 20 - 100, acc 3 -> 60 - 100
    assert_eq!(rq.apply(1, 0), -80);
    assert_eq!(rq.apply(3, 0), -40);
}

/// Depthwise 3x3 stride 2 with TF "same" padding on an odd size (the pad goes at the end).
#[test]
fn regression_depthwise_same_upper_stride2_odd() {
    let c = ConvCase {
        n: 1,
        h: 5,
        w: 5,
        groups: 3,
        cin_g: 1,
        cout_g: 1,
        k: [3, 3],
        p: Conv2dParams { stride: [2, 2], dilation: [1, 1], padding: Padding::SameUpper, groups: 3 },
        x: (0..75).map(|i| (i * 37 % 256) as u8 as i8).collect(),
        zx: -7,
        wts: (0..27).map(|i| (i * 53 % 255) as i8).map(|v| v.max(-127)).collect(),
        zw: vec![0],
        bias: Some(vec![100, -100, 0]),
        mults: vec![0.01, 0.02, 0.004],
        out_zp: 3,
        act: Activation::Relu6,
    };
    run_conv_case(&c).unwrap();
}
