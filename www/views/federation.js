// Train together: the page joins a Flower federation as a node (federation/node.js) and
// trains the federation's head on this device's own samples; only head weights, sample
// counts and metrics leave the device, and the view lists every reply exactly as sent.
//
// Agreement: each message's config names the federation's classes and its backbone's
// SHA-256. A device on another backbone, or with samples of classes the federation does not
// have, refuses by name (an error reply; the round goes on without it). A device without
// samples of some classes takes part with what it has (at least two of the classes).
//
// train     the global head is trained further on this device's samples (the training
//           worker, `local-epochs` at `learning-rate`), clipped as Flower's fixedclipping_mod
//           does when the config carries `clipping_norm`; reply: the head and `num-examples`
// evaluate  the global head's loss and accuracy on this device's samples; the head is kept
//           as the "federated" version (its classes are added to the project where missing)
//
// The key pair, the address and a message being worked on are kept in IndexedDB: after a
// reload the page rejoins as the same node and finishes and answers that message.
import Long from '/vendor/long.js';
import { fleetRoot, generateNodeKeys } from '/federation/fleet.js';
import { FlowerNode } from '/federation/node.js';
import { sha256Hex } from '/federation/objects.js';
import { trainer } from '/views/training.js';
import { setMode } from '/views/live.js';
import { $, el, showError, message } from '/lib/dom.js';
import { state, changed, samplesOf } from '/lib/state.js';

const fed = {
  node: null,
  status: 'idle', // idle | joining | joined | left | error
  nodeId: null,
  name: '', // this device's name, as the user typed it (shown here; not sent)
  sent: [], // every reply: { round, messageType, arrays: { name: shape }, metrics, error, bytes }
  global: null, // { round, names, weight, bias }
  versionId: null,
  resumed: 0, // messages answered after a reload
};
globalThis.edgetuneFederation = fed;

let rootPromise = null;
function protocol() {
  rootPromise ??= (async () => {
    await import('/vendor/protobuf.min.js'); // protobuf.js's minimal runtime (UMD): globalThis.protobuf
    const pb = globalThis.protobuf;
    pb.util.Long = Long; // Flower's node and run ids are 64-bit
    pb.configure();
    let code;
    try {
      code = await import('/flower/flwr-proto.mjs');
    } catch {
      throw new Error('this server has no Flower protocol code (start it with npm start -- --federation)');
    }
    return fleetRoot(code.default, code.flwrVersion);
  })();
  rootPromise.catch(() => { rootPromise = null; });
  return rootPromise;
}

function setStatus(status, text) {
  fed.status = status;
  document.body.dataset.federation = status;
  $('fed-status').textContent = text;
  $('fed-join').hidden = status === 'joined' || status === 'joining';
  $('fed-leave').hidden = status !== 'joined';
}

function logLine(text, kind = '') {
  const li = el('li', { className: kind, textContent: `${new Date().toLocaleTimeString()} · ${text}` });
  $('fed-log').prepend(li);
  while ($('fed-log').children.length > 50) $('fed-log').lastChild.remove();
}

// The federation's classes and backbone against this device's; throws the refusal by name.
async function agree(config) {
  const names = String(config.classes || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length < 2) throw new Error('the federation names fewer than two classes');
  if (Number(config.dim) !== state.dim) throw new Error(`the federation's head takes ${config.dim} features; this device's backbone makes ${state.dim}`);
  const want = String(config['backbone-sha256'] || '');
  if (want) {
    const have = await backboneHash();
    if (want !== have) throw new Error(`the federation trains on backbone ${want.slice(0, 12)}…; this device runs ${state.modelName} (${have.slice(0, 12)}…)`);
  }
  const foreign = state.classes.filter((c) => samplesOf(c.id).length && !names.includes(c.name)).map((c) => `"${c.name}"`);
  if (foreign.length) throw new Error(`this device has samples of ${foreign.join(', ')}, which the federation's classes (${names.join(', ')}) do not include`);
  const samples = [];
  for (const c of state.classes) {
    const label = names.indexOf(c.name);
    if (label >= 0) for (const s of samplesOf(c.id)) samples.push({ embedding: s.embedding, label });
  }
  return { names, samples };
}

let hashCache = null;
async function backboneHash() {
  if (!hashCache || hashCache.bytes !== state.modelBytes) hashCache = { bytes: state.modelBytes, hex: await sha256Hex(state.modelBytes) };
  return hashCache.hex;
}

function headOf(arrays, k) {
  const w = arrays?.weight;
  const b = arrays?.bias;
  if (!w || !b) throw new Error("the server's message has no head (arrays 'weight' and 'bias')");
  if (w.values.length !== k * state.dim || b.values.length !== k) throw new Error(`the server's head is ${w.shape.join('×')} + ${b.shape.join('×')}, expected ${k}×${state.dim} + ${k}`);
  if (!w.values.every(Number.isFinite) || !b.values.every(Number.isFinite)) throw new Error("the server's head holds NaN or infinite values");
  return { weight: w.values, bias: b.values };
}

// Flower's fixedclipping_mod: the update (trained - global) scaled to at most `norm` in L2
// over all arrays together.
function clipUpdate(trained, global, norm) {
  let sq = 0;
  for (const k of ['weight', 'bias']) for (let i = 0; i < trained[k].length; i++) sq += (trained[k][i] - global[k][i]) ** 2;
  const scale = Math.min(1, norm / (Math.sqrt(sq) || 1));
  const out = {};
  for (const k of ['weight', 'bias']) out[k] = Float32Array.from(trained[k], (v, i) => global[k][i] + (v - global[k][i]) * scale);
  return { ...out, norm: Math.sqrt(sq), scale };
}

// Local training touches only the rows of the classes this device has samples of: the
// softmax runs over those classes alone, and the other rows go back as the global head had
// them. With a softmax over all classes, every device pushes down the classes it lacks, and
// the average favours the classes devices happen to share (label skew, which is what devices
// of different people have).
async function train({ config, arrays }) {
  const { names, samples } = await agree(config);
  const global = headOf(arrays, names.length);
  const present = [...new Set(samples.map((s) => s.label))].sort((a, b) => a - b);
  if (present.length < 2) throw new Error(`this device has samples of ${present.length} of the federation's classes; training needs two`);
  const dim = state.dim;
  const rows = (src, k) => src.subarray(k * dim, (k + 1) * dim);
  const initial = { weight: new Float32Array(present.length * dim), bias: Float32Array.from(present, (k) => global.bias[k]) };
  present.forEach((k, i) => initial.weight.set(rows(global.weight, k), i * dim));
  const epochs = Math.max(1, Math.min(1000, Math.round(Number(config['local-epochs']) || 20)));
  const lr = Number(config['learning-rate']) > 0 ? Number(config['learning-rate']) : 3e-3;
  const r = await trainer().call('train', {
    dim, classes: present.map((k) => names[k]), samples: samples.map((s) => ({ embedding: s.embedding, label: present.indexOf(s.label) })), initial,
    options: { epochs, lr, optimizer: 'adam', loss: 'ce', validation: 0, seed: 1 },
  });
  const trained = Float32Array.from(r.weight);
  let head = { weight: Float32Array.from(global.weight), bias: Float32Array.from(global.bias) };
  present.forEach((k, i) => {
    head.weight.set(rows(trained, i), k * dim);
    head.bias[k] = r.bias[i];
  });
  const metrics = { 'num-examples': samples.length, 'train-loss': r.history.length ? r.history[r.history.length - 1].loss : 0 };
  const clip = Number(config.clipping_norm);
  if (clip > 0) {
    const c = clipUpdate(head, global, clip);
    head = { weight: c.weight, bias: c.bias };
    metrics['update-norm'] = c.norm;
  }
  return {
    arrays: { arrays: { weight: { values: head.weight, shape: [names.length, dim] }, bias: { values: head.bias, shape: [names.length] } } },
    metrics: { metrics },
  };
}

async function evaluate({ config, arrays }) {
  const { names, samples } = await agree(config);
  const head = headOf(arrays, names.length);
  fed.global = { round: Number(config['server-round']) || null, names, ...head };
  const m = samples.length ? await trainer().call('evaluate', { weight: head.weight, bias: head.bias, samples }) : null;
  await keepGlobalHead(names, head, config, m);
  if (!m) throw new Error('this device has no samples of the federation\'s classes to evaluate on');
  return { metrics: { metrics: { 'num-examples': m.count, loss: m.loss, accuracy: m.accuracy } } };
}

// The global head as this project's "federated" version (replacing the previous round's),
// with the federation's classes added to the project where missing, and shown live.
async function keepGlobalHead(names, head, config, evaluation) {
  const ids = [];
  for (const name of names) {
    let c = state.classes.find((x) => x.name === name);
    if (!c) {
      c = await state.store.addClass(name);
      state.classes.push(c);
    }
    ids.push(c.id);
  }
  const version = {
    backbone: state.backbone, classIds: ids, names, dim: state.dim, weight: Float32Array.from(head.weight), bias: Float32Array.from(head.bias),
    metrics: { federated: { round: Number(config['server-round']) || null, accuracy: evaluation?.accuracy ?? null }, samples: evaluation?.count ?? 0 },
    options: { federated: true },
  };
  const saved = await state.store.saveVersion(version);
  const old = fed.versionId;
  state.versions.push(saved);
  state.current = saved.id;
  fed.versionId = saved.id;
  if (old !== null) {
    state.versions = state.versions.filter((v) => v.id !== old);
    await state.store.deleteVersion(old, saved.id);
  }
  changed('samples', 'versions');
  setMode('custom');
}

function describeReply(e) {
  if (e.error) return `refused: ${e.error.reason}`;
  const parts = [];
  for (const rec of Object.values(e.records || {})) {
    if (rec.arrays) parts.push(...Object.entries(rec.arrays).map(([k, a]) => `${k} [${a.shape.join('×')}]`));
    if (rec.metrics) parts.push(...Object.entries(rec.metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`));
  }
  return `sent ${parts.join(', ')}`;
}

function onEvent(e) {
  if (e.type === 'joined') {
    fed.nodeId = e.nodeId;
    setStatus('joined', `Joined as ${fed.name ? `"${fed.name}", ` : ''}node ${e.nodeId}. Waiting for the server's rounds…`);
  } else if (e.type === 'message') {
    if (e.resumed) {
      fed.resumed++;
      logLine(`answering the ${e.messageType} message that was in progress before the page reloaded`);
    }
    $('fed-status').textContent = `Working on a ${e.messageType} message…`;
  } else if (e.type === 'replied') {
    const shapes = {};
    const metrics = {};
    for (const rec of Object.values(e.records || {})) {
      for (const [k, a] of Object.entries(rec.arrays || {})) shapes[k] = a.shape;
      Object.assign(metrics, rec.metrics || {});
    }
    fed.sent.push({ messageType: e.messageType, arrays: shapes, metrics, error: e.error?.reason ?? null, bytes: e.bytesSent, seconds: e.seconds, at: Date.now() });
    logLine(`${e.messageType}: ${describeReply(e)} (${(e.bytesSent / 1024).toFixed(1)} kB)`, e.error ? 'refused' : '');
    $('fed-status').textContent = `Joined as ${fed.name ? `"${fed.name}", ` : ''}node ${fed.nodeId}. Replied to ${fed.sent.length} messages.`;
  } else if (e.type === 'warning') {
    logLine(e.detail, 'warning');
  } else if (e.type === 'left') {
    setStatus('left', 'Left the federation.');
  }
}

async function join(url, name) {
  const origin = new URL(url, location.href).origin;
  if (origin !== location.origin) {
    throw new Error(`the page talks to its own server only: open ${origin}/ on this device and join from there`);
  }
  fed.name = name || '';
  setStatus('joining', 'Joining…');
  const root = await protocol();
  // The same key pair (and node) for as long as this device stays in the federation.
  const saved = await state.store.getMeta('federation');
  const keys = saved?.keys ?? (await generateNodeKeys());
  await state.store.setMeta('federation', { url: origin, name, keys, nodeId: saved?.nodeId ?? null });
  const inflight = {
    save: (item) => state.store.setMeta('federation-inflight', item),
    load: () => state.store.getMeta('federation-inflight'),
    clear: () => state.store.setMeta('federation-inflight', null),
  };
  fed.node = new FlowerNode(root, origin, keys, { handlers: { train, evaluate }, onEvent, inflight });
  const nodeId = await fed.node.join(saved?.keys ? saved.nodeId : null);
  await state.store.setMeta('federation', { url: origin, name, keys, nodeId });
}

async function leave() {
  const node = fed.node;
  fed.node = null;
  await state.store.setMeta('federation', null);
  if (node) await node.leave({ unregister: true });
  setStatus('left', 'Left the federation.');
}

export function initFederation() {
  $('fed-join').addEventListener('submit', (ev) => {
    ev.preventDefault();
    join($('fed-url').value.trim() || location.origin, $('fed-name').value.trim()).catch((err) => {
      setStatus('error', `Could not join: ${message(err)}`);
      showError(`Could not join the federation: ${message(err)}`);
    });
  });
  $('fed-leave').addEventListener('click', () => leave().catch(showError));
  $('fed-url').placeholder = location.origin;
  // Closing or reloading the page deactivates nothing: a reload comes back as the same node
  // within seconds and answers the message it was working on; a closed page's heartbeats
  // stop, and the SuperLink answers for it within two heartbeat intervals.
  setStatus('idle', 'Not in a federation.');
}

/** After the project has loaded: rejoin the federation this device was in before a reload. */
export async function resumeFederation() {
  const saved = await state.store.getMeta('federation');
  if (!saved?.url || saved.url !== location.origin) return;
  $('fed-url').value = saved.url;
  $('fed-name').value = saved.name || '';
  await join(saved.url, saved.name).catch((err) => setStatus('error', `Could not rejoin: ${message(err)}`));
}
