// The live view: the camera's frames classified, with the model's classes (ImageNet for the
// built-in model) or the user's (their trained head, run by the engine on each frame's
// embedding). Frames also feed recording (a sample per SAMPLE_EVERY_MS while Record is held)
// and calibration for in-page quantization.
import { centreSquare } from '/camera.js';
import { $, el, showError } from '/lib/dom.js';
import { state, stats, keep, on, changed, currentVersion, exclusive } from '/lib/state.js';
import { addSample } from '/views/classes.js';

const SAMPLE_EVERY_MS = 250; // "a few per second" while Record is held
const CALIBRATION_EVERY_MS = 150;

function showPredictions(rows) {
  const list = $('predictions');
  list.replaceChildren(...rows.map(({ label, p }) => el('li', {},
    el('span', { className: 'label', textContent: label }),
    el('span', { className: 'pct', textContent: `${(100 * p).toFixed(1)}%` }),
    el('span', { className: 'meter' }, Object.assign(el('span'), { style: `width:${(100 * p).toFixed(1)}%` })))));
  list.dataset.state = 'live';
  list.dataset.top = rows.length ? rows[0].label : '';
}

// A frame the engine could not classify: the predictions give way to the reason (never the
// previous frame's answer shown as if current); the next frame that classifies replaces it.
function showFrameError(err) {
  const list = $('predictions');
  list.replaceChildren(el('li', { className: 'frame-error', textContent: `This frame could not be classified (${err && err.message ? err.message : err}); trying the next one.` }));
  list.dataset.state = 'error';
  list.dataset.top = '';
  state.lastFrame = null;
  stats.frameErrors++;
}

// The mode buttons: "custom" only with a trained head for this backbone.
function renderMode() {
  const v = currentVersion();
  if (state.mode === 'custom' && !v) state.mode = 'imagenet';
  $('mode-imagenet').setAttribute('aria-pressed', String(state.mode === 'imagenet'));
  $('mode-custom').setAttribute('aria-pressed', String(state.mode === 'custom'));
  $('mode-custom').disabled = !v;
  document.body.dataset.mode = state.mode;
}

export function setMode(mode) {
  state.mode = mode === 'custom' && currentVersion() ? 'custom' : 'imagenet';
  changed('mode');
}

// The engine runs the current version's head on every frame (or none). Setting it does not
// queue behind the frame in flight: the engine answers at once with the new head's classes on
// the last frame it classified, shown right away.
function syncHead() {
  const v = currentVersion();
  const id = v ? v.id : null;
  if (id === state.engineHead || !state.engine) return;
  state.engineHead = id;
  const set = v ? state.engine.call('setHead', { weight: v.weight, bias: v.bias, names: v.names, k: 3, tag: String(id) }) : state.engine.call('clearHead');
  set.then((top) => {
    if (!top || state.engineHead !== id || !state.lastFrame) return;
    state.lastFrame = { ...state.lastFrame, head: top, headId: String(id) };
    renderLive();
  }).catch((err) => { state.engineHead = null; showError(`The live view cannot use this head: ${err.message || err}`); });
}

// The predictions of the newest frame: the user's classes in custom mode (once a frame
// classified with the current version's head arrived), the model's top 3 otherwise.
function renderLive() {
  const f = state.lastFrame;
  if (!f) return;
  const v = currentVersion();
  if (state.mode === 'custom' && v) {
    if (!f.head || f.headId !== String(v.id)) return; // the next frame brings this head's answer
    showPredictions(f.head.map((t) => ({ label: t.label, p: t.probability })));
    if (stats.awaitingLive === v.id && stats.trainPressedAt !== null) {
      stats.trainToLiveMs = performance.now() - stats.trainPressedAt;
      stats.awaitingLive = null;
      document.body.dataset.live = String(v.id);
    }
  } else {
    showPredictions(f.top.map((t) => ({ label: t.label.split(',')[0], p: t.probability })));
  }
}

let canvas = null;
// Frames per second over windows of at least 1 s, the first starting at the first frame
// (not at page load: the first window would count the engine's start-up as frame time).
let fps = { frames: 0, since: null };
export async function onFrame(video) {
  if (state.switching) return;
  const size = state.frameSize;
  if (!canvas || canvas.width !== size) canvas = new OffscreenCanvas(size, size);
  const frame = centreSquare(video, size, canvas);
  // Calibration for "Quantize" keeps a copy of a frame now and then (classify takes the pixels).
  const c = state.collecting;
  if (c && c.frames.length < c.want && performance.now() - c.last >= CALIBRATION_EVERY_MS) {
    c.frames.push(frame.rgba.slice());
    c.last = performance.now();
  }
  const now = performance.now();
  const record = state.recording !== null && now - state.lastSample >= SAMPLE_EVERY_MS;
  const args = { rgba: frame.rgba, width: frame.width, height: frame.height, k: 3, include: record ? ['embedding'] : [] };
  let r;
  try {
    r = await exclusive(() => state.engine.call('classify', args, { transfer: [frame.rgba.buffer] }));
  } catch (err) {
    showFrameError(err);
    throw err; // the camera loop logs it and goes on with the next frame
  }
  keep(stats.frameMs, r.ms);
  // The engine says which head answered (one set while this frame ran may have).
  state.lastFrame = { top: r.top, head: r.head, headId: r.head ? r.headTag : null };
  renderLive();
  stats.frames++;
  if (fps.since === null) {
    fps.since = performance.now();
  } else {
    fps.frames++;
  }
  if (fps.frames > 0 && performance.now() - fps.since > 1000) {
    const t = performance.now();
    $('fps').textContent = `${((1000 * fps.frames) / (t - fps.since)).toFixed(1)} fps`;
    fps = { frames: 0, since: t };
  }
  $('ms').textContent = `${r.ms.toFixed(0)} ms/frame`;
  if (record && state.recording !== null) {
    state.lastSample = now;
    const t0 = performance.now();
    const image = await frame.canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 });
    await addSample(state.recording, r.embedding, image);
    keep(stats.sampleMs, performance.now() - t0);
  }
}

export function initLive() {
  for (const mode of ['imagenet', 'custom']) {
    $(`mode-${mode}`).addEventListener('click', () => {
      setMode(mode);
      state.store?.setMeta('mode', mode).catch(showError);
    });
  }
  on('mode', () => { renderMode(); renderLive(); });
  on('versions', () => { syncHead(); renderMode(); });
}
