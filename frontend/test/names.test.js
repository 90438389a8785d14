import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ELLIPSIS, entryName, layerLabel, shortNames } from '../src/core/names.js';

const BERT = [];
for (const layer of [0, 1, 10]) {
  for (const part of ['attention.self.query', 'attention.self.key', 'attention.self.value',
    'attention.output.dense', 'attention.output.LayerNorm', 'intermediate.dense', 'output.dense']) {
    BERT.push(`bert.encoder.layer.${layer}.${part}`);
  }
}
BERT.push('bert.embeddings.word_embeddings', 'classifier');

test('short BERT names are all different and within the limit', () => {
  const short = shortNames(BERT, 28);
  const shown = BERT.map((n) => short.get(n));
  assert.equal(new Set(shown).size, BERT.length);
  for (const text of shown) assert.ok(text.length <= 28, text);
  // The block index and the last segment survive: the parts that tell these rows apart.
  const query = /** @type {string} */ (short.get('bert.encoder.layer.0.attention.self.query'));
  assert.ok(query.includes('.0.') && query.endsWith('.query') && query.includes(ELLIPSIS), query);
  assert.equal(short.get('classifier'), 'classifier');
});

test('a short name never reads as another name of the list', () => {
  const short = shortNames(BERT, 24);
  for (const [name, text] of short) {
    if (text === name) continue;
    // The short form as a pattern: each ellipsis stands for one dotted segment or more.
    const parts = text.split(ELLIPSIS).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const pattern = new RegExp(`^${parts.join('[^.]+(?:\\.[^.]+)*')}$`);
    assert.deepEqual(BERT.filter((n) => pattern.test(n)), [name], text);
  }
});

test('names without segments to elide are cut in the middle, keeping both ends', () => {
  const name = 'a_very_long_module_name_without_any_dots';
  const text = shortNames([name], 20).get(name);
  assert.equal(text.length, 20);
  assert.ok(text.startsWith('a_very') && text.endsWith('any_dots') && text.includes(ELLIPSIS));
});

test('bare Sequential indices say what the module is; other names stay', () => {
  assert.equal(layerLabel('1', 'Linear 784→512'), '1 · Linear 784→512');
  assert.equal(layerLabel('0.3', 'Conv2d 1→6 3×3'), '0.3 · Conv2d 1→6 3×3');
  assert.equal(layerLabel('fc1', 'Linear 784→512'), 'fc1');
  assert.equal(layerLabel('1', null), '1');
});

test('an entry is its run, and the model when the run has several', () => {
  assert.equal(entryName('gan/seed0', 'generator'), 'gan/seed0 · generator');
  assert.equal(entryName('lenet', null), 'lenet');
});
