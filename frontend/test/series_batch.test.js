import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BATCH_MIN, BATCH_SIZE, SeriesBatcher, splitBatch } from '../src/core/api.js';

/** A binary `series` answer as http_api.md describes it, for one run of one series. */
function seriesAnswer(run, steps, values) {
  let json = JSON.stringify({ run, model: null, metric: 'rwc', target: 'layers', names: ['a'], points: steps.length, total_steps: steps.length, downsampled: false });
  while ((4 + json.length) % 8 !== 0) json += ' ';
  const text = new TextEncoder().encode(json);
  const buffer = new ArrayBuffer(4 + text.length + 8 * steps.length + 4 * values.length);
  new DataView(buffer).setUint32(0, text.length, true);
  new Uint8Array(buffer, 4, text.length).set(text);
  new Float64Array(buffer, 4 + text.length, steps.length).set(steps);
  new Float32Array(buffer, 4 + text.length + 8 * steps.length, values.length).set(values);
  return buffer;
}

/** A `series_batch` answer: a count, then each part after its length. */
function batchAnswer(parts) {
  const total = 4 + parts.reduce((n, p) => n + 4 + p.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, parts.length, true);
  let offset = 4;
  for (const p of parts) {
    view.setUint32(offset, p.byteLength, true);
    out.set(new Uint8Array(p), offset + 4);
    offset += 4 + p.byteLength;
  }
  return out.buffer;
}

/** The server's side, for these tests: answers `series` and `series_batch` URLs from `runs`. */
function server(refused = new Set()) {
  const asked = [];
  const answer = (run) => seriesAnswer(run, [0, 1], [run.length, NaN]);
  const load = async (url) => {
    asked.push(url);
    const query = new URLSearchParams(url.split('?')[1]);
    if (url.startsWith('./series_batch?')) {
      const runs = query.getAll('run');
      if (runs.some((r) => refused.has(r))) throw new Error('404');
      return batchAnswer(runs.map(answer));
    }
    const run = query.get('run');
    if (refused.has(run)) throw new Error(`404 ${run}`);
    return answer(run);
  };
  return { asked, load };
}

test('splitBatch reads each part into a buffer of its own and refuses a short answer', () => {
  const parts = [seriesAnswer('a', [0], [1]), seriesAnswer('bb', [0, 1, 2], [1, 2, 3])];
  const split = splitBatch(batchAnswer(parts));
  assert.deepEqual(split.map((p) => new Uint8Array(p)), parts.map((p) => new Uint8Array(p)));
  assert.throws(() => splitBatch(batchAnswer(parts).slice(0, 20)), /shorter/);
});

test('a task of many entries goes out in batches, each entry getting its own series', async () => {
  const { asked, load } = server();
  const batcher = new SeriesBatcher(load);
  const runs = Array.from({ length: 2 * BATCH_SIZE + 5 }, (_, i) => `run${i}`);
  const query = { metric: 'rwc', target: 'layers', max_points: 2000, start: undefined, end: undefined };
  const payloads = await Promise.all(runs.map((run) => batcher.series({ run }, query)));
  assert.deepEqual(payloads.map((p) => p.run), runs);
  assert.deepEqual(payloads.map((p) => p.columns[1][0]), runs.map((r) => r.length));
  // Decoded as views of the answer: float64 steps, float32 values, NaN where a value is missing.
  assert.ok(payloads[3].columns[0] instanceof Float64Array && payloads[3].columns[1] instanceof Float32Array);
  assert.deepEqual(Array.from(payloads[3].columns[0]), [0, 1]);
  assert.ok(Number.isNaN(payloads[3].columns[1][1]));
  assert.equal(asked.length, 3);
  assert.ok(asked.every((u) => u.startsWith('./series_batch?') && u.includes('metric=rwc') && !u.includes('model=')));
  assert.equal(new URLSearchParams(asked[2].split('?')[1]).getAll('run').length, 5);
});

test('a few entries, or other parameters, go out one series request each', async () => {
  const { asked, load } = server();
  const batcher = new SeriesBatcher(load);
  const few = Array.from({ length: BATCH_MIN - 1 }, (_, i) => batcher.series({ run: `r${i}` }, { metric: 'rwc' }));
  const other = batcher.series({ run: 'x' }, { metric: 'grad_norm' });
  await Promise.all([...few, other]);
  assert.equal(asked.length, BATCH_MIN);
  assert.ok(asked.every((u) => u.startsWith('./series?') && u.includes('format=binary')));
});

test('named models are sent once per run; a refused batch falls back to one request each', async () => {
  const { asked, load } = server(new Set(['bad']));
  const batcher = new SeriesBatcher(load);
  const entries = Array.from({ length: BATCH_MIN }, (_, i) => (i === 2 ? { run: 'bad' } : { run: `r${i}`, model: 'gen' }));
  const results = await Promise.allSettled(entries.map((params) => batcher.series(params, { metric: 'rwc' })));
  assert.equal(results[2].status, 'rejected');
  assert.match(results[2].reason.message, /404 bad/);
  assert.ok(results.filter((r, i) => i !== 2).every((r) => r.status === 'fulfilled'));
  const batch = new URLSearchParams(asked[0].split('?')[1]);
  assert.deepEqual(batch.getAll('model'), entries.map((e) => e.model ?? ''));
  assert.equal(asked.filter((u) => u.startsWith('./series?')).length, BATCH_MIN);
});

test('long answers of many series go in several batches, by their estimated size', async () => {
  const { BATCH_VALUES } = await import('../src/core/api.js');
  const { asked, load } = server();
  const batcher = new SeriesBatcher(load);
  // Twenty runs of 200 layers at 2,000 points: 400,000 values each, two a request.
  const weight = 200 * 2000;
  const perRequest = Math.floor(BATCH_VALUES / weight);
  const runs = Array.from({ length: 20 }, (_, i) => `long${i}`);
  const payloads = await Promise.all(runs.map((run) => batcher.series({ run }, { metric: 'rwc' }, weight)));
  assert.deepEqual(payloads.map((p) => p.run), runs);
  assert.equal(asked.length, Math.ceil(20 / perRequest));
  assert.ok(asked.every((u) => new URLSearchParams(u.split('?')[1]).getAll('run').length <= perRequest));
});
