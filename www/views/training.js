// Training: the Train button (a head on the stored embeddings, in workers/trainer.js), the
// progress bar and chart, the result (validation accuracy, confusion matrix), and quantizing
// a trained head to int8 as a new version.
import { quantizeHead, headPredictions } from '/pkg/edgetune.js';
import { WorkerClient } from '/lib/protocol.js';
import { $, el, showError, message } from '/lib/dom.js';
import { state, stats, on, changed, samplesOf, currentVersion } from '/lib/state.js';
import { setMode } from '/views/live.js';

// The training worker is started (and its wasm compiled) once, ahead of the first Train, so
// pressing Train costs the training itself, not a worker start; a crashed one is replaced.
export function trainer() {
  if (!state.trainer || state.trainer.crashed) state.trainer = new WorkerClient('/workers/trainer.js', 'training worker');
  return state.trainer;
}

const trainable = () => state.classes.filter((c) => samplesOf(c.id).length > 0);

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
  g.font = '14px system-ui';
  for (const [text, color, x] of [['loss', '#9aa7b4', 14], ['accuracy', '#66bb6a', 60], ['validation', '#90caf9', 140],
    [`epoch ${history.length}/${history[history.length - 1].epochs}`, '#9aa7b4', w - 120]]) {
    g.fillStyle = color;
    g.fillText(text, x, 18);
  }
}

function renderResult(v) {
  const box = $('train-result');
  const m = v.metrics || {};
  const parts = [];
  const acc = m.validationAccuracy;
  if (m.federated) {
    const a = m.federated.accuracy;
    parts.push(el('p', { id: 'val-accuracy', textContent: `The federation's head after round ${m.federated.round ?? '?'} (Flower FedAvg)${a === null || a === undefined ? '' : `: ${(100 * a).toFixed(1)}% on this device's ${m.samples} samples`}.` }));
    box.replaceChildren(...parts);
    box.hidden = false;
    return;
  }
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

// The trained head's weights quantized per class to int8 (in the wasm core, as int8 models
// store heads), measured on the project's samples of its classes with the float weights and
// with the int8 ones (the engine's head arithmetic, headPredictions), and saved as a new
// version (the float one stays in the list).
async function quantizeVersionHead(v, button) {
  button.disabled = true;
  try {
    const weight = Float32Array.from(quantizeHead(v.weight, v.names.length).weight);
    const labels = [];
    const rows = [];
    v.classIds.forEach((id, label) => { for (const s of samplesOf(id)) { labels.push(label); rows.push(s.embedding); } });
    const packed = new Float32Array(rows.length * v.dim);
    rows.forEach((e, i) => packed.set(e, i * v.dim));
    const n = labels.length;
    const a = n ? headPredictions(v.weight, v.bias, packed) : [];
    const b = n ? headPredictions(weight, v.bias, packed) : [];
    const count = (f) => labels.reduce((s, l, i) => s + (f(l, i) ? 1 : 0), 0);
    const int8 = { samples: n, from: v.id, before: n ? count((l, i) => a[i] === l) / n : null,
      after: n ? count((l, i) => b[i] === l) / n : null, agreement: n ? count((_, i) => a[i] === b[i]) / n : null };
    const version = {
      backbone: v.backbone, classIds: v.classIds, names: v.names, dim: v.dim, weight, bias: Float32Array.from(v.bias),
      metrics: { ...v.metrics, int8 }, options: v.options,
    };
    const saved = await state.store.saveVersion(version);
    state.versions.push(saved);
    state.current = saved.id;
    changed('versions');
    setMode('custom');
    renderResult(saved);
  } catch (err) {
    button.disabled = false;
    showError(`Could not quantize the head: ${message(err)}`);
  }
}

// Saves a finished run as a new version. The live view switches to the new classes at once
// (the engine gets the head before the next frame); the previous version stays current in
// storage until the save commits.
async function keepResult(r, classes, samples, opts) {
  const version = {
    backbone: state.backbone,
    classIds: classes.map((c) => c.id),
    names: classes.map((c) => c.name),
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
  const pending = { ...version, id: 'unsaved', created: Date.now() };
  state.versions.push(pending);
  const previous = state.current;
  state.current = pending.id;
  stats.awaitingLive = pending.id;
  changed('versions');
  setMode('custom');
  renderResult(pending);
  document.body.dataset.saving = 'version';
  try {
    const saved = await state.store.saveVersion(version);
    state.versions[state.versions.indexOf(pending)] = saved;
    if (state.current === pending.id) state.current = saved.id;
    if (stats.awaitingLive === pending.id) stats.awaitingLive = saved.id; // no frame yet
    if (state.current === saved.id) renderResult(saved); // now it can be quantized
    document.body.dataset.training = 'done';
  } catch (err) {
    state.versions.splice(state.versions.indexOf(pending), 1);
    state.current = previous;
    setMode(previous === null ? 'imagenet' : 'custom');
    document.body.dataset.training = 'error';
    showError(err);
  } finally {
    delete document.body.dataset.saving;
  }
  changed('versions');
}

async function train() {
  const classes = trainable();
  if (classes.length < 2 || state.training) return;
  const samples = [];
  classes.forEach((c, label) => { for (const s of samplesOf(c.id)) samples.push({ embedding: s.embedding, label }); });
  const opts = { ...options(), validation: samples.length >= 10 ? 0.2 : 0, seed: 1 };
  stats.trainPressedAt = performance.now();
  stats.trainSamples = samples.length;
  const history = [];
  state.training = { started: stats.trainPressedAt };
  renderTrainState();
  $('stop').hidden = false;
  $('train-progress').hidden = false;
  $('train-progress').value = 0;
  $('chart').hidden = false;
  $('train-result').hidden = true;
  document.body.dataset.training = 'running';
  let result;
  try {
    result = await trainer().call('train', { dim: state.dim, classes: classes.map((c) => c.name), samples, options: opts }, {
      onProgress: (p) => {
        history.push(p);
        $('train-progress').value = p.epoch / p.epochs;
        drawChart(history);
      },
    });
  } catch (err) {
    document.body.dataset.training = 'error';
    showError(`Training failed: ${message(err)}`);
    return;
  } finally {
    state.training = null;
    $('stop').hidden = true;
    renderTrainState();
  }
  stats.trainMs = performance.now() - stats.trainPressedAt;
  await keepResult(result, classes, samples, opts);
}

export function initTraining() {
  $('train').addEventListener('click', train);
  $('stop').addEventListener('click', () => state.training && trainer().call('stop').catch(showError));
  on('samples', renderTrainState);
  on('project', () => { const v = currentVersion(); if (v) renderResult(v); });
}
