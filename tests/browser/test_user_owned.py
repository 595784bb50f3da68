"""Embed for your organization in a real browser: a person signs in with Microsoft on the
emulator's Entra page and opens a user-owned report, which the viewer embeds with their own
Entra token (`tokenType: Aad`) and `eventHooks.accessTokenProvider`.

The emulator's Entra tokens live 20 seconds here and its iframe asks the hook 10 seconds before
one expires; the emulator checks every data call's token against its own (real) clock, so a
token the hook failed to replace shows up in the frame as `ClientError_TokenExpired`. Real time,
not Playwright's fake clock: a page clock run ahead of the server would make every token the
server issues look expired to the iframe (which compares its `exp` with the page's clock).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from embedportal.emulator.settings import DEFAULT_DIRECTORY_PASSWORD
from tests.browser.keeper_support import (
    ADMIN,
    REPORT,
    TOKEN_EXPIRED,
    TokenCalls,
    assert_visuals_load,
    card,
    expired_overlay,
    explain,
    install_probe,
    open_report,
    probe,
    sign_in,
    snapshot,
    total_revenue,
    wait_until,
)
from tests.browser.portal_fixtures import Portal, running_portal

pytestmark = pytest.mark.browser

PERSON = "north@example.com"
ENTRA_LIFETIME_SECONDS = 20
SHORT_ENTRA_TOKENS = {
    "EMBEDPORTAL_EMULATOR_ENTRA_MIN_LIFETIME_SECONDS": str(ENTRA_LIFETIME_SECONDS),
    "EMBEDPORTAL_EMULATOR_ENTRA_MAX_LIFETIME_SECONDS": str(ENTRA_LIFETIME_SECONDS),
    "EMBEDPORTAL_EMULATOR_TOKEN_HOOK_LEAD_SECONDS": "10",
}
TOKEN_URL = re.compile(r"/api/reports/[^/]+/token$")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The quick start with 20-second Entra tokens, every report user-owned (the organization's
    default, set as Admin → Settings saves it)."""
    data_dir = tmp_path_factory.mktemp("portal-user-owned")
    with running_portal(data_dir, SHORT_ENTRA_TOKENS) as running:
        with sqlite3.connect(data_dir / "embedportal.db") as db:
            db.execute("UPDATE organization SET default_embedding = 'user-owned'")
        yield running


def sign_in_with_microsoft(page: Page, portal: Portal, email: str = PERSON) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    expect(page).to_have_url(re.compile(re.escape(portal.emulator_url) + r"/.*/authorize"))
    page.locator("#email").fill(email)
    page.locator("#password").fill(DEFAULT_DIRECTORY_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def open_user_owned(page: Page, portal: Portal) -> TokenCalls:
    calls = TokenCalls.record(page)
    sign_in_with_microsoft(page, portal)
    open_report(page)
    install_probe(page)
    return calls


def test_a_user_owned_report_stays_open_across_several_entra_lifetimes(
    page: Page, portal: Portal
) -> None:
    calls = open_user_owned(page, portal)
    with explain(page, portal.server, calls):
        assert (
            page.evaluate("() => window.embedportalViewers[0].report.config.tokenType") == 0
        )  # models.TokenType.Aad
        first = page.evaluate("() => window.embedportalViewers[0].keeper.currentToken()")
        deadline = time.monotonic() + 3.5 * ENTRA_LIFETIME_SECONDS
        while time.monotonic() < deadline:
            page.wait_for_timeout(5_000)
            expect(expired_overlay(page)).to_be_hidden(timeout=1)
        wait_until(page, lambda: not snapshot(page)["inFlight"], timeout=10, what="a refresh")

        hooks = calls.with_reason("hook")
        assert len(hooks) >= 3, calls.summary()  # the iframe asked, and was answered
        assert all(c.status == 200 for c in calls.calls), calls.summary()
        seen = probe(page)
        assert seen["reloads"] == 0, seen
        assert TOKEN_EXPIRED not in seen["errors"], seen
        assert not {"expired", "revoked", "failed", "signedOut"} & set(seen["states"]), seen
        assert page.evaluate("() => window.embedportalViewers[0].keeper.currentToken()") != first
        assert_visuals_load(page)


def test_a_failing_provider_shows_the_expiry_then_recovers_by_itself(
    page: Page, portal: Portal
) -> None:
    calls = open_user_owned(page, portal)
    with explain(page, portal.server, calls):
        marker = probe(page)["marker"]
        down = {"on": True}

        def portal_down(route: Route) -> None:
            if not down["on"]:
                route.fallback()
                return
            route.fulfill(
                status=503,
                content_type="application/json",
                body=json.dumps({"detail": "Down for the test.", "code": "PowerBIUnavailable"}),
            )

        page.route(TOKEN_URL, portal_down)
        # The hook's provider answers null, the token dies: the keeper's expiry screen.
        overlay = expired_overlay(page)
        expect(overlay).to_be_visible(timeout=(ENTRA_LIFETIME_SECONDS + 15) * 1000)
        expect(overlay.get_by_text(TOKEN_EXPIRED, exact=True)).to_be_visible()
        assert snapshot(page)["state"] == "expired"
        assert calls.with_reason("hook"), calls.summary()

        down["on"] = False
        # No click, no reload by the test: the next retry gets a token and the report is back.
        expect(overlay).to_be_hidden(timeout=90_000)
        expect(card(page)).to_have_text(total_revenue(), timeout=20_000)
        seen = probe(page)
        assert seen["marker"] == marker, "the page itself must not have been reloaded"
        assert seen["states"][-1] == "live", seen
        assert_visuals_load(page)


def test_without_a_microsoft_sign_in_the_viewer_offers_one_and_comes_back(
    page: Page, portal: Portal
) -> None:
    """The administrator signs in with a password: the report asks for their own Microsoft
    sign-in, in plain words, and its link leads through Entra back to the open report."""
    calls = TokenCalls.record(page)
    sign_in(page, portal.url, *ADMIN)
    with explain(page, portal.server, calls):
        page.get_by_role("link", name=REPORT, exact=True).click()
        needed = page.locator('[data-overlay="microsoftSignIn"]')
        expect(needed).to_be_visible(timeout=10_000)
        expect(needed).to_contain_text("This report opens with your own Power BI account.")
        assert [c.status for c in calls.with_reason("load")] == [403], calls.summary()

        needed.get_by_role("link", name="Sign in with Microsoft").click()
        page.locator("#email").fill(ADMIN[0])
        page.locator("#password").fill(DEFAULT_DIRECTORY_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name=REPORT)).to_be_visible()
        expect(card(page)).to_have_text(total_revenue(), timeout=20_000)
        expect(needed).to_be_hidden()


@pytest.fixture
def admin_page(chromium: Browser, portal: Portal) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, portal.url, *ADMIN)
        yield page
    finally:
        context.close()


def test_a_blocked_persons_open_viewer_closes(page: Page, admin_page: Page, portal: Portal) -> None:
    """Last in the module: North stays blocked."""
    calls = open_user_owned(page, portal)
    with explain(page, portal.server, calls):
        wait_until(page, lambda: calls.events_connected > 0, timeout=10, what="the push channel")
        admin_page.goto(f"{portal.url}/admin/users?q={PERSON}")
        admin_page.get_by_role("link", name=PERSON).first.click()
        before = len(calls.calls)
        admin_page.get_by_role("button", name="Block", exact=True).click()
        expect(
            admin_page.get_by_text(f"{PERSON} is blocked and signed out everywhere.")
        ).to_be_visible()

        signed_out = page.locator('[data-overlay="signedOut"]')
        expect(signed_out).to_be_visible(timeout=10_000)
        assert snapshot(page)["state"] == "signedOut"
        assert page.locator("[data-frame]").evaluate("frame => frame.inert")
        # The push's access check finds the session gone; with ten-second Entra tokens, the
        # iframe's own renewal (the hook) may ask first and be the one told. Either way, the
        # last answer it had was 401 (a renewal in flight as the block was saved may still
        # have had its token).
        after_block = calls.calls[before:]
        assert after_block and after_block[-1].status == 401, calls.summary()
        # Signing in with Microsoft again is refused: the report does not come back.
        page.goto(f"{portal.url}/login")
        page.get_by_role("link", name="Sign in with Microsoft").click()
        page.locator("#email").fill(PERSON)
        page.locator("#password").fill(DEFAULT_DIRECTORY_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert page.url.startswith(f"{portal.url}/login/microsoft/callback")
