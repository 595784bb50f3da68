"""The signed-in user's reports, and the report-access dependencies other routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from embedportal.access.grants import can_view, visible_reports
from embedportal.db.models import Report
from embedportal.i18n import _
from embedportal.web.deps import CurrentUser, DbSession
from embedportal.web.templating import render

router = APIRouter(tags=["reports"])


def known_report(report_id: str, db: DbSession) -> Report:
    """The report, if the catalogue has it and it is still in Power BI; else 404."""
    report = db.get(Report, report_id)
    if report is None or not report.is_available:
        raise HTTPException(status_code=404, detail=_("There is no such report."))
    return report


def viewable_report(
    user: CurrentUser, report: Annotated[Report, Depends(known_report)], db: DbSession
) -> Report:
    """The report, if the signed-in user may open it: 401 signed out, 404 unknown, 403 not
    granted. (The user comes first so a signed-out caller learns nothing about report ids.)"""
    if not can_view(session=db, user=user, report=report):
        raise HTTPException(
            status_code=403,
            detail=_(
                "You do not have access to this report. Ask an administrator to grant it to you."
            ),
        )
    return report


ViewableReport = Annotated[Report, Depends(viewable_report)]


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, user: CurrentUser, db: DbSession) -> HTMLResponse:
    reports = visible_reports(session=db, user=user)
    return render(request, "reports.html", {"reports": reports})
