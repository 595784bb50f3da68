/*
 * The emulated report: answers powerbi-client's requests (emu-transport.js), reads the report
 * through the emulator's private data API (docs/emulator-contract.md) with the current embed
 * token, draws pages of visuals (emu-visuals.js) and raises the SDK's events.
 * The protocol as emulated is described in docs/emulator-iframe.md.
 *
 * Nothing here logs report data or tokens, and tokens never go into a URL.
 */
(function () {
  "use strict";

  const ns = window.EmbedEmulator;
  const transport = ns.transport;
  const filterRules = ns.filters; // emu-filters.js
  const aadRules = ns.aad; // emu-aad.js
  const query = new URLSearchParams(window.location.search);

  // The visual type names Power BI reports for our visual kinds (IVisual.type).
  const POWERBI_VISUAL_TYPES = {
    card: "card",
    bar: "clusteredBarChart",
    line: "lineChart",
    table: "tableEx",
    slicer: "slicer",
  };
  // IVisual.layout is in pixels in Power BI; our 12-column grid maps onto a 1280 x 720 page.
  const NOMINAL_PAGE = { width: 1280, height: 720 };
  const FATAL = 6; // models.TraceType.Fatal

  const TOKEN_EXPIRED_ERROR = {
    message: "TokenExpired",
    detailedMessage: "Access token has expired, resubmit with a new access token",
    errorCode: "403",
    level: FATAL,
  };
  const CAPACITY_NOT_ACTIVE_ERROR = {
    message: "CapacityNotActive",
    detailedMessage: "Capacity operation failed with error code CapacityNotActive",
    errorCode: "503",
    level: FATAL,
  };

  // Looked up on use: this script runs in <head>, before the body exists.
  const dom = {
    get page() {
      return document.getElementById("page");
    },
    get tabs() {
      return document.getElementById("page-tabs");
    },
  };

  const state = {
    session: 0, // bumped by every /report/load and /report/prepare: older async work is dropped
    pass: 0, // bumped by every render pass: only the newest reports errors and "rendered"
    reportId: query.get("reportId") || "",
    groupId: query.get("groupId") || "",
    token: null,
    tokenProviderSupplied: false,
    tokenRequest: null, // the in-flight eventHooks/newAccessToken call
    tokenType: undefined, // the load configuration's: 0 Aad (a person's Entra token), 1 Embed
    hookTimer: null, // when the report next asks its host for a new Entra token
    hookFailures: 0, // answers of null (or errors) for the current token
    expiryShown: false, // the expired token's screen is up: a new token redraws the report
    expiryDrawnFor: null, // the token whose expiry the hook's schedule has drawn
    settings: {},
    formatter: ns.format.createFormatter(query.get("formatLocale")),
    definition: null,
    definitionPromise: null,
    definitionInFlight: false,
    loadProblem: null,
    loadedPosted: false,
    requestedPage: null,
    activePage: null,
    reportFilters: [],
    pageFilters: {},
    slicerValues: {},
    views: new Map(),
    shownPage: null,
  };

  // ---------------------------------------------------------------- helpers

  function nextPaint() {
    return new Promise(function (resolve) {
      const timer = setTimeout(resolve, 250); // rAF does not run in a hidden page
      requestAnimationFrame(function () {
        requestAnimationFrame(function () {
          clearTimeout(timer);
          resolve();
        });
      });
    });
  }

  function notSupported(method, path) {
    return { message: "NotSupported", detailedMessage: method + " " + path + " is not emulated" };
  }

  function invalid(message) {
    return [{ message: message }];
  }

  function pageInfo(page, isActive) {
    return { name: page.name, displayName: page.displayName, isActive: !!isActive, visibility: 0 };
  }

  function findPage(name) {
    const pages = (state.definition && state.definition.pages) || [];
    return pages.find((page) => page.name === name) || null;
  }

  function activePage() {
    return findPage(state.activePage);
  }

  // ---------------------------------------------------------------- data API

  function apiError(status, code, message) {
    return { status: status, code: code, message: message || "" };
  }

  /** A person's Entra token (a JWT) is a bearer token; an embed token has its own scheme. Told
   * apart by shape, not tokenType: hosts also pass embed tokens as Aad to get the hook. */
  function authorization(token) {
    return (String(token).split(".").length === 3 ? "Bearer " : "EmbedToken ") + token;
  }

  async function send(path, body, token) {
    const init = {
      method: body === undefined ? "GET" : "POST",
      headers: { Accept: "application/json", Authorization: authorization(token) },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_error) {
      return { error: apiError(0, "NetworkError", "The emulator could not be reached") };
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch (_error) {
      payload = null;
    }
    if (response.ok) return { data: payload };
    const info = (payload && payload.error) || {};
    return { error: apiError(response.status, info.code || "HTTP" + response.status, info.message) };
  }

  /** Ask the host's eventHooks.accessTokenProvider for a token (one call at a time). */
  function tokenFromProvider() {
    if (!state.tokenRequest) {
      const session = state.session;
      state.tokenRequest = transport
        .callHook("newAccessToken", {}, 30000)
        .then(function (reply) {
          const ok = reply && reply.statusCode === 200 && typeof reply.body === "string";
          if (!ok || !reply.body || session !== state.session) return null;
          state.token = reply.body;
          state.hookFailures = 0;
          scheduleTokenHook();
          return reply.body;
        })
        .finally(function () {
          state.tokenRequest = null;
        });
    }
    return state.tokenRequest;
  }

  /** Seconds before a person's token expires that the report asks its host for a new one
   * (the emulator's EMBEDPORTAL_EMULATOR_TOKEN_HOOK_LEAD_SECONDS, written on the page). */
  function hookLeadSeconds() {
    const value = Number(document.documentElement.dataset.tokenHookLeadSeconds);
    return isFinite(value) && value >= 0 ? value : 600;
  }

  /** Plan the next ask for a new Entra token, when the host renews through the hook. */
  function scheduleTokenHook() {
    clearTimeout(state.hookTimer);
    state.hookTimer = null;
    if (!aadRules.usesHook({ tokenType: state.tokenType }, state.tokenProviderSupplied)) return;
    const delay = aadRules.nextAskDelay({
      now: Date.now(),
      expiresAt: aadRules.expiryOf(state.token),
      leadSeconds: hookLeadSeconds(),
      failures: state.hookFailures,
    });
    if (delay === null) return;
    const session = state.session;
    state.hookTimer = setTimeout(function () {
      if (session === state.session) askHostForToken();
    }, delay);
  }

  async function askHostForToken() {
    const before = state.token;
    const fresh = await tokenFromProvider().catch(() => null);
    if (fresh && fresh !== before) {
      if (state.expiryShown) renderPass();
      return;
    }
    state.hookFailures += 1;
    const expiresAt = aadRules.expiryOf(state.token);
    if (expiresAt !== null && Date.now() >= expiresAt && state.expiryDrawnFor !== state.token) {
      // No token came in time: the visuals show the expiry (once per token), as Power BI's do.
      state.expiryDrawnFor = state.token;
      renderPass();
    }
    scheduleTokenHook();
  }

  /** setAccessToken: plan from the new token, and redraw a report showing the expiry. */
  function tokenReplaced() {
    state.hookFailures = 0;
    scheduleTokenHook();
    if (state.expiryShown) renderPass();
  }

  /** Call the data API; throws {status, code, message}. On TokenExpired, when the host supplied
   * a token provider, get a new token from it and retry once. */
  async function api(path, body) {
    const token = state.token;
    let result = await send(path, body, token);
    if (result.error && result.error.code === "TokenExpired" && state.tokenProviderSupplied) {
      const fresh = state.token !== token ? state.token : await tokenFromProvider();
      if (fresh && fresh !== token) result = await send(path, body, fresh);
    }
    if (result.error) throw result.error;
    return result.data;
  }

  function reportPath(suffix) {
    return "/emulator/api/reports/" + encodeURIComponent(state.reportId) + (suffix || "");
  }

  // ---------------------------------------------------------------- errors

  /** What a visual shows, and the `error` event a failing render pass raises. */
  function visualProblem(error) {
    if (error.code === "TokenExpired") {
      return { code: "ClientError_TokenExpired", friendly: "", event: TOKEN_EXPIRED_ERROR, rank: 0 };
    }
    if (error.code === "CapacityNotActive") {
      return {
        code: "CapacityNotActive",
        friendly: "The capacity behind this report is paused.",
        event: CAPACITY_NOT_ACTIVE_ERROR,
        rank: 1,
      };
    }
    const code = error.code || "UnknownError";
    return {
      code: code,
      friendly: "",
      event: {
        message: code,
        detailedMessage: error.message || "Could not load data for a visual",
        errorCode: String(error.status || 500),
        level: FATAL,
      },
      rank: code === "PowerBINotAuthorizedException" ? 2 : 3,
    };
  }

  /** What the page shows, and the `error` event raised, when the report itself can't load. */
  function reportProblem(error) {
    if (error.code === "TokenExpired" || error.code === "CapacityNotActive") {
      const problem = visualProblem(error);
      return { code: problem.code, friendly: problem.friendly, event: problem.event, status: error.status };
    }
    return {
      code: error.code,
      friendly: "",
      status: error.status || 500,
      event: {
        message: "LoadReportFailed",
        detailedMessage: "Get report failed",
        errorCode: String(error.status || 500),
        level: FATAL,
        technicalDetails: { errorInfo: [{ key: "reason", value: error.code }] },
      },
    };
  }

  // ---------------------------------------------------------------- report definition

  function normalizeVisual(visual) {
    const layout = visual.layout || {};
    const x = Math.min(Math.max(Math.floor(layout.x || 0), 0), 11);
    const width = Math.min(Math.max(Math.floor(layout.width || 3), 1), 12 - x);
    return Object.assign({}, visual, {
      layout: {
        x: x,
        y: Math.max(Math.floor(layout.y || 0), 0),
        width: width,
        height: Math.max(Math.floor(layout.height || 2), 1),
      },
    });
  }

  function normalizeDefinition(definition) {
    if (!definition || !Array.isArray(definition.pages) || !definition.pages.length) return null;
    return Object.assign({}, definition, {
      pages: definition.pages.map(function (page) {
        return Object.assign({}, page, {
          displayName: page.displayName || page.name,
          visuals: (page.visuals || []).map(normalizeVisual),
        });
      }),
    });
  }

  async function fetchDefinition(session) {
    let definition = null;
    let problem = null;
    try {
      definition = normalizeDefinition(await api(reportPath()));
      if (!definition) problem = reportProblem(apiError(500, "InvalidDefinition"));
    } catch (error) {
      problem = reportProblem(error);
    }
    if (session !== state.session) return false;
    const workspace = definition && (definition.groupId || definition.workspaceId);
    if (!problem && workspace && state.groupId && workspace !== state.groupId) {
      problem = {
        code: "PowerBINotAuthorizedException",
        friendly: "",
        status: 401,
        event: {
          message: "PowerBINotAuthorizedException",
          detailedMessage: "The report is not in the workspace the embed URL names",
          errorCode: "401",
          level: FATAL,
        },
      };
    }
    if (problem) {
      state.loadProblem = problem;
      showReportProblem(problem);
      transport.postEvent("error", problem.event);
      return false;
    }
    state.definition = definition;
    state.loadProblem = null;
    const wanted = findPage(state.requestedPage) || definition.pages[0];
    state.activePage = wanted.name;
    renderTabs();
    if (!state.loadedPosted) {
      state.loadedPosted = true;
      transport.postEvent("loaded", null);
    }
    return true;
  }

  function ensureDefinition() {
    if (state.definition) return Promise.resolve(true);
    if (state.definitionInFlight) return state.definitionPromise;
    const session = state.session;
    state.definitionInFlight = true;
    state.definitionPromise = fetchDefinition(session).finally(function () {
      if (session === state.session) state.definitionInFlight = false;
    });
    return state.definitionPromise;
  }

  /** Resolve once the current load attempt settled, without starting a new one. */
  function definitionSettled() {
    if (state.definition) return Promise.resolve(true);
    return state.definitionPromise || Promise.resolve(false);
  }

  // ---------------------------------------------------------------- filters (rules: emu-filters.js)

  function slicerFilter(visual) {
    return filterRules.slicerFilter(visual, state.slicerValues[visual.name]);
  }

  // ---------------------------------------------------------------- drawing

  function clearViews() {
    state.views.forEach((view) => view.destroy());
    state.views.clear();
    state.shownPage = null;
  }

  function showStatus(text) {
    clearViews();
    dom.page.className = "page page--message";
    const status = ns.visuals.el("p", "report-status", text);
    dom.page.replaceChildren(status);
  }

  function showReportProblem(problem) {
    clearViews();
    dom.tabs.hidden = true;
    dom.page.className = "page page--message";
    dom.page.setAttribute("aria-busy", "false");
    const el = ns.visuals.el;
    const box = el("div", "report-error");
    box.appendChild(el("span", "visual-error-icon", "!"));
    box.appendChild(el("h1", "report-error-title", "This report couldn't be loaded"));
    if (problem.friendly) box.appendChild(el("p", "visual-error-friendly", problem.friendly));
    box.appendChild(el("p", "visual-error-message", "Could not load this report: " + problem.code));
    dom.page.replaceChildren(box);
  }

  function tabsVisible() {
    const settings = state.settings || {};
    const panes = settings.panes || {};
    if (panes.pageNavigation && panes.pageNavigation.visible === false) return false;
    return settings.navContentPaneEnabled !== false;
  }

  function renderTabs() {
    const el = ns.visuals.el;
    const pages = (state.definition && state.definition.pages) || [];
    dom.tabs.replaceChildren();
    dom.tabs.setAttribute("role", "tablist");
    pages.forEach(function (page) {
      const tab = el("button", "page-tab", page.displayName);
      tab.type = "button";
      tab.setAttribute("role", "tab");
      tab.dataset.pageName = page.name;
      tab.setAttribute("aria-selected", page.name === state.activePage ? "true" : "false");
      tab.addEventListener("click", function () {
        changePage(page.name);
      });
      dom.tabs.appendChild(tab);
    });
    dom.tabs.hidden = !pages.length || !tabsVisible();
  }

  function markActiveTab() {
    dom.tabs.querySelectorAll(".page-tab").forEach(function (tab) {
      tab.setAttribute("aria-selected", tab.dataset.pageName === state.activePage ? "true" : "false");
    });
  }

  const viewContext = {
    get formatter() {
      return state.formatter;
    },
    onDataPoint: function (view, point) {
      const detail = selectionDetail(view, point);
      transport.postEvent("dataSelected", detail);
      transport.postEvent("selectionChanged", detail);
    },
    onSlicerChange: function (view, values) {
      const page = activePage();
      if (!page) return;
      state.slicerValues[view.visual.name] = values;
      const filter = slicerFilter(view.visual);
      renderPass({
        skip: view.visual.name,
        events: [
          [
            "filtersApplied",
            {
              filters: filter ? [filter] : [],
              page: { name: page.name, displayName: page.displayName },
              visual: visualInfo(view.visual),
            },
          ],
        ],
      });
    },
    onVisualClick: function (view) {
      const page = activePage();
      if (!page) return;
      transport.postEvent("visualClicked", {
        report: reportInfo(),
        page: { name: page.name, displayName: page.displayName },
        visual: visualInfo(view.visual),
      });
    },
  };

  function buildPage(page) {
    clearViews();
    dom.page.className = "page";
    dom.page.replaceChildren();
    const rows = page.visuals.reduce((most, v) => Math.max(most, v.layout.y + v.layout.height), 1);
    dom.page.style.setProperty("--page-rows", String(rows));
    if (!page.visuals.length) {
      dom.page.className = "page page--message";
      dom.page.appendChild(ns.visuals.el("p", "report-status", "This page is empty."));
    }
    page.visuals.forEach(function (visual) {
      const view = ns.visuals.createView(visual, viewContext);
      if (visual.type === "slicer") view.slicerValues = (state.slicerValues[visual.name] || []).slice();
      view.element.style.gridColumn = visual.layout.x + 1 + " / span " + visual.layout.width;
      view.element.style.gridRow = visual.layout.y + 1 + " / span " + visual.layout.height;
      dom.page.appendChild(view.element);
      state.views.set(visual.name, view);
    });
    state.shownPage = page.name;
    markActiveTab();
  }

  function normalizeAnswer(answer) {
    if (!answer || !Array.isArray(answer.columns) || !Array.isArray(answer.rows)) {
      throw apiError(500, "InvalidQueryResult", "The data API answered without columns and rows");
    }
    return answer;
  }

  async function queryVisual(page, visual) {
    const body = {
      page: page.name,
      visual: visual.name,
      filters: filterRules.filtersForVisual(state, page, visual),
    };
    return normalizeAnswer(await api(reportPath("/query"), body));
  }

  /**
   * Query and draw the visuals of the active page, then raise one `error` event if any failed,
   * the optional extra events, and `rendered`. Returns true when every visual drew.
   *   options.skip    name of a visual to leave alone (the slicer that changed)
   *   options.events  [[name, detail], ...] to post before `rendered`
   */
  async function renderPass(options) {
    options = options || {};
    const session = state.session;
    const pass = ++state.pass;
    if (!(await ensureDefinition())) return false;
    if (session !== state.session || pass !== state.pass) return false;
    const page = activePage();
    if (state.shownPage !== page.name) buildPage(page);
    dom.page.setAttribute("aria-busy", "true");

    const targets = page.visuals.filter((visual) => visual.name !== options.skip);
    const problems = await Promise.all(
      targets.map(async function (visual) {
        const view = state.views.get(visual.name);
        view.pass = pass;
        view.setLoading(true);
        let answer = null;
        let problem = null;
        try {
          answer = await queryVisual(page, visual);
        } catch (error) {
          problem = visualProblem(error);
        }
        // A newer pass asked for this visual again: its answer wins.
        if (session !== state.session || view.pass !== pass || state.views.get(visual.name) !== view) {
          return null;
        }
        view.setLoading(false);
        if (problem) view.showError(problem);
        else view.showData(answer);
        return problem;
      }),
    );
    if (session !== state.session || pass !== state.pass) return false;
    dom.page.setAttribute("aria-busy", "false");

    const failed = problems.filter(Boolean).sort((a, b) => a.rank - b.rank);
    state.expiryShown = failed.length > 0 && failed[0].code === "ClientError_TokenExpired";
    if (failed.length) transport.postEvent("error", failed[0].event);
    (options.events || []).forEach((event) => transport.postEvent(event[0], event[1]));
    await nextPaint();
    if (session !== state.session || pass !== state.pass) return false;
    transport.postEvent("rendered", null);
    return !failed.length;
  }

  // ---------------------------------------------------------------- events' details

  function reportInfo() {
    return { id: state.reportId, displayName: (state.definition && state.definition.name) || "" };
  }

  function visualInfo(visual) {
    return {
      name: visual.name,
      title: visual.title || "",
      type: POWERBI_VISUAL_TYPES[visual.type] || visual.type,
    };
  }

  function tableOf(view, column) {
    const visual = view.visual;
    return (
      column.table ||
      (visual.target && visual.target.table) ||
      (visual.category && visual.category.table) ||
      visual.table ||
      (state.definition && state.definition.table) ||
      anyTargetTable() ||
      ""
    );
  }

  /** The table some slicer of the report filters: the demo datasets have one table. */
  function anyTargetTable() {
    for (const page of (state.definition && state.definition.pages) || []) {
      for (const visual of page.visuals) {
        if (visual.target && visual.target.table) return visual.target.table;
      }
    }
    return null;
  }

  /** ISelection for a clicked bar or point (no dataPoints when the selection was cleared). */
  function selectionDetail(view, point) {
    const page = activePage();
    const dataPoints = [];
    if (point) {
      const table = tableOf(view, point.categoryColumn);
      dataPoints.push({
        identity: [
          { target: { table: table, column: point.categoryColumn.name }, equals: point.category },
        ],
        values: point.values.map(function (item) {
          return {
            target: { table: item.column.table || table, measure: item.column.name },
            value: item.value,
            formattedValue: state.formatter.value(item.column, item.value),
          };
        }),
      });
    }
    return {
      report: reportInfo(),
      page: { name: page.name, displayName: page.displayName },
      visual: visualInfo(view.visual),
      dataPoints: dataPoints,
      regions: [],
      filters: [],
    };
  }

  // ---------------------------------------------------------------- navigation

  function changePage(name) {
    const page = findPage(name);
    if (!page) return false;
    if (name === state.activePage && state.shownPage === name) return true;
    const old = activePage();
    state.activePage = name;
    buildPage(page);
    transport.postEvent("pageChanged", {
      newPage: pageInfo(page, true),
      oldPage: old ? pageInfo(old, false) : null,
    });
    renderPass();
    return true;
  }

  // ---------------------------------------------------------------- the SDK's requests

  /** Count a command on <html data-…> (what tests read: a print dialog cannot be seen). */
  function count(name) {
    const root = document.documentElement;
    root.dataset[name] = String(Number(root.dataset[name] || 0) + 1);
  }

  function startSession(config, headers) {
    state.session += 1;
    state.pass += 1;
    clearViews();
    const settings = config.settings || {};
    const locale = settings.localeSettings || {};
    state.reportId = config.id || query.get("reportId") || "";
    state.groupId = config.groupId || query.get("groupId") || "";
    state.token = config.accessToken;
    state.tokenProviderSupplied =
      headers.tokenProviderSupplied === true || headers.tokenProviderSupplied === "true";
    state.tokenRequest = null;
    state.tokenType = config.tokenType;
    state.hookFailures = 0;
    state.expiryShown = false;
    scheduleTokenHook();
    state.settings = settings;
    state.formatter = ns.format.createFormatter(locale.formatLocale || query.get("formatLocale"));
    if (locale.language || query.get("language")) {
      document.documentElement.lang = locale.language || query.get("language");
    }
    state.definition = null;
    state.definitionPromise = null;
    state.definitionInFlight = false;
    state.loadProblem = null;
    state.loadedPosted = false;
    state.requestedPage = typeof config.pageName === "string" ? config.pageName : null;
    state.activePage = null;
    state.reportFilters = filterRules.initialFilters(config.filters);
    state.pageFilters = {};
    state.slicerValues = {};
    dom.tabs.hidden = true;
    showStatus("Loading report…");
  }

  function validLoadConfig(config) {
    if (!config || typeof config !== "object") return "The load configuration is missing";
    if (typeof config.accessToken !== "string" || !config.accessToken) {
      return "accessToken must be a string";
    }
    if (config.id !== undefined && typeof config.id !== "string") return "id must be a string";
    if (!config.id && !query.get("reportId")) return "id is required";
    return null;
  }

  async function onLoad(request, respond, phased) {
    const problem = validLoadConfig(request.body);
    if (problem) {
      respond(400, invalid(problem));
      return;
    }
    startSession(request.body, request.headers || {});
    respond(202, null);
    if (!(await ensureDefinition())) return;
    // Phased embedding (powerbi.load): lay the page out now, query and draw on /report/render.
    if (phased) buildPage(activePage());
    else await renderPass();
  }

  /** Answer with the load failure when a request needs a report that did not load. */
  async function needDefinition(respond) {
    if (await definitionSettled()) return true;
    const problem = state.loadProblem;
    respond(problem ? problem.status || 500 : 404, problem ? problem.event : notSupported("GET", "report"));
    return false;
  }

  function visualsOf(page) {
    const rows = page.visuals.reduce((most, v) => Math.max(most, v.layout.y + v.layout.height), 1);
    const column = NOMINAL_PAGE.width / 12;
    const row = NOMINAL_PAGE.height / rows;
    return page.visuals.map(function (visual, index) {
      return Object.assign(visualInfo(visual), {
        layout: {
          x: Math.round(visual.layout.x * column),
          y: Math.round(visual.layout.y * row),
          z: index,
          width: Math.round(visual.layout.width * column),
          height: Math.round(visual.layout.height * row),
          displayState: { mode: 0 },
        },
      });
    });
  }

  function pageNotFound(name) {
    return {
      message: "PowerBIEntityNotFound",
      detailedMessage: "Page " + JSON.stringify(name) + " was not found in the report",
    };
  }

  function applyPageFilters(page, result, respond) {
    if (result.error) {
      respond(400, invalid(result.error));
      return;
    }
    state.pageFilters[page.name] = result.filters;
    respond(202, null);
    const detail = { filters: result.filters, page: { name: page.name, displayName: page.displayName } };
    if (page.name === state.activePage) renderPass({ events: [["filtersApplied", detail]] });
    else transport.postEvent("filtersApplied", detail);
  }

  function applyReportFilters(result, respond) {
    if (result.error) {
      respond(400, invalid(result.error));
      return;
    }
    state.reportFilters = result.filters;
    respond(202, null);
    renderPass({ events: [["filtersApplied", { filters: result.filters.slice() }]] });
  }

  // Routes: [method, pattern, handler(request, respond, match)]
  const ROUTES = [
    ["POST", /^\/report\/load$/, (req, respond) => onLoad(req, respond, false)],
    ["POST", /^\/report\/prepare$/, (req, respond) => onLoad(req, respond, true)],
    [
      "POST",
      /^\/report\/render$/,
      async function (_req, respond) {
        respond(202, null);
        await renderPass();
      },
    ],
    [
      "POST",
      /^\/report\/token$/,
      function (req, respond) {
        if (typeof req.body !== "string" || !req.body) {
          respond(400, invalid("The access token must be a non-empty string"));
          return;
        }
        state.token = req.body;
        respond(202, null);
        tokenReplaced();
      },
    ],
    [
      "POST",
      /^\/report\/refresh$/,
      async function (_req, respond) {
        respond(202, null);
        count("refreshes");
        await renderPass();
      },
    ],
    [
      "POST",
      /^\/report\/print$/,
      function (_req, respond) {
        // As Power BI's: the iframe prints itself (the browser's print dialog, for the page).
        respond(202, null);
        count("prints");
        window.print();
      },
    ],
    [
      "PATCH",
      /^\/report\/settings$/,
      function (req, respond) {
        if (req.body && typeof req.body === "object") {
          state.settings = Object.assign({}, state.settings, req.body);
          if (state.definition) dom.tabs.hidden = !tabsVisible();
        }
        respond(202, null);
      },
    ],
    ["POST", /^\/frontload\/config$/, (_req, respond) => respond(202, null)],
    ["GET", /^\/getCorrelationId$/, (_req, respond) => respond(200, window.crypto.randomUUID())],
    [
      "GET",
      /^\/report\/pages$/,
      async function (_req, respond) {
        if (!(await needDefinition(respond))) return;
        respond(
          200,
          state.definition.pages.map((page) => pageInfo(page, page.name === state.activePage)),
        );
      },
    ],
    [
      "PUT",
      /^\/report\/pages\/active$/,
      async function (req, respond) {
        if (!(await needDefinition(respond))) return;
        const name = req.body && req.body.name;
        if (!findPage(name)) {
          respond(404, pageNotFound(name));
          return;
        }
        respond(202, null);
        changePage(name);
      },
    ],
    [
      "GET",
      /^\/report\/pages\/([^/]+)\/visuals$/,
      async function (_req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        if (!page) respond(404, pageNotFound(match[1]));
        else respond(200, visualsOf(page));
      },
    ],
    [
      "GET",
      /^\/report\/pages\/([^/]+)\/filters$/,
      async function (_req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        if (!page) respond(404, pageNotFound(match[1]));
        else respond(200, (state.pageFilters[page.name] || []).slice());
      },
    ],
    [
      "POST",
      /^\/report\/pages\/([^/]+)\/filters$/,
      async function (req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        if (!page) return respond(404, pageNotFound(match[1]));
        const current = state.pageFilters[page.name] || [];
        applyPageFilters(page, filterRules.updateFilters(current, req.body), respond);
      },
    ],
    [
      "PUT",
      /^\/report\/pages\/([^/]+)\/filters$/,
      async function (req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        if (!page) return respond(404, pageNotFound(match[1]));
        applyPageFilters(page, filterRules.normalizeFilters(req.body), respond);
      },
    ],
    [
      "GET",
      /^\/report\/pages\/([^/]+)\/visuals\/([^/]+)\/slicer$/,
      async function (_req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        const visual = page && page.visuals.find((v) => v.name === match[2]);
        if (!visual || visual.type !== "slicer") {
          return respond(404, notSupported("GET", "slicer state of " + match[2]));
        }
        const filter = slicerFilter(visual);
        respond(200, { filters: filter ? [filter] : [], targets: [filterRules.filterTarget(visual)] });
      },
    ],
    [
      "PUT",
      /^\/report\/pages\/([^/]+)\/visuals\/([^/]+)\/slicer$/,
      async function (req, respond, match) {
        if (!(await needDefinition(respond))) return;
        const page = findPage(match[1]);
        const visual = page && page.visuals.find((v) => v.name === match[2]);
        if (!visual || visual.type !== "slicer") {
          return respond(404, notSupported("PUT", "slicer state of " + match[2]));
        }
        const result = filterRules.normalizeFilters((req.body && req.body.filters) || []);
        if (result.error) return respond(400, invalid(result.error));
        const chosen = result.filters.find((f) => f.operator === "In");
        state.slicerValues[visual.name] = chosen ? chosen.values.slice() : [];
        const view = state.views.get(visual.name);
        if (view) view.slicerValues = state.slicerValues[visual.name].slice();
        respond(202, null);
        const detail = {
          filters: chosen ? [slicerFilter(visual)] : [],
          page: { name: page.name, displayName: page.displayName },
          visual: visualInfo(visual),
        };
        if (page.name === state.activePage) renderPass({ events: [["filtersApplied", detail]] });
        else transport.postEvent("filtersApplied", detail);
      },
    ],
    [
      "GET",
      /^\/report\/filters$/,
      async function (_req, respond) {
        if (!(await needDefinition(respond))) return;
        respond(200, state.reportFilters.slice());
      },
    ],
    [
      "POST",
      /^\/report\/filters$/,
      async function (req, respond) {
        if (!(await needDefinition(respond))) return;
        applyReportFilters(filterRules.updateFilters(state.reportFilters, req.body), respond);
      },
    ],
    [
      "PUT",
      /^\/report\/filters$/,
      async function (req, respond) {
        if (!(await needDefinition(respond))) return;
        applyReportFilters(filterRules.normalizeFilters(req.body), respond);
      },
    ],
  ];

  function decodeMatch(match) {
    return match.map(function (part, index) {
      if (index === 0) return part;
      try {
        return decodeURIComponent(part);
      } catch (_error) {
        return part;
      }
    });
  }

  transport.onRequest(function (request, respond) {
    const method = String(request.method).toUpperCase();
    const path = String(request.url).split("?")[0];
    for (const [routeMethod, pattern, handler] of ROUTES) {
      if (routeMethod !== method) continue;
      const match = pattern.exec(path);
      if (match) return handler(request, respond, decodeMatch(match));
    }
    respond(404, notSupported(method, path));
    return undefined;
  });
})();
