"""The RLS try-out in a browser: a mistyped role is refused on the grant form in plain words,
the right one (offered as a choice) is granted (issue #13)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from embedportal.emulator.demo import REGION_MANAGER_ROLE
from tests.browser.portal_fixtures import Portal
from tests.browser.test_quickstart import ADMIN, VIEWER, sign_in

pytestmark = pytest.mark.browser


def test_a_mistyped_role_is_refused_and_the_right_one_granted(page: Page, portal: Portal) -> None:
    sign_in(page, portal.url, *ADMIN)
    page.goto(f"{portal.url}/admin/reports")
    page.get_by_role("link", name="Regional Performance", exact=True).click()
    grants = page.locator("#grants")
    form = grants.locator("form.grant-form")
    form.get_by_label("User or group").select_option(label=VIEWER[0])
    roles = form.get_by_label("RLS roles")
    # The demo group's role is in use for this dataset: it is offered.
    assert roles.get_attribute("list") == "rls-role-choices"
    expect(page.locator("#rls-role-choices option")).to_have_attribute("value", REGION_MANAGER_ROLE)

    roles.fill("Regoin Manager")
    form.get_by_role("button", name="Grant").click()
    expect(grants.get_by_role("alert")).to_contain_text(
        "The RLS role “Regoin Manager” does not exist in this report's data"
    )
    expect(grants.get_by_role("row", name=VIEWER[0])).to_have_count(0)

    form = page.locator("#grants form.grant-form")
    form.get_by_label("User or group").select_option(label=VIEWER[0])
    form.get_by_label("RLS roles").fill(REGION_MANAGER_ROLE)
    form.get_by_role("button", name="Grant").click()
    expect(page.locator("#grants").get_by_role("status")).to_contain_text(
        f"Regional Performance granted to {VIEWER[0]}."
    )
