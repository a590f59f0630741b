// Shared helpers for the browser tests: Debian's Chromium driven by playwright-core (never
// a downloaded browser), the project's own static server on a free loopback port, and a
// guard that records every request leaving the page's origin.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../scripts/serve.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const OUT_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), 'out');

// Flags checked on this machine kind (TOOLCHAIN.md): no background traffic, fresh profile.
export const BASE_FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--disable-dev-shm-usage',
];

export async function launch({ webgpu = true, extraArgs = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with apt-get install chromium (npm test does this)`);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-chromium-'));
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: path.join(tmp, 'config'),
    XDG_CACHE_HOME: path.join(tmp, 'cache'),
    MESA_SHADER_CACHE_DIR: path.join(tmp, 'mesa'),
  };
  const args = [...BASE_FLAGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : []), ...extraArgs];
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, env });
  return { browser, cleanup: async () => { await browser.close(); fs.rmSync(tmp, { recursive: true, force: true }); } };
}

/**
 * A persistent profile in `profileDir` (IndexedDB, service worker and caches survive across
 * launches), optionally with a fake camera streaming the y4m file `camera` (null: no camera
 * device at all), and phone emulation (390x844, touch, mobile viewport).
 * Resolves to { context, close }.
 */
export async function launchPersistent(profileDir, { webgpu = true, camera = null, phone = false } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with apt-get install chromium (npm test does this)`);
  }
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: path.join(profileDir, 'xdg-config'),
    XDG_CACHE_HOME: path.join(profileDir, 'xdg-cache'),
    MESA_SHADER_CACHE_DIR: path.join(profileDir, 'mesa'),
  };
  const args = [...BASE_FLAGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])];
  if (camera) args.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${camera}`);
  const device = phone ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true } : { viewport: { width: 1280, height: 900 } };
  const context = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, headless: true, args, env, ...device });
  return { context, close: () => context.close() };
}

/** Opens `url` in a new page, recording console errors and requests to other origins. */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  const origin = new URL(url).origin;
  const foreign = [];
  const errors = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && !u.startsWith('data:') && !u.startsWith('blob:')) foreign.push(u);
  });
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  return { page, foreign, errors };
}

export { startServer };
