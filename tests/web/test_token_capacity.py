"""The token API and the report's own capacity: while it is off, a viewer allowed to turn it on
gets 503 CapacityStarting (with the capacity's starting text) and has asked for it to start; the
others get 503 CapacityNotActive; once it runs, tokens flow and opening the report is noted as
activity for the idle clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.inventory import sync_capacities
from embedportal.db.models import (
    Capacity,
    CapacityActivity,
    CapacityResumeRequest,
    Organization,
    User,
)
from embedportal.db.session import session_scope
from embedportal.emulator.demo import FINANCE_SUMMARY_REPORT_ID
from embedportal.powerbi import PowerBIClient, PowerBIConnection
from tests.emulator.harness import Emulator, running_emulator
from tests.support.portal import (
    Grant,
    LoginAs,
    MakeUser,
    SyncedReports,
    portal_settings_for,
    post_token,
)

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

SALES = "Sales Overview"
DEDICATED_ID = "b339bc78-b288-5b65-a797-77c024ae3696"


@pytest.fixture
def own_emulator() -> Iterator[Emulator]:
    with running_emulator(capacity_transition_seconds=0.1) as emulator:
        yield emulator


@pytest.fixture
def settings_overrides(own_emulator: Emulator) -> dict[str, object]:
    # The controller is not running: these tests look at what the token API asks for.
    return {
        **portal_settings_for(own_emulator),
        "powerbi_workspace_id": None,
        "capacity_controller": False,
    }


@pytest.fixture
def capacities(app: FastAPI, synced_reports: SyncedReports) -> SyncedReports:
    """The reports and both capacities synced; the demo capacity configured (from settings)."""
    settings = app.state.settings

    async def sync() -> None:
        with session_scope(app.state.session_factory) as db:
            async with PowerBIClient(PowerBIConnection.from_settings(settings)) as client:
                await sync_capacities(session=db, client=client, settings=settings)

    asyncio.run(sync())
    return synced_reports


SignIn = Callable[..., TestClient]


@pytest.fixture
def viewer_of(make_user: MakeUser, grant: Grant, login_as: LoginAs) -> SignIn:
    """viewer_of(report_id, email, **user_fields): a user granted the report, signed in."""

    def sign_in(report_id: str, email: str, **fields: object) -> TestClient:
        user = make_user(email, **fields)
        grant(report_id, user=user)
        return login_as(user)

    return sign_in


def pause(emulator: Emulator) -> None:
    state = emulator.state
    state.capacity.suspend(state.now())
    deadline = time.monotonic() + 5
    while state.capacity.pending_operation(state.now()) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_viewer_who_may_not_start_it_is_told_it_is_off(
    app: FastAPI,
    capacities: SyncedReports,
    own_emulator: Emulator,
    viewer_of: SignIn,
) -> None:
    client = viewer_of(capacities[SALES], "ana@example.com")
    pause(own_emulator)
    response = post_token(client, capacities[SALES])
    assert response.status_code == 503
    assert response.json()["code"] == "CapacityNotActive"
    assert response.headers["retry-after"]
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(CapacityResumeRequest)).all() == []


def test_a_viewer_who_may_start_it_asks_for_it_and_sees_the_starting_text(
    app: FastAPI,
    capacities: SyncedReports,
    own_emulator: Emulator,
    viewer_of: SignIn,
) -> None:
    with session_scope(app.state.session_factory) as db:
        capacity = db.get(Capacity, DEDICATED_ID)
        assert capacity is not None and capacity.is_configured
        capacity.starting_message = "Waking the dashboards up, one moment."
    client = viewer_of(capacities[SALES], "boss@example.com", may_start_capacity=True)
    pause(own_emulator)
    response = post_token(client, capacities[SALES])
    assert response.status_code == 503
    body = response.json()
    assert body == {"code": "CapacityStarting", "detail": "Waking the dashboards up, one moment."}
    with session_scope(app.state.session_factory) as db:
        request = db.get(CapacityResumeRequest, DEDICATED_ID)
        assert request is not None and request.user_email == "boss@example.com"


def test_the_global_block_makes_everyone_wait(
    app: FastAPI,
    capacities: SyncedReports,
    own_emulator: Emulator,
    viewer_of: SignIn,
) -> None:
    with session_scope(app.state.session_factory) as db:
        organization = db.get(Organization, 1) or Organization(id=1)
        organization.nobody_may_start_capacity = True
        db.add(organization)
    client = viewer_of(capacities[SALES], "boss@example.com", may_start_capacity=True)
    pause(own_emulator)
    response = post_token(client, capacities[SALES])
    assert response.json()["code"] == "CapacityNotActive"


def test_another_capacity_being_off_does_not_hold_back_this_report(
    capacities: SyncedReports,
    own_emulator: Emulator,
    viewer_of: SignIn,
) -> None:
    client = viewer_of(FINANCE_SUMMARY_REPORT_ID, "ana@example.com")
    pause(own_emulator)  # the dedicated capacity; Finance Summary runs on the Fabric one
    assert post_token(client, FINANCE_SUMMARY_REPORT_ID).status_code == 200


def test_opening_and_touching_a_report_are_noted_without_a_database_write(
    app: FastAPI,
    capacities: SyncedReports,
    viewer_of: SignIn,
) -> None:
    client = viewer_of(capacities[SALES], "ana@example.com")
    assert post_token(client, capacities[SALES]).status_code == 200
    assert post_token(client, capacities[SALES], reason="timed").status_code == 200
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(CapacityActivity)).all() == []
    ledger = app.state.activity_ledger
    assert ledger.pending_last_counted(DEDICATED_ID) is not None
    ledger.flush()
    with session_scope(app.state.session_factory) as db:
        row = db.scalars(select(CapacityActivity)).one()
        assert set(row.kinds.split(",")) == {ActivityKind.OPENED, ActivityKind.TIMED_REFRESH}
        viewer = db.scalars(select(User).where(User.email == "ana@example.com")).one()
        assert row.user_id == viewer.id and row.last_counted_at is not None


def test_an_open_report_nobody_touches_does_not_start_the_capacity(
    app: FastAPI,
    capacities: SyncedReports,
    own_emulator: Emulator,
    viewer_of: SignIn,
) -> None:
    """A permitted user's forgotten tab sees its capacity pause for being idle: keeping the
    report alive must not start it again; someone opening a report does, and then the tab
    waits on the starting screen too."""
    client = viewer_of(capacities[SALES], "boss@example.com", may_start_capacity=True)
    pause(own_emulator)
    for reason in ("capacity", "margin", "timed", "recovery"):
        answer = post_token(client, capacities[SALES], reason=reason)
        assert answer.json()["code"] == "CapacityNotActive", reason
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(CapacityResumeRequest)).all() == []
    assert post_token(client, capacities[SALES], reason="load").json()["code"] == "CapacityStarting"
    waiting = post_token(client, capacities[SALES], reason="recovery")
    assert waiting.json()["code"] == "CapacityStarting"


def test_an_arm_that_does_not_answer_does_not_hold_back_the_token(
    app: FastAPI,
    capacities: SyncedReports,
    viewer_of: SignIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ARM hung: the capacity's state counts as unknown after a short wait, and the token flows
    (the reading goes on and fills the status cache for the next request)."""
    from embedportal.web import token_answers

    monkeypatch.setattr(token_answers, "CAPACITY_READ_WAIT_SECONDS", 0.2)
    readings = 0

    async def hung_status(**_: object) -> object:
        nonlocal readings
        readings += 1
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    monkeypatch.setattr(app.state.capacity_control, "status", hung_status)
    client = viewer_of(capacities[SALES], "arm-hung@example.com")
    response = post_token(client, capacities[SALES])
    assert response.status_code == 200, response.text
    assert response.json()["token"]
    assert readings == 1
