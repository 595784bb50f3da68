/*
 * Number and date formatting for the emulated visuals, in the report's formatLocale (Intl).
 *
 * Columns come from the data API as {name, type, format?}: type is one of text, currency,
 * number, integer, percent, date; format is a Power BI / Excel style string such as "$#,0",
 * "#,0.00" or "0.0%", used for its currency symbol, grouping and decimals.
 */
(function () {
  "use strict";

  const ns = (window.EmbedEmulator = window.EmbedEmulator || {});

  // Longest first, so "R$" wins over "$".
  const CURRENCY_SYMBOLS = [
    ["R$", "BRL"],
    ["US$", "USD"],
    ["$", "USD"],
    ["€", "EUR"],
    ["£", "GBP"],
    ["¥", "JPY"],
    ["₹", "INR"],
  ];
  const NUMERIC_TYPES = new Set(["currency", "number", "integer", "decimal", "percent"]);

  function resolveLocale(requested) {
    const candidates = [requested, navigator.language, "en-US"];
    for (const candidate of candidates) {
      if (!candidate || typeof candidate !== "string") continue;
      try {
        if (Intl.NumberFormat.supportedLocalesOf([candidate]).length) return candidate;
      } catch (_error) {
        // Not a well-formed language tag: try the next one.
      }
    }
    return "en-US";
  }

  function parseFormat(format) {
    const spec = { currency: null, grouping: null, decimals: null };
    if (typeof format !== "string" || !format) return spec;
    for (const [symbol, code] of CURRENCY_SYMBOLS) {
      if (format.includes(symbol)) {
        spec.currency = code;
        break;
      }
    }
    const currencyCode = format.match(/\b([A-Z]{3})\b/);
    if (!spec.currency && currencyCode) spec.currency = currencyCode[1];
    spec.grouping = format.includes(",");
    const dot = format.indexOf(".");
    spec.decimals = dot >= 0 ? (format.slice(dot + 1).match(/^[0#]*/) || [""])[0].length : 0;
    return spec;
  }

  function isNumeric(column) {
    return NUMERIC_TYPES.has(column && column.type);
  }

  function numberOptions(column) {
    const spec = parseFormat(column.format);
    const type = column.type;
    const options = { useGrouping: spec.grouping === null ? true : spec.grouping };
    let decimals = spec.decimals;
    if (type === "currency") {
      options.style = "currency";
      options.currency = spec.currency || "USD";
      if (decimals === null) decimals = 2;
    } else if (type === "percent") {
      options.style = "percent";
      if (decimals === null) decimals = 1;
    } else if (type === "integer") {
      decimals = 0;
    }
    if (decimals !== null) {
      options.minimumFractionDigits = decimals;
      options.maximumFractionDigits = decimals;
    } else {
      options.maximumFractionDigits = 2;
    }
    return options;
  }

  /** Parse "YYYY-MM" or "YYYY-MM-DD" as a UTC date; null if it is neither. */
  function parseIsoDate(value) {
    const match = /^(\d{4})-(\d{2})(?:-(\d{2}))?$/.exec(String(value));
    if (!match) return null;
    const date = new Date(Date.UTC(+match[1], +match[2] - 1, match[3] ? +match[3] : 1));
    return { date: date, monthOnly: !match[3] };
  }

  function createFormatter(requestedLocale) {
    const locale = resolveLocale(requestedLocale);
    const cache = new Map();

    function cached(key, make) {
      if (!cache.has(key)) cache.set(key, make());
      return cache.get(key);
    }

    function numberFormat(column) {
      const key = "n|" + column.type + "|" + (column.format || "");
      return cached(key, function () {
        try {
          return new Intl.NumberFormat(locale, numberOptions(column));
        } catch (_error) {
          return new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
        }
      });
    }

    function compactFormat(column) {
      const key = "c|" + column.type + "|" + (column.format || "");
      return cached(key, function () {
        const options = { notation: "compact", maximumFractionDigits: 1 };
        if (column.type === "currency") {
          options.style = "currency";
          options.currency = parseFormat(column.format).currency || "USD";
        } else if (column.type === "percent") {
          options.style = "percent";
        }
        try {
          return new Intl.NumberFormat(locale, options);
        } catch (_error) {
          return new Intl.NumberFormat(locale, { notation: "compact" });
        }
      });
    }

    function dateFormat(monthOnly) {
      return cached(monthOnly ? "d|month" : "d|day", function () {
        return new Intl.DateTimeFormat(
          locale,
          monthOnly
            ? { month: "short", year: "numeric", timeZone: "UTC" }
            : { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" },
        );
      });
    }

    /** The display text of one value of a column; "(Blank)" for a missing value, as Power BI. */
    function value(column, raw) {
      if (raw === null || raw === undefined || raw === "") return "(Blank)";
      if (isNumeric(column) && typeof raw === "number") return numberFormat(column).format(raw);
      if (column.type === "date") {
        const parsed = parseIsoDate(raw);
        if (parsed) return dateFormat(parsed.monthOnly).format(parsed.date);
      }
      return String(raw);
    }

    /** Short axis labels: $1.2M, 35K. */
    function compact(column, raw) {
      if (typeof raw !== "number") return String(raw);
      return compactFormat(column).format(raw);
    }

    return { locale: locale, value: value, compact: compact, isNumeric: isNumeric };
  }

  ns.format = { createFormatter: createFormatter, parseFormat: parseFormat, isNumeric: isNumeric };
})();
