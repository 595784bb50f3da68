/*
 * The iframe's end of powerbi-client's postMessage protocol (docs/emulator-iframe.md).
 *
 * Loaded as the first blocking script in <head>: the SDK sends POST /report/load on the iframe's
 * load event, so the listener must exist before then. Requests that arrive before the report code
 * registers its handler are queued.
 *
 * Host -> iframe requests look like {method, url, headers: {id, uid, ...}, body}; we answer each
 * one with {statusCode, statusText, headers: {id}, body}. Iframe -> host requests (events, hooks)
 * have the same shape; the host's replies carry a numeric statusCode and the id we chose.
 */
(function () {
  "use strict";

  const ns = (window.EmbedEmulator = window.EmbedEmulator || {});

  const STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
  };

  const params = new URLSearchParams(window.location.search);
  let uid = params.get("uid") || "";
  let host = null; // {window, origin} of the page that sent the last request
  let requestHandler = null;
  const queued = [];
  const pending = new Map();
  let counter = 0;

  function newId() {
    counter += 1;
    const random = new Uint32Array(1);
    window.crypto.getRandomValues(random);
    return "emu" + counter.toString(36) + random[0].toString(36);
  }

  function hostTarget() {
    if (host && host.window) return host;
    return { window: window.parent, origin: "*" };
  }

  function reply(request, source, origin, statusCode, body) {
    const headers = { id: request.headers && request.headers.id };
    const message = {
      statusCode: statusCode,
      statusText: STATUS_TEXT[statusCode] || String(statusCode),
      headers: headers,
      body: body === undefined ? null : body,
    };
    source.postMessage(message, origin);
  }

  function dispatch(request, source, origin) {
    let answered = false;
    const respond = function (statusCode, body) {
      if (answered) return;
      answered = true;
      reply(request, source, origin, statusCode, body);
    };
    Promise.resolve()
      .then(function () {
        return requestHandler(request, respond);
      })
      .catch(function (error) {
        respond(500, {
          message: "InternalError",
          detailedMessage: "The emulator failed to handle " + request.method + " " + request.url,
        });
        // No request data here: bodies can carry tokens.
        console.error("embed emulator: handler failed:", String(error && error.stack));
      })
      .then(function () {
        // A handler that forgot to answer must not leave the SDK waiting forever.
        respond(500, { message: "InternalError", detailedMessage: "No answer was produced" });
      });
  }

  function onMessage(event) {
    const data = event.data;
    if (!data || typeof data !== "object") return;

    // A reply to one of our own requests (an event or a hook call).
    if (typeof data.statusCode === "number" || "warning" in data) {
      const id = data.headers && data.headers.id;
      const waiter = id && pending.get(id);
      if (waiter) {
        pending.delete(id);
        clearTimeout(waiter.timer);
        waiter.resolve(data);
      }
      return;
    }

    if (typeof data.method !== "string" || typeof data.url !== "string" || !event.source) return;
    const origin = event.origin && event.origin !== "null" ? event.origin : "*";
    host = { window: event.source, origin: origin };
    if (data.headers && typeof data.headers.uid === "string" && data.headers.uid) {
      uid = data.headers.uid;
    }
    if (requestHandler) {
      dispatch(data, event.source, origin);
    } else {
      queued.push([data, event.source, origin]);
    }
  }

  window.addEventListener("message", onMessage, false);

  /** Send a request to the host; resolves with its reply, or with null after timeoutMs. */
  function request(url, body, timeoutMs) {
    const id = newId();
    const target = hostTarget();
    return new Promise(function (resolve) {
      const timer = setTimeout(function () {
        pending.delete(id);
        resolve(null);
      }, timeoutMs || 10000);
      pending.set(id, { resolve: resolve, timer: timer });
      target.window.postMessage(
        { method: "POST", url: url, headers: { id: id }, body: body === undefined ? null : body },
        target.origin,
      );
    });
  }

  ns.transport = {
    get uid() {
      return uid;
    },
    /** handler(request, respond) answers with respond(statusCode, body); it may be async. */
    onRequest: function (handler) {
      requestHandler = handler;
      while (queued.length) {
        const item = queued.shift();
        dispatch(item[0], item[1], item[2]);
      }
    },
    /** Raise a report event on the host's container element (report.on(name, ...)). */
    postEvent: function (name, detail) {
      return request("/reports/" + uid + "/events/" + name, detail === undefined ? null : detail);
    },
    /** Call an SDK event hook (eventHooks.accessTokenProvider is "newAccessToken"). */
    callHook: function (name, body, timeoutMs) {
      return request("/reports/" + uid + "/eventHooks/" + name, body || {}, timeoutMs);
    },
  };
})();
