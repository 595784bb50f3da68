// The viewer toolbar's pure parts (node:test): minutes, the remembered choice, the filter
// reset through the SDK's calls, and the auto-refresh timer.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  autoRefreshKey,
  createAutoRefresher,
  fillMinutes,
  parseMinutes,
  readAutoRefresh,
  openingFilters,
  resetFilters,
  writeAutoRefresh,
} from '../../src/embedportal/web/static/js/viewer-toolbar.js';

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

test('minutes are whole numbers from 1 to 59', () => {
  assert.equal(parseMinutes('1'), 1);
  assert.equal(parseMinutes(' 59 '), 59);
  assert.equal(parseMinutes(15), 15);
  for (const bad of ['0', '60', '-1', '1.5', '5e1', '', 'ten', null, undefined, {}, '007']) {
    assert.equal(parseMinutes(bad), null, String(bad));
  }
});

test('the choice is kept per person and report', () => {
  assert.notEqual(autoRefreshKey(1, 'r1'), autoRefreshKey(2, 'r1'));
  assert.notEqual(autoRefreshKey(1, 'r1'), autoRefreshKey(1, 'r2'));
  const storage = new MemoryStorage();
  const key = autoRefreshKey(1, 'r1');
  assert.equal(readAutoRefresh(storage, key), null); // off by default
  assert.equal(writeAutoRefresh(storage, key, 7), true);
  assert.equal(readAutoRefresh(storage, key), 7);
  writeAutoRefresh(storage, key, null);
  assert.equal(readAutoRefresh(storage, key), null);
});

test('a broken, blocked or tampered storage reads as off', () => {
  const throwing = { getItem() { throw new Error('blocked'); }, setItem() { throw new Error('full'); } };
  assert.equal(readAutoRefresh(throwing, 'k'), null);
  assert.equal(readAutoRefresh(null, 'k'), null);
  assert.equal(writeAutoRefresh(throwing, 'k', 5), false);
  const storage = new MemoryStorage();
  storage.setItem('k', '600');
  assert.equal(readAutoRefresh(storage, 'k'), null);
});

test('"{minutes}" is filled in the translated sentence', () => {
  assert.equal(fillMinutes('a cada {minutes} min', 5), 'a cada 5 min');
});

test('reset removes report and page filters and clears every slicer', async () => {
  const calls = [];
  const visual = (page, name, type) => ({
    name,
    type,
    setSlicerState: async (state) => calls.push(['slicer', page, name, state]),
  });
  const page = (name, visuals) => ({
    name,
    updateFilters: async (op) => calls.push(['page', name, op]),
    getVisuals: async () => visuals.map(([v, type]) => visual(name, v, type)),
  });
  const report = {
    updateFilters: async (op) => calls.push(['report', op]),
    getPages: async () => [page('p1', [['s1', 'slicer'], ['c1', 'card']]), page('p2', [['s2', 'slicer']])],
  };
  assert.equal(await resetFilters(report), 2);
  assert.deepEqual(calls, [
    ['report', 0],
    ['page', 'p1', 0],
    ['slicer', 'p1', 's1', { filters: [] }],
    ['page', 'p2', 0],
    ['slicer', 'p2', 's2', { filters: [] }],
  ]);
});

test('a report opened filtered is reset to its opening filters, not to none', async () => {
  const calls = [];
  const opening = [{ target: { table: 'Sales', column: 'Region' }, operator: 'In', values: ['North'] }];
  const report = {
    updateFilters: async (op, filters) => calls.push(['report', op, filters]),
    getPages: async () => [],
  };
  assert.equal(await resetFilters(report, 0, opening, 1), 0);
  assert.deepEqual(calls, [['report', 1, opening]]);
});

test('opening filters come from the slot, and a broken attribute is none', () => {
  assert.deepEqual(openingFilters({ dataset: { filters: '[{"operator":"In"}]' } }), [{ operator: 'In' }]);
  assert.deepEqual(openingFilters({ dataset: { filters: '{not json' } }), []);
  assert.deepEqual(openingFilters({ dataset: { filters: '{"a":1}' } }), []);
  assert.deepEqual(openingFilters({ dataset: {} }), []);
  assert.deepEqual(openingFilters(null), []);
});

test('a refusal from the report rejects the reset', async () => {
  const report = {
    updateFilters: async () => {
      throw { message: 'NotSupported' };
    },
    getPages: async () => [],
  };
  await assert.rejects(resetFilters(report), { message: 'NotSupported' });
});

function fakeTimers() {
  const timers = new Map();
  let next = 1;
  return {
    timers,
    setTimer: (fn, ms) => {
      timers.set(next, { fn, ms });
      return next++;
    },
    clearTimer: (id) => timers.delete(id),
  };
}

test('auto-refresh refreshes every N minutes, skips turns when told, and stops', async () => {
  const clock = fakeTimers();
  let refreshes = 0;
  let live = true;
  const refresher = createAutoRefresher({
    refresh: () => {
      refreshes += 1;
    },
    when: () => live,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
  });
  assert.equal(refresher.start('3'), true);
  assert.equal(refresher.minutes, 3);
  const [timer] = clock.timers.values();
  assert.equal(timer.ms, 3 * 60_000);
  timer.fn();
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(refreshes, 1);
  live = false;
  timer.fn();
  await Promise.resolve();
  assert.equal(refreshes, 1);
  refresher.stop();
  assert.equal(clock.timers.size, 0);
  assert.equal(refresher.minutes, null);
});

test('a new choice replaces the old timer; a bad one leaves none', () => {
  const clock = fakeTimers();
  const refresher = createAutoRefresher({ refresh: () => {}, setTimer: clock.setTimer, clearTimer: clock.clearTimer });
  refresher.start(5);
  refresher.start(10);
  assert.equal(clock.timers.size, 1);
  assert.equal([...clock.timers.values()][0].ms, 10 * 60_000);
  assert.equal(refresher.start('0'), false);
  assert.equal(clock.timers.size, 0);
});

test('a failing refresh does not escape the timer', async () => {
  const clock = fakeTimers();
  const refresher = createAutoRefresher({
    refresh: () => Promise.reject(new Error('gone')),
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
  });
  refresher.start(1);
  [...clock.timers.values()][0].fn();
  await new Promise((resolve) => setImmediate(resolve));
});
