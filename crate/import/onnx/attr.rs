//! Reading node attributes and inputs with defaults and clear errors. Every op lists the
//! attributes it understands; any other attribute makes the node unsupported rather than
//! silently ignored.

use super::proto::{attribute_type as at, AttributeProto, NodeProto};
use super::value::Value;
use crate::base::error::{Error, Result};

/// A node being executed: its proto, the model's opset and its inputs (`None` = omitted).
pub struct Node<'a> {
    pub proto: &'a NodeProto,
    pub opset: i64,
    pub inputs: &'a [Option<&'a Value>],
}

impl<'a> Node<'a> {
    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    /// Errors (as unsupported) if the node has an attribute outside `known`.
    pub fn only_attrs(&self, known: &[&str]) -> Result<()> {
        match self.proto.attribute.iter().find(|a| !known.contains(&a.name.as_str())) {
            Some(a) => Err(Error::unsupported(format!("{} attribute '{}'", self.proto.op_type, a.name))),
            None => Ok(()),
        }
    }

    fn wrong_type(&self, a: &AttributeProto, want: &str) -> Error {
        Error::invalid(
            "onnx attribute",
            format!("{} '{}' should be {want} (type code {})", self.proto.op_type, a.name, a.r#type),
        )
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.find(name) {
            None => Ok(default),
            Some(a) if a.r#type == at::INT => Ok(a.i),
            Some(a) => Err(self.wrong_type(a, "an int")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.find(name) {
            None => Ok(default),
            Some(a) if a.r#type == at::FLOAT => Ok(a.f),
            Some(a) => Err(self.wrong_type(a, "a float")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) if a.r#type == at::INTS => Ok(Some(a.ints.clone())),
            Some(a) => Err(self.wrong_type(a, "a list of ints")),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) if a.r#type == at::STRING => Ok(Some(String::from_utf8_lossy(&a.s).into_owned())),
            Some(a) => Err(self.wrong_type(a, "a string")),
        }
    }

    /// Non-negative ints as usize (strides, pads, kernel sizes).
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>> {
        self.ints(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x).map_err(|_| {
                            Error::invalid(
                                "onnx attribute",
                                format!("{} '{name}' has negative value {x}", self.proto.op_type),
                            )
                        })
                    })
                    .collect()
            })
            .transpose()
    }

    /// Input `i` if present.
    pub fn opt(&self, i: usize) -> Option<&'a Value> {
        self.inputs.get(i).copied().flatten()
    }

    /// Input `i`, required.
    pub fn input(&self, i: usize) -> Result<&'a Value> {
        self.opt(i).ok_or_else(|| {
            Error::invalid(
                "onnx node",
                format!("{} '{}' is missing required input {i}", self.proto.op_type, self.proto.name),
            )
        })
    }

    /// Normalizes a possibly negative axis for a tensor of `rank` (`-1` = last).
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        if a < 0 || a as usize >= rank.max(1) {
            return Err(Error::invalid(
                "onnx node",
                format!("{} axis {axis} out of range for rank {rank}", self.proto.op_type),
            ));
        }
        Ok(a as usize)
    }
}
