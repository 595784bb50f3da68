"""Reading the audit trail back: filters, pages, and human names for the actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embedportal.db.models import AuditEntry, Organization
from embedportal.i18n import _

UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    total: int


def organization_zone(*, session: Session) -> ZoneInfo:
    """The organization's time zone (for showing times), UTC when unset or unknown."""
    organization = session.get(Organization, 1)
    if organization is None or not organization.time_zone:
        return UTC
    try:
        return ZoneInfo(organization.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def day_filter(value: str, field: str, errors: dict[str, str], *, message: str) -> date | None:
    """A "from"/"to" day of an audit filter (YYYY-MM-DD), None when empty; a bad one files
    ``message`` under ``field``."""
    if not value.strip():
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        day = None
    # Far-off years would overflow when turned into instants in a time zone.
    if day is None or not 1900 <= day.year <= 9998:
        errors[field] = message
        return None
    return day


def search_audit(
    *,
    session: Session,
    action: str = "",
    actor: str = "",
    first_day: date | None = None,
    last_day: date | None = None,
    zone: ZoneInfo = UTC,
    offset: int = 0,
    limit: int = 50,
) -> AuditPage:
    """Entries newest first. `actor` matches part of the actor's e-mail; days are whole days
    (both included) in `zone`."""
    conditions = []
    if action:
        conditions.append(AuditEntry.action == action)
    if actor.strip():
        conditions.append(
            func.lower(AuditEntry.actor_email).contains(actor.strip().lower(), autoescape=True)
        )
    if first_day is not None:
        conditions.append(AuditEntry.at >= datetime.combine(first_day, time(), zone))
    if last_day is not None:
        conditions.append(
            AuditEntry.at < datetime.combine(last_day + timedelta(days=1), time(), zone)
        )
    query = (
        select(AuditEntry).where(*conditions).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    )
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    entries = list(session.scalars(query.offset(max(offset, 0)).limit(limit)))
    return AuditPage(entries=entries, total=total)


def known_actions(*, session: Session) -> list[str]:
    """Every action that occurs in the trail, for the filter's list."""
    return list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


def _shown(value: object) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def describe_detail(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """An entry's detail as (name, text) lines: changes as "before → after" (in either form the
    portal records them), other mappings as "name: value" pairs, empty values left out."""
    lines: list[tuple[str, str]] = []
    for key, value in detail.items():
        if key == "changes" and isinstance(value, dict):
            for field, change in value.items():
                if isinstance(change, list) and len(change) == 2:
                    lines.append((field, f"{_shown(change[0])} → {_shown(change[1])}"))
                else:
                    lines.append((field, _shown(change)))
        elif isinstance(value, dict) and set(value) == {"old", "new"}:
            # The organization's and the capacities' entries: {"old": …, "new": …} per field.
            lines.append((key, f"{_shown(value['old'])} → {_shown(value['new'])}"))
        elif isinstance(value, dict):
            shown = ", ".join(f"{name}: {_shown(item)}" for name, item in value.items())
            lines.append((key, shown or "—"))
        elif value is not None and value != "" and value != []:
            lines.append((key, _shown(value)))
    return lines


def action_label(action: str) -> str:
    """A person's words for an action; actions without one show as recorded."""
    labels = {
        "login.succeeded": _("Signed in"),
        "login.failed": _("Sign-in refused"),
        "login.locked": _("Sign-in locked for an address after wrong passwords"),
        "logout": _("Signed out"),
        "user.created": _("User created"),
        "user.updated": _("User changed"),
        "user.blocked": _("User blocked"),
        "user.unblocked": _("User unblocked"),
        "user.unlocked": _("Sign-in lock-out ended by an administrator"),
        "user.deleted": _("User deleted"),
        "user.password_set": _("Password set by an administrator"),
        "user.password_changed": _("Password changed"),
        "user.invitation_sent": _("Invitation to choose a password sent"),
        "user.invitation_accepted": _("Password chosen with an invitation link"),
        "user.reset_link_sent": _("Password reset link sent"),
        "user.password_reset": _("Password changed with a reset link"),
        "group.created": _("Group created"),
        "group.updated": _("Group changed"),
        "group.deleted": _("Group deleted"),
        "group.member_added": _("Member added to a group"),
        "group.member_removed": _("Member removed from a group"),
        "report.granted": _("Report granted"),
        "report.grant_changed": _("A grant's RLS roles changed"),
        "report.revoked": _("Report access removed"),
        "reports.synced": _("Reports read from Power BI"),
        "token.issued": _("First embed token of the day for a report"),
        "organization.changed": _("Organization settings changed"),
        "capacities.synced": _("Capacities read from Power BI"),
        "capacity.configured": _("Capacity's Azure coordinates set"),
        "capacity.settings_changed": _("Capacity settings changed"),
        "capacity.schedule_changed": _("Capacity schedule changed"),
    }
    return labels.get(action, action)
