"""The rules every way of creating or changing a user goes through."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.login import lockouts
from embedportal.access.passwords import verify_password
from embedportal.access.sessions import start_session
from embedportal.access.users import (
    MAX_RLS_ROLE_LENGTH,
    MAX_RLS_ROLES,
    UserInputError,
    change_own_password,
    create_user,
    delete_user,
    list_users,
    normalise_rls_username,
    parse_rls_roles,
    rls_username_for,
    set_blocked,
    set_language,
    set_password,
    update_user,
)
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, Group, GroupMembership, Role, User, WebSession
from embedportal.settings import Settings
from tests.access.conftest import PASSWORD, LockOut, NewUser


def _audit(db: Session, action: str) -> list[AuditEntry]:
    return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _edit(db: Session, user: User, actor: User, **changes: object) -> dict[str, list[object]]:
    fields: dict[str, object] = {
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "rls_username": user.rls_username,
        "rls_roles": list(user.rls_roles),
        "may_start_capacity": user.may_start_capacity,
        "keeps_capacity_on": user.keeps_capacity_on,
        **changes,
    }
    return update_user(session=db, user=user, actor=actor, **fields)  # type: ignore[arg-type]


def test_create_user_normalises_and_audits_without_the_password(db: Session) -> None:
    user = create_user(
        session=db,
        email="  Ana.Silva@Example.COM ",
        password="secret-password-1",
        name="  Ana   Silva ",
        rls_username="ana",
        rls_roles=" North, , Managers,North ",
        actor=None,
    )
    assert user.email == "ana.silva@example.com"
    assert user.name == "Ana Silva"
    assert user.rls_roles == ["North", "Managers"]
    assert verify_password(user.password_hash, "secret-password-1")
    [entry] = _audit(db, "user.created")
    assert entry.target_id == str(user.id)
    text = json.dumps(entry.detail)
    assert "secret-password-1" not in text and user.password_hash not in text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": ""}, "email"),
        ({"email": "a" * 320 + "@example.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"role": "superuser"}, "role"),
        ({"rls_username": "has space"}, "rls_username"),
        ({"rls_username": "u" * 257}, "rls_username"),
        ({"rls_roles": ",".join(f"r{i}" for i in range(51))}, "rls_roles"),
        ({"rls_roles": "x" * 51}, "rls_roles"),
        ({"rls_roles": ["a,b"]}, "rls_roles"),
    ],
)
def test_create_user_refuses_bad_input_per_field(
    db: Session, fields: dict[str, object], field: str
) -> None:
    values: dict[str, object] = {"email": "new@example.com", "password": PASSWORD, **fields}
    with pytest.raises(UserInputError) as refused:
        create_user(session=db, actor=None, **values)  # type: ignore[arg-type]
    assert set(refused.value.errors) == {field}
    assert db.scalar(select(User)) is None


def test_create_user_reports_every_problem_at_once(db: Session) -> None:
    with pytest.raises(UserInputError) as refused:
        create_user(session=db, email="nope", password="short", rls_username="a b", actor=None)
    assert set(refused.value.errors) == {"email", "password", "rls_username"}


def test_duplicate_email_is_refused_whatever_the_case(db: Session, new_user: NewUser) -> None:
    new_user("taken@example.com")
    with pytest.raises(UserInputError, match="already exists") as refused:
        create_user(session=db, email="TAKEN@example.com", password=PASSWORD, actor=None)
    assert "email" in refused.value.errors


def test_rls_limits_are_inclusive() -> None:
    exactly = [f"role{i}" for i in range(MAX_RLS_ROLES)]
    assert parse_rls_roles(", ".join(exactly)) == exactly
    assert parse_rls_roles("r" * MAX_RLS_ROLE_LENGTH) == ["r" * MAX_RLS_ROLE_LENGTH]
    assert normalise_rls_username("u" * 256) == "u" * 256
    assert normalise_rls_username("   ") is None


@given(st.text(max_size=400))
def test_parsed_roles_always_respect_power_bi_limits(text: str) -> None:
    try:
        roles = parse_rls_roles(text)
    except UserInputError:
        return
    assert len(roles) <= MAX_RLS_ROLES
    assert len(set(roles)) == len(roles)
    for role in roles:
        assert role and role == role.strip()
        assert "," not in role and len(role) <= MAX_RLS_ROLE_LENGTH


def test_rls_username_falls_back_to_the_email(new_user: NewUser) -> None:
    assert rls_username_for(new_user("plain@example.com")) == "plain@example.com"
    assert rls_username_for(new_user("set@example.com", rls_username="SET01")) == "SET01"


def test_update_user_records_what_changed(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    user = new_user("user@example.com")
    changes = _edit(
        db,
        user,
        admin,
        role="admin",
        rls_roles="North",
        may_start_capacity=True,
        keeps_capacity_on=False,
    )
    assert changes == {
        "role": ["viewer", "admin"],
        "rls_roles": [[], ["North"]],
        "may_start_capacity": [False, True],
    }
    [entry] = _audit(db, "user.updated")
    assert entry.actor_email == "admin@example.com"
    assert entry.detail["changes"]["role"] == ["viewer", "admin"]
    assert _edit(db, user, admin) == {}
    assert len(_audit(db, "user.updated")) == 1


def test_update_user_refuses_a_taken_email_and_self_demotion(
    db: Session, new_user: NewUser
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    new_user("other@example.com")
    with pytest.raises(UserInputError) as refused:
        _edit(db, admin, admin, email="other@example.com", role="viewer")
    assert set(refused.value.errors) == {"email", "role"}
    assert admin.role == Role.ADMIN and admin.email == "admin@example.com"


def test_blocking_ends_sessions_and_unblocking_ends_a_lockout(
    db: Session, new_user: NewUser, lock_out: LockOut, settings: Settings
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    user = new_user("user@example.com")
    lock_out(user)
    start_session(session=db, user=user)
    set_blocked(session=db, user=user, blocked=True, actor=admin)
    assert user.is_blocked
    assert db.scalar(select(WebSession).where(WebSession.user_id == user.id)) is None
    set_blocked(session=db, user=user, blocked=False, actor=admin)
    assert not user.is_blocked
    assert lockouts(session=db, settings=settings, now=utcnow()) == {}
    assert [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))][-2:] == [
        "user.blocked",
        "user.unblocked",
    ]


def test_an_admin_cannot_block_or_delete_themselves(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    with pytest.raises(UserInputError, match="block yourself"):
        set_blocked(session=db, user=admin, blocked=True, actor=admin)
    with pytest.raises(UserInputError, match="delete yourself"):
        delete_user(session=db, user=admin, actor=admin)
    assert not admin.is_blocked


def test_delete_user_removes_sessions_and_memberships_but_keeps_the_trail(
    db: Session, new_user: NewUser
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    user = new_user("gone@example.com")
    group = Group(name="Team")
    db.add(group)
    db.flush()
    db.add(GroupMembership(group_id=group.id, user_id=user.id))
    start_session(session=db, user=user)
    user_id = user.id
    delete_user(session=db, user=user, actor=admin)
    db.commit()
    assert db.get(User, user_id) is None
    assert db.scalar(select(WebSession).where(WebSession.user_id == user_id)) is None
    assert db.scalar(select(GroupMembership)) is None
    [entry] = _audit(db, "user.deleted")
    assert entry.detail["email"] == "gone@example.com"


def test_set_password_signs_out_everywhere_and_ends_a_lockout(
    db: Session, new_user: NewUser, lock_out: LockOut, settings: Settings
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    user = new_user("user@example.com")
    lock_out(user)
    start_session(session=db, user=user)
    with pytest.raises(UserInputError):
        set_password(session=db, user=user, password="short", actor=admin)
    set_password(session=db, user=user, password="brand-new-password", actor=admin)
    assert verify_password(user.password_hash, "brand-new-password")
    assert lockouts(session=db, settings=settings, now=utcnow()) == {}
    assert db.scalar(select(WebSession).where(WebSession.user_id == user.id)) is None
    [entry] = _audit(db, "user.password_set")
    assert "brand-new-password" not in json.dumps(entry.detail)


def test_change_own_password_keeps_this_session_only(db: Session, new_user: NewUser) -> None:
    user = new_user("user@example.com")
    here = start_session(session=db, user=user)
    start_session(session=db, user=user)
    with pytest.raises(UserInputError) as refused:
        change_own_password(
            session=db,
            user=user,
            current_password="wrong-password",
            new_password="short",
            repeat_password="short",
            keep_session_id=here.record.id,
        )
    assert set(refused.value.errors) == {"current_password", "new_password"}
    with pytest.raises(UserInputError) as refused:
        change_own_password(
            session=db,
            user=user,
            current_password=PASSWORD,
            new_password="another-long-password",
            repeat_password="another-long-passwort",
            keep_session_id=here.record.id,
        )
    assert set(refused.value.errors) == {"repeat_password"}
    change_own_password(
        session=db,
        user=user,
        current_password=PASSWORD,
        new_password="another-long-password",
        repeat_password="another-long-password",
        keep_session_id=here.record.id,
    )
    remaining = list(db.scalars(select(WebSession.id).where(WebSession.user_id == user.id)))
    assert remaining == [here.record.id]
    assert verify_password(user.password_hash, "another-long-password")


def test_set_language_accepts_the_offered_languages_or_none(db: Session, new_user: NewUser) -> None:
    user = new_user("user@example.com")
    set_language(session=db, user=user, language="pt_BR")
    assert user.language == "pt_BR"
    set_language(session=db, user=user, language=None)
    assert user.language is None
    with pytest.raises(UserInputError):
        set_language(session=db, user=user, language="xx")


def test_list_users_searches_email_and_name_literally(db: Session, new_user: NewUser) -> None:
    new_user("ana@example.com", name="Ana Souza")
    new_user("bruno@example.com", name="Bruno 100%")
    new_user("carla_x@example.com")
    assert [u.email for u in list_users(session=db, search="SOUZA").users] == ["ana@example.com"]
    assert [u.email for u in list_users(session=db, search="100%").users] == ["bruno@example.com"]
    assert [u.email for u in list_users(session=db, search="a_x").users] == ["carla_x@example.com"]
    page = list_users(session=db, offset=1, limit=1)
    assert page.total == 3 and [u.email for u in page.users] == ["bruno@example.com"]
