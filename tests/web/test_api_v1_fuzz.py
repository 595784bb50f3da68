"""Schemathesis over the integration API (/api/v1), positive and negative, with a key holding
every scope and the portal pointed at the real emulator: whatever it sends, never a 5xx, and
every refusal is JSON `{code, message}`."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from embedportal.access.groups import add_member, create_group
from embedportal.db.session import session_scope
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import Grant, MakeUser, SyncedReports
from tests.web.test_openapi_fuzz import api_operations

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    # No rate limit in the way: the fuzzer sends many requests with one key.
    return {
        **emulator_settings_overrides,
        "api_burst": 1_000_000,
        "api_requests_per_minute": 1_000_000,
    }


def test_the_integration_api_never_answers_a_server_error(
    app: FastAPI,
    client: TestClient,
    make_user: MakeUser,
    synced_reports: SyncedReports,
    grant: Grant,
) -> None:
    member = make_user("member@example.com")
    grant(synced_reports["Sales Overview"], user=member)
    with session_scope(app.state.session_factory) as db:
        group = create_group(session=db, name="Fuzzed", actor=None)
        add_member(session=db, group=group, email=member.email, actor=None)
    headers = bearer(make_api_key(app, name="Fuzzer"))
    operations = [op for op in api_operations(app) if op.path.startswith("/api/v1/")]
    assert {op.path for op in operations} >= {
        "/api/v1/users",
        "/api/v1/groups/{group_id}/members",
        "/api/v1/reports/{report_id}/grants",
        "/api/v1/audit",
        "/api/v1/sso/links",
    }
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in [(op, mode) for op in operations for mode in modes]:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def never_a_server_error(case: schemathesis.Case) -> None:
            response = case.call(session=client, headers={**(case.headers or {}), **headers})
            answer = (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
            )
            assert response.status_code < 500, answer
            if response.status_code >= 400:
                body = response.json()
                assert body["code"], answer
                assert body["message"], answer

        try:
            never_a_server_error()
        except Unsatisfiable:
            assert mode is schemathesis.GenerationMode.NEGATIVE
