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
