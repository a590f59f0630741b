// The page's boot: starts the engine module and its worker, restores the stored project,
// starts the camera, and wires the views. Each part of the page is a view module (views/)
// that renders from the shared state (lib/state.js) and subscribes to its changes:
//   live      camera frames classified: ImageNet's classes or the user's (their head)
//   classes   the user's classes and samples (recorded from the camera or from files)
//   training  Train, progress, the result, the head quantized to int8
//   versions  trained heads, download, project export / import
//   models    the backbone: built in, opened from a file, quantized in the page
//   federation  train together: the page as a Flower node (federation/)
// The engine (workers/engine.js) and training (workers/trainer.js) run in workers that speak
// one request/response protocol (lib/protocol.js).
import init, { version as engineVersion } from '/pkg/edgetune.js';
import { Camera, CameraError } from '/camera.js';
import { openStore, BUILTIN } from '/store.js';
import { wasmSimdSupported, SIMD_MISSING } from '/wasm-support.js';
import { WorkerClient } from '/lib/protocol.js';
import { $, showError, message } from '/lib/dom.js';
import { state, exclusive, loadProject } from '/lib/state.js';
import { initLive, onFrame } from '/views/live.js';
import { initClasses } from '/views/classes.js';
import { initTraining, trainer } from '/views/training.js';
import { initVersions, importFile } from '/views/versions.js';
import { initModels, openModel, startBackbone, reembedStaleSamples, MODEL_FILE } from '/views/models.js';
import { initFederation, resumeFederation } from '/views/federation.js';

// What the tests and a curious user can call from the console: memory figures, and a WebGPU
// device loss as a driver reset would cause it (the recovery path).
globalThis.edgetuneDiagnostics = {
  async memory() {
    const [engine, training] = await Promise.all([state.engine.call('memory'), trainer().call('memory')]);
    return { jsHeapBytes: performance.memory ? performance.memory.usedJSHeapSize : null, engineWasmBytes: engine.wasmBytes, trainerWasmBytes: training.wasmBytes };
  },
  loseDevice: () => exclusive(() => state.engine.call('loseDevice')),
  backend: () => exclusive(() => state.engine.call('backend')),
};

function engineFailed(err) {
  const badge = $('backend');
  badge.textContent = 'engine failed';
  badge.dataset.state = 'error';
  showError(`Could not start the engine: ${message(err)}`);
}

// Dropping a model file (optionally with its labels .txt) or a project file on the page.
function acceptDrops() {
  document.addEventListener('dragover', (ev) => ev.preventDefault());
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    const files = [...(ev.dataTransfer?.files || [])];
    if (files.some((f) => MODEL_FILE.test(f.name))) openModel(files);
    else if (files.length === 1 && /\.json$/i.test(files[0].name)) importFile(files[0]);
  });
}

async function startCamera() {
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
}

async function main() {
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('offline cache unavailable:', e));
  for (const initView of [initLive, initClasses, initTraining, initVersions, initModels, initFederation]) initView();
  acceptDrops();
  try {
    if (!wasmSimdSupported()) throw new Error(SIMD_MISSING);
    await init();
    $('version').textContent = `edgetune ${engineVersion()}`;
  } catch (err) {
    engineFailed(err);
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
  try {
    $('backend').textContent = 'starting engine…';
    // ?threads=N and ?simd=plain pass on to the engine worker with its first request
    // (views/models.js; lib/engine-loader.js).
    const page = new URLSearchParams(location.search);
    state.engineParams = new URLSearchParams([...page].filter(([k]) => k === 'threads' || k === 'simd'));
    state.engine = new WorkerClient('/workers/engine.js', 'engine');
    await startBackbone(saved && saved.backbone !== BUILTIN ? saved.models.find((m) => m.key === saved.backbone) : null);
  } catch (err) {
    engineFailed(err);
    return;
  }
  try {
    if (state.store) {
      await loadProject();
      await reembedStaleSamples();
    }
  } catch (err) {
    showError(err);
  }
  await startCamera();
  trainer();
  document.body.dataset.ready = 'true';
  if (state.store) await resumeFederation().catch(showError);
}

main();
