// Training off the main thread, so the camera view stays live. Messages:
//   in:  { type: 'train', dim, classes: [names], samples: [{ embedding: Float32Array, label }], options }
//        { type: 'stop' }                       ends the run after the current epoch
//        { type: 'memory' }                     asks for { type: 'memory', wasmBytes } (wasm linear memory)
//   out: { type: 'progress', progress }         once per epoch ({ epoch, epochs, loss, accuracy, valLoss, valAccuracy, ... })
//        { type: 'done', result }               { weight, bias, classes, dim, history, validationAccuracy, confusion, ... }
//        { type: 'error', message }
import init, { HeadTrainer } from '/pkg/edgetune.js';

let trainer = null;
const ready = init();

self.onmessage = async (ev) => {
  const msg = ev.data;
  if (msg.type === 'stop') {
    if (trainer) trainer.stop();
    return;
  }
  if (msg.type === 'memory') {
    self.postMessage({ type: 'memory', wasmBytes: (await ready).memory.buffer.byteLength });
    return;
  }
  if (msg.type !== 'train') return;
  try {
    await ready;
    trainer = new HeadTrainer(msg.dim, msg.classes, msg.options);
    for (const s of msg.samples) trainer.addSample(s.embedding, s.label);
    trainer.start();
    let p;
    let lastYield = performance.now();
    while ((p = trainer.runEpoch()) !== null) {
      self.postMessage({ type: 'progress', progress: p });
      // Yield now and then so a 'stop' message can arrive between epochs (not every epoch:
      // nested timers are clamped to 4 ms, more than a small epoch takes).
      if (performance.now() - lastYield > 30) {
        await new Promise((r) => setTimeout(r, 0));
        lastYield = performance.now();
      }
    }
    const result = trainer.result();
    self.postMessage({ type: 'done', result });
  } catch (err) {
    self.postMessage({ type: 'error', message: String(err && err.message ? err.message : err) });
  } finally {
    if (trainer) trainer.free();
    trainer = null;
  }
};
