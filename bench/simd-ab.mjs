// Plain SIMD (pkg/) against relaxed SIMD (pkg/relaxed/) on the built-in Lite0 int8 model, in one
// headless Chromium page, interleaved (plain, relaxed, plain, ...) so the machine's drift hits
// both alike: `node bench/simd-ab.mjs` prints min / median wall ms of `classify` over RUNS
// (40) runs each, the per-kind `profileLayers` sums, and each module's `simdPeak` ceiling.
import { launch, openPage } from '../tests/e2e/browser.mjs';
import { startServer } from '../scripts/serve.mjs';

const RUNS = Number(process.env.RUNS || 40);
const { server, url } = await startServer({ port: 0 });
const { browser, cleanup } = await launch({ webgpu: false });
try {
  const { page } = await openPage(browser, `${url}?backend=cpu`);
  const out = await page.evaluate(async (runs) => {
    const { loadEngine } = await import('/lib/engine-loader.js');
    const vs = [await loadEngine({ threads: 1, simd: 'plain' }), await loadEngine({ threads: 1 })];
    const bytes = new Uint8Array(await (await fetch('/models/efficientnet_lite0.int8.etm')).arrayBuffer());
    const engines = await Promise.all(vs.map((v) => v.module.Engine.create(bytes, 'cpu')));
    const side = 224;
    const rgba = new Uint8Array(side * side * 4).map((_, i) => (i * 7919) & 255);
    const ms = [[], []];
    for (let r = 0; r < runs; r++) {
      for (const i of [0, 1]) {
        const t0 = performance.now();
        await engines[i].classify(rgba, side, side, 5);
        ms[i].push(performance.now() - t0);
      }
    }
    return vs.map((v, i) => {
      const sorted = ms[i].sort((a, b) => a - b);
      const byKind = {};
      for (const l of v.module.profileLayers(bytes, rgba, side, side, 9)) byKind[l.kind] = +((byKind[l.kind] || 0) + l.ms).toFixed(2);
      const peak = Math.max(...[0, 1, 2].map(() => v.module.simdPeak(20_000_000) || 0));
      return { module: v.variant, minMs: +sorted[0].toFixed(2), medianMs: +sorted[sorted.length >> 1].toFixed(2), byKind, peakGmacPerS: +(peak / 1e9).toFixed(1) };
    });
  }, RUNS);
  for (const r of out) console.log(JSON.stringify(r));
} finally {
  await cleanup();
  server.close();
}
