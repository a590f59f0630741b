// One contender of the browser benchmark, in the page (bench/browser.mjs opens one fresh
// browser per contender): ?engine=edgetune|ort|litert&file=URL&side=S[&backend=gpu][&threads=N]
// [&simd=plain] (edgetune without its relaxed-SIMD builds).
// Every contender gets the same photo drawn to an S x S canvas (centre square), converted to
// its input before timing; timed: JS wall time around one inference call and reading its
// result, after warm-up. Also: ms from navigation start to the first result, and the top-1
// class index, so the contenders can be checked against each other.
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const file = params.get('file');
const SIDE = Number(params.get('side') || 224);
const WARMUP = Number(params.get('warmup') || 5);
const RUNS = Number(params.get('runs') || 50);

async function photo() {
  const bmp = await createImageBitmap(await (await fetch('/photo')).blob());
  const s = Math.min(bmp.width, bmp.height);
  const c = new OffscreenCanvas(SIDE, SIDE);
  const g = c.getContext('2d');
  g.drawImage(bmp, (bmp.width - s) / 2, (bmp.height - s) / 2, s, s, 0, 0, SIDE, SIDE);
  return g.getImageData(0, 0, SIDE, SIDE).data;
}

const argmax = (v) => v.reduce((b, x, i) => (x > v[b] ? i : b), 0);

// Wall time of `f()`, which returns the output scores' top-1 index.
async function timed(f) {
  const t0 = performance.now();
  const top = await f();
  return { ms: performance.now() - t0, top };
}

async function edgetune(rgba, backend, threads) {
  const { loadEngine } = await import('/lib/engine-loader.js');
  const loaded = await loadEngine({ threads, simd: params.get('simd') || 'auto' });
  if (loaded.threads !== threads) throw new Error(`asked for ${threads} threads, got ${loaded.threads}: ${loaded.reason}`);
  const m = loaded.module;
  const bytes = new Uint8Array(await (await fetch(file)).arrayBuffer());
  const e = await m.Engine.create(bytes, backend);
  const report = e.backend();
  if (report.backend !== backend) throw new Error(`asked for ${backend}, got ${report.backend}: ${report.reason}`);
  const input = new Uint8Array(rgba);
  const once = () => timed(async () => (await e.classify(input, SIDE, SIDE, 1)).top[0].index);
  // Where the time goes, by layer kind (CPU path): medians of 5 runs per node.
  const profile = backend === 'cpu' && threads === 1 ? () => {
    const rows = m.profileLayers(bytes, input, SIDE, SIDE, 5);
    const byKind = {};
    let macs = 0;
    for (const r of rows) {
      const k = (byKind[r.kind] ||= { ms: 0, macs: 0 });
      k.ms += r.ms;
      k.macs += r.macs;
      macs += r.macs;
    }
    // The SIMD instruction mix's ceiling (no memory traffic): best of 3 after a warm-up
    // call, so V8's optimizing tier is measured, not its baseline compiler.
    m.simdPeak(5_000_000);
    const peak = Math.max(...[0, 1, 2].map(() => m.simdPeak(20_000_000) || 0));
    return { byKind, macs, peakMacsPerS: peak };
  } : null;
  return { once, profile, detail: `${report.device}${report.variant ? ` (${report.variant})` : ''}, ${loaded.variant} module, ${threads} thread${threads > 1 ? 's' : ''}` };
}

async function ort(rgba) {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/ort/';
  const session = await ort.InferenceSession.create(file, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  // The model's own preprocessing, (x - 127) / 128 (as in the .etm header), NCHW.
  const x = new Float32Array(3 * SIDE * SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) for (let c = 0; c < 3; c++) x[c * SIDE * SIDE + i] = (rgba[4 * i + c] - 127) / 128;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, [1, 3, SIDE, SIDE]) };
  const once = () => timed(async () => argmax((await session.run(feeds))[session.outputNames[0]].data));
  return { once, detail: `onnxruntime-web ${ort.env.versions?.web ?? ''} wasm, 1 thread` };
}

// LiteRT.js on the .tflite file: the uint8 RGB input the quantized MobileNets take.
async function litert(rgba, threads) {
  const lr = await import('/litert-js/index.js');
  await lr.loadLiteRt('/litert/', threads > 1 ? { threads: true } : {});
  const model = await lr.loadAndCompile(file, { accelerator: 'wasm', cpuOptions: { numThreads: threads } });
  const rgb = new Uint8Array(SIDE * SIDE * 3);
  for (let i = 0; i < SIDE * SIDE; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c];
  const input = new lr.Tensor(rgb, [1, SIDE, SIDE, 3]);
  const once = () => timed(async () => {
    const out = await model.run(input);
    const top = argmax(out[0].toTypedArray());
    for (const t of out) t.delete();
    return top;
  });
  const relaxed = await lr.supportsFeature('relaxedSimd');
  return { once, detail: `LiteRT.js, ${threads} thread${threads > 1 ? 's' : ''}, relaxed SIMD ${relaxed ? 'on' : 'off'}` };
}

async function main() {
  const rgba = await photo();
  const threads = Number(params.get('threads') || 1);
  const c = {
    edgetune: () => edgetune(rgba, params.get('backend') || 'cpu', threads),
    ort: () => ort(rgba),
    litert: () => litert(rgba, threads),
  }[engine];
  if (!c) throw new Error(`unknown engine ${engine}`);
  const runner = await c();
  const first = await runner.once();
  const firstResultMs = performance.now();
  for (let i = 1; i < WARMUP; i++) await runner.once();
  const ms = [];
  for (let i = 0; i < RUNS; i++) ms.push((await runner.once()).ms);
  const profile = runner.profile ? runner.profile() : null;
  return { engine, detail: runner.detail, firstResultMs, top: first.top, ms, profile, crossOriginIsolated };
}

main().then((r) => { globalThis.benchResult = r; }, (e) => { globalThis.benchResult = { engine, error: String(e && e.stack ? e.stack : e) }; });
