// One contender of the browser benchmark, in the page (bench/browser.mjs opens one fresh
// browser per contender): ?engine=edgetune-int8 | edgetune-f32 | edgetune-webgpu |
// ort-f32 | ort-int8. All run EfficientNet-Lite0 224x224, batch 1, single-threaded, on the
// same photo drawn to a 224x224 canvas (centre square). Timed: the model run only (edgetune's
// `ms`, which starts after its own preprocessing; onnxruntime's `session.run` on a prepared
// NCHW tensor), after warm-up. Also: ms from navigation start to the first result, and the
// top-1 class index, so the contenders can be checked against each other.
const params = new URLSearchParams(location.search);
const engine = params.get('engine');
const WARMUP = Number(params.get('warmup') || 5);
const RUNS = Number(params.get('runs') || 50);
const SIDE = 224;

async function photo() {
  const bmp = await createImageBitmap(await (await fetch('/photo')).blob());
  const s = Math.min(bmp.width, bmp.height);
  const c = new OffscreenCanvas(SIDE, SIDE);
  const g = c.getContext('2d');
  g.drawImage(bmp, (bmp.width - s) / 2, (bmp.height - s) / 2, s, s, 0, 0, SIDE, SIDE);
  return g.getImageData(0, 0, SIDE, SIDE).data;
}

const argmax = (v) => v.reduce((b, x, i) => (x > v[b] ? i : b), 0);

async function edgetune(rgba, model, backend) {
  const m = await import('/pkg/edgetune.js');
  await m.default();
  const bytes = new Uint8Array(await (await fetch(`/models/${model}`)).arrayBuffer());
  const e = await m.Engine.create(bytes, backend);
  const report = e.backend();
  if (report.backend !== backend) throw new Error(`asked for ${backend}, got ${report.backend}: ${report.reason}`);
  const once = async () => {
    const r = await e.classify(new Uint8Array(rgba), SIDE, SIDE, 1);
    return { ms: r.ms, top: r.top[0].index };
  };
  // Where the time goes, by layer kind (CPU path, int8 and f32): medians of 5 runs per node.
  const profile = backend === 'cpu' ? () => {
    const rows = m.profileLayers(bytes, new Uint8Array(rgba), SIDE, SIDE, 5);
    const byKind = {};
    for (const r of rows) {
      const k = (byKind[r.kind] ||= { ms: 0, macs: 0 });
      k.ms += r.ms;
      k.macs += r.macs;
    }
    // The SIMD instruction mix's ceiling (no memory traffic): best of 3 after a warm-up
    // call, so V8's optimizing tier is measured, not its baseline compiler.
    m.simdPeak(5_000_000);
    const peak = Math.max(...[0, 1, 2].map(() => m.simdPeak(20_000_000) || 0));
    return { byKind, peakMacsPerS: peak };
  } : null;
  return { once, profile, detail: `${report.device}${report.variant ? ` (${report.variant})` : ''}` };
}

async function ort(rgba, model) {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/ort/';
  const session = await ort.InferenceSession.create(`/onnx/${model}`, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  // The model's own preprocessing, (x - 127) / 128 (as in the .etm header), NCHW.
  const x = new Float32Array(3 * SIDE * SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) for (let c = 0; c < 3; c++) x[c * SIDE * SIDE + i] = (rgba[4 * i + c] - 127) / 128;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, [1, 3, SIDE, SIDE]) };
  const once = async () => {
    const t0 = performance.now();
    const out = await session.run(feeds);
    const ms = performance.now() - t0;
    return { ms, top: argmax(out[session.outputNames[0]].data) };
  };
  return { once, detail: `onnxruntime-web ${ort.env.versions?.web ?? ''} wasm, 1 thread` };
}

async function main() {
  const rgba = await photo();
  const c = {
    'edgetune-int8': () => edgetune(rgba, 'efficientnet_lite0.int8.etm', 'cpu'),
    'edgetune-f32': () => edgetune(rgba, 'efficientnet_lite0.f32.etm', 'cpu'),
    'edgetune-webgpu': () => edgetune(rgba, 'efficientnet_lite0.int8.etm', 'gpu'),
    'ort-f32': () => ort(rgba, 'lite0.f32.onnx'),
    'ort-int8': () => ort(rgba, 'lite0.int8.onnx'),
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
