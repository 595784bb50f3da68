"""Admin → Branding: the colour and images an organization brands the portal with, shown on the
sign-in page, on every page, and in the mails it sends (received by a real SMTP server)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, BrandImage, Organization
from embedportal.db.session import session_scope
from embedportal.mail.sender import MailSender
from tests.support.portal import LoginAs, MakeUser, csrf_of
from tests.support.smtp import SmtpServer, html_of, running_smtp_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 40
OTHER_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x02" * 40
ICO = b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 40
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
IMAGE_URL = re.compile(r"/brand/(logo|favicon|sign_in_background)\?v=[0-9a-f]{16}")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, object]:
    return {**smtp_server.settings(), "mail_sender": False}


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def _save(
    client: TestClient,
    fields: dict[str, str] | None = None,
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> httpx.Response:
    data = {"csrf_token": csrf_of(client, "/admin/branding"), "brand_color": "", **(fields or {})}
    return client.post("/admin/branding", data=data, files=files or {}, follow_redirects=False)


def _url_of(page: str, kind: str) -> str:
    found = re.search(rf"/brand/{kind}\?v=[0-9a-f]{{16}}", page)
    assert found is not None, f"no {kind} on the page"
    return found.group(0)


def test_a_logo_favicon_and_colour_reach_every_page_and_the_sign_in_page(
    app: FastAPI, admin: TestClient
) -> None:
    saved = _save(
        admin,
        {"brand_color": "#AA3300"},
        {
            "logo": ("logo.png", PNG, "image/png"),
            "favicon": ("icon.ico", ICO, "image/vnd.microsoft.icon"),
            "sign_in_background": ("", b"", "application/octet-stream"),  # left empty
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/branding"
    page = admin.get("/admin/users").text
    logo = _url_of(page, "logo")
    favicon = _url_of(page, "favicon")
    assert f'<link rel="icon" href="{favicon}">' in page
    assert "/static/app/img/favicon.svg" not in page
    theme = re.search(r'href="(/brand/theme\.css\?v=[0-9a-f]{16})"', page)
    assert theme is not None
    css = admin.get(theme.group(1))
    assert css.headers["content-type"].startswith("text/css")
    assert "--pico-primary: #aa3300;" in css.text

    image = admin.get(logo)
    assert image.status_code == 200 and image.content == PNG
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    assert "immutable" in image.headers["cache-control"]
    assert admin.get(favicon).headers["content-type"] == "image/x-icon"

    admin.cookies.clear()
    sign_in = admin.get("/login").text
    assert _url_of(sign_in, "logo") == logo
    assert 'class="sign-in-page"' in sign_in
    with session_scope(app.state.session_factory) as db:
        [entry] = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "organization.branding_changed")
        ).all()
        assert entry.detail == {
            "brand_color": {"old": None, "new": "#aa3300"},
            "logo": "image added",
            "favicon": "image added",
        }


def test_a_sign_in_background_is_drawn_behind_the_sign_in_form_only(admin: TestClient) -> None:
    assert (
        _save(admin, files={"sign_in_background": ("bg.png", PNG, "image/png")}).status_code == 303
    )
    page = admin.get("/admin/users").text
    theme = re.search(r'href="(/brand/theme\.css\?v=[0-9a-f]{16})"', page)
    assert theme is not None
    css = admin.get(theme.group(1)).text
    assert re.search(r'body\.sign-in-page \{ background: url\("/brand/sign_in_background\?v=', css)


def test_a_new_image_gets_a_new_url_and_remove_goes_back_to_the_portals_own(
    app: FastAPI, admin: TestClient
) -> None:
    _save(admin, files={"logo": ("a.png", PNG, "image/png")})
    first = _url_of(admin.get("/admin/users").text, "logo")
    _save(admin, files={"logo": ("b.png", OTHER_PNG, "image/png")})
    second = _url_of(admin.get("/admin/users").text, "logo")
    assert first != second
    assert _save(admin, {"remove_logo": "on"}).status_code == 303
    page = admin.get("/admin/users").text
    assert "/brand/logo" not in page
    assert admin.get("/brand/logo").status_code == 404
    with session_scope(app.state.session_factory) as db:
        assert db.get(BrandImage, "logo") is None


@pytest.mark.parametrize(
    ("fields", "files", "field", "message"),
    [
        ({"brand_color": "red"}, {}, "brand_color", "Enter a colour as #rrggbb"),
        ({"brand_color": "#123456;}"}, {}, "brand_color", "Enter a colour as #rrggbb"),
        ({}, {"logo": ("x.svg", SVG, "image/png")}, "logo", "Choose a PNG, JPEG, GIF or WebP"),
        ({}, {"logo": ("x.ico", ICO, "image/x-icon")}, "logo", "Choose a PNG, JPEG, GIF or WebP"),
        (
            {},
            {"favicon": ("big.png", PNG + b"\x00" * 200 * 1024, "image/png")},
            "favicon",
            "larger than 128 KiB",
        ),
    ],
)
def test_a_refused_colour_or_file_is_said_on_the_form_and_nothing_is_saved(
    app: FastAPI,
    admin: TestClient,
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes, str]],
    field: str,
    message: str,
) -> None:
    response = _save(admin, {"brand_color": "#123456", **fields}, files)
    assert response.status_code == 400
    assert message in response.text
    assert f'id="f-{field}-error"' in response.text
    with session_scope(app.state.session_factory) as db:
        organization = db.get(Organization, 1)
        assert organization is None or organization.brand_color == ""
        assert db.scalars(select(BrandImage)).all() == []


def test_the_branding_page_speaks_portuguese(admin: TestClient) -> None:
    admin.post(
        "/account/language",
        data={"csrf_token": csrf_of(admin), "language": "pt_BR"},
        follow_redirects=False,
    )
    page = admin.get("/admin/branding").text
    assert "Identidade visual" in page
    refused = _save(admin, {"brand_color": "vermelho"})
    assert "Informe uma cor" in refused.text


def test_mails_carry_the_name_colour_and_logo(
    app: FastAPI, admin: TestClient, make_user: MakeUser, smtp_server: SmtpServer
) -> None:
    with session_scope(app.state.session_factory) as db:
        organization = db.get(Organization, 1)
        if organization is None:
            db.add(Organization(id=1, name="Acme Analytics"))
        else:
            organization.name = "Acme Analytics"
    _save(admin, {"brand_color": "#aa3300"}, {"logo": ("l.png", PNG, "image/png")})
    make_user("ana@example.com")
    admin.cookies.clear()
    token = csrf_of(admin, "/password/forgot")
    admin.post("/password/forgot", data={"csrf_token": token, "email": "ana@example.com"})
    sender: MailSender = app.state.mail_sender
    assert sender.deliver_due() == 1
    [message] = smtp_server.wait_for(1)
    html = html_of(message)
    assert "Acme Analytics" in message["Subject"]
    assert "color: #aa3300" in html
    assert IMAGE_URL.search(html) is not None
    assert 'src="http://127.0.0.1/brand/logo?v=' in html
