// Bring your own model, in the app: classes taught on the built-in model, then the shared
// MobileNet v1 TFLite opened in the page (converted by the wasm importer) becomes the
// backbone. The stored samples are re-embedded from their images, the built-in model's head
// is hidden but kept, a head trained on the new backbone names the camera's class, its
// download runs in the native CLI, switching back brings the first head back as it was, a
// dropped file switches again, a reload keeps the choice, and a project exported on one
// model imports on the other (re-embedded). A TF2 int8 file from TensorFlow's converter,
// opened alone on WebGPU, names the camera's frames with its own metadata's classes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { launchPersistent, openSmallModel, addClassWithFiles, SMALL_MODEL, SMALL_MODEL_LABELS, appFixture } from './browser.mjs';
import { cliPath } from '../../scripts/cargo-paths.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const PHOTOS = path.resolve(ROOT, '../shared/data/photos');
const CLI = cliPath();
const photo = (f) => path.join(PHOTOS, f);
// Made by TensorFlow's converter in scripts/test-deps.sh (tests/reference/tflite_convert.py).
const TF2_MODEL = path.join(process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache/edgetune'), 'tf2-int8/mobilenet_v2_int8.tflite');
const CIFAR10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

let fx;
let url;
let tmp;
let clip;

before(async () => {
  assert.ok(fs.existsSync(CLI), 'the release CLI is built by scripts/models.sh (npm test runs it)');
  fx = await appFixture('models', photo('parrot.jpg'), { fps: 10 });
  ({ url, tmp, clip } = fx);
});
after(() => fx && fx.close());

// Each sample's backbone and embedding width, as stored.
const storedSamples = (page) => page.evaluate(() => new Promise((resolve, reject) => {
  const req = indexedDB.open('edgetune');
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const r = req.result.transaction('samples').objectStore('samples').getAll();
    r.onsuccess = () => { resolve(r.result.map((x) => `${x.backbone ?? 'builtin'}/${x.embedding.length}`)); req.result.close(); };
  };
}));

const versionLabels = (page) => page.$$eval('#versions li span', (l) => l.map((x) => x.textContent));
const top = (page) => page.getAttribute('#predictions', 'data-top');

async function train(page, n) {
  await page.click('#train');
  await page.waitForFunction((n) => document.body.dataset.training === 'done' && document.querySelectorAll('#versions li button.danger').length === n, n, { timeout: 180_000 });
}

test('a TFLite model opened in the page becomes the backbone; samples are re-embedded; heads stay with their model', { timeout: 900_000 }, async () => {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  let s = await launchPersistent(profile, { webgpu: false, camera: clip });
  const errors = [];
  try {
    let page = s.context.pages()[0] || (await s.context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => d.accept());
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('body', 'data-backbone'), 'builtin');
    // 1. Two classes and a head on the built-in model.
    await addClassWithFiles(page, 'bird', [photo('parrot.jpg'), photo('owl.jpg'), photo('bird.bmp')]);
    await addClassWithFiles(page, 'other', [photo('sunflower.bmp'), photo('hot_dog.jpg'), photo('cat.bmp')]);
    await train(page, 1);
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 60_000 });
    const builtinHead = await versionLabels(page);
    assert.deepEqual(new Set(await storedSamples(page)), new Set(['builtin/1280']));

    // 2. Open the TFLite file (with its labels): converted in wasm, samples re-embedded.
    await openSmallModel(page);
    const key = await page.getAttribute('body', 'data-backbone');
    assert.deepEqual(new Set(await storedSamples(page)), new Set([`${key}/256`]));
    assert.deepEqual(await page.$$eval('#classes li', (l) => l.map((x) => x.dataset.count)), ['3', '3']);
    assert.equal(await page.textContent('#mode-imagenet'), 'Model classes');
    assert.equal(await page.getAttribute('#mode-imagenet', 'aria-pressed'), 'true');
    assert.match(await page.textContent('#versions'), /No trained model yet/);
    assert.match(await page.textContent(`#models li[data-key="${key}"]`), /mobilenet_v1_0\.25_128_quant · int8 · 128×128 · 256 features · 1001 classes/);
    await page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 60_000 });

    // 3. A head on the new backbone names the camera's class; its download runs natively.
    await train(page, 1);
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 60_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-model')]);
    const etm = path.join(tmp, 'mv1-head.etm');
    await download.saveAs(etm);
    const out = execFileSync(CLI, ['classify', '--backend', 'cpu', '--model', etm, photo('parrot.jpg'), photo('sunflower.bmp')], { encoding: 'utf8' });
    const firsts = out.split('\n').filter((l) => /^\s+[\d.]+%/.test(l));
    assert.match(out, /parrot\.jpg[^\n]*\n\s+[\d.]+%\s+bird\n/, out);
    assert.match(out, /sunflower\.bmp[^\n]*\n\s+[\d.]+%\s+other\n/, out);
    assert.ok(firsts.length >= 2);

    // 4. Back to the built-in model: its head is current again, as it was.
    await page.click('#models li[data-key="builtin"] button');
    await page.waitForFunction(() => document.body.dataset.backbone === 'builtin' && !document.body.dataset.switching, null, { timeout: 120_000 });
    assert.deepEqual(await versionLabels(page), builtinHead);
    assert.deepEqual(new Set(await storedSamples(page)), new Set(['builtin/1280']));
    assert.equal(await page.getAttribute('#mode-custom', 'aria-pressed'), 'true');
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 60_000 });

    // 5. Dropping the same files on the page switches to the stored model (no second copy).
    await page.evaluate(async ({ model, labels }) => {
      const bytes = Uint8Array.from(atob(model), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'mobilenet_v1_0.25_128_quant.tflite'));
      dt.items.add(new File([labels], 'labels.txt'));
      document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, { model: fs.readFileSync(SMALL_MODEL).toString('base64'), labels: fs.readFileSync(SMALL_MODEL_LABELS, 'utf8') });
    await page.waitForFunction((key) => document.body.dataset.backbone === key && !document.body.dataset.switching, key, { timeout: 120_000 });
    assert.equal(await page.$$eval('#models li', (l) => l.length), 2);
    assert.equal((await versionLabels(page)).length, 1);

    // 6. A reload keeps the opened model as the backbone.
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('body', 'data-backbone'), key);
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 60_000 });

    // 7. A file that is no model is refused by name; the backbone stays.
    await page.setInputFiles('#open-model', { name: 'broken.onnx', mimeType: 'application/octet-stream', buffer: Buffer.from('not a model at all') });
    await page.waitForFunction(() => /Could not open broken\.onnx/.test(document.getElementById('error').textContent), null, { timeout: 30_000 });
    assert.equal(await page.getAttribute('body', 'data-backbone'), key);

    // 8. A project exported on this model and imported on the built-in one: its samples are
    // re-embedded by the built-in model from their images; its head stays with its model.
    const [exported] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const file = path.join(tmp, 'project-mv1.json');
    await exported.saveAs(file);
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).backbone, key);
    await page.click('#models li[data-key="builtin"] button');
    await page.waitForFunction(() => document.body.dataset.backbone === 'builtin' && !document.body.dataset.switching, null, { timeout: 120_000 });
    await page.click('#classes li[data-name="other"] button.danger');
    await page.waitForFunction(() => !document.querySelector('#classes li[data-name="other"]'));
    await page.setInputFiles('#import', file);
    await page.waitForFunction(() => document.querySelector('#classes li[data-name="other"]')?.dataset.count === '3' && !document.body.dataset.switching, null, { timeout: 120_000 });
    await page.waitForFunction(() => !document.body.dataset.switching);
    assert.deepEqual(new Set(await storedSamples(page)), new Set(['builtin/1280']));
    assert.match(await page.textContent('#versions'), /No trained model yet/);
    assert.deepEqual(errors, []);
  } finally {
    await s.close();
  }
});

test('a float model opened in the page is quantized there on the user\'s own images and camera frames', { timeout: 900_000 }, async () => {
  const f32 = path.join(ROOT, 'www/models/efficientnet_lite0.f32.etm');
  assert.ok(fs.existsSync(f32), 'www/models/ is built by scripts/models.sh (npm test runs it)');
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-quantize-'));
  const s = await launchPersistent(profile, { webgpu: false, camera: clip });
  const errors = [];
  try {
    const page = s.context.pages()[0] || (await s.context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => d.accept());
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    await addClassWithFiles(page, 'bird', [photo('parrot.jpg'), photo('owl.jpg'), photo('bird.bmp')]);
    await addClassWithFiles(page, 'other', [photo('sunflower.bmp'), photo('hot_dog.jpg'), photo('cat.bmp')]);
    await page.setInputFiles('#open-model', f32);
    await page.waitForFunction(() => (document.body.dataset.backbone || '').startsWith('etm-') && !document.body.dataset.switching, null, { timeout: 300_000 });
    const floatKey = await page.getAttribute('body', 'data-backbone');
    assert.match(await page.textContent(`#models li[data-key="${floatKey}"]`), /efficientnet_lite0\.f32 · f32 · 224×224 · 1280 features · 1000 classes/);
    const t0 = Date.now();
    await page.click(`#models li[data-key="${floatKey}"] button.quantize`);
    await page.waitForFunction((k) => (document.body.dataset.backbone || '').startsWith('etm-') && document.body.dataset.backbone !== k && !document.body.dataset.switching, floatKey, { timeout: 600_000 });
    const seconds = (Date.now() - t0) / 1000;
    const key = await page.getAttribute('body', 'data-backbone');
    const row = await page.textContent(`#models li[data-key="${key}"]`);
    assert.match(row, /efficientnet_lite0\.f32 int8 · int8 · 224×224 · 1280 features · 1000 classes · top-1 equals the float model's on \d+\/\d+ held-out frames/);
    const [, agree, held] = row.match(/on (\d+)\/(\d+) held-out/).map(Number);
    console.log(`in-page quantization of the f32 Lite0 (mse, 6 sample images + camera frames): ${seconds.toFixed(0)} s from the click to the int8 model in use; top-1 equal to f32 on ${agree}/${held} held-out frames`);
    assert.ok(held >= 1 && agree >= held - 1, row);
    // The int8 model classifies the camera (ImageNet) and a head trains on it.
    await page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 60_000 });
    await train(page, 1);
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 60_000 });
    assert.deepEqual(errors, []);
  } finally {
    await s.close();
  }
});

test('a TF2 int8 TFLite file opened alone names the camera with its own classes, on WebGPU', { timeout: 600_000 }, async () => {
  assert.ok(fs.existsSync(TF2_MODEL), `the converter-made model is missing at ${TF2_MODEL} (bash scripts/test-deps.sh makes it)`);
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const s = await launchPersistent(profile, { webgpu: true, camera: clip });
  const errors = [];
  try {
    const page = s.context.pages()[0] || (await s.context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${url}?backend=gpu`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    // The file alone: no label file; the names come from its TFLite Support metadata.
    await page.setInputFiles('#open-model', TF2_MODEL);
    await page.waitForFunction(() => (document.body.dataset.backbone || '').startsWith('etm-') && !document.body.dataset.switching, null, { timeout: 180_000 });
    const key = await page.getAttribute('body', 'data-backbone');
    assert.match(await page.textContent(`#models li[data-key="${key}"]`), /mobilenet_v2_int8 · int8 · 96×96 · 1280 features · 10 classes/);
    await page.waitForFunction((names) => names.includes(document.getElementById('predictions').dataset.top), CIFAR10, { timeout: 60_000 });
    await page.waitForFunction(() => document.getElementById('backend').dataset.backend === 'gpu', null, { timeout: 60_000 });
    console.log(`TF2 MobileNetV2 in the page: '${await top(page)}' on ${await page.textContent('#backend')}`);
    assert.deepEqual(errors, []);
  } finally {
    await s.close();
  }
});
