"""embedportal.client against a real portal over HTTP (uvicorn in a thread): every call,
and each refusal raised as its own error class."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from embedportal.client import (
    ApiError,
    EmbedportalClient,
    Filter,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthorized,
)
from embedportal.db.models import SsoLink
from embedportal.db.session import session_scope
from tests.support.api_keys import make_api_key
from tests.support.portal import a_report
from tests.support.threaded import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Room for each test's calls, and a limit a loop of calls reaches whatever the speed."""
    return {"api_burst": 40, "api_requests_per_minute": 6}


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with session_scope(app.state.session_factory) as db:
        db.add(a_report("sales"))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def portal(app: FastAPI, base_url: str) -> Iterator[EmbedportalClient]:
    with EmbedportalClient(base_url, make_api_key(app)) as client:
        yield client


def test_users_from_creation_to_deletion(portal: EmbedportalClient) -> None:
    ana = portal.create_user(email="ana@example.com", name="Ana", rls_roles=["North"])
    assert ana.email == "ana@example.com" and ana.rls_roles == ["North"]
    assert ana.created_at.tzinfo is not None and ana.last_login_at is None
    assert portal.create_user(email="ANA@example.com").id == ana.id  # idempotent by e-mail
    for number in range(3):
        portal.create_user(email=f"user{number}@example.com")
    assert portal.list_users(q="ana").total == 1
    assert {user.email for user in portal.iter_users()} >= {"ana@example.com", "user2@example.com"}
    assert portal.update_user(ana.id, name="Ana Souza").name == "Ana Souza"
    assert portal.block_user(ana.id).blocked
    assert [user.id for user in portal.list_users(blocked=True).items] == [ana.id]
    assert not portal.unblock_user(ana.id).blocked
    portal.delete_user(ana.id)
    with pytest.raises(NotFound) as missing:
        portal.get_user(ana.id)
    assert missing.value.code == "NotFound" and missing.value.status == 404


def test_groups_and_members(portal: EmbedportalClient) -> None:
    ana = portal.create_user(email="ana@example.com")
    group = portal.create_group(name="North office", description="Sales, north")
    assert portal.get_group(group.id).name == "North office"
    assert portal.add_member(group.id, email="ana@example.com").id == ana.id
    assert [member.email for member in portal.list_members(group.id)] == ["ana@example.com"]
    assert [found.member_count for found in portal.list_groups()] == [1]
    portal.remove_member(group.id, ana.id)
    assert portal.list_members(group.id) == []
    portal.delete_group(group.id)
    assert portal.list_groups() == []


def test_reports_grants_and_the_audit(portal: EmbedportalClient) -> None:
    ana = portal.create_user(email="ana@example.com")
    assert [report.id for report in portal.list_reports()] == ["sales"]
    assert portal.get_report("sales").name == "sales"
    grant = portal.grant_report("sales", user_id=ana.id)
    assert grant.user_email == "ana@example.com" and grant.rls_roles == []
    assert [found.id for found in portal.list_grants("sales")] == [grant.id]
    portal.revoke_grant("sales", grant.id)
    assert portal.list_grants("sales") == []
    with pytest.raises(NotFound):
        portal.get_report("no/such report")
    entries = portal.audit(action="user.created")
    assert entries.total == 1 and entries.items[0].api_key == "Host app"


def test_single_sign_on_links(portal: EmbedportalClient, base_url: str) -> None:
    ana = portal.create_user(email="ana@example.com")
    portal.grant_report("sales", user_id=ana.id)
    link = portal.issue_sso_link(email="ana@example.com", report_id="sales", tv=True)
    assert link.url.startswith(base_url + "/sso/") and link.report_id == "sales"
    assert link.user_id == ana.id and link.expires_at.tzinfo is not None
    north = Filter(table="Sales", column="Region", values=("North",))
    filtered = portal.issue_sso_link(email="ana@example.com", report_id="sales", filters=[north])
    assert filtered.report_id == "sales"
    with pytest.raises(PermissionDenied) as refused:
        portal.issue_sso_link(
            email=portal.create_user(email="bo@example.com").email, report_id="sales"
        )
    assert refused.value.code == "ReportNotAllowed"


def test_bad_input_and_bad_keys_raise_their_errors(
    app: FastAPI, base_url: str, portal: EmbedportalClient
) -> None:
    with pytest.raises(ApiError) as bad:
        portal.create_user(email="not an e-mail")
    assert bad.value.status == 400 and bad.value.message
    with pytest.raises(ApiError) as unknown_field:
        portal.update_user(1, surprise=True)
    assert unknown_field.value.status == 422
    with EmbedportalClient(base_url, "ep_wrong_key") as stranger, pytest.raises(Unauthorized):
        stranger.list_reports()
    narrow = make_api_key(app, ["reports:read"])
    with EmbedportalClient(base_url, narrow) as reader, pytest.raises(PermissionDenied) as denied:
        reader.list_users()
    assert denied.value.code == "InsufficientScope"


def test_a_rate_limit_is_raised_with_its_wait_or_waited_out(
    app: FastAPI, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = make_api_key(app, ["reports:read"])
    with EmbedportalClient(base_url, secret) as reader:
        with pytest.raises(RateLimited) as limited:
            for _ in range(60):
                reader.list_reports()
    assert limited.value.retry_after is not None and limited.value.retry_after > 0
    waits: list[float] = []
    monkeypatch.setattr("embedportal.client.time.sleep", waits.append)
    with EmbedportalClient(base_url, secret, retry_rate_limited=True) as patient:
        with pytest.raises(RateLimited):
            patient.list_reports()  # still limited after one wait: raised, not looped on
    assert len(waits) == 1


def test_the_client_imports_no_server_code() -> None:
    code = (
        "import sys, embedportal.client; "
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'starlette', 'embedportal.app') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


class LosesSecondAnswer(httpx.HTTPTransport):
    """Delivers every request, but drops the answer to the second: that call times out on the
    caller's side after the portal did what it asked."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = super().handle_request(request)
        if len(self.sent) == 2:
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_change_whose_answer_was_lost_is_sent_again_and_done_once(
    app: FastAPI, base_url: str
) -> None:
    transport = LosesSecondAnswer()
    with EmbedportalClient(base_url, make_api_key(app), transport=transport) as portal:
        ana = portal.create_user(email="ana@example.com")
        link = portal.issue_sso_link(email=ana.email)
    created, lost, again = transport.sent
    assert lost.headers["idempotency-key"] == again.headers["idempotency-key"]
    assert created.headers["idempotency-key"] != lost.headers["idempotency-key"]
    assert link.url
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(func.count()).select_from(SsoLink)) == 1


def test_the_host_examples_provisioning_sets_a_changed_identity_on_a_known_user(
    portal: EmbedportalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("host_app", ROOT / "examples/host_app/app.py")
    assert spec is not None and spec.loader is not None
    host_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_app)

    monkeypatch.setenv("HOST_RLS_USERNAME", "north@example.com")
    host_app.provision(portal, "dora@customer.example", "sales")
    monkeypatch.setenv("HOST_RLS_USERNAME", "south@example.com")
    host_app.provision(portal, "dora@customer.example", "sales")
    (dora,) = portal.list_users(q="dora").items
    assert dora.rls_username == "south@example.com"
    assert [grant.user_id for grant in portal.list_grants("sales")] == [dora.id]
