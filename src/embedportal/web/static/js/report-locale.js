// The language and number/date format a report is drawn in: the page's own (the reader's
// language), so a pt-BR reader sees 1.234,5 and dd/mm/aaaa in the report as in the portal.
// Pure, node-tested (tests/js/report-locale.test.js).

/** Power BI's localeSettings for a page whose <html lang> is `pageLanguage`. */
export function reportLocale(pageLanguage) {
  const language = typeof pageLanguage === 'string' && pageLanguage.trim() ? pageLanguage.trim() : 'en';
  // A bare "en" formats as en-US, Power BI's default; "pt" alone stays "pt".
  const formatLocale = language.includes('-') ? language : language === 'en' ? 'en-US' : language;
  return { language, formatLocale };
}
