// The report's localeSettings follow the page's language (node:test).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { reportLocale } from '../../src/embedportal/web/static/js/report-locale.js';

test('a pt-BR page draws its reports in pt-BR', () => {
  assert.deepEqual(reportLocale('pt-BR'), { language: 'pt-BR', formatLocale: 'pt-BR' });
});

test('English formats as en-US, the default', () => {
  assert.deepEqual(reportLocale('en'), { language: 'en', formatLocale: 'en-US' });
});

test('no language falls back to English', () => {
  for (const value of [undefined, null, '', '  ', 42]) {
    assert.deepEqual(reportLocale(value), { language: 'en', formatLocale: 'en-US' }, String(value));
  }
});
