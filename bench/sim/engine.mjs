// Discrete-event core of the token-policy simulation: one global event queue in simulated
// milliseconds, and a "page" per viewer that gives a policy the browser pieces it uses (two
// clocks, timers, visibility events) with the timing rules of a real browser tab:
//
//  - a hidden tab: timers fire on 1-second-aligned wake-ups; once the tab has been hidden for
//    5 minutes, chained timers (set from a timer callback, 5 or more deep, which includes every
//    setInterval after a few ticks) fire only on 1-minute-aligned wake-ups (Chrome's intensive
//    wake-up throttling). A timer set from a network answer or a page event starts a new chain;
//  - a sleeping machine: no timer runs and the monotonic clock stops (macOS/Linux), while the
//    wall clock jumps by the sleep's length; a timer's remaining delay survives the sleep;
//  - a wrong client clock: the wall clock is offset by `skewMs`, the monotonic one is not.
//
// Nothing here knows about tokens.

import { FakeTarget } from '../../tests/js/fake-env.js';

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/** Wall-clock time (UTC ms) of simulated time 0: a Monday, 00:00. */
export const WALL_ORIGIN = Date.UTC(2025, 2, 3, 0, 0, 0);

const HIDDEN_ALIGN_MS = SECOND;
const INTENSIVE_AFTER_HIDDEN_MS = 5 * MINUTE;
const INTENSIVE_ALIGN_MS = MINUTE;
const INTENSIVE_MIN_CHAIN = 5;

/** The global clock and event queue (a binary min-heap on time, then insertion order). */
export class Simulation {
  constructor() {
    this.now = 0;
    this.heap = [];
    this.seq = 0;
    // Set by anything that settles a promise the code under test awaits: the run loop then
    // lets every pending promise callback run before simulated time moves on.
    this.dirty = false;
    this.events = 0;
  }

  /** Run `fn` at simulated time `time` (never in the past). Returns a handle for cancel(). */
  at(time, fn) {
    const entry = { time: Math.max(time, this.now), seq: this.seq++, fn };
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = entry;
    return entry;
  }

  static cancel(entry) {
    if (entry) entry.fn = null;
  }

  pop() {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(heap[r], heap[l]) ? r : l;
        if (!before(heap[c], last)) break;
        heap[i] = heap[c];
        i = c;
      }
      heap[i] = last;
    }
    return top;
  }

  /** Process every event up to and including `end`, then set the clock to `end`. */
  async runUntil(end) {
    const heap = this.heap;
    while (heap.length > 0 && heap[0].time <= end) {
      const entry = this.pop();
      const fn = entry.fn;
      if (fn === null) continue;
      entry.fn = null;
      this.now = entry.time;
      this.events += 1;
      fn();
      if (this.dirty) {
        this.dirty = false;
        // Microtasks (promise callbacks) all run before the next macrotask, so one
        // setImmediate round lets a whole fetch → setAccessToken → reload chain advance.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    this.now = Math.max(this.now, end);
  }
}

function before(a, b) {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

/**
 * One browser tab on one machine. Timers are kept by their due time on the tab's monotonic
 * clock and re-placed on the global queue whenever visibility or sleep changes their firing time.
 */
export class Page {
  constructor(sim, { skewMs = 0 } = {}) {
    this.sim = sim;
    this.skewMs = skewMs;
    this.hidden = false;
    this.hiddenSince = 0;
    this.asleep = false;
    this.sleepStart = 0;
    this.sleptMs = 0;
    this.closed = false;
    this.timers = new Map();
    this.nextId = 1;
    this.chain = 0; // chain depth of the timer callback running now (0: not in a timer)
    this.held = []; // network answers that arrived while the machine slept
    this.documentTarget = new FakeTarget();
    this.windowTarget = new FakeTarget();
    this.onChange = null; // (page) => void, after any visibility/sleep change
  }

  /** performance.now(): stops while the machine sleeps. */
  mono() {
    const t = this.asleep ? this.sleepStart : this.sim.now;
    return t - this.sleptMs + 5_000;
  }

  /** Date.now(): true time plus the client's clock error. */
  wall() {
    return WALL_ORIGIN + this.sim.now + this.skewMs;
  }

  get visible() {
    return !this.closed && !this.hidden && !this.asleep;
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer = { id, fn, due: this.mono() + delay, chain: this.chain + 1, entry: null };
    this.timers.set(id, timer);
    this.arm(timer);
    return id;
  }

  clearTimeout(id) {
    const timer = this.timers.get(id);
    if (!timer) return;
    Simulation.cancel(timer.entry);
    this.timers.delete(id);
  }

  /** A repeating timer built from one-shot ones, as browsers count its nesting. */
  setInterval(fn, ms) {
    const handle = { id: null, stopped: false };
    const tick = () => {
      if (handle.stopped) return;
      handle.id = this.setTimeout(tick, ms);
      fn();
    };
    handle.id = this.setTimeout(tick, ms);
    return handle;
  }

  clearInterval(handle) {
    if (!handle) return;
    handle.stopped = true;
    this.clearTimeout(handle.id);
  }

  firingTime(timer) {
    const at = this.sim.now + Math.max(0, timer.due - this.mono());
    if (!this.hidden) return at;
    const intensive = timer.chain >= INTENSIVE_MIN_CHAIN
      && at > this.hiddenSince + INTENSIVE_AFTER_HIDDEN_MS;
    const align = intensive ? INTENSIVE_ALIGN_MS : HIDDEN_ALIGN_MS;
    return Math.ceil(at / align) * align;
  }

  arm(timer) {
    Simulation.cancel(timer.entry);
    timer.entry = null;
    if (this.asleep || this.closed) return;
    timer.entry = this.sim.at(this.firingTime(timer), () => {
      timer.entry = null;
      this.timers.delete(timer.id);
      this.chain = timer.chain;
      try {
        timer.fn();
      } finally {
        this.chain = 0;
      }
    });
  }

  rearmAll() {
    for (const timer of this.timers.values()) this.arm(timer);
  }

  /** Hand a network answer to the page; held while the machine sleeps, dropped once closed. */
  deliver(fn) {
    if (this.closed) return;
    if (this.asleep) this.held.push(fn);
    else fn();
  }

  hide() {
    if (this.hidden || this.closed) return;
    this.hidden = true;
    this.hiddenSince = this.sim.now;
    this.documentTarget.visibilityState = 'hidden';
    this.rearmAll();
    this.documentTarget.dispatch('visibilitychange');
    this.onChange?.(this);
  }

  show() {
    if (!this.hidden || this.closed || this.asleep) return;
    this.hidden = false;
    this.documentTarget.visibilityState = 'visible';
    this.rearmAll();
    this.onChange?.(this);
    this.documentTarget.dispatch('visibilitychange');
    this.windowTarget.dispatch('focus');
  }

  /** Lid closed: the display goes off (the tab becomes hidden), then nothing runs. */
  sleep() {
    if (this.asleep || this.closed) return;
    this.hide();
    this.asleep = true;
    this.sleepStart = this.sim.now;
    this.rearmAll();
    this.onChange?.(this);
  }

  /** Lid opened: the clocks resume, timers are re-placed, the tab becomes visible. */
  wake() {
    if (!this.asleep || this.closed) return;
    this.sleptMs += this.sim.now - this.sleepStart;
    this.asleep = false;
    this.rearmAll();
    for (const fn of this.held.splice(0)) fn();
    this.show();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers.values()) Simulation.cancel(timer.entry);
    this.timers.clear();
    this.held = [];
    this.onChange?.(this);
  }
}
