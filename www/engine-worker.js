// The inference engine off the main thread: the wasm engine (WebGPU or CPU) lives here, so
// a CPU-path frame (hundreds of ms on a phone) never blocks taps, scrolling or the camera
// preview. Requests { id, op, args } are answered { id, ok, result | error }; the page sends
// one at a time. Ops: create { model: Uint8Array, backend } -> backend report;
// classify { rgba, width, height, k } -> { top, logits, embedding: Float32Array, ms, backend };
// embed { rgba, width, height } -> Float32Array; backend -> report;
// memory -> { wasmBytes } (the size of the wasm linear memory, where the model lives);
// loseDevice -> report (destroys the WebGPU device to exercise recovery).
// A `create` that fails leaves the engine in use untouched; one that succeeds frees the old.
import init, { Engine } from '/pkg/edgetune.js';

let engine = null;

async function run(op, args) {
  switch (op) {
    case 'create': {
      await init();
      const next = await Engine.create(args.model, args.backend);
      if (engine) engine.free();
      engine = next;
      return engine.backend();
    }
    case 'memory':
      return { wasmBytes: (await init()).memory.buffer.byteLength };
    case 'classify': {
      const r = await engine.classify(args.rgba, args.width, args.height, args.k);
      return { ...r, embedding: Float32Array.from(r.embedding) };
    }
    case 'embed':
      return engine.embed(args.rgba, args.width, args.height);
    case 'backend':
      return engine.backend();
    case 'loseDevice': // diagnostics: destroys the WebGPU device (the engine rebuilds it)
      engine.loseDevice();
      return engine.backend();
    default:
      throw new Error(`unknown engine request '${op}'`);
  }
}

self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  try {
    if (op !== 'create' && op !== 'memory' && !engine) throw new Error('the engine is not started');
    const result = await run(op, args);
    const transfer = result instanceof Float32Array ? [result.buffer] : result && result.embedding ? [result.embedding.buffer] : [];
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) });
  }
};
