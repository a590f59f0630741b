// The app: live camera classification with the default int8 model (WebGPU when the browser
// has it, else the CPU), teaching the user's own classes (samples from the camera or from
// files), training a head in a Web Worker, and keeping everything in IndexedDB.
//
// The backbone can be swapped for a model the user opens or drops on the page (.tflite,
// .onnx, .etm; converted in wasm, kept in IndexedDB). Embeddings belong to the backbone
// that made them, so a switch re-embeds every stored sample from its image before it
// commits (store.js), and the trained heads of other backbones stay kept but hidden.
//
// One engine call runs at a time (`exclusive`): the frame loop, file uploads and anything
// else queue behind the call in flight instead of piling up in the engine. The live view
// shows the user's classes once a version is trained (mode "custom"), the ImageNet
// classifier otherwise.
import init, { version as engineVersion, modelWithHead, modelInfo, quantizeHead } from '/pkg/edgetune.js';
import { Camera, CameraError, centreSquare } from '/camera.js';
import { openStore, BUILTIN } from '/store.js';
import { wasmSimdSupported, SIMD_MISSING } from '/wasm-support.js';
import { checkName, exportProject, parseProject, headProbabilities } from '/project.js';

const MODEL_URL = '/models/efficientnet_lite0.int8.etm';
const FRAME = 256; // the model crops 87.5% of this square, i.e. 224 x 224
const SAMPLE_EVERY_MS = 250; // "a few per second" while Record is held

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
};

const MODEL_FILE = /\.(tflite|onnx|etm)$/i;
// In-page quantization: camera frames taken for calibration (one every 150 ms), the stored
// sample images used as well (at most 32), and the calibration method (the built-in model's).
const CALIBRATION_FRAMES = 16;
const CALIBRATION_EVERY_MS = 150;
const CALIBRATION_SAMPLES = 32;
const CALIBRATION_METHOD = 'mse';

const state = {
  engine: null,
  modelBytes: null, // the backbone in use (.etm bytes)
  backbone: BUILTIN, // its key (store.js)
  modelName: 'EfficientNet-Lite0 int8',
  models: [], // models the user opened, as stored
  switching: false, // a model switch is re-embedding samples: frames and recording pause
  dim: 1280,
  store: null,
  classes: [],
  samples: [],
  versions: [],
  current: null,
  mode: 'imagenet',
  recording: null, // class id while its Record button is held
  lastSample: 0,
  trainer: null, // the training Web Worker
  training: null, // the run in progress
  frames: 0,
  fpsSince: performance.now(),
};

// Figures the page measures about itself (shown in the UI, read by the tests' benchmarks):
// per-frame inference ms, extra ms per recorded sample (JPEG + storage; the embedding comes
// from the frame already classified), train ms, and ms from pressing Train to the first live
// frame showing the new classes.
const stats = { frames: 0, frameMs: [], sampleMs: [], trainMs: null, trainToLiveMs: null, trainSamples: null };
globalThis.edgetuneStats = stats;
const keep = (list, v) => { list.push(v); if (list.length > 200) list.shift(); };
let trainPressedAt = null;
let awaitingLiveVersion = null;

// The engine runs in a worker (engine-worker.js); this is its promise-returning face, with
// the same calls as the wasm Engine.
class RemoteEngine {
  constructor() {
    this.worker = new Worker('/engine-worker.js', { type: 'module' });
    this.pending = new Map();
    this.next = 1;
    this.worker.onmessage = (ev) => {
      const { id, ok, result, error } = ev.data;
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (p) (ok ? p.resolve(result) : p.reject(new Error(error)));
    };
    this.worker.onerror = (ev) => {
      const err = new Error(`the engine stopped: ${ev.message || 'worker error'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  call(op, args = {}, transfer = []) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  create(model, backend) { return this.call('create', { model, backend }); }
  memory() { return this.call('memory'); }
  backend() { return this.call('backend'); }
  classify(rgba, width, height, k) { return this.call('classify', { rgba, width, height, k }, [rgba.buffer]); }
  embed(rgba, width, height) { return this.call('embed', { rgba, width, height }, [rgba.buffer]); }
}

let chain = Promise.resolve();
function exclusive(fn) {
  const p = chain.then(fn, fn);
  chain = p.catch(() => {});
  return p;
}

let errorTimer = 0;
function showError(err) {
  const box = $('error');
  box.textContent = String(err && err.message ? err.message : err);
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

// Heads trained on the backbone in use (the others stay stored for when it is back).
const ownVersions = () => state.versions.filter((v) => v.backbone === state.backbone);
const currentVersion = () => ownVersions().find((v) => v.id === state.current) || null;
const samplesOf = (classId) => state.samples.filter((s) => s.classId === classId);

// ---- live view ------------------------------------------------------------------------

function showPredictions(rows) {
  const list = $('predictions');
  list.replaceChildren(...rows.map(({ label, p }) => el('li', {},
    el('span', { className: 'label', textContent: label }),
    el('span', { className: 'pct', textContent: `${(100 * p).toFixed(1)}%` }),
    el('span', { className: 'meter' }, Object.assign(el('span'), { style: `width:${(100 * p).toFixed(1)}%` })))));
  list.dataset.state = 'live';
  list.dataset.top = rows.length ? rows[0].label : '';
}

function setMode(mode) {
  const v = currentVersion();
  state.mode = mode === 'custom' && v ? 'custom' : 'imagenet';
  $('mode-imagenet').setAttribute('aria-pressed', String(state.mode === 'imagenet'));
  $('mode-custom').setAttribute('aria-pressed', String(state.mode === 'custom'));
  $('mode-custom').disabled = !v;
  document.body.dataset.mode = state.mode;
}

// The predictions for the newest frame: the user's classes (their head on the frame's
// embedding) in custom mode, ImageNet's top 3 otherwise. Called per frame, and right after
// training so the new classes show without waiting for the next frame.
function renderLive() {
  if (!state.lastFrame) return;
  const { embedding, top } = state.lastFrame;
  const v = currentVersion();
  if (state.mode === 'custom' && v) {
    const probs = headProbabilities(v, embedding);
    showPredictions(probs.map((p, i) => ({ label: v.names[i], p })).sort((a, b) => b.p - a.p).slice(0, 3));
    if (awaitingLiveVersion === v.id && trainPressedAt !== null) {
      stats.trainToLiveMs = performance.now() - trainPressedAt;
      awaitingLiveVersion = null;
      document.body.dataset.live = String(v.id);
    }
  } else {
    showPredictions(top.map((t) => ({ label: t.label.split(',')[0], p: t.probability })));
  }
}

async function onFrame(video) {
  if (state.switching) return;
  const frame = centreSquare(video, FRAME, onFrame.canvas || (onFrame.canvas = new OffscreenCanvas(FRAME, FRAME)));
  // Calibration for "Quantize" keeps a copy of a frame now and then (the classify call
  // takes the pixels).
  const c = state.collecting;
  if (c && c.frames.length < c.want && performance.now() - c.last >= CALIBRATION_EVERY_MS) {
    c.frames.push(frame.rgba.slice());
    c.last = performance.now();
  }
  const r = await exclusive(() => state.engine.classify(frame.rgba, frame.width, frame.height, 3));
  const embedding = r.embedding;
  keep(stats.frameMs, r.ms);
  state.lastFrame = { embedding, top: r.top };
  renderLive();
  state.frames++;
  stats.frames++;
  const now = performance.now();
  if (now - state.fpsSince > 1000) {
    $('fps').textContent = `${((1000 * state.frames) / (now - state.fpsSince)).toFixed(1)} fps`;
    state.frames = 0;
    state.fpsSince = now;
  }
  $('ms').textContent = `${r.ms.toFixed(0)} ms/frame`;
  if (state.recording !== null && now - state.lastSample >= SAMPLE_EVERY_MS) {
    state.lastSample = now;
    const t0 = performance.now();
    const image = await frame.canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 });
    await addSample(state.recording, embedding, image);
    keep(stats.sampleMs, performance.now() - t0);
  }
}

// ---- classes and samples --------------------------------------------------------------

async function addSample(classId, embedding, image) {
  if (!state.classes.some((c) => c.id === classId)) return;
  try {
    const s = await state.store.addSample(classId, embedding, state.backbone, image);
    state.samples.push(s);
    renderClasses();
    if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  } catch (err) {
    stopRecording();
    showError(err);
  }
}

async function addFiles(classId, files) {
  for (const file of files) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      showError(`${file.name} is not an image this browser can read.`);
      continue;
    }
    const frame = centreSquare(bitmap, FRAME);
    bitmap.close();
    try {
      const e = await exclusive(() => state.engine.embed(frame.rgba, frame.width, frame.height));
      const image = await frame.canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 });
      await addSample(classId, e, image);
    } catch (err) {
      showError(err);
    }
  }
}

function startRecording(classId, button) {
  if (state.switching) return;
  if (!state.camera || !state.camera.running) {
    showError('The camera is not running: add images from files instead.');
    return;
  }
  state.recording = classId;
  state.lastSample = 0;
  button.setAttribute('aria-pressed', 'true');
  button.textContent = 'Recording…';
}

function stopRecording() {
  state.recording = null;
  for (const b of document.querySelectorAll('.record[aria-pressed="true"]')) {
    b.setAttribute('aria-pressed', 'false');
    b.textContent = 'Hold to record';
  }
}

let thumbUrls = [];
function renderClasses() {
  for (const u of thumbUrls) URL.revokeObjectURL(u);
  thumbUrls = [];
  const items = state.classes.map((c) => {
    const samples = samplesOf(c.id);
    const name = el('input', { value: c.name, maxLength: 60, ariaLabel: `Name of class ${c.name}`, className: 'class-name' });
    name.addEventListener('change', () => renameClass(c, name));
    const record = el('button', { type: 'button', className: 'record', textContent: 'Hold to record' });
    record.setAttribute('aria-pressed', 'false');
    record.addEventListener('pointerdown', (ev) => {
      ev.preventDefault();
      record.setPointerCapture?.(ev.pointerId);
      startRecording(c.id, record);
    });
    for (const t of ['pointerup', 'pointercancel', 'lostpointercapture']) record.addEventListener(t, stopRecording);
    record.addEventListener('keydown', (ev) => { if ((ev.key === ' ' || ev.key === 'Enter') && !ev.repeat) startRecording(c.id, record); });
    record.addEventListener('keyup', stopRecording);
    record.addEventListener('contextmenu', (ev) => ev.preventDefault());
    const files = el('input', { type: 'file', accept: 'image/*', multiple: true, hidden: true });
    files.addEventListener('change', () => { addFiles(c.id, [...files.files]); files.value = ''; });
    const addImages = el('label', { className: 'button', textContent: 'Add images' }, files);
    const del = el('button', { type: 'button', className: 'danger', textContent: 'Delete', ariaLabel: `Delete class ${c.name}` });
    del.addEventListener('click', () => deleteClass(c));
    const thumbs = el('div', { className: 'thumbs' }, ...samples.slice().reverse().map((s) => {
      const url = URL.createObjectURL(s.image);
      thumbUrls.push(url);
      const x = el('button', { type: 'button', textContent: '✕', ariaLabel: 'Delete this sample' });
      x.addEventListener('click', () => deleteSample(s));
      return el('div', { className: 'thumb' }, el('img', { src: url, alt: `sample of ${c.name}` }), x);
    }));
    const li = el('li', { className: 'class' },
      el('div', { className: 'row' }, name, el('span', { className: 'count', textContent: `${samples.length} sample${samples.length === 1 ? '' : 's'}` })),
      el('div', { className: 'row' }, record, addImages, del),
      thumbs);
    li.dataset.name = c.name;
    li.dataset.count = String(samples.length);
    return li;
  });
  $('classes').replaceChildren(...items);
  renderTrainState();
}

async function renameClass(c, input) {
  try {
    const name = checkName(input.value);
    if (state.classes.some((o) => o.id !== c.id && o.name === name)) throw new Error(`There is already a class called "${name}".`);
    await state.store.renameClass(c.id, name);
    c.name = name;
    renderClasses();
  } catch (err) {
    input.value = c.name;
    showError(err);
  }
}

async function deleteClass(c) {
  const n = samplesOf(c.id).length;
  if (n > 0 && !confirm(`Delete "${c.name}" and its ${n} samples?`)) return;
  try {
    await state.store.deleteClass(c.id);
    state.classes = state.classes.filter((o) => o.id !== c.id);
    state.samples = state.samples.filter((s) => s.classId !== c.id);
    renderClasses();
  } catch (err) {
    showError(err);
  }
}

async function deleteSample(s) {
  try {
    await state.store.deleteSample(s.id);
    state.samples = state.samples.filter((o) => o.id !== s.id);
    renderClasses();
  } catch (err) {
    showError(err);
  }
}

async function addClass(ev) {
  ev.preventDefault();
  try {
    const name = checkName($('new-class').value);
    if (state.classes.some((c) => c.name === name)) throw new Error(`There is already a class called "${name}".`);
    const c = await state.store.addClass(name);
    state.classes.push(c);
    $('new-class').value = '';
    renderClasses();
  } catch (err) {
    showError(err);
  }
}

// ---- training -------------------------------------------------------------------------

function trainable() {
  return state.classes.filter((c) => samplesOf(c.id).length > 0);
}

function renderTrainState() {
  const ready = trainable();
  const empty = state.classes.filter((c) => samplesOf(c.id).length === 0);
  let hint;
  if (ready.length < 2) {
    hint = `Training needs at least two classes with samples (now ${ready.length}).`;
  } else {
    hint = `Ready: ${ready.length} classes, ${ready.reduce((n, c) => n + samplesOf(c.id).length, 0)} samples.`;
    if (empty.length) hint += ` ${empty.map((c) => `"${c.name}"`).join(', ')} ${empty.length === 1 ? 'has' : 'have'} no samples and will be left out.`;
  }
  $('train-hint').textContent = hint;
  $('train').disabled = ready.length < 2 || Boolean(state.training);
}

function options() {
  const num = (id, lo, hi, dflt) => {
    const v = Number($(id).value);
    return Number.isFinite(v) && v >= lo && v <= hi ? v : dflt;
  };
  return {
    epochs: Math.round(num('opt-epochs', 1, 1000, 100)),
    lr: num('opt-lr', 1e-5, 1, 3e-3),
    optimizer: $('opt-optimizer').value,
    loss: $('opt-loss').value,
  };
}

function drawChart(history) {
  const cv = $('chart');
  const g = cv.getContext('2d');
  const { width: w, height: h } = cv;
  g.clearRect(0, 0, w, h);
  if (!history.length) return;
  const n = Math.max(history.length, 2);
  const maxLoss = Math.max(...history.map((p) => p.loss), 1e-6);
  const line = (f, color) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    history.forEach((p, i) => {
      const y = f(p);
      if (y === null || y === undefined) return;
      const x = (i / (n - 1)) * (w - 20) + 10;
      const yy = h - 10 - y * (h - 36); // the top 26 px hold the legend
      if (i === 0) g.moveTo(x, yy); else g.lineTo(x, yy);
    });
    g.stroke();
  };
  line((p) => p.loss / maxLoss, '#ef9a9a');
  line((p) => p.accuracy, '#66bb6a');
  line((p) => p.valAccuracy, '#90caf9');
  g.fillStyle = '#9aa7b4';
  g.font = '14px system-ui';
  g.fillText('loss', 14, 18);
  g.fillStyle = '#66bb6a';
  g.fillText('accuracy', 60, 18);
  g.fillStyle = '#90caf9';
  g.fillText('validation', 140, 18);
  g.fillStyle = '#9aa7b4';
  g.fillText(`epoch ${history.length}/${history[history.length - 1].epochs}`, w - 120, 18);
}

function renderResult(v) {
  const box = $('train-result');
  const m = v.metrics || {};
  const parts = [];
  const acc = m.validationAccuracy;
  if (m.trainMs) parts.push(el('p', { className: 'hint', textContent: `Trained ${m.epochs} epochs on ${m.samples} samples in ${(m.trainMs / 1000).toFixed(2)} s.` }));
  parts.push(el('p', { id: 'val-accuracy', textContent: acc === null || acc === undefined
    ? `Trained on ${m.samples} samples (too few to hold some out for validation).`
    : `Validation accuracy: ${(100 * acc).toFixed(1)}% on held-out samples.` }));
  if (Array.isArray(m.confusion) && m.confusion.length === v.names.length ** 2) {
    const k = v.names.length;
    const head = el('tr', {}, el('th', { textContent: 'true \\ predicted' }), ...v.names.map((n) => el('th', { textContent: n })));
    const rows = v.names.map((n, i) => el('tr', {}, el('th', { textContent: n }),
      ...v.names.map((_, j) => el('td', { className: i === j ? 'hit' : '', textContent: String(m.confusion[i * k + j]) }))));
    parts.push(el('table', { className: 'confusion' }, el('tbody', {}, head, ...rows)));
  }
  const q = m.int8;
  if (q) {
    const pct = (x) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);
    parts.push(el('p', { id: 'int8-accuracy', textContent: `Head quantized to int8 (one scale per class): accuracy on the ${q.samples} samples ${pct(q.before)} with float weights, ${pct(q.after)} with int8; ${pct(q.agreement)} keep their top class.` }));
  } else {
    const button = el('button', { id: 'quantize-head', type: 'button', textContent: 'Quantize head to int8', disabled: v.id === 'unsaved' });
    button.addEventListener('click', () => quantizeVersionHead(v, button));
    parts.push(el('p', {}, button));
  }
  box.replaceChildren(...parts);
  box.hidden = false;
}

const argmax = (p) => p.reduce((best, x, i) => (x > p[best] ? i : best), 0);

// The trained head's weights quantized per class to int8 (in the wasm core, as int8 models
// store heads), measured on the project's samples of its classes with the float weights and
// with the int8 ones, and saved as a new version (the float one stays in the list).
async function quantizeVersionHead(v, button) {
  button.disabled = true;
  try {
    const weight = Float32Array.from(quantizeHead(v.weight, v.names.length).weight);
    let n = 0;
    let before = 0;
    let after = 0;
    let same = 0;
    v.classIds.forEach((id, label) => {
      for (const s of samplesOf(id)) {
        const a = argmax(headProbabilities(v, s.embedding));
        const b = argmax(headProbabilities({ ...v, weight }, s.embedding));
        n += 1;
        before += a === label;
        after += b === label;
        same += a === b;
      }
    });
    const int8 = { samples: n, before: n ? before / n : null, after: n ? after / n : null, agreement: n ? same / n : null, from: v.id };
    const version = {
      backbone: v.backbone, classIds: v.classIds, names: v.names, dim: v.dim, weight, bias: Float32Array.from(v.bias),
      metrics: { ...v.metrics, int8 }, options: v.options,
    };
    const saved = await state.store.saveVersion(version);
    state.versions.push(saved);
    state.current = saved.id;
    setMode('custom');
    renderResult(saved);
    renderVersions();
  } catch (err) {
    button.disabled = false;
    showError(`Could not quantize the head: ${err.message || err}`);
  }
}

// The training worker is started (and its wasm compiled) once, ahead of the first Train, so
// pressing Train costs the training itself, not a worker start.
function trainingWorker() {
  if (!state.trainer) {
    state.trainer = new Worker('/train-worker.js', { type: 'module' });
    state.trainer.onerror = (ev) => {
      state.trainer.terminate();
      state.trainer = null;
      if (state.training) state.training.fail(ev.message || 'the worker stopped');
    };
    state.trainer.onmessage = (ev) => {
      const type = ev.data.type;
      if (type === 'memory') memoryWaiters.shift()?.(ev.data.wasmBytes);
      else if (type.startsWith('quantize')) state.quantizing?.on(ev.data);
      else if (state.training) state.training.on(ev.data);
    };
  }
  return state.trainer;
}

function train() {
  const classes = trainable();
  if (classes.length < 2 || state.training) return;
  const names = classes.map((c) => c.name);
  const samples = [];
  classes.forEach((c, label) => { for (const s of samplesOf(c.id)) samples.push({ embedding: s.embedding, label }); });
  const opts = { ...options(), validation: samples.length >= 10 ? 0.2 : 0, seed: 1 };
  trainPressedAt = performance.now();
  stats.trainSamples = samples.length;
  const history = [];
  $('train').disabled = true;
  $('stop').hidden = false;
  $('train-progress').hidden = false;
  $('train-progress').value = 0;
  $('chart').hidden = false;
  $('train-result').hidden = true;
  document.body.dataset.training = 'running';
  const finish = () => {
    state.training = null;
    $('stop').hidden = true;
    renderTrainState();
  };
  const fail = (message) => {
    finish();
    document.body.dataset.training = 'error';
    showError(`Training failed: ${message}`);
  };
  const done = async (r) => {
    stats.trainMs = performance.now() - trainPressedAt;
    finish();
    const version = {
      backbone: state.backbone,
      classIds: classes.map((c) => c.id),
      names,
      dim: r.dim,
      weight: Float32Array.from(r.weight),
      bias: Float32Array.from(r.bias),
      metrics: {
        validationAccuracy: r.validationAccuracy ?? null,
        confusion: r.confusion ?? null,
        samples: samples.length,
        epochs: r.history.length,
        finalLoss: r.history.length ? r.history[r.history.length - 1].loss : null,
        stopped: r.cancelled,
        trainMs: stats.trainMs,
      },
      options: opts,
    };
    // The live view switches to the new classes at once (on the newest frame); the version
    // is then saved, and the previous one stays current in storage until the save commits.
    const pending = { ...version, id: 'unsaved', created: Date.now() };
    state.versions.push(pending);
    const previous = state.current;
    state.current = pending.id;
    awaitingLiveVersion = pending.id;
    setMode('custom');
    renderLive();
    renderResult(pending);
    document.body.dataset.saving = 'version';
    try {
      const saved = await state.store.saveVersion(version);
      state.versions[state.versions.indexOf(pending)] = saved;
      if (state.current === pending.id) state.current = saved.id;
      if (awaitingLiveVersion === pending.id) awaitingLiveVersion = saved.id; // no frame yet
      if (state.current === saved.id) renderResult(saved); // now it can be quantized
      document.body.dataset.training = 'done';
    } catch (err) {
      state.versions.splice(state.versions.indexOf(pending), 1);
      state.current = previous;
      setMode(previous === null ? 'imagenet' : 'custom');
      renderLive();
      document.body.dataset.training = 'error';
      showError(err);
    } finally {
      delete document.body.dataset.saving;
    }
    renderVersions();
  };
  state.training = {
    fail,
    on(msg) {
      if (msg.type === 'progress') {
        history.push(msg.progress);
        $('train-progress').value = msg.progress.epoch / msg.progress.epochs;
        drawChart(history);
      } else if (msg.type === 'done') {
        done(msg.result);
      } else if (msg.type === 'error') {
        fail(msg.message);
      }
    },
  };
  trainingWorker().postMessage({ type: 'train', dim: state.dim, classes: names, samples, options: opts });
}

// ---- versions, export, import ----------------------------------------------------------

function renderVersions() {
  const own = ownVersions();
  const list = own.slice().reverse().map((v, i) => {
    const acc = v.metrics && v.metrics.validationAccuracy;
    const label = `v${own.length - i} · ${v.names.join(', ')}${v.metrics?.int8 ? ' · int8 head' : ''}${acc === null || acc === undefined ? '' : ` · ${(100 * acc).toFixed(0)}%`} · ${new Date(v.created).toLocaleString()}`;
    const use = el('button', { type: 'button', textContent: v.id === state.current ? 'In use' : 'Use', disabled: v.id === state.current });
    use.addEventListener('click', async () => {
      try {
        await state.store.setMeta('current', v.id);
        state.current = v.id;
        setMode('custom');
        await state.store.setMeta('mode', 'custom');
        renderVersions();
      } catch (err) { showError(err); }
    });
    const del = el('button', { type: 'button', className: 'danger', textContent: 'Delete' });
    del.addEventListener('click', async () => {
      const rest = own.filter((o) => o.id !== v.id);
      const next = v.id === state.current ? (rest.length ? rest[rest.length - 1].id : null) : state.current;
      try {
        await state.store.deleteVersion(v.id, next);
        state.versions = state.versions.filter((o) => o.id !== v.id);
        state.current = next;
        setMode(state.mode);
        renderVersions();
      } catch (err) { showError(err); }
    });
    return el('li', {}, el('span', { className: v.id === state.current ? 'current' : '', textContent: label }), use, del);
  });
  $('versions').replaceChildren(...(list.length ? list : [el('li', { className: 'hint', textContent: 'No trained model yet.' })]));
  $('download-model').disabled = !currentVersion();
}

function download(blob, name) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function downloadModel() {
  const v = currentVersion();
  if (!v) return;
  try {
    const bytes = modelWithHead(state.modelBytes, v.weight, v.bias, v.names);
    download(new Blob([bytes], { type: 'application/octet-stream' }), `edgetune-${v.names.join('-').replace(/[^\p{L}\p{N}-]+/gu, '_').slice(0, 60)}.etm`);
  } catch (err) {
    showError(err);
  }
}

async function exportAll() {
  try {
    // The file holds one backbone's features: the samples' and this backbone's heads.
    const text = await exportProject({ ...state, versions: ownVersions() }, state.dim, state.backbone);
    download(new Blob([text], { type: 'application/json' }), 'edgetune-project.json');
  } catch (err) {
    showError(err);
  }
}

async function importFile(file) {
  try {
    const project = parseProject(await file.text(), state.dim, state.backbone);
    if (state.samples.length && !confirm('Replace your current classes, samples and models with the imported project?')) return;
    await state.store.replaceAll(project);
    await loadProject();
    // Samples made by another model are re-embedded by this one from their images.
    if (state.samples.some((s) => s.backbone !== state.backbone)) {
      await switching(() => commitBackbone(state.backbone, null));
      await loadProject();
    }
  } catch (err) {
    showError(err);
  }
}

async function loadProject() {
  const p = await state.store.load();
  Object.assign(state, { classes: p.classes, samples: p.samples, versions: p.versions, current: p.current, models: p.models });
  setMode(p.mode);
  renderClasses();
  renderVersions();
  renderModels();
  const v = currentVersion();
  if (v) renderResult(v);
  return p;
}

// ---- the backbone model ------------------------------------------------------------------

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
  stopRecording();
  document.body.dataset.switching = 'true';
  try {
    return await fn();
  } finally {
    state.switching = false;
    delete document.body.dataset.switching;
    modelStatus('');
  }
}

// Starts the engine on `bytes` (the old engine keeps running if this fails).
async function startEngine(bytes) {
  const badge = $('backend');
  const wanted = new URLSearchParams(location.search).get('backend') || 'auto';
  const b = await exclusive(() => state.engine.create(bytes.slice(), wanted));
  badge.textContent = backendLabel(b);
  badge.title = `${b.device}: ${b.reason}`;
  badge.dataset.backend = b.backend;
  badge.dataset.state = 'done';
  return b;
}

// The embedding of a stored sample image by the engine in use.
async function embedImage(blob) {
  const bitmap = await createImageBitmap(blob);
  const frame = centreSquare(bitmap, FRAME);
  bitmap.close();
  return exclusive(() => state.engine.embed(frame.rgba, frame.width, frame.height));
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

function applyModel(key, bytes, name) {
  const info = modelInfo(bytes);
  Object.assign(state, { backbone: key, modelBytes: bytes, modelName: name, dim: info.dim });
  $('mode-imagenet').textContent = key === BUILTIN ? 'ImageNet' : 'Model classes';
  document.body.dataset.backbone = key;
}

// Makes the built-in model (record null) or a stored or newly opened model the backbone.
async function useModel(record, isNew = false) {
  const key = record ? record.key : BUILTIN;
  if (key === state.backbone) return;
  const bytes = record ? record.bytes : await builtinModel();
  const name = record ? record.name : 'EfficientNet-Lite0 int8';
  const previous = { key: state.backbone, bytes: state.modelBytes, name: state.modelName };
  await switching(async () => {
    modelStatus(`Starting ${name}…`);
    await startEngine(bytes);
    try {
      await commitBackbone(key, isNew ? record : null);
    } catch (err) {
      await startEngine(previous.bytes).catch(() => {});
      throw err;
    }
    applyModel(key, bytes, name);
    await loadProject();
  });
  renderLive();
}

// The importer module: the engine plus the ONNX and TFLite readers, fetched the first time a
// model file is opened (the engine module leaves them out to stay small).
let importer = null;
function importerModule() {
  importer ??= import('/pkg/importer/edgetune.js').then(async (m) => {
    await m.default();
    return m;
  }).catch((err) => {
    importer = null;
    throw err;
  });
  return importer;
}

// A model file (with an optional labels .txt, one class per line) opened or dropped.
async function openModel(files) {
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
    // An .etm is validated by modelInfo below; other formats go through the importer.
    // An ONNX file carries no preprocessing: the user says which normalization it was trained with.
    const normalization = /\.onnx$/i.test(file.name) ? $('onnx-normalization').value || undefined : undefined;
    const etm = /\.etm$/i.test(file.name) ? bytes : (await importerModule()).importModel(bytes, file.name, labels, normalization);
    const info = modelInfo(etm);
    if (!info.dim) throw new Error('its classifier is not a dense layer on pooled features, so no classes can be trained on it');
    const record = { key: modelKey(etm), name: file.name.replace(MODEL_FILE, ''), fileName: file.name, bytes: etm, info, created: Date.now() };
    const stored = state.models.find((m) => m.key === record.key);
    await useModel(stored || record, !stored);
  } catch (err) {
    modelStatus('');
    showError(`Could not open ${file.name}: ${err && err.message ? err.message : err}`);
  }
}

// The stored sample images (the user's own scene) as 256 x 256 RGBA frames, at most `n`,
// spread over the classes.
async function sampleFrames(n) {
  const step = Math.max(1, Math.ceil(state.samples.length / n));
  const out = [];
  for (let i = 0; i < state.samples.length && out.length < n; i += step) {
    const bitmap = await createImageBitmap(state.samples[i].image);
    out.push(centreSquare(bitmap, FRAME).rgba);
    bitmap.close();
  }
  return out;
}

// A float model quantized to int8 in the page: calibrated on the user's sample images and
// fresh camera frames (every 4th held out to measure top-1 agreement with the float model),
// in the training worker; the int8 model is stored and becomes the backbone.
async function quantize(record) {
  if (state.quantizing || state.switching) return;
  try {
    modelStatus('Collecting calibration frames from the camera…');
    const frames = await sampleFrames(CALIBRATION_SAMPLES);
    if (state.camera && state.camera.running) {
      state.collecting = { frames: [], want: CALIBRATION_FRAMES, last: 0 };
      const t0 = performance.now();
      while (state.collecting.frames.length < CALIBRATION_FRAMES && performance.now() - t0 < 15_000) {
        await new Promise((r) => setTimeout(r, 100));
      }
      frames.push(...state.collecting.frames);
      state.collecting = null;
    }
    if (frames.length < 4) throw new Error('it needs at least 4 images of your scene: record samples or start the camera first');
    const held = frames.filter((_, i) => i % 4 === 3);
    const calib = frames.filter((_, i) => i % 4 !== 3);
    const pack = (list) => { const out = new Uint8Array(list.length * FRAME * FRAME * 4); list.forEach((f, i) => out.set(f, i * f.length)); return out; };
    const result = await new Promise((resolve, reject) => {
      state.quantizing = {
        on(msg) {
          if (msg.type === 'quantize-progress') modelStatus(`Quantizing ${record.name} on ${calib.length} of your images: pass ${msg.pass}, ${msg.done}/${msg.total}`);
          else if (msg.type === 'quantized') resolve(msg);
          else reject(new Error(msg.message));
        },
      };
      renderModels();
      const c = pack(calib);
      const h = pack(held);
      trainingWorker().postMessage({ type: 'quantize', model: record.bytes, calib: c, calibCount: calib.length, heldOut: h, heldCount: held.length,
        width: FRAME, height: FRAME, method: CALIBRATION_METHOD }, [c.buffer, h.buffer]);
    });
    const bytes = new Uint8Array(result.model);
    const q = { key: modelKey(bytes), name: `${record.name} int8`, fileName: record.fileName, bytes, info: modelInfo(bytes), created: Date.now(),
      quantizedFrom: record.key, agreement: { agree: result.agree, heldOut: result.heldOut } };
    state.quantizing = null;
    await useModel(q, true);
  } catch (err) {
    modelStatus('');
    showError(`Could not quantize ${record.name}: ${err && err.message ? err.message : err}`);
  } finally {
    state.collecting = null;
    state.quantizing = null;
    renderModels();
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
    row(BUILTIN, 'EfficientNet-Lite0 int8 (built in)', null),
    ...state.models.map((m) => row(m.key, `${m.name} · ${describe(m)}`, m)));
}

// ---- start ----------------------------------------------------------------------------

function backendLabel(b) {
  if (b.backend === 'gpu') return b.variant === 'dot4I8Packed' ? 'WebGPU · dot4' : 'WebGPU';
  return 'CPU';
}

async function memory() {
  const trainer = trainingWorker();
  const trainerWasm = new Promise((resolve) => { memoryWaiters.push(resolve); });
  trainer.postMessage({ type: 'memory' });
  const engine = await state.engine.memory();
  return { jsHeapBytes: performance.memory ? performance.memory.usedJSHeapSize : null, engineWasmBytes: engine.wasmBytes, trainerWasmBytes: (await trainerWasm) };
}
const memoryWaiters = [];
// What the tests and a curious user can call from the console: memory figures, and a WebGPU
// device loss as a driver reset would cause it (the recovery path).
globalThis.edgetuneDiagnostics = {
  memory,
  loseDevice: () => exclusive(() => state.engine.call('loseDevice')),
  backend: () => exclusive(() => state.engine.backend()),
};

async function main() {
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('offline cache unavailable:', e));
  $('add-class').addEventListener('submit', addClass);
  $('train').addEventListener('click', train);
  $('stop').addEventListener('click', () => state.training && state.trainer && state.trainer.postMessage({ type: 'stop' }));
  $('mode-imagenet').addEventListener('click', () => { setMode('imagenet'); renderLive(); state.store && state.store.setMeta('mode', 'imagenet').catch(showError); });
  $('mode-custom').addEventListener('click', () => { setMode('custom'); renderLive(); state.store && state.store.setMeta('mode', 'custom').catch(showError); });
  $('download-model').addEventListener('click', downloadModel);
  $('export').addEventListener('click', exportAll);
  $('import').addEventListener('change', (ev) => { const f = ev.target.files[0]; ev.target.value = ''; if (f) importFile(f); });
  $('open-model').addEventListener('change', (ev) => { const f = [...ev.target.files]; ev.target.value = ''; if (f.length) openModel(f); });
  // Dropping a model file (optionally with its labels .txt) or a project file on the page.
  document.addEventListener('dragover', (ev) => ev.preventDefault());
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    const files = [...(ev.dataTransfer?.files || [])];
    if (files.some((f) => MODEL_FILE.test(f.name))) openModel(files);
    else if (files.length === 1 && /\.json$/i.test(files[0].name)) importFile(files[0]);
  });
  window.addEventListener('blur', stopRecording);

  const badge = $('backend');
  try {
    if (!wasmSimdSupported()) throw new Error(SIMD_MISSING);
    await init();
    $('version').textContent = `edgetune ${engineVersion()}`;
  } catch (err) {
    badge.textContent = 'engine failed';
    badge.dataset.state = 'error';
    showError(`Could not start the engine: ${err && err.message ? err.message : err}`);
    return;
  }
  // The stored project says which backbone is in use; the built-in model otherwise.
  let saved = null;
  try {
    state.store = await openStore();
    saved = await state.store.load();
  } catch (err) {
    showError(err);
  }
  const record = saved && saved.backbone !== BUILTIN ? saved.models.find((m) => m.key === saved.backbone) : null;
  try {
    badge.textContent = 'loading model…';
    state.engine = new RemoteEngine();
    badge.textContent = 'starting engine…';
    let started = false;
    if (record) {
      try {
        await startEngine(record.bytes);
        applyModel(record.key, record.bytes, record.name);
        started = true;
      } catch (err) {
        showError(`Your model ${record.name} could not start (${err && err.message ? err.message : err}); using the built-in model.`);
      }
    }
    if (!started) {
      const bytes = await builtinModel();
      await startEngine(bytes);
      applyModel(BUILTIN, bytes, 'EfficientNet-Lite0 int8');
    }
  } catch (err) {
    badge.textContent = 'engine failed';
    badge.dataset.state = 'error';
    showError(`Could not start the engine: ${err && err.message ? err.message : err}`);
    return;
  }
  try {
    if (state.store) {
      await loadProject();
      if (state.samples.some((s) => s.backbone !== state.backbone)) await switching(() => commitBackbone(state.backbone, null));
      await loadProject();
    }
  } catch (err) {
    showError(err);
  }
  state.camera = new Camera($('video'));
  try {
    await state.camera.start();
    $('switch-camera').hidden = state.camera.cameras < 2;
    $('switch-camera').addEventListener('click', () => state.camera.switchFacing().catch(showError));
    state.camera.loop(onFrame);
  } catch (err) {
    const msg = $('camera-message');
    msg.textContent = err instanceof CameraError ? err.message : String(err);
    msg.hidden = false;
    $('predictions').dataset.state = 'no-camera';
  }
  trainingWorker();
  document.body.dataset.ready = 'true';
}

main();
