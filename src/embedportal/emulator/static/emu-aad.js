/*
 * When the emulated report asks its host for a new Microsoft Entra token (embed for your
 * organization: tokenType Aad with eventHooks.accessTokenProvider). The real iframe decides this
 * itself and does not say how; the emulator asks `leadSeconds` before the token's `exp`, again
 * with a doubling wait while the host answers null, and never later than the expiry.
 *
 * Pure (no DOM, no clock of its own): node tests load this file in a bare vm context
 * (tests/js/emu-aad.test.js); emu-report.js keeps the timer and calls these.
 */
(function (ns) {
  "use strict";

  const TOKEN_TYPE_AAD = 0; // models.TokenType.Aad
  const FIRST_RETRY_MS = 5000;
  const LONGEST_RETRY_MS = 60000;

  function base64UrlJson(part) {
    const padded = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
    const bytes = Uint8Array.from(atob(padded), function (c) {
      return c.charCodeAt(0);
    });
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  /** The token's `exp` in ms since the epoch, or null when it is not a JWT with one. */
  function expiryOf(token) {
    if (typeof token !== "string") return null;
    const parts = token.split(".");
    if (parts.length !== 3) return null;
    try {
      const claims = base64UrlJson(parts[1]);
      return typeof claims.exp === "number" && isFinite(claims.exp) ? claims.exp * 1000 : null;
    } catch (_error) {
      return null;
    }
  }

  /** Whether the host renews this report's token through the hook. */
  function usesHook(config, tokenProviderSupplied) {
    return !!tokenProviderSupplied && !!config && config.tokenType === TOKEN_TYPE_AAD;
  }

  /**
   * How long to wait before asking the host: `failures` answers of null (or errors) so far for
   * this token. Null when there is nothing to schedule (no expiry known).
   */
  function nextAskDelay(options) {
    const expiresAt = options.expiresAt;
    if (typeof expiresAt !== "number") return null;
    const now = options.now;
    const leadMs = Math.max(0, options.leadSeconds * 1000);
    const untilExpiry = Math.max(0, expiresAt - now);
    if (!options.failures) return Math.max(0, expiresAt - leadMs - now);
    const backoff = Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * Math.pow(2, options.failures - 1));
    // Once expired, keep asking at the longest wait: the host may come back.
    return untilExpiry > 0 ? Math.min(backoff, untilExpiry) : backoff;
  }

  ns.aad = Object.freeze({
    TOKEN_TYPE_AAD: TOKEN_TYPE_AAD,
    FIRST_RETRY_MS: FIRST_RETRY_MS,
    LONGEST_RETRY_MS: LONGEST_RETRY_MS,
    expiryOf: expiryOf,
    usesHook: usesHook,
    nextAskDelay: nextAskDelay,
  });
})((globalThis.EmbedEmulator = globalThis.EmbedEmulator || {}));
