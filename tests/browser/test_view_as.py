"""View as in a browser: the demo administrator opens Regional Performance as the North region
manager and the emulator draws the North numbers under the banner (issue #13)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from embedportal.demo import ADMIN_RLS_USERNAME
from embedportal.emulator.demo import REGION_MANAGERS
from tests.browser.portal_fixtures import Portal
from tests.browser.test_quickstart import ADMIN, VIEWER, card_value, sign_in, total_revenue

pytestmark = pytest.mark.browser


def test_an_admin_sees_regional_performance_as_the_north_manager(
    page: Page, portal: Portal
) -> None:
    sign_in(page, portal.url, *ADMIN)
    page.goto(f"{portal.url}/admin/reports")
    page.get_by_role("link", name="Regional Performance", exact=True).click()
    view_as = page.locator("form.view-as-form")
    view_as.get_by_label("User").select_option(label=VIEWER[0])
    view_as.get_by_role("button", name="View as").click()

    expect(page.get_by_text("Viewing as North region manager — what they see")).to_be_visible()
    north = REGION_MANAGERS[VIEWER[0]]
    assert card_value(page, "Revenue") == total_revenue(north)
    report_id = urlsplit(page.url).path.rsplit("/", 1)[-1]

    # Opened from the report's page, the way back leads there.
    page.get_by_role("link", name=re.compile(r"^← Back to Regional Performance")).click()
    expect(page.get_by_role("heading", name="Who may open it")).to_be_visible()
    # The administrator's own view of the report is their own region's (the demo gives them
    # South): the numbers above were the user's, not theirs.
    page.goto(f"{portal.url}/reports/{report_id}")
    assert card_value(page, "Revenue") == total_revenue(REGION_MANAGERS[ADMIN_RLS_USERNAME])
    assert total_revenue(REGION_MANAGERS[ADMIN_RLS_USERNAME]) != total_revenue(north)
