"""Sign in with Microsoft on the quick start, in Chromium: the sign-in page's button, the
emulator's Entra page, back signed in to the reports; signing out offers Microsoft's sign-out,
which comes back to the portal's sign-in page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from embedportal.emulator.settings import DEFAULT_DIRECTORY_PASSWORD
from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser


def test_a_demo_person_signs_in_with_microsoft_and_out_again(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_role("link", name="Sign in with Microsoft").click()

    # The emulator's Entra page, on its own origin.
    expect(page).to_have_url(re.compile(re.escape(portal.emulator_url) + r"/.*/authorize"))
    page.locator("#email").fill("north@example.com")
    page.locator("#password").fill(DEFAULT_DIRECTORY_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    assert page.url.startswith(portal.url)
    expect(page.get_by_role("link", name="Sales Overview")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You have signed out.")).to_be_visible()
    page.get_by_role("button", name="Sign out of Microsoft too").click()
    expect(page).to_have_url(f"{portal.url}/login")
    expect(page.get_by_role("link", name="Sign in with Microsoft")).to_be_visible()


def test_someone_the_portal_does_not_know_is_told_so(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.locator("#email").fill("outsider@example.com")
    page.locator("#password").fill(DEFAULT_DIRECTORY_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("No portal account belongs")
    assert page.url.startswith(f"{portal.url}/login/microsoft/callback")
