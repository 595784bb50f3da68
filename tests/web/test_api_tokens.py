"""POST /api/reports/{reportId}/token against the real emulator over HTTP (docs/token-api.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, select

from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.access.viewer_health import viewer_health
from embedportal.db.models import AuditEntry, Group, User, ViewerEventCount
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE, REGIONAL_DATASET_ID
from embedportal.emulator.tokens import unverified_claims
from embedportal.powerbi import (
    EmbedToken,
    PowerBIAuthError,
    PowerBIError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.settings import Settings
from embedportal.tokens.gate import TokenGate
from embedportal.tokens.service import MemoryTokenCache, RedisTokenCache, TokenService
from embedportal.web.deps import TokenApiServices, get_token_api_services, token_api_call
from embedportal.web.input_guard import guard_input
from embedportal.web.push import PushEvent
from embedportal.web.routes import api_tokens
from embedportal.web.routes.api_tokens import TokenRoute
from tests.emulator.harness import Emulator
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of, post_token
from tests.support.servers import free_port
from tests.support.threaded import serve_in_thread

SALES = "Sales Overview"
REGIONAL = "Regional Performance"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


def use_services(app: FastAPI, **replaced: object) -> None:
    """The token API with some of its services replaced; the others are the app's own."""
    app.dependency_overrides[get_token_api_services] = lambda: dataclasses.replace(
        TokenApiServices.of(app.state), **replaced
    )


@pytest.fixture(params=["memory", "redis"])
def cache_backend(request: pytest.FixtureRequest, app: FastAPI) -> str:
    """Run a test with the in-process cache, and again with Redis when the suite has one."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        service = TokenService(
            cache=RedisTokenCache(url, prefix=f"embedportal-test:{uuid.uuid4().hex}")
        )
        use_services(app, service=service)
        app.state.on_shutdown.append(service.aclose)
    return str(request.param)


def generate_token_calls(emulator: Emulator) -> int:
    return int(emulator.stats()["generateTokenCalls"])


def test_a_granted_viewer_gets_a_token_in_the_documented_shape(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)

    response = post_token(client, synced_reports[SALES])

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "tokenId", "expiration", "expiresIn", "policy"}
    expiration = datetime.fromisoformat(body["expiration"])
    assert body["expiration"].endswith("Z") and expiration.tzinfo is not None
    expected = (expiration - datetime.now(UTC)).total_seconds()
    assert isinstance(body["expiresIn"], int)
    assert abs(body["expiresIn"] - expected) <= 2
    assert 3500 <= body["expiresIn"] <= 3600
    assert set(body["policy"]) == {
        "marginSeconds",
        "minInteractionAgeSeconds",
        "refreshEverySeconds",
        "checkIntervalSeconds",
        "maxBackoffSeconds",
    }
    claims = unverified_claims(body["token"])
    assert [item["id"] for item in claims["reports"]] == [synced_reports[SALES]]
    assert claims["identities"] == []  # the Sales dataset has no RLS: no identity is sent

    app.state.token_tally.flush()
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "token.issued")).one()
        assert entry.actor_email == "viewer@example.com"
        assert entry.target_id == synced_reports[SALES]
        assert entry.detail["tokenId"] == body["tokenId"]
        assert body["token"] not in str(entry.detail)


def test_the_audit_log_keeps_the_first_token_of_the_day_and_the_counters_keep_every_one(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    for _ in range(5):
        assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200
    with session_scope(app.state.session_factory) as db:
        # Nothing was written on the request path.
        assert db.scalars(select(AuditEntry).where(AuditEntry.action == "token.issued")).all() == []
    assert app.state.token_tally.flush() == 5
    with session_scope(app.state.session_factory) as db:
        entries = db.scalars(select(AuditEntry).where(AuditEntry.action == "token.issued")).all()
        assert len(entries) == 1
        assert entries[0].detail["firstToday"] is True
        counters = {
            row.event_type: row.count
            for row in db.scalars(select(ViewerEventCount))
            if row.report_id == synced_reports[SALES]
        }
        assert counters == {"tokenMinted": 1, "tokenShared": 4}
        today = datetime.now(UTC).date()
        health = viewer_health(session=db, first_day=today, last_day=today)
        assert (health.totals.handed_out, health.totals.minted) == (5, 1)


def test_signed_out_callers_get_401_json(client: TestClient, synced_reports: SyncedReports) -> None:
    response = client.post(f"/api/reports/{synced_reports[SALES]}/token")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"


def test_a_viewer_without_a_grant_gets_403_with_a_reason(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, emulator: Emulator
) -> None:
    client = login_as(make_user("viewer@example.com"))
    before = generate_token_calls(emulator)
    response = post_token(client, synced_reports[SALES])
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"
    assert "administrator" in response.json()["detail"]
    assert generate_token_calls(emulator) == before


def test_unknown_reports_get_404(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs
) -> None:
    client = login_as(make_user("admin@example.com", role="admin"))
    response = post_token(client, "00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_the_csrf_header_is_required(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    assert post_token(client, synced_reports[SALES], csrf="").status_code == 403
    assert post_token(client, synced_reports[SALES], csrf="wrong").status_code == 403


def test_the_rls_identity_is_sent_for_an_rls_report(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> None:
    viewer = make_user("manager@example.com", rls_username="north@example.com")
    grant(synced_reports[REGIONAL], group="Managers", members=[viewer], roles=[REGION_MANAGER_ROLE])
    client = login_as(viewer)
    response = post_token(client, synced_reports[REGIONAL])
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["token"])
    assert claims["identities"] == [
        {
            "username": "north@example.com",
            "roles": [REGION_MANAGER_ROLE],
            "datasets": [REGIONAL_DATASET_ID],
        }
    ]


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_an_rls_report_without_an_rls_role_gets_403_never_a_token(
    role: str,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    emulator: Emulator,
) -> None:
    user = make_user("someone@example.com", role=role)
    grant(synced_reports[REGIONAL], user=user)  # granted, but with no role
    client = login_as(user)
    before = generate_token_calls(emulator)
    response = post_token(client, synced_reports[REGIONAL])
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "RlsIdentityMissing"
    assert "row-level security" in body["detail"]
    assert "token" not in body
    assert generate_token_calls(emulator) == before


def test_removing_access_stops_the_next_refresh(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], group="Team", members=[viewer])
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200
    with session_scope(app.state.session_factory) as db:
        from embedportal.db.models import Group

        db.delete(db.scalars(select(Group).where(Group.name == "Team")).one())
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 403


def test_two_viewers_with_the_same_identity_share_one_generate_token(
    cache_backend: str,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    emulator: Emulator,
) -> None:
    first = make_user("one@example.com", rls_username="north@example.com")
    second = make_user("two@example.com", rls_username="north@example.com")
    grant(
        synced_reports[REGIONAL],
        group="North",
        members=[first, second],
        roles=[REGION_MANAGER_ROLE],
    )
    before = generate_token_calls(emulator)
    tokens = []
    for user in (first, second):
        response = post_token(login_as(user), synced_reports[REGIONAL])
        assert response.status_code == 200, response.text
        tokens.append(response.json()["tokenId"])
    assert generate_token_calls(emulator) - before == 1
    assert tokens[0] == tokens[1]


def test_different_identities_get_different_tokens(
    cache_backend: str,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    emulator: Emulator,
) -> None:
    north = make_user("north@example.com")
    south = make_user("south@example.com")
    grant(synced_reports[REGIONAL], group="Regions", members=[north, south])
    grant(synced_reports[REGIONAL], user=north, roles=[REGION_MANAGER_ROLE])
    grant(synced_reports[REGIONAL], user=south, roles=[REGION_MANAGER_ROLE])
    before = generate_token_calls(emulator)
    usernames = []
    for user in (north, south):
        response = post_token(login_as(user), synced_reports[REGIONAL])
        assert response.status_code == 200, response.text
        usernames.append(unverified_claims(response.json()["token"])["identities"][0]["username"])
    assert generate_token_calls(emulator) - before == 2
    assert usernames == ["north@example.com", "south@example.com"]


def test_twenty_concurrent_requests_cause_one_generate_token(
    cache_backend: str,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    emulator: Emulator,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    before = generate_token_calls(emulator)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _: post_token(client, synced_reports[SALES], csrf=csrf), range(20))
        )
    assert [response.status_code for response in responses] == [200] * 20
    assert len({response.json()["tokenId"] for response in responses}) == 1
    assert generate_token_calls(emulator) - before == 1


class FailingClients:
    """Stands in for the app's PowerBIClients: every GenerateToken raises `error`."""

    def __init__(self, error: PowerBIError) -> None:
        self.error = error

    def get(self, connection: object) -> FailingClients:
        return self

    async def generate_token(self, **_kwargs: object) -> None:
        raise self.error

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (
            PowerBIError("capacity off", status=400, code="CapacityNotActive"),
            503,
            "CapacityNotActive",
            "5",
        ),
        (
            PowerBIThrottledError("slow down", status=429, retry_after_seconds=42.5),
            429,
            "Throttled",
            "43",
        ),
        (PowerBIUnavailableError("timed out"), 503, "PowerBIUnavailable", "5"),
        (PowerBIAuthError("bad secret", status=401), 502, "PowerBIAuthFailed", None),
        (PowerBIError("strange", status=418), 502, "PowerBIError", None),
    ],
)
def test_power_bi_failures_are_passed_on_with_a_reason_never_a_500(
    error: PowerBIError,
    status: int,
    code: str,
    retry_after: str | None,
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    use_services(app, clients=FailingClients(error))
    response = post_token(client, synced_reports[SALES])
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert response.headers.get("retry-after") == retry_after


def test_without_a_power_bi_connection_the_answer_says_so(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    unconnected = app.state.settings.model_copy(update={"powerbi_client_secret": None})
    use_services(app, settings=unconnected)
    response = post_token(client, synced_reports[SALES])
    assert response.status_code == 503
    assert response.json()["code"] == "PowerBINotConnected"


# --- the hot path: a burst of every open viewer at once ----------------------------------------


def session_of(app: FastAPI, user: User) -> tuple[str, str]:
    """(session cookie, CSRF token) of a new session for the user."""
    with session_scope(app.state.session_factory) as db:
        found = db.get(User, user.id)
        assert found is not None
        new = start_session(session=db, user=found)
        return new.cookie_value, new.record.csrf_token


def test_a_cache_hit_touches_no_database_at_all(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
    assert statements == []


def test_access_changed_on_another_instance_is_seen_once_its_push_event_arrives(
    app: FastAPI,
    settings: Settings,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], group="Team", members=[viewer])
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200
    # "Another instance": its own engine, so this process sees no commit of its own.
    elsewhere = create_db_engine(settings.resolved_database_url)
    try:
        with session_scope(create_session_factory(elsewhere)) as db:
            db.execute(delete(Group).where(Group.name == "Team"))
    finally:
        elsewhere.dispose()
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 200  # cached
    app.state.push_hub.publish(PushEvent(kind="access", user_id=viewer.id))
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 403


class SlowClients:
    """Stands in for PowerBIClients: GenerateToken takes ``delay`` seconds, or fails."""

    def __init__(self, delay: float = 0.0, error: PowerBIError | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls = 0

    def get(self, connection: object) -> SlowClients:
        return self

    async def generate_token(self, **_kwargs: object) -> EmbedToken:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return EmbedToken(
            token=f"token-{self.calls}",
            token_id=f"id-{self.calls}",
            expiration=datetime.now(UTC) + timedelta(hours=1),
        )

    async def aclose(self) -> None:
        return None


def test_power_bi_hung_is_answered_503_with_retry_after_and_one_call(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    hung = SlowClients(delay=60)
    patient = TokenService(cache=MemoryTokenCache(), wait_seconds=0.2, first_wait_seconds=0.2)
    use_services(app, clients=hung, service=patient)
    app.state.on_shutdown.append(patient.aclose)  # cancels the mint still waiting on Power BI
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(lambda _: post_token(client, synced_reports[SALES], csrf=csrf), range(10))
        )
    assert {response.status_code for response in responses} == {503}
    assert {response.json()["code"] for response in responses} == {"PowerBIUnavailable"}
    assert all(response.headers.get("retry-after") for response in responses)
    assert hung.calls == 1


def test_power_bi_throttling_costs_one_call_and_every_viewer_gets_its_retry_after(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    throttled = SlowClients(
        delay=0.1, error=PowerBIThrottledError("slow down", status=429, retry_after_seconds=30)
    )
    use_services(app, clients=throttled)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _: post_token(client, synced_reports[SALES], csrf=csrf), range(20))
        )
    assert {response.status_code for response in responses} == {429}
    assert {int(response.headers["retry-after"]) for response in responses} <= set(range(25, 31))
    assert post_token(client, synced_reports[SALES], csrf=csrf).status_code == 429
    assert throttled.calls == 1


def test_a_saturated_token_api_answers_busy_with_retry_after_never_hangs(
    app: FastAPI,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    csrf = csrf_of(client, "/reports")
    app.state.token_gate = TokenGate(limit=1, queue_seconds=0.05)
    use_services(app, clients=SlowClients(delay=0.5))
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(
            pool.map(lambda _: post_token(client, synced_reports[SALES], csrf=csrf), range(4))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200 and 503 in statuses
    busy = [response for response in responses if response.status_code == 503]
    assert {response.json()["code"] for response in busy} == {"Busy"}
    assert all(response.headers["retry-after"] == "1" for response in busy)


@pytest.mark.parametrize("redis", ["none", "gone"])
def test_a_burst_of_256_viewers_is_answered_and_healthz_answers_throughout(
    redis: str,
    app: FastAPI,
    settings: Settings,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    grant: Grant,
) -> None:
    if redis == "gone":  # a Redis URL nothing listens on: the token API falls back to memory
        service = TokenService(
            cache=RedisTokenCache(f"redis://127.0.0.1:{free_port()}/0", prefix="gone")
        )
        use_services(app, service=service)
        app.state.on_shutdown.append(service.aclose)
    viewers = [make_user(f"viewer{n}@example.com") for n in range(8)]
    grant(synced_reports[SALES], group="Wall", members=viewers)
    sessions = [session_of(app, viewer) for viewer in viewers]
    report_id = synced_reports[SALES]

    async def burst(base_url: str) -> tuple[list[httpx.Response], list[int]]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

            async def ask(n: int) -> httpx.Response:
                cookie, csrf = sessions[n % len(sessions)]
                return await http.post(
                    f"/api/reports/{report_id}/token",
                    headers={"X-CSRF-Token": csrf, "Cookie": f"{SESSION_COOKIE}={cookie}"},
                    json={"reason": "load"},
                )

            health: list[int] = []
            done = asyncio.Event()

            async def watch_health() -> None:
                # A new connection each time: under the burst a kept-alive one may sit idle
                # past the server's keep-alive time and be closed as it is reused.
                fresh = httpx.Limits(max_keepalive_connections=0)
                async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=fresh) as other:
                    while not done.is_set():
                        health.append((await other.get("/healthz")).status_code)
                        await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch_health())
            try:
                answers = await asyncio.gather(*(ask(n) for n in range(256)))
            finally:
                done.set()
                await watcher
            return list(answers), health

    with serve_in_thread(app) as base_url:
        answers, health = asyncio.run(burst(base_url))
    statuses = {response.status_code for response in answers}
    assert statuses <= {200, 503}, statuses
    assert 200 in statuses
    for response in answers:
        if response.status_code == 503:
            assert response.headers.get("retry-after"), response.text
    assert health and set(health) == {200}


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"", None, 200),
        (b"{}", "application/json", 200),
        (b'{"reason":"margin"}', "application/json", 200),
        (b"null", "application/json", 200),
        (b'{"reason":"two words"}', "application/json", 422),
        (b'{"reason":7}', "application/json", 422),
        (b"not json", "application/json", 422),
        (b"[1]", "application/json", 422),
        (b'{"reason":"margin"}', "text/plain", 422),
        (b'{"reason":"margin"}', None, 422),
        (b"reason=margin", "application/x-www-form-urlencoded", 422),
    ],
)
def test_the_token_request_body_is_optional_and_refused_when_malformed(
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
    content: bytes,
    content_type: str | None,
    status: int,
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    client = login_as(viewer)
    headers = {"X-CSRF-Token": csrf_of(client, "/reports"), "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(
        f"/api/reports/{synced_reports[SALES]}/token", content=content, headers=headers
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["code"] == "InvalidRequest"


def test_the_hand_written_token_handler_runs_what_the_route_declares(app: FastAPI) -> None:
    """TokenRoute skips FastAPI's dependency solving and runs these itself: a dependency added
    to the app or the route must be added there too."""
    (route,) = api_tokens.router.routes
    assert isinstance(route, TokenRoute)
    assert [dependency.call for dependency in route.dependant.dependencies] == [token_api_call]
    assert [dependency.dependency for dependency in app.router.dependencies] == [guard_input]
    assert [param.name for param in route.dependant.path_params] == ["report_id"]
    assert not route.dependant.query_params and not route.dependant.header_params
