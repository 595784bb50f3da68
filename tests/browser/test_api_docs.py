"""Swagger UI from the npm package, under the portal's Content-Security-Policy (issue #11): the
page draws the portal's own schema, asks nothing of another origin, and the page fixture fails
on any CSP violation or page error."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Request, expect

from tests.browser.portal_fixtures import Portal

pytestmark = pytest.mark.browser


def test_the_api_reference_renders_from_the_portal_alone(page: Page, portal: Portal) -> None:
    requested: list[str] = []

    def note(request: Request) -> None:
        requested.append(request.url)

    page.on("request", note)
    page.goto(f"{portal.url}/api/docs")  # development: open to anyone
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("embedportal")
    expect(page.get_by_text("/api/reports/{report_id}/token").first).to_be_visible()
    foreign = [url for url in requested if not url.startswith((portal.url, "data:"))]
    assert foreign == [], foreign
