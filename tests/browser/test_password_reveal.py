"""The password can be shown while typed (ASVS 2.1.12), and the strength meter answers as the
new password is typed (2.1.8): in Chromium against `embedportal serve`."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

ADMIN = ("admin@example.com", "embedportal-admin")


def test_show_reveals_the_password_and_it_is_masked_again_when_sent(
    page: Page, portal: Portal
) -> None:
    page.goto(f"{portal.url}/login")
    password = page.get_by_label("Password")
    show = page.get_by_role("button", name="Show")
    expect(show).to_be_visible()
    expect(show).to_have_attribute("aria-pressed", "false")
    page.get_by_label("Email").fill(ADMIN[0])
    password.fill(ADMIN[1])
    show.click()
    expect(password).to_have_attribute("type", "text")
    expect(show).to_have_attribute("aria-pressed", "true")
    expect(password).to_be_focused()
    show.click()
    expect(password).to_have_attribute("type", "password")
    show.click()
    # Shown when sent: the form masks it first, and the sign-in works as usual.
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def test_the_meter_follows_the_new_password_as_it_is_typed(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    page.goto(f"{portal.url}/account")
    new_password = page.get_by_label("New password", exact=True)
    meter = page.locator("#f-new_password-strength")
    new_password.press_sequentially("password1234")
    expect(meter).to_contain_text("Password strength: Too easy to guess")
    new_password.fill("")
    new_password.press_sequentially("violet-tugboat-quarry-9")
    expect(meter).to_contain_text("Password strength: Strong")
    # Three password fields, three Show buttons, each for its own field.
    expect(page.get_by_role("button", name="Show")).to_have_count(3)
