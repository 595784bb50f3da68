"""The audit trail: who did what. Callers pass ids and names, never tokens or secrets."""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from embedportal.db.models import AuditEntry, User

# The API key whose call is being served (web/api_auth.py): its entries name it.
_api_key_name: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "embedportal_audit_api_key", default=None
)


@contextmanager
def through_api_key(name: str) -> Iterator[None]:
    """Entries recorded inside say they were made through the API key called ``name``
    (``detail["api_key"]``; their actor is None)."""
    token = _api_key_name.set(name)
    try:
        yield
    finally:
        _api_key_name.reset(token)


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
        detail=_with_api_key(detail or {}),
    )
    session.add(entry)
    return entry


def _with_api_key(detail: dict[str, Any]) -> dict[str, Any]:
    name = _api_key_name.get()
    return detail if name is None else {"api_key": name, **detail}


def apply_changes(target: object, wanted: Mapping[str, object]) -> dict[str, list[object]]:
    """Set each attribute of ``target`` that differs from ``wanted``; returns what changed as
    ``{field: [before, after]}`` in plain values, the "changes" an audit detail holds."""
    return {
        field: [_plain(before), _plain(after)]
        for field, before, after in _set_differences(target, wanted)
    }


def apply_changes_old_new(
    target: object, wanted: Mapping[str, object]
) -> dict[str, dict[str, object]]:
    """As :func:`apply_changes`, in the ``{field: {"old": …, "new": …}}`` form the
    organization's and the capacities' audit entries have always used."""
    return {
        field: {"old": before, "new": after}
        for field, before, after in _set_differences(target, wanted)
    }


def _set_differences(
    target: object, wanted: Mapping[str, object]
) -> list[tuple[str, object, object]]:
    differences = []
    for field, value in wanted.items():
        before = getattr(target, field)
        if before != value:
            differences.append((field, before, value))
            setattr(target, field, value)
    return differences


def _plain(value: object) -> object:
    """A JSON-friendly form of a column value, for the audit detail."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return list(value)
    return value
