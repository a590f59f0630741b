// The page's Fleet API client (www/federation/fleet.js) and the page server's relay to the
// SuperLink (scripts/serve.mjs `fleet`), against a stand-in SuperLink that answers what a
// hostile or broken server would: oversized, undecodable, errors, silence. Node only.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer } from '../../scripts/serve.mjs';
import { fleetTypes } from '../../scripts/federation.mjs';
import { FleetClient, FleetError, generateNodeKeys, publicKeyPem } from '../../www/federation/fleet.js';

const root = await fleetTypes();
const keys = await generateNodeKeys();

// A stand-in SuperLink: `answer(req, body, res)` decides; every request is recorded.
async function standIn(answer) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      answer(req, body, res);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

const pull = (client) => client.call('pull-messages', 'PullMessagesRequest', { node: { node_id: '18446744073709551615' } }, 'PullMessagesResponse');

test('requests are signed as flwr verifies them, and 64-bit node ids survive', async () => {
  const up = await standIn((req, body, res) => res.end(root.lookupType('PullMessagesResponse').encode({}).finish()));
  try {
    await pull(new FleetClient(root, up.url, keys));
    const [r] = up.seen;
    assert.equal(r.url, '/v1/fleet/pull-messages');
    assert.equal(r.headers['content-type'], 'application/protobuf');
    const pem = await publicKeyPem(keys.publicKey);
    assert.equal(Buffer.from(r.headers['flwr-public-key'], 'base64').toString(), new TextDecoder().decode(pem));
    assert.match(new TextDecoder().decode(pem), /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PUBLIC KEY-----\n$/);
    // The signature is DER (SEQUENCE of two INTEGERs), over the timestamp's bytes.
    const sig = Buffer.from(r.headers['flwr-signature'], 'base64');
    assert.equal(sig[0], 0x30);
    const ts = r.headers['flwr-timestamp'];
    assert.ok(Math.abs(Date.parse(ts) - Date.now()) < 60_000, `timestamp ${ts}`);
    const decoded = root.lookupType('PullMessagesRequest').toObject(root.lookupType('PullMessagesRequest').decode(r.body), { longs: String });
    assert.equal(decoded.node.node_id, '18446744073709551615', 'the largest uint64 node id, exactly');
  } finally {
    await up.close();
  }
});

test('a hostile or broken server gets a clear error, never a hang or a crash', async () => {
  const cases = [
    ['an answer larger than allowed', (req, body, res) => { res.writeHead(200, { 'content-length': 2048 }); res.end(Buffer.alloc(2048, 1)); }, /more than the 0 MiB allowed|answer is 2048 bytes/],
    ['an answer that is not protobuf', (req, body, res) => res.end(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), /is not a Flower PullMessagesResponse/],
    ["the SuperLink's error", (req, body, res) => { res.writeHead(412, { 'content-type': 'application/json' }); res.end(JSON.stringify({ detail: 'Failed to activate SuperNode.' })); }, /answered 412 \(Failed to activate SuperNode\.\)/],
    ['silence', () => {}, /no answer within 0\.5 s/],
  ];
  for (const [what, answer, pattern] of cases) {
    const up = await standIn(answer);
    try {
      const client = new FleetClient(root, up.url, keys, { maxBytes: 1024, timeoutMs: 500 });
      await assert.rejects(pull(client), (err) => err instanceof FleetError && pattern.test(err.message), `${what}: ${pattern}`);
    } finally {
      await up.close();
    }
  }
  const client = new FleetClient(root, 'http://127.0.0.1:9', keys, { timeoutMs: 2000 });
  await assert.rejects(pull(client), /the federation server cannot be reached/);
});

test("the page server relays the Fleet API's calls and nothing else of the SuperLink", async () => {
  const up = await standIn((req, body, res) => { res.writeHead(200, { 'content-type': 'application/protobuf' }); res.end(Buffer.from([8, 1])); });
  const { server, url } = await startServer({ port: 0, fleet: up.url });
  try {
    const post = (p, headers = {}, body = Buffer.from([1, 2, 3])) => fetch(new URL(p, url), { method: 'POST', headers: { 'content-type': 'application/protobuf', ...headers }, body });
    const ok = await post('/v1/fleet/send-node-heartbeat', { 'flwr-timestamp': 't', 'flwr-signature': 's', 'flwr-public-key': 'k', cookie: 'secret=1', 'x-forwarded-for': '1.2.3.4' });
    assert.equal(ok.status, 200);
    assert.deepEqual(new Uint8Array(await ok.arrayBuffer()), new Uint8Array([8, 1]));
    assert.match(ok.headers.get('content-security-policy'), /default-src 'self'/);
    const got = up.seen.at(-1);
    assert.equal(got.url, '/v1/fleet/send-node-heartbeat');
    assert.deepEqual(got.body, Buffer.from([1, 2, 3]));
    assert.equal(got.headers['flwr-signature'], 's');
    assert.equal(got.headers.cookie, undefined, 'only the protobuf body and Flower\'s headers pass');
    assert.equal(got.headers['x-forwarded-for'], undefined);
    const before = up.seen.length;
    for (const p of ['/v1/control/start-run', '/v1/runtime/pull-task-input', '/v1/fleet/get-fab', '/v1/fleet/../control/start-run', '/v1/fleet/pull-messages/x']) {
      assert.ok([404, 405].includes((await post(p)).status), `${p} is not relayed`);
    }
    assert.equal((await fetch(new URL('/v1/fleet/pull-messages', url))).status, 404, 'a GET is not a Fleet call');
    const big = await post('/v1/fleet/push-object', { 'content-length': String(81 * 1024 * 1024) }, Buffer.alloc(0)).catch((e) => e);
    assert.ok(big instanceof Error || big.status === 413, 'a body over the limit is refused');
    assert.equal(up.seen.length, before, 'none of those reached the SuperLink');
  } finally {
    server.close();
    await up.close();
  }
});
