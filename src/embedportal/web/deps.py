"""Dependencies routes declare: a database session, who may call them, the app's services,
and the report they act on.

Authorisation is a dependency, never an `if` repeated in route bodies; services are typed
dependencies, never read from `request.app.state` in a route, so a test swaps one with
`app.dependency_overrides`.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.catalogue import PersonRights
from embedportal.access.grants import can_view
from embedportal.access.microsoft_accounts import MicrosoftSignIns
from embedportal.access.organization import PowerBIClients
from embedportal.access.person_tokens import PersonTokens
from embedportal.access.read_cache import ReadCache
from embedportal.access.two_step import must_enrol_before_admin_pages
from embedportal.access.viewer_health import TokenTally
from embedportal.capacity.control import CapacityControl
from embedportal.capacity.controller import CapacityController
from embedportal.capacity.ledger import ActivityLedger
from embedportal.capacity.probe import CapacityProbe
from embedportal.db.models import Report, User
from embedportal.db.session import session_scope
from embedportal.health import HealthChecker
from embedportal.i18n import _
from embedportal.metrics import PortalMetrics
from embedportal.settings import Settings
from embedportal.tokens.gate import TokenGate
from embedportal.tokens.service import TokenService
from embedportal.web.client_address import client_address
from embedportal.web.push import PushHub
from embedportal.web.rate_limit import SessionBuckets

RowT = TypeVar("RowT")

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """Raised by require_user; pages redirect to sign-in, the API answers 401 JSON."""


class NotAllowed(Exception):
    """Raised when the signed-in user lacks the role; pages show 403, the API answers 403 JSON."""


class TwoStepEnrolmentRequired(Exception):
    """An administrator the organization requires two-step sign-in of has none yet: pages lead
    to setting it up, the API answers 403 JSON."""


def _app_service(name: str) -> Callable[[Request], Any]:
    """The dependency that hands a route the app's ``name`` service (built in create_app)."""

    # Async on purpose: FastAPI runs a plain function dependency in the threadpool, a hop per
    # service per request that the token API's hot path cannot afford.
    async def service(request: Request) -> Any:
        return getattr(request.app.state, name)

    service.__name__ = f"get_{name}"
    return service


# One function per service, so a test overrides exactly one: app.dependency_overrides[...].
get_settings = _app_service("settings")
get_token_service = _app_service("token_service")
get_capacity_probe = _app_service("capacity_probe")
get_powerbi_clients = _app_service("powerbi_clients")
get_metrics = _app_service("metrics")
get_push_hub = _app_service("push_hub")
get_activity_ledger = _app_service("activity_ledger")
get_capacity_control = _app_service("capacity_control")
get_capacity_controller = _app_service("capacity_controller")
get_read_cache = _app_service("read_cache")
get_token_gate = _app_service("token_gate")
get_token_tally = _app_service("token_tally")
get_session_factory = _app_service("session_factory")
get_health_checker = _app_service("health")
get_telemetry_limiter = _app_service("telemetry_limiter")
get_microsoft_sign_ins = _app_service("microsoft_sign_ins")
get_person_tokens = _app_service("person_tokens")


@dataclass(frozen=True, slots=True)
class TokenApiServices:
    """The services the token API uses, handed over as one dependency: it is called by every
    open viewer, and each dependency FastAPI resolves costs the hot path a few microseconds.
    A test replaces one of them with ``dataclasses.replace(TokenApiServices.of(app.state), …)``
    as the override of ``get_token_api_services``."""

    settings: Settings
    session_factory: sessionmaker[Session]
    read_cache: ReadCache
    gate: TokenGate
    tally: TokenTally
    service: TokenService
    clients: PowerBIClients
    probe: CapacityProbe
    control: CapacityControl
    controller: CapacityController
    ledger: ActivityLedger
    metrics: PortalMetrics
    # User-owned reports: people's own Power BI tokens, and the sign-in flows that renew them.
    person_tokens: PersonTokens
    sign_ins: MicrosoftSignIns

    @classmethod
    def of(cls, state: Any) -> TokenApiServices:
        """The ones built in create_app (``app.state``)."""
        return cls(
            settings=state.settings,
            session_factory=state.session_factory,
            read_cache=state.read_cache,
            gate=state.token_gate,
            tally=state.token_tally,
            service=state.token_service,
            clients=state.powerbi_clients,
            probe=state.capacity_probe,
            control=state.capacity_control,
            controller=state.capacity_controller,
            ledger=state.activity_ledger,
            metrics=state.metrics,
            person_tokens=state.person_tokens,
            sign_ins=state.microsoft_sign_ins,
        )


async def get_token_api_services(request: Request) -> TokenApiServices:
    return TokenApiServices.of(request.app.state)


@dataclass(frozen=True, slots=True)
class TokenApiCall:
    """Who asks (signed in, CSRF checked) and the services that answer them."""

    user: User
    api: TokenApiServices


async def token_api_call(request: Request) -> TokenApiCall:
    """The token API's one dependency: ``signed_in_user_with_csrf`` and
    ``get_token_api_services`` resolved together. FastAPI's solving of each dependency was
    about a tenth of a cache hit's CPU (bench/profile_hit.py), and every open viewer calls it.
    A test's override of ``get_token_api_services`` still applies, called as FastAPI calls a
    dependency that declares no parameters."""
    user = await signed_in_user_with_csrf(request)
    override = request.app.dependency_overrides.get(get_token_api_services)
    if override is None:
        return TokenApiCall(user=user, api=TokenApiServices.of(request.app.state))
    api = override()
    if inspect.isawaitable(api):
        api = await api
    return TokenApiCall(user=user, api=api)


async def get_person_rights(request: Request) -> PersonRights:
    """What a person's own Power BI token reaches (user-owned reports), as one dependency."""
    state = request.app.state
    return PersonRights(
        tokens=state.person_tokens,
        flows=state.microsoft_sign_ins,
        session_factory=state.session_factory,
        settings=state.settings,
    )


def is_htmx(request: Request) -> bool:
    """True when htmx asked for the page: answer with the partial it swaps in."""
    return request.headers.get("hx-request") == "true"


AppSettings = Annotated[Settings, Depends(get_settings)]
TokenServiceDep = Annotated[TokenService, Depends(get_token_service)]
CapacityProbeDep = Annotated[CapacityProbe, Depends(get_capacity_probe)]
PowerBIClientsDep = Annotated[PowerBIClients, Depends(get_powerbi_clients)]
MetricsDep = Annotated[PortalMetrics, Depends(get_metrics)]
PushHubDep = Annotated[PushHub, Depends(get_push_hub)]
ActivityLedgerDep = Annotated[ActivityLedger, Depends(get_activity_ledger)]
CapacityControlDep = Annotated[CapacityControl, Depends(get_capacity_control)]
CapacityControllerDep = Annotated[CapacityController, Depends(get_capacity_controller)]
ReadCacheDep = Annotated[ReadCache, Depends(get_read_cache)]
TokenGateDep = Annotated[TokenGate, Depends(get_token_gate)]
TokenTallyDep = Annotated[TokenTally, Depends(get_token_tally)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
HealthCheckerDep = Annotated[HealthChecker, Depends(get_health_checker)]
TelemetryLimiterDep = Annotated[SessionBuckets, Depends(get_telemetry_limiter)]
IsHtmx = Annotated[bool, Depends(is_htmx)]
MicrosoftSignInsDep = Annotated[MicrosoftSignIns, Depends(get_microsoft_sign_ins)]
PersonTokensDep = Annotated[PersonTokens, Depends(get_person_tokens)]
TokenApiServicesDep = Annotated[TokenApiServices, Depends(get_token_api_services)]
TokenApiCallDep = Annotated[TokenApiCall, Depends(token_api_call)]
PersonRightsDep = Annotated[PersonRights, Depends(get_person_rights)]


async def client_address_of(request: Request, settings: AppSettings) -> str:
    """The client's address, from `X-Forwarded-For` only behind a trusted proxy."""
    return client_address(
        peer=request.client.host if request.client else None,
        forwarded_for=request.headers.get("x-forwarded-for"),
        trusted=settings.trusted_proxy_networks,
    )


ClientAddress = Annotated[str, Depends(client_address_of)]


def get_db(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


# "function" scope commits before the response leaves, so a redirect never outruns its write.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


async def verify_csrf_when_signed_in(request: Request) -> None:
    """For sign-out: a browser whose session already ended has nothing left to protect, and
    its page still carries the old session's token, so it is let through."""
    if request.state.user is not None:
        await verify_csrf(request)


def optional_user(request: Request, db: DbSession) -> User | None:
    """The signed-in user, loaded into this request's database session."""
    user: User | None = request.state.user
    if user is None:
        return None
    return db.get(User, user.id)


def require_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None or user.is_blocked:
        raise NotSignedIn()
    return user


async def signed_in_user(request: Request) -> User:
    """The signed-in user as the request context resolved them (read through the read cache),
    without a database session: for hot paths that must not hold a pooled connection. The
    object is shared and detached: read it, never change it."""
    user: User | None = request.state.user
    if user is None or user.is_blocked:
        raise NotSignedIn()
    return user


async def signed_in_user_with_csrf(request: Request) -> User:
    """``signed_in_user``, then ``verify_csrf``, as one dependency for the token API (each
    dependency costs its hot path): a signed-out caller gets 401, not 403."""
    user = await signed_in_user(request)
    await verify_csrf(request)
    return user


def require_admin(
    request: Request,
    user: Annotated[User, Depends(require_user)],
    db: DbSession,
    settings: AppSettings,
) -> User:
    # A session a single sign-on link opened is another application's word for who this is,
    # meant for reading reports: never the way into the admin pages, even for an admin.
    if not user.is_admin or request.state.via_sso:
        raise NotAllowed()
    if must_enrol_before_admin_pages(session=db, user=user, settings=settings):
        raise TwoStepEnrolmentRequired()
    return user


async def verify_csrf(request: Request) -> None:
    """State-changing requests must echo the CSRF token (form field or X-CSRF-Token header)."""
    expected: str = getattr(request.state, "csrf_token", "")
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            supplied = value if isinstance(value, str) else None
    if not expected or not supplied or not hmac.compare_digest(expected, supplied):
        raise CsrfRejected()


class CsrfRejected(HTTPException):
    """A 403 for the CSRF token alone, with its own JSON `code`: an open viewer whose session
    changed in another tab fetches a fresh token and tries again, while a real refusal (403
    `Forbidden`) means the access is gone."""

    code = "CsrfTokenInvalid"

    def __init__(self) -> None:
        super().__init__(
            status_code=403,
            detail=_("The form has expired or did not come from this site. Reload and try again."),
        )


CurrentUser = Annotated[User, Depends(require_user)]
SignedInUser = Annotated[User, Depends(signed_in_user)]
SignedInUserWithCsrf = Annotated[User, Depends(signed_in_user_with_csrf)]
AdminUser = Annotated[User, Depends(require_admin)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
CsrfProtected = Depends(verify_csrf)
CsrfProtectedWhenSignedIn = Depends(verify_csrf_when_signed_in)


def stored_or_404(row: RowT | None, missing: str) -> RowT:
    """The row a path named, or a 404 saying (translated) what there is no such thing of."""
    if row is None:
        raise HTTPException(status_code=404, detail=_(missing))
    return row


def known_report(report_id: str, db: DbSession) -> Report:
    """The report, if the catalogue has it and it is still in Power BI; else 404."""
    report = db.get(Report, report_id)
    if report is None or not report.is_available:
        raise HTTPException(status_code=404, detail=_("There is no such report."))
    return report


def viewable_report(
    user: CurrentUser, report: Annotated[Report, Depends(known_report)], db: DbSession
) -> Report:
    """The report, if the signed-in user may open it: 401 signed out, 404 unknown, 403 not
    granted. (The user comes first so a signed-out caller learns nothing about report ids.)"""
    if not can_view(session=db, user=user, report=report):
        raise HTTPException(
            status_code=403,
            detail=_(
                "You do not have access to this report. Ask an administrator to grant it to you."
            ),
        )
    return report


KnownReport = Annotated[Report, Depends(known_report)]
ViewableReport = Annotated[Report, Depends(viewable_report)]
