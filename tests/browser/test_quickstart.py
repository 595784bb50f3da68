"""The quick start, as a newcomer does it: `serve`, sign in with a demo account, open a report.

Runs the real `python -m embedportal serve` (portal + built-in emulator, SQLite) and Debian's
Chromium; the report is drawn by the emulator's iframe, driven by the genuine powerbi-client.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, Route, expect

from embedportal.emulator.demo import REGION_MANAGERS, sales_table
from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

VIEWER = ("north@example.com", "embedportal-viewer")
ADMIN = ("admin@example.com", "embedportal-admin")
REPORT_LOAD_TIMEOUT = 20_000


def money(value: float) -> str:
    return f"${round(value):,}"


def total_revenue(region: str | None = None) -> str:
    rows = sales_table().rows
    return money(sum(row[5] for row in rows if region is None or row[1] == region))


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def report_frame(page: Page) -> FrameLocator:
    return page.frame_locator(".report-frame iframe")


def card_value(page: Page, title: str) -> str:
    card = report_frame(page).locator(".card", has_text=title).get_by_test_id("card-value")
    expect(card).to_have_text(re.compile(r"\$[\d,]+"), timeout=REPORT_LOAD_TIMEOUT)
    return card.inner_text()


def test_a_newcomer_signs_in_as_the_demo_viewer_and_reads_sales_overview(
    page: Page, portal: Portal
) -> None:
    sign_in(page, portal.url, *VIEWER)
    for name in ("Sales Overview", "Regional Performance", "Operations Dashboard"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()

    page.get_by_role("link", name="Sales Overview", exact=True).click()
    expect(page.get_by_role("heading", name="Sales Overview")).to_be_visible()
    assert card_value(page, "Total revenue") == total_revenue()
    expect(report_frame(page).get_by_text("Revenue by region")).to_be_visible()
    expect(page.locator('[data-overlay="expired"]')).to_be_hidden()
    expect(page.locator('[data-overlay="loading"]')).to_be_hidden()

    # Row-level security: the demo viewer manages the North region and sees only its numbers.
    page.get_by_role("link", name="← Reports").click()
    page.get_by_role("link", name="Regional Performance", exact=True).click()
    north = REGION_MANAGERS[VIEWER[0]]
    assert card_value(page, "Revenue") == total_revenue(north)
    assert total_revenue(north) != total_revenue()

    sign_out(page)


def test_an_administrator_connects_syncs_and_grants_a_report_to_a_new_user(
    page: Page, portal: Portal
) -> None:
    sign_in(page, portal.url, *ADMIN)

    page.goto(f"{portal.url}/admin/settings")
    expect(page.get_by_text("Connection complete")).to_be_visible()
    expect(page.get_by_label("Refresh token every")).to_be_visible()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-test")).to_contain_text("Demo workspace")

    page.goto(f"{portal.url}/admin/reports")
    page.get_by_role("button", name="Sync from Power BI").click()
    expect(page.get_by_text("Synced from Power BI: 0 added, 0 updated, 0 removed.")).to_be_visible()
    expect(page.get_by_text("RLS required")).to_be_visible()

    page.goto(f"{portal.url}/admin/users/new")
    page.get_by_label("Email", exact=True).fill("newcomer@example.com")
    page.get_by_label("Initial password").fill("newcomer-password")
    page.get_by_role("button", name="Create user").click()

    page.goto(f"{portal.url}/admin/reports")
    page.get_by_role("link", name="Operations Dashboard").first.click()
    page.get_by_label("User or group").select_option(label="newcomer@example.com")
    page.get_by_role("button", name="Grant", exact=True).click()
    expect(
        page.get_by_text("Operations Dashboard granted to newcomer@example.com.")
    ).to_be_visible()
    sign_out(page)

    sign_in(page, portal.url, "newcomer@example.com", "newcomer-password")
    expect(page.get_by_role("link", name="Sales Overview", exact=True)).to_have_count(0)
    page.get_by_role("link", name="Operations Dashboard", exact=True).click()
    assert card_value(page, "Total revenue") == total_revenue()


def test_real_power_bi_embed_urls_take_the_production_path(
    page: Page, portal_on_powerbi_host: Portal
) -> None:
    portal = portal_on_powerbi_host

    def to_emulator(route: Route) -> None:
        parts = urlsplit(route.request.url)
        local = f"{portal.emulator_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        route.fulfill(response=route.fetch(url=local))

    page.route("https://app.powerbi.com/**", to_emulator)
    sign_in(page, portal.url, *VIEWER)
    page.get_by_role("link", name="Sales Overview", exact=True).click()
    assert card_value(page, "Total revenue") == total_revenue()
    source = page.locator(".report-frame iframe").get_attribute("src") or ""
    assert source.startswith("https://app.powerbi.com/reportEmbed?")


def test_an_open_report_outlives_its_tokens(page: Page, portal_with_short_tokens: Portal) -> None:
    """Tokens live 15 s here: the viewer swaps them in before they die, without a reload, and
    the report keeps answering with the new ones."""
    sign_in(page, portal_with_short_tokens.url, *VIEWER)
    page.get_by_role("link", name="Sales Overview", exact=True).click()
    assert card_value(page, "Total revenue") == total_revenue()
    snapshot = "() => window.embedportalViewers[0].keeper.snapshot()"
    first = page.evaluate(snapshot)["tokenId"]
    assert first

    # A function, not an expression: Playwright evaluates an expression string with `eval`,
    # which the portal's Content-Security-Policy forbids.
    page.wait_for_function(
        "(first) => { const now = window.embedportalViewers[0].keeper.snapshot();"
        " return now.tokenId !== first && now.state === 'live'; }",
        arg=first,
        timeout=20_000,
    )
    page.wait_for_timeout(16_000)  # longer than the first token lived
    assert page.evaluate(snapshot)["state"] == "live"
    expect(page.locator('[data-overlay="expired"]')).to_be_hidden()

    report_frame(page).get_by_label("North").check()
    north = total_revenue(REGION_MANAGERS[VIEWER[0]])
    card = (
        report_frame(page).locator(".card", has_text="Total revenue").get_by_test_id("card-value")
    )
    expect(card).to_have_text(north, timeout=REPORT_LOAD_TIMEOUT)


def test_a_portuguese_reader_sees_the_reports_numbers_in_portuguese(
    chromium: Browser, portal: Portal
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="pt-BR")
    page = context.new_page()
    try:
        page.goto(portal.url)
        page.get_by_label("E-mail").fill(VIEWER[0])
        page.get_by_label("Senha").fill(VIEWER[1])
        page.get_by_role("button", name="Entrar").click()
        page.get_by_role("link", name="Sales Overview", exact=True).click()
        card = (
            report_frame(page)
            .locator(".card", has_text="Total revenue")
            .get_by_test_id("card-value")
        )
        # pt-BR groups thousands with a dot and names the dollar US$, as the portal's own pages.
        expected = f"US$ {round(sum(row[5] for row in sales_table().rows)):,}".replace(",", ".")
        expect(card).to_have_text(
            re.compile(re.escape(expected).replace(r"\ ", r"\s")), timeout=REPORT_LOAD_TIMEOUT
        )
        assert report_frame(page).locator("html").get_attribute("lang") == "pt-BR"
    finally:
        context.close()
