// Runs a wasm32-wasip1 test binary inside headless Chromium (Debian's, via playwright-core),
// for the builds Node cannot run faithfully: Node 20's V8 (11.3) accepts relaxed SIMD behind
// a flag but computes `i32x4.relaxed_dot_i8x16_i7x16_add_s` wrongly (twice the dot product,
// accumulator dropped), while Chromium's V8 gives the defined sums. Used as cargo's runner for
// the relaxed-SIMD unit tests (scripts/test.sh). Exit status is the test binary's.
//
// The page gets a minimal WASI preview1: arguments, stdout/stderr (streamed here), clocks,
// random bytes, exit. No files and no environment: the tests run this way are the kernel
// tests (`ops::`), which need neither; any other call answers ENOSYS so a test that wants it
// fails loudly instead of passing on missing data.
import fs from 'node:fs';
import { launch } from '../tests/e2e/browser.mjs';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/wasi-run-chromium.mjs <test.wasm> [args]');
  process.exit(2);
}
const ORIGIN = 'http://wasi-runner.invalid';
const { browser, cleanup } = await launch({ webgpu: false });
let code = 1;
try {
  const page = await browser.newPage();
  await page.route(`${ORIGIN}/**`, (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/test.wasm') {
      return route.fulfill({ status: 200, contentType: 'application/wasm', body: fs.readFileSync(file) });
    }
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>wasi</title>' });
  });
  await page.exposeFunction('wasiOut', (fd, text) => (fd === 2 ? process.stderr : process.stdout).write(text));
  await page.goto(`${ORIGIN}/`);
  code = await page.evaluate(runInPage, [file, ...args]);
} finally {
  await cleanup();
}
process.exitCode = code;

/** Runs in the page: instantiates the test binary against the WASI subset and returns its exit code. */
async function runInPage(argv) {
  const ENOSYS = 52, EBADF = 8;
  const module = await WebAssembly.compileStreaming(fetch('/test.wasm'));
  let memory;
  const view = () => new DataView(memory.buffer);
  const bytes = () => new Uint8Array(memory.buffer);
  const enc = new TextEncoder(), dec = new TextDecoder();
  const argBytes = argv.map((a) => enc.encode(`${a}\0`));
  class Exit { constructor(code) { this.code = code; } }
  const wasi = {
    args_sizes_get(countPtr, sizePtr) {
      view().setUint32(countPtr, argBytes.length, true);
      view().setUint32(sizePtr, argBytes.reduce((s, b) => s + b.length, 0), true);
      return 0;
    },
    args_get(argvPtr, bufPtr) {
      for (const [i, b] of argBytes.entries()) {
        view().setUint32(argvPtr + 4 * i, bufPtr, true);
        bytes().set(b, bufPtr);
        bufPtr += b.length;
      }
      return 0;
    },
    environ_sizes_get(countPtr, sizePtr) {
      view().setUint32(countPtr, 0, true);
      view().setUint32(sizePtr, 0, true);
      return 0;
    },
    environ_get() { return 0; },
    fd_write(fd, iovs, iovsLen, nwrittenPtr) {
      if (fd !== 1 && fd !== 2) return EBADF;
      let n = 0, text = '';
      for (let i = 0; i < iovsLen; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true), len = view().getUint32(iovs + 8 * i + 4, true);
        text += dec.decode(bytes().slice(ptr, ptr + len));
        n += len;
      }
      window.wasiOut(fd, text);
      view().setUint32(nwrittenPtr, n, true);
      return 0;
    },
    fd_prestat_get() { return EBADF; },
    clock_time_get(_id, _precision, outPtr) {
      view().setBigUint64(outPtr, BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)), true);
      return 0;
    },
    random_get(ptr, len) {
      for (let o = 0; o < len; o += 65536) crypto.getRandomValues(bytes().subarray(ptr + o, ptr + Math.min(len, o + 65536)));
      return 0;
    },
    sched_yield() { return 0; },
    proc_exit(code) { throw new Exit(code); },
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = wasi[imp.name] ?? (() => ENOSYS);
  }
  const instance = await WebAssembly.instantiate(module, imports);
  memory = instance.exports.memory;
  try {
    instance.exports._start();
    return 0;
  } catch (e) {
    if (e instanceof Exit) return e.code;
    window.wasiOut(2, `\n${e}\n`);
    return 1;
  }
}
