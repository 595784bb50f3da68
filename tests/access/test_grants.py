"""Who sees which report, and the RLS identity a token carries for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from embedportal.access.grants import (
    GrantInputError,
    RlsIdentityMissingError,
    access_of,
    can_view,
    effective_identity,
    grant_report,
    parse_roles,
    reports_of_group,
    revoke_grant,
    rls_identity_of,
    visible_reports,
)
from embedportal.db.models import AuditEntry, Group, GroupMembership, Report, User
from embedportal.db.session import session_scope
from tests.support.portal import MakeUser


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    with session_scope(app.state.session_factory) as session:
        yield session


def add_report(db: Session, report_id: str, *, rls: bool = False, available: bool = True) -> Report:
    report = Report(
        id=report_id,
        workspace_id="w",
        dataset_id=f"dataset-{report_id}",
        name=f"Report {report_id}",
        embed_url="https://app.powerbi.com/reportEmbed",
        rls_required=rls,
        rls_roles_required=rls,
        is_available=available,
    )
    db.add(report)
    db.flush()
    return report


def add_group(db: Session, name: str, *members: User) -> Group:
    group = Group(name=name)
    db.add(group)
    db.flush()
    for member in members:
        db.add(GroupMembership(group_id=group.id, user_id=member.id))
    db.flush()
    return group


def test_a_viewer_sees_reports_granted_directly_or_through_a_group(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(make_user("viewer@example.com"))
    other = db.merge(make_user("other@example.com"))
    direct, through_group, nobody, gone = (
        add_report(db, "b-direct"),
        add_report(db, "a-group"),
        add_report(db, "c-nobody"),
        add_report(db, "d-gone", available=False),
    )
    group = add_group(db, "Sales", viewer)
    grant_report(session=db, report=direct, user=viewer, roles=[], actor=None)
    grant_report(session=db, report=through_group, group=group, roles=[], actor=None)
    grant_report(session=db, report=gone, user=viewer, roles=[], actor=None)

    assert [r.id for r in visible_reports(session=db, user=viewer)] == ["a-group", "b-direct"]
    assert visible_reports(session=db, user=other) == []
    assert can_view(session=db, user=viewer, report=direct)
    assert not can_view(session=db, user=viewer, report=nobody)
    assert not can_view(session=db, user=viewer, report=gone)


def test_administrators_see_every_available_report_and_blocked_users_none(
    db: Session, make_user: MakeUser
) -> None:
    admin = db.merge(make_user("admin@example.com", role="admin"))
    blocked = db.merge(make_user("blocked@example.com", role="admin", is_blocked=True))
    add_report(db, "r1")
    add_report(db, "r2", available=False)
    assert [r.id for r in visible_reports(session=db, user=admin)] == ["r1"]
    assert visible_reports(session=db, user=blocked) == []


def test_the_rls_identity_unions_user_group_and_direct_grant_roles(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(
        make_user("north@example.com", rls_username="NORTH\\manager", rls_roles=["Everyone"])
    )
    report = add_report(db, "rls", rls=True)
    group_a = add_group(db, "A", viewer)
    group_b = add_group(db, "B", viewer)
    add_group(db, "Not a member")
    grant_report(session=db, report=report, group=group_a, roles=["Region Manager"], actor=None)
    grant_report(session=db, report=report, group=group_b, roles=["Everyone", "B"], actor=None)
    grant_report(session=db, report=report, user=viewer, roles=["Direct"], actor=None)

    identity = rls_identity_of(session=db, user=viewer, report=report)
    assert identity.username == "NORTH\\manager"
    assert sorted(identity.roles) == ["B", "Direct", "Everyone", "Region Manager"]
    effective = effective_identity(session=db, user=viewer, report=report)
    assert effective is not None
    assert effective.datasets == ("dataset-rls",)


def test_the_username_defaults_to_the_email_and_non_rls_reports_send_no_identity(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(make_user("south@example.com"))
    rls = add_report(db, "rls", rls=True)
    plain = add_report(db, "plain")
    grant_report(session=db, report=rls, user=viewer, roles=["Region Manager"], actor=None)
    grant_report(session=db, report=plain, user=viewer, roles=["Ignored"], actor=None)
    identity = effective_identity(session=db, user=viewer, report=rls)
    assert identity is not None and identity.username == "south@example.com"
    assert effective_identity(session=db, user=viewer, report=plain) is None


def test_an_rls_report_without_a_role_is_refused_never_opened_unfiltered(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(make_user("viewer@example.com", rls_username="north@example.com"))
    admin = db.merge(make_user("admin@example.com", role="admin"))
    report = add_report(db, "rls", rls=True)
    grant_report(session=db, report=report, user=viewer, roles=[], actor=None)
    for user in (viewer, admin):
        with pytest.raises(RlsIdentityMissingError, match="row-level security"):
            effective_identity(session=db, user=user, report=report)


def test_granting_again_updates_the_roles_and_every_change_is_audited(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(make_user("viewer@example.com"))
    report = add_report(db, "r")
    first = grant_report(session=db, report=report, user=viewer, roles=["A"], actor=None)
    again = grant_report(session=db, report=report, user=viewer, roles=["B"], actor=None)
    assert again.id == first.id and again.rls_roles == ["B"]
    revoke_grant(session=db, grant=again, actor=None)
    assert not can_view(session=db, user=viewer, report=report)
    actions = [entry.action for entry in db.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-3:] == ["report.granted", "report.grant_changed", "report.revoked"]


def test_a_grant_goes_to_a_user_or_a_group_not_both(db: Session, make_user: MakeUser) -> None:
    viewer = db.merge(make_user("viewer@example.com"))
    report = add_report(db, "r")
    group = add_group(db, "G")
    with pytest.raises(GrantInputError):
        grant_report(session=db, report=report, user=viewer, group=group, roles=[], actor=None)
    with pytest.raises(GrantInputError):
        grant_report(session=db, report=report, roles=[], actor=None)


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("", []),
        ("Region Manager", ["Region Manager"]),
        (" A , B ,A,, ", ["A", "B"]),
        (",".join(f"r{i}" for i in range(50)), [f"r{i}" for i in range(50)]),
        ("x" * 50, ["x" * 50]),
    ],
)
def test_roles_within_power_bis_limits_are_accepted(text: str, roles: list[str]) -> None:
    assert parse_roles(text) == roles


@pytest.mark.parametrize(
    "value",
    [
        ",".join(f"r{i}" for i in range(51)),
        "x" * 51,
        ["has,comma"],
    ],
)
def test_roles_beyond_power_bis_limits_are_refused(value: str | list[str]) -> None:
    with pytest.raises(GrantInputError):
        parse_roles(value)


def test_a_users_access_lists_each_report_with_every_reason_and_identity(
    db: Session, make_user: MakeUser
) -> None:
    viewer = db.merge(make_user("viewer@example.com"))
    viewer.rls_roles = ["Reader"]
    both, rls, nobody = (
        add_report(db, "a-both"),
        add_report(db, "b-rls", rls=True),
        add_report(db, "c-nobody"),
    )
    sales, north = add_group(db, "Sales", viewer), add_group(db, "north", viewer)
    grant_report(session=db, report=both, user=viewer, roles=[], actor=None)
    grant_report(session=db, report=both, group=sales, roles=[], actor=None)
    grant_report(session=db, report=both, group=north, roles=[], actor=None)
    grant_report(session=db, report=rls, group=sales, roles=["Region Manager"], actor=None)

    access = access_of(session=db, user=viewer)
    assert [item.report.id for item in access] == ["a-both", "b-rls"]
    first, second = access
    assert first.own_grant is not None and not first.as_admin
    assert [name for name, _grant in first.group_grants] == ["north", "Sales"]
    assert first.identity is None  # no row-level security: nothing to present
    assert second.own_grant is None and [name for name, _ in second.group_grants] == ["Sales"]
    assert second.identity is not None
    assert second.identity.username == "viewer@example.com"
    assert second.identity.roles == ("Reader", "Region Manager")
    assert nobody.id not in {item.report.id for item in access}

    viewer.is_blocked = True
    assert access_of(session=db, user=viewer) == []


def test_an_administrator_opens_every_report_as_such_and_a_group_lists_its_reports(
    db: Session, make_user: MakeUser
) -> None:
    admin = db.merge(make_user("admin@example.com", role="admin"))
    report_b, report_a = add_report(db, "b"), add_report(db, "a")
    group = add_group(db, "Sales")
    grant_report(session=db, report=report_b, group=group, roles=["North"], actor=None)
    grant_report(session=db, report=report_a, group=group, roles=[], actor=None)
    assert all(item.as_admin for item in access_of(session=db, user=admin))
    listed = reports_of_group(session=db, group=group)
    assert [(report.id, grant.rls_roles) for report, grant in listed] == [
        ("a", []),
        ("b", ["North"]),
    ]
