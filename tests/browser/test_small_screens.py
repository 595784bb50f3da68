"""Phones: every kind of page at 390 px wide has no sideways scroll, and the nav collapses
behind a toggle (portal.css, nav-toggle.js)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

ADMIN = ("admin@example.com", "embedportal-admin")
PHONE = {"width": 390, "height": 844}
REPORT_LOAD_TIMEOUT = 20_000

# What is wider than the window (for the failure message): tag, class and width.
OVERFLOWING = """() => [...document.querySelectorAll('body *')]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5
    && getComputedStyle(el).position !== 'fixed')
  .filter((el) => !el.closest('.overflow-auto, .table-scroll'))
  .slice(0, 8)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className}`
    + ` ${Math.round(el.getBoundingClientRect().right)}`)"""


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(error.message))
    try:
        yield page
    finally:
        context.unroute_all(behavior="ignoreErrors")
        context.close()
    assert not errors, errors


def assert_no_sideways_scroll(page: Page, what: str) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    inner = page.evaluate("() => window.innerWidth")
    assert inner == PHONE["width"], inner
    assert width <= inner, f"{what}: {width} px wide in {inner} px: {page.evaluate(OVERFLOWING)}"


def sign_in(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    assert_no_sideways_scroll(page, "sign-in")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def test_every_page_fits_a_phone(phone: Page, portal: Portal) -> None:
    sign_in(phone, portal)
    assert_no_sideways_scroll(phone, "reports")
    for path in (
        "/admin/users",
        "/admin/reports",
        "/admin/groups",
        "/admin/audit",
        "/admin/settings",
        "/admin/viewers",
        "/admin/capacities",
        "/admin/health",
        "/admin/branding",
        "/admin/outbox",
        "/account",
    ):
        phone.goto(f"{portal.url}{path}")
        expect(phone.locator("main h1").first).to_be_visible()
        assert_no_sideways_scroll(phone, path)

    phone.goto(f"{portal.url}/admin/users")
    phone.locator("main table a").first.click()
    expect(phone.locator("main h1").first).to_be_visible()
    assert_no_sideways_scroll(phone, "a user")

    phone.goto(f"{portal.url}/admin/reports")
    phone.locator("main table a").first.click()
    expect(phone.locator("main h1").first).to_be_visible()
    assert_no_sideways_scroll(phone, "a report")


def test_the_viewer_fills_a_phone(phone: Page, portal: Portal) -> None:
    sign_in(phone, portal)
    phone.get_by_role("link", name="Sales Overview", exact=True).click()
    card = phone.frame_locator(".report-frame iframe").locator(".card").first
    expect(card).to_be_visible(timeout=REPORT_LOAD_TIMEOUT)
    assert_no_sideways_scroll(phone, "viewer")
    frame = phone.locator(".report-frame").bounding_box()
    assert frame is not None
    assert frame["width"] >= PHONE["width"] - 1
    assert frame["y"] + frame["height"] >= PHONE["height"] - 1
    expect(phone.get_by_role("toolbar", name="Report tools")).to_be_visible()


def test_report_cards_show_their_whole_names(phone: Page, portal: Portal) -> None:
    sign_in(phone, portal)
    for card in phone.locator(".report-card").all():
        overflowing = card.evaluate(
            "(el) => [...el.querySelectorAll('*')].some((child) =>"
            " child.scrollWidth > child.clientWidth + 1 && getComputedStyle(child).overflow"
            " !== 'visible')"
        )
        assert not overflowing
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


def test_the_nav_collapses_behind_a_toggle(phone: Page, portal: Portal) -> None:
    sign_in(phone, portal)
    toggle = phone.get_by_role("button", name="Menu")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    sign_out = phone.get_by_role("button", name="Sign out")
    expect(sign_out).to_be_hidden()

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sign_out).to_be_visible()
    expect(phone.get_by_role("link", name="TV mode")).to_be_visible()
    assert_no_sideways_scroll(phone, "the open menu")
    phone.get_by_text("Admin", exact=True).click()
    phone.get_by_role("link", name="Audit log").click()
    expect(phone.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
    # A new page starts with the menu closed.
    expect(phone.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")

    phone.get_by_role("button", name="Menu").click()
    phone.keyboard.press("Escape")
    expect(phone.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")


def test_a_desktop_shows_the_nav_without_a_toggle(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
