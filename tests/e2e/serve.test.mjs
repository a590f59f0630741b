// The static server: MIME types the browser relies on, the security headers, and no way out
// of www/ and pkg/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, resolvePath, localCertificate } from '../../scripts/serve.mjs';

let server;
let url;
before(async () => ({ server, url } = await startServer({ port: 0 })));
after(() => server.close());

test('serves the page, the JS glue and the wasm with correct types and a strict CSP', async () => {
  const page = await fetch(url);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  const csp = page.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /'unsafe-eval'|'unsafe-inline'|https?:/);
  const wasm = await fetch(new URL('pkg/edgetune_bg.wasm', url));
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  const js = await fetch(new URL('pkg/edgetune.js', url));
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
});

test('rejects path escapes and unknown files', async () => {
  for (const p of ['/../Cargo.toml', '/%2e%2e/Cargo.toml', '/pkg/../../Cargo.toml', '/nope.html', '/%00']) {
    const r = await fetch(url + p.slice(1));
    assert.equal(r.status, 404, p);
  }
  assert.equal(resolvePath('/../../etc/passwd', '/srv/x'), null);
  assert.equal(resolvePath('/pkg/a.js', '/srv/x'), path.join('/srv/x', 'pkg', 'a.js'));
  const post = await fetch(url, { method: 'POST' });
  assert.equal(post.status, 405);
});

test('`node scripts/serve.mjs` (what npm start runs last) says where to open the page and serves it', async () => {
  const { spawn } = await import('node:child_process');
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  const child = spawn(process.execPath, [path.join(root, 'scripts/serve.mjs')], { env: { ...process.env, PORT: '0' } });
  try {
    const pageUrl = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 10_000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/open (http:\/\/127\.0\.0\.1:\d+\/) in a browser/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
    });
    const r = await fetch(pageUrl);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /<title>edgetune<\/title>/);
  } finally {
    child.kill();
  }
});

test('--https: a self-signed certificate for localhost and the LAN, made once, serves the page over TLS', async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const https = await import('node:https');
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-tls-'));
  const saved = process.env.EDGETUNE_CACHE;
  process.env.EDGETUNE_CACHE = cache;
  try {
    const tls = localCertificate();
    const first = fs.statSync(tls.certPath).mtimeMs;
    assert.equal(fs.statSync(localCertificate().certPath).mtimeMs, first, 'the certificate is reused, not remade');
    const { server: s, url: u } = await startServer({ port: 0, host: '127.0.0.1', tls });
    try {
      const { status, headers, body } = await new Promise((resolve, reject) => {
        https.get(u, { rejectUnauthorized: false }, (res) => {
          let body = '';
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        }).on('error', reject);
      });
      assert.ok(u.startsWith('https://'));
      assert.equal(status, 200);
      assert.match(headers['content-security-policy'], /default-src 'self'/);
      assert.match(body, /<title>edgetune<\/title>/);
    } finally {
      s.close();
    }
  } finally {
    if (saved === undefined) delete process.env.EDGETUNE_CACHE; else process.env.EDGETUNE_CACHE = saved;
    fs.rmSync(cache, { recursive: true, force: true });
  }
});

test('the service worker, the manifest and the app modules are served with their types', async () => {
  for (const [p, type] of [['sw.js', /^text\/javascript/], ['manifest.webmanifest', /^application\/manifest\+json/], ['workers/trainer.js', /^text\/javascript/], ['store.js', /^text\/javascript/], ['wasm-support.js', /^text\/javascript/]]) {
    const r = await fetch(new URL(p, url));
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), type, p);
  }
  const manifest = await (await fetch(new URL('manifest.webmanifest', url))).json();
  assert.equal(manifest.start_url, '/');
  assert.ok(manifest.icons.length > 0);
});
