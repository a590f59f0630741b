// Runs a wasm32-wasip1 test binary under Node's WASI (cargo's runner for that target, set in
// .cargo/config.toml), so the crate's unit tests exercise the wasm SIMD kernels exactly as
// the shipped module runs them, without a browser. Exit status is the test binary's.
import { WASI } from 'node:wasi';
import fs from 'node:fs';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/wasi-run.mjs <test.wasm> [args]');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(fs.readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
