// The inference engine off the main thread: the wasm engine (WebGPU or CPU) lives here, so a
// CPU-path frame (hundreds of ms on a phone) never blocks taps, scrolling or the camera
// preview. Requests (lib/protocol.js), one at a time from the page:
//   create { model: Uint8Array, backend, options?: { threads, simd } (read once, by the first)}
//                                         -> backend report + frameSize, info (modelInfo),
//                                             labels (the model's classes) (a failed create
//                                             leaves the engine in use untouched); under
//                                             "auto" the report has probing: true (below)
//   settleBackend                         -> the report once the WebGPU probe has decided
//   classify { rgba, width, height, k, include } -> { top, head?, embedding?: Float32Array, ms, backend }
//   embed { rgba, width, height }         -> Float32Array
//   setHead { weight, bias, names, k, tag } -> its top k on the last frame classified (or null);
//                                             classify results name the head that ran (headTag)
//   clearHead                             the user's head, run on every classify from then on
//   modelWithHead { model, weight, bias, names } -> the .etm with that head (for export)
//   importModel { bytes, fileName, labels?, normalization? } -> .etm bytes (the importer
//                                             module is fetched on the first call)
//   backend -> report (create's also says which CPU module runs: cpu { variant, threads,
//   reason }); memory -> { wasmBytes }; loseDevice -> report (destroys the WebGPU
//   device to exercise recovery)
import { loadEngine } from '../lib/engine-loader.js';
import { serve } from '../lib/protocol.js';

let engine = null;
// The engine module, threaded when the page is cross-origin isolated (lib/engine-loader.js);
// `threads` (the page's `?threads=N`) overrides the thread count, `simd: 'plain'` keeps the
// relaxed-SIMD builds out. They come with the first `create`, not in this worker's URL: a
// worker served by the service worker from its cache gets the cached response's URL as its
// own (per spec, as Firefox does), so a query string would be lost offline. The URL is still
// read when `create` does not say.
let loaded = null;
const params = new URL(self.location.href).searchParams;
const engineModule = ({ threads, simd } = {}) => (loaded ??= loadEngine({
  threads: Number(threads ?? params.get('threads')) || undefined,
  simd: simd ?? (params.get('simd') || 'auto'),
}));
let importer = null;

// "auto" without the wait: the CPU engine answers from the first frame while a second engine
// is created with "auto" behind it (the WebGPU self-test against the CPU, crate/exec/engine.rs);
// if that one runs on the GPU it takes over (with the user's head), else it is dropped and the
// CPU engine carries on with its verdict as the reason. The GPU's self-test times are taken
// while frames still run on the CPU, which can only make the GPU look slower: never a wrong
// switch to a slower GPU. A probe that has not decided within GPU_PROBE_LIMIT_MS is abandoned.
const GPU_PROBE_LIMIT_MS = 30_000;
let generation = 0; // counts creates: a probe for an engine since replaced is discarded
let probe = null; // promise of the settled report
let note = null; // why the CPU answers under "auto" (the probe's verdict)
let headArgs = null; // the head set on the engine, set again on one that takes over
const report = () => {
  const b = started().backend();
  return note && b.backend === 'cpu' ? { ...b, reason: note } : b;
};

async function probeGpu(module, model, gen) {
  let timer;
  const attempt = module.Engine.create(model, 'auto');
  const limit = new Promise((resolve) => { timer = setTimeout(() => resolve(null), GPU_PROBE_LIMIT_MS); });
  let next;
  try {
    next = await Promise.race([attempt, limit]);
  } catch (err) {
    next = undefined;
    if (gen === generation) note = `the WebGPU probe failed (${err && err.message ? err.message : err}); the CPU runs`;
  } finally {
    clearTimeout(timer);
  }
  if (next === null) {
    attempt.then((e) => e.free(), () => {});
    if (gen === generation) note = `the WebGPU self-test did not finish within ${GPU_PROBE_LIMIT_MS / 1000} s; the CPU runs`;
  } else if (next) {
    const verdict = next.backend();
    if (gen !== generation) {
      next.free();
    } else if (verdict.backend === 'gpu') {
      if (headArgs) next.setHead(headArgs.weight, headArgs.bias, headArgs.names, headArgs.k, headArgs.tag);
      const old = engine;
      engine = next;
      note = null;
      old.free(); // a classify still running on it keeps its own reference until it ends
    } else {
      note = verdict.reason;
      next.free();
    }
  }
  return { ...report(), probing: false };
}

const started = () => {
  if (!engine) throw new Error('the engine is not started');
  return engine;
};

function importerModule() {
  importer ??= import('../pkg/importer/edgetune.js').then(async (m) => {
    await m.default();
    return m;
  }).catch((err) => {
    importer = null;
    throw err;
  });
  return importer;
}

serve({
  async create({ model, backend, options }) {
    const { module, variant, threads, reason } = await engineModule(options);
    const cpu = { variant, threads, reason };
    // Without a WebGPU API there is nothing to probe: "auto" decides at once.
    const cpuFirst = backend === 'auto' && 'gpu' in navigator;
    const next = await module.Engine.create(model, cpuFirst ? 'cpu' : backend);
    const gen = ++generation;
    if (engine) engine.free();
    engine = next;
    headArgs = null;
    note = cpuFirst ? 'the CPU answers while WebGPU is tested' : null;
    probe = cpuFirst ? probeGpu(module, model, gen) : null;
    return { ...report(), probing: cpuFirst, frameSize: engine.frameSize(), cpu, info: engine.info(), labels: engine.labels() };
  },
  async settleBackend() {
    const p = probe;
    return p ? { ...(await p), frameSize: started().frameSize() } : { ...report(), probing: false, frameSize: started().frameSize() };
  },
  async memory() {
    return { wasmBytes: (await engineModule()).memory.buffer.byteLength };
  },
  async classify({ rgba, width, height, k, include }) {
    const r = await started().classify(rgba, width, height, k, include);
    if (r.embedding) r.embedding = Float32Array.from(r.embedding);
    return r;
  },
  embed: ({ rgba, width, height }) => started().embed(rgba, width, height),
  setHead({ weight, bias, names, k, tag }) {
    const top = started().setHead(weight, bias, names, k, tag) ?? null;
    headArgs = { weight, bias, names, k, tag };
    return top;
  },
  clearHead() {
    const r = started().clearHead() ?? null;
    headArgs = null;
    return r;
  },
  backend: () => report(),
  loseDevice() {
    started().loseDevice();
    return report();
  },
  async modelWithHead({ model, weight, bias, names }) {
    return (await engineModule()).module.modelWithHead(model, weight, bias, names);
  },
  async importModel({ bytes, fileName, labels, normalization }) {
    return (await importerModule()).importModel(bytes, fileName, labels, normalization);
  },
});
