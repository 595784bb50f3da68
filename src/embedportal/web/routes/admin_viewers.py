"""Admin → Viewer health: who is watching now (this instance's open viewers), and the token
refreshes, failures, expiry screens and recoveries that open viewers reported, and the tokens
handed out against those Power BI minted, per UTC day."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from embedportal.access.viewer_health import (
    duration_words,
    open_now,
    reason_label,
    viewer_health,
)
from embedportal.db.base import utcnow
from embedportal.i18n import _
from embedportal.web.deps import AdminUser, AppSettings, DbSession, TokenTallyDep
from embedportal.web.templating import render

router = APIRouter(prefix="/admin/viewers", tags=["admin"], include_in_schema=False)

# Without a chosen day the page shows this many days, ending today (UTC).
WINDOW_DAYS = 7


def _chosen_day(value: str, errors: dict[str, str]) -> date | None:
    text = value.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    # Far-off years would overflow when the day's start is turned into a moment.
    if day is None or not 1900 <= day.year <= 9998:
        errors["day"] = _("Give a date like 2025-01-31.")
        return None
    return day


def _context(db: DbSession, day: str) -> tuple[dict[str, Any], int]:
    errors: dict[str, str] = {}
    chosen = _chosen_day(day, errors)
    today = utcnow().date()
    first_day, last_day = (
        (chosen, chosen) if chosen else (today - timedelta(days=WINDOW_DAYS - 1), today)
    )
    context = {
        "health": viewer_health(session=db, first_day=first_day, last_day=last_day),
        "chosen_day": chosen,
        "day_value": day.strip(),
        "today": today,
        "window_days": WINDOW_DAYS,
        "reason_label": reason_label,
        "errors": errors,
    }
    return context, 400 if errors else 200


def _open_now_context(db: DbSession, tally: TokenTallyDep, settings: AppSettings) -> dict[str, Any]:
    open_viewers = tally.open_viewers
    watchers = open_viewers.gather()
    return {
        "open_rows": open_now(session=db, open_viewers=open_viewers, watchers=watchers),
        "instance": open_viewers.instance,
        "watchers": watchers,
        "redis_expected": bool(settings.redis_url),
        "duration_words": duration_words,
    }


@router.get("")
def viewers_page(
    request: Request,
    db: DbSession,
    _admin: AdminUser,
    tally: TokenTallyDep,
    settings: AppSettings,
    day: str = "",
) -> Response:
    context, status = _context(db, day)
    context.update(_open_now_context(db, tally, settings))
    return render(request, "admin/viewers.html", context, status_code=status)


@router.get("/open")
def viewers_open_now(
    request: Request,
    db: DbSession,
    _admin: AdminUser,
    tally: TokenTallyDep,
    settings: AppSettings,
) -> Response:
    """Who is watching now, alone: the htmx target that refreshes itself on the page."""
    return render(request, "admin/_open_now.html", _open_now_context(db, tally, settings))


@router.get("/rows")
def viewers_rows(request: Request, db: DbSession, _admin: AdminUser, day: str = "") -> Response:
    """The figures alone: the htmx target of the day picker."""
    context, status = _context(db, day)
    return render(request, "admin/_viewers.html", context, status_code=status)
