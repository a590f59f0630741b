//! MobileNetV2 with a width multiplier, as code (for distillation students and interop).
//!
//! torchvision's definition, input 224x224x3:
//! ```text
//! stem      conv 3x3 s2 3->c0, BN, ReLU6                 c0 = make_divisible(32 * width)
//! blocks    (t, c, n, s): (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)
//!           [expand 1x1 (t > 1), BN, ReLU6] -> depthwise 3x3 s, BN, ReLU6 -> project 1x1, BN
//!           [+ input when s = 1 and in = out]; out = make_divisible(c * width)
//! head      conv 1x1 -> make_divisible(1280 * max(1, width)), BN, ReLU6; global average pool
//! fc        dense -> classes
//! ```
//! `make_divisible(v) = max(8, floor(v / 8 + 1/2) * 8)`, plus 8 if that lost more than 10%.
//! 3x3 convolutions pad 1 on every side (torchvision), BN eps 1e-5. Tensor names follow
//! torchvision's state dict (`features.0.0.weight`, `features.1.conv.0.0.weight`, ...,
//! `classifier.1.weight`) so its checkpoints and ONNX exports map one to one.
//!
//! [`mobilenet_v2`] also returns freshly initialized weights (He-normal convolutions, BN
//! identity, classifier N(0, 0.01)), deterministic for a seed.

use std::collections::HashMap;

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::model::graph::{Graph, Op, PadSpec};
use crate::quant::Activation;
use crate::zoo::efficientnet::Builder;

/// torchvision's BN epsilon.
pub const BN_EPS: f32 = 1e-5;
/// `(expand t, channels c, repeats n, stride s)` per stage.
pub const SETTINGS: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// Channel rounding of the MobileNet family (multiple of 8, at most 10% below `v`).
pub fn make_divisible(v: f64) -> usize {
    let mut n = (((v + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (n as f64) < 0.9 * v {
        n += 8;
    }
    n
}

/// Deterministic normal samples (xorshift64* + Box-Muller).
struct Normal(u64);
impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn sample(&mut self, std: f64) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
    }
}

struct Init<'a> {
    rng: Normal,
    tensors: &'a mut HashMap<String, Tensor>,
}

impl Init<'_> {
    /// conv weight OHWI (He normal, fan out) + BN identity statistics.
    fn conv_bn(&mut self, conv: &str, bn: &str, shape: [usize; 4]) -> Result<()> {
        let fan_out = (shape[0] * shape[1] * shape[2]) as f64;
        let std = (2.0 / fan_out).sqrt();
        let n: usize = shape.iter().product();
        let w = (0..n).map(|_| self.rng.sample(std)).collect();
        self.tensors.insert(format!("{conv}.weight"), Tensor::new(shape.to_vec(), w)?);
        let c = shape[0];
        for (name, v) in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)] {
            self.tensors.insert(format!("{bn}.{name}"), Tensor::new(vec![c], vec![v; c])?);
        }
        Ok(())
    }
}

/// A conv + BN node with torchvision's symmetric `kernel / 2` padding.
fn conv_bn_node(
    b: &mut Builder,
    conv: &str,
    bn: &str,
    kernel: usize,
    stride: usize,
    groups: usize,
    act: Activation,
) -> usize {
    let pad = kernel / 2;
    b.conv_bn(conv, bn, stride, groups, PadSpec::Explicit { top: pad, left: pad, bottom: pad, right: pad }, act)
}

/// MobileNetV2 at `width` with `classes` outputs: the graph and initialized weights.
pub fn mobilenet_v2(width: f32, classes: usize, seed: u64) -> Result<(Graph, HashMap<String, Tensor>)> {
    if !(width.is_finite() && width > 0.0 && width <= 4.0) || classes == 0 {
        return Err(Error::invalid("mobilenet_v2", format!("width {width} must be in (0, 4], classes {classes} >= 1")));
    }
    let mut tensors = HashMap::new();
    let mut init = Init { rng: Normal(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1), tensors: &mut tensors };
    let mut b = Builder::new(BN_EPS);
    let mut cin = make_divisible(32.0 * width as f64);
    init.conv_bn("features.0.0", "features.0.1", [cin, 3, 3, 3])?;
    conv_bn_node(&mut b, "features.0.0", "features.0.1", 3, 2, 1, Activation::Relu6);
    let mut idx = 1;
    for &(t, c, n, s) in &SETTINGS {
        let cout = make_divisible(c as f64 * width as f64);
        for r in 0..n {
            let stride = if r == 0 { s } else { 1 };
            let hidden = cin * t;
            let p = format!("features.{idx}.conv");
            let block_in = b.cur;
            let mut j = 0;
            if t != 1 {
                init.conv_bn(&format!("{p}.0.0"), &format!("{p}.0.1"), [hidden, 1, 1, cin])?;
                conv_bn_node(&mut b, &format!("{p}.0.0"), &format!("{p}.0.1"), 1, 1, 1, Activation::Relu6);
                j = 1;
            }
            init.conv_bn(&format!("{p}.{j}.0"), &format!("{p}.{j}.1"), [hidden, 3, 3, 1])?;
            conv_bn_node(&mut b, &format!("{p}.{j}.0"), &format!("{p}.{j}.1"), 3, stride, hidden, Activation::Relu6);
            let (conv, bn) = (format!("{p}.{}", j + 1), format!("{p}.{}", j + 2));
            init.conv_bn(&conv, &bn, [cout, 1, 1, hidden])?;
            let proj = conv_bn_node(&mut b, &conv, &bn, 1, 1, 1, Activation::None);
            if stride == 1 && cin == cout {
                b.push(format!("features.{idx}.add"), Op::Add { activation: Activation::None }, vec![proj, block_in]);
            }
            cin = cout;
            idx += 1;
        }
    }
    let last = make_divisible(1280.0 * (width as f64).max(1.0));
    let (conv, bn) = (format!("features.{idx}.0"), format!("features.{idx}.1"));
    init.conv_bn(&conv, &bn, [last, 1, 1, cin])?;
    conv_bn_node(&mut b, &conv, &bn, 1, 1, 1, Activation::Relu6);
    let input = b.cur;
    let embedding = b.push("pool".into(), Op::GlobalAvgPool { tflite_mean: false }, vec![input]);
    let fc: Vec<f32> = (0..classes * last).map(|_| init.rng.sample(0.01)).collect();
    tensors.insert("classifier.1.weight".into(), Tensor::new(vec![classes, last], fc)?);
    tensors.insert("classifier.1.bias".into(), Tensor::new(vec![classes], vec![0.0; classes])?);
    let logits = b.push(
        "classifier.1".into(),
        Op::Dense {
            weight: "classifier.1.weight".into(),
            bias: Some("classifier.1.bias".into()),
            activation: Activation::None,
        },
        vec![embedding],
    );
    let graph = Graph { input: [224, 224, 3], nodes: b.nodes, embedding, logits };
    graph.infer_shapes(&tensors, 1)?;
    Ok((graph, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trainable parameters as torchvision counts them (conv/fc weights, fc bias, BN gamma and beta).
    fn torchvision_params(t: &HashMap<String, Tensor>) -> usize {
        t.iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, v)| v.len())
            .sum()
    }

    #[test]
    fn matches_torchvision_sizes() {
        assert_eq!((make_divisible(32.0 * 0.35), make_divisible(16.0 * 0.35), make_divisible(24.0 * 0.35)), (16, 8, 8));
        let (g, t) = mobilenet_v2(1.0, 1000, 1).unwrap();
        assert_eq!(torchvision_params(&t), 3_504_872); // torchvision.models.mobilenet_v2()
        assert_eq!(g.macs(&t).unwrap(), 300_774_272);
        let (g, t) = mobilenet_v2(0.35, 10, 1).unwrap();
        assert_eq!(g.num_classes(&t).unwrap(), 10);
        assert_eq!(g.infer_shapes(&t, 2).unwrap()[g.embedding], vec![2, 1280]);
        assert!(mobilenet_v2(0.0, 10, 1).is_err());
    }

    #[test]
    fn runs_and_is_deterministic() {
        // At 96x96 (the network is convolutional up to the pool): the wasm32-wasip1 run of
        // these tests keeps its memory small.
        let (mut g, t) = mobilenet_v2(0.35, 10, 7).unwrap();
        g.input = [96, 96, 3];
        let plan = crate::exec::cpu_f32::PreparedF32::new(&g, &t).unwrap();
        let x = Tensor::new(vec![1, 96, 96, 3], (0..96 * 96 * 3).map(|i| ((i % 255) as f32 - 127.0) / 128.0).collect())
            .unwrap();
        let y = plan.logits(x.clone()).unwrap();
        assert_eq!(y.shape(), &[1, 10]);
        assert!(y.data().iter().all(|v| v.is_finite()));
        let (mut g2, t2) = mobilenet_v2(0.35, 10, 7).unwrap();
        g2.input = [96, 96, 3];
        assert_eq!(crate::exec::cpu_f32::PreparedF32::new(&g2, &t2).unwrap().logits(x).unwrap(), y);
    }
}
