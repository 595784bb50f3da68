"""PowerBIConnection and the API records: validation, parsing, and no secrets in repr."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from embedportal.powerbi import (
    CapacityInfo,
    DatasetInfo,
    EffectiveIdentity,
    EmbedToken,
    PowerBIConnection,
    PowerBIProtocolError,
    ReportInfo,
    Workspace,
)
from embedportal.powerbi.entra import AccessToken
from embedportal.settings import Settings
from tests.powerbi.fakes import SECRET, connection


def test_connection_defaults_are_microsoft_public_cloud() -> None:
    conn = PowerBIConnection(tenant_id="t", client_id="c", client_secret=SECRET)
    assert conn.authority_host == "https://login.microsoftonline.com"
    assert conn.api_url == "https://api.powerbi.com"
    assert conn.arm_url == "https://management.azure.com"
    assert not conn.has_capacity


def test_connection_repr_hides_the_secret() -> None:
    conn = connection()
    assert SECRET not in repr(conn)
    assert SECRET not in str(conn)
    assert "client_id='client-0001'" in repr(conn)


def test_connection_normalises_and_validates_urls() -> None:
    conn = connection(api_url="http://127.0.0.1:9000/", authority_host="http://127.0.0.1:9000/")
    assert conn.api_url == "http://127.0.0.1:9000"
    assert conn.authority_host == "http://127.0.0.1:9000"
    assert conn.has_capacity
    with pytest.raises(ValueError, match="authority_host"):
        connection(authority_host="http://host/some/path")
    with pytest.raises(ValueError, match="api_url"):
        connection(api_url="ftp://host")
    with pytest.raises(ValueError, match="client_secret"):
        connection(client_secret="")
    with pytest.raises(ValueError, match="tenant_id"):
        connection(tenant_id="a/b")


def test_connection_from_settings() -> None:
    settings = Settings(
        powerbi_tenant_id="tenant",
        powerbi_client_id="client",
        powerbi_client_secret=SECRET,
        powerbi_authority_host="http://127.0.0.1:8001",
        powerbi_api_url="http://127.0.0.1:8001",
        arm_url="http://127.0.0.1:8001",
        capacity_subscription_id="sub",
        capacity_resource_group="rg",
        capacity_name="cap",
    )
    conn = PowerBIConnection.from_settings(settings)
    assert conn.client_secret == SECRET
    assert conn.api_url == "http://127.0.0.1:8001"
    assert conn.has_capacity
    with pytest.raises(ValueError, match="CLIENT_SECRET"):
        PowerBIConnection.from_settings(Settings())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05.1234567Z", datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2030-01-02T05:04:05+02:00", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_embed_token_expiration_is_parsed_as_aware_utc(text: str, expected: datetime) -> None:
    token = EmbedToken.from_api({"token": "H4sI-secret", "tokenId": "tid", "expiration": text})
    assert token.expiration == expected
    assert token.expiration.tzinfo is not None
    assert token.expiration.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "body",
    [
        {"tokenId": "tid", "expiration": "2030-01-02T03:04:05Z"},
        {"token": "x", "expiration": "2030-01-02T03:04:05Z"},
        {"token": "x", "tokenId": "tid", "expiration": "tomorrow"},
        {"token": "x", "tokenId": "tid"},
        ["not", "an", "object"],
    ],
)
def test_malformed_embed_token_is_a_protocol_error(body: object) -> None:
    with pytest.raises(PowerBIProtocolError):
        EmbedToken.from_api(body)


def test_tokens_never_show_in_repr() -> None:
    embed = EmbedToken("H4sI-secret-embed", "tid", datetime.now(UTC))
    assert "H4sI-secret-embed" not in repr(embed)
    assert "tid" in repr(embed)
    entra = AccessToken("eyJ-secret-entra", 1.0, datetime.now(UTC))
    assert "eyJ-secret-entra" not in repr(entra)


def test_records_parse_api_shapes() -> None:
    ws = Workspace.from_api(
        {"id": "w1", "name": "Sales", "isOnDedicatedCapacity": True, "capacityId": "C1"}
    )
    assert ws == Workspace("w1", "Sales", True, "C1")
    report = ReportInfo.from_api(
        {
            "id": "r1",
            "name": "R",
            "embedUrl": "https://app.powerbi.com/reportEmbed?reportId=r1",
            "datasetId": "d1",
            "webUrl": None,
            "extra": 1,
        },
        workspace_id="w1",
    )
    assert report.workspace_id == "w1" and report.dataset_id == "d1" and report.web_url is None
    dataset = DatasetInfo.from_api(
        {
            "id": "d1",
            "name": "D",
            "isEffectiveIdentityRequired": True,
            "isEffectiveIdentityRolesRequired": False,
        }
    )
    assert dataset.is_effective_identity_required
    assert not dataset.is_effective_identity_roles_required
    capacity = CapacityInfo.from_api(
        {
            "name": "cap1",
            "sku": {"name": "A1", "tier": "PBIE_Azure"},
            "properties": {"state": "Paused", "provisioningState": "Succeeded"},
        }
    )
    assert capacity.is_paused and not capacity.is_running
    with pytest.raises(PowerBIProtocolError):
        ReportInfo.from_api({"id": "r1"}, workspace_id="w1")


def test_effective_identity() -> None:
    identity = EffectiveIdentity("alice@example.com", ["Region North"], ["d1"])
    assert identity.roles == ("Region North",)
    assert hash(identity) == hash(
        EffectiveIdentity("alice@example.com", ("Region North",), ("d1",))
    )
    assert identity.to_api() == {
        "username": "alice@example.com",
        "roles": ["Region North"],
        "datasets": ["d1"],
    }
    assert "roles" not in EffectiveIdentity("bob", (), ["d1"]).to_api()
    with pytest.raises(TypeError):
        EffectiveIdentity("alice", "Region North", ["d1"])
    with pytest.raises(ValueError):
        EffectiveIdentity("", (), ["d1"])
