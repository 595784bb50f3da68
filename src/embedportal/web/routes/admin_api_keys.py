"""Admin → API keys: the keys applications call the integration API with (/api/v1), and the
applications allowed to show single sign-on sessions in a frame (access/sso_origins.py).

A new key's secret is shown once, on the page that answers the creation, and never again (only
its hash is kept). Revoking asks first, then stops the key at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from embedportal.access import api_keys, sso_origins
from embedportal.access.audit_log import organization_zone
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import ApiKey
from embedportal.i18n import N_, _
from embedportal.web.deps import AdminUser, AppSettings, CsrfProtected, DbSession, stored_or_404
from embedportal.web.forms import ApiKeyForm, SsoOriginsForm
from embedportal.web.templating import flash_redirect, render

router = APIRouter(prefix="/admin/api-keys", tags=["admin"], include_in_schema=False)

KeyId = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[0-9a-f]+$")]


def edited_key(key_id: KeyId, _admin: AdminUser, db: DbSession) -> ApiKey:
    """The key the path names, for an administrator (checked first); else 404."""
    return stored_or_404(db.get(ApiKey, key_id), N_("There is no such API key."))


AdminKey = Annotated[ApiKey, Depends(edited_key)]


def _list_context(
    db: DbSession,
    settings: AppSettings,
    *,
    values: ApiKeyForm | None = None,
    errors: dict[str, str] | None = None,
    origins: SsoOriginsForm | None = None,
    origin_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    saved = sso_origins.sso_origins(session=db).replace(" ", "\n")
    return {
        "keys": api_keys.list_api_keys(session=db),
        "scopes": [(scope, _(label)) for scope, label in api_keys.SCOPES.items()],
        "values": values if values is not None else ApiKeyForm(),
        "errors": errors or {},
        "origins": origins if origins is not None else SsoOriginsForm(origins=saved),
        "origin_errors": origin_errors or {},
        "operator_origins": (settings.sso_frame_ancestors or "").split(),
        "now": utcnow(),
        "zone": organization_zone(session=db),
        "state_of": api_keys.state_of,
    }


@router.get("")
def api_keys_page(
    request: Request, db: DbSession, settings: AppSettings, _admin: AdminUser
) -> Response:
    return render(request, "admin/api_keys.html", _list_context(db, settings))


@router.post("", dependencies=[CsrfProtected])
def create_api_key(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    form: Annotated[ApiKeyForm, Form()],
) -> Response:
    """Make a key and show its secret, this once (the answer is not kept by the browser)."""
    try:
        created = api_keys.create_api_key(
            session=db,
            name=form.name,
            scopes=form.scopes,
            expires_on=form.expires_on,
            zone=organization_zone(session=db),
            actor=admin,
        )
    except UserInputError as error:
        return render(
            request,
            "admin/api_keys.html",
            _list_context(db, settings, values=form, errors=error.errors),
            status_code=400,
        )
    db.commit()
    response = render(
        request,
        "admin/api_keys_created.html",
        {"key": created.key, "secret": created.secret, "zone": organization_zone(session=db)},
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/{key_id}/revoke")
def confirm_revoke_page(request: Request, key: AdminKey) -> Response:
    return render(request, "admin/api_keys_revoke.html", {"key": key})


@router.post("/{key_id}/revoke", dependencies=[CsrfProtected])
def revoke_api_key(request: Request, db: DbSession, admin: AdminUser, key: AdminKey) -> Response:
    revoked = api_keys.revoke_api_key(session=db, key=key, actor=admin)
    db.commit()
    if revoked:
        message = _("The API key “%(name)s” is revoked: it no longer works.", name=key.name)
    else:
        message = _("The API key “%(name)s” was already revoked.", name=key.name)
    return flash_redirect(request, "/admin/api-keys", message)


@router.post("/sso-origins", dependencies=[CsrfProtected])
def save_sso_origins(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    form: Annotated[SsoOriginsForm, Form()],
) -> Response:
    """The applications that may show single sign-on sessions in a frame; at once."""
    try:
        changed = sso_origins.set_sso_origins(session=db, text=form.origins, actor=admin)
    except UserInputError as error:
        context = _list_context(db, settings, origins=form, origin_errors=error.errors)
        return render(request, "admin/api_keys.html", context, status_code=400)
    db.commit()
    if not changed:
        return flash_redirect(request, "/admin/api-keys", _("Nothing changed."), category="info")
    return flash_redirect(
        request, "/admin/api-keys", _("The applications allowed to frame the portal are saved.")
    )
