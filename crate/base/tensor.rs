//! Tensors: [`Tensor`] holds f32 values, [`QTensor`] holds quantized integers together
//! with the [`QParams`] that give them meaning, so scales never travel separately from data.
//!
//! Layout: dense row-major (last index fastest). Activations inside the engine are NHWC
//! (`[batch, height, width, channels]`) so that the channel vector of one pixel is
//! contiguous: pointwise convolution is then a plain GEMM and int8 values pack 4 per u32
//! along the reduction axis for the GPU. Convolution weights are OHWI
//! (`[out_channels, kernel_h, kernel_w, in_channels / groups]`), dense weights `[out, in]`.
//!
//! Element counts are computed with checked multiplication: a shape whose count overflows
//! is an error, never a wrapped allocation.

use crate::base::error::{Error, Result};
use crate::base::qparams::QParams;

/// Largest element count of any tensor (2^30: 4 GiB of f32, the most a wasm32 page can
/// address). Larger shapes are rejected before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Number of elements of `shape`, or an error naming `op` if the product overflows or
/// exceeds [`MAX_ELEMENTS`].
pub fn numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, format!("element count of shape {shape:?} overflows")))?;
    if n > MAX_ELEMENTS {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} has {n} elements, more than the limit of {MAX_ELEMENTS}"),
        ));
    }
    Ok(n)
}

/// A dense f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` with `shape`; errors if the lengths disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = numel("tensor", &shape)?;
        if n != data.len() {
            return Err(Error::shape("tensor", format!("shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Result<Self> {
        let n = numel("tensor", &shape)?;
        Ok(Tensor { shape, data: vec![0.0; n] })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self> {
        let n = numel("reshape", &shape)?;
        if n != self.data.len() {
            return Err(Error::shape(
                "reshape",
                format!("cannot reshape {:?} ({} values) to {shape:?}", self.shape, self.data.len()),
            ));
        }
        Ok(Tensor { shape, data: self.data })
    }

    /// Flattens to 2-D `[prod(shape[..axis]), prod(shape[axis..])]` (ONNX Flatten).
    pub fn flatten(self, axis: usize) -> Result<Self> {
        if axis > self.shape.len() {
            return Err(Error::invalid("flatten", format!("axis {axis} out of range for shape {:?}", self.shape)));
        }
        let outer = numel("flatten", &self.shape[..axis])?;
        let inner = numel("flatten", &self.shape[axis..])?;
        self.reshape(vec![outer, inner])
    }
}

/// Integer storage of a [`QTensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum QData {
    /// int8 activations and weights.
    I8(Vec<i8>),
    /// int32 biases and accumulators.
    I32(Vec<i32>),
}

impl QData {
    pub fn len(&self) -> usize {
        match self {
            QData::I8(v) => v.len(),
            QData::I32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A quantized tensor: real value = `(q - zero_point) * scale`, with per-tensor or
/// per-axis parameters (see [`QParams`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    shape: Vec<usize>,
    data: QData,
    params: QParams,
}

impl QTensor {
    /// Wraps quantized `data`; checks the length and that per-axis params match the axis.
    pub fn new(shape: Vec<usize>, data: QData, params: QParams) -> Result<Self> {
        let n = numel("qtensor", &shape)?;
        if n != data.len() {
            return Err(Error::shape("qtensor", format!("shape {shape:?} needs {n} values, got {}", data.len())));
        }
        params.check_for_shape("qtensor", &shape)?;
        Ok(QTensor { shape, data, params })
    }

    /// An int8 tensor.
    pub fn from_i8(shape: Vec<usize>, data: Vec<i8>, params: QParams) -> Result<Self> {
        Self::new(shape, QData::I8(data), params)
    }

    /// An int32 tensor (bias, accumulators).
    pub fn from_i32(shape: Vec<usize>, data: Vec<i32>, params: QParams) -> Result<Self> {
        Self::new(shape, QData::I32(data), params)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn params(&self) -> &QParams {
        &self.params
    }
    pub fn data(&self) -> &QData {
        &self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values, without the shape and params (e.g. to recycle a dead value's buffer).
    pub fn into_data(self) -> QData {
        self.data
    }

    /// The int8 values, or an error naming `op` if this tensor holds int32.
    pub fn i8_data(&self, op: &'static str) -> Result<&[i8]> {
        match &self.data {
            QData::I8(v) => Ok(v),
            QData::I32(_) => Err(Error::invalid(op, format!("expected int8 tensor, got int32 {:?}", self.shape))),
        }
    }

    /// The int32 values, or an error naming `op` if this tensor holds int8.
    pub fn i32_data(&self, op: &'static str) -> Result<&[i32]> {
        match &self.data {
            QData::I32(v) => Ok(v),
            QData::I8(_) => Err(Error::invalid(op, format!("expected int32 tensor, got int8 {:?}", self.shape))),
        }
    }

    /// Same data and params with a new shape of equal element count (per-tensor params only,
    /// since a per-axis axis index would lose its meaning).
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self> {
        if self.params.axis().is_some() {
            return Err(Error::invalid("reshape", "cannot reshape a per-axis quantized tensor"));
        }
        Self::new(shape, self.data, self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_rejects_wrong_length_and_overflow() {
        assert!(Tensor::new(vec![2, 3], vec![0.0; 5]).is_err());
        let e = Tensor::zeros(vec![usize::MAX, 2]).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn flatten_matches_onnx() {
        let t = Tensor::zeros(vec![2, 3, 4, 5]).unwrap();
        assert_eq!(t.clone().flatten(0).unwrap().shape(), &[1, 120]);
        assert_eq!(t.clone().flatten(2).unwrap().shape(), &[6, 20]);
        assert_eq!(t.flatten(4).unwrap().shape(), &[120, 1]);
    }

    #[test]
    fn qtensor_checks_per_axis_params() {
        let p = QParams::per_axis(0, vec![0.1, 0.2], vec![0, 0]).unwrap();
        assert!(QTensor::from_i8(vec![2, 3], vec![0; 6], p.clone()).is_ok());
        assert!(QTensor::from_i8(vec![3, 2], vec![0; 6], p).is_err());
    }
}
