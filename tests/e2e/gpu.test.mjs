// The WebGPU backend compiled to wasm, in headless Chromium (SwiftShader WebGPU): the int8
// EfficientNet-Lite0 gives logits bit-identical to the CPU path on every shared photo,
// `auto` keeps whichever of GPU and CPU was faster on its self-test and says why, a destroyed device is rebuilt without changing a
// result, and a call made while another runs is refused rather than queued. A TF2 int8 file
// made by TensorFlow's converter, imported in the page with no label file, classifies with the
// class names of its own metadata, with WebGPU logits bit-identical to the CPU's. Times are
// printed and written to tests/e2e/out/gpu-browser.json, never asserted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { launch, openPage, startServer, OUT_DIR } from './browser.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const PHOTOS = path.resolve(ROOT, '../shared/data/photos');
// Made by scripts/test-deps.sh (tests/reference/tflite_convert.py) into the cache.
const CACHE = process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache/edgetune');
const TF2_MODEL = path.join(CACHE, 'tf2-int8/mobilenet_v2_int8.tflite');
const CIFAR10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
let server;
let browser;
let cleanup;
let page;
let errors;
let foreign;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')), 'pkg/ must be built first (scripts/build-wasm.sh)');
  assert.ok(fs.existsSync(path.join(ROOT, 'www/models/efficientnet_lite0.int8.etm')), 'run scripts/models.sh first');
  assert.ok(fs.existsSync(PHOTOS), `shared photos not found at ${PHOTOS}`);
  let url;
  ({ server, url } = await startServer({ port: 0 }));
  fs.mkdirSync(OUT_DIR, { recursive: true });
  ({ browser, cleanup } = await launch({ webgpu: true }));
  ({ page, errors, foreign } = await openPage(browser, url));
  await page.evaluate(async () => {
    const m = await import('/pkg/edgetune.js');
    await m.default();
    globalThis.m = m;
    const bytes = new Uint8Array(await (await fetch('/models/efficientnet_lite0.int8.etm')).arrayBuffer());
    globalThis.model = bytes;
    // RGBA pixels of an encoded image (JPEG/BMP), decoded by the browser.
    globalThis.rgba = async (b64) => {
      const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bmp = await createImageBitmap(new Blob([raw]));
      const canvas = new OffscreenCanvas(bmp.width, bmp.height);
      const g = canvas.getContext('2d');
      g.drawImage(bmp, 0, 0);
      return { data: new Uint8Array(g.getImageData(0, 0, bmp.width, bmp.height).data.buffer), width: bmp.width, height: bmp.height };
    };
  });
});
after(async () => {
  if (cleanup) await cleanup();
  if (server) server.close();
});

function photos() {
  return fs.readdirSync(PHOTOS).filter((f) => /\.(jpg|bmp)$/.test(f)).sort()
    .map((f) => ({ name: f, b64: fs.readFileSync(path.join(PHOTOS, f)).toString('base64') }));
}

test('GPU logits equal the CPU logits on every shared photo, in the browser', { timeout: 600_000 }, async () => {
  const list = photos();
  assert.ok(list.length >= 10, `expected the 10 shared photos, found ${list.length}`);
  const r = await page.evaluate(async (list) => {
    const { m } = globalThis;
    let t = performance.now();
    const gpu = await m.Engine.create(globalThis.model, 'gpu');
    const gpuStartMs = performance.now() - t;
    t = performance.now();
    const cpu = await m.Engine.create(globalThis.model, 'cpu');
    const cpuStartMs = performance.now() - t;
    globalThis.engines = { gpu, cpu };
    const rows = [];
    for (const p of list) {
      const img = await globalThis.rgba(p.b64);
      const a = await gpu.classify(img.data, img.width, img.height, 5, ['logits']);
      const b = await cpu.classify(img.data, img.width, img.height, 5, ['logits']);
      const same = a.logits.length === b.logits.length && a.logits.every((v, i) => Object.is(v, b.logits[i]));
      rows.push({ photo: p.name, same, gpuTop: a.top[0].label, cpuTop: b.top[0].label, prob: a.top[0].probability, gpuMs: a.ms, cpuMs: b.ms, backend: a.backend });
    }
    return { backend: gpu.backend(), rows, gpuStartMs, cpuStartMs };
  }, list);
  console.log(`WebGPU backend: ${r.backend.backend} ${r.backend.precision} (${r.backend.variant}) on ${r.backend.device}: ${r.backend.reason}`);
  for (const row of r.rows) {
    console.log(`  ${row.photo.padEnd(18)} ${row.same ? 'identical' : 'DIFFERENT'}  ${(100 * row.prob).toFixed(2).padStart(6)}% ${row.gpuTop.slice(0, 30).padEnd(30)} gpu ${row.gpuMs.toFixed(0)} ms, cpu ${row.cpuMs.toFixed(0)} ms`);
  }
  fs.writeFileSync(path.join(OUT_DIR, 'gpu-browser.json'), JSON.stringify(r, null, 2));
  assert.equal(r.backend.backend, 'gpu');
  assert.ok(r.backend.variant, 'the GPU variant is reported');
  for (const row of r.rows) {
    assert.equal(row.backend, 'gpu', `${row.photo} ran on ${row.backend}`);
    assert.ok(row.same, `${row.photo}: GPU logits differ from the CPU's`);
    assert.equal(row.gpuTop, row.cpuTop);
  }
  assert.match(r.rows.find((x) => x.photo === 'parrot.jpg').gpuTop, /macaw/);
});

test('auto keeps the faster of GPU and CPU on its self-test and says why; a lost device is rebuilt; overlapping calls are refused', { timeout: 600_000 }, async () => {
  const [parrot] = photos().filter((p) => p.name === 'parrot.jpg');
  const r = await page.evaluate(async (b64) => {
    const { m, engines } = globalThis;
    const auto = await m.Engine.create(globalThis.model, 'auto');
    const img = await globalThis.rgba(b64);
    const want = await engines.cpu.classify(img.data, img.width, img.height, 5, ['logits']);
    const first = auto.backend();
    const viaAuto = await auto.classify(img.data, img.width, img.height, 5, ['logits']);
    // A destroyed device under an explicit 'gpu' engine: rebuilt, same logits.
    engines.gpu.loseDevice();
    const after = await engines.gpu.classify(img.data, img.width, img.height, 5, ['logits']);
    const recovered = engines.gpu.backend();
    // A second call while the first runs is refused ("busy"), never queued.
    const p1 = engines.gpu.classify(img.data, img.width, img.height, 5, ['logits']);
    let busy = null;
    try { await engines.gpu.classify(img.data, img.width, img.height, 5, ['logits']); } catch (e) { busy = String(e.message || e); }
    await p1;
    let badSize = null;
    try { await engines.gpu.classify(new Uint8Array(10), 4, 4, 5); } catch (e) { badSize = String(e.message || e); }
    const same = after.logits.every((v, i) => Object.is(v, want.logits[i]));
    const autoSame = viaAuto.logits.every((v, i) => Object.is(v, want.logits[i]));
    return { first, recovered, same, autoSame, busy, badSize };
  }, parrot.b64);
  console.log(`auto: ${r.first.backend}${r.first.variant ? ` (${r.first.variant})` : ''}: ${r.first.reason}`);
  console.log(`after loseDevice(): ${r.recovered.backend}: ${r.recovered.reason}`);
  // The choice follows the measured times the report gives: CPU if it was faster, else GPU.
  const ms = (re) => Number((r.first.reason.match(re) || [])[1]);
  if (r.first.backend === 'cpu') {
    assert.match(r.first.reason, /CPU was faster in the self-test/);
    assert.ok(ms(/\(([\d.]+) ms against/) < ms(/against ([\d.]+) ms/), r.first.reason);
  } else {
    assert.equal(r.first.backend, 'gpu');
    assert.match(r.first.reason, /faster than the CPU/);
  }
  // When auto chose the CPU (SwiftShader loses to it), this compares the CPU with itself; the
  // GPU against the CPU is `same` below, on an engine forced onto the GPU.
  console.log(`auto's logits against the CPU's: ${r.first.backend === 'cpu' ? 'the CPU with itself (auto chose it)' : 'the GPU against the CPU'}`);
  assert.ok(r.autoSame, "auto's logits equal the CPU's whichever it chose");
  assert.ok(r.same, 'results after recovery equal the CPU logits');
  assert.match(r.recovered.reason, /rebuilt/);
  assert.match(r.busy ?? '', /busy/);
  assert.match(r.badSize ?? '', /preprocess|pixels|bytes|expected/i);
  assert.deepEqual(foreign, [], 'no request left the page origin');
  assert.deepEqual(errors.filter((e) => !/GPU device lost|destroyed/i.test(e)), []);
});

test('a TF2 int8 TFLite file opened alone classifies with its own labels, WebGPU logits identical to the CPU\'s', { timeout: 600_000 }, async () => {
  assert.ok(fs.existsSync(TF2_MODEL), `the converter-made model is missing at ${TF2_MODEL} (bash scripts/test-deps.sh makes it)`);
  const list = photos();
  const r = await page.evaluate(async ({ model, list }) => {
    const { m } = globalThis;
    // What the page's Open model does with a .tflite: the wasm importer, no label file.
    const importer = await import('/pkg/importer/edgetune.js');
    await importer.default();
    const etm = importer.importModel(Uint8Array.from(atob(model), (c) => c.charCodeAt(0)), 'mobilenet_v2_int8.tflite');
    const info = importer.modelInfo(etm);
    const gpu = await m.Engine.create(etm, 'gpu');
    const cpu = await m.Engine.create(etm, 'cpu');
    const rows = [];
    for (const p of list) {
      const img = await globalThis.rgba(p.b64);
      const a = await gpu.classify(img.data, img.width, img.height, 3, ['logits']);
      const b = await cpu.classify(img.data, img.width, img.height, 3, ['logits']);
      const same = a.logits.length === b.logits.length && a.logits.every((v, i) => Object.is(v, b.logits[i]));
      rows.push({ photo: p.name, same, top: a.top.map((t) => t.label), cpuTop: b.top.map((t) => t.label), backend: a.backend });
    }
    return { info, backend: gpu.backend(), rows };
  }, { model: fs.readFileSync(TF2_MODEL).toString('base64'), list });
  console.log(`TF2 int8 MobileNetV2 (converter-made): ${r.info.precision}, ${r.info.classes} classes; ${r.backend.backend} (${r.backend.variant}): ${r.backend.reason}`);
  assert.equal(r.info.precision, 'int8');
  assert.equal(r.info.classes, 10);
  assert.equal(r.backend.backend, 'gpu');
  for (const row of r.rows) {
    console.log(`  ${row.photo.padEnd(18)} ${row.same ? 'identical' : 'DIFFERENT'}  ${row.top.join(', ')}`);
    assert.equal(row.backend, 'gpu', `${row.photo} ran on ${row.backend}`);
    assert.ok(row.same, `${row.photo}: GPU logits differ from the CPU's`);
    assert.deepEqual(row.top, row.cpuTop);
    for (const label of row.top) assert.ok(CIFAR10.includes(label), `${row.photo}: '${label}' is not one of the model's own class names`);
  }
  assert.deepEqual(errors, []);
  assert.deepEqual(foreign, []);
});
