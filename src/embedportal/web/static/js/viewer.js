// embedportal viewer: embeds one report per [data-report-slot] with the genuine powerbi-client
// and keeps its embed token alive with the token keeper.
//
// - The page holds no token: the first one comes from the token API, like every later one.
// - Real Power BI embed URLs (https on a Microsoft host) go through powerbi.embed(). Anything
//   else is the local emulator, which powerbi-client >= 2.23 refuses to frame; for it we build
//   the iframe ourselves and hand it to the package's public Report constructor (the SDK then
//   speaks the same postMessage protocol to it). See docs/token-api.md.
// - The token keeper decides when to refresh; this file only maps its states to overlays. The
//   overlays' words come translated from the page (_report_slot.html); the "starting the
//   capacity" screen also shows the server's text (the capacity's own message).
// - The push channel names the page's reports, so the server can note each report's capacity
//   as in use while the page is open (the activity ledger's heartbeat). It heals itself
//   (push-channel.js); when it comes back, stale tokens are asked for at once.
// - Failures are named (docs/token-keeper.md's failure table): a session that is gone (401, a
//   redirect or an HTML page) shows "you are signed out" and comes back by itself after a sign-in;
//   a CSRF refusal fetches a fresh CSRF token; 403 is "access removed"; 404 "report removed".
//   /api/session is the one place asked whether a session exists, and the server's clock.

import { createPushChannel } from './push-channel.js';
import { reportLocale } from './report-locale.js';
import {
  CSRF_CODE,
  SIGNED_OUT_CODE,
  classifyFailure,
  createAccessTokenProvider,
  createTokenKeeper,
  firstTokenPlan,
  retryAfterSeconds,
  sessionPollDelaySeconds,
} from './token-keeper.js';
import { mountToolbar, openingFilters } from './viewer-toolbar.js';

// Hosts powerbi-client itself accepts (its allow-list), so production embeds take its own path.
const MICROSOFT_HOST = /(^|\.)(powerbi\.com|fabric\.microsoft\.com|analysis\.windows-int\.net|analysis-df\.windows\.net|powerbigov\.us|powerbi\.cn|powerbi\.de|powerbi\.sovcloud-api\.fr)$/i;
// `interaction` is the keeper's (at most one a minute per report): the capacity's activity.
const TELEMETRY_TYPES = new Set(['refreshed', 'refreshFailed', 'expired', 'recovered', 'interaction']);
const TELEMETRY_FLUSH_MS = 2000;
// User-owned reports (docs/token-api.md): the token API's tokenType, and its refusal for a
// person who has not signed in with Microsoft (or whose Microsoft sign-in ended).
const AAD_TOKEN_TYPE = 'Aad';
const MICROSOFT_SIGN_IN_CODE = 'MicrosoftSignInNeeded';

const viewers = [];
// For people debugging a wall screen from the console, and for the browser tests.
window.embedportalViewers = viewers;

// Other tabs of this browser hear a sign-out or sign-in here (see base.html).
const SESSION_CHANNEL = 'embedportal-session';

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? '';
}

/** A fresh CSRF token (the session changed in another tab): for our POSTs and htmx's. */
function useCsrfToken(token) {
  if (typeof token !== 'string' || !token) return;
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) meta.content = token;
  try {
    const headers = JSON.parse(document.body.getAttribute('hx-headers') || '{}');
    headers['X-CSRF-Token'] = token;
    document.body.setAttribute('hx-headers', JSON.stringify(headers));
  } catch {
    // no htmx headers on this page
  }
}

/**
 * A redirect (followed or not) or an HTML page where the API's JSON was due: a sign-in page,
 * ours or an SSO gateway's in front of the portal. A proxy's HTML error page (5xx) is not:
 * that is the portal restarting, which passes.
 */
function isSignInAnswer(response) {
  if (response.type === 'opaqueredirect' || response.redirected) return true;
  if (response.status >= 300 && response.status < 400) return true;
  const type = response.headers.get('Content-Type') ?? '';
  return response.status < 300 && !type.includes('json');
}

let sessionQuestion = null;

/**
 * GET /api/session: {signedIn, csrfToken, serverTime}. One question at a time for the whole
 * page (a TV screen's keepers share it). A sign-in page instead of JSON means signed out.
 * Rejects only when the portal cannot be reached.
 */
export function checkSession() {
  if (sessionQuestion) return sessionQuestion;
  sessionQuestion = (async () => {
    const response = await fetch('/api/session', {
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'manual',
      headers: { Accept: 'application/json' },
    });
    if (isSignInAnswer(response)) return { signedIn: false, csrfToken: null, serverTime: null };
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    const answer = {
      signedIn: body?.signedIn === true,
      csrfToken: typeof body?.csrfToken === 'string' ? body.csrfToken : null,
      serverTime: Number.isFinite(body?.serverTime) ? body.serverTime : null,
    };
    if (answer.signedIn) useCsrfToken(answer.csrfToken);
    return answer;
  })().finally(() => {
    sessionQuestion = null;
  });
  return sessionQuestion;
}

/** The server's clock (epoch ms), for the keeper to tell a sleep from a clock change. */
async function serverNow() {
  return (await checkSession()).serverTime;
}

function tokenError(status, code, message, retryAfterSeconds) {
  const error = new Error(message);
  error.status = status;
  error.code = code;
  if (retryAfterSeconds !== undefined) error.retryAfterSeconds = retryAfterSeconds;
  return error;
}

/**
 * POST the token API. Resolves to `{token, tokenId, expiration, expiresIn, policy}`; rejects with
 * the error shape the keeper classifies: `{status, code, message, retryAfterSeconds?}`.
 */
export async function requestToken(url, reason, signal) {
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: {
        Accept: 'application/json',
        'Content-Type': 'application/json',
        'X-CSRF-Token': csrfToken(),
      },
      body: JSON.stringify({ reason: typeof reason === 'string' ? reason : 'load' }),
      signal,
      // A sign-in page's redirect must be seen, not followed into HTML (see isSignInAnswer).
      redirect: 'manual',
    });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw tokenError(0, 'NetworkError', 'The portal could not be reached.');
  }
  if (isSignInAnswer(response)) throw tokenError(401, SIGNED_OUT_CODE, 'Signed out.');
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const fallbackCode = response.status === 401 ? 'Unauthorized'
      : response.status === 403 ? 'Forbidden' : `HTTP${response.status}`;
    throw tokenError(
      response.status,
      typeof body?.code === 'string' ? body.code : fallbackCode,
      typeof body?.detail === 'string' ? body.detail : response.statusText,
      // An HTTP-date is read against the response's own Date (the client clock may be off);
      // the keeper caps the wait again by the token's life left.
      retryAfterSeconds({
        header: response.headers.get('Retry-After'),
        dateHeader: response.headers.get('Date'),
        nowWall: Date.now(),
      }),
    );
  }
  // The server's clock when it answered: the keeper's reference for telling a sleep from a
  // change of the client's clock.
  const serverDate = Date.parse(response.headers.get('Date') ?? '');
  if (body && typeof body === 'object' && Number.isFinite(serverDate)) body.serverDate = serverDate;
  return body;
}

// --- telemetry (batched, best effort) -------------------------------------------------------

const telemetryQueue = [];
let telemetryTimer = null;

function flushTelemetry() {
  telemetryTimer = null;
  if (!telemetryQueue.length) return;
  sendTelemetry(telemetryQueue.splice(0, 100)).catch(() => {});
}

/** POST a batch; refused for a stale CSRF token (signed out and in elsewhere), it is sent once
 * more with a fresh one, so the person's refreshes still count in Admin → Viewer health. */
async function sendTelemetry(events, { renewed = false } = {}) {
  const response = await fetch('/api/telemetry', {
    method: 'POST',
    credentials: 'same-origin',
    keepalive: true,
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
    body: JSON.stringify({ events }),
  });
  if (response.status !== 403 || renewed) return;
  const body = await response.json().catch(() => null);
  if (body?.code !== CSRF_CODE) return;
  const session = await checkSession().catch(() => null);
  if (session?.signedIn) await sendTelemetry(events, { renewed: true });
}

function queueTelemetry(reportId, event) {
  if (!TELEMETRY_TYPES.has(event.type)) return;
  telemetryQueue.push({ type: event.type, reason: event.reason ?? null, reportId });
  if (telemetryTimer === null) telemetryTimer = setTimeout(flushTelemetry, TELEMETRY_FLUSH_MS);
}

window.addEventListener('pagehide', flushTelemetry);

// --- push channel: policy changes and access changes reach open viewers at once --------------

let pushChannel = null;

/** The reports on the page (TV mode: every slot), except those gone for good. */
function watchedReportIds() {
  const ids = new Set();
  for (const slot of document.querySelectorAll('[data-report-slot]')) {
    if (slot.dataset.reportId && !['revoked', 'removed'].includes(slot.dataset.state)) {
      ids.add(slot.dataset.reportId);
    }
  }
  return [...ids];
}

function pushUrl() {
  const ids = watchedReportIds();
  if (!ids.length) return null; // nothing left on screen to keep alive or to count as open
  return `/api/events?${new URLSearchParams(ids.map((id) => ['report', id]))}`;
}

function listenForPushes() {
  if (pushChannel !== null || typeof EventSource !== 'function') return;
  pushChannel = createPushChannel({
    url: pushUrl,
    handlers: {
      policy: (text) => {
        let data = null;
        try {
          data = JSON.parse(text);
        } catch {
          return;
        }
        for (const viewer of viewers) viewer.keeper?.applyPolicy(data?.policy ?? data);
      },
      // The token API is the one judge of access: asking for a token re-checks it.
      access: () => {
        for (const viewer of viewers) viewer.keeper?.refreshNow('access-check');
      },
      // This person signed out somewhere: is it this browser's session?
      session: () => {
        for (const viewer of viewers) viewer.keeper?.checkSession();
      },
    },
    onConnected: (reconnected) => {
      // Back after a restart or a dead connection: what went stale meanwhile is asked for now.
      if (!reconnected) return;
      for (const viewer of viewers) viewer.keeper?.refreshIfStale();
    },
  });
  window.embedportalPush = pushChannel;
}

/** A report is gone for good: the server must stop counting it as open (its heartbeat). */
function stopWatching() {
  pushChannel?.reopen();
}

// Another tab signed out (or in): every keeper asks /api/session (one question per page).
if (typeof BroadcastChannel === 'function') {
  new BroadcastChannel(SESSION_CHANNEL).addEventListener('message', (event) => {
    const type = event?.data?.type;
    if (type !== 'signed-out' && type !== 'signed-in') return;
    for (const viewer of viewers) {
      if (viewer.keeper) viewer.keeper.checkSession({ onlyIfSignedOut: type === 'signed-in' });
      else viewer.askNow?.(); // still waiting for its first token: ask now
    }
  });
}

// A report still waiting for its first token (signed out, capacity off) asks again at once when
// the person comes back to the tab; a running keeper listens for this itself.
for (const [target, name] of [[window, 'focus'], [window, 'online'], [document, 'visibilitychange']]) {
  target.addEventListener(name, () => {
    if (document.visibilityState === 'hidden') return;
    for (const viewer of viewers) if (!viewer.keeper) viewer.askNow?.();
  });
}

// --- embedding -------------------------------------------------------------------------------

function isMicrosoftEmbedUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'https:' && MICROSOFT_HOST.test(parsed.hostname);
  } catch {
    return false;
  }
}

function embedReport(frame, { reportId, embedUrl, name, accessToken, accessTokenProvider, filters }) {
  const pbi = window['powerbi-client'];
  const service = window.powerbi
    ?? new pbi.service.Service(pbi.factories.hpmFactory, pbi.factories.wpmpFactory, pbi.factories.routerFactory);
  const config = {
    type: 'report',
    id: reportId,
    embedUrl,
    accessToken,
    // A user-owned report: the person's own Entra token, renewed through the iframe's hook.
    tokenType: accessTokenProvider ? pbi.models.TokenType.Aad : pbi.models.TokenType.Embed,
    ...(accessTokenProvider ? { eventHooks: { accessTokenProvider } } : {}),
    // Opened filtered (a single sign-on link's view option): powerbi-models basic filters.
    ...(filters?.length ? { filters } : {}),
    permissions: pbi.models.Permissions.Read,
    viewMode: pbi.models.ViewMode.View,
    settings: {
      panes: {
        filters: { visible: false },
        pageNavigation: { visible: true },
      },
      background: pbi.models.BackgroundType.Default,
      hideErrors: false,
      localeSettings: reportLocale(document.documentElement.lang),
    },
  };
  if (isMicrosoftEmbedUrl(embedUrl)) return service.embed(frame, config);

  // The local emulator: powerbi-client only frames https Microsoft hosts, so build the iframe
  // and give it to the package's Report constructor, which then skips that check. The Report
  // must exist before the iframe loads: it listens for the iframe's load event.
  const iframe = document.createElement('iframe');
  iframe.title = name;
  iframe.setAttribute('allowfullscreen', 'true');
  iframe.style.width = '100%';
  iframe.style.height = '100%';
  iframe.style.border = '0';
  const report = new pbi.Report(service, frame, config, false, false, iframe);
  frame.powerBiEmbed = report;
  service.addOrOverwriteEmbed(report, frame);
  // src before the iframe joins the page: an iframe inserted without one loads about:blank
  // first, the SDK answers that load with /report/load, and then ignores the real page's load
  // if it follows within 100 ms (its double-load guard), leaving the report blank.
  const url = report.config.embedUrl;
  iframe.src = `${url}${url.indexOf('?') > 0 ? '&' : '?'}uid=${report.config.uniqueId}`;
  frame.replaceChildren(iframe);
  return report;
}

// --- one slot --------------------------------------------------------------------------------

/** Take the report off the page: the SDK's embed (if it knows it) and the iframe itself. */
function removeReport(frame) {
  try {
    window.powerbi?.reset(frame);
  } catch {
    // the SDK may not know this frame (the emulator's own iframe)
  }
  frame.replaceChildren();
}

function overlays(slot) {
  return [...slot.querySelectorAll('[data-overlay]')];
}

/** The page's translated words for a failure the browser names itself (NetworkError, …);
 * the server's answers come translated already. */
function plainMessage(slot, code) {
  if (!code) return undefined;
  for (const item of slot.querySelectorAll('[data-message-for]')) {
    if (item.dataset.messageFor === code) return item.textContent.trim();
  }
  return undefined;
}

function showOverlay(slot, name, info = {}) {
  for (const overlay of overlays(slot)) {
    const visible = overlay.dataset.overlay === name;
    overlay.hidden = !visible;
    if (!visible) continue;
    const reason = overlay.querySelector('[data-reason]');
    const message = plainMessage(slot, info.code) ?? info.message;
    if (reason && message) reason.textContent = message;
    const code = overlay.querySelector('[data-code]');
    if (code) code.textContent = info.code ?? '';
    const heading = overlay.querySelector('[data-heading]');
    if (heading && overlay.dataset.headingIdentity) {
      heading.dataset.removed ??= heading.textContent;
      heading.textContent = info.code === 'RlsIdentityMissing' ? overlay.dataset.headingIdentity : heading.dataset.removed;
    }
    const signIn = overlay.querySelector('[data-sign-in]');
    if (signIn) signIn.href = `/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
    const microsoft = overlay.querySelector('[data-microsoft-sign-in]');
    if (microsoft) microsoft.href = `/login/microsoft?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
  }
  // Signed out, the report stays under its screen (it resumes without a reload after a sign-in)
  // but must not be reachable with the keyboard either.
  const frame = slot.querySelector('[data-frame]');
  if (frame) frame.inert = name === 'signedOut';
  slot.dataset.state = name ?? 'live';
}

/** Wait `seconds`, or until `viewer.askNow()` (the capacity screen's "Check again"). */
function pause(viewer, seconds) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      viewer.askNow = null;
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    viewer.askNow = done;
  });
}

/** Resolve once /api/session says a session exists, asking with a growing wait (or at once
 * when another tab signs in, or the person comes back to this one). */
async function waitForSession(viewer) {
  for (let poll = 0; ; poll += 1) {
    await pause(viewer, sessionPollDelaySeconds(poll));
    const session = await checkSession().catch(() => null);
    if (session?.signedIn) return;
  }
}

/**
 * Ask for the first token, retrying what may pass (network, 5xx, capacity off or starting,
 * 429); firstTokenPlan decides the screen and the wait. Asking again is what lets the report
 * load by itself once the capacity runs.
 */
async function firstToken(viewer, url) {
  const { slot } = viewer;
  let csrfRenewed = false;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const answer = await requestToken(url, 'load');
      // The report still has to load: "opening" rather than a capacity or failure screen.
      if (slot.dataset.state !== 'loading') showOverlay(slot, 'loading');
      return answer;
    } catch (error) {
      if (error?.code === MICROSOFT_SIGN_IN_CODE) {
        showOverlay(slot, 'microsoftSignIn');
        throw error;
      }
      // The session changed in another tab since this page was made: a fresh CSRF token,
      // then at once again (once).
      let signedOut = classifyFailure(error).kind === 'signedOut';
      if (classifyFailure(error).kind === 'csrf' && !csrfRenewed) {
        csrfRenewed = true;
        const session = await checkSession().catch(() => null);
        if (session?.signedIn) {
          attempt -= 1;
          continue;
        }
        signedOut = session?.signedIn === false;
      }
      if (signedOut) {
        // Signed out before the report ever showed: the sign-in link is on screen; once a
        // session exists again (signed in here or in another tab) the report opens by itself.
        showOverlay(slot, 'signedOut');
        await waitForSession(viewer);
        csrfRenewed = false;
        attempt = -1;
        continue;
      }
      const plan = firstTokenPlan({ attempt, error });
      showOverlay(slot, plan.screen, { message: error.message, code: error.code });
      if (plan.final) {
        slot.querySelector('[data-retry]')?.setAttribute('hidden', '');
        throw error;
      }
      await pause(viewer, plan.delaySeconds);
    }
  }
}

/** Embed the slot's report and keep it alive. Resolves to the viewer record. */
export async function mountSlot(slot) {
  const { reportId, embedUrl, tokenUrl, reportName } = slot.dataset;
  const frame = slot.querySelector('[data-frame]');
  const viewer = { reportId, slot, report: null, keeper: null, lastError: null, askNow: null };
  viewers.push(viewer);
  slot.querySelector('[data-retry]')?.addEventListener('click', () => window.location.reload());
  // A person asks on the "off" screen. Someone allowed to turn the capacity on gets it started
  // (the server starts a capacity for a person's request, never for a report kept alive);
  // anyone else gets a fresh look.
  slot.querySelector('[data-check-capacity]')?.addEventListener('click', () => {
    if (viewer.keeper) viewer.keeper.refreshNow('interaction');
    else viewer.askNow?.();
  });

  if (!window['powerbi-client']) {
    showOverlay(slot, 'failed', { message: 'powerbi-client did not load.', code: 'ScriptMissing' });
    return viewer;
  }
  showOverlay(slot, 'loading');
  let first;
  try {
    first = await firstToken(viewer, tokenUrl);
  } catch (error) {
    viewer.lastError = error;
    return viewer;
  }

  // User-owned (embed for your organization): the iframe asks through the hook, which asks the
  // keeper; a failed refresh is null, and the keeper's expiry screen and recovery take over.
  const userOwned = first.tokenType === AAD_TOKEN_TYPE;
  const accessTokenProvider = userOwned ? createAccessTokenProvider(async () => {
    const refreshed = await viewer.keeper?.refreshNow('hook');
    return refreshed ? viewer.keeper.currentToken() : null;
  }) : undefined;
  const report = embedReport(frame, {
    reportId, embedUrl, name: reportName, accessToken: first.token, accessTokenProvider,
    filters: openingFilters(slot),
  });
  viewer.report = report;
  report.on('loaded', () => {
    if (slot.dataset.state === 'loading') showOverlay(slot, null);
  });
  report.on('rendered', () => {
    slot.dataset.rendered = 'true';
  });
  // The iframe says the capacity went off while the report is open: ask the server now. Its
  // 503 CapacityNotActive puts the keeper in the "capacity is off" state, which keeps retrying
  // and reloads the report by itself once the capacity runs again.
  report.on('error', (event) => {
    if (event?.detail?.message === 'CapacityNotActive') viewer.keeper?.refreshNow('capacity');
  });

  viewer.keeper = createTokenKeeper({
    report,
    initial: first,
    fetchToken: (reason, { signal } = {}) => requestToken(tokenUrl, reason, signal).then((answer) => {
      // An administrator switched how the report is embedded: embed it anew, the other way.
      if ((answer?.tokenType === AAD_TOKEN_TYPE) !== userOwned) window.location.reload();
      return answer;
    }, (error) => {
      viewer.lastError = error;
      throw error;
    }),
    onState: (state, info) => {
      if (state === 'expired') showOverlay(slot, 'expired', info);
      else if (state === 'capacityOff') showOverlay(slot, 'capacityOff', info);
      else if (state === 'capacityStarting') showOverlay(slot, state, { message: info?.detail });
      else if (state === 'signedOut') showOverlay(slot, 'signedOut', info);
      else if (state === 'revoked' && viewer.lastError?.code === MICROSOFT_SIGN_IN_CODE) {
        showOverlay(slot, 'microsoftSignIn');
        removeReport(frame);
      } else if (state === 'revoked' || state === 'removed') {
        const message = state === 'revoked' ? viewer.lastError?.message : undefined;
        showOverlay(slot, state, { message, code: info?.code });
        // Nothing of the report may stay on screen once access (or the report) is gone.
        removeReport(frame);
        stopWatching();
      } else if (state === 'live' && slot.dataset.state !== 'loading') showOverlay(slot, null);
    },
    onTelemetry: (event) => queueTelemetry(reportId, event),
    checkSession,
    serverNow,
  });
  viewer.keeper.start();
  listenForPushes();
  return viewer;
}

const single = document.getElementById('viewer');
if (single) {
  mountSlot(single);
  // The toolbar (viewer-toolbar.js; none in TV mode) acts on this slot's report once it exists.
  mountToolbar({
    toolbar: document.querySelector('[data-viewer-toolbar]'),
    slot: single,
    stage: single.closest('[data-viewer-stage]'),
    getReport: () => viewers.find((viewer) => viewer.slot === single)?.report ?? null,
    userId: document.querySelector('[data-user-id]')?.dataset.userId,
  });
}
