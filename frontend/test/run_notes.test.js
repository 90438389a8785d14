import assert from 'node:assert/strict';
import test from 'node:test';

import { NAMED_RUNS, RunNotes } from '../src/core/run_notes.js';

test('one run left out for a reason is named in a sentence of its own', () => {
  const notes = new RunNotes();
  notes.add('mlp/seed0', 'has no groups to show', 'have no groups to show');
  assert.deepEqual(notes.lines(), ['Run mlp/seed0 has no groups to show.']);
});

test('runs left out for one reason share a line that names the first few and counts the rest', () => {
  const notes = new RunNotes();
  const runs = Array.from({ length: 29 }, (_, i) => `population/mlp-seed${i}`);
  for (const run of runs) notes.add(run, 'has no groups to show', 'have no groups to show');
  const [line, ...others] = notes.lines();
  assert.deepEqual(others, []);
  assert.equal(line, `29 runs have no groups to show: ${runs.slice(0, NAMED_RUNS).join(', ')} and ${29 - NAMED_RUNS} more.`);
});

test('a few runs are all named, and each reason keeps its own line in the order it came', () => {
  const notes = new RunNotes();
  notes.add('b', 'did not log rwc');
  notes.add('a', 'has nothing logged yet', 'have nothing logged yet');
  notes.add('c', 'did not log rwc');
  assert.deepEqual(notes.lines(), ['2 runs did not log rwc: b, c.', 'Run a has nothing logged yet.']);
  assert.deepEqual(new RunNotes().lines(), []);
});
