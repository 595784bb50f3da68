"""Power BI REST: reads, GenerateToken V1/V2, validation, auth, expiry, throttling."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from embedportal.emulator.demo import FINANCE_WORKSPACE_ID, REGION_MANAGER_ROLE
from embedportal.emulator.tokens import unverified_claims
from tests.emulator.harness import (
    GROUP,
    OPERATIONS,
    REGIONAL,
    REGIONAL_DATASET,
    SALES_DATASET,
    SALES_OVERVIEW,
    Emulator,
    running_emulator,
)

V2 = "/v1.0/myorg/GenerateToken"
# An id no demo entity has (fixed, so every test worker collects the same parameters).
UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"
EXPIRATION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NORTH = {
    "username": "north@example.com",
    "roles": [REGION_MANAGER_ROLE],
    "datasets": [REGIONAL_DATASET],
}


def v1_path(report: str = SALES_OVERVIEW, group: str = GROUP) -> str:
    return f"/v1.0/myorg/groups/{group}/reports/{report}/GenerateToken"


def expiration_epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def assert_error(response: Any, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if message is not None:
        assert message in error["message"]


# --- reads ---------------------------------------------------------------------------------------


def test_groups(shared_emulator: Emulator, pbi_headers: dict[str, str]) -> None:
    response = shared_emulator.http.get("/v1.0/myorg/groups", headers=pbi_headers)
    assert response.status_code == 200
    assert uuid.UUID(response.headers["RequestId"])
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/myorg/$metadata#groups")
    # Two demo workspaces now (the second on the second capacity: tests/emulator/test_capacities).
    workspace, finance = body["value"]
    assert workspace["id"] == GROUP
    assert workspace["name"] == "Demo workspace"
    assert workspace["isOnDedicatedCapacity"] is True
    assert finance["id"] == FINANCE_WORKSPACE_ID and finance["name"] == "Finance workspace"


def test_reports(shared_emulator: Emulator, pbi_headers: dict[str, str]) -> None:
    body = shared_emulator.http.get(f"/v1.0/myorg/groups/{GROUP}/reports", headers=pbi_headers)
    names = {item["name"]: item for item in body.json()["value"]}
    assert set(names) == {"Sales Overview", "Regional Performance", "Operations Dashboard"}
    one = shared_emulator.http.get(
        f"/v1.0/myorg/groups/{GROUP}/reports/{REGIONAL.upper()}", headers=pbi_headers
    ).json()
    assert one["@odata.context"].endswith("$metadata#reports/$entity")
    assert one["id"] == REGIONAL
    assert one["reportType"] == "PowerBIReport"
    assert one["datasetId"] == REGIONAL_DATASET
    assert one["datasetWorkspaceId"] == GROUP
    assert one["embedUrl"] == (
        f"{shared_emulator.base_url}/reportEmbed?reportId={REGIONAL}&groupId={GROUP}"
    )
    assert one == {**names["Regional Performance"], "@odata.context": one["@odata.context"]}


def test_datasets(shared_emulator: Emulator, pbi_headers: dict[str, str]) -> None:
    body = shared_emulator.http.get(f"/v1.0/myorg/groups/{GROUP}/datasets", headers=pbi_headers)
    flags = {
        item["name"]: (
            item["isEffectiveIdentityRequired"],
            item["isEffectiveIdentityRolesRequired"],
        )
        for item in body.json()["value"]
    }
    assert flags == {"Sales": (False, False), "Regional Sales": (True, True)}
    one = shared_emulator.http.get(
        f"/v1.0/myorg/groups/{GROUP}/datasets/{REGIONAL_DATASET}", headers=pbi_headers
    ).json()
    assert one["id"] == REGIONAL_DATASET
    assert one["isEffectiveIdentityRequired"] is True


@pytest.mark.parametrize(
    "path",
    [
        f"/v1.0/myorg/groups/{UNKNOWN_ID}/reports",
        "/v1.0/myorg/groups/not-a-guid/reports",
        f"/v1.0/myorg/groups/{GROUP}/reports/{UNKNOWN_ID}",
        f"/v1.0/myorg/groups/{UNKNOWN_ID}/reports/{SALES_OVERVIEW}",
        f"/v1.0/myorg/groups/{GROUP}/reports/{SALES_DATASET}",
        f"/v1.0/myorg/groups/{GROUP}/datasets/{UNKNOWN_ID}",
        f"/v1.0/myorg/groups/{UNKNOWN_ID}/datasets",
    ],
)
def test_unknown_ids_are_not_found(
    shared_emulator: Emulator, pbi_headers: dict[str, str], path: str
) -> None:
    response = shared_emulator.http.get(path, headers=pbi_headers)
    assert_error(response, 404, "PowerBIEntityNotFound")
    assert response.headers["RequestId"]


def test_unknown_route_and_wrong_method_answer_json(
    shared_emulator: Emulator, pbi_headers: dict[str, str]
) -> None:
    missing = shared_emulator.http.get("/v1.0/myorg/nothing/here", headers=pbi_headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]
    wrong = shared_emulator.http.get(V2, headers=pbi_headers)
    assert_error(wrong, 405, "MethodNotAllowed")


# --- authentication ------------------------------------------------------------------------------


def test_bad_or_missing_token_is_forbidden(shared_emulator: Emulator) -> None:
    http = shared_emulator.http
    arm_token = shared_emulator.access_token("https://management.azure.com/.default")
    with running_emulator() as other:  # same identities, another signing key
        foreign = other.access_token()
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Bearer " + "x" * 100},
        {"Authorization": f"Bearer {arm_token}"},
        {"Authorization": f"Bearer {foreign}"},
    ):
        response = http.get("/v1.0/myorg/groups", headers=headers)
        assert_error(response, 403, "PowerBINotAuthorizedException")
        token = http.post(V2, headers=headers, json={"reports": [{"id": SALES_OVERVIEW}]})
        assert token.status_code == 403


def test_expired_entra_token() -> None:
    with running_emulator(entra_min_lifetime_seconds=3, entra_max_lifetime_seconds=3) as emu:
        token = emu.access_token()
        headers = {"Authorization": f"Bearer {token}"}
        assert emu.http.get("/v1.0/myorg/groups", headers=headers).status_code == 200
        time.sleep(max(0.0, unverified_claims(token)["exp"] - time.time()) + 0.05)
        for response in (
            emu.http.get("/v1.0/myorg/groups", headers=headers),
            emu.http.post(V2, headers=headers, json={"reports": [{"id": SALES_OVERVIEW}]}),
        ):
            assert response.status_code == 403
            assert response.json() == {
                "error": {
                    "code": "TokenExpired",
                    "message": "Access token has expired, resubmit with a new access token",
                }
            }


def test_request_budget_answers_429_with_retry_after() -> None:
    with running_emulator(request_budget=3, request_budget_window_seconds=1) as emu:
        headers = emu.powerbi_headers()
        answers = [emu.http.get("/v1.0/myorg/groups", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        throttled = answers[-1]
        assert throttled.headers["Retry-After"] == "1"
        assert_error(throttled, 429, "TooManyRequests", "Retry in 1 seconds")
        # Entra and the emulator-only endpoints are not Power BI requests.
        assert emu.token_response().status_code == 200
        stats = emu.stats()
        assert stats["throttledRequests"] == 1
        assert stats["powerBiRequests"] == 3
        time.sleep(1.05)
        assert emu.http.get("/v1.0/myorg/groups", headers=headers).status_code == 200


# --- GenerateToken -------------------------------------------------------------------------------


def test_generate_token_v2_for_a_report(
    shared_emulator: Emulator, pbi_headers: dict[str, str]
) -> None:
    before = time.time()
    response = shared_emulator.http.post(
        V2, headers=pbi_headers, json={"reports": [{"id": SALES_OVERVIEW}]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith(
        "$metadata#Microsoft.PowerBI.ServiceClient.Models.EmbedToken"
    )
    assert uuid.UUID(body["tokenId"]).version == 4
    assert EXPIRATION.match(body["expiration"])
    claims = unverified_claims(body["token"])
    assert claims["tokenId"] == body["tokenId"]
    assert claims["exp"] == expiration_epoch(body["expiration"])
    assert before + 3599 - 1 <= claims["exp"] <= time.time() + 3600
    assert claims["reports"] == [{"id": SALES_OVERVIEW, "allowEdit": False}]
    assert claims["datasets"] == [SALES_DATASET]  # the report's dataset comes with it
    assert claims["identities"] == []


def test_generate_token_v2_many_items_with_identity(
    shared_emulator: Emulator, pbi_headers: dict[str, str]
) -> None:
    before = shared_emulator.stats()["generateTokenCalls"]
    response = shared_emulator.http.post(
        V2,
        headers=pbi_headers,
        json={
            "reports": [
                {"id": SALES_OVERVIEW, "allowEdit": True},
                {"id": REGIONAL},
                {"id": OPERATIONS},
            ],
            "datasets": [{"id": SALES_DATASET, "xmlaPermissions": "ReadOnly"}],
            "targetWorkspaces": [{"id": GROUP}],
            "identities": [NORTH],
            "lifetimeInMinutes": 0,
        },
    )
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["token"])
    assert {r["id"]: r["allowEdit"] for r in claims["reports"]} == {
        SALES_OVERVIEW: True,
        REGIONAL: False,
        OPERATIONS: False,
    }
    assert sorted(claims["datasets"]) == sorted([SALES_DATASET, REGIONAL_DATASET])
    assert claims["identities"] == [NORTH]
    assert claims["targetWorkspaces"] == [GROUP]
    assert shared_emulator.stats()["generateTokenCalls"] == before + 1


def test_generate_token_v1(shared_emulator: Emulator, pbi_headers: dict[str, str]) -> None:
    view = shared_emulator.http.post(v1_path(), headers=pbi_headers, json={"accessLevel": "View"})
    assert view.status_code == 200, view.text
    claims = unverified_claims(view.json()["token"])
    assert claims["reports"] == [{"id": SALES_OVERVIEW, "allowEdit": False}]
    assert claims["datasets"] == [SALES_DATASET]
    edit = shared_emulator.http.post(v1_path(), headers=pbi_headers, json={"accessLevel": "edit"})
    assert unverified_claims(edit.json()["token"])["reports"][0]["allowEdit"] is True
    rls = shared_emulator.http.post(
        v1_path(REGIONAL),
        headers=pbi_headers,
        json={"accessLevel": "View", "identities": [NORTH], "lifetimeInMinutes": 5},
    )
    assert rls.status_code == 200, rls.text
    assert unverified_claims(rls.json()["token"])["identities"] == [NORTH]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        (v1_path(), {"accessLevel": "Create"}, 400, "InvalidRequest", "Create"),
        (v1_path(), {"accessLevel": "Admin"}, 400, "InvalidRequest", "accessLevel"),
        (v1_path(), {"accessLevel": 1}, 400, "InvalidRequest", "accessLevel"),
        (
            v1_path(REGIONAL),
            {"accessLevel": "View"},
            400,
            "InvalidRequest",
            "requires effective identity",
        ),
        (
            v1_path(),
            {"identities": [{**NORTH, "datasets": [SALES_DATASET]}]},
            400,
            "InvalidRequest",
            "shouldn't have effective identity",
        ),
        (v1_path(UNKNOWN_ID), {"accessLevel": "View"}, 404, "PowerBIEntityNotFound", None),
        (v1_path(group=UNKNOWN_ID), {}, 404, "PowerBIEntityNotFound", None),
        (v1_path(), {"datasetId": str(uuid.uuid4())}, 404, "PowerBIEntityNotFound", None),
    ],
)
def test_generate_token_v1_errors(
    shared_emulator: Emulator,
    pbi_headers: dict[str, str],
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
    message: str | None,
) -> None:
    response = shared_emulator.http.post(path, headers=pbi_headers, json=body)
    assert_error(response, status, code, message)


def _identity(**changes: Any) -> dict[str, Any]:
    return {**NORTH, **changes}


def _regional(**identity: Any) -> dict[str, Any]:
    return {"reports": [{"id": REGIONAL}], "identities": [_identity(**identity)]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"reports": [{"id": REGIONAL}]},
            f"Creating embed token for accessing dataset {REGIONAL_DATASET} requires effective "
            "identity to be provided",
        ),
        ({"datasets": [{"id": REGIONAL_DATASET}]}, "requires effective identity"),
        (
            {
                "reports": [{"id": SALES_OVERVIEW}],
                "identities": [_identity(datasets=[SALES_DATASET])],
            },
            f"Creating embed token for accessing dataset {SALES_DATASET} shouldn't have effective "
            "identity",
        ),
        (_regional(roles=[]), "requires roles to be included in provided effective identity"),
        (_regional(roles=None), "requires roles"),
        (_regional(roles=["Auditor"]), "Role 'Auditor' does not exist"),
        (_regional(datasets=[SALES_DATASET]), "not part of this request"),
        (_regional(datasets=[]), "must list the datasets"),
        (_regional(username=""), "needs a username"),
        (_regional(username="u" * 257), "at most 256"),
        (_regional(roles=["r,s"]), "no commas"),
        (_regional(roles=["r" * 51]), "Invalid role name"),
        (_regional(roles=[f"role{i}" for i in range(51)]), "at most 50"),
        ({"reports": [{"id": REGIONAL}], "identities": [NORTH, NORTH]}, "More than one"),
        ({"reports": [{"id": SALES_OVERVIEW}] * 51}, "51 reports; at most 50"),
        ({"datasets": [{"id": SALES_DATASET}] * 51}, "51 datasets; at most 50"),
        ({"targetWorkspaces": [{"id": GROUP}] * 51}, "51 target workspaces; at most 50"),
        ({"reports": [{"id": REGIONAL}], "identities": [NORTH] * 51}, "51 identities; at most 50"),
        ({"reports": [{"id": SALES_OVERVIEW}], "lifetimeInMinutes": -1}, "lifetimeInMinutes"),
        ({"reports": [{"id": SALES_OVERVIEW}], "lifetimeInMinutes": "5"}, "lifetimeInMinutes"),
        ({"reports": [{"id": SALES_OVERVIEW}], "lifetimeInMinutes": 1.5}, "lifetimeInMinutes"),
        ({"reports": [{"id": "not-a-guid"}]}, "reports.0.id"),
        ({"reports": [{"id": SALES_OVERVIEW, "allowEdit": "yes"}]}, "allowEdit"),
        ({"reports": {"id": SALES_OVERVIEW}}, "reports"),
        ({"reports": [SALES_OVERVIEW]}, "reports.0"),
        ({"datasets": [{"id": SALES_DATASET, "xmlaPermissions": "All"}]}, "xmlaPermissions"),
        ({"reports": [{"id": REGIONAL}], "identities": [{**NORTH, "username": 7}]}, "username"),
        ({}, "at least one"),
        ({"reports": [], "datasets": None}, "at least one"),
    ],
)
def test_generate_token_v2_invalid_requests(
    shared_emulator: Emulator, pbi_headers: dict[str, str], body: dict[str, Any], message: str
) -> None:
    response = shared_emulator.http.post(V2, headers=pbi_headers, json=body)
    assert_error(response, 400, "InvalidRequest", message)


def test_fifty_items_are_allowed(shared_emulator: Emulator, pbi_headers: dict[str, str]) -> None:
    roles = [REGION_MANAGER_ROLE] * 50
    body = {
        "reports": [{"id": REGIONAL}] * 50,
        "datasets": [{"id": REGIONAL_DATASET}] * 50,
        "identities": [_identity(roles=roles, username="n" * 256)],
    }
    response = shared_emulator.http.post(V2, headers=pbi_headers, json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'"reports"', b"null", b'{"reports": [{"id": "' + b"\xff" + b'"}]}'],
)
def test_generate_token_bad_json(
    shared_emulator: Emulator, pbi_headers: dict[str, str], raw: bytes
) -> None:
    headers = {**pbi_headers, "Content-Type": "application/json"}
    for path in (V2, v1_path()):
        response = shared_emulator.http.post(path, headers=headers, content=raw)
        assert_error(response, 400, "InvalidRequest")


@pytest.mark.parametrize(
    "body",
    [
        {"reports": [{"id": str(uuid.uuid4())}]},
        {"datasets": [{"id": str(uuid.uuid4())}]},
        {"datasets": [{"id": "no-such-dataset"}]},
        {"targetWorkspaces": [{"id": str(uuid.uuid4())}]},
    ],
)
def test_generate_token_v2_unknown_items(
    shared_emulator: Emulator, pbi_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = shared_emulator.http.post(V2, headers=pbi_headers, json=body)
    assert_error(response, 404, "PowerBIEntityNotFound")


# --- embed-token lifetimes -----------------------------------------------------------------------


def test_expiration_is_the_smallest_of_the_three_limits() -> None:
    with running_emulator(
        token_lifetime_seconds=120, entra_min_lifetime_seconds=200, entra_max_lifetime_seconds=200
    ) as emu:
        headers = emu.powerbi_headers()

        def lives(body: dict[str, Any], seconds: int, path: str = V2) -> bool:
            """The token expires ``seconds`` after it was issued, whenever in the call that was
            (a busy machine stretches the call; the expiry may be cut to whole seconds)."""
            sent = time.time()
            response = emu.http.post(path, headers=headers, json=body)
            answered = time.time()
            assert response.status_code == 200, response.text
            expires = expiration_epoch(response.json()["expiration"])
            return sent + seconds - 1 <= expires <= answered + seconds

        report = {"reports": [{"id": SALES_OVERVIEW}]}
        assert lives(report, 120)  # the emulator's cap
        assert lives({**report, "lifetimeInMinutes": 0}, 120)
        assert lives({**report, "lifetimeInMinutes": 1}, 60)  # shortened
        assert lives({**report, "lifetimeInMinutes": 10}, 120)  # never extended
        assert lives({"lifetimeInMinutes": 1}, 60, v1_path())

    with running_emulator(
        token_lifetime_seconds=3600, entra_min_lifetime_seconds=30, entra_max_lifetime_seconds=30
    ) as emu:
        token = emu.access_token()
        headers = {"Authorization": f"Bearer {token}"}
        entra_expiry = unverified_claims(token)["exp"]
        for body in ({"reports": [{"id": SALES_OVERVIEW}]}, {"lifetimeInMinutes": 5}):
            path = V2 if "reports" in body else v1_path()
            response = emu.http.post(path, headers=headers, json=body)
            # The Entra token's remaining life caps the embed token, call after call.
            assert expiration_epoch(response.json()["expiration"]) == entra_expiry


# --- fidelity: the media type and the code-only error bodies ----------------------------------

CODE_ONLY_PBI_ERROR = {"parameters": {}, "details": [], "exceptionCulprit": 1}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"],
)
def test_a_post_not_declared_json_is_415(
    shared_emulator: Emulator, pbi_headers: dict[str, str], content_type: str | None
) -> None:
    headers = {"Authorization": pbi_headers["Authorization"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"reports": [{"id": "%s"}]}' % SALES_OVERVIEW.encode()
    before = shared_emulator.http.get("/emulator/api/stats").json()["generateTokenCalls"]
    for path in (V2, v1_path()):
        response = shared_emulator.http.post(path, headers=headers, content=body)
        assert_error(response, 415, "UnsupportedMediaType")
    # Refused at the door: no GenerateToken call was counted.
    assert shared_emulator.http.get("/emulator/api/stats").json()["generateTokenCalls"] == before


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_parameters_or_any_case_is_accepted(
    shared_emulator: Emulator, pbi_headers: dict[str, str], content_type: str
) -> None:
    headers = {"Authorization": pbi_headers["Authorization"], "Content-Type": content_type}
    body = b'{"reports": [{"id": "%s"}]}' % SALES_OVERVIEW.encode()
    response = shared_emulator.http.post(V2, headers=headers, content=body)
    assert response.status_code == 200, response.text


def test_entity_not_found_carries_the_code_alone(
    shared_emulator: Emulator, pbi_headers: dict[str, str]
) -> None:
    expected = {
        "error": {
            "code": "PowerBIEntityNotFound",
            "pbi.error": {"code": "PowerBIEntityNotFound", **CODE_ONLY_PBI_ERROR},
        }
    }
    unknown = str(uuid.uuid4())
    for response in (
        shared_emulator.http.get(f"/v1.0/myorg/groups/{unknown}/reports", headers=pbi_headers),
        shared_emulator.http.get(
            f"/v1.0/myorg/groups/{GROUP}/reports/{unknown}", headers=pbi_headers
        ),
        shared_emulator.http.post(V2, headers=pbi_headers, json={"reports": [{"id": unknown}]}),
        shared_emulator.http.post(v1_path(unknown), headers=pbi_headers, json={}),
    ):
        assert response.status_code == 404
        assert response.json() == expected


@pytest.mark.parametrize("authorization", [None, "Basic abc", "Bearer not-a-token"])
def test_not_authorized_carries_the_code_alone(
    shared_emulator: Emulator, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for response in (
        shared_emulator.http.get("/v1.0/myorg/groups", headers=headers),
        shared_emulator.http.post(V2, headers=headers, json={"reports": [{"id": SALES_OVERVIEW}]}),
    ):
        assert response.status_code == 403
        assert response.json() == {
            "error": {
                "code": "PowerBINotAuthorizedException",
                "pbi.error": {"code": "PowerBINotAuthorizedException", **CODE_ONLY_PBI_ERROR},
            }
        }
