#!/usr/bin/env node
// Token refresh policies compared on a simulated day (discrete events, fake time).
//
//   node bench/token_policies.mjs [--viewers 200] [--hours 24] [--keys 10] [--seed 1] [--json]
//
// Every policy faces the same viewers doing the same things against the same simulated portal
// (token sharing per report and RLS identity, single flight, 60-minute tokens). "ours" is the
// real token keeper module. See bench/README.md for the model and what each figure means.

import { performance } from 'node:perf_hooks';

import { HOUR, MINUTE, Simulation } from './sim/engine.mjs';
import { POLICIES } from './sim/policies.mjs';
import { makeViewers } from './sim/viewers.mjs';
import { SERVER_POLICY, Stats, TokenServer, Viewer } from './sim/world.mjs';

const LIFETIME_MS = 60 * MINUTE;
const MARGIN_MS = SERVER_POLICY.marginSeconds * 1000;

const DEFAULTS = {
  viewers: 200,
  hours: 24,
  startHour: 0,
  keys: 10,
  seed: 1,
  policies: Object.keys(POLICIES).join(','),
  outage: true,
  outageViewers: 60,
  outageStartHour: 8,
  outageHours: 8,
  outageAtHour: 12,
  outageMinutes: 90,
  json: false,
};

function parseArgs(argv) {
  const options = { ...DEFAULTS };
  const camel = (flag) => flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--json') options.json = true;
    else if (arg === '--no-outage') options.outage = false;
    else if (arg === '--help' || arg === '-h') {
      const flag = (k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      const usage = Object.entries(DEFAULTS).map(([k, v]) => {
        if (k === 'outage') return '[--no-outage]';
        return typeof v === 'boolean' ? `[${flag(k)}]` : `[${flag(k)} ${v}]`;
      });
      process.stdout.write(`usage: node bench/token_policies.mjs ${usage.join(' ')}\n`);
      process.exit(0);
    } else if (arg.startsWith('--')) {
      const [flag, inline] = arg.split('=', 2);
      const key = camel(flag);
      if (!(key in DEFAULTS) || typeof DEFAULTS[key] === 'boolean') throw new Error(`unknown option ${flag}`);
      const value = inline ?? argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      options[key] = typeof DEFAULTS[key] === 'number' ? Number(value) : value;
      if (typeof DEFAULTS[key] === 'number' && !Number.isFinite(options[key])) {
        throw new Error(`${flag} must be a number`);
      }
    } else {
      throw new Error(`unexpected argument ${arg}`);
    }
  }
  options.policyNames = options.policies.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of options.policyNames) {
    if (!POLICIES[name]) throw new Error(`unknown policy ${name} (known: ${Object.keys(POLICIES)})`);
  }
  if (!options.policyNames.includes('ours')) options.policyNames.unshift('ours');
  return options;
}

// --- one run ----------------------------------------------------------------------------------

async function runOnce({ policy, scripts, seed, startMs, endMs, outage }) {
  const started = performance.now();
  const sim = new Simulation();
  sim.now = startMs;
  const server = new TokenServer(sim, { lifetimeMs: LIFETIME_MS, marginMs: MARGIN_MS, outage, seed });
  const stats = new Stats({ outage });
  const world = { sim, server, stats, seed, policy, humanReloads: policy.humanReloads };
  const viewers = scripts.map((script) => new Viewer(world, script));
  for (const viewer of viewers) viewer.scheduleNext();
  await sim.runUntil(endMs);
  stats.finish(endMs);
  return { sim, server, stats, viewers, runtimeMs: performance.now() - started };
}

function unionMs(intervals) {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let cur = null;
  for (const [a, b] of sorted) {
    if (!cur || a > cur[1]) {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    } else cur[1] = Math.max(cur[1], b);
  }
  if (cur) total += cur[1] - cur[0];
  return total;
}

/** Figures that depend only on the scripts: viewer-hours and per-key demand. */
function demandOf(scripts, keys) {
  const viewerHours = scripts.reduce((sum, s) => sum + unionMs(s.demand), 0) / HOUR;
  let keyLifetimes = 0;
  for (let key = 0; key < keys; key += 1) {
    keyLifetimes += unionMs(scripts.filter((s) => s.key === key).flatMap((s) => s.demand)) / LIFETIME_MS;
  }
  const groups = {};
  for (const s of scripts) {
    const g = (groups[s.group] ??= { viewers: 0, viewerHours: 0 });
    g.viewers += 1;
    g.viewerHours = round(g.viewerHours + unionMs(s.demand) / HOUR, 1);
  }
  return { viewerHours, keyLifetimes, groups };
}

const round = (x, digits = 3) => Number(x.toFixed(digits));

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function summarize(name, run, demand) {
  const { server, stats, viewers } = run;
  const perVh = (x) => x / demand.viewerHours;
  const overlay = viewers.reduce(
    (acc, v) => ({
      appearances: acc.appearances + v.overlay.appearances,
      seenMs: acc.seenMs + v.overlay.totalMs,
      longestMs: Math.max(acc.longestMs, v.overlay.longestMs),
    }),
    { appearances: 0, seenMs: 0, longestMs: 0 },
  );
  const skewed = ['clock +3h', 'clock -3h'];
  const fairCalls = Object.entries(stats.apiCallsByGroup)
    .filter(([group]) => !skewed.includes(group))
    .reduce((sum, [, n]) => sum + n, 0);
  const fairHours = Object.entries(demand.groups)
    .filter(([group]) => !skewed.includes(group))
    .reduce((sum, [, g]) => sum + g.viewerHours, 0);
  const viewersWithScreens = [...stats.perViewer.values()].filter((v) => v.episodes.length > 0).length;
  return {
    name,
    label: POLICIES[name].label,
    generateTokenCalls: server.generateTokenCalls,
    tokenApiCalls: server.apiCalls,
    failedTokenApiCalls: server.failedCalls,
    generateTokenPerViewerHour: round(perVh(server.generateTokenCalls), 4),
    tokenApiCallsPerViewerHour: round(perVh(server.apiCalls), 3),
    tokenApiCallsPerViewerHourCorrectClocks: fairHours > 0 ? round(fairCalls / fairHours, 3) : null,
    generateTokenPerKeyLifetime: round(server.generateTokenCalls / demand.keyLifetimes, 3),
    expiryScreens: stats.screens,
    expiryScreensPer1000ViewerHours: round((1000 * stats.screens) / demand.viewerHours, 2),
    viewersWithScreens,
    minutesOnExpiryScreens: round(stats.screenSeenMs / MINUTE, 1),
    humanReloads: stats.humanReloads,
    failedPageLoads: stats.failedLoads,
    screensByGroup: stats.screensByGroup,
    screensByCause: stats.screensByCause,
    episodeEndings: stats.endings,
    tokenApiCallsByReason: stats.apiCallsByReason,
    tokenApiCallsByGroup: stats.apiCallsByGroup,
    generateTokenByReason: server.mintsByReason,
    keeperOverlay: name === 'ours'
      ? { appearances: overlay.appearances, seenSeconds: round(overlay.seenMs / 1000, 1), longestSeconds: round(overlay.longestMs / 1000, 1) }
      : null,
    simulatedEvents: run.sim.events,
    runtimeMs: Math.round(run.runtimeMs),
  };
}

function ratios(results) {
  const base = results.find((r) => r.name === 'ours');
  const ratio = (a, b) => (b === 0 ? (a === 0 ? 1 : null) : round(a / b, 2));
  for (const r of results) {
    r.vsOurs = {
      generateToken: ratio(r.generateTokenCalls, base.generateTokenCalls),
      tokenApiCalls: ratio(r.tokenApiCalls, base.tokenApiCalls),
      expiryScreens: ratio(r.expiryScreens, base.expiryScreens), // null: ours has 0, theirs > 0
    };
  }
}

function outageSummary(name, run, outage) {
  const [o0, o1] = outage;
  const tailMs = 5 * MINUTE;
  let during = 0;
  let tail = 0;
  let other = 0;
  let hit = 0;
  let self = 0;
  let human = 0;
  let unresolved = 0;
  let asleep = 0;
  const lagsMs = [];
  for (const { episodes } of run.stats.perViewer.values()) {
    const inOutage = [];
    for (const e of episodes) {
      if (e.start >= o0 && e.start < o1) {
        during += 1;
        inOutage.push(e);
      } else if (e.start >= o1 && e.start < o1 + tailMs) tail += 1;
      else other += 1;
    }
    if (inOutage.length === 0) continue;
    hit += 1;
    if (inOutage.every((e) => e.how === 'self')) self += 1;
    else if (inOutage.some((e) => e.how === 'human')) human += 1;
    if (inOutage.some((e) => e.how === 'still broken' || e.how === 'closed')) unresolved += 1;
    else if (inOutage.some((e) => e.how === 'asleep at end')) asleep += 1;
    for (const e of inOutage) {
      // From the later of the outage's end and the machine's last wake-up to the recovery.
      if (e.how === 'self') lagsMs.push(e.end - Math.max(o1, e.lastWake));
    }
  }
  return {
    name,
    label: POLICIES[name].label,
    screensDuringOutage: during,
    screensInFiveMinutesAfter: tail,
    screensOtherwise: other,
    viewersHit: hit,
    recoveredWithoutHumanReload: self,
    fixedByHumanReload: human,
    unresolvedAtEndOrClose: unresolved,
    asleepAtEndStillBroken: asleep,
    humanReloads: run.stats.humanReloads,
    selfRecoverySecondsAfterOutage: lagsMs.length === 0 ? null : {
      median: round(quantile(lagsMs, 0.5) / 1000, 1),
      max: round(Math.max(...lagsMs) / 1000, 1),
    },
    failedTokenApiCalls: run.server.failedCalls,
    tokenApiCalls: run.server.apiCalls,
    runtimeMs: Math.round(run.runtimeMs),
  };
}

// --- scenarios --------------------------------------------------------------------------------

async function mainScenario(options) {
  const startMs = options.startHour * HOUR;
  const endMs = startMs + options.hours * HOUR;
  const scripts = makeViewers({ count: options.viewers, keys: options.keys, seed: options.seed, startMs, endMs });
  const demand = demandOf(scripts, options.keys);
  const results = [];
  for (const name of options.policyNames) {
    const run = await runOnce({ policy: POLICIES[name], scripts, seed: options.seed, startMs, endMs, outage: null });
    results.push(summarize(name, run, demand));
  }
  ratios(results);
  return {
    viewers: options.viewers,
    hours: options.hours,
    startHour: options.startHour,
    keys: options.keys,
    viewerHours: round(demand.viewerHours, 1),
    keyTokenLifetimesOfDemand: round(demand.keyLifetimes, 1),
    viewerGroups: demand.groups,
    continuousDemandFloor: round(LIFETIME_MS / (LIFETIME_MS - MARGIN_MS - Math.min(60_000, MARGIN_MS / 2)), 3),
    policies: results,
  };
}

async function outageScenario(options) {
  const startMs = options.outageStartHour * HOUR;
  const endMs = startMs + options.outageHours * HOUR;
  const o0 = options.outageAtHour * HOUR;
  const outage = [o0, o0 + options.outageMinutes * MINUTE];
  const scripts = makeViewers({ count: options.outageViewers, keys: options.keys, seed: options.seed + 1, startMs, endMs });
  const results = [];
  for (const name of options.policyNames) {
    const run = await runOnce({ policy: POLICIES[name], scripts, seed: options.seed + 1, startMs, endMs, outage });
    results.push(outageSummary(name, run, outage));
  }
  return {
    viewers: options.outageViewers,
    fromHour: options.outageStartHour,
    hours: options.outageHours,
    outageFromHour: options.outageAtHour,
    outageMinutes: options.outageMinutes,
    viewerHours: round(demandOf(scripts, options.keys).viewerHours, 1),
    policies: results,
  };
}

// --- text output (when run by hand) -------------------------------------------------------------

function table(headers, rows) {
  const cells = [headers, ...rows].map((row) => row.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  const line = (row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

function printText(result) {
  const m = result.main;
  const out = [];
  out.push(`Token policies: ${m.viewers} viewers, ${m.hours} h, ${m.keys} (report, identity) keys, ${m.viewerHours} viewer-hours`);
  out.push(table(
    ['policy', 'GenerateToken/vh', 'x ours', 'API calls/vh', 'x ours', 'expiry screens', 'per 1000 vh', 'GT/key/lifetime'],
    m.policies.map((p) => [p.label, p.generateTokenPerViewerHour, p.vsOurs.generateToken, p.tokenApiCallsPerViewerHour,
      p.vsOurs.tokenApiCalls, p.expiryScreens, p.expiryScreensPer1000ViewerHours, p.generateTokenPerKeyLifetime]),
  ));
  if (result.outage) {
    const o = result.outage;
    out.push('', `Outage: ${o.viewers} viewers, every call fails for ${o.outageMinutes} min from ${o.outageFromHour}:00`);
    out.push(table(
      ['policy', 'screens in outage', 'after', 'hit', 'recovered alone', 'human reloads', 'unresolved'],
      o.policies.map((p) => [p.label, p.screensDuringOutage, p.screensInFiveMinutesAfter + p.screensOtherwise,
        p.viewersHit, p.recoveredWithoutHumanReload, p.humanReloads, p.unresolvedAtEndOrClose]),
    ));
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const result = { main: await mainScenario(options), outage: null };
  if (options.outage) result.outage = await outageScenario(options);
  result.runtimeMs = Math.round(performance.now() - started);
  if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else printText(result);
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(2);
});
