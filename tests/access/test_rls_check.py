"""The RLS try-out: which identities a change brings, and what Power BI's answers mean."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from embedportal.access.grants import grant_report
from embedportal.access.rls_check import (
    RlsTrial,
    grant_trials,
    roles_in_use,
    try_identities,
    user_trials,
)
from embedportal.db.models import Group, GroupMembership, Report, User
from embedportal.db.session import session_scope
from embedportal.i18n import activate, deactivate
from embedportal.powerbi import (
    EffectiveIdentity,
    EmbedToken,
    PowerBIBadRequestError,
    PowerBIError,
    PowerBIUnavailableError,
)
from tests.support.portal import MakeUser


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    with session_scope(app.state.session_factory) as session:
        yield session


def add_report(db: Session, report_id: str, *, rls: bool = True, dataset: str = "") -> Report:
    report = Report(
        id=report_id,
        workspace_id="w",
        dataset_id=dataset or f"dataset-{report_id}",
        name=f"Report {report_id}",
        embed_url="https://app.powerbi.com/reportEmbed",
        rls_required=rls,
        rls_roles_required=rls,
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


class Minter:
    """Power BI as the try-out sees it: the roles it knows, or one error for every call."""

    def __init__(self, known: Sequence[str] = (), error: PowerBIError | None = None) -> None:
        self.known = set(known)
        self.error = error
        self.calls: list[EffectiveIdentity] = []
        self.hang = False

    async def generate_token(
        self,
        *,
        report_ids: Sequence[str],
        dataset_ids: Sequence[str],
        identities: Sequence[EffectiveIdentity] = (),
        lifetime_minutes: int | None = None,
        min_entra_remaining_seconds: float | None = None,
    ) -> EmbedToken:
        self.calls.extend(identities)
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        for role in identities[0].roles:
            if role not in self.known:
                raise PowerBIBadRequestError(
                    f"Role '{role}' does not exist in dataset 839f1c2e-0000-4000-8000-00000000da01"
                )
        expiration = datetime.now(UTC) + timedelta(minutes=1)
        return EmbedToken(token="t", token_id="id", expiration=expiration)


def trial(roles: Sequence[str], dataset: str = "d", username: str = "u") -> RlsTrial:
    return RlsTrial("r", "Regional", dataset, username, tuple(roles))


def test_a_users_grant_is_tried_with_every_role_they_would_have(
    db: Session, make_user: MakeUser
) -> None:
    admin = db.merge(make_user("admin@example.com", role="admin"))
    user = db.merge(make_user("ana@example.com", rls_username="ANA", rls_roles=["Own"]))
    bare = db.merge(make_user("bare@example.com"))  # users first: the test holds the database
    report = add_report(db, "r1")
    group = add_group(db, "Managers", user)
    grant_report(session=db, report=report, group=group, roles=["Group"], actor=None)
    (tried,) = grant_trials(session=db, report=report, roles=["New"], user=user, actor=admin)
    assert (tried.username, tried.roles) == ("ANA", ("Own", "Group", "New"))
    assert tried.dataset_id == "dataset-r1"
    # A group's roles are tried alone, with its first member's username.
    (tried,) = grant_trials(session=db, report=report, roles=["G2"], group=group, actor=admin)
    assert (tried.username, tried.roles) == ("ANA", ("G2",))
    empty = add_group(db, "Nobody")
    (tried,) = grant_trials(session=db, report=report, roles=["G3"], group=empty, actor=admin)
    assert tried.username == "admin@example.com"
    # Nothing to try: no RLS on the report, or no role at all.
    plain = add_report(db, "r2", rls=False)
    assert grant_trials(session=db, report=plain, roles=["X"], user=user, actor=admin) == []
    assert grant_trials(session=db, report=report, roles=[], user=bare, actor=admin) == []


def test_a_users_new_settings_are_tried_on_each_rls_report_they_open(
    db: Session, make_user: MakeUser
) -> None:
    user = db.merge(make_user("ana@example.com"))
    for report_id, rls in (("r1", True), ("r2", True), ("r3", False)):
        grant_report(
            session=db, report=add_report(db, report_id, rls=rls), user=user, roles=[], actor=None
        )
    add_report(db, "r4")  # not theirs
    trials = user_trials(session=db, user=user, rls_username="ANA", rls_roles=["North"])
    assert sorted((t.report_id, t.username, t.roles) for t in trials) == [
        ("r1", "ANA", ("North",)),
        ("r2", "ANA", ("North",)),
    ]
    assert user_trials(session=db, user=user, rls_username=None, rls_roles=[]) == []


def test_one_try_per_dataset_and_a_wrong_role_named_in_plain_words() -> None:
    minter = Minter(known=["Region Manager"])
    check = asyncio.run(
        try_identities(
            minter=minter,
            trials=[trial(["Region Manager"]), trial(["Region Manager"]), trial(["Regoin"], "e")],
        )
    )
    assert len(minter.calls) == 2
    (refusal,) = check.refusals
    assert (refusal.kind, refusal.role) == ("unknown_role", "Regoin")
    token = activate("en")
    try:
        (message,) = check.messages()
    finally:
        deactivate(token)
    assert message.startswith("The RLS role “Regoin” does not exist in this report's data")
    assert "839f" not in message and not check.unchecked


def test_power_bi_unreachable_slow_or_not_connected_leaves_the_trials_unchecked() -> None:
    down = Minter(error=PowerBIUnavailableError("connection refused"))
    check = asyncio.run(try_identities(minter=down, trials=[trial(["A"])]))
    assert (check.refusals, check.unchecked) == ((), ("Regional",))
    slow = Minter()
    slow.hang = True
    check = asyncio.run(try_identities(minter=slow, trials=[trial(["A"])], timeout_seconds=0.01))
    assert check.unchecked == ("Regional",) and not check.refused
    check = asyncio.run(try_identities(minter=None, trials=[trial(["A"])]))
    assert check.unchecked == ("Regional",)
    assert asyncio.run(try_identities(minter=None, trials=[])).unchecked == ()


def test_the_roles_in_use_for_a_dataset(db: Session, make_user: MakeUser) -> None:
    member = db.merge(make_user("m@example.com", rls_roles=["Own role"]))
    direct = db.merge(make_user("d@example.com", rls_roles=["auditor"]))
    stranger = db.merge(make_user("s@example.com", rls_roles=["Elsewhere"]))
    one, two = add_report(db, "r1", dataset="shared"), add_report(db, "r2", dataset="shared")
    other = add_report(db, "r3", dataset="other")
    grant_report(
        session=db, report=one, group=add_group(db, "G", member), roles=["North"], actor=None
    )
    grant_report(session=db, report=two, user=direct, roles=["South"], actor=None)
    grant_report(session=db, report=other, user=stranger, roles=["West"], actor=None)
    assert roles_in_use(session=db, dataset_id="shared") == [
        "auditor",
        "North",
        "Own role",
        "South",
    ]
    assert roles_in_use(session=db, dataset_id="none") == []
