// The token keeper's decisions, tested as pure functions of a snapshot: no fake clock, no
// timers, no report. Run: node --test tests/js/
//
// The constants the boundaries come from are private to the keeper; their values are written
// out here (TIMER_SLACK_MS = 50, LATE_TIMER_FACTOR = 2, SLEEP_GAP_TOLERANCE_MS = 2000,
// MIN_RETRY_DELAY_MS = 100, ERROR_GRACE_MAX_SECONDS = 10, STARTING_MAX_BACKOFF_SECONDS = 5,
// INTERACTION_REPORT_INTERVAL_MS = 60000, FIRST_TOKEN_MAX_BACKOFF_SECONDS = 30,
// FIRST_TOKEN_FLOOR_SECONDS = 1), so changing one fails a test.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_POLICY,
  STATES,
  attemptReason,
  dueReason,
  effectiveTimings,
  firstTokenPlan,
  heldRefreshNow,
  interactionReportDue,
  isCapacityScreen,
  isReportDown,
  isStaleTokenExpiredError,
  missedSleepMs,
  nextTimer,
  refreshNowAttempt,
  retryPlan,
  retryReason,
  stateAfterFailure,
  timerTrigger,
} from '../../src/embedportal/web/static/js/token-keeper.js';

const HOUR = 3600;
const SLACK_MS = 50;
const ISSUED_AT = 100_000;
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * A consistent snapshot of a keeper whose token arrived at ISSUED_AT and is now `ageMs` old.
 * Any field can be overridden; `diedByError` reproduces the iframe saying TokenExpired.
 */
function snapshot({ ageMs = 0, lifetimeSeconds = HOUR, policy = DEFAULT_POLICY, diedByError = false, ...fields } = {}) {
  const now = ISSUED_AT + ageMs;
  const expiresAt = ISSUED_AT + lifetimeSeconds * 1000;
  return {
    now,
    state: STATES.LIVE,
    issuedAt: ISSUED_AT,
    lifetimeSeconds,
    fromRefresh: true,
    expiresAt,
    remainingMs: diedByError ? 0 : expiresAt - now,
    timings: effectiveTimings(policy, lifetimeSeconds),
    inFlight: false,
    failures: 0,
    retryAt: null,
    retryAfterUntil: 0,
    cycleReason: null,
    deathReported: false,
    ...fields,
  };
}

/** The age at which an hour token has `remainingMs` left. */
const ageLeaving = (remainingMs, lifetimeSeconds = HOUR) => lifetimeSeconds * 1000 - remainingMs;
const MARGIN_MS = 600_000;
const TIMED = { ...DEFAULT_POLICY, refreshEverySeconds: 900 };

// ---------------------------------------------------------------------------------------------
describe('dueReason', () => {
  const due = (fields) => dueReason(snapshot({ trigger: 'timer', ...fields }));

  test('margin: due once the remaining life is within the margin, with 50 ms of timer slack', () => {
    assert.equal(due({ ageMs: 0 }), null, 'a fresh token');
    assert.equal(due({ ageMs: ageLeaving(MARGIN_MS + SLACK_MS + 1) }), null);
    assert.equal(due({ ageMs: ageLeaving(MARGIN_MS + SLACK_MS) }), 'margin');
    assert.equal(due({ ageMs: ageLeaving(MARGIN_MS) }), 'margin');
    assert.equal(due({ ageMs: ageLeaving(1) }), 'margin', 'one millisecond left');
  });

  test('margin scales with short lifetimes: a third of a 60 s token', () => {
    const short = (remainingMs) => due({ lifetimeSeconds: 60, ageMs: ageLeaving(remainingMs, 60) });
    assert.equal(short(20_000 + SLACK_MS + 1), null);
    assert.equal(short(20_000 + SLACK_MS), 'margin');
  });

  test('a dead token is a recovery, whether our clock or the iframe says so', () => {
    assert.equal(due({ ageMs: ageLeaving(0) }), 'recovery', 'expiry moment');
    assert.equal(due({ ageMs: ageLeaving(-5_000) }), 'recovery', 'overdue');
    assert.equal(due({ ageMs: 1_000, diedByError: true }), 'recovery', 'TokenExpired from the iframe');
  });

  test('timed refresh: due refreshEverySeconds after the token arrived, with the same slack', () => {
    assert.equal(due({ policy: TIMED, ageMs: 900_000 - SLACK_MS - 1 }), null);
    assert.equal(due({ policy: TIMED, ageMs: 900_000 - SLACK_MS }), 'timed');
    assert.equal(due({ policy: TIMED, ageMs: 900_000 }), 'timed');
    assert.equal(due({ policy: TIMED, ageMs: 1_800_000 }), 'timed', 'overdue is still due');
  });

  test('timed refresh off: age alone never makes a refresh due', () => {
    assert.equal(due({ ageMs: ageLeaving(MARGIN_MS + 60_000) }), null);
    assert.equal(due({ policy: { ...DEFAULT_POLICY, refreshEverySeconds: 0 }, ageMs: 2_000_000 }), null);
  });

  test('margin and timed both due: margin is the reason', () => {
    const policy = { ...DEFAULT_POLICY, refreshEverySeconds: 3000 };
    assert.equal(due({ policy, ageMs: ageLeaving(MARGIN_MS) }), 'margin');
  });

  test('interaction: only a token at least the minimum age old, with no slack', () => {
    const click = (fields) => due({ trigger: 'interaction', ...fields });
    assert.equal(click({ ageMs: 300_000 - 1 }), null);
    assert.equal(click({ ageMs: 300_000 }), 'interaction');
    assert.equal(click({ ageMs: 1_000 }), null, 'a busy user does not mint a token per click');
    // The minimum age is capped at a third of a short lifetime.
    assert.equal(click({ lifetimeSeconds: 60, ageMs: 20_000 - 1 }), null);
    assert.equal(click({ lifetimeSeconds: 60, ageMs: 20_000 }), 'interaction');
  });

  test('interaction names the refresh even when the margin or the timer would also be due', () => {
    assert.equal(due({ trigger: 'interaction', ageMs: ageLeaving(MARGIN_MS) }), 'interaction');
    assert.equal(due({ trigger: 'interaction', policy: TIMED, ageMs: 900_000 }), 'interaction');
    assert.equal(due({ trigger: 'interaction', ageMs: ageLeaving(0) }), 'recovery', 'but a dead token is a recovery');
  });

  test('other triggers do not count the age for interaction', () => {
    for (const trigger of ['timer', 'start', 'policy', 'wake']) {
      assert.equal(due({ trigger, ageMs: 300_000 }), null, trigger);
    }
  });

  test('wake: names any due refresh, even a recovery, and nothing when nothing is due', () => {
    assert.equal(due({ trigger: 'wake', ageMs: 1_000 }), null);
    assert.equal(due({ trigger: 'wake', ageMs: ageLeaving(MARGIN_MS) }), 'wake');
    assert.equal(due({ trigger: 'wake', policy: TIMED, ageMs: 900_000 }), 'wake');
    assert.equal(due({ trigger: 'wake', ageMs: ageLeaving(-7_200_000) }), 'wake', 'two hours asleep');
  });

  test('start and policy decide like the timer', () => {
    for (const trigger of ['start', 'policy']) {
      assert.equal(due({ trigger, ageMs: 1_000 }), null);
      assert.equal(due({ trigger, ageMs: ageLeaving(MARGIN_MS) }), 'margin');
      assert.equal(due({ trigger, policy: TIMED, ageMs: 900_000 }), 'timed');
      assert.equal(due({ trigger, ageMs: ageLeaving(0) }), 'recovery');
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('isReportDown and retryReason', () => {
  test('down: no life left, or an expiry or capacity screen is up', () => {
    assert.equal(isReportDown({ remainingMs: 1, state: STATES.LIVE }), false);
    assert.equal(isReportDown({ remainingMs: 0, state: STATES.LIVE }), true);
    assert.equal(isReportDown({ remainingMs: -1, state: STATES.RETRYING }), true);
    assert.equal(isReportDown({ remainingMs: 60_000, state: STATES.EXPIRED }), true);
    assert.equal(isReportDown({ remainingMs: 60_000, state: STATES.CAPACITY_OFF }), true);
    for (const state of [STATES.REFRESHING, STATES.RETRYING, STATES.LIVE]) {
      assert.equal(isReportDown({ remainingMs: 60_000, state }), false, state);
    }
  });

  test('a retry keeps the reason of its cycle while the report works, and is a recovery once it is down', () => {
    assert.equal(retryReason(snapshot({ ageMs: 1_000, cycleReason: 'interaction' })), 'interaction');
    assert.equal(retryReason(snapshot({ ageMs: 1_000, cycleReason: 'access' })), 'access');
    assert.equal(retryReason(snapshot({ ageMs: 1_000 })), 'margin', 'no cycle reason');
    assert.equal(retryReason(snapshot({ ageMs: ageLeaving(0), cycleReason: 'timed' })), 'recovery');
    assert.equal(retryReason(snapshot({ ageMs: 1_000, diedByError: true, cycleReason: 'timed' })), 'recovery');
    assert.equal(retryReason(snapshot({ ageMs: 1_000, state: STATES.CAPACITY_OFF, cycleReason: 'margin' })), 'recovery');
  });
});

// ---------------------------------------------------------------------------------------------
describe('attemptReason', () => {
  const reason = (fields) => attemptReason(snapshot(fields));
  const marginAge = ageLeaving(MARGIN_MS);

  test('single flight: nothing starts while an attempt runs, whatever the trigger or the state', () => {
    for (const trigger of ['timer', 'wake', 'online', 'interaction', 'start', 'policy']) {
      assert.equal(reason({ trigger, inFlight: true, ageMs: marginAge }), null, trigger);
      assert.equal(reason({ trigger, inFlight: true, ageMs: ageLeaving(-1_000) }), null, `${trigger}, dead`);
      assert.equal(reason({ trigger, inFlight: true, failures: 2, retryAt: ISSUED_AT }), null, `${trigger}, retry due`);
    }
  });

  test('no failures: whatever dueReason says, and online is a wake-up', () => {
    assert.equal(reason({ trigger: 'timer', ageMs: 1_000 }), null);
    assert.equal(reason({ trigger: 'timer', ageMs: marginAge }), 'margin');
    assert.equal(reason({ trigger: 'interaction', ageMs: 300_000 }), 'interaction');
    assert.equal(reason({ trigger: 'online', ageMs: 1_000 }), null);
    assert.equal(reason({ trigger: 'online', ageMs: marginAge }), 'wake');
  });

  test('backing off: the retry starts at its time, 50 ms of slack included', () => {
    const retryAt = ISSUED_AT + 10_000;
    const retrying = { failures: 1, retryAt, cycleReason: 'margin', ageMs: marginAge + 10_000 };
    const at = (now, trigger = 'timer') => attemptReason(snapshot({ ...retrying, trigger, now }));
    assert.equal(at(retryAt - SLACK_MS - 1), null);
    assert.equal(at(retryAt - SLACK_MS), 'margin');
    assert.equal(at(retryAt + 60_000), 'margin', 'late');
  });

  test('backing off: clicks, focus and timers before the retry time cannot defeat the backoff', () => {
    const early = { failures: 3, retryAt: ISSUED_AT + 60_000, cycleReason: 'margin', ageMs: marginAge };
    for (const trigger of ['timer', 'wake', 'interaction', 'start', 'policy']) {
      assert.equal(attemptReason(snapshot({ ...early, trigger, now: ISSUED_AT + 1_000 })), null, trigger);
    }
  });

  test('backing off: the network coming back retries at once, unless a Retry-After still runs', () => {
    const backoff = { failures: 2, retryAt: ISSUED_AT + 30_000, cycleReason: 'interaction', trigger: 'online' };
    const at = (now, retryAfterUntil) => attemptReason(snapshot({ ...backoff, now, retryAfterUntil }));
    assert.equal(at(ISSUED_AT + 1_000, 0), 'interaction');
    assert.equal(at(ISSUED_AT + 1_000, ISSUED_AT + 1_001), null);
    assert.equal(at(ISSUED_AT + 1_000, ISSUED_AT + 1_000), 'interaction', 'Retry-After just ended');
  });

  test('backing off with no retry time: only online starts an attempt', () => {
    const lost = { failures: 1, retryAt: null, ageMs: marginAge };
    assert.equal(reason({ ...lost, trigger: 'timer' }), null);
    assert.equal(reason({ ...lost, trigger: 'online' }), 'margin');
  });

  test('a retry once the report is down is a recovery', () => {
    const dead = { failures: 4, retryAt: ISSUED_AT, cycleReason: 'margin', ageMs: ageLeaving(-1) };
    assert.equal(reason({ ...dead, trigger: 'timer' }), 'recovery');
    assert.equal(reason({ ...dead, trigger: 'timer', ageMs: 1_000, state: STATES.CAPACITY_OFF }), 'recovery');
  });
});

// ---------------------------------------------------------------------------------------------
describe('refreshNowAttempt', () => {
  const attempt = (fields) => refreshNowAttempt(snapshot({ ageMs: 1_000, requested: 'manual', ...fields }));

  test('with nothing failed: always, with the requested reason, even on a dead report', () => {
    assert.deepEqual(attempt({}), { reason: 'manual' });
    assert.deepEqual(attempt({ requested: 'access' }), { reason: 'access' });
    assert.deepEqual(attempt({ retryAfterUntil: ISSUED_AT + 60_000 }), { reason: 'manual' }, 'an old Retry-After');
    assert.deepEqual(attempt({ ageMs: ageLeaving(-1) }), { reason: 'manual' });
  });

  test('after failures: not while the server\'s Retry-After runs', () => {
    const now = ISSUED_AT + 1_000;
    assert.equal(attempt({ failures: 1, retryAfterUntil: now + 1 }), null);
    assert.deepEqual(attempt({ failures: 1, retryAfterUntil: now }), { reason: 'manual' });
    assert.deepEqual(attempt({ failures: 1, retryAfterUntil: 0, retryAt: now + 50_000 }), { reason: 'manual' }, 'backoff alone does not hold it');
  });

  test('after failures on a down report: a recovery', () => {
    assert.deepEqual(attempt({ failures: 2, ageMs: ageLeaving(-1) }), { reason: 'recovery' });
    assert.deepEqual(attempt({ failures: 2, state: STATES.CAPACITY_OFF }), { reason: 'recovery' });
    assert.deepEqual(attempt({ failures: 2, state: STATES.RETRYING }), { reason: 'manual' });
  });

  test('held: a person\'s interaction waits for the next attempt, as soon as Retry-After allows', () => {
    const held = (fields) => heldRefreshNow({ inFlight: false, retryAt: null, retryAfterUntil: 0, ...fields });
    assert.deepEqual(held({ requested: 'interaction', retryAt: 9_000, retryAfterUntil: 5_000 }), { retryAt: 5_000 });
    assert.deepEqual(held({ requested: 'interaction', retryAt: 4_000, retryAfterUntil: 5_000 }), { retryAt: 4_000 }, 'never later than planned');
    assert.deepEqual(held({ requested: 'interaction', retryAt: null, retryAfterUntil: 5_000 }), { retryAt: 5_000 });
    assert.deepEqual(held({ requested: 'interaction', inFlight: true }), { retryAt: null }, 'in flight: its retry, if any');
    for (const requested of ['manual', 'access-check', 'capacity', 'recovery']) {
      assert.equal(held({ requested, retryAt: 9_000, retryAfterUntil: 5_000 }), null, requested);
    }
    assert.equal(retryReason(snapshot({ state: STATES.CAPACITY_OFF, personAsked: true })), 'interaction');
    assert.equal(retryReason(snapshot({ state: STATES.CAPACITY_OFF, personAsked: false })), 'recovery');
  });

  test('a person\'s interaction keeps its reason on a down report (it may start the capacity)', () => {
    assert.deepEqual(attempt({ failures: 2, state: STATES.CAPACITY_OFF, requested: 'interaction' }), { reason: 'interaction' });
    assert.deepEqual(attempt({ failures: 2, ageMs: ageLeaving(-1), requested: 'interaction' }), { reason: 'interaction' });
    const now = ISSUED_AT + 1_000;
    assert.equal(attempt({ failures: 1, state: STATES.CAPACITY_OFF, requested: 'interaction', retryAfterUntil: now + 1 }), null, 'Retry-After still holds it');
  });

  test('passes any requested reason through, null included', () => {
    assert.deepEqual(attempt({ requested: null }), { reason: null });
  });
});

// ---------------------------------------------------------------------------------------------
describe('nextTimer', () => {
  const plan = (fields) => nextTimer(snapshot(fields));

  test('a fresh hour token: the periodic check comes first', () => {
    assert.deepEqual(plan({ ageMs: 0 }), { dueAt: ISSUED_AT + 30_000, delayMs: 30_000 });
  });

  test('the margin moment when it comes before the next check', () => {
    const marginAt = ISSUED_AT + ageLeaving(MARGIN_MS);
    assert.deepEqual(plan({ ageMs: ageLeaving(MARGIN_MS + 10_000) }), { dueAt: marginAt, delayMs: 10_000 });
  });

  test('past the margin: the check, or the expiry when it is sooner', () => {
    assert.equal(plan({ ageMs: ageLeaving(MARGIN_MS - 1) }).delayMs, 30_000);
    assert.deepEqual(plan({ ageMs: ageLeaving(5_000) }), { dueAt: ISSUED_AT + HOUR * 1000, delayMs: 5_000 });
  });

  test('the timed-refresh moment; one already past is not a candidate', () => {
    const policy = { ...DEFAULT_POLICY, refreshEverySeconds: 20 };
    assert.deepEqual(plan({ policy, ageMs: 15_000 }), { dueAt: ISSUED_AT + 20_000, delayMs: 5_000 });
    assert.equal(plan({ policy, ageMs: 20_000 }).delayMs, 30_000);
  });

  test('short lifetimes: the check interval is a sixth of the life', () => {
    assert.equal(plan({ lifetimeSeconds: 60, ageMs: 0 }).delayMs, 10_000);
    assert.equal(plan({ lifetimeSeconds: 3, ageMs: 0 }).delayMs, 1_000, 'never under 1 s');
  });

  test('while an attempt runs: no margin or timed moment, but the expiry still shows on time', () => {
    const policy = { ...DEFAULT_POLICY, refreshEverySeconds: 20 };
    assert.equal(plan({ inFlight: true, policy, ageMs: 15_000 }).delayMs, 30_000);
    assert.equal(plan({ inFlight: true, ageMs: ageLeaving(MARGIN_MS + 10_000) }).delayMs, 30_000);
    assert.equal(plan({ inFlight: true, ageMs: ageLeaving(5_000) }).delayMs, 5_000);
  });

  test('once the death is reported, or the token is dead, the expiry is no candidate', () => {
    assert.equal(plan({ deathReported: true, inFlight: true, ageMs: ageLeaving(5_000) }).delayMs, 30_000);
    assert.equal(plan({ inFlight: true, ageMs: ageLeaving(0) }).delayMs, 30_000);
  });

  test('backing off: the retry time, never the margin or the timer', () => {
    const policy = { ...DEFAULT_POLICY, refreshEverySeconds: 20 };
    const now = ISSUED_AT + 15_000;
    assert.deepEqual(plan({ failures: 1, retryAt: now + 8_000, policy, ageMs: 15_000 }), { dueAt: now + 8_000, delayMs: 8_000 });
    assert.equal(plan({ failures: 1, retryAt: now + 50_000, policy, ageMs: 15_000 }).delayMs, 30_000);
    assert.equal(plan({ failures: 1, retryAt: null, ageMs: ageLeaving(MARGIN_MS + 10_000) }).delayMs, 30_000);
    assert.equal(plan({ failures: 1, retryAt: now + 1_000, inFlight: true, ageMs: 15_000 }).delayMs, 30_000, 'retry in flight');
  });

  test('an overdue retry fires at once: the delay is never negative', () => {
    const now = ISSUED_AT + 15_000;
    assert.deepEqual(plan({ failures: 3, retryAt: now - 2_000, ageMs: 15_000 }), { dueAt: now - 2_000, delayMs: 0 });
  });

  test('the delay is capped where setTimeout would overflow', () => {
    const huge = { marginSeconds: 0, minInteractionAgeSeconds: 0, checkIntervalSeconds: 30 * 86_400, refreshEverySeconds: null, maxBackoffSeconds: 60 };
    const far = nextTimer(snapshot({ timings: huge, expiresAt: Infinity }));
    assert.equal(far.delayMs, MAX_TIMER_DELAY_MS);
    assert.equal(far.dueAt, ISSUED_AT + 30 * 86_400_000, 'dueAt stays the real moment');
  });
});

// ---------------------------------------------------------------------------------------------
describe('timerTrigger', () => {
  const timings = effectiveTimings(DEFAULT_POLICY, HOUR); // check every 30 s
  const dueAt = 1_000_000;

  test('on time, early, or up to two check intervals late: an ordinary timer', () => {
    for (const lateBy of [0, -1, 1, 59_999, 60_000]) {
      assert.equal(timerTrigger({ now: dueAt + lateBy, dueAt, timings }), 'timer', String(lateBy));
    }
  });

  test('later than two check intervals: the tab was frozen or the machine slept', () => {
    assert.equal(timerTrigger({ now: dueAt + 60_001, dueAt, timings }), 'wake');
    assert.equal(timerTrigger({ now: dueAt + 7_200_000, dueAt, timings }), 'wake');
    const short = effectiveTimings(DEFAULT_POLICY, 60); // check every 10 s
    assert.equal(timerTrigger({ now: dueAt + 20_000, dueAt, timings: short }), 'timer');
    assert.equal(timerTrigger({ now: dueAt + 20_001, dueAt, timings: short }), 'wake');
  });
});

// ---------------------------------------------------------------------------------------------
describe('missedSleepMs', () => {
  const before = { lastMono: 50_000, lastWall: 1_700_000_000_000 };
  const after = (monoMs, wallMs) => missedSleepMs({ ...before, mono: before.lastMono + monoMs, wall: before.lastWall + wallMs });

  test('nothing to compare: first reading, or no wall clock', () => {
    assert.equal(missedSleepMs({ mono: 10, wall: 99_999_999, lastMono: null, lastWall: null }), 0);
    assert.equal(missedSleepMs({ mono: 10, wall: null, lastMono: 0, lastWall: 0 }), 0);
    assert.equal(missedSleepMs({ mono: 10, wall: 99_999_999, lastMono: 0, lastWall: null }), 0);
  });

  test('clocks moving together, or apart by up to 2 s, miss nothing', () => {
    assert.equal(after(30_000, 30_000), 0);
    assert.equal(after(30_000, 32_000), 0);
    assert.equal(after(0, 2_000), 0);
  });

  test('the wall clock ahead by more than 2 s: the whole gap is missed sleep', () => {
    assert.equal(after(30_000, 32_001), 2_001);
    assert.equal(after(0, 7_200_000), 7_200_000, 'a two-hour sleep on a monotonic clock that stopped');
    assert.equal(after(1_000, 7_201_000), 7_200_000);
  });

  test('only forward: a wall clock stepped back, or slower, never makes the token younger', () => {
    assert.equal(after(30_000, -10_800_000), 0);
    assert.equal(after(30_000, 0), 0);
    assert.equal(after(7_200_000, 0), 0, 'Windows: the monotonic clock ticked through the sleep');
  });
});

// ---------------------------------------------------------------------------------------------
describe('retryPlan', () => {
  const hour = effectiveTimings(DEFAULT_POLICY, HOUR);
  const now = 500_000;
  const plan = (fields) => retryPlan({ now, timings: hour, random: () => 1, ...fields });

  test('capped exponential backoff: 1, 2, 4 … s after failures 1, 2, 3 …, at most the cap', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 30].map((failures) => plan({ failures }).delayMs);
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    const capped = { ...hour, maxBackoffSeconds: 10 };
    assert.equal(plan({ failures: 8, timings: capped }).delayMs, 10_000);
  });

  test('retryAt is now plus the delay; no Retry-After leaves nothing to wait for', () => {
    assert.deepEqual(plan({ failures: 3 }), { delayMs: 4_000, retryAt: now + 4_000, retryAfterUntil: 0 });
  });

  test('full jitter, floored at 100 ms so a persistent failure is no busy loop', () => {
    assert.equal(plan({ failures: 5, random: () => 0.5 }).delayMs, 8_000);
    assert.equal(plan({ failures: 5, random: () => 0 }).delayMs, 100);
    assert.equal(plan({ failures: 1, random: () => 0.09 }).delayMs, 100);
    assert.equal(plan({ failures: 1, random: () => 0.11 }).delayMs, 110);
  });

  test('Retry-After: never sooner, even beyond the cap, and remembered as retryAfterUntil', () => {
    assert.deepEqual(plan({ failures: 1, random: () => 0, retryAfterSeconds: 30 }), {
      delayMs: 30_000, retryAt: now + 30_000, retryAfterUntil: now + 30_000,
    });
    assert.equal(plan({ failures: 1, retryAfterSeconds: 300 }).delayMs, 300_000);
    assert.deepEqual(plan({ failures: 7, retryAfterSeconds: 5 }), {
      delayMs: 60_000, retryAt: now + 60_000, retryAfterUntil: now + 5_000,
    });
    assert.deepEqual(plan({ failures: 1, random: () => 0, retryAfterSeconds: 0 }), {
      delayMs: 100, retryAt: now + 100, retryAfterUntil: 0,
    });
  });

  test('asks the random source exactly once', () => {
    let calls = 0;
    plan({ failures: 4, random: () => { calls += 1; return 0.3; } });
    assert.equal(calls, 1);
  });
});

// ---------------------------------------------------------------------------------------------
describe('stateAfterFailure', () => {
  const everyState = [STATES.LIVE, STATES.REFRESHING, STATES.RETRYING, STATES.EXPIRED, STATES.CAPACITY_OFF];

  test('revoked and capacityOff: whatever the state was', () => {
    for (const state of everyState) {
      assert.equal(stateAfterFailure({ kind: 'revoked', state }), STATES.REVOKED, state);
      assert.equal(stateAfterFailure({ kind: 'capacityOff', state }), STATES.CAPACITY_OFF, state);
    }
  });

  test('transient: retrying while the report works; an expiry or capacity screen stays up', () => {
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.LIVE }), STATES.RETRYING);
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.REFRESHING }), STATES.RETRYING);
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.RETRYING }), STATES.RETRYING);
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.EXPIRED }), STATES.EXPIRED);
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.CAPACITY_OFF }), STATES.CAPACITY_OFF);
  });
});

// ---------------------------------------------------------------------------------------------
describe('isStaleTokenExpiredError', () => {
  const stale = (fields) => isStaleTokenExpiredError(snapshot(fields));

  test('within 10 s of a refreshed hour token: stale, from a request with the previous token', () => {
    assert.equal(stale({ ageMs: 0 }), true);
    assert.equal(stale({ ageMs: 9_999 }), true);
    assert.equal(stale({ ageMs: 10_000 }), false);
  });

  test('short tokens: the grace is a sixth of the lifetime', () => {
    assert.equal(stale({ lifetimeSeconds: 30, ageMs: 4_999 }), true);
    assert.equal(stale({ lifetimeSeconds: 30, ageMs: 5_000 }), false);
    assert.equal(stale({ lifetimeSeconds: 0, ageMs: 0 }), false, 'no life, no grace');
  });

  test('the token the page was embedded with has no grace: its errors are real', () => {
    assert.equal(stale({ fromRefresh: false, ageMs: 0 }), false);
    assert.equal(stale({ fromRefresh: false, ageMs: 5_000 }), false);
  });
});

// ---------------------------------------------------------------------------------------------
describe('the capacity is starting', () => {
  const hour = effectiveTimings(DEFAULT_POLICY, HOUR);
  const now = 500_000;
  const plan = (fields) => retryPlan({ now, timings: hour, random: () => 1, kind: 'capacityStarting', ...fields });

  test('its screen is a capacity screen, and the report is down behind it', () => {
    assert.equal(isCapacityScreen(STATES.CAPACITY_STARTING), true);
    assert.equal(isCapacityScreen(STATES.CAPACITY_OFF), true);
    for (const state of [STATES.LIVE, STATES.REFRESHING, STATES.RETRYING, STATES.EXPIRED, STATES.REVOKED]) {
      assert.equal(isCapacityScreen(state), false, state);
    }
    assert.equal(isReportDown({ remainingMs: 60_000, state: STATES.CAPACITY_STARTING }), true);
    assert.equal(retryReason(snapshot({ ageMs: 1_000, state: STATES.CAPACITY_STARTING, cycleReason: 'timed' })), 'recovery');
  });

  test('a capacityStarting failure leads to its state from any state; transient failures keep it', () => {
    for (const state of [STATES.LIVE, STATES.REFRESHING, STATES.RETRYING, STATES.EXPIRED, STATES.CAPACITY_OFF, STATES.CAPACITY_STARTING]) {
      assert.equal(stateAfterFailure({ kind: 'capacityStarting', state }), STATES.CAPACITY_STARTING, state);
    }
    assert.equal(stateAfterFailure({ kind: 'transient', state: STATES.CAPACITY_STARTING }), STATES.CAPACITY_STARTING);
    assert.equal(stateAfterFailure({ kind: 'capacityOff', state: STATES.CAPACITY_STARTING }), STATES.CAPACITY_OFF, 'no longer allowed: off');
    assert.equal(stateAfterFailure({ kind: 'revoked', state: STATES.CAPACITY_STARTING }), STATES.REVOKED);
  });

  test('retries come every few seconds: the backoff is capped at 5 s', () => {
    const delays = [1, 2, 3, 4, 5, 30].map((failures) => plan({ failures }).delayMs);
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
    assert.equal(plan({ failures: 9, timings: { ...hour, maxBackoffSeconds: 3 } }).delayMs, 3_000, 'a lower policy cap wins');
    assert.equal(plan({ failures: 9, random: () => 0 }).delayMs, 100, 'still floored at 100 ms');
  });

  test('Retry-After still wins, even above 5 s', () => {
    assert.deepEqual(plan({ failures: 1, random: () => 0, retryAfterSeconds: 5 }), {
      delayMs: 5_000, retryAt: now + 5_000, retryAfterUntil: now + 5_000,
    });
    assert.equal(plan({ failures: 8, retryAfterSeconds: 12 }).delayMs, 12_000);
  });

  test('other kinds keep the policy cap', () => {
    assert.equal(plan({ failures: 9, kind: 'capacityOff' }).delayMs, 60_000);
    assert.equal(plan({ failures: 9, kind: 'transient' }).delayMs, 60_000);
    assert.equal(plan({ failures: 9, kind: undefined }).delayMs, 60_000);
  });
});

// ---------------------------------------------------------------------------------------------
describe('interactionReportDue', () => {
  test('the first interaction is reported, then at most one a minute', () => {
    assert.equal(interactionReportDue({ now: 0, lastReportedAt: null }), true);
    assert.equal(interactionReportDue({ now: 1_000, lastReportedAt: 1_000 }), false);
    assert.equal(interactionReportDue({ now: 60_999, lastReportedAt: 1_000 }), false);
    assert.equal(interactionReportDue({ now: 61_000, lastReportedAt: 1_000 }), true);
    assert.equal(interactionReportDue({ now: 7_200_000, lastReportedAt: 1_000 }), true, 'after a sleep');
  });
});

// ---------------------------------------------------------------------------------------------
describe('firstTokenPlan', () => {
  const failure = (status, code, extra = {}) => ({ status, code, message: `HTTP ${status}`, ...extra });
  const plan = (attempt, error, random = () => 1) => firstTokenPlan({ attempt, error, random });

  test('the screen follows the code', () => {
    assert.equal(plan(0, failure(503, 'CapacityStarting')).screen, 'capacityStarting');
    assert.equal(plan(0, failure(503, 'CapacityNotActive')).screen, 'capacityOff');
    assert.equal(plan(0, failure(503, 'PowerBIUnavailable')).screen, 'failed');
    assert.equal(plan(0, failure(0, 'NetworkError')).screen, 'failed');
    assert.equal(plan(0, failure(403, 'Forbidden')).screen, 'failed', 'no report was shown: nothing was revoked');
    assert.equal(plan(0, failure(401, 'Unauthorized')).screen, 'signedOut');
    assert.equal(plan(0, failure(0, 'SignedOut')).screen, 'signedOut');
    assert.equal(plan(0, failure(404, 'NotFound')).screen, 'removed');
  });

  test('401, 403 and 404 are final; everything else is asked again', () => {
    for (const status of [401, 403, 404]) assert.equal(plan(0, failure(status, `HTTP${status}`)).final, true, status);
    for (const status of [0, 429, 500, 502, 503]) assert.equal(plan(0, failure(status, `HTTP${status}`)).final, false, status);
    assert.equal(plan(0, failure(503, 'CapacityStarting')).final, false);
    assert.equal(plan(0, failure(403, 'CsrfTokenInvalid')).final, false, 'the viewer renews its CSRF token');
  });

  test('while the capacity starts: every few seconds, at most 5, at least 1, Retry-After wins', () => {
    const starting = (attempt, extra, random) => plan(attempt, failure(503, 'CapacityStarting', extra), random).delaySeconds;
    assert.deepEqual([0, 1, 2, 3, 10].map((a) => starting(a)), [1, 2, 4, 5, 5]);
    assert.equal(starting(5, {}, () => 0), 1, 'floored at a second');
    assert.equal(starting(0, { retryAfterSeconds: 5 }, () => 0), 5);
    assert.equal(starting(0, { retryAfterSeconds: 8 }), 8);
  });

  test('otherwise: backoff with jitter up to 30 s, plus a second', () => {
    const other = (attempt, code, extra, random) => plan(attempt, failure(503, code, extra), random).delaySeconds;
    assert.deepEqual([0, 1, 4, 5, 9].map((a) => other(a, 'CapacityNotActive')), [2, 3, 17, 31, 31]);
    assert.equal(other(3, 'HTTP500', {}, () => 0), 1);
    assert.equal(other(0, 'Throttled', { retryAfterSeconds: 45 }), 46);
  });
});
