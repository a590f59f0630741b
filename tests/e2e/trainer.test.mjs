// The training engine compiled to wasm, in real headless Chromium: HeadTrainer learns
// separable classes, is deterministic for a seed, stops when asked, rejects bad input with
// clear errors, and its time per epoch is measured (printed and written to
// tests/e2e/out/train-timing.json, never asserted).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launch, openPage, startServer, OUT_DIR } from './browser.mjs';
import { cliPath } from '../../scripts/cargo-paths.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
let server;
let url;
let browser;
let cleanup;
let page;
let errors;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')), 'pkg/ must be built first (scripts/build-wasm.sh)');
  ({ server, url } = await startServer({ port: 0 }));
  fs.mkdirSync(OUT_DIR, { recursive: true });
  ({ browser, cleanup } = await launch({ webgpu: false }));
  ({ page, errors } = await openPage(browser, url));
  await page.waitForSelector('#backend[data-state="done"]', { timeout: 60_000 });
  await setup();
});
after(async () => {
  if (cleanup) await cleanup();
  if (server) server.close();
});

// Loads the engine into the page once and defines a deterministic data generator there.
// (The page's Content-Security-Policy forbids eval, so test bodies are real functions.)
async function setup() {
  await page.evaluate(async () => {
    const m = await import('/pkg/edgetune.js');
    await m.default();
    globalThis.m = m;
    // Class c has a bump of 3 on dimension c (mod dim), plus uniform noise in [-1, 1).
    globalThis.clusters = (classes, perClass, dim, seed) => {
      let s = seed >>> 0 || 1;
      const rand = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
      const samples = [];
      for (let c = 0; c < classes; c++) {
        for (let i = 0; i < perClass; i++) {
          const e = new Float32Array(dim);
          for (let d = 0; d < dim; d++) e[d] = (d === c % dim ? 3 : 0) + (rand() * 2 - 1);
          samples.push([e, c]);
        }
      }
      return samples;
    };
  });
}

test('a head trained in the browser separates the classes, deterministically', async () => {
  const r = await page.evaluate(() => {
    const { m, clusters } = globalThis;
    const run = () => {
      const t = new m.HeadTrainer(16, ['a', 'b', 'c'], { epochs: 40, lr: 0.01, validation: 0.2, seed: 7 });
      for (const [e, c] of clusters(3, 30, 16, 11)) t.addSample(e, c);
      t.start();
      const events = [];
      let p;
      while ((p = t.runEpoch()) !== null) events.push(p);
      const out = t.result();
      const centre = new Float32Array(16); centre[2] = 3;
      return { out, events: events.length, logits: Array.from(t.logits(centre)) };
    };
    const a = run(), b = run();
    return { ...a, same: JSON.stringify(a.out.weight) === JSON.stringify(b.out.weight) };
  });
  assert.equal(r.events, 40);
  assert.ok(r.out.validationAccuracy >= 0.9, `validation accuracy ${r.out.validationAccuracy}`);
  assert.ok(r.out.history.at(-1).loss < r.out.history[0].loss, 'training loss falls');
  assert.equal(r.out.confusion.length, 9);
  assert.equal(r.logits.indexOf(Math.max(...r.logits)), 2, 'the class-2 centre is classified as class 2');
  assert.ok(r.same, 'the same seed gives the same weights');
  assert.deepEqual(errors, []);
});

test('training stops when asked and keeps what it learned', async () => {
  const r = await page.evaluate(() => {
    const { m, clusters } = globalThis;
    const t = new m.HeadTrainer(8, ['a', 'b'], { epochs: 50, lr: 0.01 });
    for (const [e, c] of clusters(2, 10, 8, 3)) t.addSample(e, c);
    t.start();
    t.runEpoch(); t.runEpoch();
    t.stop();
    const after = t.runEpoch();
    const out = t.result();
    return { after, cancelled: out.cancelled, epochs: out.history.length, weights: out.weight.length };
  });
  assert.equal(r.after, null);
  assert.ok(r.cancelled);
  assert.equal(r.epochs, 2);
  assert.equal(r.weights, 16);
});

test('bad training input gives clear errors, not a crash', async () => {
  const r = await page.evaluate(() => {
    const { m, clusters } = globalThis;
    const msg = (f) => { try { f(); return 'no error'; } catch (e) { return String(e.message); } };
    const none = new m.HeadTrainer(4, ['a', 'b']);
    const one = new m.HeadTrainer(4, ['a', 'b']);
    one.addSample(new Float32Array(4), 1);
    const nan = new m.HeadTrainer(4, ['a', 'b']);
    nan.addSample(new Float32Array([0, NaN, 0, 0]), 0); nan.addSample(new Float32Array(4), 1);
    return {
      empty: msg(() => none.start()),
      oneClass: msg(() => one.start()),
      nan: msg(() => nan.start()),
      length: msg(() => none.addSample(new Float32Array(3), 0)),
      label: msg(() => none.addSample(new Float32Array(4), 5)),
      classes: msg(() => new m.HeadTrainer(4, ['only'])),
      optimizer: msg(() => new m.HeadTrainer(4, ['a', 'b'], { optimizer: 'lbfgs' })),
      stillWorks: (() => { const t = new m.HeadTrainer(2, ['a', 'b'], { epochs: 1 }); t.addSample(new Float32Array([1, 0]), 0); t.addSample(new Float32Array([0, 1]), 1); t.start(); return t.runEpoch() !== null; })(),
    };
  });
  assert.match(r.empty, /no training samples/);
  assert.match(r.oneClass, /two classes/);
  assert.match(r.nan, /NaN/);
  assert.match(r.length, /3 values, expected 4/);
  assert.match(r.label, /label 5/);
  assert.match(r.classes, /two classes/);
  assert.match(r.optimizer, /unknown optimizer/);
  assert.ok(r.stillWorks, 'the engine keeps working after errors');
  assert.deepEqual(errors, []);
});

test('time per epoch in the browser (benchmark figures, not asserted)', async () => {
  const rows = await page.evaluate(() => {
    const { m, clusters } = globalThis;
    const rows = [];
    for (const [classes, n] of [[10, 5], [10, 10], [10, 20], [10, 50], [3, 30]]) {
      const t = new m.HeadTrainer(1280, Array.from({ length: classes }, (_, i) => 'c' + i), { epochs: 100, lr: 3e-3 });
      for (const [e, c] of clusters(classes, n, 1280, 5)) t.addSample(e, c);
      const t0 = performance.now();
      t.start();
      while (t.runEpoch() !== null) {}
      t.result();
      const ms = performance.now() - t0;
      rows.push({ classes, perClass: n, epochs: 100, totalMs: ms, msPerEpoch: ms / 100 });
    }
    return rows;
  });
  for (const r of rows) {
    console.log(`browser head training: ${r.classes} classes x ${r.perClass}: ${r.msPerEpoch.toFixed(2)} ms/epoch, ${r.totalMs.toFixed(0)} ms for ${r.epochs} epochs`);
  }
  fs.writeFileSync(path.join(OUT_DIR, 'train-timing.json'), JSON.stringify({ chromium: true, dim: 1280, rows }, null, 2));
  assert.equal(rows.length, 5);
});

test('the last block fine-tunes in the browser and yields a model the CLI reads', async () => {
  const model = path.join(ROOT, 'www/models/efficientnet_lite0.f32.etm');
  assert.ok(fs.existsSync(model), 'www/models/ must be built first (scripts/models.sh, run by npm test)');
  const r = await page.evaluate(async () => {
    const { m } = globalThis;
    const bytes = new Uint8Array(await (await fetch('/models/efficientnet_lite0.f32.etm')).arrayBuffer());
    // Three classes of 32x32 RGBA images: mostly red, green or blue, with a deterministic texture.
    const image = (c, i) => {
      const px = new Uint8Array(32 * 32 * 4);
      for (let p = 0; p < 32 * 32; p++) {
        const t = ((p * 7 + i * 13) % 17) * 6;
        for (let ch = 0; ch < 3; ch++) px[p * 4 + ch] = ch === c ? 180 + (t % 60) : 30 + t;
        px[p * 4 + 3] = 255;
      }
      return px;
    };
    const t = new m.BlockTrainer(bytes, 1, ['red', 'green', 'blue'], { epochs: 3, lr: 3e-3, seed: 1 });
    const t0 = performance.now();
    for (let c = 0; c < 3; c++) for (let i = 0; i < 4; i++) t.addImage(image(c, i), 32, 32, c);
    const addMs = (performance.now() - t0) / 12;
    const t1 = performance.now();
    t.start();
    const startMs = performance.now() - t1;
    const epochs = [];
    let p;
    while ((p = t.runEpoch()) !== null) epochs.push(p);
    const trainMs = performance.now() - t1 - startMs;
    const out = t.result();
    const errors = [];
    try { new m.BlockTrainer(new Uint8Array([1, 2, 3]), 1, ['a', 'b']); } catch (e) { errors.push(String(e.message)); }
    try { new m.BlockTrainer(bytes, 99, ['a', 'b']); } catch (e) { errors.push(String(e.message)); }
    return { addMs, startMs, msPerEpoch: trainMs / epochs.length, epochs: epochs.length, last: epochs.at(-1),
             model: Array.from(out.model), errors };
  });
  console.log(`browser last-block training: ${r.addMs.toFixed(0)} ms per added image (prefix forward), ` +
    `${r.startMs.toFixed(0)} ms linear probe, ${r.msPerEpoch.toFixed(0)} ms/epoch for 12 samples`);
  assert.equal(r.epochs, 3);
  assert.equal(r.last.accuracy, 1, 'three colour classes are learned');
  assert.equal(r.errors.length, 2);
  assert.ok(r.errors.every((e) => e.length > 10), r.errors.join(' | '));
  const file = path.join(OUT_DIR, 'browser-finetuned.etm');
  fs.writeFileSync(file, Buffer.from(r.model));
  const info = execFileSync(cliPath(), ['info', file], { encoding: 'utf8' });
  assert.match(info, /red/);
  assert.match(info, /fine-tuned|blue/);
  const timing = JSON.parse(fs.readFileSync(path.join(OUT_DIR, 'train-timing.json'), 'utf8'));
  timing.lastBlocks = { samples: 12, msPerAddedImage: r.addMs, msLinearProbe: r.startMs, msPerEpoch: r.msPerEpoch };
  fs.writeFileSync(path.join(OUT_DIR, 'train-timing.json'), JSON.stringify(timing, null, 2));
});

test('in-page quantization: a progress callback that throws fails the call with its message', async () => {
  const r = await page.evaluate(async () => {
    const { m } = globalThis;
    const bytes = new Uint8Array(await (await fetch('/models/efficientnet_lite0.f32.etm')).arrayBuffer());
    const frames = new Uint8Array(2 * 32 * 32 * 4).map((_, i) => (i * 31) & 255);
    let calls = 0;
    const thrower = () => { calls++; throw new Error('boom from the page'); };
    let message = null;
    try { m.quantizeModel(bytes, frames, 2, 32, 32, 'minmax', thrower); } catch (e) { message = String(e.message); }
    const ok = m.quantizeModel(bytes, frames, 2, 32, 32, 'minmax', () => {});
    return { message, calls, okBytes: ok.length };
  });
  assert.equal(r.message, 'the progress callback threw: boom from the page');
  assert.equal(r.calls, 1, 'not called again after it threw');
  assert.ok(r.okBytes > 1_000_000, 'the same call with a quiet callback quantizes');
});
