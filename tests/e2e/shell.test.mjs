// The page shell in real headless Chromium: the wasm engine loads, reports the version in
// Cargo.toml, finds SwiftShader's WebGPU adapter when WebGPU is enabled and falls back to
// the CPU when it is not; no request leaves the origin and nothing is logged as an error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

async function loadShell(webgpu) {
  const { browser, cleanup } = await launch({ webgpu });
  try {
    const { page, foreign, errors } = await openPage(browser, url);
    await page.waitForSelector('#backend[data-state="done"]', { timeout: 60_000 });
    const result = {
      version: await page.textContent('#version'),
      backend: await page.getAttribute('#backend', 'data-backend'),
      label: await page.textContent('#backend'),
      detail: await page.textContent('#backend-detail'),
      errorHidden: await page.isHidden('#error'),
      foreign,
      errors,
    };
    await page.screenshot({ path: path.join(OUT_DIR, `shell-${webgpu ? 'webgpu' : 'cpu'}.png`) });
    return result;
  } finally {
    await cleanup();
  }
}

test('the engine loads and finds the WebGPU adapter', async () => {
  const r = await loadShell(true);
  assert.equal(r.version, `edgetune ${crateVersion}`);
  assert.equal(r.backend, 'webgpu', `expected WebGPU (SwiftShader), got: ${r.label} / ${r.detail}`);
  assert.match(r.detail, /dot4I8Packed: (yes|no)/);
  assert.ok(r.errorHidden);
  assert.deepEqual(r.foreign, [], 'no request may leave the page origin');
  assert.deepEqual(r.errors, []);
});

test('without WebGPU the engine falls back to the CPU and says why', async () => {
  const r = await loadShell(false);
  assert.equal(r.version, `edgetune ${crateVersion}`);
  assert.equal(r.backend, 'cpu');
  assert.match(r.detail, /CPU/);
  assert.deepEqual(r.foreign, []);
  assert.deepEqual(r.errors, []);
});
