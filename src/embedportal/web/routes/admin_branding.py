"""Admin → Branding: the organization's colour, logo, favicon and sign-in background.

A plain (threaded) route: the uploads are read from their spooled files, as the database is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from embedportal.access.branding import (
    IMAGE_KINDS,
    MAX_IMAGE_BYTES,
    BrandingChanges,
    BrandingError,
    brand_of,
    parse_color,
    save_branding,
    sniff_image,
)
from embedportal.access.organization import get_organization
from embedportal.i18n import _
from embedportal.web.deps import AdminUser, CsrfProtected, DbSession
from embedportal.web.forms import BrandingForm
from embedportal.web.templating import flash_redirect, render

router = APIRouter(prefix="/admin/branding", tags=["admin"])

PostedBranding = Annotated[BrandingForm, Form()]


def _page(
    request: Request,
    db: Session,
    *,
    form: BrandingForm,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    context = {
        "values": form,
        "errors": errors or {},
        "current": brand_of(session=db),
        "limits": {kind: MAX_IMAGE_BYTES[kind] // 1024 for kind in IMAGE_KINDS},
    }
    return render(request, "admin/branding.html", context, status_code=400 if errors else 200)


@router.get("", response_class=HTMLResponse)
def branding_page(request: Request, _admin: AdminUser, db: DbSession) -> HTMLResponse:
    return _page(request, db, form=BrandingForm.of(get_organization(session=db)))


def _checked_images(form: BrandingForm, errors: dict[str, str]) -> dict[str, tuple[str, bytes]]:
    images: dict[str, tuple[str, bytes]] = {}
    for kind in IMAGE_KINDS:
        upload = form.upload(kind)
        if upload is None:
            continue
        # One byte past the limit is enough to refuse it; the rest is never held in memory.
        data = upload.file.read(MAX_IMAGE_BYTES[kind] + 1)
        try:
            images[kind] = (sniff_image(kind, data), data)
        except BrandingError as error:
            errors[kind] = _(error.message, **error.fields)
    return images


@router.post("", dependencies=[CsrfProtected])
def save(request: Request, admin: AdminUser, db: DbSession, form: PostedBranding) -> Response:
    errors: dict[str, str] = {}
    try:
        color = parse_color(form.brand_color)
    except BrandingError as error:
        errors["brand_color"] = _(error.message, **error.fields)
        color = ""
    images = _checked_images(form, errors)
    if errors:
        return _page(request, db, form=form, errors=errors)
    changes = BrandingChanges(color=color, images=images, removed=form.removed())
    changed = save_branding(session=db, changes=changes, actor=admin)
    db.commit()
    if not changed:
        return flash_redirect(request, "/admin/branding", _("Nothing changed."), category="info")
    return flash_redirect(request, "/admin/branding", _("Branding saved."))
