"""Settings: environment variables with the EMBEDPORTAL_ prefix, and no unsafe production."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from embedportal.settings import DEVELOPMENT_SECRET_KEY, Settings, estimated_secret_bits

# What `secrets.token_urlsafe(48)` gives: 64 characters from an alphabet of 64.
GOOD_KEY = "Xq3v9LrT0bZk_W2mYp7HnE-4sJcA8fUd1gVoQiR5tB6eKyMxNwPaCh0lDzSjuGFI"


def _settings(**values: Any) -> Settings:
    """Settings from the given values and the environment, never from a .env file."""
    return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [
        "EMBEDPORTAL_ENVIRONMENT",
        "EMBEDPORTAL_SECRET_KEY",
        "EMBEDPORTAL_PORT",
        "EMBEDPORTAL_DATABASE_URL",
        "EMBEDPORTAL_LOGIN_MAX_ATTEMPTS",
        "EMBEDPORTAL_METRICS_TOKEN",
        "EMBEDPORTAL_TRUSTED_PROXIES",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("key", [None, DEVELOPMENT_SECRET_KEY, "too-short-a-secret"])
def test_outside_development_the_secret_must_be_set_and_long(
    environment: str, key: str | None
) -> None:
    values: dict[str, object] = {"environment": environment}
    if key is not None:
        values["secret_key"] = key
    with pytest.raises(ValidationError, match="EMBEDPORTAL_SECRET_KEY must be set"):
        _settings(**values)


def test_a_long_random_secret_is_accepted_in_production() -> None:
    settings = _settings(environment="production", secret_key=GOOD_KEY)
    assert settings.secret_key.get_secret_value() == GOOD_KEY
    assert GOOD_KEY not in repr(settings)


def test_development_allows_the_built_in_secret() -> None:
    settings = _settings()
    assert settings.environment == "development"
    assert settings.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDPORTAL_PORT", "9123")
    monkeypatch.setenv("EMBEDPORTAL_LOGIN_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("EMBEDPORTAL_ENVIRONMENT", "production")
    monkeypatch.setenv("EMBEDPORTAL_SECRET_KEY", GOOD_KEY)
    monkeypatch.setenv("PORT", "1")  # unprefixed: ignored
    settings = _settings()
    assert (settings.port, settings.login_max_attempts) == (9123, 7)
    assert settings.environment == "production"


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("EMBEDPORTAL_SESSION_IDLE_MINUTES=15\n")
    assert Settings(_env_file=env_file).session_idle_minutes == 15


def test_the_database_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = _settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/embedportal.db"
    assert settings.resolved_emulator_port == settings.port + 1


@pytest.mark.parametrize(
    "values",
    [{"port": 0}, {"session_idle_minutes": 0}, {"default_language": "fr"}, {"environment": "x"}],
)
def test_out_of_range_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)


@pytest.mark.parametrize(
    "key",
    [
        "a" * 32,
        "a" * 200,
        "abcd" * 8,
        "abcdefgh" * 6,
        "passwordpasswordpasswordpassword",
    ],
)
@pytest.mark.parametrize("environment", ["production", "test"])
def test_a_long_but_guessable_secret_is_refused_naming_the_setting(
    environment: str, key: str
) -> None:
    with pytest.raises(ValidationError, match="EMBEDPORTAL_SECRET_KEY looks guessable"):
        _settings(environment=environment, secret_key=key)


def test_secrets_from_the_documented_generator_are_accepted() -> None:
    for _attempt in range(50):
        _settings(environment="production", secret_key=secrets.token_urlsafe(48))
        _settings(environment="production", secret_key=secrets.token_urlsafe(32))


def test_a_guessable_metrics_token_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="EMBEDPORTAL_METRICS_TOKEN looks guessable"):
        _settings(environment="production", secret_key=GOOD_KEY, metrics_token="x" * 40)
    assert _settings(metrics_token="x" * 40).metrics_token is not None  # development


def test_the_estimate_grows_with_variety_not_only_length() -> None:
    assert estimated_secret_bits("a" * 64) == 0
    assert estimated_secret_bits("ab" * 32) < 128
    assert estimated_secret_bits(GOOD_KEY) > 300


def test_trusted_proxies_are_addresses_and_networks() -> None:
    settings = _settings(trusted_proxies="127.0.0.1, 10.0.0.0/8 ::1")
    assert [str(network) for network in settings.trusted_proxy_networks] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    assert _settings().trusted_proxy_networks == ()
    with pytest.raises(ValidationError, match="“proxy.internal” is not an IP address"):
        _settings(trusted_proxies="10.0.0.1, proxy.internal")


@pytest.mark.parametrize(
    "values",
    [
        {"session_lifetime_days": 0},
        {"session_lifetime_days": 401},
        {"login_account_max_failures": 101},
        {"login_address_max_failures": 0},
        {"login_max_attempts": 0},
    ],
)
def test_sign_in_limits_stay_in_range(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)


SMTP = {"mail_smtp_host": "smtp.example.com", "mail_from": "Reports <reports@example.com>"}
PRODUCTION = {
    "environment": "production",
    "secret_key": GOOD_KEY,
    "public_url": "https://r.example",
}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"mail_smtp_host": "smtp.example.com"}, "EMBEDPORTAL_MAIL_FROM"),
        ({**SMTP, "mail_smtp_password": "secret"}, "EMBEDPORTAL_MAIL_SMTP_USER"),
        ({**SMTP, "mail_smtp_security": "none"}, "EMBEDPORTAL_MAIL_SMTP_SECURITY=none"),
        (
            {
                **SMTP,
                "mail_smtp_host": "127.0.0.1",
                "mail_smtp_security": "none",
                "mail_smtp_user": "portal",
                "mail_smtp_password": "secret",
            },
            "EMBEDPORTAL_MAIL_SMTP_SECURITY=none",
        ),
        ({**SMTP, "public_url": None}, "EMBEDPORTAL_PUBLIC_URL"),
    ],
)
def test_unsafe_mail_settings_are_refused_outside_development(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        _settings(**{**PRODUCTION, **values})


@pytest.mark.parametrize(
    "values",
    [
        {},
        SMTP,
        {**SMTP, "mail_smtp_security": "ssl", "mail_smtp_port": 465},
        {**SMTP, "mail_smtp_user": "portal", "mail_smtp_password": "secret"},
        # A relay on the machine itself, without a password.
        {**SMTP, "mail_smtp_host": "localhost", "mail_smtp_security": "none"},
    ],
)
def test_safe_mail_settings_are_accepted_in_production(values: dict[str, object]) -> None:
    assert _settings(**{**PRODUCTION, **values}).environment == "production"


def test_development_may_send_in_clear_text_to_any_server() -> None:
    settings = _settings(**SMTP, mail_smtp_security="none")
    assert settings.mail_smtp_security == "none"


def test_smtp_settings_answer_to_both_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDPORTAL_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("EMBEDPORTAL_SMTP_PORT", "2525")
    monkeypatch.setenv("EMBEDPORTAL_MAIL_SMTP_USER", "portal")
    monkeypatch.setenv("EMBEDPORTAL_MAIL_FROM", "Reports <reports@example.com>")
    settings = Settings()
    assert settings.mail_smtp_host == "mail.example.com"
    assert settings.mail_smtp_port == 2525
    assert settings.mail_smtp_user == "portal"
    # In code, by the field's name, as everywhere else.
    in_code = Settings(mail_smtp_host="other.example.com", mail_from="r@example.com")
    assert in_code.mail_smtp_host == "other.example.com"
