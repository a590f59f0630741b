// The backbone: the built-in EfficientNet-Lite0 int8 or a model the user opened (.tflite,
// .onnx, .etm; converted by the importer module inside the engine worker, kept in
// IndexedDB), switching between them (samples re-embedded from their images), and a float
// model quantized to int8 on the user's own frames.
import { modelInfo } from '/pkg/edgetune.js';
import { centreSquare } from '/camera.js';
import { BUILTIN } from '/store.js';
import { $, el, showError, message } from '/lib/dom.js';
import { WorkerClient } from '/lib/protocol.js';
import { state, on, changed, exclusive, loadProject } from '/lib/state.js';
import { trainer } from '/views/training.js';

const MODEL_URL = '/models/efficientnet_lite0.int8.etm';
const BUILTIN_NAME = 'EfficientNet-Lite0 int8';
export const MODEL_FILE = /\.(tflite|onnx|etm)$/i;
// In-page quantization: camera frames taken for calibration, the stored sample images used
// as well (at most 32), and the calibration method (the built-in model's).
const CALIBRATION_FRAMES = 16;
const CALIBRATION_SAMPLES = 32;
const CALIBRATION_METHOD = 'mse';

// A key for a model's bytes: two 32-bit FNV-1a hashes (different offsets) and the length.
// It tells embeddings of different models apart; it is not a security measure.
function modelKey(bytes) {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i], 0x01000193);
    b = Math.imul(b ^ bytes[i], 0x01000193);
  }
  return `etm-${bytes.length}-${(a >>> 0).toString(16)}${(b >>> 0).toString(16)}`;
}

let builtinBytes = null;
async function builtinModel() {
  if (!builtinBytes) {
    const res = await fetch(MODEL_URL);
    if (!res.ok) throw new Error(`the model could not be loaded (${res.status})`);
    builtinBytes = new Uint8Array(await res.arrayBuffer());
  }
  return builtinBytes;
}

function modelStatus(text) {
  const box = $('model-status');
  box.textContent = text || '';
  box.hidden = !text;
}

// Runs `fn` with the frame loop and recording paused (a switch in progress).
async function switching(fn) {
  state.switching = true;
  document.body.dataset.switching = 'true';
  changed('switching');
  try {
    return await fn();
  } finally {
    state.switching = false;
    delete document.body.dataset.switching;
    modelStatus('');
    changed('switching');
  }
}

function backendLabel(b) {
  if (b.backend === 'gpu') return b.variant === 'dot4I8Packed' ? 'WebGPU · dot4' : 'WebGPU';
  return b.cpu?.threads > 1 ? `CPU · ${b.cpu.threads} threads` : 'CPU';
}

function showBackend(b) {
  const badge = $('backend');
  badge.textContent = b.probing ? `${backendLabel(b)} · testing WebGPU…` : backendLabel(b);
  badge.title = `${b.device}: ${b.reason}${b.cpu ? `; CPU kernels: ${b.cpu.threads} thread${b.cpu.threads > 1 ? 's' : ''}${b.cpu.reason ? ` (${b.cpu.reason})` : ''}, ${b.cpu.variant?.endsWith('relaxed') ? 'relaxed SIMD' : 'SIMD'}` : ''}`;
  badge.dataset.cpuVariant = b.cpu?.variant ?? '';
  badge.dataset.threads = String(b.cpu?.threads ?? 1);
  badge.dataset.backend = b.backend;
  badge.dataset.probe = b.probing ? 'running' : 'done';
  badge.dataset.state = 'done';
}

// Neither the new model nor the previous one runs: the engine now holds a model the page's
// state does not describe, so it is stopped rather than left to answer with the wrong
// classes or embed samples for the wrong backbone. Every engine call then fails with the
// reason (frames show it in the live view); the stored project is untouched and a reload
// starts it again. Returns the reason.
function engineStopped(why) {
  const reason = new Error(`the engine is stopped: ${why}; reload the page`);
  state.engine.terminate(reason);
  const badge = $('backend');
  badge.textContent = 'engine stopped';
  badge.title = reason.message;
  badge.dataset.state = 'error';
  return reason;
}

// An engine start that has not answered by then is given up on: the worker is replaced by a
// single-threaded one and the start tried once more. (Seen once in a few runs of Firefox
// started offline by the service worker: the threaded start never answered and the page stayed
// at "starting engine…".) A start takes under a second on a desktop, seconds on a slow phone.
const ENGINE_START_MS = 60_000;

function withTimeout(promise, ms, why) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(why)), ms); });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// The page's ?threads=N and ?simd=plain, for the engine worker (workers/engine.js).
function engineOptions() {
  const p = state.engineParams || new URLSearchParams();
  return { threads: p.get('threads') ?? undefined, simd: p.get('simd') ?? undefined };
}

async function createEngine(args) {
  const why = `the engine did not start within ${ENGINE_START_MS / 1000} s`;
  try {
    return await withTimeout(state.engine.call('create', { ...args, options: engineOptions() }), ENGINE_START_MS, why);
  } catch (err) {
    if (message(err) !== why) throw err;
    state.engine.terminate(new Error(why));
    state.engine = new WorkerClient('/workers/engine.js', 'engine');
    const b = await withTimeout(state.engine.call('create', { ...args, options: { ...engineOptions(), threads: 1 } }), ENGINE_START_MS, `${why}, twice`);
    return { ...b, cpu: { ...b.cpu, reason: `restarted on one thread: ${why}` } };
  }
}

let engineStarts = 0;
// Starts the engine on `bytes` (the old engine keeps running if this fails). Under `auto` the
// CPU answers at once and the worker tests WebGPU behind it; the badge says so, and says
// what was decided when the test ends (the GPU then runs the next frame).
async function startEngine(bytes) {
  const wanted = new URLSearchParams(location.search).get('backend') || 'auto';
  const b = await exclusive(() => createEngine({ model: bytes.slice(), backend: wanted }));
  const start = ++engineStarts;
  state.frameSize = b.frameSize;
  state.engineHead = null; // a new engine starts without the user's head
  showBackend(b);
  if (b.probing) {
    state.engine.call('settleBackend').then((settled) => {
      if (start === engineStarts) showBackend({ ...settled, cpu: b.cpu });
    }, (err) => {
      if (start === engineStarts) showError(`The WebGPU test failed: ${message(err)}; the CPU runs.`);
    });
  }
  return b;
}

// The embedding of a stored sample image by the engine in use.
async function embedImage(blob) {
  const bitmap = await createImageBitmap(blob);
  const frame = centreSquare(bitmap, state.frameSize);
  bitmap.close();
  const args = { rgba: frame.rgba, width: frame.width, height: frame.height };
  return exclusive(() => state.engine.call('embed', args, { transfer: [frame.rgba.buffer] }));
}

// With the engine already running backbone `key`: re-embeds the samples another backbone
// made and commits the switch (and `record`, a newly opened model) in one transaction.
async function commitBackbone(key, record) {
  const stale = state.samples.filter((s) => s.backbone !== key);
  const embeddings = new Map();
  let done = 0;
  for (const s of state.samples) {
    if (s.backbone === key) {
      embeddings.set(s.id, s.embedding);
      continue;
    }
    modelStatus(`Re-embedding your samples with the new model: ${++done}/${stale.length}`);
    embeddings.set(s.id, await embedImage(s.image));
  }
  const own = state.versions.filter((v) => v.backbone === key);
  const current = own.some((v) => v.id === state.current) ? state.current : own.length ? own[own.length - 1].id : null;
  document.body.dataset.saving = 'model';
  try {
    await state.store.switchBackbone({ key, model: record, embeddings, current });
  } finally {
    delete document.body.dataset.saving;
  }
}

// Samples another backbone made (an imported project, an interrupted switch) re-embedded
// by the one in use.
export async function reembedStaleSamples() {
  if (!state.samples.some((s) => s.backbone !== state.backbone)) return;
  await switching(() => commitBackbone(state.backbone, null));
  await loadProject();
}

function applyModel(key, bytes, name) {
  const info = modelInfo(bytes);
  Object.assign(state, { backbone: key, modelBytes: bytes, modelName: name, dim: info.dim });
  $('mode-imagenet').textContent = key === BUILTIN ? 'ImageNet' : 'Model classes';
  document.body.dataset.backbone = key;
}

// Starts the engine on the stored backbone `record` (the built-in model when it is null or
// fails to start).
export async function startBackbone(record) {
  if (record) {
    try {
      await startEngine(record.bytes);
      applyModel(record.key, record.bytes, record.name);
      return;
    } catch (err) {
      showError(`Your model ${record.name} could not start (${message(err)}); using the built-in model.`);
    }
  }
  const bytes = await builtinModel();
  await startEngine(bytes);
  applyModel(BUILTIN, bytes, BUILTIN_NAME);
}

// Makes the built-in model (record null) or a stored or newly opened model the backbone.
async function useModel(record, isNew = false) {
  const key = record ? record.key : BUILTIN;
  if (key === state.backbone) return;
  const bytes = record ? record.bytes : await builtinModel();
  const name = record ? record.name : BUILTIN_NAME;
  const previous = { key: state.backbone, bytes: state.modelBytes, name: state.modelName };
  await switching(async () => {
    modelStatus(`Starting ${name}…`);
    await startEngine(bytes);
    try {
      await commitBackbone(key, isNew ? record : null);
    } catch (err) {
      // The switch did not commit (its one transaction), so the previous model goes back in.
      try {
        await startEngine(previous.bytes);
      } catch (restoreErr) {
        const stopped = engineStopped(`${previous.name} could not be restarted (${message(restoreErr)})`);
        throw new Error(`${message(err)}; ${stopped.message}`);
      }
      throw err;
    }
    applyModel(key, bytes, name);
    await loadProject();
  });
}

// A model file (with an optional labels .txt, one class per line) opened or dropped. Formats
// other than .etm are converted in the engine worker, which loads the importer module (the
// engine plus the ONNX and TFLite readers) the first time.
export async function openModel(files) {
  const file = files.find((f) => MODEL_FILE.test(f.name));
  if (!file) {
    showError('Open a .tflite, .onnx or .etm model file (and optionally a .txt with one label per line).');
    return;
  }
  if (state.switching) return;
  const labelsFile = files.find((f) => /\.txt$/i.test(f.name));
  try {
    modelStatus(`Converting ${file.name}…`);
    const bytes = new Uint8Array(await file.arrayBuffer());
    const labels = labelsFile ? (await labelsFile.text()).split(/\r?\n/).map((l) => l.trim()).filter(Boolean) : undefined;
    // An ONNX file carries no preprocessing: the user says which normalization it was trained with.
    const normalization = /\.onnx$/i.test(file.name) ? $('onnx-normalization').value || undefined : undefined;
    const etm = /\.etm$/i.test(file.name) ? bytes
      : await state.engine.call('importModel', { bytes, fileName: file.name, labels, normalization }, { transfer: [bytes.buffer] });
    const info = modelInfo(etm);
    if (!info.dim) throw new Error('its classifier is not a dense layer on pooled features, so no classes can be trained on it');
    const record = { key: modelKey(etm), name: file.name.replace(MODEL_FILE, ''), fileName: file.name, bytes: etm, info, created: Date.now() };
    const stored = state.models.find((m) => m.key === record.key);
    await useModel(stored || record, !stored);
  } catch (err) {
    modelStatus('');
    showError(`Could not open ${file.name}: ${message(err)}`);
  }
}

// The stored sample images (the user's own scene) as square RGBA frames, at most `n`,
// spread over the classes.
async function sampleFrames(n) {
  const step = Math.max(1, Math.ceil(state.samples.length / n));
  const out = [];
  for (let i = 0; i < state.samples.length && out.length < n; i += step) {
    const bitmap = await createImageBitmap(state.samples[i].image);
    out.push(centreSquare(bitmap, state.frameSize).rgba);
    bitmap.close();
  }
  return out;
}

// Camera frames kept by the frame loop for calibration (at most 15 s).
async function cameraFrames(want) {
  if (!state.camera || !state.camera.running) return [];
  state.collecting = { frames: [], want, last: 0 };
  const t0 = performance.now();
  while (state.collecting.frames.length < want && performance.now() - t0 < 15_000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const frames = state.collecting.frames;
  state.collecting = null;
  return frames;
}

// A float model quantized to int8 in the page: calibrated on the user's sample images and
// fresh camera frames (every 4th held out to measure top-1 agreement with the float model),
// in the training worker; the int8 model is stored and becomes the backbone.
async function quantize(record) {
  if (state.quantizing || state.switching) return;
  try {
    modelStatus('Collecting calibration frames from the camera…');
    const frames = [...await sampleFrames(CALIBRATION_SAMPLES), ...await cameraFrames(CALIBRATION_FRAMES)];
    if (frames.length < 4) throw new Error('it needs at least 4 images of your scene: record samples or start the camera first');
    const held = frames.filter((_, i) => i % 4 === 3);
    const calib = frames.filter((_, i) => i % 4 !== 3);
    const size = state.frameSize;
    const pack = (list) => { const out = new Uint8Array(list.length * size * size * 4); list.forEach((f, i) => out.set(f, i * f.length)); return out; };
    state.quantizing = record.key;
    changed('models');
    const c = pack(calib);
    const h = pack(held);
    const args = { model: record.bytes, calib: c, calibCount: calib.length, heldOut: h, heldCount: held.length, width: size, height: size, method: CALIBRATION_METHOD };
    const result = await trainer().call('quantize', args, {
      transfer: [c.buffer, h.buffer],
      onProgress: (p) => modelStatus(`Quantizing ${record.name} on ${calib.length} of your images: pass ${p.pass}, ${p.done}/${p.total}`),
    });
    const bytes = new Uint8Array(result.model);
    const q = { key: modelKey(bytes), name: `${record.name} int8`, fileName: record.fileName, bytes, info: modelInfo(bytes), created: Date.now(),
      quantizedFrom: record.key, agreement: { agree: result.agree, heldOut: result.heldOut } };
    state.quantizing = null;
    await useModel(q, true);
  } catch (err) {
    modelStatus('');
    showError(`Could not quantize ${record.name}: ${message(err)}`);
  } finally {
    state.collecting = null;
    state.quantizing = null;
    changed('models');
  }
}

function renderModels() {
  const row = (key, label, record) => {
    const inUse = key === state.backbone;
    const use = el('button', { type: 'button', textContent: inUse ? 'In use' : 'Use', disabled: inUse });
    use.addEventListener('click', () => useModel(record).catch(showError));
    const li = el('li', {}, el('span', { className: inUse ? 'current' : '', textContent: label }), use);
    li.dataset.key = key;
    if (record && record.info.precision === 'f32') {
      const q = el('button', { type: 'button', className: 'quantize', textContent: 'Quantize to int8', disabled: Boolean(state.quantizing) });
      q.addEventListener('click', () => quantize(record));
      li.append(q);
    }
    if (record) {
      const del = el('button', { type: 'button', className: 'danger', textContent: 'Delete', disabled: inUse });
      del.addEventListener('click', async () => {
        const n = state.versions.filter((v) => v.backbone === key).length;
        if (n && !confirm(`Delete ${record.name} and the ${n} model versions trained on it?`)) return;
        try {
          await state.store.deleteModel(key);
          await loadProject();
        } catch (err) { showError(err); }
      });
      li.append(del);
    }
    return li;
  };
  const describe = (m) => `${m.info.precision} · ${m.info.input[0]}×${m.info.input[1]} · ${m.info.dim} features · ${m.info.classes} classes`
    + (m.agreement ? ` · top-1 equals the float model's on ${m.agreement.agree}/${m.agreement.heldOut} held-out frames` : '');
  $('models').replaceChildren(
    row(BUILTIN, `${BUILTIN_NAME} (built in)`, null),
    ...state.models.map((m) => row(m.key, `${m.name} · ${describe(m)}`, m)));
}

export function initModels() {
  $('open-model').addEventListener('change', (ev) => { const f = [...ev.target.files]; ev.target.value = ''; if (f.length) openModel(f); });
  on('models', renderModels);
}
