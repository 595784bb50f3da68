"""`/api/v1/sso/links`: the organization's own application asks for a one-time link that signs
one of its users in and shows a report, for a frame of its own (docs/embedding-sso.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from embedportal.access import sso_links
from embedportal.access.api_keys import ApiCaller
from embedportal.access.audit import through_api_key
from embedportal.access.users import UserInputError, find_user_by_email, normalise_email
from embedportal.access.view_filters import MAX_PARAM_LENGTH, FilterList, filters_param
from embedportal.db.base import utcnow
from embedportal.db.models import Report
from embedportal.i18n import _
from embedportal.web.api_auth import require_scope
from embedportal.web.api_v1 import COMMON_ERRORS, ApiError, ApiModel, not_found, refused
from embedportal.web.deps import AppSettings, DbSession
from embedportal.web.links import portal_base_url

router = APIRouter(
    prefix="/api/v1/sso", tags=["integration: single sign-on"], responses=COMMON_ERRORS
)

SsoIssue = Annotated[ApiCaller, require_scope("sso:issue")]


class SsoLinkRequest(ApiModel):
    email: str = Field(max_length=320, examples=["ana@example.com"])
    report_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The report to show (its id in /api/v1/reports); none: the user's list.",
        examples=["9b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"],
    )
    hide_navigation: bool = Field(
        False, description="Show the report without the portal's header and navigation."
    )
    tv: bool = Field(False, description="Show the report in TV mode: full window, no toolbar.")
    filters: FilterList = Field(
        default_factory=list,
        description="Basic filters the report opens with (at most 10). A view option only: the "
        "reader can change them; keep rows from a user with row-level security.",
        examples=[[{"table": "Sales", "column": "Region", "operator": "In", "values": ["North"]}]],
    )
    lifetime_seconds: int = Field(
        int(sso_links.DEFAULT_LIFETIME.total_seconds()),
        ge=int(sso_links.MIN_LIFETIME.total_seconds()),
        le=int(sso_links.MAX_LIFETIME.total_seconds()),
        description="How long the link may wait to be opened (it works once).",
    )


class SsoLinkOut(BaseModel):
    url: str = Field(examples=["https://reports.example.com/sso/3q2-Xv…"])
    expires_at: datetime
    user_id: int = Field(examples=[42])
    report_id: str | None


@router.post("/links", status_code=201, response_model=SsoLinkOut)
def issue_sso_link(
    request: Request, db: DbSession, settings: AppSettings, caller: SsoIssue, body: SsoLinkRequest
) -> SsoLinkOut:
    """A link that signs the user in once, within `lifetime_seconds`, and shows the report.
    Put it in an iframe (or open it) at once; issue a new one each time the page is shown.
    400 `UserBlocked` for a blocked user; 403 `ReportNotAllowed` when the user may not open
    the report; 404 `NotFound` for an unknown e-mail or report; 400 `FiltersWithoutReport` for
    filters without a report, `FiltersTooLong` for more than 2,000 characters of them."""
    try:
        email = normalise_email(body.email)
    except UserInputError as error:
        raise refused(error) from None
    user = find_user_by_email(session=db, email=email)
    if user is None:
        raise not_found(_("There is no user with this e-mail."))
    if body.filters and body.report_id is None:
        raise ApiError(400, "FiltersWithoutReport", _("Filters need a report to open (report_id)."))
    if len(filters_param(body.filters)) > MAX_PARAM_LENGTH:
        raise ApiError(
            400,
            "FiltersTooLong",
            _(
                "The filters take more than %(limit)s characters as JSON: send fewer values.",
                limit=MAX_PARAM_LENGTH,
            ),
        )
    report = None
    if body.report_id is not None:
        report = db.get(Report, body.report_id)
        if report is None:
            raise not_found(_("There is no report with this id."))
    with through_api_key(caller.name):
        issued = sso_links.issue_link(
            session=db,
            user=user,
            report=report,
            hide_navigation=body.hide_navigation,
            tv=body.tv,
            filters=body.filters,
            lifetime=timedelta(seconds=body.lifetime_seconds),
            api_key_name=caller.name,
            now=utcnow(),
        )
    if issued is sso_links.IssueRefusal.USER_BLOCKED:
        raise ApiError(400, issued.value, _("This user is blocked."))
    if issued is sso_links.IssueRefusal.REPORT_NOT_ALLOWED:
        raise ApiError(403, issued.value, _("This user may not open this report."))
    db.commit()
    link = issued.record
    return SsoLinkOut(
        url=f"{portal_base_url(request, settings)}/sso/{issued.secret}",
        expires_at=link.expires_at,
        user_id=user.id,
        report_id=link.report_id,
    )
