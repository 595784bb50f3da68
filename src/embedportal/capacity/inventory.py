"""The capacity inventory: the Power BI capacities the connection can see, kept in the portal's
database, and where each lives in Azure once an administrator says so.

A sync reads Power BI's capacity list and the workspaces (each names its capacity), records
every capacity (name, SKU, state and region as last seen) and which capacity each report's
workspace is on. A capacity stays "not configured" until its Azure coordinates (subscription,
resource group, resource name, provider) are known: entered by an administrator
(:func:`configure_capacity`), or prefilled by a sync from ``EMBEDPORTAL_CAPACITY_*`` for the
capacity whose name is ``EMBEDPORTAL_CAPACITY_NAME`` (or the only capacity there is). A capacity
no longer listed keeps its row and configuration; its ``seen_at`` tells when it was last there.

Messages (``CapacityInputError.errors``) are English source strings; the page that shows them
translates them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.audit import apply_changes_old_new, record
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, Report, User
from embedportal.i18n import N_
from embedportal.powerbi import (
    CAPACITY_PROVIDERS,
    FABRIC,
    POWERBI_DEDICATED,
    CapacityCoordinates,
    CapacityProvider,
    PowerBICapacity,
    PowerBIClient,
    Workspace,
)
from embedportal.powerbi.connection import is_guid, provider_for_sku
from embedportal.settings import Settings

# Azure's rules: a resource group has 1-90 letters, digits, '_', '-', '.', '(' and ')' and does
# not end with '.'; a Power BI Embedded or Fabric capacity name has 3-63 lower-case letters and
# digits and starts with a letter.
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
_CAPACITY_NAME = re.compile(r"^[a-z][a-z0-9]{2,62}$")
_COORDINATES = ("subscription_id", "resource_group", "resource_name", "provider")


class CapacityInputError(ValueError):
    """What an administrator entered for a capacity is not usable: ``errors`` maps each form
    field to what is wrong with it. Nothing was saved."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = dict(errors)


class UnknownCapacityError(LookupError):
    """No capacity with this id in the inventory (sync the capacities first)."""


@dataclass(frozen=True)
class CapacityInventory:
    """What Power BI says: its capacities and the workspaces (each with its ``capacity_id``)."""

    capacities: Sequence[PowerBICapacity]
    workspaces: Sequence[Workspace]


@dataclass(frozen=True)
class CapacitySyncResult:
    added: int
    updated: int
    unchanged: int
    # Known capacities Power BI no longer lists (kept, with their configuration).
    missing: tuple[str, ...] = ()
    # The capacity that got its Azure coordinates from EMBEDPORTAL_CAPACITY_*, if one did.
    prefilled: str | None = None
    # Reports whose capacity changed (their workspace moved, or it was not known before).
    reports_updated: int = 0
    # The capacities Power BI listed, in its order (lower-case ids).
    capacity_ids: tuple[str, ...] = ()


def normalise_capacity_id(value: str) -> str:
    """Power BI writes capacity ids in capitals on workspaces and in lower case in its capacity
    list: the inventory keys them in lower case."""
    return value.strip().lower()


def coordinates_of(capacity: Capacity) -> CapacityCoordinates | None:
    """The capacity's Azure coordinates for :class:`embedportal.powerbi.CapacityClient`, or
    None while it is not configured."""
    if not (
        capacity.subscription_id
        and capacity.resource_group
        and capacity.resource_name
        and capacity.provider in CAPACITY_PROVIDERS
    ):
        return None
    return CapacityCoordinates(
        subscription_id=capacity.subscription_id,
        resource_group=capacity.resource_group,
        name=capacity.resource_name,
        provider=capacity.provider,
    )


# --- sync ---------------------------------------------------------------------------------------


async def fetch_capacity_inventory(*, client: PowerBIClient) -> CapacityInventory:
    """Read Power BI's capacities and workspaces (raises PowerBIError)."""
    capacities = await client.list_capacities()
    workspaces = await client.list_workspaces()
    return CapacityInventory(capacities=capacities, workspaces=workspaces)


@dataclass(frozen=True)
class _FromSettings:
    subscription_id: str
    resource_group: str
    name: str


def _from_settings(settings: Settings) -> _FromSettings | None:
    subscription = (settings.capacity_subscription_id or "").strip()
    group = (settings.capacity_resource_group or "").strip()
    name = (settings.capacity_name or "").strip()
    if not (subscription and group and name):
        return None
    return _FromSettings(subscription, group, name)


def _prefill_target(
    wanted: _FromSettings, listed: Sequence[PowerBICapacity]
) -> PowerBICapacity | None:
    """The capacity named like EMBEDPORTAL_CAPACITY_NAME, else the only capacity there is."""
    named = [c for c in listed if c.display_name.strip().lower() == wanted.name.lower()]
    if len(named) == 1:
        return named[0]
    if not named and len(listed) == 1:
        return listed[0]
    return None


def _prefill(capacity: Capacity, wanted: _FromSettings) -> bool:
    """Give a not-configured capacity the EMBEDPORTAL_CAPACITY_* coordinates."""
    if any(getattr(capacity, name) for name in _COORDINATES):
        return False
    capacity.subscription_id = wanted.subscription_id
    capacity.resource_group = wanted.resource_group
    capacity.resource_name = wanted.name
    # The settings have always meant a Power BI Embedded capacity; an F SKU is a Fabric one.
    capacity.provider = provider_for_sku(capacity.sku) or POWERBI_DEDICATED
    return True


def apply_capacity_inventory(
    *,
    session: Session,
    inventory: CapacityInventory,
    settings: Settings,
    actor: User | None = None,
) -> CapacitySyncResult:
    """Record the capacities and the reports' capacities, prefill coordinates, audit."""
    known = {capacity.id: capacity for capacity in session.scalars(select(Capacity))}
    now = utcnow()
    added = updated = unchanged = 0
    seen: list[str] = []
    for listed in inventory.capacities:
        capacity_id = normalise_capacity_id(listed.id)
        if not capacity_id or capacity_id in seen:
            continue
        seen.append(capacity_id)
        values = {
            "display_name": listed.display_name[:300],
            "sku": listed.sku[:20],
            "state": listed.state[:40],
            "region": listed.region[:100],
        }
        capacity = known.get(capacity_id)
        if capacity is None:
            capacity = Capacity(id=capacity_id, seen_at=now, **values)
            session.add(capacity)
            known[capacity_id] = capacity
            added += 1
            continue
        if any(getattr(capacity, name) != value for name, value in values.items()):
            updated += 1
        else:
            unchanged += 1
        for name, value in values.items():
            setattr(capacity, name, value)
        capacity.seen_at = now

    prefilled: str | None = None
    wanted = _from_settings(settings)
    target = None if wanted is None else _prefill_target(wanted, inventory.capacities)
    if wanted is not None and target is not None:
        capacity = known[normalise_capacity_id(target.id)]
        if _prefill(capacity, wanted):
            prefilled = capacity.id
            detail = {"source": "environment", **_coordinates_detail(capacity)}
            _audit_configured(session=session, actor=actor, capacity=capacity, detail=detail)

    reports_updated = _assign_reports(session, inventory.workspaces)
    missing = tuple(sorted(set(known) - set(seen)))
    session.flush()
    result = CapacitySyncResult(
        added=added,
        updated=updated,
        unchanged=unchanged,
        missing=missing,
        prefilled=prefilled,
        reports_updated=reports_updated,
        capacity_ids=tuple(seen),
    )
    record(
        session=session,
        actor=actor,
        action="capacities.synced",
        target_type="capacities",
        detail={
            "added": added,
            "updated": updated,
            "unchanged": unchanged,
            "missing": list(missing),
            "reports_updated": reports_updated,
        },
    )
    return result


def _assign_reports(session: Session, workspaces: Sequence[Workspace]) -> int:
    """Each report of a listed workspace gets that workspace's capacity."""
    by_workspace = {
        w.id.lower(): normalise_capacity_id(w.capacity_id) if w.capacity_id else None
        for w in workspaces
    }
    changed = 0
    for report in session.scalars(select(Report)):
        key = report.workspace_id.lower()
        if key not in by_workspace:
            continue
        capacity_id = by_workspace[key]
        if report.capacity_id != capacity_id:
            report.capacity_id = capacity_id
            changed += 1
    return changed


async def sync_capacities(
    *,
    session: Session,
    client: PowerBIClient,
    settings: Settings,
    actor: User | None = None,
) -> CapacitySyncResult:
    """Read Power BI's capacities and workspaces and record them (raises PowerBIError before
    anything is written). The database work is short and synchronous; a web handler may prefer
    :func:`fetch_capacity_inventory` then :func:`apply_capacity_inventory` in a thread."""
    inventory = await fetch_capacity_inventory(client=client)
    return apply_capacity_inventory(
        session=session, inventory=inventory, settings=settings, actor=actor
    )


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityCoordinatesInput:
    """Validated Azure coordinates, as :func:`validate_coordinates` returns them."""

    subscription_id: str
    resource_group: str
    resource_name: str
    provider: CapacityProvider


def validate_coordinates(
    *,
    subscription_id: str,
    resource_group: str,
    resource_name: str,
    provider: str,
    sku: str = "",
) -> tuple[CapacityCoordinatesInput | None, dict[str, str]]:
    """(coordinates, {}) or (None, {field: message}). Pure: no database, no I/O."""
    errors: dict[str, str] = {}
    subscription = (subscription_id or "").strip()
    group = (resource_group or "").strip()
    name = (resource_name or "").strip()
    kind = (provider or "").strip()

    for field, value, valid, missing, malformed in (
        (
            "subscription_id",
            subscription,
            is_guid,
            N_("Enter the Azure subscription id of the capacity."),
            N_(
                "The subscription id is a GUID such as 00000000-0000-0000-0000-000000000000 "
                "(Azure portal → Subscriptions)."
            ),
        ),
        (
            "resource_group",
            group,
            _RESOURCE_GROUP.match,
            N_("Enter the resource group the capacity is in."),
            N_(
                "A resource group name has 1 to 90 letters, digits, underscores, hyphens, "
                "periods or parentheses, and does not end with a period."
            ),
        ),
        (
            "resource_name",
            name,
            _CAPACITY_NAME.match,
            N_("Enter the capacity's name in Azure."),
            N_(
                "A capacity name in Azure has 3 to 63 lower-case letters and digits and starts "
                "with a letter."
            ),
        ),
    ):
        if not value:
            errors[field] = missing
        elif not valid(value):
            errors[field] = malformed
    if kind not in CAPACITY_PROVIDERS:
        errors["provider"] = N_(
            "Choose the capacity's type: Power BI Embedded (A and EM SKUs) or Fabric (F SKUs)."
        )
    else:
        expected = provider_for_sku(sku)
        if expected == FABRIC and kind != FABRIC:
            errors["provider"] = N_("A capacity with an F SKU is a Fabric capacity.")
        elif expected == POWERBI_DEDICATED and kind != POWERBI_DEDICATED:
            errors["provider"] = N_(
                "A capacity with an A or EM SKU is a Power BI Embedded capacity."
            )
    if errors:
        return None, errors
    return (
        CapacityCoordinatesInput(
            subscription_id=subscription,
            resource_group=group,
            resource_name=name,
            provider=cast(CapacityProvider, kind),
        ),
        {},
    )


def _coordinates_detail(capacity: Capacity) -> dict[str, Any]:
    return {name: getattr(capacity, name) for name in _COORDINATES}


def record_capacity_change(
    *, session: Session, actor: User | None, capacity: Capacity, action: str, detail: dict[str, Any]
) -> None:
    """An audit entry about one capacity (its coordinates, settings or schedule changed)."""
    record(
        session=session,
        actor=actor,
        action=action,
        target_type="capacity",
        target_id=capacity.id,
        detail=detail,
    )


def _audit_configured(
    *, session: Session, actor: User | None, capacity: Capacity, detail: dict[str, Any]
) -> None:
    """The entry for a capacity whose Azure coordinates were set, from the environment or by
    an administrator."""
    record_capacity_change(
        session=session, actor=actor, capacity=capacity, action="capacity.configured", detail=detail
    )


def get_capacity(*, session: Session, capacity_id: str) -> Capacity | None:
    return session.get(Capacity, normalise_capacity_id(capacity_id))


def configure_capacity(
    *,
    session: Session,
    capacity_id: str,
    subscription_id: str,
    resource_group: str,
    resource_name: str,
    provider: str,
    actor: User | None,
) -> Capacity:
    """Set where the capacity lives in Azure, so the portal can read and control it.

    Raises :class:`UnknownCapacityError` for an id the inventory does not hold and
    :class:`CapacityInputError` (per-field messages, nothing saved) for unusable input. The
    change is audited as old → new."""
    capacity = get_capacity(session=session, capacity_id=capacity_id)
    if capacity is None:
        raise UnknownCapacityError(capacity_id)
    coordinates, errors = validate_coordinates(
        subscription_id=subscription_id,
        resource_group=resource_group,
        resource_name=resource_name,
        provider=provider,
        sku=capacity.sku,
    )
    if coordinates is None:
        raise CapacityInputError(errors)
    new_values = {
        "subscription_id": coordinates.subscription_id,
        "resource_group": coordinates.resource_group,
        "resource_name": coordinates.resource_name,
        "provider": coordinates.provider,
    }
    detail: dict[str, Any] = {**apply_changes_old_new(capacity, new_values)}
    if detail:
        session.flush()
        _audit_configured(session=session, actor=actor, capacity=capacity, detail=detail)
    return capacity
