// Trained versions of the user's head on the backbone in use: choose one, delete one,
// download the model with it (.etm), export and import the whole project (.json).
import { modelWithHead } from '/pkg/edgetune.js';
import { exportProject, parseProject } from '/project.js';
import { $, el, showError, download } from '/lib/dom.js';
import { state, on, changed, ownVersions, currentVersion, loadProject } from '/lib/state.js';
import { setMode } from '/views/live.js';
import { reembedStaleSamples } from '/views/models.js';

function renderVersions() {
  const own = ownVersions();
  const list = own.slice().reverse().map((v, i) => {
    const acc = v.metrics && v.metrics.validationAccuracy;
    const fed = v.metrics?.federated ? ` · federated, round ${v.metrics.federated.round ?? '?'}` : '';
    const label = `v${own.length - i} · ${v.names.join(', ')}${fed}${v.metrics?.int8 ? ' · int8 head' : ''}${acc === null || acc === undefined ? '' : ` · ${(100 * acc).toFixed(0)}%`} · ${new Date(v.created).toLocaleString()}`;
    const use = el('button', { type: 'button', textContent: v.id === state.current ? 'In use' : 'Use', disabled: v.id === state.current });
    use.addEventListener('click', async () => {
      try {
        await state.store.setMeta('current', v.id);
        state.current = v.id;
        changed('versions');
        setMode('custom');
        await state.store.setMeta('mode', 'custom');
      } catch (err) { showError(err); }
    });
    const del = el('button', { type: 'button', className: 'danger', textContent: 'Delete' });
    del.addEventListener('click', async () => {
      const rest = own.filter((o) => o.id !== v.id);
      const next = v.id === state.current ? (rest.length ? rest[rest.length - 1].id : null) : state.current;
      try {
        await state.store.deleteVersion(v.id, next);
        state.versions = state.versions.filter((o) => o.id !== v.id);
        state.current = next;
        changed('versions');
        setMode(state.mode);
      } catch (err) { showError(err); }
    });
    return el('li', {}, el('span', { className: v.id === state.current ? 'current' : '', textContent: label }), use, del);
  });
  $('versions').replaceChildren(...(list.length ? list : [el('li', { className: 'hint', textContent: 'No trained model yet.' })]));
  $('download-model').disabled = !currentVersion();
}

function downloadModel() {
  const v = currentVersion();
  if (!v) return;
  try {
    const bytes = modelWithHead(state.modelBytes, v.weight, v.bias, v.names);
    download(new Blob([bytes], { type: 'application/octet-stream' }), `edgetune-${v.names.join('-').replace(/[^\p{L}\p{N}-]+/gu, '_').slice(0, 60)}.etm`);
  } catch (err) {
    showError(err);
  }
}

async function exportAll() {
  try {
    // The file holds one backbone's features: the samples' and this backbone's heads.
    const text = await exportProject({ ...state, versions: ownVersions() }, state.dim, state.backbone);
    download(new Blob([text], { type: 'application/json' }), 'edgetune-project.json');
  } catch (err) {
    showError(err);
  }
}

// A project file opened or dropped: replaces the stored project (after asking).
export async function importFile(file) {
  try {
    const project = parseProject(await file.text(), state.dim, state.backbone);
    if (state.samples.length && !confirm('Replace your current classes, samples and models with the imported project?')) return;
    await state.store.replaceAll(project);
    await loadProject();
    // Samples made by another model are re-embedded by this one from their images.
    await reembedStaleSamples();
  } catch (err) {
    showError(err);
  }
}

export function initVersions() {
  $('download-model').addEventListener('click', downloadModel);
  $('export').addEventListener('click', exportAll);
  $('import').addEventListener('change', (ev) => { const f = ev.target.files[0]; ev.target.value = ''; if (f) importFile(f); });
  on('versions', renderVersions);
}
