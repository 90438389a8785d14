import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createRequestGuard, routeUrl } from '../src/core/api.js';
import { Selection, activeRuns, initialState, visibleLayers } from '../src/core/selection.js';

const run = (name, layers, groups = []) => ({
  run: name, layers, groups, param_counts: layers.map(() => 1), metrics: ['rwc'],
  rwc: 'l1', granularity: 'layer', order: 'forward', last_step: 9,
});

const RUNS = [
  run('lenet/seed0', ['conv1', 'conv2', 'fc1'], [{ name: 'early', kind: 'user', members: ['conv1', 'conv2'] }]),
  run('lenet/seed1', ['conv1', 'conv2', 'fc1']),
  run('mlp', ['0', '2'], [{ name: 'early', kind: 'user', members: ['0'] }]),
];

test('active runs are the ticked ones that pass the run filter, in list order', () => {
  const state = { ...initialState(), runs: RUNS, checked: ['mlp', 'lenet/seed0'] };
  assert.deepEqual(activeRuns(state).map((r) => r.run), ['lenet/seed0', 'mlp']);
  assert.deepEqual(activeRuns({ ...state, runFilter: 'LENET' }).map((r) => r.run), ['lenet/seed0']);
  // A filter that is no regex hides nothing rather than everything.
  assert.equal(activeRuns({ ...state, runFilter: '(' }).length, 2);
});

test('visible layers combine the layer regex with a group across runs', () => {
  const state = { ...initialState(), runs: RUNS };
  assert.deepEqual([...visibleLayers(state, RUNS)], ['conv1', 'conv2', 'fc1', '0', '2']);
  assert.deepEqual([...visibleLayers({ ...state, group: 'early' }, RUNS)], ['conv1', 'conv2', '0']);
  assert.deepEqual([...visibleLayers({ ...state, group: 'early', layerFilter: '2$' }, RUNS)], ['conv2']);
});

test('the selection tells listeners what changed, and nothing when nothing did', () => {
  const selection = new Selection();
  const calls = [];
  selection.subscribe((state, changed) => calls.push([state.metric, [...changed]]));
  selection.set({ metric: 'grad_norm', logY: selection.state.logY });
  selection.set({ metric: 'grad_norm' });
  assert.deepEqual(calls, [['grad_norm', ['metric']]]);
});

test('route URLs are relative and encode hostile run names', () => {
  assert.equal(routeUrl('runs', {}), './runs');
  const url = routeUrl('series', { run: 'a&b=<c>/d e', metric: 'rwc', max_points: 10 });
  assert.ok(url.startsWith('./series?'));
  const params = new URLSearchParams(url.split('?')[1]);
  assert.equal(params.get('run'), 'a&b=<c>/d e');
  assert.equal(params.get('max_points'), '10');
});

test('only the newest request may draw', () => {
  const guard = createRequestGuard();
  const first = guard.next();
  assert.ok(guard.isCurrent(first));
  const second = guard.next();
  assert.ok(!guard.isCurrent(first));
  assert.ok(guard.isCurrent(second));
});

test('the request limiter runs at most its limit at once, in queue order, and passes failures on', async () => {
  const { createLimiter } = await import('../src/core/api.js');
  const limit = createLimiter(2);
  let running = 0;
  let most = 0;
  const started = [];
  const task = (i, fail = false) => () => new Promise((resolve, reject) => {
    started.push(i);
    running++;
    most = Math.max(most, running);
    setTimeout(() => {
      running--;
      if (fail) reject(new Error(`task ${i}`));
      else resolve(i);
    }, 5 + (i % 3) * 3);
  });
  const results = await Promise.allSettled([0, 1, 2, 3, 4, 5, 6].map((i) => limit(task(i, i === 3))));
  assert.equal(most, 2);
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
  assert.equal(/** @type {any} */ (results[3]).reason.message, 'task 3');
  assert.equal(running, 0);
});
