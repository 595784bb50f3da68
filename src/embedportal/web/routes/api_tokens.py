"""`POST /api/reports/{reportId}/token`: an embed token for an open viewer (docs/token-api.md).

Every call re-checks access, so a viewer whose access was removed gets no new token.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from embedportal.access.grants import RlsIdentityMissingError, effective_identity
from embedportal.access.organization import (
    EffectiveConnection,
    effective_connection,
    get_organization,
)
from embedportal.db.models import Report, User
from embedportal.i18n import _
from embedportal.powerbi import (
    EffectiveIdentity,
    PowerBIAuthError,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.settings import Settings
from embedportal.tokens.policy import TokenPolicy
from embedportal.tokens.service import IssuedToken, policy_of, record_token_issued
from embedportal.web.deps import (
    AppSettings,
    CapacityProbeDep,
    CsrfProtected,
    CurrentUser,
    DbSession,
    MetricsDep,
    PowerBIClientsDep,
    TokenServiceDep,
    ViewableReport,
    require_user,
)

logger = logging.getLogger("embedportal.tokens")
router = APIRouter(tags=["api"])

CAPACITY_NOT_ACTIVE = "CapacityNotActive"
# How soon a viewer should try again when Power BI is down and said nothing itself.
DEFAULT_RETRY_SECONDS = 5


class TokenRequestBody(BaseModel):
    """Optional: why the viewer asks (margin, interaction, timed, wake, recovery, …)."""

    reason: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z-]*$")


class TokenAnswer(BaseModel):
    token: str
    tokenId: str  # noqa: N815 - the JSON field name is the contract
    expiration: str
    expiresIn: int  # noqa: N815
    policy: dict[str, Any]


@dataclass(frozen=True)
class _TokenContext:
    """What minting needs from the database, read in one go off the event loop."""

    policy: TokenPolicy
    connection: EffectiveConnection
    identity: EffectiveIdentity | None


def _token_context(
    session: Session, settings: Settings, user: User, report: Report
) -> _TokenContext:
    organization = get_organization(session=session)
    return _TokenContext(
        policy=policy_of(organization),
        connection=effective_connection(session=session, settings=settings),
        identity=effective_identity(session=session, user=user, report=report),
    )


def _error(
    status: int, detail: str, code: str, *, retry_after: float | None = None
) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _powerbi_failure(error: PowerBIError) -> JSONResponse:
    """Power BI's refusal, in the viewer's terms. Never a 500: every failure has a reason."""
    if error.code == CAPACITY_NOT_ACTIVE or CAPACITY_NOT_ACTIVE in error.message:
        return _error(
            503,
            _("The Power BI capacity is off. The report comes back when it is running again."),
            CAPACITY_NOT_ACTIVE,
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIThrottledError):
        return _error(
            429,
            _("Power BI asked the portal to slow down. The viewer retries by itself."),
            "Throttled",
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIUnavailableError):
        return _error(
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
        return _error(502, detail, "PowerBIAuthFailed")
    if isinstance(error, PowerBIForbiddenError):
        detail = _(
            "Power BI refused to issue a token for this report. An administrator must check "
            "the service principal's access to the workspace."
        )
        return _error(502, detail, "PowerBIForbidden")
    if isinstance(error, PowerBINotFoundError):
        detail = _(
            "Power BI no longer has this report. An administrator can sync the catalogue in "
            "Admin → Reports."
        )
        return _error(502, detail, "ReportNotInPowerBI")
    return _error(
        502,
        _("Power BI refused the token request: %(reason)s", reason=error.message),
        "PowerBIError",
    )


@router.post(
    "/api/reports/{report_id}/token",
    response_model=TokenAnswer,
    responses={
        401: {"description": "Not signed in"},
        403: {"description": "No access, or no RLS identity for an RLS report"},
        404: {"description": "Unknown report"},
        429: {"description": "Power BI throttled; Retry-After says when to retry"},
        502: {"description": "Power BI refused (credentials, permissions)"},
        503: {"description": "Capacity off (code CapacityNotActive) or Power BI unreachable"},
    },
    # The session is checked before CSRF, so a signed-out caller gets 401, not 403.
    dependencies=[Depends(require_user), CsrfProtected],
)
async def issue_token(
    user: CurrentUser,
    report: ViewableReport,
    db: DbSession,
    settings: AppSettings,
    service: TokenServiceDep,
    clients: PowerBIClientsDep,
    probe: CapacityProbeDep,
    metrics: MetricsDep,
    body: Annotated[TokenRequestBody | None, Body()] = None,
) -> JSONResponse:
    try:
        context = await run_in_threadpool(_token_context, db, settings, user, report)
    except RlsIdentityMissingError as error:
        metrics.token_requests.labels(outcome="forbidden").inc()
        return _error(403, _(error.reason), "RlsIdentityMissing")
    connection = context.connection
    if not connection.ready or connection.connection is None:
        metrics.token_requests.labels(outcome="not_connected").inc()
        return _error(
            503,
            _(
                "The portal is not connected to Power BI yet. An administrator must set the "
                "connection in Admin → Settings."
            ),
            "PowerBINotConnected",
        )
    reason = body.reason if body is not None and body.reason else "load"
    # A viewer asking because its iframe saw the capacity fail gets a fresh look at it.
    capacity = await probe.reading(connection.connection, fresh=reason == "capacity")
    if capacity.running is False:
        metrics.token_requests.labels(outcome="capacity_off").inc()
        return _error(
            503,
            _("The Power BI capacity is off. The report comes back when it is running again."),
            CAPACITY_NOT_ACTIVE,
            retry_after=DEFAULT_RETRY_SECONDS,
        )
    try:
        issued: IssuedToken = await service.issue(
            minter=clients.get(connection.connection),
            scope=connection.cache_scope,
            report=report,
            identity=context.identity,
            policy=context.policy,
        )
    except PowerBIError as error:
        logger.warning("token for report %s refused: %s", report.id, error)
        metrics.token_requests.labels(outcome="powerbi_error").inc()
        return _powerbi_failure(error)
    (metrics.token_cache_hits if issued.shared else metrics.generate_token_calls).inc()
    metrics.token_requests.labels(outcome="issued").inc()
    await run_in_threadpool(_audit, db, user, report, issued, reason)
    return JSONResponse(issued.as_json(), headers={"Cache-Control": "no-store"})


def _audit(session: Session, user: User, report: Report, issued: IssuedToken, reason: str) -> None:
    record_token_issued(session=session, user=user, report=report, issued=issued, reason=reason)
    session.commit()
