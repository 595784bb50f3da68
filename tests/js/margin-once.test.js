// Issue #9 (7): the server already scales its policy to the token's whole life, so the keeper
// applies that margin once instead of scaling it again by the life left at receipt; and the
// backoff between retries is bounded by the life the token has left.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_POLICY,
  effectiveTimings,
  retryPlan,
} from '../../src/embedportal/web/static/js/token-keeper.js';
import { httpError, setup } from './fake-env.js';

const HOUR = 3600;

describe('the server\'s margin is applied once', () => {
  test('a shared token with 690 s left keeps the server\'s 600 s margin', async () => {
    // What the token API sends for an hour-long token handed out to a second viewer.
    const env = setup({ lifetime: 690, policy: { ...DEFAULT_POLICY } });
    assert.equal(env.keeper.snapshot().effectiveMarginSeconds, 600);
    await env.clock.advanceSeconds(89);
    assert.equal(env.server.calls.length, 0);
    await env.clock.advanceSeconds(1);
    assert.deepEqual(env.server.reasons(), ['margin'], 'refreshed 600 s before the end');
    env.keeper.stop();
  });

  test('a token that arrives with less than the margin left still runs a while (no refresh loop)', async () => {
    const timings = effectiveTimings(DEFAULT_POLICY, 500, { scaledByServer: true });
    assert.equal(timings.marginSeconds, 440, 'at least a minute before the next refresh');
    const short = effectiveTimings({ ...DEFAULT_POLICY, marginSeconds: 20 / 3 }, 20, { scaledByServer: true });
    assert.equal(short.marginSeconds, 20 / 3, 'a 20 s test token keeps its server margin');
    assert.ok(effectiveTimings(DEFAULT_POLICY, 12, { scaledByServer: true }).marginSeconds <= 8);
  });

  test('without a policy from the server the keeper still scales (unchanged)', () => {
    assert.equal(effectiveTimings(DEFAULT_POLICY, 690).marginSeconds, 230);
    assert.equal(effectiveTimings(DEFAULT_POLICY, 60).marginSeconds, 20);
  });
});

describe('backoff is bounded by the life left', () => {
  const hour = effectiveTimings(DEFAULT_POLICY, HOUR);

  test('a retry never waits past 5 s before the token dies, while that is ahead', () => {
    const plan = retryPlan({ now: 0, failures: 10, timings: hour, random: () => 1, remainingMs: 30_000 });
    assert.equal(plan.delayMs, 25_000);
    const last = retryPlan({ now: 0, failures: 10, timings: hour, random: () => 1, remainingMs: 4_000 });
    assert.equal(last.delayMs, 60_000, 'the last seconds: no burst of calls');
    const dead = retryPlan({ now: 0, failures: 10, timings: hour, random: () => 1, remainingMs: 0 });
    assert.equal(dead.delayMs, 60_000, 'after expiry: the cap');
  });

  test('a token with 50 s left and a failing server: a retry before it dies', async () => {
    const env = setup({ lifetime: 150 }); // margin 50 s: the first refresh at 100 s
    env.server.fallback = httpError(500);
    await env.clock.advanceSeconds(149.9);
    const before = env.server.times().filter((t) => t - env.t0 > 140_000);
    assert.ok(before.length >= 1, `retries in the last 10 s before expiry: ${before.length}`);
    env.keeper.stop();
  });
});
