// embedportal token keeper: keeps the embed token of one open Power BI report alive.
//
// Plain ES module, no dependencies, no build step: the same file runs in the browser and under
// node's test runner. Everything that touches time or the page (clocks, timers, randomness,
// document/window events) is injectable so tests can drive it deterministically.
//
// The algorithm, the option names and the telemetry/state vocabulary are described in
// docs/token-keeper.md. Comments here say *why* a rule exists.

/** powerbi-client report events that mean "a person is using the report". */
export const INTERACTION_EVENTS = Object.freeze([
  'filtersApplied',
  'pageChanged',
  'dataSelected',
  'visualClicked',
  'selectionChanged',
]);

/** Refresh policy used until the server sends one (the server's defaults, in seconds). */
export const DEFAULT_POLICY = Object.freeze({
  marginSeconds: 600,
  minInteractionAgeSeconds: 300,
  refreshEverySeconds: null,
  checkIntervalSeconds: 30,
  maxBackoffSeconds: 60,
});

/** Every value `onState` can be called with. */
export const STATES = Object.freeze({
  IDLE: 'idle', // created, start() not called yet (never passed to onState)
  LIVE: 'live',
  REFRESHING: 'refreshing',
  RETRYING: 'retrying',
  EXPIRED: 'expired',
  CAPACITY_OFF: 'capacityOff',
  CAPACITY_STARTING: 'capacityStarting',
  REVOKED: 'revoked',
  // The session is gone (401, or a redirect to a sign-in page): paused, not finished; the
  // keeper resumes by itself once a session exists again.
  SIGNED_OUT: 'signedOut',
  // The report is no longer in the catalogue (404): final, like REVOKED.
  REMOVED: 'removed',
  STOPPED: 'stopped',
});

/** Error code the viewer shows on its expiry overlay (the words Power BI users know). */
export const TOKEN_EXPIRED_CODE = 'ClientError_TokenExpired';

/** The token API's codes for a capacity that is not running (docs/token-api.md). */
export const CAPACITY_NOT_ACTIVE_CODE = 'CapacityNotActive';
export const CAPACITY_STARTING_CODE = 'CapacityStarting';
/** The viewer's code for a redirect or an HTML page where the token API's JSON was due. */
export const SIGNED_OUT_CODE = 'SignedOut';
/** The server's code for a request whose CSRF token is not the session's (web/deps.py). */
export const CSRF_CODE = 'CsrfTokenInvalid';

const BACKOFF_BASE_SECONDS = 1;
// A timer that fires this many check intervals late means the tab was frozen or the machine
// slept: nothing we scheduled ran on time, so treat it like a wake-up.
const LATE_TIMER_FACTOR = 2;
// Wall clock advancing more than the monotonic clock by this much between two readings means
// the machine slept on a platform whose monotonic clock stops during sleep (see docs).
const SLEEP_GAP_TOLERANCE_MS = 2000;
// Timers may fire a millisecond early (rounding); a deadline this close counts as reached.
const TIMER_SLACK_MS = 50;
// Full jitter can draw ~0; this floor keeps a persistent failure from becoming a busy loop.
const MIN_RETRY_DELAY_MS = 100;
// See isStaleTokenExpiredError.
const ERROR_GRACE_MAX_SECONDS = 10;
const DEFAULT_STEP_TIMEOUT_MS = 30000;
// While the capacity starts on demand the person is looking at a "starting" screen: ask every
// few seconds (the server's Retry-After still wins), so the report opens soon after it runs.
const STARTING_MAX_BACKOFF_SECONDS = 5;
// Interaction telemetry feeds the capacity's activity ledger, which counts per minute: one
// report a minute per report says all the ledger can use.
const INTERACTION_REPORT_INTERVAL_MS = 60_000;
// The first token (before the report is embedded): retry cap, and a floor against busy loops.
const FIRST_TOKEN_MAX_BACKOFF_SECONDS = 30;
const FIRST_TOKEN_FLOOR_SECONDS = 1;
const MAX_TIMER_DELAY_MS = 2147483647; // setTimeout overflows (fires at once) above 2^31-1
// A token whose server margin is longer than its life at receipt still runs this long (or a
// third of its life, if shorter) before the next refresh: a refresh loop is worse than a
// short margin.
const MIN_RUN_BEFORE_REFRESH_SECONDS = 60;
// A backed-off retry is due at least this long before the token dies, when that is ahead.
const BACKOFF_BEFORE_DEATH_SECONDS = 5;
// The longest Retry-After the keeper obeys. One 503 with a day-long (or clock-skewed) value
// must not leave a report dead: the server can always ask again on the next answer.
export const RETRY_AFTER_CEILING_SECONDS = 300;
// While a token is alive, a Retry-After ends this long before its death, so the retry still
// has time to fetch and install a new token without a reload.
const RETRY_AFTER_SAFETY_SECONDS = 10;
// Signed out: how often to ask whether a session exists again (full jitter, doubling). Cheap
// (one small GET per tab, deduplicated by the viewer), and focus or another tab's sign-in
// asks at once anyway.
const SESSION_POLL_BASE_SECONDS = 2;
const SESSION_POLL_MAX_SECONDS = 60;
// The server's Date header counts whole seconds: a sleep is confirmed only when the server's
// clock moved this much more than ours (the wall-clock tolerance plus two roundings).
const SERVER_DATE_RESOLUTION_MS = 1000;

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported so they are tested directly)
// ---------------------------------------------------------------------------------------------

function isNonNegativeNumber(value) {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/**
 * Merge a (possibly partial or malformed) policy from the server over `base`.
 * Missing or invalid fields keep the base value, so a bad admin setting can never switch the
 * keeper off. `refreshEverySeconds` null/0 means "timed refresh off".
 */
export function normalizePolicy(policy, base = DEFAULT_POLICY) {
  const source = policy && typeof policy === 'object' ? policy : {};
  const pick = (key, valid) => (valid(source[key]) ? source[key] : base[key]);
  const positive = (v) => isNonNegativeNumber(v) && v > 0;

  let refreshEvery = base.refreshEverySeconds ?? null;
  if ('refreshEverySeconds' in source) {
    const v = source.refreshEverySeconds;
    if (v === null || v === 0) refreshEvery = null;
    else if (positive(v)) refreshEvery = v;
  }

  return {
    marginSeconds: pick('marginSeconds', isNonNegativeNumber),
    minInteractionAgeSeconds: pick('minInteractionAgeSeconds', isNonNegativeNumber),
    refreshEverySeconds: refreshEvery,
    checkIntervalSeconds: pick('checkIntervalSeconds', positive),
    maxBackoffSeconds: pick('maxBackoffSeconds', positive),
  };
}

/**
 * The timings actually used for a token that came with `lifetimeSeconds` of life.
 * Without `scaledByServer`, margin and minimum interaction age are capped at a third of the
 * lifetime, so that short test tokens (20-60 s) still get refreshed before they die instead of
 * being "always inside the margin" (which would refresh in a loop).
 * With `scaledByServer` (the policy came with this token, so the server already scaled it to
 * the token's whole life), they are applied as sent: scaling again by the life left at receipt
 * would shrink the margin of every shared token. Only a margin that would leave the token less
 * than a minute (or a third of its life, if shorter) before the next refresh is cut to that.
 * The check interval is capped at a sixth of the lifetime either way (a cadence: harmless).
 */
export function effectiveTimings(policy, lifetimeSeconds, { scaledByServer = false } = {}) {
  const p = normalizePolicy(policy);
  const life = typeof lifetimeSeconds === 'number' && !Number.isNaN(lifetimeSeconds)
    ? Math.max(0, lifetimeSeconds)
    : Infinity; // unknown lifetime: no scaling
  const marginSeconds = scaledByServer
    ? Math.min(p.marginSeconds, life - Math.min(MIN_RUN_BEFORE_REFRESH_SECONDS, life / 3))
    : Math.min(p.marginSeconds, life / 3);
  const minInteractionAgeSeconds = scaledByServer
    ? p.minInteractionAgeSeconds
    : Math.min(p.minInteractionAgeSeconds, life / 3);
  return {
    marginSeconds,
    minInteractionAgeSeconds,
    checkIntervalSeconds: Math.max(1, Math.min(p.checkIntervalSeconds, life / 6)),
    // Timed refresh is an admin choice in minutes; the 1 s floor only guards against a
    // malformed policy turning into a fetch loop.
    refreshEverySeconds: p.refreshEverySeconds ? Math.max(1, p.refreshEverySeconds) : null,
    maxBackoffSeconds: Math.max(BACKOFF_BASE_SECONDS, p.maxBackoffSeconds),
  };
}

/**
 * Delay before retry number `attempt` (0 = first retry), in seconds.
 * Capped exponential backoff with FULL jitter, so that many viewers failing at the same
 * moment (server restart, capacity resume) spread out instead of retrying in lockstep; but
 * never sooner than the server's Retry-After, which is an explicit request.
 */
export function backoffDelaySeconds(attempt, options = {}) {
  const {
    cap = DEFAULT_POLICY.maxBackoffSeconds,
    base = BACKOFF_BASE_SECONDS,
    retryAfterSeconds,
    random = Math.random,
  } = options;
  const n = Math.max(0, Math.floor(Number(attempt) || 0));
  const ceiling = Math.min(cap, base * 2 ** Math.min(n, 52));
  let r = Number(random());
  if (!(r >= 0)) r = 0; // NaN or negative from a bad random source
  if (r > 1) r = 1;
  const jittered = r * ceiling;
  const floor = isNonNegativeNumber(retryAfterSeconds) ? retryAfterSeconds : 0;
  return Math.max(jittered, floor);
}

/**
 * What a failed fetch means for the keeper.
 *  - signedOut: the session is gone (401, or a redirect/HTML page instead of JSON). Paused
 *    until a session exists again.
 *  - csrf: a 403 for the CSRF token only (the session changed in another tab): fetch a fresh
 *    CSRF token and retry once.
 *  - revoked: the server refuses this person's access (403). Retrying cannot help.
 *  - removed: the report is gone from the catalogue (404). Retrying cannot help.
 *  - capacityOff: the Power BI capacity is paused; it may come back, so keep retrying.
 *  - capacityStarting: the capacity is paused and is being started for this person; retry
 *    every few seconds until it runs.
 *  - transient: anything else (network, 5xx, 429, timeouts, malformed answers).
 * `detail` is the server's text (for the capacity screens: what to tell the person).
 */
export function classifyFailure(error) {
  const status = Number(error?.status) || 0;
  const code = typeof error?.code === 'string' ? error.code : undefined;
  const retryAfterSeconds = isNonNegativeNumber(error?.retryAfterSeconds)
    ? error.retryAfterSeconds
    : undefined;
  let kind = 'transient';
  if (code === CAPACITY_NOT_ACTIVE_CODE) kind = 'capacityOff';
  else if (code === CAPACITY_STARTING_CODE) kind = 'capacityStarting';
  else if (code === SIGNED_OUT_CODE || code === 'Unauthorized' || status === 401) kind = 'signedOut';
  // The CSRF check and a real refusal are both 403: only the server's code tells them apart.
  else if (code === CSRF_CODE) kind = 'csrf';
  else if (code === 'Forbidden' || status === 403) kind = 'revoked';
  else if (status === 404) kind = 'removed';
  const detail = typeof error?.message === 'string' && error.message ? error.message : undefined;
  return { kind, status, code, retryAfterSeconds, detail };
}

/**
 * The wait, in seconds, a `Retry-After` asks for, as the keeper obeys it; undefined when there
 * is none (absent or malformed). `header` is the header's text (delta-seconds or an HTTP-date),
 * or a number of seconds already read. An HTTP-date is measured against `dateHeader`, the same
 * response's `Date`, because both come from the server's clock while the client's (`nowWall`,
 * used only without a Date header) can be hours off. The result is capped by `ceilingSeconds`
 * and, while the token is alive (`remainingMs` > 0), by its life left minus 10 s.
 */
export function retryAfterSeconds({
  header,
  dateHeader,
  nowWall,
  remainingMs,
  ceilingSeconds = RETRY_AFTER_CEILING_SECONDS,
} = {}) {
  let seconds;
  if (typeof header === 'number') {
    if (isNonNegativeNumber(header)) seconds = header;
  } else if (typeof header === 'string' && header.trim()) {
    const text = header.trim();
    const delta = Number(text);
    if (Number.isFinite(delta)) {
      if (delta >= 0) seconds = delta;
    } else {
      const at = Date.parse(text);
      const serverNow = typeof dateHeader === 'string' ? Date.parse(dateHeader) : NaN;
      const reference = Number.isFinite(serverNow) ? serverNow : Number(nowWall);
      if (Number.isFinite(at) && Number.isFinite(reference)) seconds = Math.max(0, (at - reference) / 1000);
    }
  }
  if (seconds === undefined) return undefined;
  let limit = isNonNegativeNumber(ceilingSeconds) ? ceilingSeconds : RETRY_AFTER_CEILING_SECONDS;
  if (typeof remainingMs === 'number' && remainingMs > 0) {
    limit = Math.min(limit, Math.max(0, remainingMs / 1000 - RETRY_AFTER_SAFETY_SECONDS));
  }
  return Math.min(seconds, limit);
}

/** Validate the server's token answer; a malformed one is a failure like any other. */
export function parseTokenResponse(response) {
  const ok = response
    && typeof response.token === 'string' && response.token.length > 0
    && typeof response.expiresIn === 'number' && Number.isFinite(response.expiresIn);
  if (!ok) throw keeperError('BadTokenResponse', 'token response lacks token or expiresIn');
  // A token that is dead on arrival must not be installed: it would only trigger a reload loop.
  if (response.expiresIn <= 0) throw keeperError('TokenAlreadyExpired', 'server sent an expired token');
  return {
    token: response.token,
    tokenId: typeof response.tokenId === 'string' ? response.tokenId : null,
    expiresIn: response.expiresIn,
    policy: response.policy && typeof response.policy === 'object' ? response.policy : null,
    serverDate: serverDateOf(response),
  };
}

/** The server's clock when it answered (epoch ms, from the answer's Date header), or null. */
function serverDateOf(answer) {
  const value = answer?.serverDate;
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function keeperError(code, message) {
  const error = new Error(message);
  error.status = 0;
  error.code = code;
  return error;
}

function safeCall(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    fn(...args);
  } catch (error) {
    // A bug in a viewer callback must not stop the keeper from keeping the token alive.
    if (typeof console !== 'undefined') console.error('token-keeper: callback failed', error);
  }
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure functions of a snapshot of the keeper; exported so they are tested directly)
//
// The keeper's closure owns the state, the clock and the timers. At each decision point it
// builds one plain snapshot and asks these; each reads only the fields it names:
//   now              keeper time, ms (monotonic clock plus missed sleep)
//   state            one of STATES
//   issuedAt         keeper time the current token arrived (or the keeper was created)
//   lifetimeSeconds  the `expiresIn` the current token came with
//   fromRefresh      the current token came from a refresh, not from the page
//   expiresAt        issuedAt + lifetimeSeconds * 1000
//   remainingMs      life left on our clock; 0 once the iframe said TokenExpired
//   timings          effectiveTimings(policy, lifetimeSeconds)
//   inFlight         an attempt is running
//   failures         consecutive failed attempts
//   retryAt          keeper time of the next retry, or null
//   retryAfterUntil  keeper time before which the server asked us not to call (0 = none)
//   cycleReason      reason of the refresh being retried, or null
//   deathReported    `expired` telemetry was sent for the current token
//   personAsked      a person's `interaction` request waits for the next attempt
// plus, for the decision that takes it, the `trigger` of an evaluation or the reason
// `requested` of refreshNow.
// ---------------------------------------------------------------------------------------------

/**
 * Sleep that the monotonic clock did not count between two readings, in ms (0 when none).
 * Only a gap in one direction counts: it can make the token older, never younger. So a
 * wall clock that is hours off, or is stepped back, changes nothing; one stepped forward
 * while the page is open costs an early refresh (plus a reload if the step is longer than
 * the remaining life), never a late one. `wall` or `lastWall` null: no wall clock.
 */
export function missedSleepMs({ mono, wall, lastMono, lastWall }) {
  if (lastMono === null || lastWall === null || wall === null) return 0;
  const gap = (wall - lastWall) - (mono - lastMono);
  return gap > SLEEP_GAP_TOLERANCE_MS ? gap : 0;
}

/** A state whose screen says the capacity is not running (off, or being started). */
export function isCapacityScreen(state) {
  return state === STATES.CAPACITY_OFF || state === STATES.CAPACITY_STARTING;
}

/** The report cannot show data: its token died, or the capacity is off or starting. */
export function isReportDown({ remainingMs, state }) {
  return remainingMs <= 0 || state === STATES.EXPIRED || isCapacityScreen(state);
}

/**
 * Which refresh (if any) is due now; null when nothing is.
 * trigger: 'timer' | 'wake' | 'interaction' | 'start' | 'policy'
 */
export function dueReason({ now, issuedAt, remainingMs, timings, trigger }) {
  const age = now - issuedAt;
  const marginDue = remainingMs <= timings.marginSeconds * 1000 + TIMER_SLACK_MS;
  const timedDue = Boolean(timings.refreshEverySeconds)
    && age >= timings.refreshEverySeconds * 1000 - TIMER_SLACK_MS;
  // Interactions only refresh a token that is old enough: a busy user must not mint a
  // token per click (every refresh is a throttled Power BI call).
  const interactionDue = trigger === 'interaction' && age >= timings.minInteractionAgeSeconds * 1000;
  if (!marginDue && !timedDue && !interactionDue) return null;
  if (trigger === 'wake') return 'wake';
  if (remainingMs <= 0) return 'recovery';
  if (interactionDue) return 'interaction';
  return marginDue ? 'margin' : 'timed';
}

/**
 * Reason to send with a retry: 'interaction' when a person asked meanwhile (see
 * heldRefreshNow), else 'recovery' once the report is down, else the original.
 */
export function retryReason(snapshot) {
  if (snapshot.personAsked) return 'interaction';
  return isReportDown(snapshot) ? 'recovery' : (snapshot.cycleReason ?? 'margin');
}

/**
 * Why to start an attempt now, for `trigger` (dueReason's, or 'online'); null for none.
 * One attempt at a time: every trigger during an attempt shares it.
 */
export function attemptReason(snapshot) {
  const { now, trigger, inFlight, failures, retryAt, retryAfterUntil } = snapshot;
  if (inFlight) return null;
  if (failures > 0) {
    // Backing off: only the retry time (or the network coming back) may call again, so
    // that a burst of clicks or focus events cannot defeat the backoff.
    const retryDue = retryAt !== null && now >= retryAt - TIMER_SLACK_MS;
    const networkBack = trigger === 'online' && now >= retryAfterUntil;
    return retryDue || networkBack ? retryReason(snapshot) : null;
  }
  return dueReason({ ...snapshot, trigger: trigger === 'online' ? 'wake' : trigger });
}

/**
 * The attempt `refreshNow(requested)` starts: {reason}, or null while the server's
 * Retry-After runs (an explicit request that a button or a push must not override).
 * On a down report it is a `recovery`, except a person's own `interaction` (a click on the
 * capacity screen's button): the server may start a paused capacity for a person, never for a
 * report kept alive, so that reason is kept.
 */
export function refreshNowAttempt(snapshot) {
  const { now, failures, retryAfterUntil, requested } = snapshot;
  if (failures > 0 && now < retryAfterUntil) return null;
  const recovery = failures > 0 && isReportDown(snapshot) && requested !== 'interaction';
  return { reason: recovery ? 'recovery' : requested };
}

/**
 * A `refreshNow(requested)` that could not start now (an attempt in flight, or the server's
 * Retry-After): what to remember. A person's `interaction` is kept for the next attempt, which
 * comes as soon as Retry-After allows: {retryAt}. Anything else: null (the retries go on).
 */
export function heldRefreshNow({ requested, inFlight, retryAt, retryAfterUntil }) {
  if (requested !== 'interaction') return null;
  if (inFlight) return { retryAt };
  return { retryAt: retryAt === null ? retryAfterUntil : Math.min(retryAt, retryAfterUntil) };
}

/**
 * When the keeper's one timer fires: {dueAt (keeper time), delayMs (for setTimeout)}.
 * The earliest moment something can be due: the periodic check, the margin, the timed
 * refresh, the expiry (to show the overlay on time) or the next retry.
 */
export function nextTimer({ now, issuedAt, expiresAt, timings, inFlight, failures, retryAt, deathReported }) {
  const candidates = [now + timings.checkIntervalSeconds * 1000];
  const idle = !inFlight && failures === 0;
  const marginAt = expiresAt - timings.marginSeconds * 1000;
  if (idle && marginAt > now) candidates.push(marginAt);
  if (idle && timings.refreshEverySeconds) {
    const timedAt = issuedAt + timings.refreshEverySeconds * 1000;
    if (timedAt > now) candidates.push(timedAt);
  }
  if (!deathReported && expiresAt > now) candidates.push(expiresAt);
  if (!inFlight && failures > 0 && retryAt !== null) candidates.push(retryAt);
  const dueAt = Math.min(...candidates);
  return { dueAt, delayMs: Math.min(MAX_TIMER_DELAY_MS, Math.max(0, dueAt - now)) };
}

/**
 * The attempt to start when the push channel (re)connects, for example after the portal
 * restarted: {reason}, or null. A token that is dead, inside its margin or already being
 * retried is asked for at once (a restart recovers in seconds instead of after the backoff);
 * the server's own Retry-After is still obeyed, and a healthy token is left alone.
 */
export function reconnectAttempt(snapshot) {
  const { now, inFlight, failures, retryAfterUntil, remainingMs, timings } = snapshot;
  if (inFlight) return null;
  if (failures > 0) return now >= retryAfterUntil ? { reason: retryReason(snapshot) } : null;
  if (isReportDown(snapshot)) return { reason: 'recovery' };
  return remainingMs <= timings.marginSeconds * 1000 + TIMER_SLACK_MS ? { reason: 'margin' } : null;
}

/**
 * Sleep the server's clock confirms, in ms (0 for none), after our wall clock jumped ahead of
 * our monotonic clock: a sleep moves the server's clock too, a step of the client's clock
 * does not. `reference` pairs a server time (epoch ms, a Date header) with the keeper time it
 * was read at; `serverNow` is the server's time read now, at keeper time `now`.
 */
export function confirmedSleepMs({ reference, serverNow, now }) {
  if (!reference || !Number.isFinite(serverNow)) return 0;
  const gap = (serverNow - reference.server) - (now - reference.at);
  return gap > SLEEP_GAP_TOLERANCE_MS + SERVER_DATE_RESOLUTION_MS ? gap : 0;
}

/**
 * A `setAccessToken` call numbered `sequence` settled after a newer one (numbered
 * `newestSettledSequence`) had already settled. powerbi-client writes the token into the
 * report's config when a call resolves, however late, so the report may now hold the older
 * token: the newer one has to be set again.
 */
export function isOutdatedSetAccessToken({ sequence, newestSettledSequence }) {
  return sequence < newestSettledSequence;
}

/** What a timer firing at `now` for `dueAt` means: 'wake' when it is very late, else 'timer'. */
export function timerTrigger({ now, dueAt, timings }) {
  const lateBy = now - dueAt;
  return lateBy > LATE_TIMER_FACTOR * timings.checkIntervalSeconds * 1000 ? 'wake' : 'timer';
}

/**
 * When to retry after failure number `failures` (1 = the first): {delayMs, retryAt,
 * retryAfterUntil}. `random` is called exactly once. A failure of `kind` 'capacityStarting'
 * caps the backoff at 5 s (a person is waiting for the capacity); Retry-After still wins, once
 * capped by retryAfterSeconds (`remainingMs`: the token's life left, when known).
 */
export function retryPlan({ now, failures, retryAfterSeconds: askedSeconds, timings, random, kind, remainingMs }) {
  const retryAfter = retryAfterSeconds({ header: askedSeconds, remainingMs });
  let cap = kind === 'capacityStarting'
    ? Math.min(timings.maxBackoffSeconds, STARTING_MAX_BACKOFF_SECONDS)
    : timings.maxBackoffSeconds;
  // While the token has more than a few seconds left, the next retry comes before it dies
  // (a token installed in time needs no reload). Closer to death the backoff is left alone,
  // so a persistent failure cannot turn the last seconds into a burst of calls.
  const aliveSeconds = typeof remainingMs === 'number' ? remainingMs / 1000 : 0;
  if (aliveSeconds > BACKOFF_BEFORE_DEATH_SECONDS) {
    cap = Math.min(cap, aliveSeconds - BACKOFF_BEFORE_DEATH_SECONDS);
  }
  const delaySeconds = backoffDelaySeconds(failures - 1, {
    cap,
    retryAfterSeconds: retryAfter,
    random,
  });
  const delayMs = Math.max(MIN_RETRY_DELAY_MS, delaySeconds * 1000);
  return {
    delayMs,
    retryAt: now + delayMs,
    retryAfterUntil: retryAfter ? now + retryAfter * 1000 : 0,
  };
}

/** The state a failure of `kind` (classifyFailure) leads to; `state` itself for no change. */
export function stateAfterFailure({ kind, state }) {
  if (kind === 'revoked') return STATES.REVOKED;
  if (kind === 'capacityOff') return STATES.CAPACITY_OFF;
  if (kind === 'capacityStarting') return STATES.CAPACITY_STARTING;
  // Token still valid: the report keeps working while we retry in the background. Once it
  // is down, the overlay already says why and stays until a token comes back.
  return state === STATES.EXPIRED || isCapacityScreen(state) ? state : STATES.RETRYING;
}

/**
 * Whether an interaction at `now` is reported as telemetry (the activity ledger's
 * "interaction"): the first one, then at most one a minute. `lastReportedAt` is the keeper time
 * of the last one reported, or null.
 */
export function interactionReportDue({ now, lastReportedAt }) {
  return lastReportedAt === null || now - lastReportedAt >= INTERACTION_REPORT_INTERVAL_MS;
}

/**
 * What the viewer does when the first token request fails (no report is embedded yet):
 * {screen, final, delaySeconds}. `screen` is the overlay to show ('capacityStarting',
 * 'capacityOff', 'signedOut', 'removed' or 'failed'); `final` means asking again cannot help
 * (signed out, access refused, report removed; a CSRF refusal is not final: the viewer renews
 * its CSRF token and asks again);
 * `delaySeconds` is the wait before the next attempt (number `attempt`, 0 = the first retry).
 * While the capacity starts the wait is at most 5 s unless Retry-After asks for more;
 * otherwise capped backoff with jitter up to 30 s, plus a second.
 */
/** How long a signed-out viewer waits before asking /api/session again (poll `attempt`). */
export function sessionPollDelaySeconds(attempt, random = Math.random) {
  return Math.max(1, backoffDelaySeconds(attempt, {
    base: SESSION_POLL_BASE_SECONDS,
    cap: SESSION_POLL_MAX_SECONDS,
    random,
  }));
}

export function firstTokenPlan({ attempt, error, random = Math.random }) {
  const failure = classifyFailure(error);
  const final = ['signedOut', 'revoked', 'removed'].includes(failure.kind);
  let screen = 'failed';
  if (failure.kind === 'capacityStarting') screen = STATES.CAPACITY_STARTING;
  else if (failure.kind === 'capacityOff') screen = STATES.CAPACITY_OFF;
  else if (failure.kind === 'signedOut') screen = STATES.SIGNED_OUT;
  else if (failure.kind === 'removed') screen = STATES.REMOVED;
  const starting = failure.kind === 'capacityStarting';
  const delay = backoffDelaySeconds(attempt, {
    cap: starting ? STARTING_MAX_BACKOFF_SECONDS : FIRST_TOKEN_MAX_BACKOFF_SECONDS,
    retryAfterSeconds: retryAfterSeconds({ header: failure.retryAfterSeconds }),
    random,
  });
  return {
    screen,
    final,
    delaySeconds: starting ? Math.max(FIRST_TOKEN_FLOOR_SECONDS, delay) : delay + FIRST_TOKEN_FLOOR_SECONDS,
  };
}

/**
 * A TokenExpired error this soon after we installed a new token most likely comes from a
 * request made with the previous token; reacting would reload the report twice.
 */
export function isStaleTokenExpiredError({ now, issuedAt, lifetimeSeconds, fromRefresh }) {
  const graceMs = Math.min(ERROR_GRACE_MAX_SECONDS, lifetimeSeconds / 6) * 1000;
  return Boolean(fromRefresh) && now - issuedAt < graceMs;
}

// ---------------------------------------------------------------------------------------------
// Access token provider ("embed for your organization")
// ---------------------------------------------------------------------------------------------

/**
 * Wrap `fetchAccessToken` for powerbi-client's `eventHooks.accessTokenProvider`.
 * The returned function resolves to a non-empty token string or to null; it never throws or
 * rejects (a throwing hook makes powerbi-client answer the iframe with an error, and a hook
 * that never settles leaves the iframe waiting), so failures and hangs both become null.
 */
export function createAccessTokenProvider(fetchAccessToken, options = {}) {
  const {
    timeoutMs = DEFAULT_STEP_TIMEOUT_MS,
    setTimeout: setTimer = globalThis.setTimeout,
    clearTimeout: clearTimer = globalThis.clearTimeout,
    onError,
  } = options;

  return async function accessTokenProvider(...args) {
    let timer = null;
    try {
      const request = new Promise((resolve) => resolve(fetchAccessToken(...args)));
      request.catch(() => {}); // a rejection after the timeout must not be "unhandled"
      const timeout = new Promise((resolve) => {
        if (timeoutMs > 0 && typeof setTimer === 'function') {
          timer = setTimer(() => resolve(null), timeoutMs);
        }
      });
      const result = await Promise.race([request, timeout]);
      return typeof result === 'string' && result.length > 0 ? result : null;
    } catch (error) {
      safeCall(onError, error);
      return null;
    } finally {
      if (timer !== null && typeof clearTimer === 'function') clearTimer(timer);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// The keeper
// ---------------------------------------------------------------------------------------------

function resolveEnvironment(options) {
  const g = globalThis;
  const documentTarget = 'documentTarget' in options ? options.documentTarget : g.document;
  const windowTarget = 'windowTarget' in options ? options.windowTarget : g.window;
  return {
    now: options.now ?? (() => g.performance.now()),
    // Wall clock: only its *increments* are compared with the monotonic clock's, to notice a
    // sleep the monotonic clock did not count. Its absolute value is never used. null = off.
    wallNow: 'wallNow' in options ? options.wallNow : () => Date.now(),
    setTimeout: options.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms)),
    clearTimeout: options.clearTimeout ?? ((id) => g.clearTimeout(id)),
    random: options.random ?? Math.random,
    documentTarget: documentTarget ?? null,
    windowTarget: windowTarget ?? null,
    isHidden: options.isHidden
      ?? (() => Boolean(documentTarget) && documentTarget.visibilityState === 'hidden'),
    stepTimeoutMs: options.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS,
    // The server's time (epoch ms, e.g. a cheap request's Date header), or null: asked before
    // a jump of the wall clock is taken for a sleep. Without it the jump is believed.
    serverNow: typeof options.serverNow === 'function' ? options.serverNow : null,
  };
}

function validateOptions(options) {
  const report = options.report;
  for (const method of ['setAccessToken', 'reload', 'on', 'off']) {
    if (!report || typeof report[method] !== 'function') {
      throw new TypeError(`createTokenKeeper: report.${method} must be a function`);
    }
  }
  if (typeof options.fetchToken !== 'function') {
    throw new TypeError('createTokenKeeper: fetchToken must be a function');
  }
  if (options.checkSession !== undefined && typeof options.checkSession !== 'function') {
    throw new TypeError('createTokenKeeper: checkSession must be a function');
  }
}

/**
 * Create a keeper for one embedded report. Call `start()` once the report is embedded.
 * See docs/token-keeper.md for the options.
 */
export function createTokenKeeper(options = {}) {
  validateOptions(options);
  const env = resolveEnvironment(options);
  const { report, fetchToken, onState, onTelemetry } = options;
  // () => Promise<{signedIn, csrfToken}>: whether a session exists (and, as a side effect in
  // the viewer, a fresh CSRF token in the page). Optional.
  const checkSession = typeof options.checkSession === 'function' ? options.checkSession : null;
  const initial = options.initial ?? {};

  // --- clock ------------------------------------------------------------------------------
  // "Keeper time" = monotonic time + sleep the monotonic clock missed. Lifetimes are counted
  // only on this clock, so a client wall clock that is hours off changes nothing.
  let sleptMs = 0;
  let lastMono = null;
  let lastWall = null;
  let sleepNoticed = false;
  // Wall-clock jumps waiting for the server's word (see confirmedSleepMs).
  let serverReference = null; // {server: epoch ms, at: keeper time}
  let unconfirmedGapMs = 0;
  let sleepCheck = null;
  let sleepCheckAgain = false;

  function readWall() {
    if (typeof env.wallNow !== 'function') return null;
    try {
      const w = Number(env.wallNow());
      return Number.isFinite(w) ? w : null;
    } catch {
      return null;
    }
  }

  function clock() {
    const mono = env.now();
    const wall = readWall();
    const missed = missedSleepMs({ mono, wall, lastMono, lastWall });
    lastMono = mono;
    lastWall = wall;
    if (missed > 0) {
      // A jump of the wall clock alone may be a sleep or somebody changing the clock. When
      // the server can be asked, it decides (before any expiry screen or reload).
      if (env.serverNow && serverReference !== null) {
        unconfirmedGapMs += missed;
        askServerAboutSleep();
      } else {
        sleptMs += missed;
        sleepNoticed = true;
      }
    }
    return mono + sleptMs;
  }

  function askServerAboutSleep() {
    if (sleepCheck !== null) {
      sleepCheckAgain = true;
      return;
    }
    sleepCheck = (async () => {
      let serverNow = NaN;
      try {
        serverNow = Number(await env.serverNow());
      } catch {
        serverNow = NaN;
      }
      const gap = unconfirmedGapMs;
      unconfirmedGapMs = 0;
      const t = clock();
      if (Number.isFinite(serverNow)) {
        const slept = confirmedSleepMs({ reference: serverReference, serverNow, now: t });
        if (slept > 0) {
          sleptMs += slept;
          sleepNoticed = true;
          serverReference = { server: serverNow, at: t + slept };
        }
        // else: the client's clock was stepped; the token's life is counted as before.
      } else {
        // The server cannot be asked (offline): believe the jump, as the safe side.
        sleptMs += gap;
        sleepNoticed = gap > 0;
      }
      if (sleepNoticed && running) evaluate('wake');
    })().finally(() => {
      sleepCheck = null;
      if (sleepCheckAgain) {
        sleepCheckAgain = false;
        askServerAboutSleep();
      }
    });
  }

  // --- token and policy -------------------------------------------------------------------
  let policy = normalizePolicy(initial.policy ?? options.policy);
  let token = {
    value: initial.token ?? null,
    id: initial.tokenId ?? null,
    lifetimeSeconds: isNonNegativeNumber(initial.expiresIn) ? initial.expiresIn : 0,
    issuedAt: clock(), // life counts from creation: earlier than start(), so conservative
    fromRefresh: false,
    // The token API scales the policy it sends with a token to that token's whole life.
    policyFromServer: Boolean(initial.policy && typeof initial.policy === 'object'),
  };
  if (serverDateOf(initial) !== null) serverReference = { server: serverDateOf(initial), at: token.issuedAt };
  let diedByError = false; // the iframe said TokenExpired before our clock did
  let deathReported = false; // `expired` telemetry sent for the current token
  let downSince = null; // keeper time the report stopped working (expiry or capacity off)

  const timings = () => effectiveTimings(policy, token.lifetimeSeconds, { scaledByServer: token.policyFromServer });
  const expiresAt = () => token.issuedAt + token.lifetimeSeconds * 1000;
  const remainingMs = (t) => (diedByError ? 0 : expiresAt() - t);
  const isDead = (t) => remainingMs(t) <= 0;

  // --- lifecycle state --------------------------------------------------------------------
  let state = STATES.IDLE;
  let running = false;
  let finished = false; // stopped or revoked: for good
  let generation = 0; // bumped by stop(); late results of an older generation are dropped
  let inFlight = null;
  let failures = 0; // consecutive failed attempts
  let retryAt = null; // keeper time of the next retry while failures > 0
  let retryAfterUntil = 0; // keeper time before which the server asked us not to call
  let cycleReason = null; // reason of the refresh that is being retried
  let personAsked = false; // a person's request waits for the next attempt (heldRefreshNow)
  let timer = null;
  let timerDueAt = 0;
  const stepTimers = new Set();
  let abortController = null;
  // setAccessToken calls are numbered, because one the keeper gave up on (SetTokenTimeout)
  // can still resolve later and overwrite a newer token (see isOutdatedSetAccessToken).
  let setAccessTokenCalls = 0;
  let newestSettledSet = { sequence: 0, value: null };
  // Signed out: the timer of the next "is there a session again?" question, and how many.
  let sessionTimer = null;
  let sessionPolls = 0;
  let sessionQuestion = null; // the checkSession call in flight
  let csrfRenewed = false; // a CSRF refusal was answered with a fresh CSRF token already

  const isDown = (t) => isReportDown({ remainingMs: remainingMs(t), state });

  /** The plain facts the decisions read (see "Decisions" above). */
  function decisionInputs(t) {
    return {
      now: t,
      state,
      issuedAt: token.issuedAt,
      lifetimeSeconds: token.lifetimeSeconds,
      fromRefresh: token.fromRefresh,
      expiresAt: expiresAt(),
      remainingMs: remainingMs(t),
      timings: timings(),
      inFlight: inFlight !== null,
      failures,
      retryAt,
      retryAfterUntil,
      cycleReason,
      deathReported,
      personAsked,
    };
  }

  function setState(next, info = {}) {
    if (next === state) return;
    state = next;
    safeCall(onState, next, info);
  }

  function emit(event) {
    safeCall(onTelemetry, { tokenId: token.id, ...event });
  }

  /** Report (once per token) that the token is dead, and show the expiry overlay. */
  function noticeDeath(t, how) {
    if (!isDead(t) || deathReported) return;
    deathReported = true;
    const diedAt = diedByError ? t : Math.min(t, expiresAt());
    downSince = downSince === null ? diedAt : Math.min(downSince, diedAt);
    emit({ type: 'expired', reason: how, overdueMs: Math.max(0, Math.round(t - diedAt)) });
    // "capacity is off" (or "starting") explains more than "token expired"; keep that screen.
    if (!isCapacityScreen(state) && ![STATES.REVOKED, STATES.SIGNED_OUT, STATES.REMOVED].includes(state)) {
      setState(STATES.EXPIRED, { code: TOKEN_EXPIRED_CODE, reason: how });
    }
  }

  // --- timers -----------------------------------------------------------------------------
  function clearMainTimer() {
    if (timer !== null) env.clearTimeout(timer);
    timer = null;
  }

  /** One timer for everything (see nextTimer). */
  function schedule(t = clock()) {
    clearMainTimer();
    // Signed out, the token API would only answer 401: the session timer asks instead.
    if (!running || state === STATES.SIGNED_OUT) return;
    const { dueAt, delayMs } = nextTimer(decisionInputs(t));
    timerDueAt = dueAt;
    timer = env.setTimeout(onTimer, delayMs);
  }

  function onTimer() {
    timer = null;
    if (!running) return;
    const t = clock();
    evaluate(timerTrigger({ now: t, dueAt: timerDueAt, timings: timings() }));
  }

  // --- deciding -----------------------------------------------------------------------------
  /**
   * The single decision point: every timer, page event and report event ends up here.
   * trigger: 'timer' | 'wake' | 'online' | 'interaction' | 'start' | 'policy'
   */
  function evaluate(trigger) {
    if (!running) return;
    const t = clock();
    if (sleepNoticed) {
      sleepNoticed = false;
      trigger = trigger === 'online' ? 'online' : 'wake';
    }
    if (state === STATES.SIGNED_OUT) {
      // Coming back to the tab (or the network) is a good moment to look for a session.
      if (trigger === 'wake' || trigger === 'online') askForSession();
      return;
    }
    noticeDeath(t, trigger === 'wake' || trigger === 'online' ? 'wake' : 'clock');
    const reason = attemptReason({ ...decisionInputs(t), trigger });
    if (reason) {
      // A first attempt opens a refresh cycle; its retries keep the cycle's reason.
      if (failures === 0) cycleReason = reason;
      startAttempt(reason);
    }
    schedule(t);
  }

  // --- refreshing ---------------------------------------------------------------------------
  /** report.setAccessToken, numbered; a synchronous throw propagates to the caller. */
  function setReportToken(value) {
    setAccessTokenCalls += 1;
    const sequence = setAccessTokenCalls;
    const call = Promise.resolve(report.setAccessToken(value));
    call.then(() => onSetAccessTokenResolved(sequence, value), () => {});
    return call;
  }

  function onSetAccessTokenResolved(sequence, value) {
    if (!running) return;
    if (!isOutdatedSetAccessToken({ sequence, newestSettledSequence: newestSettledSet.sequence })) {
      newestSettledSet = { sequence, value };
      return;
    }
    // A late, older call just wrote its token over the newer one: set the newer one again.
    // This call is numbered too, so a late one of its own is corrected the same way.
    try {
      setReportToken(newestSettledSet.value).catch(() => {});
    } catch (error) {
      if (typeof console !== 'undefined') console.error('token-keeper: setAccessToken failed', error);
    }
  }

  function withTimeout(promise, code) {
    if (!(env.stepTimeoutMs > 0)) return promise;
    let id = null;
    const timeout = new Promise((_, reject) => {
      id = env.setTimeout(() => {
        stepTimers.delete(id);
        reject(keeperError(code, `${code} after ${env.stepTimeoutMs} ms`));
      }, env.stepTimeoutMs);
      stepTimers.add(id);
    });
    return Promise.race([promise, timeout]).finally(() => {
      stepTimers.delete(id);
      env.clearTimeout(id);
    });
  }

  function callFetch(reason) {
    abortController = typeof AbortController === 'function' ? new AbortController() : null;
    const signal = abortController ? abortController.signal : undefined;
    // new Promise(...) turns a synchronous throw of fetchToken into a rejection.
    return new Promise((resolve) => resolve(fetchToken(reason, { signal })));
  }

  function startAttempt(reason) {
    retryAt = null;
    personAsked = false;
    if (state === STATES.LIVE) setState(STATES.REFRESHING, { reason });
    const attempt = runAttempt(reason).finally(() => {
      if (inFlight === attempt) inFlight = null;
      if (running) schedule();
    });
    inFlight = attempt;
    return attempt;
  }

  /** One fetch-and-install attempt. Resolves true when a new token is in the report. */
  async function runAttempt(reason) {
    const gen = generation;
    try {
      const fresh = parseTokenResponse(await withTimeout(callFetch(reason), 'FetchTimeout'));
      if (gen !== generation) return false;
      const arrivedAt = clock();
      noticeDeath(arrivedAt, 'clock');
      await withTimeout(setReportToken(fresh.token), 'SetTokenTimeout');
      if (gen !== generation) return false;
      // Before expiry setAccessToken is enough and keeps the user's page, filters and
      // selections. After expiry (or while the capacity was off) the visuals have already
      // failed and only reload() brings them back. Decided after setAccessToken so a
      // TokenExpired error that arrived meanwhile is taken into account.
      const reload = isDown(clock());
      if (reload) await withTimeout(Promise.resolve(report.reload()), 'ReloadTimeout');
      if (gen !== generation) return false;
      adopt(fresh, arrivedAt, reason, reload);
      return true;
    } catch (error) {
      if (gen !== generation) return false;
      abortController?.abort(); // e.g. after FetchTimeout: let the browser drop the request
      if (await renewedCsrf(error)) return runAttempt(reason);
      if (gen !== generation) return false;
      onFailure(error, reason);
      return false;
    } finally {
      abortController = null;
    }
  }

  /**
   * A CSRF refusal (the session changed in another tab) is answered once per refresh cycle
   * with a fresh CSRF token: true when the attempt should be made again at once. A session
   * that is gone instead leads to the signed-out state.
   */
  async function renewedCsrf(error) {
    if (classifyFailure(error).kind !== 'csrf' || csrfRenewed || checkSession === null) return false;
    csrfRenewed = true;
    const gen = generation;
    let answer;
    try {
      answer = await checkSession();
    } catch {
      return false; // the portal is unreachable: an ordinary retry with backoff
    }
    if (gen !== generation || !running) return false;
    if (answer?.signedIn === false) {
      enterSignedOut({ code: SIGNED_OUT_CODE });
      return false;
    }
    return answer?.signedIn === true;
  }

  function adopt(fresh, arrivedAt, reason, reloaded) {
    const from = state;
    const attempts = failures + 1;
    token = {
      value: fresh.token,
      id: fresh.tokenId,
      lifetimeSeconds: fresh.expiresIn,
      issuedAt: arrivedAt,
      fromRefresh: true,
      policyFromServer: fresh.policy !== null,
    };
    if (fresh.policy) policy = normalizePolicy(fresh.policy, policy);
    if (fresh.serverDate !== null) serverReference = { server: fresh.serverDate, at: arrivedAt };
    csrfRenewed = false;
    diedByError = false;
    deathReported = false;
    failures = 0;
    retryAt = null;
    retryAfterUntil = 0;
    cycleReason = null;
    emit({ type: 'refreshed', reason, expiresIn: fresh.expiresIn, attempts, reloaded });
    if (reloaded) {
      const t = clock();
      const since = downSince ?? arrivedAt;
      emit({
        type: 'recovered',
        reason,
        from: isCapacityScreen(from) ? from : STATES.EXPIRED,
        downtimeMs: Math.max(0, Math.round(t - since)),
      });
    }
    downSince = null;
    setState(STATES.LIVE, { reason });
  }

  function onFailure(error, reason) {
    const failure = classifyFailure(error);
    if (failure.kind === 'signedOut') {
      emit({ type: 'refreshFailed', reason, status: failure.status, code: failure.code, attempt: failures + 1 });
      if (state === STATES.SIGNED_OUT) scheduleSessionPoll();
      else enterSignedOut({ status: failure.status, code: failure.code });
      return;
    }
    failures += 1;
    const t = clock();
    if (failure.kind === 'revoked' || failure.kind === 'removed') {
      emit({ type: 'refreshFailed', reason, status: failure.status, code: failure.code, attempt: failures });
      // Access removed, or the report itself: a new token will never come. Stop for good so
      // the viewer can hide the report and say why.
      shutDown();
      const final = failure.kind === 'removed' ? STATES.REMOVED : STATES.REVOKED;
      setState(final, { status: failure.status, code: failure.code });
      return;
    }
    const plan = retryPlan({
      now: t,
      failures,
      retryAfterSeconds: failure.retryAfterSeconds,
      timings: timings(),
      random: env.random,
      kind: failure.kind,
      remainingMs: remainingMs(t),
    });
    const delayMs = plan.delayMs;
    retryAt = plan.retryAt;
    retryAfterUntil = plan.retryAfterUntil;
    emit({
      type: 'refreshFailed',
      reason,
      status: failure.status,
      code: failure.code,
      attempt: failures,
      retryInSeconds: delayMs / 1000,
    });
    noticeDeath(t, 'clock');
    const info = { status: failure.status, code: failure.code, retryInSeconds: delayMs / 1000 };
    const next = stateAfterFailure({ kind: failure.kind, state });
    if (isCapacityScreen(next)) {
      if (downSince === null) downSince = t;
      const code = next === STATES.CAPACITY_OFF ? CAPACITY_NOT_ACTIVE_CODE : CAPACITY_STARTING_CODE;
      setState(next, { ...info, code, detail: failure.detail });
    } else {
      setState(next, info); // no call to onState when the state stays
    }
  }

  // --- signed out ---------------------------------------------------------------------------
  function clearSessionTimer() {
    if (sessionTimer !== null) env.clearTimeout(sessionTimer);
    sessionTimer = null;
  }

  /** The session is gone: stop asking for tokens, look for a new session now and then. */
  function enterSignedOut(info) {
    if (!running) return;
    if (inFlight !== null) {
      generation += 1; // whatever the attempt in flight brings is no longer wanted
      abortController?.abort();
      inFlight = null;
    }
    failures = 0;
    retryAt = null;
    retryAfterUntil = 0;
    cycleReason = null;
    personAsked = false;
    clearMainTimer();
    setState(STATES.SIGNED_OUT, info);
    sessionPolls = 0;
    scheduleSessionPoll();
  }

  function scheduleSessionPoll() {
    clearSessionTimer();
    if (!running || state !== STATES.SIGNED_OUT) return;
    const seconds = sessionPollDelaySeconds(sessionPolls, env.random);
    sessionPolls += 1;
    sessionTimer = env.setTimeout(() => {
      sessionTimer = null;
      askForSession();
    }, seconds * 1000);
  }

  /** Is there a session (again)? Without checkSession, the token API itself is asked. */
  function askForSession({ onlyIfSignedOut = false } = {}) {
    if (!running || (onlyIfSignedOut && state !== STATES.SIGNED_OUT)) return Promise.resolve();
    if (checkSession === null) {
      if (state === STATES.SIGNED_OUT && inFlight === null) startAttempt('recovery');
      return Promise.resolve();
    }
    if (sessionQuestion !== null) return sessionQuestion;
    const gen = generation;
    sessionQuestion = (async () => {
      let answer;
      try {
        answer = await checkSession();
      } catch {
        answer = undefined; // the portal is unreachable: no news about the session
      }
      if (gen !== generation || !running) return;
      if (answer?.signedIn === true) {
        if (state === STATES.SIGNED_OUT) resumeAfterSignIn();
      } else if (answer?.signedIn === false) {
        if (state !== STATES.SIGNED_OUT) enterSignedOut({ code: SIGNED_OUT_CODE });
        else scheduleSessionPoll();
      } else if (state === STATES.SIGNED_OUT) {
        scheduleSessionPoll();
      }
    })().finally(() => {
      sessionQuestion = null;
    });
    return sessionQuestion;
  }

  /** A session exists again: fetch a token at once (reloading the report if it died). */
  function resumeAfterSignIn() {
    clearSessionTimer();
    const t = clock();
    const dead = isDead(t);
    setState(dead ? STATES.EXPIRED : STATES.LIVE, { reason: 'signed-in' });
    noticeDeath(t, 'clock');
    cycleReason = dead ? 'recovery' : 'wake';
    if (inFlight === null) startAttempt(cycleReason);
    schedule(t);
  }

  // --- page and report events ---------------------------------------------------------------
  let interactionReportedAt = null; // keeper time of the last `interaction` telemetry

  /** A person used the report: maybe refresh (past the minimum age), and tell the ledger. */
  function onInteraction(name) {
    if (!running) return;
    const t = clock();
    if (interactionReportDue({ now: t, lastReportedAt: interactionReportedAt })) {
      interactionReportedAt = t;
      emit({ type: 'interaction', reason: name });
    }
    evaluate('interaction');
  }
  const onWake = () => evaluate('wake');
  const onOnline = () => evaluate('online');
  const onVisibility = () => {
    if (!env.isHidden()) evaluate('wake');
  };
  const onReportError = (event) => {
    if (event?.detail?.message === 'TokenExpired') onTokenExpiredError();
  };

  /** The iframe says the token is dead: believe it, refresh at once, reload on success. */
  function onTokenExpiredError() {
    if (!running) return;
    const t = clock();
    if (isStaleTokenExpiredError(decisionInputs(t))) return;
    if (!isDead(t)) diedByError = true;
    noticeDeath(t, 'expired-error');
    if (inFlight === null && failures === 0) {
      cycleReason = 'expired-error';
      startAttempt('expired-error');
    }
    schedule(t);
  }

  const reportHandlers = [
    ...INTERACTION_EVENTS.map((name) => [name, () => onInteraction(name)]),
    ['error', onReportError],
  ];
  const documentHandlers = [['visibilitychange', onVisibility]];
  const windowHandlers = [['focus', onWake], ['pageshow', onWake], ['online', onOnline]];

  let subscribed = false;

  function subscribe() {
    subscribed = true;
    for (const [name, handler] of reportHandlers) {
      try {
        report.on(name, handler);
      } catch (error) {
        // Some embed types (e.g. dashboards) refuse report-only events; the timers still work.
        if (typeof console !== 'undefined') console.warn(`token-keeper: cannot listen to ${name}`, error);
      }
    }
    for (const [name, handler] of documentHandlers) env.documentTarget?.addEventListener?.(name, handler);
    for (const [name, handler] of windowHandlers) env.windowTarget?.addEventListener?.(name, handler);
  }

  function unsubscribe() {
    if (!subscribed) return;
    subscribed = false;
    for (const [name, handler] of reportHandlers) {
      try {
        report.off(name, handler);
      } catch {
        // the report may already be gone
      }
    }
    for (const [name, handler] of documentHandlers) env.documentTarget?.removeEventListener?.(name, handler);
    for (const [name, handler] of windowHandlers) env.windowTarget?.removeEventListener?.(name, handler);
  }

  /** Stop timers, listeners and any pending fetch; the keeper is finished afterwards. */
  function shutDown() {
    running = false;
    finished = true;
    generation += 1;
    clearMainTimer();
    clearSessionTimer();
    for (const id of stepTimers) env.clearTimeout(id);
    stepTimers.clear();
    if (abortController) abortController.abort();
    abortController = null;
    inFlight = null;
    retryAt = null;
    unsubscribe();
  }

  // --- public API -----------------------------------------------------------------------------
  const keeper = {
    /** Begin watching. Idempotent; a stopped or revoked keeper cannot be restarted. */
    start() {
      if (running || finished) return keeper;
      running = true;
      subscribe();
      const t = clock();
      if (isDead(t)) noticeDeath(t, 'clock');
      else setState(STATES.LIVE, { reason: 'start' });
      evaluate('start');
      return keeper;
    },

    /** Remove every listener and timer; ignore any answer still on its way. */
    stop() {
      if (finished) return;
      shutDown();
      setState(STATES.STOPPED);
    },

    /** Replace the policy (admin changed a setting); takes effect at once. */
    applyPolicy(next) {
      policy = normalizePolicy(next, policy);
      evaluate('policy'); // a timed refresh that is now overdue happens immediately
    },

    /**
     * Refresh now (e.g. a "refresh" button, or a push message saying access changed).
     * Shares a refresh already in flight. Resolves true when a new token was installed, false
     * otherwise (failure, Retry-After still running, keeper not started); never rejects.
     */
    refreshNow(reason = 'manual') {
      if (!running) return Promise.resolve(false);
      const t = clock();
      const held = () => {
        const keep = heldRefreshNow({ ...decisionInputs(t), requested: reason });
        if (keep === null) return;
        personAsked = true;
        retryAt = keep.retryAt;
        schedule(t);
      };
      if (inFlight) {
        held();
        return inFlight;
      }
      const planned = refreshNowAttempt({ ...decisionInputs(t), requested: reason });
      if (planned === null) {
        held();
        return Promise.resolve(false);
      }
      cycleReason = reason;
      const attempt = startAttempt(planned.reason);
      schedule(t);
      return attempt;
    },

    /**
     * Something says the session may have changed (another tab signed out or in, a push):
     * ask checkSession. Signed out, the keeper pauses; signed in again, it resumes. With
     * `onlyIfSignedOut`, a keeper that is not signed out does not ask (a sign-in elsewhere
     * changes nothing for it). Resolves when the answer has been acted on; never rejects.
     */
    checkSession({ onlyIfSignedOut = false } = {}) {
      return askForSession({ onlyIfSignedOut });
    },

    /**
     * The push channel (re)connected, e.g. after a portal restart: a token that is dead,
     * inside its margin or being retried is asked for at once (see reconnectAttempt).
     * Resolves like refreshNow.
     */
    refreshIfStale() {
      if (!running) return Promise.resolve(false);
      if (state === STATES.SIGNED_OUT) return askForSession().then(() => false);
      if (inFlight) return inFlight;
      const t = clock();
      const planned = reconnectAttempt(decisionInputs(t));
      if (planned === null) return Promise.resolve(false);
      if (failures === 0) cycleReason = planned.reason;
      const attempt = startAttempt(planned.reason);
      schedule(t);
      return attempt;
    },

    /** Debug/test view of the keeper; numbers in seconds. */
    snapshot() {
      const t = clock();
      const tm = timings();
      return {
        state,
        remainingSeconds: Math.max(0, remainingMs(t)) / 1000,
        ageSeconds: (t - token.issuedAt) / 1000,
        lifetimeSeconds: token.lifetimeSeconds,
        tokenId: token.id,
        effectiveMarginSeconds: tm.marginSeconds,
        effectiveTimings: tm,
        policy: { ...policy },
        inFlight: inFlight !== null,
        failures,
        nextRetryInSeconds: retryAt === null ? null : Math.max(0, retryAt - t) / 1000,
      };
    },

    /** The token currently installed in the report (for the viewer's own fetches, if any). */
    currentToken() {
      return token.value;
    },
  };
  return keeper;
}
