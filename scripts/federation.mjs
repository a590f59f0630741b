// The server side of a federation, from Flower's own parts in the pinned environment
// (scripts/flower.sh): the stock `flower-superlink` (its Fleet API over HTTP, in-memory state,
// no dependency installation at run time) and the repository's Flower app (federation/),
// submitted with `flwr run`. The page server relays the Fleet API's calls to it
// (serve.mjs, `fleet`), so pages reach it on their own origin.
//
//   const fed = await startFederation({ port });           // SuperLink up and listening
//   const runId = await fed.submit({ 'num-server-rounds': 3, 'min-nodes': 2, ... });
//   ...                                                      // pages join, rounds run
//   await fed.stop();
//
// Used by `npm start -- --federation` (serve.mjs) and tests/e2e/federation.test.mjs.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.env.EDGETUNE_CACHE || path.join(os.homedir(), '.cache', 'edgetune');

/** The Flower venv (made once by scripts/flower.sh, which also exports pkg.flower/flwr-proto.json). */
export function flowerEnv() {
  const out = execFileSync('bash', [path.join(ROOT, 'scripts', 'flower.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').pop();
}

/**
 * The page's Fleet message types, in Node (tests): protobuf.js's minimal runtime as the
 * generated code expects it (globalThis.protobuf, with 64-bit integers from `long`).
 */
export async function fleetTypes() {
  flowerEnv();
  globalThis.protobuf ??= createRequire(path.join(ROOT, 'package.json'))('protobufjs/minimal.js');
  const code = await import(path.join(ROOT, 'pkg.flower/flwr-proto.mjs'));
  const { fleetRoot } = await import('../www/federation/fleet.js');
  return fleetRoot(code.default, code.flwrVersion);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, child, logFile, ms = 60000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`flower-superlink exited (${child.exitCode}); its log: ${logFile}`);
    const up = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); r(true); });
      c.once('error', () => r(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`flower-superlink did not listen on ${port} within ${ms / 1000} s; its log: ${logFile}`);
}

// --run-config's text: TOML values (strings quoted).
function runConfigText(cfg) {
  return Object.entries(cfg).map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`).join(' ');
}

/**
 * Starts a SuperLink on `port` (a free one when 0). `logDir`: where its log and the flwr CLI's
 * home go. Returns { fleetUrl, port, submit(runConfig) -> run id, log(runId) -> text, stop() }.
 */
export async function startFederation({ port = 0, logDir = path.join(CACHE, 'federation') } = {}) {
  const venv = flowerEnv();
  const bin = path.join(venv, 'bin');
  port = port || (await freePort());
  fs.mkdirSync(logDir, { recursive: true });
  const home = fs.mkdtempSync(path.join(logDir, 'flwr-home-'));
  // The flwr CLI's connection to this SuperLink (its Control API shares the port).
  fs.writeFileSync(path.join(home, 'config.toml'), `[superlink]\ndefault = "edgetune"\n\n[superlink.edgetune]\naddress = "127.0.0.1:${port}"\ninsecure = true\n`);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, FLWR_HOME: home, PYTHONUNBUFFERED: '1' };
  const logFile = path.join(logDir, `superlink-${port}.log`);
  const log = fs.openSync(logFile, 'w');
  // --insecure: plain HTTP on loopback only; the page server in front of it does TLS (--https).
  const child = spawn(path.join(bin, 'flower-superlink'), ['--insecure', '--disable-runtime-dependency-installation', '--host', '127.0.0.1', '--port', String(port)], {
    env, stdio: ['ignore', log, log], detached: true,
  });
  await waitForPort(port, child, logFile);
  const flwr = (args) => new Promise((resolve, reject) => {
    const p = spawn(path.join(bin, 'flwr'), args, { env, cwd: ROOT });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`flwr ${args[0]} failed (${code}): ${out.slice(-2000)}`))));
  });
  return {
    port,
    fleetUrl: `http://127.0.0.1:${port}`,
    logFile,
    async submit(runConfig = {}) {
      const out = await flwr(['run', path.join(ROOT, 'federation'), 'edgetune', ...(Object.keys(runConfig).length ? ['--run-config', runConfigText(runConfig)] : [])]);
      const id = /started run (\d+)/i.exec(out)?.[1];
      if (!id) throw new Error(`flwr run did not say which run it started: ${out.slice(-500)}`);
      return id;
    },
    log: (runId) => flwr(['log', runId, 'edgetune', '--show']),
    async stop() {
      if (child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
        await new Promise((r) => {
          const t = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } r(); }, 5000);
          child.once('exit', () => { clearTimeout(t); r(); });
        });
      }
      fs.closeSync(log);
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}
