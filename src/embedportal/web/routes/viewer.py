"""The report viewer: one report, full window; `?tv=1` hides the portal's chrome."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from embedportal.web.deps import CurrentUser, ViewableReport
from embedportal.web.templating import render

router = APIRouter(tags=["reports"])


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def viewer_page(
    request: Request, _user: CurrentUser, report: ViewableReport, tv: bool = False
) -> HTMLResponse:
    """The page holds no token: the viewer script asks the token API for the first one."""
    return render(request, "viewer.html", {"report": report, "tv": tv})
