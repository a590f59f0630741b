// A helper thread of the threaded engine (lib/engine-loader.js starts N - 1 of them): the
// same wasm module instantiated on the page's shared memory, then poolHelper(), which sleeps
// until the engine splits a kernel over the pool and runs its share of the tasks. It never
// returns, so this worker answers nothing after "ready".
import { ENGINE_MODULES } from '../lib/engine-modules.js';

self.onmessage = async ({ data: { module, memory, variant } }) => {
  try {
    const m = await ENGINE_MODULES[variant]();
    await m.default({ module_or_path: module, memory });
    self.postMessage({ ready: true });
    m.poolHelper();
  } catch (e) {
    self.postMessage({ ready: false, error: String(e && e.message ? e.message : e) });
  }
};
