"""Input at the edge (docs/security.md, V5): what no field of the portal accepts is refused before
any route, service or database sees it.

Every route depends on `guard_input` (create_app puts it on the app): the path, each query value
and each posted form value must hold no control character (a tab, a line break and a carriage
return are text; NUL and the rest are not: PostgreSQL refuses NUL in text, SQLite would store
it, a log line would carry it) and stay under a length no field of the portal needs. A refusal
is a 400 with the reason (JSON for the API, the error page for people), never a server error.

What a field means (a whole number, an e-mail, a GUID) stays with the services and the form
models; `ascii_whole_number` is the one way a route reads digits, so "²" or five thousand
digits are "not a number" rather than an exception.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request

from embedportal.i18n import _

# No query value of the portal (a search, a filter, a report id, a day) needs more.
MAX_QUERY_VALUE = 2_000
MAX_QUERY_STRING = 16_000
# The longest form field is a group's description or a schedule; a password is far shorter.
MAX_FORM_VALUE = 10_000
MAX_PATH = 2_000
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Control characters, but for tab, line feed and carriage return (text a textarea sends).
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# In a path even those have no place.
_CONTROL_IN_PATH = re.compile(r"[\x00-\x1f\x7f]")
# A query string spells a control character raw or percent-encoded; the common case (none of
# either) is decided on the raw bytes, with no decoding.
_MAYBE_CONTROL_IN_QUERY = re.compile(rb"%(?:[01][0-9A-Fa-f]|7[Ff])|[\x00-\x1f\x7f]")


class InputRefused(HTTPException):
    """A 400 with its own JSON `code`, so the API's callers tell it from other refusals."""

    code = "InvalidInput"

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=400, detail=detail)


def control_character_refusal(name: str) -> InputRefused:
    return InputRefused(
        _(
            "“%(name)s” holds a control character (such as NUL) that no field accepts. "
            "Remove it and try again.",
            name=name,
        )
    )


def too_long_refusal(name: str, limit: int) -> InputRefused:
    return InputRefused(
        _(
            "“%(name)s” is too long: at most %(count)s characters.",
            name=name,
            count=limit,
        )
    )


def check_text(name: str, value: str, *, limit: int) -> None:
    """Raise InputRefused when ``value`` is too long or holds a control character."""
    if len(value) > limit:
        raise too_long_refusal(name, limit)
    if _CONTROL_IN_TEXT.search(value):
        raise control_character_refusal(name)


async def guard_input(request: Request) -> None:
    """The app-wide dependency: path, query values and form values, as described above."""
    # From the scope, not `request.url`: building the URL object costs more than this check.
    scope = request.scope
    path: str = scope["path"]
    if len(path) > MAX_PATH:
        raise too_long_refusal(_("the address"), MAX_PATH)
    if _CONTROL_IN_PATH.search(path):
        raise control_character_refusal(_("the address"))
    raw_query: bytes = scope.get("query_string", b"")
    if raw_query:
        if len(raw_query) > MAX_QUERY_STRING:
            raise too_long_refusal(_("the address"), MAX_QUERY_STRING)
        long_values = len(raw_query) > MAX_QUERY_VALUE
        if long_values or _MAYBE_CONTROL_IN_QUERY.search(raw_query):
            for name, text in request.query_params.multi_items():
                check_text(name, name, limit=MAX_QUERY_VALUE)
                check_text(name, text, limit=MAX_QUERY_VALUE)
    if scope["method"] in ("POST", "PUT", "PATCH") and request.headers.get(
        "content-type", ""
    ).startswith(FORM_TYPES):
        # Starlette keeps the parsed form: the route's own Form() reads the same object.
        form = await request.form()
        for name, item in form.multi_items():
            check_text(name, name, limit=MAX_FORM_VALUE)
            if isinstance(item, str):
                check_text(name, item, limit=MAX_FORM_VALUE)


def ascii_whole_number(text: str, *, max_digits: int = 9) -> int | None:
    """The non-negative whole number ``text`` spells in ASCII digits (at most ``max_digits``,
    so far below any column's range), or None. `str.isdigit` alone also takes "²" and "٣",
    which `int` then refuses with an exception."""
    text = text.strip()
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
