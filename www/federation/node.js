// The page as a Flower node: joins a federation through the Fleet API (fleet.js), pulls the
// ServerApp's messages, hands `train` and `evaluate` to the caller's handlers, and pushes the
// replies as Flower objects (objects.js).
//
//   join:   register-node (a new key) → activate-node → node id; heartbeats every
//           `heartbeatS` seconds (the SuperLink answers for a node whose heartbeats stop
//           with an error reply, so a device that vanishes never stalls a round)
//   loop:   pull-messages → for each: pull-object for every object of its tree, checked
//           (objects.js) → kept in `inflight` → confirm-message-received → handler →
//           push-messages with the reply's tree → push-object for each object the SuperLink
//           asks for → `inflight` cleared. A message kept in `inflight` ({ save, load, clear },
//           e.g. IndexedDB) when the page reloads is answered after the next join.
//   leave:  deactivate-node → unregister-node
//
// Handlers: `train({ config, arrays, metadata })` → { arrays, metrics } and
// `evaluate({ config, arrays, metadata })` → { metrics }; a handler that throws is replied to
// with a Flower Error carrying its message (the round goes on without this node), as a
// ClientApp's exception is. `onEvent(event)` sees what happens, including every reply's exact
// contents and sizes (the page shows them).

import { FleetClient, FleetError, publicKeyPem } from './fleet.js';
import { deflateMessage, inflateMessage, FlowerProtocolError } from './objects.js';

const CLIENT_APP_RAISED_EXCEPTION = 2; // flwr.common.constant.ErrorCode

export class FlowerNode {
  constructor(root, base, keys, { handlers, onEvent = () => {}, inflight = null, heartbeatS = 10, pollMs = 1000, fetchTimeoutMs = 60000 } = {}) {
    this.root = root;
    this.handlers = handlers;
    this.inflight = inflight;
    this.onEvent = onEvent;
    this.heartbeatS = heartbeatS;
    this.pollMs = pollMs;
    this.traffic = { sent: 0, received: 0 };
    this.client = new FleetClient(root, base, keys, {
      timeoutMs: fetchTimeoutMs,
      onTraffic: ({ sent, received }) => {
        this.traffic.sent += sent;
        this.traffic.received += received;
      },
    });
    this.nodeId = null;
    this.running = false;
  }

  get node() {
    return { node_id: this.nodeId };
  }

  /**
   * Registers (once per key) and activates the node; starts heartbeats and the loop.
   * `previousNodeId`: the id this key had before a reload, if the caller kept it.
   */
  async join(previousNodeId = null) {
    const pem = await publicKeyPem(this.client.keys.publicKey);
    try {
      await this.client.call('register-node', 'RegisterNodeFleetRequest', { public_key: pem }, 'RegisterNodeFleetResponse');
    } catch (err) {
      // A reload is the same key: registered already (412, "Public key already in use"), and
      // activation is what remains.
      if (!(err instanceof FleetError) || err.status !== 412) throw err;
      this.onEvent({ type: 'registered-before', detail: err.message });
    }
    try {
      const r = await this.client.call('activate-node', 'ActivateNodeRequest', { public_key: pem, heartbeat_interval: this.heartbeatS }, 'ActivateNodeResponse');
      this.nodeId = String(r.node_id);
    } catch (err) {
      // A reload within two heartbeats: the SuperLink still has this node online and refuses
      // to activate it again (412); the same node goes on, once a heartbeat confirms it.
      if (!(err instanceof FleetError) || err.status !== 412 || !previousNodeId) throw err;
      this.nodeId = String(previousNodeId);
      const hb = await this.client.call('send-node-heartbeat', 'SendNodeHeartbeatRequest', { node: this.node, heartbeat_interval: this.heartbeatS }, 'SendNodeHeartbeatResponse');
      if (!hb.success) throw new FleetError('the server refuses to activate this device and does not know it as online either');
    }
    if (this.nodeId === '0') throw new FleetError('activate-node: the server gave no node id');
    this.running = true;
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatS * 1000);
    this.onEvent({ type: 'joined', nodeId: this.nodeId });
    this.loop = this.resume().then(() => this.run());
    return this.nodeId;
  }

  async beat() {
    try {
      const r = await this.client.call('send-node-heartbeat', 'SendNodeHeartbeatRequest', { node: this.node, heartbeat_interval: this.heartbeatS }, 'SendNodeHeartbeatResponse');
      if (!r.success) this.onEvent({ type: 'warning', detail: 'the server no longer knows this device' });
    } catch (err) {
      this.onEvent({ type: 'warning', detail: `heartbeat failed: ${err.message}` });
    }
  }

  /** Stops the loop and tells the server this device is gone (best effort). */
  async leave({ unregister = false } = {}) {
    this.running = false;
    clearInterval(this.heartbeat);
    if (this.nodeId === null) return;
    const id = this.nodeId;
    try {
      await this.client.call('deactivate-node', 'DeactivateNodeRequest', { node_id: id }, 'DeactivateNodeResponse');
      if (unregister) await this.client.call('unregister-node', 'UnregisterNodeFleetRequest', { node_id: id }, 'UnregisterNodeFleetResponse');
    } finally {
      this.onEvent({ type: 'left', nodeId: id });
    }
  }

  // A message pulled before a reload (or a crash) and not yet answered: answered now, if its
  // time to live has not run out (the server deletes a pulled message's objects once it is
  // confirmed, so its content was kept with it).
  async resume() {
    const pending = await this.inflight?.load();
    if (!pending) return;
    const { md, content } = pending;
    if (md.created_at + md.ttl < Date.now() / 1000) {
      await this.inflight.clear();
      this.onEvent({ type: 'warning', detail: `a ${md.message_type} message from before the reload expired unanswered` });
      return;
    }
    this.onEvent({ type: 'message', messageType: md.message_type, messageId: md.message_id, resumed: true });
    try {
      await this.answer(md, content, performance.now());
    } catch (err) {
      this.onEvent({ type: 'warning', detail: `could not answer the message from before the reload: ${err.message}` });
    }
  }

  async run() {
    let failures = 0;
    while (this.running) {
      try {
        const r = await this.client.call('pull-messages', 'PullMessagesRequest', { node: this.node }, 'PullMessagesResponse');
        failures = 0;
        const n = Math.min(r.messages_list.length, r.message_object_trees.length);
        for (let i = 0; i < n && this.running; i++) await this.handle(r.messages_list[i], r.message_object_trees[i]);
      } catch (err) {
        // A lost connection or a server restart: keep the local state and retry with backoff.
        failures++;
        this.onEvent({ type: 'warning', detail: err.message });
        await sleep(Math.min(30000, this.pollMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      await sleep(this.pollMs);
    }
  }

  async pullObject(runId, id) {
    for (let attempt = 0; ; attempt++) {
      const r = await this.client.call('pull-object', 'PullObjectRequest', { node: this.node, run_id: runId, object_id: id }, 'PullObjectResponse');
      if (!r.object_found) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… is not on the server`);
      if (r.object_available) return r.object_content;
      if (attempt >= 50) throw new FlowerProtocolError(`object ${id.slice(0, 12)}… never became available`);
      await sleep(200);
    }
  }

  async handle(message, tree) {
    const md = message.metadata || {};
    const started = performance.now();
    const type = md.message_type;
    const round = md.group_id;
    this.onEvent({ type: 'message', messageType: type, round, messageId: md.message_id });
    let content;
    try {
      if (!tree || tree.object_id !== md.message_id) throw new FlowerProtocolError("the message's object tree does not match its id");
      content = await inflateMessage(this.root, tree, (id) => this.pullObject(md.run_id, id));
    } catch (err) {
      if (err instanceof FleetError) throw err;
      content = { refused: err.message };
    }
    await this.inflight?.save({ md, content });
    await this.client.call('confirm-message-received', 'ConfirmMessageReceivedRequest', { node: this.node, run_id: md.run_id, message_object_id: md.message_id }, 'ConfirmMessageReceivedResponse');
    await this.answer(md, content, started);
  }

  // Runs the handler on a message's content and pushes the reply (a Flower Error when the
  // content was refused or the handler threw).
  async answer(md, content, started) {
    const type = md.message_type;
    const round = md.group_id;
    let reply;
    try {
      if (content.refused) throw new FlowerProtocolError(content.refused);
      if (content.error) throw new FlowerProtocolError(`the server sent an error: ${content.error.reason}`);
      const handler = this.handlers[type];
      if (!handler) throw new FlowerProtocolError(`this device does not answer '${type}' messages`);
      const config = Object.values(content.records).find((r) => r.type === 'config')?.values || {};
      const arrays = Object.values(content.records).find((r) => r.type === 'arrays')?.arrays || null;
      reply = { records: await handler({ config, arrays, metadata: md, received: content.bytes }) };
    } catch (err) {
      if (err instanceof FleetError) throw err; // the connection, not the message: retried by run()
      this.onEvent({ type: 'refused', messageType: type, round, detail: err.message });
      reply = { error: { code: CLIENT_APP_RAISED_EXCEPTION, reason: err.message } };
    }
    await this.reply(md, reply, (performance.now() - started) / 1000);
    await this.inflight?.clear();
  }

  async reply(md, { records = null, error = null }, runtimeS) {
    const now = Date.now() / 1000;
    const metadata = {
      run_id: md.run_id,
      message_id: '',
      src_node_id: this.nodeId,
      dst_node_id: md.src_node_id,
      reply_to_message_id: md.message_id,
      group_id: md.group_id,
      created_at: now,
      ttl: Math.max(1, md.created_at + md.ttl - now),
      message_type: md.message_type,
    };
    if (md.dst_task_id !== undefined && md.dst_task_id !== null) metadata.src_task_id = md.dst_task_id;
    if (md.src_task_id !== undefined && md.src_task_id !== null) metadata.dst_task_id = md.src_task_id;
    const out = await deflateMessage(this.root, { metadata, records, error });
    const before = this.traffic.sent;
    const r = await this.client.call('push-messages', 'PushMessagesRequest', {
      node: this.node, messages_list: [out.message], message_object_trees: [out.tree], clientapp_runtime_list: [runtimeS],
    }, 'PushMessagesResponse');
    for (const id of r.objects_to_push) {
      const bytes = out.objects.get(id);
      if (!bytes) throw new FleetError(`push-messages: the server asked for object ${id.slice(0, 12)}…, which this reply does not have`);
      const p = await this.client.call('push-object', 'PushObjectRequest', { node: this.node, run_id: md.run_id, object_id: id, object_content: bytes, session_id: r.session_id }, 'PushObjectResponse');
      if (!p.stored) throw new FleetError(`push-object: the server did not store object ${id.slice(0, 12)}…`);
    }
    this.onEvent({ type: 'replied', messageType: md.message_type, round: md.group_id, records, error, bytesSent: this.traffic.sent - before, seconds: runtimeS });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
