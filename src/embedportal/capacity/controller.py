"""The capacity controller: a background loop that pauses idle capacities, starts them on demand
and follows their weekly schedules.

Exactly one portal instance acts at a time: the one holding the ``capacity-controller`` lease in
the database (renewed every pass; when its holder dies the lease lapses and another instance
takes over), so it works alike on SQLite and PostgreSQL with any number of instances. Each pass
reads every configured capacity's state from ARM, records what changed without the portal
(started or paused in Azure), gathers the facts the pure :func:`decisions.decide` needs and
carries out its answer through :class:`control.CapacityControl`. A pass is idempotent: asking
again right after acting finds the operation in flight and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.audit_log import organization_zone
from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.organization import get_organization
from embedportal.capacity.control import (
    STALE_OPERATION_AFTER,
    CapacityBusyError,
    CapacityControl,
    CapacityNotConfiguredError,
    CapacityStatus,
)
from embedportal.capacity.decisions import (
    Action,
    CapacityState,
    Decision,
    ResumeRequest,
    Situation,
    decide,
)
from embedportal.capacity.ledger import ActivityLedger, last_counted_activity, prune_activity
from embedportal.capacity.schedule import (
    ScheduleAction,
    ScheduleRow,
    WeeklySchedule,
    evaluate_schedule,
)
from embedportal.db.base import utcnow
from embedportal.db.models import (
    Capacity,
    CapacityEvent,
    CapacityResumeRequest,
    CapacityScheduleEntry,
    ControllerLease,
    User,
)
from embedportal.db.session import session_scope

logger = logging.getLogger("embedportal.capacity")

LEASE_NAME = "capacity-controller"
PRUNE_EVERY = timedelta(hours=1)
# After a start failed (no Azure role, a quota), viewers opening reports do not retry it every
# few seconds: on-demand starts wait this long; an administrator's button still works.
ON_DEMAND_HOLD_OFF_AFTER_FAILURE = timedelta(minutes=5)


def instance_name() -> str:
    """Who holds the lease: host, process and a random part (two processes never share one)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(
    *, session: Session, holder: str, now: datetime, ttl: timedelta, name: str = LEASE_NAME
) -> bool:
    """Take or renew the lease; True when ``holder`` has it until ``now + ttl``."""
    renewed = session.execute(
        update(ControllerLease)
        .where(
            ControllerLease.name == name,
            or_(ControllerLease.holder == holder, ControllerLease.expires_at < now),
        )
        .values(holder=holder, expires_at=now + ttl)
    )
    if getattr(renewed, "rowcount", 0) == 1:
        return True
    if session.get(ControllerLease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(ControllerLease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False  # another instance made the row first
    return True


def release_lease(*, session: Session, holder: str, name: str = LEASE_NAME) -> None:
    session.execute(
        delete(ControllerLease).where(
            ControllerLease.name == name, ControllerLease.holder == holder
        )
    )


@dataclass(frozen=True)
class CapacityFacts:
    """What the database says about one capacity for one pass (read in one go)."""

    capacity_id: str
    running_since: datetime | None
    manually_paused_at: datetime | None
    sku_changed_at: datetime | None
    operation_in_flight: bool
    idle_minutes: int | None
    schedule: WeeklySchedule
    zone: ZoneInfo
    last_counted_activity: datetime | None
    resume_requests: tuple[ResumeRequest, ...]
    nobody_may_turn_on: bool


def situation_for(*, facts: CapacityFacts, status: CapacityStatus, now: datetime) -> Situation:
    """The pure decision's inputs from the facts and ARM's reading."""
    return Situation(
        now=now,
        state=status.state,
        schedule=evaluate_schedule(schedule=facts.schedule, zone=facts.zone, at=now),
        idle_minutes=facts.idle_minutes,
        last_counted_activity=facts.last_counted_activity,
        last_started_at=facts.running_since,
        resume_requests=facts.resume_requests,
        nobody_may_turn_on=facts.nobody_may_turn_on,
        operation_in_flight=facts.operation_in_flight,
        manually_paused_at=facts.manually_paused_at,
        current_sku=status.sku,
        sku_changed_at=facts.sku_changed_at,
    )


def weekly_schedule_of(entries: list[CapacityScheduleEntry]) -> WeeklySchedule:
    return WeeklySchedule(
        rows=tuple(
            ScheduleRow(
                weekday=entry.weekday,
                at=time(entry.at_minute // 60, entry.at_minute % 60),
                action=ScheduleAction(entry.action),
                sku=entry.sku if entry.action == ScheduleAction.CHANGE_SKU else None,
            )
            for entry in entries
        )
    )


def _event(capacity_id: str, action: str, reason: str, at: datetime) -> CapacityEvent:
    return CapacityEvent(at=at, capacity_id=capacity_id, action=action, reason=reason)


def observe(
    *,
    session: Session,
    capacity: Capacity,
    status: CapacityStatus,
    now: datetime,
    operating_here: bool = False,
) -> None:
    """Bring the database in line with what ARM shows: a start or pause made in Azure is
    audited as "changed outside the portal"; an operation whose instance died stops blocking
    the capacity once ARM shows it settled."""
    settled = status.state in (CapacityState.RUNNING, CapacityState.PAUSED)
    if (
        capacity.operation is not None
        and settled
        and not operating_here  # ours finishes by itself
        and capacity.operation_started_at is not None
        and now - capacity.operation_started_at > STALE_OPERATION_AFTER
    ):
        logger.info("capacity %s: the %s begun elsewhere is over", capacity.id, capacity.operation)
        capacity.operation = None
        capacity.operation_started_at = None
    if status.sku:
        capacity.sku = status.sku
    if capacity.operation is not None:
        return
    if status.state is CapacityState.RUNNING:
        capacity.state = "Active"
        if capacity.running_since is None:
            capacity.running_since = now
            session.add(_event(capacity.id, "started", "outside_portal", now))
    elif status.state is CapacityState.PAUSED:
        capacity.state = "Suspended"
        if capacity.running_since is not None:
            capacity.running_since = None
            session.add(_event(capacity.id, "paused", "outside_portal", now))


class CapacityController:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        control: CapacityControl,
        ledger: ActivityLedger,
        *,
        interval_seconds: float = 15.0,
        retention: timedelta = timedelta(days=90),
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._control = control
        self._ledger = ledger
        self.interval_seconds = interval_seconds
        self._retention = retention
        self._clock = clock
        self.holder = holder or instance_name()
        self._wake = asyncio.Event()
        self._pruned_at: datetime | None = None

    @property
    def lease_ttl(self) -> timedelta:
        # Three missed passes before another instance takes over.
        return timedelta(seconds=max(3 * self.interval_seconds, 5.0))

    def wake(self) -> None:
        """Run the next pass now (a viewer allowed to start a capacity is waiting)."""
        self._wake.set()

    async def run(self) -> None:
        """Pass after pass until cancelled; a failing pass is logged and the next one tried."""
        try:
            while True:
                try:
                    await self.run_once()
                except Exception:  # noqa: BLE001 - the controller must outlive a bad pass
                    logger.exception("capacity controller: the pass failed")
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval_seconds)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            await asyncio.shield(asyncio.to_thread(self._release))

    def _release(self) -> None:
        with session_scope(self._session_factory) as session:
            release_lease(session=session, holder=self.holder)

    def _acquire(self, now: datetime) -> bool:
        with session_scope(self._session_factory) as session:
            return acquire_lease(session=session, holder=self.holder, now=now, ttl=self.lease_ttl)

    async def run_once(self) -> list[tuple[str, Decision]]:
        """One pass if this instance holds the lease; the decisions taken (for tests/bench)."""
        now = self._clock()
        if not await asyncio.to_thread(self._acquire, now):
            return []
        await asyncio.to_thread(self._ledger.flush)
        capacity_ids = await asyncio.to_thread(self._configured_capacities)
        decisions = []
        for capacity_id in capacity_ids:
            decision = await self._pass_one(capacity_id, now)
            if decision is not None:
                decisions.append((capacity_id, decision))
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            await asyncio.to_thread(self._prune, now)
            self._pruned_at = now
        return decisions

    def _configured_capacities(self) -> list[str]:
        with session_scope(self._session_factory) as session:
            return [
                capacity.id
                for capacity in session.scalars(select(Capacity).order_by(Capacity.id))
                if capacity.is_configured
            ]

    def _prune(self, now: datetime) -> None:
        with session_scope(self._session_factory) as session:
            prune_activity(session=session, older_than=self._retention, now=now)

    async def _pass_one(self, capacity_id: str, now: datetime) -> Decision | None:
        try:
            status = await self._control.status(capacity_id=capacity_id, fresh=True)
        except CapacityNotConfiguredError:
            return None
        if status.problem is not None:
            logger.warning("capacity %s: state unknown: %s", capacity_id, status.problem)
        facts = await asyncio.to_thread(self._facts, capacity_id, status, now)
        if facts is None:
            return None
        decision = decide(situation=situation_for(facts=facts, status=status, now=now))
        if decision.action is Action.NOTHING:
            return decision
        user = await asyncio.to_thread(self._user, decision.requested_by)
        try:
            await self._control.operate(
                capacity_id=capacity_id,
                action=decision.action,
                reason=decision.reason,
                sku=decision.sku,
                user=user,
            )
        except (CapacityBusyError, CapacityNotConfiguredError) as refusal:
            logger.info("capacity %s: %s not started: %s", capacity_id, decision, refusal)
            return None
        if decision.action is Action.RESUME:
            await asyncio.to_thread(self._forget_requests, capacity_id)
        logger.info("capacity %s: %s (%s)", capacity_id, decision.action, decision.reason)
        return decision

    def _facts(
        self, capacity_id: str, status: CapacityStatus, now: datetime
    ) -> CapacityFacts | None:
        with session_scope(self._session_factory) as session:
            capacity = session.get(Capacity, capacity_id)
            if capacity is None:
                return None
            observe(
                session=session,
                capacity=capacity,
                status=status,
                now=now,
                operating_here=self._control.operating_here(capacity_id),
            )
            organization = get_organization(session=session)
            entries = list(
                session.scalars(
                    select(CapacityScheduleEntry).where(
                        CapacityScheduleEntry.capacity_id == capacity_id
                    )
                )
            )
            written = last_counted_activity(session=session, capacity_id=capacity_id)
            pending = self._ledger.pending_last_counted(capacity_id)
            latest = max((at for at in (written, pending) if at is not None), default=None)
            requests = []
            failed_lately = session.scalar(
                select(CapacityEvent.id)
                .where(
                    CapacityEvent.capacity_id == capacity_id,
                    CapacityEvent.action == "start_failed",
                    CapacityEvent.at >= now - ON_DEMAND_HOLD_OFF_AFTER_FAILURE,
                )
                .limit(1)
            )
            for request in (
                ()
                if failed_lately
                else session.scalars(
                    select(CapacityResumeRequest).where(
                        CapacityResumeRequest.capacity_id == capacity_id
                    )
                )
            ):
                requester = session.get(User, request.user_id) if request.user_id else None
                if requester is None:
                    continue
                rights = capacity_rights(session=session, user=requester)
                requests.append(
                    ResumeRequest(
                        user_id=requester.id,
                        requested_at=request.requested_at,
                        permission=rights.turn_on_on_demand,
                    )
                )
            return CapacityFacts(
                capacity_id=capacity_id,
                running_since=capacity.running_since,
                manually_paused_at=capacity.manually_paused_at,
                sku_changed_at=capacity.sku_changed_at,
                operation_in_flight=capacity.operation is not None,
                idle_minutes=capacity.idle_pause_minutes,
                schedule=weekly_schedule_of(entries),
                zone=organization_zone(session=session),
                last_counted_activity=latest,
                resume_requests=tuple(requests),
                nobody_may_turn_on=organization.nobody_may_start_capacity,
            )

    def _user(self, user_id: int | None) -> User | None:
        if user_id is None:
            return None
        with session_scope(self._session_factory) as session:
            user = session.get(User, user_id)
            if user is not None:
                session.expunge(user)
            return user

    def _forget_requests(self, capacity_id: str) -> None:
        with session_scope(self._session_factory) as session:
            session.execute(
                delete(CapacityResumeRequest).where(
                    CapacityResumeRequest.capacity_id == capacity_id
                )
            )


def request_resume(*, session: Session, capacity_id: str, user: User, now: datetime) -> None:
    """Note that ``user`` (allowed to turn it on) is waiting for the capacity; the earliest
    waiting request is kept, so the audit names who asked first."""
    existing = session.get(CapacityResumeRequest, capacity_id)
    if existing is not None and now - existing.requested_at <= timedelta(minutes=5):
        return
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(
        CapacityResumeRequest(
            capacity_id=capacity_id, requested_at=now, user_id=user.id, user_email=user.email
        )
    )
