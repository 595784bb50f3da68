/*
 * The emulated report's filter rules: which powerbi-models filters the emulator accepts, how
 * the SDK's filter requests change a filter list, and which filters reach a visual's query.
 *
 * Pure (no DOM, no state of its own), so node tests load this file in a bare vm context
 * (tests/js/emu-filters.test.js). emu-report.js keeps the state and calls these. Results are
 * {filters} or {filter} on success and {error} with the message the SDK's caller sees.
 */
(function (ns) {
  "use strict";

  const BASIC_SCHEMA = "http://powerbi.com/product/schema#basic";
  const OPERATORS = new Set(["In", "NotIn", "All"]);
  // powerbi-models FiltersOperations, as numbers on the wire.
  const FILTERS_OPERATION = Object.freeze({ RemoveAll: 0, ReplaceAll: 1, Add: 2, Replace: 3 });

  function filterTarget(filter) {
    const target = filter && filter.target;
    if (!target || typeof target.table !== "string" || typeof target.column !== "string") {
      return null;
    }
    return { table: target.table, column: target.column };
  }

  /** A powerbi-models BasicFilter as the data API takes it; or {error} for anything else. */
  function normalizeFilter(filter) {
    if (!filter || typeof filter !== "object") return { error: "A filter must be an object" };
    const target = filterTarget(filter);
    if (!target) return { error: "A filter's target must name a table and a column" };
    // A filter posted by the SDK is a structured clone of a models class instance, which
    // carries `schemaUrl`; `$schema` only appears in its JSON form.
    const schema = String(filter.$schema || filter.schemaUrl || "");
    if (filter.filterType !== 1 && !schema.endsWith("#basic")) {
      return { error: "Only basic filters (filterType 1) are emulated" };
    }
    if (!OPERATORS.has(filter.operator)) {
      return { error: "A basic filter's operator must be In, NotIn or All" };
    }
    const values = Array.isArray(filter.values) ? filter.values.slice() : [];
    return {
      filter: {
        $schema: BASIC_SCHEMA,
        target: target,
        filterType: 1,
        operator: filter.operator,
        values: values,
      },
    };
  }

  /** All or nothing: one bad filter refuses the whole request, so nothing is half-applied. */
  function normalizeFilters(filters) {
    if (!Array.isArray(filters)) return { error: "Filters must be an array" };
    const normalized = [];
    for (const filter of filters) {
      const result = normalizeFilter(filter);
      if (result.error) return result;
      normalized.push(result.filter);
    }
    return { filters: normalized };
  }

  function sameTarget(a, b) {
    return a.target.table === b.target.table && a.target.column === b.target.column;
  }

  /** Apply IUpdateFiltersRequest {filtersOperation, filters} semantics to a filter list. */
  function updateFilters(current, request) {
    const operation = request && request.filtersOperation;
    if (operation === FILTERS_OPERATION.RemoveAll) return { filters: [] };
    const result = normalizeFilters((request && request.filters) || []);
    if (result.error) return result;
    if (operation === FILTERS_OPERATION.ReplaceAll) return result;
    if (operation === FILTERS_OPERATION.Add) return { filters: current.concat(result.filters) };
    if (operation === FILTERS_OPERATION.Replace) {
      const next = current.slice();
      result.filters.forEach(function (filter) {
        const index = next.findIndex((existing) => sameTarget(existing, filter));
        if (index >= 0) next[index] = filter;
        else next.push(filter);
      });
      return { filters: next };
    }
    return { error: "filtersOperation must be 0 (RemoveAll), 1 (ReplaceAll), 2 (Add) or 3 (Replace)" };
  }

  /**
   * The report filters of IReportLoadConfiguration.filters: an array, or OnLoadFilters
   * {allPages: {operation, filters}}. A load must not fail over its filters, so bad ones give [].
   */
  function initialFilters(filters) {
    const list = Array.isArray(filters)
      ? filters
      : (filters && filters.allPages && filters.allPages.filters) || [];
    const result = normalizeFilters(list);
    return result.error ? [] : result.filters;
  }

  /** The filter a slicer with these checked values applies; null when it filters nothing. */
  function slicerFilter(visual, values) {
    const checked = values || [];
    if (!checked.length || !filterTarget(visual)) return null;
    return {
      $schema: BASIC_SCHEMA,
      target: filterTarget(visual),
      filterType: 1,
      operator: "In",
      values: checked.slice(),
    };
  }

  /**
   * Everything that filters a visual: report, page, and the page's other slicers. A slicer
   * ignores its own selection, or it could only ever list the values already checked.
   *   filterState  {reportFilters, pageFilters: {page name: [...]}, slicerValues: {visual name: [...]}}
   */
  function filtersForVisual(filterState, page, visual) {
    const filters = filterState.reportFilters.concat(filterState.pageFilters[page.name] || []);
    page.visuals.forEach(function (other) {
      if (other.type !== "slicer" || other.name === visual.name) return;
      const filter = slicerFilter(other, filterState.slicerValues[other.name]);
      if (filter) filters.push(filter);
    });
    return filters;
  }

  ns.filters = Object.freeze({
    BASIC_SCHEMA: BASIC_SCHEMA,
    FILTERS_OPERATION: FILTERS_OPERATION,
    filterTarget: filterTarget,
    normalizeFilter: normalizeFilter,
    normalizeFilters: normalizeFilters,
    updateFilters: updateFilters,
    initialFilters: initialFilters,
    slicerFilter: slicerFilter,
    filtersForVisual: filtersForVisual,
  });
})((globalThis.EmbedEmulator = globalThis.EmbedEmulator || {}));
