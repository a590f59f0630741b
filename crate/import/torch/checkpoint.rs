//! Import of PyTorch's legacy (pre-1.6, non-zip) checkpoint format without Python.
//!
//! File layout: five pickles back to back — magic number `0x1950a86a20f9469cfc6c`,
//! protocol version `1001`, system info (`little_endian`, type sizes), the state dict
//! (`OrderedDict` name -> `_rebuild_tensor_v2(storage, offset, size, stride, ..)`, storages as
//! persistent ids `('storage', FloatStorage, key, location, numel, None)`), and the list of
//! storage keys — followed, per key in that order, by an 8-byte little-endian element count
//! and the raw little-endian elements.
//!
//! Tensors are copied out honouring their strides: `out[i0, i1, ..] = storage[offset + sum(i_d *
//! stride_d)]` (50 weights of the EfficientNet-Lite0 checkpoint are stored permuted from TF
//! layout, so assuming contiguity would silently scramble them). Every index is bounds-checked
//! against its storage first.

use std::collections::HashMap;
use std::path::Path;

use crate::base::error::{Error, Result};
use crate::base::tensor::{numel, Tensor};
use crate::import::torch::pickle::{read_pickle, PyValue};

const MAGIC_HEX: &str = "1950a86a20f9469cfc6c";
/// Largest checkpoint read.
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

/// Reads every float tensor of a legacy checkpoint, in file order, as contiguous row-major
/// tensors. `num_batches_tracked` counters (integer storages) are skipped.
pub fn read_legacy_checkpoint(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let data = crate::base::io::read_limited(path, MAX_CHECKPOINT_BYTES)?;
    parse_legacy_checkpoint(&data, &path.display().to_string())
}

/// As [`read_legacy_checkpoint`], from bytes; `origin` names the source in errors.
pub fn parse_legacy_checkpoint(data: &[u8], origin: &str) -> Result<Vec<(String, Tensor)>> {
    let bad = |msg: String| Error::parse(origin, msg);
    if data.starts_with(b"PK") {
        return Err(bad("this is a zip-format checkpoint (torch >= 1.6); only the legacy format is supported".into()));
    }
    let (magic, pos) = read_pickle(data, 0, origin)?;
    if magic != PyValue::Str(MAGIC_HEX.into()) {
        return Err(bad("not a PyTorch legacy checkpoint (wrong magic number)".into()));
    }
    let (version, pos) = read_pickle(data, pos, origin)?;
    if version != PyValue::Int(1001) {
        return Err(bad(format!("unsupported checkpoint protocol version {version:?}")));
    }
    let (sys_info, pos) = read_pickle(data, pos, origin)?;
    let little = matches!(&sys_info, PyValue::Dict(d) if d.iter().any(|(k, v)| *k == PyValue::Str("little_endian".into()) && *v == PyValue::Bool(true)));
    if !little {
        return Err(bad("checkpoint was not written little-endian".into()));
    }
    let (state, pos) = read_pickle(data, pos, origin)?;
    let (keys, mut pos) = read_pickle(data, pos, origin)?;
    let PyValue::List(keys) = keys else { return Err(bad("storage key list missing".into())) };

    // Storage payloads: per key, u64 count then the elements (4 bytes each for FloatStorage).
    let mut storages: HashMap<String, (usize, usize)> = HashMap::new(); // key -> (byte start, count)
    let elem_size = storage_elem_sizes(&state, origin)?;
    for k in &keys {
        let PyValue::Str(key) = k else { return Err(bad("storage key is not a string".into())) };
        let head = data.get(pos..pos + 8).ok_or_else(|| bad(format!("truncated before storage {key}")))?;
        let count = u64::from_le_bytes(head.try_into().map_err(|_| bad("bad storage header".into()))?) as usize;
        let size = *elem_size.get(key.as_str()).unwrap_or(&4);
        let bytes = count.checked_mul(size).ok_or_else(|| bad(format!("storage {key} size overflows")))?;
        let start = pos + 8;
        if start.checked_add(bytes).is_none_or(|end| end > data.len()) {
            return Err(bad(format!(
                "truncated: storage {key} needs {bytes} bytes at offset {start}, file has {}",
                data.len()
            )));
        }
        storages.insert(key.clone(), (start, count));
        pos = start + bytes;
    }

    let PyValue::Dict(entries) = state else { return Err(bad("state dict is not a dict".into())) };
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let PyValue::Str(name) = name else { return Err(bad("state dict key is not a string".into())) };
        let PyValue::Tensor { storage, offset, size, stride } = value else {
            return Err(bad(format!("'{name}' is not a tensor")));
        };
        let (key, class) =
            storage_ref(&storage).ok_or_else(|| bad(format!("'{name}' has a malformed storage reference")))?;
        if class != "FloatStorage" {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            return Err(bad(format!("'{name}' is a {class}; only float32 tensors are supported")));
        }
        let &(start, count) =
            storages.get(&key).ok_or_else(|| bad(format!("'{name}' refers to missing storage {key}")))?;
        out.push((
            name.clone(),
            gather(data, start, count, offset, &size, &stride).map_err(|m| bad(format!("'{name}': {m}")))?,
        ));
    }
    Ok(out)
}

/// `(key, storage class name)` from a persistent id.
fn storage_ref(v: &PyValue) -> Option<(String, String)> {
    let PyValue::PersId(pid) = v else { return None };
    let PyValue::Tuple(t) = pid.as_ref() else { return None };
    match (t.first()?, t.get(1)?, t.get(2)?) {
        (PyValue::Str(tag), PyValue::Global(_, class), PyValue::Str(key)) if tag == "storage" => {
            Some((key.clone(), class.clone()))
        }
        _ => None,
    }
}

/// Bytes per element of every storage the state dict references.
fn storage_elem_sizes(state: &PyValue, origin: &str) -> Result<HashMap<String, usize>> {
    let PyValue::Dict(entries) = state else { return Err(Error::parse(origin, "state dict is not a dict")) };
    let mut sizes = HashMap::new();
    for (_, v) in entries {
        if let PyValue::Tensor { storage, .. } = v {
            if let Some((key, class)) = storage_ref(storage) {
                let size = match class.as_str() {
                    "FloatStorage" | "IntStorage" => 4,
                    "LongStorage" | "DoubleStorage" => 8,
                    "HalfStorage" | "ShortStorage" => 2,
                    "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
                    other => return Err(Error::parse(origin, format!("unknown storage class {other}"))),
                };
                sizes.insert(key, size);
            }
        }
    }
    Ok(sizes)
}

/// Copies a strided f32 view out of a storage into a contiguous tensor.
fn gather(
    data: &[u8],
    start: usize,
    count: usize,
    offset: usize,
    size: &[usize],
    stride: &[usize],
) -> std::result::Result<Tensor, String> {
    if size.len() != stride.len() {
        return Err(format!("size {size:?} and stride {stride:?} differ in rank"));
    }
    let n = numel("checkpoint tensor", size).map_err(|e| e.to_string())?;
    if n > 0 {
        let last =
            size.iter().zip(stride).map(|(&s, &st)| (s - 1).saturating_mul(st)).fold(offset, usize::saturating_add);
        if last >= count {
            return Err(format!("view (offset {offset}, size {size:?}, stride {stride:?}) reaches element {last} of a {count}-element storage"));
        }
    }
    let read = |i: usize| {
        let b = &data[start + 4 * i..start + 4 * i + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..n {
        out.push(read(offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>()));
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::new(size.to_vec(), out).map_err(|e| e.to_string())
}
