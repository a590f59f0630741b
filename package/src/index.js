// @edgetune/web: the engine as a library. `createClassifier()` starts the wasm engine in a Web
// Worker (workers/engine.js, the same worker the edgetune page runs), so the app's main thread
// only converts frames and passes messages; `train()` runs the head trainer in a second
// worker (workers/trainer.js), started on first use. Types: index.d.ts (what each call takes
// and returns, checked against the real objects by tests/e2e/package.test.mjs).
//
// Frames: any image source is centre-cropped to a square and drawn at the model's frame size
// (`frameSize`, 256 for the default model) on an OffscreenCanvas, so the engine's own crop is
// exact; an `ImageData` (or `{ data, width, height }` RGBA) is sent as it is and the engine
// crops and resizes it.
//
// Errors: every rejection is an `EdgetuneError` whose `code` (index.d.ts `ErrorCode`) says
// what failed; `message` is the engine's own words and `cause` the original error.
import { WorkerClient } from './lib/protocol.js';

const FORMAT = 'edgetune-classifier';
const VERSION = 1;

export class EdgetuneError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'EdgetuneError';
    this.code = code;
  }
}

/** The model the package ships (EfficientNet-Lite0, int8, ImageNet's 1000 classes). */
export function defaultModelUrl() {
  return new URL('./models/efficientnet_lite0.int8.etm', import.meta.url);
}

const messageOf = (e) => String(e && e.message ? e.message : e);

// The workers' errors by what they say: a dead worker, a busy engine or trainer, else `fallback`.
function codeOf(e, fallback) {
  const m = messageOf(e);
  if (e instanceof EdgetuneError) return e.code;
  if (/^the .* stopped: /.test(m)) return 'worker-crashed';
  if (/engine busy|already in progress/.test(m)) return 'busy';
  return fallback;
}

const wrap = (fallback) => (e) => {
  throw e instanceof EdgetuneError ? e : new EdgetuneError(codeOf(e, fallback), messageOf(e), { cause: e });
};

// An .etm file is a safetensors container: 8 bytes of little-endian header length, then a JSON
// header whose `__metadata__.edgetune` is the model's header. Anything else goes through the
// importer (.onnx, .tflite), which the engine worker fetches only then.
function isEtm(bytes) {
  if (bytes.length < 10) return false;
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n < 2 || n > bytes.length - 8 || n > 1 << 24) return false;
  try {
    return typeof JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))).__metadata__?.edgetune === 'string';
  } catch {
    return false;
  }
}

async function modelBytes(model) {
  // Bytes carry no name: the importer then tells the format by content.
  if (model instanceof Uint8Array) return { bytes: model.slice(), name: 'model' };
  if (model instanceof ArrayBuffer) return { bytes: new Uint8Array(model.slice(0)), name: 'model' };
  if (typeof Blob !== 'undefined' && model instanceof Blob) {
    return { bytes: new Uint8Array(await model.arrayBuffer()), name: model.name || 'model' };
  }
  const url = String(model ?? defaultModelUrl());
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new EdgetuneError('model-unavailable', `the model could not be fetched from ${url}: ${messageOf(e)}`, { cause: e });
  }
  if (!res.ok) throw new EdgetuneError('model-unavailable', `the model could not be fetched from ${url}: HTTP ${res.status}`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), name: new URL(url, globalThis.location?.href).pathname.split('/').pop() || 'model' };
}

// FNV-1a over the model bytes: names the backbone a saved state was made with.
function fingerprint(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return `${bytes.length}:${(h >>> 0).toString(16).padStart(8, '0')}`;
}

// The pixels of one image source as RGBA `{ rgba, width, height }` (see the header); `canvas`
// is the classifier's own, reused frame after frame.
function frameOf(input, side, canvas) {
  if (input && typeof input === 'object' && 'data' in input && 'width' in input && 'height' in input) {
    const { data, width, height } = input;
    if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray) || data.length !== width * height * 4 || !width || !height) {
      throw new EdgetuneError('input-invalid', `an RGBA image of ${width}x${height} needs ${width * height * 4} bytes of data, not ${data?.length}`);
    }
    return { rgba: new Uint8Array(data), width, height };
  }
  const [w, h] = sizeOf(input);
  if (!w || !h) throw new EdgetuneError('input-invalid', 'the image has no pixels yet (a video before its first frame, or an image still loading)');
  const s = Math.min(w, h);
  const g = canvas();
  g.drawImage(input, (w - s) / 2, (h - s) / 2, s, s, 0, 0, side, side);
  return { rgba: new Uint8Array(g.getImageData(0, 0, side, side).data.buffer), width: side, height: side };
}

function sizeOf(x) {
  if (typeof HTMLVideoElement !== 'undefined' && x instanceof HTMLVideoElement) return [x.videoWidth, x.videoHeight];
  if (typeof HTMLImageElement !== 'undefined' && x instanceof HTMLImageElement) return [x.naturalWidth, x.naturalHeight];
  if (typeof VideoFrame !== 'undefined' && x instanceof VideoFrame) return [x.displayWidth, x.displayHeight];
  if (x && typeof x.width === 'number' && typeof x.height === 'number') return [x.width, x.height];
  throw new EdgetuneError('input-invalid', 'classify and teach take a video, image, canvas, ImageBitmap, VideoFrame or ImageData');
}

const prediction = ({ index, label, probability }) => ({ index, label, probability });

function progressOf(p) {
  return {
    epoch: p.epoch, epochs: p.epochs, loss: p.loss, accuracy: p.accuracy,
    valLoss: p.val_loss ?? null, valAccuracy: p.val_accuracy ?? null, lr: p.lr,
  };
}

function checkLabel(label) {
  const l = typeof label === 'string' ? label.trim() : '';
  if (!l) throw new EdgetuneError('input-invalid', 'a class needs a non-empty name');
  if ([...l].length > 60) throw new EdgetuneError('input-invalid', 'class names are at most 60 characters');
  return l;
}

export class Classifier {
  // Made by createClassifier().
  constructor(engine, started, model) {
    this.#engine = engine;
    this.#model = model;
    this.#fingerprint = fingerprint(model);
    this.#frameSize = started.frameSize;
    this.#labels = started.labels;
    this.#info = started.info;
    this.#backend = backendOf(started);
    this.#settled = started.probing
      ? engine.call('settleBackend').then((r) => (this.#backend = backendOf(r, this.#backend.cpu)), wrap('gpu-unavailable'))
      : Promise.resolve(this.#backend);
  }

  #engine;
  #trainer = null;
  #model;
  #fingerprint;
  #frameSize;
  #labels;
  #info;
  #backend;
  #settled;
  #samples = new Map(); // label -> Float32Array[]
  #head = null; // { weight, bias, classes }
  #disposed = false;
  #context = null; // the 2D context frames are drawn on

  #canvas = () => {
    if (this.#context) return this.#context;
    const side = this.#frameSize;
    const c = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(side, side) : Object.assign(document.createElement('canvas'), { width: side, height: side });
    const g = c.getContext('2d', { willReadFrequently: true });
    if (!g) throw new EdgetuneError('input-invalid', 'no 2D canvas to read the image with');
    this.#context = g;
    return g;
  };

  get backend() { return this.#backend; }
  get info() { return this.#info; }
  get labels() { return [...this.#labels]; }
  get frameSize() { return this.#frameSize; }
  /** The classes taught so far, with their sample counts. */
  get examples() { return [...this.#samples].map(([label, list]) => ({ label, count: list.length })); }
  /** The classes the trained head answers with (empty before `train`/`load`). */
  get classes() { return this.#head ? [...this.#head.classes] : []; }

  whenBackendSettled() { return this.#settled; }

  #live() {
    if (this.#disposed) throw new EdgetuneError('disposed', 'this classifier was disposed');
    return this.#engine;
  }

  async classify(input, { k = 5, include = [] } = {}) {
    const engine = this.#live();
    const f = frameOf(input, this.#frameSize, this.#canvas);
    const r = await engine.call('classify', { ...f, k, include }, { transfer: [f.rgba.buffer] }).catch(wrap('input-invalid'));
    const top = r.top.map(prediction);
    const head = r.head ? r.head.map(prediction) : null;
    const out = { label: (head ?? top)[0]?.label ?? '', top, head, ms: r.ms, backend: r.backend };
    if (include.includes('embedding')) out.embedding = Float32Array.from(r.embedding);
    if (include.includes('logits')) out.logits = Float32Array.from(r.logits);
    return out;
  }

  async embed(input) {
    const engine = this.#live();
    const f = frameOf(input, this.#frameSize, this.#canvas);
    const e = await engine.call('embed', f, { transfer: [f.rgba.buffer] }).catch(wrap('input-invalid'));
    return Float32Array.from(e);
  }

  async teach(label, input) {
    const l = checkLabel(label);
    const e = await this.embed(input);
    if (this.#info.dim !== null && e.length !== this.#info.dim) {
      throw new EdgetuneError('model-invalid', `the model's embedding has ${e.length} values, its header says ${this.#info.dim}`);
    }
    const list = this.#samples.get(l) ?? [];
    list.push(e);
    this.#samples.set(l, list);
    return list.length;
  }

  forget(label) {
    if (label === undefined) this.#samples.clear();
    else this.#samples.delete(label);
  }

  async train(options = {}, onProgress) {
    this.#live();
    const classes = [...this.#samples.keys()].filter((l) => this.#samples.get(l).length > 0);
    if (classes.length < 2) {
      throw new EdgetuneError('samples-insufficient', `training needs samples of at least two classes (${classes.length ? `only "${classes[0]}" has any` : 'none taught yet'})`);
    }
    const dim = this.#samples.get(classes[0])[0].length;
    const samples = classes.flatMap((l, label) => this.#samples.get(l).map((embedding) => ({ embedding, label })));
    if (this.#trainer?.crashed) this.#trainer = null;
    this.#trainer ??= new WorkerClient(new Worker(new URL('./workers/trainer.js', import.meta.url), { type: 'module', name: 'edgetune trainer' }), 'edgetune trainer');
    const opts = { epochs: 100, lr: 3e-3, optimizer: 'adam', loss: 'ce', seed: 1, validation: samples.length >= 10 ? 0.2 : 0, ...options };
    const r = await this.#trainer.call('train', { dim, classes, samples, options: opts }, {
      onProgress: onProgress && ((p) => onProgress(progressOf(p))),
    }).catch(wrap('training-failed'));
    const head = { weight: Float32Array.from(r.weight), bias: Float32Array.from(r.bias), classes: [...r.classes] };
    await this.#setHead(head);
    return {
      classes: head.classes,
      dim: r.dim,
      epochs: r.history.length,
      history: r.history.map(progressOf),
      validationAccuracy: r.validationAccuracy ?? null,
      stoppedEarly: r.stoppedEarly,
      cancelled: r.cancelled,
    };
  }

  /** Ends a running `train` after its current epoch (it resolves with the best head so far). */
  async stopTraining() {
    if (this.#trainer && !this.#trainer.crashed) await this.#trainer.call('stop').catch(wrap('worker-crashed'));
  }

  async #setHead(head) {
    await this.#live().call('setHead', { weight: head.weight, bias: head.bias, names: head.classes, k: 5, tag: 'trained' }).catch(wrap('state-invalid'));
    this.#head = head;
  }

  save() {
    this.#live();
    return {
      format: FORMAT,
      version: VERSION,
      backbone: this.#fingerprint,
      dim: this.#info.dim,
      samples: [...this.#samples].map(([label, list]) => ({ label, embeddings: list.map((e) => Float32Array.from(e)) })),
      head: this.#head && { weight: Float32Array.from(this.#head.weight), bias: Float32Array.from(this.#head.bias), classes: [...this.#head.classes] },
    };
  }

  async load(state) {
    this.#live();
    const s = checkState(state, this.#fingerprint, this.#info.dim);
    if (s.head) await this.#setHead(s.head);
    else {
      await this.#engine.call('clearHead').catch(wrap('state-invalid'));
      this.#head = null;
    }
    this.#samples = s.samples;
  }

  async exportModel() {
    if (!this.#head) throw new EdgetuneError('samples-insufficient', 'nothing trained yet: call train() or load() first');
    const { weight, bias, classes } = this.#head;
    return this.#live().call('modelWithHead', { model: this.#model, weight, bias, names: classes }).catch(wrap('model-invalid'));
  }

  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    const reason = new EdgetuneError('disposed', 'this classifier was disposed');
    this.#engine.terminate(reason);
    this.#trainer?.terminate(reason);
  }
}

// The worker's report in the shape index.d.ts declares (`cpu`: create's, kept afterwards).
function backendOf(r, cpu = null) {
  return {
    backend: r.backend, precision: r.precision, device: r.device, variant: r.variant ?? null,
    reason: r.reason, probing: Boolean(r.probing),
    cpu: r.cpu ? { variant: r.cpu.variant, threads: r.cpu.threads, reason: r.cpu.reason } : cpu,
  };
}

// A saved state checked field by field (it may come from storage another version wrote).
function checkState(state, backbone, dim) {
  const bad = (why) => new EdgetuneError('state-invalid', `not a saved classifier: ${why}`);
  if (!state || state.format !== FORMAT) throw bad('format field missing');
  if (state.version !== VERSION) throw bad(`version ${state.version} (this package reads ${VERSION})`);
  if (state.backbone !== backbone) throw new EdgetuneError('state-invalid', 'the saved classifier was made with another model');
  const vec = (v, n, what) => {
    const a = v instanceof Float32Array ? v : Array.isArray(v) ? Float32Array.from(v) : null;
    if (!a || (n !== null && a.length !== n) || !a.every(Number.isFinite)) throw bad(`${what} is not ${n ?? 'a list of'} finite numbers`);
    return a;
  };
  if (!Array.isArray(state.samples)) throw bad('samples missing');
  const samples = new Map();
  for (const [i, s] of state.samples.entries()) {
    if (!s || !Array.isArray(s.embeddings)) throw bad(`samples[${i}] has no embeddings`);
    samples.set(checkLabel(s.label), s.embeddings.map((e, j) => vec(e, dim, `samples[${i}].embeddings[${j}]`)));
  }
  let head = null;
  if (state.head) {
    const { classes } = state.head;
    if (!Array.isArray(classes) || classes.length < 2) throw bad('the head needs at least two classes');
    const names = classes.map(checkLabel);
    const bias = vec(state.head.bias, names.length, 'head.bias');
    head = { weight: vec(state.head.weight, dim === null ? null : dim * names.length, 'head.weight'), bias, classes: names };
  }
  return { samples, head };
}

export async function createClassifier({ model, backend = 'auto', threads, simd = 'auto' } = {}) {
  if (!['auto', 'gpu', 'cpu'].includes(backend)) throw new EdgetuneError('input-invalid', `backend '${backend}' (auto, gpu or cpu)`);
  let { bytes, name } = await modelBytes(model);
  const engine = new WorkerClient(new Worker(new URL('./workers/engine.js', import.meta.url), { type: 'module', name: 'edgetune engine' }), 'edgetune engine');
  try {
    if (!isEtm(bytes)) bytes = await engine.call('importModel', { bytes, fileName: name }).catch(wrap('model-invalid'));
    // The model is read before any GPU is asked for: a failure naming WebGPU or the GPU is the
    // backend's, anything else the model's.
    const started = await engine.call('create', { model: bytes, backend, options: { threads, simd } }).catch((e) => {
      throw new EdgetuneError(/webgpu|gpu|adapter/i.test(messageOf(e)) ? 'gpu-unavailable' : codeOf(e, 'model-invalid'), messageOf(e), { cause: e });
    });
    return new Classifier(engine, started, bytes);
  } catch (e) {
    engine.terminate();
    throw e;
  }
}
