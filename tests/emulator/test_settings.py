"""Emulator settings: documented defaults, environment variables, validation, describe()."""

from __future__ import annotations

import pydantic
import pytest

from embedportal.emulator.settings import EmulatorSettings


def make(**values: object) -> EmulatorSettings:
    return EmulatorSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("EMBEDPORTAL_EMULATOR_"):
            monkeypatch.delenv(name)
    settings = make()
    assert settings.tenant_id == "00000000-0000-0000-0000-0000000e0001"
    assert settings.client_id == "00000000-0000-0000-0000-0000000e0002"
    assert settings.client_secret == "embedportal-emulator-secret"
    assert settings.subscription_id == "00000000-0000-0000-0000-0000000e0003"
    assert settings.resource_group == "embedportal-demo"
    assert settings.capacity_name == "embedportaldemo"
    assert settings.token_lifetime_seconds == 3600
    assert settings.capacity_transition_seconds == 3.0
    assert (settings.entra_min_lifetime_seconds, settings.entra_max_lifetime_seconds) == (
        3600,
        5400,
    )
    assert settings.request_budget == 0
    assert settings.public_url is None
    assert len(settings.signing_key.get_secret_value()) >= 32
    assert make().signing_key != settings.signing_key  # random per process (per instance)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS", "90")
    monkeypatch.setenv("EMBEDPORTAL_EMULATOR_CAPACITY_NAME", "mycapacity")
    monkeypatch.setenv("EMBEDPORTAL_EMULATOR_PUBLIC_URL", "http://localhost:8001/")
    monkeypatch.setenv("EMBEDPORTAL_EMULATOR_TENANT_ID", "AAAAAAAA-0000-0000-0000-000000000001")
    settings = make()
    assert settings.token_lifetime_seconds == 90
    assert settings.capacity_name == "mycapacity"
    assert settings.public_url == "http://localhost:8001"
    assert settings.tenant_id == "aaaaaaaa-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    "values",
    [
        {"capacity_name": "My-Capacity"},
        {"capacity_name": "9lives"},
        {"capacity_name": "ab"},
        {"token_lifetime_seconds": 0.5},
        {"capacity_transition_seconds": -1},
        {"entra_min_lifetime_seconds": 10, "entra_max_lifetime_seconds": 5},
        {"request_budget": -1},
        {"request_budget_window_seconds": 0},
        {"tenant_id": "contoso"},
        {"public_url": "ftp://example.com"},
        {"public_url": "http://example.com/?x=1"},
        {"signing_key": "short"},
        {"client_secret": ""},
    ],
)
def test_invalid_values(values: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        make(**values)


def test_describe_shows_identities_but_never_the_signing_key() -> None:
    settings = make(signing_key="k" * 40, request_budget=10)
    text = "\n".join(settings.describe())
    for shown in (
        settings.tenant_id,
        settings.client_id,
        settings.client_secret,
        settings.subscription_id,
        settings.resource_group,
        settings.capacity_name,
        "10 requests per 60 s",
    ):
        assert shown in text
    assert "k" * 40 not in text
    assert "k" * 40 not in repr(settings)
    assert settings.capacity_resource_id == (
        f"/subscriptions/{settings.subscription_id}/resourceGroups/embedportal-demo"
        "/providers/Microsoft.PowerBIDedicated/capacities/embedportaldemo"
    )
