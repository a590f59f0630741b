// The page in real headless Chromium, without a camera: the wasm engine loads, reports the
// version in Cargo.toml, with WebGPU enabled keeps the faster of SwiftShader's adapter and
// the CPU (and runs on the adapter when asked to), runs on the CPU without WebGPU (the
// badge's title says why), the missing camera is explained, and
// probeBackend() reports the adapter; no request leaves the origin, nothing is logged as an
// error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { launch, openPage, startServer, OUT_DIR } from './browser.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const crateVersion = fs.readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8').match(/^version = "([^"]+)"/m)[1];

let server;
let url;
before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')), 'pkg/ must be built first (scripts/build-wasm.sh)');
  ({ server, url } = await startServer({ port: 0 }));
  fs.mkdirSync(OUT_DIR, { recursive: true });
});
after(() => server && server.close());

async function loadShell(webgpu, query = '') {
  const { browser, cleanup } = await launch({ webgpu });
  try {
    const { page, foreign, errors } = await openPage(browser, url + query);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
    // Under auto the CPU answers first and WebGPU is tested behind it: wait for the verdict.
    const probing = (await page.getAttribute('#backend', 'data-probe')) === 'running';
    await page.waitForSelector('#backend[data-probe="done"]', { timeout: 120_000 });
    const result = {
      probed: probing,
      version: await page.textContent('#version'),
      backend: await page.getAttribute('#backend', 'data-backend'),
      label: await page.textContent('#backend'),
      detail: await page.getAttribute('#backend', 'title'),
      camera: await page.textContent('#camera-message'),
      errorHidden: await page.isHidden('#error'),
      probe: await page.evaluate(async () => (await import('/pkg/edgetune.js')).probeBackend()),
      simd: await page.evaluate(async () => (await import('/wasm-support.js')).wasmSimdSupported()),
      foreign,
      errors,
    };
    await page.screenshot({ path: path.join(OUT_DIR, `shell-${webgpu ? 'webgpu' : 'cpu'}${query ? '-forced' : ''}.png`) });
    return result;
  } finally {
    await cleanup();
  }
}

test('with WebGPU, auto starts on the CPU, times the adapter against it behind the first frames and keeps the faster; ?backend=gpu forces WebGPU', async () => {
  const r = await loadShell(true);
  assert.equal(r.probed, true, 'with a WebGPU API, auto starts on the CPU and tests the GPU behind it');
  assert.equal(r.version, `edgetune ${crateVersion}`);
  // SwiftShader is a CPU emulation of WebGPU: the wasm SIMD path beats it, and the badge says
  // so with both times. A real GPU that wins would be kept instead.
  if (r.backend === 'cpu') {
    assert.match(r.detail, /CPU was faster in the self-test \([\d.]+ ms against [\d.]+ ms for the GPU on .*dot4I8Packed: (yes|no)/);
  } else {
    assert.equal(r.backend, 'gpu', `${r.label} / ${r.detail}`);
    assert.match(r.detail, /self-test.*faster than the CPU/);
  }
  assert.equal(r.probe.backend, 'webgpu');
  assert.equal(r.simd, true, 'the SIMD probe module validates in Chromium');
  assert.match(r.camera, /camera/i);
  assert.ok(r.errorHidden);
  assert.deepEqual(r.foreign, [], 'no request may leave the page origin');
  assert.deepEqual(r.errors, []);
  const forced = await loadShell(true, '?backend=gpu');
  assert.equal(forced.probed, false, 'a forced backend is not probed');
  assert.equal(forced.backend, 'gpu', `expected WebGPU (SwiftShader), got: ${forced.label} / ${forced.detail}`);
  assert.match(forced.label, /WebGPU/);
  assert.match(forced.detail, /dot4I8Packed: (yes|no).*self-test/);
  assert.deepEqual(forced.foreign, []);
  assert.deepEqual(forced.errors, []);
});

test('without WebGPU the engine falls back to the CPU and says why', async () => {
  const r = await loadShell(false);
  assert.equal(r.version, `edgetune ${crateVersion}`);
  assert.equal(r.backend, 'cpu');
  // The app's server is cross-origin isolated, so the CPU path is threaded on a multi-core
  // machine: min(cores, 4) threads (lib/engine-loader.js).
  const cores = Math.min(os.cpus().length, 4);
  assert.equal(r.label, cores > 1 ? `CPU · ${cores} threads` : 'CPU');
  assert.match(r.detail, /CPU kernels: \d+ thread/);
  assert.match(r.detail, /no usable GPU/);
  assert.equal(r.probe.backend, 'cpu');
  assert.deepEqual(r.foreign, []);
  assert.deepEqual(r.errors, []);
});
