// Loads the engine module: threaded where the page can have threads, with relaxed SIMD where
// the browser has it.
//
// - pkg/threads/: the engine built with shared memory and atomics. Used when the page is
//   cross-origin isolated (COOP + COEP headers: what SharedArrayBuffer needs) and more than
//   one thread is wanted: this thread plus `threads - 1` helper workers
//   (workers/pool-helper.js), each an instance of the same module on the same memory.
// - pkg/: the single-threaded engine, everywhere else (and if the threaded start fails).
// - pkg/relaxed/, pkg/threads-relaxed/: the same two with relaxed SIMD (the int8 GEMM on
//   `i32x4.relaxed_dot_i8x16_i7x16_add_s`), chosen when WebAssembly.validate accepts a module
//   using that instruction (Chromium 114+, Firefox ESR 153 as tested; not WebKitGTK 2.50) and
//   `simd` is not 'plain'.
// Results are bit-identical in every variant; only the time differs.
//
// Thread count: `threads` if given (e.g. from `?threads=N`), else
// navigator.hardwareConcurrency capped at MAX_DEFAULT_THREADS (the kernels split work in
// row blocks; past 4 threads a phone's little cores and the per-layer fork/join overhead
// give little back).
export const MAX_DEFAULT_THREADS = 4;

import { ENGINE_MODULES } from './engine-modules.js';

// The threaded modules' wasm (literal URLs, for bundlers), compiled once here and sent to every
// helper worker.
const THREADED_WASM = {
  threads: () => new URL('../pkg/threads/edgetune_bg.wasm', import.meta.url),
  'threads-relaxed': () => new URL('../pkg/threads-relaxed/edgetune_bg.wasm', import.meta.url),
};

export function defaultThreads() {
  const n = Number(globalThis.navigator?.hardwareConcurrency) || 1;
  return Math.max(1, Math.min(n, MAX_DEFAULT_THREADS));
}

// A module whose one function runs i32x4.relaxed_dot_i8x16_i7x16_add_s on three zero vectors:
// it validates exactly where the engine's relaxed build can run.
function relaxedProbe() {
  const zero = [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
  const body = [0x00, ...zero, ...zero, ...zero, 0xfd, 0x93, 0x02, 0x0b]; // no locals; dot-add; end
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // code
  ]);
}

export function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(relaxedProbe());
  } catch {
    return false;
  }
}

// Resolves to { module, memory, variant, threads, reason }: `module` is the wasm-bindgen
// namespace (Engine, ...), initialized; `variant` is 'single' | 'relaxed' | 'threads' |
// 'threads-relaxed' (the pkg/ directory it came from); `reason` says why not threaded.
// `simd: 'plain'` keeps the relaxed builds out (for comparisons).
export async function loadEngine({ threads = defaultThreads(), simd = 'auto' } = {}) {
  const relaxed = simd !== 'plain' && hasRelaxedSimd();
  let reason = '';
  if (threads <= 1) reason = 'one thread requested';
  else if (!globalThis.crossOriginIsolated) reason = 'the page is not cross-origin isolated (COOP/COEP headers), so no shared memory';
  // WebKitGTK 2.50 is cross-origin isolated yet has no SharedArrayBuffer, and cannot send a
  // shared WebAssembly.Memory to a worker.
  else if (typeof SharedArrayBuffer === 'undefined') reason = 'this browser has no SharedArrayBuffer, so no shared memory';
  else {
    const dir = relaxed ? 'threads-relaxed' : 'threads';
    try {
      const module = await WebAssembly.compileStreaming(fetch(THREADED_WASM[dir]()));
      const m = await ENGINE_MODULES[dir]();
      const exports = await m.default({ module_or_path: module });
      const started = await Promise.allSettled(Array.from({ length: threads - 1 }, () => startHelper(module, exports.memory, dir)));
      const failed = started.find((h) => h.status === 'rejected');
      if (failed) {
        // The threaded instance is dropped: its helpers that did start would wait on it forever.
        for (const h of started) if (h.status === 'fulfilled') h.value.terminate();
        throw failed.reason;
      }
      const n = m.setThreads(threads);
      return { module: m, memory: exports.memory, variant: dir, threads: n, reason: '' };
    } catch (e) {
      reason = `the threaded engine did not start (${e && e.message ? e.message : e})`;
      console.warn(`edgetune: ${reason}; running single-threaded`);
    }
  }
  const variant = relaxed ? 'relaxed' : 'single';
  const m = await ENGINE_MODULES[variant]();
  const exports = await m.default();
  return { module: m, memory: exports.memory, variant, threads: 1, reason };
}

// A helper that has not said it is ready by then is given up on (the engine then runs on one
// thread): a worker whose script never loads need not report an error (seen in Firefox when
// the page was started offline by its service worker), and the page must not wait forever.
const HELPER_START_MS = 15_000;

// One helper worker: instantiates `module` (engine variant `variant`) on `memory`, says it is
// ready, then runs kernel tasks forever (poolHelper never returns).
function startHelper(module, memory, variant) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('../workers/pool-helper.js', import.meta.url), { type: 'module', name: 'edgetune pool helper' });
    const fail = (why) => {
      clearTimeout(timer);
      w.terminate();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`a helper thread did not start within ${HELPER_START_MS / 1000} s`), HELPER_START_MS);
    w.onmessage = ({ data }) => {
      if (!data.ready) return fail(data.error);
      clearTimeout(timer);
      resolve(w);
    };
    w.onerror = (e) => fail(e.message || 'the helper worker failed to load');
    w.postMessage({ module, memory, variant });
  });
}
