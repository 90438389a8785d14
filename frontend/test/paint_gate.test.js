import assert from 'node:assert/strict';
import test from 'node:test';

import { createPaintGate } from '../src/core/paint_gate.js';

test('an open gate lets panels through at once', async () => {
  const gate = createPaintGate(10000);
  let passed = false;
  await gate.wait().then(() => { passed = true; });
  assert.equal(passed, true);
});

test('a closed gate holds panels until it opens, in order', async () => {
  const gate = createPaintGate(10000);
  gate.close();
  const order = [];
  const first = gate.wait().then(() => order.push('first'));
  const second = gate.wait().then(() => order.push('second'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(order, []);
  gate.open();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['first', 'second']);
});

test('a gate left closed releases its panels after the longest wait', async () => {
  const gate = createPaintGate(30);
  gate.close();
  const started = Date.now();
  await gate.wait();
  assert.ok(Date.now() - started >= 25);
});
