"""Whatever a client sends, the emulator answers a 4xx JSON with a reason, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedportal.emulator.tokens import ARM_SCOPE, POWERBI_SCOPE
from tests.emulator.harness import (
    GROUP,
    REGIONAL,
    REGIONAL_DATASET,
    SALES_OVERVIEW,
    Emulator,
    running_emulator,
)

CODE_ONLY = frozenset({"PowerBIEntityNotFound", "PowerBINotAuthorizedException"})


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Emulator, dict[str, str]]]:
    with running_emulator(capacity_transition_seconds=0.05) as emu:
        token = emu.http.post(
            "/v1.0/myorg/GenerateToken",
            headers=emu.powerbi_headers(),
            json={"reports": [{"id": SALES_OVERVIEW}]},
        ).json()["token"]
        auth = {
            "powerbi": f"Bearer {emu.access_token(POWERBI_SCOPE)}",
            "arm": f"Bearer {emu.access_token(ARM_SCOPE)}",
            "embed": f"EmbedToken {token}",
        }
        yield emu, auth


segment = st.one_of(
    st.sampled_from([GROUP, SALES_OVERVIEW, REGIONAL, REGIONAL_DATASET, "x", "%20", "..", ""]),
    st.text(alphabet="abcXYZ019-_.~", max_size=12),
)
capacity = (
    "/subscriptions/00000000-0000-0000-0000-0000000e0003/resourceGroups/embedportal-demo/"
    "providers/Microsoft.PowerBIDedicated/capacities/embedportaldemo"
)
templates = st.sampled_from(
    [
        "/v1.0/myorg/GenerateToken",
        "/v1.0/myorg/groups",
        "/v1.0/myorg/groups/{0}/reports",
        "/v1.0/myorg/groups/{0}/reports/{1}",
        "/v1.0/myorg/groups/{0}/reports/{1}/GenerateToken",
        "/v1.0/myorg/groups/{0}/datasets/{1}",
        "/emulator/api/reports/{0}",
        "/emulator/api/reports/{0}/query",
        "/emulator/api/capacities/{0}/meter",
        "/{0}/oauth2/v2.0/token",
        "/{0}/v2.0/.well-known/openid-configuration",
        "/common/discovery/instance",
        capacity,
        capacity + "/{0}",
        "/subscriptions/{0}/providers/Microsoft.PowerBIDedicated/locations/{1}/operationresults/{0}",
        "/subscriptions/{0}/{1}",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "reports",
                    "datasets",
                    "identities",
                    "id",
                    "username",
                    "roles",
                    "page",
                    "visual",
                    "filters",
                    "sku",
                    "name",
                    "accessLevel",
                    "lifetimeInMinutes",
                    "target",
                    "values",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=15,
)
bodies = st.one_of(
    st.none(),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]),
    template=templates,
    first=segment,
    second=segment,
    auth=st.sampled_from([None, "powerbi", "arm", "embed", "Bearer x.y.z"]),
    api_version=st.sampled_from([None, "2021-01-01", "2017-10-01", "1999-01-01"]),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", None]
    ),
    body=bodies,
)
def test_no_request_makes_it_fail(
    fuzzed: tuple[Emulator, dict[str, str]],
    method: str,
    template: str,
    first: str,
    second: str,
    auth: str | None,
    api_version: str | None,
    content_type: str | None,
    body: bytes | None,
) -> None:
    emu, tokens = fuzzed
    headers: dict[str, str] = {}
    if auth is not None:
        headers["Authorization"] = tokens.get(auth, auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    params: dict[str, Any] = {} if api_version is None else {"api-version": api_version}
    path = template.format(first, second)
    response = emu.http.request(method, path, headers=headers, params=params, content=body)
    assert response.status_code < 500, (method, path, response.status_code, response.text)
    if response.status_code >= 400:
        answer = response.json()
        assert "error" in answer
        error = answer["error"]
        if isinstance(error, dict) and error.get("code") in CODE_ONLY and "message" not in error:
            return  # the REST API's captured bodies of these carry the code alone
        reason = error.get("message") if isinstance(error, dict) else answer["error_description"]
        assert reason


def test_huge_numbers_are_refused_or_tolerated(fuzzed: tuple[Emulator, dict[str, str]]) -> None:
    emu, tokens = fuzzed
    huge = b"1" * 5000  # past Python's int-to-string limit
    report = SALES_OVERVIEW.encode()
    for method, path, auth, body in (
        (
            "POST",
            "/v1.0/myorg/GenerateToken",
            "powerbi",
            b'{"reports": [{"id": "%s"}], "lifetimeInMinutes": %s}' % (report, huge),
        ),
        (
            "POST",
            "/v1.0/myorg/GenerateToken",
            "powerbi",
            b'{"reports": [{"id": "%s"}], "lifetimeInMinutes": 1%s}' % (report, b"0" * 400),
        ),
        (
            "POST",
            f"/emulator/api/reports/{SALES_OVERVIEW}/query",
            "embed",
            b'{"page": "ReportSection1", "visual": "totalRevenue", "filters": [%s]}' % huge,
        ),
        ("PATCH", capacity, "arm", b'{"sku": %s}' % huge),
    ):
        response = emu.http.request(
            method,
            path,
            params={"api-version": "2021-01-01"},
            headers={"Authorization": tokens[auth], "Content-Type": "application/json"},
            content=body,
        )
        assert response.status_code in (200, 400), response.text
