"""The example host application (examples/host_app) embeds a portal report through a single
sign-on link, from another site: the host at http://localhost, the portal at
http://127.0.0.1 (different sites for the browser, so its third-party cookie rules apply). The
report renders inside the host's frame with no sign-in, stays alive across several short
token lifetimes, a second use of the link is refused, and a site the portal does not allow
cannot frame it. A link may open the report filtered. With provisioning on, the host makes a
new person's portal user, RLS identity and grant through the API on their first visit, and
the report in its frame shows only their rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Frame, Page, expect
from sqlalchemy import select

from embedportal.access.api_keys import create_api_key
from embedportal.access.sso_origins import set_sso_origins
from embedportal.db.models import Report
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE
from tests.browser.keeper_support import total_revenue
from tests.browser.portal_fixtures import Portal, running_portal
from tests.support.servers import REPO_ROOT, RunningServer, free_port, wait_until_up

pytestmark = pytest.mark.browser

VIEWER_EMAIL = "north@example.com"
# Someone the portal has never heard of, who manages the South region in the demo data.
NEW_PERSON = "carla@customer.example"
NEW_PERSON_REGION = "South"
TOKEN_SECONDS = 15
REPORT_LOAD_TIMEOUT = 20_000


@dataclass
class Embedding:
    portal: Portal
    host_url: str  # allowed to frame the portal
    stranger_url: str  # the same application on an origin the portal does not allow
    api_key: str  # the host's `sso:issue` key
    report_id: str
    provisioning_url: str  # the application provisioning a new person just in time


def _keys(data_dir: Path, provisioning_origin: str) -> tuple[str, str, str, str]:
    """Two keys, made as Admin → API keys makes them (`sso:issue`; and one that also manages
    users and grants), the provisioning application's origin allowed there too (the other
    host's comes from the server's configuration), and the Sales Overview and Regional
    Performance ids."""
    engine = create_db_engine(f"sqlite:///{(data_dir / 'embedportal.db').as_posix()}")
    try:
        with session_scope(create_session_factory(engine)) as db:
            created = create_api_key(session=db, name="Host app", scopes=["sso:issue"], actor=None)
            managing = create_api_key(
                session=db,
                name="Provisioning host app",
                scopes=["users:write", "grants:write", "rls:write", "sso:issue"],
                actor=None,
            )
            set_sso_origins(session=db, text=provisioning_origin, actor=None)
            ids = dict(db.execute(select(Report.name, Report.id)).all())
            return (
                created.secret,
                managing.secret,
                ids["Sales Overview"],
                ids["Regional Performance"],
            )
    finally:
        engine.dispose()


@contextmanager
def _host_app(port: int, env: dict[str, str], log_dir: Path) -> Iterator[RunningServer]:
    log_path = log_dir / f"host-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO_ROOT / "examples" / "host_app",
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = RunningServer(process, f"http://localhost:{port}", log_path)
        try:
            wait_until_up(server, "/docs")
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedding]:
    data_dir = tmp_path_factory.mktemp("portal-sso")
    host_port, stranger_port, provisioning_port = free_port(), free_port(), free_port()
    env = {
        "EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS": str(TOKEN_SECONDS),
        "EMBEDPORTAL_SSO_FRAME_ANCESTORS": f"http://localhost:{host_port}",
    }
    with running_portal(data_dir, env) as portal:
        secret, managing_secret, report_id, regional_id = _keys(
            data_dir, f"http://localhost:{provisioning_port}"
        )
        host_env = {
            "EMBEDPORTAL_URL": portal.url,
            "EMBEDPORTAL_API_KEY": secret,
            "HOST_USER_EMAIL": VIEWER_EMAIL,
            "HOST_REPORT_ID": report_id,
        }
        provisioning_env = {
            **host_env,
            "EMBEDPORTAL_API_KEY": managing_secret,
            "HOST_USER_EMAIL": NEW_PERSON,
            "HOST_REPORT_ID": regional_id,
            "HOST_PROVISION": "1",
            "HOST_RLS_USERNAME": f"{NEW_PERSON_REGION.lower()}@example.com",
            "HOST_RLS_ROLES": REGION_MANAGER_ROLE,
        }
        with (
            _host_app(host_port, host_env, data_dir) as host,
            _host_app(stranger_port, host_env, data_dir) as stranger,
            _host_app(provisioning_port, provisioning_env, data_dir) as provisioning,
        ):
            yield Embedding(
                portal=portal,
                host_url=host.base_url,
                stranger_url=stranger.base_url,
                api_key=secret,
                report_id=report_id,
                provisioning_url=provisioning.base_url,
            )


def _viewer_frame(page: Page, portal_url: str) -> Frame:
    page.wait_for_function("(origin) => document.querySelector('#portal') !== null", arg=portal_url)
    for _ in range(200):
        for frame in page.frames:
            if frame.url.startswith(portal_url + "/reports/"):
                return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"no portal viewer in the host's frame: {[f.url for f in page.frames]}")


def test_the_host_application_shows_a_live_report_without_a_second_sign_in(
    page: Page, embedding: Embedding
) -> None:
    page.goto(embedding.host_url)
    expect(page.get_by_role("heading", name="Our application")).to_be_visible()
    link = page.locator("#portal").get_attribute("src")
    assert link and re.fullmatch(re.escape(embedding.portal.url) + r"/sso/[\w-]+", link)

    viewer = _viewer_frame(page, embedding.portal.url)
    card = (
        page.frame_locator("#portal")
        .frame_locator(".report-frame iframe")
        .locator(".card", has_text="Total revenue")
        .get_by_test_id("card-value")
    )
    expect(card).to_have_text(re.compile(r"\$[\d,]+"), timeout=REPORT_LOAD_TIMEOUT)
    expect(page.frame_locator("#portal").locator(".portal-nav")).to_have_count(0)

    # Two token lifetimes: each new token comes through the portal's own token API, inside the
    # host's frame, with the session cookie the link set there.
    snapshot = "() => window.embedportalViewers[0].keeper.snapshot()"
    seen = {viewer.evaluate(snapshot)["tokenId"]}
    for _ in range(2):
        viewer.wait_for_function(
            "(seen) => { const now = window.embedportalViewers[0].keeper.snapshot();"
            " return !seen.includes(now.tokenId) && now.state === 'live'; }",
            arg=list(seen),
            timeout=(TOKEN_SECONDS + 10) * 1000,
        )
        seen.add(viewer.evaluate(snapshot)["tokenId"])
    assert viewer.evaluate(snapshot)["state"] == "live"
    expect(page.frame_locator("#portal").locator('[data-overlay="expired"]')).to_be_hidden()

    # The link is spent: opened again, even by the same browser, it signs nobody in.
    again = page.context.new_page()
    answer = again.goto(link)
    assert answer is not None and answer.status == 410
    expect(again.get_by_role("heading", name="This link was already used.")).to_be_visible()
    again.close()


def test_a_site_the_portal_does_not_allow_cannot_frame_it(
    chromium: Browser, embedding: Embedding
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        refusals: list[str] = []
        page.on("console", lambda message: refusals.append(message.text))
        page.goto(embedding.stranger_url)
        expect(page.get_by_role("heading", name="Our application")).to_be_visible()
        page.wait_for_timeout(3_000)
        assert not any(
            frame.url.startswith(embedding.portal.url + "/reports/") for frame in page.frames
        )
        assert any("frame-ancestors" in text for text in refusals), refusals
    finally:
        context.close()


def test_a_link_opens_the_report_with_the_filters_it_was_issued_with(
    page: Page, embedding: Embedding
) -> None:
    wanted = {"table": "Sales", "column": "Category", "operator": "In", "values": ["Bikes"]}
    answer = httpx.post(
        f"{embedding.portal.url}/api/v1/sso/links",
        json={"email": VIEWER_EMAIL, "report_id": embedding.report_id, "filters": [wanted]},
        headers={"Authorization": f"Bearer {embedding.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    page.goto(answer.json()["url"])
    assert "/reports/" in page.url and "filters=" in page.url
    card = (
        page.frame_locator(".report-frame iframe")
        .locator(".card", has_text="Total revenue")
        .get_by_test_id("card-value")
    )
    expect(card).to_have_text(re.compile(r"\$[\d,]+"), timeout=REPORT_LOAD_TIMEOUT)
    # What Power BI (here the emulator) holds as the report's filters, asked through the SDK.
    applied = page.evaluate(
        "() => document.querySelector('#viewer [data-frame]').powerBiEmbed.getFilters()"
    )
    assert [(f["target"], f["operator"], f["values"]) for f in applied] == [
        ({"table": "Sales", "column": "Category"}, "In", ["Bikes"])
    ]
    # The filter is what the visuals show: without it, the total is larger.
    filtered = card.inner_text()
    page.evaluate(
        "() => document.querySelector('#viewer [data-frame]').powerBiEmbed.removeFilters()"
    )
    expect(card).not_to_have_text(filtered, timeout=REPORT_LOAD_TIMEOUT)


def test_a_new_person_is_provisioned_by_the_host_and_sees_only_their_rows(
    page: Page, embedding: Embedding
) -> None:
    for _visit in range(2):  # the second visit provisions again, harmlessly, with a new link
        page.goto(embedding.provisioning_url)
        revenue = (
            page.frame_locator("#portal")
            .frame_locator(".report-frame iframe")
            .locator(".card", has_text="Revenue")
            .get_by_test_id("card-value")
        )
        expect(revenue).to_have_text(total_revenue(NEW_PERSON_REGION), timeout=REPORT_LOAD_TIMEOUT)
    assert total_revenue(NEW_PERSON_REGION) != total_revenue()
