"""What a viewer reads when Power BI refuses their report: plain words, in their language, the
code kept for support, no ids (issue #13)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from embedportal.emulator.demo import REGIONAL_DATASET_ID
from embedportal.i18n import activate, deactivate
from embedportal.powerbi import PowerBIBadRequestError
from embedportal.web.token_answers import refusal_in_plain_words
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of

REGIONAL = "Regional Performance"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


def token_answer(client: TestClient, report_id: str) -> tuple[int, dict[str, str]]:
    response = client.post(
        f"/api/reports/{report_id}/token",
        json={"reason": "load"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("en", "Your RLS role “Regoin Manager” does not exist in this report's data"),
        ("pt_BR", "A sua função RLS “Regoin Manager” não existe nos dados deste relatório"),
    ],
)
def test_a_role_the_data_lacks_is_said_in_plain_words(
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    language: str,
    words: str,
) -> None:
    # Saved before the portal tried roles (or without the check): Power BI refuses it.
    viewer = make_user("viewer@example.com", language=language)
    grant(synced_reports[REGIONAL], user=viewer, roles=["Regoin Manager"])
    status, body = token_answer(login_as(viewer), synced_reports[REGIONAL])
    # Final: asking again cannot help (no "Try again"), an administrator must change the role.
    assert status == 403
    assert body["code"] == "RlsIdentityMissing"  # small on the screen, for support
    assert body["detail"].startswith(words)
    assert REGIONAL_DATASET_ID not in body["detail"]


def test_other_refusals_keep_power_bis_words_without_ids() -> None:
    token = activate("en")
    try:
        said = refusal_in_plain_words(
            PowerBIBadRequestError(
                "The effective identity names dataset '4a7f1c2e-0000-4000-8000-00000000da01', "
                "which is not part of the request"
            )
        )
        roles = refusal_in_plain_words(
            PowerBIBadRequestError(
                "Creating embed token for accessing dataset 4a7f1c2e-0000-4000-8000-00000000da01 "
                "requires roles to be included in provided effective identity"
            )
        )
    finally:
        deactivate(token)
    assert said.startswith("Power BI refused to open this report.")
    assert "4a7f1c2e" not in said and "which is not part of the request" in said
    assert roles.startswith("This report's data is filtered by RLS role and you have none")
