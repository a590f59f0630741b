// Training off the main thread, so the camera view stays live. Messages:
//   in:  { type: 'train', dim, classes: [names], samples: [{ embedding: Float32Array, label }], options }
//        { type: 'stop' }                       ends the run after the current epoch
//        { type: 'memory' }                     asks for { type: 'memory', wasmBytes } (wasm linear memory)
//        { type: 'quantize', model, calib, calibCount, heldOut, heldCount, width, height, method }
//                                               a float .etm quantized to int8 on the packed RGBA frames
//                                               `calib`, judged on `heldOut` (top-1 agreement with float)
//   out (quantize): { type: 'quantize-progress', pass, done, total }, then
//        { type: 'quantized', model: Uint8Array, agree, heldOut } or { type: 'quantize-error', message }
//   out: { type: 'progress', progress }         once per epoch ({ epoch, epochs, loss, accuracy, valLoss, valAccuracy, ... })
//        { type: 'done', result }               { weight, bias, classes, dim, history, validationAccuracy, confusion, ... }
//        { type: 'error', message }
import init, { HeadTrainer, quantizeModel, topOneAgreement } from '/pkg/edgetune.js';

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
  if (msg.type === 'quantize') {
    try {
      await ready;
      const { model, calib, calibCount, heldOut, heldCount, width, height, method } = msg;
      const q = quantizeModel(model, calib, calibCount, width, height, method,
        (pass, done, total) => self.postMessage({ type: 'quantize-progress', pass, done, total }));
      const agree = heldCount ? topOneAgreement(model, q, heldOut, heldCount, width, height) : null;
      self.postMessage({ type: 'quantized', model: q, agree, heldOut: heldCount }, [q.buffer]);
    } catch (err) {
      self.postMessage({ type: 'quantize-error', message: String(err && err.message ? err.message : err) });
    }
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
