// Static server for the page: www/ at /, the wasm-bindgen output pkg/ at /pkg/.
// Correct MIME types (application/wasm for streaming compilation), no directory listing,
// no path escapes, and a strict Content-Security-Policy: the page may load nothing from
// any other origin. Run directly (npm start) or import startServer() (tests).
import http from 'node:http';
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

/** Maps a URL path to a file under www/ or pkg/, or null if it would escape them. */
export function resolvePath(urlPath, root = ROOT) {
  let p;
  try {
    p = decodeURIComponent(urlPath.split('?')[0]);
  } catch {
    return null;
  }
  if (p.includes('\0')) return null;
  const [base, rest] = p.startsWith('/pkg/') ? [path.join(root, 'pkg'), p.slice(5)] : [path.join(root, 'www'), p.slice(1)];
  const file = path.resolve(base, rest || 'index.html');
  if (file !== base && !file.startsWith(base + path.sep)) return null;
  return file;
}

function handle(req, res) {
  const send = (status, body, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' });
    res.end(body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
  let file = resolvePath(req.url || '/');
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
      });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  });
}

/** Starts the server; resolves to { server, url } once listening. Port 0 picks a free port. */
export function startServer({ port = 8080, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handle);
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({ server, url: `http://${host}:${addr.port}/` });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 8080);
  if (!fs.existsSync(path.join(ROOT, 'pkg', 'edgetune_bg.wasm'))) {
    console.error('[edgetune] pkg/ has no wasm build yet: run `npm start` (or `npm run build`) first.');
    process.exit(1);
  }
  startServer({ port }).then(
    ({ url }) => console.log(`\n[edgetune] serving the page at ${url}\n[edgetune] open ${url} in a browser (Ctrl+C stops the server)\n`),
    (err) => {
      console.error(err.code === 'EADDRINUSE' ? `[edgetune] port ${port} is in use: stop the other server or run with PORT=<free port> npm start` : `[edgetune] ${err.message}`);
      process.exit(1);
    },
  );
}
