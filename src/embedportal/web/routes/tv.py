"""TV mode: pick reports and an interval, then show them in turn, full screen, for hours."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from embedportal.access.catalogue import PersonRights, within_power_bi_rights
from embedportal.access.grants import visible_reports
from embedportal.db.models import Report, User
from embedportal.i18n import _
from embedportal.web.deps import CurrentUser, DbSession, PersonRightsDep
from embedportal.web.input_guard import ascii_whole_number
from embedportal.web.templating import render

router = APIRouter(prefix="/tv", tags=["reports"])

MIN_INTERVAL_SECONDS = 10
MAX_INTERVAL_SECONDS = 24 * 60 * 60
DEFAULT_INTERVAL_SECONDS = 60
# Every report in the rotation stays embedded (one iframe each): keep a wall screen's memory sane.
MAX_TV_REPORTS = 12


def _screenable(*, db: Session, user: User, rights: PersonRights) -> list[Report]:
    """What the user may put on a screen: what the reports page lists (user-owned reports only
    where their own Power BI rights reach)."""
    granted = visible_reports(session=db, user=user)
    return within_power_bi_rights(session=db, user=user, reports=granted, rights=rights)


@router.get("", response_class=HTMLResponse)
def tv_picker(
    request: Request, user: CurrentUser, db: DbSession, rights: PersonRightsDep
) -> HTMLResponse:
    reports = _screenable(db=db, user=user, rights=rights)
    return render(
        request,
        "tv.html",
        {
            "reports": reports,
            "selected": set(),
            "interval": str(DEFAULT_INTERVAL_SECONDS),
            "errors": {},
            "max_reports": MAX_TV_REPORTS,
            "min_interval": MIN_INTERVAL_SECONDS,
        },
    )


@router.get("/show", response_class=HTMLResponse)
def tv_show(
    request: Request,
    user: CurrentUser,
    db: DbSession,
    rights: PersonRightsDep,
    report: Annotated[list[str] | None, Query()] = None,
    interval: str = str(DEFAULT_INTERVAL_SECONDS),
) -> HTMLResponse:
    """The rotation. Query string only (a bookmarkable URL for the screen's browser)."""
    visible = _screenable(db=db, user=user, rights=rights)
    by_id = {item.id: item for item in visible}
    chosen_ids = list(dict.fromkeys(report or []))
    errors: dict[str, str] = {}
    if not chosen_ids:
        errors["report"] = _("Choose at least one report.")
    elif any(report_id not in by_id for report_id in chosen_ids):
        errors["report"] = _("Some of the chosen reports are not available to you.")
    elif len(chosen_ids) > MAX_TV_REPORTS:
        errors["report"] = _(
            "Choose at most %(count)s reports for one screen.", count=MAX_TV_REPORTS
        )
    seconds = ascii_whole_number(interval)
    if seconds is None or not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        errors["interval"] = _(
            "Enter the seconds each report stays on screen: a whole number, at least %(min)s.",
            min=MIN_INTERVAL_SECONDS,
        )
    if errors or seconds is None:
        return render(
            request,
            "tv.html",
            {
                "reports": visible,
                "selected": set(chosen_ids),
                "interval": interval,
                "errors": errors,
                "max_reports": MAX_TV_REPORTS,
                "min_interval": MIN_INTERVAL_SECONDS,
            },
            status_code=400,
        )
    return render(
        request,
        "tv_show.html",
        {"reports": [by_id[report_id] for report_id in chosen_ids], "interval": seconds},
    )
