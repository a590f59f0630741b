//! Element-wise addition. f32 with NumPy broadcasting (`[3, 4, 5] + [5]`, `[2, 1] + [1, 3]`);
//! int8 for residual connections: same shapes, both inputs rescaled to the output scale
//! (`y = round(ma * (a - za) + mb * (b - zb)) + zy`, see [`crate::quant::AddRequant`]).

use crate::base::error::{Error, Result};
use crate::base::tensor::{numel, QTensor, Tensor};
use crate::quant::tflite::TfliteAdd;
use crate::quant::{AddRequant, OrtAddRequant, OutputQuant, QParams};

/// NumPy broadcast of two shapes, or an error naming `op`.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
            let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
            match (da, db) {
                _ if da == db => Ok(da),
                (1, d) | (d, 1) => Ok(d),
                _ => Err(Error::shape(op, format!("shapes {a:?} and {b:?} do not broadcast"))),
            }
        })
        .collect()
}

/// Strides of `shape` viewed inside the broadcast shape `out` (0 where broadcast).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + out.len() - shape.len();
        strides[oi] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Applies `f` element-wise over the broadcast of `a` and `b`.
pub fn broadcast_binary<T: Copy, U>(
    op: &'static str,
    a: (&[T], &[usize]),
    b: (&[T], &[usize]),
    f: impl Fn(T, T) -> U,
) -> Result<(Vec<usize>, Vec<U>)> {
    let out = broadcast_shape(op, a.1, b.1)?;
    let n = numel(op, &out)?;
    if a.0.len() != numel(op, a.1)? || b.0.len() != numel(op, b.1)? {
        return Err(Error::shape(op, "data length does not match shape"));
    }
    let (sa, sb) = (broadcast_strides(a.1, &out), broadcast_strides(b.1, &out));
    let mut idx = vec![0usize; out.len()];
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        y.push(f(a.0[ia], b.0[ib]));
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok((out, y))
}

/// f32 addition with broadcasting.
pub fn add_f32(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() == b.shape() {
        let y = a.data().iter().zip(b.data()).map(|(x, y)| x + y).collect();
        return Tensor::new(a.shape().to_vec(), y);
    }
    let (shape, y) = broadcast_binary("add_f32", (a.data(), a.shape()), (b.data(), b.shape()), |x, y| x + y)?;
    Tensor::new(shape, y)
}

/// Backward of [`add_f32`], accumulating: `da += dy` and `db += dy`, each summed over the
/// axes along which that input was broadcast.
pub fn add_backward_f32(
    a_shape: &[usize],
    b_shape: &[usize],
    dy: &[f32],
    da: &mut [f32],
    db: &mut [f32],
) -> Result<()> {
    const OP: &str = "add_backward_f32";
    let out = broadcast_shape(OP, a_shape, b_shape)?;
    if dy.len() != numel(OP, &out)? || da.len() != numel(OP, a_shape)? || db.len() != numel(OP, b_shape)? {
        return Err(Error::shape(OP, format!("gradient lengths do not match {a_shape:?} + {b_shape:?}")));
    }
    if a_shape == b_shape {
        da.iter_mut().zip(dy).for_each(|(g, &d)| *g += d);
        db.iter_mut().zip(dy).for_each(|(g, &d)| *g += d);
        return Ok(());
    }
    let (sa, sb) = (broadcast_strides(a_shape, &out), broadcast_strides(b_shape, &out));
    let mut idx = vec![0usize; out.len()];
    for &d in dy {
        da[idx.iter().zip(&sa).map(|(i, s)| i * s).sum::<usize>()] += d;
        db[idx.iter().zip(&sb).map(|(i, s)| i * s).sum::<usize>()] += d;
        for k in (0..out.len()).rev() {
            idx[k] += 1;
            if idx[k] < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(())
}

/// int8 residual addition of two per-tensor quantized tensors of the same shape.
pub fn add_i8(a: &QTensor, b: &QTensor, out: &OutputQuant) -> Result<QTensor> {
    let rq = AddRequant::new(a.params().per_tensor_pair("add_i8")?, b.params().per_tensor_pair("add_i8")?, out)?;
    add_i8_requant(a, b, &rq, out)
}

/// [`add_i8`] with its requantization prepared from the inputs' grids (what a prepared
/// model runs: nothing is derived per frame).
/// SIMD lanes where the build and CPU have them ([`super::add_simd`]), the same bits.
pub fn add_i8_requant(a: &QTensor, b: &QTensor, rq: &AddRequant, out: &OutputQuant) -> Result<QTensor> {
    add_i8_chunks(a, b, out, |xa, xb, y| super::add_simd::add_i8_requant_slice(xa, xb, rq, y))
}

/// [`add_i8`] in onnxruntime's arithmetic ([`OrtAddRequant`]; `offset` 128 for a uint8 file).
pub fn add_i8_ort(a: &QTensor, b: &QTensor, out: &OutputQuant, offset: i32) -> Result<QTensor> {
    let (pa, pb) = (a.params().per_tensor_pair("add_i8")?, b.params().per_tensor_pair("add_i8")?);
    add_i8_ort_requant(a, b, &OrtAddRequant::new(pa, pb, out, offset)?, out)
}

/// [`add_i8_ort`] with its requantization prepared.
pub fn add_i8_ort_requant(a: &QTensor, b: &QTensor, rq: &OrtAddRequant, out: &OutputQuant) -> Result<QTensor> {
    add_i8_lanes(a, b, out, |x, y| rq.apply(x, y))
}

/// int8 add in TFLite's fixed-point arithmetic (`quant::tflite::TfliteAdd`), for imported
/// TFLite files.
pub fn add_i8_tflite(a: &QTensor, b: &QTensor, rq: &TfliteAdd, out: &OutputQuant) -> Result<QTensor> {
    add_i8_lanes(a, b, out, |x, y| rq.apply(x, y))
}

fn add_i8_lanes(a: &QTensor, b: &QTensor, out: &OutputQuant, f: impl Fn(i8, i8) -> i8 + Sync) -> Result<QTensor> {
    add_i8_chunks(a, b, out, |xa, xb, y| {
        for ((o, &x), &v) in y.iter_mut().zip(xa).zip(xb) {
            *o = f(x, v);
        }
    })
}

/// `kernel(a_part, b_part, y_part)` over equal chunks of the two inputs and the output,
/// split over the pool's threads.
fn add_i8_chunks(
    a: &QTensor,
    b: &QTensor,
    out: &OutputQuant,
    kernel: impl Fn(&[i8], &[i8], &mut [i8]) + Sync,
) -> Result<QTensor> {
    const OP: &str = "add_i8";
    if a.shape() != b.shape() {
        return Err(Error::shape(OP, format!("shapes {:?} and {:?} differ", a.shape(), b.shape())));
    }
    let (xa, xb) = (a.i8_data(OP)?, b.i8_data(OP)?);
    // Every element is stored by `kernel`: a recycled buffer's stale bytes never show.
    let mut y = super::scratch::output_i8(xa.len());
    // Element-wise, so split over the pool's threads in plain chunks.
    let chunk = crate::base::pool::chunk_len(y.len(), 16 * 1024);
    crate::base::pool::parallel_chunks_mut(&mut y, chunk, &|t, part| {
        kernel(&xa[t * chunk..][..part.len()], &xb[t * chunk..][..part.len()], part);
    });
    QTensor::from_i8(a.shape().to_vec(), y, QParams::per_tensor(out.scale, out.zero_point)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Activation;

    #[test]
    fn add_gradients_reduce_over_broadcast_axes() {
        use crate::ops::gradcheck::{check, values};
        let (sa, sb) = ([2usize, 1, 3], [4usize, 1]);
        let (a, b) = (values(6, 1), values(4, 2));
        let dy = values(24, 3);
        let (mut da, mut db) = (vec![0.0; 6], vec![0.0; 4]);
        add_backward_f32(&sa, &sb, &dy, &mut da, &mut db).unwrap();
        let t = |s: &[usize], v: &[f32]| Tensor::new(s.to_vec(), v.to_vec()).unwrap();
        check("add da", &|v| add_f32(&t(&sa, v), &t(&sb, &b)).unwrap().into_data(), &a, &dy, &da, 1e-3);
        check("add db", &|v| add_f32(&t(&sa, &a), &t(&sb, v)).unwrap().into_data(), &b, &dy, &db, 1e-3);
    }

    #[test]
    fn broadcasting() {
        let a = Tensor::new(vec![2, 1], vec![1.0, 2.0]).unwrap();
        let b = Tensor::new(vec![1, 3], vec![10.0, 20.0, 30.0]).unwrap();
        let y = add_f32(&a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.data(), &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        assert!(broadcast_shape("t", &[2, 3], &[4]).is_err());
    }

    /// The SIMD add ([`super::super::add_simd`]) gives the scalar spec's bits on every pair
    /// of bytes, for grids that make the sums round on ties, meet both bounds (the int8 range,
    /// and ReLU / ReLU6 bounds inside it, which the packs' saturation alone would miss) and
    /// take large multipliers; slice lengths around its blocks.
    #[test]
    fn simd_add_equals_the_scalar_spec_on_every_byte_pair() {
        let grids = [
            ((0.1, 0), (0.2, 5), (0.05, 1, Activation::None)),
            ((0.02, -128), (0.02, 127), (0.04, 0, Activation::None)),
            ((0.5, 3), (0.25, -7), (0.001, -20, Activation::None)),
            ((0.013, 10), (0.029, -3), (0.031, -128, Activation::Relu6)),
            ((0.1, 4), (0.1, -9), (0.03, -128, Activation::Relu6)),
            ((0.05, 0), (0.07, 1), (0.05, -20, Activation::Relu)),
            ((1e-4, -1), (3e-4, 2), (0.3, 100, Activation::Relu)),
            ((7.0, 0), (0.5, 0), (1.0, 0, Activation::None)),
        ];
        let (xa, xb): (Vec<i8>, Vec<i8>) = (0..65536).map(|i| ((i & 255) as u8 as i8, (i >> 8) as u8 as i8)).unzip();
        for (ga, gb, (s, z, act)) in grids {
            let out = OutputQuant::new(s, z, act).unwrap();
            let rq = AddRequant::new(ga, gb, &out).unwrap();
            let want: Vec<i8> = xa.iter().zip(&xb).map(|(&x, &y)| rq.apply(x, y)).collect();
            for len in [65536, 65535, 33, 32, 31, 17, 16, 15, 1, 0] {
                let mut got = vec![0x55i8; len];
                super::super::add_simd::add_i8_requant_slice(&xa, &xb, &rq, &mut got);
                assert_eq!(got, want[..len], "grids {ga:?} {gb:?} -> ({s}, {z}), {len} elements");
            }
            let t = |d: &[i8], g: (f32, i32)| {
                QTensor::from_i8(vec![256, 256], d.to_vec(), QParams::per_tensor(g.0, g.1).unwrap()).unwrap()
            };
            let y = add_i8_requant(&t(&xa, ga), &t(&xb, gb), &rq, &out).unwrap();
            assert_eq!(y.i8_data("t").unwrap(), want.as_slice());
        }
    }

    #[test]
    fn int8_add_rescales_both_inputs() {
        let a = QTensor::from_i8(vec![3], vec![10, -20, 127], QParams::per_tensor(0.1, 0).unwrap()).unwrap();
        let b = QTensor::from_i8(vec![3], vec![5, 5, 127], QParams::per_tensor(0.2, 5).unwrap()).unwrap();
        let out = OutputQuant::new(0.05, 1, Activation::None).unwrap();
        let y = add_i8(&a, &b, &out).unwrap();
        // 1.0 + 0 = 1.0 -> 20+1 ; -2.0 -> -40+1 ; 12.7 + 24.4 -> saturates 127
        assert_eq!(y.i8_data("t").unwrap(), &[21, -39, 127]);
    }
}
