// Federated fine-tuning end to end: the stock Flower SuperLink and the repository's FedAvg
// ServerApp (scripts/federation.mjs, flwr 1.42 pinned), and three headless Chromium pages as
// three devices, each with its own non-IID share of CIFAR-10 training images (four classes
// each), joining through the page's Fleet API client on the page's own origin.
//
// Checks: 3 rounds run; device C crashes (its Chromium killed) after round 1 and round 2 goes
// on without it (the SuperLink answers for it), device B's round-2 reply is cut off and B
// reloads and answers after the reload, C comes back from its profile for round 3; every device
// ends with the same global head, bit for bit the ServerApp's last aggregate; every request
// body the pages sent is decoded and holds only a head, counts and metrics (no image, no
// feature); runs on another backbone or with other labels are refused by every device by name.
// Figures (accuracy on test.bin of each device's local-only head, of the federated head per
// round, with Flower's clipping and noise, and of the head trained centrally on the union;
// bytes per device per round; round time) are printed and written to
// tests/e2e/out/federation.json, not asserted.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { launch, launchPersistent, killBrowser, openPage, startServer, SHARED, OUT_DIR } from './browser.mjs';
import { startFederation, fleetTypes } from '../../scripts/federation.mjs';
import { parseObject, float32FromNpy } from '../../www/federation/objects.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CIFAR = path.join(SHARED, 'data/cifar10');
const NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const SHARES = [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]; // each device's classes (non-IID)
const PER_CLASS = 12; // training images per class per device
const TEST_IMAGES = 300; // the first images of test.bin
const ROUNDS = 3;
const LOCAL_EPOCHS = 20;
const DP = { clip: 1.0, noise: 0.5 }; // Flower's client-side fixed clipping: L2 norm of an update, noise in clipping norms

// A device's samples as plain arrays: { label (index into NAMES), embedding }.
const samplesOf = (page) => page.evaluate(async (names) => {
  const { state, samplesOf: of } = await import('/lib/state.js');
  const out = [];
  for (const c of state.classes) for (const x of of(c.id)) out.push({ label: names.indexOf(c.name), embedding: [...x.embedding] });
  return out;
}, NAMES);

// CIFAR-10 binary: per image 1 label byte, then 1024 R, 1024 G, 1024 B (32x32, row-major).
function cifar(file) {
  const buf = fs.readFileSync(file);
  const n = buf.length / 3073;
  return { n, label: (i) => buf[i * 3073], rgb: (i) => buf.subarray(i * 3073 + 1, (i + 1) * 3073) };
}

// A 32x32 RGB PNG (filter 0 rows, zlib), as a device's photo file would be.
function png(planar) {
  const crcTable = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (b) => { let c = 0xffffffff; for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'ascii');
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const raw = Buffer.alloc(32 * (1 + 32 * 3));
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) for (let c = 0; c < 3; c++) raw[y * 97 + 1 + x * 3 + c] = planar[c * 1024 + y * 32 + x];
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(32, 0);
  ihdr.writeUInt32BE(32, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms = 240_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}
const readReport = (file) => (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : { rounds: [] });
const evaluated = (file) => readReport(file).rounds.filter((r) => r.evaluate !== undefined && r.weight);

// Every Fleet request body a page sends, decoded: what left the device.
function inspectRequests(root, bodies) {
  const T = (n) => root.lookupType(`flwr.proto.${n}`);
  const TYPES = {
    'register-node': 'RegisterNodeFleetRequest', 'activate-node': 'ActivateNodeRequest', 'deactivate-node': 'DeactivateNodeRequest',
    'unregister-node': 'UnregisterNodeFleetRequest', 'send-node-heartbeat': 'SendNodeHeartbeatRequest', 'pull-messages': 'PullMessagesRequest',
    'push-messages': 'PushMessagesRequest', 'push-object': 'PushObjectRequest', 'pull-object': 'PullObjectRequest',
    'confirm-message-received': 'ConfirmMessageReceivedRequest',
  };
  const pushed = { Message: 0, RecordDict: 0, ArrayRecord: 0, Array: 0, ArrayChunk: 0, MetricRecord: 0 };
  for (const { call, body } of bodies) {
    assert.ok(TYPES[call], `the page made a Fleet call this test does not know: ${call}`);
    for (const sig of [[0xff, 0xd8, 0xff], [0x89, 0x50, 0x4e, 0x47], [0x52, 0x49, 0x46, 0x46]]) {
      for (let i = 0; i + sig.length <= body.length; i++) {
        assert.ok(!sig.every((b, j) => body[i + j] === b), `a ${call} body holds an image file signature at byte ${i}`);
      }
    }
    const msg = T(TYPES[call]).decode(body);
    if (call === 'push-messages') {
      for (const m of msg.messages_list) assert.equal(m.content?.items?.length ?? 0, 0, 'a pushed message carries no inline content');
    }
    if (call !== 'push-object') continue;
    const o = parseObject(msg.object_content, msg.object_id);
    assert.ok(o.type in pushed, `the page pushed a ${o.type} object`);
    pushed[o.type]++;
    if (o.type === 'ArrayChunk') {
      const a = float32FromNpy(o.body, 'a pushed array');
      assert.ok(JSON.stringify(a.shape) === '[10,1280]' || JSON.stringify(a.shape) === '[10]', `a pushed array has shape ${a.shape}: only the head leaves the device`);
    }
    if (o.type === 'MetricRecord') {
      for (const it of T('MetricRecord').decode(o.body).items) {
        assert.ok(['num-examples', 'train-loss', 'loss', 'accuracy', 'update-norm'].includes(it.key), `a pushed metric is '${it.key}'`);
      }
    }
  }
  return pushed;
}

test('three pages train one head through the Flower SuperLink; one crashes and comes back, one reloads; no image leaves a device', { timeout: 1_200_000 }, async () => {
  assert.ok(fs.existsSync(path.join(CIFAR, 'train.bin')), 'the shared CIFAR-10 files are needed (../shared/data/cifar10)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-federation-'));
  const fed = await startFederation({ logDir: tmp });
  const { server, url } = await startServer({ port: 0, fleet: fed.fleetUrl });
  const { browser, cleanup } = await launch({ webgpu: false });
  const root = await fleetTypes();
  const backbone = crypto.createHash('sha256').update(fs.readFileSync(path.join(ROOT, 'www/models/efficientnet_lite0.int8.etm'))).digest('hex');
  let cContext = null;
  try {
    // --- three devices with their own non-IID shares -----------------------------------------
    // A and B are pages of one Chromium; C has a Chromium and a profile of its own, so that it
    // can crash (SIGKILL) and come back with its IndexedDB.
    const train = cifar(path.join(CIFAR, 'train.bin'));
    const track = (dev, page) => {
      dev.page = page;
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.origin !== new URL(url).origin && !u.protocol.startsWith('data') && !u.protocol.startsWith('blob')) dev.foreign.push(r.url());
        if (u.pathname.startsWith('/v1/fleet/')) dev.bodies.push({ call: u.pathname.slice(10), body: new Uint8Array(r.postDataBuffer() || []) });
      });
      page.on('console', (m) => { if (m.type() === 'error') dev.errors.push(m.text()); });
      page.on('pageerror', (e) => dev.errors.push(String(e)));
    };
    const cProfile = path.join(tmp, 'device-c');
    const openC = async () => {
      const { context } = await launchPersistent(cProfile, { webgpu: false });
      cContext = context;
      const page = context.pages()[0] || (await context.newPage());
      track(devices[2], page);
      await page.goto(url);
      return context;
    };
    const devices = ['A', 'B', 'C'].map((n) => ({ name: `device ${n}`, foreign: [], errors: [], bodies: [] }));
    for (let d = 0; d < 2; d++) {
      const { page } = await openPage(browser, 'about:blank');
      track(devices[d], page);
      await page.goto(url);
    }
    await openC();
    for (const dev of devices) await dev.page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
    const taken = new Map(); // class -> next index into train.bin
    for (let d = 0; d < 3; d++) {
      const { page } = devices[d];
      for (const c of SHARES[d]) {
        const files = [];
        for (let i = taken.get(c) ?? 0; files.length < PER_CLASS; i++) {
          if (train.label(i) === c) files.push({ name: `${NAMES[c]}-${i}.png`, mimeType: 'image/png', buffer: png(train.rgb(i)) });
          taken.set(c, i + 1);
        }
        await page.fill('#new-class', NAMES[c]);
        await page.click('#add-class button[type="submit"]');
        await page.waitForSelector(`#classes li[data-name="${NAMES[c]}"]`);
        await page.setInputFiles(`#classes li[data-name="${NAMES[c]}"] input[type="file"]`, files);
        await page.waitForFunction(({ name, n }) => document.querySelector(`#classes li[data-name="${name}"]`).dataset.count === String(n), { name: NAMES[c], n: files.length }, { timeout: 180_000 });
      }
    }
    // --- join, then the ServerApp -------------------------------------------------------------
    for (const dev of devices) {
      await dev.page.fill('#fed-url', url);
      await dev.page.fill('#fed-name', dev.name);
      await dev.page.click('#fed-join button[type="submit"]');
      await dev.page.waitForFunction(() => document.body.dataset.federation === 'joined', null, { timeout: 60_000 });
    }
    // Device B reloads mid-round: its round-2 train reply (its third push) is cut off by a
    // dropped connection, and the page is reloaded before it can retry. It rejoins as the same
    // node and answers the message it had taken from its IndexedDB.
    const b = devices[1];
    let pushes = 0;
    let cut = false;
    await b.page.route('**/v1/fleet/push-messages', (route) => {
      pushes++;
      if (pushes === 3) {
        cut = true;
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    const report = path.join(tmp, 'report.json');
    const started = Date.now();
    // min-nodes 3: every round waits for all three, so C's return is part of the run.
    const runId = await fed.submit({ 'num-server-rounds': ROUNDS, 'min-nodes': 3, 'local-epochs': LOCAL_EPOCHS, 'learning-rate': 0.003, dim: 1280, 'backbone-sha256': backbone, report, 'round-timeout': 300 });
    // Device C crashes once it has answered round 1 (its train and evaluate replies): round 2
    // is sent to it while it is gone. It comes back (same profile: its samples, key and node
    // id) once round 2 has gone on without it.
    const c = devices[2];
    await until('device C to answer round 1', () => c.page.evaluate(() => globalThis.edgetuneFederation.sent.length >= 2));
    const cSentBefore = await c.page.evaluate(() => globalThis.edgetuneFederation.sent);
    assert.ok(killBrowser(cProfile) > 0, "device C's Chromium was killed");
    await until("device B's round-2 reply to be cut off", () => cut);
    await b.page.reload();
    await b.page.waitForFunction(() => document.body.dataset.federation === 'joined', null, { timeout: 120_000 });
    await until('round 2 to go on without device C', () => readReport(report).rounds.length >= 2, 300_000);
    await openC();
    await c.page.waitForFunction(() => document.body.dataset.federation === 'joined', null, { timeout: 120_000 });
    await until(`${ROUNDS} rounds (SuperLink log: ${fed.logFile})`, () => evaluated(report).length >= ROUNDS, 600_000);
    assert.equal(await b.page.evaluate(() => globalThis.edgetuneFederation.resumed), 1, 'device B answered the message it had in progress before the reload');
    const runSeconds = (Date.now() - started) / 1000;
    const rounds = readReport(report).rounds;
    assert.equal(rounds.length, ROUNDS);
    assert.deepEqual(rounds.map((r) => r.replies), [3, 2, ...Array(ROUNDS - 2).fill(3)], 'replies per round: all three, then two while C is gone, then all three again');
    assert.ok(rounds[1].errors.some((e) => /Node Unavailable/i.test(e)), `the SuperLink answered for the crashed device: ${JSON.stringify(rounds[1].errors)}`);

    // --- every device holds the same global head: the ServerApp's last aggregate ---------------
    const last = rounds[ROUNDS - 1];
    await until('every device to hold the last global head', async () => {
      const got = await Promise.all(devices.map((d) => d.page.evaluate(() => globalThis.edgetuneFederation.global?.round)));
      return got.every((r) => r === ROUNDS);
    });
    for (const dev of devices) {
      const g = await dev.page.evaluate(() => { const g = globalThis.edgetuneFederation.global; return { names: g.names, weight: [...g.weight], bias: [...g.bias] }; });
      assert.deepEqual(g.names, NAMES, `${dev.name}: the federation's classes`);
      assert.deepEqual(Float32Array.from(g.weight), Float32Array.from(last.weight), `${dev.name}: the global weights, bit for bit`);
      assert.deepEqual(Float32Array.from(g.bias), Float32Array.from(last.bias), `${dev.name}: the global bias`);
      const live = await dev.page.evaluate(async () => {
        const { state, currentVersion } = await import('/lib/state.js');
        return { names: currentVersion()?.names, mode: state.mode };
      });
      assert.deepEqual(live, { names: NAMES, mode: 'custom' }, `${dev.name}: the live view runs the federated head over all ten classes`);
    }

    // --- what left each device -----------------------------------------------------------------
    const traffic = [];
    for (const dev of devices) {
      assert.deepEqual(dev.foreign, [], `${dev.name}: requests outside the page's origin`);
      const pushed = inspectRequests(root, dev.bodies);
      assert.ok(pushed.ArrayChunk >= 2, `${dev.name}: its head was pushed`);
      const sent = [...(dev === c ? cSentBefore : []), ...(await dev.page.evaluate(() => globalThis.edgetuneFederation.sent))];
      for (const s of sent) {
        assert.equal(s.error, null, `${dev.name}: a ${s.messageType} reply was refused: ${s.error}`);
        if (s.messageType === 'train') assert.deepEqual(s.arrays, { weight: [10, 1280], bias: [10] });
        else assert.deepEqual(s.arrays, {}, 'an evaluate reply sends metrics only');
      }
      const up = dev.bodies.reduce((n, x) => n + x.body.length, 0);
      const trainReplies = sent.filter((s) => s.messageType === 'train');
      const counted = await dev.page.evaluate(() => globalThis.edgetuneFederation.node?.traffic ?? null);
      traffic.push({ device: dev.name, roundsAnswered: trainReplies.length, requestBytes: up, responseBytesSinceLoad: counted?.received ?? null, trainReplyBytes: trainReplies.map((s) => s.bytes), evaluateReplyBytes: sent.filter((s) => s.messageType === 'evaluate').map((s) => s.bytes) });
    }

    // --- a run on another backbone: every device refuses it by name ----------------------------
    const report2 = path.join(tmp, 'report-refused.json');
    await fed.submit({ 'num-server-rounds': 1, 'min-nodes': 3, dim: 1280, 'backbone-sha256': '0'.repeat(64), report: report2, 'round-timeout': 120 });
    await until('the refused run', () => readReport(report2).rounds.length >= 1, 300_000);
    const refused = readReport(report2).rounds[0];
    assert.equal(refused.replies, 0);
    assert.equal(refused.errors.length, 3, `every device answered with an error: ${refused.errors}`);
    for (const e of refused.errors) assert.match(e, /the federation trains on backbone 000000000000….*this device runs/);
    const shown = await devices[0].page.textContent('#fed-log');
    assert.match(shown, /refused: the federation trains on backbone/, 'the page says what it refused');

    // --- a run whose classes leave out some of the devices' own: refused, naming them ----------
    const report3 = path.join(tmp, 'report-labels.json');
    await fed.submit({ 'num-server-rounds': 1, 'min-nodes': 3, dim: 1280, 'backbone-sha256': backbone, classes: 'airplane,automobile,bird', report: report3, 'round-timeout': 120 });
    await until('the run with other labels', () => readReport(report3).rounds.length >= 1, 300_000);
    const labels = readReport(report3).rounds[0];
    assert.equal(labels.replies, 0);
    assert.ok(labels.errors.some((e) => /this device has samples of "cat", which the federation's classes \(airplane, automobile, bird\) do not include/.test(e)), `device A names the class: ${labels.errors}`);
    assert.ok(labels.errors.some((e) => /"cat", "deer", "dog", "frog"/.test(e)), `device B names its classes: ${labels.errors}`);
    assert.ok(labels.errors.some((e) => /"frog", "horse", "ship", "truck"/.test(e)), `device C names its classes: ${labels.errors}`);

    // --- privacy: Flower's client-side fixed clipping with noise, against the same run without ---
    // Three runs of all three devices, none dropping out.
    const allDevices = async (extra, name) => {
      const file = path.join(tmp, `report-${name}.json`);
      await fed.submit({ 'num-server-rounds': ROUNDS, 'min-nodes': 3, 'local-epochs': LOCAL_EPOCHS, 'learning-rate': 0.003, dim: 1280, 'backbone-sha256': backbone, report: file, 'round-timeout': 120, ...extra });
      await until(`the ${name} run`, () => evaluated(file).length >= ROUNDS, 300_000);
      return readReport(file).rounds;
    };
    const plain = await allDevices({}, 'plain');
    const sentBefore = await devices[0].page.evaluate(() => globalThis.edgetuneFederation.sent.length);
    const clipped = await allDevices({ 'clip-norm': DP.clip }, 'clip');
    const noisy = await allDevices({ 'clip-norm': DP.clip, 'noise-multiplier': DP.noise }, 'dp');
    const dpSent = (await devices[0].page.evaluate(() => globalThis.edgetuneFederation.sent)).slice(sentBefore).filter((x) => x.messageType === 'train');
    assert.equal(dpSent.length, 2 * ROUNDS);
    for (const x of dpSent) assert.ok(Number.isFinite(x.metrics['update-norm']), 'with clipping, each train reply reports its update norm before clipping');
    const updateNorms = dpSent.map((x) => x.metrics['update-norm']);

    // --- figures: accuracy on test.bin ---------------------------------------------------------
    const testSet = cifar(path.join(CIFAR, 'test.bin'));
    const testFiles = Array.from({ length: TEST_IMAGES }, (_, i) => ({ b64: png(testSet.rgb(i)).toString('base64'), label: testSet.label(i) }));
    const local = [];
    for (const dev of devices) local.push(await samplesOf(dev.page));
    const heads = { main: rounds, plain, clipped, noisy };
    const figures = await devices[0].page.evaluate(async ({ testFiles, local, heads, epochs }) => {
      const { state } = await import('/lib/state.js');
      const { centreSquare } = await import('/camera.js');
      const { trainer } = await import('/views/training.js');
      const names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
      const test = [];
      for (const f of testFiles) {
        const bmp = await createImageBitmap(new Blob([Uint8Array.from(atob(f.b64), (ch) => ch.charCodeAt(0))], { type: 'image/png' }));
        const frame = centreSquare(bmp, state.frameSize);
        const e = await state.engine.call('embed', { rgba: frame.rgba, width: frame.width, height: frame.height }, { transfer: [frame.rgba.buffer] });
        test.push({ embedding: e, label: f.label });
      }
      const accuracy = async (weight, bias) => (await trainer().call('evaluate', { weight: Float32Array.from(weight), bias: Float32Array.from(bias), samples: test })).accuracy;
      const trainOn = async (samples) => {
        const r = await trainer().call('train', { dim: state.dim, classes: names, samples: samples.map((s) => ({ embedding: Float32Array.from(s.embedding), label: s.label })), options: { epochs, lr: 0.003, optimizer: 'adam', loss: 'ce', validation: 0, seed: 1 } });
        return accuracy(r.weight, r.bias);
      };
      const perRound = async (list) => { const out = []; for (const r of list) out.push(await accuracy(r.weight, r.bias)); return out; };
      return {
        localOnly: [await trainOn(local[0]), await trainOn(local[1]), await trainOn(local[2])],
        federatedPerRound: await perRound(heads.main),
        plain: await perRound(heads.plain),
        clipped: await perRound(heads.clipped),
        noisy: await perRound(heads.noisy),
        central: await trainOn(local.flat()),
      };
    }, { testFiles, local, heads: Object.fromEntries(Object.entries(heads).map(([k, v]) => [k, v.map((r) => ({ weight: r.weight, bias: r.bias }))])), epochs: LOCAL_EPOCHS * ROUNDS });
    const result = {
      setup: { devices: 3, shares: SHARES.map((s) => s.map((c) => NAMES[c])), imagesPerClass: PER_CLASS, rounds: ROUNDS, localEpochs: LOCAL_EPOCHS, testImages: TEST_IMAGES, backbone: 'EfficientNet-Lite0 int8 (built in)', flwr: root.flwrVersion, runId, dp: DP },
      accuracy: {
        localOnly: { 'device A': figures.localOnly[0], 'device B': figures.localOnly[1], 'device C': figures.localOnly[2] },
        federatedPerRound: figures.federatedPerRound,
        centralOnUnionOfAll: figures.central,
        privacyRuns: { federatedPerRound: figures.plain, withClipping: figures.clipped, withClippingAndNoise: figures.noisy, updateNormsBeforeClipping: updateNorms },
      },
      rounds: rounds.map((r) => ({ round: r.round, replies: r.replies, trainSeconds: r.seconds, trainLoss: r.train?.['train-loss'] ?? null, evaluate: r.evaluate })),
      traffic,
      runSeconds,
    };
    fs.mkdirSync(OUT_DIR, { recursive: true });
    fs.writeFileSync(path.join(OUT_DIR, 'federation.json'), JSON.stringify(result, null, 2));
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    console.log(`federation (${TEST_IMAGES} test.bin images): local-only A ${pct(figures.localOnly[0])}, B ${pct(figures.localOnly[1])}, C ${pct(figures.localOnly[2])}; federated per round ${figures.federatedPerRound.map(pct).join(', ')}; central on A∪B∪C ${pct(figures.central)}`);
    console.log(`  no dropout: federated per round ${figures.plain.map(pct).join(', ')}; clipped to ${DP.clip} ${figures.clipped.map(pct).join(', ')}; clipped with noise ${DP.noise} ${figures.noisy.map(pct).join(', ')}`);
    console.log(`  device A's update norms before clipping: ${updateNorms.map((x) => x.toFixed(2)).join(', ')}; round seconds ${plain.map((r) => r.seconds.toFixed(1)).join('/')} plain, ${clipped.map((r) => r.seconds.toFixed(1)).join('/')} clipped, ${noisy.map((r) => r.seconds.toFixed(1)).join('/')} clipped with noise`);
    for (const t of traffic) console.log(`  ${t.device}: ${t.roundsAnswered} train replies of ${t.trainReplyBytes.join('/')} bytes, ${t.requestBytes} request bytes in all${t.responseBytesSinceLoad === null ? '' : `, ${t.responseBytesSinceLoad} response bytes since its last load`}`);
    console.log(`  rounds: ${rounds.map((r) => `${r.round}: ${r.replies} replies in ${r.seconds.toFixed(1)} s`).join('; ')}; the run took ${runSeconds.toFixed(0)} s`);
    for (const dev of devices) assert.deepEqual(dev.errors.filter((e) => !/Failed to load resource/.test(e)), [], `${dev.name}: console errors`);
  } finally {
    await cContext?.close().catch(() => {});
    await cleanup();
    server.close();
    await fed.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
