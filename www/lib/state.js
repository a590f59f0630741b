// The page's state, with change notifications: a view renders from `state` and subscribes
// with `on(topic, render)`; whoever changes a part of the state calls `changed(topic)`.
// Topics: 'samples' (classes and samples), 'versions' (trained heads, the current one),
// 'mode' (live view: ImageNet or the user's classes), 'models' (backbones, quantizing),
// 'switching' (a backbone switch started or ended), 'project' (a project was loaded).
import { BUILTIN } from '/store.js';

export const state = {
  engine: null, // WorkerClient of workers/engine.js
  engineParams: null, // URLSearchParams it was started with (?threads, ?simd)
  trainer: null, // WorkerClient of workers/trainer.js
  modelBytes: null, // the backbone in use (.etm bytes)
  backbone: BUILTIN, // its key (store.js)
  modelName: 'EfficientNet-Lite0 int8',
  frameSize: 256, // the square the engine wants (its crop is then exactly its input)
  models: [], // models the user opened, as stored
  switching: false, // a model switch is re-embedding samples: frames and recording pause
  dim: 1280,
  store: null,
  camera: null,
  classes: [],
  samples: [],
  versions: [],
  current: null,
  mode: 'imagenet',
  recording: null, // class id while its Record button is held
  lastSample: 0,
  lastFrame: null, // { top, head, headId } of the newest frame
  engineHead: null, // id of the version whose head the engine runs (null: none)
  training: null, // the run in progress
  quantizing: null, // a backbone being quantized
  collecting: null, // calibration frames being taken from the camera
};

// Figures the page measures about itself (shown in the UI, read by the tests' benchmarks):
// per-frame inference ms, extra ms per recorded sample (JPEG + storage; the embedding comes
// from the frame already classified), train ms, and ms from pressing Train to the first live
// frame showing the new classes.
export const stats = { frames: 0, frameErrors: 0, frameMs: [], sampleMs: [], trainMs: null, trainToLiveMs: null, trainSamples: null, trainPressedAt: null, awaitingLive: null };
globalThis.edgetuneStats = stats;
export const keep = (list, v) => { list.push(v); if (list.length > 200) list.shift(); };

const subscribers = new Map();
export function on(topic, fn) {
  if (!subscribers.has(topic)) subscribers.set(topic, []);
  subscribers.get(topic).push(fn);
}
export function changed(...topics) {
  for (const t of topics) for (const fn of subscribers.get(t) || []) fn();
}

// Heads trained on the backbone in use (the others stay stored for when it is back).
export const ownVersions = () => state.versions.filter((v) => v.backbone === state.backbone);
export const currentVersion = () => ownVersions().find((v) => v.id === state.current) || null;
export const samplesOf = (classId) => state.samples.filter((s) => s.classId === classId);

// One engine call runs at a time: the frame loop, file uploads and anything else queue
// behind the call in flight instead of piling up in the engine.
let chain = Promise.resolve();
export function exclusive(fn) {
  const p = chain.then(fn, fn);
  chain = p.catch(() => {});
  return p;
}

// Reads the stored project into `state` and tells every view.
export async function loadProject() {
  const p = await state.store.load();
  Object.assign(state, { classes: p.classes, samples: p.samples, versions: p.versions, current: p.current, models: p.models, mode: p.mode });
  changed('mode', 'samples', 'versions', 'models', 'project');
  return p;
}
