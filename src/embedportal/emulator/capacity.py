"""A Power BI Embedded capacity as ARM shows it: state machine, long-running operations, meter.

Pure: every method takes `now` (seconds since the epoch) and the state moves forward lazily,
whenever it is looked at, so no background task is needed. Transitions:

* suspend: Succeeded → Suspending → Paused
* resume:  Paused → Resuming → Succeeded
* scale (PATCH sku): Succeeded → Scaling → Succeeded, or Paused → Updating → Paused

The meter counts active seconds: while Succeeded, and while a running capacity is suspending
or scaling (it is billed until it is paused). Resuming is not counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

SKU_TIER = "PBIE_Azure"
SKU_VCORES = {"A1": 1, "A2": 2, "A3": 4, "A4": 8, "A5": 16, "A6": 32}
RUNNING = "Succeeded"
PAUSED = "Paused"
TRANSITIONAL = frozenset({"Suspending", "Resuming", "Scaling", "Updating"})

OperationKind = Literal["suspend", "resume", "scale"]


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
    state: str = RUNNING
    started_count: int = 0
    paused_count: int = 0
    _active_seconds: float = 0.0
    _metered_until: float = 0.0
    _pending: _Pending | None = None

    def __post_init__(self) -> None:
        self._metered_until = self.created_at

    # --- time --------------------------------------------------------------------------------

    def _billed_now(self) -> bool:
        if self._pending is not None:
            return self._pending.billed
        return self.state == RUNNING

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
        return self.state == RUNNING

    def active_seconds(self, now: float) -> float:
        self.advance(now)
        return self._active_seconds

    def pending_operation(self, now: float) -> Operation | None:
        self.advance(now)
        return None if self._pending is None else self._pending.operation

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
            str(uuid.uuid4()), kind, self.name, now, now + self.transition_seconds
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
        if self.state != RUNNING:
            raise CapacityConflictError(self.state, "suspend")
        return self._start(now, "suspend", "Suspending", PAUSED, self.sku, billed=True)

    def resume(self, now: float) -> Operation | None:
        """Start resuming. None when already running (nothing to do)."""
        self.advance(now)
        if self.state == RUNNING:
            return None
        if self.state != PAUSED:
            raise CapacityConflictError(self.state, "resume")
        return self._start(now, "resume", "Resuming", RUNNING, self.sku, billed=False)

    def scale(self, now: float, sku: str) -> Operation | None:
        """Start changing the SKU. None when it already is that SKU."""
        if sku not in SKU_VCORES:
            raise ValueError(f"unknown SKU {sku!r}")
        self.advance(now)
        if self.state in TRANSITIONAL:
            raise CapacityConflictError(self.state, "update")
        if sku == self.sku:
            return None
        if self.state == RUNNING:
            return self._start(now, "scale", "Scaling", RUNNING, sku, billed=True)
        return self._start(now, "scale", "Updating", PAUSED, sku, billed=False)

    def resource(self, now: float) -> dict[str, object]:
        """The ARM resource body (Capacities_GetDetails)."""
        self.advance(now)
        return {
            "id": self.resource_id,
            "name": self.name,
            "type": "Microsoft.PowerBIDedicated/capacities",
            "location": self.location,
            "sku": {"name": self.sku, "tier": SKU_TIER, "capacity": 1},
            "tags": dict(self.tags),
            "properties": {
                "state": self.state,
                "provisioningState": self.state,
                "administration": {"members": list(self.administrators)},
                "mode": "Gen2",
            },
        }
