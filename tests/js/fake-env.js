// Deterministic stand-ins for the browser pieces the token keeper talks to: a monotonic clock
// with a separate wall clock, timers, a powerbi-client-like report, event targets and a
// scriptable token endpoint. Used by token-keeper.test.js.

import { createTokenKeeper } from '../../src/embedportal/web/static/js/token-keeper.js';

/** Let every pending promise callback run (the keeper chains several per refresh). */
export async function flush() {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Fake time. `mono` is what performance.now() would return, `wall` what Date.now() would.
 * They advance together, except in `sleep({ monotonicTicks: false })`, which reproduces
 * macOS/Linux browsers whose performance.now() stops while the machine sleeps.
 */
export class FakeClock {
  constructor({ mono = 5_000, wall = Date.UTC(2025, 0, 6, 8, 0, 0) } = {}) {
    this.mono = mono;
    this.wall = wall;
    // The server's clock: real time, which sleeps move and a change of the client's clock
    // does not (what a Date header says).
    this.server = wall;
    this.timers = new Map();
    this.nextId = 1;
    this.now = () => this.mono;
    this.wallNow = () => this.wall;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
      this.timers.set(id, { at: this.mono + delay, fn, id });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  pending() {
    return this.timers.size;
  }

  earliest(limit) {
    let best = null;
    for (const timer of this.timers.values()) {
      if (timer.at > limit) continue;
      if (!best || timer.at < best.at || (timer.at === best.at && timer.id < best.id)) best = timer;
    }
    return best;
  }

  /** Let `ms` of time pass normally, firing every timer on time. */
  async advance(ms) {
    const target = this.mono + ms;
    for (;;) {
      await flush();
      const timer = this.earliest(target);
      if (!timer) break;
      if (timer.at > this.mono) {
        this.wall += timer.at - this.mono;
        this.server += timer.at - this.mono;
        this.mono = timer.at;
      }
      this.timers.delete(timer.id);
      timer.fn();
    }
    if (target > this.mono) {
      this.wall += target - this.mono;
      this.server += target - this.mono;
      this.mono = target;
    }
    await flush();
  }

  async advanceSeconds(seconds) {
    await this.advance(seconds * 1000);
  }

  /**
   * The machine sleeps (or the tab is frozen) for `ms`: no timer runs. The wall clock always
   * moves; the monotonic clock moves only when `monotonicTicks` (Windows behaviour).
   * Timers that became overdue fire at the next advance(), late, as after a real wake-up.
   */
  sleep(ms, { monotonicTicks = true } = {}) {
    this.wall += ms;
    this.server += ms;
    if (monotonicTicks) this.mono += ms;
  }

  /** Somebody changes the computer's clock: only Date.now() moves. */
  stepWall(ms) {
    this.wall += ms;
  }
}

/** Minimal powerbi-client Report: records calls, lets tests emit events. */
export class FakeReport {
  constructor(clock) {
    this.clock = clock;
    this.handlers = new Map();
    this.calls = [];
    this.currentToken = null;
    this.setAccessTokenBehaviour = null; // (token) => Promise, to simulate failures
    this.reloadBehaviour = null;
  }

  on(name, handler) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(handler);
  }

  off(name, handler) {
    this.handlers.get(name)?.delete(handler);
  }

  listenerCount() {
    let n = 0;
    for (const set of this.handlers.values()) n += set.size;
    return n;
  }

  emit(name, detail = {}) {
    for (const handler of [...(this.handlers.get(name) ?? [])]) handler({ type: name, detail });
  }

  setAccessToken(token) {
    this.calls.push({ call: 'setAccessToken', token, at: this.clock.mono });
    if (this.setAccessTokenBehaviour) return this.setAccessTokenBehaviour(token);
    this.currentToken = token;
    return Promise.resolve();
  }

  reload() {
    this.calls.push({ call: 'reload', at: this.clock.mono });
    if (this.reloadBehaviour) return this.reloadBehaviour();
    return Promise.resolve();
  }

  callNames() {
    return this.calls.map((c) => c.call);
  }
}

/** An EventTarget that can tell how many listeners are attached. */
export class FakeTarget {
  constructor() {
    this.listeners = new Map();
    this.visibilityState = 'visible';
  }

  addEventListener(name, handler) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(handler);
  }

  removeEventListener(name, handler) {
    this.listeners.get(name)?.delete(handler);
  }

  dispatch(name) {
    for (const handler of [...(this.listeners.get(name) ?? [])]) handler({ type: name });
  }

  listenerCount() {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}

/** Error shaped like the viewer's fetchToken failures. */
export function httpError(status, extra = {}) {
  const error = new Error(`HTTP ${status}`);
  error.status = status;
  Object.assign(error, extra);
  return error;
}

/**
 * Scriptable token endpoint. Every call is recorded with its reason and monotonic time.
 * `script` is a queue of outcomes: an error object (rejects), a function (called with the reason),
 * or 'hold' (stays pending until release()). With an empty queue, `fallback` decides.
 */
export class FakeTokenServer {
  constructor(clock, { lifetime = 3600, policy = undefined, withServerDate = false } = {}) {
    this.clock = clock;
    this.withServerDate = withServerDate;
    this.lifetime = lifetime;
    this.policy = policy;
    this.calls = [];
    this.script = [];
    this.fallback = null; // null = succeed; an error object = fail forever
    this.issued = 0;
    this.held = [];
    this.latencyMs = () => 0; // response time of a successful call
    this.fetchToken = (reason, context) => this.handle(reason, context);
  }

  mint() {
    this.issued += 1;
    const answer = { token: `token-${this.issued}`, tokenId: `id-${this.issued}`, expiresIn: this.lifetime };
    if (this.policy !== undefined) answer.policy = this.policy;
    if (this.withServerDate) answer.serverDate = Math.floor(this.clock.server / 1000) * 1000;
    return answer;
  }

  handle(reason, context) {
    this.calls.push({ reason, at: this.clock.mono, signal: context?.signal });
    const step = this.script.length ? this.script.shift() : this.fallback;
    if (step === 'hold') {
      return new Promise((resolve, reject) => this.held.push({ resolve, reject }));
    }
    if (typeof step === 'function') return Promise.resolve().then(() => step(reason));
    if (step) return Promise.reject(step); // an error object
    const latency = this.latencyMs();
    if (latency > 0) return new Promise((resolve) => this.clock.setTimeout(() => resolve(this.mint()), latency));
    return Promise.resolve(this.mint());
  }

  release() {
    for (const { resolve } of this.held.splice(0)) resolve(this.mint());
  }

  reasons() {
    return this.calls.map((c) => c.reason);
  }

  times() {
    return this.calls.map((c) => c.at);
  }
}

/**
 * Build a keeper wired to fakes. Returns everything a test needs to drive and observe it.
 * `overrides` are passed through to createTokenKeeper (e.g. random, policy via initial).
 */
export function setup({ lifetime = 3600, policy, serverPolicy, initial, start = true, withSession = false, ...overrides } = {}) {
  const clock = new FakeClock();
  // withSession: the keeper gets checkSession and serverNow (the viewer's /api/session), and
  // every token answer carries the server's Date, as in the browser.
  const session = withSession ? new FakeSession(clock) : null;
  const sessionOptions = session ? { checkSession: session.check, serverNow: session.serverNow } : {};
  const serverDate = () => (session ? { serverDate: Math.floor(clock.server / 1000) * 1000 } : {});
  const report = new FakeReport(clock);
  const server = new FakeTokenServer(clock, { lifetime, policy: serverPolicy, withServerDate: withSession });
  const documentTarget = new FakeTarget();
  const windowTarget = new FakeTarget();
  const states = [];
  const stateInfos = [];
  const telemetry = [];
  const keeper = createTokenKeeper({
    report,
    fetchToken: server.fetchToken,
    initial: initial ?? { token: 'token-0', tokenId: 'id-0', expiresIn: lifetime, policy, ...serverDate() },
    now: clock.now,
    wallNow: clock.wallNow,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 1,
    documentTarget,
    windowTarget,
    isHidden: () => documentTarget.visibilityState === 'hidden',
    onState: (state, info) => {
      states.push(state);
      stateInfos.push({ state, info, at: clock.mono });
    },
    onTelemetry: (event) => telemetry.push({ ...event, at: clock.mono, wallAt: clock.wall }),
    ...sessionOptions,
    ...overrides,
  });
  if (start) keeper.start();
  const t0 = clock.mono;
  const wall0 = clock.wall;
  return {
    clock,
    report,
    server,
    session,
    documentTarget,
    windowTarget,
    states,
    stateInfos,
    telemetry,
    keeper,
    t0,
    /** Real seconds since the keeper was created (wall clock: includes sleeps). */
    elapsed: () => (clock.wall - wall0) / 1000,
    events: (type) => telemetry.filter((e) => e.type === type),
  };
}

/**
 * The portal's /api/session as the keeper's checkSession sees it. `signedIn` is flipped by the
 * test; `down` makes every call reject (portal unreachable). Calls are recorded.
 */
export class FakeSession {
  constructor(clock) {
    this.clock = clock;
    this.signedIn = true;
    this.down = false;
    this.calls = [];
    this.check = () => {
      this.calls.push(this.clock.mono);
      if (this.down) return Promise.reject(new TypeError('Failed to fetch'));
      return Promise.resolve({ signedIn: this.signedIn, csrfToken: this.signedIn ? 'csrf' : '' });
    };
    // The Date header of the same request: whole seconds of the server's clock.
    this.serverNow = () => {
      if (this.down) return Promise.reject(new TypeError('Failed to fetch'));
      return Promise.resolve(Math.floor(this.clock.server / 1000) * 1000);
    };
  }
}

/** Small deterministic PRNG (mulberry32) so randomized tests are reproducible. */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
