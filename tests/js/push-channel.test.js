// Issue #9 (4): a push channel that heals itself. The viewer owns reconnection (close and
// re-create on error, full-jitter backoff), reconnects when the server's heartbeat stops, and
// on reconnection keepers whose token is dead or inside its margin refresh at once.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  RECONNECT_MAX_SECONDS,
  announcedHeartbeatSeconds,
  createPushChannel,
  reconnectDelayMs,
} from '../../src/embedportal/web/static/js/push-channel.js';
import { reconnectAttempt } from '../../src/embedportal/web/static/js/token-keeper.js';
import { FakeClock, httpError, setup } from './fake-env.js';

/** EventSource stand-in: the test opens, fails or talks on the newest one. */
function fakeEventSources() {
  const made = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.listeners = new Map();
      this.closed = false;
      made.push(this);
    }

    addEventListener(name, fn) {
      if (!this.listeners.has(name)) this.listeners.set(name, []);
      this.listeners.get(name).push(fn);
    }

    close() {
      this.closed = true;
    }

    emit(name, data = '{}') {
      for (const fn of this.listeners.get(name) ?? []) fn({ type: name, data });
    }
  }
  return { made, FakeEventSource, newest: () => made.at(-1) };
}

function channel({ random = () => 1, onConnected } = {}) {
  const clock = new FakeClock();
  const sources = fakeEventSources();
  const pushes = [];
  const connections = [];
  const ch = createPushChannel({
    url: () => '/api/events?report=r1',
    handlers: { access: (data) => pushes.push(data) },
    onConnected: onConnected ?? ((reconnected) => connections.push(reconnected)),
    EventSource: sources.FakeEventSource,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random,
  });
  return { clock, sources, pushes, connections, ch };
}

describe('the push channel heals itself', () => {
  test('one error (a 502 while the portal restarts): closed, re-created within a second, pushes arrive again', async () => {
    const env = channel();
    env.sources.newest().emit('error'); // EventSource's readyState 2: the browser gave up
    assert.equal(env.sources.made[0].closed, true);
    await env.clock.advanceSeconds(1);
    assert.equal(env.sources.made.length, 2);
    env.sources.newest().emit('open');
    env.sources.newest().emit('access', '{"n":1}');
    assert.deepEqual(env.pushes, ['{"n":1}']);
    assert.deepEqual(env.connections, [true], 'told it is a reconnection');
    env.ch.close();
  });

  test('a connection that never opens nor fails (a hung proxy) is replaced after two heartbeats', async () => {
    const env = channel();
    assert.equal(env.sources.made.length, 1);
    await env.clock.advanceSeconds(2 * 15 + 1); // no open, no error, no message
    assert.equal(env.sources.made[0].closed, true);
    await env.clock.advanceSeconds(1);
    assert.equal(env.sources.made.length, 2);
    env.sources.newest().emit('open');
    env.sources.newest().emit('access', '{"n":2}');
    assert.deepEqual(env.pushes, ['{"n":2}']);
    env.ch.close();
  });

  test('a long outage: full-jitter backoff up to 30 s, not a fixed 3 s in lock-step', async () => {
    const env = channel();
    for (let i = 0; i < 12; i += 1) {
      env.sources.newest().emit('error');
      await env.clock.advanceSeconds(RECONNECT_MAX_SECONDS);
    }
    assert.ok(env.sources.made.length <= 13);
    const delays = [0, 1, 2, 3, 4, 5, 6].map((a) => reconnectDelayMs(a, () => 1));
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert.equal(reconnectDelayMs(3, () => 0.5), 4000, 'jitter spreads viewers over the window');
    assert.equal(reconnectDelayMs(3, () => 0), 100, 'floored: never a busy loop');
    env.ch.close();
  });

  test('a stream that goes silent for two heartbeats is replaced', async () => {
    const env = channel();
    env.sources.newest().emit('open');
    env.sources.newest().emit('hello', '{"heartbeatSeconds": 5}');
    await env.clock.advanceSeconds(9);
    env.sources.newest().emit('heartbeat');
    await env.clock.advanceSeconds(9);
    assert.equal(env.sources.made.length, 1, 'heartbeats keep it');
    await env.clock.advanceSeconds(2);
    assert.equal(env.sources.made[0].closed, true, '10 s of silence: dead');
    await env.clock.advanceSeconds(1);
    assert.equal(env.sources.made.length, 2);
    env.ch.close();
  });

  test('without a hello, the 15 s default heartbeat is watched', async () => {
    const env = channel();
    env.sources.newest().emit('open');
    await env.clock.advanceSeconds(29);
    assert.equal(env.sources.made.length, 1);
    await env.clock.advanceSeconds(2);
    assert.equal(env.sources.made.length, 2);
    env.ch.close();
  });

  test('close() leaves no timer and no stream', () => {
    const env = channel();
    env.ch.close();
    assert.equal(env.clock.pending(), 0);
    assert.equal(env.sources.made[0].closed, true);
  });

  test('announcedHeartbeatSeconds', () => {
    assert.equal(announcedHeartbeatSeconds('{"heartbeatSeconds": 15}'), 15);
    assert.equal(announcedHeartbeatSeconds('{"heartbeatSeconds": -1}'), 15);
    assert.equal(announcedHeartbeatSeconds('junk'), 15);
  });
});

describe('on reconnection, stale keepers refresh at once', () => {
  test('a keeper backing off after the restart asks at once', async () => {
    const env = setup({ lifetime: 3600 });
    env.server.script = [httpError(502), httpError(502)];
    await env.clock.advanceSeconds(3600 - 600);
    assert.equal(env.server.calls.length, 1);
    assert.equal(await env.keeper.refreshIfStale(), false, 'still failing');
    assert.equal(env.server.calls.length, 2);
    assert.equal(await env.keeper.refreshIfStale(), true);
    assert.equal(env.states.at(-1), 'live');
    env.keeper.stop();
  });

  test('a healthy token is left alone', async () => {
    const env = setup({ lifetime: 3600 });
    await env.clock.advanceSeconds(60);
    assert.equal(await env.keeper.refreshIfStale(), false);
    assert.equal(env.server.calls.length, 0);
    env.keeper.stop();
  });

  test('reconnectAttempt', () => {
    const timings = { marginSeconds: 600 };
    const base = { now: 0, inFlight: false, failures: 0, retryAfterUntil: 0, state: 'live', timings, cycleReason: null, personAsked: false };
    assert.equal(reconnectAttempt({ ...base, remainingMs: 3_000_000 }), null);
    assert.deepEqual(reconnectAttempt({ ...base, remainingMs: 500_000 }), { reason: 'margin' });
    assert.deepEqual(reconnectAttempt({ ...base, remainingMs: 0 }), { reason: 'recovery' });
    assert.equal(reconnectAttempt({ ...base, remainingMs: 0, inFlight: true }), null);
    assert.equal(reconnectAttempt({ ...base, remainingMs: 0, failures: 2, retryAfterUntil: 10 }), null, 'Retry-After obeyed');
    assert.deepEqual(reconnectAttempt({ ...base, remainingMs: 500_000, failures: 2, cycleReason: 'margin' }), { reason: 'margin' });
  });
});
