"""Plain, immutable records of what the Power BI and ARM APIs return, and what GenerateToken takes.

Parsing is strict about the fields we rely on (a missing ``id`` is a PowerBIProtocolError) and
lenient about everything else (unknown fields are ignored; optional ones default to None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from embedportal.powerbi.errors import PowerBIProtocolError


def _require_str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise PowerBIProtocolError(f"{what}: field {key!r} is missing or not a string")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    return value if isinstance(value, bool) else False


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PowerBIProtocolError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_utc(value: Any, what: str) -> datetime:
    """An aware UTC datetime from an ISO-8601 string (``Z``, offsets and .NET's 7-digit
    fractions are fine; no offset means UTC, as Power BI documents ``expiration`` to be)."""
    if not isinstance(value, str) or not value:
        raise PowerBIProtocolError(f"{what}: expected an ISO-8601 date-time, got {value!r}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise PowerBIProtocolError(f"{what}: not an ISO-8601 date-time: {value!r}") from error
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Workspace:
    """A Power BI workspace (API name: group)."""

    id: str
    name: str
    is_on_dedicated_capacity: bool
    capacity_id: str | None

    @classmethod
    def from_api(cls, data: Any) -> Workspace:
        obj = _mapping(data, "workspace")
        return cls(
            id=_require_str(obj, "id", "workspace"),
            name=_optional_str(obj, "name") or "",
            is_on_dedicated_capacity=_bool(obj, "isOnDedicatedCapacity"),
            capacity_id=_optional_str(obj, "capacityId"),
        )


@dataclass(frozen=True, slots=True)
class PowerBICapacity:
    """A capacity as Power BI lists it (``GET /v1.0/myorg/capacities``).

    ``state`` is Power BI's word (``Active``, ``Suspended``, ``NotActivated``…), not ARM's.
    Compare ``id`` with a workspace's ``capacity_id`` case-insensitively: Power BI spells the
    same id in capitals in one place and in lower case in the other."""

    id: str
    display_name: str
    sku: str
    state: str
    region: str
    admins: tuple[str, ...] = ()
    user_access_right: str = ""

    @property
    def is_active(self) -> bool:
        return self.state == "Active"

    @classmethod
    def from_api(cls, data: Any) -> PowerBICapacity:
        obj = _mapping(data, "capacity")
        admins = obj.get("admins")
        return cls(
            id=_require_str(obj, "id", "capacity"),
            display_name=_optional_str(obj, "displayName") or "",
            sku=_optional_str(obj, "sku") or "",
            state=_optional_str(obj, "state") or "",
            region=_optional_str(obj, "region") or "",
            admins=tuple(a for a in admins if isinstance(a, str))
            if isinstance(admins, list)
            else (),
            user_access_right=_optional_str(obj, "capacityUserAccessRight") or "",
        )


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """A report; ``embed_url`` is what powerbi-client's embed configuration takes."""

    id: str
    name: str
    embed_url: str
    dataset_id: str | None
    workspace_id: str
    web_url: str | None

    @classmethod
    def from_api(cls, data: Any, *, workspace_id: str) -> ReportInfo:
        obj = _mapping(data, "report")
        return cls(
            id=_require_str(obj, "id", "report"),
            name=_optional_str(obj, "name") or "",
            embed_url=_require_str(obj, "embedUrl", "report"),
            dataset_id=_optional_str(obj, "datasetId"),
            workspace_id=workspace_id,
            web_url=_optional_str(obj, "webUrl"),
        )


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset (semantic model). With ``is_effective_identity_required`` (RLS), GenerateToken
    must carry an identity for it; with ``..._roles_required`` that identity needs roles."""

    id: str
    name: str
    is_effective_identity_required: bool
    is_effective_identity_roles_required: bool

    @classmethod
    def from_api(cls, data: Any) -> DatasetInfo:
        obj = _mapping(data, "dataset")
        return cls(
            id=_require_str(obj, "id", "dataset"),
            name=_optional_str(obj, "name") or "",
            is_effective_identity_required=_bool(obj, "isEffectiveIdentityRequired"),
            is_effective_identity_roles_required=_bool(obj, "isEffectiveIdentityRolesRequired"),
        )


@dataclass(frozen=True, slots=True)
class EffectiveIdentity:
    """The row-level-security identity an embed token carries for some datasets."""

    username: str
    roles: Sequence[str] = ()
    datasets: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("EffectiveIdentity.username must not be empty")
        if isinstance(self.roles, str) or isinstance(self.datasets, str):
            raise TypeError("roles and datasets are sequences of strings, not a string")
        # Store tuples so the identity is hashable and cannot change under a cache key.
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "datasets", tuple(self.datasets))

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"username": self.username, "datasets": list(self.datasets)}
        if self.roles:
            body["roles"] = list(self.roles)
        return body


@dataclass(frozen=True, slots=True)
class EmbedToken:
    """An embed token. ``token`` is a bearer secret and never shows in ``repr``;
    ``expiration`` is an aware UTC datetime."""

    token: str = field(repr=False)
    token_id: str
    expiration: datetime

    def seconds_remaining(self, now: datetime | None = None) -> float:
        return (self.expiration - (now or datetime.now(UTC))).total_seconds()

    @classmethod
    def from_api(cls, data: Any) -> EmbedToken:
        obj = _mapping(data, "embed token")
        return cls(
            token=_require_str(obj, "token", "embed token"),
            token_id=_require_str(obj, "tokenId", "embed token"),
            expiration=parse_utc(obj.get("expiration"), "embed token expiration"),
        )


@dataclass(frozen=True, slots=True)
class CapacityInfo:
    """A Power BI Embedded capacity as ARM describes it.

    ``state``: ``Succeeded`` means running; ``Paused``/``Suspended`` off; ``Pausing``,
    ``Resuming``, ``Scaling``, ``Updating``, ``Provisioning``… in between."""

    name: str
    state: str
    provisioning_state: str
    sku_name: str
    sku_tier: str

    @property
    def is_running(self) -> bool:
        return self.state in ("Succeeded", "Active")

    @property
    def is_paused(self) -> bool:
        return self.state in ("Paused", "Suspended")

    @classmethod
    def from_api(cls, data: Any) -> CapacityInfo:
        obj = _mapping(data, "capacity")
        properties = _mapping(obj.get("properties", {}), "capacity properties")
        sku = _mapping(obj.get("sku", {}), "capacity sku")
        return cls(
            name=_require_str(obj, "name", "capacity"),
            state=_require_str(properties, "state", "capacity properties"),
            provisioning_state=_optional_str(properties, "provisioningState") or "",
            sku_name=_require_str(sku, "name", "capacity sku"),
            sku_tier=_optional_str(sku, "tier") or "",
        )
