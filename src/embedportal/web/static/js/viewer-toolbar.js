// The viewer's toolbar: refresh the visuals, refresh them every N minutes, full screen, print,
// reset the filters. Each action is a call of the genuine powerbi-client's Report (refresh(),
// print(), updateFilters(), the slicers' setSlicerState()) or the browser's Fullscreen API.
//
// - The toolbar's words come translated from the page (viewer.html); this file only fills in
//   numbers ("{minutes}").
// - Auto-refresh is off by default and remembered per report and person in localStorage
//   (autoRefreshKey); it refreshes only while the report is on screen and live.
// - Full screen is the report's own container (with a visible "Exit full screen" button): Esc
//   leaves it, as the browser does for any full-screen element.
// - The pure parts (minutes, storage, reset plan, the timer) are node-tested in
//   tests/js/viewer-toolbar.test.js; mountToolbar is the DOM hook-up, tested in the browser.

export const MIN_MINUTES = 1;
export const MAX_MINUTES = 59;
const MINUTE_MS = 60_000;

// powerbi-models' FiltersOperations, for a report object without the models at hand.
const REMOVE_ALL = 0;
const REPLACE_ALL = 1;

/** Whole minutes 1–59 from a form value, or null for anything else. */
export function parseMinutes(value) {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
  if (!/^\d{1,2}$/.test(text)) return null;
  const minutes = Number(text);
  return minutes >= MIN_MINUTES && minutes <= MAX_MINUTES ? minutes : null;
}

/** Where one person's auto-refresh choice for one report is kept. */
export function autoRefreshKey(userId, reportId) {
  return `embedportal:auto-refresh:${userId || 'anonymous'}:${reportId}`;
}

/** The remembered choice: minutes (1–59) or null (off). A broken or blocked storage is "off". */
export function readAutoRefresh(storage, key) {
  try {
    return parseMinutes(storage?.getItem(key) ?? '');
  } catch {
    return null;
  }
}

/** Remember `minutes` (or forget it for null); false when the storage refused. */
export function writeAutoRefresh(storage, key, minutes) {
  try {
    if (minutes === null) storage.removeItem(key);
    else storage.setItem(key, String(minutes));
    return true;
  } catch {
    return false;
  }
}

/**
 * The basic filters a slot's report opened with (`data-filters`, set for a report opened
 * filtered by a single sign-on link), or none.
 */
export function openingFilters(slot) {
  try {
    const filters = JSON.parse(slot?.dataset?.filters || '[]');
    return Array.isArray(filters) ? filters : [];
  } catch {
    return [];
  }
}

/**
 * Put every filter the reader changed back: the report's filters (to those it opened with, if
 * any), each page's filters and each slicer's selection, through the SDK's own calls. Resolves
 * to the number of slicers cleared.
 */
export async function resetFilters(report, removeAll = REMOVE_ALL, opening = [], replaceAll = REPLACE_ALL) {
  if (opening.length) await report.updateFilters(replaceAll, opening);
  else await report.updateFilters(removeAll);
  const pages = await report.getPages();
  let slicers = 0;
  for (const page of pages) {
    await page.updateFilters(removeAll);
    const visuals = await page.getVisuals();
    for (const visual of visuals) {
      if (visual.type !== 'slicer') continue;
      await visual.setSlicerState({ filters: [] });
      slicers += 1;
    }
  }
  return slicers;
}

/**
 * Calls `refresh()` every `minutes` while started; `when()` (optional) may skip a turn (the
 * report is not live). Timers are injectable for the tests.
 */
export function createAutoRefresher({
  refresh,
  when = () => true,
  setTimer = (fn, ms) => setInterval(fn, ms),
  clearTimer = (id) => clearInterval(id),
}) {
  let timer = null;
  let minutes = null;
  return {
    get minutes() {
      return minutes;
    },
    start(value) {
      this.stop();
      minutes = parseMinutes(value);
      if (minutes === null) return false;
      timer = setTimer(() => {
        if (when()) Promise.resolve().then(refresh).catch(() => {});
      }, minutes * MINUTE_MS);
      return true;
    },
    stop() {
      if (timer !== null) clearTimer(timer);
      timer = null;
      minutes = null;
    },
  };
}

/** "{minutes}" in a translated sentence. */
export function fillMinutes(text, minutes) {
  return String(text ?? '').replaceAll('{minutes}', String(minutes));
}

// --- the DOM hook-up -------------------------------------------------------------------------

function safeStorage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/**
 * Wire the toolbar `[data-viewer-toolbar]` to the report in `slot`. `getReport()` answers the
 * SDK's Report once it exists (null before: the buttons then do nothing).
 */
export function mountToolbar({ toolbar, slot, stage, getReport, userId }) {
  if (!toolbar || !slot) return null;
  const find = (name) => toolbar.querySelector(`[data-action="${name}"]`);
  const status = toolbar.querySelector('[data-toolbar-status]');
  const live = () => slot.dataset.state === 'live' && getReport() !== null;
  const say = (text) => {
    if (status) status.textContent = text ?? '';
  };

  async function run(name, action) {
    const report = getReport();
    if (!report || !live()) return;
    const button = find(name);
    if (button) button.setAttribute('aria-busy', 'true');
    try {
      await action(report);
      say(button?.dataset.done);
    } catch {
      say(button?.dataset.failed);
    } finally {
      button?.removeAttribute('aria-busy');
    }
  }

  find('refresh')?.addEventListener('click', () => run('refresh', (report) => report.refresh()));
  find('print')?.addEventListener('click', () => run('print', (report) => report.print()));
  const operations = () => window['powerbi-client']?.models?.FiltersOperations ?? {};
  find('reset')?.addEventListener('click', () => run('reset', (report) => resetFilters(
    report,
    operations().RemoveAll ?? REMOVE_ALL,
    openingFilters(slot),
    operations().ReplaceAll ?? REPLACE_ALL,
  )));

  // --- auto-refresh ---
  const storage = safeStorage();
  const key = autoRefreshKey(userId, slot.dataset.reportId);
  const form = toolbar.querySelector('[data-auto-refresh]');
  const enabled = form?.querySelector('[data-auto-refresh-on]');
  const input = form?.querySelector('[data-auto-refresh-minutes]');
  const problem = form?.querySelector('[data-auto-refresh-problem]');
  const summary = toolbar.querySelector('[data-auto-refresh-summary]');
  const refresher = createAutoRefresher({
    refresh: () => getReport()?.refresh(),
    // Not while the report is off screen or behind an overlay (expired, capacity off).
    when: () => live() && document.visibilityState !== 'hidden',
  });
  toolbar.autoRefresher = refresher; // for the browser tests

  function showAutoRefresh(minutes) {
    if (summary) {
      summary.textContent = minutes === null ? summary.dataset.off
        : fillMinutes(summary.dataset.on, minutes);
    }
    toolbar.dataset.autoRefresh = minutes === null ? 'off' : String(minutes);
  }

  function applyAutoRefresh() {
    if (!enabled || !input) return;
    const minutes = parseMinutes(input.value);
    const invalid = minutes === null;
    input.setAttribute('aria-invalid', invalid ? 'true' : 'false');
    if (problem) problem.hidden = !invalid;
    if (!enabled.checked) {
      refresher.stop();
      writeAutoRefresh(storage, key, null);
      showAutoRefresh(null);
      return;
    }
    if (invalid) return; // the message says why; the last good choice keeps running
    refresher.start(minutes);
    writeAutoRefresh(storage, key, minutes);
    showAutoRefresh(minutes);
  }

  // The choice closes with Esc (back on its button) or a click elsewhere, like a menu.
  const details = toolbar.querySelector('details');
  details?.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !details.open) return;
    details.open = false;
    details.querySelector('summary')?.focus();
  });
  document.addEventListener('click', (event) => {
    if (details?.open && !details.contains(event.target)) details.open = false;
  });

  if (form && enabled && input) {
    const remembered = readAutoRefresh(storage, key);
    if (remembered !== null) {
      enabled.checked = true;
      input.value = String(remembered);
      refresher.start(remembered);
    }
    showAutoRefresh(remembered);
    enabled.addEventListener('change', applyAutoRefresh);
    input.addEventListener('change', applyAutoRefresh);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      applyAutoRefresh();
    });
  }

  // --- full screen: the report's container, with its own exit button ---
  const target = stage ?? slot;
  const enter = find('fullscreen');
  const exit = target.querySelector('[data-action="exit-fullscreen"]');
  const canFullscreen = typeof target.requestFullscreen === 'function' && document.fullscreenEnabled !== false;
  if (enter && !canFullscreen) enter.hidden = true;
  enter?.addEventListener('click', () => {
    if (document.fullscreenElement === target) {
      document.exitFullscreen?.().catch(() => {});
      return;
    }
    target.requestFullscreen?.().catch(() => say(enter.dataset.failed));
  });
  exit?.addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen?.().catch(() => {});
  });
  document.addEventListener('fullscreenchange', () => {
    const full = document.fullscreenElement === target;
    target.classList.toggle('is-fullscreen', full);
    if (exit) exit.hidden = !full;
    enter?.setAttribute('aria-pressed', full ? 'true' : 'false');
    if (full) exit?.focus();
    else enter?.focus();
  });
  // Esc leaves full screen in every browser by itself; this covers the keyboard focus on the
  // exit button (and browsers that pass the key to the page).
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && document.fullscreenElement === target) {
      document.exitFullscreen?.().catch(() => {});
    }
  });
  return { refresher };
}
