"""Admin → API keys in Chromium against `embedportal serve`: a key is made, its secret shown
once with a Copy button that puts it on the clipboard, it works on /api/v1, and revoking it
(after the question) stops it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser

ADMIN = ("admin@example.com", "embedportal-admin")


def test_a_key_is_made_copied_used_and_revoked(page: Page, portal: Portal) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    page.goto(f"{portal.url}/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    page.goto(f"{portal.url}/admin/api-keys")
    page.get_by_label("Name", exact=True).fill("Browser app")
    page.get_by_label("Read users").check()
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_role("heading", name="API key “Browser app” created")).to_be_visible()
    secret_field = page.get_by_label("API key", exact=True)
    secret = secret_field.input_value()
    assert secret.startswith("ep_")
    copy = page.get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_visible()
    copy.click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    answer = page.request.get(
        f"{portal.url}/api/v1/users", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status == 200
    assert answer.json()["total"] >= 1

    page.get_by_role("button", name="I have copied it").click()
    row = page.get_by_role("row").filter(has_text="Browser app")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("users:read")
    assert secret not in page.content()
    page.get_by_role("link", name="Revoke Browser app").click()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.get_by_text("The API key “Browser app” is revoked")).to_be_visible()
    refused = page.request.get(f"{portal.url}/api/v1/users", headers={"X-API-Key": secret})
    assert refused.status == 401
    assert refused.json()["code"] == "ApiKeyRevoked"
