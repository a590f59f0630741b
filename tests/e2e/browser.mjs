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
 * device at all; with `denyCamera` the camera exists but the permission prompt is refused,
 * as when a person says no), and phone emulation (390x844, touch, mobile viewport).
 * Resolves to { context, close }.
 */
export async function launchPersistent(profileDir, { webgpu = true, camera = null, phone = false, denyCamera = false } = {}) {
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
  if (camera && denyCamera) args.push('--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${camera}`, '--deny-permission-prompts');
  else if (camera) args.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${camera}`);
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

// RGBA -> y4m, 4:2:0, BT.601 full range (C420jpeg), `frames` identical frames.
function y4m(rgba, w, h, frames, fps) {
  const Y = Buffer.alloc(w * h);
  const U = Buffer.alloc((w / 2) * (h / 2));
  const V = Buffer.alloc((w / 2) * (h / 2));
  const px = (x, y) => { const i = 4 * (y * w + x); return [rgba[i], rgba[i + 1], rgba[i + 2]]; };
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = px(x, y);
    Y[y * w + x] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  for (let y = 0; y < h / 2; y++) for (let x = 0; x < w / 2; x++) {
    let r = 0, g = 0, b = 0;
    for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) { const p = px(2 * x + dx, 2 * y + dy); r += p[0] / 4; g += p[1] / 4; b += p[2] / 4; }
    U[y * (w / 2) + x] = Math.max(0, Math.min(255, Math.round(128 - 0.168736 * r - 0.331264 * g + 0.5 * b)));
    V[y * (w / 2) + x] = Math.max(0, Math.min(255, Math.round(128 + 0.5 * r - 0.418688 * g - 0.081312 * b)));
  }
  const parts = [Buffer.from(`YUV4MPEG2 W${w} H${h} F${fps}:1 Ip A1:1 C420jpeg\n`)];
  for (let f = 0; f < frames; f++) parts.push(Buffer.from('FRAME\n'), Y, U, V);
  return Buffer.concat(parts);
}

/**
 * Writes `out` as a y4m clip of the photo at `photo` (decoded by Chromium, scaled to cover
 * width x height, centred): `frames` identical frames at `fps`. Chromium's fake camera
 * streams such a file in a loop at its frame rate.
 */
export async function writeClip(photo, out, { width, height, frames = 2, fps = 10 }) {
  const { browser, cleanup } = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    const b64 = fs.readFileSync(photo).toString('base64');
    const rgba = await page.evaluate(async ({ b64, w, h }) => {
      const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bmp = await createImageBitmap(new Blob([raw]));
      const c = new OffscreenCanvas(w, h);
      const g = c.getContext('2d');
      const s = Math.max(w / bmp.width, h / bmp.height); // cover, centred
      g.drawImage(bmp, (w - bmp.width * s) / 2, (h - bmp.height * s) / 2, bmp.width * s, bmp.height * s);
      const d = g.getImageData(0, 0, w, h).data;
      let out = '';
      for (let i = 0; i < d.length; i += 0x8000) out += String.fromCharCode(...d.subarray(i, i + 0x8000));
      return btoa(out);
    }, { b64, w: width, h: height });
    fs.writeFileSync(out, y4m(Buffer.from(rgba, 'base64'), width, height, frames, fps));
  } finally {
    await cleanup();
  }
}

// The shared MobileNet v1 0.25/128 TFLite and its labels: the small backbone the soak and
// reliability tests open in the page (a frame costs milliseconds on the CPU path).
export const SHARED = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../shared');
export const SMALL_MODEL = path.join(SHARED, 'models/mobilenet_v1_0.25_128_quant.tflite');
export const SMALL_MODEL_LABELS = path.join(SHARED, 'data/photos/imagenet_labels.txt');

/**
 * What the app tests share: the built engine and the small shared model present, the app's
 * server on a free port, a temp folder and a fake-camera clip of `photo` (320x240 at `fps`).
 * Resolves to { url, tmp, clip, close }.
 */
export async function appFixture(name, photo, { fps = 10 } = {}) {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  if (!fs.existsSync(path.join(root, 'pkg/edgetune_bg.wasm'))) throw new Error('pkg/ must be built first (npm test does)');
  if (!fs.existsSync(SMALL_MODEL)) throw new Error(`the shared TFLite model is missing at ${SMALL_MODEL} (../shared beside the repository)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `edgetune-${name}-`));
  const { server, url } = await startServer({ port: 0 });
  const clip = path.join(tmp, 'camera.y4m');
  await writeClip(photo, clip, { width: 320, height: 240, frames: 2, fps });
  return { url, tmp, clip, close: () => { server.close(); fs.rmSync(tmp, { recursive: true, force: true }); } };
}

/** Opens the small shared model (with its labels) in the app and waits for the switch. */
export async function openSmallModel(page) {
  await page.setInputFiles('#open-model', [SMALL_MODEL, SMALL_MODEL_LABELS]);
  await page.waitForFunction(() => (document.body.dataset.backbone || '').startsWith('etm-') && !document.body.dataset.switching, null, { timeout: 120_000 });
}

/** Adds the class `name` in the app and gives it the image files at `files` (paths). */
export async function addClassWithFiles(page, name, files) {
  await page.fill('#new-class', name);
  await page.click('#add-class button[type="submit"]');
  await page.waitForSelector(`#classes li[data-name="${name}"]`);
  await page.setInputFiles(`#classes li[data-name="${name}"] input[type="file"]`, files);
  await page.waitForFunction(({ name, n }) => document.querySelector(`#classes li[data-name="${name}"]`).dataset.count === String(n), { name, n: files.length }, { timeout: 120_000 });
}

/** SIGKILLs every Chromium process of the profile in `profileDir` (a crash, not a close). */
export function killBrowser(profileDir) {
  let killed = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(`--user-data-dir=${profileDir}`)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        killed++;
      } catch { /* already gone */ }
    }
  }
  return killed;
}

// Everything at 390 px (a phone's width) stays inside its card and the page does not scroll
// sideways; returns what overflows (empty when nothing does). `frame`: the selector of an
// iframe holding the page (the layout inside it is checked), or null for this document.
export const OVERFLOWS = (frame = null) => {
  const doc = frame ? document.querySelector(frame).contentDocument : document;
  const out = [];
  const sideways = doc.documentElement.scrollWidth - doc.documentElement.clientWidth;
  if (sideways > 0) out.push(`the page scrolls sideways by ${sideways}px`);
  for (const card of doc.querySelectorAll('main > section, header')) {
    const box = card.getBoundingClientRect();
    for (const e of card.querySelectorAll('*')) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || e.closest('[hidden], details:not([open]) > :not(summary)')) continue;
      if (r.right > box.right + 0.5 || r.left < box.left - 0.5) out.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).split(' ')[0] : ''} in #${card.id || card.tagName.toLowerCase()}: ${r.left.toFixed(0)}..${r.right.toFixed(0)} outside ${box.left.toFixed(0)}..${box.right.toFixed(0)}`);
    }
  }
  return out;
};

export { startServer };
