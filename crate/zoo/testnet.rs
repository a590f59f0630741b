//! A tiny network for tests: the shapes and op mix of an inverted-residual CNN on 6x6 inputs.

use std::collections::HashMap;

use crate::base::tensor::Tensor;
use crate::model::graph::{Graph, Op, PadSpec};
use crate::ops::gradcheck::values;
use crate::quant::Activation;
use crate::zoo::efficientnet::Builder;

/// stem conv -> one inverted-residual block (expand, depthwise, project, add) -> head
/// conv -> pool -> fc, on 6x6 inputs, with random weights and batch norms.
pub fn tiny_network() -> (Graph, HashMap<String, Tensor>) {
    let mut b = Builder::new(1e-3);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut seed = 0;
    let mut add = |t: &mut HashMap<String, Tensor>, name: &str, shape: Vec<usize>, positive: bool| {
        seed += 1;
        let n = shape.iter().product();
        let v = values(n, seed).into_iter().map(|x| if positive { 1.0 + 0.5 * x } else { 0.5 * x }).collect();
        t.insert(name.to_string(), Tensor::new(shape, v).unwrap());
    };
    let mut conv =
        |b: &mut Builder, t: &mut HashMap<String, Tensor>, name: &str, shape: [usize; 4], groups: usize, act| {
            add(t, &format!("{name}.weight"), shape.to_vec(), false);
            let bn = format!("{name}.bn");
            for (k, pos) in [("weight", true), ("bias", false), ("running_mean", false), ("running_var", true)] {
                add(t, &format!("{bn}.{k}"), vec![shape[0]], pos);
            }
            b.conv_bn(name, &bn, 1, groups, PadSpec::Same, act)
        };
    conv(&mut b, &mut t, "stem", [4, 3, 3, 3], 1, Activation::Relu6);
    let block_in = b.cur;
    conv(&mut b, &mut t, "blocks.0.expand", [8, 1, 1, 4], 1, Activation::Relu6);
    conv(&mut b, &mut t, "blocks.0.dw", [8, 3, 3, 1], 8, Activation::Relu6);
    let proj = conv(&mut b, &mut t, "blocks.0.project", [4, 1, 1, 8], 1, Activation::None);
    b.push("blocks.0.add".into(), Op::Add { activation: Activation::None }, vec![proj, block_in]);
    conv(&mut b, &mut t, "head", [6, 1, 1, 4], 1, Activation::Relu6);
    let input = b.cur;
    let embedding = b.push("pool".into(), Op::GlobalAvgPool { tflite_mean: false }, vec![input]);
    t.insert("fc.weight".into(), Tensor::new(vec![3, 6], values(18, 99)).unwrap());
    let logits = b.push(
        "fc".into(),
        Op::Dense { weight: "fc.weight".into(), bias: None, activation: Activation::None },
        vec![embedding],
    );
    (Graph { input: [6, 6, 3], nodes: b.nodes, embedding, logits }, t)
}
