// Unit tests of the emulator iframe's filter rules (node:test). Run: node --test tests/js/
//
// emu-filters.js is a classic browser script, so it runs here in a bare vm context: no window,
// no document. That it loads and works there is itself the check that it touches no DOM.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const SOURCE = new URL('../../src/embedportal/emulator/static/emu-filters.js', import.meta.url);

function loadFilterRules(sandbox = {}) {
  vm.runInNewContext(readFileSync(SOURCE, 'utf8'), sandbox, { filename: fileURLToPath(SOURCE) });
  return sandbox.EmbedEmulator.filters;
}

const rules = loadFilterRules();
const {
  BASIC_SCHEMA,
  FILTERS_OPERATION,
  filterTarget,
  normalizeFilter,
  normalizeFilters,
  updateFilters,
  initialFilters,
  slicerFilter,
  filtersForVisual,
} = rules;

// The genuine powerbi-models (installed with powerbi-client) builds the filters, and
// structuredClone does to them what postMessage does on the way into the iframe.
const models = createRequire(import.meta.url)('powerbi-models');
const posted = (filter) => structuredClone(filter);

// Results come from the vm context's realm; compare them as plain data of this realm.
const plain = (value) => structuredClone(value);

const REGION = { table: 'Sales', column: 'Region' };
const CATEGORY = { table: 'Sales', column: 'Category' };
const ONLY_BASIC = { error: 'Only basic filters (filterType 1) are emulated' };
const NO_COLUMN = { error: "A filter's target must name a table and a column" };
const BAD_OPERATOR = { error: "A basic filter's operator must be In, NotIn or All" };
const NOT_AN_ARRAY = { error: 'Filters must be an array' };
const BAD_OPERATION = {
  error: 'filtersOperation must be 0 (RemoveAll), 1 (ReplaceAll), 2 (Add) or 3 (Replace)',
};

/** What the emulator keeps of a basic filter: schema, target, type, operator, values. */
const basic = (target, operator, values) => ({
  $schema: BASIC_SCHEMA,
  target: { table: target.table, column: target.column },
  filterType: 1,
  operator,
  values,
});
const sdkBasic = (target, operator, values) => posted(new models.BasicFilter(target, operator, values));
const normalized = (filter) => plain(normalizeFilter(filter));
const update = (current, request) => plain(updateFilters(current, request));

// ---------------------------------------------------------------------------------------------
describe('the namespace', () => {
  test('registers a frozen EmbedEmulator.filters and keeps what other scripts put there', () => {
    const transport = { marker: true };
    const sandbox = { EmbedEmulator: { transport } };
    const loaded = loadFilterRules(sandbox);
    assert.equal(sandbox.EmbedEmulator.transport, transport);
    assert.ok(Object.isFrozen(loaded));
    assert.ok(Object.isFrozen(loaded.FILTERS_OPERATION));
    assert.deepEqual(Object.keys(loaded).sort(), [
      'BASIC_SCHEMA', 'FILTERS_OPERATION', 'filterTarget', 'filtersForVisual', 'initialFilters',
      'normalizeFilter', 'normalizeFilters', 'slicerFilter', 'updateFilters',
    ]);
  });

  test('filtersOperation numbers are those of powerbi-models', () => {
    assert.deepEqual(plain(FILTERS_OPERATION), {
      RemoveAll: models.FiltersOperations.RemoveAll,
      ReplaceAll: models.FiltersOperations.ReplaceAll,
      Add: models.FiltersOperations.Add,
      Replace: models.FiltersOperations.Replace,
    });
    assert.equal(BASIC_SCHEMA, models.BasicFilter.schemaUrl);
  });
});

// ---------------------------------------------------------------------------------------------
describe('normalizeFilter', () => {
  test('basic In, NotIn and All filters as the SDK posts them', () => {
    assert.deepEqual(normalized(sdkBasic(REGION, 'In', ['South'])), { filter: basic(REGION, 'In', ['South']) });
    assert.deepEqual(normalized(sdkBasic(REGION, 'NotIn', ['North', 'East'])), {
      filter: basic(REGION, 'NotIn', ['North', 'East']),
    });
    assert.deepEqual(normalized(sdkBasic(REGION, 'All', [])), { filter: basic(REGION, 'All', []) });
  });

  test('the JSON form ($schema, requireSingleSelection) gives the same filter', () => {
    const json = JSON.parse(JSON.stringify(new models.BasicFilter(REGION, 'In', ['South'])));
    assert.equal(json.$schema, BASIC_SCHEMA);
    assert.ok('requireSingleSelection' in json);
    assert.deepEqual(normalized(json), { filter: basic(REGION, 'In', ['South']) });
  });

  test('a basic filter is recognised by filterType 1 or by its schema, either one', () => {
    const bare = { target: REGION, operator: 'In', values: ['South'] };
    const expected = { filter: basic(REGION, 'In', ['South']) };
    assert.deepEqual(normalized({ ...bare, filterType: 1 }), expected);
    assert.deepEqual(normalized({ ...bare, $schema: BASIC_SCHEMA }), expected);
    assert.deepEqual(normalized({ ...bare, schemaUrl: BASIC_SCHEMA }), expected);
    assert.deepEqual(normalized({ ...bare, filterType: 0, $schema: 'anything#basic' }), expected);
    assert.deepEqual(normalized(bare), ONLY_BASIC);
    assert.deepEqual(normalized({ ...bare, filterType: '1' }), ONLY_BASIC, 'a string is not filterType 1');
    assert.deepEqual(normalized({ ...bare, $schema: `${BASIC_SCHEMA}WithKeys` }), ONLY_BASIC);
  });

  test('keeps only table and column of the target, and drops everything the data API does not take', () => {
    const withKeys = posted(new models.BasicFilterWithKeys(
      { ...REGION, keys: ['RegionId'] }, 'In', ['South'], [[7]],
    ));
    withKeys.displaySettings = { isLockedInViewMode: true };
    withKeys.requireSingleSelection = true;
    assert.deepEqual(normalized(withKeys), { filter: basic(REGION, 'In', ['South']) });
  });

  test('values: any kind of value is kept, missing or non-array values become []', () => {
    const values = ['x', 3, 2.5, true, null];
    assert.deepEqual(normalized({ filterType: 1, target: REGION, operator: 'In', values }), {
      filter: basic(REGION, 'In', values),
    });
    for (const bad of [undefined, null, 'South', { 0: 'South' }]) {
      assert.deepEqual(normalized({ filterType: 1, target: REGION, operator: 'In', values: bad }), {
        filter: basic(REGION, 'In', []),
      });
    }
  });

  test('the result is a copy: changing the request afterwards changes nothing', () => {
    const request = sdkBasic(REGION, 'In', ['South']);
    const { filter } = normalizeFilter(request);
    request.values.push('North');
    request.target.column = 'Category';
    assert.deepEqual(plain(filter), basic(REGION, 'In', ['South']));
  });

  test('refuses every other kind of filter powerbi-models builds', () => {
    const units = { table: 'Sales', column: 'Units' };
    const others = {
      advanced: new models.AdvancedFilter(units, 'And', [{ operator: 'GreaterThan', value: 3 }]),
      advancedOr: new models.AdvancedFilter(units, 'Or', [
        { operator: 'LessThan', value: 2 }, { operator: 'GreaterThan', value: 8 },
      ]),
      topN: new models.TopNFilter(REGION, 'Top', 2, { table: 'Sales', measure: 'Revenue' }),
      relativeDate: new models.RelativeDateFilter(
        { table: 'Sales', column: 'Date' }, models.RelativeDateOperators.InLast, 3,
        models.RelativeDateFilterTimeUnit.Months, true,
      ),
      includeExclude: new models.IncludeExcludeFilter(REGION, true, ['South']),
      tuple: new models.TupleFilter([REGION, CATEGORY], 'In', [[{ value: 'South' }, { value: 'Bikes' }]]),
    };
    for (const [kind, filter] of Object.entries(others)) {
      const expected = kind === 'tuple' ? NO_COLUMN : ONLY_BASIC; // a tuple's target is an array
      assert.deepEqual(normalized(posted(filter)), expected, kind);
    }
  });

  test('refuses targets that are not a column: measures, hierarchies, missing or malformed', () => {
    const base = { filterType: 1, operator: 'In', values: ['x'] };
    for (const target of [
      { table: 'Sales', measure: 'Revenue' },
      { table: 'Sales', hierarchy: 'Calendar', hierarchyLevel: 'Year' },
      { column: 'Region' },
      { table: 'Sales' },
      { table: 'Sales', column: 7 },
      { table: null, column: 'Region' },
      'Sales.Region',
      null,
      undefined,
    ]) {
      assert.deepEqual(normalized({ ...base, target }), NO_COLUMN, JSON.stringify(target));
    }
  });

  test('refuses operators other than In, NotIn and All (case matters)', () => {
    for (const operator of ['in', 'IN', 'Contains', 'Equals', 'NotIn ', '', undefined, null, 1]) {
      assert.deepEqual(normalized({ filterType: 1, target: REGION, operator, values: ['x'] }), BAD_OPERATOR, String(operator));
    }
  });

  test('refuses what is not an object, and checks target before kind before operator', () => {
    for (const bad of [null, undefined, 'filter', 1, true]) {
      assert.deepEqual(normalized(bad), { error: 'A filter must be an object' }, String(bad));
    }
    assert.deepEqual(normalized({ filterType: 0, operator: 'Nope' }), NO_COLUMN);
    assert.deepEqual(normalized({ filterType: 0, target: REGION, operator: 'Nope' }), ONLY_BASIC);
  });
});

// ---------------------------------------------------------------------------------------------
describe('filterTarget', () => {
  test('table and column only, or null', () => {
    assert.deepEqual(plain(filterTarget({ target: { ...REGION, keys: ['k'], $schema: 's' } })), REGION);
    assert.equal(filterTarget({ target: { table: 'Sales', measure: 'Revenue' } }), null);
    assert.equal(filterTarget({}), null);
    assert.equal(filterTarget(null), null);
  });
});

// ---------------------------------------------------------------------------------------------
describe('normalizeFilters', () => {
  test('an empty list is fine; a list keeps its order', () => {
    assert.deepEqual(plain(normalizeFilters([])), { filters: [] });
    assert.deepEqual(plain(normalizeFilters([sdkBasic(CATEGORY, 'In', ['Bikes']), sdkBasic(REGION, 'NotIn', ['North'])])), {
      filters: [basic(CATEGORY, 'In', ['Bikes']), basic(REGION, 'NotIn', ['North'])],
    });
  });

  test('one bad filter refuses the list, with the first problem found', () => {
    const advanced = posted(new models.AdvancedFilter(REGION, 'And', [{ operator: 'Contains', value: 'th' }]));
    const noTarget = { filterType: 1, operator: 'In', values: [] };
    assert.deepEqual(plain(normalizeFilters([sdkBasic(REGION, 'In', ['South']), advanced])), ONLY_BASIC);
    assert.deepEqual(plain(normalizeFilters([noTarget, advanced])), NO_COLUMN);
    assert.deepEqual(plain(normalizeFilters([advanced, noTarget])), ONLY_BASIC);
  });

  test('refuses what is not an array', () => {
    for (const bad of [undefined, null, {}, 'In', sdkBasic(REGION, 'In', ['South'])]) {
      assert.deepEqual(plain(normalizeFilters(bad)), NOT_AN_ARRAY);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('updateFilters (IUpdateFiltersRequest, as report.updateFilters and removeFilters send it)', () => {
  const south = basic(REGION, 'In', ['South']);
  const bikes = basic(CATEGORY, 'In', ['Bikes']);
  const request = (operation, filters) => posted({ filtersOperation: operation, filters });

  test('RemoveAll (removeFilters) empties the list, whatever else the request holds', () => {
    assert.deepEqual(update([south, bikes], request(models.FiltersOperations.RemoveAll, undefined)), { filters: [] });
    assert.deepEqual(update([south], request(FILTERS_OPERATION.RemoveAll, [{ filterType: 0 }])), { filters: [] });
    assert.deepEqual(update([], request(FILTERS_OPERATION.RemoveAll, 'not even an array')), { filters: [] });
  });

  test('ReplaceAll puts the request in place of the whole list', () => {
    const next = [sdkBasic(REGION, 'NotIn', ['North'])];
    assert.deepEqual(update([south, bikes], request(FILTERS_OPERATION.ReplaceAll, next)), {
      filters: [basic(REGION, 'NotIn', ['North'])],
    });
    assert.deepEqual(update([south], request(FILTERS_OPERATION.ReplaceAll, [])), { filters: [] });
  });

  test('Add appends, even a second filter on a column already filtered', () => {
    assert.deepEqual(update([south], request(FILTERS_OPERATION.Add, [sdkBasic(CATEGORY, 'In', ['Bikes'])])), {
      filters: [south, bikes],
    });
    assert.deepEqual(update([south], request(FILTERS_OPERATION.Add, [sdkBasic(REGION, 'NotIn', ['West'])])), {
      filters: [south, basic(REGION, 'NotIn', ['West'])],
    });
    assert.deepEqual(update([south], request(FILTERS_OPERATION.Add, undefined)), { filters: [south] });
  });

  test('Replace swaps the filter on the same table and column in place, and appends new targets', () => {
    const eastWest = sdkBasic(REGION, 'In', ['East', 'West']);
    assert.deepEqual(update([south, bikes], request(FILTERS_OPERATION.Replace, [eastWest])), {
      filters: [basic(REGION, 'In', ['East', 'West']), bikes],
    });
    const otherTable = sdkBasic({ table: 'Targets', column: 'Region' }, 'In', ['South']);
    assert.deepEqual(update([south], request(FILTERS_OPERATION.Replace, [otherTable])), {
      filters: [south, basic({ table: 'Targets', column: 'Region' }, 'In', ['South'])],
    });
    assert.deepEqual(update([], request(FILTERS_OPERATION.Replace, [eastWest])), {
      filters: [basic(REGION, 'In', ['East', 'West'])],
    });
  });

  test('Replace: of two filters on one column in the request, the last wins; only the first match is replaced', () => {
    const twice = [sdkBasic(REGION, 'In', ['East']), sdkBasic(REGION, 'In', ['West'])];
    assert.deepEqual(update([], request(FILTERS_OPERATION.Replace, twice)), { filters: [basic(REGION, 'In', ['West'])] });
    const north = basic(REGION, 'In', ['North']);
    assert.deepEqual(update([south, north], request(FILTERS_OPERATION.Replace, [sdkBasic(REGION, 'All', [])])), {
      filters: [basic(REGION, 'All', []), north],
    });
  });

  test('the sequence the browser test drives: set, Replace, Add, removeFilters', () => {
    let current = plain(normalizeFilters([sdkBasic(REGION, 'In', ['South'])])).filters;
    current = update(current, request(FILTERS_OPERATION.Replace, [sdkBasic(REGION, 'In', ['East', 'West'])])).filters;
    assert.deepEqual(current, [basic(REGION, 'In', ['East', 'West'])]);
    current = update(current, request(FILTERS_OPERATION.Add, [sdkBasic(CATEGORY, 'In', ['Bikes'])])).filters;
    assert.deepEqual(current, [basic(REGION, 'In', ['East', 'West']), bikes]);
    current = update(current, request(FILTERS_OPERATION.RemoveAll, undefined)).filters;
    assert.deepEqual(current, []);
  });

  test('never changes the current list', () => {
    const current = [south, bikes];
    const before = structuredClone(current);
    for (const operation of Object.values(FILTERS_OPERATION)) {
      updateFilters(current, request(operation, [sdkBasic(REGION, 'NotIn', ['North'])]));
    }
    assert.deepEqual(current, before);
  });

  test('a bad filter refuses the update and is reported before a bad operation', () => {
    const advanced = posted(new models.AdvancedFilter(
      { table: 'Sales', column: 'Units' }, 'And', [{ operator: 'GreaterThan', value: 3 }],
    ));
    for (const operation of [FILTERS_OPERATION.ReplaceAll, FILTERS_OPERATION.Add, FILTERS_OPERATION.Replace, 9]) {
      assert.deepEqual(update([south], request(operation, [advanced])), ONLY_BASIC, String(operation));
    }
    assert.deepEqual(update([south], request(FILTERS_OPERATION.Add, 'South')), NOT_AN_ARRAY);
  });

  test('refuses an operation powerbi-models does not have, or one given by name', () => {
    const filters = [sdkBasic(REGION, 'In', ['South'])];
    for (const operation of [4, -1, 1.5, 'Add', '2', null, undefined]) {
      assert.deepEqual(update([], request(operation, filters)), BAD_OPERATION, String(operation));
    }
    assert.deepEqual(update([south], undefined), BAD_OPERATION);
    assert.deepEqual(update([south], null), BAD_OPERATION);
    assert.deepEqual(update([south], posted(filters)), BAD_OPERATION, 'a bare list is not an update request');
  });
});

// ---------------------------------------------------------------------------------------------
describe('initialFilters (IReportLoadConfiguration.filters)', () => {
  const south = sdkBasic(REGION, 'In', ['South']);

  test('an array of filters', () => {
    assert.deepEqual(plain(initialFilters([south])), [basic(REGION, 'In', ['South'])]);
  });

  test('OnLoadFilters: the allPages filters; currentPage and the operation are not emulated', () => {
    const onLoad = { allPages: { operation: models.FiltersOperations.Add, filters: [south] } };
    assert.deepEqual(plain(initialFilters(posted(onLoad))), [basic(REGION, 'In', ['South'])]);
    const currentPageOnly = { currentPage: { operation: models.FiltersOperations.Add, filters: [south] } };
    assert.deepEqual(plain(initialFilters(posted(currentPageOnly))), []);
  });

  test('a load does not fail over its filters: anything unusable gives no filters', () => {
    const advanced = posted(new models.AdvancedFilter(REGION, 'And', [{ operator: 'Contains', value: 'th' }]));
    for (const bad of [undefined, null, {}, { allPages: {} }, { allPages: { filters: 'x' } }, 'South', [south, advanced]]) {
      assert.deepEqual(plain(initialFilters(bad)), [], JSON.stringify(bad));
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('slicers', () => {
  const regionSlicer = { name: 'regionSlicer', type: 'slicer', target: REGION };
  const categorySlicer = { name: 'categorySlicer', type: 'slicer', target: { ...CATEGORY, extra: 1 } };
  const revenueCard = { name: 'totalRevenue', type: 'card', target: { table: 'Sales', column: 'Revenue' } };

  test('slicerFilter: In over the checked values, or null when nothing is checked', () => {
    assert.deepEqual(plain(slicerFilter(regionSlicer, ['North'])), basic(REGION, 'In', ['North']));
    assert.deepEqual(plain(slicerFilter(categorySlicer, ['Bikes', 'Helmets'])), basic(CATEGORY, 'In', ['Bikes', 'Helmets']));
    assert.equal(slicerFilter(regionSlicer, []), null);
    assert.equal(slicerFilter(regionSlicer, undefined), null);
    assert.equal(slicerFilter({ name: 'broken', type: 'slicer' }, ['North']), null, 'a slicer without a column');
  });

  test('slicerFilter copies the values', () => {
    const checked = ['North'];
    const filter = slicerFilter(regionSlicer, checked);
    checked.push('South');
    assert.deepEqual(plain(filter.values), ['North']);
  });

  test('filtersForVisual: report, then page, then the other slicers of the page, in page order', () => {
    const page = { name: 'overview', visuals: [regionSlicer, revenueCard, categorySlicer] };
    const reportFilter = basic(REGION, 'NotIn', ['West']);
    const pageFilter = basic({ table: 'Sales', column: 'Year' }, 'In', [2025]);
    const filterState = {
      reportFilters: [reportFilter],
      pageFilters: { overview: [pageFilter], other: [basic(REGION, 'In', ['Other page'])] },
      slicerValues: { regionSlicer: ['North'], categorySlicer: ['Bikes'], totalRevenue: ['ignored'] },
    };
    const region = basic(REGION, 'In', ['North']);
    const category = basic(CATEGORY, 'In', ['Bikes']);
    assert.deepEqual(plain(filtersForVisual(filterState, page, revenueCard)), [reportFilter, pageFilter, region, category]);
    // A slicer is not filtered by its own selection, or it would list only what is checked.
    assert.deepEqual(plain(filtersForVisual(filterState, page, regionSlicer)), [reportFilter, pageFilter, category]);
    assert.deepEqual(plain(filtersForVisual(filterState, page, categorySlicer)), [reportFilter, pageFilter, region]);
  });

  test('filtersForVisual: a slicer with nothing checked and a page without filters add nothing', () => {
    const page = { name: 'details', visuals: [regionSlicer, revenueCard] };
    const filterState = { reportFilters: [], pageFilters: {}, slicerValues: { regionSlicer: [] } };
    assert.deepEqual(plain(filtersForVisual(filterState, page, revenueCard)), []);
  });

  test('filtersForVisual leaves the state it reads alone', () => {
    const page = { name: 'overview', visuals: [regionSlicer, revenueCard] };
    const reportFilters = [basic(CATEGORY, 'In', ['Bikes'])];
    const pageFilters = { overview: [basic(REGION, 'NotIn', ['West'])] };
    const filterState = { reportFilters, pageFilters, slicerValues: { regionSlicer: ['North'] } };
    const before = structuredClone(filterState);
    const result = filtersForVisual(filterState, page, revenueCard);
    assert.equal(result.length, 3);
    assert.deepEqual(filterState, before);
  });
});
