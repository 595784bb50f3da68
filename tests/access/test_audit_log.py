"""Reading the audit trail back: filters in the organization's time zone, pages, labels."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import embedportal
from embedportal import i18n
from embedportal.access.audit_log import (
    action_label,
    describe_detail,
    entries_csv,
    known_actions,
    organization_zone,
    prune_audit,
    search_audit,
    target_names,
)
from embedportal.db.models import AuditEntry, Group, Organization, Report


def _entry(db: Session, at: datetime, action: str = "user.created", actor: str = "") -> None:
    db.add(AuditEntry(at=at, action=action, actor_email=actor, detail={}))
    db.flush()


def test_filters_and_order(db: Session) -> None:
    _entry(db, datetime(2025, 3, 1, 2, 30, tzinfo=UTC), "login.succeeded", "ana@example.com")
    _entry(db, datetime(2025, 3, 2, 12, 0, tzinfo=UTC), "user.created", "root@example.com")
    _entry(db, datetime(2025, 3, 3, 12, 0, tzinfo=UTC), "login.succeeded", "bob@example.com")
    everything = search_audit(session=db)
    assert [e.at.day for e in everything.entries] == [3, 2, 1] and everything.total == 3
    logins = search_audit(session=db, action="login.succeeded")
    assert [e.actor_email for e in logins.entries] == ["bob@example.com", "ana@example.com"]
    assert search_audit(session=db, actor="ANA@").total == 1
    # 2025-03-01 02:30 UTC is still February 28th in São Paulo (UTC-3).
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    feb = search_audit(
        session=db, first_day=date(2025, 2, 28), last_day=date(2025, 2, 28), zone=sao_paulo
    )
    assert feb.total == 1
    march = search_audit(session=db, first_day=date(2025, 3, 2), last_day=date(2025, 3, 3))
    assert march.total == 2
    page = search_audit(session=db, offset=2, limit=2)
    assert page.total == 3 and len(page.entries) == 1
    assert known_actions(session=db) == ["login.succeeded", "user.created"]


def test_organization_zone_falls_back_to_utc(db: Session) -> None:
    organization = db.get(Organization, 1)
    if organization is None:
        organization = Organization(id=1)
        db.add(organization)
    organization.time_zone = "Europe/Lisbon"
    db.flush()
    assert organization_zone(session=db) == ZoneInfo("Europe/Lisbon")
    organization.time_zone = "Not/AZone"
    db.flush()
    assert organization_zone(session=db).key == "UTC"


def test_details_and_labels_read_like_sentences() -> None:
    lines = describe_detail(
        {
            "email": "ana@example.com",
            "rls_username": None,
            "rls_roles": [],
            "changes": {"role": ["viewer", "admin"], "rls_roles": [[], ["North", "South"]]},
            "may_start_capacity": True,
        }
    )
    assert lines == [
        ("email", "ana@example.com"),
        ("role", "viewer → admin"),
        ("rls_roles", "— → North, South"),
        ("may_start_capacity", "yes"),
    ]
    # The organization's and the capacities' form of a change, and other mappings: no dict text.
    assert describe_detail(
        {"refresh_every_minutes": {"old": None, "new": 5}, "grantee": {"user": "ana", "id": 7}}
    ) == [("refresh_every_minutes", "— → 5"), ("grantee", "user: ana, id: 7")]
    assert action_label("user.blocked") == "User blocked"
    assert action_label("capacity.something_new") == "capacity.something_new"


def test_every_action_the_portal_records_has_words_in_both_languages() -> None:
    """The audit page shows labels, not codes, in English and pt-BR alike (issue #13)."""
    package = Path(embedportal.__file__).parent
    recorded = set()
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        recorded.update(re.findall(r'action="([a-z_]+\.[a-z_.]+|logout)"', text))
        recorded.update(re.findall(r'"(user\.(?:un)?blocked)"', text))
    assert {"login.succeeded", "token.issued", "capacity.configured"} <= recorded
    unlabelled = sorted(action for action in recorded if action_label(action) == action)
    assert unlabelled == []
    english = {action: action_label(action) for action in recorded}
    token = i18n.activate("pt_BR")
    try:
        untranslated = sorted(a for a in recorded if action_label(a) == english[a])
    finally:
        i18n.deactivate(token)
    assert untranslated == []


def test_targets_are_named_by_what_they_are_now_and_deleted_ones_are_not(db: Session) -> None:
    group = Group(name="Finance")
    db.add_all(
        [
            group,
            Report(id="r-1", workspace_id="w", dataset_id="d", name="Sales", embed_url="https://x"),
        ]
    )
    db.flush()
    entries = [
        AuditEntry(action="group.created", target_type="group", target_id=str(group.id)),
        AuditEntry(action="report.granted", target_type="report", target_id="r-1"),
        AuditEntry(action="report.granted", target_type="report", target_id="gone"),
        AuditEntry(action="group.deleted", target_type="group", target_id="not-a-number"),
        AuditEntry(action="organization.changed", target_type="organization", target_id="1"),
    ]
    names = target_names(session=db, entries=entries)
    assert names == {("group", str(group.id)): "Finance", ("report", "r-1"): "Sales"}


def test_the_csv_has_words_names_local_times_and_no_formula(db: Session) -> None:
    entry = AuditEntry(
        at=datetime(2025, 7, 1, 12, 0, tzinfo=UTC),
        actor_email="=cmd|' /C calc'!A0@example.com",
        action="report.granted",
        target_type="report",
        target_id="r-1",
        detail={"rls_roles": ["North"]},
    )
    text = entries_csv(
        entries=[entry], names={("report", "r-1"): "Sales"}, zone=ZoneInfo("America/Sao_Paulo")
    )
    header, row = list(csv.reader(io.StringIO(text)))
    assert header[:4] == ["time", "time_zone", "actor_email", "action"]
    assert row[0] == "2025-07-01T09:00:00-03:00" and row[1] == "America/Sao_Paulo"
    assert row[2].startswith("'=")  # a spreadsheet shows it as text, never runs it
    assert row[3:8] == ["report.granted", "Report granted", "report", "r-1", "Sales"]
    assert row[8] == "rls_roles: North"


def test_retention_deletes_only_entries_past_their_days(db: Session) -> None:
    session_factory = sessionmaker(bind=db.get_bind())
    now = datetime(2026, 6, 1, tzinfo=UTC)
    _entry(db, now - timedelta(days=31), "user.created")
    _entry(db, now - timedelta(days=29), "user.updated")
    db.commit()
    assert prune_audit(session_factory=session_factory, keep_days=0, now=now) == 0
    assert prune_audit(session_factory=session_factory, keep_days=30, now=now) == 1
    assert prune_audit(session_factory=session_factory, keep_days=30, now=now) == 0  # idempotent
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(AuditEntry)) == 1
