// The simulated portal server (token sharing as the portal does it), the embedded report (what
// the viewer sees), and a viewer that plays its script against one refresh policy.

import { seededRandom } from '../../tests/js/fake-env.js';
import { HOUR, MINUTE, SECOND, Simulation, WALL_ORIGIN, Page } from './engine.mjs';
import { KINDS } from './viewers.mjs';

const uniform = (rng, a, b) => a + (b - a) * rng();

/** The policy object the portal's token API sends for a 60-minute token (tokens/policy.py). */
export const SERVER_POLICY = Object.freeze({
  marginSeconds: 600,
  minInteractionAgeSeconds: 300,
  refreshEverySeconds: null,
  checkIntervalSeconds: 30,
  maxBackoffSeconds: 60,
});

function httpError(status) {
  const error = new Error(`HTTP ${status}`);
  error.status = status;
  return error;
}

/**
 * The portal's token API: per (report, identity) key it hands out the cached token while that
 * token has more than the margin plus min(60 s, margin / 2) of life left (the portal's rule), otherwise one GenerateToken call mints
 * a new one (callers for the same key wait for that one call).
 */
export class TokenServer {
  constructor(sim, { lifetimeMs, marginMs, outage = null, seed = 1 }) {
    this.sim = sim;
    this.lifetimeMs = lifetimeMs;
    this.shareMs = marginMs + Math.min(60_000, marginMs / 2);
    this.outage = outage; // [startMs, endMs) during which every call fails with 503
    this.rng = seededRandom(seed * 15485863 + 3);
    this.cache = new Map();
    this.inflight = new Map();
    this.tokens = new Map();
    this.apiCalls = 0;
    this.failedCalls = 0;
    this.generateTokenCalls = 0;
    this.mintsByKey = new Map();
    this.mintsByReason = {}; // what the call that caused each GenerateToken was for
    this.serial = 0;
  }

  isDown(t) {
    return this.outage !== null && t >= this.outage[0] && t < this.outage[1];
  }

  /** One token API call; `reply(error, answer)` runs when the answer reaches the browser. */
  request(key, reason, reply) {
    const sim = this.sim;
    const now = sim.now;
    this.apiCalls += 1;
    if (this.isDown(now)) {
      this.failedCalls += 1;
      sim.at(now + 30, () => reply(httpError(503), null));
      return;
    }
    const cached = this.cache.get(key);
    if (cached && cached.expiresAt - now > this.shareMs) {
      sim.at(now + 15 + uniform(this.rng, 0, 60), () => reply(null, this.answer(cached)));
      return;
    }
    const waiting = this.inflight.get(key);
    if (waiting) {
      waiting.push(reply);
      return;
    }
    this.inflight.set(key, [reply]);
    this.generateTokenCalls += 1;
    this.mintsByReason[reason] = (this.mintsByReason[reason] ?? 0) + 1;
    this.mintsByKey.set(key, (this.mintsByKey.get(key) ?? 0) + 1);
    sim.at(now + 250 + uniform(this.rng, 0, 600), () => {
      this.serial += 1;
      const minted = { value: `token-${this.serial}`, id: `id-${this.serial}`, expiresAt: sim.now + this.lifetimeMs };
      this.tokens.set(minted.value, minted);
      this.cache.set(key, minted);
      const replies = this.inflight.get(key);
      this.inflight.delete(key);
      const answer = this.answer(minted);
      for (const r of replies) r(null, answer);
    });
  }

  answer(minted) {
    return {
      token: minted.value,
      tokenId: minted.id,
      expiration: new Date(WALL_ORIGIN + minted.expiresAt).toISOString(),
      expiresIn: Math.floor((minted.expiresAt - this.sim.now) / SECOND),
      policy: SERVER_POLICY,
    };
  }

  expiryOf(token) {
    return this.tokens.get(token)?.expiresAt ?? -Infinity;
  }
}

/**
 * The embedded report as powerbi-client exposes it (on/off/setAccessToken/reload), with the
 * service's rule: once the installed token's real expiry passes, the visuals fail, and only a
 * reload (with a valid token) brings them back — setting a new token afterwards is not enough.
 */
export class SimReport {
  constructor(viewer) {
    this.viewer = viewer;
    this.sim = viewer.sim;
    this.handlers = new Map();
    this.token = null;
    this.expiresAt = -Infinity;
    this.expiryEntry = null;
    this.alive = true;
  }

  on(name, handler) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(handler);
  }

  off(name, handler) {
    this.handlers.get(name)?.delete(handler);
  }

  emit(name, detail = {}) {
    for (const handler of [...(this.handlers.get(name) ?? [])]) handler({ type: name, detail });
  }

  install(token) {
    this.token = token;
    this.expiresAt = this.viewer.server.expiryOf(token);
    Simulation.cancel(this.expiryEntry);
    this.expiryEntry = null;
    if (this.expiresAt > this.sim.now) {
      this.expiryEntry = this.sim.at(this.expiresAt, () => {
        this.expiryEntry = null;
        if (this.alive) this.viewer.tokenDied();
      });
    } else if (this.alive) {
      this.viewer.tokenDied();
    }
  }

  setAccessToken(token) {
    if (this.alive) this.install(token);
    return Promise.resolve();
  }

  reload() {
    const viewer = this.viewer;
    return new Promise((resolve) => {
      this.sim.at(this.sim.now + uniform(viewer.rng, 1_500, 3_000), () => {
        this.sim.dirty = true;
        if (this.alive && this.expiresAt > this.sim.now) viewer.reportWorks('self');
        resolve();
      });
    });
  }

  retire() {
    this.alive = false;
    Simulation.cancel(this.expiryEntry);
    this.expiryEntry = null;
    this.handlers.clear();
  }
}

/** How long a condition was seen (it held while the page was visible), in how many runs. */
class SeenTimer {
  constructor() {
    this.on = false;
    this.since = null; // seen since (ms), or null while not seen
    this.totalMs = 0;
    this.appearances = 0; // runs of the condition that were seen at all
    this.longestMs = 0; // longest seen time within one run
    this.runMs = 0;
    this.runSeen = false;
  }

  update(now, on, visible) {
    if (this.since !== null) {
      this.totalMs += now - this.since;
      this.runMs += now - this.since;
      this.since = null;
    }
    if (on && !this.on) {
      this.runMs = 0;
      this.runSeen = false;
    }
    if (on && visible) {
      this.since = now;
      if (!this.runSeen) {
        this.runSeen = true;
        this.appearances += 1;
      }
    }
    if (!on && this.on) this.longestMs = Math.max(this.longestMs, this.runMs);
    this.on = on;
  }
}

/**
 * One viewer playing its script. `policy(ctx)` starts a refresh policy on a freshly loaded
 * report and returns {stop(), interaction()}.
 */
export class Viewer {
  constructor(world, script) {
    this.world = world;
    this.sim = world.sim;
    this.server = world.server;
    this.stats = world.stats;
    this.script = script;
    this.rng = seededRandom(world.seed * 7 + script.index * 977 + 5);
    this.page = new Page(this.sim, { skewMs: script.skewMs });
    this.page.onChange = () => this.visibilityChanged();
    this.report = null;
    this.policy = null;
    this.open = false;
    this.loading = false;
    this.broken = false;
    this.episode = null;
    this.humanReloadPending = false;
    this.reloadOnWake = false;
    this.wakes = [];
    this.overlay = new SeenTimer(); // our keeper's own expiry overlay (state expired/capacityOff)
    this.next = 0;
    world.stats.viewer(this);
  }

  get canSee() {
    return this.open && this.page.visible;
  }

  scheduleNext() {
    const event = this.script.events[this.next];
    if (!event) return;
    this.next += 1;
    this.sim.at(event.at, () => {
      this.play(event);
      this.scheduleNext();
    });
  }

  play(event) {
    switch (event.type) {
      case 'open':
        this.open = true;
        this.load('open');
        break;
      case 'close':
        this.close();
        break;
      case 'hide':
        this.page.hide();
        break;
      case 'show':
        this.page.show();
        break;
      case 'sleep':
        this.page.sleep();
        break;
      case 'wake':
        this.page.wake();
        this.wakes.push(this.sim.now);
        if (this.reloadOnWake) {
          this.reloadOnWake = false;
          this.planHumanReload();
        }
        break;
      case 'interaction':
        this.interact(event.name);
        break;
      default:
        throw new Error(`unknown script event ${event.type}`);
    }
  }

  // --- talking to the server ----------------------------------------------------------------
  /** Callback style, for the rival policies. `alive()` tells whether the caller still cares. */
  request(reason, alive, reply) {
    this.stats.apiCall(reason, this);
    this.server.request(this.script.key, reason, (error, answer) => {
      this.page.deliver(() => {
        if (alive()) reply(error, answer);
      });
    });
  }

  /** Promise style, for our keeper's fetchToken. */
  fetchToken(reason) {
    this.stats.apiCall(reason, this);
    this.sim.dirty = true;
    return new Promise((resolve, reject) => {
      this.server.request(this.script.key, reason, (error, answer) => {
        this.page.deliver(() => {
          this.sim.dirty = true;
          if (error) reject(error);
          else resolve(answer);
        });
      });
    });
  }

  // --- page loads ---------------------------------------------------------------------------
  /** Load (or reload) the page: a token API call, then the report renders with that token. */
  load(why) {
    if (!this.open) return;
    this.policy?.stop();
    this.policy = null;
    this.report?.retire();
    this.report = null;
    this.loading = true;
    this.request(why === 'human' ? 'human reload' : 'page load', () => this.open, (error, answer) => {
      if (error) {
        this.stats.failedLoads += 1;
        const wait = why === 'human' ? uniform(this.rng, 2, 10) * MINUTE : MINUTE;
        this.sim.at(this.sim.now + wait, () => this.load(why));
        return;
      }
      this.loading = false;
      this.report = new SimReport(this);
      this.broken = false;
      this.report.install(answer.token);
      if (!this.broken) this.reportWorks(why === 'human' ? 'human' : 'load');
      this.policy = this.world.policy.start({ viewer: this, page: this.page, report: this.report, initial: answer });
    });
  }

  close() {
    this.policy?.stop();
    this.policy = null;
    this.report?.retire();
    this.report = null;
    this.endEpisode('closed');
    this.open = false;
    this.page.close();
    this.overlay.update(this.sim.now, false, false);
  }

  // --- what the viewer sees -----------------------------------------------------------------
  interact(name) {
    if (!this.canSee || this.loading || !this.report) return;
    this.stats.interactions += 1;
    const report = this.report;
    report.emit(name, {});
    this.policy?.interaction();
    if (this.broken && report.alive) {
      // The visuals' queries ran on a dead token: Power BI shows its error and raises `error`.
      this.startEpisode('interaction');
      report.emit('error', { message: 'TokenExpired', detailedMessage: 'Access token has expired' });
    }
  }

  /** The installed token's real expiry passed. */
  tokenDied() {
    this.broken = true;
    if (this.canSee) this.startEpisode('expired while visible');
  }

  /** The report works again: reloaded with a valid token (by the policy, a human or a load). */
  reportWorks(how) {
    this.broken = false;
    this.endEpisode(how);
  }

  startEpisode(cause) {
    if (this.episode || !this.canSee) return;
    this.episode = { start: this.sim.now, cause, seen: new SeenTimer() };
    this.episode.seen.update(this.sim.now, true, true);
    this.stats.screen(this, cause);
    if (this.world.humanReloads) this.planHumanReload();
  }

  endEpisode(how) {
    const episode = this.episode;
    if (!episode) return;
    this.episode = null;
    episode.seen.update(this.sim.now, false, this.canSee);
    this.stats.episodeEnded(this, episode, how);
  }

  visibilityChanged() {
    const now = this.sim.now;
    this.episode?.seen.update(now, true, this.canSee);
    this.overlay.update(now, this.overlay.on, this.canSee);
  }

  /** Our keeper's state: the overlay is up while expired or capacity-off. */
  keeperState(state) {
    this.overlay.update(this.sim.now, state === 'expired' || state === 'capacityOff', this.canSee);
  }

  // --- a person reloading a broken report (rival policies only) ----------------------------
  planHumanReload() {
    if (this.humanReloadPending) return;
    this.humanReloadPending = true;
    let at;
    if (this.script.kind === KINDS.TV) {
      // Somebody walks past the wall screen, notices, and reloads it: only in working hours.
      at = nextWorkingMoment(this.sim.now + uniform(this.rng, 15, 120) * MINUTE, this.rng);
    } else {
      at = this.sim.now + uniform(this.rng, 10, 60) * SECOND;
    }
    this.sim.at(at, () => {
      this.humanReloadPending = false;
      if (!this.open || !this.broken) return;
      if (this.page.asleep) {
        this.reloadOnWake = true;
        return;
      }
      this.stats.humanReloads += 1;
      this.load('human');
    });
  }
}

function nextWorkingMoment(t, rng) {
  const day = Math.floor(t / (24 * HOUR));
  const hourOfDay = (t - day * 24 * HOUR) / HOUR;
  if (hourOfDay >= 8 && hourOfDay < 18) return t;
  const nextDay = hourOfDay < 8 ? day : day + 1;
  return nextDay * 24 * HOUR + 8 * HOUR + uniform(rng, 0, 60) * MINUTE;
}

/** Counters of one run (one policy, one scenario). */
export class Stats {
  constructor({ outage }) {
    this.outage = outage;
    this.apiCallsByReason = {};
    this.apiCallsByGroup = {};
    this.screens = 0;
    this.screensByGroup = {};
    this.screensByCause = {};
    this.screenSeenMs = 0;
    this.endings = {};
    this.humanReloads = 0;
    this.failedLoads = 0;
    this.interactions = 0;
    this.viewers = [];
    this.perViewer = new Map();
  }

  viewer(viewer) {
    this.viewers.push(viewer);
    this.perViewer.set(viewer, { episodes: [] });
  }

  apiCall(reason, viewer) {
    this.apiCallsByReason[reason] = (this.apiCallsByReason[reason] ?? 0) + 1;
    const group = viewer.script.group;
    this.apiCallsByGroup[group] = (this.apiCallsByGroup[group] ?? 0) + 1;
  }

  screen(viewer, cause) {
    this.screens += 1;
    const group = viewer.script.group;
    this.screensByGroup[group] = (this.screensByGroup[group] ?? 0) + 1;
    this.screensByCause[cause] = (this.screensByCause[cause] ?? 0) + 1;
  }

  episodeEnded(viewer, episode, how) {
    this.screenSeenMs += episode.seen.totalMs;
    this.endings[how] = (this.endings[how] ?? 0) + 1;
    const end = viewer.sim.now;
    const lastWake = viewer.wakes.filter((t) => t <= end).at(-1) ?? -Infinity;
    this.perViewer.get(viewer).episodes.push({ start: episode.start, end, how, lastWake });
  }

  /** Close the books at the end of the window: open episodes end as 'still broken', or as
   * 'asleep at end' when the machine is asleep then (nothing can run until it wakes). */
  finish(now) {
    for (const viewer of this.viewers) {
      if (viewer.episode) viewer.endEpisode(viewer.page.asleep ? 'asleep at end' : 'still broken');
      viewer.overlay.update(now, false, false);
    }
  }
}
