"""The signed-in user's reports."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from embedportal.access.grants import visible_reports
from embedportal.web.deps import CurrentUser, DbSession
from embedportal.web.templating import render

router = APIRouter(tags=["reports"])


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, user: CurrentUser, db: DbSession) -> HTMLResponse:
    reports = visible_reports(session=db, user=user)
    return render(request, "reports.html", {"reports": reports})
