// Flower's messages as content-addressed objects (flwr 1.42, `flwr/supercore/inflatable`), the
// form in which the Fleet API moves a message's content.
//
// Every object is  head "\0" body,  head = "<Type> <child id>,<child id>,... <body length>"
// (UTF-8), and its id is the SHA-256 of those bytes in hex. The types a FedAvg round uses:
//   Message       body: protobuf Message{metadata (message_id ""), error}; child: its RecordDict
//   RecordDict    body: JSON {record name: record id}; children: its records
//   ArrayRecord   body: JSON {array name: array id}; children: its Arrays
//   Array         body: JSON {dtype, shape, stype, arraychunk_ids: [index into the head's
//                 children, per chunk, in order]}; children: its distinct ArrayChunks
//   ArrayChunk    body: raw bytes, at most 5 MiB (Flower's FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE)
//   ConfigRecord  body: protobuf ConfigRecord{items: [{key, value}]}
//   MetricRecord  body: protobuf MetricRecord{items: [{key, value}]}
// An Array's bytes are a NumPy .npy file (stype "numpy.ndarray"): this module writes and reads
// little-endian float32/float64 C-order arrays only, which is all a head is.
//
// The server is not trusted: `inflateMessage` checks every object's id against its bytes, the
// tree against the heads, every length, and refuses other types, dtypes and sizes by name.
// The tree a message is sent with is `ObjectTree{object_id, children: [...]}`, children in
// the order of their ids in the parent's head.

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
const CHUNK = 5 * 1024 * 1024;
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024; // all of one message's objects together
const MAX_OBJECTS = 4096;

export class FlowerProtocolError extends Error {}

export async function sha256Hex(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// One object over children already deflated ({ id, tree }): its bytes into `all` (id -> bytes);
// returns { id, tree }. The head lists distinct children in order of first appearance.
async function deflateWith(type, kids, body, all) {
  const ids = [...new Set(kids.map((k) => k.id))];
  const bytes = concat([enc.encode(`${type} ${ids.join(',')} ${body.length}`), new Uint8Array([0]), body]);
  const id = await sha256Hex(bytes);
  all.set(id, bytes);
  return { id, tree: { object_id: id, children: ids.map((i) => kids.find((k) => k.id === i).tree) } };
}

// ---- .npy ----------------------------------------------------------------------------------

/** A float32 array as a .npy file (format 1.0), as `np.save` writes it. */
export function npyFromFloat32(values, shape) {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + values.length * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY 1.0
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(enc.encode(header), 10);
  const data = new DataView(out.buffer, 10 + header.length);
  values.forEach((v, i) => data.setFloat32(i * 4, v, true));
  return out;
}

/** A .npy file's float32 or float64 values (as Float32Array) and shape. */
export function float32FromNpy(bytes, what) {
  const bad = (why) => new FlowerProtocolError(`${what}: ${why}`);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) throw bad('not a .npy array');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const [hlen, hstart] = major === 1 ? [view.getUint16(8, true), 10] : major <= 3 && bytes.length >= 12 ? [view.getUint32(8, true), 12] : [-1, 0];
  if (hlen < 0 || hstart + hlen > bytes.length) throw bad('its .npy header is cut short');
  const header = String.fromCharCode(...bytes.subarray(hstart, hstart + hlen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw bad('its .npy header is malformed');
  if (fortran !== 'False') throw bad('Fortran-order arrays are not supported');
  const size = { '<f4': 4, '<f8': 8 }[descr];
  if (!size) throw bad(`dtype ${descr} is not supported (float32 or float64)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad('its shape is malformed');
  const n = shape.reduce((a, b) => a * b, 1);
  const start = hstart + hlen;
  if (bytes.length - start !== n * size) throw bad(`holds ${bytes.length - start} bytes for ${n} values of ${size}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = size === 4 ? view.getFloat32(start + 4 * i, true) : view.getFloat64(start + 8 * i, true);
  return { values: out, shape };
}

// ---- records -------------------------------------------------------------------------------

// A float32 array as an Array over ArrayChunks of its .npy bytes.
async function deflateArray({ values, shape }, all) {
  const data = npyFromFloat32(values, shape);
  const chunks = [];
  for (let at = 0; at < data.length; at += CHUNK) chunks.push(await deflateWith('ArrayChunk', [], data.subarray(at, at + CHUNK), all));
  const ids = [...new Set(chunks.map((c) => c.id))];
  const body = enc.encode(JSON.stringify({ dtype: 'float32', shape, stype: 'numpy.ndarray', arraychunk_ids: chunks.map((c) => ids.indexOf(c.id)) }));
  return deflateWith('Array', chunks, body, all);
}

// Flower's MetricRecord value cases: non-negative integers uint64, negative sint64, else double.
function metricValue(v) {
  if (Number.isInteger(v)) return v >= 0 ? { uint64: v } : { sint64: v };
  return { double: v };
}

/**
 * Deflates a reply message. `metadata`: the Metadata fields (message_id is set here to the
 * message's object id); `records`: { name: { arrays: { name: { values: Float32Array, shape } } }
 * | { metrics: { key: number } } }, or `error` { code, reason } instead.
 * Returns { message (protobuf Message fields, no content), tree (ObjectTree), objects: Map
 * id -> bytes, id }.
 */
export async function deflateMessage(root, { metadata, records = null, error = null }) {
  const T = (n) => root.lookupType(`flwr.proto.${n}`);
  const all = new Map();
  const kids = [];
  if (records) {
    const refs = {};
    const recKids = [];
    for (const [name, rec] of Object.entries(records)) {
      let d;
      if (rec.arrays) {
        const arrRefs = {};
        const arrKids = [];
        for (const [k, a] of Object.entries(rec.arrays)) {
          const ad = await deflateArray(a, all);
          arrRefs[k] = ad.id;
          arrKids.push(ad);
        }
        d = await deflateWith('ArrayRecord', arrKids, enc.encode(JSON.stringify(arrRefs)), all);
      } else if (rec.metrics) {
        const items = Object.entries(rec.metrics).map(([key, v]) => ({ key, value: metricValue(v) }));
        d = await deflateWith('MetricRecord', [], T('MetricRecord').encode(T('MetricRecord').fromObject({ items })).finish(), all);
      } else {
        throw new FlowerProtocolError(`record '${name}' is neither arrays nor metrics`);
      }
      refs[name] = d.id;
      recKids.push(d);
    }
    kids.push(await deflateWith('RecordDict', recKids, enc.encode(JSON.stringify(refs)), all));
  }
  const body = T('Message').encode(T('Message').fromObject({ metadata: { ...metadata, message_id: '' }, ...(error ? { error } : {}) })).finish();
  const msg = await deflateWith('Message', kids, body, all);
  // On the wire the message itself goes without content (an empty RecordDict, as flwr's
  // remove_content_from_message leaves it): the content travels as objects.
  const wire = error ? { metadata: { ...metadata, message_id: msg.id }, error } : { metadata: { ...metadata, message_id: msg.id }, content: {} };
  return { message: wire, tree: msg.tree, objects: all, id: msg.id };
}

// ---- inflate -------------------------------------------------------------------------------

/** Splits an object into { type, children: [ids], body }, checking its head. */
export function parseObject(bytes, id) {
  const nul = bytes.indexOf(0);
  if (nul < 0 || nul > 64 * 1024) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… has no head`);
  let head;
  try {
    head = dec.decode(bytes.subarray(0, nul));
  } catch {
    throw new FlowerProtocolError(`object ${id.slice(0, 12)}…'s head is not UTF-8`);
  }
  const parts = head.split(' ');
  if (parts.length !== 3) throw new FlowerProtocolError(`object ${id.slice(0, 12)}…'s head is malformed`);
  const body = bytes.subarray(nul + 1);
  if (String(body.length) !== parts[2]) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… says ${parts[2]} bytes and holds ${body.length}`);
  const children = parts[1] ? parts[1].split(',') : [];
  if (!children.every((c) => /^[0-9a-f]{64}$/.test(c))) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… names a malformed child id`);
  return { type: parts[0], children, body };
}

function json(body, what) {
  try {
    const v = JSON.parse(dec.decode(body));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  } catch {
    /* reported below */
  }
  throw new FlowerProtocolError(`${what} is not a JSON object`);
}

function scalarOf(value) {
  if (!value) return null;
  const k = value.value; // the oneof's case
  const v = k ? value[k] : undefined;
  if (v === undefined || v === null) return null;
  if (typeof v === 'object' && typeof v.toNumber === 'function') return v.toNumber();
  if (v && typeof v === 'object' && Array.isArray(v.vals)) return v.vals.map((x) => (typeof x === 'object' && x.toNumber ? x.toNumber() : x));
  return v;
}

/**
 * Inflates a message's content from its objects. `tree`: the ObjectTree pulled with it;
 * `fetchObject(id)`: the bytes of one object (from the Fleet API). Every id is checked against
 * the SHA-256 of its bytes and the tree against the heads. Returns { records: { name:
 * { type: 'arrays', arrays: { name: { values, shape } } } | { type: 'config'|'metrics',
 * values: { key: value } } }, error, bytes }.
 */
export async function inflateMessage(root, tree, fetchObject) {
  const T = (n) => root.lookupType(`flwr.proto.${n}`);
  const objects = new Map();
  let total = 0;
  const visit = async (node, depth) => {
    if (depth > 6) throw new FlowerProtocolError('the message nests deeper than a FedAvg message');
    if (!node || typeof node.object_id !== 'string' || !/^[0-9a-f]{64}$/.test(node.object_id)) throw new FlowerProtocolError('the message tree names a malformed object id');
    if (objects.size > MAX_OBJECTS) throw new FlowerProtocolError(`the message has more than ${MAX_OBJECTS} objects`);
    for (const c of node.children || []) await visit(c, depth + 1);
    if (objects.has(node.object_id)) return;
    const bytes = await fetchObject(node.object_id);
    total += bytes.length;
    if (total > MAX_MESSAGE_BYTES) throw new FlowerProtocolError(`the message is larger than ${MAX_MESSAGE_BYTES >> 20} MiB`);
    if ((await sha256Hex(bytes)) !== node.object_id) throw new FlowerProtocolError(`object ${node.object_id.slice(0, 12)}…'s bytes do not match its id`);
    const o = parseObject(bytes, node.object_id);
    const treeKids = (node.children || []).map((c) => c.object_id);
    if (o.children.length !== treeKids.length || o.children.some((c, i) => c !== treeKids[i])) {
      throw new FlowerProtocolError(`object ${node.object_id.slice(0, 12)}…'s children differ from the message tree`);
    }
    objects.set(node.object_id, o);
  };
  await visit(tree, 0);
  const get = (id, type) => {
    const o = objects.get(id);
    if (!o) throw new FlowerProtocolError(`object ${String(id).slice(0, 12)}… is not in the message`);
    if (o.type !== type) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… is a ${o.type}, expected a ${type}`);
    return o;
  };
  const msg = get(tree.object_id, 'Message');
  let proto;
  try {
    proto = T('Message').decode(msg.body);
  } catch (err) {
    throw new FlowerProtocolError(`the message's body is not a Flower Message: ${err.message}`);
  }
  if (msg.children.length > 1) throw new FlowerProtocolError('a message has at most one RecordDict');
  const records = {};
  if (msg.children.length === 1) {
    const rd = get(msg.children[0], 'RecordDict');
    const refs = json(rd.body, 'the RecordDict');
    for (const [name, rid] of Object.entries(refs)) {
      if (!rd.children.includes(rid)) throw new FlowerProtocolError(`record '${name}' is not a child of its RecordDict`);
      const r = objects.get(rid);
      if (!r) throw new FlowerProtocolError(`record '${name}' is missing`);
      if (r.type === 'ArrayRecord') {
        const arrays = {};
        for (const [an, aid] of Object.entries(json(r.body, `record '${name}'`))) {
          if (!r.children.includes(aid)) throw new FlowerProtocolError(`array '${an}' is not a child of record '${name}'`);
          const a = get(aid, 'Array');
          const meta = json(a.body, `array '${an}'`);
          if (meta.stype !== 'numpy.ndarray') throw new FlowerProtocolError(`array '${an}' is a ${meta.stype}, not a NumPy array`);
          if (!Array.isArray(meta.arraychunk_ids) || !meta.arraychunk_ids.every((i) => Number.isInteger(i) && i >= 0 && i < a.children.length)) {
            throw new FlowerProtocolError(`array '${an}' names chunks it does not have`);
          }
          const data = concat(meta.arraychunk_ids.map((i) => get(a.children[i], 'ArrayChunk').body));
          arrays[an] = float32FromNpy(data, `array '${an}'`);
        }
        records[name] = { type: 'arrays', arrays };
      } else if (r.type === 'ConfigRecord' || r.type === 'MetricRecord') {
        let items;
        try {
          items = T(r.type).decode(r.body).items;
        } catch (err) {
          throw new FlowerProtocolError(`record '${name}' does not decode: ${err.message}`);
        }
        const values = {};
        for (const it of items) values[it.key] = scalarOf(it.value);
        records[name] = { type: r.type === 'ConfigRecord' ? 'config' : 'metrics', values };
      } else {
        throw new FlowerProtocolError(`record '${name}' is a ${r.type}`);
      }
    }
  }
  return { records, error: proto.error || null, bytes: total };
}

