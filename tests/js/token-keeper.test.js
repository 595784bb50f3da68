// Unit tests of the browser token keeper (node:test). Run: node --test tests/js/
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_POLICY,
  INTERACTION_EVENTS,
  TOKEN_EXPIRED_CODE,
  backoffDelaySeconds,
  classifyFailure,
  createAccessTokenProvider,
  createTokenKeeper,
  effectiveTimings,
  normalizePolicy,
  parseTokenResponse,
} from '../../src/embedportal/web/static/js/token-keeper.js';
import {
  FakeClock,
  FakeReport,
  FakeTokenServer,
  flush,
  httpError,
  seededRandom,
  setup,
} from './fake-env.js';

const HOUR = 3600;
const close = (actual, expected, tolerance, message) => {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${message ?? ''} expected ${expected} ± ${tolerance}, got ${actual}`);
};
const gaps = (times) => times.slice(1).map((t, i) => (t - times[i]) / 1000);

// ---------------------------------------------------------------------------------------------
describe('pure helpers', () => {
  test('normalizePolicy merges partial policies and ignores invalid values', () => {
    assert.deepEqual(normalizePolicy(undefined), { ...DEFAULT_POLICY });
    const p = normalizePolicy({ marginSeconds: 120, checkIntervalSeconds: -5, maxBackoffSeconds: 'x' });
    assert.equal(p.marginSeconds, 120);
    assert.equal(p.checkIntervalSeconds, 30);
    assert.equal(p.maxBackoffSeconds, 60);
    assert.equal(normalizePolicy({ refreshEverySeconds: 900 }).refreshEverySeconds, 900);
    assert.equal(normalizePolicy({ refreshEverySeconds: 0 }, { ...DEFAULT_POLICY, refreshEverySeconds: 900 }).refreshEverySeconds, null);
    assert.equal(normalizePolicy({ refreshEverySeconds: null }, { ...DEFAULT_POLICY, refreshEverySeconds: 900 }).refreshEverySeconds, null);
    // A field that is absent keeps the current value (push messages may be partial).
    assert.equal(normalizePolicy({ marginSeconds: 60 }, { ...DEFAULT_POLICY, refreshEverySeconds: 900 }).refreshEverySeconds, 900);
  });

  test('effectiveTimings leaves an hour-long token alone', () => {
    const t = effectiveTimings(DEFAULT_POLICY, HOUR);
    assert.equal(t.marginSeconds, 600);
    assert.equal(t.minInteractionAgeSeconds, 300);
    assert.equal(t.checkIntervalSeconds, 30);
    assert.equal(t.refreshEverySeconds, null);
    assert.equal(t.maxBackoffSeconds, 60);
  });

  test('effectiveTimings scales margin, interaction age and check interval for short lifetimes', () => {
    const t60 = effectiveTimings(DEFAULT_POLICY, 60);
    assert.equal(t60.marginSeconds, 20);
    assert.equal(t60.minInteractionAgeSeconds, 20);
    assert.equal(t60.checkIntervalSeconds, 10);
    const t20 = effectiveTimings(DEFAULT_POLICY, 20);
    close(t20.marginSeconds, 20 / 3, 1e-9);
    close(t20.checkIntervalSeconds, 20 / 6, 1e-9);
    assert.equal(effectiveTimings(DEFAULT_POLICY, 3).checkIntervalSeconds, 1, 'check interval floor is 1 s');
    assert.equal(effectiveTimings({ refreshEverySeconds: 120 }, 30).refreshEverySeconds, 120, 'timed refresh is not scaled');
    assert.equal(effectiveTimings(DEFAULT_POLICY, undefined).marginSeconds, 600, 'unknown lifetime: no scaling');
  });

  test('backoffDelaySeconds grows exponentially up to the cap', () => {
    const max = (attempt) => backoffDelaySeconds(attempt, { cap: 60, random: () => 1 });
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 20, 2000].map(max), [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
  });

  test('backoffDelaySeconds uses full jitter: anywhere between 0 and the ceiling', () => {
    const random = seededRandom(7);
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(60, 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const d = backoffDelaySeconds(attempt, { cap: 60, random });
        assert.ok(d >= 0 && d <= ceiling, `attempt ${attempt}: ${d} outside [0, ${ceiling}]`);
      }
    }
    assert.equal(backoffDelaySeconds(5, { cap: 60, random: () => 0 }), 0);
    assert.equal(backoffDelaySeconds(5, { cap: 60, random: () => 0.5 }), 16);
    assert.equal(backoffDelaySeconds(3, { cap: 60, random: () => NaN }), 0, 'bad random source is clamped');
  });

  test('backoffDelaySeconds never goes below Retry-After', () => {
    assert.equal(backoffDelaySeconds(0, { random: () => 1, retryAfterSeconds: 45 }), 45);
    assert.equal(backoffDelaySeconds(10, { cap: 60, random: () => 1, retryAfterSeconds: 5 }), 60);
    assert.equal(backoffDelaySeconds(10, { cap: 60, random: () => 0, retryAfterSeconds: 5 }), 5);
    assert.equal(backoffDelaySeconds(0, { random: () => 0, retryAfterSeconds: 300 }), 300, 'Retry-After beyond the cap is honoured');
  });

  test('classifyFailure', () => {
    assert.equal(classifyFailure(httpError(401)).kind, 'signedOut');
    assert.equal(classifyFailure(httpError(403)).kind, 'revoked');
    assert.equal(classifyFailure({ status: 0, code: 'Forbidden' }).kind, 'revoked');
    assert.equal(classifyFailure({ status: 400, code: 'Unauthorized' }).kind, 'signedOut');
    assert.equal(classifyFailure({ status: 0, code: 'SignedOut' }).kind, 'signedOut');
    assert.equal(classifyFailure(httpError(403, { code: 'CsrfTokenInvalid' })).kind, 'csrf');
    assert.equal(classifyFailure(httpError(404, { code: 'NotFound' })).kind, 'removed');
    assert.equal(classifyFailure(httpError(503, { code: 'CapacityNotActive', retryAfterSeconds: 30 })).kind, 'capacityOff');
    assert.equal(classifyFailure(httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 })).kind, 'capacityStarting');
    assert.equal(classifyFailure({ status: 503, code: 'CapacityStarting', message: 'Waking up' }).detail, 'Waking up');
    assert.equal(classifyFailure({ status: 503, code: 'CapacityStarting' }).detail, undefined);
    assert.equal(classifyFailure(httpError(503, { retryAfterSeconds: 30 })).retryAfterSeconds, 30);
    assert.equal(classifyFailure(httpError(429)).kind, 'transient');
    assert.equal(classifyFailure(new TypeError('Failed to fetch')).kind, 'transient');
    assert.equal(classifyFailure(undefined).status, 0);
  });

  test('parseTokenResponse rejects malformed or dead tokens', () => {
    assert.deepEqual(parseTokenResponse({ token: 'a', tokenId: 'i', expiresIn: 10 }), { token: 'a', tokenId: 'i', expiresIn: 10, policy: null, serverDate: null });
    for (const bad of [null, {}, { token: '', expiresIn: 10 }, { token: 'a' }, { token: 'a', expiresIn: '10' }, { token: 'a', expiresIn: NaN }]) {
      assert.throws(() => parseTokenResponse(bad), (e) => e.code === 'BadTokenResponse');
    }
    assert.throws(() => parseTokenResponse({ token: 'a', expiresIn: 0 }), (e) => e.code === 'TokenAlreadyExpired');
  });
});

// ---------------------------------------------------------------------------------------------
describe('scheduling', () => {
  test('refreshes when the remaining life reaches the margin, with setAccessToken only', async () => {
    const env = setup();
    await env.clock.advanceSeconds(HOUR - 600 - 1);
    assert.equal(env.server.calls.length, 0, 'nothing before the margin');
    await env.clock.advanceSeconds(1);
    assert.deepEqual(env.server.reasons(), ['margin']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken'], 'no reload before expiry');
    assert.equal(env.report.currentToken, 'token-1');
    assert.deepEqual(env.states, ['live', 'refreshing', 'live']);
    const [refreshed] = env.events('refreshed');
    assert.equal(refreshed.reason, 'margin');
    assert.equal(refreshed.tokenId, 'id-1');
    assert.equal(refreshed.reloaded, false);
    const snap = env.keeper.snapshot();
    assert.equal(snap.tokenId, 'id-1');
    assert.equal(snap.remainingSeconds, HOUR);
    assert.equal(snap.state, 'live');
    assert.equal(snap.inFlight, false);
    // The next one comes a full (lifetime - margin) later.
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.server.calls.length, 2);
    assert.deepEqual(gaps(env.server.times()), [HOUR - 600]);
    env.keeper.stop();
  });

  test('effective margin scales down for short test lifetimes', async () => {
    const env = setup({ lifetime: 30 });
    assert.equal(env.keeper.snapshot().effectiveMarginSeconds, 10);
    env.server.lifetime = 60; // the tokens the server hands out next live 60 s
    await env.clock.advanceSeconds(19.9);
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(0.1);
    assert.equal(env.server.calls.length, 1, 'refreshed with 10 s left, not at once');
    assert.equal(env.keeper.snapshot().effectiveMarginSeconds, 20, 'margin follows the new lifetime');
    assert.equal(env.keeper.snapshot().effectiveTimings.checkIntervalSeconds, 10);
    await env.clock.advanceSeconds(39.9);
    assert.equal(env.server.calls.length, 1);
    await env.clock.advanceSeconds(0.1);
    assert.equal(env.server.calls.length, 2, '40 s later: 20 s before the end');
    // Twenty minutes of 60 s tokens: one refresh every 40 s, none expires.
    await env.clock.advanceSeconds(1200);
    assert.equal(env.server.calls.length, 32);
    assert.equal(env.events('expired').length, 0);
    env.keeper.stop();
  });

  test('timed refresh on: refreshes an idle report every X seconds', async () => {
    const env = setup({ policy: { ...DEFAULT_POLICY, refreshEverySeconds: 300 } });
    await env.clock.advanceSeconds(299);
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(1);
    await env.clock.advanceSeconds(900);
    assert.deepEqual(env.server.reasons(), ['timed', 'timed', 'timed', 'timed']);
    assert.deepEqual(gaps(env.server.times()), [300, 300, 300]);
    env.keeper.stop();
  });

  test('timed refresh off: only the margin refreshes', async () => {
    const env = setup({ policy: { ...DEFAULT_POLICY, refreshEverySeconds: null } });
    await env.clock.advanceSeconds(2999);
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(1);
    assert.deepEqual(env.server.reasons(), ['margin']);
    env.keeper.stop();
  });

  test('applyPolicy takes effect immediately and reschedules', async () => {
    const env = setup();
    await env.clock.advanceSeconds(100);
    env.keeper.applyPolicy({ ...DEFAULT_POLICY, refreshEverySeconds: 60 });
    await flush();
    assert.deepEqual(env.server.reasons(), ['timed'], 'already overdue: refresh at once');
    await env.clock.advanceSeconds(60);
    assert.equal(env.server.calls.length, 2);
    env.keeper.applyPolicy({ ...DEFAULT_POLICY, refreshEverySeconds: 600 });
    await env.clock.advanceSeconds(599);
    assert.equal(env.server.calls.length, 2, 'the 60 s timer was replaced');
    await env.clock.advanceSeconds(1);
    assert.equal(env.server.calls.length, 3);
    env.keeper.applyPolicy({ refreshEverySeconds: null }); // partial: switch it off
    await env.clock.advanceSeconds(2999);
    assert.equal(env.server.calls.length, 3);
    await env.clock.advanceSeconds(1);
    assert.deepEqual(env.server.reasons().slice(3), ['margin']);
    // Raising the margin above the remaining life refreshes at once (the margin is still
    // capped at a third of the lifetime: 1200 s).
    await env.clock.advanceSeconds(2500);
    env.keeper.applyPolicy({ marginSeconds: 2700 });
    await flush();
    assert.equal(env.server.calls.length, 5);
    assert.equal(env.server.reasons()[4], 'margin');
    assert.equal(env.keeper.snapshot().policy.marginSeconds, 2700);
    assert.equal(env.keeper.snapshot().effectiveMarginSeconds, 1200);
    env.keeper.stop();
  });

  test('a policy sent with a new token replaces the current one', async () => {
    const env = setup({ serverPolicy: { ...DEFAULT_POLICY, refreshEverySeconds: 120 } });
    await env.keeper.refreshNow();
    assert.equal(env.keeper.snapshot().policy.refreshEverySeconds, 120);
    await env.clock.advanceSeconds(120);
    assert.deepEqual(env.server.reasons(), ['manual', 'timed']);
    env.keeper.stop();
  });

  test('interactions refresh only a token older than the minimum age', async () => {
    const env = setup();
    assert.deepEqual([...env.report.handlers.keys()].sort(), [...INTERACTION_EVENTS, 'error'].sort());
    await env.clock.advanceSeconds(100);
    for (const name of INTERACTION_EVENTS) env.report.emit(name);
    await flush();
    assert.equal(env.server.calls.length, 0, 'too young: no refresh');
    await env.clock.advanceSeconds(200);
    env.report.emit('visualClicked');
    env.report.emit('selectionChanged'); // same click, second event: shares the flight
    await flush();
    assert.deepEqual(env.server.reasons(), ['interaction']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken']);
    env.report.emit('pageChanged');
    await flush();
    assert.equal(env.server.calls.length, 1, 'the new token is young again');
    env.keeper.stop();
  });

  test('interactions are reported as telemetry at most once a minute, with the event\'s name', async () => {
    const env = setup();
    env.report.emit('dataSelected');
    env.report.emit('pageChanged');
    await env.clock.advanceSeconds(59);
    env.report.emit('filtersApplied');
    assert.deepEqual(env.events('interaction').map((e) => [e.reason, e.tokenId, e.at - env.t0]), [['dataSelected', 'id-0', 0]]);
    await env.clock.advanceSeconds(1);
    env.report.emit('visualClicked');
    env.report.emit('selectionChanged');
    assert.deepEqual(env.events('interaction').map((e) => e.reason), ['dataSelected', 'visualClicked']);
    assert.equal(env.server.calls.length, 0, 'reporting an interaction does not ask for a token');
    env.keeper.stop();
    env.report.emit('dataSelected');
    await env.clock.advanceSeconds(120);
    assert.equal(env.events('interaction').length, 2, 'nothing after stop()');
  });

  test('interaction minimum age is capped at a third of a short lifetime', async () => {
    const env = setup({ lifetime: 60 });
    await env.clock.advanceSeconds(19);
    env.report.emit('filtersApplied');
    await flush();
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(1);
    env.report.emit('filtersApplied');
    await flush();
    assert.deepEqual(env.server.reasons(), ['interaction']);
    env.keeper.stop();
  });
});

// ---------------------------------------------------------------------------------------------
describe('wake-ups and clocks', () => {
  for (const [target, name] of [['documentTarget', 'visibilitychange'], ['windowTarget', 'focus'], ['windowTarget', 'online'], ['windowTarget', 'pageshow']]) {
    test(`${name} checks at once after timers were frozen`, async () => {
      const env = setup();
      env.clock.sleep(55 * 60 * 1000); // frozen tab: 55 min pass, no timer ran
      env[target].dispatch(name);
      await flush();
      assert.deepEqual(env.server.reasons(), ['wake']);
      assert.deepEqual(env.report.callNames(), ['setAccessToken'], 'still alive: no reload');
      assert.equal(env.events('expired').length, 0);
      env.keeper.stop();
    });
  }

  test('a wake-up event with nothing due does not fetch', async () => {
    const env = setup();
    await env.clock.advanceSeconds(600);
    env.windowTarget.dispatch('focus');
    env.windowTarget.dispatch('pageshow');
    env.documentTarget.dispatch('visibilitychange');
    await flush();
    assert.equal(env.server.calls.length, 0);
    env.keeper.stop();
  });

  test('visibilitychange to hidden does nothing', async () => {
    const env = setup();
    env.clock.sleep(55 * 60 * 1000);
    env.documentTarget.visibilityState = 'hidden';
    env.documentTarget.dispatch('visibilitychange');
    await flush();
    assert.equal(env.server.calls.length, 0);
    env.documentTarget.visibilityState = 'visible';
    env.documentTarget.dispatch('visibilitychange');
    await flush();
    assert.deepEqual(env.server.reasons(), ['wake']);
    env.keeper.stop();
  });

  test('sleeping laptop: a timer firing 2 h late is a wake-up; dead token recovers with reload', async () => {
    const env = setup();
    await env.clock.advanceSeconds(600);
    env.clock.sleep(2 * HOUR * 1000); // monotonic clock counts the sleep (Windows)
    await env.clock.advance(0); // overdue timers fire now, late
    assert.deepEqual(env.server.reasons(), ['wake']);
    const [expired] = env.events('expired');
    assert.equal(expired.reason, 'wake');
    assert.equal(expired.tokenId, 'id-0');
    close(expired.overdueMs, (600 + 2 * HOUR - HOUR) * 1000, 1);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload'], 'set first, then reload');
    assert.deepEqual(env.states, ['live', 'expired', 'live']);
    const [recovered] = env.events('recovered');
    assert.equal(recovered.from, 'expired');
    close(recovered.downtimeMs, (600 + HOUR) * 1000, 1, 'down since the real expiry');
    assert.equal(env.stateInfos[1].info.code, TOKEN_EXPIRED_CODE);
    env.keeper.stop();
  });

  test('sleep shorter than the remaining life: late timer refreshes without reload', async () => {
    const env = setup();
    await env.clock.advanceSeconds(2900);
    env.clock.sleep(400 * 1000); // slept through the margin moment, woke with 300 s left
    await env.clock.advance(0);
    assert.deepEqual(env.server.reasons(), ['wake']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken']);
    assert.deepEqual(env.states, ['live', 'refreshing', 'live']);
    env.keeper.stop();
  });

  test('sleep on a platform whose monotonic clock stops (macOS/Linux) is noticed via the wall clock', async () => {
    const env = setup();
    await env.clock.advanceSeconds(600);
    env.clock.sleep(2 * HOUR * 1000, { monotonicTicks: false });
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(30); // the next periodic check runs after wake-up
    assert.deepEqual(env.server.reasons(), ['wake']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    assert.deepEqual(env.states, ['live', 'expired', 'live']);
    close(env.events('recovered')[0].downtimeMs, (600 + 2 * HOUR + 30 - HOUR) * 1000, 100);
    env.keeper.stop();
  });

  test('same, noticed at once by visibilitychange', async () => {
    const env = setup();
    env.clock.sleep(50 * 60 * 1000, { monotonicTicks: false });
    env.documentTarget.dispatch('visibilitychange');
    await flush();
    assert.deepEqual(env.server.reasons(), ['wake']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken'], '10 min were left: no reload');
    env.keeper.stop();
  });

  // Runs one scripted session and returns what the keeper did, with Date.now() replaced.
  async function sessionWithDateNow(makeDateNow) {
    const realDateNow = Date.now;
    const clock = new FakeClock();
    Date.now = makeDateNow(clock);
    try {
      const report = new FakeReport(clock);
      const server = new FakeTokenServer(clock, { lifetime: HOUR });
      const telemetry = [];
      const keeper = createTokenKeeper({
        report,
        fetchToken: server.fetchToken,
        initial: { token: 't0', expiresIn: HOUR },
        now: clock.now, // wallNow left at its default: reads Date.now()
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        random: () => 0.5,
        onTelemetry: (e) => telemetry.push(e.type),
      });
      keeper.start();
      await clock.advanceSeconds(5 * HOUR);
      report.emit('pageChanged');
      await clock.advanceSeconds(3 * HOUR);
      keeper.stop();
      return { times: server.times(), reasons: server.reasons(), telemetry, reloads: report.callNames().filter((c) => c === 'reload').length };
    } finally {
      Date.now = realDateNow;
    }
  }

  test('a client wall clock skewed by ±3 hours changes nothing', async () => {
    const skew = 3 * HOUR * 1000;
    const honest = await sessionWithDateNow((clock) => () => clock.wall);
    const ahead = await sessionWithDateNow((clock) => () => clock.wall + skew);
    const behind = await sessionWithDateNow((clock) => () => clock.wall - skew);
    const throwing = await sessionWithDateNow(() => () => { throw new Error('Date.now must not matter'); });
    assert.equal(honest.times.length, 9);
    assert.equal(honest.reloads, 0);
    assert.ok(!honest.telemetry.includes('expired'));
    for (const other of [ahead, behind, throwing]) assert.deepEqual(other, honest);
  });

  test('the wall clock stepped back 3 hours mid-session changes nothing; stepped forward it can only refresh early', async () => {
    const run = async (stepMs) => {
      const env = setup();
      await env.clock.advanceSeconds(1000);
      env.clock.stepWall(stepMs);
      await env.clock.advanceSeconds(2 * HOUR);
      env.keeper.stop();
      return env;
    };
    const reference = await run(0);
    const back = await run(-3 * HOUR * 1000);
    assert.deepEqual(back.server.times(), reference.server.times());
    const forward = await run(10 * 60 * 1000); // looks like a 10-minute sleep
    assert.equal(forward.events('expired').length, 0);
    assert.ok(forward.server.times()[0] < reference.server.times()[0], 'refreshed earlier, never later');
  });
});

// ---------------------------------------------------------------------------------------------
describe('failures and recovery', () => {
  test('retries with exponential backoff up to the cap while the token is still valid', async () => {
    const env = setup();
    env.server.fallback = httpError(500);
    await env.clock.advanceSeconds(3000); // margin refresh fails
    await env.clock.advanceSeconds(300);
    const g = gaps(env.server.times());
    assert.deepEqual(g.slice(0, 9), [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert.equal(env.states.at(-1), 'retrying');
    assert.deepEqual(env.states, ['live', 'refreshing', 'retrying']);
    assert.deepEqual(env.server.reasons().slice(0, 3), ['margin', 'margin', 'margin'], 'retries keep the original reason');
    const failed = env.events('refreshFailed');
    assert.deepEqual(failed.slice(0, 4).map((e) => e.attempt), [1, 2, 3, 4]);
    assert.equal(failed[0].status, 500);
    assert.equal(failed[0].retryInSeconds, 1);
    assert.equal(env.report.calls.length, 0);
    env.server.fallback = null;
    await env.clock.advanceSeconds(60);
    assert.equal(env.states.at(-1), 'live');
    assert.deepEqual(env.report.callNames(), ['setAccessToken'], 'recovered before expiry: no reload');
    assert.equal(env.events('refreshed')[0].attempts, failed.length + 1);
    env.keeper.stop();
  });

  test('full jitter: retry delays stay within [0.1 s, ceiling] and vary', async () => {
    const env = setup({ random: seededRandom(42) });
    env.server.fallback = httpError(502);
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(1500);
    const g = gaps(env.server.times());
    assert.ok(g.length > 20);
    g.forEach((delay, i) => {
      const ceiling = Math.min(60, 2 ** i);
      assert.ok(delay >= 0.1 - 1e-9 && delay <= ceiling + 1e-9, `retry ${i}: ${delay} s outside [0.1, ${ceiling}]`);
    });
    const capped = g.slice(8);
    assert.ok(new Set(capped.map((d) => Math.round(d))).size > 5, 'delays are jittered, not fixed');
    env.keeper.stop();
  });

  test('Retry-After is honoured even when the backoff is shorter', async () => {
    const env = setup();
    env.server.script = [httpError(429, { retryAfterSeconds: 45 }), httpError(503, { retryAfterSeconds: 20 }), httpError(500)];
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(200);
    assert.deepEqual(gaps(env.server.times()).slice(0, 3), [45, 20, 4]);
    env.keeper.stop();
  });

  test('during backoff, clicks and focus do not call the server; online does (outside Retry-After)', async () => {
    const env = setup();
    env.server.fallback = httpError(0);
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(40); // now deep in backoff
    const before = env.server.calls.length;
    env.report.emit('filtersApplied');
    env.windowTarget.dispatch('focus');
    env.documentTarget.dispatch('visibilitychange');
    await flush();
    assert.equal(env.server.calls.length, before);
    env.windowTarget.dispatch('online');
    await flush();
    assert.equal(env.server.calls.length, before + 1, 'network is back: retry now');
    // Retry-After window: online does not override the server's request.
    env.server.fallback = httpError(503, { retryAfterSeconds: 120 });
    env.windowTarget.dispatch('online');
    await flush();
    const n = env.server.calls.length;
    env.windowTarget.dispatch('online');
    await env.clock.advanceSeconds(100);
    assert.equal(env.server.calls.length, n);
    env.keeper.stop();
  });

  test('keeps retrying after the token has expired, at the cap, and recovers with reload', async () => {
    const env = setup();
    env.server.fallback = httpError(0);
    await env.clock.advanceSeconds(HOUR + 1800);
    assert.deepEqual(env.states, ['live', 'refreshing', 'retrying', 'expired']);
    const [expired] = env.events('expired');
    assert.equal(expired.reason, 'clock');
    close(expired.at - env.t0, HOUR * 1000, 0, 'expired exactly at the end of life');
    const after = env.server.times().filter((t) => t > env.t0 + HOUR * 1000);
    assert.ok(after.length >= 29, `retries continue after expiry (${after.length})`);
    assert.ok(gaps(after).every((g) => g === 60), 'at the cap');
    assert.equal(env.server.reasons().at(-1), 'recovery');
    env.server.fallback = null;
    await env.clock.advanceSeconds(60);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    assert.deepEqual(env.states, ['live', 'refreshing', 'retrying', 'expired', 'live']);
    assert.deepEqual(env.states.filter((s) => s === 'live' || s === 'expired'), ['live', 'expired', 'live']);
    const [recovered] = env.events('recovered');
    assert.equal(recovered.reason, 'recovery');
    close(recovered.downtimeMs, (1800 + 60) * 1000, 60_000);
    assert.equal(env.events('refreshed')[0].reloaded, true);
    // Back to normal afterwards.
    await env.clock.advanceSeconds(HOUR);
    assert.equal(env.events('expired').length, 1);
    env.keeper.stop();
  });

  test('single-flight: five simultaneous triggers make one fetch', async () => {
    const held = setup();
    held.server.script = ['hold'];
    await held.clock.advanceSeconds(500);
    const p1 = held.keeper.refreshNow('manual');
    const p2 = held.keeper.refreshNow('manual');
    held.report.emit('filtersApplied');
    held.windowTarget.dispatch('focus');
    held.report.emit('error', { message: 'TokenExpired' });
    await flush();
    assert.equal(held.server.calls.length, 1);
    assert.equal(p1, p2);
    assert.equal(held.keeper.snapshot().inFlight, true);
    held.server.release();
    assert.equal(await p1, true);
    assert.equal(held.server.calls.length, 1);
    assert.equal(held.keeper.snapshot().inFlight, false);
    held.keeper.stop();
  });

  test('403 revokes: stops for good, no timers, no listeners', async () => {
    for (const error of [httpError(403), { status: 0, code: 'Forbidden' }]) {
      const env = setup();
      env.server.fallback = error;
      await env.clock.advanceSeconds(3000);
      assert.deepEqual(env.states, ['live', 'refreshing', 'revoked']);
      assert.equal(env.clock.pending(), 0);
      assert.equal(env.report.listenerCount(), 0);
      assert.equal(env.windowTarget.listenerCount() + env.documentTarget.listenerCount(), 0);
      await env.clock.advanceSeconds(2 * HOUR);
      env.report.emit('error', { message: 'TokenExpired' });
      assert.equal(await env.keeper.refreshNow(), false);
      assert.equal(env.server.calls.length, 1);
      env.keeper.stop();
      assert.equal(env.keeper.snapshot().state, 'revoked', 'stop() after revoke keeps the reason');
    }
  });

  test('capacity off: capacityOff state, Retry-After respected, then set + reload when it comes back', async () => {
    const env = setup();
    const off = httpError(503, { code: 'CapacityNotActive', retryAfterSeconds: 30 });
    env.server.script = [off, off, off];
    await env.clock.advanceSeconds(3000);
    assert.equal(env.states.at(-1), 'capacityOff');
    assert.equal(env.stateInfos.at(-1).info.code, 'CapacityNotActive');
    await env.clock.advanceSeconds(200);
    const g = gaps(env.server.times());
    assert.ok(g.slice(0, 3).every((d) => d >= 30), `respects Retry-After: ${g}`);
    assert.equal(env.server.calls.length, 4);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload'], 'capacity back: reload even though the token was alive');
    assert.deepEqual(env.states, ['live', 'refreshing', 'capacityOff', 'live']);
    const [recovered] = env.events('recovered');
    assert.equal(recovered.from, 'capacityOff');
    close(recovered.downtimeMs, 90_000, 1);
    env.keeper.stop();
  });

  test('capacity off that outlasts the token keeps the capacity screen', async () => {
    const env = setup({ lifetime: 60 });
    env.server.fallback = httpError(503, { code: 'CapacityNotActive' });
    await env.clock.advanceSeconds(300);
    assert.equal(env.states.at(-1), 'capacityOff');
    assert.equal(env.events('expired').length, 1, 'the expiry is still reported');
    env.server.fallback = null;
    await env.clock.advanceSeconds(60);
    assert.equal(env.states.at(-1), 'live');
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    env.keeper.stop();
  });

  test('capacity starting: its state with the server\'s words, retries every few seconds, then set + reload', async () => {
    const env = setup({ random: () => 1 });
    const starting = httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 });
    starting.message = 'The capacity is starting; give it a minute.';
    env.server.script = Array(12).fill(starting);
    await env.clock.advanceSeconds(3000);
    assert.equal(env.states.at(-1), 'capacityStarting');
    assert.equal(env.stateInfos.at(-1).info.code, 'CapacityStarting');
    assert.equal(env.stateInfos.at(-1).info.detail, 'The capacity is starting; give it a minute.');
    await env.clock.advanceSeconds(120);
    const g = gaps(env.server.times());
    assert.equal(env.server.calls.length, 13);
    assert.ok(g.every((d) => d >= 5 && d <= 5.2), `every 5 s (Retry-After), never the 60 s cap: ${g}`);
    assert.deepEqual(env.server.reasons().slice(1), Array(12).fill('recovery'), 'retries of a down report are recoveries');
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload'], 'running again: reload, the token was alive');
    assert.deepEqual(env.states, ['live', 'refreshing', 'capacityStarting', 'live']);
    const [recovered] = env.events('recovered');
    assert.equal(recovered.from, 'capacityStarting');
    close(recovered.downtimeMs, 60_000, 1);
    env.keeper.stop();
  });

  test('capacity starting without Retry-After: the backoff stops at 5 s', async () => {
    const env = setup({ random: () => 1 });
    env.server.fallback = httpError(503, { code: 'CapacityStarting' });
    await env.clock.advanceSeconds(3000 + 60);
    const g = gaps(env.server.times());
    assert.deepEqual(g.slice(0, 4), [1, 2, 4, 5]);
    assert.ok(g.slice(3).every((d) => d === 5), `${g}`);
    assert.equal(env.states.at(-1), 'capacityStarting');
    env.keeper.stop();
  });

  test('starting, then off (nobody may start it any more), then running: each screen, one reload', async () => {
    const env = setup({ lifetime: 60 });
    env.server.script = [
      httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 }),
      httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 }),
      httpError(503, { code: 'CapacityNotActive', retryAfterSeconds: 5 }),
      httpError(503, { code: 'CapacityNotActive', retryAfterSeconds: 5 }),
      httpError(502),
    ];
    // Calls at 40, 45, 50, 55 s (Retry-After), the 502 at 60 s, backoff 16 s: success at 76 s.
    await env.clock.advanceSeconds(90);
    assert.equal(env.server.calls.length, 6);
    assert.deepEqual(env.states, ['live', 'refreshing', 'capacityStarting', 'capacityOff', 'live']);
    assert.equal(env.events('expired').length, 1, 'the token died behind the capacity screens; still reported');
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    assert.equal(env.events('recovered')[0].from, 'capacityOff');
    env.keeper.stop();
  });

  test('off screen: a person\'s refreshNow(\'interaction\') asks as an interaction, then the starting screen', async () => {
    const env = setup();
    env.server.script = [
      httpError(503, { code: 'CapacityNotActive' }), // no Retry-After: a click may ask at once
      httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 }),
      httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 }),
    ];
    await env.clock.advanceSeconds(3000 + 0.5); // the margin refresh failed; its retry is due at 3001 s
    assert.equal(env.states.at(-1), 'capacityOff');
    assert.equal(env.server.calls.length, 1);
    assert.equal(await env.keeper.refreshNow('interaction'), false);
    assert.deepEqual(env.server.reasons(), ['margin', 'interaction']);
    assert.equal(env.states.at(-1), 'capacityStarting');
    await env.clock.advanceSeconds(11);
    assert.deepEqual(env.server.reasons(), ['margin', 'interaction', 'recovery', 'recovery']);
    assert.deepEqual(env.states, ['live', 'refreshing', 'capacityOff', 'capacityStarting', 'live']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    env.keeper.stop();
  });

  test('off screen: a person who asks during Retry-After is asked for as soon as it ends', async () => {
    const env = setup();
    const off = httpError(503, { code: 'CapacityNotActive', retryAfterSeconds: 5 });
    env.server.script = [off, off, off];
    await env.clock.advanceSeconds(3000 + 7); // failures at 3000 and 3005 s; Retry-After until 3010 s
    assert.equal(env.server.calls.length, 2);
    assert.equal(await env.keeper.refreshNow('interaction'), false, 'Retry-After still holds it');
    assert.equal(await env.keeper.refreshNow('interaction'), false);
    await env.clock.advanceSeconds(2.9);
    assert.equal(env.server.calls.length, 2);
    await env.clock.advanceSeconds(0.2);
    assert.deepEqual(env.server.reasons(), ['margin', 'recovery', 'interaction']);
    close(env.server.times()[2] - env.server.times()[1], 5_000, 60);
    await env.clock.advanceSeconds(6);
    assert.deepEqual(env.server.reasons().slice(3), ['recovery'], 'asked once; then the retries go on');
    assert.equal(env.states.at(-1), 'live');
    env.keeper.stop();
  });

  test('a token that dies while the capacity starts keeps the starting screen', async () => {
    const env = setup({ lifetime: 60 });
    env.server.fallback = httpError(503, { code: 'CapacityStarting', retryAfterSeconds: 5 });
    await env.clock.advanceSeconds(300);
    assert.equal(env.states.at(-1), 'capacityStarting');
    assert.ok(!env.states.includes('expired'), `${env.states}`);
    env.server.fallback = null;
    await env.clock.advanceSeconds(6);
    assert.equal(env.states.at(-1), 'live');
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    env.keeper.stop();
  });

  test('error event TokenExpired: refresh at once, then reload', async () => {
    const env = setup();
    await env.clock.advanceSeconds(1000);
    env.report.emit('error', { message: 'LoadReportFailed' });
    await flush();
    assert.equal(env.server.calls.length, 0, 'other errors are not ours');
    env.report.emit('error', { message: 'TokenExpired', detailedMessage: 'Access token has expired', errorCode: '403' });
    await flush();
    assert.deepEqual(env.server.reasons(), ['expired-error']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    assert.deepEqual(env.states, ['live', 'expired', 'live']);
    assert.equal(env.events('expired')[0].reason, 'expired-error');
    assert.equal(env.events('recovered')[0].reason, 'expired-error');
    // A late error from the old token right after the swap is ignored...
    await env.clock.advanceSeconds(2);
    env.report.emit('error', { message: 'TokenExpired' });
    await flush();
    assert.equal(env.server.calls.length, 1);
    // ...but not later on.
    await env.clock.advanceSeconds(60);
    env.report.emit('error', { message: 'TokenExpired' });
    await flush();
    assert.equal(env.server.calls.length, 2);
    env.keeper.stop();
  });

  test('setAccessToken rejection counts as a failure and is retried', async () => {
    const env = setup();
    let rejections = 2;
    env.report.setAccessTokenBehaviour = (token) => {
      if (rejections-- > 0) return Promise.reject({ message: 'iframe busy' });
      env.report.currentToken = token;
      return Promise.resolve();
    };
    await env.clock.advanceSeconds(3000);
    assert.equal(env.events('refreshFailed').length, 1);
    assert.equal(env.keeper.snapshot().tokenId, 'id-0', 'not adopted');
    await env.clock.advanceSeconds(10);
    assert.equal(env.server.calls.length, 3);
    assert.equal(env.report.currentToken, 'token-3');
    assert.equal(env.keeper.snapshot().tokenId, 'id-3');
    assert.equal(env.states.at(-1), 'live');
    env.keeper.stop();
  });

  test('a fetch or setAccessToken that never settles times out and is retried', async () => {
    const env = setup({ stepTimeoutMs: 10_000 });
    env.server.script = ['hold'];
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(10);
    const [failed] = env.events('refreshFailed');
    assert.equal(failed.code, 'FetchTimeout');
    await env.clock.advanceSeconds(1);
    assert.equal(env.server.calls.length, 2);
    assert.equal(env.states.at(-1), 'live');
    assert.equal(env.server.calls[0].signal.aborted, true, 'the timed-out request is cancelled');
    env.report.setAccessTokenBehaviour = () => new Promise(() => {});
    const attempt = env.keeper.refreshNow('manual');
    await env.clock.advanceSeconds(10);
    assert.equal(await attempt, false);
    assert.equal(env.events('refreshFailed').at(-1).code, 'SetTokenTimeout');
    assert.equal(env.states.at(-1), 'retrying');
    env.keeper.stop();
  });

  test('a malformed answer is a failure, not a crash', async () => {
    const env = setup();
    env.server.script = [() => ({ token: 42 }), () => ({ token: 'x', expiresIn: -5 })];
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(5);
    assert.deepEqual(env.events('refreshFailed').map((e) => e.code), ['BadTokenResponse', 'TokenAlreadyExpired']);
    assert.equal(env.report.currentToken, 'token-1');
    env.keeper.stop();
  });

  test('an initial token that is already dead is replaced at start, with reload', async () => {
    const env = setup({ initial: { token: 'old', expiresIn: 0 } });
    await flush();
    assert.deepEqual(env.server.reasons(), ['recovery']);
    assert.deepEqual(env.report.callNames(), ['setAccessToken', 'reload']);
    assert.deepEqual(env.states, ['expired', 'live']);
    env.keeper.stop();
  });

  test('throwing callbacks do not stop the keeper', async (t) => {
    t.mock.method(console, 'error', () => {});
    const env = setup({ onState: () => { throw new Error('viewer bug'); }, onTelemetry: () => { throw new Error('viewer bug'); } });
    await env.clock.advanceSeconds(3000);
    await env.clock.advanceSeconds(3000);
    assert.equal(env.server.calls.length, 2);
    assert.equal(env.report.currentToken, 'token-2');
    env.keeper.stop();
  });
});

// ---------------------------------------------------------------------------------------------
describe('lifecycle', () => {
  test('stop() leaves no timers or listeners and ignores an answer still on its way', async () => {
    const env = setup();
    assert.ok(env.clock.pending() > 0);
    assert.equal(env.report.listenerCount(), 6);
    assert.equal(env.windowTarget.listenerCount(), 3);
    assert.equal(env.documentTarget.listenerCount(), 1);
    env.server.script = ['hold'];
    const pending = env.keeper.refreshNow('manual');
    await flush();
    assert.ok(env.clock.pending() >= 2, 'check timer and fetch timeout');
    env.keeper.stop();
    assert.equal(env.clock.pending(), 0);
    assert.equal(env.report.listenerCount(), 0);
    assert.equal(env.windowTarget.listenerCount() + env.documentTarget.listenerCount(), 0);
    assert.equal(env.server.calls[0].signal.aborted, true, 'the fetch is aborted');
    env.server.release();
    assert.equal(await pending, false);
    assert.equal(env.report.calls.length, 0, 'late token not installed');
    assert.deepEqual(env.states, ['live', 'refreshing', 'stopped']);
    await env.clock.advanceSeconds(2 * HOUR);
    assert.equal(env.server.calls.length, 1);
    env.keeper.start();
    assert.equal(env.clock.pending(), 0, 'a stopped keeper cannot be restarted');
  });

  test('works without document and window (node)', async () => {
    const clock = new FakeClock();
    const report = new FakeReport(clock);
    const server = new FakeTokenServer(clock);
    const keeper = createTokenKeeper({
      report,
      fetchToken: server.fetchToken,
      initial: { token: 't', expiresIn: HOUR },
      now: clock.now,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
    }).start();
    await clock.advanceSeconds(3000);
    assert.equal(server.calls.length, 1);
    keeper.stop();
    assert.equal(clock.pending(), 0);
  });

  test('refreshNow before start resolves false; bad options throw at once', async () => {
    const env = setup({ start: false });
    assert.equal(await env.keeper.refreshNow(), false);
    assert.equal(env.keeper.snapshot().state, 'idle');
    assert.throws(() => createTokenKeeper({ fetchToken: async () => ({}) }), TypeError);
    assert.throws(() => createTokenKeeper({ report: env.report }), TypeError);
  });

  test('snapshot reports age, remaining life and in-flight', async () => {
    const env = setup();
    await env.clock.advanceSeconds(1234);
    const snap = env.keeper.snapshot();
    assert.equal(snap.ageSeconds, 1234);
    assert.equal(snap.remainingSeconds, HOUR - 1234);
    assert.equal(snap.tokenId, 'id-0');
    assert.equal(snap.effectiveMarginSeconds, 600);
    assert.equal(snap.inFlight, false);
    assert.equal(snap.state, 'live');
    env.keeper.stop();
  });
});

// ---------------------------------------------------------------------------------------------
describe('createAccessTokenProvider', () => {
  test('resolves to the token string', async () => {
    const provide = createAccessTokenProvider(async () => 'aad-token');
    assert.equal(await provide({ report: {} }), 'aad-token');
    assert.equal(await createAccessTokenProvider(() => 'sync-token')(), 'sync-token');
  });

  test('never throws or rejects: null on any failure', async () => {
    const errors = [];
    const cases = [
      () => { throw new Error('sync throw'); },
      async () => { throw new Error('rejection'); },
      () => Promise.reject('not even an Error'),
      async () => 42,
      async () => ({ token: 'object' }),
      async () => undefined,
      async () => '',
      () => null,
    ];
    for (const fetchAccessToken of cases) {
      const provide = createAccessTokenProvider(fetchAccessToken, { onError: (e) => errors.push(e) });
      const result = provide();
      assert.ok(result instanceof Promise);
      assert.equal(await result, null);
    }
    assert.equal(errors.length, 3);
    assert.equal(await createAccessTokenProvider(undefined)(), null, 'not a function');
    assert.equal(await createAccessTokenProvider('nope')(), null);
  });

  test('a hanging fetch resolves to null after the timeout', async () => {
    const clock = new FakeClock();
    const provide = createAccessTokenProvider(() => new Promise(() => {}), {
      timeoutMs: 5000,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
    });
    let result = 'pending';
    provide().then((v) => { result = v; });
    await clock.advance(4999);
    assert.equal(result, 'pending');
    await clock.advance(1);
    assert.equal(result, null);
    assert.equal(clock.pending(), 0);
  });
});

// ---------------------------------------------------------------------------------------------
describe('simulated week', () => {
  // Seven days of a report left open: the laptop is throttled, dozes, the user clicks around in
  // office hours. The token endpoint always works. Returns what happened.
  async function simulateWeek({ seed, interactions, flaky = false }) {
    const random = seededRandom(seed);
    const lifetime = HOUR;
    const policy = { ...DEFAULT_POLICY, minInteractionAgeSeconds: 1200 };
    const env = setup({ lifetime, policy, random: seededRandom(seed + 1) });
    env.server.latencyMs = () => 50 + random() * 3000;
    if (flaky) {
      // 30% of calls fail: network errors and 503s asking for 10 s of patience.
      env.server.fallback = () => {
        if (random() >= 0.3) return env.server.mint();
        throw random() < 0.5 ? httpError(0) : httpError(503, { retryAfterSeconds: 10 });
      };
    }
    const week = 7 * 24 * HOUR;
    let interactionEvents = 0;
    let sleeps = 0;
    while (env.elapsed() < week) {
      const roll = random();
      if (roll < 0.1) {
        // A doze or a frozen background tab, shorter than the margin, on an OS whose
        // monotonic clock counts sleep (Windows) or not (macOS, Linux).
        env.clock.sleep(random() * 540_000, { monotonicTicks: random() < 0.5 });
        sleeps += 1;
        if (random() < 0.5) env.documentTarget.dispatch('visibilitychange');
        await env.clock.advance(0);
      } else if (roll < 0.2) {
        // Throttled tab: timers run up to a minute late.
        env.clock.sleep(random() * 60_000);
        await env.clock.advance(0);
      } else if (interactions && roll < 0.4) {
        const hour = (env.elapsed() / HOUR) % 24;
        if (hour >= 9 && hour < 17) {
          env.report.emit(INTERACTION_EVENTS[Math.floor(random() * INTERACTION_EVENTS.length)]);
          interactionEvents += 1;
        }
      }
      await env.clock.advance(random() * 600_000);
    }
    env.keeper.stop();
    return { env, week, interactionEvents, sleeps };
  }

  for (const interactions of [false, true]) {
    test(`7 days ${interactions ? 'with' : 'without'} interactions: never expires, about one fetch per (lifetime - margin)`, async (t) => {
      const { env, week, interactionEvents, sleeps } = await simulateWeek({ seed: interactions ? 11 : 5, interactions });
      assert.ok(sleeps > 100, 'the simulation did sleep');
      assert.equal(env.events('expired').length, 0, 'the token never expired');
      assert.ok(!env.states.includes('expired'));
      assert.equal(env.report.callNames().filter((c) => c === 'reload').length, 0, 'never reloaded');
      assert.equal(env.events('refreshFailed').length, 0);
      assert.ok(env.server.reasons().includes('wake'), 'some refreshes came from wake-ups');
      const perPeriod = week / (HOUR - 600); // ≈ 201.6
      const fetches = env.server.calls.length;
      const byInteraction = env.server.reasons().filter((r) => r === 'interaction').length;
      t.diagnostic(`${fetches} fetches (${byInteraction} by interaction, ${interactionEvents} interaction events, ${sleeps} sleeps); ${perPeriod.toFixed(1)} = one per (lifetime - margin)`);
      if (!interactions) {
        assert.equal(byInteraction, 0);
        assert.ok(fetches >= perPeriod * 0.97 && fetches <= perPeriod * 1.03, `${fetches} fetches vs ${perPeriod.toFixed(1)} expected`);
      } else {
        assert.ok(interactionEvents > 100 && byInteraction > 0);
        // Interactions may only pull refreshes forward, never more often than the minimum age.
        assert.ok(fetches >= perPeriod * 0.97, `${fetches} fetches`);
        assert.ok(fetches <= perPeriod + byInteraction, `${fetches} fetches, ${byInteraction} by interaction`);
        assert.ok(fetches <= week / 1200, 'bounded by the minimum interaction age');
      }
      // Every refresh happened while the token had some life left and was at least
      // (lifetime - margin) old, unless an interaction pulled it forward.
      const refreshed = env.events('refreshed');
      for (let i = 1; i < refreshed.length; i++) {
        const age = (refreshed[i].wallAt - refreshed[i - 1].wallAt) / 1000; // real time
        assert.ok(age < HOUR, `token ${i} refreshed at age ${age}`);
        if (refreshed[i].reason !== 'interaction') assert.ok(age >= HOUR - 600 - 0.01, `early refresh at age ${age} (${refreshed[i].reason})`);
        else assert.ok(age >= 1200, `interaction refresh at age ${age}`);
      }
    });
  }

  test('7 days against a flaky server (30% of calls fail): still never expires, never reloads', async (t) => {
    const { env } = await simulateWeek({ seed: 3, interactions: true, flaky: true });
    const failures = env.events('refreshFailed').length;
    t.diagnostic(`${env.server.calls.length} calls, ${failures} failed`);
    assert.ok(failures > 50);
    assert.equal(env.events('expired').length, 0);
    assert.ok(!env.states.includes('expired'));
    assert.equal(env.report.callNames().filter((c) => c === 'reload').length, 0);
    assert.ok(env.states.includes('retrying'));
  });
});
