"""Admin → Outbox: the latest mails and what became of them (sent, retrying, failed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from embedportal.access.audit_log import organization_zone
from embedportal.mail.outbox import recent_mails
from embedportal.web.deps import AdminUser, AppSettings, DbSession
from embedportal.web.templating import render

router = APIRouter(prefix="/admin/outbox", tags=["admin"], include_in_schema=False)


@router.get("")
def outbox_page(
    request: Request, db: DbSession, settings: AppSettings, _admin: AdminUser
) -> Response:
    return render(
        request,
        "admin/outbox.html",
        {
            "outbox": recent_mails(session=db),
            "zone": organization_zone(session=db),
            "smtp_configured": bool(settings.mail_smtp_host),
        },
    )


@router.get("/rows")
def outbox_rows(request: Request, db: DbSession, _admin: AdminUser) -> Response:
    """The table alone: the page refreshes it while mails wait."""
    return render(
        request,
        "admin/_outbox_table.html",
        {"outbox": recent_mails(session=db), "zone": organization_zone(session=db)},
    )
