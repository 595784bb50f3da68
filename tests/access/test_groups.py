"""Groups, membership, and the additive capacity permissions."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.groups import (
    EffectivePermissions,
    add_member,
    create_group,
    delete_group,
    effective_permissions,
    groups_of,
    list_groups,
    members_of,
    remove_member,
    update_group,
)
from embedportal.access.users import UserInputError
from embedportal.db.models import AuditEntry, GroupMembership, Role
from tests.access.conftest import NewUser


def test_create_and_rename_with_unique_names(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    sales = create_group(session=db, name="  Sales  team ", description=" North ", actor=admin)
    assert (sales.name, sales.description) == ("Sales team", "North")
    with pytest.raises(UserInputError) as refused:
        create_group(session=db, name="SALES TEAM", actor=admin)
    assert "already exists" in refused.value.errors["name"]
    with pytest.raises(UserInputError) as refused:
        create_group(session=db, name=" ", description="x" * 2001, actor=admin)
    assert set(refused.value.errors) == {"name", "description"}
    changes = update_group(
        session=db,
        group=sales,
        name="Sales",
        description="North",
        may_start_capacity=True,
        keeps_capacity_on=False,
        actor=admin,
    )
    assert changes == {"name": ["Sales team", "Sales"], "may_start_capacity": [False, True]}
    # Keeping its own name (in another case) is not a clash with itself.
    update_group(
        session=db,
        group=sales,
        name="SALES",
        description="",
        may_start_capacity=True,
        keeps_capacity_on=False,
        actor=admin,
    )
    actions = list(db.scalars(select(AuditEntry.action).where(AuditEntry.target_type == "group")))
    assert actions == ["group.created", "group.updated", "group.updated"]


def test_members_are_added_once_and_removed(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    ana = new_user("ana@example.com")
    group = create_group(session=db, name="Team", actor=admin)
    assert add_member(session=db, group=group, email="ANA@example.com", actor=admin) is ana
    add_member(session=db, group=group, email="ana@example.com", actor=admin)
    assert members_of(session=db, group=group) == [ana]
    assert groups_of(session=db, user=ana) == [group]
    with pytest.raises(UserInputError) as refused:
        add_member(session=db, group=group, email="nobody@example.com", actor=admin)
    assert "no user" in refused.value.errors["email"]
    with pytest.raises(UserInputError):
        add_member(session=db, group=group, email="not an address", actor=admin)
    remove_member(session=db, group=group, user=ana, actor=admin)
    remove_member(session=db, group=group, user=ana, actor=admin)
    assert members_of(session=db, group=group) == []
    actions = list(db.scalars(select(AuditEntry.action).where(AuditEntry.action.like("group.m%"))))
    assert actions == ["group.member_added", "group.member_removed"]


def test_list_groups_counts_members(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    new_user("ana@example.com")
    empty = create_group(session=db, name="b-empty", actor=admin)
    full = create_group(session=db, name="A-full", actor=admin)
    add_member(session=db, group=full, email="ana@example.com", actor=admin)
    add_member(session=db, group=full, email="admin@example.com", actor=admin)
    summaries = list_groups(session=db)
    assert [(s.group, s.member_count) for s in summaries] == [(full, 2), (empty, 0)]


def test_delete_group_removes_memberships(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    new_user("ana@example.com")
    group = create_group(session=db, name="Team", actor=admin)
    add_member(session=db, group=group, email="ana@example.com", actor=admin)
    delete_group(session=db, group=group, actor=admin)
    db.commit()
    assert db.scalar(select(GroupMembership)) is None
    [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "group.deleted"))
    assert entry.detail == {"name": "Team", "members": 1}


@pytest.mark.parametrize(
    ("own", "groups", "expected"),
    [
        ((False, False), [], (False, False)),
        ((True, False), [], (True, False)),
        ((False, False), [(False, True)], (False, True)),
        ((False, False), [(True, False), (False, True)], (True, True)),
        ((True, False), [(False, False)], (True, False)),
    ],
)
def test_permissions_are_the_union_of_user_and_groups(
    db: Session,
    new_user: NewUser,
    own: tuple[bool, bool],
    groups: list[tuple[bool, bool]],
    expected: tuple[bool, bool],
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    user = new_user("ana@example.com", may_start_capacity=own[0], keeps_capacity_on=own[1])
    for index, (may_start, keeps_on) in enumerate(groups):
        group = create_group(
            session=db,
            name=f"g{index}",
            may_start_capacity=may_start,
            keeps_capacity_on=keeps_on,
            actor=admin,
        )
        add_member(session=db, group=group, email=user.email, actor=admin)
    assert effective_permissions(session=db, user=user) == EffectivePermissions(*expected)


def test_a_blocked_user_has_no_permissions(db: Session, new_user: NewUser) -> None:
    user = new_user("ana@example.com", may_start_capacity=True, keeps_capacity_on=True)
    user.is_blocked = True
    assert effective_permissions(session=db, user=user) == EffectivePermissions(False, False)


def test_a_name_beyond_ascii_is_found_again_not_stored_twice(db: Session) -> None:
    """SQLite's lower() leaves "Ç" alone while Python's lowers it: the same name again is a
    clash the service names, not a database error (found by the API's fuzzing)."""
    create_group(session=db, name="Ç", actor=None)
    with pytest.raises(UserInputError) as refused:
        create_group(session=db, name="Ç", actor=None)
    assert "already exists" in refused.value.errors["name"]
