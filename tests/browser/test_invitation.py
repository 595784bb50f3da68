"""The quick start's invitation, as a newcomer follows it: no mail server, so the administrator
reads the link in Admin → Outbox; the invited user chooses a password and signs in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.portal_fixtures import Portal
from tests.browser.test_quickstart import ADMIN, sign_in, sign_out

pytestmark = pytest.mark.browser

NEW_PASSWORD = "violet-tractor-umbrella-quince"


def test_an_invited_user_chooses_a_password_with_the_link_shown_in_the_outbox(
    page: Page, portal: Portal
) -> None:
    sign_in(page, portal.url, *ADMIN)
    page.goto(f"{portal.url}/admin/users/new")
    page.get_by_label("Email", exact=True).fill("invited@example.com")
    page.get_by_label("Name", exact=True).fill("Ivo Invited")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("An invitation to choose a password is on its way")).to_be_visible()

    page.goto(f"{portal.url}/admin/outbox")
    row = page.locator("tr", has_text="invited@example.com")
    # The page refreshes itself while the mail waits for the sender (every few seconds).
    expect(row).to_contain_text("Sent (to the log)", timeout=20_000)
    row.get_by_text("Text (written to the log").click()
    text = row.locator("pre").inner_text()
    found = re.search(r"http://\S+/password/set/[A-Za-z0-9_-]+", text)
    assert found is not None, text
    sign_out(page)

    page.goto(found.group(0))
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_text("Your password is set, invited@example.com.")).to_be_visible()
    sign_in(page, portal.url, "invited@example.com", NEW_PASSWORD)

    # The link worked once.
    page.goto(found.group(0))
    expect(page.get_by_text("This link has been used already.")).to_be_visible()
