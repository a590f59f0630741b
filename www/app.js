// Page shell: loads the wasm engine, shows its version and the backend it found.
import init, { version, probeBackend } from '/pkg/edgetune.js';

const $ = (id) => document.getElementById(id);

function showError(err) {
  const el = $('error');
  el.textContent = `Could not start the engine: ${err && err.message ? err.message : err}`;
  el.hidden = false;
}

async function main() {
  try {
    await init();
  } catch (err) {
    $('version').textContent = 'failed to load';
    $('version').dataset.state = 'error';
    $('backend').textContent = '—';
    $('backend').dataset.state = 'error';
    showError(err);
    return;
  }
  $('version').textContent = `edgetune ${version()}`;
  $('version').dataset.state = 'done';
  try {
    const r = await probeBackend();
    $('backend').textContent = r.backend === 'webgpu' ? (r.dot4 ? 'WebGPU (dot4 available)' : 'WebGPU') : 'CPU';
    $('backend').dataset.backend = r.backend;
    $('backend-detail').textContent = r.description;
  } catch (err) {
    $('backend').textContent = 'CPU';
    $('backend').dataset.backend = 'cpu';
    $('backend-detail').textContent = String(err && err.message ? err.message : err);
  }
  $('backend').dataset.state = 'done';
}

main();
