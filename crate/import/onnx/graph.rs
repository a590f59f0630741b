//! Loading ONNX models and running their graphs node by node on the reference kernels.
//! This is an interpreter for checking numerics (conformance tests, importer parity), not
//! the engine's execution path: imported models are converted to `.etm` and planned.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use super::attr::Node;
use super::proto::{ModelProto, TensorProto};
use super::value::Value;
use super::{ops, qops};
use crate::base::error::{Error, Result};

/// Largest protobuf file read (model or tensor): larger files are rejected before reading.
pub const MAX_PROTO_BYTES: u64 = 512 << 20;

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    crate::base::io::read_limited(path, MAX_PROTO_BYTES)
}

/// Reads and decodes a `.onnx` file.
pub fn load_model(path: &Path) -> Result<ModelProto> {
    let bytes = read_limited(path)?;
    let model =
        ModelProto::decode(bytes.as_slice()).map_err(|e| Error::parse(path, format!("not a valid ONNX model: {e}")))?;
    if model.graph.is_none() {
        return Err(Error::parse(path, "ONNX model has no graph"));
    }
    Ok(model)
}

/// Reads and decodes a serialized `TensorProto` (`input_0.pb`, ...).
pub fn load_tensor(path: &Path) -> Result<Value> {
    let bytes = read_limited(path)?;
    let t = TensorProto::decode(bytes.as_slice())
        .map_err(|e| Error::parse(path, format!("not a valid ONNX tensor: {e}")))?;
    Value::from_proto(&t, &path.display().to_string())
}

/// The default-domain opset version the model imports (1 if it names none).
pub fn opset_version(model: &ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version)
}

/// Every op type this interpreter executes.
pub fn supported_op_types() -> impl Iterator<Item = &'static str> {
    ops::OP_TYPES.iter().chain(qops::OP_TYPES).copied()
}

/// Nodes whose op type is not supported, as `"OpType (node name)"`, in graph order.
pub fn unsupported_nodes(model: &ModelProto) -> Vec<String> {
    let Some(g) = &model.graph else { return vec![] };
    g.node
        .iter()
        .filter(|n| !(n.domain.is_empty() || n.domain == "ai.onnx") || !supported_op_types().any(|t| t == n.op_type))
        .map(|n| {
            let domain = if n.domain.is_empty() { String::new() } else { format!("{}.", n.domain) };
            format!("{domain}{} ({})", n.op_type, if n.name.is_empty() { "unnamed" } else { &n.name })
        })
        .collect()
}

/// Names of the graph inputs that are not initializers (the values a caller must feed).
pub fn feed_names(model: &ModelProto) -> Vec<String> {
    let Some(g) = &model.graph else { return vec![] };
    g.input.iter().filter(|i| !g.initializer.iter().any(|t| t.name == i.name)).map(|i| i.name.clone()).collect()
}

/// Runs the model's graph on `feeds` (by graph input name), returning its outputs in order.
pub fn run(model: &ModelProto, feeds: Vec<(String, Value)>) -> Result<Vec<Value>> {
    let g = model.graph.as_ref().ok_or_else(|| Error::invalid("onnx", "model has no graph"))?;
    let unsupported = unsupported_nodes(model);
    if !unsupported.is_empty() {
        return Err(Error::unsupported(format!("ONNX ops {}", unsupported.join(", "))));
    }
    let opset = opset_version(model);
    let mut env: HashMap<String, Value> = HashMap::new();
    for t in &g.initializer {
        env.insert(t.name.clone(), Value::from_proto(t, &format!("initializer '{}'", t.name))?);
    }
    env.extend(feeds);
    for node in &g.node {
        let inputs = node
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    return Ok(None);
                }
                env.get(name).map(Some).ok_or_else(|| {
                    Error::invalid(
                        "onnx",
                        format!("node '{}' ({}) reads '{name}', which nothing produced", node.name, node.op_type),
                    )
                })
            })
            .collect::<Result<Vec<Option<&Value>>>>()?;
        let n = Node { proto: node, opset, inputs: &inputs };
        let outputs = ops::run(&node.op_type, &n)
            .or_else(|| qops::run(&node.op_type, &n))
            .unwrap_or_else(|| Err(Error::unsupported(format!("ONNX op {}", node.op_type))))?;
        for (name, v) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                env.insert(name.clone(), v);
            }
        }
    }
    g.output
        .iter()
        .map(|o| {
            env.remove(&o.name)
                .ok_or_else(|| Error::invalid("onnx", format!("graph output '{}' was never produced", o.name)))
        })
        .collect()
}
