"""Two-step sign-in in Chromium against `embedportal serve`: set up from the account page with
the key shown, recovery codes shown once, then a sign-in that asks for the code. The QR code is
inline SVG, so the page breaks no CSP rule (the `page` fixture fails on any violation)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from embedportal.access.totp import decode_secret, hotp, time_step
from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

VIEWER = ("north@example.com", "embedportal-viewer")


def _password_page(page: Page, portal: Portal) -> None:
    page.goto(f"{portal.url}/login")
    page.get_by_label("Email").fill(VIEWER[0])
    page.get_by_label("Password").fill(VIEWER[1])
    page.get_by_role("button", name="Sign in").click()


def test_setting_up_two_step_sign_in_and_signing_in_with_a_code(page: Page, portal: Portal) -> None:
    _password_page(page, portal)
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    page.goto(f"{portal.url}/account")
    # A link drawn as a button on the account page, then the set-up page's own button.
    page.get_by_role("button", name="Set up two-step sign-in").click()
    expect(page).to_have_url(f"{portal.url}/account/two-step")
    page.get_by_role("button", name="Set up two-step sign-in").click()
    expect(page.locator("figure.qr-code svg")).to_be_visible()
    secret = decode_secret(page.locator("#two-step-secret").inner_text())
    step = time_step(time.time())
    page.get_by_label("Code").fill(hotp(secret, step))
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_role("heading", name="Two-step sign-in is on")).to_be_visible()
    expect(page.locator(".recovery-codes code")).to_have_count(10)
    page.get_by_role("button", name="I have kept them").click()
    expect(page.get_by_text("Manage two-step sign-in")).to_be_visible()

    page.context.clear_cookies()
    _password_page(page, portal)
    expect(page.get_by_role("heading", name="Two-step sign-in")).to_be_visible()
    # The next step's code: the one used to turn it on is spent.
    page.get_by_label("Code").fill(hotp(secret, step + 1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
