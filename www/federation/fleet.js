// A Flower node's side of the SuperLink's Fleet API (flwr 1.42): protobuf over HTTP POST,
// `<base>/v1/fleet/<call>`, body and answer `application/protobuf`, the messages defined by
// flwr's own descriptors (pkg.flower/flwr-proto.mjs, made by scripts/flower.sh).
//
// Authentication, as flwr's NodeAuthHttpInterceptor: every request carries
//   flwr-public-key   base64 of the node's public key, PEM SubjectPublicKeyInfo (ECDSA P-384)
//   flwr-timestamp    the current time, ISO 8601 UTC
//   flwr-signature    base64 of the DER ECDSA-SHA256 signature of the timestamp's ASCII bytes
// The key pair is WebCrypto's (the private key non-extractable); the caller keeps it (the page
// in IndexedDB) so a reload is the same node.
//
// Answers are untrusted: a body over `maxBytes` is cut off and refused, a body that does not
// decode is an error naming the call, and an HTTP error carries the SuperLink's own message.

import { concat } from './objects.js';

export class FleetError extends Error {
  constructor(message, { status = 0, call = '' } = {}) {
    super(message);
    this.status = status;
    this.call = call;
  }
}

/**
 * The Fleet messages for the client: `generated` is the default export of
 * pkg.flower/flwr-proto.mjs (protobuf.js static code for flwr's descriptors, on the minimal
 * runtime with 64-bit integers configured); `lookupType('flwr.proto.Node')` gives a message
 * type with encode, decode, fromObject and toObject.
 */
export function fleetRoot(generated, flwrVersion = '') {
  const ns = generated?.flwr?.proto;
  if (!ns) throw new Error('the Flower message code is missing its flwr.proto namespace');
  return {
    flwrVersion,
    lookupType(name) {
      const t = ns[name.replace(/^flwr\.proto\./, '')];
      if (!t) throw new Error(`no Flower message type ${name}`);
      return t;
    },
  };
}

export async function generateNodeKeys() {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, false, ['sign', 'verify']);
}

function b64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The public key as PEM bytes, as flwr's `public_key_to_bytes` writes it. */
export async function publicKeyPem(publicKey) {
  const der = b64(new Uint8Array(await crypto.subtle.exportKey('spki', publicKey)));
  const lines = der.match(/.{1,64}/g).join('\n');
  return new TextEncoder().encode(`-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`);
}

// WebCrypto signs ECDSA as r || s; cryptography (the SuperLink) verifies DER.
function derSignature(raw) {
  const half = raw.length / 2;
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    return v[0] & 0x80 ? [0x02, v.length + 1, 0, ...v] : [0x02, v.length, ...v];
  };
  const body = [...int(raw.subarray(0, half)), ...int(raw.subarray(half))];
  const len = body.length < 0x80 ? [body.length] : [0x81, body.length];
  return new Uint8Array([0x30, ...len, ...body]);
}

export class FleetClient {
  /**
   * `base`: the origin (and path prefix) the Fleet API is reached at, e.g. the page's own
   * origin with the server's same-origin route. `keys`: a WebCrypto ECDSA P-384 key pair.
   * `onTraffic({ call, sent, received })` sees every request's sizes.
   */
  constructor(root, base, keys, { maxBytes = 80 * 1024 * 1024, timeoutMs = 60000, onTraffic = null } = {}) {
    this.root = root;
    this.base = base.replace(/\/$/, '');
    this.keys = keys;
    this.maxBytes = maxBytes;
    this.timeoutMs = timeoutMs;
    this.onTraffic = onTraffic;
    this.pem = null;
  }

  type(name) {
    return this.root.lookupType(`flwr.proto.${name}`);
  }

  async headers() {
    this.pem ??= await publicKeyPem(this.keys.publicKey);
    const timestamp = new Date().toISOString();
    const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.keys.privateKey, new TextEncoder().encode(timestamp)));
    return {
      'content-type': 'application/protobuf',
      accept: 'application/protobuf',
      'flwr-public-key': b64(this.pem),
      'flwr-timestamp': timestamp,
      'flwr-signature': b64(derSignature(sig)),
    };
  }

  /** One Fleet call: `path` e.g. 'pull-messages', request and response type names. */
  async call(path, requestType, request, responseType) {
    const Req = this.type(requestType);
    // fromObject, not verify: 64-bit ids travel as decimal strings.
    const body = Req.encode(Req.fromObject(request)).finish();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.timeoutMs);
    let res;
    let bytes;
    try {
      res = await fetch(`${this.base}/v1/fleet/${path}`, { method: 'POST', headers: await this.headers(), body, signal: ctl.signal, cache: 'no-store' });
      bytes = await readLimited(res, this.maxBytes, path);
    } catch (e) {
      if (e instanceof FleetError) throw e;
      throw new FleetError(ctl.signal.aborted ? `${path}: no answer within ${this.timeoutMs / 1000} s` : `${path}: the federation server cannot be reached (${e.message})`, { call: path });
    } finally {
      clearTimeout(timer);
    }
    this.onTraffic?.({ call: path, sent: body.length, received: bytes.length });
    if (!res.ok) {
      let detail = '';
      try {
        const j = JSON.parse(new TextDecoder().decode(bytes.subarray(0, 4096)));
        detail = typeof j.detail === 'string' ? j.detail : j.message || j.detail?.message || '';
      } catch {
        detail = new TextDecoder().decode(bytes.subarray(0, 200));
      }
      throw new FleetError(`${path}: the server answered ${res.status}${detail ? ` (${detail})` : ''}`, { status: res.status, call: path });
    }
    try {
      return this.type(responseType).toObject(this.type(responseType).decode(bytes), { longs: String, bytes: Uint8Array, defaults: true, oneofs: true });
    } catch (e) {
      throw new FleetError(`${path}: the answer is not a Flower ${responseType} (${e.message})`, { call: path });
    }
  }
}

// The body, refused (and the transfer cancelled) past `max` bytes.
async function readLimited(res, max, path) {
  const declared = Number(res.headers.get('content-length'));
  if (declared > max) throw new FleetError(`${path}: the answer is ${declared} bytes, more than the ${max >> 20} MiB allowed`, { call: path });
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      throw new FleetError(`${path}: the answer is more than the ${max >> 20} MiB allowed`, { call: path });
    }
    parts.push(value);
  }
  return concat(parts);
}
