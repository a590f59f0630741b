// The project file (www/project.js) as untrusted input, in node: a project exported and
// parsed back is the same project; every malformed field is refused with a message naming
// it. (The user's head runs in the engine: crate/exec/user_head.rs and its tests.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportProject, parseProject, checkName, ProjectError } from '../../www/project.js';

const DIM = 8;
const jpeg = new Blob([Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9])], { type: 'image/jpeg' });

function project() {
  const e = (k) => Float32Array.from({ length: DIM }, (_, i) => Math.sin(i + k));
  return {
    classes: [{ id: 1, name: 'mug', created: 1 }, { id: 2, name: 'plant 🌱', created: 2 }],
    samples: [
      { id: 10, classId: 1, embedding: e(1), image: jpeg, created: 3 },
      { id: 11, classId: 2, embedding: e(2), image: jpeg, created: 4 },
    ],
    versions: [{ id: 5, created: 5, classIds: [1, 2], names: ['mug', 'plant 🌱'], dim: DIM, weight: Float32Array.from({ length: 2 * DIM }, (_, i) => i / 10), bias: Float32Array.from([0.5, -0.5]), metrics: { validationAccuracy: 1 }, options: { epochs: 3 } }],
    current: 5,
  };
}

test('export then parse gives the same project back', async () => {
  const p = project();
  const back = parseProject(await exportProject(p, DIM, '/models/x.etm'), DIM);
  assert.deepEqual(back.classes.map((c) => c.name), ['mug', 'plant 🌱']);
  assert.equal(back.samples.length, 2);
  assert.deepEqual([...back.samples[1].embedding], [...p.samples[1].embedding]);
  assert.deepEqual(new Uint8Array(await back.samples[0].image.arrayBuffer()), new Uint8Array(await jpeg.arrayBuffer()));
  assert.deepEqual([...back.versions[0].weight], [...p.versions[0].weight]);
  assert.equal(back.current, 5);
});

test('malformed project files are refused with the field named', async () => {
  const good = JSON.parse(await exportProject(project(), DIM, 'x'));
  const cases = [
    ['not json', /not JSON/],
    [JSON.stringify({ ...good, format: 'other' }), /not an edgetune project/],
    [JSON.stringify({ ...good, version: 2 }), /version 2 is not supported/],
    [JSON.stringify({ ...good, dim: 1280 }), /1280 values; this model makes 8/],
    [JSON.stringify({ ...good, classes: [good.classes[0], { ...good.classes[1], id: 1 }] }), /Class 2 has a missing or repeated id/],
    [JSON.stringify({ ...good, classes: [good.classes[0], { ...good.classes[1], name: 'x'.repeat(61) }] }), /Class 2: Class names are at most 60/],
    [JSON.stringify({ ...good, samples: [{ ...good.samples[0], classId: 99 }] }), /Sample 1 belongs to no class/],
    [JSON.stringify({ ...good, samples: [{ ...good.samples[0], embedding: Buffer.from(new Float32Array(DIM - 1).buffer).toString('base64') }] }), /Sample 1's features has 7 values, expected 8/],
    [JSON.stringify({ ...good, samples: [{ ...good.samples[0], embedding: Buffer.from(new Float32Array(DIM).fill(NaN).buffer).toString('base64') }] }), /NaN or infinite/],
    [JSON.stringify({ ...good, samples: [{ ...good.samples[0], embedding: '%%%' }] }), /not valid base64/],
    [JSON.stringify({ ...good, samples: [{ ...good.samples[0], image: 'data:text/html;base64,PGI+' }] }), /Sample 1's image is not a JPEG, PNG or WebP/],
    [JSON.stringify({ ...good, versions: [{ ...good.versions[0], classIds: [1, 3] }] }), /refers to a class that is not in the project/],
    [JSON.stringify({ ...good, versions: [{ ...good.versions[0], bias: Buffer.from(new Float32Array(3).buffer).toString('base64') }] }), /bias has 3 values, expected 2/],
    [JSON.stringify({ ...good, versions: [{ ...good.versions[0], classIds: [1] , names: ['mug'] }] }), /Model version 1 is malformed/],
    [JSON.stringify({ ...good, samples: null }), /lacks its classes, samples or versions/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseProject(text, DIM), (e) => e instanceof ProjectError && message.test(e.message), `expected ${message}`);
  }
});

test('class names: trimmed, unicode counted by characters, empty and overlong refused', () => {
  assert.equal(checkName('  mug  '), 'mug');
  assert.equal(checkName('🌱'.repeat(60)), '🌱'.repeat(60));
  assert.throws(() => checkName('   '), /needs a name/);
  assert.throws(() => checkName('🌱'.repeat(61)), /at most 60/);
});

