//! [`Value`]: a typed n-d tensor as ONNX graphs carry it (NCHW for images), decoded from
//! `TensorProto` (typed repeated fields or little-endian `raw_data`) with validation of
//! dims against the element count.

use super::proto::{data_type as dt, TensorProto};
use crate::base::error::{Error, Result};
use crate::base::tensor::numel;

/// Element storage of a [`Value`].
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::F32(_) => "float32",
            Data::U8(_) => "uint8",
            Data::I8(_) => "int8",
            Data::I32(_) => "int32",
            Data::I64(_) => "int64",
        }
    }
}

/// A typed tensor value in an ONNX graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Value {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self> {
        let n = numel("onnx value", &shape)?;
        if n != data.len() {
            return Err(Error::shape("onnx value", format!("shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(Value { shape, data })
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Result<Self> {
        Self::new(shape, Data::F32(v))
    }

    /// The f32 data, or an error naming `what`.
    pub fn as_f32(&self, what: &str) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            d => Err(Error::unsupported(format!("{what}: data type {} (expected float32)", d.type_name()))),
        }
    }

    /// Integer data widened to i64 (for shapes, axes, zero points).
    pub fn as_i64s(&self, what: &str) -> Result<Vec<i64>> {
        Ok(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F32(_) => {
                return Err(Error::unsupported(format!("{what}: float32 where an integer tensor is expected")))
            }
        })
    }

    /// Decodes a `TensorProto`; `origin` names where it came from in error messages.
    pub fn from_proto(t: &TensorProto, origin: &str) -> Result<Self> {
        let op: &'static str = "onnx tensor";
        let shape = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| Error::shape(op, format!("{origin}: negative dimension {d} in {:?}", t.dims)))
            })
            .collect::<Result<Vec<usize>>>()?;
        let n = numel(op, &shape)?;
        if t.data_location != 0 {
            return Err(Error::unsupported(format!("{origin}: tensor '{}' uses external data", t.name)));
        }
        let raw = &t.raw_data;
        let from_raw = !raw.is_empty() || n == 0;
        let need_raw = |width: usize| -> Result<()> {
            if n.checked_mul(width) != Some(raw.len()) {
                return Err(Error::shape(
                    op,
                    format!(
                        "{origin}: tensor '{}' {shape:?} needs {} raw bytes, has {}",
                        t.name,
                        n.saturating_mul(width),
                        raw.len()
                    ),
                ));
            }
            Ok(())
        };
        let data = match t.data_type {
            dt::FLOAT if from_raw => {
                need_raw(4)?;
                Data::F32(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            dt::FLOAT => Data::F32(t.float_data.clone()),
            dt::UINT8 if from_raw => {
                need_raw(1)?;
                Data::U8(raw.clone())
            }
            dt::UINT8 => Data::U8(t.int32_data.iter().map(|&v| v as u8).collect()),
            dt::INT8 if from_raw => {
                need_raw(1)?;
                Data::I8(raw.iter().map(|&b| b as i8).collect())
            }
            dt::INT8 => Data::I8(t.int32_data.iter().map(|&v| v as i8).collect()),
            dt::INT32 if from_raw => {
                need_raw(4)?;
                Data::I32(raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            dt::INT32 => Data::I32(t.int32_data.clone()),
            dt::INT64 if from_raw => {
                need_raw(8)?;
                Data::I64(
                    raw.chunks_exact(8)
                        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                        .collect(),
                )
            }
            dt::INT64 => Data::I64(t.int64_data.clone()),
            other => {
                return Err(Error::unsupported(format!(
                    "{origin}: tensor '{}' has data type {} ({other})",
                    t.name,
                    dt::name(other)
                )))
            }
        };
        if data.len() != n {
            return Err(Error::shape(
                op,
                format!("{origin}: tensor '{}' {shape:?} needs {n} values, has {}", t.name, data.len()),
            ));
        }
        Ok(Value { shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_and_typed_and_rejects_mismatch() {
        let mut t = TensorProto { dims: vec![2], data_type: dt::FLOAT, ..Default::default() };
        t.raw_data = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
        assert_eq!(Value::from_proto(&t, "x").unwrap().data, Data::F32(vec![1.5, -2.0]));
        t.raw_data.pop();
        let e = Value::from_proto(&t, "x.pb").unwrap_err().to_string();
        assert!(e.contains("x.pb") && e.contains("raw bytes"), "{e}");
        let t = TensorProto { dims: vec![3], data_type: dt::INT64, int64_data: vec![1, 2], ..Default::default() };
        assert!(Value::from_proto(&t, "y").is_err());
        let t = TensorProto { dims: vec![-1], data_type: dt::INT64, ..Default::default() };
        assert!(Value::from_proto(&t, "z").is_err());
    }
}
