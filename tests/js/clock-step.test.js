// Issue #9 (8): a step of the client's wall clock is told apart from a sleep by asking the
// server's time (a Date header) before any expiry screen or reload.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { confirmedSleepMs } from '../../src/embedportal/web/static/js/token-keeper.js';
import { setup } from './fake-env.js';

const HOUR = 3600;

describe('a wall-clock step is not a sleep', () => {
  test('+3 h of the client clock alone: no refresh, no expiry screen, no reload', async () => {
    const env = setup({ withSession: true });
    await env.clock.advanceSeconds(600);
    env.clock.stepWall(3 * HOUR * 1000);
    await env.clock.advanceSeconds(1);
    env.windowTarget.dispatch('focus');
    await env.clock.advanceSeconds(30);
    assert.equal(env.server.calls.length, 0);
    assert.deepEqual(env.states, ['live']);
    assert.equal(env.report.callNames().includes('reload'), false);
    assert.ok(env.keeper.snapshot().remainingSeconds > HOUR - 700, 'the token\'s life is counted as before');
    // And the margin still comes on time.
    await env.clock.advanceSeconds(HOUR - 600 - 631 + 1);
    assert.deepEqual(env.server.reasons(), ['margin']);
    env.keeper.stop();
  });

  test('a real sleep the monotonic clock missed is still noticed (the server\'s clock moved)', async () => {
    const env = setup({ withSession: true });
    await env.clock.advanceSeconds(60);
    env.clock.sleep(2 * HOUR * 1000, { monotonicTicks: false });
    env.windowTarget.dispatch('focus');
    await env.clock.advanceSeconds(1);
    assert.deepEqual(env.server.reasons(), ['wake']);
    assert.ok(env.states.includes('expired'), 'the token died during the sleep');
    assert.equal(env.states.at(-1), 'live');
    assert.equal(env.report.callNames().at(-1), 'reload');
    env.keeper.stop();
  });

  test('the server unreachable: the jump is believed (the safe side)', async () => {
    const env = setup({ withSession: true });
    await env.clock.advanceSeconds(60);
    env.session.down = true;
    env.clock.stepWall(2 * HOUR * 1000);
    env.windowTarget.dispatch('focus');
    await env.clock.advanceSeconds(1);
    assert.equal(env.server.reasons()[0], 'wake');
    env.keeper.stop();
  });

  test('confirmedSleepMs', () => {
    const reference = { server: 1_000_000, at: 5_000 };
    assert.equal(confirmedSleepMs({ reference, serverNow: 1_060_000, now: 65_000 }), 0, 'no sleep');
    assert.equal(confirmedSleepMs({ reference, serverNow: 1_062_000, now: 64_000 }), 0, 'within the rounding of Date');
    assert.equal(confirmedSleepMs({ reference, serverNow: 1_000_000 + 3_600_000, now: 65_000 }), 3_540_000);
    assert.equal(confirmedSleepMs({ reference: null, serverNow: 1, now: 1 }), 0);
    assert.equal(confirmedSleepMs({ reference, serverNow: NaN, now: 1 }), 0);
  });
});
