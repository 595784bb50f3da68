"""Simulated time and a simulated Azure Resource Manager for Part 3 (bench/capacity_week.py).

:class:`SimClock` is the one clock the ledger, the capacity control and the controller read
(``clock=sim.now``). Nothing in it moves by itself: the week's loop calls
:meth:`SimClock.advance_to`, which also wakes whatever waits for a simulated instant.

:class:`SimulatedArm` follows the ``CapacityArm`` protocol of ``embedportal.capacity.control``, so
``CapacityControl(arm_factory=...)`` drives it exactly as it drives ARM. Resume and suspend
change the state at once to ``Resuming`` / ``Suspending`` and settle ``transition`` later in
simulated time; with ``wait`` they return only then, as the real client's long-running
operations do. The meter bills every second from the moment a resume is asked for until a
suspend has finished (so resuming and suspending are billed: Azure's own wording is "billed as
long as the resource is active", and counting the transitions errs high, never low).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from embedportal.powerbi import CapacityInfo

RUNNING = "Succeeded"  # Microsoft.PowerBIDedicated's word for a running capacity
PAUSED = "Paused"
RESUMING = "Resuming"
SUSPENDING = "Suspending"
SCALING = "Scaling"  # a SKU change while running
UPDATING = "Updating"  # a SKU change while paused


class SimClock:
    """Simulated UTC time, moved forward only by :meth:`advance_to`."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware start")
        self._now = start
        self._waiters: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def advance_to(self, instant: datetime) -> int:
        """Move to ``instant`` and wake every waiter due by then; the number woken."""
        if instant < self._now:
            raise ValueError("simulated time does not go back")
        self._now = instant
        due = [(at, waiter) for at, waiter in self._waiters if at <= instant]
        self._waiters = [(at, waiter) for at, waiter in self._waiters if at > instant]
        for _at, waiter in due:
            if not waiter.done():
                waiter.set_result(None)
        return len(due)

    async def sleep_until(self, instant: datetime) -> None:
        if instant <= self._now:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((instant, waiter))
        await waiter


@dataclass
class _Operation:
    kind: str  # resume | suspend | sku
    started_at: datetime
    done_at: datetime
    settles_to: str
    sku: str


@dataclass
class ArmCounters:
    resumes: int = 0
    suspends: int = 0
    sku_changes: int = 0
    reads: int = 0
    # Operations asked for while another was still running (the portal's claim should make
    # this impossible), or a resume of a running / suspend of a paused capacity.
    refused: list[str] = field(default_factory=list)


class SimulatedArm:
    """One capacity in simulated Azure: state, long-running operations, a per-second meter."""

    def __init__(
        self,
        clock: SimClock,
        *,
        name: str,
        sku: str,
        running: bool,
        transition: timedelta,
    ) -> None:
        self._clock = clock
        self.name = name
        self.sku = sku
        self.transition = transition
        self._state = RUNNING if running else PAUSED
        self._operation: _Operation | None = None
        self._billing_since: datetime | None = clock.now() if running else None
        self.billed: list[tuple[datetime, datetime]] = []  # closed billed intervals
        self.counters = ArmCounters()

    # -- the meter ----------------------------------------------------------------------------

    def _bill_from(self, at: datetime) -> None:
        if self._billing_since is None:
            self._billing_since = at

    def _bill_until(self, at: datetime) -> None:
        if self._billing_since is not None:
            self.billed.append((self._billing_since, at))
            self._billing_since = None

    def billed_intervals(self, *, until: datetime) -> list[tuple[datetime, datetime]]:
        """Every billed interval up to ``until`` (a running capacity is billed up to it)."""
        self._settle()
        intervals = [(start, min(end, until)) for start, end in self.billed if start < until]
        if self._billing_since is not None and self._billing_since < until:
            intervals.append((self._billing_since, until))
        return intervals

    def billed_seconds(self, *, until: datetime) -> float:
        return sum(
            (end - start).total_seconds() for start, end in self.billed_intervals(until=until)
        )

    # -- state ----------------------------------------------------------------------------------

    def _settle(self) -> None:
        operation = self._operation
        if operation is None or self._clock.now() < operation.done_at:
            return
        self._operation = None
        self._state = operation.settles_to
        self.sku = operation.sku
        if operation.kind == "suspend":
            self._bill_until(operation.done_at)

    @property
    def state(self) -> str:
        self._settle()
        return self._state

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def pending_until(self) -> datetime | None:
        """When the operation under way settles (None: nothing under way)."""
        self._settle()
        return self._operation.done_at if self._operation is not None else None

    def _info(self) -> CapacityInfo:
        return CapacityInfo(
            name=self.name,
            state=self._state,
            provisioning_state=self._state,
            sku_name=self.sku,
            sku_tier="PBIE_Azure",
        )

    async def _start(self, kind: str, state: str, settles_to: str, sku: str, wait: bool) -> None:
        now = self._clock.now()
        operation = _Operation(
            kind=kind,
            started_at=now,
            done_at=now + self.transition,
            settles_to=settles_to,
            sku=sku,
        )
        self._operation = operation
        self._state = state
        if wait:
            await self._clock.sleep_until(operation.done_at)
            self._settle()

    def _refuse(self, what: str) -> bool:
        self._settle()
        if self._operation is not None:
            self.counters.refused.append(f"{what} while {self._state} at {self._clock.now()}")
            return True
        return False

    # -- the CapacityArm protocol -------------------------------------------------------------

    async def get(self) -> CapacityInfo:
        self.counters.reads += 1
        self._settle()
        return self._info()

    async def resume(self, wait: bool = True) -> CapacityInfo:
        if self._refuse("resume"):
            raise RuntimeError("simulated ARM: another operation is in progress")
        if self._state == RUNNING:
            self.counters.refused.append(f"resume while running at {self._clock.now()}")
            return self._info()
        self.counters.resumes += 1
        self._bill_from(self._clock.now())
        await self._start("resume", RESUMING, RUNNING, self.sku, wait)
        return self._info()

    async def suspend(self, wait: bool = True) -> CapacityInfo:
        if self._refuse("suspend"):
            raise RuntimeError("simulated ARM: another operation is in progress")
        if self._state == PAUSED:
            self.counters.refused.append(f"suspend while paused at {self._clock.now()}")
            return self._info()
        self.counters.suspends += 1
        await self._start("suspend", SUSPENDING, PAUSED, self.sku, wait)
        return self._info()

    async def update_sku(
        self, sku_name: str, tier: str | None = None, wait: bool = True
    ) -> CapacityInfo:
        if self._refuse("update_sku"):
            raise RuntimeError("simulated ARM: another operation is in progress")
        self.counters.sku_changes += 1
        settled = self._state
        transitional = SCALING if settled == RUNNING else UPDATING
        await self._start("sku", transitional, settled, sku_name.strip().upper(), wait)
        return self._info()

    async def aclose(self) -> None:
        return None
