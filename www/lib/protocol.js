// One request/response protocol for both of the page's workers (workers/engine.js and
// workers/trainer.js):
//   page -> worker   { id, op, args }
//   worker -> page   { id, progress }             zero or more, while the request runs
//                    { id, ok: true, result }     or { id, ok: false, error: message }, once
// `WorkerClient.call(op, args, { transfer, onProgress })` returns a promise of the result;
// `serve(handlers)` answers in the worker, one async handler per op, `handler(args, progress)`.
// Requests run concurrently in the worker (a `stop` reaches a running `train`). A worker that
// dies rejects every pending request with the reason, and `crashed` says it is gone.
// `new WorkerClient(urlOrWorker, name)`: a module worker's URL, or a Worker already made (a
// bundler only ships a worker it sees written as `new Worker(new URL('...', import.meta.url))`).

export class WorkerClient {
  constructor(url, name) {
    this.name = name;
    this.pending = new Map();
    this.next = 1;
    this.crashed = null;
    this.worker = typeof Worker !== 'undefined' && url instanceof Worker ? url : new Worker(url, { type: 'module' });
    this.worker.onmessage = (ev) => {
      const { id, progress, ok, result, error } = ev.data;
      const p = this.pending.get(id);
      if (!p) return;
      if (progress !== undefined) {
        p.onProgress?.(progress);
        return;
      }
      this.pending.delete(id);
      if (ok) p.resolve(result);
      else p.reject(new Error(error));
    };
    this.worker.onerror = (ev) => {
      this.crashed = new Error(`the ${name} stopped: ${ev.message || 'worker error'}`);
      for (const p of this.pending.values()) p.reject(this.crashed);
      this.pending.clear();
    };
  }

  call(op, args = {}, { transfer = [], onProgress } = {}) {
    if (this.crashed) return Promise.reject(this.crashed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  // Stops the worker; pending and later requests reject with `reason` (when given).
  terminate(reason) {
    this.worker.terminate();
    if (!reason) return;
    this.crashed = reason;
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
  }
}

// The buffers of the typed arrays in `v` (itself or its top-level fields): moved, not
// copied. Handlers return fresh arrays (never views of wasm memory, which would detach it).
function transferables(v) {
  const views = ArrayBuffer.isView(v) ? [v] : v && typeof v === 'object' ? Object.values(v).filter((x) => ArrayBuffer.isView(x)) : [];
  return [...new Set(views.map((x) => x.buffer))];
}

export function serve(handlers) {
  self.onmessage = async (ev) => {
    const { id, op, args } = ev.data;
    try {
      const handler = handlers[op];
      if (!handler) throw new Error(`unknown request '${op}'`);
      const result = await handler(args || {}, (progress) => self.postMessage({ id, progress }));
      self.postMessage({ id, ok: true, result }, transferables(result));
    } catch (err) {
      self.postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) });
    }
  };
}
