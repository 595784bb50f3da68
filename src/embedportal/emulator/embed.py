"""The emulator's embed iframe: the page powerbi-client frames, and the files it loads.

`GET /reportEmbed` keeps the production path name, so the same embed URL shape works against
the emulator and against Power BI. The page holds no report data: its scripts speak the SDK's
postMessage protocol and read the report through the private data API
(docs/emulator-contract.md) with the embed token the SDK hands them. See docs/emulator-iframe.md.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from embedportal.assets import MissingBrowserPackagesError, vendor_file
from embedportal.emulator.state import get_state

router = APIRouter()

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = _HERE / "templates"
STATIC_DIR = _HERE / "static"
STATIC_PREFIX = "/emulator-static"

# Only the npm files the iframe needs are reachable under /emulator-static/vendor/.
VENDOR_NAMES = frozenset({"chart.umd.js"})

# Power BI's page may be framed by any host page, so no X-Frame-Options and `frame-ancestors *`;
# everything else is locked to the emulator's own origin (scripts, styles, data requests).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-ancestors *",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_ASSET_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The emulator's page templates (the embed page, the sign-in pages)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        auto_reload=True,
    )


@lru_cache(maxsize=64)
def _fingerprint(path: Path, mtime_ns: int, size: int) -> str:
    """A short content hash, so a changed file gets a new URL (mtime and size key the cache)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _versioned(url: str, path: Path) -> str:
    stat = path.stat()
    return f"{url}?v={_fingerprint(path, stat.st_mtime_ns, stat.st_size)}"


def static_url(name: str) -> str:
    """The URL of one of the iframe's own files, with a cache-busting version."""
    return _versioned(f"{STATIC_PREFIX}/{name}", STATIC_DIR / name)


def vendor_url(name: str) -> str:
    """The URL of an npm file served from node_modules, with a cache-busting version."""
    return _versioned(f"{STATIC_PREFIX}/vendor/{name}", vendor_file(name))


@router.get("/reportEmbed", response_class=HTMLResponse, include_in_schema=False)
def report_embed(request: Request) -> HTMLResponse:
    """The embed page. Report id, group id, uid and locale stay in the query string, where the
    SDK put them; the scripts read them there and take everything else from `/report/load`."""
    try:
        html = (
            templates()
            .get_template("report_embed.html")
            .render(
                static_url=static_url,
                vendor_url=vendor_url,
                token_hook_lead_seconds=f"{get_state(request).settings.token_hook_lead_seconds:g}",
            )
        )
    except MissingBrowserPackagesError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.api_route(
    STATIC_PREFIX + "/vendor/{name}", methods=["GET", "HEAD"], include_in_schema=False
)
def vendor_asset(name: str) -> FileResponse:
    if name not in VENDOR_NAMES:
        raise HTTPException(status_code=404)
    try:
        path = vendor_file(name)
    except MissingBrowserPackagesError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None
    return FileResponse(path, headers=_ASSET_HEADERS)


@router.api_route(STATIC_PREFIX + "/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def static_asset(path: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(candidate, headers=_ASSET_HEADERS)
