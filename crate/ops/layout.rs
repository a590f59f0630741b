//! Layout conversion between channels-first (ONNX: `[N, C, d1, d2, ...]`) and
//! channels-last (the engine's NHWC: `[N, d1, d2, ..., C]`), for any element type.

use crate::base::error::{Error, Result};

/// `[N, C, rest...]` -> `[N, rest..., C]`; returns the data and the new shape.
pub fn channels_first_to_last<T: Copy>(data: &[T], shape: &[usize]) -> Result<(Vec<T>, Vec<usize>)> {
    let (n, c, rest) = split(shape, data.len())?;
    let mut out = Vec::with_capacity(data.len());
    for b in 0..n {
        for p in 0..rest {
            for ch in 0..c {
                out.push(data[(b * c + ch) * rest + p]);
            }
        }
    }
    let mut s = vec![shape[0]];
    s.extend_from_slice(&shape[2..]);
    s.push(shape[1]);
    Ok((out, s))
}

/// `[N, rest..., C]` -> `[N, C, rest...]`; returns the data and the new shape.
pub fn channels_last_to_first<T: Copy>(data: &[T], shape: &[usize]) -> Result<(Vec<T>, Vec<usize>)> {
    if shape.len() < 2 {
        return Err(Error::shape("layout", format!("need rank >= 2, got {shape:?}")));
    }
    let c = shape[shape.len() - 1];
    let rest: usize = shape[1..shape.len() - 1].iter().product();
    let n = shape[0];
    if n * c * rest != data.len() {
        return Err(Error::shape("layout", format!("shape {shape:?} does not match {} values", data.len())));
    }
    let mut out = Vec::with_capacity(data.len());
    for b in 0..n {
        for ch in 0..c {
            for p in 0..rest {
                out.push(data[(b * rest + p) * c + ch]);
            }
        }
    }
    let mut s = vec![n, c];
    s.extend_from_slice(&shape[1..shape.len() - 1]);
    Ok((out, s))
}

fn split(shape: &[usize], len: usize) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape("layout", format!("need rank >= 2, got {shape:?}")));
    }
    let rest: usize = shape[2..].iter().product();
    if shape[0] * shape[1] * rest != len {
        return Err(Error::shape("layout", format!("shape {shape:?} does not match {len} values")));
    }
    Ok((shape[0], shape[1], rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d: Vec<u32> = (0..24).collect();
        let (l, s) = channels_first_to_last(&d, &[2, 3, 2, 2]).unwrap();
        assert_eq!(s, vec![2, 2, 2, 3]);
        assert_eq!(&l[..6], &[0, 4, 8, 1, 5, 9]);
        let (f, s2) = channels_last_to_first(&l, &s).unwrap();
        assert_eq!(s2, vec![2, 3, 2, 2]);
        assert_eq!(f, d);
    }
}
