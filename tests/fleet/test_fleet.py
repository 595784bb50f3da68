"""The fleet behaves as one portal (issue #10): tokens and single flight shared, pushes cross
instances, one capacity controller acts, a killed instance's viewers carry on elsewhere; and
faults — Redis stopped, PostgreSQL connections terminated, the emulator stopped or slowed — are
survived with nothing lost. Real processes on loopback; the test plays the load balancer."""

from __future__ import annotations

import itertools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select, text

from embedportal.db.models import AuditEntry, ControllerLease, Organization, Report
from tests.fleet.conftest import logs_of
from tests.fleet.support import Fleet, Viewer, new_demo_viewer, open_stream, rls_report_id

pytestmark = pytest.mark.fleet

PUSH_SECONDS = 2.0
_every_minutes = itertools.count(2)


def post_token(viewer: Viewer, base_url: str, report_id: str) -> httpx.Response:
    with viewer.client(base_url) as client:
        return client.post(
            f"/api/reports/{report_id}/token",
            headers={"X-CSRF-Token": viewer.csrf},
            json={"reason": "load"},
        )


def save_settings(admin: Viewer, base_url: str, **changes: str) -> httpx.Response:
    data = {
        "name": "Fleet",
        "time_zone": "UTC",
        "powerbi_tenant_id": "",
        "powerbi_client_id": "",
        "powerbi_client_secret": "",
        "powerbi_workspace_id": "",
        "refresh_every_minutes": str(next(_every_minutes)),
        "token_lifetime_minutes": "60",
        "refresh_margin_minutes": "10",
        **changes,
        "csrf_token": admin.csrf,
    }
    with admin.client(base_url) as client:
        return client.post("/admin/settings", data=data)


def viewer_reports(fleet: Fleet, viewer: Viewer) -> list[str]:
    """Report ids the demo viewer may open, as the token API says."""
    engine = fleet.engine()
    try:
        with engine.connect() as connection:
            ids = [row[0] for row in connection.execute(select(Report.id).order_by(Report.name))]
    finally:
        engine.dispose()
    base = fleet.instances["a"].base_url
    return [
        report_id for report_id in ids if post_token(viewer, base, report_id).status_code == 200
    ]


def stored(fleet: Fleet) -> tuple[int, int | None]:
    """(audit entries, the organization's refresh-every minutes) as the database holds them."""
    engine = fleet.engine()
    try:
        with engine.connect() as connection:
            audit = connection.scalar(select(func.count()).select_from(AuditEntry))
            every = connection.scalar(
                select(Organization.refresh_every_minutes).where(Organization.id == 1)
            )
    finally:
        engine.dispose()
    return int(audit or 0), every


def is_signed_in(viewer: Viewer, base_url: str) -> bool:
    with viewer.client(base_url) as client:
        return client.get("/account").status_code == 200


def metric(base_url: str, name: str) -> float | None:
    text_ = httpx.get(base_url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text_, re.MULTILINE)
    return float(match.group(1)) if match else None


def wait_until(predicate: object, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False


# --- One portal -----------------------------------------------------------------------------


def test_one_generate_token_per_report_and_identity_for_the_whole_fleet(
    healthy_fleet: Fleet,
) -> None:
    fleet = healthy_fleet
    viewer = fleet.viewer("a")
    engine = fleet.engine()
    try:
        with engine.connect() as connection:
            report_ids = [row[0] for row in connection.execute(select(Report.id))]
    finally:
        engine.dispose()
    assert report_ids
    report_id = report_ids[0]
    before = fleet.generate_token_calls()
    targets = [process.base_url for process in fleet.instances.values()] * 6
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        answers = list(pool.map(lambda base: post_token(viewer, base, report_id), targets))
    assert [answer.status_code for answer in answers] == [200] * len(targets), [
        answer.text[:200] for answer in answers if answer.status_code != 200
    ]
    assert len({answer.json()["tokenId"] for answer in answers}) == 1
    assert fleet.generate_token_calls() - before == 1


def test_a_settings_change_on_one_instance_reaches_viewers_on_the_others(
    healthy_fleet: Fleet,
) -> None:
    fleet = healthy_fleet
    viewer = fleet.viewer("b")
    admin = fleet.admin("a")
    on_b = open_stream(viewer, fleet.instances["b"].base_url)
    on_w = open_stream(viewer, fleet.instances["w"].base_url)
    seen_b, seen_w = len(on_b.events), len(on_w.events)
    assert (
        save_settings(admin, fleet.instances["a"].base_url, refresh_every_minutes="7").status_code
        == 303
    )
    for stream, seen in ((on_b, seen_b), (on_w, seen_w)):
        event = stream.wait_for("policy", seen, PUSH_SECONDS)
        assert event is not None, f"no policy push on {stream.base_url}"
        assert event[1]["policy"]


def test_exactly_one_capacity_controller_acts(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    engine = fleet.engine()
    holders: set[str] = set()
    try:
        for _ in range(8):
            with engine.connect() as connection:
                lease = connection.execute(
                    select(ControllerLease.holder, ControllerLease.expires_at)
                ).all()
            assert len(lease) == 1
            holder, expires_at = lease[0]
            assert expires_at.replace(tzinfo=UTC) > datetime.now(UTC)
            holders.add(holder)
            time.sleep(0.4)
    finally:
        engine.dispose()
    assert len(holders) == 1


def test_a_killed_instances_viewer_reconnects_to_another_without_signing_in_again(
    healthy_fleet: Fleet,
) -> None:
    fleet = healthy_fleet
    viewer = fleet.viewer("a")
    admin = fleet.admin("w")
    stream = open_stream(viewer, fleet.instances["a"].base_url)
    fleet.instances["a"].kill()
    assert stream.ended.wait(10), "the push stream outlived its instance"
    # The browser's EventSource reconnects; the load balancer sends it to a living instance.
    again = open_stream(viewer, fleet.instances["b"].base_url)
    assert again.status == 200
    seen = len(again.events)
    assert save_settings(admin, fleet.instances["w"].base_url).status_code == 303
    assert again.wait_for("policy", seen, PUSH_SECONDS) is not None
    assert is_signed_in(viewer, fleet.instances["b"].base_url)


# --- Faults ---------------------------------------------------------------------------------


def test_postgresql_connections_terminated_fail_cleanly_and_recover(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    viewer, admin = fleet.viewer("a"), fleet.admin("b")
    assert (
        save_settings(admin, fleet.instances["b"].base_url, refresh_every_minutes="21").status_code
        == 303
    )
    audit_before, every_before = stored(fleet)
    report_id = viewer_reports(fleet, viewer)[0]
    bases = [process.base_url for process in fleet.instances.values()]

    assert fleet.terminate_connections() > 0
    statuses: list[int] = []
    for base in bases * 3:
        with viewer.client(base) as client:
            statuses.append(client.get("/reports").status_code)
        statuses.append(post_token(viewer, base, report_id).status_code)
    assert set(statuses) <= {200, 503}, statuses

    assert wait_until(
        lambda: all(httpx.get(base + "/healthz", timeout=5).status_code == 200 for base in bases),
        timeout=20,
    )
    for base in bases:
        assert post_token(viewer, base, report_id).status_code == 200
        assert is_signed_in(viewer, base)
    audit_after, every_after = stored(fleet)
    assert every_after == every_before == 21
    assert audit_after >= audit_before


def test_while_the_database_is_unreachable_requests_are_503_with_a_reason(
    healthy_fleet: Fleet,
) -> None:
    """Connections cut again and again (as during a restart): 503 + Retry-After, never 500."""
    fleet = healthy_fleet
    viewer = fleet.viewer("a")
    a = fleet.instances["a"].base_url
    name = fleet.database_url.rsplit("/", 1)[-1]
    with fleet.admin_engine.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
    try:
        fleet.terminate_connections()
        with viewer.client(a) as client:
            page = client.get("/reports")
            api = client.post(
                "/api/reports/anything/token",
                headers={"X-CSRF-Token": viewer.csrf},
                json={"reason": "load"},
            )
        health = httpx.get(a + "/healthz", timeout=5)
    finally:
        with fleet.admin_engine.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    assert page.status_code == 503 and page.headers.get("retry-after")
    assert api.status_code == 503 and api.json()["code"] == "DatabaseUnavailable"
    assert health.status_code == 503 and health.json()["down"] == ["database"]
    assert wait_until(lambda: is_signed_in(viewer, a), timeout=20)


def test_the_emulator_stopped_then_back(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    a = fleet.instances["a"].base_url
    viewer = fleet.viewer("a")
    report_id = viewer_reports(fleet, viewer)[0]
    fleet.emulator.stop()
    health = httpx.get(a + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["down"] == ["powerbi"]
    # A token still valid in the shared cache is served; Power BI is not needed for it.
    assert post_token(viewer, a, report_id).status_code == 200
    fleet.emulator.start()
    assert wait_until(lambda: httpx.get(a + "/healthz", timeout=5).json()["down"] == [], timeout=10)
    assert post_token(viewer, a, report_id).status_code == 200


def test_the_emulator_slowed_healthz_stays_fast_and_names_it(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    a = fleet.instances["a"].base_url
    fleet.proxy.delay = 3.0
    try:
        time.sleep(1.0)  # past the health cache
        health = httpx.get(a + "/healthz", timeout=2.5)
        assert health.status_code == 200
        assert health.json()["down"] == ["powerbi"]
    finally:
        fleet.proxy.delay = 0.0


def test_the_emulator_slowed_a_token_miss_answers_503_with_retry_after(
    healthy_fleet: Fleet,
) -> None:
    fleet = healthy_fleet
    a = fleet.instances["a"].base_url
    viewer = new_demo_viewer(fleet)  # its row-level-security token is minted by nobody yet
    report_id = rls_report_id(fleet)
    fleet.proxy.delay = 30.0
    try:
        # The contract: a clear answer within seconds, not a wait on Power BI.
        with viewer.client(a, timeout=8.0) as client:
            answer = client.post(
                f"/api/reports/{report_id}/token",
                headers={"X-CSRF-Token": viewer.csrf},
                json={"reason": "load"},
            )
    finally:
        fleet.proxy.delay = 0.0
    assert answer.status_code in (429, 503)
    assert answer.json()["code"] != "CapacityNotActive"
    assert answer.headers.get("retry-after")


# --- Observability ---------------------------------------------------------------------------


def test_logs_are_json_with_request_ids_and_never_a_token_or_cookie(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    viewer = fleet.viewer("b")
    report_id = viewer_reports(fleet, viewer)[0]
    answer = post_token(viewer, fleet.instances["b"].base_url, report_id)
    assert answer.status_code == 200
    assert answer.headers["x-request-id"]
    logs = logs_of(fleet)
    assert answer.json()["token"] not in logs
    for value in viewer.cookies.values():  # type: ignore[attr-defined]
        assert value not in logs
    assert answer.headers["x-request-id"] in logs


# --- Redis (last: after a Redis restart the token cache's pooled connections fail once) ------


def test_redis_stopped_and_restarted(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    a, b = fleet.instances["a"].base_url, fleet.instances["b"].base_url
    viewer, admin = fleet.viewer("a"), fleet.admin("a")
    local = open_stream(viewer, a)
    audit_before, _ = stored(fleet)

    fleet.redis.stop()
    health = httpx.get(a + "/healthz", timeout=5)
    assert health.status_code == 200
    assert "redis" in health.json()["down"]
    seen = len(local.events)
    saved = save_settings(admin, a, refresh_every_minutes="11")
    assert saved.status_code == 303, saved.text[:300]
    # This instance's viewers still hear it; the change is in the database for every instance.
    assert local.wait_for("policy", seen, PUSH_SECONDS) is not None
    audit_during, every = stored(fleet)
    assert every == 11 and audit_during > audit_before
    assert is_signed_in(viewer, b)

    fleet.redis.start()
    assert wait_until(
        lambda: (
            metric(a, "embedportal_push_redis_live") == 1.0
            and metric(b, "embedportal_push_redis_live") == 1.0
        ),
        timeout=20,
    ), "the push hub did not go back to Redis"
    remote = open_stream(viewer, b)
    seen = len(remote.events)
    assert save_settings(admin, a, refresh_every_minutes="12").status_code == 303
    assert remote.wait_for("policy", seen, PUSH_SECONDS) is not None
    assert httpx.get(a + "/healthz", timeout=5).json()["down"] == []
    # The loss was logged once per instance and part, not once per event.
    lost = logs_of(fleet).count("Redis unreachable for publishing")
    assert lost <= len(fleet.instances) * 2


def test_with_redis_down_the_token_api_answers_from_the_local_cache(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    a = fleet.instances["a"].base_url
    viewer = fleet.viewer("a")
    report_id = viewer_reports(fleet, viewer)[0]
    fleet.redis.stop()
    answers = [post_token(viewer, a, report_id).status_code for _ in range(3)]
    assert answers == [200, 200, 200]


def test_after_a_redis_restart_the_token_api_never_answers_500(healthy_fleet: Fleet) -> None:
    fleet = healthy_fleet
    viewer = fleet.viewer("a")
    report_id = viewer_reports(fleet, viewer)[0]
    fleet.redis.stop()
    fleet.redis.start()
    statuses = [
        post_token(viewer, process.base_url, report_id).status_code
        for process in fleet.instances.values()
        for _ in range(2)
    ]
    assert 500 not in statuses, statuses
