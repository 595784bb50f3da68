"""The audit log: who did what and when, newest first, with filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from embedportal import i18n
from embedportal.access.audit import record
from embedportal.access.audit_log import (
    action_label,
    day_filter,
    describe_detail,
    known_actions,
    organization_zone,
    search_audit,
    stream_audit_csv,
    target_kind_label,
    target_link,
    target_names,
)
from embedportal.i18n import _
from embedportal.web.deps import AdminUser, DbSession
from embedportal.web.paging import Page
from embedportal.web.templating import render

router = APIRouter(prefix="/admin/audit", tags=["admin"], include_in_schema=False)


def _day(value: str, field: str, errors: dict[str, str]) -> date | None:
    return day_filter(value, field, errors, message=_("Give a date like 2025-01-31."))


class AuditFilters(BaseModel):
    """What the audit page is asked for: the filters and the page (the query string)."""

    action: str = ""
    actor: str = ""
    since: str = ""
    until: str = ""
    page: int = 1


AuditQuery = Annotated[AuditFilters, Query()]


def _days(asked: AuditFilters) -> tuple[date | None, date | None, dict[str, str]]:
    errors: dict[str, str] = {}
    first_day = _day(asked.since, "since", errors)
    last_day = _day(asked.until, "until", errors)
    if first_day and last_day and first_day > last_day:
        errors["until"] = _("The last day comes before the first day.")
    return first_day, last_day, errors


def _context(db: DbSession, asked: AuditFilters) -> tuple[dict[str, Any], int]:
    first_day, last_day, errors = _days(asked)
    page = Page.asked(asked.page)
    zone = organization_zone(session=db)
    result = search_audit(
        session=db,
        action=asked.action,
        actor=asked.actor,
        first_day=None if errors else first_day,
        last_day=None if errors else last_day,
        zone=zone,
        offset=page.offset,
        limit=page.size,
    )
    filters = asked.model_dump(exclude={"page"})
    query = urlencode({key: value for key, value in filters.items() if value})
    context = {
        "entries": result.entries,
        "target_names": target_names(session=db, entries=result.entries),
        "target_kind_label": target_kind_label,
        "target_link": target_link,
        **page.pager(result.total),
        "filters": filters,
        "filter_query": query,
        "actions": known_actions(session=db),
        "action_label": action_label,
        "describe_detail": describe_detail,
        "zone": zone,
        "errors": errors,
    }
    return context, 400 if errors else 200


@router.get("")
def audit_page(request: Request, db: DbSession, _admin: AdminUser, asked: AuditQuery) -> Response:
    context, status = _context(db, asked)
    return render(request, "admin/audit.html", context, status_code=status)


@router.get("/rows")
def audit_rows(request: Request, db: DbSession, _admin: AdminUser, asked: AuditQuery) -> Response:
    """The table alone: the htmx target of the filters."""
    context, status = _context(db, asked)
    return render(request, "admin/_audit_table.html", context, status_code=status)


@router.get("/export.csv")
def audit_csv(request: Request, db: DbSession, admin: AdminUser, asked: AuditQuery) -> Response:
    """Every entry the filters match (all pages), as CSV streamed in batches, so a log of years
    never sits in memory; the export itself is audited."""
    first_day, last_day, errors = _days(asked)
    if errors:
        context, status = _context(db, asked)
        return render(request, "admin/audit.html", context, status_code=status)
    zone = organization_zone(session=db)
    matching = search_audit(
        session=db,
        action=asked.action,
        actor=asked.actor,
        first_day=first_day,
        last_day=last_day,
        zone=zone,
        limit=0,
    )
    filters = {key: value for key, value in asked.model_dump(exclude={"page"}).items() if value}
    record(
        session=db,
        actor=admin,
        action="audit.exported",
        detail={"entries": matching.total, **filters},
    )
    db.commit()
    chunks = stream_audit_csv(
        session_factory=request.app.state.session_factory,
        action=asked.action,
        actor=asked.actor,
        first_day=first_day,
        last_day=last_day,
        zone=zone,
    )
    language = i18n.current_language()
    return StreamingResponse(
        _with_bom(_speaking(language, chunks)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )


def _speaking(language: str, chunks: Iterator[str]) -> Iterator[str]:
    """The chunks are made while the answer streams, in worker threads: each in the reader's
    language."""
    while True:
        activated = i18n.activate(language)
        try:
            chunk = next(chunks, None)
        finally:
            i18n.deactivate(activated)
        if chunk is None:
            return
        yield chunk


def _with_bom(chunks: Iterator[str]) -> Iterator[bytes]:
    # The byte-order mark makes spreadsheet programs read the file as UTF-8 (accents in names).
    yield "\ufeff".encode()
    for chunk in chunks:
        yield chunk.encode("utf-8")
