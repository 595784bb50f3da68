"""Settings of the built-in Power BI emulator (`EMBEDPORTAL_EMULATOR_*`).

The identities have fixed, documented defaults so that anyone can copy them into a client
(`docs/emulator.md`); the signing key is random per process unless set, so tokens minted by one
emulator process are refused by the next.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-0000000e0001"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000e0002"
DEFAULT_CLIENT_SECRET = "embedportal-emulator-secret"
DEFAULT_SUBSCRIPTION_ID = "00000000-0000-0000-0000-0000000e0003"
DEFAULT_RESOURCE_GROUP = "embedportal-demo"
DEFAULT_CAPACITY_NAME = "embedportaldemo"
DEFAULT_FABRIC_CAPACITY_NAME = "embedportalfabric"
DEFAULT_DIRECTORY_PASSWORD = "emulator-directory-password"

PositiveSeconds = Annotated[float, Field(ge=1)]
# Azure's rule for the name of a capacity of either kind.
CapacityName = Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z][a-z0-9]*$")]


class DirectoryUserSetting(BaseModel):
    """A person of the emulated directory: ``workspaces`` lists the Power BI workspace ids (or
    names) they are a member of, ``["*"]`` for all of them; ``rls_roles`` the row-level-security
    roles their own token is filtered by (none: every row)."""

    email: str = Field(min_length=3, max_length=256, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1, max_length=256)
    workspaces: list[str] = Field(default_factory=list)
    rls_roles: list[str] = Field(default_factory=list)


# The demo's people: the portal's demo administrator and viewer, and someone the portal does
# not know (to try a refused first sign-in).
DEFAULT_DIRECTORY_USERS = (
    DirectoryUserSetting(email="admin@example.com", name="Demo administrator", workspaces=["*"]),
    DirectoryUserSetting(
        email="north@example.com",
        name="North region manager",
        workspaces=["Demo workspace"],
        rls_roles=["Region Manager"],
    ),
    DirectoryUserSetting(email="outsider@example.com", name="Someone else", workspaces=[]),
)


def _random_signing_key() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


class EmulatorSettings(BaseSettings):
    """Everything the emulator can be told. Environment variables: `EMBEDPORTAL_EMULATOR_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="EMBEDPORTAL_EMULATOR_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    tenant_id: str = Field(DEFAULT_TENANT_ID, description="Entra tenant (directory) id.")
    client_id: str = Field(DEFAULT_CLIENT_ID, description="The service principal's client id.")
    client_secret: str = Field(
        DEFAULT_CLIENT_SECRET, min_length=1, description="The service principal's secret."
    )
    subscription_id: str = Field(DEFAULT_SUBSCRIPTION_ID, description="Azure subscription id.")
    resource_group: str = Field(
        DEFAULT_RESOURCE_GROUP,
        min_length=1,
        max_length=90,
        pattern=r"^[-\w._()]+$",
        description="Resource group holding the capacity.",
    )
    capacity_name: CapacityName = Field(
        DEFAULT_CAPACITY_NAME,
        description="Name of the Power BI Embedded capacity (ARM resource name).",
    )
    fabric_capacity_name: CapacityName = Field(
        DEFAULT_FABRIC_CAPACITY_NAME,
        description="Name of the second capacity, a Fabric one (ARM resource name).",
    )
    token_lifetime_seconds: PositiveSeconds = Field(
        3600.0, description="Longest embed-token lifetime (the real service: about an hour)."
    )
    capacity_transition_seconds: float = Field(
        3.0, ge=0, description="How long suspend, resume and scale operations take."
    )
    entra_min_lifetime_seconds: PositiveSeconds = Field(
        3600.0, description="Shortest Entra access-token lifetime (Entra: 60 minutes)."
    )
    entra_max_lifetime_seconds: PositiveSeconds = Field(
        5400.0, description="Longest Entra access-token lifetime (Entra: 90 minutes)."
    )
    token_hook_lead_seconds: float = Field(
        600.0,
        ge=0,
        description=(
            "How long before a person's Entra token expires the report asks its host for a new "
            "one (eventHooks.accessTokenProvider)."
        ),
    )
    request_budget: int = Field(
        0, ge=0, description="Power BI REST requests allowed per window per client; 0: no limit."
    )
    request_budget_window_seconds: float = Field(
        60.0, gt=0, description="The window the request budget counts over."
    )
    signing_key: SecretStr = Field(
        default_factory=_random_signing_key,
        description="HMAC key for Entra and embed tokens (random per process by default).",
    )
    directory_users: list[DirectoryUserSetting] = Field(
        default_factory=lambda: list(DEFAULT_DIRECTORY_USERS),
        description="The people who may sign in on the emulated Entra page (JSON list).",
    )
    directory_password: str = Field(
        DEFAULT_DIRECTORY_PASSWORD,
        min_length=1,
        description="The password of every person of the emulated directory.",
    )
    redirect_uris: list[str] = Field(
        default_factory=list,
        description=(
            "The app registration's redirect URIs (JSON list), matched exactly; empty: any "
            "loopback http(s) URI."
        ),
    )
    public_url: str | None = Field(
        None,
        description="Base URL clients reach the emulator on; default: the request's base URL.",
    )

    @field_validator("tenant_id", "client_id", "subscription_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError(f"must be a UUID, got {value!r}") from None

    @field_validator("signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"must not carry a query or fragment, got {value!r}")
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @model_validator(mode="after")
    def _ordered_lifetimes(self) -> Self:
        if self.entra_min_lifetime_seconds > self.entra_max_lifetime_seconds:
            raise ValueError(
                "entra_min_lifetime_seconds must not exceed entra_max_lifetime_seconds"
            )
        return self

    @model_validator(mode="after")
    def _distinct_capacity_names(self) -> Self:
        if self.capacity_name == self.fabric_capacity_name:
            raise ValueError("capacity_name and fabric_capacity_name must differ")
        return self

    @property
    def capacity_resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.PowerBIDedicated/capacities/{self.capacity_name}"
        )

    @property
    def fabric_capacity_resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Fabric/capacities/{self.fabric_capacity_name}"
        )

    def describe(self) -> list[str]:
        """The lines printed when the emulator starts: who to be, and what there is to manage.

        The client secret is a demo value and is shown; the signing key never is."""
        window = self.request_budget_window_seconds
        budget = (
            f"{self.request_budget} requests per {window:g} s per client"
            if self.request_budget
            else "unlimited"
        )
        lines = [
            f"Tenant id:        {self.tenant_id}",
            f"Client id:        {self.client_id}",
            f"Client secret:    {self.client_secret}",
            f"Subscription id:  {self.subscription_id}",
            f"Resource group:   {self.resource_group}",
            f"Capacity:         {self.capacity_name} (A1, PBIE_Azure, running)",
            f"Fabric capacity:  {self.fabric_capacity_name} (F2, Fabric, running)",
            f"Embed tokens:     at most {self.token_lifetime_seconds:g} s",
            f"Entra tokens:     {self.entra_min_lifetime_seconds:g}-"
            f"{self.entra_max_lifetime_seconds:g} s",
            f"Capacity changes: {self.capacity_transition_seconds:g} s",
            f"Power BI budget:  {budget}",
            "Sign-in people:   "
            + ", ".join(user.email for user in self.directory_users)
            + f" (password {self.directory_password})",
        ]
        if self.public_url:
            lines.append(f"Public URL:       {self.public_url}")
        return lines
