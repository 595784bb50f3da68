"""Jinja2 rendering with gettext, the CSRF token, flash messages and the signed-in user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer

from embedportal import __version__, i18n
from embedportal.access.branding import DEFAULT_BRAND

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
FLASH_COOKIE = "embedportal_flash"


def create_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        extensions=["jinja2.ext.i18n"],
    )
    templates = Jinja2Templates(env=env)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.gettext_(message),
        lambda singular, plural, n: i18n.current_translations().ngettext(singular, plural, n),
        newstyle=True,
    )
    env.globals["app_version"] = __version__
    env.globals["languages"] = i18n.LANGUAGES
    # Numbers and moments as the reader writes them: {{ price | number(2) }}, {{ at | moment }}.
    env.filters["number"] = i18n.format_number
    env.filters["moment"] = i18n.format_datetime
    env.filters["day"] = i18n.format_date
    return templates


def _flash_serializer(request: Request) -> URLSafeSerializer:
    secret = request.app.state.settings.secret_key.get_secret_value()
    return URLSafeSerializer(secret, salt="flash")


def flash_redirect(
    request: Request, url: str, message: str, *, category: str = "success"
) -> RedirectResponse:
    """303 after a POST, carrying a one-time message to show on the next page."""
    response = RedirectResponse(url, status_code=303)
    value = _flash_serializer(request).dumps({"message": message, "category": category})
    response.set_cookie(FLASH_COOKIE, value, httponly=True, samesite="lax", path="/")
    return response


def _pop_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = _flash_serializer(request).loads(raw)
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    flash = _pop_flash(request)
    full_context: dict[str, Any] = {
        "request": request,
        "current_user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "language": getattr(request.state, "language", "en"),
        "flash": flash,
        "organization_name": getattr(request.state, "organization_name", DEFAULT_BRAND.name),
        "brand": getattr(request.state, "brand", DEFAULT_BRAND),
        **(context or {}),
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, full_context, status_code=status_code)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def render_form(
    request: Request, template: str, context: dict[str, Any], *, refused: bool
) -> HTMLResponse:
    """A page with a form: 400 when it shows a refusal (the form's own errors), else 200."""
    return render(request, template, context, status_code=400 if refused else 200)
