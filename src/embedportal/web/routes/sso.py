"""`/sso/{secret}`: a single sign-on link opened, in the organization's own application's frame
or a tab of its own (docs/embedding-sso.md). The first use signs the user in with a short
session of its own and leads to the report; any other use gets a page saying why not."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from embedportal.access.sso_links import LinkRefusal, redeem_link
from embedportal.access.sso_origins import sso_origins
from embedportal.access.view_filters import ReportFilter, filters_param
from embedportal.db.base import utcnow
from embedportal.db.models import SsoLink
from embedportal.i18n import _
from embedportal.web.deps import AppSettings, DbSession
from embedportal.web.routes.auth import finish_sign_in
from embedportal.web.security_headers import mark_embeddable
from embedportal.web.templating import render

router = APIRouter(tags=["sign-in"])

LinkSecret = Annotated[str, Path(min_length=1, max_length=128)]


def _refusal_words(refusal: LinkRefusal) -> tuple[int, str, str]:
    """The status, heading and explanation for a link that signs nobody in."""
    if refusal is LinkRefusal.USED:
        return (
            410,
            _("This link was already used."),
            _(
                "A sign-in link works once. Go back to the application you came from and open the "
                "report again from there."
            ),
        )
    if refusal is LinkRefusal.USER_BLOCKED:
        return (
            403,
            _("This account is blocked."),
            _("Ask an administrator of the portal to unblock it."),
        )
    if refusal is LinkRefusal.REPORT_NOT_ALLOWED:
        return (
            403,
            _("You may not open this report."),
            _("Ask an administrator of the portal to grant it to you."),
        )
    return (
        410,
        _("This link is no longer valid."),
        _(
            "Sign-in links work for a few minutes only. Go back to the application you came from "
            "and open the report again from there."
        ),
    )


def _destination(link: SsoLink) -> str:
    if link.report_id is None:
        return "/reports"
    options = {"tv": "1"} if link.tv else ({"nav": "0"} if link.hide_navigation else {})
    if link.view_filters:
        filters = [ReportFilter.model_validate(item) for item in link.view_filters]
        options["filters"] = filters_param(filters)
    path = f"/reports/{quote(link.report_id, safe='')}"
    return f"{path}?{urlencode(options)}" if options else path


@router.get("/sso/{secret}", include_in_schema=False)
def open_sso_link(
    request: Request, db: DbSession, settings: AppSettings, secret: LinkSecret
) -> Response:
    # Shown in the application's frame either way: the refusal too must be readable there.
    mark_embeddable(request.scope, sso_origins(session=db))
    now = utcnow()
    outcome = redeem_link(session=db, secret=secret, now=now)
    if isinstance(outcome, LinkRefusal):
        db.commit()  # a link used by a blocked user is spent all the same
        status, title, message = _refusal_words(outcome)
        context = {"status": status, "title": title, "message": message}
        return render(request, "sso_refused.html", context, status_code=status)
    return finish_sign_in(
        request,
        db=db,
        settings=settings,
        user=outcome.user,
        next_url=_destination(outcome.link),
        now=now,
        via_sso=True,
    )
