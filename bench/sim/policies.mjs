// The refresh policies under comparison. Each `start(ctx)` runs on a freshly loaded report
// (ctx: viewer, page, report, initial = the token API's answer) and returns
// {stop(), interaction()}. Only "ours" is the real module; the rivals are re-implementations of
// the behaviour described in the project's shared research notes (peers.md §1, powerbi-embedded.md §1.2, §4.1).

import { createTokenKeeper } from '../../src/embedportal/web/static/js/token-keeper.js';
import { MINUTE, SECOND } from './engine.mjs';

const noop = () => {};

/** embedportal's token keeper, unmodified, with the server's default policy. */
export const ours = {
  name: 'ours',
  label: 'ours (token keeper)',
  humanReloads: false, // it recovers by itself; nobody reloads its pages in the simulation
  start({ viewer, page, report, initial }) {
    const keeper = createTokenKeeper({
      report,
      fetchToken: (reason) => viewer.fetchToken(reason),
      initial: {
        token: initial.token,
        tokenId: initial.tokenId,
        expiresIn: initial.expiresIn,
        policy: initial.policy,
      },
      now: () => page.mono(),
      wallNow: () => page.wall(),
      setTimeout: (fn, ms) => page.setTimeout(fn, ms),
      clearTimeout: (id) => page.clearTimeout(id),
      random: viewer.rng,
      documentTarget: page.documentTarget,
      windowTarget: page.windowTarget,
      isHidden: () => page.hidden || page.asleep,
      onState: (state) => viewer.keeperState(state),
    });
    keeper.start();
    return {
      stop: () => keeper.stop(),
      interaction: noop, // the keeper listens to the report's own interaction events
    };
  },
};

/**
 * Microsoft's documented sample: every 30 s (setInterval), compare the server's expiration with
 * the client's Date.now(); at 10 minutes or less, fetch and setAccessToken. No reload, no retry
 * other than the next tick.
 */
export const microsoft = {
  name: 'microsoft',
  label: 'Microsoft sample (30 s poll)',
  humanReloads: true,
  start({ viewer, page, report, initial }) {
    let expiration = initial.expiration;
    let stopped = false;
    const check = () => {
      if (Date.parse(expiration) - page.wall() > 10 * MINUTE) return;
      viewer.request('poll', () => !stopped, (error, answer) => {
        if (error) return;
        expiration = answer.expiration;
        report.setAccessToken(answer.token);
      });
    };
    const interval = page.setInterval(check, 30 * SECOND);
    return {
      stop: () => {
        stopped = true;
        page.clearInterval(interval);
      },
      interaction: noop,
    };
  },
};

/** Power Embedded's always-on rule alone: every interaction fetches and sets a token. */
export const interaction = {
  name: 'interaction',
  label: 'refresh on every interaction',
  humanReloads: true,
  start({ viewer, report }) {
    let stopped = false;
    return {
      stop: () => {
        stopped = true;
      },
      interaction: () => {
        viewer.request('interaction', () => !stopped, (error, answer) => {
          if (!error) report.setAccessToken(answer.token);
        });
      },
    };
  },
};

/**
 * Superset's embedded SDK: one setTimeout for 5 s before expiry, the delay measured with the
 * client's clock (at least 10 s − 5 s); on failure retry after 10 s, forever. One timer per embed.
 */
export const superset = {
  name: 'superset',
  label: 'Superset SDK (5 s before expiry)',
  humanReloads: true,
  start({ viewer, page, report, initial }) {
    let timer = null;
    let stopped = false;
    const arm = (expiration) => {
      const ttl = Math.max(10 * SECOND, Date.parse(expiration) - page.wall());
      timer = page.setTimeout(refresh, ttl - 5 * SECOND);
    };
    const refresh = () => {
      timer = null;
      viewer.request('timer', () => !stopped, (error, answer) => {
        if (error) {
          timer = page.setTimeout(refresh, 10 * SECOND);
          return;
        }
        report.setAccessToken(answer.token);
        arm(answer.expiration);
      });
    };
    arm(initial.expiration);
    return {
      stop: () => {
        stopped = true;
        if (timer !== null) page.clearTimeout(timer);
      },
      interaction: noop,
    };
  },
};

export const POLICIES = Object.freeze({ ours, microsoft, interaction, superset });
