// The page's Flower object format (www/federation/objects.js) against flwr 1.42's own code
// (tests/reference/flower_objects.py in the pinned Flower environment): a reply the page
// encodes is validated and inflated by flwr, a message flwr deflates is inflated by the page,
// and hostile objects are refused by name. Node only (no browser): the module runs unchanged
// in both, on WebCrypto's SHA-256.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { flowerEnv, fleetTypes } from '../../scripts/federation.mjs';
import { deflateMessage, inflateMessage, float32FromNpy, npyFromFloat32, sha256Hex, FlowerProtocolError } from '../../www/federation/objects.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const venv = flowerEnv();
const root = await fleetTypes();
const py = (...args) => execFileSync(path.join(venv, 'bin/python'), [path.join(ROOT, 'tests/reference/flower_objects.py'), ...args], { encoding: 'utf8' });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgetune-flower-objects-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const b64 = (u8) => Buffer.from(u8).toString('base64');
const fromB64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));

function randomHead(k, dim, seed) {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  return { weight: Float32Array.from({ length: k * dim }, next), bias: Float32Array.from({ length: k }, next) };
}

const METADATA = { run_id: '42', message_id: '', src_node_id: '9', dst_node_id: '1', reply_to_message_id: 'ab'.repeat(32), group_id: '', created_at: 1.5e9, ttl: 3600, message_type: 'train' };

test("a reply the page encodes is valid to flwr and inflates to the same head and metrics", async () => {
  const head = randomHead(10, 1280, 3);
  const out = await deflateMessage(root, {
    metadata: METADATA,
    records: {
      arrays: { arrays: { weight: { values: head.weight, shape: [10, 1280] }, bias: { values: head.bias, shape: [10] } } },
      metrics: { metrics: { 'num-examples': 57, 'train-loss': 0.8125 } },
    },
  });
  assert.equal(out.message.metadata.message_id, out.id, 'the message id is its object id');
  assert.equal(out.tree.object_id, out.id);
  const file = path.join(tmp, 'reply.json');
  fs.writeFileSync(file, JSON.stringify({ tree: out.tree, objects: Object.fromEntries([...out.objects].map(([k, v]) => [k, b64(v)])) }));
  const got = JSON.parse(py('inflate', file));
  assert.deepEqual(got.arrays.weight.shape, [10, 1280]);
  assert.deepEqual(got.arrays.bias.shape, [10]);
  assert.equal(got.arrays.weight.dtype, 'float32');
  assert.deepEqual(Float32Array.from(got.arrays.weight.values), head.weight, 'weights bit for bit');
  assert.deepEqual(Float32Array.from(got.arrays.bias.values), head.bias);
  assert.deepEqual(got.metrics, { 'num-examples': 57, 'train-loss': 0.8125 });
});

test('an error reply carries no content objects', async () => {
  const out = await deflateMessage(root, { metadata: METADATA, error: { code: 2, reason: 'no samples' } });
  assert.equal(out.objects.size, 1, 'only the Message object');
  assert.equal(out.message.error.reason, 'no samples');
  assert.equal(out.message.content, undefined);
});

test("a message flwr deflates (FedAvg's train content) inflates in the page", async () => {
  const file = path.join(tmp, 'made.json');
  py('make', file);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const fetched = [];
  const content = await inflateMessage(root, doc.tree, async (id) => { fetched.push(id); return fromB64(doc.objects[id]); });
  assert.deepEqual(content.records.arrays.arrays.weight.shape, [3, 5]);
  assert.deepEqual(content.records.arrays.arrays.weight.values, Float32Array.from(doc.expect.weight));
  assert.deepEqual(content.records.arrays.arrays.bias.values, Float32Array.from(doc.expect.bias), 'float64 arrays come back as float32');
  assert.deepEqual(content.records.config.values, { classes: 'a,b,c', 'server-round': 2, 'learning-rate': 0.5, flag: true });
  assert.deepEqual(content.records.metrics.values, { 'num-examples': 12 });
  assert.equal(new Set(fetched).size, Object.keys(doc.objects).length, 'every object fetched once');
});

test('hostile objects are refused by name', async () => {
  const file = path.join(tmp, 'made.json');
  if (!fs.existsSync(file)) py('make', file);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const get = (objects) => async (id) => fromB64(objects[id]);
  const refuse = async (tree, objects, pattern) => {
    await assert.rejects(inflateMessage(root, tree, get(objects)), (err) => err instanceof FlowerProtocolError && pattern.test(err.message), String(pattern));
  };
  // Bytes that do not hash to their id.
  const leaf = (t) => (t.children?.length ? leaf(t.children[0]) : t);
  const chunkId = leaf(doc.tree).object_id;
  const tampered = { ...doc.objects, [chunkId]: b64(Uint8Array.from([...fromB64(doc.objects[chunkId])].map((b, i) => (i === 40 ? b ^ 1 : b)))) };
  await refuse(doc.tree, tampered, /do not match its id/);
  // A tree that disagrees with the heads.
  const pruned = structuredClone(doc.tree);
  pruned.children = [];
  await refuse(pruned, doc.objects, /children differ from the message tree/);
  // A malformed id, and a message nested too deep.
  await refuse({ object_id: 'zz', children: [] }, doc.objects, /malformed object id/);
  let deep = { object_id: 'a'.repeat(64), children: [] };
  for (let i = 0; i < 8; i++) deep = { object_id: 'a'.repeat(64), children: [deep] };
  await refuse(deep, doc.objects, /nests deeper/);
  // An object that is not what its place says (a chunk where the Message should be).
  const chunkBytes = fromB64(doc.objects[chunkId]);
  await refuse({ object_id: chunkId, children: [] }, { [chunkId]: b64(chunkBytes) }, /is a ArrayChunk, expected a Message/);
  // More bytes than a message may hold.
  const big = new Uint8Array(65 * 1024 * 1024);
  const bigBytes = new Uint8Array([...new TextEncoder().encode(`ArrayChunk  ${big.length}`), 0, ...big.subarray(0, 0)]);
  const bigObj = new Uint8Array(bigBytes.length + big.length);
  bigObj.set(bigBytes);
  const bigId = await sha256Hex(bigObj);
  await refuse({ object_id: bigId, children: [] }, { [bigId]: b64(bigObj) }, /larger than 64 MiB/);
});

test('.npy: float32 round trip, and what is not a float array is refused', () => {
  const v = Float32Array.from([1.5, -2, 3.25, Math.fround(0.1), 0, -0]);
  const npy = npyFromFloat32(v, [2, 3]);
  assert.equal((10 + new DataView(npy.buffer).getUint16(8, true)) % 64, 0, 'header padded to 64 bytes, as numpy writes it');
  const back = float32FromNpy(npy, 'x');
  assert.deepEqual(back.shape, [2, 3]);
  assert.deepEqual(back.values, v);
  const header = (h) => {
    const text = new TextEncoder().encode(h);
    const out = new Uint8Array(10 + text.length);
    out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    new DataView(out.buffer).setUint16(8, text.length, true);
    out.set(text, 10);
    return out;
  };
  assert.throws(() => float32FromNpy(header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"), 'x'), /dtype \|O is not supported/);
  assert.throws(() => float32FromNpy(header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }"), 'x'), /Fortran-order/);
  assert.throws(() => float32FromNpy(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }"), 'x'), /holds 0 bytes for 1000000 values/);
  assert.throws(() => float32FromNpy(new Uint8Array([1, 2, 3]), 'x'), /not a \.npy array/);
});
