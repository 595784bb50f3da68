"""Admin → Settings: the organization, its Power BI connection, and the token policy."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from embedportal.access.organization import (
    candidate_connection,
    effective_connection,
    get_organization,
    update_organization,
    validate_organization_form,
)
from embedportal.db.models import Organization
from embedportal.i18n import _
from embedportal.powerbi import PowerBIClient, PowerBIError
from embedportal.settings import Settings
from embedportal.tokens.policy import keeper_policy
from embedportal.tokens.service import policy_of
from embedportal.web.deps import AdminUser, CsrfProtected, DbSession
from embedportal.web.templating import flash_redirect, render

logger = logging.getLogger("embedportal.web")
router = APIRouter(prefix="/admin/settings", tags=["admin"])

FORM_FIELDS = (
    "name",
    "time_zone",
    "powerbi_tenant_id",
    "powerbi_client_id",
    "powerbi_client_secret",
    "clear_client_secret",
    "powerbi_workspace_id",
    "refresh_every_minutes",
    "token_lifetime_minutes",
    "refresh_margin_minutes",
)


def _form_of(organization: Organization) -> dict[str, str]:
    return {
        "name": organization.name,
        "time_zone": organization.time_zone,
        "powerbi_tenant_id": organization.powerbi_tenant_id,
        "powerbi_client_id": organization.powerbi_client_id,
        "powerbi_workspace_id": organization.powerbi_workspace_id,
        "refresh_every_minutes": str(organization.refresh_every_minutes or ""),
        "token_lifetime_minutes": str(organization.token_lifetime_minutes),
        "refresh_margin_minutes": str(organization.refresh_margin_minutes),
    }


def _context(
    request: Request,
    db: Session,
    *,
    form: dict[str, str],
    errors: dict[str, str] | None = None,
    test: dict[str, object] | None = None,
) -> dict[str, object]:
    settings: Settings = request.app.state.settings
    organization = get_organization(session=db)
    form = {key: value for key, value in form.items() if key != "powerbi_client_secret"}
    return {
        "form": form,
        "errors": {field: _(message) for field, message in (errors or {}).items()},
        "connection": effective_connection(session=db, settings=settings),
        "has_stored_secret": bool(organization.powerbi_client_secret_encrypted),
        "test": test,
    }


async def _form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: str(form.get(name, "")) for name in FORM_FIELDS}


@router.get("", response_class=HTMLResponse)
def settings_page(request: Request, _admin: AdminUser, db: DbSession) -> HTMLResponse:
    form = _form_of(get_organization(session=db))
    return render(request, "admin/settings.html", _context(request, db, form=form))


@router.post("", dependencies=[CsrfProtected])
async def save_settings(request: Request, admin: AdminUser, db: DbSession) -> Response:
    form = await _form_data(request)
    organization = get_organization(session=db)
    changes, errors = validate_organization_form(
        form, interaction_min_age_minutes=organization.interaction_min_age_minutes
    )
    if changes is None:
        context = _context(request, db, form=form, errors=errors)
        return render(request, "admin/settings.html", context, status_code=400)
    changed = update_organization(
        session=db, settings=request.app.state.settings, changes=changes, actor=admin
    )
    db.commit()
    if not changed:
        return flash_redirect(request, "/admin/settings", _("Nothing changed."), category="info")
    _policy_changed(request, organization)
    return flash_redirect(request, "/admin/settings", _("Settings saved."))


def _policy_changed(request: Request, organization: Organization) -> None:
    """Open viewers follow the new refresh policy at once, without a reload."""
    hub = getattr(request.app.state, "push_hub", None)
    if hub is None:
        return
    from embedportal.web.push import PushEvent

    policy = policy_of(organization)
    data = {"policy": keeper_policy(policy, lifetime_seconds=policy.lifetime_minutes * 60)}
    hub.publish(PushEvent(kind="policy", data=data))


@router.post("/test-connection", dependencies=[CsrfProtected])
async def test_connection(request: Request, _admin: AdminUser, db: DbSession) -> Response:
    """List the workspaces the entered (or stored) credentials reach, before saving them."""
    form = await _form_data(request)
    settings: Settings = request.app.state.settings
    test: dict[str, object]
    try:
        connection = candidate_connection(session=db, settings=settings, form=form)
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
    if request.headers.get("hx-request") == "true":
        return render(request, "admin/_connection_test.html", {"test": test, "form": form})
    return render(request, "admin/settings.html", _context(request, db, form=form, test=test))
