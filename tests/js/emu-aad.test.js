// Unit tests of when the emulated report asks its host for a new Entra token (node:test).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const SOURCE = new URL('../../src/embedportal/emulator/static/emu-aad.js', import.meta.url);
const sandbox = { atob, TextDecoder };
vm.runInNewContext(readFileSync(SOURCE, 'utf8'), sandbox, { filename: fileURLToPath(SOURCE) });
const { expiryOf, usesHook, nextAskDelay, FIRST_RETRY_MS, LONGEST_RETRY_MS, TOKEN_TYPE_AAD } =
  sandbox.EmbedEmulator.aad;

function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part(claims)}.signature`;
}

describe('expiryOf', () => {
  test('reads exp from a JWT, in milliseconds', () => {
    assert.equal(expiryOf(jwt({ exp: 1700000000, name: 'Zoë' })), 1700000000 * 1000);
  });
  test('null for anything that is not a JWT with a numeric exp', () => {
    for (const token of [null, 42, '', 'a.b', 'a.b.c', jwt({}), jwt({ exp: 'soon' }), 'x.' + '%%%' + '.y']) {
      assert.equal(expiryOf(token), null, String(token));
    }
  });
});

describe('usesHook', () => {
  test('only for Aad tokens with a provider', () => {
    assert.equal(usesHook({ tokenType: TOKEN_TYPE_AAD }, true), true);
    assert.equal(usesHook({ tokenType: TOKEN_TYPE_AAD }, false), false);
    assert.equal(usesHook({ tokenType: 1 }, true), false);
    assert.equal(usesHook({}, true), false);
    assert.equal(usesHook(null, true), false);
  });
});

describe('nextAskDelay', () => {
  const now = 1_000_000;
  const expiresAt = now + 3_600_000;

  test('first asks the lead before expiry', () => {
    assert.equal(nextAskDelay({ now, expiresAt, leadSeconds: 600, failures: 0 }), 3_000_000);
  });
  test('asks at once when already inside the lead', () => {
    assert.equal(nextAskDelay({ now, expiresAt: now + 1000, leadSeconds: 600, failures: 0 }), 0);
  });
  test('null answers double the wait, capped, and never past the expiry', () => {
    const waits = [1, 2, 3, 4, 5, 6, 7].map((failures) =>
      nextAskDelay({ now, expiresAt, leadSeconds: 600, failures }),
    );
    assert.deepEqual(waits, [5000, 10000, 20000, 40000, 60000, 60000, 60000]);
    assert.equal(nextAskDelay({ now, expiresAt: now + 3000, leadSeconds: 600, failures: 3 }), 3000);
  });
  test('after expiry it keeps asking, at the backoff', () => {
    assert.equal(nextAskDelay({ now, expiresAt: now - 1, leadSeconds: 600, failures: 1 }), FIRST_RETRY_MS);
    assert.equal(nextAskDelay({ now, expiresAt: now - 1, leadSeconds: 600, failures: 9 }), LONGEST_RETRY_MS);
  });
  test('nothing to schedule without an expiry', () => {
    assert.equal(nextAskDelay({ now, expiresAt: null, leadSeconds: 600, failures: 0 }), null);
  });
});
