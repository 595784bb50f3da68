"""Admin → Settings: the organization, its Power BI connection, and the token policy."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from embedportal.access.microsoft_accounts import sign_in_registration
from embedportal.access.organization import (
    candidate_connection,
    effective_connection,
    get_organization,
    update_organization,
    validate_organization_form,
)
from embedportal.access.two_step import required_for_admins
from embedportal.i18n import _
from embedportal.powerbi import PowerBIClient, PowerBIError
from embedportal.settings import Settings
from embedportal.tokens.policy import keeper_policy
from embedportal.tokens.service import policy_of
from embedportal.web.deps import (
    AdminUser,
    AppSettings,
    CsrfProtected,
    DbSession,
    IsHtmx,
    PushHubDep,
)
from embedportal.web.forms import SettingsForm
from embedportal.web.push import PushEvent
from embedportal.web.routes.microsoft_signin import redirect_uri
from embedportal.web.templating import flash_redirect, render

logger = logging.getLogger("embedportal.web")
router = APIRouter(prefix="/admin/settings", tags=["admin"])

PostedSettings = Annotated[SettingsForm, Form()]


def _context(
    request: Request,
    db: Session,
    settings: Settings,
    *,
    form: SettingsForm,
    errors: dict[str, str] | None = None,
    test: dict[str, object] | None = None,
) -> dict[str, object]:
    organization = get_organization(session=db)
    return {
        "values": form.without_secret(),
        # The services give English source strings; they are translated for the reader here.
        "errors": {field: _(message) for field, message in (errors or {}).items()},
        "connection": effective_connection(session=db, settings=settings),
        "has_stored_secret": bool(organization.powerbi_client_secret_encrypted),
        "has_stored_microsoft_secret": bool(organization.microsoft_client_secret_encrypted),
        "sign_in_registration": sign_in_registration(session=db, settings=settings),
        "redirect_uri": redirect_uri(request, settings),
        "test": test,
    }


@router.get("", response_class=HTMLResponse)
def settings_page(
    request: Request, _admin: AdminUser, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    organization = get_organization(session=db)
    form = SettingsForm.of(
        organization, two_step_required=required_for_admins(organization, settings)
    )
    return render(request, "admin/settings.html", _context(request, db, settings, form=form))


@router.post("", dependencies=[CsrfProtected])
def save_settings(
    request: Request,
    admin: AdminUser,
    db: DbSession,
    settings: AppSettings,
    hub: PushHubDep,
    form: PostedSettings,
) -> Response:
    organization = get_organization(session=db)
    changes, errors = validate_organization_form(
        form.text_fields(),
        clear_client_secret=form.clear_client_secret,
        interaction_min_age_minutes=organization.interaction_min_age_minutes,
        nobody_may_start_capacity=form.nobody_may_start_capacity,
        clear_microsoft_client_secret=form.clear_microsoft_client_secret,
        require_two_step_for_admins=form.require_two_step_for_admins,
    )
    if changes is None:
        context = _context(request, db, settings, form=form, errors=errors)
        return render(request, "admin/settings.html", context, status_code=400)
    changed = update_organization(session=db, settings=settings, changes=changes, actor=admin)
    db.commit()
    if not changed:
        return flash_redirect(request, "/admin/settings", _("Nothing changed."), category="info")
    # Open viewers follow the new refresh policy at once, without a reload.
    policy = policy_of(organization)
    data = {"policy": keeper_policy(policy, lifetime_seconds=policy.lifetime_minutes * 60)}
    hub.publish(PushEvent(kind="policy", data=data))
    if "default_embedding" in changed:
        # Open viewers of reports that follow the default ask again, and switch over.
        hub.publish(PushEvent(kind="access"))
    return flash_redirect(request, "/admin/settings", _("Settings saved."))


@router.post("/test-connection", dependencies=[CsrfProtected])
async def test_connection(
    request: Request,
    _admin: AdminUser,
    db: DbSession,
    settings: AppSettings,
    htmx: IsHtmx,
    form: PostedSettings,
) -> Response:
    """List the workspaces the entered (or stored) credentials reach, before saving them."""
    test: dict[str, object]
    try:
        connection = candidate_connection(session=db, settings=settings, form=form.text_fields())
    except ValueError as error:
        test = {"ok": False, "message": _(str(error))}
    else:
        try:
            async with PowerBIClient(connection, max_retries=1) as client:
                workspaces = await client.list_workspaces()
        except PowerBIError as error:
            logger.info("connection test failed: %s", error)
            test = {"ok": False, "message": error.message}
        else:
            test = {"ok": True, "workspaces": workspaces}
    if htmx:
        return render(request, "admin/_connection_test.html", {"test": test})
    context = _context(request, db, settings, form=form, test=test)
    return render(request, "admin/settings.html", context)
