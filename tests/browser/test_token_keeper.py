"""The token keeper in a real browser: an open report outlives its embed tokens.

Every test runs the real `python -m embedportal serve` (portal + built-in emulator, SQLite),
Debian's Chromium and the genuine powerbi-client; the emulator checks every data call's token
against its own (real) clock, so a token the keeper failed to replace shows up in the frame as
`ClientError_TokenExpired`, exactly as the negative control at the end proves.

Simulated days use Playwright's fake clock (`page.clock`), which drives the keeper's timers,
`performance.now()` and `Date.now()`; tokens still die in real time on the server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from embedportal.emulator.settings import EmulatorSettings
from tests.browser.keeper_support import (
    ADMIN,
    DEMO_GROUP,
    REPORT,
    REPORT_LOAD_TIMEOUT,
    TOKEN_EXPIRED,
    VIEWER,
    RestartablePortal,
    TokenCalls,
    assert_visuals_load,
    card,
    expired_overlay,
    explain,
    idle_simulated,
    install_probe,
    open_report,
    probe,
    refresh_data,
    report_frame,
    restartable_portal,
    set_visibility,
    sign_in,
    snapshot,
    total_revenue,
    wait_until,
)
from tests.browser.portal_fixtures import Portal, running_portal

pytestmark = pytest.mark.browser

DAY_SECONDS = 24 * 3600
HOUR_TOKEN_SECONDS = 3600  # the emulator's default embed-token lifetime, as Power BI's
LOAD_FAILED = "Could not load data for this visual"  # the emulator's words on a failed visual


@pytest.fixture(scope="module")
def portal_20s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """Embed tokens that really die after 20 seconds."""
    with running_portal(
        tmp_path_factory.mktemp("portal-20s"),
        {"EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS": "20"},
    ) as running:
        yield running


@pytest.fixture
def outage_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePortal]:
    """15-second tokens, and a portal the test may stop and start again."""
    with restartable_portal(
        tmp_path_factory.mktemp("portal-outage"),
        {"EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS": "15"},
    ) as running:
        yield running


@pytest.fixture
def admin_page(chromium: Browser, portal: Portal) -> Iterator[Page]:
    """The administrator, signed in in a browser context of their own."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, portal.url, *ADMIN)
        yield page
    finally:
        context.close()


def open_viewer(page: Page, url: str) -> TokenCalls:
    calls = TokenCalls.record(page)
    sign_in(page, url, *VIEWER)
    open_report(page)
    install_probe(page)
    return calls


def assert_never_expired(page: Page) -> None:
    expect(expired_overlay(page)).to_be_hidden(timeout=1)
    states = probe(page)["states"]
    assert not {"expired", "capacityOff", "revoked", "failed"} & set(states), states


# --- a day of idle ---------------------------------------------------------------------------


def test_an_idle_viewer_outlives_24_simulated_hours_of_hour_long_tokens(
    page: Page, portal: Portal
) -> None:
    page.clock.install()  # before the first page: the keeper starts on the fake clock
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        assert snapshot(page)["lifetimeSeconds"] > HOUR_TOKEN_SECONDS - 120

        steps = idle_simulated(page, DAY_SECONDS, after_step=lambda: assert_never_expired(page))

        # A refresh 10 minutes before each hour-long token ends: one every ~50 minutes.
        refreshes = calls.refreshes()
        assert 26 <= len(refreshes) <= 32, calls.summary()
        assert {c.reason for c in refreshes} == {"margin"}, calls.summary()
        assert all(c.status == 200 for c in calls.calls), calls.summary()
        seen = probe(page)
        assert len(seen["setAccessToken"]) == len(refreshes)
        assert all(call["ok"] for call in seen["setAccessToken"]), seen
        assert seen["reloads"] == 0, "a live token is swapped in without reloading the report"
        assert snapshot(page)["state"] == "live"
        assert steps >= 144

        assert_visuals_load(page)
        assert_never_expired(page)


def test_a_hidden_tab_keeps_refreshing_and_checks_when_shown_again(
    page: Page, portal: Portal
) -> None:
    page.clock.install()
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        set_visibility(page, "hidden")
        idle_simulated(page, DAY_SECONDS, after_step=lambda: assert_never_expired(page))
        refreshes = calls.refreshes()
        assert 26 <= len(refreshes) <= 32, calls.summary()
        assert len(probe(page)["setAccessToken"]) == len(refreshes)

        # The machine sleeps while the tab is hidden: no timer runs (the clock is paused) and
        # the wall clock jumps past the refresh margin while performance.now() stands still.
        # Showing the tab must be enough for the keeper to notice and refresh.
        #
        # The keeper asks the server's time before it believes a jump of the wall clock (a
        # sleep moves the server's clock, a change of the client's does not). Under simulated
        # time the server's clock cannot agree with the page's, so the server is unreachable
        # here, as after many a real sleep, and the keeper believes the jump (the safe side).
        # The server's word is tested in test_keeper_failures.py and tests/js/clock-step.
        # The push channel reconnects over real time (its timers ran fast under the simulated
        # day), and a reconnect asks stale keepers at once: with the wall clock past the margin,
        # that would be a refresh while the page's clock stands still. Keep it closed here.
        # Both are cut before the jump: any event after it makes the keeper ask the server, and
        # an answer would deny the sleep.
        page.route(re.compile(r"/api/session$"), lambda route: route.abort())
        page.route(re.compile(r"/api/events"), lambda route: route.abort())
        page.evaluate("() => window.embedportalPush?.close?.()")
        page.wait_for_timeout(300)  # a question already on its way is answered before the jump
        # A few seconds ahead: pausing first runs what is due, which on a busy machine can
        # take longer than a second, and a pause in the past is refused.
        # (Python's clock API takes Unix time in seconds.)
        page.clock.pause_at(page.evaluate("() => Date.now()") / 1000 + 5)
        keeper = snapshot(page)
        slept = keeper["remainingSeconds"] - keeper["effectiveMarginSeconds"] + 60
        assert 0 < slept < keeper["remainingSeconds"]
        page.clock.set_system_time(page.evaluate("() => Date.now()") / 1000 + slept)
        before = len(calls.calls)
        page.wait_for_timeout(1_000)
        # No timer runs while the clock is paused. A real-time event may still notice the jumped
        # wall clock and refresh at once ('wake', the safe side); that is not a timer.
        paused = calls.calls[before:]
        assert all(call.reason == "wake" for call in paused), "a timer ran while paused"

        set_visibility(page, "visible")
        wait_until(
            page,
            lambda: any(c.reason == "wake" and c.status == 200 for c in calls.calls[before:]),
            timeout=10,
            what="a 'wake' refresh after visibilitychange",
        )
        wait_until(
            page, lambda: not snapshot(page)["inFlight"], timeout=10, what="the wake refresh"
        )
        assert snapshot(page)["remainingSeconds"] > keeper["effectiveMarginSeconds"]
        page.clock.resume()

        assert_visuals_load(page)
        assert_never_expired(page)


# --- real expiry -----------------------------------------------------------------------------


def test_real_20_second_tokens_are_replaced_for_over_a_minute_without_a_reload(
    page: Page, portal_20s: Portal
) -> None:
    calls = open_viewer(page, portal_20s.url)
    with explain(page, portal_20s.server, calls):
        first_token = snapshot(page)["tokenId"]
        deadline = time.monotonic() + 70
        while time.monotonic() < deadline:
            page.wait_for_timeout(5_000)
            assert_never_expired(page)

        wait_until(page, lambda: not snapshot(page)["inFlight"], timeout=10, what="a refresh")
        seen = probe(page)
        assert snapshot(page)["tokenId"] != first_token
        assert len(seen["setAccessToken"]) >= 2, seen
        assert all(call["ok"] for call in seen["setAccessToken"]), seen
        assert seen["reloads"] == 0, seen
        assert len(calls.refreshes()) == len(seen["setAccessToken"]), calls.summary()
        assert all(c.status == 200 for c in calls.calls), calls.summary()
        assert snapshot(page)["state"] == "live"
        assert_visuals_load(page)
        assert_never_expired(page)


def test_an_outage_longer_than_a_token_shows_the_expiry_screen_and_recovers_by_itself(
    outage_portal: RestartablePortal, page: Page
) -> None:
    # (outage_portal first: the page closes before the portal stops at teardown.)
    portal = outage_portal
    calls = open_viewer(page, portal.url)
    with explain(page, portal, calls):
        marker = probe(page)["marker"]
        down_at = time.monotonic()
        # SIGTERM: the portal stops listening at once (and is killed if it lingers).
        portal.stop()

        overlay = expired_overlay(page)
        expect(overlay).to_be_visible(timeout=25_000)
        expect(overlay).to_contain_text("This report's access has expired. Reconnecting")
        expect(overlay).to_contain_text("The report comes back by itself")
        expect(overlay.get_by_text(TOKEN_EXPIRED, exact=True)).to_be_visible()
        assert snapshot(page)["state"] == "expired"
        # What a person would see on querying now: the visuals fail (the emulator went down
        # with the portal). Only the keeper's reload can bring them back.
        refresh_data(page)
        expect(report_frame(page).get_by_text(LOAD_FAILED).first).to_be_visible()
        expect(card(page)).to_have_count(0)  # the failed card shows the error, not a number
        # Keep the portal down for longer than a whole token's life.
        remaining = 20 - (time.monotonic() - down_at)
        if remaining > 0:
            page.wait_for_timeout(remaining * 1000)
        portal.start()

        # No click, no reload by the test: the keeper gets a token, reloads the report, and the
        # overlay goes away. Its retries back off up to 60 s, hence the long wait.
        expect(overlay).to_be_hidden(timeout=75_000)
        expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
        seen = probe(page)
        assert seen["marker"] == marker, "the page itself must not have been reloaded"
        assert seen["reloads"] >= 1, seen
        assert "expired" in seen["states"] and seen["states"][-1] == "live", seen
        assert any(c.reason == "recovery" and c.status == 200 for c in calls.calls), calls.summary()
        assert_visuals_load(page)


# --- pushes from the administrator ------------------------------------------------------------


def test_a_refresh_setting_reaches_an_open_viewer_without_a_reload(
    page: Page, admin_page: Page, portal: Portal
) -> None:
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        wait_until(page, lambda: calls.events_connected > 0, timeout=10, what="the push channel")
        marker = probe(page)["marker"]
        assert snapshot(page)["policy"]["refreshEverySeconds"] is None

        admin_page.goto(f"{portal.url}/admin/settings")
        field = admin_page.get_by_label("Refresh token every")
        try:
            field.fill("7")
            admin_page.get_by_role("button", name="Save", exact=True).click()
            expect(admin_page.get_by_text("Settings saved.")).to_be_visible()

            page.wait_for_function(
                "() => window.embedportalViewers[0].keeper.snapshot()"
                ".policy.refreshEverySeconds === 420",
                timeout=5_000,
            )
            assert probe(page)["marker"] == marker
        finally:  # the server is shared: put the setting back
            admin_page.goto(f"{portal.url}/admin/settings")
            admin_page.get_by_label("Refresh token every").fill("")
            admin_page.get_by_role("button", name="Save", exact=True).click()
            expect(
                admin_page.get_by_text(re.compile(r"Settings saved|Nothing changed"))
            ).to_be_visible()
        page.wait_for_function(
            "() => window.embedportalViewers[0].keeper.snapshot()"
            ".policy.refreshEverySeconds === null",
            timeout=5_000,
        )


def test_removing_access_closes_the_open_viewer(
    page: Page, admin_page: Page, portal: Portal
) -> None:
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        wait_until(page, lambda: calls.events_connected > 0, timeout=10, what="the push channel")

        admin_page.goto(f"{portal.url}/admin/reports")
        admin_page.get_by_role("link", name=REPORT, exact=True).first.click()
        row = admin_page.locator("#grants tbody tr", has_text=f"Group: {DEMO_GROUP}")
        roles = row.locator('input[name="rls_roles"]').input_value()
        admin_page.once("dialog", lambda dialog: dialog.accept())  # "Remove access … ?"
        row.get_by_role("button", name="Remove").click()
        try:
            expect(admin_page.get_by_text("Access removed.")).to_be_visible()

            revoked = page.locator('[data-overlay="revoked"]')
            expect(revoked).to_be_visible(timeout=5_000)
            expect(revoked).to_contain_text("Your access to this report was removed.")
            expect(page.locator(".report-frame iframe")).to_have_count(0)
            assert snapshot(page)["state"] == "revoked"
            assert [c.status for c in calls.with_reason("access-check")] == [403]
        finally:  # the server is shared: grant the report to the group again
            if not row.count():
                admin_page.get_by_label("User or group").select_option(label=DEMO_GROUP)
                admin_page.locator('.grant-form input[name="rls_roles"]').fill(roles)
                admin_page.get_by_role("button", name="Grant", exact=True).click()
                expect(admin_page.get_by_text(f"{REPORT} granted to {DEMO_GROUP}.")).to_be_visible()


# --- negative control --------------------------------------------------------------------------

# The test's own stand-in for token-keeper.js: the real module's exports (pure helpers and
# constants re-exported from the real file, loaded under another URL), but a keeper that never
# refreshes.
KEEPER_OFF = """
export * from './token-keeper.js?real';
export function createTokenKeeper(options) {
  window.keeperOffInitial = options.initial;
  const keeper = {
    start: () => keeper, stop() {}, applyPolicy() {},
    refreshNow: () => Promise.resolve(false),
    snapshot: () => ({state: 'off', inFlight: false, lifetimeSeconds: options.initial.expiresIn}),
    currentToken: () => options.initial.token,
  };
  return keeper;
}
"""


def test_without_the_keeper_the_same_viewer_shows_token_expired(
    page: Page, portal_20s: Portal
) -> None:
    """Proves the tests above would see an expiry: switch the keeper off and wait out a token."""

    def keeper_off(route: Route) -> None:
        route.fulfill(content_type="text/javascript", body=KEEPER_OFF)

    page.route("**/static/app/js/token-keeper.js", keeper_off)
    calls = open_viewer(page, portal_20s.url)
    with explain(page, portal_20s.server, calls):
        assert snapshot(page)["state"] == "off"
        lifetime = page.evaluate("() => window.keeperOffInitial.expiresIn")
        page.wait_for_timeout((lifetime + 2) * 1000)

        refresh_data(page)
        expect(
            report_frame(page)
            .get_by_text(f"Could not load data for this visual: {TOKEN_EXPIRED}")
            .first
        ).to_be_visible()
        assert [c.reason for c in calls.calls] == ["load"], calls.summary()
        assert "TokenExpired" in probe(page)["errors"]


# --- the capacity goes off while a report is open ------------------------------------------------


def _arm(portal: Portal, action: str | None, expected_state: str) -> None:
    """Suspend or resume the built-in emulator's capacity over ARM, as Azure would."""
    settings = EmulatorSettings()
    with httpx.Client(base_url=portal.emulator_url, timeout=10) as http:
        token = http.post(
            f"/{settings.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
                "scope": "https://management.azure.com/.default",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        params = {"api-version": "2021-01-01"}
        path = settings.capacity_resource_id
        if action is not None:
            answer = http.post(f"{path}/{action}", params=params, headers=headers)
            assert answer.status_code in (200, 202), answer.text
        deadline = time.monotonic() + 20
        while (
            http.get(path, params=params, headers=headers).json()["properties"]["state"]
            != expected_state
        ):
            assert time.monotonic() < deadline, f"capacity never reached {expected_state}"
            time.sleep(0.2)


def test_a_capacity_paused_under_an_open_report_shows_its_screen_and_comes_back(
    page: Page, portal: Portal
) -> None:
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
        _arm(portal, "suspend", "Paused")
        try:
            # The next query fails in the iframe; the viewer asks the server at once, which
            # looks at the capacity afresh and answers 503 CapacityNotActive.
            page.evaluate("() => window.embedportalViewers[0].report.refresh()")
            capacity_off = page.locator('[data-overlay="capacityOff"]')
            expect(capacity_off).to_be_visible(timeout=15_000)
            expect(capacity_off).to_contain_text("The Power BI capacity is off.")
            assert 503 in [call.status for call in calls.with_reason("capacity")]
        finally:  # the server is shared: the capacity runs again whatever happened
            _arm(portal, "resume", "Succeeded")
        # No click, no page reload: the keeper's retries find the capacity running, set a
        # token and reload the report.
        expect(capacity_off).to_be_hidden(timeout=60_000)
        expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
        expect(report_frame(page).locator("body")).not_to_contain_text("CapacityNotActive")
