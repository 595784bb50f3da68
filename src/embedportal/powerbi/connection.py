"""Where Power BI, Entra ID and Azure Resource Manager live, and who we are to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from embedportal.settings import Settings

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_API_URL = "https://api.powerbi.com"
DEFAULT_ARM_URL = "https://management.azure.com"

POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"
ARM_SCOPE = "https://management.azure.com/.default"

# The two Azure resource providers a capacity can belong to: Power BI Embedded (A and EM SKUs)
# and Fabric (F SKUs). P SKUs are bought with Microsoft 365 and have no ARM resource.
CapacityProvider = Literal["Microsoft.PowerBIDedicated", "Microsoft.Fabric"]
POWERBI_DEDICATED: CapacityProvider = "Microsoft.PowerBIDedicated"
FABRIC: CapacityProvider = "Microsoft.Fabric"
CAPACITY_PROVIDERS: tuple[CapacityProvider, ...] = get_args(CapacityProvider)


def provider_for_sku(sku: str | None) -> CapacityProvider | None:
    """The provider a SKU name belongs to (F → Fabric; A, EM → Power BI Embedded), or None."""
    name = (sku or "").strip().upper()
    if name.startswith("F"):
        return FABRIC
    if name.startswith(("A", "EM")):
        return POWERBI_DEDICATED
    return None


@dataclass(frozen=True, slots=True)
class CapacityCoordinates:
    """Where a capacity lives in Azure: subscription, resource group, resource name, provider.

    Only checked for completeness here; the inventory validates what an administrator enters.
    """

    subscription_id: str
    resource_group: str
    name: str
    provider: CapacityProvider = POWERBI_DEDICATED

    def __post_init__(self) -> None:
        for attribute in ("subscription_id", "resource_group", "name"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"CapacityCoordinates.{attribute} must not be empty")
        if self.provider not in CAPACITY_PROVIDERS:
            raise ValueError(
                f"CapacityCoordinates.provider must be one of {', '.join(CAPACITY_PROVIDERS)}, "
                f"got {self.provider!r}"
            )

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{self.provider}/capacities/{self.name}"
        )


def is_guid(value: str) -> bool:
    """A Microsoft id in its usual spelling: 36 characters, hex groups joined by dashes."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _normalise_base_url(name: str, value: str, *, allow_path: bool) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not carry a query or fragment, got {value!r}")
    path = parts.path.rstrip("/")
    if path and not allow_path:
        raise ValueError(f"{name} must be a scheme and host only (no path), got {value!r}")
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True, slots=True)
class PowerBIConnection:
    """Credentials of the service principal plus the base URLs of the three services.

    The defaults are Microsoft's public cloud. Pointing the URLs at the built-in emulator (plain
    http is fine) gives the same code path locally. ``client_secret`` never shows in ``repr``.
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority_host: str = DEFAULT_AUTHORITY_HOST
    api_url: str = DEFAULT_API_URL
    arm_url: str = DEFAULT_ARM_URL
    subscription_id: str | None = None
    resource_group: str | None = None
    capacity_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("tenant_id", "client_id", "client_secret"):
            if not getattr(self, name):
                raise ValueError(f"PowerBIConnection.{name} must not be empty")
        if "/" in self.tenant_id or self.tenant_id != self.tenant_id.strip():
            raise ValueError(f"PowerBIConnection.tenant_id is not a tenant id: {self.tenant_id!r}")
        object.__setattr__(
            self,
            "authority_host",
            _normalise_base_url("authority_host", self.authority_host, allow_path=False),
        )
        object.__setattr__(
            self, "api_url", _normalise_base_url("api_url", self.api_url, allow_path=True)
        )
        object.__setattr__(
            self, "arm_url", _normalise_base_url("arm_url", self.arm_url, allow_path=True)
        )

    @property
    def has_capacity(self) -> bool:
        """True when subscription, resource group and capacity name are all set."""
        return bool(self.subscription_id and self.resource_group and self.capacity_name)

    @property
    def capacity(self) -> CapacityCoordinates | None:
        """The ``EMBEDPORTAL_CAPACITY_*`` capacity (a Power BI Embedded one), when all set."""
        if not (self.subscription_id and self.resource_group and self.capacity_name):
            return None
        return CapacityCoordinates(self.subscription_id, self.resource_group, self.capacity_name)

    @classmethod
    def from_settings(cls, settings: Settings) -> PowerBIConnection:
        """The connection described by ``EMBEDPORTAL_POWERBI_*`` / ``EMBEDPORTAL_ARM_URL`` /
        ``EMBEDPORTAL_CAPACITY_*``. Raises ValueError when tenant, client id or secret is unset."""
        secret = settings.powerbi_client_secret
        if not (settings.powerbi_tenant_id and settings.powerbi_client_id and secret):
            raise ValueError(
                "EMBEDPORTAL_POWERBI_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET must all be set"
            )
        # An emulator standing in (`serve`'s built-in one) answers for the environment's
        # identity, which is then its own.
        emulator = settings.emulator_url
        return cls(
            tenant_id=settings.powerbi_tenant_id,
            client_id=settings.powerbi_client_id,
            client_secret=secret.get_secret_value(),
            authority_host=emulator or settings.powerbi_authority_host,
            api_url=emulator or settings.powerbi_api_url,
            arm_url=emulator or settings.arm_url,
            subscription_id=settings.capacity_subscription_id,
            resource_group=settings.capacity_resource_group,
            capacity_name=settings.capacity_name,
        )
