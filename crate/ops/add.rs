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
pub fn add_i8_requant(a: &QTensor, b: &QTensor, rq: &AddRequant, out: &OutputQuant) -> Result<QTensor> {
    add_i8_lanes(a, b, out, |x, y| rq.apply(x, y))
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
    const OP: &str = "add_i8";
    if a.shape() != b.shape() {
        return Err(Error::shape(OP, format!("shapes {:?} and {:?} differ", a.shape(), b.shape())));
    }
    let (xa, xb) = (a.i8_data(OP)?, b.i8_data(OP)?);
    let mut y = vec![0i8; xa.len()];
    // Element-wise, so split over the pool's threads in plain chunks.
    let chunk = crate::base::pool::chunk_len(y.len(), 16 * 1024);
    crate::base::pool::parallel_chunks_mut(&mut y, chunk, &|t, part| {
        let (pa, pb) = (&xa[t * chunk..][..part.len()], &xb[t * chunk..][..part.len()]);
        for ((o, &x), &v) in part.iter_mut().zip(pa).zip(pb) {
            *o = f(x, v);
        }
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
