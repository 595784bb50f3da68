"""User-owned reports (embed for your organization) through the token API and the pages: the
person's own Entra token, `tokenType: Aad`; a sign-in with Microsoft asked for when there is
none; the reports listed cut down to the workspaces the person's own token lists. Against the
emulator's Entra and Power BI over real HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from embedportal.access.organization import get_organization
from embedportal.access.person_tokens import PersonTokenRefused, PersonTokens
from embedportal.db.models import Report
from embedportal.db.session import session_scope
from embedportal.emulator.demo import FINANCE_WORKSPACE_ID
from embedportal.emulator.tokens import unverified_claims
from embedportal.web.deps import TokenApiServices, get_token_api_services
from embedportal.web.push import PushEvent
from tests.emulator.harness import Emulator
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of, post_token
from tests.web.test_microsoft_signin import NORTH, _sign_in

SALES = "Sales Overview"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


def user_owned(app: FastAPI, report_id: str | None = None) -> None:
    """One report user-owned, or (None) every report, through the organization's default."""
    with session_scope(app.state.session_factory) as db:
        if report_id is None:
            get_organization(session=db).default_embedding = "user-owned"
        else:
            report = db.get(Report, report_id)
            assert report is not None
            report.embedding = "user-owned"


@pytest.fixture
def north(
    app: FastAPI,
    client: TestClient,
    emulator: Emulator,
    make_user: MakeUser,
    synced_reports: SyncedReports,
    grant: Grant,
) -> TestClient:
    """North, granted Sales Overview (user-owned), signed in with Microsoft on ``client``."""
    with session_scope(app.state.session_factory) as db:
        get_organization(session=db).sign_in_methods = "both"
    user = make_user(NORTH)
    grant(synced_reports[SALES], user=user)
    user_owned(app, synced_reports[SALES])
    assert _sign_in(client, emulator).status_code == 303
    return client


def test_a_user_owned_report_gets_the_persons_own_entra_token(
    app: FastAPI, north: TestClient, synced_reports: SyncedReports, emulator: Emulator
) -> None:
    generate_calls = int(emulator.stats()["generateTokenCalls"])
    response = post_token(north, synced_reports[SALES])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "tokenType", "tokenId", "expiration", "expiresIn", "policy"}
    assert body["tokenType"] == "Aad"
    claims = unverified_claims(body["token"])
    assert (claims["upn"], claims["idtyp"]) == (NORTH, "user")
    assert claims["aud"] == "https://analysis.windows.net/powerbi/api"
    expiration = datetime.fromisoformat(body["expiration"])
    assert abs(expiration.timestamp() - claims["exp"]) <= 1
    assert abs(body["expiresIn"] - (expiration - datetime.now(UTC)).total_seconds()) <= 2
    assert body["policy"]["marginSeconds"] > 0
    # No embed token was minted for it.
    assert int(emulator.stats()["generateTokenCalls"]) == generate_calls


def test_a_kept_token_is_answered_without_the_database(
    app: FastAPI, north: TestClient, synced_reports: SyncedReports
) -> None:
    first = post_token(north, synced_reports[SALES]).json()["token"]
    csrf = csrf_of(north, "/reports")
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", note)
    try:
        again = north.post(
            f"/api/reports/{synced_reports[SALES]}/token",
            headers={"X-CSRF-Token": csrf},
            json={"reason": "hook"},
        )
    finally:
        event.remove(app.state.engine, "before_cursor_execute", note)
    assert again.json()["token"] == first
    assert not [s for s in seen if not s.lstrip().upper().startswith("SELECT")]  # no write


def test_someone_without_a_microsoft_sign_in_is_asked_for_one(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    user_owned(app)  # every report, through the organization's default
    client = login_as(viewer)
    response = post_token(client, synced_reports[SALES])
    assert response.status_code == 403
    assert response.json()["code"] == "MicrosoftSignInNeeded"
    assert "Sign in with Microsoft" in response.json()["detail"]

    # The viewer page still opens: its script shows the sign-in link.
    page = client.get(f"/reports/{synced_reports[SALES]}")
    assert page.status_code == 200
    assert 'data-overlay="microsoftSignIn"' in page.text
    assert 'href="/login/microsoft?next=/reports/' in page.text


def test_a_refresh_token_entra_refuses_asks_for_a_sign_in_again(
    north: TestClient, synced_reports: SyncedReports, emulator: Emulator
) -> None:
    person = emulator.state.directory.by_email(NORTH)
    assert person is not None
    emulator.state.grants.revoke_user(person.object_id)
    response = post_token(north, synced_reports[SALES])
    assert (response.status_code, response.json()["code"]) == (403, "MicrosoftSignInNeeded")


class _Unreachable(PersonTokens):
    def token_for(self, **_kwargs: object) -> object:  # type: ignore[override]
        raise PersonTokenRefused("unreachable")


def test_entra_unreachable_is_a_503_with_retry_after(
    app: FastAPI, north: TestClient, synced_reports: SyncedReports
) -> None:
    app.dependency_overrides[get_token_api_services] = lambda: dataclasses.replace(
        TokenApiServices.of(app.state), person_tokens=_Unreachable()
    )
    response = post_token(north, synced_reports[SALES])
    assert response.status_code == 503
    assert response.json()["code"] == "EntraUnavailable"
    assert int(response.headers["retry-after"]) >= 1


def test_access_checks_stay_as_for_embed_tokens(
    app: FastAPI,
    north: TestClient,
    synced_reports: SyncedReports,
    emulator: Emulator,
) -> None:
    # Not granted: refused before Entra is asked.
    regional = synced_reports["Regional Performance"]
    user_owned(app, regional)
    assert post_token(north, regional).status_code == 403
    # Blocked: the session is gone.
    assert post_token(north, synced_reports[SALES]).status_code == 200
    with session_scope(app.state.session_factory) as db:
        from embedportal.access.users import find_user_by_email

        user = find_user_by_email(session=db, email=NORTH)
        assert user is not None
        user.is_blocked = True
    assert post_token(north, synced_reports[SALES]).status_code == 401


def test_an_event_addressed_to_a_user_makes_the_process_forget_their_token(
    app: FastAPI, north: TestClient, synced_reports: SyncedReports
) -> None:
    first = post_token(north, synced_reports[SALES]).json()["token"]
    user_id = next(iter(app.state.person_tokens._tokens))
    app.state.push_hub.publish(PushEvent(kind="policy"))  # for everyone: nothing forgotten
    assert app.state.person_tokens.cached(user_id) is not None
    app.state.person_tokens.forget_addressed(PushEvent(kind="access", user_id=user_id))
    assert app.state.person_tokens.cached(user_id) is None
    assert post_token(north, synced_reports[SALES]).json()["token"] != first


def test_the_reports_listed_are_those_the_persons_own_rights_reach(
    app: FastAPI, north: TestClient, synced_reports: SyncedReports, grant: Grant
) -> None:
    # A report of a workspace North is no member of, granted by the portal and user-owned.
    with session_scope(app.state.session_factory) as db:
        db.add(
            Report(
                id="finance-report",
                workspace_id=FINANCE_WORKSPACE_ID,
                dataset_id="d",
                name="Finance elsewhere",
                embed_url="http://emulator.invalid/reportEmbed?reportId=finance-report",
                embedding="user-owned",
            )
        )
    grant("finance-report", user=NORTH)
    page = north.get("/reports").text
    assert SALES in page
    assert "Finance elsewhere" not in page
    viewer = north.get("/reports/finance-report")
    assert viewer.status_code == 403
    assert "Power BI account cannot see" in viewer.text
    assert north.get(f"/reports/{synced_reports[SALES]}").status_code == 200
    # TV mode offers and shows the same reports, no more.
    assert "Finance elsewhere" not in north.get("/tv").text
    refused = north.get("/tv/show", params={"report": "finance-report"})
    assert refused.status_code == 400
    shown = north.get("/tv/show", params={"report": synced_reports[SALES]})
    assert shown.status_code == 200

    # The same report embedded with the portal's tokens: the portal's grant alone decides.
    with session_scope(app.state.session_factory) as db:
        report = db.get(Report, "finance-report")
        assert report is not None
        report.embedding = "app-owned"
    assert "Finance elsewhere" in north.get("/reports").text
