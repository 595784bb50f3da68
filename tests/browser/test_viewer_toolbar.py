"""The viewer's toolbar against the emulator: refresh visuals, print, reset filters, full screen
and auto-refresh, each through the genuine powerbi-client (viewer-toolbar.js)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import FrameLocator, Locator, Page, expect

from embedportal.emulator.demo import REGION_MANAGERS, sales_table
from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

VIEWER = ("north@example.com", "embedportal-viewer")
REPORT_LOAD_TIMEOUT = 20_000


def money(value: float) -> str:
    return f"${round(value):,}"


def total_revenue(region: str | None = None) -> str:
    rows = sales_table().rows
    return money(sum(row[5] for row in rows if region is None or row[1] == region))


def report_frame(page: Page) -> FrameLocator:
    return page.frame_locator(".report-frame iframe")


def open_sales_overview(page: Page, portal: Portal) -> None:
    page.goto(portal.url)
    page.get_by_label("Email").fill(VIEWER[0])
    page.get_by_label("Password").fill(VIEWER[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Sales Overview", exact=True).click()
    wait_for_report(page)


def wait_for_report(page: Page) -> None:
    card = total_card(page)
    expect(card).to_have_text(re.compile(r"\$[\d,]+"), timeout=REPORT_LOAD_TIMEOUT)
    expect(page.locator("#viewer")).to_have_attribute("data-state", "live")


def total_card(page: Page) -> Locator:
    card = report_frame(page).locator(".card", has_text="Total revenue")
    return card.get_by_test_id("card-value")


def emulator_count(page: Page, name: str) -> str | None:
    """A command the emulator counted (`<html data-prints>` …), in the report's iframe."""
    return report_frame(page).locator("html").get_attribute(f"data-{name}")


def toolbar(page: Page) -> Locator:
    return page.get_by_role("toolbar", name="Report tools")


def test_refresh_visuals_asks_the_report_to_refresh(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    assert emulator_count(page, "refreshes") is None
    toolbar(page).get_by_role("button", name="Refresh visuals").click()
    expect(report_frame(page).locator("html")).to_have_attribute("data-refreshes", "1")
    expect(page.locator("[data-toolbar-status]")).to_have_text("Visuals refreshed.")
    expect(total_card(page)).to_have_text(total_revenue())


def test_print_prints_the_report_in_its_iframe(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    toolbar(page).get_by_role("button", name="Print").click()
    expect(report_frame(page).locator("html")).to_have_attribute("data-prints", "1")


def test_reset_filters_puts_the_slicer_back_to_all(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    north = report_frame(page).get_by_label("North")
    north.check()
    expect(total_card(page)).to_have_text(total_revenue(REGION_MANAGERS[VIEWER[0]]))

    toolbar(page).get_by_role("button", name="Reset filters").click()
    expect(total_card(page)).to_have_text(total_revenue())
    expect(north).not_to_be_checked()
    expect(page.locator("[data-toolbar-status]")).to_have_text("Filters reset.")


def test_full_screen_is_the_report_itself_and_esc_leaves_it(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    exit_button = page.get_by_role("button", name="Exit full screen")
    expect(exit_button).to_be_hidden()

    toolbar(page).get_by_role("button", name="Full screen").click()
    page.wait_for_function(
        "() => document.fullscreenElement?.matches('[data-viewer-stage]') === true"
    )
    expect(exit_button).to_be_visible()
    expect(exit_button).to_be_focused()
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.fullscreenElement === null")
    expect(exit_button).to_be_hidden()

    # The visible way out does the same.
    toolbar(page).get_by_role("button", name="Full screen").click()
    page.wait_for_function("() => document.fullscreenElement !== null")
    exit_button.click()
    page.wait_for_function("() => document.fullscreenElement === null")
    expect(toolbar(page).get_by_role("button", name="Full screen")).to_have_attribute(
        "aria-pressed", "false"
    )


def test_the_toolbar_is_reachable_with_the_keyboard(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    toolbar(page).get_by_role("button", name="Refresh visuals").focus()
    page.keyboard.press("Enter")
    expect(report_frame(page).locator("html")).to_have_attribute("data-refreshes", "1")
    names = []
    for _ in range(4):
        page.keyboard.press("Tab")
        names.append(
            page.evaluate(
                "() => document.activeElement.getAttribute('aria-label')"
                " || document.activeElement.textContent.trim()"
            )
        )
    assert names == ["Auto-refresh: off", "Reset filters", "Print", "Full screen"], names


def test_auto_refresh_is_remembered_and_refreshes_every_n_minutes(
    page: Page, portal: Portal
) -> None:
    page.clock.install()
    open_sales_overview(page, portal)
    toolbar(page).get_by_text("Auto-refresh: off").click()
    minutes = page.get_by_label("Minutes between refreshes (1–59)")
    minutes.fill("75")
    page.get_by_role("switch", name="Auto-refresh visuals").check()
    expect(page.get_by_text("Choose a whole number of minutes from 1 to 59.")).to_be_visible()
    expect(toolbar(page)).to_have_attribute("data-auto-refresh", "off")
    minutes.fill("3")
    minutes.dispatch_event("change")
    expect(page.get_by_text("Choose a whole number of minutes from 1 to 59.")).to_be_hidden()
    expect(toolbar(page).get_by_text("Auto-refresh: every 3 min")).to_be_visible()

    page.reload()
    wait_for_report(page)
    toolbar(page).get_by_text("Auto-refresh: every 3 min").click()
    expect(page.get_by_role("switch", name="Auto-refresh visuals")).to_be_checked()
    expect(page.get_by_label("Minutes between refreshes (1–59)")).to_have_value("3")
    assert emulator_count(page, "refreshes") is None

    page.clock.run_for("03:01")
    expect(report_frame(page).locator("html")).to_have_attribute("data-refreshes", "1")
    page.clock.run_for("03:00")
    expect(report_frame(page).locator("html")).to_have_attribute("data-refreshes", "2")

    # Esc closes the choice, back on its button.
    page.get_by_role("switch", name="Auto-refresh visuals").focus()
    page.keyboard.press("Escape")
    expect(page.get_by_role("switch", name="Auto-refresh visuals")).to_be_hidden()
    expect(toolbar(page).locator("summary")).to_be_focused()

    # Off again: remembered as off, no more refreshes.
    toolbar(page).get_by_text("Auto-refresh: every 3 min").click()
    page.get_by_role("switch", name="Auto-refresh visuals").uncheck()
    page.reload()
    wait_for_report(page)
    expect(toolbar(page)).to_have_attribute("data-auto-refresh", "off")
    page.clock.run_for("06:00")
    assert emulator_count(page, "refreshes") is None


def test_tv_mode_has_no_toolbar(page: Page, portal: Portal) -> None:
    open_sales_overview(page, portal)
    page.goto(page.url + "?tv=1")
    wait_for_report(page)
    expect(page.get_by_role("toolbar", name="Report tools")).to_have_count(0)
