// Vite builds the app and everything @edgetune/web brings: its workers (module workers, since
// they import the engine chunks on demand), the wasm engines and the default model, as assets.
export default {
  build: { target: 'es2022' },
  worker: { format: 'es' },
  // COOP/COEP: cross-origin isolation, so the engine can run on several threads.
  server: { headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } },
  preview: { headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } },
  // The dev server's dependency pre-bundling would move the package's modules away from the
  // workers and wasm files they name relative to themselves.
  optimizeDeps: { exclude: ['@edgetune/web'] },
};
