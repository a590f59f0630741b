// Training off the main thread, so the camera view stays live. Requests (lib/protocol.js):
//   train { dim, classes: [names], samples: [{ embedding: Float32Array, label }], options,
//           initial? { weight, bias } }
//        progress once per epoch ({ epoch, epochs, loss, accuracy, valLoss, valAccuracy, ... }),
//        result { weight, bias, classes, dim, history, validationAccuracy, confusion, ... };
//        with `initial`, training starts from that head (a federation's global head)
//   evaluate { weight, bias, samples: [{ embedding, label }] }
//        { loss, accuracy, count } of that head on the samples (headEvaluate)
//   stop                     ends the running `train` after its current epoch
//   quantize { model, calib, calibCount, heldOut, heldCount, width, height, method }
//        a float .etm quantized to int8 on the packed RGBA frames `calib`, judged on
//        `heldOut` (top-1 agreement with the float model); progress { pass, done, total },
//        result { model: Uint8Array, agree, heldOut }
//   memory                   { wasmBytes } (wasm linear memory)
import init, { HeadTrainer, headEvaluate, quantizeModel, topOneAgreement } from '../pkg/edgetune.js';
import { serve } from '../lib/protocol.js';

let trainer = null;
const ready = init();

serve({
  async train({ dim, classes, samples, options, initial }, progress) {
    await ready;
    if (trainer) throw new Error('a training run is already in progress');
    const t = new HeadTrainer(dim, classes, options);
    trainer = t;
    try {
      if (initial) t.setInitialHead(initial.weight, initial.bias);
      for (const s of samples) t.addSample(s.embedding, s.label);
      t.start();
      let p;
      let lastYield = performance.now();
      while ((p = t.runEpoch()) !== null) {
        progress(p);
        // Yield now and then so a 'stop' request can arrive between epochs (not every epoch:
        // nested timers are clamped to 4 ms, more than a small epoch takes).
        if (performance.now() - lastYield > 30) {
          await new Promise((r) => setTimeout(r, 0));
          lastYield = performance.now();
        }
      }
      return t.result();
    } finally {
      trainer = null;
      t.free();
    }
  },
  async evaluate({ weight, bias, samples }) {
    await ready;
    const dim = weight.length / bias.length;
    const packed = new Float32Array(samples.length * dim);
    samples.forEach((s, i) => packed.set(s.embedding, i * dim));
    return headEvaluate(weight, bias, packed, Uint32Array.from(samples, (s) => s.label));
  },
  stop() {
    if (trainer) trainer.stop();
    return null;
  },
  async memory() {
    return { wasmBytes: (await ready).memory.buffer.byteLength };
  },
  async quantize({ model, calib, calibCount, heldOut, heldCount, width, height, method }, progress) {
    await ready;
    const q = quantizeModel(model, calib, calibCount, width, height, method, (pass, done, total) => progress({ pass, done, total }));
    const agree = heldCount ? topOneAgreement(model, q, heldOut, heldCount, width, height) : null;
    return { model: q, agree, heldOut: heldCount };
  },
});
