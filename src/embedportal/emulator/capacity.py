"""A capacity as ARM shows it: state machine, long-running operations, meter.

Two resource providers serve capacities, with the same operations and different words:

* ``Microsoft.PowerBIDedicated`` (Power BI Embedded, A SKUs, tier ``PBIE_Azure``): a running
  capacity is ``Succeeded``, and ``provisioningState`` repeats ``state``.
* ``Microsoft.Fabric`` (F SKUs, tier ``Fabric``): a running capacity is ``Active``, and
  ``provisioningState`` only says whether the resource itself is healthy (``Succeeded``, or
  ``Updating`` while an operation runs).

Pure: every method takes `now` (seconds since the epoch) and the state moves forward lazily,
whenever it is looked at, so no background task is needed. Transitions (R = the running state):

* suspend: R → Suspending → Paused
* resume:  Paused → Resuming → R
* scale (PATCH sku): R → Scaling → R, or Paused → Updating → Paused

The meter counts active seconds: while running, and while a running capacity is suspending
or scaling (it is billed until it is paused). Resuming is not counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PAUSED = "Paused"


@dataclass(frozen=True, slots=True)
class Provider:
    """What differs between the two ARM resource providers of capacities."""

    namespace: str  # as ARM spells it in resource ids and types
    api_versions: tuple[str, ...]
    running_state: str
    sku_tier: str
    skus: Mapping[str, int]  # SKU name → v-cores (A SKUs) or capacity units (F SKUs)

    @property
    def slug(self) -> str:
        """The namespace as paths are matched (ARM paths are case-insensitive)."""
        return self.namespace.lower()

    @property
    def resource_type(self) -> str:
        return f"{self.namespace}/capacities"


POWERBI_DEDICATED = Provider(
    namespace="Microsoft.PowerBIDedicated",
    api_versions=("2017-10-01", "2021-01-01"),
    running_state="Succeeded",
    sku_tier="PBIE_Azure",
    skus={"A1": 1, "A2": 2, "A3": 4, "A4": 8, "A5": 16, "A6": 32},
)
FABRIC = Provider(
    namespace="Microsoft.Fabric",
    api_versions=("2023-11-01",),
    running_state="Active",
    sku_tier="Fabric",
    skus={f"F{units}": units for units in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)},
)
PROVIDERS: Mapping[str, Provider] = {p.slug: p for p in (POWERBI_DEDICATED, FABRIC)}

# The Power BI Embedded names, kept for callers that only know that provider.
SKU_TIER = POWERBI_DEDICATED.sku_tier
SKU_VCORES = POWERBI_DEDICATED.skus
RUNNING = POWERBI_DEDICATED.running_state
TRANSITIONAL = frozenset({"Suspending", "Resuming", "Scaling", "Updating"})

OperationKind = Literal["suspend", "resume", "scale"]
# Azure roles the emulator tells apart: Reader may only read; Contributor (or Owner) may also
# suspend, resume and scale; None may do nothing.
AzureRole = Literal["Contributor", "Reader", "None"]
AZURE_ROLES: tuple[AzureRole, ...] = ("Contributor", "Reader", "None")


class CapacityConflictError(Exception):
    """The operation cannot start in the capacity's current state."""

    def __init__(self, state: str, action: str) -> None:
        super().__init__(
            f"The capacity is in state '{state}': '{action}' is not allowed until the operation "
            "in progress completes."
        )
        self.state = state


@dataclass(slots=True)
class Operation:
    id: str
    kind: OperationKind
    capacity_name: str
    started_at: float
    ends_at: float
    provider: Provider = POWERBI_DEDICATED

    def done(self, now: float) -> bool:
        return now >= self.ends_at


@dataclass(slots=True)
class _Pending:
    operation: Operation
    final_state: str
    final_sku: str
    billed: bool


@dataclass(slots=True)
class Capacity:
    name: str
    resource_id: str
    location: str
    sku: str
    created_at: float
    transition_seconds: float
    administrators: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    provider: Provider = POWERBI_DEDICATED
    # The Power BI REST id (GET /v1.0/myorg/capacities) of this capacity.
    powerbi_id: str = ""
    state: str = ""
    started_count: int = 0
    paused_count: int = 0
    # Fault knobs (/emulator/api/capacities/{name}/faults): the caller's Azure role on this
    # capacity, and a transition time of its own that overrides the emulator-wide one.
    azure_role: AzureRole = "Contributor"
    transition_override: float | None = None
    _active_seconds: float = 0.0
    _metered_until: float = 0.0
    _pending: _Pending | None = None

    def __post_init__(self) -> None:
        self._metered_until = self.created_at
        if not self.state:
            self.state = self.provider.running_state
        if self.sku not in self.provider.skus:
            raise ValueError(f"SKU {self.sku!r} is not a {self.provider.namespace} SKU")

    @property
    def running_state(self) -> str:
        return self.provider.running_state

    @property
    def effective_transition_seconds(self) -> float:
        if self.transition_override is not None:
            return self.transition_override
        return self.transition_seconds

    # --- time --------------------------------------------------------------------------------

    def _billed_now(self) -> bool:
        if self._pending is not None:
            return self._pending.billed
        return self.state == self.running_state

    def _meter_to(self, moment: float) -> None:
        if moment > self._metered_until:
            if self._billed_now():
                self._active_seconds += moment - self._metered_until
            self._metered_until = moment

    def advance(self, now: float) -> None:
        """Bring the state up to `now`: finish an operation whose time has come."""
        pending = self._pending
        if pending is not None and pending.operation.done(now):
            self._meter_to(pending.operation.ends_at)
            self._pending = None
            if self.state == "Suspending":
                self.paused_count += 1
            elif self.state == "Resuming":
                self.started_count += 1
            self.state = pending.final_state
            self.sku = pending.final_sku
        self._meter_to(now)

    # --- queries -----------------------------------------------------------------------------

    def is_running(self, now: float) -> bool:
        self.advance(now)
        return self.state == self.running_state

    def active_seconds(self, now: float) -> float:
        self.advance(now)
        return self._active_seconds

    def pending_operation(self, now: float) -> Operation | None:
        self.advance(now)
        return None if self._pending is None else self._pending.operation

    def powerbi_state(self, now: float) -> str:
        """The state Power BI REST shows: ``Active`` exactly while ARM says the capacity runs
        (and reports render), ``Suspended`` otherwise."""
        return "Active" if self.is_running(now) else "Suspended"

    def meter(self, now: float) -> dict[str, object]:
        self.advance(now)
        return {
            "activeSeconds": round(self._active_seconds, 3),
            "state": self.state,
            "sku": self.sku,
            "startedCount": self.started_count,
            "pausedCount": self.paused_count,
        }

    # --- operations ----------------------------------------------------------------------------

    def _start(
        self,
        now: float,
        kind: OperationKind,
        transitional: str,
        final_state: str,
        final_sku: str,
        billed: bool,
    ) -> Operation:
        operation = Operation(
            str(uuid.uuid4()),
            kind,
            self.name,
            now,
            now + self.effective_transition_seconds,
            self.provider,
        )
        self._pending = _Pending(operation, final_state, final_sku, billed)
        self.state = transitional
        self.advance(now)  # a zero-second transition completes at once
        return operation

    def suspend(self, now: float) -> Operation | None:
        """Start pausing. None when already paused (nothing to do)."""
        self.advance(now)
        if self.state == PAUSED:
            return None
        if self.state != self.running_state:
            raise CapacityConflictError(self.state, "suspend")
        return self._start(now, "suspend", "Suspending", PAUSED, self.sku, billed=True)

    def resume(self, now: float) -> Operation | None:
        """Start resuming. None when already running (nothing to do)."""
        self.advance(now)
        if self.state == self.running_state:
            return None
        if self.state != PAUSED:
            raise CapacityConflictError(self.state, "resume")
        return self._start(now, "resume", "Resuming", self.running_state, self.sku, billed=False)

    def scale(self, now: float, sku: str) -> Operation | None:
        """Start changing the SKU. None when it already is that SKU."""
        if sku not in self.provider.skus:
            raise ValueError(f"unknown SKU {sku!r}")
        self.advance(now)
        if self.state in TRANSITIONAL:
            raise CapacityConflictError(self.state, "update")
        if sku == self.sku:
            return None
        if self.state == self.running_state:
            return self._start(now, "scale", "Scaling", self.running_state, sku, billed=True)
        return self._start(now, "scale", "Updating", PAUSED, sku, billed=False)

    def resource(self, now: float) -> dict[str, object]:
        """The ARM resource body (GET of the capacity), in its provider's shape."""
        self.advance(now)
        members = {"members": list(self.administrators)}
        properties: dict[str, object]
        if self.provider is FABRIC:
            properties = {
                "provisioningState": "Updating" if self._pending is not None else "Succeeded",
                "state": self.state,
                "administration": members,
            }
            sku: dict[str, object] = {"name": self.sku, "tier": self.provider.sku_tier}
        else:
            properties = {
                "state": self.state,
                "provisioningState": self.state,
                "administration": members,
                "mode": "Gen2",
            }
            sku = {"name": self.sku, "tier": self.provider.sku_tier, "capacity": 1}
        return {
            "id": self.resource_id,
            "name": self.name,
            "type": self.provider.resource_type,
            "location": self.location,
            "sku": sku,
            "tags": dict(self.tags),
            "properties": properties,
        }
