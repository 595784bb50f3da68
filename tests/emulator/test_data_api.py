"""The iframe's private data API (docs/emulator-contract.md): definitions, queries, RLS, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from embedportal.emulator.demo import REGION_MANAGER_ROLE, REGIONS
from embedportal.emulator.tokens import unverified_claims
from tests.emulator.harness import (
    FINANCE_SUMMARY,
    OPERATIONS,
    REGIONAL,
    REGIONAL_DATASET,
    SALES_OVERVIEW,
    Emulator,
    running_emulator,
)

V2 = "/v1.0/myorg/GenerateToken"
API = {"api-version": "2021-01-01"}


def embed_token(
    emu: Emulator,
    reports: list[str],
    username: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {"reports": [{"id": report} for report in reports]}
    if username is not None:
        body["identities"] = [
            {"username": username, "roles": [REGION_MANAGER_ROLE], "datasets": [REGIONAL_DATASET]}
        ]
    response = emu.http.post(V2, headers=headers or emu.powerbi_headers(), json=body)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert isinstance(token, str)
    return token


def query(
    emu: Emulator,
    token: str,
    report: str,
    visual: str,
    *,
    page: str = "ReportSection1",
    filters: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"page": page, "visual": visual}
    if filters is not None:
        body["filters"] = filters
    return emu.http.post(
        f"/emulator/api/reports/{report}/query",
        headers={"Authorization": f"EmbedToken {token}"},
        json=body,
    )


def rows(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 200, response.text
    answer = response.json()["rows"]
    assert isinstance(answer, list)
    return answer


def region_filter(operator: str, values: list[Any], column: str = "Region") -> dict[str, Any]:
    return {
        "$schema": "http://powerbi.com/product/schema#basic",
        "target": {"table": "Sales", "column": column},
        "filterType": 1,
        "operator": operator,
        "values": values,
    }


@pytest.fixture(scope="module")
def sales_token(shared_emulator: Emulator) -> str:
    return embed_token(shared_emulator, [SALES_OVERVIEW, OPERATIONS])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# --- definitions and answers ---------------------------------------------------------------------


def test_report_definition(shared_emulator: Emulator, sales_token: str) -> None:
    response = shared_emulator.http.get(
        f"/emulator/api/reports/{SALES_OVERVIEW}",
        headers={"Authorization": f"EmbedToken {sales_token}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "name", "datasetId", "pages"}
    assert body["name"] == "Sales Overview"
    pages = {page["displayName"]: page for page in body["pages"]}
    assert list(pages) == ["Overview", "Products"]
    overview = {visual["name"]: visual for visual in pages["Overview"]["visuals"]}
    assert {v["type"] for v in overview.values()} == {"card", "bar", "line", "slicer"}
    assert overview["regionSlicer"]["target"] == {"table": "Sales", "column": "Region"}
    for visual in overview.values():
        assert set(visual["layout"]) == {"x", "y", "width", "height"}
        assert visual["layout"]["x"] + visual["layout"]["width"] <= 12
    products = [visual["type"] for visual in pages["Products"]["visuals"]]
    assert sorted(products) == ["bar", "table"]


def test_visual_answers(shared_emulator: Emulator, sales_token: str) -> None:
    card = query(shared_emulator, sales_token, SALES_OVERVIEW, "totalRevenue").json()
    assert card["columns"] == [{"name": "Revenue", "type": "currency", "format": "$#,0"}]
    [[total]] = card["rows"]
    assert total > 1_000_000

    bar = rows(query(shared_emulator, sales_token, SALES_OVERVIEW, "revenueByRegion"))
    assert sorted(region for region, _ in bar) == sorted(REGIONS)
    assert [value for _, value in bar] == sorted((value for _, value in bar), reverse=True)
    assert round(sum(value for _, value in bar), 2) == pytest.approx(total)

    line = query(shared_emulator, sales_token, SALES_OVERVIEW, "revenueByMonth").json()
    assert line["columns"][0] == {"name": "Month", "type": "date"}
    months = [month for month, _ in line["rows"]]
    assert months[0] == "2024-01" and months[-1] == "2025-12" and len(months) == 24

    slicer = query(shared_emulator, sales_token, SALES_OVERVIEW, "regionSlicer").json()
    assert slicer["columns"] == [{"name": "Region", "type": "text"}]
    assert slicer["rows"] == [[region] for region in sorted(REGIONS)]

    table = query(
        shared_emulator, sales_token, SALES_OVERVIEW, "productTable", page="ReportSection2"
    ).json()
    assert [c["name"] for c in table["columns"]] == ["Product", "Units", "Revenue"]
    assert len(table["rows"]) == 12
    assert all(isinstance(units, int) for _, units, _ in table["rows"])

    count = rows(query(shared_emulator, sales_token, OPERATIONS, "orderLines"))
    assert count[0][0] >= 20_000


def test_filters(shared_emulator: Emulator, sales_token: str) -> None:
    def total(filters: list[dict[str, Any]]) -> float:
        [[value]] = rows(
            query(shared_emulator, sales_token, SALES_OVERVIEW, "totalRevenue", filters=filters)
        )
        return float(value or 0)

    everything = total([])
    north = total([region_filter("In", ["North"])])
    not_north = total([region_filter("NotIn", ["North"])])
    assert north + not_north == pytest.approx(everything)
    assert total([region_filter("All", [])]) == everything
    assert total([region_filter("In", [])]) == 0
    both = total([region_filter("In", ["North", "South"])])
    assert both > north
    narrowed = total([region_filter("In", ["North", "South"]), region_filter("In", ["North"])])
    assert narrowed == north
    bikes = total([region_filter("In", ["Bikes"], column="Category")])
    assert 0 < bikes < everything
    one_day = total([region_filter("In", ["2024-07-01T00:00:00.000Z"], column="Date")])
    assert 0 < one_day < everything

    # A slicer lists every region whatever is selected in it, but follows other filters.
    slicer = rows(
        query(
            shared_emulator,
            sales_token,
            SALES_OVERVIEW,
            "regionSlicer",
            filters=[region_filter("In", ["North"])],
        )
    )
    assert len(slicer) == 5
    by_region = rows(
        query(
            shared_emulator,
            sales_token,
            SALES_OVERVIEW,
            "revenueByRegion",
            filters=[region_filter("NotIn", ["North", "East"])],
        )
    )
    assert sorted(region for region, _ in by_region) == ["Central", "South", "West"]


@pytest.mark.parametrize(
    "filters",
    [
        "Region",
        [region_filter("In", ["North"], column="Country")],
        [{**region_filter("In", ["North"]), "target": {"table": "Other", "column": "Region"}}],
        [{**region_filter("In", ["North"]), "filterType": 0}],
        [{**region_filter("In", ["North"]), "operator": "Contains"}],
        [{**region_filter("In", ["North"]), "values": "North"}],
        [{**region_filter("In", ["North"]), "values": [{"x": 1}]}],
        [{**region_filter("In", ["North"]), "target": "Sales.Region"}],
        ["not an object"],
    ],
)
def test_bad_filters(shared_emulator: Emulator, sales_token: str, filters: Any) -> None:
    response = query(shared_emulator, sales_token, SALES_OVERVIEW, "totalRevenue", filters=filters)
    assert_error(response, 400, "InvalidRequest")


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b'{"page": 1, "visual": "totalRevenue"}', b'{"visual": "x"}']
)
def test_bad_bodies(shared_emulator: Emulator, sales_token: str, raw: bytes) -> None:
    response = shared_emulator.http.post(
        f"/emulator/api/reports/{SALES_OVERVIEW}/query",
        headers={"Authorization": f"EmbedToken {sales_token}", "Content-Type": "application/json"},
        content=raw,
    )
    assert_error(response, 400, "InvalidRequest")


# --- row-level security --------------------------------------------------------------------------


def test_rls_gives_each_identity_its_own_numbers(shared_emulator: Emulator) -> None:
    totals = {}
    for region in REGIONS:
        token = embed_token(shared_emulator, [REGIONAL], f"{region.lower()}@example.com")
        [[totals[region]]] = rows(query(shared_emulator, token, REGIONAL, "regionRevenue"))
        months = rows(query(shared_emulator, token, REGIONAL, "revenueByMonth"))
        assert round(sum(value for _, value in months), 2) == pytest.approx(totals[region])
    assert totals["North"] != totals["South"]
    assert len(set(totals.values())) == len(REGIONS)

    sales_token = embed_token(shared_emulator, [SALES_OVERVIEW])
    # The same rows without RLS, filtered by hand, give the same numbers.
    by_region = dict(rows(query(shared_emulator, sales_token, SALES_OVERVIEW, "revenueByRegion")))
    assert by_region == pytest.approx(totals)

    # DAX compares text case-insensitively.
    shouting = embed_token(shared_emulator, [REGIONAL], "NORTH@EXAMPLE.COM")
    assert rows(query(shared_emulator, shouting, REGIONAL, "regionRevenue")) == [[totals["North"]]]

    # An identity the mapping table does not know sees nothing, as in Power BI.
    stranger = embed_token(shared_emulator, [REGIONAL], "nobody@example.com")
    assert rows(query(shared_emulator, stranger, REGIONAL, "regionRevenue")) == [[None]]
    assert rows(query(shared_emulator, stranger, REGIONAL, "revenueByProduct")) == []

    # Filters cannot widen what RLS allows.
    north = embed_token(shared_emulator, [REGIONAL], "north@example.com")
    widened = query(
        shared_emulator, north, REGIONAL, "regionRevenue", filters=[region_filter("In", ["South"])]
    )
    assert rows(widened) == [[None]]


def _person_query(emu: Emulator, token: str, report: str, visual: str) -> httpx.Response:
    return emu.http.post(
        f"/emulator/api/reports/{report}/query",
        headers={"Authorization": f"Bearer {token}"},
        json={"page": "ReportSection1", "visual": visual},
    )


def test_a_persons_own_token_reads_their_workspaces_under_their_rls_roles(
    shared_emulator: Emulator,
) -> None:
    north = shared_emulator.person_token("north@example.com")
    admin = shared_emulator.person_token("admin@example.com")
    by_identity = embed_token(shared_emulator, [REGIONAL], "north@example.com")
    [[north_total]] = rows(query(shared_emulator, by_identity, REGIONAL, "regionRevenue"))
    # North is in the Region Manager role: their own token gives their region's numbers.
    assert rows(_person_query(shared_emulator, north, REGIONAL, "regionRevenue")) == [[north_total]]
    # The administrator is in no RLS role: a workspace member sees every row.
    [[everything]] = rows(_person_query(shared_emulator, admin, REGIONAL, "regionRevenue"))
    assert everything > north_total
    # A workspace North is not a member of.
    assert_error(
        _person_query(shared_emulator, north, FINANCE_SUMMARY, "totalRevenue"),
        403,
        "PowerBINotAuthorizedException",
    )
    # A service principal's token is not a person's.
    app_token = shared_emulator.access_token()
    assert_error(
        _person_query(shared_emulator, app_token, SALES_OVERVIEW, "totalRevenue"),
        403,
        "PowerBINotAuthorizedException",
    )


def test_an_expired_persons_token_is_token_expired() -> None:
    with running_emulator(entra_min_lifetime_seconds=2, entra_max_lifetime_seconds=2) as emu:
        token = emu.person_token("north@example.com")
        assert rows(_person_query(emu, token, SALES_OVERVIEW, "totalRevenue"))
        time.sleep(max(0.0, unverified_claims(token)["exp"] - time.time()) + 0.05)
        assert_error(_person_query(emu, token, SALES_OVERVIEW, "totalRevenue"), 403, "TokenExpired")


# --- errors --------------------------------------------------------------------------------------


def test_token_errors(shared_emulator: Emulator, sales_token: str) -> None:
    http = shared_emulator.http
    url = f"/emulator/api/reports/{SALES_OVERVIEW}"
    body, signature = sales_token.split(".")
    tampered = f"{body[:-2]}AA.{signature}"
    with running_emulator() as other:
        foreign = embed_token(other, [SALES_OVERVIEW])
    for headers in (
        {},
        {"Authorization": f"Bearer {sales_token}"},
        {"Authorization": "EmbedToken"},
        {"Authorization": "EmbedToken garbage"},
        {"Authorization": f"EmbedToken {tampered}"},
        {"Authorization": f"EmbedToken {foreign}"},
    ):
        assert_error(http.get(url, headers=headers), 403, "PowerBINotAuthorizedException")
        response = http.post(f"{url}/query", headers=headers, json={"page": "x", "visual": "y"})
        assert_error(response, 403, "PowerBINotAuthorizedException")

    # The token is for two reports, not the third.
    response = query(shared_emulator, sales_token, REGIONAL, "regionRevenue")
    assert_error(response, 403, "PowerBINotAuthorizedException")
    assert_error(
        http.get(
            "/emulator/api/reports/00000000-0000-0000-0000-000000000000",
            headers={"Authorization": f"EmbedToken {sales_token}"},
        ),
        404,
        "PowerBIEntityNotFound",
    )
    assert_error(
        query(shared_emulator, sales_token, SALES_OVERVIEW, "nothing"), 404, "PowerBIEntityNotFound"
    )
    assert_error(
        query(shared_emulator, sales_token, SALES_OVERVIEW, "totalRevenue", page="P9"),
        404,
        "PowerBIEntityNotFound",
    )


def test_expired_embed_token_is_refused() -> None:
    # Long enough that a busy machine still uses the token once before it dies.
    with running_emulator(token_lifetime_seconds=3) as emu:
        token = embed_token(emu, [SALES_OVERVIEW])
        assert rows(query(emu, token, SALES_OVERVIEW, "totalRevenue"))
        time.sleep(max(0.0, unverified_claims(token)["exp"] - time.time()) + 0.05)
        expected = {
            "error": {
                "code": "TokenExpired",
                "message": "Access token has expired, resubmit with a new access token",
            }
        }
        for response in (
            query(emu, token, SALES_OVERVIEW, "totalRevenue"),
            emu.http.get(
                f"/emulator/api/reports/{SALES_OVERVIEW}",
                headers={"Authorization": f"EmbedToken {token}"},
            ),
        ):
            assert response.status_code == 403
            assert response.json() == expected
        fresh = embed_token(emu, [SALES_OVERVIEW])
        assert rows(query(emu, fresh, SALES_OVERVIEW, "totalRevenue"))


def test_paused_capacity_answers_503(emulator: Emulator) -> None:
    token = embed_token(emulator, [SALES_OVERVIEW])
    arm = emulator.arm_headers()
    definition_url = f"/emulator/api/reports/{SALES_OVERVIEW}"
    auth = {"Authorization": f"EmbedToken {token}"}
    emulator.http.post(f"{emulator.capacity_path}/suspend", params=API, headers=arm)
    # Suspending already stops the data; so does paused.
    for _ in range(2):
        assert_error(emulator.http.get(definition_url, headers=auth), 503, "CapacityNotActive")
        response = query(emulator, token, SALES_OVERVIEW, "totalRevenue")
        assert_error(response, 503, "CapacityNotActive")
        assert response.json()["error"]["message"] == (
            "Capacity operation failed with error code CapacityNotActive"
        )
        time.sleep(0.35)
    assert emulator.stats()["capacities"][emulator.settings.capacity_name]["state"] == "Paused"
    emulator.http.post(f"{emulator.capacity_path}/resume", params=API, headers=arm)
    time.sleep(0.35)
    assert emulator.http.get(definition_url, headers=auth).status_code == 200
    assert rows(query(emulator, token, SALES_OVERVIEW, "totalRevenue"))


def test_queries_are_counted(emulator: Emulator) -> None:
    token = embed_token(emulator, [SALES_OVERVIEW])
    for _ in range(3):
        rows(query(emulator, token, SALES_OVERVIEW, "totalRevenue"))
    stats = emulator.stats()
    assert stats["dataQueries"] == 3
    assert stats["generateTokenCalls"] == 1
    assert stats["embedTokensIssued"] == 1
    assert stats["entraTokensIssued"] == 1
