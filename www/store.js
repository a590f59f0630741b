// The project kept on the device, in IndexedDB ("edgetune", version 1):
//   classes  { id, name, created }                         the user's classes, in creation order
//   samples  { id, classId, embedding: Float32Array, image: Blob (JPEG), created }   index byClass
//   versions { id, created, classIds, names, dim, weight: Float32Array, bias: Float32Array,
//              metrics, options }                          trained heads, newest last
//   meta     { key, value }                                "current" version id, "mode"
// Every change is one transaction, so it happens entirely or not at all: a new model version
// and the switch to it commit together, and a crash or a closed tab mid-save leaves the
// previous version current. Storage errors (quota exceeded above all) reject with a
// StoreError whose message says nothing was changed; the caller shows it.

const DB = 'edgetune';
const STORES = ['classes', 'samples', 'versions', 'meta'];

export class StoreError extends Error {}

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
  const req = indexedDB.open(DB, 1);
  req.onupgradeneeded = () => {
    const db = req.result;
    db.createObjectStore('classes', { keyPath: 'id', autoIncrement: true });
    const samples = db.createObjectStore('samples', { keyPath: 'id', autoIncrement: true });
    samples.createIndex('byClass', 'classId');
    db.createObjectStore('versions', { keyPath: 'id', autoIncrement: true });
    db.createObjectStore('meta', { keyPath: 'key' });
  };
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
      const [classes, samples, versions, meta] = await Promise.all([
        promised(s.classes.getAll()), promised(s.samples.getAll()), promised(s.versions.getAll()), promised(s.meta.getAll()),
      ]);
      const m = Object.fromEntries(meta.map((x) => [x.key, x.value]));
      return { classes, samples, versions, current: m.current ?? null, mode: m.mode ?? 'imagenet' };
    });
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

  addSample(classId, embedding, image) {
    return this.tx(['samples'], 'readwrite', 'save the sample', async (s) => {
      const x = { classId, embedding, image, created: Date.now() };
      x.id = await promised(s.samples.add(x));
      return x;
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

  setMeta(key, value) {
    return this.tx(['meta'], 'readwrite', 'save the setting', (s) => promised(s.meta.put({ key, value })));
  }

  deleteVersion(id, nextCurrent) {
    return this.tx(['versions', 'meta'], 'readwrite', 'delete the version', async (s) => {
      await promised(s.versions.delete(id));
      await promised(s.meta.put({ key: 'current', value: nextCurrent }));
    });
  }

  // Replaces the whole project (an import) in one transaction: all of it, or nothing.
  replaceAll(project) {
    return this.tx(STORES, 'readwrite', 'import the project', async (s) => {
      await Promise.all(STORES.map((n) => promised(s[n].clear())));
      const ids = new Map();
      for (const c of project.classes) {
        ids.set(c.id, await promised(s.classes.add({ name: c.name, created: c.created ?? Date.now() })));
      }
      for (const x of project.samples) {
        await promised(s.samples.add({ classId: ids.get(x.classId), embedding: x.embedding, image: x.image, created: x.created ?? Date.now() }));
      }
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
