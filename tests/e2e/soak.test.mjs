// Soak: the app as a person leaves it running. Headless Chromium (CPU path), a fake camera
// at 30 fps, the shared MobileNet v1 0.25/128 TFLite opened in the page as the backbone (so a
// frame costs milliseconds, not the built-in model's ~300 ms, and 5,000 frames fit in CI),
// two classes taught from shared photos, then 5,000 classified frames with 20 train cycles
// spread through them. Memory is measured after a warm-up and at the end: the page's JS heap
// after a forced GC (CDP Runtime.getHeapUsage) and the wasm linear memory of the engine and
// training workers. The test fails on growth above 10% over the warm-up figure; the figures
// go to tests/e2e/out/soak.json. SOAK_FRAMES / SOAK_CYCLES shrink it for a quick local run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launchPersistent, openSmallModel, addClassWithFiles, OUT_DIR, appFixture } from './browser.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const SHARED = path.resolve(ROOT, '../shared');
const PHOTOS = path.join(SHARED, 'data/photos');
const FRAMES = Number(process.env.SOAK_FRAMES || 5000);
const CYCLES = Number(process.env.SOAK_CYCLES || 20);
const WARMUP_FRAMES = 300;
const GROWTH_LIMIT = 0.10;

let fx;
let url;
let tmp;
let clip;

before(async () => {
  fx = await appFixture('soak', path.join(PHOTOS, 'parrot.jpg'), { fps: 30 });
  ({ url, tmp, clip } = fx);
});
after(() => fx && fx.close());

const frames = (page) => page.evaluate(() => globalThis.edgetuneStats.frames);

async function untilFrames(page, n) {
  await page.waitForFunction((n) => globalThis.edgetuneStats.frames >= n, n, { timeout: 600_000, polling: 500 });
}

async function measure(page, cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const heap = await cdp.send('Runtime.getHeapUsage');
  const m = await page.evaluate(() => globalThis.edgetuneDiagnostics.memory());
  return { frames: await frames(page), jsHeapBytes: heap.usedSize, engineWasmBytes: m.engineWasmBytes, trainerWasmBytes: m.trainerWasmBytes };
}

test(`soak: ${FRAMES} classified frames and ${CYCLES} train cycles without unbounded memory growth`, { timeout: 1_800_000 }, async () => {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const s = await launchPersistent(profile, { webgpu: false, camera: clip });
  const errors = [];
  const foreign = [];
  const origin = new URL(url).origin;
  s.context.on('request', (r) => { const u = r.url(); if (!u.startsWith(origin + '/') && !/^(data|blob):/.test(u)) foreign.push(u); });
  try {
    const page = s.context.pages()[0] || (await s.context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => d.accept());
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    await openSmallModel(page);
    await addClassWithFiles(page, 'bird', ['parrot.jpg', 'owl.jpg', 'bird.bmp'].map((f) => path.join(PHOTOS, f)));
    await addClassWithFiles(page, 'other', ['sunflower.bmp', 'hot_dog.jpg', 'cat.bmp'].map((f) => path.join(PHOTOS, f)));
    await page.click('#advanced summary');
    await page.fill('#opt-epochs', '30');
    const cdp = await page.context().newCDPSession(page);
    const t0 = Date.now();
    await untilFrames(page, WARMUP_FRAMES);
    const start = await measure(page, cdp);
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      await untilFrames(page, WARMUP_FRAMES + Math.round(((FRAMES - WARMUP_FRAMES) * (cycle - 1)) / CYCLES));
      await page.click('#train');
      await page.waitForFunction((n) => document.querySelectorAll('#versions li button.danger').length === n && document.body.dataset.training === 'done', cycle, { timeout: 120_000 });
    }
    await untilFrames(page, FRAMES);
    const end = await measure(page, cdp);
    const seconds = (Date.now() - t0) / 1000;
    const frameMs = await page.evaluate(() => globalThis.edgetuneStats.frameMs.slice().sort((a, b) => a - b));
    // The clip shows the parrot: the trained head names its class.
    await page.waitForFunction(() => document.getElementById('predictions').dataset.top === 'bird', null, { timeout: 30_000 });
    const growth = Object.fromEntries(['jsHeapBytes', 'engineWasmBytes', 'trainerWasmBytes'].map((k) => [k, end[k] / start[k] - 1]));
    const report = {
      frames: end.frames,
      trainCycles: CYCLES,
      seconds,
      framesPerSecond: (end.frames - WARMUP_FRAMES) / seconds,
      inferenceMsMedian: frameMs[Math.floor(frameMs.length / 2)],
      afterWarmup: start,
      end,
      growth,
    };
    fs.mkdirSync(OUT_DIR, { recursive: true });
    fs.writeFileSync(path.join(OUT_DIR, 'soak.json'), JSON.stringify(report, null, 2));
    const mib = (b) => (b / 1048576).toFixed(2);
    console.log(`soak: ${end.frames} frames and ${CYCLES} train cycles in ${seconds.toFixed(0)} s (${report.framesPerSecond.toFixed(1)} fps, inference ${report.inferenceMsMedian.toFixed(1)} ms median)`);
    for (const k of Object.keys(growth)) console.log(`  ${k}: ${mib(start[k])} MiB after ${start.frames} frames -> ${mib(end[k])} MiB at the end (${(100 * growth[k]).toFixed(1)}%)`);
    for (const [k, g] of Object.entries(growth)) assert.ok(g <= GROWTH_LIMIT, `${k} grew ${(100 * g).toFixed(1)}% after warm-up (limit ${100 * GROWTH_LIMIT}%)`);
    assert.deepEqual(errors, [], 'no uncaught page errors');
    assert.deepEqual(foreign, [], 'no request may leave the page origin');
  } finally {
    await s.close();
  }
});
