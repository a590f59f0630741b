// The user's classes and their samples: add, rename and delete classes, record samples from
// the camera (hold the button) or add image files, delete single samples.
import { centreSquare } from '/camera.js';
import { checkName } from '/project.js';
import { $, el, showError } from '/lib/dom.js';
import { state, on, changed, samplesOf, exclusive } from '/lib/state.js';

// Stores a sample (its embedding by the backbone in use, and a JPEG of the frame).
export async function addSample(classId, embedding, image) {
  if (!state.classes.some((c) => c.id === classId)) return;
  try {
    const s = await state.store.addSample(classId, embedding, state.backbone, image);
    state.samples.push(s);
    changed('samples');
    // Best effort: asks the browser not to evict the project under storage pressure; a
    // refusal changes nothing the user could act on (the data is stored either way).
    if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  } catch (err) {
    stopRecording();
    showError(err);
  }
}

async function addFiles(classId, files) {
  for (const file of files) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      showError(`${file.name} is not an image this browser can read.`);
      continue;
    }
    const frame = centreSquare(bitmap, state.frameSize);
    bitmap.close();
    try {
      const args = { rgba: frame.rgba, width: frame.width, height: frame.height };
      const e = await exclusive(() => state.engine.call('embed', args, { transfer: [frame.rgba.buffer] }));
      const image = await frame.canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 });
      await addSample(classId, e, image);
    } catch (err) {
      showError(err);
    }
  }
}

function startRecording(classId, button) {
  if (state.switching) return;
  if (!state.camera || !state.camera.running) {
    showError('The camera is not running: add images from files instead.');
    return;
  }
  state.recording = classId;
  state.lastSample = 0;
  button.setAttribute('aria-pressed', 'true');
  button.textContent = 'Recording…';
}

export function stopRecording() {
  state.recording = null;
  for (const b of document.querySelectorAll('.record[aria-pressed="true"]')) {
    b.setAttribute('aria-pressed', 'false');
    b.textContent = 'Hold to record';
  }
}

function recordButton(c) {
  const record = el('button', { type: 'button', className: 'record', textContent: 'Hold to record' });
  record.setAttribute('aria-pressed', 'false');
  record.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    record.setPointerCapture?.(ev.pointerId);
    startRecording(c.id, record);
  });
  for (const t of ['pointerup', 'pointercancel', 'lostpointercapture']) record.addEventListener(t, stopRecording);
  record.addEventListener('keydown', (ev) => { if ((ev.key === ' ' || ev.key === 'Enter') && !ev.repeat) startRecording(c.id, record); });
  record.addEventListener('keyup', stopRecording);
  record.addEventListener('contextmenu', (ev) => ev.preventDefault());
  return record;
}

let thumbUrls = [];
function renderClasses() {
  for (const u of thumbUrls) URL.revokeObjectURL(u);
  thumbUrls = [];
  const items = state.classes.map((c) => {
    const samples = samplesOf(c.id);
    const name = el('input', { value: c.name, maxLength: 60, ariaLabel: `Name of class ${c.name}`, className: 'class-name' });
    name.addEventListener('change', () => renameClass(c, name));
    const files = el('input', { type: 'file', accept: 'image/*', multiple: true, hidden: true });
    files.addEventListener('change', () => { addFiles(c.id, [...files.files]); files.value = ''; });
    const addImages = el('label', { className: 'button', textContent: 'Add images' }, files);
    const del = el('button', { type: 'button', className: 'danger', textContent: 'Delete', ariaLabel: `Delete class ${c.name}` });
    del.addEventListener('click', () => deleteClass(c));
    const thumbs = el('div', { className: 'thumbs' }, ...samples.slice().reverse().map((s) => {
      const url = URL.createObjectURL(s.image);
      thumbUrls.push(url);
      const x = el('button', { type: 'button', textContent: '✕', ariaLabel: 'Delete this sample' });
      x.addEventListener('click', () => deleteSample(s));
      return el('div', { className: 'thumb' }, el('img', { src: url, alt: `sample of ${c.name}` }), x);
    }));
    const li = el('li', { className: 'class' },
      el('div', { className: 'row' }, name, el('span', { className: 'count', textContent: `${samples.length} sample${samples.length === 1 ? '' : 's'}` })),
      el('div', { className: 'row' }, recordButton(c), addImages, del),
      thumbs);
    li.dataset.name = c.name;
    li.dataset.count = String(samples.length);
    return li;
  });
  $('classes').replaceChildren(...items);
}

// Runs a store change; its error is shown and the state is left as it was.
async function guarded(fn) {
  try {
    await fn();
  } catch (err) {
    showError(err);
  }
}

async function renameClass(c, input) {
  try {
    const name = checkName(input.value);
    if (state.classes.some((o) => o.id !== c.id && o.name === name)) throw new Error(`There is already a class called "${name}".`);
    await state.store.renameClass(c.id, name);
    c.name = name;
    changed('samples');
  } catch (err) {
    input.value = c.name;
    showError(err);
  }
}

async function deleteClass(c) {
  const n = samplesOf(c.id).length;
  if (n > 0 && !confirm(`Delete "${c.name}" and its ${n} samples?`)) return;
  await guarded(async () => {
    await state.store.deleteClass(c.id);
    state.classes = state.classes.filter((o) => o.id !== c.id);
    state.samples = state.samples.filter((s) => s.classId !== c.id);
    changed('samples');
  });
}

const deleteSample = (s) => guarded(async () => {
  await state.store.deleteSample(s.id);
  state.samples = state.samples.filter((o) => o.id !== s.id);
  changed('samples');
});

function addClass(ev) {
  ev.preventDefault();
  return guarded(async () => {
    const name = checkName($('new-class').value);
    if (state.classes.some((c) => c.name === name)) throw new Error(`There is already a class called "${name}".`);
    const c = await state.store.addClass(name);
    state.classes.push(c);
    $('new-class').value = '';
    changed('samples');
  });
}

export function initClasses() {
  $('add-class').addEventListener('submit', addClass);
  window.addEventListener('blur', stopRecording);
  on('samples', renderClasses);
  on('switching', () => { if (state.switching) stopRecording(); });
}
