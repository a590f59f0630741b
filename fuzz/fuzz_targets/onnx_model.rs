//! ONNX protobuf decoding and the checks made before running a model: decode, list the
//! unsupported nodes and the feeds, and turn every initializer into a typed value.
#![no_main]
use edgetune::import::onnx::proto::ModelProto;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = ModelProto::decode(data) {
        let _ = edgetune::import::onnx::graph::unsupported_nodes(&model);
        let _ = edgetune::import::onnx::graph::feed_names(&model);
        if let Some(g) = &model.graph {
            for t in &g.initializer {
                let _ = edgetune::import::onnx::value::Value::from_proto(t, "fuzz");
            }
        }
    }
});
