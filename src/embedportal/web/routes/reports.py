"""The signed-in user's reports (for user-owned ones, only those their own Power BI rights
reach: access/catalogue.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from embedportal.access.catalogue import within_power_bi_rights
from embedportal.access.grants import visible_reports
from embedportal.web.deps import CurrentUser, DbSession, PersonRightsDep
from embedportal.web.templating import render

router = APIRouter(tags=["reports"])


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request, user: CurrentUser, db: DbSession, rights: PersonRightsDep
) -> HTMLResponse:
    granted = visible_reports(session=db, user=user)
    reports = within_power_bi_rights(session=db, user=user, reports=granted, rights=rights)
    return render(request, "reports.html", {"reports": reports})
