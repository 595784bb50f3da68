"""Reading the audit trail back: filters, pages, human names for the actions and their targets,
the CSV export, and the retention that prunes entries past their time."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC as UTC_OFFSET
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.db.models import AuditEntry, Capacity, Group, Organization, Report, User
from embedportal.i18n import _

# What a spreadsheet would read as the start of a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

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


def _conditions(
    *, action: str, actor: str, first_day: date | None, last_day: date | None, zone: ZoneInfo
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
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
    return conditions


def search_audit(
    *,
    session: Session,
    action: str = "",
    actor: str = "",
    first_day: date | None = None,
    last_day: date | None = None,
    zone: ZoneInfo = UTC,
    offset: int = 0,
    limit: int | None = 50,
) -> AuditPage:
    """Entries newest first. `actor` matches part of the actor's e-mail; days are whole days
    (both included) in `zone`; ``limit=None``: every match."""
    conditions = _conditions(
        action=action, actor=actor, first_day=first_day, last_day=last_day, zone=zone
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
        "login.microsoft": _("Signed in with Microsoft"),
        "login.microsoft_refused": _("Sign-in with Microsoft refused"),
        "microsoft.linked": _("Microsoft account linked"),
        "two_step.enabled": _("Two-step sign-in turned on"),
        "two_step.disabled": _("Two-step sign-in turned off"),
        "two_step.reset": _("Two-step sign-in reset"),
        "two_step.failed": _("Wrong two-step sign-in code"),
        "two_step.recovery_code_used": _("Recovery code used to sign in"),
        "two_step.recovery_codes_renewed": _("New recovery codes made"),
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
        "report.viewed_as": _("Report opened by an administrator as another user"),
        "report.embedding_changed": _("How a report is embedded changed"),
        "reports.synced": _("Reports read from Power BI"),
        "token.issued": _("First embed token of the day for a report"),
        "organization.changed": _("Organization settings changed"),
        "organization.branding_changed": _("Branding changed"),
        "organization.sso_origins_changed": _(
            "Applications allowed to frame single sign-on sessions changed"
        ),
        "capacities.synced": _("Capacities read from Power BI"),
        "capacity.configured": _("Capacity's Azure coordinates set"),
        "capacity.settings_changed": _("Capacity settings changed"),
        "capacity.schedule_changed": _("Capacity schedule changed"),
        "audit.exported": _("Audit log downloaded as CSV"),
        "api_key.created": _("API key created"),
        "api_key.revoked": _("API key revoked"),
        "api_key.read": _("Read through the integration API (first time today for this call)"),
        "sso.link_issued": _("Single sign-on link issued"),
        "sso.signed_in": _("Signed in through a single sign-on link"),
    }
    return labels.get(action, action)


# --- what an entry is about, by name --------------------------------------------------------------

_TARGET_MODELS: dict[str, tuple[Any, Any]] = {
    "user": (User, User.email),
    "group": (Group, Group.name),
    "report": (Report, Report.name),
    "capacity": (Capacity, Capacity.display_name),
}


def target_names(*, session: Session, entries: Iterable[AuditEntry]) -> dict[tuple[str, str], str]:
    """The current name of each entry's target, one query per kind of target on the page;
    a target since deleted has no name here (the page then shows its kind and id)."""
    wanted: dict[str, set[str]] = {}
    for entry in entries:
        if entry.target_type in _TARGET_MODELS and entry.target_id:
            wanted.setdefault(entry.target_type, set()).add(entry.target_id)
    names: dict[tuple[str, str], str] = {}
    for kind, ids in wanted.items():
        model, name_column = _TARGET_MODELS[kind]
        id_column = model.id
        keys: Sequence[object] = sorted(ids)
        if kind in {"user", "group"}:
            # Integer keys: an id that is not a number names nothing (and must not reach SQL).
            keys = sorted(int(value) for value in ids if value.isascii() and value.isdigit())
        if not keys:
            continue
        for target_id, name in session.execute(
            select(id_column, name_column).where(id_column.in_(keys))
        ):
            if name:
                names[(kind, str(target_id))] = str(name)
    return names


def target_kind_label(kind: str) -> str:
    labels = {
        "user": _("User"),
        "group": _("Group"),
        "report": _("Report"),
        "capacity": _("Capacity"),
        "capacities": _("Capacities"),
        "workspace": _("Workspace"),
        "organization": _("Organization"),
        "api_key": _("API key"),
    }
    return labels.get(kind, kind)


def target_link(kind: str, target_id: str) -> str | None:
    """Where the admin pages show the target, when they do."""
    if not target_id:
        return None
    if kind == "user" and target_id.isdigit():
        return f"/admin/users/{target_id}"
    if kind == "group" and target_id.isdigit():
        return f"/admin/groups/{target_id}"
    if kind == "report":
        return f"/admin/reports/{target_id}"
    if kind == "capacity":
        return f"/admin/capacities/{target_id}"
    return None


# --- the export -----------------------------------------------------------------------------------

CSV_HEADER = (
    "time",
    "time_zone",
    "actor_email",
    "action",
    "action_label",
    "target_type",
    "target_id",
    "target_name",
    "details",
)


def safe_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a leading
    apostrophe, which spreadsheets hide and do not evaluate."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _csv_rows(
    entries: Iterable[AuditEntry], names: dict[tuple[str, str], str], zone: ZoneInfo
) -> Iterator[list[str]]:
    for entry in entries:
        details = "; ".join(f"{name}: {text}" for name, text in describe_detail(entry.detail))
        row = (
            _aware(entry.at).astimezone(zone).isoformat(timespec="seconds"),
            zone.key,
            entry.actor_email,
            entry.action,
            action_label(entry.action),
            entry.target_type,
            entry.target_id,
            names.get((entry.target_type, entry.target_id), ""),
            details,
        )
        yield [safe_cell(cell) for cell in row]


def entries_csv(
    *, entries: Sequence[AuditEntry], names: dict[tuple[str, str], str], zone: ZoneInfo
) -> str:
    """The entries as CSV with a header row: times in ``zone`` (ISO 8601 with the offset), the
    action as recorded and in words, details as the page shows them."""
    return _csv_text([list(CSV_HEADER), *_csv_rows(entries, names, zone)])


# Entries read per query while streaming an export: memory stays flat whatever the log's size.
EXPORT_BATCH = 500


def stream_audit_csv(
    *,
    session_factory: sessionmaker[Session],
    action: str = "",
    actor: str = "",
    first_day: date | None = None,
    last_day: date | None = None,
    zone: ZoneInfo = UTC,
    batch: int = EXPORT_BATCH,
) -> Iterator[str]:
    """The CSV of every entry the filters match, newest first, as chunks of text: a header,
    then one chunk per batch of entries, each read in a short transaction of its own (keyset
    paging on (time, id), so entries written meanwhile neither repeat nor shift the pages)."""
    conditions = _conditions(
        action=action, actor=actor, first_day=first_day, last_day=last_day, zone=zone
    )
    yield _csv_text([list(CSV_HEADER)])
    after: tuple[datetime, int] | None = None
    while True:
        query = select(AuditEntry).where(*conditions)
        if after is not None:
            at, entry_id = after
            query = query.where(
                or_(AuditEntry.at < at, and_(AuditEntry.at == at, AuditEntry.id < entry_id))
            )
        query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(batch)
        with session_factory() as session:
            entries = list(session.scalars(query))
            if not entries:
                return
            names = target_names(session=session, entries=entries)
            yield _csv_text(_csv_rows(entries, names, zone))
        last = entries[-1]
        after = (last.at, last.id)
        if len(entries) < batch:
            return


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; the portal stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC_OFFSET)


# --- retention ------------------------------------------------------------------------------------


def prune_audit(*, session_factory: sessionmaker[Session], keep_days: int, now: datetime) -> int:
    """Delete entries older than ``keep_days`` days (0 keeps everything); how many went. Safe to
    run on every instance of a fleet at once: the same rows are deleted, once."""
    if keep_days <= 0:
        return 0
    cutoff = now - timedelta(days=keep_days)
    with session_factory.begin() as session:
        result = session.execute(delete(AuditEntry).where(AuditEntry.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
