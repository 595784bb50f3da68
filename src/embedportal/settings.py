"""All of embedportal's settings, in one typed class read from EMBEDPORTAL_* variables and `.env`.

Every field carries a description: docs/configuration.md lists them all, and a test fails when
one is missing there.
"""

from __future__ import annotations

import ipaddress
import math
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"
MIN_SECRET_KEY_LENGTH = 32
# A secret's estimated strength (estimated_secret_bits) must reach this many bits outside
# development: 32 random URL-safe characters give about 160, "a" * 32 none, "abcd" * 8 64.
MIN_SECRET_BITS = 128
# What zlib adds to any input (header, checksum, block framing): `zlib.compress(b"")` is 8 bytes.
ZLIB_OVERHEAD_BYTES = 8
DEFAULT_POWERBI_API_URL = "https://api.powerbi.com"
# A CSP host source: scheme, host (optionally `*.`-prefixed) and port; nothing that ends it.
CSP_ORIGIN = re.compile(r"https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?")


class UnsafeSettingsError(ValueError):
    """Raised when a production setting would be unsafe (a default or short secret key)."""


def estimated_secret_bits(secret: str) -> float:
    """A rough strength estimate, the lower of two: length × the Shannon entropy of the
    secret's own characters (few different characters score low), and the bits left after
    compressing it (a pattern repeated compresses to almost nothing).

    It cannot prove a secret random, but it catches the usual mistakes (one character repeated,
    a short pattern repeated, a word or two) that a length check lets through."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    length = len(secret)
    per_character = -sum(n / length * math.log2(n / length) for n in counts.values())
    shannon = abs(length * per_character)  # abs: one repeated character gives -0.0
    compressed = len(zlib.compress(secret.encode(), 9)) - ZLIB_OVERHEAD_BYTES
    return min(shannon, 8.0 * max(compressed, 0))


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma- or space-separated addresses and CIDR networks; ValueError names a bad one."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            message = f"“{item}” is not an IP address or network (like 10.0.0.0/8)"
            raise ValueError(message) from None
    return tuple(networks)


GENERATE_HINT = 'e.g. `python -c "import secrets; print(secrets.token_urlsafe(48))"`'


def _is_loopback_host(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def _refuse_guessable(name: str, secret: str) -> None:
    bits = estimated_secret_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise UnsafeSettingsError(
            f"{name} looks guessable (about {bits:.0f} bits where {MIN_SECRET_BITS} are needed: "
            f"too few different characters or a repeated pattern); set a random value "
            f"({GENERATE_HINT})."
        )


def _smtp_alias(name: str) -> AliasChoices:
    """EMBEDPORTAL_MAIL_SMTP_<NAME>, or the shorter EMBEDPORTAL_SMTP_<NAME> many deployments
    already use for their other services."""
    return AliasChoices(f"EMBEDPORTAL_MAIL_SMTP_{name.upper()}", f"EMBEDPORTAL_SMTP_{name.upper()}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMBEDPORTAL_",
        # The SMTP settings have two environment names each (_smtp_alias); in code they are
        # still set by their field names.
        populate_by_name=True,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Literal["development", "production", "test"] = Field(
        "development",
        description="`development` allows the built-in secret key and demo accounts; "
        "`production` refuses unsafe secrets.",
    )
    secret_key: SecretStr = Field(
        SecretStr(DEVELOPMENT_SECRET_KEY),
        description="Signs sessions and encrypts the stored Power BI client secret. "
        "Outside development it must be set, at least 32 characters.",
    )
    data_dir: Path = Field(
        Path("var"),
        description="Folder for the default SQLite database and other local state.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database, e.g. "
        "`postgresql+psycopg://user:pass@host/db`. Default: a SQLite file in `data_dir`.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (`redis://host:6379/0`) for the shared token cache and the push "
        "fan-out when several portal instances run. Default: in-process.",
    )
    capacity_controller: bool = Field(
        True,
        description="Run the capacity controller (idle pause, on-demand start, schedules) in "
        "this instance; with several instances only one acts at a time (a database lease).",
    )
    capacity_controller_seconds: float = Field(
        15.0,
        ge=0.2,
        le=600,
        description="Seconds between the capacity controller's passes.",
    )
    activity_retention_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="Days the capacity activity ledger is kept before it is pruned.",
    )
    redis_prefix: str = Field(
        "embedportal",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key and channel the portal uses, so several portals "
        "can share one Redis server without seeing each other's tokens or pushes.",
    )
    # --- the token API's hot path (docs/token-api.md) ---
    token_concurrency: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Token requests one process works on at once; more wait their turn.",
    )
    token_queue_seconds: float = Field(
        5.0,
        ge=0,
        le=30,
        description="How long a token request waits for its turn before it is answered 503 "
        "with Retry-After (code `Busy`); the wait comes off its wait for Power BI.",
    )
    token_wait_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        description="How long a token request from a viewer that holds a token waits for Power "
        "BI (or another instance's mint of the same token) before it is answered 503 with "
        "Retry-After; the mint goes on.",
    )
    token_first_wait_seconds: float = Field(
        5.0,
        gt=0,
        le=30,
        description="The same for a viewer with no token to show yet (opening a report, "
        "recovering from an expiry).",
    )
    token_lock_seconds: float = Field(
        10.0,
        ge=1,
        le=60,
        description="Expiry of the Redis lock held while one instance mints a token: a minter "
        "that died holds the next token back at most this long.",
    )
    token_error_seconds: float = Field(
        5.0,
        ge=0.5,
        le=300,
        description="How long a Power BI refusal without Retry-After is shared with every "
        "request for the same token before Power BI is asked again.",
    )
    read_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Lifetime of the in-process cache of sessions, access decisions and "
        "settings (changes made through the portal drop it at once; 0 turns it off).",
    )
    read_cache_entries: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Entries the in-process read cache holds at most.",
    )
    telemetry_events_per_minute: int = Field(
        600,
        ge=100,
        le=1_000_000,
        description="Viewer telemetry events one web session may send per minute (a burst of "
        "as many at once); beyond it `/api/telemetry` answers 429 with Retry-After.",
    )
    api_requests_per_minute: int = Field(
        600,
        ge=1,
        le=1_000_000,
        description="Integration API (`/api/v1`) requests one API key may make per minute, "
        "each instance counting its own; beyond it the API answers 429 with Retry-After.",
    )
    api_burst: int = Field(
        50,
        ge=1,
        le=1_000_000,
        description="Integration API requests one API key may make at once, before "
        "`api_requests_per_minute` paces it.",
    )
    api_failed_keys_per_minute: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="Wrong API keys one address may send to `/api/v1` per minute (as many at "
        "once), each instance counting its own; beyond it every call from the address answers "
        "429 TooManyFailedKeys with Retry-After until it regains one.",
    )
    host: str = Field("127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `serve` listens on.")
    emulator_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the built-in emulator started by `serve` (default: port + 1).",
    )
    public_url: str | None = Field(
        None,
        description="The portal's public base URL when it runs behind a proxy "
        "(used for secure cookies and links).",
    )
    trusted_proxies: str | None = Field(
        None,
        description="Addresses or networks (comma-separated, e.g. `127.0.0.1, 10.0.0.0/8`) of "
        "the reverse proxies in front of the portal. Only a request from one of them has its "
        "client address taken from `X-Forwarded-For`; default none: the connection's own "
        "address.",
    )
    secure_cookies: bool = Field(
        False,
        description="Mark every cookie `Secure` even when the portal sees plain HTTP and the "
        "public URL is not `https://` (they are `Secure` anyway when it is).",
    )
    frame_ancestors: str = Field(
        "'self'",
        description="Who may show the portal in a frame (CSP `frame-ancestors`): `'self'`, "
        "`'none'`, or space-separated origins such as `https://intranet.example.com`.",
    )
    sso_frame_ancestors: str | None = Field(
        None,
        description="The origins of your own applications that may frame the portal's pages "
        "for a session opened by a single sign-on link (space-separated, e.g. "
        "`https://app.example.com`); other sessions keep `EMBEDPORTAL_FRAME_ANCESTORS`.",
    )
    sso_session_minutes: int = Field(
        480,
        ge=5,
        le=24 * 60,
        description="A session opened by a single sign-on link ends this many minutes after it "
        "began, however much it is used: about as long as the sessions of the application "
        "that issued the link.",
    )
    report_frame_origins: str | None = Field(
        None,
        description="Further origins report frames may load from (CSP `frame-src`, "
        "space-separated), e.g. a sovereign cloud's `https://app.powerbigov.us`.",
    )
    hsts_max_age_seconds: int = Field(
        31_536_000,
        ge=0,
        le=63_072_000,
        description="`Strict-Transport-Security` max-age sent when the portal is served over "
        "https; 0 sends none.",
    )
    builtin_emulator: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Whether `serve` starts the built-in Power BI emulator: `auto` only in "
        "development and test while no Power BI credentials are set; `on` also in production "
        "(never with the emulator's published secret); `off` never.",
    )
    emulator_url: str | None = Field(
        None,
        description="Base URL of the Power BI emulator standing in while no real connection "
        "is configured; `serve` sets it when it starts the built-in one. A connection entered "
        "in Admin → Settings is never sent there.",
    )
    powerbi_tenant_id: str | None = Field(
        None, description="Entra tenant id of the service principal that calls Power BI."
    )
    powerbi_client_id: str | None = Field(
        None, description="Application (client) id of the service principal."
    )
    powerbi_client_secret: SecretStr | None = Field(
        None,
        description="Client secret of the service principal. When tenant, client id and secret "
        "are all set, `serve` starts no emulator.",
    )
    powerbi_workspace_id: str | None = Field(
        None,
        description="Power BI workspace (group) id whose reports the portal syncs; unset: every "
        "workspace the service principal can see.",
    )
    powerbi_authority_host: str = Field(
        "https://login.microsoftonline.com", description="Entra authority host."
    )
    powerbi_api_url: str = Field(DEFAULT_POWERBI_API_URL, description="Power BI REST base URL.")
    arm_url: str = Field(
        "https://management.azure.com", description="Azure Resource Manager base URL."
    )
    capacity_subscription_id: str | None = Field(
        None, description="Azure subscription id of the Power BI Embedded capacity."
    )
    capacity_resource_group: str | None = Field(None, description="Resource group of the capacity.")
    capacity_name: str | None = Field(None, description="Name of the capacity in Azure.")
    session_idle_minutes: int = Field(
        480,
        ge=1,
        le=60 * 24 * 90,
        description="A session unused for this many minutes ends (sign in again). "
        "TV screens stay signed in while their viewer is open.",
    )
    session_lifetime_days: int = Field(
        30,
        ge=1,
        le=400,
        description="A session ends this many days after sign-in however much it is used "
        "(besides the idle timeout).",
    )
    login_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Wrong passwords in a row for one account from one client address before "
        "that address must wait (a minute, then twice as long after each further one).",
    )
    login_lockout_minutes: int = Field(
        30,
        ge=1,
        le=24 * 60,
        description="The longest wait between sign-in attempts for one account from one address.",
    )
    login_address_max_failures: int = Field(
        50,
        ge=1,
        le=100_000,
        description="Failed sign-ins one client address may make in an hour, over all "
        "e-mail addresses, before it must wait for the hour to end (an account it has signed in "
        "to before is not held back).",
    )
    login_account_max_failures: int = Field(
        100,
        ge=1,
        le=100,
        description="Failed sign-ins one account may have in an hour, from all addresses "
        "together, before only the addresses it signed in from before may try it until the "
        "hour ends.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, `/metrics` answers only requests with "
        "`Authorization: Bearer <this token>`. Unset, in production `/metrics` answers only "
        "direct connections from the machine itself; elsewhere anyone who reaches the portal.",
    )
    default_language: Literal["en", "pt_BR"] = Field(
        "en", description="UI language when neither the user nor the browser picks one."
    )
    demo: bool = Field(
        True,
        description="With the built-in emulator in development, create the demo accounts and "
        "grants at start so the quick start shows reports at once.",
    )
    # --- Fleet, faults and observability -------------------------------------------------
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text` for people at a terminal; `json` writes one JSON object per line "
        "(with the request id) for a log collector. Tokens, cookies and secrets are never logged.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The least severe log level written."
    )
    health_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=10,
        description="How long `/healthz` waits for each dependency (database, Redis, Power BI) "
        "before naming it down.",
    )
    health_cache_seconds: float = Field(
        1.5,
        ge=0,
        le=60,
        description="`/healthz` reuses its last check for this long, so a flood of probes "
        "costs one check.",
    )
    audit_retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Audit entries older than this many days are deleted (checked hourly); "
        "0 keeps every entry.",
    )

    # --- E-mail (docs/configuration.md, "E-mail") ------------------------------------------
    mail_smtp_host: str | None = Field(
        None,
        description="SMTP server that sends the portal's e-mail (invitations, password reset "
        "links, notices of a changed password). Unset: in development and test each mail is "
        "written to the log and shown in Admin → Outbox; in production mails wait in the outbox.",
        validation_alias=_smtp_alias("host"),
    )
    mail_smtp_port: int = Field(
        587,
        ge=1,
        le=65535,
        description="Port of the SMTP server (587 for STARTTLS, 465 for SSL).",
        validation_alias=_smtp_alias("port"),
    )
    mail_smtp_security: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="How the connection to the SMTP server is encrypted: `starttls` (upgrade a "
        "plain connection), `ssl` (TLS from the start) or `none` (only in development, or to a "
        "server on the machine itself without a password).",
        validation_alias=_smtp_alias("security"),
    )
    mail_smtp_user: str | None = Field(
        None,
        description="User name for SMTP authentication; unset: no authentication.",
        validation_alias=_smtp_alias("user"),
    )
    mail_smtp_password: SecretStr | None = Field(
        None,
        description="Password for SMTP authentication.",
        validation_alias=_smtp_alias("password"),
    )
    mail_smtp_timeout_seconds: float = Field(
        20.0,
        gt=0,
        le=300,
        description="How long one conversation with the SMTP server may take.",
        validation_alias=_smtp_alias("timeout_seconds"),
    )
    mail_from: str | None = Field(
        None,
        description="The sender of every mail, e.g. `Reports <reports@example.com>`; required "
        "with an SMTP server.",
    )
    mail_sender: bool = Field(
        True,
        description="Send the outbox's mails from this instance; with several instances each "
        "mail is still sent once (a claimed row).",
    )
    mail_send_seconds: float = Field(
        5.0, ge=0.2, le=600, description="Seconds between the mail sender's passes."
    )
    mail_max_attempts: int = Field(
        8,
        ge=1,
        le=50,
        description="Attempts at sending one mail (waiting 30 seconds, then twice as long "
        "after each failure, at most an hour) before it is marked failed.",
    )
    invitation_hours: int = Field(
        72,
        ge=1,
        le=24 * 30,
        description="Hours an invitation link (a new user sets their first password) stays valid.",
    )
    password_reset_minutes: int = Field(
        60,
        ge=5,
        le=24 * 60,
        description="Minutes a password reset link stays valid.",
    )
    password_reset_account_per_hour: int = Field(
        3,
        ge=1,
        le=100,
        description="Password reset mails one e-mail address may be sent per hour; further "
        "requests get the same answer and send nothing.",
    )
    password_reset_address_per_hour: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Password reset requests one client address may make per hour, over all "
        "e-mail addresses.",
    )

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_metrics_token_is_unset(cls, value: object) -> object:
        # `EMBEDPORTAL_METRICS_TOKEN=` must not mean "the empty bearer token".
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    @field_validator("emulator_url")
    @classmethod
    def _emulator_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not CSP_ORIGIN.fullmatch(value.strip().rstrip("/")):
            raise ValueError("give the emulator's base URL, e.g. http://127.0.0.1:8001")
        return value.strip().rstrip("/")

    @field_validator("frame_ancestors", "report_frame_origins", "sso_frame_ancestors")
    @classmethod
    def _csp_sources(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # The value goes into a header as it is: only plain sources, never a `;` that would
        # start a directive of its own.
        keywords = ("'self'", "'none'") if info.field_name == "frame_ancestors" else ()
        sources = value.split()
        for source in sources:
            if source not in keywords and not CSP_ORIGIN.fullmatch(source):
                raise ValueError(
                    f"{source!r} is not an origin such as https://intranet.example.com"
                    + (" (or 'self' / 'none')" if keywords else "")
                )
        if info.field_name == "frame_ancestors":
            if not sources:
                raise ValueError("name at least one source, e.g. 'self'")
            if "'none'" in sources and len(sources) > 1:
                raise ValueError("'none' stands alone")
        return " ".join(sources)

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> Settings:
        if self.environment == "development":
            return self
        key = self.secret_key.get_secret_value()
        if key == DEVELOPMENT_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH:
            raise UnsafeSettingsError(
                "EMBEDPORTAL_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters outside development "
                f"({GENERATE_HINT})."
            )
        _refuse_guessable("EMBEDPORTAL_SECRET_KEY", key)
        if self.metrics_token is not None:
            _refuse_guessable("EMBEDPORTAL_METRICS_TOKEN", self.metrics_token.get_secret_value())
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_mail(self) -> Settings:
        if not self.mail_smtp_host:
            return self
        if not self.mail_from:
            raise UnsafeSettingsError(
                "EMBEDPORTAL_MAIL_FROM must be set with EMBEDPORTAL_MAIL_SMTP_HOST "
                "(e.g. `Reports <reports@example.com>`)."
            )
        if self.mail_smtp_password is not None and not self.mail_smtp_user:
            raise UnsafeSettingsError(
                "EMBEDPORTAL_MAIL_SMTP_PASSWORD is set without EMBEDPORTAL_MAIL_SMTP_USER."
            )
        if self.environment == "production" and not self.public_url:
            # Links in mails would otherwise be built from the request's Host header, which
            # whoever asks for a reset link chooses (a link to their own site).
            raise UnsafeSettingsError(
                "EMBEDPORTAL_PUBLIC_URL must be set to send e-mail in production: the links in "
                "invitations and password reset mails lead there."
            )
        if self.environment != "development" and self.mail_smtp_security == "none":
            # A password, or invitation links, in clear text over the network.
            if self.mail_smtp_user or not _is_loopback_host(self.mail_smtp_host):
                raise UnsafeSettingsError(
                    "EMBEDPORTAL_MAIL_SMTP_SECURITY=none is only allowed in development, or "
                    "for an SMTP server on this machine without a password; use `starttls` "
                    "or `ssl`."
                )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str | None) -> str | None:
        if value is not None:
            parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_networks(self.trusted_proxies or "")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'embedportal.db').as_posix()}"

    @property
    def resolved_emulator_port(self) -> int:
        return self.emulator_port or self.port + 1

    @property
    def powerbi_url_to_check(self) -> str | None:
        """The Power BI base URL `/healthz` probes: only when this instance is pointed at one
        (credentials in the environment, or a base URL of its own, such as an emulator)."""
        if self.emulator_url:
            return self.emulator_url
        if self.has_powerbi_credentials or self.powerbi_api_url != DEFAULT_POWERBI_API_URL:
            return self.powerbi_api_url
        return None

    @property
    def has_powerbi_credentials(self) -> bool:
        return bool(
            self.powerbi_tenant_id and self.powerbi_client_id and self.powerbi_client_secret
        )
