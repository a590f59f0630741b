//! Structured channel pruning of inverted-residual blocks: the network is rewritten into a
//! smaller dense one, so its size, MACs and latency really drop.
//!
//! Pattern ([`find_expansions`]): convolution A (1x1, one group) -> depthwise D (one group
//! per channel) -> convolution P (1x1), where A's output is read only by D and D's only by P
//! (every MBConv block with an expansion in MobileNetV2 and EfficientNet-Lite). The expanded
//! channels `c` (A's outputs, D's channels, P's inputs) are scored by the output energy P
//! loses when channel c is replaced by its mean over calibration images:
//!
//! ```text
//! score_c = std(d_c) * || W~_P[:, c] ||_2,   W~_P[o, c] = W_P[o, c] * gamma_o / sqrt(var_o + eps)
//! ```
//!
//! with `d_c` D's output after its activation, and P's batch norm folded in (`W~ = W` without
//! one). Each block drops the lowest-scoring `fraction` of its expanded channels (keeping a
//! multiple of 4, which suits the 4-channel SIMD blocks, and at least 4), and P absorbs
//! their means so the expected output is unchanged:
//!
//! ```text
//! shift_o = sum_{c removed} W_P[o, c] * mean(d_c);   P's BN mean_o -= shift_o  (or bias_o += shift_o)
//! ```
//!
//! A loses rows (weights `[C, 1, 1, Cin]`, its batch norm or bias), D loses rows (`[C, k, k, 1]`,
//! its batch norm or bias, its group count) and P loses input columns (`[Cout, 1, 1, C]`).
//! The MACs of the three layers fall by the removed fraction.

use std::collections::HashMap;

use super::etm::{ModelFile, Stored};
use super::forward::PreparedF32;
use super::graph::Op;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const OP: &str = "channel pruning";

/// One prunable expansion: node indices of A, D and P, and the expanded channel count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expansion {
    pub expand: usize,
    pub depthwise: usize,
    pub project: usize,
    pub channels: usize,
}

/// Per-channel mean and variance of a depthwise output over calibration images.
#[derive(Clone, Debug, Default)]
pub struct ChannelStats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

fn conv_shape<'a>(m: &'a ModelFile, node: usize) -> Option<(&'a [usize], usize)> {
    match &m.header.graph.nodes.get(node)?.op {
        Op::Conv2d { weight, groups, .. } => Some((m.tensors.get(weight)?.shape(), *groups)),
        _ => None,
    }
}

/// Every A -> D -> P expansion of the network (see the module header).
pub fn find_expansions(m: &ModelFile) -> Vec<Expansion> {
    let g = &m.header.graph;
    let mut readers: Vec<Vec<usize>> = vec![vec![]; g.nodes.len() + 1];
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            if let Some(r) = readers.get_mut(v) {
                r.push(i);
            }
        }
    }
    let mut out = vec![];
    for (d, node) in g.nodes.iter().enumerate() {
        let Some((dw, groups)) = conv_shape(m, d) else { continue };
        let (Some(&v), [c, _, _, 1]) = (node.inputs.first(), dw) else { continue };
        if groups != *c || *c < 2 || v == 0 || readers[v] != [d] {
            continue;
        }
        let a = v - 1;
        let p = match readers[d + 1].as_slice() {
            [p] => *p,
            _ => continue,
        };
        let a_ok = matches!(conv_shape(m, a), Some(([o, 1, 1, _], 1)) if o == c);
        let p_ok = matches!(conv_shape(m, p), Some(([_, 1, 1, i], 1)) if i == c);
        if a_ok && p_ok {
            out.push(Expansion { expand: a, depthwise: d, project: p, channels: *c });
        }
    }
    out
}

/// Mean and variance of each expansion's depthwise output over `n` preprocessed images.
pub fn channel_stats(
    m: &ModelFile,
    exps: &[Expansion],
    n: usize,
    image: &mut dyn FnMut(usize) -> Result<Tensor>,
) -> Result<Vec<ChannelStats>> {
    if n == 0 {
        return Err(Error::invalid(OP, "need at least one calibration image"));
    }
    let plan = PreparedF32::new(&m.header.graph, &m.f32_tensors())?;
    let mut sums: Vec<(Vec<f64>, Vec<f64>, f64)> =
        exps.iter().map(|e| (vec![0.0; e.channels], vec![0.0; e.channels], 0.0)).collect();
    for i in 0..n {
        let values = plan.forward_all(image(i)?)?;
        for (e, (s, s2, count)) in exps.iter().zip(sums.iter_mut()) {
            let d = &values[e.depthwise + 1];
            for px in d.data().chunks_exact(e.channels) {
                for ((a, b), &x) in s.iter_mut().zip(s2.iter_mut()).zip(px) {
                    *a += x as f64;
                    *b += x as f64 * x as f64;
                }
                *count += 1.0;
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|(s, s2, n)| {
            let mean: Vec<f64> = s.iter().map(|v| v / n).collect();
            let var = s2.iter().zip(&mean).map(|(v, m)| (v / n - m * m).max(0.0)).collect();
            ChannelStats { mean, var }
        })
        .collect())
}

fn f32_tensor<'a>(m: &'a ModelFile, name: &str) -> Result<&'a Tensor> {
    match m.tensors.get(name) {
        Some(Stored::F32(t)) => Ok(t),
        Some(_) => Err(Error::invalid(OP, format!("tensor '{name}' is not float: prune the float model"))),
        None => Err(Error::invalid(OP, format!("tensor '{name}' is missing"))),
    }
}

/// Rows `keep` of a tensor's first axis.
fn select_rows(t: &Tensor, keep: &[usize]) -> Result<Tensor> {
    let per = t.len() / t.shape()[0].max(1);
    let mut shape = t.shape().to_vec();
    shape[0] = keep.len();
    Tensor::new(shape, keep.iter().flat_map(|&r| &t.data()[r * per..(r + 1) * per]).copied().collect())
}

/// Entries `keep` of the last axis.
fn select_last(t: &Tensor, keep: &[usize]) -> Result<Tensor> {
    let c = *t.shape().last().unwrap_or(&1);
    let mut shape = t.shape().to_vec();
    if let Some(l) = shape.last_mut() {
        *l = keep.len();
    }
    Tensor::new(shape, t.data().chunks_exact(c.max(1)).flat_map(|row| keep.iter().map(move |&k| row[k])).collect())
}

/// Channels kept when removing `fraction` of `c` (multiple of 4, at least 4, at most `c`).
pub fn kept_channels(c: usize, fraction: f32) -> usize {
    let k = ((c as f32 * (1.0 - fraction)) / 4.0).round() as usize * 4;
    k.clamp(4.min(c), c)
}

/// Replaces the per-channel tensors of a conv node's bias and batch norm by rows `keep`.
fn slice_channel_params(m: &mut ModelFile, node: usize, keep: &[usize]) -> Result<()> {
    let Op::Conv2d { bias, batch_norm, .. } = m.header.graph.nodes[node].op.clone() else {
        return Err(Error::invalid(OP, "expected a convolution"));
    };
    let mut names: Vec<String> = bias.into_iter().collect();
    if let Some(bn) = batch_norm {
        names.extend([bn.gamma, bn.beta, bn.mean, bn.var]);
    }
    for name in names {
        let t = select_rows(f32_tensor(m, &name)?, keep)?;
        m.tensors.insert(name, Stored::F32(t));
    }
    Ok(())
}

/// What [`prune_channels`] did.
#[derive(Clone, Debug)]
pub struct PruneReport {
    pub blocks: usize,
    pub channels_before: usize,
    pub channels_after: usize,
    pub macs_before: u64,
    pub macs_after: u64,
}

/// Removes `fraction` of every expansion's channels (see the module header).
pub fn prune_channels(m: &ModelFile, fraction: f32, stats: &[ChannelStats]) -> Result<(ModelFile, PruneReport)> {
    if m.is_int8() {
        return Err(Error::invalid(OP, "the model is int8: prune the float model, then quantize the result"));
    }
    if !(fraction.is_finite() && (0.0..1.0).contains(&fraction)) {
        return Err(Error::invalid(OP, format!("fraction {fraction} is outside [0, 1)")));
    }
    let exps = find_expansions(m);
    if exps.is_empty() {
        return Err(Error::invalid(OP, "the network has no expand -> depthwise -> project blocks to prune"));
    }
    if stats.len() != exps.len() || stats.iter().zip(&exps).any(|(s, e)| s.mean.len() != e.channels) {
        return Err(Error::shape(OP, "the channel statistics do not match the network"));
    }
    let macs = |m: &ModelFile| m.header.graph.macs(&m.f32_tensors());
    let macs_before = macs(m)?;
    let mut out = m.clone();
    let mut report = PruneReport { blocks: exps.len(), channels_before: 0, channels_after: 0, macs_before, macs_after: 0 };
    for (e, st) in exps.iter().zip(stats) {
        let keep_n = kept_channels(e.channels, fraction);
        let Op::Conv2d { weight: pw, bias: pb, batch_norm: pbn, .. } = out.header.graph.nodes[e.project].op.clone()
        else {
            return Err(Error::invalid(OP, "expected a projection convolution"));
        };
        let wp = f32_tensor(&out, &pw)?.clone();
        let cout = wp.shape()[0];
        let c = e.channels;
        // Per output channel, the factor batch norm applies to the convolution's output.
        let bn_scale: Vec<f64> = match &pbn {
            Some(bn) => {
                let (g, v) = (f32_tensor(&out, &bn.gamma)?, f32_tensor(&out, &bn.var)?);
                g.data().iter().zip(v.data()).map(|(&g, &v)| g as f64 / (v as f64 + bn.eps as f64).sqrt()).collect()
            }
            None => vec![1.0; cout],
        };
        let score: Vec<f64> = (0..c)
            .map(|ch| {
                let norm: f64 = (0..cout).map(|o| (wp.data()[o * c + ch] as f64 * bn_scale[o]).powi(2)).sum();
                st.var[ch].sqrt() * norm.sqrt()
            })
            .collect();
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        let mut keep: Vec<usize> = order[..keep_n].to_vec();
        keep.sort_unstable();
        let removed: Vec<usize> = order[keep_n..].to_vec();
        let shift: Vec<f64> =
            (0..cout).map(|o| removed.iter().map(|&ch| wp.data()[o * c + ch] as f64 * st.mean[ch]).sum()).collect();
        // A and D lose rows; P loses columns and absorbs the removed channels' means.
        for node in [e.expand, e.depthwise] {
            let Op::Conv2d { weight, .. } = &out.header.graph.nodes[node].op else { continue };
            let wname = weight.clone();
            let t = select_rows(f32_tensor(&out, &wname)?, &keep)?;
            out.tensors.insert(wname, Stored::F32(t));
            slice_channel_params(&mut out, node, &keep)?;
        }
        if let Op::Conv2d { groups, .. } = &mut out.header.graph.nodes[e.depthwise].op {
            *groups = keep_n;
        }
        out.tensors.insert(pw.clone(), Stored::F32(select_last(&wp, &keep)?));
        match (pbn, pb) {
            (Some(bn), _) => {
                let mean = f32_tensor(&out, &bn.mean)?;
                let t = Tensor::new(
                    mean.shape().to_vec(),
                    mean.data().iter().zip(&shift).map(|(&m, &s)| (m as f64 - s) as f32).collect(),
                )?;
                out.tensors.insert(bn.mean, Stored::F32(t));
            }
            (None, Some(b)) => {
                let bias = f32_tensor(&out, &b)?;
                let t = Tensor::new(
                    bias.shape().to_vec(),
                    bias.data().iter().zip(&shift).map(|(&v, &s)| (v as f64 + s) as f32).collect(),
                )?;
                out.tensors.insert(b, Stored::F32(t));
            }
            (None, None) => {
                let name = format!("{}.bias", out.header.graph.nodes[e.project].name);
                let t = Tensor::new(vec![cout], shift.iter().map(|&s| s as f32).collect())?;
                out.tensors.insert(name.clone(), Stored::F32(t));
                if let Op::Conv2d { bias, .. } = &mut out.header.graph.nodes[e.project].op {
                    *bias = Some(name);
                }
            }
        }
        report.channels_before += c;
        report.channels_after += keep_n;
    }
    report.macs_after = macs(&out)?;
    out.header.provenance.steps.push(format!(
        "channel-pruned by edgetune {}: {} of {} expanded channels kept in {} blocks, MACs {} -> {}",
        crate::VERSION,
        report.channels_after,
        report.channels_before,
        report.blocks,
        report.macs_before,
        report.macs_after
    ));
    out.validate()?;
    Ok((out, report))
}

/// Number of weights (every stored tensor's elements, batch-norm statistics excluded).
pub fn parameter_count(m: &ModelFile) -> usize {
    let bn: HashMap<&str, ()> = m
        .header
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d { batch_norm: Some(bn), .. } => Some([bn.mean.as_str(), bn.var.as_str()]),
            _ => None,
        })
        .flatten()
        .map(|s| (s, ()))
        .collect();
    m.tensors
        .iter()
        .filter(|(k, _)| !bn.contains_key(k.as_str()) && !k.ends_with(".scale") && !k.ends_with(".zero_point"))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::etm::{Header, Provenance, FORMAT, VERSION};
    use crate::model::mobilenet_v2::mobilenet_v2;
    use crate::ops::gradcheck::values;
    use crate::preprocess::Preprocess;

    /// MobileNetV2 0.35 on 32x32 inputs (the convolutions and the pool take any size).
    fn small_net() -> ModelFile {
        let (mut graph, tensors) = mobilenet_v2(0.35, 4, 3).unwrap();
        graph.input = [32, 32, 3];
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            architecture: "mobilenet_v2_0.35".into(),
            graph,
            preprocess: Preprocess { size: 32, ..Default::default() },
            labels: (0..4).map(|i| format!("class {i}")).collect(),
            quantization: None,
            provenance: Provenance { source: "test".into(), license: "".into(), created_by: "".into(), steps: vec![] },
        };
        ModelFile { header, tensors: tensors.into_iter().map(|(k, v)| (k, Stored::F32(v))).collect() }
    }

    fn image(i: usize) -> Tensor {
        Tensor::new(vec![1, 32, 32, 3], values(32 * 32 * 3, 700 + i as u64)).unwrap()
    }

    fn set(m: &mut ModelFile, name: &str, f: impl Fn(usize, f32) -> f32) {
        let t = f32_tensor(m, name).unwrap();
        let per = t.len() / t.shape()[0];
        let v = t.data().iter().enumerate().map(|(i, &x)| f(i / per, x)).collect();
        let t = Tensor::new(t.shape().to_vec(), v).unwrap();
        m.tensors.insert(name.into(), Stored::F32(t));
    }

    /// Channels whose depthwise output is constant carry no information: removing exactly
    /// those, with their means moved into the projection, leaves the logits unchanged.
    #[test]
    fn removing_constant_channels_with_mean_compensation_keeps_the_logits() {
        let mut m = small_net();
        let exps = find_expansions(&m);
        assert_eq!(exps.len(), 16, "every MobileNetV2 block but the first expands");
        for e in &exps {
            let Op::Conv2d { weight, batch_norm: Some(bn), .. } = m.header.graph.nodes[e.depthwise].op.clone() else {
                panic!("depthwise without batch norm")
            };
            // Odd channels: zero weights, so their output is the constant relu6(beta).
            set(&mut m, &weight, |c, x| if c % 2 == 1 { 0.0 } else { x });
            set(&mut m, &bn.beta, |c, _| 0.2 + 0.1 * (c % 5) as f32);
        }
        let stats = channel_stats(&m, &exps, 3, &mut |i| Ok(image(i))).unwrap();
        let (p, report) = prune_channels(&m, 0.5, &stats).unwrap();
        assert_eq!(report.channels_after * 2, report.channels_before);
        assert!(report.macs_after < report.macs_before * 8 / 10, "{report:?}");
        assert_eq!(p.header.graph.macs(&p.f32_tensors()).unwrap(), report.macs_after);
        assert!(parameter_count(&p) < parameter_count(&m));
        let plan = |m: &ModelFile| PreparedF32::new(&m.header.graph, &m.f32_tensors()).unwrap();
        let (a, b) = (plan(&m), plan(&p));
        for i in 10..13 {
            let (ya, yb) = (a.logits(image(i)).unwrap(), b.logits(image(i)).unwrap());
            let scale = ya.data().iter().fold(1e-6f32, |s, v| s.max(v.abs()));
            for (x, y) in ya.data().iter().zip(yb.data()) {
                assert!((x - y).abs() <= 1e-4 * scale, "{x} vs {y}");
            }
        }
        // Pruning the pruned model by 0 changes nothing; an int8 model or a bad fraction is refused.
        let stats2 = channel_stats(&p, &find_expansions(&p), 1, &mut |i| Ok(image(i))).unwrap();
        assert_eq!(prune_channels(&p, 0.0, &stats2).unwrap().1.macs_after, report.macs_after);
        for f in [1.0, -0.5, f32::NAN] {
            assert!(prune_channels(&m, f, &stats).unwrap_err().to_string().contains("outside [0, 1)"));
        }
        assert!(prune_channels(&m, 0.5, &stats[1..]).is_err());
    }

    #[test]
    fn kept_channel_counts_are_multiples_of_four() {
        assert_eq!(kept_channels(96, 0.5), 48);
        assert_eq!(kept_channels(96, 0.3), 68);
        assert_eq!(kept_channels(8, 0.99), 4);
        assert_eq!(kept_channels(3, 0.9), 3);
        assert_eq!(kept_channels(1152, 0.0), 1152);
    }
}
