"""What every page the portal renders carries, whatever the page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.html import elements


def test_every_page_names_a_favicon_that_exists(client: TestClient) -> None:
    page = client.get("/login")
    icons = [
        e.attrs.get("href") for e in elements(page.text, "link") if e.attrs.get("rel") == "icon"
    ]
    assert icons == ["/static/app/img/favicon.svg"]
    icon = client.get(icons[0])
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
