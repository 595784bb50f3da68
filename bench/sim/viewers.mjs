// The simulated viewers and what each one does during the day. Scripts depend only on the seed,
// never on the policy under test, so every policy faces exactly the same day.

import { INTERACTION_EVENTS } from '../../src/embedportal/web/static/js/token-keeper.js';
import { seededRandom } from '../../tests/js/fake-env.js';
import { HOUR, MINUTE, SECOND } from './engine.mjs';

export const KINDS = Object.freeze({
  TV: 'tv', // idle wall screen: open all day, visible, never touched, never sleeps
  OFFICE: 'office', // desktop: open during working hours, bursts of clicks, tab sometimes hidden
  LAPTOP: 'laptop', // opened in the morning, kept open, sleeps (lid closed) 30 min to 8 h at a time
});

const SHARE = { tv: 0.2, laptop: 0.3 }; // the rest are office users
const SKEW_SHARE = 0.05;
const SKEW_MS = 3 * HOUR;

const uniform = (rng, a, b) => a + (b - a) * rng();
const logUniform = (rng, a, b) => Math.exp(uniform(rng, Math.log(a), Math.log(b)));
const exponential = (rng, mean) => -mean * Math.log(1 - rng());

/**
 * Build `count` viewer scripts for the window [startMs, endMs) of simulated time.
 * Each viewer: {index, kind, key, skewMs, group, events: [{at, type, name?}], demand: [[a, b]]}
 * where `demand` lists the intervals its page was open on a running machine.
 */
export function makeViewers({ count, keys, seed, startMs, endMs }) {
  const rng = seededRandom(seed * 7919 + 17);
  const tvs = Math.round(count * SHARE.tv);
  const laptops = Math.round(count * SHARE.laptop);
  const kinds = [];
  for (let i = 0; i < count; i += 1) {
    kinds.push(i < tvs ? KINDS.TV : i < tvs + laptops ? KINDS.LAPTOP : KINDS.OFFICE);
  }
  shuffle(kinds, rng);
  const skewed = count >= 4 ? Math.max(2, Math.round(count * SKEW_SHARE)) : 0;
  const skewOrder = shuffle([...Array(count).keys()], rng).slice(0, skewed);
  const skewOf = new Map(skewOrder.map((index, n) => [index, n % 2 === 0 ? SKEW_MS : -SKEW_MS]));

  return kinds.map((kind, index) => {
    const own = seededRandom(seed * 104729 + index * 31 + 1);
    const key = Math.floor(own() * keys);
    const skewMs = skewOf.get(index) ?? 0;
    const script = { index, kind, key, skewMs, events: [], demand: [] };
    if (kind === KINDS.TV) tvScript(own, script, startMs, endMs);
    else if (kind === KINDS.OFFICE) officeScript(own, script, startMs, endMs);
    else laptopScript(own, script, startMs, endMs);
    script.events = script.events.filter((e) => e.at >= startMs && e.at < endMs);
    script.events.sort((a, b) => a.at - b.at);
    script.demand = clip(script.demand, startMs, endMs);
    script.group = skewMs > 0 ? 'clock +3h' : skewMs < 0 ? 'clock -3h' : kind;
    return script;
  });
}

function shuffle(items, rng) {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

function clip(intervals, a, b) {
  return intervals
    .map(([x, y]) => [Math.max(x, a), Math.min(y, b)])
    .filter(([x, y]) => y > x);
}

function dayTime(startMs, hours) {
  // Scripts use times of day; the window may start at any hour of day 0.
  return Math.max(startMs, hours * HOUR);
}

function tvScript(rng, script, startMs, endMs) {
  const open = startMs + uniform(rng, 0, 10) * MINUTE;
  script.events.push({ at: open, type: 'open' });
  script.demand.push([open, endMs]);
}

function officeScript(rng, script, startMs, endMs) {
  const open = dayTime(startMs, uniform(rng, 7.5, 9.5));
  const close = uniform(rng, 17, 19) * HOUR;
  if (open >= Math.min(close, endMs)) return;
  script.events.push({ at: open, type: 'open' });
  const meanGap = logUniform(rng, 5, 90) * SECOND;
  activity(rng, script.events, open + uniform(rng, 5, 60) * SECOND, close, meanGap);
  script.events.push({ at: close, type: 'close' });
  script.demand.push([open, close]);
}

function laptopScript(rng, script, startMs, endMs) {
  const open = dayTime(startMs, uniform(rng, 7.5, 9.5));
  if (open >= endMs) return;
  script.events.push({ at: open, type: 'open' });
  const meanGap = logUniform(rng, 5, 90) * SECOND;
  let t = open;
  while (t < endMs) {
    const awakeEnd = Math.min(endMs, t + uniform(rng, 30, 180) * MINUTE);
    activity(rng, script.events, t + uniform(rng, 5, 60) * SECOND, awakeEnd, meanGap);
    script.demand.push([t, awakeEnd]);
    if (awakeEnd >= endMs) break;
    const wakeAt = awakeEnd + logUniform(rng, 30, 480) * MINUTE;
    script.events.push({ at: awakeEnd, type: 'sleep' });
    script.events.push({ at: wakeAt, type: 'wake' });
    t = wakeAt;
  }
}

/**
 * A person at the report between `from` and `to`: active stretches (clicks every few seconds to
 * minutes), quiet stretches (reading, away) and stretches with the tab in the background.
 * Ends with the tab visible, or hidden if a background stretch reaches `to`.
 */
function activity(rng, events, from, to, meanGap) {
  let t = from;
  while (t < to) {
    const r = rng();
    if (r < 0.5) {
      const end = Math.min(to, t + uniform(rng, 5, 40) * MINUTE);
      for (let x = t + exponential(rng, meanGap); x < end; x += Math.max(SECOND, exponential(rng, meanGap))) {
        const name = INTERACTION_EVENTS[Math.floor(rng() * INTERACTION_EVENTS.length)];
        events.push({ at: x, type: 'interaction', name });
      }
      t = end;
    } else if (r < 0.75) {
      t = Math.min(to, t + uniform(rng, 5, 30) * MINUTE);
    } else {
      const end = Math.min(to, t + uniform(rng, 3, 120) * MINUTE);
      events.push({ at: t, type: 'hide' });
      if (end < to) events.push({ at: end, type: 'show' });
      t = end + uniform(rng, 2, 30) * SECOND; // back at the tab: a moment before the next click
    }
  }
}
