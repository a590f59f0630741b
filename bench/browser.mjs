// Browser benchmark (npm run bench): edgetune against onnxruntime-web in one run, on this
// machine, in headless Debian Chromium. The same network (EfficientNet-Lite0 224x224, batch
// 1): edgetune's .etm models (int8 and f32) and their ONNX exports by `edgetune export` (f32,
// and int8 as a QDQ graph), onnxruntime-web's wasm backend single-threaded. Each contender
// gets a fresh browser: warm-up, then RUNS timed runs (median and p90), ms from navigation to
// the first result, bytes shipped (what the page fetched: JS, wasm, model; raw and gzip) and
// the renderer's peak resident memory (VmHWM). Writes bench/results.json and
// bench/results.md (the README's table) and prints the table.
//
// onnxruntime-web comes from the npm registry into $EDGETUNE_CACHE/bench-node once; nothing
// else is downloaded. BENCH_RUNS (50) and BENCH_ONLY (comma-separated contenders) adjust it.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { launch } from '../tests/e2e/browser.mjs';
import { MIME } from '../scripts/serve.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const CACHE = process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache/edgetune');
const ORT_VERSION = '1.30.0';
const ORT_DIR = path.join(CACHE, 'bench-node');
const ONNX_DIR = path.join(CACHE, 'bench-onnx');
const RUNS = Number(process.env.BENCH_RUNS || 50);
const PHOTO = path.resolve(ROOT, '../shared/data/photos/parrot.jpg');
const CLI = path.join(ROOT, 'target/release/edgetune');
const CONTENDERS = [
  ['edgetune-int8', 'edgetune wasm int8'],
  ['edgetune-f32', 'edgetune wasm f32'],
  ['edgetune-webgpu', 'edgetune WebGPU int8'],
  ['ort-int8', 'onnxruntime-web wasm int8 (QDQ)'],
  ['ort-f32', 'onnxruntime-web wasm f32'],
].filter(([k]) => !process.env.BENCH_ONLY || process.env.BENCH_ONLY.split(',').includes(k));

function need(file, what) {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${what}`);
}

function setup() {
  need(path.join(ROOT, 'pkg/edgetune_bg.wasm'), 'run npm run build first');
  need(path.join(ROOT, 'www/models/efficientnet_lite0.int8.etm'), 'run npm run build first (scripts/models.sh)');
  need(CLI, 'run npm run build first (scripts/models.sh builds the CLI)');
  need(PHOTO, 'the shared photos belong in ../shared beside the repository');
  const ortDist = path.join(ORT_DIR, 'node_modules/onnxruntime-web/dist');
  const pkg = path.join(ORT_DIR, 'node_modules/onnxruntime-web/package.json');
  if (!fs.existsSync(pkg) || JSON.parse(fs.readFileSync(pkg, 'utf8')).version !== ORT_VERSION) {
    console.log(`installing onnxruntime-web ${ORT_VERSION} from the npm registry into ${ORT_DIR} (once)`);
    fs.mkdirSync(ORT_DIR, { recursive: true });
    execFileSync('npm', ['install', '--prefix', ORT_DIR, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', `onnxruntime-web@${ORT_VERSION}`], { stdio: 'inherit' });
  }
  fs.mkdirSync(ONNX_DIR, { recursive: true });
  for (const [etm, onnx] of [['efficientnet_lite0.f32.etm', 'lite0.f32.onnx'], ['efficientnet_lite0.int8.etm', 'lite0.int8.onnx']]) {
    const src = path.join(ROOT, 'www/models', etm);
    const out = path.join(ONNX_DIR, onnx);
    if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) execFileSync(CLI, ['export', src, out], { stdio: 'inherit' });
  }
  return ortDist;
}

// The bench's own static server: the engine, the models, onnxruntime-web, the ONNX files,
// the photo and the page; cross-origin isolated (onnxruntime-web's wasm uses shared memory).
function serve(ortDist) {
  const routes = [
    ['/pkg/', path.join(ROOT, 'pkg')],
    ['/models/', path.join(ROOT, 'www/models')],
    ['/ort/', ortDist],
    ['/onnx/', ONNX_DIR],
    ['/', path.join(ROOT, 'bench/page')],
  ];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x').pathname;
    let file = u === '/photo' ? PHOTO : null;
    if (!file) {
      const [prefix, dir] = routes.find(([p]) => u.startsWith(p));
      file = path.resolve(dir, decodeURIComponent(u.slice(prefix.length)) || 'index.html');
      if (!file.startsWith(dir + path.sep)) file = null;
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': MIME[path.extname(file)] || 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

// Chromium renderer process ids now running.
function renderers() {
  const out = new Set();
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('--type=renderer')) out.add(p);
    } catch { /* the process ended */ }
  }
  return out;
}

// Peak resident memory (VmHWM, KiB) among the renderers started since `before` was taken.
function rendererPeakKiB(before) {
  let peak = 0;
  for (const p of renderers()) {
    if (before.has(p)) continue;
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (hwm) peak = Math.max(peak, Number(hwm[1]));
    } catch { /* the process ended */ }
  }
  return peak;
}

const pct = (v, q) => v.slice().sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(q * v.length))];

async function runOne(url, engine) {
  const before = renderers();
  const { browser, cleanup } = await launch({ webgpu: engine === 'edgetune-webgpu' });
  try {
    const page = await browser.newPage();
    const fetched = new Map();
    page.on('requestfinished', async (r) => {
      const u = new URL(r.url());
      if (u.origin === new URL(url).origin) fetched.set(u.pathname, (await r.sizes()).responseBodySize);
    });
    await page.goto(`${url}index.html?engine=${engine}&runs=${RUNS}`);
    await page.waitForFunction(() => globalThis.benchResult, null, { timeout: 900_000, polling: 500 });
    const r = await page.evaluate(() => globalThis.benchResult);
    if (r.error) throw new Error(`${engine}: ${r.error}`);
    r.peakRendererMiB = rendererPeakKiB(before) / 1024;
    // Bytes shipped: what the page fetched to run the model (not the bench page and photo).
    const shipped = [...fetched.keys()].filter((p) => /^\/(pkg|models|ort|onnx)\//.test(p));
    r.files = shipped;
    const local = (p) => {
      const [prefix, dir] = [['/pkg/', path.join(ROOT, 'pkg')], ['/models/', path.join(ROOT, 'www/models')], ['/ort/', path.join(ORT_DIR, 'node_modules/onnxruntime-web/dist')], ['/onnx/', ONNX_DIR]].find(([x]) => p.startsWith(x));
      return fs.readFileSync(path.join(dir, p.slice(prefix.length)));
    };
    const sum = (filter, f) => shipped.filter(filter).reduce((n, p) => n + f(local(p)), 0);
    const isModel = (p) => /\.(etm|onnx)$/.test(p);
    r.codeBytes = sum((p) => !isModel(p), (b) => b.length);
    r.codeGzip = sum((p) => !isModel(p), (b) => zlib.gzipSync(b, { level: 9 }).length);
    r.modelBytes = sum(isModel, (b) => b.length);
    r.modelGzip = sum(isModel, (b) => zlib.gzipSync(b, { level: 9 }).length);
    r.median = pct(r.ms, 0.5);
    r.p90 = pct(r.ms, 0.9);
    return r;
  } finally {
    await cleanup();
  }
}

const kb = (b) => `${(b / 1024).toFixed(0)} KB`;

async function main() {
  const ortDist = setup();
  const { server, url } = await serve(ortDist);
  const results = [];
  try {
    for (const [engine, label] of CONTENDERS) {
      process.stdout.write(`${label}: `);
      const r = await runOne(url, engine);
      results.push({ label, ...r });
      console.log(`median ${r.median.toFixed(1)} ms, p90 ${r.p90.toFixed(1)} ms, first result ${r.firstResultMs.toFixed(0)} ms, top-1 class ${r.top}, ${r.detail}`);
    }
  } finally {
    server.close();
  }
  const cpu = os.cpus()[0].model.replace(/\s+/g, ' ').trim();
  const chromium = execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const rows = results.map((r) => `| ${r.label} | ${r.median.toFixed(1)} | ${r.p90.toFixed(1)} | ${r.firstResultMs.toFixed(0)} | ${kb(r.codeBytes)} (${kb(r.codeGzip)}) | ${kb(r.modelBytes)} (${kb(r.modelGzip)}) | ${r.peakRendererMiB.toFixed(0)} | ${r.top} |`);
  const md = [
    `EfficientNet-Lite0 224x224, batch 1, one thread, ${RUNS} timed runs after 5 warm-up runs, ${chromium} headless, ${cpu} (${os.cpus().length} cores), ${new Date().toISOString().slice(0, 10)}; \`npm run bench\` (bench/browser.mjs).`,
    '',
    '| contender | median ms | p90 ms | first result ms | JS + wasm shipped (gzip) | model (gzip) | peak renderer MiB | top-1 |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
  const by = Object.fromEntries(results.map((r) => [r.engine, r]));
  const ratios = {};
  if (by['edgetune-int8'] && by['ort-int8']) ratios.int8VsOrtInt8 = by['edgetune-int8'].median / by['ort-int8'].median;
  if (by['edgetune-int8'] && by['ort-f32']) ratios.int8VsOrtF32 = by['edgetune-int8'].median / by['ort-f32'].median;
  const lines = [md, ''];
  if (ratios.int8VsOrtInt8) lines.push(`edgetune wasm int8 / onnxruntime-web wasm int8 median: ${ratios.int8VsOrtInt8.toFixed(2)} (goal <= 0.8)`);
  if (ratios.int8VsOrtF32) lines.push(`edgetune wasm int8 / onnxruntime-web wasm f32 median: ${ratios.int8VsOrtF32.toFixed(2)} (goal <= 0.5)`);
  // Throughput per kind: multiply-accumulates over the kind's summed median time.
  const rate = ({ ms, macs }) => (macs ? `, ${(macs / ms / 1e6).toFixed(1)} GMAC/s` : '');
  for (const [key, label] of [['edgetune-int8', 'edgetune wasm int8'], ['edgetune-f32', 'edgetune wasm f32']]) {
    const prof = by[key]?.profile?.byKind;
    if (!prof) continue;
    const total = Object.values(prof).reduce((a, b) => a + b.ms, 0);
    lines.push('', `Where ${label}'s time goes (per-layer medians, profileLayers): ${Object.entries(prof).sort((a, b) => b[1].ms - a[1].ms)
      .map(([k, p]) => `${k} ${p.ms.toFixed(1)} ms (${((100 * p.ms) / total).toFixed(0)}%${rate(p)})`).join(', ')}.`);
  }
  const prof = by['edgetune-int8']?.profile?.byKind;
  const peak = by['edgetune-int8']?.profile?.peakMacsPerS;
  if (peak && prof?.pointwise) {
    const pw = prof.pointwise.macs / prof.pointwise.ms / 1e6;
    lines.push('', `Measured ceiling of the int8 GEMM's SIMD mix in this browser (i32x4.dot_i16x8_s + i32x4.add, no loads; simdPeak): ${(peak / 1e9).toFixed(1)} GMAC/s; the pointwise layers run at ${pw.toFixed(1)} GMAC/s, ${((100 * pw * 1e9) / peak).toFixed(0)}% of it.`);
  }
  const text = lines.join('\n');
  console.log(`\n${text}`);
  fs.writeFileSync(path.join(ROOT, 'bench/results.md'), `${text}\n`);
  fs.writeFileSync(path.join(ROOT, 'bench/results.json'), JSON.stringify({ machine: { cpu, cores: os.cpus().length, chromium }, runs: RUNS, ratios, results }, null, 2));
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
