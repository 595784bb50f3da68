// Issue #9 (2, 3): failures named precisely. A session that is gone (401, or a redirect or
// HTML page where JSON was due) pauses the keeper on a "signed out" screen until a session
// exists again; a CSRF refusal is answered with a fresh CSRF token and one more try; a real 403
// still revokes; a 404 is final ("this report was removed") and stops every token call.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { httpError, setup } from './fake-env.js';

const HOUR = 3600;
const unauthorized = () => httpError(401, { code: 'Unauthorized' });
const redirected = () => httpError(401, { code: 'SignedOut' }); // what the viewer makes of a redirect/HTML answer
const csrf = () => httpError(403, { code: 'CsrfTokenInvalid' });

describe('signed out', () => {
  for (const [name, failure] of [['401', unauthorized], ['a redirect or HTML answer', redirected]]) {
    test(`${name}: the signed-out screen, no more token calls, then back by itself`, async () => {
      const env = setup({ withSession: true });
      env.server.fallback = failure();
      env.session.signedIn = false;
      await env.clock.advanceSeconds(HOUR - 600);
      assert.equal(env.states.at(-1), 'signedOut');
      assert.equal(env.server.calls.length, 1);
      await env.clock.advanceSeconds(600);
      assert.equal(env.server.calls.length, 1, 'no token call while signed out');
      assert.ok(env.session.calls.length >= 3, 'the session is looked for now and then');
      assert.notEqual(env.states.at(-1), 'expired', 'the signed-out screen stays when the token dies');

      env.session.signedIn = true;
      env.server.fallback = null;
      await env.clock.advanceSeconds(60);
      assert.equal(env.states.at(-1), 'live');
      assert.equal(env.server.calls.length, 2);
      assert.equal(env.report.callNames().at(-1), 'reload', 'the token died meanwhile: reloaded');
      env.keeper.stop();
    });
  }

  test('the session is looked for with a growing, capped wait', async () => {
    const env = setup({ withSession: true });
    env.server.fallback = unauthorized();
    env.session.signedIn = false;
    await env.clock.advanceSeconds(HOUR - 600);
    const start = env.session.calls.length;
    await env.clock.advanceSeconds(600);
    const gaps = env.session.calls.slice(start - 1).map((t, i, all) => (i ? t - all[i - 1] : 0)).slice(1);
    assert.ok(gaps.every((gap, i) => i === 0 || gap >= gaps[i - 1]), `growing: ${gaps}`);
    assert.ok(Math.max(...gaps) <= 60_000, `capped at a minute: ${gaps}`);
    env.keeper.stop();
  });

  test('focus while signed out looks for the session at once', async () => {
    const env = setup({ withSession: true });
    env.server.fallback = unauthorized();
    env.session.signedIn = false;
    await env.clock.advanceSeconds(HOUR - 600);
    await env.clock.advanceSeconds(120);
    env.session.signedIn = true;
    env.server.fallback = null;
    const before = env.server.calls.length;
    env.windowTarget.dispatch('focus');
    await env.clock.advance(0);
    assert.equal(env.server.calls.length, before + 1);
    assert.equal(env.states.at(-1), 'live');
    env.keeper.stop();
  });

  test('checkSession(): another tab signed out, this one shows it without waiting for a refresh', async () => {
    const env = setup({ withSession: true });
    await env.clock.advanceSeconds(60);
    env.session.signedIn = false;
    await env.keeper.checkSession();
    assert.equal(env.states.at(-1), 'signedOut');
    assert.equal(env.server.calls.length, 0);
    env.session.signedIn = true;
    await env.keeper.checkSession({ onlyIfSignedOut: true });
    await env.clock.advance(0);
    assert.equal(env.states.at(-1), 'live');
    assert.equal(env.report.callNames().includes('reload'), false, 'a live token needs no reload');
    env.keeper.stop();
  });

  test('a sign-in elsewhere does not make a live keeper ask', async () => {
    const env = setup({ withSession: true });
    await env.keeper.checkSession({ onlyIfSignedOut: true });
    assert.equal(env.session.calls.length, 0);
    env.keeper.stop();
  });

  test('stop() while signed out leaves no timer', async () => {
    const env = setup({ withSession: true });
    env.session.signedIn = false;
    await env.keeper.checkSession();
    env.keeper.stop();
    assert.equal(env.clock.pending(), 0);
  });
});

describe('a CSRF refusal', () => {
  test('is answered with a fresh CSRF token and one more try: no "access removed"', async () => {
    const env = setup({ withSession: true });
    env.server.script = [csrf()];
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.server.calls.length, 2);
    assert.equal(env.session.calls.length, 1);
    assert.deepEqual(env.states, ['live', 'refreshing', 'live']);
    env.keeper.stop();
  });

  test('twice in a row: retried with backoff like any failure, never revoked', async () => {
    const env = setup({ withSession: true });
    env.server.script = [csrf(), csrf(), csrf()];
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.states.at(-1), 'retrying');
    await env.clock.advanceSeconds(300);
    assert.equal(env.states.at(-1), 'live');
    assert.equal(env.states.includes('revoked'), false);
    env.keeper.stop();
  });

  test('with the session gone meanwhile: signed out', async () => {
    const env = setup({ withSession: true });
    env.server.script = [csrf()];
    env.session.signedIn = false;
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.states.at(-1), 'signedOut');
    assert.equal(env.server.calls.length, 1);
    env.keeper.stop();
  });
});

describe('the report removed (404)', () => {
  test('a final screen, no timers, no more token calls', async () => {
    const env = setup({ withSession: true });
    env.server.fallback = httpError(404, { code: 'NotFound' });
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.states.at(-1), 'removed');
    assert.equal(env.clock.pending(), 0);
    await env.clock.advanceSeconds(2 * HOUR);
    env.windowTarget.dispatch('focus');
    assert.equal(await env.keeper.refreshNow(), false);
    assert.equal(await env.keeper.refreshIfStale(), false);
    assert.equal(env.server.calls.length, 1);
  });
});

describe('a real 403', () => {
  test('still says access removed', async () => {
    const env = setup({ withSession: true });
    env.server.fallback = httpError(403, { code: 'Forbidden' });
    await env.clock.advanceSeconds(HOUR - 600);
    assert.equal(env.states.at(-1), 'revoked');
    assert.equal(env.session.calls.length, 0);
  });
});
