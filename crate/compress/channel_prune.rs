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
//! one). `score_c^2` is the energy removed from P's output; divided by the energy of P's
//! output (the sum of its channels' variances) it is channel c's relative damage.
//!
//! Allocation ([`plan_channels`]): the network should lose a fraction `f` of its MACs, and
//! layers differ widely in how much they tolerate, so channels are removed globally in order
//! of relative damage per MAC saved (removing a channel of block b saves
//! `H_A W_A Cin + H_D W_D (k^2 + Cout)` MACs) until the saving reaches `f`. Every block keeps
//! at least a quarter of its channels, and a multiple of 4 (which suits the 4-channel SIMD
//! blocks), rounding up. P absorbs the removed channels' means, so the expected output is
//! unchanged:
//!
//! ```text
//! shift_o = sum_{c removed} W_P[o, c] * mean(d_c);   P's BN mean_o -= shift_o  (or bias_o += shift_o)
//! ```
//!
//! A loses rows (weights `[C, 1, 1, Cin]`, its batch norm or bias), D loses rows (`[C, k, k, 1]`,
//! its batch norm or bias, its group count) and P loses input columns (`[Cout, 1, 1, C]`)
//! ([`prune_to`]).

use std::collections::HashSet;

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::exec::cpu_f32::PreparedF32;
use crate::model::etm::{ModelFile, Stored};
use crate::model::graph::Op;

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
    /// Sum over P's output channels of their variances.
    pub out_energy: f64,
}

fn conv_shape(m: &ModelFile, node: usize) -> Option<(&[usize], usize)> {
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
    // Per expansion: (sum, sum of squares) of D's channels and of P's channels, and the count.
    type Sums = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, f64);
    let mut sums: Vec<Sums> = vec![];
    for i in 0..n {
        let values = plan.forward_all(image(i)?)?;
        for (k, e) in exps.iter().enumerate() {
            let (d, p) = (&values[e.depthwise + 1], &values[e.project + 1]);
            let cout = *p.shape().last().unwrap_or(&1);
            if sums.len() <= k {
                sums.push((vec![0.0; e.channels], vec![0.0; e.channels], vec![0.0; cout], vec![0.0; cout], 0.0));
            }
            let (s, s2, ps, ps2, count) = &mut sums[k];
            for (px, py) in d.data().chunks_exact(e.channels).zip(p.data().chunks_exact(cout.max(1))) {
                for ((a, b), &x) in s.iter_mut().zip(s2.iter_mut()).zip(px) {
                    *a += x as f64;
                    *b += x as f64 * x as f64;
                }
                for ((a, b), &x) in ps.iter_mut().zip(ps2.iter_mut()).zip(py) {
                    *a += x as f64;
                    *b += x as f64 * x as f64;
                }
                *count += 1.0;
            }
        }
    }
    let moments = |s: &[f64], s2: &[f64], n: f64| -> (Vec<f64>, Vec<f64>) {
        let mean: Vec<f64> = s.iter().map(|v| v / n).collect();
        // E[x^2] - E[x]^2 leaves rounding noise for a constant channel: below 1e-9 of the
        // mean's square it is zero.
        let var = s2
            .iter()
            .zip(&mean)
            .map(|(v, m)| {
                let var = v / n - m * m;
                if var <= 1e-9 * m * m {
                    0.0
                } else {
                    var
                }
            })
            .collect();
        (mean, var)
    };
    Ok(sums
        .into_iter()
        .map(|(s, s2, ps, ps2, n)| {
            let (mean, var) = moments(&s, &s2, n);
            let out_energy = moments(&ps, &ps2, n).1.iter().sum();
            ChannelStats { mean, var, out_energy }
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

/// Kept channels rounded up to a multiple of 4, and at least a quarter of `c` (and at least 4).
pub fn round_kept(kept: usize, c: usize) -> usize {
    kept.max(c.div_ceil(4)).max(4).div_ceil(4).saturating_mul(4).min(c)
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

/// The projection's weights `[Cout, C]` and its batch-norm factor per output channel.
fn projection(m: &ModelFile, e: &Expansion) -> Result<(Tensor, Vec<f64>)> {
    let Op::Conv2d { weight, batch_norm, .. } = &m.header.graph.nodes[e.project].op else {
        return Err(Error::invalid(OP, "expected a projection convolution"));
    };
    let wp = f32_tensor(m, weight)?.clone();
    let bn_scale: Vec<f64> = match batch_norm {
        Some(bn) => {
            let (g, v) = (f32_tensor(m, &bn.gamma)?, f32_tensor(m, &bn.var)?);
            g.data().iter().zip(v.data()).map(|(&g, &v)| g as f64 / (v as f64 + bn.eps as f64).sqrt()).collect()
        }
        None => vec![1.0; wp.shape()[0]],
    };
    Ok((wp, bn_scale))
}

/// Relative damage of removing each channel of each expansion (see the module header).
pub fn relative_damage(m: &ModelFile, exps: &[Expansion], stats: &[ChannelStats]) -> Result<Vec<Vec<f64>>> {
    if stats.len() != exps.len() || stats.iter().zip(exps).any(|(s, e)| s.mean.len() != e.channels) {
        return Err(Error::shape(OP, "the channel statistics do not match the network"));
    }
    exps.iter()
        .zip(stats)
        .map(|(e, st)| {
            let (wp, bn) = projection(m, e)?;
            let (cout, c) = (wp.shape()[0], e.channels);
            Ok((0..c)
                .map(|ch| {
                    let norm2: f64 = (0..cout).map(|o| (wp.data()[o * c + ch] as f64 * bn[o]).powi(2)).sum();
                    st.var[ch] * norm2 / st.out_energy.max(f64::MIN_POSITIVE)
                })
                .collect())
        })
        .collect()
}

/// MACs saved per removed channel of each expansion.
fn macs_per_channel(m: &ModelFile, exps: &[Expansion]) -> Result<Vec<u64>> {
    let shapes = m.header.graph.infer_shapes(&m.f32_tensors(), 1)?;
    exps.iter()
        .map(|e| {
            let hw = |v: usize| shapes[v].iter().skip(1).take(2).product::<usize>() as u64;
            let g = &m.header.graph.nodes;
            let cin = *shapes[g[e.expand].inputs[0]].last().unwrap_or(&0) as u64;
            let cout = *shapes[e.project + 1].last().unwrap_or(&0) as u64;
            let k2 = conv_shape(m, e.depthwise).map_or(9, |(s, _)| (s[1] * s[2]) as u64);
            Ok(hw(e.expand + 1) * cin + hw(e.depthwise + 1) * (k2 + cout))
        })
        .collect()
}

/// Channels to keep per expansion so the network loses at least `fraction` of its MACs,
/// removing globally in order of relative damage per MAC (see the module header).
pub fn plan_channels(
    m: &ModelFile,
    exps: &[Expansion],
    stats: &[ChannelStats],
    fraction: f32,
) -> Result<Vec<Vec<usize>>> {
    if !(fraction.is_finite() && (0.0..1.0).contains(&fraction)) {
        return Err(Error::invalid(OP, format!("MAC fraction {fraction} is outside [0, 1)")));
    }
    let damage = relative_damage(m, exps, stats)?;
    let per = macs_per_channel(m, exps)?;
    let total = m.header.graph.macs(&m.f32_tensors())? as f64;
    // Each block's channels from least to most damaging.
    let orders: Vec<Vec<usize>> = damage
        .iter()
        .map(|d| {
            let mut o: Vec<usize> = (0..d.len()).collect();
            o.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
            o
        })
        .collect();
    let mut candidates: Vec<(f64, usize)> = vec![];
    for (b, d) in damage.iter().enumerate() {
        candidates.extend(d.iter().map(|&x| (x / per[b].max(1) as f64, b)));
    }
    candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let kept_after = |removed: &[usize]| -> Vec<usize> {
        exps.iter().zip(removed).map(|(e, &r)| round_kept(e.channels - r.min(e.channels), e.channels)).collect()
    };
    let saved = |kept: &[usize]| -> f64 {
        exps.iter().zip(kept).zip(&per).map(|((e, &k), &p)| ((e.channels - k) as u64 * p) as f64).sum()
    };
    // Greedy in global order; rounding each block up to a multiple of 4 gives some back, so
    // the walk goes on until the rounded saving reaches the target (or nothing is left).
    let mut removed = vec![0usize; exps.len()];
    for &(_, b) in &candidates {
        if saved(&kept_after(&removed)) >= fraction as f64 * total {
            break;
        }
        if round_kept(exps[b].channels - removed[b] - 1, exps[b].channels) < exps[b].channels - removed[b] - 1 {
            continue; // the block is at its floor
        }
        removed[b] += 1;
    }
    Ok(kept_after(&removed)
        .iter()
        .zip(&orders)
        .map(|(&k, order)| {
            // Keep the most important k: the tail of the ascending order.
            let mut keep = order[order.len() - k..].to_vec();
            keep.sort_unstable();
            keep
        })
        .collect())
}

/// Keeps channels `keep[b]` of expansion `b` and removes the rest (see the module header).
pub fn prune_to(
    m: &ModelFile,
    exps: &[Expansion],
    stats: &[ChannelStats],
    keep: &[Vec<usize>],
) -> Result<(ModelFile, PruneReport)> {
    if m.is_int8() {
        return Err(Error::invalid(OP, "the model is int8: prune the float model, then quantize the result"));
    }
    if keep.len() != exps.len() || stats.len() != exps.len() {
        return Err(Error::shape(OP, "the kept channels or statistics do not match the network"));
    }
    let macs = |m: &ModelFile| m.header.graph.macs(&m.f32_tensors());
    let macs_before = macs(m)?;
    let mut out = m.clone();
    let mut report =
        PruneReport { blocks: exps.len(), channels_before: 0, channels_after: 0, macs_before, macs_after: 0 };
    for ((e, st), keep) in exps.iter().zip(stats).zip(keep) {
        let c = e.channels;
        if keep.is_empty() || keep.iter().any(|&k| k >= c) || keep.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(OP, "kept channels must be distinct, sorted and in range"));
        }
        let Op::Conv2d { weight: pw, bias: pb, batch_norm: pbn, .. } = out.header.graph.nodes[e.project].op.clone()
        else {
            return Err(Error::invalid(OP, "expected a projection convolution"));
        };
        let (wp, _) = projection(&out, e)?;
        let cout = wp.shape()[0];
        let removed: Vec<usize> = (0..c).filter(|ch| keep.binary_search(ch).is_err()).collect();
        let shift: Vec<f64> =
            (0..cout).map(|o| removed.iter().map(|&ch| wp.data()[o * c + ch] as f64 * st.mean[ch]).sum()).collect();
        // A and D lose rows; P loses columns and absorbs the removed channels' means.
        for node in [e.expand, e.depthwise] {
            let Op::Conv2d { weight, .. } = &out.header.graph.nodes[node].op else { continue };
            let wname = weight.clone();
            let t = select_rows(f32_tensor(&out, &wname)?, keep)?;
            out.tensors.insert(wname, Stored::F32(t));
            slice_channel_params(&mut out, node, keep)?;
        }
        if let Op::Conv2d { groups, .. } = &mut out.header.graph.nodes[e.depthwise].op {
            *groups = keep.len();
        }
        out.tensors.insert(pw.clone(), Stored::F32(select_last(&wp, keep)?));
        let shifted = |t: &Tensor, sign: f64| -> Result<Tensor> {
            Tensor::new(
                t.shape().to_vec(),
                t.data().iter().zip(&shift).map(|(&v, &s)| (v as f64 + sign * s) as f32).collect(),
            )
        };
        match (pbn, pb) {
            (Some(bn), _) => {
                let t = shifted(f32_tensor(&out, &bn.mean)?, -1.0)?;
                out.tensors.insert(bn.mean, Stored::F32(t));
            }
            (None, Some(b)) => {
                let t = shifted(f32_tensor(&out, &b)?, 1.0)?;
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
        report.channels_after += keep.len();
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

/// Plans and applies pruning of at least `fraction` of the network's MACs.
pub fn prune_channels(m: &ModelFile, fraction: f32, stats: &[ChannelStats]) -> Result<(ModelFile, PruneReport)> {
    if m.is_int8() {
        return Err(Error::invalid(OP, "the model is int8: prune the float model, then quantize the result"));
    }
    let exps = find_expansions(m);
    if exps.is_empty() {
        return Err(Error::invalid(OP, "the network has no expand -> depthwise -> project blocks to prune"));
    }
    let keep = plan_channels(m, &exps, stats, fraction)?;
    prune_to(m, &exps, stats, &keep)
}

/// Convolution and dense weights that are exactly zero (what unstructured pruning leaves).
pub fn zero_weights(m: &ModelFile) -> usize {
    m.header
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d { weight, .. } | Op::Dense { weight, .. } => m.tensors.get(weight),
            _ => None,
        })
        .map(|t| match t {
            Stored::F32(t) => t.data().iter().filter(|v| **v == 0.0).count(),
            Stored::I8 { data, .. } => data.iter().filter(|v| **v == 0).count(),
            _ => 0,
        })
        .sum()
}

/// Number of parameters: every stored tensor's elements except batch-norm running
/// statistics and quantization scales and zero points.
pub fn parameter_count(m: &ModelFile) -> usize {
    let running_stats: HashSet<&str> = m
        .header
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d { batch_norm: Some(bn), .. } => Some([bn.mean.as_str(), bn.var.as_str()]),
            _ => None,
        })
        .flatten()
        .collect();
    m.tensors
        .iter()
        .filter(|(k, _)| !running_stats.contains(k.as_str()) && !k.ends_with(".scale") && !k.ends_with(".zero_point"))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preprocess::Preprocess;
    use crate::ops::gradcheck::values;
    use crate::zoo::mobilenet_v2::mobilenet_v2;

    /// MobileNetV2 0.35 on 32x32 inputs (the convolutions and the pool take any size).
    fn small_net() -> ModelFile {
        let (mut graph, tensors) = mobilenet_v2(0.35, 4, 3).unwrap();
        graph.input = [32, 32, 3];
        let labels = (0..4).map(|i| format!("class {i}")).collect();
        ModelFile::float(
            "mobilenet_v2_0.35",
            graph,
            tensors,
            Preprocess { size: 32, ..Default::default() },
            labels,
            "test",
        )
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
        let damage = relative_damage(&m, &exps, &stats).unwrap();
        assert!(damage.iter().all(|d| d.iter().enumerate().all(|(c, &x)| c % 2 == 0 || x == 0.0)));
        let even: Vec<Vec<usize>> = exps.iter().map(|e| (0..e.channels).step_by(2).collect()).collect();
        let (p, report) = prune_to(&m, &exps, &stats, &even).unwrap();
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
        // The planner removes harmless channels first: asked for a small cut, it takes only
        // channels without damage (the constant ones, or dead ones), and it always reaches
        // the MACs asked for.
        let keep = plan_channels(&m, &exps, &stats, 0.1).unwrap();
        assert!(keep.iter().flatten().count() < report.channels_before);
        for ((k, e), d) in keep.iter().zip(&exps).zip(&damage) {
            assert!((0..e.channels).all(|c| k.contains(&c) || d[c] == 0.0), "an informative channel was removed");
            assert!(k.len() % 4 == 0 || k.len() == e.channels);
        }
        for f in [0.1, 0.3, 0.5] {
            let (_, r) = prune_channels(&m, f, &stats).unwrap();
            assert!(r.macs_after as f64 <= (1.0 - f as f64) * r.macs_before as f64, "{f}: {r:?}");
        }
        // Nothing asked, nothing removed; an int8 model or a bad fraction is refused.
        assert_eq!(prune_channels(&m, 0.0, &stats).unwrap().1.macs_after, report.macs_before);
        for f in [1.0, -0.5, f32::NAN] {
            assert!(prune_channels(&m, f, &stats).unwrap_err().to_string().contains("outside [0, 1)"));
        }
        assert!(prune_channels(&m, 0.5, &stats[1..]).is_err());
    }

    #[test]
    fn kept_channel_counts_are_multiples_of_four_and_at_least_a_quarter() {
        assert_eq!(round_kept(45, 96), 48);
        assert_eq!(round_kept(3, 96), 24);
        assert_eq!(round_kept(0, 8), 4);
        assert_eq!(round_kept(1, 3), 3);
        assert_eq!(round_kept(1152, 1152), 1152);
    }
}
