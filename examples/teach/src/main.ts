// The example: one page that classifies photos with @edgetune/web, teaches two classes from
// photos, trains and classifies again. Every call is the package's typed API.
import { createClassifier, EdgetuneError } from '@edgetune/web';
import type { Classification, Classifier, TrainResult } from '@edgetune/web';

// What the page did last, for a person reading the console and for the end-to-end test.
interface ExampleState {
  api: { createClassifier: typeof createClassifier };
  classifier?: Classifier;
  results: Classification[];
  trained?: TrainResult;
  error?: { code: string; message: string };
}
declare global {
  interface Window {
    example: ExampleState;
  }
}
const state: ExampleState = { api: { createClassifier }, results: [] };
window.example = state;

function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const e = document.getElementById(id);
  if (!(e instanceof type)) throw new Error(`#${id} is missing`);
  return e;
}
const status = byId('status', HTMLParagraphElement);
const photo = byId('photo', HTMLInputElement);
const label = byId('label', HTMLInputElement);
const results = byId('results', HTMLOListElement);
const buttons = ['classify', 'teach', 'train'].map((id) => byId(id, HTMLButtonElement));

function show(e: unknown): void {
  const code = e instanceof EdgetuneError ? e.code : 'unexpected';
  const message = e instanceof Error ? e.message : String(e);
  state.error = { code, message };
  status.textContent = `error (${code}): ${message}`;
}

// The chosen photos, decoded by the browser.
async function photos(): Promise<ImageBitmap[]> {
  const files = [...(photo.files ?? [])];
  if (!files.length) throw new Error('choose a photo first');
  return Promise.all(files.map((f) => createImageBitmap(f)));
}

async function run(task: (clf: Classifier) => Promise<string>): Promise<void> {
  const clf = state.classifier;
  if (!clf) return;
  buttons.forEach((b) => (b.disabled = true));
  status.textContent = 'working…';
  try {
    status.textContent = await task(clf);
  } catch (e) {
    show(e);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

byId('classify', HTMLButtonElement).addEventListener('click', () => run(async (clf) => {
  const lines: string[] = [];
  for (const image of await photos()) {
    const r = await clf.classify(image, { k: 3 });
    state.results.push(r);
    const best = (r.head ?? r.top)[0];
    lines.push(`${r.label} (${((best?.probability ?? 0) * 100).toFixed(1)}%, ${r.ms.toFixed(1)} ms on the ${r.backend})`);
  }
  results.replaceChildren(...lines.map((t) => Object.assign(document.createElement('li'), { textContent: t })));
  return `classified ${lines.length} photo(s)`;
}));

byId('teach', HTMLButtonElement).addEventListener('click', () => run(async (clf) => {
  let n = 0;
  for (const image of await photos()) n = await clf.teach(label.value, image);
  return `"${label.value.trim()}" has ${n} example(s); ${clf.examples.length} class(es) taught`;
}));

byId('train', HTMLButtonElement).addEventListener('click', () => run(async (clf) => {
  const r = await clf.train({ epochs: 60 }, (p) => {
    status.textContent = `training: epoch ${p.epoch}/${p.epochs}, loss ${p.loss.toFixed(3)}`;
  });
  state.trained = r;
  return `trained ${r.classes.join(' / ')} in ${r.epochs} epochs`;
}));

createClassifier().then(
  (clf) => {
    state.classifier = clf;
    buttons.forEach((b) => (b.disabled = false));
    status.textContent = `ready: ${clf.info.architecture} ${clf.info.precision} on the ${clf.backend.backend}`;
    document.body.dataset.ready = 'true';
  },
  show,
);
