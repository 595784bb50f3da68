// embedportal push channel: one self-healing EventSource to /api/events for a page.
//
// The browser's own EventSource reconnection cannot be relied on: after an HTTP error (a
// reverse proxy's 502 while the portal restarts) it gives up for good, and while it does retry
// it uses one fixed delay for every viewer at once. So this channel owns reconnection: on any
// error it closes the EventSource and opens a new one after a full-jitter backoff; and it
// watches the server's heartbeat, so a stream that went silent (a proxy holding a dead
// connection) is replaced too. Plain ES module with injectable timers, like the token keeper.

/** Reconnection backoff: full jitter over a doubling ceiling, in seconds. */
export const RECONNECT_BASE_SECONDS = 1;
export const RECONNECT_MAX_SECONDS = 30;
/** The heartbeat the server announces in its `hello` event; this until it does. */
export const DEFAULT_HEARTBEAT_SECONDS = 15;
/** A stream silent for this many heartbeat intervals is taken for dead. */
export const SILENT_HEARTBEATS = 2;
// Full jitter can draw ~0; a floor keeps a persistent failure from becoming a busy loop.
const MIN_RECONNECT_DELAY_MS = 100;

/** Wait before reconnection number `attempt` (0 = the first), in ms. */
export function reconnectDelayMs(attempt, random = Math.random) {
  const n = Math.max(0, Math.floor(Number(attempt) || 0));
  const ceiling = Math.min(RECONNECT_MAX_SECONDS, RECONNECT_BASE_SECONDS * 2 ** Math.min(n, 30));
  let r = Number(random());
  if (!(r >= 0)) r = 0;
  if (r > 1) r = 1;
  return Math.max(MIN_RECONNECT_DELAY_MS, r * ceiling * 1000);
}

/** The heartbeat interval a `hello` event's data announces (seconds), or the default. */
export function announcedHeartbeatSeconds(data) {
  let value;
  try {
    value = JSON.parse(data)?.heartbeatSeconds;
  } catch {
    value = undefined;
  }
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : DEFAULT_HEARTBEAT_SECONDS;
}

/**
 * Open the channel. `url()` names the stream (null: nothing to watch, stay closed); `handlers`
 * maps event names to functions of the event's data (text); `onConnected(reconnected)` runs
 * when a stream opens (`reconnected`: an earlier one had been lost). Returns
 * {reopen(), close(), snapshot()}.
 */
export function createPushChannel({
  url,
  handlers = {},
  onConnected,
  EventSource: EventSourceClass = globalThis.EventSource,
  setTimeout: setTimer = (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: clearTimer = (id) => globalThis.clearTimeout(id),
  random = Math.random,
} = {}) {
  let source = null;
  let failures = 0; // consecutive lost streams since one last opened
  let reconnectTimer = null;
  let silenceTimer = null;
  let heartbeatSeconds = DEFAULT_HEARTBEAT_SECONDS;
  let everConnected = false;
  let lost = false; // a stream was lost since the last one opened
  let closed = false;
  let opened = 0;

  function clearTimers() {
    if (reconnectTimer !== null) clearTimer(reconnectTimer);
    if (silenceTimer !== null) clearTimer(silenceTimer);
    reconnectTimer = null;
    silenceTimer = null;
  }

  /** Any message (heartbeat included) proves the stream alive: restart the silence watch. */
  function heard() {
    if (silenceTimer !== null) clearTimer(silenceTimer);
    silenceTimer = setTimer(() => {
      silenceTimer = null;
      lose();
    }, SILENT_HEARTBEATS * heartbeatSeconds * 1000);
  }

  function drop() {
    if (source === null) return;
    try {
      source.close();
    } catch {
      // already closed
    }
    source = null;
  }

  /** The stream failed or went silent: close it, open a new one after the backoff. */
  function lose() {
    drop();
    clearTimers();
    if (closed) return;
    lost = true;
    const delay = reconnectDelayMs(failures, random);
    failures += 1;
    reconnectTimer = setTimer(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (closed || typeof EventSourceClass !== 'function') return;
    const target = url();
    if (!target) return; // nothing on the page to watch
    const current = new EventSourceClass(target);
    source = current;
    opened += 1;
    const mine = (fn) => (event) => {
      if (source === current) fn(event);
    };
    current.addEventListener('open', mine(() => {
      const reconnected = everConnected || lost;
      everConnected = true;
      failures = 0;
      lost = false;
      heard();
      if (typeof onConnected === 'function') onConnected(reconnected);
    }));
    current.addEventListener('error', mine(() => lose()));
    current.addEventListener('hello', mine((event) => {
      heartbeatSeconds = announcedHeartbeatSeconds(event.data);
      heard();
    }));
    current.addEventListener('heartbeat', mine(() => heard()));
    current.addEventListener('message', mine(() => heard()));
    for (const [name, handler] of Object.entries(handlers)) {
      current.addEventListener(name, mine((event) => {
        heard();
        handler(event.data);
      }));
    }
    // The silence watch runs from the start: a connection that neither opens nor fails (a
    // proxy that accepted it and then said nothing) is replaced like a silent stream.
    heard();
  }

  connect();
  return {
    /** Open a new stream now (e.g. the page's reports changed). */
    reopen() {
      drop();
      clearTimers();
      if (!closed) connect();
    },
    close() {
      closed = true;
      drop();
      clearTimers();
    },
    snapshot() {
      return { connected: source !== null, opened, failures, heartbeatSeconds };
    },
  };
}
