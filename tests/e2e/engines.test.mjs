// The app's journey in the other two browser engines, as a person on an iPhone (every browser
// there is WebKit, Safari's engine) or on Firefox would take it: Firefox ESR (Debian's
// firefox-esr, driven over WebDriver BiDi by puppeteer-core) and WebKitGTK (Debian's
// MiniBrowser under Xvfb, driven by WebKitWebDriver over W3C WebDriver, ./webdriver.mjs).
// Chromium's journey is app.test.mjs.
//
// In each engine: the live view classifies the engine's fake camera (a synthetic picture in
// both: Firefox's fake stream, WebKit's mock capture device); two classes are taught, one
// recorded from the camera by holding its Record button (real pointer input), one from photo
// files; Train; the live view then names the camera's class; a reload keeps the classes and
// the trained head; with the server gone a reload still starts from the service worker and
// classifies; at 390 px wide nothing overflows its card or scrolls sideways (screenshots in
// tests/e2e/artifacts/). No page error and no error shown to the user.
//
// Requests leaving the origin: Firefox's are seen on the wire (puppeteer's request events);
// WebDriver classic has no network events, so in WebKit the test reads the document's
// resource timing entries and the CSP violation events (the server's CSP is 'self', so a
// foreign request would be blocked and reported). Both engines are also checked that way.
//
// The same pixels (a BMP decoded by the test) give bit-identical logits in all three engines,
// each on the module its loader picks (Firefox: threads and relaxed SIMD; WebKit: plain SIMD,
// one thread; Chromium: threads and relaxed SIMD where the page is isolated).
//
// What an engine lacks is printed and asserted as what the page then does: no WebGPU
// adapter (the page runs the CPU path), no relaxed SIMD (the plain SIMD module), no cross-origin
// isolation (one thread).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, OVERFLOWS, launch } from './browser.mjs';
import { startWebKit, webkitMissing } from './webdriver.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const PHOTOS = path.resolve(ROOT, '../shared/data/photos');
const ARTIFACTS = path.join(ROOT, 'tests/e2e/artifacts');
const FIREFOX = process.env.FIREFOX_PATH || '/usr/bin/firefox-esr';
// The file-taught class: photos unlike either engine's synthetic camera picture.
const PHOTO_FILES = ['parrot.jpg', 'owl.jpg', 'cat.bmp', 'sunflower.bmp', 'hot_dog.jpg'];
const RECORDED = 4;
const LONG = 180_000;

let server;
let port;
let tmp;
const results = {};

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')), 'pkg/ is missing: npm test builds it first');
  assert.ok(fs.existsSync(PHOTOS), `shared photos not found at ${PHOTOS}`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-engines-'));
  let url;
  ({ server, url } = await startServer({ port: 0 }));
  port = Number(new URL(url).port);
});
after(async () => {
  if (server) server.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (Object.keys(results).length) {
    fs.mkdirSync(path.join(ROOT, 'tests/e2e/out'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'tests/e2e/out/engines.json'), JSON.stringify(results, null, 2));
  }
});

async function stopServer() {
  await new Promise((r) => { server.close(r); server.closeAllConnections(); });
}
async function restartServer() {
  if (!server.listening) ({ server } = await startServer({ port }));
}

// Polls `fn(arg)` in the page until it returns a truthy value (which is returned).
async function waitFor(s, fn, arg, what, timeout = LONG) {
  const until = Date.now() + timeout;
  let last;
  for (;;) {
    last = await s.evaluate(fn, arg);
    if (last) return last;
    if (Date.now() > until) {
      const state = await s.evaluate(() => ({ top: document.getElementById('predictions')?.dataset.top, error: document.getElementById('error')?.textContent, body: { ...document.body.dataset },
        badge: document.getElementById('backend')?.textContent, version: document.getElementById('version')?.textContent, controlled: Boolean(navigator.serviceWorker?.controller) })).catch((e) => String(e));
      assert.fail(`${what}: not within ${timeout / 1000} s (page: ${JSON.stringify(state)})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Records, in the page, what the test checks at the end of each step: uncaught errors,
// CSP violations and resources from other origins (resource timing).
const WATCH = () => {
  if (globalThis.__watch) return true;
  globalThis.__watch = { errors: [], csp: [] };
  addEventListener('error', (e) => __watch.errors.push(String(e.message || e)));
  addEventListener('unhandledrejection', (e) => __watch.errors.push(`unhandled rejection: ${e.reason && e.reason.message ? e.reason.message : e.reason}`));
  document.addEventListener('securitypolicyviolation', (e) => __watch.csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  return true;
};
const WATCHED = () => ({
  errors: globalThis.__watch ? __watch.errors : ['the watch was not installed'],
  csp: globalThis.__watch ? __watch.csp : [],
  foreign: performance.getEntriesByType('resource').map((e) => e.name).filter((n) => !n.startsWith(location.origin + '/') && !/^(data|blob):/.test(n)),
  shown: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
});

async function checkClean(s, step, foreign) {
  const w = await s.evaluate(WATCHED);
  assert.deepEqual(w.errors, [], `${step}: uncaught page errors`);
  assert.equal(w.shown, null, `${step}: the page shows an error`);
  assert.deepEqual(w.csp, [], `${step}: CSP violations`);
  assert.deepEqual([...w.foreign, ...foreign], [], `${step}: requests left the origin`);
}

async function ready(s, what) {
  await waitFor(s, () => document.body.dataset.ready === 'true', null, `${what}: the page is ready`);
  await s.evaluate(WATCH);
}

const topIs = (name) => [(n) => document.getElementById('predictions').dataset.top === n, name];

// Files for an <input type=file>, made in the page from bytes (what a file picker hands the
// page; no engine's driver opens its picker headless).
async function setFiles(s, selector, files) {
  const list = files.map((f) => ({ name: path.basename(f), b64: fs.readFileSync(f).toString('base64'), type: /\.jpe?g$/i.test(f) ? 'image/jpeg' : 'image/bmp' }));
  await s.evaluate(({ selector, list }) => {
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const input = document.querySelector(selector);
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
    return true;
  }, { selector, list });
}

async function addClass(s, name) {
  await s.type('#new-class', name);
  await s.click('#add-class button[type="submit"]');
  await waitFor(s, (n) => Boolean(document.querySelector(`#classes li[data-name="${n}"]`)), name, `class ${name} added`, 10_000);
}

const countOf = (s, name) => s.evaluate((n) => Number(document.querySelector(`#classes li[data-name="${n}"]`)?.dataset.count), name);

// The page at a phone's width: the window made 390x844 (Firefox's viewport; WebKit's
// MiniBrowser window, full screen, since its toolbar keeps a normal window wider than that;
// the app's CSP, frame-ancestors 'none', keeps it out of an iframe). Resolves to the width.
async function narrow(s) {
  if ((await s.evaluate(() => innerWidth)) > 390) {
    await s.setWindowSize(390, 844);
    await new Promise((res) => setTimeout(res, 500));
  }
  const width = await s.evaluate(() => innerWidth);
  assert.ok(width <= 390, `the window could not be made 390 px wide (${width} px)`);
  return width;
}

// A 24-bit uncompressed BMP's pixels as RGBA, decoded here (not by the browser: JPEG and
// colour-managed decoding differ between engines, and the comparison below is bit for bit).
function bmpRgba(file) {
  const b = fs.readFileSync(file);
  const [offset, width, h, bpp, compression] = [b.readUInt32LE(10), b.readInt32LE(18), b.readInt32LE(22), b.readUInt16LE(28), b.readUInt32LE(30)];
  assert.ok(bpp === 24 && compression === 0, `${file}: not a 24-bit uncompressed BMP`);
  const height = Math.abs(h);
  const stride = Math.ceil((width * 3) / 4) * 4;
  const rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    const row = offset + (h > 0 ? height - 1 - y : y) * stride; // bottom-up unless the height is negative
    for (let x = 0; x < width; x++) {
      const i = 4 * (y * width + x);
      [rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]] = [b[row + 3 * x + 2], b[row + 3 * x + 1], b[row + 3 * x], 255];
    }
  }
  return { width, height, b64: rgba.toString('base64') };
}
const SAME_INPUT = path.join(PHOTOS, 'sunflower.bmp');

// In the page: the app's own engine worker (workers/engine.js, with the module its loader picks
// for this browser: threaded, relaxed SIMD or plain) on the CPU, the built-in model's logits
// and embedding for the given RGBA pixels, as the base64 of their f32 bytes.
const ENGINE_OUTPUT = async ({ width, height, b64 }) => {
  const { WorkerClient } = await import('/lib/protocol.js');
  const worker = new WorkerClient('/workers/engine.js', 'engine');
  try {
    const model = new Uint8Array(await (await fetch('/models/efficientnet_lite0.int8.etm')).arrayBuffer());
    const b = await worker.call('create', { model, backend: 'cpu' });
    const rgba = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const r = await worker.call('classify', { rgba, width, height, k: 1, include: ['logits', 'embedding'] });
    const bytes = (v) => { const u = new Uint8Array(Float32Array.from(v).buffer); let s = ''; for (const x of u) s += String.fromCharCode(x); return btoa(s); };
    return { variant: b.cpu.variant, threads: b.cpu.threads, top: r.top[0].label, logits: bytes(r.logits), embedding: bytes(r.embedding) };
  } finally {
    worker.terminate();
  }
};

async function journey(engine, s, { foreign = [], offline = true }) {
  const url = `http://127.0.0.1:${port}/`;
  const r = (results[engine] = { engine });
  // The same pixels through the engine worker, in a document of the origin that is not the
  // app (its SVG icon), so that nothing else runs beside it.
  await s.goto(`${url}icon.svg`);
  r.sameInput = await s.evaluate(ENGINE_OUTPUT, bmpRgba(SAME_INPUT));
  const t0 = Date.now();
  await s.goto(url);
  await ready(s, 'first visit');
  // 1. The camera's picture classified by the built-in model, on whatever the engine offers.
  await waitFor(s, () => Boolean(document.getElementById('predictions').dataset.top), null, 'the live view classifies the camera');
  r.firstLabelS = (Date.now() - t0) / 1000;
  Object.assign(r, await s.evaluate(() => {
    const b = document.getElementById('backend');
    return { backend: b.dataset.backend, cpuVariant: b.dataset.cpuVariant, threads: Number(b.dataset.threads), badge: b.textContent, reason: b.title,
      webgpuApi: 'gpu' in navigator, crossOriginIsolated: globalThis.crossOriginIsolated === true, userAgent: navigator.userAgent };
  }));
  // The frame rate shows once a second of frames has passed, and never the start-up time
  // as if it were frame time (it read "0.1 fps" for the first second).
  r.firstFps = await waitFor(s, () => { const m = /^([\d.]+) fps$/.exec(document.getElementById('fps').textContent); return m && Number(m[1]); }, null, 'the fps counter', 30_000);
  assert.ok(r.firstFps >= 1, `the first fps reading is ${r.firstFps}`);
  await s.screenshot(path.join(ARTIFACTS, `${engine}-1-live.png`));
  // 2. Two classes: one recorded from the camera (the Record button held), one from files.
  await addClass(s, 'camera');
  await addClass(s, 'photos');
  await s.press('#classes li[data-name="camera"] .record');
  try {
    await waitFor(s, (n) => Number(document.querySelector('#classes li[data-name="camera"]').dataset.count) >= n, RECORDED, 'recording from the camera');
  } finally {
    await s.release();
  }
  await waitFor(s, () => !document.querySelector('.record[aria-pressed="true"]'), null, 'recording stops when the button is released', 10_000);
  await setFiles(s, '#classes li[data-name="photos"] input[type="file"]', PHOTO_FILES.map((f) => path.join(PHOTOS, f)));
  await waitFor(s, (n) => document.querySelector('#classes li[data-name="photos"]').dataset.count === String(n), PHOTO_FILES.length, 'photo files added');
  r.frameMsMedian = await s.evaluate(() => { const v = [...edgetuneStats.frameMs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; });
  // 3. Train; the live view shows the user's classes and names the camera's.
  await s.click('#train');
  await waitFor(s, () => document.body.dataset.training === 'done' || document.body.dataset.training === 'error', null, 'training ends');
  assert.equal(await s.evaluate(() => document.body.dataset.training), 'done', 'training succeeds');
  await waitFor(s, ...topIs('camera'), 'after training the live view names the camera\'s class');
  const shown = await s.evaluate(() => [...document.querySelectorAll('#predictions .label')].map((e) => e.textContent).sort());
  assert.deepEqual(shown, ['camera', 'photos'], 'the live view lists both classes');
  await s.screenshot(path.join(ARTIFACTS, `${engine}-2-trained.png`));
  await checkClean(s, 'teach and train', foreign);
  // 4. A reload keeps both classes, their samples and the trained head.
  const counts = { camera: await countOf(s, 'camera'), photos: await countOf(s, 'photos') };
  assert.ok(counts.camera >= RECORDED, `${counts.camera} camera samples`);
  await s.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await s.reload();
  await ready(s, 'reload');
  assert.deepEqual({ camera: await countOf(s, 'camera'), photos: await countOf(s, 'photos') }, counts, 'the samples survive a reload');
  await waitFor(s, ...topIs('camera'), 'after a reload the trained head names the camera\'s class');
  await checkClean(s, 'reload', foreign);
  // 5. The server gone: the service worker starts the app, the model and the head.
  if (offline) {
    await stopServer();
    try {
      await s.reload();
      await ready(s, 'offline reload');
      r.offlineBadge = await s.evaluate(() => `${document.getElementById('backend').textContent}: ${document.getElementById('backend').title}`);
      await waitFor(s, ...topIs('camera'), 'offline the trained head names the camera\'s class');
      await s.screenshot(path.join(ARTIFACTS, `${engine}-3-offline.png`));
      await checkClean(s, 'offline reload', foreign);
    } finally {
      await restartServer();
    }
    r.offline = true;
  }
  // 6. A phone's width: nothing overflows (every view is on one page: live, teach, models).
  r.narrowWidth = await narrow(s);
  await s.screenshot(path.join(ARTIFACTS, `${engine}-4-${r.narrowWidth}px.png`));
  assert.deepEqual(await s.evaluate(OVERFLOWS), [], `at ${r.narrowWidth} px wide`);
  console.log(`# ${engine}: first label ${r.firstLabelS.toFixed(1)} s after opening, frame ${r.frameMsMedian.toFixed(0)} ms median on ${r.backend} (${r.badge}; module ${r.cpuVariant}, ${r.threads} thread${r.threads > 1 ? 's' : ''}); WebGPU API ${r.webgpuApi ? 'present' : 'absent'}, cross-origin isolated ${r.crossOriginIsolated}; ${r.reason}`);
  return r;
}

test('Firefox ESR: live view, teach two classes, train, reload, offline, 390 px', { timeout: 900_000 }, async () => {
  assert.ok(fs.existsSync(FIREFOX), `Firefox not found at ${FIREFOX}: apt-get install firefox-esr (npm test does this)`);
  const { default: puppeteer } = await import('puppeteer-core');
  const profile = fs.mkdtempSync(path.join(tmp, 'firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    env: { ...process.env, HOME: profile, XDG_CONFIG_HOME: path.join(profile, 'xdg'), XDG_CACHE_HOME: path.join(profile, 'xdg-cache') },
    // The fake camera (a synthetic picture) without a permission prompt.
    extraPrefsFirefox: { 'media.navigator.streams.fake': true, 'media.navigator.permission.disabled': true },
  });
  const foreign = [];
  try {
    const page = (await browser.pages())[0] || (await browser.newPage());
    await page.setViewport({ width: 1280, height: 900 });
    const origin = `http://127.0.0.1:${port}`;
    page.on('request', (q) => { const u = q.url(); if (!u.startsWith(origin + '/') && !/^(data|blob):/.test(u)) foreign.push(u); });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    if (process.env.E2E_DEBUG) page.on('console', (m) => console.log(`[firefox] ${m.type()}: ${m.text()}`));
    const s = {
      goto: (u) => page.goto(u),
      reload: () => page.reload(),
      evaluate: (fn, arg = null) => page.evaluate(fn, arg),
      click: (sel) => page.click(sel),
      type: async (sel, text) => { await page.$eval(sel, (e) => { e.value = ''; }); await page.type(sel, text); },
      press: async (sel) => {
        const h = await page.$(sel);
        await h.scrollIntoView();
        const box = await h.boundingBox();
        await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
        await page.mouse.down();
      },
      release: () => page.mouse.up(),
      setWindowSize: (width, height) => page.setViewport({ width, height }),
      screenshot: (file) => page.screenshot({ path: file, fullPage: true }),
    };
    const r = await journey('firefox', s, { foreign });
    assert.deepEqual(pageErrors, [], 'no uncaught page errors');
    r.version = await browser.version();
    // Firefox ESR 153 exposes navigator.gpu but gives headless Linux no adapter: the CPU path.
    assert.equal(r.backend, 'cpu', `Firefox runs ${r.backend}: ${r.reason}`);
    // Firefox ESR 153 validates relaxed SIMD and, cross-origin isolated, runs threads.
    assert.equal(r.cpuVariant, 'threads-relaxed', r.reason);
  } finally {
    await browser.close();
  }
});

test('WebKitGTK (Safari\'s engine): live view, teach two classes, train, reload, offline, 390 px', { timeout: 900_000 }, async () => {
  const missing = webkitMissing();
  assert.equal(missing, null, missing);
  const profile = fs.mkdtempSync(path.join(tmp, 'webkit-'));
  // Full screen: without its toolbar MiniBrowser's window can be made 390 px wide (step 6).
  const s = await startWebKit({
    args: ['--full-screen', '--enable-media-stream=true', '--enable-mock-capture-devices=true'],
    env: { HOME: profile, XDG_CONFIG_HOME: path.join(profile, 'config'), XDG_CACHE_HOME: path.join(profile, 'cache'), XDG_DATA_HOME: path.join(profile, 'data') },
  });
  try {
    const r = await journey('webkit', s, {});
    r.version = `WebKitGTK ${s.capabilities.browserVersion}`;
    // WebKitGTK 2.50 has no navigator.gpu: the page runs the CPU path.
    assert.equal(r.backend, 'cpu', `WebKit runs ${r.backend}: ${r.reason}`);
    assert.equal(r.webgpuApi, false, 'WebKitGTK exposes no WebGPU (if it does now, the test should ask for it)');
    // No relaxed SIMD and no SharedArrayBuffer (although cross-origin isolated): one thread on
    // the plain SIMD module, and the badge says why.
    assert.equal(r.cpuVariant, 'single', r.reason);
    assert.match(r.reason, /1 thread \(this browser has no SharedArrayBuffer, so no shared memory\), SIMD$/);
  } finally {
    await s.close();
  }
});

test('the same pixels give the same logits, bit for bit, in Chromium, Firefox and WebKit', { timeout: 300_000 }, async () => {
  assert.ok(results.firefox?.sameInput && results.webkit?.sameInput, 'the Firefox and WebKit journeys ran first');
  const { browser, cleanup } = await launch({ webgpu: false });
  let chromium;
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/icon.svg`);
    chromium = await page.evaluate(ENGINE_OUTPUT, bmpRgba(SAME_INPUT));
  } finally {
    await cleanup();
  }
  const all = { chromium, firefox: results.firefox.sameInput, webkit: results.webkit.sameInput };
  console.log(`# ${path.basename(SAME_INPUT)}: ${Object.entries(all).map(([k, v]) => `${k} ${v.variant} (${v.threads} thread${v.threads > 1 ? 's' : ''}) -> ${v.top}`).join('; ')}`);
  for (const e of ['firefox', 'webkit']) {
    assert.equal(all[e].logits, chromium.logits, `${e}'s logits differ from Chromium's`);
    assert.equal(all[e].embedding, chromium.embedding, `${e}'s embedding differs from Chromium's`);
  }
});
