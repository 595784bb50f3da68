"""A person's own Power BI token, renewed from their stored refresh token against the emulator's
Entra over real HTTP, and served from memory until it nears expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from embedportal.access.microsoft_tokens import revoke_refresh_token, stored_refresh_token
from embedportal.access.organization import get_organization
from embedportal.access.person_tokens import PersonTokenRefused, PersonTokens
from embedportal.db.session import session_scope
from embedportal.emulator.tokens import unverified_claims
from tests.emulator.harness import Emulator
from tests.support.portal import MakeUser
from tests.web.test_microsoft_signin import NORTH, _sign_in


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def north_id(app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser) -> int:
    """North, signed in with Microsoft once (so a refresh token is kept)."""
    with session_scope(app.state.session_factory) as db:
        get_organization(session=db).sign_in_methods = "both"
    user = make_user(NORTH)
    assert _sign_in(client, emulator).status_code == 303
    return user.id


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs from now on."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", note)
    yield seen
    event.remove(app.state.engine, "before_cursor_execute", note)


def _token(app: FastAPI, tokens: PersonTokens, user_id: int) -> str:
    return tokens.token_for(
        user_id=user_id,
        session_factory=app.state.session_factory,
        settings=app.state.settings,
        flows=app.state.microsoft_sign_ins,
    ).access_token


def _stored(app: FastAPI, user_id: int) -> str | None:
    with session_scope(app.state.session_factory) as db:
        return stored_refresh_token(session=db, settings=app.state.settings, user_id=user_id)


def test_the_token_is_renewed_then_served_from_memory(
    app: FastAPI, emulator: Emulator, north_id: int, clock: Clock, statements: list[str]
) -> None:
    tokens = PersonTokens(clock=clock)
    before = _stored(app, north_id)
    first = _token(app, tokens, north_id)
    claims = unverified_claims(first)
    assert claims["upn"] == NORTH and claims["idtyp"] == "user"
    rotated = _stored(app, north_id)
    assert rotated and rotated != before  # Entra's new refresh token is the one kept

    issued = emulator.state.counters.entra_tokens_issued
    statements.clear()
    assert _token(app, tokens, north_id) == first
    assert statements == []  # a cache hit reads and writes no row
    assert emulator.state.counters.entra_tokens_issued == issued

    # Near its expiry it is renewed.
    clock.now = claims["exp"] - 60
    assert _token(app, tokens, north_id) != first


def test_without_a_refresh_token_there_is_no_token(app: FastAPI, north_id: int) -> None:
    with session_scope(app.state.session_factory) as db:
        revoke_refresh_token(session=db, user_id=north_id)
    with pytest.raises(PersonTokenRefused) as refused:
        _token(app, PersonTokens(), north_id)
    assert refused.value.reason == "no_refresh_token"


def test_a_refresh_token_entra_refuses_is_dropped(
    app: FastAPI, emulator: Emulator, north_id: int
) -> None:
    person = emulator.state.directory.by_email(NORTH)
    assert person is not None
    emulator.state.grants.revoke_user(person.object_id)
    with pytest.raises(PersonTokenRefused) as refused:
        _token(app, PersonTokens(), north_id)
    assert refused.value.reason == "refused"
    assert _stored(app, north_id) is None


def test_a_forgotten_token_is_asked_for_again(app: FastAPI, north_id: int) -> None:
    tokens = PersonTokens()
    first = _token(app, tokens, north_id)
    tokens.forget(north_id)
    assert _token(app, tokens, north_id) != first


def test_an_ask_for_a_newer_token_renews_unless_one_was_just_obtained(
    app: FastAPI, north_id: int, clock: Clock
) -> None:
    """The iframe's hook asks when the token it holds is due: handing that token back would
    have it ask again at once. One obtained within the grace is shared (a TV wall's reports)."""
    tokens = PersonTokens(clock=clock)
    first = _token(app, tokens, north_id)
    renewing = {
        "user_id": north_id,
        "session_factory": app.state.session_factory,
        "settings": app.state.settings,
        "flows": app.state.microsoft_sign_ins,
        "renew": True,
    }
    assert tokens.token_for(**renewing).access_token == first  # type: ignore[arg-type]
    clock.now += 31
    assert tokens.cached(north_id) is not None  # a plain ask still gets the kept one
    assert tokens.cached(north_id, renew=True) is None
    assert tokens.token_for(**renewing).access_token != first  # type: ignore[arg-type]


def test_the_workspaces_a_persons_token_lists_are_kept_and_forgotten(
    app: FastAPI, emulator: Emulator, north_id: int
) -> None:
    from embedportal.emulator.demo import DEMO_WORKSPACE_ID
    from embedportal.web.push import PushEvent

    tokens = PersonTokens()
    arguments = {
        "user_id": north_id,
        "session_factory": app.state.session_factory,
        "settings": app.state.settings,
        "flows": app.state.microsoft_sign_ins,
        "api_url": app.state.settings.powerbi_api_url,
    }
    assert tokens.workspaces_for(**arguments) == frozenset({DEMO_WORKSPACE_ID.lower()})  # type: ignore[arg-type]
    calls = emulator.state.counters.powerbi_requests
    assert tokens.workspaces_for(**arguments) is not None  # type: ignore[arg-type]
    assert emulator.state.counters.powerbi_requests == calls  # kept
    tokens.forget_addressed(PushEvent(kind="session", user_id=north_id))
    assert tokens.cached(north_id) is None
    unreachable = {**arguments, "api_url": "http://127.0.0.1:9"}
    assert tokens.workspaces_for(**unreachable) is None  # type: ignore[arg-type]
