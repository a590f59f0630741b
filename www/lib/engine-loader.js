// Loads the engine module, threaded where the page can have threads.
//
// - pkg/threads/: the engine built with shared memory and atomics. Used when the page is
//   cross-origin isolated (COOP + COEP headers: what SharedArrayBuffer needs) and more than
//   one thread is wanted: this thread plus `threads - 1` helper workers
//   (workers/pool-helper.js), each an instance of the same module on the same memory.
// - pkg/: the single-threaded engine, everywhere else (and if the threaded start fails).
// Results are bit-identical either way; only the time differs.
//
// Thread count: `threads` if given (e.g. from `?threads=N`), else
// navigator.hardwareConcurrency capped at MAX_DEFAULT_THREADS (the kernels split work in
// row blocks; past 4 threads a phone's little cores and the per-layer fork/join overhead
// give little back).
export const MAX_DEFAULT_THREADS = 4;

export function defaultThreads() {
  const n = Number(globalThis.navigator?.hardwareConcurrency) || 1;
  return Math.max(1, Math.min(n, MAX_DEFAULT_THREADS));
}

// Resolves to { module, memory, variant: 'threads' | 'single', threads, reason }: `module` is
// the wasm-bindgen namespace (Engine, ...), initialized; `reason` says why not threaded.
export async function loadEngine({ threads = defaultThreads(), base = '/pkg' } = {}) {
  let reason = '';
  if (threads <= 1) reason = 'one thread requested';
  else if (!globalThis.crossOriginIsolated) reason = 'the page is not cross-origin isolated (COOP/COEP headers), so no shared memory';
  else {
    try {
      const url = `${base}/threads/edgetune_bg.wasm`;
      const module = await WebAssembly.compileStreaming(fetch(url));
      const m = await import(`${base}/threads/edgetune.js`);
      const exports = await m.default({ module_or_path: module });
      await Promise.all(Array.from({ length: threads - 1 }, () => startHelper(module, exports.memory, base)));
      const n = m.setThreads(threads);
      return { module: m, memory: exports.memory, variant: 'threads', threads: n, reason: '' };
    } catch (e) {
      reason = `the threaded engine did not start (${e && e.message ? e.message : e})`;
      console.warn(`edgetune: ${reason}; running single-threaded`);
    }
  }
  const m = await import(`${base}/edgetune.js`);
  const exports = await m.default();
  return { module: m, memory: exports.memory, variant: 'single', threads: 1, reason };
}

// One helper worker: instantiates `module` on `memory`, says it is ready, then runs kernel
// tasks forever (poolHelper never returns).
function startHelper(module, memory, base) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('../workers/pool-helper.js', import.meta.url), { type: 'module', name: 'edgetune pool helper' });
    w.onmessage = ({ data }) => (data.ready ? resolve(w) : reject(new Error(data.error)));
    w.onerror = (e) => reject(new Error(e.message || 'the helper worker failed to load'));
    w.postMessage({ module, memory, base });
  });
}
