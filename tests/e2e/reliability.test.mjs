// The app under the failures a phone meets, in headless Chromium with the real storage,
// camera and WebGPU stacks:
// - the camera permission refused: the page says so and the rest works;
// - storage full (a real quota, set through the DevTools protocol): a sample or a model that
//   does not fit is refused with a message, nothing stored is lost, frames keep coming;
// - the browser killed (SIGKILL) in the middle of saving a trained version and in the middle
//   of a model switch: the next launch finds a consistent project, the previous state or the
//   new one in full, never a mix;
// - the WebGPU device destroyed while the frame loop runs: the engine recovers and the live
//   view keeps classifying;
// - a frame whose inference fails (the engine's answer made to fail in the page): the live
//   view shows the error instead of the previous predictions, and the next frame recovers;
// - a model switch whose save fails and whose restore of the previous model fails too: the
//   page says both, stops the engine (never answering with a model its state does not
//   describe), and a reload starts the stored model.
// The small shared TFLite model is opened as the backbone where the built-in model's CPU
// cost would only add minutes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launchPersistent, openSmallModel, addClassWithFiles, killBrowser, appFixture, SMALL_MODEL, SMALL_MODEL_LABELS } from './browser.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const SHARED = path.resolve(ROOT, '../shared');
const PHOTOS = path.join(SHARED, 'data/photos');
const BIG_MODEL = path.join(SHARED, 'models/mobilenet_v1_0.5_160_quant.tflite');
const photo = (f) => path.join(PHOTOS, f);

let fx;
let url;
let tmp;
let clip;

before(async () => {
  fx = await appFixture('reliability', photo('parrot.jpg'), { fps: 10 });
  ({ url, tmp, clip } = fx);
});
after(() => fx && fx.close());

async function open(profile, { query = '', ...options } = {}) {
  const s = await launchPersistent(profile, { webgpu: false, camera: clip, ...options });
  const page = s.context.pages()[0] || (await s.context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  await page.goto(url + query);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
  return { ...s, page, errors };
}

const counts = (page) => page.$$eval('#classes li', (l) => Object.fromEntries(l.map((x) => [x.dataset.name, Number(x.dataset.count)])));
// What the page says about itself, for a failed assertion's message: its error line (an
// error is shown for 8 s, and its text stays), the engine badge and the backbone in use.
const shown = (page) => page.evaluate(() => JSON.stringify({
  error: document.getElementById('error').textContent,
  backend: document.getElementById('backend').textContent,
  backbone: document.body.dataset.backbone,
}));
const versionCount = (page) => page.$$eval('#versions li button.danger', (b) => b.length);
const frames = (page) => page.evaluate(() => globalThis.edgetuneStats.frames);
const moreFrames = async (page, n) => {
  const from = await frames(page);
  await page.waitForFunction(({ from, n }) => globalThis.edgetuneStats.frames >= from + n, { from, n }, { timeout: 120_000 });
};

// What IndexedDB holds, read in the page: the backbone in use, each sample's backbone and
// embedding width, the versions and the current one.
const stored = (page) => page.evaluate(() => new Promise((resolve, reject) => {
  const req = indexedDB.open('edgetune');
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const t = req.result.transaction(['samples', 'versions', 'meta'], 'readonly');
    const out = {};
    const get = (store, key) => { const r = t.objectStore(store).getAll(); r.onsuccess = () => { out[key] = r.result; }; };
    get('samples', 'samples');
    get('versions', 'versions');
    get('meta', 'meta');
    t.oncomplete = () => {
      const meta = Object.fromEntries(out.meta.map((m) => [m.key, m.value]));
      resolve({
        backbone: meta.backbone ?? 'builtin',
        current: meta.current ?? null,
        samples: out.samples.map((x) => ({ backbone: x.backbone ?? 'builtin', dim: x.embedding.length })),
        versions: out.versions.map((v) => ({ id: v.id, backbone: v.backbone ?? 'builtin', dim: v.dim })),
      });
      req.result.close();
    };
  };
}));

// The invariant a crash must not break: every sample was embedded by the backbone in use,
// and the current version (if any) was trained on it with the same width.
function assertConsistent(db, what) {
  for (const x of db.samples) assert.equal(x.backbone, db.backbone, `${what}: a sample embedded by ${x.backbone} under backbone ${db.backbone}`);
  const widths = new Set(db.samples.map((x) => x.dim));
  assert.ok(widths.size <= 1, `${what}: samples of widths ${[...widths]}`);
  if (db.current !== null) {
    const v = db.versions.find((x) => x.id === db.current);
    assert.ok(v, `${what}: the current version ${db.current} does not exist`);
    assert.equal(v.backbone, db.backbone, `${what}: the current version belongs to another backbone`);
    if (widths.size) assert.equal(v.dim, [...widths][0], `${what}: the current version's width differs from the samples'`);
  }
}

test('a refused camera permission: the page says so, and files still teach a class', { timeout: 300_000 }, async () => {
  const s = await open(fs.mkdtempSync(path.join(tmp, 'profile-denied-')), { denyCamera: true });
  try {
    await s.page.waitForSelector('#camera-message:not([hidden])');
    assert.match(await s.page.textContent('#camera-message'), /denied/i);
    await openSmallModel(s.page);
    await addClassWithFiles(s.page, 'owl', [photo('owl.jpg')]);
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
});

test('storage full: what does not fit is refused with a message, nothing stored is lost, frames go on', { timeout: 600_000 }, async () => {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-quota-'));
  const origin = new URL(url).origin;
  let s = await open(profile);
  let backbone;
  try {
    await openSmallModel(s.page);
    await addClassWithFiles(s.page, 'bird', [photo('parrot.jpg'), photo('owl.jpg')]);
    backbone = await s.page.getAttribute('body', 'data-backbone');
  } finally {
    await s.close();
  }
  // A real quota a little above what is stored, set before the app opens its database
  // (Chromium's IndexedDB reads the quota when a database is first opened): the browser's
  // storage layer itself then refuses the writes.
  s = await launchPersistent(profile, { webgpu: false, camera: clip });
  try {
    const page = s.context.pages()[0] || (await s.context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${url}manifest.webmanifest`);
    const cdp = await s.context.newCDPSession(page);
    const { usage } = await cdp.send('Storage.getUsageAndQuota', { origin });
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: usage + 40_000 });
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('body', 'data-backbone'), backbone);
    let before = await counts(page);
    let refused = false;
    for (let i = 0; i < 30 && !refused; i++) {
      before = await counts(page);
      await page.setInputFiles('#classes li[data-name="bird"] input[type="file"]', [photo(['bird.bmp', 'cat.bmp', 'pets.jpg'][i % 3])]);
      await page.waitForFunction((n) => Number(document.querySelector('#classes li[data-name="bird"]').dataset.count) > n
        || /Storage is full/.test(document.getElementById('error').textContent), before.bird, { timeout: 60_000 });
      refused = /Storage is full/.test(await page.textContent('#error'));
    }
    assert.ok(refused, 'the storage never filled up');
    assert.deepEqual(await counts(page), before, 'a refused sample is not shown');
    assert.match(await page.textContent('#error'), /Nothing was changed/);
    // A bigger model does not fit either: refused, the backbone in use stays, frames go on.
    await page.setInputFiles('#open-model', [BIG_MODEL]);
    await page.waitForFunction(() => /Could not open mobilenet_v1_0.5_160_quant.tflite: Storage is full/.test(document.getElementById('error').textContent), null, { timeout: 120_000 });
    assert.equal(await page.getAttribute('body', 'data-backbone'), backbone);
    await moreFrames(page, 3);
    assertConsistent(await stored(page), 'after the refused model');
    assert.deepEqual(errors, []);
  } finally {
    await s.close();
  }
  // The next launch (no quota override) finds everything as it was, and now the model fits.
  s = await open(profile);
  try {
    const c = await counts(s.page);
    assert.ok(c.bird >= 2, `the stored samples survived: ${JSON.stringify(c)}`);
    await s.page.setInputFiles('#open-model', [BIG_MODEL]);
    await s.page.waitForFunction(() => document.querySelectorAll('#models li').length === 3 && !document.body.dataset.switching, null, { timeout: 120_000 });
    assert.deepEqual(await counts(s.page), c);
    assertConsistent(await stored(s.page), 'after switching with room to spare');
  } finally {
    await s.close();
  }
});

// Starts `action` in the page and SIGKILLs the browser as soon as the page marks a save of
// `what` in flight; relaunches and returns the new session and what storage holds.
async function killDuringSave(profile, what, action, options) {
  let s = await open(profile, options);
  let killed = 0;
  await s.page.exposeBinding('saveStarted', () => { killed += killBrowser(profile); });
  await s.page.evaluate((what) => {
    new MutationObserver(() => { if (document.body.dataset.saving === what) globalThis.saveStarted(); })
      .observe(document.body, { attributes: true, attributeFilter: ['data-saving'] });
  }, what);
  await action(s.page).catch(() => {}); // the page dies under it
  await Promise.race([s.context.waitForEvent('close').catch(() => {}), new Promise((r) => setTimeout(r, 30_000))]);
  await s.close().catch(() => {});
  assert.ok(killed > 0, `the browser was not killed while saving the ${what}`);
  s = await open(profile, options);
  return { s, db: await stored(s.page) };
}

test('the browser killed mid-save: the next launch has the previous version or the new one, whole', { timeout: 900_000 }, async () => {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-kill-'));
  let s = await open(profile);
  let before;
  try {
    await openSmallModel(s.page);
    await addClassWithFiles(s.page, 'bird', [photo('parrot.jpg'), photo('owl.jpg')]);
    await addClassWithFiles(s.page, 'other', [photo('sunflower.bmp'), photo('hot_dog.jpg')]);
    await s.page.click('#train');
    await s.page.waitForFunction(() => document.body.dataset.training === 'done' && document.querySelectorAll('#versions li button.danger').length === 1, null, { timeout: 120_000 });
    before = { counts: await counts(s.page), db: await stored(s.page) };
  } finally {
    await s.close();
  }
  const outcomes = {};
  // 1. Killed while the second trained version is being written.
  let r = await killDuringSave(profile, 'version', (page) => page.click('#train'));
  s = r.s;
  try {
    assertConsistent(r.db, 'killed while saving a version');
    assert.ok([1, 2].includes(r.db.versions.length), `${r.db.versions.length} versions`);
    outcomes.version = r.db.versions.length === 1 ? 'previous version kept' : 'new version committed';
    assert.deepEqual(await counts(s.page), before.counts, `classes after the kill; the page shows ${await shown(s.page)}`);
    assert.equal(await s.page.getAttribute('#mode-custom', 'aria-pressed'), 'true');
    await s.page.waitForFunction(() => ['bird', 'other'].includes(document.getElementById('predictions').dataset.top), null, { timeout: 60_000 });
  } finally {
    await s.close();
  }
  // 2. Killed while switching back to the built-in model commits (after the re-embedding).
  r = await killDuringSave(profile, 'model', (page) => page.click('#models li[data-key="builtin"] button'));
  s = r.s;
  try {
    assertConsistent(r.db, 'killed while switching models');
    outcomes.modelSwitch = r.db.backbone === 'builtin' ? 'new backbone committed' : 'previous backbone kept';
    assert.deepEqual(await counts(s.page), before.counts, `classes after the kill (${outcomes.modelSwitch}); the page shows ${await shown(s.page)}`);
    assert.equal(await s.page.getAttribute('body', 'data-backbone'), r.db.backbone);
    await moreFrames(s.page, 2);
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
  console.log(`killed mid-save: trained version -> ${outcomes.version}; model switch -> ${outcomes.modelSwitch}; project consistent both times`);
});

test('WebGPU device lost while frames run: the engine recovers and the live view keeps classifying', { timeout: 600_000 }, async () => {
  // WebGPU asked for: `auto` would choose the faster CPU path over SwiftShader.
  const s = await open(fs.mkdtempSync(path.join(tmp, 'profile-gpu-')), { webgpu: true, query: '?backend=gpu' });
  try {
    assert.equal(await s.page.getAttribute('#backend', 'data-backend'), 'gpu');
    await s.page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 120_000 });
    await s.page.evaluate(() => globalThis.edgetuneDiagnostics.loseDevice());
    await moreFrames(s.page, 3);
    const report = await s.page.evaluate(() => globalThis.edgetuneDiagnostics.backend());
    assert.match(await s.page.getAttribute('#predictions', 'data-top'), /macaw/);
    console.log(`device lost mid-loop: 3 more frames classified on ${report.backend} (${report.reason})`);
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
});

test('a frame that fails to classify shows the error, not the last predictions, and the next frame recovers', { timeout: 600_000 }, async () => {
  const s = await open(fs.mkdtempSync(path.join(tmp, 'profile-frame-error-')));
  try {
    await s.page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 180_000 });
    // Classify calls fail, as a lost worker or a wasm error would, until the test lets them
    // through again: the page's own engine client, wrapped, rejects them.
    await s.page.evaluate(async () => {
      const { state } = await import('/lib/state.js');
      const call = state.engine.call.bind(state.engine);
      globalThis.failFrames = true;
      state.engine.call = (method, ...rest) => (method === 'classify' && globalThis.failFrames
        ? Promise.reject(new Error('injected inference failure'))
        : call(method, ...rest));
    });
    await s.page.waitForSelector('#predictions[data-state="error"]', { timeout: 60_000 });
    assert.match(await s.page.textContent('#predictions'), /could not be classified \(injected inference failure\)/);
    assert.equal(await s.page.getAttribute('#predictions', 'data-top'), '', 'no stale top label while frames fail');
    assert.doesNotMatch(await s.page.textContent('#predictions'), /macaw/);
    await s.page.evaluate(() => { globalThis.failFrames = false; });
    await s.page.waitForSelector('#predictions[data-state="live"]', { timeout: 60_000 });
    assert.match(await s.page.getAttribute('#predictions', 'data-top'), /macaw/);
    assert.ok(await s.page.evaluate(() => globalThis.edgetuneStats.frameErrors) >= 1, 'the failed frames are counted');
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
});

test('a failed model switch whose restore fails too: both reasons shown, the engine stopped, a reload recovers', { timeout: 600_000 }, async () => {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-restore-'));
  let s = await open(profile);
  try {
    await s.page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 180_000 });
    // The switch's save fails (as a full disk would make it) and so does restarting the
    // previous model (as running out of memory would): the page's store and engine client,
    // wrapped, reject them.
    await s.page.evaluate(async () => {
      const { state } = await import('/lib/state.js');
      const call = state.engine.call.bind(state.engine);
      let creates = 0;
      state.engine.call = (method, ...rest) => (method === 'create' && ++creates === 2
        ? Promise.reject(new Error('injected restore failure'))
        : call(method, ...rest));
      state.store.switchBackbone = () => Promise.reject(new Error('injected save failure'));
    });
    await s.page.setInputFiles('#open-model', [SMALL_MODEL, SMALL_MODEL_LABELS]);
    await s.page.waitForFunction(() => /engine is stopped/.test(document.getElementById('error').textContent), null, { timeout: 120_000 });
    assert.match(await s.page.textContent('#error'),
      /^Could not open mobilenet_v1_0\.25_128_quant\.tflite: injected save failure; the engine is stopped: EfficientNet-Lite0 int8 could not be restarted \(injected restore failure\); reload the page$/);
    assert.equal(await s.page.textContent('#backend'), 'engine stopped');
    assert.equal(await s.page.getAttribute('#backend', 'data-state'), 'error');
    assert.equal(await s.page.getAttribute('body', 'data-backbone'), 'builtin', 'the page state still names the stored model');
    // Frames say why they are not classified, instead of answering with the other model.
    await s.page.waitForSelector('#predictions[data-state="error"]', { timeout: 60_000 });
    assert.match(await s.page.textContent('#predictions'), /engine is stopped/);
    assert.equal(await s.page.getAttribute('#predictions', 'data-top'), '');
    assert.deepEqual(s.errors, []);
    await s.page.reload();
    await s.page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    await s.page.waitForFunction(() => /macaw/.test(document.getElementById('predictions').dataset.top || ''), null, { timeout: 180_000 });
    assert.equal(await s.page.getAttribute('body', 'data-backbone'), 'builtin');
    assertConsistent(await stored(s.page), 'after the failed switch and a reload');
  } finally {
    await s.close();
  }
});
