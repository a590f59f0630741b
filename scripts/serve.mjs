// Static server for the page: www/ at /, the wasm-bindgen output pkg/ at /pkg/.
// Correct MIME types (application/wasm for streaming compilation), no directory listing,
// no path escapes, and a strict Content-Security-Policy: the page may load nothing from
// any other origin. Run directly (npm start) or import startServer() (tests).
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.etm': 'application/octet-stream',
  '.ts': 'text/plain; charset=utf-8',
};

// 'wasm-unsafe-eval' allows WebAssembly compilation and nothing else (no JS eval).
export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

// The URL path decoded, without its query (null when it does not decode or holds a NUL).
function decodedPath(urlPath) {
  let p;
  try {
    p = decodeURIComponent(urlPath.split('?')[0]);
  } catch {
    return null;
  }
  return p.includes('\0') ? null : p;
}

// `rest` resolved under `base` (its index.html when empty), or null if it escapes `base`.
function inside(base, rest) {
  const file = path.resolve(base, rest || 'index.html');
  return file === base || file.startsWith(base + path.sep) ? file : null;
}

// The npm libraries the page loads, from node_modules (the page's federation client: the
// Fleet API's protobuf codec and the 64-bit integers of Flower's node ids). A fixed list, so
// nothing else under node_modules is reachable.
const VENDOR = {
  '/vendor/protobuf.min.js': 'node_modules/protobufjs/dist/minimal/protobuf.min.js',
  '/vendor/long.js': 'node_modules/long/index.js',
  // flwr's Fleet API messages as protobuf.js code, made from its descriptors by scripts/flower.sh.
  '/flower/flwr-proto.mjs': 'pkg.flower/flwr-proto.mjs',
};

/** Maps a URL path to a file under www/ or pkg/, or null if it would escape them. */
export function resolvePath(urlPath, root = ROOT) {
  const p = decodedPath(urlPath);
  if (p === null) return null;
  if (Object.hasOwn(VENDOR, p)) return path.join(root, VENDOR[p]);
  const [base, rest] = p.startsWith('/pkg/') ? [path.join(root, 'pkg'), p.slice(5)] : [path.join(root, 'www'), p.slice(1)];
  return inside(base, rest);
}

/** Maps a URL path to a file under `dir` alone (a built app, e.g. examples/teach/dist). */
function resolveIn(dir, urlPath) {
  const p = decodedPath(urlPath);
  return p === null ? null : inside(path.resolve(dir), p.slice(1));
}

// The Fleet API calls a Flower node makes (flwr 1.42's /v1/fleet/ routes), and nothing else
// of the SuperLink: its Control and Runtime APIs share the port and stay unreachable.
const FLEET_CALLS = new Set(['register-node', 'activate-node', 'deactivate-node', 'unregister-node', 'send-node-heartbeat',
  'pull-messages', 'push-messages', 'get-run', 'push-object', 'pull-object', 'confirm-message-received']);
const FLEET_MAX_BODY = 80 * 1024 * 1024;

// Forwards one Fleet API call to the SuperLink at `fleet` (http://host:port): the page talks
// to its own origin only (CSP connect-src 'self'), the server relays. Only the protobuf body
// and Flower's headers pass; a request body over FLEET_MAX_BODY is refused.
function proxyFleet(fleet, req, res, send) {
  const call = (req.url || '').split('?')[0].slice('/v1/fleet/'.length);
  if (req.method !== 'POST' || !FLEET_CALLS.has(call)) return send(404, 'not a Fleet API call');
  if (Number(req.headers['content-length'] || 0) > FLEET_MAX_BODY) return send(413, 'request too large');
  const headers = {};
  for (const h of ['content-type', 'accept', 'content-length', 'flwr-public-key', 'flwr-signature', 'flwr-timestamp']) {
    if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  }
  const target = new URL(`/v1/fleet/${call}`, fleet);
  const up = http.request(target, { method: 'POST', headers }, (upRes) => {
    res.writeHead(upRes.statusCode || 502, {
      'Content-Type': upRes.headers['content-type'] || 'application/octet-stream',
      'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-store',
      'Cross-Origin-Resource-Policy': 'same-origin',
    });
    upRes.pipe(res);
  });
  up.on('error', (err) => { if (!res.headersSent) send(502, `the federation server is not reachable: ${err.message}`); else res.destroy(); });
  let n = 0;
  req.on('data', (chunk) => {
    n += chunk.length;
    if (n > FLEET_MAX_BODY) { up.destroy(); req.destroy(); }
  });
  req.pipe(up);
}

const handler = (resolve, fleet = null) => (req, res) => {
  const send = (status, body, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' });
    res.end(body);
  };
  if (fleet && (req.url || '').startsWith('/v1/fleet/')) return proxyFleet(fleet, req, res, send);
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
  let file = resolve(req.url || '/');
  if (!file) return send(404, 'not found');
  fs.stat(file, (err, st) => {
    if (!err && st.isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (err2, data) => {
      if (err2) return send(404, 'not found');
      res.writeHead(200, {
        'Content-Type': MIME[path.extname(file)] || 'application/octet-stream',
        'Content-Length': data.length,
        'Content-Security-Policy': CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        'Cache-Control': 'no-cache',
        // Cross-origin isolation: SharedArrayBuffer, hence the threaded engine. The page
        // loads nothing from other origins, so require-corp costs nothing.
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp',
      });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  });
};

/** Starts the server; resolves to { server, url } once listening. Port 0 picks a free port.
 * With `tls` ({ key, cert } PEM text) it serves HTTPS; with `dir`, that directory alone
 * (same headers) instead of www/ and pkg/; with `fleet` (a SuperLink's http://host:port), the
 * Fleet API's calls under /v1/fleet/ are relayed to it (federation). */
export function startServer({ port = 8080, host = '127.0.0.1', tls = null, dir = null, fleet = null } = {}) {
  const handle = handler(dir ? (u) => resolveIn(dir, u) : (u) => resolvePath(u), fleet);
  return new Promise((resolve, reject) => {
    const server = tls ? https.createServer(tls, handle) : http.createServer(handle);
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({ server, url: `${tls ? 'https' : 'http'}://${host === '0.0.0.0' ? 'localhost' : host}:${addr.port}/` });
    });
  });
}

/** This machine's LAN IPv4 addresses. */
function lanAddresses() {
  return Object.values(os.networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4' && !a.internal).map((a) => a.address);
}

/**
 * A self-signed certificate for localhost and this machine's LAN addresses, made once with
 * openssl and kept in the cache (remade when the addresses change). Phones will warn that
 * it is not trusted: accept it once (or install cert.pem on the phone).
 */
export function localCertificate() {
  const dir = path.join(process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache', 'edgetune'), 'tls');
  const ips = lanAddresses();
  const san = ['DNS:localhost', 'IP:127.0.0.1', ...ips.map((ip) => `IP:${ip}`)].join(',');
  const [key, cert, sanFile] = ['key.pem', 'cert.pem', 'san.txt'].map((f) => path.join(dir, f));
  if (!(fs.existsSync(cert) && fs.existsSync(key) && fs.existsSync(sanFile) && fs.readFileSync(sanFile, 'utf8') === san)) {
    fs.mkdirSync(dir, { recursive: true });
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '825', '-subj', '/CN=edgetune local',
        '-addext', `subjectAltName=${san}`, '-keyout', key, '-out', cert], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(err.code === 'ENOENT' ? 'openssl is needed for --https: install it (apt-get install openssl)' : `openssl failed: ${err.stderr || err.message}`);
    }
    fs.writeFileSync(sanFile, san);
  }
  return { key: fs.readFileSync(key), cert: fs.readFileSync(cert), certPath: cert, ips };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 8080);
  if (!fs.existsSync(path.join(ROOT, 'pkg', 'edgetune_bg.wasm'))) {
    console.error('[edgetune] pkg/ has no wasm build yet: run `npm start` (or `npm run build`) first.');
    process.exit(1);
  }
  const useTls = process.argv.includes('--https');
  let tls = null;
  if (useTls) {
    try {
      tls = localCertificate();
    } catch (err) {
      console.error(`[edgetune] ${err.message}`);
      process.exit(1);
    }
  }
  // --federation [key=value ...]: a SuperLink and the FedAvg ServerApp behind the page
  // (scripts/federation.mjs); the key=value pairs override federation/pyproject.toml's
  // [tool.flwr.app.config] (e.g. num-server-rounds=5 min-nodes=3 classes=mug,plant,keys).
  let federation = null;
  if (process.argv.includes('--federation')) {
    const runConfig = {};
    for (const a of process.argv.slice(process.argv.indexOf('--federation') + 1)) {
      const m = /^([a-z-]+)=(.*)$/.exec(a);
      if (!m) continue;
      runConfig[m[1]] = /^-?\d+(\.\d+)?$/.test(m[2]) ? Number(m[2]) : m[2];
    }
    try {
      const { startFederation } = await import('./federation.mjs');
      federation = await startFederation();
      const runId = await federation.submit(runConfig);
      console.log(`[edgetune] federation: Flower SuperLink on 127.0.0.1:${federation.port} (log ${federation.logFile}), FedAvg run ${runId} waiting for devices`);
      const stop = () => federation.stop().finally(() => process.exit(0));
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    } catch (err) {
      console.error(`[edgetune] could not start the federation: ${err.message}`);
      process.exit(1);
    }
  }
  // Plain HTTP stays on loopback (camera access needs a secure context, which only localhost
  // gives without TLS); --https listens on the LAN so a phone can reach it.
  startServer({ port, host: useTls ? '0.0.0.0' : '127.0.0.1', tls, fleet: federation?.fleetUrl ?? null }).then(
    ({ url, server }) => {
      console.log(`\n[edgetune] serving the page at ${url}\n[edgetune] open ${url} in a browser`);
      if (federation) console.log(`[edgetune] devices join the federation from the page: Train together → Join, with ${url} as its address`);
      if (tls) {
        const p = server.address().port;
        for (const ip of tls.ips) console.log(`[edgetune] on your phone (same network): https://${ip}:${p}/`);
        console.log(`[edgetune] the certificate is self-signed (${tls.certPath}): accept the browser's warning once`);
      }
      console.log('[edgetune] Ctrl+C stops the server\n');
    },
    (err) => {
      console.error(err.code === 'EADDRINUSE' ? `[edgetune] port ${port} is in use: stop the other server or run with PORT=<free port> npm start` : `[edgetune] ${err.message}`);
      process.exit(1);
    },
  );
}
