//! The `.etm` model file: a safetensors container whose `__metadata__["edgetune"]` holds a
//! versioned JSON [`Header`] (architecture and graph, input preprocessing, labels,
//! quantization parameters, provenance). Weights are ordinary safetensors tensors (F32 for
//! float models; I8 weights with F32 per-channel `<weight>.scale`, optional I32 per-channel
//! `<weight>.zero_point` (imported asymmetric weights) and I32 biases for int8 models), so any
//! safetensors reader can open them.
//!
//! Loading validates everything before returning: the container, the header's format name
//! and version, that every tensor the graph names exists with a consistent shape and dtype,
//! labels matching the classifier width, and quantization parameters (finite positive
//! scales, int8 zero points). A bad file is an error saying what is wrong, never a panic.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::graph::{Graph, Op};
use crate::base::error::{Error, Result};
use crate::base::tensor::{numel, Tensor};
use crate::model::preprocess::Preprocess;

/// Format name in every header.
pub const FORMAT: &str = "edgetune-model";
/// Current header version; loading rejects newer versions.
pub const VERSION: u32 = 1;
/// Largest model file read.
pub const MAX_MODEL_BYTES: u64 = 512 << 20;

/// Quantization of one value (activation tensor): `real = (q - zero_point) * scale`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueQuant {
    pub scale: f32,
    pub zero_point: i32,
}

/// Whose integer arithmetic an int8 model runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arithmetic {
    /// The engine's (f32 multiplier, one rounding; `quant::requant`): every backend.
    #[default]
    Engine,
    /// TFLite's fixed-point requantization and integer pooling, as in a uint8 TFLite file
    /// (pool rounds half up); CPU only.
    TfliteUint8,
    /// The same for an int8 TFLite file (TF2's full-integer files), as TF 2.20 computes them:
    /// the pool rounds half away from zero, the last shift of convolutions and fully connected
    /// layers rounds ties up (`Requant::shift_half_up`), and the other operators follow
    /// `quant::tflite`.
    TfliteInt8,
    /// onnxruntime's, as in a uint8-activation ONNX file that onnxruntime quantized: the
    /// engine's requantization (which is onnxruntime's) except the add, which follows
    /// onnxruntime's x86 kernel (`quant::OrtAddRequant`); CPU only.
    OnnxruntimeUint8,
    /// The same for int8 activations.
    OnnxruntimeInt8,
}

impl Arithmetic {
    pub fn is_engine(&self) -> bool {
        *self == Arithmetic::Engine
    }

    /// TFLite's fixed-point requantization and integer pooling.
    pub fn is_tflite(&self) -> bool {
        matches!(self, Arithmetic::TfliteUint8 | Arithmetic::TfliteInt8)
    }

    /// The offset from int8 to the file's own integers for onnxruntime's add (128 for
    /// uint8), or `None` when adds use the engine's arithmetic.
    pub fn ort_add_offset(&self) -> Option<i32> {
        match self {
            Arithmetic::OnnxruntimeUint8 => Some(128),
            Arithmetic::OnnxruntimeInt8 => Some(0),
            _ => None,
        }
    }
}

/// How an int8 model was quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// Calibration method: "minmax", "percentile" or "mse".
    pub method: String,
    /// Calibration images used.
    pub samples: usize,
    /// Where they came from.
    pub calibration_source: String,
    /// Per graph value (index 0 = input); `None` for values kept in f32 (the logits).
    pub values: Vec<Option<ValueQuant>>,
    /// The integer arithmetic (imported TFLite models keep TFLite's).
    #[serde(default, skip_serializing_if = "Arithmetic::is_engine")]
    pub arithmetic: Arithmetic,
}

/// Where a model came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: String,
    pub license: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// The JSON header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub architecture: String,
    pub graph: Graph,
    pub preprocess: Preprocess,
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    pub provenance: Provenance,
}

/// A stored tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    F32(Tensor),
    I8 { shape: Vec<usize>, data: Vec<i8> },
    I32 { shape: Vec<usize>, data: Vec<i32> },
}

impl Stored {
    pub fn shape(&self) -> &[usize] {
        match self {
            Stored::F32(t) => t.shape(),
            Stored::I8 { shape, .. } | Stored::I32 { shape, .. } => shape,
        }
    }
    fn dtype_name(&self) -> &'static str {
        match self {
            Stored::F32(_) => "F32",
            Stored::I8 { .. } => "I8",
            Stored::I32 { .. } => "I32",
        }
    }
}

/// A model: header plus named tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    pub header: Header,
    pub tensors: HashMap<String, Stored>,
}

impl ModelFile {
    /// A float model from a graph and its weights (provenance: `source`, nothing else yet).
    pub fn float(
        architecture: &str,
        graph: Graph,
        tensors: HashMap<String, Tensor>,
        preprocess: Preprocess,
        labels: Vec<String>,
        source: &str,
    ) -> Self {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            architecture: architecture.into(),
            graph,
            preprocess,
            labels,
            quantization: None,
            provenance: Provenance {
                source: source.into(),
                license: String::new(),
                created_by: String::new(),
                steps: vec![],
            },
        };
        ModelFile { header, tensors: tensors.into_iter().map(|(k, v)| (k, Stored::F32(v))).collect() }
    }

    /// The f32 tensors (the whole store of a float model).
    pub fn f32_tensors(&self) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| if let Stored::F32(t) = v { Some((k.clone(), t.clone())) } else { None })
            .collect()
    }

    /// The width of the embedding (the input of the dense layer that makes the logits), or
    /// None when the logits do not come from a dense head.
    pub fn embedding_dim(&self) -> Option<usize> {
        let g = &self.header.graph;
        let node = g.nodes.get(g.logits.checked_sub(1)?)?;
        match &node.op {
            crate::model::graph::Op::Dense { weight, .. } => self.tensors.get(weight)?.shape().get(1).copied(),
            // Logits straight from the pool (SqueezeNet): a head goes after it.
            crate::model::graph::Op::GlobalAvgPool { .. } if g.logits == g.embedding => self.channels(g.embedding),
            _ => None,
        }
    }

    /// The channel count of value `v`, from the weights of the nodes that make it (no tensors
    /// are run or allocated).
    pub fn channels(&self, v: usize) -> Option<usize> {
        use crate::model::graph::Op;
        let g = &self.header.graph;
        if v == 0 {
            return Some(g.input[2]);
        }
        let node = g.nodes.get(v - 1)?;
        match &node.op {
            Op::Conv2d { weight, .. } | Op::Dense { weight, .. } => self.tensors.get(weight)?.shape().first().copied(),
            Op::Concat => node.inputs.iter().map(|&i| self.channels(i)).sum(),
            _ => self.channels(*node.inputs.first()?),
        }
    }

    /// True if the model holds int8 weights and quantization parameters.
    pub fn is_int8(&self) -> bool {
        self.header.quantization.is_some()
    }

    /// Serializes to `.etm` bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_string(&self.header).map_err(|e| Error::invalid("etm", format!("header: {e}")))?;
        let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, v)| match v {
                Stored::F32(t) => {
                    (k.clone(), Dtype::F32, t.shape().to_vec(), t.data().iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                Stored::I8 { shape, data } => {
                    (k.clone(), Dtype::I8, shape.clone(), data.iter().map(|&x| x as u8).collect())
                }
                Stored::I32 { shape, data } => {
                    (k.clone(), Dtype::I32, shape.clone(), data.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
            })
            .collect();
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        let views = raw
            .iter()
            .map(|(k, dt, s, d)| {
                Ok((
                    k.clone(),
                    TensorView::new(*dt, s.clone(), d).map_err(|e| Error::invalid("etm", format!("{k}: {e}")))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([("edgetune".to_string(), header)]);
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::invalid("etm", e.to_string()))
    }

    /// Writes atomically: to a temporary file beside `path`, then renamed over it, so a crash
    /// never leaves a half-written model where a good one was.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("etm.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads and validates a `.etm` file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::base::io::read_limited(path, MAX_MODEL_BYTES)?;
        Self::from_bytes(&bytes).map_err(|e| Error::parse(path, e.to_string()))
    }

    /// Parses and validates `.etm` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::invalid("etm", m);
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors container: {e}")))?;
        let (_, md) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("bad safetensors header: {e}")))?;
        let json = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get("edgetune"))
            .ok_or_else(|| bad("no edgetune header in the file's metadata (not an .etm model)".into()))?;
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(bad(format!("header format is not '{FORMAT}'")));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v as u32 == VERSION => {}
            Some(v) => {
                return Err(bad(format!("format version {v} is not supported (this build reads version {VERSION})")))
            }
            None => return Err(bad("header has no version".into())),
        }
        let header: Header = serde_json::from_value(value).map_err(|e| bad(format!("header: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            numel("etm tensor", &shape)?;
            let d = view.data();
            let t = match view.dtype() {
                Dtype::F32 => Stored::F32(Tensor::new(
                    shape,
                    d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                )?),
                Dtype::I8 => Stored::I8 { shape, data: d.iter().map(|&b| b as i8).collect() },
                Dtype::I32 => Stored::I32 {
                    shape,
                    data: d.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                },
                other => return Err(bad(format!("tensor '{name}' has unsupported dtype {other:?}"))),
            };
            tensors.insert(name, t);
        }
        let m = ModelFile { header, tensors };
        m.validate()?;
        Ok(m)
    }

    /// Checks the header against the tensors (see module docs).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Error::invalid("etm", m);
        let h = &self.header;
        let p = &h.preprocess;
        if !p.is_valid() {
            return Err(bad(format!("invalid preprocessing {p:?}")));
        }
        if h.graph.input[0] == 0 || h.graph.input[1] == 0 || h.graph.input[2] != 3 {
            return Err(bad(format!("input {:?} must be [H, W, 3]", h.graph.input)));
        }
        // Shape checks run on a float view: int8 weights stand in with their shapes.
        let shapes: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), Tensor::zeros(v.shape().to_vec())?)))
            .collect::<Result<_>>()?;
        let value_shapes = h.graph.infer_shapes(&shapes, 1)?;
        let classes = value_shapes[h.graph.logits][1];
        if h.labels.len() != classes {
            return Err(bad(format!("{} labels for {classes} classes", h.labels.len())));
        }
        let int8 = self.is_int8();
        for n in &h.graph.nodes {
            // int8 convs take int32 biases; the head reads the f32 embedding and keeps an f32 bias.
            let (weight, bias, int_bias) = match &n.op {
                Op::Conv2d { weight, bias, batch_norm, .. } => {
                    if int8 && batch_norm.is_some() {
                        return Err(bad(format!("node '{}': an int8 model must have batch norm folded", n.name)));
                    }
                    (weight, bias, int8)
                }
                Op::Dense { weight, bias, .. } => (weight, bias, false),
                _ => continue,
            };
            let w = &self.tensors[weight];
            let want_w = if int8 { "I8" } else { "F32" };
            if w.dtype_name() != want_w {
                return Err(bad(format!(
                    "node '{}': weight '{weight}' is {}, expected {want_w}",
                    n.name,
                    w.dtype_name()
                )));
            }
            if let Some(b) = bias {
                let want_b = if int_bias { "I32" } else { "F32" };
                if self.tensors[b].dtype_name() != want_b {
                    return Err(bad(format!(
                        "node '{}': bias '{b}' is {}, expected {want_b}",
                        n.name,
                        self.tensors[b].dtype_name()
                    )));
                }
            }
            if int8 {
                let sname = format!("{weight}.scale");
                match self.tensors.get(&sname) {
                    Some(Stored::F32(s))
                        if s.shape() == [w.shape()[0]] && s.data().iter().all(|v| v.is_finite() && *v > 0.0) => {}
                    _ => {
                        return Err(bad(format!("node '{}': missing or invalid per-channel scales '{sname}'", n.name)))
                    }
                }
                let zname = format!("{weight}.zero_point");
                match self.tensors.get(&zname) {
                    None => {}
                    Some(Stored::I32 { shape, data })
                        if shape[..] == [w.shape()[0]] && data.iter().all(|z| (-128..=127).contains(z)) => {}
                    _ => return Err(bad(format!("node '{}': invalid weight zero points '{zname}'", n.name))),
                }
            }
        }
        if let Some(q) = &h.quantization {
            if q.values.len() != value_shapes.len() {
                return Err(bad(format!("{} value quantizations for {} values", q.values.len(), value_shapes.len())));
            }
            for (i, v) in q.values.iter().enumerate() {
                if let Some(v) = v {
                    if !(v.scale.is_finite() && v.scale > 0.0 && (-128..=127).contains(&v.zero_point)) {
                        return Err(bad(format!("value {i}: invalid quantization {v:?}")));
                    }
                } else if i != h.graph.logits && i != h.graph.embedding {
                    return Err(bad(format!("value {i} has no quantization")));
                }
            }
        }
        // A NaN or infinite weight would turn every output into NaN without a word.
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            if let Stored::F32(t) = &self.tensors[name] {
                if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!("tensor '{name}' holds {} at element {i}", t.data()[i])));
                }
            }
        }
        Ok(())
    }
}

/// What an importer found, to be made into a validated model.
pub struct Imported {
    /// Source format ("onnx", "tflite"), the start of the architecture name.
    pub kind: &'static str,
    /// The source file, for the architecture name, provenance and errors.
    pub file: String,
    pub graph: Graph,
    pub preprocess: Preprocess,
    pub quantization: Option<Quantization>,
    pub tensors: HashMap<String, Stored>,
    /// The provenance step describing the import.
    pub step: String,
}

impl Imported {
    /// The model file: labels fitted to the classifier (see `data::labels::fit_labels`), a
    /// square input required, the header filled in, everything validated.
    pub fn into_model(self, labels: Option<Vec<String>>) -> Result<ModelFile> {
        let [h, w, _] = self.graph.input;
        if h != w {
            return Err(Error::unsupported(format!("{}: non-square input {h}x{w}", self.file)));
        }
        let classifier = self.graph.logits.checked_sub(1).and_then(|i| self.graph.nodes.get(i));
        let classes = match classifier.map(|n| &n.op) {
            Some(Op::Dense { weight, .. }) => self.tensors.get(weight).map_or(0, |t| t.shape()[0]),
            // A network whose classifier is a convolution before the pool.
            Some(Op::GlobalAvgPool { .. }) => {
                let view = self
                    .tensors
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Tensor::zeros(v.shape().to_vec())?)))
                    .collect::<Result<HashMap<_, _>>>()?;
                self.graph.num_classes(&view)?
            }
            _ => return Err(Error::unsupported(format!("{}: the logits are not a classifier's output", self.file))),
        };
        let labels = crate::model::labels::fit_labels(labels, classes)?;
        let stem = Path::new(&self.file).file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            architecture: format!("{}:{stem}", self.kind),
            graph: self.graph,
            preprocess: self.preprocess,
            labels,
            quantization: self.quantization,
            provenance: Provenance {
                source: self.file,
                license: "as the source model".into(),
                created_by: format!("edgetune {} import", crate::VERSION),
                steps: vec![self.step],
            },
        };
        let m = ModelFile { header, tensors: self.tensors };
        m.validate()?;
        Ok(m)
    }
}
