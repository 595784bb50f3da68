"""View as: an administrator opens a report exactly as a chosen user sees it (their access,
their RLS identity), with a banner saying so. Audited (``report.viewed_as``).

The page is the viewer's, with its own token URL: the tokens it gets carry the chosen user's
identity, are minted for administrators only, and live under a cache scope of their own, so a
View as token is never handed to anyone's viewer, the chosen user's included.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.grants import record_viewed_as, view_as_refusal
from embedportal.db.models import Report, User
from embedportal.db.session import session_scope
from embedportal.i18n import N_, _
from embedportal.powerbi import PowerBIError
from embedportal.settings import Settings
from embedportal.tokens.service import TokenWaitTimeoutError
from embedportal.web.deps import (
    AdminUser,
    CsrfProtected,
    DbSession,
    TokenApiServicesDep,
    stored_or_404,
)
from embedportal.web.forms import MAX_ID
from embedportal.web.templating import render
from embedportal.web.token_answers import (
    STALE_OK_REASONS,
    Refusal,
    TokenContext,
    TokenRequestBody,
    capacity_refusal,
    error_answer,
    load_token_context,
    powerbi_failure,
)

logger = logging.getLogger("embedportal.tokens")
router = APIRouter(tags=["admin"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Keeps View as tokens apart from every viewer's in the token cache (tokens/service.py).
VIEW_AS_SCOPE = "view-as"


def _user_and_report(db: Session, user_id: int, report_id: str) -> tuple[User, Report]:
    user = stored_or_404(db.get(User, user_id), N_("There is no such user."))
    report = stored_or_404(db.get(Report, report_id), N_("There is no such report."))
    return user, report


@router.get("/admin/reports/{report_id}/view-as")
def choose_view_as(
    report_id: str,
    _admin: AdminUser,
    db: DbSession,
    user: Annotated[int, Query(ge=1, le=MAX_ID)],
) -> Response:
    """The report page's "View as" form (a user chosen): on to that user's view."""
    chosen, report = _user_and_report(db, user, report_id)
    return RedirectResponse(
        f"/admin/users/{chosen.id}/view-as/{report.id}?back=report", status_code=303
    )


@router.get("/admin/users/{user_id}/view-as/{report_id}", response_class=HTMLResponse)
def view_as_page(
    request: Request,
    user_id: UserId,
    report_id: str,
    admin: AdminUser,
    db: DbSession,
    back: Literal["user", "report"] = "user",
) -> HTMLResponse:
    """The report as the user sees it, or (403) why they cannot open it. ``back``: the admin
    page the way back leads to (the user's, or the report's)."""
    user, report = _user_and_report(db, user_id, report_id)
    refusal = view_as_refusal(session=db, user=user, report=report)
    who = user.name or user.email
    context = {
        "report": report,
        "as_user": user,
        "who": who,
        "refusal": refusal,
        "back": (f"/admin/reports/{report.id}", _("Back to %(report)s", report=report.name))
        if back == "report"
        else (f"/admin/users/{user.id}", _("Back to %(name)s", name=who)),
    }
    if refusal is not None:
        return render(request, "admin/view_as.html", context, status_code=403)
    record_viewed_as(session=db, actor=admin, user=user, report=report)
    db.commit()
    token_url = f"/admin/users/{user.id}/view-as/{report.id}/token"
    return render(request, "admin/view_as.html", {**context, "token_url": token_url})


def _load_view_as_context(
    session_factory: sessionmaker[Session],
    settings: Settings,
    admin_id: int,
    user_id: int,
    report_id: str,
) -> tuple[Report, TokenContext] | Refusal:
    """The chosen user's token context (access, RLS identity), with the capacity rights of the
    administrator, who is the one in front of the report (and may start its capacity)."""
    with session_scope(session_factory) as session:
        admin = session.get(User, admin_id)
        if admin is None:
            return Refusal(401, "")
        if session.get(User, user_id) is None:
            return Refusal(404, N_("There is no such user."))
        rights = capacity_rights(session=session, user=admin)
    loaded = load_token_context(session_factory, settings, user_id, report_id)
    if isinstance(loaded, Refusal) or loaded[1].capacity is None:
        return loaded
    report, context = loaded
    assert context.capacity is not None
    capacity = dataclasses.replace(context.capacity, rights=rights)
    return report, dataclasses.replace(context, capacity=capacity)


@router.post("/admin/users/{user_id}/view-as/{report_id}/token", dependencies=[CsrfProtected])
async def view_as_token(
    user_id: UserId,
    report_id: str,
    admin: AdminUser,
    api: TokenApiServicesDep,
    body: Annotated[TokenRequestBody | None, Body()] = None,
) -> JSONResponse:
    """The token API's answer (docs/token-api.md), for the chosen user's identity."""
    reason = body.reason if body is not None and body.reason else "load"
    loaded = await run_in_threadpool(
        _load_view_as_context, api.session_factory, api.settings, admin.id, user_id, report_id
    )
    if isinstance(loaded, Refusal):
        if loaded.status == 404:
            raise HTTPException(status_code=404, detail=_(loaded.detail))
        # The chosen user may not open it (or no longer exists, or is blocked): for the
        # administrator's viewer that is "access removed", never "signed out".
        detail = _(loaded.detail) if loaded.detail else _("This user cannot open any report.")
        return error_answer(403, detail, loaded.code or "Forbidden")
    report, context = loaded
    connection = context.connection
    if not connection.ready or connection.connection is None:
        return error_answer(
            503,
            _(
                "The portal is not connected to Power BI yet. An administrator must set the "
                "connection in Admin → Settings."
            ),
            "PowerBINotConnected",
        )
    refusal = await capacity_refusal(
        context,
        connection.connection,
        admin,
        reason,
        api.session_factory,
        api.probe,
        api.control,
        api.controller,
    )
    if refusal is not None:
        return refusal
    try:
        issued = await api.service.issue(
            minter=api.clients.get(connection.connection),
            scope=f"{connection.cache_scope}|{VIEW_AS_SCOPE}",
            report=report,
            identity=context.identity,
            policy=context.policy,
            allow_stale=reason in STALE_OK_REASONS,
        )
    except TokenWaitTimeoutError as error:
        return powerbi_failure(error)
    except PowerBIError as error:
        logger.warning("view-as token for report %s refused: %s", report.id, error)
        return powerbi_failure(error)
    return JSONResponse(issued.as_json(), headers={"Cache-Control": "no-store"})
