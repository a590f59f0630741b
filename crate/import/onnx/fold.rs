//! Constant folding of the shape arithmetic exporters leave in graphs, evaluated on
//! [`Value`]s when every input of a node is a constant (an initializer, a `Constant`, or an
//! earlier folded node). PyTorch writes a constant `F.pad` as
//! `ConstantOfShape -> Concat -> Reshape -> Slice(step -1) -> Transpose -> Reshape -> Cast`
//! computing the pads; older exports compute a flatten's shape with `Shape -> Gather ->
//! Unsqueeze -> Concat`. Folding them leaves the Pad or Reshape with a constant input, which
//! the importer maps as usual.
//!
//! Data movement (Slice, Transpose, Gather, Concat, Squeeze, Unsqueeze) is an index map
//! `out[i] = in[src(i)]` over row-major data, so one `take` serves every element type.
//! Arithmetic (Add, Sub, Mul, Div) is on equal shapes or a scalar, in the inputs' type.

use super::attr::Node;
use super::proto::{data_type as dt, NodeProto};
use super::value::{Data, Value};
use crate::base::error::{Error, Result};
use crate::base::tensor::numel;

/// Op types folded when all their inputs are constants.
pub const FOLDABLE: &[&str] = &[
    "Add",
    "Cast",
    "Concat",
    "ConstantOfShape",
    "Div",
    "Gather",
    "Identity",
    "Mul",
    "Reshape",
    "Shape",
    "Slice",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// Op types that exist in graphs only as shape arithmetic (an error when an input is computed).
pub const SHAPE_ONLY: &[&str] =
    &["Cast", "ConstantOfShape", "Div", "Gather", "Shape", "Slice", "Sub", "Transpose", "Unsqueeze"];

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `out[i] = data[src[i]]`.
fn take(data: &Data, src: &[usize]) -> Data {
    fn pick<T: Copy>(v: &[T], src: &[usize]) -> Vec<T> {
        src.iter().map(|&i| v[i]).collect()
    }
    match data {
        Data::F32(v) => Data::F32(pick(v, src)),
        Data::U8(v) => Data::U8(pick(v, src)),
        Data::I8(v) => Data::I8(pick(v, src)),
        Data::I32(v) => Data::I32(pick(v, src)),
        Data::I64(v) => Data::I64(pick(v, src)),
    }
}

/// Source index of every output element of `out_shape`, from a map of output coordinates to
/// input coordinates.
fn gather_indices(in_shape: &[usize], out_shape: &[usize], map: impl Fn(&[usize], &mut [usize])) -> Vec<usize> {
    let (n, is) = (out_shape.iter().product::<usize>(), strides(in_shape));
    let mut coord = vec![0usize; out_shape.len()];
    let mut src = vec![0usize; in_shape.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        map(&coord, &mut src);
        out.push(src.iter().zip(&is).map(|(a, b)| a * b).sum());
        for d in (0..coord.len()).rev() {
            coord[d] += 1;
            if coord[d] < out_shape[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    out
}

fn axes_of(n: &Node, input: usize, rank: usize) -> Result<Option<Vec<usize>>> {
    let raw = match n.opt(input) {
        Some(v) => Some(v.as_i64s("axes")?),
        None => n.ints("axes")?,
    };
    raw.map(|a| a.into_iter().map(|x| n.axis(x, rank)).collect()).transpose()
}

fn slice(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let rank = x.shape.len();
    let starts = n.input(1)?.as_i64s("Slice starts")?;
    let ends = n.input(2)?.as_i64s("Slice ends")?;
    let axes = axes_of(n, 3, rank)?.unwrap_or_else(|| (0..starts.len()).collect());
    let steps = match n.opt(4) {
        Some(s) => s.as_i64s("Slice steps")?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(Error::invalid("Slice", "starts, ends, axes and steps differ in length"));
    }
    // Per axis: first index and step; output length.
    let mut first = vec![0i64; rank];
    let mut step = vec![1i64; rank];
    let mut shape = x.shape.clone();
    for k in 0..starts.len() {
        let (a, s) = (axes[k], steps[k]);
        if s == 0 {
            return Err(Error::invalid("Slice", "step 0"));
        }
        let dim = x.shape[a] as i64;
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        let (b, e) = if s > 0 {
            (norm(starts[k]).clamp(0, dim), norm(ends[k]).clamp(0, dim))
        } else {
            (norm(starts[k]).clamp(-1, dim - 1), norm(ends[k]).clamp(-1, dim - 1))
        };
        let len = if s > 0 { (e - b + s - 1).div_euclid(s) } else { (b - e + (-s) - 1).div_euclid(-s) };
        (first[a], step[a], shape[a]) = (b, s, len.max(0) as usize);
    }
    let src = gather_indices(&x.shape, &shape, |o, i| {
        for d in 0..o.len() {
            i[d] = (first[d] + o[d] as i64 * step[d]) as usize;
        }
    });
    Value::new(shape, take(&x.data, &src))
}

fn transpose(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let rank = x.shape.len();
    let perm = match n.usizes("perm")? {
        Some(p) => p,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
        return Err(Error::invalid("Transpose", format!("perm {perm:?} for rank {rank}")));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let src = gather_indices(&x.shape, &shape, |o, i| {
        for (d, &p) in perm.iter().enumerate() {
            i[p] = o[d];
        }
    });
    Value::new(shape, take(&x.data, &src))
}

fn concat(n: &Node) -> Result<Value> {
    let parts: Vec<&Value> = (0..n.proto.input.len()).map(|i| n.input(i)).collect::<Result<_>>()?;
    let first = parts.first().ok_or_else(|| Error::invalid("Concat", "no inputs"))?;
    let rank = first.shape.len();
    let axis = n.axis(n.int("axis", 0)?, rank)?;
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for p in &parts {
        let same_rest = p.shape.len() == rank && (0..rank).all(|d| d == axis || p.shape[d] == first.shape[d]);
        if !same_rest || std::mem::discriminant(&p.data) != std::mem::discriminant(&first.data) {
            return Err(Error::shape("Concat", format!("{:?} and {:?} do not concatenate", first.shape, p.shape)));
        }
        shape[axis] += p.shape[axis];
    }
    // Output rows (everything before the axis) take each part's block in turn: stack the
    // parts, then gather.
    let outer: usize = first.shape[..axis].iter().product();
    let (mut starts, mut at) = (vec![], 0);
    for p in &parts {
        starts.push(at);
        at += p.data.len();
    }
    let mut src = Vec::with_capacity(at);
    for o in 0..outer {
        for (p, &start) in parts.iter().zip(&starts) {
            let block = p.data.len() / outer.max(1);
            src.extend(start + o * block..start + (o + 1) * block);
        }
    }
    let stacked = stack(&parts.iter().map(|p| &p.data).collect::<Vec<_>>())?;
    Value::new(shape, take(&stacked, &src))
}

/// The parts' data one after another (all of one element type).
fn stack(parts: &[&Data]) -> Result<Data> {
    fn cat<T: Copy>(parts: &[&Data], get: impl Fn(&Data) -> Option<&Vec<T>>) -> Result<Vec<T>> {
        let mut out = vec![];
        for p in parts {
            out.extend_from_slice(get(p).ok_or_else(|| Error::invalid("Concat", "mixed element types"))?);
        }
        Ok(out)
    }
    Ok(match parts.first() {
        Some(Data::F32(_)) | None => Data::F32(cat(parts, |d| if let Data::F32(v) = d { Some(v) } else { None })?),
        Some(Data::U8(_)) => Data::U8(cat(parts, |d| if let Data::U8(v) = d { Some(v) } else { None })?),
        Some(Data::I8(_)) => Data::I8(cat(parts, |d| if let Data::I8(v) = d { Some(v) } else { None })?),
        Some(Data::I32(_)) => Data::I32(cat(parts, |d| if let Data::I32(v) = d { Some(v) } else { None })?),
        Some(Data::I64(_)) => Data::I64(cat(parts, |d| if let Data::I64(v) = d { Some(v) } else { None })?),
    })
}

fn gather(n: &Node) -> Result<Value> {
    let (x, idx) = (n.input(0)?, n.input(1)?);
    let rank = x.shape.len();
    let axis = n.axis(n.int("axis", 0)?, rank)?;
    let dim = x.shape[axis] as i64;
    let ids: Vec<usize> = idx
        .as_i64s("Gather indices")?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                return Err(Error::invalid("Gather", format!("index {i} out of range for {dim}")));
            }
            Ok(j as usize)
        })
        .collect::<Result<_>>()?;
    let mut shape = x.shape[..axis].to_vec();
    shape.extend(&idx.shape);
    shape.extend(&x.shape[axis + 1..]);
    let ir = idx.shape.len();
    let is = strides(&idx.shape);
    let src = gather_indices(&x.shape, &shape, |o, i| {
        i[..axis].copy_from_slice(&o[..axis]);
        let flat: usize = o[axis..axis + ir].iter().zip(&is).map(|(a, b)| a * b).sum();
        i[axis] = ids[flat];
        i[axis + 1..].copy_from_slice(&o[axis + ir..]);
    });
    Value::new(shape, take(&x.data, &src))
}

fn unsqueeze(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let rank = x.shape.len();
    let raw = match n.opt(1) {
        Some(v) => v.as_i64s("Unsqueeze axes")?,
        None => n.ints("axes")?.unwrap_or_default(),
    };
    let out_rank = rank + raw.len();
    let mut axes: Vec<usize> = raw.iter().map(|&a| n.axis(a, out_rank)).collect::<Result<_>>()?;
    axes.sort_unstable();
    let mut shape = x.shape.clone();
    for a in axes {
        shape.insert(a.min(shape.len()), 1);
    }
    Value::new(shape, x.data.clone())
}

fn squeeze(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let axes = axes_of(n, 1, x.shape.len())?;
    let shape: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .filter(|&(d, &s)| !(s == 1 && axes.as_ref().is_none_or(|a| a.contains(&d))))
        .map(|(_, &s)| s)
        .collect();
    Value::new(shape, x.data.clone())
}

fn cast(n: &Node) -> Result<Value> {
    let x = n.input(0)?;
    let to = n.int("to", dt::FLOAT as i64)? as i32;
    // Integers convert exactly (shape arithmetic holds sentinels like i64::MAX); floats to
    // integers truncate toward zero, as ONNX's Cast does.
    let (ints, floats): (Vec<i64>, Vec<f64>) = match &x.data {
        Data::F32(v) => (v.iter().map(|&a| a as i64).collect(), v.iter().map(|&a| a as f64).collect()),
        _ => {
            let v = x.as_i64s("Cast")?;
            let f = v.iter().map(|&a| a as f64).collect();
            (v, f)
        }
    };
    let data = match to {
        dt::FLOAT => Data::F32(floats.iter().map(|&v| v as f32).collect()),
        dt::INT64 => Data::I64(ints),
        dt::INT32 => Data::I32(ints.iter().map(|&v| v as i32).collect()),
        dt::INT8 => Data::I8(ints.iter().map(|&v| v as i8).collect()),
        dt::UINT8 => Data::U8(ints.iter().map(|&v| v as u8).collect()),
        other => return Err(Error::unsupported(format!("Cast to {}", dt::name(other)))),
    };
    Value::new(x.shape.clone(), data)
}

fn constant_of_shape(n: &Node) -> Result<Value> {
    let shape: Vec<usize> = n
        .input(0)?
        .as_i64s("ConstantOfShape shape")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| Error::shape("ConstantOfShape", format!("dimension {d}"))))
        .collect::<Result<_>>()?;
    let len = numel("ConstantOfShape", &shape)?;
    let fill = match n.proto.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()) {
        Some(t) => Value::from_proto(t, "ConstantOfShape value")?,
        None => Value::f32(vec![1], vec![0.0])?,
    };
    let data = take(&fill.data, &vec![0; len]);
    if fill.data.is_empty() {
        return Err(Error::invalid("ConstantOfShape", "empty value"));
    }
    Value::new(shape, data)
}

fn arithmetic(n: &Node, op: &str) -> Result<Value> {
    let (a, b) = (n.input(0)?, n.input(1)?);
    let shape = match (a.data.len(), b.data.len()) {
        (x, y) if a.shape == b.shape || y == 1 || x == y => a.shape.clone(),
        (1, _) => b.shape.clone(),
        _ => {
            return Err(Error::unsupported(format!(
                "{op} of shapes {:?} and {:?} in shape arithmetic",
                a.shape, b.shape
            )))
        }
    };
    let len = a.data.len().max(b.data.len());
    let at = |v: &Value, i: usize| if v.data.len() == 1 { 0 } else { i };
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(
            (0..len)
                .map(|i| {
                    let (p, q) = (x[at(a, i)], y[at(b, i)]);
                    match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect(),
        ),
        _ => {
            let (x, y) = (a.as_i64s(op)?, b.as_i64s(op)?);
            let r = (0..len)
                .map(|i| {
                    let (p, q) = (x[at(a, i)], y[at(b, i)]);
                    match op {
                        "Add" => Ok(p.wrapping_add(q)),
                        "Sub" => Ok(p.wrapping_sub(q)),
                        "Mul" => Ok(p.wrapping_mul(q)),
                        _ if q == 0 => Err(Error::invalid("Div", "integer division by zero")),
                        // Integer division truncates toward zero, as onnxruntime's does.
                        _ => Ok(p.wrapping_div(q)),
                    }
                })
                .collect::<Result<Vec<i64>>>()?;
            match &a.data {
                Data::I32(_) => Data::I32(r.into_iter().map(|v| v as i32).collect()),
                _ => Data::I64(r),
            }
        }
    };
    Value::new(shape, data)
}

/// Evaluates `n` on constant inputs (`inputs[i]` is `None` for an absent optional input).
pub fn fold(n: &NodeProto, opset: i64, inputs: &[Option<&Value>]) -> Result<Value> {
    let node = Node { proto: n, opset, inputs };
    match n.op_type.as_str() {
        "Slice" => slice(&node),
        "Transpose" => transpose(&node),
        "Concat" => concat(&node),
        "Gather" => gather(&node),
        "Unsqueeze" => unsqueeze(&node),
        "Squeeze" => squeeze(&node),
        "Cast" => cast(&node),
        "ConstantOfShape" => constant_of_shape(&node),
        "Identity" => Ok(node.input(0)?.clone()),
        "Shape" => {
            let x = node.input(0)?;
            Value::new(vec![x.shape.len()], Data::I64(x.shape.iter().map(|&d| d as i64).collect()))
        }
        op @ ("Add" | "Sub" | "Mul" | "Div") => arithmetic(&node, op),
        "Reshape" => super::ops::reshape(&node),
        other => Err(Error::unsupported(format!("constant folding of {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::onnx::proto::AttributeProto;

    fn node(op: &str, inputs: usize, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: (0..inputs).map(|i| format!("in{i}")).collect(),
            output: vec!["out".into()],
            attribute: attrs,
            ..Default::default()
        }
    }
    fn ints(v: &[i64]) -> Value {
        Value::new(vec![v.len()], Data::I64(v.to_vec())).unwrap()
    }
    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: name.into(), i: v, r#type: 2, ..Default::default() }
    }

    /// PyTorch's constant F.pad subgraph: pads (l, r, t, b) for the last two dims become
    /// ONNX pads [0, 0, t, l, 0, 0, b, r].
    #[test]
    fn folds_pytorchs_pad_arithmetic() {
        let torch_pads = ints(&[1, 2, 3, 4]); // (left, right, top, bottom)
        let zeros = fold(&node("ConstantOfShape", 1, vec![]), 13, &[Some(&ints(&[4]))]).unwrap();
        let zeros = fold(&node("Cast", 1, vec![int_attr("to", dt::INT64 as i64)]), 13, &[Some(&zeros)]).unwrap();
        let big = fold(&node("Cast", 1, vec![int_attr("to", dt::INT64 as i64)]), 13, &[Some(&ints(&[i64::MAX - 1]))]);
        assert_eq!(big.unwrap().data, Data::I64(vec![i64::MAX - 1]), "integers cast exactly");
        let all = fold(&node("Concat", 2, vec![int_attr("axis", 0)]), 13, &[Some(&torch_pads), Some(&zeros)]).unwrap();
        let pairs = fold(&node("Reshape", 2, vec![]), 13, &[Some(&all), Some(&ints(&[-1, 2]))]).unwrap();
        let rev = fold(
            &node("Slice", 5, vec![]),
            13,
            &[Some(&pairs), Some(&ints(&[-1])), Some(&ints(&[i64::MIN])), Some(&ints(&[0])), Some(&ints(&[-1]))],
        )
        .unwrap();
        assert_eq!(rev.data, Data::I64(vec![0, 0, 0, 0, 3, 4, 1, 2]));
        let t = fold(&node("Transpose", 1, vec![]), 13, &[Some(&rev)]).unwrap();
        assert_eq!(t.shape, vec![2, 4]);
        let flat = fold(&node("Reshape", 2, vec![]), 13, &[Some(&t), Some(&ints(&[-1]))]).unwrap();
        assert_eq!(flat.data, Data::I64(vec![0, 0, 3, 1, 0, 0, 4, 2]));
    }

    #[test]
    fn gathers_unsqueezes_and_computes_shapes() {
        let x = Value::f32(vec![2, 3, 4], vec![0.0; 24]).unwrap();
        let s = fold(&node("Shape", 1, vec![]), 13, &[Some(&x)]).unwrap();
        let scalar = Value::new(vec![], Data::I64(vec![0])).unwrap();
        let d0 = fold(&node("Gather", 2, vec![]), 13, &[Some(&s), Some(&scalar)]).unwrap();
        assert_eq!((d0.shape.clone(), d0.data.clone()), (vec![], Data::I64(vec![2])));
        let u = fold(&node("Unsqueeze", 2, vec![]), 13, &[Some(&d0), Some(&ints(&[0]))]).unwrap();
        assert_eq!(u.shape, vec![1]);
        let m = fold(&node("Mul", 2, vec![]), 13, &[Some(&s), Some(&u)]).unwrap();
        assert_eq!(m.data, Data::I64(vec![4, 6, 8]));
        let g = Value::f32(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let cols = fold(&node("Gather", 2, vec![int_attr("axis", 1)]), 13, &[Some(&g), Some(&ints(&[2, 0]))]).unwrap();
        assert_eq!(cols.data, Data::F32(vec![2.0, 0.0, 5.0, 3.0]));
        let e = fold(&node("Gather", 2, vec![]), 13, &[Some(&g), Some(&ints(&[5]))]).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        // Concat along the last axis interleaves rows.
        let h = Value::f32(vec![2, 1], vec![10.0, 20.0]).unwrap();
        let c = fold(&node("Concat", 2, vec![int_attr("axis", 1)]), 13, &[Some(&g), Some(&h)]).unwrap();
        assert_eq!((c.shape.clone(), c.data), (vec![2, 4], Data::F32(vec![0.0, 1.0, 2.0, 10.0, 3.0, 4.0, 5.0, 20.0])));
        assert!(fold(&node("Concat", 2, vec![int_attr("axis", 1)]), 13, &[Some(&g), Some(&ints(&[1, 2]))]).is_err());
    }
}
