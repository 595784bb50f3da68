"""Admin → Reports (a report's page) and Admin → Settings: how reports are embedded, app-owned
(embed tokens) or user-owned (each person's own Entra token), audited; open viewers re-check."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, Report
from embedportal.db.session import session_scope
from embedportal.web.push import PushEvent
from tests.support.html import form_fields
from tests.support.portal import LoginAs, MakeUser, SyncedReports, csrf_of
from tests.web.test_admin_settings import organization, save


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def choose(client: TestClient, report_id: str, embedding: str) -> object:
    page = f"/admin/reports/{report_id}"
    return client.post(
        f"{page}/embedding",
        data={"csrf_token": csrf_of(client, page), "embedding": embedding},
        follow_redirects=False,
    )


def embedding_of(app: FastAPI, report_id: str) -> str | None:
    with session_scope(app.state.session_factory) as db:
        report = db.get(Report, report_id)
        assert report is not None
        return report.embedding


def test_a_report_follows_the_organization_until_it_chooses(
    app: FastAPI,
    admin: TestClient,
    synced_reports: SyncedReports,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[PushEvent] = []
    monkeypatch.setattr(app.state.push_hub, "publish", published.append)
    report_id = synced_reports["Sales Overview"]
    page = admin.get(f"/admin/reports/{report_id}").text
    field = form_fields(page, action=f"/admin/reports/{report_id}/embedding")["embedding"]
    assert field.value == ""
    assert [value for value, _label in field.options] == ["", "app-owned", "user-owned"]
    assert "As the organization (now: embed tokens)" in page

    response = choose(admin, report_id, "user-owned")
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert embedding_of(app, report_id) == "user-owned"
    assert published == [PushEvent(kind="access")]  # its open viewers switch over
    page = admin.get(f"/admin/reports/{report_id}").text
    assert "How the report is embedded is saved." in page
    assert "Own sign-in" in page
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "report.embedding_changed")
        ).one()
        assert (entry.target_id, entry.actor_email) == (report_id, "admin@example.com")
        assert entry.detail == {"embedding": {"old": "organization", "new": "user-owned"}}

    choose(admin, report_id, "user-owned")  # the same again: nothing to save or tell
    assert len(published) == 1
    choose(admin, report_id, "")
    assert embedding_of(app, report_id) is None


def test_an_unknown_choice_is_refused_on_the_page(
    app: FastAPI, admin: TestClient, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports["Sales Overview"]
    response = choose(admin, report_id, "by-carrier-pigeon")
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.text  # type: ignore[attr-defined]
    field = form_fields(html, action=f"/admin/reports/{report_id}/embedding")["embedding"]
    assert field.error == "Choose how the report is embedded."
    assert embedding_of(app, report_id) is None


def test_the_organization_default_is_chosen_in_settings(
    app: FastAPI,
    admin: TestClient,
    synced_reports: SyncedReports,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = form_fields(admin.get("/admin/settings").text, action="/admin/settings")
    assert fields["default_embedding"].value == "app-owned"
    published: list[PushEvent] = []
    monkeypatch.setattr(app.state.push_hub, "publish", published.append)
    save(admin, default_embedding="user-owned")
    assert organization(app).default_embedding == "user-owned"
    assert PushEvent(kind="access") in published
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "organization.changed")
        ).all()[-1]
    assert entry.detail["default_embedding"] == {"old": "app-owned", "new": "user-owned"}
    report_id = synced_reports["Sales Overview"]
    assert "As the organization (now: each person" in admin.get(f"/admin/reports/{report_id}").text

    response = save(admin, default_embedding="sideways")
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.text  # type: ignore[attr-defined]
    assert form_fields(html, action="/admin/settings")["default_embedding"].error
    assert organization(app).default_embedding == "user-owned"


def test_the_pages_are_in_portuguese(
    app: FastAPI, admin: TestClient, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports["Sales Overview"]
    page = admin.get(f"/admin/reports/{report_id}", headers={"Accept-Language": "pt-BR"}).text
    assert "Incorporar este relatório com" in page
