"""`/api/v1/audit`: the audit log, newest first, a page at a time (docs/integration-api.md),
read through the service Admin → Audit log uses (access/audit_log.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from embedportal.access.api_keys import ApiCaller
from embedportal.access.audit_log import organization_zone, search_audit
from embedportal.db.models import AuditEntry
from embedportal.i18n import _
from embedportal.web.api_auth import require_scope
from embedportal.web.api_v1 import COMMON_ERRORS, ApiError, PagingQuery
from embedportal.web.deps import DbSession

router = APIRouter(prefix="/api/v1/audit", tags=["integration: audit"], responses=COMMON_ERRORS)

AuditRead = Annotated[ApiCaller, require_scope("audit:read")]
# Days beyond these would overflow when turned into instants in a time zone.
FIRST_YEAR, LAST_YEAR = 1900, 9998


class AuditEntryOut(BaseModel):
    id: int = Field(examples=[1234])
    at: datetime
    action: str = Field(examples=["user.created"])
    actor_user_id: int | None = Field(examples=[None])
    actor_email: str = Field(examples=[""])
    api_key: str | None = Field(description="The API key it was made through, by name.")
    target_type: str = Field(examples=["user"])
    target_id: str = Field(examples=["42"])
    detail: dict[str, Any] = Field(examples=[{"email": "ana@example.com", "role": "viewer"}])

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        detail = dict(entry.detail or {})
        key = detail.get("api_key")
        return cls(
            id=entry.id,
            at=entry.at,
            action=entry.action,
            actor_user_id=entry.actor_user_id,
            actor_email=entry.actor_email,
            api_key=key if isinstance(key, str) else None,
            target_type=entry.target_type,
            target_id=entry.target_id,
            detail=detail,
        )


class AuditList(BaseModel):
    items: list[AuditEntryOut]
    total: int
    page: int
    per_page: int


def _day(value: date | None, name: str) -> date | None:
    if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ApiError(
            400,
            "InvalidInput",
            _(
                "“%(name)s” must be a day between the years %(first)s and %(last)s.",
                name=name,
                first=FIRST_YEAR,
                last=LAST_YEAR,
            ),
        )
    return value


@router.get("", response_model=AuditList)
def list_audit(
    db: DbSession,
    _caller: AuditRead,
    paging: PagingQuery,
    action: Annotated[str, Query(max_length=80, examples=["user.blocked"])] = "",
    since: Annotated[
        date | None, Query(description="From this day (YYYY-MM-DD), in the portal's time zone.")
    ] = None,
    until: Annotated[date | None, Query(description="Up to this day, included.")] = None,
) -> AuditList:
    """Entries newest first, filtered by action and by days (both included)."""
    first, last = _day(since, "since"), _day(until, "until")
    if first is not None and last is not None and first > last:
        raise ApiError(400, "InvalidInput", _("“since” must not be after “until”."))
    result = search_audit(
        session=db,
        action=action,
        first_day=first,
        last_day=last,
        zone=organization_zone(session=db),
        offset=paging.offset,
        limit=paging.per_page,
    )
    return AuditList(
        items=[AuditEntryOut.of(entry) for entry in result.entries],
        total=result.total,
        page=paging.page,
        per_page=paging.per_page,
    )
