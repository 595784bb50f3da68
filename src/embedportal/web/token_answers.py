"""What the token API (web/routes/api_tokens.py) and Admin → View as (admin_view_as.py) both
answer with: the token context read from the database in one short unit of work, the refusal
while a report's capacity is off or starting, and Power BI's failures in the viewer's words
(JSON `{"detail", "code"}`, with `Retry-After` where waiting helps). Never a 500: every failure
has a reason."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.embedding import USER_OWNED, embedding_of
from embedportal.access.grants import RlsIdentityMissingError, can_view, effective_identity
from embedportal.access.organization import (
    EffectiveConnection,
    effective_connection,
    get_organization,
)
from embedportal.access.rls_check import identity_problem
from embedportal.capacity.control import CapacityControl, CapacityNotConfiguredError
from embedportal.capacity.controller import CapacityController, request_resume
from embedportal.capacity.decisions import REQUEST_FRESH_FOR, Action, CapacityState
from embedportal.capacity.permissions import CapacityPermissions
from embedportal.capacity.probe import CapacityProbe
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, CapacityResumeRequest, Report, User
from embedportal.db.session import session_scope
from embedportal.i18n import N_, _
from embedportal.powerbi import (
    EffectiveIdentity,
    PowerBIAuthError,
    PowerBIConnection,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.settings import Settings
from embedportal.tokens.policy import TokenPolicy
from embedportal.tokens.service import policy_of

logger = logging.getLogger("embedportal.tokens")

CAPACITY_NOT_ACTIVE = "CapacityNotActive"
CAPACITY_STARTING = "CapacityStarting"
CAPACITY_OFF_MESSAGE = N_(
    "The Power BI capacity is off. The report comes back when it is running again."
)
CAPACITY_STARTING_MESSAGE = N_(
    "Starting the capacity. The report loads by itself in a minute or two."
)
# A person opening or touching a report starts its capacity on demand; a viewer that merely
# keeps its report alive (margin, timed, wake, recovery) does not.
ON_DEMAND_REASONS = frozenset({"load", "interaction"})
# A starting capacity is asked about often, so the report appears soon after it runs.
STARTING_RETRY_SECONDS = 3
# How long a token request waits on ARM (or Power BI) for its capacity's state. Past it the state
# counts as unknown and the token is not held back; the reading goes on and fills the cache.
CAPACITY_READ_WAIT_SECONDS = 1.0
# How soon a viewer should try again when Power BI is down and said nothing itself.
DEFAULT_RETRY_SECONDS = 5
# Viewers asking without a token to show (opening, or after theirs died): a still-valid cached
# token beats a refusal while Power BI cannot mint. Viewers that hold a token keep it and retry.
STALE_OK_REASONS = frozenset({"load", "recovery", "expired-error"})


class TokenRequestBody(BaseModel):
    """Optional: why the viewer asks (margin, interaction, timed, wake, recovery, …)."""

    reason: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z-]*$")


@dataclass(frozen=True)
class ReportCapacity:
    """The report's capacity as the portal controls it, and what this user may do with it."""

    capacity_id: str
    starting_message: str
    rights: CapacityPermissions


@dataclass(frozen=True)
class TokenContext:
    """What minting needs from the database, read in one go off the event loop."""

    policy: TokenPolicy
    connection: EffectiveConnection
    identity: EffectiveIdentity | None
    capacity: ReportCapacity | None  # None: not on a capacity the portal controls
    # The catalogue knows the report's capacity (controlled or not); the older capacity probe
    # (EMBEDPORTAL_CAPACITY_*) only speaks for reports whose capacity is unknown.
    capacity_known: bool
    # Embedded with the person's own Entra token (tokens/person.py), not an embed token.
    user_owned: bool = False


@dataclass(frozen=True)
class Refusal:
    """A decision not to mint, cached like a context: signed out, unknown report, no access."""

    status: int
    detail: str
    code: str = ""


def load_token_context(
    session_factory: sessionmaker[Session], settings: Settings, user_id: int, report_id: str
) -> tuple[Report, TokenContext] | Refusal:
    """Everything one token request needs from the database, in one short unit of work (its
    connection goes back to the pool before Power BI is asked)."""
    with session_scope(session_factory) as session:
        user = session.get(User, user_id)
        if user is None or user.is_blocked:
            return Refusal(401, "")
        report = session.get(Report, report_id)
        if report is None or not report.is_available:
            return Refusal(404, N_("There is no such report."))
        if not can_view(session=session, user=user, report=report):
            return Refusal(
                403,
                N_(
                    "You do not have access to this report. Ask an administrator to grant it "
                    "to you."
                ),
            )
        organization = get_organization(session=session)
        user_owned = embedding_of(report=report, organization=organization) == USER_OWNED
        try:
            # A person's own token carries their identity: Power BI applies their RLS roles.
            identity = (
                None
                if user_owned
                else effective_identity(session=session, user=user, report=report)
            )
        except RlsIdentityMissingError as error:
            return Refusal(403, error.reason, "RlsIdentityMissing")
        capacity = session.get(Capacity, report.capacity_id) if report.capacity_id else None
        context = TokenContext(
            policy=policy_of(organization),
            connection=effective_connection(session=session, settings=settings),
            identity=identity,
            capacity=ReportCapacity(
                capacity_id=capacity.id,
                starting_message=capacity.starting_message,
                rights=capacity_rights(session=session, user=user),
            )
            if capacity is not None and capacity.is_configured
            else None,
            capacity_known=capacity is not None,
            user_owned=user_owned,
        )
        session.expunge(report)
        return report, context


def start_pending(session_factory: sessionmaker[Session], capacity_id: str) -> bool:
    """Whether someone's opening of a report is starting the capacity right now."""
    with session_scope(session_factory) as session:
        capacity = session.get(Capacity, capacity_id)
        if capacity is not None and capacity.operation == Action.RESUME.value:
            return True
        request = session.get(CapacityResumeRequest, capacity_id)
        return request is not None and utcnow() - request.requested_at <= REQUEST_FRESH_FOR


def note_resume_request(
    session_factory: sessionmaker[Session], capacity_id: str, user_id: int
) -> None:
    with session_scope(session_factory) as session:
        user = session.get(User, user_id)
        if user is not None:
            request_resume(session=session, capacity_id=capacity_id, user=user, now=utcnow())


def error_answer(
    status: int, detail: str, code: str, *, retry_after: float | None = None
) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def powerbi_failure(error: PowerBIError) -> JSONResponse:
    """Power BI's refusal, in the viewer's terms. Never a 500: every failure has a reason."""
    if error.code == CAPACITY_NOT_ACTIVE or CAPACITY_NOT_ACTIVE in error.message:
        return error_answer(
            503,
            _(CAPACITY_OFF_MESSAGE),
            CAPACITY_NOT_ACTIVE,
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIThrottledError):
        return error_answer(
            429,
            _("Power BI asked the portal to slow down. The viewer retries by itself."),
            "Throttled",
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIUnavailableError):
        return error_answer(
            503,
            _("Power BI did not answer. The viewer retries by itself."),
            "PowerBIUnavailable",
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIAuthError):
        detail = _(
            "Power BI refused the portal's credentials. An administrator must check the "
            "connection in Admin → Settings."
        )
        return error_answer(502, detail, "PowerBIAuthFailed")
    if isinstance(error, PowerBIForbiddenError):
        detail = _(
            "Power BI refused to issue a token for this report. An administrator must check "
            "the service principal's access to the workspace."
        )
        return error_answer(502, detail, "PowerBIForbidden")
    if isinstance(error, PowerBINotFoundError):
        detail = _(
            "Power BI no longer has this report. An administrator can sync the catalogue in "
            "Admin → Reports."
        )
        return error_answer(502, detail, "ReportNotInPowerBI")
    if identity_problem(error.message)[0] in ("unknown_role", "roles_required"):
        # The identity the portal presents is wrong for the data: asking again cannot help,
        # an administrator must change it, so it is final like a missing identity.
        return error_answer(403, refusal_in_plain_words(error), "RlsIdentityMissing")
    return error_answer(502, refusal_in_plain_words(error), "PowerBIError")


def refusal_in_plain_words(error: PowerBIError) -> str:
    """Power BI's other refusals as the viewer reads them: a role or identity problem said as
    such, anything else with Power BI's words (without ids) for whoever they ask for help."""
    kind, role, detail = identity_problem(error.message)
    if kind == "unknown_role":
        return _(
            "Your RLS role “%(role)s” does not exist in this report's data, so the report "
            "cannot be shown to you. Ask an administrator to correct your RLS roles.",
            role=role,
        )
    if kind == "roles_required":
        return _(
            "This report's data is filtered by RLS role and you have none for it. Ask an "
            "administrator to set your RLS role for this report."
        )
    return _(
        "Power BI refused to open this report. Ask an administrator to check it in Admin → "
        "Reports. Power BI said: %(reason)s",
        reason=detail,
    )


_T = TypeVar("_T")


async def within_wait(reading: Awaitable[_T]) -> _T | None:
    """The reading if it comes within CAPACITY_READ_WAIT_SECONDS, else None. A slow ARM must
    not hold a token request: the reading carries on unwaited and its answer is remembered."""
    task = asyncio.ensure_future(reading)
    try:
        return await asyncio.wait_for(asyncio.shield(task), CAPACITY_READ_WAIT_SECONDS)
    except TimeoutError:
        task.add_done_callback(_forget_outcome)
        return None


def _forget_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.info("a capacity reading nobody waited for failed: %s", task.exception())


async def capacity_refusal(
    context: TokenContext,
    connection: PowerBIConnection,
    user: User,
    reason: str,
    session_factory: sessionmaker[Session],
    probe: CapacityProbe,
    control: CapacityControl,
    controller: CapacityController,
) -> JSONResponse | None:
    """503 while the report's capacity is not running (a paused capacity cannot render it):
    CapacityStarting for a user allowed to turn it on (who has just asked for it to start),
    CapacityNotActive for the others. None when the report may be shown (or its capacity's
    state is unknown: then tokens are not held back)."""
    # A viewer asking because its iframe saw the capacity fail gets a fresh look at it.
    fresh = reason == "capacity"
    if context.capacity is None:
        if context.capacity_known:
            return None  # a capacity without Azure coordinates: its state cannot be read
        reading = (None if fresh else probe.remembered(connection)) or await within_wait(
            probe.reading(connection, fresh=fresh)
        )
        if reading is None or reading.running is not False:
            return None
        return error_answer(503, _(CAPACITY_OFF_MESSAGE), CAPACITY_NOT_ACTIVE, retry_after=5)
    capacity = context.capacity
    # Almost always remembered, or refreshed in the background while a recent one stands in:
    # read without a task, and without every open viewer waiting on ARM when it expires.
    status = None if fresh else control.status_without_waiting(capacity.capacity_id)
    if status is None:
        try:
            status = await within_wait(
                control.status(capacity_id=capacity.capacity_id, fresh=fresh)
            )
        except CapacityNotConfiguredError:
            return None
    if status is None or status.state in (CapacityState.RUNNING, CapacityState.UNKNOWN):
        return None
    off = error_answer(
        503, _(CAPACITY_OFF_MESSAGE), CAPACITY_NOT_ACTIVE, retry_after=DEFAULT_RETRY_SECONDS
    )
    if not capacity.rights.turn_on_on_demand.allowed:
        return off
    if reason in ON_DEMAND_REASONS:
        await run_in_threadpool(note_resume_request, session_factory, capacity.capacity_id, user.id)
        controller.wake()
    elif not await run_in_threadpool(start_pending, session_factory, capacity.capacity_id):
        # An open report nobody touches does not start a capacity that paused for being idle
        # (or a forgotten tab would undo every idle pause); it waits, and comes back with it.
        return off
    return error_answer(
        503,
        capacity.starting_message.strip() or _(CAPACITY_STARTING_MESSAGE),
        CAPACITY_STARTING,
        retry_after=STARTING_RETRY_SECONDS,
    )
