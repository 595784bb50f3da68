"""The audit trail: who did what. Callers pass ids and names, never tokens or secrets."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from embedportal.db.models import AuditEntry, User


def record(
    *,
    session: Session,
    actor: User | None,
    action: str,
    target_type: str = "",
    target_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor_user_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail or {},
    )
    session.add(entry)
    return entry
