// Model import in the browser: the shared quantized TFLite MobileNet converted to .etm by the
// wasm importer (importModel), then run by the wasm engine, gives the same top-1 (and the same
// printed probability) on every lossless shared photo as the native CLI's import + classify.
// Garbage files are clear errors, and an .etm passes through. An ONNX file takes torchvision's
// per-channel normalization when asked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { launch, openPage, startServer } from './browser.mjs';
import { cliPath } from '../../scripts/cargo-paths.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const SHARED = path.resolve(ROOT, '../shared');
const MODEL = path.join(SHARED, 'models/mobilenet_v1_0.5_160_quant.tflite');
const LABELS = path.join(SHARED, 'data/photos/imagenet_labels.txt');
const CLI = cliPath();
let server;
let browser;
let cleanup;
let page;
let errors;
let foreign;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')), 'pkg/ must be built first (scripts/build-wasm.sh)');
  assert.ok(fs.existsSync(MODEL), `the shared TFLite model is missing at ${MODEL} (../shared beside the repository)`);
  assert.ok(fs.existsSync(CLI), 'the release CLI is built by scripts/models.sh (npm test runs it)');
  let url;
  ({ server, url } = await startServer({ port: 0 }));
  ({ browser, cleanup } = await launch({ webgpu: false }));
  ({ page, errors, foreign } = await openPage(browser, url));
  await page.evaluate(async () => {
    const m = await import('/pkg/importer/edgetune.js');
    await m.default();
    globalThis.m = m;
  });
});
after(async () => {
  if (cleanup) await cleanup();
  if (server) server.close();
});

/** The native CLI's top-1 `{ photo: [probability %, label] }` for the BMP photos. */
function nativeTop1(photos) {
  fs.mkdirSync(path.join(ROOT, 'tests/e2e/artifacts'), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(ROOT, 'tests/e2e/artifacts/import-'));
  const etm = path.join(tmp, 'mv1.etm');
  execFileSync(CLI, ['import', MODEL, etm, '--labels', LABELS]);
  const out = execFileSync(CLI, ['classify', '--model', etm, '--backend', 'cpu', ...photos], { encoding: 'utf8' });
  const top = {};
  let current = null;
  for (const line of out.split('\n')) {
    const head = line.match(/^(\S.*) \([\d.]+ ms\)$/);
    if (head) { current = path.basename(head[1]); continue; }
    const row = line.match(/^\s+([\d.]+)%\s+(.*)$/);
    if (row && current && !top[current]) top[current] = [row[1], row[2]];
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  return top;
}

// The page imports the file alone: its class names come from the TFLite metadata inside it;
// the native import is given the shared label file, so equal top-1 names also check those.
test('a TFLite model converted in the browser classifies like the native import', { timeout: 300_000 }, async () => {
  const dir = path.join(SHARED, 'data/photos');
  const bmps = fs.readdirSync(dir).filter((f) => f.endsWith('.bmp')).sort();
  assert.ok(bmps.length >= 5, 'the lossless shared photos');
  const want = nativeTop1(bmps.map((f) => path.join(dir, f)));
  const r = await page.evaluate(async ({ model, photos }) => {
    const { m } = globalThis;
    const raw = Uint8Array.from(atob(model), (c) => c.charCodeAt(0));
    let t = performance.now();
    const etm = m.importModel(raw, 'mobilenet_v1_0.5_160_quant.tflite');
    const importMs = performance.now() - t;
    const info = m.modelInfo(etm);
    const engine = await m.Engine.create(etm, 'cpu');
    const rows = [];
    for (const p of photos) {
      const bytes = Uint8Array.from(atob(p.b64), (c) => c.charCodeAt(0));
      const bmp = await createImageBitmap(new Blob([bytes]));
      const g = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d');
      g.drawImage(bmp, 0, 0);
      const px = new Uint8Array(g.getImageData(0, 0, bmp.width, bmp.height).data.buffer);
      const c = await engine.classify(px, bmp.width, bmp.height, 1);
      rows.push({ photo: p.name, label: c.top[0].label, probability: c.top[0].probability, ms: c.ms });
    }
    // An .etm passes through; garbage is a clear error.
    const again = m.modelInfo(m.importModel(etm, 'again.etm'));
    let garbage = null;
    try { m.importModel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]), 'x.tflite'); } catch (e) { garbage = String(e.message || e); }
    return { importMs, info, rows, again, garbage, etmBytes: etm.length };
  }, { model: fs.readFileSync(MODEL).toString('base64'), photos: bmps.map((f) => ({ name: f, b64: fs.readFileSync(path.join(dir, f)).toString('base64') })) });
  console.log(`imported ${path.basename(MODEL)} in the browser in ${r.importMs.toFixed(1)} ms: ${r.info.architecture}, ${r.info.precision}, ${r.info.classes} classes, ${r.etmBytes} bytes`);
  assert.equal(r.info.precision, 'int8');
  assert.equal(r.info.classes, 1001);
  assert.deepEqual(r.info.input, [160, 160, 3]);
  for (const row of r.rows) {
    const [p, label] = want[row.photo];
    console.log(`  ${row.photo.padEnd(16)} ${(100 * row.probability).toFixed(2).padStart(6)}% ${row.label} (native ${p}% ${label}), ${row.ms.toFixed(0)} ms`);
    assert.equal(row.label, label, `${row.photo}: top-1 differs from the native CLI`);
    assert.equal((100 * row.probability).toFixed(2), p, `${row.photo}: probability differs from the native CLI`);
  }
  assert.equal(r.again.architecture, r.info.architecture);
  assert.match(r.garbage, /x\.tflite: not a valid TFLite model/);
  assert.deepEqual(errors, []);
  assert.deepEqual(foreign, []);
});

test('an ONNX model converted in the browser takes torchvision normalization when asked', { timeout: 300_000 }, async () => {
  // An ONNX file of the default float model, written by the native exporter.
  const onnx = path.join(os.tmpdir(), `edgetune-e2e-${process.pid}.onnx`);
  execFileSync(CLI, ['export', path.join(ROOT, 'www/models/efficientnet_lite0.f32.etm'), onnx]);
  const r = await page.evaluate(async (b64) => {
    const { m } = globalThis;
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const plain = m.modelInfo(m.importModel(raw, 'lite0.onnx'));
    const imagenet = m.modelInfo(m.importModel(raw, 'lite0.onnx', undefined, 'imagenet'));
    let bad = null;
    try { m.importModel(raw, 'lite0.onnx', undefined, 'sepia'); } catch (e) { bad = String(e.message || e); }
    return { plain, imagenet, bad };
  }, fs.readFileSync(onnx).toString('base64'));
  fs.rmSync(onnx, { force: true });
  assert.deepEqual(r.plain.normalization, { mean: [127, 127, 127], scale: [128, 128, 128] });
  const near = (a, b) => a.every((v, i) => Math.abs(v - b[i]) < 1e-3);
  assert.ok(near(r.imagenet.normalization.mean, [123.675, 116.28, 103.53]), JSON.stringify(r.imagenet.normalization));
  assert.ok(near(r.imagenet.normalization.scale, [58.395, 57.12, 57.375]), JSON.stringify(r.imagenet.normalization));
  assert.match(r.bad, /normalization 'sepia'/);
  assert.deepEqual(errors, []);
});
