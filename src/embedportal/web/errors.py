"""Errors answer in the caller's terms: JSON with a reason for the API, a page for people."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedportal import i18n
from embedportal.i18n import N_, _
from embedportal.web.context import LANGUAGE_COOKIE
from embedportal.web.deps import NotAllowed, NotSignedIn, TwoStepEnrolmentRequired
from embedportal.web.templating import flash_redirect, render

logger = logging.getLogger("embedportal.web")

# The database is restarting, a connection was cut, or the pool had none free in time: the
# request failed as a whole (its transaction rolled back) and may simply be sent again.
DATABASE_ERRORS = (OperationalError, DisconnectionError, PoolTimeoutError)
DATABASE_RETRY_AFTER_SECONDS = 5


# A page's title for the statuses people meet, in their language (HTTP's own phrase otherwise).
_TITLES = {
    400: N_("Something in the request is not right"),
    401: N_("Sign in first"),
    403: N_("Not allowed"),
    404: N_("Page not found"),
    405: N_("Not allowed here"),
    409: N_("Changed in the meantime"),
    413: N_("Too large"),
    422: N_("Something in the request is not right"),
    429: N_("Too many requests"),
    500: N_("Something went wrong"),
    503: N_("Not available right now"),
}
# What the page says when the error came with no words of its own (Starlette's bare phrases).
_DEFAULT_MESSAGES = {
    404: N_("There is nothing at this address. It may have moved, or the link may be wrong."),
    405: N_("This page cannot be used that way."),
    500: N_(
        "The portal could not finish this. Try again; if it keeps happening, tell an administrator."
    ),
}


def status_title(status: int) -> str:
    title = _TITLES.get(status)
    return _(title) if title else HTTPStatus(status).phrase


def _page_message(status: int, message: str) -> str:
    """Starlette's bare phrase ("Not Found") says nothing the title does not: say what to do."""
    try:
        bare = message == HTTPStatus(status).phrase
    except ValueError:
        bare = False
    default = _DEFAULT_MESSAGES.get(status)
    return _(default) if bare and default else message


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


def _json_body(request: Request, message: str, code: str) -> dict[str, object]:
    """The integration API (`/api/v1`, docs/integration-api.md) says `{"code", "message"}`;
    the viewer's API `{"detail", "code"}`, as it always has."""
    if request.url.path.startswith("/api/v1/"):
        return {"code": code, "message": message}
    return {"detail": message, "code": code}


def error_response(request: Request, status: int, message: str, code: str) -> Response:
    if wants_json(request):
        return JSONResponse(_json_body(request, message, code), status_code=status)
    return render(
        request,
        "error.html",
        {
            "status": status,
            "message": _page_message(status, message),
            "title": status_title(status),
        },
        status_code=status,
    )


@contextmanager
def callers_language(request: Request) -> Iterator[None]:
    """Speak the caller's language while answering outside the request context (the last
    resort, a database outage): the one the context chose if it got that far, else the
    caller's cookie or browser."""
    settings = request.app.state.settings
    language = (
        getattr(request.state, "language", None)
        or i18n.match_language(request.cookies.get(LANGUAGE_COOKIE, ""))
        or i18n.negotiate(request.headers.get("accept-language"), settings.default_language)
    )
    activated = i18n.activate(language)
    request.state.language = language
    try:
        yield
    finally:
        i18n.deactivate(activated)


def database_unavailable_response(request: Request) -> Response:
    with callers_language(request):
        return _database_unavailable_response(request)


def _database_unavailable_response(request: Request) -> Response:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.database_unavailable.inc()
    message = _("The database is not answering at the moment. Try again in a few seconds.")
    if wants_json(request):
        response: Response = JSONResponse(
            _json_body(request, message, "DatabaseUnavailable"), status_code=503
        )
    else:
        try:
            response = error_response(request, 503, message, "DatabaseUnavailable")
        except Exception:  # noqa: BLE001 - the page itself may need what is failing
            response = Response(message, status_code=503, media_type="text/plain")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _error: NotSignedIn) -> Response:
        if wants_json(request):
            return JSONResponse(
                {"detail": _("Sign in first."), "code": "Unauthorized"}, status_code=401
            )
        if request.method != "GET":
            # After sign-in the browser would GET a POST-only URL; come back to the start.
            return RedirectResponse("/login", status_code=303)
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, _error: NotAllowed) -> Response:
        return error_response(
            request, 403, _("You do not have permission to do that."), "Forbidden"
        )

    @app.exception_handler(TwoStepEnrolmentRequired)
    async def two_step_enrolment_required(
        request: Request, _error: TwoStepEnrolmentRequired
    ) -> Response:
        message = _(
            "Your organization requires two-step sign-in for administrators. "
            "Set it up to open the admin pages."
        )
        if wants_json(request):
            return JSONResponse({"detail": message, "code": "TwoStepRequired"}, status_code=403)
        return flash_redirect(request, "/account/two-step", message, category="info")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        # An exception may name its own code (deps.CsrfRejected); else the status's phrase.
        code = getattr(error, "code", None) or HTTPStatus(error.status_code).phrase.replace(" ", "")
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        response = error_response(request, error.status_code, detail, code)
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(DataError)
    async def unstorable_input(request: Request, error: DataError) -> Response:
        # The database refused a value the request carried (PostgreSQL takes no NUL character
        # in text; a number may be out of range): the caller's input, not the portal, is at
        # fault, and the transaction was rolled back, so nothing is half saved.
        logger.info("refused input the database cannot store: %s", error.orig)
        message = _(
            "The request holds a value that cannot be stored (a NUL character, or a number "
            "out of range). Correct it and try again."
        )
        return error_response(request, 400, message, "InvalidInput")

    @app.exception_handler(OperationalError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeoutError)
    async def database_unavailable(request: Request, error: Exception) -> Response:
        logger.warning("database unavailable: %s", type(error).__name__)
        return database_unavailable_response(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(part) for part in problem["loc"] if part != "body"),
                "message": problem["msg"],
            }
            for problem in error.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "Invalid input."
        if wants_json(request):
            return JSONResponse(
                {**_json_body(request, message, "InvalidRequest"), "problems": problems},
                status_code=422,
            )
        return error_response(request, 400, message, "InvalidRequest")


__all__ = ["HTTPException", "install_error_handlers", "error_response"]
