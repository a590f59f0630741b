//! EfficientNet-Lite0 as code, and import of its PyTorch checkpoint.
//!
//! Architecture (Lite variant: no squeeze-excite, ReLU6, stem and head not rescaled,
//! TF-"same" padding, batch norm eps 1e-3), input 224x224x3:
//! ```text
//! stem     conv 3x3 s2 3->32, BN, ReLU6                         112x112x32
//! MBConv   [expand 1x1 (e>1), BN, ReLU6] -> depthwise kxk s, BN, ReLU6
//!          -> project 1x1, BN [-> + input when s = 1 and in = out]
//!          stages (repeats, k, s, e, in, out): (1,3,1,1,32,16) (2,3,2,6,16,24) (2,5,2,6,24,40)
//!          (3,3,2,6,40,80) (3,5,1,6,80,112) (4,5,2,6,112,192) (1,3,1,6,192,320)   7x7x320
//! head     conv 1x1 320->1280, BN, ReLU6; global average pool (the 1280-d embedding)
//! fc       dense 1280 -> 1000
//! ```
//! Node and tensor names follow the lukemelas/EfficientNet-PyTorch checkpoint (`_conv_stem`,
//! `_bn0`, `_blocks.N._expand_conv`, `_bn0/_bn1/_bn2`, `_conv_head`, `_bn1`, `_fc`), so the
//! checkpoint maps 1:1; convolution weights are transposed from OIHW to OHWI on import.

use std::collections::HashMap;
use std::path::Path;

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::import::torch::checkpoint::read_legacy_checkpoint;
use crate::model::graph::{BatchNormRef, Graph, Node, Op, PadSpec};
use crate::ops::layout::channels_first_to_last;
use crate::quant::Activation;

/// Batch-norm epsilon of the Lite models.
pub const BN_EPS: f32 = 1e-3;

/// `(repeats, kernel, stride, expand ratio, in channels, out channels)` per stage.
pub const LITE0_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Incrementally builds a graph; `cur` is the value the next node reads.
pub(crate) struct Builder {
    pub nodes: Vec<Node>,
    pub cur: usize,
    /// Batch-norm epsilon of the architecture.
    pub bn_eps: f32,
}

impl Builder {
    pub fn new(bn_eps: f32) -> Self {
        Builder { nodes: vec![], cur: 0, bn_eps }
    }
    pub fn push(&mut self, name: String, op: Op, inputs: Vec<usize>) -> usize {
        self.nodes.push(Node { name, op, inputs });
        self.cur = self.nodes.len();
        self.cur
    }
    /// conv (no bias) + BN named `bn` + activation.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        stride: usize,
        groups: usize,
        padding: PadSpec,
        act: Activation,
    ) -> usize {
        let op = Op::Conv2d {
            weight: format!("{conv}.weight"),
            bias: None,
            batch_norm: Some(BatchNormRef {
                gamma: format!("{bn}.weight"),
                beta: format!("{bn}.bias"),
                mean: format!("{bn}.running_mean"),
                var: format!("{bn}.running_var"),
                eps: self.bn_eps,
            }),
            stride: [stride, stride],
            padding,
            groups,
            activation: act,
        };
        let input = self.cur;
        self.push(conv.to_string(), op, vec![input])
    }
}

/// The EfficientNet-Lite0 graph (the class count is the fc weights' first dimension).
pub fn efficientnet_lite0_graph() -> Graph {
    let mut b = Builder::new(BN_EPS);
    b.conv_bn("_conv_stem", "_bn0", 2, 1, PadSpec::Same, Activation::Relu6);
    let mut idx = 0;
    // The kernel size comes with the depthwise weights; the table keeps it for reference.
    for &(repeats, _kernel, s, e, cin, cout) in &LITE0_STAGES {
        for r in 0..repeats {
            let (stride, inc) = if r == 0 { (s, cin) } else { (1, cout) };
            let p = format!("_blocks.{idx}");
            let block_in = b.cur;
            if e != 1 {
                b.conv_bn(&format!("{p}._expand_conv"), &format!("{p}._bn0"), 1, 1, PadSpec::Same, Activation::Relu6);
            }
            b.conv_bn(
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                stride,
                inc * e,
                PadSpec::Same,
                Activation::Relu6,
            );
            let proj =
                b.conv_bn(&format!("{p}._project_conv"), &format!("{p}._bn2"), 1, 1, PadSpec::Same, Activation::None);
            if stride == 1 && inc == cout {
                b.push(format!("{p}._add"), Op::Add { activation: Activation::None }, vec![proj, block_in]);
            }
            idx += 1;
        }
    }
    b.conv_bn("_conv_head", "_bn1", 1, 1, PadSpec::Same, Activation::Relu6);
    let input = b.cur;
    let embedding = b.push("_avg_pool".into(), Op::GlobalAvgPool { tflite_mean: false }, vec![input]);
    let logits = b.push(
        "_fc".into(),
        Op::Dense { weight: "_fc.weight".into(), bias: Some("_fc.bias".into()), activation: Activation::None },
        vec![embedding],
    );
    Graph { input: [224, 224, 3], nodes: b.nodes, embedding, logits }
}

/// Converts checkpoint tensors to the engine's layouts: 4-D conv weights OIHW -> OHWI.
pub fn to_engine_layout(tensors: Vec<(String, Tensor)>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(name, t)| {
            if t.shape().len() == 4 {
                let (d, s) = channels_first_to_last(t.data(), t.shape())?;
                Ok((name, Tensor::new(s, d)?))
            } else {
                Ok((name, t))
            }
        })
        .collect()
}

/// Names the graph references that are missing from `tensors`, and tensors no node uses.
pub fn check_tensor_names(graph: &Graph, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut used: Vec<&str> = vec![];
    for n in &graph.nodes {
        match &n.op {
            Op::Conv2d { weight, bias, batch_norm, .. } => {
                used.push(weight);
                used.extend(bias.as_deref());
                if let Some(bn) = batch_norm {
                    used.extend([bn.gamma.as_str(), &bn.beta, &bn.mean, &bn.var]);
                }
            }
            Op::Dense { weight, bias, .. } => {
                used.push(weight);
                used.extend(bias.as_deref());
            }
            _ => {}
        }
    }
    let missing: Vec<&str> = used.iter().copied().filter(|u| !tensors.contains_key(*u)).collect();
    let mut extra: Vec<&str> = tensors.keys().map(String::as_str).filter(|k| !used.contains(k)).collect();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::invalid(
            "import",
            format!("checkpoint does not match EfficientNet-Lite0: missing {missing:?}, unexpected {extra:?}"),
        ));
    }
    Ok(())
}

/// Reads the EfficientNet-Lite0 checkpoint and checks it against the architecture.
pub fn import_lite0_checkpoint(path: &Path) -> Result<(Graph, HashMap<String, Tensor>)> {
    let tensors = to_engine_layout(read_legacy_checkpoint(path)?)?;
    let graph = efficientnet_lite0_graph();
    check_tensor_names(&graph, &tensors).map_err(|e| Error::parse(path, e.to_string()))?;
    graph.infer_shapes(&tensors, 1).map_err(|e| Error::parse(path, e.to_string()))?;
    Ok((graph, tensors))
}
