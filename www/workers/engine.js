// The inference engine off the main thread: the wasm engine (WebGPU or CPU) lives here, so a
// CPU-path frame (hundreds of ms on a phone) never blocks taps, scrolling or the camera
// preview. Requests (lib/protocol.js), one at a time from the page:
//   create { model: Uint8Array, backend }  -> backend report + frameSize (a failed create
//                                             leaves the engine in use untouched)
//   classify { rgba, width, height, k, include } -> { top, head?, embedding?: Float32Array, ms, backend }
//   embed { rgba, width, height }         -> Float32Array
//   setHead { weight, bias, names, k, tag } -> its top k on the last frame classified (or null);
//                                             classify results name the head that ran (headTag)
//   clearHead                             the user's head, run on every classify from then on
//   importModel { bytes, fileName, labels?, normalization? } -> .etm bytes (the importer
//                                             module is fetched on the first call)
//   backend -> report (create's also says which CPU module runs: cpu { variant, threads,
//   reason }); memory -> { wasmBytes }; loseDevice -> report (destroys the WebGPU
//   device to exercise recovery)
import { loadEngine } from '/lib/engine-loader.js';
import { serve } from '/lib/protocol.js';

let engine = null;
// The engine module, threaded when the page is cross-origin isolated (lib/engine-loader.js);
// `?threads=N` on the page (passed on to this worker's URL) overrides the thread count,
// `?simd=plain` keeps the relaxed-SIMD builds out.
let loaded = null;
const params = new URL(self.location.href).searchParams;
const threadsParam = Number(params.get('threads')) || undefined;
const engineModule = () => (loaded ??= loadEngine({ threads: threadsParam, simd: params.get('simd') || 'auto' }));
let importer = null;

const started = () => {
  if (!engine) throw new Error('the engine is not started');
  return engine;
};

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

serve({
  async create({ model, backend }) {
    const { module, variant, threads, reason } = await engineModule();
    const next = await module.Engine.create(model, backend);
    if (engine) engine.free();
    engine = next;
    return { ...engine.backend(), frameSize: engine.frameSize(), cpu: { variant, threads, reason } };
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
  setHead: ({ weight, bias, names, k, tag }) => started().setHead(weight, bias, names, k, tag) ?? null,
  clearHead: () => started().clearHead() ?? null,
  backend: () => started().backend(),
  loseDevice() {
    started().loseDevice();
    return started().backend();
  },
  async importModel({ bytes, fileName, labels, normalization }) {
    return (await importerModule()).importModel(bytes, fileName, labels, normalization);
  },
});
