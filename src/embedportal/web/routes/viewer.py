"""The report viewer: one report, full window; `?tv=1` hides the portal's chrome and the
toolbar, `?nav=0` the portal's navigation only (for a report inside another application),
`?filters=` opens it filtered (access/view_filters.py)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from embedportal.access.catalogue import within_power_bi_rights
from embedportal.access.view_filters import FilterParamError, embed_filters, parse_filters_param
from embedportal.i18n import _
from embedportal.web.deps import CurrentUser, DbSession, PersonRightsDep, ViewableReport
from embedportal.web.templating import render

router = APIRouter(tags=["reports"])


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def viewer_page(
    request: Request,
    user: CurrentUser,
    report: ViewableReport,
    db: DbSession,
    rights: PersonRightsDep,
    tv: bool = False,
    nav: bool = True,
    # Its length is bounded by the input guard (and parse_filters_param), with a reason.
    filters: str = "",
) -> HTMLResponse:
    """The page holds no token: the viewer script asks the token API for the first one."""
    try:
        opening_filters = parse_filters_param(filters) if filters else []
    except FilterParamError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    if not within_power_bi_rights(session=db, user=user, reports=[report], rights=rights):
        raise HTTPException(
            status_code=403,
            detail=_(
                "Your own Power BI account cannot see this report's workspace. Ask a Power BI "
                "administrator for access to it."
            ),
        )
    context = {"report": report, "tv": tv, "nav": nav, "filters": embed_filters(opening_filters)}
    return render(request, "viewer.html", context)
