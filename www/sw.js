// Service worker: the app works offline after the first visit.
// - install: caches the app shell, the wasm engines (plain and relaxed SIMD, single and
//   threaded), the importer module and the default model;
// - fetch: same-origin GETs go to the network first (so a rebuilt engine is never served
//   stale while online), the fresh response refreshes the cache, and the cache answers when
//   the network fails. Requests to any other origin are not touched: never cached, never
//   forwarded (the page's Content-Security-Policy blocks them anyway).
const CACHE = 'edgetune-v6';
const SHELL = [
  '/',
  '/index.html',
  '/style.css',
  '/app.js',
  '/camera.js',
  '/wasm-support.js',
  '/store.js',
  '/project.js',
  '/lib/dom.js',
  '/lib/protocol.js',
  '/lib/state.js',
  '/views/live.js',
  '/views/classes.js',
  '/views/training.js',
  '/views/versions.js',
  '/views/models.js',
  '/views/federation.js',
  '/federation/fleet.js',
  '/federation/node.js',
  '/federation/objects.js',
  '/vendor/long.js',
  '/workers/engine.js',
  '/workers/trainer.js',
  '/workers/pool-helper.js',
  '/lib/engine-loader.js',
  '/lib/engine-modules.js',
  '/manifest.webmanifest',
  '/icon.svg',
  '/pkg/edgetune.js',
  '/pkg/edgetune_bg.wasm',
  // The threaded engine, which a cross-origin isolated page runs instead.
  '/pkg/threads/edgetune.js',
  '/pkg/threads/edgetune_bg.wasm',
  // Both again with relaxed SIMD, which browsers that validate it run (lib/engine-loader.js).
  '/pkg/relaxed/edgetune.js',
  '/pkg/relaxed/edgetune_bg.wasm',
  '/pkg/threads-relaxed/edgetune.js',
  '/pkg/threads-relaxed/edgetune_bg.wasm',
  // The model importers, loaded when a model file is opened: cached so that works offline too.
  '/pkg/importer/edgetune.js',
  '/pkg/importer/edgetune_bg.wasm',
  '/models/efficientnet_lite0.int8.etm',
];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  ev.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      // A full storage must not cost the user the fresh response: refreshing the cache is
      // best effort.
      if (res.ok && res.type === 'basic') await cache.put(req, res.clone()).catch((e) => console.warn('offline cache not refreshed:', e));
      return res;
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      if (req.mode === 'navigate') {
        const shell = await cache.match('/index.html');
        if (shell) return shell;
      }
      throw err;
    }
  })());
});
