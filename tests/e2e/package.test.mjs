// The npm package @edgetune/web as an app uses it: scripts/build-package.sh packs it,
// examples/teach installs the tarball, `tsc --noEmit` checks the app against the package's
// types (and a misuse must fail to compile), Vite builds it, and headless Chromium runs it:
// classify a shared photo, teach two classes, train, classify again, save and load, and the
// typed errors. Every object the API returned is checked against the interface index.d.ts
// declares for it (read with the TypeScript compiler: no field missing, none undeclared, each
// of its declared type). The public .d.ts files have no `any`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import zlib from 'node:zlib';
import path from 'node:path';
import { createRequire } from 'node:module';
import { launch, openPage, SHARED, SMALL_MODEL, startServer } from './browser.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const EXAMPLE = path.join(ROOT, 'examples/teach');
const PHOTOS = path.join(SHARED, 'data/photos');
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package/package.json'), 'utf8')).version;
const TGZ = path.join(ROOT, 'dist', `edgetune-web-${VERSION}.tgz`);
const INSTALLED = path.join(EXAMPLE, 'node_modules/@edgetune/web');

// A command's output; a failure says what it printed.
function run(cmd, args, cwd = ROOT) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    e.message = `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`;
    throw e;
  }
}

// The declarations in `file` as plain data the page can check values with:
// name -> { kind: 'object', props: [{ name, optional, type }] } or a type (see typeOf).
function declarations(file) {
  const ts = createRequire(path.join(EXAMPLE, 'package.json'))('typescript');
  const src = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const typeOf = (n) => {
    switch (n.kind) {
      case ts.SyntaxKind.StringKeyword: return { kind: 'string' };
      case ts.SyntaxKind.NumberKeyword: return { kind: 'number' };
      case ts.SyntaxKind.BooleanKeyword: return { kind: 'boolean' };
      case ts.SyntaxKind.LiteralType:
        if (n.literal.kind === ts.SyntaxKind.NullKeyword) return { kind: 'null' };
        if (ts.isStringLiteral(n.literal)) return { kind: 'literal', value: n.literal.text };
        if (ts.isNumericLiteral(n.literal)) return { kind: 'literal', value: Number(n.literal.text) };
        break;
      case ts.SyntaxKind.UnionType: return { kind: 'union', of: n.types.map(typeOf) };
      case ts.SyntaxKind.ArrayType: return { kind: 'array', of: typeOf(n.elementType) };
      case ts.SyntaxKind.TupleType: return { kind: 'tuple', of: n.elements.map(typeOf) };
      case ts.SyntaxKind.TypeLiteral: return objectOf(n.members);
      case ts.SyntaxKind.ParenthesizedType: return typeOf(n.type);
      case ts.SyntaxKind.TypeReference: {
        const name = n.typeName.getText(src);
        if (name === 'Array') return { kind: 'array', of: typeOf(n.typeArguments[0]) };
        return { kind: 'ref', name };
      }
      default: break;
    }
    return { kind: 'unchecked', text: n.getText(src) };
  };
  const objectOf = (members) => ({
    kind: 'object',
    props: members.filter(ts.isPropertySignature).map((m) => ({ name: m.name.getText(src), optional: Boolean(m.questionToken), type: typeOf(m.type) })),
  });
  const out = {};
  for (const s of src.statements) {
    if (ts.isInterfaceDeclaration(s)) {
      out[s.name.text] = objectOf(s.members);
    } else if (ts.isTypeAliasDeclaration(s)) {
      out[s.name.text] = typeOf(s.type);
    }
  }
  return out;
}

// Runs in the page (and in Node): the problems of `value` against declaration `name`, or
// against a type given as data (empty: conforms).
function conformance(decls, value, name) {
  const problems = [];
  const check = (v, t, at) => {
    switch (t.kind) {
      case 'string': case 'number': case 'boolean':
        if (typeof v !== t.kind) problems.push(`${at}: ${typeof v}, declared ${t.kind}`);
        return;
      case 'null': if (v !== null) problems.push(`${at}: not null`); return;
      case 'literal': if (v !== t.value) problems.push(`${at}: ${JSON.stringify(v)}, declared ${JSON.stringify(t.value)}`); return;
      case 'union': {
        const before = problems.length;
        for (const u of t.of) {
          const mark = problems.length;
          check(v, u, at);
          if (problems.length === mark) { problems.length = before; return; }
          problems.length = mark;
        }
        problems.push(`${at}: ${JSON.stringify(v)?.slice(0, 80)} is none of the union`);
        return;
      }
      case 'array':
        if (!Array.isArray(v)) problems.push(`${at}: not an array`);
        else v.forEach((x, i) => check(x, t.of, `${at}[${i}]`));
        return;
      case 'tuple':
        if (!Array.isArray(v) || v.length !== t.of.length) problems.push(`${at}: not a ${t.of.length}-tuple`);
        else v.forEach((x, i) => check(x, t.of[i], `${at}[${i}]`));
        return;
      case 'ref':
        if (globalThis[t.name] && typeof globalThis[t.name] === 'function' && !decls[t.name]) {
          if (!(v instanceof globalThis[t.name])) problems.push(`${at}: not a ${t.name}`);
          return;
        }
        if (!decls[t.name]) { problems.push(`${at}: ${t.name} is not declared`); return; }
        check(v, decls[t.name], at);
        return;
      case 'object': {
        if (!v || typeof v !== 'object') { problems.push(`${at}: not an object`); return; }
        const names = new Set(t.props.map((p) => p.name));
        for (const k of Object.keys(v)) if (!names.has(k)) problems.push(`${at}.${k}: not declared`);
        for (const p of t.props) {
          if (!(p.name in v) || v[p.name] === undefined) { if (!p.optional) problems.push(`${at}.${p.name}: missing`); continue; }
          check(v[p.name], p.type, `${at}.${p.name}`);
        }
        return;
      }
      default: problems.push(`${at}: type ${t.text} is not checked`);
    }
  };
  if (typeof name === 'string') check(value, { kind: 'ref', name }, name);
  else check(value, name, 'value');
  return problems;
}

// Declarations with comments stripped: what `any` would have to be written in.
const code = (text) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

test('@edgetune/web: packed, installed by an example app, type-checked, bundled by Vite and run in Chromium', { timeout: 900_000 }, async () => {
  assert.ok(fs.existsSync(path.join(EXAMPLE, 'node_modules/vite')), 'examples/teach has no node_modules: scripts/test-deps.sh installs them');
  console.log(run('bash', ['scripts/build-package.sh']).trim());
  assert.ok(fs.existsSync(TGZ), `${TGZ} was not made`);
  const listed = run('tar', ['-tzf', TGZ]).split('\n').filter(Boolean);
  assert.deepEqual(listed.filter((f) => f.endsWith('.d.ts')).sort(), ['package/engine.d.ts', 'package/importer.d.ts', 'package/index.d.ts'],
    'the package ships its own declarations only (no wasm-bindgen ones typed `any`)');

  // Installed the way an app installs a package (the tarball, not a link), without touching
  // the example's package.json or lock file.
  fs.rmSync(INSTALLED, { recursive: true, force: true });
  run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefer-offline', TGZ], EXAMPLE);
  for (const f of ['index.d.ts', 'engine.d.ts', 'importer.d.ts']) {
    const hits = code(fs.readFileSync(path.join(INSTALLED, f), 'utf8')).split('\n').filter((l) => /\bany\b/.test(l));
    assert.deepEqual(hits, [], `${f} has \`any\``);
  }

  // The app type-checks against the package's types, and a misuse does not.
  run('node', ['node_modules/typescript/bin/tsc', '--noEmit', '-p', '.'], EXAMPLE);
  const bad = path.join(EXAMPLE, 'src/misuse-check.ts');
  fs.writeFileSync(bad, "import { createClassifier } from '@edgetune/web';\nconst c = await createClassifier({ backend: 'tpu' });\nawait c.classify('photo.jpg');\nconst n: string = (await c.train()).epochs;\nexport { n };\n");
  let misuse = '';
  try {
    run('node', ['node_modules/typescript/bin/tsc', '--noEmit', '-p', '.'], EXAMPLE);
  } catch (e) {
    misuse = String(e.stdout);
  } finally {
    fs.rmSync(bad);
  }
  for (const want of [/misuse-check\.ts\(2,.*'"tpu"' is not assignable/, /misuse-check\.ts\(3,.*'string' is not assignable to parameter of type 'ImageInput'/, /misuse-check\.ts\(4,.*'number' is not assignable to type 'string'/]) {
    assert.match(misuse, want, `tsc did not refuse a misuse:\n${misuse}`);
  }

  fs.rmSync(path.join(EXAMPLE, 'dist'), { recursive: true, force: true });
  console.log(run('node', ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], EXAMPLE).trim());
  const built = fs.readdirSync(path.join(EXAMPLE, 'dist/assets'));
  const bytes = (f) => fs.statSync(path.join(EXAMPLE, 'dist/assets', f)).size;
  console.log(`example app built: ${built.length} assets, ${(built.reduce((s, f) => s + bytes(f), 0) / 1e6).toFixed(2)} MB in all`);

  const decls = declarations(path.join(INSTALLED, 'index.d.ts'));
  // The checker itself refuses what does not conform (a missing field, a wrong type, an extra one).
  assert.deepEqual(conformance(decls, { index: 1, label: 2, extra: true }, 'Prediction'),
    ['Prediction.extra: not declared', 'Prediction.label: number, declared string', 'Prediction.probability: missing']);
  const { server, url } = await startServer({ port: 0, dir: path.join(EXAMPLE, 'dist') });
  const { browser, cleanup } = await launch();
  try {
    const requested = new Set(); // every path the page and its workers fetched, as the server saw them
    server.on('request', (req) => requested.add(new URL(req.url, url).pathname));
    const { page, foreign, errors } = await openPage(browser, url);
    await page.waitForFunction(() => document.body.dataset.ready || window.example.error, null, { timeout: 120_000 });
    assert.equal(await page.evaluate(() => window.example.error ?? null), null);
    const status = () => page.locator('#status').textContent();
    const click = async (id, done) => {
      await page.click(`#${id}`);
      await page.waitForFunction((re) => new RegExp(re).test(document.querySelector('#status').textContent), done.source, { timeout: 120_000 });
    };
    const classify = async (names) => {
      await page.setInputFiles('#photo', names.map((n) => path.join(PHOTOS, n)));
      const before = await page.evaluate(() => window.example.results.length);
      await click('classify', /^classified|^error/);
      assert.doesNotMatch(await status(), /^error/);
      return page.evaluate((n) => window.example.results.slice(n).map((r) => ({ label: r.label, top: r.top[0].label, head: r.head && r.head[0].label, ms: r.ms })), before);
    };

    const [first] = await classify(['parrot.jpg']);
    const visit = [...requested];
    const backend = await page.evaluate(() => window.example.classifier.whenBackendSettled());
    console.log(`parrot.jpg before teaching: ${first.label} (${first.ms.toFixed(1)} ms); backend ${backend.backend} (${backend.reason}); CPU module ${backend.cpu.variant}, ${backend.cpu.threads} threads`);
    assert.equal(first.label, 'macaw');
    assert.equal(first.head, null);

    const birds = ['bird.bmp', 'parrot.jpg', 'owl.jpg'];
    const other = ['hot_dog.jpg', 'sunflower.bmp', 'grace_hopper.bmp'];
    for (const [name, files] of [['birds', birds], ['not birds', other]]) {
      await page.fill('#label', name);
      await page.setInputFiles('#photo', files.map((n) => path.join(PHOTOS, n)));
      await click('teach', new RegExp(`^"${name}" has 3 example|^error`));
      assert.match(await status(), new RegExp(`"${name}" has 3 example`));
    }
    await click('train', /^trained|^error/);
    assert.match(await status(), /^trained birds \/ not birds/);

    const after = await classify([...birds, ...other]);
    assert.deepEqual(after.map((r) => r.label), [...birds.map(() => 'birds'), ...other.map(() => 'not birds')]);
    assert.deepEqual(after.map((r) => r.top), (await classify([...birds, ...other])).map((r) => r.top), "the model's own classes are still there");
    const unseen = await classify(['cat.bmp', 'dragonfly.bmp', 'kite_and_cold.jpg']);
    console.log(`photos not taught: ${unseen.map((r, i) => `${['cat', 'dragonfly', 'kite'][i]} -> ${r.label}`).join(', ')}`);

    // Everything the API returned, against its declaration; then save/load, export and errors.
    const report = await page.evaluate(async ({ decls, conformanceSrc, smallModel }) => {
      const conforms = new Function(`return (${conformanceSrc})`)();
      const ex = window.example;
      const clf = ex.classifier;
      const problems = [];
      const expect = (value, name) => problems.push(...conforms(decls, value, name));
      for (const r of ex.results) expect(r, 'Classification');
      const photo = { data: new Uint8ClampedArray(64 * 48 * 4).fill(200), width: 64, height: 48 };
      const full = await clf.classify(photo, { include: ['embedding', 'logits'] });
      expect(full, 'Classification');
      expect(ex.trained, 'TrainResult');
      expect(clf.backend, 'BackendReport');
      expect(await clf.whenBackendSettled(), 'BackendReport');
      expect(clf.info, 'ModelInfo');
      for (const e of clf.examples) expect(e, 'Example');
      const saved = clf.save();
      expect(saved, 'SavedClassifier');

      // save -> structured clone (as IndexedDB stores it) -> load: the same answers.
      const again = structuredClone(saved);
      const before = await clf.classify(photo, { include: ['logits'] });
      clf.forget();
      await clf.load(again);
      const loaded = await clf.classify(photo, { include: ['logits'] });
      const same = JSON.stringify(before.head) === JSON.stringify(loaded.head) && before.logits.every((v, i) => v === loaded.logits[i]);

      const etm = await clf.exportModel();
      const errors = {};
      const code = async (what, f) => {
        try { await f(); errors[what] = 'no error'; } catch (e) { errors[what] = `${e.name}/${e.code}`; }
      };
      await code('empty label', () => clf.teach('  ', photo));
      await code('bad pixels', () => clf.classify({ data: new Uint8Array(10), width: 64, height: 48 }));
      await code('foreign state', () => clf.load({ ...saved, backbone: 'another' }));
      await code('one class', async () => { clf.forget(); await clf.teach('only', photo); await clf.train(); });
      // A TFLite file (bytes from the test): the importer module is fetched then, not before.
      const tflite = await ex.api.createClassifier({ model: Uint8Array.from(smallModel), backend: 'cpu' });
      const imported = { info: tflite.info, answer: await tflite.classify(photo) };
      expect(imported.answer, 'Classification');
      expect(imported.info, 'ModelInfo');
      tflite.dispose();
      await code('disposed', () => tflite.classify(photo));
      // A corrupt model and a missing one: typed errors, and the page's classifier goes on.
      await code('corrupt model', () => ex.api.createClassifier({ model: new Uint8Array(4096).fill(7) }));
      await code('missing model', () => ex.api.createClassifier({ model: '/no-such-model.etm' }));
      return { imported: { architecture: imported.info.architecture, classes: imported.info.classes, label: imported.answer.label }, problems, same, etmBytes: etm.length, etmMagic: new TextDecoder().decode(etm.subarray(8, 200)).includes('edgetune-model'), errors, dim: full.embedding.length, logits: full.logits.length };
    }, { decls, conformanceSrc: conformance.toString(), smallModel: [...fs.readFileSync(SMALL_MODEL)] });
    console.log(`${path.basename(SMALL_MODEL)} opened by createClassifier: ${report.imported.architecture}, ${report.imported.classes} classes`);
    assert.equal(report.imported.classes, 1001);
    assert.deepEqual(report.problems, [], 'every object the API returned is what index.d.ts declares');
    assert.ok(report.same, 'a saved and loaded classifier answers exactly as before');
    assert.ok(report.etmMagic && report.etmBytes > 1e6, 'exportModel gives an .etm file');
    assert.deepEqual(report.errors, {
      'empty label': 'EdgetuneError/input-invalid',
      'bad pixels': 'EdgetuneError/input-invalid',
      'foreign state': 'EdgetuneError/state-invalid',
      'one class': 'EdgetuneError/samples-insufficient',
      'corrupt model': 'EdgetuneError/model-invalid',
      'missing model': 'EdgetuneError/model-unavailable',
      disposed: 'EdgetuneError/disposed',
    });

    assert.deepEqual(foreign, [], 'no request left the origin');
    // The one 404 is the missing model asked for on purpose.
    const notFound = errors.filter((e) => /status of 404/.test(e));
    assert.ok(notFound.length <= 1, errors.join('\n'));
    assert.deepEqual(errors.filter((e) => !notFound.includes(e)), [], 'no console error');
    // What a visit loads: everything fetched up to the first answer (the page, its chunks, the
    // workers, one engine module and the model), and its size gzip-compressed as a server would.
    const dist = path.join(EXAMPLE, 'dist');
    const file = (p) => path.join(dist, p === '/' ? 'index.html' : p);
    const raw = (p) => (fs.existsSync(file(p)) ? fs.statSync(file(p)).size : 0);
    const gz = (p) => (fs.existsSync(file(p)) ? zlib.gzipSync(fs.readFileSync(file(p)), { level: 9 }).length : 0);
    const sum = (f, which = () => true) => visit.filter(which).reduce((s, p) => s + f(p), 0);
    const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
    const code = (p) => !p.endsWith('.etm');
    console.log(`a visit to the first answer fetched ${visit.length} files, ${mb(sum(raw))} (${mb(sum(gz))} gzip; without the model ${mb(sum(raw, code))}, ${mb(sum(gz, code))} gzip): ${visit.map((p) => `${path.basename(p) || 'index.html'} ${(raw(p) / 1e3).toFixed(0)} KB`).join(', ')}`);
  } finally {
    await cleanup();
    server.close();
  }
});

// The wasm-bindgen module underneath (@edgetune/web/engine), run in Node on the packed files:
// what it returns is what engine.d.ts declares (its own generated types say `any`).
test('@edgetune/web/engine: the wasm module returns what engine.d.ts declares', { timeout: 300_000 }, async () => {
  assert.ok(fs.existsSync(path.join(INSTALLED, 'engine.d.ts')), 'the package test above installs the package first');
  const decls = declarations(path.join(INSTALLED, 'engine.d.ts'));
  const m = await import(path.join(INSTALLED, 'pkg/edgetune.js'));
  await m.default({ module_or_path: fs.readFileSync(path.join(INSTALLED, 'pkg/edgetune_bg.wasm')) });
  const model = new Uint8Array(fs.readFileSync(path.join(INSTALLED, 'models/efficientnet_lite0.int8.etm')));
  const problems = [];
  const expect = (value, name) => problems.push(...conformance(decls, value, name));
  expect(m.modelInfo(model), 'ModelInfoRaw');
  const engine = await m.Engine.create(model, 'cpu');
  expect(engine.backend(), 'EngineReport');
  expect(engine.info(), 'ModelInfoRaw');
  assert.deepEqual(engine.info(), m.modelInfo(model), 'Engine.info() is modelInfo of the same bytes');
  const side = engine.frameSize();
  const rgba = new Uint8Array(side * side * 4).map((_, i) => (i * 7) % 251);
  const first = await engine.classify(rgba, side, side, 3, ['embedding', 'logits']);
  expect(first, 'EngineClassification');
  const dim = first.embedding.length;
  const t = new m.HeadTrainer(dim, ['a', 'b'], { epochs: 3, validation: 0.5, seed: 1 });
  for (let i = 0; i < 8; i++) t.addSample(Float32Array.from(first.embedding, (v, j) => v + ((i * 31 + j) % 5) * 0.01), i % 2);
  t.start();
  let p;
  while ((p = t.runEpoch()) !== null) expect(p, 'EpochProgress');
  const r = t.result();
  expect(r, 'HeadTrainerResult');
  const top = engine.setHead(Float32Array.from(r.weight), Float32Array.from(r.bias), r.classes, 2, 'x');
  expect(top, { kind: 'union', of: [{ kind: 'array', of: { kind: 'ref', name: 'TopClass' } }, { kind: 'null' }] });
  expect(await engine.classify(rgba, side, side, 2), 'EngineClassification');
  engine.free();
  assert.deepEqual(problems, [], 'every object the engine returned is what engine.d.ts declares');
});
