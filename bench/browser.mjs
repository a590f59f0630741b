// Browser benchmark (npm run bench -- browser): edgetune against the peers in one run, on
// this machine, in headless Debian Chromium, each contender in a fresh browser.
//   - EfficientNet-Lite0 224x224 (edgetune's own model): edgetune int8, f32 and WebGPU, and
//     onnxruntime-web (wasm, one thread) on edgetune's ONNX exports (f32 and QDQ int8);
//   - the three shared TFLite files (../shared/models/): LiteRT.js (TFLite + XNNPACK in wasm,
//     its relaxed-SIMD build single-threaded and its threaded build on every core) on the
//     .tflite itself, edgetune on its `edgetune import` of the same file.
// Same photo, same centre crop, one input prepared per model before timing; timed: JS wall
// time around one inference call (edgetune's `classify` on the crop's RGBA, which also
// normalizes and quantizes it; LiteRT's `run` on the uint8 RGB tensor plus reading its
// output; onnxruntime's `run` on the NCHW float tensor), after 5 warm-up runs. Also: ms from
// navigation to the first result, the bytes the page fetched (raw and gzip), which wasm file
// each engine loaded, the renderer's peak resident memory (VmHWM), top-1 and GMAC/s (the
// model's multiply-accumulates, from edgetune's per-layer profile, over the median).
// Writes bench/results.json and bench/results.md (the README's tables) and prints them.
//
// The peers are npm devDependencies pinned in package-lock.json (node_modules/); nothing
// else is downloaded. BENCH_RUNS (50) and BENCH_ONLY (comma-separated contender keys, config
// names or model names, e.g. `litert,edgetune-int8@v2`) adjust it.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { launch } from '../tests/e2e/browser.mjs';
import { MIME } from '../scripts/serve.mjs';
import { cliPath } from '../scripts/cargo-paths.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const CACHE = process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache/edgetune');
const ONNX_DIR = path.join(CACHE, 'bench-onnx');
const ETM_DIR = path.join(CACHE, 'bench-etm');
const SHARED_MODELS = path.resolve(ROOT, '../shared/models');
const NODE_MODULES = path.join(ROOT, 'node_modules');
const RUNS = Number(process.env.BENCH_RUNS || 50);
const PHOTO = path.resolve(ROOT, '../shared/data/photos/parrot.jpg');
const CLI = cliPath();
const CORES = os.cpus().length;

// The models: edgetune's own Lite0 and the shared TFLite files (side = input size).
const MODELS = {
  lite0: { name: 'EfficientNet-Lite0 224x224 (edgetune\'s own, int8 PTQ)', side: 224 },
  'v1-0.25': { name: 'mobilenet_v1_0.25_128_quant', side: 128, tflite: 'mobilenet_v1_0.25_128_quant' },
  'v1-0.5': { name: 'mobilenet_v1_0.5_160_quant', side: 160, tflite: 'mobilenet_v1_0.5_160_quant' },
  v2: { name: 'mobilenet_v2_1.0_224_quant', side: 224, tflite: 'mobilenet_v2_1.0_224_quant' },
};

// [config, model, label, page parameters]
const ALL = [
  ['edgetune-int8', 'lite0', 'edgetune wasm int8', { engine: 'edgetune', file: '/models/efficientnet_lite0.int8.etm' }],
  ['edgetune-int8-plain', 'lite0', 'edgetune wasm int8, plain SIMD (no relaxed dot), 1 thread', { engine: 'edgetune', file: '/models/efficientnet_lite0.int8.etm', simd: 'plain' }],
  ['edgetune-int8-threads', 'lite0', `edgetune wasm int8, ${CORES} threads`, { engine: 'edgetune', file: '/models/efficientnet_lite0.int8.etm', threads: CORES }],
  ['edgetune-f32', 'lite0', 'edgetune wasm f32', { engine: 'edgetune', file: '/models/efficientnet_lite0.f32.etm' }],
  ['edgetune-webgpu', 'lite0', 'edgetune WebGPU int8', { engine: 'edgetune', file: '/models/efficientnet_lite0.int8.etm', backend: 'gpu' }],
  ['ort-int8', 'lite0', 'onnxruntime-web wasm int8 (QDQ), 1 thread', { engine: 'ort', file: '/onnx/lite0.int8.onnx' }],
  ['ort-f32', 'lite0', 'onnxruntime-web wasm f32, 1 thread', { engine: 'ort', file: '/onnx/lite0.f32.onnx' }],
  ...Object.entries(MODELS).filter(([, m]) => m.tflite).flatMap(([id, m]) => [
    ['edgetune-int8', id, 'edgetune wasm int8 (its import of the .tflite), 1 thread', { engine: 'edgetune', file: `/etm/${m.tflite}.etm` }],
    ['edgetune-int8-plain', id, 'edgetune wasm int8 (its import), plain SIMD (no relaxed dot), 1 thread', { engine: 'edgetune', file: `/etm/${m.tflite}.etm`, simd: 'plain' }],
    ['edgetune-int8-threads', id, `edgetune wasm int8 (its import of the .tflite), ${CORES} threads`, { engine: 'edgetune', file: `/etm/${m.tflite}.etm`, threads: CORES }],
    ['litert', id, 'LiteRT.js wasm (XNNPACK, relaxed SIMD), 1 thread', { engine: 'litert', file: `/tflite/${m.tflite}.tflite`, threads: 1 }],
    ['litert-threads', id, `LiteRT.js wasm (XNNPACK, threaded build), ${CORES} threads`, { engine: 'litert', file: `/tflite/${m.tflite}.tflite`, threads: CORES }],
  ]),
];
const ONLY = process.env.BENCH_ONLY?.split(',').filter(Boolean);
const CONTENDERS = ALL.map(([config, model, label, params]) => ({ key: `${config}@${model}`, config, model, label, params }))
  .filter((c) => !ONLY || ONLY.some((o) => o === c.key || o === c.config || o === c.model));

function need(file, what) {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${what}`);
}

function setup() {
  need(path.join(ROOT, 'pkg/edgetune_bg.wasm'), 'run npm run build first');
  need(path.join(ROOT, 'www/models/efficientnet_lite0.int8.etm'), 'run npm run build first (scripts/models.sh)');
  need(CLI, 'run npm run build first (scripts/models.sh builds the CLI)');
  need(PHOTO, 'the shared photos belong in ../shared beside the repository');
  need(path.join(NODE_MODULES, 'onnxruntime-web/dist'), 'run npm ci (scripts/setup.sh) for the pinned peers');
  need(path.join(NODE_MODULES, '@litertjs/core/wasm'), 'run npm ci (scripts/setup.sh) for the pinned peers');
  fs.mkdirSync(ONNX_DIR, { recursive: true });
  fs.mkdirSync(ETM_DIR, { recursive: true });
  const stale = (out, src) => !fs.existsSync(out) || fs.statSync(out).mtimeMs < Math.max(fs.statSync(src).mtimeMs, fs.statSync(CLI).mtimeMs);
  for (const [etm, onnx] of [['efficientnet_lite0.f32.etm', 'lite0.f32.onnx'], ['efficientnet_lite0.int8.etm', 'lite0.int8.onnx']]) {
    const src = path.join(ROOT, 'www/models', etm);
    const out = path.join(ONNX_DIR, onnx);
    if (stale(out, src)) execFileSync(CLI, ['export', src, out], { stdio: 'inherit' });
  }
  for (const m of Object.values(MODELS).filter((m) => m.tflite)) {
    const src = path.join(SHARED_MODELS, `${m.tflite}.tflite`);
    need(src, 'the shared TFLite models belong in ../shared/models');
    const out = path.join(ETM_DIR, `${m.tflite}.etm`);
    if (stale(out, src)) execFileSync(CLI, ['import', src, out], { stdio: 'inherit' });
  }
}

// URL prefix -> folder, for the server and for measuring what the page fetched.
const ROUTES = [
  ['/pkg/', path.join(ROOT, 'pkg')],
  ['/models/', path.join(ROOT, 'www/models')],
  ['/ort/', path.join(NODE_MODULES, 'onnxruntime-web/dist')],
  ['/onnx/', ONNX_DIR],
  ['/etm/', ETM_DIR],
  ['/tflite/', SHARED_MODELS],
  ['/lib/', path.join(ROOT, 'www/lib')],
  ['/workers/', path.join(ROOT, 'www/workers')],
  ['/litert/', path.join(NODE_MODULES, '@litertjs/core/wasm')],
  ['/litert-js/', path.join(NODE_MODULES, '@litertjs/core/dist')],
  ['/litert-utils/', path.join(NODE_MODULES, '@litertjs/wasm-utils/dist')],
  ['/', path.join(ROOT, 'bench/page')],
];

// The bench's own static server: the engine, the models, onnxruntime-web, the ONNX files,
// LiteRT.js, the TFLite files, the photo and the page; cross-origin isolated (threads need it).
function serve() {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x').pathname;
    let file = u === '/photo' ? PHOTO : null;
    if (!file) {
      const [prefix, dir] = ROUTES.find(([p]) => u.startsWith(p));
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

async function runOne(url, c) {
  const before = renderers();
  const { browser, cleanup } = await launch({ webgpu: c.params.backend === 'gpu' });
  try {
    const page = await browser.newPage();
    const fetched = new Set();
    page.on('requestfinished', (r) => {
      const u = new URL(r.url());
      if (u.origin === new URL(url).origin) fetched.add(decodeURIComponent(u.pathname));
    });
    const q = new URLSearchParams({ ...c.params, side: MODELS[c.model].side, runs: RUNS });
    await page.goto(`${url}index.html?${q}`);
    await page.waitForFunction(() => globalThis.benchResult, null, { timeout: 900_000, polling: 500 });
    const r = await page.evaluate(() => globalThis.benchResult);
    if (r.error) throw new Error(`${c.key}: ${r.error}`);
    r.peakRendererMiB = rendererPeakKiB(before) / 1024;
    // Bytes shipped: what the page fetched to run the model (not the bench page and photo).
    const shipped = [...fetched].filter((p) => !/^\/(index\.html|run\.mjs|photo)$/.test(p) && ROUTES.some(([x]) => x !== '/' && p.startsWith(x)));
    r.files = shipped;
    r.wasmLoaded = shipped.filter((p) => p.endsWith('.wasm')).map((p) => path.basename(p));
    const local = (p) => {
      const [prefix, dir] = ROUTES.find(([x]) => p.startsWith(x));
      return fs.readFileSync(path.join(dir, p.slice(prefix.length)));
    };
    const sum = (filter, f) => shipped.filter(filter).reduce((n, p) => n + f(local(p)), 0);
    const isModel = (p) => /\.(etm|onnx|tflite)$/.test(p);
    r.codeBytes = sum((p) => !isModel(p), (b) => b.length);
    r.codeGzip = sum((p) => !isModel(p), (b) => zlib.gzipSync(b, { level: 9 }).length);
    r.modelBytes = sum(isModel, (b) => b.length);
    r.modelGzip = sum(isModel, (b) => zlib.gzipSync(b, { level: 9 }).length);
    r.median = pct(r.ms, 0.5);
    r.p10 = pct(r.ms, 0.1);
    r.p90 = pct(r.ms, 0.9);
    return r;
  } finally {
    await cleanup();
  }
}

const kb = (b) => `${(b / 1024).toFixed(0)} KB`;

async function main() {
  setup();
  const { server, url } = await serve();
  const results = [];
  try {
    for (const c of CONTENDERS) {
      process.stdout.write(`${MODELS[c.model].name}, ${c.label}: `);
      const r = await runOne(url, c);
      results.push({ key: c.key, config: c.config, model: c.model, label: c.label, ...r });
      console.log(`median ${r.median.toFixed(2)} ms, p10 ${r.p10.toFixed(2)} ms, first result ${r.firstResultMs.toFixed(0)} ms, top-1 class ${r.top}, ${r.detail}, loaded ${r.wasmLoaded.join(' ') || '-'}`);
    }
  } finally {
    server.close();
  }
  const cpu = os.cpus()[0].model.replace(/\s+/g, ' ').trim();
  const chromium = execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const macsOf = (model) => results.find((r) => r.model === model && r.profile?.macs)?.profile.macs;
  const lines = [
    `Batch 1, ${RUNS} timed runs after 5 warm-up runs, ${chromium} headless, ${cpu} (${CORES} cores), ${new Date().toISOString().slice(0, 10)}; \`npm run bench -- browser\` (bench/browser.mjs). Timed: JS wall time around one inference call on an input prepared beforehand (same photo, same centre crop for every contender). GMAC/s: the model's multiply-accumulates (edgetune's per-layer profile) over the median.`,
  ];
  const ratios = {};
  for (const [id, m] of Object.entries(MODELS)) {
    const rs = results.filter((r) => r.model === id);
    if (!rs.length) continue;
    const macs = macsOf(id);
    lines.push('', `**${m.name}**${macs ? ` (${(macs / 1e6).toFixed(0)} M multiply-accumulates)` : ''}`, '',
      '| contender | median ms | p10 ms | p90 ms | GMAC/s | first result ms | JS + wasm shipped (gzip) | model (gzip) | wasm loaded | peak renderer MiB | top-1 |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|',
      ...rs.map((r) => `| ${r.label} | ${r.median.toFixed(1)} | ${r.p10.toFixed(1)} | ${r.p90.toFixed(1)} | ${macs ? (macs / r.median / 1e6).toFixed(1) : ''} | ${r.firstResultMs.toFixed(0)} | ${kb(r.codeBytes)} (${kb(r.codeGzip)}) | ${kb(r.modelBytes)} (${kb(r.modelGzip)}) | ${r.wasmLoaded.join(', ')} | ${r.peakRendererMiB.toFixed(0)} | ${r.top} |`));
    const med = (config) => rs.find((r) => r.config === config)?.median;
    const ours = med('edgetune-int8');
    const oursBest = Math.min(...['edgetune-int8', 'edgetune-int8-threads'].map(med).filter(Boolean));
    const headline = [];
    // Against each peer's fastest configuration on this model.
    for (const [peer, configs, goal] of [['LiteRT.js', ['litert', 'litert-threads'], 0.8], ['onnxruntime-web', ['ort-int8', 'ort-f32'], 0.8]]) {
      const best = configs.map((k) => [k, med(k)]).filter(([, v]) => v).sort((a, b) => a[1] - b[1])[0];
      if (!ours || !best) continue;
      ratios[`${id}:${peer}`] = oursBest / best[1];
      headline.push(`edgetune's fastest / ${peer}'s fastest here (${rs.find((r) => r.config === best[0]).label}): ${(oursBest / best[1]).toFixed(2)} (goal <= ${goal})`);
    }
    if (ours && med('litert')) {
      ratios[`${id}:LiteRT.js 1 thread`] = ours / med('litert');
      headline.push(`edgetune wasm int8 / LiteRT.js, both 1 thread: ${(ours / med('litert')).toFixed(2)} (goal <= 0.8)`);
    }
    const oursThreads = med('edgetune-int8-threads');
    if (oursThreads && med('litert-threads')) {
      ratios[`${id}:LiteRT.js ${CORES} threads`] = oursThreads / med('litert-threads');
      headline.push(`edgetune wasm int8 / LiteRT.js, both ${CORES} threads: ${(oursThreads / med('litert-threads')).toFixed(2)} (goal <= 0.8)`);
    }
    if (oursThreads && ours) {
      ratios[`${id}:edgetune threads speedup`] = ours / oursThreads;
      headline.push(`edgetune ${CORES} threads over 1 thread: ${(ours / oursThreads).toFixed(2)}x${id === 'lite0' ? ' (goal >= 1.6)' : ''}`);
    }
    if (headline.length) lines.push('', ...headline.map((h) => `- ${h}`));
    // Where edgetune's time goes on this model.
    const rate = ({ ms, macs: n }) => (n ? `, ${(n / ms / 1e6).toFixed(1)} GMAC/s` : '');
    for (const r of rs.filter((x) => x.profile?.byKind)) {
      const prof = r.profile.byKind;
      const total = Object.values(prof).reduce((a, b) => a + b.ms, 0);
      lines.push('', `Where ${r.label}'s time goes (per-layer medians, profileLayers): ${Object.entries(prof).sort((a, b) => b[1].ms - a[1].ms)
        .map(([k, p]) => `${k} ${p.ms.toFixed(1)} ms (${((100 * p.ms) / total).toFixed(0)}%${rate(p)})`).join(', ')}.`);
    }
  }
  const lite0 = results.find((r) => r.key === 'edgetune-int8@lite0');
  const peak = lite0?.profile?.peakMacsPerS;
  if (peak) {
    const macs = lite0.profile.macs;
    const pw = lite0.profile.byKind.pointwise;
    lines.push('', `Measured ceiling of the int8 GEMM's SIMD mix in this browser, in the module the 1-thread contender loaded (${lite0.detail}; plain: i32x4.dot_i16x8_s + i32x4.add, relaxed: i32x4.relaxed_dot_i8x16_i7x16_add_s at 8 useful multiply-adds each; no loads; simdPeak): ${(peak / 1e9).toFixed(1)} GMAC/s; the pointwise layers run at ${(pw.macs / pw.ms / 1e6).toFixed(1)} GMAC/s (${((100 * pw.macs / pw.ms * 1e3) / peak).toFixed(0)}% of it), the whole Lite0 network at ${(macs / lite0.median / 1e6).toFixed(1)} GMAC/s (${((100 * macs / lite0.median * 1e3) / peak).toFixed(0)}%).`);
  }
  const text = lines.join('\n');
  console.log(`\n${text}`);
  fs.writeFileSync(path.join(ROOT, 'bench/results.md'), `${text}\n`);
  fs.writeFileSync(path.join(ROOT, 'bench/results.json'), JSON.stringify({ machine: { cpu, cores: CORES, chromium }, runs: RUNS, ratios, results }, null, 2));
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
