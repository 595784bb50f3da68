// Issue #9 (1): a server's Retry-After is capped (a ceiling, and the life the token has left),
// and its HTTP-date form is read against the response's own Date header, not the client clock.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import * as keeperModule from '../../src/embedportal/web/static/js/token-keeper.js';
import { flush, httpError, setup } from './fake-env.js';

const { retryAfterSeconds } = keeperModule;
const HOUR = 3600;

describe('Retry-After: the keeper never waits past the ceiling or the token\'s life', () => {
  test('a Retry-After of a day on a live token: the retry comes within the 300 s ceiling', async () => {
    const env = setup();
    env.server.script = [httpError(503, { retryAfterSeconds: 86_400 })];
    await env.clock.advanceSeconds(HOUR - 600 + 1); // the margin refresh failed a second ago
    assert.equal(env.server.calls.length, 1);
    assert.ok(env.keeper.snapshot().nextRetryInSeconds <= 300, `next retry in ${env.keeper.snapshot().nextRetryInSeconds} s`);
    await env.clock.advanceSeconds(300);
    assert.equal(env.server.calls.length, 2, 'retried once the capped wait ended');
    assert.equal(env.keeper.snapshot().state, 'live');
    env.keeper.stop();
  });

  test('a Retry-After longer than the life left: the retry comes before the token dies', async () => {
    const env = setup({ lifetime: 200 }); // margin 66.7 s: the first refresh is at 133.3 s
    env.server.fallback = httpError(503, { retryAfterSeconds: 250 });
    await env.clock.advanceSeconds(134);
    assert.equal(env.server.calls.length, 1);
    const wait = env.keeper.snapshot().nextRetryInSeconds;
    assert.ok(wait <= 66 - 10, `retry in ${wait} s, life left ${env.keeper.snapshot().remainingSeconds} s`);
    env.server.fallback = null;
    await env.clock.advanceSeconds(wait + 1);
    assert.deepEqual(env.report.callNames(), ['setAccessToken'], 'a new token before expiry: no reload');
    assert.equal(env.events('expired').length, 0);
    env.keeper.stop();
  });

  test('refreshNow and online still respect the (capped) wait', async () => {
    const env = setup();
    env.server.script = [httpError(503, { retryAfterSeconds: 86_400 })];
    await env.clock.advanceSeconds(HOUR - 600 + 1); // the margin refresh failed a second ago
    assert.equal(await env.keeper.refreshNow('manual'), false, 'inside the capped wait');
    await env.clock.advanceSeconds(150);
    env.windowTarget.dispatch('online'); // still inside it: refused too
    await flush();
    assert.equal(env.server.calls.length, 1);
    env.keeper.stop();
  });
});

describe('retryAfterSeconds (pure)', () => {
  const serverDate = 'Tue, 06 Jan 2026 12:00:00 GMT';
  const serverNow = Date.parse(serverDate);

  test('an HTTP-date is read against the response\'s Date header, whatever the client clock says', () => {
    const clientThreeHoursBehind = serverNow - 3 * HOUR * 1000;
    const seconds = retryAfterSeconds({
      header: 'Tue, 06 Jan 2026 12:00:10 GMT',
      dateHeader: serverDate,
      nowWall: clientThreeHoursBehind,
      remainingMs: HOUR * 1000,
    });
    assert.equal(seconds, 10);
  });

  test('an HTTP-date without a Date header falls back to the client clock, under the ceiling', () => {
    assert.equal(retryAfterSeconds({ header: 'Tue, 06 Jan 2026 12:00:10 GMT', nowWall: serverNow }), 10);
    assert.equal(retryAfterSeconds({ header: 'Tue, 06 Jan 2026 12:00:10 GMT', nowWall: serverNow - 3 * HOUR * 1000 }), 300);
    assert.equal(retryAfterSeconds({ header: 'Tue, 06 Jan 2026 11:00:00 GMT', dateHeader: serverDate }), 0, 'in the past: no wait');
  });

  test('delta-seconds: capped by the ceiling and by the life left minus 10 s', () => {
    assert.equal(retryAfterSeconds({ header: '86400' }), 300);
    assert.equal(retryAfterSeconds({ header: '86400', ceilingSeconds: 120 }), 120);
    assert.equal(retryAfterSeconds({ header: '45', remainingMs: 600_000 }), 45);
    assert.equal(retryAfterSeconds({ header: '250', remainingMs: 66_000 }), 56);
    assert.equal(retryAfterSeconds({ header: '250', remainingMs: 5_000 }), 0, 'token nearly dead: do not wait');
    assert.equal(retryAfterSeconds({ header: '250', remainingMs: 0 }), 250, 'token dead: only the ceiling');
    assert.equal(retryAfterSeconds({ header: 86_400, remainingMs: -1 }), 300, 'a number is seconds already read');
  });

  test('absent or malformed: undefined', () => {
    for (const header of [undefined, null, '', '  ', 'soon', '-5', -5, NaN]) {
      assert.equal(retryAfterSeconds({ header, dateHeader: serverDate }), undefined, String(header));
    }
  });
});
