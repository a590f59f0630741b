// The four CPU builds of the engine in Chromium, on the app's own cross-origin isolated
// server: pkg/ (one thread, SIMD), pkg/relaxed/ (relaxed SIMD's int8 dot product),
// pkg/threads/ and pkg/threads-relaxed/ (shared memory + atomics, 2 threads). The built-in
// Lite0 int8 model and the shared uint8 MobileNet V1 TFLite (imported by the CLI: TFLite's
// fixed-point arithmetic) give bit-identical embeddings and scores in all four, and the app's
// engine worker runs the fastest one and says so in its badge.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launch, openPage, SMALL_MODEL } from './browser.mjs';
import { startServer } from '../../scripts/serve.mjs';
import { cliPath } from '../../scripts/cargo-paths.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CLI = cliPath();

let server;
let url;
let tmp;
before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/threads/edgetune_bg.wasm')), 'pkg/threads/ is built by scripts/build-wasm.sh');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-threads-'));
  execFileSync(CLI, ['import', SMALL_MODEL, path.join(tmp, 'v1.etm')], { stdio: 'ignore' });
  ({ server, url } = await startServer({ port: 0 }));
});
after(() => {
  server?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('plain and relaxed SIMD, 1 and 2 threads give bit-identical embeddings and scores', { timeout: 300_000 }, async () => {
  const { browser, cleanup } = await launch({ webgpu: false });
  try {
    const { page, foreign, errors } = await openPage(browser, `${url}?backend=cpu`);
    // The imported model goes in as an argument (the app's service worker would answer a
    // routed URL before Playwright sees it).
    const v1 = fs.readFileSync(path.join(tmp, 'v1.etm')).toString('base64');
    const out = await page.evaluate(async (v1) => {
      const { loadEngine } = await import('/lib/engine-loader.js');
      const variants = [
        await loadEngine({ threads: 1, simd: 'plain' }),
        await loadEngine({ threads: 1 }),
        await loadEngine({ threads: 2, simd: 'plain' }),
        await loadEngine({ threads: 2 }),
      ];
      const frames = [];
      let s = 12345;
      for (const side of [224, 128, 97]) {
        const rgba = new Uint8Array(side * side * 4);
        for (let i = 0; i < rgba.length; i++) { s = (s * 1103515245 + 12345) >>> 0; rgba[i] = s >>> 24; }
        frames.push({ rgba, side });
      }
      const results = {};
      const models = {
        lite0: new Uint8Array(await (await fetch('/models/efficientnet_lite0.int8.etm')).arrayBuffer()),
        'mobilenet_v1_0.25_128_quant': Uint8Array.from(atob(v1), (ch) => ch.charCodeAt(0)),
      };
      for (const [model, bytes] of Object.entries(models)) {
        const run = async (m) => {
          const e = await m.module.Engine.create(bytes, 'cpu');
          const r = [];
          for (const { rgba, side } of frames) {
            r.push(Array.from(await e.embed(rgba, side, side)));
            r.push((await e.classify(rgba, side, side, 1000)).top.map((t) => [t.index, t.probability]));
          }
          e.free();
          return r;
        };
        results[model] = [];
        for (const v of variants) results[model].push(await run(v));
      }
      return { isolated: crossOriginIsolated, variants: variants.map((v) => v.variant), threads: variants.map((v) => v.module.threads()), results };
    }, v1);
    assert.equal(out.isolated, true, 'the app server sends COOP and COEP');
    // Debian's Chromium validates relaxed SIMD, so the default picks the relaxed builds.
    assert.deepEqual(out.variants, ['single', 'relaxed', 'threads', 'threads-relaxed']);
    assert.deepEqual(out.threads, [1, 1, 2, 2]);
    for (const [model, [single, ...others]] of Object.entries(out.results)) {
      assert.ok(single[0].length > 100 && single[1].length >= 1000, `${model}: an embedding and scores`);
      for (const [i, other] of others.entries()) {
        assert.deepEqual(other, single, `${model}: ${out.variants[i + 1]} equals single bit for bit`);
      }
    }
    assert.deepEqual(foreign, []);
    assert.deepEqual(errors, []);
  } finally {
    await cleanup();
  }
});

test("the app's engine worker runs threaded with relaxed SIMD and says so", { timeout: 300_000 }, async () => {
  const { browser, cleanup } = await launch({ webgpu: false });
  try {
    const { page, foreign, errors } = await openPage(browser, `${url}?backend=cpu&threads=2`);
    await page.waitForSelector('#backend[data-state="done"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('#backend', 'data-threads'), '2');
    assert.equal(await page.getAttribute('#backend', 'data-cpu-variant'), 'threads-relaxed');
    assert.match(await page.textContent('#backend'), /CPU · 2 threads/);
    assert.deepEqual(foreign, []);
    assert.deepEqual(errors, []);
  } finally {
    await cleanup();
  }
});
