// The static server: MIME types the browser relies on, the security headers, and no way out
// of www/ and pkg/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, resolvePath } from '../../scripts/serve.mjs';

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
