// The project as one file (export and import).
//
// File format (JSON, "edgetune-project" version 1):
//   { format, version, dim, backbone, classes: [{ id, name, created }],
//     samples: [{ classId, embedding: base64(f32 LE), image: "data:image/jpeg;base64,...", created }],
//     versions: [{ id, created, backbone, classIds, names, dim, weight: base64(f32 LE), bias: base64(f32 LE), metrics, options }],
//     current }
// `backbone` names the model whose embeddings the file holds ("builtin", a key of an opened
// model, or in older files the built-in model's URL). A file from another backbone is
// accepted: its embeddings are checked against its own `dim`, and the app re-embeds the
// samples from their images.
// An imported file is untrusted input: every field is checked (types, lengths, finite
// numbers, name lengths, image data URLs, sizes) before anything is written, and the first
// problem found is reported by name.

export const FORMAT = 'edgetune-project';
export const MAX_NAME = 60;
const MAX_FILE_BYTES = 512 * 1024 * 1024;
const MAX_SAMPLES = 20000;

export class ProjectError extends Error {}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(b64, what) {
  if (typeof b64 !== 'string') throw new ProjectError(`${what} is not base64 text`);
  let s;
  try {
    s = atob(b64);
  } catch {
    throw new ProjectError(`${what} is not valid base64`);
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const f32ToB64 = (a) => toBase64(new Uint8Array(Float32Array.from(a).buffer));

function b64ToF32(b64, len, what) {
  const bytes = fromBase64(b64, what);
  if (bytes.length !== len * 4) throw new ProjectError(`${what} has ${bytes.length / 4} values, expected ${len}`);
  const v = new Float32Array(bytes.buffer);
  if (!v.every(Number.isFinite)) throw new ProjectError(`${what} contains NaN or infinite values`);
  return v;
}

async function blobToDataUrl(blob) {
  return `data:${blob.type || 'image/jpeg'};base64,${toBase64(new Uint8Array(await blob.arrayBuffer()))}`;
}

function dataUrlToBlob(url, what) {
  const m = typeof url === 'string' && /^data:(image\/(jpeg|png|webp));base64,(.*)$/.exec(url);
  if (!m) throw new ProjectError(`${what} is not a JPEG, PNG or WebP data URL`);
  return new Blob([fromBase64(m[3], what)], { type: m[1] });
}

/** Checks a class name typed by the user; returns it trimmed. */
export function checkName(name) {
  const n = String(name ?? '').trim();
  if (!n) throw new ProjectError('A class needs a name.');
  if ([...n].length > MAX_NAME) throw new ProjectError(`Class names are at most ${MAX_NAME} characters.`);
  return n;
}

/** The whole project as the text of one file. */
export async function exportProject(project, dim, backbone) {
  const samples = [];
  for (const s of project.samples) {
    samples.push({ classId: s.classId, embedding: f32ToB64(s.embedding), image: await blobToDataUrl(s.image), created: s.created });
  }
  return JSON.stringify({
    format: FORMAT,
    version: 1,
    dim,
    backbone,
    classes: project.classes.map(({ id, name, created }) => ({ id, name, created })),
    samples,
    versions: project.versions.map((v) => ({ ...v, weight: f32ToB64(v.weight), bias: f32ToB64(v.bias) })),
    current: project.current,
  });
}

/**
 * Parses and validates a project file's text. `dim` is the embedding width of the backbone in
 * use, `backbone` its key: a file made on another backbone is checked against its own
 * declared width, and its samples and versions keep that backbone's key.
 */
export function parseProject(text, dim, backbone = null) {
  if (text.length > MAX_FILE_BYTES) throw new ProjectError('The file is too large to be a project.');
  let p;
  try {
    p = JSON.parse(text);
  } catch {
    throw new ProjectError('The file is not an edgetune project (not JSON).');
  }
  if (!p || p.format !== FORMAT) throw new ProjectError('The file is not an edgetune project (format field missing).');
  if (p.version !== 1) throw new ProjectError(`Project version ${p.version} is not supported (this app reads version 1).`);
  // A file that names no backbone (hand-made) is read as made by the model in use.
  const from = typeof p.backbone === 'string' && p.backbone.startsWith('/models/') ? 'builtin' : p.backbone ?? backbone;
  const foreign = backbone !== null && from !== backbone;
  if (foreign) {
    if (typeof from !== 'string' || !from || from.length > 200) throw new ProjectError('The project names its model in a form this app does not read.');
    if (!Number.isInteger(p.dim) || p.dim < 1 || p.dim > 65536) throw new ProjectError(`The project's feature width ${p.dim} is not a valid width.`);
    dim = p.dim;
  } else if (p.dim !== dim) {
    throw new ProjectError(`The project's features have ${p.dim} values; this model makes ${dim}.`);
  }
  const tag = backbone === null ? {} : { backbone: foreign ? from : backbone };
  if (!Array.isArray(p.classes) || !Array.isArray(p.samples) || !Array.isArray(p.versions)) {
    throw new ProjectError('The project lacks its classes, samples or versions lists.');
  }
  if (p.samples.length > MAX_SAMPLES) throw new ProjectError(`Too many samples (${p.samples.length}, at most ${MAX_SAMPLES}).`);
  const ids = new Set();
  const classes = p.classes.map((c, i) => {
    if (!c || !Number.isInteger(c.id) || ids.has(c.id)) throw new ProjectError(`Class ${i + 1} has a missing or repeated id.`);
    ids.add(c.id);
    let name;
    try {
      name = checkName(c.name);
    } catch (e) {
      throw new ProjectError(`Class ${i + 1}: ${e.message}`);
    }
    return { id: c.id, name, created: Number(c.created) || Date.now() };
  });
  const samples = p.samples.map((s, i) => {
    if (!s || !ids.has(s.classId)) throw new ProjectError(`Sample ${i + 1} belongs to no class.`);
    return {
      classId: s.classId,
      embedding: b64ToF32(s.embedding, dim, `Sample ${i + 1}'s features`),
      image: dataUrlToBlob(s.image, `Sample ${i + 1}'s image`),
      created: Number(s.created) || Date.now(),
      ...tag,
    };
  });
  const versions = p.versions.map((v, i) => {
    const what = `Model version ${i + 1}`;
    if (!v || !Number.isInteger(v.id) || !Array.isArray(v.classIds) || !Array.isArray(v.names) || v.classIds.length !== v.names.length || v.classIds.length < 2) {
      throw new ProjectError(`${what} is malformed.`);
    }
    if (!v.classIds.every((c) => ids.has(c))) throw new ProjectError(`${what} refers to a class that is not in the project.`);
    if (v.dim !== dim) throw new ProjectError(`${what} has ${v.dim} inputs; this model makes ${dim}.`);
    const n = v.classIds.length;
    return {
      id: v.id,
      created: Number(v.created) || Date.now(),
      classIds: v.classIds,
      names: v.names.map((x) => checkName(x)),
      dim,
      weight: b64ToF32(v.weight, n * dim, `${what}'s weights`),
      bias: b64ToF32(v.bias, n, `${what}'s bias`),
      metrics: v.metrics && typeof v.metrics === 'object' ? v.metrics : {},
      options: v.options && typeof v.options === 'object' ? v.options : {},
      ...tag,
    };
  });
  const current = versions.some((v) => v.id === p.current) ? p.current : null;
  return { classes, samples, versions, current };
}
