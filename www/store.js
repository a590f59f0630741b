// The project kept on the device, in IndexedDB ("edgetune", version 2):
//   classes  { id, name, created }                         the user's classes, in creation order
//   samples  { id, classId, embedding: Float32Array, backbone, imageBytes: ArrayBuffer,
//              imageType ("image/jpeg"), created }         index byClass
//              (the image is kept as bytes, not as a Blob: WebKit cannot store Blobs in an
//              ephemeral session, as in Safari's private browsing and under automation;
//              `load` hands it out as a Blob `image`, and reads older records' Blob too)
//   versions { id, created, backbone, classIds, names, dim, weight: Float32Array,
//              bias: Float32Array, metrics, options }      trained heads, newest last
//   models   { key, name, fileName, bytes: Uint8Array (.etm), info, created }
//                                                          models the user opened (not the built-in one)
//   meta     { key, value }                                "current" version id, "mode",
//                                                          "backbone" (key of the model in use)
// Embeddings and heads belong to the backbone that made them (`backbone`: "builtin" for the
// model the page ships, else a key derived from the opened model's bytes; absent in
// version-1 data, which the built-in model made). Switching
// models re-embeds every sample from its stored image and swaps the backbone in one
// transaction; heads of other backbones stay stored, hidden until their model is in use.
// Every change is one transaction, so it happens entirely or not at all: a new model version
// and the switch to it commit together, and a crash or a closed tab mid-save leaves the
// previous version current. Storage errors (quota exceeded above all) reject with a
// StoreError whose message says nothing was changed; the caller shows it.

const DB = 'edgetune';
const STORES = ['classes', 'samples', 'versions', 'models', 'meta'];
const PROJECT = ['classes', 'samples', 'versions', 'meta'];

export class StoreError extends Error {}

// A sample as stored (its image as bytes) and as the page uses it (its image as a Blob). The
// bytes are read before the transaction opens: IndexedDB commits a transaction that waits on
// anything else.
async function storedSample({ image, ...rest }) {
  return { ...rest, imageBytes: await image.arrayBuffer(), imageType: image.type || 'image/jpeg' };
}
function usedSample({ imageBytes, imageType, ...rest }) {
  return imageBytes ? { ...rest, image: new Blob([imageBytes], { type: imageType }) } : rest;
}

/** The backbone key of the model the page ships. */
export const BUILTIN = 'builtin';

function describe(err, what) {
  const name = err && err.name;
  if (name === 'QuotaExceededError') {
    return new StoreError(`Storage is full: could not ${what}. Nothing was changed; free some space (delete samples or old versions) and try again.`);
  }
  return new StoreError(`Could not ${what}: ${err && err.message ? err.message : name || err}. Nothing was changed.`);
}

function promised(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function openStore() {
  if (!('indexedDB' in globalThis)) throw new StoreError('This browser has no IndexedDB: your classes cannot be kept.');
  const req = indexedDB.open(DB, 2);
  req.onupgradeneeded = (ev) => {
    const db = req.result;
    if (ev.oldVersion < 1) {
      db.createObjectStore('classes', { keyPath: 'id', autoIncrement: true });
      const samples = db.createObjectStore('samples', { keyPath: 'id', autoIncrement: true });
      samples.createIndex('byClass', 'classId');
      db.createObjectStore('versions', { keyPath: 'id', autoIncrement: true });
      db.createObjectStore('meta', { keyPath: 'key' });
    }
    if (ev.oldVersion < 2) db.createObjectStore('models', { keyPath: 'key' });
  };
  // Another tab still on the old version blocks the upgrade; say so instead of hanging.
  req.onblocked = () => console.warn('edgetune: close other tabs of this page to finish a storage upgrade');
  const db = await promised(req).catch((e) => { throw describe(e, 'open the local database'); });
  return new Store(db);
}

class Store {
  constructor(db) {
    this.db = db;
  }

  // Runs `body(stores)` in one transaction over `names`; resolves with body's result once the
  // transaction has committed, rejects (StoreError) if it aborted.
  tx(names, mode, what, body) {
    return new Promise((resolve, reject) => {
      let t;
      try {
        t = this.db.transaction(names, mode);
      } catch (e) {
        reject(describe(e, what));
        return;
      }
      const stores = Object.fromEntries(names.map((n) => [n, t.objectStore(n)]));
      let result;
      Promise.resolve()
        .then(() => body(stores))
        .then((r) => { result = r; }, (e) => { try { t.abort(); } catch { /* already aborted */ } reject(describe(e, what)); });
      t.oncomplete = () => resolve(result);
      t.onabort = () => reject(describe(t.error, what));
      t.onerror = (ev) => { ev.preventDefault(); };
    });
  }

  async load() {
    return this.tx(STORES, 'readonly', 'read your project', async (s) => {
      const [classes, stored, versions, models, meta] = await Promise.all(STORES.map((n) => promised(s[n].getAll())));
      const samples = stored.map(usedSample);
      const m = Object.fromEntries(meta.map((x) => [x.key, x.value]));
      for (const x of [...samples, ...versions]) x.backbone ??= BUILTIN;
      return { classes, samples, versions, models, current: m.current ?? null, mode: m.mode ?? 'imagenet', backbone: m.backbone ?? BUILTIN };
    });
  }

  // Makes `key` the backbone in use: stores `model` (a newly opened one; null for the built-in
  // or an already stored model), gives every sample its embedding from `embeddings`
  // (Map sample id -> Float32Array, made by that backbone) and makes `current` the current
  // version, all in one transaction: a failure or a killed tab leaves the previous backbone
  // in use with its own embeddings.
  switchBackbone({ key, model, embeddings, current }) {
    return this.tx(STORES, 'readwrite', 'switch to the model', async (s) => {
      if (model) await promised(s.models.put(model));
      const samples = await promised(s.samples.getAll());
      for (const x of samples) {
        const e = embeddings.get(x.id);
        if (!e) throw new Error(`sample ${x.id} has no embedding for the new model`);
        await promised(s.samples.put({ ...x, embedding: e, backbone: key }));
      }
      await promised(s.meta.put({ key: 'backbone', value: key }));
      await promised(s.meta.put({ key: 'current', value: current }));
      await promised(s.meta.put({ key: 'mode', value: current === null ? 'imagenet' : 'custom' }));
    });
  }

  // Deletes a stored model and the versions trained on it.
  deleteModel(key) {
    return this.tx(['models', 'versions'], 'readwrite', 'delete the model', async (s) => {
      const versions = await promised(s.versions.getAll());
      for (const v of versions) if (v.backbone === key) await promised(s.versions.delete(v.id));
      await promised(s.models.delete(key));
    });
  }

  getModel(key) {
    return this.tx(['models'], 'readonly', 'read the model', (s) => promised(s.models.get(key)));
  }

  addClass(name) {
    return this.tx(['classes'], 'readwrite', 'add the class', async (s) => {
      const c = { name, created: Date.now() };
      c.id = await promised(s.classes.add(c));
      return c;
    });
  }

  renameClass(id, name) {
    return this.tx(['classes'], 'readwrite', 'rename the class', async (s) => {
      const c = await promised(s.classes.get(id));
      if (!c) throw new Error('the class no longer exists');
      c.name = name;
      await promised(s.classes.put(c));
      return c;
    });
  }

  // Deletes a class and its samples together.
  deleteClass(id) {
    return this.tx(['classes', 'samples'], 'readwrite', 'delete the class', async (s) => {
      const keys = await promised(s.samples.index('byClass').getAllKeys(id));
      await Promise.all(keys.map((k) => promised(s.samples.delete(k))));
      await promised(s.classes.delete(id));
    });
  }

  async addSample(classId, embedding, backbone, image) {
    const x = await storedSample({ classId, embedding, backbone, image, created: Date.now() });
    return this.tx(['samples'], 'readwrite', 'save the sample', async (s) => {
      x.id = await promised(s.samples.add(x));
      return usedSample(x);
    });
  }

  deleteSample(id) {
    return this.tx(['samples'], 'readwrite', 'delete the sample', (s) => promised(s.samples.delete(id)));
  }

  // Adds a trained version and makes it current in the same transaction.
  saveVersion(version) {
    return this.tx(['versions', 'meta'], 'readwrite', 'save the trained model', async (s) => {
      const v = { ...version, created: Date.now() };
      v.id = await promised(s.versions.add(v));
      await promised(s.meta.put({ key: 'current', value: v.id }));
      await promised(s.meta.put({ key: 'mode', value: 'custom' }));
      return v;
    });
  }

  async getMeta(key) {
    return this.tx(['meta'], 'readonly', 'read the setting', async (s) => (await promised(s.meta.get(key)))?.value ?? null);
  }

  setMeta(key, value) {
    return this.tx(['meta'], 'readwrite', 'save the setting', (s) => promised(s.meta.put({ key, value })));
  }

  deleteVersion(id, nextCurrent) {
    return this.tx(['versions', 'meta'], 'readwrite', 'delete the version', async (s) => {
      await promised(s.versions.delete(id));
      await promised(s.meta.put({ key: 'current', value: nextCurrent }));
    });
  }

  // Replaces the whole project (an import) in one transaction: all of it, or nothing. The
  // backbone in use and the stored models are kept; samples keep the backbone that made
  // their embeddings (the caller re-embeds those of another one).
  async replaceAll(project) {
    const samples = await Promise.all(project.samples.map((x) => storedSample({ classId: x.classId, embedding: x.embedding, backbone: x.backbone, image: x.image, created: x.created ?? Date.now() })));
    return this.tx(PROJECT, 'readwrite', 'import the project', async (s) => {
      const backbone = await promised(s.meta.get('backbone'));
      await Promise.all(PROJECT.map((n) => promised(s[n].clear())));
      if (backbone) await promised(s.meta.put(backbone));
      const ids = new Map();
      for (const c of project.classes) {
        ids.set(c.id, await promised(s.classes.add({ name: c.name, created: c.created ?? Date.now() })));
      }
      for (const x of samples) await promised(s.samples.add({ ...x, classId: ids.get(x.classId) }));
      let current = null;
      for (const v of project.versions) {
        const { id: oldId, ...rest } = v;
        const id = await promised(s.versions.add({ ...rest, classIds: v.classIds.map((c) => ids.get(c)) }));
        if (oldId === project.current) current = id;
      }
      await promised(s.meta.put({ key: 'current', value: current }));
      await promised(s.meta.put({ key: 'mode', value: current === null ? 'imagenet' : 'custom' }));
    });
  }
}
