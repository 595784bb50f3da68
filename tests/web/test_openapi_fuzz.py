"""Schemathesis against the JSON API's OpenAPI: whatever it sends, never a 500.

Runs as a signed-in viewer who may open one report, with the portal pointed at the real emulator,
so generated requests reach the token API's real code path (Power BI included).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.access.users import create_user
from embedportal.db.models import Role
from embedportal.db.session import session_scope
from tests.support.portal import Grant, LoginAs, SyncedReports, csrf_of

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def signed_in_api(
    app: FastAPI,
    client: TestClient,
    make_user: object,
    login_as: LoginAs,
    synced_reports: SyncedReports,
    grant: Grant,
) -> Iterator[tuple[TestClient, str]]:
    make_user("fuzz@example.com")  # type: ignore[operator]
    grant(synced_reports["Sales Overview"], user="fuzz@example.com")
    signed_in = login_as("fuzz@example.com")
    yield signed_in, csrf_of(signed_in)


def _admin_cookie(app: FastAPI) -> str:
    """The schema is for administrators outside development: read it as one."""
    with session_scope(app.state.session_factory) as db:
        admin = create_user(
            session=db,
            email="schema-reader@example.com",
            password="schema-reader-password",
            role=Role.ADMIN,
            actor=None,
        )
        return start_session(session=db, user=admin).cookie_value


def api_operations(app: FastAPI) -> list[schemathesis.APIOperation]:
    # The event stream never ends by design; it has its own tests.
    schema = schemathesis.openapi.from_asgi(
        "/api/openapi.json", app, headers={"Cookie": f"{SESSION_COOKIE}={_admin_cookie(app)}"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    return [operation for operation in operations if operation.path != "/api/events"]


def test_the_api_never_answers_a_server_error(
    app: FastAPI, signed_in_api: tuple[TestClient, str]
) -> None:
    client, csrf = signed_in_api
    operations = api_operations(app)
    assert {operation.path for operation in operations} >= {"/api/reports/{report_id}/token"}
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in [(op, mode) for op in operations for mode in modes]:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def never_a_server_error(case: schemathesis.Case) -> None:
            headers = {**(case.headers or {}), "X-CSRF-Token": csrf}
            response = case.call(session=client, headers=headers)
            assert response.status_code < 500 or response.status_code in (502, 503), (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
            )
            if response.status_code >= 500:
                # Power BI's own failures are passed on as 502/503 with a reason, never bare.
                assert response.json()["detail"]

        try:
            never_a_server_error()
        except Unsatisfiable:
            # Nothing to get wrong (e.g. a GET with no parameters has no negative cases).
            assert mode is schemathesis.GenerationMode.NEGATIVE
