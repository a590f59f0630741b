// Every engine module, by variant (lib/engine-loader.js picks one), as literal relative
// specifiers: served as they are, they resolve next to this file (www/lib/ -> /pkg/...; the npm
// package keeps the same layout), and a bundler (Vite, Rollup, webpack) sees each import and
// ships it as a chunk, with the wasm file its glue names as an asset. A template-string import
// would be invisible to it. A module of its own so the pool helper worker can import it without
// the loader (which starts that worker).
export const ENGINE_MODULES = {
  single: () => import('../pkg/edgetune.js'),
  relaxed: () => import('../pkg/relaxed/edgetune.js'),
  threads: () => import('../pkg/threads/edgetune.js'),
  'threads-relaxed': () => import('../pkg/threads-relaxed/edgetune.js'),
};
