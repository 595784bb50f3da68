"""The token keeper's failure paths in a real browser (issue #9): each failure is named on
screen, and each one the portal, a proxy or a session can recover from recovers by itself.

The real `python -m embedportal serve` with its emulator, Debian's Chromium and the genuine
powerbi-client, as in test_token_keeper.py. A failure the emulator cannot produce on demand
(a 503 with an HTTP-date, a proxy's 502, a report gone) is made with `page.route`; time that
matters is Playwright's clock (`page.clock`).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from playwright.sync_api import Page, Route, expect

from embedportal.emulator.demo import (
    OPERATIONS_DASHBOARD_REPORT_ID,
    REGIONAL_PERFORMANCE_REPORT_ID,
    SALES_OVERVIEW_REPORT_ID,
)
from tests.browser.keeper_support import (
    REPORT,
    REPORT_LOAD_TIMEOUT,
    VIEWER,
    TokenCalls,
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
from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

TOKEN_ROUTE = re.compile(r"/api/reports/[^/]+/token$")
KEEPER = "window.embedportalViewers[0].keeper"


def open_viewer(page: Page, url: str) -> TokenCalls:
    calls = TokenCalls.record(page)
    sign_in(page, url, *VIEWER)
    open_report(page)
    install_probe(page)
    return calls


def overlay(page: Page, name: str, slot: str = "#viewer") -> object:
    return page.locator(f'{slot} [data-overlay="{name}"]')


def sign_in_form(page: Page) -> None:
    page.get_by_label("Email").fill(VIEWER[0])
    page.get_by_label("Password").fill(VIEWER[1])
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()


def test_retry_after_as_an_http_date_is_read_on_the_server_s_clock(
    page: Page, portal: Portal
) -> None:
    """A 503 whose Retry-After is an HTTP-date 10 s ahead, on a client whose clock is 3 h
    behind: the keeper retries after about 10 s, not after 3 hours."""
    page.clock.install(time=datetime.now(UTC) - timedelta(hours=3))
    calls = open_viewer(page, portal.url)
    refused: list[float] = []

    def unavailable_once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(time.monotonic())
        now = datetime.now(UTC)
        route.fulfill(
            status=503,
            headers={
                "Content-Type": "application/json",
                "Date": format_datetime(now, usegmt=True),
                "Retry-After": format_datetime(now + timedelta(seconds=10), usegmt=True),
            },
            body=json.dumps({"detail": "Power BI did not answer.", "code": "PowerBIUnavailable"}),
        )

    with explain(page, portal.server, calls):
        page.route(TOKEN_ROUTE, unavailable_once)
        page.evaluate(f"() => {KEEPER}.refreshNow('manual')")
        wait_until(page, lambda: bool(refused), timeout=10, what="the refused refresh")
        wait_until(
            page, lambda: snapshot(page)["failures"] == 1, timeout=5, what="the failure noted"
        )
        wait = snapshot(page)["nextRetryInSeconds"]
        assert wait is not None and 5 <= wait <= 11, wait
        wait_until(
            page,
            lambda: snapshot(page)["failures"] == 0 and not snapshot(page)["inFlight"],
            timeout=20,
            what="the retry after Retry-After",
        )
        assert [c.status for c in calls.refreshes()] == [200]
        assert probe(page)["reloads"] == 0
        expect(expired_overlay(page)).to_be_hidden()


def test_sign_out_in_a_second_tab_reaches_the_first_at_once(page: Page, portal: Portal) -> None:
    """Tab 1 shows "signed out" as soon as tab 2 signs out; a sign-in in tab 2 brings the
    report back by itself; after another sign-out, tab 1's own link signs in and comes back to
    the report."""
    calls = open_viewer(page, portal.url)
    other = page.context.new_page()
    signed_out = overlay(page, "signedOut")
    with explain(page, portal.server, calls):
        wait_until(page, lambda: calls.events_connected > 0, timeout=10, what="the push channel")
        other.goto(f"{portal.url}/reports")
        sign_out(other)
        expect(signed_out).to_be_visible(timeout=3_000)
        expect(signed_out).to_contain_text("You are signed out.")
        assert snapshot(page)["state"] == "signedOut"
        before = len(calls.calls)

        # Signed in again elsewhere: the report resumes without a reload of the page.
        sign_in_form(other)
        expect(signed_out).to_be_hidden(timeout=5_000)
        wait_until(
            page, lambda: snapshot(page)["state"] == "live", timeout=10, what="the keeper live"
        )
        assert [c.status for c in calls.calls[before:]] == [200], calls.summary()
        expect(card(page)).to_have_text(total_revenue())

        # Signed out again; this time the first tab's own link signs in.
        other.goto(f"{portal.url}/reports")
        sign_out(other)
        expect(signed_out).to_be_visible(timeout=3_000)
        link = signed_out.get_by_role("link", name="Sign in")
        href = link.get_attribute("href") or ""
        assert href.startswith("/login?next=%2Freports%2F"), href
        link.click()
        sign_in_form(page)
        expect(page.get_by_role("heading", name=REPORT)).to_be_visible()
        expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    other.close()


def test_a_report_removed_while_open_closes_for_good(page: Page, portal: Portal) -> None:
    """The token API answers 404 (a catalogue sync removed the report): a final screen, the
    iframe gone, and no token call after it, whatever happens on the page."""
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        page.route(
            TOKEN_ROUTE,
            lambda route: route.fulfill(
                status=404,
                content_type="application/json",
                body=json.dumps({"detail": "There is no such report.", "code": "NotFound"}),
            ),
        )
        page.evaluate(f"() => {KEEPER}.refreshNow('access-check')")
        removed = overlay(page, "removed")
        expect(removed).to_be_visible(timeout=5_000)
        expect(removed).to_contain_text("This report was removed.")
        expect(page.locator(".report-frame iframe")).to_have_count(0)
        assert snapshot(page)["state"] == "removed"
        count = len(calls.calls)
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")
        page.evaluate("() => window.dispatchEvent(new Event('online'))")
        page.evaluate(f"() => {KEEPER}.refreshNow('manual')")
        page.wait_for_timeout(2_000)
        assert len(calls.calls) == count, calls.summary()


def test_the_push_channel_comes_back_after_a_502(page: Page, portal: Portal) -> None:
    """`/api/events` answers 502 once (a proxy while the portal restarts): the viewer opens a
    new stream by itself and pushes arrive again within 10 s."""
    failed: list[float] = []

    def bad_gateway_once(route: Route) -> None:
        if failed:
            route.continue_()
            return
        failed.append(time.monotonic())
        route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>")

    page.route(re.compile(r"/api/events\?"), bad_gateway_once)
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        wait_until(page, lambda: bool(failed), timeout=10, what="the refused stream")
        wait_until(
            page,
            lambda: calls.events_connected > 0,
            timeout=10,
            what="a new stream after the 502",
        )
        # A push: the same person signs out in another browser. This viewer is told and asks
        # whether its own session is gone (it is not).
        other = page.context.browser.new_context()  # type: ignore[union-attr]
        try:
            other_page = other.new_page()
            sign_in(other_page, portal.url, *VIEWER)
            with page.expect_request(re.compile(r"/api/session$"), timeout=10_000):
                other_page.get_by_role("button", name="Sign out").click()
        finally:
            other.close()
        assert time.monotonic() - failed[0] < 30
        page.wait_for_timeout(500)
        assert snapshot(page)["state"] == "live"


def test_a_tv_shows_its_other_reports_while_the_first_fails(page: Page, portal: Portal) -> None:
    """The first report's token API answers 502 for 40 s: the other two play meanwhile, the
    first shows its own message, then opens by itself."""
    started = time.monotonic()
    failing = f"/api/reports/{SALES_OVERVIEW_REPORT_ID}/token"

    def first_fails_for_40_s(route: Route) -> None:
        if route.request.url.endswith(failing) and time.monotonic() - started < 40:
            route.fulfill(
                status=502,
                content_type="application/json",
                body=json.dumps({"detail": "Power BI refused.", "code": "PowerBIError"}),
            )
        else:
            route.continue_()

    sign_in(page, portal.url, *VIEWER)
    page.route(TOKEN_ROUTE, first_fails_for_40_s)
    page.goto(
        f"{portal.url}/tv/show?report={SALES_OVERVIEW_REPORT_ID}"
        f"&report={REGIONAL_PERFORMANCE_REPORT_ID}&report={OPERATIONS_DASHBOARD_REPORT_ID}"
        "&interval=3600"
    )
    with explain(page, portal.server):
        for slot in ("tv-slot-2", "tv-slot-3"):
            expect(page.locator(f"#{slot}")).to_have_attribute(
                "data-rendered", "true", timeout=REPORT_LOAD_TIMEOUT
            )
        assert time.monotonic() - started < 40, "the others did not wait for the first"
        expect(overlay(page, "failed", "#tv-slot-1")).to_be_visible()
        expect(page.locator("#tv-slot-1 .report-frame iframe")).to_have_count(0)
        # The first keeps asking by itself; once the 40 s are over its next try opens it. (The
        # wait before that try is the backoff's, up to half a minute: skipped here.)
        page.wait_for_timeout(max(0, 40 - (time.monotonic() - started)) * 1000 + 500)
        page.evaluate(
            "() => window.embedportalViewers.find((v) => v.slot.id === 'tv-slot-1').askNow?.()"
        )
        expect(page.locator("#tv-slot-1")).to_have_attribute(
            "data-rendered", "true", timeout=REPORT_LOAD_TIMEOUT
        )


def test_a_3_hour_step_of_the_client_clock_changes_nothing(page: Page, portal: Portal) -> None:
    """The wall clock jumps 3 h ahead while performance.now() runs on: the keeper asks the
    server's time, finds no sleep, and neither refreshes, nor shows the expiry screen, nor
    reloads."""
    page.clock.install()
    calls = open_viewer(page, portal.url)
    with explain(page, portal.server, calls):
        before = snapshot(page)
        with page.expect_request(re.compile(r"/api/session$"), timeout=10_000):
            page.clock.set_system_time(page.evaluate("() => Date.now()") / 1000 + 3 * 3600)
            page.evaluate("() => window.dispatchEvent(new Event('focus'))")
        page.wait_for_timeout(2_000)
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")
        page.wait_for_timeout(1_000)
        after = snapshot(page)
        assert calls.refreshes() == [], calls.summary()
        assert probe(page)["reloads"] == 0
        assert "expired" not in probe(page)["states"]
        assert after["state"] == "live"
        assert after["remainingSeconds"] > before["remainingSeconds"] - 60
        expect(expired_overlay(page)).to_be_hidden()


def test_signed_out_before_the_first_token_the_report_opens_by_itself_later(
    page: Page, portal: Portal
) -> None:
    """The first token call finds the session gone (a page drawn just before it ended): the
    signed-out screen with its link, and once a session exists again the report opens by
    itself, without a reload of the page."""
    sign_in(page, portal.url, *VIEWER)
    session_back = False
    refused: list[str] = []

    def first_token_refused(route: Route) -> None:
        if not refused:
            refused.append(route.request.url)
            route.fulfill(
                status=401,
                content_type="application/json",
                body=json.dumps({"detail": "Sign in first.", "code": "Unauthorized"}),
            )
        else:
            route.continue_()

    def session_until_back(route: Route) -> None:
        if session_back:
            route.continue_()
        else:
            route.fulfill(
                content_type="application/json",
                body=json.dumps({"signedIn": False, "csrfToken": None, "serverTime": None}),
            )

    page.route(TOKEN_ROUTE, first_token_refused)
    page.route("**/api/session", session_until_back)
    page.get_by_role("link", name=REPORT, exact=True).click()
    signed_out = overlay(page, "signedOut")
    expect(signed_out).to_be_visible(timeout=10_000)
    assert refused
    link = signed_out.get_by_role("link", name="Sign in")
    assert (link.get_attribute("href") or "").startswith("/login?next=%2Freports%2F")

    session_back = True
    page.evaluate("() => window.dispatchEvent(new Event('focus'))")  # the person comes back
    expect(signed_out).to_be_hidden(timeout=10_000)
    expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    page.wait_for_function("() => window.embedportalViewers?.[0]?.keeper")


def test_telemetry_refused_for_a_stale_csrf_token_is_sent_again(page: Page, portal: Portal) -> None:
    """Signed out and in again elsewhere, the page's CSRF token is stale: the telemetry batch
    it refused goes again with a fresh token instead of being lost."""
    open_viewer(page, portal.url)
    answers: list[int] = []

    def stale_once(route: Route) -> None:
        if not answers:
            answers.append(403)
            route.fulfill(
                status=403,
                content_type="application/json",
                body=json.dumps({"detail": "CSRF", "code": "CsrfTokenInvalid"}),
            )
        else:
            response = route.fetch()
            answers.append(response.status)
            route.fulfill(response=response)

    page.route("**/api/telemetry", stale_once)
    page.evaluate(f"() => {KEEPER}.refreshNow('interaction')")
    wait_until(page, lambda: len(answers) >= 2, timeout=15, what="the batch sent again")
    assert answers[:2] == [403, 204], answers
