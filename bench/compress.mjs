// The compression table on CIFAR-10 (`npm run bench -- compress`): every model is made from
// the EfficientNet-Lite0 f32 backbone by the edgetune CLI, trained on the first 250 images
// per class of train.bin (10% of them held out for validation, which picks the best epoch)
// and tested on all 2,000 images of test.bin. Writes bench/compress.json and bench/compress.md.
//
//   node bench/compress.mjs [--reuse]      (--reuse keeps models already in target/compress)
//
// Jobs run two at a time (the CI machine kind has 2 cores); the latencies are measured
// afterwards one model at a time: native with `edgetune bench --backend cpu`, wasm with the
// page's engine module under Node (same V8 and SIMD kernels as the page's worker).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { cliPath } from '../scripts/cargo-paths.mjs';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EXE = cliPath();
const OUT = path.join(ROOT, 'target/compress');
const DATA = path.resolve(ROOT, '../shared/data/cifar10');
const BACKBONE = path.join(ROOT, 'www/models/efficientnet_lite0.f32.etm');
const reuse = process.argv.includes('--reuse');

for (const [f, what] of [[EXE, 'npm run bench builds it'], [BACKBONE, 'scripts/models.sh makes it'], [path.join(DATA, 'train.bin'), 'the shared CIFAR-10 data is needed']]) {
  if (!fs.existsSync(f)) {
    console.error(`${f} is missing: ${what}`);
    process.exit(2);
  }
}
fs.mkdirSync(OUT, { recursive: true });
const m = (name) => path.join(OUT, `${name}.etm`);
const train = [`--data`, `cifar10:${DATA}/train.bin`, '--per-class', '250', '--mode', 'last-blocks:1', '--validation', '0.1'];
const unlabelled = ['--unlabelled', `cifar10:${DATA}/train.bin`, '--unlabelled-offset', '2500', '--unlabelled-count', '1000'];

// name -> { deps, args }: each job writes target/compress/<name>.etm and <name>.log.
const jobs = {
  ft: { deps: [], args: ['finetune', '--backbone', BACKBONE, ...train, '--epochs', '8', '--lr', '3e-3', '--out', m('ft')] },
  ...Object.fromEntries(['minmax', 'percentile', 'mse'].map((q) => [`ptq-${q}`, {
    deps: ['ft'], args: ['quantize', '--calib', `cifar10:${DATA}/train.bin`, '--samples', '100', '--method', q, m('ft'), m(`ptq-${q}`)],
  }])),
  qat: { deps: ['ft', 'ptq-mse'], args: ['qat', '--model', m('ft'), '--ptq', m('ptq-mse'), ...train, '--epochs', '4', '--lr', '3e-4', '--out', m('qat')] },
  pruned50: { deps: ['ft'], args: ['prune', '--model', m('ft'), '--sparsity', '0.5', ...train, '--epochs', '8', '--lr', '1e-3', '--out', m('pruned50')] },
  struct30: { deps: ['ft'], args: ['prune', '--structured', '--sparsity', '0.3', '--model', m('ft'), ...train, '--epochs', '8', '--lr', '3e-3', '--out', m('struct30')] },
  // Controls: the float model trained on with each compression's recipe and nothing else
  // (`prune --sparsity 0`), so each row can be compared with the same extra training.
  'ctl-qat': { deps: ['ft'], args: ['prune', '--model', m('ft'), '--sparsity', '0', ...train, '--epochs', '4', '--lr', '3e-4', '--out', m('ctl-qat')] },
  'ctl-prune': { deps: ['ft'], args: ['prune', '--model', m('ft'), '--sparsity', '0', ...train, '--epochs', '8', '--lr', '1e-3', '--out', m('ctl-prune')] },
  'ctl-struct': { deps: ['ft'], args: ['prune', '--model', m('ft'), '--sparsity', '0', ...train, '--epochs', '8', '--lr', '3e-3', '--out', m('ctl-struct')] },
  'struct30-ptq': { deps: ['struct30'], args: ['quantize', '--calib', `cifar10:${DATA}/train.bin`, '--samples', '100', '--method', 'mse', m('struct30'), m('struct30-ptq')] },
  'struct30-qat': { deps: ['struct30', 'struct30-ptq'], args: ['qat', '--model', m('struct30'), '--ptq', m('struct30-ptq'), ...train, '--epochs', '4', '--lr', '3e-4', '--out', m('struct30-qat')] },
  'struct30-0': { deps: ['ft'], args: ['prune', '--structured', '--sparsity', '0.3', '--model', m('ft'), ...train, '--epochs', '0', '--out', m('struct30-0')] },
  'struct30-kd': { deps: ['struct30-0', 'ctl-struct'], args: ['distill', '--teacher', m('ctl-struct'), '--student', m('struct30-0'), ...train, ...unlabelled, '--alpha', '0.5', '--temperature', '4', '--epochs', '8', '--lr', '3e-3', '--out', m('struct30-kd')] },
  student: { deps: ['ft'], args: ['prune', '--structured', '--sparsity', '0.5', '--model', m('ft'), ...train, '--epochs', '8', '--lr', '3e-3', '--out', m('student')] },
  student0: { deps: ['ft'], args: ['prune', '--structured', '--sparsity', '0.5', '--model', m('ft'), ...train, '--epochs', '0', '--out', m('student0')] },
  distilled: { deps: ['student0'], args: ['distill', '--teacher', m('ft'), '--student', m('student0'), ...train, '--alpha', '0.5', '--temperature', '4', '--epochs', '8', '--lr', '3e-3', '--out', m('distilled')] },
  'distilled-unlabelled': { deps: ['student0'], args: ['distill', '--teacher', m('ft'), '--student', m('student0'), ...train, ...unlabelled, '--alpha', '0.5', '--temperature', '4', '--epochs', '8', '--lr', '3e-3', '--out', m('distilled-unlabelled')] },
};
const rows = [
  ['ft', 'f32 fine-tuned (last block + head)'],
  ['ptq-minmax', 'PTQ int8, minmax calibration'],
  ['ptq-percentile', 'PTQ int8, percentile calibration'],
  ['ptq-mse', 'PTQ int8, mse calibration'],
  ['ctl-qat', 'control: f32 trained on like QAT (4 epochs, lr 3e-4)'],
  ['qat', 'QAT int8 (from PTQ mse)'],
  ['ctl-prune', 'control: f32 trained on like pruning (8 epochs, lr 1e-3)'],
  ['pruned50', '50% unstructured (trained layers)'],
  ['ctl-struct', 'control: f32 trained on like structured (8 epochs, lr 3e-3)'],
  ['struct30', 'structured, 30% fewer MACs'],
  ['struct30-qat', 'structured 30% + QAT int8'],
  ['struct30-kd', 'structured 30%, distilled from the control (+ 1,000 unlabelled)'],
  ['student', 'student: structured 50% fewer MACs, no teacher'],
  ['distilled', 'student distilled from the f32 model'],
  ['distilled-unlabelled', 'student distilled, + 1,000 unlabelled images'],
];
for (const [name] of rows) jobs[`eval-${name}`] = { deps: [name], eval: name };

const done = new Set();
const started = new Set();
const log = (s) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

async function runJob(name) {
  const job = jobs[name];
  if (job.eval) {
    const logFile = path.join(OUT, `${name}.log`);
    if (reuse && fs.existsSync(logFile) && fs.statSync(logFile).mtimeMs > fs.statSync(m(job.eval)).mtimeMs && /accuracy\s+[\d.]+%/.test(fs.readFileSync(logFile, 'utf8'))) {
      return log(`${name}: reusing ${logFile}`);
    }
    const { stdout } = await run(EXE, ['eval', '--backend', 'cpu', '--model', m(job.eval), '--data', `cifar10:${DATA}/test.bin`], { maxBuffer: 1 << 24 });
    fs.writeFileSync(path.join(OUT, `${name}.log`), stdout);
    return;
  }
  if (reuse && fs.existsSync(m(name))) return log(`${name}: reusing ${m(name)}`);
  const { stdout, stderr } = await run(EXE, job.args, { maxBuffer: 1 << 24 });
  fs.writeFileSync(path.join(OUT, `${name}.log`), `edgetune ${job.args.join(' ')}\n${stdout}${stderr}`);
}

await new Promise((resolve, reject) => {
  const pump = () => {
    if (done.size === Object.keys(jobs).length) return resolve();
    const running = started.size - done.size;
    const ready = Object.keys(jobs).filter((n) => !started.has(n) && jobs[n].deps.every((d) => done.has(d)));
    for (const n of ready.slice(0, Math.max(0, 2 - running))) {
      started.add(n);
      log(`${n}: start`);
      runJob(n).then(() => { done.add(n); log(`${n}: done`); pump(); }, (e) => reject(new Error(`${n}: ${e.stderr || e.message}`)));
    }
  };
  pump();
});

// Latencies, one model at a time.
const wasm = await import(path.join(ROOT, 'pkg/edgetune.js'));
await wasm.default({ module_or_path: fs.readFileSync(path.join(ROOT, 'pkg/edgetune_bg.wasm')) });
const rec = fs.readFileSync(path.join(DATA, 'test.bin')).subarray(0, 3073);
const rgba = new Uint8Array(32 * 32 * 4);
for (let i = 0; i < 1024; i++) rgba.set([rec[1 + i], rec[1 + 1024 + i], rec[1 + 2048 + i], 255], i * 4);
async function wasmMedian(file, runs = 50) {
  const engine = await wasm.Engine.create(fs.readFileSync(file), 'cpu');
  for (let i = 0; i < 3; i++) await engine.classify(rgba, 32, 32, 1);
  const t = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await engine.classify(rgba, 32, 32, 1);
    t.push(performance.now() - s);
  }
  engine.free();
  return t.sort((a, b) => a - b)[runs >> 1];
}

const pick = (text, re, what) => {
  const x = text.match(re);
  if (!x) throw new Error(`no ${what} in:\n${text}`);
  return x;
};
const results = [];
for (const [name, label] of rows) {
  const file = m(name);
  const { stdout: info } = await run(EXE, ['info', file]);
  const bench = path.join(OUT, `${name}.bench.json`);
  await run(EXE, ['bench', '--backend', 'cpu', '--model', file, '--runs', '50', '--json', bench]);
  const evalText = fs.readFileSync(path.join(OUT, `eval-${name}.log`), 'utf8');
  const trainLog = fs.existsSync(path.join(OUT, `${name}.log`)) ? fs.readFileSync(path.join(OUT, `${name}.log`), 'utf8') : '';
  const bytes = fs.readFileSync(file);
  const params = pick(info, /parameters\s+(\d+) \((\d+) /, 'parameters');
  const row = {
    name, label,
    precision: /precision\s+int8/.test(info) ? 'int8' : 'f32',
    params: Number(params[1]),
    zero_weights: Number(params[2]),
    bytes: bytes.length,
    gzip_bytes: zlib.gzipSync(bytes, { level: 9 }).length,
    macs: Number(pick(info, /MACs\s+(\d+)/, 'MACs')[1]),
    native_ms: JSON.parse(fs.readFileSync(bench, 'utf8')).network.median_ms,
    wasm_ms: await wasmMedian(file),
    test_accuracy: Number(pick(evalText, /accuracy\s+([\d.]+)% \(\d+\/(\d+)\)/, 'accuracy')[1]) / 100,
    validation_accuracy: (trainLog.match(/validation accuracy ([\d.]+)%/) || [])[1] ? Number(trainLog.match(/validation accuracy ([\d.]+)%/)[1]) / 100 : null,
    command: jobs[name].args ? `edgetune ${jobs[name].args.map((a) => a.replace(ROOT + '/', '').replace(DATA, '../shared/data/cifar10')).join(' ')}` : null,
  };
  results.push(row);
  log(`${name}: ${(100 * row.test_accuracy).toFixed(2)}% test, ${row.native_ms.toFixed(1)} ms native, ${row.wasm_ms.toFixed(1)} ms wasm`);
}

const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || 'unknown CPU';
fs.writeFileSync(path.join(ROOT, 'bench/compress.json'), JSON.stringify({ cpu, date: new Date().toISOString(), rows: results }, null, 2));
const base = results[0];
const md = [
  `CIFAR-10, EfficientNet-Lite0 backbone; trained on train.bin (250 per class, 10% held out), tested on all 2,000 test.bin images. ${cpu}, one thread; latency is one 224x224 image, median of 50.`,
  '',
  '| model | params | zero weights | file KB (gzip) | MMACs | native ms | wasm ms | test accuracy | vs f32 |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map((r) => `| ${r.label} | ${(r.params / 1e6).toFixed(2)} M | ${(100 * r.zero_weights / r.params).toFixed(0)}% | ${(r.bytes / 1024).toFixed(0)} (${(r.gzip_bytes / 1024).toFixed(0)}) | ${(r.macs / 1e6).toFixed(0)} | ${r.native_ms.toFixed(1)} | ${r.wasm_ms.toFixed(1)} | ${(100 * r.test_accuracy).toFixed(2)}% | ${r === base ? '' : `${(100 * (r.test_accuracy - base.test_accuracy)).toFixed(2)}`} |`),
  '',
].join('\n');
fs.writeFileSync(path.join(ROOT, 'bench/compress.md'), md);
console.log(`\n${md}\nwrote bench/compress.json and bench/compress.md`);
