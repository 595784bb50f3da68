"""The portal's hands on its capacities: read their state through Azure Resource Manager and
start, pause or resize them, each operation audited with its reason and who caused it.

Whoever decides (an administrator's button, the controller) calls :meth:`CapacityControl.operate`;
it claims the capacity in the database (one operation at a time across every portal instance),
writes the audit entry, and runs the long-running ARM operation in the background, so no request
waits minutes for Azure. A failure is audited with Azure's own reason. What the portal remembers
of an operation (``Capacity.operation``) lets a controller restarted in the middle carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.organization import effective_connection
from embedportal.capacity.decisions import Action, CapacityState, Reason
from embedportal.capacity.inventory import coordinates_of
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, CapacityEvent, CapacityResumeRequest, User
from embedportal.db.session import session_scope
from embedportal.powerbi import (
    CapacityClient,
    CapacityCoordinates,
    CapacityInfo,
    PowerBIConnection,
    PowerBIError,
)
from embedportal.powerbi.arm import TRANSITIONAL_STATES
from embedportal.settings import Settings

logger = logging.getLogger("embedportal.capacity")

# Remember a reading this long, so a page full of viewers or an admin page polling every few
# seconds costs ARM one call; shorter while the state is changing.
STATUS_FRESH_FOR = timedelta(seconds=10)
STATUS_FRESH_WHILE_CHANGING = timedelta(seconds=3)
# How old a status the token API may still act on while a new one is read in the background:
# every open viewer asks at once, and none of them should wait on ARM each time one expires.
STATUS_STALE_OK = timedelta(seconds=30)
# An operation the portal started and never saw finish (the instance died) stops blocking the
# capacity once ARM shows a settled state this long after it began.
STALE_OPERATION_AFTER = timedelta(minutes=2)

_EVENT_OF = {Action.RESUME: "started", Action.SUSPEND: "paused", Action.CHANGE_SKU: "sku_changed"}
_FAILED_EVENT_OF = {
    Action.RESUME: "start_failed",
    Action.SUSPEND: "pause_failed",
    Action.CHANGE_SKU: "sku_change_failed",
}


class CapacityNotConfiguredError(Exception):
    """The capacity has no Azure coordinates (or the Power BI connection is incomplete)."""


class CapacityBusyError(Exception):
    """Another operation the portal started on this capacity is still running."""


def capacity_state_of(arm_state: str) -> CapacityState:
    """ARM's word as the controller's: Succeeded/Active run, Paused/Suspended do not."""
    if arm_state in ("Succeeded", "Active"):
        return CapacityState.RUNNING
    if arm_state in ("Paused", "Suspended"):
        return CapacityState.PAUSED
    if arm_state in TRANSITIONAL_STATES:
        return CapacityState.TRANSITIONING
    return CapacityState.UNKNOWN  # Failed, or a word this portal does not know


@dataclass(frozen=True)
class CapacityStatus:
    state: CapacityState
    arm_state: str
    sku: str | None
    operation: str | None  # an operation the portal started that is still running
    read_at: datetime
    problem: str | None = None  # why ARM could not be read, in English


class CapacityArm(Protocol):
    """What the portal needs of ARM for one capacity (CapacityClient; a simulation in bench/)."""

    async def get(self) -> CapacityInfo: ...
    async def suspend(self, wait: bool = True) -> CapacityInfo: ...
    async def resume(self, wait: bool = True) -> CapacityInfo: ...
    async def update_sku(
        self, sku_name: str, tier: str | None = None, wait: bool = True
    ) -> CapacityInfo: ...
    async def aclose(self) -> None: ...


ArmFactory = Callable[[PowerBIConnection, CapacityCoordinates], CapacityArm]


def _arm_client(connection: PowerBIConnection, coordinates: CapacityCoordinates) -> CapacityArm:
    return CapacityClient(connection, capacity=coordinates, max_retries=1)


@dataclass(frozen=True)
class _Target:
    capacity_id: str
    connection: PowerBIConnection
    coordinates: CapacityCoordinates


class CapacityControl:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        arm_factory: ArmFactory = _arm_client,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._settings = settings
        self._arm_factory = arm_factory
        self._clock = clock
        self._clients: dict[tuple[PowerBIConnection, CapacityCoordinates], CapacityArm] = {}
        self._statuses: dict[str, CapacityStatus] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._operating: set[str] = set()  # capacities with an operation running here
        self._refreshing: set[str] = set()  # capacities whose status is read in the background

    # -- reading ----------------------------------------------------------------------------

    def _target(self, session: Session, capacity_id: str) -> _Target:
        capacity = session.get(Capacity, capacity_id)
        if capacity is None:
            raise CapacityNotConfiguredError(f"There is no capacity {capacity_id!r}.")
        coordinates = coordinates_of(capacity)
        if coordinates is None:
            raise CapacityNotConfiguredError(
                f"The capacity {capacity.display_name or capacity_id!r} has no Azure "
                "coordinates yet."
            )
        connection = effective_connection(session=session, settings=self._settings).connection
        if connection is None:
            raise CapacityNotConfiguredError("The Power BI connection is incomplete.")
        return _Target(capacity_id=capacity_id, connection=connection, coordinates=coordinates)

    def _client(self, target: _Target) -> CapacityArm:
        key = (target.connection, target.coordinates)
        client = self._clients.get(key)
        if client is None:
            client = self._arm_factory(target.connection, target.coordinates)
            self._clients[key] = client
        return client

    def _read_target(self, capacity_id: str) -> tuple[_Target, str | None]:
        with session_scope(self._session_factory) as session:
            target = self._target(session, capacity_id)
            capacity = session.get(Capacity, capacity_id)
            return target, capacity.operation if capacity is not None else None

    async def status(self, *, capacity_id: str, fresh: bool = False) -> CapacityStatus:
        """The capacity as ARM says it is now (remembered a few seconds unless ``fresh``).
        Never raises for ARM's sake: a failure is a status with ``problem`` set."""
        now = self._clock()
        if not fresh and (cached := self.remembered_status(capacity_id)) is not None:
            return cached
        lock = self._locks.setdefault(capacity_id, asyncio.Lock())
        async with lock:  # one ARM call per capacity at a time; the others read its answer
            cached = self._statuses.get(capacity_id)
            if cached is not None and cached.read_at >= now and not fresh:
                return cached
            target, operation = await asyncio.to_thread(self._read_target, capacity_id)
            try:
                info = await self._client(target).get()
            except PowerBIError as error:
                status = CapacityStatus(
                    state=CapacityState.UNKNOWN,
                    arm_state="",
                    sku=None,
                    operation=operation,
                    read_at=self._clock(),
                    problem=error.message,
                )
            else:
                status = CapacityStatus(
                    state=capacity_state_of(info.state),
                    arm_state=info.state,
                    sku=info.sku_name or None,
                    operation=operation,
                    read_at=self._clock(),
                )
            self._statuses[capacity_id] = status
            return status

    def operating_here(self, capacity_id: str) -> bool:
        """Whether this instance is carrying out an operation on the capacity right now."""
        return capacity_id in self._operating

    def remembered_status(self, capacity_id: str) -> CapacityStatus | None:
        """The status ``status`` would answer without asking ARM, or None (no I/O, no await:
        the token API reads it on every call)."""
        cached = self._statuses.get(capacity_id)
        if cached is not None and self._clock() - cached.read_at < _fresh_for(cached):
            return cached
        return None

    def status_without_waiting(self, capacity_id: str) -> CapacityStatus | None:
        """The remembered status while fresh; past that, one read at most STATUS_STALE_OK ago
        while a new one is read in the background (one read at a time); None when there is
        none (then ``status`` must be awaited). No I/O, no await."""
        remembered = self.remembered_status(capacity_id)
        if remembered is not None:
            return remembered
        cached = self._statuses.get(capacity_id)
        if cached is None or self._clock() - cached.read_at >= STATUS_STALE_OK:
            return None
        if capacity_id not in self._refreshing:
            self._refreshing.add(capacity_id)
            task = asyncio.get_running_loop().create_task(self._refresh(capacity_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return cached

    async def _refresh(self, capacity_id: str) -> None:
        try:
            await self.status(capacity_id=capacity_id)
        except CapacityNotConfiguredError:
            self.forget(capacity_id)
        except Exception as error:  # noqa: BLE001 - nobody awaits it; the next one tries again
            logger.info("capacity %s: status not refreshed: %s", capacity_id, error)
        finally:
            self._refreshing.discard(capacity_id)

    def cached_status(self, capacity_id: str) -> CapacityStatus | None:
        return self._statuses.get(capacity_id)

    def forget(self, capacity_id: str) -> None:
        self._statuses.pop(capacity_id, None)

    # -- acting -----------------------------------------------------------------------------

    async def operate(
        self,
        *,
        capacity_id: str,
        action: Action,
        reason: Reason,
        sku: str | None = None,
        user: User | None = None,
    ) -> None:
        """Start ``action`` on the capacity and return; ARM's long-running operation goes on in
        the background. Raises CapacityNotConfiguredError, or CapacityBusyError while another
        operation the portal started is running (on any instance)."""
        if action is Action.NOTHING:
            return
        if action is Action.CHANGE_SKU and not sku:
            raise ValueError("a SKU change needs the SKU")
        target, sku_before = await asyncio.to_thread(
            self._claim, capacity_id, action, reason, sku, user
        )
        self.forget(capacity_id)
        self._operating.add(capacity_id)
        task = asyncio.create_task(
            self._carry_out(target, action, reason, sku, sku_before, user),
            name=f"capacity {action.value} {capacity_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _claim(
        self,
        capacity_id: str,
        action: Action,
        reason: Reason,
        sku: str | None,
        user: User | None,
    ) -> tuple[_Target, str]:
        now = self._clock()
        with session_scope(self._session_factory) as session:
            target = self._target(session, capacity_id)
            # A conditional write, so two instances (or two admins) never both start one.
            claimed = session.execute(
                update(Capacity)
                .where(Capacity.id == capacity_id, Capacity.operation.is_(None))
                .values(operation=action.value, operation_started_at=now)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                raise CapacityBusyError(
                    "Another operation on this capacity is still running; try again once it "
                    "has finished."
                )
            capacity = session.get(Capacity, capacity_id)
            assert capacity is not None
            sku_before = capacity.sku
            session.add(
                _audit_event(
                    capacity_id, _EVENT_OF[action], action, reason, sku, sku_before, user, now
                )
            )
            return target, sku_before

    async def _carry_out(
        self,
        target: _Target,
        action: Action,
        reason: Reason,
        sku: str | None,
        sku_before: str,
        user: User | None,
    ) -> None:
        client = self._client(target)
        try:
            if action is Action.RESUME:
                info = await client.resume()
            elif action is Action.SUSPEND:
                info = await client.suspend()
            else:
                assert sku is not None
                info = await client.update_sku(sku)
        except PowerBIError as error:
            logger.warning("capacity %s: %s failed: %s", target.capacity_id, action, error)
            await asyncio.to_thread(
                self._finish_failed, target.capacity_id, action, reason, sku, sku_before, user,
                error.message,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 - the claim must be released whatever happens
            logger.exception("capacity %s: %s failed", target.capacity_id, action)
            await asyncio.to_thread(
                self._finish_failed, target.capacity_id, action, reason, sku, sku_before, user,
                str(error) or type(error).__name__,
            )  # fmt: skip
        else:
            await asyncio.to_thread(self._finish_done, target.capacity_id, action, reason, info)
        finally:
            self._operating.discard(target.capacity_id)
            self.forget(target.capacity_id)

    def _finish_done(
        self, capacity_id: str, action: Action, reason: Reason, info: CapacityInfo
    ) -> None:
        now = self._clock()
        with session_scope(self._session_factory) as session:
            capacity = _released(session, capacity_id)
            if capacity is None:
                return
            if info.sku_name:
                capacity.sku = info.sku_name
            if action is Action.RESUME:
                capacity.running_since = now
                capacity.state = "Active"
                # Everyone waiting is served: a request made while it was starting must not
                # start it again after its next idle pause.
                session.execute(
                    delete(CapacityResumeRequest).where(
                        CapacityResumeRequest.capacity_id == capacity_id
                    )
                )
            elif action is Action.SUSPEND:
                capacity.running_since = None
                capacity.state = "Suspended"
                if reason is Reason.MANUAL:
                    capacity.manually_paused_at = now
            else:
                capacity.sku_changed_at = now

    def _finish_failed(
        self,
        capacity_id: str,
        action: Action,
        reason: Reason,
        sku: str | None,
        sku_before: str,
        user: User | None,
        message: str,
    ) -> None:
        with session_scope(self._session_factory) as session:
            if _released(session, capacity_id) is None:
                return
            failed = _audit_event(
                capacity_id,
                _FAILED_EVENT_OF[action],
                action,
                reason,
                sku,
                sku_before,
                user,
                self._clock(),
            )
            failed.error = message[:2000]
            session.add(failed)

    async def wait_idle(self) -> None:
        """Wait for the operations this instance started (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _released(session: Session, capacity_id: str) -> Capacity | None:
    """The capacity, no longer claimed by an operation (None if it was removed meanwhile)."""
    capacity = session.get(Capacity, capacity_id)
    if capacity is not None:
        capacity.operation = None
        capacity.operation_started_at = None
    return capacity


def _audit_event(
    capacity_id: str,
    event: str,
    action: Action,
    reason: Reason,
    sku: str | None,
    sku_before: str,
    user: User | None,
    at: datetime,
) -> CapacityEvent:
    resizing = action is Action.CHANGE_SKU
    return CapacityEvent(
        at=at,
        capacity_id=capacity_id,
        action=event,
        reason=reason.value,
        user_id=user.id if user is not None else None,
        user_email=user.email if user is not None else "",
        sku_before=sku_before if resizing else "",
        sku_after=(sku or "") if resizing else "",
    )


def _fresh_for(status: CapacityStatus) -> timedelta:
    if status.state in (CapacityState.TRANSITIONING, CapacityState.UNKNOWN) or status.operation:
        return STATUS_FRESH_WHILE_CHANGING
    return STATUS_FRESH_FOR
