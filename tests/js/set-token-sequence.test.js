// Issue #9 (6): a setAccessToken the keeper gave up on (SetTokenTimeout) may still resolve
// later, and powerbi-client then writes that older token into the report. The calls are
// numbered; a late resolution of an older one is followed by the newest token again.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import * as keeperModule from '../../src/embedportal/web/static/js/token-keeper.js';
import { flush, setup } from './fake-env.js';

const { isOutdatedSetAccessToken } = keeperModule;
const HOUR = 3600;

/** The first setAccessToken hangs; resolving it later writes its token, as powerbi-client does. */
function hangFirstSetAccessToken(report) {
  let release = null;
  let calls = 0;
  report.setAccessTokenBehaviour = (token) => {
    calls += 1;
    if (calls === 1) {
      return new Promise((resolve) => {
        release = () => {
          report.currentToken = token;
          resolve();
        };
      });
    }
    report.currentToken = token;
    return Promise.resolve();
  };
  return () => release();
}

describe('setAccessToken calls are sequenced', () => {
  test('a timed-out setAccessToken that resolves late is followed by the newest token again', async () => {
    const env = setup({ stepTimeoutMs: 10_000 });
    const releaseFirst = hangFirstSetAccessToken(env.report);
    await env.clock.advanceSeconds(HOUR - 600); // margin: fetch token-1, its set hangs
    await env.clock.advanceSeconds(12); // SetTokenTimeout at 10 s, retry 1 s later: token-2 set
    assert.equal(env.keeper.currentToken(), 'token-2');
    assert.equal(env.report.currentToken, 'token-2');
    releaseFirst(); // powerbi-client finally writes token-1
    await flush();
    await flush();
    assert.equal(env.report.currentToken, 'token-2', 'the report holds the keeper\'s token');
    assert.equal(env.keeper.currentToken(), env.report.currentToken);
    assert.deepEqual(env.report.calls.filter((c) => c.call === 'setAccessToken').map((c) => c.token),
      ['token-1', 'token-2', 'token-2']);
    assert.deepEqual(env.report.callNames().filter((n) => n === 'reload'), [], 'no reload for it');
    env.keeper.stop();
  });

  test('a set that resolves on time triggers nothing more', async () => {
    const env = setup();
    await env.clock.advanceSeconds(HOUR - 600);
    await flush();
    assert.deepEqual(env.report.callNames(), ['setAccessToken']);
    env.keeper.stop();
  });

  test('isOutdatedSetAccessToken: an older call settling after a newer one', () => {
    assert.equal(isOutdatedSetAccessToken({ sequence: 1, newestSettledSequence: 2 }), true);
    assert.equal(isOutdatedSetAccessToken({ sequence: 3, newestSettledSequence: 2 }), false);
    assert.equal(isOutdatedSetAccessToken({ sequence: 1, newestSettledSequence: 0 }), false);
  });
});
