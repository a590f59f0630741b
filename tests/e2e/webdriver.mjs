// A minimal W3C WebDriver client (plain JSON over HTTP) for WebKitGTK's `WebKitWebDriver`,
// which drives MiniBrowser: Safari's engine from Debian's packages, no downloaded browser.
// Only what the browser tests use: sessions, navigation, scripts, element clicks, pointer
// actions (held across calls, as a person holds a button), window size and screenshots.
// Spec: https://www.w3.org/TR/webdriver2/ (commands by their endpoint names below).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export const WEBKIT_DRIVER = '/usr/bin/WebKitWebDriver';
export const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
// An element reference is an object with one key, the spec's "element-6066-11e4-a52e-4f735466cecc";
// WebKitWebDriver 2.50 spells it with a final "f", so the test keeps the object it was given
// (passed back as an action's origin) and reads the id as its only value.

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitForPort(port, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`WebKitWebDriver did not listen on port ${port} within ${timeoutMs} ms`);
}

/** Why WebKitGTK cannot run here (a missing package, with the command), or null. */
export function webkitMissing() {
  const need = [[WEBKIT_DRIVER, 'webkit2gtk-driver'], [MINIBROWSER, 'webkit2gtk-driver'], ['/usr/bin/xvfb-run', 'xvfb'], ['/usr/bin/xauth', 'xauth']];
  const missing = [...new Set(need.filter(([f]) => !fs.existsSync(f)).map(([, pkg]) => pkg))];
  return missing.length ? `WebKitGTK is not installed: apt-get install ${missing.join(' ')} (npm test does this)` : null;
}

export class WebDriverError extends Error {
  constructor(command, status, value) {
    super(`WebDriver ${command}: ${value?.error || status}: ${value?.message || ''}`.trim());
    this.code = value?.error;
  }
}

/**
 * Starts `WebKitWebDriver` under Xvfb (a virtual X display of `screen` pixels: MiniBrowser is
 * a GTK program) and a MiniBrowser session with `args` (e.g. the mock camera, full screen). Resolves to a session with
 * the commands below and `close()`, which ends the session and both processes.
 */
export async function startWebKit({ args = [], env = {}, screen = '1280x1024' } = {}) {
  const why = webkitMissing();
  if (why) throw new Error(why);
  const port = await freePort();
  // -a: a free display number; the driver starts MiniBrowser on that display.
  const proc = spawn('/usr/bin/xvfb-run', ['-a', '-s', `-screen 0 ${screen}x24`, WEBKIT_DRIVER, `--port=${port}`, '--host=127.0.0.1'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const kill = () => {
    try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* already gone */ }
  };
  try {
    await waitForPort(port, 30_000);
  } catch (err) {
    kill();
    throw new Error(`${err.message}\n${log}`);
  }
  const base = `http://127.0.0.1:${port}`;
  const send = async (method, path, body) => {
    const res = await fetch(base + path, { method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new WebDriverError(`${method} ${path.replace(/^\/session\/[^/]+/, '')}`, res.status, json.value);
    return json.value;
  };
  let created;
  try {
    created = await send('POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'MiniBrowser',
          'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation', ...args] },
        },
      },
    });
  } catch (err) {
    kill();
    throw new Error(`${err.message}\n${log}`);
  }
  const sid = created.sessionId;
  const s = (method, path, body) => send(method, `/session/${sid}${path}`, body);
  const elementRef = (selector) => s('POST', '/element', { using: 'css selector', value: selector });
  const element = async (selector) => Object.values(await elementRef(selector))[0];
  return {
    capabilities: created.capabilities,
    log: () => log,
    goto: (url) => s('POST', '/url', { url }),
    reload: () => s('POST', '/refresh', {}),
    url: () => s('GET', '/url'),
    /** Runs `fn(arg)` (a function's source) in the page and returns its (awaited) result. */
    evaluate: (fn, arg = null) => s('POST', '/execute/async', {
      script: `const done = arguments[arguments.length - 1];
        Promise.resolve().then(() => (${fn})(arguments[0])).then((v) => done({ ok: v === undefined ? null : v }), (e) => done({ error: String(e && e.stack || e) }));`,
      args: [arg],
    }).then((r) => { if (r && r.error) throw new Error(`in the page: ${r.error}`); return r ? r.ok : null; }),
    click: async (selector) => s('POST', `/element/${await element(selector)}/click`, {}),
    type: async (selector, text) => {
      const id = await element(selector);
      await s('POST', `/element/${id}/clear`, {});
      await s('POST', `/element/${id}/value`, { text });
    },
    /** Presses the mouse button on the element's centre and keeps it down (until `release`). */
    press: async (selector) => s('POST', '/actions', {
      actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: [
        { type: 'pointerMove', origin: await elementRef(selector), x: 0, y: 0 },
        { type: 'pointerDown', button: 0 },
      ] }],
    }),
    release: () => s('POST', '/actions', {
      actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: [{ type: 'pointerUp', button: 0 }] }],
    }),
    setWindowSize: (width, height) => s('POST', '/window/rect', { width, height }),
    screenshot: async (file) => fs.writeFileSync(file, Buffer.from(await s('GET', '/screenshot'), 'base64')),
    async close() {
      try {
        await send('DELETE', `/session/${sid}`);
      } catch { /* the browser may already be gone; the processes are killed below */ }
      kill();
    },
  };
}
