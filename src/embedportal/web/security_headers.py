"""The security headers every portal answer carries (docs/security.md, V14).

A pure ASGI middleware: the header set is worked out once, from settings, into the raw byte
pairs ASGI sends, so an answer pays one list extension (and a scan for its own Cache-Control)
and nothing else. The token API and the push channel pass through it too.

The policy:

- `Content-Security-Policy`: scripts, styles, fonts and fetches from the portal only (no inline
  script, no `eval`: htmx runs with `allowEval` off, see base.html), images also as `data:`
  (Pico's icons), report frames from Power BI's embed origins (and the emulator's, when the
  portal is pointed at one), no plugins, `<base>` and form targets the portal's own, and who may
  frame the portal from `EMBEDPORTAL_FRAME_ANCESTORS`.
- `X-Frame-Options` saying the same for browsers without `frame-ancestors` (it can only say
  "nobody" or "this site"; with a list of origins only the CSP speaks).
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (report ids in URLs stay
  on the portal), `Cross-Origin-Opener-Policy: same-origin`.
- `Strict-Transport-Security` when the portal is served over https.
- `Cache-Control: no-store` on every answer that names none itself except static files: pages
  and JSON may carry a person's data and CSRF token, and must not outlive a sign-out in a
  shared cache or the back button.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedportal.asgi import HttpMiddleware
from embedportal.settings import Settings

# Where Power BI's embed pages come from (the embed URLs the REST API hands out).
POWERBI_FRAME_ORIGINS = ("https://app.powerbi.com", "https://*.powerbi.com")
STATIC_PREFIX = "/static/"

Headers = list[tuple[bytes, bytes]]


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def report_frame_origins(settings: Settings) -> list[str]:
    """The origins a report's iframe may load from: Power BI's, the configured extra ones, and
    the origin of a Power BI API that is not Microsoft's (the emulator serves its embed page
    from the same origin as its REST API)."""
    origins = list(POWERBI_FRAME_ORIGINS)
    own = [settings.emulator_url or "", settings.powerbi_api_url]
    for url in own:
        origin = origin_of(url) if url else None
        if origin and not origin.endswith(".powerbi.com") and origin not in origins:
            origins.append(origin)
    for origin in (settings.report_frame_origins or "").split():
        if origin not in origins:
            origins.append(origin)
    return origins


def content_security_policy(settings: Settings) -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'", *report_frame_origins(settings)],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": settings.frame_ancestors.split(),
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def x_frame_options(frame_ancestors: str) -> str | None:
    """The X-Frame-Options equivalent of `frame-ancestors`, when there is one."""
    sources = frame_ancestors.split()
    if sources == ["'none'"]:
        return "DENY"
    if sources == ["'self'"]:
        return "SAMEORIGIN"
    # A list of origins: X-Frame-Options cannot say it (ALLOW-FROM is gone from browsers), and
    # a SAMEORIGIN here would forbid what the CSP allows. Browsers that frame read the CSP.
    return None


def served_over_https(settings: Settings) -> bool:
    return bool(settings.public_url and settings.public_url.lower().startswith("https://"))


def strict_transport_security(settings: Settings) -> str | None:
    if settings.hsts_max_age_seconds <= 0:
        return None
    return f"max-age={settings.hsts_max_age_seconds}"


# The request-state key that lets an answer be framed by the single sign-on origins.
EMBEDDABLE = "embedportal_embeddable"
MAX_EMBEDDABLE_SETS = 16


def mark_embeddable(scope: Scope, origins: str = "") -> None:
    """This request's answer may be framed by EMBEDPORTAL_SSO_FRAME_ANCESTORS and ``origins``
    (those the administrator allows, access/sso_origins.py): a single sign-on session's page,
    or the link that starts one."""
    scope.setdefault("state", {})[EMBEDDABLE] = origins


def embeddable_headers(settings: Settings, origins: str = "") -> dict[str, str]:
    """The header set for answers a single sign-on session may be shown in a frame with: the
    same, but `frame-ancestors` names the allowed applications too, and no X-Frame-Options."""
    ancestors = " ".join(
        source
        for source in (settings.frame_ancestors, settings.sso_frame_ancestors or "", origins)
        if source and source != "'none'"
    )
    framed = settings.model_copy(update={"frame_ancestors": ancestors or "'self'"})
    headers = security_headers(framed)
    headers.pop("X-Frame-Options", None)
    return headers


def security_headers(settings: Settings) -> dict[str, str]:
    """Every header the portal adds to each answer (HSTS only when served over https)."""
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    frame_options = x_frame_options(settings.frame_ancestors)
    if frame_options is not None:
        headers["X-Frame-Options"] = frame_options
    return headers


def _encoded(headers: Iterable[tuple[str, str]]) -> Headers:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class SecurityHeaders(HttpMiddleware):
    """Adds the precomputed header set to every HTTP answer of the wrapped app."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        super().__init__(app)
        self.always = _encoded(security_headers(settings).items())
        hsts = strict_transport_security(settings)
        self.hsts = _encoded([("Strict-Transport-Security", hsts)]) if hsts else []
        # Known from the public URL: every answer says it. Otherwise an https request (uvicorn
        # behind a trusted proxy that says so) gets it on its own.
        self.always_hsts = served_over_https(settings)
        if self.always_hsts:
            self.always = self.always + self.hsts
        self.no_store = (b"cache-control", b"no-store")
        self._settings = settings
        # By the administrator's origins: one value at a time, so a handful at most.
        self._embeddable: dict[str, Headers] = {}

    def embeddable(self, origins: str) -> Headers:
        headers = self._embeddable.get(origins)
        if headers is None:
            headers = _encoded(embeddable_headers(self._settings, origins).items())
            if self.always_hsts:
                headers = headers + self.hsts
            if len(self._embeddable) >= MAX_EMBEDDABLE_SETS:
                self._embeddable.clear()
            self._embeddable[origins] = headers
        return headers

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith(STATIC_PREFIX)
        https_request = not self.always_hsts and scope.get("scheme") == "https"
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: Headers = list(message.get("headers", ()))
                origins = state.get(EMBEDDABLE)
                headers.extend(self.always if origins is None else self.embeddable(origins))
                if https_request:
                    headers.extend(self.hsts)
                if not static and not any(name == b"cache-control" for name, _ in headers):
                    headers.append(self.no_store)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
